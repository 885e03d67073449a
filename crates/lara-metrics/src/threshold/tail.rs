//! A calibrated tail model of normal scores: `p_anomaly(s) = F(s)`, the probability that a
//! normal score is at most `s`, and the matching threshold `F⁻¹(1 − risk)`.
//!
//! `F` is the empirical CDF of the calibration scores (kept as a sketch of at most
//! [`SKETCH_POINTS`] order statistics, linearly interpolated) up to the POT initial threshold
//! `u`, and the Generalised Pareto tail above it (Siffer et al., KDD 2017):
//! `1 − F(s) = (N_u / n) · (1 + γ (s − u)/σ)^(−1/γ)`. So `F(threshold) = 1 − risk` exactly
//! when the tail fit applies, and "alarm when `p_anomaly ≥ 1 − risk`" is the same rule as
//! "alarm when `score > threshold`". When POT does not apply (too few or tied scores) the tail
//! above the `init_level` quantile is exponential with the mean excess of the scores above it
//! (`method = "exponential"`). A constant `shift` moves the whole model (used when an adapted
//! model's NLL constant changes: the distribution of normal scores moves by the same amount).

use serde::{Deserialize, Serialize};

use super::pot::pot;
use super::{check_scores, ThresholdError};

/// Most order statistics kept in the sketch.
pub const SKETCH_POINTS: usize = 65;

/// See the module docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TailModel {
    /// Order statistics at evenly spaced ranks (first = minimum, last = maximum).
    pub sketch: Vec<f64>,
    /// Number of calibration scores.
    pub n: usize,
    /// Tail start `u`.
    pub u: f64,
    /// Fraction of calibration scores above `u`.
    pub tail_rate: f64,
    /// GPD shape (0 for the exponential fallback).
    pub gamma: f64,
    /// GPD scale (> 0).
    pub sigma: f64,
    /// `"pot"` or `"exponential"`.
    pub method: String,
    pub risk: f64,
    /// Added to every score of the model (see the module docs).
    pub shift: f64,
}

impl TailModel {
    /// Fits the model on normal scores (at least 10, finite).
    pub fn fit(scores: &[f64], risk: f64, init_level: f64) -> Result<TailModel, ThresholdError> {
        check_scores(scores, 10)?;
        if !(risk > 0.0 && risk < 1.0) {
            return Err(ThresholdError::RiskOutOfRange(risk));
        }
        if !(init_level > 0.0 && init_level < 1.0) {
            return Err(ThresholdError::LevelOutOfRange(init_level));
        }
        let mut sorted = scores.to_vec();
        sorted.sort_unstable_by(f64::total_cmp);
        let n = sorted.len();
        let k = SKETCH_POINTS.min(n);
        let sketch: Vec<f64> = (0..k).map(|i| sorted[(i * (n - 1)) / (k - 1).max(1)]).collect();
        let (u, tail_rate, gamma, sigma, method) = match pot(&sorted, risk, init_level) {
            Ok(p) => (p.init_threshold, p.num_peaks as f64 / n as f64, p.gamma, p.sigma, "pot"),
            Err(_) => {
                let idx = ((init_level * n as f64).floor() as usize).min(n - 1);
                let u = sorted[idx];
                let above: Vec<f64> = sorted[idx..].iter().filter(|&&x| x > u).map(|x| x - u).collect();
                let rate = (above.len().max(1)) as f64 / n as f64;
                let mean = if above.is_empty() {
                    // A constant upper tail: a scale from the spread of the whole sample.
                    ((sorted[n - 1] - sorted[0]) / n as f64).max(u.abs() * 1e-6).max(1e-12)
                } else {
                    above.iter().sum::<f64>() / above.len() as f64
                };
                (u, rate, 0.0, mean, "exponential")
            }
        };
        Ok(TailModel { sketch, n, u, tail_rate, gamma, sigma, method: method.into(), risk, shift: 0.0 })
    }

    /// Probability that a normal score exceeds `s`.
    pub fn tail_probability(&self, s: f64) -> f64 {
        let s = s - self.shift;
        if s.is_nan() {
            return f64::NAN;
        }
        if s > self.u {
            let y = s - self.u;
            let t = if self.gamma == 0.0 {
                (-y / self.sigma).exp()
            } else {
                let b = 1.0 + self.gamma * y / self.sigma;
                if b <= 0.0 {
                    0.0
                } else {
                    b.powf(-1.0 / self.gamma)
                }
            };
            return (self.tail_rate * t).clamp(0.0, 1.0);
        }
        // Empirical part: interpolate the rank of s in the sketch.
        let k = self.sketch.len();
        if s < self.sketch[0] {
            return 1.0;
        }
        let i = self.sketch.partition_point(|&q| q <= s);
        let rank = if i >= k {
            1.0
        } else {
            let (a, b) = (self.sketch[i - 1], self.sketch[i]);
            let frac = if b > a { (s - a) / (b - a) } else { 0.0 };
            ((i - 1) as f64 + frac) / (k - 1).max(1) as f64
        };
        // Never below the tail rate at u (keeps F monotone across u).
        (1.0 - rank).max(self.tail_rate)
    }

    /// `p_anomaly(s) = F(s) = 1 − tail_probability(s)`, in `[0, 1]`.
    pub fn p_anomaly(&self, s: f64) -> f64 {
        1.0 - self.tail_probability(s)
    }

    /// The score whose tail probability is `risk` (`u` + the tail quantile; the shift
    /// included).
    pub fn quantile_of_risk(&self, risk: f64) -> f64 {
        if risk >= self.tail_rate {
            // Inside the empirical part.
            let k = self.sketch.len();
            let pos = (1.0 - risk).clamp(0.0, 1.0) * (k - 1) as f64;
            let i = (pos.floor() as usize).min(k - 1);
            let j = (i + 1).min(k - 1);
            let f = pos - i as f64;
            return self.sketch[i] + f * (self.sketch[j] - self.sketch[i]) + self.shift;
        }
        let r = risk / self.tail_rate;
        let y = if self.gamma == 0.0 {
            -self.sigma * r.ln()
        } else {
            self.sigma / self.gamma * (-self.gamma * r.ln()).exp_m1()
        };
        self.u + y + self.shift
    }

    /// The alarm threshold at the model's risk.
    pub fn threshold(&self) -> f64 {
        self.quantile_of_risk(self.risk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp_sample(n: usize) -> Vec<f64> {
        // Deterministic exponential quantiles.
        (0..n).map(|i| -(1.0 - (i as f64 + 0.5) / n as f64).ln()).collect()
    }

    #[test]
    fn calibrated_on_an_exponential_sample() {
        let s = exp_sample(20_000);
        let t = TailModel::fit(&s, 1e-3, 0.98).unwrap();
        assert_eq!(t.method, "pot");
        // Exponential(1): P(S > x) = e^{-x}.
        for x in [0.5, 1.0, 2.0, 5.0, 8.0] {
            let p = t.tail_probability(x);
            assert!((p - (-x as f64).exp()).abs() < 0.1 * (-x as f64).exp() + 2e-3, "x {x}: {p}");
        }
        let thr = t.threshold();
        assert!((thr - (1e3f64).ln()).abs() < 0.3, "{thr}");
        assert!((t.p_anomaly(thr) - (1.0 - 1e-3)).abs() < 1e-9);
        // Monotone.
        let mut last = -1.0;
        for i in 0..2000 {
            let p = t.p_anomaly(i as f64 * 0.01 - 1.0);
            assert!(p >= last - 1e-12, "{i}");
            last = p;
        }
        assert_eq!(t.p_anomaly(-10.0), 0.0);
    }

    #[test]
    fn shift_moves_everything() {
        let s = exp_sample(5000);
        let mut t = TailModel::fit(&s, 1e-3, 0.98).unwrap();
        let (p, thr) = (t.p_anomaly(3.0), t.threshold());
        t.shift = 10.0;
        assert!((t.p_anomaly(13.0) - p).abs() < 1e-12);
        assert!((t.threshold() - thr - 10.0).abs() < 1e-9);
    }

    #[test]
    fn fallback_and_errors() {
        let t = TailModel::fit(&[1.0; 50], 1e-3, 0.98).unwrap();
        assert_eq!(t.method, "exponential");
        assert!(t.threshold() > 1.0 && t.threshold().is_finite());
        assert!(t.p_anomaly(1.0) < 1.0 && t.p_anomaly(100.0) > 0.999);
        assert!(TailModel::fit(&[1.0; 5], 1e-3, 0.98).is_err());
        assert!(TailModel::fit(&[f64::NAN; 20], 1e-3, 0.98).is_err());
    }
}
