//! A table chunk's values between records (row-major, as read and written) and columns
//! (column-major, as coded): tiles of 8 × 8 four-byte values (4 × 4 eight-byte ones) moved
//! through vector registers where the CPU has AVX2, the rest value by value. Values are moved,
//! never computed on: every bit comes through, NaN payloads included.

use crate::element::Element;

/// Copies row-major `data` (`width` values per row) into column-major `out`.
pub(crate) fn rows_to_columns<T: Element>(data: &[T], width: usize, out: &mut [T]) {
    let rows = data.len() / width.max(1);
    transpose(data, (rows, width), out);
}

/// Copies column-major `cols` (`width` columns) back to row-major `out`.
pub(crate) fn columns_to_rows<T: Element>(cols: &[T], width: usize, out: &mut [T]) {
    let rows = cols.len() / width.max(1);
    transpose(cols, (width, rows), out);
}

/// Writes the `n × m` matrix `src` (element `(i, k)` at `src[i·m + k]`) transposed into `dst`
/// (element `(k, i)` at `dst[k·n + i]`).
#[allow(unsafe_code)]
fn transpose<T: Element>(src: &[T], (n, m): (usize, usize), dst: &mut [T]) {
    let (src, dst) = (&src[..n * m], &mut dst[..n * m]);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        match T::BYTES {
            4 => {
                let (s, d) = (bytemuck::cast_slice(src), bytemuck::cast_slice_mut(dst));
                // SAFETY: the CPU supports AVX2, checked just above.
                return unsafe { tiles_8x8(s, (n, m), d) };
            }
            8 => {
                let (s, d) = (bytemuck::cast_slice(src), bytemuck::cast_slice_mut(dst));
                // SAFETY: the CPU supports AVX2, checked just above.
                return unsafe { tiles_4x4(s, (n, m), d) };
            }
            _ => {}
        }
    }
    part(src, (n, m), dst, (0..n, 0..m));
}

/// The elements `(i, k)` of `rows × cols` value by value, in blocks that stay in L1.
#[inline(always)]
fn part<T: Copy>(
    src: &[T],
    (n, m): (usize, usize),
    dst: &mut [T],
    (rows, cols): (std::ops::Range<usize>, std::ops::Range<usize>),
) {
    const BLOCK: usize = 64;
    for i0 in rows.clone().step_by(BLOCK) {
        let i1 = (i0 + BLOCK).min(rows.end);
        for k in cols.clone() {
            for i in i0..i1 {
                dst[k * n + i] = src[i * m + k];
            }
        }
    }
}

/// [`transpose`] in tiles of `L × L` (`tile`: `L` rows from `src`, row `r` at `src + r·a`,
/// into `dst` transposed, row `c` at `dst + c·b`), the edges value by value; the tiles in the
/// order that reads or writes the longer side of the matrix in one pass.
#[cfg(target_arch = "x86_64")]
macro_rules! tiles {
    ($name:ident, $u:ty, $l:expr, $tile:ident) => {
        #[target_feature(enable = "avx2")]
        #[allow(unsafe_code)]
        fn $name(src: &[$u], (n, m): (usize, usize), dst: &mut [$u]) {
            const L: usize = $l;
            let (n8, m8) = (n - n % L, m - m % L);
            let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
            // SAFETY (each tile): rows i..i+L <= n and columns k..k+L <= m of `src` (n·m
            // elements) are read, and rows k..k+L <= m, columns i..i+L <= n of `dst` (as long)
            // written.
            let at =
                |i: usize, k: usize| unsafe { $tile(s.add(i * m + k), m, d.add(k * n + i), n) };
            if n >= m {
                for i in (0..n8).step_by(L) {
                    for k in (0..m8).step_by(L) {
                        at(i, k);
                    }
                }
            } else {
                for k in (0..m8).step_by(L) {
                    for i in (0..n8).step_by(L) {
                        at(i, k);
                    }
                }
            }
            part(src, (n, m), dst, (0..n, m8..m));
            part(src, (n, m), dst, (n8..n, 0..m8));
        }
    };
}
#[cfg(target_arch = "x86_64")]
tiles!(tiles_8x8, u32, 8, tile_8x8);
#[cfg(target_arch = "x86_64")]
tiles!(tiles_4x4, u64, 4, tile_4x4);

/// A tile of 8 × 8 four-byte values ([`tiles!`]): unpacks, shuffles and lane swaps.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(unsafe_code)]
unsafe fn tile_8x8(src: *const u32, a: usize, dst: *mut u32, b: usize) {
    use std::arch::x86_64::*;
    // SAFETY: the caller's: eight rows of eight values at `src` (stride `a`), and at `dst`
    // (stride `b`).
    unsafe {
        let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(src.add(i * a).cast()));
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        let o = [
            _mm256_permute2f128_ps::<0x20>(s0, s4),
            _mm256_permute2f128_ps::<0x20>(s1, s5),
            _mm256_permute2f128_ps::<0x20>(s2, s6),
            _mm256_permute2f128_ps::<0x20>(s3, s7),
            _mm256_permute2f128_ps::<0x31>(s0, s4),
            _mm256_permute2f128_ps::<0x31>(s1, s5),
            _mm256_permute2f128_ps::<0x31>(s2, s6),
            _mm256_permute2f128_ps::<0x31>(s3, s7),
        ];
        for (c, o) in o.into_iter().enumerate() {
            _mm256_storeu_ps(dst.add(c * b).cast(), o);
        }
    }
}

/// A tile of 4 × 4 eight-byte values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(unsafe_code)]
unsafe fn tile_4x4(src: *const u64, a: usize, dst: *mut u64, b: usize) {
    use std::arch::x86_64::*;
    // SAFETY: the caller's: four rows of four values at `src` (stride `a`), and at `dst`
    // (stride `b`).
    unsafe {
        let r: [__m256d; 4] = std::array::from_fn(|i| _mm256_loadu_pd(src.add(i * a).cast()));
        let t0 = _mm256_unpacklo_pd(r[0], r[1]);
        let t1 = _mm256_unpackhi_pd(r[0], r[1]);
        let t2 = _mm256_unpacklo_pd(r[2], r[3]);
        let t3 = _mm256_unpackhi_pd(r[2], r[3]);
        let o = [
            _mm256_permute2f128_pd::<0x20>(t0, t2),
            _mm256_permute2f128_pd::<0x20>(t1, t3),
            _mm256_permute2f128_pd::<0x31>(t0, t2),
            _mm256_permute2f128_pd::<0x31>(t1, t3),
        ];
        for (c, o) in o.into_iter().enumerate() {
            _mm256_storeu_pd(dst.add(c * b).cast(), o);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shape from 0 to 20 columns (and a few wide ones) and 0 to 40 rows, both ways,
    /// against the definition, for four- and eight-byte values whose bits are all distinct
    /// (NaN payloads among them).
    fn check<T: Element>(value: impl Fn(usize) -> T) {
        let widths = (1..=20).chain([24, 33, 141]);
        for width in widths {
            for rows in (0..=40).chain([999]) {
                let data: Vec<T> = (0..rows * width).map(&value).collect();
                let mut cols = vec![value(usize::MAX >> 1); data.len()];
                rows_to_columns(&data, width, &mut cols);
                for r in 0..rows {
                    for j in 0..width {
                        let (a, b) = (cols[j * rows + r], data[r * width + j]);
                        assert!(bytemuck::bytes_of(&a) == bytemuck::bytes_of(&b));
                    }
                }
                let mut back = vec![value(usize::MAX >> 1); data.len()];
                columns_to_rows(&cols, width, &mut back);
                assert!(
                    bytemuck::cast_slice::<T, u8>(&back) == bytemuck::cast_slice::<T, u8>(&data),
                    "{width} columns, {rows} rows"
                );
            }
        }
    }

    #[test]
    fn transposes_move_every_value_to_its_place_both_ways() {
        check(|i| f32::from_bits(0x7fc0_0000 | i as u32));
        check(|i| f64::from_bits(0x7ff8_0000_0000_0000 | i as u64));
    }
}
