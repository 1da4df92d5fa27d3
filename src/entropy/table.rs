//! Frequency tables: normalization to `2^P` and a compact serialized form.
//!
//! A table is sent as one *weight* per symbol, a small float: an exponent `e` (the weight is in
//! `[2^e, 2^(e+1))`) and `m(e)` mantissa bits, where `m(e)` grows with the symbol's expected
//! count: a symbol seen a handful of times gets no mantissa bits (its count is noise anyway), a
//! frequent one gets three (within ±6%). The decoder turns weights back into frequencies with the
//! same integer [`renormalize`] as the encoder, so both agree bit for bit on a table summing to
//! exactly `2^P`. Sending weights this coarsely costs well under 0.01 bit per coded value and
//! makes tables several times smaller than exact counts, which is what matters for the many
//! narrow columns of a HEP table split into chunks.
//!
//! Serialized form (in a bit stream), for each present symbol in symbol order: the Elias-gamma
//! code of the run of absent symbols before it (sparse alphabets only), the Elias-gamma code of
//! the zigzagged exponent difference from the previous present symbol (neighbouring symbols have
//! similar weights), then the `m(e)` mantissa bits.

use crate::bytes::{BitReader, BitWriter, DecodeResult, Malformed};

use super::rans::MAX_PREC;

/// Smallest `b` with `2^b >= x`.
pub(crate) fn ceil_log2(x: u64) -> u32 {
    if x <= 1 {
        0
    } else {
        64 - (x - 1).leading_zeros()
    }
}

/// Table precision for `n` coded symbols over `present` distinct symbols: about 32 slots per
/// symbol, no more than the count warrants, and small enough that the decoder's slot table
/// stays in L1 for typical alphabets.
pub(crate) fn choose_prec(n: u64, present: usize) -> u32 {
    let need = ceil_log2(present as u64) + 1;
    (ceil_log2(present as u64) + 5)
        .min(ceil_log2(n))
        .clamp(need.max(5), MAX_PREC.max(need))
        .min(MAX_PREC)
}

/// How weights of one table are quantized: the exponent offset from normalized frequencies to
/// raw counts, `floor(log2 n) − prec`, which both sides know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WeightScale {
    shift: i32,
}

impl WeightScale {
    pub(crate) fn new(n: u64, prec: u32) -> Self {
        let log_n = 63 - n.max(1).leading_zeros() as i32;
        WeightScale {
            shift: log_n - prec as i32,
        }
    }

    /// Mantissa bits for exponent `e`: about half the bits of the expected count, at most 3.
    #[inline]
    pub(crate) fn mant_bits(self, e: u32) -> u32 {
        let count_log = e as i32 + self.shift;
        (count_log.div_euclid(2) - 1).clamp(0, 3).min(e as i32) as u32
    }

    /// The weight code for a normalized frequency `t > 0`: `(e + 1) << 3 | mantissa` (0 means
    /// absent).
    pub(crate) fn code(self, t: f64) -> u8 {
        let t = t.clamp(1.0, (1u64 << 31) as f64);
        let mut e = 63 - (t as u64).leading_zeros();
        let m = self.mant_bits(e);
        let mut mant = (t / f64::from(1u32 << (e - m))).round() as u32 - (1 << m);
        if mant >= 1 << m {
            e += 1;
            mant = 0;
        }
        let e = e.min(30);
        (((e + 1) << 3) | mant) as u8
    }

    /// The weight a code stands for.
    pub(crate) fn value(self, code: u8) -> u32 {
        let e = (code >> 3) as u32 - 1;
        let m = self.mant_bits(e);
        ((1 << m) + (code & 7) as u32) << (e - m)
    }
}

/// Turns weights (0 = absent) into frequencies summing to exactly `2^prec`, every present symbol
/// getting at least 1. Deterministic integer arithmetic: encoder and decoder agree bit for bit.
/// Rounds to nearest, then moves the difference one unit at a time onto the largest symbols
/// (ties to the lower symbol), where it distorts least.
pub(crate) fn renormalize(weights: &[u32], prec: u32, freqs: &mut Vec<u32>) -> DecodeResult<()> {
    if prec > MAX_PREC {
        return Err(Malformed(format!(
            "table precision {prec} above {MAX_PREC}"
        )));
    }
    let target = 1u64 << prec;
    let present = weights.iter().filter(|&&w| w > 0).count() as u64;
    if present == 0 || present > target {
        return Err(Malformed(format!(
            "{present} symbols cannot share 2^{prec}"
        )));
    }
    let total: u64 = weights.iter().map(|&w| w as u64).sum();
    freqs.clear();
    let mut sum = 0u64;
    for &w in weights {
        let f = if w == 0 {
            0
        } else {
            ((w as u64 * target + total / 2) / total).max(1)
        };
        freqs.push(f as u32);
        sum += f;
    }
    if sum == target {
        return Ok(());
    }
    let mut order: Vec<u32> = (0..weights.len() as u32)
        .filter(|&i| weights[i as usize] > 0)
        .collect();
    while sum != target {
        let grow = sum < target;
        if !grow {
            order.retain(|&i| freqs[i as usize] > 1);
        }
        let d = sum.abs_diff(target) as usize;
        let k = d.min(order.len());
        let cmp = |a: &u32, b: &u32| freqs[*b as usize].cmp(&freqs[*a as usize]).then(a.cmp(b));
        if k < order.len() {
            order.select_nth_unstable_by(k - 1, cmp);
        }
        order[..k].sort_unstable_by(cmp);
        for &i in &order[..k] {
            if grow {
                freqs[i as usize] += 1;
                sum += 1;
            } else {
                freqs[i as usize] -= 1;
                sum -= 1;
            }
        }
    }
    Ok(())
}

/// Weight codes for symbol counts (0 = absent) at precision `prec`.
pub(crate) fn codes_for_counts(counts: &[u32], n: u64, prec: u32, codes: &mut Vec<u8>) {
    let scale = (1u64 << prec) as f64 / n as f64;
    let ws = WeightScale::new(n, prec);
    codes.clear();
    codes.extend(
        counts
            .iter()
            .map(|&c| if c == 0 { 0 } else { ws.code(c as f64 * scale) }),
    );
}

/// Frequencies for weight codes.
pub(crate) fn freqs_for_codes(
    codes: &[u8],
    n: u64,
    prec: u32,
    freqs: &mut Vec<u32>,
) -> DecodeResult<()> {
    let ws = WeightScale::new(n, prec);
    let weights: Vec<u32> = codes
        .iter()
        .map(|&c| if c == 0 { 0 } else { ws.value(c) })
        .collect();
    renormalize(&weights, prec, freqs)
}

/// Length of the Elias-gamma code of `v + 1`.
pub(crate) fn gamma_bits(v: u32) -> u64 {
    2 * (63 - (v as u64 + 1).leading_zeros() as u64) + 1
}

fn zigzag_i32(d: i32) -> u32 {
    ((d << 1) ^ (d >> 31)) as u32
}

/// Exact size in bits of [`write_codes`]'s output.
pub(crate) fn codes_bits(codes: &[u8], sparse: bool, n: u64, prec: u32) -> u64 {
    let ws = WeightScale::new(n, prec);
    let mut bits = 0;
    let mut prev = 0i32;
    let mut run = 0u32;
    for &c in codes {
        if c == 0 {
            run += 1;
            continue;
        }
        if sparse {
            bits += gamma_bits(run);
        }
        let e = (c >> 3) as i32 - 1;
        bits += gamma_bits(zigzag_i32(e - prev)) + ws.mant_bits(e as u32) as u64;
        prev = e;
        run = 0;
    }
    bits
}

/// Writes weight codes. With `sparse`, absent symbols (code 0) are run-length coded; without,
/// every code must be present.
pub(crate) fn write_codes(bw: &mut BitWriter, codes: &[u8], sparse: bool, n: u64, prec: u32) {
    let ws = WeightScale::new(n, prec);
    let mut prev = 0i32;
    let mut run = 0u32;
    for &c in codes {
        if c == 0 {
            debug_assert!(sparse);
            run += 1;
            continue;
        }
        if sparse {
            bw.write_gamma(run);
        }
        let e = (c >> 3) as i32 - 1;
        bw.write_gamma(zigzag_i32(e - prev));
        bw.write((c & 7) as u32, ws.mant_bits(e as u32));
        prev = e;
        run = 0;
    }
}

/// Reads `present` codes spread over an alphabet of `alphabet` symbols (sparse) or exactly
/// `present` codes (dense, `alphabet == present`).
pub(crate) fn read_codes(
    br: &mut BitReader<'_>,
    present: usize,
    alphabet: usize,
    sparse: bool,
    n: u64,
    prec: u32,
    codes: &mut Vec<u8>,
) -> DecodeResult<()> {
    let ws = WeightScale::new(n, prec);
    codes.clear();
    let mut prev = 0i32;
    for _ in 0..present {
        if sparse {
            let run = br.read_gamma()? as usize;
            if codes.len() + run >= alphabet {
                return Err(Malformed::new("frequency table runs past its alphabet"));
            }
            codes.resize(codes.len() + run, 0);
        }
        let z = br.read_gamma()?;
        let e = prev + (((z >> 1) as i32) ^ -((z & 1) as i32));
        if !(0..=30).contains(&e) {
            return Err(Malformed::new(
                "frequency table holds an invalid weight exponent",
            ));
        }
        let mant = br.read(ws.mant_bits(e as u32));
        codes.push((((e as u32 + 1) << 3) | mant) as u8);
        prev = e;
    }
    if codes.len() > alphabet {
        return Err(Malformed::new("frequency table larger than its alphabet"));
    }
    codes.resize(alphabet, 0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_codes_follow_the_count_noise() {
        for (n, prec) in [(1u64 << 20, 12u32), (5000, 13), (100, 7)] {
            let ws = WeightScale::new(n, prec);
            let mut last = 0;
            for t in 1..40000u32 {
                let c = ws.code(t as f64);
                assert!(c != 0);
                let v = ws.value(c);
                // Never more than a factor of 1.5 off, and monotone.
                assert!(
                    (v as f64) <= t as f64 * 1.5 + 0.5 && v as f64 >= t as f64 / 1.5 - 0.5,
                    "{t} -> {v}"
                );
                assert!(v >= last, "{t}: {v} < {last}");
                last = v;
                let count = t as f64 * n as f64 / (1u64 << prec) as f64;
                if count >= 4096.0 {
                    assert!(
                        (v as f64 - t as f64).abs() <= t as f64 / 16.0 + 0.5,
                        "{t} -> {v} at count {count}"
                    );
                }
            }
        }
    }

    #[test]
    fn renormalize_hits_the_target_exactly() {
        let cases: Vec<Vec<u32>> = vec![
            vec![1],
            vec![5, 0, 7],
            vec![1; 4096],
            (1..300).collect(),
            vec![1_000_000, 1, 1, 1, 1],
            vec![1; 4095]
                .into_iter()
                .chain([u16::MAX as u32 * 8])
                .collect(),
            (0..1000).map(|i| (i * 7919) % 1000 + 1).collect(),
        ];
        for w in cases {
            for prec in [8u32, 12, 15] {
                let mut f = Vec::new();
                if w.iter().filter(|&&x| x > 0).count() as u64 > 1 << prec {
                    assert!(renormalize(&w, prec, &mut f).is_err());
                    continue;
                }
                renormalize(&w, prec, &mut f).unwrap();
                assert_eq!(f.iter().map(|&x| x as u64).sum::<u64>(), 1 << prec);
                for (a, b) in w.iter().zip(&f) {
                    assert_eq!(*a == 0, *b == 0);
                }
            }
        }
        assert!(renormalize(&[1, 2], 16, &mut Vec::new()).is_err());
    }

    #[test]
    fn codes_round_trip() {
        let (n, prec) = (70_000u64, 13u32);
        let counts = [0u32, 0, 5, 6, 70, 0, 10_000, 9_000, 1, 0, 0, 0, 30_000];
        let mut codes = Vec::new();
        codes_for_counts(&counts, n, prec, &mut codes);
        let mut bw = BitWriter::new();
        write_codes(&mut bw, &codes, true, n, prec);
        assert_eq!(bw.bit_len(), codes_bits(&codes, true, n, prec));
        let bytes = bw.finish();
        let mut br = BitReader::new(&bytes);
        let mut back = Vec::new();
        let present = codes.iter().filter(|&&c| c > 0).count();
        read_codes(&mut br, present, codes.len(), true, n, prec, &mut back).unwrap();
        assert_eq!(back, codes);
        let mut f = Vec::new();
        freqs_for_codes(&codes, n, prec, &mut f).unwrap();
        assert_eq!(f.iter().sum::<u32>(), 1 << prec);
    }

    #[test]
    fn prec_choice_fits_symbols() {
        assert_eq!(choose_prec(1 << 20, 10), 9);
        assert_eq!(choose_prec(1 << 20, 300), 14);
        assert_eq!(choose_prec(100, 3), 7);
        assert!(1u64 << choose_prec(10, 4096) >= 4096);
    }
}
