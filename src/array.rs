//! What an array is to baler: element type, shape, layout, column names, and how it is cut into
//! records.

use std::fmt;

use crate::element::DType;
use crate::error::{Error, Result};

/// Marks the first dimension as unknown (an input streamed from a pipe); the real count is in
/// the container's end mark.
pub const UNKNOWN: u64 = u64::MAX;

/// How the bound applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// 2-D rows × columns; one bound per column; a record is a row.
    Table,
    /// Any other array (images, grids, time series); one bound for the whole array; a record is
    /// a slice along the slowest axes.
    Field,
}

impl Layout {
    pub(crate) fn code(self) -> u8 {
        match self {
            Layout::Table => 1,
            Layout::Field => 2,
        }
    }

    pub(crate) fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(Layout::Table),
            2 => Some(Layout::Field),
            _ => None,
        }
    }

    /// The default for a shape: 2-D arrays are tables, everything else is a field.
    pub fn default_for(rank: usize) -> Self {
        if rank == 2 {
            Layout::Table
        } else {
            Layout::Field
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::Table => "table",
            Layout::Field => "field",
        })
    }
}

impl std::str::FromStr for Layout {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "table" => Ok(Layout::Table),
            "field" => Ok(Layout::Field),
            _ => Err(Error::InvalidOption(format!(
                "unknown layout '{s}' (expected table or field)"
            ))),
        }
    }
}

/// The description of an array to compress.
#[derive(Debug, Clone, PartialEq)]
pub struct ArraySpec {
    /// Element type.
    pub dtype: DType,
    /// Dimensions, slowest first (C order). `shape[0]` may be [`UNKNOWN`].
    pub shape: Vec<u64>,
    /// Table or field.
    pub layout: Layout,
    /// Column names (tables; may be empty).
    pub column_names: Vec<String>,
}

impl ArraySpec {
    /// A spec with the default layout for its rank and no column names.
    pub fn new(dtype: DType, shape: Vec<u64>) -> Self {
        let layout = Layout::default_for(shape.len());
        ArraySpec {
            dtype,
            shape,
            layout,
            column_names: Vec::new(),
        }
    }

    /// Checks that the spec is usable.
    pub fn validate(&self) -> Result<()> {
        if self.shape.is_empty() {
            return Err(Error::InvalidInput(
                "a 0-dimensional array (a scalar) cannot be compressed".into(),
            ));
        }
        if self.shape[1..].contains(&UNKNOWN) {
            return Err(Error::InvalidInput(
                "only the first dimension may be unknown (-1)".into(),
            ));
        }
        if self.layout == Layout::Table {
            if self.shape.len() != 2 {
                return Err(Error::InvalidInput(format!(
                    "a table must be 2-D (rows × columns), this array has shape {}",
                    self.shape_string()
                )));
            }
            if self.shape[1] == 0 {
                return Err(Error::InvalidInput(
                    "a table needs at least one column".into(),
                ));
            }
            if !self.column_names.is_empty() && self.column_names.len() as u64 != self.shape[1] {
                return Err(Error::InvalidInput(format!(
                    "{} column names given for {} columns",
                    self.column_names.len(),
                    self.shape[1]
                )));
            }
        } else if !self.column_names.is_empty() {
            return Err(Error::InvalidInput(
                "column names apply to tables only".into(),
            ));
        }
        let inner = self.shape[1..]
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d));
        if inner.is_none_or(|v| v > u32::MAX as u64) {
            return Err(Error::InvalidInput(format!(
                "shape {} has more than 2^32 values per slice along the first axis",
                self.shape_string()
            )));
        }
        if self.shape[0] != UNKNOWN
            && self
                .shape
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d))
                .is_none_or(|v| v.checked_mul(self.dtype.size() as u64).is_none())
        {
            return Err(Error::InvalidInput(
                "the array is too large to address".into(),
            ));
        }
        Ok(())
    }

    /// Number of columns the bound is set for: the width of a table, 1 for a field.
    pub fn bound_columns(&self) -> usize {
        match self.layout {
            Layout::Table => self.shape[1] as usize,
            Layout::Field => 1,
        }
    }

    /// Values in one slice along the first axis.
    pub fn slice_len(&self) -> u64 {
        self.shape[1..].iter().product()
    }

    /// Total number of values, if known.
    pub fn len(&self) -> Option<u64> {
        (self.shape[0] != UNKNOWN).then(|| self.shape.iter().product())
    }

    /// Whether the array is known to hold no values.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// Values per record, for a target chunk size in bytes: a table row; for a field the
    /// largest trailing sub-array (over axes `k..` with `k ≥ 1`) that fits in a chunk.
    pub fn record_len(&self, chunk_bytes: usize) -> u64 {
        match self.layout {
            Layout::Table => self.shape[1],
            Layout::Field => {
                let size = self.dtype.size() as u64;
                for k in 1..=self.shape.len() {
                    let len: u64 = self.shape[k..].iter().product();
                    if len * size <= chunk_bytes as u64 {
                        return len.max(1);
                    }
                }
                1
            }
        }
    }

    /// The shape as `a × b × c` (`?` for an unknown first dimension).
    pub fn shape_string(&self) -> String {
        shape_string(&self.shape)
    }
}

/// Formats a shape as `a × b × c`.
pub fn shape_string(shape: &[u64]) -> String {
    shape
        .iter()
        .map(|&d| {
            if d == UNKNOWN {
                "?".to_string()
            } else {
                d.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" × ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_records_fit_in_a_chunk() {
        let f = ArraySpec::new(DType::F32, vec![3, 17, 96, 192]);
        assert_eq!(f.record_len(4 << 20), 17 * 96 * 192);
        assert_eq!(f.record_len(100_000), 96 * 192);
        assert_eq!(f.record_len(100), 1);
        let line = ArraySpec::new(DType::F64, vec![1_000_000]);
        assert_eq!(line.record_len(4 << 20), 1);
        let t = ArraySpec::new(DType::F32, vec![10, 16]);
        assert_eq!(t.layout, Layout::Table);
        assert_eq!(t.record_len(1), 16);
    }

    #[test]
    fn validation_explains_what_is_wrong() {
        let mut t = ArraySpec::new(DType::F32, vec![10, 3]);
        t.column_names = vec!["a".into()];
        assert!(
            t.validate()
                .unwrap_err()
                .to_string()
                .contains("1 column names given for 3")
        );
        let mut f = ArraySpec::new(DType::F32, vec![2, 2, 2]);
        f.layout = Layout::Table;
        assert!(f.validate().is_err());
        assert!(ArraySpec::new(DType::F32, vec![]).validate().is_err());
        assert!(
            ArraySpec::new(DType::F32, vec![UNKNOWN, 4])
                .validate()
                .is_ok()
        );
        assert!(
            ArraySpec::new(DType::F32, vec![4, UNKNOWN])
                .validate()
                .is_err()
        );
    }
}
