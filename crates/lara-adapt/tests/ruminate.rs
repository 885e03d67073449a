//! The ruminate block (digest §3): SNIS against the analytic posterior of a linear-Gaussian
//! model, the sufficient-statistic likelihood against the brute-force one, determinism.

mod common;

use common::{rng, LinearGaussianVae, MlpVae};
use lara_adapt::ruminate::fill_standard_normal;
use lara_adapt::{FrozenVae, Proposal, RuminateBlock};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Asserts `|ẑ − z*| ≤ 5 sd/√ESS + 0.01` coordinate-wise, `sd` the analytic posterior sd.
fn assert_matches_posterior(model: &LinearGaussianVae, obs: &[f32], z: &[f32], ess: f64) {
    let analytic = model.posterior_mean_of(obs);
    let k = (obs.len() / (model.w * model.m)) as f64;
    let cov = common::spd_inverse(&model.precision(k), model.d);
    for i in 0..model.d {
        let sd = cov[i * model.d + i].sqrt();
        let tol = 5.0 * sd / ess.sqrt() + 0.01;
        let err = (z[i] as f64 - analytic[i]).abs();
        assert!(err < tol, "z[{i}] = {} vs analytic {} (err {err:.4}, tol {tol:.4}, ESS {ess:.0})", z[i], analytic[i]);
    }
}

#[test]
fn encoder_snis_matches_analytic_posterior_mean() {
    let model = LinearGaussianVae::random(4, 3, 3, 0.5, 1);
    let x = model.sample(1, 2);
    let block =
        RuminateBlock { n_lookalikes: 3, n_samples: 40_000, proposal: Proposal::Encoder, seed: 9, min_ess: 0.0 };
    let look = block.restore_lookalikes(&model, &x, 0).unwrap();
    assert_eq!(look.len(), 3 * 12);
    let est = block.posterior_mean(&model, &x, &look, 0).unwrap();
    let (z, ess) = (est.z, est.ess);
    assert!(ess > 1000.0, "ESS {ess}");
    let mut obs = x.clone();
    obs.extend_from_slice(&look);
    assert_matches_posterior(&model, &obs, &z, ess);
    // No look-alikes: E[z|x], which the exact encoder mean already is.
    let est = block.posterior_mean(&model, &x, &[], 0).unwrap();
    let (z0, ess0) = (est.z, est.ess);
    assert_matches_posterior(&model, &x, &z0, ess0);
    let (mu, _) = model.encode(&x, 1);
    for i in 0..3 {
        assert!((z0[i] - mu[i]).abs() < 0.02, "{} vs {}", z0[i], mu[i]);
    }
}

#[test]
fn pooled_snis_matches_analytic_posterior_mean() {
    let model = LinearGaussianVae::random(5, 3, 4, 0.3, 21);
    let x = model.sample(1, 22);
    let block = RuminateBlock { n_lookalikes: 8, n_samples: 20_000, proposal: Proposal::Pooled, seed: 3, min_ess: 0.0 };
    let look = block.restore_lookalikes(&model, &x, 0).unwrap();
    let est = block.posterior_mean(&model, &x, &look, 0).unwrap();
    let (z, ess) = (est.z, est.ess);
    assert!(ess > 2000.0, "ESS {ess}");
    let mut obs = x.clone();
    obs.extend_from_slice(&look);
    assert_matches_posterior(&model, &obs, &z, ess);
}

#[test]
fn pooled_proposal_keeps_the_ess_at_realistic_latent_size() {
    // d_z = 32, n = 8, N = 256: the target is ≈ 9× narrower than q(z|x), so the encoder
    // proposal collapses (ESS ≈ 1) while the pooled product-of-experts one stays accurate.
    let model = LinearGaussianVae::random(40, 38, 32, 0.1, 31);
    let x = model.sample(1, 32);
    let rms_err = |proposal| {
        let block = RuminateBlock { n_lookalikes: 8, n_samples: 256, proposal, seed: 0, min_ess: 0.0 };
        let look = block.restore_lookalikes(&model, &x, 0).unwrap();
        let est = block.posterior_mean(&model, &x, &look, 0).unwrap();
        let (z, ess) = (est.z, est.ess);
        let mut obs = x.clone();
        obs.extend_from_slice(&look);
        let exact = model.posterior_mean_of(&obs);
        let cov = common::spd_inverse(&model.precision(9.0), 32);
        let e = (0..32).map(|i| ((z[i] as f64 - exact[i]) / cov[i * 32 + i].sqrt()).powi(2)).sum::<f64>() / 32.0;
        (e.sqrt(), ess)
    };
    let (err_pooled, ess_pooled) = rms_err(Proposal::Pooled);
    let (err_enc, ess_enc) = rms_err(Proposal::Encoder);
    assert!(ess_pooled > 100.0, "pooled ESS {ess_pooled}");
    assert!(err_pooled < 0.2, "pooled error {err_pooled} sd");
    assert!(ess_enc < ess_pooled && err_enc > err_pooled, "encoder: ESS {ess_enc}, error {err_enc}");
}

#[test]
fn prior_snis_matches_analytic_posterior_mean() {
    // The paper's Eq. 5 (prior proposal) is consistent too, but needs a flat likelihood.
    let model = LinearGaussianVae::random(3, 2, 2, 2.0, 3);
    let x = model.sample(1, 4);
    let block = RuminateBlock { n_lookalikes: 2, n_samples: 60_000, proposal: Proposal::Prior, seed: 5, min_ess: 0.0 };
    let look = block.restore_lookalikes(&model, &x, 0).unwrap();
    let est = block.posterior_mean(&model, &x, &look, 0).unwrap();
    let (z, ess) = (est.z, est.ess);
    assert!(ess > 500.0, "ESS {ess}");
    let mut obs = x.clone();
    obs.extend_from_slice(&look);
    assert_matches_posterior(&model, &obs, &z, ess);
}

#[test]
fn target_latents_follow_the_documented_draws_and_brute_force_likelihood() {
    // Re-derive z̃ by brute force: log p(x|z_s) + Σ_j log p(x̄_j|z_s) (+ log p − log q), with the
    // documented draw order (stream b: look-alike noise n×d, then proposal noise N×d).
    let model = MlpVae::random(6, 3, 4, 16, 7);
    let windows = model.decode_mean(&[0.3f32; 2 * 4], 2);
    for proposal in [Proposal::Encoder, Proposal::Pooled, Proposal::Prior] {
        let block = RuminateBlock { n_lookalikes: 5, n_samples: 64, proposal, seed: 42, min_ess: 0.0 };
        let out = block.target_latents(&model, &windows).unwrap();
        let (d, size) = (4, 18);
        let (mu, lv) = model.encode(&windows, 2);
        for b in 0..2 {
            let mut r = ChaCha8Rng::seed_from_u64(42);
            r.set_stream(b as u64);
            let (m, l) = (&mu[b * d..(b + 1) * d], &lv[b * d..(b + 1) * d]);
            let mut e = vec![0.0; 5 * d];
            fill_standard_normal(&mut r, &mut e);
            let zl: Vec<f32> =
                (0..5 * d).map(|i| (m[i % d] as f64 + (0.5 * l[i % d] as f64).exp() * e[i]) as f32).collect();
            let look = model.decode_mean(&zl, 5);
            let mut e = vec![0.0; 64 * d];
            fill_standard_normal(&mut r, &mut e);
            let x = &windows[b * size..(b + 1) * size];
            // Proposal N(qm, qs²): the encoder at x, or (pooled) the encoder at c counted n+1 times.
            let (qm, qs): (Vec<f64>, Vec<f64>) = if proposal == Proposal::Pooled {
                let c: Vec<f32> = (0..size)
                    .map(|i| ((x[i] as f64 + (0..5).map(|j| look[j * size + i] as f64).sum::<f64>()) / 6.0) as f32)
                    .collect();
                let (cm, cl) = model.encode(&c, 1);
                // Product of experts: prior × (q(z|c)/p(z))^6 per coordinate.
                cm.iter()
                    .zip(&cl)
                    .map(|(&mm, &ll)| {
                        let v = (ll as f64).exp();
                        let prec = 1.0 + 6.0 * (1.0 / v - 1.0).max(0.0);
                        (6.0 * mm as f64 / v / prec, prec.powf(-0.5))
                    })
                    .unzip()
            } else {
                (m.iter().map(|&v| v as f64).collect(), l.iter().map(|&v| (0.5 * v as f64).exp()).collect())
            };
            let zs: Vec<f32> = match proposal {
                Proposal::Prior => e.iter().map(|&v| v as f32).collect(),
                _ => (0..64 * d).map(|i| (qm[i % d] + qs[i % d] * e[i]) as f32).collect(),
            };
            let xs = model.decode_mean(&zs, 64);
            let loglik = |o: &[f32], mean: &[f32]| -> f64 {
                (0..size)
                    .map(|i| {
                        let lvar = model.log_var[i % 3] as f64;
                        let r = o[i] as f64 - mean[i] as f64;
                        -0.5 * (r * r * (-lvar).exp() + lvar + std::f64::consts::TAU.ln())
                    })
                    .sum()
            };
            let logw: Vec<f64> = (0..64)
                .map(|s| {
                    let mean = &xs[s * size..(s + 1) * size];
                    let mut lw = loglik(x, mean) + look.chunks_exact(size).map(|o| loglik(o, mean)).sum::<f64>();
                    if proposal != Proposal::Prior {
                        for j in 0..d {
                            let z = zs[s * d + j] as f64;
                            let u = (z - qm[j]) / qs[j];
                            lw += -0.5 * z * z - (-0.5 * u * u - qs[j].ln());
                        }
                    }
                    lw
                })
                .collect();
            let max = logw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let w: Vec<f64> = logw.iter().map(|v| (v - max).exp()).collect();
            let tot: f64 = w.iter().sum();
            for j in 0..d {
                let zt: f64 = (0..64).map(|s| w[s] / tot * zs[s * d + j] as f64).sum();
                let got = out.z_tilde[b * d + j] as f64;
                assert!(
                    (got - zt).abs() < 1e-4 * (1.0 + zt.abs()),
                    "{proposal:?} window {b} z[{j}]: {got} vs brute force {zt}"
                );
            }
            let ess = tot * tot / w.iter().map(|v| v * v).sum::<f64>();
            assert!((out.ess[b] - ess).abs() < 1e-6 * ess);
        }
    }
}

#[test]
fn ess_floor_tempers_collapsed_weights_only() {
    // Informative linear-Gaussian model, encoder proposal with many look-alikes: the plain
    // weights collapse; the floor tempers them to ESS ≈ min_ess. Where the plain ESS already
    // meets the floor, the estimate is exactly the plain one.
    let model = LinearGaussianVae::random(20, 10, 16, 0.1, 41);
    let x = model.sample(1, 42);
    let plain = RuminateBlock { n_lookalikes: 12, n_samples: 256, proposal: Proposal::Encoder, seed: 1, min_ess: 0.0 };
    let look = plain.restore_lookalikes(&model, &x, 0).unwrap();
    let p = plain.posterior_mean(&model, &x, &look, 0).unwrap();
    assert!(p.ess < 8.0 && p.temperature == 1.0, "plain ESS {}", p.ess);
    let floored = RuminateBlock { min_ess: 32.0, ..plain }.posterior_mean(&model, &x, &look, 0).unwrap();
    assert!(floored.temperature < 1.0 && floored.temperature > 0.0, "β {}", floored.temperature);
    assert!(floored.ess >= 32.0 && floored.ess < 33.0, "tempered ESS {}", floored.ess);
    let met = RuminateBlock { min_ess: p.ess * 0.99, ..plain }.posterior_mean(&model, &x, &look, 0).unwrap();
    assert_eq!(met, p);
    assert!(RuminateBlock { min_ess: f64::NAN, ..plain }.posterior_mean(&model, &x, &look, 0).is_err());
}

#[test]
fn deterministic_per_seed_and_independent_of_other_windows() {
    let model = MlpVae::random(5, 2, 3, 8, 1);
    let data: Vec<f32> = common::normals(&mut rng(3), 3 * 10).into_iter().map(|v| v as f32).collect();
    let (w0, w1, w2) = (&data[..10], &data[10..20], &data[20..]);
    let block = RuminateBlock::default();
    let a = block.target_latents(&model, &[w0, w1].concat()).unwrap();
    let b = block.target_latents(&model, &[w0, w1].concat()).unwrap();
    assert_eq!(a, b);
    let c = block.target_latents(&model, &[w2, w1].concat()).unwrap();
    assert_eq!(a.z_tilde[3..], c.z_tilde[3..], "window 1 depends only on its data, index and seed");
    let d = RuminateBlock { seed: 1, ..block }.target_latents(&model, &[w0, w1].concat()).unwrap();
    assert_ne!(a.z_tilde, d.z_tilde);
    assert_eq!(a.z_old.len(), 6);
}

#[test]
fn target_is_finite_with_valid_ess_for_any_lookalike_count() {
    let model = LinearGaussianVae::random(8, 4, 4, 0.3, 11);
    let x = model.sample(1, 12);
    for n in [0usize, 4, 16] {
        let block =
            RuminateBlock { n_lookalikes: n, n_samples: 256, proposal: Proposal::Encoder, seed: 0, min_ess: 0.0 };
        let out = block.target_latents(&model, &x).unwrap();
        assert!(out.z_tilde.iter().all(|v| v.is_finite()));
        assert!(out.ess[0] >= 1.0 && out.ess[0] <= 256.0 + 1e-9);
    }
}
