//! Causal scoring: the score of row `t` depends only on rows `≤ t`.
//!
//! * The window of row `t` is the `w` rows ending at `t`, cut at the start of the current
//!   *segment* (the series start, or the row where the current normal pattern began): rows
//!   before the segment are replaced by the segment's first row (the same left-padding the
//!   offline scorer uses at the start of a series).
//! * Its raw score is the NLL of row `t` alone under the reconstruction of that window,
//!   `r_t = Σ_k ½ (x_{t,k} − x̂_{t,k})²/σ²_k + ½ Σ_k log 2πσ²_k` (only the newest step is
//!   decoded: [`Vae::decode_mean_tail`]).
//! * Each per-feature contribution above a knee `κ` (default 8 nats, a 4σ residual) grows
//!   logarithmically ([`compress`]), so a channel whose training variance is tiny (a
//!   rarely flipping command flag) cannot drown every other channel.
//! * The published score is the trailing mean of the raw scores over the last `smooth` rows
//!   since the last model switch ([`TrailingMean`]), and `top_dims` come from the trailing
//!   mean of the per-feature contributions.
//!
//! Batch ([`Detector::score_causal`]) and incremental use (the online monitor in
//! `lara-stream`) run the same functions on the same rows in the same order, so a row's
//! score does not depend on how rows were batched.

use std::collections::VecDeque;

use lara_metrics::threshold::TailModel;
use serde::{Deserialize, Serialize};

use lara_adapt::Adapter;

use crate::adapt::Adaptation;
use crate::detector::Detector;
use crate::score::ScoreKind;
use crate::vae::Vae;
use crate::VaeError;

/// Trailing mean of the last `len` rows (score and per-feature contributions), with running
/// sums in `f64`. Its whole state is plain data (serializable, deterministic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrailingMean {
    pub len: usize,
    pub n_cols: usize,
    /// The rows in the current window: `(raw score, contributions)`.
    rows: VecDeque<(f64, Vec<f32>)>,
    sum: f64,
    sum_c: Vec<f64>,
}

impl TrailingMean {
    pub fn new(len: usize, n_cols: usize) -> Self {
        TrailingMean { len: len.max(1), n_cols, rows: VecDeque::new(), sum: 0.0, sum_c: vec![0.0; n_cols] }
    }

    /// Forgets every row (after a model switch the trailing mean restarts).
    pub fn reset(&mut self) {
        self.rows.clear();
        self.sum = 0.0;
        self.sum_c.iter_mut().for_each(|v| *v = 0.0);
    }

    /// Adds a row; returns the mean score and writes the mean contributions to `mean_c`.
    pub fn push(&mut self, raw: f64, contrib: &[f32], mean_c: &mut [f32]) -> f64 {
        if self.rows.len() == self.len {
            let (r, c) = self.rows.pop_front().expect("non-empty");
            self.sum -= r;
            for (s, v) in self.sum_c.iter_mut().zip(&c) {
                *s -= *v as f64;
            }
        }
        self.sum += raw;
        for (s, v) in self.sum_c.iter_mut().zip(contrib) {
            *s += *v as f64;
        }
        self.rows.push_back((raw, contrib.to_vec()));
        let k = self.rows.len() as f64;
        for (o, s) in mean_c.iter_mut().zip(&self.sum_c) {
            *o = (*s / k) as f32;
        }
        self.sum / k
    }
}

/// Windows ending at each of the last `n_new` rows of `ctx` (row-major, `m` columns): `ctx`
/// holds the newest rows of the current segment (at least the `w − 1` rows before the new
/// ones when the segment has them). Indices before the start of `ctx` are filled with
/// `pad_row` (the segment's first row). Returns `n_new × (w·m)`.
pub fn causal_windows(ctx: &[f32], m: usize, w: usize, n_new: usize, pad_row: &[f32]) -> Vec<f32> {
    let n_ctx = ctx.len() / m;
    debug_assert!(n_new <= n_ctx && pad_row.len() == m);
    let mut out = Vec::with_capacity(n_new * w * m);
    for i in n_ctx - n_new..n_ctx {
        let first = i as isize + 1 - w as isize;
        if first < 0 {
            for _ in 0..(-first) as usize {
                out.extend_from_slice(pad_row);
            }
            out.extend_from_slice(&ctx[..(i + 1) * m]);
        } else {
            out.extend_from_slice(&ctx[first as usize * m..(i + 1) * m]);
        }
    }
    out
}

/// Raw causal scores of a batch of windows: one `(score, per-feature contributions)` per
/// window, for the newest step of each.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRows {
    pub score: Vec<f64>,
    /// `n × m` contributions (without the NLL constant).
    pub contrib: Vec<f32>,
}

/// Causal scores of a whole series (one segment starting at row 0).
#[derive(Debug, Clone, PartialEq)]
pub struct CausalScores {
    /// Raw per-row scores `r_t`.
    pub raw: Vec<f64>,
    /// Trailing means of `r_t` over `smooth` rows: the published score.
    pub score: Vec<f64>,
    /// Trailing means of the contributions (`n × m`).
    pub contrib: Vec<f32>,
    pub n_cols: usize,
}

impl CausalScores {
    /// Columns with the largest smoothed contribution in row `t` (see `StepScores::top_dims`).
    pub fn top_dims(&self, t: usize, k: usize) -> Vec<usize> {
        top_k(&self.contrib[t * self.n_cols..(t + 1) * self.n_cols], k)
    }
}

/// Indices of the `k` largest values (descending, ties by index).
pub fn top_k(row: &[f32], k: usize) -> Vec<usize> {
    let mut top: Vec<usize> = Vec::with_capacity(k + 1);
    for (j, v) in row.iter().enumerate() {
        let pos = top.iter().position(|&i| v.total_cmp(&row[i]).is_gt()).unwrap_or(top.len());
        if pos < k {
            top.insert(pos, j);
            top.truncate(k);
        }
    }
    top
}

/// Calibration of the causal scores of a model on its own training rows: the tail models of
/// the raw and of the published (smoothed) scores. `p_anomaly` of a row is
/// `score.p_anomaly(published score)`; the change test reads `raw`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnlineCalibration {
    /// Trailing-mean length of the published score.
    pub smooth: usize,
    pub raw: TailModel,
    pub score: TailModel,
}

impl OnlineCalibration {
    /// Moves both tail models by `delta` (a change of the NLL constant).
    pub fn shifted(&self, delta: f64) -> OnlineCalibration {
        let mut c = self.clone();
        c.raw.shift += delta;
        c.score.shift += delta;
        c
    }
}

/// Rows per GEMM batch in [`Detector::score_causal`].
const BATCH: usize = 256;

/// What causal scoring needs of a model: the frozen VAE, an optional LARA adapter and the
/// decoder log-variance to score with (an adapted model's re-estimated one). Borrowed, so an
/// online monitor on a shared base model keeps only its adapter (KiB), not a VAE copy.
#[derive(Debug, Clone, Copy)]
pub struct ModelView<'a> {
    pub vae: &'a Vae,
    pub adapter: Option<&'a Adapter>,
    pub obs_logvar: &'a [f32],
    pub kind: ScoreKind,
    /// Knee of the per-feature contributions ([`compress`]); `None`: linear.
    pub knee: Option<f32>,
    /// Newest steps of each window whose NLL is averaged into the raw score (1: the row
    /// itself).
    pub steps: usize,
}

impl<'a> ModelView<'a> {
    /// The base VAE with `adaptation` applied (its adapter and variance).
    pub fn with_adaptation(
        vae: &'a Vae,
        adaptation: Option<&'a Adaptation>,
        kind: ScoreKind,
        knee: Option<f32>,
        steps: usize,
    ) -> Self {
        let adapter = adaptation.map(|a| &a.adapter);
        let obs_logvar = pattern_log_var(vae, adaptation);
        ModelView { vae, adapter, obs_logvar, kind, knee, steps: steps.clamp(1, vae.window()) }
    }

    /// Per-feature factor (`½/σ²_k` for NLL, 1 for SSE) and the row constant of the score.
    pub fn score_factors(&self) -> (Vec<f32>, f64) {
        match self.kind {
            ScoreKind::Nll => {
                (self.obs_logvar.iter().map(|v| 0.5 * (-v).exp()).collect(), nll_constant(self.obs_logvar))
            }
            ScoreKind::Sse => (vec![1.0; self.vae.n_features()], 0.0),
        }
    }

    /// Reconstruction of the newest `steps` steps of each of `n` windows
    /// (`n × (steps·m)`), through the adapter when there is one: `M_x(μ_θ(M_z(μ_φ(x))))`.
    pub fn reconstruct_last_steps(&self, windows: &[f32], n: usize) -> Result<Vec<f32>, VaeError> {
        let mu = self.vae.encode_mean(windows, n);
        match self.adapter {
            None => Ok(self.vae.decode_mean_tail(&mu, n, self.steps)),
            Some(a) => {
                let err = |e: lara_adapt::AdaptError| VaeError::Invalid(format!("adapter: {e}"));
                let z = a.m_z.apply(&mu).map_err(err)?;
                let x = self.vae.decode_mean_tail(&z, n, self.steps);
                a.m_x.apply(&x).map_err(err)
            }
        }
    }

    /// Raw causal scores of windows built by [`causal_windows`] (`n × (w·m)`, scaled): per
    /// feature the mean over the newest `steps` steps of the compressed contributions.
    pub fn score_windows_last_step(&self, windows: &[f32], n: usize) -> Result<RawRows, VaeError> {
        let m = self.vae.n_features();
        let (inv, constant) = self.score_factors();
        let dim = self.vae.input_dim();
        let mut score = Vec::with_capacity(n);
        let mut contrib = Vec::with_capacity(n * m);
        for start in (0..n).step_by(BATCH) {
            let end = (start + BATCH).min(n);
            let xs = &windows[start * dim..end * dim];
            let q = self.steps * m;
            let xh = self.reconstruct_last_steps(xs, end - start)?;
            let per = 1.0 / self.steps as f32;
            for (i, hat) in xh.chunks_exact(q).enumerate() {
                let x = &xs[(i + 1) * dim - q..(i + 1) * dim];
                let mut s = 0.0f64;
                for k in 0..m {
                    let mut c = 0.0f32;
                    for j in 0..self.steps {
                        let r = x[j * m + k] - hat[j * m + k];
                        c += compress(r * r * inv[k], self.knee);
                    }
                    let c = if self.steps == 1 { c } else { c * per };
                    contrib.push(c);
                    s += c as f64;
                }
                score.push(s + constant);
            }
        }
        if let Some(t) = score.iter().position(|s| !s.is_finite()) {
            return Err(VaeError::Invalid(format!("the model produced a non-finite score for window {}", t + 1)));
        }
        Ok(RawRows { score, contrib })
    }
}

/// A per-feature contribution `c ≥ 0` above the knee `κ` grows logarithmically:
/// `κ (1 + ln(c/κ))` (continuous, increasing, slope 1 at the knee).
#[inline]
pub fn compress(c: f32, knee: Option<f32>) -> f32 {
    match knee {
        Some(k) if k > 0.0 && c > k => k * (1.0 + (c / k).ln()),
        _ => c,
    }
}

/// The decoder log-variance a pattern scores with: its adapter's re-estimated one when it has
/// one of the right length, else the VAE's.
pub(crate) fn pattern_log_var<'a>(vae: &'a Vae, adaptation: Option<&'a Adaptation>) -> &'a [f32] {
    match adaptation.and_then(|a| a.adapter.output_log_var.as_deref()) {
        Some(lv) if lv.len() == vae.obs_logvar().len() => lv,
        _ => vae.obs_logvar(),
    }
}

/// The NLL constant of one row, `½ Σ_k (log σ²_k + log 2π)`.
pub fn nll_constant(log_var: &[f32]) -> f64 {
    log_var.iter().map(|&v| 0.5 * (v as f64 + std::f64::consts::TAU.ln())).sum()
}

impl Detector {
    /// The default trailing-mean length of causal scores: the model's `causal_smooth`
    /// option, else a quarter window (at least 1).
    pub fn causal_smooth(&self) -> usize {
        self.meta.options.causal_smooth.unwrap_or((self.meta.options.window / 4).max(1)).max(1)
    }

    /// Newest steps of each window scored (the `causal_steps` option, default 1).
    pub fn causal_steps(&self) -> usize {
        self.meta.options.causal_steps.unwrap_or(1).clamp(1, self.meta.options.window)
    }

    /// This detector as a [`ModelView`].
    pub fn view(&self) -> ModelView<'_> {
        self.view_with(self.meta.adaptation.as_ref())
    }

    /// This detector's VAE and scoring options with `adaptation` instead of its own (an
    /// online monitor's patterns on a shared base model).
    pub fn view_with<'a>(&'a self, adaptation: Option<&'a Adaptation>) -> ModelView<'a> {
        ModelView::with_adaptation(
            &self.vae,
            adaptation,
            self.meta.options.score_kind,
            self.meta.options.contrib_knee,
            self.causal_steps(),
        )
    }

    /// Causal scores of every row of already-scaled values (`n_rows × m`), one segment from
    /// row 0, trailing mean over `smooth` rows.
    pub fn score_causal_scaled(&self, scaled: &[f32], n_rows: usize, smooth: usize) -> Result<CausalScores, VaeError> {
        let mut tm = TrailingMean::new(smooth, self.vae.n_features());
        self.score_causal_scaled_with(scaled, n_rows, &mut tm)
    }

    /// [`Detector::score_causal_scaled`] continuing a given trailing mean (left as it is
    /// after the last row).
    pub fn score_causal_scaled_with(
        &self,
        scaled: &[f32],
        n_rows: usize,
        tm: &mut TrailingMean,
    ) -> Result<CausalScores, VaeError> {
        let m = self.vae.n_features();
        let w = self.vae.window();
        if n_rows == 0 {
            return Ok(CausalScores { raw: vec![], score: vec![], contrib: vec![], n_cols: m });
        }
        let pad = scaled[..m].to_vec();
        let mut raw = Vec::with_capacity(n_rows);
        let mut score = Vec::with_capacity(n_rows);
        let mut contrib = vec![0.0f32; n_rows * m];
        for start in (0..n_rows).step_by(BATCH) {
            let end = (start + BATCH).min(n_rows);
            let ctx_start = start.saturating_sub(w - 1);
            let windows = causal_windows(&scaled[ctx_start * m..end * m], m, w, end - start, &pad);
            let rr = self.view().score_windows_last_step(&windows, end - start)?;
            for (i, r) in rr.score.iter().enumerate() {
                let t = start + i;
                let s = tm.push(*r, &rr.contrib[i * m..(i + 1) * m], &mut contrib[t * m..(t + 1) * m]);
                raw.push(*r);
                score.push(s);
            }
        }
        Ok(CausalScores { raw, score, contrib, n_cols: m })
    }

    /// Causal scores of every row of `series` (the model's columns, scaled by its scaler).
    pub fn score_causal(&self, series: &lara_core::Series) -> Result<CausalScores, VaeError> {
        let scaled = self.scale(series)?;
        self.score_causal_scaled(&scaled, series.n_rows, self.causal_smooth())
    }

    /// [`Detector::detect`] with causal scores: each row scored from the rows up to it (what a
    /// static online monitor gives), thresholded at the online calibration's alarm threshold.
    pub fn detect_causal(&self, series: &lara_core::Series) -> Result<crate::Detection, VaeError> {
        let online = self.meta.online.as_ref().ok_or_else(|| {
            VaeError::Threshold("the model has no online calibration (trained before causal scoring); retrain it".into())
        })?;
        let cs = self.score_causal(series)?;
        let threshold = online.score.threshold();
        let is_anomaly = cs.score.iter().map(|&s| s > threshold).collect();
        let top_dims = (0..series.n_rows).map(|t| cs.top_dims(t, 3)).collect();
        let steps = crate::StepScores { score: cs.score.clone(), contrib: cs.contrib, n_cols: cs.n_cols };
        Ok(crate::Detection { score: cs.score, threshold, is_anomaly, top_dims, steps })
    }

    /// Fits the [`OnlineCalibration`] on causal scores of normal rows.
    pub fn calibrate_online(&self, cs: &CausalScores, smooth: usize) -> Result<OnlineCalibration, VaeError> {
        let risk = self.meta.options.risk;
        let level = self.meta.options.init_level;
        let err = |e| VaeError::Threshold(format!("online calibration: {e}"));
        Ok(OnlineCalibration {
            smooth,
            raw: TailModel::fit(&cs.raw, risk, level).map_err(err)?,
            score: TailModel::fit(&cs.score, risk, level).map_err(err)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_padded_with_the_first_row() {
        // 3 rows, m = 1, w = 3.
        let ctx = [1.0, 2.0, 3.0];
        let w = causal_windows(&ctx, 1, 3, 3, &[1.0]);
        assert_eq!(w, vec![1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 1.0, 2.0, 3.0]);
        let w = causal_windows(&ctx, 1, 2, 1, &[9.0]);
        assert_eq!(w, vec![2.0, 3.0]);
    }

    #[test]
    fn trailing_mean() {
        let mut t = TrailingMean::new(2, 1);
        let mut c = [0.0f32];
        assert_eq!(t.push(2.0, &[2.0], &mut c), 2.0);
        assert_eq!(t.push(4.0, &[4.0], &mut c), 3.0);
        assert_eq!(c, [3.0]);
        assert_eq!(t.push(8.0, &[8.0], &mut c), 6.0);
        t.reset();
        assert_eq!(t.push(1.0, &[1.0], &mut c), 1.0);
    }

    #[test]
    fn top_k_order() {
        assert_eq!(top_k(&[1.0, 5.0, 3.0, 5.0], 3), vec![1, 3, 2]);
    }
}
