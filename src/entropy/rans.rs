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
            8 => self.encode_lanes::<8>(symbols, out),
            4 => self.encode_lanes::<4>(symbols, out),
            _ => self.encode_lanes::<1>(symbols, out),
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

    fn encode_lanes<const N: usize>(&mut self, symbols: &[u16], out: &mut Vec<u8>) {
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
        for group in symbols[..whole].chunks_exact(N).rev() {
            for lane in (0..N).rev() {
                Self::put(syms, group[lane], &mut state[lane], words, &mut pos);
            }
        }
        words.truncate(pos);
        out.reserve(4 * N + 2 * words.len());
        for s in state {
            out.extend_from_slice(&s.to_le_bytes());
        }
        for &w in words.iter().rev() {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }
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

    #[test]
    fn round_trips_for_all_lane_counts() {
        let freqs = [1u32 << 14, 1 << 13, 1 << 12, (1 << 12) - 1, 1];
        for n in [0usize, 1, 2, 7, 8, 9, 63, 64, 65, 4095, 4096, 4097, 100_000] {
            let mut seed = n as u64;
            let symbols: Vec<u16> = (0..n)
                .map(|_| {
                    let r = lcg(&mut seed) % (1 << 15);
                    let mut acc = 0;
                    freqs
                        .iter()
                        .position(|&f| {
                            acc += f;
                            r < acc
                        })
                        .unwrap() as u16
                })
                .collect();
            round_trip(&freqs, 15, &symbols);
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
