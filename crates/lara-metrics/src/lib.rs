//! Time-series anomaly-detection metrics, computed exactly as TSB-AD 1.5's `get_metrics`
//! (and the reference affiliation / PA%K / POT code), plus label-free thresholds.
//!
//! Conventions shared by every function here:
//! - `labels` are 0/1 bytes, `scores` are `f64` of the same length (callers validate lengths
//!   through [`check_inputs`]).
//! - "Oracle" threshold-dependent metrics sweep thresholds exactly like TSB-AD: see
//!   [`linspace_thresholds`] (100 thresholds, prediction `score > thr`).
//! - A metric that TSB-AD leaves undefined (it raises or returns NaN, e.g. AUC with a single
//!   class) is returned as `None` here; the CLI prints it as `null` / `n/a`.

pub mod affiliation;
pub mod alarms;
pub mod f1;
pub mod pak;
pub mod range;
pub mod ranking;
pub mod suite;
pub mod threshold;
pub mod vus;

pub use alarms::{alarm_quality, AlarmQuality};
pub use suite::{evaluate, MetricSuite};

/// Errors from metric inputs.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetricsError {
    #[error("labels have {labels} entries but scores have {scores}")]
    LengthMismatch { labels: usize, scores: usize },
    #[error("the series is empty")]
    Empty,
    #[error("score at index {index} is not finite ({value})")]
    NonFiniteScore { index: usize, value: f64 },
    #[error("label at index {index} is {value}, expected 0 or 1")]
    BadLabel { index: usize, value: u8 },
}

/// Validates that labels and scores have the same non-zero length, labels are 0/1 and
/// scores are finite.
pub fn check_inputs(labels: &[u8], scores: &[f64]) -> Result<(), MetricsError> {
    if labels.len() != scores.len() {
        return Err(MetricsError::LengthMismatch { labels: labels.len(), scores: scores.len() });
    }
    if labels.is_empty() {
        return Err(MetricsError::Empty);
    }
    if let Some((index, &value)) = labels.iter().enumerate().find(|(_, &l)| l > 1) {
        return Err(MetricsError::BadLabel { index, value });
    }
    if let Some((index, &value)) = scores.iter().enumerate().find(|(_, s)| !s.is_finite()) {
        return Err(MetricsError::NonFiniteScore { index, value });
    }
    Ok(())
}

/// `np.linspace(start, stop, num)` bit-for-bit: `start + i * ((stop - start) / (num - 1))`,
/// with the last element set to `stop` exactly.
pub fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    match num {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let step = (stop - start) / (num - 1) as f64;
            let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
            v[num - 1] = stop;
            v
        }
    }
}

/// The 100 oracle thresholds TSB-AD sweeps for PA-F1, Event-F1, R-F1 and Affiliation-F:
/// `np.linspace(min(score), max(score), 100)`.
pub fn linspace_thresholds(scores: &[f64]) -> Vec<f64> {
    let (mn, mx) = scores.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &s| (a.min(s), b.max(s)));
    linspace(mn, mx, 100)
}

/// Maximal runs `[start, end]` (inclusive) of `true` in `mask`.
pub fn runs(mask: impl IntoIterator<Item = bool>) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    let mut n = 0;
    for (i, m) in mask.into_iter().enumerate() {
        n = i + 1;
        match (m, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i - 1));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, n - 1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_matches_numpy_endpoints() {
        let v = linspace(0.1, 0.9, 100);
        assert_eq!(v[0], 0.1);
        assert_eq!(v[99], 0.9);
        assert_eq!(v.len(), 100);
    }

    #[test]
    fn runs_finds_segments() {
        let m = [true, true, false, true, false, false, true];
        assert_eq!(runs(m), vec![(0, 1), (3, 3), (6, 6)]);
        assert_eq!(runs([false; 3]), vec![]);
    }

    #[test]
    fn check_inputs_rejects_bad_input() {
        assert_eq!(check_inputs(&[0, 1], &[0.0]), Err(MetricsError::LengthMismatch { labels: 2, scores: 1 }));
        assert_eq!(check_inputs(&[], &[]), Err(MetricsError::Empty));
        assert!(matches!(check_inputs(&[0, 2], &[0.0, 1.0]), Err(MetricsError::BadLabel { index: 1, value: 2 })));
        assert!(matches!(check_inputs(&[0, 1], &[0.0, f64::NAN]), Err(MetricsError::NonFiniteScore { index: 1, .. })));
    }
}
