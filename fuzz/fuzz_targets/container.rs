//! A whole container, as `baler decompress` reads it: header, chunks (every payload decoded),
//! end mark, footer; then the seekable path `baler info` takes (the trailer and its check
//! against the chunks). The chunks are decoded one after the other on this thread (what the
//! decompressor's workers do, without starting threads for every input), and a chunk whose
//! decoding would need more than 64 MiB is skipped, as the decompressor's memory limit
//! refuses it.
#![no_main]

use std::io::Cursor;

use baler::container::{ContainerReader, Frame};
use libfuzzer_sys::fuzz_target;

const LIMIT: u64 = 64 << 20;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut cr) = ContainerReader::new(Cursor::new(data)) {
        cr.limit_memory(LIMIT);
        let header = cr.header().clone();
        let value_bytes = header
            .record_len
            .saturating_mul(header.spec.dtype.size() as u64);
        loop {
            match cr.next_frame() {
                Ok(frame @ Frame::Chunk { records, .. }) => {
                    if u64::from(records).saturating_mul(value_bytes) <= LIMIT / 4 {
                        let _ = baler::decompress_chunk(&header, frame);
                    }
                }
                Ok(Frame::End { .. }) => {
                    let _ = cr.read_footer();
                    break;
                }
                Err(_) => break,
            }
        }
    }
    let mut cur = Cursor::new(data);
    if let Ok(t) = baler::container::read_trailer(&mut cur) {
        let _ = baler::container::verify_trailer(&mut cur, &t);
    }
});
