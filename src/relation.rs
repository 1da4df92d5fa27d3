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
//! The encoder looks for a relation on a sample of the chunk's rows ([`find`]): terms are added
//! greedily while each cuts the estimated bits of the residuals by a tenth, and the relation
//! is coded only where its estimate is well under that of the column's other predictions; the
//! column's section is then kept in whichever form is smaller.
//!
//! ```text
//! relation := terms:u8 (1 to MAX_TERMS) term:uvarint × terms    (term = column · 2 + negated)
//! ```

use crate::bytes::{ByteReader, DecodeResult, Malformed, put_uvarint};
use crate::element::Element;

/// Most terms of a relation.
pub(crate) const MAX_TERMS: usize = 4;
/// Rows of a chunk a relation is looked for on (evenly spaced).
const SAMPLE: usize = 2048;
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

/// The value order of f32 bits, as an integer (−0.0 and 0.0 alike: an estimate).
#[inline(always)]
fn ord(x: f32) -> i64 {
    let b = x.to_bits() as i32 as i64;
    if b < 0 { -(b & 0x7fff_ffff) } else { b }
}

/// Estimated bits of coding `x` less `pred` over the sample: each residual's bit length.
fn cost(x: &[i64], pred: impl Iterator<Item = f64>) -> u64 {
    x.iter()
        .zip(pred)
        .map(|(&o, p)| 64 - (o - ord(p as f32)).unsigned_abs().leading_zeros() as u64)
        .sum()
}

/// Looks for a relation of f32 column `col` to the columns `earlier` (coded before it) of
/// `cols` (a chunk's columns one after the other, `rows` values each, the earlier ones
/// decoded); `prev` is the column coded just before and `model` the learned model's
/// predictions, which the relation must beat.
pub(crate) fn find(
    col: &[f32],
    cols: &[f32],
    rows: usize,
    earlier: &[usize],
    prev: Option<usize>,
    model: Option<&[f64]>,
) -> Option<Relation> {
    if earlier.is_empty() || rows < 2 {
        return None;
    }
    let step = rows.div_ceil(SAMPLE);
    let at: Vec<usize> = (1..rows).step_by(step).collect();
    let x: Vec<i64> = at.iter().map(|&i| ord(col[i])).collect();
    let column = |k: usize| &cols[k * rows..(k + 1) * rows];
    // What the column's other predictions cost.
    let mut others = cost(&x, at.iter().map(|_| 0.0));
    others = others.min(cost(&x, at.iter().map(|&i| col[i - 1] as f64)));
    if let Some(k) = prev {
        others = others.min(cost(&x, at.iter().map(|&i| column(k)[i] as f64)));
    }
    if let Some(p) = model.filter(|p| p.len() == rows) {
        others = others.min(cost(&x, at.iter().map(|&i| p[i])));
    }
    let mut sums = vec![0f64; at.len()];
    let mut now = cost(&x, sums.iter().copied());
    let mut terms: Vec<Term> = Vec::new();
    while terms.len() < MAX_TERMS {
        let mut best: Option<(u64, Term)> = None;
        for &k in earlier {
            if terms.iter().any(|t| t.column == k) {
                continue;
            }
            let c = column(k);
            for negated in [false, true] {
                let sign = if negated { -1.0 } else { 1.0 };
                let bits = cost(
                    &x,
                    sums.iter().zip(&at).map(|(&s, &i)| s + sign * c[i] as f64),
                );
                if best.is_none_or(|(b, _)| bits < b) {
                    best = Some((bits, Term { column: k, negated }));
                }
            }
        }
        match best {
            Some((bits, t)) if (bits as f64) < TERM_PAYS * now as f64 => {
                let c = column(t.column);
                let sign = if t.negated { -1.0 } else { 1.0 };
                sums.iter_mut()
                    .zip(&at)
                    .for_each(|(s, &i)| *s += sign * c[i] as f64);
                now = bits;
                terms.push(t);
            }
            _ => break,
        }
    }
    (!terms.is_empty() && (now as f64) < RELATION_PAYS * others as f64)
        .then(|| Relation::new(terms))
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
        let r = find(col(4), &cols, rows, &[0, 1, 2, 3], Some(3), None).unwrap();
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
        assert_eq!(
            find(col(5), &cols, rows, &[0, 1, 2, 3, 4], Some(4), None),
            None
        );
        assert_eq!(find(col(4), &cols, rows, &[], None, None), None);
        // A copy of a column coded just before is left to the reference transforms; one
        // further back is a relation of one term.
        let mut copy = cols.clone();
        copy[5 * rows..].copy_from_slice(&cols[..rows]);
        let c5 = copy[5 * rows..].to_vec();
        assert_eq!(find(&c5, &copy, rows, &[0], Some(0), None), None);
        assert_eq!(
            find(&c5, &copy, rows, &[0, 1, 2], Some(2), None),
            Some(Relation::new(vec![Term {
                column: 0,
                negated: false
            }]))
        );
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
