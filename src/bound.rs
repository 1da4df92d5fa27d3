//! Error bounds: how the user states them ([`BoundSpec`], [`Bounds`], a bounds file), and what
//! each column's bound *is* once resolved ([`Bound`]): its exact check, its quantization policy
//! (step and value domain) and its header encoding. A bound mode lives here and nowhere else.
//!
//! | spec | resolves to | guarantee for every finite `x` |
//! |---|---|---|
//! | `abs:E` | `Bound::Abs(E)` | `|x − x'| ≤ E` |
//! | `rel:R` | `Bound::Abs(R·(max − min))` | the same, `E` from the column's (or field's) finite range |
//! | `pwrel:R` | `Bound::PwRel(R)` | `|x − x'| ≤ R·|x|` (so 0 and −0.0 come back bit for bit) |
//! | `bits:N` | `Bound::PwRel(2^-(N+1))` | what rounding to `N` mantissa bits guarantees |
//! | `lossless` | `Bound::Lossless` | bit for bit |
//!
//! NaN payloads, ±Inf and −0.0 always come back bit for bit; a bound of 0 is `Lossless`.
//!
//! An absolute bound quantizes the values themselves (the *linear* domain). A point-wise
//! relative bound quantizes their *ordinals*: the bit pattern read as a sign-magnitude integer,
//! `ord(x) = ±(bits(x) & !sign)`, which is monotone in `x` and, within each binade, linear in
//! the mantissa, so a uniform step `s` there is a relative step: a difference of `d` ordinals
//! at `x = (1 + f)·2^e` is an error of `d·2^(e − M)` (`M` mantissa bits), and
//! `d ≤ s/2 ≤ R·2^M` keeps it within `R·|x|`. `bits:N` gives `s = 2^(M − N)`, exactly the
//! rounding of `N` mantissa bits when the prediction is 0; with a prediction it codes
//! `log|x/x̂|` in steps of the bound. Reconstructions are integers, so encoder and decoder agree
//! bit for bit on any machine; the one level that falls within `s/2` of 0 is 0 itself, so zeros
//! are ordinary codes. Every reconstruction is still checked exactly ([`Bound::check`]); a
//! value that misses (a sign change, a deep subnormal, −0.0, the edge of a binade) is stored
//! verbatim by the residual stage.

use std::fmt;
use std::str::FromStr;

use crate::element::Element;
use crate::error::{Error, Result};
use crate::normalize::{ColumnStats, Normalization};

/// A point-wise error bound as the user states it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BoundSpec {
    /// `|x − x'| ≤ E` for every value.
    Abs(f64),
    /// `|x − x'| ≤ R × (max − min)`, the range taken per column (tables) or over the whole array
    /// (fields), over finite values.
    Rel(f64),
    /// Point-wise relative: `|x − x'| ≤ R × |x|` for every finite value (`0 < R < 1`).
    PwRel(f64),
    /// `N` mantissa bits (`1 ≤ N ≤ 52`): point-wise relative with `R = 2^-(N+1)`, what rounding
    /// to `N` bits guarantees.
    Bits(u32),
    /// Bit-exact: every value, NaN payloads, infinities, −0.0 and subnormals included.
    Lossless,
}

/// The largest `N` of `bits:N` (the mantissa of an `f64`).
pub const MAX_BITS: u32 = 52;

impl BoundSpec {
    /// The kind byte of the container's BOUNDS section.
    pub(crate) fn code(self) -> u8 {
        match self {
            BoundSpec::Abs(_) => 1,
            BoundSpec::Rel(_) => 2,
            BoundSpec::Lossless => 3,
            BoundSpec::PwRel(_) => 4,
            BoundSpec::Bits(_) => 5,
        }
    }

    /// The number stored beside the kind: `E`, `R` or `N`.
    pub(crate) fn value(self) -> f64 {
        match self {
            BoundSpec::Abs(v) | BoundSpec::Rel(v) | BoundSpec::PwRel(v) => v,
            BoundSpec::Bits(n) => f64::from(n),
            BoundSpec::Lossless => 0.0,
        }
    }

    /// The spec stored as `code` and `value`, if valid.
    pub(crate) fn from_code(code: u8, value: f64) -> Option<Self> {
        let spec = match code {
            1 => BoundSpec::Abs(value),
            2 => BoundSpec::Rel(value),
            3 => BoundSpec::Lossless,
            4 => BoundSpec::PwRel(value),
            5 if value.fract() == 0.0 && (1.0..=f64::from(MAX_BITS)).contains(&value) => {
                BoundSpec::Bits(value as u32)
            }
            _ => return None,
        };
        spec.is_valid().then_some(spec)
    }

    fn is_valid(self) -> bool {
        match self {
            BoundSpec::Abs(v) | BoundSpec::Rel(v) => v.is_finite() && v >= 0.0,
            BoundSpec::PwRel(r) => pwrel_in_range(r),
            BoundSpec::Bits(n) => (1..=MAX_BITS).contains(&n),
            BoundSpec::Lossless => true,
        }
    }

    /// Whether resolving this bound needs the value range.
    pub fn needs_range(self) -> bool {
        matches!(self, BoundSpec::Rel(_))
    }

    /// Whether this is a point-wise relative bound (`pwrel:R`, `bits:N`).
    pub fn is_pointwise_relative(self) -> bool {
        matches!(self, BoundSpec::PwRel(_) | BoundSpec::Bits(_))
    }

    /// The bound in effect for a column with these statistics.
    pub fn resolve(self, stats: &ColumnStats) -> Bound {
        match self {
            BoundSpec::Abs(e) => Bound::abs(e),
            BoundSpec::Rel(r) => {
                if stats.finite == 0 {
                    Bound::Lossless
                } else {
                    Bound::abs(rel_bound(r, stats.min, stats.max))
                }
            }
            BoundSpec::PwRel(r) => Bound::PwRel(r),
            BoundSpec::Bits(n) => Bound::PwRel(bits_to_pwrel(n)),
            BoundSpec::Lossless => Bound::Lossless,
        }
    }
}

/// `R = 2^-(N+1)`, exact.
pub fn bits_to_pwrel(n: u32) -> f64 {
    0.5f64.powi(n as i32 + 1)
}

/// Valid point-wise relative bounds: `2^-60 ≤ R < 1` (finer than an `f64` mantissa is lossless
/// anyway; `R ≥ 1` would let any value come back as 0).
fn pwrel_in_range(r: f64) -> bool {
    (2f64.powi(-60)..1.0).contains(&r)
}

/// `R × (max − min)`, without overflow when the range itself exceeds `f64::MAX` (values near
/// ±1e308), rounded down so it never exceeds the exact product.
fn rel_bound(r: f64, min: f64, max: f64) -> f64 {
    let span = max - min;
    let e = if span.is_finite() {
        r * span
    } else {
        (r * (max / 2.0 - min / 2.0)) * 2.0
    };
    if e.is_finite() { e } else { f64::MAX }
}

impl FromStr for BoundSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::InvalidOption(format!(
                "invalid bound '{s}': {why} (expected abs:E, rel:R, pwrel:R, bits:N or lossless, \
                 e.g. rel:1e-3 or bits:10)"
            ))
        };
        let s_trim = s.trim();
        if s_trim.eq_ignore_ascii_case("lossless") {
            return Ok(BoundSpec::Lossless);
        }
        let (kind, value) = s_trim.split_once(':').ok_or_else(|| bad("no ':'"))?;
        let kind = kind.trim().to_ascii_lowercase();
        if kind == "bits" {
            let n: u32 = value
                .trim()
                .parse()
                .map_err(|_| bad("N must be a whole number of mantissa bits"))?;
            if !(1..=MAX_BITS).contains(&n) {
                return Err(bad(&format!("N must be between 1 and {MAX_BITS}")));
            }
            return Ok(BoundSpec::Bits(n));
        }
        let v: f64 = value
            .trim()
            .parse()
            .map_err(|_| bad("the value is not a number"))?;
        if !v.is_finite() || v < 0.0 {
            return Err(bad("the value must be finite and not negative"));
        }
        match kind.as_str() {
            "abs" => Ok(BoundSpec::Abs(v)),
            "rel" => Ok(BoundSpec::Rel(v)),
            "pwrel" if pwrel_in_range(v) => Ok(BoundSpec::PwRel(v)),
            "pwrel" => Err(bad(
                "R must be below 1 and at least 2^-60 (use lossless for exact)",
            )),
            _ => Err(bad("unknown kind")),
        }
    }
}

impl fmt::Display for BoundSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BoundSpec::Abs(v) => write!(f, "abs:{v:e}"),
            BoundSpec::Rel(v) => write!(f, "rel:{v:e}"),
            BoundSpec::PwRel(v) => write!(f, "pwrel:{v:e}"),
            BoundSpec::Bits(n) => write!(f, "bits:{n}"),
            BoundSpec::Lossless => f.write_str("lossless"),
        }
    }
}

/// A column's bound in effect: what every finite value of the column is checked against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// Bit for bit.
    Lossless,
    /// `|x − x'| ≤ E`, `E > 0`: quantized in the linear domain.
    Abs(f64),
    /// `|x − x'| ≤ R·|x|`, `0 < R < 1`: quantized in the ordinal domain.
    PwRel(f64),
}

/// `1 − 2^-50`: the margin that makes the relative check strict despite its own rounding.
const PWREL_MARGIN: f64 = 1.0 - 1.0 / (1u64 << 50) as f64;

impl Bound {
    /// `Abs(e)`, or `Lossless` for 0.
    pub fn abs(e: f64) -> Self {
        if e > 0.0 {
            Bound::Abs(e)
        } else {
            Bound::Lossless
        }
    }

    /// Whether every reconstruction within `self` is also within `other`: lossless is within
    /// any bound, otherwise the same mode with a bound no larger. `evaluate` checks a
    /// container's stored bounds so against its specs resolved on the original.
    pub fn within(self, other: Bound) -> bool {
        match (self, other) {
            (Bound::Lossless, _) => true,
            (Bound::Abs(a), Bound::Abs(b)) | (Bound::PwRel(a), Bound::PwRel(b)) => a <= b,
            _ => false,
        }
    }

    /// Whether the column is stored bit for bit.
    pub fn is_lossless(self) -> bool {
        self == Bound::Lossless
    }

    /// The number the header stores as the resolved bound: `E`, `R`, or 0 for lossless.
    pub fn value(self) -> f64 {
        match self {
            Bound::Lossless => 0.0,
            Bound::Abs(v) | Bound::PwRel(v) => v,
        }
    }

    /// The bound a header stores for `spec` (its kind) as `value`, if valid.
    pub(crate) fn from_stored(spec: BoundSpec, value: f64) -> Option<Self> {
        if spec.is_pointwise_relative() {
            pwrel_in_range(value).then_some(Bound::PwRel(value))
        } else if value.is_finite() && value >= 0.0 {
            Some(match spec {
                BoundSpec::Lossless => Bound::Lossless,
                _ => Bound::abs(value),
            })
        } else {
            None
        }
    }

    /// Whether `y` may stand for `x` under this bound, decided exactly in the element's own
    /// precision: non-finite values and −0.0 only as themselves; a finite `x` within `E`, or
    /// within `R·|x|` (so 0 only as 0).
    #[inline(always)]
    pub fn check<T: Element>(self, x: T, y: T) -> bool {
        match self {
            Bound::Lossless => x.to_bits64() == y.to_bits64(),
            Bound::Abs(e) => {
                if x.is_finite() {
                    within_abs(x, y, e)
                } else {
                    x.to_bits64() == y.to_bits64()
                }
            }
            Bound::PwRel(r) => within_pwrel(x, y, r),
        }
    }

    /// `|x − x'|` over what this bound allows at `x` (0 where nothing is allowed and nothing
    /// differs, `inf` where nothing is allowed and something does): the figure `evaluate`
    /// reports per column.
    pub fn error_ratio(self, x: f64, y: f64) -> f64 {
        let d = (x - y).abs();
        let lim = match self {
            Bound::Lossless => 0.0,
            Bound::Abs(e) => e,
            Bound::PwRel(r) => r * x.abs(),
        };
        over(d, lim)
    }
}

/// `err / lim`, with nothing allowed (`lim = 0`) giving 0 for no error and `+inf` for any.
pub fn over(err: f64, lim: f64) -> f64 {
    if err == 0.0 {
        0.0
    } else if lim > 0.0 {
        err / lim
    } else {
        f64::INFINITY
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::Lossless => f.write_str("lossless"),
            Bound::Abs(e) => write!(f, "abs:{e:e}"),
            Bound::PwRel(r) => write!(f, "pwrel:{r:e}"),
        }
    }
}

/// `|x − y| ≤ bound` exactly (not just after rounding the difference), `y` finite, and −0.0
/// only for −0.0. `x` is finite.
#[inline(always)]
pub fn within_abs<T: Element>(x: T, y: T, bound: f64) -> bool {
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

/// `|x − y| ≤ r·|x|`, strictly: bit-identical values pass (0, −0.0, any NaN as itself);
/// otherwise both must be finite and non-zero, and the difference below `r·|x|` by a margin
/// (`1 − 2^-50`) that covers the rounding of the check itself, so no value at the exact edge
/// passes by rounding. Where `r·|x|` is not a normal `f64` (deep `f64` subnormals) only the
/// value itself passes.
#[inline(always)]
pub fn within_pwrel<T: Element>(x: T, y: T, r: f64) -> bool {
    // Written without branches (the quantizer runs it on every value): a zero on either side
    // makes `lim` 0 (x = ±0) or `d = |x| > lim` (y = ±0, R < 1), so it fails unless the bits
    // are the same; non-finite `x` makes `lim` infinite or NaN.
    let (xb, yb) = (x.to_bits64(), y.to_bits64());
    let (xf, yf) = (x.to_f64(), y.to_f64());
    let lim = r * xf.abs();
    let d = (xf - yf).abs();
    (xb == yb) | ((d <= lim * PWREL_MARGIN) & (f64::MIN_POSITIVE..=f64::MAX).contains(&lim))
}

/// The ordinal of `x`: its bits as a sign-magnitude integer, monotone in `x` (±0 are both 0).
#[inline(always)]
pub(crate) fn ordinal<T: Element>(x: T) -> i64 {
    let sign = 1u64 << (T::BYTES * 8 - 1);
    let b = x.to_bits64();
    let m = (b & (sign - 1)) as i64;
    if b & sign != 0 { -m } else { m }
}

/// The ordinal of the largest finite value of `T`.
#[inline(always)]
fn max_ordinal<T: Element>() -> i64 {
    if T::BYTES == 4 {
        0x7f7f_ffff
    } else {
        0x7fef_ffff_ffff_ffff
    }
}

/// The value of ordinal `o` (clamped to the finite values; 0 is +0.0).
#[cfg(test)]
pub(crate) fn from_ordinal<T: Element>(o: i64) -> T {
    let m = max_ordinal::<T>();
    let o = o.clamp(-m, m);
    let sign = 1u64 << (T::BYTES * 8 - 1);
    if o < 0 {
        T::from_bits64(sign | o.unsigned_abs())
    } else {
        T::from_bits64(o as u64)
    }
}

/// The value domain a bound quantizes in, with its step: what the residual stage needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Domain {
    /// The values themselves.
    Linear,
    /// Their ordinals ([`ordinal`]) with the unused run below the column's smallest magnitude
    /// taken out: `v(x) = sign(x)·(|ord(x)| − gap)` (0 for 0, and for the magnitudes within
    /// the gap, which no value of the chunk's column has). Without the gap a column of values
    /// around 1 and zeros would code its zeros a billion ordinals away; with it they sit next
    /// to the smallest values and a signed column is continuous across 0. Predictions are
    /// clamped to `lo..=hi` (the column's finite range) before they are mapped, so a
    /// prediction never changes sign across an all-positive column. `grid` (0: none): a
    /// column whose ordinals are all multiples of a power of two above the bound's step (data
    /// already rounded to fewer mantissa bits, as NanoAOD's are) is quantized with that step
    /// and its predictions snapped to it, so every value comes back exactly.
    Ordinal {
        lo: f64,
        hi: f64,
        gap: i64,
        grid: f64,
    },
}

impl Domain {
    /// This domain with the ordinal gap `gap` and grid `grid` (linear: unchanged).
    pub(crate) fn with_layout(self, gap: i64, grid: f64) -> Self {
        match self {
            Domain::Ordinal { lo, hi, .. } => Domain::Ordinal { lo, hi, gap, grid },
            Domain::Linear => Domain::Linear,
        }
    }

    /// A value in this domain.
    #[inline(always)]
    pub(crate) fn value<T: Element>(self, x: T) -> f64 {
        match self {
            Domain::Linear => x.to_f64(),
            Domain::Ordinal { gap, .. } => gapped_ordinal(x, gap) as f64,
        }
    }

    /// A prediction `p` of a value, in this domain: itself, or the gapped ordinal of the
    /// element nearest to it within the column's range (NaN: 0).
    #[inline(always)]
    pub(crate) fn predict<T: Element>(self, p: f64) -> f64 {
        match self {
            Domain::Linear => p,
            Domain::Ordinal { lo, hi, gap, grid } => {
                // max/min, not clamp: a forged header's range never panics.
                let p = if p.is_nan() { 0.0 } else { p.max(lo).min(hi) };
                let v = gapped_ordinal(T::from_f64(p), gap) as f64;
                if grid > 0.0 {
                    (v / grid).round() * grid
                } else {
                    v
                }
            }
        }
    }

    /// Maps predictions of values to this domain, into `out`.
    pub(crate) fn predict_into<T: Element>(self, ps: &[f64], out: &mut Vec<f64>) {
        out.clear();
        out.extend(ps.iter().map(|&p| self.predict::<T>(p)));
    }
}

/// `sign(x)·(|ord(x)| − gap)`, 0 where that is not positive.
#[inline(always)]
fn gapped_ordinal<T: Element>(x: T, gap: i64) -> i64 {
    let b = x.to_bits64();
    let sign = 1u64 << (T::BYTES * 8 - 1);
    let m = ((b & (sign - 1)) as i64 - gap).max(0);
    if b & sign != 0 { -m } else { m }
}

/// The element of gapped ordinal `v` (an integer; 0 is +0.0; clamped to the finite values).
#[inline(always)]
pub(crate) fn from_gapped_ordinal<T: Element>(v: i64, gap: i64) -> T {
    let sign = 1u64 << (T::BYTES * 8 - 1);
    let mag = v
        .unsigned_abs()
        .saturating_add(gap as u64)
        .min(max_ordinal::<T>() as u64);
    let bits = if v < 0 { sign | mag } else { mag };
    T::from_bits64(if v == 0 { 0 } else { bits })
}

/// The ordinal layout of a column under the bound's step `nominal`: `(step, gap, grid)`.
///
/// `gap`: the ordinals below the column's small magnitudes, less two steps, so that they stay
/// clear of the level of 0 (within half a step of 0). "Small" is the least finite non-zero
/// magnitude, or in a column of over 16,384 such values the one of rank n/16384: a few
/// stray tiny values (a subnormal, a 1e-30 among momenta) then become exceptions instead of
/// pushing every zero a hundred binades away from the rest. 0 where the column has no such
/// value. `grid`: where every such ordinal is a multiple of a power of two `G` above
/// `nominal` (values already rounded to fewer mantissa bits than the bound asks), `G`, which
/// is then the step (and the gap a multiple of it); else 0 and the step is `nominal`.
pub(crate) fn ordinal_layout<T: Element>(values: &[T], nominal: f64) -> (f64, i64, f64) {
    let mut mags: Vec<i64> = Vec::with_capacity(values.len());
    let mut common = 0i64;
    for &x in values {
        let m = ordinal(x).abs();
        if m > 0 && x.is_finite() {
            mags.push(m);
            common |= m;
        }
    }
    if mags.is_empty() {
        return (nominal, 0, 0.0);
    }
    let rank = mags.len() / 16384;
    let small = *mags.select_nth_unstable(rank).1;
    let g = 2f64.powi(common.trailing_zeros() as i32);
    let (step, grid) = if g > nominal { (g, g) } else { (nominal, 0.0) };
    let mut gap = (small - 2 * step as i64).max(0);
    if grid > 0.0 {
        gap -= gap % grid as i64;
    }
    (step, gap, grid)
}

/// The step `⌊2R·2^M⌋` (at least 1) of a point-wise relative bound `r` on `T`.
pub(crate) fn nominal_ordinal_step<T: Element>(r: f64) -> f64 {
    let m = if T::BYTES == 4 { 23 } else { 52 };
    (2.0 * r * 2f64.powi(m)).floor().max(1.0)
}

/// The largest valid ordinal gap of `T` (a decoder refuses larger ones).
pub(crate) fn max_gap<T: Element>() -> i64 {
    max_ordinal::<T>()
}

impl Bound {
    /// The quantization step for a column of `T` with normalization `norm`, and its domain.
    ///
    /// Linear: `2E` less the element type's rounding error at the column's largest magnitude
    /// (from the header's statistics), so rounding a reconstruction to `T` cannot push it past
    /// the bound (this costs under 1e-4 bit per value); where the bound is close to the data's
    /// own precision the step stays `2E` and the check decides. Ordinal: the whole number of
    /// ordinals `⌊2R·2^M⌋` (at least 1), so every level is an integer.
    pub(crate) fn step<T: Element>(self, norm: &Normalization) -> (f64, Domain) {
        match self {
            Bound::Abs(e) => {
                let max_abs = norm.offset.abs() + norm.scale;
                let reach = 2.0 * (max_abs + e);
                let slack = ulp_near::<T>(reach) + reach * f64::EPSILON * 2.0;
                let step = 2.0 * e - slack;
                let step = if step >= 1.5 * e { step } else { 2.0 * e };
                // `2E` overflows for bounds above f64::MAX / 2 (a range beyond f64::MAX at a
                // relative bound over 1/4): any finite step up to `2E` keeps the bound.
                (step.min(f64::MAX), Domain::Linear)
            }
            Bound::PwRel(r) => (nominal_ordinal_step::<T>(r), self.domain(norm)),
            Bound::Lossless => (0.0, Domain::Linear),
        }
    }

    /// The domain of this bound for a column with normalization `norm`.
    pub(crate) fn domain(self, norm: &Normalization) -> Domain {
        match self {
            Bound::PwRel(_) => Domain::Ordinal {
                lo: norm.offset - norm.scale,
                hi: norm.offset + norm.scale,
                gap: 0,
                grid: 0.0,
            },
            _ => Domain::Linear,
        }
    }
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

/// Which columns a per-column bound applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnRef {
    /// 0-based column index.
    Index(usize),
    /// Column name (where the input has names).
    Name(String),
    /// Every column whose name matches a glob pattern: `*` any run of characters, `?` one
    /// character (e.g. `Jet_*`). A pattern may match no column.
    Pattern(String),
}

impl ColumnRef {
    /// An index, a glob pattern (it holds `*` or `?`) or a name.
    pub fn parse(s: &str) -> Self {
        let s = s.trim();
        if let Ok(i) = s.parse::<usize>() {
            ColumnRef::Index(i)
        } else if s.contains(['*', '?']) {
            ColumnRef::Pattern(s.to_string())
        } else {
            ColumnRef::Name(s.to_string())
        }
    }
}

impl fmt::Display for ColumnRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnRef::Index(i) => write!(f, "{i}"),
            ColumnRef::Name(n) | ColumnRef::Pattern(n) => f.write_str(n),
        }
    }
}

/// Whether `name` matches the glob `pat` (`*`: any run, `?`: one character).
pub fn glob_match(pat: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pat.chars().collect(), name.chars().collect());
    let (mut i, mut j) = (0, 0);
    // The last `*` seen and the name position it is matched up to: backtrack there on a miss.
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// The bound for every column: a default and per-column overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounds {
    /// Applies to every column without an override (and to a whole field).
    pub default: BoundSpec,
    /// Per-column overrides, tables only; later entries win.
    pub overrides: Vec<(ColumnRef, BoundSpec)>,
}

impl Bounds {
    /// One bound for everything.
    pub fn new(default: BoundSpec) -> Self {
        Bounds {
            default,
            overrides: Vec::new(),
        }
    }

    /// Adds an override parsed from `COL=SPEC` (a 0-based index, a column name or a glob).
    pub fn with_override_str(mut self, s: &str) -> Result<Self> {
        let (col, spec) = s.split_once('=').ok_or_else(|| {
            Error::InvalidOption(format!(
                "invalid column bound '{s}': expected COLUMN=SPEC, e.g. 3=abs:0.5, PT=bits:10 \
                 or 'Jet_*=bits:12'"
            ))
        })?;
        self.overrides.push((ColumnRef::parse(col), spec.parse()?));
        Ok(self)
    }

    /// Adds a bounds file's entries after those already here; its default, if it has one,
    /// replaces this one.
    pub fn with_file(mut self, file: BoundsFile) -> Self {
        if let Some(d) = file.default {
            self.default = d;
        }
        self.overrides.extend(file.entries);
        self
    }

    /// Whether any column's bound needs value ranges.
    pub fn needs_range(&self) -> bool {
        self.default.needs_range() || self.overrides.iter().any(|(_, s)| s.needs_range())
    }

    /// The spec for each of `columns` columns (`names` may be empty). An index out of range or
    /// a name that is no column is an error (a typo must not leave a column at the default);
    /// a glob may match nothing.
    pub fn per_column(
        &self,
        columns: usize,
        names: &[String],
        is_table: bool,
    ) -> Result<Vec<BoundSpec>> {
        let mut specs = vec![self.default; columns];
        for (r, spec) in &self.overrides {
            if !is_table {
                return Err(Error::InvalidOption(
                    "per-column bounds apply to tables; this input is a field (use --layout table for a 2-D array of columns)".into(),
                ));
            }
            match r {
                ColumnRef::Index(i) => {
                    if *i >= columns {
                        return Err(Error::InvalidOption(format!(
                            "column {i} is out of range: the table has {columns} columns (0..{})",
                            columns.saturating_sub(1)
                        )));
                    }
                    specs[*i] = *spec;
                }
                ColumnRef::Name(n) => {
                    let i = names.iter().position(|c| c == n).ok_or_else(|| {
                        if names.is_empty() {
                            Error::InvalidOption(format!(
                                "column '{n}' not found: this input has no column names; use a 0-based index or --names"
                            ))
                        } else {
                            Error::InvalidOption(format!(
                                "column '{n}' not found; the columns are: {}",
                                names.join(", ")
                            ))
                        }
                    })?;
                    if let Some(j) = names[i + 1..].iter().position(|c| c == n) {
                        return Err(Error::InvalidOption(format!(
                            "column '{n}' is ambiguous: columns {i} and {} are both named so; \
                             use a 0-based index, or give unique --names",
                            i + 1 + j
                        )));
                    }
                    specs[i] = *spec;
                }
                ColumnRef::Pattern(p) => {
                    if names.is_empty() {
                        return Err(Error::InvalidOption(format!(
                            "column pattern '{p}': this input has no column names; use --names"
                        )));
                    }
                    for (i, name) in names.iter().enumerate().take(columns) {
                        if glob_match(p, name) {
                            specs[i] = *spec;
                        }
                    }
                }
            }
        }
        Ok(specs)
    }
}

/// A bounds file, for wide tables configured once: one `COLUMN SPEC` (or `COLUMN = SPEC`) per
/// line, `COLUMN` a name, a glob such as `Jet_*`, or a 0-based index; `default SPEC` sets the
/// bound of every other column; `#` starts a comment. Later lines win, so a file can say
/// `* bits:10` and then refine.
///
/// ```text
/// default   bits:10
/// *_eta     abs:1e-3
/// *_phi     bits:12
/// pdgId     lossless
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BoundsFile {
    /// The `default` line's bound, if any.
    pub default: Option<BoundSpec>,
    /// The other lines, in order.
    pub entries: Vec<(ColumnRef, BoundSpec)>,
}

impl BoundsFile {
    /// Parses a bounds file's text (`origin` names it in errors).
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let mut file = BoundsFile::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |why: String| {
                Error::InvalidOption(format!(
                    "{origin}, line {}: {why} (expected 'COLUMN SPEC' or 'default SPEC', e.g. \
                     'Jet_pt bits:10')",
                    n + 1
                ))
            };
            let (col, spec) = match line.split_once('=') {
                Some((c, s)) if !c.contains(':') => (c.trim(), s.trim()),
                _ => {
                    let mut parts = line.split_whitespace();
                    let col = parts.next().unwrap_or("");
                    let spec = parts
                        .next()
                        .ok_or_else(|| bad(format!("no bound in '{line}'")))?;
                    if let Some(extra) = parts.next() {
                        return Err(bad(format!("unexpected '{extra}'")));
                    }
                    (col, spec)
                }
            };
            let spec: BoundSpec = spec.parse().map_err(|e: Error| bad(e.to_string()))?;
            if col.eq_ignore_ascii_case("default") {
                file.default = Some(spec);
            } else {
                file.entries.push((ColumnRef::parse(col), spec));
            }
        }
        Ok(file)
    }

    /// Reads and parses the bounds file at `path`.
    pub fn read(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::InvalidOption(format!("cannot read bounds file {}: {e}", path.display()))
        })?;
        Self::parse(&text, &path.display().to_string())
    }
}

/// A column's bound as stored in the container: what was asked and what it resolved to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResolvedBound {
    /// The bound as specified.
    pub spec: BoundSpec,
    /// The bound in effect.
    pub bound: Bound,
}

impl ResolvedBound {
    /// `spec` resolved for a column with statistics `stats`.
    pub fn new(spec: BoundSpec, stats: &ColumnStats) -> Self {
        ResolvedBound {
            spec,
            bound: spec.resolve(stats),
        }
    }
}

impl fmt::Display for ResolvedBound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.spec, self.bound) {
            (BoundSpec::Lossless, _) => f.write_str("lossless"),
            (BoundSpec::Abs(_), Bound::Lossless) => write!(f, "abs:0 (lossless)"),
            (BoundSpec::Abs(_), b) => write!(f, "{b}"),
            (BoundSpec::Rel(r), Bound::Lossless) => write!(f, "rel:{r:e} -> lossless (constant)"),
            (BoundSpec::Rel(r), b) => write!(f, "rel:{r:e} -> {b}"),
            (BoundSpec::PwRel(_), b) => write!(f, "{b}"),
            (BoundSpec::Bits(n), b) => write!(f, "bits:{n} -> {b}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        assert_eq!("abs:0.5".parse::<BoundSpec>().unwrap(), BoundSpec::Abs(0.5));
        assert_eq!(
            "rel:1e-3".parse::<BoundSpec>().unwrap(),
            BoundSpec::Rel(1e-3)
        );
        assert_eq!(
            "LOSSLESS".parse::<BoundSpec>().unwrap(),
            BoundSpec::Lossless
        );
        assert_eq!("bits:10".parse::<BoundSpec>().unwrap(), BoundSpec::Bits(10));
        assert_eq!(
            "pwrel:1e-3".parse::<BoundSpec>().unwrap(),
            BoundSpec::PwRel(1e-3)
        );
        for bad in [
            "abs",
            "abs:-1",
            "rel:nan",
            "rel:inf",
            "foo:1",
            "abs:x",
            "",
            "bits:0",
            "bits:53",
            "bits:7.5",
            "bits:-1",
            "pwrel:1",
            "pwrel:0",
            "pwrel:2",
            "pwrel:-1e-3",
        ] {
            assert!(bad.parse::<BoundSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn specs_round_trip_through_their_header_codes() {
        for s in [
            BoundSpec::Abs(0.25),
            BoundSpec::Rel(1e-3),
            BoundSpec::PwRel(1e-3),
            BoundSpec::Bits(10),
            BoundSpec::Bits(52),
            BoundSpec::Lossless,
        ] {
            assert_eq!(BoundSpec::from_code(s.code(), s.value()), Some(s));
            assert_eq!(s.to_string().parse::<BoundSpec>().unwrap(), s);
        }
        assert_eq!(BoundSpec::from_code(5, 10.5), None);
        assert_eq!(BoundSpec::from_code(5, 0.0), None);
        assert_eq!(BoundSpec::from_code(4, 1.0), None);
        assert_eq!(BoundSpec::from_code(4, f64::NAN), None);
        assert_eq!(BoundSpec::from_code(9, 1.0), None);
        let b = BoundSpec::Bits(10).resolve(&ColumnStats::default());
        assert_eq!(b, Bound::PwRel(1.0 / 2048.0));
        assert_eq!(Bound::from_stored(BoundSpec::Bits(10), b.value()), Some(b));
        assert_eq!(Bound::from_stored(BoundSpec::Bits(10), 0.0), None);
        assert_eq!(
            Bound::from_stored(BoundSpec::Rel(1e-3), 0.0),
            Some(Bound::Lossless)
        );
    }

    #[test]
    fn within_compares_like_modes_only() {
        assert!(Bound::Lossless.within(Bound::Abs(1.0)));
        assert!(Bound::Lossless.within(Bound::PwRel(0.25)));
        assert!(Bound::Lossless.within(Bound::Lossless));
        assert!(Bound::Abs(1.0).within(Bound::Abs(1.0)));
        assert!(!Bound::Abs(1.0 + f64::EPSILON).within(Bound::Abs(1.0)));
        assert!(Bound::PwRel(1e-3).within(Bound::PwRel(2e-3)));
        assert!(!Bound::PwRel(2e-3).within(Bound::PwRel(1e-3)));
        assert!(!Bound::Abs(1e-9).within(Bound::Lossless));
        assert!(!Bound::Abs(1e-9).within(Bound::PwRel(0.5)));
        assert!(!Bound::PwRel(1e-9).within(Bound::Abs(1e300)));
    }

    #[test]
    fn rel_resolves_like_the_independent_check() {
        // check.py: e = rel * (max - min) computed in float64.
        let stats = ColumnStats {
            min: -3.25,
            max: 1024.5,
            finite: 10,
            nonfinite: 0,
        };
        assert_eq!(
            BoundSpec::Rel(1e-3).resolve(&stats),
            Bound::Abs(1e-3 * (1024.5 - -3.25))
        );
        let none = ColumnStats::default();
        assert_eq!(BoundSpec::Rel(1e-3).resolve(&none), Bound::Lossless);
        // A range beyond f64::MAX: R times the true range, not a cap.
        let huge = ColumnStats {
            min: -1e308,
            max: 1e308,
            finite: 2,
            nonfinite: 0,
        };
        assert_eq!(
            BoundSpec::Rel(1e-3).resolve(&huge),
            Bound::Abs((1e-3 * 1e308) * 2.0)
        );
    }

    #[test]
    fn pwrel_check_is_strict_and_exact_about_zeros() {
        let r = 1.0 / 1024.0;
        assert!(within_pwrel(0.0f32, 0.0f32, r));
        assert!(within_pwrel(-0.0f32, -0.0f32, r));
        assert!(!within_pwrel(-0.0f32, 0.0f32, r));
        assert!(!within_pwrel(0.0f32, 1e-45f32, r));
        assert!(!within_pwrel(1e-45f32, 0.0f32, r));
        assert!(within_pwrel(1024.0f32, 1025.0f32, r * 1.001));
        // Exactly at the edge: |x − y| = r·|x| is rejected (the margin), just inside accepted.
        assert!(!within_pwrel(1024.0f32, 1025.0f32, r));
        assert!(within_pwrel(1024.0f64, 1025.0 - 1e-9, r));
        assert!(!within_pwrel(1.0f32, -1.0f32, 0.999));
        assert!(!within_pwrel(f32::INFINITY, f32::MAX, 0.5));
        assert!(within_pwrel(f32::INFINITY, f32::INFINITY, 0.5));
        assert!(!within_pwrel(1.0f32, f32::NAN, 0.5));
        // Deep f64 subnormals: r·|x| is not normal, so only the value itself passes.
        let tiny = f64::from_bits(1000);
        assert!(!within_pwrel(tiny, f64::from_bits(1001), 0.5));
        assert!(within_pwrel(tiny, tiny, 0.5));
        // f32 subnormals are far from f64's: checked like any other value.
        let s = f32::from_bits(1000);
        assert!(within_pwrel(s, f32::from_bits(1001), 0.01));
        assert!(!within_pwrel(s, f32::from_bits(1011), 0.01));
    }

    #[test]
    fn ordinals_are_monotone_and_invertible() {
        let vals = [
            f32::MIN,
            -1e30,
            -1.0,
            -1e-40,
            -0.0,
            0.0,
            1e-45,
            1e-40,
            1.0,
            1.5,
            f32::MAX,
        ];
        for w in vals.windows(2) {
            assert!(ordinal(w[0]) <= ordinal(w[1]), "{w:?}");
        }
        for v in vals {
            let back: f32 = from_ordinal(ordinal(v));
            assert!(back == v, "{v}");
        }
        assert_eq!(from_ordinal::<f32>(i64::MAX), f32::MAX);
        assert_eq!(from_ordinal::<f64>(i64::MIN), f64::MIN);
        assert_eq!(ordinal(1.0f64), 0x3ff0_0000_0000_0000);
    }

    #[test]
    fn bits_steps_are_mantissa_rounding() {
        let norm = Normalization {
            offset: 0.0,
            scale: 1.0,
        };
        for n in [1, 7, 10, 23] {
            let (s, d) = BoundSpec::Bits(n)
                .resolve(&ColumnStats::default())
                .step::<f32>(&norm);
            assert_eq!(s, 2f64.powi(23 - n as i32));
            assert!(matches!(d, Domain::Ordinal { .. }));
        }
        let (s, _) = Bound::PwRel(1e-3).step::<f32>(&norm);
        assert_eq!(s, (2e-3 * 8388608.0f64).floor());
    }

    #[test]
    fn globs() {
        assert!(glob_match("Jet_*", "Jet_pt"));
        assert!(glob_match("*_pt", "Jet_pt"));
        assert!(glob_match("*", ""));
        assert!(glob_match("J?t_*t", "Jet_pt"));
        assert!(glob_match("*a*b*", "xxaxxbxx"));
        assert!(!glob_match("Jet_*", "FatJet_pt"));
        assert!(!glob_match("*_eta", "Jet_pt"));
        assert!(!glob_match("J?t", "Jt"));
    }

    #[test]
    fn overrides_by_index_and_name() {
        let names: Vec<String> = ["PT", "Eta", "Phi"].iter().map(|s| s.to_string()).collect();
        let b = Bounds::new(BoundSpec::Rel(1e-3))
            .with_override_str("2=abs:0.5")
            .unwrap()
            .with_override_str("Eta=lossless")
            .unwrap();
        let specs = b.per_column(3, &names, true).unwrap();
        assert_eq!(
            specs,
            vec![
                BoundSpec::Rel(1e-3),
                BoundSpec::Lossless,
                BoundSpec::Abs(0.5)
            ]
        );
        let err = Bounds::new(BoundSpec::Lossless)
            .with_override_str("Mass=abs:1")
            .unwrap();
        assert!(
            err.per_column(3, &names, true)
                .unwrap_err()
                .to_string()
                .contains("PT, Eta, Phi")
        );
        assert!(
            Bounds::new(BoundSpec::Lossless)
                .with_override_str("7=abs:1")
                .unwrap()
                .per_column(3, &names, true)
                .is_err()
        );
        assert!(b.per_column(1, &[], false).is_err());
        // A name two columns carry is ambiguous, not the first of them.
        let twice: Vec<String> = ["PT", "Eta", "PT"].iter().map(|s| s.to_string()).collect();
        let e = Bounds::new(BoundSpec::Lossless)
            .with_override_str("PT=abs:1")
            .unwrap()
            .per_column(3, &twice, true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ambiguous") && e.contains("columns 0 and 2"),
            "{e}"
        );
        assert!(
            b.per_column(3, &twice, true).is_ok(),
            "unused, it is no matter"
        );
    }

    #[test]
    fn bounds_files_mix_modes_by_name_and_pattern() {
        let names: Vec<String> = ["Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "pdgId", "MET"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let text = "# NanoAOD-like\n\
                    default rel:1e-3\n\
                    Jet_*     bits:10   # kinematics\n\
                    Jet_eta   abs:1e-3\n\
                    *_phi = bits:12\n\
                    pdgId     lossless\n\
                    \n\
                    5 pwrel:1e-4\n";
        let b = Bounds::new(BoundSpec::Abs(9.0)).with_file(BoundsFile::parse(text, "f").unwrap());
        assert_eq!(b.default, BoundSpec::Rel(1e-3));
        assert_eq!(
            b.per_column(6, &names, true).unwrap(),
            vec![
                BoundSpec::Bits(10),
                BoundSpec::Abs(1e-3),
                BoundSpec::Bits(12),
                BoundSpec::Bits(10),
                BoundSpec::Lossless,
                BoundSpec::PwRel(1e-4),
            ]
        );
        // A glob may match nothing; a name must exist.
        let b = Bounds::new(BoundSpec::Rel(1e-3))
            .with_file(BoundsFile::parse("Muon_* bits:8\n", "f").unwrap());
        assert!(b.per_column(6, &names, true).is_ok());
        let b = Bounds::new(BoundSpec::Rel(1e-3))
            .with_file(BoundsFile::parse("Muon_pt bits:8\n", "f").unwrap());
        assert!(b.per_column(6, &names, true).is_err());
        for (bad, why) in [
            ("Jet_pt\n", "line 1"),
            ("\nJet_pt bits:99\n", "line 2"),
            ("Jet_pt bits:10 extra\n", "extra"),
        ] {
            let e = BoundsFile::parse(bad, "my.bounds").unwrap_err().to_string();
            assert!(e.contains("my.bounds") && e.contains(why), "{e}");
        }
    }
}
