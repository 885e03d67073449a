//! Sweeps the ridge strengths on the linear-Gaussian toy (how the defaults of `AdaptConfig`
//! were chosen) and prints the ruminate ESS at realistic sizes.
//! `cargo run -p lara-adapt --release --example tune_defaults`

#[path = "../tests/common/mod.rs"]
mod common;

use common::{normals, rng, LinearGaussianVae};
use lara_adapt::{adapt, score_windows, AdaptConfig, Adapter, Proposal, Ridge, RuminateBlock, ScoreKind};

fn shift(windows: &[f32], m: usize, g: &[f64], off: &[f64]) -> Vec<f32> {
    windows
        .chunks_exact(m)
        .flat_map(|x| (0..m).map(move |i| (off[i] + (0..m).map(|j| g[i * m + j] * x[j] as f64).sum::<f64>()) as f32))
        .collect()
}

fn main() {
    for (w, m, d) in [(40usize, 8usize, 6usize), (40, 38, 8)] {
        let mut settings: Vec<(String, Ridge, Ridge)> = Vec::new();
        for kx in [0.5, 2.0, 8.0, 32.0, 128.0] {
            settings.push((format!("z 1 | x {kx}"), Ridge::rows(1.0), Ridge::rows(kx)));
        }
        for kx in [0.5, 1.0, 2.0] {
            settings.push((format!("z 1 | x {kx}/dim"), Ridge::rows(1.0), Ridge::per_dim(kx)));
        }
        for kz in [0.1, 8.0] {
            settings.push((format!("z {kz} | x 1/dim"), Ridge::rows(kz), Ridge::per_dim(1.0)));
        }
        println!("held-out per-step NLL change vs the old model (lower is better), w={w} m={m} d={d}, 3 trials");
        println!("{:>18} {:>10} {:>10}", "ridge", "1 window", "4 windows");
        for (name, rz, rx) in settings {
            let mut sums = [0.0f64; 2];
            for trial in 0..3u64 {
                let model = LinearGaussianVae::random(w, m, d, 0.05, 100 + trial);
                let mut r = rng(200 + trial);
                let strength = 0.3;
                let mut g: Vec<f64> =
                    normals(&mut r, m * m).into_iter().map(|v| strength * v / (m as f64).sqrt()).collect();
                for i in 0..m {
                    g[i * m + i] += 1.0;
                }
                let off: Vec<f64> = normals(&mut r, m).into_iter().map(|v| strength * v).collect();
                let test = shift(&model.sample(100, 300 + trial), m, &g, &off);
                let id = Adapter::identity_for(&model).unwrap();
                let base: f64 = score_windows(&model, &id, &test, ScoreKind::Nll).unwrap().iter().sum::<f64>();
                for (slot, nwin) in [1usize, 4].iter().enumerate() {
                    let new = shift(&model.sample(*nwin, 400 + trial), m, &g, &off);
                    let cfg = AdaptConfig { ridge_z: rz, ridge_x: rx, ..AdaptConfig::default() };
                    let a = adapt(&model, &new, &cfg).unwrap();
                    let s: f64 = score_windows(&model, &a, &test, ScoreKind::Nll).unwrap().iter().sum::<f64>();
                    sums[slot] += (s - base) / (test.len() / m) as f64;
                }
            }
            println!("{name:>18} {:>10.2} {:>10.2}", sums[0] / 3.0, sums[1] / 3.0);
        }
        println!();
    }

    println!(
        "\nruminate ESS and error vs the analytic posterior mean (N=256), linear-Gaussian w=40 m=38 d=32, noise 0.1"
    );
    println!("error = RMS over coordinates of (z̃ − E[z|x, x̄]) / posterior sd");
    let model = LinearGaussianVae::random(40, 38, 32, 0.1, 7);
    let x = model.sample(4, 8);
    let size = 40 * 38;
    for proposal in [Proposal::Encoder, Proposal::Pooled, Proposal::Prior] {
        for n in [0usize, 8, 16] {
            let block = RuminateBlock { n_lookalikes: n, n_samples: 256, proposal, seed: 0, min_ess: 0.0 };
            let mut ess = Vec::new();
            let mut err = Vec::new();
            for b in 0..4 {
                let xb = &x[b * size..(b + 1) * size];
                let look = block.restore_lookalikes(&model, xb, b).unwrap();
                let est = block.posterior_mean(&model, xb, &look, b).unwrap();
                let (z, e) = (est.z, est.ess);
                let mut obs = xb.to_vec();
                obs.extend_from_slice(&look);
                let exact = model.posterior_mean_of(&obs);
                let cov = common::spd_inverse(&model.precision((n + 1) as f64), 32);
                let rms = ((0..32).map(|i| ((z[i] as f64 - exact[i]) / cov[i * 32 + i].sqrt()).powi(2)).sum::<f64>()
                    / 32.0)
                    .sqrt();
                ess.push(format!("{e:.1}"));
                err.push(format!("{rms:.2}"));
            }
            println!("{proposal:?} n={n}: ESS {}   error {}", ess.join(" "), err.join(" "));
        }
    }
}
