//! Peaks-Over-Threshold (Siffer et al., KDD 2017, §3.2–3.3) with the Generalized Pareto tail
//! fitted by Grimshaw's procedure (Grimshaw, "Computing Maximum Likelihood Estimates for the
//! Generalized Pareto Distribution", Technometrics 1993).

use super::{check_scores, ThresholdError};

/// Maximum-likelihood Generalized Pareto fit of excesses `Y > 0`:
/// `P(Y > y) = (1 + γ·y/σ)^(−1/γ)` (or `exp(−y/σ)` for `γ = 0`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpdFit {
    /// Shape (extreme-value index) γ: > 0 heavy tail, 0 exponential, < 0 bounded tail.
    pub gamma: f64,
    /// Scale σ > 0.
    pub sigma: f64,
    /// Log-likelihood of the excesses under the fit.
    pub log_likelihood: f64,
}

/// Result of [`pot`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PotThreshold {
    /// Extreme quantile `z_q`: a new score exceeds it with probability ≈ `risk`.
    pub threshold: f64,
    /// Fitted GPD shape γ.
    pub gamma: f64,
    /// Fitted GPD scale σ.
    pub sigma: f64,
    /// Log-likelihood of the peaks under the fit.
    pub log_likelihood: f64,
    /// Initial threshold `t` (the empirical `init_level` quantile).
    pub init_threshold: f64,
    /// Number of peaks `N_t` (scores strictly above `t`).
    pub num_peaks: usize,
    /// Number of calibration scores `n`.
    pub num_observations: usize,
}

/// POT threshold of `init_scores` for the probability `risk` (Siffer et al. §3.2, eq. (1)).
///
/// 1. `t` = the empirical `init_level` quantile, `sorted[⌊init_level · n⌋]` (as the reference
///    `spot.py`), e.g. `init_level = 0.98`.
/// 2. Peaks: the excesses `x − t` of the scores strictly above `t`.
/// 3. GPD fit of the peaks by [`fit_gpd`] (Grimshaw).
/// 4. `z_q = t + σ/γ · ((q·n/N_t)^(−γ) − 1)`, or `t − σ·ln(q·n/N_t)` when `γ = 0`
///    ([`gpd_quantile`]).
///
/// Errors: empty input, non-finite scores, `risk` or `init_level` outside `(0, 1)`, no score
/// above `t` ([`ThresholdError::NoPeaks`]), `risk ≥ N_t / n` (the target quantile would lie
/// below `t`, outside the tail model: [`ThresholdError::RiskAboveTail`]), or a threshold that
/// overflows ([`ThresholdError::NonFiniteThreshold`]).
pub fn pot(init_scores: &[f64], risk: f64, init_level: f64) -> Result<PotThreshold, ThresholdError> {
    pot_with_peaks(init_scores, risk, init_level).map(|(threshold, _)| threshold)
}

/// [`pot`], also returning the peaks (for SPOT's streaming updates).
pub(super) fn pot_with_peaks(
    init_scores: &[f64],
    risk: f64,
    init_level: f64,
) -> Result<(PotThreshold, Vec<f64>), ThresholdError> {
    if !(risk > 0.0 && risk < 1.0) {
        return Err(ThresholdError::RiskOutOfRange(risk));
    }
    if !(init_level > 0.0 && init_level < 1.0) {
        return Err(ThresholdError::LevelOutOfRange(init_level));
    }
    check_scores(init_scores, 1)?;
    let n = init_scores.len();
    let mut sorted = init_scores.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    let index = ((init_level * n as f64).floor() as usize).min(n - 1);
    let init_threshold = sorted[index];
    let peaks: Vec<f64> = sorted[index..].iter().filter(|&&x| x > init_threshold).map(|x| x - init_threshold).collect();
    if peaks.is_empty() {
        return Err(ThresholdError::NoPeaks { init_threshold });
    }
    let peak_rate = peaks.len() as f64 / n as f64;
    if risk >= peak_rate {
        return Err(ThresholdError::RiskAboveTail { risk, peak_rate });
    }
    let fit = fit_gpd(&peaks)?;
    let threshold = gpd_quantile(init_threshold, &fit, risk, n, peaks.len());
    if !threshold.is_finite() {
        return Err(ThresholdError::NonFiniteThreshold(threshold));
    }
    let result = PotThreshold {
        threshold,
        gamma: fit.gamma,
        sigma: fit.sigma,
        log_likelihood: fit.log_likelihood,
        init_threshold,
        num_peaks: peaks.len(),
        num_observations: n,
    };
    Ok((result, peaks))
}

/// Extreme quantile of Siffer et al. eq. (1): with `r = risk · n / N_t`,
/// `z_q = t + σ/γ · (r^(−γ) − 1)` (evaluated as `σ/γ · expm1(−γ·ln r)`), or `t − σ·ln r` when
/// `γ = 0`.
pub fn gpd_quantile(init_threshold: f64, fit: &GpdFit, risk: f64, num_observations: usize, num_peaks: usize) -> f64 {
    let r = risk * num_observations as f64 / num_peaks as f64;
    if fit.gamma == 0.0 {
        init_threshold - fit.sigma * r.ln()
    } else {
        init_threshold + fit.sigma / fit.gamma * (-fit.gamma * r.ln()).exp_m1()
    }
}

/// Relative distance from 0 (in units of `1/max(Y)`) below which a root of Grimshaw's equation
/// is indistinguishable from the always-present root `τ = 0` (the exponential case).
const TAU_INNER: f64 = 1e-6;
/// Closest approach of `1 + τ·max(Y)` to 0 in the negative search interval.
const TAU_EDGE: f64 = 1e-10;
/// Grid points per decade of the bracketing scan.
const POINTS_PER_DECADE: f64 = 8.0;

/// Maximum-likelihood GPD fit of positive excesses by Grimshaw's procedure (as the reference
/// SPOT `_grimshaw`), with a bracketed root search:
///
/// - With `τ = γ/σ`, the likelihood equations reduce to `w(τ) = u(τ)·v(τ) − 1 = 0`, where
///   `u(τ) = 1 + mean ln(1 + τY)`, `v(τ) = mean 1/(1 + τY)`; a root gives
///   `γ = u(τ) − 1`, `σ = γ/τ`.
/// - Non-zero roots lie in `(−1/Y_max, 0)` and `(0, 2(Ȳ − Y_min)/Y_min²]` (Grimshaw 1993). Both
///   intervals are scanned on a log-spaced grid for sign changes, each refined by bisection.
///   (The reference searches `(2(Ȳ−Y_min)/(Ȳ·Y_min), 2(Ȳ−Y_min)/Y_min²)` on the positive side,
///   which misses the usual positive roots; the full interval is used here.)
/// - `τ = 0` (exponential, `γ = 0`, `σ = Ȳ`) is always a candidate. The candidate with the
///   highest log-likelihood wins. The exponential log-likelihood is the true
///   `−n·ln σ − ΣY/σ` (the reference's `n·(1 + ln Ȳ)` has the wrong sign).
///
/// Errors on an empty input or an excess that is not finite and > 0.
pub fn fit_gpd(excesses: &[f64]) -> Result<GpdFit, ThresholdError> {
    check_scores(excesses, 1)?;
    if let Some(&bad) = excesses.iter().find(|&&y| y <= 0.0) {
        return Err(ThresholdError::BadExcess(bad));
    }
    let n = excesses.len() as f64;
    let y_min = excesses.iter().copied().fold(f64::INFINITY, f64::min);
    let y_max = excesses.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let y_mean = excesses.iter().sum::<f64>() / n;

    let exponential_sigma = y_mean;
    let mut best = GpdFit {
        gamma: 0.0,
        sigma: exponential_sigma,
        log_likelihood: gpd_log_likelihood(excesses, 0.0, exponential_sigma),
    };
    if !best.log_likelihood.is_finite() {
        return Err(ThresholdError::BadExcess(y_mean));
    }

    let w = |tau: f64| grimshaw_w(excesses, tau);
    // Negative side, ascending: first 1 + τ·Y_max from TAU_EDGE up to 1/2, then |τ|·Y_max
    // from 1/2 down to TAU_INNER.
    let mut grid: Vec<f64> = log_grid(TAU_EDGE, 0.5).into_iter().map(|s| (s - 1.0) / y_max).collect();
    grid.extend(log_grid(TAU_INNER, 0.5).into_iter().rev().skip(1).map(|p| -p / y_max));
    let negative_end = grid.len();
    // Positive side, ascending: from TAU_INNER/Y_max to Grimshaw's upper bound.
    let upper = 2.0 * (y_mean - y_min) / y_min / y_min;
    let lower = TAU_INNER / y_max;
    if upper.is_finite() && upper > lower {
        grid.extend(log_grid(lower, upper));
    }

    let values: Vec<f64> = grid.iter().map(|&t| w(t)).collect();
    let mut roots = Vec::new();
    for i in 0..grid.len().saturating_sub(1) {
        if i + 1 == negative_end {
            continue; // the pair straddling τ = 0 brackets the trivial root
        }
        let (a, b, fa, fb) = (grid[i], grid[i + 1], values[i], values[i + 1]);
        if fa == 0.0 {
            roots.push(a);
        } else if fa.is_finite() && fb.is_finite() && (fa < 0.0) != (fb < 0.0) && fb != 0.0 {
            roots.push(bisect(&w, a, b, fa));
        }
    }
    for tau in roots {
        let gamma = excesses.iter().map(|&y| (tau * y).ln_1p()).sum::<f64>() / n;
        let sigma = gamma / tau;
        if !(sigma > 0.0 && sigma.is_finite() && gamma.is_finite() && gamma != 0.0) {
            continue;
        }
        let log_likelihood = gpd_log_likelihood(excesses, gamma, sigma);
        if log_likelihood > best.log_likelihood {
            best = GpdFit { gamma, sigma, log_likelihood };
        }
    }
    Ok(best)
}

/// Ascending log-spaced points from `lo` to `hi` (both > 0), about
/// [`POINTS_PER_DECADE`] per decade and at least 16.
fn log_grid(lo: f64, hi: f64) -> Vec<f64> {
    let log_span = hi.ln() - lo.ln(); // not ln(hi / lo), which may overflow
    let count = ((log_span / std::f64::consts::LN_10 * POINTS_PER_DECADE).ceil() as usize).clamp(16, 4096);
    let step = log_span / count as f64;
    (0..=count).map(|i| lo * (step * i as f64).exp()).collect()
}

/// Grimshaw's function `w(τ) = u(τ)·v(τ) − 1`, evaluated as `a + b + a·b` with
/// `a = u − 1 = mean ln1p(τY)` and `b = v − 1 = −mean τY/(1 + τY)` to avoid cancelling the 1s.
/// NaN where `1 + τY ≤ 0` for some `Y`.
fn grimshaw_w(excesses: &[f64], tau: f64) -> f64 {
    let n = excesses.len() as f64;
    let (mut sum_log, mut sum_ratio) = (0.0, 0.0);
    for &y in excesses {
        let x = tau * y;
        sum_log += x.ln_1p();
        sum_ratio += x / (1.0 + x);
    }
    let a = sum_log / n;
    let b = -sum_ratio / n;
    a + b + a * b
}

/// Root of `f` in `[lo, hi]` by bisection, given `f(lo) = f_lo` of the opposite sign to
/// `f(hi)`; stops at a relative width of 1e-13 or at floating-point resolution.
fn bisect(f: &impl Fn(f64) -> f64, mut lo: f64, mut hi: f64, mut f_lo: f64) -> f64 {
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi || (hi - lo) <= 1e-13 * mid.abs() {
            break;
        }
        let f_mid = f(mid);
        if f_mid == 0.0 {
            return mid;
        }
        if (f_mid < 0.0) == (f_lo < 0.0) {
            lo = mid;
            f_lo = f_mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// GPD log-likelihood (location 0): `−n·ln σ − (1 + 1/γ)·Σ ln(1 + γY/σ)`, or
/// `−n·ln σ − ΣY/σ` for `γ = 0`; `−∞` outside the support.
fn gpd_log_likelihood(excesses: &[f64], gamma: f64, sigma: f64) -> f64 {
    let n = excesses.len() as f64;
    if gamma == 0.0 {
        return -n * sigma.ln() - excesses.iter().sum::<f64>() / sigma;
    }
    let mut sum = 0.0;
    for &y in excesses {
        let z = gamma * y / sigma;
        if z <= -1.0 {
            return f64::NEG_INFINITY;
        }
        sum += z.ln_1p();
    }
    -n * sigma.ln() - (1.0 + 1.0 / gamma) * sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn uniform_open(rng: &mut ChaCha8Rng) -> f64 {
        1.0 - rng.gen::<f64>() // (0, 1]
    }

    fn exponential(rng: &mut ChaCha8Rng, n: usize, lambda: f64) -> Vec<f64> {
        (0..n).map(|_| -uniform_open(rng).ln() / lambda).collect()
    }

    /// GPD(γ, σ) samples by inversion: `σ/γ · (U^(−γ) − 1)`.
    fn gpd_samples(rng: &mut ChaCha8Rng, n: usize, gamma: f64, sigma: f64) -> Vec<f64> {
        (0..n).map(|_| sigma / gamma * (uniform_open(rng).powf(-gamma) - 1.0)).filter(|&y| y > 0.0).collect()
    }

    /// Independent check: maximise the profile log-likelihood `ℓ(τ)` (γ = mean ln(1 + τY),
    /// σ = γ/τ) by a coarse log-spaced scan of `τ·Y_max ∈ (−1, 0) ∪ (0, 1e6)`, then a fine
    /// linear scan around the best coarse point.
    fn brute_force_gamma(y: &[f64]) -> f64 {
        let y_max = y.iter().copied().fold(0.0, f64::max);
        let n = y.len() as f64;
        let profile = |p: f64| {
            let tau = p / y_max;
            let gamma = y.iter().map(|&v| (tau * v).ln_1p()).sum::<f64>() / n;
            (gpd_log_likelihood(y, gamma, gamma / tau), gamma)
        };
        let mut coarse: Vec<f64> =
            (0..=400).map(|i| -1.0 + 10f64.powf(-9.0 + 9.0 * f64::from(i) / 400.0) * 0.5).collect();
        coarse.extend((0..=400).rev().map(|i| -(10f64.powf(-6.0 + 5.7 * f64::from(i) / 400.0))));
        coarse.extend((0..=1200).map(|i| 10f64.powf(-6.0 + 12.0 * f64::from(i) / 1200.0)));
        let best = (0..coarse.len()).max_by(|&a, &b| profile(coarse[a]).0.total_cmp(&profile(coarse[b]).0)).unwrap();
        let (lo, hi) = (coarse[best.saturating_sub(1)], coarse[(best + 1).min(coarse.len() - 1)]);
        (0..=4000)
            .map(|i| lo + (hi - lo) * f64::from(i) / 4000.0)
            .filter(|&p| p != 0.0 && p > -1.0)
            .map(profile)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .unwrap()
            .1
    }

    #[test]
    fn equal_peaks_give_the_exponential_fit_by_hand() {
        // t = sorted[⌊0.5·10⌋] = 1, peaks = [2, 2, 2, 2]: only τ = 0 solves Grimshaw's equation,
        // so γ = 0, σ = 2 and z = 1 − 2·ln(0.01·10/4) = 1 + 2·ln 40.
        let scores = [0.0, 3.0, 0.0, 0.0, 3.0, 0.0, 1.0, 3.0, 3.0, 0.0];
        let p = pot(&scores, 0.01, 0.5).unwrap();
        assert_eq!((p.init_threshold, p.num_peaks, p.num_observations), (1.0, 4, 10));
        assert_eq!((p.gamma, p.sigma), (0.0, 2.0));
        assert!((p.threshold - 8.377758908227872).abs() < 1e-12, "{}", p.threshold);
    }

    #[test]
    fn exponential_tail_quantile_is_recovered() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let lambda = 2.0;
        for seed_round in 0..3 {
            let x = exponential(&mut rng, 20_000, lambda);
            let p = pot(&x, 1e-3, 0.98).unwrap();
            let truth = -(1e-3f64).ln() / lambda;
            let rel = (p.threshold - truth).abs() / truth;
            assert!(rel < 0.1, "round {seed_round}: z = {} vs {truth} (γ = {})", p.threshold, p.gamma);
            assert!(p.gamma.abs() < 0.15, "γ = {}", p.gamma);
            assert_eq!(p.num_peaks, 399);
        }
    }

    #[test]
    fn gpd_shape_is_recovered() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for &(gamma, sigma) in &[(0.3, 1.0), (0.6, 0.01), (-0.2, 5.0), (-0.4, 1.0), (0.1, 1000.0)] {
            let y = gpd_samples(&mut rng, 5000, gamma, sigma);
            let fit = fit_gpd(&y).unwrap();
            assert!((fit.gamma - gamma).abs() < 0.06, "γ = {gamma}: fitted {fit:?}");
            assert!((fit.sigma / sigma - 1.0).abs() < 0.1, "σ = {sigma}: fitted {fit:?}");
            let brute = brute_force_gamma(&y);
            assert!((fit.gamma - brute).abs() < 2e-3, "Grimshaw {} vs brute force {brute}", fit.gamma);
        }
    }

    #[test]
    fn pareto_tail_is_recovered_by_pot() {
        // Pareto(α = 3): P(X > x) = x^(−3) for x ≥ 1, so γ = 1/3 and z_q = q^(−1/3).
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let x: Vec<f64> = (0..50_000).map(|_| uniform_open(&mut rng).powf(-1.0 / 3.0)).collect();
        let p = pot(&x, 1e-4, 0.98).unwrap();
        assert!((p.gamma - 1.0 / 3.0).abs() < 0.1, "{p:?}");
        let truth = 1e-4f64.powf(-1.0 / 3.0);
        assert!((p.threshold / truth - 1.0).abs() < 0.2, "{} vs {truth}", p.threshold);
    }

    #[test]
    fn invalid_inputs_are_errors() {
        let x: Vec<f64> = (0..100).map(f64::from).collect();
        assert_eq!(pot(&x, 0.0, 0.9), Err(ThresholdError::RiskOutOfRange(0.0)));
        assert_eq!(pot(&x, 1.0, 0.9), Err(ThresholdError::RiskOutOfRange(1.0)));
        assert!(matches!(pot(&x, f64::NAN, 0.9), Err(ThresholdError::RiskOutOfRange(_))));
        assert_eq!(pot(&x, 1e-3, 1.0), Err(ThresholdError::LevelOutOfRange(1.0)));
        assert!(matches!(pot(&[], 1e-3, 0.9), Err(ThresholdError::TooFewPoints { .. })));
        assert!(matches!(pot(&[1.0, f64::INFINITY], 1e-3, 0.9), Err(ThresholdError::NonFinite { index: 1, .. })));
        assert_eq!(pot(&[2.0; 50], 1e-3, 0.9), Err(ThresholdError::NoPeaks { init_threshold: 2.0 }));
        // 9 peaks out of 100: a risk of 0.2 is not in the tail.
        assert!(matches!(pot(&x, 0.2, 0.9), Err(ThresholdError::RiskAboveTail { .. })));
        assert!(matches!(fit_gpd(&[1.0, 0.0]), Err(ThresholdError::BadExcess(_))));
        assert!(matches!(fit_gpd(&[1.0, -1.0]), Err(ThresholdError::BadExcess(_))));
        // Extreme but finite values do not panic.
        assert!(pot(&[f64::MAX, -f64::MAX, 0.0, 1.0], 1e-3, 0.5).is_err());
        let tiny: Vec<f64> = (0..100).map(|i| f64::from(i) * 1e-300).collect();
        assert!(pot(&tiny, 1e-3, 0.9).unwrap().threshold.is_finite());
    }

    #[test]
    fn single_peak_is_exponential() {
        let p = pot(&[0.0, 0.0, 0.0, 5.0], 0.01, 0.5).unwrap();
        assert_eq!((p.num_peaks, p.gamma, p.sigma), (1, 0.0, 5.0));
    }
}
