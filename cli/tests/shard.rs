//! Plans, shards and `concat`: the shards of a plan, compressed by separate processes and
//! joined, are byte for byte the file `compress --plan` writes in one process, for any shard
//! count; `concat` refuses shards of different plans, gaps, overlaps and damaged shards, naming
//! the range or the file, and leaves no output; a shard run on the wrong input is refused.

mod common;

use std::fs;
use std::path::Path;

use common::cli::{baler, fails, ok, p, tmp};
use common::fixture;

fn chunks_of(plan: &str) -> u64 {
    baler::Plan::load(Path::new(plan)).expect("plan").chunks()
}

/// Plans `input` with `plan_args`, compresses it in one process with the plan (`compress`
/// given `input_again`, which may leave out what the plan knows), then for several shard
/// counts compresses every shard as its own process and joins them (in reverse order): each
/// join must be the one-process file, byte for byte, and decode.
fn joins_identically(input: &str, input_again: &str, plan_args: &[&str]) {
    let dir = tmp();
    let plan = p(dir.path(), "in.plan");
    let mut args = vec!["plan", input, "-o", &plan, "-q"];
    args.extend_from_slice(plan_args);
    ok(&args);
    let whole = p(dir.path(), "whole.baler");
    ok(&["compress", input_again, "--plan", &plan, "-o", &whole, "-q"]);
    let want = fs::read(&whole).unwrap();
    let chunks = chunks_of(&plan);
    assert!(
        chunks >= 4,
        "{input}: {chunks} chunks, too few to test shards"
    );
    let mut counts = vec![1, 2, 3, chunks, chunks + 3];
    counts.dedup();
    for n in counts {
        let n = n as u32;
        let mut shards = Vec::new();
        for i in 0..n {
            let out = p(dir.path(), &format!("s{n}-{i}.shard"));
            let shard = format!("{i}/{n}");
            ok(&[
                "compress",
                input_again,
                "--plan",
                &plan,
                "--shard",
                &shard,
                "-o",
                &out,
                "-q",
                "-T",
                if i % 2 == 0 { "1" } else { "2" },
            ]);
            shards.push(out);
        }
        shards.reverse();
        let joined = p(dir.path(), &format!("joined{n}.baler"));
        let mut args = vec!["concat", "-o", &joined, "-q"];
        args.extend(shards.iter().map(String::as_str));
        ok(&args);
        let got = fs::read(&joined).unwrap();
        assert!(
            got == want,
            "{input}: {n} shards joined differ from the one-process file ({} vs {} bytes)",
            got.len(),
            want.len()
        );
    }
    let back = p(dir.path(), "back.npy");
    ok(&["decompress", &whole, "-o", &back, "-q"]);
}

#[test]
fn a_table_with_a_model_joins_identically_for_any_shard_count() {
    let input = fixture("delphes_16k.npy");
    joins_identically(
        &input,
        &input,
        &[
            "--bound",
            "rel:1e-3",
            "--chunk-size",
            "64K",
            "--bound-col",
            "13=lossless",
        ],
    );
}

#[test]
fn a_field_joins_identically_for_any_shard_count() {
    let input = fixture("cfd_decay_ux.npy");
    joins_identically(
        &input,
        &input,
        &["--bound", "rel:1e-3", "--chunk-size", "40K"],
    );
}

#[test]
fn a_float64_series_joins_identically_at_a_mantissa_bound() {
    let input = fixture("tau_pt_f64.npy");
    joins_identically(
        &input,
        &input,
        &["--bound", "bits:10", "--chunk-size", "32K"],
    );
}

#[test]
fn hdf5_datasets_join_identically() {
    let file = fixture("h5py_mixed.h5");
    // A compound table, read by whole records.
    let compound = format!("{file}:/tables/compound");
    joins_identically(
        &compound,
        &compound,
        &["--bound", "rel:1e-3", "--chunk-size", "16K"],
    );
    // A chunked 3-D float64 field; the shards name the file only: the plan knows the dataset.
    let field = format!("{file}:/fields/temperature_f64");
    joins_identically(
        &field,
        &file,
        &["--bound", "abs:0.01", "--chunk-size", "40K"],
    );
}

#[test]
fn raw_values_take_their_type_and_shape_from_the_plan() {
    let dir = tmp();
    let raw = p(dir.path(), "values.raw");
    let values: Vec<u8> = (0..40_000u32)
        .flat_map(|i| ((i as f32 * 0.01).sin() * 100.0 + (i % 8) as f32).to_le_bytes())
        .collect();
    fs::write(&raw, values).unwrap();
    // `compress --plan` is given the file alone.
    joins_identically(
        &raw,
        &raw,
        &[
            "--dtype",
            "f32",
            "--shape",
            "-1,8",
            "--bound",
            "abs:0.05",
            "--chunk-size",
            "16K",
        ],
    );
}

#[test]
fn a_planned_run_is_the_plain_run_where_the_plain_run_reads_the_ranges_too() {
    // A `rel` bound makes the plain run take the ranges of the whole file, and it trains the
    // same model on the same sample: the plan changes nothing but where the work happens.
    let dir = tmp();
    let input = fixture("delphes_16k.npy");
    let plan = p(dir.path(), "d.plan");
    let (a, b) = (p(dir.path(), "a.baler"), p(dir.path(), "b.baler"));
    ok(&["plan", &input, "--bound", "rel:1e-3", "-o", &plan, "-q"]);
    ok(&["compress", &input, "--plan", &plan, "-o", &a, "-q"]);
    ok(&["compress", &input, "--bound", "rel:1e-3", "-o", &b, "-q"]);
    assert!(fs::read(&a).unwrap() == fs::read(&b).unwrap());
}

/// A plan of the Delphes fixture in 16 chunks and its shards, 4 of them.
fn four_shards(dir: &Path) -> (String, Vec<String>) {
    let input = fixture("delphes_16k.npy");
    let plan = p(dir, "d.plan");
    ok(&[
        "plan",
        &input,
        "--bound",
        "rel:1e-3",
        "--chunk-size",
        "64K",
        "-o",
        &plan,
        "-q",
    ]);
    let shards: Vec<String> = (0..4)
        .map(|i| {
            let out = p(dir, &format!("d-{i}.shard"));
            ok(&[
                "compress",
                &input,
                "--plan",
                &plan,
                "--shard",
                &format!("{i}/4"),
                "-o",
                &out,
                "-q",
            ]);
            out
        })
        .collect();
    (plan, shards)
}

#[test]
fn concat_names_what_is_missing_or_repeated_and_writes_nothing() {
    let dir = tmp();
    let (_, s) = four_shards(dir.path());
    let out = p(dir.path(), "out.baler");
    let e = fails(
        &["concat", &s[0], &s[1], &s[3], "-o", &out],
        1,
        "are missing",
    );
    assert!(
        e.contains("records 8192..12288")
            && e.contains("chunks 8..12")
            && e.contains("shard 2 of 4"),
        "{e}"
    );
    let e = fails(
        &["concat", &s[1], &s[2], &s[3], "-o", &out],
        1,
        "are missing",
    );
    assert!(
        e.contains("records 0..4096") && e.contains("shard 0 of 4"),
        "{e}"
    );
    let e = fails(
        &["concat", &s[0], &s[1], &s[2], "-o", &out],
        1,
        "are missing",
    );
    assert!(
        e.contains("records 12288..16384") && e.contains("shard 3 of 4"),
        "{e}"
    );
    let e = fails(
        &["concat", &s[0], &s[1], &s[1], &s[2], &s[3], "-o", &out],
        1,
        "both hold records 4096..8192",
    );
    assert!(e.contains("give each shard once"), "{e}");
    // Shards of another split of the same plan fit in: coverage is by chunks.
    let input = fixture("delphes_16k.npy");
    let plan = p(dir.path(), "d.plan");
    let half = p(dir.path(), "half.shard");
    ok(&[
        "compress", &input, "--plan", &plan, "--shard", "1/2", "-o", &half, "-q",
    ]);
    ok(&["concat", &s[0], &s[1], &half, "-o", &out, "-q"]);
    // To standard output, the same bytes.
    let piped = ok(&["concat", &s[0], &s[1], &half, "-o", "-", "-q"]).stdout;
    assert!(piped == fs::read(&out).unwrap());
    fs::remove_file(&out).unwrap();
    let e = fails(
        &["concat", &s[0], &s[1], &s[2], &half, "-o", &out],
        1,
        "both hold",
    );
    assert!(
        e.contains("d-2.shard and ") && e.contains("records 8192..12288"),
        "{e}"
    );
    // A shard of another plan (another bound), and a whole container, are refused.
    let other = p(dir.path(), "other.plan");
    ok(&[
        "plan",
        &input,
        "--bound",
        "rel:1e-2",
        "--chunk-size",
        "64K",
        "-o",
        &other,
        "-q",
    ]);
    let foreign = p(dir.path(), "foreign.shard");
    ok(&[
        "compress", &input, "--plan", &other, "--shard", "1/4", "-o", &foreign, "-q",
    ]);
    fails(
        &["concat", &s[0], &foreign, &s[2], &s[3], "-o", &out],
        1,
        "come from different plans",
    );
    let whole = p(dir.path(), "whole.baler");
    ok(&["compress", &input, "--plan", &plan, "-o", &whole, "-q"]);
    fails(
        &["concat", &s[0], &whole, "-o", &out],
        1,
        "a whole container, not a shard",
    );
    fails(
        &["concat", &s[0], &s[1], "-o", &s[0]],
        1,
        "both a shard and the output",
    );
    assert!(!Path::new(&out).exists(), "a refused join left an output");
    // Every refusal left the directory as it was: no temporary files.
    let stray: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn damaged_shards_are_refused_naming_the_file() {
    let dir = tmp();
    let (_, s) = four_shards(dir.path());
    let out = p(dir.path(), "out.baler");
    let bytes = fs::read(&s[2]).unwrap();
    // Cut short (a copy that did not finish): its end is gone.
    fs::write(&s[2], &bytes[..bytes.len() - 100]).unwrap();
    let e = fails(
        &["concat", &s[0], &s[1], &s[2], &s[3], "-o", &out],
        1,
        "d-2.shard",
    );
    assert!(e.contains("incomplete"), "{e}");
    // A flipped bit inside a chunk's payload: its CRC, checked while copying, names it.
    let mut flipped = bytes.clone();
    let at = bytes.len() / 2;
    flipped[at] ^= 0x10;
    fs::write(&s[2], &flipped).unwrap();
    let e = fails(
        &["concat", &s[0], &s[1], &s[2], &s[3], "-o", &out],
        1,
        "d-2.shard",
    );
    assert!(e.contains("chunk") && e.contains("checksum"), "{e}");
    assert!(!Path::new(&out).exists());
    // Not a shard at all.
    fs::write(&s[2], b"hello").unwrap();
    fails(&["concat", &s[0], &s[2], "-o", &out], 1, "not a shard");
}

#[test]
fn a_plan_refuses_another_input_and_says_what_files_are() {
    let dir = tmp();
    let (plan, s) = four_shards(dir.path());
    // Same shape, one value changed: the sampled checksum differs.
    let copy = p(dir.path(), "copy.npy");
    let mut bytes = fs::read(fixture("delphes_16k.npy")).unwrap();
    let at = bytes.len() - 5;
    bytes[at] ^= 1;
    fs::write(&copy, &bytes).unwrap();
    let out = p(dir.path(), "x.baler");
    fails(
        &["compress", &copy, "--plan", &plan, "-o", &out],
        1,
        "sampled contents differ",
    );
    fails(
        &[
            "compress",
            &fixture("nexo_8k.npy"),
            "--plan",
            &plan,
            "-o",
            &out,
        ],
        1,
        "not the input this plan was made from",
    );
    assert!(!Path::new(&out).exists());
    // Files of the plan that are not containers say what they are.
    let back = p(dir.path(), "back.npy");
    fails(&["decompress", &s[1], "-o", &back], 1, "baler concat");
    fails(&["decompress", &plan, "-o", &back], 1, "this is a plan");
    let info = ok(&["info", &plan]);
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains("baler plan") && info.contains("16 of 1024 records"),
        "{info}"
    );
    let info = ok(&["info", &s[1]]);
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains("shard 1 of 4") && info.contains("4096..8192 of 16384"),
        "{info}"
    );
    // Usage: a plan brings its bounds; --shard needs a plan; a stream cannot be planned.
    fails(
        &["compress", &copy, "--plan", &plan, "--bound", "abs:1"],
        2,
        "cannot be used with",
    );
    fails(
        &["compress", &copy, "--shard", "0/2", "--bound", "abs:1"],
        2,
        "--plan",
    );
    fails(
        &["compress", &copy, "--plan", &plan, "--shard", "2/2"],
        2,
        "numbered 0 to N-1",
    );
    fails(&["plan", "-", "--bound", "abs:1"], 1, "cannot be planned");
    fails(&["plan", &copy], 2, "a bound is required");
}

#[test]
fn shards_take_their_number_from_the_job_environment() {
    let dir = tmp();
    let (plan, s) = four_shards(dir.path());
    let input = fixture("delphes_16k.npy");
    let run_env = |vars: &[(&str, &str)], extra: &[&str]| {
        let mut c = baler();
        c.args([
            "compress",
            &input,
            "--plan",
            &plan,
            "--shard-from-env",
            "-q",
        ]);
        c.args(extra);
        for k in [
            "SLURM_ARRAY_TASK_ID",
            "SLURM_ARRAY_TASK_MIN",
            "SLURM_ARRAY_TASK_STEP",
            "SLURM_ARRAY_TASK_COUNT",
            "SLURM_PROCID",
            "SLURM_NTASKS",
            "OMPI_COMM_WORLD_RANK",
            "OMPI_COMM_WORLD_SIZE",
            "PMI_RANK",
            "PMI_SIZE",
        ] {
            c.env_remove(k);
        }
        c.envs(vars.iter().copied());
        c.output().unwrap()
    };
    // A Slurm array 1-4: task 3 is shard 2 of 4; {i} and {n} in -o.
    let out = p(dir.path(), "slurm-{i}-of-{n}.shard");
    let o = run_env(
        &[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ],
        &["-o", &out],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = fs::read(p(dir.path(), "slurm-2-of-4.shard")).unwrap();
    assert!(got == fs::read(&s[2]).unwrap());
    // An MPI rank, the count given.
    let out = p(dir.path(), "mpi-{i}.shard");
    let o = run_env(
        &[("OMPI_COMM_WORLD_RANK", "1")],
        &["--shards", "4", "-o", &out],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(fs::read(p(dir.path(), "mpi-1.shard")).unwrap() == fs::read(&s[1]).unwrap());
    // Nothing set, or a count missing: a clear error.
    let o = run_env(&[], &["-o", &out]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("give --shard I/N"));
    let o = run_env(&[("PMI_RANK", "0")], &["-o", &out]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("give --shards N"));
}

/// The plan and shard files of an earlier baler keep working: its shards join into the very
/// container it wrote, and its plan still drives `compress --plan` (`fixtures/shards/vN/`).
#[test]
fn shard_fixtures_of_earlier_versions_still_join() {
    let root = common::repo().join("fixtures/shards");
    let dir = tmp();
    let mut seen = 0;
    for v in fs::read_dir(&root).expect("fixtures/shards") {
        let v = v.unwrap().path();
        let mut shards: Vec<String> = fs::read_dir(&v)
            .unwrap()
            .map(|e| e.unwrap().path().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".shard"))
            .collect();
        shards.sort();
        assert!(shards.len() >= 2, "{}: no shards", v.display());
        let out = p(dir.path(), "joined.baler");
        let mut args = vec!["concat", "-o", &out, "-q", "-f"];
        args.extend(shards.iter().map(String::as_str));
        ok(&args);
        let want = fs::read(v.join("joined.baler")).unwrap();
        assert!(fs::read(&out).unwrap() == want, "{}", v.display());
        let plan = v.join("nexo.plan").to_string_lossy().into_owned();
        let again = p(dir.path(), "again.baler");
        ok(&[
            "compress",
            &fixture("nexo_8k.npy"),
            "--plan",
            &plan,
            "-o",
            &again,
            "-q",
            "-f",
        ]);
        let back = p(dir.path(), "back.npy");
        ok(&["decompress", &again, "-o", &back, "-q", "-f"]);
        seen += 1;
    }
    assert!(seen > 0);
}
