//! VUS-ROC / VUS-PR as TSB-AD 1.5 `RangeAUC_volume_opt` (250 thresholds, buffers 0..=window).
//!
//! For a buffer `w` (half-width `h = w / 2`) TSB-AD widens every label run by `h` points on each
//! side (`new_sequence`, giving the segments `L_w`) and gives each widened point the weight
//! `ext_w = min(1, Σ sqrt(1 − d/w))` summed over the runs it is `d ≤ h` points away from
//! (`sequencing`). Per threshold `k` (prediction `score >= thr_k`):
//! - `TP_k = #predicted label points + Σ_{i ∈ L_w \ labels, predicted} ext_w[i]`,
//! - `N_labels_k = P + (the same sum)`, `FP_k = Npred_k − TP_k`,
//! - `existence_k` = number of `L_w` segments holding a predicted point.
//!
//! Predictions are nested in `k`, so each point is predicted from the first threshold at or
//! below its score on: bucketing points (and segments, by their best point) by that index and
//! taking prefix sums over the 250 thresholds costs O(buffer points + segments + 250) per `w`.
//! A buffer point's weight only needs its nearest two runs on each side, because two ramp
//! terms (each `>= sqrt(1/2)`) already saturate the clip at 1.

use crate::linspace;
use crate::range::tsbad_ranges;

/// Volume under the range-ROC and range-PR surfaces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Vus {
    pub roc: f64,
    pub pr: f64,
}

/// Number of score thresholds TSB-AD uses for VUS.
pub const VUS_THRESHOLDS: usize = 250;

/// Threshold index marking "not in any `L_w` segment yet".
const NO_BUCKET: u8 = u8::MAX;

/// VUS over buffer sizes `0..=window`, as TSB-AD `RangeAUC_volume_opt(labels, score, window,
/// thre=250)` (what `get_metrics(..., slidingWindow=window)` reports as VUS-ROC / VUS-PR).
///
/// `None` where TSB-AD raises: the labels hold no anomaly, or are anomalous everywhere
/// (`range_convers_new` then finds no range); also for empty or mismatched inputs.
pub fn vus(labels: &[u8], scores: &[f64], window: usize) -> Option<Vus> {
    let n = labels.len();
    if n == 0 || scores.len() != n {
        return None;
    }
    let is_anomaly: Vec<bool> = labels.iter().map(|&l| l == 1).collect();
    let runs = tsbad_ranges(&is_anomaly);
    if runs.is_empty() {
        return None;
    }
    let positives = is_anomaly.iter().filter(|&&a| a).count() as f64;

    // Thresholds: the scores at `linspace(0, n-1, 250).astype(int)` of the descending sort.
    let mut sorted = scores.to_vec();
    sorted.sort_unstable_by(|a, b| b.total_cmp(a));
    let thresholds: Vec<f64> =
        linspace(0.0, (n - 1) as f64, VUS_THRESHOLDS).into_iter().map(|x| sorted[x as usize]).collect();
    // First threshold index k with thr_k <= score: the point is predicted for all k' >= k.
    // Always < 250 because the last threshold is the minimum score.
    let bucket: Vec<u8> =
        scores.iter().map(|&s| thresholds.partition_point(|&t| t > s).min(VUS_THRESHOLDS - 1) as u8).collect();

    // Per threshold: number of predicted points, and of predicted label points.
    let mut predicted = [0usize; VUS_THRESHOLDS];
    let mut predicted_labels = [0usize; VUS_THRESHOLDS];
    for (&b, &a) in bucket.iter().zip(&is_anomaly) {
        predicted[b as usize] += 1;
        predicted_labels[b as usize] += usize::from(a);
    }
    for k in 1..VUS_THRESHOLDS {
        predicted[k] += predicted[k - 1];
        predicted_labels[k] += predicted_labels[k - 1];
    }
    let run_bucket: Vec<u8> =
        runs.iter().map(|&(s, e)| bucket[s..=e].iter().copied().min().unwrap_or(NO_BUCKET)).collect();

    let buffer = BufferSweep { runs: &runs, bucket: &bucket, run_bucket: &run_bucket, n };
    let mut roc_sum = 0.0;
    let mut pr_sum = 0.0;
    for w in 0..=window {
        let hist = buffer.histograms(w);
        let (roc, pr) = curve_areas(&hist, &predicted, &predicted_labels, positives, n as f64);
        roc_sum += roc;
        pr_sum += pr;
    }
    let count = window as f64 + 1.0;
    Some(Vus { roc: roc_sum / count, pr: pr_sum / count })
}

/// Per-threshold-bucket totals for one buffer size.
struct Histograms {
    /// Σ ext_w over the buffer points (in `L_w`, not labelled) first predicted at threshold k.
    buffer_mass: [f64; VUS_THRESHOLDS],
    /// Number of `L_w` segments whose first predicted point appears at threshold k.
    segments_hit: [usize; VUS_THRESHOLDS],
    /// Number of `L_w` segments.
    segments: usize,
}

/// Walks the gaps between label runs for a buffer size.
struct BufferSweep<'a> {
    runs: &'a [(usize, usize)],
    bucket: &'a [u8],
    run_bucket: &'a [u8],
    n: usize,
}

impl BufferSweep<'_> {
    /// `ext_w[x]` of an unlabelled point `x` lying between run `left` and run `right`.
    fn ext(&self, x: usize, w: usize, left: Option<usize>, right: Option<usize>) -> f64 {
        let h = w / 2;
        let ramp = |d: usize| (1.0 - d as f64 / w as f64).sqrt();
        let mut terms = 0;
        let mut value = 0.0;
        if let Some(i) = left {
            let d = x - self.runs[i].1;
            if d <= h {
                terms += 1;
                value = ramp(d);
            }
            if i > 0 && x - self.runs[i - 1].1 <= h {
                terms += 1;
            }
        }
        if let Some(j) = right {
            let d = self.runs[j].0 - x;
            if d <= h {
                terms += 1;
                value = ramp(d);
            }
            if j + 1 < self.runs.len() && self.runs[j + 1].0 - x <= h {
                terms += 1;
            }
        }
        if terms >= 2 {
            1.0
        } else {
            value
        }
    }

    fn histograms(&self, w: usize) -> Histograms {
        let h = w / 2;
        let m = self.runs.len();
        let mut hist =
            Histograms { buffer_mass: [0.0; VUS_THRESHOLDS], segments_hit: [0; VUS_THRESHOLDS], segments: 0 };
        let mut current = NO_BUCKET;
        let add_points = |hist: &mut Histograms, current: &mut u8, from: usize, to: usize, left, right| {
            for x in from..to {
                let b = self.bucket[x];
                hist.buffer_mass[b as usize] += self.ext(x, w, left, right);
                *current = (*current).min(b);
            }
        };
        let close = |hist: &mut Histograms, current: &mut u8| {
            hist.segments_hit[*current as usize] += 1;
            hist.segments += 1;
            *current = NO_BUCKET;
        };
        // Gap g lies between run g-1 (if any) and run g (if any).
        for g in 0..=m {
            let left = g.checked_sub(1);
            let right = (g < m).then_some(g);
            let lo = left.map_or(0, |i| self.runs[i].1 + 1);
            let hi = right.map_or(self.n, |j| self.runs[j].0);
            match (left, right) {
                (None, _) => add_points(&mut hist, &mut current, hi.saturating_sub(h), hi, left, right),
                (Some(_), None) => {
                    add_points(&mut hist, &mut current, lo, lo.saturating_add(h).min(hi), left, right);
                    close(&mut hist, &mut current);
                }
                (Some(i), Some(j)) => {
                    // new_sequence keeps runs i and j together unless e_i + h < s_j - h.
                    let split = self.runs[i].1.saturating_add(2 * h) < self.runs[j].0;
                    if split {
                        add_points(&mut hist, &mut current, lo, lo + h, left, right);
                        close(&mut hist, &mut current);
                        add_points(&mut hist, &mut current, hi - h, hi, left, right);
                    } else {
                        add_points(&mut hist, &mut current, lo, hi, left, right);
                    }
                }
            }
            if let Some(j) = right {
                current = current.min(self.run_bucket[j]);
            }
        }
        hist
    }
}

/// Range-ROC area and range-AP for one buffer size, from the per-bucket histograms (the inner
/// threshold loop of `RangeAUC_volume_opt`).
fn curve_areas(
    hist: &Histograms,
    predicted: &[usize; VUS_THRESHOLDS],
    predicted_labels: &[usize; VUS_THRESHOLDS],
    positives: f64,
    n: f64,
) -> (f64, f64) {
    let mut mass = 0.0;
    let mut hit = 0usize;
    let (mut prev_tpr, mut prev_fpr) = (0.0, 0.0);
    let (mut roc, mut pr) = (0.0, 0.0);
    for k in 0..VUS_THRESHOLDS {
        mass += hist.buffer_mass[k];
        hit += hist.segments_hit[k];
        let tp = predicted_labels[k] as f64 + mass;
        let n_labels = positives + mass;
        let n_pred = predicted[k] as f64;
        let fp = n_pred - tp;
        let p_new = (positives + n_labels) / 2.0;
        let recall = (tp / p_new).min(1.0);
        let tpr = recall * (hit as f64 / hist.segments as f64);
        let fpr = fp / (n - p_new);
        let precision = tp / n_pred;
        roc += (fpr - prev_fpr) * ((tpr + prev_tpr) / 2.0);
        pr += (tpr - prev_tpr) * precision;
        prev_tpr = tpr;
        prev_fpr = fpr;
    }
    // Closing point (1, 1) of the ROC curve; the PR sum stops at the last threshold.
    roc += (1.0 - prev_fpr) * ((1.0 + prev_tpr) / 2.0);
    (roc, pr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// TSB-AD's `RangeAUC_volume_opt`, transcribed literally: O(window · 250 · n).
    fn vus_direct(labels: &[u8], scores: &[f64], window: usize) -> Option<Vus> {
        let n = labels.len();
        let mask: Vec<bool> = labels.iter().map(|&l| l == 1).collect();
        let seq = tsbad_ranges(&mask);
        if seq.is_empty() {
            return None;
        }
        let p = mask.iter().filter(|&&m| m).count() as f64;
        let widen = |w: usize| -> Vec<(usize, usize)> {
            let h = w as i64 / 2;
            let mut out = Vec::new();
            let mut a = (seq[0].0 as i64 - h).max(0);
            for pair in seq.windows(2) {
                if pair[0].1 as i64 + h < pair[1].0 as i64 - h {
                    out.push((a as usize, (pair[0].1 as i64 + h) as usize));
                    a = pair[1].0 as i64 - h;
                }
            }
            out.push((a as usize, (seq[seq.len() - 1].1 as i64 + h).min(n as i64 - 1) as usize));
            out
        };
        let l_max = widen(window);
        let mut sorted = scores.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let idx: Vec<usize> = linspace(0.0, (n - 1) as f64, VUS_THRESHOLDS).iter().map(|&x| x as usize).collect();
        let (mut roc_sum, mut pr_sum) = (0.0, 0.0);
        for w in 0..=window {
            let h = w / 2;
            let mut ext: Vec<f64> = labels.iter().map(|&l| f64::from(l)).collect();
            for &(s, e) in &seq {
                for (x, v) in ext.iter_mut().enumerate().take((e + h + 1).min(n)).skip(e + 1) {
                    *v += (1.0 - (x - e) as f64 / w as f64).sqrt();
                }
                for (x, v) in ext.iter_mut().enumerate().take(s).skip(s.saturating_sub(h)) {
                    *v += (1.0 - (s - x) as f64 / w as f64).sqrt();
                }
            }
            for v in &mut ext {
                *v = v.min(1.0);
            }
            let lw = widen(w);
            let mut tpr = vec![0.0];
            let mut fpr = vec![0.0];
            let mut prec = vec![1.0];
            for &i in &idx {
                let thr = sorted[i];
                let pred: Vec<f64> = scores.iter().map(|&s| f64::from(u8::from(s >= thr))).collect();
                let n_pred: f64 = pred.iter().sum();
                let mut lab = ext.clone();
                let mut existence = 0usize;
                for &(a, b) in &lw {
                    for x in a..=b {
                        lab[x] = ext[x] * pred[x];
                    }
                    if pred[a..=b].iter().any(|&v| v > 0.0) {
                        existence += 1;
                    }
                }
                for &(a, b) in &seq {
                    lab[a..=b].fill(1.0);
                }
                let (mut tp, mut n_lab) = (0.0, 0.0);
                for &(a, b) in &l_max {
                    for x in a..=b {
                        tp += lab[x] * pred[x];
                        n_lab += lab[x];
                    }
                }
                let fp = n_pred - tp;
                let p_new = (p + n_lab) / 2.0;
                let recall = (tp / p_new).min(1.0);
                tpr.push(recall * (existence as f64 / lw.len() as f64));
                fpr.push(fp / (n as f64 - p_new));
                prec.push(tp / n_pred);
            }
            tpr.push(1.0);
            fpr.push(1.0);
            let roc: f64 = (0..tpr.len() - 1).map(|j| (fpr[j + 1] - fpr[j]) * (tpr[j + 1] + tpr[j]) / 2.0).sum();
            let pr: f64 = (1..tpr.len() - 1).map(|j| (tpr[j] - tpr[j - 1]) * prec[j]).sum();
            roc_sum += roc;
            pr_sum += pr;
        }
        Some(Vus { roc: roc_sum / (window + 1) as f64, pr: pr_sum / (window + 1) as f64 })
    }

    fn random_case(rng: &mut impl Rng) -> (Vec<u8>, Vec<f64>, usize) {
        let n = rng.gen_range(1..400);
        let mut labels = vec![0u8; n];
        // Runs of random length and spacing, often close together so that buffers overlap.
        let mut x = if rng.gen_bool(0.2) { 0 } else { rng.gen_range(0..20) };
        while x < n {
            let len = rng.gen_range(1..8);
            for l in labels.iter_mut().skip(x).take(len) {
                *l = 1;
            }
            x += len + rng.gen_range(1..30);
        }
        if rng.gen_bool(0.2) {
            labels[n - 1] = 1;
        }
        let levels = rng.gen_range(1..12);
        let scores =
            (0..n).map(|i| f64::from(labels[i]) * 0.3 + f64::from(rng.gen_range(0..levels)) / levels as f64).collect();
        let window = rng.gen_range(0..60);
        (labels, scores, window)
    }

    #[test]
    fn fast_vus_equals_direct_transcription() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2024);
        for case in 0..300 {
            let (labels, scores, window) = random_case(&mut rng);
            let fast = vus(&labels, &scores, window);
            let direct = vus_direct(&labels, &scores, window);
            match (fast, direct) {
                (None, None) => {}
                (Some(f), Some(d)) => {
                    assert!(
                        (f.roc - d.roc).abs() < 1e-10 && (f.pr - d.pr).abs() < 1e-10,
                        "case {case}: fast {f:?} direct {d:?} window {window} labels {labels:?}"
                    );
                }
                other => panic!("case {case}: {other:?}"),
            }
        }
    }

    #[test]
    fn worked_example_from_anchors() {
        let label = [0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let score = [
            0.1, 0.2, 0.1, 0.3, 0.6, 0.9, 0.7, 0.4, 0.3, 0.2, 0.1, 0.1, 0.2, 0.8, 0.3, 0.2, 0.5, 0.6, 0.2, 0.1, 0.1,
            0.2, 0.3, 0.1, 0.2, 0.1, 0.1, 0.3, 0.2, 0.1,
        ];
        for (w, roc, pr) in [(0, 0.94, 0.6828571428571428), (2, 0.9457004475152931, 0.7141630442764603)] {
            let v = vus(&label, &score, w).unwrap();
            assert!((v.roc - roc).abs() < 1e-12 && (v.pr - pr).abs() < 1e-12, "{w}: {v:?}");
        }
    }

    #[test]
    fn undefined_without_a_range() {
        assert_eq!(vus(&[0, 0, 0], &[0.1, 0.2, 0.3], 2), None);
        assert_eq!(vus(&[1, 1, 1], &[0.1, 0.2, 0.3], 2), None);
        assert_eq!(vus(&[], &[], 2), None);
    }

    #[test]
    fn constant_scores_match_tsbad() {
        // TSB-AD generate_curve(label, zeros(6), 3): VUS-ROC 0.6546020136543329, VUS-PR 0.6904504202642842.
        let v = vus(&[0, 1, 1, 0, 0, 1], &[0.0; 6], 3).unwrap();
        assert!((v.roc - 0.6546020136543329).abs() < 1e-12, "{v:?}");
        assert!((v.pr - 0.6904504202642842).abs() < 1e-12, "{v:?}");
    }
}
