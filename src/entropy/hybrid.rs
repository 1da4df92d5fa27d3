//! Hybrid integer tokens: a small alphabet for the entropy coder plus raw low bits.
//!
//! A difference `d = v − bias` is first mapped to an unsigned magnitude `u`:
//! * *zigzag* layouts: `u = zigzag(d)` (0, −1, 1, −2, ... → 0, 1, 2, 3, ...);
//! * *signed* layouts: `d = 0` is token 0; otherwise `u = |d| − 1`, and the sign becomes the
//!   token's lowest bit, so the two sides of an asymmetric distribution are modelled apart.
//!
//! With split exponent `k` and `msb` mantissa bits (`msb ≤ k`), a magnitude `u`:
//! * `u < 2^k` is its own token, with no extra bits;
//! * otherwise, with `n = floor(log2 u)`, the token is
//!   `2^k + ((n − k) << msb) + (the msb bits below the leading one)`, followed by the
//!   `n − msb` lowest bits of `u` sent raw.
//!
//! Values near the bias (where the mass is) are coded exactly by rANS; in the tails only the
//! magnitude and leading bits are modelled, where the density is nearly flat within a token's
//! range, so the raw bits cost little over the true entropy while the table stays small.

/// A token layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hybrid {
    pub k: u32,
    pub msb: u32,
    pub signed: bool,
}

/// `(k, msb)` pairs the encoder tries, each zigzag and signed.
pub(crate) const SPLITS: &[(u32, u32)] = &[
    (0, 0),
    (1, 1),
    (2, 1),
    (2, 2),
    (3, 1),
    (3, 2),
    (3, 3),
    (4, 1),
    (4, 2),
    (4, 3),
    (5, 1),
    (5, 2),
    (5, 3),
    (6, 1),
    (6, 2),
    (6, 3),
    (7, 2),
    (7, 3),
    (8, 2),
    (8, 3),
    (9, 3),
    (10, 3),
];

/// Decoding entry for one token, packed in a word: the high bits of the magnitude, the number
/// of raw bits that follow `<< 32`, and for signed layouts a negate flag `<< 40` and an add-one
/// flag `<< 41`. See [`Hybrid::decode`].
pub(crate) type TokenEntry = u64;

impl Hybrid {
    /// The byte that stores the layout: `k | msb << 4 | signed << 6`.
    pub(crate) fn to_byte(self) -> u8 {
        (self.k | self.msb << 4 | (self.signed as u32) << 6) as u8
    }

    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        let h = Hybrid {
            k: (b & 15) as u32,
            msb: ((b >> 4) & 3) as u32,
            signed: b & 0x40 != 0,
        };
        (b & 0x80 == 0 && h.k <= 12 && h.msb <= h.k).then_some(h)
    }

    /// Number of magnitude tokens needed for any `u32`.
    pub(crate) fn magnitude_alphabet(self) -> usize {
        (1usize << self.k) + ((32 - self.k as usize) << self.msb)
    }

    /// Number of tokens.
    pub(crate) fn alphabet(self) -> usize {
        if self.signed {
            1 + 2 * self.magnitude_alphabet()
        } else {
            self.magnitude_alphabet()
        }
    }

    /// Magnitude token, number of raw bits, raw bits.
    #[inline(always)]
    pub(crate) fn tokenize_u(self, u: u32) -> (u32, u32, u32) {
        if u < (1 << self.k) {
            return (u, 0, 0);
        }
        let n = 31 - u.leading_zeros();
        let nbits = n - self.msb;
        let m = (u >> nbits) & ((1 << self.msb) - 1);
        let token = (1 << self.k) + ((n - self.k) << self.msb) + m;
        (token, nbits, u & ((1u32 << nbits) - 1))
    }

    /// Magnitude token and raw-bit count for a magnitude known only by its exponent `n` and its
    /// top three bits below the leading one (`n ≥ k`, `msb ≤ 3`).
    #[inline(always)]
    pub(crate) fn token_of_top3(self, n: u32, top3: u32) -> (u32, u32) {
        (
            (1 << self.k) + ((n - self.k) << self.msb) + (top3 >> (3 - self.msb)),
            n - self.msb,
        )
    }

    /// Token, raw-bit count and raw bits for the difference `d`.
    #[inline(always)]
    pub(crate) fn encode(self, d: i32) -> (u32, u32, u32) {
        if !self.signed {
            return self.tokenize_u(((d << 1) ^ (d >> 31)) as u32);
        }
        if d == 0 {
            return (0, 0, 0);
        }
        let (t, nb, bits) = self.tokenize_u(d.unsigned_abs() - 1);
        (1 + 2 * t + (d < 0) as u32, nb, bits)
    }

    /// High part and raw-bit count of a magnitude token.
    pub(crate) fn untokenize_u(self, token: u32) -> (u32, u32) {
        if token < (1 << self.k) {
            return (token, 0);
        }
        let t = token - (1 << self.k);
        let n = self.k + (t >> self.msb);
        let m = t & ((1 << self.msb) - 1);
        let nbits = n - self.msb;
        (((1 << self.msb) | m) << nbits, nbits)
    }

    /// The decoding entry of every token below `alphabet`.
    pub(crate) fn entries(self, alphabet: usize, out: &mut Vec<TokenEntry>) {
        out.clear();
        for t in 0..alphabet as u32 {
            let (high, nbits, neg, add) = if !self.signed {
                let (high, nbits) = self.untokenize_u(t);
                (high, nbits, 0, 0)
            } else if t == 0 {
                (0, 0, 0, 0)
            } else {
                let (high, nbits) = self.untokenize_u((t - 1) >> 1);
                (high, nbits, (t - 1) & 1, 1)
            };
            out.push(high as u64 | (nbits as u64) << 32 | (neg as u64) << 40 | (add as u64) << 41);
        }
    }

    /// Raw bits a token's entry needs.
    #[inline(always)]
    pub(crate) fn raw_bits(e: TokenEntry) -> u32 {
        (e >> 32) as u32 & 0xff
    }

    /// The difference `d` for a token's entry and its raw bits, in a signed or zigzag layout.
    #[inline(always)]
    pub(crate) fn decode<const SIGNED: bool>(e: TokenEntry, raw: u32) -> i32 {
        let u = e as u32 | raw;
        if SIGNED {
            let u = u.wrapping_add((e >> 41) as u32);
            let neg = -(((e >> 40) & 1) as i32);
            ((u as i32) ^ neg).wrapping_sub(neg)
        } else {
            ((u >> 1) as i32) ^ -((u & 1) as i32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for &(k, msb) in SPLITS {
            for signed in [false, true] {
                let h = Hybrid { k, msb, signed };
                assert_eq!(Hybrid::from_byte(h.to_byte()), Some(h));
                let mut entries = Vec::new();
                h.entries(h.alphabet(), &mut entries);
                let mut ds: Vec<i32> = (-3000..3000).collect();
                ds.extend([
                    i32::MAX,
                    i32::MIN + 1,
                    1 << 30,
                    -(1 << 30),
                    123_456_789,
                    -987_654_321,
                ]);
                for d in ds {
                    let (t, nb, bits) = h.encode(d);
                    assert!((t as usize) < h.alphabet(), "{h:?} {d}");
                    let e = entries[t as usize];
                    assert_eq!(Hybrid::raw_bits(e), nb, "{h:?} {d}");
                    let back = if signed {
                        Hybrid::decode::<true>(e, bits)
                    } else {
                        Hybrid::decode::<false>(e, bits)
                    };
                    assert_eq!(back, d, "{h:?} {d}");
                }
            }
        }
    }
}
