//! The convex fit (digest §5): closed form, gradient path, Gaussian MMSE recovery (§4).

mod common;

use common::{normals, rng, spd_inverse};
use lara_adapt::ridge::{cholesky_in_place, cholesky_solve};
use lara_adapt::{fit_ridge_gradient, fit_ridge_to_identity, AdaptError, AffineMap, Penalty, Ridge};
use proptest::prelude::*;

/// `n` samples of a jointly Gaussian `(u, v)` in `R^k × R^k`; returns inputs, targets and the
/// population `W = Σ_vu Σ_uu⁻¹`, `b = μ_v − W μ_u` (f64).
fn joint_gaussian(k: usize, n: usize, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f64>, Vec<f64>) {
    let mut r = rng(seed);
    let p = 2 * k;
    // Covariance C = L Lᵀ with L lower-triangular, well conditioned.
    let mut l = vec![0.0f64; p * p];
    let g = normals(&mut r, p * p);
    for i in 0..p {
        for j in 0..=i {
            l[i * p + j] = if i == j { 1.0 + 0.5 * g[i * p + j].abs() } else { 0.4 * g[i * p + j] };
        }
    }
    let mean: Vec<f64> = normals(&mut r, p).into_iter().map(|v| 2.0 * v).collect();
    let mut c = vec![0.0f64; p * p];
    for i in 0..p {
        for j in 0..p {
            c[i * p + j] = (0..p).map(|t| l[i * p + t] * l[j * p + t]).sum();
        }
    }
    let mut u = Vec::with_capacity(n * k);
    let mut v = Vec::with_capacity(n * k);
    for _ in 0..n {
        let e = normals(&mut r, p);
        for i in 0..p {
            let x = mean[i] + (0..=i).map(|t| l[i * p + t] * e[t]).sum::<f64>();
            if i < k {
                u.push(x as f32);
            } else {
                v.push(x as f32);
            }
        }
    }
    // W = C_vu C_uu⁻¹.
    let mut cuu = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..k {
            cuu[i * k + j] = c[i * p + j];
        }
    }
    let inv = spd_inverse(&cuu, k);
    let mut w = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..k {
            w[i * k + j] = (0..k).map(|t| c[(k + i) * p + t] * inv[t * k + j]).sum();
        }
    }
    let b: Vec<f64> = (0..k).map(|i| mean[k + i] - (0..k).map(|j| w[i * k + j] * mean[j]).sum::<f64>()).collect();
    (u, v, w, b)
}

fn tiny() -> Penalty {
    Penalty { weight: 1e-9, bias: 0.0 }
}

#[test]
fn recovers_gaussian_conditional_mean_map() {
    let k = 4;
    let (u, v, w, b) = joint_gaussian(k, 60_000, 7);
    let fit = fit_ridge_to_identity(&u, &v, k, tiny(), &AffineMap::identity(k)).unwrap();
    for (i, (got, want)) in fit.weight.iter().zip(&w).enumerate() {
        assert!((*got as f64 - want).abs() < 0.03, "W[{i}]: {got} vs {want}");
    }
    for (i, (got, want)) in fit.bias.iter().zip(&b).enumerate() {
        assert!((*got as f64 - want).abs() < 0.06, "b[{i}]: {got} vs {want}");
    }
}

#[test]
fn tiny_ridge_equals_sample_moment_formula() {
    // With λ → 0 the fit is exactly S_vu S_uu⁻¹ and v̄ − W ū of the sample (centred) moments.
    let k = 3;
    let n = 500;
    let (u, v, _, _) = joint_gaussian(k, n, 11);
    let mean = |x: &[f32], i: usize| x.chunks_exact(k).map(|r| r[i] as f64).sum::<f64>() / n as f64;
    let (mu, mv): (Vec<f64>, Vec<f64>) = ((0..k).map(|i| mean(&u, i)).collect(), (0..k).map(|i| mean(&v, i)).collect());
    let mut suu = vec![0.0; k * k];
    let mut svu = vec![0.0; k * k];
    for (ur, vr) in u.chunks_exact(k).zip(v.chunks_exact(k)) {
        for i in 0..k {
            for j in 0..k {
                suu[i * k + j] += (ur[i] as f64 - mu[i]) * (ur[j] as f64 - mu[j]);
                svu[i * k + j] += (vr[i] as f64 - mv[i]) * (ur[j] as f64 - mu[j]);
            }
        }
    }
    let inv = spd_inverse(&suu, k);
    let fit = fit_ridge_to_identity(&u, &v, k, Penalty { weight: 0.0, bias: 0.0 }, &AffineMap::identity(k)).unwrap();
    for i in 0..k {
        let mut bi = mv[i];
        for j in 0..k {
            let wij: f64 = (0..k).map(|t| svu[i * k + t] * inv[t * k + j]).sum();
            assert!((fit.weight[i * k + j] as f64 - wij).abs() < 1e-5 * (1.0 + wij.abs()), "W[{i},{j}]");
            bi -= wij * mu[j];
        }
        assert!((fit.bias[i] as f64 - bi).abs() < 1e-5 * (1.0 + bi.abs()), "b[{i}]");
    }
}

#[test]
fn closed_form_and_gradient_descent_reach_the_same_optimum() {
    let k = 5;
    for (rows, pseudo, pen_bias, seed) in
        [(200, 2.0, false, 1), (200, 0.5, true, 2), (3, 1.0, false, 3), (1, 4.0, true, 4)]
    {
        let (u, v, _, _) = joint_gaussian(k, rows, seed);
        let anchor = if seed % 2 == 0 {
            AffineMap::identity(k)
        } else {
            let (_, _, w, b) = joint_gaussian(k, 1, seed + 100);
            AffineMap::from_f64(k, &w, &b).unwrap()
        };
        let pen = Ridge { pseudo_rows: pseudo, per_dim: false, penalise_bias: pen_bias }.penalty(&u, k);
        let closed = fit_ridge_to_identity(&u, &v, k, pen, &anchor).unwrap();
        let gd = fit_ridge_gradient(&u, &v, k, pen, &anchor, 2_000_000, 1e-11).unwrap();
        assert!(
            gd.converged,
            "rows {rows}: GD did not converge ({} its, rel grad {:e})",
            gd.iterations, gd.relative_gradient
        );
        for (a, b) in closed.weight.iter().chain(&closed.bias).zip(gd.map.weight.iter().chain(&gd.map.bias)) {
            assert!((a - b).abs() < 1e-4 * (1.0 + a.abs()), "rows {rows}: closed {a} vs GD {b}");
        }
    }
}

#[test]
fn one_row_keeps_weight_at_anchor_and_fits_by_bias() {
    // Bias free, one row: the minimum-change solution is W = A, b = v − A u (no overfitting of W).
    let k = 6;
    let (u, v, _, _) = joint_gaussian(k, 1, 5);
    let pen = Ridge { pseudo_rows: 1.0, per_dim: false, penalise_bias: false }.penalty(&u, k);
    let fit = fit_ridge_to_identity(&u, &v, k, pen, &AffineMap::identity(k)).unwrap();
    let id = AffineMap::identity(k);
    for (a, b) in fit.weight.iter().zip(&id.weight) {
        assert!((a - b).abs() < 1e-5);
    }
    let out = fit.apply(&u).unwrap();
    for (a, b) in out.iter().zip(&v) {
        assert!((a - b).abs() < 1e-4);
    }
}

#[test]
fn few_rows_stay_close_to_identity_and_huge_ridge_returns_anchor() {
    let k = 8;
    let (u, v, _, _) = joint_gaussian(k, 4, 6);
    let anchor = AffineMap::identity(k);
    let dist = |m: &AffineMap| m.weight.iter().zip(&anchor.weight).map(|(a, b)| (a - b).powi(2)).sum::<f32>().sqrt();
    let weak = fit_ridge_to_identity(
        &u,
        &v,
        k,
        Ridge { pseudo_rows: 0.01, per_dim: false, penalise_bias: false }.penalty(&u, k),
        &anchor,
    )
    .unwrap();
    let strong = fit_ridge_to_identity(
        &u,
        &v,
        k,
        Ridge { pseudo_rows: 4.0, per_dim: false, penalise_bias: false }.penalty(&u, k),
        &anchor,
    )
    .unwrap();
    let huge = fit_ridge_to_identity(
        &u,
        &v,
        k,
        Ridge { pseudo_rows: 1e9, per_dim: false, penalise_bias: true }.penalty(&u, k),
        &anchor,
    )
    .unwrap();
    assert!(weak.weight.iter().chain(&weak.bias).all(|x| x.is_finite()));
    assert!(dist(&strong) < dist(&weak), "{} vs {}", dist(&strong), dist(&weak));
    assert!(dist(&huge) < 1e-5);
    assert!(huge.bias.iter().all(|b| b.abs() < 1e-4));
}

#[test]
fn zero_ridge_on_too_few_rows_is_an_error_not_a_panic() {
    let k = 4;
    let (u, v, _, _) = joint_gaussian(k, 2, 8);
    let err =
        fit_ridge_to_identity(&u, &v, k, Penalty { weight: 0.0, bias: 0.0 }, &AffineMap::identity(k)).unwrap_err();
    assert!(matches!(err, AdaptError::NotPositiveDefinite { .. }), "{err}");
    let err = fit_ridge_to_identity(&u[..5], &v, k, tiny(), &AffineMap::identity(k)).unwrap_err();
    assert!(matches!(err, AdaptError::BadLength { .. }), "{err}");
    let mut bad = u.clone();
    bad[3] = f32::NAN;
    let err = fit_ridge_to_identity(&bad, &v, k, tiny(), &AffineMap::identity(k)).unwrap_err();
    assert!(matches!(err, AdaptError::NonFinite { row: 0, col: 3, .. }), "{err}");
    let err = fit_ridge_to_identity(&u, &v, k, tiny(), &AffineMap::identity(k + 1)).unwrap_err();
    assert!(matches!(err, AdaptError::AdapterMismatch(_)), "{err}");
    let err = fit_ridge_to_identity(&[], &[], k, tiny(), &AffineMap::identity(k)).unwrap_err();
    assert!(matches!(err, AdaptError::Empty(_)), "{err}");
    let err =
        fit_ridge_to_identity(&u, &v, k, Penalty { weight: -1.0, bias: 0.0 }, &AffineMap::identity(k)).unwrap_err();
    assert!(matches!(err, AdaptError::InvalidConfig(_)), "{err}");
}

#[test]
fn cholesky_solves_and_rejects_indefinite() {
    let h = vec![4.0, 2.0, 0.6, 2.0, 5.0, 1.0, 0.6, 1.0, 3.0];
    let mut l = h.clone();
    cholesky_in_place(&mut l, 3).unwrap();
    let mut b = vec![1.0, 2.0, 3.0];
    cholesky_solve(&l, 3, &mut b, 1);
    for i in 0..3 {
        let r: f64 = (0..3).map(|j| h[i * 3 + j] * b[j]).sum();
        assert!((r - (i + 1) as f64).abs() < 1e-12);
    }
    let mut bad = vec![1.0, 2.0, 2.0, 1.0];
    assert!(matches!(cholesky_in_place(&mut bad, 2), Err(AdaptError::NotPositiveDefinite { pivot: 1, .. })));
}

#[test]
fn affine_compose_matches_sequential_application() {
    let k = 4;
    let (_, _, w1, b1) = joint_gaussian(k, 1, 21);
    let (_, _, w2, b2) = joint_gaussian(k, 1, 22);
    let (m1, m2) = (AffineMap::from_f64(k, &w1, &b1).unwrap(), AffineMap::from_f64(k, &w2, &b2).unwrap());
    let (u, _, _, _) = joint_gaussian(k, 10, 23);
    let seq = m2.apply(&m1.apply(&u).unwrap()).unwrap();
    let comp = m2.compose(&m1).unwrap().apply(&u).unwrap();
    for (a, b) in seq.iter().zip(&comp) {
        assert!((a - b).abs() < 1e-4 * (1.0 + a.abs()));
    }
    assert_eq!(AffineMap::identity(k).apply(&u).unwrap(), u);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// The closed form is stationary: ∇ = Σ_r (W u_r + b − v_r)[u_r; 1]ᵀ + Λ(Θ − Θ₀) ≈ 0.
    #[test]
    fn closed_form_is_stationary(k in 1usize..6, rows in 1usize..12, pseudo in 0.05f64..20.0, pen_bias: bool, seed in 0u64..1000) {
        let mut r = rng(seed);
        let u: Vec<f32> = normals(&mut r, rows * k).into_iter().map(|x| x as f32).collect();
        let v: Vec<f32> = normals(&mut r, rows * k).into_iter().map(|x| (x * 3.0 + 1.0) as f32).collect();
        let pen = Ridge { pseudo_rows: pseudo, per_dim: false, penalise_bias: pen_bias }.penalty(&u, k);
        let anchor = AffineMap::identity(k);
        let fit = fit_ridge_to_identity(&u, &v, k, pen, &anchor).unwrap();
        let pred = fit.apply(&u).unwrap();
        let mut scale = 1.0f64;
        for i in 0..k {
            let mut gb = pen.bias * (fit.bias[i] - anchor.bias[i]) as f64;
            for j in 0..k {
                let mut gw = pen.weight * (fit.weight[i * k + j] - anchor.weight[i * k + j]) as f64;
                for rr in 0..rows {
                    let res = (pred[rr * k + i] - v[rr * k + i]) as f64;
                    gw += res * u[rr * k + j] as f64;
                    scale += (v[rr * k + i] as f64 * u[rr * k + j] as f64).abs();
                }
                prop_assert!(gw.abs() < 1e-4 * scale, "dW[{},{}] = {}", i, j, gw);
            }
            for rr in 0..rows {
                gb += (pred[rr * k + i] - v[rr * k + i]) as f64;
            }
            prop_assert!(gb.abs() < 1e-4 * scale, "db[{}] = {}", i, gb);
        }
    }
}
