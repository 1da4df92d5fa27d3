//! Hybrid integer tokens: a small alphabet for the entropy coder plus raw low bits.
//!
//! With split exponent `k` and `msb` mantissa bits (`msb ≤ k`), an unsigned value `u`:
//! * `u < 2^k` is its own token, with no extra bits;
//! * otherwise, with `n = floor(log2 u)`, the token is
//!   `2^k + ((n − k) << msb) + (the msb bits below the leading one)`, followed by the
//!   `n − msb` lowest bits of `u` sent raw.
//!
//! Values near zero (where the probability mass is) are coded exactly by rANS; in the tails only
//! the magnitude and leading bits are modelled, where the density is nearly flat within a token's
//! range, so the raw bits cost little over the true entropy while the table stays small.

/// A token layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hybrid {
    pub k: u32,
    pub msb: u32,
}

impl Hybrid {
    /// The layouts the encoder tries.
    pub(crate) const CANDIDATES: &'static [Hybrid] = &[
        Hybrid { k: 0, msb: 0 },
        Hybrid { k: 1, msb: 1 },
        Hybrid { k: 2, msb: 1 },
        Hybrid { k: 2, msb: 2 },
        Hybrid { k: 3, msb: 1 },
        Hybrid { k: 3, msb: 2 },
        Hybrid { k: 3, msb: 3 },
        Hybrid { k: 4, msb: 1 },
        Hybrid { k: 4, msb: 2 },
        Hybrid { k: 4, msb: 3 },
        Hybrid { k: 5, msb: 1 },
        Hybrid { k: 5, msb: 2 },
        Hybrid { k: 5, msb: 3 },
        Hybrid { k: 6, msb: 1 },
        Hybrid { k: 6, msb: 2 },
        Hybrid { k: 6, msb: 3 },
        Hybrid { k: 7, msb: 2 },
        Hybrid { k: 7, msb: 3 },
        Hybrid { k: 8, msb: 2 },
        Hybrid { k: 8, msb: 3 },
        Hybrid { k: 9, msb: 3 },
        Hybrid { k: 10, msb: 3 },
    ];

    pub(crate) fn is_valid(self) -> bool {
        self.k <= 12 && self.msb <= self.k && self.msb <= 4
    }

    /// Number of tokens needed for any `u32`.
    pub(crate) fn alphabet(self) -> usize {
        (1usize << self.k) + ((32 - self.k as usize) << self.msb)
    }

    /// Token, number of raw bits, raw bits.
    #[inline(always)]
    pub(crate) fn tokenize(self, u: u32) -> (u32, u32, u32) {
        if u < (1 << self.k) {
            return (u, 0, 0);
        }
        let n = 31 - u.leading_zeros();
        let nbits = n - self.msb;
        let m = (u >> nbits) & ((1 << self.msb) - 1);
        let token = (1 << self.k) + ((n - self.k) << self.msb) + m;
        (token, nbits, u & ((1u32 << nbits) - 1))
    }

    /// Token and number of raw bits, for cost estimates.
    #[inline(always)]
    pub(crate) fn token_of(self, u: u32) -> (u32, u32) {
        let (t, nb, _) = self.tokenize(u);
        (t, nb)
    }

    /// Splits a token into the high part of the value and the number of raw bits that follow.
    #[inline(always)]
    pub(crate) fn untokenize(self, token: u32) -> (u32, u32) {
        if token < (1 << self.k) {
            return (token, 0);
        }
        let t = token - (1 << self.k);
        let n = self.k + (t >> self.msb);
        let m = t & ((1 << self.msb) - 1);
        let nbits = n - self.msb;
        (((1 << self.msb) | m) << nbits, nbits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for &h in Hybrid::CANDIDATES {
            assert!(h.is_valid());
            let mut vals: Vec<u32> = (0..5000).collect();
            vals.extend([u32::MAX, u32::MAX - 1, 1 << 31, (1 << 31) - 1, 123_456_789]);
            for u in vals {
                let (t, nb, bits) = h.tokenize(u);
                assert!((t as usize) < h.alphabet(), "{h:?} {u}");
                let (high, nb2) = h.untokenize(t);
                assert_eq!(nb, nb2);
                assert_eq!(high | bits, u, "{h:?} {u}");
            }
        }
    }
}
