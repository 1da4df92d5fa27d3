//! Each stage on real data, in MB/s of raw input: the range pass (as a field, by column),
//! residual (quantize/dequantize), entropy (encode/decode), lossless, the chunk codec on a
//! table and on a field, and the whole pipeline at 1 and 2 threads (and on a small field,
//! call after call, its scratch kept or not).
//!
//!     cargo bench --bench stages

use std::hint::black_box;
use std::time::Duration;

use baler::normalize::{ColumnStats, StatsAccumulator};
use baler::stages::{Chunks, Entropy, Lossless, dequantize, quantize};
use baler::{
    ArraySpec, Bound, BoundSpec, Bounds, CompressOptions, DType, compress_slice, decompress_to_vec,
};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};

mod common;
use common::table;

fn column_stats(data: &[f32], width: usize, j: usize) -> (f64, f64, f64) {
    let col = data.iter().skip(j).step_by(width).map(|&v| v as f64);
    let (lo, hi) = col.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    (1e-3 * (hi - lo), (lo + hi) / 2.0, (hi - lo) / 2.0)
}

/// Encoding and decoding one chunk of `field` (rows of `row` values, planes of `plane`) at an
/// absolute bound of 1e-3 of its range, as the group `name`.
fn field_group(c: &mut Criterion, name: &str, field: &[f32], row: usize, plane: usize) {
    let (bound, centre, half) = column_stats(field, 1, 0);
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Bytes((field.len() * 4) as u64));
    let mut chunks = Chunks::<f32>::field(Bound::Abs(bound), (centre, half), row, plane);
    let mut payload = Vec::new();
    assert!(chunks.encode(field, &mut payload));
    let coded = payload.clone();
    g.bench_function("encode", |b| {
        b.iter(|| chunks.encode(black_box(field), &mut payload))
    });
    let mut out = Vec::with_capacity(field.len());
    g.bench_function("decode", |b| {
        b.iter(|| {
            out.clear();
            chunks.decode(black_box(&coded), field.len(), &mut out)
        })
    });
    g.finish();
}

/// `compress/T-thread` and `decompress-into/T-thread` of `data` (of `spec`, one chunk) for 1
/// and 2 threads, with `opts` and its container `packed`: with two, the second worker has no
/// chunk and lends its core to the first one's tasks (`src/spare.rs`).
fn by_threads(
    g: &mut BenchmarkGroup<'_, WallTime>,
    (data, spec): (&[f32], &ArraySpec),
    opts: &CompressOptions,
    packed: &[u8],
) {
    for threads in [1, 2] {
        let opts = opts.clone().threads(threads);
        g.bench_function(format!("compress/{threads}-thread"), |b| {
            b.iter(|| compress_slice(black_box(data), spec, &opts).unwrap())
        });
        let mut out = vec![0f32; data.len()];
        g.bench_function(format!("decompress-into/{threads}-thread"), |b| {
            b.iter(|| baler::decompress_into(black_box(packed), &mut out, threads).unwrap())
        });
    }
}

fn stages(c: &mut Criterion) {
    let (data, rows, width) = table();
    // Column 5 (PT): a falling spectrum.
    let col: Vec<f32> = data.iter().skip(5).step_by(width).copied().collect();
    let (bound, centre, half) = column_stats(&data, width, 5);
    let bound = Bound::Abs(bound);
    let bytes = (col.len() * 4) as u64;

    // The range pass before coding (a `rel` bound's range, the normalization): the table's
    // values as one field, and by column.
    let mut g = c.benchmark_group("range");
    g.throughput(Throughput::Bytes((data.len() * 4) as u64));
    g.bench_function("field", |b| {
        b.iter(|| ColumnStats::of(black_box(&data[..])))
    });
    g.bench_function("table", |b| {
        b.iter(|| {
            let mut acc = StatsAccumulator::new(width);
            acc.add(black_box(&data[..]));
            acc.finish()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("residual");
    g.throughput(Throughput::Bytes(bytes));
    let mut codes = Vec::new();
    let mut recon = vec![0f32; col.len()];
    // The codes the entropy benches code (computed here so that a filtered run has them too).
    quantize(
        &col,
        centre,
        bound,
        centre.abs() + half,
        &mut codes,
        &mut recon,
    );
    g.bench_function("quantize", |b| {
        b.iter(|| {
            quantize(
                black_box(&col),
                centre,
                bound,
                centre.abs() + half,
                &mut codes,
                &mut recon,
            )
        })
    });
    let mut out = vec![0f32; col.len()];
    g.bench_function("dequantize", |b| {
        b.iter(|| {
            dequantize(
                black_box(&codes),
                centre,
                bound,
                centre.abs() + half,
                &mut out,
            )
        })
    });
    g.finish();

    let mut g = c.benchmark_group("entropy");
    g.throughput(Throughput::Bytes(bytes));
    let mut e = Entropy::new();
    let mut coded = Vec::new();
    e.encode(&codes, &mut coded);
    let entropy_coded = coded.clone();
    g.bench_function("encode", |b| {
        b.iter(|| {
            coded.clear();
            e.encode(black_box(&codes), &mut coded)
        })
    });
    let mut back = Vec::new();
    g.bench_function("decode", |b| {
        b.iter(|| e.decode(black_box(&entropy_coded), codes.len(), &mut back))
    });
    g.finish();

    let mut g = c.benchmark_group("lossless");
    g.throughput(Throughput::Bytes(bytes));
    let mut l = Lossless::new();
    let mut coded = Vec::new();
    l.encode(&col, &mut coded);
    let lossless_coded = coded.clone();
    g.bench_function("encode", |b| {
        b.iter(|| {
            coded.clear();
            l.encode(black_box(&col), &mut coded)
        })
    });
    let mut out = vec![0f32; col.len()];
    g.bench_function("decode", |b| {
        b.iter(|| l.decode(black_box(&lossless_coded), &mut out))
    });
    g.finish();

    let mut g = c.benchmark_group("chunk");
    g.throughput(Throughput::Bytes((data.len() * 4) as u64));
    let stats: Vec<(f64, f64, f64)> = (0..width).map(|j| column_stats(&data, width, j)).collect();
    let norms: Vec<(f64, f64)> = stats.iter().map(|s| (s.1, s.2)).collect();
    let mut payload = Vec::new();
    let mut out = Vec::with_capacity(data.len());
    // The same table at rel:1e-3, at bits:10 (point-wise relative, the ordinal domain) and
    // lossless (the integer transforms, row repeats and a relation: Rapidity from Eta).
    for (name, bounds) in [
        (
            "",
            stats.iter().map(|s| Bound::Abs(s.0)).collect::<Vec<_>>(),
        ),
        ("-bits10", vec![Bound::PwRel(1.0 / 2048.0); width]),
        ("-lossless", vec![Bound::Lossless; width]),
    ] {
        let mut chunks = Chunks::<f32>::table(&bounds, &norms);
        assert!(chunks.encode(&data, &mut payload));
        let chunk_payload = payload.clone();
        g.bench_function(format!("encode{name}"), |b| {
            b.iter(|| chunks.encode(black_box(&data), &mut payload))
        });
        g.bench_function(format!("decode{name}"), |b| {
            b.iter(|| {
                out.clear();
                chunks.decode(black_box(&chunk_payload), data.len(), &mut out)
            })
        });
    }
    g.finish();

    // A field (the CFD fixture, 60 × 50 × 50): interpolation across frames, rows and columns.
    let (field, shape) = common::fixture("cfd_decay_ux");
    let (row, plane) = (shape[2], shape[1] * shape[2]);
    field_group(c, "chunk-field", &field, row, plane);

    // The same field a call at a time, as a Python loop or the HDF5 filter hands arrays over:
    // "warm" calls take the codecs the calls before kept; "cold" ones free them first, so each
    // call's workers fault their scratch in again.
    let mut g = c.benchmark_group("pipeline-field");
    g.throughput(Throughput::Bytes((field.len() * 4) as u64));
    let spec = ArraySpec::new(DType::F32, shape.iter().map(|&d| d as u64).collect());
    let opts = CompressOptions::new(Bounds::new(BoundSpec::Rel(1e-3))).threads(2);
    let packed = compress_slice(&field, &spec, &opts).unwrap();
    for (name, cold) in [("warm", false), ("cold", true)] {
        g.bench_function(format!("compress/{name}"), |b| {
            b.iter(|| {
                if cold {
                    baler::release_scratch();
                }
                compress_slice(black_box(&field), &spec, &opts).unwrap()
            })
        });
        g.bench_function(format!("decompress/{name}"), |b| {
            b.iter(|| {
                if cold {
                    baler::release_scratch();
                }
                decompress_to_vec(black_box(&packed)).unwrap()
            })
        });
    }
    // One chunk on one thread and on two: the second worker has no chunk, and lends its core
    // to the first one's segments and to the parts of its interpolation's large passes
    // (`src/spare.rs`, `src/disjoint.rs`).
    by_threads(&mut g, (&field, &spec), &opts, &packed);
    g.finish();

    // A telescope frame's science and error planes (fixtures/hst_frame.npy, 2 x 128 x 128),
    // lossless: one chunk, the error plane predicted from the science plane, the two halves
    // rebuilt as two tasks where a second core is idle.
    let (frame, shape) = common::fixture("hst_frame");
    let mut g = c.benchmark_group("pipeline-frame-lossless");
    g.throughput(Throughput::Bytes((frame.len() * 4) as u64));
    let spec = ArraySpec::new(DType::F32, shape.iter().map(|&d| d as u64).collect());
    let lossless = CompressOptions::new(Bounds::new(BoundSpec::Lossless));
    let packed = compress_slice(&frame, &spec, &lossless).unwrap();
    by_threads(&mut g, (&frame, &spec), &lossless, &packed);
    g.finish();

    // A smooth 2-D field of 1024 x 1024 (a telescope image's size): the interpolation's passes
    // along the rows' axis go down the grid's columns in the stored order, in memory order here.
    let (n, m) = (1024usize, 1024usize);
    let image: Vec<f32> = (0..n * m)
        .map(|i| {
            let (y, x) = ((i / m) as f32, (i % m) as f32);
            (x * 0.013).sin() * (y * 0.021).cos() + 0.3 * (x * 0.002 + y * 0.003).sin()
        })
        .collect();
    field_group(c, "chunk-field-2d", &image, m, n * m);

    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Bytes((data.len() * 4) as u64));
    common::round_trips(&mut g, &data, rows, width, |threads| {
        CompressOptions::new(Bounds::new(BoundSpec::Rel(1e-3)))
            .threads(threads)
            .chunk_bytes(256 << 10)
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().without_plots().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = stages
}
criterion_main!(benches);
