//! Per-time-step anomaly scores from window reconstructions.
//!
//! Windows of length `w` start at `0, s, 2s, …` (stride `s`), plus one final window ending at
//! the last row, so **every row is covered by at least one window** (also the first `w−1`
//! rows: the whole window is reconstructed, not only its last step). Each window is
//! reconstructed deterministically, `x̂ = μ_θ(μ_φ(x))`, and each covered element gets the
//! per-feature contribution `½ (x − x̂)² / s²_k` (NLL) or `(x − x̂)²` (SSE). A row's
//! per-feature contribution is the mean over the windows covering it, and its score is the
//! sum over features (plus the constant `½ Σ_k log 2π s²_k` for NLL, so the score is the
//! negative log-likelihood of the row).
//!
//! A series shorter than the window is left-padded by repeating its first row; the padding
//! rows are scored but dropped.

use crate::vae::Vae;

/// What a row's score measures: Gaussian negative log-likelihood with the calibrated
/// per-feature variance (default) or squared reconstruction error. One type shared with
/// LARA's scoring in `lara-adapt`.
pub use lara_adapt::ScoreKind;

/// Per-row scores and per-row per-feature contributions.
#[derive(Debug, Clone, PartialEq)]
pub struct StepScores {
    /// One score per row.
    pub score: Vec<f64>,
    /// Row-major `T × m` per-feature contributions (without constants).
    pub contrib: Vec<f32>,
    pub n_cols: usize,
}

impl StepScores {
    /// Indices of the `k` columns with the largest contribution in row `t` (descending;
    /// fewer when there are fewer columns; ties broken by column index).
    pub fn top_dims(&self, t: usize, k: usize) -> Vec<usize> {
        crate::causal::top_k(&self.contrib[t * self.n_cols..(t + 1) * self.n_cols], k)
    }
}

/// Window starts covering `0..n_rows` with stride `stride` (last window ends at `n_rows`).
pub fn cover_starts(n_rows: usize, w: usize, stride: usize) -> Vec<usize> {
    assert!(n_rows >= w && w > 0);
    let last = n_rows - w;
    // A stride longer than the window would leave rows uncovered.
    let mut s: Vec<usize> = (0..=last).step_by(stride.clamp(1, w)).collect();
    if *s.last().unwrap() != last {
        s.push(last);
    }
    s
}

/// Scores every row of the (already scaled) `values` (row-major `n_rows × m`) with the
/// deterministic reconstruction `μ_θ(μ_φ(x))`; `knee` as in [`score_rows_with`].
pub fn score_rows(
    vae: &Vae,
    values: &[f32],
    n_rows: usize,
    stride: usize,
    kind: ScoreKind,
    knee: Option<f32>,
) -> StepScores {
    score_rows_with(vae, values, n_rows, stride, kind, knee, &|x: &[f32], n: usize| vae.reconstruct(x, n))
}

/// As [`score_rows`], with a caller-given reconstruction of a batch of `n` windows
/// (`n × (w·m)` in, same shape out) — e.g. LARA's `M_x(μ_θ(M_z(μ_φ(x))))`. The model provides
/// the window length, the feature count and the per-feature variance. With a `knee` κ, each
/// element's contribution `c` is compressed before it is averaged, `c ↦ κ (1 + ln(c/κ))` above
/// κ ([`crate::causal::compress`]): one channel cannot outweigh the others without bound.
pub fn score_rows_with(
    vae: &Vae,
    values: &[f32],
    n_rows: usize,
    stride: usize,
    kind: ScoreKind,
    knee: Option<f32>,
    recon: &dyn Fn(&[f32], usize) -> Vec<f32>,
) -> StepScores {
    let m = vae.n_features();
    let w = vae.window();
    assert_eq!(values.len(), n_rows * m, "score_rows: values must be n_rows × n_features");
    if n_rows == 0 {
        return StepScores { score: Vec::new(), contrib: Vec::new(), n_cols: m };
    }
    if n_rows < w {
        let pad = w - n_rows;
        let padded = left_pad(values, m, w);
        let full = score_rows_with(vae, &padded, w, stride, kind, knee, recon);
        return StepScores { score: full.score[pad..].to_vec(), contrib: full.contrib[pad * m..].to_vec(), n_cols: m };
    }
    let starts = cover_starts(n_rows, w, stride);
    let mut acc = vec![0.0f32; n_rows * m];
    let mut cnt = vec![0u32; n_rows];
    let inv: Vec<f32> = match kind {
        ScoreKind::Nll => vae.obs_logvar().iter().map(|v| 0.5 * (-v).exp()).collect(),
        ScoreKind::Sse => vec![1.0; m],
    };
    let bs = 128;
    let mut buf = Vec::with_capacity(bs * w * m);
    for chunk in starts.chunks(bs) {
        buf.clear();
        for &s in chunk {
            buf.extend_from_slice(&values[s * m..(s + w) * m]);
        }
        let xh = recon(&buf, chunk.len());
        assert_eq!(xh.len(), buf.len(), "reconstruction must have the shape of its input");
        for (i, &s) in chunk.iter().enumerate() {
            let xw = &buf[i * w * m..(i + 1) * w * m];
            let hw = &xh[i * w * m..(i + 1) * w * m];
            let aw = &mut acc[s * m..(s + w) * m];
            for j in 0..w * m {
                let r = xw[j] - hw[j];
                aw[j] += crate::causal::compress(r * r * inv[j % m], knee);
            }
            for c in &mut cnt[s..s + w] {
                *c += 1;
            }
        }
    }
    let constant: f64 = match kind {
        ScoreKind::Nll => vae.obs_logvar().iter().map(|&v| 0.5 * (v as f64 + std::f64::consts::TAU.ln())).sum(),
        ScoreKind::Sse => 0.0,
    };
    let mut score = Vec::with_capacity(n_rows);
    for t in 0..n_rows {
        let c = cnt[t].max(1) as f32;
        let row = &mut acc[t * m..(t + 1) * m];
        let mut s = 0.0f64;
        for v in row.iter_mut() {
            *v /= c;
            s += *v as f64;
        }
        score.push(s + constant);
    }
    StepScores { score, contrib: acc, n_cols: m }
}

/// Per-channel divisors `d_k = max(Q_q(c_k), floor)`: the `q`-quantile (nearest rank, index
/// `round(q·(n−1))` of the sorted finite values) of channel `k`'s contributions over the rows
/// of `steps`, at least `floor`. See `FitOptions::channel_quantile`.
pub fn channel_scale(steps: &StepScores, q: f64, floor: f32) -> Vec<f32> {
    let m = steps.n_cols;
    let n = steps.score.len();
    let mut col = Vec::with_capacity(n);
    (0..m)
        .map(|k| {
            col.clear();
            col.extend((0..n).map(|t| steps.contrib[t * m + k]));
            quantile(&col, q).max(floor)
        })
        .collect()
}

/// The nearest-rank `q`-quantile: index `round(q·(n−1))` of the sorted finite values of `v`
/// (0 when there are none).
pub fn quantile<T: Copy + Into<f64>>(v: &[T], q: f64) -> f32 {
    let mut f: Vec<f64> = v.iter().map(|&x| x.into()).filter(|x| x.is_finite()).collect();
    if f.is_empty() {
        return 0.0;
    }
    f.sort_by(f64::total_cmp);
    f[((f.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize] as f32
}

/// Divides each channel's contributions by `scale[k]`; a row's score becomes the sum of its
/// normalised contributions.
pub fn normalise_channels(steps: &mut StepScores, scale: &[f32]) {
    let m = steps.n_cols;
    for (t, s) in steps.score.iter_mut().enumerate() {
        let row = &mut steps.contrib[t * m..(t + 1) * m];
        let mut sum = 0.0f64;
        for (v, &d) in row.iter_mut().zip(scale) {
            *v /= d;
            sum += *v as f64;
        }
        *s = sum;
    }
}

/// `values` (row-major, `m` columns, fewer than `rows` rows) preceded by copies of its first
/// row up to `rows` rows: the padding every scorer uses at the start of a series or segment.
pub(crate) fn left_pad(values: &[f32], m: usize, rows: usize) -> Vec<f32> {
    let n = values.len() / m;
    let mut padded = Vec::with_capacity(rows.max(n) * m);
    for _ in n..rows {
        padded.extend_from_slice(&values[..m]);
    }
    padded.extend_from_slice(values);
    padded
}

/// Centred moving average of length `len` (≤ 1: unchanged) of the row scores and of the
/// per-feature contributions (`len` rows, truncated at the ends of the series): row `t`
/// becomes the mean of rows `[t − ⌊(len−1)/2⌋, t + ⌈(len−1)/2⌉]` that exist.
pub fn smooth(steps: &mut StepScores, len: usize) {
    let m = steps.n_cols;
    smooth_rows(&mut steps.score, 1, len, |v| v, |v| v);
    smooth_rows(&mut steps.contrib, m, len, |v| v as f64, |v| v as f32);
}

/// In-place centred moving average over rows of width `m` (running sums in `f64`, a ring
/// buffer of the `len` original rows in the current window; one pass, `O(n·m)`).
fn smooth_rows<T: Copy + Default>(
    data: &mut [T],
    m: usize,
    len: usize,
    to: impl Fn(T) -> f64,
    from: impl Fn(f64) -> T,
) {
    if len <= 1 || m == 0 || data.is_empty() {
        return;
    }
    let n = data.len() / m;
    let half_lo = (len - 1) / 2;
    let half_hi = len - 1 - half_lo;
    // The window never holds more than min(len, n) rows.
    let cap = len.min(n).max(1);
    let mut ring = vec![T::default(); cap * m];
    let mut sum = vec![0.0f64; m];
    let (mut a, mut b) = (0usize, 0usize); // current window [a, b)
    for t in 0..n {
        // Drop leaving rows before adding entering ones, so the ring slot is free.
        let want_a = t.saturating_sub(half_lo);
        while a < want_a {
            let slot = (a % cap) * m;
            for k in 0..m {
                sum[k] -= to(ring[slot + k]);
            }
            a += 1;
        }
        let want_b = (t + half_hi + 1).min(n);
        while b < want_b {
            let slot = (b % cap) * m;
            for k in 0..m {
                let v = data[b * m + k];
                ring[slot + k] = v;
                sum[k] += to(v);
            }
            b += 1;
        }
        let inv = 1.0 / (b - a) as f64;
        for k in 0..m {
            data[t * m + k] = from(sum[k] * inv);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn cover_starts_cover_every_row(n in 1usize..400, w in 1usize..60, stride in 1usize..200) {
            prop_assume!(n >= w);
            let st = cover_starts(n, w, stride);
            let mut cov = vec![0u32; n];
            for &a in &st {
                prop_assert!(a + w <= n);
                for c in &mut cov[a..a + w] {
                    *c += 1;
                }
            }
            prop_assert!(cov.iter().all(|&c| c > 0));
            prop_assert!(st.windows(2).all(|p| p[0] < p[1]));
        }
    }

    #[test]
    fn starts_cover_everything() {
        for (n, w, s) in [(10, 3, 1), (10, 3, 4), (10, 10, 5), (101, 25, 25), (100, 25, 25)] {
            let st = cover_starts(n, w, s);
            let mut cov = vec![0; n];
            for &a in &st {
                for c in &mut cov[a..a + w] {
                    *c += 1;
                }
            }
            assert!(cov.iter().all(|&c| c > 0), "{n} {w} {s}");
            assert_eq!(*st.last().unwrap(), n - w);
        }
    }

    #[test]
    fn smoothing_is_a_centred_mean() {
        let mut s =
            StepScores { score: vec![0.0, 0.0, 3.0, 0.0, 0.0], contrib: vec![0.0, 0.0, 3.0, 0.0, 0.0], n_cols: 1 };
        smooth(&mut s, 3);
        assert_eq!(s.score, vec![0.0, 1.0, 1.0, 1.0, 0.0]);
        assert_eq!(s.contrib, vec![0.0, 1.0, 1.0, 1.0, 0.0]);
        let mut s2 = s.clone();
        smooth(&mut s2, 1);
        assert_eq!(s2, s);
        // Against a direct computation, even and odd lengths, 2 columns.
        let n: usize = 23;
        let raw: Vec<f32> = (0..n * 2).map(|i| ((i * 37) % 11) as f32).collect();
        for len in [2usize, 3, 4, 7, 30, 1 << 40] {
            let mut st = StepScores {
                score: raw.iter().step_by(2).map(|&v| v as f64).collect(),
                contrib: raw.clone(),
                n_cols: 2,
            };
            smooth(&mut st, len);
            let (lo, hi) = ((len - 1) / 2, len - 1 - (len - 1) / 2);
            for t in 0..n {
                let (a, b) = (t.saturating_sub(lo), (t + hi + 1).min(n));
                for k in 0..2 {
                    let want = (a..b).map(|r| raw[r * 2 + k] as f64).sum::<f64>() / (b - a) as f64;
                    assert!((st.contrib[t * 2 + k] as f64 - want).abs() < 1e-4, "len {len} t {t}");
                }
                let want = (a..b).map(|r| raw[r * 2] as f64).sum::<f64>() / (b - a) as f64;
                assert!((st.score[t] - want).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn knee_compresses_only_large_contributions() {
        use crate::vae::{Activation, VaeConfig};
        use rand::SeedableRng;
        let cfg = VaeConfig { window: 5, n_features: 2, hidden: 8, depth: 1, latent: 2, activation: Activation::Relu };
        let vae = Vae::new(cfg, &mut rand_chacha::ChaCha8Rng::seed_from_u64(3));
        let n = 20;
        let mut values: Vec<f32> = (0..n * 2).map(|i| ((i * 7 % 5) as f32 - 2.0) * 0.1).collect();
        values[12 * 2 + 1] = 50.0; // one huge residual in column 1 of row 12
        let recon = |x: &[f32], k: usize| vae.reconstruct(x, k);
        let lin = score_rows_with(&vae, &values, n, 1, ScoreKind::Nll, None, &recon);
        let kneed = score_rows_with(&vae, &values, n, 1, ScoreKind::Nll, Some(8.0), &recon);
        for (i, (a, b)) in lin.contrib.iter().zip(&kneed.contrib).enumerate() {
            assert!(*b <= *a * (1.0 + 1e-6), "element {i}: {b} > {a}");
        }
        let (a, b) = (lin.contrib[12 * 2 + 1], kneed.contrib[12 * 2 + 1]);
        assert!(a > 100.0 && b < a / 4.0, "the outlier is compressed: linear {a}, knee {b}");
        // Rows no window shares with the outlier are unchanged.
        assert_eq!(lin.contrib[..7 * 2], kneed.contrib[..7 * 2]);
    }

    #[test]
    fn channel_normalisation_judges_each_channel_against_its_training_spread() {
        // Channel 0: a quiet telemetry channel (0.1 … 0.5 nats); channel 1: a command flag
        // that flips on 5 % of the training rows (40 nats each time).
        let n = 200;
        let contrib: Vec<f32> =
            (0..n).flat_map(|t| [0.1 + 0.4 * (t % 10) as f32 / 9.0, if t % 20 == 0 { 40.0 } else { 0.0 }]).collect();
        let train = StepScores { score: vec![0.0; n], contrib, n_cols: 2 };
        let d = channel_scale(&train, 0.99, 1.0);
        assert_eq!(d, vec![1.0, 40.0], "the quiet channel's quantile is floored, the flag's is its flip");
        // Nearest rank: index round(0.5 · 199) = 100 of the sorted values, the sixth level.
        assert_eq!(channel_scale(&train, 0.5, 0.01), vec![0.1 + 0.4 * 5.0 / 9.0, 0.01]);
        // Test rows: a telemetry excursion (10 nats) and a normal flip (40 nats).
        let mut test = StepScores { score: vec![10.0, 40.0], contrib: vec![10.0, 0.0, 0.2, 40.0], n_cols: 2 };
        assert!(test.score[1] > test.score[0], "in raw NLL the flip outranks the excursion");
        normalise_channels(&mut test, &d);
        assert_eq!(test.contrib, vec![10.0, 0.0, 0.2, 1.0]);
        assert_eq!(test.score, vec![10.0, 1.2000000029802322]);
        assert_eq!(test.top_dims(1, 1), vec![1]);
    }

    #[test]
    fn top_dims_descending_ties_by_index() {
        let s = StepScores { score: vec![0.0], contrib: vec![1.0, 5.0, 3.0, 5.0, 0.5], n_cols: 5 };
        assert_eq!(s.top_dims(0, 3), vec![1, 3, 2]);
        assert_eq!(s.top_dims(0, 10), vec![1, 3, 2, 0, 4]);
        assert_eq!(s.top_dims(0, 0), Vec::<usize>::new());
    }

    #[test]
    fn quantile_is_nearest_rank_over_finite_values() {
        let v = [3.0f64, f64::NAN, 1.0, 2.0, 4.0, 5.0];
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert_eq!(quantile(&v, 1.0), 5.0);
        assert_eq!(quantile::<f64>(&[], 0.5), 0.0);
    }
}
