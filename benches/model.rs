//! The learned predictor on the Delphes fixture (16384 records × 16 columns): training
//! throughput (records per second of one epoch, and of the default effort's selection and
//! linear parts), and compression and decompression with the
//! model, in records/s (criterion also prints MB/s of raw input for the coding benches).
//!
//!     cargo bench --bench model
//!
//! (No plots: criterion draws them with system fonts, which a headless machine may lack.)

use std::hint::black_box;
use std::time::Duration;

use baler::model::train::{TrainOptions, fit};
use baler::{BoundSpec, Bounds, CompressOptions};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

mod common;
use common::table;

fn model(c: &mut Criterion) {
    let (data, rows, width) = table();
    let sample: Vec<f64> = data.iter().map(|&v| f64::from(v)).collect();
    let specs = vec![BoundSpec::Rel(1e-3); width];
    // Sized as for a large file of this kind (the fixture alone would get no network).
    let opts = TrainOptions {
        hidden: 16,
        epochs: 1,
        patience: 1,
        ..TrainOptions::default()
    };

    let mut g = c.benchmark_group("model");
    g.sample_size(10);
    g.throughput(Throughput::Elements(rows as u64));
    let train = |opts: &TrainOptions| {
        fit(
            black_box(&sample),
            width,
            &specs,
            1 << 30,
            opts,
            |_, _, _| {},
        )
        .expect("training on the CPU")
    };
    // Selection of order and features, least squares, and one epoch over the sample.
    g.bench_function("train 1 epoch", |b| b.iter(|| train(&opts)));
    // What the default effort trains on inputs of this size: the selection and the linear
    // parts alone (no epochs).
    let linear = TrainOptions {
        epochs: 0,
        ..TrainOptions::default()
    };
    g.bench_function("train linear parts", |b| b.iter(|| train(&linear)));
    let (trained, _) = train(&opts);
    common::round_trips(&mut g, &data, rows, width, |threads| {
        CompressOptions::new(Bounds::new(BoundSpec::Rel(1e-3)))
            .threads(threads)
            .chunk_bytes(256 << 10)
            .model(trained.clone())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().without_plots().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));
    targets = model
}
criterion_main!(benches);
