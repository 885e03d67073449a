//! Alignment module (digest §A.4): map detector scores into the LLM's score domain.
//!
//! * [`HalfGaussian`]: the target density f(S) = √2/(σ√π)·exp(−S²/2σ²), S ≥ 0, fitted to the
//!   LLM scores by maximum likelihood, σ̂² = (1/n) Σ S_k² (digest §A.4 "Inference").
//! * [`QuantileMap`] (default, digest §A.4 Option 1): M(s) = σ̂√2·erfinv(F̂_s(s)), clipped to
//!   [0, 1], where F̂_s is the empirical CDF of the detector scores. Monotone by construction;
//!   M(s) is distributed exactly as the fitted half-Gaussian, which is the minimiser of the
//!   smooth surrogate of the paper's Eq. (3) among monotone maps with its moments matched.
//! * [`IsotonicMap`] (the trained option): the monotone non-decreasing map fitted by least
//!   squares to the windows both models saw, M = argmin Σ (M(s_i) − S_i)² (pool-adjacent-
//!   violators), linear between block centres, constant beyond.

use serde::{Deserialize, Serialize};

use crate::error::LlmError;

/// Smallest σ used, so that an LLM that always answers 0 does not give a degenerate map.
pub const MIN_SIGMA: f64 = 1e-3;

/// Half-Gaussian on [0, ∞) with scale σ.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HalfGaussian {
    pub sigma: f64,
}

impl HalfGaussian {
    /// ML fit σ̂ = sqrt(mean S²) over the finite scores (negative ones count by magnitude);
    /// floored at [`MIN_SIGMA`]. Errors when no finite score is given.
    pub fn fit(llm_scores: &[f64]) -> Result<Self, LlmError> {
        let finite: Vec<f64> = llm_scores.iter().copied().filter(|x| x.is_finite()).collect();
        if finite.is_empty() {
            return Err(LlmError::InvalidInput("half-Gaussian fit needs at least one finite LLM score".into()));
        }
        let ms = finite.iter().map(|x| x * x).sum::<f64>() / finite.len() as f64;
        Ok(Self { sigma: ms.sqrt().max(MIN_SIGMA) })
    }
    /// Density f(x) (0 for x < 0).
    pub fn pdf(&self, x: f64) -> f64 {
        if x < 0.0 {
            return 0.0;
        }
        (2.0 / std::f64::consts::PI).sqrt() / self.sigma * (-x * x / (2.0 * self.sigma * self.sigma)).exp()
    }
    /// CDF F(x) = erf(x / (σ√2)).
    pub fn cdf(&self, x: f64) -> f64 {
        if x <= 0.0 {
            0.0
        } else {
            erf(x / (self.sigma * std::f64::consts::SQRT_2))
        }
    }
    /// Quantile F⁻¹(p) = σ√2·erfinv(p), p clamped to [0, 1 − 1e-12].
    pub fn quantile(&self, p: f64) -> f64 {
        let p = p.clamp(0.0, 1.0 - 1e-12);
        self.sigma * std::f64::consts::SQRT_2 * erfinv(p)
    }
    /// Mean σ√(2/π).
    pub fn mean(&self) -> f64 {
        self.sigma * (2.0 / std::f64::consts::PI).sqrt()
    }
}

/// Monotone quantile map from detector scores to the half-Gaussian fitted to the LLM scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantileMap {
    /// Sorted finite detector reference scores (the empirical CDF).
    sorted: Vec<f64>,
    pub target: HalfGaussian,
}

impl QuantileMap {
    /// Fit on the detector's reference scores (e.g. all window scores of the series) and the
    /// LLM scores of the windows it was asked about.
    pub fn fit(detector_reference: &[f64], llm_scores: &[f64]) -> Result<Self, LlmError> {
        let mut sorted: Vec<f64> = detector_reference.iter().copied().filter(|x| x.is_finite()).collect();
        if sorted.is_empty() {
            return Err(LlmError::InvalidInput("quantile map needs at least one finite detector score".into()));
        }
        sorted.sort_by(f64::total_cmp);
        Ok(Self { sorted, target: HalfGaussian::fit(llm_scores)? })
    }

    /// Empirical CDF with plotting positions (i + ½)/n, linear in between, averaged over ties.
    pub fn ecdf(&self, s: f64) -> f64 {
        let n = self.sorted.len();
        let nf = n as f64;
        let lo = self.sorted.partition_point(|&x| x < s);
        let hi = self.sorted.partition_point(|&x| x <= s);
        if hi > lo {
            // s equals sorted[lo..hi]: mean plotting position of the tie block.
            return ((lo + hi) as f64 / 2.0) / nf;
        }
        if lo == 0 {
            return 0.5 / nf;
        }
        if lo == n {
            return 1.0 - 0.5 / nf;
        }
        let (a, b) = (self.sorted[lo - 1], self.sorted[lo]);
        let t = (s - a) / (b - a);
        ((lo - 1) as f64 + 0.5 + t) / nf
    }

    /// M(s) ∈ [0, 1]; NaN stays NaN.
    pub fn apply(&self, s: f64) -> f64 {
        if s.is_nan() {
            return f64::NAN;
        }
        self.target.quantile(self.ecdf(s)).clamp(0.0, 1.0)
    }

    /// Apply to many scores.
    pub fn apply_all(&self, s: &[f64]) -> Vec<f64> {
        s.iter().map(|&x| self.apply(x)).collect()
    }
}

/// Monotone non-decreasing least-squares map fitted on (detector, LLM) pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsotonicMap {
    xs: Vec<f64>,
    ys: Vec<f64>,
}

impl IsotonicMap {
    /// Fit by pool-adjacent-violators on the pairs with both values finite.
    pub fn fit(detector: &[f64], llm: &[f64]) -> Result<Self, LlmError> {
        if detector.len() != llm.len() {
            return Err(LlmError::InvalidInput(format!("{} detector vs {} LLM scores", detector.len(), llm.len())));
        }
        let mut pairs: Vec<(f64, f64)> =
            detector.iter().zip(llm).filter(|(a, b)| a.is_finite() && b.is_finite()).map(|(&a, &b)| (a, b)).collect();
        if pairs.is_empty() {
            return Err(LlmError::InvalidInput("isotonic map needs at least one pair of finite scores".into()));
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Blocks: (sum x, sum y, count). Equal x values start pooled.
        let mut blocks: Vec<(f64, f64, f64)> = Vec::new();
        let mut i = 0;
        while i < pairs.len() {
            let mut j = i;
            let (mut sx, mut sy) = (0.0, 0.0);
            while j < pairs.len() && pairs[j].0 == pairs[i].0 {
                sx += pairs[j].0;
                sy += pairs[j].1;
                j += 1;
            }
            blocks.push((sx, sy, (j - i) as f64));
            while blocks.len() > 1 {
                let k = blocks.len();
                let (a, b) = (blocks[k - 2], blocks[k - 1]);
                if a.1 / a.2 <= b.1 / b.2 {
                    break;
                }
                blocks.pop();
                blocks[k - 2] = (a.0 + b.0, a.1 + b.1, a.2 + b.2);
            }
            i = j;
        }
        let xs = blocks.iter().map(|b| b.0 / b.2).collect();
        let ys = blocks.iter().map(|b| (b.1 / b.2).clamp(0.0, 1.0)).collect();
        Ok(Self { xs, ys })
    }

    /// M(s) ∈ [0, 1]; NaN stays NaN.
    pub fn apply(&self, s: f64) -> f64 {
        if s.is_nan() {
            return f64::NAN;
        }
        let n = self.xs.len();
        let k = self.xs.partition_point(|&x| x < s);
        if k == 0 {
            return self.ys[0];
        }
        if k == n {
            return self.ys[n - 1];
        }
        let (x0, x1, y0, y1) = (self.xs[k - 1], self.xs[k], self.ys[k - 1], self.ys[k]);
        y0 + (y1 - y0) * (s - x0) / (x1 - x0)
    }

    /// Apply to many scores.
    pub fn apply_all(&self, s: &[f64]) -> Vec<f64> {
        s.iter().map(|&x| self.apply(x)).collect()
    }
}

/// Which alignment to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum AlignMethod {
    /// Distribution matching to the half-Gaussian (default).
    #[default]
    Quantile,
    /// Trained monotone map on the windows both models saw.
    Isotonic,
}

/// A fitted alignment, either kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Aligner {
    Quantile(QuantileMap),
    Isotonic(IsotonicMap),
}

impl Aligner {
    /// Fit `method`. `detector_all`: the detector's scores of all windows (the CDF reference);
    /// `detector_seen`, `llm_seen`: both models' scores on the windows the LLM answered.
    pub fn fit(
        method: AlignMethod,
        detector_all: &[f64],
        detector_seen: &[f64],
        llm_seen: &[f64],
    ) -> Result<Self, LlmError> {
        Ok(match method {
            AlignMethod::Quantile => Aligner::Quantile(QuantileMap::fit(detector_all, llm_seen)?),
            AlignMethod::Isotonic => Aligner::Isotonic(IsotonicMap::fit(detector_seen, llm_seen)?),
        })
    }
    /// Map detector scores into the LLM domain.
    pub fn apply_all(&self, s: &[f64]) -> Vec<f64> {
        match self {
            Aligner::Quantile(m) => m.apply_all(s),
            Aligner::Isotonic(m) => m.apply_all(s),
        }
    }
}

/// Error function, |error| < 1.2e-7 (Numerical Recipes' Chebyshev fit of erfc).
pub fn erf(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.26551223
        + t * (1.00002368
            + t * (0.37409196
                + t * (0.09678418
                    + t * (-0.18628806
                        + t * (0.27886807
                            + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let erfc = t * poly.exp();
    if x >= 0.0 {
        1.0 - erfc
    } else {
        erfc - 1.0
    }
}

/// Inverse error function on (−1, 1): Giles' (2010) approximation refined by Newton steps.
pub fn erfinv(y: f64) -> f64 {
    if y <= -1.0 {
        return f64::NEG_INFINITY;
    }
    if y >= 1.0 {
        return f64::INFINITY;
    }
    let w = -((1.0 - y) * (1.0 + y)).ln();
    let mut x = if w < 5.0 {
        let w = w - 2.5;
        let mut p = 2.810_226_36e-08;
        for c in [
            3.432_739_39e-07,
            -3.523_387_7e-06,
            -4.391_506_54e-06,
            0.000_218_580_87,
            -0.001_253_725_03,
            -0.004_177_681_64,
            0.246_640_727,
            1.501_409_41,
        ] {
            p = c + p * w;
        }
        p * y
    } else {
        let w = w.sqrt() - 3.0;
        let mut p = -0.000_200_214_257;
        for c in [
            0.000_100_950_558,
            0.001_349_343_22,
            -0.003_673_428_44,
            0.005_739_507_73,
            -0.007_622_461_3,
            0.009_438_870_47,
            1.001_674_06,
            2.832_976_82,
        ] {
            p = c + p * w;
        }
        p * y
    };
    for _ in 0..2 {
        let err = erf(x) - y;
        x -= err / (2.0 / std::f64::consts::PI.sqrt() * (-x * x).exp());
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_and_inverse() {
        assert!((erf(0.5) - 0.520_499_877_8).abs() < 2e-7);
        assert!((erf(-1.5) + 0.966_105_146_5).abs() < 2e-7);
        for &y in &[-0.99, -0.5, 0.0, 0.1, 0.7, 0.999] {
            assert!((erf(erfinv(y)) - y).abs() < 1e-9, "{y}");
        }
    }

    #[test]
    fn half_gaussian_fit_and_quantile_map() {
        let llm = [0.1, 0.2, 0.05, 0.9, 0.0, 0.15];
        let hg = HalfGaussian::fit(&llm).unwrap();
        let expect = (llm.iter().map(|x| x * x).sum::<f64>() / 6.0).sqrt();
        assert!((hg.sigma - expect).abs() < 1e-12);
        assert!((hg.cdf(hg.quantile(0.8)) - 0.8).abs() < 1e-9);
        let det: Vec<f64> = (0..1000).map(|i| 100.0 + i as f64).collect();
        let m = QuantileMap::fit(&det, &llm).unwrap();
        let mapped = m.apply_all(&det);
        assert!(mapped.windows(2).all(|w| w[0] <= w[1]), "monotone");
        // Mapped scores follow the half-Gaussian: their median is the target median.
        assert!((mapped[500] - hg.quantile(0.5)).abs() < 1e-3);
        assert!(m.apply(-1e9) >= 0.0 && m.apply(1e9) <= 1.0);
        assert!(m.apply(f64::NAN).is_nan());
        assert!(HalfGaussian::fit(&[f64::NAN]).is_err());
        assert_eq!(HalfGaussian::fit(&[0.0, 0.0]).unwrap().sigma, MIN_SIGMA);
    }

    #[test]
    fn isotonic_is_monotone_least_squares() {
        let det = [1.0, 2.0, 3.0, 4.0, 5.0];
        let llm = [0.1, 0.3, 0.2, 0.8, 0.7];
        let m = IsotonicMap::fit(&det, &llm).unwrap();
        let out = m.apply_all(&det);
        assert!(out.windows(2).all(|w| w[0] <= w[1] + 1e-12));
        assert!((m.apply(2.5) - 0.25).abs() < 1e-12);
        assert_eq!(m.apply(100.0), 0.75);
        assert!(IsotonicMap::fit(&[1.0], &[]).is_err());
    }
}
