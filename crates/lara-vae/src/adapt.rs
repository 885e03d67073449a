//! LARA on the detector: adapting a trained [`Detector`] to a new normal pattern from a few
//! rows, without its training data (crate `lara-adapt` holds the method; this module plugs
//! the VAE into it and keeps the adapter and its lineage in the model file).
//!
//! Policy for chained changes: an adapted model adapts again on top of its adapter
//! ([`lara_adapt::Adapter::adapt_again`], ridge anchored at the previous adapter); the base
//! VAE weights and scaler are never changed, so every generation stays expressible as one
//! pair of affine maps on the base model, the file size stays constant, and the parent file
//! is the rollback point (its path and SHA-256 are recorded).

use lara_adapt::{AdaptConfig, AdaptReport, Adapter, FrozenVae};
use lara_core::Series;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

use crate::causal::nll_constant;
use crate::detector::{fit_threshold, Detector, ThresholdInfo};
use crate::vae::Vae;
use crate::VaeError;

/// The frozen VAE scoring with another decoder log-variance (an adapted pattern's), without
/// copying its weights.
struct WithLogVar<'a> {
    vae: &'a Vae,
    log_var: &'a [f32],
}

impl FrozenVae for WithLogVar<'_> {
    fn window_len(&self) -> usize {
        self.vae.window()
    }
    fn n_features(&self) -> usize {
        Vae::n_features(self.vae)
    }
    fn latent_dim(&self) -> usize {
        self.vae.latent()
    }
    fn encode(&self, windows: &[f32], n: usize) -> (Vec<f32>, Vec<f32>) {
        Vae::encode(self.vae, windows, n)
    }
    fn decode_mean(&self, z: &[f32], n: usize) -> Vec<f32> {
        Vae::decode_mean(self.vae, z, n)
    }
    fn output_log_var(&self) -> &[f32] {
        self.log_var
    }
}

impl FrozenVae for Vae {
    fn window_len(&self) -> usize {
        self.window()
    }
    fn n_features(&self) -> usize {
        Vae::n_features(self)
    }
    fn latent_dim(&self) -> usize {
        self.latent()
    }
    fn encode(&self, windows: &[f32], n: usize) -> (Vec<f32>, Vec<f32>) {
        Vae::encode(self, windows, n)
    }
    fn decode_mean(&self, z: &[f32], n: usize) -> Vec<f32> {
        Vae::decode_mean(self, z, n)
    }
    fn output_log_var(&self) -> &[f32] {
        self.obs_logvar()
    }
}

/// The model a new version was adapted from: the rollback point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParentRef {
    /// The parent file as it was named when adapting.
    pub path: String,
    /// SHA-256 (hex) of the parent file's bytes.
    pub sha256: String,
}

/// What makes a model an adapted version: the LARA adapter, where it came from, and the
/// threshold the base model had.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adaptation {
    pub adapter: Adapter,
    pub config: AdaptConfig,
    pub report: AdaptReport,
    /// Rows of the new pattern the adapter was fitted on.
    pub rows: usize,
    pub parent: Option<ParentRef>,
    /// The threshold of the base model, before re-calibration.
    pub base_threshold: ThresholdInfo,
}

impl Adaptation {
    /// Checks the adapter's shapes against the VAE (used when loading a file).
    pub fn check(&self, vae: &Vae) -> Result<(), String> {
        let (d, m) = (vae.latent(), Vae::n_features(vae));
        if self.adapter.m_z.dim != d || self.adapter.m_x.dim != m {
            return Err(format!(
                "adapter shapes (M_z {0}×{0}, M_x {1}×{1}) do not fit the VAE (latent {d}, {m} features)",
                self.adapter.m_z.dim, self.adapter.m_x.dim
            ));
        }
        self.adapter.m_z.validate().and_then(|_| self.adapter.m_x.validate()).map_err(|e| format!("adapter: {e}"))
    }
}

/// The current threshold moved to a new decoder variance: `value − C_old + C_new` with
/// `C = ½ Σ_k (log σ²_k + log 2π)` the NLL constant of a row. `None` for a threshold that is
/// not finite.
fn transfer_threshold(current: &ThresholdInfo, old_lv: &[f32], new_lv: &[f32]) -> Option<f64> {
    let t = current.value - nll_constant(old_lv) + nll_constant(new_lv);
    t.is_finite().then_some(t)
}

/// SHA-256 (hex) of a file's bytes.
pub fn file_sha256(path: &Path) -> Result<String, VaeError> {
    let bytes = std::fs::read(path).map_err(|e| VaeError::Io { path: path.to_path_buf(), source: e })?;
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}

impl Detector {
    /// LARA (WWW 2024): a new version of this detector adapted to the normal pattern of
    /// `new` (every row of it is new-pattern data; the caller slices the first K rows). The
    /// VAE and scaler stay frozen; the ruminate block and the two convex fits produce
    /// `M_z`, `M_x` ([`lara_adapt::adapt_rows`]) and, by default, a re-estimated decoder
    /// variance, which the adapted detector's VAE then scores with (its weights are
    /// untouched; the adapter keeps the same variance in `output_log_var`). The threshold is
    /// re-calibrated on the adapted scores of `new`: POT when the scores carry a tail fit
    /// (≈ 100 rows and more); otherwise (K ≈ 40, where the old fallback was the maximum of K
    /// in-sample scores, far below the held-out new-normal scores) the current threshold
    /// moved to the new variance (`"transfer"`: `value − C_old + C_new`, `C` the NLL constant
    /// `½ Σ_k log 2πσ²_k`), floored at that maximum. `parent` is recorded as the rollback
    /// point.
    pub fn adapt(
        &self,
        new: &Series,
        cfg: &AdaptConfig,
        parent: Option<ParentRef>,
    ) -> Result<(Detector, AdaptReport), VaeError> {
        let scaled = self.scale(new)?;
        self.adapt_scaled(&scaled, new.n_rows, cfg, parent)
    }

    /// The LARA step of [`Detector::adapt_scaled`] for `current` (an adaptation of this
    /// detector's frozen VAE, or none) without copying the VAE: the new [`Adaptation`] (chained
    /// on `current`'s adapter) and `online` moved by the change of the NLL constant (module
    /// docs of `causal`). An online monitor keeps many patterns on one shared base model and
    /// adapts them this way. The ruminate likelihood uses `current`'s variance, as an adapted
    /// detector's VAE carries it.
    pub fn adapt_pattern(
        &self,
        current: Option<&Adaptation>,
        online: Option<&crate::causal::OnlineCalibration>,
        scaled: &[f32],
        n_rows: usize,
        cfg: &AdaptConfig,
        parent: Option<ParentRef>,
    ) -> Result<(Adaptation, Option<crate::causal::OnlineCalibration>), VaeError> {
        let m = self.vae.n_features();
        let w = self.vae.window();
        if n_rows == 0 || scaled.len() != n_rows * m {
            return Err(VaeError::Invalid(format!("adaptation needs at least one row of {m} values")));
        }
        if let Some(i) = scaled.iter().position(|v| !v.is_finite()) {
            return Err(VaeError::Invalid(format!("non-finite value at row {}, column {}", i / m + 1, i % m + 1)));
        }
        let padded;
        let rows: &[f32] = if n_rows < w {
            padded = crate::score::left_pad(scaled, m, w);
            &padded
        } else {
            scaled
        };
        let old_lv = crate::causal::pattern_log_var(&self.vae, current);
        let frozen = WithLogVar { vae: &self.vae, log_var: old_lv };
        let previous = current.map(|a| &a.adapter);
        let (adapter, report) = lara_adapt::adapt_rows(&frozen, previous, rows, m, cfg)
            .map_err(|e| VaeError::Invalid(format!("adaptation: {e}")))?;
        let base_threshold = match current {
            Some(a) => a.base_threshold.clone(),
            None => self.meta.threshold.clone(),
        };
        let new_lv = match &adapter.output_log_var {
            Some(lv) if lv.len() == old_lv.len() => lv.as_slice(),
            _ => old_lv,
        };
        let online = match self.meta.options.score_kind {
            crate::ScoreKind::Nll => online.map(|o| o.shifted(nll_constant(new_lv) - nll_constant(old_lv))),
            crate::ScoreKind::Sse => online.cloned(),
        };
        let adaptation = Adaptation { adapter, config: *cfg, report, rows: n_rows, parent, base_threshold };
        Ok((adaptation, online))
    }

    /// [`Detector::adapt`] on rows already scaled by the model's scaler (`n_rows × m`).
    /// Fewer rows than one window are left-padded with the first row (the padding the
    /// scorers use at the start of a series or segment), so a default model (window 100)
    /// adapts from 40 slots: the one adaptation window then holds the 40 new rows behind
    /// 60 copies of the first.
    pub fn adapt_scaled(
        &self,
        scaled: &[f32],
        n_rows: usize,
        cfg: &AdaptConfig,
        parent: Option<ParentRef>,
    ) -> Result<(Detector, AdaptReport), VaeError> {
        let (adaptation, online) =
            self.adapt_pattern(self.meta.adaptation.as_ref(), self.meta.online.as_ref(), scaled, n_rows, cfg, parent)?;
        let report = adaptation.report.clone();
        let mut out = self.clone();
        // The adapted model scores with the re-estimated decoder variance when the adapter
        // has one (the scorer reads the VAE's variance; the weights stay as they are).
        if let Some(lv) = &adaptation.adapter.output_log_var {
            if lv.len() == self.vae.obs_logvar().len() {
                out.vae.set_obs_logvar(lv.clone());
            }
        }
        // Channel-normalised scores carry no NLL constant: the threshold then carries over as is
        // (the VAE's own one when the base model adds value histograms, which an adapted
        // model drops).
        let transferred = if self.meta.channel_scale.is_some() {
            let base = self.meta.marginal.as_ref().map_or(self.meta.threshold.value, |m| m.vae_threshold);
            Some(base).filter(|t| t.is_finite())
        } else {
            transfer_threshold(&self.meta.threshold, self.vae.obs_logvar(), out.vae.obs_logvar())
        };
        out.meta.adaptation = Some(adaptation);
        out.meta.online = online;
        let stride = self.meta.options.effective_stride();
        let steps = out.score_scaled(scaled, n_rows, stride)?;
        let mut thr = fit_threshold(&steps.score, self.meta.options.risk, self.meta.options.init_level)?;
        // With K ≈ 40 scores POT has no tail to fit and the fallback quantile is the maximum
        // of K in-sample scores (too low: most held-out new-normal rows exceed it). When the
        // variance was re-estimated, the adapted per-feature contributions ½ r²/σ² of new
        // normal rows have the scale the base model's had on its training data, so the base
        // threshold carries over once the NLL constant ½ Σ_k log 2πσ²_k is swapped
        // (`transfer_threshold`); the maximum of the adaptation scores stays a floor.
        if self.meta.options.score_kind == crate::ScoreKind::Nll
            && thr.method != "pot"
            && cfg.variance_prior_rows.is_some()
        {
            if let Some(t) = transferred {
                if t > thr.value {
                    thr.value = t;
                    thr.method = "transfer".into();
                }
            }
        }
        out.meta.threshold = thr;
        Ok((out, report))
    }
}
