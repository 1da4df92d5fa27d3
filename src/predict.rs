//! The prediction slot: what the residual stage subtracts before quantizing.
//!
//! Each column of each chunk names its predictor by a one-byte id in the chunk, so predictors can
//! be added without breaking old files, and the encoder chooses per column and per chunk by
//! estimated cost (`Chooser`).
//!
//! | id | predictor | codes stored | used for |
//! |---|---|---|---|
//! | 0 | [`Predictor::Centre`] | `k = round((x − centre) / s)` | tables of independent records |
//! | 1 | [`Predictor::Previous`] | `k[i] − k[i−1]` along the column | ordered records (tracks, cells), 1-D series |
//! | 2 | [`Predictor::Lorenzo2`] | 2-D Lorenzo residual of `k` over rows | images, 2-D slices of fields |
//! | 3 | [`Predictor::Lorenzo3`] | 3-D Lorenzo residual of `k` over rows and planes | volumes, time series of 2-D frames |
//! | 4 | [`Predictor::Model`] | `round((x − x̂) / s)`, `x̂` from the learned model | table columns related to earlier ones |
//! | 5 | [`Predictor::Interp`] | `round((x − x̂) / s)`, `x̂` a multilevel interpolation of reconstructed values over every axis | smooth fields (SZ3's interpolation) |
//! | 6 | [`Predictor::InterpPlanes`] | the same within each plane (2-D) | stacks of 2-D frames that differ more than their pixels |
//! | 7 | [`Predictor::Carry`] | `round((x − x̂) / s)`, `x̂` another column's reconstruction one record before or after (`carried`) | chains of steps: a deposit's energy after the step is the next deposit's energy before it |
//!
//! The neighbour predictors work on the *integer* codes `k` of the plain quantizer ("dual
//! quantization", as in cuSZ), not on floating-point values: every value is first quantized
//! against the column centre, exactly as predictor 0 does, and the neighbour predictor then
//! replaces each code by its difference from an integer combination of neighbouring codes
//! (wrapping `i32` arithmetic). So:
//!
//! - the reconstruction, and with it the bound check, is the same whichever predictor is
//!   chosen: a predictor changes the bytes, never the values;
//! - the transform is exactly invertible with integer prefix sums, identical on every machine,
//!   and vectorizes across a row (no sequential dependency on reconstructed floats);
//! - its quality matches prediction from reconstructed values (the reconstructions are the grid
//!   points `centre + s·k` themselves).
//!
//! The interpolation predictors (SZ3's) visit the grid coarse to fine: at
//! each level, with spacing `h` halving from the largest power of two below the longest axis to
//! 1, and along each axis in turn, every point halfway between two known points (an odd
//! multiple of `h` along that axis, a multiple of `h` along the axes before it and of `2h` along
//! those after) is predicted from the known points at `±h` and `±3h` along the axis: cubic
//! `(−a + 9b + 9c − d)/16` where all four exist, quadratic at the edges, the mean of two, or
//! the left neighbour past the far edge; the order of the axes within a level is chosen per
//! chunk and stored after the predictor id. They predict *reconstructed values* (in `f64`,
//! fixed operations), and code `round((x − x̂) / s)` in that order, so the decoder, visiting
//! points in the same order, has every neighbour it needs; the first point of a block is
//! predicted by the column centre. The coarse levels may be quantized with a finer step than
//! the finest (`LEVEL_DIVISORS`, format version 6), which pays where most codes are 0.
//!
//! Lorenzo predictors treat the column as a grid with zero padding at its low edges: a value's
//! neighbour along an axis exists when the value is not at the start of that axis. Exceptions
//! (values stored verbatim) have no code; their `k` is defined as the predictor's own
//! prediction there (a residual of 0, which is not stored), so the decoder can run the same
//! recurrence through them.
//!
//! The learned predictor ([`crate::model`]) predicts in floating point instead: one `x̂` per
//! value from the columns already reconstructed, computed bit-identically by encoder and
//! decoder, and the codes are `round((x − x̂) / s)`.

use crate::disjoint::Disjoint;
use crate::element::Element;
use crate::residual::{Exceptions, MAX_CODE, Quantizer};
use crate::segments::scatter;
use crate::simd::with_avx2;
use crate::spare::Spare;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// How a column's values are predicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Predictor {
    /// The column centre (normalization offset): plain uniform quantization.
    Centre,
    /// The previous value's code along the column.
    Previous,
    /// 2-D Lorenzo: `k[left] + k[up] − k[up-left]`.
    Lorenzo2,
    /// 3-D Lorenzo over rows and planes (seven neighbours).
    Lorenzo3,
    /// The learned model (`crate::model`), from the columns reconstructed before this one.
    Model,
    /// Multilevel interpolation over every axis of the grid (a field's rows, and planes).
    Interp,
    /// Multilevel interpolation within each plane of a 3-D grid.
    InterpPlanes,
    /// Another column of the table, one record before or after (`carried`); the section
    /// names which.
    Carry,
}

/// Which record a [`Predictor::Carry`] takes its reference column's value from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lag {
    /// The record before (`x̂[i] = ref[i − 1]`).
    Before,
    /// The record after (`x̂[i] = ref[i + 1]`).
    After,
}

impl Lag {
    /// The byte stored after the predictor id.
    pub(crate) fn byte(self) -> u8 {
        match self {
            Lag::Before => 0,
            Lag::After => 1,
        }
    }

    /// The lag of a stored byte.
    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Lag::Before),
            1 => Some(Lag::After),
            _ => None,
        }
    }
}

/// The predictions of [`Predictor::Carry`]: the values of `reference` (another column's
/// reconstruction) shifted by one record as `lag` says, `fill` where there is none (the first
/// or last record) or it is not finite. The encoder and the decoder both call this.
pub(crate) fn carried<T: Element>(reference: &[T], lag: Lag, fill: f64, out: &mut Vec<f64>) {
    let n = reference.len();
    out.clear();
    let value = |v: T| {
        let v = v.to_f64();
        if v.is_finite() { v } else { fill }
    };
    match lag {
        Lag::Before => {
            out.extend(std::iter::once(fill).take(n.min(1)));
            out.extend(reference[..n.saturating_sub(1)].iter().map(|&v| value(v)));
        }
        Lag::After => {
            out.extend(reference[n.min(1)..].iter().map(|&v| value(v)));
            out.extend(std::iter::once(fill).take(n.min(1)));
        }
    }
}

/// The shape a column's values lie on, for the neighbour predictors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Grid {
    /// Values per row (the array's last axis), when the column is a whole number of rows
    /// starting at a row boundary; 0 otherwise.
    pub row: usize,
    /// Values per plane (the last two axes), when the column is whole planes; 0 otherwise.
    pub plane: usize,
}

impl Grid {
    /// Whether a column of `len` values is at least two whole rows.
    fn has_rows(self, len: usize) -> bool {
        fits(self.row, len)
    }

    /// Whether a column of `len` values is at least two whole planes of whole rows.
    fn has_planes(self, len: usize) -> bool {
        self.has_rows(len)
            && self.plane > self.row
            && self.plane.is_multiple_of(self.row)
            && fits(self.plane, len)
    }
}

/// Whether `len` values are at least two whole units of `unit ≥ 2` values.
fn fits(unit: usize, len: usize) -> bool {
    unit >= 2 && len.is_multiple_of(unit) && len >= 2 * unit
}

/// An axis of the prediction grid: `(stride, period)`. A value at `i` has a neighbour along it
/// at `i − stride` when `i % period ≥ stride`.
type Axis = (usize, usize);

/// Most axes a predictor uses.
const MAX_AXES: usize = 3;

impl Predictor {
    /// Every predictor, by id.
    pub const ALL: [Predictor; 8] = [
        Predictor::Centre,
        Predictor::Previous,
        Predictor::Lorenzo2,
        Predictor::Lorenzo3,
        Predictor::Model,
        Predictor::Interp,
        Predictor::InterpPlanes,
        Predictor::Carry,
    ];

    /// The id stored in the chunk.
    pub fn id(self) -> u8 {
        match self {
            Predictor::Centre => 0,
            Predictor::Previous => 1,
            Predictor::Lorenzo2 => 2,
            Predictor::Lorenzo3 => 3,
            Predictor::Model => 4,
            Predictor::Interp => 5,
            Predictor::InterpPlanes => 6,
            Predictor::Carry => 7,
        }
    }

    /// The predictor with id `id`, if this build knows it.
    pub fn from_id(id: u8) -> Option<Self> {
        Predictor::ALL.get(id as usize).copied()
    }

    /// A short name, for `baler info`.
    pub fn name(self) -> &'static str {
        match self {
            Predictor::Centre => "centre",
            Predictor::Previous => "previous",
            Predictor::Lorenzo2 => "lorenzo2",
            Predictor::Lorenzo3 => "lorenzo3",
            Predictor::Model => "model",
            Predictor::Interp => "interp",
            Predictor::InterpPlanes => "interp-planes",
            Predictor::Carry => "carry",
        }
    }

    /// How this predictor predicts on `grid`, or `None` if it does not apply there.
    fn rule(self, grid: Grid, len: usize) -> Option<Rule> {
        match self {
            Predictor::Interp | Predictor::InterpPlanes => {
                Interp::new(self, grid, len).map(Rule::Interp)
            }
            _ => self
                .axes(grid, len)
                .map(|(axes, n)| Rule::Stencil(Stencil::new(axes, n))),
        }
    }

    /// The grid axes of this predictor on `grid`, or `None` if it does not apply there.
    fn axes(self, grid: Grid, len: usize) -> Option<([Axis; MAX_AXES], usize)> {
        let whole = usize::MAX;
        match self {
            Predictor::Centre => Some(([(0, whole); MAX_AXES], 0)),
            Predictor::Previous => Some(([(1, whole), (0, whole), (0, whole)], 1)),
            Predictor::Lorenzo2 if grid.has_rows(len) => {
                Some(([(1, grid.row), (grid.row, whole), (0, whole)], 2))
            }
            Predictor::Lorenzo3 if grid.has_planes(len) => Some((
                [(1, grid.row), (grid.row, grid.plane), (grid.plane, whole)],
                3,
            )),
            _ => None,
        }
    }

    /// Whether this predictor can code a column of `len` values on `grid`.
    pub(crate) fn applies(self, grid: Grid, len: usize) -> bool {
        self.rule(grid, len).is_some()
    }

    /// Sets the code of each exception (positions increasing) to the prediction there, so
    /// its residual is 0. `k` holds the plain codes elsewhere. (Neighbour predictors only:
    /// the interpolation predictors code values, not codes; see `crate::chunk`.)
    pub(crate) fn fill_exceptions(self, grid: Grid, k: &mut [i32], positions: &[u32]) {
        if let Some(Rule::Stencil(st)) = self.rule(grid, k.len()) {
            for &p in positions {
                k[p as usize] = st.predict(k, p as usize);
            }
        }
    }

    /// Writes the residuals of codes `k` to `out` (same length): `k[i]` minus its prediction
    /// (neighbour predictors only).
    pub(crate) fn residuals(self, grid: Grid, k: &[i32], out: &mut [i32]) {
        out.copy_from_slice(k);
        let Some((axes, n)) = self.axes(grid, k.len()) else {
            return;
        };
        for &(stride, period) in &axes[..n] {
            difference(out, stride, period);
        }
    }

    /// Inverts [`residuals`](Self::residuals) in place: residuals in, codes out.
    pub(crate) fn integrate(self, grid: Grid, d: &mut [i32]) {
        let Some((axes, n)) = self.axes(grid, d.len()) else {
            return;
        };
        for &(stride, period) in &axes[..n] {
            prefix_sum(d, stride, period);
        }
    }
}

/// A predictor as the encoder prices it: a neighbour stencil or an interpolation.
#[derive(Debug, Clone, Copy)]
enum Rule {
    Stencil(Stencil),
    Interp(Interp),
}

impl Rule {
    /// Appends the residuals of positions `b..e` to `out`.
    fn push_residuals(&self, k: &[i32], b: usize, e: usize, out: &mut Vec<i32>) {
        match self {
            Rule::Stencil(st) => st.push_residuals(k, b, e, out),
            Rule::Interp(ip) => {
                let last = ip.last_visited();
                let residual = |i: usize| k[i].wrapping_sub(ip.predict_at(k, i, ip.spot(i), &last));
                out.extend((b..e).map(residual));
            }
        }
    }
}

/// Multilevel interpolation on a grid of `shape` (row-major, `nd` axes), repeated over
/// consecutive blocks of `block` values (the whole column, or one plane), visiting the axes of
/// each level in `order`.
///
/// The interpolation predictors code *sequentially*, as SZ3 does: each value is predicted from
/// the values already reconstructed and its residual quantized (`crate::chunk`), which is
/// worth ~25% on smooth fields over interpolating the plain codes (whose own rounding adds to
/// the residual's). The encoder prices them, and picks the axis order, on the plain codes
/// ([`Interp::predict_at`]), a close and cheap proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Interp {
    shape: [usize; MAX_AXES],
    strides: [usize; MAX_AXES],
    nd: usize,
    block: usize,
    order: [usize; MAX_AXES],
    /// The level-wise steps ([`LEVEL_DIVISORS`]): 0 one step for every level.
    levels: u8,
}

/// The level-wise steps of an interpolation (format version 6; SZ3's level-wise error bound):
/// per scheme, the divisor of the step at each level, by `log2 h` (the first point of a block
/// last). A finer step at the coarse levels, which are few, makes them better anchors for the
/// finest, which are most of the points: where most of the codes are 0 (a loose bound on a
/// smooth field: the forced turbulence's vorticity at `rel:1e-2`, 149.9 → 120.3 kB at scheme
/// 2) that costs less than it saves; at tighter bounds it costs more. Chosen per column and
/// chunk by coding (`column.rs`), in the linear domain only (an ordinal column's step is a whole
/// number of ordinals). The divisors are exact in `f64`, so both sides compute the same steps.
/// Scheme 3 is not defined (×2 per level up to 4 never paid on `../shared/data`).
pub(crate) const LEVEL_DIVISORS: [[f64; 5]; 3] = [
    [1.0, 1.0, 1.0, 1.0, 1.0],
    // 1.25 per level up to 2.
    [1.0, 1.25, 1.5625, 1.953125, 2.0],
    // 1.5 per level up to 3.
    [1.0, 1.5, 2.25, 3.0, 3.0],
];

/// Passes of at least this many points are split into parts that run at the same time on idle
/// cores ([`Interp::run_passes`]): a part costs a task's hand-over, a few microseconds.
const SPLIT_PASS: usize = 1 << 12;

/// Parts of a split pass, so a core that comes idle halfway still takes some.
const PASS_PARTS: usize = 8;

/// The spacing a block's first point is given ([`Interp::run_codes_block`]): above every
/// level's.
const FIRST: usize = 1 << (usize::BITS - 1);

/// The column of [`LEVEL_DIVISORS`] for a point of spacing `h` ([`FIRST`]: a block's first).
#[inline(always)]
fn level_index(h: usize) -> usize {
    (h.trailing_zeros() as usize).min(4)
}

/// The orders of up to three axes, by index.
const ORDERS: [[usize; MAX_AXES]; 6] = [
    [0, 1, 2],
    [0, 2, 1],
    [1, 0, 2],
    [1, 2, 0],
    [2, 0, 1],
    [2, 1, 0],
];

/// Each thread's scratch for [`Interp::dequantize`], kept by the caller from one column to
/// the next: a block's codes with its exceptions' marks, and their places.
#[derive(Debug, Default)]
pub(crate) struct BlockScratch(Vec<(Vec<i32>, Vec<usize>)>);

impl Interp {
    /// The interpolation of predictor `p` (`Interp` or `InterpPlanes`) on `grid`, axes in
    /// their natural order, or `None` where it does not apply.
    pub(crate) fn new(p: Predictor, grid: Grid, len: usize) -> Option<Self> {
        let planes = grid.has_planes(len);
        let (shape, nd, block): ([usize; MAX_AXES], usize, usize) = match p {
            Predictor::Interp if planes => {
                ([len / grid.plane, grid.plane / grid.row, grid.row], 3, len)
            }
            Predictor::Interp if grid.has_rows(len) => ([len / grid.row, grid.row, 1], 2, len),
            Predictor::InterpPlanes if planes => {
                ([grid.plane / grid.row, grid.row, 1], 2, grid.plane)
            }
            _ => return None,
        };
        let mut strides = [1; MAX_AXES];
        for a in (0..nd - 1).rev() {
            strides[a] = strides[a + 1] * shape[a + 1];
        }
        Some(Interp {
            shape,
            strides,
            nd,
            block,
            order: [0, 1, 2],
            levels: 0,
        })
    }

    /// Every order of the axes this interpolation could visit them in (with one step).
    pub(crate) fn orders(&self) -> impl Iterator<Item = Interp> + '_ {
        ORDERS
            .iter()
            .filter(|o| o[..self.nd].iter().all(|&a| a < self.nd) && o[self.nd..].is_sorted())
            .map(|&order| Interp {
                order,
                levels: 0,
                ..*self
            })
    }

    /// The axis order as stored after the predictor id: two bits per axis, first visited in
    /// the low bits; the level-wise steps ([`LEVEL_DIVISORS`], format version 6) in bits 6–7.
    pub(crate) fn order_byte(&self) -> u8 {
        (0..self.nd).fold(self.levels << 6, |b, i| {
            b | (self.order[i] as u8) << (2 * i)
        })
    }

    /// This interpolation with the axis order and level-wise steps of `byte`, if `byte` is a
    /// valid order for it and a defined scheme.
    pub(crate) fn with_order_byte(&self, byte: u8) -> Option<Interp> {
        let levels = byte >> 6;
        if levels as usize >= LEVEL_DIVISORS.len() {
            return None;
        }
        self.orders()
            .find(|o| o.order_byte() == byte & 0x3f)
            .map(|o| o.with_levels(levels))
    }

    /// This interpolation with the level-wise steps of scheme `levels` (a row of
    /// [`LEVEL_DIVISORS`]).
    pub(crate) fn with_levels(self, levels: u8) -> Interp {
        debug_assert!((levels as usize) < LEVEL_DIVISORS.len());
        Interp { levels, ..self }
    }

    /// Its scheme of level-wise steps (0: one step).
    pub(crate) fn levels(&self) -> u8 {
        self.levels
    }

    /// The step of each level ([`level_index`]) for a base step `step`.
    fn level_steps(&self, step: f64) -> [f64; 5] {
        LEVEL_DIVISORS[self.levels as usize].map(|d| step / d)
    }

    /// Every pass's lines ([`pass_lines`](Self::pass_lines)), pass after pass: the walk the
    /// tests check.
    #[cfg(test)]
    fn lines(&self, memory: bool, mut line: impl FnMut(Line)) {
        self.passes(|pass| self.pass_lines(pass, memory, 0..pass.outer(memory), &mut line));
    }

    /// Calls `line` for every [`Line`] of points of `pass` (a level `h` and an axis, from
    /// [`passes`](Self::passes)) whose index on the pass's outermost loop ([`Pass::outer`])
    /// lies in `outer`: so a pass splits into parts with points of their own. The points of a
    /// pass read none of each other, so the walk within it is free: in *decoding order*
    /// (`memory` false), the order their codes are stored in: by coordinate `c` along the axis
    /// (so points predicted alike, e.g. past the far edge, come together in the code stream),
    /// then across the other axes in memory order, the last of them along the line; or in
    /// *memory order* (`memory` true), which reads the grid row by row where decoding order
    /// goes down its columns (the telescope image, 1024 × 1024, and the vorticity, 32 × 256 ×
    /// 256 a chunk: 1.07x faster to code on one thread). Either way each line says where its
    /// codes are in decoding order ([`Line::code`]).
    fn pass_lines(
        &self,
        pass: &Pass,
        memory: bool,
        outer: std::ops::Range<usize>,
        mut line: impl FnMut(Line),
    ) {
        let (strides, nd) = (&self.strides, self.nd);
        let (h, d, code) = (pass.h, pass.d, pass.code);
        let (first, every, count, weight) = (pass.first, pass.every, pass.count, pass.weight);
        let loops = pass.loops(memory);
        let inner = loops[nd - 1];
        let (s, n) = (strides[d], self.shape[d]);
        // Lines along `d` (its last axis in memory order, or a 1-D grid): split into
        // runs of points that share their edge case ([`reach`]): at most four (the
        // first point, those with both neighbours at 3h, those without the far one,
        // and the one past the far edge).
        let mut runs = [(0usize, 0usize); 4];
        let mut nruns = 0;
        if inner == d {
            let mut c = h;
            while c < n {
                let (from, case) = (c, reach(c, n, h));
                while c < n && reach(c, n, h) == case {
                    c += 2 * h;
                }
                runs[nruns] = (from, (c - from) / (2 * h));
                nruns += 1;
            }
        }
        // The line at index `at[e]` on each axis but `inner`.
        let mut emit = |at: [usize; MAX_AXES]| {
            let (mut start, mut code) = (0, code);
            for e in (0..nd).filter(|&e| e != inner) {
                start += (first[e] + at[e] * every[e]) * strides[e];
                code += at[e] * weight[e];
            }
            if inner == d {
                for &(from, points) in &runs[..nruns] {
                    line(Line {
                        start: start + from * s,
                        count: points,
                        stride: 2 * h * s,
                        c: from,
                        len: n,
                        hs: h * s,
                        h,
                        code: code + (from - h) / (2 * h) * weight[d],
                        code_stride: weight[d],
                    });
                }
            } else {
                line(Line {
                    start: start + first[inner] * strides[inner],
                    count: count[inner],
                    stride: every[inner] * strides[inner],
                    c: first[d] + at[d] * every[d],
                    len: n,
                    hs: h * s,
                    h,
                    code,
                    code_stride: weight[inner],
                });
            }
        };
        let mut at = [0; MAX_AXES];
        match nd {
            1 => {
                if outer.contains(&0) {
                    emit(at)
                }
            }
            2 => {
                for j in outer {
                    at[loops[0]] = j;
                    emit(at);
                }
            }
            _ => {
                for j in outer {
                    at[loops[0]] = j;
                    for k in 0..count[loops[1]] {
                        at[loops[1]] = k;
                        emit(at);
                    }
                }
            }
        }
    }

    /// The walk's passes in decoding order ([`Pass`]): for each level `h` from the coarsest,
    /// each axis in this order along which the grid is longer than `h`.
    fn passes(&self, mut each: impl FnMut(&Pass)) {
        let (shape, nd) = (&self.shape, self.nd);
        let longest = shape[..nd].iter().copied().max().unwrap_or(0);
        if longest < 2 {
            return;
        }
        let mut h = 1usize << (usize::BITS - 1 - (longest - 1).leading_zeros());
        // The code of a pass's first point in decoding order (the block's first point is 0).
        let mut code = 1usize;
        while h >= 1 {
            for (i, &d) in self.order[..nd].iter().enumerate() {
                if shape[d] <= h {
                    continue;
                }
                // Each axis's points: the first coordinate, the spacing, how many. Along `d`
                // the odd multiples of `h`; the other axes multiples of `h` if visited before
                // `d` at this level, of `2h` if after.
                let (mut first, mut every, mut count) =
                    ([0; MAX_AXES], [1; MAX_AXES], [1; MAX_AXES]);
                for e in 0..nd {
                    (first[e], every[e]) = match e {
                        _ if e == d => (h, 2 * h),
                        _ if self.order[..i].contains(&e) => (0, h),
                        _ => (0, 2 * h),
                    };
                    count[e] = (shape[e] - first[e]).div_ceil(every[e]);
                }
                // Decoding order: `d`, then the other axes in memory order. How far apart
                // in it consecutive points along each axis are.
                let mut by_code = [d; MAX_AXES];
                for (slot, e) in by_code[1..nd].iter_mut().zip((0..nd).filter(|&e| e != d)) {
                    *slot = e;
                }
                let mut weight = [0; MAX_AXES];
                let mut total = 1;
                for &e in by_code[..nd].iter().rev() {
                    weight[e] = total;
                    total *= count[e];
                }
                each(&Pass {
                    h,
                    d,
                    first,
                    every,
                    count,
                    weight,
                    by_code,
                    code,
                });
                code += total;
            }
            h /= 2;
        }
    }

    /// Where each point at `positions` (within a block, any order) comes in decoding order:
    /// the index of its code among the block's, as [`pass_lines`](Self::pass_lines) numbers
    /// them.
    fn code_indices(&self, positions: impl Iterator<Item = usize>, out: &mut Vec<usize>) {
        let mut passes = Vec::new();
        self.passes(|p| passes.push(*p));
        let last = self.last_visited();
        out.clear();
        out.extend(positions.map(|i| {
            let spot = self.spot(i);
            if spot.h == 0 {
                return 0;
            }
            let d = usize::from(last[usize::from(spot.axes)]);
            let pass = passes
                .iter()
                .find(|p| p.h == spot.h && p.d == d)
                .expect("every point but the first lies on a pass");
            (0..self.nd).fold(pass.code, |code, e| {
                code + (spot.coords[e] - pass.first[e]) / pass.every[e] * pass.weight[e]
            })
        }));
    }

    /// Runs `line(l, scratch)` for every line of the walk in memory order, pass by pass; a
    /// pass of at least [`SPLIT_PASS`] points in parts, the parts of all such passes tasks of
    /// one [`Spare::share`] (each with its scratch), on an idle core where there is one. The
    /// points of one pass read none of each other, so its parts give their points values at
    /// the same time ([`Disjoint`]); a part waits until every part of the passes before its
    /// own has ended.
    fn run_passes<S: Send>(
        &self,
        spare: &Spare,
        scratch: &mut [S],
        line: impl Fn(Line, &mut S) + Sync,
    ) {
        // Every pass's parts, in order, each with the number of parts before its pass: one
        // task each, of one call to `share`, so a core lent to the walk stays for all of it
        // (handing a core over for each pass cost more than the pass saved).
        let mut parts = Vec::new();
        self.passes(|pass| {
            let outer = pass.outer(true);
            let n = if pass.points() >= SPLIT_PASS {
                outer.min(PASS_PARTS)
            } else {
                1
            };
            let before = parts.len();
            parts.extend(
                (0..n).map(|part| (*pass, part * outer / n..(part + 1) * outer / n, before)),
            );
        });
        // The passes before the first that splits (the coarse levels, a few points each) on
        // this thread, without a core waiting for each.
        let serial = parts
            .iter()
            .position(|p| p.1.len() < p.0.outer(true))
            .unwrap_or(parts.len());
        let Some(first) = scratch.first_mut() else {
            return;
        };
        for (pass, outer, _) in &parts[..serial] {
            self.pass_lines(pass, true, outer.clone(), |l| line(l, first));
        }
        // Parts done, of every pass: a part starts once every part of the passes before its
        // own is done (they are taken in order, so those are all taken, by threads at work).
        let done = AtomicUsize::new(serial);
        // Set by a part that panicked, so no thread waits for it: the panic is the caller's.
        let failed = AtomicBool::new(false);
        spare.share(parts.len() - serial, scratch, |i, s| {
            let (pass, outer, before) = &parts[serial + i];
            let mut spins = 0u32;
            while done.load(Ordering::Acquire) < *before {
                if failed.load(Ordering::Relaxed) {
                    return;
                }
                spins += 1;
                if spins < 1 << 12 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
            let flag = PanicFlag(&failed);
            self.pass_lines(pass, true, outer.clone(), |l| line(l, s));
            std::mem::forget(flag);
            done.fetch_add(1, Ordering::Release);
        });
    }

    /// Reconstructs block `vb` a [`Line`] at a time in memory order
    /// ([`pass_lines`](Self::pass_lines)), each point's value `value(prediction, code, h)` from its
    /// prediction, computed from the values already given, and its code in `kb` (the block's codes
    /// in decoding order, one per value). The block's first point comes alone, at spacing
    /// [`FIRST`], predicted as `first`; a prediction from non-finite neighbours is `first` too. For
    /// an exception (a value stored verbatim; its code is a mark) `value` should give its
    /// prediction, and the caller put the exceptions in place afterwards: so an outlier or a NaN
    /// does not spoil the predictions of its neighbours. Lines of neighbouring points
    /// ([`slice_line`]: most of the finest level's) are read and written as slices. Large passes
    /// are split among idle cores ([`run_passes`](Self::run_passes)).
    fn run_codes_block<T: Element>(
        &self,
        vb: &mut [T],
        kb: &[i32],
        first: f64,
        value: impl Fn(f64, i32, usize) -> T + Copy + Sync,
        spare: &Spare,
    ) {
        vb[0] = value(first, kb[0], FIRST);
        let v = Disjoint::new(vb);
        let mut threads = [(); PASS_PARTS];
        self.run_passes(spare, &mut threads, |l, _| {
            if l.stride == 1 && l.code_stride == 1 && l.hs >= l.count {
                let codes = &kb[l.code..l.code + l.count];
                rebuild_slice(v, l, first, codes, move |p, c| value(p, c, l.h));
            } else {
                interpolate_line(v, l, first, |y, j, p| {
                    *y = value(p, kb[l.code + j * l.code_stride], l.h);
                });
            }
        });
    }

    /// The encoder's walk of [`run_codes_block`](Self::run_codes_block): each point's value
    /// turned into its code against its prediction (`code` and `check`, as
    /// [`Quantizer::code_fn`] gives them, at the level of the point's spacing), stored in `kb`
    /// at the point's place in decoding order, and its value replaced by the reconstruction.
    /// In place, as SZ3 does: a point's value is read where its reconstruction goes (the
    /// points of a line read none of each other, and no point reads one not visited yet). A
    /// point no code meets goes to `exception(scratch, point, value)`, takes its prediction
    /// as its reconstruction, and its code is the mark [`SKIPPED`]. `scratch` is each thread's.
    #[inline(always)]
    fn run_quantize_block<T: Element, S: Send>(
        &self,
        (vb, kb): (&mut [T], &mut [i32]),
        first: f64,
        (spare, scratch): (&Spare, &mut [(LineBlock<T>, S)]),
        (code, check): (
            impl Fn(T, f64, usize) -> (i32, T, bool) + Copy + Sync,
            impl Fn(T, T, usize) -> bool + Copy + Sync,
        ),
        exception: impl Fn(&mut S, usize, T) + Sync,
    ) {
        let level = level_index(FIRST);
        let x = vb[0];
        kb[0] = match code(x, first, level) {
            (q, y, ok) if ok || check(x, y, level) => {
                vb[0] = y;
                q
            }
            _ => {
                exception(&mut scratch[0].1, 0, x);
                vb[0] = T::from_f64(first);
                SKIPPED
            }
        };
        let (v, k) = (Disjoint::new(vb), Disjoint::new(kb));
        self.run_passes(spare, scratch, |l, (block, s)| {
            let level = level_index(l.h);
            quantize_line(
                (v, k),
                l,
                first,
                (
                    move |x, p| code(x, p, level),
                    move |x, y| check(x, y, level),
                ),
                |j, x| exception(s, l.start + j * l.stride, x),
                block,
            );
        });
    }

    /// The prediction of code `k[i]` from the plain codes, point by point (the pricing uses
    /// [`predict_at`](Self::predict_at) with the spots and the order's table computed once).
    #[cfg(test)]
    fn predict(&self, k: &[i32], i: usize) -> i32 {
        self.predict_at(k, i, self.spot(i), &self.last_visited())
    }

    /// Where position `i` sits in the walk: its level `h` is the lowest bit set in any of its
    /// coordinates, and its axis will be the last one visited whose coordinate has that bit.
    fn spot(&self, i: usize) -> Spot {
        let mut j = i % self.block;
        let mut coords = [0usize; MAX_AXES];
        for (c, &s) in coords.iter_mut().zip(&self.strides[..self.nd]) {
            *c = j / s;
            j %= s;
        }
        self.spot_at(coords)
    }

    /// The [`spot`](Self::spot) of each of `positions` (below `n`, the column's length): the
    /// chooser's sample, thousands of points, whose coordinates the divisions by the
    /// block and the strides cost most of (by multiplications where the column is shorter than
    /// 2^32).
    fn spots<'a>(&'a self, positions: &'a [usize], n: usize) -> impl Iterator<Item = Spot> + 'a {
        let fast = n <= u32::MAX as usize;
        let block = Divisor::new(if fast { self.block } else { 1 });
        let strides = self.strides.map(|s| Divisor::new(if fast { s } else { 1 }));
        positions.iter().map(move |&i| {
            if !fast {
                return self.spot(i);
            }
            let mut j = block.div_rem(i as u64).1;
            let mut coords = [0usize; MAX_AXES];
            for (c, s) in coords.iter_mut().zip(&strides[..self.nd]) {
                let (q, r) = s.div_rem(j);
                (*c, j) = (q as usize, r);
            }
            self.spot_at(coords)
        })
    }

    /// For each of the sample's positions (below `n`; by place, each with its place in the
    /// sample: [`Chooser::draw`]), in the sample's order, its level's axes (a bit per axis, 0
    /// for a block's first point) and its code's residual in `k` along each of them (0 along
    /// the others; the code itself for a first point): [`predict_at`](Self::predict_at) for
    /// every order of the axes at once, an order predicting along the last of them it visits.
    fn residuals_along(
        &self,
        k: &[i32],
        (places, draws): &(Vec<usize>, Vec<u32>),
        n: usize,
    ) -> AxisResiduals {
        let mut out = vec![(0u8, [0i32; MAX_AXES]); places.len()];
        for ((&i, s), &j) in places.iter().zip(self.spots(places, n)).zip(draws) {
            let mut r = [0i32; MAX_AXES];
            if s.h == 0 {
                r = [k[i]; MAX_AXES];
            } else {
                for (d, r) in r.iter_mut().enumerate().take(self.nd) {
                    if s.axes >> d & 1 != 0 {
                        let p = interpolate_codes(
                            k,
                            i,
                            s.coords[d],
                            self.shape[d],
                            s.h * self.strides[d],
                            s.h,
                        );
                        *r = k[i].wrapping_sub(p);
                    }
                }
            }
            out[j as usize] = (s.axes, r);
        }
        out
    }

    /// The [`spot`](Self::spot) of the point at `coords` within its block.
    #[inline(always)]
    fn spot_at(&self, coords: [usize; MAX_AXES]) -> Spot {
        let or = coords.iter().fold(0, |o, &c| o | c);
        let h = or & or.wrapping_neg();
        let axes = (0..self.nd).fold(0, |m, a| m | u8::from(coords[a] & h != 0) << a);
        Spot { coords, h, axes }
    }

    /// For each set of axes (a bit per axis), the last of them this order visits.
    fn last_visited(&self) -> [u8; 1 << MAX_AXES] {
        let mut last = [0; 1 << MAX_AXES];
        for (m, l) in last.iter_mut().enumerate() {
            if let Some(&a) = self.order[..self.nd]
                .iter()
                .rev()
                .find(|&&a| m >> a & 1 != 0)
            {
                *l = a as u8;
            }
        }
        last
    }

    /// The prediction of code `k[i]` from the plain codes (for pricing), given the point's
    /// [`spot`](Self::spot) and this order's [`last_visited`](Self::last_visited): so every
    /// order of the axes is priced on the same sample with the spots computed once.
    #[inline]
    fn predict_at(&self, k: &[i32], i: usize, spot: Spot, last: &[u8; 1 << MAX_AXES]) -> i32 {
        if spot.h == 0 {
            return 0;
        }
        let (d, h) = (usize::from(last[usize::from(spot.axes)]), spot.h);
        interpolate_codes(k, i, spot.coords[d], self.shape[d], h * self.strides[d], h)
    }
}

/// Sets its flag when dropped, which happens only while a panic unwinds through its holder
/// (it is forgotten otherwise): see [`Interp::run_passes`].
struct PanicFlag<'a>(&'a AtomicBool);

impl Drop for PanicFlag<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Each sample point's level axes and residual along each ([`Interp::residuals_along`]).
type AxisResiduals = Vec<(u8, [i32; MAX_AXES])>;

/// Division of dividends below 2^32 by a fixed divisor below 2^32, by a multiplication
/// (Lemire, Kaser and Kurz, "Faster remainder by direct computation", 2019: with
/// `m = ⌊(2^64 − 1)/d⌋ + 1`, `⌊m·x / 2^64⌋` is `⌊x/d⌋` for every such `x`).
#[derive(Debug, Clone, Copy)]
struct Divisor {
    d: u64,
    m: u64,
}

impl Divisor {
    fn new(d: usize) -> Self {
        let d = d as u64;
        debug_assert!(d >= 1 && d <= u64::from(u32::MAX));
        // 1 has no such `m` below 2^64: its quotient is the dividend.
        let m = if d > 1 { u64::MAX / d + 1 } else { 0 };
        Divisor { d, m }
    }

    /// `(x / d, x % d)` for `x` below 2^32.
    #[inline(always)]
    fn div_rem(self, x: u64) -> (u64, u64) {
        debug_assert!(x <= u64::from(u32::MAX));
        if self.d == 1 {
            return (x, 0);
        }
        let q = ((u128::from(self.m) * u128::from(x)) >> 64) as u64;
        (q, x - q * self.d)
    }
}

/// A point's place in an interpolation's walk ([`Interp::spot`]): its coordinates, its level
/// (0 for a block's first point) and the axes whose coordinate has the level's bit.
#[derive(Debug, Clone, Copy)]
struct Spot {
    coords: [usize; MAX_AXES],
    h: usize,
    axes: u8,
}

/// Which neighbours of a point at `c` (an odd multiple of `h` on an axis of `len` points)
/// exist: `Err(left)` past the far edge (whether `c − 3h` does), else whether `c − 3h` and
/// `c + 3h` do.
#[inline(always)]
fn reach(c: usize, len: usize, h: usize) -> Result<(bool, bool), bool> {
    if c + h < len {
        Ok((c >= 3 * h, c + 3 * h < len))
    } else {
        Err(c >= 3 * h)
    }
}

/// The interpolation of code `k[pos]` from the codes at `±h`, `±3h` (`hs` apart in `k`): cubic
/// `(−a + 9b + 9c − d)/16` where all four exist, quadratic at the edges, the mean of two;
/// past the far edge, the linear extrapolation `(3b − a)/2` of the two before it, or the one;
/// rounded in `i64`.
#[inline(always)]
fn interpolate_codes(k: &[i32], pos: usize, c: usize, len: usize, hs: usize, h: usize) -> i32 {
    let at = |i: usize| i64::from(k[i]);
    let b = at(pos - hs);
    let sides = match reach(c, len, h) {
        Ok(sides) => sides,
        Err(true) => return ((3 * b - at(pos - 3 * hs) + 1) >> 1) as i32,
        Err(false) => return b as i32,
    };
    let n = at(pos + hs);
    let p = match sides {
        (true, true) => (9 * (b + n) - at(pos - 3 * hs) - at(pos + 3 * hs) + 8) >> 4,
        (false, true) => (3 * b + 6 * n - at(pos + 3 * hs) + 4) >> 3,
        (true, false) => (6 * b + 3 * n - at(pos - 3 * hs) + 4) >> 3,
        (false, false) => (b + n + 1) >> 1,
    };
    p as i32
}

/// The same interpolation on values, in `f64` with a fixed order of operations (no fused
/// multiply-add), so encoder and decoder compute the same bits: the point-wise reference
/// [`predict_block`] is tested against.
#[cfg(test)]
fn interpolate_values<T: Element>(
    v: &[T],
    pos: usize,
    c: usize,
    len: usize,
    hs: usize,
    h: usize,
) -> f64 {
    let at = |i: usize| v[i].to_f64();
    let b = at(pos - hs);
    let sides = match reach(c, len, h) {
        Ok(sides) => sides,
        Err(true) => return (3.0 * b - at(pos - 3 * hs)) * 0.5,
        Err(false) => return b,
    };
    let n = at(pos + hs);
    match sides {
        (true, true) => (9.0 * (b + n) - (at(pos - 3 * hs) + at(pos + 3 * hs))) * 0.0625,
        (false, true) => (3.0 * b + 6.0 * n - at(pos + 3 * hs)) * 0.125,
        (true, false) => (6.0 * b + 3.0 * n - at(pos - 3 * hs)) * 0.125,
        (false, false) => (b + n) * 0.5,
    }
}
/// The points of one level and axis of an interpolation's walk ([`Interp::passes`]): along
/// axis `d` the odd multiples of `h`, along each axis `e` the coordinates `first[e]`,
/// `first[e] + every[e]`, … (`count[e]` of them); in decoding order from `code`, the axes in
/// the order `by_code` (`d` first), consecutive points along `e` `weight[e]` codes apart.
#[derive(Debug, Clone, Copy)]
struct Pass {
    h: usize,
    d: usize,
    first: [usize; MAX_AXES],
    every: [usize; MAX_AXES],
    count: [usize; MAX_AXES],
    weight: [usize; MAX_AXES],
    by_code: [usize; MAX_AXES],
    code: usize,
}

impl Pass {
    /// The order of the loops over the axes that [`Interp::pass_lines`] walks the pass in: memory
    /// order, or decoding order.
    fn loops(&self, memory: bool) -> [usize; MAX_AXES] {
        if memory { [0, 1, 2] } else { self.by_code }
    }

    /// How many indices the pass's outermost loop takes (1 on a 1-D grid).
    fn outer(&self, memory: bool) -> usize {
        self.count[self.loops(memory)[0]]
    }

    /// How many points the pass predicts.
    fn points(&self) -> usize {
        self.count.iter().product()
    }
}

/// Points of one level and axis that read none of each other: `count` points from `start`,
/// `stride` apart, each at coordinate `c` (an odd multiple of `h`) of an axis of `len` points
/// whose neighbours are `hs` apart. They share their edge case ([`reach`]), so a line is
/// predicted in one tight loop per case ([`predict_block`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line {
    start: usize,
    count: usize,
    stride: usize,
    c: usize,
    len: usize,
    hs: usize,
    h: usize,
    /// Where the first point's code is in decoding order, counted from the block's first
    /// point (whose code is 0; exceptions counted as if they had one).
    code: usize,
    /// How far apart in decoding order the codes of consecutive points are.
    code_stride: usize,
}

impl Line {
    /// The positions of the line's points.
    fn points(self) -> impl Iterator<Item = usize> {
        (0..self.count).map(move |j| self.start + j * self.stride)
    }
}

/// Expands `$each!([names] prediction)` with the interpolation of a point from its neighbours
/// for line `$l`'s edge case ([`reach`]), the same along a line, so chosen once per line: the
/// neighbours it reads named (`neighbour!`, below: `b` and `o` the nearer before and on, `a` and `d`
/// the farther), each bound by `$each` to its value in `f64`; the arithmetic of
/// `interpolate_values` (the tests' point-wise reference), with a fixed order of operations
/// (no fused multiply-add), so encoder and decoder compute the same bits on any path.
macro_rules! by_edge_case {
    ($l:expr, $each:ident) => {{
        match reach($l.c, $l.len, $l.h) {
            Err(true) => $each!([b, a] (3.0 * b - a) * 0.5),
            Err(false) => $each!([b] b),
            Ok((true, true)) => $each!([b, o, a, d] (9.0 * (b + o) - (a + d)) * 0.0625),
            Ok((false, true)) => $each!([b, o, d] (3.0 * b + 6.0 * o - d) * 0.125),
            Ok((true, false)) => $each!([b, o, a] (6.0 * b + 3.0 * o - a) * 0.125),
            Ok((false, false)) => $each!([b, o] (b + o) * 0.5),
        }
    }};
}

/// Where [`by_edge_case`]'s neighbour `b`, `o`, `a` or `d` of the point at `$p` lies, for
/// neighbours `$hs` apart: `∓hs`, `∓3·hs`.
macro_rules! neighbour {
    (b, $p:expr, $hs:expr) => {
        $p - $hs
    };
    (o, $p:expr, $hs:expr) => {
        $p + $hs
    };
    (a, $p:expr, $hs:expr) => {
        $p - 3 * $hs
    };
    (d, $p:expr, $hs:expr) => {
        $p + 3 * $hs
    };
}

/// Points of a line the encoder codes at a time ([`quantize_line`]).
const LINE_BLOCK: usize = 64;

/// The predictions of `n` points of line `l` from its point `j0` on, into `ps`: each point's
/// interpolation from its neighbours ([`by_edge_case`]), or `first` where that is not finite.
/// The neighbours are no point of the line's pass, so no task writes them meanwhile. On a
/// line of points `stride` apart, each neighbour's values are gathered into `near` first, so
/// the arithmetic runs in vector lanes either way.
#[inline(always)]
#[allow(unsafe_code)]
fn predict_block<T: Element>(
    v: Disjoint<'_, T>,
    (l, j0): (Line, usize),
    first: f64,
    ps: &mut [f64],
    near: &mut [[T; LINE_BLOCK]; 4],
) {
    let (n, stride) = (ps.len(), l.stride);
    let s0 = l.start + j0 * stride;
    let last = s0 + (n - 1) * stride;
    let [near_b, near_o, near_a, near_d] = near;
    macro_rules! gathered {
        (b) => {
            near_b
        };
        (o) => {
            near_o
        };
        (a) => {
            near_a
        };
        (d) => {
            near_d
        };
    }
    macro_rules! each {
        ([$($n:ident),*] $e:expr) => {{
            $(v.check(neighbour!($n, s0, l.hs), neighbour!($n, last, l.hs));)*
            // SAFETY: in bounds (checked above), and written by no task now.
            $(let $n: &[T] = if stride == 1 {
                unsafe { v.slice(neighbour!($n, s0, l.hs), n) }
            } else {
                let near = &mut gathered!($n)[..n];
                for (i, x) in near.iter_mut().enumerate() {
                    *x = unsafe { v.get(neighbour!($n, s0 + i * stride, l.hs)) };
                }
                near
            };)*
            for (i, p) in ps.iter_mut().enumerate() {
                $(let $n = $n[i].to_f64();)*
                let x: f64 = $e;
                *p = if x.is_finite() { x } else { first };
            }
        }};
    }
    by_edge_case!(l, each)
}

with_avx2! {
    /// The encoder's walk along a line: each point of line `l` coded against its prediction
    /// (`first` where that is not finite), [`LINE_BLOCK`] points at a time — their predictions
    /// ([`predict_block`]), then `code(value, prediction)` for all of them (branch-free, so it
    /// runs in vector lanes), then `check(value, reconstruction)` for those `code` does not call
    /// clear; one that fails goes to `exception(j, value)` and takes its prediction, its code the
    /// mark [`SKIPPED`]. Each point's reconstruction goes in its place in `v`, its code at its
    /// place in decoding order in `k`. The same predictions and codes as point by point, on
    /// every path ([`with_avx2`]).
    fn quantize_line<T>(
        vk: (Disjoint<'_, T>, Disjoint<'_, i32>),
        l: Line,
        first: f64,
        coding: (impl Fn(T, f64) -> (i32, T, bool), impl Fn(T, T) -> bool),
        exception: impl FnMut(usize, T),
        block: &mut LineBlock<T>,
    ) = quantize_line_body;
}

#[inline(always)]
#[allow(unsafe_code)]
fn quantize_line_body<T: Element>(
    (v, k): (Disjoint<'_, T>, Disjoint<'_, i32>),
    l: Line,
    first: f64,
    (code, check): (impl Fn(T, f64) -> (i32, T, bool), impl Fn(T, T) -> bool),
    mut exception: impl FnMut(usize, T),
    block: &mut LineBlock<T>,
) {
    if l.count == 0 {
        return;
    }
    let stride = l.stride;
    v.check(l.start, l.start + (l.count - 1) * stride);
    k.check(l.code, l.code + (l.count - 1) * l.code_stride);
    let LineBlock {
        ps,
        xs,
        ys,
        qs,
        clear,
        near,
    } = block;
    for j0 in (0..l.count).step_by(LINE_BLOCK) {
        let (n, s0) = ((l.count - j0).min(LINE_BLOCK), l.start + j0 * stride);
        predict_block(v, (l, j0), first, &mut ps[..n], near);
        // SAFETY (every access below): in bounds (checked above); the points and their codes
        // are this line's alone, and no line of the pass reads them.
        if stride == 1 {
            xs[..n].copy_from_slice(unsafe { v.slice(s0, n) });
        } else {
            for (i, x) in xs[..n].iter_mut().enumerate() {
                *x = unsafe { v.get(s0 + i * stride) };
            }
        }
        let mut all = true;
        for i in 0..n {
            let (q, y, ok) = code(xs[i], ps[i]);
            (qs[i], ys[i], clear[i]) = (q, y, ok);
            all &= ok;
        }
        if !all {
            for i in 0..n {
                if !clear[i] && !check(xs[i], ys[i]) {
                    exception(j0 + i, xs[i]);
                    (qs[i], ys[i]) = (SKIPPED, T::from_f64(ps[i]));
                }
            }
        }
        if stride == 1 {
            unsafe { v.slice_mut(s0, n) }.copy_from_slice(&ys[..n]);
        } else {
            for (i, &y) in ys[..n].iter().enumerate() {
                unsafe { *v.slot(s0 + i * stride) = y };
            }
        }
        let c0 = l.code + j0 * l.code_stride;
        if l.code_stride == 1 {
            unsafe { k.slice_mut(c0, n) }.copy_from_slice(&qs[..n]);
        } else {
            for (i, &q) in qs[..n].iter().enumerate() {
                unsafe { *k.slot(c0 + i * l.code_stride) = q };
            }
        }
    }
}

/// A block of a line's points in [`quantize_line`]: predictions, values, reconstructions,
/// codes, and whether each is clear of the bound. A task's own, so no line pays to set it up.
pub(crate) struct LineBlock<T> {
    ps: [f64; LINE_BLOCK],
    xs: [T; LINE_BLOCK],
    ys: [T; LINE_BLOCK],
    qs: [i32; LINE_BLOCK],
    clear: [bool; LINE_BLOCK],
    /// A strided line's neighbours, each gathered ([`predict_block`]).
    near: [[T; LINE_BLOCK]; 4],
}

impl<T: Element> Default for LineBlock<T> {
    fn default() -> Self {
        let zero = T::from_f64(0.0);
        LineBlock {
            ps: [0.0; LINE_BLOCK],
            xs: [zero; LINE_BLOCK],
            ys: [zero; LINE_BLOCK],
            qs: [0; LINE_BLOCK],
            clear: [false; LINE_BLOCK],
            near: [[zero; LINE_BLOCK]; 4],
        }
    }
}

/// Gives every point of line `l` its value: `put(slot, j, prediction)` for the point `j` on
/// the line, with the prediction from the values in `v`, or `first` where that is not finite.
/// The points may be given their values by other tasks' lines of the same pass meanwhile
/// ([`Disjoint`]): a line reads and writes only its own points and reads their neighbours,
/// which no line of its pass writes.
#[inline(always)]
#[allow(unsafe_code)]
fn interpolate_line<T: Element>(
    v: Disjoint<'_, T>,
    l: Line,
    first: f64,
    mut put: impl FnMut(&mut T, usize, f64),
) {
    if l.count == 0 {
        return;
    }
    let last = l.start + (l.count - 1) * l.stride;
    macro_rules! each {
        ([$($n:ident),*] $e:expr) => {{
            // The line's points and each neighbour's places run from the first point's to
            // the last's.
            v.check(l.start, last);
            $(v.check(neighbour!($n, l.start, l.hs), neighbour!($n, last, l.hs));)*
            for (j, p) in l.points().enumerate() {
                // SAFETY: in bounds (checked above); a neighbour is no point of this pass, so
                // no task writes it now.
                $(let $n = unsafe { v.get(neighbour!($n, p, l.hs)) }.to_f64();)*
                let x: f64 = $e;
                // SAFETY: in bounds; the point is this line's alone, and no line of its pass
                // reads it.
                put(unsafe { v.slot(p) }, j, if x.is_finite() { x } else { first });
            }
        }};
    }
    by_edge_case!(l, each)
}

/// [`interpolate_line`] for a line of neighbouring points (`stride` 1) whose neighbours lie
/// outside it (`hs >= count`, as they do: a line along the last axis predicts from the rows or
/// planes `hs` away): `put(point, j, prediction)` for each point `j` (`first` where the
/// prediction is not finite), the line and its neighbours as disjoint slices, which the
/// compiler vectorizes.
#[inline(always)]
#[allow(unsafe_code)]
fn slice_line<T: Element>(
    v: Disjoint<'_, T>,
    l: Line,
    first: f64,
    mut put: impl FnMut(&mut T, usize, f64),
) {
    let (n, hs, s) = (l.count, l.hs, l.start);
    debug_assert!(l.stride == 1 && hs >= n);
    // SAFETY: the line's points are its own (no other line of the pass writes or reads them),
    // and its neighbours, `hs >= n` away, are none of them nor points of its pass, so nothing
    // writes them while they are read.
    let line = unsafe { v.slice_mut(s, n) };
    // The line's neighbours `m·hs` back from its points, and `m·hs` on, as [`neighbour!`]
    // names them.
    let back = |m: usize| unsafe { v.slice(s - m * hs, n) };
    let on = |m: usize| unsafe { v.slice(s + m * hs, n) };
    macro_rules! side {
        (b) => {
            back(1)
        };
        (o) => {
            on(1)
        };
        (a) => {
            back(3)
        };
        (d) => {
            on(3)
        };
    }
    macro_rules! each {
        ([$($n:ident),*] $e:expr) => {{
            $(let $n = side!($n);)*
            for (j, y) in line.iter_mut().enumerate() {
                $(let $n = $n[j].to_f64();)*
                let x: f64 = $e;
                put(y, j, if x.is_finite() { x } else { first });
            }
        }};
    }
    by_edge_case!(l, each)
}

with_avx2! {
    /// The decoder's [`slice_line`]: each point `j` of line `l` given `value(prediction,
    /// codes[j])`, in vector lanes as wide as the CPU has ([`with_avx2`]; the same values on
    /// every path).
    fn rebuild_slice<T>(
        v: Disjoint<'_, T>,
        l: Line,
        first: f64,
        codes: &[i32],
        value: impl Fn(f64, i32) -> T,
    ) = rebuild_slice_body;
}

#[inline(always)]
fn rebuild_slice_body<T: Element>(
    v: Disjoint<'_, T>,
    l: Line,
    first: f64,
    codes: &[i32],
    value: impl Fn(f64, i32) -> T,
) {
    let codes = &codes[..l.count];
    slice_line(v, l, first, |y, j, p| *y = value(p, codes[j]));
}

/// A predictor's neighbours: `k[i]`'s prediction is the alternating sum of `k[i − offs[m]]`
/// over the non-empty subsets `m` of axes along which `i` has a neighbour.
#[derive(Debug, Clone, Copy)]
struct Stencil {
    axes: [Axis; MAX_AXES],
    n: usize,
    offs: [usize; 1 << MAX_AXES],
    /// Each axis's period as a [`Divisor`], where it is below 2^32 (the others span the
    /// column).
    periods: [Option<Divisor>; MAX_AXES],
}

impl Stencil {
    fn new(axes: [Axis; MAX_AXES], n: usize) -> Self {
        let mut offs = [0; 1 << MAX_AXES];
        for (m, off) in offs.iter_mut().enumerate() {
            *off = (0..n).filter(|a| m >> a & 1 == 1).map(|a| axes[a].0).sum();
        }
        let periods = axes.map(|(_, period)| {
            (1..=u32::MAX as usize)
                .contains(&period)
                .then(|| Divisor::new(period))
        });
        Stencil {
            axes,
            n,
            offs,
            periods,
        }
    }

    /// The prediction of `k[i]` from the codes before it.
    #[inline]
    fn predict(&self, k: &[i32], i: usize) -> i32 {
        let mut valid = 0usize;
        for (a, (&(stride, period), div)) in
            self.axes[..self.n].iter().zip(&self.periods).enumerate()
        {
            // `i % period`, by a multiplication where both are below 2^32 (the random
            // positions of the chooser's sample, whose divisions cost most of its pricing).
            let r = match div {
                Some(d) if i <= u32::MAX as usize => d.div_rem(i as u64).1 as usize,
                _ if period == usize::MAX => i,
                _ => i % period,
            };
            if r >= stride {
                valid |= 1 << a;
            }
        }
        let at = |mask: usize| k[i - self.offs[mask]];
        // Inside the grid (most points) the whole stencil, its signs known.
        match self.n {
            1 if valid == 1 => return at(1),
            2 if valid == 3 => return at(1).wrapping_add(at(2)).wrapping_sub(at(3)),
            3 if valid == 7 => {
                let faces = at(1).wrapping_add(at(2)).wrapping_add(at(4));
                let edges = at(3).wrapping_add(at(5)).wrapping_add(at(6));
                return faces.wrapping_sub(edges).wrapping_add(at(7));
            }
            _ => {}
        }
        let mut p = 0i32;
        for mask in 1..(1usize << self.n) {
            if mask & !valid == 0 {
                let v = k[i - self.offs[mask]];
                p = if mask.count_ones() % 2 == 1 {
                    p.wrapping_add(v)
                } else {
                    p.wrapping_sub(v)
                };
            }
        }
        p
    }

    /// Appends the residuals of positions `b..e` to `out`.
    fn push_residuals(&self, k: &[i32], b: usize, e: usize, out: &mut Vec<i32>) {
        match self.n {
            0 => out.extend_from_slice(&k[b..e]),
            1 if self.axes[0] == (1, usize::MAX) => {
                if b == 0 && e > 0 {
                    out.push(k[0]);
                }
                let s = b.max(1);
                out.extend(
                    k[s..e]
                        .iter()
                        .zip(&k[s - 1..e - 1])
                        .map(|(x, y)| x.wrapping_sub(*y)),
                );
            }
            _ => out.extend((b..e).map(|i| k[i].wrapping_sub(self.predict(k, i)))),
        }
    }
}

/// The blocks of one period: `(start, end)` pairs covering `0..len`.
fn periods(len: usize, period: usize) -> impl Iterator<Item = (usize, usize)> {
    let period = period.min(len.max(1));
    (0..len)
        .step_by(period)
        .map(move |b| (b, (b + period).min(len)))
}

/// `a[i] −= a[i − stride]` wherever the neighbour exists, on the original values.
fn difference(a: &mut [i32], stride: usize, period: usize) {
    for (b, e) in periods(a.len(), period) {
        let block = &mut a[b..e];
        // From the last sub-block of `stride` values down, each minus the one before it (not
        // yet changed), so the slices do not overlap and the loop vectorizes.
        let subs = block.len().div_ceil(stride);
        for t in (1..subs).rev() {
            let (lo, hi) = block.split_at_mut(t * stride);
            let prev = &lo[(t - 1) * stride..];
            for (x, &y) in hi.iter_mut().zip(prev) {
                *x = x.wrapping_sub(y);
            }
        }
    }
}

/// The inverse of [`difference`]: `a[i] += a[i − stride]` in increasing order.
fn prefix_sum(a: &mut [i32], stride: usize, period: usize) {
    for (b, e) in periods(a.len(), period) {
        let block = &mut a[b..e];
        if stride == 1 {
            let mut acc = 0i32;
            for x in block.iter_mut() {
                acc = acc.wrapping_add(*x);
                *x = acc;
            }
            continue;
        }
        let subs = block.len().div_ceil(stride);
        for t in 1..subs {
            let (lo, hi) = block.split_at_mut(t * stride);
            let prev = &lo[(t - 1) * stride..];
            for (x, &y) in hi.iter_mut().zip(prev) {
                *x = x.wrapping_add(y);
            }
        }
    }
}

/// Values sampled from a column when estimating a predictor's cost: 1/64 of the column, at
/// least 4096 (or all of it) and at most 16384.
const SAMPLE: (usize, usize) = (4096, 16384);

/// Values sampled from a column of `n` values ([`SAMPLE`]).
fn sample_len(n: usize) -> usize {
    (n / 64).clamp(SAMPLE.0, SAMPLE.1)
}
/// Codes below this magnitude get a histogram bin each; larger ones are priced as the entropy
/// stage's hybrid tokens (a bin per sign, length and two leading bits, the other bits raw).
const EXACT: i32 = 1 << 16;

/// Chooses the cheapest predictor for a column by estimating, on a sample of its codes, the
/// order-0 entropy of what each would store.
#[derive(Debug, Default)]
pub(crate) struct Chooser {
    /// The cheapest interpolation (predictor, axis order, bits per value) of the last
    /// [`choose`](Self::choose), if one applied.
    interp: Option<(Predictor, Interp, f64)>,
    /// Each thread's scratch for pricing ([`Pricing`]); the caller's first.
    pricing: Vec<Pricing>,
    /// The sample's positions, in the order drawn (the order its residuals are priced in).
    positions: Vec<usize>,
    /// The same positions in increasing order, each with its place in `positions`: residuals
    /// are computed in memory order, each put at its place in the sample.
    by_place: (Vec<usize>, Vec<u32>),
    /// The column length `positions` were drawn for (0 for none).
    drawn_for: usize,
}

/// One thread's scratch for pricing a predictor: its residuals on the sample, and a histogram.
#[derive(Debug, Default)]
struct Pricing {
    sample: Vec<i32>,
    counts: Vec<u32>,
    touched: Vec<u32>,
}

impl Chooser {
    /// Draws `m` positions below `n` uniformly (a fixed LCG, so the output is reproducible)
    /// into `positions`, and sorts them into `by_place`: the same for every column of `n`
    /// values, so a worker's chunks of one length draw once.
    fn draw(&mut self, n: usize, m: usize) {
        self.positions.clear();
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..m {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.positions
                .push(((u128::from(seed) * n as u128) >> 64) as usize);
        }
        let mut order: Vec<(usize, u32)> = (self.positions.iter())
            .enumerate()
            .map(|(j, &i)| (i, j as u32))
            .collect();
        order.sort_unstable();
        let (places, draws) = &mut self.by_place;
        places.clear();
        draws.clear();
        for (i, j) in order {
            places.push(i);
            draws.push(j);
        }
        self.drawn_for = n;
    }

    /// The size of the sample of a column of `n` values, drawn here if not yet; `None` where
    /// the whole column is priced.
    fn draw_for(&mut self, n: usize) -> Option<usize> {
        let m = sample_len(n);
        if n <= m {
            return None;
        }
        if self.drawn_for != n {
            self.draw(n, m);
        }
        Some(m)
    }

    /// The positions [`choose`](Self::choose) reads the codes of a column of `n` values on
    /// `grid` at, where that is a sample and not the whole column (a column of a table: only
    /// the centre and the previous value apply there): each sampled position and the one
    /// before it, some more than once. Draws the sample if not yet drawn. `None` where
    /// `choose` reads the whole column or other neighbours.
    pub(crate) fn sampled_reads(
        &mut self,
        grid: Grid,
        n: usize,
    ) -> Option<impl Iterator<Item = usize> + '_> {
        let mut stencils = Predictor::ALL.into_iter().filter(|p| p.applies(grid, n));
        if n < 64 || !stencils.all(|p| matches!(p, Predictor::Centre | Predictor::Previous)) {
            return None;
        }
        self.draw_for(n)?;
        Some(
            self.by_place
                .0
                .iter()
                .flat_map(|&i| [i.saturating_sub(1), i]),
        )
    }

    /// The predictor for codes `k` (the plain codes; exceptions may hold any value) on
    /// `grid` among the centre and the neighbour predictors, and its estimated bits per value.
    /// Centre unless another is estimated at least 2% cheaper. The cheapest interpolation is
    /// kept aside ([`interp`](Self::interp)): it codes values, not `k`.
    ///
    /// Each stencil and each interpolation's axis order is priced on its own, on cores
    /// borrowed from `spare` where they are idle (a chunk left to code alone); the choice is
    /// made from the prices afterwards in a fixed order, so it is the same whoever priced what.
    pub(crate) fn choose(&mut self, grid: Grid, k: &[i32], spare: &Spare) -> (Predictor, f64) {
        let n = k.len();
        self.interp = None;
        if n < 64 {
            return (Predictor::Centre, f64::INFINITY);
        }
        // Positions drawn uniformly: contiguous blocks would see only a few rows of a field,
        // or its edges, where the neighbour predictors fall back to fewer neighbours.
        let drawn = self.draw_for(n);
        let whole = drawn.is_none();
        let samples = drawn.unwrap_or(n);
        let mut rules = Vec::new();
        for p in Predictor::ALL {
            match p.rule(grid, n) {
                Some(Rule::Interp(ip)) => rules.extend(ip.orders().map(|o| (p, Rule::Interp(o)))),
                Some(rule) => rules.push((p, rule)),
                None => {}
            }
        }
        // An interpolation's residuals on the sample, the same for every order of its axes:
        // a point's prediction is along the last of its level's axes that the order visits,
        // so each point's residual along each of those axes, computed once per predictor, by
        // the first of its orders' tasks to need them.
        let along: [(Predictor, OnceLock<AxisResiduals>); 2] =
            [Predictor::Interp, Predictor::InterpPlanes].map(|p| (p, OnceLock::new()));
        // A task per rule, each interpolation's first order first (they compute the
        // residuals), then the stencils, then the other orders.
        let mut tasks: Vec<usize> = (0..rules.len()).collect();
        let first_order = |r: usize| {
            let (p, rule) = rules[r];
            match rule {
                Rule::Interp(_) => rules[..r].iter().all(|q| q.0 != p),
                Rule::Stencil(_) => false,
            }
        };
        tasks.sort_by_key(|&r| match rules[r].1 {
            _ if first_order(r) => 0,
            Rule::Stencil(_) => 1,
            Rule::Interp(_) => 2,
        });
        // Each rule's estimated bits, as `f64` bits.
        let bits: Vec<AtomicU64> = rules.iter().map(|_| AtomicU64::new(0)).collect();
        let by_place = &self.by_place;
        let scratch = crate::segments::threads(&mut self.pricing, tasks.len());
        spare.share(tasks.len(), scratch, |t, pricing| {
            let r = tasks[t];
            let (p, rule) = rules[r];
            let sample = &mut pricing.sample;
            sample.clear();
            match rule {
                _ if whole => rule.push_residuals(k, 0, n, sample),
                Rule::Interp(ip) => {
                    let at = along
                        .iter()
                        .find(|a| a.0 == p)
                        .expect("an interpolation predictor")
                        .1
                        .get_or_init(|| ip.residuals_along(k, by_place, n));
                    let last = ip.last_visited();
                    let pick = |&(axes, r): &(u8, [i32; MAX_AXES])| {
                        r[usize::from(last[usize::from(axes)])]
                    };
                    sample.extend(at.iter().map(pick));
                }
                Rule::Stencil(st) => {
                    let (places, draws) = by_place;
                    sample.resize(places.len(), 0);
                    for (&i, &j) in places.iter().zip(draws) {
                        sample[j as usize] = k[i].wrapping_sub(st.predict(k, i));
                    }
                }
            }
            let b = pricing.estimate_bits() * if p == Predictor::Centre { 0.98 } else { 1.0 };
            bits[r].store(b.to_bits(), Ordering::Relaxed);
        });
        let mut best = (f64::INFINITY, Predictor::Centre);
        for ((p, rule), b) in rules.into_iter().zip(bits) {
            let b = f64::from_bits(b.into_inner());
            let per_value = b / samples as f64;
            match rule {
                Rule::Interp(ip) => {
                    if self.interp.is_none_or(|(_, _, x)| per_value < x) {
                        self.interp = Some((p, ip, per_value));
                    }
                }
                Rule::Stencil(_) => {
                    if b < best.0 {
                        best = (b, p);
                    }
                }
            }
        }
        (best.1, best.0 / samples as f64)
    }

    /// The cheapest interpolation found by the last [`choose`](Self::choose): predictor, axis
    /// order, estimated bits per value (on the plain codes; sequential coding does better).
    pub(crate) fn interp(&self) -> Option<(Predictor, Interp, f64)> {
        self.interp
    }

    /// Estimated bits per value of coding the stream `k` as it is (on the same sample
    /// positions as the last [`choose`](Self::choose) of a column of the same length).
    pub(crate) fn estimate(&mut self, k: &[i32]) -> f64 {
        let n = k.len();
        let positions = &self.positions;
        let pricing = &mut crate::segments::threads(&mut self.pricing, 1)[0];
        pricing.sample.clear();
        if n <= sample_len(n) || positions.is_empty() {
            pricing.sample.extend_from_slice(k);
        } else {
            pricing
                .sample
                .extend(positions.iter().map(|&i| k[i.min(n - 1)]));
        }
        pricing.estimate_bits() / pricing.sample.len().max(1) as f64
    }
}

impl Pricing {
    /// Estimated bits to code `self.sample` at its order-0 entropy (with the Miller–Madow
    /// correction for the unseen part of the alphabet, and codes beyond `±EXACT` priced by
    /// their length).
    fn estimate_bits(&mut self) -> f64 {
        let wide = 2 * EXACT as usize;
        // Only the bins touched are read and reset, so a wide histogram costs nothing extra.
        // Zeroed by the allocator (untouched pages cost nothing), and kept zero after use.
        if self.counts.is_empty() {
            self.counts = vec![0; wide + 2 * 33 * 4];
        }
        self.touched.clear();
        let mut extra = 0.0;
        for &c in &self.sample {
            let bin = if c > -EXACT && c < EXACT {
                (c + EXACT) as usize
            } else {
                let m = c.unsigned_abs();
                let len = 32 - m.leading_zeros();
                extra += f64::from(len - 3);
                let top = (m >> (len - 3)) & 3;
                wide + ((len as usize * 4 + top as usize) << 1) + usize::from(c < 0)
            };
            if self.counts[bin] == 0 {
                self.touched.push(bin as u32);
            }
            self.counts[bin] += 1;
        }
        let total = self.sample.len() as f64;
        let mut bits = extra;
        for &b in &self.touched {
            let c = f64::from(std::mem::take(&mut self.counts[b as usize]));
            bits += c * (total / c).log2();
        }
        let distinct = self.touched.len() as f64;
        bits + (distinct - 1.0).max(0.0) / (2.0 * std::f64::consts::LN_2)
    }
}

/// Whether every residual fits the code range the entropy stage takes.
pub(crate) fn codes_in_range(d: &[i32]) -> bool {
    let lim = MAX_CODE as i32;
    d.iter().all(|&c| (-lim..=lim).contains(&c))
}

/// An exception's place among [`Interp::quantize`]'s codes (no code is this far out:
/// [`MAX_CODE`]).
const SKIPPED: i32 = i32::MIN;

/// Coding a column along an interpolation: each value quantized against the interpolation of
/// the reconstructed values before it, so encoder and decoder walk the same way.
impl Interp {
    /// Quantizes `col` along this interpolation, sequentially: the codes of the values that
    /// are not exceptions into `k` in decoding order (so the coarse levels, whose residuals are
    /// larger, fill their own segments), the exceptions into `exc` (by position), the
    /// reconstruction into `rec`. `fallback` is the value predicted from non-finite neighbours.
    pub(crate) fn quantize<T: Element>(
        self,
        col: &[T],
        (q, fallback): (Quantizer, f64),
        (k, exc, rec): (&mut Vec<i32>, &mut Exceptions<T>, &mut Vec<T>),
        spare: &Spare,
    ) {
        let n = col.len();
        // The codes in decoding order, where the walk in memory order finds them; an
        // exception's place is marked, and dropped at the end.
        k.clear();
        k.resize(n, SKIPPED);
        // In place ([`run_quantize_block`](Self::run_quantize_block)).
        rec.clear();
        rec.extend_from_slice(col);
        exc.clear();
        // Level-wise steps (linear columns only): a step per level.
        let steps = self.level_steps(q.step);
        // Blocks (the planes of `InterpPlanes`) are independent: each its own task, on an idle
        // core where there is one, with its codes, reconstructions and exceptions.
        let blocks: Vec<_> = (rec
            .chunks_exact_mut(self.block)
            .zip(k.chunks_exact_mut(self.block)))
        .map(|(vb, kb)| Mutex::new((vb, kb, Exceptions::<T>::default())))
        .collect();
        /// A block's values (then reconstructions), codes and exceptions.
        type Block<'b, T> = Mutex<(&'b mut [T], &'b mut [i32], Exceptions<T>)>;
        struct Walk<'a, 'b, T> {
            ip: Interp,
            blocks: &'a [Block<'b, T>],
            fallback: f64,
            spare: &'a Spare,
        }
        impl<T: Element> crate::residual::CodeUser<T, ()> for Walk<'_, '_, T> {
            fn run(
                self,
                code: impl Fn(T, f64, usize) -> (i32, T, bool) + Copy + Sync,
                check: impl Fn(T, T, usize) -> bool + Copy + Sync,
            ) {
                let Walk {
                    ip,
                    blocks,
                    fallback,
                    spare,
                } = self;
                // Each thread's line blocks and exceptions, for the parts of large passes:
                // set up once, not for every block.
                type Parts<T> = Box<[(LineBlock<T>, Exceptions<T>); PASS_PARTS]>;
                let mut threads: Vec<Parts<T>> = Vec::new();
                threads.resize_with(blocks.len().clamp(1, 16), Default::default);
                spare.share(blocks.len(), &mut threads, |b, found| {
                    let mut task = blocks[b].lock().unwrap_or_else(|e| e.into_inner());
                    let (vb, kb, exc) = &mut *task;
                    let base = b * ip.block;
                    ip.run_quantize_block(
                        (vb, kb),
                        fallback,
                        (spare, &mut found[..]),
                        (code, check),
                        |exc, point, x| {
                            exc.pos.push((base + point) as u32);
                            exc.val.push(x);
                        },
                    );
                    for (_, f) in found.iter_mut() {
                        exc.pos.extend_from_slice(&f.pos);
                        exc.val.extend_from_slice(&f.val);
                        f.clear();
                    }
                });
            }
        }
        let walk = Walk {
            ip: self,
            blocks: &blocks,
            fallback,
            spare,
        };
        q.code_fn(steps, walk);
        for task in blocks {
            let (_, _, e) = task.into_inner().unwrap_or_else(|e| e.into_inner());
            exc.pos.extend_from_slice(&e.pos);
            exc.val.extend_from_slice(&e.val);
        }
        if !exc.pos.is_empty() {
            k.retain(|&c| c != SKIPPED);
        }
        for &p in &exc.pos {
            rec[p as usize] = col[p as usize];
        }
        // Exceptions were found in the walk's order; the block lists them by position.
        if !exc.pos.is_sorted() {
            let mut pairs: Vec<(u32, T)> = exc
                .pos
                .iter()
                .copied()
                .zip(exc.val.iter().copied())
                .collect();
            pairs.sort_unstable_by_key(|&(p, _)| p);
            exc.clear();
            for (p, v) in pairs {
                exc.pos.push(p);
                exc.val.push(v);
            }
        }
    }

    /// Rebuilds `out` from the codes `k` (in decoding order, one per value that is not an
    /// exception) and the exceptions `exc`: an exception's neighbours are predicted from its
    /// prediction, as the encoder did, and its value goes in place afterwards.
    pub(crate) fn dequantize<T: Element>(
        self,
        k: &[i32],
        exc: &Exceptions<T>,
        (q, fallback): (Quantizer, f64),
        (spare, scratch): (&Spare, &mut BlockScratch),
        out: &mut [T],
    ) {
        struct Walk<'a, T> {
            ip: Interp,
            k: &'a [i32],
            exc: &'a Exceptions<T>,
            fallback: f64,
            spare: &'a Spare,
            threads: &'a mut BlockScratch,
            out: &'a mut [T],
            steps: [f64; 5],
        }
        impl<T: Element> crate::residual::LevelUser<T, ()> for Walk<'_, T> {
            fn run(self, level: impl Fn(f64, i32) -> T + Copy + Sync) {
                let (ip, k, exc, steps) = (self.ip, self.k, self.exc, self.steps);
                let scaled = ip.levels != 0;
                // Level-wise steps: linear columns only (the caller checks), whose level is
                // `p + step·q` rounded once, as `level` computes it with one step.
                let one = |p: f64, c: i32, h: usize| {
                    if scaled {
                        T::from_f64(p + steps[level_index(h)] * c as f64)
                    } else {
                        level(p, c)
                    }
                };
                // Blocks (the planes of `InterpPlanes`) are independent: each its own task,
                // on an idle core where there is one.
                let block = ip.block;
                let blocks: Vec<_> = self.out.chunks_exact_mut(block).map(Mutex::new).collect();
                let threads = &mut self.threads.0;
                let n = blocks.len().clamp(1, 16);
                if threads.len() < n {
                    threads.resize_with(n, Default::default);
                }
                self.spare
                    .share(blocks.len(), &mut threads[..n], |b, (full, at)| {
                        let mut vb = blocks[b].lock().unwrap_or_else(|e| e.into_inner());
                        let base = b * block;
                        let (lo, hi) = exc.segment(base, base + block);
                        if lo == hi {
                            // Every point has a code: the walk in memory order takes each from
                            // its place in decoding order.
                            let kb = &k[base - lo..base - lo + block];
                            ip.run_codes_block(&mut vb, kb, self.fallback, one, self.spare);
                            return;
                        }
                        // The block's codes leave out its exceptions: each gets a marked code at
                        // its place in decoding order, so the same walk runs, and a marked point
                        // takes its prediction, as the encoder gave it (its value goes in place
                        // once every point is rebuilt).
                        let dense = &k[base - lo..base + block - hi];
                        let places = exc.pos[lo..hi].iter().map(|&p| p as usize - base);
                        ip.code_indices(places, at);
                        at.sort_unstable();
                        // Every place is written: a code or the mark.
                        full.resize(block, 0);
                        scatter(dense, at.iter().copied(), SKIPPED, full);
                        let value = |p: f64, c: i32, h: usize| {
                            if c == SKIPPED {
                                T::from_f64(p)
                            } else {
                                one(p, c, h)
                            }
                        };
                        ip.run_codes_block(&mut vb, full, self.fallback, value, self.spare);
                    });
            }
        }
        debug_assert!(self.levels == 0 || !q.is_ordinal());
        q.level_fn(Walk {
            ip: self,
            k,
            exc,
            fallback,
            spare,
            threads: scratch,
            out: &mut *out,
            steps: self.level_steps(q.step),
        });
        for (&pos, &v) in exc.pos.iter().zip(&exc.val) {
            out[pos as usize] = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> i32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 40) as i32 - (1 << 23)
    }

    fn grids() -> Vec<(Grid, usize)> {
        vec![
            (Grid::default(), 1000),
            (Grid { row: 7, plane: 0 }, 7 * 13),
            (Grid { row: 5, plane: 20 }, 20 * 6),
            (Grid { row: 1, plane: 0 }, 10),
            (
                Grid {
                    row: 9,
                    plane: 9 * 11,
                },
                9 * 11 * 5,
            ),
            (
                Grid {
                    row: 16,
                    plane: 16 * 8,
                },
                16 * 8 * 3,
            ),
            (Grid { row: 3, plane: 6 }, 6 * 2),
        ]
    }

    #[test]
    fn residuals_match_the_pointwise_prediction_and_invert() {
        let mut seed = 7;
        for (grid, len) in grids() {
            let k: Vec<i32> = (0..len).map(|_| lcg(&mut seed)).collect();
            for p in Predictor::ALL {
                let mut d = vec![0; len];
                p.residuals(grid, &k, &mut d);
                if let Some(Rule::Stencil(st)) = p.rule(grid, len) {
                    for i in 0..len {
                        let want = k[i].wrapping_sub(st.predict(&k, i));
                        assert_eq!(d[i], want, "{p:?} {grid:?} at {i}");
                    }
                    let mut pushed = Vec::new();
                    st.push_residuals(&k, 0, len / 2, &mut pushed);
                    st.push_residuals(&k, len / 2, len, &mut pushed);
                    assert_eq!(pushed, d, "{p:?} {grid:?}");
                } else {
                    assert_eq!(d, k);
                }
                p.integrate(grid, &mut d);
                assert_eq!(d, k, "{p:?} {grid:?}");
            }
        }
    }

    #[test]
    fn wrapping_codes_invert_exactly() {
        let k = vec![
            i32::MAX,
            i32::MIN,
            5,
            i32::MIN,
            i32::MAX,
            -1,
            0,
            3,
            9,
            i32::MIN,
        ];
        let grid = Grid { row: 2, plane: 0 };
        for p in Predictor::ALL {
            let mut d = vec![0; k.len()];
            p.residuals(grid, &k, &mut d);
            p.integrate(grid, &mut d);
            assert_eq!(d, k);
        }
    }

    #[test]
    fn exceptions_get_residual_zero() {
        let grid = Grid { row: 5, plane: 20 };
        let mut k: Vec<i32> = (0..100).map(|i| i * i % 37).collect();
        let exc = [0u32, 6, 7, 26, 99];
        for p in Predictor::ALL {
            p.fill_exceptions(grid, &mut k, &exc);
            let mut d = vec![0; k.len()];
            p.residuals(grid, &k, &mut d);
            if matches!(p.rule(grid, k.len()), Some(Rule::Stencil(_))) && p != Predictor::Centre {
                for &e in &exc {
                    assert_eq!(d[e as usize], 0, "{p:?} at {e}");
                }
            }
        }
    }

    #[test]
    fn interpolation_visits_every_point_once_after_its_neighbours() {
        // The decoder can only predict from values it has: every point but a block's first is
        // visited exactly once, after the neighbours its interpolation reads, in either walk;
        // both walks put each point's code at the same place, which in decoding order is the
        // order of the visits; and the pointwise proxy the encoder prices with finds the same
        // level, axis and neighbours.
        let mut seed = 5;
        let mut slices = 0;
        for (grid, len) in grids() {
            for p in [Predictor::Interp, Predictor::InterpPlanes] {
                let Some(base) = Interp::new(p, grid, len) else {
                    continue;
                };
                let k: Vec<i32> = (0..len).map(|_| lcg(&mut seed) >> 8).collect();
                for ip in base.orders() {
                    let mut codes = [vec![usize::MAX; len], vec![usize::MAX; len]];
                    for memory in [false, true] {
                        let codes = &mut codes[usize::from(memory)];
                        let mut seen = vec![false; len];
                        for b in (0..len).step_by(ip.block) {
                            seen[b] = true;
                            codes[b] = b;
                        }
                        let vals: Vec<f32> = k.iter().map(|&x| x as f32).collect();
                        for b in (0..len).step_by(ip.block) {
                            let mut next = b + 1;
                            ip.lines(memory, |l: Line| {
                                let (c, n, hs, h) = (l.c, l.len, l.hs, l.h);
                                // Every read is of a point seen before the line: none of the line.
                                for (j, pos) in l.points().enumerate() {
                                    let i = b + pos;
                                    assert!(!seen[i], "{p:?} {grid:?} {ip:?}: {i} twice");
                                    codes[i] = b + l.code + j * l.code_stride;
                                    if !memory {
                                        assert_eq!(codes[i], next, "{p:?} {grid:?} {ip:?} at {i}");
                                        next += 1;
                                    }
                                    let mut reads = vec![i - hs];
                                    match reach(c, n, h) {
                                        Ok((left, right)) => {
                                            reads.push(i + hs);
                                            if left {
                                                reads.push(i - 3 * hs);
                                            }
                                            if right {
                                                reads.push(i + 3 * hs);
                                            }
                                        }
                                        Err(true) => reads.push(i - 3 * hs),
                                        Err(false) => {}
                                    }
                                    for r in reads {
                                        assert!(
                                            seen[r],
                                            "{p:?} {grid:?} {ip:?}: {i} reads {r} first"
                                        );
                                    }
                                    let want = interpolate_codes(&k, i, c, n, hs, h);
                                    assert_eq!(
                                        ip.predict(&k, i),
                                        want,
                                        "{p:?} {grid:?} {ip:?} at {i}"
                                    );
                                }
                                // The predictions of the line's blocks of points, read as
                                // slices where its points are neighbours, else gathered.
                                let mut block = vals[b..b + ip.block].to_vec();
                                let (mut got, mut near) =
                                    (vec![0.0; l.count], [[0.0; LINE_BLOCK]; 4]);
                                for (j0, ps) in
                                    (0..).step_by(LINE_BLOCK).zip(got.chunks_mut(LINE_BLOCK))
                                {
                                    predict_block(
                                        Disjoint::new(&mut block),
                                        (l, j0),
                                        0.0,
                                        ps,
                                        &mut near,
                                    );
                                }
                                slices += usize::from(l.stride == 1);
                                // ... and the decoder's loops: point by point, and by the
                                // slices of a line of neighbouring points.
                                let (mut each, mut sliced) = (Vec::new(), Vec::new());
                                if l.stride == 1 && l.hs >= l.count {
                                    let mut copy = block.clone();
                                    slice_line(Disjoint::new(&mut copy), l, 0.0, |_, _, p| {
                                        sliced.push(p)
                                    });
                                }
                                let mut copy = block.clone();
                                interpolate_line(Disjoint::new(&mut copy), l, 0.0, |_, _, p| {
                                    each.push(p)
                                });
                                for (j, pos) in l.points().enumerate() {
                                    let want = interpolate_values(&block, pos, c, n, hs, h);
                                    assert_eq!(got[j].to_bits(), want.to_bits(), "{ip:?} at {pos}");
                                    assert_eq!(
                                        each[j].to_bits(),
                                        want.to_bits(),
                                        "{ip:?} at {pos}"
                                    );
                                    if let Some(x) = sliced.get(j) {
                                        assert_eq!(x.to_bits(), want.to_bits(), "{ip:?} at {pos}");
                                    }
                                    seen[b + pos] = true;
                                }
                            });
                        }
                        assert!(seen.iter().all(|&s| s), "{p:?} {grid:?} {ip:?}");
                    }
                    assert_eq!(codes[0], codes[1], "{p:?} {grid:?} {ip:?}");
                    // Each point's place in decoding order from its position alone (how the
                    // decoder places the exceptions), for every point of every block.
                    let mut at = Vec::new();
                    ip.code_indices((0..ip.block).rev(), &mut at);
                    for b in (0..len).step_by(ip.block) {
                        for (i, &c) in (0..ip.block).rev().zip(&at) {
                            assert_eq!(b + c, codes[1][b + i], "{p:?} {grid:?} {ip:?} at {i}");
                        }
                    }
                    assert_eq!(ip.with_order_byte(ip.order_byte()), Some(ip));
                }
            }
        }
        assert!(slices > 100, "lines of neighbouring points: {slices}");
    }

    #[test]
    fn lines_are_coded_as_point_by_point_on_every_path() {
        // The encoder's lines, a block of points at a time (in AVX2's lanes where the CPU has
        // them, and the baseline's), give each point the code, reconstruction and exception a
        // point-by-point walk gives, and the decoder rebuilds those values: over every walk's
        // lines, with NaN, infinities, −0.0, values no code reaches and points on the bound's
        // edge, and long lines of several blocks.
        let (step, bound) = (0.02, 0.01);
        let code = move |x: f32, p: f64| {
            let v = ((f64::from(x) - p) / step).clamp(-1e9, 1e9);
            let q = if v.is_nan() { 0 } else { v.round() as i32 };
            let y = (p + step * f64::from(q)) as f32;
            (q, y, (f64::from(x) - f64::from(y)).abs() < 0.9 * bound)
        };
        let check = move |x: f32, y: f32| (f64::from(x) - f64::from(y)).abs() <= bound;
        // The decoder's value of a point from its prediction and code (an exception's
        // prediction for its mark).
        let rebuilt = move |p: f64, c: i32, _: usize| {
            if c == SKIPPED {
                p as f32
            } else {
                (p + step * f64::from(c)) as f32
            }
        };
        let mut seed = 3;
        let mut exceptions = 0;
        let wide = (Grid { row: 150, plane: 0 }, 150 * 6);
        for (grid, len) in grids().into_iter().chain([wide]) {
            let mut vals: Vec<f32> = (0..len)
                .map(|i| (i as f32 * 0.11).sin() + (lcg(&mut seed) as f32) * 1e-8)
                .collect();
            for (i, v) in vals.iter_mut().enumerate().skip(1) {
                *v = match i % 23 {
                    3 => f32::NAN,
                    5 => f32::INFINITY,
                    7 => -0.0,
                    11 => 1e30,
                    13 => *v + 0.5 * bound as f32,
                    _ => *v,
                };
            }
            for p in [Predictor::Interp, Predictor::InterpPlanes] {
                let Some(base) = Interp::new(p, grid, len) else {
                    continue;
                };
                for ip in base.orders() {
                    let first = 0.25;
                    let mut want = (vals[..ip.block].to_vec(), vec![0; ip.block], Vec::new());
                    // The block's first point, coded as the encoder's walk codes it.
                    let (q, y, _) = code(vals[0], first);
                    (want.0[0], want.1[0]) = (y, q);
                    assert!(check(vals[0], y));
                    let mut got = [want.clone(), want.clone()];
                    let mut block = LineBlock::default();
                    ip.lines(true, |l: Line| {
                        let (v, k, e) = &mut want;
                        for (j, pos) in l.points().enumerate() {
                            let p = interpolate_values(v, pos, l.c, l.len, l.hs, l.h);
                            let p = if p.is_finite() { p } else { first };
                            let x = v[pos];
                            let (q, y, ok) = code(x, p);
                            let (q, y) = if ok || check(x, y) {
                                (q, y)
                            } else {
                                e.push((pos, x.to_bits()));
                                (SKIPPED, p as f32)
                            };
                            (v[pos], k[l.code + j * l.code_stride]) = (y, q);
                        }
                        // The decoder's line of neighbouring points, on both paths, rebuilds
                        // them (from NaN) as the reference gave them.
                        if l.stride == 1 && l.code_stride == 1 && l.hs >= l.count {
                            let value = move |p: f64, c: i32| rebuilt(p, c, 0);
                            let codes = &k[l.code..l.code + l.count];
                            let line = l.start..l.start + l.count;
                            for path in 0..2 {
                                let mut rebuilt = v.clone();
                                rebuilt[line.clone()].fill(f32::NAN);
                                let d = Disjoint::new(&mut rebuilt);
                                if path == 0 {
                                    rebuild_slice(d, l, first, codes, value);
                                } else {
                                    rebuild_slice_body(d, l, first, codes, value);
                                }
                                let same = rebuilt[line.clone()]
                                    .iter()
                                    .zip(&v[line.clone()])
                                    .all(|(a, b)| a.to_bits() == b.to_bits());
                                assert!(same, "{ip:?}: line {l:?} rebuilt on path {path}");
                            }
                        }
                        for (path, (v, k, e)) in got.iter_mut().enumerate() {
                            let vk = (Disjoint::new(v), Disjoint::new(k));
                            let exc =
                                |j: usize, x: f32| e.push((l.start + j * l.stride, x.to_bits()));
                            if path == 0 {
                                quantize_line(vk, l, first, (code, check), exc, &mut block);
                            } else {
                                quantize_line_body(vk, l, first, (code, check), exc, &mut block);
                            }
                        }
                    });
                    // The decoder's walk rebuilds the same values from the codes (an
                    // exception's prediction in its place).
                    let mut v = vec![f32::NAN; ip.block];
                    ip.run_codes_block(&mut v, &want.1, first, rebuilt, &Spare::new(0));
                    let same = v
                        .iter()
                        .zip(&want.0)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{ip:?}: rebuilt");
                    exceptions += want.2.len();
                    for (path, (v, k, e)) in got.iter().enumerate() {
                        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(v), bits(&want.0), "{ip:?} path {path}: values");
                        assert_eq!(k, &want.1, "{ip:?} path {path}: codes");
                        assert_eq!(e, &want.2, "{ip:?} path {path}: exceptions");
                    }
                }
            }
        }
        assert!(exceptions > 100, "{exceptions} exceptions");
    }

    #[test]
    fn divisions_by_multiplication_are_exact() {
        let mut seed = 5u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 32
        };
        let max = u64::from(u32::MAX);
        let mut divisors = vec![1, 2, 3, 7, 50, 2500, 65536, 98304, max - 1, max];
        divisors.extend((0..200).map(|_| next().max(1)));
        divisors.extend((0..200).map(|_| next() % 5000 + 1));
        for d in divisors {
            let div = Divisor::new(d as usize);
            let mut xs = vec![0, 1, d - 1, d, d + 1, max - 1, max];
            xs.extend((0..200).map(|_| next()));
            for x in xs.into_iter().filter(|&x| x <= max) {
                assert_eq!(div.div_rem(x), (x / d, x % d), "{x} / {d}");
            }
        }
    }

    #[test]
    fn spots_of_a_sample_are_each_points_spot() {
        for (grid, len) in grids() {
            for p in [Predictor::Interp, Predictor::InterpPlanes] {
                let Some(ip) = Interp::new(p, grid, len) else {
                    continue;
                };
                let positions: Vec<usize> = (0..len).rev().collect();
                for (&i, s) in positions.iter().zip(ip.spots(&positions, len)) {
                    let want = ip.spot(i);
                    assert_eq!(
                        (s.coords, s.h, s.axes),
                        (want.coords, want.h, want.axes),
                        "{p:?} {grid:?} at {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn level_wise_steps_round_trip_within_the_bound() {
        // Every scheme, on every grid, with exceptions: the decoder rebuilds exactly the
        // encoder's reconstruction, every value within the bound, and the coarse levels'
        // finer steps show in their codes.
        let bound = 0.01;
        let q = Quantizer::for_bound(bound);
        // A grid whose finest passes hold more than `SPLIT_PASS` points, so with idle cores
        // they run in parts at once.
        let large = (
            Grid {
                row: 96,
                plane: 96 * 64,
            },
            96 * 64 * 24,
        );
        assert!(large.1 / 2 >= SPLIT_PASS);
        for (grid, len) in grids().into_iter().chain([large]) {
            let mut seed = 11;
            let mut col: Vec<f64> = (0..len)
                .map(|i| (i as f64 * 0.37).sin() * 3.0 + lcg(&mut seed) as f64 * 1e-9)
                .collect();
            // Exceptions anywhere: the first point, runs of neighbours, the last point, an
            // infinity, a value beyond any code (each is rebuilt from its place in decoding
            // order).
            col[len / 2] = f64::NAN;
            col[0] = f64::NAN;
            col[len - 1] = f64::INFINITY;
            col[len / 3] = 1e300;
            for i in (len / 5..len / 4).filter(|i| i % 3 != 0) {
                col[i] = -f64::NAN;
            }
            for p in [Predictor::Interp, Predictor::InterpPlanes] {
                let Some(ip) = Interp::new(p, grid, len) else {
                    continue;
                };
                let mut sums = Vec::new();
                for levels in 0..LEVEL_DIVISORS.len() as u8 {
                    let ip = ip.with_levels(levels);
                    assert_eq!(ip.with_order_byte(ip.order_byte()), Some(ip));
                    let (mut k, mut exc, mut rec) = (Vec::new(), Exceptions::default(), Vec::new());
                    ip.quantize(&col, (q, 0.0), (&mut k, &mut exc, &mut rec), &Spare::new(0));
                    // Planes, and the parts of large passes, coded and decoded on idle cores
                    // too (each a task), with and without exceptions: the same bits.
                    for idle in [0, 3] {
                        let mut shared = (Vec::new(), Exceptions::default(), Vec::new());
                        let parts = (&mut shared.0, &mut shared.1, &mut shared.2);
                        ip.quantize(&col, (q, 0.0), parts, &Spare::new(idle));
                        let bits = |e: &Exceptions<f64>| -> Vec<(u32, u64)> {
                            e.pos
                                .iter()
                                .zip(&e.val)
                                .map(|(&p, v)| (p, v.to_bits()))
                                .collect()
                        };
                        assert!(shared.0 == k, "{ip:?}: codes on {idle} idle");
                        assert_eq!(bits(&shared.1), bits(&exc), "{ip:?}: exceptions");
                        assert!(
                            shared
                                .2
                                .iter()
                                .zip(&rec)
                                .all(|(a, b)| a.to_bits() == b.to_bits())
                        );
                        let mut out = vec![0.0; len];
                        ip.dequantize(
                            &k,
                            &exc,
                            (q, 0.0),
                            (&Spare::new(idle), &mut BlockScratch::default()),
                            &mut out,
                        );
                        for i in 0..len {
                            assert_eq!(out[i].to_bits(), rec[i].to_bits(), "{ip:?} at {i}");
                            if col[i].is_finite() {
                                assert!((out[i] - col[i]).abs() <= bound, "{ip:?} at {i}");
                            }
                        }
                        let (mut k2, mut exc2, mut rec2) =
                            (Vec::new(), Exceptions::default(), Vec::new());
                        let clean: Vec<f64> = col
                            .iter()
                            .map(|&v| if v.is_nan() { 0.5 } else { v })
                            .collect();
                        ip.quantize(
                            &clean,
                            (q, 0.0),
                            (&mut k2, &mut exc2, &mut rec2),
                            &Spare::new(idle),
                        );
                        ip.dequantize(
                            &k2,
                            &exc2,
                            (q, 0.0),
                            (&Spare::new(idle), &mut BlockScratch::default()),
                            &mut out,
                        );
                        assert!(
                            out.iter()
                                .zip(&rec2)
                                .all(|(a, b)| a.to_bits() == b.to_bits())
                        );
                    }
                    sums.push(k.iter().map(|c| c.unsigned_abs() as u64).sum::<u64>());
                }
                if len > 64 {
                    assert!(sums[2] > sums[0], "{grid:?} {p:?} {sums:?}");
                }
            }
        }
    }

    #[test]
    fn interpolation_is_chosen_for_smooth_fields() {
        // On a smooth field the residuals of the cubic interpolation are mostly 0 or ±1, and
        // the chooser sets it aside as the cheapest interpolation.
        let (w, h) = (64, 48);
        let k: Vec<i32> = (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f64, (i / w) as f64);
                (1000.0 * (x * 0.05).sin() * (y * 0.04).cos()).round() as i32
            })
            .collect();
        let grid = Grid { row: w, plane: 0 };
        let mut ch = Chooser::default();
        let (best, bits) = ch.choose(grid, &k, &Spare::default());
        let (p, ip, ibits) = ch.interp().expect("an interpolation applies");
        assert_eq!(p, Predictor::Interp);
        assert!(ibits < bits, "{ibits} vs {best:?} {bits}");
        let small = (0..k.len())
            .filter(|&i| (k[i] - ip.predict(&k, i)).abs() <= 1)
            .count();
        assert!(small * 10 > k.len() * 9, "{small} of {}", k.len());
        // Invalid orders are refused.
        assert_eq!(ip.with_order_byte(0b0101), None);
        assert_eq!(ip.with_order_byte(0b0010_0001), None);
    }

    #[test]
    fn a_panic_in_a_pass_part_reaches_the_caller_and_no_thread_waits_for_it() {
        // Parts of later passes wait for the parts before; a part that panics must not leave
        // them waiting (the call would hang), and its panic is the caller's.
        let grid = Grid {
            row: 96,
            plane: 96 * 64,
        };
        let len = 96 * 64 * 24;
        let ip = Interp::new(Predictor::Interp, grid, len).expect("a 3-D grid");
        for idle in [0, 1, 3] {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let lines = AtomicUsize::new(0);
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let mut scratch = [(); PASS_PARTS];
                    ip.run_passes(&Spare::new(idle), &mut scratch, |l, _| {
                        // A line of the finest level, in a pass that is split.
                        if l.h == 1 && lines.fetch_add(1, Ordering::Relaxed) == 100 {
                            panic!("a part fails");
                        }
                    });
                }));
                let _ = tx.send(r.is_err());
            });
            let panicked = rx
                .recv_timeout(std::time::Duration::from_secs(60))
                .expect("the walk returned");
            assert!(panicked, "idle {idle}");
        }
    }

    #[test]
    fn the_chooser_reads_only_its_sampled_reads() {
        // Codes given at the sampled reads only (the rest garbage) choose and price as the
        // whole column; the grids where other neighbours apply, or the column is not
        // sampled, have none.
        let mut seed = 11;
        let spare = Spare::new(2);
        for n in [4097 * 64, 300_000, 50_000, 4097] {
            let k: Vec<i32> = (0..n)
                .map(|i| (40.0 * ((i % 89) as f64 * 0.1).sin()) as i32 + (lcg(&mut seed) >> 30))
                .collect();
            let mut whole = Chooser::default();
            let want = whole.choose(Grid::default(), &k, &spare);
            let mut chooser = Chooser::default();
            let reads: Vec<usize> = chooser
                .sampled_reads(Grid::default(), n)
                .expect("a table's column is sampled")
                .collect();
            let mut partial: Vec<i32> = (0..n).map(|_| lcg(&mut seed)).collect();
            for &i in &reads {
                partial[i] = k[i];
            }
            let got = chooser.choose(Grid::default(), &partial, &spare);
            assert_eq!(
                (got.0, got.1.to_bits()),
                (want.0, want.1.to_bits()),
                "n {n}"
            );
        }
        let mut chooser = Chooser::default();
        assert!(chooser.sampled_reads(Grid::default(), 4096).is_none());
        assert!(chooser.sampled_reads(Grid::default(), 100).is_none());
        let rows = Grid { row: 120, plane: 0 };
        assert!(chooser.sampled_reads(rows, 120 * 900).is_none());
    }

    #[test]
    fn the_chooser_prices_the_same_on_any_threads_as_point_by_point() {
        // The reference: each rule's residuals at the positions in the order drawn, each
        // from its own point's prediction (`predict_at` for every axis order), priced one
        // rule after another; the chooser prices them in memory order, an interpolation's
        // orders from residuals shared between them, the rules on borrowed threads.
        let mut seed = 5;
        let cases = [
            (Grid::default(), 50_000),
            (Grid { row: 120, plane: 0 }, 120 * 90),
            (
                Grid {
                    row: 24,
                    plane: 24 * 20,
                },
                24 * 20 * 30,
            ),
            (
                Grid {
                    row: 33,
                    plane: 33 * 7,
                },
                33 * 7 * 9,
            ),
            (Grid { row: 40, plane: 0 }, 40 * 50),
        ];
        for (grid, n) in cases {
            let k: Vec<i32> = (0..n)
                .map(|i| {
                    let smooth = (300.0 * ((i % 97) as f64 * 0.07).sin()) as i32;
                    smooth + (lcg(&mut seed) >> 28)
                })
                .collect();
            let mut reference = Chooser::default();
            let m = sample_len(n);
            let whole = n <= m;
            if !whole {
                reference.draw(n, m);
            }
            let mut pricing = Pricing::default();
            let (mut best, mut interp) = ((f64::INFINITY, Predictor::Centre), None);
            for p in Predictor::ALL {
                let rules: Vec<Rule> = match p.rule(grid, n) {
                    Some(Rule::Interp(ip)) => ip.orders().map(Rule::Interp).collect(),
                    Some(rule) => vec![rule],
                    None => continue,
                };
                for rule in rules {
                    pricing.sample.clear();
                    let points: Vec<usize> = if whole {
                        (0..n).collect()
                    } else {
                        reference.positions.clone()
                    };
                    for i in points {
                        let prediction = match rule {
                            Rule::Stencil(st) => st.predict(&k, i),
                            Rule::Interp(ip) => {
                                ip.predict_at(&k, i, ip.spot(i), &ip.last_visited())
                            }
                        };
                        pricing.sample.push(k[i].wrapping_sub(prediction));
                    }
                    let bits =
                        pricing.estimate_bits() * if p == Predictor::Centre { 0.98 } else { 1.0 };
                    let per_value = bits / pricing.sample.len() as f64;
                    match rule {
                        Rule::Interp(ip) => {
                            if interp.is_none_or(|(_, _, b)| per_value < b) {
                                interp = Some((p, ip, per_value));
                            }
                        }
                        Rule::Stencil(_) => {
                            if bits < best.0 {
                                best = (bits, p);
                            }
                        }
                    }
                }
            }
            let want = (best.1, best.0 / pricing.sample.len() as f64);
            for idle in [0, 1, 3] {
                let mut ch = Chooser::default();
                let got = ch.choose(grid, &k, &Spare::new(idle));
                assert_eq!(got.0, want.0, "{grid:?} {n} idle {idle}");
                assert_eq!(
                    got.1.to_bits(),
                    want.1.to_bits(),
                    "{grid:?} {n} idle {idle}"
                );
                let (gi, wi) = (ch.interp(), interp);
                assert_eq!(gi.map(|x| (x.0, x.1)), wi.map(|x| (x.0, x.1)), "{grid:?}");
                assert_eq!(
                    gi.map(|x| x.2.to_bits()),
                    wi.map(|x| x.2.to_bits()),
                    "{grid:?}"
                );
                // Twice: the positions drawn for this length are kept.
                assert_eq!(
                    ch.choose(grid, &k, &Spare::new(idle)).1.to_bits(),
                    want.1.to_bits()
                );
            }
        }
    }

    #[test]
    fn chooser_finds_the_structure() {
        let mut ch = Chooser::default();
        let mut seed = 3;
        // A rough 2-D field, a sum of random walks along each axis: Lorenzo. A random walk:
        // previous. Noise: centre. (Smooth fields: interpolation, tested above.)
        let (w, h) = (200, 150);
        let walk = |n: usize, seed: &mut u64| {
            let mut acc = 0;
            (0..n)
                .map(|_| {
                    acc += lcg(seed) >> 16;
                    acc
                })
                .collect::<Vec<i32>>()
        };
        let (fx, fy) = (walk(w, &mut seed), walk(h, &mut seed));
        let field: Vec<i32> = (0..w * h).map(|i| fx[i % w] + fy[i / w]).collect();
        let grid = Grid { row: w, plane: 0 };
        assert_eq!(
            ch.choose(grid, &field, &Spare::default()).0,
            Predictor::Lorenzo2
        );
        let mut acc = 0;
        let walk: Vec<i32> = (0..50_000)
            .map(|_| {
                acc += lcg(&mut seed) >> 18;
                acc
            })
            .collect();
        assert_eq!(
            ch.choose(Grid::default(), &walk, &Spare::default()).0,
            Predictor::Previous
        );
        let noise: Vec<i32> = (0..50_000).map(|_| lcg(&mut seed) >> 14).collect();
        assert_eq!(
            ch.choose(Grid::default(), &noise, &Spare::default()).0,
            Predictor::Centre
        );
    }
}
