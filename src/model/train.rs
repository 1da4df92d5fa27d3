//! Training the conditional MLP with dfdx, on a sample of records.
//!
//! All columns' networks are trained together as one masked network (MADE-style): the first
//! layer maps every column to `active × hidden` units, masked so that each column's group of
//! units sees only its selected earlier columns; the output layer is block-diagonal. Masked
//! weights start at zero and their gradients are zeroed before each Adam step, so they stay
//! zero; the per-column networks are then read out of the two matrices.
//!
//! Layer sizes are chosen at run time, so the network is built from dfdx tensors with runtime
//! shapes (`Tensor<(usize, usize), f32, Cpu>`) rather than compile-time `Linear` layers; the
//! optimizer (Adam with learning-rate decay on plateaus and early stopping on a held-out split)
//! is written here over plain vectors.
//!
//! The inputs are the normalized sample plus uniform noise of the column's bound: the decoder
//! predicts from reconstructed values, which differ from the originals by up to the bound, and
//! a network trained on clean inputs can lean on digits that do not survive. Only the decoder
//! side needs bit-reproducibility (`Model::predict_column`); training may run anywhere.

use dfdx::prelude::*;

use super::{ColumnModel, MAX_HIDDEN, MAX_INPUTS, Model};

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
}

/// Fits a model to a sample of records (row-major, `width` values each) to be coded under
/// `specs`: normalization from the sample's ranges, the noise of each column's bound, and
/// hidden units from [`default_hidden`] for `raw_bytes` of input unless `opts.hidden` is set.
pub fn fit(
    sample: &[f64],
    width: usize,
    specs: &[crate::bound::BoundSpec],
    raw_bytes: u64,
    opts: &TrainOptions,
    progress: impl FnMut(usize, f32, f32),
) -> (Model, TrainReport) {
    let rows = sample.len() / width.max(1);
    let mut norms = Vec::with_capacity(width);
    let mut bounds = Vec::with_capacity(width);
    for j in 0..width {
        let col: Vec<f64> = (0..rows).map(|r| sample[r * width + j]).collect();
        let stats = crate::normalize::ColumnStats::of(&col);
        let n = crate::normalize::Normalization::from_stats(&stats);
        norms.push((n.offset, n.scale));
        bounds.push(specs[j].resolve(&stats));
    }
    let mut opts = opts.clone();
    if opts.hidden == 0 {
        let active = bounds.iter().skip(1).filter(|&&b| b > 0.0).count();
        opts.hidden = default_hidden(raw_bytes, active, opts.max_inputs);
    }
    train(sample, width, &norms, &bounds, &opts, progress)
}

/// Hidden units per column so that the model stays a small share of the output: about 2% of
/// an estimated compressed size of `raw_bytes / 5`, spread over `active` columns of up to
/// `max_inputs` inputs. 0 when a network of 4 units does not fit (small inputs: no model).
pub fn default_hidden(raw_bytes: u64, active: usize, max_inputs: usize) -> usize {
    if active == 0 {
        return 0;
    }
    let budget = raw_bytes as f64 / 5.0 * 0.02;
    let per_unit = (active * (max_inputs + 2) * 4) as f64;
    let h = (budget / per_unit) as usize;
    if h < 4 { 0 } else { h.min(32) }
}

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
}

/// Adam state for one parameter vector, with a mask of trainable entries.
struct Param {
    w: Vec<f32>,
    mask: Vec<bool>,
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Param {
    fn new(w: Vec<f32>, mask: Vec<bool>) -> Self {
        let n = w.len();
        Param {
            w,
            mask,
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }

    fn step(&mut self, g: &[f32], lr: f32, t: i32) {
        let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
        let c1 = 1.0 - b1.powi(t);
        let c2 = 1.0 - b2.powi(t);
        let state = self.w.iter_mut().zip(&mut self.m).zip(&mut self.v);
        for (((w, m), v), (&gi, &on)) in state.zip(g.iter().zip(&self.mask)) {
            if !on {
                continue;
            }
            *m = b1 * *m + (1.0 - b1) * gi;
            *v = b2 * *v + (1.0 - b2) * gi * gi;
            *w -= lr * (*m / c1) / ((*v / c2).sqrt() + eps);
        }
    }
}

/// Trains a model on `sample` (row-major, `width` values per record), with per-column
/// normalization `norms` (`(offset, scale)`) and absolute bounds `bounds` (0: stored exactly,
/// never predicted). `progress(epoch, train_loss, val_loss)` is called after each epoch.
pub fn train(
    sample: &[f64],
    width: usize,
    norms: &[(f64, f64)],
    bounds: &[f64],
    opts: &TrainOptions,
    mut progress: impl FnMut(usize, f32, f32),
) -> (Model, TrainReport) {
    let rows = sample.len() / width.max(1);
    let mut report = TrainReport {
        records: rows,
        explained: vec![None; width],
        ..TrainReport::default()
    };
    let base: Vec<ColumnModel> = norms
        .iter()
        .map(|&(o, s)| ColumnModel::none(o, s))
        .collect();
    let mut model = Model { columns: base };
    let max_inputs = opts.max_inputs.clamp(1, MAX_INPUTS);
    let hidden = opts.hidden.min(MAX_HIDDEN);
    if rows < 64 || width < 2 || hidden == 0 {
        return (model, report);
    }

    // Normalized sample, column-major, and the noise amplitude of each column.
    let mut u = vec![0f32; rows * width];
    for r in 0..rows {
        for j in 0..width {
            u[j * rows + r] = model.columns[j].normalize(sample[r * width + j]);
        }
    }
    let noise: Vec<f32> = (0..width)
        .map(|j| {
            let s = norms[j].1;
            if s > 0.0 {
                (bounds[j] / s).min(1.0) as f32
            } else {
                0.0
            }
        })
        .collect();

    // Which columns get a network, and from which earlier columns.
    let mean_var = |j: usize| {
        let c = &u[j * rows..(j + 1) * rows];
        let m = c.iter().map(|&x| f64::from(x)).sum::<f64>() / rows as f64;
        let v = c.iter().map(|&x| (f64::from(x) - m).powi(2)).sum::<f64>() / rows as f64;
        (m, v)
    };
    let stats: Vec<(f64, f64)> = (0..width).map(mean_var).collect();
    let mut inputs: Vec<Vec<u32>> = vec![Vec::new(); width];
    for j in 1..width {
        if bounds[j] <= 0.0 || stats[j].1 <= 0.0 {
            continue;
        }
        let mut cands: Vec<(f64, u32)> = (0..j)
            .filter(|&i| stats[i].1 > 0.0)
            .map(|i| {
                let (mi, vi) = stats[i];
                let (mj, vj) = stats[j];
                let cov = (0..rows)
                    .map(|r| (f64::from(u[i * rows + r]) - mi) * (f64::from(u[j * rows + r]) - mj))
                    .sum::<f64>()
                    / rows as f64;
                ((cov / (vi * vj).sqrt()).abs(), i as u32)
            })
            .collect();
        cands.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut pick: Vec<u32> = cands.iter().take(max_inputs).map(|c| c.1).collect();
        pick.sort_unstable();
        inputs[j] = pick;
    }
    let active: Vec<usize> = (0..width).filter(|&j| !inputs[j].is_empty()).collect();
    if active.is_empty() {
        return (model, report);
    }
    let ch = active.len() * hidden;

    // Parameters: W1 (width × ch), b1 (ch), W2 (ch × width), b2 (width).
    let mut rng = Lcg(opts.seed ^ 0xba1e_5eed);
    let mut w1 = vec![0f32; width * ch];
    let mut m1 = vec![false; width * ch];
    let mut w2 = vec![0f32; ch * width];
    let mut m2 = vec![false; ch * width];
    for (g, &j) in active.iter().enumerate() {
        let a1 = (3.0 / inputs[j].len() as f32).sqrt();
        let a2 = (3.0 / hidden as f32).sqrt() * 0.5;
        for h in 0..hidden {
            let unit = g * hidden + h;
            for &i in &inputs[j] {
                let at = i as usize * ch + unit;
                m1[at] = true;
                w1[at] = (rng.unit() * 2.0 - 1.0) * a1;
            }
            let at = unit * width + j;
            m2[at] = true;
            w2[at] = (rng.unit() * 2.0 - 1.0) * a2;
        }
    }
    let mut p_w1 = Param::new(w1, m1);
    let mut p_b1 = Param::new(vec![0.0; ch], vec![true; ch]);
    let mut p_w2 = Param::new(w2, m2);
    let b2: Vec<f32> = (0..width).map(|j| stats[j].0 as f32).collect();
    let mut active_mask = vec![false; width];
    for &j in &active {
        active_mask[j] = true;
    }
    let mut p_b2 = Param::new(b2, active_mask.clone());
    let col_mask: Vec<f32> = active_mask
        .iter()
        .map(|&a| if a { 1.0 } else { 0.0 })
        .collect();

    // Split: a shuffled tenth held out.
    let mut order: Vec<usize> = (0..rows).collect();
    for i in (1..rows).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let nval = (rows / 10).clamp(32, 20_000);
    let (val_idx, train_idx) = order.split_at(nval);
    let mut train_idx = train_idx.to_vec();

    let dev: Cpu = Default::default();
    let batch_of = |idx: &[usize], rng: Option<&mut Lcg>| -> (Vec<f32>, Vec<f32>) {
        let b = idx.len();
        let mut x = vec![0f32; b * width];
        let mut t = vec![0f32; b * width];
        let mut rng = rng;
        for (k, &r) in idx.iter().enumerate() {
            for j in 0..width {
                let v = u[j * rows + r];
                t[k * width + j] = v;
                let n = match rng.as_deref_mut() {
                    Some(g) if noise[j] > 0.0 => (g.unit() * 2.0 - 1.0) * noise[j],
                    _ => 0.0,
                };
                x[k * width + j] = v + n;
            }
        }
        (x, t)
    };
    let forward_loss = |x: Vec<f32>,
                        t: Vec<f32>,
                        b: usize,
                        p: [&Param; 4],
                        train: bool|
     -> (f32, Option<[Vec<f32>; 4]>) {
        let w1 = dev.tensor_from_vec(p[0].w.clone(), (width, ch));
        let b1 = dev.tensor_from_vec(p[1].w.clone(), (ch,));
        let w2 = dev.tensor_from_vec(p[2].w.clone(), (ch, width));
        let b2 = dev.tensor_from_vec(p[3].w.clone(), (width,));
        let tt = dev.tensor_from_vec(t, (b, width));
        let mask = dev
            .tensor_from_vec(col_mask.clone(), (width,))
            .broadcast_like::<_, Axis<0>>(&(b, width));
        let xt = dev.tensor_from_vec(x, (b, width));
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
    };

    let share = active.len() as f32 / width as f32;
    let (vx, vt) = batch_of(val_idx, None);
    let mut lr = opts.learning_rate;
    let mut t = 0i32;
    let mut best = (
        f32::INFINITY,
        [
            p_w1.w.clone(),
            p_b1.w.clone(),
            p_w2.w.clone(),
            p_b2.w.clone(),
        ],
    );
    let mut stale = 0;
    let batch = opts.batch.max(16);
    for epoch in 0..opts.epochs {
        for i in (1..train_idx.len()).rev() {
            train_idx.swap(i, rng.below(i + 1));
        }
        let mut sum = 0.0f64;
        let mut steps = 0usize;
        for idx in train_idx.chunks(batch) {
            let (x, tg) = batch_of(idx, Some(&mut rng));
            let (l, g) = forward_loss(x, tg, idx.len(), [&p_w1, &p_b1, &p_w2, &p_b2], true);
            let Some(g) = g else { break };
            t += 1;
            p_w1.step(&g[0], lr, t);
            p_b1.step(&g[1], lr, t);
            p_w2.step(&g[2], lr, t);
            p_b2.step(&g[3], lr, t);
            sum += f64::from(l);
            steps += 1;
        }
        let train_loss = (sum / steps.max(1) as f64) as f32 / share;
        let (vl, _) = forward_loss(
            vx.clone(),
            vt.clone(),
            val_idx.len(),
            [&p_w1, &p_b1, &p_w2, &p_b2],
            false,
        );
        let vl = vl / share;
        report.train_loss.push(train_loss);
        report.val_loss.push(vl);
        progress(epoch, train_loss, vl);
        if vl < best.0 * 0.999 {
            best = (
                vl,
                [
                    p_w1.w.clone(),
                    p_b1.w.clone(),
                    p_w2.w.clone(),
                    p_b2.w.clone(),
                ],
            );
            stale = 0;
        } else {
            stale += 1;
            lr *= 0.5;
            if stale >= opts.patience {
                break;
            }
        }
    }
    let [w1, b1, w2, b2] = best.1;

    // Per-column validation error, to drop networks that explain nothing.
    let mut col_err = vec![0f64; width];
    {
        let tmp = Model {
            columns: extract(
                &model.columns,
                &active,
                &inputs,
                hidden,
                ch,
                width,
                [&w1, &b1, &w2, &b2],
            ),
        };
        for &r in val_idx {
            let row: Vec<f64> = (0..width)
                .map(|j| {
                    let c = &tmp.columns[j];
                    c.offset + c.scale * f64::from(u[j * rows + r])
                })
                .collect();
            for &j in &active {
                let p = tmp.predict_one(j, &row, 0.0);
                let c = &tmp.columns[j];
                let e = (p - row[j]) / c.scale;
                col_err[j] += e * e;
            }
        }
        model = tmp;
    }
    for &j in &active {
        let rel = (col_err[j] / val_idx.len() as f64 / stats[j].1) as f32;
        report.explained[j] = Some(rel);
        if rel > 0.9 {
            let c = &model.columns[j];
            model.columns[j] = ColumnModel::none(c.offset, c.scale);
        }
    }
    (model, report)
}

/// Reads the per-column networks out of the masked matrices.
fn extract(
    base: &[ColumnModel],
    active: &[usize],
    inputs: &[Vec<u32>],
    hidden: usize,
    ch: usize,
    width: usize,
    p: [&[f32]; 4],
) -> Vec<ColumnModel> {
    let mut cols: Vec<ColumnModel> = base.to_vec();
    for (g, &j) in active.iter().enumerate() {
        let c = &mut cols[j];
        c.inputs = inputs[j].clone();
        c.hidden = hidden;
        c.w1.clear();
        c.b1.clear();
        c.w2.clear();
        for h in 0..hidden {
            let unit = g * hidden + h;
            for &i in &inputs[j] {
                c.w1.push(p[0][i as usize * ch + unit]);
            }
            c.b1.push(p[1][unit]);
            c.w2.push(p[2][unit * width + j]);
        }
        c.b2 = p[3][j];
    }
    cols
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let bounds = [0.1, 0.003, 0.1, 0.1];
        let opts = TrainOptions {
            hidden: 24,
            epochs: 30,
            ..TrainOptions::default()
        };
        let (model, report) = train(&data, 4, &norms, &bounds, &opts, |_, _, _| {});
        assert!(model.columns[3].is_active());
        assert_eq!(model.columns[3].inputs, vec![0, 1, 2]);
        // Most of the variance of py is explained from pt, phi and px.
        let e = report.explained[3].unwrap();
        assert!(e < 0.2, "explained {e}");
        assert!(report.val_loss.last().unwrap() < &report.val_loss[0]);
    }

    #[test]
    fn sizes_follow_the_data() {
        assert_eq!(default_hidden(400_000, 59, 8), 0);
        assert!(default_hidden(20_000_000, 23, 8) >= 16);
        assert_eq!(default_hidden(1 << 40, 10, 8), 32);
    }
}
