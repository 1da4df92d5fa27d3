//! Memory stays flat as the input grows: streams far larger than the cap go through
//! `baler compress - | baler decompress -` (and file to file, `baler evaluate` of the file
//! against its container, and a chunked gzip HDF5 dataset to a new `.h5`) while a monitor samples each process's anonymous resident memory (`RssAnon`
//! in /proc/PID/status).
//!
//! Sizes: `BALER_MEMORY_TEST_MIB` (default 1024) for the large run, a quarter of it for the small
//! one. Linux only (it reads /proc).

#![cfg(target_os = "linux")]

mod common;

use std::fs;
use std::io::{BufWriter, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

const CAP_MIB: u64 = 256;
const COLS: usize = 16;

/// The binary, with HDF5 file locking off (see `common::cli::baler`).
fn baler() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_baler"));
    c.env("HDF5_USE_FILE_LOCKING", "FALSE");
    c
}

fn rss_anon_kib(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("RssAnon:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Samples the peak RssAnon of `pids` every 2 ms until stopped.
struct Monitor {
    stop: Arc<AtomicBool>,
    peaks: Vec<Arc<AtomicU64>>,
    handle: thread::JoinHandle<()>,
}

impl Monitor {
    fn start(pids: Vec<u32>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peaks: Vec<Arc<AtomicU64>> = pids.iter().map(|_| Arc::new(AtomicU64::new(0))).collect();
        let (s, p) = (Arc::clone(&stop), peaks.clone());
        let handle = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for (pid, peak) in pids.iter().zip(&p) {
                    if let Some(k) = rss_anon_kib(*pid) {
                        peak.fetch_max(k, Ordering::Relaxed);
                    }
                }
                thread::sleep(Duration::from_millis(2));
            }
        });
        Monitor {
            stop,
            peaks,
            handle,
        }
    }

    fn finish(self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap();
        self.peaks
            .iter()
            .map(|p| p.load(Ordering::Relaxed) / 1024)
            .collect()
    }
}

/// Physics-like rows: smooth, noisy and heavy-tailed columns, generated on the fly.
fn fill(buf: &mut [f32], seed: &mut u64, row0: u64) {
    for (i, row) in buf.chunks_mut(COLS).enumerate() {
        let r = row0 + i as u64;
        for (c, v) in row.iter_mut().enumerate() {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (*seed >> 40) as f32 / (1u64 << 24) as f32;
            *v = match c % 4 {
                0 => (r as f32 * 1e-3).sin() * 100.0 + u,
                1 => -30.0 * (u + 1e-7).ln(),
                2 => (u - 0.5) * 6.0,
                _ => (r % 97) as f32,
            };
        }
    }
}

fn wait_ok(mut c: Child, what: &str) {
    let mut err = String::new();
    if let Some(mut e) = c.stderr.take() {
        e.read_to_string(&mut err).unwrap();
    }
    let status = c.wait().unwrap();
    assert!(status.success(), "{what} failed: {err}");
}

/// Streams a `.npy` of `mib` MiB through `baler compress - | baler decompress - -o -` (as
/// `cat big.npy | baler compress -` would); returns the peak RssAnon (MiB) of each.
fn stream_through_pipes(mib: u64) -> (u64, u64) {
    let total = mib << 20;
    let rows = total / (4 * COLS as u64);
    let mut comp = baler()
        .args(["compress", "-", "-b", "rel:1e-3", "-q", "-o", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut decomp = baler()
        .args(["decompress", "-", "-o", "-", "-q"])
        .stdin(Stdio::from(comp.stdout.take().unwrap()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let monitor = Monitor::start(vec![comp.id(), decomp.id()]);
    let mut stdin = BufWriter::new(comp.stdin.take().unwrap());
    let feeder = thread::spawn(move || {
        stdin
            .write_all(&baler::io::npy::header_bytes(
                baler::DType::F32,
                &[rows, COLS as u64],
                false,
            ))
            .unwrap();
        let mut buf = vec![0f32; COLS * 65536];
        let mut seed = 1u64;
        let mut sent = 0u64;
        let mut row = 0u64;
        while sent < total {
            fill(&mut buf, &mut seed, row);
            let bytes: &[u8] = bytemuck::cast_slice(&buf);
            let n = (bytes.len() as u64).min(total - sent) as usize;
            stdin.write_all(&bytes[..n]).unwrap();
            sent += n as u64;
            row += (n / (4 * COLS)) as u64;
        }
    });
    let mut out = decomp.stdout.take().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    feeder.join().unwrap();
    wait_ok(comp, "compress");
    wait_ok(decomp, "decompress");
    let peaks = monitor.finish();
    assert_eq!(got, total, "every byte comes back");
    (peaks[0], peaks[1])
}

fn mib_from_env() -> u64 {
    std::env::var("BALER_MEMORY_TEST_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024)
}

/// Runs `through` at a quarter of the test size and at the full size (`label` describes the
/// input): both peaks (compress, decompress) stay under the cap, and four times the input does
/// not need noticeably more memory.
fn assert_flat(label: &str, through: impl Fn(u64) -> (u64, u64)) {
    let big = mib_from_env();
    let (c_small, d_small) = through(big / 4);
    let (c_big, d_big) = through(big);
    for (mib, c, d) in [(big / 4, c_small, d_small), (big, c_big, d_big)] {
        eprintln!("peak RssAnon, {mib} MiB{label}: compress {c} MiB, decompress {d} MiB");
    }
    for (what, peak) in [("compress", c_big), ("decompress", d_big)] {
        assert!(
            peak < CAP_MIB,
            "{what} used {peak} MiB of anonymous memory (cap {CAP_MIB} MiB)"
        );
    }
    assert!(
        c_big <= c_small + c_small / 4 + 32,
        "compress grew from {c_small} to {c_big} MiB"
    );
    assert!(
        d_big <= d_small + d_small / 4 + 32,
        "decompress grew from {d_small} to {d_big} MiB"
    );
}

/// Runs baler with `args` to completion; returns its peak RssAnon (MiB).
fn peak_of(args: &[&str], what: &str) -> u64 {
    let child = baler().args(args).stderr(Stdio::piped()).spawn().unwrap();
    let m = Monitor::start(vec![child.id()]);
    wait_ok(child, what);
    m.finish()[0]
}

#[test]
fn pipes_stay_flat_as_the_stream_grows() {
    assert_flat("", stream_through_pipes);
}

#[test]
fn files_stay_under_the_cap() {
    let mib = mib_from_env();
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("big.npy");
    let rows = (mib << 20) / (4 * COLS as u64);
    {
        let mut f = BufWriter::new(fs::File::create(&npy).unwrap());
        f.write_all(&baler::io::npy::header_bytes(
            baler::DType::F32,
            &[rows, COLS as u64],
            false,
        ))
        .unwrap();
        let mut buf = vec![0f32; COLS * 65536];
        let mut seed = 7u64;
        let mut row = 0u64;
        while row < rows {
            fill(&mut buf, &mut seed, row);
            let n = ((rows - row) as usize).min(65536);
            f.write_all(bytemuck::cast_slice(&buf[..n * COLS])).unwrap();
            row += n as u64;
        }
    }
    let packed = dir.path().join("big.baler");
    let (npy_s, packed_s) = (npy.to_string_lossy(), packed.to_string_lossy());
    let c_peak = peak_of(
        &["compress", &npy_s, "-o", &packed_s, "-b", "rel:1e-3", "-q"],
        "compress",
    );
    // evaluate streams both files in lockstep, histograms and all.
    let plots = dir.path().join("plots");
    let e_peak = peak_of(
        &[
            "evaluate",
            &npy_s,
            &packed_s,
            "--plots",
            &plots.to_string_lossy(),
            "-q",
        ],
        "evaluate",
    );
    assert_eq!(fs::read_dir(&plots).unwrap().count(), COLS + 1);
    fs::remove_file(&npy).unwrap();
    let back = dir.path().join("back.npy");
    let back_s = back.to_string_lossy();
    let d_peak = peak_of(
        &["decompress", &packed_s, "-o", &back_s, "-q"],
        "decompress",
    );
    eprintln!(
        "peak RssAnon, {mib} MiB file: compress {c_peak} MiB, decompress {d_peak} MiB, \
         evaluate {e_peak} MiB"
    );
    assert_eq!(
        fs::metadata(&back).unwrap().len(),
        128 + rows * 4 * COLS as u64
    );
    assert!(c_peak < CAP_MIB, "compress used {c_peak} MiB");
    assert!(d_peak < CAP_MIB, "decompress used {d_peak} MiB");
    assert!(e_peak < CAP_MIB, "evaluate used {e_peak} MiB");
}

/// Writes an HDF5 file holding one chunked, gzip-compressed dataset `/data` of `mib` MiB
/// (rows of `COLS` floats, with a `columns` attribute), with the hdf5 crate itself.
#[cfg(feature = "hdf5")]
fn write_h5(path: &std::path::Path, mib: u64) -> u64 {
    let rows = (mib << 20) / (4 * COLS as u64);
    // Without locks: a child spawned meanwhile by another test inherits this file's descriptor.
    let f = hdf5::File::with_options()
        .with_fapl(|p| p.file_locking(false))
        .create(path)
        .unwrap();
    let ds = f
        .new_dataset::<f32>()
        .shape((rows as usize, COLS))
        .chunk((16384, COLS))
        .deflate(1)
        .create("data")
        .unwrap();
    let names: Vec<String> = (0..COLS).map(|c| format!("c{c}")).collect();
    ds.new_attr::<hdf5::types::VarLenUnicode>()
        .create("columns")
        .unwrap()
        .write_scalar(
            &names
                .join(",")
                .parse::<hdf5::types::VarLenUnicode>()
                .unwrap(),
        )
        .unwrap();
    let mut buf = vec![0f32; COLS * 65536];
    let mut seed = 11u64;
    let mut row = 0u64;
    while row < rows {
        let n = ((rows - row) as usize).min(65536);
        fill(&mut buf[..n * COLS], &mut seed, row);
        let view = ndarray::ArrayView2::from_shape((n, COLS), &buf[..n * COLS]).unwrap();
        let r = row as usize;
        ds.write_slice(view, (r..r + n, ..)).unwrap();
        row += n as u64;
    }
    rows
}

/// Compresses `FILE.h5:/data` file to file, then decompresses to a new `.h5`; returns the
/// peak RssAnon (MiB) of each.
#[cfg(feature = "hdf5")]
fn hdf5_through_files(mib: u64) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let h5 = dir.path().join("big.h5");
    let rows = write_h5(&h5, mib);
    let packed = dir.path().join("big.baler");
    let packed_s = packed.to_string_lossy();
    let input = format!("{}:/data", h5.display());
    let c_peak = peak_of(
        &["compress", &input, "-o", &packed_s, "-b", "rel:1e-3", "-q"],
        "compress",
    );
    fs::remove_file(&h5).unwrap();
    let back = dir.path().join("back.h5");
    let back_s = back.to_string_lossy();
    let d_peak = peak_of(
        &["decompress", &packed_s, "-o", &back_s, "-q"],
        "decompress",
    );
    let f = hdf5::File::with_options()
        .with_fapl(|p| p.file_locking(false))
        .open(&back)
        .unwrap();
    let ds = f.dataset("data").unwrap();
    assert_eq!(ds.shape(), vec![rows as usize, COLS]);
    assert!(ds.attr("columns").is_ok(), "the names come back");
    (c_peak, d_peak)
}

#[cfg(feature = "hdf5")]
#[test]
fn hdf5_datasets_stream_in_flat_memory() {
    assert_flat(" HDF5 dataset (chunked, gzip) to .h5", hdf5_through_files);
}

/// Chunks that are huge once decoded (`fixtures/limits`: constant values, kB on disk) decode
/// within the memory limit at any thread count, or are refused before anything is allocated:
/// 16 chunks of 64 MiB of f32 at 4 threads once peaked at 590 MiB; under `--memory-limit
/// 512M` they stay below it, and under 256M (a chunk needs 192 MiB of the half it may use)
/// they are refused. Two chunks of 1 GiB each are refused at the default limit.
#[test]
fn decoding_stays_within_the_memory_limit_whatever_chunks_claim() {
    let fixture = |n: &str| common::fixture(&format!("limits/{n}"));
    let big = fixture("const_16x64MiB.baler");
    for threads in ["1", "4"] {
        let mut child = baler()
            .args([
                "decompress",
                &big,
                "-o",
                "-",
                "--memory-limit",
                "512M",
                "-T",
                threads,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let m = Monitor::start(vec![child.id()]);
        let mut out = child.stdout.take().unwrap();
        // 2^28 values of 1.5, coded within 0.1: 1024 blocks of 1 MiB, then the end.
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            out.read_exact(&mut buf).unwrap();
            assert!(
                buf.chunks(4)
                    .all(|c| (f32::from_le_bytes(c.try_into().unwrap()) - 1.5).abs() <= 0.1),
                "values"
            );
        }
        assert_eq!(out.read(&mut buf).unwrap(), 0, "no more than 2^28 values");
        wait_ok(child, "decompress under 512M");
        let peak = m.finish()[0];
        assert!(
            peak < 512,
            "{threads} threads: peak {peak} MiB over the 512 MiB limit"
        );
        eprintln!("64 MiB chunks, {threads} threads, --memory-limit 512M: peak {peak} MiB");
    }
    for (file, limit, needs) in [
        (big.as_str(), "256M", "needs 193 MiB"),
        (&fixture("const_2x1GiB.baler"), "1G", "needs 3073 MiB"),
    ] {
        let o = baler()
            .args(["decompress", file, "-o", "-", "--memory-limit", limit])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            err.contains(needs) && err.contains("--memory-limit"),
            "{err}"
        );
        assert!(o.stdout.is_empty());
    }
}
