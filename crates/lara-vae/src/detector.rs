//! The deployable detector: scaler + VAE + label-free POT threshold, trained from a
//! [`Series`] and stored in one `.lara` file.

use std::path::Path;

use lara_core::{Scaler, ScalerKind, Series};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::file::{self, FORMAT_VERSION};
use crate::marginal::{self as marginal_score, MarginalModel};
use crate::score::{quantile, score_rows, ScoreKind, StepScores};
use crate::train::{train_vae, train_vae_from, Progress, TrainConfig, TrainReport};
use crate::vae::{Vae, VaeConfig};
use crate::VaeError;

/// Default knee of the causal per-feature contributions (a 4σ residual: ½·4² nats).
pub const DEFAULT_CONTRIB_KNEE: f32 = 8.0;

/// Default knee of the offline per-element contributions (an 8σ residual: ½·8² nats); chosen
/// with file-level cross-validation (crate docs).
pub const DEFAULT_SCORE_KNEE: f32 = 32.0;

/// Default [`FitOptions::channel_quantile`], chosen with file-level cross-validation (crate docs).
pub const DEFAULT_CHANNEL_QUANTILE: f64 = 0.99;

/// Default [`FitOptions::channel_floor`] (nats).
pub const DEFAULT_CHANNEL_FLOOR: f32 = 1.0;

/// Default [`FitOptions::marginal_bins`], chosen with file-level cross-validation (crate docs).
pub const DEFAULT_MARGINAL_BINS: usize = 50;

/// Most bins a value histogram may have (each costs 4 bytes in the model file).
pub const MAX_MARGINAL_BINS: usize = 100_000;

/// Default margin of the threshold over the training scores (crate docs).
pub const DEFAULT_THRESHOLD_MARGIN: f64 = 0.25;

/// Everything `fit` needs beyond the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FitOptions {
    pub window: usize,
    pub scaler: ScalerKind,
    pub train: TrainConfig,
    pub score_kind: ScoreKind,
    /// Default scoring stride (0 = `window / 2`, at least 1).
    pub score_stride: usize,
    /// Centred moving average of the row scores (and contributions) over this many rows;
    /// `None` = the window length (each row then reflects the windows around it, like
    /// window-level scoring), `Some(0)` or `Some(1)` = none. See [`crate::score::smooth`].
    pub smooth: Option<usize>,
    /// POT risk level `q` (probability of exceeding the threshold under the fitted tail).
    pub risk: f64,
    /// POT initial quantile level (e.g. 0.98: the top 2 % of training scores are the peaks).
    pub init_level: f64,
    /// Margin `α` of the threshold over the training scores: the threshold is at least
    /// `max + α (max − median)` of them ([`raise_to_training_margin`]), so a pattern that
    /// recurs as it was seen in training (a daily batch job's spike) is not alarmed. 0: POT only.
    pub threshold_margin: f64,
    /// Trailing mean of the *causal* scores over this many rows (`None`: a quarter window).
    /// See [`crate::causal`].
    pub causal_smooth: Option<usize>,
    /// Knee `κ` of the per-feature contributions of causal scores (nats): above it a
    /// contribution grows logarithmically, `κ (1 + ln(c/κ))`, so one channel with a tiny
    /// training variance (a rarely flipping command flag) cannot drown the others.
    /// `None`: linear. See [`crate::causal`].
    pub contrib_knee: Option<f32>,
    /// Knee `κ` of the per-element contributions of the offline (window) scores, as
    /// `contrib_knee` for the causal ones. `None`: linear.
    pub score_knee: Option<f32>,
    /// Newest steps of each causal window whose NLL makes the raw score (`None`: 1, the row
    /// itself). See [`crate::causal`].
    pub causal_steps: Option<usize>,
    /// Per-channel normalisation of the offline scores: channel `k`'s contribution (after the
    /// knee, before smoothing) is divided by `d_k = max(Q_q(c_k on the training rows), floor)`,
    /// and a row's score is `Σ_k c_k / d_k` (no NLL constant). A channel is judged against its
    /// own training spread: a command flag that flips now and then in training cannot
    /// outweigh a quiet telemetry channel that leaves its range. `None`: off (the score is the
    /// row's NLL). Models from before this option carry no divisors and score as before.
    pub channel_quantile: Option<f64>,
    /// Floor (nats) of the per-channel divisor of `channel_quantile`: a channel that was
    /// reconstructed almost perfectly in training is not amplified beyond its raw NLL.
    pub channel_floor: f32,
    /// Bins of the per-channel value histograms of the second opinion beside the VAE
    /// ([`crate::marginal`]): how rare each continuous channel's value is on the training
    /// rows. Used on series with at least two columns; `None` or `Some(0)`: off.
    pub marginal_bins: Option<usize>,
    /// Weight of that second opinion: at 1 it counts as much as the VAE's score at their
    /// training 0.99-quantiles.
    pub marginal_weight: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            window: 100,
            scaler: ScalerKind::ZScore,
            train: TrainConfig::default(),
            score_kind: ScoreKind::Nll,
            score_stride: 0,
            smooth: None,
            risk: 1e-3,
            init_level: 0.98,
            threshold_margin: DEFAULT_THRESHOLD_MARGIN,
            causal_smooth: None,
            contrib_knee: Some(DEFAULT_CONTRIB_KNEE),
            score_knee: Some(DEFAULT_SCORE_KNEE),
            causal_steps: None,
            channel_quantile: Some(DEFAULT_CHANNEL_QUANTILE),
            channel_floor: DEFAULT_CHANNEL_FLOOR,
            marginal_bins: Some(DEFAULT_MARGINAL_BINS),
            marginal_weight: 1.0,
        }
    }
}

impl FitOptions {
    /// The effective smoothing length.
    pub fn effective_smooth(&self) -> usize {
        self.smooth.unwrap_or(self.window)
    }

    /// The effective scoring stride for window `w`.
    pub fn effective_stride(&self) -> usize {
        if self.score_stride == 0 {
            (self.window / 2).max(1)
        } else {
            self.score_stride
        }
    }
}

/// The label-free threshold stored with the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdInfo {
    pub value: f64,
    /// `"pot"`; `"quantile"` when too few training scores exist for a tail fit.
    pub method: String,
    pub risk: f64,
    pub init_level: f64,
    /// Number of training rows whose scores were used.
    pub n_scores: usize,
    /// The margin `α` over the training scores ([`raise_to_training_margin`]); 0 in files
    /// from before it existed.
    #[serde(default)]
    pub margin: f64,
}

/// JSON header of a model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    pub format_version: u32,
    pub producer: String,
    pub columns: Vec<String>,
    pub scaler: Scaler,
    pub arch: VaeConfig,
    pub options: FitOptions,
    pub threshold: ThresholdInfo,
    pub train_rows: usize,
    /// SHA-256 (hex) of the training prefix: column names and `f32` little-endian values.
    pub train_data_sha256: String,
    pub report: TrainReport,
    /// Present when this model is an adapted version of another (LARA): the adapter applied
    /// on top of the frozen VAE and a pointer to the parent model. See [`crate::adapt`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptation: Option<crate::adapt::Adaptation>,
    /// Tail models of the causal scores on the training rows (`p_anomaly`, online
    /// threshold; [`crate::causal`]). Absent in files from before the online monitor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<crate::causal::OnlineCalibration>,
    /// Per-channel divisors of the offline contributions (`FitOptions::channel_quantile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_scale: Option<Vec<f32>>,
    /// The value histograms added to the VAE's offline score (`FitOptions::marginal_bins`).
    /// An adapted model does not use them: they describe the pattern before the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marginal: Option<MarginalModel>,
}

/// A trained detector.
#[derive(Debug, Clone, PartialEq)]
pub struct Detector {
    pub meta: ModelMeta,
    pub vae: Vae,
}

/// Result of scoring a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// One score per input row (higher = more anomalous).
    pub score: Vec<f64>,
    pub threshold: f64,
    /// `score > threshold`.
    pub is_anomaly: Vec<bool>,
    /// Per row, the indices of (up to) the 3 columns contributing most to the score.
    pub top_dims: Vec<Vec<usize>>,
    /// The underlying per-row, per-feature contributions.
    pub steps: StepScores,
}

/// SHA-256 (hex) of the training prefix of `series`.
pub fn training_hash(series: &Series) -> String {
    let mut h = Sha256::new();
    for c in &series.columns {
        h.update((c.len() as u64).to_le_bytes());
        h.update(c.as_bytes());
    }
    let m = series.n_cols();
    for v in &series.values[..series.train_end.min(series.n_rows) * m] {
        h.update(v.to_le_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Label-free threshold from training scores: POT (peaks over threshold, generalised Pareto
/// tail) at risk `risk` with initial level `init_level`.
pub fn fit_threshold(train_scores: &[f64], risk: f64, init_level: f64) -> Result<ThresholdInfo, VaeError> {
    let v = crate::pot::pot(train_scores, risk, init_level)?;
    Ok(ThresholdInfo { value: v.0, method: v.1.into(), risk, init_level, n_scores: train_scores.len(), margin: 0.0 })
}

/// Raises `info` to at least `max + α (max − median)` of the (finite) training scores; the
/// method becomes `"train-margin"` when that floor is the larger. The recurring normal
/// patterns of a series (a nightly job's spike) score in test within about a third of their
/// training range of what they scored in training; POT's tail, fitted on a few such
/// plateaus, often lands just above the training maximum and alarms on each recurrence.
/// The margin was chosen with file-level cross-validation (crate docs).
pub fn raise_to_training_margin(info: &mut ThresholdInfo, train_scores: &[f64], margin: f64) {
    info.margin = margin;
    if margin <= 0.0 {
        return;
    }
    let mut s: Vec<f64> = train_scores.iter().copied().filter(|v| v.is_finite()).collect();
    if s.is_empty() {
        return;
    }
    s.sort_by(f64::total_cmp);
    let (max, median) = (s[s.len() - 1], s[s.len() / 2]);
    let floor = max + margin * (max - median);
    if floor > info.value {
        info.value = floor;
        info.method = "train-margin".into();
    }
}

/// The model's label-free threshold from training scores: POT at `opts.risk` /
/// `opts.init_level` ([`fit_threshold`]), raised by the margin `opts.threshold_margin`
/// ([`raise_to_training_margin`]).
pub fn label_free_threshold(train_scores: &[f64], opts: &FitOptions) -> Result<ThresholdInfo, VaeError> {
    let mut t = fit_threshold(train_scores, opts.risk, opts.init_level)?;
    raise_to_training_margin(&mut t, train_scores, opts.threshold_margin);
    Ok(t)
}

impl Detector {
    /// Fits scaler, VAE and threshold on the training prefix `[0, series.train_end)`.
    pub fn fit(series: &Series, opts: &FitOptions, progress: &mut dyn FnMut(Progress)) -> Result<Self, VaeError> {
        let m = series.n_cols();
        if series.values.len() != series.n_rows * m {
            return Err(VaeError::Invalid("series values are not n_rows × n_cols".into()));
        }
        let train_end = if series.train_end == 0 { series.n_rows } else { series.train_end.min(series.n_rows) };
        if !(opts.risk > 0.0 && opts.risk < 1.0 && opts.init_level > 0.0 && opts.init_level < 1.0) {
            return Err(VaeError::Invalid("risk and init_level must lie in (0, 1)".into()));
        }
        if !(opts.marginal_weight >= 0.0 && opts.marginal_weight.is_finite()) {
            return Err(VaeError::Invalid(format!("marginal_weight must be ≥ 0 (got {})", opts.marginal_weight)));
        }
        if opts.marginal_bins.is_some_and(|b| b > MAX_MARGINAL_BINS) {
            return Err(VaeError::Invalid(format!(
                "marginal_bins must be at most {MAX_MARGINAL_BINS} (got {})",
                opts.marginal_bins.unwrap_or(0)
            )));
        }
        if let Some(q) = opts.channel_quantile {
            if !((0.0..=1.0).contains(&q) && opts.channel_floor > 0.0 && opts.channel_floor.is_finite()) {
                return Err(VaeError::Invalid(format!(
                    "channel_quantile must lie in [0, 1] and channel_floor be > 0 (got {q} and {})",
                    opts.channel_floor
                )));
            }
        }
        let mut train_series = series.clone();
        train_series.train_end = train_end;
        let scaler = Scaler::fit(&train_series, opts.scaler);
        let mut scaled = series.values[..train_end * m].to_vec();
        scaler.transform(&mut scaled);
        let (vae, report) = train_vae(&scaled, m, train_end, opts.window, &opts.train, progress)?;
        let stride = opts.effective_stride();
        let mut tr = score_rows(&vae, &scaled, train_end, stride, opts.score_kind, opts.score_knee);
        let channel_scale = opts.channel_quantile.map(|q| crate::score::channel_scale(&tr, q, opts.channel_floor));
        if let Some(cs) = &channel_scale {
            crate::score::normalise_channels(&mut tr, cs);
        }
        crate::score::smooth(&mut tr, opts.effective_smooth());
        let mut threshold = label_free_threshold(&tr.score, opts)?;
        let marginal = fit_marginal(&mut tr, &scaled, opts, threshold.value);
        if marginal.is_some() {
            threshold = label_free_threshold(&tr.score, opts)?;
        }
        let meta = ModelMeta {
            // Older readers score older kinds of models correctly (`file::FORMAT_VERSION`).
            format_version: match (&marginal, &channel_scale) {
                (Some(_), _) => FORMAT_VERSION,
                (None, Some(_)) => 2,
                (None, None) => 1,
            },
            producer: format!("lara-vae {}", env!("CARGO_PKG_VERSION")),
            columns: series.columns.clone(),
            scaler,
            arch: vae.config().clone(),
            options: opts.clone(),
            threshold,
            train_rows: train_end,
            train_data_sha256: training_hash(&train_series),
            report,
            adaptation: None,
            online: None,
            channel_scale,
            marginal,
        };
        let mut det = Detector { meta, vae };
        let smooth = det.causal_smooth();
        let cs = det.score_causal_scaled(&scaled, train_end, smooth)?;
        det.meta.online = det.calibrate_online(&cs, smooth).ok();
        Ok(det)
    }

    /// Fine-tuning baseline for LARA: continues training **all** VAE weights on every row of
    /// `new` (scaled with the frozen scaler), starting from the current weights, with `cfg`'s
    /// optimiser settings; re-calibrates the threshold on `new`'s scores. An adapted model
    /// loses its adapter (the weights themselves move).
    pub fn fine_tune(&self, new: &Series, cfg: &TrainConfig) -> Result<Detector, VaeError> {
        let scaled = self.scale(new)?;
        let window = self.meta.options.window;
        let (vae, report) =
            train_vae_from(Some(&self.vae), &scaled, new.n_cols(), new.n_rows, window, cfg, &mut |_| {})?;
        let mut out = Detector { meta: self.meta.clone(), vae };
        out.meta.adaptation = None;
        // The histograms describe the old data; a retrain on the new rows starts without them.
        out.meta.marginal = None;
        out.meta.report = report;
        let steps = out.score_scaled(&scaled, new.n_rows, self.meta.options.effective_stride())?;
        out.meta.threshold = label_free_threshold(&steps.score, &self.meta.options)?;
        Ok(out)
    }

    /// Checks that `series` has the model's columns (same names, same order).
    pub fn check_columns(&self, series: &Series) -> Result<(), VaeError> {
        let want = &self.meta.columns;
        let got = &series.columns;
        if want == got {
            return Ok(());
        }
        let detail = if want.len() != got.len() {
            format!("the model has {} columns, the data has {}", want.len(), got.len())
        } else {
            let i = want.iter().zip(got).position(|(a, b)| a != b).unwrap_or(0);
            format!("column {} is {:?} in the model but {:?} in the data", i + 1, want[i], got[i])
        };
        Err(VaeError::ColumnMismatch { detail })
    }

    /// Scales `series` with the model's scaler.
    pub fn scale(&self, series: &Series) -> Result<Vec<f32>, VaeError> {
        self.check_columns(series)?;
        if series.values.len() != series.n_rows * series.n_cols() {
            return Err(VaeError::Invalid("series values are not n_rows × n_cols".into()));
        }
        let v = self.meta.scaler.transformed(series);
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(VaeError::Invalid(format!(
                "non-finite value at row {}, column {:?}",
                i / series.n_cols(),
                series.columns[i % series.n_cols()]
            )));
        }
        Ok(v)
    }

    /// Scores every row of `series` (`stride = None` uses the model's default).
    pub fn detect(&self, series: &Series, stride: Option<usize>) -> Result<Detection, VaeError> {
        let scaled = self.scale(series)?;
        let stride = stride.unwrap_or_else(|| self.meta.options.effective_stride()).max(1);
        let steps = self.score_scaled(&scaled, series.n_rows, stride)?;
        let thr = self.meta.threshold.value;
        let is_anomaly = steps.score.iter().map(|&s| s > thr).collect();
        let top_dims = (0..series.n_rows).map(|t| steps.top_dims(t, 3)).collect();
        Ok(Detection { score: steps.score.clone(), threshold: thr, is_anomaly, top_dims, steps })
    }

    /// Row scores of already-scaled values (`n_rows × m`): the VAE's reconstruction, through
    /// the adapter when the model is adapted, then the model's smoothing.
    pub fn score_scaled(&self, scaled: &[f32], n_rows: usize, stride: usize) -> Result<StepScores, VaeError> {
        let kind = self.meta.options.score_kind;
        let knee = self.meta.options.score_knee;
        let mut steps = match &self.meta.adaptation {
            None => score_rows(&self.vae, scaled, n_rows, stride, kind, knee),
            Some(a) => crate::score::score_rows_with(&self.vae, scaled, n_rows, stride, kind, knee, &|x, _n| {
                // Dimensions are checked when the adapter is attached or loaded; a failure
                // here can only come from non-finite model output, which then shows as NaN
                // scores and is reported below.
                lara_adapt::reconstruct(&self.vae, &a.adapter, x).unwrap_or_else(|_| vec![f32::NAN; x.len()])
            }),
        };
        if let Some(cs) = &self.meta.channel_scale {
            crate::score::normalise_channels(&mut steps, cs);
        }
        if let (Some(m), None) = (&self.meta.marginal, &self.meta.adaptation) {
            marginal_score::add_to(&mut steps, &m.channels, m.lambda, scaled);
        }
        crate::score::smooth(&mut steps, self.meta.options.effective_smooth());
        if let Some(t) = steps.score.iter().position(|s| !s.is_finite()) {
            return Err(VaeError::Invalid(format!("the model produced a non-finite score at row {}", t + 1)));
        }
        Ok(steps)
    }

    /// The model file bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, VaeError> {
        let header = serde_json::to_vec(&self.meta).map_err(|e| VaeError::Invalid(format!("header: {e}")))?;
        file::to_bytes(self.meta.format_version, &header, &self.vae)
    }

    /// Saves atomically to `path`.
    pub fn save(&self, path: &Path) -> Result<(), VaeError> {
        file::write_atomic(path, &self.to_bytes()?)
    }

    /// Parses model file bytes (`path` is only used in error messages).
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self, VaeError> {
        let c = file::from_bytes(path, bytes)?;
        let meta: ModelMeta = serde_json::from_slice(&c.header)
            .map_err(|e| VaeError::Corrupt { path: path.to_path_buf(), detail: format!("header: {e}") })?;
        if !(1..=FORMAT_VERSION).contains(&meta.format_version) {
            return Err(VaeError::WrongVersion {
                path: path.to_path_buf(),
                found: meta.format_version,
                expected: FORMAT_VERSION,
            });
        }
        if meta.channel_scale.is_some() && meta.format_version < 2 {
            return Err(VaeError::Corrupt {
                path: path.to_path_buf(),
                detail: "per-channel divisors in a file of format version 1".into(),
            });
        }
        if meta.marginal.is_some() && meta.format_version < 3 {
            return Err(VaeError::Corrupt {
                path: path.to_path_buf(),
                detail: format!("value histograms in a file of format version {}", meta.format_version),
            });
        }
        let m = meta.arch.n_features;
        if meta.columns.len() != m || meta.scaler.n_cols() != m || meta.options.window != meta.arch.window {
            return Err(VaeError::Corrupt {
                path: path.to_path_buf(),
                detail: "columns, scaler, options and architecture disagree".into(),
            });
        }
        if let Some(d) = &meta.channel_scale {
            if d.len() != m || d.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
                return Err(VaeError::Corrupt {
                    path: path.to_path_buf(),
                    detail: format!("per-channel divisors: need {m} finite values > 0, found {d:?}"),
                });
            }
        }
        if let Some(mm) = &meta.marginal {
            check_marginal(mm, m).map_err(|detail| VaeError::Corrupt { path: path.to_path_buf(), detail })?;
        }
        let vae = file::vae_from_tensors(path, meta.arch.clone(), &c.tensors)?;
        if let Some(a) = &meta.adaptation {
            a.check(&vae).map_err(|detail| VaeError::Corrupt { path: path.to_path_buf(), detail })?;
        }
        Ok(Detector { meta, vae })
    }

    /// Loads a model file.
    pub fn load(path: &Path) -> Result<Self, VaeError> {
        let bytes = std::fs::read(path).map_err(|e| VaeError::Io { path: path.to_path_buf(), source: e })?;
        Self::from_bytes(path, &bytes)
    }
}

/// Fits the second opinion ([`crate::marginal`]) on the training rows `scaled` and adds it to
/// their smoothed VAE scores `tr` (the smoothing is linear, so this equals adding before
/// smoothing, as [`Detector::score_scaled`] does). `None`, and `tr` untouched, when it is off,
/// the series has one column, no column qualifies or a training quantile is zero.
fn fit_marginal(tr: &mut StepScores, scaled: &[f32], opts: &FitOptions, vae_threshold: f64) -> Option<MarginalModel> {
    let (m, n) = (tr.n_cols, tr.score.len());
    let bins = opts.marginal_bins.filter(|&b| b > 0 && m >= 2 && opts.marginal_weight > 0.0)?;
    let channels = marginal_score::fit_channels(scaled, m, n, bins);
    if channels.is_empty() {
        return None;
    }
    let mut hist = StepScores { score: vec![0.0; n], contrib: vec![0.0; n * m], n_cols: m };
    marginal_score::add_to(&mut hist, &channels, 1.0, scaled);
    crate::score::smooth(&mut hist, opts.effective_smooth());
    let q_vae = quantile(&tr.score, marginal_score::MARGINAL_QUANTILE) as f64;
    let q_hist = quantile(&hist.score, marginal_score::MARGINAL_QUANTILE) as f64;
    if !(q_vae > 0.0 && q_hist > 0.0) {
        return None;
    }
    let lambda = opts.marginal_weight * q_vae / q_hist;
    for (s, h) in tr.score.iter_mut().zip(&hist.score) {
        *s += lambda * h;
    }
    for (c, h) in tr.contrib.iter_mut().zip(&hist.contrib) {
        *c += (lambda * *h as f64) as f32;
    }
    Some(MarginalModel { channels, lambda, vae_threshold })
}

/// Checks loaded histograms against a model of `m` columns.
fn check_marginal(mm: &MarginalModel, m: usize) -> Result<(), String> {
    if !(mm.lambda.is_finite() && mm.lambda >= 0.0 && mm.vae_threshold.is_finite()) {
        return Err(format!("value histograms: weight {} / threshold {}", mm.lambda, mm.vae_threshold));
    }
    for h in &mm.channels {
        let finite = h.bin_score.iter().chain([&h.outside]).all(|v| v.is_finite() && *v >= 0.0);
        if h.column >= m || h.bin_score.is_empty() || !finite || !(h.lo.is_finite() && h.hi.is_finite() && h.lo < h.hi)
        {
            return Err(format!(
                "value histogram of column {}: invalid (need a column < {m}, bins, lo < hi)",
                h.column
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod margin_tests {
    use super::*;

    #[test]
    fn margin_raises_the_threshold_above_the_training_maximum() {
        // Training scores: a bulk at 1 and two plateaus at 5 (a recurring pattern).
        let mut scores = vec![1.0; 98];
        scores.extend([5.0, 5.0]);
        let mut t = fit_threshold(&scores, 1e-3, 0.98).unwrap();
        let pot = t.value;
        raise_to_training_margin(&mut t, &scores, 0.25);
        // max + α (max − median) = 5 + 0.25 · 4 = 6, unless POT was already higher.
        assert_eq!(t.value, pot.max(6.0));
        assert_eq!(t.margin, 0.25);
        if pot < 6.0 {
            assert_eq!(t.method, "train-margin");
        }
        // α = 0 leaves POT alone; non-finite scores are ignored.
        let mut u = fit_threshold(&scores, 1e-3, 0.98).unwrap();
        raise_to_training_margin(&mut u, &scores, 0.0);
        assert_eq!(u.value, pot);
        let mut v =
            ThresholdInfo { value: 0.0, method: "pot".into(), risk: 1e-3, init_level: 0.98, n_scores: 3, margin: 0.0 };
        // Finite scores [1, 3]: median (upper) 3, max 3 → floor 3.
        raise_to_training_margin(&mut v, &[1.0, f64::NAN, 3.0], 1.0);
        assert_eq!(v.value, 3.0);
    }
}
