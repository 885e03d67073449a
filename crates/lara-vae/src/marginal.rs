//! The second opinion beside the VAE: how rare each continuous channel's *value* is.
//!
//! A histogram-based outlier score (HBOS, Goldstein & Dengel 2012) per channel, fitted on the
//! training rows: `bins` equal-width bins over the channel's training range `[lo, hi]`, bin
//! probability `p_b = (n_b + ½) / (N + ½·bins)`, and a value's score `s = −ln p_b` of its bin
//! (`ln(N + 1)` outside the range: rarer than any bin that holds a training value, about as
//! rare as an empty one). Each channel's score is divided by
//! its own 0.99-quantile on the training rows (at least 1), as the VAE's contributions are
//! (`FitOptions::channel_quantile`).
//!
//! Why: trained on every row (TSB-AD's protocol for IForest / PCA) the VAE also learns the
//! incidents, and a long stretch of a telemetry channel at an unusual level then reconstructs
//! well. Its values are still rare. Only channels with at least three distinct training
//! values get a histogram: the rarity of a binary or constant channel's flip is what the
//! VAE's per-channel normalisation already bounds, and counting it again would bring back
//! the command flags that drowned the score. Only series with at least two columns use it
//! (file-level cross-validation, crate docs): on one column the VAE already scores the value.
//!
//! The combined row score is `v + λ·S` with `v` the VAE's score, `S = Σ_k s_k / d_k` and
//! `λ = weight · Q_0.99(v) / Q_0.99(S)` over the (smoothed) training rows, so at weight 1 the
//! two opinions count equally at their training 0.99-quantiles.

use serde::{Deserialize, Serialize};

use crate::score::quantile;

/// The quantile that scales each channel's histogram score and each opinion (see module docs).
pub const MARGINAL_QUANTILE: f64 = 0.99;

/// One channel's histogram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelHistogram {
    /// Column index in the model's columns.
    pub column: usize,
    /// Training range (scaled units).
    pub lo: f32,
    pub hi: f32,
    /// `−ln p_b / d` per bin, already divided by the channel's divisor `d`.
    pub bin_score: Vec<f32>,
    /// Score of a value outside `[lo, hi]` (or not finite), divided by `d`.
    pub outside: f32,
}

impl ChannelHistogram {
    /// Fits channel `k` of the row-major `n_rows × m` matrix `values`; `None` when the channel
    /// has fewer than three distinct finite values (binary or constant) or `bins == 0`.
    pub fn fit(values: &[f32], m: usize, n_rows: usize, k: usize, bins: usize) -> Option<Self> {
        if bins == 0 || n_rows == 0 {
            return None;
        }
        let col: Vec<f32> = (0..n_rows).map(|t| values[t * m + k]).filter(|v| v.is_finite()).collect();
        let mut distinct: Vec<f32> = Vec::with_capacity(3);
        for &v in &col {
            if !distinct.contains(&v) {
                distinct.push(v);
                if distinct.len() >= 3 {
                    break;
                }
            }
        }
        if distinct.len() < 3 {
            return None;
        }
        let lo = col.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = col.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let n = col.len() as f64;
        let mut h = ChannelHistogram { column: k, lo, hi, bin_score: vec![0.0; bins], outside: (n + 1.0).ln() as f32 };
        let mut counts = vec![0usize; bins];
        for &v in &col {
            counts[h.bin(v).expect("a training value lies in the training range")] += 1;
        }
        let denom = n + 0.5 * bins as f64;
        for (s, &c) in h.bin_score.iter_mut().zip(&counts) {
            *s = -((c as f64 + 0.5) / denom).ln() as f32;
        }
        let train: Vec<f32> = col.iter().map(|&v| h.score(v)).collect();
        let d = quantile(&train, MARGINAL_QUANTILE).max(1.0);
        for s in &mut h.bin_score {
            *s /= d;
        }
        h.outside /= d;
        Some(h)
    }

    /// The bin of `v`, `None` outside `[lo, hi]` (the last bin is closed on the right).
    fn bin(&self, v: f32) -> Option<usize> {
        if !(v >= self.lo && v <= self.hi) {
            return None;
        }
        let bins = self.bin_score.len();
        let width = (self.hi - self.lo) as f64 / bins as f64;
        Some((((v - self.lo) as f64 / width) as usize).min(bins - 1))
    }

    /// The (divided) rarity score of value `v`.
    pub fn score(&self, v: f32) -> f32 {
        self.bin(v).map_or(self.outside, |b| self.bin_score[b])
    }
}

/// The fitted second opinion stored with a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarginalModel {
    pub channels: Vec<ChannelHistogram>,
    /// `λ`: the factor of the histogram score in the combined score (module docs).
    pub lambda: f64,
    /// The label-free threshold of the VAE's own score (the threshold an adapted model starts
    /// from: LARA's adaptation drops the histograms, which describe the old pattern).
    pub vae_threshold: f64,
}

/// Histograms of every column of `values` (row-major `n_rows × m`) that qualifies.
pub fn fit_channels(values: &[f32], m: usize, n_rows: usize, bins: usize) -> Vec<ChannelHistogram> {
    (0..m).filter_map(|k| ChannelHistogram::fit(values, m, n_rows, k, bins)).collect()
}

/// Adds `lambda ·` each histogram's score to the contributions and scores of `steps` (rows of
/// `values`, row-major `n_rows × m`), so the combined score stays the sum of its columns'
/// contributions and `top_dims` names the channel whose value is rare.
pub fn add_to(steps: &mut crate::score::StepScores, channels: &[ChannelHistogram], lambda: f64, values: &[f32]) {
    let m = steps.n_cols;
    for (t, score) in steps.score.iter_mut().enumerate() {
        for h in channels {
            let s = lambda * h.score(values[t * m + h.column]) as f64;
            steps.contrib[t * m + h.column] += s as f32;
            *score += s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_constant_channels_get_no_histogram() {
        // Columns: constant, binary, continuous.
        let rows: Vec<[f32; 3]> = (0..50).map(|t| [1.0, (t % 7 == 0) as u8 as f32, t as f32 / 10.0]).collect();
        let v: Vec<f32> = rows.concat();
        let h = fit_channels(&v, 3, 50, 10);
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].column, 2);
        assert_eq!((h[0].lo, h[0].hi), (0.0, 4.9));
        assert!(fit_channels(&v, 3, 50, 0).is_empty());
    }

    #[test]
    fn rare_values_score_higher_than_common_ones_and_outside_is_rarest() {
        // 90 values near 0, 10 spread up to 10: 10 bins of width 1.
        let mut col: Vec<f32> = (0..90).map(|i| (i % 9) as f32 * 0.1).collect();
        col.extend((0..10).map(|i| 1.0 + i as f32));
        let h = ChannelHistogram::fit(&col, 1, col.len(), 0, 10).unwrap();
        // Bin 0 holds 90 values: p = 90.5 / 105, −ln p ≈ 0.149; bins 1..8 hold one each,
        // p = 1.5 / 105 → 4.25; bin 9 holds 9 and 10 (3.74). Divisor: the 0.99-quantile
        // (index 98 of 100 sorted scores) is a one-value bin's score, 4.25.
        let common = -((90.5f64 / 105.0).ln());
        let rare = -((1.5f64 / 105.0).ln());
        assert!((h.score(0.3) as f64 - common / rare).abs() < 1e-5, "{}", h.score(0.3));
        assert!((h.score(5.5) - 1.0).abs() < 1e-5);
        assert!(h.score(0.3) < h.score(5.5));
        let outside = (101f64.ln() / rare) as f32;
        assert!((h.score(-3.0) - outside).abs() < 1e-5 && h.score(11.0) == h.score(-3.0));
        assert_eq!(h.score(f32::NAN), h.outside);
        assert!(h.outside > h.score(5.5));
        // The right end of the range is in the last bin, not outside.
        assert_eq!(h.score(10.0), h.bin_score[9]);
    }

    #[test]
    fn add_to_adds_lambda_times_the_score_to_its_column() {
        let col: Vec<f32> = (0..20).map(|i| i as f32).collect();
        let h = ChannelHistogram::fit(&col, 1, 20, 0, 4).unwrap();
        // Two columns: the histogram is on column 0 only.
        let values = vec![3.0, 0.0, 100.0, 0.0];
        let mut steps =
            crate::score::StepScores { score: vec![1.0, 1.0], contrib: vec![0.5, 0.5, 0.5, 0.5], n_cols: 2 };
        add_to(&mut steps, std::slice::from_ref(&h), 2.0, &values);
        let h0 = h;
        assert!((steps.score[0] - (1.0 + 2.0 * h0.score(3.0) as f64)).abs() < 1e-6);
        assert!((steps.score[1] - (1.0 + 2.0 * h0.outside as f64)).abs() < 1e-6);
        assert_eq!(steps.contrib[1], 0.5);
        assert_eq!(steps.contrib[2], 0.5 + 2.0 * h0.outside);
    }
}
