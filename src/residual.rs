//! The residual stage: where the error bound is enforced, and the only place.
//!
//! For a value `x` with prediction `p` and absolute bound `E > 0`, the quantization step is
//! `s = 2E` and
//!
//! ```text
//! q  = round((x − p) / s)
//! x' = T(p + s·q)          // computed in f64, rounded once to the element type T
//! ```
//!
//! `x'` is computed here exactly as `Quantizer::dequantize` will compute it (the same `f64`
//! operations in the same order, no fused multiply-add), then checked with [`within_bound`] in
//! the element's own precision. A value is stored verbatim in the exception list instead when
//! it is not finite, when `q` falls outside `±2^30`, when `x'` misses the bound (which rounding to
//! `T` can cause within a fraction of an ULP of the edge), or when `x` or `x'` is −0.0 and the
//! other is not bit-identical. So every finite value meets its bound and every special value
//! comes back bit for bit, whatever the predictor does: a bad prediction costs bytes, never
//! accuracy.
//!
//! `E = 0` never reaches this stage: such columns take the lossless path.

use crate::bytes::{ByteReader, DecodeResult, Malformed, put_section, put_uvarint};
use crate::element::Element;

/// Largest magnitude of a quantization code.
pub(crate) const MAX_CODE: i64 = 1 << 30;

/// Whether `y` may stand for `x` under the absolute bound `bound`: `|x − y| ≤ bound` exactly
/// (not just after rounding the difference), both finite, and −0.0 only for −0.0.
#[inline(always)]
pub fn within_bound<T: Element>(x: T, y: T, bound: f64) -> bool {
    let sign = 1u64 << (T::BYTES * 8 - 1);
    let (xb, yb) = (x.to_bits64(), y.to_bits64());
    if xb == sign || yb == sign {
        return xb == yb;
    }
    let (xf, yf) = (x.to_f64(), y.to_f64());
    let d = xf - yf;
    let ad = d.abs();
    if ad < bound {
        return true;
    }
    if ad != bound {
        return false; // larger, or NaN
    }
    // |fl(x − y)| equals the bound: the rounding error of the subtraction (TwoSum) decides.
    let bb = d - xf;
    let err = (xf - (d - bb)) + (-yf - bb);
    if d > 0.0 { err <= 0.0 } else { err >= 0.0 }
}

/// The first value of `decoded` that misses its bound against `original`, if any:
/// `(index, |error|)`. Non-finite originals must be reproduced bit for bit (error `inf`).
pub fn first_violation<T: Element>(
    original: &[T],
    decoded: &[T],
    bound: f64,
) -> Option<(usize, f64)> {
    for (i, (&x, &y)) in original.iter().zip(decoded).enumerate() {
        let ok = if !x.is_finite() || bound == 0.0 {
            x.to_bits64() == y.to_bits64()
        } else {
            within_bound(x, y, bound)
        };
        if !ok {
            let err = (x.to_f64() - y.to_f64()).abs();
            return Some((i, if err.is_nan() { f64::INFINITY } else { err }));
        }
    }
    None
}

/// The prediction for each value of a column.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Prediction<'a> {
    /// The same prediction for every value (the plain predictor: the column centre).
    Constant(f64),
    /// One prediction per value.
    #[allow(dead_code)]
    Values(&'a [f64]),
}

impl<'a> Prediction<'a> {
    /// The predictions of values `start..end`.
    pub(crate) fn segment(self, start: usize, end: usize) -> Prediction<'a> {
        match self {
            Prediction::Constant(p) => Prediction::Constant(p),
            Prediction::Values(ps) => Prediction::Values(&ps[start..end]),
        }
    }
}

/// Values stored verbatim, with their positions in the column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Exceptions<T> {
    pub pos: Vec<u32>,
    pub val: Vec<T>,
}

impl<T> Default for Exceptions<T> {
    fn default() -> Self {
        Exceptions {
            pos: Vec::new(),
            val: Vec::new(),
        }
    }
}

impl<T: Element> Exceptions<T> {
    pub(crate) fn clear(&mut self) {
        self.pos.clear();
        self.val.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.pos.len()
    }

    /// The index range of the exceptions at positions `start..end` (positions increase).
    pub(crate) fn segment(&self, start: usize, end: usize) -> (usize, usize) {
        (
            self.pos.partition_point(|&p| (p as usize) < start),
            self.pos.partition_point(|&p| (p as usize) < end),
        )
    }

    /// Appends the exception block: `uvarint count`, then (if any) the positions as
    /// `uvarint first, uvarint gap − 1 ...`, a method byte (0 raw, 1 LZ4) and a section with the
    /// values as little-endian bytes.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        put_uvarint(out, self.pos.len() as u64);
        if self.pos.is_empty() {
            return;
        }
        let mut prev: Option<u32> = None;
        for &p in &self.pos {
            put_uvarint(
                out,
                match prev {
                    None => p as u64,
                    Some(q) => (p - q - 1) as u64,
                },
            );
            prev = Some(p);
        }
        let mut raw = Vec::with_capacity(self.val.len() * T::BYTES);
        for v in &self.val {
            raw.extend_from_slice(&v.to_bits64().to_le_bytes()[..T::BYTES]);
        }
        let packed = lz4_flex::block::compress(&raw);
        if packed.len() + 4 < raw.len() {
            out.push(1);
            put_section(out, &packed);
        } else {
            out.push(0);
            put_section(out, &raw);
        }
    }

    /// Reads an exception block for a column of `n` values.
    pub(crate) fn read(&mut self, r: &mut ByteReader<'_>, n: usize) -> DecodeResult<()> {
        self.clear();
        let count = r.uvarint_max(n as u64, "exception count")?;
        if count == 0 {
            return Ok(());
        }
        // Positions are stored as gaps, so they are strictly increasing by construction; the
        // sum is checked so a forged gap cannot wrap around to an earlier position.
        let mut next = 0u64;
        for i in 0..count {
            let p = next
                .checked_add(r.uvarint()?)
                .filter(|&p| p < n as u64)
                .ok_or_else(|| {
                    Malformed(format!(
                        "exception {i} lies outside the column of {n} values"
                    ))
                })?;
            self.pos.push(p as u32);
            next = p + 1;
        }
        let method = r.u8()?;
        let body = r.section()?;
        let want = count * T::BYTES;
        let raw;
        let bytes = match method {
            0 => body,
            1 => {
                raw = lz4_flex::block::decompress(body, want)
                    .map_err(|e| Malformed(format!("exception values: {e}")))?;
                &raw[..]
            }
            m => return Err(Malformed(format!("unknown exception encoding {m}"))),
        };
        if bytes.len() != want {
            return Err(Malformed::new("exception values have the wrong length"));
        }
        for b in bytes.chunks_exact(T::BYTES) {
            let mut w = [0u8; 8];
            w[..T::BYTES].copy_from_slice(b);
            self.val.push(T::from_bits64(u64::from_le_bytes(w)));
        }
        Ok(())
    }
}

/// Uniform quantization with step `2E` and the exact bound check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Quantizer {
    /// Distance between reconstruction levels.
    pub step: f64,
    /// The absolute bound every finite value must meet.
    pub bound: f64,
}

/// Distance between neighbouring values of `T` near magnitude `m` (an upper bound, f64).
fn ulp_near<T: Element>(m: f64) -> f64 {
    let mantissa_bits = if T::BYTES == 4 { 23 } else { 52 };
    let min_ulp = if T::BYTES == 4 {
        f64::from(f32::from_bits(1))
    } else {
        f64::from_bits(1)
    };
    if !(m.is_finite() && m > 0.0) {
        return min_ulp;
    }
    let e = ((m.to_bits() >> 52) & 0x7ff) as i32 - 1023;
    2f64.powi(e - mantissa_bits).max(min_ulp)
}

impl Quantizer {
    /// Step `2E`: the largest that meets the bound before rounding to the element type.
    #[cfg(test)]
    pub(crate) fn for_bound(bound: f64) -> Self {
        debug_assert!(bound > 0.0);
        Quantizer {
            step: 2.0 * bound,
            bound,
        }
    }

    /// The step for a column whose finite values are at most `max_abs` in magnitude: `2E` less
    /// the rounding error of the element type there (and of the f64 arithmetic), so that
    /// rounding the reconstruction to `T` cannot push it past the bound. This costs under
    /// 1e-4 bit per value where it matters and avoids storing edge values verbatim. Where the
    /// bound is close to the data's own precision the step stays `2E` and the check decides.
    pub(crate) fn for_values<T: Element>(bound: f64, max_abs: f64) -> Self {
        debug_assert!(bound > 0.0);
        let reach = 2.0 * (max_abs + bound);
        let slack = ulp_near::<T>(reach) + reach * f64::EPSILON * 2.0;
        let step = 2.0 * bound - slack;
        let step = if step >= 1.5 * bound {
            step
        } else {
            2.0 * bound
        };
        Quantizer { step, bound }
    }

    /// The reconstruction of code `q` under prediction `p`, exactly as the decoder computes it.
    #[inline(always)]
    pub(crate) fn level<T: Element>(self, p: f64, q: i32) -> T {
        T::from_f64(p + self.step * q as f64)
    }

    /// Quantizes one value `x` against prediction `p`: its code and reconstruction, or `None`
    /// where it must be stored verbatim. The same arithmetic and check as
    /// [`quantize`](Self::quantize), for predictors that need each reconstruction before the
    /// next prediction.
    #[inline(always)]
    pub(crate) fn quantize_one<T: Element>(self, x: T, p: f64) -> Option<(i32, T)> {
        let lim = MAX_CODE as f64;
        let v = ((x.to_f64() - p) * (1.0 / self.step)).clamp(-lim, lim);
        let q = (v + 0.5f64.copysign(v)) as i32;
        let y: T = self.level(p, q);
        within_bound(x, y, self.bound).then_some((q, y))
    }

    /// Quantizes `values`: fills `codes` for the values that meet the bound, `exc` with the
    /// rest, and `recon` (if wanted; same length as `values`) with the decoder's
    /// reconstruction.
    pub(crate) fn quantize<T: Element>(
        self,
        values: &[T],
        pred: Prediction<'_>,
        codes: &mut Vec<i32>,
        exc: &mut Exceptions<T>,
        recon: Option<&mut [T]>,
    ) {
        codes.clear();
        exc.clear();
        codes.reserve(values.len());
        debug_assert!(recon.as_ref().is_none_or(|r| r.len() == values.len()));
        match pred {
            Prediction::Constant(p) => self.quantize_with(values, |_| p, codes, exc, recon),
            Prediction::Values(ps) => {
                debug_assert_eq!(ps.len(), values.len());
                self.quantize_with(values, |i| ps[i], codes, exc, recon)
            }
        }
    }

    #[inline(always)]
    fn quantize_with<T: Element>(
        self,
        values: &[T],
        pred: impl Fn(usize) -> f64,
        codes: &mut Vec<i32>,
        exc: &mut Exceptions<T>,
        mut recon: Option<&mut [T]>,
    ) {
        // Blocks of values go through a branch-free pass the compiler can vectorize; the exact
        // check (`within_bound`) runs only on values that pass or fail narrowly, which are rare.
        const BLOCK: usize = 256;
        let inv = 1.0 / self.step;
        let lim = MAX_CODE as f64;
        let sign = 1u64 << (8 * T::BYTES - 1);
        let mut qs = [0i32; BLOCK];
        let mut clear = [false; BLOCK];
        let mut ys = [T::from_f64(0.0); BLOCK];
        for (b, xs) in values.chunks(BLOCK).enumerate() {
            let base = b * BLOCK;
            let rs = &mut ys[..xs.len()];
            let mut all_clear = true;
            for (i, (&x, r)) in xs.iter().zip(rs.iter_mut()).enumerate() {
                let p = pred(base + i);
                // Round half away from zero. NaN gives code 0 and infinities the largest code;
                // both fail the check below.
                let v = ((x.to_f64() - p) * inv).clamp(-lim, lim);
                let q = (v + 0.5f64.copysign(v)) as i32;
                let y: T = self.level(p, q);
                // Clearly within the bound (not at its edge), and no -0.0 on either side.
                let ok = (x.to_f64() - y.to_f64()).abs() < self.bound
                    && x.to_bits64() != sign
                    && y.to_bits64() != sign;
                qs[i] = q;
                clear[i] = ok;
                *r = y;
                all_clear &= ok;
            }
            if all_clear {
                codes.extend_from_slice(&qs[..xs.len()]);
            } else {
                for (i, (&x, r)) in xs.iter().zip(rs.iter_mut()).enumerate() {
                    if clear[i] || within_bound(x, *r, self.bound) {
                        codes.push(qs[i]);
                    } else {
                        exc.pos.push((base + i) as u32);
                        exc.val.push(x);
                        *r = x;
                    }
                }
            }
            if let Some(out) = recon.as_deref_mut() {
                out[base..base + xs.len()].copy_from_slice(rs);
            }
        }
    }

    /// Rebuilds `out.len()` values from one code per value (`k`, against the constant
    /// prediction `p`) and the exceptions, which replace the values at their positions
    /// (increasing, each `< out.len()`).
    pub(crate) fn dequantize_all<T: Element>(
        self,
        k: &[i32],
        positions: &[u32],
        values: &[T],
        p: f64,
        out: &mut [T],
    ) -> DecodeResult<()> {
        if k.len() != out.len() || values.len() != positions.len() {
            return Err(Malformed::new("code count does not match the column"));
        }
        for (d, &q) in out.iter_mut().zip(k) {
            *d = self.level(p, q);
        }
        for (&pos, &v) in positions.iter().zip(values) {
            *out.get_mut(pos as usize)
                .ok_or_else(|| Malformed::new("exception outside the column"))? = v;
        }
        Ok(())
    }

    /// Rebuilds `out.len()` values from codes and the exceptions among them (`positions`,
    /// increasing, counted from `base`; `values`).
    pub(crate) fn dequantize<T: Element>(
        self,
        codes: &[i32],
        positions: &[u32],
        values: &[T],
        base: u32,
        pred: Prediction<'_>,
        out: &mut [T],
    ) -> DecodeResult<()> {
        let n = out.len();
        if codes.len() + positions.len() != n || values.len() != positions.len() {
            return Err(Malformed(format!(
                "{} codes and {} exceptions do not make {n} values",
                codes.len(),
                positions.len()
            )));
        }
        if let Prediction::Values(ps) = pred {
            if ps.len() != n {
                return Err(Malformed::new("prediction count does not match the column"));
            }
        }
        // Fill the runs between exceptions; positions were validated increasing and < n.
        let mut start = 0usize;
        let mut k = 0usize;
        let fill = |out: &mut [T], start: usize, end: usize, k: &mut usize| {
            let cs = &codes[*k..*k + (end - start)];
            let dst = &mut out[start..end];
            match pred {
                Prediction::Constant(p) => {
                    for (d, &q) in dst.iter_mut().zip(cs) {
                        *d = self.level(p, q);
                    }
                }
                Prediction::Values(ps) => {
                    for ((d, &q), &p) in dst.iter_mut().zip(cs).zip(&ps[start..end]) {
                        *d = self.level(p, q);
                    }
                }
            }
            *k += cs.len();
        };
        for (&p, &v) in positions.iter().zip(values) {
            let p = (p - base) as usize;
            fill(out, start, p, &mut k);
            out[p] = v;
            start = p + 1;
        }
        fill(out, start, n, &mut k);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_bound_is_exact_at_the_edge() {
        // 0.1 + 0.2 in f64 is 0.30000000000000004: the rounded difference can equal the bound
        // while the exact one exceeds it.
        let x = 1.0f64;
        let e = 0.5f64;
        assert!(within_bound(x, 1.5, e));
        assert!(within_bound(x, 0.5, e));
        assert!(!within_bound(x, 1.5000000000000002, e));
        // x − y rounds to exactly 2^-1 but the exact difference is 2^-1 + 2^-54.
        let x = 1.0f64 + f64::EPSILON;
        let y = 0.5f64 + f64::EPSILON / 4.0; // below ulp(0.5)/2: y is 0.5 exactly
        assert_eq!(y, 0.5);
        let y = 0.5000000000000001f64; // 0.5 + 2^-53
        let d = x - y;
        assert_eq!(d, 0.5000000000000001);
        assert!(within_bound(x, y, d));
        // Large magnitudes: the exact difference is 2^60 + 1 − 1, rounded to 2^60.
        let big = (1u64 << 60) as f64;
        assert!(within_bound(big, 0.0, big));
        assert!(!within_bound(big + 512.0 * 1024.0, 0.0, big));
        assert!(!within_bound(1.0f32, f32::NAN, 10.0));
        assert!(!within_bound(1.0f32, f32::INFINITY, 1e30));
    }

    #[test]
    fn within_bound_uses_twosum_when_rounding_hides_the_excess() {
        // Pick x, y such that fl(x − y) == bound but x − y > bound exactly.
        let bound = 1.0f64;
        let y = -f64::EPSILON / 4.0; // tiny negative
        let x = 1.0f64; // x − y = 1 + 2^-54, rounds to 1.0
        assert_eq!(x - y, 1.0);
        assert!(!within_bound(x, y, bound));
        let y = f64::EPSILON / 4.0; // x − y = 1 − 2^-54 < bound
        assert!(within_bound(x, y, bound));
    }

    #[test]
    fn negative_zero_only_as_itself() {
        assert!(within_bound(-0.0f32, -0.0f32, 1.0));
        assert!(!within_bound(-0.0f32, 0.0f32, 1.0));
        assert!(!within_bound(0.0f32, -0.0f32, 1.0));
        assert!(!within_bound(-0.0f32, 0.1f32, 1.0));
        assert!(within_bound(0.0f32, 0.1f32, 1.0));
    }

    #[test]
    fn quantize_meets_the_bound_and_round_trips() {
        let values: Vec<f32> = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            3.25159,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1e30,
            -1e30,
            f32::MIN_POSITIVE / 4.0,
            1e-40,
            12345.678,
            f32::MAX,
            f32::MIN,
        ];
        for bound in [1e-6, 1e-3, 0.5, 7.0, 1e29] {
            let q = Quantizer::for_bound(bound);
            let (mut codes, mut exc, mut recon) =
                (Vec::new(), Exceptions::default(), vec![0f32; values.len()]);
            q.quantize(
                &values,
                Prediction::Constant(2.5),
                &mut codes,
                &mut exc,
                Some(&mut recon),
            );
            assert_eq!(
                first_violation(&values, &recon, bound),
                None,
                "bound {bound}"
            );
            let mut out = vec![0f32; values.len()];
            q.dequantize(
                &codes,
                &exc.pos,
                &exc.val,
                0,
                Prediction::Constant(2.5),
                &mut out,
            )
            .unwrap();
            assert_eq!(
                out.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                recon.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
            let mut buf = Vec::new();
            exc.write(&mut buf);
            let mut back = Exceptions::default();
            back.read(&mut ByteReader::new(&buf), values.len()).unwrap();
            assert_eq!(back.pos, exc.pos);
            assert_eq!(
                back.val
                    .iter()
                    .map(|v: &f32| v.to_bits())
                    .collect::<Vec<_>>(),
                exc.val.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn dequantize_rejects_inconsistent_counts() {
        let q = Quantizer::for_bound(1.0);
        let exc = Exceptions::<f32>::default();
        assert!(
            q.dequantize(
                &[1, 2],
                &exc.pos,
                &exc.val,
                0,
                Prediction::Constant(0.0),
                &mut [0f32; 3]
            )
            .is_err()
        );
    }
}
