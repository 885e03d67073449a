//! The adapter end to end: identity = old model, adaptation helps, chained changes, serde,
//! size, and bad inputs give errors (never panics).

mod common;

use common::{normals, rng, LinearGaussianVae, MlpVae};
use lara_adapt::{
    adapt, adapt_rows, adapt_with_report, adaptation_scores, reconstruct, score_rows, score_windows, AdaptConfig,
    AdaptError, AdaptedVae, Adapter, AffineMap, ChainPolicy, FrozenVae, Ridge, ScoreKind, Solver,
};
use proptest::prelude::*;

/// Applies `x_t ↦ G x_t + g` to every time step (a change of normal pattern).
fn shift_pattern(windows: &[f32], m: usize, g: &[f64], off: &[f64]) -> Vec<f32> {
    windows
        .chunks_exact(m)
        .flat_map(|x| (0..m).map(move |i| (off[i] + (0..m).map(|j| g[i * m + j] * x[j] as f64).sum::<f64>()) as f32))
        .collect()
}

fn random_change(m: usize, strength: f64, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut r = rng(seed);
    let mut g: Vec<f64> = normals(&mut r, m * m).into_iter().map(|v| strength * v / (m as f64).sqrt()).collect();
    for i in 0..m {
        g[i * m + i] += 1.0;
    }
    let off = normals(&mut r, m).into_iter().map(|v| 1.5 * strength * v).collect();
    (g, off)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn mean_nll<M: FrozenVae>(model: &M, adapter: &Adapter, windows: &[f32]) -> f64 {
    mean(&score_windows(model, adapter, windows, ScoreKind::Nll).unwrap())
}

#[test]
fn identity_adapter_reproduces_the_old_model_exactly() {
    let model = MlpVae::random(8, 5, 3, 16, 1);
    let x: Vec<f32> = normals(&mut rng(2), 3 * 40).into_iter().map(|v| v as f32).collect();
    let id = Adapter::identity_for(&model).unwrap();
    let (mu, lv) = model.encode(&x, 3);
    let old = model.decode_mean(&mu, 3);
    assert_eq!(reconstruct(&model, &id, &x).unwrap(), old, "bit-identical reconstruction");
    let wrapped = AdaptedVae::new(&model, &id).unwrap();
    assert_eq!(wrapped.encode(&x, 3), (mu, lv));
    assert_eq!(wrapped.decode_mean(&old[..0], 0), Vec::<f32>::new());
    // Old model's per-step NLL, computed independently.
    let scores = score_windows(&model, &id, &x, ScoreKind::Nll).unwrap();
    for (s, (xs, hs)) in scores.iter().zip(x.chunks_exact(5).zip(old.chunks_exact(5))) {
        let mut want = 0.0f64;
        for k in 0..5 {
            let lv = model.log_var[k];
            let r = xs[k] - hs[k];
            want += (r * r * (0.5 * (-lv).exp())) as f64 + 0.5 * (lv as f64 + std::f64::consts::TAU.ln());
        }
        assert_eq!(*s, want);
    }
    let sse = score_windows(&model, &id, &x, ScoreKind::Sse).unwrap();
    let want: f64 = x[..5].iter().zip(&old[..5]).map(|(a, b)| ((a - b) * (a - b)) as f64).sum();
    assert_eq!(sse[0], want);
}

#[test]
fn score_rows_agrees_with_window_scores_on_a_tiling() {
    let model = MlpVae::random(4, 3, 2, 8, 3);
    let rows: Vec<f32> = normals(&mut rng(4), 12 * 3).into_iter().map(|v| v as f32).collect();
    let a = Adapter::identity_for(&model).unwrap();
    let per_row = score_rows(&model, &a, &rows, 3, 4, ScoreKind::Nll).unwrap();
    let per_step = score_windows(&model, &a, &rows, ScoreKind::Nll).unwrap();
    assert_eq!(per_row.len(), 12);
    for (r, s) in per_row.iter().zip(&per_step) {
        assert!((r - s).abs() < 1e-5 * (1.0 + s.abs()), "{r} vs {s}");
    }
    // Overlapping windows: every row scored once, finite.
    let ov = score_rows(&model, &a, &rows, 3, 1, ScoreKind::Sse).unwrap();
    assert_eq!(ov.len(), 12);
    assert!(ov.iter().all(|v| v.is_finite() && *v >= 0.0));
}

#[test]
fn adaptation_to_a_changed_pattern_lowers_held_out_scores() {
    let (w, m, d) = (20, 5, 4);
    let model = LinearGaussianVae::random(w, m, d, 0.05, 10);
    let (g, off) = random_change(m, 0.5, 11);
    let held_out = shift_pattern(&model.sample(200, 12), m, &g, &off);
    let id = Adapter::identity_for(&model).unwrap();
    let before = mean_nll(&model, &id, &held_out);
    for n_win in [1usize, 4] {
        let new = shift_pattern(&model.sample(n_win, 13), m, &g, &off);
        let (adapter, report) = adapt_with_report(&model, &new, &AdaptConfig::default()).unwrap();
        let after = mean_nll(&model, &adapter, &held_out);
        assert_eq!(adapter.generation, 1);
        assert_eq!(report.n_windows, n_win);
        assert!(report.mse_x_fit < report.mse_x_anchor, "{report:?}");
        assert!(
            after < before - 0.5 * (before - mean_nll(&model, &id, &model.sample(200, 14))),
            "{n_win} windows: {before} -> {after}"
        );
    }
    // Old-pattern data under the old model is the reference level.
    assert!(mean_nll(&model, &id, &model.sample(200, 14)) < before);
}

#[test]
fn tiny_ridge_level_shift_fit_is_plain_least_squares() {
    // New pattern = old + constant offset per feature. With many windows and a tiny ridge the
    // M_x stage is ordinary least squares with a free bias: zero mean residual per feature on
    // the adaptation windows, and most of the held-out excess NLL removed. (Not all of it: the
    // ruminate target z̃ is the old model's view of the shifted window, so the part of the
    // offset the encoder projects into the latent comes back through the decoder with a
    // time-step-dependent shape a shared m×m map cannot undo.)
    let (w, m, d) = (10, 3, 2);
    let model = LinearGaussianVae::random(w, m, d, 0.01, 20);
    let off = [1.0, -0.5, 0.25];
    let mut id_g = vec![0.0; m * m];
    for i in 0..m {
        id_g[i * m + i] = 1.0;
    }
    let new = shift_pattern(&model.sample(300, 21), m, &id_g, &off);
    let cfg = AdaptConfig {
        ridge_z: Ridge { pseudo_rows: 1e-6, per_dim: false, penalise_bias: false },
        ridge_x: Ridge { pseudo_rows: 1e-6, per_dim: false, penalise_bias: false },
        n_samples: 64,
        ..AdaptConfig::default()
    };
    let a = adapt(&model, &new, &cfg).unwrap();
    let x_rec = reconstruct(&model, &a, &new).unwrap();
    for k in 0..m {
        let r = new.iter().zip(&x_rec).skip(k).step_by(m).map(|(x, h)| (x - h) as f64).sum::<f64>()
            / (new.len() / m) as f64;
        assert!(r.abs() < 1e-3, "mean residual of feature {k}: {r}");
    }
    let id = Adapter::identity_for(&model).unwrap();
    let test = shift_pattern(&model.sample(100, 22), m, &id_g, &off);
    let (before, after) = (mean_nll(&model, &id, &test), mean_nll(&model, &a, &test));
    let reference = mean_nll(&model, &id, &model.sample(100, 22));
    assert!(
        after - reference < 0.5 * (before - reference),
        "before {before}, after {after}, old-pattern reference {reference}"
    );
}

#[test]
fn one_window_with_as_many_features_as_steps_does_not_overfit() {
    // w = 40 steps, m = 38 features: M_x has 39 unknowns per output and 40 rows. The default
    // ridge (m pseudo-steps) keeps the fit useful on held-out data; a near-zero ridge does not.
    let (w, m, d) = (40, 38, 8);
    let model = LinearGaussianVae::random(w, m, d, 0.05, 90);
    let (g, off) = random_change(m, 0.3, 91);
    let held_out = shift_pattern(&model.sample(60, 92), m, &g, &off);
    let one = shift_pattern(&model.sample(1, 93), m, &g, &off);
    let id = Adapter::identity_for(&model).unwrap();
    let before = mean_nll(&model, &id, &held_out);
    let a = adapt(&model, &one, &AdaptConfig::default()).unwrap();
    let after = mean_nll(&model, &a, &held_out);
    assert!(after < before, "default ridge: {before} -> {after}");
    let loose = AdaptConfig { ridge_x: Ridge::rows(1e-3), ..AdaptConfig::default() };
    let overfit = mean_nll(&model, &adapt(&model, &one, &loose).unwrap(), &held_out);
    assert!(after < overfit, "default {after} vs near-zero ridge {overfit}");
}

#[test]
fn gradient_solver_reaches_the_closed_form_adapter() {
    let (w, m, d) = (8, 3, 2);
    let model = LinearGaussianVae::random(w, m, d, 0.05, 95);
    let (g, off) = random_change(m, 0.4, 96);
    let data = shift_pattern(&model.sample(4, 97), m, &g, &off);
    let closed = adapt(&model, &data, &AdaptConfig::default()).unwrap();
    let gd_cfg = AdaptConfig { solver: Solver::Gradient { max_iter: 1_000_000, tol: 1e-10 }, ..AdaptConfig::default() };
    let gd = adapt(&model, &data, &gd_cfg).unwrap();
    for (x, y) in closed
        .m_z
        .weight
        .iter()
        .chain(&closed.m_z.bias)
        .chain(&closed.m_x.weight)
        .chain(&closed.m_x.bias)
        .zip(gd.m_z.weight.iter().chain(&gd.m_z.bias).chain(&gd.m_x.weight).chain(&gd.m_x.bias))
    {
        assert!((x - y).abs() < 1e-4 * (1.0 + x.abs()), "closed {x} vs GD {y}");
    }
    let short = AdaptConfig { solver: Solver::Gradient { max_iter: 1, tol: 1e-12 }, ..AdaptConfig::default() };
    assert!(matches!(adapt(&model, &data, &short), Err(AdaptError::NotConverged { .. })));
}

#[test]
fn chained_adaptation_follows_the_newest_pattern() {
    let (w, m, d) = (16, 4, 3);
    let model = LinearGaussianVae::random(w, m, d, 0.05, 30);
    let (g1, o1) = random_change(m, 0.4, 31);
    let (g2, o2) = random_change(m, 0.4, 32);
    let p1 = |n, s| shift_pattern(&model.sample(n, s), m, &g1, &o1);
    let p2 = |n, s| shift_pattern(&model.sample(n, s), m, &g2, &o2);
    let cfg = AdaptConfig::default();
    let a1 = adapt(&model, &p1(4, 33), &cfg).unwrap();
    let (a2, _) = a1.adapt_again(&model, &p2(4, 34), &cfg).unwrap();
    assert_eq!(a2.generation, 2);
    assert_eq!(a2.param_bytes(), a1.param_bytes(), "a chain does not grow the adapter");
    let test2 = p2(200, 35);
    assert!(mean_nll(&model, &a2, &test2) < mean_nll(&model, &a1, &test2));

    // AnchorPrevious with an enormous ridge keeps the previous weights.
    let stiff = AdaptConfig {
        ridge_z: Ridge { pseudo_rows: 1e9, per_dim: false, penalise_bias: true },
        ridge_x: Ridge { pseudo_rows: 1e9, per_dim: false, penalise_bias: true },
        ..cfg
    };
    let (kept, _) = a1.adapt_again(&model, &p2(4, 34), &stiff).unwrap();
    for (x, y) in kept.m_x.weight.iter().chain(&kept.m_z.weight).zip(a1.m_x.weight.iter().chain(&a1.m_z.weight)) {
        assert!((x - y).abs() < 1e-4);
    }
    // AnchorIdentity with an enormous ridge goes back to the old model.
    let (reset, _) =
        a1.adapt_again(&model, &p2(4, 34), &AdaptConfig { chain: ChainPolicy::AnchorIdentity, ..stiff }).unwrap();
    assert!(reset.m_x.weight.iter().zip(&AffineMap::identity(m).weight).all(|(x, y)| (x - y).abs() < 1e-4));
}

#[test]
fn chain_policies_agree_when_the_data_determines_the_maps() {
    let (w, m, d) = (6, 3, 2);
    let model = LinearGaussianVae::random(w, m, d, 0.05, 40);
    let (g, o) = random_change(m, 0.3, 41);
    let a1 = adapt(&model, &shift_pattern(&model.sample(3, 42), m, &g, &o), &AdaptConfig::default()).unwrap();
    let (g2, o2) = random_change(m, 0.3, 43);
    let data = shift_pattern(&model.sample(80, 44), m, &g2, &o2);
    let loose = AdaptConfig {
        ridge_z: Ridge { pseudo_rows: 1e-7, per_dim: false, penalise_bias: false },
        ridge_x: Ridge { pseudo_rows: 1e-7, per_dim: false, penalise_bias: false },
        n_samples: 64,
        ..AdaptConfig::default()
    };
    let (a, _) = a1.adapt_again(&model, &data, &loose).unwrap();
    let (b, _) = a1.adapt_again(&model, &data, &AdaptConfig { chain: ChainPolicy::AnchorIdentity, ..loose }).unwrap();
    for (x, y) in a
        .m_z
        .weight
        .iter()
        .chain(&a.m_x.weight)
        .chain(&a.m_x.bias)
        .zip(b.m_z.weight.iter().chain(&b.m_x.weight).chain(&b.m_x.bias))
    {
        assert!((x - y).abs() < 1e-3 * (1.0 + x.abs()), "{x} vs {y}");
    }
}

#[test]
fn adapt_rows_cuts_43_slots_into_4_windows_and_is_deterministic() {
    let model = MlpVae::random(40, 6, 8, 32, 50);
    let rows: Vec<f32> = normals(&mut rng(51), 43 * 6).into_iter().map(|v| (0.3 * v) as f32).collect();
    let (a, report) = adapt_rows(&model, None, &rows, 6, &AdaptConfig::default()).unwrap();
    assert_eq!(report.n_windows, 4);
    let (b, _) = adapt_rows(&model, None, &rows, 6, &AdaptConfig::default()).unwrap();
    assert_eq!(a, b);
    let (c, _) = adapt_rows(&model, Some(&a), &rows, 6, &AdaptConfig::default()).unwrap();
    assert_eq!(c.generation, 2);
    let scores = score_rows(&model, &a, &rows, 6, 1, ScoreKind::Nll).unwrap();
    assert_eq!(scores.len(), 43);
    assert_eq!(adaptation_scores(&model, &a, &rows, 6, &AdaptConfig::default(), ScoreKind::Nll).unwrap(), scores);
    assert!(scores.iter().all(|s| s.is_finite()));
}

#[test]
fn serde_round_trip_and_size() {
    let model = MlpVae::random(5, 4, 3, 8, 60);
    let x: Vec<f32> = normals(&mut rng(61), 2 * 20).into_iter().map(|v| v as f32).collect();
    let a = adapt(&model, &x, &AdaptConfig::default()).unwrap();
    let json = serde_json::to_string(&a).unwrap();
    let back: Adapter = serde_json::from_str(&json).unwrap();
    assert_eq!(a, back);
    assert_eq!(reconstruct(&model, &a, &x).unwrap(), reconstruct(&model, &back, &x).unwrap());
    let cfg: AdaptConfig = serde_json::from_str(&serde_json::to_string(&AdaptConfig::default()).unwrap()).unwrap();
    assert_eq!(cfg, AdaptConfig::default());
    // Size formula 4·(d_z² + d_z + m² + m): d_z = 32, m = 55 → 16 544 B < 64 KiB.
    let big = Adapter::identity(32, 55);
    assert_eq!(big.param_bytes(), 4 * (32 * 32 + 32 + 55 * 55 + 55));
    assert_eq!(big.param_bytes(), 16_544);
    assert!(big.param_bytes() + std::mem::size_of::<Adapter>() < 64 * 1024);
    // A corrupted file is an error.
    let mut bad = a.clone();
    bad.m_x.weight.pop();
    let err = reconstruct(&model, &bad, &x).unwrap_err();
    assert!(matches!(err, AdaptError::AdapterMismatch(_)), "{err}");
    let err = reconstruct(&model, &Adapter::identity(3, 5), &x).unwrap_err();
    assert!(matches!(err, AdaptError::AdapterMismatch(_)), "{err}");
}

/// A model that misbehaves in a chosen way.
struct Broken {
    inner: MlpVae,
    mode: u8,
    lv: Vec<f32>,
}

impl FrozenVae for Broken {
    fn window_len(&self) -> usize {
        if self.mode == 5 {
            0
        } else {
            self.inner.w
        }
    }
    fn n_features(&self) -> usize {
        self.inner.m
    }
    fn latent_dim(&self) -> usize {
        self.inner.d
    }
    fn encode(&self, x: &[f32], n: usize) -> (Vec<f32>, Vec<f32>) {
        let (mut mu, lv) = self.inner.encode(x, n);
        match self.mode {
            1 => mu.pop().map(|_| ()).unwrap_or(()),
            2 => mu[0] = f32::NAN,
            _ => {}
        }
        (mu, lv)
    }
    fn decode_mean(&self, z: &[f32], n: usize) -> Vec<f32> {
        let mut x = self.inner.decode_mean(z, n);
        match self.mode {
            3 => x.truncate(1),
            4 => x[0] = f32::INFINITY,
            _ => {}
        }
        x
    }
    fn output_log_var(&self) -> &[f32] {
        &self.lv
    }
}

#[test]
fn bad_inputs_give_clear_errors() {
    let model = MlpVae::random(10, 3, 2, 8, 70);
    let cfg = AdaptConfig::default();
    let rows: Vec<f32> = normals(&mut rng(71), 12 * 3).into_iter().map(|v| v as f32).collect();

    let err = adapt_rows(&model, None, &rows[..9 * 3], 3, &cfg).unwrap_err();
    assert_eq!(err, AdaptError::TooFewRows { rows: 9, window: 10 });
    assert!(err.to_string().contains("at least one window of 10 rows"), "{err}");
    let err = adapt_rows(&model, None, &rows, 4, &cfg).unwrap_err();
    assert_eq!(err, AdaptError::ColumnMismatch { expected: 3, got: 4 });
    let err = adapt_rows(&model, None, &rows[..35], 3, &cfg).unwrap_err();
    assert!(matches!(err, AdaptError::BadLength { .. }), "{err}");
    let mut nan = rows.clone();
    nan[3 * 7 + 2] = f32::NAN;
    let err = adapt_rows(&model, None, &nan, 3, &cfg).unwrap_err();
    assert!(matches!(err, AdaptError::NonFinite { row: 7, col: 2, .. }), "{err}");
    assert!(err.to_string().contains("row 7, column 2"), "{err}");
    let err = adapt(&model, &rows[..29], &cfg).unwrap_err();
    assert!(matches!(err, AdaptError::BadLength { .. }), "{err}");
    let err = adapt(&model, &[], &cfg).unwrap_err();
    assert_eq!(err, AdaptError::Empty("windows"));
    let err = score_rows(&model, &Adapter::identity(2, 3), &rows[..3], 3, 1, ScoreKind::Nll).unwrap_err();
    assert!(matches!(err, AdaptError::TooFewRows { .. }), "{err}");

    for bad in [
        AdaptConfig { n_samples: 0, ..cfg },
        AdaptConfig { stride: 0, ..cfg },
        AdaptConfig { ridge_z: Ridge { pseudo_rows: 0.0, per_dim: false, penalise_bias: false }, ..cfg },
        AdaptConfig { ridge_x: Ridge { pseudo_rows: f64::NAN, per_dim: false, penalise_bias: false }, ..cfg },
    ] {
        let err = adapt(&model, &rows[..30], &bad).unwrap_err();
        assert!(matches!(err, AdaptError::InvalidConfig(_)), "{err}");
    }

    let x = &rows[..30];
    for (mode, lv_len) in [(1u8, 3usize), (2, 3), (3, 3), (4, 3), (5, 3), (0, 7), (0, 0)] {
        let broken = Broken { inner: model.clone(), mode, lv: vec![0.0; lv_len] };
        let err = adapt(&broken, x, &cfg).unwrap_err();
        let ok = match mode {
            1 => matches!(err, AdaptError::ModelOutputLength { .. }),
            2 | 4 => matches!(err, AdaptError::ModelNonFinite { .. }),
            3 => matches!(err, AdaptError::ModelOutputLength { method: "decode_mean", .. }),
            _ => matches!(err, AdaptError::InvalidModel(_)),
        };
        assert!(ok, "mode {mode}, log-var length {lv_len}: {err}");
        assert!(score_windows(&broken, &Adapter::identity(2, 3), x, ScoreKind::Nll).is_err());
    }
    // Per-element variance (w·m) is accepted.
    let per_elem = Broken { inner: model.clone(), mode: 0, lv: vec![-1.0; 30] };
    assert!(adapt(&per_elem, x, &cfg).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Arbitrary lengths, column counts and values (NaN, ±∞, huge) never panic.
    #[test]
    fn arbitrary_input_never_panics(
        vals in proptest::collection::vec(prop_oneof![
            4 => -10.0f32..10.0,
            1 => Just(f32::NAN),
            1 => Just(f32::INFINITY),
            1 => Just(1e30f32),
        ], 0..80),
        n_cols in 0usize..5,
        stride in 0usize..4,
    ) {
        let model = MlpVae::random(4, 3, 2, 4, 80);
        let cfg = AdaptConfig { n_samples: 8, stride, ..AdaptConfig::default() };
        let _ = adapt_rows(&model, None, &vals, n_cols, &cfg);
        let _ = adapt(&model, &vals, &cfg);
        let _ = score_rows(&model, &Adapter::identity(2, 3), &vals, n_cols, stride, ScoreKind::Nll);
        let _ = score_windows(&model, &Adapter::identity(2, 3), &vals, ScoreKind::Sse);
    }
}
