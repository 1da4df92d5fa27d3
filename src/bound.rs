//! Error-bound specifications and their resolution to one absolute bound per column.
//!
//! Every mode is resolved to an absolute bound `E ≥ 0` before compressing (as SZ3 does), and the
//! resolved values are stored in the container header. `E = 0` means bit-exact.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::normalize::ColumnStats;

/// A point-wise error bound as the user states it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BoundSpec {
    /// `|x − x'| ≤ E` for every value.
    Abs(f64),
    /// `|x − x'| ≤ R × (max − min)`, the range taken per column (tables) or over the whole array
    /// (fields), over finite values.
    Rel(f64),
    /// Bit-exact: every value, NaN payloads, infinities, −0.0 and subnormals included.
    Lossless,
}

impl BoundSpec {
    pub(crate) fn code(self) -> u8 {
        match self {
            BoundSpec::Abs(_) => 1,
            BoundSpec::Rel(_) => 2,
            BoundSpec::Lossless => 3,
        }
    }

    pub(crate) fn value(self) -> f64 {
        match self {
            BoundSpec::Abs(v) | BoundSpec::Rel(v) => v,
            BoundSpec::Lossless => 0.0,
        }
    }

    pub(crate) fn from_code(code: u8, value: f64) -> Option<Self> {
        match code {
            1 => Some(BoundSpec::Abs(value)),
            2 => Some(BoundSpec::Rel(value)),
            3 => Some(BoundSpec::Lossless),
            _ => None,
        }
    }

    /// Whether resolving this bound needs the value range.
    pub fn needs_range(self) -> bool {
        matches!(self, BoundSpec::Rel(_))
    }

    /// The absolute bound for a column with these statistics.
    pub fn resolve(self, stats: &ColumnStats) -> f64 {
        let e = match self {
            BoundSpec::Abs(e) => e,
            BoundSpec::Rel(r) => {
                if stats.finite == 0 {
                    0.0
                } else {
                    r * (stats.max - stats.min)
                }
            }
            BoundSpec::Lossless => 0.0,
        };
        // An infinite range (f64 data spanning ±1e308) would give an infinite step; any value
        // is then within the bound, which a finite huge bound also states.
        if e.is_finite() { e } else { f64::MAX / 8.0 }
    }
}

impl FromStr for BoundSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::InvalidOption(format!(
                "invalid bound '{s}': {why} (expected abs:E, rel:R or lossless, e.g. rel:1e-3)"
            ))
        };
        let s_trim = s.trim();
        if s_trim.eq_ignore_ascii_case("lossless") {
            return Ok(BoundSpec::Lossless);
        }
        let (kind, value) = s_trim.split_once(':').ok_or_else(|| bad("no ':'"))?;
        let v: f64 = value
            .trim()
            .parse()
            .map_err(|_| bad("the value is not a number"))?;
        if !v.is_finite() || v < 0.0 {
            return Err(bad("the value must be finite and not negative"));
        }
        match kind.trim().to_ascii_lowercase().as_str() {
            "abs" => Ok(BoundSpec::Abs(v)),
            "rel" => Ok(BoundSpec::Rel(v)),
            _ => Err(bad("unknown kind")),
        }
    }
}

impl fmt::Display for BoundSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BoundSpec::Abs(v) => write!(f, "abs:{v:e}"),
            BoundSpec::Rel(v) => write!(f, "rel:{v:e}"),
            BoundSpec::Lossless => f.write_str("lossless"),
        }
    }
}

/// Which column a per-column bound applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnRef {
    /// 0-based column index.
    Index(usize),
    /// Column name (where the input has names).
    Name(String),
}

/// The bound for every column: a default and per-column overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounds {
    /// Applies to every column without an override (and to a whole field).
    pub default: BoundSpec,
    /// Per-column overrides, tables only; later entries win.
    pub overrides: Vec<(ColumnRef, BoundSpec)>,
}

impl Bounds {
    /// One bound for everything.
    pub fn new(default: BoundSpec) -> Self {
        Bounds {
            default,
            overrides: Vec::new(),
        }
    }

    /// Adds an override parsed from `COL=SPEC` (a 0-based index or a column name).
    pub fn with_override_str(mut self, s: &str) -> Result<Self> {
        let (col, spec) = s.split_once('=').ok_or_else(|| {
            Error::InvalidOption(format!(
                "invalid column bound '{s}': expected COLUMN=SPEC, e.g. 3=abs:0.5 or PT=rel:1e-4"
            ))
        })?;
        let spec: BoundSpec = spec.parse()?;
        let col = col.trim();
        let r = match col.parse::<usize>() {
            Ok(i) => ColumnRef::Index(i),
            Err(_) => ColumnRef::Name(col.to_string()),
        };
        self.overrides.push((r, spec));
        Ok(self)
    }

    /// Whether any column's bound needs value ranges.
    pub fn needs_range(&self) -> bool {
        self.default.needs_range() || self.overrides.iter().any(|(_, s)| s.needs_range())
    }

    /// The spec for each of `columns` columns (`names` may be empty).
    pub fn per_column(
        &self,
        columns: usize,
        names: &[String],
        is_table: bool,
    ) -> Result<Vec<BoundSpec>> {
        let mut specs = vec![self.default; columns];
        for (r, spec) in &self.overrides {
            if !is_table {
                return Err(Error::InvalidOption(
                    "per-column bounds apply to tables; this input is a field (use --layout table for a 2-D array of columns)".into(),
                ));
            }
            let i = match r {
                ColumnRef::Index(i) => {
                    if *i >= columns {
                        return Err(Error::InvalidOption(format!(
                            "column {i} is out of range: the table has {columns} columns (0..{})",
                            columns.saturating_sub(1)
                        )));
                    }
                    *i
                }
                ColumnRef::Name(n) => names.iter().position(|c| c == n).ok_or_else(|| {
                    if names.is_empty() {
                        Error::InvalidOption(format!(
                            "column '{n}' not found: this input has no column names; use a 0-based index or --names"
                        ))
                    } else {
                        Error::InvalidOption(format!(
                            "column '{n}' not found; the columns are: {}",
                            names.join(", ")
                        ))
                    }
                })?,
            };
            specs[i] = *spec;
        }
        Ok(specs)
    }
}

/// A column's bound as stored in the container: what was asked and what it resolved to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResolvedBound {
    /// The bound as specified.
    pub spec: BoundSpec,
    /// The absolute bound in effect (0 = bit-exact).
    pub abs: f64,
}

impl fmt::Display for ResolvedBound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.spec {
            BoundSpec::Abs(_) if self.abs == 0.0 => write!(f, "abs:0 (lossless)"),
            BoundSpec::Abs(_) => write!(f, "abs:{:e}", self.abs),
            BoundSpec::Rel(r) if self.abs == 0.0 => write!(f, "rel:{r:e} -> lossless (constant)"),
            BoundSpec::Rel(r) => write!(f, "rel:{r:e} -> abs:{:e}", self.abs),
            BoundSpec::Lossless => f.write_str("lossless"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        assert_eq!("abs:0.5".parse::<BoundSpec>().unwrap(), BoundSpec::Abs(0.5));
        assert_eq!(
            "rel:1e-3".parse::<BoundSpec>().unwrap(),
            BoundSpec::Rel(1e-3)
        );
        assert_eq!(
            "LOSSLESS".parse::<BoundSpec>().unwrap(),
            BoundSpec::Lossless
        );
        for bad in ["abs", "abs:-1", "rel:nan", "rel:inf", "foo:1", "abs:x", ""] {
            assert!(bad.parse::<BoundSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rel_resolves_like_the_independent_check() {
        // check.py: e = rel * (max - min) computed in float64.
        let stats = ColumnStats {
            min: -3.25,
            max: 1024.5,
            finite: 10,
            nonfinite: 0,
        };
        assert_eq!(
            BoundSpec::Rel(1e-3).resolve(&stats),
            1e-3 * (1024.5 - -3.25)
        );
        let none = ColumnStats::default();
        assert_eq!(BoundSpec::Rel(1e-3).resolve(&none), 0.0);
    }

    #[test]
    fn overrides_by_index_and_name() {
        let names: Vec<String> = ["PT", "Eta", "Phi"].iter().map(|s| s.to_string()).collect();
        let b = Bounds::new(BoundSpec::Rel(1e-3))
            .with_override_str("2=abs:0.5")
            .unwrap()
            .with_override_str("Eta=lossless")
            .unwrap();
        let specs = b.per_column(3, &names, true).unwrap();
        assert_eq!(
            specs,
            vec![
                BoundSpec::Rel(1e-3),
                BoundSpec::Lossless,
                BoundSpec::Abs(0.5)
            ]
        );
        let err = Bounds::new(BoundSpec::Lossless)
            .with_override_str("Mass=abs:1")
            .unwrap();
        assert!(
            err.per_column(3, &names, true)
                .unwrap_err()
                .to_string()
                .contains("PT, Eta, Phi")
        );
        assert!(
            Bounds::new(BoundSpec::Lossless)
                .with_override_str("7=abs:1")
                .unwrap()
                .per_column(3, &names, true)
                .is_err()
        );
        assert!(b.per_column(1, &[], false).is_err());
    }
}
