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

/// Direction of the `M_x` regression (stage 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MxFit {
    /// The paper's reading: regress the new data on the reconstruction,
    /// `min Σ ‖M_x(x̃_t) − x_t‖²` (default).
    #[default]
    Forward,
    /// Errors-in-variables: regress the reconstruction on the new data,
    /// `min Σ ‖G(x_t) − x̃_t‖²` (ridge toward the inverse anchor), and use
    /// `M_x = G⁻¹` ([`AffineMap::regularised_inverse`]). The reconstruction `x̃` carries the
    /// old model's error, the observed `x` does not: the forward fit attenuates `W_x`
    /// toward 0 (slope `var(s)/(var(s) + var(e))`), badly so on 40 rows of a slow pattern
    /// whose own variance over the slice is small (toy: `W_bb = 0.73` for a true scale 1.8,
    /// and `0.73` instead of 1 when nothing changed). Still one closed-form least squares.
    /// Measured: it fixes the toy's level + scale change at K = 40 (6.2 → 2.7 nats/row) but
    /// overshoots when nothing changed (the reconstruction is smoother than the data, so
    /// `G` shrinks and `G⁻¹` inflates: 0.15 → 6.8) and loses on `lara bench adapt`
    /// (cross-entity K=40 VUS-PR 0.229 vs 0.256). Kept as an option.
    Reverse,
}

/// Where the `M_z` targets come from (stage 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ZTarget {
    /// The paper-literal reading: the ruminate block runs on the raw new windows `x` (through
    /// the current, possibly adapted, model) and `z̃ = E[z | x, x̄_{1:n}]`. The old model then
    /// explains the *changed* window as well as it can inside its own output space, so the
    /// change (a level or scale move) is partly absorbed into `z̃`, comes back through the
    /// decoder with a time-step-dependent shape, and `M_x` — one `m × m` map shared over time
    /// steps — cannot undo it. Measured: it made the toy's held-out scores worse than no
    /// adaptation (crate docs).
    Ruminate,
    /// Input-side correction (default): a preliminary `M_x⁰` is fitted with `M_z` at its
    /// anchor, the new windows are carried back into the old model's space per time step,
    /// `x' = (M_x⁰)⁻¹ x` ([`AffineMap::regularised_inverse`]), and the ruminate block
    /// estimates `z̃ = E[z | x', x̄'_{1:n}]` on `x'` with the base model: the latent the old
    /// model gives the window *once the change `M_x` models is removed*. `M_z` then maps
    /// `μ_φ(x)` (what the frozen encoder sees) onto it, and `M_x` is refitted on top.
    /// Same closed-form stages as the paper, only the ruminate block's input differs.
    #[default]
    Corrected,
    /// As [`ZTarget::Corrected`] with `z̃ = μ_φ(x')` (encoder mean of the corrected window, no
    /// importance sampling): an ablation of the ruminate block.
    CorrectedEncoder,
}

/// Hyper-parameters of [`adapt`]. Defaults: see the field docs and the crate docs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdaptConfig {
    /// Ridge of the `M_z` fit, in windows (default: the anchor weighs as 4 windows — as much
    /// as the [`AdaptConfig::ruminate_windows`] targets —, **bias included**: with 1–4 windows
    /// a free bias would copy the noisy `z̃` of a single window into every latent; see the
    /// crate docs for the evidence).
    pub ridge_z: Ridge,
    /// Ridge of the `M_x` fit, in time steps (default [`Ridge::per_dim`]`(2.0)`: `2m` steps;
    /// bias free).
    pub ridge_x: Ridge,
    /// `n`, look-alikes restored per window (default 8).
    pub n_lookalikes: usize,
    /// `N`, importance samples per window (default 64: the corrected targets did not move
    /// with 64 vs 256 on `lara bench adapt`, and the block is most of the adaptation time).
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
    /// Direction of the `M_x` fit (default [`MxFit::Forward`]).
    #[serde(default)]
    pub mx_fit: MxFit,
    /// Source of the `M_z` targets (default [`ZTarget::Corrected`]).
    #[serde(default)]
    pub z_target: ZTarget,
    /// Alternations of (targets → `M_z` → `M_x`) for the corrected targets (default 1; each
    /// pass re-runs the ruminate block on windows corrected with the latest `M_x`).
    #[serde(default = "one")]
    pub passes: usize,
    /// At most this many adaptation windows (evenly spaced, first and last included) go
    /// through the ruminate block and the `M_z` fit; `M_x` and the variance always use all
    /// windows. 0 = all. Default 4 (the paper's budget, "43 time slots" = 4 windows of 40):
    /// with windows at stride 1 the ruminate windows are nearly identical and the block's
    /// 256 decodes per window are most of the time.
    #[serde(default)]
    pub ruminate_windows: usize,
    /// Re-estimate the decoder variance of the adapted model (the NLL's per-feature `σ²`)
    /// from the adapted residuals of the adaptation rows, shrunk toward the current variance
    /// with this many pseudo-rows: `σ²_k = (R s²_k + κ σ²_old,k) / (R + κ)`, `R` = distinct
    /// rows. `None` keeps the model's variance (paper-literal). Default `Some(20.0)`.
    #[serde(default)]
    pub variance_prior_rows: Option<f64>,
    /// Keep the re-estimated variance at least the current one (per feature). The current
    /// variance was calibrated on held-out windows, the new one on in-sample residuals of the
    /// K adaptation rows, which are optimistic; default true (see the crate docs).
    #[serde(default)]
    pub variance_grow_only: bool,
}

fn one() -> usize {
    1
}

impl Default for AdaptConfig {
    fn default() -> Self {
        AdaptConfig {
            ridge_z: Ridge { pseudo_rows: 4.0, per_dim: false, penalise_bias: true },
            ridge_x: Ridge::per_dim(2.0),
            n_lookalikes: 8,
            n_samples: 64,
            proposal: Proposal::Pooled,
            seed: 0,
            min_ess: 0.0,
            stride: 1,
            chain: ChainPolicy::AnchorPrevious,
            solver: Solver::ClosedForm,
            mx_fit: MxFit::Forward,
            z_target: ZTarget::Corrected,
            passes: 1,
            ruminate_windows: 4,
            variance_prior_rows: Some(20.0),
            variance_grow_only: true,
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
        if self.passes == 0 {
            return Err(AdaptError::InvalidConfig("passes must be ≥ 1".into()));
        }
        if let Some(k) = self.variance_prior_rows {
            if !(k.is_finite() && k >= 0.0) {
                return Err(AdaptError::InvalidConfig(format!("variance_prior_rows must be finite and ≥ 0 (got {k})")));
            }
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
    /// Decoder log-variance of the adapted model (length `m` or `w·m`, as the model's), when
    /// it was re-estimated on the adaptation rows ([`AdaptConfig::variance_prior_rows`]);
    /// `None`: the model's own [`FrozenVae::output_log_var`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_log_var: Option<Vec<f32>>,
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
        Adapter {
            m_z: AffineMap::identity(latent_dim),
            m_x: AffineMap::identity(n_features),
            generation: 0,
            output_log_var: None,
        }
    }

    /// Identity maps sized for `model`.
    pub fn identity_for<M: FrozenVae + ?Sized>(model: &M) -> Result<Self, AdaptError> {
        let d = model_dims(model)?;
        Ok(Adapter::identity(d.latent, d.features))
    }

    /// Bytes of parameters: `4·(d_z² + d_z + m² + m)`, plus the re-estimated variance.
    pub fn param_bytes(&self) -> usize {
        4 * (self.m_z.n_params() + self.m_x.n_params() + self.output_log_var.as_ref().map_or(0, Vec::len))
    }

    /// The decoder log-variance the adapted model scores with: the re-estimated one, or the
    /// model's.
    pub fn log_var<'a, M: FrozenVae + ?Sized>(&'a self, model: &'a M) -> &'a [f32] {
        self.output_log_var.as_deref().unwrap_or_else(|| model.output_log_var())
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
        if let Some(lv) = &self.output_log_var {
            if (lv.len() != d.features && lv.len() != d.window_size()) || lv.iter().any(|v| !v.is_finite()) {
                return Err(AdaptError::AdapterMismatch(format!(
                    "adapter output log-variance has length {} (expected {} or {}) or a non-finite entry",
                    lv.len(),
                    d.features,
                    d.window_size()
                )));
            }
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
        self.adapt_again_rows(model, windows, None, cfg)
    }

    /// [`Adapter::adapt_again`] knowing how many distinct rows the windows cover (for the
    /// variance re-estimate; `None`: the windows are taken as disjoint).
    fn adapt_again_rows<M: FrozenVae + ?Sized>(
        &self,
        model: &M,
        windows: &[f32],
        distinct_rows: Option<usize>,
        cfg: &AdaptConfig,
    ) -> Result<(Adapter, AdaptReport), AdaptError> {
        cfg.validate()?;
        let d = model_dims(model)?;
        self.check_model(d)?;
        let n = check_windows(windows, d)?;
        let size = d.window_size();
        let current = AdaptedVae { base: model, adapter: self };
        let (anchor_z, anchor_x) = match cfg.chain {
            ChainPolicy::AnchorPrevious => (self.m_z.clone(), self.m_x.clone()),
            ChainPolicy::AnchorIdentity => (AffineMap::identity(d.latent), AffineMap::identity(d.features)),
        };
        let anchor_x_inv = anchor_x.regularised_inverse(1e-9)?;
        // Base encoder means of every window: the inputs of M_z, at fit and inference time.
        let z_all = encode_checked(model, d, windows, n)?.0;
        // The windows that go through the ruminate block and the M_z fit.
        let pick = spread(n, cfg.ruminate_windows);
        let gather = |src: &[f32], width: usize| -> Vec<f32> {
            pick.iter().flat_map(|&i| src[i * width..(i + 1) * width].iter().copied()).collect()
        };
        let z_in = gather(&z_all, d.latent);
        let fit_x = |m_z: &AffineMap| -> Result<(AffineMap, Vec<f32>, Penalty), AdaptError> {
            // M_x on (μ_θ(M_z μ_φ(x_b))_t → x_{b,t}), M_z fixed (convex, ambiguity 1).
            let x_rec = decode_checked(model, d, &m_z.apply(&z_all)?, n)?;
            let mut ne_x = NormalEquations::new(d.features);
            match cfg.mx_fit {
                MxFit::Forward => {
                    let pen_x = cfg.ridge_x.penalty(&x_rec, d.features);
                    ne_x.add_rows(&x_rec, windows)?;
                    Ok((cfg.solver.solve(&ne_x, pen_x, &anchor_x, "M_x")?, x_rec, pen_x))
                }
                MxFit::Reverse => {
                    let pen_x = cfg.ridge_x.penalty(windows, d.features);
                    ne_x.add_rows(windows, &x_rec)?;
                    let g = cfg.solver.solve(&ne_x, pen_x, &anchor_x_inv, "M_x")?;
                    Ok((g.regularised_inverse(1e-6)?, x_rec, pen_x))
                }
            }
        };
        let fit_z = |targets: &[f32]| -> Result<(AffineMap, Penalty), AdaptError> {
            let pen_z = cfg.ridge_z.penalty(&z_in, d.latent);
            let mut ne_z = NormalEquations::new(d.latent);
            ne_z.add_rows(&z_in, targets)?;
            Ok((cfg.solver.solve(&ne_z, pen_z, &anchor_z, "M_z")?, pen_z))
        };
        let block = cfg.ruminate_block();
        let picked = gather(windows, size);
        let (mut m_z, mut m_x, mut x_rec, mut pen_z, mut pen_x);
        let (mut z_tilde, mut ess, mut temperature);
        match cfg.z_target {
            ZTarget::Ruminate => {
                // Ruminate targets z̃ under the current model, on the raw windows.
                let rum = block.target_latents(&current, &picked)?;
                (z_tilde, ess, temperature) = (rum.z_tilde, rum.ess, rum.temperature);
                (m_z, pen_z) = fit_z(&z_tilde)?;
                (m_x, x_rec, pen_x) = fit_x(&m_z)?;
            }
            ZTarget::Corrected | ZTarget::CorrectedEncoder => {
                // Preliminary M_x with the current M_z (the previous adapter's, whatever the
                // ridge anchor), then alternate.
                m_z = self.m_z.clone();
                (m_x, x_rec, pen_x) = fit_x(&m_z)?;
                pen_z = cfg.ridge_z.penalty(&z_in, d.latent);
                (z_tilde, ess, temperature) = (Vec::new(), Vec::new(), Vec::new());
                for _ in 0..cfg.passes {
                    let back = m_x.regularised_inverse(1e-3)?;
                    let corrected = back.apply(&picked)?;
                    if cfg.z_target == ZTarget::Corrected {
                        let rum = block.target_latents(model, &corrected)?;
                        (z_tilde, ess, temperature) = (rum.z_tilde, rum.ess, rum.temperature);
                    } else {
                        z_tilde = encode_checked(model, d, &corrected, pick.len())?.0;
                        (ess, temperature) = (vec![f64::NAN; pick.len()], vec![1.0; pick.len()]);
                    }
                    (m_z, pen_z) = fit_z(&z_tilde)?;
                    (m_x, x_rec, pen_x) = fit_x(&m_z)?;
                }
            }
        }
        let fitted = m_x.apply(&x_rec)?;
        let output_log_var = match cfg.variance_prior_rows {
            None => self.output_log_var.clone(),
            Some(kappa) => Some(refit_log_var(
                current.output_log_var(),
                d,
                windows,
                &fitted,
                distinct_rows.unwrap_or(n * d.window),
                kappa,
                cfg.variance_grow_only,
            )),
        };
        let z_in_fit = m_z.apply(&z_in)?;
        let report = AdaptReport {
            n_windows: n,
            mean_ess: ess.iter().sum::<f64>() / ess.len().max(1) as f64,
            min_ess: ess.iter().copied().fold(f64::INFINITY, f64::min),
            min_temperature: temperature.iter().copied().fold(f64::INFINITY, f64::min),
            lambda_z: (pen_z.weight, pen_z.bias),
            lambda_x: (pen_x.weight, pen_x.bias),
            mse_z_anchor: mse(&anchor_z.apply(&z_in)?, &z_tilde),
            mse_z_fit: mse(&z_in_fit, &z_tilde),
            mse_x_anchor: mse(&anchor_x.apply(&x_rec)?, windows),
            mse_x_fit: mse(&fitted, windows),
        };
        Ok((Adapter { m_z, m_x, generation: self.generation.saturating_add(1), output_log_var }, report))
    }
}

/// `k` indices spread evenly over `0..n` (first and last included); all when `k == 0 || k ≥ n`.
fn spread(n: usize, k: usize) -> Vec<usize> {
    if k == 0 || k >= n {
        return (0..n).collect();
    }
    if k == 1 {
        return vec![n / 2];
    }
    let mut v: Vec<usize> = (0..k).map(|i| (i * (n - 1) + (k - 1) / 2) / (k - 1)).collect();
    v.dedup();
    v
}

/// Relative and absolute floors of a re-estimated variance (those `lara-vae` calibrates its
/// decoder variance with).
const VAR_FLOOR_REL: f64 = 0.05;
const VAR_FLOOR_ABS: f64 = 1e-4;

/// The adapted model's decoder log-variance: per feature `k`, the mean squared adapted
/// residual `s²_k` over the adaptation windows, shrunk toward the current variance `σ²_k`
/// with `kappa` pseudo-rows against `rows` distinct rows, floored like `lara-vae`'s
/// calibration. A per-element variance (`w·m`) keeps its shape over time steps: each element
/// is multiplied by its feature's ratio new / old (mean over steps).
fn refit_log_var(
    old_lv: &[f32],
    d: ModelDims,
    windows: &[f32],
    fitted: &[f32],
    rows: usize,
    kappa: f64,
    grow_only: bool,
) -> Vec<f32> {
    let m = d.features;
    let mut ss = vec![0.0f64; m];
    let mut cnt = 0usize;
    for (x, h) in windows.chunks_exact(m).zip(fitted.chunks_exact(m)) {
        for k in 0..m {
            let r = (x[k] - h[k]) as f64;
            ss[k] += r * r;
        }
        cnt += 1;
    }
    let mut old = vec![0.0f64; m];
    for (e, &l) in old_lv.iter().enumerate() {
        old[e % m] += (l as f64).exp();
    }
    let per = (old_lv.len() / m).max(1) as f64;
    old.iter_mut().for_each(|v| *v /= per);
    let r = rows.max(1) as f64;
    let mut new: Vec<f64> = (0..m).map(|k| (r * ss[k] / cnt.max(1) as f64 + kappa * old[k]) / (r + kappa)).collect();
    let floor = (VAR_FLOOR_REL * new.iter().sum::<f64>() / m as f64).max(VAR_FLOOR_ABS);
    new.iter_mut().for_each(|v| *v = v.max(floor));
    if grow_only {
        new.iter_mut().zip(&old).for_each(|(v, &o)| *v = v.max(o));
    }
    old_lv.iter().enumerate().map(|(e, &l)| (l as f64 + (new[e % m] / old[e % m]).ln()) as f32).collect()
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
    let n_rows = rows.len() / n_cols;
    match previous {
        Some(p) => p.adapt_again_rows(model, &windows, Some(n_rows), cfg),
        None => Adapter::identity(d.latent, d.features).adapt_again_rows(model, &windows, Some(n_rows), cfg),
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

/// What a time step's score measures (`lara-vae` re-exports this type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScoreKind {
    /// Gaussian negative log-likelihood `½ Σ_k [(x − x̂)²/σ²_k + log 2πσ²_k]`.
    #[default]
    Nll,
    /// Squared error `Σ_k (x − x̂)²`.
    Sse,
}

impl std::str::FromStr for ScoreKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "nll" => Ok(ScoreKind::Nll),
            "sse" | "mse" => Ok(ScoreKind::Sse),
            _ => Err(format!("unknown score kind {s:?} (expected nll or sse)")),
        }
    }
}

impl std::fmt::Display for ScoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ScoreKind::Nll => "nll",
            ScoreKind::Sse => "sse",
        })
    }
}

/// Per-element contribution factor: `½/σ²` (NLL) or 1 (SSE), and the NLL constant
/// `½ (log σ² + log 2π)` of each element of a window, both indexed by `t·m + k`.
fn score_factors(lv: &[f32], d: ModelDims, kind: ScoreKind) -> (Vec<f32>, Vec<f64>) {
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
    let (inv, cst) = score_factors(adapter.log_var(model), d, kind);
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
    let (inv, cst) = score_factors(adapter.log_var(model), d, kind);
    let mut acc = vec![0.0f32; n_rows * m];
    let mut cnt = vec![0u32; n_rows];
    let mut row_const = vec![0.0f64; n_rows];
    // Per-feature variance: one constant per row; per-element: mean over covering windows.
    let per_element = adapter.log_var(model).len() != m;
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
