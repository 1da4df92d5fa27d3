//! Thin handles on the internal stages, for the criterion benches in `benches/` (and for
//! experiments). Not part of the stable API.

use std::sync::Arc;

use crate::array::Layout;
use crate::bound::Bound;
use crate::bytes::ByteReader;
use crate::chunk::{ChunkCodec, CodecParams, ColumnParams, PayloadKind};
use crate::element::Element;
use crate::entropy::CodeCoder;
use crate::lossless::{self, LosslessScratch, Reference};
use crate::normalize::Normalization;
use crate::predict::Grid;
use crate::residual::{Exceptions, Prediction, Quantizer};

/// The quantizer of a column of values within `±max_abs` (predictions are in its domain).
fn quantizer<T: Element>(bound: Bound, max_abs: f64) -> Quantizer {
    Quantizer::new::<T>(
        bound,
        &Normalization {
            offset: 0.0,
            scale: max_abs,
        },
    )
}

/// The residual stage on one column: quantize with a constant prediction.
pub fn quantize<T: Element>(
    values: &[T],
    prediction: f64,
    bound: Bound,
    max_abs: f64,
    codes: &mut Vec<i32>,
    recon: &mut [T],
) -> usize {
    let q = quantizer::<T>(bound, max_abs);
    let mut exc = Exceptions::default();
    q.quantize(
        values,
        Prediction::Constant(prediction),
        codes,
        &mut exc,
        Some(recon),
    );
    exc.len()
}

/// The residual stage backwards: codes (no exceptions) to values.
pub fn dequantize<T: Element>(
    codes: &[i32],
    prediction: f64,
    bound: Bound,
    max_abs: f64,
    out: &mut [T],
) {
    let q = quantizer::<T>(bound, max_abs);
    q.dequantize(codes, &[], &[], 0, Prediction::Constant(prediction), out)
        .expect("consistent");
}

/// The entropy stage.
#[derive(Debug, Default)]
pub struct Entropy(CodeCoder);

impl Entropy {
    /// A coder with empty scratch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Codes a stream of integer codes.
    pub fn encode(&mut self, codes: &[i32], out: &mut Vec<u8>) {
        self.0.encode(codes, out);
    }

    /// Decodes `n` codes.
    pub fn decode(&mut self, input: &[u8], n: usize, out: &mut Vec<i32>) {
        self.0
            .decode(&mut ByteReader::new(input), n, out)
            .expect("valid stream");
    }
}

/// The lossless column coder.
#[derive(Debug, Default)]
pub struct Lossless {
    coder: CodeCoder,
    scratch: LosslessScratch,
}

impl Lossless {
    /// A coder with empty scratch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Codes a column bit-exactly (no reference column).
    pub fn encode<T: Element>(&mut self, col: &[T], out: &mut Vec<u8>) {
        lossless::encode(
            col,
            Reference::None,
            None,
            Grid::default(),
            &mut self.coder,
            &mut self.scratch,
            out,
        );
    }

    /// Decodes a column.
    pub fn decode<T: Element>(&mut self, input: &[u8], out: &mut [T]) {
        lossless::decode(
            &mut ByteReader::new(input),
            Reference::None,
            None,
            Grid::default(),
            &mut self.coder,
            &mut self.scratch,
            out,
        )
        .expect("valid stream");
    }
}

/// A chunk codec for a table, or a field.
#[derive(Debug)]
pub struct Chunks<T: Element>(ChunkCodec<T>);

impl<T: Element> Chunks<T> {
    /// A codec for tables of `width` columns, each with `bounds[j]` and `norms[j]`.
    pub fn table(bounds: &[Bound], norms: &[(f64, f64)]) -> Self {
        let columns = bounds
            .iter()
            .zip(norms)
            .map(|(&bound, &(offset, scale))| ColumnParams {
                bound,
                norm: Normalization { offset, scale },
            })
            .collect::<Vec<_>>();
        Chunks(ChunkCodec::new(Arc::new(CodecParams {
            layout: Layout::Table,
            record_len: columns.len(),
            row_len: 0,
            plane_len: 0,
            columns,
            model: None,
        })))
    }

    /// A codec for chunks of a field whose slices along the first axis hold `plane` values
    /// in rows of `row`, with one bound and normalization.
    pub fn field(bound: Bound, (offset, scale): (f64, f64), row: usize, plane: usize) -> Self {
        Chunks(ChunkCodec::new(Arc::new(CodecParams {
            layout: Layout::Field,
            record_len: plane,
            row_len: row,
            plane_len: plane,
            columns: vec![ColumnParams {
                bound,
                norm: Normalization { offset, scale },
            }],
            model: None,
        })))
    }

    /// Codes whole rows; returns whether the payload was coded (not stored raw).
    pub fn encode(&mut self, data: &[T], out: &mut Vec<u8>) -> bool {
        self.0.encode(data, out) == PayloadKind::Coded
    }

    /// Decodes a coded payload of `values` values.
    pub fn decode(&mut self, payload: &[u8], values: usize, out: &mut Vec<T>) {
        self.0
            .decode(PayloadKind::Coded, payload, values, out)
            .expect("valid payload");
    }
}
