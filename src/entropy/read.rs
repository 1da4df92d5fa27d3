//! Reading a stream back: every mode of the [module docs](super), each size checked against
//! its limit before anything is allocated, so a forged stream is an error, never a panic.

use super::hybrid::{Hybrid, TokenEntry};
use super::table::{self, freqs_for_codes};
use super::{
    Bin, CodeCoder, MAX_BINS, MAX_DIRECT, MODE_BINNED, MODE_CONST, MODE_DIRECT, MODE_HYBRID,
    MODE_PACKED,
};
use crate::bytes::{BitReader, ByteReader, DecodeResult, Malformed};

/// A hybrid stream's symbols with raw bits are rare below one in `2^RARE_RAW_BITS` (by their
/// table's frequencies): then the others' codes are looked up, behind a branch that rarely
/// mispredicts ([`CodeCoder::decode_append`]).
const RARE_RAW_BITS: u32 = 5;

/// Steps over one stream without decoding it: its mode's header fields, then its sections
/// (every mode's bytes past its header are sections, which start with their length).
pub(crate) fn skip(r: &mut ByteReader<'_>) -> DecodeResult<()> {
    let sections = match r.u8()? {
        MODE_CONST => {
            r.ivarint()?;
            0
        }
        MODE_PACKED => {
            r.ivarint()?;
            r.u8()?;
            1
        }
        MODE_DIRECT => {
            r.u8()?;
            r.uvarint()?;
            r.ivarint()?;
            2
        }
        MODE_HYBRID => {
            r.u8()?;
            r.u8()?;
            r.ivarint()?;
            r.uvarint()?;
            r.uvarint()?;
            3
        }
        MODE_BINNED => {
            r.u8()?;
            r.uvarint()?;
            r.ivarint()?;
            3
        }
        other => return Err(Malformed(format!("unknown code stream mode {other}"))),
    };
    for _ in 0..sections {
        r.section()?;
    }
    Ok(())
}

impl CodeCoder {
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
        self.decode_append(r, n, out)
    }

    /// Decodes `n` codes from `r`, appended to `out` (one stream of a column coded in
    /// segments goes straight into the column's codes).
    pub(crate) fn decode_append(
        &mut self,
        r: &mut ByteReader<'_>,
        n: usize,
        out: &mut Vec<i32>,
    ) -> DecodeResult<()> {
        let start = out.len();
        out.resize(start + n, 0);
        self.decode_into(r, &mut out[start..])
    }

    /// Decodes `out.len()` codes from `r` into `out` (a context's stream into its place
    /// among the others, [`super::context`]).
    pub(crate) fn decode_into(
        &mut self,
        r: &mut ByteReader<'_>,
        out: &mut [i32],
    ) -> DecodeResult<()> {
        let n = out.len();
        let mode = r.u8()?;
        match mode {
            MODE_CONST => {
                let v = r.ivarint()?;
                let v =
                    i32::try_from(v).map_err(|_| Malformed::new("constant code out of range"))?;
                out.fill(v);
            }
            MODE_PACKED => {
                let min = r.ivarint()?;
                let width = r.u8()? as u32;
                if width > 32 {
                    return Err(Malformed::new("packed width above 32 bits"));
                }
                let mut br = BitReader::new(r.section()?);
                for o in out.iter_mut() {
                    *o = i32::try_from(min.saturating_add(br.read(width) as i64))
                        .map_err(|_| Malformed::new("packed code out of range"))?;
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
                for (o, &s) in out.iter_mut().zip(&self.symbols) {
                    *o = vals[s as usize];
                }
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
                // Decoded tokens always have a frequency, so they are below `alphabet`.
                // Where few symbols have raw bits (a field's streams, most of them: their codes
                // within the exact tokens), each token's code is looked up and only the others
                // read their raw bits, a branch that rarely goes the other way; where more do
                // (a table's wide columns), every symbol takes the same branch-free steps.
                let with_raw: u64 = self.freqs[..alphabet.min(self.freqs.len())]
                    .iter()
                    .zip(entries)
                    .filter(|&(_, &e)| Hybrid::raw_bits(e) > 0)
                    .map(|(&f, _)| u64::from(f))
                    .sum();
                let rare = with_raw << RARE_RAW_BITS < 1u64 << prec;
                self.vals.clear();
                if rare {
                    self.vals.extend(entries.iter().map(|&e| {
                        bias.wrapping_add(if layout.signed {
                            Hybrid::decode::<true>(e, 0)
                        } else {
                            Hybrid::decode::<false>(e, 0)
                        })
                    }));
                }
                // One loop per kind of layout and per way.
                fn map<const SIGNED: bool, const RARE: bool>(
                    out: &mut [i32],
                    symbols: &[u16],
                    (entries, vals): (&[TokenEntry], &[i32]),
                    raw: &mut BitReader<'_>,
                    bias: i32,
                ) {
                    // The reader as a local: its state in registers, not stored every read.
                    let mut bits = std::mem::replace(raw, BitReader::new(&[]));
                    for (o, &t) in out.iter_mut().zip(symbols) {
                        let e = entries[t as usize];
                        let nbits = Hybrid::raw_bits(e);
                        *o = if RARE && nbits == 0 {
                            vals[t as usize]
                        } else {
                            bias.wrapping_add(Hybrid::decode::<SIGNED>(e, bits.read(nbits)))
                        };
                    }
                    *raw = bits;
                }
                let tables = (entries, &self.vals[..]);
                let symbols = &self.symbols;
                match (layout.signed, rare) {
                    (true, true) => map::<true, true>(out, symbols, tables, &mut raw, bias),
                    (true, false) => map::<true, false>(out, symbols, tables, &mut raw, bias),
                    (false, true) => map::<false, true>(out, symbols, tables, &mut raw, bias),
                    (false, false) => map::<false, false>(out, symbols, tables, &mut raw, bias),
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
                for (o, &t) in out.iter_mut().zip(&self.symbols) {
                    let b = bins[t as usize];
                    *o = (b.lo + raw.read(b.w) as i64) as i32;
                }
                raw.finish()?;
            }
            other => return Err(Malformed(format!("unknown code stream mode {other}"))),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bytes::{BitWriter, put_ivarint, put_section, put_uvarint};
    use crate::entropy::tests::{broad, laplace};

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

    #[test]
    fn hybrid_streams_decode_alike_with_rare_and_common_raw_bits() {
        // Small codes with a share of large ones (raw bits) from none to half: the symbols
        // with raw bits rare (looked-up codes) and common (every symbol read alike).
        let mut seen = [false; 2];
        for (k, per_mille) in [0u64, 2, 10, 25, 40, 100, 500].into_iter().enumerate() {
            let mut seed = 9 + k as u64;
            let codes: Vec<i32> = laplace(20_000, 1.5, 3 + k as u64)
                .into_iter()
                .map(|c| {
                    let r = crate::entropy::tests::lcg(&mut seed);
                    if r % 1000 < per_mille {
                        (c + 1) * 5000 + (r >> 20) as i32 % 4000
                    } else {
                        c
                    }
                })
                .collect();
            let mut c = CodeCoder::new();
            let mut buf = Vec::new();
            c.encode(&codes, &mut buf);
            let mut out = Vec::new();
            c.decode(&mut ByteReader::new(&buf), codes.len(), &mut out)
                .unwrap();
            assert_eq!(out, codes, "{per_mille}‰ large");
            if buf[0] == MODE_HYBRID {
                // Whether this stream's raw-bit symbols were rare, as the decoder decides.
                let share = codes.iter().filter(|&&x| x.unsigned_abs() > 1000).count();
                seen[usize::from(share << RARE_RAW_BITS < codes.len())] = true;
            }
        }
        assert_eq!(seen, [true, true], "both ways taken by a hybrid stream");
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
}
