//! The learned predictor: a conditional MLP per column, shipped in the container's model
//! section and evaluated by a deterministic kernel.
//!
//! Column `j` of a table is predicted from the *reconstructed* values of up to
//! [`MAX_INPUTS`] earlier columns (the decoder has those, in column order, before it decodes
//! column `j`): `x̂ⱼ = offsetⱼ + scaleⱼ · f(u)`, where `u` are the inputs normalized by their own
//! columns' offset and scale and `f` is a one-hidden-layer ReLU network. The residual stage then
//! codes `x − x̂` within the bound like any other prediction, so a poor prediction costs bytes,
//! never accuracy, and each chunk keeps the model only for the columns where it is estimated to
//! pay (predictor id 4 in `predict`).
//!
//! # Bit-reproducibility
//!
//! The compressor and the decompressor must compute the same `x̂` to the last bit, on any
//! machine, thread count and SIMD width. So the kernel ([`Model::predict_column`]):
//!
//! - normalizes each input in `f64` (`(x − offset) / scale`, non-finite → 0, clamped to ±8) and
//!   rounds once to `f32`;
//! - sums each hidden unit as `b + w₀u₀ + w₁u₁ + …` in that fixed order, in `f32`, with separate
//!   multiply and add (Rust never contracts them into fused multiply-adds);
//! - applies ReLU (`max(a, 0)`), then sums the output layer the same way;
//! - vectorizes only *across records* (each record's arithmetic is the same sequence of IEEE
//!   operations whatever the vector width), never across a reduction;
//! - uses no transcendental functions.
//!
//! A prediction that comes out non-finite is replaced by the column centre.
//!
//! # Format (model section, kind 1)
//!
//! ```text
//! model   := columns uvarint, column*
//! column  := offset f64, scale f64, inputs uvarint, input uvarint*, hidden uvarint,
//!            w1 f32 × (hidden × inputs) (unit by unit), b1 f32 × hidden, w2 f32 × hidden, b2 f32
//! ```
//!
//! all little-endian; a column with `inputs = 0` has no network (`hidden = 0`).

pub mod train;

use crate::bytes::{ByteReader, DecodeResult, Malformed, put_uvarint};
use crate::element::Element;

/// Most earlier columns one column's network reads.
pub const MAX_INPUTS: usize = 12;
/// Most hidden units per column.
pub const MAX_HIDDEN: usize = 256;
/// Normalized inputs are clamped to this magnitude.
const INPUT_CLAMP: f64 = 8.0;
/// Records evaluated together by the kernel.
const BLOCK: usize = 256;

/// One column's network.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnModel {
    /// Centre of the column (input and output normalization).
    pub offset: f64,
    /// Half-range of the column (0: constant).
    pub scale: f64,
    /// The earlier columns read, in order.
    pub inputs: Vec<u32>,
    /// Hidden units.
    pub hidden: usize,
    /// First layer, `hidden × inputs`, unit by unit.
    pub w1: Vec<f32>,
    /// First layer biases.
    pub b1: Vec<f32>,
    /// Output weights.
    pub w2: Vec<f32>,
    /// Output bias.
    pub b2: f32,
}

impl ColumnModel {
    /// A column without a network (normalization only).
    pub fn none(offset: f64, scale: f64) -> Self {
        ColumnModel {
            offset,
            scale,
            inputs: Vec::new(),
            hidden: 0,
            w1: Vec::new(),
            b1: Vec::new(),
            w2: Vec::new(),
            b2: 0.0,
        }
    }

    /// Whether this column has a network.
    pub fn is_active(&self) -> bool {
        !self.inputs.is_empty() && self.hidden > 0
    }

    /// Parameters of the network.
    pub fn parameters(&self) -> usize {
        self.w1.len() + self.b1.len() + self.w2.len() + usize::from(self.is_active())
    }

    /// `x` normalized as a network input of this column.
    #[inline(always)]
    pub fn normalize(&self, x: f64) -> f32 {
        if !(x.is_finite() && self.scale > 0.0) {
            return 0.0;
        }
        ((x - self.offset) / self.scale).clamp(-INPUT_CLAMP, INPUT_CLAMP) as f32
    }
}

/// A learned predictor for a table: one [`ColumnModel`] per column.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Per column, in the table's order.
    pub columns: Vec<ColumnModel>,
}

/// The first bytes of a model file.
const FILE_MAGIC: &[u8; 8] = b"BALERMDL";

/// The model section's kind byte for this model.
pub const KIND_CONDITIONAL_MLP: u8 = 1;

impl Model {
    /// Columns with a network.
    pub fn active_columns(&self) -> usize {
        self.columns.iter().filter(|c| c.is_active()).count()
    }

    /// Total parameters.
    pub fn parameters(&self) -> usize {
        self.columns.iter().map(ColumnModel::parameters).sum()
    }

    /// Appends the serialized model (the model section body after its kind byte).
    pub fn write(&self, out: &mut Vec<u8>) {
        put_uvarint(out, self.columns.len() as u64);
        for c in &self.columns {
            out.extend_from_slice(&c.offset.to_le_bytes());
            out.extend_from_slice(&c.scale.to_le_bytes());
            put_uvarint(out, c.inputs.len() as u64);
            for &i in &c.inputs {
                put_uvarint(out, u64::from(i));
            }
            put_uvarint(out, c.hidden as u64);
            for v in c.w1.iter().chain(&c.b1).chain(&c.w2) {
                out.extend_from_slice(&v.to_le_bytes());
            }
            if c.is_active() {
                out.extend_from_slice(&c.b2.to_le_bytes());
            }
        }
    }

    /// The serialized model as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }

    /// Reads a model for a table of `width` columns; every column's inputs must come before it.
    pub fn read(bytes: &[u8], width: usize) -> Result<Model, String> {
        Self::read_inner(bytes, width).map_err(|e| e.0)
    }

    fn read_inner(bytes: &[u8], width: usize) -> DecodeResult<Model> {
        let mut r = ByteReader::new(bytes);
        let n = r.uvarint()? as usize;
        if n != width {
            return Err(Malformed(format!(
                "the model has {n} columns, the table {width}"
            )));
        }
        let mut columns = Vec::with_capacity(n);
        for j in 0..n {
            let offset = r.f64()?;
            let scale = r.f64()?;
            let ninputs = r.uvarint_max(MAX_INPUTS as u64, "model inputs")?;
            let mut inputs = Vec::with_capacity(ninputs);
            for _ in 0..ninputs {
                let i = r.uvarint()?;
                if i >= j as u64 {
                    return Err(Malformed(format!(
                        "model column {j} reads column {i}, which is not decoded before it"
                    )));
                }
                inputs.push(i as u32);
            }
            let hidden = r.uvarint_max(MAX_HIDDEN as u64, "model hidden units")?;
            if (ninputs == 0) != (hidden == 0) {
                return Err(Malformed(format!(
                    "model column {j}: {ninputs} inputs but {hidden} hidden units"
                )));
            }
            let mut floats = |count: usize| -> DecodeResult<Vec<f32>> {
                let b = r.bytes(count * 4)?;
                Ok(b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect())
            };
            let w1 = floats(hidden * ninputs)?;
            let b1 = floats(hidden)?;
            let w2 = floats(hidden)?;
            let b2 = if hidden > 0 { floats(1)?[0] } else { 0.0 };
            columns.push(ColumnModel {
                offset,
                scale,
                inputs,
                hidden,
                w1,
                b1,
                w2,
                b2,
            });
        }
        if !r.is_empty() {
            return Err(Malformed::new("bytes left after the model"));
        }
        Ok(Model { columns })
    }

    /// Writes the model as a file: `"BALERMDL"`, format version `u8` (1), kind `u8` (1), the
    /// serialized model, and a CRC-32 of everything before it.
    pub fn save(&self, path: &std::path::Path) -> std::io::Result<()> {
        let mut out = Vec::new();
        out.extend_from_slice(FILE_MAGIC);
        out.push(1);
        out.push(KIND_CONDITIONAL_MLP);
        self.write(&mut out);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        std::fs::write(path, out)
    }

    /// Reads a model file written by [`save`](Self::save).
    pub fn load(path: &std::path::Path) -> Result<Model, String> {
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        if bytes.len() < FILE_MAGIC.len() + 6 || &bytes[..8] != FILE_MAGIC {
            return Err("not a baler model file".into());
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err("checksum mismatch: the model file is damaged".into());
        }
        if body[8] != 1 || body[9] != KIND_CONDITIONAL_MLP {
            return Err(format!(
                "model format {} kind {} needs a newer baler",
                body[8], body[9]
            ));
        }
        let mut r = ByteReader::new(&body[10..]);
        let width = r.uvarint().map_err(|e| e.0)? as usize;
        Self::read(&body[10..], width)
    }

    /// Predicts column `j` of a chunk of `rows` records from the reconstructed columns before
    /// it (`done`, column-major, `j × rows` values), into `out` (`rows` values). `centre` stands
    /// in for a prediction that is not finite.
    pub fn predict_column<T: Element>(
        &self,
        j: usize,
        done: &[T],
        rows: usize,
        centre: f64,
        out: &mut Vec<f64>,
    ) {
        out.clear();
        out.resize(rows, centre);
        let c = &self.columns[j];
        if !c.is_active() {
            return;
        }
        let mut u = vec![0f32; c.inputs.len() * BLOCK];
        let mut acc = [0f32; BLOCK];
        let mut y = [0f32; BLOCK];
        for r0 in (0..rows).step_by(BLOCK) {
            let n = (rows - r0).min(BLOCK);
            for (k, &i) in c.inputs.iter().enumerate() {
                let src = &done[i as usize * rows + r0..i as usize * rows + r0 + n];
                let norm = &self.columns[i as usize];
                for (d, &x) in u[k * BLOCK..k * BLOCK + n].iter_mut().zip(src) {
                    *d = norm.normalize(x.to_f64());
                }
            }
            y[..n].fill(c.b2);
            for h in 0..c.hidden {
                let w = &c.w1[h * c.inputs.len()..(h + 1) * c.inputs.len()];
                acc[..n].fill(c.b1[h]);
                for (k, &wk) in w.iter().enumerate() {
                    let uk = &u[k * BLOCK..k * BLOCK + n];
                    for (a, &x) in acc[..n].iter_mut().zip(uk) {
                        *a += wk * x;
                    }
                }
                let v = c.w2[h];
                for (o, &a) in y[..n].iter_mut().zip(&acc[..n]) {
                    *o += v * a.max(0.0);
                }
            }
            for (o, &v) in out[r0..r0 + n].iter_mut().zip(&y[..n]) {
                let p = c.offset + c.scale * f64::from(v);
                if p.is_finite() {
                    *o = p;
                }
            }
        }
    }

    /// The same prediction as [`predict_column`](Self::predict_column) for one record, written
    /// plainly (the reference the kernel is tested against). `row` holds the record's
    /// reconstructed values of every column before `j`.
    pub fn predict_one(&self, j: usize, row: &[f64], centre: f64) -> f64 {
        let c = &self.columns[j];
        if !c.is_active() {
            return centre;
        }
        let u: Vec<f32> = c
            .inputs
            .iter()
            .map(|&i| self.columns[i as usize].normalize(row[i as usize]))
            .collect();
        let mut y = c.b2;
        for h in 0..c.hidden {
            let mut a = c.b1[h];
            for (k, &x) in u.iter().enumerate() {
                a += c.w1[h * u.len() + k] * x;
            }
            y += c.w2[h] * a.max(0.0);
        }
        let p = c.offset + c.scale * f64::from(y);
        if p.is_finite() { p } else { centre }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn random_model(width: usize, hidden: usize, seed: u64) -> Model {
        let mut s = seed;
        let mut next = move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let columns = (0..width)
            .map(|j| {
                if j == 0 {
                    return ColumnModel::none(1.0, 2.0);
                }
                let inputs: Vec<u32> = (0..j.min(MAX_INPUTS) as u32).collect();
                let n = inputs.len();
                ColumnModel {
                    offset: j as f64 * 0.5,
                    scale: 3.0 + j as f64,
                    inputs,
                    hidden,
                    w1: (0..hidden * n).map(|_| next()).collect(),
                    b1: (0..hidden).map(|_| next() * 0.1).collect(),
                    w2: (0..hidden).map(|_| next()).collect(),
                    b2: next() * 0.1,
                }
            })
            .collect();
        Model { columns }
    }

    #[test]
    fn save_and_load_are_bit_exact() {
        let m = random_model(7, 9, 1);
        let bytes = m.to_bytes();
        let back = Model::read(&bytes, 7).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.to_bytes(), bytes);
        assert!(Model::read(&bytes, 6).is_err());
        assert!(Model::read(&bytes[..bytes.len() - 1], 7).is_err());
    }

    #[test]
    fn a_model_reading_a_later_column_is_rejected() {
        let mut m = random_model(3, 2, 2);
        m.columns[1].inputs = vec![2];
        m.columns[1].w1.truncate(2);
        assert!(Model::read(&m.to_bytes(), 3).is_err());
    }

    #[test]
    fn kernel_matches_the_scalar_reference_bit_for_bit() {
        let width = 6;
        let m = random_model(width, 13, 3);
        let rows = 1000; // several blocks and a partial one
        let mut s = 9u64;
        let mut cols: Vec<f64> = (0..width * rows)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                ((s >> 11) as f64 / (1u64 << 53) as f64) * 20.0 - 10.0
            })
            .collect();
        cols[5] = f64::NAN;
        cols[rows + 7] = f64::INFINITY;
        cols[2 * rows + 9] = 1e300;
        for j in 0..width {
            let mut out = Vec::new();
            m.predict_column(j, &cols[..j * rows], rows, -1.25, &mut out);
            for r in 0..rows {
                let row: Vec<f64> = (0..j).map(|i| cols[i * rows + r]).collect();
                let want = m.predict_one(j, &row, -1.25);
                assert_eq!(out[r].to_bits(), want.to_bits(), "column {j} row {r}");
            }
            // Any split of the records gives the same bits (threads see different chunks).
            let mut part = Vec::new();
            let sub: Vec<f64> = (0..j)
                .flat_map(|i| cols[i * rows + 100..i * rows + 137].to_vec())
                .collect();
            m.predict_column(j, &sub, 37, -1.25, &mut part);
            for r in 0..37 {
                assert_eq!(part[r].to_bits(), out[100 + r].to_bits());
            }
        }
    }
}
