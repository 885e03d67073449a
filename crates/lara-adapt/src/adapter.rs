//! The adapter `(M_z, M_x)`, its two-stage convex fit, chained adaptation and scoring
//! (digest §4–§6).

use serde::{Deserialize, Serialize};

use crate::data::{check_windows, cover_starts, windows_from_rows};
use crate::model::{decode_checked, encode_checked, model_dims, AdaptedVae, FrozenVae, ModelDims};
use crate::ridge::{NormalEquations, Penalty, Ridge};
use crate::ruminate::{Proposal, RuminateBlock};
use crate::{AdaptError, AffineMap};

/// What the ridge of a chained adaptation pulls toward (digest §6 notes, ambiguity 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ChainPolicy {
    /// Anchor at the previous adapter (warm start): with little new data the previous period
    /// — the most recent pattern — is the prior, not the stale base model. Default.
    #[default]
    AnchorPrevious,
    /// Anchor at the identity (digest's "re-fit from identity each period"); the previous
    /// adapter still shapes the ruminate targets.
    AnchorIdentity,
}

/// How each convex stage is minimised (digest §5). Both reach the same optimum (tested).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Solver {
    /// Normal equations + Cholesky (default; microseconds).
    #[default]
    ClosedForm,
    /// Full-batch gradient descent from the anchor with step `1/L` (the paper's iterative
    /// training, minus the non-convex decoder coupling). Error if the relative gradient is
    /// still above `tol` after `max_iter` steps.
    Gradient { max_iter: usize, tol: f64 },
}

impl Solver {
    fn solve(
        &self,
        ne: &NormalEquations,
        pen: Penalty,
        anchor: &AffineMap,
        stage: &'static str,
    ) -> Result<AffineMap, AdaptError> {
        match *self {
            Solver::ClosedForm => ne.solve(pen, anchor),
            Solver::Gradient { max_iter, tol } => {
                let fit = ne.solve_gradient(pen, anchor, max_iter, tol)?;
                if fit.converged {
                    Ok(fit.map)
                } else {
                    Err(AdaptError::NotConverged {
                        stage,
                        iterations: fit.iterations,
                        relative_gradient: fit.relative_gradient,
                    })
                }
            }
        }
    }
}

/// Hyper-parameters of [`adapt`]. Defaults: see the field docs and the crate docs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdaptConfig {
    /// Ridge of the `M_z` fit, in windows (default: the anchor weighs as one window, **bias
    /// included** — with 1–4 windows a free bias would copy the noisy `z̃` of a single window
    /// into every latent; see the crate docs for the evidence).
    pub ridge_z: Ridge,
    /// Ridge of the `M_x` fit, in time steps (default [`Ridge::per_dim`]`(2.0)`: `2m` steps;
    /// bias free).
    pub ridge_x: Ridge,
    /// `n`, look-alikes restored per window (default 8).
    pub n_lookalikes: usize,
    /// `N`, importance samples per window (default 256).
    pub n_samples: usize,
    /// Importance proposal (default [`Proposal::Pooled`]).
    pub proposal: Proposal,
    /// RNG seed of the ruminate block (default 0).
    pub seed: u64,
    /// ESS floor of the ruminate block ([`RuminateBlock::min_ess`], default 0: plain SNIS).
    pub min_ess: f64,
    /// Stride of the adaptation windows cut from rows by [`adapt_rows`] (default 1: 43 rows
    /// and `w = 40` give 4 windows).
    pub stride: usize,
    /// Anchor of a chained adaptation.
    pub chain: ChainPolicy,
    /// Minimiser of the two convex stages.
    pub solver: Solver,
}

impl Default for AdaptConfig {
    fn default() -> Self {
        AdaptConfig {
            ridge_z: Ridge { pseudo_rows: 1.0, per_dim: false, penalise_bias: true },
            ridge_x: Ridge::per_dim(2.0),
            n_lookalikes: 8,
            n_samples: 256,
            proposal: Proposal::Pooled,
            seed: 0,
            min_ess: 0.0,
            stride: 1,
            chain: ChainPolicy::AnchorPrevious,
            solver: Solver::ClosedForm,
        }
    }
}

impl AdaptConfig {
    /// The ruminate block these settings describe.
    pub fn ruminate_block(&self) -> RuminateBlock {
        RuminateBlock {
            n_lookalikes: self.n_lookalikes,
            n_samples: self.n_samples,
            proposal: self.proposal,
            seed: self.seed,
            min_ess: self.min_ess,
        }
    }

    /// Range checks (ridges > 0, `n_samples ≥ 1`, `stride ≥ 1`).
    pub fn validate(&self) -> Result<(), AdaptError> {
        self.ridge_z.validate("ridge_z")?;
        self.ridge_x.validate("ridge_x")?;
        self.ruminate_block().validate()?;
        if self.stride == 0 {
            return Err(AdaptError::InvalidConfig("stride must be ≥ 1".into()));
        }
        if let Solver::Gradient { max_iter, tol } = self.solver {
            if max_iter == 0 || !(tol.is_finite() && tol > 0.0) {
                return Err(AdaptError::InvalidConfig(format!(
                    "gradient solver needs max_iter ≥ 1 and a finite tol > 0 (got {max_iter}, {tol})"
                )));
            }
        }
        Ok(())
    }
}

/// LARA's adjusting functions, always expressed on the **base** (frozen) model:
/// `x̂ = M_x(μ_θ(M_z(μ_φ(x))))`, `M_x` applied to each time step.
///
/// A chained adaptation returns a new adapter of the same size (no parent pointer is
/// needed: composing affine maps stays affine), with `generation` counting the adaptations
/// since the base model. Size: `4·(d_z² + d_z + m² + m)` bytes of parameters
/// ([`Adapter::param_bytes`]); `d_z = 32`, `m = 55`: 16 544 B.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adapter {
    /// `M_z` on `R^{d_z}`.
    pub m_z: AffineMap,
    /// `M_x` on `R^m`, shared over the time steps of a window.
    pub m_x: AffineMap,
    /// 0 for the identity adapter (the old model), `g + 1` after adapting a generation-`g`
    /// adapter.
    pub generation: u32,
}

/// Diagnostics of one adaptation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptReport {
    /// Adaptation windows `B`.
    pub n_windows: usize,
    /// Effective sample size of the ruminate weights: mean and minimum over windows.
    pub mean_ess: f64,
    pub min_ess: f64,
    /// Ruminate tempering `β` (1 = plain SNIS): minimum over windows.
    pub min_temperature: f64,
    /// Absolute ridge penalties used: `M_z` (`λ_W`, `λ_b`) and `M_x`.
    pub lambda_z: (f64, f64),
    pub lambda_x: (f64, f64),
    /// Mean squared residual of the `M_z` stage (per latent coordinate) with the anchor and
    /// with the fitted map.
    pub mse_z_anchor: f64,
    pub mse_z_fit: f64,
    /// Mean squared residual of the `M_x` stage (per element) with the anchor `M_x` (given the
    /// fitted `M_z`) and with the fitted `M_x`.
    pub mse_x_anchor: f64,
    pub mse_x_fit: f64,
}

impl Adapter {
    /// Identity maps: the adapted model equals the old one.
    pub fn identity(latent_dim: usize, n_features: usize) -> Self {
        Adapter { m_z: AffineMap::identity(latent_dim), m_x: AffineMap::identity(n_features), generation: 0 }
    }

    /// Identity maps sized for `model`.
    pub fn identity_for<M: FrozenVae + ?Sized>(model: &M) -> Result<Self, AdaptError> {
        let d = model_dims(model)?;
        Ok(Adapter::identity(d.latent, d.features))
    }

    /// Bytes of parameters: `4·(d_z² + d_z + m² + m)`.
    pub fn param_bytes(&self) -> usize {
        4 * (self.m_z.n_params() + self.m_x.n_params())
    }

    /// Consistency (after deserialisation) and match with a model's dimensions.
    pub fn check_model(&self, d: ModelDims) -> Result<(), AdaptError> {
        self.m_z.validate()?;
        self.m_x.validate()?;
        if self.m_z.dim != d.latent || self.m_x.dim != d.features {
            return Err(AdaptError::AdapterMismatch(format!(
                "adapter has M_z on {} and M_x on {} dimensions, the model has latent {} and {} features",
                self.m_z.dim, self.m_x.dim, d.latent, d.features
            )));
        }
        Ok(())
    }

    /// Adapts the model *as adapted by `self`* to new windows (chained changes, digest §6):
    /// the ruminate block restores history from the current adapted model
    /// ([`AdaptedVae`]), both maps are re-fitted on the base model's quantities, and the ridge
    /// pulls toward `self` ([`ChainPolicy::AnchorPrevious`]) or the identity.
    pub fn adapt_again<M: FrozenVae + ?Sized>(
        &self,
        model: &M,
        windows: &[f32],
        cfg: &AdaptConfig,
    ) -> Result<(Adapter, AdaptReport), AdaptError> {
        cfg.validate()?;
        let d = model_dims(model)?;
        self.check_model(d)?;
        let n = check_windows(windows, d)?;
        let current = AdaptedVae { base: model, adapter: self };
        let (anchor_z, anchor_x) = match cfg.chain {
            ChainPolicy::AnchorPrevious => (self.m_z.clone(), self.m_x.clone()),
            ChainPolicy::AnchorIdentity => (AffineMap::identity(d.latent), AffineMap::identity(d.features)),
        };

        // Ruminate targets z̃ under the current model.
        let rum = cfg.ruminate_block().target_latents(&current, windows)?;
        // Stage 1: M_z on (μ_φ(x_b) → z̃_b), base encoder means.
        let z_old = if self.m_z.is_identity() { rum.z_old } else { encode_checked(model, d, windows, n)?.0 };
        let pen_z = cfg.ridge_z.penalty(&z_old, d.latent);
        let mut ne_z = NormalEquations::new(d.latent);
        ne_z.add_rows(&z_old, &rum.z_tilde)?;
        let m_z = cfg.solver.solve(&ne_z, pen_z, &anchor_z, "M_z")?;

        // Stage 2: M_x on (μ_θ(M_z μ_φ(x_b))_t → x_{b,t}), M_z fixed (convex, ambiguity 1).
        let z_adj = m_z.apply(&z_old)?;
        let x_rec = decode_checked(model, d, &z_adj, n)?;
        let pen_x = cfg.ridge_x.penalty(&x_rec, d.features);
        let mut ne_x = NormalEquations::new(d.features);
        ne_x.add_rows(&x_rec, windows)?;
        let m_x = cfg.solver.solve(&ne_x, pen_x, &anchor_x, "M_x")?;

        let report = AdaptReport {
            n_windows: n,
            mean_ess: rum.ess.iter().sum::<f64>() / n as f64,
            min_ess: rum.ess.iter().copied().fold(f64::INFINITY, f64::min),
            min_temperature: rum.temperature.iter().copied().fold(f64::INFINITY, f64::min),
            lambda_z: (pen_z.weight, pen_z.bias),
            lambda_x: (pen_x.weight, pen_x.bias),
            mse_z_anchor: mse(&anchor_z.apply(&z_old)?, &rum.z_tilde),
            mse_z_fit: mse(&m_z.apply(&z_old)?, &rum.z_tilde),
            mse_x_anchor: mse(&anchor_x.apply(&x_rec)?, windows),
            mse_x_fit: mse(&m_x.apply(&x_rec)?, windows),
        };
        Ok((Adapter { m_z, m_x, generation: self.generation.saturating_add(1) }, report))
    }
}

fn mse(a: &[f32], b: &[f32]) -> f64 {
    let s: f64 = a.iter().zip(b).map(|(&x, &y)| ((x - y) as f64).powi(2)).sum();
    s / a.len().max(1) as f64
}

/// Adapts a frozen model to new windows (`n × (w·m)`, typically 1–4): ruminate targets, then
/// the two convex ridge fits (digest §6). Same as `Adapter::identity_for(model)?.adapt_again(…)`.
pub fn adapt<M: FrozenVae + ?Sized>(model: &M, windows: &[f32], cfg: &AdaptConfig) -> Result<Adapter, AdaptError> {
    adapt_with_report(model, windows, cfg).map(|(a, _)| a)
}

/// [`adapt`] with its diagnostics.
pub fn adapt_with_report<M: FrozenVae + ?Sized>(
    model: &M,
    windows: &[f32],
    cfg: &AdaptConfig,
) -> Result<(Adapter, AdaptReport), AdaptError> {
    Adapter::identity_for(model)?.adapt_again(model, windows, cfg)
}

/// Adapts from the first rows of a new period (row-major `n_rows × n_cols`, already scaled as
/// the model expects): cuts covering windows with `cfg.stride` and adapts `previous` (or the
/// identity). Errors: column count ≠ model features, fewer rows than one window, NaN/∞.
pub fn adapt_rows<M: FrozenVae + ?Sized>(
    model: &M,
    previous: Option<&Adapter>,
    rows: &[f32],
    n_cols: usize,
    cfg: &AdaptConfig,
) -> Result<(Adapter, AdaptReport), AdaptError> {
    cfg.validate()?;
    let d = model_dims(model)?;
    let (windows, _) = windows_from_rows(rows, n_cols, d, cfg.stride)?;
    match previous {
        Some(p) => p.adapt_again(model, &windows, cfg),
        None => Adapter::identity(d.latent, d.features).adapt_again(model, &windows, cfg),
    }
}

/// Adapted reconstruction `x̂ = M_x(μ_θ(M_z(μ_φ(x))))` of `n` windows (`n × (w·m)`).
pub fn reconstruct<M: FrozenVae + ?Sized>(
    model: &M,
    adapter: &Adapter,
    windows: &[f32],
) -> Result<Vec<f32>, AdaptError> {
    let d = model_dims(model)?;
    adapter.check_model(d)?;
    let n = check_windows(windows, d)?;
    let (mu, _) = encode_checked(model, d, windows, n)?;
    let z = adapter.m_z.apply(&mu)?;
    let x = decode_checked(model, d, &z, n)?;
    adapter.m_x.apply(&x)
}

/// What a time step's score measures (same meaning as in `lara-vae`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScoreKind {
    /// Gaussian negative log-likelihood `½ Σ_k [(x − x̂)²/σ²_k + log 2πσ²_k]`.
    #[default]
    Nll,
    /// Squared error `Σ_k (x − x̂)²`.
    Sse,
}

/// Per-element contribution factor: `½/σ²` (NLL) or 1 (SSE), and the NLL constant
/// `½ (log σ² + log 2π)` of each element of a window, both indexed by `t·m + k`.
fn score_factors<M: FrozenVae + ?Sized>(model: &M, d: ModelDims, kind: ScoreKind) -> (Vec<f32>, Vec<f64>) {
    let lv = model.output_log_var();
    let size = d.window_size();
    match kind {
        ScoreKind::Nll => (
            (0..size).map(|e| 0.5 * (-lv[e % lv.len()]).exp()).collect(),
            (0..size).map(|e| 0.5 * (lv[e % lv.len()] as f64 + std::f64::consts::TAU.ln())).collect(),
        ),
        ScoreKind::Sse => (vec![1.0; size], vec![0.0; size]),
    }
}

/// Per-window, per-time-step scores of the adapted model (`n × w`, row `b` = window `b`).
/// With the identity adapter these are the old model's scores, bit for bit.
pub fn score_windows<M: FrozenVae + ?Sized>(
    model: &M,
    adapter: &Adapter,
    windows: &[f32],
    kind: ScoreKind,
) -> Result<Vec<f64>, AdaptError> {
    let d = model_dims(model)?;
    let xh = reconstruct(model, adapter, windows)?;
    let (inv, cst) = score_factors(model, d, kind);
    let m = d.features;
    let size = d.window_size();
    let mut out = Vec::with_capacity(xh.len() / m);
    for (xw, hw) in windows.chunks_exact(size).zip(xh.chunks_exact(size)) {
        for t in 0..d.window {
            let mut s = 0.0f64;
            for e in t * m..(t + 1) * m {
                let r = xw[e] - hw[e];
                s += (r * r * inv[e]) as f64 + cst[e];
            }
            out.push(s);
        }
    }
    Ok(out)
}

/// One score per row of a series (row-major `n_rows × n_cols`), with the rule of
/// `lara_vae::score::score_rows`: covering windows with `stride`, each element's contribution
/// (`½ r²/σ²` or `r²`) averaged over the windows covering it, summed over features, plus the
/// NLL constant. Called on the adaptation rows with the new adapter, this gives the scores to
/// re-calibrate the threshold on (`lara_metrics::threshold::pot`).
pub fn score_rows<M: FrozenVae + ?Sized>(
    model: &M,
    adapter: &Adapter,
    rows: &[f32],
    n_cols: usize,
    stride: usize,
    kind: ScoreKind,
) -> Result<Vec<f64>, AdaptError> {
    let d = model_dims(model)?;
    adapter.check_model(d)?;
    let (windows, starts) = windows_from_rows(rows, n_cols, d, stride)?;
    let n_rows = rows.len() / n_cols;
    let m = d.features;
    let size = d.window_size();
    let (inv, cst) = score_factors(model, d, kind);
    let mut acc = vec![0.0f32; n_rows * m];
    let mut cnt = vec![0u32; n_rows];
    let mut row_const = vec![0.0f64; n_rows];
    // Per-feature variance: one constant per row; per-element: mean over covering windows.
    let per_element = model.output_log_var().len() != m;
    let step_const: f64 = cst[..m].iter().sum();
    // Chunks of windows bound the memory of one reconstruction call.
    let chunk = 128;
    for (ci, sts) in starts.chunks(chunk).enumerate() {
        let wins = &windows[ci * chunk * size..(ci * chunk + sts.len()) * size];
        let xh = reconstruct(model, adapter, wins)?;
        for (i, &s) in sts.iter().enumerate() {
            let xw = &wins[i * size..(i + 1) * size];
            let hw = &xh[i * size..(i + 1) * size];
            let aw = &mut acc[s * m..(s + d.window) * m];
            for j in 0..size {
                let r = xw[j] - hw[j];
                aw[j] += r * r * inv[j];
            }
            for t in 0..d.window {
                cnt[s + t] += 1;
                if per_element {
                    row_const[s + t] += cst[t * m..(t + 1) * m].iter().sum::<f64>();
                }
            }
        }
    }
    Ok((0..n_rows)
        .map(|t| {
            let c = cnt[t].max(1);
            let mut s = 0.0f64;
            for v in &acc[t * m..(t + 1) * m] {
                s += (*v / c as f32) as f64;
            }
            s + if per_element { row_const[t] / c as f64 } else { step_const }
        })
        .collect())
}

/// Step 4 of the method: the adapted model's per-row scores of the adaptation rows (the same
/// rows and stride as [`adapt_rows`]), to re-calibrate the threshold after adaptation, e.g.
/// `lara_metrics::threshold::pot(&scores, risk, init_level)`. Note that 43 rows give 43
/// scores: POT needs `init_level` low enough to leave peaks above the initial quantile
/// (`⌊init_level · n⌋ < n − 1`).
pub fn adaptation_scores<M: FrozenVae + ?Sized>(
    model: &M,
    adapter: &Adapter,
    rows: &[f32],
    n_cols: usize,
    cfg: &AdaptConfig,
    kind: ScoreKind,
) -> Result<Vec<f64>, AdaptError> {
    cfg.validate()?;
    score_rows(model, adapter, rows, n_cols, cfg.stride, kind)
}

/// Starts of the windows [`score_rows`] and [`adapt_rows`] cut (re-exported for callers that
/// align scores with rows).
pub fn window_starts(n_rows: usize, window: usize, stride: usize) -> Vec<usize> {
    cover_starts(n_rows, window, stride)
}
