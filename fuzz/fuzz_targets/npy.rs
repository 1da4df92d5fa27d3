//! A `.npy` header (magic, version, the dict literal, the shape and its byte count), as every
//! `.npy` input is opened.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = baler::io::npy::read_header(&mut &data[..]) {
        let _ = h.data_bytes();
    }
});
