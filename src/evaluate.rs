//! What a compression did to the data: per-column error metrics of a reconstruction against
//! its original, accumulated chunk by chunk in one streaming pass.
//!
//! [`Evaluation`] takes the original and the reconstructed values of consecutive whole records
//! (the chunks a [`Decompressor`](crate::Decompressor) returns, and the same span of the
//! original) and keeps, per bound column (each column of a table; the whole of a field), the
//! counts, the largest absolute error and where it is, and the sums behind the RMSE, PSNR and
//! the means and RMS of the residual `x' − x` and of the relative response `(x' − x) / x`.
//! Sums are taken in `f64` over blocks of at most [`BLOCK`] values, and the block sums
//! combined with Neumaier's compensated summation, so 10⁹ values keep about full `f64`
//! precision. The bound check is the exact one the encoder uses ([`Bound::check`]); under a
//! point-wise relative bound the figure against the bound is the largest `|x' − x| / |x|`.
//!
//! ```
//! use baler::{Bound, evaluate::Evaluation};
//! let original = [1.0f32, 2.0, 0.0, 4.0];
//! let decoded = [1.0f32, 2.5, 0.0, 3.0];
//! let mut e = Evaluation::new(vec![Bound::Abs(1.0)], 1);
//! e.add(&original, &decoded);
//! let c = &e.finish()[0];
//! assert_eq!(c.max_abs_error, 1.0);
//! assert_eq!(c.max_error_at, Some(3));
//! assert_eq!(c.response_zeros, 1);
//! assert!(c.bound_met());
//! ```

use crate::bound::Bound;
use crate::element::Element;

/// Values summed in plain `f64` before a block's sum joins the compensated total.
pub const BLOCK: usize = 4096;

/// Neumaier's compensated sum.
#[derive(Debug, Clone, Copy, Default)]
struct Sum {
    hi: f64,
    lo: f64,
}

impl Sum {
    #[inline]
    fn add(&mut self, v: f64) {
        let t = self.hi + v;
        if self.hi.abs() >= v.abs() {
            self.lo += (self.hi - t) + v;
        } else {
            self.lo += (v - t) + self.hi;
        }
        self.hi = t;
    }

    fn value(&self) -> f64 {
        self.hi + self.lo
    }
}

/// The metrics of one bound column (a table's column, or a whole field).
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnMetrics {
    /// The bound in effect for the column.
    pub bound: Bound,
    /// Values compared.
    pub count: u64,
    /// Values whose original is finite and came back finite: the values the error statistics
    /// are over.
    pub finite: u64,
    /// Values whose original is NaN or ±Inf.
    pub nonfinite: u64,
    /// NaN, ±Inf and −0.0 (in the original or the reconstruction) not reproduced bit for bit,
    /// and finite values that came back non-finite.
    pub special_mismatches: u64,
    /// Finite values whose error exceeds the bound (exactly, in the data's own precision;
    /// with a bound of 0, any difference in the bits).
    pub violations: u64,
    /// Position in the column (the row of a table; the flat index of a field's value) of the
    /// first value that misses its bound or is not reproduced bit for bit where it must be.
    pub first_violation_at: Option<u64>,
    /// Largest `|x' − x|` over the finite values.
    pub max_abs_error: f64,
    /// Position in the column of the first value with that error.
    pub max_error_at: Option<u64>,
    /// Largest `|x' − x| / |x|` over the finite values (`+inf` where a 0 came back as
    /// something else).
    pub max_rel_error: f64,
    /// Position in the column of the first value with that relative error.
    pub max_rel_error_at: Option<u64>,
    /// Smallest finite original value (`+inf` if none).
    pub min: f64,
    /// Largest finite original value (`−inf` if none).
    pub max: f64,
    /// `Σ (x' − x)` over the finite values.
    pub sum_residual: f64,
    /// `Σ (x' − x)²` over the finite values.
    pub sum_sq_residual: f64,
    /// Finite values with `x ≠ 0`, over which the relative response is taken.
    pub response_count: u64,
    /// Finite values with `x = 0` (±0.0), left out of the relative response.
    pub response_zeros: u64,
    /// `Σ (x' − x) / x` over finite `x ≠ 0`.
    pub sum_response: f64,
    /// `Σ ((x' − x) / x)²` over finite `x ≠ 0`.
    pub sum_sq_response: f64,
}

impl ColumnMetrics {
    /// Whether every value met its bound and every special value came back bit for bit.
    pub fn bound_met(&self) -> bool {
        self.violations == 0 && self.special_mismatches == 0
    }

    /// The worst error over what the bound allows: `max |x' − x| / E`, or under a point-wise
    /// relative bound `max |x' − x| / |x|` over `R`; 0 for a bit-exact column reproduced
    /// exactly, `+inf` for a bit-exact column that was not.
    pub fn error_over_bound(&self) -> f64 {
        let (err, lim) = match self.bound {
            Bound::Abs(e) => (self.max_abs_error, e),
            Bound::PwRel(r) => (self.max_rel_error, r),
            Bound::Lossless => (self.max_abs_error, 0.0),
        };
        crate::bound::over(err, lim)
    }

    /// Root mean square error over the finite values (`NaN` if none).
    pub fn rmse(&self) -> f64 {
        (self.sum_sq_residual / self.finite as f64).sqrt()
    }

    /// Mean of the residual `x' − x` over the finite values (`NaN` if none).
    pub fn residual_mean(&self) -> f64 {
        self.sum_residual / self.finite as f64
    }

    /// RMS of the residual: the RMSE.
    pub fn residual_rms(&self) -> f64 {
        self.rmse()
    }

    /// `max − min` of the finite original values (0 if none).
    pub fn range(&self) -> f64 {
        if self.max >= self.min {
            self.max - self.min
        } else {
            0.0
        }
    }

    /// Peak signal-to-noise ratio in dB, `20·log10(range / RMSE)`: `+inf` for an exact
    /// reconstruction, `None` where it means nothing (no finite values, or a constant column
    /// reconstructed inexactly).
    pub fn psnr_db(&self) -> Option<f64> {
        let rmse = self.rmse();
        if self.finite == 0 || rmse.is_nan() {
            None
        } else if rmse == 0.0 {
            Some(f64::INFINITY)
        } else if self.range() == 0.0 {
            None
        } else {
            Some(20.0 * (self.range() / rmse).log10())
        }
    }

    /// Mean of the relative response `(x' − x) / x` over finite `x ≠ 0` (`NaN` if none).
    pub fn response_mean(&self) -> f64 {
        self.sum_response / self.response_count as f64
    }

    /// RMS of the relative response over finite `x ≠ 0` (`NaN` if none).
    pub fn response_rms(&self) -> f64 {
        (self.sum_sq_response / self.response_count as f64).sqrt()
    }
}

/// Running state of one column.
#[derive(Debug, Clone)]
struct Column {
    bound: Bound,
    count: u64,
    finite: u64,
    nonfinite: u64,
    special_mismatches: u64,
    violations: u64,
    first_violation_at: Option<u64>,
    max_abs_error: f64,
    max_error_at: Option<u64>,
    max_rel_error: f64,
    max_rel_error_at: Option<u64>,
    min: f64,
    max: f64,
    response_count: u64,
    response_zeros: u64,
    residual: Sum,
    residual_sq: Sum,
    response: Sum,
    response_sq: Sum,
}

/// Per-column metrics of a reconstruction, fed chunk by chunk (see the module docs).
#[derive(Debug, Clone)]
pub struct Evaluation {
    columns: Vec<Column>,
    /// Values per record of the table (1 for a field: one column over every value).
    width: usize,
    /// Records (rows of a table, values of a field) seen so far.
    seen: u64,
}

impl Evaluation {
    /// An evaluation of `bounds.len()` columns with these bounds: a table's columns
    /// (`width` = the number of columns), or one column over a whole field (`width` = 1).
    pub fn new(bounds: Vec<Bound>, width: usize) -> Evaluation {
        assert_eq!(bounds.len(), width.max(1), "one bound per column");
        Evaluation {
            columns: bounds
                .into_iter()
                .map(|bound| Column {
                    bound,
                    count: 0,
                    finite: 0,
                    nonfinite: 0,
                    special_mismatches: 0,
                    violations: 0,
                    first_violation_at: None,
                    max_abs_error: 0.0,
                    max_error_at: None,
                    max_rel_error: 0.0,
                    max_rel_error_at: None,
                    min: f64::INFINITY,
                    max: f64::NEG_INFINITY,
                    response_count: 0,
                    response_zeros: 0,
                    residual: Sum::default(),
                    residual_sq: Sum::default(),
                    response: Sum::default(),
                    response_sq: Sum::default(),
                })
                .collect(),
            width: width.max(1),
            seen: 0,
        }
    }

    /// An evaluation for the columns of a container.
    pub fn for_header(header: &crate::Header) -> Evaluation {
        let width = match header.spec.layout {
            crate::Layout::Table => header.record_len as usize,
            crate::Layout::Field => 1,
        };
        Evaluation::new(header.bounds.iter().map(|b| b.bound).collect(), width)
    }

    /// Values per record (1 for a field).
    pub fn width(&self) -> usize {
        self.width
    }

    /// Adds the next values: `original` and `decoded` hold the same whole records, following
    /// those added before.
    ///
    /// # Panics
    /// If the two differ in length or do not hold whole records.
    pub fn add<T: Element>(&mut self, original: &[T], decoded: &[T]) {
        assert_eq!(
            original.len(),
            decoded.len(),
            "original and decoded lengths"
        );
        let w = self.width;
        assert_eq!(original.len() % w, 0, "whole records");
        let rows = original.len() / w;
        let block_rows = (BLOCK / w).max(1);
        let mut start = 0;
        while start < rows {
            let end = (start + block_rows).min(rows);
            for (j, col) in self.columns.iter_mut().enumerate() {
                col.add_block(
                    &original[start * w + j..end * w],
                    &decoded[start * w + j..end * w],
                    w,
                    self.seen + start as u64,
                );
            }
            start = end;
        }
        self.seen += rows as u64;
    }

    /// The metrics of every column.
    pub fn finish(self) -> Vec<ColumnMetrics> {
        self.columns
            .into_iter()
            .map(|c| ColumnMetrics {
                bound: c.bound,
                count: c.count,
                finite: c.finite,
                nonfinite: c.nonfinite,
                special_mismatches: c.special_mismatches,
                violations: c.violations,
                first_violation_at: c.first_violation_at,
                max_abs_error: c.max_abs_error,
                max_error_at: c.max_error_at,
                max_rel_error: c.max_rel_error,
                max_rel_error_at: c.max_rel_error_at,
                min: c.min,
                max: c.max,
                sum_residual: c.residual.value(),
                sum_sq_residual: c.residual_sq.value(),
                response_count: c.response_count,
                response_zeros: c.response_zeros,
                sum_response: c.response.value(),
                sum_sq_response: c.response_sq.value(),
            })
            .collect()
    }
}

impl Column {
    /// One block of one column: `orig[k·stride]`, `dec[k·stride]` for positions `first + k`.
    #[inline]
    fn add_block<T: Element>(&mut self, orig: &[T], dec: &[T], stride: usize, first: u64) {
        let sign = 1u64 << (T::BYTES * 8 - 1);
        let bound = self.bound;
        let (mut s1, mut s2, mut r1, mut r2) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        let (mut finite, mut resp, mut zeros) = (0u64, 0u64, 0u64);
        let (mut lo, mut hi) = (self.min, self.max);
        let mut worst = self.max_abs_error;
        let mut worst_at = self.max_error_at;
        let mut worst_rel = self.max_rel_error;
        let mut worst_rel_at = self.max_rel_error_at;
        let mut n = 0u64;
        for (k, (&x, &y)) in orig
            .iter()
            .step_by(stride)
            .zip(dec.iter().step_by(stride))
            .enumerate()
        {
            n += 1;
            let pos = first + k as u64;
            let (xb, yb) = (x.to_bits64(), y.to_bits64());
            if !x.is_finite() || !y.is_finite() {
                if !x.is_finite() {
                    self.nonfinite += 1;
                }
                if xb != yb {
                    self.special_mismatches += 1;
                    self.first_violation_at.get_or_insert(pos);
                }
                continue;
            }
            let zero_sign = (xb == sign || yb == sign) && xb != yb;
            if zero_sign {
                // −0.0 must come back as itself (and only for itself).
                self.special_mismatches += 1;
                self.first_violation_at.get_or_insert(pos);
            }
            let (xf, yf) = (x.to_f64(), y.to_f64());
            let d = yf - xf;
            let ad = d.abs();
            if ad > worst || worst_at.is_none() {
                worst = ad;
                worst_at = Some(pos);
            }
            let rel = if xb == yb {
                0.0
            } else if xf != 0.0 {
                ad / xf.abs()
            } else {
                f64::INFINITY
            };
            if rel > worst_rel || worst_rel_at.is_none() {
                worst_rel = rel;
                worst_rel_at = Some(pos);
            }
            if xb != yb && !zero_sign && !bound.check(x, y) {
                self.violations += 1;
                self.first_violation_at.get_or_insert(pos);
            }
            finite += 1;
            s1 += d;
            s2 += d * d;
            lo = lo.min(xf);
            hi = hi.max(xf);
            if xf != 0.0 {
                let r = d / xf;
                resp += 1;
                r1 += r;
                r2 += r * r;
            } else {
                zeros += 1;
            }
        }
        self.count += n;
        self.finite += finite;
        self.response_count += resp;
        self.response_zeros += zeros;
        self.min = lo;
        self.max = hi;
        self.max_abs_error = worst;
        self.max_error_at = worst_at;
        self.max_rel_error = worst_rel;
        self.max_rel_error_at = worst_rel_at;
        self.residual.add(s1);
        self.residual_sq.add(s2);
        self.response.add(r1);
        self.response_sq.add(r2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compensated_sums_keep_small_terms() {
        // 1e8 + many 1.0s: a plain f64 sum of the block sums would still be exact here, but
        // alternating huge terms are not: 1e16, 1, -1e16 sums to 1 only with compensation.
        let mut s = Sum::default();
        for v in [1e16, 1.0, -1e16] {
            s.add(v);
        }
        assert_eq!(s.value(), 1.0);
    }

    #[test]
    fn table_columns_and_positions() {
        // Two columns; the second has its worst error on row 2 and a zero original.
        let orig = [1.0f64, 0.0, 2.0, 4.0, 3.0, -2.0];
        let dec = [1.0f64, 0.25, 2.5, 4.0, 3.0, -1.0];
        let mut e = Evaluation::new(vec![Bound::Abs(0.5), Bound::Abs(1.0)], 2);
        e.add(&orig[..2], &dec[..2]);
        e.add(&orig[2..], &dec[2..]);
        let m = e.finish();
        assert_eq!(m[0].max_abs_error, 0.5);
        assert_eq!(m[0].max_error_at, Some(1));
        assert!(m[0].bound_met());
        assert_eq!(m[1].max_abs_error, 1.0);
        assert_eq!(m[1].max_error_at, Some(2));
        assert_eq!(m[1].response_zeros, 1);
        assert_eq!(m[1].response_count, 2);
        assert_eq!(m[1].sum_response, -0.5);
        assert_eq!(m[1].range(), 6.0);
        assert!((m[1].rmse() - ((0.0625 + 1.0) / 3.0f64).sqrt()).abs() < 1e-15);
    }

    #[test]
    fn pointwise_relative_columns() {
        let r = 1.0 / 1024.0;
        let orig = [1024.0f32, 0.0, -0.0, 3.0, 1e-30, 2048.0];
        let dec = [1024.5f32, 0.0, -0.0, 3.0, 1e-30, 2049.75];
        let mut e = Evaluation::new(vec![Bound::PwRel(r)], 1);
        e.add(&orig, &dec);
        let m = &e.finish()[0];
        assert!(m.bound_met());
        assert_eq!(m.max_rel_error, 1.75 / 2048.0);
        assert_eq!(m.max_rel_error_at, Some(5));
        assert_eq!(m.error_over_bound(), 0.875);
        // A zero that comes back as anything else, and an error just over R·|x|.
        let mut e = Evaluation::new(vec![Bound::PwRel(r)], 1);
        e.add(&[0.0f32, 1024.0], &[1e-40, 1025.5]);
        let m = &e.finish()[0];
        assert_eq!(m.violations, 2);
        assert_eq!(m.first_violation_at, Some(0));
        assert_eq!(m.error_over_bound(), f64::INFINITY);
    }

    #[test]
    fn violations_and_special_values() {
        let nan = f32::NAN;
        let orig = [1.0f32, nan, f32::INFINITY, -0.0, 2.0, 5.0];
        let dec = [1.0f32, nan, f32::NEG_INFINITY, 0.0, 2.6, 5.5];
        let mut e = Evaluation::new(vec![Bound::Abs(0.5)], 1);
        e.add(&orig, &dec);
        let m = &e.finish()[0];
        assert_eq!(m.nonfinite, 2);
        assert_eq!(m.special_mismatches, 2); // -Inf for +Inf, +0.0 for -0.0
        assert_eq!(m.violations, 1); // 2.0 -> 2.6; 5.0 -> 5.5 sits on the bound
        assert_eq!(m.first_violation_at, Some(2));
        assert_eq!(m.finite, 4);
        assert!(!m.bound_met());
        // A bit-exact column: any difference is a violation.
        let mut e = Evaluation::new(vec![Bound::Lossless], 1);
        e.add(&[1.0f64, 2.0], &[1.0, 2.0 + f64::EPSILON * 2.0]);
        let m = &e.finish()[0];
        assert_eq!(m.violations, 1);
        assert_eq!(m.error_over_bound(), f64::INFINITY);
        let mut e = Evaluation::new(vec![Bound::Lossless], 1);
        e.add(&[1.0f64, 2.0], &[1.0, 2.0]);
        let m = &e.finish()[0];
        assert_eq!(
            (m.error_over_bound(), m.psnr_db()),
            (0.0, Some(f64::INFINITY))
        );
    }
}
