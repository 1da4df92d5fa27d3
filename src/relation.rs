//! Exact relations between a table's columns (format version 9): a bit-exact f32 column that
//! is, in most rows to its last bit or within a few units of it, the sum of columns coded
//! before it, each added or subtracted — a total and its parts (a model's precipitation and
//! its rain and snow, large-scale and convective), a net flux, a copy of an earlier column —
//! is predicted by that sum and coded as its difference from it.
//!
//! The prediction is the terms added in f64 in the order they are stored, starting from 0,
//! each term the decoded value of its column in the same row, negated where the term says so;
//! the lossless integer coder rounds it to f32 and codes the value words less its word (its
//! prediction transform, [`crate::lossless`]). IEEE addition in a fixed order: the encoder
//! and the decoder compute the same bits on every machine.
//!
//! The encoder looks for a relation on a sample of the chunk's rows, among the columns coded
//! last ([`Search::find`]): terms are added greedily while each cuts the estimated bits of the
//! residuals by a tenth, and the relation is coded only where its estimate is well under that
//! of the column's other predictions; the column's section is then kept in whichever form is
//! smaller.
//!
//! ```text
//! relation := terms:u8 (1 to MAX_TERMS) term:uvarint × terms    (term = column · 2 + negated)
//! ```

use crate::bound::ordinal as ord;
use crate::bytes::{ByteReader, DecodeResult, Malformed, put_uvarint};
use crate::element::Element;

/// Most terms of a relation.
pub(crate) const MAX_TERMS: usize = 4;
/// Rows of a chunk a relation is looked for on (evenly spaced).
const SAMPLE: usize = 2048;
/// Columns a relation's terms are looked for among: the last coded before the column (so a
/// table of thousands of columns costs a bounded search per column).
const MAX_CANDIDATES: usize = 256;
/// A term is added where it cuts the estimated bits of the residuals to below this share.
const TERM_PAYS: f64 = 0.9;
/// A relation is coded where its estimated bits are below this share of the best of the
/// column's other predictions (the value itself, the value before, the column coded just
/// before, the learned model's): each one coded costs a second coding of the column.
const RELATION_PAYS: f64 = 0.75;

/// One term of a relation: a column, added or subtracted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Term {
    pub column: usize,
    pub negated: bool,
}

/// A column predicted as the sum of the terms, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Relation {
    terms: Vec<Term>,
}

impl Relation {
    /// The relation of these terms (1 to [`MAX_TERMS`], distinct columns).
    pub(crate) fn new(terms: Vec<Term>) -> Self {
        debug_assert!((1..=MAX_TERMS).contains(&terms.len()));
        Relation { terms }
    }

    /// The terms, in the order they are added.
    pub(crate) fn terms(&self) -> &[Term] {
        &self.terms
    }

    /// Appends the relation's bytes.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.push(self.terms.len() as u8);
        for t in &self.terms {
            put_uvarint(out, ((t.column as u64) << 1) | t.negated as u64);
        }
    }

    /// Reads a relation of a table of `columns` columns.
    pub(crate) fn read(r: &mut ByteReader<'_>, columns: usize) -> DecodeResult<Self> {
        let k = r.u8()? as usize;
        if !(1..=MAX_TERMS).contains(&k) {
            return Err(Malformed(format!(
                "a relation of {k} terms (1 to {MAX_TERMS})"
            )));
        }
        let mut terms = Vec::with_capacity(k);
        for _ in 0..k {
            let v = r.uvarint()?;
            let column = v >> 1;
            if column >= columns as u64 {
                return Err(Malformed(format!(
                    "a relation's term is column {column} of {columns}"
                )));
            }
            let column = column as usize;
            if terms.iter().any(|t: &Term| t.column == column) {
                return Err(Malformed(format!("a relation names column {column} twice")));
            }
            terms.push(Term {
                column,
                negated: v & 1 == 1,
            });
        }
        Ok(Relation { terms })
    }

    /// The predictions for a chunk's column: `cols` holds its columns one after the other,
    /// `rows` values each, the terms' columns decoded.
    pub(crate) fn predict<T: Element>(&self, cols: &[T], rows: usize, out: &mut Vec<f64>) {
        out.clear();
        out.resize(rows, 0.0);
        for t in &self.terms {
            let c = &cols[t.column * rows..(t.column + 1) * rows];
            if t.negated {
                out.iter_mut().zip(c).for_each(|(o, &v)| *o -= v.to_f64());
            } else {
                out.iter_mut().zip(c).for_each(|(o, &v)| *o += v.to_f64());
            }
        }
    }
}

/// Estimated bits of coding `x` less `pred` over the sample: each residual's bit length.
fn cost(x: &[i64], pred: impl Iterator<Item = f64>) -> u64 {
    x.iter()
        .zip(pred)
        .map(|(&o, p)| bits(o - ord(p as f32)))
        .sum()
}

/// The bit length of a residual.
#[inline(always)]
fn bits(d: i64) -> u64 {
    64 - d.unsigned_abs().leading_zeros() as u64
}

/// The sum of `bits`, if below `limit`; summed in blocks, given up once it reaches it.
fn bounded_sum(mut bits: impl Iterator<Item = u64>, limit: u64) -> Option<u64> {
    let mut sum = 0;
    loop {
        let mut block = 0;
        let mut n = 0;
        for b in bits.by_ref().take(256) {
            block += b;
            n += 1;
        }
        sum += block;
        if sum >= limit {
            return None;
        }
        if n < 256 {
            return Some(sum);
        }
    }
}

/// The relations looked for in one chunk: its sampled rows, and the value order of each
/// column coded so far at them, computed once for every column that looks at it.
#[derive(Debug, Default)]
pub(crate) struct Search {
    rows: usize,
    at: Vec<usize>,
    /// Per column, `ord` of its values at the sampled rows (empty until a column wants it).
    ords: Vec<Vec<i64>>,
}

impl Search {
    /// Starts a chunk of `rows` rows and `columns` columns.
    pub(crate) fn start(&mut self, rows: usize, columns: usize) {
        self.rows = rows;
        self.at.clear();
        if rows >= 2 {
            self.at.extend((1..rows).step_by(rows.div_ceil(SAMPLE)));
        }
        self.ords.resize_with(columns, Vec::new);
        self.ords.iter_mut().for_each(Vec::clear);
    }

    /// Looks for a relation of f32 column `col` to the columns `earlier` (coded before it) of
    /// `cols` (the chunk's columns one after the other, the earlier ones decoded); `prev` is
    /// the column coded just before and `model` the learned model's predictions, which the
    /// relation must beat.
    pub(crate) fn find(
        &mut self,
        col: &[f32],
        cols: &[f32],
        earlier: &[usize],
        prev: Option<usize>,
        model: Option<&[f64]>,
    ) -> Option<Relation> {
        let (rows, at) = (self.rows, &self.at[..]);
        if earlier.is_empty() || at.is_empty() || col.len() != rows {
            return None;
        }
        // The columns coded last, on a wide table: the search grows with the candidates.
        let earlier = &earlier[earlier.len().saturating_sub(MAX_CANDIDATES)..];
        let x: Vec<i64> = at.iter().map(|&i| ord(col[i])).collect();
        let column = |k: usize| &cols[k * rows..(k + 1) * rows];
        // What the column's other predictions cost; the value itself is where the sum starts.
        let mut now = x.iter().map(|&o| bits(o)).sum::<u64>();
        let mut others = now.min(cost(&x, at.iter().map(|&i| col[i - 1] as f64)));
        if let Some(k) = prev {
            others = others.min(cost(&x, at.iter().map(|&i| column(k)[i] as f64)));
        }
        if let Some(p) = model.filter(|p| p.len() == rows) {
            others = others.min(cost(&x, at.iter().map(|&i| p[i])));
        }
        // A term is taken only below `TERM_PAYS · now`, and only the best one: a candidate is
        // dropped once its bits so far reach either (exact: every residual adds bits).
        let pays = |now: u64| (TERM_PAYS * now as f64).ceil() as u64;
        // The first term: a column added or subtracted is exact in f32, so its cost is the
        // residuals of the value orders, `ord(−v) = −ord(v)`.
        let mut best: Option<(u64, Term)> = None;
        for &k in earlier {
            if self.ords[k].is_empty() {
                let c = column(k);
                self.ords[k].extend(at.iter().map(|&i| ord(c[i])));
            }
            let c = &self.ords[k];
            for negated in [false, true] {
                let limit = best.map_or(pays(now), |(b, _)| b.min(pays(now)));
                let residual = |(&o, &v): (&i64, &i64)| bits(if negated { o + v } else { o - v });
                if let Some(b) = bounded_sum(x.iter().zip(c).map(residual), limit) {
                    best = Some((b, Term { column: k, negated }));
                }
            }
        }
        let mut sums = vec![0f64; at.len()];
        let mut terms: Vec<Term> = Vec::new();
        while let Some((b, t)) = best.filter(|&(b, _)| b < pays(now)) {
            let c = column(t.column);
            let sign = if t.negated { -1.0 } else { 1.0 };
            sums.iter_mut()
                .zip(at)
                .for_each(|(s, &i)| *s += sign * c[i] as f64);
            now = b;
            terms.push(t);
            if terms.len() == MAX_TERMS {
                break;
            }
            // Further terms: added to the sum so far in f64, rounded to f32.
            best = None;
            for &k in earlier {
                if terms.iter().any(|t| t.column == k) {
                    continue;
                }
                let c = column(k);
                for negated in [false, true] {
                    let sign = if negated { -1.0 } else { 1.0 };
                    let limit = best.map_or(pays(now), |(b, _)| b.min(pays(now)));
                    let residuals = x
                        .iter()
                        .zip(sums.iter().zip(at))
                        .map(|(&o, (&s, &i))| bits(o - ord((s + sign * c[i] as f64) as f32)));
                    if let Some(b) = bounded_sum(residuals, limit) {
                        best = Some((b, Term { column: k, negated }));
                    }
                }
            }
        }
        (!terms.is_empty() && (now as f64) < RELATION_PAYS * others as f64)
            .then(|| Relation::new(terms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Four columns of noise over many scales, then their total as a model would write it
    /// (summed in f64, rounded once), then a column of noise.
    fn table(rows: usize) -> Vec<f32> {
        let mut seed = 5;
        let mut cols = vec![0f32; 6 * rows];
        for j in 0..4 {
            for i in 0..rows {
                let v = lcg(&mut seed);
                cols[j * rows + i] = if v < 0.2 {
                    0.0
                } else {
                    (v * 10f64.powf(-3.0 * lcg(&mut seed) - j as f64)) as f32
                };
            }
        }
        for i in 0..rows {
            let parts: f64 = (0..4).map(|j| cols[j * rows + i] as f64).sum();
            cols[4 * rows + i] = parts as f32;
            cols[5 * rows + i] = lcg(&mut seed) as f32;
        }
        cols
    }

    #[test]
    fn a_total_is_found_from_its_parts_and_noise_is_not() {
        let rows = 5000;
        let cols = table(rows);
        let col = |j: usize| &cols[j * rows..(j + 1) * rows];
        let find = |col: &[f32], cols: &[f32], earlier: &[usize], prev: Option<usize>| {
            let mut s = Search::default();
            s.start(rows, 6);
            s.find(col, cols, earlier, prev, None)
        };
        let r = find(col(4), &cols, &[0, 1, 2, 3], Some(3)).unwrap();
        let mut found: Vec<usize> = r.terms().iter().map(|t| t.column).collect();
        found.sort();
        assert_eq!(found, [0, 1, 2, 3]);
        assert!(r.terms().iter().all(|t| !t.negated));
        // The predictions round to the total in most rows, and within a unit or two in all.
        let mut p = Vec::new();
        r.predict(&cols, rows, &mut p);
        let off: Vec<i64> = p
            .iter()
            .zip(col(4))
            .map(|(&p, &x)| (ord(x) - ord(p as f32)).abs())
            .collect();
        assert!(off.iter().filter(|&&d| d == 0).count() * 10 > rows * 7);
        assert!(off.iter().all(|&d| d <= 3), "{:?}", off.iter().max());
        // Noise has no relation; nor has a column with nothing before it.
        assert_eq!(find(col(5), &cols, &[0, 1, 2, 3, 4], Some(4)), None);
        assert_eq!(find(col(4), &cols, &[], None), None);
        // A copy of a column coded just before is left to the reference transforms; one
        // further back is a relation of one term.
        let mut copy = cols.clone();
        copy[5 * rows..].copy_from_slice(&cols[..rows]);
        let c5 = copy[5 * rows..].to_vec();
        assert_eq!(find(&c5, &copy, &[0], Some(0)), None);
        assert_eq!(
            find(&c5, &copy, &[0, 1, 2], Some(2)),
            Some(Relation::new(vec![Term {
                column: 0,
                negated: false
            }]))
        );
    }

    #[test]
    fn a_wide_table_is_searched_among_its_last_columns() {
        // 300 columns of noise; the last one copies column 0 or column 100: only the copy of
        // a column among the last MAX_CANDIDATES before it is found.
        let (rows, width) = (1000, 300);
        let mut seed = 3;
        let mut cols: Vec<f32> = (0..rows * width).map(|_| lcg(&mut seed) as f32).collect();
        let earlier: Vec<usize> = (0..width - 1).collect();
        for (from, found) in [(0, false), (100, true)] {
            let copy = cols[from * rows..(from + 1) * rows].to_vec();
            cols[(width - 1) * rows..].copy_from_slice(&copy);
            let mut s = Search::default();
            s.start(rows, width);
            let r = s.find(&copy, &cols, &earlier, Some(width - 2), None);
            assert_eq!(r.is_some(), found, "copy of column {from}");
            if let Some(r) = r {
                assert_eq!(r.terms()[0].column, from);
            }
        }
    }

    #[test]
    fn relations_round_trip_and_forged_ones_are_errors() {
        let r = Relation::new(vec![
            Term {
                column: 300,
                negated: true,
            },
            Term {
                column: 0,
                negated: false,
            },
        ]);
        let mut buf = Vec::new();
        r.write(&mut buf);
        assert_eq!(Relation::read(&mut ByteReader::new(&buf), 301).unwrap(), r);
        // A column past the table's, no terms, too many, one column twice, cut short.
        assert!(Relation::read(&mut ByteReader::new(&buf), 300).is_err());
        for forged in [
            vec![0u8],
            vec![5, 0, 2, 4, 6, 8],
            vec![2, 6, 7],
            vec![2, 6],
            vec![],
        ] {
            assert!(
                Relation::read(&mut ByteReader::new(&forged), 10).is_err(),
                "{forged:?}"
            );
        }
        // Terms added in order, from 0, in f64.
        let cols = [1.0f32, 1e-8, 3.0, 2.0, -1.0, 0.5];
        let r = Relation::new(vec![
            Term {
                column: 1,
                negated: true,
            },
            Term {
                column: 0,
                negated: false,
            },
        ]);
        let mut p = Vec::new();
        r.predict(&cols, 3, &mut p);
        assert_eq!(p, [1.0 - 2.0, 1e-8f32 as f64 + 1.0, 3.0 - 0.5]);
    }
}
