//! Helpers shared by the integration tests: one round trip used by every mode, and a bound check
//! written independently of the library (it resolves bounds itself and compares exactly). The
//! command line's tests (`cli/tests/`) use them too, with their own `cli` helpers beside.

#![allow(dead_code)]

use baler::{
    ArrayData, ArraySpec, BoundSpec, Bounds, ColumnRef, CompressOptions, Element, Header, Layout,
};

/// The bound a column must meet, resolved here from the data (not by the library).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Expected {
    /// `|x − x'| ≤ E` (0: bit for bit).
    Abs(f64),
    /// `|x − x'| ≤ R·|x|`.
    PwRel(f64),
}

impl Expected {
    /// The absolute bound (for tests of absolute and range-relative bounds only).
    pub fn abs(self) -> f64 {
        match self {
            Expected::Abs(e) => e,
            Expected::PwRel(r) => panic!("pwrel:{r} is not an absolute bound"),
        }
    }
}

/// A glob (`*`, `?`) matched by plain recursion, independently of the library's.
fn glob(p: &[char], n: &[char]) -> bool {
    match (p.first(), n.first()) {
        (None, None) => true,
        (Some('*'), _) => glob(&p[1..], n) || (!n.is_empty() && glob(p, &n[1..])),
        (Some('?'), Some(_)) => glob(&p[1..], &n[1..]),
        (Some(a), Some(b)) if a == b => glob(&p[1..], &n[1..]),
        _ => false,
    }
}

/// The bound each column must meet, computed here from the data (not by the library):
/// `rel` is `R × (max − min)` over finite values, in f64, as `check.py` does; `bits:N` is
/// `pwrel:2^-(N+1)`.
pub fn expected_bounds<T: Element>(data: &[T], spec: &ArraySpec, bounds: &Bounds) -> Vec<Expected> {
    let width = spec.bound_columns();
    let stride = if spec.layout == Layout::Table {
        width
    } else {
        1
    };
    (0..width)
        .map(|j| {
            let mut spec_j = bounds.default;
            for (r, s) in &bounds.overrides {
                let hit = match r {
                    ColumnRef::Index(i) => *i == j,
                    ColumnRef::Name(n) => spec.column_names.get(j) == Some(n),
                    ColumnRef::Pattern(p) => spec.column_names.get(j).is_some_and(|n| {
                        glob(
                            &p.chars().collect::<Vec<_>>(),
                            &n.chars().collect::<Vec<_>>(),
                        )
                    }),
                };
                if hit {
                    spec_j = *s;
                }
            }
            match spec_j {
                BoundSpec::Abs(e) => Expected::Abs(e),
                BoundSpec::Lossless => Expected::Abs(0.0),
                BoundSpec::PwRel(r) => Expected::PwRel(r),
                BoundSpec::Bits(n) => Expected::PwRel(1.0 / (2.0f64).powi(n as i32 + 1)),
                BoundSpec::Rel(r) => {
                    let col = data
                        .iter()
                        .skip(j)
                        .step_by(stride)
                        .map(|v| v.to_f64())
                        .filter(|v| v.is_finite());
                    let (lo, hi) = col.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                        (a.min(v), b.max(v))
                    });
                    // A range beyond f64::MAX (values near ±1e308) is taken in halves, so the
                    // bound is R times the true range, not infinite.
                    let e = if lo > hi {
                        0.0
                    } else if (hi - lo).is_finite() {
                        r * (hi - lo)
                    } else {
                        (r * (hi / 2.0 - lo / 2.0) * 2.0).min(f64::MAX)
                    };
                    Expected::Abs(e)
                }
            }
        })
        .collect()
}

/// Asserts every value of `back` stands for `orig` under `bounds` (one per column): finite values
/// within the bound, exactly, in the data's own precision; non-finite values, −0.0, and every
/// value of a bound-0 column bit for bit; under a point-wise relative bound, zeros bit for bit.
pub fn assert_within<T: Element>(orig: &[T], back: &[T], width: usize, bounds: &[Expected]) {
    assert_eq!(orig.len(), back.len(), "length");
    for (i, (&x, &y)) in orig.iter().zip(back).enumerate() {
        let j = i % width;
        let bound = bounds[j.min(bounds.len() - 1)];
        let (xb, yb) = (x.to_bits64(), y.to_bits64());
        let sign = 1u64 << (8 * T::BYTES - 1);
        let exact = match bound {
            Expected::Abs(e) => e == 0.0,
            Expected::PwRel(_) => x.to_f64() == 0.0,
        };
        if exact || !x.is_finite() || xb == sign {
            assert_eq!(
                xb, yb,
                "value {i} (column {j}) must be bit-exact: {x:?} came back as {y:?}"
            );
            continue;
        }
        assert!(y.is_finite(), "value {i}: finite {x:?} came back as {y:?}");
        let (a, b) = (x.to_f64(), y.to_f64());
        let d = a - b;
        let (ok, e) = match bound {
            // Exact: |x − y| ≤ e, with the subtraction's rounding error accounted for.
            Expected::Abs(e) if d.abs() != e => (d.abs() < e, e),
            Expected::Abs(e) => {
                let bb = d - a;
                let err = (a - (d - bb)) + (-b - bb);
                (if d > 0.0 { err <= 0.0 } else { err >= 0.0 }, e)
            }
            // |x − y| ≤ R·|x|, in f64 (exact for f32 data and for R a power of two).
            Expected::PwRel(r) => (d.abs() <= r * a.abs(), r * a.abs()),
        };
        assert!(
            ok,
            "value {i} (column {j}): |{x:?} - {y:?}| = {:e} exceeds the bound {e:e} ({bound:?})",
            d.abs()
        );
        assert!(
            yb != sign || xb == sign,
            "value {i}: -0.0 appeared for {x:?}"
        );
    }
}

fn typed<T: Element>(data: &ArrayData) -> &[T] {
    match data {
        ArrayData::F32(v) => bytemuck::cast_slice(v.as_slice()),
        ArrayData::F64(v) => bytemuck::cast_slice(v.as_slice()),
    }
}

/// Compresses `data` in memory, decompresses it, and checks every value. Returns the container
/// and its header.
pub fn round_trip<T: Element>(
    data: &[T],
    spec: &ArraySpec,
    opts: &CompressOptions,
) -> (Vec<u8>, Header) {
    let packed = baler::compress_slice(data, spec, opts).expect("compress");
    let (header, back) = baler::decompress_to_vec(&packed).expect("decompress");
    assert_eq!(back.dtype(), T::DTYPE);
    let expected = expected_bounds(data, spec, &opts.bounds);
    for (j, (b, e)) in header.bounds.iter().zip(&expected).enumerate() {
        let ok = match (b.bound, *e) {
            (baler::Bound::Lossless, Expected::Abs(_)) => true,
            (baler::Bound::Abs(a), Expected::Abs(e)) => a <= e,
            (baler::Bound::PwRel(r), Expected::PwRel(e)) => r <= e,
            _ => false,
        };
        assert!(
            ok,
            "column {j}: resolved bound {} differs from the expected {e:?}",
            b.bound
        );
    }
    let width = if spec.layout == Layout::Table {
        spec.shape[1] as usize
    } else {
        1
    };
    assert_within(data, typed::<T>(&back), width, &expected);
    (packed, header)
}

/// A deterministic pseudo-random sequence (no dependency needed for plain test data).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 11
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.next_u64() as f64 / (1u64 << 53) as f64
    }
    /// Roughly normal.
    pub fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.unit()).sum::<f64>() - 6.0
    }
}

/// Loads a little-endian f32/f64 `.npy` fixture as (values, shape).
pub fn load_npy(path: &str) -> (ArrayData, Vec<u64>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let h = baler::io::npy::read_header(&mut &bytes[..]).expect("npy header");
    let body = &bytes[h.data_offset as usize..];
    let data = match h.dtype {
        baler::DType::F32 => ArrayData::F32(bytemuck::pod_collect_to_vec(body)),
        baler::DType::F64 => ArrayData::F64(bytemuck::pod_collect_to_vec(body)),
    };
    (data, h.shape)
}

/// The repository's root (where `fixtures/` is), from the library's tests or the command
/// line's (`cli/`).
pub fn repo() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    if dir.join("fixtures").is_dir() {
        dir.to_path_buf()
    } else {
        dir.parent().expect("the workspace root").to_path_buf()
    }
}

/// Path of a fixture.
pub fn fixture(name: &str) -> String {
    repo().join("fixtures").join(name).display().to_string()
}
