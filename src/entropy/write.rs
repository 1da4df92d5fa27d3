//! Writing a stream in the mode [`CodeCoder::choose`] picked: the mode byte, its table, its
//! rANS and raw-bits sections (layouts in the [module docs](super)).

use super::table::{self, codes_for_counts, freqs_for_codes};
use super::{
    Choice, CodeCoder, DENSE_SPAN, MODE_BINNED, MODE_CONST, MODE_DIRECT, MODE_HYBRID, MODE_PACKED,
};
use crate::bytes::{BitWriter, put_ivarint, put_section, put_uvarint};

impl CodeCoder {
    pub(super) fn write(&mut self, codes: &[i32], min: i32, choice: Choice, out: &mut Vec<u8>) {
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
                // The raw bits of every code, by the distinct values' counts.
                let total = (self.vals.iter().zip(&self.counts))
                    .map(|(&v, &c)| u64::from(layout.encode(v.wrapping_sub(bias)).1) * u64::from(c))
                    .sum();
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
                    let at = |c: i32| (c as i64 - min as i64) as usize;
                    if total == 0 {
                        // Every code within the exact tokens (most of a field's streams).
                        for (s, &c) in self.symbols.iter_mut().zip(codes) {
                            *s = lut[at(c)] as u16;
                        }
                    } else {
                        let fields = self.symbols.iter_mut().zip(codes).map(|(s, &c)| {
                            let e = lut[at(c)];
                            *s = e as u16;
                            ((e >> 32) as u32, (e >> 16) as u32 & 0xff)
                        });
                        raw.write_each(total, fields);
                    }
                } else {
                    let fields = self.symbols.iter_mut().zip(codes).map(|(s, &c)| {
                        let (t, nb, bits) = layout.encode(c.wrapping_sub(bias));
                        *s = t as u16;
                        (bits, nb)
                    });
                    raw.write_each(total, fields);
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
        // A code's bin by a coarse table over the span (at most 2^16 cells, and no more
        // than about the codes: a short stream does not pay for a long table; each cell
        // points at the first bin ending inside or after it), then a step or two forward:
        // the bins cover every code of the stream, sorted.
        let bins = &self.bins;
        let min = bins[0].lo;
        let span = (*self.vals.last().expect("a non-empty stream") as i64 - min) as u64;
        let cells = (usize::BITS - codes.len().leading_zeros()).clamp(4, 16);
        let shift = (64 - span.leading_zeros()).saturating_sub(cells);
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
            let cell = ((c - min) as u64 >> shift) as usize;
            let mut t = first[cell] as usize;
            if t + 1 < bins.len() && bins[t + 1].lo <= c {
                // Several bins start in this cell (a stream over a wide span, in many bins):
                // the last bin starting at or below `c`, by bisection up to the next cell's.
                let end = first
                    .get(cell + 1)
                    .map_or(bins.len(), |&e| (e as usize + 1).min(bins.len()));
                t += bins[t + 1..end].partition_point(|b| b.lo <= c);
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
}
