//! `baler h5repack` through the real binary: a file with groups, attributes, links, a float32
//! table with a `columns` attribute, a float64 3-D field, an integer and a compound dataset.
//! The output is read back here with the hdf5 crate, baler's filter registered in this process
//! (`h5baler::register`), and checked independently: the same hierarchy and attributes, the
//! other datasets byte for byte, every float value within its bound as resolved here from the
//! original's ranges, the filter on the float datasets; `baler info` on the output; `h5dump`
//! through the plugin where it is installed; and the failures.

#![cfg(feature = "hdf5")]

#[allow(unused_imports)]
mod common;

use std::path::Path;

use common::cli::{fails, ok, p, run, tmp};
use hdf5::H5Type;
use hdf5::types::VarLenUnicode;

const COLUMNS: [&str; 4] = ["pt", "eta", "phi", "mass"];
const ROWS: usize = 2000;
const FIELD: [usize; 3] = [6, 20, 30];

#[derive(H5Type, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Rec {
    id: i32,
    energy: f64,
}

fn h5_open(path: &str) -> hdf5::File {
    hdf5::File::with_options()
        .with_fapl(|p| p.file_locking(false))
        .open(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn vlen(s: &str) -> VarLenUnicode {
    s.parse().unwrap()
}

fn table() -> Vec<f32> {
    let mut v = Vec::with_capacity(ROWS * 4);
    for i in 0..ROWS {
        let t = i as f32;
        v.push(20.0 + 300.0 * (t * 0.013).sin().abs()); // pt
        v.push(2.5 * (t * 0.071).cos()); // eta
        v.push(std::f32::consts::PI * (t * 0.37).sin()); // phi
        v.push(if i % 7 == 0 {
            0.0
        } else {
            0.1 + (t * 0.01).sqrt()
        }); // mass
    }
    v
}

fn field() -> Vec<f64> {
    let n: usize = FIELD.iter().product();
    (0..n)
        .map(|i| {
            let (z, y, x) = (i / 600, (i / 30) % 20, i % 30);
            250.0 + 10.0 * z as f64 + (y as f64 * 0.3).sin() * 5.0 + (x as f64 * 0.2).cos()
        })
        .collect()
}

/// The input: groups, attributes everywhere, a soft link, and every kind of dataset.
fn write_input(path: &str) {
    let f = hdf5::File::with_options()
        .with_fapl(|p| p.file_locking(false))
        .create(path)
        .unwrap();
    f.new_attr::<VarLenUnicode>()
        .create("title")
        .unwrap()
        .write_scalar(&vlen("h5repack test"))
        .unwrap();
    f.new_attr::<i32>()
        .shape(3)
        .create("version")
        .unwrap()
        .write_raw(&[1, 2, 3])
        .unwrap();
    let g = f.create_group("g").unwrap();
    g.new_attr::<f64>()
        .create("scale")
        .unwrap()
        .write_scalar(&0.5)
        .unwrap();
    let sub = g.create_group("sub").unwrap();
    let t = g
        .new_dataset::<f32>()
        .shape([ROWS, 4])
        .create("table")
        .unwrap();
    t.write_raw(&table()).unwrap();
    t.new_attr::<VarLenUnicode>()
        .create("columns")
        .unwrap()
        .write_scalar(&vlen(&COLUMNS.join(",")))
        .unwrap();
    t.new_attr::<f64>()
        .shape(4)
        .create("units")
        .unwrap()
        .write_raw(&[1.0, 2.0, 3.0, 4.0])
        .unwrap();
    let fd = sub
        .new_dataset::<f64>()
        .shape(FIELD)
        .chunk([2, 20, 30])
        .deflate(4)
        .create("temperature")
        .unwrap();
    fd.write_raw(&field()).unwrap();
    fd.new_attr::<VarLenUnicode>()
        .create("units")
        .unwrap()
        .write_scalar(&vlen("K"))
        .unwrap();
    let ints: Vec<i32> = (0..100).map(|i| i * i - 50).collect();
    let d = f.new_dataset::<i32>().shape(100).create("ints").unwrap();
    d.write_raw(&ints).unwrap();
    d.new_attr::<i64>()
        .create("count")
        .unwrap()
        .write_scalar(&100)
        .unwrap();
    let recs: Vec<Rec> = (0..50)
        .map(|i| Rec {
            id: i,
            energy: f64::from(i) * 1.5,
        })
        .collect();
    f.new_dataset::<Rec>()
        .shape(50)
        .create("records")
        .unwrap()
        .write_raw(&recs)
        .unwrap();
    f.link_soft("/g/table", "table_link").unwrap();
}

/// Every object path of a file (groups, datasets, soft links), sorted.
fn hierarchy(f: &hdf5::Group, prefix: &str, out: &mut Vec<String>) {
    let mut names = Vec::new();
    f.iter_visit_default(|n, info| {
        names.push((n.to_string(), info.link_type));
        Ok(())
    })
    .unwrap();
    for (n, t) in names {
        let path = format!("{prefix}/{n}");
        if t != hdf5::LinkType::Hard {
            out.push(format!("{path} (link)"));
            continue;
        }
        match f.loc_type_by_name(&n).unwrap() {
            hdf5::LocationType::Group => {
                out.push(format!("{path}/"));
                hierarchy(&f.group(&n).unwrap(), &path, out);
            }
            _ => out.push(path),
        }
    }
    out.sort();
}

fn paths(file: &str) -> Vec<String> {
    let mut out = Vec::new();
    hierarchy(&h5_open(file), "", &mut out);
    out
}

/// Registers baler's filter with the HDF5 library of this test process.
fn register() {
    hdf5::sync::sync(h5baler::register).expect("register the baler filter");
}

/// The filter ids on a dataset (read with HDF5's own calls).
fn filter_ids(ds: &hdf5::Dataset) -> Vec<i32> {
    hdf5::sync::sync(|| unsafe {
        let dcpl = hdf5_sys::h5d::H5Dget_create_plist(ds.id());
        assert!(dcpl >= 0);
        let n = hdf5_sys::h5p::H5Pget_nfilters(dcpl);
        let ids = (0..n as u32)
            .map(|i| {
                let (mut flags, mut cd, mut config) = (0u32, 0usize, 0u32);
                hdf5_sys::h5p::H5Pget_filter2(
                    dcpl,
                    i,
                    &mut flags,
                    &mut cd,
                    std::ptr::null_mut(),
                    0,
                    std::ptr::null_mut(),
                    &mut config,
                )
            })
            .collect();
        hdf5_sys::h5p::H5Pclose(dcpl);
        ids
    })
}

/// What a column's bound is, as this test resolves it.
#[derive(Clone, Copy, Debug)]
enum Check {
    Abs(f64),
    PwRel(f64),
    Exact,
}

fn within(x: f64, y: f64, c: Check) -> bool {
    if x.to_bits() == y.to_bits() {
        return true;
    }
    match c {
        Check::Abs(e) => (x - y).abs() <= e,
        Check::PwRel(r) => x != 0.0 && (x - y).abs() <= r * x.abs(),
        Check::Exact => false,
    }
}

fn range(v: impl Iterator<Item = f64>) -> f64 {
    let (lo, hi) = v.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
        (l.min(x), h.max(x))
    });
    hi - lo
}

/// Checks the table of `out` against the original, column `j` against `checks[j]`.
fn check_table(out: &str, checks: [Check; 4]) {
    let orig = table();
    let back: Vec<f32> = h5_open(out)
        .dataset("/g/table")
        .unwrap()
        .read_raw()
        .unwrap();
    assert_eq!(back.len(), orig.len());
    for (i, (&x, &y)) in orig.iter().zip(&back).enumerate() {
        let c = checks[i % 4];
        assert!(
            within(f64::from(x), f64::from(y), c),
            "table row {} column {}: {x} came back {y}, bound {c:?}",
            i / 4,
            i % 4
        );
    }
}

fn table_range(j: usize) -> f64 {
    range(table().chunks(4).map(|r| f64::from(r[j])))
}

fn check_field(out: &str, c: Check) {
    let orig = field();
    let back: Vec<f64> = h5_open(out)
        .dataset("/g/sub/temperature")
        .unwrap()
        .read_raw()
        .unwrap();
    assert_eq!(back.len(), orig.len());
    for (i, (&x, &y)) in orig.iter().zip(&back).enumerate() {
        assert!(
            within(x, y, c),
            "field value {i}: {x} came back {y}, bound {c:?}"
        );
    }
}

/// What must be the same in any output: hierarchy, attributes, the other datasets, the filter.
fn check_common(input: &str, out: &str) {
    assert_eq!(paths(input), paths(out));
    let (a, b) = (h5_open(input), h5_open(out));
    let s = |f: &hdf5::Location, n: &str| -> String {
        f.attr(n)
            .unwrap()
            .read_scalar::<VarLenUnicode>()
            .unwrap()
            .to_string()
    };
    assert_eq!(s(&a, "title"), s(&b, "title"));
    let v = |f: &hdf5::Location| f.attr("version").unwrap().read_raw::<i32>().unwrap();
    assert_eq!(v(&a), v(&b));
    for f in [&a, &b] {
        assert_eq!(f.group("g").unwrap().attr_names().unwrap(), vec!["scale"]);
        let scale: f64 = f
            .group("g")
            .unwrap()
            .attr("scale")
            .unwrap()
            .read_scalar()
            .unwrap();
        assert_eq!(scale, 0.5);
        let t = f.dataset("/g/table").unwrap();
        let mut names = t.attr_names().unwrap();
        names.sort();
        assert_eq!(names, vec!["columns", "units"]);
        assert_eq!(
            t.attr("columns")
                .unwrap()
                .read_scalar::<VarLenUnicode>()
                .unwrap()
                .as_str(),
            "pt,eta,phi,mass"
        );
        assert_eq!(
            t.attr("units").unwrap().read_raw::<f64>().unwrap(),
            vec![1.0, 2.0, 3.0, 4.0]
        );
        let fd = f.dataset("/g/sub/temperature").unwrap();
        assert_eq!(s(&fd, "units"), "K");
        let c: i64 = f
            .dataset("ints")
            .unwrap()
            .attr("count")
            .unwrap()
            .read_scalar()
            .unwrap();
        assert_eq!(c, 100);
    }
    // The other datasets, value for value (bit for bit), with their type.
    let ints = |f: &hdf5::File| f.dataset("ints").unwrap().read_raw::<i32>().unwrap();
    assert_eq!(ints(&a), ints(&b));
    let recs = |f: &hdf5::File| f.dataset("records").unwrap().read_raw::<Rec>().unwrap();
    let (ra, rb) = (recs(&a), recs(&b));
    assert_eq!(ra.len(), rb.len());
    for (x, y) in ra.iter().zip(&rb) {
        assert_eq!((x.id, x.energy.to_bits()), (y.id, y.energy.to_bits()));
    }
    assert!(
        b.dataset("records")
            .unwrap()
            .dtype()
            .unwrap()
            .to_descriptor()
            .is_ok()
    );
    assert!(filter_ids(&b.dataset("ints").unwrap()).is_empty());
    // The float datasets: chunked, through the filter alone.
    for d in ["/g/table", "/g/sub/temperature"] {
        let ds = b.dataset(d).unwrap();
        assert_eq!(filter_ids(&ds), vec![h5baler::FILTER_ID], "{d}");
        assert!(ds.chunk().is_some(), "{d}");
        assert_eq!(ds.shape(), a.dataset(d).unwrap().shape());
    }
    // Through the soft link too.
    let linked: Vec<f32> = b.dataset("table_link").unwrap().read_raw().unwrap();
    assert_eq!(linked.len(), ROWS * 4);
}

#[test]
fn h5repack_converts_floats_and_keeps_everything_else() {
    register();
    let dir = tmp();
    let input = p(dir.path(), "in.h5");
    let out = p(dir.path(), "out.h5");
    write_input(&input);
    let o = ok(&[
        "h5repack",
        &input,
        &out,
        "--bound",
        "rel:1e-3",
        "--bound-col",
        "pt=bits:10",
        "--chunk-size",
        "8K",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("/g/table") && err.contains("/g/sub/temperature"),
        "{err}"
    );
    assert!(err.contains("total"), "{err}");
    assert!(err.contains("\n  h5repack -l "), "{err}");
    assert!(
        err.contains(" -l /g/table:CHUNK=500x4 -f /g/table:UD=47646,0,"),
        "{err}"
    );
    assert_eq!(err.matches("/g/table:UD=").count(), 1, "{err}");
    check_common(&input, &out);
    let rel = |j| Check::Abs(1e-3 * table_range(j));
    check_table(
        &out,
        [Check::PwRel(0.5f64.powi(11)), rel(1), rel(2), rel(3)],
    );
    check_field(&out, Check::Abs(1e-3 * range(field().into_iter())));
    // Chunks of whole rows of about 8 KiB; slabs of the field.
    let b = h5_open(&out);
    assert_eq!(b.dataset("/g/table").unwrap().chunk(), Some(vec![500, 4]));
    assert_eq!(
        b.dataset("/g/sub/temperature").unwrap().chunk(),
        Some(vec![1, 20, 30])
    );

    // `baler info` shows the filter and the decoded bounds.
    let info = String::from_utf8_lossy(&ok(&["info", &out]).stdout).into_owned();
    assert!(info.contains("baler's HDF5 filter (id 47646"), "{info}");
    assert!(
        info.contains("chunks of 500 × 4 float32 (4-byte elements)"),
        "{info}"
    );
    assert!(info.contains("pt") && info.contains("bits:10"), "{info}");
    let e_eta = format!("{}", baler::BoundSpec::Abs(1e-3 * table_range(1)));
    assert!(info.contains(&e_eta), "{info} lacks {e_eta}");
    let one = String::from_utf8_lossy(&ok(&["info", &format!("{out}:/g/sub/temperature")]).stdout)
        .into_owned();
    assert!(one.contains("filters  baler"), "{one}");
    assert!(
        one.contains("field (one bound)") && one.contains("bound    abs:"),
        "{one}"
    );

    // `h5dump` reads it through the plugin, where the tools are installed.
    if std::process::Command::new("sh")
        .args(["-c", "command -v h5dump"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let exe = Path::new(env!("CARGO_BIN_EXE_baler"));
        let so = exe.parent().unwrap().join("deps/libh5baler.so");
        assert!(
            so.exists(),
            "{} is built with the command line",
            so.display()
        );
        // A folder holding the plugin alone (HDF5 tries every file of the folder).
        let plugins = dir.path().join("plugins");
        std::fs::create_dir(&plugins).unwrap();
        std::fs::copy(&so, plugins.join("libh5baler.so")).unwrap();
        let dump = std::process::Command::new("h5dump")
            .args(["-d", "/g/table", &out])
            .env("HDF5_PLUGIN_PATH", &plugins)
            .env("HDF5_USE_FILE_LOCKING", "FALSE")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&dump.stdout);
        assert!(
            dump.status.success(),
            "h5dump: {}",
            String::from_utf8_lossy(&dump.stderr)
        );
        assert!(
            text.contains("(1999,0):"),
            "{}",
            &text[..text.len().min(2000)]
        );

        // The printed h5repack command (16 and 3 values: within what the tool takes) writes
        // the same datasets with HDF5's own tool.
        let line = err
            .lines()
            .find(|l| l.starts_with("  h5repack "))
            .expect("the h5repack command");
        let tool_out = p(dir.path(), "tool.h5");
        let cmd = line
            .trim()
            .replace(&format!(" {out}"), &format!(" {tool_out}"));
        let r = std::process::Command::new("sh")
            .args(["-c", &cmd])
            .env("HDF5_PLUGIN_PATH", &plugins)
            .env("HDF5_USE_FILE_LOCKING", "FALSE")
            .output()
            .unwrap();
        assert!(
            r.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        check_table(
            &tool_out,
            [Check::PwRel(0.5f64.powi(11)), rel(1), rel(2), rel(3)],
        );
        check_field(&tool_out, Check::Abs(1e-3 * range(field().into_iter())));
        let t = h5_open(&tool_out);
        assert_eq!(t.dataset("/g/table").unwrap().chunk(), Some(vec![500, 4]));
    }
}

#[test]
fn h5repack_takes_a_bounds_file() {
    register();
    let dir = tmp();
    let input = p(dir.path(), "in.h5");
    let out = p(dir.path(), "out.h5");
    let bounds = p(dir.path(), "bounds.txt");
    write_input(&input);
    std::fs::write(
        &bounds,
        "# per column\ndefault rel:1e-4\npt bits:12\n2 lossless\nm* abs:0.01\n",
    )
    .unwrap();
    ok(&["h5repack", &input, &out, "--bounds", &bounds, "-q"]);
    check_common(&input, &out);
    check_table(
        &out,
        [
            Check::PwRel(0.5f64.powi(13)),
            Check::Abs(1e-4 * table_range(1)),
            Check::Exact,
            Check::Abs(0.01),
        ],
    );
    check_field(&out, Check::Abs(1e-4 * range(field().into_iter())));
    // Default chunks (1 MiB): one chunk of the whole table.
    assert_eq!(
        h5_open(&out).dataset("/g/table").unwrap().chunk(),
        Some(vec![ROWS, 4])
    );
    // --print-h5repack writes nothing and prints the command.
    let cmd = p(dir.path(), "never.h5");
    let o = ok(&[
        "h5repack",
        &input,
        &cmd,
        "--bounds",
        &bounds,
        "--print-h5repack",
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("h5repack -l "), "{text}");
    assert!(
        text.contains(" -l /g/table:CHUNK=2000x4 -f /g/table:UD=47646,0,"),
        "{text}"
    );
    assert!(!Path::new(&cmd).exists());
}

#[test]
fn h5repack_refuses_what_it_must() {
    let dir = tmp();
    let input = p(dir.path(), "in.h5");
    let out = p(dir.path(), "out.h5");
    write_input(&input);
    ok(&["h5repack", &input, &out, "-b", "abs:1e-3", "-q"]);
    // An existing output without -f; with -f it is replaced.
    fails(
        &["h5repack", &input, &out, "-b", "abs:1e-3"],
        1,
        "already exists; use -f",
    );
    ok(&["h5repack", &input, &out, "-b", "abs:1e-2", "-f", "-q"]);
    check_table(&out, [Check::Abs(1e-2); 4]);
    // Usage errors: exit 2.
    fails(
        &["h5repack", &input, &out, "-b", "fuzzy:3"],
        2,
        "invalid value",
    );
    fails(&["h5repack", &input, &out], 2, "a bound is required");
    fails(
        &[
            "h5repack",
            &input,
            &out,
            "-b",
            "abs:1e-3",
            "--bound-col",
            "pt",
        ],
        2,
        "COLUMN=SPEC",
    );
    // Errors: exit 1, naming the file.
    let missing = p(dir.path(), "missing.h5");
    fails(
        &["h5repack", &missing, &out, "-b", "abs:1e-3", "-f"],
        1,
        "missing.h5",
    );
    fails(
        &["h5repack", &input, &input, "-b", "abs:1e-3", "-f"],
        1,
        "is the input itself",
    );
    let e = fails(
        &[
            "h5repack",
            &input,
            &p(dir.path(), "o2.h5"),
            "-b",
            "abs:1e-3",
            "--bound-col",
            "energy=lossless",
        ],
        1,
        "matches no column",
    );
    assert!(
        e.contains("/g/table") && e.contains("pt, eta, phi, mass"),
        "{e}"
    );
    fails(
        &[
            "h5repack",
            &input,
            &p(dir.path(), "o3.h5"),
            "-b",
            "abs:1e-3",
            "--bound-col",
            "7=lossless",
        ],
        1,
        "matches no column",
    );
    let bad = p(dir.path(), "bad.txt");
    std::fs::write(&bad, "pt bits:10\n").unwrap();
    fails(
        &[
            "h5repack",
            &input,
            &p(dir.path(), "o4.h5"),
            "--bounds",
            &bad,
        ],
        1,
        "no 'default SPEC' line",
    );
    // A file without a float dataset.
    let ints = p(dir.path(), "ints.h5");
    {
        let f = hdf5::File::with_options()
            .with_fapl(|p| p.file_locking(false))
            .create(&ints)
            .unwrap();
        f.new_dataset::<i32>()
            .shape(4)
            .create("n")
            .unwrap()
            .write_raw(&[1, 2, 3, 4])
            .unwrap();
    }
    let e = fails(
        &["h5repack", &ints, &p(dir.path(), "o5.h5"), "-b", "abs:1"],
        1,
        "no float32 or float64 dataset",
    );
    assert!(e.contains("ints.h5") && e.contains("/n"), "{e}");
    // Nothing was left behind by the failures.
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') || n.starts_with('o') && n != "out.h5")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let _ = run(&["--version"]);
}

/// A table some columns of which follow from others, for a model `baler train` keeps.
fn related_table(rows: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(rows * 4);
    for i in 0..rows {
        let t = i as f32;
        let a = 10.0 + 50.0 * (t * 0.0137).sin().abs() + (t * 0.71).cos();
        let b = 3.0 * (t * 0.0291).cos() + 0.1 * (t * 1.3).sin();
        v.extend_from_slice(&[a, b, 2.0 * a - b + 0.01 * (t * 0.17).sin(), a * 0.5 + b]);
    }
    v
}

#[test]
fn h5repack_stores_a_model_for_the_tables_of_its_width() {
    register();
    let dir = tmp();
    let input = p(dir.path(), "in.h5");
    let out = p(dir.path(), "out.h5");
    let model = p(dir.path(), "m.bmdl");
    let rows = 40_000;
    let orig = related_table(rows);
    {
        let f = hdf5::File::with_options()
            .with_fapl(|p| p.file_locking(false))
            .create(&input)
            .unwrap();
        f.new_dataset::<f32>()
            .shape([rows, 4])
            .create("t")
            .unwrap()
            .write_raw(&orig)
            .unwrap();
        f.new_dataset::<f64>()
            .shape(100)
            .create("series")
            .unwrap()
            .write_raw(&(0..100).map(f64::from).collect::<Vec<_>>())
            .unwrap();
    }
    ok(&[
        "train",
        &format!("{input}:/t"),
        "-b",
        "abs:1e-3",
        "-o",
        &model,
        "--epochs",
        "0",
        "--sample",
        "20000",
        "-q",
    ]);
    let model_bytes = std::fs::metadata(&model).unwrap().len();
    ok(&[
        "h5repack", &input, &out, "-b", "abs:1e-3", "--model", &model, "-q",
    ]);
    let back: Vec<f32> = h5_open(&out).dataset("t").unwrap().read_raw().unwrap();
    for (i, (&x, &y)) in orig.iter().zip(&back).enumerate() {
        assert!(
            within(f64::from(x), f64::from(y), Check::Abs(1e-3)),
            "value {i}: {x} -> {y}"
        );
    }
    // A series (1-D) is converted too, without the model (a table's).
    let series: Vec<f64> = h5_open(&out).dataset("series").unwrap().read_raw().unwrap();
    for (i, y) in series.iter().enumerate() {
        assert!(within(i as f64, *y, Check::Abs(1e-3)), "series {i}: {y}");
    }
    let info = String::from_utf8_lossy(&ok(&["info", &format!("{out}:/t")]).stdout).into_owned();
    assert!(
        info.contains("columns predicted") && info.contains(&format!("{model_bytes} B")),
        "{info}"
    );
    // A model for tables of another width: refused, naming the file.
    let five = p(dir.path(), "five.h5");
    {
        let f = hdf5::File::with_options()
            .with_fapl(|p| p.file_locking(false))
            .create(&five)
            .unwrap();
        f.new_dataset::<f32>()
            .shape([10, 5])
            .create("t")
            .unwrap()
            .write_raw(&[1.0f32; 50])
            .unwrap();
    }
    fails(
        &[
            "h5repack",
            &five,
            &p(dir.path(), "o.h5"),
            "-b",
            "abs:1",
            "--model",
            &model,
        ],
        1,
        "the model is for tables of 4 columns",
    );
}

/// The command line links HDF5's static library where the installation has one
/// (`cli/build.rs`): none of the shared libraries Debian's `libhdf5_serial` pulls in (curl,
/// OpenSSL, GnuTLS, Kerberos…) is then loaded, and the `H5…` functions stay visible to the
/// filter plugins (registering baler's own filter looks them up by name). This test binary is
/// linked the way the command line is.
#[test]
fn hdf5_is_linked_as_the_build_script_chose() {
    register();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let loaded = |name: &str| maps.lines().any(|l| l.contains(name));
    match env!("BALER_HDF5_LINKED") {
        "static" => {
            for lib in ["libhdf5", "libcurl", "libcrypto", "libgnutls", "libkrb5"] {
                assert!(!loaded(lib), "{lib} is loaded with HDF5 linked statically");
            }
        }
        linked => {
            assert_eq!(linked, "dynamic");
            assert!(loaded("libhdf5"), "HDF5's shared library is not loaded");
        }
    }
}

/// `baler licenses` carries the notices a redistribution of the binary must: baler's licence,
/// the compiled-in font's, and where HDF5 is linked statically its notice with the version
/// of the HDF5 actually linked (the one this test binary calls); a shared HDF5 is only named.
#[test]
fn licenses_carry_the_notices_of_what_is_linked_in() {
    let out = ok(&["licenses"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Apache License, Version 2.0"), "{text}");
    assert!(
        text.contains("DejaVu") && text.contains("Bitstream"),
        "{text}"
    );
    let (major, minor, release) = hdf5::library_version();
    let statically = format!("HDF5 {major}.{minor}.{release}, linked statically");
    match env!("BALER_HDF5_LINKED") {
        "static" => {
            assert!(text.contains(&statically), "{text}");
            assert!(
                text.contains("Redistributions in binary form must reproduce the above copyright"),
                "{text}"
            );
            assert!(text.contains("Lawrence Berkeley"), "{text}");
        }
        _ => {
            assert!(!text.contains("linked statically"), "{text}");
            assert!(text.contains("shared library"), "{text}");
        }
    }
}
