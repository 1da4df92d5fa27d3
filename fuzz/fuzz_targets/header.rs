//! A container header (the sections, bounds, statistics, model section), as every reader
//! parses it first.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = baler::container::Header::read_from(&mut &data[..]) {
        let _ = h.codec_params();
    }
});
