//! One chunk's payload under a real header (the first of the seed's own chunks replaced by the
//! input): the column sections, predictors, exceptions and code streams. The first byte picks
//! the header (table, table with a model, field, f64), the next four the record count.
#![no_main]

use std::sync::OnceLock;

use baler::chunk::PayloadKind;
use baler::container::{Frame, Header};
use libfuzzer_sys::fuzz_target;

/// Headers of the seed containers, one per kind (`fuzz/headers/*.baler`, copied from the format
/// fixtures by `scripts/fuzz.sh`).
fn headers() -> &'static [Header] {
    static H: OnceLock<Vec<Header>> = OnceLock::new();
    H.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/headers");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .filter_map(|b| Header::read_from(&mut &b[..]).ok())
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let hs = headers();
    if hs.is_empty() || data.len() < 6 {
        return;
    }
    let header = &hs[data[0] as usize % hs.len()];
    // At most 2^16 values: forged counts cost allocation time, not coverage.
    let most = (65536 / header.record_len.max(1)).max(1) as u32;
    let records = u32::from_le_bytes([data[1], data[2], data[3], data[4]]) % most.min(4096) + 1;
    let kind = match data[5] % 3 {
        0 => PayloadKind::Coded,
        1 => PayloadKind::Raw,
        _ => PayloadKind::Lz4,
    };
    let frame = Frame::Chunk {
        index: 0,
        records,
        kind,
        payload: data[6..].to_vec(),
    };
    let _ = baler::decompress_chunk(header, frame);
});
