//! PA%K (Kim et al., "Towards a Rigorous Evaluation of Time-Series Anomaly Detection",
//! AAAI 2022), as the reference `tuslkkk/tadpak` `pak.py`.
//!
//! A true anomaly segment of length `L` with `c` detected points is fully marked as detected
//! only when `c > K/100 · L`. `K = 0` is plain point adjustment (one hit adjusts the segment),
//! `K = 100` never adjusts (the raw prediction).

use crate::f1::f1_from_counts;

/// The `K` values of the PA%K curve: 0, 10, …, 100.
pub const PAK_KS: [f64; 11] = [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0];

/// PA%K-adjusted prediction (reference `pak`): every true segment (maximal run of
/// `label > 0`) whose detected count exceeds `k / 100 · length` is set entirely to `true`;
/// everything else is `pred` unchanged. If the lengths differ, only the common prefix is
/// considered and the result has `pred`'s length.
pub fn pa_k_adjust(labels: &[u8], pred: &[bool], k: f64) -> Vec<bool> {
    let mut adjusted = pred.to_vec();
    let n = labels.len().min(pred.len());
    for (start, end) in crate::runs(labels[..n].iter().map(|&l| l > 0)) {
        let segment = &mut adjusted[start..=end];
        let detected = segment.iter().filter(|&&p| p).count();
        if detected as f64 > k / 100.0 * segment.len() as f64 {
            segment.fill(true);
        }
    }
    adjusted
}

/// F1 of the PA%K-adjusted prediction against the labels, as `sklearn.metrics.f1_score`:
/// `2·TP / (2·TP + FP + FN)`, and 0 when that denominator is 0 (sklearn's `zero_division`
/// default). Lengths are truncated to the shorter input.
pub fn pa_k_f1(labels: &[u8], pred: &[bool], k: f64) -> f64 {
    let n = labels.len().min(pred.len());
    let adjusted = pa_k_adjust(&labels[..n], &pred[..n], k);
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    for (&l, &p) in labels[..n].iter().zip(&adjusted) {
        match (l > 0, p) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (true, false) => fn_ += 1,
            (false, false) => {}
        }
    }
    f1_from_counts(tp, fp, fn_)
}

/// The PA%K curve of a score vector with oracle thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct PaKCurve {
    /// `K` values ([`PAK_KS`]).
    pub ks: Vec<f64>,
    /// For each `K`, the best [`pa_k_f1`] over the 100 thresholds of
    /// [`crate::linspace_thresholds`] (prediction `score > thr`); the best threshold is chosen
    /// separately for each `K`.
    pub best_f1: Vec<f64>,
    /// Trapezoidal area under `best_f1` against `K / 100` (so in `[0, 1]`).
    pub auc: f64,
}

/// PA%K curve: for each `K` in 0, 10, …, 100 the best PA%K F1 over the 100 linspace oracle
/// thresholds (`score > thr`, as TSB-AD's PA-F1), and the trapezoidal area under F1 vs `K/100`.
/// Each threshold costs `O(n)` once, then `O(#segments)` per `K`.
///
/// `None` when the labels hold no anomaly, the inputs are empty, their lengths differ, or a
/// score is not finite.
pub fn pa_k_curve(labels: &[u8], scores: &[f64]) -> Option<PaKCurve> {
    if labels.len() != scores.len() || labels.is_empty() || scores.iter().any(|s| !s.is_finite()) {
        return None;
    }
    let segments = crate::runs(labels.iter().map(|&l| l > 0));
    if segments.is_empty() {
        return None;
    }
    let anomalous: usize = segments.iter().map(|(s, e)| e - s + 1).sum();
    let mut best_f1 = vec![0.0f64; PAK_KS.len()];
    let mut detected = vec![0usize; segments.len()];
    for thr in crate::linspace_thresholds(scores) {
        let predicted_positive = scores.iter().filter(|&&s| s > thr).count();
        for (count, &(start, end)) in detected.iter_mut().zip(&segments) {
            *count = scores[start..=end].iter().filter(|&&s| s > thr).count();
        }
        let detected_total: usize = detected.iter().sum();
        let fp = predicted_positive - detected_total;
        for (best, &k) in best_f1.iter_mut().zip(&PAK_KS) {
            let tp: usize = detected
                .iter()
                .zip(&segments)
                .map(|(&c, &(start, end))| {
                    let length = end - start + 1;
                    if c as f64 > k / 100.0 * length as f64 {
                        length
                    } else {
                        c
                    }
                })
                .sum();
            let f1 = f1_from_counts(tp, fp, anomalous - tp);
            if f1 > *best {
                *best = f1;
            }
        }
    }
    let auc = PAK_KS.windows(2).zip(best_f1.windows(2)).map(|(k, f)| (k[1] - k[0]) / 100.0 * (f[0] + f[1]) / 2.0).sum();
    Some(PaKCurve { ks: PAK_KS.to_vec(), best_f1, auc })
}

/// Area under the PA%K curve ([`pa_k_curve`]`.auc`): trapezoidal area of the best oracle F1
/// against `K / 100` for `K` = 0, 10, …, 100; `None` where [`pa_k_curve`] is.
pub fn pa_k_auc(labels: &[u8], scores: &[f64]) -> Option<f64> {
    pa_k_curve(labels, scores).map(|c| c.auc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bools(v: &[u8]) -> Vec<bool> {
        v.iter().map(|&x| x > 0).collect()
    }

    // Two segments: [2..=5] (length 4) and [8..=9] (length 2).
    const LABELS: [u8; 12] = [0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0];

    #[test]
    fn k_zero_is_point_adjust_and_k_hundred_is_raw() {
        let pred = bools(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(pa_k_adjust(&LABELS, &pred, 0.0), bools(&[1, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]));
        assert_eq!(pa_k_adjust(&LABELS, &pred, 100.0), pred);
        let all = bools(&LABELS);
        assert_eq!(pa_k_adjust(&LABELS, &all, 100.0), all);
    }

    #[test]
    fn threshold_is_strict() {
        // 2 of 4 detected: adjusted for K < 50 (2 > 1.96), not for K = 50 (2 > 2 is false).
        let pred = bools(&[0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(pa_k_adjust(&LABELS, &pred, 49.0)[2..6], [true; 4]);
        assert_eq!(pa_k_adjust(&LABELS, &pred, 50.0), pred);
    }

    #[test]
    fn f1_by_hand() {
        // Segment 1 has 2/4 detected, segment 2 has 1/2, plus one false positive at 0.
        let pred = bools(&[1, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0]);
        // K = 0: TP = 6, FP = 1, FN = 0 -> 12/13.
        assert!((pa_k_f1(&LABELS, &pred, 0.0) - 12.0 / 13.0).abs() < 1e-15);
        // K = 50: nothing adjusted: TP = 3, FP = 1, FN = 3 -> 6/10.
        assert!((pa_k_f1(&LABELS, &pred, 50.0) - 0.6).abs() < 1e-15);
        // K = 40: segment 1 (2 > 1.6) and segment 2 (1 > 0.8) adjusted -> 12/13.
        assert!((pa_k_f1(&LABELS, &pred, 40.0) - 12.0 / 13.0).abs() < 1e-15);
        // No positives at all -> 0 (sklearn zero_division).
        assert_eq!(pa_k_f1(&[0, 0], &[false, false], 0.0), 0.0);
    }

    #[test]
    fn curve_by_hand() {
        // Scores: the segment [2..=5] has one clear hit, everything else is low.
        let labels = [0u8, 0, 1, 1, 1, 1, 0, 0];
        let scores = [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let curve = pa_k_curve(&labels, &scores).unwrap();
        // Any threshold in [0, 1) predicts index 2 only: 1/4 detected.
        // K < 25: adjusted, F1 = 1. K >= 30: TP = 1, FN = 3 -> 2/5.
        let want = [1.0, 1.0, 1.0, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4];
        for (got, want) in curve.best_f1.iter().zip(want) {
            assert!((got - want).abs() < 1e-15, "{:?}", curve.best_f1);
        }
        // Area: 0.2 * 1 + 0.1 * 0.7 + 0.7 * 0.4 = 0.55.
        assert!((curve.auc - 0.55).abs() < 1e-12, "{}", curve.auc);
        assert_eq!(pa_k_auc(&labels, &scores), Some(curve.auc));
    }

    #[test]
    fn curve_matches_direct_evaluation() {
        let labels = [0u8, 1, 1, 1, 0, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 1, 1, 0];
        let scores = [0.1, 0.9, 0.2, 0.4, 0.3, 0.8, 0.7, 0.1, 0.05, 0.6, 0.5, 0.2, 0.3, 0.35, 0.9, 0.1, 0.2, 0.0];
        let curve = pa_k_curve(&labels, &scores).unwrap();
        for (i, &k) in PAK_KS.iter().enumerate() {
            let direct = crate::linspace_thresholds(&scores)
                .into_iter()
                .map(|thr| {
                    let pred: Vec<bool> = scores.iter().map(|&s| s > thr).collect();
                    pa_k_f1(&labels, &pred, k)
                })
                .fold(0.0, f64::max);
            assert!((curve.best_f1[i] - direct).abs() < 1e-15, "K = {k}");
        }
        // F1 is non-increasing in K.
        assert!(curve.best_f1.windows(2).all(|w| w[0] >= w[1]));
    }

    #[test]
    fn undefined_inputs() {
        assert_eq!(pa_k_auc(&[0, 0], &[0.1, 0.2]), None);
        assert_eq!(pa_k_auc(&[0, 1], &[0.1]), None);
        assert_eq!(pa_k_auc(&[0, 1], &[0.1, f64::NAN]), None);
        // Constant scores: nothing is ever predicted, every F1 is 0.
        assert_eq!(pa_k_auc(&[0, 1], &[0.5, 0.5]), Some(0.0));
    }
}
