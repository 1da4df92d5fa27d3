//! HDF5 in and out: round trips through the real binary on files written by h5py (the
//! fixtures, another writer than ours) and by the hdf5 crate itself, the reader against the
//! library for every window and read size, and clear failures. Values are compared with what
//! the hdf5 crate's own high-level reads return, never with baler's reader alone.

#![cfg(feature = "hdf5")]

mod common;

use std::path::Path;

use baler::{BoundSpec, Bounds, ColumnRef, DType, Element};
use common::cli::{fails, ok, p, piped, run, tmp};
use common::{assert_within, fixture};
use hdf5::H5Type;
use hdf5::types::VarLenUnicode;

const MIXED: &str = "h5py_mixed.h5";
const NAMES: [&str; 16] = [
    "Mass", "E", "Px", "Py", "Pz", "PT", "Eta", "Phi", "Rapidity", "T", "X", "Y", "Z", "PID",
    "Status", "Charge",
];

fn names() -> Vec<String> {
    NAMES.iter().map(|s| s.to_string()).collect()
}

/// Opens an HDF5 file; a file a test wrote without file locking (see `common::cli::baler`: a
/// child spawned by another test thread may hold an inherited lock on it). Fixtures, only ever
/// read, open with the library's defaults, as `baler::io::hdf5::open` opens them in this same
/// process (the library refuses one file open twice with different locking).
fn h5_open(path: &str) -> hdf5::File {
    if path.starts_with(&fixture("")) {
        hdf5::File::open(path)
    } else {
        hdf5::File::with_options()
            .with_fapl(|p| p.file_locking(false))
            .open(path)
    }
    .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Creates an HDF5 file without file locking.
fn h5_create(path: &str) -> hdf5::File {
    hdf5::File::with_options()
        .with_fapl(|p| p.file_locking(false))
        .create(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A dataset read whole by the hdf5 crate's high-level API, with its shape.
fn read_h5<T: H5Type + Copy>(file: &str, ds: &str) -> (Vec<T>, Vec<u64>) {
    let f = h5_open(file);
    let d = f.dataset(ds).unwrap_or_else(|e| panic!("{file}:{ds}: {e}"));
    let shape = d.shape().iter().map(|&x| x as u64).collect();
    (d.read_raw::<T>().expect("read"), shape)
}

/// The `columns` attribute of a dataset, split.
fn columns_attr(file: &str, ds: &str) -> Vec<String> {
    let f = h5_open(file);
    let a = f
        .dataset(ds)
        .unwrap()
        .attr("columns")
        .expect("columns attribute");
    let s: VarLenUnicode = a.read_scalar().expect("one string");
    s.as_str().split(',').map(str::to_string).collect()
}

/// The bound each column must meet, computed here from the data (see `common`).
fn expected<T: Element>(
    data: &[T],
    shape: &[u64],
    table: bool,
    bound: BoundSpec,
) -> Vec<common::Expected> {
    let mut spec = baler::ArraySpec::new(T::DTYPE, shape.to_vec());
    if !table {
        spec.layout = baler::Layout::Field;
    }
    common::expected_bounds(data, &spec, &Bounds::new(bound))
}

/// The fields of the 16-column compound fixture (and of what baler writes back).
#[derive(H5Type, Clone, Copy, Debug)]
#[repr(C)]
#[allow(non_snake_case)]
struct Particle {
    Mass: f32,
    E: f32,
    Px: f32,
    Py: f32,
    Pz: f32,
    PT: f32,
    Eta: f32,
    Phi: f32,
    Rapidity: f32,
    T: f32,
    X: f32,
    Y: f32,
    Z: f32,
    PID: f32,
    Status: f32,
    Charge: f32,
}

impl Particle {
    fn values(rows: &[Particle]) -> Vec<f32> {
        // The 16 fields in the order of the type.
        rows.iter()
            .flat_map(|r| {
                [
                    r.Mass, r.E, r.Px, r.Py, r.Pz, r.PT, r.Eta, r.Phi, r.Rapidity, r.T, r.X, r.Y,
                    r.Z, r.PID, r.Status, r.Charge,
                ]
            })
            .collect()
    }
}

/// The mixed compound fixture, widened by baler to float64 fields.
#[derive(H5Type, Clone, Copy, Debug)]
#[repr(C)]
#[allow(non_snake_case)]
struct Mixed {
    PT: f64,
    Eta: f64,
    Phi: f64,
}

fn compress(input: &str, out: &str, bound: &str) {
    ok(&["compress", input, "-o", out, "-b", bound, "-q"]);
}

fn decompress(input: &str, out: &str) {
    ok(&["decompress", input, "-o", out, "-q"]);
}

#[test]
fn h5py_plain_datasets_round_trip() {
    let dir = tmp();
    let file = fixture(MIXED);
    let cases: &[(&str, bool)] = &[
        ("/tables/contiguous", true),
        ("/tables/gzip", true),
        ("/tables/fixed_names", true),
        ("/fields/temperature_f64", false),
        ("/fields/big_endian", true),
    ];
    for &(ds, table) in cases {
        for bound in ["rel:1e-3", "abs:0.05", "lossless"] {
            let packed = p(dir.path(), "x.baler");
            let out = p(dir.path(), "x.h5");
            let _ = std::fs::remove_file(&packed);
            let _ = std::fs::remove_file(&out);
            compress(&format!("{file}:{ds}"), &packed, bound);
            decompress(&packed, &out);
            let spec: BoundSpec = bound.parse().unwrap();
            let f = h5_open(&out);
            // The dataset keeps its path; float64 stays float64.
            let dt = f.dataset(ds).expect("same path").dtype().unwrap();
            if ds.ends_with("f64") {
                let (a, shape) = read_h5::<f64>(&file, ds);
                let (b, shape_b) = read_h5::<f64>(&out, ds);
                assert!(dt.is::<f64>());
                assert_eq!(shape, shape_b);
                let e = expected(&a, &shape, table, spec);
                assert_within(&a, &b, 1, &e);
            } else {
                let (a, shape) = read_h5::<f32>(&file, ds);
                let (b, shape_b) = read_h5::<f32>(&out, ds);
                assert!(dt.is::<f32>());
                assert_eq!(shape, shape_b, "{ds}");
                let width = if table { shape[1] as usize } else { 1 };
                let e = expected(&a, &shape, table, spec);
                assert_within(&a, &b, width, &e);
            }
            if ds.starts_with("/tables") {
                assert_eq!(columns_attr(&out, ds), names(), "{ds}");
            }
        }
    }
}

#[test]
fn h5py_compound_tables_round_trip_as_compound() {
    let dir = tmp();
    let file = fixture(MIXED);
    // The compound fixture holds the contiguous table's values, one field per column.
    let (table, _) = read_h5::<f32>(&file, "/tables/contiguous");
    let (rows, _) = read_h5::<Particle>(&file, "/tables/compound");
    assert_eq!(Particle::values(&rows), table, "fixture");
    for bound in ["rel:1e-4", "lossless"] {
        let packed = p(dir.path(), &format!("c{bound}.baler"));
        let out = p(dir.path(), &format!("c{bound}.h5"));
        compress(&format!("{file}:/tables/compound"), &packed, bound);
        let info = ok(&["info", &packed]);
        assert!(String::from_utf8_lossy(&info.stdout).contains("Rapidity"));
        decompress(&packed, &out);
        let (back, shape) = read_h5::<Particle>(&out, "/tables/compound");
        assert_eq!(shape, vec![2048]);
        let e = expected(&table, &[2048, 16], true, bound.parse().unwrap());
        assert_within(&table, &Particle::values(&back), 16, &e);
    }
    // float32 and float64 fields (one big-endian) come back as float64 fields, every value
    // within its bound.
    let packed = p(dir.path(), "m.baler");
    let out = p(dir.path(), "m.h5");
    compress(
        &format!("{file}:/tables/compound_mixed"),
        &packed,
        "rel:1e-3",
    );
    decompress(&packed, &out);
    let (back, shape) = read_h5::<Mixed>(&out, "/tables/compound_mixed");
    assert_eq!(shape, vec![700]);
    let orig: Vec<f64> = table
        .chunks(16)
        .take(700)
        .flat_map(|r| [r[5] as f64, r[6] as f64, r[7] as f64])
        .collect();
    let got: Vec<f64> = back.iter().flat_map(|m| [m.PT, m.Eta, m.Phi]).collect();
    let e = expected(&orig, &[700, 3], true, BoundSpec::Rel(1e-3));
    assert_within(&orig, &got, 3, &e);
}

#[test]
fn the_only_float_dataset_is_picked_and_names_serve_bounds() {
    let dir = tmp();
    let file = fixture("h5py_single.h5");
    let packed = p(dir.path(), "s.baler");
    ok(&[
        "compress",
        &file,
        "-o",
        &packed,
        "-b",
        "rel:1e-2",
        "--bound-col",
        "PID=lossless",
        "--bound-col",
        "Charge=lossless",
        "-q",
    ]);
    let out = p(dir.path(), "s.h5");
    ok(&[
        "decompress",
        &packed,
        "-o",
        &format!("{out}:/group/copy"),
        "-q",
    ]);
    let (a, shape) = read_h5::<f32>(&file, "/data");
    let (b, _) = read_h5::<f32>(&out, "/group/copy");
    let mut bounds = Bounds::new(BoundSpec::Rel(1e-2));
    bounds.overrides = vec![
        (ColumnRef::Name("PID".into()), BoundSpec::Lossless),
        (ColumnRef::Name("Charge".into()), BoundSpec::Lossless),
    ];
    let mut spec = baler::ArraySpec::new(DType::F32, shape);
    spec.column_names = names();
    let e = common::expected_bounds(&a, &spec, &bounds);
    assert_eq!((e[13].abs(), e[15].abs()), (0.0, 0.0));
    assert_within(&a, &b, 16, &e);
    assert_eq!(columns_attr(&out, "/group/copy"), names());
    // The default output names: FILE.h5.baler, and back to the same dataset path.
    let copy = p(dir.path(), "single.h5");
    std::fs::copy(&file, &copy).unwrap();
    ok(&["compress", &format!("{copy}:/data"), "-b", "rel:1e-2", "-q"]);
    assert!(Path::new(&format!("{copy}.baler")).exists());
    std::fs::remove_file(&copy).unwrap();
    ok(&["decompress", &format!("{copy}.baler"), "-q"]);
    assert_eq!(read_h5::<f32>(&copy, "/data").0.len(), a.len());
}

/// Values with every special case, and a smooth part.
fn special_values(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| match i % 97 {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => -0.0,
            3 => f64::NEG_INFINITY,
            _ => (i as f64 * 0.013).sin() * 1e3 + (i % 7) as f64,
        })
        .collect()
}

#[test]
fn files_written_by_the_hdf5_crate_round_trip() {
    let dir = tmp();
    let src = p(dir.path(), "crate.h5");
    let field = special_values(7 * 33 * 50);
    let table: Vec<f32> = special_values(1000 * 3).iter().map(|&v| v as f32).collect();
    let series: Vec<f32> = (0..100_000).map(|i| (i as f32 * 1e-3).cos()).collect();
    {
        let f = h5_create(&src);
        f.new_dataset::<f64>()
            .shape((7, 33, 50))
            .chunk((3, 10, 16))
            .shuffle()
            .deflate(6)
            .create("sim/field")
            .unwrap()
            .write_raw(&field)
            .unwrap();
        let t = f
            .new_dataset::<f32>()
            .shape((1000, 3))
            .create("table")
            .unwrap();
        t.write_raw(&table).unwrap();
        let cols: Vec<VarLenUnicode> = ["a", "b", "c"].iter().map(|s| s.parse().unwrap()).collect();
        t.new_attr::<VarLenUnicode>()
            .shape(3)
            .create("columns")
            .unwrap()
            .write_raw(&cols)
            .unwrap();
        f.new_dataset::<f32>()
            .shape(100_000)
            .chunk(4096)
            .deflate(1)
            .create("series")
            .unwrap()
            .write_raw(&series)
            .unwrap();
    }
    for (ds, n) in [("/sim/field", 1usize), ("/table", 3), ("/series", 1)] {
        let packed = p(dir.path(), "c.baler");
        let out = p(dir.path(), "c.h5");
        let _ = std::fs::remove_file(&packed);
        let _ = std::fs::remove_file(&out);
        compress(&format!("{src}:{ds}"), &packed, "abs:0.01");
        decompress(&packed, &out);
        if ds == "/sim/field" {
            let (b, shape) = read_h5::<f64>(&out, ds);
            assert_eq!(shape, vec![7, 33, 50]);
            assert_within(&field, &b, 1, &[common::Expected::Abs(0.01)]);
        } else {
            let (a, shape) = read_h5::<f32>(&src, ds);
            let (b, shape_b) = read_h5::<f32>(&out, ds);
            assert_eq!(shape, shape_b);
            assert_within(&a, &b, n, &vec![common::Expected::Abs(0.01); n]);
        }
    }
    // A field has no column names to write.
    let f = h5_open(&p(dir.path(), "c.h5"));
    assert!(f.dataset("/series").unwrap().attr("columns").is_err());
}

#[test]
fn reader_matches_the_library_for_any_window_and_read_size() {
    use std::io::Read;
    let file = fixture(MIXED);
    for ds in [
        "/tables/gzip",
        "/tables/fixed_names",
        "/fields/temperature_f64",
        "/fields/big_endian",
        "/tables/compound",
    ] {
        // The library's own read of the whole dataset, as little-endian bytes.
        let want: Vec<u8> = match ds {
            "/fields/temperature_f64" => {
                bytemuck::cast_slice(&read_h5::<f64>(&file, ds).0).to_vec()
            }
            "/tables/compound" => {
                bytemuck::cast_slice(&Particle::values(&read_h5::<Particle>(&file, ds).0)).to_vec()
            }
            _ => bytemuck::cast_slice(&read_h5::<f32>(&file, ds).0).to_vec(),
        };
        let o = baler::io::hdf5::open(Path::new(&file), &file, Some(ds)).unwrap();
        for window in [1u64, 7, 299, 300, 301, 4096, u64::MAX / 2] {
            for step in [1usize, 5, 4096, 1 << 20] {
                let mut r = o.source.reader_with_window(window);
                let mut got = Vec::new();
                let mut buf = vec![0u8; step];
                loop {
                    let n = r.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                assert!(got == want, "{ds}: window {window}, reads of {step}");
            }
        }
    }
}

#[test]
fn streams_of_unknown_length_grow_the_dataset() {
    let dir = tmp();
    // Past the 16 MiB a stream buffers for its statistics: the header cannot know the length.
    const ROWS: u64 = 1_200_000;
    let data: Vec<f32> = (0..ROWS * 4).map(|i| (i as f32 * 0.01).sin()).collect();
    let packed = piped(
        &[
            "compress", "-", "--dtype", "f32", "--shape", "-1,4", "-b", "abs:1e-3", "-q", "-o", "-",
        ],
        bytemuck::cast_slice(&data),
    );
    let c = p(dir.path(), "s.baler");
    std::fs::write(&c, packed).unwrap();
    let out = p(dir.path(), "s.h5");
    decompress(&c, &out);
    let (b, shape) = read_h5::<f32>(&out, "/data");
    assert_eq!(shape, vec![ROWS, 4]);
    assert_within(&data, &b, 4, &[common::Expected::Abs(1e-3); 4]);
    let f = h5_open(&out);
    let space = f.dataset("data").unwrap().space().unwrap();
    assert_eq!(
        space.maxdims(),
        vec![None, Some(4)],
        "grows along its first axis"
    );
}

#[test]
fn info_lists_datasets_with_shape_type_and_chunking() {
    let file = fixture(MIXED);
    let out = String::from_utf8(ok(&["info", &file]).stdout).unwrap();
    for needle in [
        "9 datasets, 7 of float32/float64",
        "/tables/gzip",
        "2048 × 16",
        "300 × 16",
        "shuffle + gzip 4",
        "compound of 16 float fields",
        "3 × 20 × 40",
        "float64",
        "int32",
        "contiguous",
    ] {
        assert!(out.contains(needle), "info lacks '{needle}':\n{out}");
    }
    let one = String::from_utf8(ok(&["info", &format!("{file}:/tables/gzip")]).stdout).unwrap();
    assert!(one.contains(&names().join(",")), "{one}");
    fails(&["info", &format!("{file}:/tables/gzp")], 1, "did you mean");
}

#[test]
fn bad_inputs_fail_clearly_and_write_nothing() {
    let dir = tmp();
    let file = fixture(MIXED);
    let out = p(dir.path(), "never.baler");
    let cases: &[(String, &str)] = &[
        (
            "missing.h5:/data".into(),
            "cannot open missing.h5: no such file",
        ),
        (format!("{file}:/tables/gzp"), "did you mean:\n    "),
        (
            format!("{file}:/tables/gzp"),
            ":/tables/gzip  (2048 × 16, float32)",
        ),
        (
            format!("{file}:/data"),
            "no dataset /data; its float datasets are",
        ),
        (format!("{file}:/pid"), "int32, not floating point"),
        (format!("{file}:/meta/note"), "not floating point"),
        (format!("{file}:/tables"), "is a group, not a dataset"),
        (file.clone(), "holds 7 float datasets; name the one"),
        (
            format!("{}:/data", fixture("delphes_16k.npy")),
            "is not an HDF5 file",
        ),
    ];
    for (input, needle) in cases {
        fails(
            &["compress", input, "-o", &out, "-b", "rel:1e-3"],
            1,
            needle,
        );
        assert!(!Path::new(&out).exists());
    }
    fails(
        &[
            "compress",
            &format!("{file}:/tables/gzip"),
            "--dataset",
            "/x",
            "-o",
            &out,
            "-b",
            "rel:1e-3",
        ],
        1,
        "two datasets named",
    );
    // A `columns` attribute that does not fit the table.
    let bad = p(dir.path(), "bad.h5");
    {
        let f = h5_create(&bad);
        let d = f.new_dataset::<f32>().shape((4, 3)).create("t").unwrap();
        d.write_raw(&[0f32; 12]).unwrap();
        d.new_attr::<VarLenUnicode>()
            .create("columns")
            .unwrap()
            .write_scalar(&"a,b".parse::<VarLenUnicode>().unwrap())
            .unwrap();
    }
    fails(
        &["compress", &bad, "-o", &out, "-b", "rel:1e-3"],
        1,
        "names 2 columns, but the table has 3",
    );
    ok(&[
        "compress", &bad, "-o", &out, "-b", "rel:1e-3", "--names", "x,y,z", "-q",
    ]);
}

#[test]
fn a_failed_decompression_leaves_no_hdf5_file() {
    let dir = tmp();
    let file = fixture(MIXED);
    let packed = p(dir.path(), "t.baler");
    ok(&[
        "compress",
        &format!("{file}:/tables/gzip"),
        "-o",
        &packed,
        "-b",
        "rel:1e-3",
        "--chunk-size",
        "16K",
        "-q",
    ]);
    let bytes = std::fs::read(&packed).unwrap();
    std::fs::write(&packed, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let out = p(dir.path(), "t.h5");
    fails(&["decompress", &packed, "-o", &out], 1, "truncated");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["t.baler"], "nothing but the input is left");
    // An existing output is not overwritten without -f.
    std::fs::write(&packed, &bytes).unwrap();
    std::fs::write(&out, b"precious").unwrap();
    fails(&["decompress", &packed, "-o", &out], 1, "already exists");
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    let r = run(&["decompress", &packed, "-o", &out, "-f", "-q"]);
    assert!(r.status.success());
    assert_eq!(read_h5::<f32>(&out, "/tables/gzip").1, vec![2048, 16]);
}
