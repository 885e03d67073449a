//! ELBO training: Adam, KL warm-up to `beta`, early stopping on a validation tail of the
//! training prefix, deterministic given the seed.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::vae::{Activation, Vae, VaeConfig};
use crate::VaeError;

/// Hyper-parameters of the network and of training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    pub hidden: usize,
    pub depth: usize,
    pub latent: usize,
    pub activation: Activation,
    /// Maximum number of epochs.
    pub epochs: usize,
    pub batch: usize,
    pub lr: f32,
    /// Final KL weight.
    pub beta: f32,
    /// Epochs over which the KL weight rises linearly from `beta/warmup` to `beta`.
    pub kl_warmup_epochs: usize,
    /// Early stopping: epochs without validation improvement before stopping.
    pub patience: usize,
    /// Fraction of the training windows (the last ones in time) held out for validation.
    pub val_frac: f32,
    /// Stride between training windows.
    pub train_stride: usize,
    /// Cap on the total number of Adam steps (0 = no cap).
    pub max_steps: usize,
    /// Floor of the calibrated decoder variance, relative to its mean over features.
    pub var_floor: f32,
    /// Absolute floor of the calibrated decoder variance (in scaled units; a z-scored channel
    /// has variance 1 on the training rows).
    pub var_floor_abs: f32,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            hidden: 128,
            depth: 1,
            latent: 16,
            activation: Activation::Relu,
            epochs: 30,
            batch: 32,
            lr: 1e-3,
            beta: 0.1,
            kl_warmup_epochs: 3,
            patience: 4,
            val_frac: 0.1,
            train_stride: 1,
            max_steps: 300,
            var_floor: 0.05,
            var_floor_abs: 0.01,
            seed: 1,
        }
    }
}

/// Per-epoch training record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub steps: usize,
    pub train_loss: f64,
    pub val_loss: Option<f64>,
    pub beta: f32,
}

/// Summary of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TrainReport {
    pub train_windows: usize,
    pub val_windows: usize,
    pub epochs_run: usize,
    pub steps: usize,
    pub best_epoch: usize,
    pub best_val_loss: Option<f64>,
    pub final_train_loss: f64,
    pub stopped_early: bool,
    /// Wall time of training (not stored in model files, so that they are reproducible).
    #[serde(skip)]
    pub seconds: f64,
}

/// Progress events for a progress bar.
#[derive(Debug, Clone)]
pub enum Progress {
    /// Training starts: planned epochs and steps per epoch.
    Start {
        epochs: usize,
        steps_per_epoch: usize,
        max_steps: usize,
    },
    /// One Adam step done (running mean loss of the epoch so far).
    Step {
        epoch: usize,
        step: usize,
        loss: f64,
    },
    Epoch(EpochReport),
}

/// Adam optimiser state over the flat parameter vector.
pub struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

impl Adam {
    pub fn new(n: usize, lr: f32) -> Self {
        Adam { m: vec![0.0; n], v: vec![0.0; n], t: 0, lr, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
    pub fn step(&mut self, params: &mut [f32], grad: &[f32]) {
        self.t += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(self.t);
        let c2 = 1.0 - b2.powi(self.t);
        let a = self.lr * c2.sqrt() / c1;
        let eps = self.eps * c2.sqrt();
        // Element-wise, so splitting over threads does not change the result.
        const CHUNK: usize = 1 << 15;
        use rayon::prelude::*;
        params
            .par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .zip(self.m.par_chunks_mut(CHUNK))
            .zip(self.v.par_chunks_mut(CHUNK))
            .for_each(|(((p, g), m), v)| {
                for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
                    *m = b1 * *m + (1.0 - b1) * g;
                    *v = b2 * *v + (1.0 - b2) * g * g;
                    *p -= a * *m / (v.sqrt() + eps);
                }
            });
    }
}

/// Splits window start positions `0..=n_rows-w` (step `stride`) into training and
/// validation starts. Validation = the last `val_frac` of the starts; training windows that
/// overlap the validation windows are dropped when enough remain.
pub fn split_windows(n_rows: usize, w: usize, stride: usize, val_frac: f32) -> (Vec<usize>, Vec<usize>) {
    if n_rows < w {
        return (Vec::new(), Vec::new());
    }
    let starts: Vec<usize> = (0..=n_rows - w).step_by(stride.max(1)).collect();
    let n_val = ((starts.len() as f64) * val_frac as f64).round() as usize;
    if n_val < 4 || starts.len() - n_val < 8 {
        return (starts, Vec::new());
    }
    let val = starts[starts.len() - n_val..].to_vec();
    let first_val = val[0];
    let disjoint: Vec<usize> = starts[..starts.len() - n_val].iter().copied().filter(|&s| s + w <= first_val).collect();
    let train = if disjoint.len() >= 4 * n_val.min(64) && disjoint.len() >= 32 {
        disjoint
    } else {
        starts[..starts.len() - n_val].to_vec()
    };
    (train, val)
}

fn gather(values: &[f32], dim_row: usize, w: usize, starts: &[usize], out: &mut Vec<f32>) {
    out.clear();
    for &s in starts {
        out.extend_from_slice(&values[s * dim_row..(s + w) * dim_row]);
    }
}

/// Validation loss (`rec + beta·KL`, batch mean, with `z = μ`).
pub(crate) fn eval_loss(vae: &Vae, values: &[f32], starts: &[usize], beta: f32) -> f64 {
    let m = vae.n_features();
    let w = vae.window();
    let mut buf = Vec::new();
    let mut tot = 0.0;
    for chunk in starts.chunks(256) {
        gather(values, m, w, chunk, &mut buf);
        let c = vae.forward_train(&buf, chunk.len(), None);
        let (r, k) = vae.loss_terms(&c);
        tot += (r + beta as f64 * k) * chunk.len() as f64;
    }
    tot / starts.len().max(1) as f64
}

/// Trains a VAE on the (already scaled) rows `[0, train_end)` of `values` (row-major,
/// `n_cols` columns) with window length `window`.
pub fn train_vae(
    values: &[f32],
    n_cols: usize,
    train_end: usize,
    window: usize,
    cfg: &TrainConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Vae, TrainReport), VaeError> {
    train_vae_from(None, values, n_cols, train_end, window, cfg, progress)
}

/// As [`train_vae`], but starting from the weights of `init` when given (fine-tuning: the
/// architecture fields of `cfg` are then ignored, `window` must be `init`'s).
pub fn train_vae_from(
    init: Option<&Vae>,
    values: &[f32],
    n_cols: usize,
    train_end: usize,
    window: usize,
    cfg: &TrainConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Vae, TrainReport), VaeError> {
    if let Some(v) = init {
        if v.window() != window || v.n_features() != n_cols {
            return Err(VaeError::Invalid(format!(
                "fine-tuning a window-{}×{} model on window-{window}×{n_cols} data",
                v.window(),
                v.n_features()
            )));
        }
    }
    let t0 = std::time::Instant::now();
    if n_cols == 0 {
        return Err(VaeError::Invalid("the series has no feature column".into()));
    }
    if window == 0 || cfg.batch == 0 || cfg.hidden == 0 || cfg.latent == 0 || cfg.depth == 0 {
        return Err(VaeError::Invalid("window, batch, hidden, latent and depth must be ≥ 1".into()));
    }
    let ok = cfg.lr > 0.0
        && cfg.lr.is_finite()
        && cfg.beta >= 0.0
        && cfg.beta.is_finite()
        && (0.0..0.9).contains(&cfg.val_frac);
    if !ok {
        return Err(VaeError::Invalid("need lr > 0, beta ≥ 0 and 0 ≤ val_frac < 0.9".into()));
    }
    if train_end < window + 1 {
        return Err(VaeError::Invalid(format!(
            "the training prefix has {train_end} rows, fewer than window + 1 = {}; use a smaller --window",
            window + 1
        )));
    }
    let train_vals = &values[..train_end * n_cols];
    if let Some(i) = train_vals.iter().position(|v| !v.is_finite()) {
        return Err(VaeError::Invalid(format!("non-finite value in the training prefix at row {}", i / n_cols)));
    }
    let (train_starts, val_starts) = split_windows(train_end, window, cfg.train_stride, cfg.val_frac);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let vcfg = VaeConfig {
        window,
        n_features: n_cols,
        hidden: cfg.hidden,
        depth: cfg.depth,
        latent: cfg.latent,
        activation: cfg.activation,
    };
    let mut vae = match init {
        Some(v) => v.clone(),
        None => Vae::new(vcfg, &mut rng),
    };
    let mut adam = Adam::new(vae.params.len(), cfg.lr);
    let mut grad = vec![0.0f32; vae.params.len()];
    let steps_per_epoch = train_starts.len().div_ceil(cfg.batch);
    progress(Progress::Start { epochs: cfg.epochs, steps_per_epoch, max_steps: cfg.max_steps });
    let mut order = train_starts.clone();
    let mut buf = Vec::new();
    let mut best: Option<(f64, Vec<f32>, usize)> = None;
    let mut since_best = 0usize;
    let mut report =
        TrainReport { train_windows: train_starts.len(), val_windows: val_starts.len(), ..Default::default() };
    let warm = cfg.kl_warmup_epochs.max(1);
    'epochs: for epoch in 0..cfg.epochs {
        let beta = cfg.beta * ((epoch + 1) as f32 / warm as f32).min(1.0);
        order.shuffle(&mut rng);
        let mut tot = 0.0;
        let mut cnt = 0usize;
        let mut steps = 0usize;
        for (si, chunk) in order.chunks(cfg.batch).enumerate() {
            gather(train_vals, n_cols, window, chunk, &mut buf);
            let c = vae.forward_train(&buf, chunk.len(), Some(&mut rng));
            let (r, k) = vae.loss_terms(&c);
            let loss = r + beta as f64 * k;
            if !loss.is_finite() {
                return Err(VaeError::Diverged { epoch, step: si });
            }
            vae.backward(c, beta, &mut grad);
            adam.step(&mut vae.params, &grad);
            tot += loss * chunk.len() as f64;
            cnt += chunk.len();
            steps += 1;
            report.steps += 1;
            progress(Progress::Step { epoch, step: si, loss: tot / cnt as f64 });
            if cfg.max_steps > 0 && report.steps >= cfg.max_steps {
                break;
            }
        }
        let train_loss = tot / cnt.max(1) as f64;
        let val_loss = if val_starts.is_empty() { None } else { Some(eval_loss(&vae, values, &val_starts, cfg.beta)) };
        report.epochs_run = epoch + 1;
        report.final_train_loss = train_loss;
        progress(Progress::Epoch(EpochReport { epoch, steps, train_loss, val_loss, beta }));
        if let Some(v) = val_loss {
            let improved = best.as_ref().is_none_or(|(b, _, _)| v < *b - 1e-4 * b.abs());
            if improved {
                best = Some((v, vae.params.clone(), epoch));
                since_best = 0;
            } else if epoch + 1 >= warm {
                since_best += 1;
                if since_best >= cfg.patience.max(1) {
                    report.stopped_early = true;
                    break 'epochs;
                }
            }
        }
        if cfg.max_steps > 0 && report.steps >= cfg.max_steps {
            break;
        }
    }
    if let Some((v, p, e)) = best {
        vae.params = p;
        report.best_val_loss = Some(v);
        report.best_epoch = e;
    } else {
        report.best_epoch = report.epochs_run.saturating_sub(1);
    }
    // Calibrate the decoder variance on held-out windows when there are any.
    let calib = if val_starts.is_empty() { &train_starts } else { &val_starts };
    gather(values, n_cols, window, calib, &mut buf);
    vae.calibrate_variance(&buf, calib.len(), cfg.var_floor, cfg.var_floor_abs);
    report.seconds = t0.elapsed().as_secs_f64();
    Ok((vae, report))
}

/// One Adam step of the ELBO (`rec + beta·KL`, batch mean) on a batch of `n` windows `x`
/// (`n × w·m`); returns the loss before the step. `grad` is scratch of the parameter length.
pub fn adam_step(
    vae: &mut Vae,
    adam: &mut Adam,
    grad: &mut Vec<f32>,
    x: &[f32],
    n: usize,
    beta: f32,
    rng: &mut ChaCha8Rng,
) -> f64 {
    grad.resize(vae.params.len(), 0.0);
    let c = vae.forward_train(x, n, Some(rng));
    let (r, k) = vae.loss_terms(&c);
    vae.backward(c, beta, grad);
    adam.step(&mut vae.params, grad);
    r + beta as f64 * k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_disjoint_when_possible() {
        let (tr, va) = split_windows(1000, 50, 1, 0.1);
        assert_eq!(va.len(), 95);
        assert!(tr.iter().all(|&s| s + 50 <= va[0]));
        let (tr, va) = split_windows(60, 50, 1, 0.1);
        assert!(va.is_empty());
        assert_eq!(tr.len(), 11);
    }
}
