//! Interleaved range asymmetric numeral systems (rANS) over a static, normalized frequency table.
//!
//! * State: `u32` in `[L, 2^32)` with `L = 2^16`; renormalization moves 16-bit words, so each
//!   symbol moves at most one word. Table precision `P` ≤ [`MAX_PREC`] (frequencies sum to `2^P`).
//! * Interleaving: symbol `i` belongs to lane `i % lanes`, with `lanes` = [`lanes_for`]`(n)`
//!   (1, 4 or 8). The encoder runs backwards over the symbols and all lanes share one word
//!   stream, so the decoder runs forwards and reads the words in order.
//! * Stream layout: the `lanes` final encoder states (`u32` LE, lane 0 first), then the 16-bit
//!   words (LE) in the order the decoder consumes them. The decoder must end with every lane back
//!   at the initial state `L` and every word consumed: a free integrity check.

use crate::bytes::{DecodeResult, Malformed};

/// Largest supported table precision, in bits.
pub(crate) const MAX_PREC: u32 = 15;
const TABLE_SIZE: usize = 1 << MAX_PREC;
const L: u32 = 1 << 16;

/// Number of interleaved lanes for a stream of `n` symbols (part of the format).
pub(crate) fn lanes_for(n: usize) -> usize {
    if n >= 4096 {
        8
    } else if n >= 64 {
        4
    } else {
        1
    }
}

#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(16))]
struct EncSym {
    /// `ceil(2^64 / freq)`, so `x / freq == mulhi(x, rcp)` for every 32-bit `x`; `2^64 − 1` for
    /// `freq == 1`, which gives `x − 1` and is corrected through `bias` (as in ryg's rANS).
    rcp: u64,
    /// States at or above this must shed 16 bits first: `freq << (32 − prec)`.
    x_max: u32,
    /// `start`, or `start + 2^prec − 1` for `freq == 1`.
    bias: u16,
    /// `2^prec − freq`.
    cmpl: u16,
}

/// An encoder's view of a normalized table.
#[derive(Debug, Default)]
pub(crate) struct Encoder {
    prec: u32,
    syms: Vec<EncSym>,
    /// The frequencies of the table, from which the vector encoder's is made where it runs.
    freqs: Vec<u32>,
    /// The vector encoder's table ([`encode_groups_avx2`]), made from `freqs` when an 8-lane
    /// stream is encoded so: each symbol's magic number for dividing by its frequency, and
    /// `cmpl | start << 16`.
    lanes: (Vec<u32>, Vec<u32>),
    words: Vec<u16>,
}

impl Encoder {
    /// Loads normalized frequencies (summing to `2^prec`, at least two symbols present; zero for
    /// absent symbols).
    pub(crate) fn set_table(&mut self, freqs: &[u32], prec: u32) {
        debug_assert!(prec <= MAX_PREC);
        debug_assert_eq!(freqs.iter().map(|&f| f as u64).sum::<u64>(), 1u64 << prec);
        self.prec = prec;
        self.syms.clear();
        self.freqs.clear();
        self.freqs.extend_from_slice(freqs);
        self.lanes.0.clear();
        let mut start = 0u32;
        for &f in freqs {
            // A lone symbol (freq = 2^prec) would overflow x_max; streams of one value are
            // coded as constants and never get here.
            debug_assert!(f < 1 << prec);
            let (rcp, bias) = match f {
                0 => (0, 0),
                1 => (u64::MAX, start + (1 << prec) - 1),
                _ => (u64::MAX / f as u64 + 1, start),
            };
            self.syms.push(EncSym {
                rcp,
                x_max: ((f as u64) << (32 - prec)).min(u32::MAX as u64) as u32,
                bias: bias as u16,
                cmpl: ((1u32 << prec) - f) as u16,
            });
            start += f;
        }
    }

    /// Encodes `symbols` (each must have a non-zero frequency) and appends the stream to `out`.
    pub(crate) fn encode(&mut self, symbols: &[u16], out: &mut Vec<u8>) {
        match lanes_for(symbols.len()) {
            8 => self.encode_lanes::<8>(symbols, out, vector_encoder()),
            4 => self.encode_lanes::<4>(symbols, out, false),
            _ => self.encode_lanes::<1>(symbols, out, false),
        }
    }

    /// Makes the vector encoder's table from the frequencies, once a table: each symbol's
    /// division by its frequency (absent symbols: by 1, never used) and `cmpl | start << 16`.
    fn make_vector_table(&mut self) {
        let (magics, cmpl_starts) = &mut self.lanes;
        if !magics.is_empty() {
            return;
        }
        cmpl_starts.clear();
        let mut start = 0u32;
        for &f in &self.freqs {
            let (d, l) = (
                u64::from(f.max(1)),
                32 - f.max(1).wrapping_sub(1).leading_zeros(),
            );
            magics.push(((1u64 << 32) * ((1u64 << l) - d) / d + 1) as u32);
            cmpl_starts.push(((1u32 << self.prec) - f) | start << 16);
            start += f;
        }
    }

    /// Encodes one symbol into lane state `x`. Branch-free: the low word is always stored at
    /// `pos`, which advances only when renormalization sheds it.
    #[inline(always)]
    fn put(syms: &[EncSym], s: u16, x: &mut u32, words: &mut [u16], pos: &mut usize) {
        let sym = syms[s as usize];
        debug_assert!(sym.rcp != 0, "symbol {s} has no frequency");
        let shed = *x >= sym.x_max;
        words[*pos] = *x as u16;
        *pos += shed as usize;
        let y = if shed { *x >> 16 } else { *x };
        let q = ((y as u128 * sym.rcp as u128) >> 64) as u32;
        *x = y
            .wrapping_add(sym.bias as u32)
            .wrapping_add(q.wrapping_mul(sym.cmpl as u32));
    }

    /// Encodes with `N` lanes, eight at once in vector registers where `vector` (the CPU must
    /// have AVX2 then: [`vector_encoder`]).
    fn encode_lanes<const N: usize>(&mut self, symbols: &[u16], out: &mut Vec<u8>, vector: bool) {
        let vector = N == 8 && vector;
        if vector {
            self.make_vector_table();
        }
        let syms = &self.syms[..];
        let words = &mut self.words;
        // At most one word per symbol.
        words.clear();
        words.resize(symbols.len() + 1, 0);
        let mut pos = 0usize;
        let mut state = [L; N];
        // Symbol i belongs to lane i % N; encode from the last symbol back.
        let whole = symbols.len() - symbols.len() % N;
        for (lane, &s) in symbols[whole..].iter().enumerate().rev() {
            Self::put(syms, s, &mut state[lane], words, &mut pos);
        }
        let mut groups = &symbols[..whole];
        #[cfg(not(target_arch = "x86_64"))]
        let _ = vector;
        #[cfg(target_arch = "x86_64")]
        if vector {
            // Room for a whole group's words past the last.
            words.resize(symbols.len() + 8, 0);
            let table = (&self.lanes.0[..], &self.lanes.1[..]);
            let state8: &mut [u32; 8] = (&mut state[..]).try_into().expect("eight lanes");
            // SAFETY: the CPU has AVX2 (the caller checked); every symbol has a
            // frequency (the caller's promise), so each is below the columns' length; `words`
            // has room for one word a symbol and eight more.
            #[allow(unsafe_code)]
            unsafe {
                encode_groups_avx2(table, self.prec, groups, state8, words, &mut pos)
            };
            groups = &[];
        }
        for group in groups.chunks_exact(N).rev() {
            for lane in (0..N).rev() {
                Self::put(syms, group[lane], &mut state[lane], words, &mut pos);
            }
        }
        words.truncate(pos);
        out.reserve(4 * N + 2 * words.len());
        for s in state {
            out.extend_from_slice(&s.to_le_bytes());
        }
        let at = out.len();
        out.resize(at + 2 * words.len(), 0);
        for (o, &w) in out[at..].chunks_exact_mut(2).zip(words.iter().rev()) {
            o.copy_from_slice(&w.to_le_bytes());
        }
    }
}

/// Whether [`Encoder::encode`] takes eight lanes at a time in vector registers: where the
/// CPU has AVX2.
fn vector_encoder() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Each byte pair of a group's eight words that a mask of shedding lanes keeps, moved to the
/// front in order: the shuffle that packs the words those lanes write.
#[cfg(target_arch = "x86_64")]
const PACK_WORDS: [[u8; 16]; 256] = {
    let mut table = [[0x80u8; 16]; 256];
    let mut mask = 0;
    while mask < 256 {
        let (mut lane, mut out) = (0, 0);
        while lane < 8 {
            if mask & (1 << lane) != 0 {
                table[mask][2 * out] = 2 * lane as u8;
                table[mask][2 * out + 1] = 2 * lane as u8 + 1;
                out += 1;
            }
            lane += 1;
        }
        mask += 1;
    }
    table
};

/// [`Encoder::encode`]'s groups of eight symbols, from the last group back, the eight lanes at
/// once: the same words and states as [`Encoder::put`] lane by lane (from lane 7 down). Each
/// quotient `y / freq` is exact by Granlund and Montgomery's division by an invariant
/// integer (1994, figure 4.1): with `l = ceil(log2 freq)` and the magic number
/// `m = floor(2^32 (2^l − freq) / freq) + 1`, `t = (m · y) >> 32`, the quotient is
/// `(t + ((y − t) >> min(l, 1))) >> (max(l, 1) − 1)` for every 32-bit `y`; `x_max` and `l`
/// follow from `cmpl` (`l` from the exponent of `freq − 1` as an `f32`, exact below 2^24).
///
/// # Safety
/// The CPU must have AVX2; every symbol must be below the length of the columns of `table`
/// (`m`, `cmpl | start << 16`) and have a frequency; `words` must have room for a word a
/// symbol and eight more past `pos`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(unsafe_code)]
unsafe fn encode_groups_avx2(
    (magics, cmpl_starts): (&[u32], &[u32]),
    prec: u32,
    groups: &[u16],
    state: &mut [u32; 8],
    words: &mut [u16],
    pos: &mut usize,
) {
    use std::arch::x86_64::*;
    debug_assert!(groups.len().is_multiple_of(8));
    debug_assert!(*pos + groups.len() + 8 <= words.len());
    let mut at = *pos;
    // SAFETY: loads of eight symbols within `groups`; gathers at symbols below the columns'
    // length (the caller's promise); a store of eight words at `at`, which stays at most one
    // word a symbol past `pos` (the caller's room).
    unsafe {
        // Lane j holds lane 7 − j of the scalar encoder, so the words come out in its order.
        let reverse = _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0);
        let reverse_words = _mm_setr_epi8(14, 15, 12, 13, 10, 11, 8, 9, 6, 7, 4, 5, 2, 3, 0, 1);
        // The low word of each 32-bit lane, packed into each half's low eight bytes.
        let low_words = _mm256_setr_epi8(
            0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1, 0, 1, 4, 5, 8, 9, 12, 13, -1,
            -1, -1, -1, -1, -1, -1, -1,
        );
        let sign = _mm256_set1_epi32(i32::MIN);
        let low16 = _mm256_set1_epi32(0xffff);
        let (zero, one) = (_mm256_setzero_si256(), _mm256_set1_epi32(1));
        let bias = _mm256_set1_epi32(126);
        let total = _mm256_set1_epi32(1 << prec);
        let up = _mm_cvtsi32_si128(32 - prec as i32);
        let mut x = _mm256_permutevar8x32_epi32(_mm256_loadu_si256(state.as_ptr().cast()), reverse);
        for g in (0..groups.len() / 8).rev() {
            let s16 = _mm_loadu_si128(groups.as_ptr().add(8 * g).cast());
            let s = _mm256_cvtepu16_epi32(_mm_shuffle_epi8(s16, reverse_words));
            let cs = _mm256_i32gather_epi32::<4>(cmpl_starts.as_ptr().cast(), s);
            let m = _mm256_i32gather_epi32::<4>(magics.as_ptr().cast(), s);
            let cmpl = _mm256_and_si256(cs, low16);
            let freq = _mm256_sub_epi32(total, cmpl);
            let x_max = _mm256_sll_epi32(freq, up);
            // l = ceil(log2 freq): the exponent of freq − 1 plus one, 0 for freq = 1 (whose
            // freq − 1 is 0.0, biased exponent 0).
            let below = _mm256_cvtepi32_ps(_mm256_sub_epi32(freq, one));
            let e = _mm256_srli_epi32::<23>(_mm256_castps_si256(below));
            let l = _mm256_max_epi32(_mm256_sub_epi32(e, bias), zero);
            let (sh1, sh2) = (
                _mm256_min_epi32(l, one),
                _mm256_sub_epi32(_mm256_max_epi32(l, one), one),
            );
            // x < x_max, unsigned: the lanes that keep their state whole.
            let keep = _mm256_cmpgt_epi32(_mm256_xor_si256(x_max, sign), _mm256_xor_si256(x, sign));
            let shed = !(_mm256_movemask_ps(_mm256_castsi256_ps(keep)) as u32) & 0xff;
            let packed = _mm256_permute4x64_epi64::<0b1000>(_mm256_shuffle_epi8(x, low_words));
            let out = _mm_shuffle_epi8(
                _mm256_castsi256_si128(packed),
                _mm_loadu_si128(PACK_WORDS[shed as usize].as_ptr().cast()),
            );
            _mm_storeu_si128(words.as_mut_ptr().add(at).cast(), out);
            at += shed.count_ones() as usize;
            let y = _mm256_blendv_epi8(_mm256_srli_epi32::<16>(x), x, keep);
            // t = (m · y) >> 32, the even lanes' and the odd lanes' products.
            let even = _mm256_srli_epi64::<32>(_mm256_mul_epu32(y, m));
            let odd = _mm256_mul_epu32(_mm256_srli_epi64::<32>(y), _mm256_srli_epi64::<32>(m));
            let t = _mm256_blend_epi32::<0b1010_1010>(even, odd);
            let q = _mm256_srlv_epi32(
                _mm256_add_epi32(t, _mm256_srlv_epi32(_mm256_sub_epi32(y, t), sh1)),
                sh2,
            );
            // x = q · 2^prec + (y − q · freq) + start.
            x = _mm256_add_epi32(
                _mm256_add_epi32(y, _mm256_srli_epi32::<16>(cs)),
                _mm256_mullo_epi32(q, cmpl),
            );
        }
        _mm256_storeu_si256(
            state.as_mut_ptr().cast(),
            _mm256_permutevar8x32_epi32(x, reverse),
        );
    }
    *pos = at;
}

/// A decoder's view of a normalized table: per slot, the symbol, and `freq << 16 | (slot −
/// start)`, so a step needs one load on its critical path (the symbol's load runs beside it).
pub(crate) struct Decoder {
    prec: u32,
    slot_sym: Box<[u16; TABLE_SIZE]>,
    slot_step: Box<[u32; TABLE_SIZE]>,
}

impl Default for Decoder {
    fn default() -> Self {
        let slot_sym: Box<[u16; TABLE_SIZE]> = vec![0u16; TABLE_SIZE]
            .into_boxed_slice()
            .try_into()
            .expect("fixed size");
        let slot_step: Box<[u32; TABLE_SIZE]> = vec![0u32; TABLE_SIZE]
            .into_boxed_slice()
            .try_into()
            .expect("fixed size");
        Decoder {
            prec: 0,
            slot_sym,
            slot_step,
        }
    }
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("prec", &self.prec)
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// Loads normalized frequencies (summing to `2^prec`).
    pub(crate) fn set_table(&mut self, freqs: &[u32], prec: u32) -> DecodeResult<()> {
        if prec > MAX_PREC {
            return Err(Malformed(format!("rANS precision {prec} above {MAX_PREC}")));
        }
        let total: u64 = freqs.iter().map(|&f| f as u64).sum();
        if total != 1u64 << prec || freqs.len() > u16::MAX as usize + 1 {
            return Err(Malformed(format!(
                "rANS frequencies sum to {total}, not 2^{prec}"
            )));
        }
        self.prec = prec;
        let mut start = 0usize;
        for (s, &f) in freqs.iter().enumerate() {
            self.slot_sym[start..start + f as usize].fill(s as u16);
            // A lone symbol has freq 2^15: still fits in 16 bits.
            for (k, e) in self.slot_step[start..start + f as usize]
                .iter_mut()
                .enumerate()
            {
                *e = (f << 16) | k as u32;
            }
            start += f as usize;
        }
        Ok(())
    }

    /// Decodes `out.len()` symbols from `input`, which must hold exactly the encoder's stream.
    pub(crate) fn decode(&self, input: &[u8], out: &mut [u16]) -> DecodeResult<()> {
        // A word for every four symbols or more: two bits a symbol at least.
        let busy = 4 * (input.len() / 2) >= out.len();
        match (lanes_for(out.len()), busy) {
            (8, true) => self.decode_lanes::<8, true>(input, out),
            (8, false) => self.decode_lanes::<8, false>(input, out),
            (4, true) => self.decode_lanes::<4, true>(input, out),
            (4, false) => self.decode_lanes::<4, false>(input, out),
            _ => self.decode_lanes::<1, false>(input, out),
        }
    }

    /// Decodes with `N` lanes; `BUSY` where words are read often enough (a symbol's bits
    /// above a few) that whether a lane reads one is as unpredictable as the symbols, so a
    /// branch-free renormalization pays (the jets' tables: 1.11x), and where they are rare
    /// (most of a field's streams, at about a bit a symbol) the branch is cheaper.
    fn decode_lanes<const N: usize, const BUSY: bool>(
        &self,
        input: &[u8],
        out: &mut [u16],
    ) -> DecodeResult<()> {
        if input.len() < 4 * N {
            return Err(Malformed::new(
                "rANS stream shorter than its initial states",
            ));
        }
        let mut state = [0u32; N];
        for (lane, s) in state.iter_mut().enumerate() {
            let b = &input[4 * lane..4 * lane + 4];
            *s = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            if *s < L {
                return Err(Malformed::new("rANS initial state out of range"));
            }
        }
        let words = &input[4 * N..];
        if !words.len().is_multiple_of(2) {
            return Err(Malformed::new("rANS word stream has an odd length"));
        }
        let prec = self.prec;
        let mask = (1u32 << prec) - 1;
        let slot_sym = &*self.slot_sym;
        let slot_step = &*self.slot_step;
        let mut pos = 0usize;
        let mut groups = out.chunks_exact_mut(N);
        for group in &mut groups {
            // Each lane reads at most one word: check the group's worst case once.
            if pos + 2 * N <= words.len() {
                for lane in 0..N {
                    let x = state[lane];
                    let slot = (x & mask) as usize & (TABLE_SIZE - 1);
                    group[lane] = slot_sym[slot];
                    let e = slot_step[slot];
                    let mut x = (e >> 16).wrapping_mul(x >> prec).wrapping_add(e & 0xffff);
                    if BUSY {
                        // Renormalized without a branch: the next word is read either way
                        // and taken where the state fell below L.
                        let word = u16::from_le_bytes([words[pos], words[pos + 1]]) as u32;
                        let read = u32::from(x < L);
                        x = (x << (16 * read)) | (word & read.wrapping_neg());
                        pos += 2 * read as usize;
                    } else if x < L {
                        x = (x << 16) | u16::from_le_bytes([words[pos], words[pos + 1]]) as u32;
                        pos += 2;
                    }
                    state[lane] = x;
                }
            } else {
                for lane in 0..N {
                    group[lane] = self.step(mask, &mut state[lane], words, &mut pos)?;
                }
            }
        }
        for (lane, o) in groups.into_remainder().iter_mut().enumerate() {
            *o = self.step(mask, &mut state[lane], words, &mut pos)?;
        }
        if pos != words.len() || state.iter().any(|&s| s != L) {
            return Err(Malformed::new(
                "rANS stream does not end where its symbols do",
            ));
        }
        Ok(())
    }

    #[inline(always)]
    fn step(&self, mask: u32, x: &mut u32, words: &[u8], pos: &mut usize) -> DecodeResult<u16> {
        let slot = (*x & mask) as usize & (TABLE_SIZE - 1);
        let s = self.slot_sym[slot];
        let e = self.slot_step[slot];
        let mut y = (e >> 16)
            .wrapping_mul(*x >> self.prec)
            .wrapping_add(e & 0xffff);
        if y < L {
            let w = words
                .get(*pos..*pos + 2)
                .ok_or_else(|| Malformed::new("rANS word stream ends early"))?;
            y = (y << 16) | u16::from_le_bytes([w[0], w[1]]) as u32;
            *pos += 2;
        }
        *x = y;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(freqs: &[u32], prec: u32, symbols: &[u16]) -> usize {
        let mut enc = Encoder::default();
        enc.set_table(freqs, prec);
        let mut buf = Vec::new();
        enc.encode(symbols, &mut buf);
        let mut dec = Decoder::default();
        dec.set_table(freqs, prec).unwrap();
        let mut out = vec![0u16; symbols.len()];
        dec.decode(&buf, &mut out).unwrap();
        assert_eq!(out, symbols);
        buf.len()
    }

    fn lcg(seed: &mut u64) -> u32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 33) as u32
    }

    /// A symbol drawn by the frequencies `freqs` (summing to `2^prec`).
    fn draw(freqs: &[u32], prec: u32, seed: &mut u64) -> u16 {
        let r = lcg(seed) % (1 << prec);
        let mut acc = 0;
        freqs
            .iter()
            .position(|&f| {
                acc += f;
                r < acc
            })
            .expect("frequencies summing to 2^prec") as u16
    }

    #[test]
    fn round_trips_for_all_lane_counts() {
        let freqs = [1u32 << 14, 1 << 13, 1 << 12, (1 << 12) - 1, 1];
        for n in [0usize, 1, 2, 7, 8, 9, 63, 64, 65, 4095, 4096, 4097, 100_000] {
            let mut seed = n as u64;
            let symbols: Vec<u16> = (0..n).map(|_| draw(&freqs, 15, &mut seed)).collect();
            round_trip(&freqs, 15, &symbols);
        }
    }

    /// The vector encoder's words and states are the scalar encoder's, byte for byte: every
    /// precision, frequencies of one, of powers of two and of every size between (the
    /// division's edge cases and its magic numbers), of nearly all the table (states shed on
    /// most symbols), and lengths around the groups of eight.
    #[test]
    fn vector_lanes_encode_as_the_scalar_lanes() {
        if !vector_encoder() {
            return;
        }
        let mut seed = 11u64;
        for prec in 1..=MAX_PREC {
            for shape in 0..5 {
                // A table of `m` symbols summing to 2^prec.
                let m = match shape {
                    0 => 2,
                    1 => 3.min(1 << prec),
                    2 => (1usize << prec).min(300),
                    3 => (1usize << prec).min(40),
                    _ => prec as usize + 1,
                };
                let mut freqs = vec![1u32; m];
                let rest = (1u32 << prec) - m as u32;
                match shape {
                    0 | 2 => freqs[0] += rest,
                    // 2^(prec − 1), 2^(prec − 2), …, 2, 1, 1.
                    4 => {
                        for (i, f) in freqs.iter_mut().enumerate().take(m - 1) {
                            *f = 1 << (prec as usize - 1 - i);
                        }
                    }
                    _ => {
                        for _ in 0..rest {
                            freqs[lcg(&mut seed) as usize % m] += 1;
                        }
                    }
                }
                if freqs.iter().any(|&f| f >= 1 << prec) {
                    continue;
                }
                let mut enc = Encoder::default();
                enc.set_table(&freqs, prec);
                for n in [4096usize, 4097, 4103, 4104, 20_000] {
                    // Drawn by frequency half the time, uniformly over the symbols else.
                    let symbols: Vec<u16> = (0..n)
                        .map(|_| match lcg(&mut seed) % 2 {
                            0 => (lcg(&mut seed) as usize % m) as u16,
                            _ => draw(&freqs, prec, &mut seed),
                        })
                        .collect();
                    let (mut scalar, mut vector) = (Vec::new(), Vec::new());
                    enc.encode_lanes::<8>(&symbols, &mut scalar, false);
                    enc.encode_lanes::<8>(&symbols, &mut vector, true);
                    assert_eq!(
                        scalar, vector,
                        "precision {prec}, table {shape}, {n} symbols"
                    );
                    assert_eq!(round_trip(&freqs, prec, &symbols), vector.len());
                }
            }
        }
    }

    #[test]
    fn rare_symbols_with_frequency_one() {
        let mut freqs = vec![1u32; 100];
        freqs[0] = (1 << 12) - 99;
        let symbols: Vec<u16> = (0..50_000u32)
            .map(|i| if i % 97 == 0 { (i % 100) as u16 } else { 0 })
            .collect();
        round_trip(&freqs, 12, &symbols);
    }

    #[test]
    fn size_is_close_to_entropy() {
        // p = (0.9, 0.05, 0.05): entropy 0.569 bits per symbol.
        let freqs = [29491u32, 1638, 1639];
        let mut seed = 7;
        let symbols: Vec<u16> = (0..200_000)
            .map(|_| match lcg(&mut seed) % 1000 {
                0..900 => 0,
                900..950 => 1,
                _ => 2,
            })
            .collect();
        let bytes = round_trip(&freqs, 15, &symbols);
        let ideal = 0.569 * 200_000.0 / 8.0;
        assert!((bytes as f64) < ideal * 1.01, "{bytes} vs {ideal}");
    }

    #[test]
    fn rejects_damaged_streams_without_panicking() {
        let freqs = [100u32, 3996];
        let mut seed = 1;
        let symbols: Vec<u16> = (0..10_000)
            .map(|_| lcg(&mut seed).is_multiple_of(40) as u16)
            .collect();
        let mut enc = Encoder::default();
        enc.set_table(&freqs, 12);
        let mut buf = Vec::new();
        enc.encode(&symbols, &mut buf);
        let mut dec = Decoder::default();
        dec.set_table(&freqs, 12).unwrap();
        let mut out = vec![0u16; symbols.len()];
        for cut in [0, 3, 31, 32, buf.len() / 2, buf.len() - 2, buf.len() - 1] {
            assert!(dec.decode(&buf[..cut], &mut out).is_err(), "cut at {cut}");
        }
        let mut flipped = buf.clone();
        flipped[40] ^= 0x10;
        let _ = dec.decode(&flipped, &mut out); // must not panic; mismatch detected or not
        assert!(dec.set_table(&[1, 2], 12).is_err());
    }
}
