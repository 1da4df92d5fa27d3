//! A learned model's serialized form, as `--model FILE` and a container's MODEL section give
//! it: the column count, order, derived features and each column's network.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The width the body declares (what `Model::load` does), and a few others.
    let declared = data
        .iter()
        .take(10)
        .position(|b| b & 0x80 == 0)
        .map(|n| {
            data[..=n]
                .iter()
                .rev()
                .fold(0u64, |v, b| (v << 7) | u64::from(b & 0x7f))
        })
        .unwrap_or(0);
    for width in [declared.min(1 << 20) as usize, 3, 16] {
        if let Ok(m) = baler::model::Model::read(data, width) {
            let _ = m.to_bytes();
        }
    }
});
