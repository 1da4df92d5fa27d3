//! The real `baler` binary: round trips through files and pipes, and clear failures.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use baler::ArrayData;
use common::cli::{baler, fails, ok, p, piped, piped_output, run, tmp};
use common::{Expected, assert_within, fixture, load_npy};

fn rel_bounds(data: &[f32], width: usize, rel: f64) -> Vec<Expected> {
    (0..width)
        .map(|j| {
            let col = data
                .iter()
                .skip(j)
                .step_by(width)
                .filter(|v| v.is_finite())
                .map(|&v| v as f64);
            let (lo, hi) = col.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            });
            Expected::Abs(rel * (hi - lo))
        })
        .collect()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn f32s(data: &ArrayData) -> &[f32] {
    match data {
        ArrayData::F32(v) => v,
        _ => panic!("expected f32"),
    }
}

#[test]
fn npy_file_round_trip_with_default_names() {
    let d = tmp();
    let src = p(d.path(), "delphes.npy");
    fs::copy(fixture("delphes_16k.npy"), &src).unwrap();
    ok(&["compress", &src, "--bound", "rel:1e-3", "-q"]);
    let packed = format!("{src}.baler");
    assert!(Path::new(&packed).exists());
    // `--sync` (before or after the command) flushes the output before the rename: the same
    // bytes.
    let synced = p(d.path(), "synced.baler");
    ok(&[
        "--sync", "compress", &src, "-b", "rel:1e-3", "-o", &synced, "-q",
    ]);
    assert_eq!(fs::read(&packed).unwrap(), fs::read(&synced).unwrap());
    fs::remove_file(&src).unwrap();
    ok(&["decompress", &packed, "-q", "--sync"]);
    let (orig, shape) = load_npy(&fixture("delphes_16k.npy"));
    let (back, back_shape) = load_npy(&src);
    assert_eq!(shape, back_shape);
    assert_within(
        f32s(&orig),
        f32s(&back),
        16,
        &rel_bounds(f32s(&orig), 16, 1e-3),
    );
    // No temporary files are left behind.
    let names: Vec<_> = fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

#[test]
fn raw_files_and_shapes() {
    let d = tmp();
    let (orig, _) = load_npy(&fixture("nexo_8k.npy"));
    let raw = p(d.path(), "x.raw");
    fs::write(&raw, orig.as_le_bytes()).unwrap();
    let packed = p(d.path(), "x.baler");
    ok(&[
        "compress", &raw, "--dtype", "f32", "--shape", "-1,10", "-o", &packed, "-b", "abs:0.01",
        "-q",
    ]);
    let out = p(d.path(), "y.raw");
    ok(&["decompress", &packed, "-o", &out, "-q"]);
    let back: Vec<f32> = bytemuck::pod_collect_to_vec(&fs::read(&out).unwrap());
    assert_within(f32s(&orig), &back, 10, &[Expected::Abs(0.01); 10]);
    // The same container decompresses to .npy by extension.
    let npy = p(d.path(), "y.npy");
    ok(&["decompress", &packed, "-o", &npy, "-q"]);
    assert_eq!(load_npy(&npy).1, vec![8192, 10]);
    // A shape that does not fit the file is refused with both sizes named.
    fails(
        &[
            "compress",
            &raw,
            "--dtype",
            "f32",
            "--shape",
            "1000,10",
            "-o",
            &p(d.path(), "z"),
            "-b",
            "lossless",
        ],
        1,
        "needs 40000 bytes",
    );
    fails(
        &[
            "compress",
            &raw,
            "--dtype",
            "f32",
            "--shape",
            "-1,7",
            "-o",
            &p(d.path(), "z"),
            "-b",
            "lossless",
        ],
        1,
        "not a whole number",
    );
    assert!(!Path::new(&p(d.path(), "z")).exists());
}

#[test]
fn standard_input_and_output() {
    let npy = fs::read(fixture("cms_ak4jets.npy")).unwrap();
    let packed = piped(&["compress", "-", "--bound", "rel:1e-4", "-q"], &npy);
    let raw = piped(&["decompress", "-", "-o", "-", "-q"], &packed);
    let (orig, _) = load_npy(&fixture("cms_ak4jets.npy"));
    let back: Vec<f32> = bytemuck::pod_collect_to_vec(&raw);
    // Statistics come from the first records of a stream; this input fits in them whole.
    assert_within(f32s(&orig), &back, 59, &rel_bounds(f32s(&orig), 59, 1e-4));

    // Raw values of unknown length on stdin, decompressed to .npy (header fixed up at the end).
    let d = tmp();
    let packed = piped(
        &[
            "compress", "-", "--dtype", "f32", "--shape", "-1,59", "-b", "lossless", "-q",
        ],
        &orig.as_le_bytes(),
    );
    let c = p(d.path(), "s.baler");
    fs::write(&c, &packed).unwrap();
    let out = p(d.path(), "s.npy");
    ok(&["decompress", &c, "-o", &out, "-q"]);
    let (back, shape) = load_npy(&out);
    assert_eq!(shape, vec![1636, 59]);
    assert_eq!(back, orig, "lossless is bit-exact");
}

#[test]
fn lossless_is_bit_exact_with_special_values() {
    let d = tmp();
    let vals: Vec<f32> = vec![
        f32::NAN,
        f32::from_bits(0x7fc0_1234),
        -0.0,
        0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e-45,
        f32::MAX,
        3.5,
        -2.25,
    ]
    .into_iter()
    .cycle()
    .take(10_000)
    .collect();
    let raw = p(d.path(), "s.f32");
    fs::write(&raw, bytemuck::cast_slice(&vals)).unwrap();
    for bound in ["lossless", "rel:1e-2", "abs:0.5"] {
        let c = p(d.path(), "s.baler");
        ok(&[
            "compress", &raw, "--dtype", "f32", "--shape", "-1", "-o", &c, "-b", bound, "-f", "-q",
        ]);
        let out = p(d.path(), "o.raw");
        ok(&["decompress", &c, "-o", &out, "-f", "-q"]);
        let back: Vec<f32> = bytemuck::pod_collect_to_vec(&fs::read(&out).unwrap());
        let e = match bound {
            "lossless" => 0.0,
            "abs:0.5" => 0.5,
            _ => 1e-2 * (f32::MAX as f64 - (-2.25f64)),
        };
        assert_within(&vals, &back, 1, &[Expected::Abs(e)]);
    }
}

#[test]
fn column_bounds_by_name_and_index() {
    let d = tmp();
    let names = fs::read_to_string(fixture("delphes_16k.columns")).unwrap();
    let c = p(d.path(), "x.baler");
    ok(&[
        "compress",
        &fixture("delphes_16k.npy"),
        "-o",
        &c,
        "-b",
        "rel:1e-2",
        "--names",
        names.trim(),
        "--bound-col",
        "PID=lossless",
        "--bound-col",
        "0=abs:1e-4",
        "-q",
    ]);
    let info = String::from_utf8(ok(&["info", &c]).stdout).unwrap();
    assert!(info.contains("PID"), "{info}");
    assert!(info.contains("lossless"), "{info}");
    let out = p(d.path(), "x.npy");
    ok(&["decompress", &c, "-o", &out, "-q"]);
    let (orig, _) = load_npy(&fixture("delphes_16k.npy"));
    let (back, _) = load_npy(&out);
    let mut bounds = rel_bounds(f32s(&orig), 16, 1e-2);
    bounds[0] = Expected::Abs(1e-4);
    bounds[13] = Expected::Abs(0.0); // PID
    assert_within(f32s(&orig), f32s(&back), 16, &bounds);
    fails(
        &[
            "compress",
            &fixture("delphes_16k.npy"),
            "-o",
            &p(d.path(), "y"),
            "-b",
            "rel:1e-2",
            "--names",
            names.trim(),
            "--bound-col",
            "Pid=lossless",
        ],
        1,
        "PID",
    );
}

#[test]
fn bounds_file_mixes_modes_by_name_glob_and_index() {
    let d = tmp();
    let names = fs::read_to_string(fixture("delphes_16k.columns")).unwrap();
    let bounds = p(d.path(), "delphes.bounds");
    fs::write(
        &bounds,
        "# NanoAOD-like: kinematics to mantissa bits, angles absolute, ids exact\n\
         default   bits:10\n\
         P?        bits:12     # Px, Py, Pz, PT\n\
         Eta       abs:1e-3\n\
         Phi = abs:1e-3\n\
         PID       lossless\n\
         15        lossless    # Charge\n\
         Muon_*    bits:7      # matches nothing here: fine for a glob\n",
    )
    .unwrap();
    let c = p(d.path(), "x.baler");
    ok(&[
        "compress",
        &fixture("delphes_16k.npy"),
        "-o",
        &c,
        "--bounds",
        &bounds,
        "--names",
        names.trim(),
        "--bound-col",
        "Status=pwrel:1e-3",
        "-q",
    ]);
    // info shows each column's bound as given and as resolved.
    let info = String::from_utf8(ok(&["info", &c]).stdout).unwrap();
    for want in [
        "bits:10 -> pwrel:4.8828125e-4",
        "bits:12 -> pwrel:1.220703125e-4",
        "abs:1e-3",
        "lossless",
        "pwrel:1e-3",
    ] {
        assert!(info.contains(want), "{want} not in {info}");
    }
    let out = p(d.path(), "x.npy");
    ok(&["decompress", &c, "-o", &out, "-q"]);
    let (orig, _) = load_npy(&fixture("delphes_16k.npy"));
    let (back, _) = load_npy(&out);
    let bits = |n: i32| Expected::PwRel(1.0 / 2f64.powi(n + 1));
    let mut want = vec![bits(10); 16];
    for j in [2, 3, 4, 5] {
        want[j] = bits(12);
    }
    want[6] = Expected::Abs(1e-3);
    want[7] = Expected::Abs(1e-3);
    want[13] = Expected::Abs(0.0);
    want[14] = Expected::PwRel(1e-3);
    want[15] = Expected::Abs(0.0);
    assert_within(f32s(&orig), f32s(&back), 16, &want);
    // evaluate checks every column against its own mode.
    let report = String::from_utf8(
        ok(&[
            "evaluate",
            &fixture("delphes_16k.npy"),
            &c,
            "--json",
            "-",
            "-q",
        ])
        .stdout,
    )
    .unwrap();
    assert!(report.contains("\"bound_kind\": \"pwrel\""), "{report}");
    assert!(!report.contains("\"bound_met\": false"), "{report}");
    // ...and draws each column's relative error against its point-wise bound.
    let plots = p(d.path(), "plots");
    ok(&[
        "evaluate",
        &fixture("delphes_16k.npy"),
        &c,
        "--plots",
        &plots,
        "-q",
    ]);
    let pngs = fs::read_dir(&plots)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "png")
        })
        .count();
    assert_eq!(pngs, 17, "16 columns and the overview");

    // --bound replaces the file's default; a file without one needs --bound.
    let partial = p(d.path(), "partial.bounds");
    fs::write(&partial, "PT bits:8\n").unwrap();
    let out = p(d.path(), "y.baler");
    let with = |extra: &[&str]| -> Vec<String> {
        let fix = fixture("delphes_16k.npy");
        let mut a: Vec<String> = [
            "compress",
            &fix,
            "-o",
            &out,
            "--names",
            names.trim(),
            "--bounds",
            &partial,
            "-f",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    fails(&refs(&with(&[])), 1, "no 'default SPEC' line");
    ok(&refs(&with(&["-b", "rel:1e-3", "-q"])));
    // A bad line names the file and the line; a name that is no column is an error.
    fs::write(&partial, "default rel:1e-3\nPT bits:99\n").unwrap();
    fails(&refs(&with(&[])), 1, "line 2");
    fs::write(&partial, "default rel:1e-3\nJet_pt bits:10\n").unwrap();
    fails(&refs(&with(&[])), 1, "column 'Jet_pt' not found");
    fails(
        &[
            "compress",
            &fixture("delphes_16k.npy"),
            "--bounds",
            &p(d.path(), "missing.bounds"),
        ],
        1,
        "cannot read bounds file",
    );
    fails(
        &["compress", &fixture("delphes_16k.npy"), "-b", "bits:53"],
        2,
        "between 1 and 52",
    );
}

#[test]
fn refuses_to_overwrite_without_force() {
    let d = tmp();
    let c = p(d.path(), "x.baler");
    fs::write(&c, b"precious").unwrap();
    fails(
        &[
            "compress",
            &fixture("cms_ak4jets.npy"),
            "-o",
            &c,
            "-b",
            "rel:1e-3",
        ],
        1,
        "-f",
    );
    assert_eq!(fs::read(&c).unwrap(), b"precious");
    ok(&[
        "compress",
        &fixture("cms_ak4jets.npy"),
        "-o",
        &c,
        "-b",
        "rel:1e-3",
        "-f",
        "-q",
    ]);
    assert_ne!(fs::read(&c).unwrap(), b"precious");
}

/// Compressing or decompressing a file onto itself (by its name, with -f, or through a link) is
/// refused and the input kept: `compress F -o F -f` once replaced the original.
#[test]
fn the_input_is_never_its_own_output() {
    let d = tmp();
    let npy = p(d.path(), "t.npy");
    fs::copy(fixture("cms_ak4jets.npy"), &npy).unwrap();
    let original = fs::read(&npy).unwrap();
    let link = p(d.path(), "link.npy");
    std::os::unix::fs::symlink(&npy, &link).unwrap();
    for out in [&npy, &link] {
        for force in [false, true] {
            let mut args = vec!["compress", &npy, "-b", "rel:1e-3", "-o", out];
            if force {
                args.push("-f");
            }
            fails(&args, 1, "is the input itself");
        }
    }
    assert_eq!(fs::read(&npy).unwrap(), original);
    let c = p(d.path(), "t.baler");
    ok(&["compress", &npy, "-b", "rel:1e-3", "-o", &c, "-q"]);
    let packed = fs::read(&c).unwrap();
    fails(
        &["decompress", &c, "-o", &c, "-f"],
        1,
        "is the input itself",
    );
    assert_eq!(fs::read(&c).unwrap(), packed);
    let left: Vec<_> = fs::read_dir(d.path()).unwrap().collect();
    assert_eq!(left.len(), 3, "no temporary file left: {left:?}");
}

/// A device or FIFO as the output is written in place as a stream, never replaced by a file
/// (`-o /dev/null -f` once replaced the system's /dev/null): a FIFO read by another thread
/// stays a FIFO and gets the whole output; /dev/null works without -f, as in zstd.
#[test]
fn devices_and_fifos_are_written_as_streams() {
    use std::os::unix::fs::FileTypeExt;
    let d = tmp();
    let mkfifo = |name: &str| {
        let path = p(d.path(), name);
        let made = std::process::Command::new("mkfifo").arg(&path).status();
        assert!(made.unwrap().success());
        path
    };
    let fifo = mkfifo("pipe.raw");
    let c = p(d.path(), "t.baler");
    let npy = fixture("cms_ak4jets.npy");
    let compress_to = |out: &str| ok(&["compress", &npy, "-b", "rel:1e-3", "-o", out, "-q"]);
    compress_to(&c);
    for force in [false, true] {
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read(fifo).unwrap())
        };
        let mut args = vec!["decompress", &c, "-o", &fifo, "-q"];
        if force {
            args.push("-f");
        }
        ok(&args);
        let got = reader.join().unwrap();
        assert_eq!(got.len(), 1636 * 59 * 4, "every value, raw");
        assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
    }
    compress_to("/dev/null");
    ok(&["decompress", &c, "-o", "/dev/null", "-q"]);
    assert!(
        fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device()
    );
    // An HDF5 file needs a regular file.
    let h5 = mkfifo("pipe.h5");
    fails(&["decompress", &c, "-o", &h5], 1, "regular file");
}

/// A full disk (/dev/full) is reported as a failure to write the output, naming it, while
/// compressing and decompressing, to a file or to standard output: it was once reported as
/// "reading INPUT", or without any name.
#[test]
fn a_full_disk_names_the_output() {
    let d = tmp();
    let c = p(d.path(), "t.baler");
    let npy = fixture("cms_ak4jets.npy");
    ok(&["compress", &npy, "-b", "rel:1e-3", "-o", &c, "-q"]);
    let full = || {
        fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let runs: [(&[&str], &str); 2] = [
        (&["compress", &npy, "-b", "rel:1e-3"], "compressing"),
        (&["decompress", &c], "decompressing"),
    ];
    for (args, doing) in runs {
        let mut to_file = args.to_vec();
        to_file.extend(["-o", "/dev/full", "-q"]);
        let e = fails(&to_file, 1, "writing /dev/full");
        assert!(e.contains(doing) && e.contains("No space left"), "{e}");
        let mut to_stdout = args.to_vec();
        to_stdout.extend(["-o", "-", "-q"]);
        let o = baler().args(&to_stdout).stdout(full()).output().unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1));
        assert!(e.contains("writing standard output: No space left"), "{e}");
    }
}

/// SIGINT and SIGTERM while writing remove the temporary output and exit as the signal would
/// (130, 143): they once left hidden files of up to 150 MB behind.
#[test]
fn signals_leave_no_temporary_file() {
    for (sig, code) in [("-INT", 130), ("-TERM", 143)] {
        let d = tmp();
        let out = p(d.path(), "o.baler");
        let mut child = baler()
            .args([
                "compress", "-", "--dtype", "f32", "--shape", "-1,4", "-b", "abs:0.1",
            ])
            .args(["--chunk-size", "64K", "-o", &out, "-q"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let block: Vec<u8> = (0..1u32 << 16)
            .flat_map(|i| (i as f32).to_le_bytes())
            .collect();
        // Enough for chunks to reach the file, and the stream left open.
        for _ in 0..8 {
            stdin.write_all(&block).unwrap();
        }
        stdin.flush().unwrap();
        let started = std::time::Instant::now();
        while fs::read_dir(d.path()).unwrap().count() == 0 {
            assert!(
                started.elapsed().as_secs() < 30,
                "no temporary file appeared"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let killed = std::process::Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "{sig}");
        drop(stdin);
        let left: Vec<_> = fs::read_dir(d.path()).unwrap().collect();
        assert!(left.is_empty(), "{sig} left {left:?}");
    }
}

#[test]
fn usage_errors_exit_2_and_runtime_errors_exit_1() {
    fails(&["compress", &fixture("cms_ak4jets.npy")], 2, "--bound");
    fails(
        &["compress", &fixture("cms_ak4jets.npy"), "-b", "rel:-1"],
        2,
        "not negative",
    );
    fails(
        &["compress", &fixture("cms_ak4jets.npy"), "-b", "fast"],
        2,
        "invalid bound",
    );
    fails(&["frobnicate"], 2, "unrecognized");
    fails(
        &[
            "compress",
            &fixture("cms_ak4jets.npy"),
            "-b",
            "rel:1e-3",
            "--device",
            "tpu",
        ],
        2,
        "expected cpu, cuda or cuda:N",
    );
    fails(
        &[
            "compress",
            &fixture("cms_ak4jets.npy"),
            "-b",
            "rel:1e-3",
            "--chunk-size",
            "100000G",
        ],
        2,
        "too large",
    );
    fails(
        &["compress", "/no/such/file.npy", "-b", "rel:1e-3"],
        1,
        "no such file",
    );
    fails(&["decompress", "/no/such/file.baler"], 1, "no such file");
    fails(
        &[
            "decompress",
            &fixture("cms_ak4jets.npy"),
            "-o",
            "/tmp/never-written",
        ],
        1,
        "not a baler container",
    );
    fails(
        &["decompress", &fixture("cms_ak4jets.npy")],
        1,
        "does not end in .baler",
    );
    let d = tmp();
    let (cms, x) = (fixture("cms_ak4jets.npy"), p(d.path(), "x"));
    let cms_to_x = |more: &[&'static str]| -> Vec<&str> {
        let mut a = vec!["compress", cms.as_str(), "-o", x.as_str(), "-b", "rel:1e-3"];
        a.extend_from_slice(more);
        a
    };
    fails(&cms_to_x(&["--bound-col", "59=abs:1"]), 1, "out of range");
    fails(
        &[
            "compress",
            &fixture("cfd_decay_ux.npy"),
            "-o",
            &p(d.path(), "x"),
            "-b",
            "rel:1e-3",
            "--bound-col",
            "0=abs:1",
        ],
        1,
        "tables",
    );
    // Asking for a GPU that a build without CUDA cannot use, or one that is not there, says
    // what to do, before any work (dfdx itself would panic on a missing GPU).
    let (device, needle) = if cfg!(feature = "cuda") {
        ("cuda:99", "train on the CPU with --device cpu")
    } else {
        ("cuda", "--features cuda")
    };
    fails(&cms_to_x(&["--device", device]), 1, needle);
    assert_eq!(
        fs::read_dir(d.path()).unwrap().count(),
        0,
        "no output on failure"
    );
    assert!(run(&["--help"]).status.success());
    assert!(run(&["--version"]).status.success());
}

fn compressed_fixture(d: &Path) -> (PathBuf, Vec<u8>) {
    let c = d.join("x.baler");
    ok(&[
        "compress",
        &fixture("delphes_16k.npy"),
        "-o",
        &c.to_string_lossy(),
        "-b",
        "rel:1e-3",
        "--chunk-size",
        "64K",
        "-q",
    ]);
    let bytes = fs::read(&c).unwrap();
    (c, bytes)
}

#[test]
fn damaged_containers_fail_clearly_and_leave_no_output() {
    let d = tmp();
    let (_, bytes) = compressed_fixture(d.path());
    let bad = d.path().join("bad.baler");
    let out = p(d.path(), "bad.npy");
    // A flipped bit in the middle of a chunk.
    let mut g = bytes.clone();
    let mid = bytes.len() / 2;
    g[mid] ^= 0x04;
    fs::write(&bad, &g).unwrap();
    fails(
        &["decompress", &bad.to_string_lossy(), "-o", &out],
        1,
        "chunk",
    );
    assert!(!Path::new(&out).exists());
    // Cut short.
    fs::write(&bad, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let err = fails(
        &["decompress", &bad.to_string_lossy(), "-o", &out],
        1,
        "truncated",
    );
    assert!(err.contains("hint"), "{err}");
    assert!(!Path::new(&out).exists());
    // Cut inside the footer.
    fs::write(&bad, &bytes[..bytes.len() - 3]).unwrap();
    fails(
        &["decompress", &bad.to_string_lossy(), "-o", &out],
        1,
        "truncated",
    );
    // A newer format version.
    let mut g = bytes.clone();
    let newer = baler::container::FORMAT_VERSION + 1;
    g[8..10].copy_from_slice(&newer.to_le_bytes());
    fs::write(&bad, &g).unwrap();
    fails(
        &["decompress", &bad.to_string_lossy(), "-o", &out],
        1,
        &format!("version {newer}"),
    );
    assert!(!Path::new(&out).exists());
    // Through a pipe too.
    let mut child = baler()
        .args(["decompress", "-", "-o", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let cut = bytes[..bytes.len() / 2].to_vec();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&cut);
    });
    let o = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("truncated"));
}

#[test]
fn truncated_input_is_an_error_not_a_short_output() {
    let d = tmp();
    let npy = fs::read(fixture("cms_ak4jets.npy")).unwrap();
    // A .npy whose data ends early, as a file and as a stream.
    let short = p(d.path(), "short.npy");
    fs::write(&short, &npy[..npy.len() - 1000]).unwrap();
    fails(
        &[
            "compress",
            &short,
            "-b",
            "rel:1e-3",
            "-o",
            &p(d.path(), "o.baler"),
        ],
        1,
        "truncated",
    );
    let mut child = baler()
        .args([
            "compress",
            "-",
            "-b",
            "rel:1e-3",
            "-o",
            &p(d.path(), "o.baler"),
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&npy[..npy.len() - 1000])
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("ended after"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!Path::new(&p(d.path(), "o.baler")).exists());
    // Nor a temporary file, though the pipeline had started writing it.
    let left: Vec<_> = fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("short.npy")],
        "left behind: {left:?}"
    );
}

/// A `.npy` header declaring 2^64 − 1 records (the reader's mark of an unknown length) or more
/// bytes than 2^64 is refused, as a file and as a stream, whatever the model option: it once
/// compressed to an empty container with exit 0.
#[test]
fn impossible_npy_shapes_are_errors_not_empty_containers() {
    let d = tmp();
    let npy = |shape: &str| {
        let mut h = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(h.as_bytes());
        b.extend_from_slice(&[0u8; 64]);
        b
    };
    let out = p(d.path(), "o.baler");
    for (shape, needle) in [
        ("(18446744073709551615,)", "2^64 - 1"),
        ("(18446744073709551615, 2)", "2^64 - 1"),
        ("(4611686018427387904,)", "more bytes than 2^64"),
        ("(4294967296, 4294967296)", "more bytes than 2^64"),
    ] {
        let f = p(d.path(), "big.npy");
        fs::write(&f, npy(shape)).unwrap();
        for model in ["none", "auto"] {
            let msg = fails(
                &[
                    "compress", &f, "-b", "rel:1e-3", "--model", model, "-o", &out,
                ],
                1,
                needle,
            );
            assert!(msg.contains("big.npy"), "{msg}");
            assert!(!Path::new(&out).exists());
        }
        let o = piped_output(
            &["compress", "-", "-b", "rel:1e-3", "-o", &out],
            &npy(shape),
        );
        assert_eq!(o.status.code(), Some(1), "{shape} as a stream");
        assert!(String::from_utf8_lossy(&o.stderr).contains(needle));
        assert!(!Path::new(&out).exists());
    }
}

#[test]
fn info_describes_the_container() {
    let d = tmp();
    let (c, _) = compressed_fixture(d.path());
    let info =
        String::from_utf8(ok(&["info", &c.to_string_lossy(), "--chunks", "--columns"]).stdout)
            .unwrap();
    let version = format!("format version {}", baler::container::FORMAT_VERSION);
    for needle in [
        "f32 16384 × 16",
        "table",
        "rel:1e-3",
        &version,
        "chunk",
        "bits/value",
        "x,",
    ] {
        let needle = if needle == "x," { "x" } else { needle };
        assert!(info.contains(needle), "info lacks '{needle}':\n{info}");
    }
    let info = String::from_utf8(ok(&["info", &fixture("cfd_decay_ux.npy")]).stdout).unwrap();
    assert!(info.contains("60 × 50 × 50"), "{info}");
    // A bit-exact column's transform is named: the telescope frame's error plane from its
    // science plane (format version 10).
    let frame = fixture("format/v10/field3d_hst_lossless_sigma.baler");
    let info = String::from_utf8(ok(&["info", &frame, "--columns"]).stdout).unwrap();
    assert!(info.contains("lossless transforms"), "{info}");
    assert!(
        info.lines()
            .any(|l| l.contains("1/1") && l.ends_with("sigma 1")),
        "{info}"
    );
}

#[test]
fn fields_and_f64_through_the_binary() {
    let d = tmp();
    for (name, extra) in [
        ("ocean_temp.npy", vec!["--layout", "field"]),
        ("tau_pt_f64.npy", vec![]),
        ("cfd_decay_ux.npy", vec!["-T", "1"]),
    ] {
        let c = p(d.path(), "f.baler");
        let fix = fixture(name);
        let mut args = vec![
            "compress",
            &fix,
            "-o",
            &c,
            "-b",
            "rel:1e-4",
            "-f",
            "-q",
            "--chunk-size",
            "64K",
        ];
        args.extend(extra.iter().copied());
        ok(&args);
        let out = p(d.path(), "f.npy");
        ok(&["decompress", &c, "-o", &out, "-f", "-q"]);
        let (orig, shape) = load_npy(&fix);
        let (back, back_shape) = load_npy(&out);
        assert_eq!(shape, back_shape);
        match (&orig, &back) {
            (ArrayData::F32(a), ArrayData::F32(b)) => {
                let e = rel_bounds(a, 1, 1e-4);
                assert_within(a, b, 1, &e);
            }
            (ArrayData::F64(a), ArrayData::F64(b)) => {
                let (lo, hi) = a
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
                        (l.min(v), h.max(v))
                    });
                assert_within(a, b, 1, &[Expected::Abs(1e-4 * (hi - lo))]);
            }
            _ => panic!("dtype changed"),
        }
    }
}

#[test]
fn broken_pipe_is_quiet() {
    let c = {
        let d = tmp();
        let (c, bytes) = compressed_fixture(d.path());
        let _ = c;
        bytes
    };
    let mut child = baler()
        .args(["decompress", "-", "-o", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&c);
    });
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 100];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let o = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked") && !err.contains("error"), "{err}");
}

#[test]
fn a_stream_failing_after_its_pipeline_started_leaves_no_file() {
    // A .npy on stdin promising 400 000 rows of 16 values but ending after 300 000: longer than
    // the 16 MiB statistics sample, so chunks are already being written when the input ends.
    let d = tmp();
    let out = p(d.path(), "o.baler");
    let mut child = baler()
        .args(["compress", "-", "-b", "rel:1e-3", "-o", &out, "-q"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        stdin
            .write_all(&baler::io::npy::header_bytes(
                baler::DType::F32,
                &[400_000, 16],
                false,
            ))
            .unwrap();
        let rows: Vec<f32> = (0..300_000 * 16)
            .map(|i| (i as f32 * 0.001).sin())
            .collect();
        let _ = stdin.write_all(bytemuck::cast_slice(&rows));
    });
    let o = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("ended after"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let left: Vec<_> = fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
