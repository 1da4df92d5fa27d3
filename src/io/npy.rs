//! The `.npy` format: parsing and writing its header.
//!
//! A `.npy` file is the magic `\x93NUMPY`, a version (1.0, 2.0 or 3.0), a little-endian header
//! length (u16 for 1.0, u32 after), and a Python dict literal such as
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (77394, 16), }` padded with spaces to a
//! multiple of 64 bytes, then the raw values.

use std::io::{self, Read};

use crate::element::DType;
use crate::error::{Error, Result};

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// What a `.npy` header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// Element type.
    pub dtype: DType,
    /// Whether the values are big-endian.
    pub big_endian: bool,
    /// Dimensions.
    pub shape: Vec<u64>,
    /// Offset of the first value from the start of the file.
    pub data_offset: u64,
}

/// Reads a `.npy` header from the start of `r`, leaving `r` at the first value.
pub fn read_header<R: Read>(r: &mut R) -> Result<NpyHeader> {
    let mut pre = [0u8; 10];
    r.read_exact(&mut pre)
        .map_err(|e| eof_is_invalid(e, "the file is shorter than a .npy header"))?;
    if &pre[..6] != MAGIC {
        return Err(Error::InvalidInput(
            "not a .npy file (no \\x93NUMPY magic); for raw values give --dtype and --shape".into(),
        ));
    }
    let (len, offset) = match pre[6] {
        1 => (u16::from_le_bytes([pre[8], pre[9]]) as usize, 10u64),
        2 | 3 => {
            let mut more = [0u8; 2];
            r.read_exact(&mut more)
                .map_err(|e| eof_is_invalid(e, "truncated .npy header"))?;
            (
                u32::from_le_bytes([pre[8], pre[9], more[0], more[1]]) as usize,
                12u64,
            )
        }
        v => {
            return Err(Error::InvalidInput(format!(
                ".npy format version {v} is not supported"
            )));
        }
    };
    if len > 1 << 20 {
        return Err(Error::InvalidInput(format!(
            ".npy header of {len} bytes is implausible"
        )));
    }
    let mut text = vec![0u8; len];
    r.read_exact(&mut text)
        .map_err(|e| eof_is_invalid(e, "truncated .npy header"))?;
    let text = String::from_utf8_lossy(&text);
    let mut h = parse_dict(&text)?;
    h.data_offset = offset + len as u64;
    Ok(h)
}

fn eof_is_invalid(e: io::Error, msg: &str) -> Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        Error::InvalidInput(msg.into())
    } else {
        Error::Io(e)
    }
}

fn value_after<'a>(text: &'a str, key: &str) -> Result<&'a str> {
    for quote in ['\'', '"'] {
        let k = format!("{quote}{key}{quote}");
        if let Some(i) = text.find(&k) {
            let rest = text[i + k.len()..].trim_start();
            if let Some(rest) = rest.strip_prefix(':') {
                return Ok(rest.trim_start());
            }
        }
    }
    Err(Error::InvalidInput(format!(
        "the .npy header has no '{key}' entry"
    )))
}

fn parse_dict(text: &str) -> Result<NpyHeader> {
    let descr = value_after(text, "descr")?;
    let q = descr
        .chars()
        .next()
        .filter(|c| *c == '\'' || *c == '"')
        .ok_or_else(|| {
            Error::InvalidInput(
                "structured .npy dtypes are not supported: save a plain float array".into(),
            )
        })?;
    let descr = &descr[1..descr[1..].find(q).map(|i| i + 1).unwrap_or(1)];
    let (big_endian, code) = match descr.as_bytes().first() {
        Some(b'<') | Some(b'=') => (
            cfg!(target_endian = "big") && descr.starts_with('='),
            &descr[1..],
        ),
        Some(b'>') => (true, &descr[1..]),
        Some(b'|') => (false, &descr[1..]),
        _ => (false, descr),
    };
    let dtype = match code {
        "f4" => DType::F32,
        "f8" => DType::F64,
        _ => {
            return Err(Error::InvalidInput(format!(
                "unsupported .npy dtype '{descr}': baler compresses float32 and float64 arrays \
                 (convert with arr.astype(numpy.float32))"
            )));
        }
    };
    let fortran = value_after(text, "fortran_order")?;
    if fortran.starts_with("True") {
        return Err(Error::InvalidInput(
            "Fortran-ordered .npy arrays are not supported: save with numpy.ascontiguousarray(arr)"
                .into(),
        ));
    }
    let shape = value_after(text, "shape")?;
    let shape = shape
        .strip_prefix('(')
        .and_then(|s| s.find(')').map(|e| &s[..e]))
        .ok_or_else(|| Error::InvalidInput("the .npy shape is not a tuple".into()))?;
    let shape = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<u64>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| {
            Error::InvalidInput("the .npy shape holds something other than integers".into())
        })?;
    let header = NpyHeader {
        dtype,
        big_endian,
        shape,
        data_offset: 0,
    };
    header.data_bytes()?;
    Ok(header)
}

impl NpyHeader {
    /// Bytes of values the header declares; an error where that count overflows, or where a
    /// dimension is 2^64 − 1 (what no file can hold, and the reader's mark of a stream of
    /// unknown length).
    pub fn data_bytes(&self) -> Result<u64> {
        let shape = || {
            let dims: Vec<String> = self.shape.iter().map(u64::to_string).collect();
            format!("({})", dims.join(", "))
        };
        if self.shape.contains(&crate::array::UNKNOWN) {
            return Err(Error::InvalidInput(format!(
                "the .npy header declares shape {}: a dimension of 2^64 - 1 cannot be real",
                shape()
            )));
        }
        self.shape
            .iter()
            .try_fold(self.dtype.size() as u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "the .npy header declares shape {}, more bytes than 2^64",
                    shape()
                ))
            })
    }
}

/// Width reserved for a first dimension that is filled in later.
const PLACEHOLDER_WIDTH: usize = 20;

/// A version 1.0 `.npy` header for little-endian values. With `reserve_first`, the first
/// dimension is padded so that [`header_bytes`] with the real value has the same length.
pub fn header_bytes(dtype: DType, shape: &[u64], reserve_first: bool) -> Vec<u8> {
    let descr = match dtype {
        DType::F32 => "<f4",
        DType::F64 => "<f8",
    };
    let mut dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    if reserve_first && let Some(first) = dims.first_mut() {
        *first = format!("{first:>PLACEHOLDER_WIDTH$}");
    }
    let shape_str = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_str}, }}");
    let total = 10 + dict.len() + 1;
    let pad = (64 - total % 64) % 64;
    dict.push_str(&" ".repeat(pad));
    dict.push('\n');
    let mut out = Vec::with_capacity(10 + dict.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_beyond_what_a_file_can_hold_are_refused() {
        let dict = |shape: &str| {
            parse_dict(&format!(
                "{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}"
            ))
        };
        for bad in [
            "(18446744073709551615,)",
            "(18446744073709551615, 2)",
            "(0, 18446744073709551615)",
            "(4611686018427387904,)",
            "(4294967296, 4294967296)",
        ] {
            assert!(dict(bad).is_err(), "{bad}");
        }
        let h = dict("(1152921504606846975, 2)").unwrap();
        assert_eq!(h.data_bytes().unwrap(), 1152921504606846975 * 8);
        assert_eq!(dict("(0, 3)").unwrap().data_bytes().unwrap(), 0);
    }

    #[test]
    fn parses_numpy_headers() {
        let h =
            parse_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (77394, 16), }").unwrap();
        assert_eq!(
            (h.dtype, h.big_endian, h.shape.clone()),
            (DType::F32, false, vec![77394, 16])
        );
        let h = parse_dict("{'descr': '>f8', 'fortran_order': False, 'shape': (5,), }").unwrap();
        assert_eq!(
            (h.dtype, h.big_endian, h.shape.clone()),
            (DType::F64, true, vec![5])
        );
        let h = parse_dict("{'descr': '<f8', 'fortran_order': False, 'shape': (), }").unwrap();
        assert!(h.shape.is_empty());
        assert!(parse_dict("{'descr': '<i4', 'fortran_order': False, 'shape': (5,), }").is_err());
        assert!(parse_dict("{'descr': '<f4', 'fortran_order': True, 'shape': (5,), }").is_err());
        assert!(
            parse_dict("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (5,), }")
                .is_err()
        );
    }

    #[test]
    fn written_headers_are_aligned_and_readable() {
        for shape in [vec![7u64], vec![3, 4, 5], vec![0, 2]] {
            for reserve in [false, true] {
                let b = header_bytes(DType::F64, &shape, reserve);
                assert_eq!(b.len() % 64, 0);
                let h = read_header(&mut &b[..]).unwrap();
                assert_eq!(h.shape, shape);
                assert_eq!(h.data_offset, b.len() as u64);
            }
        }
        assert_eq!(
            header_bytes(DType::F32, &[123, 4], true).len(),
            header_bytes(DType::F32, &[99_999_999_999, 4], true).len()
        );
    }
}
