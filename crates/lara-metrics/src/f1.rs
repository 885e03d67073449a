//! Point-wise F1 family: Standard-F1, point-adjusted F1 (PA-F1) and Event-based F1.

use crate::ranking::binary_clf_curve;
use crate::{linspace_thresholds, runs};

/// Number of anomaly labels; the F1 family is `None` when it is zero.
fn positives(labels: &[u8]) -> usize {
    labels.iter().filter(|&&l| l == 1).count()
}

/// Scores sorted ascending, for counting how many exceed a threshold.
fn sorted_ascending(values: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = values.into_iter().collect();
    v.sort_unstable_by(f64::total_cmp);
    v
}

/// How many entries of the ascending `sorted` are strictly greater than `thr`.
fn count_above(sorted: &[f64], thr: f64) -> usize {
    sorted.len() - sorted.partition_point(|&s| s <= thr)
}

/// Best F1 over every distinct score threshold, as TSB-AD `metric_PointF1` without `preds`:
/// the points of sklearn's `precision_recall_curve` (plus its final `P = 1, R = 0` point),
/// with `F1 = 2PR/(P+R+1e-5)`.
///
/// `None` when the labels hold no anomaly (or the series is empty).
pub fn standard_f1(labels: &[u8], scores: &[f64]) -> Option<f64> {
    let curve = binary_clf_curve(labels, scores);
    let pos = curve.last()?.tp;
    if pos == 0 {
        return None;
    }
    // The appended (P = 1, R = 0) point of precision_recall_curve scores exactly 0.
    let best = curve.iter().fold(0.0f64, |best, p| {
        let precision = p.tp as f64 / (p.tp + p.fp) as f64;
        let recall = p.tp as f64 / pos as f64;
        best.max(2.0 * (precision * recall) / (precision + recall + 0.00001))
    });
    Some(best)
}

/// Point adjustment as TSB-AD `_adjust_predicts(pred=...)`: once a point of a true anomaly
/// segment is predicted, every point of that segment is marked predicted.
///
/// Replicates TSB-AD's quirk: the backward fill stops before index 0, so when a segment starts
/// at index 0 and its first detection is later, index 0 keeps its original prediction.
/// `labels` and `pred` should have equal lengths; the result has the shorter length.
pub fn point_adjust(labels: &[u8], pred: &[bool]) -> Vec<bool> {
    let n = labels.len().min(pred.len());
    let actual = |i: usize| labels[i] == 1;
    let mut out = pred[..n].to_vec();
    let mut in_detected_segment = false;
    for i in 0..n {
        if actual(i) && out[i] && !in_detected_segment {
            in_detected_segment = true;
            // Backward fill over indices i, i-1, ..., 1 (never 0), stopping at a normal point.
            for j in (1..=i).rev() {
                if !actual(j) {
                    break;
                }
                out[j] = true;
            }
        } else if !actual(i) {
            in_detected_segment = false;
        }
        if in_detected_segment {
            out[i] = true;
        }
    }
    out
}

/// sklearn `f1_score` for the positive class from counts: `2TP / (2TP + FP + FN)`, 0 when the
/// denominator is 0.
pub(crate) fn f1_from_counts(tp: usize, fp: usize, fn_: usize) -> f64 {
    let denom = 2 * tp + fp + fn_;
    if denom == 0 {
        0.0
    } else {
        (2 * tp) as f64 / denom as f64
    }
}

/// Best PA-F1 over the 100 linspace thresholds (prediction `score > thr`), as TSB-AD
/// `metric_PointF1PA` without `preds`: sklearn `f1_score` of [`point_adjust`]ed predictions.
///
/// Runs in O(segments + log n) per threshold: after adjustment a detected segment is fully
/// predicted (minus index 0 under the quirk above) and predictions outside segments are kept.
/// `None` when the labels hold no anomaly (or the series is empty).
pub fn pa_f1(labels: &[u8], scores: &[f64]) -> Option<f64> {
    let n = labels.len().min(scores.len());
    let (labels, scores) = (&labels[..n], &scores[..n]);
    let pos = positives(labels);
    if pos == 0 {
        return None;
    }
    let segments: Vec<(usize, usize, f64)> = runs(labels.iter().map(|&l| l == 1))
        .into_iter()
        .map(|(s, e)| (s, e, scores[s..=e].iter().copied().fold(f64::NEG_INFINITY, f64::max)))
        .collect();
    let normal_scores = sorted_ascending(labels.iter().zip(scores).filter(|(&l, _)| l != 1).map(|(_, &s)| s));
    let best = linspace_thresholds(scores).into_iter().fold(0.0f64, |best, thr| {
        let tp: usize = segments
            .iter()
            .filter(|&&(_, _, max)| max > thr)
            .map(|&(s, e, _)| {
                let len = e - s + 1;
                // Quirk: a segment at index 0 detected later than index 0 misses index 0.
                if s == 0 && scores[0] <= thr {
                    len - 1
                } else {
                    len
                }
            })
            .sum();
        let fp = count_above(&normal_scores, thr);
        best.max(f1_from_counts(tp, fp, pos - tp))
    });
    Some(best)
}

/// True events as TSB-AD `_get_events`: the label runs `(start, end)` inclusive, except that an
/// event running to the end of the series gets `end = n - 2` (so a one-point event at the
/// last index is empty and can never be detected).
fn tsbad_events(labels: &[u8]) -> Vec<(usize, Option<usize>)> {
    let n = labels.len();
    runs(labels.iter().map(|&l| l == 1))
        .into_iter()
        .map(|(s, e)| {
            let end = if e + 1 == n { e.checked_sub(1) } else { Some(e) };
            (s, end.filter(|&end| end >= s))
        })
        .collect()
}

/// Best Event-based F1 over the 100 linspace thresholds (prediction `score > thr`), as TSB-AD
/// `metric_EventF1PA` without `preds`: `2·Rec_e·Prec_t / (Rec_e + Prec_t + 1e-15)` with
/// `Rec_e` = detected events / events and `Prec_t` = point-wise precision (0 when nothing is
/// predicted, as sklearn `precision_score`).
///
/// Replicates the `_get_events` quirk: an event running to the end of the series loses its
/// last point. `None` when the labels hold no anomaly (or the series is empty).
pub fn event_f1(labels: &[u8], scores: &[f64]) -> Option<f64> {
    let n = labels.len().min(scores.len());
    let (labels, scores) = (&labels[..n], &scores[..n]);
    if positives(labels) == 0 {
        return None;
    }
    // Highest score of each event; `None` for an event emptied by the quirk.
    let event_max: Vec<Option<f64>> = tsbad_events(labels)
        .into_iter()
        .map(|(s, end)| end.map(|e| scores[s..=e].iter().copied().fold(f64::NEG_INFINITY, f64::max)))
        .collect();
    let n_events = event_max.len() as f64;
    let all_sorted = sorted_ascending(scores.iter().copied());
    let anomaly_sorted = sorted_ascending(labels.iter().zip(scores).filter(|(&l, _)| l == 1).map(|(_, &s)| s));
    let eps = 1e-15;
    let best = linspace_thresholds(scores).into_iter().fold(0.0f64, |best, thr| {
        let detected = event_max.iter().filter(|m| m.is_some_and(|m| m > thr)).count();
        let rec_e = detected as f64 / n_events;
        let predicted = count_above(&all_sorted, thr);
        let prec_t = if predicted == 0 { 0.0 } else { count_above(&anomaly_sorted, thr) as f64 / predicted as f64 };
        best.max(2.0 * rec_e * prec_t / (rec_e + prec_t + eps))
    });
    Some(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PA-F1 through an explicit `point_adjust` per threshold (the TSB-AD way).
    fn pa_f1_direct(labels: &[u8], scores: &[f64]) -> f64 {
        linspace_thresholds(scores)
            .into_iter()
            .map(|thr| {
                let pred: Vec<bool> = scores.iter().map(|&s| s > thr).collect();
                let adj = point_adjust(labels, &pred);
                let tp = adj.iter().zip(labels).filter(|(&p, &l)| p && l == 1).count();
                let fp = adj.iter().zip(labels).filter(|(&p, &l)| p && l != 1).count();
                let fn_ = adj.iter().zip(labels).filter(|(&p, &l)| !p && l == 1).count();
                f1_from_counts(tp, fp, fn_)
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn point_adjust_fills_segments_but_not_index_zero() {
        let labels = [1, 1, 1, 0, 1, 1, 0, 1, 1];
        let pred = [false, false, true, false, false, true, true, false, false];
        let adj = point_adjust(&labels, &pred);
        assert_eq!(adj, vec![false, true, true, false, true, true, true, false, false]);
        // Detected at index 0 itself: the whole segment.
        let adj = point_adjust(&[1, 1, 0], &[true, false, false]);
        assert_eq!(adj, vec![true, true, false]);
    }

    #[test]
    fn fast_pa_f1_equals_direct_adjustment() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..200 {
            let n = rng.gen_range(1..80);
            let labels: Vec<u8> = (0..n).map(|_| u8::from(rng.gen_bool(0.3))).collect();
            let scores: Vec<f64> = (0..n).map(|_| f64::from(rng.gen_range(0..6u8)) / 5.0).collect();
            match pa_f1(&labels, &scores) {
                None => assert!(labels.iter().all(|&l| l == 0)),
                Some(f) => assert!((f - pa_f1_direct(&labels, &scores)).abs() < 1e-12),
            }
        }
    }

    #[test]
    fn event_quirk_drops_last_point() {
        assert_eq!(tsbad_events(&[0, 1, 1, 0, 1, 1]), vec![(1, Some(2)), (4, Some(4))]);
        assert_eq!(tsbad_events(&[0, 0, 1]), vec![(2, None)]);
        // The only event is the last point: never detected, so F1 is 0.
        assert_eq!(event_f1(&[0, 0, 1], &[0.1, 0.2, 0.9]), Some(0.0));
    }

    #[test]
    fn no_anomaly_is_none() {
        let l = [0, 0, 0];
        let s = [0.1, 0.5, 0.2];
        assert_eq!(standard_f1(&l, &s), None);
        assert_eq!(pa_f1(&l, &s), None);
        assert_eq!(event_f1(&l, &s), None);
    }

    #[test]
    fn constant_scores_match_tsbad() {
        // TSB-AD: PointF1 0.6666622222518517, PA-F1 0, Event-F1 0 (nothing is `> thr`).
        let l = [0, 1, 1, 0, 0, 1];
        let s = [0.0; 6];
        assert!((standard_f1(&l, &s).unwrap() - 0.6666622222518517).abs() < 1e-15);
        assert_eq!(pa_f1(&l, &s), Some(0.0));
        assert_eq!(event_f1(&l, &s), Some(0.0));
    }
}
