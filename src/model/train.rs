//! Training the conditional MLP on a sample of records.
//!
//! All columns' networks are trained together as one masked network (MADE-style): the first
//! layer maps every column to `active × hidden` units, masked so that each column's group of
//! units sees only its selected earlier columns; the output layer is block-diagonal. Masked
//! weights start at zero and their gradients are zeroed before each Adam step, so they stay
//! zero; the per-column networks are then read out of the two matrices. The optimizer (Adam
//! with learning-rate decay on plateaus and early stopping on a held-out split) is written
//! here over plain vectors.
//!
//! On the CPU the loss and gradients come from a block-sparse kernel (`Net::sparse`) that
//! visits each column's own units and inputs only, records in blocks so its loops vectorize,
//! columns on every core: the dense masked products do about twenty times the work, and
//! dfdx's CPU backend took 25 s for what this does in 6 (the Z′ jets at `--effort 9`, 2
//! cores). On a GPU, dfdx's CUDA backend runs the dense masked network, built from tensors
//! with runtime shapes (`Tensor<(usize, usize), f32, _>`, layer sizes being chosen at run
//! time); a test checks that both give the same loss and gradients.
//!
//! The inputs are the normalized sample plus uniform noise of the column's bound: the decoder
//! predicts from reconstructed values, which differ from the originals by up to the bound, and
//! a network trained on clean inputs can lean on digits that do not survive. Only the decoder
//! side needs bit-reproducibility (`Model::predict_column`); training may run anywhere: on the
//! CPU, or on a GPU through dfdx's CUDA backend ([`TrainDevice::Cuda`], cargo feature `cuda`).
//! The device only changes how fast the weights are found and, through the order of float
//! sums, which weights: whichever they are, they are stored, and every decoder uses them alike.

// dfdx runs the dense network on a GPU; the tests use its CPU backend as the sparse kernel's
// reference. Built without `cuda`, the library does not compile it.
#[cfg(any(feature = "cuda", test))]
use dfdx::prelude::*;

use super::{ColumnModel, MAX_HIDDEN, MAX_INPUTS, Model, select};

/// How to train.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Hidden units per predicted column (0: sized from the data, see [`default_hidden`]).
    pub hidden: usize,
    /// Most earlier columns each column reads.
    pub max_inputs: usize,
    /// Most passes over the training split.
    pub epochs: usize,
    /// Records per minibatch.
    pub batch: usize,
    /// Adam's initial learning rate.
    pub learning_rate: f32,
    /// Epochs without improvement of the validation loss before stopping.
    pub patience: usize,
    /// Seed of every random choice (split, shuffling, initialization, noise).
    pub seed: u64,
    /// Where the network's forward and backward passes run.
    pub device: TrainDevice,
    /// Records the model will code (the whole input; 0: as many as the sample holds). A
    /// column keeps its network only where the bits it saves on that many records beat what
    /// its weights cost in the container.
    pub records: u64,
    /// Keep the table's own column order (no categorical columns first, no search for a
    /// better one): a lossless table's neighbouring columns (an energy before and after a
    /// step) predict each other through the lossless coder's reference, which follows the
    /// coding order.
    pub keep_order: bool,
}

/// Where training runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrainDevice {
    /// dfdx's CPU backend.
    #[default]
    Cpu,
    /// dfdx's CUDA backend on the GPU of this ordinal (needs the `cuda` cargo feature).
    Cuda(usize),
}

impl std::fmt::Display for TrainDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrainDevice::Cpu => write!(f, "cpu"),
            TrainDevice::Cuda(0) => write!(f, "cuda"),
            TrainDevice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl std::str::FromStr for TrainDevice {
    type Err = String;
    /// `cpu`, `cuda` or `cuda:N`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(TrainDevice::Cpu),
            "cuda" | "gpu" => Ok(TrainDevice::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(TrainDevice::Cuda)
                .ok_or_else(|| format!("unknown device {s:?}: expected cpu, cuda or cuda:N")),
        }
    }
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            hidden: 0,
            max_inputs: 8,
            epochs: 12,
            batch: 512,
            learning_rate: 3e-3,
            patience: 3,
            seed: 1,
            device: TrainDevice::Cpu,
            records: 0,
            keep_order: false,
        }
    }
}

/// What training did.
#[derive(Debug, Clone, Default)]
pub struct TrainReport {
    /// Mean training loss per epoch (MSE in normalized units).
    pub train_loss: Vec<f32>,
    /// Validation loss per epoch.
    pub val_loss: Vec<f32>,
    /// Per column: the validation MSE of the model relative to the column's variance (1.0:
    /// explains nothing); `None` for columns without a network.
    pub explained: Vec<Option<f32>>,
    /// Records trained on.
    pub records: usize,
    /// Where training ran.
    pub device: TrainDevice,
    /// Seconds training took (choosing order and inputs, the linear parts, the network).
    pub seconds: f64,
}

impl TrainReport {
    /// The report of no training yet on `records` records of `width` columns.
    fn new(records: usize, width: usize, device: TrainDevice) -> Self {
        TrainReport {
            records,
            explained: vec![None; width],
            device,
            ..TrainReport::default()
        }
    }
}

/// Most records of the training sample a lossless table's two candidate models are tried on
/// ([`fit_table`]). A quarter of the sample, up to 8,192 records, chose the worse order for
/// the nEXO deposits once a relation between columns could code one of them (1.5% larger
/// than the other on the whole file; 2.3% smaller on the trial).
const ORDER_TRIAL: usize = 32_768;

/// Fits a model for the table `spec` to be compressed with `options` ([`fit`] on `sample`,
/// row-major `f64` records, under the columns' bounds `specs`), as `baler compress` and
/// `baler train` do, and the Python package with them. A table whose every column is
/// lossless (f32) gets a second model that keeps the table's own column order (the lossless
/// coder's reference is the column coded before, which the model's order can separate from
/// it), and keeps the one whose container of the sample's first 32,768 records is
/// smaller: the first where they tie.
pub fn fit_table(
    sample: &[f64],
    spec: &crate::ArraySpec,
    options: &crate::CompressOptions,
    specs: &[crate::bound::BoundSpec],
    raw_bytes: u64,
    opts: &TrainOptions,
    progress: impl FnMut(usize, f32, f32),
) -> crate::Result<(Model, TrainReport)> {
    let width = spec.shape.get(1).map_or(1, |&w| w as usize);
    let (model, report) = fit(sample, width, specs, raw_bytes, opts, progress)?;
    let all_lossless = specs
        .iter()
        .all(|s| matches!(s, crate::bound::BoundSpec::Lossless));
    // A model that codes the columns in the table's order already is what keeping it gives.
    let own_order = model
        .order
        .iter()
        .enumerate()
        .all(|(i, &j)| j as usize == i);
    if spec.dtype != crate::DType::F32 || !all_lossless || model.active_columns() == 0 || own_order
    {
        return Ok((model, report));
    }
    let keep = TrainOptions {
        keep_order: true,
        ..opts.clone()
    };
    let (kept, _) = fit(sample, width, specs, raw_bytes, &keep, |_, _, _| {})?;
    let rows = (sample.len() / width.max(1)).clamp(1, ORDER_TRIAL);
    let block: Vec<f32> = sample[..rows * width].iter().map(|&x| x as f32).collect();
    let mut trial = spec.clone();
    trial.shape = vec![rows as u64, width as u64];
    let mut best: Option<(usize, Model)> = None;
    for m in [model, kept] {
        let mut o = options.clone();
        o.model = Some(m.clone());
        o.stats = None;
        let size = crate::compress_slice(&block, &trial, &o)?.len();
        if best.as_ref().is_none_or(|b| size < b.0) {
            best = Some((size, m));
        }
    }
    Ok((best.expect("two models tried").1, report))
}

/// Fits a model to a sample of records (row-major, `width` values each) to be coded under
/// `specs`: normalization from the sample's ranges, the noise of each column's bound, and
/// hidden units from [`default_hidden`] for `raw_bytes` of input unless `opts.hidden` is set.
///
/// Fails only when `opts.device` cannot be used (a build without CUDA, no GPU).
pub fn fit(
    sample: &[f64],
    width: usize,
    specs: &[crate::bound::BoundSpec],
    raw_bytes: u64,
    opts: &TrainOptions,
    progress: impl FnMut(usize, f32, f32),
) -> crate::Result<(Model, TrainReport)> {
    let rows = sample.len() / width.max(1);
    let mut norms = Vec::with_capacity(width);
    let mut bounds = Vec::with_capacity(width);
    // Every column's statistics in one pass over the records.
    let mut acc = crate::normalize::StatsAccumulator::new(width);
    acc.add(&sample[..rows * width]);
    for (j, stats) in acc.finish().iter().enumerate().take(width) {
        let n = crate::normalize::Normalization::from_stats(stats);
        norms.push((n.offset, n.scale));
        // Bit-exact columns are predicted too (f32 value words less the prediction's,
        // `lossless::ints`): trained as if to single precision.
        bounds.push(match specs[j].resolve(stats) {
            crate::bound::Bound::Lossless => crate::bound::Bound::PwRel(LOSSLESS_AS_REL),
            b => b,
        });
    }
    let mut opts = opts.clone();
    let active = bounds.iter().skip(1).filter(|b| !b.is_lossless()).count();
    if opts.hidden == 0 {
        opts.hidden = default_hidden(raw_bytes, active, opts.max_inputs);
    }
    // Without a network only the linear parts are stored, which fit in far smaller inputs;
    // where even they would weigh, no model.
    let fits = if opts.epochs == 0 {
        linear_fits(raw_bytes, active, opts.max_inputs)
    } else {
        opts.hidden > 0
    };
    if !fits {
        // Asked for a device that is not there: an error even with nothing to train.
        Backend::open(opts.device)?;
        return Ok((
            Model::plain(&norms),
            TrainReport::new(rows, width, opts.device),
        ));
    }
    train(sample, width, &norms, &bounds, &opts, progress)
}

/// The point-wise relative bound a lossless column is trained under: an f32's relative
/// precision, so the model learns to predict its value, not its noise.
const LOSSLESS_AS_REL: f64 = 1.0 / (1u64 << 24) as f64;

/// Hidden units per column so that the model stays a small share of the output: about 2% of
/// an estimated compressed size of `raw_bytes / 5`, spread over `active` columns of up to
/// `max_inputs` inputs. 0 when a network of 4 units does not fit (small inputs: no model).
pub fn default_hidden(raw_bytes: u64, active: usize, max_inputs: usize) -> usize {
    if active == 0 {
        return 0;
    }
    let budget = model_budget(raw_bytes);
    let per_unit = (active * (max_inputs + 2) * 4) as f64;
    let h = (budget / per_unit) as usize;
    if h < 4 { 0 } else { h.min(32) }
}

/// Whether linear parts for `active` columns of up to `max_inputs` inputs (their weights,
/// bias and inputs, about 4 bytes each) stay within the 2% of an estimated compressed size of
/// `raw_bytes / 5` that [`default_hidden`] allows the model. Unknown sizes (0) fit.
pub fn linear_fits(raw_bytes: u64, active: usize, max_inputs: usize) -> bool {
    raw_bytes == 0 || (active * (max_inputs + 2) * 4) as f64 <= model_budget(raw_bytes)
}

/// The bytes a model may take for an input of `raw_bytes`: 2% of an estimated compressed size
/// of `raw_bytes / 5`.
fn model_budget(raw_bytes: u64) -> f64 {
    raw_bytes as f64 / 5.0 * 0.02
}

/// The training sample's clean targets (normalized as `model`'s columns) and its inputs as the
/// decoder sees them: each value moved by up to its bound (uniform noise from `rng`), in the
/// data's units: `E`, or `R·|x|` under a point-wise relative bound. Both column-major, as
/// everything after reads them.
///
/// The noise is drawn in record order, one draw per value that moves (finite, with a bound
/// above 0), the same whatever the thread count: the records are split in contiguous runs,
/// one per core, and each run's generator jumps ahead by the draws of the records before it
/// (counted first); `rng` ends where one pass over all the records leaves it. Most of the
/// time is the first touch of the two arrays' pages, which the threads share.
fn noisy_sample(
    sample: &[f64],
    width: usize,
    model: &Model,
    bounds: &[crate::bound::Bound],
    rng: &mut Lcg,
    threads: usize,
) -> (Vec<f32>, Vec<f64>) {
    let width = width.max(1);
    let rows = sample.len() / width;
    let mut targets = vec![0f32; rows * width];
    let mut noisy = vec![0f64; rows * width];
    // How far value `x` of column `j` may move; it draws noise where that is above 0.
    let reach = |j: usize, x: f64| -> f64 {
        let r = match bounds[j] {
            crate::bound::Bound::Abs(e) => e,
            crate::bound::Bound::PwRel(r) => r * x.abs(),
            crate::bound::Bound::Lossless => 0.0,
        };
        if r > 0.0 && x.is_finite() { r } else { 0.0 }
    };
    let draws = |records: &[f64]| -> u64 {
        let mut n = 0u64;
        for record in records.chunks_exact(width) {
            for (j, &x) in record.iter().enumerate() {
                n += u64::from(reach(j, x) > 0.0);
            }
        }
        n
    };
    // Each run's rows of every column.
    let per = super::run_len(rows, threads.min(rows.div_ceil(4096)));
    let starts: Vec<usize> = (0..rows).step_by(per.max(1)).collect();
    let mut runs: Vec<Rows> = starts.iter().map(|_| (Vec::new(), Vec::new())).collect();
    for (t, n) in targets
        .chunks_exact_mut(rows.max(1))
        .zip(noisy.chunks_exact_mut(rows.max(1)))
    {
        let (mut t, mut n) = (t, n);
        for run in &mut runs {
            let len = per.min(t.len());
            let (ta, tb) = t.split_at_mut(len);
            let (na, nb) = n.split_at_mut(len);
            run.0.push(ta);
            run.1.push(na);
            (t, n) = (tb, nb);
        }
    }
    let start = Lcg(rng.0);
    let fill = |first: usize, (mut t, mut n): Rows| -> u64 {
        let mut g = start.jumped(draws(&sample[..first * width]));
        let len = t.first().map_or(0, |c| c.len());
        let records = &sample[first * width..(first + len) * width];
        let mut used = 0u64;
        for (r, record) in records.chunks_exact(width).enumerate() {
            for (j, &x) in record.iter().enumerate() {
                t[j][r] = model.columns[j].normalize(x);
                let reach = reach(j, x);
                let noise = if reach > 0.0 {
                    used += 1;
                    (f64::from(g.unit()) * 2.0 - 1.0) * reach
                } else {
                    0.0
                };
                n[j][r] = x + noise;
            }
        }
        used
    };
    let fill = &fill;
    let used: Vec<u64> = crate::threads::scope(|scope| {
        let mut runs = starts.iter().copied().zip(runs);
        let first = runs.next();
        let handles: Vec<_> = runs
            .map(|(at, run)| scope.spawn(move || fill(at, run)))
            .collect();
        let mut used: Vec<u64> = first.into_iter().map(|(at, run)| fill(at, run)).collect();
        used.extend(super::join_all(handles));
        used
    });
    *rng = start.jumped(used.iter().sum());
    (targets, noisy)
}

/// One run of records of the noisy sample: each column's rows of the targets and of the
/// noisy inputs.
type Rows<'a> = (Vec<&'a mut [f32]>, Vec<&'a mut [f64]>);

/// Records per block of the linear parts' normal equations: each block's centred inputs
/// (12 columns of `f64`) stay in the first-level cache.
const FIT_BLOCK: usize = 512;

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 11
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 29) as f32 / (1u32 << 24) as f32
    }
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 53) as usize
    }
    /// The generator `steps` draws further on (the step's affine map raised to that power, by
    /// squaring: O(log steps)).
    fn jumped(&self, mut steps: u64) -> Lcg {
        let (mut mul, mut add) = (6364136223846793005u64, 1442695040888963407u64);
        let mut state = self.0;
        while steps > 0 {
            if steps & 1 == 1 {
                state = state.wrapping_mul(mul).wrapping_add(add);
            }
            add = add.wrapping_mul(mul).wrapping_add(add);
            mul = mul.wrapping_mul(mul);
            steps >>= 1;
        }
        Lcg(state)
    }
}

/// `Σ a·b` (or `Σ a` without `b`) in eight interleaved partial sums, so it vectorizes, added
/// in a fixed order.
#[inline]
fn lanes_dot(a: &[f32], b: Option<&[f32]>) -> f32 {
    let mut acc = [0f32; 8];
    let ca = a.chunks_exact(8);
    let tail_a = ca.remainder();
    let mut tail = 0f32;
    match b {
        Some(b) => {
            let cb = b[..a.len()].chunks_exact(8);
            for (x, &y) in tail_a.iter().zip(cb.remainder()) {
                tail += x * y;
            }
            for (x, y) in ca.zip(cb) {
                for l in 0..8 {
                    acc[l] += x[l] * y[l];
                }
            }
        }
        None => {
            tail = tail_a.iter().sum();
            for x in ca {
                for l in 0..8 {
                    acc[l] += x[l];
                }
            }
        }
    }
    super::fold_lanes(acc) + tail
}

/// One column's part of a minibatch ([`Net::sparse_column`]): its loss sum and its gradients
/// (w1 by input then unit, b1, w2, b2).
type ColumnPass = (f64, Vec<f32>, Vec<f32>, Vec<f32>, f32);

/// Adam state for one parameter vector, with the indices of its trainable entries (the
/// network's masked matrices are mostly untrainable: the jets' first layer 2k of 26k entries,
/// so a step visits those only).
struct Param {
    w: Vec<f32>,
    on: Vec<u32>,
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Param {
    fn new(w: Vec<f32>, mask: Vec<bool>) -> Self {
        let n = w.len();
        let on = (0..n as u32).filter(|&i| mask[i as usize]).collect();
        Param {
            w,
            on,
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }

    fn step(&mut self, g: &[f32], lr: f32, t: i32) {
        let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
        let c1 = 1.0 - b1.powi(t);
        let c2 = 1.0 - b2.powi(t);
        for &i in &self.on {
            let (i, gi) = (i as usize, g[i as usize]);
            let (m, v) = (&mut self.m[i], &mut self.v[i]);
            *m = b1 * *m + (1.0 - b1) * gi;
            *v = b2 * *v + (1.0 - b2) * gi * gi;
            self.w[i] -= lr * (*m / c1) / ((*v / c2).sqrt() + eps);
        }
    }
}

/// Trains a model on `sample` (row-major, `width` values per record), with per-column
/// normalization `norms` (`(offset, scale)`) and bounds `bounds` (lossless: stored exactly,
/// never predicted). `progress(epoch, train_loss, val_loss)` is called after each epoch.
///
/// Fails only when `opts.device` cannot be used (a build without CUDA, no GPU).
pub fn train(
    sample: &[f64],
    width: usize,
    norms: &[(f64, f64)],
    bounds: &[crate::bound::Bound],
    opts: &TrainOptions,
    progress: impl FnMut(usize, f32, f32),
) -> crate::Result<(Model, TrainReport)> {
    let started = std::time::Instant::now();
    // Open the device first: a missing GPU is an error before any work, not after it.
    let device = Backend::open(opts.device)?;
    let rows = sample.len() / width.max(1);
    let mut report = TrainReport::new(rows, width, opts.device);
    let mut model = Model::plain(norms);
    let max_inputs = opts.max_inputs.clamp(1, MAX_INPUTS);
    let hidden = opts.hidden.min(MAX_HIDDEN);
    if rows < 64 || width < 2 || (hidden == 0 && opts.epochs > 0) {
        return Ok((model, report));
    }
    let mut rng = Lcg(opts.seed ^ 0xba1e_5eed);

    let (targets, noisy) = noisy_sample(sample, width, &model, bounds, &mut rng, super::cores());
    let columns: Vec<usize> = (0..width).collect();
    let stats: Vec<(f64, f64)> = super::par_map(&columns, super::cores(), |&j| {
        let c = &targets[j * rows..(j + 1) * rows];
        let m = c.iter().map(|&x| f64::from(x)).sum::<f64>() / rows as f64;
        let v = c.iter().map(|&x| (f64::from(x) - m).powi(2)).sum::<f64>() / rows as f64;
        (m, v)
    });

    // Order, features and inputs, priced with each column's typical absolute bound (a
    // point-wise relative bound at the column's mean magnitude: the magnitudes summed for
    // every column in one pass over the records, each column's sum in record order).
    let mut magnitude = vec![(0f64, 0usize); width];
    if bounds
        .iter()
        .any(|b| matches!(b, crate::bound::Bound::PwRel(_)))
    {
        for record in sample.chunks_exact(width.max(1)).take(rows) {
            for (m, &x) in magnitude.iter_mut().zip(record) {
                if x.is_finite() {
                    *m = (m.0 + x.abs(), m.1 + 1);
                }
            }
        }
    }
    let abs_bounds: Vec<f64> = (0..width)
        .map(|j| match bounds[j] {
            crate::bound::Bound::Abs(e) => e,
            crate::bound::Bound::PwRel(r) => {
                let (sum, n) = magnitude[j];
                let mean = if n > 0 { sum / n as f64 } else { 0.0 };
                if mean > 0.0 { r * mean } else { r }
            }
            crate::bound::Bound::Lossless => 0.0,
        })
        .collect();
    let plan = select::plan(
        sample,
        &noisy,
        &targets,
        rows,
        width,
        norms,
        &abs_bounds,
        max_inputs,
        opts.keep_order,
    );
    model.order = plan.order.iter().map(|&j| j as u32).collect();
    model.features = plan.features;
    let inputs = plan.inputs;
    let active: Vec<usize> = (0..width).filter(|&j| !inputs[j].is_empty()).collect();
    if active.is_empty() {
        return Ok((model, report));
    }

    // The distinct inputs, evaluated on the whole sample (column-major, normalized).
    let mut ids: Vec<u32> = inputs.iter().flatten().copied().collect();
    ids.sort_unstable();
    ids.dedup();
    let nin = ids.len();
    let slot = |id: u32| ids.binary_search(&id).expect("input id listed");
    let mut xin = vec![0f32; rows * nin];
    // One input per task, over all records: a contiguous run of `xin` each, computed as the
    // decoder computes it, on every core: [`Feature::inputs_into`](super::Feature::inputs_into)
    // over its arguments' columns.
    let threads = super::cores();
    super::par_runs_mut(&mut xin, rows.max(1), threads, |first, run| {
        let mut v = vec![0f64; rows];
        let col = |j: usize| &noisy[j * rows..(j + 1) * rows];
        for (k, out) in run.chunks_mut(rows.max(1)).enumerate() {
            let id = ids[first + k] as usize;
            let Some(f) = id.checked_sub(width).map(|i| &model.features[i]) else {
                let c = &model.columns[id];
                for (x, &y) in out.iter_mut().zip(col(id)) {
                    *x = c.normalize(y);
                }
                continue;
            };
            let arg = |q: usize| f.args.get(q).map_or(&[][..], |&a| col(a as usize));
            f.inputs_into([arg(0), arg(1), arg(2)], &mut v, out);
        }
    });

    // Split: a shuffled tenth held out.
    let mut perm: Vec<usize> = (0..rows).collect();
    for i in (1..rows).rev() {
        perm.swap(i, rng.below(i + 1));
    }
    let nval = (rows / 10).clamp(32, 20_000);
    let (val_idx, train_idx) = perm.split_at(nval);

    // The linear part, per column: least squares with intercept on the training split (in
    // f64, then rounded to the f32 weights the kernel uses), fixed while the network learns
    // what is left.
    // Columns fitted in parallel, each on its own; the records in increasing order (the
    // gathers then walk memory forward).
    let mut fit_rows: Vec<usize> = train_idx
        .iter()
        .copied()
        .step_by((train_idx.len() / 50_000).max(1))
        .collect();
    fit_rows.sort_unstable();
    // The normal equations of the centred inputs, summed record by record straight from
    // `xin` (no copies of the columns): two passes, the means first.
    let fit = |j: usize| -> (Vec<f32>, f32) {
        let cols: Vec<&[f32]> = inputs[j]
            .iter()
            .map(|&id| &xin[slot(id) * rows..(slot(id) + 1) * rows])
            .collect();
        let tcol = &targets[j * rows..(j + 1) * rows];
        let k = cols.len();
        let n = fit_rows.len() as f64;
        let mut means = vec![0f64; k];
        let mut tm = 0.0;
        for &r in &fit_rows {
            for (m, c) in means.iter_mut().zip(&cols) {
                *m += f64::from(c[r]);
            }
            tm += f64::from(tcol[r]);
        }
        means.iter_mut().for_each(|m| *m /= n);
        tm /= n;
        // Blocks of records gathered and centred into columns, so each entry of the normal
        // equations is a vectorized dot product over the block (four at a time, reading the
        // row's input once).
        let mut a = vec![0f64; k * k];
        let mut b = vec![0f64; k];
        let mut xb = vec![0f64; k * FIT_BLOCK];
        let mut yb = vec![0f64; FIT_BLOCK];
        for rows_b in fit_rows.chunks(FIT_BLOCK) {
            let nb = rows_b.len();
            for ((x, c), m) in xb.chunks_exact_mut(FIT_BLOCK).zip(&cols).zip(&means) {
                for (x, &r) in x.iter_mut().zip(rows_b) {
                    *x = f64::from(c[r]) - m;
                }
            }
            for (y, &r) in yb.iter_mut().zip(rows_b) {
                *y = f64::from(tcol[r]) - tm;
            }
            let col = |i: usize| &xb[i * FIT_BLOCK..i * FIT_BLOCK + nb];
            let y = &yb[..nb];
            for i in 0..k {
                // Row i of the lower triangle (columns 0..=i) and b[i]: the products of
                // column i with columns 0..=i and y, in groups of four.
                let mut others: Vec<&[f64]> = (0..=i).map(col).collect();
                others.push(y);
                for (g, group) in others.chunks(4).enumerate() {
                    let pad = |q: usize| group[q.min(group.len() - 1)];
                    let d = select::dots(col(i), [pad(0), pad(1), pad(2), pad(3)]);
                    for (q, &v) in d.iter().enumerate().take(group.len()) {
                        let jj = g * 4 + q;
                        if jj <= i {
                            a[i * k + jj] += v;
                        } else {
                            b[i] += v;
                        }
                    }
                }
            }
        }
        for i in 0..k {
            for j in 0..i {
                a[j * k + i] = a[i * k + j];
            }
        }
        let w = select::solve_normal(a, b, 1e-9).unwrap_or_else(|| vec![0.0; k]);
        let intercept = tm - w.iter().zip(&means).map(|(a, b)| a * b).sum::<f64>();
        (w.iter().map(|&v| v as f32).collect(), intercept as f32)
    };
    let fitted = super::par_map(&active, threads, |&j| fit(j));
    let mut lin: Vec<Vec<f32>> = vec![Vec::new(); width];
    let mut b0 = vec![0f32; width];
    for (&j, (w, b)) in active.iter().zip(fitted) {
        lin[j] = w;
        b0[j] = b;
    }
    // What the linear part leaves, per record and column (the network's target; none without
    // epochs, where the network is skipped).
    let network = opts.epochs > 0;
    let mut resid = vec![0f32; if network { rows * width } else { 0 }];
    for &j in active.iter().filter(|_| network) {
        let slots: Vec<usize> = inputs[j].iter().map(|&id| slot(id) * rows).collect();
        for r in 0..rows {
            let mut y = b0[j];
            for (&w, &at) in lin[j].iter().zip(&slots) {
                y += w * xin[at + r];
            }
            resid[j * rows + r] = targets[j * rows + r] - y;
        }
    }

    let ch = active.len() * hidden;
    // No epochs: the linear parts alone (no network built, its weights unread).
    let [w1, b1, w2, b2] = if !network {
        Default::default()
    } else {
        // Parameters: W1 (nin × ch), b1 (ch), W2 (ch × width), b2 (width).
        let mut w1 = vec![0f32; nin * ch];
        let mut m1 = vec![false; nin * ch];
        let mut w2 = vec![0f32; ch * width];
        let mut m2 = vec![false; ch * width];
        for (g, &j) in active.iter().enumerate() {
            let a1 = (3.0 / inputs[j].len() as f32).sqrt();
            let a2 = (3.0 / hidden as f32).sqrt() * 0.1;
            for h in 0..hidden {
                let unit = g * hidden + h;
                for &id in &inputs[j] {
                    let at = slot(id) * ch + unit;
                    m1[at] = true;
                    w1[at] = (rng.unit() * 2.0 - 1.0) * a1;
                }
                let at = unit * width + j;
                m2[at] = true;
                w2[at] = (rng.unit() * 2.0 - 1.0) * a2;
            }
        }
        let slots: Vec<Vec<usize>> = active
            .iter()
            .map(|&j| inputs[j].iter().map(|&id| slot(id)).collect())
            .collect();
        let net = Net::new((&xin, &resid), (rows, nin, ch, width), &active, &slots);
        // The network holds its own copy, record by record.
        drop(resid);
        let params = [
            Param::new(w1, m1),
            Param::new(vec![0.0; ch], vec![true; ch]),
            Param::new(w2, m2),
            Param::new(vec![0.0; width], net.output_mask()),
        ];
        let run = Run {
            val_idx,
            train_idx,
            opts,
            rng: &mut rng,
            report: &mut report,
        };
        match device {
            Backend::Cpu => net.optimize(run, Columns::new(&net, &params), progress),
            #[cfg(feature = "cuda")]
            Backend::Cuda(dev) => {
                let loss = |idx: &[usize], p: &[Param; 4], grads: Option<&mut [Vec<f32>; 4]>| {
                    let (l, g) = net.forward_loss(&dev, net.batch(idx), p, grads.is_some());
                    if let (Some(into), Some(g)) = (grads, g) {
                        *into = g;
                    }
                    l
                };
                net.optimize(run, Dense::new(params, loss), progress)
            }
        }
    };

    // Per column: the network read out, and kept only where it beats the linear part alone
    // on the held-out records; columns that neither explains get no predictor.
    let read_out = |units: usize| {
        let weights = [&w1[..], &b1[..], &w2[..], &b2[..]];
        extract(
            &model, &active, &inputs, &ids, &lin, &b0, units, ch, width, weights,
        )
    };
    // Held-out squared errors (normalized) of a model's columns.
    // The held-out records' inputs, column-major, as the model's kernel reads a chunk.
    let nval = val_idx.len();
    let mut val_cols = vec![0f64; width * nval];
    for j in 0..width {
        let (from, to) = (&noisy[j * rows..], &mut val_cols[j * nval..(j + 1) * nval]);
        for (v, &r) in to.iter_mut().zip(val_idx) {
            *v = from[r];
        }
    }
    let held_out = |m: &Model| -> Vec<f64> {
        let errs = super::par_map(&active, threads, |&j| {
            let c = &m.columns[j];
            let mut preds = Vec::new();
            m.predict_column(j, &val_cols, nval, 0.0, &mut preds, None);
            let mut err = 0.0;
            for (&r, &p) in val_idx.iter().zip(&preds) {
                let x = c.offset + c.scale * f64::from(targets[j * rows + r]);
                let e = (p - x) / c.scale;
                err += e * e;
            }
            err
        });
        let mut err = vec![0f64; width];
        for (&j, e) in active.iter().zip(errs) {
            err[j] = e;
        }
        err
    };
    let lin_only = read_out(0);
    let err_lin = held_out(&lin_only);
    let (with_net, err_net) = if network {
        let m = read_out(hidden);
        let err = held_out(&m);
        (m, err)
    } else {
        (lin_only.clone(), err_lin.clone())
    };
    let mut columns = with_net.columns;
    let records = if opts.records > 0 {
        opts.records as f64
    } else {
        rows as f64
    };
    for &j in &active {
        let var = stats[j].1 * val_idx.len() as f64;
        let (net, lin) = (err_net[j] / var, err_lin[j] / var);
        // What the network saves over the file (a Gaussian residual's entropy in steps of the
        // column's bound, which falls by half a bit per halving of its variance where the
        // residual spans many steps, and by nothing where it is within one), against its
        // weights' 32 bits each.
        let scale = columns[j].scale;
        let mse = |err: f64| err / val_idx.len() as f64 * scale * scale;
        let step = 2.0 * abs_bounds[j];
        let saved = (select::gaussian_bits(mse(err_lin[j]), step)
            - select::gaussian_bits(mse(err_net[j]), step))
            * records;
        let weights = columns[j].parameters() - lin_only.columns[j].parameters();
        let keep_net = net <= 0.98 * lin && saved >= 32.0 * weights as f64;
        if !keep_net {
            columns[j] = lin_only.columns[j].clone();
        }
        let rel = if keep_net { net } else { lin } as f32;
        report.explained[j] = Some(rel);
        if rel > 0.9 {
            let c = &columns[j];
            columns[j] = ColumnModel::none(c.offset, c.scale);
        }
    }
    model.columns = columns;
    model.features = used_features(&mut model.columns, std::mem::take(&mut model.features));
    report.seconds = started.elapsed().as_secs_f64();
    Ok((model, report))
}

/// The features some column still reads, its inputs renumbered to match.
fn used_features(
    columns: &mut [ColumnModel],
    features: Vec<super::Feature>,
) -> Vec<super::Feature> {
    let width = columns.len();
    let mut used = vec![false; features.len()];
    for c in columns.iter() {
        for &i in &c.inputs {
            if i as usize >= width {
                used[i as usize - width] = true;
            }
        }
    }
    let mut renumber = vec![u32::MAX; used.len()];
    let mut kept = Vec::new();
    for (k, f) in features.into_iter().enumerate() {
        if used[k] {
            renumber[k] = (width + kept.len()) as u32;
            kept.push(f);
        }
    }
    for c in columns.iter_mut() {
        for i in &mut c.inputs {
            if *i as usize >= width {
                *i = renumber[*i as usize - width];
            }
        }
    }
    kept
}

/// An opened training device.
enum Backend {
    /// The block-sparse kernel ([`Net::sparse`]) on every core.
    Cpu,
    #[cfg(feature = "cuda")]
    Cuda(Cuda),
}

impl Backend {
    fn open(device: TrainDevice) -> crate::Result<Backend> {
        match device {
            TrainDevice::Cpu => Ok(Backend::Cpu),
            #[cfg(feature = "cuda")]
            TrainDevice::Cuda(ordinal) => {
                let fail = |why: String| {
                    crate::Error::InvalidOption(format!(
                        "--device {device}: {why}; train on the CPU with --device cpu"
                    ))
                };
                // dfdx unwraps these two calls: ask first, so a missing driver or GPU is an
                // error rather than a panic.
                use cudarc::driver::result;
                result::init().map_err(|e| fail(format!("no usable CUDA driver ({e:?})")))?;
                let count = result::device::get_count()
                    .map_err(|e| fail(format!("cannot count CUDA devices ({e:?})")))?;
                if ordinal >= count.max(0) as usize {
                    return Err(fail(format!(
                        "no CUDA device {ordinal}: this machine has {count}"
                    )));
                }
                Cuda::try_build(ordinal, 0)
                    .map(Backend::Cuda)
                    .map_err(|e| fail(format!("cannot open CUDA device {ordinal} ({e:?})")))
            }
            #[cfg(not(feature = "cuda"))]
            TrainDevice::Cuda(_) => Err(crate::Error::InvalidOption(format!(
                "--device {device}: this baler was built without CUDA support; build it with \
                 `cargo build --release --features cuda` (needs a CUDA toolkit), or train on \
                 the CPU with --device cpu"
            ))),
        }
    }
}

/// The masked network's data: inputs and targets of the whole sample, record by record
/// (a minibatch's records are drawn at random, and each record's values of every input share
/// a few cache lines, which the columns' passes over the minibatch then find in cache: the
/// column-major sample made every input of every column a miss: `baler train` on 1,000,000
/// records 23.0 -> 17.5 s, the same model, for a copy of the inputs: peak 731 -> 954 MB), and its
/// shape.
struct Net<'a> {
    /// `nin` inputs per record.
    xrow: Vec<f32>,
    /// `width` targets per record (the linear parts' residuals).
    trow: Vec<f32>,
    /// Inputs and hidden units of the dense network.
    nin: usize,
    ch: usize,
    width: usize,
    active: &'a [usize],
    /// Per predicted column (in `active`'s order), its inputs' indices among the `nin`.
    slots: &'a [Vec<usize>],
    /// 1.0 for predicted columns, 0.0 for the others (their outputs do not count).
    col_mask: Vec<f32>,
}

impl<'a> Net<'a> {
    /// The network over the inputs `xin` (`nin` columns of `rows` records) and the linear
    /// parts' residuals `resid` (`width` columns), with `ch` hidden units for the columns
    /// `active`, each reading the inputs `slots` lists for it.
    fn new(
        (xin, resid): (&[f32], &[f32]),
        (rows, nin, ch, width): (usize, usize, usize, usize),
        active: &'a [usize],
        slots: &'a [Vec<usize>],
    ) -> Self {
        let mut col_mask = vec![0f32; width];
        for &j in active {
            col_mask[j] = 1.0;
        }
        // Runs of records on every core, each in blocks of 64 records that every column
        // fills in turn (a column's 64 values are contiguous).
        let row_major = |cols: &[f32], n: usize| {
            let mut out = vec![0f32; rows * n];
            if n > 0 && cols.len() >= rows * n {
                super::par_runs_mut(&mut out, 64 * n, super::cores(), |first, run| {
                    for (b, block) in run.chunks_mut(64 * n).enumerate() {
                        let r0 = (first + b) * 64;
                        for s in 0..n {
                            let col = &cols[s * rows + r0..];
                            for (i, rec) in block.chunks_exact_mut(n).enumerate() {
                                rec[s] = col[i];
                            }
                        }
                    }
                });
            }
            out
        };
        Net {
            xrow: row_major(xin, nin),
            trow: row_major(resid, width),
            nin,
            ch,
            width,
            active,
            slots,
            col_mask,
        }
    }

    /// Which output biases train: those of the predicted columns.
    fn output_mask(&self) -> Vec<bool> {
        self.col_mask.iter().map(|&m| m > 0.0).collect()
    }
}

/// One optimization: the parameters with their Adam state, the split, and what to report.
struct Run<'a> {
    val_idx: &'a [usize],
    train_idx: &'a [usize],
    opts: &'a TrainOptions,
    rng: &'a mut Lcg,
    report: &'a mut TrainReport,
}

impl Net<'_> {
    /// Minibatch `idx` as network inputs and targets (row-major).
    #[cfg(any(feature = "cuda", test))]
    fn batch(&self, idx: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let (nin, width) = (self.nin, self.width);
        let b = idx.len();
        let mut x = vec![0f32; b * nin];
        let mut t = vec![0f32; b * width];
        for (k, &r) in idx.iter().enumerate() {
            x[k * nin..(k + 1) * nin].copy_from_slice(&self.xrow[r * nin..(r + 1) * nin]);
            for &j in self.active {
                t[k * width + j] = self.trow[r * width + j];
            }
        }
        (x, t)
    }

    /// The mean squared error of a batch, and with `train` the gradients of the four
    /// parameters, computed on `dev`.
    #[cfg(any(feature = "cuda", test))]
    fn forward_loss<D: Device<f32> + TensorToArray<(), f32, Array = f32>>(
        &self,
        dev: &D,
        (x, t): (Vec<f32>, Vec<f32>),
        p: &[Param; 4],
        train: bool,
    ) -> (f32, Option<[Vec<f32>; 4]>) {
        let (nin, ch, width) = (self.nin, self.ch, self.width);
        let b = x.len() / nin;
        let w1 = dev.tensor_from_vec(p[0].w.clone(), (nin, ch));
        let b1 = dev.tensor_from_vec(p[1].w.clone(), (ch,));
        let w2 = dev.tensor_from_vec(p[2].w.clone(), (ch, width));
        let b2 = dev.tensor_from_vec(p[3].w.clone(), (width,));
        let tt = dev.tensor_from_vec(t, (b, width));
        let mask = dev
            .tensor_from_vec(self.col_mask.clone(), (width,))
            .broadcast_like::<_, Axis<0>>(&(b, width));
        let xt = dev.tensor_from_vec(x, (b, nin));
        if train {
            let x = xt.traced(Gradients::leaky());
            let h =
                (x.matmul(w1.clone()) + b1.clone().broadcast_like::<_, Axis<0>>(&(b, ch))).relu();
            let y = h.matmul(w2.clone()) + b2.clone().broadcast_like::<_, Axis<0>>(&(b, width));
            let d = (y - tt) * mask;
            let loss = d.square().mean::<(), _>();
            let l = loss.array();
            let g = loss.backward();
            let grads = [
                g.get(&w1).as_vec(),
                g.get(&b1).as_vec(),
                g.get(&w2).as_vec(),
                g.get(&b2).as_vec(),
            ];
            (l, Some(grads))
        } else {
            let h = (xt.matmul(w1) + b1.broadcast_like::<_, Axis<0>>(&(b, ch))).relu();
            let y = h.matmul(w2) + b2.broadcast_like::<_, Axis<0>>(&(b, width));
            let d = (y - tt) * mask;
            (d.square().mean::<(), _>().array(), None)
        }
    }

    /// The loss of minibatch `idx` and (with `train`) its gradients, as `forward_loss` (dfdx's
    /// dense network) computes them but over each column's own units and inputs only: the masked matrices
    /// are block-sparse (a column's units read its few inputs and feed its one output), so
    /// this does about a twentieth of the dense products' work. Columns run in parallel
    /// ([`super::par_map`]), each over the records in order, and touch disjoint parameters, so
    /// the result does not depend on the thread count.
    /// With `grads` (the parameters' sizes), the gradients go there: every trainable entry is
    /// written (and the others are never read), so one buffer serves every minibatch. The
    /// tests' reference for [`Columns`], which trains column by column.
    #[cfg(test)]
    fn sparse(&self, idx: &[usize], p: &[Param; 4], grads: Option<&mut [Vec<f32>; 4]>) -> f32 {
        let train = grads.is_some();
        let scale = 1.0 / (idx.len() * self.width) as f32;
        let groups: Vec<usize> = (0..self.active.len()).collect();
        let weights = p.each_ref().map(|p| &p.w[..]);
        let per_column = super::par_map(&groups, super::cores(), |&g| {
            let (w1, b1, w2, b2) = self.column_weights(g, weights);
            self.column_pass(g, idx, (&w1, &b1, &w2, b2), train)
        });
        let mut total = 0f64;
        let mut grads = grads;
        for (g, (sum, g1, gb1, g2, gb2)) in per_column.into_iter().enumerate() {
            total += sum;
            if let Some(grads) = grads.as_deref_mut() {
                self.put_column(g, (&g1, &gb1, &g2, gb2), grads);
            }
        }
        (total * f64::from(scale)) as f32
    }

    /// [`sparse_column`](Self::sparse_column) in AVX2's wider vectors: the same operations in
    /// the same order (the sums' lanes are the code's own, no fused multiply-add), so the
    /// same weights.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn sparse_column_avx2(
        &self,
        g: usize,
        idx: &[usize],
        weights: (&[f32], &[f32], &[f32], f32),
        train: bool,
    ) -> ColumnPass {
        self.sparse_column(g, idx, weights, train)
    }

    /// [`sparse_column`](Self::sparse_column) in the widest vectors this CPU has.
    #[allow(unsafe_code)]
    fn column_pass(
        &self,
        g: usize,
        idx: &[usize],
        weights: (&[f32], &[f32], &[f32], f32),
        train: bool,
    ) -> ColumnPass {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { self.sparse_column_avx2(g, idx, weights, train) };
        }
        self.sparse_column(g, idx, weights, train)
    }

    /// The `g`-th predicted column's own weights in the masked matrices `p`: w1 by input then
    /// unit, b1, w2, b2.
    fn column_weights(&self, g: usize, p: [&[f32]; 4]) -> (Vec<f32>, Vec<f32>, Vec<f32>, f32) {
        let (ch, width) = (self.ch, self.width);
        let hidden = ch / self.active.len().max(1);
        let (j, base) = (self.active[g], g * hidden);
        let w1 = self.slots[g]
            .iter()
            .flat_map(|&s| p[0][s * ch + base..s * ch + base + hidden].iter().copied())
            .collect();
        let b1 = p[1][base..base + hidden].to_vec();
        let w2 = (0..hidden).map(|h| p[2][(base + h) * width + j]).collect();
        (w1, b1, w2, p[3][j])
    }

    /// Puts the `g`-th predicted column's own weights or gradients (as
    /// [`column_weights`](Self::column_weights) lists them) in their places in `p`.
    fn put_column(
        &self,
        g: usize,
        (w1, b1, w2, b2): (&[f32], &[f32], &[f32], f32),
        p: &mut [Vec<f32>; 4],
    ) {
        let (ch, width) = (self.ch, self.width);
        let hidden = ch / self.active.len().max(1);
        let (j, base) = (self.active[g], g * hidden);
        for (k, &s) in self.slots[g].iter().enumerate() {
            p[0][s * ch + base..s * ch + base + hidden]
                .copy_from_slice(&w1[k * hidden..(k + 1) * hidden]);
        }
        p[1][base..base + hidden].copy_from_slice(b1);
        for (h, &v) in w2.iter().enumerate() {
            p[2][(base + h) * width + j] = v;
        }
        p[3][j] = b2;
    }

    /// [`sparse`](Self::sparse)'s work for the `g`-th predicted column: its loss sum and its
    /// gradients (w1 by input then unit, b1, w2, b2).
    #[inline(always)]
    fn sparse_column(
        &self,
        g: usize,
        idx: &[usize],
        (w1, b1, w2, b2): (&[f32], &[f32], &[f32], f32),
        train: bool,
    ) -> ColumnPass {
        let (nin, ch, width) = (self.nin, self.ch, self.width);
        let hidden = ch / self.active.len().max(1);
        let scale = 1.0 / (idx.len() * width) as f32;
        let j = self.active[g];
        let sl = &self.slots[g];
        let (mut g1, mut gb1, mut g2, mut gb2) = (
            vec![0f32; w1.len()],
            vec![0f32; hidden],
            vec![0f32; hidden],
            0f32,
        );
        // Records in blocks, each quantity a row over the block's records, so the inner
        // loops run over contiguous records (and vectorize).
        const B: usize = 128;
        let k_in = sl.len();
        let mut u = vec![0f32; k_in * B];
        let mut a = vec![0f32; hidden * B];
        let mut dy = [0f32; B];
        let mut sum = 0f64;
        for block in idx.chunks(B) {
            let n = block.len();
            for (i, &r) in block.iter().enumerate() {
                let rec = &self.xrow[r * nin..(r + 1) * nin];
                for (k, &s) in sl.iter().enumerate() {
                    u[k * B + i] = rec[s];
                }
            }
            for h in 0..hidden {
                let ah = &mut a[h * B..h * B + n];
                ah.fill(b1[h]);
                for k in 0..k_in {
                    let w = w1[k * hidden + h];
                    for (a, &x) in ah.iter_mut().zip(&u[k * B..k * B + n]) {
                        *a += w * x;
                    }
                }
            }
            let y = &mut dy[..n];
            y.fill(b2);
            for h in 0..hidden {
                let w = w2[h];
                for (y, &a) in y.iter_mut().zip(&a[h * B..h * B + n]) {
                    *y += w * a.max(0.0);
                }
            }
            for (y, &r) in y.iter_mut().zip(block) {
                let d = *y - self.trow[r * width + j];
                sum += f64::from(d * d);
                *y = 2.0 * d * scale;
            }
            if !train {
                continue;
            }
            gb2 += lanes_dot(y, None);
            for h in 0..hidden {
                let ah = &mut a[h * B..h * B + n];
                for a in ah.iter_mut() {
                    *a = a.max(0.0);
                }
                g2[h] += lanes_dot(ah, Some(y));
                // The unit's gradient replaces its activation.
                let w = w2[h];
                for (a, &d) in ah.iter_mut().zip(y.iter()) {
                    *a = if *a > 0.0 { d * w } else { 0.0 };
                }
                gb1[h] += lanes_dot(ah, None);
            }
            for k in 0..k_in {
                let uk = &u[k * B..k * B + n];
                for h in 0..hidden {
                    g1[k * hidden + h] += lanes_dot(&a[h * B..h * B + n], Some(uk));
                }
            }
        }
        (sum, g1, gb1, g2, gb2)
    }

    /// Adam over shuffled minibatches with learning-rate decay on plateaus and early stopping
    /// on the held-out split; returns the best weights seen. `trainee` holds the weights and
    /// computes the losses and gradients: the block-sparse kernel on the CPU, column by column
    /// ([`Columns`]), dfdx's dense masked network on a GPU (`Dense` over
    /// `Self::forward_loss`).
    fn optimize(
        &self,
        run: Run<'_>,
        mut trainee: impl Trainee,
        mut progress: impl FnMut(usize, f32, f32),
    ) -> [Vec<f32>; 4] {
        let Run {
            val_idx,
            train_idx,
            opts,
            rng,
            report,
        } = run;
        let mut train_idx = train_idx.to_vec();
        let share = self.active.len() as f32 / self.width as f32;
        // Epoch "0" is the linear part alone (the network's output starts near zero); the
        // held-out loss per predicted column.
        let mut best = (trainee.loss(val_idx) / share, trainee.weights());
        let mut lr = opts.learning_rate;
        let mut t = 0i32;
        let mut stale = 0;
        let batch = opts.batch.max(16);
        for epoch in 0..opts.epochs {
            for i in (1..train_idx.len()).rev() {
                train_idx.swap(i, rng.below(i + 1));
            }
            let batches: Vec<&[usize]> = train_idx.chunks(batch).collect();
            let losses = trainee.epoch(&batches, lr, t);
            t += batches.len() as i32;
            let sum: f64 = losses.iter().map(|&l| f64::from(l)).sum();
            let train_loss = (sum / losses.len().max(1) as f64) as f32 / share;
            let vl = trainee.loss(val_idx) / share;
            report.train_loss.push(train_loss);
            report.val_loss.push(vl);
            progress(epoch, train_loss, vl);
            if vl < best.0 * 0.999 {
                best = (vl, trainee.weights());
                stale = 0;
            } else {
                stale += 1;
                lr *= 0.5;
                if stale >= opts.patience {
                    break;
                }
            }
        }
        best.1
    }
}

/// What an optimization trains: the network's weights, as a kernel holds them.
trait Trainee {
    /// One epoch over `batches`, in order (Adam at rate `lr`, its steps numbered from
    /// `t + 1`): each minibatch's loss.
    fn epoch(&mut self, batches: &[&[usize]], lr: f32, t: i32) -> Vec<f32>;
    /// The loss of `records`, without training.
    fn loss(&self, records: &[usize]) -> f32;
    /// The weights as the masked matrices (W1, b1, W2, b2).
    fn weights(&self) -> [Vec<f32>; 4];
}

/// The CPU kernel's weights: each predicted column its own, with their Adam state. The
/// columns share no weight and their losses add up, so each column's minibatches need none
/// of the others': the threads take their columns through a whole epoch and meet once per
/// epoch for the schedule (they met at every minibatch: 20,000 starts of a thread for 12
/// epochs on 1,000,000 records), and the weights are those the minibatch-wide kernel
/// ([`Net::sparse`], the tests' reference) finds, bit for bit.
struct Columns<'n, 'a> {
    net: &'n Net<'a>,
    /// Per predicted column, its weights and their Adam state: W1 by input then unit, b1,
    /// W2, b2 ([`Net::column_weights`]).
    cols: Vec<[Param; 4]>,
    /// The masked matrices' entries that do not train.
    fixed: [Vec<f32>; 4],
}

impl<'n, 'a> Columns<'n, 'a> {
    fn new(net: &'n Net<'a>, params: &[Param; 4]) -> Self {
        let fixed = params.each_ref().map(|p| p.w.clone());
        let cols = (0..net.active.len())
            .map(|g| {
                let (w1, b1, w2, b2) = net.column_weights(g, fixed.each_ref().map(|w| &w[..]));
                [w1, b1, w2, vec![b2]].map(|w| {
                    let n = w.len();
                    Param::new(w, vec![true; n])
                })
            })
            .collect();
        Columns { net, cols, fixed }
    }
}

/// A column's weights as [`Net::column_pass`] reads them.
fn column_weights(col: &[Param; 4]) -> (&[f32], &[f32], &[f32], f32) {
    (&col[0].w, &col[1].w, &col[2].w, col[3].w[0])
}

impl Trainee for Columns<'_, '_> {
    fn epoch(&mut self, batches: &[&[usize]], lr: f32, t: i32) -> Vec<f32> {
        if batches.is_empty() {
            return Vec::new();
        }
        let net = self.net;
        // Per run of columns, each minibatch's sums of squares, column by column.
        let runs = super::par_runs_mut(&mut self.cols, 1, super::cores(), |first, run| {
            let m = run.len();
            let mut sums = vec![0f64; batches.len() * m];
            for (b, idx) in batches.iter().enumerate() {
                for (c, col) in run.iter_mut().enumerate() {
                    let pass = net.column_pass(first + c, idx, column_weights(col), true);
                    let (sum, g1, gb1, g2, gb2) = pass;
                    for (p, g) in col.iter_mut().zip([&g1[..], &gb1, &g2, &[gb2]]) {
                        p.step(g, lr, t + b as i32 + 1);
                    }
                    sums[b * m + c] = sum;
                }
            }
            sums
        });
        // Each minibatch's loss as `Net::sparse` adds it up: the columns in order.
        let width = net.width;
        (0..batches.len())
            .map(|b| {
                let mut total = 0f64;
                for sums in &runs {
                    let m = sums.len() / batches.len();
                    for &sum in &sums[b * m..(b + 1) * m] {
                        total += sum;
                    }
                }
                let scale = 1.0 / (batches[b].len() * width) as f32;
                (total * f64::from(scale)) as f32
            })
            .collect()
    }

    fn loss(&self, records: &[usize]) -> f32 {
        let groups: Vec<usize> = (0..self.cols.len()).collect();
        let sums = super::par_map(&groups, super::cores(), |&g| {
            let col = &self.cols[g];
            self.net
                .column_pass(g, records, column_weights(col), false)
                .0
        });
        let scale = 1.0 / (records.len() * self.net.width) as f32;
        let mut total = 0f64;
        for &sum in &sums {
            total += sum;
        }
        (total * f64::from(scale)) as f32
    }

    fn weights(&self) -> [Vec<f32>; 4] {
        let mut w = self.fixed.clone();
        for (g, col) in self.cols.iter().enumerate() {
            self.net.put_column(g, column_weights(col), &mut w);
        }
        w
    }
}

/// The dense weights with any loss: `loss(records, params, grads)` gives a minibatch's loss
/// and, with `grads`, puts its gradients there (dfdx's network on a GPU).
#[cfg(feature = "cuda")]
struct Dense<F> {
    params: [Param; 4],
    grads: [Vec<f32>; 4],
    loss: F,
}

#[cfg(feature = "cuda")]
impl<F: Fn(&[usize], &[Param; 4], Option<&mut [Vec<f32>; 4]>) -> f32> Dense<F> {
    fn new(params: [Param; 4], loss: F) -> Self {
        let grads = params.each_ref().map(|p| vec![0f32; p.w.len()]);
        Dense {
            params,
            grads,
            loss,
        }
    }
}

#[cfg(feature = "cuda")]
impl<F: Fn(&[usize], &[Param; 4], Option<&mut [Vec<f32>; 4]>) -> f32> Trainee for Dense<F> {
    fn epoch(&mut self, batches: &[&[usize]], lr: f32, t: i32) -> Vec<f32> {
        let mut losses = Vec::with_capacity(batches.len());
        for (b, idx) in batches.iter().enumerate() {
            losses.push((self.loss)(idx, &self.params, Some(&mut self.grads)));
            for (p, g) in self.params.iter_mut().zip(&self.grads) {
                p.step(g, lr, t + b as i32 + 1);
            }
        }
        losses
    }

    fn loss(&self, records: &[usize]) -> f32 {
        (self.loss)(records, &self.params, None)
    }

    fn weights(&self) -> [Vec<f32>; 4] {
        self.params.each_ref().map(|p| p.w.clone())
    }
}

/// Reads the per-column predictors out of the linear parts and the masked matrices
/// (`hidden = 0`: the linear parts alone).
#[allow(clippy::too_many_arguments)]
fn extract(
    base: &Model,
    active: &[usize],
    inputs: &[Vec<u32>],
    ids: &[u32],
    lin: &[Vec<f32>],
    b0: &[f32],
    hidden: usize,
    ch: usize,
    width: usize,
    p: [&[f32]; 4],
) -> Model {
    let mut m = base.clone();
    let slot = |id: u32| ids.binary_search(&id).expect("input id listed");
    let full = p[1].len() / active.len().max(1);
    for (g, &j) in active.iter().enumerate() {
        let c = &mut m.columns[j];
        c.inputs = inputs[j].clone();
        c.lin = lin[j].clone();
        c.hidden = hidden;
        c.w1.clear();
        c.b1.clear();
        c.w2.clear();
        c.b2 = b0[j];
        if hidden == 0 {
            continue;
        }
        for h in 0..hidden {
            let unit = g * full + h;
            for &id in &inputs[j] {
                c.w1.push(p[0][slot(id) * ch + unit]);
            }
            c.b1.push(p[1][unit]);
            c.w2.push(p[2][unit * width + j]);
        }
        c.b2 = b0[j] + p[3][j];
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Op;

    #[test]
    fn a_jump_ahead_is_that_many_draws() {
        let mut g = Lcg(12345);
        for n in [0u64, 1, 2, 3, 7, 64, 1000, 4097] {
            let jumped = g.jumped(n);
            let mut walked = Lcg(g.0);
            for _ in 0..n {
                walked.next();
            }
            assert_eq!(jumped.0, walked.0, "{n}");
            g = walked;
        }
    }

    #[test]
    fn the_noisy_sample_is_the_same_on_any_thread_count() {
        // Values that draw noise and values that do not (zeros under a point-wise bound,
        // non-finite values, a bit-exact column), in every run of records.
        let (rows, width) = (20_000, 4);
        let mut g = Lcg(9);
        let sample: Vec<f64> = (0..rows * width)
            .map(|i| match (i % 7, i % width) {
                (0, _) => 0.0,
                (3, 2) => f64::NAN,
                _ => f64::from(g.unit()) * 10.0 - 5.0,
            })
            .collect();
        let bounds = [
            crate::bound::Bound::Abs(0.01),
            crate::bound::Bound::PwRel(1e-3),
            crate::bound::Bound::Abs(0.5),
            crate::bound::Bound::Lossless,
        ];
        let model = Model::plain(&[(0.0, 5.0); 4]);
        let mut one = Lcg(77);
        let want = noisy_sample(&sample, width, &model, &bounds, &mut one, 1);
        for threads in [2, 3, 5] {
            let mut rng = Lcg(77);
            let got = noisy_sample(&sample, width, &model, &bounds, &mut rng, threads);
            assert_eq!(got.0, want.0, "{threads}");
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got.1), bits(&want.1), "{threads}");
            assert_eq!(rng.0, one.0, "the generator ends where one pass leaves it");
        }
        // Noise within each column's bound, none on the exact column.
        for r in 0..rows {
            let at = |j: usize| (sample[r * width + j], want.1[j * rows + r]);
            let (x, y) = at(0);
            assert!((x - y).abs() <= 0.01 + 1e-12);
            let (x, y) = at(3);
            assert_eq!(x.to_bits(), y.to_bits());
        }
    }

    /// A sample of `rows` records (`nin` inputs, `width` targets) and the masked weights of the
    /// network's two layers for the columns `active`, each with `hidden` units reading its
    /// `slots`, drawn from `rng`.
    fn random_network(
        rng: &mut Lcg,
        (rows, nin, width, hidden): (usize, usize, usize, usize),
        active: &[usize],
        slots: &[Vec<usize>],
    ) -> (Vec<f32>, Vec<f32>, Param, Param) {
        let ch = active.len() * hidden;
        let xin: Vec<f32> = (0..rows * nin).map(|_| rng.unit() * 2.0 - 1.0).collect();
        let resid: Vec<f32> = (0..rows * width).map(|_| rng.unit() - 0.5).collect();
        let (mut w1, mut m1) = (vec![0f32; nin * ch], vec![false; nin * ch]);
        let (mut w2, mut m2) = (vec![0f32; ch * width], vec![false; ch * width]);
        for (g, &j) in active.iter().enumerate() {
            for h in 0..hidden {
                let unit = g * hidden + h;
                for &s in &slots[g] {
                    m1[s * ch + unit] = true;
                    w1[s * ch + unit] = rng.unit() * 2.0 - 1.0;
                }
                m2[unit * width + j] = true;
                w2[unit * width + j] = rng.unit() * 2.0 - 1.0;
            }
        }
        (xin, resid, Param::new(w1, m1), Param::new(w2, m2))
    }

    #[test]
    fn columns_train_to_the_minibatch_kernels_weights() {
        // Column by column, each thread through a whole epoch, the weights are those the
        // minibatch-wide kernel gives with Adam after every minibatch, bit for bit, and so are
        // the minibatches' and the held-out losses.
        let mut rng = Lcg(5);
        let (rows, nin, width, hidden) = (700, 6, 5, 4);
        let active = [0usize, 2, 3, 4];
        let slots = vec![vec![0usize, 1], vec![2, 3, 5], vec![4], vec![0, 3, 4, 5]];
        let ch = active.len() * hidden;
        let shape = (rows, nin, width, hidden);
        let (xin, resid, w1, w2) = random_network(&mut rng, shape, &active, &slots);
        let net = Net::new((&xin, &resid), (rows, nin, ch, width), &active, &slots);
        let mut params = [
            w1,
            Param::new(vec![0.01; ch], vec![true; ch]),
            w2,
            Param::new(vec![0.0; width], net.output_mask()),
        ];
        let mut columns = Columns::new(&net, &params);
        let order: Vec<usize> = (0..rows).map(|i| (i * 37) % rows).collect();
        let (train, held) = order.split_at(600);
        let batches: Vec<&[usize]> = train.chunks(64).collect();
        let mut grads = params.each_ref().map(|p| vec![0f32; p.w.len()]);
        let mut t = 0;
        for (epoch, lr) in [(0, 0.01f32), (1, 0.005)] {
            let losses = columns.epoch(&batches, lr, t);
            for (b, idx) in batches.iter().enumerate() {
                let l = net.sparse(idx, &params, Some(&mut grads));
                for (p, g) in params.iter_mut().zip(&grads) {
                    p.step(g, lr, t + b as i32 + 1);
                }
                assert_eq!(losses[b].to_bits(), l.to_bits(), "epoch {epoch} batch {b}");
            }
            t += batches.len() as i32;
            let want = params.each_ref().map(|p| p.w.clone());
            assert_eq!(columns.weights(), want, "epoch {epoch}");
            assert_eq!(
                columns.loss(held).to_bits(),
                net.sparse(held, &params, None).to_bits()
            );
        }
    }

    /// The block-sparse kernel computes the loss and gradients that dfdx's dense masked
    /// network computes, on every trainable entry.
    #[test]
    fn sparse_gradients_match_the_dense_network() {
        let mut rng = Lcg(11);
        let (rows, nin, width, hidden) = (900, 5, 4, 6);
        // Columns 1 and 3 are predicted: 1 from inputs {0, 2}, 3 from {1, 3, 4}.
        let active = [1usize, 3];
        let slots = vec![vec![0usize, 2], vec![1, 3, 4]];
        let ch = active.len() * hidden;
        let shape = (rows, nin, width, hidden);
        let (xin, resid, w1, w2) = random_network(&mut rng, shape, &active, &slots);
        let b1: Vec<f32> = (0..ch).map(|_| rng.unit() * 0.2 - 0.1).collect();
        let b2: Vec<f32> = (0..width).map(|_| rng.unit() * 0.2 - 0.1).collect();
        let net = Net::new((&xin, &resid), (rows, nin, ch, width), &active, &slots);
        let params = [
            w1,
            Param::new(b1, vec![true; ch]),
            w2,
            Param::new(b2, net.output_mask()),
        ];
        let idx: Vec<usize> = (0..rows).step_by(3).collect();
        let (dense_loss, dense) = net.forward_loss(&Cpu::default(), net.batch(&idx), &params, true);
        let dense = dense.unwrap();
        let mut sparse = params.each_ref().map(|p| vec![0f32; p.w.len()]);
        let loss = net.sparse(&idx, &params, Some(&mut sparse));
        assert!(
            (loss - dense_loss).abs() <= 1e-5 * dense_loss.abs(),
            "{loss} {dense_loss}"
        );
        assert_eq!(net.sparse(&idx, &params, None), loss);
        for (k, p) in params.iter().enumerate() {
            for i in 0..p.w.len() {
                let on = p.on.binary_search(&(i as u32)).is_ok();
                let (a, b) = (sparse[k][i], dense[k][i]);
                if on {
                    assert!(
                        (a - b).abs() <= 1e-5 + 1e-4 * b.abs(),
                        "param {k}[{i}]: {a} vs {b}"
                    );
                } else {
                    assert_eq!(a, 0.0, "param {k}[{i}] is not trainable");
                }
            }
        }
    }

    #[test]
    fn learns_a_kinematic_relation() {
        // px = pt·cos(phi), py = pt·sin(phi): columns 2 and 3 follow from 0 and 1.
        let mut rng = Lcg(5);
        let rows = 6000;
        let mut data = Vec::with_capacity(rows * 4);
        for _ in 0..rows {
            let pt = 20.0 + 80.0 * f64::from(rng.unit());
            let phi = (f64::from(rng.unit()) * 2.0 - 1.0) * std::f64::consts::PI;
            data.extend_from_slice(&[pt, phi, pt * phi.cos(), pt * phi.sin()]);
        }
        let norms = [(60.0, 40.0), (0.0, 3.2), (0.0, 100.0), (0.0, 100.0)];
        let bounds = [0.1, 0.003, 0.1, 0.1].map(crate::bound::Bound::Abs);
        let opts = TrainOptions {
            hidden: 24,
            epochs: 30,
            ..TrainOptions::default()
        };
        let (model, report) = train(&data, 4, &norms, &bounds, &opts, |_, _, _| {}).unwrap();
        // pt and phi are coded first; px and py follow from them through the derived features
        // pt·cos φ and pt·sin φ, up to the reconstruction noise of pt and phi.
        let pos = |j: u32| model.order.iter().position(|&c| c == j).unwrap();
        assert!(pos(0) < 2 && pos(1) < 2, "order {:?}", model.order);
        for j in [2, 3] {
            assert!(model.columns[j].is_active());
            let e = report.explained[j].unwrap();
            assert!(e < 0.01, "column {j}: explained {e}");
        }
        let ops: Vec<_> = model.features.iter().map(|f| f.op).collect();
        assert!(
            ops.contains(&Op::MulCos) && ops.contains(&Op::MulSin),
            "{ops:?}"
        );
        // The model survives serialization with its order and features.
        assert_eq!(Model::read(&model.to_bytes(), 4).unwrap(), model);
    }

    #[test]
    fn sizes_follow_the_data() {
        assert_eq!(default_hidden(400_000, 59, 8), 0);
        assert!(default_hidden(20_000_000, 23, 8) >= 16);
        assert_eq!(default_hidden(1 << 40, 10, 8), 32);
    }
}
