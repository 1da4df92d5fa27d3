//! The learned predictor end to end: trained on a sample, shipped in the container, and the
//! bound, the determinism across thread counts and the fallbacks that go with it.

mod common;

use std::process::Command;

use baler::model::Model;
use baler::model::train::{TrainDevice, TrainOptions, fit};
use baler::{ArraySpec, BoundSpec, Bounds, CompressOptions, DType, Layout};
use common::{Lcg, round_trip};

/// Jets-like records: pt, eta, phi, then px, py, pz, E derived from them (as in the HEP
/// tables), and a noise column nothing predicts.
fn kinematics(rows: usize, seed: u64) -> Vec<f32> {
    let mut rng = Lcg(seed);
    let mut v = Vec::with_capacity(rows * 8);
    for _ in 0..rows {
        let pt = 20.0 + 200.0 * rng.unit().powi(3);
        let eta = (rng.unit() * 2.0 - 1.0) * 2.5;
        let phi = (rng.unit() * 2.0 - 1.0) * std::f64::consts::PI;
        let m = 5.0 + 10.0 * rng.unit();
        let (px, py, pz) = (pt * phi.cos(), pt * phi.sin(), pt * eta.sinh());
        let e = (px * px + py * py + pz * pz + m * m).sqrt();
        let noise = rng.normal();
        for x in [pt, eta, phi, m, px, py, pz, e] {
            v.push(x as f32);
        }
        let _ = noise;
    }
    v
}

fn spec(rows: usize) -> ArraySpec {
    let mut s = ArraySpec::new(DType::F32, vec![rows as u64, 8]);
    s.layout = Layout::Table;
    s
}

fn trained(data: &[f32], bound: BoundSpec) -> Model {
    trained_on(data, bound, TrainDevice::Cpu)
}

fn trained_on(data: &[f32], bound: BoundSpec, device: TrainDevice) -> Model {
    let sample: Vec<f64> = data.iter().map(|&x| f64::from(x)).collect();
    let opts = TrainOptions {
        hidden: 16,
        epochs: 20,
        device,
        ..TrainOptions::default()
    };
    let (model, _) = fit(&sample, 8, &[bound; 8], 0, &opts, |_, _, _| {}).unwrap();
    model
}

#[test]
fn the_model_pays_keeps_the_bound_and_is_deterministic() {
    let rows = 30_000;
    let data = kinematics(rows, 1);
    let bound = BoundSpec::Rel(1e-3);
    let model = trained(&data[..8 * 10_000], bound);
    assert!(model.active_columns() >= 3, "{}", model.active_columns());
    // px and py come from pt·cos φ and pt·sin φ: the kernel evaluates derived features too.
    assert!(!model.features.is_empty());
    let plain = CompressOptions::new(Bounds::new(bound)).chunk_bytes(1 << 18);
    let (without, _) = round_trip(&data, &spec(rows), &plain);
    let mut sizes = Vec::new();
    let mut outputs = Vec::new();
    for threads in [1, 3] {
        let opts = plain.clone().model(model.clone()).threads(threads);
        let (with, header) = round_trip(&data, &spec(rows), &opts);
        assert_eq!(Model::read(&header.model, 8).unwrap(), model);
        sizes.push(with.len());
        outputs.push(with);
    }
    assert_eq!(outputs[0], outputs[1], "output depends on the thread count");
    assert!(
        (sizes[0] as f64) < 0.95 * without.len() as f64,
        "with the model {} bytes, without {}",
        sizes[0],
        without.len()
    );
}

/// Built with the `cuda` feature, training runs on the GPU (a GPU is then expected: this test
/// fails without one). The weights differ from the CPU's in their rounding, not in what they
/// learn; whichever they are, they are stored, so the bound and the bits decoded do not depend
/// on where the model was trained.
#[cfg(feature = "cuda")]
#[test]
fn a_model_trained_on_the_gpu_pays_like_one_trained_on_the_cpu() {
    let rows = 30_000;
    let data = kinematics(rows, 1);
    let bound = BoundSpec::Rel(1e-3);
    let plain = CompressOptions::new(Bounds::new(bound)).chunk_bytes(1 << 18);
    let (without, _) = round_trip(&data, &spec(rows), &plain);
    let mut sizes = Vec::new();
    for device in [TrainDevice::Cpu, TrainDevice::Cuda(0)] {
        let model = trained_on(&data[..8 * 10_000], bound, device);
        assert!(
            model.active_columns() >= 3,
            "{device}: {}",
            model.active_columns()
        );
        let mut outputs = Vec::new();
        for threads in [1, 3] {
            let opts = plain.clone().model(model.clone()).threads(threads);
            outputs.push(round_trip(&data, &spec(rows), &opts).0);
        }
        assert_eq!(
            outputs[0], outputs[1],
            "{device}: depends on the thread count"
        );
        sizes.push(outputs[0].len() as f64);
    }
    assert!(
        sizes[1] < 0.95 * without.len() as f64,
        "{sizes:?} vs {}",
        without.len()
    );
    assert!(
        (sizes[1] / sizes[0] - 1.0).abs() < 0.02,
        "GPU-trained {} bytes, CPU-trained {}",
        sizes[1],
        sizes[0]
    );
}

#[test]
fn values_outside_the_training_sample_still_meet_the_bound() {
    // Train on one regime, compress another (10× the momenta, special values): the model
    // predicts badly there, which costs bytes only.
    let train_data = kinematics(5000, 2);
    let model = trained(&train_data, BoundSpec::Abs(0.01));
    let mut data: Vec<f32> = kinematics(8000, 3).iter().map(|&x| x * 10.0).collect();
    for (i, s) in [f32::NAN, f32::INFINITY, -0.0, 1e30, f32::MIN_POSITIVE]
        .into_iter()
        .enumerate()
    {
        data[i * 977 + 4] = s;
        data[i * 1313 + 5] = s;
    }
    for threads in [1, 2] {
        let opts = CompressOptions::new(Bounds::new(BoundSpec::Abs(0.01)))
            .chunk_bytes(1 << 16)
            .threads(threads)
            .model(model.clone());
        round_trip(&data, &spec(8000), &opts);
    }
}

fn baler() -> Command {
    Command::new(env!("CARGO_BIN_EXE_baler"))
}

/// Runs `cmd` and asserts it succeeded, showing its standard error if not.
fn succeed(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn train_then_compress_with_the_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = &common::fixture("delphes_16k.npy");
    let model = dir.path().join("delphes.bmdl");
    succeed(
        baler()
            .args([
                "train", fixture, "--bound", "rel:1e-3", "--hidden", "8", "-q", "-o",
            ])
            .arg(&model),
    );
    let loaded = Model::load(&model).unwrap();
    assert!(loaded.active_columns() > 0);
    // The loss curve and each column's inputs, beside the model.
    let curve = std::fs::read_to_string(dir.path().join("delphes.bmdl.json")).unwrap();
    assert!(
        curve.contains("\"epochs\"") && curve.contains("\"val_loss\""),
        "{curve}"
    );
    assert_eq!(curve.matches("\"unexplained\"").count(), 16, "{curve}");
    // Training again over them needs -f, for the model and for its .json and .png alike (they
    // were once overwritten without it), and leaves all three as they were.
    let png = dir.path().join("delphes.bmdl.png");
    let before: Vec<Vec<u8>> = [&model, &dir.path().join("delphes.bmdl.json"), &png]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    // With all three there, then with only the .json and .png.
    for gone in [None, Some(&model)] {
        if let Some(g) = gone {
            std::fs::remove_file(g).unwrap();
        }
        let out = baler()
            .args(["train", fixture, "--bound", "rel:1e-3", "-q", "-o"])
            .arg(&model)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("already exists") && err.contains("-f"),
            "{err}"
        );
    }
    std::fs::write(&model, &before[0]).unwrap();
    assert_eq!(std::fs::read(&png).unwrap(), before[2]);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        3,
        "no temporary file left"
    );

    let packed = dir.path().join("x.baler");
    let back = dir.path().join("x.npy");
    succeed(
        baler()
            .args(["compress", fixture, "--bound", "rel:1e-3", "-q", "--model"])
            .arg(&model)
            .arg("-o")
            .arg(&packed),
    );
    let info = baler().arg("info").arg(&packed).output().unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("conditional MLP"), "{info}");
    succeed(
        baler()
            .arg("decompress")
            .arg(&packed)
            .arg("-q")
            .arg("-o")
            .arg(&back),
    );

    // A damaged model file, a model for another width, a model for a field: clear errors.
    let mut bytes = std::fs::read(&model).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    let bad = dir.path().join("bad.bmdl");
    std::fs::write(&bad, &bytes).unwrap();
    for (input, m, want) in [
        (fixture, &bad, "damaged"),
        (&common::fixture("nexo_8k.npy"), &model, "columns"),
        (&common::fixture("cfd_decay_ux.npy"), &model, "field"),
    ] {
        let out = baler()
            .args(["compress", input, "--bound", "rel:1e-3", "-q", "--model"])
            .arg(m)
            .arg("-o")
            .arg(dir.path().join("y.baler"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{err}");
        assert!(!dir.path().join("y.baler").exists());
    }
}

/// `train --effort N` trains the model `compress --effort N` would (the same sample and
/// epochs: compressing with it gives the same file byte for byte), `--sample` still wins, and
/// effort 1, which trains nothing, is refused with nothing written; without `--effort`, train
/// keeps its own thorough budget (200,000 records, here the whole table).
#[test]
fn train_follows_an_effort_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = &common::fixture("delphes_16k.npy");
    let train = |name: &str, extra: &[&str]| {
        let model = dir.path().join(name);
        let out = baler()
            .args(["train", fixture, "--bound", "rel:1e-3", "-q", "-o"])
            .arg(&model)
            .args(extra)
            .output()
            .unwrap();
        let curve = std::fs::read_to_string(dir.path().join(format!("{name}.json")));
        (out, model, curve.unwrap_or_default())
    };
    let packed = |name: &str, extra: &[&std::ffi::OsStr]| {
        let out = dir.path().join(name);
        succeed(
            baler()
                .args(["compress", fixture, "--bound", "rel:1e-3", "-q", "-f", "-o"])
                .arg(&out)
                .args(extra),
        );
        std::fs::read(&out).unwrap()
    };
    let records = |curve: &str| -> usize {
        let at = curve.find("\"records\": ").expect("a records field") + 11;
        curve[at..]
            .split(',')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("{curve}"))
    };
    for effort in ["2", "3"] {
        let (out, model, curve) = train(&format!("e{effort}.bmdl"), &["-e", effort]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            curve.contains("\"epochs\": [\n    \n  ]"),
            "no network: {curve}"
        );
        assert_eq!(
            packed("with_model.baler", &["--model".as_ref(), model.as_os_str()]),
            packed("inline.baler", &["-e".as_ref(), effort.as_ref()]),
            "effort {effort}"
        );
    }
    let (_, _, two) = train("e2.bmdl", &["-e", "2", "-f"]);
    let (out, _, curve) = train("e2s.bmdl", &["-e", "2", "--sample", "14000"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(records(&curve) > records(&two), "{curve}");
    let (out, _, _) = train("e1.bmdl", &["-e", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--effort 1 trains no model"), "{err}");
    assert!(!dir.path().join("e1.bmdl").exists());
    assert!(!dir.path().join("e1.bmdl.json").exists());
    let (out, _, curve) = train("thorough.bmdl", &["--epochs", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(records(&curve) > records(&two), "{curve}");
}

/// A table through a pipe (a `.npy` or raw values of unknown length) gets a model trained on
/// its first records, read ahead and compressed with the rest: about as small as the file
/// compressed from disk (a uniform sample), clearly smaller than without a model, within the
/// bound; `baler train -` learns from a pipe the same way.
#[test]
fn a_table_through_a_pipe_gets_a_model_from_its_first_records() {
    use common::cli::piped;
    let dir = tempfile::tempdir().unwrap();
    let fixture = &common::fixture("delphes_16k.npy");
    let npy = std::fs::read(fixture).unwrap();
    let from_file = dir.path().join("file.baler");
    succeed(
        baler()
            .args(["compress", fixture, "--bound", "rel:1e-3", "-q", "-o"])
            .arg(&from_file),
    );
    let from_file = std::fs::read(&from_file).unwrap().len();
    let compress = ["compress", "-", "--bound", "rel:1e-3", "-q", "-o", "-"];
    let none = piped(&[&compress[..], &["--model", "none"]].concat(), &npy).len();
    // The raw values after the .npy header (its length in bytes 8-9, version 1).
    let header = 10 + usize::from(u16::from_le_bytes([npy[8], npy[9]]));
    let raw_args = [&compress[..], &["--dtype", "f32", "--shape", "-1,16"]].concat();
    for (name, args, input) in [
        ("npy", &compress[..], &npy[..]),
        ("raw", &raw_args[..], &npy[header..]),
    ] {
        let packed = piped(args, input);
        assert!(
            packed.len() * 10 < none * 9,
            "{name}: {} bytes with a model, {none} without",
            packed.len()
        );
        assert!(
            packed.len() * 100 <= from_file * 101,
            "{name}: {} bytes through a pipe, {from_file} from the file",
            packed.len()
        );
        let path = dir.path().join(format!("{name}.baler"));
        std::fs::write(&path, &packed).unwrap();
        let info = baler().arg("info").arg(&path).output().unwrap();
        let info = String::from_utf8_lossy(&info.stdout);
        assert!(info.contains("conditional MLP"), "{name}: {info}");
        succeed(baler().arg("evaluate").arg(fixture).arg(&path).arg("-q"));
    }
    let model = dir.path().join("piped.bmdl");
    let out = common::cli::piped_output(
        &[
            "train",
            "-",
            "--bound",
            "rel:1e-3",
            "-q",
            "-o",
            &model.to_string_lossy(),
        ],
        &npy,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(Model::load(&model).unwrap().active_columns() > 0);
}

/// `--effort` decides how much the inline training does: none at 1 (the same file as
/// `--model none`), linear predictors only at the default for a table of thousands of
/// records, and levels outside 1–9 are refused.
#[test]
fn effort_levels_choose_how_much_to_train() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = &common::fixture("delphes_16k.npy");
    let packed = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        succeed(
            baler()
                .args(["compress", fixture, "--bound", "rel:1e-3", "-q", "-o"])
                .arg(&out)
                .args(extra),
        );
        let info = baler().arg("info").arg(&out).output().unwrap();
        (
            std::fs::read(&out).unwrap(),
            String::from_utf8_lossy(&info.stdout).into_owned(),
        )
    };
    let (fastest, info) = packed("e1.baler", &["-e", "1"]);
    assert!(!info.contains("conditional MLP"), "{info}");
    assert_eq!(fastest, packed("none.baler", &["--model", "none"]).0);
    // The default: the linear parts alone, a few dozen parameters (a network of 8+ units
    // per column would be hundreds), and a smaller file than without a model.
    let (default, info) = packed("e3.baler", &[]);
    let model_line = info
        .lines()
        .find(|l| l.contains("conditional MLP"))
        .unwrap();
    let parameters: usize = model_line
        .split(", ")
        .find_map(|p| p.strip_suffix(" parameters"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{model_line}"));
    let predicted: usize = model_line
        .split("MLP: ")
        .nth(1)
        .and_then(|p| p.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{model_line}"));
    assert!(parameters <= predicted * 13, "{model_line}");
    assert!(default.len() < fastest.len());
    for bad in ["0", "10", "x"] {
        let out = baler()
            .args(["compress", fixture, "--bound", "rel:1e-3", "-q", "-e", bad])
            .arg("-o")
            .arg(dir.path().join("bad.baler"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("1 (fastest) to 9"), "{err}");
        assert!(!dir.path().join("bad.baler").exists());
    }
}

#[test]
fn small_tables_get_no_model() {
    // The decoder would cost more than it saves: `auto` trains nothing.
    let dir = tempfile::tempdir().unwrap();
    let fixture = &common::fixture("cms_ak4jets.npy");
    let packed = dir.path().join("c.baler");
    let out = baler()
        .args(["compress", fixture, "--bound", "rel:1e-3", "-q", "-o"])
        .arg(&packed)
        .output()
        .unwrap();
    assert!(out.status.success());
    let info = baler().arg("info").arg(&packed).output().unwrap();
    assert!(String::from_utf8_lossy(&info.stdout).contains("model    none"));
}

/// A model file whose checksum is right but whose sizes are forged (a width of 2^64 − 1, 2^40,
/// 2^31 columns in a few bytes) is refused with a clear error, by `compress --model` and by
/// `info`, before anything is allocated: it once panicked ("capacity overflow"), aborted on a
/// 4 TB allocation, or took 16 GiB for 40 s.
#[test]
fn forged_model_sizes_are_errors_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = &common::fixture("delphes_16k.npy");
    for width in [u64::MAX, 1 << 40, 1 << 31, 1 << 20] {
        let mut body = b"BALERMDL\x01\x02".to_vec();
        let mut w = width;
        loop {
            let b = (w & 0x7f) as u8;
            w >>= 7;
            if w == 0 {
                body.push(b);
                break;
            }
            body.push(b | 0x80);
        }
        body.extend_from_slice(&[0u8; 10]);
        let crc = crc32fast::hash(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        let model = dir.path().join("forged.bmdl");
        std::fs::write(&model, &body).unwrap();
        let out = dir.path().join("o.baler");
        for args in [
            vec![
                "compress".as_ref(),
                fixture.as_ref(),
                "-b".as_ref(),
                "rel:1e-3".as_ref(),
                "--model".as_ref(),
                model.as_os_str(),
                "-o".as_ref(),
                out.as_os_str(),
            ],
            vec!["info".as_ref(), model.as_os_str()],
        ] {
            let o = baler().args(&args).output().unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{width}: {err}");
            assert!(err.contains("more than its 10 bytes can hold"), "{err}");
            assert!(!out.exists());
        }
    }
}
