//! Derived input features: fixed formulas over reconstructed columns, evaluated bit-reproducibly.
//!
//! A one-hidden-layer ReLU network approximates `px = pt·cos φ` or `E = √(pz² + pt² + m²)` only
//! roughly; given the formula as an input it needs a single weight. So a model may feed its
//! networks *features*: products, ratios, norms and a few transcendental relations of earlier
//! columns, chosen per column by how much of it they explain on the training sample.
//!
//! The decoder must compute every feature to the same bits as the encoder on any machine. So
//! the transcendental functions here are our own: range reduction and polynomials built only
//! from IEEE-754 `f64` addition, subtraction, multiplication, division and square root (each
//! correctly rounded, so identical everywhere), in a fixed order, without fused multiply-add
//! (Rust never contracts `a * b + c`) and without the platform's libm. They are accurate to a
//! few units in the last place over the ranges that matter, which is far more than a predictor
//! needs; what matters is that they are the same everywhere.

use crate::bytes::{ByteReader, DecodeResult, Malformed, put_uvarint};

/// A formula over one to three columns (`a`, `b`, `c`: their reconstructed values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `a · b`
    Mul = 0,
    /// `a / b`
    Div = 1,
    /// `√(a² + b²)`
    Hypot = 2,
    /// `√(a² + b² + c²)`
    Hypot3 = 3,
    /// `√|a² − b²|`
    DiffSq = 4,
    /// `a · cos b`
    MulCos = 5,
    /// `a · sin b`
    MulSin = 6,
    /// `a · sinh b`
    MulSinh = 7,
    /// `a · cosh b`
    MulCosh = 8,
    /// `atan2(a, b)`
    Atan2 = 9,
    /// `asinh(a / b)`
    Asinh = 10,
    /// `½ ln((a + b) / (a − b))` (rapidity from energy and longitudinal momentum)
    Rapidity = 11,
}

impl Op {
    /// Every formula, by id.
    pub const ALL: [Op; 12] = [
        Op::Mul,
        Op::Div,
        Op::Hypot,
        Op::Hypot3,
        Op::DiffSq,
        Op::MulCos,
        Op::MulSin,
        Op::MulSinh,
        Op::MulCosh,
        Op::Atan2,
        Op::Asinh,
        Op::Rapidity,
    ];

    /// Columns the formula reads.
    pub fn arity(self) -> usize {
        match self {
            Op::Hypot3 => 3,
            _ => 2,
        }
    }

    /// Whether the formula calls a transcendental function (a sine, an exponential, a
    /// logarithm, an arctangent): several times the cost of the arithmetic ones for every
    /// record compressed and decompressed, so selection asks more of it.
    pub fn transcendental(self) -> bool {
        !matches!(
            self,
            Op::Mul | Op::Div | Op::Hypot | Op::Hypot3 | Op::DiffSq
        )
    }

    /// Whether swapping `a` and `b` gives the same value (only one order is a candidate).
    pub fn symmetric(self) -> bool {
        matches!(self, Op::Mul | Op::Hypot | Op::Hypot3 | Op::DiffSq)
    }

    /// The formula as text, with `a`, `b`, `c` replaced by `names`.
    pub fn describe(self, names: &[String]) -> String {
        let (a, b) = (&names[0], names.get(1).map_or("", |s| s.as_str()));
        match self {
            Op::Mul => format!("{a}·{b}"),
            Op::Div => format!("{a}/{b}"),
            Op::Hypot => format!("√({a}²+{b}²)"),
            Op::Hypot3 => format!("√({a}²+{b}²+{}²)", names[2]),
            Op::DiffSq => format!("√|{a}²−{b}²|"),
            Op::MulCos => format!("{a}·cos {b}"),
            Op::MulSin => format!("{a}·sin {b}"),
            Op::MulSinh => format!("{a}·sinh {b}"),
            Op::MulCosh => format!("{a}·cosh {b}"),
            Op::Atan2 => format!("atan2({a}, {b})"),
            Op::Asinh => format!("asinh({a}/{b})"),
            Op::Rapidity => format!("½ln(({a}+{b})/({a}−{b}))"),
        }
    }

    /// For the formulas `a · f(b)`, `f`: the caller may compute `f` once per value of `b`
    /// and multiply, which gives the bits of [`eval`](Self::eval).
    pub fn factor_of_b(self) -> Option<fn(f64) -> f64> {
        match self {
            Op::MulCos => Some(cos),
            Op::MulSin => Some(sin),
            Op::MulSinh => Some(sinh),
            Op::MulCosh => Some(cosh),
            _ => None,
        }
    }

    /// For the formulas `a · f(b)`, `out[k] = f(b[k])` for every `k` with the bits of
    /// [`factor_of_b`](Self::factor_of_b)'s function, computed lane by lane; `false` (and `out`
    /// untouched) for the other formulas.
    #[allow(unsafe_code)]
    pub fn factor_into(self, b: &[f64], out: &mut [f64]) -> bool {
        if self.factor_of_b().is_none() {
            return false;
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            unsafe { self.factor_into_avx512(b, out) };
            return true;
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { self.factor_into_avx2(b, out) };
            return true;
        }
        self.factor_into_body(b, out);
        true
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn factor_into_avx2(self, b: &[f64], out: &mut [f64]) {
        self.factor_into_body(b, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn factor_into_avx512(self, b: &[f64], out: &mut [f64]) {
        self.factor_into_body(b, out)
    }

    #[inline(always)]
    fn factor_into_body(self, b: &[f64], out: &mut [f64]) {
        let b = &b[..out.len()];
        macro_rules! each {
            (|$y:ident| $e:expr) => {
                for (o, &$y) in out.iter_mut().zip(b) {
                    *o = $e;
                }
            };
        }
        match self {
            Op::MulCos => each!(|y| sincos_lane(y).1),
            Op::MulSin => each!(|y| sincos_lane(y).0),
            Op::MulSinh => each!(|y| sinh_lane(y)),
            Op::MulCosh => each!(|y| cosh_lane(y)),
            _ => {}
        }
    }

    /// `out[k] = eval(a[k], b[k], c[k])` for every `k` (`c` is read by three-argument
    /// formulas only): the formula chosen once, and computed lane by lane (the same bits as
    /// [`eval`](Self::eval)) with the widest vectors this CPU has.
    #[allow(unsafe_code)]
    pub fn eval_into(self, a: &[f64], b: &[f64], c: &[f64], out: &mut [f64]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            return unsafe { self.eval_into_avx512(a, b, c, out) };
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { self.eval_into_avx2(a, b, c, out) };
        }
        self.eval_into_body(a, b, c, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn eval_into_avx2(self, a: &[f64], b: &[f64], c: &[f64], out: &mut [f64]) {
        self.eval_into_body(a, b, c, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn eval_into_avx512(self, a: &[f64], b: &[f64], c: &[f64], out: &mut [f64]) {
        self.eval_into_body(a, b, c, out)
    }

    #[inline(always)]
    fn eval_into_body(self, a: &[f64], b: &[f64], c: &[f64], out: &mut [f64]) {
        let n = out.len();
        let (a, b) = (&a[..n], &b[..n]);
        // One loop per formula, each with its body written out (not a closure, which the
        // compiler may leave uninlined, so unvectorized).
        macro_rules! two {
            (|$x:ident, $y:ident| $e:expr) => {
                for ((o, &$x), &$y) in out.iter_mut().zip(a).zip(b) {
                    *o = $e;
                }
            };
        }
        match self {
            Op::Mul => two!(|x, y| x * y),
            Op::Div => two!(|x, y| x / y),
            Op::Hypot => two!(|x, y| (x * x + y * y).sqrt()),
            Op::DiffSq => two!(|x, y| (x * x - y * y).abs().sqrt()),
            Op::Hypot3 => {
                for (((o, &x), &y), &z) in out.iter_mut().zip(a).zip(b).zip(&c[..n]) {
                    *o = (x * x + y * y + z * z).sqrt();
                }
            }
            Op::MulCos => two!(|x, y| x * sincos_lane(y).1),
            Op::MulSin => two!(|x, y| x * sincos_lane(y).0),
            Op::MulSinh => two!(|x, y| x * sinh_lane(y)),
            Op::MulCosh => two!(|x, y| x * cosh_lane(y)),
            Op::Atan2 => two!(|x, y| atan2_lane(x, y)),
            Op::Asinh => two!(|x, y| asinh_lane(x / y)),
            Op::Rapidity => two!(|x, y| 0.5 * ln_lane((x + y) / (x - y))),
        }
    }

    /// The formula's value (non-finite where it is undefined; the kernel maps that to 0).
    #[inline]
    pub fn eval(self, a: f64, b: f64, c: f64) -> f64 {
        match self {
            Op::Mul => a * b,
            Op::Div => a / b,
            Op::Hypot => (a * a + b * b).sqrt(),
            Op::Hypot3 => (a * a + b * b + c * c).sqrt(),
            Op::DiffSq => (a * a - b * b).abs().sqrt(),
            Op::MulCos => a * cos(b),
            Op::MulSin => a * sin(b),
            Op::MulSinh => a * sinh(b),
            Op::MulCosh => a * cosh(b),
            Op::Atan2 => atan2(a, b),
            Op::Asinh => asinh(a / b),
            Op::Rapidity => 0.5 * ln((a + b) / (a - b)),
        }
    }
}

/// A derived input: a formula over columns, with the normalization of its values.
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    /// The formula.
    pub op: Op,
    /// The columns it reads (`arity` of them).
    pub args: Vec<u32>,
    /// Centre of its values on the training sample.
    pub offset: f64,
    /// Half-range of its values (0: constant, the input is always 0).
    pub scale: f64,
}

impl Feature {
    /// Its raw value for a record whose columns read `col(i)`.
    #[inline]
    pub fn value(&self, col: impl Fn(usize) -> f64) -> f64 {
        let a = col(self.args[0] as usize);
        let b = col(self.args[1] as usize);
        let c = if self.args.len() > 2 {
            col(self.args[2] as usize)
        } else {
            0.0
        };
        self.op.eval(a, b, c)
    }

    /// Its network inputs for a block of records (normalized, as
    /// [`normalize_input`](super::normalize_input)) from its arguments' values (`args[k]`:
    /// argument `k`'s, one per record; the third read by three-argument formulas only), the
    /// formula's values going through `v` (scratch, at least `out.len()` long).
    #[inline(always)]
    pub fn inputs_into(&self, [a, b, c]: [&[f64]; 3], v: &mut [f64], out: &mut [f32]) {
        let v = &mut v[..out.len()];
        self.op.eval_into(a, b, c, v);
        for (d, &x) in out.iter_mut().zip(v.iter()) {
            *d = super::normalize_input(x, self.offset, self.scale);
        }
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.push(self.op as u8);
        for &a in &self.args {
            put_uvarint(out, u64::from(a));
        }
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.scale.to_le_bytes());
    }

    pub(crate) fn read(r: &mut ByteReader<'_>, width: usize) -> DecodeResult<Feature> {
        let id = r.u8()?;
        let op = *Op::ALL
            .get(usize::from(id))
            .ok_or_else(|| Malformed(format!("unknown feature formula {id}")))?;
        let mut args = Vec::with_capacity(op.arity());
        for _ in 0..op.arity() {
            let a = r.uvarint()?;
            if a >= width as u64 {
                return Err(Malformed(format!(
                    "a feature reads column {a} of a {width}-column table"
                )));
            }
            args.push(a as u32);
        }
        let offset = r.f64()?;
        let scale = r.f64()?;
        if !(offset.is_finite() && scale.is_finite() && scale >= 0.0) {
            return Err(Malformed::new("a feature's normalization is not finite"));
        }
        Ok(Feature {
            op,
            args,
            offset,
            scale,
        })
    }
}

// ---- Deterministic elementary functions -------------------------------------------------

const PI: f64 = std::f64::consts::PI;
const FRAC_PI_2: f64 = std::f64::consts::FRAC_PI_2;
const FRAC_PI_4: f64 = std::f64::consts::FRAC_PI_4;
const LN_2: f64 = std::f64::consts::LN_2;

/// `x` rounded to the nearest integer, halves away from zero, as `f64` (exact for |x| < 2⁵²).
#[inline]
fn round_half_away(x: f64) -> f64 {
    // `f64::round` is correctly specified (not libm-dependent): it is an exact operation.
    x.round()
}

/// sin and cos of `r`, |r| ≤ π/4, by Taylor polynomials (error < 1e-16 on that range).
#[inline]
fn sincos_reduced(r: f64) -> (f64, f64) {
    let z = r * r;
    // sin r = r − r³/3! + r⁵/5! − … + r¹⁵/15!
    let s = r
        * (1.0
            + z * (-1.0 / 6.0
                + z * (1.0 / 120.0
                    + z * (-1.0 / 5040.0
                        + z * (1.0 / 362880.0
                            + z * (-1.0 / 39916800.0
                                + z * (1.0 / 6227020800.0 + z * (-1.0 / 1307674368000.0))))))));
    // cos r = 1 − r²/2! + … + r¹⁶/16!
    let c = 1.0
        + z * (-0.5
            + z * (1.0 / 24.0
                + z * (-1.0 / 720.0
                    + z * (1.0 / 40320.0
                        + z * (-1.0 / 3628800.0
                            + z * (1.0 / 479001600.0
                                + z * (-1.0 / 87178291200.0 + z * (1.0 / 20922789888000.0))))))));
    (s, c)
}

/// sin and cos of `x` (NaN beyond |x| = 1e9, where the reduction loses every digit).
#[inline]
#[allow(clippy::excessive_precision)] // fdlibm's constants, as published
pub fn sincos(x: f64) -> (f64, f64) {
    if x.is_nan() || x.abs() > 1e9 {
        return (f64::NAN, f64::NAN);
    }
    // x = q·π/2 + r with |r| ≤ π/4; π/2 in three parts (Cody–Waite), the first two with
    // 33 significant bits so that q·P1 and q·P2 are exact for |q| < 2²⁰.
    const P1: f64 = 1.570_796_326_734_125_614_17;
    const P2: f64 = 6.077_100_506_303_965_976_6e-11;
    const P3: f64 = 2.022_266_248_795_950_631_54e-21;
    let q = round_half_away(x * (2.0 / PI));
    let r = ((x - q * P1) - q * P2) - q * P3;
    let (s, c) = sincos_reduced(r);
    match (q as i64).rem_euclid(4) {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

/// sin `x`.
#[inline]
pub fn sin(x: f64) -> f64 {
    sincos(x).0
}

/// cos `x`.
#[inline]
pub fn cos(x: f64) -> f64 {
    sincos(x).1
}

/// e^x (0 below −745, +∞ above 709.78).
pub fn exp(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x > 709.78 {
        return f64::INFINITY;
    }
    if x < -745.0 {
        return 0.0;
    }
    // x = k·ln2 + r, |r| ≤ ln2/2; ln 2 in two parts.
    let k = round_half_away(x * (1.0 / LN_2));
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let p = exp_taylor(r);
    // Scale by 2^k in two steps so subnormal and near-overflow results stay right.
    let k = k as i64;
    let (k1, k2) = (k / 2, k - k / 2);
    p * pow2(k1) * pow2(k2)
}

/// ln 2 in two parts: its high bits, and the rest (ln 2 − `LN2_HI`).
const LN2_HI: f64 = 0.693_147_180_369_123_8;
const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;

/// e^r by Taylor to r¹³/13! (|r| ≤ 0.347: error < 1e-17 relative); [`exp`]'s and its lane
/// form's one polynomial.
#[inline(always)]
fn exp_taylor(r: f64) -> f64 {
    let mut p = 1.0 / 6227020800.0;
    for d in [
        479001600.0,
        39916800.0,
        3628800.0,
        362880.0,
        40320.0,
        5040.0,
        720.0,
        120.0,
        24.0,
        6.0,
        2.0,
        1.0,
        1.0,
    ] {
        p = p * r + 1.0 / d;
    }
    p
}

/// ln(2^e · m) for m in [√2/2, √2]: ln m = 2·atanh(s), s = (m − 1)/(m + 1), |s| ≤ 0.1716, by
/// the series to s²¹ ([`ln`]'s and its lane form's).
#[inline(always)]
fn ln_parts(e: f64, m: f64) -> f64 {
    let s = (m - 1.0) / (m + 1.0);
    let z = s * s;
    let mut p = 1.0 / 21.0;
    for d in [19.0, 17.0, 15.0, 13.0, 11.0, 9.0, 7.0, 5.0, 3.0, 1.0] {
        p = p * z + 1.0 / d;
    }
    (e * LN2_HI + 2.0 * s * p) + e * LN2_LO
}

/// sinh x by its series to x¹⁵ (for |x| < 0.5).
#[inline(always)]
fn sinh_series(x: f64) -> f64 {
    let z = x * x;
    let mut p = 1.0 / 1307674368000.0;
    for d in [6227020800.0, 39916800.0, 362880.0, 5040.0, 120.0, 6.0, 1.0] {
        p = p * z + 1.0 / d;
    }
    x * p
}

/// asinh a by its series to a¹⁹ (for 0 ≤ a < 0.125).
#[inline(always)]
fn asinh_series(a: f64) -> f64 {
    const C: [f64; 10] = [
        1.0,
        -1.0 / 6.0,
        3.0 / 40.0,
        -5.0 / 112.0,
        35.0 / 1152.0,
        -63.0 / 2816.0,
        231.0 / 13312.0,
        -143.0 / 10240.0,
        6435.0 / 557056.0,
        -12155.0 / 1245184.0,
    ];
    let z = a * a;
    let mut p = C[9];
    for &c in C[..9].iter().rev() {
        p = p * z + c;
    }
    a * p
}

/// 2^k for |k| ≤ 1022, built from its bits.
#[inline]
fn pow2(k: i64) -> f64 {
    f64::from_bits(((k + 1023) as u64) << 52)
}

/// Natural logarithm (NaN below 0, −∞ at 0).
pub fn ln(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return x;
    }
    // x = m·2^e with m in [√½, √2).
    let (mut m, mut e) = {
        let mut y = x;
        let mut e0 = 0i64;
        if y < f64::MIN_POSITIVE {
            y *= pow2(54);
            e0 = -54;
        }
        let bits = y.to_bits();
        let e = ((bits >> 52) & 0x7ff) as i64 - 1023;
        (
            f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52)),
            e + e0,
        )
    };
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    ln_parts(e as f64, m)
}

/// sinh `x`.
pub fn sinh(x: f64) -> f64 {
    if x.abs() < 0.5 {
        // e^x − e^−x loses digits near 0.
        return sinh_series(x);
    }
    let e = exp(x.abs());
    let v = 0.5 * e - 0.5 / e;
    if x < 0.0 { -v } else { v }
}

/// cosh `x`.
pub fn cosh(x: f64) -> f64 {
    let e = exp(x.abs());
    0.5 * e + 0.5 / e
}

/// asinh `x`.
pub fn asinh(x: f64) -> f64 {
    let a = x.abs();
    let v = if a < 0.125 {
        // ln(a + √(a²+1)) cancels near 0.
        asinh_series(a)
    } else if a > 1e150 {
        ln(a) + LN_2
    } else {
        ln(a + (a * a + 1.0).sqrt())
    };
    if x < 0.0 { -v } else { v }
}

/// atan `x` for |x| ≤ 1.
#[inline]
fn atan_unit(x: f64) -> f64 {
    // Two argument halvings, atan x = 2·atan(x / (1 + √(1 + x²))), to |t| ≤ tan(π/16) ≈ 0.199,
    // then the series to t²³.
    let t1 = x / (1.0 + (1.0 + x * x).sqrt());
    let t = t1 / (1.0 + (1.0 + t1 * t1).sqrt());
    // atan t / t = 1 − z/3 + z²/5 − … = 1 − z·(1/3 − z·(1/5 − …)).
    let z = t * t;
    let mut p = 1.0 / 23.0;
    for d in [21.0, 19.0, 17.0, 15.0, 13.0, 11.0, 9.0, 7.0, 5.0, 3.0, 1.0] {
        p = 1.0 / d - z * p;
    }
    4.0 * t * p
}

/// atan2(y, x), in (−π, π].
pub fn atan2(y: f64, x: f64) -> f64 {
    if y.is_nan() || x.is_nan() {
        return f64::NAN;
    }
    if x == 0.0 && y == 0.0 {
        return 0.0;
    }
    let (ay, ax) = (y.abs(), x.abs());
    // Angle in [0, π/2] of (ax, ay).
    let a = if ax.is_infinite() && ay.is_infinite() {
        FRAC_PI_4
    } else if ay <= ax {
        atan_unit(ay / ax)
    } else {
        FRAC_PI_2 - atan_unit(ax / ay)
    };
    let a = if x < 0.0 { PI - a } else { a };
    if y < 0.0 { -a } else { a }
}

// ---- The same functions, lane by lane ---------------------------------------------------
//
// Each `*_lane` function below performs, for every input, exactly the IEEE-754 operations of
// its scalar counterpart above, in the same order; where the scalar one branches, the lane one
// computes each side and selects (a comparison and a blend, no arithmetic), so its result has
// the same bits for every input (tested on random and special values). Written without
// branches, a loop over them vectorizes, and [`Op::eval_into`] runs such loops with the
// widest vectors the CPU has.

/// [`round_half_away`] without a call to the C library's `round` (which does not vectorize):
/// the integer part, moved away from zero where the fraction is at least one half (`x − t`
/// is exact).
#[inline(always)]
fn round_half_away_lane(x: f64) -> f64 {
    let t = x.trunc();
    let away = if x < 0.0 { t - 1.0 } else { t + 1.0 };
    if (x - t).abs() >= 0.5 { away } else { t }
}

/// 2^k for an integer `k` (`|k| ≤ 1022`) held in an `f64`: [`pow2`] of it.
#[inline(always)]
fn pow2_lane(k: f64) -> f64 {
    // Through `i32`, which converts in vector registers (`k` is small; out of range, the
    // saturated value is never selected).
    f64::from_bits(((i64::from(k as i32) + 1023) as u64) << 52)
}

/// [`sincos`], lane by lane.
#[inline(always)]
#[allow(clippy::excessive_precision)] // fdlibm's constants, as published
fn sincos_lane(x: f64) -> (f64, f64) {
    const P1: f64 = 1.570_796_326_734_125_614_17;
    const P2: f64 = 6.077_100_506_303_965_976_6e-11;
    const P3: f64 = 2.022_266_248_795_950_631_54e-21;
    let q = round_half_away_lane(x * (2.0 / PI));
    let r = ((x - q * P1) - q * P2) - q * P3;
    let (s, c) = sincos_reduced(r);
    // The quadrant, q mod 4 (|q| < 2³⁰ wherever the result is kept): (s, c), (c, −s),
    // (−s, −c), (−c, s).
    let quad = (q as i32) & 3;
    let (sin, cos) = if quad & 1 == 0 { (s, c) } else { (c, s) };
    let sin = if quad & 2 == 0 { sin } else { -sin };
    let cos = if (quad + 1) & 2 == 0 { cos } else { -cos };
    let out = x.is_nan() || x.abs() > 1e9;
    (
        if out { f64::NAN } else { sin },
        if out { f64::NAN } else { cos },
    )
}

/// [`exp`], lane by lane.
#[inline(always)]
fn exp_lane(x: f64) -> f64 {
    let k = round_half_away_lane(x * (1.0 / LN_2));
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let p = exp_taylor(r);
    // k/2 rounded toward zero, as the integer division of the scalar code.
    let k1 = (k * 0.5).trunc();
    let k2 = k - k1;
    let v = p * pow2_lane(k1) * pow2_lane(k2);
    let v = if x < -745.0 { 0.0 } else { v };
    let v = if x > 709.78 { f64::INFINITY } else { v };
    if x.is_nan() { x } else { v }
}

/// [`ln`], lane by lane.
#[inline(always)]
fn ln_lane(x: f64) -> f64 {
    let tiny = x < f64::MIN_POSITIVE;
    let y = if tiny { x * pow2(54) } else { x };
    let e0: i32 = if tiny { -54 } else { 0 };
    let bits = y.to_bits();
    let e = ((bits >> 52) & 0x7ff) as i32 - 1023 + e0;
    let m = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52));
    let big = m > std::f64::consts::SQRT_2;
    let m = if big { m * 0.5 } else { m };
    let e = e + i32::from(big);
    let v = ln_parts(f64::from(e), m);
    let v = if x.is_infinite() { x } else { v };
    let v = if x == 0.0 { f64::NEG_INFINITY } else { v };
    if x.is_nan() || x < 0.0 { f64::NAN } else { v }
}

/// [`sinh`], lane by lane.
#[inline(always)]
fn sinh_lane(x: f64) -> f64 {
    let series = sinh_series(x);
    let e = exp_lane(x.abs());
    let v = 0.5 * e - 0.5 / e;
    let v = if x < 0.0 { -v } else { v };
    if x.abs() < 0.5 { series } else { v }
}

/// [`cosh`], lane by lane.
#[inline(always)]
fn cosh_lane(x: f64) -> f64 {
    let e = exp_lane(x.abs());
    0.5 * e + 0.5 / e
}

/// [`asinh`], lane by lane.
#[inline(always)]
fn asinh_lane(x: f64) -> f64 {
    let a = x.abs();
    let series = asinh_series(a);
    let huge = a > 1e150;
    let l = ln_lane(if huge { a } else { a + (a * a + 1.0).sqrt() });
    let v = if huge { l + LN_2 } else { l };
    let v = if a < 0.125 { series } else { v };
    if x < 0.0 { -v } else { v }
}

/// [`atan2`], lane by lane.
#[inline(always)]
fn atan2_lane(y: f64, x: f64) -> f64 {
    let (ay, ax) = (y.abs(), x.abs());
    let below = ay <= ax;
    let (n, d) = if below { (ay, ax) } else { (ax, ay) };
    let t = atan_unit(n / d);
    let a = if below { t } else { FRAC_PI_2 - t };
    let a = if ax.is_infinite() && ay.is_infinite() {
        FRAC_PI_4
    } else {
        a
    };
    let a = if x < 0.0 { PI - a } else { a };
    let a = if y < 0.0 { -a } else { a };
    let a = if x == 0.0 && y == 0.0 { 0.0 } else { a };
    if y.is_nan() || x.is_nan() {
        f64::NAN
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300) || (a - b).abs() < 1e-300
    }

    #[test]
    fn elementary_functions_match_libm_closely() {
        let mut s = 7u64;
        for _ in 0..200_000 {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            let u = (s >> 11) as f64 / (1u64 << 53) as f64;
            let x = (u * 2.0 - 1.0) * 40.0;
            assert!((sin(x) - x.sin()).abs() < 4e-15, "sin {x}");
            assert!((cos(x) - x.cos()).abs() < 4e-15, "cos {x}");
            assert!(close(exp(x), x.exp(), 4e-15), "exp {x}");
            assert!(close(sinh(x), x.sinh(), 4e-15), "sinh {x}");
            assert!(close(cosh(x), x.cosh(), 4e-15), "cosh {x}");
            assert!(close(asinh(x), x.asinh(), 4e-15), "asinh {x}");
            let y = x.abs() * 1e3 + 1e-9;
            assert!(
                close(ln(y), y.ln(), 4e-15) || (ln(y) - y.ln()).abs() < 4e-15,
                "ln {y}"
            );
            let (a, b) = (x, (u * 7.0 - 3.0) * 1e2);
            assert!((atan2(a, b) - a.atan2(b)).abs() < 4e-15, "atan2 {a} {b}");
        }
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(ln(1.0), 0.0);
        assert!(close(exp(-740.0), (-740.0f64).exp(), 1e-10));
        assert!(close(ln(1e-310), (1e-310f64).ln(), 1e-15));
        assert_eq!(exp(800.0), f64::INFINITY);
        assert!(sin(1e300).is_nan());
        assert_eq!(atan2(1.0, 0.0), FRAC_PI_2);
        assert_eq!(atan2(0.0, -1.0), PI);
    }

    /// The same bits, or both NaN.
    fn same(a: f64, b: f64) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    /// Values of every kind: uniform over ±50 and ±2, random bit patterns (every exponent,
    /// subnormals, infinities and NaNs), and the edges of each function's branches.
    fn probe_values() -> Vec<f64> {
        let mut v = vec![
            0.0,
            -0.0,
            0.5,
            -0.5,
            0.125,
            -0.125,
            1e150,
            -1e150,
            1e9,
            -1e9,
            709.78,
            -745.0,
            710.0,
            -746.0,
            std::f64::consts::SQRT_2,
            f64::MIN_POSITIVE,
            5e-324,
            -5e-324,
            f64::MAX,
            f64::MIN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            1.0,
            -1.0,
            FRAC_PI_4,
            FRAC_PI_2,
            PI,
            -PI,
        ];
        for k in -8..=8 {
            // Exact multiples of π/4 and of ½ (the ties of the reductions).
            v.push(f64::from(k) * FRAC_PI_4);
            v.push(f64::from(k) * 0.5);
            v.push(f64::from(k) * LN_2 * 0.5);
        }
        let mut s = 11u64;
        for i in 0..60_000 {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (s >> 11) as f64 / (1u64 << 53) as f64;
            v.push(match i % 3 {
                0 => (u * 2.0 - 1.0) * 50.0,
                1 => (u * 2.0 - 1.0) * 2.0,
                _ => f64::from_bits(s),
            });
        }
        v
    }

    #[test]
    fn lane_functions_have_the_scalar_bits() {
        let v = probe_values();
        for &x in &v {
            assert!(
                same(round_half_away_lane(x), round_half_away(x)),
                "round {x:e}"
            );
            let (s, c) = sincos(x);
            let (sl, cl) = sincos_lane(x);
            assert!(same(sl, s) && same(cl, c), "sincos {x:e}");
            assert!(same(exp_lane(x), exp(x)), "exp {x:e}");
            assert!(same(ln_lane(x), ln(x)), "ln {x:e}");
            assert!(same(sinh_lane(x), sinh(x)), "sinh {x:e}");
            assert!(same(cosh_lane(x), cosh(x)), "cosh {x:e}");
            assert!(same(asinh_lane(x), asinh(x)), "asinh {x:e}");
        }
        for (i, &y) in v.iter().enumerate() {
            for x in [
                v[(i * 7 + 3) % v.len()],
                v[(i * 13 + 1) % v.len()],
                y,
                -y,
                0.0,
            ] {
                assert!(same(atan2_lane(y, x), atan2(y, x)), "atan2 {y:e} {x:e}");
            }
        }
    }

    #[test]
    fn formulas_over_slices_have_the_bits_of_one_value() {
        let v = probe_values();
        let n = v.len();
        let a = &v[..];
        let b: Vec<f64> = (0..n).map(|i| v[(i * 31 + 5) % n]).collect();
        let c: Vec<f64> = (0..n).map(|i| v[(i * 17 + 9) % n]).collect();
        let mut out = vec![0f64; n];
        for op in Op::ALL {
            if let Some(f) = op.factor_of_b() {
                assert!(op.factor_into(&b[..999], &mut out[..999]));
                assert!((0..999).all(|k| same(out[k], f(b[k]))), "{op:?}");
            } else {
                assert!(!op.factor_into(&b, &mut out));
            }
            // Odd lengths and offsets: the vector loop's tail. Every instruction set this CPU
            // has, each on its own.
            for (from, len) in [(0, n), (3, 1001), (7, 5)] {
                let (a, b, c) = (&a[from..], &b[from..], &c[from..]);
                let mut tiers = vec![("dispatch", out[..len].to_vec()), ("base", vec![0.0; len])];
                op.eval_into(a, b, c, &mut tiers[0].1);
                op.eval_into_body(a, b, c, &mut tiers[1].1);
                #[cfg(target_arch = "x86_64")]
                #[allow(unsafe_code)]
                {
                    if std::arch::is_x86_feature_detected!("avx2") {
                        let mut o = vec![0.0; len];
                        // SAFETY: the CPU supports AVX2, checked just above.
                        unsafe { op.eval_into_avx2(a, b, c, &mut o) };
                        tiers.push(("avx2", o));
                    }
                    if std::arch::is_x86_feature_detected!("avx512f") {
                        let mut o = vec![0.0; len];
                        // SAFETY: the CPU supports AVX-512F, checked just above.
                        unsafe { op.eval_into_avx512(a, b, c, &mut o) };
                        tiers.push(("avx512", o));
                    }
                }
                for (tier, out) in &tiers {
                    for k in 0..len {
                        let want = op.eval(a[k], b[k], c[k]);
                        assert!(
                            same(out[k], want),
                            "{op:?} {tier} {} {} {}",
                            a[k],
                            b[k],
                            c[k]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn features_round_trip_through_bytes() {
        let f = Feature {
            op: Op::Hypot3,
            args: vec![0, 4, 2],
            offset: 1.5,
            scale: 3.25,
        };
        let mut out = Vec::new();
        f.write(&mut out);
        let mut r = ByteReader::new(&out);
        assert_eq!(Feature::read(&mut r, 5).unwrap(), f);
        let mut r = ByteReader::new(&out);
        assert!(Feature::read(&mut r, 4).is_err());
    }
}
