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

    with_avx2! {
        /// Statistics of a slice of values.
        pub fn of<T>(values: &[T]) -> ColumnStats = ColumnStats::of_body;
    }

    /// [`of`](Self::of)'s loop, compiled for the baseline and for AVX2's wider vectors
    /// (minima, maxima and counts do not depend on the vectors' width).
    #[inline(always)]
    fn of_body<T: Element>(values: &[T]) -> Self {
        let mut s = ColumnStats::default();
        // Eight running minima and maxima, branch-free, so the loop vectorizes.
        let mut lo = [f64::INFINITY; 8];
        let mut hi = [f64::NEG_INFINITY; 8];
        let mut bad = [0u64; 8];
        let mut blocks = values.chunks_exact(8);
        for block in &mut blocks {
            for k in 0..8 {
                let x = block[k].to_f64();
                let finite = x.is_finite();
                let y = if finite { x } else { f64::NAN };
                lo[k] = lo[k].min(y);
                hi[k] = hi[k].max(y);
                bad[k] += !finite as u64;
            }
        }
        for (k, &v) in blocks.remainder().iter().enumerate() {
            let x = v.to_f64();
            let finite = x.is_finite();
            let y = if finite { x } else { f64::NAN };
            lo[k] = lo[k].min(y);
            hi[k] = hi[k].max(y);
            bad[k] += !finite as u64;
        }
        let lo = lo.iter().fold(f64::INFINITY, |a, &b| a.min(b));
        let hi = hi.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        let nonfinite: u64 = bad.iter().sum();
        s.min = lo;
        s.max = hi;
        s.nonfinite = nonfinite;
        s.finite = values.len() as u64 - nonfinite;
        s
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
    /// non-finite counts.
    fn table_rows<T>(values: &[T], acc: (&mut [f64], &mut [f64], &mut [u64])) = table_rows_body;
}

#[inline(always)]
fn table_rows_body<T: Element>(values: &[T], (lo, hi, bad): (&mut [f64], &mut [f64], &mut [u64])) {
    // Branch-free so it vectorizes: a non-finite value becomes NaN, which min/max ignore.
    for row in values.chunks_exact(lo.len()) {
        for (((&v, l), h), b) in row.iter().zip(&mut *lo).zip(&mut *hi).zip(&mut *bad) {
            let x = v.to_f64();
            let finite = x.is_finite();
            let y = if finite { x } else { f64::NAN };
            *l = l.min(y);
            *h = h.max(y);
            *b += !finite as u64;
        }
    }
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
        let mut lo = vec![f64::INFINITY; c];
        let mut hi = vec![f64::NEG_INFINITY; c];
        let mut bad = vec![0u64; c];
        table_rows(values, (&mut lo, &mut hi, &mut bad));
        let rows = (values.len() / c) as u64;
        for j in 0..c {
            self.stats[j].merge(&ColumnStats {
                min: lo[j],
                max: hi[j],
                finite: rows - bad[j],
                nonfinite: bad[j],
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
