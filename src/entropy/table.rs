//! Frequency tables: normalization to `2^P` and a compact serialized form.
//!
//! A table is sent as one *weight code* per symbol: a 7-bit "small float" (values 1..7 exact,
//! then 3 mantissa bits, so within ±3% of the normalized frequency it stands for). The decoder
//! turns the codes back into weights and both sides run the same integer [`renormalize`] to get
//! frequencies summing to exactly `2^P`. Quantizing weights this way costs under 0.001 bit per
//! coded symbol and makes tables 2–4× smaller than exact counts, which matters for the many
//! narrow columns of a HEP table.
//!
//! Serialized codes (in a bit stream): for each present symbol, in symbol order, the Elias-gamma
//! length of the run of absent symbols before it (sparse alphabets only), then the Elias-gamma of
//! the zigzagged difference from the previous present symbol's code (neighbouring symbols have
//! similar frequencies, so this is usually 1–5 bits).

use crate::bytes::{BitReader, BitWriter, DecodeResult, Malformed};

use super::rans::MAX_PREC;

/// Weight code for a normalized frequency `t` (> 0). Never 0: 0 marks an absent symbol.
pub(crate) fn weight_code(t: f64) -> u8 {
    if t < 8.0 {
        return t.round().clamp(1.0, 8.0) as u8;
    }
    let mut e = (t.log2().floor() as i32 - 3).max(0);
    let mut m = (t / f64::from(1u32 << e)).round() as u32;
    if m >= 16 {
        e += 1;
        m = 8;
    }
    (8 + 8 * e as u32 + (m - 8)).min(127) as u8
}

/// The weight a code stands for.
pub(crate) fn code_value(code: u8) -> u32 {
    if code < 8 {
        code as u32
    } else {
        let c = (code - 8) as u32;
        (8 + c % 8) << (c / 8)
    }
}

/// Smallest `b` with `2^b >= x`.
pub(crate) fn ceil_log2(x: u64) -> u32 {
    if x <= 1 {
        0
    } else {
        64 - (x - 1).leading_zeros()
    }
}

/// Table precision for `n` coded symbols over `present` distinct symbols: about 32 slots per
/// symbol (rare symbols then cost well under 0.01 bit per coded value), no more than the count
/// warrants, and small enough that the decoder's slot table stays in L1 for typical alphabets.
pub(crate) fn choose_prec(n: u64, present: usize) -> u32 {
    let need = ceil_log2(present as u64) + 1;
    (ceil_log2(present as u64) + 5)
        .min(ceil_log2(n))
        .clamp(need.max(5), MAX_PREC.max(need))
        .min(MAX_PREC)
}

/// Turns weights (0 = absent) into frequencies summing to exactly `2^prec`, every present symbol
/// getting at least 1. Deterministic integer arithmetic: encoder and decoder agree bit for bit.
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
    let mut rems: Vec<(u64, usize)> = Vec::new();
    let mut sum = 0u64;
    for (i, &w) in weights.iter().enumerate() {
        if w == 0 {
            freqs.push(0);
            continue;
        }
        let num = w as u64 * target;
        let f = (num / total).max(1);
        rems.push((num % total, i));
        freqs.push(f as u32);
        sum += f;
    }
    if sum < target {
        // Largest remainders first; ties to the lower symbol.
        rems.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut d = target - sum;
        while d > 0 {
            for &(_, i) in &rems {
                if d == 0 {
                    break;
                }
                freqs[i] += 1;
                d -= 1;
            }
        }
    } else if sum > target {
        let mut d = sum - target;
        let mut order: Vec<usize> = (0..freqs.len()).filter(|&i| freqs[i] > 1).collect();
        while d > 0 {
            order.retain(|&i| freqs[i] > 1);
            order.sort_unstable_by(|&a, &b| freqs[b].cmp(&freqs[a]).then(a.cmp(&b)));
            for &i in &order {
                if d == 0 {
                    break;
                }
                if freqs[i] > 1 {
                    freqs[i] -= 1;
                    d -= 1;
                }
            }
        }
    }
    Ok(())
}

/// Weight codes for symbol counts (0 = absent) at precision `prec`.
pub(crate) fn codes_for_counts(counts: &[u32], n: u64, prec: u32, codes: &mut Vec<u8>) {
    let scale = (1u64 << prec) as f64 / n as f64;
    codes.clear();
    codes.extend(counts.iter().map(|&c| {
        if c == 0 {
            0
        } else {
            weight_code(c as f64 * scale)
        }
    }));
}

/// Frequencies for weight codes.
pub(crate) fn freqs_for_codes(codes: &[u8], prec: u32, freqs: &mut Vec<u32>) -> DecodeResult<()> {
    let weights: Vec<u32> = codes
        .iter()
        .map(|&c| if c == 0 { 0 } else { code_value(c) })
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
pub(crate) fn codes_bits(codes: &[u8], sparse: bool) -> u64 {
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
        bits += gamma_bits(zigzag_i32(c as i32 - prev));
        prev = c as i32;
        run = 0;
    }
    bits
}

/// Writes weight codes. With `sparse`, absent symbols (code 0) are run-length coded; without,
/// every code must be present.
pub(crate) fn write_codes(bw: &mut BitWriter, codes: &[u8], sparse: bool) {
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
        bw.write_gamma(zigzag_i32(c as i32 - prev));
        prev = c as i32;
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
    codes: &mut Vec<u8>,
) -> DecodeResult<()> {
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
        let d = ((z >> 1) as i32) ^ -((z & 1) as i32);
        let c = prev + d;
        if !(1..=127).contains(&c) {
            return Err(Malformed::new(
                "frequency table holds an invalid weight code",
            ));
        }
        codes.push(c as u8);
        prev = c;
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
    fn weight_codes_are_close_and_monotone() {
        let mut last = 0;
        for t in 1..40000u32 {
            let c = weight_code(t as f64);
            let v = code_value(c);
            assert!(
                (v as f64 - t as f64).abs() <= t as f64 / 16.0 + 0.5,
                "{t} -> {v}"
            );
            assert!(v >= last);
            last = v;
        }
        assert_eq!(weight_code(0.001), 1);
        assert!(weight_code(1e9) <= 127);
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
        ];
        for w in cases {
            for prec in [12u32, 15] {
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
    }

    #[test]
    fn codes_round_trip() {
        let codes: Vec<u8> = vec![0, 0, 5, 6, 7, 0, 100, 99, 1, 0, 0, 0, 127];
        let mut bw = BitWriter::new();
        write_codes(&mut bw, &codes, true);
        assert_eq!(bw.bit_len(), codes_bits(&codes, true));
        let bytes = bw.finish();
        let mut br = BitReader::new(&bytes);
        let mut back = Vec::new();
        let present = codes.iter().filter(|&&c| c > 0).count();
        read_codes(&mut br, present, codes.len(), true, &mut back).unwrap();
        assert_eq!(back, codes);
    }

    #[test]
    fn prec_choice_fits_symbols() {
        assert_eq!(choose_prec(1 << 20, 10), 9);
        assert_eq!(choose_prec(1 << 20, 300), 14);
        assert_eq!(choose_prec(100, 3), 7);
        assert!(1u64 << choose_prec(10, 4096) >= 4096);
    }
}
