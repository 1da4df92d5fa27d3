//! Normalization: per-column statistics, and the offset/scale that map a column to about
//! `[-1, 1]`.
//!
//! The statistics (range of the finite values) serve twice: `rel` bounds resolve against the
//! range, and the normalization's offset is the column centre, which is what the plain
//! predictor predicts. A learned predictor works on normalized values too, so the normalization
//! is stored in the container header for the decoder.

use crate::element::Element;
use crate::simd::with_avx2;

/// Range statistics of one column, over its finite values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColumnStats {
    /// Smallest finite value (`+inf` if none).
    pub min: f64,
    /// Largest finite value (`-inf` if none).
    pub max: f64,
    /// Number of finite values seen.
    pub finite: u64,
    /// Number of NaN or infinite values seen.
    pub nonfinite: u64,
}

impl Default for ColumnStats {
    fn default() -> Self {
        ColumnStats {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            finite: 0,
            nonfinite: 0,
        }
    }
}

impl ColumnStats {
    /// Folds another set of statistics into this one.
    pub fn merge(&mut self, other: &ColumnStats) {
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.finite += other.finite;
        self.nonfinite += other.nonfinite;
    }

    /// Statistics of a slice of values: eight running minima and maxima (value `i` in lane
    /// `i % 8`), in AVX2 registers where the CPU has them, then merged.
    #[allow(unsafe_code)]
    pub fn of<T: Element>(values: &[T]) -> ColumnStats {
        let mut lanes = Lanes::<T>::new();
        let (blocks, rest) = values.split_at(values.len() / 8 * 8);
        // The whole blocks the vector path leaves to the loop below: none, or all of them.
        #[cfg(target_arch = "x86_64")]
        let blocks = if std::arch::is_x86_feature_detected!("avx2") {
            for run in blocks.chunks(Lanes::<T>::RUN) {
                let Lanes { lo, hi, bad, .. } = &mut lanes;
                let acc = (&mut lo[..], &mut hi[..], bad);
                match T::BYTES {
                    // SAFETY: the CPU supports AVX2, checked just above.
                    4 => unsafe { range_f32_avx2(bytemuck::cast_slice(run), acc) },
                    // SAFETY: as above.
                    _ => unsafe { range_f64_avx2(bytemuck::cast_slice(run), acc) },
                }
                lanes.end_run();
            }
            &[]
        } else {
            blocks
        };
        for run in blocks.chunks(Lanes::<T>::RUN) {
            lanes.add(run);
        }
        lanes.add(rest);
        lanes.finish(values.len())
    }
}

/// The running statistics of [`ColumnStats::of`]: eight minima and maxima in the values' own
/// type (its order is that of the `f64`s they widen to), and non-finite counts. A lane keeps
/// the first of equal values (of `-0.0` and `0.0`, the one it met first), as `f64::min` and
/// `f64::max` kept over `f64` lanes in versions before: the same range, zeros' signs
/// included, so the same header.
struct Lanes<T> {
    lo: [T; 8],
    hi: [T; 8],
    /// Non-finite values per lane, in this run.
    bad: [u32; 8],
    /// Non-finite values of the runs before.
    nonfinite: u64,
}

impl<T: Element> Lanes<T> {
    /// Values counted in 32-bit lanes before they are added up.
    const RUN: usize = 8 << 28;

    fn new() -> Self {
        Lanes {
            lo: [T::from_f64(f64::INFINITY); 8],
            hi: [T::from_f64(f64::NEG_INFINITY); 8],
            bad: [0; 8],
            nonfinite: 0,
        }
    }

    /// Adds up to [`RUN`](Self::RUN) values, value `i` into lane `i % 8` ([`fold`]).
    fn add(&mut self, values: &[T]) {
        for (i, &x) in values.iter().enumerate() {
            let k = i % 8;
            fold(x, (&mut self.lo[k], &mut self.hi[k], &mut self.bad[k]));
        }
        self.end_run();
    }

    /// Moves the run's counts into the total.
    fn end_run(&mut self) {
        self.nonfinite += self.bad.iter().map(|&b| b as u64).sum::<u64>();
        self.bad = [0; 8];
    }

    /// The statistics of the `n` values added.
    fn finish(self, n: usize) -> ColumnStats {
        ColumnStats {
            min: self
                .lo
                .iter()
                .fold(f64::INFINITY, |a, &b| a.min(b.to_f64())),
            max: self
                .hi
                .iter()
                .fold(f64::NEG_INFINITY, |a, &b| a.max(b.to_f64())),
            finite: n as u64 - self.nonfinite,
            nonfinite: self.nonfinite,
        }
    }
}

/// Eight lanes of `T` as the `U` they are.
#[cfg(target_arch = "x86_64")]
fn as_lanes<T: Element, U: bytemuck::Pod>(lanes: &mut [T]) -> &mut [U; 8] {
    bytemuck::cast_slice_mut::<T, U>(lanes)
        .try_into()
        .expect("eight lanes")
}

/// [`Lanes::add`] of whole blocks of eight `f32` (at most [`Lanes::RUN`] values) in one AVX2
/// register each: `MINPS(y, lo)` is `y < lo ? y : lo`, the same choice, NaN included.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(unsafe_code)]
fn range_f32_avx2<T: Element>(values: &[f32], (lo, hi, bad): (&mut [T], &mut [T], &mut [u32; 8])) {
    use std::arch::x86_64::*;
    let (lo_out, hi_out) = (as_lanes::<T, f32>(lo), as_lanes::<T, f32>(hi));
    let bad_out = bad;
    // SAFETY: loads and stores of eight `f32` or `u32` within `values` and the lanes.
    unsafe {
        let abs = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX));
        let inf = _mm256_set1_ps(f32::INFINITY);
        let nan = _mm256_set1_ps(f32::NAN);
        let ones = _mm256_set1_epi32(-1);
        let mut lo = _mm256_loadu_ps(lo_out.as_ptr());
        let mut hi = _mm256_loadu_ps(hi_out.as_ptr());
        let mut bad = _mm256_loadu_si256(bad_out.as_ptr().cast());
        for block in values.chunks_exact(8) {
            let x = _mm256_loadu_ps(block.as_ptr());
            let finite = _mm256_cmp_ps::<_CMP_LT_OQ>(_mm256_and_ps(x, abs), inf);
            let y = _mm256_blendv_ps(nan, x, finite);
            lo = _mm256_min_ps(y, lo);
            hi = _mm256_max_ps(y, hi);
            // A lane not finite is all ones: -1.
            bad = _mm256_sub_epi32(bad, _mm256_xor_si256(_mm256_castps_si256(finite), ones));
        }
        _mm256_storeu_ps(lo_out.as_mut_ptr(), lo);
        _mm256_storeu_ps(hi_out.as_mut_ptr(), hi);
        _mm256_storeu_si256(bad_out.as_mut_ptr().cast(), bad);
    }
}

/// [`range_f32_avx2`] for `f64`: lanes 0–3 and 4–7 in two registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(unsafe_code)]
fn range_f64_avx2<T: Element>(values: &[f64], (lo, hi, bad): (&mut [T], &mut [T], &mut [u32; 8])) {
    use std::arch::x86_64::*;
    let (lo_out, hi_out) = (as_lanes::<T, f64>(lo), as_lanes::<T, f64>(hi));
    let bad_out = bad;
    // SAFETY: loads and stores of four `f64` or eight `u32` within `values` and the lanes.
    unsafe {
        let abs = _mm256_castsi256_pd(_mm256_set1_epi64x(i64::MAX));
        let inf = _mm256_set1_pd(f64::INFINITY);
        let nan = _mm256_set1_pd(f64::NAN);
        let ones = _mm256_set1_epi32(-1);
        let mut lo = [
            _mm256_loadu_pd(lo_out.as_ptr()),
            _mm256_loadu_pd(lo_out.as_ptr().add(4)),
        ];
        let mut hi = [
            _mm256_loadu_pd(hi_out.as_ptr()),
            _mm256_loadu_pd(hi_out.as_ptr().add(4)),
        ];
        // Each lane's count in the low half of a 64-bit lane (the high half counts the same).
        let mut bad = [_mm256_setzero_si256(); 2];
        for block in values.chunks_exact(8) {
            for h in 0..2 {
                let x = _mm256_loadu_pd(block.as_ptr().add(4 * h));
                let finite = _mm256_cmp_pd::<_CMP_LT_OQ>(_mm256_and_pd(x, abs), inf);
                let y = _mm256_blendv_pd(nan, x, finite);
                lo[h] = _mm256_min_pd(y, lo[h]);
                hi[h] = _mm256_max_pd(y, hi[h]);
                bad[h] =
                    _mm256_sub_epi32(bad[h], _mm256_xor_si256(_mm256_castpd_si256(finite), ones));
            }
        }
        for h in 0..2 {
            _mm256_storeu_pd(lo_out.as_mut_ptr().add(4 * h), lo[h]);
            _mm256_storeu_pd(hi_out.as_mut_ptr().add(4 * h), hi[h]);
            let mut counts = [0u32; 8];
            _mm256_storeu_si256(counts.as_mut_ptr().cast(), bad[h]);
            for k in 0..4 {
                bad_out[4 * h + k] += counts[2 * k];
            }
        }
    }
}

/// Accumulates [`ColumnStats`] over row-major records.
#[derive(Debug, Clone)]
pub struct StatsAccumulator {
    /// Number of columns: the record length for tables, 1 for fields.
    columns: usize,
    stats: Vec<ColumnStats>,
}

with_avx2! {
    /// Each of `values`' records (as many values as `lo`) into its columns' minima, maxima and
    /// non-finite counts (at most [`RECORDS`] records: the counts are 32-bit).
    fn table_rows<T>(values: &[T], acc: (&mut [T], &mut [T], &mut [u32])) = table_rows_body;
}

/// Records a table's range pass counts in 32-bit lanes before it adds them up.
const RECORDS: usize = 1 << 28;

/// Each value into its column's [`fold`], branch-free so that the columns vectorize.
#[inline(always)]
fn table_rows_body<T: Element>(values: &[T], (lo, hi, bad): (&mut [T], &mut [T], &mut [u32])) {
    for row in values.chunks_exact(lo.len()) {
        for (((&x, l), h), b) in row.iter().zip(&mut *lo).zip(&mut *hi).zip(&mut *bad) {
            fold(x, (l, h, b));
        }
    }
}

/// One value into a running minimum, maximum and non-finite count, branch-free: a non-finite
/// value becomes NaN, which no comparison lets in, and of equal values the first is kept
/// (the rule of [`Lanes`], and of each column of a table).
#[inline(always)]
fn fold<T: Element>(x: T, (lo, hi, bad): (&mut T, &mut T, &mut u32)) {
    let finite = x.is_finite();
    let y = if finite { x } else { T::from_f64(f64::NAN) };
    *lo = if y < *lo { y } else { *lo };
    *hi = if y > *hi { y } else { *hi };
    *bad += !finite as u32;
}

impl StatsAccumulator {
    /// An accumulator for `columns` columns (tables) or 1 (fields: whole-array statistics).
    pub fn new(columns: usize) -> Self {
        StatsAccumulator {
            columns,
            stats: vec![ColumnStats::default(); columns.max(1)],
        }
    }

    /// Adds row-major values (whole records for tables).
    pub fn add<T: Element>(&mut self, values: &[T]) {
        if self.columns <= 1 {
            let s = ColumnStats::of(values);
            self.stats[0].merge(&s);
            return;
        }
        let c = self.columns;
        let mut lo = vec![T::from_f64(f64::INFINITY); c];
        let mut hi = vec![T::from_f64(f64::NEG_INFINITY); c];
        let mut bad = vec![0u32; c];
        let mut nonfinite = vec![0u64; c];
        for run in values.chunks(RECORDS * c) {
            table_rows(run, (&mut lo, &mut hi, &mut bad));
            for (n, b) in nonfinite.iter_mut().zip(&mut bad) {
                *n += *b as u64;
                *b = 0;
            }
        }
        let rows = (values.len() / c) as u64;
        for j in 0..c {
            self.stats[j].merge(&ColumnStats {
                min: lo[j].to_f64(),
                max: hi[j].to_f64(),
                finite: rows - nonfinite[j],
                nonfinite: nonfinite[j],
            });
        }
    }

    /// The statistics so far.
    pub fn finish(self) -> Vec<ColumnStats> {
        self.stats
    }

    /// The statistics of row-major `values` (whole records for tables) over `columns` columns,
    /// on up to `threads` threads (0: one per core) where they are many: runs of whole records,
    /// one per thread, merged. Minima, maxima and counts do not depend on the split.
    pub fn of<T: Element>(values: &[T], columns: usize, threads: usize) -> Vec<ColumnStats> {
        let width = columns.max(1);
        let threads = parallel_parts((values.len() * T::BYTES) as u64, threads);
        let run = (values.len() / width).div_ceil(threads) * width;
        if threads == 1 || run == 0 {
            let mut acc = StatsAccumulator::new(columns);
            acc.add(values);
            return acc.finish();
        }
        crate::threads::scope(|s| {
            let parts: Vec<_> = values
                .chunks(run)
                .map(|part| {
                    s.spawn(move || {
                        let mut acc = StatsAccumulator::new(columns);
                        acc.add(part);
                        acc.finish()
                    })
                })
                .collect();
            // `add` has no panicking path on whole records.
            let parts = parts
                .into_iter()
                .map(|p| p.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
            merge_parts(width, parts)
        })
    }
}

/// Fewest bytes of values a range pass gives a thread (a thread's start costs more than it
/// saves on fewer).
const PARALLEL_STATS: u64 = 2 << 20;
/// Most threads a range pass runs on.
const PARALLEL_STATS_THREADS: usize = 8;

/// How many threads a range pass over `bytes` bytes of values runs on, given `threads` (0:
/// every core): [`PARALLEL_STATS`] bytes each at least, at most [`PARALLEL_STATS_THREADS`].
pub(crate) fn parallel_parts(bytes: u64, threads: usize) -> usize {
    let most = (bytes / PARALLEL_STATS).min(PARALLEL_STATS_THREADS as u64) as usize;
    crate::compress::resolve_threads(threads).min(most).max(1)
}

/// The statistics of `width` columns over the whole, merged from those of its parts (in any
/// order: minima, maxima and counts do not depend on it).
pub(crate) fn merge_parts(
    width: usize,
    parts: impl IntoIterator<Item = Vec<ColumnStats>>,
) -> Vec<ColumnStats> {
    let mut all = vec![ColumnStats::default(); width];
    for part in parts {
        all.iter_mut().zip(&part).for_each(|(a, b)| a.merge(b));
    }
    all
}

/// Per-column affine normalization `z = (x − offset) / scale`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    /// The column centre, `(min + max) / 2`.
    pub offset: f64,
    /// Half the range (1 for constant or empty columns).
    pub scale: f64,
}

impl Normalization {
    /// The normalization of a column with these statistics. Robust to constant columns (scale 1)
    /// and columns without finite values (offset 0).
    pub fn from_stats(s: &ColumnStats) -> Self {
        if s.finite == 0 {
            return Normalization {
                offset: 0.0,
                scale: 1.0,
            };
        }
        // Halve before adding so that ±1e308 does not overflow.
        let offset = s.min / 2.0 + s.max / 2.0;
        let half = s.max / 2.0 - s.min / 2.0;
        let scale = if half > 0.0 && half.is_finite() {
            half
        } else {
            1.0
        };
        Normalization { offset, scale }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The range pass as it was up to format version 10 (eight `f64` lanes, `f64::min`).
    fn of_before<T: Element>(values: &[T]) -> ColumnStats {
        let mut lo = [f64::INFINITY; 8];
        let mut hi = [f64::NEG_INFINITY; 8];
        let mut bad = [0u64; 8];
        for (i, &v) in values.iter().enumerate() {
            let k = i % 8;
            let x = v.to_f64();
            let finite = x.is_finite();
            let y = if finite { x } else { f64::NAN };
            lo[k] = lo[k].min(y);
            hi[k] = hi[k].max(y);
            bad[k] += !finite as u64;
        }
        let nonfinite: u64 = bad.iter().sum();
        ColumnStats {
            min: lo.iter().fold(f64::INFINITY, |a, &b| a.min(b)),
            max: hi.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b)),
            finite: values.len() as u64 - nonfinite,
            nonfinite,
        }
    }

    /// [`ColumnStats::of`] without the vector path.
    fn lane_by_lane<T: Element>(values: &[T]) -> ColumnStats {
        let mut lanes = Lanes::new();
        lanes.add(values);
        lanes.finish(values.len())
    }

    #[test]
    fn the_range_pass_keeps_the_same_zeros_and_counts_as_before() {
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u32
        };
        for n in (0..70).chain([1000, 4097]) {
            for _ in 0..40 {
                let v: Vec<f32> = (0..n)
                    .map(|_| match next() % 8 {
                        0 => 0.0,
                        1 => -0.0,
                        2 => f32::NAN,
                        3 => f32::INFINITY,
                        4 => f32::NEG_INFINITY,
                        _ => (next() % 5) as f32 - 2.0,
                    })
                    .collect();
                let w: Vec<f64> = v.iter().map(|&x| x as f64).collect();
                for (new, old) in [
                    (ColumnStats::of(&v), of_before(&v)),
                    (lane_by_lane(&v), of_before(&v)),
                    (ColumnStats::of(&w), of_before(&w)),
                    (lane_by_lane(&w), of_before(&w)),
                ] {
                    assert_eq!(new.min.to_bits(), old.min.to_bits(), "{v:?}");
                    assert_eq!(new.max.to_bits(), old.max.to_bits(), "{v:?}");
                    assert_eq!((new.finite, new.nonfinite), (old.finite, old.nonfinite));
                }
                // The same values as a table of 3 columns: each column one running minimum
                // and maximum in `f64`, as before.
                let c = 3;
                let whole = &v[..v.len() / c * c];
                let mut acc = StatsAccumulator::new(c);
                acc.add(whole);
                for (j, new) in acc.finish().iter().enumerate() {
                    let column: Vec<f32> = whole.iter().skip(j).step_by(c).copied().collect();
                    let (mut lo, mut hi, mut bad) = (f64::INFINITY, f64::NEG_INFINITY, 0);
                    for &x in &column {
                        let x = x as f64;
                        let y = if x.is_finite() { x } else { f64::NAN };
                        (lo, hi) = (lo.min(y), hi.max(y));
                        bad += !x.is_finite() as u64;
                    }
                    assert_eq!(new.min.to_bits(), lo.to_bits(), "{column:?}");
                    assert_eq!(new.max.to_bits(), hi.to_bits(), "{column:?}");
                    assert_eq!(new.nonfinite, bad);
                }
            }
        }
    }

    #[test]
    fn statistics_on_threads_are_those_of_one_pass() {
        // Large enough for several threads (2 MiB each): a table of 5 columns with NaNs and
        // infinities here and there, and the same values as a field.
        let n = 5 * 600_001;
        let values: Vec<f32> = (0..n)
            .map(|i| match i % 7919 {
                0 => f32::NAN,
                1 => f32::INFINITY,
                2 => f32::NEG_INFINITY,
                _ => ((i as f32) * 0.37).sin() * (1 + i % 5) as f32,
            })
            .collect();
        for columns in [5, 0] {
            let mut acc = StatsAccumulator::new(columns);
            acc.add(&values);
            let one = acc.finish();
            for threads in [1, 2, 3, 8] {
                assert_eq!(
                    StatsAccumulator::of(&values, columns, threads),
                    one,
                    "{threads}"
                );
            }
        }
    }

    #[test]
    fn stats_skip_non_finite_values() {
        let mut acc = StatsAccumulator::new(2);
        acc.add(&[1.0f32, f32::NAN, -2.0, 5.0, f32::INFINITY, 3.0]);
        let s = acc.finish();
        assert_eq!(
            (s[0].min, s[0].max, s[0].finite, s[0].nonfinite),
            (-2.0, 1.0, 2, 1)
        );
        assert_eq!(
            (s[1].min, s[1].max, s[1].finite, s[1].nonfinite),
            (3.0, 5.0, 2, 1)
        );
    }

    #[test]
    fn normalization_is_robust() {
        let n = Normalization::from_stats(&ColumnStats {
            min: 4.0,
            max: 4.0,
            finite: 3,
            nonfinite: 0,
        });
        assert_eq!((n.offset, n.scale), (4.0, 1.0));
        let n = Normalization::from_stats(&ColumnStats {
            min: -f64::MAX,
            max: f64::MAX,
            finite: 2,
            nonfinite: 0,
        });
        assert_eq!(n.offset, 0.0);
        assert!(n.scale.is_finite());
        let n = Normalization::from_stats(&ColumnStats::default());
        assert_eq!((n.offset, n.scale), (0.0, 1.0));
    }
}
