//! The chunk codec: whole records in, one self-contained payload out, and back.
//!
//! A chunk is coded column by column (a table's columns; a field is one column of all its
//! values), each column in a length-prefixed section so a reader can skip or split them
//! (`payload := section(column 0) section(column 1) ...`); what a section holds, and how one
//! column is predicted and coded, is [`column`](crate::column)'s. This module cuts and joins
//! the records: it transposes a table to columns, codes them in the model's order, keeps each
//! column's reconstruction (the decoder has those, not the originals) for the columns coded
//! after it to be predicted from (the lossless transforms use the previous column, the learned
//! predictor the columns it reads), and evaluates the model for a column. When the coded
//! payload is not smaller than the raw values, the chunk stores them raw or LZ4-compressed
//! instead and says so in its payload kind (the container's chunk flags).

use std::sync::Arc;

use crate::array::Layout;
use crate::bytes::{ByteReader, DecodeResult, Malformed, put_section};
use crate::column::{CarryFrom, ColumnCoder, KIND_LOSSLESS, KIND_QUANTIZED, KIND_RELATION};
pub use crate::column::{ColumnParams, ColumnSection, SEGMENT, inspect_payload};
use crate::element::{Element, as_f32};
use crate::lossless::Reference;
use crate::model::Model;
use crate::predict::{Grid, Lag, Predictor, carried};
use crate::relation::{self, Relation};
use crate::transpose::{columns_to_rows, rows_to_columns};

/// How a chunk's payload is stored (the low bits of the chunk flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    /// Column sections, as described in the module docs.
    Coded = 0,
    /// The values as little-endian bytes, row-major.
    Raw = 1,
    /// The raw bytes, LZ4-compressed (block format).
    Lz4 = 2,
}

impl PayloadKind {
    pub(crate) fn from_flags(flags: u16) -> Option<Self> {
        match flags & 0x3 {
            0 => Some(PayloadKind::Coded),
            1 => Some(PayloadKind::Raw),
            2 => Some(PayloadKind::Lz4),
            _ => None,
        }
    }
}
/// What every chunk of one container shares (from its header).
#[derive(Debug, Clone, PartialEq)]
pub struct CodecParams {
    /// Table or field.
    pub layout: Layout,
    /// Values per record.
    pub record_len: usize,
    /// For fields: values per row of the last axis, the stride of the lossless reference
    /// (0 = none).
    pub row_len: usize,
    /// For fields of three or more axes: values per plane of the last two axes (0 = none).
    pub plane_len: usize,
    /// Per column (one for a field).
    pub columns: Vec<ColumnParams>,
    /// The learned predictor of a table's columns, from the model section.
    pub model: Option<Arc<Model>>,
}

impl CodecParams {
    fn geometry(&self, values: usize) -> (usize, usize) {
        match self.layout {
            Layout::Table => (self.record_len, values / self.record_len.max(1)),
            Layout::Field => (1, values),
        }
    }

    /// The grid a chunk's column lies on, for the neighbour predictors: a field's rows and
    /// planes when every chunk starts at their boundaries (chunks are whole records).
    fn grid(&self) -> Grid {
        match self.layout {
            Layout::Table => Grid::default(),
            Layout::Field => {
                let aligned = |u: usize| u >= 2 && self.record_len.is_multiple_of(u);
                let row = if aligned(self.row_len) {
                    self.row_len
                } else {
                    0
                };
                let plane =
                    if row > 0 && aligned(self.plane_len) && self.plane_len.is_multiple_of(row) {
                        self.plane_len
                    } else {
                        0
                    };
                Grid { row, plane }
            }
        }
    }

    /// Up to which position in coding `order` a chunk keeps each row's key (a hash of the
    /// columns coded so far, for [`Reference::Column`], format version 8): on a table, up to
    /// its last lossless column after the first; `None` where no column after the first is
    /// lossless. The columns at later positions get no keys (their bit-exact fallback has no
    /// row repeats), and no key is folded after the last position that reads them.
    fn keyed_until(&self, order: &[usize]) -> Option<usize> {
        if self.layout != Layout::Table {
            return None;
        }
        order
            .iter()
            .rposition(|&j| self.columns[j].bound.is_lossless())
            .filter(|&p| p > 0)
    }

    /// The order a chunk's columns are coded in: the model's for a table that has one.
    pub fn column_order(&self, ncols: usize) -> Vec<usize> {
        match (&self.model, self.layout) {
            (Some(m), Layout::Table) if m.order.len() == ncols => {
                m.order.iter().map(|&j| j as usize).collect()
            }
            _ => (0..ncols).collect(),
        }
    }

    /// The lossless coder's reference for a column: a table's column coded just before it
    /// (`prev`), a field's previous row.
    fn reference<'a, T>(
        &self,
        rows: usize,
        prev: Option<&'a [T]>,
        keys: &'a [u64],
    ) -> Reference<'a, T> {
        match self.layout {
            Layout::Table => prev.map_or(Reference::None, |c| Reference::Column(c, keys)),
            Layout::Field if self.row_len > 0 && self.row_len < rows => {
                Reference::Stride(self.row_len)
            }
            Layout::Field => Reference::None,
        }
    }
}

/// Column `j` of column-major `buf` (`rows` values per column) to write, and column `r` (≠ `j`)
/// to read.
fn column_and_reference<T>(
    buf: &mut [T],
    rows: usize,
    j: usize,
    r: Option<usize>,
) -> (&mut [T], Option<&[T]>) {
    let (before, rest) = buf.split_at_mut(j * rows);
    let (col, after) = rest.split_at_mut(rows);
    let reference = r.map(|r| {
        if r < j {
            &before[r * rows..(r + 1) * rows]
        } else {
            &after[(r - j - 1) * rows..(r - j) * rows]
        }
    });
    (col, reference)
}

/// Per-worker state for coding chunks of element type `T`.
#[derive(Debug)]
pub(crate) struct ChunkCodec<T: Element> {
    params: Arc<CodecParams>,
    columns: ColumnCoder<T>,
    cols: Vec<T>,
    recon: Vec<T>,
    col_out: Vec<u8>,
    /// The learned predictor's predictions for the current column.
    preds: Vec<f64>,
    /// The chunk's columns the model reads, normalized once.
    inputs: crate::model::ChunkInputs,
    /// A carried column's values for the current column ([`Predictor::Carry`]).
    carry_preds: Vec<f64>,
    /// The coded columns' values next to the carry search's samples.
    carry_rows: CarryRows<T>,
    /// A relation's sums for the current column ([`crate::relation`]), and the chunk's search.
    relation_preds: Vec<f64>,
    relations: relation::Search,
    /// Each row's key, where the chunk keeps them.
    keys: RowKeys,
    /// Bytes of values of the largest chunk coded or decoded (which scratch that left).
    largest: u64,
}

/// Each row's key in a chunk being coded: a hash of the bits of every column coded so far
/// ([`Reference::Column`]), so rows that repeat an earlier one share it; kept up to position
/// `until` of the coding order ([`CodecParams::keyed_until`]).
#[derive(Debug, Default)]
struct RowKeys {
    keys: Vec<u64>,
    until: Option<usize>,
}

impl RowKeys {
    /// Starts a chunk of `rows` rows coded in `order`.
    fn start(&mut self, params: &CodecParams, order: &[usize], rows: usize) {
        self.until = params.keyed_until(order);
        self.keys.clear();
        if self.until.is_some() {
            self.keys.resize(rows, 0);
        }
    }

    /// The keys the column at position `p` of the order reads (none past `until`).
    fn at(&self, p: usize) -> &[u64] {
        if self.until.is_some_and(|last| p <= last) {
            &self.keys
        } else {
            &[]
        }
    }

    /// Folds the column at position `p`, column `j` of the chunk's `rows`-long columns in
    /// `values`, into the keys where a later one reads them (`values` is only read then: an
    /// encoder keeps no reconstruction where no key is kept).
    fn fold<T: Element>(&mut self, p: usize, values: &[T], j: usize, rows: usize) {
        if self.until.is_some_and(|last| p < last) {
            let col = &values[j * rows..(j + 1) * rows];
            for (k, v) in self.keys.iter_mut().zip(col) {
                *k = (k.rotate_left(23) ^ v.to_bits64()).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            }
        }
    }
}

/// The rows [`carry_candidate`] samples in a chunk of `rows` records (256 or a few more,
/// none the first or the last; none at all in a chunk under 64 records).
fn carry_sample(rows: usize) -> std::iter::StepBy<std::ops::Range<usize>> {
    let end = if rows < 64 { 1 } else { rows - 1 };
    (1..end).step_by((rows / CARRY_SAMPLE).max(1))
}

/// Rows sampled by [`carry_candidate`].
const CARRY_SAMPLE: usize = 256;

/// Each coded column's reconstruction at the records next to [`carry_candidate`]'s samples
/// (the one before and the one after each), gathered when the column is coded, while it is in
/// cache: the later columns' searches read them here, not a cache line a sample across the
/// chunk's columns (that was 4.5% of the jets' compression).
#[derive(Debug)]
struct CarryRows<T> {
    /// Samples a column.
    total: usize,
    /// Column `k`'s values before and after its samples, at `k·total…(k + 1)·total`.
    before: Vec<T>,
    after: Vec<T>,
    /// The current column's sampled values.
    values: Vec<T>,
}

impl<T: Element> CarryRows<T> {
    fn new() -> Self {
        CarryRows {
            total: 0,
            before: Vec::new(),
            after: Vec::new(),
            values: Vec::new(),
        }
    }

    /// A chunk of `rows` records of `width` columns starts.
    fn start(&mut self, width: usize, rows: usize) {
        self.total = carry_sample(rows).len();
        let zero = T::from_f64(0.0);
        self.before.resize(width * self.total, zero);
        self.after.resize(width * self.total, zero);
    }

    /// Column `k`'s reconstruction `r`, once coded.
    fn gather(&mut self, k: usize, r: &[T]) {
        if self.total == 0 {
            return;
        }
        let at = k * self.total..(k + 1) * self.total;
        let (before, after) = (&mut self.before[at.clone()], &mut self.after[at]);
        for (s, i) in carry_sample(r.len()).enumerate() {
            before[s] = r[i - 1];
            after[s] = r[i + 1];
        }
    }
}

/// The column coded before (in `earlier`, gathered in `rows`) and the lag whose
/// reconstruction, carried over one record, meets `col`'s bound most often on the sampled
/// records ([`carry_sample`]): a candidate for [`Predictor::Carry`] where it does so at least
/// a fifth of the time (a chain of steps, where one record's value after a step is the next
/// one's before it). The encoder then prices it.
fn carry_candidate<T: Element>(
    col: &[T],
    rows: &mut CarryRows<T>,
    earlier: &[usize],
    bound: crate::bound::Bound,
) -> Option<(usize, Lag)> {
    let sample = carry_sample(col.len());
    let total = sample.len();
    debug_assert_eq!(total, rows.total);
    if total == 0 {
        return None;
    }
    rows.values.clear();
    rows.values.extend(sample.clone().map(|i| col[i]));
    let xs = &rows.values;
    // The column's own previous value is what the neighbour predictor already uses: a carry
    // must do clearly better than that.
    let own = sample
        .zip(xs)
        .filter(|&(i, &x)| bound.check(x, col[i - 1]))
        .count();
    let mut best = (own + total / 10, None);
    for &k in earlier {
        for lag in [Lag::Before, Lag::After] {
            let from = if lag == Lag::Before {
                &rows.before
            } else {
                &rows.after
            };
            let from = &from[k * total..(k + 1) * total];
            let hits = xs
                .iter()
                .zip(from)
                .filter(|&(&x, &p)| bound.check(x, p))
                .count();
            if hits > best.0 {
                best = (hits, Some((k, lag)));
            }
        }
    }
    if best.0 * 5 >= total { best.1 } else { None }
}

impl<T: Element> ChunkCodec<T> {
    /// A codec for chunks described by `params`.
    pub(crate) fn new(params: Arc<CodecParams>) -> Self {
        ChunkCodec {
            params,
            columns: ColumnCoder::new(),
            cols: Vec::new(),
            recon: Vec::new(),
            col_out: Vec::new(),
            preds: Vec::new(),
            inputs: Default::default(),
            carry_preds: Vec::new(),
            carry_rows: CarryRows::new(),
            relation_preds: Vec::new(),
            relations: relation::Search::default(),
            keys: RowKeys::default(),
            largest: 0,
        }
    }

    /// This codec, its scratch kept, for chunks described by `params`.
    pub(crate) fn with_params(self, params: Arc<CodecParams>) -> Self {
        ChunkCodec { params, ..self }
    }

    /// Borrows idle cores from `spare` for the parts of a chunk that split ([`crate::spare`]).
    pub(crate) fn lending(&mut self, spare: Arc<crate::spare::Spare>) {
        self.columns.lending(spare);
    }

    /// Bytes of values of the largest chunk this codec coded or decoded.
    pub(crate) fn largest(&self) -> u64 {
        self.largest
    }

    /// Codes whole records (`data.len()` a multiple of the record length) into `out` (replacing
    /// its contents) and returns how the payload is stored.
    pub(crate) fn encode(&mut self, data: &[T], out: &mut Vec<u8>) -> PayloadKind {
        self.largest = self.largest.max((data.len() * T::BYTES) as u64);
        out.clear();
        // Coded chunks are rarely over half their raw size: reserve that once rather than grow
        // by doubling (each step a copy and fresh pages).
        out.reserve(data.len() * T::BYTES / 2);
        let params = Arc::clone(&self.params);
        debug_assert_eq!(data.len() % params.record_len.max(1), 0);
        let (ncols, rows) = params.geometry(data.len());
        let source: &[T] = if params.layout == Layout::Table {
            self.cols.resize(data.len(), T::from_f64(0.0));
            rows_to_columns(data, ncols, &mut self.cols);
            &self.cols
        } else {
            data
        };
        // A table's later columns may refer to earlier ones' reconstruction; a field's one
        // column refers only to itself, so it needs none.
        let keep_recon = params.layout == Layout::Table;
        if keep_recon {
            self.recon.resize(data.len(), T::from_f64(0.0));
        }
        let order = params.column_order(ncols);
        self.keys.start(&params, &order, rows);
        self.relations.start(rows, ncols);
        self.inputs.start(ncols, rows);
        self.carry_rows.start(ncols, rows);
        for (p, &j) in order.iter().enumerate() {
            let col = &source[j * rows..(j + 1) * rows];
            let cp = &params.columns[j];
            // The model reads the reconstructions of the columns coded before this one.
            let model_pred = match &params.model {
                // Bit-exact columns take them too (f32: the lossless MODEL transform).
                Some(m)
                    if keep_recon
                        && (!cp.bound.is_lossless() || T::DTYPE == crate::element::DType::F32)
                        && m.columns[j].is_active() =>
                {
                    let (recon, preds) = (&self.recon, &mut self.preds);
                    m.predict_column(
                        j,
                        recon,
                        rows,
                        cp.norm.offset,
                        preds,
                        Some(&mut self.inputs),
                    );
                    Some(&self.preds[..])
                }
                _ => None,
            };
            // Another column carried over one record, where one matches often enough.
            let carry = if keep_recon && !cp.bound.is_lossless() {
                carry_candidate(col, &mut self.carry_rows, &order[..p], cp.bound).map(|(k, lag)| {
                    let reference = &self.recon[k * rows..(k + 1) * rows];
                    carried(reference, lag, cp.norm.offset, &mut self.carry_preds);
                    CarryFrom {
                        preds: &self.carry_preds,
                        column: k,
                        lag,
                    }
                })
            } else {
                None
            };
            // The column coded just before this one.
            let before = p.checked_sub(1).map(|q| order[q]);
            // A bit-exact f32 column of a table may be a sum of columns coded before it.
            let relation = if keep_recon && cp.bound.is_lossless() {
                as_f32(col).zip(as_f32(&self.recon)).and_then(|(c, recon)| {
                    let found = self
                        .relations
                        .find(c, recon, &order[..p], before, model_pred)?;
                    found.predict(recon, rows, &mut self.relation_preds);
                    Some(found)
                })
            } else {
                None
            };
            let relation = relation.as_ref().map(|r| (r, &self.relation_preds[..]));
            let (recon, prev) = if keep_recon {
                let (c, prev) = column_and_reference(&mut self.recon, rows, j, before);
                (Some(c), prev)
            } else {
                (None, None)
            };
            let reference = params.reference(rows, prev, self.keys.at(p));
            self.col_out.clear();
            self.columns.encode(
                col,
                reference,
                cp,
                params.grid(),
                model_pred,
                carry,
                relation,
                recon,
                &mut self.col_out,
            );
            put_section(out, &self.col_out);
            self.keys.fold(p, &self.recon, j, rows);
            if keep_recon {
                self.carry_rows
                    .gather(j, &self.recon[j * rows..(j + 1) * rows]);
            }
        }
        let raw_len = data.len() * T::BYTES;
        if out.len() >= raw_len {
            let raw = le_bytes(data);
            let packed = lz4_flex::block::compress(&raw);
            out.clear();
            if packed.len() < raw.len() {
                out.extend_from_slice(&packed);
                return PayloadKind::Lz4;
            }
            out.extend_from_slice(&raw);
            return PayloadKind::Raw;
        }
        PayloadKind::Coded
    }

    /// Decodes a payload holding `values` values, appending them row-major to `out`.
    pub(crate) fn decode(
        &mut self,
        kind: PayloadKind,
        payload: &[u8],
        values: usize,
        out: &mut Vec<T>,
    ) -> DecodeResult<()> {
        let start = out.len();
        out.resize(start + values, T::from_f64(0.0));
        let r = self.decode_into(kind, payload, &mut out[start..]);
        if r.is_err() {
            out.truncate(start);
        }
        r
    }

    /// Decodes a payload holding `out.len()` values into `out`, row-major: a field's values
    /// go straight to their place (a caller's array), a table's through the codec's columns.
    pub(crate) fn decode_into(
        &mut self,
        kind: PayloadKind,
        payload: &[u8],
        out: &mut [T],
    ) -> DecodeResult<()> {
        let values = out.len();
        self.largest = self.largest.max((values * T::BYTES) as u64);
        let params = Arc::clone(&self.params);
        if !values.is_multiple_of(params.record_len.max(1)) {
            return Err(Malformed::new(
                "value count is not a whole number of records",
            ));
        }
        match kind {
            PayloadKind::Raw => return le_values(payload, out),
            PayloadKind::Lz4 => {
                let size = values
                    .checked_mul(T::BYTES)
                    .ok_or_else(|| Malformed::new("chunk size overflows"))?;
                let raw = lz4_flex::block::decompress(payload, size)
                    .map_err(|e| Malformed(format!("LZ4 payload: {e}")))?;
                return le_values(&raw, out);
            }
            PayloadKind::Coded => {}
        }
        let (ncols, rows) = params.geometry(values);
        let mut r = ByteReader::new(payload);
        let table = params.layout == Layout::Table;
        let dest: &mut [T] = if table {
            self.cols.resize(values, T::from_f64(0.0));
            &mut self.cols
        } else {
            &mut *out
        };
        let order = params.column_order(ncols);
        self.keys.start(&params, &order, rows);
        self.inputs.start(ncols, rows);
        for (p, &j) in order.iter().enumerate() {
            let section = r
                .section()
                .map_err(|e| Malformed(format!("column {j}: {}", e.0)))?;
            let cp = &params.columns[j];
            // The model's predictions, if this section asks for them (kind, predictor id).
            let wants_model = section.len() >= 2
                && ((section[0] == KIND_QUANTIZED && section[1] == Predictor::Model.id())
                    || (section[0] == KIND_LOSSLESS
                        && crate::lossless::wants_model(&section[1..])));
            let wants_carry = section.len() >= 2
                && section[0] == KIND_QUANTIZED
                && section[1] == Predictor::Carry.id();
            let model_pred = match &params.model {
                _ if section.first() == Some(&KIND_RELATION) => {
                    // Its terms must be decoded already.
                    let rel = Relation::read(&mut ByteReader::new(&section[1..]), ncols)
                        .map_err(|e| Malformed(format!("column {j}: {}", e.0)))?;
                    if let Some(t) = rel.terms().iter().find(|t| !order[..p].contains(&t.column)) {
                        return Err(Malformed(format!(
                            "column {j}: predicted from column {}, not decoded before it",
                            t.column
                        )));
                    }
                    rel.predict(dest, rows, &mut self.preds);
                    Some(&self.preds[..])
                }
                Some(m) if wants_model && m.columns[j].is_active() => {
                    let (preds, inputs) = (&mut self.preds, &mut self.inputs);
                    m.predict_column(j, dest, rows, cp.norm.offset, preds, Some(inputs));
                    Some(&self.preds[..])
                }
                _ if wants_carry => {
                    // Which column, one record before or after: it must be decoded already.
                    let mut s = ByteReader::new(&section[2..]);
                    let lag = s.u8().ok().and_then(Lag::from_byte);
                    let k = s.uvarint().ok();
                    match (lag, k) {
                        (Some(lag), Some(k)) if order[..p].contains(&(k as usize)) => {
                            let k = k as usize;
                            carried(
                                &dest[k * rows..(k + 1) * rows],
                                lag,
                                cp.norm.offset,
                                &mut self.preds,
                            );
                            Some(&self.preds[..])
                        }
                        _ => {
                            return Err(Malformed(format!(
                                "column {j}: carried over from a column not decoded before it"
                            )));
                        }
                    }
                }
                _ => None,
            };
            let prev = p.checked_sub(1).map(|q| order[q]);
            let (col, prev) = column_and_reference(dest, rows, j, prev);
            let reference = params.reference(rows, prev, self.keys.at(p));
            self.columns
                .decode(section, reference, cp, params.grid(), model_pred, col)
                .map_err(|e| Malformed(format!("column {j}: {}", e.0)))?;
            self.keys.fold(p, dest, j, rows);
        }
        if !r.is_empty() {
            return Err(Malformed(format!(
                "{} bytes left after the last column",
                r.remaining()
            )));
        }
        if table {
            columns_to_rows(&self.cols, ncols, out);
        }
        Ok(())
    }
}

/// The values as little-endian bytes.
pub(crate) fn le_bytes<T: Element>(data: &[T]) -> std::borrow::Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        std::borrow::Cow::Borrowed(bytemuck::cast_slice(data))
    } else {
        let mut v = data.to_vec();
        T::swap_bytes_in_place(&mut v);
        std::borrow::Cow::Owned(bytemuck::cast_slice(&v).to_vec())
    }
}

/// Fills `out` with the little-endian values `bytes` (exactly as many).
fn le_values<T: Element>(bytes: &[u8], out: &mut [T]) -> DecodeResult<()> {
    if Some(bytes.len()) != out.len().checked_mul(T::BYTES) {
        return Err(Malformed(format!(
            "raw payload has {} bytes for {} values of {} bytes",
            bytes.len(),
            out.len(),
            T::BYTES
        )));
    }
    bytemuck::cast_slice_mut::<T, u8>(out).copy_from_slice(bytes);
    T::from_le_in_place(out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bound::Bound;
    use crate::normalize::Normalization;
    use crate::residual::first_violation;

    /// Uniform numbers in [0, 1) from Knuth's MMIX LCG (the same on every machine).
    fn uniform(seed: u64) -> impl FnMut() -> f64 {
        let mut x = seed;
        move || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn params(layout: Layout, record_len: usize, bounds: &[f64]) -> Arc<CodecParams> {
        let bounds: Vec<Bound> = bounds.iter().map(|&b| Bound::abs(b)).collect();
        params_with(layout, record_len, &bounds)
    }

    fn params_with(layout: Layout, record_len: usize, bounds: &[Bound]) -> Arc<CodecParams> {
        Arc::new(CodecParams {
            layout,
            record_len,
            row_len: if layout == Layout::Field { 7 } else { 0 },
            plane_len: 0,
            columns: bounds
                .iter()
                .map(|&b| ColumnParams {
                    bound: b,
                    norm: Normalization {
                        offset: 0.25,
                        scale: 1.0,
                    },
                })
                .collect(),
            model: None,
        })
    }

    /// A field's codec parameters: rows of `row_len`, planes of `plane_len`, records of
    /// `record_len` values, one bound and normalization.
    fn field_params(
        (row_len, plane_len, record_len): (usize, usize, usize),
        bound: f64,
        (offset, scale): (f64, f64),
    ) -> Arc<CodecParams> {
        Arc::new(CodecParams {
            layout: Layout::Field,
            record_len,
            row_len,
            plane_len,
            columns: vec![ColumnParams {
                bound: Bound::abs(bound),
                norm: Normalization { offset, scale },
            }],
            model: None,
        })
    }

    /// Where the first column section's body starts in a payload (after its length prefix).
    fn first_section(payload: &[u8]) -> usize {
        let len = ByteReader::new(payload).uvarint().unwrap();
        payload.len() - len as usize
    }

    fn round_trip<T: Element>(p: Arc<CodecParams>, data: &[T]) -> (PayloadKind, usize) {
        let mut codec = ChunkCodec::<T>::new(Arc::clone(&p));
        let mut payload = Vec::new();
        let kind = codec.encode(data, &mut payload);
        let mut out = Vec::new();
        let mut dec = ChunkCodec::<T>::new(Arc::clone(&p));
        dec.decode(kind, &payload, data.len(), &mut out).unwrap();
        assert_eq!(out.len(), data.len());
        let w = if p.layout == Layout::Table {
            p.record_len
        } else {
            1
        };
        for j in 0..w {
            let b = p.columns[j.min(p.columns.len() - 1)].bound;
            let orig: Vec<T> = data.iter().skip(j).step_by(w).copied().collect();
            let back: Vec<T> = out.iter().skip(j).step_by(w).copied().collect();
            assert_eq!(
                first_violation(&orig, &back, b),
                None,
                "column {j} bound {b}"
            );
            if b.is_lossless() {
                assert!(
                    orig.iter()
                        .zip(&back)
                        .all(|(x, y)| x.to_bits64() == y.to_bits64())
                );
            }
        }
        (kind, payload.len())
    }

    #[test]
    fn a_codec_codes_a_chunk_alike_after_another() {
        // A worker's codec keeps scratch across chunks (the model's normalized inputs among
        // it): a chunk coded after another of the same length gives the bytes a fresh codec
        // gives, and decodes alike.
        let (rows, width) = (3000, 6);
        let model = crate::model::tests::random_model(width, 3, 5);
        let mut rnd = uniform(77);
        // Records the model predicts well (each column its prediction from the columns
        // coded before it, plus a little noise), so its codes are taken.
        let mut chunk = || -> Vec<f32> {
            let mut cols = vec![0f32; rows * width];
            let mut row = vec![0f64; width];
            for r in 0..rows {
                for &j in &model.order {
                    let j = j as usize;
                    let p = model.predict_one(j, &row, 0.0);
                    row[j] = f64::from((p + 0.05 * rnd()) as f32);
                    cols[r * width + j] = row[j] as f32;
                }
            }
            cols
        };
        let mut p = (*params(Layout::Table, width, &[1e-3; 6])).clone();
        p.model = Some(Arc::new(model.clone()));
        let p = Arc::new(p);
        let (a, b) = (chunk(), chunk());
        let mut worker = ChunkCodec::<f32>::new(Arc::clone(&p));
        let (mut first, mut second, mut fresh) = (Vec::new(), Vec::new(), Vec::new());
        let kind_a = worker.encode(&a, &mut first);
        let kind = worker.encode(&b, &mut second);
        ChunkCodec::<f32>::new(Arc::clone(&p)).encode(&b, &mut fresh);
        assert_eq!(second, fresh);
        let (mut back, mut alone) = (Vec::new(), Vec::new());
        worker.decode(kind_a, &first, a.len(), &mut back).unwrap();
        back.clear();
        worker.decode(kind, &second, b.len(), &mut back).unwrap();
        let mut dec = ChunkCodec::<f32>::new(Arc::clone(&p));
        dec.decode(kind, &second, b.len(), &mut alone).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&alone));
    }

    #[test]
    fn table_columns_keep_their_own_bounds() {
        let rows = 3000;
        let data: Vec<f32> = (0..rows * 4)
            .map(|i| {
                let (r, c) = (i / 4, i % 4);
                match c {
                    0 => (r as f32 * 0.01).sin() * 100.0,
                    1 => {
                        if r % 17 == 0 {
                            f32::NAN
                        } else {
                            r as f32
                        }
                    }
                    2 => -0.0,
                    _ => (r % 5) as f32,
                }
            })
            .collect();
        let (kind, size) = round_trip(params(Layout::Table, 4, &[0.01, 0.5, 1e-3, 0.0]), &data);
        assert_eq!(kind, PayloadKind::Coded);
        assert!(size < data.len() * 4 / 2);
    }

    #[test]
    fn pointwise_relative_columns_code_zeros_and_signs_cheaply() {
        // Half zeros and values 0.5..500 (a momentum with empty entries); a signed column
        // spanning four decades either side of 0; both at 10 bits.
        let rows = 20_000;
        let mut rnd = uniform(12345);
        let data: Vec<f32> = (0..rows * 2)
            .map(|i| {
                let u = rnd();
                if i % 2 == 0 {
                    if u < 0.5 {
                        0.0
                    } else {
                        (0.5 * 1000f64.powf(rnd())) as f32
                    }
                } else {
                    let m = 10f64.powf(4.0 * rnd() - 2.0);
                    (if u < 0.5 { -m } else { m }) as f32
                }
            })
            .collect();
        let r = 1.0 / 2048.0;
        let p = params_with(Layout::Table, 2, &[Bound::PwRel(r), Bound::PwRel(r)]);
        let (kind, size) = round_trip(Arc::clone(&p), &data);
        assert_eq!(kind, PayloadKind::Coded);
        // Zeros cost about a bit and the rest about 10 mantissa bits plus the exponent's
        // entropy: 11.25 bits a value (13.7 with zeros and the signs' halves a billion
        // ordinals apart, as they are without the ordinal gap).
        let bits = size as f64 * 8.0 / data.len() as f64;
        assert!(bits < 12.0, "{bits} bits per value");
        // The decoded zeros are +0.0, bit for bit.
        let mut codec = ChunkCodec::<f32>::new(Arc::clone(&p));
        let mut payload = Vec::new();
        codec.encode(&data, &mut payload);
        let mut out = Vec::new();
        codec.decode(kind, &payload, data.len(), &mut out).unwrap();
        for (a, b) in data.iter().zip(&out) {
            if *a == 0.0 {
                assert_eq!(b.to_bits(), a.to_bits());
            }
        }
    }

    #[test]
    fn values_already_on_a_coarser_grid_come_back_exactly() {
        // Values rounded to 8 mantissa bits (as NanoAOD stores its branches), with zeros and
        // both signs, coded at 12 bits: the step follows the data's own grid, every value
        // comes back bit for bit, and the size is that of 8 bits, not 12.
        let mut x = 99u64;
        let data: Vec<f32> = (0..30_000)
            .map(|i| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let u = (x >> 11) as f64 / (1u64 << 53) as f64;
                let v = (if i % 3 == 0 { -1.0 } else { 1.0 }) * 0.01 * 1e5f64.powf(u);
                let v = if i % 7 == 0 { 0.0 } else { v as f32 };
                f32::from_bits((v.to_bits() + (1 << 14)) & !((1 << 15) - 1))
            })
            .collect();
        let size = |r: f64| {
            let p = params_with(Layout::Table, 1, &[Bound::PwRel(r)]);
            let mut codec = ChunkCodec::<f32>::new(Arc::clone(&p));
            let mut payload = Vec::new();
            let kind = codec.encode(&data, &mut payload);
            let mut out = Vec::new();
            codec.decode(kind, &payload, data.len(), &mut out).unwrap();
            (payload.len(), out)
        };
        let (at12, back) = size(1.0 / 8192.0);
        assert!(
            data.iter()
                .zip(&back)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
        let (at8, _) = size(1.0 / 512.0);
        assert!(
            (at12 as f64) < at8 as f64 * 1.02,
            "{at12} bytes at 12 bits, {at8} at 8"
        );
    }

    #[test]
    fn fields_and_f64() {
        let data: Vec<f64> = (0..7 * 500)
            .map(|i| ((i % 7) as f64 * 0.3).cos() + (i / 7) as f64 * 1e-3)
            .collect();
        round_trip(params(Layout::Field, 7, &[1e-4]), &data);
        round_trip(params(Layout::Field, 7, &[0.0]), &data);
    }

    #[test]
    fn neighbour_predictors_are_chosen_where_they_pay() {
        // A smooth 3-D field of 6 planes of 40 × 50, with exceptions inside the recurrences:
        // interpolation over 3 and 2 (rows stacked) axes as the chunk's grid allows, else the
        // previous value.
        let (w, h, d) = (50usize, 40usize, 6usize);
        let mut data: Vec<f32> = (0..w * h * d)
            .map(|i| {
                let (x, y, z) = ((i % w) as f32, ((i / w) % h) as f32, (i / (w * h)) as f32);
                (x * 0.2).sin() * (y * 0.1).cos() * (30.0 + 3.0 * z) + (y * 0.1).cos() * 20.0
            })
            .collect();
        for p in [0, 1, w, w + 1, w * h + 3, data.len() - 1] {
            data[p] = f32::NAN;
        }
        data[777] = -0.0;
        data[778] = 1e30;
        let field = |row_len, plane_len, record_len| {
            field_params((row_len, plane_len, record_len), 0.01, (0.0, 60.0))
        };
        let mut sizes = Vec::new();
        for (p, want) in [
            (field(w, w * h, w * h), Predictor::Interp),
            (field(w, w * h, w), Predictor::Interp),
            (field(w, w * h, 1), Predictor::Previous),
        ] {
            let (kind, size) = round_trip(Arc::clone(&p), &data);
            assert_eq!(kind, PayloadKind::Coded);
            let mut payload = Vec::new();
            ChunkCodec::<f32>::new(p).encode(&data, &mut payload);
            let cols = inspect_payload(&payload, &[0], &[false]).unwrap();
            assert_eq!(cols[0].predictor, Some(want));
            assert_eq!(cols[0].exceptions, 8);
            sizes.push(size);
        }
        assert!(sizes[0] < sizes[1] && sizes[1] < sizes[2], "{sizes:?}");

        // Ordered records of a table: the previous row.
        let table: Vec<f64> = (0..5000)
            .flat_map(|r: u64| {
                let mut h = r.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                h ^= h >> 29;
                h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
                [r as f64 * 0.37, ((h >> 32) % 1000) as f64]
            })
            .collect();
        let p = params(Layout::Table, 2, &[1e-3, 1e-3]);
        round_trip(Arc::clone(&p), &table);
        let mut payload = Vec::new();
        ChunkCodec::<f64>::new(p).encode(&table, &mut payload);
        let cols = inspect_payload(&payload, &[0, 1], &[false, false]).unwrap();
        assert_eq!(cols[0].predictor, Some(Predictor::Previous));
        assert_eq!(cols[1].predictor, Some(Predictor::Centre));
    }

    /// Records of a chain of steps: column 1 is the value after the step, column 2 the value
    /// before it, which is the value after the step of the record before (a detector
    /// simulation's pre- and post-step energies), with fresh chains starting now and then.
    fn chain_table(rows: usize) -> Vec<f64> {
        let mut next = uniform(5);
        let mut before = 1000.0;
        let mut t = Vec::with_capacity(rows * 3);
        for _ in 0..rows {
            if next() < 0.05 {
                before = 100.0 + 900.0 * next();
            }
            let after = before * (0.5 + 0.5 * next());
            t.extend_from_slice(&[next(), after, before]);
            before = after;
        }
        t
    }

    #[test]
    fn the_carry_search_on_gathered_rows_is_the_search_on_the_columns() {
        // The candidate found from the gathered rows is the one counted on the columns
        // themselves: each earlier column and lag, its reconstruction one record before or
        // after each sampled record checked against the bound, the most hits above the
        // column's own previous value by a tenth of the sample, kept where a fifth.
        fn reference(
            col: &[f64],
            recon: &[f64],
            earlier: &[usize],
            bound: Bound,
        ) -> Option<(usize, Lag)> {
            let rows = col.len();
            let sample: Vec<usize> = (1..rows - 1).step_by((rows / 256).max(1)).collect();
            let total = sample.len();
            let own = sample
                .iter()
                .filter(|&&i| bound.check(col[i], col[i - 1]))
                .count();
            let mut best = (own + total / 10, None);
            for &k in earlier {
                let r = &recon[k * rows..(k + 1) * rows];
                for (lag, d) in [(Lag::Before, -1), (Lag::After, 1)] {
                    let hits = (sample.iter())
                        .filter(|&&i| bound.check(col[i], r[(i as isize + d) as usize]))
                        .count();
                    if hits > best.0 {
                        best = (hits, Some((k, lag)));
                    }
                }
            }
            if best.0 * 5 >= total { best.1 } else { None }
        }
        let mut rnd = uniform(99);
        for rows in [64, 300, 6000, 33_334] {
            let width = 5;
            let mut recon: Vec<f64> = (0..rows * width).map(|_| rnd() * 10.0).collect();
            // Column 3 follows column 1 one record later in most records, column 4 column 0
            // one record earlier in some.
            for i in 1..rows {
                if rnd() < 0.8 {
                    recon[3 * rows + i] = recon[rows + i - 1];
                }
                if i + 1 < rows && rnd() < 0.3 {
                    recon[4 * rows + i] = recon[i + 1];
                }
            }
            let mut gathered = CarryRows::new();
            gathered.start(width, rows);
            for k in 0..width {
                gathered.gather(k, &recon[k * rows..(k + 1) * rows]);
            }
            for j in 0..width {
                let col = &recon[j * rows..(j + 1) * rows];
                let earlier: Vec<usize> = (0..width).filter(|&k| k != j).collect();
                for bound in [Bound::abs(1e-3), Bound::abs(3.0), Bound::PwRel(0.3)] {
                    let want = reference(col, &recon, &earlier, bound);
                    let got = carry_candidate(col, &mut gathered, &earlier, bound);
                    assert_eq!(got, want, "rows {rows} column {j} {bound}");
                }
            }
            if rows == 6000 {
                let col = &recon[3 * rows..4 * rows];
                let got = carry_candidate(col, &mut gathered, &[0, 1, 2], Bound::abs(1e-3));
                assert_eq!(got, Some((1, Lag::Before)));
            }
        }
    }

    #[test]
    fn a_column_carried_over_from_another_record_is_predicted_from_it() {
        let table = chain_table(6000);
        for bound in [Bound::abs(1e-3), Bound::PwRel(1.0 / 2048.0)] {
            // The columns' true ranges (an ordinal column's predictions are held to them).
            let mut cp = (*params_with(Layout::Table, 3, &[bound; 3])).clone();
            for (c, (offset, scale)) in
                cp.columns
                    .iter_mut()
                    .zip([(0.5, 0.5), (500.0, 500.0), (500.0, 500.0)])
            {
                c.norm = Normalization { offset, scale };
            }
            let p = Arc::new(cp);
            let (_, carried) = round_trip(Arc::clone(&p), &table);
            let mut payload = Vec::new();
            ChunkCodec::<f64>::new(Arc::clone(&p)).encode(&table, &mut payload);
            let ordinal = matches!(bound, Bound::PwRel(_));
            let cols = inspect_payload(&payload, &[0, 1, 2], &[ordinal; 3]).unwrap();
            assert_eq!(cols[2].predictor, Some(Predictor::Carry), "{bound}");
            // The same values with the chain broken (column 2 shuffled by one record in
            // blocks) cost much more.
            let mut broken = table.clone();
            for r in (0..5998).step_by(2) {
                broken.swap(r * 3 + 2, (r + 1) * 3 + 2);
            }
            let (_, plain) = round_trip(Arc::clone(&p), &broken);
            assert!(carried * 10 < plain * 8, "{bound}: {carried} vs {plain}");
        }
    }

    #[test]
    fn a_carry_from_a_column_not_yet_decoded_is_an_error() {
        let table = chain_table(2000);
        let p = params(Layout::Table, 3, &[1e-3; 3]);
        let mut payload = Vec::new();
        ChunkCodec::<f64>::new(Arc::clone(&p)).encode(&table, &mut payload);
        // Column 2's section names column 1; make it name itself, then a later one (none),
        // then a column past the table.
        let mut r = ByteReader::new(&payload);
        r.section().unwrap();
        r.section().unwrap();
        let mut third = ByteReader::new(&payload[payload.len() - r.remaining()..]);
        third.uvarint().unwrap();
        let head = payload.len() - third.remaining();
        assert_eq!(payload[head + 1], Predictor::Carry.id());
        assert_eq!(payload[head + 3], 1);
        for bad in [2u8, 3, 100] {
            let mut forged = payload.clone();
            forged[head + 3] = bad;
            let err = ChunkCodec::<f64>::new(Arc::clone(&p))
                .decode(PayloadKind::Coded, &forged, table.len(), &mut Vec::new())
                .unwrap_err();
            assert!(err.0.contains("not decoded before"), "{}", err.0);
        }
    }

    /// Rows of four parts spanning several decades (a fifth of them 0), their total summed in
    /// f64 and rounded once (as a model writes a total), and a column of noise.
    fn totals_table(rows: usize) -> Vec<f32> {
        let mut next = uniform(9);
        let mut t = Vec::with_capacity(rows * 6);
        for _ in 0..rows {
            let parts: Vec<f32> = (0..4)
                .map(|j| {
                    if next() < 0.2 {
                        0.0
                    } else {
                        (next() * 10f64.powf(-3.0 * next() - j as f64)) as f32
                    }
                })
                .collect();
            let total: f64 = parts.iter().map(|&v| v as f64).sum();
            t.extend_from_slice(&parts);
            t.extend([total as f32, next() as f32]);
        }
        t
    }

    #[test]
    fn a_total_of_earlier_columns_is_coded_by_its_relation() {
        let mut table = totals_table(6000);
        // Special values in parts and totals, bit for bit: NaN (with a payload), ±Inf, −0.0.
        for (row, v) in [
            (10, f32::NAN),
            (20, f32::from_bits(0x7fc0_1234)),
            (30, f32::INFINITY),
            (40, f32::NEG_INFINITY),
            (50, -0.0),
        ] {
            table[row * 6 + 1] = v;
            table[row * 6 + 4] = (0..4).map(|j| table[row * 6 + j] as f64).sum::<f64>() as f32;
        }
        table[60 * 6 + 4] = f32::from_bits(0xffc0_0001);
        let p = params_with(Layout::Table, 6, &[Bound::Lossless; 6]);
        let mut payload = Vec::new();
        let kind = ChunkCodec::<f32>::new(Arc::clone(&p)).encode(&table, &mut payload);
        assert_eq!(kind, PayloadKind::Coded);
        round_trip(Arc::clone(&p), &table);
        let order: Vec<usize> = (0..6).collect();
        let sections = inspect_payload(&payload, &order, &[false; 6]).unwrap();
        assert!(sections.iter().all(|s| s.lossless));
        // About a bit a value, against 3 to 4 bytes for the parts and the noise.
        assert!(sections[4].bytes * 8 < 6000 * 2, "{}", sections[4].bytes);
        assert!(
            sections
                .iter()
                .enumerate()
                .all(|(j, s)| j == 4 || s.bytes > 6000 * 2)
        );
        // The total's section: kind, then its relation's terms (the four parts).
        let mut r = ByteReader::new(&payload);
        for _ in 0..4 {
            r.section().unwrap();
        }
        let at = payload.len() - r.remaining();
        let body = payload.len() - r.section().unwrap().len() - r.remaining();
        assert!(body > at);
        assert_eq!(payload[body], KIND_RELATION);
        let rel = Relation::read(&mut ByteReader::new(&payload[body + 1..]), 6).unwrap();
        let mut cols: Vec<usize> = rel.terms().iter().map(|t| t.column).collect();
        cols.sort();
        assert_eq!(cols, [0, 1, 2, 3]);
        // Its first term made to name the total itself or the column after it: an error.
        for bad in [4u8, 5] {
            let mut forged = payload.clone();
            forged[body + 2] = bad << 1;
            let err = ChunkCodec::<f32>::new(Arc::clone(&p))
                .decode(PayloadKind::Coded, &forged, table.len(), &mut Vec::new())
                .unwrap_err();
            assert!(err.0.contains("not decoded before"), "{}", err.0);
        }
        // The total lossy (quantized, no relation), or a part lossy (the relation adds its
        // reconstruction, as the decoder has it): every column within its bound.
        let mut bounds = [Bound::Lossless; 6];
        bounds[4] = Bound::abs(1e-9);
        round_trip(params_with(Layout::Table, 6, &bounds), &table);
        let mut bounds = [Bound::Lossless; 6];
        bounds[3] = Bound::abs(1e-9);
        round_trip(params_with(Layout::Table, 6, &bounds), &table);
    }

    #[test]
    fn a_predictor_that_does_not_fit_the_shape_is_an_error() {
        // A Lorenzo id in a table's column (a forged or damaged chunk).
        let table: Vec<f64> = (0..5000).map(|r| r as f64 * 0.37).collect();
        let p = params(Layout::Table, 1, &[1e-3]);
        let mut payload = Vec::new();
        ChunkCodec::<f64>::new(Arc::clone(&p)).encode(&table, &mut payload);
        let head = first_section(&payload);
        assert_eq!(payload[head + 1], Predictor::Previous.id());
        payload[head + 1] = Predictor::Lorenzo2.id();
        let err = ChunkCodec::<f64>::new(p)
            .decode(PayloadKind::Coded, &payload, table.len(), &mut Vec::new())
            .unwrap_err();
        assert!(err.0.contains("lorenzo2"), "{}", err.0);
    }

    #[test]
    fn an_invalid_interpolation_order_is_an_error() {
        // A smooth 2-D field is coded by interpolation; a damaged axis order (a third axis on
        // a 2-D grid) is reported, not followed.
        let (w, h) = (64usize, 64usize);
        let data: Vec<f64> = (0..w * h)
            .map(|i| ((i % w) as f64 * 0.1).sin() * ((i / w) as f64 * 0.07).cos())
            .collect();
        let p = field_params((w, w * h, w), 1e-4, (0.0, 1.0));
        let mut payload = Vec::new();
        ChunkCodec::<f64>::new(Arc::clone(&p)).encode(&data, &mut payload);
        let head = first_section(&payload);
        assert_eq!(payload[head + 1], Predictor::Interp.id());
        assert!(
            matches!(payload[head + 2], 0b0100 | 0b0001),
            "{}",
            payload[head + 2]
        );
        payload[head + 2] = 0b10_0100;
        let err = ChunkCodec::<f64>::new(p)
            .decode(PayloadKind::Coded, &payload, data.len(), &mut Vec::new())
            .unwrap_err();
        assert!(err.0.contains("axis order"), "{}", err.0);
    }

    /// A 3-D field (planes of `w × h`, `d` of them) of smooth waves with turbulent patches: at a
    /// loose bound most interpolation codes are 0.
    fn waves(w: usize, h: usize, d: usize) -> Vec<f32> {
        let mut seed = 5u64;
        (0..w * h * d)
            .map(|i| {
                let (x, y, z) = ((i % w) as f32, ((i / w) % h) as f32, (i / (w * h)) as f32);
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let noise = ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.02;
                let patch = if (x - 40.0).abs() < 12.0 && (y - 30.0).abs() < 10.0 {
                    8.0
                } else {
                    1.0
                };
                (x * 0.11 + z * 0.3).sin() * (y * 0.07 - z * 0.2).cos() + patch * noise
            })
            .collect()
    }

    #[test]
    fn level_wise_steps_are_chosen_where_most_codes_are_zero() {
        let (w, h, d) = (96usize, 80usize, 12usize);
        let data = waves(w, h, d);
        let levels = |bound: f64| {
            let p = field_params((w, w * h, w * h), bound, (0.0, 1.0));
            let mut payload = Vec::new();
            ChunkCodec::<f32>::new(Arc::clone(&p)).encode(&data, &mut payload);
            let head = first_section(&payload);
            let interp = [Predictor::Interp.id(), Predictor::InterpPlanes.id()];
            assert!(interp.contains(&payload[head + 1]));
            round_trip(p, &data);
            payload[head + 2] >> 6
        };
        // Codes mostly 0 (a bound of 2% of the range): a finer step at the coarse levels;
        // a tight bound: one step (coded in over 0.75 bits per value, so not even tried).
        assert_ne!(levels(0.04), 0);
        assert_eq!(levels(1e-5), 0);
    }

    #[test]
    fn level_wise_steps_in_an_ordinal_column_are_an_error() {
        // A point-wise relative field is quantized as ordinals, whose steps are whole numbers
        // of ordinals: level-wise steps there are a forgery, reported, not followed.
        let (w, h, d) = (96usize, 80usize, 4usize);
        let data: Vec<f32> = waves(w, h, d).iter().map(|v| v + 3.0).collect();
        let p = Arc::new(CodecParams {
            layout: Layout::Field,
            record_len: w * h,
            row_len: w,
            plane_len: w * h,
            columns: vec![ColumnParams {
                bound: Bound::PwRel(1e-2),
                norm: Normalization {
                    offset: 3.0,
                    scale: 1.0,
                },
            }],
            model: None,
        });
        let mut payload = Vec::new();
        ChunkCodec::<f32>::new(Arc::clone(&p)).encode(&data, &mut payload);
        let head = first_section(&payload);
        let interp = [Predictor::Interp.id(), Predictor::InterpPlanes.id()];
        assert!(interp.contains(&payload[head + 1]));
        assert_eq!(payload[head + 2] >> 6, 0);
        round_trip(Arc::clone(&p), &data);
        for levels in 1..3u8 {
            let mut bad = payload.clone();
            bad[head + 2] |= levels << 6;
            let err = ChunkCodec::<f32>::new(Arc::clone(&p))
                .decode(PayloadKind::Coded, &bad, data.len(), &mut Vec::new())
                .unwrap_err();
            assert!(err.0.contains("ordinals"), "{}", err.0);
        }
        // An undefined scheme, in any column: an invalid order byte.
        let mut bad = payload.clone();
        bad[head + 2] |= 3 << 6;
        let err = ChunkCodec::<f32>::new(Arc::clone(&p))
            .decode(PayloadKind::Coded, &bad, data.len(), &mut Vec::new())
            .unwrap_err();
        assert!(err.0.contains("axis order"), "{}", err.0);
    }

    #[test]
    fn incompressible_chunks_fall_back_to_raw() {
        let mut seed = 1u64;
        let data: Vec<f32> = (0..4096)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                f32::from_bits((seed >> 32) as u32)
            })
            .collect();
        let (kind, size) = round_trip(params(Layout::Field, 1, &[0.0]), &data);
        assert_eq!(kind, PayloadKind::Raw);
        assert_eq!(size, data.len() * 4);
    }
}
