//! Reading an uncompressed HDF5 dataset: baler's hyperslab reader (what `baler compress
//! FILE.h5:/data` reads through) against the HDF5 library reading the same dataset into arrays
//! of its own, and against the memory-mapped reader of the same values in a `.npy`, in GB/s of
//! values with a warm page cache.
//!
//!     cargo bench --bench hdf5                        # 1 GiB; BALER_BENCH_H5_MIB to change

use std::hint::black_box;
use std::io::{Read, Write};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const COLS: usize = 16;

fn mib() -> usize {
    std::env::var("BALER_BENCH_H5_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024)
}

/// Rows of 16 physics-like columns (as in cli/tests/memory.rs).
fn fill(buf: &mut [f32], seed: &mut u64, row0: usize) {
    for (i, row) in buf.chunks_mut(COLS).enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (*seed >> 40) as f32 / (1u64 << 24) as f32;
            *v = match c % 4 {
                0 => ((row0 + i) as f32 * 1e-3).sin() * 100.0 + u,
                1 => -30.0 * (u + 1e-7).ln(),
                2 => (u - 0.5) * 6.0,
                _ => ((row0 + i) % 97) as f32,
            };
        }
    }
}

/// Drains a reader through 4 MiB reads (the compressor's chunk size); returns the bytes.
fn drain(mut r: impl Read) -> u64 {
    let mut buf = vec![0u8; 4 << 20];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf).expect("read");
        if k == 0 {
            return n;
        }
        n += k as u64;
        black_box(&buf[..k]);
    }
}

fn read(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rows = (mib() << 20) / (4 * COLS);
    let h5 = dir.path().join("big.h5");
    let npy = dir.path().join("big.npy");
    {
        let file = hdf5::File::create(&h5).expect("create");
        let contiguous = file
            .new_dataset::<f32>()
            .shape((rows, COLS))
            .create("contiguous")
            .expect("dataset");
        let chunked = file
            .new_dataset::<f32>()
            .shape((rows, COLS))
            .chunk((65536, COLS))
            .create("chunked")
            .expect("dataset");
        let mut n = std::io::BufWriter::new(std::fs::File::create(&npy).expect("npy"));
        n.write_all(&baler::io::npy::header_bytes(
            baler::DType::F32,
            &[rows as u64, COLS as u64],
            false,
        ))
        .expect("npy header");
        let mut buf = vec![0f32; 65536 * COLS];
        let mut seed = 1u64;
        let mut row = 0;
        while row < rows {
            let k = (rows - row).min(65536);
            fill(&mut buf[..k * COLS], &mut seed, row);
            let view = ndarray::ArrayView2::from_shape((k, COLS), &buf[..k * COLS]).expect("view");
            for ds in [&contiguous, &chunked] {
                ds.write_slice(view, (row..row + k, ..)).expect("write");
            }
            n.write_all(bytemuck::cast_slice(&buf[..k * COLS]))
                .expect("npy");
            row += k;
        }
    }
    let bytes = (rows * COLS * 4) as u64;
    let mut g = c.benchmark_group("hdf5_read");
    g.throughput(Throughput::Bytes(bytes));
    g.sample_size(10);
    for name in ["contiguous", "chunked"] {
        let path = format!("{}:/{name}", h5.display());
        g.bench_function(format!("baler_reader/{name}"), |b| {
            b.iter(|| {
                let input = baler::io::Input::open(&path, &Default::default()).expect("open");
                assert_eq!(drain(input.into_reader()), bytes);
            })
        });
    }
    // The library on its own: the whole dataset read by H5Dread into 64 MiB arrays.
    g.bench_function("hdf5_library_read_slice/contiguous", |b| {
        let file = hdf5::File::open(&h5).expect("open");
        let ds = file.dataset("contiguous").expect("dataset");
        let step = (64 << 20) / (4 * COLS);
        b.iter(|| {
            let mut row = 0;
            while row < rows {
                let a: ndarray::Array2<f32> = ds
                    .read_slice((row..(row + step).min(rows), ..))
                    .expect("read");
                black_box(&a);
                row += step;
            }
        })
    });
    let npy_path = npy.display().to_string();
    g.bench_function("npy_mmap_reader", |b| {
        b.iter(|| {
            let input = baler::io::Input::open(&npy_path, &Default::default()).expect("open");
            assert_eq!(drain(input.into_reader()), bytes);
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().without_plots().measurement_time(Duration::from_secs(10)).warm_up_time(Duration::from_secs(2));
    targets = read
}
criterion_main!(benches);
