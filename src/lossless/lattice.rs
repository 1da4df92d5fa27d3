//! Lattice detection (format version 8): f32 values that are points of an affine lattice,
//! `x = f32(R + k·s)` with one offset `R` and one step `s` per plane and a small integer `k`,
//! as GRIB and packed netCDF variables unpack (a 16-bit integer per value, a reference value
//! and a binary scale per 2-D field: every plane of the CMIP5 and ECHAM5 fields here). Such a
//! column is coded as its integers `k`, which carry at most 23 bits where the floats carry 32
//! and are linear in the value where the floats' bits are not (a wind field crossing zero).
//!
//! The integers travel through the integer coder ([`super::ints`]) as the f32 values
//! `2^23 + k`, whose value words are `k` plus a constant: every transform and Lorenzo
//! prediction there applies to them unchanged. A plane is the grid's (the last two axes of a
//! field), or the whole column where the grid has none (a table's column in a chunk).
//!
//! The decoder computes `x = f32(f64(k)·s + R)` (one f64 multiply, one f64 add, one rounding
//! to f32: exact IEEE arithmetic, so the same on every machine); the encoder keeps a lattice
//! only where that gives back every value's bits.

use crate::bytes::{ByteReader, DecodeResult, Malformed};
use crate::predict::Grid;

/// The value that carries `k = 0` through the integer coder: from `2^23` to `2^24`, f32 values
/// are the integers, one apart.
const BASE: f64 = 8_388_608.0;
/// Largest `k` (the carrier stays below `2^24`).
const MAX_K: f64 = BASE - 1.0;
/// Values sampled per plane to find the step.
const SAMPLE: usize = 1024;
/// Planes shorter than this are not worth a lattice (16 bytes of parameters each).
const MIN_PLANE: usize = 64;
/// Steps tried, halving from the sample's smallest gap.
const HALVINGS: u32 = 12;

/// A column's lattice: one `(R, s)` per plane.
#[derive(Debug, Default)]
pub(super) struct Lattice {
    /// Values per plane.
    plane: usize,
    /// Each plane's offset and step.
    params: Vec<(f64, f64)>,
    /// The carriers `2^23 + k` of the column's values.
    pub(super) carriers: Vec<f32>,
    /// The model's predictions mapped onto the lattice.
    pub(super) model: Vec<f64>,
    sample: Vec<f32>,
}

/// Values per lattice plane of a column of `n` values on `grid`.
fn plane_len(grid: Grid, n: usize) -> usize {
    if grid.plane >= MIN_PLANE && n.is_multiple_of(grid.plane) {
        grid.plane
    } else {
        n.max(1)
    }
}

/// The value `k` on the lattice `(r, s)`: the decoder's formula, shared with the encoder's check.
#[inline(always)]
fn point(k: f64, r: f64, s: f64) -> f32 {
    (k * s + r) as f32
}

/// Half the distance from finite `x` to its neighbours in f32, the smaller side.
fn half_ulp(x: f32) -> f64 {
    let a = x.abs();
    let up = f32::from_bits(a.to_bits() + 1);
    let down = if a.to_bits() == 0 {
        up
    } else {
        f32::from_bits(a.to_bits() - 1)
    };
    ((up as f64 - a as f64).min(a as f64 - down as f64)) / 2.0
}

impl Lattice {
    /// Finds a lattice for every plane of `col` on `grid` and fills the carriers; `false`
    /// (and nothing kept) where some plane has none.
    pub(super) fn detect(&mut self, col: &[f32], grid: Grid) -> bool {
        self.params.clear();
        self.carriers.clear();
        let n = col.len();
        self.plane = plane_len(grid, n);
        if n < MIN_PLANE {
            return false;
        }
        for plane in col.chunks(self.plane) {
            match self.find(plane) {
                Some(p) => self.params.push(p),
                None => {
                    self.params.clear();
                    self.carriers.clear();
                    return false;
                }
            }
        }
        true
    }

    /// The lattice of one plane, its carriers appended; `None` where it has none.
    fn find(&mut self, plane: &[f32]) -> Option<(f64, f64)> {
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for &x in plane {
            if !x.is_finite() {
                return None;
            }
            lo = lo.min(x);
            hi = hi.max(x);
        }
        let m = lo as f64;
        if lo == hi {
            // A constant plane: every value is the offset.
            self.carriers.extend(plane.iter().map(|_| BASE as f32));
            return Some((m, 1.0));
        }
        // The smallest gap between distinct values of a sample bounds the step from above.
        let step = (plane.len() / SAMPLE).max(1);
        self.sample.clear();
        self.sample.extend(plane.iter().step_by(step));
        self.sample.sort_unstable_by(f32::total_cmp);
        self.sample.dedup();
        let gap = self
            .sample
            .windows(2)
            .map(|w| w[1] as f64 - w[0] as f64)
            .fold(f64::INFINITY, f64::min);
        if !gap.is_finite() || gap <= 0.0 {
            return None;
        }
        // A step at or below the widest values' spacing says nothing about them.
        let widest = 2.0 * half_ulp(lo.abs().max(hi.abs()));
        let mut s = 2f64.powi(gap.log2().floor() as i32);
        for _ in 0..HALVINGS {
            if s <= widest || (hi as f64 - m) / s > MAX_K {
                return None;
            }
            if self.sample.iter().all(|&x| near(x, m, s, half_ulp(lo))) {
                return self.fit(plane, m, s);
            }
            s /= 2.0;
        }
        None
    }

    /// The offset for step `s` that gives back every value of `plane` (carriers appended),
    /// if one does.
    fn fit(&mut self, plane: &[f32], m: f64, s: f64) -> Option<(f64, f64)> {
        // Every R within half a spacing of x − k·s rounds to x: intersect those intervals.
        let (mut r_lo, mut r_hi) = (f64::NEG_INFINITY, f64::INFINITY);
        for &x in plane {
            let k = ((x as f64 - m) / s).round();
            let c = x as f64 - k * s;
            let h = half_ulp(x);
            r_lo = r_lo.max(c - h);
            r_hi = r_hi.min(c + h);
        }
        let start = self.carriers.len();
        for r in [(r_lo + r_hi) / 2.0, m] {
            if !r.is_finite() {
                continue;
            }
            self.carriers.truncate(start);
            let mut ok = true;
            for &x in plane {
                let k = ((x as f64 - m) / s).round();
                if !(0.0..=MAX_K).contains(&k) || point(k, r, s).to_bits() != x.to_bits() {
                    ok = false;
                    break;
                }
                self.carriers.push((BASE + k) as f32);
            }
            if ok {
                return Some((r, s));
            }
        }
        self.carriers.truncate(start);
        None
    }

    /// Appends the parameters (each plane's `R` and `s`, as f64 bits, little-endian).
    pub(super) fn write(&self, out: &mut Vec<u8>) {
        for &(r, s) in &self.params {
            out.extend_from_slice(&r.to_le_bytes());
            out.extend_from_slice(&s.to_le_bytes());
        }
    }

    /// Reads the parameters of a column of `n` values on `grid`.
    pub(super) fn read(
        &mut self,
        r: &mut ByteReader<'_>,
        n: usize,
        grid: Grid,
    ) -> DecodeResult<()> {
        self.plane = plane_len(grid, n);
        self.params.clear();
        for _ in 0..n.div_ceil(self.plane) {
            let (off, s) = (r.f64()?, r.f64()?);
            if !off.is_finite() || !s.is_finite() || s <= 0.0 {
                return Err(Malformed(format!("lattice offset {off} and step {s}")));
            }
            self.params.push((off, s));
        }
        Ok(())
    }

    /// Maps the model's predictions `p` for a column of `n` values onto the carriers' scale,
    /// into `self.model`; whether there were any (of that length) to map.
    pub(super) fn map_model(&mut self, p: Option<&[f64]>, n: usize) -> bool {
        self.model.clear();
        let Some(p) = p.filter(|p| p.len() == n) else {
            return false;
        };
        for (chunk, &(r, s)) in p.chunks(self.plane).zip(&self.params) {
            self.model.extend(chunk.iter().map(|&x| BASE + (x - r) / s));
        }
        true
    }

    /// Turns carriers decoded into `out` back into the values.
    pub(super) fn restore(&self, out: &mut [f32]) {
        for (chunk, &(r, s)) in out.chunks_mut(self.plane).zip(&self.params) {
            for v in chunk {
                *v = point(*v as f64 - BASE, r, s);
            }
        }
    }
}

/// Whether `x` lies within rounding of the lattice through `m` with step `s`.
fn near(x: f32, m: f64, s: f64, m_err: f64) -> bool {
    let d = x as f64 - m;
    (d - (d / s).round() * s).abs() <= half_ulp(x) + m_err
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plane packed as GRIB does: an offset that is no multiple of the f32 spacing, a
    /// binary step, 16-bit integers.
    fn packed(n: usize, r: f64, s: f64, seed: u64) -> Vec<f32> {
        let mut x = seed;
        (0..n)
            .map(|i| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let k = (((i as f64 * 0.01).sin() + 1.0) * 20_000.0) as i64 + (x >> 61) as i64;
                (k as f64 * s + r) as f32
            })
            .collect()
    }

    #[test]
    fn finds_packed_planes_and_restores_them() {
        let mut col = packed(4096, 231.764_129_638_671_88, 2f64.powi(-9), 1);
        col.extend(packed(4096, -12.393_889, 2f64.powi(-11), 2));
        let grid = Grid {
            row: 64,
            plane: 4096,
        };
        let mut l = Lattice::default();
        assert!(l.detect(&col, grid));
        assert_eq!(l.params.len(), 2);
        assert_eq!(l.params[0].1, 2f64.powi(-9));
        assert_eq!(l.params[1].1, 2f64.powi(-11));
        let mut out = l.carriers.clone();
        assert!(
            out.iter()
                .all(|&c| (BASE as f32..2.0 * BASE as f32).contains(&c))
        );
        let mut bytes = Vec::new();
        l.write(&mut bytes);
        let mut back = Lattice::default();
        back.read(&mut ByteReader::new(&bytes), col.len(), grid)
            .unwrap();
        back.restore(&mut out);
        assert_eq!(
            out.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            col.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn plain_floats_have_no_lattice() {
        let mut l = Lattice::default();
        let noisy: Vec<f32> = (0..10_000).map(|i| (i as f32 * 0.37).sin() * 3.1).collect();
        assert!(!l.detect(&noisy, Grid::default()));
        let mut special = packed(1000, 1.0, 2f64.powi(-10), 3);
        special[500] = f32::NAN;
        assert!(!l.detect(&special, Grid::default()));
        let mut negzero = packed(1000, -1.0, 2f64.powi(-10), 4);
        negzero[10] = -0.0;
        assert!(!l.detect(&negzero, Grid::default()));
    }

    #[test]
    fn forged_parameters_are_refused() {
        let mut l = Lattice::default();
        for (r, s) in [
            (f64::NAN, 1.0f64),
            (0.0, 0.0),
            (0.0, -1.0),
            (f64::INFINITY, 1.0),
        ] {
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&r.to_le_bytes());
            bytes.extend_from_slice(&s.to_le_bytes());
            assert!(
                l.read(&mut ByteReader::new(&bytes), 100, Grid::default())
                    .is_err()
            );
        }
        assert!(
            l.read(&mut ByteReader::new(&[0; 8]), 100, Grid::default())
                .is_err()
        );
    }
}
