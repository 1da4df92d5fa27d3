//! Choosing what each column is predicted from: the order the columns are coded in, and each
//! column's inputs (earlier columns and [derived features](super::features) of them).
//!
//! On a subsample of the training records (with reconstruction-sized noise on the inputs, as
//! the decoder will see them):
//!
//! 1. every candidate input (each column, and each formula over one to three columns) is
//!    correlated with every column; each column keeps its best candidates;
//! 2. integer-valued columns with few distinct values (particle ids, charges, counts) are
//!    coded first, exactly as they are: other columns are often functions of them;
//! 3. the order of the other columns is improved by local search (moving one column at a
//!    time) on an estimate of the total cost: per column, the entropy of a Gaussian residual
//!    left by its best candidate among the columns coded before it, in steps of its bound;
//! 4. each column's inputs are chosen greedily (orthogonal matching pursuit) among its
//!    candidates that read only earlier columns, then topped up with the earlier columns it
//!    correlates with most (the network's nonlinear part works on those).

use super::features::{Feature, Op};
use super::normalize_input;

/// Records of the training sample the selection looks at.
const SUBSAMPLE: usize = 4000;
/// Best candidates kept per column.
const TOP: usize = 48;
/// Records of the subsample that candidates are screened on first ([`screen_candidates`]):
/// 500 gave the same files as 1,000 within 0.15% on every table measured (ICON at `bits:10`
/// 1.4% smaller), in two thirds of the time; 400 (with [`SCREEN_KEEP`] = [`TOP`]) the same
/// files as 500 with 64 kept within 0.03% on the Z′ jets, Delphes, nEXO, CMS NanoAOD and
/// ATLAS at `rel:1e-3` and `bits:10` (Delphes at `bits:10` 2.1% smaller, ICON at `bits:10`
/// 0.3% larger), in three quarters of the screening's time.
const SCREEN: usize = 400;
/// Candidates per column that pass the screening (with 64, 96 or 192, the same or slightly
/// larger files in every table measured; 64 → 48 scores a quarter fewer again on the whole
/// subsample).
const SCREEN_KEEP: usize = TOP;
/// Tables wider than this get no derived features (their count grows with the cube).
const MAX_FEATURE_WIDTH: usize = 40;
/// Tables wider than this keep their own column order.
const MAX_ORDER_WIDTH: usize = 128;
/// Most distinct values of a column coded first as categorical.
const MAX_CATEGORIES: usize = 256;

/// Local search over the coding order: the best single move (one column taken out and put
/// back elsewhere, both places at `fixed` or after) while one lowers the total of
/// `cost_of(column, positions)` (each column's place in the order, by column), up to four moves
/// per column. A move changes the cost only of the columns from its old place to its new one
/// (the others keep the same set of columns before them), so a move prices those alone; the
/// total is summed in column order, the same number as pricing every column.
fn improve_order(order: &mut Vec<usize>, fixed: usize, cost_of: impl Fn(usize, &[usize]) -> f64) {
    let width = order.len();
    let place = |order: &[usize], pos: &mut [usize]| {
        for (p, &c) in order.iter().enumerate() {
            pos[c] = p;
        }
    };
    let mut pos = vec![0usize; width];
    place(order, &mut pos);
    let mut costs: Vec<f64> = (0..width).map(|c| cost_of(c, &pos)).collect();
    let mut cur: f64 = costs.iter().sum();
    let (mut o, mut opos, mut ocosts) = (order.clone(), vec![0usize; width], costs.clone());
    for _ in 0..4 * width {
        let mut improved: Option<(f64, usize, usize)> = None;
        for from in fixed..width {
            for to in fixed..width {
                if from == to {
                    continue;
                }
                o.clone_from(order);
                let c = o.remove(from);
                o.insert(to, c);
                place(&o, &mut opos);
                ocosts.clone_from(&costs);
                for &y in &o[from.min(to)..=from.max(to)] {
                    ocosts[y] = cost_of(y, &opos);
                }
                let v: f64 = ocosts.iter().sum();
                if v < cur - 1e-9 && improved.is_none_or(|b| v < b.0) {
                    improved = Some((v, from, to));
                }
            }
        }
        let Some((v, from, to)) = improved else {
            break;
        };
        cur = v;
        let c = order.remove(from);
        order.insert(to, c);
        place(order, &mut pos);
        for (c, cost) in costs.iter_mut().enumerate() {
            *cost = cost_of(c, &pos);
        }
    }
}

/// What [`plan`] decided.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    /// The coding order.
    pub order: Vec<usize>,
    /// The derived features some column reads.
    pub features: Vec<Feature>,
    /// Per column, its inputs as model input ids (`< width`: a column, `width + k`: feature
    /// `k`).
    pub inputs: Vec<Vec<u32>>,
}

/// A candidate input.
#[derive(Debug, Clone)]
struct Cand {
    /// `None`: the column `args[0]` itself.
    op: Option<Op>,
    args: Vec<u32>,
    offset: f64,
    scale: f64,
}

impl Cand {
    /// Its raw values on the subsample `sub`, into `out` (one per record): the bits of
    /// [`Feature::value`], record by record.
    fn values(&self, sub: &Sub, out: &mut [f64]) {
        let col = |i: u32| &sub.cols[i as usize][..];
        match self.op {
            None => out.copy_from_slice(col(self.args[0])),
            Some(op) => match sub.factor(op, self.args[1]) {
                Some(fb) => {
                    for ((o, &a), &f) in out.iter_mut().zip(col(self.args[0])).zip(fb) {
                        *o = a * f;
                    }
                }
                None => {
                    let c = self.args.get(2).map_or(&[][..], |&c| col(c));
                    op.eval_into(col(self.args[0]), col(self.args[1]), c, out);
                }
            },
        }
    }
}

/// The subsample's columns (noisy, as the decoder sees them), with `f(b)` of each column `b`
/// that a formula `a · f(b)` reads ([`Op::factor_of_b`]), computed once rather than per
/// candidate.
struct Sub {
    cols: Vec<Vec<f64>>,
    /// `factors[op·width + b]`: `f(b)` for the formula `op` (by id).
    factors: Vec<Option<Vec<f64>>>,
}

impl Sub {
    /// `cols` with the factors `cands` read, computed on every core.
    fn new(cols: Vec<Vec<f64>>, cands: &[Cand]) -> Sub {
        let width = cols.len();
        let mut wanted: Vec<(Op, usize)> = cands
            .iter()
            .filter_map(|cand| {
                let op = cand.op.filter(|op| op.factor_of_b().is_some())?;
                Some((op, cand.args[1] as usize))
            })
            .collect();
        wanted.sort_unstable_by_key(|&(op, b)| (op as usize, b));
        wanted.dedup();
        let made = super::par_map(&wanted, super::cores(), |&(op, b)| {
            let mut f = vec![0f64; cols[b].len()];
            op.factor_into(&cols[b], &mut f);
            f
        });
        let mut factors = vec![None; Op::ALL.len() * width];
        for (&(op, b), f) in wanted.iter().zip(made) {
            factors[op as usize * width + b] = Some(f);
        }
        Sub { cols, factors }
    }

    /// `f(b)` of the formula `op` on column `b`, where `op` is `a · f(b)`.
    fn factor(&self, op: Op, b: u32) -> Option<&[f64]> {
        self.factors[op as usize * self.cols.len() + b as usize].as_deref()
    }

    /// The first `m` records.
    fn head(&self, m: usize) -> Sub {
        Sub {
            cols: self.cols.iter().map(|c| c[..m].to_vec()).collect(),
            factors: self
                .factors
                .iter()
                .map(|f| f.as_ref().map(|v| v[..m].to_vec()))
                .collect(),
        }
    }

    /// Records in the subsample.
    fn len(&self) -> usize {
        self.cols.first().map_or(0, Vec::len)
    }
}

/// Order statistics [`extremes`] finds in one pass.
const EXTREMES: usize = 8;

/// The `k`-th smallest and `k`-th largest of `values` (`k < EXTREMES`, `2k < len`) by
/// `total_cmp`, as `select_nth_unstable_by` finds them, in one pass keeping the `k + 1`
/// smallest and largest seen.
fn extremes(values: &[f64], k: usize) -> (f64, f64) {
    use std::cmp::Ordering::{Greater, Less};
    let mut low = [f64::NAN; EXTREMES];
    let mut high = [f64::NAN; EXTREMES];
    let keep = k + 1;
    low[..keep].copy_from_slice(&values[..keep]);
    high[..keep].copy_from_slice(&values[..keep]);
    low[..keep].sort_unstable_by(f64::total_cmp);
    high[..keep].sort_unstable_by(|a, b| b.total_cmp(a));
    // Inserts `v` into `kept` (sorted so that earlier entries come `first`) if it belongs there.
    let insert = |kept: &mut [f64; EXTREMES], v: f64, first: std::cmp::Ordering| {
        if v.total_cmp(&kept[k]) == first {
            let mut i = k;
            while i > 0 && v.total_cmp(&kept[i - 1]) == first {
                kept[i] = kept[i - 1];
                i -= 1;
            }
            kept[i] = v;
        }
    };
    for &v in &values[keep..] {
        // A plain comparison first (for values that are never NaN it is `total_cmp` but for
        // the sign of zero, so it lets through every value that may belong).
        if v <= low[k] {
            insert(&mut low, v, Less);
        }
        if v >= high[k] {
            insert(&mut high, v, Greater);
        }
    }
    (low[k], high[k])
}

/// Centre and scale for a feature's values: the range that holds all but the outer 0.1% on
/// each side, widened so that every value seen stays within the input clamp (±8). `values`
/// are finite, `(min, max)` their least and greatest ([`finite_range`]).
fn robust_norm(values: &[f64], (min, max): (f64, f64)) -> Option<(f64, f64)> {
    let n = values.len();
    if n < 16 {
        return None;
    }
    let k = n / 1000;
    let (lo, hi) = if k == 0 {
        (min, max)
    } else if k < EXTREMES {
        extremes(values, k)
    } else {
        // The upper order statistic lies among the values the first selection put above `lo`.
        let mut values = values.to_vec();
        let (_, &mut lo, upper) = values.select_nth_unstable_by(k, f64::total_cmp);
        let (_, &mut hi, _) = upper.select_nth_unstable_by(n - 2 - 2 * k, f64::total_cmp);
        (lo, hi)
    };
    let offset = lo / 2.0 + hi / 2.0;
    let full = (max - offset).max(offset - min);
    let scale = (hi / 2.0 - lo / 2.0).max(full / 8.0);
    (scale > 0.0 && scale.is_finite() && offset.is_finite()).then_some((offset, scale))
}

/// How many of `values` are finite, and the least and greatest of those (`(+∞, −∞)` where
/// none is), in one pass of eight lanes.
#[inline(always)]
fn finite_range(values: &[f64]) -> (usize, f64, f64) {
    let mut count = [0u64; 8];
    let mut lo = [f64::INFINITY; 8];
    let mut hi = [f64::NEG_INFINITY; 8];
    let chunks = values.chunks_exact(8);
    let tail = chunks.remainder();
    for x in chunks {
        for l in 0..8 {
            let v = x[l];
            let f = v.is_finite();
            count[l] += u64::from(f);
            lo[l] = if f && v < lo[l] { v } else { lo[l] };
            hi[l] = if f && v > hi[l] { v } else { hi[l] };
        }
    }
    let mut n: u64 = count.iter().sum();
    let (mut a, mut b) = (f64::INFINITY, f64::NEG_INFINITY);
    for l in 0..8 {
        a = if lo[l] < a { lo[l] } else { a };
        b = if hi[l] > b { hi[l] } else { b };
    }
    for &v in tail.iter().filter(|v| v.is_finite()) {
        n += 1;
        a = if v < a { v } else { a };
        b = if v > b { v } else { b };
    }
    (n as usize, a, b)
}

/// `values` normalized as network inputs ([`normalize_input`]) in place, and their sum (eight
/// interleaved partial sums, added in a fixed order).
#[inline(always)]
fn normalize_sum(values: &mut [f64], offset: f64, scale: f64) -> f64 {
    let mut acc = [0f64; 8];
    let mut chunks = values.chunks_exact_mut(8);
    for x in &mut chunks {
        for l in 0..8 {
            x[l] = f64::from(normalize_input(x[l], offset, scale));
            acc[l] += x[l];
        }
    }
    let mut tail = 0.0;
    for v in chunks.into_remainder() {
        *v = f64::from(normalize_input(*v, offset, scale));
        tail += *v;
    }
    super::fold_lanes(acc) + tail
}

/// `values` less `mean` in place, and the sum of their squares (as [`dot`] of the centred
/// values with themselves).
#[inline(always)]
fn centre_norm2(values: &mut [f64], mean: f64) -> f64 {
    let mut acc = [0f64; 8];
    let mut chunks = values.chunks_exact_mut(8);
    for x in &mut chunks {
        for l in 0..8 {
            x[l] -= mean;
            acc[l] += x[l] * x[l];
        }
    }
    let mut tail = 0.0;
    for v in chunks.into_remainder() {
        *v -= mean;
        tail += *v * *v;
    }
    super::fold_lanes(acc) + tail
}

/// Each column's [`TOP`] candidates, best first ([`best_candidates`] over the whole
/// subsample). Where there are many candidates, they are first screened on the first
/// [`SCREEN`] records, and each column's [`SCREEN_KEEP`] best there are scored again on all
/// (their normalizations fitted there, as without screening), for that column only: the Z′
/// jets' 6280 candidates become about 970, scored 1,152 times rather than 30,000.
fn screen_candidates(
    cands: &mut [Cand],
    xs: &Sub,
    t: &[Vec<f64>],
    target: &(dyn Fn(usize) -> bool + Sync),
    threads: usize,
) -> Vec<Vec<(f64, usize)>> {
    let m = xs.len();
    let variance = |t: &[Vec<f64>]| -> Vec<f64> {
        t.iter()
            .map(|c| dot(c, c) / c.len().max(1) as f64)
            .collect()
    };
    if m < 2 * SCREEN || cands.len() <= 4 * SCREEN_KEEP {
        let target = |_: usize, c: usize| target(c);
        return best_candidates(cands, xs, t, &variance(t), &target, (threads, TOP));
    }
    let xs1 = xs.head(SCREEN);
    let t1: Vec<Vec<f64>> = t
        .iter()
        .map(|c| centred(c[..SCREEN].iter().copied()))
        .collect();
    let mut probe = cands.to_vec();
    let screen_target = |_: usize, c: usize| target(c);
    let screened = best_candidates(
        &mut probe,
        &xs1,
        &t1,
        &variance(&t1),
        &screen_target,
        (threads, SCREEN_KEEP),
    );
    let mut survivors: Vec<usize> = screened.iter().flatten().map(|&(_, ci)| ci).collect();
    survivors.sort_unstable();
    survivors.dedup();
    // Each survivor is scored again only for the columns it passed for.
    let mut passed: Vec<Vec<usize>> = vec![Vec::new(); survivors.len()];
    for (c, list) in screened.iter().enumerate() {
        for &(_, ci) in list {
            let k = survivors.binary_search(&ci).expect("a survivor");
            passed[k].push(c);
        }
    }
    let rescore = |k: usize, c: usize| passed[k].contains(&c);
    let mut sub: Vec<Cand> = survivors.iter().map(|&ci| cands[ci].clone()).collect();
    let best = best_candidates(&mut sub, xs, t, &variance(t), &rescore, (threads, TOP));
    for (k, cand) in sub.into_iter().enumerate() {
        cands[survivors[k]] = cand;
    }
    best.into_iter()
        .map(|list| list.into_iter().map(|(r2, k)| (r2, survivors[k])).collect())
        .collect()
}

/// Every candidate scored against every target column ([`correlations`], fitting the derived
/// features' normalizations), on up to `threads` threads; each column then keeps its `keep`
/// best by (score, then candidate index), best first, so the choice does not depend on the
/// thread count.
fn best_candidates(
    cands: &mut [Cand],
    xs: &Sub,
    t: &[Vec<f64>],
    tvar: &[f64],
    target: &(dyn Fn(usize, usize) -> bool + Sync),
    (threads, keep): (usize, usize),
) -> Vec<Vec<(f64, usize)>> {
    let width = t.len();
    // Candidates cost from a multiplication to a hyperbolic sine each: small runs handed out
    // as the threads finish theirs. Each column's list is ordered by (score, index), so it
    // does not depend on how the candidates were split.
    let parts = super::par_runs_shared(cands, threads, |first, run| {
        let mut scores: Vec<Vec<(f64, usize)>> = vec![Vec::new(); width];
        score_run(first, run, (xs, t, tvar), target, &mut scores);
        scores
    });
    let by_score = |a: &(f64, usize), b: &(f64, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    (0..width)
        .map(|c| {
            let mut list: Vec<(f64, usize)> = Vec::new();
            for part in &parts {
                list.extend_from_slice(&part[c]);
            }
            if list.len() > keep {
                list.select_nth_unstable_by(keep - 1, by_score);
                list.truncate(keep);
            }
            list.sort_by(by_score);
            list
        })
        .collect()
}

/// A candidate's values on the subsample, normalized (fitting its normalization first if it is
/// a derived feature) and centred into `vals`, and the squared correlation with each target
/// column it does not read; `None` where the feature is mostly non-finite or constant.
#[inline(always)]
fn correlations(
    cand: &mut Cand,
    xs: &Sub,
    t: &[Vec<f64>],
    tvar: &[f64],
    target: &(dyn Fn(usize) -> bool + Sync),
    vals: &mut [f64],
) -> Option<Vec<(usize, f64)>> {
    let m = vals.len();
    cand.values(xs, vals);
    if cand.op.is_some() {
        let (finite, min, max) = finite_range(vals);
        if finite < m * 9 / 10 {
            return None;
        }
        let (o, s) = if finite == m {
            robust_norm(vals, (min, max))?
        } else {
            let fin: Vec<f64> = vals.iter().copied().filter(|v| v.is_finite()).collect();
            robust_norm(&fin, (min, max))?
        };
        cand.offset = o;
        cand.scale = s;
    }
    let mean = normalize_sum(vals, cand.offset, cand.scale) / m as f64;
    let norm2 = centre_norm2(vals, mean);
    if norm2 <= 1e-12 * m as f64 {
        return None;
    }
    let cols: Vec<usize> = (0..t.len())
        .filter(|&c| target(c) && !cand.args.contains(&(c as u32)))
        .collect();
    let mut out = Vec::with_capacity(cols.len());
    for group in cols.chunks(4) {
        let ds = dots(
            vals,
            [0, 1, 2, 3].map(|g| &t[group[g.min(group.len() - 1)]][..]),
        );
        for (&c, d) in group.iter().zip(ds) {
            out.push((c, d * d / (norm2 * tvar[c] * m as f64)));
        }
    }
    Some(out)
}

/// Scores the candidates `run` (the first of them candidate `first`) into `scores` (per target
/// column, `(r², candidate)`): [`correlations`] of each.
#[inline(always)]
fn score_run_body(
    first: usize,
    run: &mut [Cand],
    (xs, t, tvar): (&Sub, &[Vec<f64>], &[f64]),
    target: &(dyn Fn(usize, usize) -> bool + Sync),
    scores: &mut [Vec<(f64, usize)>],
) {
    let mut vals = vec![0f64; xs.len()];
    for (k, cand) in run.iter_mut().enumerate() {
        let target = |c: usize| target(first + k, c);
        if let Some(r2s) = correlations(cand, xs, t, tvar, &target, &mut vals) {
            for (c, r2) in r2s {
                scores[c].push((r2, first + k));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn score_run_avx2(
    first: usize,
    run: &mut [Cand],
    data: (&Sub, &[Vec<f64>], &[f64]),
    target: &(dyn Fn(usize, usize) -> bool + Sync),
    scores: &mut [Vec<(f64, usize)>],
) {
    score_run_body(first, run, data, target, scores)
}

/// [`score_run_body`] with the widest vectors this CPU has (the same operations, so the same
/// bits).
#[allow(unsafe_code)]
fn score_run(
    first: usize,
    run: &mut [Cand],
    data: (&Sub, &[Vec<f64>], &[f64]),
    target: &(dyn Fn(usize, usize) -> bool + Sync),
    scores: &mut [Vec<(f64, usize)>],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { score_run_avx2(first, run, data, target, scores) };
    }
    score_run_body(first, run, data, target, scores)
}

/// [`dot`] of `a` with each of four vectors, the same sums in the same order (so the same
/// bits), reading `a` once.
#[inline(always)]
fn dots_body(a: &[f64], bs: [&[f64]; 4]) -> [f64; 4] {
    let n = a.len();
    let whole = n - n % 8;
    let [b0, b1, b2, b3] = bs.map(|b| &b[..n]);
    // Four sets of eight lanes, named one by one so that they stay in registers.
    let (mut s0, mut s1, mut s2, mut s3) = ([0f64; 8], [0f64; 8], [0f64; 8], [0f64; 8]);
    for ((((x, y0), y1), y2), y3) in a[..whole]
        .chunks_exact(8)
        .zip(b0[..whole].chunks_exact(8))
        .zip(b1[..whole].chunks_exact(8))
        .zip(b2[..whole].chunks_exact(8))
        .zip(b3[..whole].chunks_exact(8))
    {
        for l in 0..8 {
            s0[l] += x[l] * y0[l];
            s1[l] += x[l] * y1[l];
            s2[l] += x[l] * y2[l];
            s3[l] += x[l] * y3[l];
        }
    }
    let tail = |b: &[f64]| -> f64 { a[whole..].iter().zip(&b[whole..]).map(|(x, y)| x * y).sum() };
    [
        super::fold_lanes(s0) + tail(b0),
        super::fold_lanes(s1) + tail(b1),
        super::fold_lanes(s2) + tail(b2),
        super::fold_lanes(s3) + tail(b3),
    ]
}

/// [`dots_body`] in AVX2 registers: the eight partial sums of each product in two vectors of
/// four, each lane summing what the same lane of [`dots_body`] sums, in the same order (a
/// multiplication, then an addition: no fused multiply-add), so the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(unsafe_code)]
fn dots_avx2(a: &[f64], bs: [&[f64]; 4]) -> [f64; 4] {
    use std::arch::x86_64::{__m256d, _mm256_add_pd, _mm256_loadu_pd, _mm256_mul_pd};
    use std::arch::x86_64::{_mm256_setzero_pd, _mm256_storeu_pd};
    let n = a.len();
    let whole = n - n % 8;
    let bs = bs.map(|b| &b[..n]);
    let mut lo = [_mm256_setzero_pd(); 4];
    let mut hi = [_mm256_setzero_pd(); 4];
    let load = |v: &[f64], i: usize| -> __m256d {
        let v = &v[i..i + 4];
        // SAFETY: `v` holds the four values read.
        unsafe { _mm256_loadu_pd(v.as_ptr()) }
    };
    for i in (0..whole).step_by(8) {
        let (xl, xh) = (load(a, i), load(a, i + 4));
        for q in 0..4 {
            lo[q] = _mm256_add_pd(lo[q], _mm256_mul_pd(xl, load(bs[q], i)));
            hi[q] = _mm256_add_pd(hi[q], _mm256_mul_pd(xh, load(bs[q], i + 4)));
        }
    }
    let mut out = [0f64; 4];
    for q in 0..4 {
        let mut acc = [0f64; 8];
        // SAFETY: `acc` holds the eight values written.
        unsafe {
            _mm256_storeu_pd(acc.as_mut_ptr(), lo[q]);
            _mm256_storeu_pd(acc.as_mut_ptr().add(4), hi[q]);
        }
        let tail: f64 = a[whole..]
            .iter()
            .zip(&bs[q][whole..])
            .map(|(x, y)| x * y)
            .sum();
        out[q] = super::fold_lanes(acc) + tail;
    }
    out
}

/// [`dots_body`] with the widest vectors this CPU has (the same operations, so the same bits).
#[allow(unsafe_code)]
pub(crate) fn dots(a: &[f64], bs: [&[f64]; 4]) -> [f64; 4] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { dots_avx2(a, bs) };
    }
    dots_body(a, bs)
}

/// `values` less their mean.
fn centred(values: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let v: Vec<f64> = values.into_iter().collect();
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    v.into_iter().map(|x| x - mean).collect()
}

/// [`dot`] in AVX2 registers, as [`dots_avx2`]: the same sums in the same order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(unsafe_code)]
fn dot_avx2(a: &[f64], b: &[f64]) -> f64 {
    use std::arch::x86_64::{__m256d, _mm256_add_pd, _mm256_loadu_pd, _mm256_mul_pd};
    use std::arch::x86_64::{_mm256_setzero_pd, _mm256_storeu_pd};
    let n = a.len().min(b.len());
    let whole = n - n % 8;
    let (mut lo, mut hi) = (_mm256_setzero_pd(), _mm256_setzero_pd());
    let load = |v: &[f64], i: usize| -> __m256d {
        let v = &v[i..i + 4];
        // SAFETY: `v` holds the four values read.
        unsafe { _mm256_loadu_pd(v.as_ptr()) }
    };
    for i in (0..whole).step_by(8) {
        lo = _mm256_add_pd(lo, _mm256_mul_pd(load(a, i), load(b, i)));
        hi = _mm256_add_pd(hi, _mm256_mul_pd(load(a, i + 4), load(b, i + 4)));
    }
    let mut acc = [0f64; 8];
    // SAFETY: `acc` holds the eight values written.
    unsafe {
        _mm256_storeu_pd(acc.as_mut_ptr(), lo);
        _mm256_storeu_pd(acc.as_mut_ptr().add(4), hi);
    }
    let tail: f64 = a[whole..n]
        .iter()
        .zip(&b[whole..n])
        .map(|(x, y)| x * y)
        .sum();
    super::fold_lanes(acc) + tail
}

/// `Σ a·b` in eight interleaved partial sums (so it vectorizes), added in a fixed order.
#[allow(unsafe_code)]
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { dot_avx2(a, b) };
    }
    let mut acc = [0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    super::fold_lanes(acc) + tail
}

/// Bits per value of a Gaussian residual of variance `var` quantized in steps of `step`.
pub(crate) fn gaussian_bits(var: f64, step: f64) -> f64 {
    0.5 * (1.0 + 2.0 * std::f64::consts::PI * std::f64::consts::E * var / (step * step)).log2()
}

/// Every candidate input: each column that varies (normalized by its `norms`), then, for
/// tables of up to [`MAX_FEATURE_WIDTH`] columns, each formula over distinct such columns
/// (one order of the symmetric ones; `a · cos b` and `a · sin b` for `angle` columns `b`).
fn candidates(norms: &[(f64, f64)], varies: &[bool], angle: &[bool]) -> Vec<Cand> {
    let width = varies.len();
    let mut cands: Vec<Cand> = Vec::new();
    for i in 0..width {
        if varies[i] {
            let (offset, scale) = norms[i];
            cands.push(Cand {
                op: None,
                args: vec![i as u32],
                offset,
                scale,
            });
        }
    }
    if width <= MAX_FEATURE_WIDTH {
        let live: Vec<u32> = (0..width as u32).filter(|&i| varies[i as usize]).collect();
        for op in Op::ALL {
            let angle_op = matches!(op, Op::MulCos | Op::MulSin);
            for (x, &a) in live.iter().enumerate() {
                for (y, &b) in live.iter().enumerate() {
                    if a == b || (op.symmetric() && y < x) || (angle_op && !angle[b as usize]) {
                        continue;
                    }
                    if op.arity() == 2 {
                        cands.push(Cand {
                            op: Some(op),
                            args: vec![a, b],
                            offset: 0.0,
                            scale: 0.0,
                        });
                    } else {
                        for &c in &live[y + 1..] {
                            if c != a {
                                cands.push(Cand {
                                    op: Some(op),
                                    args: vec![a, b, c],
                                    offset: 0.0,
                                    scale: 0.0,
                                });
                            }
                        }
                    }
                }
            }
        }
    }
    cands
}

/// Chooses the coding order and each column's inputs.
///
/// `noisy`: the sample with reconstruction noise, column-major; `targets`: the clean sample,
/// column-major, normalized by the columns' `norms`; `sample`: the records as read (row-major,
/// for the exact tests such as whether a column holds whole numbers); `bounds`: absolute bounds (0: the column
/// is stored exactly and not predicted).
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan(
    sample: &[f64],
    noisy: &[f64],
    targets: &[f32],
    rows: usize,
    width: usize,
    norms: &[(f64, f64)],
    bounds: &[f64],
    max_inputs: usize,
    keep_order: bool,
) -> Plan {
    // The subsample: evenly spaced records (the sample is already random, in runs).
    let m = rows.min(SUBSAMPLE);
    let pick: Vec<usize> = (0..m).map(|k| k * rows / m).collect();
    let xs: Vec<Vec<f64>> = (0..width)
        .map(|i| pick.iter().map(|&r| noisy[i * rows + r]).collect())
        .collect();
    let t: Vec<Vec<f64>> = (0..width)
        .map(|c| centred(pick.iter().map(|&r| f64::from(targets[c * rows + r]))))
        .collect();
    let tvar: Vec<f64> = t
        .iter()
        .map(|c| c.iter().map(|x| x * x).sum::<f64>() / m as f64)
        .collect();
    let target = |c: usize| bounds[c] > 0.0 && tvar[c] > 0.0;
    // The bound as a step in normalized units.
    let step: Vec<f64> = (0..width)
        .map(|c| 2.0 * bounds[c] / norms[c].1.max(f64::MIN_POSITIVE))
        .collect();

    // Column properties, a column per task.
    let columns: Vec<usize> = (0..width).collect();
    let props = super::par_map(&columns, super::cores(), |&i| {
        let col = &xs[i];
        // Whole numbers are tested on the values as read: rebuilt from the f32 normalized
        // targets, large ids (PDG codes of nuclei, ~1e9) are no longer exact integers.
        let (min, max) = col
            .iter()
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let angle = min >= -3.2 && max <= 3.2 && max - min > 3.0;
        let mut distinct = None;
        if bounds[i] > 0.0
            && tvar[i] > 0.0
            && pick.iter().all(|&r| sample[r * width + i].fract() == 0.0)
        {
            let mut d: Vec<u64> = pick
                .iter()
                .map(|&r| sample[r * width + i].to_bits())
                .collect();
            d.sort_unstable();
            d.dedup();
            distinct = (d.len() <= MAX_CATEGORIES).then_some(d.len());
        }
        (max > min, angle, distinct)
    });
    let varies: Vec<bool> = props.iter().map(|p| p.0).collect();
    let angle: Vec<bool> = props.iter().map(|p| p.1).collect();
    let mut categorical: Vec<(usize, usize)> = props
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((p.2?, i)))
        .collect(); // (distinct values, column)
    let mut cands = candidates(norms, &varies, &angle);
    let threads = super::cores();
    let sub = Sub::new(xs, &cands);
    let best = screen_candidates(&mut cands, &sub, &t, &target, threads);
    let xs = &sub.cols;

    // The order: categorical columns first (most distinct values first), then local search.
    if keep_order {
        categorical.clear();
    }
    categorical.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut order: Vec<usize> = categorical.iter().map(|&(_, i)| i).collect();
    let fixed = order.len();
    order.extend((0..width).filter(|i| !categorical.iter().any(|c| c.1 == *i)));
    let cost_of = |c: usize, pos: &[usize], best: &[Vec<(f64, usize)>]| -> f64 {
        if !target(c) {
            return 0.0;
        }
        let r2 = best[c]
            .iter()
            .find(|&&(_, ci)| cands[ci].args.iter().all(|&a| pos[a as usize] < pos[c]))
            .map_or(0.0, |&(r2, _)| r2.min(1.0));
        gaussian_bits(tvar[c] * (1.0 - r2), step[c])
    };
    if width <= MAX_ORDER_WIDTH && !keep_order {
        improve_order(&mut order, fixed, |c, pos| cost_of(c, pos, &best));
    }
    let mut pos = vec![0usize; width];
    for (p, &c) in order.iter().enumerate() {
        pos[c] = p;
    }

    // Inputs per column, chosen for the columns in parallel (each on its own), then numbered
    // in column order so the features' numbering does not depend on the thread count.
    let mut features: Vec<Feature> = Vec::new();
    let mut inputs: Vec<Vec<u32>> = vec![Vec::new(); width];
    let max_inputs = max_inputs.max(1);
    // The columns themselves as inputs, normalized and centred once.
    let own: Vec<Option<(Vec<f64>, f64)>> = (0..width)
        .map(|i| {
            varies[i].then(|| {
                let (o, s) = norms[i];
                let v = centred(xs[i].iter().map(|&x| f64::from(normalize_input(x, o, s))));
                let n2 = dot(&v, &v);
                (v, n2)
            })
        })
        .collect();
    let pick = |c: usize| -> Vec<usize> {
        let earlier = |ci: usize| cands[ci].args.iter().all(|&a| pos[a as usize] < pos[c]);
        let pool: Vec<usize> = best[c]
            .iter()
            .map(|&(_, ci)| ci)
            .filter(|&ci| earlier(ci))
            .collect();
        let mut raw_values = vec![0f64; m];
        let columns: Vec<Vec<f64>> = pool
            .iter()
            .map(|&ci| {
                let cand = &cands[ci];
                cand.values(&sub, &mut raw_values);
                centred(
                    raw_values
                        .iter()
                        .map(|&v| f64::from(normalize_input(v, cand.offset, cand.scale))),
                )
            })
            .collect();
        let costly: Vec<bool> = pool
            .iter()
            .map(|&ci| cands[ci].op.is_some_and(|op| op.transcendental()))
            .collect();
        let chosen = pursue(&columns, &costly, &t[c], max_inputs);
        let mut picked: Vec<usize> = chosen.iter().map(|&k| pool[k]).collect();
        // Top up with the earlier columns themselves, by correlation.
        let mut raw: Vec<(f64, usize)> = (0..width)
            .filter(|&i| pos[i] < pos[c])
            .filter_map(|i| {
                let (v, n2) = own[i].as_ref()?;
                let d = dot(v, &t[c]);
                Some((if *n2 > 0.0 { d * d / n2 } else { 0.0 }, i))
            })
            .collect();
        raw.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for &(_, i) in &raw {
            if picked.len() >= max_inputs {
                break;
            }
            if !picked
                .iter()
                .any(|&ci| cands[ci].op.is_none() && cands[ci].args[0] == i as u32)
            {
                let ci = cands
                    .iter()
                    .position(|k| k.op.is_none() && k.args[0] == i as u32)
                    .expect("every varying column is a candidate");
                picked.push(ci);
            }
        }
        picked
    };
    let predicted: Vec<usize> = (0..width).filter(|&c| target(c) && pos[c] > 0).collect();
    let picks = super::par_map(&predicted, threads, |&c| pick(c));
    for (&c, picked) in predicted.iter().zip(picks) {
        for ci in picked {
            let cand = &cands[ci];
            let id = match cand.op {
                None => cand.args[0],
                Some(op) => {
                    let f = Feature {
                        op,
                        args: cand.args.clone(),
                        offset: cand.offset,
                        scale: cand.scale,
                    };
                    let k = features.iter().position(|g| *g == f).unwrap_or_else(|| {
                        features.push(f);
                        features.len() - 1
                    });
                    (width + k) as u32
                }
            };
            inputs[c].push(id);
        }
    }
    Plan {
        order,
        features,
        inputs,
    }
}

/// Orthogonal matching pursuit: up to `max` of `columns` (centred) that explain `t` (centred),
/// each adding at least 0.2% of its variance, or [`COSTLY_GAIN`] for the `costly` ones.
/// Returns their indices, in the order chosen.
fn pursue(columns: &[Vec<f64>], costly: &[bool], t: &[f64], max: usize) -> Vec<usize> {
    let total: f64 = t.iter().map(|x| x * x).sum();
    let least = |k: usize| if costly[k] { COSTLY_GAIN } else { 0.002 } * total;
    let mut chosen: Vec<usize> = Vec::new();
    let mut resid = t.to_vec();
    let mut ss = total;
    while chosen.len() < max && !columns.is_empty() {
        let mut top = (0.0, usize::MAX);
        for (k, col) in columns.iter().enumerate() {
            if chosen.contains(&k) {
                continue;
            }
            let (d, n2) = (dot(col, &resid), dot(col, col));
            let gain = if n2 > 0.0 { d * d / n2 } else { 0.0 };
            if gain > top.0 && gain >= least(k) {
                top = (gain, k);
            }
        }
        if top.1 == usize::MAX {
            break;
        }
        chosen.push(top.1);
        let sel: Vec<&[f64]> = chosen.iter().map(|&k| columns[k].as_slice()).collect();
        let Some(w) = least_squares(&sel, t, 1e-9) else {
            chosen.pop();
            break;
        };
        for (r, (i, &y)) in resid.iter_mut().zip(t.iter().enumerate()) {
            *r = y - sel.iter().zip(&w).map(|(c, wk)| c[i] * wk).sum::<f64>();
        }
        let new_ss: f64 = resid.iter().map(|x| x * x).sum();
        if ss - new_ss < least(top.1) {
            chosen.pop();
            break;
        }
        ss = new_ss;
    }
    chosen
}

/// The share of a column's variance a formula with a transcendental function must explain to
/// be chosen (the others: 0.2%).
const COSTLY_GAIN: f64 = 0.02;

/// Ridge least squares without intercept: the `w` minimizing `|Σ wₖ·xₖ − t|² + λ·tr·|w|²`, by
/// Cholesky. `None` if the system is singular.
pub(crate) fn least_squares(xs: &[&[f64]], t: &[f64], lambda: f64) -> Option<Vec<f64>> {
    let n = xs.len();
    let mut a = vec![0f64; n * n];
    let mut b = vec![0f64; n];
    for i in 0..n {
        for j in 0..=i {
            let v = dot(xs[i], xs[j]);
            a[i * n + j] = v;
            a[j * n + i] = v;
        }
        b[i] = dot(xs[i], t);
    }
    solve_normal(a, b, lambda)
}

/// The ridge solution of [`least_squares`] from its normal equations: `a` the `n × n` Gram
/// matrix `Σ xᵢ·xⱼ` (row-major, symmetric), `b` the `Σ xᵢ·t`. `None` if singular.
pub(crate) fn solve_normal(mut a: Vec<f64>, b: Vec<f64>, lambda: f64) -> Option<Vec<f64>> {
    let n = b.len();
    let tr: f64 = (0..n).map(|i| a[i * n + i]).sum::<f64>() / n.max(1) as f64;
    for i in 0..n {
        a[i * n + i] += lambda * tr.max(f64::MIN_POSITIVE);
    }
    // Cholesky: a = L·Lᵀ, in place (lower triangle).
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if d.is_nan() || d <= 0.0 {
            return None;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut v = a[i * n + j];
            for k in 0..j {
                v -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = v / d;
        }
    }
    let mut y = b;
    for i in 0..n {
        for k in 0..i {
            y[i] -= a[i * n + k] * y[k];
        }
        y[i] /= a[i * n + i];
    }
    for i in (0..n).rev() {
        for k in i + 1..n {
            y[i] -= a[k * n + i] * y[k];
        }
        y[i] /= a[i * n + i];
    }
    Some(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_search_prices_moves_as_the_whole_order_would() {
        // Each column's candidate inputs (sets of columns, best first) and their gains: a
        // column costs by the first candidate whose columns all come before it.
        let mut seed = 17u64;
        let mut moved = 0;
        let mut next = |n: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as usize) % n
        };
        for trial in 0..20 {
            let width = 3 + next(10);
            let lists: Vec<Vec<(f64, Vec<usize>)>> = (0..width)
                .map(|c| {
                    (0..next(6))
                        .map(|k| {
                            let args = (0..1 + next(3)).map(|_| next(width)).filter(|&a| a != c);
                            (0.9 / (k + 1) as f64, args.collect())
                        })
                        .collect()
                })
                .collect();
            let cost_of = |c: usize, pos: &[usize]| -> f64 {
                let r2 = lists[c]
                    .iter()
                    .find(|(_, args)| args.iter().all(|&a| pos[a] < pos[c]))
                    .map_or(0.0, |(r2, _)| *r2);
                gaussian_bits((1.0 + c as f64) * (1.0 - r2), 0.01)
            };
            // The search as it was: every move priced on every column.
            let total = |order: &[usize]| -> f64 {
                let mut pos = vec![0usize; width];
                for (p, &c) in order.iter().enumerate() {
                    pos[c] = p;
                }
                (0..width).map(|c| cost_of(c, &pos)).sum()
            };
            let fixed = next(2);
            let mut want: Vec<usize> = (0..width).collect();
            let mut cur = total(&want);
            for _ in 0..4 * width {
                let mut improved: Option<(f64, Vec<usize>)> = None;
                for from in fixed..width {
                    for to in fixed..width {
                        if from == to {
                            continue;
                        }
                        let mut o = want.clone();
                        let c = o.remove(from);
                        o.insert(to, c);
                        let v = total(&o);
                        if v < cur - 1e-9 && improved.as_ref().is_none_or(|b| v < b.0) {
                            improved = Some((v, o));
                        }
                    }
                }
                match improved {
                    Some((v, o)) => (cur, want) = (v, o),
                    None => break,
                }
            }
            let mut got: Vec<usize> = (0..width).collect();
            improve_order(&mut got, fixed, cost_of);
            assert_eq!(got, want, "trial {trial}");
            moved += usize::from(want.iter().enumerate().any(|(p, &c)| p != c));
        }
        assert!(moved >= 10, "the searches moved columns in {moved} trials");
    }

    #[test]
    fn least_squares_recovers_weights() {
        let x1: Vec<f64> = (0..100).map(|i| (i as f64 * 0.37).sin()).collect();
        let x2: Vec<f64> = (0..100).map(|i| (i as f64 * 0.11).cos()).collect();
        let t: Vec<f64> = x1.iter().zip(&x2).map(|(a, b)| 2.0 * a - 0.5 * b).collect();
        let w = least_squares(&[&x1, &x2], &t, 0.0).unwrap();
        assert!(
            (w[0] - 2.0).abs() < 1e-9 && (w[1] + 0.5).abs() < 1e-9,
            "{w:?}"
        );
    }

    #[test]
    fn costly_formulas_must_explain_more() {
        // A target made of three parts worth 90%, 1% and 1% of its variance: the 1% part is
        // taken from a plain input, not from a transcendental formula.
        let n = 4000;
        let wave = |f: f64| -> Vec<f64> { centred((0..n).map(|i| (i as f64 * f).sin())) };
        let (a, b, c) = (wave(0.37), wave(1.13), wave(2.71));
        let t: Vec<f64> = (0..n)
            .map(|i| 3.0 * a[i] + 0.32 * b[i] + 0.32 * c[i])
            .collect();
        let cols = vec![a, b, c];
        assert_eq!(pursue(&cols, &[false, false, false], &t, 8), vec![0, 1, 2]);
        assert_eq!(pursue(&cols, &[false, true, false], &t, 8), vec![0, 2]);
        // A costly input that explains much is still chosen.
        assert_eq!(pursue(&cols, &[true, true, false], &t, 8), vec![0, 2]);
    }

    #[test]
    fn candidate_scores_do_not_depend_on_the_thread_count() {
        // Four columns over 1000 records (one a product of two others, so derived features
        // score high), every unary and binary formula over them as a candidate.
        let m = 1000;
        let mut seed = 9u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let mut xs: Vec<Vec<f64>> = (0..3).map(|_| (0..m).map(|_| next()).collect()).collect();
        xs.push(
            (0..m)
                .map(|k| xs[0][k] * xs[1][k] + 0.01 * next())
                .collect(),
        );
        let t: Vec<Vec<f64>> = xs
            .iter()
            .map(|c| {
                let mean = c.iter().sum::<f64>() / m as f64;
                c.iter().map(|x| x - mean).collect()
            })
            .collect();
        let tvar: Vec<f64> = t.iter().map(|c| dot(c, c) / m as f64).collect();
        let mut cands: Vec<Cand> = (0..4u32)
            .map(|i| Cand {
                op: None,
                args: vec![i],
                offset: 0.0,
                scale: 0.5,
            })
            .collect();
        for op in Op::ALL.into_iter().filter(|op| op.arity() == 2) {
            for a in 0..4u32 {
                for b in (0..4u32).filter(|&b| b != a) {
                    cands.push(Cand {
                        op: Some(op),
                        args: vec![a, b],
                        offset: 0.0,
                        scale: 0.0,
                    });
                }
            }
        }
        let target = |_: usize, _: usize| true;
        let xs = Sub::new(xs, &cands);
        let one = best_candidates(&mut cands.clone(), &xs, &t, &tvar, &target, (1, TOP));
        assert!(
            one[3][0].0 > 0.9,
            "the product explains column 3: {:?}",
            one[3][0]
        );
        assert!(
            one.iter().all(|l| l.len() == TOP),
            "each column keeps its {TOP} best"
        );
        for threads in [2, 3, 7, 64] {
            let many = best_candidates(&mut cands.clone(), &xs, &t, &tvar, &target, (threads, TOP));
            assert_eq!(one, many, "{threads} threads");
        }
    }

    #[test]
    fn screening_keeps_the_best_candidates_of_a_full_scoring() {
        // Seven columns over 4000 records (pt, φ, η, m and px = pt·cos φ, pz = pt·sinh η,
        // E = √(px² + … ) up to noise): every candidate scored on all records, and screened
        // first on SCREEN of them, give each column the same best inputs.
        let m = 4000;
        let mut seed = 17u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut xs: Vec<Vec<f64>> = vec![Vec::new(); 7];
        for _ in 0..m {
            let (pt, phi, eta, mass) = (
                20.0 + 500.0 * next(),
                (next() * 2.0 - 1.0) * std::f64::consts::PI,
                (next() * 2.0 - 1.0) * 2.5,
                5.0 + 50.0 * next(),
            );
            let px = pt * phi.cos() + next();
            let pz = pt * eta.sinh() + next();
            let e = (pt * pt + pz * pz + mass * mass).sqrt() + next();
            for (c, v) in xs.iter_mut().zip([pt, phi, eta, mass, px, pz, e]) {
                c.push(v);
            }
        }
        let norms: Vec<(f64, f64)> = xs
            .iter()
            .map(|c| {
                let lo = c.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = c.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (lo / 2.0 + hi / 2.0, hi / 2.0 - lo / 2.0)
            })
            .collect();
        let t: Vec<Vec<f64>> = xs
            .iter()
            .zip(&norms)
            .map(|(c, &(o, s))| centred(c.iter().map(|&x| (x - o) / s)))
            .collect();
        let tvar: Vec<f64> = t.iter().map(|c| dot(c, c) / m as f64).collect();
        let angle: Vec<bool> = (0..7).map(|c| c == 1).collect();
        let mut cands = candidates(&norms, &[true; 7], &angle);
        assert!(
            cands.len() > 4 * SCREEN_KEEP,
            "{} candidates: screened",
            cands.len()
        );
        let sub = Sub::new(xs, &cands);
        let all = |_: usize, _: usize| true;
        let full = best_candidates(&mut cands.clone(), &sub, &t, &tvar, &all, (2, TOP));
        let screened = screen_candidates(&mut cands, &sub, &t, &|_| true, 2);
        let mut explained = 0;
        for (c, (f, s)) in full.iter().zip(&screened).enumerate() {
            // Every candidate kept has the score the full scoring gives it.
            for entry in s {
                assert!(
                    f.contains(entry) || entry.0 <= f[TOP - 1].0,
                    "column {c}: {entry:?}"
                );
            }
            // Where a column is explained at all, its five best are the full scoring's, in
            // order (further down, among many near-equal formulas, and in the columns that
            // nothing explains, ranks may differ).
            if f[0].0 > 0.9 {
                assert_eq!(f[..5], s[..5], "column {c}");
                explained += 1;
            }
        }
        assert!(explained >= 3, "{explained}");
        // The relations are found: px from pt·cos φ, E from √(pt² + pz² + m²).
        let is = |c: usize, op: Op, args: &[u32]| {
            let k = screened[c][0].1;
            cands[k].op == Some(op) && cands[k].args == args
        };
        assert!(is(4, Op::MulCos, &[0, 1]), "{:?}", cands[screened[4][0].1]);
        assert!(
            is(6, Op::Hypot3, &[0, 3, 5]),
            "{:?}",
            cands[screened[6][0].1]
        );
        // And at any thread count, the same.
        for threads in [1, 3] {
            let again = screen_candidates(&mut cands.clone(), &sub, &t, &|_| true, threads);
            assert_eq!(again, screened, "{threads} threads");
        }
    }

    #[test]
    fn extremes_are_the_selected_order_statistics() {
        let mut seed = 5u64;
        for n in [17usize, 100, 1000, 1999, 4000, 7999] {
            let mut v: Vec<f64> = (0..n)
                .map(|i| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    // Ties and signed zeros among them.
                    match i % 7 {
                        0 => 0.0,
                        1 => -0.0,
                        _ => ((seed >> 40) % 50) as f64 - 25.0,
                    }
                })
                .collect();
            let k = n / 1000;
            let got = extremes(&v, k);
            let (_, &mut lo, _) = v.select_nth_unstable_by(k, f64::total_cmp);
            let (_, &mut hi, _) = v.select_nth_unstable_by(n - 1 - k, f64::total_cmp);
            assert_eq!(
                (got.0.to_bits(), got.1.to_bits()),
                (lo.to_bits(), hi.to_bits()),
                "{n}"
            );
        }
    }

    #[test]
    fn four_dots_at_once_are_four_dots() {
        for n in [0usize, 3, 8, 13, 1000, 4003] {
            let v = |s: f64| {
                (0..n)
                    .map(|i| ((i as f64 + s) * 0.37).sin())
                    .collect::<Vec<_>>()
            };
            let (a, b) = (v(0.0), [v(1.0), v(2.0), v(3.0), v(4.0)]);
            let got = dots(&a, [&b[0], &b[1], &b[2], &b[3]]);
            // The portable loop (what a CPU without AVX2 runs) gives the same bits.
            let portable = dots_body(&a, [&b[0], &b[1], &b[2], &b[3]]);
            for ((g, p), b) in got.iter().zip(portable).zip(&b) {
                assert_eq!(g.to_bits(), dot(&a, b).to_bits(), "{n}");
                assert_eq!(g.to_bits(), p.to_bits(), "{n}");
            }
        }
    }

    #[test]
    fn one_pass_statistics_match_their_definitions() {
        let mut seed = 3u64;
        for n in [0usize, 5, 8, 17, 500, 4001] {
            let mut v: Vec<f64> = (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    ((seed >> 11) as f64 / (1u64 << 53) as f64 - 0.3) * 40.0
                })
                .collect();
            if n > 10 {
                v[3] = f64::NAN;
                v[7] = f64::INFINITY;
            }
            let fin: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
            let (count, lo, hi) = finite_range(&v);
            assert_eq!(count, fin.len(), "{n}");
            assert_eq!(lo, fin.iter().copied().fold(f64::INFINITY, f64::min), "{n}");
            assert_eq!(
                hi,
                fin.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                "{n}"
            );
            let (offset, scale) = (1.5, 7.25);
            let mut w = fin.clone();
            let sum = normalize_sum(&mut w, offset, scale);
            let want: Vec<f64> = fin
                .iter()
                .map(|&x| f64::from(normalize_input(x, offset, scale)))
                .collect();
            assert_eq!(w, want, "{n}");
            assert!((sum - want.iter().sum::<f64>()).abs() <= 1e-12 * (1.0 + sum.abs()));
            let mean = sum / w.len().max(1) as f64;
            let norm2 = centre_norm2(&mut w, mean);
            assert_eq!(norm2.to_bits(), dot(&w, &w).to_bits(), "{n}");
        }
    }

    #[test]
    fn dot_sums_like_the_plain_loop() {
        for n in [0usize, 1, 7, 8, 9, 1000, 4003] {
            let a: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
            let b: Vec<f64> = (0..n).map(|i| (i as f64 * 0.11).cos()).collect();
            let plain: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!(
                (dot(&a, &b) - plain).abs() <= 1e-12 * (1.0 + plain.abs()),
                "{n}"
            );
        }
    }

    #[test]
    fn large_integer_ids_are_coded_first() {
        // Column 1 holds ids of nuclei (~1e9, 5 distinct), column 0 a value that depends on
        // them: the ids come first, tested exactly on the values as read, although the
        // normalized f32 targets cannot hold them exactly.
        let (rows, width) = (2000, 2);
        let ids = [1_000_020_040.0, 1_000_060_120.0, 2212.0, -2212.0, 211.0];
        let mut sample = Vec::new();
        for r in 0..rows {
            let id = ids[r * 7 % 5];
            sample.extend([id * 1e-6 + (r as f64 * 0.37).sin(), id]);
        }
        let norms = [(500.0, 600.0), (499_999_000.0, 500_100_000.0)];
        let bounds = [0.01, 1.0];
        let mut targets = vec![0f32; rows * width];
        for r in 0..rows {
            for c in 0..width {
                targets[c * rows + r] = ((sample[r * width + c] - norms[c].0) / norms[c].1) as f32;
            }
        }
        let noisy: Vec<f64> = (0..width)
            .flat_map(|c| (0..rows).map(move |r| (r, c)))
            .map(|(r, c)| sample[r * width + c])
            .collect();
        let plan = plan(
            &sample, &noisy, &targets, rows, width, &norms, &bounds, 4, false,
        );
        assert_eq!(plan.order, vec![1, 0]);
    }
}
