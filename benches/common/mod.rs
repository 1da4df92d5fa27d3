//! What the benches share: the fixtures and the compress/decompress pair.

use std::hint::black_box;

use baler::{ArraySpec, CompressOptions, DType, compress_slice, decompress_to_vec};
use criterion::BenchmarkGroup;
use criterion::measurement::WallTime;

/// The f32 fixture `fixtures/NAME.npy`: its values (C order) and shape.
pub fn fixture(name: &str) -> (Vec<f32>, Vec<usize>) {
    let path = format!("{}/fixtures/{name}.npy", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).expect("fixture");
    let h = baler::io::npy::read_header(&mut &bytes[..]).expect("npy");
    let data: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes[h.data_offset as usize..]);
    (data, h.shape.iter().map(|&d| d as usize).collect())
}

/// The Delphes fixture (16384 × 16) as f32, row-major, with its rows and columns.
pub fn table() -> (Vec<f32>, usize, usize) {
    let (data, shape) = fixture("delphes_16k");
    (data, shape[0], shape[1])
}

/// `compress/T` and `decompress/T` of the table in memory, for 1 and 2 threads, with the
/// options `opts(threads)` gives.
pub fn round_trips(
    g: &mut BenchmarkGroup<'_, WallTime>,
    data: &[f32],
    rows: usize,
    width: usize,
    opts: impl Fn(usize) -> CompressOptions,
) {
    let spec = ArraySpec::new(DType::F32, vec![rows as u64, width as u64]);
    for threads in [1, 2] {
        let opts = opts(threads);
        g.bench_function(format!("compress/{threads}"), |b| {
            b.iter(|| compress_slice(black_box(data), &spec, &opts).unwrap())
        });
        let packed = compress_slice(data, &spec, &opts).unwrap();
        g.bench_function(format!("decompress/{threads}"), |b| {
            b.iter(|| decompress_to_vec(black_box(&packed)).unwrap())
        });
    }
}
