//! Bit-exact column coding, for columns whose bound is 0 (`lossless`, `abs:0`, or `rel` on a
//! constant column) and as a per-column fallback where quantization does not pay.
//!
//! A column's raw bit patterns go through one reversible *transform*, then one *coder*:
//!
//! | transform | id | word for value `i` |
//! |---|---|---|
//! | identity | 0 | `bits(x[i])` |
//! | delta along the column | 1 | `zigzag(ord(x[i]) − ord(x[i−1]))` |
//! | xor with the reference | 2 | `bits(x[i]) ^ bits(ref[i])` |
//! | delta from the reference | 3 | `zigzag(ord(x[i]) − ord(ref[i]))` |
//!
//! `ord` maps float bits to integers in value order; differences wrap at the element width.
//! The *reference* is the previous column of the same record for tables (the reconstructed
//! column, which the decoder has), and the value one row back (`x[i − row]`, `row` = last axis
//! length) for fields. Repeated values across neighbouring columns (systematic weights in an
//! ATLAS ntuple) cost almost nothing this way.
//!
//! | coder | id | streams |
//! |---|---|---|
//! | byte planes | 0 | one [`CodeCoder`] stream per byte of the word, low byte first |
//! | whole words | 1 | one [`CodeCoder`] stream of the words (f32 only; few distinct values) |
//!
//! The transform is chosen by the summed order-0 entropy of the byte planes, measured on the
//! chunk; the whole-word coder is tried when a sample shows few distinct words.
//!
//! From format version 5, f32 columns may instead be coded as one stream of integers
//! (transforms 4 to 11, from version 7 20 to 27, from version 8 12 to 15, 28 to 31, and
//! those plus 32 for long columns coded in segments, from version 10 96 to 99, [`ints`]):
//! value words less a prediction (the previous value or one a chosen lag before, the
//! reference, an earlier row that repeats, the learned model's prediction, a Lorenzo
//! prediction on a field's grid, or for a field of two stacked variables the second from the
//! first: an error plane from its science plane), coded by the entropy stage. The encoder
//! codes a column both ways and keeps the smaller.
//!
//! From format version 8, transform byte 64 ([`LATTICE`]) marks f32 values that are points
//! of an affine lattice per plane ([`lattice`]): the integer coder's transform byte follows,
//! then each plane's offset and step (f64, little-endian), then the rest of that integer
//! section, which codes the lattice integers `k` as the f32 values `2^23 + k`.

mod ints;
mod lattice;
mod streams;

use crate::bytes::{ByteReader, DecodeResult, Malformed, unzigzag64, zigzag64};
use crate::element::{Element, as_f32};
use crate::entropy::CodeCoder;
use crate::predict::Grid;

const IDENTITY: u8 = 0;
const DELTA_ALONG: u8 = 1;
const XOR_REF: u8 = 2;
const DELTA_REF: u8 = 3;

/// The values are the points of a lattice, coded as their integers ([`lattice`]): the
/// integer coder's transform byte, each plane's lattice, then the rest of its section.
const LATTICE: u8 = 64;

const PLANES: u8 = 0;
const WHOLE: u8 = 1;

/// What the xor/delta transforms refer to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reference<'a, T> {
    /// Nothing: only the identity and delta-along transforms apply.
    None,
    /// Another column of the same length (the previous column of a table), and each row's
    /// key: a hash of the bits of every column coded before this one (empty where the chunk
    /// keeps none), which names the rows that repeat an earlier one.
    Column(&'a [T], &'a [u64]),
    /// The same column `s` values back (a field's previous row); zero before the start.
    Stride(usize),
}

/// Scratch buffers for lossless coding.
#[derive(Debug, Default)]
pub(crate) struct LosslessScratch {
    codes: Vec<i32>,
    out_a: Vec<u8>,
    out_b: Vec<u8>,
    ints: ints::IntScratch,
    int_out: Vec<u8>,
    lattice: lattice::Lattice,
}

impl LosslessScratch {
    /// Borrows idle cores from `spare` for the segments of long columns' streams.
    pub(crate) fn lending(&mut self, spare: std::sync::Arc<crate::spare::Spare>) {
        self.ints.streams.lending(spare);
    }
}

#[inline(always)]
fn mask<T: Element>() -> u64 {
    if T::BYTES == 8 {
        u64::MAX
    } else {
        (1u64 << (8 * T::BYTES)) - 1
    }
}

#[inline(always)]
fn ord<T: Element>(bits: u64) -> u64 {
    let sign = 1u64 << (8 * T::BYTES - 1);
    if bits & sign != 0 {
        !bits & mask::<T>()
    } else {
        bits | sign
    }
}

#[inline(always)]
fn unord<T: Element>(o: u64) -> u64 {
    let sign = 1u64 << (8 * T::BYTES - 1);
    if o & sign != 0 {
        o & !sign
    } else {
        !o & mask::<T>()
    }
}

/// Zigzag of a difference taken at the element width.
#[inline(always)]
fn zz<T: Element>(d: u64) -> u64 {
    let w = 8 * T::BYTES as u32;
    let signed = ((d << (64 - w)) as i64) >> (64 - w);
    zigzag64(signed) & mask::<T>()
}

#[inline(always)]
fn unzz<T: Element>(z: u64) -> u64 {
    (unzigzag64(z) as u64) & mask::<T>()
}

/// The words of `col` under transform `t`, value by value (computed on the fly, so long
/// columns need no copy of them).
fn words<'a, T: Element>(
    t: u8,
    col: &'a [T],
    reference: Reference<'a, T>,
) -> impl Iterator<Item = u64> + 'a {
    let refbits = move |i: usize| match reference {
        Reference::None => 0,
        Reference::Column(r, _) => r[i].to_bits64(),
        Reference::Stride(k) => i.checked_sub(k).map_or(0, |j| col[j].to_bits64()),
    };
    let mut prev = ord::<T>(0);
    col.iter().enumerate().map(move |(i, v)| {
        let b = v.to_bits64();
        match t {
            IDENTITY => b,
            DELTA_ALONG => {
                let o = ord::<T>(b);
                let w = zz::<T>(o.wrapping_sub(prev));
                prev = o;
                w
            }
            XOR_REF => b ^ refbits(i),
            DELTA_REF => zz::<T>(ord::<T>(b).wrapping_sub(ord::<T>(refbits(i)))),
            _ => unreachable!("unknown transform"),
        }
    })
}

/// Summed order-0 entropy of the byte planes of `words`, in bits.
fn planes_entropy<T: Element>(words: impl Iterator<Item = u64>) -> f64 {
    let mut hist = vec![[0u32; 256]; T::BYTES];
    let mut n = 0usize;
    for w in words {
        n += 1;
        for (p, h) in hist.iter_mut().enumerate() {
            h[((w >> (8 * p)) & 0xff) as usize] += 1;
        }
    }
    let n = n as f64;
    let mut bits = 0.0;
    for h in &hist {
        for &c in h.iter().filter(|&&c| c > 0) {
            bits += c as f64 * (n / c as f64).log2();
        }
    }
    bits
}

/// Whether a sample of the `n` `words` has few distinct values.
fn few_distinct(n: usize, words: impl Iterator<Item = u64>) -> bool {
    let step = (n / 1024).max(1);
    let mut sample: Vec<u64> = words.step_by(step).collect();
    sample.sort_unstable();
    sample.dedup();
    sample.len() <= 256
}

/// Appends the words `words()` yields (each call from the start) with coder `coder_id`.
fn encode_words<T: Element, I: Iterator<Item = u64>>(
    coder_id: u8,
    words: impl Fn() -> I,
    codes: &mut Vec<i32>,
    coder: &mut CodeCoder,
    out: &mut Vec<u8>,
) {
    out.push(coder_id);
    match coder_id {
        PLANES => {
            for p in 0..T::BYTES {
                codes.clear();
                codes.extend(words().map(|w| ((w >> (8 * p)) & 0xff) as i32));
                coder.encode(codes, out);
            }
        }
        _ => {
            codes.clear();
            codes.extend(words().map(|w| w as u32 as i32));
            coder.encode(codes, out);
        }
    }
}

/// Whether a column section whose lossless coding is `coded` is predicted by the learned
/// model (the decoder computes the model's predictions only for those).
pub(crate) fn wants_model(coded: &[u8]) -> bool {
    match coded {
        [LATTICE, t, ..] => ints::predicts_by_model(*t),
        [t, ..] => ints::predicts_by_model(*t),
        [] => false,
    }
}

/// What the integer coder refers to: a table's previous column (f32) and the row keys.
fn int_reference<'a, T: Element>(reference: Reference<'a, T>) -> (Option<&'a [f32]>, &'a [u64]) {
    match reference {
        Reference::Column(c, keys) => (as_f32(c), keys),
        _ => (None, &[]),
    }
}

/// Appends the lossless coding of `col` to `out`: byte planes or (f32) one integer stream,
/// whichever is smaller. `grid` is a field's (rows and planes of the chunk), for the Lorenzo
/// predictions.
pub(crate) fn encode<T: Element>(
    col: &[T],
    reference: Reference<'_, T>,
    model: Option<&[f64]>,
    grid: Grid,
    coder: &mut CodeCoder,
    s: &mut LosslessScratch,
    out: &mut Vec<u8>,
) {
    let start = out.len();
    encode_planes(col, reference, coder, s, out);
    if let Some(values) = as_f32(col) {
        let (rf, keys) = int_reference(reference);
        let mut alt = std::mem::take(&mut s.int_out);
        alt.clear();
        ints::encode(values, rf, keys, model, grid, coder, &mut s.ints, &mut alt);
        if alt.len() < out.len() - start {
            out.truncate(start);
            out.extend_from_slice(&alt);
        }
        if s.lattice.detect(values, grid) {
            alt.clear();
            let mapped = s.lattice.map_model(model, values.len());
            let l = &s.lattice;
            let model = mapped.then_some(&l.model[..]);
            ints::encode(
                &l.carriers,
                rf,
                keys,
                model,
                grid,
                coder,
                &mut s.ints,
                &mut alt,
            );
            let mut params = Vec::new();
            l.write(&mut params);
            if alt.len() + 1 + params.len() < out.len() - start {
                out.truncate(start);
                out.extend_from_slice(&[LATTICE, alt[0]]);
                out.extend_from_slice(&params);
                out.extend_from_slice(&alt[1..]);
            }
        }
        s.int_out = alt;
    }
}

/// Appends the byte-plane coding of `col` (transforms 0 to 3) to `out`.
fn encode_planes<T: Element>(
    col: &[T],
    reference: Reference<'_, T>,
    coder: &mut CodeCoder,
    s: &mut LosslessScratch,
    out: &mut Vec<u8>,
) {
    let mut candidates = vec![IDENTITY, DELTA_ALONG];
    if !matches!(reference, Reference::None) {
        candidates.extend([XOR_REF, DELTA_REF]);
    }
    if let Reference::Column(r, _) = reference {
        debug_assert_eq!(r.len(), col.len());
    }
    let reference = match reference {
        Reference::Stride(k) => Reference::Stride(k.min(col.len())),
        r => r,
    };
    let mut best = (f64::INFINITY, IDENTITY);
    for &t in &candidates {
        let bits = planes_entropy::<T>(words(t, col, reference));
        if bits < best.0 {
            best = (bits, t);
        }
    }
    let t = best.1;
    let chosen = || words(t, col, reference);
    out.push(t);
    s.out_a.clear();
    encode_words::<T, _>(PLANES, chosen, &mut s.codes, coder, &mut s.out_a);
    if T::BYTES == 4 && few_distinct(col.len(), chosen()) {
        s.out_b.clear();
        encode_words::<T, _>(WHOLE, chosen, &mut s.codes, coder, &mut s.out_b);
        if s.out_b.len() < s.out_a.len() {
            std::mem::swap(&mut s.out_a, &mut s.out_b);
        }
    }
    out.extend_from_slice(&s.out_a);
}

/// The name of the transform a lossless section (read from `r`, at its start) was coded
/// with, for `baler info`: an integer transform (`lorenzo-2d`, `sigma`, ...; behind
/// `lattice+` where the values are a lattice's points) or a byte transform (`bytes`,
/// `bytes-delta`, `bytes-xor-ref`, `bytes-delta-ref`).
pub(crate) fn transform_name(r: &mut ByteReader<'_>) -> DecodeResult<&'static str> {
    let unknown = |t: u8| Malformed(format!("unknown lossless transform {t}"));
    let t = r.u8()?;
    Ok(match t {
        IDENTITY => "bytes",
        DELTA_ALONG => "bytes-delta",
        XOR_REF => "bytes-xor-ref",
        DELTA_REF => "bytes-delta-ref",
        LATTICE => {
            let inner = r.u8()?;
            ints::name(inner, true).ok_or_else(|| unknown(inner))?
        }
        _ => ints::name(t, false).ok_or_else(|| unknown(t))?,
    })
}

/// Decodes `out.len()` values written by [`encode`] (with the same `reference` and `grid`).
pub(crate) fn decode<T: Element>(
    r: &mut ByteReader<'_>,
    reference: Reference<'_, T>,
    model: Option<&[f64]>,
    grid: Grid,
    coder: &mut CodeCoder,
    s: &mut LosslessScratch,
    out: &mut [T],
) -> DecodeResult<()> {
    let n = out.len();
    let t = r.u8()?;
    if t == LATTICE {
        if T::DTYPE != crate::element::DType::F32 {
            return Err(Malformed::new(
                "lossless lattice on a column that is not f32",
            ));
        }
        let inner = r.u8()?;
        if inner <= DELTA_REF || inner == LATTICE {
            return Err(Malformed(format!(
                "lossless lattice over transform {inner}"
            )));
        }
        s.lattice.read(r, n, grid)?;
        let mapped = s.lattice.map_model(model, n);
        let model = mapped.then_some(&s.lattice.model[..]);
        let (rf, keys) = int_reference(reference);
        let out: &mut [f32] = bytemuck::cast_slice_mut(out);
        ints::decode(inner, r, rf, keys, model, grid, coder, &mut s.ints, out)?;
        s.lattice.restore(out);
        return Ok(());
    }
    if t > DELTA_REF {
        if T::DTYPE != crate::element::DType::F32 {
            return Err(Malformed(format!(
                "lossless transform {t} on a column that is not f32"
            )));
        }
        let (rf, keys) = int_reference(reference);
        return ints::decode(
            t,
            r,
            rf,
            keys,
            model,
            grid,
            coder,
            &mut s.ints,
            bytemuck::cast_slice_mut(out),
        );
    }
    if (t == XOR_REF || t == DELTA_REF) && matches!(reference, Reference::None) {
        return Err(Malformed::new(
            "lossless transform needs a reference column that does not exist",
        ));
    }
    if let Reference::Column(c, _) = reference
        && c.len() != n
    {
        return Err(Malformed::new(
            "lossless reference column has the wrong length",
        ));
    }
    // The words are gathered in `out` itself (as bit patterns), then undone in place.
    match r.u8()? {
        PLANES => {
            out.fill(T::from_bits64(0));
            for p in 0..T::BYTES {
                coder.decode(r, n, &mut s.codes)?;
                for (o, &c) in out.iter_mut().zip(&s.codes) {
                    if !(0..256).contains(&c) {
                        return Err(Malformed::new("byte plane code out of range"));
                    }
                    *o = T::from_bits64(o.to_bits64() | (c as u64) << (8 * p));
                }
            }
        }
        WHOLE if T::BYTES == 4 => {
            coder.decode(r, n, &mut s.codes)?;
            for (o, &c) in out.iter_mut().zip(&s.codes) {
                *o = T::from_bits64(c as u32 as u64);
            }
        }
        c => return Err(Malformed(format!("unknown lossless coder {c}"))),
    }
    match t {
        IDENTITY => {}
        DELTA_ALONG => {
            let mut prev = ord::<T>(0);
            for o in out.iter_mut() {
                prev = prev.wrapping_add(unzz::<T>(o.to_bits64())) & mask::<T>();
                *o = T::from_bits64(unord::<T>(prev));
            }
        }
        _ => {
            let delta = t == DELTA_REF;
            let undo = move |w: u64, r: u64| {
                if delta {
                    unord::<T>(ord::<T>(r).wrapping_add(unzz::<T>(w)) & mask::<T>())
                } else {
                    w ^ r
                }
            };
            match reference {
                Reference::Column(rf, _) => {
                    for (o, r) in out.iter_mut().zip(rf) {
                        *o = T::from_bits64(undo(o.to_bits64(), r.to_bits64()));
                    }
                }
                Reference::Stride(k) => {
                    for i in 0..n {
                        let r = if i >= k { out[i - k].to_bits64() } else { 0 };
                        out[i] = T::from_bits64(undo(out[i].to_bits64(), r));
                    }
                }
                Reference::None => unreachable!("checked"),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Element>(col: &[T], reference: Reference<'_, T>) -> usize {
        coded(col, reference, None, Grid::default()).len()
    }

    /// The coding of `col`, checked to decode bit for bit.
    fn coded<T: Element>(
        col: &[T],
        reference: Reference<'_, T>,
        model: Option<&[f64]>,
        grid: Grid,
    ) -> Vec<u8> {
        let mut coder = CodeCoder::new();
        let mut s = LosslessScratch::default();
        let mut buf = Vec::new();
        encode(col, reference, model, grid, &mut coder, &mut s, &mut buf);
        let mut out = vec![T::from_f64(0.0); col.len()];
        let mut r = ByteReader::new(&buf);
        decode(&mut r, reference, model, grid, &mut coder, &mut s, &mut out).unwrap();
        assert!(r.is_empty());
        assert_eq!(
            out.iter().map(|v| v.to_bits64()).collect::<Vec<_>>(),
            col.iter().map(|v| v.to_bits64()).collect::<Vec<_>>()
        );
        buf
    }

    /// A smooth field of `planes` planes of 32 × 48, each packed as GRIB packs one: its own
    /// offset (no multiple of the f32 spacing) and binary step, 16-bit integers.
    fn packed_field(planes: usize) -> Vec<f32> {
        let mut v = Vec::new();
        for p in 0..planes {
            let (r, s) = (
                200.0 + 7.123_456_789 * p as f64,
                2f64.powi(-9 - p as i32 % 3),
            );
            for y in 0..32 {
                for x in 0..48 {
                    let t = (x as f64 * 0.2 + p as f64).sin() * (y as f64 * 0.15).cos();
                    let k = ((t + 1.0) * 30_000.0 + ((x * 7 + y * 13) % 5) as f64).floor();
                    v.push((k * s + r) as f32);
                }
            }
        }
        v
    }

    /// The grid of [`packed_field`].
    const PACKED_GRID: Grid = Grid {
        row: 48,
        plane: 32 * 48,
    };

    #[test]
    fn packed_planes_are_coded_as_their_integers() {
        let col = packed_field(4);
        let grid = PACKED_GRID;
        let with = coded(&col, Reference::None, None, grid);
        assert_eq!(with[0], LATTICE);
        // The same values with one more bit of noise have no lattice, and cost far more.
        let noisy: Vec<f32> = col
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                f32::from_bits(x.to_bits() ^ ((i as u32).wrapping_mul(2_654_435_761) >> 31))
            })
            .collect();
        let without = coded(&noisy, Reference::None, None, grid);
        assert_ne!(without[0], LATTICE);
        assert!(
            with.len() * 5 < without.len() * 4,
            "{} {}",
            with.len(),
            without.len()
        );
        // A table column (one plane), with the learned model's predictions mapped.
        let table = &col[..32 * 48];
        let model: Vec<f64> = table.iter().map(|&x| x as f64 + 0.01).collect();
        let rf: Vec<f32> = table.iter().map(|&x| x * 0.5).collect();
        let keys = vec![0u64; table.len()];
        coded(
            table,
            Reference::Column(&rf, &keys),
            Some(&model),
            Grid::default(),
        );
    }

    #[test]
    fn forged_lattice_sections_are_refused() {
        let col = packed_field(2);
        let grid = PACKED_GRID;
        let good = coded(&col, Reference::None, None, grid);
        assert_eq!(good[0], LATTICE);
        let mut coder = CodeCoder::new();
        let mut s = LosslessScratch::default();
        let mut out = vec![0f32; col.len()];
        let mut bad_inner = good.clone();
        for inner in [0, DELTA_REF, LATTICE, 200] {
            bad_inner[1] = inner;
            let r = &mut ByteReader::new(&bad_inner);
            assert!(decode(r, Reference::None, None, grid, &mut coder, &mut s, &mut out).is_err());
        }
        for cut in [1, 2, 10, 33, good.len() - 1] {
            let r = &mut ByteReader::new(&good[..cut]);
            assert!(decode(r, Reference::None, None, grid, &mut coder, &mut s, &mut out).is_err());
        }
        // A zero step.
        let mut zero = good.clone();
        zero[10..18].copy_from_slice(&0.0f64.to_le_bytes());
        let r = &mut ByteReader::new(&zero);
        assert!(decode(r, Reference::None, None, grid, &mut coder, &mut s, &mut out).is_err());
        // Not on f64 columns.
        let mut out64 = vec![0f64; col.len()];
        let r = &mut ByteReader::new(&good);
        assert!(
            decode(
                r,
                Reference::None,
                None,
                grid,
                &mut coder,
                &mut s,
                &mut out64
            )
            .is_err()
        );
    }

    /// f32 values in increasing order, across every kind (infinities, subnormals, zeros).
    pub(super) const ORDERED: [f32; 10] = [
        f32::NEG_INFINITY,
        -1e30,
        -1.0,
        -1e-40,
        -0.0,
        0.0,
        1e-40,
        1.0,
        1e30,
        f32::INFINITY,
    ];

    #[test]
    fn ord_is_monotone_and_invertible() {
        let vals = ORDERED;
        let ords: Vec<u64> = vals
            .iter()
            .map(|v| ord::<f32>(v.to_bits() as u64))
            .collect();
        assert!(ords.windows(2).all(|w| w[0] < w[1]));
        for v in vals {
            assert_eq!(
                unord::<f32>(ord::<f32>(v.to_bits() as u64)),
                v.to_bits() as u64
            );
        }
        for v in [f64::NEG_INFINITY, -0.0, 0.0, 2.5, f64::MAX] {
            assert_eq!(unord::<f64>(ord::<f64>(v.to_bits())), v.to_bits());
        }
    }

    #[test]
    fn special_values_are_bit_exact() {
        let col: Vec<f32> = vec![
            f32::NAN,
            f32::from_bits(0x7fc0_1234),
            f32::from_bits(0xffff_ffff),
            -0.0,
            0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1e-45,
            -1e-45,
            f32::MAX,
            f32::MIN,
            1.5,
        ];
        round_trip(&col, Reference::None);
        let rf: Vec<f32> = col.iter().rev().copied().collect();
        round_trip(&col, Reference::Column(&rf, &[]));
        round_trip(&col, Reference::Stride(3));
        round_trip(&col, Reference::Stride(100));
        let col64: Vec<f64> = vec![
            f64::NAN,
            -0.0,
            5e-324,
            f64::MAX,
            f64::from_bits(0xfff8_0000_dead_beef),
            1.0,
        ];
        round_trip(&col64, Reference::None);
        round_trip(&col64, Reference::Stride(1));
    }

    #[test]
    fn smooth_and_repeated_columns_compress() {
        let smooth: Vec<f32> = (0..10_000).map(|i| (i as f32 * 0.001).sin()).collect();
        let size = round_trip(&smooth, Reference::None);
        assert!(size < 10_000 * 3, "{size}");
        let base: Vec<f32> = (0..10_000)
            .map(|i| 1.0 + (i as f32 * 0.37).sin() * 0.01)
            .collect();
        let same: Vec<f32> = base
            .iter()
            .enumerate()
            .map(|(i, &v)| if i % 10 == 0 { v * 1.001 } else { v })
            .collect();
        assert!(round_trip(&same, Reference::Column(&base, &[])) < 10_000 * 4 / 5);
        let cats: Vec<f32> = (0..10_000)
            .map(|i| [11.0, -11.0, 22.0, 211.0][i % 4])
            .collect();
        assert!(round_trip(&cats, Reference::None) < 10_000 / 3);
        let grid: Vec<f64> = (0..10_000)
            .map(|i| ((i / 100) as f64 * 0.5).floor())
            .collect();
        assert!(round_trip(&grid, Reference::Stride(100)) < 10_000 / 4);
    }
}
