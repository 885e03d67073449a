//! TSB-AD's ACF period estimate (`find_length_rank(data, rank=1)` of TSB-AD 1.5), used as the
//! metric window (`slidingWindow`) of VUS and as a default detector window.
//!
//! Behaviour, as TSB-AD 1.5 is written (including its "off-by-base" range check, TSB-AD issue
//! #50 / PR #51; see `shared/docs/anchors.md` §1.1):
//! 1. keep the first `min(20000, n)` points;
//! 2. ACF as statsmodels `acf(x, nlags=400, fft=True)`: demeaned, biased (denominator n),
//!    lags `0..=min(400, n − 1)` (statsmodels returns all `n` lags when `n ≤ 400`);
//! 3. drop lags 0, 1, 2 (`base = 3`), so index `i` is lag `i + 3`;
//! 4. strict local maxima, end points excluded (scipy `argrelextrema(…, np.greater)`);
//! 5. take the largest; if its index `i < 3` or `i > 300` return 125, else `i + 3` (so results
//!    lie in `6..=303` or are 125);
//! 6. no local maximum (short, monotone or constant series, NaN) → 125.
//!
//! The ACF is summed directly in `f64` rather than by FFT; on exact ties between local maxima
//! the smallest lag wins (numpy's unstable `argsort` leaves that case unspecified).

/// Fallback period of TSB-AD.
pub const DEFAULT_PERIOD: usize = 125;

/// Autocorrelation at lags `0..=min(nlags, n − 1)`: demeaned, biased (denominator n), as
/// statsmodels `acf(x, nlags, fft=True)`. Empty for an empty input; all NaN when the
/// variance is 0 or the input is not finite.
pub fn acf(x: &[f64], nlags: usize) -> Vec<f64> {
    let n = x.len();
    if n == 0 {
        return Vec::new();
    }
    let mean = compensated_sum(x.iter().copied()) / n as f64;
    let xo: Vec<f64> = x.iter().map(|v| v - mean).collect();
    let lags = nlags.min(n - 1);
    let c0 = compensated_sum(xo.iter().map(|v| v * v));
    (0..=lags)
        .map(|k| {
            if k == 0 {
                // 1, or NaN like numpy's 0/0 for a constant (or non-finite) series.
                if c0.is_finite() && c0 != 0.0 {
                    1.0
                } else {
                    f64::NAN
                }
            } else {
                compensated_sum(xo[k..].iter().zip(&xo[..n - k]).map(|(a, b)| a * b)) / c0
            }
        })
        .collect()
}

/// Neumaier-compensated sum.
fn compensated_sum(it: impl Iterator<Item = f64>) -> f64 {
    let (mut s, mut c) = (0.0f64, 0.0f64);
    for v in it {
        let t = s + v;
        if s.abs() >= v.abs() {
            c += (s - t) + v;
        } else {
            c += (v - t) + s;
        }
        s = t;
    }
    s + c
}

/// TSB-AD 1.5 `find_length_rank(x, rank=1)` for a univariate series; see the module
/// documentation. Returns [`DEFAULT_PERIOD`] (125) when no period is found.
pub fn find_length_rank(x: &[f64]) -> usize {
    const BASE: usize = 3;
    let x = &x[..x.len().min(20_000)];
    let ac = acf(x, 400);
    let Some(a) = ac.get(BASE..) else {
        return DEFAULT_PERIOD;
    };
    let mut best: Option<(usize, f64)> = None;
    for i in 1..a.len().saturating_sub(1) {
        let v = a[i];
        if v > a[i - 1]
            && v > a[i + 1]
            && match best {
                None => true,
                Some((_, b)) => v > b,
            }
        {
            best = Some((i, v));
        }
    }
    match best {
        Some((i, _)) if (3..=300).contains(&i) => i + BASE,
        _ => DEFAULT_PERIOD,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sine_period() {
        let x: Vec<f64> = (0..2000).map(|t| (t as f64 * 2.0 * std::f64::consts::PI / 50.0).sin()).collect();
        assert_eq!(find_length_rank(&x), 50);
    }

    #[test]
    fn degenerate_inputs() {
        assert_eq!(find_length_rank(&[]), 125);
        assert_eq!(find_length_rank(&[1.0]), 125);
        assert_eq!(find_length_rank(&[1.0; 1000]), 125);
        assert_eq!(find_length_rank(&[f64::NAN; 10]), 125);
        let ramp: Vec<f64> = (0..1000).map(|t| t as f64).collect();
        assert_eq!(find_length_rank(&ramp), 125);
        // Short series: statsmodels returns all n lags.
        assert_eq!(acf(&[1.0, 2.0, 3.0], 400).len(), 3);
    }

    #[test]
    fn off_by_base_range() {
        // Period 5 → index 2 < 3 → 125 (TSB-AD 1.5 as written).
        let x: Vec<f64> = (0..3000).map(|t| (t as f64 * 2.0 * std::f64::consts::PI / 5.0).sin()).collect();
        assert_eq!(find_length_rank(&x), 125);
        // Period 6 → index 3 → 6.
        let x: Vec<f64> = (0..3000).map(|t| (t as f64 * 2.0 * std::f64::consts::PI / 6.0).sin()).collect();
        assert_eq!(find_length_rank(&x), 6);
    }

    #[test]
    fn acf_matches_definition() {
        // numpy: x = [1, 3, 2, 5, 4]; xo = x - 3; acf lag1 = (-2*0 + 0*-1 + -1*2 + 2*1)/10 = 0.0
        let a = acf(&[1.0, 3.0, 2.0, 5.0, 4.0], 2);
        assert_eq!(a.len(), 3);
        assert!((a[0] - 1.0).abs() < 1e-15 && a[1].abs() < 1e-15);
        // lag 2: (-2*-1 + 0*2 + -1*1)/10 = 0.1
        assert!((a[2] - 0.1).abs() < 1e-15);
    }
}
