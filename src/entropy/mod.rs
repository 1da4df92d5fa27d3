//! The entropy stage: integer code streams coded close to their order-0 entropy.
//!
//! [`CodeCoder::encode`] takes a stream of `i32` codes (quantization codes of one column in one
//! chunk, or a byte plane of lossless data), measures it, and writes it in whichever mode is
//! smallest, priced exactly, tables included:
//!
//! | mode | byte | body | good for |
//! |---|---|---|---|
//! | constant | 0 | `ivarint value` | a column that does not vary in the chunk |
//! | direct | 1 | `u8 prec`, `uvarint m`, `ivarint first`, bit section (gaps, weights), rANS section | few distinct codes, wherever they lie (categories, sentinels) |
//! | hybrid | 2 | `u8 prec`, `u8 layout`, `ivarint bias`, `uvarint alphabet`, `uvarint present`, bit section (weights), rANS section, raw-bits section | wide or peaked distributions |
//! | packed | 3 | `ivarint min`, `u8 width`, bit section | tiny or flat streams, where any table costs more |
//! | binned | 4 | `u8 prec`, `uvarint bins`, `ivarint lowest`, bit section (bins, weights), rANS section, raw-bits section | broad distributions of any shape (a column's values over many decades, in ordinals) |
//!
//! A *section* is a `uvarint` byte length followed by the bytes. Bit sections are
//! [`BitWriter`](crate::bytes::BitWriter) output (LSB first); rANS sections are [`rans`]
//! streams; weights are coded as in [`table`]; the layout byte is [`Hybrid::to_byte`]. The
//! number of codes is known to the decoder from its context.
//!
//! rANS handles a dominant code (p > 0.5) at a fraction of a bit, where a Huffman code would
//! spend a whole bit per value; hybrid tokens ([`hybrid`]) keep tables small for wide
//! distributions; direct tables code sparse alphabets (e.g. PID codes) exactly.
//!
//! Binned streams (format version 3) code each value as a *bin* (by rANS) and its offset in the
//! bin (raw bits): bins are ranges `[lo, lo + 2^w)` fitted to the stream by [`plan_bins`], an
//! exact dynamic program over its distinct values, so a bin is narrow where values are dense
//! and wide where they are sparse, whatever the shape (pcodec's binning, chosen optimally). The
//! bit section holds, per bin, `w` in 6 bits and (after the first) the Elias-gamma gap from the
//! previous bin's end, then the bins' weights as in [`table`] (dense).
//!
//! Choosing: every candidate (direct; hybrid with each split, zigzag or signed, biased at the
//! mode or the median) is ranked by a quick estimate from one histogram of the stream, and the
//! best three are priced exactly with the tables the encoder would write; for broad streams of
//! a point-wise relative column ([`CodeCoder::allow_binned`]) the binned mode is planned and
//! priced exactly too.

pub(crate) mod hybrid;
pub(crate) mod rans;
pub(crate) mod table;

use crate::bytes::{
    BitReader, BitWriter, ByteReader, DecodeResult, Malformed, put_ivarint, put_section,
    put_uvarint,
};
use hybrid::{Hybrid, SPLITS, TokenEntry};
use table::{choose_prec, codes_bits, codes_for_counts, freqs_for_codes, gamma_bits};

const MODE_CONST: u8 = 0;
const MODE_DIRECT: u8 = 1;
const MODE_HYBRID: u8 = 2;
const MODE_PACKED: u8 = 3;
const MODE_BINNED: u8 = 4;

/// Most bins of a binned stream.
const MAX_BINS: usize = 4096;
/// Streams are planned in bins only where the best other mode spends at least this many bits
/// per value and the stream has at least [`BINNED_MIN_DISTINCT`] distinct values: narrow
/// streams are coded at their entropy already.
const BINNED_MIN_BITS: f64 = 4.0;
const BINNED_MIN_DISTINCT: usize = 64;
/// What a bin's description and weight cost, about, when planning.
const BIN_BITS: f64 = 18.0;

/// Most distinct codes a direct table may hold.
const MAX_DIRECT: usize = 4096;
/// Streams whose codes span less than this are histogrammed densely.
const DENSE_SPAN: u64 = 1 << 16;
/// Magnitudes below this get a bin each in the fine histogram used to price hybrid layouts.
const FINE_EXACT_BITS: u32 = 10;
const FINE_EXACT: usize = 1 << FINE_EXACT_BITS;
/// Above the exact bins: one bin per (exponent, top 3 mantissa bits).
const FINE_BINS: usize = FINE_EXACT + ((32 - FINE_EXACT_BITS as usize) << 3);

/// The mode [`CodeCoder::encode`] chose.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Choice {
    Const(i32),
    Direct {
        prec: u32,
    },
    Hybrid {
        bias: i32,
        layout: Hybrid,
        prec: u32,
    },
    Packed {
        width: u32,
    },
    /// The bins are [`CodeCoder`]'s `bins`, planned by [`plan_bins`].
    Binned {
        prec: u32,
    },
}

/// One bin of a binned stream: the values `lo ..= lo + 2^w − 1`, and how many of the stream's
/// codes fall in it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bin {
    lo: i64,
    w: u32,
    count: u32,
}

/// Scratch of [`plan_bins`]: the dynamic program's table and the suffix sums of the counts.
#[derive(Debug, Default)]
struct BinPlan {
    /// `best[i]`: the cheapest plan for `vals[i..]`, and the width of its first bin.
    best: Vec<(f64, u8)>,
    /// `suffix[i] = Σ counts[i..]`.
    suffix: Vec<u64>,
}

/// Counts below this have their [`fast_log2`] tabled ([`log2_count`]): a segment's streams
/// never count more codes.
const LOG2_TABLE: usize = (1 << 16) + 1;

/// `fast_log2(c)` for a count `c ≥ 1`, from a table where `c` is below [`LOG2_TABLE`] (the
/// binning plan evaluates it tens of times per code). The table holds exactly what
/// `fast_log2` computes, so plans do not depend on which path priced them.
#[inline]
fn log2_count(c: u64) -> f64 {
    static TABLE: std::sync::OnceLock<Box<[f64]>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        (0..LOG2_TABLE)
            .map(|c| fast_log2(c.max(1) as f64))
            .collect()
    });
    match table.get(c as usize) {
        Some(&l) => l,
        None => fast_log2(c as f64),
    }
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
    const WIDTHS: usize = 33;
    let m = vals.len();
    let log_n = fast_log2(n as f64);
    let BinPlan { best, suffix } = plan;
    best.clear();
    best.resize(m + 1, (0.0, 0));
    suffix.clear();
    suffix.resize(m + 1, 0);
    for i in (0..m).rev() {
        suffix[i] = suffix[i + 1] + counts[i] as u64;
    }
    // fast_log2 errs by under 5e-5: on a count that is at most n, 1e-4·n bits.
    let slack = 1e-4 * n as f64 + 1.0;
    let mut ends = [m; WIDTHS];
    for i in (0..m).rev() {
        let lo = vals[i] as i64;
        let mut b = (f64::INFINITY, 0u8);
        let mut prev_end = usize::MAX;
        for (w, end) in ends.iter_mut().enumerate() {
            let hi = lo + (1i64 << w) - 1;
            if hi > i32::MAX as i64 {
                break;
            }
            while *end > i + 1 && vals[*end - 1] as i64 > hi {
                *end -= 1;
            }
            let k = *end;
            // A wider bin holding the same values only costs more.
            if k == prev_end {
                continue;
            }
            prev_end = k;
            let c = suffix[i] - suffix[k];
            let own = c as f64 * (w as f64 + log_n - log2_count(c)) + bin_bits;
            let cost = own + best[k].0;
            if cost < b.0 {
                b = (cost, w as u8);
            }
            // From width 2 on, a bin's own cost only grows with its width (by at least
            // 0.55 bits per code it gains, beyond the log's error): once it alone exceeds
            // the best plan, no wider bin can be better.
            if k == m || (w >= 2 && own > b.0 + slack) {
                break;
            }
        }
        best[i] = b;
    }
    bins.clear();
    let mut i = 0;
    while i < m {
        let w = best[i].1 as u32;
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
    best[0].0
}

/// Magnitude counts for pricing hybrid layouts: for a bias and a sign mode, every difference
/// `d = v − bias` falls in one bin (exact below 2^10, by exponent and top 3 bits above).
#[derive(Debug, Default)]
struct Fine {
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
    fn fill(&mut self, vals: &[i32], counts: &[u32], bias: i32, signed: bool) {
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

    /// Builds the per-cell prefix sums of the last fill (for [`layout_estimate`]).
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
    fn layout_counts(&self, h: Hybrid, tok: &mut Vec<u32>) -> u64 {
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

/// Reusable scratch space for coding integer streams (one per worker thread).
#[derive(Debug, Default)]
pub struct CodeCoder {
    dense: Vec<u32>,
    vals: Vec<i32>,
    counts: Vec<u32>,
    sorted: Vec<i32>,
    fine: Fine,
    tok_counts: Vec<u32>,
    bins: Vec<Bin>,
    bin_plan: BinPlan,
    prev_vals: Vec<i32>,
    prev_lut: Vec<u8>,
    prev_split: Vec<Vec<i32>>,
    prev_out: Vec<u8>,
    /// Whether [`CodeCoder::encode`] may plan binned streams ([`CodeCoder::allow_binned`]).
    binned: bool,

    symbols: Vec<u16>,
    wcodes: Vec<u8>,
    freqs: Vec<u32>,
    entries: Vec<TokenEntry>,
    lut: Vec<u64>,
    /// Scratch for a rANS stream and a raw-bits section before they are framed.
    stream: Vec<u8>,
    raw: Vec<u8>,
    enc: rans::Encoder,
    dec: Option<Box<rans::Decoder>>,
}

/// `log2(x)` for `x ≥ 1`, within 5e-5: for ranking candidate layouts, not for coding.
#[inline]
fn fast_log2(x: f64) -> f64 {
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

/// Most contexts of the by-previous-code layout ([`CodeCoder::encode_by_previous`]): the
/// most frequent codes, each a context, and one context for every other code.
const PREV_CONTEXTS: usize = 63;
/// Streams are tried by previous code only with at most this many distinct codes, and at
/// least [`PREV_MIN_LEN`] codes.
const PREV_MAX_DISTINCT: usize = 1024;
const PREV_MIN_LEN: usize = 4096;
/// Codes of a stream's prefix that the by-previous-code layout is probed on.
const PREV_PROBE: usize = 8192;

/// The smallest and largest of `codes`, if any.
fn range(codes: &[i32]) -> Option<(i32, i32)> {
    let (&first, rest) = codes.split_first()?;
    Some(
        rest.iter()
            .fold((first, first), |(lo, hi), &c| (lo.min(c), hi.max(c))),
    )
}

/// Reads the per-context code counts of a split stream (one `uvarint` each) into `counts`;
/// they must add up to the stream's `n` codes.
fn read_context_counts(r: &mut ByteReader<'_>, n: usize, counts: &mut [usize]) -> DecodeResult<()> {
    let mut total = 0usize;
    for c in counts.iter_mut() {
        *c = r.uvarint_max(n as u64, "context count")?;
        total += *c;
    }
    if total != n {
        return Err(Malformed(format!(
            "context counts add up to {total} codes, not {n}"
        )));
    }
    Ok(())
}

/// Contexts of [`CodeCoder::encode_in_context`]: the magnitudes (0, 1, 2 or more) of the two
/// codes before.
pub(crate) const CONTEXTS: usize = 9;

/// The class of a code for the contexts: its magnitude, 0, 1 or 2 (for 2 and more).
#[inline(always)]
fn class(c: i32) -> usize {
    c.unsigned_abs().min(2) as usize
}

/// The context of a code whose two predecessors are `p1` (the nearer) and `p2`.
#[inline(always)]
fn context(p1: i32, p2: i32) -> usize {
    class(p1) * 3 + class(p2)
}

/// Whether coding `codes` by context is estimated to save at least 3%: order-0 entropies of
/// the codes' tokens (exact below ±32, else by sign and length, whose raw bits cost the same
/// either way), with each non-empty stream charged for its table.
fn contexts_pay(codes: &[i32]) -> bool {
    const BINS: usize = 64 + 2 * 33;
    if codes.len() < 4096 {
        return false;
    }
    let bin = |c: i32| {
        if (-32..32).contains(&c) {
            (c + 32) as usize
        } else {
            64 + 2 * (32 - c.unsigned_abs().leading_zeros()) as usize + usize::from(c < 0)
        }
    };
    let mut hist = [[0u32; BINS]; CONTEXTS];
    let (mut p1, mut p2) = (0, 0);
    for &c in codes {
        hist[context(p1, p2)][bin(c)] += 1;
        (p2, p1) = (p1, c);
    }
    // Bits of the counts `h` at their order-0 entropy, and of a table for them.
    let cost = |h: &[u32; BINS]| {
        let n: u32 = h.iter().sum();
        if n == 0 {
            return 0.0;
        }
        let total = f64::from(n);
        let mut bits = 16.0;
        for &c in h.iter().filter(|&&c| c > 0) {
            bits += f64::from(c) * (total / f64::from(c)).log2() + 8.0;
        }
        bits
    };
    let mut whole = [0u32; BINS];
    for h in &hist {
        for (w, &c) in whole.iter_mut().zip(h) {
            *w += c;
        }
    }
    let split: f64 = hist.iter().map(cost).sum();
    split < 0.97 * cost(&whole)
}

impl CodeCoder {
    /// Codes `codes` as [`CONTEXTS`] streams, each code in the stream of its context (the
    /// magnitudes of the two codes before it, 0 before the first), so where neighbouring
    /// residuals are alike (the smooth and the busy regions of a field) each stream is
    /// narrower than the whole. Layout: one `uvarint` count per context, then the stream of
    /// each non-empty context, in context order. `split` is scratch.
    pub(crate) fn encode_in_context(
        &mut self,
        codes: &[i32],
        split: &mut [Vec<i32>; CONTEXTS],
        out: &mut Vec<u8>,
    ) {
        for s in split.iter_mut() {
            s.clear();
        }
        let (mut p1, mut p2) = (0, 0);
        for &c in codes {
            split[context(p1, p2)].push(c);
            (p2, p1) = (p1, c);
        }
        for s in split.iter() {
            put_uvarint(out, s.len() as u64);
        }
        for s in split.iter().filter(|s| !s.is_empty()) {
            self.encode(s, out);
        }
    }

    /// Codes `codes` as one stream, or split by context
    /// ([`encode_in_context`](Self::encode_in_context)) where that is estimated to save at
    /// least 3% ([`contexts_pay`]; decoding by context is slower), after a byte saying which
    /// (0 one stream, 1 by context, 2 by previous code). A stream of few distinct codes (ids,
    /// categories, counts: a track number that follows a pattern) is also coded by previous
    /// code ([`encode_by_previous`](Self::encode_by_previous)), and kept where smaller.
    /// `split` is scratch.
    pub(crate) fn encode_either(
        &mut self,
        codes: &[i32],
        split: &mut [Vec<i32>; CONTEXTS],
        out: &mut Vec<u8>,
    ) {
        let start = out.len();
        if contexts_pay(codes) {
            out.push(1);
            self.encode_in_context(codes, split, out);
        } else {
            out.push(0);
            self.encode(codes, out);
        }
        // Probed on a prefix: where the code before promises to save 5% there, against both
        // plain coding and what the stream costs now (by context, its magnitudes may have
        // caught the same pattern), the whole stream is coded so and priced exactly.
        let probe = &codes[..codes.len().min(PREV_PROBE)];
        let now = 8.0 * (out.len() - start) as f64 * probe.len() as f64 / codes.len() as f64;
        if codes.len() >= PREV_MIN_LEN && self.previous_contexts(probe) && {
            let (by_previous, plain) = self.by_previous_estimate(probe);
            by_previous < 0.95 * plain.min(now)
        } {
            let mut alt = std::mem::take(&mut self.prev_out);
            alt.clear();
            alt.push(2);
            self.encode_by_previous(codes, &mut alt);
            if alt.len() < out.len() - start {
                out.truncate(start);
                out.extend_from_slice(&alt);
            }
            self.prev_out = alt;
        }
    }

    /// Chooses the contexts of [`encode_by_previous`](Self::encode_by_previous) for `codes`
    /// (into `prev_vals`, ascending): its most frequent codes, where it has few distinct ones.
    fn previous_contexts(&mut self, codes: &[i32]) -> bool {
        let Some((min, max)) = range(codes) else {
            return false;
        };
        if min == max {
            return false;
        }
        self.histogram(codes, min, max);
        if self.vals.len() > PREV_MAX_DISTINCT {
            return false;
        }
        let mut by_count: Vec<(u32, i32)> = self
            .counts
            .iter()
            .zip(&self.vals)
            .map(|(&c, &v)| (c, v))
            .collect();
        by_count.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        self.prev_vals.clear();
        self.prev_vals
            .extend(by_count.iter().take(PREV_CONTEXTS).map(|&(_, v)| v));
        self.prev_vals.sort_unstable();
        true
    }

    /// Quick estimates in bits of [`encode_by_previous`](Self::encode_by_previous) and of
    /// plain coding for `codes`: each context's order-0 entropy (or the whole stream's), about
    /// four bits per (context, code) pair for the tables and forty per context. `self.vals`,
    /// `self.counts` and `self.prev_vals` are those of
    /// [`previous_contexts`](Self::previous_contexts) for the same `codes`.
    fn by_previous_estimate(&mut self, codes: &[i32]) -> (f64, f64) {
        let n = codes.len() as f64;
        let mut plain = 40.0 + n * fast_log2(n);
        for &c in &self.counts {
            plain += 4.0 - f64::from(c) * fast_log2(f64::from(c));
        }
        let k = self.prev_vals.len();
        let m = self.vals.len();
        // Each distinct code's index, and the context it makes for the code after it.
        let min = self.vals[0];
        let span = (self.vals[m - 1] as i64 - min as i64) as usize + 1;
        let dense_index = span <= DENSE_SPAN as usize;
        self.lut.clear();
        if dense_index {
            self.lut.resize(span, 0);
            for (i, &v) in self.vals.iter().enumerate() {
                self.lut[(v as i64 - min as i64) as usize] = i as u64;
            }
        }
        let index = |lut: &[u64], vals: &[i32], c: i32| -> usize {
            if dense_index {
                lut[(c as i64 - min as i64) as usize] as usize
            } else {
                vals.binary_search(&c).unwrap_or(0)
            }
        };
        let ctx_of: Vec<u8> = self
            .vals
            .iter()
            .map(|v| self.prev_vals.binary_search(v).unwrap_or(k) as u8)
            .collect();
        self.dense.clear();
        self.dense.resize((k + 1) * m, 0);
        let mut x = self.prev_vals.binary_search(&0).unwrap_or(k);
        for &c in codes {
            let v = index(&self.lut, &self.vals, c);
            self.dense[x * m + v] += 1;
            x = ctx_of[v] as usize;
        }
        let mut bits = 0.0;
        for row in self.dense.chunks(m) {
            let n: u32 = row.iter().sum();
            if n == 0 {
                continue;
            }
            bits += 40.0 + f64::from(n) * fast_log2(f64::from(n));
            for &c in row.iter().filter(|&&c| c > 0) {
                bits += 4.0 - f64::from(c) * fast_log2(f64::from(c));
            }
        }
        (bits, plain)
    }

    /// Codes `codes` by previous code: each code in the stream of the code before it (0 before
    /// the first) when that is one of the context codes `prev_vals`, else in the last stream.
    /// Layout: `uvarint K`, the K context codes (`ivarint` first, then `uvarint` gaps − 1),
    /// K + 1 `uvarint` counts, then each non-empty stream.
    fn encode_by_previous(&mut self, codes: &[i32], out: &mut Vec<u8>) {
        let vals = std::mem::take(&mut self.prev_vals);
        let k = vals.len();
        let mut split = std::mem::take(&mut self.prev_split);
        split.resize_with(k + 1, Vec::new);
        for s in split.iter_mut() {
            s.clear();
        }
        let mut prev = 0;
        for &c in codes {
            let x = vals.binary_search(&prev).unwrap_or(k);
            split[x].push(c);
            prev = c;
        }
        put_uvarint(out, k as u64);
        for (i, &v) in vals.iter().enumerate() {
            if i == 0 {
                put_ivarint(out, v as i64);
            } else {
                put_uvarint(out, (v as i64 - vals[i - 1] as i64 - 1) as u64);
            }
        }
        for s in &split[..=k] {
            put_uvarint(out, s.len() as u64);
        }
        for s in split[..=k].iter().filter(|s| !s.is_empty()) {
            self.encode(s, out);
        }
        self.prev_split = split;
        self.prev_vals = vals;
    }

    /// Decodes `n` codes written by [`encode_by_previous`](Self::encode_by_previous) into
    /// `out` (replacing its contents).
    fn decode_by_previous(
        &mut self,
        r: &mut ByteReader<'_>,
        n: usize,
        out: &mut Vec<i32>,
    ) -> DecodeResult<()> {
        let k = r.uvarint_max(PREV_CONTEXTS as u64, "previous-code contexts")?;
        let mut vals = std::mem::take(&mut self.prev_vals);
        vals.clear();
        let mut v = 0i64;
        for i in 0..k {
            v = if i == 0 {
                r.ivarint()?
            } else {
                v.saturating_add(r.uvarint()?.min(u32::MAX as u64) as i64 + 1)
            };
            vals.push(i32::try_from(v).map_err(|_| Malformed::new("context code out of range"))?);
        }
        let mut counts = [0usize; PREV_CONTEXTS + 1];
        read_context_counts(r, n, &mut counts[..=k])?;
        let mut split = std::mem::take(&mut self.prev_split);
        split.resize_with(k + 1, Vec::new);
        let mut result = Ok(());
        for (s, &c) in split.iter_mut().zip(&counts[..=k]) {
            s.clear();
            if c > 0 {
                result = self.decode(r, c, s);
                if result.is_err() {
                    break;
                }
            }
        }
        if result.is_ok() {
            // Counts add up to `n`, so every stream is used up exactly when none runs short.
            out.clear();
            out.reserve(n);
            // The context of each code: a table over the context codes' span where it is
            // small (the usual case: levels of a coarse bound, ids), else a search.
            let lo = vals.first().copied().unwrap_or(0);
            let span = vals
                .last()
                .map_or(0, |&hi| (hi as i64 - lo as i64 + 1) as usize);
            self.prev_lut.clear();
            if span <= DENSE_SPAN as usize {
                self.prev_lut.resize(span, k as u8);
                for (i, &v) in vals.iter().enumerate() {
                    self.prev_lut[(v as i64 - lo as i64) as usize] = i as u8;
                }
            }
            let lut = &self.prev_lut[..];
            let context = |c: i32| -> usize {
                if lut.is_empty() && span > 0 {
                    vals.binary_search(&c).unwrap_or(k)
                } else {
                    let d = (c as i64 - lo as i64) as u64;
                    if d < lut.len() as u64 {
                        lut[d as usize] as usize
                    } else {
                        k
                    }
                }
            };
            let mut at = [0usize; PREV_CONTEXTS + 1];
            let mut x = context(0);
            for _ in 0..n {
                match split[x].get(at[x]) {
                    Some(&c) => {
                        at[x] += 1;
                        out.push(c);
                        x = context(c);
                    }
                    None => {
                        result = Err(Malformed::new("a context's code stream ends early"));
                        break;
                    }
                }
            }
        }
        self.prev_split = split;
        self.prev_vals = vals;
        result
    }

    /// Decodes `n` codes written by [`encode_either`](Self::encode_either) into `out`
    /// (replacing its contents).
    pub(crate) fn decode_either(
        &mut self,
        r: &mut ByteReader<'_>,
        n: usize,
        split: &mut [Vec<i32>; CONTEXTS],
        out: &mut Vec<i32>,
    ) -> DecodeResult<()> {
        match r.u8()? {
            0 => self.decode(r, n, out),
            1 => self.decode_in_context(r, n, split, out),
            2 => self.decode_by_previous(r, n, out),
            m => Err(Malformed(format!("unknown code stream layout {m}"))),
        }
    }

    /// Decodes `n` codes written by [`encode_in_context`](Self::encode_in_context) into `out`
    /// (replacing its contents). `split` is scratch.
    pub(crate) fn decode_in_context(
        &mut self,
        r: &mut ByteReader<'_>,
        n: usize,
        split: &mut [Vec<i32>; CONTEXTS],
        out: &mut Vec<i32>,
    ) -> DecodeResult<()> {
        let mut counts = [0usize; CONTEXTS];
        read_context_counts(r, n, &mut counts)?;
        for (s, &c) in split.iter_mut().zip(&counts) {
            s.clear();
            if c > 0 {
                self.decode(r, c, s)?;
            }
        }
        // Counts add up to `n`, so every stream is used up exactly when none runs short.
        // The merge is serial (each context depends on the codes before), except in a run: in
        // the contexts whose two codes have the same class (0, 1 or 2+), a code of that class
        // leaves the context as it was, so such a run is copied from its stream at once (long
        // runs of zeros in the smooth parts of a field).
        out.clear();
        out.reserve(n);
        let mut at = [0usize; CONTEXTS];
        let (mut a1, mut a2) = (0usize, 0usize);
        while out.len() < n {
            let x = a1 * 3 + a2;
            let s = &split[x];
            if a1 == a2 {
                let rest = &s[at[x]..];
                let lim = rest.len().min(n - out.len());
                let run = rest[..lim]
                    .iter()
                    .position(|&c| class(c) != a1)
                    .unwrap_or(lim);
                out.extend_from_slice(&rest[..run]);
                at[x] += run;
                if out.len() == n {
                    break;
                }
            }
            let &c = s
                .get(at[x])
                .ok_or_else(|| Malformed::new("a context's code stream ends early"))?;
            at[x] += 1;
            out.push(c);
            (a2, a1) = (a1, class(c));
        }
        Ok(())
    }

    /// A coder with empty scratch space.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets [`encode`](Self::encode) plan binned streams (off by default): the column coder
    /// allows them for a point-wise relative column's ordinals, the broad streams they pay on
    /// (5–10%), and spares the planning elsewhere, where it costs a third of the speed for
    /// well under 1% (the jets at `rel:1e-3`: 0.07%).
    pub(crate) fn allow_binned(&mut self, on: bool) {
        self.binned = on;
    }

    /// Builds the sorted list of distinct codes with their counts.
    fn histogram(&mut self, codes: &[i32], min: i32, max: i32) {
        self.vals.clear();
        self.counts.clear();
        let span = (max as i64 - min as i64) as u64 + 1;
        // Counting beats sorting up to a span of a few times the codes.
        if span <= DENSE_SPAN.max(4 * codes.len() as u64) {
            self.dense.clear();
            self.dense.resize(span as usize, 0);
            for &c in codes {
                self.dense[(c as i64 - min as i64) as usize] += 1;
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
    fn choose(&mut self, codes: &[i32], min: i32, max: i32) -> Choice {
        let n = codes.len() as u64;
        self.histogram(codes, min, max);
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
        if self.binned && m >= BINNED_MIN_DISTINCT && best.0 >= BINNED_MIN_BITS * n as f64 {
            if let Some(binned) = self.price_binned(n) {
                if binned.0 < best.0 {
                    best = binned;
                }
            }
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

    /// Appends the coded form of `codes` to `out`.
    pub(crate) fn encode(&mut self, codes: &[i32], out: &mut Vec<u8>) {
        let Some((min, max)) = range(codes) else {
            out.push(MODE_CONST);
            put_ivarint(out, 0);
            return;
        };
        let choice = if min == max {
            Choice::Const(min)
        } else {
            self.choose(codes, min, max)
        };
        self.write(codes, min, choice, out);
    }

    fn write(&mut self, codes: &[i32], min: i32, choice: Choice, out: &mut Vec<u8>) {
        let n = codes.len() as u64;
        match choice {
            Choice::Const(v) => {
                out.push(MODE_CONST);
                put_ivarint(out, v as i64);
            }
            Choice::Packed { width } => {
                out.push(MODE_PACKED);
                put_ivarint(out, min as i64);
                out.push(width as u8);
                let mut bw = BitWriter::with_capacity((n * width as u64 / 8) as usize + 8);
                // The span of i32 codes needs at most 32 bits.
                for &c in codes {
                    bw.write((c as i64 - min as i64) as u32, width);
                }
                put_section(out, &bw.finish());
            }
            Choice::Direct { prec } => {
                let m = self.vals.len();
                codes_for_counts(&self.counts, n, prec, &mut self.wcodes);
                freqs_for_codes(&self.wcodes, n, prec, &mut self.freqs).expect("encoder table");
                out.push(MODE_DIRECT);
                out.push(prec as u8);
                put_uvarint(out, m as u64);
                put_ivarint(out, self.vals[0] as i64);
                let mut bw = BitWriter::new();
                for w in self.vals.windows(2) {
                    bw.write_gamma((w[1] as i64 - w[0] as i64 - 1) as u32);
                }
                table::write_codes(&mut bw, &self.wcodes, false, n, prec);
                put_section(out, &bw.finish());
                // Map codes to symbol indices.
                self.symbols.clear();
                let span = (self.vals[m - 1] as i64 - min as i64) as u64 + 1;
                if span <= DENSE_SPAN {
                    // Reuse the dense histogram as a value -> index map.
                    self.dense.clear();
                    self.dense.resize(span as usize, 0);
                    for (i, &v) in self.vals.iter().enumerate() {
                        self.dense[(v as i64 - min as i64) as usize] = i as u32;
                    }
                    let dense = &self.dense;
                    self.symbols.extend(
                        codes
                            .iter()
                            .map(|&c| dense[(c as i64 - min as i64) as usize] as u16),
                    );
                } else {
                    let vals = &self.vals;
                    self.symbols.extend(
                        codes
                            .iter()
                            .map(|c| vals.binary_search(c).expect("listed") as u16),
                    );
                }
                self.write_rans(prec, out);
            }
            Choice::Hybrid { bias, layout, prec } => {
                self.fine
                    .fill(&self.vals, &self.counts, bias, layout.signed);
                self.fine.layout_counts(layout, &mut self.tok_counts);
                let present = self.tok_counts.iter().filter(|&&c| c > 0).count();
                codes_for_counts(&self.tok_counts, n, prec, &mut self.wcodes);
                freqs_for_codes(&self.wcodes, n, prec, &mut self.freqs).expect("encoder table");
                out.push(MODE_HYBRID);
                out.push(prec as u8);
                out.push(layout.to_byte());
                put_ivarint(out, bias as i64);
                put_uvarint(out, self.tok_counts.len() as u64);
                put_uvarint(out, present as u64);
                let mut bw = BitWriter::new();
                table::write_codes(&mut bw, &self.wcodes, true, n, prec);
                put_section(out, &bw.finish());
                let mut raw = BitWriter::reusing(std::mem::take(&mut self.raw));
                self.symbols.clear();
                self.symbols.resize(codes.len(), 0);
                let span = (self.vals[self.vals.len() - 1] as i64 - min as i64) as usize + 1;
                if span <= DENSE_SPAN as usize && span <= 4 * codes.len() {
                    // Tokenize each distinct value once: token | raw-bit count << 16 | raw bits << 32.
                    self.lut.clear();
                    self.lut.resize(span, 0);
                    for &v in &self.vals {
                        let (t, nb, bits) = layout.encode(v.wrapping_sub(bias));
                        self.lut[(v as i64 - min as i64) as usize] =
                            t as u64 | (nb as u64) << 16 | (bits as u64) << 32;
                    }
                    let lut = &self.lut[..];
                    for (s, &c) in self.symbols.iter_mut().zip(codes) {
                        let e = lut[(c as i64 - min as i64) as usize];
                        *s = e as u16;
                        raw.write((e >> 32) as u32, (e >> 16) as u32 & 0xff);
                    }
                } else {
                    for (s, &c) in self.symbols.iter_mut().zip(codes) {
                        let (t, nb, bits) = layout.encode(c.wrapping_sub(bias));
                        *s = t as u16;
                        raw.write(bits, nb);
                    }
                }
                self.write_rans(prec, out);
                self.raw = raw.finish();
                put_section(out, &self.raw);
            }
            Choice::Binned { prec } => self.write_binned(codes, prec, out),
        }
    }

    /// The binned mode: `self.bins` as planned by [`Self::price_binned`].
    fn write_binned(&mut self, codes: &[i32], prec: u32, out: &mut Vec<u8>) {
        let n = codes.len() as u64;
        self.tok_counts.clear();
        self.tok_counts.extend(self.bins.iter().map(|b| b.count));
        codes_for_counts(&self.tok_counts, n, prec, &mut self.wcodes);
        freqs_for_codes(&self.wcodes, n, prec, &mut self.freqs).expect("encoder table");
        out.push(MODE_BINNED);
        out.push(prec as u8);
        put_uvarint(out, self.bins.len() as u64);
        put_ivarint(out, self.bins[0].lo);
        let mut bw = BitWriter::new();
        let mut end = self.bins[0].lo;
        for (i, b) in self.bins.iter().enumerate() {
            bw.write(b.w, 6);
            if i > 0 {
                bw.write_gamma((b.lo - end) as u32);
            }
            end = b.lo + (1i64 << b.w);
        }
        table::write_codes(&mut bw, &self.wcodes, false, n, prec);
        put_section(out, &bw.finish());
        let mut raw = BitWriter::reusing(std::mem::take(&mut self.raw));
        self.symbols.clear();
        // A code's bin by a coarse table over the span (at most 2^16 cells, each pointing at
        // the first bin ending inside or after it), then a step or two forward: the bins
        // cover every code of the stream, sorted.
        let bins = &self.bins;
        let min = bins[0].lo;
        let span = (*self.vals.last().expect("a non-empty stream") as i64 - min) as u64;
        let shift = (64 - span.leading_zeros()).saturating_sub(16);
        self.dense.clear();
        let mut t = 0;
        for cell in 0..=(span >> shift) {
            let start = min + (cell << shift) as i64;
            while bins[t].lo + (1i64 << bins[t].w) <= start {
                t += 1;
            }
            self.dense.push(t as u32);
        }
        let first = &self.dense;
        for &c in codes {
            let c = c as i64;
            let mut t = first[((c - min) as u64 >> shift) as usize] as usize;
            while t + 1 < bins.len() && bins[t + 1].lo <= c {
                t += 1;
            }
            let b = bins[t];
            self.symbols.push(t as u16);
            raw.write((c - b.lo) as u32, b.w);
        }
        self.write_rans(prec, out);
        self.raw = raw.finish();
        put_section(out, &self.raw);
    }

    fn write_rans(&mut self, prec: u32, out: &mut Vec<u8>) {
        self.enc.set_table(&self.freqs, prec);
        self.stream.clear();
        self.enc.encode(&self.symbols, &mut self.stream);
        put_section(out, &self.stream);
    }

    fn read_rans(&mut self, r: &mut ByteReader<'_>, prec: u32, n: usize) -> DecodeResult<()> {
        let dec = self.dec.get_or_insert_with(Default::default);
        dec.set_table(&self.freqs, prec)?;
        let stream = r.section()?;
        self.symbols.clear();
        self.symbols.resize(n, 0);
        dec.decode(stream, &mut self.symbols)
    }

    /// Decodes `n` codes from `r` into `out` (replacing its contents).
    pub(crate) fn decode(
        &mut self,
        r: &mut ByteReader<'_>,
        n: usize,
        out: &mut Vec<i32>,
    ) -> DecodeResult<()> {
        out.clear();
        let mode = r.u8()?;
        match mode {
            MODE_CONST => {
                let v = r.ivarint()?;
                let v =
                    i32::try_from(v).map_err(|_| Malformed::new("constant code out of range"))?;
                out.resize(n, v);
            }
            MODE_PACKED => {
                let min = r.ivarint()?;
                let width = r.u8()? as u32;
                if width > 32 {
                    return Err(Malformed::new("packed width above 32 bits"));
                }
                let mut br = BitReader::new(r.section()?);
                out.reserve(n);
                for _ in 0..n {
                    let v = i32::try_from(min.saturating_add(br.read(width) as i64))
                        .map_err(|_| Malformed::new("packed code out of range"))?;
                    out.push(v);
                }
                br.finish()?;
            }
            MODE_DIRECT => {
                let prec = r.u8()? as u32;
                let m = r.uvarint_max(MAX_DIRECT as u64, "direct alphabet size")?;
                if m == 0 {
                    return Err(Malformed::new("empty direct alphabet"));
                }
                let first = r.ivarint()?;
                let mut br = BitReader::new(r.section()?);
                self.vals.clear();
                let mut v = first;
                for i in 0..m {
                    if i > 0 {
                        v += br.read_gamma()? as i64 + 1;
                    }
                    self.vals.push(
                        i32::try_from(v).map_err(|_| Malformed::new("direct code out of range"))?,
                    );
                }
                table::read_codes(&mut br, m, m, false, n as u64, prec, &mut self.wcodes)?;
                br.finish()?;
                freqs_for_codes(&self.wcodes, n as u64, prec, &mut self.freqs)?;
                self.read_rans(r, prec, n)?;
                let vals = &self.vals;
                // Symbols decoded by rANS always have a frequency, so they index `vals`.
                out.extend(self.symbols.iter().map(|&s| vals[s as usize]));
            }
            MODE_HYBRID => {
                let prec = r.u8()? as u32;
                let layout = Hybrid::from_byte(r.u8()?)
                    .ok_or_else(|| Malformed::new("invalid hybrid token layout"))?;
                let bias =
                    i32::try_from(r.ivarint()?).map_err(|_| Malformed::new("bias out of range"))?;
                let alphabet = r.uvarint_max(layout.alphabet() as u64, "token alphabet")?;
                let present = r.uvarint_max(alphabet as u64, "present tokens")?;
                let mut br = BitReader::new(r.section()?);
                table::read_codes(
                    &mut br,
                    present,
                    alphabet,
                    true,
                    n as u64,
                    prec,
                    &mut self.wcodes,
                )?;
                br.finish()?;
                freqs_for_codes(&self.wcodes, n as u64, prec, &mut self.freqs)?;
                self.read_rans(r, prec, n)?;
                layout.entries(alphabet, &mut self.entries);
                let entries = &self.entries[..];
                let mut raw = BitReader::new(r.section()?);
                out.resize(n, 0);
                // Decoded tokens always have a frequency, so they are below `alphabet`. One
                // loop per kind of layout keeps the per-value work branch-free.
                fn map<const SIGNED: bool>(
                    out: &mut [i32],
                    symbols: &[u16],
                    entries: &[TokenEntry],
                    raw: &mut BitReader<'_>,
                    bias: i32,
                ) {
                    for (o, &t) in out.iter_mut().zip(symbols) {
                        let e = entries[t as usize];
                        *o = bias.wrapping_add(Hybrid::decode::<SIGNED>(
                            e,
                            raw.read(Hybrid::raw_bits(e)),
                        ));
                    }
                }
                if layout.signed {
                    map::<true>(out, &self.symbols, entries, &mut raw, bias);
                } else {
                    map::<false>(out, &self.symbols, entries, &mut raw, bias);
                }
                raw.finish()?;
            }
            MODE_BINNED => {
                let prec = r.u8()? as u32;
                let m = r.uvarint_max(MAX_BINS as u64, "bins")?;
                if m == 0 {
                    return Err(Malformed::new("a binned stream without bins"));
                }
                let mut lo = r.ivarint()?;
                let mut br = BitReader::new(r.section()?);
                self.bins.clear();
                for i in 0..m {
                    let w = br.read(6);
                    if i > 0 {
                        lo += br.read_gamma()? as i64;
                    }
                    // Every value of every bin must be an i32, bins in increasing order.
                    if w > 32 || lo < i32::MIN as i64 || lo + (1i64 << w) - 1 > i32::MAX as i64 {
                        return Err(Malformed::new("a bin beyond the range of codes"));
                    }
                    self.bins.push(Bin { lo, w, count: 0 });
                    lo += 1i64 << w;
                }
                table::read_codes(&mut br, m, m, false, n as u64, prec, &mut self.wcodes)?;
                br.finish()?;
                freqs_for_codes(&self.wcodes, n as u64, prec, &mut self.freqs)?;
                self.read_rans(r, prec, n)?;
                let mut raw = BitReader::new(r.section()?);
                let bins = &self.bins;
                // Decoded symbols always have a frequency, so they index `bins`.
                out.extend(self.symbols.iter().map(|&t| {
                    let b = bins[t as usize];
                    (b.lo + raw.read(b.w) as i64) as i32
                }));
                raw.finish()?;
            }
            other => return Err(Malformed(format!("unknown code stream mode {other}"))),
        }
        Ok(())
    }
}

/// Order-0 entropy of `codes` in bits (for tests and diagnostics).
#[cfg(test)]
pub fn order0_entropy_bits(codes: &[i32]) -> f64 {
    let mut sorted = codes.to_vec();
    sorted.sort_unstable();
    let n = sorted.len() as f64;
    let mut bits = 0.0;
    for run in sorted.chunk_by(|a, b| a == b) {
        let c = run.len() as f64;
        bits += c * (n / c).log2();
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(codes: &[i32]) -> usize {
        let mut c = CodeCoder::new();
        c.allow_binned(true);
        let mut buf = Vec::new();
        c.encode(codes, &mut buf);
        let mut out = Vec::new();
        let mut r = ByteReader::new(&buf);
        c.decode(&mut r, codes.len(), &mut out).unwrap();
        assert!(r.is_empty(), "stream fully consumed");
        assert_eq!(out, codes);
        buf.len()
    }

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *seed >> 11
    }

    /// Roughly Laplacian codes with scale `s`.
    fn laplace(n: usize, s: f64, seed: u64) -> Vec<i32> {
        let mut seed = seed;
        (0..n)
            .map(|_| {
                let u = (lcg(&mut seed) as f64 + 0.5) / (1u64 << 53) as f64;
                let sign = if lcg(&mut seed) & 1 == 0 { 1.0 } else { -1.0 };
                (sign * -s * u.ln()).round() as i32
            })
            .collect()
    }

    #[test]
    fn fast_log2_is_accurate_enough_to_rank() {
        for i in 0..100_000 {
            let x = 1.0 + i as f64 * 7.3;
            assert!((fast_log2(x) - x.log2()).abs() < 5e-5, "{x}");
        }
    }

    #[test]
    fn edge_streams_round_trip() {
        round_trip(&[]);
        round_trip(&[5]);
        round_trip(&[i32::MIN, i32::MAX]);
        round_trip(&[i32::MIN; 100]);
        round_trip(&[0, 1]);
        round_trip(
            &(0..70_000i32)
                .map(|i| i.wrapping_mul(65_537))
                .collect::<Vec<_>>(),
        );
        // All distinct and wide: no table can pay, so it is bit-packed.
        round_trip(&laplace(20_000, 1e6, 5));
        round_trip(&(0..5000).map(|i| (i % 3) - 1).collect::<Vec<_>>());
        round_trip(
            &(0..100_000)
                .map(|i| if i % 1000 == 0 { i32::MAX } else { 0 })
                .collect::<Vec<_>>(),
        );
    }

    #[test]
    fn close_to_order0_entropy() {
        for (s, n) in [
            (0.2, 50_000),
            (3.0, 65_536),
            (80.0, 65_536),
            (2000.0, 100_000),
        ] {
            let codes = laplace(n, s, 42);
            let bytes = round_trip(&codes) as f64;
            let h0 = order0_entropy_bits(&codes) / 8.0;
            assert!(
                bytes <= h0 * 1.02 + 64.0,
                "scale {s}: {bytes} bytes vs entropy {h0}"
            );
        }
    }

    #[test]
    fn wide_spiky_alphabets_needing_the_finest_table() {
        // About 5000 distinct codes with irregular frequencies: no smooth tail for hybrid tokens
        // to exploit and too many for a direct table, so only layouts with large alphabets
        // (and precision 2^15 tables) come near the entropy.
        let mut seed = 17;
        let weights: Vec<u64> = (0..5001)
            .map(|_| (lcg(&mut seed) % 1000).pow(2) + 1)
            .collect();
        let total: u64 = weights.iter().sum();
        let codes: Vec<i32> = (0..80_000)
            .map(|_| {
                let mut r = lcg(&mut seed) % total;
                let i = weights.iter().position(|&w| {
                    let hit = r < w;
                    r = r.saturating_sub(w);
                    hit
                });
                i.unwrap() as i32 - 2500
            })
            .collect();
        let bytes = round_trip(&codes) as f64;
        let h0 = order0_entropy_bits(&codes) / 8.0;
        assert!(bytes <= h0 * 1.06, "{bytes} bytes vs entropy {h0}");
    }

    #[test]
    fn sparse_categories_cost_their_entropy() {
        // PID-like codes: few values spread far apart.
        let cats = [-2212, -211, -11, 11, 13, 22, 211, 2212, 1_000_022];
        let mut seed = 3;
        let codes: Vec<i32> = (0..50_000)
            .map(|_| cats[(lcg(&mut seed) % 9) as usize] * 7)
            .collect();
        let bytes = round_trip(&codes) as f64;
        let h0 = order0_entropy_bits(&codes) / 8.0;
        assert!(bytes <= h0 * 1.01 + 64.0, "{bytes} vs {h0}");
    }

    #[test]
    fn dominant_code_costs_well_under_a_bit() {
        let mut seed = 9;
        let codes: Vec<i32> = (0..100_000)
            .map(|_| if lcg(&mut seed) % 100 < 97 { 0 } else { 1 })
            .collect();
        let bytes = round_trip(&codes) as f64;
        let h0 = order0_entropy_bits(&codes) / 8.0;
        assert!(bytes < h0 * 1.02 + 64.0, "{bytes} vs {h0}");
        assert!(bytes * 8.0 / 100_000.0 < 0.25);
    }

    #[test]
    fn corrupt_streams_are_errors_not_panics() {
        let codes = laplace(10_000, 50.0, 1);
        let mut c = CodeCoder::new();
        let mut buf = Vec::new();
        c.encode(&codes, &mut buf);
        let mut out = Vec::new();
        for cut in 0..buf.len().min(200) {
            let _ = c.decode(&mut ByteReader::new(&buf[..cut]), codes.len(), &mut out);
        }
        for i in 0..buf.len().min(300) {
            let mut bad = buf.clone();
            bad[i] ^= 0x5a;
            let _ = c.decode(&mut ByteReader::new(&bad), codes.len(), &mut out);
        }
        assert!(
            c.decode(
                &mut ByteReader::new(&buf[..buf.len() - 1]),
                codes.len(),
                &mut out
            )
            .is_err()
        );
    }

    /// Codes like a point-wise relative column's ordinals over many decades: `N` mantissa bits
    /// under a log-normal exponent with a bump, both signs and a sentinel (NanoAOD's −1).
    fn broad(n: usize, seed: u64) -> Vec<i32> {
        let mut seed = seed;
        (0..n)
            .map(|_| {
                let u = |s: &mut u64| (lcg(s) as f64 + 0.5) / (1u64 << 53) as f64;
                if lcg(&mut seed) % 10 == 0 {
                    return -(127 << 10);
                }
                let g = (-2.0 * u(&mut seed).ln()).sqrt()
                    * (std::f64::consts::TAU * u(&mut seed)).cos();
                let bump = if lcg(&mut seed) % 3 == 0 { 9.0 } else { 0.0 };
                let e = (g * 6.0 + bump).round() as i32 + 100;
                let m = (lcg(&mut seed) % 1024) as i32;
                let v = (e << 10) | m;
                if lcg(&mut seed) % 4 == 0 { -v } else { v }
            })
            .collect()
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
        for codes in [broad(60_000, 7), far, wide] {
            let mut c = CodeCoder::new();
            c.allow_binned(true);
            let (min, max) = (*codes.iter().min().unwrap(), *codes.iter().max().unwrap());
            let choice = c.choose(&codes, min, max);
            assert!(matches!(choice, Choice::Binned { .. }), "{choice:?}");
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

    #[test]
    fn streams_that_follow_a_pattern_are_coded_by_previous_code() {
        // Track numbers: 40 ids, each usually followed by one of two others (a Markov chain),
        // so the order-0 entropy (~5.3 bits) is far above the conditional one (~1.2 bits).
        let mut seed = 77;
        let mut v = 0i32;
        let codes: Vec<i32> = (0..30_000)
            .map(|_| {
                let r = lcg(&mut seed) % 100;
                v = if r < 70 {
                    (v * 7 + 3) % 40
                } else if r < 95 {
                    (v + 1) % 40
                } else {
                    (r % 40) as i32
                };
                v
            })
            .collect();
        let (mut c, mut split) = (CodeCoder::new(), Default::default());
        let mut buf = Vec::new();
        c.encode_either(&codes, &mut split, &mut buf);
        assert_eq!(buf[0], 2, "layout");
        let mut out = Vec::new();
        let mut r = ByteReader::new(&buf);
        c.decode_either(&mut r, codes.len(), &mut split, &mut out)
            .unwrap();
        assert!(r.is_empty());
        assert_eq!(out, codes);
        let h0 = order0_entropy_bits(&codes) / 8.0;
        assert!(
            (buf.len() as f64) < h0 * 0.5,
            "{} vs order-0 {h0}",
            buf.len()
        );
        // Cut or damaged: errors, never panics; wrong counts and too many contexts refused.
        for cut in 0..buf.len().min(300) {
            let _ = c.decode_either(
                &mut ByteReader::new(&buf[..cut]),
                codes.len(),
                &mut split,
                &mut out,
            );
        }
        for i in 0..buf.len().min(300) {
            let mut bad = buf.clone();
            bad[i] ^= 0x5a;
            let _ = c.decode_either(
                &mut ByteReader::new(&bad),
                codes.len(),
                &mut split,
                &mut out,
            );
        }
        assert!(
            c.decode_either(
                &mut ByteReader::new(&buf),
                codes.len() + 1,
                &mut split,
                &mut out
            )
            .is_err()
        );
        let mut forged = vec![2u8];
        put_uvarint(&mut forged, PREV_CONTEXTS as u64 + 1);
        assert!(
            c.decode_either(&mut ByteReader::new(&forged), 10, &mut split, &mut out)
                .is_err()
        );
        // A stream without a pattern keeps its plain layout.
        let flat: Vec<i32> = (0..30_000).map(|_| (lcg(&mut seed) % 40) as i32).collect();
        buf.clear();
        c.encode_either(&flat, &mut split, &mut buf);
        assert_eq!(buf[0], 0);
    }

    #[test]
    fn forged_binned_streams_are_errors_not_panics() {
        let codes = broad(3000, 8);
        let mut c = CodeCoder::new();
        c.allow_binned(true);
        let mut buf = Vec::new();
        c.encode(&codes, &mut buf);
        assert_eq!(buf[0], MODE_BINNED);
        let mut out = Vec::new();
        for cut in 0..buf.len() {
            assert!(
                c.decode(&mut ByteReader::new(&buf[..cut]), codes.len(), &mut out)
                    .is_err()
            );
        }
        for i in 0..buf.len().min(400) {
            for flip in [0x01, 0x5a, 0xff] {
                let mut bad = buf.clone();
                bad[i] ^= flip;
                let _ = c.decode(&mut ByteReader::new(&bad), codes.len(), &mut out);
            }
        }
        // A bin reaching past i32::MAX, and more bins than the limit.
        let mut forged = vec![MODE_BINNED, 12];
        put_uvarint(&mut forged, 1);
        put_ivarint(&mut forged, i32::MAX as i64 - 3);
        let mut bw = BitWriter::new();
        bw.write(8, 6);
        put_section(&mut forged, &bw.finish());
        assert!(
            c.decode(&mut ByteReader::new(&forged), 10, &mut out)
                .is_err()
        );
        let mut forged = vec![MODE_BINNED, 12];
        put_uvarint(&mut forged, MAX_BINS as u64 + 1);
        assert!(
            c.decode(&mut ByteReader::new(&forged), 10, &mut out)
                .is_err()
        );
    }

    #[test]
    fn context_streams_round_trip_and_pay_where_magnitudes_cluster() {
        // Quiet and busy stretches (as a field's smooth and turbulent regions): coded by
        // context, the two kinds of code stop sharing one table.
        let quiet = laplace(20_000, 0.3, 2);
        let busy = laplace(20_000, 20.0, 3);
        let mut codes = Vec::new();
        for k in 0..20 {
            codes.extend_from_slice(&quiet[k * 1000..(k + 1) * 1000]);
            codes.extend_from_slice(&busy[k * 1000..(k + 1) * 1000]);
        }
        let mut c = CodeCoder::new();
        let mut split: [Vec<i32>; CONTEXTS] = Default::default();
        for n in [0, 1, 2, 3, 100, codes.len()] {
            let mut buf = Vec::new();
            c.encode_in_context(&codes[..n], &mut split, &mut buf);
            let mut out = vec![7];
            let mut r = ByteReader::new(&buf);
            c.decode_in_context(&mut r, n, &mut split, &mut out)
                .unwrap();
            assert!(r.is_empty());
            assert_eq!(out, &codes[..n]);
            if n == codes.len() {
                assert!(buf.len() * 10 < round_trip(&codes) * 9, "{}", buf.len());
                // Damaged: errors, never panics; counts that do not add up are refused.
                for cut in 0..buf.len().min(200) {
                    let r = &mut ByteReader::new(&buf[..cut]);
                    assert!(c.decode_in_context(r, n, &mut split, &mut out).is_err());
                }
                for i in 0..buf.len().min(300) {
                    let mut bad = buf.clone();
                    bad[i] ^= 0x5a;
                    let r = &mut ByteReader::new(&bad);
                    let _ = c.decode_in_context(r, n, &mut split, &mut out);
                }
                let r = &mut ByteReader::new(&buf);
                let err = c.decode_in_context(r, n + 1, &mut split, &mut out);
                assert!(err.unwrap_err().0.contains("add up"));
            }
        }
        // Either layout, chosen by estimate: by context here, one stream for codes whose
        // magnitudes do not cluster; an unknown layout byte is an error.
        let plain = laplace(40_000, 5.0, 4);
        for (codes, layout) in [(&codes, 1u8), (&plain, 0u8)] {
            let mut buf = Vec::new();
            c.encode_either(codes, &mut split, &mut buf);
            assert_eq!(buf[0], layout);
            let mut out = Vec::new();
            let r = &mut ByteReader::new(&buf);
            c.decode_either(r, codes.len(), &mut split, &mut out)
                .unwrap();
            assert!(r.is_empty());
            assert_eq!(&out, codes);
            buf[0] = 2;
            let r = &mut ByteReader::new(&buf);
            assert!(
                c.decode_either(r, codes.len(), &mut split, &mut out)
                    .is_err()
            );
        }
    }
}
