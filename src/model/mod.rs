//! The learned predictor: a conditional network per column, shipped in the container's model
//! section and evaluated by a deterministic kernel.
//!
//! A model codes a table's columns in an *order* of its choosing (categorical columns first,
//! then an order in which later columns follow from earlier ones), and predicts column `j` from
//! the *reconstructed* values of columns coded before it (the decoder has those before it
//! decodes `j`): `x̂ⱼ = offsetⱼ + scaleⱼ · (b + Σ vₖuₖ + Σ wₕ·relu(aₕ + Σ Wₕₖuₖ))`, where the
//! inputs `u` are earlier columns or [derived features](features) of them (`pt·cos φ`,
//! `√(pz² + pt² + m²)`, …), each normalized by its own offset and scale. The linear term
//! carries the exact relations, the one-hidden-layer ReLU network what is left. The residual
//! stage then codes `x − x̂` within the bound like any other prediction, so a poor prediction
//! costs bytes, never accuracy, and each chunk keeps the model only for the columns where it is
//! estimated to pay (predictor id 4 in `predict`).
//!
//! # Bit-reproducibility
//!
//! The compressor and the decompressor must compute the same `x̂` to the last bit, on any
//! machine, thread count and SIMD width. So the kernel ([`Model::predict_column`]):
//!
//! - computes each derived feature in `f64` with our own elementary functions (only IEEE basic
//!   operations and square root, see [`features`]);
//! - normalizes each input in `f64` (`(x − offset) · (1 / scale)`, non-finite → 0, clamped to
//!   ±8) and
//!   rounds once to `f32`;
//! - sums the output as `b + v₀u₀ + v₁u₁ + …` and each hidden unit as `a + W₀u₀ + W₁u₁ + …` in
//!   that fixed order, in `f32`, with separate multiply and add (Rust never contracts them into
//!   fused multiply-adds);
//! - applies ReLU (`max(a, 0)`), adding the units' contributions to the output in unit order;
//! - vectorizes only *across records* (each record's arithmetic is the same sequence of IEEE
//!   operations whatever the vector width), never across a reduction.
//!
//! A prediction that comes out non-finite is replaced by the column centre.
//!
//! # Format (model section, kind 2)
//!
//! ```text
//! model   := width uvarint, order uvarint × width, features uvarint, feature*, column × width
//! feature := op u8, arg uvarint × arity(op), offset f64, scale f64
//! column  := offset f64, scale f64, inputs uvarint, input uvarint*,
//!            [lin f32 × inputs, hidden uvarint, w1 f32 × (hidden × inputs) (unit by unit),
//!             b1 f32 × hidden, w2 f32 × hidden, b2 f32]        (only when inputs > 0)
//! ```
//!
//! all little-endian. An input below `width` is that column; `width + k` is feature `k`. Every
//! column an input reads must come before the predicted column in `order`.

pub mod budget;
pub mod features;
mod select;
pub mod train;

use crate::bytes::{ByteReader, DecodeResult, Malformed, put_uvarint};
use crate::element::Element;
use crate::simd::with_avx512;
pub use features::{Feature, Op};

/// Most inputs one column's network reads.
pub const MAX_INPUTS: usize = 12;
/// Most hidden units per column.
pub const MAX_HIDDEN: usize = 256;
/// Most derived features in a model.
pub const MAX_FEATURES: usize = 4096;
/// Normalized inputs are clamped to this magnitude.
const INPUT_CLAMP: f64 = 8.0;
/// Records evaluated together by the kernel.
const BLOCK: usize = 256;

/// `f` over `items` on up to `threads` threads (at most 8, the calling thread one of them),
/// each taking the next item as it finishes one, so items of unequal cost (columns of more or
/// fewer inputs) are shared evenly; the results in the items' order: what each item gives
/// does not depend on the thread count.
pub(crate) fn par_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let threads = threads.clamp(1, 8).min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    shared_out(threads, items.iter(), f)
}

/// `f(first, run)` on up to `threads` threads over contiguous runs of `items`, each run whole
/// units of `unit` items and `first` the index of its first unit; the results in run order.
pub(crate) fn par_runs_mut<T: Send, R: Send>(
    items: &mut [T],
    unit: usize,
    threads: usize,
    f: impl Fn(usize, &mut [T]) -> R + Sync,
) -> Vec<R> {
    let unit = unit.max(1);
    let per = run_len(items.len() / unit, threads);
    crate::threads::scope(|scope| {
        let handles: Vec<_> = items
            .chunks_mut(per * unit)
            .enumerate()
            .map(|(i, run)| {
                let f = &f;
                scope.spawn(move || f(i * per, run))
            })
            .collect();
        join_all(handles)
    })
}

/// `f(first, run)` over short contiguous runs of `items` (`first` the index of a run's first
/// item) on up to `threads` threads, each taking the next run as it finishes one, so items of
/// unequal cost are shared evenly; the results in run order.
pub(crate) fn par_runs_shared<T: Send, R: Send>(
    items: &mut [T],
    threads: usize,
    f: impl Fn(usize, &mut [T]) -> R + Sync,
) -> Vec<R> {
    let threads = threads.clamp(1, 8);
    // Sixteen runs a thread: the last ones short enough that the threads end together.
    let per = items.len().div_ceil(16 * threads).max(1);
    shared_out(threads, items.chunks_mut(per).enumerate(), |(i, run)| {
        f(i * per, run)
    })
}

/// `f` of each of `items` on `threads` threads (the calling thread one of them), each taking
/// the next item as it finishes one; the results in the items' order.
fn shared_out<X: Send, R: Send>(
    threads: usize,
    items: impl Iterator<Item = X> + Send,
    f: impl Fn(X) -> R + Sync,
) -> Vec<R> {
    let items = std::sync::Mutex::new(items.enumerate());
    let work = || {
        let mut done = Vec::new();
        loop {
            let next = items.lock().expect("no thread panics holding it").next();
            let Some((i, item)) = next else {
                return done;
            };
            done.push((i, f(item)));
        }
    };
    let mut all = crate::threads::scope(|scope| {
        let work = &work;
        let handles: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut all = work();
        all.extend(join_all(handles).into_iter().flatten());
        all
    });
    all.sort_unstable_by_key(|&(i, _)| i);
    all.into_iter().map(|(_, r)| r).collect()
}

/// Items per run when `n` items are split in contiguous runs for up to `threads` threads (at
/// most 8).
fn run_len(n: usize, threads: usize) -> usize {
    n.div_ceil(threads.clamp(1, 8)).max(1)
}

/// The results of scoped threads, in order.
fn join_all<R>(handles: Vec<crate::threads::ScopedJoinHandle<'_, R>>) -> Vec<R> {
    handles
        .into_iter()
        .map(|h| h.join().expect("a model thread panicked"))
        .collect()
}

/// The total of eight interleaved partial sums (of a vectorized dot product), added in a
/// fixed order.
#[inline]
pub(crate) fn fold_lanes<T: Copy + std::ops::Add<Output = T>>(acc: [T; 8]) -> T {
    let pairs = [
        acc[0] + acc[4],
        acc[1] + acc[5],
        acc[2] + acc[6],
        acc[3] + acc[7],
    ];
    (pairs[0] + pairs[2]) + (pairs[1] + pairs[3])
}

/// The threads training and selection use: every core.
pub(crate) fn cores() -> usize {
    crate::compress::default_threads()
}

/// `x` normalized by `offset` and `scale` as a network input: `(x − offset) · (1 / scale)`,
/// clamped to ±8, rounded to `f32` (non-finite `x` or a constant column → 0). Multiplying by
/// the reciprocal (the same `f64` everywhere) keeps the division out of the per-record loop.
#[inline(always)]
pub fn normalize_input(x: f64, offset: f64, scale: f64) -> f32 {
    let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
    let v = ((x - offset) * inv).clamp(-INPUT_CLAMP, INPUT_CLAMP) as f32;
    if x.is_finite() { v } else { 0.0 }
}

/// One column's predictor.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnModel {
    /// Centre of the column (input and output normalization).
    pub offset: f64,
    /// Half-range of the column (0: constant).
    pub scale: f64,
    /// The inputs read, in order: a column (`< width`) or feature `k` (`width + k`).
    pub inputs: Vec<u32>,
    /// Linear weights, one per input.
    pub lin: Vec<f32>,
    /// Hidden units (0: linear only).
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
    /// A column without a predictor (normalization only).
    pub fn none(offset: f64, scale: f64) -> Self {
        ColumnModel {
            offset,
            scale,
            inputs: Vec::new(),
            lin: Vec::new(),
            hidden: 0,
            w1: Vec::new(),
            b1: Vec::new(),
            w2: Vec::new(),
            b2: 0.0,
        }
    }

    /// Whether this column is predicted.
    pub fn is_active(&self) -> bool {
        !self.inputs.is_empty()
    }

    /// Parameters of the predictor.
    pub fn parameters(&self) -> usize {
        self.lin.len()
            + self.w1.len()
            + self.b1.len()
            + self.w2.len()
            + usize::from(self.is_active())
    }

    /// `x` normalized as a network input of this column.
    #[inline(always)]
    pub fn normalize(&self, x: f64) -> f32 {
        normalize_input(x, self.offset, self.scale)
    }
}

/// The columns of one chunk that its predictions read, normalized as the networks read them
/// ([`ColumnModel::normalize`]): each the first time a column's prediction needs it, then
/// read from here by the chunk's later columns (a column is an input of several; the
/// normalization was most of a linear model's kernel): a linear column's term reads them in
/// place, a network's block copies them. Kept by a worker across its chunks.
#[derive(Debug, Default)]
pub struct ChunkInputs {
    rows: usize,
    /// Column `i` normalized where `done[i]` (each written whole before it is read, so never
    /// zeroed: a worker's first chunk touches only the columns read).
    done: Vec<bool>,
    values: Vec<Vec<f32>>,
}

impl ChunkInputs {
    /// Forgets the last chunk's columns: a chunk of `rows` records of `width` columns starts.
    pub fn start(&mut self, width: usize, rows: usize) {
        self.rows = rows;
        self.done.clear();
        self.done.resize(width, false);
        self.values.resize_with(width, Vec::new);
    }
}

/// A learned predictor for a table: a coding order, derived features and one [`ColumnModel`]
/// per column.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// The order columns are coded in (a permutation of the column indices).
    pub order: Vec<u32>,
    /// Derived features the columns read (input `width + k` is `features[k]`).
    pub features: Vec<Feature>,
    /// Per column, in the table's order.
    pub columns: Vec<ColumnModel>,
}

/// The first bytes of a model file.
const FILE_MAGIC: &[u8; 8] = b"BALERMDL";

/// The model section's kind byte for this model.
pub const KIND_CONDITIONAL_MLP: u8 = 2;

impl Model {
    /// A model that predicts nothing, with the given per-column normalization.
    pub fn plain(norms: &[(f64, f64)]) -> Model {
        Model {
            order: (0..norms.len() as u32).collect(),
            features: Vec::new(),
            columns: norms
                .iter()
                .map(|&(o, s)| ColumnModel::none(o, s))
                .collect(),
        }
    }

    /// Columns with a predictor.
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
        for &o in &self.order {
            put_uvarint(out, u64::from(o));
        }
        put_uvarint(out, self.features.len() as u64);
        for f in &self.features {
            f.write(out);
        }
        for c in &self.columns {
            out.extend_from_slice(&c.offset.to_le_bytes());
            out.extend_from_slice(&c.scale.to_le_bytes());
            put_uvarint(out, c.inputs.len() as u64);
            for &i in &c.inputs {
                put_uvarint(out, u64::from(i));
            }
            if c.is_active() {
                for v in &c.lin {
                    out.extend_from_slice(&v.to_le_bytes());
                }
                put_uvarint(out, c.hidden as u64);
                for v in c.w1.iter().chain(&c.b1).chain(&c.w2) {
                    out.extend_from_slice(&v.to_le_bytes());
                }
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

    /// Reads a model for a table of `width` columns; every column's inputs must be coded
    /// before it.
    pub fn read(bytes: &[u8], width: usize) -> Result<Model, String> {
        Self::read_inner(bytes, width).map_err(|e| e.0)
    }

    fn read_inner(bytes: &[u8], width: usize) -> DecodeResult<Model> {
        let mut r = ByteReader::new(bytes);
        // Each column takes at least 18 bytes (its place in the order, offset, scale, input
        // count): a count the bytes cannot hold is refused before anything is allocated.
        let n = r.uvarint()?;
        if n > (r.remaining() / 18) as u64 {
            return Err(Malformed(format!(
                "the model declares {n} columns, more than its {} bytes can hold",
                r.remaining()
            )));
        }
        let n = n as usize;
        if n != width {
            return Err(Malformed(format!(
                "the model has {n} columns, the table {width}"
            )));
        }
        let mut order = Vec::with_capacity(n);
        let mut position = vec![usize::MAX; n];
        for p in 0..n {
            let j = r.uvarint()?;
            if j >= n as u64 || position[j as usize] != usize::MAX {
                return Err(Malformed::new(
                    "the model's column order is not a permutation",
                ));
            }
            position[j as usize] = p;
            order.push(j as u32);
        }
        let nfeatures = r.uvarint_max(MAX_FEATURES as u64, "model features")?;
        let mut features = Vec::with_capacity(nfeatures);
        for _ in 0..nfeatures {
            features.push(Feature::read(&mut r, n)?);
        }
        let mut columns = Vec::with_capacity(n);
        for j in 0..n {
            let offset = r.f64()?;
            let scale = r.f64()?;
            let ninputs = r.uvarint_max(MAX_INPUTS as u64, "model inputs")?;
            let mut inputs = Vec::with_capacity(ninputs);
            for _ in 0..ninputs {
                let i = r.uvarint()?;
                let reads: &[u32] = if i < n as u64 {
                    &[i as u32][..]
                } else if i - (n as u64) < nfeatures as u64 {
                    &features[(i - n as u64) as usize].args
                } else {
                    return Err(Malformed(format!("model column {j} reads input {i}")));
                };
                if let Some(&late) = reads.iter().find(|&&c| position[c as usize] >= position[j]) {
                    return Err(Malformed(format!(
                        "model column {j} reads column {late}, which is not decoded before it"
                    )));
                }
                inputs.push(i as u32);
            }
            let mut c = ColumnModel::none(offset, scale);
            if ninputs > 0 {
                c.inputs = inputs;
                c.lin = r.f32s(ninputs)?;
                let hidden = r.uvarint_max(MAX_HIDDEN as u64, "model hidden units")?;
                c.hidden = hidden;
                c.w1 = r.f32s(hidden * ninputs)?;
                c.b1 = r.f32s(hidden)?;
                c.w2 = r.f32s(hidden)?;
                c.b2 = r.f32s(1)?[0];
            }
            columns.push(c);
        }
        if !r.is_empty() {
            return Err(Malformed::new("bytes left after the model"));
        }
        Ok(Model {
            order,
            features,
            columns,
        })
    }

    /// Writes the model as a file: `"BALERMDL"`, format version `u8` (1), kind `u8` (2), the
    /// serialized model, and a CRC-32 of everything before it.
    pub fn save(&self, path: &std::path::Path) -> std::io::Result<()> {
        std::fs::write(path, self.to_file_bytes())
    }

    /// The model file's contents, as [`save`](Self::save) writes them and
    /// [`from_file_bytes`](Self::from_file_bytes) reads them.
    pub fn to_file_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(FILE_MAGIC);
        out.push(1);
        out.push(KIND_CONDITIONAL_MLP);
        self.write(&mut out);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads a model file written by [`save`](Self::save).
    pub fn load(path: &std::path::Path) -> Result<Model, String> {
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        Self::from_file_bytes(&bytes)
    }

    /// Reads a model file's contents (what [`save`](Self::save) writes), e.g. kept in a codec's
    /// configuration.
    pub fn from_file_bytes(bytes: &[u8]) -> Result<Model, String> {
        if bytes.len() < FILE_MAGIC.len() + 6 || &bytes[..8] != FILE_MAGIC {
            return Err("not a baler model file".into());
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err("checksum mismatch: the model file is damaged".into());
        }
        if body[8] != 1 || body[9] != KIND_CONDITIONAL_MLP {
            return Err(match body[9] {
                1 => "model kind 1 is an early development format no longer read: train the \
                      model again"
                    .to_string(),
                k => format!("model format {} kind {k} needs a newer baler", body[8]),
            });
        }
        let mut r = ByteReader::new(&body[10..]);
        let width = r.uvarint().map_err(|e| e.0)? as usize;
        Self::read(&body[10..], width)
    }

    /// Input `input` of `c`, normalized, for `n` records from `r0` of a chunk of `rows`
    /// records (`cols`: column-major, every column the input reads already reconstructed);
    /// `args` and `v` are scratch for a derived feature's arguments and value.
    #[inline(always)]
    fn fill_input<T: Element>(
        &self,
        input: u32,
        cols: &[T],
        (rows, r0): (usize, usize),
        (args, v): (&mut [[f64; BLOCK]; 3], &mut [f64; BLOCK]),
        u: &mut [f32],
    ) {
        let w = self.columns.len();
        let n = u.len();
        let at = |i: u32| &cols[i as usize * rows + r0..i as usize * rows + r0 + n];
        if (input as usize) < w {
            let norm = &self.columns[input as usize];
            for (d, &x) in u.iter_mut().zip(at(input)) {
                *d = norm.normalize(x.to_f64());
            }
            return;
        }
        let f = &self.features[input as usize - w];
        // The arguments widened to f64, then the formula over the whole block at once.
        for (arg, &i) in args.iter_mut().zip(&f.args) {
            for (d, &x) in arg.iter_mut().zip(at(i)) {
                *d = x.to_f64();
            }
        }
        let [a, b, c] = &*args;
        f.inputs_into([&a[..n], &b[..n], &c[..n]], v, u);
    }

    /// Predicts column `j` of a chunk of `rows` records from the reconstructed columns coded
    /// before it (`cols`: column-major, `width × rows` values, of which only those columns are
    /// read), into `out` (`rows` values). `centre` stands in for a prediction that is not
    /// finite. Where the chunk's columns are predicted in turn, `inputs` (started for the
    /// chunk, [`ChunkInputs::start`]) keeps the columns read, normalized once, for the later
    /// columns: the same predictions.
    pub fn predict_column<T: Element>(
        &self,
        j: usize,
        cols: &[T],
        rows: usize,
        centre: f64,
        out: &mut Vec<f64>,
        mut inputs: Option<&mut ChunkInputs>,
    ) {
        if let Some(ci) = inputs.as_deref_mut()
            && (ci.rows, ci.done.len()) != (rows, self.columns.len())
        {
            ci.start(self.columns.len(), rows);
        }
        out.clear();
        out.resize(rows, centre);
        let c = &self.columns[j];
        if !c.is_active() {
            return;
        }
        Self::predict_widest(self, c, cols, rows, out, inputs)
    }

    with_avx512! {
        /// [`predict_body`](Self::predict_body) in the widest vectors this CPU has (the same
        /// operations: the inputs' normalization and the outputs' scaling, a fifth of a
        /// table's decoding, were SSE2 code).
        fn predict_widest<T>(
            model: &Model,
            c: &ColumnModel,
            cols: &[T],
            rows: usize,
            out: &mut [f64],
            inputs: Option<&mut ChunkInputs>,
        ) = Model::predict_body;
    }

    /// [`predict_column`](Self::predict_column) for an active column `c`, block by block,
    /// the columns it reads normalized once into `inputs` where given.
    #[inline(always)]
    fn predict_body<T: Element>(
        &self,
        c: &ColumnModel,
        cols: &[T],
        rows: usize,
        out: &mut [f64],
        mut inputs: Option<&mut ChunkInputs>,
    ) {
        let w = self.columns.len();
        if let Some(ci) = inputs.as_deref_mut() {
            for &i in c.inputs.iter().filter(|&&i| (i as usize) < w) {
                let i = i as usize;
                if !ci.done[i] {
                    let norm = &self.columns[i];
                    let to = &mut ci.values[i];
                    to.clear();
                    let from = &cols[i * rows..(i + 1) * rows];
                    to.extend(from.iter().map(|&x| norm.normalize(x.to_f64())));
                    ci.done[i] = true;
                }
            }
        }
        let normalized = inputs.map(|ci| &ci.values[..]);
        let mut u = [0f32; MAX_INPUTS * BLOCK];
        let mut y = [0f32; BLOCK];
        let mut args = [[0f64; BLOCK]; 3];
        let mut v = [0f64; BLOCK];
        for r0 in (0..rows).step_by(BLOCK) {
            let n = (rows - r0).min(BLOCK);
            // The columns the chunk holds normalized are read where they are, by the linear
            // term alone; a network's block has them copied in.
            let kept = |input: u32| match normalized {
                Some(values) if (input as usize) < w => Some(&values[input as usize][r0..r0 + n]),
                _ => None,
            };
            for (k, &input) in c.inputs.iter().enumerate() {
                let u = &mut u[k * BLOCK..k * BLOCK + n];
                match kept(input) {
                    Some(_) if c.hidden == 0 => {}
                    Some(values) => u.copy_from_slice(values),
                    None => self.fill_input(input, cols, (rows, r0), (&mut args, &mut v), u),
                }
            }
            if c.hidden == 0 {
                linear_from(c, n, &mut y, |k| {
                    kept(c.inputs[k]).unwrap_or(&u[k * BLOCK..k * BLOCK + n])
                });
            } else {
                network(c, &u, n, &mut y);
            }
            for (o, &v) in out[r0..r0 + n].iter_mut().zip(&y[..n]) {
                let p = c.offset + c.scale * f64::from(v);
                if p.is_finite() {
                    *o = p;
                }
            }
        }
    }

    /// The network's inputs for one record (`row`: its reconstructed values, every column).
    pub fn inputs_of(&self, j: usize, row: &[f64]) -> Vec<f32> {
        self.columns[j]
            .inputs
            .iter()
            .map(|&i| self.input_value(i, row))
            .collect()
    }

    /// Input `i` of the model (a column below the width, else a derived feature) for the
    /// record `row`, normalized as the network reads it.
    pub fn input_value(&self, i: u32, row: &[f64]) -> f32 {
        let w = self.columns.len();
        if (i as usize) < w {
            self.columns[i as usize].normalize(row[i as usize])
        } else {
            let f = &self.features[i as usize - w];
            normalize_input(f.value(|a| row[a]), f.offset, f.scale)
        }
    }

    /// The same prediction as [`predict_column`](Self::predict_column) for one record, written
    /// plainly (the reference the kernel is tested against). `row` holds the record's
    /// reconstructed values (only the columns coded before `j` are read).
    pub fn predict_one(&self, j: usize, row: &[f64], centre: f64) -> f64 {
        let c = &self.columns[j];
        if !c.is_active() {
            return centre;
        }
        let u = self.inputs_of(j, row);
        let mut y = c.b2;
        for (k, &x) in u.iter().enumerate() {
            y += c.lin[k] * x;
        }
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

/// Records a hidden unit's sum is kept in registers for.
const LANES: usize = 16;

/// The network's output for the first `n` records of a block: `u` holds input `k` of record
/// `r` at `k·BLOCK + r`. Every record's arithmetic is the same sequence of `f32` operations
/// (output: `b2`, then `+ v_k·u_k` for each input in order, then `+ w2_h·relu(a_h)` for each
/// unit in order, with `a_h = b1_h + W_h0·u_0 + W_h1·u_1 + …`), whatever the instruction set.
/// `y` holds a whole block: the tiers may write past `n`.
#[inline(always)]
fn network_body(c: &ColumnModel, u: &[f32], n: usize, y: &mut [f32]) {
    linear_part(c, u, n, y);
    let ni = c.inputs.len();
    for r0 in (0..n).step_by(LANES) {
        let m = (n - r0).min(LANES);
        let mut out = [0f32; LANES];
        out[..m].copy_from_slice(&y[r0..r0 + m]);
        for h in 0..c.hidden {
            let w = &c.w1[h * ni..(h + 1) * ni];
            let mut a = [c.b1[h]; LANES];
            for (k, &wk) in w.iter().enumerate() {
                let uk = &u[k * BLOCK + r0..k * BLOCK + r0 + LANES];
                for t in 0..LANES {
                    a[t] += wk * uk[t];
                }
            }
            let v = c.w2[h];
            for t in 0..LANES {
                out[t] += v * a[t].max(0.0);
            }
        }
        y[r0..r0 + m].copy_from_slice(&out[..m]);
    }
}

/// The linear term, `y = b2 + v_0·u_0 + v_1·u_1 + …` for the first `n` records (the compiler
/// vectorizes it as written, across records).
#[inline(always)]
fn linear_part(c: &ColumnModel, u: &[f32], n: usize, y: &mut [f32]) {
    linear_from(c, n, y, |k| &u[k * BLOCK..k * BLOCK + n]);
}

/// [`linear_part`] with input `k`'s values for the `n` records from `input(k)`, wherever
/// they are.
#[inline(always)]
fn linear_from<'a>(c: &ColumnModel, n: usize, y: &mut [f32], input: impl Fn(usize) -> &'a [f32]) {
    y[..n].fill(c.b2);
    for (k, &v) in c.lin.iter().enumerate() {
        for (o, &x) in y[..n].iter_mut().zip(input(k)) {
            *o += v * x;
        }
    }
}

/// Calls `$f::<NI>` with `NI` the column's input count (1 to [`MAX_INPUTS`]), so a record's
/// inputs stay in registers across the hidden units.
#[cfg(target_arch = "x86_64")]
macro_rules! with_inputs {
    ($ni:expr, $f:ident($($arg:expr),*)) => {
        match $ni {
            1 => $f::<1>($($arg),*),
            2 => $f::<2>($($arg),*),
            3 => $f::<3>($($arg),*),
            4 => $f::<4>($($arg),*),
            5 => $f::<5>($($arg),*),
            6 => $f::<6>($($arg),*),
            7 => $f::<7>($($arg),*),
            8 => $f::<8>($($arg),*),
            9 => $f::<9>($($arg),*),
            10 => $f::<10>($($arg),*),
            11 => $f::<11>($($arg),*),
            12 => $f::<12>($($arg),*),
            _ => unreachable!("a column reads 1 to MAX_INPUTS inputs"),
        }
    };
}

/// Defines `$network`, [`network_body`] in registers of `$lanes` records (`$feature`'s), and
/// its hidden layer `$hidden`: the same operations (a multiply then an add, never fused), with
/// a block's inputs held in registers across the hidden units, one kernel per input count.
/// `$v` names the register type's intrinsics: `_mm256_*_ps` or `_mm512_*_ps`.
#[cfg(target_arch = "x86_64")]
macro_rules! network_tier {
    ($(#[$m:meta])* $network:ident, $hidden:ident, $feature:tt, $lanes:expr,
     $zero:ident, $load:ident, $store:ident, $set1:ident, $add:ident, $mul:ident, $max:ident) => {
        $(#[$m])*
        #[target_feature(enable = $feature)]
        fn $network(c: &ColumnModel, u: &[f32], n: usize, y: &mut [f32]) {
            linear_part(c, u, n, y);
            if c.hidden > 0 {
                with_inputs!(c.inputs.len(), $hidden(c, u, n, y));
            }
        }

        /// The hidden units' contributions added to `y` for the first `n` records (rounded
        /// up to a register), for a column of `NI` inputs.
        #[target_feature(enable = $feature)]
        #[allow(unsafe_code)]
        fn $hidden<const NI: usize>(c: &ColumnModel, u: &[f32], n: usize, y: &mut [f32]) {
            use std::arch::x86_64::*;
            const L: usize = $lanes;
            let (w1, _) = c.w1[..c.hidden * NI].as_chunks::<NI>();
            let (b1, w2) = (&c.b1[..c.hidden], &c.w2[..c.hidden]);
            let zero = $zero();
            for r0 in (0..n).step_by(L) {
                let mut x = [zero; NI];
                for (k, x) in x.iter_mut().enumerate() {
                    let s = &u[k * BLOCK + r0..k * BLOCK + r0 + L];
                    // SAFETY: `s` holds a register's floats.
                    *x = unsafe { $load(s.as_ptr()) };
                }
                let ys = &mut y[r0..r0 + L];
                // SAFETY: `ys` holds a register's floats.
                let mut out = unsafe { $load(ys.as_ptr()) };
                for ((w, &b), &v) in w1.iter().zip(b1).zip(w2) {
                    let mut a = $set1(b);
                    for k in 0..NI {
                        a = $add(a, $mul($set1(w[k]), x[k]));
                    }
                    // `max(a, 0)`: 0 where `a` is NaN or a zero of either sign, as
                    // `f32::max` here.
                    let relu = $max(a, zero);
                    out = $add(out, $mul($set1(v), relu));
                }
                // SAFETY: `ys` holds a register's floats.
                unsafe { $store(ys.as_mut_ptr(), out) };
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
network_tier!(
    /// [`network_body`] in AVX2 registers, eight records a register.
    network_avx2, hidden_avx2, "avx2", 8,
    _mm256_setzero_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps,
    _mm256_add_ps, _mm256_mul_ps, _mm256_max_ps
);

#[cfg(target_arch = "x86_64")]
network_tier!(
    /// [`network_body`] in AVX-512 registers, sixteen records a register.
    network_avx512, hidden_avx512, "avx512f", 16,
    _mm512_setzero_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps,
    _mm512_add_ps, _mm512_mul_ps, _mm512_max_ps
);

/// [`network_body`] with the widest vectors this CPU has.
#[allow(unsafe_code)]
fn network(c: &ColumnModel, u: &[f32], n: usize, y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports AVX-512F, checked just above.
        return unsafe { network_avx512(c, u, n, y) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { network_avx2(c, u, n, y) };
    }
    network_body(c, u, n, y)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn par_map_keeps_order_for_any_thread_count() {
        let items: Vec<u64> = (0..1001).collect();
        let want: Vec<u64> = items.iter().map(|x| x * x + 1).collect();
        for threads in [0, 1, 2, 3, 8, 64] {
            assert_eq!(par_map(&items, threads, |x| x * x + 1), want, "{threads}");
        }
        assert!(par_map(&[] as &[u64], 4, |x| *x).is_empty());
    }

    #[test]
    fn shared_runs_cover_every_item_once_in_order() {
        for n in [0usize, 1, 5, 31, 1000] {
            for threads in [1, 2, 3, 8] {
                let mut items: Vec<u64> = (0..n as u64).collect();
                // Each run doubles its items and reports where it starts and how long it is.
                let runs = par_runs_shared(&mut items, threads, |first, run| {
                    run.iter_mut().for_each(|x| *x *= 2);
                    (first, run.len())
                });
                let want: Vec<u64> = (0..n as u64).map(|x| 2 * x).collect();
                assert_eq!(items, want, "{n} {threads}");
                let mut at = 0;
                for (first, len) in runs {
                    assert_eq!(first, at, "{n} {threads}");
                    at += len;
                }
                assert_eq!(at, n);
            }
        }
    }

    pub(crate) fn random_model(width: usize, hidden: usize, seed: u64) -> Model {
        let mut s = seed;
        let mut next = move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        // Coded in reverse order; two derived features over the last columns.
        let order: Vec<u32> = (0..width as u32).rev().collect();
        let w = width as u32;
        let features = vec![
            Feature {
                op: Op::MulCos,
                args: vec![w - 1, w - 2],
                offset: 0.5,
                scale: 4.0,
            },
            Feature {
                op: Op::Hypot3,
                args: vec![w - 1, w - 2, w - 3],
                offset: 3.0,
                scale: 9.0,
            },
        ];
        let columns = (0..width)
            .map(|j| {
                let before = width - 1 - j; // columns coded before j: j+1..width
                if before == 0 {
                    return ColumnModel::none(1.0, 2.0);
                }
                let mut inputs: Vec<u32> = (j as u32 + 1..w).take(MAX_INPUTS - 2).collect();
                if before >= 2 {
                    inputs.push(w);
                }
                if before >= 3 {
                    inputs.push(w + 1);
                }
                let n = inputs.len();
                ColumnModel {
                    offset: j as f64 * 0.5,
                    scale: 3.0 + j as f64,
                    inputs,
                    lin: (0..n).map(|_| next()).collect(),
                    hidden,
                    w1: (0..hidden * n).map(|_| next()).collect(),
                    b1: (0..hidden).map(|_| next() * 0.1).collect(),
                    w2: (0..hidden).map(|_| next()).collect(),
                    b2: next() * 0.1,
                }
            })
            .collect();
        Model {
            order,
            features,
            columns,
        }
    }

    #[test]
    fn a_chunks_normalized_inputs_give_the_same_predictions() {
        // Columns predicted in coding order through one `ChunkInputs`, over two chunks of the
        // same length and one of another: the bits of `predict_column` (which normalizes
        // every input anew), non-finite and huge inputs included.
        let width = 7;
        for hidden in [0, 5] {
            let m = random_model(width, hidden, 21);
            let mut inputs = ChunkInputs::default();
            let mut s = 3u64;
            for (chunk, rows) in [(0, 700), (1, 700), (2, 90)] {
                let mut cols: Vec<f32> = (0..width * rows)
                    .map(|_| {
                        s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                        ((s >> 11) as f64 / (1u64 << 53) as f64 * 40.0 - 20.0) as f32
                    })
                    .collect();
                cols[6 * rows + 3] = f32::NAN;
                cols[5 * rows + chunk] = f32::INFINITY;
                cols[4 * rows + 8] = 3e38;
                inputs.start(width, rows);
                for &j in &m.order {
                    let j = j as usize;
                    let (mut want, mut got) = (Vec::new(), Vec::new());
                    m.predict_column(j, &cols, rows, -1.25, &mut want, None);
                    m.predict_column(j, &cols, rows, -1.25, &mut got, Some(&mut inputs));
                    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&got), bits(&want), "chunk {chunk} column {j}");
                }
            }
        }
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
        let lin_only = random_model(5, 0, 4);
        assert_eq!(Model::read(&lin_only.to_bytes(), 5).unwrap(), lin_only);
    }

    #[test]
    fn a_model_reading_a_later_column_is_rejected() {
        let mut m = random_model(4, 2, 2);
        // Column 2 is coded after 3 only: reading column 1 (coded later) is invalid...
        m.columns[2].inputs[0] = 1;
        assert!(Model::read(&m.to_bytes(), 4).is_err());
        // ...and so is a feature over a column coded later.
        let mut m = random_model(4, 2, 2);
        m.features[0].args = vec![3, 0];
        assert!(Model::read(&m.to_bytes(), 4).is_err());
        // An order that is not a permutation.
        let mut m = random_model(4, 2, 2);
        m.order[1] = m.order[0];
        assert!(Model::read(&m.to_bytes(), 4).is_err());
    }

    #[test]
    fn the_network_gives_the_same_bits_with_any_instruction_set() {
        // `network` takes the widest path the CPU has; `network_body` as called here is
        // compiled for the baseline instruction set. Every input count (each tier has a kernel
        // per count), networks with and without hidden units, and units whose sum is -0.0 or
        // +0.0 (zero inputs, a bias of -0.0) or overflows to ±Inf or NaN.
        let mut s = 3u64;
        let mut next = move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        let mut u: Vec<f32> = (0..MAX_INPUTS * BLOCK).map(|_| next() * 8.0).collect();
        for k in 0..MAX_INPUTS {
            u[k * BLOCK + 3] = 0.0; // record 3: every input 0
            u[k * BLOCK + 5] = 8.0; // record 5: every input at the clamp
        }
        for ni in 1..=MAX_INPUTS {
            for hidden in [0, 1, 5, 21] {
                let mut c = ColumnModel {
                    offset: 0.0,
                    scale: 1.0,
                    inputs: (0..ni as u32).collect(),
                    lin: (0..ni).map(|_| next()).collect(),
                    hidden,
                    w1: (0..hidden * ni).map(|_| next()).collect(),
                    b1: (0..hidden).map(|_| next() * 0.1).collect(),
                    w2: (0..hidden).map(|_| next()).collect(),
                    b2: next() * 0.1,
                };
                if hidden >= 5 {
                    c.b1[1] = -0.0;
                    c.b1[2] = 0.0;
                    c.w1[3 * ni..4 * ni].fill(3e38); // record 5 overflows to +Inf
                    c.w1[4 * ni] = -3e38; // and unit 4 to NaN where it meets +Inf
                    c.w1[4 * ni + ni - 1] = 3e38;
                }
                for n in [BLOCK, 200, 7] {
                    let (mut a, mut b) = ([0f32; BLOCK], [0f32; BLOCK]);
                    network_body(&c, &u, n, &mut a);
                    network(&c, &u, n, &mut b);
                    let mut tiers = vec![b];
                    // Every instruction set this CPU has, each on its own.
                    #[cfg(target_arch = "x86_64")]
                    #[allow(unsafe_code)]
                    {
                        if std::arch::is_x86_feature_detected!("avx2") {
                            let mut o = [0f32; BLOCK];
                            // SAFETY: the CPU supports AVX2, checked just above.
                            unsafe { network_avx2(&c, &u, n, &mut o) };
                            tiers.push(o);
                        }
                        if std::arch::is_x86_feature_detected!("avx512f") {
                            let mut o = [0f32; BLOCK];
                            // SAFETY: the CPU supports AVX-512F, checked just above.
                            unsafe { network_avx512(&c, &u, n, &mut o) };
                            tiers.push(o);
                        }
                    }
                    for b in &tiers {
                        for r in 0..n {
                            assert_eq!(
                                a[r].to_bits(),
                                b[r].to_bits(),
                                "{ni} inputs, {hidden} units, record {r} of {n}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn kernel_matches_the_scalar_reference_bit_for_bit() {
        // With hidden units, and the linear term alone (read from the chunk's normalized
        // columns where they are kept, or from the block).
        for hidden in [13, 0] {
            kernel_matches_for(random_model(6, hidden, 3));
        }
    }

    fn kernel_matches_for(m: Model) {
        let width = 6;
        let rows = 1000; // several blocks and a partial one
        let mut s = 9u64;
        let mut cols: Vec<f64> = (0..width * rows)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                ((s >> 11) as f64 / (1u64 << 53) as f64) * 20.0 - 10.0
            })
            .collect();
        cols[5 * rows + 5] = f64::NAN;
        cols[4 * rows + 7] = f64::INFINITY;
        cols[3 * rows + 9] = 1e300;
        let mut kept = ChunkInputs::default();
        for j in 0..width {
            let mut out = Vec::new();
            m.predict_column(j, &cols, rows, -1.25, &mut out, None);
            let mut from_kept = Vec::new();
            m.predict_column(j, &cols, rows, -1.25, &mut from_kept, Some(&mut kept));
            for r in 0..rows {
                let row: Vec<f64> = (0..width).map(|i| cols[i * rows + r]).collect();
                let want = m.predict_one(j, &row, -1.25);
                assert_eq!(out[r].to_bits(), want.to_bits(), "column {j} row {r}");
                assert_eq!(from_kept[r].to_bits(), want.to_bits(), "column {j} row {r}");
            }
            // Any split of the records gives the same bits (threads see different chunks).
            let mut part = Vec::new();
            let sub: Vec<f64> = (0..width)
                .flat_map(|i| cols[i * rows + 100..i * rows + 137].to_vec())
                .collect();
            m.predict_column(j, &sub, 37, -1.25, &mut part, None);
            for r in 0..37 {
                assert_eq!(part[r].to_bits(), out[100 + r].to_bits());
            }
        }
    }
}
