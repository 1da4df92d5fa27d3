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
//! A column segment's codes ([`CodeCoder::encode_either`]) start with a *layout* byte, then
//! one or more streams as above:
//!
//! | layout | byte | body |
//! |---|---|---|
//! | one stream | 0 | the stream |
//! | by context | 1 | [`CONTEXTS`] `uvarint` counts, then the stream of each non-empty context (the magnitudes, 0, 1 or 2+, of the two codes before) |
//! | by previous code | 2 | `uvarint K` ≤ 63, the K context codes (`ivarint` first, then `uvarint` gaps − 1), K + 1 `uvarint` counts, then each non-empty stream (the code before is context `i` where it is the `i`-th context code, else K) |
//!
//! The files follow a stream's path: `mod.rs` the coder and its entry points; [`choose`]
//! measures a stream and prices every mode; [`context`] splits a segment into streams by
//! context; [`write`](mod@write) writes the chosen mode; [`read`] reads any of them back; [`rans`],
//! [`table`] and [`hybrid`] are the coder, its frequency tables and the hybrid tokens.
//!
//! rANS handles a dominant code (p > 0.5) at a fraction of a bit, where a Huffman code would
//! spend a whole bit per value; hybrid tokens ([`hybrid`]) keep tables small for wide
//! distributions; direct tables code sparse alphabets (e.g. PID codes) exactly.
//!
//! Binned streams (format version 3) code each value as a *bin* (by rANS) and its offset in the
//! bin (raw bits): bins are ranges `[lo, lo + 2^w)` fitted to the stream by `plan_bins` (in `choose`), an
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

mod choose;
mod context;
mod read;
mod write;

/// The per-context counts of a split stream, read as every split layout writes them (the
/// lossless coder's classes too).
pub(crate) use context::read_context_counts;

use crate::bytes::put_ivarint;
use choose::{BinPlan, Fine};
pub(crate) use context::{CONTEXTS, ContextStreams, merge_contexts, open_contexts, skip_either};
use hybrid::{Hybrid, TokenEntry};
pub(crate) use read::skip;

const MODE_CONST: u8 = 0;
const MODE_DIRECT: u8 = 1;
const MODE_HYBRID: u8 = 2;
const MODE_PACKED: u8 = 3;
const MODE_BINNED: u8 = 4;

/// Most bins of a binned stream.
const MAX_BINS: usize = 4096;
/// Most distinct codes a direct table may hold.
const MAX_DIRECT: usize = 4096;
/// Streams whose codes span less than this are histogrammed densely.
const DENSE_SPAN: u64 = 1 << 16;
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
    /// The bins are [`CodeCoder`]'s `bins`, planned by `choose::plan_bins`.
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
    /// The context streams of a code stream split by context, one after the other.
    ctx_flat: Vec<i32>,
    prev_out: Vec<u8>,
    /// Counts of (context, code) pairs of [`CodeCoder::by_previous_estimate`]'s probe: all
    /// zero between calls (only the cells listed in `prev_touched` are counted and reset).
    prev_pairs: Vec<u16>,
    prev_touched: Vec<u32>,
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

/// The smallest and largest of `codes`, if any.
fn range(codes: &[i32]) -> Option<(i32, i32)> {
    let (&first, rest) = codes.split_first()?;
    Some(
        rest.iter()
            .fold((first, first), |(lo, hi), &c| (lo.min(c), hi.max(c))),
    )
}

impl CodeCoder {
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

    /// Whether [`encode`](Self::encode) may plan binned streams.
    pub(crate) fn binned(&self) -> bool {
        self.binned
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

    /// [`encode`](Self::encode) for `codes` whose histogram is known: `counts[i]` of them
    /// are `lowest + i`, and there are no others. The same bytes, without counting them again.
    pub(crate) fn encode_counted(
        &mut self,
        codes: &[i32],
        lowest: i32,
        counts: &[u32],
        out: &mut Vec<u8>,
    ) {
        debug_assert_eq!(
            counts.iter().map(|&c| c as usize).sum::<usize>(),
            codes.len()
        );
        let code = |i: usize| lowest + i as i32;
        let (Some(lo), Some(hi)) = (
            counts.iter().position(|&c| c > 0),
            counts.iter().rposition(|&c| c > 0),
        ) else {
            return self.encode(codes, out);
        };
        let (min, max) = (code(lo), code(hi));
        let choice = if min == max {
            Choice::Const(min)
        } else {
            self.vals.clear();
            self.counts.clear();
            for (i, &c) in counts.iter().enumerate().filter(|(_, c)| **c > 0) {
                self.vals.push(code(i));
                self.counts.push(c);
            }
            self.choose_counted(codes, min, max)
        };
        self.write(codes, min, choice, out);
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
    use crate::bytes::ByteReader;

    pub(super) fn round_trip(codes: &[i32]) -> usize {
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

    pub(super) fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *seed >> 11
    }

    /// Roughly Laplacian codes with scale `s`.
    pub(super) fn laplace(n: usize, s: f64, seed: u64) -> Vec<i32> {
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

    /// Codes like a point-wise relative column's ordinals over many decades: `N` mantissa bits
    /// under a log-normal exponent with a bump, both signs and a sentinel (NanoAOD's −1).
    pub(super) fn broad(n: usize, seed: u64) -> Vec<i32> {
        let mut seed = seed;
        (0..n)
            .map(|_| {
                let u = |s: &mut u64| (lcg(s) as f64 + 0.5) / (1u64 << 53) as f64;
                if lcg(&mut seed).is_multiple_of(10) {
                    return -(127 << 10);
                }
                let g = (-2.0 * u(&mut seed).ln()).sqrt()
                    * (std::f64::consts::TAU * u(&mut seed)).cos();
                let bump = if lcg(&mut seed).is_multiple_of(3) {
                    9.0
                } else {
                    0.0
                };
                let e = (g * 6.0 + bump).round() as i32 + 100;
                let m = (lcg(&mut seed) % 1024) as i32;
                let v = (e << 10) | m;
                if lcg(&mut seed).is_multiple_of(4) {
                    -v
                } else {
                    v
                }
            })
            .collect()
    }
}
