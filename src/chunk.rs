//! The chunk codec: whole records in, one self-contained payload out, and back.
//!
//! A chunk is coded column by column (a table's columns; a field is one column of all its
//! values), each column in a length-prefixed section so a reader can skip or split them:
//!
//! ```text
//! payload  := section(column 0) section(column 1) ...
//! column   := 0x00 predictor:u8 [order:u8] step:f64 exceptions segment*   (quantized)
//!           | 0x01 lossless                                              (bit-exact, see `lossless`)
//! ```
//!
//! `exceptions` is `Exceptions::write`'s block for the whole column; then one `CodeCoder`
//! stream per segment of [`SEGMENT`] values (the last one shorter), holding one code per value
//! of the segment that is not an exception: the plain quantization code, or under a neighbour
//! predictor (see [`predict`](crate::predict)) its residual, or under the learned model or an
//! interpolation the code of the value's residual from its prediction (`order`, present for
//! the interpolation predictors only, is their axis order). The predictor is chosen per column
//! and chunk. When the coded payload is not smaller than the raw
//! values, the chunk stores them raw or LZ4-compressed instead and says so in its payload kind
//! (the container's chunk flags).
//!
//! Columns are coded in order and each may refer to the reconstruction of the ones before it
//! (the decoder has those, not the originals): the lossless transforms use the previous column,
//! and the learned predictor will predict from reconstructed columns the same way.

use std::sync::Arc;

use crate::array::Layout;
use crate::bound::{Bound, Domain, max_gap, ordinal_layout};
use crate::bytes::{ByteReader, DecodeResult, Malformed, put_section, put_uvarint};
use crate::element::Element;
use crate::entropy::{CONTEXTS, CodeCoder};
use crate::lossless::{self, LosslessScratch, Reference};
use crate::model::Model;
use crate::normalize::Normalization;
use crate::predict::{Chooser, Grid, Interp, Predictor, codes_in_range};
use crate::residual::{Exceptions, Prediction, Quantizer};

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

const KIND_QUANTIZED: u8 = 0;
/// An interpolation is coded as well as the best neighbour predictor when its estimate (on
/// the plain codes) is within this factor of that predictor's, and alone when it is below it:
/// coding values sequentially beats the estimate by ~25% on smooth fields.
const INTERP_TRY: f64 = 1.35;
const KIND_LOSSLESS: u8 = 1;

/// A column's coding parameters, shared by every chunk.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColumnParams {
    /// The bound in effect.
    pub bound: Bound,
    /// Normalization (the plain predictor predicts its offset).
    pub norm: Normalization,
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
                let aligned = |u: usize| u >= 2 && self.record_len % u == 0;
                let row = if aligned(self.row_len) {
                    self.row_len
                } else {
                    0
                };
                let plane = if row > 0 && aligned(self.plane_len) && self.plane_len % row == 0 {
                    self.plane_len
                } else {
                    0
                };
                Grid { row, plane }
            }
        }
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
    fn reference<'a, T>(&self, rows: usize, prev: Option<&'a [T]>) -> Reference<'a, T> {
        match self.layout {
            Layout::Table => prev.map_or(Reference::None, Reference::Column),
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
}

/// Rows per block of a transpose: the block's rows stay in L1 (16 KiB) however wide the table.
fn transpose_block<T>(width: usize) -> usize {
    ((16 << 10) / (width * std::mem::size_of::<T>()).max(1)).clamp(8, 256)
}

/// Copies row-major `data` (`width` values per row) into column-major `out`.
fn rows_to_columns<T: Copy>(data: &[T], width: usize, out: &mut [T]) {
    let rows = data.len() / width;
    let block = transpose_block::<T>(width);
    for r0 in (0..rows).step_by(block) {
        let r1 = (r0 + block).min(rows);
        for j in 0..width {
            let col = &mut out[j * rows + r0..j * rows + r1];
            for (k, o) in col.iter_mut().enumerate() {
                *o = data[(r0 + k) * width + j];
            }
        }
    }
}

/// Copies column-major `cols` back to row-major `out`.
fn columns_to_rows<T: Copy>(cols: &[T], width: usize, out: &mut [T]) {
    let rows = cols.len() / width;
    let block = transpose_block::<T>(width);
    for r0 in (0..rows).step_by(block) {
        let r1 = (r0 + block).min(rows);
        for j in 0..width {
            let col = &cols[j * rows + r0..j * rows + r1];
            for (k, &v) in col.iter().enumerate() {
                out[(r0 + k) * width + j] = v;
            }
        }
    }
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
        }
    }

    /// Codes whole records (`data.len()` a multiple of the record length) into `out` (replacing
    /// its contents) and returns how the payload is stored.
    pub(crate) fn encode(&mut self, data: &[T], out: &mut Vec<u8>) -> PayloadKind {
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
        for (p, &j) in order.iter().enumerate() {
            let col = &source[j * rows..(j + 1) * rows];
            let cp = &params.columns[j];
            // The model reads the reconstructions of the columns coded before this one.
            let model_pred = match &params.model {
                Some(m) if keep_recon && !cp.bound.is_lossless() && m.columns[j].is_active() => {
                    m.predict_column(j, &self.recon, rows, cp.norm.offset, &mut self.preds);
                    Some(&self.preds[..])
                }
                _ => None,
            };
            let (recon, prev) = if keep_recon {
                let prev = p.checked_sub(1).map(|q| order[q]);
                let (c, prev) = column_and_reference(&mut self.recon, rows, j, prev);
                (Some(c), prev)
            } else {
                (None, None)
            };
            let reference = params.reference(rows, prev);
            self.col_out.clear();
            self.columns.encode(
                col,
                reference,
                cp,
                params.grid(),
                model_pred,
                recon,
                &mut self.col_out,
            );
            put_section(out, &self.col_out);
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
        let params = Arc::clone(&self.params);
        if values % params.record_len.max(1) != 0 {
            return Err(Malformed::new(
                "value count is not a whole number of records",
            ));
        }
        match kind {
            PayloadKind::Raw => return push_le_values(payload, values, out),
            PayloadKind::Lz4 => {
                let size = values
                    .checked_mul(T::BYTES)
                    .ok_or_else(|| Malformed::new("chunk size overflows"))?;
                let raw = lz4_flex::block::decompress(payload, size)
                    .map_err(|e| Malformed(format!("LZ4 payload: {e}")))?;
                return push_le_values(&raw, values, out);
            }
            PayloadKind::Coded => {}
        }
        let (ncols, rows) = params.geometry(values);
        let mut r = ByteReader::new(payload);
        let start = out.len();
        out.resize(start + values, T::from_f64(0.0));
        let dest: &mut [T] = if params.layout == Layout::Table {
            self.cols.resize(values, T::from_f64(0.0));
            &mut self.cols
        } else {
            &mut out[start..]
        };
        let order = params.column_order(ncols);
        for (p, &j) in order.iter().enumerate() {
            let section = r
                .section()
                .map_err(|e| Malformed(format!("column {j}: {}", e.0)))?;
            let cp = &params.columns[j];
            // The model's predictions, if this section asks for them (kind, predictor id).
            let wants_model = section.len() >= 2
                && section[0] == KIND_QUANTIZED
                && section[1] == Predictor::Model.id();
            let model_pred = match &params.model {
                Some(m) if wants_model && m.columns[j].is_active() => {
                    m.predict_column(j, dest, rows, cp.norm.offset, &mut self.preds);
                    Some(&self.preds[..])
                }
                _ => None,
            };
            let prev = p.checked_sub(1).map(|q| order[q]);
            let (col, prev) = column_and_reference(dest, rows, j, prev);
            let reference = params.reference(rows, prev);
            self.columns
                .decode(section, reference, cp, params.grid(), model_pred, col)
                .map_err(|e| Malformed(format!("column {j}: {}", e.0)))?;
        }
        if !r.is_empty() {
            return Err(Malformed(format!(
                "{} bytes left after the last column",
                r.remaining()
            )));
        }
        if params.layout == Layout::Table {
            columns_to_rows(&self.cols, ncols, &mut out[start..]);
        }
        Ok(())
    }
}

/// Values per code stream: a long column (a field, or a one-column table) is coded in segments
/// of this many values, each with its own table, so every stage's scratch stays in cache and
/// the statistics follow the data along the column.
pub const SEGMENT: usize = 1 << 16;

/// Codes and decodes one column, with the scratch space that needs.
#[derive(Debug)]
struct ColumnCoder<T: Element> {
    coder: CodeCoder,
    ll: LosslessScratch,
    codes: Vec<i32>,
    /// One code per value of the column (exceptions: see `predict`).
    k: Vec<i32>,
    /// The chosen predictor's residuals of `k`.
    d: Vec<i32>,
    chooser: Chooser,
    /// The learned predictor's codes, exceptions and reconstruction, while it is priced.
    model_k: Vec<i32>,
    model_exc: Exceptions<T>,
    model_recon: Vec<T>,
    exc: Exceptions<T>,
    seg_exc: Exceptions<T>,
    segments: Vec<u8>,
    alt: Vec<u8>,
    /// The interpolation's section, while it is compared.
    interp_out: Vec<u8>,
    /// Codes split by context (interpolation streams).
    split: [Vec<i32>; CONTEXTS],
    /// The learned predictor's predictions in the quantizer's domain (ordinal columns).
    dom_preds: Vec<f64>,
}

/// Appends `len` codes to `out`: `codes` in order, with a 0 at each of `positions` (relative to
/// the start, increasing).
fn scatter(codes: &[i32], positions: impl Iterator<Item = usize>, len: usize, out: &mut Vec<i32>) {
    let start = out.len();
    let mut k = 0;
    for p in positions {
        let run = p - (out.len() - start);
        out.extend_from_slice(&codes[k..k + run]);
        out.push(0);
        k += run;
    }
    out.extend_from_slice(&codes[k..k + (len - (out.len() - start))]);
}

/// Quantizes a whole column under `pred`: one code per value into `k` (0 at exceptions), the
/// exceptions into `exc`, and the reconstruction into `recon` if wanted. `scratch` is per
/// segment.
fn quantize_column<T: Element>(
    q: Quantizer,
    col: &[T],
    pred: Prediction<'_>,
    mut recon: Option<&mut [T]>,
    scratch: (&mut Vec<i32>, &mut Exceptions<T>),
    k: &mut Vec<i32>,
    exc: &mut Exceptions<T>,
) {
    let (codes, seg_exc) = scratch;
    exc.clear();
    k.clear();
    for (s, values) in col.chunks(SEGMENT).enumerate() {
        let base = s * SEGMENT;
        let end = base + values.len();
        let rec = recon.as_deref_mut().map(|r| &mut r[base..end]);
        q.quantize(values, pred.segment(base, end), codes, seg_exc, rec);
        let rel = seg_exc.pos.iter().map(|&p| p as usize);
        scatter(codes, rel, values.len(), k);
        exc.pos.extend(seg_exc.pos.iter().map(|&p| p + base as u32));
        exc.val.extend_from_slice(&seg_exc.val);
    }
}

/// Replaces `out` with the codes of `src` that are not at `positions` (relative, increasing).
fn gather(src: &[i32], positions: impl Iterator<Item = usize>, out: &mut Vec<i32>) {
    out.clear();
    let mut start = 0;
    for p in positions {
        out.extend_from_slice(&src[start..p]);
        start = p + 1;
    }
    out.extend_from_slice(&src[start..]);
}

/// The codes of a quantized column, as the encoder holds them.
#[derive(Debug)]
enum Stream<'a> {
    /// One code per value in column order, exceptions included (their codes are left out, so
    /// segment `s` holds the codes of values `s·SEGMENT..(s+1)·SEGMENT` that are not
    /// exceptions).
    ByPosition(&'a [i32]),
    /// Only the codes of values that are not exceptions, in the predictor's decoding order,
    /// in segments of `SEGMENT` codes, each coded by context
    /// ([`CodeCoder::encode_in_context`]): consecutive codes are neighbours on the grid.
    Dense(&'a [i32]),
}

/// Appends a quantized column section: `head` (kind, predictor id, any predictor parameter),
/// the step, the exceptions and the code streams of `stream` by segment.
fn write_quantized<T: Element>(
    (coder, codes, segments): (&mut CodeCoder, &mut Vec<i32>, &mut Vec<u8>),
    split: &mut [Vec<i32>; CONTEXTS],
    (head, step, gap): (&[u8], f64, Option<i64>),
    exc: &Exceptions<T>,
    stream: Stream<'_>,
    out: &mut Vec<u8>,
) {
    segments.clear();
    match stream {
        Stream::ByPosition(all) => {
            for (s, seg) in all.chunks(SEGMENT).enumerate() {
                let (lo, hi) = exc.segment(s * SEGMENT, s * SEGMENT + seg.len());
                let rel = exc.pos[lo..hi].iter().map(|&p| p as usize - s * SEGMENT);
                gather(seg, rel, codes);
                coder.encode_either(codes, split, segments);
            }
        }
        Stream::Dense(dense) => {
            for seg in dense.chunks(SEGMENT) {
                coder.encode_either(seg, split, segments);
            }
        }
    }
    out.extend_from_slice(head);
    out.extend_from_slice(&step.to_le_bytes());
    if let Some(g) = gap {
        put_uvarint(out, g as u64);
    }
    exc.write(out);
    out.extend_from_slice(segments);
}

impl<T: Element> ColumnCoder<T> {
    /// Decodes the code streams of a column of `n` values into `self.k`, one code per value
    /// (0 at the exceptions, `self.exc`, already read).
    fn read_codes(&mut self, r: &mut ByteReader<'_>, n: usize) -> DecodeResult<()> {
        self.k.clear();
        for s in 0..n.div_ceil(SEGMENT) {
            let base = s * SEGMENT;
            let end = (base + SEGMENT).min(n);
            let (lo, hi) = self.exc.segment(base, end);
            let n = end - base - (hi - lo);
            self.coder
                .decode_either(r, n, &mut self.split, &mut self.codes)?;
            let rel = self.exc.pos[lo..hi].iter().map(|&p| p as usize - base);
            scatter(&self.codes, rel, end - base, &mut self.k);
        }
        Ok(())
    }

    fn new() -> Self {
        ColumnCoder {
            coder: CodeCoder::new(),
            ll: LosslessScratch::default(),
            codes: Vec::new(),
            k: Vec::new(),
            d: Vec::new(),
            chooser: Chooser::default(),
            model_k: Vec::new(),
            model_exc: Exceptions::default(),
            model_recon: Vec::new(),
            exc: Exceptions::default(),
            seg_exc: Exceptions::default(),
            segments: Vec::new(),
            alt: Vec::new(),
            interp_out: Vec::new(),
            split: Default::default(),
            dom_preds: Vec::new(),
        }
    }

    /// Appends the section body of `col` to `out`, and its reconstruction to `recon` if wanted.
    /// What the column may be predicted from: its `reference` (lossless), its `grid`
    /// (neighbour predictors) and the learned model's predictions.
    #[allow(clippy::too_many_arguments)]
    fn encode(
        &mut self,
        col: &[T],
        reference: Reference<'_, T>,
        cp: &ColumnParams,
        grid: Grid,
        model_pred: Option<&[f64]>,
        mut recon: Option<&mut [T]>,
        out: &mut Vec<u8>,
    ) {
        if cp.bound.is_lossless() {
            out.push(KIND_LOSSLESS);
            lossless::encode(col, reference, &mut self.coder, &mut self.ll, out);
            if let Some(r) = recon {
                r.copy_from_slice(col);
            }
            return;
        }
        // The step follows from the header's statistics: values beyond them (a stream whose
        // statistics came from its first records) still meet the bound, through the exact
        // check.
        let q = Quantizer::new::<T>(cp.bound, &cp.norm);
        // Ordinal columns skip the ordinals below the chunk's smallest magnitude, and follow
        // a coarser grid their values already lie on.
        let q = if q.is_ordinal() {
            let (step, gap, grid) = ordinal_layout(col, q.step);
            q.with_layout(step, gap, grid)
        } else {
            q
        };
        let gap = match q.domain {
            Domain::Ordinal { gap, .. } => Some(gap),
            Domain::Linear => None,
        };
        let centre = q.centre::<T>(&cp.norm);
        // The model predicts values; the quantizer takes them in its domain.
        let mut dom_preds = std::mem::take(&mut self.dom_preds);
        let model_pred = match model_pred {
            Some(p) if q.is_ordinal() => {
                q.domain.predict_into::<T>(p, &mut dom_preds);
                Some(&dom_preds[..])
            }
            other => other,
        };
        let pred = Prediction::Constant(centre);
        quantize_column(
            q,
            col,
            pred,
            recon.as_deref_mut(),
            (&mut self.codes, &mut self.seg_exc),
            &mut self.k,
            &mut self.exc,
        );
        // The neighbour predictors transform the codes; the values are the same either way.
        let (mut predictor, bits) = self.chooser.choose(grid, &self.k);
        let mut use_model = false;
        if let Some(preds) = model_pred {
            // The model's codes, priced like the others (exceptions at their raw size).
            let rec = recon.as_deref_mut().map(|_| {
                self.model_recon.resize(col.len(), T::from_f64(0.0));
                &mut self.model_recon[..]
            });
            quantize_column(
                q,
                col,
                Prediction::Values(preds),
                rec,
                (&mut self.codes, &mut self.seg_exc),
                &mut self.model_k,
                &mut self.model_exc,
            );
            let model_bits = self.chooser.estimate(&self.model_k);
            let exc_bits = (T::BYTES * 8 + 8) as f64;
            let n = col.len() as f64;
            // `choose` already priced the plain codes on the same sample; it prices nothing
            // only for columns too short to sample.
            let best = if bits.is_finite() {
                bits
            } else {
                self.chooser.estimate(&self.k)
            };
            let plain = best * n + self.exc.len() as f64 * exc_bits;
            let learned = model_bits * n + self.model_exc.len() as f64 * exc_bits;
            if learned < plain * 0.98 {
                use_model = true;
                predictor = Predictor::Model;
                std::mem::swap(&mut self.k, &mut self.model_k);
                std::mem::swap(&mut self.exc, &mut self.model_exc);
                if let Some(r) = recon.as_deref_mut() {
                    r.copy_from_slice(&self.model_recon[..col.len()]);
                }
            }
        }
        // An interpolation (fields only), where its estimate comes close: alone when it is
        // the cheapest, else coded as well and kept if smaller.
        let interp = match self.chooser.interp() {
            Some((p, ip, ibits)) if !use_model && bits.is_finite() && ibits < bits * INTERP_TRY => {
                Some((p, ip, ibits < bits))
            }
            _ => None,
        };
        let start = out.len();
        if !interp.is_some_and(|(_, _, alone)| alone) {
            if !use_model && predictor != Predictor::Centre {
                predictor.fill_exceptions(grid, &mut self.k, &self.exc.pos);
                self.d.resize(col.len(), 0);
                predictor.residuals(grid, &self.k, &mut self.d);
                if !codes_in_range(&self.d) {
                    predictor = Predictor::Centre;
                }
            }
            let stream = if matches!(predictor, Predictor::Centre | Predictor::Model) {
                &self.k
            } else {
                &self.d
            };
            let head = [KIND_QUANTIZED, predictor.id()];
            let parts = (&mut self.coder, &mut self.codes, &mut self.segments);
            let scratch = &mut self.split;
            write_quantized(
                parts,
                scratch,
                (&head, q.step, gap),
                &self.exc,
                Stream::ByPosition(stream),
                out,
            );
        }
        if let Some((p, ip, alone)) = interp {
            self.interpolate(col, q, q.fallback::<T>(&cp.norm), ip);
            self.interp_out.clear();
            let head = [KIND_QUANTIZED, p.id(), ip.order_byte()];
            let parts = (&mut self.coder, &mut self.codes, &mut self.segments);
            let scratch = &mut self.split;
            let stream = Stream::Dense(&self.k);
            write_quantized(
                parts,
                scratch,
                (&head, q.step, gap),
                &self.exc,
                stream,
                &mut self.interp_out,
            );
            if alone || self.interp_out.len() < out.len() - start {
                out.truncate(start);
                out.extend_from_slice(&self.interp_out);
                if let Some(r) = recon.as_deref_mut() {
                    r.copy_from_slice(&self.model_recon[..col.len()]);
                }
            }
        }
        // With many exceptions (a bound below the data's own precision), bit-exact coding can
        // be smaller.
        if self.exc.len() * 8 > col.len() {
            self.alt.clear();
            self.alt.push(KIND_LOSSLESS);
            lossless::encode(col, reference, &mut self.coder, &mut self.ll, &mut self.alt);
            if self.alt.len() < out.len() {
                std::mem::swap(out, &mut self.alt);
                if let Some(r) = recon {
                    r.copy_from_slice(col);
                }
            }
        }
        self.dom_preds = dom_preds;
    }

    /// Codes `col` under interpolation `ip`, sequentially: the codes of the values that are
    /// not exceptions into `self.k` in decoding order (so the coarse levels, whose residuals
    /// are larger, fill their own segments), the exceptions into `self.exc`, the
    /// reconstruction into `self.model_recon`.
    fn interpolate(&mut self, col: &[T], q: Quantizer, centre: f64, ip: Interp) {
        let n = col.len();
        let (k, exc, rec) = (&mut self.k, &mut self.exc, &mut self.model_recon);
        k.clear();
        rec.clear();
        rec.resize(n, T::from_f64(0.0));
        exc.clear();
        ip.run(rec, centre, |pos, pred| {
            match q.quantize_one(col[pos], q.predict::<T>(pred)) {
                Some((c, y)) => {
                    k.push(c);
                    y
                }
                None => {
                    exc.pos.push(pos as u32);
                    exc.val.push(col[pos]);
                    T::from_f64(pred)
                }
            }
        });
        for &p in &exc.pos {
            rec[p as usize] = col[p as usize];
        }
        // Exceptions were found in decoding order; the block lists them by position.
        if !exc.pos.is_sorted() {
            let mut pairs: Vec<(u32, T)> = exc
                .pos
                .iter()
                .copied()
                .zip(exc.val.iter().copied())
                .collect();
            pairs.sort_unstable_by_key(|&(p, _)| p);
            exc.clear();
            for (p, v) in pairs {
                exc.pos.push(p);
                exc.val.push(v);
            }
        }
    }

    /// Decodes a column section into `out` (the column's length).
    fn decode(
        &mut self,
        section: &[u8],
        reference: Reference<'_, T>,
        cp: &ColumnParams,
        grid: Grid,
        model_pred: Option<&[f64]>,
        out: &mut [T],
    ) -> DecodeResult<()> {
        let mut r = ByteReader::new(section);
        match r.u8()? {
            KIND_QUANTIZED => {
                let id = r.u8()?;
                let predictor = Predictor::from_id(id).ok_or_else(|| {
                    Malformed(format!(
                        "unknown predictor {id} (written by a newer baler?)"
                    ))
                })?;
                let interp = match predictor {
                    Predictor::Interp | Predictor::InterpPlanes => {
                        let byte = r.u8()?;
                        let ip = Interp::new(predictor, grid, out.len())
                            .and_then(|ip| ip.with_order_byte(byte))
                            .ok_or_else(|| {
                                Malformed(format!(
                                    "predictor {} (axis order {byte:#x}) does not apply to a \
                                     column of {} values here",
                                    predictor.name(),
                                    out.len()
                                ))
                            })?;
                        Some(ip)
                    }
                    _ => None,
                };
                let step = r.f64()?;
                if !(step.is_finite() && step > 0.0) {
                    return Err(Malformed(format!("invalid quantization step {step}")));
                }
                if cp.bound.is_lossless() {
                    return Err(Malformed::new(
                        "a quantized section in a column whose bound is lossless",
                    ));
                }
                let mut q = Quantizer::with_step(cp.bound, &cp.norm, step);
                if q.is_ordinal() {
                    let gap = r.uvarint_max(max_gap::<T>() as u64, "ordinal gap")?;
                    q = q.with_stored_layout::<T>(gap as i64);
                }
                self.exc.read(&mut r, out.len())?;
                let centre = q.centre::<T>(&cp.norm);
                let model_pred = match model_pred {
                    Some(p) if q.is_ordinal() => {
                        q.domain.predict_into::<T>(p, &mut self.dom_preds);
                        Some(&self.dom_preds[..])
                    }
                    other => other,
                };
                let pred = Prediction::Constant(centre);
                let pred = match (predictor, model_pred) {
                    (Predictor::Model, Some(p)) if p.len() == out.len() => Prediction::Values(p),
                    (Predictor::Model, _) => {
                        return Err(Malformed::new(
                            "the column is coded with a learned model the file does not hold",
                        ));
                    }
                    _ => pred,
                };
                if let Some(ip) = interp {
                    // The codes in decoding order, in segments of SEGMENT codes.
                    let m = out.len() - self.exc.len();
                    self.k.clear();
                    for s in 0..m.div_ceil(SEGMENT) {
                        let count = SEGMENT.min(m - s * SEGMENT);
                        self.coder.decode_either(
                            &mut r,
                            count,
                            &mut self.split,
                            &mut self.codes,
                        )?;
                        self.k.extend_from_slice(&self.codes);
                    }
                    // An exception's neighbours are predicted from its prediction, as the
                    // encoder did; its value goes in place afterwards.
                    let (k, exc) = (&self.k, &self.exc);
                    let mut next = 0;
                    ip.run(out, q.fallback::<T>(&cp.norm), |pos, p| {
                        if exc.pos.binary_search(&(pos as u32)).is_ok() {
                            T::from_f64(p)
                        } else {
                            next += 1;
                            q.level(q.predict::<T>(p), k[next - 1])
                        }
                    });
                    for (&pos, &v) in exc.pos.iter().zip(&exc.val) {
                        out[pos as usize] = v;
                    }
                } else if !matches!(predictor, Predictor::Centre | Predictor::Model) {
                    if !predictor.applies(grid, out.len()) {
                        return Err(Malformed(format!(
                            "predictor {} does not apply to a column of {} values here",
                            predictor.name(),
                            out.len()
                        )));
                    }
                    self.read_codes(&mut r, out.len())?;
                    predictor.integrate(grid, &mut self.k);
                    let exc = &self.exc;
                    q.dequantize_all(&self.k, &exc.pos, &exc.val, centre, out)?;
                } else {
                    let exc = &self.exc;
                    for (s, dst) in out.chunks_mut(SEGMENT).enumerate() {
                        let base = s * SEGMENT;
                        let end = base + dst.len();
                        let (lo, hi) = exc.segment(base, end);
                        let n = dst.len() - (hi - lo);
                        self.coder
                            .decode_either(&mut r, n, &mut self.split, &mut self.codes)?;
                        q.dequantize(
                            &self.codes,
                            &exc.pos[lo..hi],
                            &exc.val[lo..hi],
                            base as u32,
                            pred.segment(base, end),
                            dst,
                        )?;
                    }
                }
            }
            KIND_LOSSLESS => {
                lossless::decode(&mut r, reference, &mut self.coder, &mut self.ll, out)?
            }
            k => return Err(Malformed(format!("unknown column kind {k}"))),
        }
        if !r.is_empty() {
            return Err(Malformed(format!(
                "{} bytes left in the column section",
                r.remaining()
            )));
        }
        Ok(())
    }
}

/// What a column section of a coded payload holds (for `baler info --columns`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnSection {
    /// Bytes of the section.
    pub bytes: usize,
    /// Whether the column was coded bit-exactly.
    pub lossless: bool,
    /// The predictor of a quantized column.
    pub predictor: Option<Predictor>,
    /// Values stored verbatim.
    pub exceptions: u64,
}

/// Splits a coded payload into its column sections without decoding them; `order` is the
/// order the columns are coded in ([`CodecParams::column_order`]), `ordinal[j]` whether column
/// `j` is quantized as ordinals (a point-wise relative bound, whose sections hold its gap). The
/// sections are returned by column.
pub fn inspect_payload(
    payload: &[u8],
    order: &[usize],
    ordinal: &[bool],
) -> Result<Vec<ColumnSection>, String> {
    let mut r = ByteReader::new(payload);
    let mut out = vec![
        ColumnSection {
            bytes: 0,
            lossless: false,
            predictor: None,
            exceptions: 0,
        };
        order.len()
    ];
    for &j in order {
        let before = r.remaining();
        let sec = r.section().map_err(|e| format!("column {j}: {}", e.0))?;
        let mut s = ByteReader::new(sec);
        let kind = s.u8().map_err(|e| e.0)?;
        let (predictor, exceptions) = if kind == KIND_QUANTIZED {
            let id = s.u8().map_err(|e| e.0)?;
            let p = Predictor::from_id(id).ok_or_else(|| format!("column {j}: predictor {id}"))?;
            if matches!(p, Predictor::Interp | Predictor::InterpPlanes) {
                s.u8().map_err(|e| e.0)?;
            }
            s.bytes(8).map_err(|e| e.0)?;
            if ordinal.get(j).copied().unwrap_or(false) {
                s.uvarint().map_err(|e| e.0)?;
            }
            (Some(p), s.uvarint().map_err(|e| e.0)?)
        } else {
            (None, 0)
        };
        out[j] = ColumnSection {
            // The section and its length prefix.
            bytes: before - r.remaining(),
            lossless: kind == KIND_LOSSLESS,
            predictor,
            exceptions,
        };
    }
    Ok(out)
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

fn push_le_values<T: Element>(bytes: &[u8], values: usize, out: &mut Vec<T>) -> DecodeResult<()> {
    if Some(bytes.len()) != values.checked_mul(T::BYTES) {
        return Err(Malformed(format!(
            "raw payload has {} bytes for {values} values of {} bytes",
            bytes.len(),
            T::BYTES
        )));
    }
    let start = out.len();
    out.resize(start + values, T::from_f64(0.0));
    bytemuck::cast_slice_mut::<T, u8>(&mut out[start..]).copy_from_slice(bytes);
    T::from_le_in_place(&mut out[start..]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::residual::first_violation;

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
        let mut x = 12345u64;
        let mut rnd = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
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

    #[test]
    fn transposes_are_inverse() {
        let data: Vec<u32> = (0..999).collect();
        let mut cols = vec![0; 999];
        rows_to_columns(&data, 9, &mut cols);
        assert_eq!(cols[1], 9);
        let mut back = vec![0; 999];
        columns_to_rows(&cols, 9, &mut back);
        assert_eq!(back, data);
    }
}
