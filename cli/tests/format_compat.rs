//! The format is a promise: every container an earlier version of baler wrote keeps decoding to
//! the same bits in every later version.
//!
//! `fixtures/format/vN/` holds small containers written by a past commit in container format
//! version N (`scripts/make_format_fixtures.sh`; what each covers: its `README.md`), each beside
//! `NAME.expected.npy`, what that commit's `baler decompress` wrote. Every container in every
//! version folder is decoded here three ways — `decompress_to_vec`, the streaming
//! `Decompressor` on one thread, and the `baler decompress` binary — and each must give the
//! expected dtype, shape and bits (NaN payloads and −0.0 included). `baler info` must read the
//! header and report version N. New version folders are picked up by themselves; never edit or
//! regenerate an existing one.

mod common;

use std::fs;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use baler::{ArrayData, DType, Decompressor};

/// The values of an array as bit patterns (widened to `u64`), with its dtype and shape.
#[derive(Debug)]
struct Bits {
    dtype: DType,
    shape: Vec<u64>,
    bits: Vec<u64>,
}

fn bits_of(data: &ArrayData) -> Vec<u64> {
    match data {
        ArrayData::F32(v) => v.iter().map(|x| u64::from(x.to_bits())).collect(),
        ArrayData::F64(v) => v.iter().map(|x| x.to_bits()).collect(),
    }
}

/// Reads a little-endian float32/float64 C-order `.npy` file — parsed here, not by the library
/// under test, so a change to baler's own `.npy` code cannot hide a change in the values.
fn read_npy(path: &Path) -> Result<Bits, String> {
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bad = |why: &str| {
        format!(
            "{}: not a .npy file baler reads back: {why}",
            path.display()
        )
    };
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("no magic"));
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Err(bad("version")),
    };
    let text = bytes
        .get(start..start + len)
        .and_then(|t| std::str::from_utf8(t).ok())
        .ok_or_else(|| bad("header"))?;
    let value = |key: &str| -> Result<&str, String> {
        let at = text
            .find(&format!("'{key}':"))
            .ok_or_else(|| bad(&format!("no '{key}' in {text}")))?;
        Ok(text[at + key.len() + 3..].trim_start())
    };
    let dtype = match value("descr")? {
        d if d.starts_with("'<f4'") => DType::F32,
        d if d.starts_with("'<f8'") => DType::F64,
        d => return Err(bad(&format!("dtype {d}"))),
    };
    if !value("fortran_order")?.starts_with("False") {
        return Err(bad("Fortran order"));
    }
    let shape_text = value("shape")?;
    let close = shape_text.find(')').ok_or_else(|| bad("shape"))?;
    let shape = shape_text[1..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u64>().map_err(|_| bad("shape")))
        .collect::<Result<Vec<_>, _>>()?;
    let body = &bytes[start + len..];
    let n: u64 = shape.iter().product();
    let size = match dtype {
        DType::F32 => 4,
        DType::F64 => 8,
    };
    if body.len() as u64 != n * size as u64 {
        return Err(bad(&format!(
            "{} bytes of values for shape {shape:?}",
            body.len()
        )));
    }
    let bits = match dtype {
        DType::F32 => body
            .chunks_exact(4)
            .map(|b| u64::from(u32::from_le_bytes(b.try_into().unwrap())))
            .collect(),
        _ => body
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
            .collect(),
    };
    Ok(Bits { dtype, shape, bits })
}

/// `got` equals `want` in dtype, shape and every bit pattern.
fn same(how: &str, got: &Bits, want: &Bits) -> Result<(), String> {
    if got.dtype != want.dtype {
        return Err(format!(
            "{how}: dtype {:?}, expected {:?}",
            got.dtype, want.dtype
        ));
    }
    if got.shape != want.shape {
        return Err(format!(
            "{how}: shape {:?}, expected {:?}",
            got.shape, want.shape
        ));
    }
    if got.bits.len() != want.bits.len() {
        return Err(format!(
            "{how}: {} values, expected {}",
            got.bits.len(),
            want.bits.len()
        ));
    }
    let differ: Vec<usize> = (0..got.bits.len())
        .filter(|&i| got.bits[i] != want.bits[i])
        .collect();
    if let Some(&i) = differ.first() {
        let show = |b: u64| match want.dtype {
            DType::F32 => format!("{:?} ({b:#010x})", f32::from_bits(b as u32)),
            DType::F64 => format!("{:?} ({b:#018x})", f64::from_bits(b)),
        };
        return Err(format!(
            "{how}: {} of {} values differ; the first, value {i}, is {}, expected {}",
            differ.len(),
            got.bits.len(),
            show(got.bits[i]),
            show(want.bits[i])
        ));
    }
    Ok(())
}

/// `fixtures/format/vN/` folders, with N.
fn version_dirs() -> Vec<(PathBuf, u16)> {
    let root = common::repo().join("fixtures/format");
    let entries = fs::read_dir(&root).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: the container format fixtures are missing",
            root.display()
        )
    });
    let mut dirs: Vec<(PathBuf, u16)> = entries
        .map(|e| e.expect("read fixtures/format").path())
        .filter(|p| p.is_dir())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let version = name
                .strip_prefix('v')
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| {
                    panic!(
                        "{}: folders under fixtures/format are named vN (the format version)",
                        p.display()
                    )
                });
            (p, version)
        })
        .collect();
    dirs.sort_by_key(|d| d.1);
    dirs
}

/// The containers of a version folder, sorted; fails on an expected array without its container.
fn containers(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("read a fixtures folder").path())
        .collect();
    files.sort();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy();
        if let Some(stem) = name.strip_suffix(".expected.npy") {
            assert!(
                dir.join(format!("{stem}.baler")).exists(),
                "{}: no {stem}.baler beside it",
                f.display()
            );
        }
    }
    files
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "baler"))
        .collect()
}

/// Checks one container: returns what went wrong, if anything.
fn check(path: &Path, version: u16, tmp: &Path) -> Result<(), String> {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let stem = name.strip_suffix(".baler").unwrap();
    let expected_path = path.with_file_name(format!("{stem}.expected.npy"));
    if !expected_path.exists() {
        return Err(format!("no {stem}.expected.npy beside it"));
    }
    let want = read_npy(&expected_path)?;

    // The fixed prefix of every container: magic, then the format version (u16 LE).
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    if bytes.len() < 10 || &bytes[..8] != b"\x89BALER\r\n" {
        return Err("no container magic".into());
    }
    let stored = u16::from_le_bytes([bytes[8], bytes[9]]);
    if stored != version {
        return Err(format!(
            "format version {stored} in a folder for version {version}"
        ));
    }

    // 1. The whole container in memory.
    let (header, data) =
        baler::decompress_to_vec(&bytes).map_err(|e| format!("decompress_to_vec: {e}"))?;
    let got = Bits {
        dtype: data.dtype(),
        shape: header.spec.shape.clone(),
        bits: bits_of(&data),
    };
    same("decompress_to_vec", &got, &want)?;
    if header.spec.dtype != want.dtype {
        return Err(format!("header dtype {:?}", header.spec.dtype));
    }

    // 2. Streaming, chunk by chunk, on one thread.
    let file = fs::File::open(path).map_err(|e| e.to_string())?;
    let mut d = Decompressor::with_threads(BufReader::new(file), 1)
        .map_err(|e| format!("Decompressor: {e}"))?;
    let mut bits = Vec::with_capacity(want.bits.len());
    while let Some(chunk) = d.next_chunk().map_err(|e| format!("next_chunk: {e}"))? {
        if chunk.dtype() != want.dtype {
            return Err(format!("Decompressor: a chunk of {:?}", chunk.dtype()));
        }
        bits.extend(bits_of(&chunk));
    }
    let got = Bits {
        dtype: d.header().spec.dtype,
        shape: want.shape.clone(),
        bits,
    };
    same("Decompressor (1 thread)", &got, &want)?;
    let records = d.records_read();
    if records * header.record_len != want.bits.len() as u64 {
        return Err(format!(
            "Decompressor: {records} records of {} values",
            header.record_len
        ));
    }

    // 3. The command line.
    let out = tmp.join(format!("{stem}.npy"));
    let run = common::cli::baler()
        .arg("decompress")
        .arg(path)
        .arg("-o")
        .arg(&out)
        .args(["-q", "-f"])
        .output()
        .map_err(|e| e.to_string())?;
    if !run.status.success() {
        return Err(format!(
            "baler decompress: {}",
            String::from_utf8_lossy(&run.stderr)
        ));
    }
    same("baler decompress", &read_npy(&out)?, &want)?;

    for args in [&["info"][..], &["info", "--columns"]] {
        let run = common::cli::baler()
            .args(args)
            .arg(path)
            .output()
            .map_err(|e| e.to_string())?;
        if !run.status.success() {
            return Err(format!(
                "baler {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&run.stderr)
            ));
        }
        let text = String::from_utf8_lossy(&run.stdout);
        if !text.contains(&format!("format version {version}")) {
            return Err(format!(
                "baler {} does not say format version {version}:\n{text}",
                args.join(" ")
            ));
        }
    }
    Ok(())
}

#[test]
fn every_container_of_every_format_version_decodes_bit_for_bit() {
    let dirs = version_dirs();
    assert!(
        !dirs.is_empty(),
        "fixtures/format holds no vN folder: the container format fixtures are missing"
    );
    let tmp = tempfile::tempdir().unwrap();
    let (mut checked, mut failures) = (0, Vec::new());
    for (dir, version) in &dirs {
        let files = containers(dir);
        assert!(
            !files.is_empty(),
            "{}: no .baler fixtures in it (is `*.baler` ignored by git there?)",
            dir.display()
        );
        for f in files {
            checked += 1;
            if let Err(e) = check(&f, *version, tmp.path()) {
                failures.push(format!("{}: {e}", f.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} format fixtures no longer decode as they did:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "{checked} format fixtures in {} version folder(s) decode bit for bit",
        dirs.len()
    );
}
