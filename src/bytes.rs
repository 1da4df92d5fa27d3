//! Little-endian byte and bit I/O shared by the entropy coder and the container.
//!
//! Readers never panic on short or malformed input: every read is bounds-checked and reports
//! [`Malformed`], which the chunk and container layers turn into an error naming the chunk.

/// Decoding found bytes that cannot be what the encoder wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed(pub String);

impl Malformed {
    pub(crate) fn new(msg: impl Into<String>) -> Self {
        Malformed(msg.into())
    }
}

pub(crate) type DecodeResult<T> = Result<T, Malformed>;

/// Appends `v` as an unsigned LEB128 varint.
#[inline]
pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `v` zigzag-encoded as a varint.
#[inline]
pub(crate) fn put_ivarint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, zigzag64(v));
}

#[inline(always)]
pub(crate) fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline(always)]
pub(crate) fn unzigzag64(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Appends a length-prefixed byte section.
pub(crate) fn put_section(out: &mut Vec<u8>, bytes: &[u8]) {
    put_uvarint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A bounds-checked cursor over a byte slice.
#[derive(Debug, Clone)]
pub(crate) struct ByteReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> ByteReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        ByteReader { data, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn bytes(&mut self, n: usize) -> DecodeResult<&'a [u8]> {
        if n > self.remaining() {
            return Err(Malformed(format!(
                "needs {n} more bytes at offset {} but only {} remain",
                self.pos,
                self.remaining()
            )));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> DecodeResult<[u8; N]> {
        let s = self.bytes(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> DecodeResult<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u64(&mut self) -> DecodeResult<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn f64(&mut self) -> DecodeResult<f64> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    /// `count` little-endian `f32` values.
    pub(crate) fn f32s(&mut self, count: usize) -> DecodeResult<Vec<f32>> {
        let bytes = count
            .checked_mul(4)
            .ok_or_else(|| Malformed::new("f32 count overflows"))?;
        Ok(self
            .bytes(bytes)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    pub(crate) fn uvarint(&mut self) -> DecodeResult<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                if shift == 63 && b > 1 {
                    break;
                }
                return Ok(v);
            }
        }
        Err(Malformed::new("varint longer than 64 bits"))
    }

    /// A varint that must fit in `usize` and be at most `max`.
    pub(crate) fn uvarint_max(&mut self, max: u64, what: &str) -> DecodeResult<usize> {
        let v = self.uvarint()?;
        if v > max {
            return Err(Malformed(format!(
                "{what} is {v}, more than the possible {max}"
            )));
        }
        Ok(v as usize)
    }

    pub(crate) fn ivarint(&mut self) -> DecodeResult<i64> {
        Ok(unzigzag64(self.uvarint()?))
    }

    /// A length-prefixed section, as written by [`put_section`].
    pub(crate) fn section(&mut self) -> DecodeResult<&'a [u8]> {
        let n = self.uvarint_max(self.remaining() as u64, "section length")?;
        self.bytes(n)
    }
}

/// Writes bit fields least-significant bit first.
#[derive(Debug, Default)]
pub(crate) struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    fill: u32,
}

impl BitWriter {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A writer appending to `out` (cleared first), reusing its allocation.
    pub(crate) fn reusing(mut out: Vec<u8>) -> Self {
        out.clear();
        BitWriter {
            out,
            acc: 0,
            fill: 0,
        }
    }

    pub(crate) fn with_capacity(bytes: usize) -> Self {
        BitWriter {
            out: Vec::with_capacity(bytes),
            acc: 0,
            fill: 0,
        }
    }

    /// Writes the low `nbits` bits of `v` (`nbits` ≤ 32).
    #[inline(always)]
    pub(crate) fn write(&mut self, v: u32, nbits: u32) {
        debug_assert!(nbits <= 32);
        debug_assert!(nbits == 32 || v >> nbits == 0);
        self.acc |= (v as u64) << self.fill;
        self.fill += nbits;
        if self.fill >= 32 {
            self.out.extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.fill -= 32;
        }
    }

    /// Writes each `(v, nbits)` of `fields` as [`write`](Self::write) would, their widths
    /// summing to `total` bits: into room made for them beforehand, so the loop has no growth
    /// check and keeps the writer's state in registers (a hybrid stream's raw bits: a field a
    /// code, most of them empty on a field's streams).
    ///
    /// # Panics
    /// If the widths sum to more than `total` (to less, the bits are the same).
    #[inline(always)]
    pub(crate) fn write_each(&mut self, total: u64, fields: impl Iterator<Item = (u32, u32)>) {
        let mut pos = self.out.len();
        // Whole words of the pending bits and the fields'.
        let words = (u64::from(self.fill) + total) / 32;
        self.out.resize(pos + 4 * words as usize, 0);
        let buf = &mut self.out[..];
        let (mut acc, mut fill) = (self.acc, self.fill);
        for (v, nbits) in fields {
            debug_assert!(nbits <= 32 && (nbits == 32 || v >> nbits == 0));
            acc |= u64::from(v) << fill;
            fill += nbits;
            if fill >= 32 {
                buf[pos..pos + 4].copy_from_slice(&(acc as u32).to_le_bytes());
                pos += 4;
                acc >>= 32;
                fill -= 32;
            }
        }
        debug_assert_eq!(pos, buf.len());
        self.out.truncate(pos);
        (self.acc, self.fill) = (acc, fill);
    }

    /// Elias-gamma code of `v + 1`, for small non-negative integers.
    pub(crate) fn write_gamma(&mut self, v: u32) {
        let x = v as u64 + 1;
        // floor(log2 x) ≤ 32: n zero bits, a one, then the low n bits of x.
        let n = 63 - x.leading_zeros();
        self.write(0, n);
        self.write(1, 1);
        self.write((x & ((1u64 << n) - 1)) as u32, n);
    }

    /// Bits written so far.
    #[cfg(test)]
    pub(crate) fn bit_len(&self) -> u64 {
        self.out.len() as u64 * 8 + self.fill as u64
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        let bytes = self.fill.div_ceil(8) as usize;
        self.out.extend_from_slice(&self.acc.to_le_bytes()[..bytes]);
        self.out
    }
}

/// Reads bit fields written by [`BitWriter`]. Reading past the end yields zero bits and is
/// reported by [`BitReader::finish`].
#[derive(Debug)]
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    fill: u32,
    /// Bits moved into `acc` so far, padding zeros past the end included.
    loaded: u64,
}

/// The last bytes of a bit stream as a word (zeros past the end), and how many there were: a
/// function of its own, out of the reading loops, that leaves their reader's state in
/// registers (a call taking the reader would keep it in memory, a store and a load a read).
#[cold]
fn tail_word(rest: &[u8]) -> (u32, usize) {
    let mut w = 0u32;
    for (i, &b) in rest.iter().take(4).enumerate() {
        w |= (b as u32) << (8 * i);
    }
    (w, rest.len().min(4))
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        BitReader {
            data,
            pos: 0,
            acc: 0,
            fill: 0,
            loaded: 0,
        }
    }

    #[inline(always)]
    fn refill(&mut self) {
        let w = match self.data.get(self.pos..self.pos + 4) {
            Some(w) => {
                self.pos += 4;
                u32::from_le_bytes([w[0], w[1], w[2], w[3]])
            }
            None => {
                let (w, taken) = tail_word(&self.data[self.pos.min(self.data.len())..]);
                self.pos += taken;
                w
            }
        };
        self.acc |= (w as u64) << self.fill;
        self.fill += 32;
        self.loaded += 32;
    }

    /// Reads `nbits` bits (`nbits` ≤ 32).
    #[inline(always)]
    pub(crate) fn read(&mut self, nbits: u32) -> u32 {
        debug_assert!(nbits <= 32);
        if self.fill < nbits {
            self.refill();
        }
        let v = (self.acc & ((1u64 << nbits) - 1)) as u32;
        self.acc >>= nbits;
        self.fill -= nbits;
        v
    }

    pub(crate) fn read_gamma(&mut self) -> DecodeResult<u32> {
        let mut n = 0u32;
        while self.read(1) == 0 {
            n += 1;
            if n > 32 {
                return Err(Malformed::new("bad Elias-gamma code"));
            }
        }
        let x = (1u64 << n) | self.read(n) as u64;
        Ok((x - 1) as u32)
    }

    /// Fails if more bits were read than the input holds.
    pub(crate) fn finish(&self) -> DecodeResult<()> {
        let consumed_bits = self.loaded - self.fill as u64;
        if consumed_bits > self.data.len() as u64 * 8 {
            return Err(Malformed::new(
                "bit stream is shorter than its contents need",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        let vals = [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX];
        let mut buf = Vec::new();
        for &v in &vals {
            put_uvarint(&mut buf, v);
        }
        for &v in &[-1i64, 0, 1, i64::MIN, i64::MAX] {
            put_ivarint(&mut buf, v);
        }
        let mut r = ByteReader::new(&buf);
        for &v in &vals {
            assert_eq!(r.uvarint().unwrap(), v);
        }
        for &v in &[-1i64, 0, 1, i64::MIN, i64::MAX] {
            assert_eq!(r.ivarint().unwrap(), v);
        }
        assert!(r.is_empty());
        assert!(r.u8().is_err());
        // An over-long varint is rejected, not wrapped.
        assert!(ByteReader::new(&[0xff; 11]).uvarint().is_err());
    }

    #[test]
    fn zigzag_is_a_bijection_on_edges() {
        for v in [0i64, 1, -1, i64::MAX, i64::MIN, 12345, -12345] {
            assert_eq!(unzigzag64(zigzag64(v)), v);
        }
        assert_eq!(zigzag64(-1), 1);
        assert_eq!(zigzag64(1), 2);
    }

    #[test]
    fn bits_round_trip() {
        let mut w = BitWriter::new();
        let fields: Vec<(u32, u32)> = (0..1000u32)
            .map(|i| {
                (
                    i.wrapping_mul(2654435761) >> (i % 33).min(31),
                    32 - (i % 33).min(31),
                )
            })
            .collect();
        for &(v, n) in &fields {
            let v = if n == 32 { v } else { v & ((1 << n) - 1) };
            w.write(v, n);
        }
        for g in [0u32, 1, 2, 3, 100, 65535, u32::MAX - 1] {
            w.write_gamma(g);
        }
        let bytes = w.finish();
        let mut r = BitReader::new(&bytes);
        for &(v, n) in &fields {
            let v = if n == 32 { v } else { v & ((1 << n) - 1) };
            assert_eq!(r.read(n), v);
        }
        for g in [0u32, 1, 2, 3, 100, 65535, u32::MAX - 1] {
            assert_eq!(r.read_gamma().unwrap(), g);
        }
        r.finish().unwrap();
        let _ = r.read(32);
        let _ = r.read(32);
        assert!(r.finish().is_err());
    }

    /// `write_each` writes the bytes `write` does, after any pending bits and before any
    /// written after it, for fields of every width (0–32), told their total or more.
    #[test]
    fn fields_written_at_once_are_the_fields_written_one_by_one() {
        let mut seed = 5u32;
        let fields: Vec<(u32, u32)> = (0..3000u32)
            .map(|i| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let n = if i % 7 == 0 { 32 } else { seed >> 27 };
                (if n == 32 { seed } else { seed & ((1 << n) - 1) }, n)
            })
            .collect();
        for (pending, slack) in [0u32, 1, 7, 8, 13, 31]
            .into_iter()
            .zip([0u64, 0, 70, 0, 5, 0])
        {
            for len in [0usize, 1, 2, 5, 100, 3000] {
                let fields = &fields[..len];
                let total: u64 = fields.iter().map(|&(_, n)| u64::from(n)).sum();
                let (mut one, mut all) = (BitWriter::new(), BitWriter::new());
                for w in [&mut one, &mut all] {
                    w.write(0x5555_5555 & ((1u64 << pending) - 1) as u32, pending);
                }
                for &(v, n) in fields {
                    one.write(v, n);
                }
                all.write_each(total + slack, fields.iter().copied());
                for w in [&mut one, &mut all] {
                    w.write(0b101, 3);
                }
                assert_eq!(
                    one.finish(),
                    all.finish(),
                    "{pending} bits pending, {len} fields, {slack} more bits told"
                );
            }
        }
    }
}
