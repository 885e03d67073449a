//! Range-based precision / recall / F1 (Tatbul et al. 2018) as TSB-AD's `range_recall_new`.

use crate::{linspace_thresholds, runs};

/// Ranges of `mask` as TSB-AD `range_convers_new`: the maximal runs of `true`, except that a
/// mask that is `true` everywhere has no range at all (its `np.diff` has no edge).
pub fn tsbad_ranges(mask: &[bool]) -> Vec<(usize, usize)> {
    if mask.iter().all(|&m| m) {
        Vec::new()
    } else {
        runs(mask.iter().copied())
    }
}

/// A 0/1 mask as `range_recall_new` reads it: its ranges ([`tsbad_ranges`]) and, for counting
/// the `true` points of any span, `before[i]` = number of `true` among `0..i`.
struct MaskSummary {
    ranges: Vec<(usize, usize)>,
    before: Vec<usize>,
}

impl MaskSummary {
    fn new(mask: impl ExactSizeIterator<Item = bool>) -> Self {
        let n = mask.len();
        let mut before = Vec::with_capacity(n + 1);
        let mut ranges = Vec::new();
        let (mut count, mut start) = (0usize, None);
        before.push(0);
        for (i, m) in mask.enumerate() {
            count += usize::from(m);
            before.push(count);
            match (m, start) {
                (true, None) => start = Some(i),
                (false, Some(s)) => {
                    ranges.push((s, i - 1));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            // A mask true everywhere has no range under `range_convers_new`.
            if s > 0 {
                ranges.push((s, n - 1));
            }
        }
        MaskSummary { ranges, before }
    }

    fn count_in(&self, s: usize, e: usize) -> usize {
        self.before[e + 1] - self.before[s]
    }
}

/// `range_recall_new(real, pred, alpha)` on summarised masks of equal length.
fn recall_of(real: &MaskSummary, pred: &MaskSummary, alpha: f64) -> f64 {
    if real.ranges.is_empty() {
        return 0.0;
    }
    let pred_ranges = &pred.ranges;
    let mut existence = 0usize;
    let mut overlap = 0.0f64;
    // Predicted ranges intersecting [s, e] are pred_ranges[first..past]: those ending at or
    // after s and starting at or before e. Both range lists are sorted and disjoint, so both
    // bounds only move forward.
    let (mut first, mut past) = (0, 0);
    for &(s, e) in &real.ranges {
        // TSB-AD counts predicted points on the raw mask, not on its ranges.
        let hits = pred.count_in(s, e);
        if hits > 0 {
            existence += 1;
        }
        while first < pred_ranges.len() && pred_ranges[first].1 < s {
            first += 1;
        }
        while past < pred_ranges.len() && pred_ranges[past].0 <= e {
            past += 1;
        }
        let crossing = past.saturating_sub(first);
        let cardinality = if crossing == 0 { 0.0 } else { 1.0 / crossing as f64 };
        overlap += hits as f64 / (e - s + 1) as f64 * cardinality;
    }
    let score = alpha * existence as f64 + (1.0 - alpha) * overlap;
    score / real.ranges.len() as f64
}

/// Range recall as TSB-AD `range_recall_new(real, pred, alpha)` with flat bias: the mean over
/// the ranges `R` of `real` of `alpha·Exist(R) + (1−alpha)·|R ∩ pred|/|R| · Card(R)`, where
/// `Card(R)` is `1/k` for `k` overlapping ranges of `pred` (0 when none; the overlap test is
/// `Cardinality_factor`'s four conditions, which amount to the ranges intersecting). 0 when
/// `real` has no range (see [`tsbad_ranges`]). Range precision is the same call with the roles
/// swapped and `alpha = 0`. Masks of different lengths are cut to the shorter.
pub fn range_recall(real: &[bool], pred: &[bool], alpha: f64) -> f64 {
    let n = real.len().min(pred.len());
    recall_of(&MaskSummary::new(real[..n].iter().copied()), &MaskSummary::new(pred[..n].iter().copied()), alpha)
}

/// `(precision, recall)` of TSB-AD `metric_RF1` for one prediction: recall is
/// `range_recall_new(label, pred, 0.2)`, precision is `range_recall_new(pred, label, 0)`.
pub fn range_precision_recall(labels: &[u8], pred: &[bool]) -> (f64, f64) {
    let n = labels.len().min(pred.len());
    let real = MaskSummary::new(labels[..n].iter().map(|&l| l == 1));
    let pred = MaskSummary::new(pred[..n].iter().copied());
    (recall_of(&pred, &real, 0.0), recall_of(&real, &pred, 0.2))
}

/// `2PR/(P+R)`, 0 when `P + R == 0` (TSB-AD `metric_RF1`).
fn f1_of(precision: f64, recall: f64) -> f64 {
    if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * recall * precision / (precision + recall)
    }
}

/// Range F1 of one prediction, as TSB-AD `metric_RF1(label, score, preds=pred)`.
pub fn range_f1_of(labels: &[u8], pred: &[bool]) -> f64 {
    let (p, r) = range_precision_recall(labels, pred);
    f1_of(p, r)
}

/// Best range-based F1 over the 100 linspace thresholds (prediction `score > thr`), as TSB-AD
/// `metric_RF1` without `preds`. O(n) per threshold.
///
/// `None` when the labels hold no anomaly (or the series is empty; TSB-AD would return 0).
/// All-anomaly labels give 0, as in TSB-AD (they have no range under `range_convers_new`).
pub fn range_f1(labels: &[u8], scores: &[f64]) -> Option<f64> {
    let n = labels.len().min(scores.len());
    let (labels, scores) = (&labels[..n], &scores[..n]);
    if !labels.contains(&1) {
        return None;
    }
    let real = MaskSummary::new(labels.iter().map(|&l| l == 1));
    let best = linspace_thresholds(scores).into_iter().fold(0.0f64, |best, thr| {
        let pred = MaskSummary::new(scores.iter().map(|&s| s > thr));
        let precision = recall_of(&pred, &real, 0.0);
        let recall = recall_of(&real, &pred, 0.2);
        best.max(f1_of(precision, recall))
    });
    Some(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_range_convers_new() {
        assert_eq!(tsbad_ranges(&[true, false, true, true]), vec![(0, 0), (2, 3)]);
        assert_eq!(tsbad_ranges(&[true, true]), vec![]);
        assert_eq!(tsbad_ranges(&[true]), vec![]);
        assert_eq!(tsbad_ranges(&[false, false]), vec![]);
    }

    #[test]
    fn mask_summary_agrees_with_tsbad_ranges() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for _ in 0..500 {
            let n = rng.gen_range(1..30);
            let p = rng.gen_range(0.0..=1.0);
            let mask: Vec<bool> = (0..n).map(|_| rng.gen_bool(p)).collect();
            let summary = MaskSummary::new(mask.iter().copied());
            assert_eq!(summary.ranges, tsbad_ranges(&mask), "{mask:?}");
            assert_eq!(summary.before[n], mask.iter().filter(|&&m| m).count());
        }
    }

    #[test]
    fn cardinality_splits_overlap() {
        // One real range [1, 6] touched by two predicted ranges covering 4 of its 6 points.
        let real = [false, true, true, true, true, true, true, false];
        let pred = [false, true, true, false, false, true, true, true];
        let r = range_recall(&real, &pred, 0.2);
        assert!((r - (0.2 + 0.8 * (4.0 / 6.0) * 0.5)).abs() < 1e-15);
    }

    #[test]
    fn all_anomaly_labels_give_zero() {
        assert_eq!(range_f1(&[1, 1, 1], &[0.1, 0.5, 0.2]), Some(0.0));
        assert_eq!(range_f1(&[0, 0, 0], &[0.1, 0.5, 0.2]), None);
    }
}
