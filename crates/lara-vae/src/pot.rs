//! Label-free threshold: `lara_metrics::threshold::pot` on the training scores, with a
//! documented fallback when the tail model does not apply.

use lara_metrics::threshold::{pot as metrics_pot, ThresholdError};

use crate::VaeError;

/// Returns `(threshold, method)`. POT (Grimshaw GPD fit, `lara_metrics`) when it applies;
/// when it cannot (too few scores, a constant upper tail, or `risk` not below the
/// exceedance rate of the initial threshold) the empirical `1 − risk` quantile of the
/// training scores (`"quantile"`), which is their maximum when `n < 1/risk`.
pub fn pot(scores: &[f64], risk: f64, init_level: f64) -> Result<(f64, &'static str), VaeError> {
    if scores.is_empty() {
        return Err(VaeError::Threshold("no training score".into()));
    }
    match metrics_pot(scores, risk, init_level) {
        Ok(p) => Ok((p.threshold, "pot")),
        Err(
            e @ (ThresholdError::NonFinite { .. }
            | ThresholdError::RiskOutOfRange(_)
            | ThresholdError::LevelOutOfRange(_)),
        ) => Err(VaeError::Threshold(e.to_string())),
        Err(e) => {
            tracing::info!("POT not applicable ({e}); using the empirical quantile of the training scores");
            let mut s = scores.to_vec();
            s.sort_by(f64::total_cmp);
            let n = s.len();
            let i = (((1.0 - risk) * n as f64).ceil() as usize).min(n - 1);
            Ok((s[i], "quantile"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pot_and_fallback() {
        let s: Vec<f64> = (0..5000).map(|i| ((i * 7919) % 5000) as f64 / 5000.0).collect();
        let (t, m) = pot(&s, 1e-3, 0.98).unwrap();
        assert_eq!(m, "pot");
        assert!(t > 0.98 && t.is_finite());
        // Constant scores: no peaks -> quantile fallback.
        let (t, m) = pot(&[1.0; 100], 1e-3, 0.98).unwrap();
        assert_eq!((t, m), (1.0, "quantile"));
        assert!(pot(&[], 1e-3, 0.98).is_err());
        assert!(pot(&[1.0, f64::NAN], 1e-3, 0.98).is_err());
    }
}
