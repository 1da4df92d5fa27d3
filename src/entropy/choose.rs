//! Choosing a stream's mode: its histogram, quick estimates that rank the candidates, exact
//! prices with the tables the encoder would write, and the binned mode's plan ([`plan_bins`]).

use super::hybrid::{Hybrid, SPLITS};
use super::table::{self, choose_prec, codes_bits, codes_for_counts, freqs_for_codes, gamma_bits};
use super::{Bin, Choice, CodeCoder, DENSE_SPAN, MAX_BINS, MAX_DIRECT, rans};
use crate::simd::with_avx512;

/// Streams are planned in bins only where the best other mode spends at least this many bits
/// per value and the stream has at least [`BINNED_MIN_DISTINCT`] distinct values: narrow
/// streams are coded at their entropy already.
const BINNED_MIN_BITS: f64 = 4.0;
const BINNED_MIN_DISTINCT: usize = 64;
/// What a bin's description and weight cost, about, when planning.
const BIN_BITS: f64 = 18.0;

/// Magnitudes below this get a bin each in the fine histogram used to price hybrid layouts.
const FINE_EXACT_BITS: u32 = 10;
const FINE_EXACT: usize = 1 << FINE_EXACT_BITS;
/// Above the exact bins: one bin per (exponent, top 3 mantissa bits).
const FINE_BINS: usize = FINE_EXACT + ((32 - FINE_EXACT_BITS as usize) << 3);

/// Widths a bin may take: `2^0` to `2^32` values.
const WIDTHS: usize = 33;
/// [`WIDTHS`] padded to a whole number of vectors of eight.
const LANES: usize = 40;

/// Scratch of [`plan_bins`]: the dynamic program's table and the suffix sums of the counts.
#[derive(Debug, Default)]
pub(super) struct BinPlan {
    /// `cost[i]`: the cost of the cheapest plan for `vals[i..]`; `width[i]`: the width of its
    /// first bin.
    cost: Vec<f64>,
    width: Vec<u8>,
    /// `suffix[i] = Σ counts[i..]`.
    suffix: Vec<u64>,
}

/// Plans bins for a stream of `n` codes whose sorted distinct values are `vals` (with their
/// `counts`), minimizing `Σ count·(w + log2(n/count)) + bin_bits` over every partition of the
/// values into ranges of power-of-two widths: a dynamic program from the largest value down,
/// one pointer per width, so `O(m · 33)` for `m` distinct values. Returns the planned cost in
/// bits (tables approximated by `bin_bits` each).
fn plan_bins(
    vals: &[i32],
    counts: &[u32],
    n: u64,
    bin_bits: f64,
    plan: &mut BinPlan,
    bins: &mut Vec<Bin>,
) -> f64 {
    plan_widest(vals, counts, n, bin_bits, plan);
    bins_of(vals, counts, plan, bins)
}

with_avx512! {
    /// [`plan_body`] in the widest vectors this CPU has.
    fn plan_widest(vals: &[i32], counts: &[u32], n: u64, bin_bits: f64, plan: &mut BinPlan) =
        plan_body;
}

/// The dynamic program of [`plan_bins`], into `plan`. Each value's candidate bins are priced
/// all at once, width by width in fixed arrays so that they run as vector lanes, lane by lane
/// the same operations whatever the vector width: the plan does not depend on the CPU.
#[inline(always)]
#[allow(unsafe_code)]
fn plan_body(vals: &[i32], counts: &[u32], n: u64, bin_bits: f64, plan: &mut BinPlan) {
    let m = vals.len();
    let log_n = fast_log2(n as f64);
    let BinPlan {
        cost,
        width,
        suffix,
    } = plan;
    cost.clear();
    cost.resize(m + 1, 0.0);
    width.clear();
    width.resize(m + 1, 0);
    suffix.clear();
    suffix.resize(m + 1, 0);
    for i in (0..m).rev() {
        suffix[i] = suffix[i + 1] + counts[i] as u64;
    }
    // `ends[w]`: one past the last value a bin of width `w` from the current value holds (32
    // bits, so that the walk below runs in twice the lanes). The widths are padded to a
    // whole number of vectors; the padding's bins never end below `m`, and are never chosen.
    let mut ends = [m as u32; LANES];
    let mut prices = [0.0f64; LANES];
    let span: [i64; LANES] = std::array::from_fn(|w| (1i64 << w) - 1);
    let widths: [f64; LANES] = std::array::from_fn(|w| w as f64);
    for i in (0..m).rev() {
        let lo = vals[i];
        // Every width up to the gap to the next value holds this value alone (and costs more
        // than width 0 for it).
        let alone = match vals.get(i + 1) {
            Some(&next) => 63 - (next as i64 - lo as i64).leading_zeros() as usize,
            None => WIDTHS - 1,
        };
        for end in &mut ends[..=alone] {
            *end = i as u32 + 1;
        }
        // Each bin's last value; wider bins than `i32::MAX` allows are never planned, and
        // their ends stay at `m`.
        let his: [i32; LANES] =
            std::array::from_fn(|w| (lo as i64 + span[w]).min(i32::MAX as i64) as i32);
        let top = (64 - (i32::MAX as i64 - lo as i64 + 1).leading_zeros() as usize).min(WIDTHS);
        // Each end moves down past the values beyond its bin (`vals[i] <= hi`: never past
        // `i + 1`): a step for every width at once, then the widths that need more, one by
        // one (an end moves `m` steps in all, most of them one at a time).
        let mut more = 0u64;
        for (w, (end, &hi)) in ends.iter_mut().zip(&his).enumerate() {
            // SAFETY: `i + 1 <= *end <= m = vals.len()`, and an end moves only past a value
            // above `hi`, which `vals[i]` is not.
            let v = unsafe { *vals.get_unchecked(*end as usize - 1) };
            *end -= (v > hi) as u32;
            let v = unsafe { *vals.get_unchecked(*end as usize - 1) };
            more |= ((v > hi) as u64) << w;
        }
        while more != 0 {
            let w = more.trailing_zeros() as usize;
            more &= more - 1;
            let end = &mut ends[w];
            while vals[*end as usize - 1] > his[w] {
                *end -= 1;
            }
        }
        let total = suffix[i];
        for (w, ((p, &end), &width)) in prices.iter_mut().zip(&ends).zip(&widths).enumerate() {
            let end = end as usize;
            // SAFETY: `end <= m`, and `suffix` and `cost` hold `m + 1`.
            let (after, rest) = unsafe { (*suffix.get_unchecked(end), *cost.get_unchecked(end)) };
            let c = total - after;
            let own = c as f64 * (width + log_n - fast_log2(c as f64)) + bin_bits;
            *p = if w < top { own + rest } else { f64::INFINITY };
        }
        // The first of equal costs: the narrowest (the least of the costs' total-order keys,
        // for all lanes at once, then where it is).
        let least = prices
            .iter()
            .map(|&p| order_key(p))
            .fold(i64::MAX, i64::min);
        let w = prices
            .iter()
            .position(|&p| order_key(p) == least)
            .expect("the least is one of them");
        (cost[i], width[i]) = (prices[w], w as u8);
    }
}

/// `x`'s bits as an integer ordered as `x` is (for finite `x`; `-0.0` before `0.0`).
#[inline(always)]
fn order_key(x: f64) -> i64 {
    let k = x.to_bits() as i64;
    k ^ ((k >> 63) & i64::MAX)
}

/// The bins of the plan in `plan` (into `bins`); returns the plan's cost.
fn bins_of(vals: &[i32], counts: &[u32], plan: &BinPlan, bins: &mut Vec<Bin>) -> f64 {
    let m = vals.len();
    bins.clear();
    let mut i = 0;
    while i < m {
        let w = plan.width[i] as u32;
        let lo = vals[i] as i64;
        let hi = lo + (1i64 << w) - 1;
        let mut k = i;
        let mut count = 0u32;
        while k < m && vals[k] as i64 <= hi {
            count += counts[k];
            k += 1;
        }
        bins.push(Bin { lo, w, count });
        i = k;
    }
    plan.cost[0]
}

/// Magnitude counts for pricing hybrid layouts: for a bias and a sign mode, every difference
/// `d = v − bias` falls in one bin (exact below 2^10, by exponent and top 3 bits above).
#[derive(Debug, Default)]
pub(super) struct Fine {
    counts: Vec<u64>,
    /// Indices of the non-empty bins.
    used: Vec<u32>,
    signed: bool,
    /// Per side (zigzag: one; signed: positive and negative magnitudes), prefix sums over the
    /// exact bins, so a layout's direct tokens are priced by one lookup.
    sides: [Prefix; 2],
    /// Count of `d = 0` (signed layouts).
    zero: u64,
}

/// Magnitudes of one side summarized by *cell*: each value below 8 is a cell, then one cell per
/// (exponent, top 3 bits below the leading one). Every token of every layout covers a
/// contiguous range of cells, so prefix sums over the cells price a layout in one lookup per
/// token: counts, `Σ c·log2 c` over the distinct values (for direct tokens), distinct values.
#[derive(Debug, Default)]
struct Prefix {
    count: Vec<u64>,
    clogc: Vec<f64>,
    present: Vec<u32>,
    max_exp: u32,
}

const CELLS: usize = 8 + 29 * 8;

/// The cell of magnitude `u`. For `u` on a boundary between cells (a power of two, or
/// `(8 + t) << (e − 3)`), that is also the first cell of the magnitudes `≥ u`.
#[inline]
fn cell_of(u: u32) -> usize {
    if u < 8 {
        u as usize
    } else {
        let e = 31 - u.leading_zeros();
        8 + ((e - 3) as usize) * 8 + ((u >> (e - 3)) & 7) as usize
    }
}

#[inline]
fn fine_bin(u: u32) -> usize {
    if (u as usize) < FINE_EXACT {
        u as usize
    } else {
        let n = 31 - u.leading_zeros();
        let top = (u >> (n - 3)) & 7;
        FINE_EXACT + (((n - FINE_EXACT_BITS) << 3) | top) as usize
    }
}

impl Fine {
    /// Bins `d = v − bias` for zigzag layouts (`bin(zigzag d)`) or signed ones (0 for `d = 0`,
    /// else `1 + 2·bin(|d| − 1) + sign`).
    pub(super) fn fill(&mut self, vals: &[i32], counts: &[u32], bias: i32, signed: bool) {
        // The bins are all zero between uses: clear only the ones the last fill used.
        for &b in &self.used {
            self.counts[b as usize] = 0;
        }
        self.used.clear();
        let len = if signed { 1 + 2 * FINE_BINS } else { FINE_BINS };
        if self.counts.len() < len {
            self.counts.resize(len, 0);
        }
        for (&v, &c) in vals.iter().zip(counts) {
            let d = v.wrapping_sub(bias);
            let bin = if !signed {
                fine_bin(((d << 1) ^ (d >> 31)) as u32)
            } else if d == 0 {
                0
            } else {
                1 + 2 * fine_bin(d.unsigned_abs() - 1) + (d < 0) as usize
            };
            if self.counts[bin] == 0 {
                self.used.push(bin as u32);
            }
            self.counts[bin] += c as u64;
        }
        self.signed = signed;
        self.zero = if signed { self.counts[0] } else { 0 };
    }

    /// Builds the per-cell prefix sums of the last fill (for [`Fine::layout_estimate`]).
    fn summarize(&mut self, vals: &[i32], counts: &[u32], bias: i32) {
        let signed = self.signed;
        for p in &mut self.sides[..1 + signed as usize] {
            p.count.clear();
            p.count.resize(CELLS + 1, 0);
            p.clogc.clear();
            p.clogc.resize(CELLS + 1, 0.0);
            p.present.clear();
            p.present.resize(CELLS + 1, 0);
            p.max_exp = 0;
        }
        for (&v, &c) in vals.iter().zip(counts) {
            let d = v.wrapping_sub(bias);
            let (side, u) = if !signed {
                (0, ((d << 1) ^ (d >> 31)) as u32)
            } else if d == 0 {
                continue;
            } else {
                ((d < 0) as usize, d.unsigned_abs() - 1)
            };
            let p = &mut self.sides[side];
            let cell = cell_of(u) + 1;
            p.count[cell] += c as u64;
            p.clogc[cell] += c as f64 * fast_log2(c as f64);
            p.present[cell] += 1;
            p.max_exp = p.max_exp.max(31 - u.max(1).leading_zeros());
        }
        for p in &mut self.sides[..1 + signed as usize] {
            for i in 1..=CELLS {
                p.count[i] += p.count[i - 1];
                p.clogc[i] += p.clogc[i - 1];
                p.present[i] += p.present[i - 1];
            }
        }
    }

    /// Token counts (into `tok`) and the total of raw bits for `layout`.
    pub(super) fn layout_counts(&self, h: Hybrid, tok: &mut Vec<u32>) -> u64 {
        tok.clear();
        tok.resize(h.alphabet(), 0);
        let extra = self.accumulate(h, tok);
        let last = tok.iter().rposition(|&c| c > 0).map_or(0, |p| p + 1);
        tok.truncate(last);
        extra
    }

    /// A quick size estimate in bits for `layout` (of the sign mode last filled) over `n`
    /// values: ideal entropy of the tokens, raw bits, about five bits per table entry. Prices
    /// the direct tokens by prefix sums and visits only the tail tokens.
    fn layout_estimate(&self, h: Hybrid, n: u64) -> f64 {
        debug_assert_eq!(h.signed, self.signed);
        let mut sum_clogc = 0.0;
        let mut present = 0u64;
        let mut extra = 0u64;
        if self.signed && self.zero > 0 {
            sum_clogc += self.zero as f64 * fast_log2(self.zero as f64);
            present += 1;
        }
        for p in &self.sides[..1 + self.signed as usize] {
            // Direct tokens: every magnitude below 2^k, priced by its own count.
            let direct = cell_of(1 << h.k);
            sum_clogc += p.clogc[direct];
            present += p.present[direct] as u64;
            // Tail tokens: for each exponent, 2^msb ranges of cells.
            for e in h.k..=p.max_exp {
                let nb = e - h.msb;
                for m in 0..1u32 << h.msb {
                    let lo = cell_of(((1 << h.msb) + m) << nb);
                    let hi = if m + 1 < 1 << h.msb {
                        cell_of(((1 << h.msb) + m + 1) << nb)
                    } else if e < 31 {
                        cell_of(2 << e)
                    } else {
                        CELLS
                    };
                    let c = p.count[hi] - p.count[lo];
                    if c > 0 {
                        sum_clogc += c as f64 * fast_log2(c as f64);
                        present += 1;
                        extra += c * nb as u64;
                    }
                }
            }
        }
        80.0 + extra as f64 + n as f64 * fast_log2(n as f64) - sum_clogc
            + 5.0 * present as f64
            + 32.0 * rans::lanes_for(n as usize) as f64
    }

    /// Adds every bin's count to its token under `h`. Returns the total of raw bits.
    fn accumulate(&self, h: Hybrid, tok: &mut [u32]) -> u64 {
        let magnitude = |bin: usize| -> (u32, u32) {
            if bin < FINE_EXACT {
                let (t, nb, _) = h.tokenize_u(bin as u32);
                (t, nb)
            } else {
                let b = (bin - FINE_EXACT) as u32;
                h.token_of_top3(FINE_EXACT_BITS + (b >> 3), b & 7)
            }
        };
        let mut extra = 0u64;
        for &b in &self.used {
            let c = self.counts[b as usize];
            let (t, nb) = if !h.signed {
                magnitude(b as usize)
            } else if b == 0 {
                (0, 0)
            } else {
                let (t, nb) = magnitude(((b - 1) >> 1) as usize);
                (1 + 2 * t + ((b - 1) & 1), nb)
            };
            tok[t as usize] += c as u32;
            extra += c * nb as u64;
        }
        extra
    }
}

/// `log2(x)` for `x ≥ 1`, within 5e-5: for ranking candidate layouts, not for coding.
#[inline]
pub(super) fn fast_log2(x: f64) -> f64 {
    let bits = (x as f32).to_bits();
    let e = ((bits >> 23) & 0xff) as i32 - 127;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000) as f64;
    // Degree-5 fit of log2 on [1, 2) at Chebyshev nodes.
    let p = -2.786_812_953_867_42
        + (5.046_876_044_975_866
            + (-3.492_494_279_879_273
                + (1.593_901_363_499_107_7
                    + (-0.404_867_174_419_191_84 + 0.043_428_907_822_142_56 * m) * m)
                    * m)
                * m)
            * m;
    e as f64 + p
}

/// Quick size estimate in bits of coding `counts` (total `n`) by rANS, table included: the
/// ideal entropy plus about four bits per table entry. Used to rank candidates.
fn estimate_bits(counts: &[u32], n: u64) -> f64 {
    let mut sum_clogc = 0.0;
    let mut present = 0u32;
    let mut runs = 0.0;
    let mut run = 0u32;
    for &c in counts {
        if c == 0 {
            run += 1;
            continue;
        }
        if run > 0 {
            runs += table::gamma_bits(run) as f64 - 1.0;
            run = 0;
        }
        present += 1;
        sum_clogc += c as f64 * fast_log2(c as f64);
    }
    n as f64 * fast_log2(n as f64) - sum_clogc
        + 4.0 * present as f64
        + runs
        + 32.0 * rans::lanes_for(n as usize) as f64
}

/// Exact size in bits of coding `counts` (total `n`) by rANS with the table the encoder would
/// write, table included, and the precision that gives it: the L1-friendly [`choose_prec`], or
/// the maximum where a dominant symbol needs the finer resolution.
fn entropy_cost(
    counts: &[u32],
    n: u64,
    sparse: bool,
    codes: &mut Vec<u8>,
    freqs: &mut Vec<u32>,
) -> (f64, u32) {
    let present = counts.iter().filter(|&&c| c > 0).count();
    let small = choose_prec(n, present);
    let mut best = (f64::INFINITY, small);
    // The finest table is worth pricing only where it differs and the count can use it.
    let finest = rans::MAX_PREC;
    let precs: &[u32] = if small < finest && finest <= table::ceil_log2(n) {
        &[small, finest]
    } else {
        &[small]
    };
    for &prec in precs {
        codes_for_counts(counts, n, prec, codes);
        if freqs_for_codes(codes, n, prec, freqs).is_err() {
            continue;
        }
        let mut bits = codes_bits(codes, sparse, n, prec) as f64;
        for (&c, &f) in counts.iter().zip(freqs.iter()) {
            if c > 0 {
                bits += c as f64 * (prec as f64 - fast_log2(f as f64));
            }
        }
        // rANS flushes its lane states.
        bits += 32.0 * rans::lanes_for(n as usize) as f64;
        // The larger table must save at least 0.1%.
        if bits < best.0 * if prec == small { 1.0 } else { 0.999 } {
            best = (bits, prec);
        }
    }
    best
}

impl CodeCoder {
    /// Builds the sorted list of distinct codes with their counts.
    pub(super) fn histogram(&mut self, codes: &[i32], min: i32, max: i32) {
        self.vals.clear();
        self.counts.clear();
        let span = (max as i64 - min as i64) as u64 + 1;
        // Counting beats sorting up to a span of a few times the codes.
        if span <= DENSE_SPAN.max(4 * codes.len() as u64) {
            let span = span as usize;
            self.dense.clear();
            if span <= (1 << 12).min(codes.len()) {
                // Four counts a value, a code to each in turn and summed after: runs of one
                // code (zeros) would otherwise wait on their own count at every step (where
                // the codes are many more than their span).
                self.dense.resize(4 * span, 0);
                let (d0, rest) = self.dense.split_at_mut(span);
                let (d1, rest) = rest.split_at_mut(span);
                let (d2, d3) = rest.split_at_mut(span);
                let at = |c: i32| (c as i64 - min as i64) as usize;
                let mut quads = codes.chunks_exact(4);
                for q in &mut quads {
                    d0[at(q[0])] += 1;
                    d1[at(q[1])] += 1;
                    d2[at(q[2])] += 1;
                    d3[at(q[3])] += 1;
                }
                for &c in quads.remainder() {
                    d0[at(c)] += 1;
                }
                for (i, a) in d0.iter_mut().enumerate() {
                    *a += d1[i] + d2[i] + d3[i];
                }
                self.dense.truncate(span);
            } else {
                self.dense.resize(span, 0);
                for &c in codes {
                    self.dense[(c as i64 - min as i64) as usize] += 1;
                }
            }
            for (i, &c) in self.dense.iter().enumerate() {
                if c > 0 {
                    self.vals.push((min as i64 + i as i64) as i32);
                    self.counts.push(c);
                }
            }
        } else {
            self.sorted.clear();
            self.sorted.extend_from_slice(codes);
            self.sorted.sort_unstable();
            for run in self.sorted.chunk_by(|a, b| a == b) {
                self.vals.push(run[0]);
                self.counts.push(run.len() as u32);
            }
        }
    }

    /// Picks the cheapest mode for `codes` (assumed non-empty and not constant).
    pub(super) fn choose(&mut self, codes: &[i32], min: i32, max: i32) -> Choice {
        self.histogram(codes, min, max);
        self.choose_counted(codes, min, max)
    }

    /// [`choose`](Self::choose) with the histogram of `codes` already in `vals` and `counts`
    /// (as [`histogram`](Self::histogram) leaves it).
    pub(super) fn choose_counted(&mut self, codes: &[i32], min: i32, max: i32) -> Choice {
        let n = codes.len() as u64;
        let span = max as i64 - min as i64;
        let width = 64 - (span as u64).leading_zeros();
        let packed = (n as f64 * width as f64 + 16.0, Choice::Packed { width });

        // Rank every candidate by a quick estimate, then price the best few exactly.
        let mut ranked: Vec<(f64, Choice)> = Vec::with_capacity(4 * SPLITS.len() + 1);
        let m = self.vals.len();
        let mut gaps = 64.0;
        if m <= MAX_DIRECT {
            for w in self.vals.windows(2) {
                gaps += gamma_bits((w[1] as i64 - w[0] as i64 - 1) as u32) as f64;
            }
            ranked.push((
                gaps + estimate_bits(&self.counts, n),
                Choice::Direct { prec: 0 },
            ));
        }
        // Hybrid tokens need every `v − bias` to fit in an i32.
        if span < i32::MAX as i64 {
            let mode = self.vals[self
                .counts
                .iter()
                .enumerate()
                .max_by_key(|&(i, &c)| (c, usize::MAX - i))
                .map_or(0, |p| p.0)];
            let mut acc = 0u64;
            let median = self.vals[self
                .counts
                .iter()
                .position(|&c| {
                    acc += c as u64;
                    acc * 2 >= n
                })
                .unwrap_or(0)];

            // Stage 1: every split, zigzag, biased at the mode. Stage 2: the best few splits signed,
            // and at the median where it differs from the mode.
            let reach = |bias: i32| {
                64 - ((max as i64 - bias as i64).max(bias as i64 - min as i64) as u64)
                    .leading_zeros()
            };
            let first = ranked.len();
            self.fine.fill(&self.vals, &self.counts, mode, false);
            self.fine.summarize(&self.vals, &self.counts, mode);
            for &(k, msb) in SPLITS {
                // Beyond the largest magnitude, a larger split exponent changes nothing.
                if k > reach(mode) + 2 {
                    continue;
                }
                let layout = Hybrid {
                    k,
                    msb,
                    signed: false,
                };
                let est = self.fine.layout_estimate(layout, n);
                ranked.push((
                    est,
                    Choice::Hybrid {
                        bias: mode,
                        layout,
                        prec: 0,
                    },
                ));
            }
            ranked[first..].sort_by(|a, b| a.0.total_cmp(&b.0));
            let splits: Vec<(u32, u32)> = ranked[first..]
                .iter()
                .take(8)
                .filter_map(|c| match c.1 {
                    Choice::Hybrid { layout, .. } => Some((layout.k, layout.msb)),
                    _ => None,
                })
                .collect();
            // A median within a code or two of the mode gives the same layouts.
            let more: &[(i32, bool)] = if (median as i64 - mode as i64).abs() <= 2 {
                &[(mode, true)]
            } else {
                &[(mode, true), (median, false), (median, true)]
            };
            for &(bias, signed) in more {
                self.fine.fill(&self.vals, &self.counts, bias, signed);
                self.fine.summarize(&self.vals, &self.counts, bias);
                for &(k, msb) in &splits {
                    if k > reach(bias) + 2 {
                        continue;
                    }
                    let layout = Hybrid { k, msb, signed };
                    let est = self.fine.layout_estimate(layout, n);
                    ranked.push((
                        est,
                        Choice::Hybrid {
                            bias,
                            layout,
                            prec: 0,
                        },
                    ));
                }
            }
        }
        ranked.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut best = packed;
        for &(est, choice) in ranked.iter().take(3) {
            if est > best.0 * 1.02 {
                break;
            }
            let (exact, choice) = match choice {
                Choice::Direct { .. } => {
                    let (bits, prec) =
                        entropy_cost(&self.counts, n, false, &mut self.wcodes, &mut self.freqs);
                    (gaps + bits, Choice::Direct { prec })
                }
                Choice::Hybrid { bias, layout, .. } => {
                    self.fine
                        .fill(&self.vals, &self.counts, bias, layout.signed);
                    let extra = self.fine.layout_counts(layout, &mut self.tok_counts);
                    let (bits, prec) =
                        entropy_cost(&self.tok_counts, n, true, &mut self.wcodes, &mut self.freqs);
                    (
                        80.0 + extra as f64 + bits,
                        Choice::Hybrid { bias, layout, prec },
                    )
                }
                _ => unreachable!("only direct and hybrid are ranked"),
            };
            if exact < best.0 {
                best = (exact, choice);
            }
        }
        if self.binned
            && m >= BINNED_MIN_DISTINCT
            && best.0 >= BINNED_MIN_BITS * n as f64
            && let Some(binned) = self.price_binned(n)
            && binned.0 < best.0
        {
            best = binned;
        }
        best.1
    }

    /// Plans bins for the histogrammed stream of `n` codes (into `self.bins`) and prices them
    /// exactly; `None` where no plan fits in [`MAX_BINS`] bins.
    fn price_binned(&mut self, n: u64) -> Option<(f64, Choice)> {
        let mut bin_bits = BIN_BITS;
        loop {
            plan_bins(
                &self.vals,
                &self.counts,
                n,
                bin_bits,
                &mut self.bin_plan,
                &mut self.bins,
            );
            if self.bins.len() <= MAX_BINS {
                break;
            }
            if bin_bits > 1e6 {
                return None;
            }
            bin_bits *= 4.0;
        }
        self.tok_counts.clear();
        self.tok_counts.extend(self.bins.iter().map(|b| b.count));
        let (bits, prec) = entropy_cost(
            &self.tok_counts,
            n,
            false,
            &mut self.wcodes,
            &mut self.freqs,
        );
        let mut table = 64.0;
        let mut raw = 0u64;
        let mut end = self.bins[0].lo;
        for b in &self.bins {
            table += 6.0 + gamma_bits((b.lo - end) as u32) as f64;
            end = b.lo + (1i64 << b.w);
            raw += b.count as u64 * b.w as u64;
        }
        Some((table + bits + raw as f64, Choice::Binned { prec }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::order0_entropy_bits;
    use crate::entropy::tests::{broad, lcg, round_trip};

    #[test]
    fn fast_log2_is_accurate_enough_to_rank() {
        for i in 0..100_000 {
            let x = 1.0 + i as f64 * 7.3;
            assert!((fast_log2(x) - x.log2()).abs() < 5e-5, "{x}");
        }
    }

    /// The encoder finds each code's bin through a coarse table over the span: streams whose
    /// span needs cells of many codes, with many bins in one cell and lone far outliers,
    /// coded binned and back bit for bit.
    #[test]
    fn binned_codes_find_their_bins_over_any_span() {
        let mut far = broad(40_000, 8);
        far.extend([1 << 30, -(1 << 30), i32::MAX, i32::MIN, (1 << 30) + 1]);
        let wide: Vec<i32> = broad(40_000, 9)
            .iter()
            .map(|&c| c.wrapping_mul(4099))
            .collect();
        // A short stream over the whole span: a table of few cells, many bins starting in
        // each.
        let mut short = broad(1_500, 10);
        short.extend([1 << 30, -(1 << 30), i32::MAX, i32::MIN]);
        for codes in [broad(60_000, 7), far, wide, short] {
            let mut c = CodeCoder::new();
            c.allow_binned(true);
            let (min, max) = (*codes.iter().min().unwrap(), *codes.iter().max().unwrap());
            let choice = c.choose(&codes, min, max);
            assert!(
                matches!(choice, Choice::Binned { .. }),
                "{} codes: {choice:?}",
                codes.len()
            );
            round_trip(&codes);
        }
    }

    #[test]
    fn binned_streams_cost_near_their_entropy_where_tokens_cannot() {
        let codes = broad(60_000, 21);
        let bytes = round_trip(&codes) as f64;
        let h0 = order0_entropy_bits(&codes) / 8.0;
        // The plug-in entropy of 60k samples over ~30k distinct codes is far below the true
        // one; what matters is that the binned mode gets well under the hybrid tokens.
        let mut c = CodeCoder::new();
        c.allow_binned(true);
        let (min, max) = (*codes.iter().min().unwrap(), *codes.iter().max().unwrap());
        let choice = c.choose(&codes, min, max);
        assert!(matches!(choice, Choice::Binned { .. }), "{choice:?}");
        let mut hybrid_only = CodeCoder::new();
        hybrid_only.histogram(&codes, min, max);
        let best_hybrid = [(6u32, 3u32), (8, 3), (10, 3), (12, 3)]
            .into_iter()
            .map(|(k, msb)| {
                let layout = Hybrid {
                    k,
                    msb,
                    signed: true,
                };
                let bias = 0;
                hybrid_only
                    .fine
                    .fill(&hybrid_only.vals, &hybrid_only.counts, bias, true);
                let extra = hybrid_only
                    .fine
                    .layout_counts(layout, &mut hybrid_only.tok_counts);
                let (bits, _) = entropy_cost(
                    &hybrid_only.tok_counts,
                    codes.len() as u64,
                    true,
                    &mut hybrid_only.wcodes,
                    &mut hybrid_only.freqs,
                );
                (bits + extra as f64) / 8.0
            })
            .fold(f64::INFINITY, f64::min);
        assert!(
            bytes < best_hybrid * 0.95,
            "binned {bytes} bytes vs hybrid {best_hybrid} (entropy {h0})"
        );
        // Streams at the ends of the i32 range round trip through bins that end there.
        let mut ends: Vec<i32> = broad(5000, 3)
            .iter()
            .map(|&c| c.wrapping_mul(8191))
            .collect();
        ends.extend([i32::MIN, i32::MAX, i32::MAX - 1, i32::MIN + 1]);
        round_trip(&ends);
    }

    /// The plan by exhaustive search: every width from every value, each bin's end found by
    /// scanning, the first of equal costs kept.
    fn exhaustive(vals: &[i32], counts: &[u32], n: u64, bin_bits: f64) -> (Vec<f64>, Vec<u8>) {
        let m = vals.len();
        let log_n = fast_log2(n as f64);
        let mut cost = vec![0.0; m + 1];
        let mut width = vec![0u8; m + 1];
        for i in (0..m).rev() {
            let mut b = (f64::INFINITY, 0u8);
            for w in 0..WIDTHS {
                let hi = vals[i] as i64 + (1i64 << w) - 1;
                if hi > i32::MAX as i64 {
                    break;
                }
                let k = (i..m).find(|&k| vals[k] as i64 > hi).unwrap_or(m);
                let c: u64 = counts[i..k].iter().map(|&c| c as u64).sum();
                let own = c as f64 * (w as f64 + log_n - fast_log2(c as f64)) + bin_bits;
                if own + cost[k] < b.0 {
                    b = (own + cost[k], w as u8);
                }
            }
            (cost[i], width[i]) = b;
        }
        (cost, width)
    }

    /// Sorted distinct values and their counts, of several shapes: dense, heavy-tailed,
    /// spread over the whole i32 range with both ends present.
    fn histograms() -> Vec<(Vec<i32>, Vec<u32>)> {
        let mut seed = 7u64;
        let mut next = move || lcg(&mut seed);
        let mut out = Vec::new();
        for shape in 0..6 {
            let n = [1, 2, 300, 2000, 2000, 2000][shape];
            let mut codes: Vec<i32> = (0..n)
                .map(|_| {
                    let u = (next() as f64 + 0.5) / (1u64 << 53) as f64;
                    let sign = if next() & 1 == 1 { 1.0 } else { -1.0 };
                    match shape {
                        0..=2 => (sign * 40.0 * u) as i32,
                        3 => (sign * 30.0 * ((1.0 / u).powf(1.3) - 1.0)).clamp(-1e9, 1e9) as i32,
                        4 => (sign * u * 2.1e9) as i32,
                        _ => (sign * 1e4 * u * u) as i32,
                    }
                })
                .collect();
            if shape == 4 {
                codes.extend([i32::MIN, i32::MAX, i32::MIN + 1, i32::MAX - 3]);
            }
            codes.sort_unstable();
            let (mut vals, mut counts) = (Vec::new(), Vec::new());
            for run in codes.chunk_by(|a, b| a == b) {
                vals.push(run[0]);
                counts.push(run.len() as u32);
            }
            out.push((vals, counts));
        }
        out
    }

    #[test]
    fn the_bin_plan_is_the_exhaustive_search_s_on_every_path() {
        for (vals, counts) in histograms() {
            let n: u64 = counts.iter().map(|&c| c as u64).sum();
            for bin_bits in [BIN_BITS, 4.0 * BIN_BITS] {
                let (cost, width) = exhaustive(&vals, &counts, n, bin_bits);
                // The widest vectors this CPU has.
                let mut plan = BinPlan::default();
                let mut bins = Vec::new();
                let total = plan_bins(&vals, &counts, n, bin_bits, &mut plan, &mut bins);
                let m = vals.len();
                assert_eq!(total.to_bits(), cost[0].to_bits(), "m {m}");
                assert_eq!(plan.width[..m], width[..m], "m {m}");
                for (a, b) in plan.cost.iter().zip(&cost) {
                    assert_eq!(a.to_bits(), b.to_bits(), "m {m}");
                }
                // Without vectors wider than the target's baseline: the same bits.
                let mut scalar = BinPlan::default();
                plan_body(&vals, &counts, n, bin_bits, &mut scalar);
                assert_eq!(scalar.width, plan.width);
                assert!(
                    scalar
                        .cost
                        .iter()
                        .zip(&plan.cost)
                        .all(|(a, b)| a.to_bits() == b.to_bits())
                );
                // The bins cover every value once, in order, within their widths.
                let covered: u64 = bins.iter().map(|b| b.count as u64).sum();
                assert_eq!(covered, n);
                for pair in bins.windows(2) {
                    assert!(pair[0].lo + (1i64 << pair[0].w) <= pair[1].lo);
                }
            }
        }
    }
}
