//! Affiliation precision / recall (Huet, Navarro, Rossi, KDD 2022, "Local Evaluation of Time
//! Series Anomaly Detection Algorithms"), computed as the reference `affiliation-metrics-py`
//! vendored in TSB-AD 1.5 (`TSB_AD/evaluation/affiliation`), and TSB-AD's oracle
//! `metric_Affiliation`.
//!
//! Model (paper §3–4):
//! - Point `i` flagged in a 0/1 vector is the half-open interval `[i, i+1)`; runs merge into
//!   events `(start, last + 1)`. The time range is `T = (0, n)`.
//! - Ground-truth (GT) event `J_j` owns the affiliation zone `E_j`, bounded by the midpoints
//!   between consecutive GT events (the first zone starts at 0, the last ends at `n`).
//! - Precision of `J_j`: mean over predicted pieces `x ∈ I ∩ E_j` of the survival function
//!   `F̄(d(x, J_j))` of the distance from a uniform random point of `E_j` to `J_j` (NaN when no
//!   prediction falls in `E_j`). Recall of `J_j`: mean over `y ∈ J_j` of the survival of the
//!   distance from a uniform random point of `E_j` to `y`, evaluated at `d(y, I)` (0 when no
//!   prediction falls in `E_j`).
//! - Both integrals have closed forms; every step below is one reference function evaluated in
//!   the same floating-point order, so values match the Python to the last bits in practice.
//!
//! Cost: `O(n)` to build events plus `O(#pred events + #GT events)` per prediction, so the
//! 100-threshold oracle of [`affiliation_f`] is `O(100 · n)`.

/// A closed interval `(start, stop)` with `start <= stop` (reference "couple").
type Interval = (f64, f64);

/// Affiliation metrics of one prediction (reference `pr_from_events`).
#[derive(Debug, Clone, PartialEq)]
pub struct AffiliationPr {
    /// Mean of the non-NaN `individual_precision` entries; NaN when all are NaN (empty
    /// prediction).
    pub precision: f64,
    /// Mean of `individual_recall`.
    pub recall: f64,
    /// Precision probability of each GT event; NaN where no prediction falls in its zone.
    pub individual_precision: Vec<f64>,
    /// Recall probability of each GT event (0 where no prediction falls in its zone).
    pub individual_recall: Vec<f64>,
}

/// Affiliation precision / recall of the 0/1 prediction `pred` against `labels` (anomaly where
/// `label > 0`), as `pr_from_events(convert_vector_to_events(pred),
/// convert_vector_to_events(labels), (0, n))`.
///
/// `None` when `labels` holds no anomaly (the reference raises) or when the lengths differ.
/// An empty prediction gives `precision = NaN`, `recall = 0`, as the reference.
pub fn affiliation_pr(pred: &[bool], labels: &[u8]) -> Option<AffiliationPr> {
    if pred.len() != labels.len() {
        return None;
    }
    let gt = vector_to_events(labels.iter().map(|&l| l > 0));
    if gt.is_empty() {
        return None;
    }
    let zones = affiliation_zones(&gt, (0.0, labels.len() as f64));
    let predicted = vector_to_events(pred.iter().copied());
    Some(pr_from_events(&predicted, &gt, &zones))
}

/// TSB-AD `metric_Affiliation(label, score)` (no `preds`): the best affiliation F over the 100
/// oracle thresholds [`crate::linspace_thresholds`] (prediction `score > thr`), with
/// `F = 2PR / (P + R + 1e-15)`.
///
/// `None` when the labels hold no anomaly (the reference raises) or the inputs are empty or of
/// different lengths.
///
/// **Empty predictions / NaN rule.** An empty prediction has precision NaN, so its F is NaN.
/// TSB-AD takes Python's builtin `max(list)`, which keeps the first element and replaces it
/// only by a strictly greater one: a NaN in first position is returned, a NaN anywhere else is
/// skipped. The first threshold is `min(score)`, whose prediction is empty exactly when all
/// scores are equal. Hence: constant scores → NaN in TSB-AD → `None` here; otherwise the
/// maximum over the thresholds with a non-empty prediction (the last threshold, `max(score)`,
/// always predicts nothing and is skipped).
pub fn affiliation_f(labels: &[u8], scores: &[f64]) -> Option<f64> {
    if labels.len() != scores.len() || labels.is_empty() {
        return None;
    }
    let gt = vector_to_events(labels.iter().map(|&l| l > 0));
    if gt.is_empty() {
        return None;
    }
    let zones = affiliation_zones(&gt, (0.0, labels.len() as f64));
    let f_values = crate::linspace_thresholds(scores).into_iter().map(|thr| {
        let predicted = vector_to_events(scores.iter().map(|&s| s > thr));
        let pr = pr_from_events(&predicted, &gt, &zones);
        2.0 * pr.precision * pr.recall / (pr.precision + pr.recall + 1e-15)
    });
    let best = python_max(f_values)?;
    (!best.is_nan()).then_some(best)
}

/// Python's builtin `max` over floats: the first element, replaced by each later element that
/// compares strictly greater (so a leading NaN wins and later NaNs are ignored).
fn python_max(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    values.into_iter().fold(None, |best, v| match best {
        None => Some(v),
        Some(b) if v > b => Some(v),
        keep => keep,
    })
}

/// Reference `convert_vector_to_events`: maximal runs of `true`, as `(start, last + 1)`.
fn vector_to_events(mask: impl IntoIterator<Item = bool>) -> Vec<Interval> {
    crate::runs(mask).into_iter().map(|(s, e)| (s as f64, (e + 1) as f64)).collect()
}

/// Reference `get_all_E_gt_func(events, trange)`: the affiliation zone of each event, bounded
/// by the midpoints between consecutive events; the outer bounds are `trange` (written as the
/// reference's reflected midpoints `(2a - start_0 + start_0) / 2`, which are exact here).
fn affiliation_zones(events: &[Interval], trange: Interval) -> Vec<Interval> {
    let m = events.len();
    let start = |j: usize| if j == m { 2.0 * trange.1 - events[m - 1].1 } else { events[j].0 };
    let stop = |j: Option<usize>| match j {
        None => 2.0 * trange.0 - events[0].0,
        Some(j) => events[j].1,
    };
    (0..m)
        .map(|j| {
            let left = (stop(j.checked_sub(1)) + start(j)) / 2.0;
            let right = (stop(Some(j)) + start(j + 1)) / 2.0;
            (left, right)
        })
        .collect()
}

/// Reference `pr_from_events`, given the GT zones: precision / recall probabilities per GT
/// event and their averages. Predicted events are swept once against the sorted zones.
fn pr_from_events(predicted: &[Interval], gt: &[Interval], zones: &[Interval]) -> AffiliationPr {
    let mut individual_precision = Vec::with_capacity(gt.len());
    let mut individual_recall = Vec::with_capacity(gt.len());
    let mut first = 0; // first predicted event that may still reach the current zone
    let mut pieces: Vec<Interval> = Vec::new();
    for (&j, &e) in gt.iter().zip(zones) {
        while first < predicted.len() && predicted[first].1 < e.0 {
            first += 1;
        }
        pieces.clear();
        for &i in predicted[first..].iter().take_while(|i| i.0 <= e.1) {
            if let Some(piece) = intersection(i, e) {
                pieces.push(piece);
            }
        }
        individual_precision.push(precision_proba(&pieces, j, e));
        individual_recall.push(recall_proba(&pieces, j, e));
    }
    let defined: Vec<f64> = individual_precision.iter().copied().filter(|p| !p.is_nan()).collect();
    let precision =
        if defined.is_empty() { f64::NAN } else { python_sum(defined.iter().copied()) / defined.len() as f64 };
    let recall = python_sum(individual_recall.iter().copied()) / individual_recall.len() as f64;
    AffiliationPr { precision, recall, individual_precision, individual_recall }
}

/// Left-to-right sum, as Python's `sum`.
fn python_sum(values: impl IntoIterator<Item = f64>) -> f64 {
    values.into_iter().fold(0.0, |acc, v| acc + v)
}

/// Reference `affiliation_precision_proba(Is, J, E)`: `Σ ∫_{x∈I} F̄(d(x, J)) dx / Σ |I|` over the
/// prediction pieces inside `E`; NaN when there is none.
fn precision_proba(pieces: &[Interval], j: Interval, e: Interval) -> f64 {
    if pieces.is_empty() {
        return f64::NAN;
    }
    let integral = python_sum(pieces.iter().map(|&i| integral_interval_probacdf_precision(i, j, e)));
    let length = python_sum(pieces.iter().map(|i| i.1 - i.0));
    integral / length
}

/// Reference `affiliation_recall_proba(Is, J, E)`: `J` is split by the zones of the pieces
/// inside `E` (each part paired with its closest piece), then
/// `Σ_parts ∫_{y∈part} F̄_y(d(y, I)) dy / |J|`; 0 when there is no piece.
fn recall_proba(pieces: &[Interval], j: Interval, e: Interval) -> f64 {
    if pieces.is_empty() {
        return 0.0;
    }
    let piece_zones = affiliation_zones(pieces, e);
    let integral = python_sum(pieces.iter().zip(&piece_zones).map(|(&i, &zone)| {
        intersection(j, zone).map_or(0.0, |j_part| integral_interval_probacdf_recall(i, j_part, e))
    }));
    integral / (j.1 - j.0)
}

/// Reference `interval_intersection`: `None` when empty or a single point.
fn intersection(a: Interval, b: Interval) -> Option<Interval> {
    let (lo, hi) = (a.0.max(b.0), a.1.min(b.1));
    (lo < hi).then_some((lo, hi))
}

/// Reference `cut_into_three_func(I, J)`: the parts of `I` before `J`, inside `J`, after `J`.
/// Parts may be single points (e.g. `(J.start, J.start)`); they integrate to 0 downstream.
fn cut_into_three(i: Interval, j: Interval) -> (Option<Interval>, Option<Interval>, Option<Interval>) {
    let inter = intersection(i, j);
    match inter {
        Some(x) if x == i => (None, Some(i), None),
        _ if i.1 <= j.0 => (Some(i), None, None),
        _ if i.0 >= j.1 => (None, None, Some(i)),
        Some(x) if i.0 <= j.0 && i.1 >= j.1 => (Some((i.0, x.0)), Some(x), Some((x.1, i.1))),
        Some(x) if i.0 <= j.0 => (Some((i.0, x.0)), Some(x), None),
        Some(x) if i.1 >= j.1 => (None, Some(x), Some((x.1, i.1))),
        // Unreachable for non-empty intervals (the reference raises here).
        _ => (None, inter, None),
    }
}

/// Reference `integral_mini_interval_P_CDFmethod__min_piece`: `∫_{d_min}^{d_max} min(m, x) dx`
/// for `I` outside `J`, with `m = min(J.start − E.start, E.stop − J.stop)`.
fn integral_mini_interval_p_cdfmethod_min_piece(i: Interval, j: Interval, e: Interval) -> f64 {
    let (d_min, d_max) = precision_distance_range(i, j);
    let m = (j.0 - e.0).min(e.1 - j.1);
    let a = d_max.min(m).powi(2) - d_min.min(m).powi(2);
    let b = d_max.max(m) - d_min.max(m);
    0.5 * a + m * b
}

/// Smallest and largest distance `d(x, J)` for `x ∈ I`, `I` outside `J`.
fn precision_distance_range(i: Interval, j: Interval) -> (f64, f64) {
    let d_min = (i.0 - j.1).max(j.0 - i.1);
    let d_max = (i.1 - j.1).max(j.0 - i.0);
    (d_min, d_max)
}

/// Reference `integral_mini_interval_Pprecision_CDFmethod`: `∫_{x∈I} F̄(d(x, J)) dx` for `I`
/// outside `J` (paper eq. for the precision survival function
/// `F̄(d) = 1 − (|J| + d + min(d, m)) / |E|`).
fn integral_mini_interval_pprecision_cdfmethod(i: Interval, j: Interval, e: Interval) -> f64 {
    let min_piece = integral_mini_interval_p_cdfmethod_min_piece(i, j, e);
    let (d_min, d_max) = precision_distance_range(i, j);
    let linear_piece = 0.5 * (d_max.powi(2) - d_min.powi(2));
    let remaining_piece = (j.1 - j.0) * (i.1 - i.0);
    let delta_i = i.1 - i.0;
    let delta_e = e.1 - e.0;
    delta_i - (1.0 / delta_e) * (min_piece + linear_piece + remaining_piece)
}

/// Reference `integral_interval_probaCDF_precision`: `∫_{x∈I} F̄(d(x, J)) dx` for a piece `I`
/// of the zone `E` (`F̄ = 1` inside `J`).
fn integral_interval_probacdf_precision(i: Interval, j: Interval, e: Interval) -> f64 {
    let outside = |part: Option<Interval>| part.map_or(0.0, |p| integral_mini_interval_pprecision_cdfmethod(p, j, e));
    let (before, middle, after) = cut_into_three(i, j);
    outside(before) + middle.map_or(0.0, |m| m.1 - m.0) + outside(after)
}

/// Reference `cut_J_based_on_mean_func(J, mid)`: the parts of `J` before and after `mid`.
fn cut_at(j: Option<Interval>, mid: f64) -> (Option<Interval>, Option<Interval>) {
    match j {
        None => (None, None),
        Some(j) if mid >= j.1 => (Some(j), None),
        Some(j) if mid <= j.0 => (None, Some(j)),
        Some(j) => (Some((j.0, mid)), Some((mid, j.1))),
    }
}

/// Reference `integral_mini_interval_Precall_CDFmethod`: `∫_{y∈J} F̄_y(d(y, I)) dy` for a part
/// `J` lying outside the prediction `I`, with
/// `F̄_y(d) = 1 − (min(d, y − E.start) + min(d, E.stop − y)) / |E|`; 0 when the nearest point of
/// `I` is on or outside the border of `E`.
fn integral_mini_interval_precall_cdfmethod(i: Interval, j: Interval, e: Interval) -> f64 {
    // Pivot: the point of I closest to J (reference `get_pivot_j(J, I)`).
    let pivot = if j.1 <= i.0 { i.0 } else { i.1 };
    let (e_min, e_max) = e;
    if pivot <= e_min || pivot >= e_max {
        return 0.0;
    }
    let e_mean = (e_min + e_max) / 2.0;
    let (j_before, j_after) = cut_at(Some(j), e_mean);
    let (before_close_e, before_close_i) = cut_at(j_before, (e_min + pivot) / 2.0);
    let (after_close_i, after_close_e) = cut_at(j_after, (e_max + pivot) / 2.0);

    // Each part integrates (min(d, m) + d) over t ∈ [tA, tB]; absent parts are skipped
    // (the reference's NaN parts, dropped by `_sum_wo_nan`).
    let sq = |p: Interval| p.1.powi(2) - p.0.powi(2);
    let len = |p: Interval| p.1 - p.0;
    let parts: [Option<f64>; 4] = if pivot >= j.1 {
        [
            before_close_e.map(|p| (pivot - e_min) * len(p)),
            before_close_i.map(|p| 2.0 * pivot * len(p) - sq(p)),
            after_close_i.map(|p| 2.0 * pivot * len(p) - sq(p)),
            after_close_e.map(|p| (e_max + pivot) * len(p) - sq(p)),
        ]
    } else {
        [
            before_close_e.map(|p| sq(p) - (e_min + pivot) * len(p)),
            before_close_i.map(|p| sq(p) - 2.0 * pivot * len(p)),
            after_close_i.map(|p| sq(p) - 2.0 * pivot * len(p)),
            after_close_e.map(|p| (e_max - pivot) * len(p)),
        ]
    };
    let integral_min_dm_plus_d = python_sum(parts.into_iter().flatten());
    let delta_j = j.1 - j.0;
    let delta_e = e_max - e_min;
    delta_j - (1.0 / delta_e) * integral_min_dm_plus_d
}

/// Reference `integral_interval_probaCDF_recall`: `∫_{y∈J} F̄_y(d(y, I)) dy` for the part `J`
/// of a GT event paired with the prediction piece `I` (`F̄ = 1` where `J` meets `I`).
fn integral_interval_probacdf_recall(i: Interval, j: Interval, e: Interval) -> f64 {
    let outside = |part: Option<Interval>| part.map_or(0.0, |p| integral_mini_interval_precall_cdfmethod(i, p, e));
    let (before, middle, after) = cut_into_three(j, i);
    outside(before) + middle.map_or(0.0, |m| m.1 - m.0) + outside(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bools(v: &[u8]) -> Vec<bool> {
        v.iter().map(|&x| x > 0).collect()
    }

    #[test]
    fn upstream_readme_example() {
        let pred = bools(&[0, 0, 0, 0, 1, 0, 0, 0, 1, 0]);
        let gt = [0, 0, 0, 1, 0, 0, 0, 1, 1, 1];
        let r = affiliation_pr(&pred, &gt).unwrap();
        assert!((r.precision - 0.8181818181818181).abs() < 1e-15, "{}", r.precision);
        assert!((r.recall - 0.8442760942760943).abs() < 1e-15, "{}", r.recall);
        let want_p = [0.6363636363636364, 1.0];
        let want_r = [0.8181818181818181, 0.8703703703703703];
        for (got, want) in r.individual_precision.iter().zip(want_p) {
            assert!((got - want).abs() < 1e-15, "{got} vs {want}");
        }
        for (got, want) in r.individual_recall.iter().zip(want_r) {
            assert!((got - want).abs() < 1e-15, "{got} vs {want}");
        }
    }

    #[test]
    fn zones_partition_the_range() {
        let gt = [(3.0, 4.0), (7.0, 10.0)];
        assert_eq!(affiliation_zones(&gt, (0.0, 10.0)), vec![(0.0, 5.5), (5.5, 10.0)]);
        let pieces = [(4.0, 5.0)];
        assert_eq!(affiliation_zones(&pieces, (0.0, 5.5)), vec![(0.0, 5.5)]);
    }

    #[test]
    fn empty_prediction_gives_nan_precision_and_zero_recall() {
        let r = affiliation_pr(&[false; 6], &[0, 1, 1, 0, 0, 1]).unwrap();
        assert!(r.precision.is_nan());
        assert_eq!(r.recall, 0.0);
        assert!(r.individual_precision.iter().all(|p| p.is_nan()));
        assert_eq!(r.individual_recall, vec![0.0, 0.0]);
    }

    #[test]
    fn perfect_prediction_scores_one() {
        let gt = [0, 1, 1, 0, 0, 0, 1, 0];
        let r = affiliation_pr(&bools(&gt), &gt).unwrap();
        assert_eq!((r.precision, r.recall), (1.0, 1.0));
    }

    #[test]
    fn undefined_cases_are_none() {
        assert_eq!(affiliation_pr(&[true, false], &[0, 0]), None);
        assert_eq!(affiliation_pr(&[true], &[0, 1]), None);
        assert_eq!(affiliation_f(&[0, 0, 0], &[0.1, 0.5, 0.2]), None);
        // Constant scores: every prediction is empty, TSB-AD returns NaN.
        assert_eq!(affiliation_f(&[0, 1, 0], &[0.3, 0.3, 0.3]), None);
        assert_eq!(affiliation_f(&[], &[]), None);
    }

    #[test]
    fn python_max_semantics() {
        assert!(python_max([f64::NAN, 1.0, 2.0]).unwrap().is_nan());
        assert_eq!(python_max([0.5, f64::NAN, 0.7, f64::NAN]), Some(0.7));
        assert_eq!(python_max(std::iter::empty()), None);
    }

    proptest::proptest! {
        #[test]
        fn probabilities_stay_in_unit_interval(
            pairs in proptest::collection::vec((proptest::bool::ANY, 0u8..2), 1..80)
        ) {
            let pred: Vec<bool> = pairs.iter().map(|p| p.0).collect();
            let labels: Vec<u8> = pairs.iter().map(|p| p.1).collect();
            match affiliation_pr(&pred, &labels) {
                None => proptest::prop_assert!(labels.iter().all(|&l| l == 0)),
                Some(r) => {
                    let in_unit = |x: f64| (-1e-12..=1.0 + 1e-12).contains(&x);
                    proptest::prop_assert_eq!(r.precision.is_nan(), !pred.contains(&true));
                    proptest::prop_assert!(r.precision.is_nan() || in_unit(r.precision));
                    proptest::prop_assert!(in_unit(r.recall));
                    proptest::prop_assert!(r.individual_precision.iter().all(|&p| p.is_nan() || in_unit(p)));
                    proptest::prop_assert!(r.individual_recall.iter().all(|&p| in_unit(p)));
                }
            }
        }
    }

    #[test]
    fn affiliation_f_is_fast_on_long_series() {
        // 100k points, ~1k GT events: must stay linear per threshold.
        let n = 100_000;
        let labels: Vec<u8> = (0..n).map(|i| u8::from(i % 100 < 3)).collect();
        let scores: Vec<f64> = (0..n).map(|i| ((i * 7919) % 1000) as f64 / 1000.0 + f64::from(labels[i])).collect();
        let start = std::time::Instant::now();
        let f = affiliation_f(&labels, &scores).unwrap();
        let elapsed = start.elapsed();
        assert!(f > 0.99, "{f}");
        assert!(elapsed.as_secs_f64() < 5.0, "took {elapsed:?}");
    }
}
