//! `baler evaluate` through the real binary: every figure of its JSON checked against values
//! computed here, independently, from the original and the decompressed `.npy`; special values;
//! streams; and clear failures (another array, a bound violation).

mod common;

use std::fs;

use baler::ArrayData;
use common::cli::{fails, ok, p, piped_output, run, tmp};
use common::{expected_bounds, fixture, load_npy};
use serde_json::Value;

/// The figures of one column, computed the plain way (naive f64 sums over `Vec`s).
#[derive(Debug)]
struct Expected {
    count: u64,
    finite: u64,
    nonfinite: u64,
    max_abs_error: f64,
    max_error_at: Option<u64>,
    min: f64,
    max: f64,
    rmse: f64,
    residual_mean: f64,
    response_count: u64,
    zeros: u64,
    response_mean: f64,
    response_rms: f64,
}

fn values(d: &ArrayData) -> Vec<f64> {
    match d {
        ArrayData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        ArrayData::F64(v) => v.clone(),
    }
}

fn expected(orig: &[f64], back: &[f64], width: usize, j: usize) -> Expected {
    let pairs: Vec<(usize, f64, f64)> = orig
        .iter()
        .zip(back)
        .skip(j)
        .step_by(width)
        .enumerate()
        .map(|(i, (&x, &y))| (i, x, y))
        .collect();
    let finite: Vec<&(usize, f64, f64)> = pairs
        .iter()
        .filter(|(_, x, y)| x.is_finite() && y.is_finite())
        .collect();
    let errs: Vec<f64> = finite.iter().map(|(_, x, y)| y - x).collect();
    let max_abs_error = errs.iter().fold(0.0f64, |a, e| a.max(e.abs()));
    let max_error_at = finite
        .iter()
        .zip(&errs)
        .find(|(_, e)| e.abs() == max_abs_error)
        .map(|((i, _, _), _)| *i as u64);
    let n = errs.len() as f64;
    let resp: Vec<f64> = finite
        .iter()
        .filter(|(_, x, _)| *x != 0.0)
        .map(|(_, x, y)| (y - x) / x)
        .collect();
    let rn = resp.len() as f64;
    Expected {
        count: pairs.len() as u64,
        finite: finite.len() as u64,
        nonfinite: pairs.iter().filter(|(_, x, _)| !x.is_finite()).count() as u64,
        max_abs_error,
        max_error_at,
        min: finite.iter().map(|t| t.1).fold(f64::INFINITY, f64::min),
        max: finite.iter().map(|t| t.1).fold(f64::NEG_INFINITY, f64::max),
        rmse: (errs.iter().map(|e| e * e).sum::<f64>() / n).sqrt(),
        residual_mean: errs.iter().sum::<f64>() / n,
        response_count: resp.len() as u64,
        zeros: finite.iter().filter(|(_, x, _)| *x == 0.0).count() as u64,
        response_mean: resp.iter().sum::<f64>() / rn,
        response_rms: (resp.iter().map(|r| r * r).sum::<f64>() / rn).sqrt(),
    }
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number: {}", v[key]))
}

fn u(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a count: {}", v[key]))
}

/// `a` and `b` agree to 1e-10 of `scale` (sums of 10⁴–10⁶ terms in another order).
fn close(what: &str, a: f64, b: f64, scale: f64) {
    assert!(
        (a - b).abs() <= 1e-10 * scale.abs() + f64::MIN_POSITIVE,
        "{what}: evaluate says {a:e}, the test computes {b:e}"
    );
}

/// Checks every column of the JSON report against the independent computation.
fn check_report(report: &Value, orig: &[f64], back: &[f64], width: usize, bounds: &[f64]) {
    let cols = report["columns"].as_array().expect("columns");
    assert_eq!(cols.len(), bounds.len());
    let mut worst = 0.0f64;
    for (j, c) in cols.iter().enumerate() {
        let e = expected(orig, back, width, j);
        let name = c["name"].as_str().unwrap().to_string();
        let ctx = |k: &str| format!("column {j} ({name}) {k}");
        assert_eq!(u(c, "count"), e.count, "{}", ctx("count"));
        assert_eq!(u(c, "finite"), e.finite, "{}", ctx("finite"));
        assert_eq!(u(c, "nonfinite"), e.nonfinite, "{}", ctx("nonfinite"));
        assert_eq!(u(c, "special_mismatches"), 0, "{}", ctx("special"));
        assert_eq!(u(c, "violations"), 0, "{}", ctx("violations"));
        assert_eq!(c["bound_met"], Value::Bool(true), "{}", ctx("bound_met"));
        // The bound the container stores never exceeds the one the test resolves itself.
        let bound = f(c, "bound");
        assert!(
            bound <= bounds[j] * (1.0 + 1e-12),
            "{}: {bound:e} > {:e}",
            ctx("bound"),
            bounds[j]
        );
        // Exact: the same subtraction of the same values.
        assert_eq!(f(c, "max_abs_error"), e.max_abs_error, "{}", ctx("max"));
        assert!(e.max_abs_error <= bound, "{}", ctx("max within bound"));
        assert_eq!(
            c["max_error_at"].as_u64(),
            e.max_error_at,
            "{}",
            ctx("max_error_at")
        );
        let ratio = if bound > 0.0 {
            e.max_abs_error / bound
        } else {
            0.0
        };
        assert_eq!(f(c, "max_error_over_bound"), ratio, "{}", ctx("ratio"));
        worst = worst.max(ratio);
        assert_eq!(f(c, "min"), e.min, "{}", ctx("min"));
        assert_eq!(f(c, "max"), e.max, "{}", ctx("max"));
        assert_eq!(f(c, "range"), e.max - e.min, "{}", ctx("range"));
        close(&ctx("rmse"), f(c, "rmse"), e.rmse, e.rmse);
        close(&ctx("residual_rms"), f(c, "residual_rms"), e.rmse, e.rmse);
        close(
            &ctx("residual_mean"),
            f(c, "residual_mean"),
            e.residual_mean,
            e.rmse,
        );
        if e.rmse > 0.0 && e.max > e.min {
            let psnr = 20.0 * ((e.max - e.min) / e.rmse).log10();
            close(&ctx("psnr"), f(c, "psnr_db"), psnr, psnr);
        } else {
            assert!(c["psnr_db"].is_null(), "{}", ctx("psnr null"));
        }
        assert_eq!(
            u(c, "response_count"),
            e.response_count,
            "{}",
            ctx("resp n")
        );
        assert_eq!(u(c, "response_zeros_excluded"), e.zeros, "{}", ctx("zeros"));
        if e.response_count > 0 {
            close(
                &ctx("response_rms"),
                f(c, "response_rms"),
                e.response_rms,
                e.response_rms,
            );
            close(
                &ctx("response_mean"),
                f(c, "response_mean"),
                e.response_mean,
                e.response_rms,
            );
        }
    }
    assert_eq!(f(report, "worst_error_over_bound"), worst);
    assert_eq!(report["bound_met"], Value::Bool(true));
}

fn write_npy(path: &str, data: &ArrayData, shape: &[u64]) {
    let mut bytes = baler::io::npy::header_bytes(data.dtype(), shape, false);
    bytes.extend_from_slice(&data.as_le_bytes());
    fs::write(path, bytes).unwrap();
}

fn read_json(path: &str) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).expect("valid JSON")
}

/// The Delphes table with special values planted: NaN, ±Inf, −0.0 and zeros.
fn delphes_with_specials() -> (ArrayData, Vec<u64>) {
    let (mut data, shape) = load_npy(&fixture("delphes_16k.npy"));
    let ArrayData::F32(v) = &mut data else {
        panic!("f32")
    };
    for (k, i) in (0..v.len()).step_by(997).enumerate() {
        v[i] = match k % 4 {
            0 => f32::NAN,
            1 => f32::INFINITY,
            2 => -0.0,
            _ => f32::NEG_INFINITY,
        };
    }
    (data, shape)
}

#[test]
fn table_figures_match_an_independent_computation() {
    let d = tmp();
    let (data, shape) = delphes_with_specials();
    let src = p(d.path(), "delphes.npy");
    write_npy(&src, &data, &shape);
    let names = fs::read_to_string(fixture("delphes_16k.columns")).unwrap();
    let names = names.trim();
    let packed = p(d.path(), "delphes.baler");
    ok(&[
        "compress",
        &src,
        "-o",
        &packed,
        "-b",
        "rel:1e-3",
        "--names",
        names,
        "--bound-col",
        "PID=lossless",
        "--bound-col",
        "Eta=abs:0.01",
        "-q",
    ]);
    let back = p(d.path(), "back.npy");
    ok(&["decompress", &packed, "-o", &back, "-q"]);
    let json = p(d.path(), "report.json");
    let out = ok(&["evaluate", &src, &packed, "--json", &json]);
    let report = read_json(&json);

    let (back_data, back_shape) = load_npy(&back);
    assert_eq!(back_shape, shape);
    let (o, b) = (values(&data), values(&back_data));
    let spec = baler::ArraySpec::new(baler::DType::F32, shape.clone());
    let mut bounds = baler::Bounds::new(baler::BoundSpec::Rel(1e-3));
    bounds = bounds
        .with_override_str("13=lossless")
        .unwrap()
        .with_override_str("6=abs:0.01")
        .unwrap();
    let ArrayData::F32(raw) = &data else {
        unreachable!()
    };
    let expected_bounds: Vec<f64> = expected_bounds(raw, &spec, &bounds)
        .iter()
        .map(|e| e.abs())
        .collect();
    check_report(&report, &o, &b, 16, &expected_bounds);

    // The whole report: names, sizes, the model's share.
    let cols = report["columns"].as_array().unwrap();
    let want: Vec<&str> = names.split(',').collect();
    let got: Vec<&str> = cols.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(got, want);
    assert_eq!(cols[13]["bound"].as_f64(), Some(0.0));
    assert_eq!(cols[13]["max_abs_error"].as_f64(), Some(0.0));
    assert_eq!(cols[6]["bound"].as_f64(), Some(0.01));
    assert_eq!(u(&report, "original_bytes"), 16384 * 16 * 4);
    let size = fs::metadata(&packed).unwrap().len();
    assert_eq!(u(&report, "compressed_bytes"), size);
    assert_eq!(f(&report, "ratio"), (16384.0 * 64.0) / size as f64);
    let model = u(&report, "model_bytes");
    assert!(model < size);
    assert_eq!(f(&report, "model_share"), model as f64 / size as f64);
    assert_eq!(report["shape"], serde_json::json!([16384, 16]));
    assert_eq!(report["layout"], "table");
    // Specials were planted: the columns hit count them.
    let nonfinite: u64 = cols.iter().map(|c| u(c, "nonfinite")).sum();
    assert!(nonfinite > 100, "{nonfinite}");

    // The terminal table: a row per column with its name, and the verdict.
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("met by every value"), "{table}");
    for name in &want {
        assert!(table.contains(name), "{name} missing from\n{table}");
    }
    assert!(table.contains("lossless"), "{table}");
}

#[test]
fn field_figures_match_an_independent_computation() {
    let d = tmp();
    let src = fixture("cfd_decay_ux.npy");
    let packed = p(d.path(), "ux.baler");
    ok(&["compress", &src, "-o", &packed, "-b", "rel:1e-4", "-q"]);
    let back = p(d.path(), "back.npy");
    ok(&["decompress", &packed, "-o", &back, "-q"]);
    let json = p(d.path(), "ux.json");
    let out = ok(&["evaluate", &src, &packed, "--json", &json]);
    let report = read_json(&json);
    let (orig, shape) = load_npy(&src);
    let (back_data, _) = load_npy(&back);
    let spec = baler::ArraySpec::new(baler::DType::F32, shape.clone());
    let ArrayData::F32(raw) = &orig else {
        unreachable!()
    };
    let bounds: Vec<f64> =
        expected_bounds(raw, &spec, &baler::Bounds::new(baler::BoundSpec::Rel(1e-4)))
            .iter()
            .map(|e| e.abs())
            .collect();
    check_report(&report, &values(&orig), &values(&back_data), 1, &bounds);
    assert_eq!(report["layout"], "field");
    assert_eq!(report["shape"], serde_json::json!([60, 50, 50]));
    // Where the largest error is, as an index into the field.
    let at = u(&report["columns"][0], "max_error_at");
    let idx = format!("[{}, {}, {}]", at / 2500, at / 50 % 50, at % 50);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains(&idx), "{idx} missing from\n{table}");
}

#[test]
fn original_from_standard_input_and_raw_files() {
    let d = tmp();
    let src = fixture("nexo_8k.npy");
    let packed = p(d.path(), "n.baler");
    ok(&["compress", &src, "-o", &packed, "-b", "abs:0.01", "-q"]);
    let json = p(d.path(), "a.json");
    ok(&["evaluate", &src, &packed, "--json", &json, "-q"]);
    let from_file = read_json(&json);

    // The same original through a pipe.
    let out = piped_output(
        &["evaluate", "-", &packed, "--json", "-", "-q"],
        &fs::read(&src).unwrap(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let piped: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(piped["columns"], from_file["columns"]);

    // A container compressed from raw values takes the same raw original without flags.
    let (orig, _) = load_npy(&src);
    let raw = p(d.path(), "n.raw");
    fs::write(&raw, orig.as_le_bytes()).unwrap();
    let packed_raw = p(d.path(), "r.baler");
    ok(&[
        "compress",
        &raw,
        "--dtype",
        "f32",
        "--shape",
        "-1,10",
        "-o",
        &packed_raw,
        "-b",
        "abs:0.01",
        "-q",
    ]);
    let json2 = p(d.path(), "b.json");
    ok(&["evaluate", &raw, &packed_raw, "--json", &json2, "-q"]);
    let from_raw = read_json(&json2);
    for (a, b) in from_raw["columns"]
        .as_array()
        .unwrap()
        .iter()
        .zip(from_file["columns"].as_array().unwrap())
    {
        assert_eq!(a["max_abs_error"], b["max_abs_error"]);
        assert_eq!(a["count"], b["count"]);
    }
}

/// The Delphes fixture compressed at `rel:1e-3` with its column names, into `dir`.
fn compress_delphes(dir: &std::path::Path) -> String {
    let names = fs::read_to_string(fixture("delphes_16k.columns")).unwrap();
    let packed = p(dir, "d.baler");
    let src = fixture("delphes_16k.npy");
    let args = ["compress", &src, "-o", &packed, "-b", "rel:1e-3", "--names"];
    ok(&[&args[..], &[names.trim(), "-q"]].concat());
    packed
}

#[test]
fn another_array_is_refused_naming_both_files() {
    let d = tmp();
    let packed = compress_delphes(d.path());
    // Another shape.
    let other = fixture("nexo_8k.npy");
    let err = fails(&["evaluate", &other, &packed, "-q"], 1, "is not the array");
    assert!(
        err.contains("nexo_8k.npy") && err.contains("d.baler"),
        "{err}"
    );
    assert!(err.contains("16384 × 16"), "{err}");
    // Another element type.
    let (data, shape) = load_npy(&fixture("delphes_16k.npy"));
    let wide = ArrayData::F64(values(&data));
    let f64_path = p(d.path(), "wide.npy");
    write_npy(&f64_path, &wide, &shape);
    fails(&["evaluate", &f64_path, &packed, "-q"], 1, "f64");
    // A raw original of another length is refused up front...
    let raw = p(d.path(), "short.raw");
    fs::write(&raw, &data.as_le_bytes()[..1000 * 64]).unwrap();
    fails(
        &[
            "evaluate", &raw, &packed, "--dtype", "f32", "--shape", "-1,16", "-q",
        ],
        1,
        "(f32 1000 × 16) is not the array",
    );
    // ...and a stream that ends early, where it ends.
    let out = piped_output(
        &[
            "evaluate", "-", &packed, "--dtype", "f32", "--shape", "-1,16", "-q",
        ],
        &data.as_le_bytes()[..1000 * 64],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("<stdin> ends after 1000 records"), "{err}");
    // Not a container, and no such file.
    fails(
        &["evaluate", &other, &other, "-q"],
        1,
        "is this a .baler file",
    );
    fails(
        &["evaluate", &other, &p(d.path(), "missing.baler"), "-q"],
        1,
        "missing.baler",
    );
    // No output left behind for a failed run.
    let json = p(d.path(), "x.json");
    fails(
        &["evaluate", &other, &packed, "--json", &json, "-q"],
        1,
        "is not the array",
    );
    assert!(!std::path::Path::new(&json).exists());
}

#[test]
fn a_value_off_its_bound_fails_with_where_it_is() {
    let d = tmp();
    let (mut data, shape) = load_npy(&fixture("delphes_16k.npy"));
    let packed = compress_delphes(d.path());
    // The "original" differs from the true one at row 1234 of PT (column 5) by far more than
    // the bound: evaluate must say so and fail.
    let ArrayData::F32(v) = &mut data else {
        unreachable!()
    };
    v[1234 * 16 + 5] += 1000.0;
    let changed = p(d.path(), "changed.npy");
    write_npy(&changed, &data, &shape);
    let json = p(d.path(), "r.json");
    let out = run(&["evaluate", &changed, &packed, "--json", &json]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("BOUND VIOLATED") && err.contains("PT") && err.contains("row 1234"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("VIOLATED"));
    // The report is still written, and says where.
    let report = read_json(&json);
    assert_eq!(report["bound_met"], Value::Bool(false));
    let pt = &report["columns"][5];
    assert_eq!(u(pt, "violations"), 1);
    assert_eq!(u(pt, "first_violation_at"), 1234);
    assert_eq!(u(pt, "max_error_at"), 1234);
    assert!(f(pt, "max_error_over_bound") > 1.0);
}

/// The PNG files of a plot directory: name and (width, height) from the IHDR chunk.
fn pngs(dir: &str) -> Vec<(String, u32, u32)> {
    let mut out: Vec<(String, u32, u32)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let bytes = fs::read(&path).unwrap();
            assert!(bytes.len() > 10_000, "{} is nearly empty", path.display());
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
            let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
            let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                w,
                h,
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn plots_for_a_table_and_a_field() {
    let d = tmp();
    let packed = compress_delphes(d.path());
    let dir = p(d.path(), "plots");
    let out = ok(&[
        "evaluate",
        &fixture("delphes_16k.npy"),
        &packed,
        "--plots",
        &dir,
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("17 files"));
    let files = pngs(&dir);
    let names = fs::read_to_string(fixture("delphes_16k.columns")).unwrap();
    let mut want: Vec<String> = names
        .trim()
        .split(',')
        .enumerate()
        .map(|(j, n)| format!("{j:03}_{n}.png"))
        .collect();
    want.push("overview.png".into());
    assert_eq!(files.iter().map(|f| f.0.clone()).collect::<Vec<_>>(), want);
    for (name, w, h) in &files {
        let expected = if name == "overview.png" {
            (1800, 1320) // 4 × 4 panels of 450 × 320, and a title
        } else {
            (1800, 560)
        };
        assert_eq!((*w, *h), expected, "{name}");
    }

    let packed = p(d.path(), "ux.baler");
    let src = fixture("cfd_decay_ux.npy");
    ok(&["compress", &src, "-o", &packed, "-b", "rel:1e-4", "-q"]);
    let dir = p(d.path(), "field");
    ok(&["evaluate", &src, &packed, "--plots", &dir, "--svg", "-q"]);
    // Each page also as SVG, with its text as text.
    for name in ["field", "field_slice", "overview"] {
        let svg = fs::read_to_string(format!("{dir}/{name}.svg")).expect("an SVG beside the PNG");
        assert!(
            svg.starts_with("<svg") && svg.contains("<text"),
            "{name}.svg"
        );
        fs::remove_file(format!("{dir}/{name}.svg")).unwrap();
    }
    let files = pngs(&dir);
    assert_eq!(
        files,
        vec![
            ("field.png".to_string(), 1800, 560),
            ("field_slice.png".to_string(), 1800, 680),
            ("overview.png".to_string(), 450, 360)
        ]
    );
}

#[test]
fn train_draws_its_loss_curve_and_info_describes_the_model() {
    let d = tmp();
    let model = p(d.path(), "m.bmdl");
    ok(&[
        "train",
        &fixture("delphes_16k.npy"),
        "-b",
        "rel:1e-3",
        "-o",
        &model,
        "-q",
    ]);
    let png = fs::read(format!("{model}.png")).expect("the loss curve beside the model");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png.len() > 5_000);
    let curve = read_json(&format!("{model}.json"));
    let epochs = curve["epochs"].as_array().unwrap().len();
    assert!(epochs >= 1);
    assert_eq!(curve["device"], "cpu");
    assert!(curve["seconds"].as_f64().unwrap() > 0.0);
    let out = ok(&["info", &model]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("baler model"), "{text}");
    assert!(text.contains("parameters"), "{text}");
    // One row per column of the table.
    let rows = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| {
            w.strip_prefix("col")
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .count();
    assert_eq!(rows, 16, "{text}");
}

/// A column spread over ±1e308 (its range beyond f64::MAX) at `rel:R`: the container stores
/// R times the true range (it once stored f64::MAX/8 whatever R, and came back 66,000× over
/// at `rel:1e-6`), and `evaluate` checks the stored bound against the spec on the original
/// as well as every value against it.
#[test]
fn ranges_beyond_f64_max_keep_their_relative_bound() {
    let d = tmp();
    let mut rng = common::Lcg(5);
    let v: Vec<f64> = (0..3000)
        .flat_map(|_| [1e308 * (2.0 * rng.unit() - 1.0), rng.unit()])
        .collect();
    let orig = p(d.path(), "wide.npy");
    write_npy(&orig, &ArrayData::F64(v.clone()), &[3000, 2]);
    for r in ["1e-3", "1e-6"] {
        let (c, back) = (p(d.path(), "w.baler"), p(d.path(), "back.npy"));
        let bound = format!("rel:{r}");
        ok(&[
            "compress", &orig, "-b", &bound, "--model", "none", "-o", &c, "-f",
        ]);
        ok(&["evaluate", &orig, &c, "-q"]);
        ok(&["decompress", &c, "-o", &back, "-f"]);
        let (decoded, _) = load_npy(&back);
        let back = values(&decoded);
        let r: f64 = r.parse().unwrap();
        let (lo, hi) = v
            .iter()
            .step_by(2)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        // |x' − x| ≤ R·(hi − lo), compared in halves so neither side overflows.
        let half_bound = r * (hi / 2.0 - lo / 2.0);
        for (i, (x, y)) in v.iter().zip(&back).enumerate().step_by(2) {
            assert!(
                (y / 2.0 - x / 2.0).abs() <= half_bound,
                "rel:{r}: value {i}: {x:e} came back {y:e}"
            );
        }
    }
}
