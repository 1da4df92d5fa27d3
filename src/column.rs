//! One column of a chunk ⇄ one section: the predictor chosen for it, its quantization or
//! bit-exact coding, and its code streams.
//!
//! ```text
//! column   := 0x00 predictor:u8 [order:u8 | lag:u8 column:uvarint] step:f64 [gap:uvarint]
//!             exceptions segment*                                                   (quantized)
//!           | 0x01 lossless                                  (bit-exact, see `lossless`)
//!           | 0x02 relation lossless    (bit-exact, predicted by a relation, format version 9)
//! ```
//!
//! `exceptions` is `Exceptions::write`'s block for the whole column; then one `CodeCoder`
//! stream per segment of [`SEGMENT`] values (the last one shorter), holding one code per value
//! of the segment that is not an exception: the plain quantization code, or under a neighbour
//! predictor (see [`predict`](crate::predict)) its residual, or under the learned model or an
//! interpolation the code of the value's residual from its prediction (`order`, present for
//! the interpolation predictors only, is their axis order and, in bits 6–7, their level-wise
//! steps, `predict::LEVEL_DIVISORS` (format version 6); `lag` and `column`, present for
//! [`Predictor::Carry`] only, the record (0 before, 1 after) and the column carried over; `gap`, present for columns
//! quantized as ordinals, their ordinal gap: see [`bound`](crate::bound)). The predictor is
//! chosen per column and chunk, by estimated cost, and where it is close by coding both.

use crate::bound::{Bound, Domain, max_gap, ordinal_layout};
use crate::bytes::{ByteReader, DecodeResult, Malformed, put_uvarint};
use crate::element::Element;
use crate::entropy::CodeCoder;
use crate::lossless::{self, LosslessScratch, Reference};
use crate::normalize::Normalization;
use crate::predict::{
    BlockScratch, Chooser, Grid, Interp, LEVEL_DIVISORS, Lag, Predictor, codes_in_range,
};
use crate::relation::Relation;
use crate::residual::{Exceptions, Prediction, Quantizer, SampleScratch};
use crate::segments::{Segments, Stream, scatter};
use crate::spare::Spare;
use std::sync::{Arc, Mutex};

/// Section kind of a quantized column.
pub(crate) const KIND_QUANTIZED: u8 = 0;
/// An interpolation is coded as well as the best neighbour predictor when its estimate (on
/// the plain codes) is within this factor of that predictor's, and alone when it is below it:
/// coding values sequentially beats the estimate by ~25% on smooth fields.
const INTERP_TRY: f64 = 1.35;
/// ... but not when the interpolation, coded first, comes out below this share of the
/// neighbour predictor's estimate: coded, that predictor came within 0.89–1.05 of its estimate
/// on every field measured (`../shared/data`, rel:1e-2 … 1e-6), and coding both cost a third
/// of the encoder's time.
const INTERP_SURE: f64 = 0.85;
/// An interpolation coded in fewer bits per value than this is coded again with level-wise
/// steps ([`LEVEL_DIVISORS`]), the gentlest scheme first, and the smallest kept: they pay only
/// where most codes are 0 (a loose bound on a smooth field). Each try costs three quarters of
/// the first coding (the vorticity at `rel:1e-3`: 38 ms per chunk of 2 Mi values, against 50
/// for all that came before). On the fields of `../shared/data` at `rel:1e-2` … `1e-3` the
/// gentle scheme saved 3–28% below 0.62 bits a value (but twice lost 1%), and above 0.75 at
/// most 1.3% (the vorticity at `rel:1e-3`, 0.89 and 0.98 bits: 0.8% and 0.6%), so it is not
/// tried there: those chunks code 1.75x as fast.
const LEVELS_BELOW_BITS: f64 = 0.75;
/// ... and with the stronger scheme only where the gentle one came out below this share of
/// the one-step coding (on `../shared/data` at `rel:1e-2` it saved 1–9% on the fields where the
/// stronger did not pay, and 17–20% on the vorticity, where it did).
const LEVELS_STRONGER: f64 = 0.9;
/// Section kind of a bit-exact column.
pub(crate) const KIND_LOSSLESS: u8 = 1;
/// Section kind of a bit-exact column predicted by a relation to the columns coded before it
/// ([`crate::relation`]): the relation, then the lossless coding, whose prediction transform
/// takes the relation's sums for the model's predictions.
pub(crate) const KIND_RELATION: u8 = 2;

/// A column's coding parameters, shared by every chunk.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColumnParams {
    /// The bound in effect.
    pub bound: Bound,
    /// Normalization (the plain predictor predicts its offset).
    pub norm: Normalization,
}

/// Values per code stream: a long column (a field, or a one-column table) is coded in segments
/// of this many values, each with its own table, so every stage's scratch stays in cache and
/// the statistics follow the data along the column.
pub const SEGMENT: usize = 1 << 16;

/// A [`Predictor::Carry`] candidate for a column: its predictions ([`crate::predict::carried`])
/// and the column and record they come from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CarryFrom<'a> {
    pub(crate) preds: &'a [f64],
    pub(crate) column: usize,
    pub(crate) lag: Lag,
}

/// Codes and decodes one column, with the scratch space that needs.
#[derive(Debug)]
pub(crate) struct ColumnCoder<T: Element> {
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
    /// Where the chooser reads the plain codes, when only there ([`Chooser::sampled_reads`]),
    /// and the scratch of quantizing them.
    reads: Vec<usize>,
    sample: SampleScratch<T>,
    exc: Exceptions<T>,
    /// Each thread's codes of a segment, quantizing.
    seg_codes: Vec<Vec<i32>>,
    /// The code streams by segment.
    segments: Segments,
    /// Each thread's scratch, rebuilding an interpolated column.
    blocks: BlockScratch,
    /// Idle cores to borrow ([`crate::spare`]).
    spare: Arc<Spare>,
    alt: Vec<u8>,
    /// The interpolation's section, while it is compared.
    interp_out: Vec<u8>,
    /// An interpolation with level-wise steps: its codes, exceptions, reconstruction and
    /// section, while they are compared with the one-step interpolation's.
    levels_k: Vec<i32>,
    levels_exc: Exceptions<T>,
    levels_recon: Vec<T>,
    levels_out: Vec<u8>,
    /// The learned predictor's predictions in the quantizer's domain (ordinal columns).
    dom_preds: Vec<f64>,
    carry_dom: Vec<f64>,
}

/// Quantizes a whole column under `pred`: one code per value into `k` (0 at exceptions), the
/// exceptions into `exc`, and the reconstruction into `recon` if wanted. Segment by segment,
/// each a task on an idle core where there is one; `scratch` holds a segment's codes for each
/// thread.
fn quantize_column<T: Element>(
    q: Quantizer,
    col: &[T],
    pred: Prediction<'_>,
    recon: Option<&mut [T]>,
    (spare, scratch): (&Spare, &mut Vec<Vec<i32>>),
    k: &mut Vec<i32>,
    exc: &mut Exceptions<T>,
) {
    exc.clear();
    k.clear();
    k.resize(col.len(), 0);
    let segments = col.len().div_ceil(SEGMENT);
    let mut recon = recon.map(|r| r.chunks_mut(SEGMENT));
    let tasks: Vec<_> = k
        .chunks_mut(SEGMENT)
        .map(|ks| {
            let rec = recon.as_mut().and_then(|r| r.next());
            Mutex::new((ks, rec, Exceptions::<T>::default()))
        })
        .collect();
    spare.share(
        segments,
        crate::segments::threads(scratch, segments),
        |s, codes| {
            let mut task = tasks[s].lock().unwrap_or_else(|e| e.into_inner());
            let (ks, rec, seg_exc) = &mut *task;
            let (base, end) = (s * SEGMENT, s * SEGMENT + ks.len());
            q.quantize(
                &col[base..end],
                pred.segment(base, end),
                codes,
                seg_exc,
                rec.as_deref_mut(),
            );
            scatter(codes, seg_exc.pos.iter().map(|&p| p as usize), 0, ks);
        },
    );
    for (s, task) in tasks.into_iter().enumerate() {
        let (_, _, seg_exc) = task.into_inner().unwrap_or_else(|e| e.into_inner());
        let base = (s * SEGMENT) as u32;
        exc.pos.extend(seg_exc.pos.iter().map(|&p| p + base));
        exc.val.extend_from_slice(&seg_exc.val);
    }
}

/// Whether codes estimated at `cost` bits replace codes at `current`: at least 2% cheaper (or
/// an estimate not a number).
fn cheaper(cost: f64, current: f64) -> bool {
    !matches!(
        cost.partial_cmp(&(current * 0.98)),
        Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
    )
}

/// Appends a quantized column section: `head` (kind, predictor id, any predictor parameter),
/// the step, the exceptions and the code streams of `stream` by segment.
fn write_quantized<T: Element>(
    (segments, spare): (&mut Segments, &Spare),
    (head, step, gap): (&[u8], f64, Option<i64>),
    exc: &Exceptions<T>,
    stream: Stream<'_>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(head);
    out.extend_from_slice(&step.to_le_bytes());
    if let Some(g) = gap {
        put_uvarint(out, g as u64);
    }
    exc.write(out);
    // Binned streams pay on a point-wise relative column's ordinals only, the columns with
    // an ordinal gap.
    segments.encode(stream, &exc.pos, gap.is_some(), spare, out);
}

impl<T: Element> ColumnCoder<T> {
    /// Decodes the code streams of a column of `n` values into `self.k`, one code per value
    /// (0 at the exceptions, `self.exc`, already read).
    fn read_codes(&mut self, r: &mut ByteReader<'_>, n: usize) -> DecodeResult<()> {
        // Not cleared first: a segment decoded writes each of its codes (or fails), and the
        // codes of the last column were last written by whichever core decoded them.
        self.k.resize(n, 0);
        self.segments
            .decode(r, &self.exc.pos, &self.spare, &mut self.k)
    }

    pub(crate) fn new() -> Self {
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
            reads: Vec::new(),
            sample: SampleScratch::default(),
            exc: Exceptions::default(),
            seg_codes: Vec::new(),
            segments: Segments::default(),
            blocks: BlockScratch::default(),
            spare: Arc::default(),
            alt: Vec::new(),
            interp_out: Vec::new(),
            levels_k: Vec::new(),
            levels_exc: Exceptions::default(),
            levels_recon: Vec::new(),
            levels_out: Vec::new(),
            dom_preds: Vec::new(),
            carry_dom: Vec::new(),
        }
    }

    /// Borrows idle cores from `spare` for the column's segments from now on.
    pub(crate) fn lending(&mut self, spare: Arc<Spare>) {
        self.ll.lending(Arc::clone(&spare));
        self.spare = spare;
    }

    /// Appends the section body of `col` to `out`, and its reconstruction to `recon` if wanted.
    /// What the column may be predicted from: its `reference` (lossless), its `grid`
    /// (neighbour predictors), the learned model's predictions and another column's values
    /// carried over one record (`carry`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn encode(
        &mut self,
        col: &[T],
        reference: Reference<'_, T>,
        cp: &ColumnParams,
        grid: Grid,
        model_pred: Option<&[f64]>,
        carry: Option<CarryFrom<'_>>,
        relation: Option<(&Relation, &[f64])>,
        mut recon: Option<&mut [T]>,
        out: &mut Vec<u8>,
    ) {
        // Binned streams pay on a point-wise relative column's ordinals only.
        self.coder.allow_binned(false);
        if cp.bound.is_lossless() {
            let start = out.len();
            out.push(KIND_LOSSLESS);
            lossless::encode(
                col,
                reference,
                model_pred,
                grid,
                &mut self.coder,
                &mut self.ll,
                out,
            );
            if let Some((rel, sums)) = relation {
                self.alt.clear();
                self.alt.push(KIND_RELATION);
                rel.write(&mut self.alt);
                lossless::encode(
                    col,
                    reference,
                    Some(sums),
                    grid,
                    &mut self.coder,
                    &mut self.ll,
                    &mut self.alt,
                );
                if self.alt.len() < out.len() - start {
                    out.truncate(start);
                    out.extend_from_slice(&self.alt);
                }
            }
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
        self.coder.allow_binned(q.is_ordinal());
        let centre = q.centre::<T>(&cp.norm);
        // The model predicts values; the quantizer takes them in its domain.
        let mut dom_preds = std::mem::take(&mut self.dom_preds);
        // The model's predictions in value units, for the bit-exact fallback below.
        let value_preds = model_pred;
        let model_pred = q.predictions::<T>(model_pred, &mut dom_preds);
        // Where a model predicts the column and the chooser prices a sample of it, the plain
        // codes are first quantized at the positions the chooser reads only: the model's codes
        // mostly win by more than the plain codes' exceptions could change, and then the rest
        // of them is never needed.
        let mut partial = false;
        if model_pred.is_some()
            && let Some(reads) = self.chooser.sampled_reads(grid, col.len())
        {
            self.reads.clear();
            self.reads.extend(reads);
            self.k.truncate(col.len());
            self.k.resize(col.len(), 0);
            self.exc.clear();
            q.codes_at(col, centre, &self.reads, &mut self.sample, &mut self.k);
            partial = true;
        }
        if !partial {
            self.quantize_plain(q, col, centre, recon.as_deref_mut());
        }
        // The neighbour predictors transform the codes; the values are the same either way.
        let (mut predictor, bits) = self.chooser.choose(grid, &self.k, &self.spare);
        let mut use_model = false;
        if let Some(preds) = model_pred {
            let cost = self.quantize_against(q, col, preds, recon.is_some());
            // The plain codes' exceptions only add to their cost: below their estimate alone,
            // the model's codes are taken whatever those are (the same decision as below).
            let sure = partial && bits.is_finite() && cheaper(cost, bits * col.len() as f64);
            if partial && !sure {
                self.quantize_plain(q, col, centre, recon.as_deref_mut());
            }
            if sure || cheaper(cost, self.current_cost(bits, false)) {
                self.take_quantized(recon.as_deref_mut());
                use_model = true;
                predictor = Predictor::Model;
            }
        }
        // Another column carried over one record, priced the same way against the best so far.
        let mut carry_dom = std::mem::take(&mut self.carry_dom);
        let mut carried_from = None;
        if let Some(c) = carry
            && let Some(preds) = q.predictions::<T>(Some(c.preds), &mut carry_dom)
        {
            let current = self.current_cost(bits, use_model);
            let cost = self.quantize_against(q, col, preds, recon.is_some());
            if cheaper(cost, current) {
                self.take_quantized(recon.as_deref_mut());
                use_model = true;
                predictor = Predictor::Carry;
                carried_from = Some((c.lag, c.column));
            }
        }
        self.carry_dom = carry_dom;
        // An interpolation (fields only), where its estimate comes close: alone when it is
        // the cheapest, else coded as well and kept if smaller.
        let interp = match self.chooser.interp() {
            Some((p, ip, ibits)) if !use_model && bits.is_finite() && ibits < bits * INTERP_TRY => {
                Some((p, ip, ibits < bits))
            }
            _ => None,
        };
        let start = out.len();
        // The interpolation first, where it is tried: taken without coding the neighbour
        // predictor where its estimate says so, or where its coded size is well below that
        // predictor's estimate; else both are coded and the smaller kept.
        let mut interp_taken = None;
        if let Some((p, ip, alone)) = interp {
            // The interpolation's codes and exceptions in place of the plain ones, which are
            // put aside where the neighbour predictor may still be coded.
            if !alone {
                std::mem::swap(&mut self.k, &mut self.model_k);
                std::mem::swap(&mut self.exc, &mut self.model_exc);
            }
            let (k, exc, rec) = (&mut self.k, &mut self.exc, &mut self.model_recon);
            ip.quantize(
                col,
                (q, q.fallback::<T>(&cp.norm)),
                (k, exc, rec),
                &self.spare,
            );
            self.interp_out.clear();
            let head = [KIND_QUANTIZED, p.id(), ip.order_byte()];
            let stream = Stream::Dense(&self.k);
            write_quantized(
                (&mut self.segments, &self.spare),
                (&head, q.step, gap),
                &self.exc,
                stream,
                &mut self.interp_out,
            );
            // Level-wise steps, where the codes are mostly 0: the gentlest first, the stronger
            // one where that saved much; the interpolation's codes, exceptions, reconstruction
            // and section are the smallest coding's.
            if !q.is_ordinal()
                && (8 * self.interp_out.len()) as f64 <= LEVELS_BELOW_BITS * col.len() as f64
            {
                let fallback = q.fallback::<T>(&cp.norm);
                for levels in 1..LEVEL_DIVISORS.len() as u8 {
                    let ipl = ip.with_levels(levels);
                    let (k, exc, rec) = (
                        &mut self.levels_k,
                        &mut self.levels_exc,
                        &mut self.levels_recon,
                    );
                    ipl.quantize(col, (q, fallback), (k, exc, rec), &self.spare);
                    self.levels_out.clear();
                    let head = [KIND_QUANTIZED, p.id(), ipl.order_byte()];
                    write_quantized(
                        (&mut self.segments, &self.spare),
                        (&head, q.step, gap),
                        &self.levels_exc,
                        Stream::Dense(&self.levels_k),
                        &mut self.levels_out,
                    );
                    let (before, now) = (self.interp_out.len(), self.levels_out.len());
                    if now >= before {
                        break;
                    }
                    std::mem::swap(&mut self.k, &mut self.levels_k);
                    std::mem::swap(&mut self.exc, &mut self.levels_exc);
                    std::mem::swap(&mut self.model_recon, &mut self.levels_recon);
                    std::mem::swap(&mut self.interp_out, &mut self.levels_out);
                    if (now as f64) > LEVELS_STRONGER * before as f64 {
                        break;
                    }
                }
            }
            let estimate = bits * col.len() as f64 / 8.0;
            interp_taken = Some(alone || (self.interp_out.len() as f64) < INTERP_SURE * estimate);
        }
        if interp_taken != Some(true) {
            let (k, exc) = if interp_taken.is_some() {
                (&mut self.model_k, &self.model_exc)
            } else {
                (&mut self.k, &self.exc)
            };
            if !use_model && predictor != Predictor::Centre {
                predictor.fill_exceptions(grid, k, &exc.pos);
                self.d.resize(col.len(), 0);
                predictor.residuals(grid, k, &mut self.d);
                if !codes_in_range(&self.d) {
                    predictor = Predictor::Centre;
                }
            }
            let stream = if matches!(
                predictor,
                Predictor::Centre | Predictor::Model | Predictor::Carry
            ) {
                &*k
            } else {
                &self.d
            };
            let mut head = vec![KIND_QUANTIZED, predictor.id()];
            if let Some((lag, column)) = carried_from {
                head.push(lag.byte());
                put_uvarint(&mut head, column as u64);
            }
            write_quantized(
                (&mut self.segments, &self.spare),
                (&head, q.step, gap),
                exc,
                Stream::ByPosition(stream),
                out,
            );
        }
        if let Some(taken) = interp_taken
            && (taken || self.interp_out.len() < out.len() - start)
        {
            out.truncate(start);
            out.extend_from_slice(&self.interp_out);
            if let Some(r) = recon.as_deref_mut() {
                r.copy_from_slice(&self.model_recon[..col.len()]);
            }
        }
        // With many exceptions (a bound below the data's own precision), bit-exact coding can
        // be smaller.
        if self.exc.len() * 8 > col.len() {
            self.coder.allow_binned(false);
            self.alt.clear();
            self.alt.push(KIND_LOSSLESS);
            lossless::encode(
                col,
                reference,
                value_preds,
                grid,
                &mut self.coder,
                &mut self.ll,
                &mut self.alt,
            );
            if self.alt.len() < out.len() {
                std::mem::swap(out, &mut self.alt);
                if let Some(r) = recon {
                    r.copy_from_slice(col);
                }
            }
        }
        self.dom_preds = dom_preds;
    }

    /// The estimated bits of the codes in `self.k` with their exceptions: `bits` per value as
    /// the chooser priced the plain codes, unless value predictions replaced them (`taken`) or
    /// the column was too short to sample.
    fn current_cost(&mut self, bits: f64, taken: bool) -> f64 {
        let per_value = if taken || !bits.is_finite() {
            self.chooser.estimate(&self.k)
        } else {
            bits
        };
        per_value * self.k.len() as f64 + self.exc.len() as f64 * (T::BYTES * 8 + 8) as f64
    }

    /// The plain codes of `col` (against the constant prediction `centre`) into `self.k`,
    /// their exceptions into `self.exc` and their reconstruction into `recon`.
    fn quantize_plain(&mut self, q: Quantizer, col: &[T], centre: f64, recon: Option<&mut [T]>) {
        quantize_column(
            q,
            col,
            Prediction::Constant(centre),
            recon,
            (&self.spare, &mut self.seg_codes),
            &mut self.k,
            &mut self.exc,
        );
    }

    /// Quantizes `col` against value predictions `preds` (the model's, or a carried column's,
    /// in the quantizer's domain) aside, with its reconstruction where `recon`, and returns
    /// their estimated bits (exceptions at their raw size). Taken with
    /// [`take_quantized`](Self::take_quantized) where that is at least 2% below the current
    /// codes' [`current_cost`](Self::current_cost).
    fn quantize_against(&mut self, q: Quantizer, col: &[T], preds: &[f64], recon: bool) -> f64 {
        let rec = recon.then(|| {
            self.model_recon.resize(col.len(), T::from_f64(0.0));
            &mut self.model_recon[..]
        });
        quantize_column(
            q,
            col,
            Prediction::Values(preds),
            rec,
            (&self.spare, &mut self.seg_codes),
            &mut self.model_k,
            &mut self.model_exc,
        );
        self.chooser.estimate(&self.model_k) * col.len() as f64
            + self.model_exc.len() as f64 * (T::BYTES * 8 + 8) as f64
    }

    /// Takes the codes, exceptions and reconstruction of the last
    /// [`quantize_against`](Self::quantize_against) in place of the current ones.
    fn take_quantized(&mut self, recon: Option<&mut [T]>) {
        std::mem::swap(&mut self.k, &mut self.model_k);
        std::mem::swap(&mut self.exc, &mut self.model_exc);
        if let Some(r) = recon {
            r.copy_from_slice(&self.model_recon[..r.len()]);
        }
    }

    /// Decodes a column section into `out` (the column's length).
    pub(crate) fn decode(
        &mut self,
        section: &[u8],
        reference: Reference<'_, T>,
        cp: &ColumnParams,
        grid: Grid,
        model_pred: Option<&[f64]>,
        out: &mut [T],
    ) -> DecodeResult<()> {
        let mut r = ByteReader::new(section);
        let kind = r.u8()?;
        match kind {
            KIND_QUANTIZED => {
                let id = r.u8()?;
                let predictor = Predictor::from_id(id).ok_or_else(|| {
                    Malformed(format!(
                        "unknown predictor {id} (written by a newer baler?)"
                    ))
                })?;
                if predictor == Predictor::Carry {
                    // Which column and record: the caller read them to carry the values over.
                    Lag::from_byte(r.u8()?).ok_or_else(|| Malformed::new("invalid carry lag"))?;
                    r.uvarint()?;
                }
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
                if q.is_ordinal() && interp.is_some_and(|ip| ip.levels() != 0) {
                    return Err(Malformed::new(
                        "level-wise steps in a column quantized as ordinals",
                    ));
                }
                if q.is_ordinal() {
                    let gap = r.uvarint_max(max_gap::<T>() as u64, "ordinal gap")?;
                    q = q.with_stored_layout::<T>(gap as i64);
                }
                self.exc.read(&mut r, out.len())?;
                let centre = q.centre::<T>(&cp.norm);
                let model_pred = q.predictions::<T>(model_pred, &mut self.dom_preds);
                let pred = Prediction::Constant(centre);
                let pred = match (predictor, model_pred) {
                    (Predictor::Model | Predictor::Carry, Some(p)) if p.len() == out.len() => {
                        Prediction::Values(p)
                    }
                    (Predictor::Model, _) => {
                        return Err(Malformed::new(
                            "the column is coded with a learned model the file does not hold",
                        ));
                    }
                    (Predictor::Carry, _) => {
                        return Err(Malformed::new(
                            "the column is carried over from a column not decoded before it",
                        ));
                    }
                    _ => pred,
                };
                if let Some(ip) = interp {
                    // The codes in decoding order, in segments of SEGMENT codes.
                    // Not cleared first, as in `read_codes`.
                    let m = out.len() - self.exc.len();
                    self.k.resize(m, 0);
                    self.segments
                        .decode(&mut r, &[], &self.spare, &mut self.k)?;
                    let fallback = q.fallback::<T>(&cp.norm);
                    ip.dequantize(
                        &self.k,
                        &self.exc,
                        (q, fallback),
                        (&self.spare, &mut self.blocks),
                        out,
                    );
                } else if !matches!(
                    predictor,
                    Predictor::Centre | Predictor::Model | Predictor::Carry
                ) {
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
                        self.coder.decode_either(&mut r, n, &mut self.codes)?;
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
            KIND_LOSSLESS | KIND_RELATION => {
                if kind == KIND_RELATION {
                    // The chunk read the relation and computed its sums (`model_pred`).
                    Relation::read(&mut r, usize::MAX)?;
                }
                lossless::decode(
                    &mut r,
                    reference,
                    model_pred,
                    grid,
                    &mut self.coder,
                    &mut self.ll,
                    out,
                )?
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
    /// Whether it was, predicted by a relation to columns coded before it.
    pub relation: bool,
    /// The predictor of a quantized column.
    pub predictor: Option<Predictor>,
    /// The transform of a column coded bit-exactly (`lorenzo-2d`, `sigma`, `delta`, ...).
    pub transform: Option<&'static str>,
    /// Values stored verbatim.
    pub exceptions: u64,
}

/// Splits a coded payload into its column sections without decoding them; `order` is the
/// order the columns are coded in ([`crate::chunk::CodecParams::column_order`]), `ordinal[j]` whether column
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
            relation: false,
            predictor: None,
            transform: None,
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
            if p == Predictor::Carry {
                s.u8().map_err(|e| e.0)?;
                s.uvarint().map_err(|e| e.0)?;
            }
            s.bytes(8).map_err(|e| e.0)?;
            if ordinal.get(j).copied().unwrap_or(false) {
                s.uvarint().map_err(|e| e.0)?;
            }
            (Some(p), s.uvarint().map_err(|e| e.0)?)
        } else {
            (None, 0)
        };
        let transform = match kind {
            KIND_LOSSLESS | KIND_RELATION => {
                if kind == KIND_RELATION {
                    Relation::read(&mut s, usize::MAX)
                        .map_err(|e| format!("column {j}: {}", e.0))?;
                }
                Some(lossless::transform_name(&mut s).map_err(|e| format!("column {j}: {}", e.0))?)
            }
            _ => None,
        };
        out[j] = ColumnSection {
            // The section and its length prefix.
            bytes: before - r.remaining(),
            lossless: kind == KIND_LOSSLESS || kind == KIND_RELATION,
            relation: kind == KIND_RELATION,
            predictor,
            transform,
            exceptions,
        };
    }
    Ok(out)
}
