//! Bit-exact coding of f32 columns as one stream of integers (format version 5): each value's
//! *value word* (its bits in value order, less the trailing zero bits every value of the
//! column has) minus a prediction of it, coded by the entropy stage, which fits bins or
//! magnitude tokens to the residuals (pcodec's binning and fpzip's residual coding are both
//! among its modes), optionally split by the magnitudes of neighbouring residuals.
//!
//! Layout after the transform byte (one of [`VALUE`], [`DELTA`], [`DELTA_REF`],
//! [`LORENZO_2`], [`LORENZO_3`], [`REF_BEFORE`], [`REF_AFTER`], [`LORENZO_3Q`], 4 to 11,
//! [`REF_REPEAT`], [`ROW_REPEAT`], [`MODEL`], [`LAG`], 12 to 15 (format version 8); or one of
//! them plus [`LOW_SPLIT`], 20 to 31 (20 to 27 from format version 7); or [`SIGMA`], 96 to 99
//! (format version 10: 96, plus 1 with low bits split off, plus 2 in segments)):
//!
//! `u8 shift`, [`u8 low` (1 to 8), for 20 to 31, 97 and 99 only], [`uvarint lag` (1 to the
//! column's length), for [`LAG`] only], [`f64 gain` (finite, positive; little-endian), for
//! [`SIGMA`] only], `u8 classes`, `classes − 1` threshold
//! bytes (non-decreasing), one `uvarint` count per class (adding up to the column's length),
//! then each non-empty class's codes as a [`CodeCoder`] stream, in class order; for 20 to 27,
//! then the `low` bits of every value just above the shift, as one more stream. From format
//! version 8, a column longer than [`STREAM_SEGMENT`] codes has [`SEGMENTED`] (32) added to its
//! transform byte (36 to 62), and each of its streams is coded as one [`CodeCoder`] stream per
//! `STREAM_SEGMENT` codes, the last one shorter. There the value
//! words (and the predictions' words) are taken at `shift + low`, and a value's bits are its
//! word's bits above `shift + low`, its low bits, then `shift` zeros: the low byte of a value
//! that went through a packed 16-bit variable or a unit conversion keeps a shape that raw bits
//! below a bin would lose.
//!
//! With `v(x)` the value word of `x` at the column's shift, the code of value `i` is `v(x[i])`
//! minus (wrapping, in 32 bits):
//!
//! | transform | prediction |
//! |---|---|
//! | value | 0 |
//! | delta | `v(x[i − 1])` (0 for the first) |
//! | delta from the reference | `v(ref[i])` (its low bits dropped at the shift) |
//! | the reference before | `v(ref[i − 1])` (0 for the first) |
//! | the reference after | `v(ref[i + 1])` (0 for the last) |
//! | Lorenzo, 2 axes | `v(F(0))`, with `F(b) = W + N − NW` taken `b` planes back |
//! | Lorenzo, 3 axes | `v(F(0) + (U − F(1)))` |
//! | Lorenzo, 3 axes, quadratic along planes | `v(F(0) + (2 (U − F(1)) − (UU − F(2))))` from the third plane on, as the 3-axis one on the second |
//! | the reference's repeat | `v(x[j])`, `j` the last row before `i` where `ref[j]` has the bits of `ref[i]` (0 where none) |
//! | the row's repeat | `v(x[j])`, `j` the last row before `i` with the same row key (0 where none) |
//! | the model | `v(f32(p[i]))`, `p` the learned model's predictions for the column (from the columns coded before, as the lossy path computes them), or in a section of kind 2 its relation's sums ([`crate::relation`]) |
//! | the lag | `v(x[i − lag])` (0 for the first `lag`) |
//! | the error plane | in the second half of the column, `v(f32(√(a·u + d)))` with `u = x[i − n/2]` and `d` the median of `x[j]² − a·x[j − n/2]` over the neighbours `j` whose `d` is finite — the row above's five values from two columns before to two after, on a plane's first row the value before — (the mean of the middle two of an even count; 0 where none; a prediction of 0 where `a·u + d` is not positive), in f64; in the first half, Lorenzo over 2 axes |
//!
//! A table's *row keys* ([`Reference::Column`](super::Reference::Column)) hash the bits of
//! every column coded before this one in the chunk: a row whose key recurs is (but for a
//! collision, which costs only a poor prediction) a copy of an earlier row so far, such as a
//! particle that Delphes lists again at each step of its history. The reference's repeat
//! catches what rows share one value of it (a production vertex, a sentinel).
//!
//! Lorenzo predictions (fpzip's, and a second-order one along the plane axis, for fields that
//! move smoothly in time) sum the neighbours along the row (W), the column (N) and the plane
//! axis (U, UU two planes back) in f64, terms outside the chunk being 0, in the order written,
//! and round the sum to f32; a sum that is not a number predicts 0. Every step is exact IEEE arithmetic, so
//! encoder and decoder compute the same prediction on every machine.
//!
//! The class of code `i` is the number of thresholds at most
//! `m = len(c[i − 1]) + len(c[i − s]) + len(c[i − u])`, where `len` is the bit length of a
//! code's zigzag form (0 for codes before the start): `s` is the row length for the Lorenzo
//! transforms and 2 otherwise, `u` the plane length for the 3-axis ones (the term is left out
//! otherwise). Smooth and busy regions of a field (or calm and wild stretches of a column) get
//! streams of their own. Under the two repeat transforms, `m` is 0 where row `i` has a row
//! `j` to repeat and `m + 1` elsewhere (so a threshold of 1 gives the repeated rows a class).

use crate::bytes::{ByteReader, DecodeResult, Malformed, put_uvarint};
use crate::entropy::{CodeCoder, read_context_counts};
use crate::predict::Grid;
use std::ops::Range;

use super::streams::{STREAM_SEGMENT, Streams};
use crate::disjoint::Disjoint;

/// Value words, no prediction.
pub(super) const VALUE: u8 = 4;
/// Value words less the previous value's.
pub(super) const DELTA: u8 = 5;
/// Value words less the reference column's.
pub(super) const DELTA_REF: u8 = 6;
/// Value words less their Lorenzo prediction along rows and columns.
pub(super) const LORENZO_2: u8 = 7;
/// Value words less their Lorenzo prediction along rows, columns and planes.
pub(super) const LORENZO_3: u8 = 8;
/// Value words less the reference column's one row before.
pub(super) const REF_BEFORE: u8 = 9;
/// Value words less the reference column's one row after.
pub(super) const REF_AFTER: u8 = 10;
/// Value words less a Lorenzo prediction along rows and columns, on top of the plane
/// extrapolated from the two planes before (a field that moves smoothly in time).
pub(super) const LORENZO_3Q: u8 = 11;

/// Value words less the word of the value in the last row before whose reference value has
/// the same bits (0 where no row before has it): a particle repeated from an earlier row of
/// an event record (Delphes copies a particle through its decay history).
pub(super) const REF_REPEAT: u8 = 12;
/// Value words less the word of the value in the last row before whose every column coded
/// before this one has the same bits (0 where none has): a whole particle copied from an
/// earlier row, where [`REF_REPEAT`] keys on the reference alone (a production vertex many
/// particles share, a sentinel).
pub(super) const ROW_REPEAT: u8 = 13;
/// Value words less the word of the learned model's prediction, rounded to f32 (the model's
/// predictions from the columns coded before, exactly as the lossy path computes them).
pub(super) const MODEL: u8 = 14;

/// Value words less the word of the value `lag` rows before (0 for the first `lag`), the lag
/// chosen per column (a table whose rows come in blocks, as an ICON grid's cells do).
pub(super) const LAG: u8 = 15;
/// Strips of [`ESTIMATE_STRIP`] codes each lag is estimated on (a long column's).
const LAG_STRIPS: usize = 2;
/// How far under [`DELTA`]'s the estimate must put a lag's bits for [`LAG`] to be priced.
const LAG_AHEAD: f64 = 0.97;
/// Lags tried for [`LAG`] (1 is [`DELTA`]).
const LAGS: [usize; 16] = [
    2, 3, 4, 5, 6, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192,
];

/// Value words less a prediction of the chunk's second half from its first, for a field of
/// two stacked variables (format version 10): in the second half, the square root of
/// `a·u + d`, with `u` the value half the chunk before and `d` the median of `x² − a·u` over
/// its neighbours in the row above ([`SIGMA_PLACES`]) — the error plane of a telescope
/// frame, whose variance is the science plane's counts times a gain `a` plus what varies
/// slowly across the frame (read noise, dark current, sky); in the first half, the 2-axis
/// Lorenzo prediction. Its transform bytes are [`SIGMA_BYTE`] and the next three.
pub(super) const SIGMA: u8 = 96;
/// The transform byte of [`SIGMA`]; plus 1 with the low bits split off ([`LOW_SPLIT`]), plus
/// 2 coded in segments ([`SEGMENTED`]). Its gain `a` (f64, little-endian, finite and
/// positive) follows the transform's header.
const SIGMA_BYTE: u8 = 96;

/// Added to a transform's id where the lowest bits of the values (above the shift) are coded
/// as a stream of their own ([`LOW_BITS`] of them) and the prediction works on the bits above.
pub(super) const LOW_SPLIT: u8 = 16;
/// Low bits split off where that pays: the low byte of a value that went through a packed
/// 16-bit netCDF variable or a unit conversion keeps a shape of its own.
const LOW_BITS: u32 = 8;

/// Added to a transform's id (format version 8) where every stream is coded in segments of
/// [`STREAM_SEGMENT`] codes (the last one shorter): set on columns longer than that, so the
/// entropy stage's scratch stays bounded by a segment, not the chunk.
pub(super) const SEGMENTED: u8 = 32;

/// The transform byte of transform `t`, its streams coded in segments or not, its low bits
/// split off or not.
fn id_byte(t: u8, segmented: bool, low: bool) -> u8 {
    if t == SIGMA {
        SIGMA_BYTE + u8::from(low) + 2 * u8::from(segmented)
    } else {
        t + if low { LOW_SPLIT } else { 0 } + if segmented { SEGMENTED } else { 0 }
    }
}

/// The transform, whether its streams are coded in segments and whether its low bits are
/// split off, of transform byte `b` (the inverse of [`id_byte`]; a byte no transform has
/// gives an id none has).
fn parse_id(b: u8) -> (u8, bool, bool) {
    if (SIGMA_BYTE..SIGMA_BYTE + 4).contains(&b) {
        let f = b - SIGMA_BYTE;
        return (SIGMA, f & 2 != 0, f & 1 != 0);
    }
    if b >= 64 {
        // Above every byte of the transforms below (LATTICE and up): none of them.
        return (b, false, false);
    }
    let (t, segmented) = if b >= SEGMENTED {
        (b - SEGMENTED, true)
    } else {
        (b, false)
    };
    if t >= VALUE + LOW_SPLIT {
        (t - LOW_SPLIT, segmented, true)
    } else {
        (t, segmented, false)
    }
}

/// The name of transform byte `b` (any of its segmented and low-split variants), on the
/// values or (`lattice`) on their lattice integers, for `baler info`; `None` for a byte no
/// transform has.
pub(super) fn name(b: u8, lattice: bool) -> Option<&'static str> {
    let (plain, on_lattice) = match parse_id(b).0 {
        VALUE => ("value", "lattice+value"),
        DELTA => ("delta", "lattice+delta"),
        DELTA_REF => ("delta-ref", "lattice+delta-ref"),
        LORENZO_2 => ("lorenzo-2d", "lattice+lorenzo-2d"),
        LORENZO_3 => ("lorenzo-3d", "lattice+lorenzo-3d"),
        REF_BEFORE => ("ref-before", "lattice+ref-before"),
        REF_AFTER => ("ref-after", "lattice+ref-after"),
        LORENZO_3Q => ("lorenzo-3d-moving", "lattice+lorenzo-3d-moving"),
        REF_REPEAT => ("ref-repeat", "lattice+ref-repeat"),
        ROW_REPEAT => ("row-repeat", "lattice+row-repeat"),
        MODEL => ("model", "lattice+model"),
        LAG => ("lag", "lattice+lag"),
        SIGMA => ("sigma", "lattice+sigma"),
        _ => return None,
    };
    Some(if lattice { on_lattice } else { plain })
}

/// Most classes a column's codes are split in.
const MAX_CLASSES: usize = 16;
/// Classes tried by the encoder where a column is long enough.
const CLASSES: usize = 8;
/// Columns shorter than this are coded as one stream.
const MIN_SPLIT: usize = 8192;
/// Largest shift (trailing zero bits dropped).
const MAX_SHIFT: u32 = 24;

/// Scratch of the integer coder.
#[derive(Debug, Default)]
pub(super) struct IntScratch {
    codes: Vec<i32>,
    /// For each row, one more than the last row before it with the same reference value
    /// ([`REF_REPEAT`]) or the same key ([`ROW_REPEAT`]), or 0.
    reps: [Vec<u32>; 2],
    /// The f32 bits of the model's predictions ([`MODEL`]).
    model_bits: Vec<u32>,
    split: Vec<Vec<i32>>,
    out_a: Vec<u8>,
    out_b: Vec<u8>,
    metric: Vec<u8>,
    sample: Vec<i32>,
    low: Vec<i32>,
    /// Codes and decodes the streams, segments on idle cores.
    pub(super) streams: Streams,
}

/// The value word of f32 bits `bits` at shift `k`: the bits above the shift, mapped to a signed
/// integer in value order (`−0.0` just below `+0.0`).
#[inline(always)]
fn word(bits: u32, k: u32) -> i32 {
    let w = 32 - k;
    let b = (bits >> k) as u64;
    let sign = 1u64 << (w - 1);
    let mask = (sign << 1) - 1;
    let o = if b & sign != 0 { !b & mask } else { b | sign };
    (o as i64 - sign as i64) as i32
}

/// The bits of value `i` from its value word `v` at shift `kw`, its low bits (where `low` has
/// them) put back above shift `k`.
#[inline(always)]
fn value_bits(v: i32, i: usize, (kw, k): (u32, u32), low: &[i32]) -> u32 {
    unword(v, kw) | low.get(i).map_or(0, |&b| (b as u32) << k)
}

/// The f32 bits of value word `v` at shift `k` (the inverse of [`word`] for bits whose low
/// `k` bits are 0; any `v` gives some bits).
#[inline(always)]
fn unword(v: i32, k: u32) -> u32 {
    let w = 32 - k;
    let sign = 1u64 << (w - 1);
    let mask = (sign << 1) - 1;
    let o = (v as i64 + sign as i64) as u64 & mask;
    let b = if o & sign != 0 { o & !sign } else { !o & mask };
    (b as u32) << k
}

/// The trailing zero bits every value of `col` has, at most [`MAX_SHIFT`].
pub(super) fn common_shift(col: &[f32]) -> u32 {
    let any = col.iter().fold(0u32, |a, v| a | v.to_bits());
    any.trailing_zeros().min(MAX_SHIFT)
}

/// The Lorenzo prediction of transform `t` for value `i` of `x` (at column `c` of row `r` of
/// its plane), from values before it, with rows of `row` values and planes of `plane`; terms
/// outside the chunk are 0.
#[inline(always)]
fn lorenzo(t: u8, x: &[f32], i: usize, (c, r): (usize, usize), row: usize, plane: usize) -> f32 {
    let (w, n) = (c > 0, r > 0);
    // `x[j]` where `ok`, else 0.
    #[inline(always)]
    fn get(x: &[f32], ok: bool, j: usize) -> f64 {
        if ok { f64::from(x[j]) } else { 0.0 }
    }
    // The 2-D prediction of the point `back` planes before (0 where that plane is outside the
    // chunk), and what that point leaves over it.
    #[inline(always)]
    fn flat(x: &[f32], i: usize, back: usize, w: bool, n: bool, row: usize, plane: usize) -> f64 {
        let u = i >= back * plane;
        let j = i.wrapping_sub(back * plane);
        get(x, w && u, j.wrapping_sub(1)) + get(x, n && u, j.wrapping_sub(row))
            - get(x, w && n && u, j.wrapping_sub(row + 1))
    }
    #[inline(always)]
    fn left(x: &[f32], i: usize, back: usize, w: bool, n: bool, row: usize, plane: usize) -> f64 {
        get(x, i >= back * plane, i.wrapping_sub(back * plane)) - flat(x, i, back, w, n, row, plane)
    }
    let here = flat(x, i, 0, w, n, row, plane);
    let p = match t {
        LORENZO_2 => here,
        LORENZO_3 => here + left(x, i, 1, w, n, row, plane),
        _ if i >= 2 * plane => {
            here + (2.0 * left(x, i, 1, w, n, row, plane) - left(x, i, 2, w, n, row, plane))
        }
        _ => here + left(x, i, 1, w, n, row, plane),
    };
    let p = p as f32;
    if p.is_nan() { 0.0 } else { p }
}

/// The row length, the plane length the walk counts rows in, and the half of a column of `n`
/// values on `grid` that [`SIGMA`] predicts across, or `None`: each half is whole rows, at
/// least two of them, and whole planes where the grid has planes that fit it.
fn sigma_axes(grid: Grid, n: usize) -> Option<(usize, usize, usize)> {
    let row = grid.row;
    if row < 2 || !n.is_multiple_of(2 * row) || n < 4 * row {
        return None;
    }
    let half = n / 2;
    let plane =
        if grid.plane >= row && grid.plane.is_multiple_of(row) && half.is_multiple_of(grid.plane) {
            grid.plane
        } else {
            half
        };
    Some((row, plane, half))
}

/// What a value `x` leaves over its first-half counterpart `u` under [`SIGMA`] with gain `a`:
/// `x² − a·u`, in f64 (the square of an f32 is exact).
#[inline(always)]
fn sigma_d(x: f32, u: f32, a: f64) -> f64 {
    let v = f64::from(x);
    v * v - a * f64::from(u)
}

/// Places [`SIGMA`] takes its neighbours' `d` from: in the row above, the columns from two
/// before to two after (a row's predictions depend on the row above alone, so the decoder
/// computes them all before it adds the codes); in a plane's first row, the value before.
const SIGMA_PLACES: usize = 5;

/// The [`SIGMA`] prediction of a value whose first-half counterpart is `u`, from the `d`
/// ([`sigma_d`]) of its neighbours, each where `has` says it exists: the square root of
/// `a·u` plus the median of the finite ones (the mean of the middle two of an even count; 0
/// where none), or 0 where that is not positive. Exact IEEE arithmetic in f64 throughout, so
/// encoder and decoder compute the same prediction on every machine.
#[inline(always)]
fn sigma_from(u: f32, a: f64, d: [f64; SIGMA_PLACES], has: [bool; SIGMA_PLACES]) -> f32 {
    let mid = if has == [true; SIGMA_PLACES] && d.iter().all(|v| v.is_finite()) {
        // The median of five, selected by comparisons (the value sorting would put third).
        let f = d[0].min(d[1]).max(d[2].min(d[3]));
        let g = d[0].max(d[1]).min(d[2].max(d[3]));
        d[4].min(f).max(d[4].max(f).min(g))
    } else {
        let mut ds = [0f64; SIGMA_PLACES];
        let mut k = 0;
        for (&v, &h) in d.iter().zip(&has) {
            if h && v.is_finite() {
                // Insertion in order (finite values: a total order).
                let mut at = k;
                while at > 0 && ds[at - 1] > v {
                    ds[at] = ds[at - 1];
                    at -= 1;
                }
                ds[at] = v;
                k += 1;
            }
        }
        match k {
            0 => 0.0,
            _ if k % 2 == 1 => ds[k / 2],
            _ => (ds[k / 2 - 1] + ds[k / 2]) * 0.5,
        }
    };
    // A median of ±0 adds nothing either way, so which zero a selection returns cannot
    // matter.
    let v = a * f64::from(u) + mid;
    if v > 0.0 { v.sqrt() as f32 } else { 0.0 }
}

/// Which of [`SIGMA_PLACES`] exist for a value at column `c` of row `r` of its plane (rows of
/// `row` values): the row above's columns `c − 2 ..= c + 2`, or on a plane's first row the
/// value before (the first place).
#[inline(always)]
fn sigma_has(c: usize, r: usize, row: usize) -> [bool; SIGMA_PLACES] {
    if r == 0 {
        [c > 0, false, false, false, false]
    } else {
        [c >= 2, c >= 1, true, c + 1 < row, c + 2 < row]
    }
}

/// The [`SIGMA`] prediction of value `i` of `x` (at column `c` of row `r` of its plane, rows
/// of `row` values, planes of `plane`, halves of `half`) with gain `a`, from values before
/// it: in the first half the 2-axis Lorenzo prediction, in the second [`sigma_from`] its
/// neighbours ([`sigma_has`]).
#[inline(always)]
fn sigma(
    x: &[f32],
    i: usize,
    (c, r): (usize, usize),
    row: usize,
    plane: usize,
    half: usize,
    a: f64,
) -> f32 {
    if i < half {
        return lorenzo(LORENZO_2, x, i, (c, r), row, plane);
    }
    let has = sigma_has(c, r, row);
    let d = sigma_near(has, |k| {
        // The value before on a first row; the row above's, two before to two after.
        let j = if r == 0 { i - 1 } else { i - row + k - 2 };
        sigma_d(x[j], x[j - half], a)
    });
    sigma_from(x[i - half], a, d, has)
}

/// The `d` of each of [`SIGMA_PLACES`] that `has` says exists, `d_at(place)`; 0 elsewhere.
#[inline(always)]
fn sigma_near(has: [bool; SIGMA_PLACES], d_at: impl Fn(usize) -> f64) -> [f64; SIGMA_PLACES] {
    std::array::from_fn(|k| if has[k] { d_at(k) } else { 0.0 })
}

/// Pairs of neighbours sampled for [`SIGMA`]'s gain.
const GAIN_SAMPLE: usize = 4096;

/// The gain `a` of [`SIGMA`] for `col` (halves of `half` values, rows of `row`), or `None`
/// where it has none: the median over sampled neighbours in a row of the second half of how
/// much the square of a value moves against its first-half counterpart, `Δ(x²) / Δu`, over the
/// half of the samples where `u` moves most (where the slowly varying part of the variance
/// moves least against it).
fn sigma_gain(col: &[f32], row: usize, half: usize) -> Option<f64> {
    let step = (half / GAIN_SAMPLE).max(1);
    let mut pairs: Vec<(f64, f64)> = (half..col.len())
        .step_by(step)
        .filter(|&i| !(i - half).is_multiple_of(row))
        .filter_map(|i| {
            let sq = |j: usize| f64::from(col[j]) * f64::from(col[j]);
            let du = f64::from(col[i - half]) - f64::from(col[i - half - 1]);
            let ratio = (sq(i) - sq(i - 1)) / du;
            (du != 0.0 && ratio.is_finite()).then_some((du.abs(), ratio))
        })
        .collect();
    if pairs.len() < 16 {
        return None;
    }
    pairs.sort_by(|p, q| q.0.total_cmp(&p.0));
    pairs.truncate(pairs.len() / 2);
    pairs.sort_by(|p, q| p.1.total_cmp(&q.1));
    let a = pairs[pairs.len() / 2].1;
    (a.is_finite() && a > 0.0).then_some(a)
}

/// The column and row within its plane of each value in turn, without dividing.
struct Walk {
    c: usize,
    r: usize,
    row: usize,
    rows: usize,
}

impl Walk {
    fn new(row: usize, plane: usize) -> Self {
        Self::at(0, row, plane)
    }

    /// Starting at value `i`.
    fn at(i: usize, row: usize, plane: usize) -> Self {
        Walk {
            c: i % row,
            r: i / row % (plane / row),
            row,
            rows: plane / row,
        }
    }

    /// The position of the next value.
    #[inline(always)]
    fn next(&mut self) -> (usize, usize) {
        let at = (self.c, self.r);
        self.c += 1;
        if self.c == self.row {
            self.c = 0;
            self.r += 1;
            if self.r == self.rows {
                self.r = 0;
            }
        }
        at
    }
}

/// For each row `i`, one more than the last row before it with the same key, or 0 where none
/// has, into `out`: the keys are `keys` (a hash of every column coded before, see
/// [`Reference::Column`](super::Reference::Column): [`ROW_REPEAT`]) where given, else the
/// bits of the reference `r` ([`REF_REPEAT`]).
fn repeats(r: &[f32], keys: &[u64], out: &mut Vec<u32>) {
    out.clear();
    let n = r.len();
    let key_of = |i: usize| keys.get(i).copied().unwrap_or(u64::from(r[i].to_bits()));
    let bits = (2 * n).max(2).next_power_of_two().trailing_zeros();
    let mut table = vec![0u64; 1 << bits];
    let mut rows = vec![0u32; 1 << bits];
    let mask = (1usize << bits) - 1;
    out.extend((0..n).map(|i| {
        let key = key_of(i);
        let mut h = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize;
        while rows[h] != 0 && table[h] != key {
            h = (h + 1) & mask;
        }
        let last = rows[h];
        table[h] = key;
        rows[h] = i as u32 + 1;
        last
    }));
}

/// The row and plane lengths a Lorenzo transform `t` needs on `grid` for `n` values, or `None`.
fn lorenzo_axes(t: u8, grid: Grid, n: usize) -> Option<(usize, usize)> {
    let row = grid.row;
    if row < 2 || !n.is_multiple_of(row) || n < 2 * row {
        return None;
    }
    match t {
        LORENZO_2 => Some((
            row,
            if grid.plane >= row && grid.plane.is_multiple_of(row) {
                grid.plane
            } else {
                n
            },
        )),
        LORENZO_3 | LORENZO_3Q => {
            let plane = grid.plane;
            (plane > row && plane.is_multiple_of(row) && n.is_multiple_of(plane) && n >= 2 * plane)
                .then_some((row, plane))
        }
        _ => None,
    }
}

/// The value word a reference transform `t` subtracts from value `i`: the reference's value
/// at `i`, `i − 1` or `i + 1` (0 beyond its ends).
#[inline(always)]
fn ref_word(t: u8, r: &[f32], i: usize, k: u32) -> i32 {
    let j = match t {
        REF_BEFORE => i.wrapping_sub(1),
        REF_AFTER => i + 1,
        _ => i,
    };
    r.get(j).map_or(0, |v| word(v.to_bits(), k))
}

/// The codes of values `range` of `col` under transform `t` at shift `k`, appended to
/// `codes` (each code depends on `col` alone, so a range's codes are those of the whole).
#[allow(clippy::too_many_arguments)]
fn transform(
    t: u8,
    col: &[f32],
    reference: Option<&[f32]>,
    reps: &[u32],
    grid: Grid,
    k: u32,
    range: Range<usize>,
    codes: &mut Vec<i32>,
) {
    let start = range.start;
    match t {
        MODEL => {
            codes.extend(range.map(|i| word(col[i].to_bits(), k).wrapping_sub(word(reps[i], k))))
        }
        REF_REPEAT | ROW_REPEAT => codes.extend(range.map(|i| {
            let p = reps[i]
                .checked_sub(1)
                .map_or(0, |j| word(col[j as usize].to_bits(), k));
            word(col[i].to_bits(), k).wrapping_sub(p)
        })),
        VALUE => codes.extend(col[range].iter().map(|v| word(v.to_bits(), k))),
        LAG => {
            let lag = reps[0] as usize;
            codes.extend(range.map(|i| {
                let p = i.checked_sub(lag).map_or(0, |j| word(col[j].to_bits(), k));
                word(col[i].to_bits(), k).wrapping_sub(p)
            }))
        }
        DELTA => {
            let mut prev = start
                .checked_sub(1)
                .map_or(0, |j| word(col[j].to_bits(), k));
            codes.extend(col[range].iter().map(|v| {
                let w = word(v.to_bits(), k);
                let c = w.wrapping_sub(prev);
                prev = w;
                c
            }));
        }
        DELTA_REF | REF_BEFORE | REF_AFTER => {
            let r = reference.expect("a reference column");
            codes.extend(
                range.map(|i| word(col[i].to_bits(), k).wrapping_sub(ref_word(t, r, i, k))),
            );
        }
        SIGMA => {
            let (row, plane, half) = sigma_axes(grid, col.len()).expect("checked axes");
            let a = gain_of(reps);
            let mut walk = Walk::at(start, row, plane);
            codes.extend(range.map(|i| {
                let p = sigma(col, i, walk.next(), row, plane, half, a);
                word(col[i].to_bits(), k).wrapping_sub(word(p.to_bits(), k))
            }));
        }
        LORENZO_2 | LORENZO_3 | LORENZO_3Q => {
            let (row, plane) = lorenzo_axes(t, grid, col.len()).expect("checked axes");
            let mut walk = Walk::at(start, row, plane);
            codes.extend(range.map(|i| {
                let p = lorenzo(t, col, i, walk.next(), row, plane);
                word(col[i].to_bits(), k).wrapping_sub(word(p.to_bits(), k))
            }));
        }
        _ => unreachable!("unknown integer transform"),
    }
}

/// Bit length of the zigzag form of `c`.
#[inline(always)]
fn zlen(c: i32) -> u8 {
    let z = ((c << 1) ^ (c >> 31)) as u32;
    (32 - z.leading_zeros()) as u8
}

/// The context metric of code `i`: the bit lengths of the codes one, `s` and (where `u > 0`)
/// `u` places before it, added.
#[inline(always)]
fn metric(codes: &[i32], i: usize, (s, u): (usize, usize)) -> u8 {
    let len = |d: usize| {
        if d > 0 && i >= d {
            zlen(codes[i - d])
        } else {
            0
        }
    };
    len(1) + len(s) + len(u)
}

/// The context metric of every code, into `out`; under the repeat transforms (`reps` not
/// empty),
/// 0 where the row repeats its reference's value, one more than the metric elsewhere.
fn metrics(codes: &[i32], strides: (usize, usize), reps: &[u32], out: &mut Vec<u8>) {
    out.clear();
    out.extend((0..codes.len()).map(|i| repeat_metric(metric(codes, i, strides), reps, i)));
}

/// The class metric `m` of row `i` under a repeat transform (where `reps` is not empty).
#[inline(always)]
fn repeat_metric(m: u8, reps: &[u32], i: usize) -> u8 {
    match reps.get(i) {
        None => m,
        Some(0) => m.saturating_add(1),
        Some(_) => 0,
    }
}

/// The strides of the neighbours of the class metric for transform `t`: the row before (and
/// the plane before, for the 3-axis transforms) on a field, two values before otherwise.
fn neighbours(t: u8, grid: Grid) -> (usize, usize) {
    match t {
        LORENZO_2 | SIGMA => (grid.row, 0),
        LORENZO_3 | LORENZO_3Q => (grid.row, grid.plane),
        _ => (2, 0),
    }
}

/// The thresholds the encoder splits `metric` by: [`thresholds`], and under a repeat
/// transform (`reps` not empty) the repeated rows (metric 0) in a class of their own.
fn class_thresholds(metric: &[u8], classes: usize, reps: &[u32]) -> Vec<u8> {
    let mut th = thresholds(metric, classes);
    if !reps.is_empty() && th.first() != Some(&1) {
        th.insert(0, 1);
    }
    th
}

/// Thresholds splitting `metric` in about `classes` classes of equal size.
fn thresholds(metric: &[u8], classes: usize) -> Vec<u8> {
    let mut hist = [0usize; 256];
    for &m in metric {
        hist[m as usize] += 1;
    }
    let n = metric.len();
    let mut out = Vec::with_capacity(classes - 1);
    let mut acc = 0usize;
    for (m, &h) in hist.iter().enumerate() {
        acc += h;
        // A threshold after `m` where the running count passes the next quantile and values
        // remain above it.
        if out.len() < classes - 1 && acc < n && acc * classes >= n * (out.len() + 1) {
            out.push(m as u8 + 1);
        }
    }
    out
}

#[inline(always)]
fn class_of(m: u8, thresholds: &[u8]) -> usize {
    thresholds.iter().take_while(|&&t| t <= m).count()
}

/// Writes `codes` split by `thresholds` (none: one stream).
fn write_streams(
    codes: &[i32],
    metric: &[u8],
    thresholds: &[u8],
    (coder, streams): (&mut CodeCoder, &mut Streams),
    split: &mut Vec<Vec<i32>>,
    out: &mut Vec<u8>,
) {
    let segmented = codes.len() > STREAM_SEGMENT;
    out.push(thresholds.len() as u8 + 1);
    out.extend_from_slice(thresholds);
    if thresholds.is_empty() {
        put_uvarint(out, codes.len() as u64);
        streams.encode(&[codes], segmented, coder, out);
        return;
    }
    split.resize_with(thresholds.len() + 1, Vec::new);
    for s in split.iter_mut() {
        s.clear();
    }
    for (&c, &m) in codes.iter().zip(metric) {
        split[class_of(m, thresholds)].push(c);
    }
    for s in split.iter().take(thresholds.len() + 1) {
        put_uvarint(out, s.len() as u64);
    }
    let classes: Vec<&[i32]> = split
        .iter()
        .take(thresholds.len() + 1)
        .filter(|s| !s.is_empty())
        .map(|s| &s[..])
        .collect();
    streams.encode(&classes, segmented, coder, out);
}

/// A quick estimate of what [`CodeCoder`] spends on `codes`, in bits: the order-0 entropy of
/// their magnitude tokens (sign, bit length and the two bits below the leading one) plus the
/// raw bits below those. It cannot see exact repeats, so it only rules out transforms.
fn estimate(codes: &[i32]) -> f64 {
    let mut hist = [0u32; 2 * 33 * 4];
    let mut raw = 0u64;
    for &c in codes {
        let a = c.unsigned_abs();
        let len = 32 - a.leading_zeros();
        let (top, extra) = if len > 3 {
            ((a >> (len - 3)) & 3, len - 3)
        } else {
            (a & 3, 0)
        };
        raw += u64::from(extra);
        hist[((len as usize * 2 + usize::from(c < 0)) << 2) | top as usize] += 1;
    }
    let n = codes.len() as f64;
    let mut bits = raw as f64;
    for &h in hist.iter().filter(|&&h| h > 0) {
        bits += f64::from(h) * (n / f64::from(h)).log2();
    }
    bits
}

/// Whether splitting `codes` by `thresholds` of `metric` is estimated ([`estimate`]) to save
/// at least 1%, each class charged [`CLASS_BITS`].
fn classes_pay(codes: &[i32], metric: &[u8], thresholds: &[u8], split: &mut Vec<Vec<i32>>) -> bool {
    split.resize_with(thresholds.len() + 1, Vec::new);
    for s in split.iter_mut() {
        s.clear();
    }
    for (&c, &m) in codes.iter().zip(metric) {
        split[class_of(m, thresholds)].push(c);
    }
    let classes: f64 = split
        .iter()
        .take(thresholds.len() + 1)
        .map(|s| estimate(s) + CLASS_BITS)
        .sum();
    classes < 0.99 * estimate(codes)
}

/// What a class's stream costs besides its codes, about (its mode and table), in bits.
const CLASS_BITS: f64 = 2000.0;

/// Rows sampled for a lag's repeats ([`candidates`]).
const LAG_SAMPLE: usize = 512;

/// Transforms are priced exactly only where [`estimate`] puts them within this factor of the
/// best estimate.
const PRICE_WITHIN: f64 = 1.25;

/// Codes priced per strip where a column is longer than [`PRICE_STRIPS`] of them.
const PRICE_STRIP: usize = 1024;
const PRICE_STRIPS: usize = 4;
/// Codes per strip, and candidates, priced again where the first prices come within a tenth.
const RETRY_STRIP: usize = 4096;
const RETRY_COUNT: usize = 3;
/// How far ahead the estimate must put a transform the strips priced dearer for both to be
/// priced again on longer strips.
const ESTIMATE_AHEAD: f64 = 0.9;
/// Bits per code below which the first prices are checked so.
const RETRY_BITS: usize = 12;

/// Strip `r` of a column of `n` values moved past the column's first `lag` values where it
/// starts among them and is not the whole column (which [`LAG`] codes whole).
fn past_lag(r: &Range<usize>, lag: usize, n: usize) -> Range<usize> {
    if r.len() < n && r.start < lag && r.end + lag <= n {
        r.start + lag..r.end + lag
    } else {
        r.clone()
    }
}

/// Evenly spaced strips of `len` values of a column of `n`, `count` of them, or the whole
/// column where it is shorter than twice that.
fn strips(n: usize, count: usize, len: usize) -> Vec<Range<usize>> {
    if n > 2 * count * len {
        let gap = n / count;
        (0..count).map(|j| j * gap..j * gap + len).collect()
    } else {
        std::iter::once(0..n).collect()
    }
}

/// Values whose codes [`estimate`] measures in a long column: 16 strips of 4096.
const ESTIMATE_STRIP: usize = 4096;
const ESTIMATE_STRIPS: usize = 16;

/// What [`CodeCoder`] spends on `codes`, in bytes: exact pricing (of the strips
/// [`PRICE_STRIPS`] of [`PRICE_STRIP`] codes, for a long column), since no quick estimate sees
/// both magnitudes and the exact repeats (sentinels, masses, energies of a decay) that bins
/// catch.
fn price(codes: &[i32], coder: &mut CodeCoder, out: &mut Vec<u8>) -> usize {
    out.clear();
    coder.encode(codes, out);
    out.len()
}

/// The integer transforms that apply to a column of `n` values.
fn candidates(
    col: &[f32],
    reference: Option<&[f32]>,
    keys: &[u64],
    grid: Grid,
    reps: &mut [Vec<u32>; 2],
) -> Vec<u8> {
    let n = col.len();
    let mut t = vec![VALUE, DELTA];
    for r in reps.iter_mut() {
        r.clear();
    }
    if let Some(r) = reference {
        t.push(DELTA_REF);
        // Rows repeated from an earlier one: tried where at least one sampled row in 32
        // repeats the key and its own value from the same row.
        let step = (n / LAG_SAMPLE).max(1);
        for (id, keys) in [(REF_REPEAT, &[][..]), (ROW_REPEAT, keys)] {
            if id == ROW_REPEAT && keys.is_empty() {
                continue;
            }
            let reps = &mut reps[usize::from(id - REF_REPEAT)];
            repeats(r, keys, reps);
            let (mut rows, mut hits) = (0usize, 0usize);
            for i in (0..n).step_by(step) {
                rows += 1;
                hits += usize::from(
                    reps[i]
                        .checked_sub(1)
                        .is_some_and(|j| col[j as usize].to_bits() == col[i].to_bits()),
                );
            }
            if hits * 32 >= rows && hits > 0 {
                t.push(id);
            }
        }
        // A lag pays where values recur one row over (a chain of steps): tried where at least
        // one sampled row in 16 is such a repeat.
        let step = (n / LAG_SAMPLE).max(1);
        for (lag, d) in [(REF_BEFORE, -1isize), (REF_AFTER, 1)] {
            let (mut rows, mut hits) = (0usize, 0usize);
            for i in (1..n.saturating_sub(1)).step_by(step) {
                rows += 1;
                hits += usize::from(col[i].to_bits() == r[i.wrapping_add_signed(d)].to_bits());
            }
            if hits * 16 >= rows && hits > 0 {
                t.push(lag);
            }
        }
    }
    for l in [LORENZO_2, LORENZO_3, LORENZO_3Q] {
        if lorenzo_axes(l, grid, n).is_some() {
            t.push(l);
        }
    }
    t
}

/// Whether transform byte `t` (with any of [`LOW_SPLIT`] and [`SEGMENTED`] added) is
/// [`MODEL`].
pub(super) fn predicts_by_model(t: u8) -> bool {
    parse_id(t).0 == MODEL
}

/// [`SIGMA`]'s gain from its side words (the f64's bits, low word first).
fn gain_of(side: &[u32]) -> f64 {
    f64::from_bits(u64::from(side[0]) | u64::from(side[1]) << 32)
}

/// What transform `t` predicts from besides the column: the repeated rows of the repeat
/// transforms, the f32 bits of the model's predictions for [`MODEL`], the lag (one value) for
/// [`LAG`], the gain's bits for [`SIGMA`] ([`gain_of`]; empty for the others).
fn side_of<'a>(
    t: u8,
    reps: &'a [Vec<u32>; 2],
    model_bits: &'a [u32],
    lag: &'a [u32; 1],
    gain: &'a [u32; 2],
) -> &'a [u32] {
    match t {
        REF_REPEAT | ROW_REPEAT => &reps[usize::from(t - REF_REPEAT)],
        MODEL => model_bits,
        LAG => lag,
        SIGMA => gain,
        _ => &[],
    }
}

/// Appends the integer coding of `col` to `out` (transform byte first): the transform
/// estimated cheapest, as one stream or split in classes, whichever is smaller.
#[allow(clippy::too_many_arguments)]
pub(super) fn encode(
    col: &[f32],
    reference: Option<&[f32]>,
    keys: &[u64],
    model: Option<&[f64]>,
    grid: Grid,
    coder: &mut CodeCoder,
    s: &mut IntScratch,
    out: &mut Vec<u8>,
) {
    let start = out.len();
    let k = common_shift(col);
    coder.allow_binned(true);
    // Transforms whose magnitudes alone promise clearly more bits than the best's are not
    // priced.
    // Only strips of a long column are transformed to choose: the whole once, at the end.
    let n = col.len();
    let mut reps = std::mem::take(&mut s.reps);
    let mut ts = candidates(col, reference, keys, grid, &mut reps);
    let mut model_bits = std::mem::take(&mut s.model_bits);
    model_bits.clear();
    if let Some(p) = model.filter(|p| p.len() == n) {
        model_bits.extend(p.iter().map(|&x| (x as f32).to_bits()));
        ts.push(MODEL);
    }
    let measured = strips(n, ESTIMATE_STRIPS, ESTIMATE_STRIP);
    let priced = strips(n, PRICE_STRIPS, PRICE_STRIP);
    // The lag whose codes the estimate puts lowest, a candidate with the others where it
    // promises clearly fewer bits than the value before (lag 1, [`DELTA`]); not on a field's
    // grid, whose rows and planes the Lorenzo transforms see.
    let mut lag = [0u32; 1];
    if grid.row == 0 {
        let lag_strips = strips(n, LAG_STRIPS, ESTIMATE_STRIP);
        let per_code = |l: usize, codes: &mut Vec<i32>| {
            codes.clear();
            for r in &lag_strips {
                let r = if r.len() == n {
                    l..n
                } else {
                    past_lag(r, l, n)
                };
                transform(LAG, col, None, &[l as u32], grid, k, r, codes);
            }
            estimate(codes) / codes.len().max(1) as f64
        };
        let mut best_lag = LAG_AHEAD * per_code(1, &mut s.codes);
        for &l in LAGS.iter().filter(|&&l| 2 * l <= n) {
            let e = per_code(l, &mut s.codes);
            if e < best_lag {
                (best_lag, lag[0]) = (e, l as u32);
            }
        }
    }
    if lag[0] > 0 {
        ts.push(LAG);
    }
    // Two stacked variables: the second predicted from the first where it has a gain.
    let mut gain = [0u32; 2];
    if let Some(a) = sigma_axes(grid, n).and_then(|(row, _, half)| sigma_gain(col, row, half)) {
        let b = a.to_bits();
        gain = [b as u32, (b >> 32) as u32];
        ts.push(SIGMA);
    }
    let sampled = |t: u8, k: u32, ranges: &[Range<usize>], codes: &mut Vec<i32>| {
        codes.clear();
        for r in ranges {
            // A strip at the start of the column would charge a lag its first values whole.
            let r = if t == LAG {
                past_lag(r, lag[0] as usize, n)
            } else {
                r.clone()
            };
            transform(
                t,
                col,
                reference,
                side_of(t, &reps, &model_bits, &lag, &gain),
                grid,
                k,
                r,
                codes,
            );
        }
    };
    let mut estimates = Vec::with_capacity(ts.len());
    for &t in &ts {
        sampled(t, k, &measured, &mut s.codes);
        estimates.push(estimate(&s.codes));
    }
    let least = estimates.iter().copied().fold(f64::INFINITY, f64::min);
    let mut prices = Vec::with_capacity(ts.len());
    for (&t, &e) in ts.iter().zip(&estimates) {
        if priced.len() > 1 && e > PRICE_WITHIN * least {
            continue;
        }
        sampled(t, k, &priced, &mut s.codes);
        prices.push((price(&s.codes, coder, &mut s.out_b), t));
    }
    // Stable: the first of equal prices wins, in candidate order.
    prices.sort_by_key(|p| p.0);
    let mut best = prices[0];
    // On a long column of cheap codes, where the tables weigh most against the codes, the
    // runners-up within a tenth are priced again on longer strips (X, Y, Z of a particle's
    // vertex: Delphes 2.26 -> 2.29).
    let wider = strips(n, PRICE_STRIPS, RETRY_STRIP);
    let codes_priced: usize = priced.iter().map(|r| r.len()).sum();
    if priced.len() > 1
        && prices.len() > 1
        && prices[1].0 * 10 <= prices[0].0 * 11
        && 8 * prices[0].0 <= RETRY_BITS * codes_priced
    {
        let mut again = (usize::MAX, VALUE);
        for &(bytes, t) in prices.iter().take(RETRY_COUNT) {
            if bytes * 10 > prices[0].0 * 11 {
                break;
            }
            sampled(t, k, &wider, &mut s.codes);
            let bytes = price(&s.codes, coder, &mut s.out_b);
            if bytes < again.0 {
                again = (bytes, t);
            }
        }
        best = again;
    }
    // Where the estimate over the whole sample puts another transform clearly ahead of the
    // one the strips priced cheapest (a structure the strips miss: an ICON column whose
    // blocks of 1024 cells repeat, 51.0 -> 41.3 kB), both are priced again on longer strips.
    let (&est_t, &est) = ts
        .iter()
        .zip(&estimates)
        .min_by(|a, b| a.1.total_cmp(b.1))
        .expect("candidates");
    let best_est = ts
        .iter()
        .zip(&estimates)
        .find(|&(&t, _)| t == best.1)
        .map_or(f64::INFINITY, |(_, &e)| e);
    if priced.len() > 1 && est_t != best.1 && est < ESTIMATE_AHEAD * best_est {
        for t in [best.1, est_t] {
            sampled(t, k, &wider, &mut s.codes);
            let bytes = price(&s.codes, coder, &mut s.out_b);
            if t == best.1 || bytes < best.0 {
                best = (bytes, t);
            }
        }
    }
    let t = best.1;
    // The rows that repeat, for the classes of REF_REPEAT.
    let class_reps = match t {
        REF_REPEAT | ROW_REPEAT => side_of(t, &reps, &model_bits, &lag, &gain),
        _ => &[],
    };
    // The transform's parameter, written after its header: the lag, the gain.
    let mut param = Vec::new();
    match t {
        LAG => put_uvarint(&mut param, u64::from(lag[0])),
        SIGMA => param.extend_from_slice(&gain_of(&gain).to_le_bytes()),
        _ => {}
    }
    sampled(t, k, std::slice::from_ref(&(0..n)), &mut s.codes);
    write_body(
        t,
        &param,
        k,
        0,
        &s.codes,
        &[],
        class_reps,
        grid,
        (coder, &mut s.streams),
        &mut s.split,
        &mut s.metric,
        &mut s.out_b,
        out,
    );
    // The same prediction above the low byte, the low byte coded apart, where its price on
    // the strips comes near: both coded, the smaller kept.
    // Tried on fields (the Lorenzo residuals above the low byte are narrower, which pays even
    // where the low byte is noise: CFD decay +1.5%) and where the low byte has a shape.
    if k + LOW_BITS < 31 && {
        low_codes(col, k, LOW_BITS, &mut s.low);
        matches!(t, LORENZO_2 | LORENZO_3 | LORENZO_3Q | SIGMA) || low_has_shape(&s.low)
    } {
        sampled(t, k + LOW_BITS, &priced, &mut s.codes);
        let high = price(&s.codes, coder, &mut s.out_b);
        s.sample.clear();
        for r in &priced {
            s.sample.extend_from_slice(&s.low[r.clone()]);
        }
        let low = price(&s.sample, coder, &mut s.out_b);
        if (high + low) * 50 < best.0 * 51 {
            sampled(t, k + LOW_BITS, std::slice::from_ref(&(0..n)), &mut s.codes);
            s.out_a.clear();
            write_body(
                t,
                &param,
                k,
                LOW_BITS,
                &s.codes,
                &s.low,
                class_reps,
                grid,
                (coder, &mut s.streams),
                &mut s.split,
                &mut s.metric,
                &mut s.out_b,
                &mut s.out_a,
            );
            if s.out_a.len() < out.len() - start {
                out.truncate(start);
                out.extend_from_slice(&s.out_a);
            }
        }
    }
    coder.allow_binned(false);
    s.reps = reps;
    s.model_bits = model_bits;
}

/// Appends the body of transform `t` (its parameter `param`: [`LAG`]'s lag, [`SIGMA`]'s gain)
/// at shift `k` with `low_bits` split off: its header bytes, `param`,
/// `codes` as one stream or in classes (whichever is smaller, classes coded only where
/// [`classes_pay`]), then the `low` bits' stream. `tmp` is scratch.
#[allow(clippy::too_many_arguments)]
fn write_body(
    t: u8,
    param: &[u8],
    k: u32,
    low_bits: u32,
    codes: &[i32],
    low: &[i32],
    reps: &[u32],
    grid: Grid,
    (coder, streams): (&mut CodeCoder, &mut Streams),
    split: &mut Vec<Vec<i32>>,
    metric: &mut Vec<u8>,
    tmp: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    let segmented = codes.len() > STREAM_SEGMENT;
    let id = id_byte(t, segmented, low_bits > 0);
    if low_bits > 0 {
        out.extend_from_slice(&[id, k as u8, low_bits as u8]);
    } else {
        out.extend_from_slice(&[id, k as u8]);
    }
    out.extend_from_slice(param);
    let start = out.len();
    write_streams(codes, &[], &[], (&mut *coder, &mut *streams), split, out);
    if codes.len() >= MIN_SPLIT {
        metrics(codes, neighbours(t, grid), reps, metric);
        let th = class_thresholds(metric, CLASSES, reps);
        // Coded in classes too where their magnitudes promise a saving.
        if !th.is_empty() && classes_pay(codes, metric, &th, split) {
            tmp.clear();
            write_streams(codes, metric, &th, (&mut *coder, &mut *streams), split, tmp);
            if tmp.len() < out.len() - start {
                out.truncate(start);
                out.extend_from_slice(tmp);
            }
        }
    }
    if low_bits > 0 {
        streams.encode(&[low], segmented, coder, out);
    }
}

/// Whether low bytes `low` are far from uniform: an order-0 entropy a quarter of a bit under
/// 8 bits (the low byte of noisy measurements is uniform, and splitting it off cannot pay).
fn low_has_shape(low: &[i32]) -> bool {
    let mut hist = [0u32; 1 << LOW_BITS];
    for &b in low {
        hist[b as usize] += 1;
    }
    let n = low.len() as f64;
    let bits: f64 = hist
        .iter()
        .filter(|&&h| h > 0)
        .map(|&h| f64::from(h) * (n / f64::from(h)).log2())
        .sum();
    bits < (f64::from(LOW_BITS) - 0.25) * n
}

/// The `l` bits of each value of `col` above its shift `k`, into `low`.
fn low_codes(col: &[f32], k: u32, l: u32, low: &mut Vec<i32>) {
    low.clear();
    low.extend(
        col.iter()
            .map(|v| ((v.to_bits() >> k) & ((1 << l) - 1)) as i32),
    );
}

/// Decodes `out.len()` values written by [`encode`] with transform `t` (already read).
#[allow(clippy::too_many_arguments)]
pub(super) fn decode(
    t: u8,
    r: &mut ByteReader<'_>,
    reference: Option<&[f32]>,
    keys: &[u64],
    model: Option<&[f64]>,
    grid: Grid,
    coder: &mut CodeCoder,
    s: &mut IntScratch,
    out: &mut [f32],
) -> DecodeResult<()> {
    let n = out.len();
    let (t, segmented, low) = parse_id(t);
    let k = u32::from(r.u8()?);
    if k > MAX_SHIFT {
        return Err(Malformed(format!("lossless shift {k} above {MAX_SHIFT}")));
    }
    let low_bits = if low {
        let l = u32::from(r.u8()?);
        if !(1..=LOW_BITS).contains(&l) || k + l >= 31 {
            return Err(Malformed(format!("{l} low bits split off at shift {k}")));
        }
        l
    } else {
        0
    };
    // Value words are taken above the low bits.
    let kw = k + low_bits;
    let lag = if t == LAG {
        match r.uvarint_max(n as u64, "lossless lag")? {
            0 => return Err(Malformed::new("lossless lag 0")),
            l => l,
        }
    } else {
        0
    };
    let axes = match t {
        VALUE | DELTA | LAG => None,
        DELTA_REF | REF_BEFORE | REF_AFTER | REF_REPEAT | ROW_REPEAT => {
            match reference {
                Some(c) if c.len() == n && (t != ROW_REPEAT || keys.len() == n) => {}
                _ => {
                    return Err(Malformed::new(
                        "lossless transform needs a reference column that does not exist",
                    ));
                }
            }
            None
        }
        MODEL => {
            if model.is_none_or(|p| p.len() != n) {
                return Err(Malformed::new(
                    "lossless transform needs the model's predictions for a column it does \
                     not predict",
                ));
            }
            None
        }
        LORENZO_2 | LORENZO_3 | LORENZO_3Q => Some(lorenzo_axes(t, grid, n).ok_or_else(|| {
            Malformed::new("Lorenzo transform on a column that is not whole rows or planes")
        })?),
        SIGMA => {
            sigma_axes(grid, n).ok_or_else(|| {
                Malformed::new("error-plane transform on a column that is not two halves of rows")
            })?;
            None
        }
        _ => return Err(Malformed(format!("unknown lossless transform {t}"))),
    };
    let gain = if t == SIGMA {
        let a = r.f64()?;
        if !(a.is_finite() && a > 0.0) {
            return Err(Malformed(format!("error-plane gain {a}")));
        }
        a
    } else {
        0.0
    };
    let classes = r.u8()? as usize;
    if !(1..=MAX_CLASSES).contains(&classes) {
        return Err(Malformed(format!("{classes} lossless classes")));
    }
    let th = r.bytes(classes - 1)?;
    if th.windows(2).any(|w| w[0] > w[1]) {
        return Err(Malformed::new("lossless class thresholds out of order"));
    }
    let mut counts = [0usize; MAX_CLASSES];
    read_context_counts(r, n, &mut counts[..classes])?;
    s.split.resize_with(classes.max(s.split.len()), Vec::new);
    let split = (&counts[..classes], &mut s.split[..classes]);
    s.streams.decode(r, split, segmented, coder)?;
    let reps = &mut s.reps[0];
    reps.clear();
    if t == REF_REPEAT || t == ROW_REPEAT {
        let keys = if t == ROW_REPEAT { keys } else { &[] };
        repeats(reference.expect("checked"), keys, reps);
    }
    let reps = &s.reps[0];
    // The codes in value order.
    let codes = &mut s.codes;
    codes.clear();
    if classes == 1 {
        std::mem::swap(codes, &mut s.split[0]);
    } else {
        let (sa, sb) = neighbours(t, grid);
        // The class of every metric, and the codes' bit lengths as they come.
        let mut class = [0u8; 256];
        for (m, c) in class.iter_mut().enumerate() {
            *c = class_of(m as u8, th) as u8;
        }
        let lens = &mut s.metric;
        lens.clear();
        let mut next = [0usize; MAX_CLASSES];
        for i in 0..n {
            let len = |d: usize| if d > 0 && i >= d { lens[i - d] } else { 0 };
            let m = repeat_metric(len(1) + len(sa) + len(sb), reps, i);
            let j = class[usize::from(m)] as usize;
            let c = *s.split[j]
                .get(next[j])
                .ok_or_else(|| Malformed::new("a lossless class ran out of codes"))?;
            next[j] += 1;
            codes.push(c);
            lens.push(zlen(c));
        }
    }
    let low = &mut s.low;
    low.clear();
    if low_bits > 0 {
        s.streams
            .decode(r, (&[n], std::slice::from_mut(low)), segmented, coder)?;
        if low.iter().any(|&b| !(0..1 << low_bits).contains(&b)) {
            return Err(Malformed::new("lossless low bits out of range"));
        }
    }
    // The bits of value `i` from its value word.
    // (A macro, not a closure: called from every transform's loop, a closure is not inlined.)
    macro_rules! bits {
        ($v:expr, $i:expr) => {
            value_bits($v, $i, (kw, k), low)
        };
    }
    match t {
        VALUE => {
            for (i, (o, &c)) in out.iter_mut().zip(codes.iter()).enumerate() {
                *o = f32::from_bits(bits!(c, i));
            }
        }
        DELTA => {
            let mut prev = 0i32;
            for (i, (o, &c)) in out.iter_mut().zip(codes.iter()).enumerate() {
                prev = prev.wrapping_add(c);
                *o = f32::from_bits(bits!(prev, i));
            }
        }
        DELTA_REF | REF_BEFORE | REF_AFTER => {
            let rf = reference.expect("checked");
            for (i, (o, &c)) in out.iter_mut().zip(codes.iter()).enumerate() {
                *o = f32::from_bits(bits!(ref_word(t, rf, i, kw).wrapping_add(c), i));
            }
        }
        MODEL => {
            let p = model.expect("checked");
            for (i, (o, &c)) in out.iter_mut().zip(codes.iter()).enumerate() {
                let w = word((p[i] as f32).to_bits(), kw);
                *o = f32::from_bits(bits!(w.wrapping_add(c), i));
            }
        }
        LAG => {
            for i in 0..n {
                let p = i.checked_sub(lag).map_or(0, |j| word(out[j].to_bits(), kw));
                out[i] = f32::from_bits(bits!(p.wrapping_add(codes[i]), i));
            }
        }
        REF_REPEAT | ROW_REPEAT => {
            for i in 0..n {
                // The row repeated is before this one, so already decoded.
                let p = reps[i]
                    .checked_sub(1)
                    .map_or(0, |j| word(out[j as usize].to_bits(), kw));
                out[i] = f32::from_bits(bits!(p.wrapping_add(codes[i]), i));
            }
        }
        SIGMA => {
            let axes = sigma_axes(grid, n).expect("checked");
            sigma_rebuild(out, axes, gain, (codes, low), (kw, k), s.streams.spare());
        }
        _ => {
            let (row, plane) = axes.expect("checked");
            let mut walk = Walk::new(row, plane);
            for i in 0..n {
                let p = lorenzo(t, out, i, walk.next(), row, plane);
                out[i] = f32::from_bits(bits!(word(p.to_bits(), kw).wrapping_add(codes[i]), i));
            }
        }
    }
    Ok(())
}

/// Rebuilds the values of a [`SIGMA`] column (rows of `row`, planes of `plane`, halves of
/// `half`, gain `a`) from their `codes` and `low` bits at shifts `(kw, k)`, into `out`.
///
/// The first half (Lorenzo over 2 axes) is rebuilt row by row, each row from the one before;
/// the second a row at a time, its predictions from the d's of the row above (each value's
/// computed once, after its row; a plane's first row value by value) and from the first
/// half's row at the same place. The two halves are two tasks, the second on an idle core
/// from `spare` where there is one: it waits for each first-half row it reads, which the
/// first task publishes as it finishes it. Without an idle core they run one after the other.
#[allow(unsafe_code)]
fn sigma_rebuild(
    out: &mut [f32],
    (row, plane, half): (usize, usize, usize),
    a: f64,
    (codes, low): (&[i32], &[i32]),
    (kw, k): (u32, u32),
    spare: &crate::spare::Spare,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let rows = half / row;
    // First-half rows finished (and written to `out`).
    let done = AtomicUsize::new(0);
    // Publishes every row when the first task ends, however it ends, so the second never
    // waits for a row that will not come.
    struct Finish<'a>(&'a AtomicUsize, usize);
    impl Drop for Finish<'_> {
        fn drop(&mut self) {
            self.0.store(self.1, Ordering::Release);
        }
    }
    let shared = Disjoint::new(out);
    let rebuild = |v: i32, i: usize| f32::from_bits(value_bits(v, i, (kw, k), low));
    let first = || {
        let _finish = Finish(&done, rows);
        // The row before and this one, as the Lorenzo prediction reads them.
        let mut two = vec![0f32; 2 * row];
        for r in 0..rows {
            let rp = r % (plane / row);
            let start = r * row;
            for c in 0..row {
                let p = lorenzo(LORENZO_2, &two, row + c, (c, rp), row, plane);
                let i = start + c;
                two[row + c] = rebuild(word(p.to_bits(), kw).wrapping_add(codes[i]), i);
            }
            // SAFETY: the second task reads a first-half row only once `done` counts it (the
            // Release below); nothing else touches this row.
            unsafe { shared.slice_mut(start, row) }.copy_from_slice(&two[row..]);
            done.store(r + 1, Ordering::Release);
            two.copy_within(row.., 0);
        }
    };
    let second = || {
        let mut above = vec![0f64; row];
        let mut preds = vec![0f32; row];
        for r2 in 0..rows {
            let start = half + r2 * row;
            let r = r2 % (plane / row);
            // The first half's row at the same place, once the first task has written it.
            let mut spins = 0u32;
            while done.load(Ordering::Acquire) <= r2 {
                spins += 1;
                if spins < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
            // SAFETY: the first task wrote this row before counting it in `done` (Acquire
            // above) and writes it no more; this task alone writes the second half.
            let (us, xs) = unsafe {
                (
                    shared.slice(start - half, row),
                    shared.slice_mut(start, row),
                )
            };
            if r == 0 {
                let mut before = 0.0;
                for (c, (x, &u)) in xs.iter_mut().zip(us).enumerate() {
                    let d = [before, 0.0, 0.0, 0.0, 0.0];
                    let p = sigma_from(u, a, d, sigma_has(c, 0, row));
                    let i = start + c;
                    *x = rebuild(word(p.to_bits(), kw).wrapping_add(codes[i]), i);
                    before = sigma_d(*x, u, a);
                    above[c] = before;
                }
                continue;
            }
            for (c, (p, &u)) in preds.iter_mut().zip(us).enumerate() {
                // Where all five neighbours exist, gathered directly (what `sigma_near` gives
                // there, without its per-place tests: 10-20% of the decoding speed on one thread).
                *p = if c >= 2 && c + 2 < row {
                    let d = [
                        above[c - 2],
                        above[c - 1],
                        above[c],
                        above[c + 1],
                        above[c + 2],
                    ];
                    sigma_from(u, a, d, [true; SIGMA_PLACES])
                } else {
                    let has = sigma_has(c, r, row);
                    sigma_from(u, a, sigma_near(has, |j| above[c + j - 2]), has)
                };
            }
            for (c, ((x, &p), &u)) in xs.iter_mut().zip(&preds).zip(us).enumerate() {
                let i = start + c;
                *x = rebuild(word(p.to_bits(), kw).wrapping_add(codes[i]), i);
                above[c] = sigma_d(*x, u, a);
            }
        }
    };
    spare.share(
        2,
        &mut [(), ()],
        |task, _| if task == 0 { first() } else { second() },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_words_keep_order_and_invert() {
        let vals = super::super::tests::ORDERED;
        let words: Vec<i32> = vals.iter().map(|v| word(v.to_bits(), 0)).collect();
        assert!(words.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(word(0.0f32.to_bits(), 0), 0);
        assert_eq!(word((-0.0f32).to_bits(), 0), -1);
        for k in [0, 1, 7, 13, 24] {
            for v in vals {
                let b = v.to_bits() >> k << k;
                assert_eq!(unword(word(b, k), k), b, "{v} at {k}");
            }
        }
        for bits in [0u32, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 0x7fc0_0001] {
            assert_eq!(unword(word(bits, 0), 0), bits);
        }
    }

    /// Codes `col` with transform `t` in `classes` classes (1: one stream), as [`encode`]
    /// writes it, and decodes it back, checking every bit; returns the coded size.
    fn round_trip_as(
        t: u8,
        col: &[f32],
        (reference, keys, model): (Option<&[f32]>, &[u64], Option<&[f64]>),
        grid: Grid,
        classes: usize,
        low_bits: u32,
    ) -> usize {
        let mut coder = CodeCoder::new();
        let mut s = IntScratch::default();
        let k = common_shift(col);
        let segmented = col.len() > STREAM_SEGMENT;
        let t_byte = id_byte(t, segmented, low_bits > 0);
        let mut buf = if low_bits > 0 {
            vec![t_byte, k as u8, low_bits as u8]
        } else {
            vec![t_byte, k as u8]
        };
        s.codes.clear();
        let mut reps = Vec::new();
        if matches!(t, REF_REPEAT | ROW_REPEAT) {
            let keys = if t == ROW_REPEAT { keys } else { &[] };
            repeats(reference.unwrap(), keys, &mut reps);
        }
        let model_bits: Vec<u32> = model
            .unwrap_or(&[])
            .iter()
            .map(|&x| (x as f32).to_bits())
            .collect();
        let lag = vec![7u32];
        if t == LAG {
            put_uvarint(&mut buf, 7);
        }
        let gain = 1.25f64;
        let gain_bits = vec![gain.to_bits() as u32, (gain.to_bits() >> 32) as u32];
        if t == SIGMA {
            buf.extend_from_slice(&gain.to_le_bytes());
        }
        let side = match t {
            MODEL => &model_bits,
            LAG => &lag,
            SIGMA => &gain_bits,
            _ => &reps,
        };
        transform(
            t,
            col,
            reference,
            side,
            grid,
            k + low_bits,
            0..col.len(),
            &mut s.codes,
        );
        metrics(&s.codes, neighbours(t, grid), &reps, &mut s.metric);
        let th = if classes > 1 {
            class_thresholds(&s.metric, classes, &reps)
        } else {
            Vec::new()
        };
        let cs = (&mut coder, &mut s.streams);
        write_streams(&s.codes, &s.metric, &th, cs, &mut s.split, &mut buf);
        if low_bits > 0 {
            low_codes(col, k, low_bits, &mut s.low);
            s.streams.encode(&[&s.low], segmented, &mut coder, &mut buf);
        }
        let mut out = vec![0f32; col.len()];
        let mut r = ByteReader::new(&buf[1..]);
        decode(
            buf[0], &mut r, reference, keys, model, grid, &mut coder, &mut s, &mut out,
        )
        .unwrap();
        assert!(r.is_empty());
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&out),
            bits(col),
            "transform {t}, {classes} classes, {low_bits} low bits"
        );
        buf.len()
    }

    fn lcg(seed: &mut u64) -> u32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 32) as u32
    }

    /// A 3-D field (planes of `ny` × `nx`) moving smoothly along its first axis, with
    /// special values sprinkled in, and its grid.
    fn field(nz: usize, ny: usize, nx: usize) -> (Vec<f32>, Grid) {
        let mut v = Vec::with_capacity(nz * ny * nx);
        for z in 0..nz {
            for y in 0..ny {
                for x in 0..nx {
                    let t = z as f32 * 0.05;
                    v.push((x as f32 * 0.11 + t).sin() * (y as f32 * 0.07 - t).cos() * 3.0);
                }
            }
        }
        let specials = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            0.0,
            1e-45,
            f32::MAX,
        ];
        for (j, s) in specials.iter().enumerate() {
            let i = (j * 7919) % v.len();
            v[i] = *s;
        }
        v[1] = f32::from_bits(0xffc0_1234);
        let grid = Grid {
            row: nx,
            plane: nx * ny,
        };
        (v, grid)
    }

    #[test]
    fn every_transform_round_trips_with_and_without_classes() {
        let (f, grid) = field(6, 40, 50);
        let mut seed = 7;
        let noise: Vec<f32> = (0..f.len())
            .map(|_| f32::from_bits(lcg(&mut seed)))
            .collect();
        let truncated: Vec<f32> = f
            .iter()
            .map(|v| f32::from_bits(v.to_bits() & !0x1fff))
            .collect();
        // A reference whose values recur (and row keys that recur less often), and a column
        // that repeats its values from some of the rows they recur at.
        let coarse: Vec<f32> = f.iter().map(|v| (v * 4.0).round()).collect();
        let keys: Vec<u64> = coarse
            .iter()
            .enumerate()
            .map(|(i, v)| u64::from(v.to_bits()) ^ ((i as u64 % 3) << 40))
            .collect();
        // A model's guess: the value, off by up to a few thousandths.
        let guess: Vec<f64> = f
            .iter()
            .enumerate()
            .map(|(i, &v)| f64::from(v) * (1.0 + ((i % 7) as f64 - 3.0) * 1e-3))
            .collect();
        let mut copied = noise.clone();
        let mut reps = Vec::new();
        repeats(&coarse, &[], &mut reps);
        for i in 0..copied.len() {
            if reps[i] > 0 && i % 4 != 0 {
                copied[i] = copied[reps[i] as usize - 1];
            }
        }
        for t in [
            VALUE, DELTA, DELTA_REF, REF_BEFORE, REF_AFTER, LORENZO_2, LORENZO_3, LORENZO_3Q,
            REF_REPEAT, ROW_REPEAT, MODEL, LAG, SIGMA,
        ] {
            for col in [&f, &noise, &truncated, &copied] {
                for classes in [1, 8, MAX_CLASSES] {
                    for low_bits in [0, 3, LOW_BITS] {
                        round_trip_as(
                            t,
                            col,
                            (Some(&coarse), &keys, Some(&guess)),
                            grid,
                            classes,
                            low_bits,
                        );
                    }
                }
            }
        }
        assert_eq!(common_shift(&truncated), 13);
        // The repeats cost little under the transforms that see them.
        let plain = round_trip_as(
            VALUE,
            &copied,
            (Some(&coarse), &keys, Some(&guess)),
            grid,
            8,
            0,
        );
        let repeated = round_trip_as(
            REF_REPEAT,
            &copied,
            (Some(&coarse), &keys, Some(&guess)),
            grid,
            8,
            0,
        );
        assert!(repeated * 3 < plain * 2, "{repeated} against {plain}");
        let ctx = (Some(&coarse[..]), &keys[..], Some(&guess[..]));
        let plain = round_trip_as(VALUE, &f, ctx, grid, 8, 0);
        let guessed = round_trip_as(MODEL, &f, ctx, grid, 8, 0);
        assert!(guessed * 3 < plain * 2, "{guessed} against {plain}");
        // A column of one value, and of a single value.
        round_trip_as(VALUE, &[0.0; 100], (None, &[], None), Grid::default(), 1, 0);
        round_trip_as(
            DELTA,
            &[-2.5],
            (None, &[], None),
            Grid::default(),
            1,
            LOW_BITS,
        );
    }

    #[test]
    fn a_range_of_a_transform_is_that_range_of_the_whole() {
        let (f, grid) = field(6, 40, 50);
        let mut seed = 3;
        let other: Vec<f32> = (0..f.len())
            .map(|_| f32::from_bits(lcg(&mut seed)))
            .collect();
        let n = f.len();
        let coarse: Vec<f32> = f.iter().map(|v| (v * 4.0).round()).collect();
        let mut reps = Vec::new();
        repeats(&coarse, &[], &mut reps);
        let gain = [0u32, 0x3ff4_0000];
        for t in [
            VALUE, DELTA, DELTA_REF, REF_BEFORE, REF_AFTER, LORENZO_2, LORENZO_3, LORENZO_3Q,
            REF_REPEAT, SIGMA,
        ] {
            for k in [0, 8] {
                let mut whole = Vec::new();
                let ctx = (
                    Some(&other[..]),
                    if t == SIGMA { &gain[..] } else { &reps[..] },
                );
                transform(t, &f, ctx.0, ctx.1, grid, k, 0..n, &mut whole);
                // Cuts inside rows, planes and the second plane of the quadratic predictor.
                let mut parts = Vec::new();
                for r in [0..1, 1..37, 37..2001, 2001..4123, 4123..n] {
                    transform(t, &f, ctx.0, ctx.1, grid, k, r, &mut parts);
                }
                assert_eq!(parts, whole, "transform {t} at shift {k}");
            }
        }
    }

    #[test]
    fn columns_longer_than_a_segment_code_their_streams_in_segments() {
        // 1.3 segments along planes of 256 × 256: every class stream and the low stream of
        // the Lorenzo transform cross a segment boundary.
        let (f, grid) = field(5, 256, 256);
        assert!(f.len() > STREAM_SEGMENT && f.len() < 2 * STREAM_SEGMENT);
        for (t, classes, low_bits) in [(LORENZO_3, 8, 0), (LORENZO_3Q, 1, LOW_BITS), (DELTA, 8, 3)]
        {
            round_trip_as(t, &f, (None, &[], None), grid, classes, low_bits);
        }
        // The encoder's own choice, flagged as segmented, decodes.
        let mut coder = CodeCoder::new();
        let mut s = IntScratch::default();
        let mut buf = Vec::new();
        encode(&f, None, &[], None, grid, &mut coder, &mut s, &mut buf);
        assert!(buf[0] >= SEGMENTED, "transform byte {}", buf[0]);
        let mut out = vec![0f32; f.len()];
        let mut r = ByteReader::new(&buf[1..]);
        decode(
            buf[0],
            &mut r,
            None,
            &[],
            None,
            grid,
            &mut coder,
            &mut s,
            &mut out,
        )
        .unwrap();
        assert!(r.is_empty());
        assert!(out.iter().zip(&f).all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    /// The coding [`encode`] chooses for `col` on `grid` (transform byte first), checked to
    /// decode bit for bit.
    fn chosen(col: &[f32], grid: Grid) -> Vec<u8> {
        let mut coder = CodeCoder::new();
        let mut s = IntScratch::default();
        let mut buf = Vec::new();
        encode(col, None, &[], None, grid, &mut coder, &mut s, &mut buf);
        let mut out = vec![0f32; col.len()];
        let body = &mut ByteReader::new(&buf[1..]);
        decode(
            buf[0],
            body,
            None,
            &[],
            None,
            grid,
            &mut coder,
            &mut s,
            &mut out,
        )
        .unwrap();
        assert!(body.is_empty());
        assert!(out.iter().zip(col).all(|(a, b)| a.to_bits() == b.to_bits()));
        buf
    }

    #[test]
    fn a_column_of_repeating_blocks_takes_its_lag() {
        // 20 blocks of 1024 rows, each the first block's values a little changed (cells of a
        // grid listed block by block): the value 1024 rows before predicts far better than
        // the one before.
        let mut seed = 11;
        let base: Vec<f32> = (0..1024)
            .map(|_| 200.0 + (lcg(&mut seed) >> 8) as f32 / (1u32 << 24) as f32 * 200.0)
            .collect();
        let col: Vec<f32> = (0..20 * 1024)
            .map(|i| base[i % 1024] * (1.0 + (i / 1024) as f32 * 1e-4))
            .collect();
        let buf = chosen(&col, Grid::default());
        assert_eq!(buf[0] & !LOW_SPLIT, LAG, "transform {}", buf[0]);
        let g = Grid::default();
        let delta = round_trip_as(DELTA, &col, (None, &[], None), g, 8, 0);
        assert!(buf.len() * 2 < delta, "{} against {delta}", buf.len());
    }

    #[test]
    fn the_chosen_coding_decodes_and_beats_byte_planes_on_smooth_fields() {
        let (f, grid) = field(8, 64, 64);
        let nx = grid.row;
        let buf = chosen(&f, grid);
        assert!(
            [LORENZO_3Q, LORENZO_3Q + LOW_SPLIT].contains(&buf[0]),
            "a field moving smoothly along its planes: {}",
            buf[0]
        );
        let mut coder = CodeCoder::new();
        // Byte planes of the same field along the column: the previous coder's best.
        let mut planes = Vec::new();
        super::super::encode_planes(
            &f,
            super::super::Reference::Stride(nx),
            &mut coder,
            &mut super::super::LosslessScratch::default(),
            &mut planes,
        );
        assert!(
            buf.len() * 5 < planes.len() * 4,
            "{} against {}",
            buf.len(),
            planes.len()
        );
    }

    #[test]
    fn transform_bytes_name_one_transform_each() {
        let mut seen = std::collections::HashSet::new();
        let mut names = std::collections::HashSet::new();
        for t in (VALUE..=LAG).chain([SIGMA]) {
            // One name per transform, whatever its variant, on values or lattice integers.
            let plain = name(t, false).expect("a name");
            assert!(names.insert(plain) && names.insert(name(t, true).expect("a name")));
            for (segmented, low) in [(false, false), (false, true), (true, false), (true, true)] {
                let b = id_byte(t, segmented, low);
                assert_eq!(parse_id(b), (t, segmented, low), "byte {b}");
                assert_eq!(name(b, false), Some(plain), "byte {b}");
                assert!(seen.insert(b), "byte {b} twice");
                assert!(b > 3 && b != super::super::LATTICE, "byte {b}");
            }
        }
        // No other byte reads as the error-plane transform, and no byte of none has a name.
        assert!((0..=255u8).all(|b| parse_id(b).0 != SIGMA || (96..100).contains(&b)));
        assert!((0..=255u8).all(|b| name(b, false).is_none() || seen.contains(&b)));
    }

    /// A telescope frame's science plane (counts of stars over a sky, with read noise) and
    /// its error plane, `sqrt(gain · science + read noise² + a sky that drifts)` plus the
    /// rounding of a pipeline's float arithmetic, stacked; and its grid.
    fn frame(ny: usize, nx: usize, gain: f64) -> (Vec<f32>, Grid) {
        let mut seed = 5;
        let mut uniform = move || f64::from(lcg(&mut seed)) / f64::from(u32::MAX);
        let mut sci = Vec::with_capacity(ny * nx);
        for y in 0..ny {
            for x in 0..nx {
                let star = if (x * 7 + y * 13) % 97 == 0 {
                    5000.0
                } else {
                    0.0
                };
                let sky = 200.0 + 40.0 * (x as f64 * 0.01).sin() + y as f64 * 0.1;
                sci.push((sky + star + 15.0 * (uniform() - 0.5) * (sky + star).sqrt()) as f32);
            }
        }
        let mut err: Vec<f32> = sci
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let drift = 120.0 + 10.0 * ((i % nx) as f64 * 0.003).cos() + 3.0 * uniform();
                (gain * f64::from(s) + drift).max(1.0).sqrt() as f32
            })
            .collect();
        err[nx + 3] = f32::NAN;
        err[2 * nx] = f32::INFINITY;
        err[5] = -0.0;
        sci[7 * nx + 7] = f32::NAN;
        sci.extend_from_slice(&err);
        (
            sci,
            Grid {
                row: nx,
                plane: nx * ny,
            },
        )
    }

    #[test]
    fn an_error_plane_is_predicted_from_its_science_plane() {
        for (gain, ny, nx) in [(1.0, 96, 128), (0.37, 64, 200)] {
            let (f, grid) = frame(ny, nx, gain);
            let half = f.len() / 2;
            let a = sigma_gain(&f, nx, half).expect("a gain");
            assert!((a / gain - 1.0).abs() < 0.1, "gain {a} for {gain}");
            let buf = chosen(&f, grid);
            assert_eq!(parse_id(buf[0]).0, SIGMA, "transform {}", buf[0]);
            // Rebuilt with the second half on a lent core (waiting for the first half's
            // rows as they come): the same bits, however the two tasks interleave.
            let mut s = IntScratch::default();
            s.streams.lending(crate::spare::Spare::new(1));
            let mut coder = CodeCoder::new();
            for _ in 0..20 {
                let mut out = vec![0f32; f.len()];
                let cs = (&mut coder, &mut s);
                decode_bare(buf[0], &buf[1..], grid, cs, &mut out).unwrap();
                assert!(out.iter().zip(&f).all(|(a, b)| a.to_bits() == b.to_bits()));
            }
            let g = (None, &[][..], None);
            let lorenzo = round_trip_as(LORENZO_2, &f, g, grid, 8, 0);
            assert!(
                buf.len() * 10 < lorenzo * 9,
                "{} against {lorenzo}",
                buf.len()
            );
        }
        // A column that is not two halves of whole rows has no such transform.
        let grid = Grid {
            row: 10,
            plane: 100,
        };
        assert!(sigma_axes(grid, 310).is_none() && sigma_axes(grid, 20).is_none());
        assert_eq!(sigma_axes(grid, 400), Some((10, 100, 200)));
        assert_eq!(sigma_axes(grid, 300), Some((10, 150, 150)));
    }

    /// Decodes `body` as transform byte `t`'s with no reference, keys or model.
    fn decode_bare(
        t: u8,
        body: &[u8],
        grid: Grid,
        (coder, s): (&mut CodeCoder, &mut IntScratch),
        out: &mut [f32],
    ) -> DecodeResult<()> {
        decode(
            t,
            &mut ByteReader::new(body),
            None,
            &[],
            None,
            grid,
            coder,
            s,
            out,
        )
    }

    #[test]
    fn forged_streams_are_errors_not_panics() {
        let (f, grid) = field(4, 30, 40);
        let mut coder = CodeCoder::new();
        let mut s = IntScratch::default();
        let mut out = vec![0f32; f.len()];
        let mut good = vec![LORENZO_3, 0];
        s.codes.clear();
        transform(LORENZO_3, &f, None, &[], grid, 0, 0..f.len(), &mut s.codes);
        metrics(&s.codes, neighbours(LORENZO_3, grid), &[], &mut s.metric);
        let th = thresholds(&s.metric, 8);
        write_streams(
            &s.codes,
            &s.metric,
            &th,
            (&mut coder, &mut s.streams),
            &mut s.split,
            &mut good,
        );
        // Wrong geometry, wrong transform, shifts and class counts out of range.
        let lorenzo_off_grid = decode(
            LORENZO_3,
            &mut ByteReader::new(&good[1..]),
            None,
            &[],
            None,
            Grid::default(),
            &mut coder,
            &mut s,
            &mut out,
        );
        assert!(lorenzo_off_grid.is_err());
        for (t, body) in [
            (14u8, vec![0u8, 1, 0]),
            (19 + SEGMENTED, vec![0u8, 1, 0]),
            (LAG, vec![0, 0, 1]),
            (LAG + SEGMENTED, vec![0, 0xff, 0xff, 0xff, 0x7f, 1]),
            (REF_REPEAT, vec![0, 1]),
            (ROW_REPEAT, vec![0, 1]),
            (MODEL, vec![0, 1]),
            (MODEL + LOW_SPLIT + SEGMENTED, vec![0, 8, 1]),
            (
                SIGMA_BYTE,
                [vec![0], 0f64.to_le_bytes().to_vec(), vec![1]].concat(),
            ),
            (
                SIGMA_BYTE + 3,
                [vec![0, 8], (-1f64).to_le_bytes().to_vec()].concat(),
            ),
            (
                SIGMA_BYTE,
                [vec![0], f64::NAN.to_le_bytes().to_vec(), vec![1]].concat(),
            ),
            (SIGMA_BYTE, vec![0, 0, 0, 0]),
            (SIGMA_BYTE + 4, vec![0, 1]),
            (VALUE, vec![31, 1]),
            (VALUE, vec![0, 0]),
            (VALUE, vec![0, 17]),
            (VALUE, vec![0, 3, 5, 2, 0, 0, 0]),
            (DELTA_REF, vec![0, 1]),
            (VALUE + LOW_SPLIT, vec![0, 0, 1]),
            (VALUE + LOW_SPLIT, vec![0, 9, 1]),
            (VALUE + LOW_SPLIT, vec![24, 8, 1]),
        ] {
            let r = decode(
                t,
                &mut ByteReader::new(&body),
                None,
                &[],
                None,
                grid,
                &mut coder,
                &mut s,
                &mut out,
            );
            assert!(r.is_err(), "{t} {body:?}");
        }
        // Every byte of a good stream changed, and every truncation: errors or some values,
        // never a panic.
        let mut seed = 3;
        for i in 1..good.len() {
            let mut bad = good.clone();
            bad[i] ^= (lcg(&mut seed) as u8) | 1;
            let _ = decode(
                bad[0],
                &mut ByteReader::new(&bad[1..]),
                None,
                &[],
                None,
                grid,
                &mut coder,
                &mut s,
                &mut out,
            );
            let _ = decode(
                good[0],
                &mut ByteReader::new(&good[1..i]),
                None,
                &[],
                None,
                grid,
                &mut coder,
                &mut s,
                &mut out,
            );
        }
        // The same for the error-plane transform, and it off a grid of two halves.
        let (f, grid) = frame(48, 64, 1.0);
        let good = chosen(&f, grid);
        assert_eq!(parse_id(good[0]).0, SIGMA);
        let mut out = vec![0f32; f.len()];
        let off = Grid { row: 7, plane: 0 };
        let cs = (&mut coder, &mut s);
        assert!(decode_bare(good[0], &good[1..], off, (&mut *cs.0, &mut *cs.1), &mut out).is_err());
        for i in 1..good.len() {
            let mut bad = good.clone();
            bad[i] ^= (lcg(&mut seed) as u8) | 1;
            let _ = decode_bare(bad[0], &bad[1..], grid, (&mut *cs.0, &mut *cs.1), &mut out);
            let _ = decode_bare(
                good[0],
                &good[1..i],
                grid,
                (&mut *cs.0, &mut *cs.1),
                &mut out,
            );
        }
    }

    #[test]
    fn thresholds_are_increasing() {
        let m: Vec<u8> = (0..10_000u32).map(|i| (i % 40) as u8).collect();
        let th = thresholds(&m, 8);
        assert_eq!(th.len(), 7);
        assert!(th.windows(2).all(|w| w[0] < w[1]));
        assert!(thresholds(&[3u8; 100], 8).is_empty());
    }
}
