//! Label-free thresholds: POT and SPOT / DSPOT (Siffer et al., "Anomaly Detection in Streams
//! with Extreme Value Theory", KDD 2017), mean + k·σ, and top-k %.
//!
//! Every threshold is meant for the crate-wide rule "anomalous iff `score > threshold`".
//! No function here panics: invalid input is reported as a [`ThresholdError`].

mod pot;
mod spot;
mod tail;

pub use pot::{fit_gpd, gpd_quantile, pot, GpdFit, PotThreshold};
pub use spot::{Spot, SpotDecision};
pub use tail::{TailModel, SKETCH_POINTS};

/// Why a threshold could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ThresholdError {
    #[error("need at least {needed} scores, got {got}")]
    TooFewPoints { got: usize, needed: usize },
    #[error("score at index {index} is not finite ({value})")]
    NonFinite { index: usize, value: f64 },
    #[error("risk must lie strictly between 0 and 1, got {0}")]
    RiskOutOfRange(f64),
    #[error("init_level must lie strictly between 0 and 1, got {0}")]
    LevelOutOfRange(f64),
    #[error("percentage must lie between 0 and 100, got {0}")]
    PercentOutOfRange(f64),
    #[error("parameter {name} must be finite, got {value}")]
    NonFiniteParameter { name: &'static str, value: f64 },
    #[error(
        "no score exceeds the initial threshold {init_threshold} (the upper tail is constant); \
         lower init_level or use more calibration data"
    )]
    NoPeaks { init_threshold: f64 },
    #[error(
        "risk {risk} is not below the observed exceedance rate {peak_rate} of the initial \
         threshold, so the tail model does not apply; lower the risk or raise init_level"
    )]
    RiskAboveTail { risk: f64, peak_rate: f64 },
    #[error("GPD fit needs positive finite excesses; got {0}")]
    BadExcess(f64),
    #[error("the fitted threshold is not finite ({0}); the scores are too large to extrapolate")]
    NonFiniteThreshold(f64),
    #[error("drift window depth must be at least 1 and leave calibration points after it")]
    BadDepth,
}

/// Checks that `scores` has at least `needed` entries, all finite.
fn check_scores(scores: &[f64], needed: usize) -> Result<(), ThresholdError> {
    if scores.len() < needed {
        return Err(ThresholdError::TooFewPoints { got: scores.len(), needed });
    }
    match scores.iter().enumerate().find(|(_, s)| !s.is_finite()) {
        Some((index, &value)) => Err(ThresholdError::NonFinite { index, value }),
        None => Ok(()),
    }
}

/// `mean + k · std` of the scores, with the population standard deviation (`ddof = 0`, as
/// `numpy.std`). Errors on an empty input, a non-finite score or a non-finite `k`.
pub fn mean_k_sigma(scores: &[f64], k: f64) -> Result<f64, ThresholdError> {
    check_scores(scores, 1)?;
    if !k.is_finite() {
        return Err(ThresholdError::NonFiniteParameter { name: "k", value: k });
    }
    let n = scores.len() as f64;
    let mean = scores.iter().sum::<f64>() / n;
    let variance = scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n;
    Ok(mean + k * variance.sqrt())
}

/// Threshold that flags (with `score > threshold`) the top `pct` % of the scores.
///
/// With `n` scores, `m = ⌊pct/100 · n⌋` points are targeted (a relative slack of 1e-9 absorbs
/// rounding, so 1 % of 1000 is 10) and the threshold is the `(m+1)`-th largest score.
///
/// Ties: scores equal to the threshold are **not** flagged, so when the `m`-th and `(m+1)`-th
/// largest scores tie, fewer than `m` points are flagged (never more). `pct = 0` returns the
/// maximum (nothing flagged); `m = n` (e.g. `pct = 100`) returns `-∞` (everything flagged).
/// Errors on an empty input, a non-finite score, or `pct` outside `[0, 100]`.
pub fn top_k_percent(scores: &[f64], pct: f64) -> Result<f64, ThresholdError> {
    check_scores(scores, 1)?;
    if !(0.0..=100.0).contains(&pct) {
        return Err(ThresholdError::PercentOutOfRange(pct));
    }
    let n = scores.len();
    let m = ((pct / 100.0 * n as f64) * (1.0 + 1e-9)).floor() as usize;
    if m >= n {
        return Ok(f64::NEG_INFINITY);
    }
    let mut sorted = scores.to_vec();
    // Descending; the (m+1)-th largest is at index m.
    let (_, value, _) = sorted.select_nth_unstable_by(m, |a, b| b.total_cmp(a));
    Ok(*value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_k_sigma_by_hand() {
        // mean 2.5, population variance 1.25.
        let t = mean_k_sigma(&[1.0, 2.0, 3.0, 4.0], 2.0).unwrap();
        assert!((t - (2.5 + 2.0 * 1.25f64.sqrt())).abs() < 1e-15);
        assert_eq!(mean_k_sigma(&[], 3.0), Err(ThresholdError::TooFewPoints { got: 0, needed: 1 }));
        assert!(matches!(mean_k_sigma(&[1.0, f64::NAN], 3.0), Err(ThresholdError::NonFinite { index: 1, .. })));
        assert!(matches!(mean_k_sigma(&[1.0], f64::INFINITY), Err(ThresholdError::NonFiniteParameter { .. })));
    }

    #[test]
    fn top_k_percent_flags_at_most_pct() {
        let scores: Vec<f64> = (0..1000).map(f64::from).collect();
        let t = top_k_percent(&scores, 1.0).unwrap();
        assert_eq!(t, 989.0);
        assert_eq!(scores.iter().filter(|&&s| s > t).count(), 10);
        assert_eq!(top_k_percent(&scores, 0.0).unwrap(), 999.0);
        assert_eq!(top_k_percent(&scores, 100.0).unwrap(), f64::NEG_INFINITY);
        // 10 % of 5 scores is 0.5 -> no point.
        assert_eq!(top_k_percent(&[1.0, 2.0, 3.0, 4.0, 5.0], 10.0).unwrap(), 5.0);
    }

    #[test]
    fn top_k_percent_ties_are_not_flagged() {
        // Top 40 % of 5 = 2 points, but the 2nd and 3rd largest tie: only 1 is flagged.
        let scores = [1.0, 5.0, 3.0, 3.0, 2.0];
        let t = top_k_percent(&scores, 40.0).unwrap();
        assert_eq!(t, 3.0);
        assert_eq!(scores.iter().filter(|&&s| s > t).count(), 1);
    }

    #[test]
    fn top_k_percent_rejects_bad_input() {
        assert_eq!(top_k_percent(&[1.0], 101.0), Err(ThresholdError::PercentOutOfRange(101.0)));
        assert!(matches!(top_k_percent(&[1.0], f64::NAN), Err(ThresholdError::PercentOutOfRange(_))));
        assert!(matches!(top_k_percent(&[], 5.0), Err(ThresholdError::TooFewPoints { .. })));
        assert!(matches!(top_k_percent(&[f64::INFINITY], 5.0), Err(ThresholdError::NonFinite { .. })));
    }
}
