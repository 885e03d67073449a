//! Fusion (digest §A.1, §A.5): a small conditional network g_φ on the detector's latent h
//! (its data representation) outputs a weight α = g_φ(h) ∈ [0, 1], and the fused score is
//!
//! ```text
//! Ŝ_i = α_i · ŝ_i + (1 − α_i) · S_i          ŝ = aligned detector score, S = LLM score
//! ```
//!
//! g_φ: standardised latent (d_z ≤ 32) → tanh hidden layer → sigmoid, trained by Adam.
//!
//! # Losses, as implemented
//!
//! Training uses only windows that both models scored and that are *presumed normal*
//! (`reference` mask: e.g. the random calibration sample of [`crate::select`], or windows of the
//! training split). No labels are used. On such windows the true score y is a constant y₀, so
//! y_i − y_j = 0 for every pair. The errors are ε = ŝ − y and ε_S = S − y, with means μ_s and μ_S.
//!
//! * **Collaborative loss** (digest §A.5 "Best reading", pairwise differences, reviewers'
//!   "pairwise collaborative loss" / Theorem 2 "relative ordering differences"):
//!
//!   ```text
//!   L_col(φ) = 1/|P| · Σ_{(i,j)∈P} [ ᾱ_ij (ŝ_i − ŝ_j) + (1 − ᾱ_ij)(S_i − S_j) − (y_i − y_j) ]²,
//!   ᾱ_ij = (α_i + α_j)/2,  y_i − y_j = 0 on presumed-normal pairs.
//!   ```
//!
//!   The bracket is the fused difference Ŝ_i − Ŝ_j (exactly so where α_i = α_j). Only score
//!   *differences* enter, so a constant added to either model's scores cancels exactly: the
//!   fit does not depend on μ_s or μ_S. What remains is each model's error *variation* in each
//!   region of latent space, so g_φ puts its weight where a model's scores are consistent.
//!
//! * **MSE loss** (the ablation; digest §A.5 Theorem 1, "error accumulation"):
//!
//!   ```text
//!   L_mse(φ) = 1/n · Σ_i (Ŝ_i − y₀)²  on presumed-normal windows, y₀ = `normal_target`.
//!   ```
//!
//!   Its optimum carries the weighted bias α μ_s + (1 − α) μ_S of both models
//!   (E[(Ŝ* − y)²] ≥ (λ₁μ_s + λ₂μ_S)², the quoted Theorem 1 with λ₁ = α, λ₂ = 1 − α): a constant
//!   bias in one model moves the weights, even away from the more accurate model.
//!   (The digest's other reading, Σ λ₁(Ŝ − ŝ)² + λ₂(Ŝ − S)², gives the constant α = λ₁ for
//!   this fusion form and cannot condition on h, so it is not offered.)

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::LlmError;

/// Largest latent dimension accepted.
pub const MAX_LATENT_DIM: usize = 32;

/// Which loss trains the fusion network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum FusionLoss {
    /// Pairwise-difference collaborative loss (default).
    #[default]
    Collaborative,
    /// Pointwise MSE to the normal level (ablation).
    Mse,
}

/// Training settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FusionConfig {
    pub loss: FusionLoss,
    pub hidden: usize,
    pub epochs: usize,
    pub learning_rate: f64,
    /// L2 penalty on the weights (not biases).
    pub weight_decay: f64,
    /// All pairs are used up to this many; beyond, a seeded random subset of this size.
    pub max_pairs: usize,
    /// y₀ of the MSE loss (the LLM-domain score of a normal window).
    pub normal_target: f64,
    pub seed: u64,
}

impl Default for FusionConfig {
    fn default() -> Self {
        Self {
            loss: FusionLoss::Collaborative,
            hidden: 16,
            epochs: 400,
            learning_rate: 0.02,
            weight_decay: 1e-4,
            max_pairs: 20_000,
            normal_target: 0.0,
            seed: 0,
        }
    }
}

/// The trained conditional network g_φ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FusionNet {
    mean: Vec<f64>,
    scale: Vec<f64>,
    hidden: usize,
    w1: Vec<f64>,
    b1: Vec<f64>,
    w2: Vec<f64>,
    b2: f64,
    /// Final training loss.
    pub final_loss: f64,
}

struct Forward {
    hidden: Vec<f64>,
    alpha: f64,
}

impl FusionNet {
    fn new(latents: &[&[f64]], hidden: usize, rng: &mut ChaCha8Rng) -> Self {
        let d = latents[0].len();
        let n = latents.len() as f64;
        let mean: Vec<f64> = (0..d).map(|k| latents.iter().map(|z| z[k]).sum::<f64>() / n).collect();
        let scale: Vec<f64> = (0..d)
            .map(|k| {
                let v = latents.iter().map(|z| (z[k] - mean[k]).powi(2)).sum::<f64>() / n;
                if v.sqrt() > 1e-12 {
                    v.sqrt()
                } else {
                    1.0
                }
            })
            .collect();
        let r1 = 1.0 / (d as f64).sqrt();
        let r2 = 1.0 / (hidden as f64).sqrt();
        Self {
            mean,
            scale,
            hidden,
            w1: (0..hidden * d).map(|_| rng.gen_range(-r1..r1)).collect(),
            b1: (0..hidden).map(|_| rng.gen_range(-0.1..0.1)).collect(),
            w2: (0..hidden).map(|_| rng.gen_range(-r2..r2)).collect(),
            b2: 0.0,
            final_loss: f64::NAN,
        }
    }

    fn dim(&self) -> usize {
        self.mean.len()
    }

    fn forward(&self, z: &[f64]) -> Forward {
        let d = self.dim();
        let x: Vec<f64> = (0..d).map(|k| (z[k] - self.mean[k]) / self.scale[k]).collect();
        let hidden: Vec<f64> = (0..self.hidden)
            .map(|h| (self.b1[h] + (0..d).map(|k| self.w1[h * d + k] * x[k]).sum::<f64>()).tanh())
            .collect();
        let o = self.b2 + hidden.iter().zip(&self.w2).map(|(a, w)| a * w).sum::<f64>();
        Forward { hidden, alpha: 1.0 / (1.0 + (-o).exp()) }
    }

    /// α = g_φ(z) ∈ [0, 1], the weight on the (aligned) detector score. NaN latents give 0.5.
    pub fn weight(&self, z: &[f64]) -> f64 {
        if z.len() != self.dim() || z.iter().any(|x| !x.is_finite()) {
            return 0.5;
        }
        self.forward(z).alpha
    }

    /// α for each latent.
    pub fn weights(&self, latents: &[Vec<f64>]) -> Vec<f64> {
        latents.iter().map(|z| self.weight(z)).collect()
    }

    /// Fused scores Ŝ = α ŝ + (1 − α) S; where the LLM was not asked (`None`), Ŝ = ŝ.
    pub fn fuse(
        &self,
        latents: &[Vec<f64>],
        detector_aligned: &[f64],
        llm: &[Option<f64>],
    ) -> Result<Vec<f64>, LlmError> {
        if latents.len() != detector_aligned.len() || llm.len() != detector_aligned.len() {
            return Err(LlmError::InvalidInput(format!(
                "fuse: {} latents, {} detector scores, {} LLM scores",
                latents.len(),
                detector_aligned.len(),
                llm.len()
            )));
        }
        Ok(latents
            .iter()
            .zip(detector_aligned)
            .zip(llm)
            .map(|((z, &s), l)| match l {
                Some(big_s) if big_s.is_finite() => {
                    let a = self.weight(z);
                    a * s + (1.0 - a) * big_s
                }
                _ => s,
            })
            .collect())
    }

    /// Accumulate dL/dφ for one sample given dL/dα.
    fn backward(&self, z: &[f64], f: &Forward, dalpha: f64, g: &mut Grads) {
        let d = self.dim();
        let dout = dalpha * f.alpha * (1.0 - f.alpha);
        g.b2 += dout;
        for h in 0..self.hidden {
            g.w2[h] += dout * f.hidden[h];
            let dpre = dout * self.w2[h] * (1.0 - f.hidden[h] * f.hidden[h]);
            g.b1[h] += dpre;
            for (k, (zk, (mk, sk))) in z.iter().zip(self.mean.iter().zip(&self.scale)).enumerate().take(d) {
                g.w1[h * d + k] += dpre * (zk - mk) / sk;
            }
        }
    }
}

#[derive(Clone)]
struct Grads {
    w1: Vec<f64>,
    b1: Vec<f64>,
    w2: Vec<f64>,
    b2: f64,
}

impl Grads {
    fn zeros(net: &FusionNet) -> Self {
        Self { w1: vec![0.0; net.w1.len()], b1: vec![0.0; net.b1.len()], w2: vec![0.0; net.w2.len()], b2: 0.0 }
    }
    fn flat_mut(&mut self) -> Vec<&mut f64> {
        self.w1
            .iter_mut()
            .chain(self.b1.iter_mut())
            .chain(self.w2.iter_mut())
            .chain(std::iter::once(&mut self.b2))
            .collect()
    }
}

fn params_mut(net: &mut FusionNet) -> Vec<&mut f64> {
    net.w1.iter_mut().chain(net.b1.iter_mut()).chain(net.w2.iter_mut()).chain(std::iter::once(&mut net.b2)).collect()
}

/// Train g_φ on the windows with `reference[i]` (presumed normal) and a finite LLM score.
/// `latents[i]`: the detector's latent mean of window i (d_z ≤ 32); `detector_aligned[i]`: its
/// aligned score; `llm[i]`: the LLM score (NaN = not asked / missing). Needs ≥ 2 usable windows.
pub fn train_fusion(
    latents: &[Vec<f64>],
    detector_aligned: &[f64],
    llm: &[f64],
    reference: &[bool],
    config: &FusionConfig,
) -> Result<FusionNet, LlmError> {
    let n = latents.len();
    if detector_aligned.len() != n || llm.len() != n || reference.len() != n {
        return Err(LlmError::InvalidInput(format!(
            "train_fusion: {n} latents, {} detector, {} LLM scores, {} reference flags",
            detector_aligned.len(),
            llm.len(),
            reference.len()
        )));
    }
    let d = latents.first().map_or(0, |z| z.len());
    if d == 0 || d > MAX_LATENT_DIM {
        return Err(LlmError::InvalidInput(format!("latent dimension {d} is not in 1..={MAX_LATENT_DIM}")));
    }
    if latents.iter().any(|z| z.len() != d) {
        return Err(LlmError::InvalidInput("latents differ in dimension".into()));
    }
    if config.hidden == 0 {
        return Err(LlmError::InvalidInput("hidden layer must have at least one unit".into()));
    }
    let used: Vec<usize> = (0..n)
        .filter(|&i| {
            reference[i]
                && llm[i].is_finite()
                && detector_aligned[i].is_finite()
                && latents[i].iter().all(|x| x.is_finite())
        })
        .collect();
    if used.len() < 2 {
        return Err(LlmError::InvalidInput(format!(
            "fusion needs at least 2 presumed-normal windows scored by both models, got {}",
            used.len()
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let zs: Vec<&[f64]> = used.iter().map(|&i| latents[i].as_slice()).collect();
    let s: Vec<f64> = used.iter().map(|&i| detector_aligned[i]).collect();
    let big_s: Vec<f64> = used.iter().map(|&i| llm[i]).collect();
    let m = used.len();
    let mut net = FusionNet::new(&zs, config.hidden, &mut rng);

    let pairs: Vec<(usize, usize)> = if m * (m - 1) / 2 <= config.max_pairs.max(1) {
        (0..m).flat_map(|i| (i + 1..m).map(move |j| (i, j))).collect()
    } else {
        (0..config.max_pairs)
            .map(|_| {
                let i = rng.gen_range(0..m);
                let mut j = rng.gen_range(0..m - 1);
                if j >= i {
                    j += 1;
                }
                (i, j)
            })
            .collect()
    };

    let n_params = net.w1.len() + net.b1.len() + net.w2.len() + 1;
    let (mut m1, mut m2) = (vec![0.0; n_params], vec![0.0; n_params]);
    let (beta1, beta2, eps): (f64, f64, f64) = (0.9, 0.999, 1e-8);
    let mut loss = f64::NAN;
    for epoch in 1..=config.epochs.max(1) {
        let fw: Vec<Forward> = zs.iter().map(|z| net.forward(z)).collect();
        let mut dalpha = vec![0.0; m];
        loss = match config.loss {
            FusionLoss::Collaborative => {
                let np = pairs.len() as f64;
                let mut l = 0.0;
                for &(i, j) in &pairs {
                    let a = 0.5 * (fw[i].alpha + fw[j].alpha);
                    let ds = s[i] - s[j];
                    let dl = big_s[i] - big_s[j];
                    let diff = a * ds + (1.0 - a) * dl;
                    l += diff * diff;
                    let g = 2.0 * diff * (ds - dl) * 0.5 / np;
                    dalpha[i] += g;
                    dalpha[j] += g;
                }
                l / np
            }
            FusionLoss::Mse => {
                let mf = m as f64;
                let mut l = 0.0;
                for i in 0..m {
                    let fused = fw[i].alpha * s[i] + (1.0 - fw[i].alpha) * big_s[i];
                    let r = fused - config.normal_target;
                    l += r * r;
                    dalpha[i] = 2.0 * r * (s[i] - big_s[i]) / mf;
                }
                l / mf
            }
        };
        let mut grads = Grads::zeros(&net);
        for i in 0..m {
            net.backward(zs[i], &fw[i], dalpha[i], &mut grads);
        }
        // Weight decay on w1, w2.
        for (g, w) in grads.w1.iter_mut().zip(&net.w1) {
            *g += config.weight_decay * w;
        }
        for (g, w) in grads.w2.iter_mut().zip(&net.w2) {
            *g += config.weight_decay * w;
        }
        let t = epoch as i32;
        let (c1, c2) = (1.0 - beta1.powi(t), 1.0 - beta2.powi(t));
        let gflat: Vec<f64> = grads.flat_mut().into_iter().map(|g| *g).collect();
        for (k, p) in params_mut(&mut net).into_iter().enumerate() {
            let g = gflat[k];
            m1[k] = beta1 * m1[k] + (1.0 - beta1) * g;
            m2[k] = beta2 * m2[k] + (1.0 - beta2) * g * g;
            *p -= config.learning_rate * (m1[k] / c1) / ((m2[k] / c2).sqrt() + eps);
        }
    }
    net.final_loss = loss;
    if !net.final_loss.is_finite() {
        return Err(LlmError::InvalidInput("fusion training diverged (non-finite loss)".into()));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr_free::normal;

    /// Tiny Box–Muller so the tests need no extra crate.
    mod rand_distr_free {
        use rand::Rng;
        pub fn normal(rng: &mut impl Rng) -> f64 {
            let u1: f64 = rng.gen_range(1e-12..1.0);
            let u2: f64 = rng.gen_range(0.0..1.0);
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        }
    }

    /// Region A (z₀ < 0): the detector is accurate, the LLM noisy; region B (z₀ > 0): the reverse.
    /// Returns latents, detector, LLM scores, reference mask (all presumed normal, y = 0.1).
    fn two_regions(n: usize, seed: u64) -> (Vec<Vec<f64>>, Vec<f64>, Vec<f64>, Vec<bool>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut z, mut s, mut big_s) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            let region_a = i % 2 == 0;
            let z0 = if region_a { -1.0 - rng.gen_range(0.0..1.0) } else { 1.0 + rng.gen_range(0.0..1.0) };
            z.push(vec![z0, normal(&mut rng), normal(&mut rng)]);
            let y = 0.1;
            let (ns, nl) = if region_a { (0.01, 0.25) } else { (0.25, 0.01) };
            s.push(y + ns * normal(&mut rng));
            big_s.push(y + nl * normal(&mut rng));
        }
        (z, s, big_s, vec![true; n])
    }

    fn region_weights(net: &FusionNet) -> (f64, f64) {
        let a = net.weight(&[-1.5, 0.0, 0.0]);
        let b = net.weight(&[1.5, 0.0, 0.0]);
        (a, b)
    }

    #[test]
    fn collaborative_fusion_trusts_the_right_model_per_region() {
        let (z, s, big_s, r) = two_regions(200, 1);
        let net = train_fusion(&z, &s, &big_s, &r, &FusionConfig::default()).unwrap();
        let (a, b) = region_weights(&net);
        eprintln!("collaborative: α_A = {a:.3}, α_B = {b:.3}");
        assert!(a > 0.85, "region A should trust the detector: α = {a}");
        assert!(b < 0.15, "region B should trust the LLM: α = {b}");
    }

    #[test]
    fn constant_bias_cancels_in_collaborative_loss_but_not_in_mse() {
        let (z, s, big_s, r) = two_regions(200, 2);
        let biased: Vec<f64> = s.iter().map(|x| x + 0.4).collect();
        let col = FusionConfig::default();
        let net0 = train_fusion(&z, &s, &big_s, &r, &col).unwrap();
        let net1 = train_fusion(&z, &biased, &big_s, &r, &col).unwrap();
        let (a0, b0) = region_weights(&net0);
        let (a1, b1) = region_weights(&net1);
        assert!((a0 - a1).abs() < 1e-9 && (b0 - b1).abs() < 1e-9, "collaborative fit moved: {a0} {a1} {b0} {b1}");

        let mse = FusionConfig { loss: FusionLoss::Mse, ..FusionConfig::default() };
        let m0 = train_fusion(&z, &s, &big_s, &r, &mse).unwrap();
        let m1 = train_fusion(&z, &biased, &big_s, &r, &mse).unwrap();
        let (ma0, _) = region_weights(&m0);
        let (ma1, _) = region_weights(&m1);
        eprintln!("collaborative α_A {a0:.3} -> {a1:.3} with +0.4 detector bias; MSE α_A {ma0:.3} -> {ma1:.3}");
        assert!(ma0 - ma1 > 0.3, "MSE fit should move away from the biased detector: {ma0} -> {ma1}");
        // Error accumulation: MSE on the biased detector loses the accurate model in region A.
        assert!(ma1 < 0.5, "α_A under MSE with bias = {ma1}");
    }

    #[test]
    fn fuse_and_bad_input() {
        let (z, s, big_s, r) = two_regions(20, 3);
        let net = train_fusion(&z, &s, &big_s, &r, &FusionConfig { epochs: 10, ..FusionConfig::default() }).unwrap();
        let llm: Vec<Option<f64>> = big_s.iter().enumerate().map(|(i, &x)| (i % 2 == 0).then_some(x)).collect();
        let fused = net.fuse(&z, &s, &llm).unwrap();
        assert_eq!(fused[1], s[1]);
        assert!(net.fuse(&z, &s[..3], &llm).is_err());
        assert!(train_fusion(&z, &s, &big_s, &[false; 20], &FusionConfig::default()).is_err());
        assert!(
            train_fusion(&vec![vec![0.0; 40]; 2], &[0.0; 2], &[0.0; 2], &[true; 2], &FusionConfig::default()).is_err()
        );
        assert_eq!(net.weight(&[f64::NAN, 0.0, 0.0]), 0.5);
    }
}
