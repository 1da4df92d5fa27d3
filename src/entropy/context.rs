//! Streams split by context before they are coded: by the magnitudes of the two codes before
//! ([`CodeCoder::encode_in_context`]) or by the code before ([`CodeCoder::encode_by_previous`]),
//! and the layout byte that says which ([`CodeCoder::encode_either`]).

use super::choose::fast_log2;
use super::read::skip;
use super::{CodeCoder, DENSE_SPAN, range};
use crate::bytes::{ByteReader, DecodeResult, Malformed, put_ivarint, put_uvarint};
use crate::simd::with_avx2;

/// Most contexts of the by-previous-code layout ([`CodeCoder::encode_by_previous`]): the
/// most frequent codes, each a context, and one context for every other code.
const PREV_CONTEXTS: usize = 63;
/// Streams are tried by previous code only with at most this many distinct codes, and at
/// least [`PREV_MIN_LEN`] codes.
const PREV_MAX_DISTINCT: usize = 1024;
const PREV_MIN_LEN: usize = 4096;
/// Codes of a stream's prefix that the by-previous-code layout is probed on.
const PREV_PROBE: usize = 8192;

/// Reads the per-context code counts of a split stream (one `uvarint` each) into `counts`;
/// they must add up to the stream's `n` codes.
pub(crate) fn read_context_counts(
    r: &mut ByteReader<'_>,
    n: usize,
    counts: &mut [usize],
) -> DecodeResult<()> {
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

/// Reads the head of a stream split by previous code: its `K` context codes into `vals` and
/// its `K + 1` counts into `counts`; returns `K`.
fn read_previous_head(
    r: &mut ByteReader<'_>,
    n: usize,
    vals: &mut Vec<i32>,
    counts: &mut [usize; PREV_CONTEXTS + 1],
) -> DecodeResult<usize> {
    let k = r.uvarint_max(PREV_CONTEXTS as u64, "previous-code contexts")?;
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
    read_context_counts(r, n, &mut counts[..=k])?;
    Ok(k)
}

/// Steps over `n` codes written by [`CodeCoder::encode_either`] without decoding them: the
/// layout's head and each stream's ([`skip`]), to find where the streams after it start.
pub(crate) fn skip_either(r: &mut ByteReader<'_>, n: usize) -> DecodeResult<()> {
    let mut counts = [0usize; PREV_CONTEXTS + 1];
    let streams = match r.u8()? {
        // One stream, there even for no codes.
        0 => return skip(r),
        1 => {
            read_context_counts(r, n, &mut counts[..CONTEXTS])?;
            CONTEXTS
        }
        2 => read_previous_head(r, n, &mut Vec::new(), &mut counts)? + 1,
        m => return Err(Malformed(format!("unknown code stream layout {m}"))),
    };
    for &c in &counts[..streams] {
        if c > 0 {
            skip(r)?;
        }
    }
    Ok(())
}

/// Codes split by context ([`CodeCoder::encode_in_context`]), read as far as their streams:
/// each context's count, and where each non-empty context's stream starts, so the streams can
/// be decoded as tasks of their own ([`CodeCoder::decode_into`]), one after another in a flat
/// buffer, then merged ([`merge_contexts`]).
pub(crate) struct ContextStreams<'b> {
    pub(crate) counts: [usize; CONTEXTS],
    /// Each non-empty context's stream: where it starts, and its context.
    pub(crate) streams: Vec<(ByteReader<'b>, usize)>,
}

/// Reads the head of `n` codes written by [`CodeCoder::encode_either`] where they were split
/// by context, and steps over each context's stream, leaving `r` after the last; `None`, with
/// `r` as it was, for the other layouts.
pub(crate) fn open_contexts<'b>(
    r: &mut ByteReader<'b>,
    n: usize,
) -> DecodeResult<Option<ContextStreams<'b>>> {
    let mut head = r.clone();
    if head.u8()? != 1 {
        return Ok(None);
    }
    let mut counts = [0; CONTEXTS];
    read_context_counts(&mut head, n, &mut counts)?;
    let mut streams = Vec::with_capacity(CONTEXTS);
    for (x, &c) in counts.iter().enumerate() {
        if c > 0 {
            streams.push((head.clone(), x));
            skip(&mut head)?;
        }
    }
    *r = head;
    Ok(Some(ContextStreams { counts, streams }))
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

/// Splits `codes` by context into `split` (each replaced): each code, in order, into the stream
/// of its context. With AVX-512, sixteen codes at a time: their contexts computed from the
/// two codes before each, then each context's codes packed to the front of a register
/// (`VPCOMPRESSD`) and stored at its stream's end; value by value otherwise. The same streams
/// either way.
fn split_by_context(codes: &[i32], split: &mut [Vec<i32>; CONTEXTS]) {
    for s in split.iter_mut() {
        s.clear();
    }
    let done = split_blocks(codes, split);
    let (mut p2, mut p1) = match done {
        0 => (0, 0),
        d => (codes[d - 2], codes[d - 1]),
    };
    for &c in &codes[done..] {
        split[context(p1, p2)].push(c);
        (p2, p1) = (p1, c);
    }
}

/// The first codes of [`split_by_context`] into their streams, whole blocks of sixteen, where
/// the CPU has AVX-512; returns how many.
#[allow(unsafe_code)]
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
fn split_blocks(codes: &[i32], split: &mut [Vec<i32>; CONTEXTS]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if codes.len() >= 64 && std::arch::is_x86_feature_detected!("avx512f") {
        // Room for every code in each stream (a segment's 64 Ki codes at most, in this
        // crate), since a block's sixteen lanes are stored whole, past a stream's end too:
        // only the pages written are ever touched, as many as the codes.
        for s in split.iter_mut() {
            s.reserve(codes.len() + 16);
        }
        // SAFETY: the CPU has AVX-512F, checked just above; each stream has room for every
        // code and sixteen more.
        return unsafe { scatter_avx512(codes, split) };
    }
    0
}

/// The blocks of [`split_by_context`]: sixteen codes at a time, appended to the (empty)
/// streams. Returns where the codes it left begin.
///
/// # Safety
/// The CPU must have AVX-512F, and each stream of `split` room for `codes.len() + 16` codes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(unsafe_code)]
unsafe fn scatter_avx512(codes: &[i32], split: &mut [Vec<i32>; CONTEXTS]) -> usize {
    use std::arch::x86_64::*;
    let starts: [*mut i32; CONTEXTS] = std::array::from_fn(|x| split[x].as_mut_ptr());
    let mut lens = [0usize; CONTEXTS];
    let end = codes.len() / 16 * 16;
    // SAFETY: loads of sixteen codes within `codes`; each stream's stores end at most sixteen
    // past its codes, which it has room for.
    unsafe {
        let two = _mm512_set1_epi32(2);
        // `|c|` as unsigned (`i32::MIN` is 2^31), at most 2.
        let class = |c| _mm512_min_epu32(_mm512_abs_epi32(c), two);
        // The block before (zeros before the first: the codes before the stream are 0).
        let mut before = _mm512_setzero_si512();
        for i in (0..end).step_by(16) {
            let c = _mm512_loadu_si512(codes.as_ptr().add(i).cast());
            // Each lane's code one and two places back, from this block and the one before.
            let c1 = class(_mm512_alignr_epi32::<15>(c, before));
            let c2 = class(_mm512_alignr_epi32::<14>(c, before));
            before = c;
            let x = _mm512_add_epi32(_mm512_add_epi32(c1, _mm512_add_epi32(c1, c1)), c2);
            for (k, (&start, len)) in starts.iter().zip(&mut lens).enumerate() {
                let mine = _mm512_cmpeq_epi32_mask(x, _mm512_set1_epi32(k as i32));
                let at = start.add(*len).cast();
                _mm512_storeu_si512(at, _mm512_maskz_compress_epi32(mine, c));
                *len += mine.count_ones() as usize;
            }
        }
        for (s, &len) in split.iter_mut().zip(&lens) {
            debug_assert!(len <= s.capacity());
            s.set_len(len);
        }
    }
    end
}

/// Tokens of [`contexts_pay`]'s histograms: the codes below ±32 exactly, the others by sign
/// and bit length.
const BINS: usize = SMALL + 2 * 33;
/// The codes [`contexts_pay`]'s histograms count exactly: `−32 … 31`.
const SMALL: usize = 64;

/// Whether coding `codes` by context is estimated to save at least 3%: order-0 entropies of
/// the codes' tokens (exact below ±32, else by sign and length, whose raw bits cost the same
/// either way), with each non-empty stream charged for its table. The histograms too (none
/// for a stream too short to split), which are the streams' own where their codes are small.
fn contexts_pay(codes: &[i32]) -> (bool, Option<Counted>) {
    if codes.len() < 4096 {
        return (false, None);
    }
    let hist = context_histograms(codes);
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
    let counted = Counted::of(hist);
    let split: f64 = counted.each.iter().map(cost).sum();
    (split < 0.97 * cost(&counted.whole), Some(counted))
}

/// Each context's histogram of [`contexts_pay`]'s tokens.
type Histograms = [[u32; BINS]; CONTEXTS];

/// [`contexts_pay`]'s histograms: each context's, and the whole stream's.
struct Counted {
    each: Histograms,
    whole: [u32; BINS],
}

impl Counted {
    fn of(each: Histograms) -> Self {
        let mut whole = [0u32; BINS];
        for h in &each {
            for (w, &c) in whole.iter_mut().zip(h) {
                *w += c;
            }
        }
        Counted { each, whole }
    }
}

/// The counts of the codes `−32 … 31` of a histogram of [`contexts_pay`]'s tokens, where it
/// holds no other code: the histogram of the codes themselves, which the coder then need not
/// count again ([`CodeCoder::encode_counted`]).
fn small_counts(h: &[u32; BINS]) -> Option<&[u32]> {
    let (small, large) = h.split_at(SMALL);
    large.iter().all(|&c| c == 0).then_some(small)
}

/// The code that [`small_counts`]' first count is of.
const SMALLEST: i32 = -(SMALL as i32) / 2;

with_avx2! {
    /// Each context's histogram of [`contexts_pay`]'s tokens over `codes`, in blocks: the
    /// slots (context and token) of a block's codes in vector lanes first, each from the code
    /// and the two before it, then their counts, a slot to each of four histograms in turn
    /// (runs of one code, zeros, would otherwise wait on their own count at every step).
    fn context_histograms(codes: &[i32]) -> [[u32; BINS]; CONTEXTS] = context_histograms_body;
}

#[inline(always)]
fn context_histograms_body(codes: &[i32]) -> [[u32; BINS]; CONTEXTS] {
    const BLOCK: usize = 256;
    let mut hists = [[0u32; CONTEXTS * BINS]; 4];
    let mut slots = [0u32; BLOCK];
    // Each block's codes with the two before them (0 before the first).
    let mut window = [0i32; BLOCK + 2];
    for block in codes.chunks(BLOCK) {
        let n = block.len();
        // The last two codes of the block before (only the last block is short).
        window.copy_within(BLOCK..BLOCK + 2, 0);
        window[2..2 + n].copy_from_slice(block);
        for (s, w) in slots[..n].iter_mut().zip(window[..n + 2].windows(3)) {
            let (p2, p1, c) = (w[0], w[1], w[2]);
            let small = c.wrapping_add(32) as u32;
            let m = c.unsigned_abs();
            let large = 64 + 2 * (32 - m.leading_zeros()) + u32::from(c < 0);
            let token = if small < 64 { small } else { large };
            *s = context(p1, p2) as u32 * BINS as u32 + token;
        }
        let mut quads = slots[..n].chunks_exact(4);
        for q in &mut quads {
            for (h, &s) in hists.iter_mut().zip(q) {
                h[s as usize] += 1;
            }
        }
        for (h, &s) in hists.iter_mut().zip(quads.remainder()) {
            h[s as usize] += 1;
        }
    }
    let mut out = [[0u32; BINS]; CONTEXTS];
    for (k, o) in out.iter_mut().enumerate() {
        for (i, o) in o.iter_mut().enumerate() {
            *o = hists.iter().map(|h| h[k * BINS + i]).sum();
        }
    }
    out
}

impl CodeCoder {
    /// Codes `codes` as [`CONTEXTS`] streams, each code in the stream of its context (the
    /// magnitudes of the two codes before it, 0 before the first), so where neighbouring
    /// residuals are alike (the smooth and the busy regions of a field) each stream is
    /// narrower than the whole. Layout: one `uvarint` count per context, then the stream of
    /// each non-empty context, in context order. `split` is scratch; `hist`, where given, is
    /// each context's histogram of [`contexts_pay`]'s tokens, so that a stream of small codes
    /// is not counted again.
    pub(crate) fn encode_in_context(
        &mut self,
        codes: &[i32],
        split: &mut [Vec<i32>; CONTEXTS],
        hist: Option<&Histograms>,
        out: &mut Vec<u8>,
    ) {
        split_by_context(codes, split);
        for s in split.iter() {
            put_uvarint(out, s.len() as u64);
        }
        for (x, s) in split.iter().enumerate().filter(|(_, s)| !s.is_empty()) {
            match hist.and_then(|h| small_counts(&h[x])) {
                Some(counts) => self.encode_counted(s, SMALLEST, counts, out),
                None => self.encode(s, out),
            }
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
        match contexts_pay(codes) {
            (true, counted) => {
                out.push(1);
                self.encode_in_context(codes, split, counted.as_ref().map(|c| &c.each), out);
            }
            (false, counted) => {
                out.push(0);
                match counted.as_ref().and_then(|c| small_counts(&c.whole)) {
                    Some(counts) => self.encode_counted(codes, SMALLEST, counts, out),
                    None => self.encode(codes, out),
                }
            }
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
        // Each distinct code's index and, above it, the context it makes for the code after
        // it: one load a code.
        let min = self.vals[0];
        let span = (self.vals[m - 1] as i64 - min as i64) as usize + 1;
        let dense_index = span <= DENSE_SPAN as usize;
        let ctx_of = |i: usize| self.prev_vals.binary_search(&self.vals[i]).unwrap_or(k) as u64;
        self.lut.clear();
        if dense_index {
            self.lut.resize(span, 0);
            for (i, &v) in self.vals.iter().enumerate() {
                self.lut[(v as i64 - min as i64) as usize] = i as u64 | ctx_of(i) << 32;
            }
        }
        let ctx_by_index: Vec<u64> = match dense_index {
            true => Vec::new(),
            false => (0..m).map(|i| i as u64 | ctx_of(i) << 32).collect(),
        };
        let entry = |c: i32| -> u64 {
            if dense_index {
                self.lut[(c as i64 - min as i64) as usize]
            } else {
                ctx_by_index[self.vals.binary_search(&c).unwrap_or(0)]
            }
        };
        // The pairs counted in cells that stay zero between calls, so a probe costs its own
        // codes, not the (k + 1) × m table (up to 64 × 1024 cells for 8192 codes).
        let cells = (k + 1) * m;
        // A probe's codes are at most PREV_PROBE, so a cell's count fits in 16 bits.
        debug_assert!(codes.len() <= PREV_PROBE && PREV_PROBE < 1 << 16);
        if self.prev_pairs.len() < cells {
            self.prev_pairs.resize(cells, 0);
        }
        let (pairs, touched) = (&mut self.prev_pairs, &mut self.prev_touched);
        // Each cell listed the first time it is counted, without a branch: a place for every
        // code, the count of places taken moved on where the cell was empty.
        touched.clear();
        touched.resize(codes.len(), 0);
        let mut listed = 0;
        let mut x = self.prev_vals.binary_search(&0).unwrap_or(k);
        for &c in codes {
            let e = entry(c);
            let cell = x * m + (e as u32) as usize;
            let count = pairs[cell];
            touched[listed] = cell as u32;
            listed += usize::from(count == 0);
            pairs[cell] = count + 1;
            x = (e >> 32) as usize;
        }
        touched.truncate(listed);
        // Each context's codes and the sum of its pairs' costs.
        let mut rows = [(0u32, 0.0f64); PREV_CONTEXTS + 1];
        for &cell in touched.iter() {
            let c = std::mem::take(&mut pairs[cell as usize]);
            let row = &mut rows[cell as usize / m];
            row.0 += u32::from(c);
            row.1 += 4.0 - f64::from(c) * fast_log2(f64::from(c));
        }
        let mut bits = 0.0;
        for &(n, cost) in rows.iter().filter(|r| r.0 > 0) {
            bits += 40.0 + f64::from(n) * fast_log2(f64::from(n)) + cost;
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
        // The context of each code, by a table over the context codes' span where it is
        // small (as the decoder finds it), else by a search.
        let lo = vals.first().copied().unwrap_or(0);
        let span = vals
            .last()
            .map_or(0, |&hi| (hi as i64 - lo as i64 + 1) as usize);
        if span <= DENSE_SPAN as usize {
            self.prev_lut.clear();
            self.prev_lut.resize(span, k as u8);
            for (i, &v) in vals.iter().enumerate() {
                self.prev_lut[(v as i64 - lo as i64) as usize] = i as u8;
            }
            let lut = &self.prev_lut[..];
            // Before the first code, the code before is 0: its context where the table covers
            // it (below the table, the offset wraps and misses it too).
            let mut x = lut.get((-(lo as i64)) as usize).map_or(k, |&x| x as usize);
            for &c in codes {
                split[x].push(c);
                let d = (c as i64 - lo as i64) as u64;
                x = if d < span as u64 {
                    lut[d as usize] as usize
                } else {
                    k
                };
            }
        } else {
            let mut prev = 0;
            for &c in codes {
                let x = vals.binary_search(&prev).unwrap_or(k);
                split[x].push(c);
                prev = c;
            }
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
        let mut vals = std::mem::take(&mut self.prev_vals);
        let mut counts = [0usize; PREV_CONTEXTS + 1];
        let k = read_previous_head(r, n, &mut vals, &mut counts)?;
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
            // The merge is serial, except in a run: a context code followed by itself keeps
            // its context, so such a run is copied from its stream at once (long runs of
            // zeros where most codes are 0).
            let mut at = [0usize; PREV_CONTEXTS + 1];
            let mut x = context(0);
            while out.len() < n {
                let s = &split[x];
                if let Some(&v) = vals.get(x) {
                    let rest = &s[at[x]..];
                    let lim = rest.len().min(n - out.len());
                    let run = rest[..lim].iter().position(|&c| c != v).unwrap_or(lim);
                    out.extend_from_slice(&rest[..run]);
                    at[x] += run;
                    if out.len() == n {
                        break;
                    }
                }
                match s.get(at[x]) {
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
        out: &mut Vec<i32>,
    ) -> DecodeResult<()> {
        match r.u8()? {
            0 => self.decode(r, n, out),
            1 => self.decode_in_context(r, n, out),
            2 => self.decode_by_previous(r, n, out),
            m => Err(Malformed(format!("unknown code stream layout {m}"))),
        }
    }

    /// Decodes `n` codes written by [`encode_in_context`](Self::encode_in_context) into `out`
    /// (replacing its contents).
    pub(crate) fn decode_in_context(
        &mut self,
        r: &mut ByteReader<'_>,
        n: usize,
        out: &mut Vec<i32>,
    ) -> DecodeResult<()> {
        out.clear();
        out.resize(n, 0);
        self.decode_in_context_into(r, out)
    }

    /// [`decode_either`](Self::decode_either) of `out.len()` codes straight into `out` (a
    /// segment's place in its column), where they were split by context; `spill` holds the
    /// codes of the other layouts on their way.
    pub(crate) fn decode_either_into(
        &mut self,
        r: &mut ByteReader<'_>,
        out: &mut [i32],
        spill: &mut Vec<i32>,
    ) -> DecodeResult<()> {
        let mut layout = r.clone();
        if layout.u8()? == 1 {
            *r = layout;
            return self.decode_in_context_into(r, out);
        }
        self.decode_either(r, out.len(), spill)?;
        if spill.len() != out.len() {
            return Err(Malformed::new("a code stream holds another count of codes"));
        }
        out.copy_from_slice(spill);
        Ok(())
    }

    /// [`decode_in_context`](Self::decode_in_context) of `out.len()` codes into `out`.
    fn decode_in_context_into(
        &mut self,
        r: &mut ByteReader<'_>,
        out: &mut [i32],
    ) -> DecodeResult<()> {
        let n = out.len();
        let mut counts = [0usize; CONTEXTS];
        read_context_counts(r, n, &mut counts)?;
        // The streams one after the other in `flat`, then one code more, so that the code
        // after any stream's next can always be looked at.
        let mut flat = std::mem::take(&mut self.ctx_flat);
        flat.clear();
        let mut result = Ok(());
        for &c in &counts {
            if c > 0 {
                result = self.decode_append(r, c, &mut flat);
                if result.is_err() {
                    break;
                }
            }
        }
        flat.push(0);
        if result.is_ok() {
            result = merge_contexts(&flat, &counts, out);
        }
        self.ctx_flat = flat;
        result
    }
}

/// Interleaves the context streams in `flat` (of `counts` codes each, one after the other, and
/// one code more) back into the codes they were split from, into `out` (as many).
///
/// The merge is serial: each code's context is the classes of the two before. Each step reads
/// the context that follows its stream's next code from `after` (kept a code ahead of where
/// the stream is), so the chain from one step to the next is one load, not the stream's
/// position, then its code, then arithmetic. Long runs of zeros (the smooth parts of a field) keep context 0 and are copied at once
/// ([`zero_run`]).
pub(crate) fn merge_contexts(
    flat: &[i32],
    counts: &[usize; CONTEXTS],
    out: &mut [i32],
) -> DecodeResult<()> {
    let n = out.len();
    // Sixteen places, so that a context masked to four bits indexes them without a check.
    let mut pos = [0usize; 16];
    let mut end = [0usize; 16];
    // The context after each stream's next code: `class(next) * 3 + x / 3`.
    let mut after = [0usize; 16];
    let mut t = 0;
    for x in 0..CONTEXTS {
        pos[x] = t;
        after[x] = class(flat[t]) * 3 + x / 3;
        t += counts[x];
        end[x] = t;
    }
    let early = || Malformed::new("a context's code stream ends early");
    let mut x = 0usize;
    let mut i = 0;
    while i < n {
        let p = pos[x];
        // Past the last code only where a stream ran short (the counts add up to `n`).
        let &next = flat.get(p + 1).ok_or_else(early)?;
        out[i] = flat[p];
        i += 1;
        pos[x] = p + 1;
        let y = after[x] & 15;
        after[x] = class(next) * 3 + x * 11 / 32;
        if y == 0 && x == 0 {
            let lim = end[0].saturating_sub(p + 1).min(n - i);
            let run = zero_run(&flat[p + 1..p + 1 + lim], &mut out[i..i + lim]);
            i += run;
            pos[0] += run;
            after[0] = class(flat[pos[0]]) * 3;
        }
        x = y;
    }
    // Every stream used up exactly, or one ran into the next.
    if pos != end {
        return Err(early());
    }
    Ok(())
}

/// Copies the zeros that `src` starts with into the start of `dst` (as long) and returns how
/// many: sixteen codes a step, copied whole (the codes past the run are written over by the
/// merge after it), the step's nonzero codes found by one vector compare.
#[inline(always)]
fn zero_run(src: &[i32], dst: &mut [i32]) -> usize {
    const STEP: usize = 16;
    let mut run = 0;
    while run + STEP <= src.len() {
        let block: &[i32; STEP] = src[run..run + STEP].try_into().expect("a step");
        dst[run..run + STEP].copy_from_slice(block);
        let mut nonzero = 0u32;
        for (k, &c) in block.iter().enumerate() {
            nonzero |= u32::from(c != 0) << k;
        }
        if nonzero != 0 {
            return run + nonzero.trailing_zeros() as usize;
        }
        run += STEP;
    }
    let rest = src[run..]
        .iter()
        .position(|&c| c != 0)
        .unwrap_or(src.len() - run);
    dst[run..run + rest].fill(0);
    run + rest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::order0_entropy_bits;
    use crate::entropy::tests::{laplace, lcg, round_trip};

    #[test]
    fn streams_counted_by_context_code_as_streams_counted_again() {
        // Small codes (every context's histogram exact), a few large ones among them (those
        // contexts counted again), runs of zeros, a constant stream; as one stream and split.
        let mut seed = 5;
        let mut cases = vec![
            laplace(20_000, 1.5, 1),
            laplace(9000, 6.0, 2),
            vec![0; 5000],
        ];
        let mut mixed = laplace(30_000, 2.0, 3);
        for _ in 0..4 {
            let at = (lcg(&mut seed) % 30_000) as usize;
            mixed[at] = [33, -33, 1000, i32::MIN][at % 4];
        }
        cases.push(mixed);
        let mut c = CodeCoder::new();
        let mut split: [Vec<i32>; CONTEXTS] = Default::default();
        for codes in &cases {
            let hist = Counted::of(context_histograms(codes));
            let (mut counted, mut again) = (Vec::new(), Vec::new());
            c.encode_in_context(codes, &mut split, Some(&hist.each), &mut counted);
            c.encode_in_context(codes, &mut split, None, &mut again);
            assert_eq!(counted, again);
            assert_eq!(
                small_counts(&hist.whole).is_some(),
                codes.iter().all(|c| (-32..32).contains(c))
            );
            if let Some(counts) = small_counts(&hist.whole) {
                let (mut counted, mut again) = (Vec::new(), Vec::new());
                c.encode_counted(codes, SMALLEST, counts, &mut counted);
                c.encode(codes, &mut again);
                assert_eq!(counted, again);
            }
        }
        // Some contexts of the mixed stream were counted again, others not.
        let hist = context_histograms(&cases[3]);
        assert!(hist.iter().any(|h| small_counts(h).is_some()));
        assert!(hist.iter().any(|h| small_counts(h).is_none()));
    }

    #[test]
    fn merged_streams_are_the_codes_they_were_split_from() {
        // Runs of zeros of every length around the merge's steps of sixteen, at every offset,
        // runs of ±1 and of large codes, streams ending in a run.
        let mut seed = 11;
        let mut codes = Vec::new();
        for len in 0..70 {
            codes.extend(std::iter::repeat_n(0, len));
            match lcg(&mut seed) % 4 {
                0 => codes.push(1),
                1 => codes.extend([-1, 1, -1]),
                2 => codes.extend([i32::MIN, 7, -300]),
                _ => codes.push((lcg(&mut seed) % 9) as i32 - 4),
            }
        }
        codes.extend(laplace(3000, 2.0, 4));
        codes.extend(std::iter::repeat_n(0, 100));
        let mut split: [Vec<i32>; CONTEXTS] = Default::default();
        for n in (0..300).chain([codes.len() - 101, codes.len() - 1, codes.len()]) {
            split_by_context(&codes[..n], &mut split);
            let counts: [usize; CONTEXTS] = std::array::from_fn(|x| split[x].len());
            let mut flat: Vec<i32> = split.concat();
            flat.push(0);
            let mut out = vec![9; n];
            merge_contexts(&flat, &counts, &mut out).unwrap();
            assert_eq!(out, codes[..n], "{n} codes");
            // Forged counts (a code moved from one stream to the next): never a panic.
            for x in (0..CONTEXTS - 1).filter(|&x| counts[x] > 0) {
                let mut forged = counts;
                (forged[x], forged[x + 1]) = (counts[x] - 1, counts[x + 1] + 1);
                let _ = merge_contexts(&flat, &forged, &mut out);
            }
        }
    }

    #[test]
    fn streams_split_by_context_are_those_of_one_code_at_a_time() {
        let reference = |codes: &[i32]| {
            let mut split: [Vec<i32>; CONTEXTS] = Default::default();
            let (mut p1, mut p2) = (0, 0);
            for &c in codes {
                split[context(p1, p2)].push(c);
                (p2, p1) = (p1, c);
            }
            split
        };
        // Runs of zeros, small codes of both signs and large ones, every length around the
        // blocks of sixteen; the scratch reused from call to call, with streams left longer.
        let mut seed = 3;
        let mut codes: Vec<i32> = laplace(20_000, 1.5, 9);
        for c in codes.iter_mut() {
            match lcg(&mut seed) % 9 {
                0..=3 => *c = 0,
                4 => *c = i32::MIN,
                5 => *c = i32::MAX,
                _ => {}
            }
        }
        codes[0] = 5;
        let mut split: [Vec<i32>; CONTEXTS] = Default::default();
        for n in (0..200).chain([1000, 4095, 4096, 4097, 20_000]).rev() {
            split_by_context(&codes[..n], &mut split);
            assert_eq!(split, reference(&codes[..n]), "{n} codes");
        }
    }

    #[test]
    fn context_histograms_count_each_code_in_its_context_and_token() {
        // The reference: one code at a time, its context from the two before (0 before the
        // first), its token exact below ±32, else by sign and bit length.
        let reference = |codes: &[i32]| {
            let mut h = [[0u32; BINS]; CONTEXTS];
            let (mut p1, mut p2) = (0, 0);
            for &c in codes {
                let token = if (-32..32).contains(&c) {
                    (c + 32) as usize
                } else {
                    64 + 2 * (32 - c.unsigned_abs().leading_zeros()) as usize + usize::from(c < 0)
                };
                h[context(p1, p2)][token] += 1;
                (p2, p1) = (p1, c);
            }
            h
        };
        let mut codes = laplace(5000, 20.0, 5);
        codes.extend([i32::MIN, i32::MAX, -33, -32, 31, 32, 0, 0, 1, -1, 2, -2]);
        // Block boundaries fall everywhere: every length from 0 to two blocks and more.
        for n in (0..600).chain([codes.len() - 7, codes.len()]) {
            assert_eq!(
                context_histograms(&codes[..n]),
                reference(&codes[..n]),
                "{n} codes"
            );
        }
    }

    /// The probe's estimate is what counting every (context, code) pair directly gives: codes
    /// over a span indexed by a table and over one too wide for it (found by bisection), the
    /// first code's context that of 0, and the pair table left zero for the next probe.
    #[test]
    fn the_previous_code_estimate_counts_every_pair() {
        let mut seed = 21;
        let mut coder = CodeCoder::new();
        for (spread, n) in [(1i64, 8192usize), (1 << 22, 5000), (3, 700)] {
            // A few hundred distinct codes, each more likely after the one before it.
            let mut codes = Vec::with_capacity(n);
            let mut c = 0i64;
            for _ in 0..n {
                let r = (lcg(&mut seed) % 300) as i64;
                c = if r < 150 { (c + 1) % 300 } else { r };
                codes.push(((c - 150) * spread) as i32);
            }
            assert!(coder.previous_contexts(&codes));
            let k = coder.prev_vals.len();
            let ctx = |v: i32| coder.prev_vals.binary_search(&v).unwrap_or(k);
            let mut pairs = std::collections::BTreeMap::<(usize, i32), u32>::new();
            let mut x = ctx(0);
            for &c in &codes {
                *pairs.entry((x, c)).or_default() += 1;
                x = ctx(c);
            }
            let mut rows = vec![(0u32, 0.0f64); k + 1];
            for (&(x, _), &c) in &pairs {
                rows[x].0 += c;
                rows[x].1 += 4.0 - f64::from(c) * fast_log2(f64::from(c));
            }
            let expected: f64 = (rows.iter().filter(|r| r.0 > 0))
                .map(|&(n, cost)| 40.0 + f64::from(n) * fast_log2(f64::from(n)) + cost)
                .sum();
            for _ in 0..2 {
                let (bits, _) = coder.by_previous_estimate(&codes);
                assert!(
                    (bits - expected).abs() <= 1e-9 * expected,
                    "spread {spread}: {bits} against {expected}"
                );
            }
            assert!(coder.prev_pairs.iter().all(|&c| c == 0));
        }
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
        c.decode_either(&mut r, codes.len(), &mut out).unwrap();
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
            let _ = c.decode_either(&mut ByteReader::new(&buf[..cut]), codes.len(), &mut out);
        }
        for i in 0..buf.len().min(300) {
            let mut bad = buf.clone();
            bad[i] ^= 0x5a;
            let _ = c.decode_either(&mut ByteReader::new(&bad), codes.len(), &mut out);
        }
        assert!(
            c.decode_either(&mut ByteReader::new(&buf), codes.len() + 1, &mut out)
                .is_err()
        );
        let mut forged = vec![2u8];
        put_uvarint(&mut forged, PREV_CONTEXTS as u64 + 1);
        assert!(
            c.decode_either(&mut ByteReader::new(&forged), 10, &mut out)
                .is_err()
        );
        // A stream without a pattern keeps its plain layout.
        let flat: Vec<i32> = (0..30_000).map(|_| (lcg(&mut seed) % 40) as i32).collect();
        buf.clear();
        c.encode_either(&flat, &mut split, &mut buf);
        assert_eq!(buf[0], 0);
    }

    #[test]
    fn skipping_a_stream_lands_where_decoding_it_ends() {
        // Every mode (constant, direct, hybrid, packed, binned) in the one-stream layout, and
        // both split layouts, back to back as a column's segments are.
        let mut seed = 11;
        let markov: Vec<i32> = (0..20_000)
            .scan(0i32, |v, _| {
                *v = if lcg(&mut seed) % 10 < 8 {
                    (*v * 7 + 3) % 40
                } else {
                    (*v + 1) % 40
                };
                Some(*v)
            })
            .collect();
        let mut clustered = laplace(10_000, 0.3, 2);
        clustered.extend(laplace(10_000, 30.0, 3));
        clustered.extend(laplace(10_000, 0.3, 4));
        let sparse: Vec<i32> = (0..5000)
            .map(|_| [0, 1000, 70_000][(lcg(&mut seed) % 3) as usize])
            .collect();
        let streams: Vec<(Vec<i32>, bool, u8, Option<u8>)> = vec![
            (vec![5; 3000], false, 0, Some(0)),
            (sparse, false, 0, Some(1)),
            (laplace(30_000, 40.0, 5), false, 0, Some(2)),
            ((0..7).collect(), false, 0, Some(3)),
            (crate::entropy::tests::broad(30_000, 6), true, 0, Some(4)),
            (clustered, false, 1, None),
            (markov, false, 2, None),
            (Vec::new(), false, 0, None),
        ];
        let (mut c, mut split) = (CodeCoder::new(), Default::default());
        let mut buf = Vec::new();
        for (codes, binned, layout, mode) in &streams {
            let at = buf.len();
            c.allow_binned(*binned);
            c.encode_either(codes, &mut split, &mut buf);
            assert_eq!(buf[at], *layout, "{codes:?}");
            if let Some(m) = mode {
                assert_eq!(buf[at + 1], *m, "mode");
            }
        }
        let (mut skipping, mut decoding) = (ByteReader::new(&buf), ByteReader::new(&buf));
        let mut out = Vec::new();
        for (codes, ..) in &streams {
            skip_either(&mut skipping, codes.len()).unwrap();
            c.decode_either(&mut decoding, codes.len(), &mut out)
                .unwrap();
            assert_eq!(&out, codes);
            assert_eq!(
                skipping.remaining(),
                decoding.remaining(),
                "{}",
                codes.len()
            );
        }
        assert!(skipping.is_empty());
        // Cut or damaged: errors or a wrong place (caught by the decoder), never panics.
        for cut in 0..buf.len().min(400) {
            let r = &mut ByteReader::new(&buf[..cut]);
            let _ = streams
                .iter()
                .try_for_each(|(k, ..)| skip_either(r, k.len()));
        }
        for i in 0..buf.len().min(400) {
            let mut bad = buf.clone();
            bad[i] ^= 0x5a;
            let r = &mut ByteReader::new(&bad);
            let _ = streams
                .iter()
                .try_for_each(|(k, ..)| skip_either(r, k.len()));
        }
    }

    /// `codes` split by context as the decoder holds them: the streams one after the other,
    /// one code more, and each stream's count.
    fn split_flat(codes: &[i32]) -> (Vec<i32>, [usize; CONTEXTS]) {
        let mut split: [Vec<i32>; CONTEXTS] = Default::default();
        let (mut p1, mut p2) = (0, 0);
        for &c in codes {
            split[context(p1, p2)].push(c);
            (p2, p1) = (p1, c);
        }
        let counts = split.each_ref().map(Vec::len);
        let mut flat: Vec<i32> = split.concat();
        flat.push(0);
        (flat, counts)
    }

    #[test]
    fn merging_the_context_streams_gives_back_every_code_in_order() {
        // Runs of zeros (copied at once) of every length, against and at a stream's end, runs
        // of ±1 and of large codes (the other diagonal contexts, stepped one by one), codes
        // that change class at every step, and the empty and one-code streams.
        let mut seed = 11u64;
        let mut mixed = Vec::new();
        for k in 0..400usize {
            let len = (lcg(&mut seed) % 40) as usize;
            let v = match k % 5 {
                0 | 3 => 0,
                1 => 1 - 2 * (lcg(&mut seed) % 2) as i32,
                2 => 2 + (lcg(&mut seed) % 1000) as i32,
                _ => -((lcg(&mut seed) % 3) as i32),
            };
            mixed.extend(std::iter::repeat_n(v, len));
        }
        let cases: Vec<Vec<i32>> = vec![
            vec![],
            vec![0],
            vec![5],
            vec![0; 1000],
            vec![0, 0, 0, 7],
            vec![7, 0, 0, 0, 0, 0],
            (0..3000).map(|i| [0, 1, 2, 0, -5, 1][i % 6]).collect(),
            laplace(20_000, 0.3, 5),
            laplace(20_000, 4.0, 6),
            mixed,
        ];
        for codes in &cases {
            let (flat, counts) = split_flat(codes);
            // Whatever `out` held before (every code written, the runs of zeros too).
            let mut out = vec![9; codes.len()];
            merge_contexts(&flat, &counts, &mut out).unwrap();
            assert_eq!(&out, codes);
            // Counts moved from one context to another (still adding up): an error or other
            // codes, never a panic or a read past the streams.
            for from in 0..CONTEXTS {
                for to in 0..CONTEXTS {
                    let mut forged = counts;
                    if from == to || forged[from] == 0 {
                        continue;
                    }
                    let moved = 1 + forged[from] / 2;
                    forged[from] -= moved;
                    forged[to] += moved;
                    let _ = merge_contexts(&flat, &forged, &mut out);
                }
            }
        }
        // 3 then 0: context 0, then 2·3 + 0. Counted all in context 0, the code after 3 is
        // wanted from an empty stream 6 past the last; counted in 6, from stream 0 run dry.
        let flat = [3, 0, 0];
        let mut counts = [0; CONTEXTS];
        counts[0] = 2;
        let mut out = [9; 2];
        assert!(merge_contexts(&flat, &counts, &mut out).is_err());
        (counts[0], counts[6]) = (0, 2);
        assert!(merge_contexts(&flat, &counts, &mut out).is_err());
        (counts[0], counts[6]) = (1, 1);
        merge_contexts(&flat, &counts, &mut out).unwrap();
        assert_eq!(out, [3, 0]);
    }

    #[test]
    fn runs_of_a_context_code_decode_at_once_and_bit_for_bit() {
        // Mostly 0 in long runs, each burst a pattern (1 then −1, 2 then 3 then 0): the
        // decoder copies the runs of each context's own code at once; cut or damaged
        // streams stay errors, never panics.
        let mut seed = 5;
        let mut codes = Vec::new();
        while codes.len() < 50_000 {
            let run = (lcg(&mut seed) % 300) as usize;
            codes.extend(std::iter::repeat_n(0, run));
            match lcg(&mut seed) % 3 {
                0 => codes.extend([1, -1]),
                1 => codes.extend([2, 3]),
                _ => codes.extend([7, 7, 7, 7, -7]),
            }
        }
        let mut c = CodeCoder::new();
        assert!(c.previous_contexts(&codes));
        let mut buf = Vec::new();
        c.encode_by_previous(&codes, &mut buf);
        let mut out = vec![9];
        let mut r = ByteReader::new(&buf);
        c.decode_by_previous(&mut r, codes.len(), &mut out).unwrap();
        assert!(r.is_empty());
        assert_eq!(out, codes);
        for cut in 0..buf.len() {
            let r = &mut ByteReader::new(&buf[..cut]);
            assert!(c.decode_by_previous(r, codes.len(), &mut out).is_err());
        }
        for i in 0..buf.len().min(400) {
            let mut bad = buf.clone();
            bad[i] ^= 0x5a;
            let _ = c.decode_by_previous(&mut ByteReader::new(&bad), codes.len(), &mut out);
        }
        let r = &mut ByteReader::new(&buf);
        assert!(c.decode_by_previous(r, codes.len() + 1, &mut out).is_err());
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
            c.encode_in_context(&codes[..n], &mut split, None, &mut buf);
            let mut out = vec![7];
            let mut r = ByteReader::new(&buf);
            c.decode_in_context(&mut r, n, &mut out).unwrap();
            assert!(r.is_empty());
            assert_eq!(out, &codes[..n]);
            if n == codes.len() {
                assert!(buf.len() * 10 < round_trip(&codes) * 9, "{}", buf.len());
                // Damaged: errors, never panics; counts that do not add up are refused.
                for cut in 0..buf.len().min(200) {
                    let r = &mut ByteReader::new(&buf[..cut]);
                    assert!(c.decode_in_context(r, n, &mut out).is_err());
                }
                for i in 0..buf.len().min(300) {
                    let mut bad = buf.clone();
                    bad[i] ^= 0x5a;
                    let r = &mut ByteReader::new(&bad);
                    let _ = c.decode_in_context(r, n, &mut out);
                }
                let r = &mut ByteReader::new(&buf);
                let err = c.decode_in_context(r, n + 1, &mut out);
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
            c.decode_either(r, codes.len(), &mut out).unwrap();
            assert!(r.is_empty());
            assert_eq!(&out, codes);
            buf[0] = 2;
            let r = &mut ByteReader::new(&buf);
            assert!(c.decode_either(r, codes.len(), &mut out).is_err());
        }
    }
}
