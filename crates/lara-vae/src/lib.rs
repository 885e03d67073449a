//! # lara-vae — window-level Gaussian VAE for multivariate time-series anomaly detection
//!
//! * [`vae::Vae`]: the model (MLP encoder/decoder over flattened `w × m` windows), with a
//!   hand-written forward/backward pass on a fast `f32` GEMM (`matrixmultiply`, split over
//!   the rayon pool). Plain batch functions on row-major `f32` matrices for LARA:
//!   [`Vae::encode`] (μ, log σ²), [`Vae::encode_mean`], [`Vae::encode_sample`],
//!   [`Vae::encode_samples`], [`Vae::decode_mean`] (of *given* latents), [`Vae::reconstruct`],
//!   [`Vae::log_likelihood`] / [`Vae::log_likelihood_steps`] (of *given* reconstructions, per
//!   window / per time step), [`Vae::log_likelihood_z`] / [`Vae::log_likelihood_z_steps`],
//!   [`Vae::obs_logvar`] (per-feature decoder log-variance).
//! * [`train::train_vae`]: ELBO (unit-variance Gaussian reconstruction + β·KL, β warmed up
//!   linearly over the first epochs), Adam, early stopping on the latest `val_frac` of the
//!   training windows (best weights kept), a cap on the number of steps, deterministic given
//!   the seed (bit-identical weights, scores and model files).
//! * After training the decoder variance is *calibrated*: per feature, the mean squared
//!   reconstruction error on the validation windows, floored at `var_floor ×` its mean.
//! * [`score::score_rows`]: per-row scores. Windows start every `stride` rows plus one final
//!   window ending at the last row, so every row is covered (also the first `w − 1`: the whole
//!   window is reconstructed, not just its last step; a series shorter than `w` is left-padded
//!   with its first row). Each element's NLL contribution `½ r²/s²_k` is averaged over the
//!   windows covering it; a row's score is the sum over features (+ the Gaussian constant).
//!   Then a centred moving average over `smooth` rows (default: `w`), see [`score::smooth`].
//! * [`detector::Detector`]: scaler (fitted on the training prefix) + VAE + POT threshold
//!   (fitted on the training rows' scores, `lara_metrics::threshold::pot`), trained from a
//!   [`lara_core::Series`], saved to / loaded from a single `.lara` file ([`mod@file`]).
//! * [`causal`]: the online (causal) scores the monitor in `lara-stream` publishes — the
//!   window ending at each row, the NLL of that row, a trailing mean — and their calibration
//!   ([`OnlineCalibration`], fitted on the training rows by `Detector::fit` and kept in the
//!   model file) behind `p_anomaly`.
//!
//! ## Design choices and measurements (dev panel, 24 files; measured with `lara bench detect`)
//!
//! * **MLP over the flattened window** (1 hidden layer of 256 ReLU units each side, latent
//!   16). Compared on the panel (mean VUS-PR per group): depth 2 was not better and ~1.5×
//!   slower; hidden 128 is as accurate within noise and ~1.6× faster to train; latent 8/32 and
//!   tanh were not better. No conv/GRU variant was tried.
//! * **Score smoothing** over `w` rows was the largest single gain (MSL 0.12 → 0.37, NAB
//!   0.26 → 0.48 VUS-PR): sustained shifts raise every row they cover, which range metrics
//!   reward. With smoothing the scoring stride matters little (stride `w/2` is the default;
//!   stride 1 and `w` are within ±0.02).
//! * NLL with the calibrated per-feature variance beats plain squared error on MSL (the
//!   command-flag channels) and is equal elsewhere; β = 0.1 was better than β = 1 on UCR.
//! * One Adam step at batch 64, window 100×38, hidden 256, latent 32: about 9 ms on 2 cores
//!   (one core gives almost the same: the step is bound by memory traffic of the
//!   3800×256 weight matrices and Adam's state); hidden 128: 4–5 ms.

pub mod adapt;
pub mod causal;
pub mod detector;
pub mod error;
pub mod file;
mod gemm;
mod pot;
pub mod score;
pub mod train;
pub mod vae;

pub use adapt::{Adaptation, ParentRef};
pub use causal::{
    causal_windows, nll_constant, top_k, CausalScores, ModelView, OnlineCalibration, RawRows, TrailingMean,
};
pub use detector::{Detection, Detector, FitOptions, ModelMeta, ThresholdInfo};
pub use error::VaeError;
pub use score::{score_rows, score_rows_with, ScoreKind, StepScores};
pub use train::{train_vae, EpochReport, Progress, TrainConfig, TrainReport};
pub use vae::{Activation, Vae, VaeConfig};

/// Row-major `C = A·B` helper exposed for LARA's small affine maps and tests:
/// `a` is `m×k` (or `k×m` if `a_t`), `b` is `k×n` (or `n×k` if `b_t`), `c` is `m×n`,
/// `c = a·b + beta·c`.
#[allow(clippy::too_many_arguments)]
pub fn matmul(m: usize, n: usize, k: usize, a: &[f32], a_t: bool, b: &[f32], b_t: bool, beta: f32, c: &mut [f32]) {
    gemm::gemm(m, n, k, a, a_t, b, b_t, beta, c)
}

/// Sets the number of worker threads used by the GEMMs (the global rayon pool). Call once,
/// before any training or scoring; later calls fail.
pub fn init_threads(n: usize) -> Result<(), VaeError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .map_err(|e| VaeError::Invalid(format!("thread pool: {e}")))
}

/// Number of worker threads the GEMMs use.
pub fn threads() -> usize {
    rayon::current_num_threads()
}
