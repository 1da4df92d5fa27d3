//! The residual stage: where the error bound is enforced, and the only place.
//!
//! For a value `x` with prediction `p`, a column's [`Bound`] gives a step `s` and a domain
//! (`crate::bound::Domain`): the values themselves for an absolute bound, their ordinals
//! (`ord(x)`, the bits as a sign-magnitude integer) for a point-wise relative one. With `v(x)`
//! the value in that domain and `P` the prediction mapped to it,
//!
//! ```text
//! q  = round((v(x) − P) / s)
//! x' = T(P + s·q)           linear: computed in f64, rounded once to the element type T
//! x' = ord⁻¹(P + s·q)       ordinal: an integer (the level within s/2 of 0 is 0 itself)
//! ```
//!
//! `x'` is computed here exactly as the decoder will compute it (the same `f64` operations in
//! the same order, no fused multiply-add), then checked with [`Bound::check`] in the element's
//! own precision. A value is stored verbatim in the exception list instead when it is not
//! finite, when `q` falls outside `±2^30`, when `x'` misses the bound (which rounding to `T`
//! can cause within a fraction of an ULP of the edge), or when `x` or `x'` is −0.0 and the
//! other is not bit-identical. So every finite value meets its bound and every special value
//! comes back bit for bit, whatever the predictor does: a bad prediction costs bytes, never
//! accuracy.
//!
//! A lossless bound never reaches this stage: such columns take the lossless path.

use crate::bound::{Bound, Domain, from_gapped_ordinal, within_abs, within_pwrel};
use crate::bytes::{ByteReader, DecodeResult, Malformed, put_section, put_uvarint};
use crate::element::Element;
use crate::simd::with_avx2;

/// Largest magnitude of a quantization code.
pub(crate) const MAX_CODE: i64 = 1 << 30;

/// Whether `y` may stand for `x` under the absolute bound `bound`: `|x − y| ≤ bound` exactly
/// (not just after rounding the difference), both finite, and −0.0 only for −0.0.
#[inline(always)]
pub fn within_bound<T: Element>(x: T, y: T, bound: f64) -> bool {
    within_abs(x, y, bound)
}

/// The first value of `decoded` that misses its bound against `original`, if any:
/// `(index, |error|)`. Non-finite originals must be reproduced bit for bit (error `inf`).
pub fn first_violation<T: Element>(
    original: &[T],
    decoded: &[T],
    bound: Bound,
) -> Option<(usize, f64)> {
    for (i, (&x, &y)) in original.iter().zip(decoded).enumerate() {
        if !bound.check(x, y) {
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

/// The index range of the positions `start..end` in `pos` (increasing): the exceptions of a
/// segment or a block of a column.
pub(crate) fn positions_within(pos: &[u32], start: usize, end: usize) -> std::ops::Range<usize> {
    pos.partition_point(|&p| (p as usize) < start)..pos.partition_point(|&p| (p as usize) < end)
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
        let r = positions_within(&self.pos, start, end);
        (r.start, r.end)
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

/// Uniform quantization in a bound's domain, with the bound's exact check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Quantizer {
    /// Distance between reconstruction levels, in the domain's units.
    pub step: f64,
    /// The bound every finite value must meet.
    pub bound: Bound,
    /// Where the values are quantized.
    pub domain: Domain,
}

/// The linear domain's reconstruction of code `q` under prediction `p` with step `step`.
#[inline(always)]
fn linear_level<T: Element>(step: f64, p: f64, q: i32) -> T {
    T::from_f64(p + step * q as f64)
}

/// One domain's arithmetic, for the quantizer's loops (monomorphized per domain).
trait Map<T: Element>: Copy {
    /// `x` in the domain.
    fn value(self, x: T) -> f64;
    /// The reconstruction of code `q` under prediction `p` (in the domain).
    fn level(self, p: f64, q: i32) -> T;
    /// Whether `y` clearly stands for `x` (branch-free; may say no for a value at the edge).
    fn clear(self, x: T, y: T) -> bool;
    /// Whether `y` may stand for `x`, exactly.
    fn check(self, x: T, y: T) -> bool;
}

#[derive(Clone, Copy)]
struct Linear {
    step: f64,
    bound: f64,
}

impl<T: Element> Map<T> for Linear {
    #[inline(always)]
    fn value(self, x: T) -> f64 {
        x.to_f64()
    }
    #[inline(always)]
    fn level(self, p: f64, q: i32) -> T {
        linear_level(self.step, p, q)
    }
    #[inline(always)]
    fn clear(self, x: T, y: T) -> bool {
        // Within the bound (not at its edge), and no −0.0 on either side.
        let sign = 1u64 << (8 * T::BYTES - 1);
        (x.to_f64() - y.to_f64()).abs() < self.bound
            && x.to_bits64() != sign
            && y.to_bits64() != sign
    }
    #[inline(always)]
    fn check(self, x: T, y: T) -> bool {
        within_abs(x, y, self.bound)
    }
}

#[derive(Clone, Copy)]
struct Ordinal {
    step: f64,
    r: f64,
    domain: Domain,
    gap: i64,
}

impl<T: Element> Map<T> for Ordinal {
    #[inline(always)]
    fn value(self, x: T) -> f64 {
        self.domain.value(x)
    }
    #[inline(always)]
    fn level(self, p: f64, q: i32) -> T {
        let v = p + self.step * q as f64;
        // The one level within s/2 of 0 is 0, so zeros are ordinary codes.
        if v.abs() <= 0.5 * self.step {
            return T::from_f64(0.0);
        }
        // `p` and the step are whole numbers of ordinals, so `v` is one: the cast is exact
        // (and, unlike `f64::round`, no call into libm on the hot path).
        from_gapped_ordinal(v as i64, self.gap)
    }
    #[inline(always)]
    fn clear(self, x: T, y: T) -> bool {
        within_pwrel(x, y, self.r)
    }
    #[inline(always)]
    fn check(self, x: T, y: T) -> bool {
        within_pwrel(x, y, self.r)
    }
}

/// What [`Quantizer::level_fn`] hands a reconstruction function to (a generic closure, which
/// Rust has no syntax for).
pub(crate) trait LevelUser<T, R> {
    /// Runs with `level(prediction of the value, code)`.
    fn run(self, level: impl Fn(f64, i32) -> T + Copy + Sync) -> R;
}

/// What [`Quantizer::code_fn`] hands a point-wise quantizer to.
pub(crate) trait CodeUser<T, R> {
    /// Runs with `code(value, prediction of the value, level)`: the code, the reconstruction
    /// and whether it clearly meets the bound (branch-free, so a block of points vectorizes),
    /// and `check(value, reconstruction, level)`, the exact check that decides where `code`
    /// does not say clear: where it fails too, the value is an exception.
    fn run(
        self,
        code: impl Fn(T, f64, usize) -> (i32, T, bool) + Copy + Sync,
        check: impl Fn(T, T, usize) -> bool + Copy + Sync,
    ) -> R;
}

/// The domains' arithmetic, chosen once per call (`dispatch!`).
#[derive(Clone, Copy)]
enum Maps {
    Linear(Linear),
    Ordinal(Ordinal),
}

/// Evaluates `$body` with `$m` bound to the quantizer's domain arithmetic, monomorphized per
/// domain.
macro_rules! dispatch {
    ($q:expr, $m:ident => $body:expr) => {
        match $q.map() {
            Maps::Linear($m) => $body,
            Maps::Ordinal($m) => $body,
        }
    };
}

impl Quantizer {
    /// The quantizer of a column of `T` with bound `bound` (not lossless) and normalization
    /// `norm`: the bound's step and domain ([`Bound::step`]).
    pub(crate) fn new<T: Element>(bound: Bound, norm: &crate::normalize::Normalization) -> Self {
        debug_assert!(!bound.is_lossless());
        let (step, domain) = bound.step::<T>(norm);
        Quantizer {
            step,
            bound,
            domain,
        }
    }

    /// This quantizer with an ordinal column's step, gap and grid (see [`Domain::Ordinal`];
    /// linear: unchanged).
    pub(crate) fn with_layout(self, step: f64, gap: i64, grid: f64) -> Self {
        match self.domain {
            Domain::Linear => self,
            d => Quantizer {
                step,
                domain: d.with_layout(gap, grid),
                ..self
            },
        }
    }

    /// The layout a decoder rebuilds for an ordinal column from its stored step and gap: a
    /// step above the bound's own is a grid the data lies on.
    pub(crate) fn with_stored_layout<T: Element>(self, gap: i64) -> Self {
        let nominal = match self.bound {
            Bound::PwRel(r) => crate::bound::nominal_ordinal_step::<T>(r),
            _ => self.step,
        };
        let grid = if self.step > nominal { self.step } else { 0.0 };
        self.with_layout(self.step, gap, grid)
    }

    /// The reconstruction of code `q` under a prediction `p` *of the value*, for a walk that
    /// predicts value by value: the prediction mapped to the domain, then the level. Callers
    /// in a loop take [`level_fn`](Self::level_fn) instead, which decides the domain once.
    #[inline(always)]
    pub(crate) fn level_of_value<T: Element>(self, p: f64, q: i32) -> T {
        self.level(self.predict::<T>(p), q)
    }

    /// Runs `f` with a reconstruction function `(prediction of the value, code) -> value`
    /// specialized to this quantizer's domain (the linear one is a multiply-add).
    #[inline(always)]
    pub(crate) fn level_fn<T: Element, R>(self, f: impl LevelUser<T, R>) -> R {
        match self.domain {
            Domain::Linear => {
                let step = self.step;
                f.run(move |p, q| linear_level(step, p, q))
            }
            Domain::Ordinal { .. } => f.run(move |p, q| self.level_of_value(p, q)),
        }
    }

    /// Whether values are quantized as ordinals (the column section then stores the gap).
    pub(crate) fn is_ordinal(self) -> bool {
        matches!(self.domain, Domain::Ordinal { .. })
    }

    /// The quantizer a decoder rebuilds from a stored step.
    pub(crate) fn with_step(
        bound: Bound,
        norm: &crate::normalize::Normalization,
        step: f64,
    ) -> Self {
        Quantizer {
            step,
            bound,
            domain: bound.domain(norm),
        }
    }

    /// Step `2E`: the largest that meets an absolute bound before rounding to the element type.
    #[cfg(test)]
    pub(crate) fn for_bound(bound: f64) -> Self {
        debug_assert!(bound > 0.0);
        Quantizer {
            step: 2.0 * bound,
            bound: Bound::Abs(bound),
            domain: Domain::Linear,
        }
    }

    /// This quantizer's domain arithmetic.
    #[inline(always)]
    fn map(self) -> Maps {
        match (self.domain, self.bound) {
            (Domain::Ordinal { gap, .. }, Bound::PwRel(r)) => Maps::Ordinal(Ordinal {
                step: self.step,
                r,
                domain: self.domain,
                gap,
            }),
            _ => Maps::Linear(Linear {
                step: self.step,
                bound: self.bound.value(),
            }),
        }
    }

    /// A prediction `p` of a value, in this quantizer's domain ([`Domain::predict`]).
    #[inline(always)]
    pub(crate) fn predict<T: Element>(self, p: f64) -> f64 {
        self.domain.predict::<T>(p)
    }

    /// The learned model's predictions (of values) in this quantizer's domain: themselves, or
    /// mapped into `scratch`.
    pub(crate) fn predictions<'a, T: Element>(
        self,
        ps: Option<&'a [f64]>,
        scratch: &'a mut Vec<f64>,
    ) -> Option<&'a [f64]> {
        match ps {
            Some(p) if self.is_ordinal() => {
                self.domain.predict_into::<T>(p, scratch);
                Some(&scratch[..])
            }
            other => other,
        }
    }

    /// The plain predictor: the column centre in this domain, snapped to the grid of the step
    /// (so discrete columns are not split across grid cells, and a point-wise relative
    /// column's zeros sit on a level).
    pub(crate) fn centre<T: Element>(self, norm: &crate::normalize::Normalization) -> f64 {
        let c = self.predict::<T>(norm.offset);
        let snapped = (c / self.step).round() * self.step;
        if snapped.is_finite() { snapped } else { c }
    }

    /// The value an interpolation falls back to where its neighbours are not finite: the
    /// centre of the column (as a value, not in the domain).
    pub(crate) fn fallback<T: Element>(self, norm: &crate::normalize::Normalization) -> f64 {
        match self.domain {
            Domain::Linear => self.centre::<T>(norm),
            Domain::Ordinal { .. } => norm.offset,
        }
    }

    /// The reconstruction of code `q` under prediction `p` (in the domain), exactly as the
    /// decoder computes it.
    #[inline(always)]
    pub(crate) fn level<T: Element>(self, p: f64, q: i32) -> T {
        dispatch!(self, m => Map::<T>::level(m, p, q))
    }

    /// Runs `f` with a point-wise quantizer `code(value, prediction, level)` and its exact
    /// check ([`CodeUser`]): the value's code and reconstruction against its prediction (in
    /// value units, mapped into the domain here), with the arithmetic and exact check of
    /// [`quantize`](Self::quantize). A linear column's level `l` (0–4) quantizes with step
    /// `steps[l]` (the interpolation's level-wise steps); an ordinal column's with this
    /// quantizer's step at every level.
    #[inline(always)]
    pub(crate) fn code_fn<T: Element, R>(self, steps: [f64; 5], f: impl CodeUser<T, R>) -> R {
        match self.map() {
            Maps::Linear(m) => {
                let (ms, invs) = (
                    steps.map(|step| Linear { step, ..m }),
                    steps.map(|s| 1.0 / s),
                );
                f.run(
                    move |x, p, l| code_of(ms[l], invs[l], x, p),
                    move |x, y, l| Map::<T>::check(ms[l], x, y),
                )
            }
            Maps::Ordinal(m) => {
                let inv = 1.0 / self.step;
                f.run(
                    move |x, p, _| code_of(m, inv, x, self.predict::<T>(p)),
                    move |x, y, _| Map::<T>::check(m, x, y),
                )
            }
        }
    }

    /// Quantizes `values`: fills `codes` for the values that meet the bound, `exc` with the
    /// rest, and `recon` (if wanted; same length as `values`) with the decoder's
    /// reconstruction. Predictions are in the domain ([`predict`](Self::predict)).
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
        Self::quantize_lanes(self, values, pred, (codes, exc, recon))
    }

    /// The codes [`quantize`](Self::quantize) gives `values` against the constant prediction
    /// `p` (in the domain), at `positions` only, each into `codes` at its position; 0 where
    /// the value is an exception, as a column's plain codes hold there. The values are
    /// gathered into `scratch` and quantized there, in the same vectors.
    pub(crate) fn codes_at<T: Element>(
        self,
        values: &[T],
        p: f64,
        positions: &[usize],
        scratch: &mut SampleScratch<T>,
        codes: &mut [i32],
    ) {
        let SampleScratch {
            values: gathered,
            codes: got,
            exc,
        } = scratch;
        gathered.clear();
        gathered.extend(positions.iter().map(|&i| values[i]));
        self.quantize(gathered, Prediction::Constant(p), got, exc, None);
        let mut got = got.iter();
        let mut exceptions = exc.pos.iter().peekable();
        for (j, &i) in positions.iter().enumerate() {
            codes[i] = if exceptions.next_if(|&&e| e as usize == j).is_some() {
                0
            } else {
                *got.next()
                    .expect("a code for every value but the exceptions")
            };
        }
    }

    with_avx2! {
        /// [`quantize`](Self::quantize) in AVX2's wider vectors where the CPU has them: the
        /// same operations in the same order (no fused multiply-add), so the same bits.
        fn quantize_lanes<T>(
            q: Quantizer,
            values: &[T],
            pred: Prediction<'_>,
            out: Quantized<'_, T>,
        ) = Quantizer::quantize_body;
    }

    #[inline(always)]
    fn quantize_body<T: Element>(self, values: &[T], pred: Prediction<'_>, out: Quantized<'_, T>) {
        match pred {
            Prediction::Constant(p) => {
                dispatch!(self, m => quantize_with(m, self.step, values, |_| p, out))
            }
            Prediction::Values(ps) => {
                debug_assert_eq!(ps.len(), values.len());
                dispatch!(self, m => quantize_with(m, self.step, values, |i| ps[i], out))
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
        fn levels<T: Element, M: Map<T>>(m: M, p: f64, k: &[i32], out: &mut [T]) {
            for (d, &q) in out.iter_mut().zip(k) {
                *d = m.level(p, q);
            }
        }
        dispatch!(self, m => levels(m, p, k, out));
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
        if let Prediction::Values(ps) = pred
            && ps.len() != n
        {
            return Err(Malformed::new("prediction count does not match the column"));
        }
        let args = (codes, positions, values, base, pred);
        dispatch!(self, m => dequantize_with(m, args, out));
        Ok(())
    }
}

/// The code of `x` against prediction `p` (in the domain) at a step of `1 / inv`, its
/// reconstruction, and whether that clearly meets the bound (branch-free; the exact check
/// decides where it does not). Rounds half away from zero: NaN gives code 0 and infinities the
/// largest code, and both fail the check.
#[inline(always)]
fn code_of<T: Element, M: Map<T>>(m: M, inv: f64, x: T, p: f64) -> (i32, T, bool) {
    let lim = MAX_CODE as f64;
    let v = ((m.value(x) - p) * inv).clamp(-lim, lim);
    let q = round_away(v);
    let y: T = m.level(p, q);
    (q, y, m.clear(x, y))
}

/// `v` (within `±MAX_CODE`, or NaN) rounded half away from zero to an `i32`, NaN to 0:
/// exactly `(v + 0.5f64.copysign(v)) as i32`, in operations that vectorize (Rust's saturating
/// `as` conversion does not, in AVX2). The truncated sum is a whole number of magnitude at most
/// `2^30 + 1`, so adding `1.5·2^52` to it is exact and leaves it, in two's complement, in the
/// low 32 bits.
#[inline(always)]
fn round_away(v: f64) -> i32 {
    const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 · 2^52
    let t = (v + 0.5f64.copysign(v)).trunc();
    let t = if t.is_nan() { 0.0 } else { t };
    (t + MAGIC).to_bits() as u32 as i32
}

/// Scratch of [`Quantizer::codes_at`]: the values gathered, their codes and exceptions.
#[derive(Debug)]
pub(crate) struct SampleScratch<T> {
    values: Vec<T>,
    codes: Vec<i32>,
    exc: Exceptions<T>,
}

impl<T> Default for SampleScratch<T> {
    fn default() -> Self {
        SampleScratch {
            values: Vec::new(),
            codes: Vec::new(),
            exc: Exceptions::default(),
        }
    }
}

/// Where [`Quantizer::quantize`] puts its codes, exceptions and reconstruction.
type Quantized<'a, T> = (&'a mut Vec<i32>, &'a mut Exceptions<T>, Option<&'a mut [T]>);

/// The quantizer's loop for one domain. Blocks of values go through a branch-free pass the
/// compiler can vectorize; the exact check runs only on values that pass or fail narrowly,
/// which are rare.
#[inline(always)]
fn quantize_with<T: Element, M: Map<T>>(
    m: M,
    step: f64,
    values: &[T],
    pred: impl Fn(usize) -> f64,
    (codes, exc, mut recon): Quantized<'_, T>,
) {
    const BLOCK: usize = 256;
    let inv = 1.0 / step;
    let mut qs = [0i32; BLOCK];
    let mut clear = [false; BLOCK];
    let mut ys = [T::from_f64(0.0); BLOCK];
    for (b, xs) in values.chunks(BLOCK).enumerate() {
        let base = b * BLOCK;
        let rs = &mut ys[..xs.len()];
        let mut all_clear = true;
        for (i, (&x, r)) in xs.iter().zip(rs.iter_mut()).enumerate() {
            let (q, y, ok) = code_of(m, inv, x, pred(base + i));
            qs[i] = q;
            clear[i] = ok;
            *r = y;
            all_clear &= ok;
        }
        if all_clear {
            codes.extend_from_slice(&qs[..xs.len()]);
        } else {
            for (i, (&x, r)) in xs.iter().zip(rs.iter_mut()).enumerate() {
                if clear[i] || m.check(x, *r) {
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

/// The dequantizer's loop for one domain: fills the runs between exceptions (positions were
/// validated increasing and within the column).
#[inline(always)]
fn dequantize_with<T: Element, M: Map<T>>(
    m: M,
    (codes, positions, values, base, pred): (&[i32], &[u32], &[T], u32, Prediction<'_>),
    out: &mut [T],
) {
    let n = out.len();
    let mut start = 0usize;
    let mut k = 0usize;
    let fill = |out: &mut [T], start: usize, end: usize, k: &mut usize| {
        let cs = &codes[*k..*k + (end - start)];
        let dst = &mut out[start..end];
        match pred {
            Prediction::Constant(p) => {
                for (d, &q) in dst.iter_mut().zip(cs) {
                    *d = m.level(p, q);
                }
            }
            Prediction::Values(ps) => {
                for ((d, &q), &p) in dst.iter_mut().zip(cs).zip(&ps[start..end]) {
                    *d = m.level(p, q);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_half_away_is_the_saturating_cast() {
        let lim = MAX_CODE as f64;
        let mut vs = vec![
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.5,
            -1.5,
            2.5,
            -2.5,
            0.49999999999999994,
            -0.49999999999999994,
            lim,
            -lim,
            lim - 0.5,
            -lim + 0.5,
            1e-300,
            -1e-300,
            f64::NAN,
            -f64::NAN,
            f64::from_bits(0x7ff0_0000_dead_beef),
            f64::from_bits(0xfff8_1234_5678_9abc),
        ];
        // A Weyl sequence over the range at several scales, and the ties next to each value.
        for i in 0..300_000u32 {
            let u = (f64::from(i) * 0.618_033_988_749_894_9).fract();
            let v = (2.0 * u - 1.0) * [1.0, 4.0, 1e3, 1e6, lim][i as usize % 5];
            vs.extend([v, v.round() + 0.5, v.round() - 0.5]);
        }
        for v in vs.into_iter().map(|v| v.clamp(-lim, lim)) {
            let want = (v + 0.5f64.copysign(v)) as i32;
            assert_eq!(round_away(v), want, "{v:e}");
        }
    }

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
                first_violation(&values, &recon, Bound::Abs(bound)),
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
    fn codes_at_positions_are_the_plain_codes() {
        // Against `quantize` with a constant prediction: the same code at every position, 0
        // where the value is an exception; a linear and a point-wise relative (ordinal)
        // quantizer, values beyond the codes' range, not finite, or below the bound's grain.
        let mut values: Vec<f32> = vec![
            0.0,
            -0.0,
            1e30,
            -1e30,
            f32::NAN,
            f32::INFINITY,
            1e-40,
            f32::MAX,
        ];
        let mut seed = 3u64;
        for _ in 0..2000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let u = (seed >> 11) as f64 / (1u64 << 53) as f64;
            values.push(((u - 0.5) * 2000.0) as f32);
        }
        let norm = crate::normalize::Normalization {
            offset: 1.5,
            scale: 1000.0,
        };
        let quantizers = [
            Quantizer::for_bound(1e-3),
            Quantizer::for_bound(7.0),
            Quantizer::new::<f32>(Bound::PwRel(1e-3), &norm),
        ];
        for q in quantizers {
            let centre = q.centre::<f32>(&norm);
            let (mut codes, mut exc) = (Vec::new(), Exceptions::default());
            q.quantize(
                &values,
                Prediction::Constant(centre),
                &mut codes,
                &mut exc,
                None,
            );
            let mut want = vec![0; values.len()];
            crate::segments::scatter(&codes, exc.pos.iter().map(|&p| p as usize), 0, &mut want);
            assert!(!exc.pos.is_empty());
            let mut scratch = SampleScratch::default();
            let mut got = vec![7; values.len()];
            let all: Vec<usize> = (0..values.len()).collect();
            q.codes_at(&values, centre, &all, &mut scratch, &mut got);
            assert_eq!(got, want, "{:?}", q.domain);
            let mut some = vec![7; values.len()];
            let thirds: Vec<usize> = (0..values.len()).step_by(3).collect();
            q.codes_at(&values, centre, &thirds, &mut scratch, &mut some);
            for (i, (&g, &w)) in some.iter().zip(&want).enumerate() {
                assert_eq!(g, if i % 3 == 0 { w } else { 7 }, "at {i}");
            }
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
