//! End-to-end tests of the detector: determinism, model files, coverage, separation.

use std::path::Path;

use lara_core::Series;
use lara_vae::{Detector, FitOptions, TrainConfig, VaeError};

/// 3 noisy sinusoids; optional anomaly: rows `[a, a+len)` of column 1 shifted by +3.
fn synth(n: usize, train_end: usize, anomaly: Option<(usize, usize)>) -> Series {
    let m = 3;
    let mut v = Vec::with_capacity(n * m);
    let mut s: u64 = 12345;
    let mut noise = || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((s >> 33) as f64 / (1u64 << 31) as f64 - 0.5) as f32 * 0.2
    };
    for t in 0..n {
        let p = t as f32 * std::f32::consts::TAU / 25.0;
        let mut row = [p.sin() + noise(), (p + 1.0).cos() * 2.0 + noise(), (2.0 * p).sin() * 0.5 + 1.0 + noise()];
        if let Some((a, len)) = anomaly {
            if t >= a && t < a + len {
                row[1] += 3.0;
            }
        }
        v.extend_from_slice(&row);
    }
    Series {
        values: v,
        n_rows: n,
        columns: vec!["a".into(), "b".into(), "c".into()],
        timestamps: None,
        labels: None,
        train_end,
    }
}

fn opts() -> FitOptions {
    FitOptions {
        window: 16,
        train: TrainConfig { hidden: 32, latent: 4, epochs: 8, batch: 32, lr: 2e-3, seed: 7, ..Default::default() },
        ..Default::default()
    }
}

fn fit(s: &Series) -> Detector {
    Detector::fit(s, &opts(), &mut |_| {}).expect("fit")
}

#[test]
fn deterministic_given_seed() {
    let s = synth(700, 500, None);
    let a = fit(&s);
    let b = fit(&s);
    assert_eq!(
        a.vae.params().iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.vae.params().iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    let da = a.detect(&s, None).unwrap();
    let db = b.detect(&s, None).unwrap();
    assert_eq!(
        da.score.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        db.score.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    assert_eq!(a.meta.threshold, b.meta.threshold);
    // The whole model file is byte-identical.
    assert_eq!(a.to_bytes().unwrap(), b.to_bytes().unwrap());
    // Another seed gives other weights.
    let mut o = opts();
    o.train.seed = 8;
    let c = Detector::fit(&s, &o, &mut |_| {}).unwrap();
    assert_ne!(a.vae.params(), c.vae.params());
}

#[test]
fn save_load_round_trip_and_bad_files() {
    let s = synth(600, 450, None);
    let d = fit(&s);
    let dir = std::env::temp_dir().join(format!("lara-vae-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.lara");
    d.save(&path).unwrap();
    let l = Detector::load(&path).unwrap();
    let mut dm = d.meta.clone();
    dm.report.seconds = 0.0; // wall time is not stored
    assert_eq!(l.meta, dm);
    assert_eq!(l.vae, d.vae);
    let (a, b) = (d.detect(&s, None).unwrap(), l.detect(&s, None).unwrap());
    assert_eq!(
        a.score.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.score.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    // No temporary file left behind.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

    let bytes = std::fs::read(&path).unwrap();
    // Value histograms make it a version-3 file (a version-2 reader would ignore them), per-
    // channel divisors alone a version-2 file (a version-1 reader must refuse it); a model with
    // neither is written as version 1; each reads back the same.
    assert!(d.meta.channel_scale.is_some() && d.meta.marginal.is_some());
    assert_eq!(bytes[8..12], 3u32.to_le_bytes());
    let no_hist = Detector::fit(&s, &FitOptions { marginal_bins: None, ..opts() }, &mut |_| {}).unwrap();
    let v2 = no_hist.to_bytes().unwrap();
    assert_eq!(v2[8..12], 2u32.to_le_bytes());
    let back = Detector::from_bytes(Path::new("v2.lara"), &v2).unwrap();
    assert!(back.meta.marginal.is_none() && back.meta.channel_scale.is_some());
    assert_eq!(back.detect(&s, None).unwrap().score, no_hist.detect(&s, None).unwrap().score);
    let nll =
        Detector::fit(&s, &FitOptions { channel_quantile: None, marginal_bins: None, ..opts() }, &mut |_| {}).unwrap();
    let v1 = nll.to_bytes().unwrap();
    assert_eq!(v1[8..12], 1u32.to_le_bytes());
    let back = Detector::from_bytes(Path::new("v1.lara"), &v1).unwrap();
    assert_eq!(back.vae, nll.vae);
    assert!(back.meta.channel_scale.is_none() && back.meta.format_version == 1);
    let p = Path::new("m.lara");
    // Truncated anywhere.
    for cut in [0usize, 5, 19, 40, bytes.len() / 2, bytes.len() - 1] {
        let e = Detector::from_bytes(p, &bytes[..cut]).unwrap_err();
        assert!(matches!(e, VaeError::Truncated { .. } | VaeError::NotAModel { .. }), "cut {cut}: {e}");
        if cut >= 20 {
            assert!(matches!(e, VaeError::Truncated { .. }), "cut {cut}: {e}");
            assert!(e.to_string().contains("truncated"));
        }
    }
    // A newer format version.
    let mut v4 = bytes.clone();
    v4[8..12].copy_from_slice(&4u32.to_le_bytes());
    let e = Detector::from_bytes(p, &v4).unwrap_err();
    assert!(matches!(e, VaeError::WrongVersion { found: 4, expected: 3, .. }), "{e}");
    assert!(e.to_string().contains("version 4"));
    // Garbage.
    let e = Detector::from_bytes(p, b"this is not a model at all, just some text").unwrap_err();
    assert!(matches!(e, VaeError::NotAModel { .. }), "{e}");
    let e = Detector::from_bytes(p, &[]).unwrap_err();
    assert!(matches!(e, VaeError::NotAModel { .. }), "{e}");
    // A flipped byte in the weights.
    let mut f = bytes.clone();
    let i = f.len() - 100;
    f[i] ^= 0x55;
    let e = Detector::from_bytes(p, &f).unwrap_err();
    assert!(matches!(e, VaeError::Corrupt { .. }), "{e}");
    // Huge announced header length.
    let mut h = bytes.clone();
    h[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(Detector::from_bytes(p, &h).is_err());
    // A well-formed container whose header disagrees with its weights (checksum valid).
    for edit in 0..3 {
        let mut meta = d.meta.clone();
        match edit {
            0 => meta.arch.hidden = usize::MAX / 4,
            1 => meta.options.window += 1,
            _ => meta.columns.push("extra".into()),
        }
        let json = serde_json::to_vec(&meta).unwrap();
        let bytes = lara_vae::file::to_bytes(3, &json, &d.vae).unwrap();
        let e = Detector::from_bytes(p, &bytes).unwrap_err();
        assert!(matches!(e, VaeError::Corrupt { .. }), "edit {edit}: {e}");
    }
    // Per-channel divisors in a file that calls itself version 1: refused, not mis-scored.
    let mut meta = no_hist.meta.clone();
    meta.format_version = 1;
    let bytes = lara_vae::file::to_bytes(1, &serde_json::to_vec(&meta).unwrap(), &no_hist.vae).unwrap();
    let e = Detector::from_bytes(p, &bytes).unwrap_err();
    assert!(matches!(e, VaeError::Corrupt { .. }) && e.to_string().contains("version 1"), "{e}");
    // Divisors that do not fit the columns, or are not positive: refused, not mis-scored.
    for bad in [vec![1.0f32], vec![1.0, 0.0, 1.0], vec![1.0, -2.0, 1.0]] {
        let mut meta = d.meta.clone();
        meta.channel_scale = Some(bad.clone());
        let bytes = lara_vae::file::to_bytes(3, &serde_json::to_vec(&meta).unwrap(), &d.vae).unwrap();
        let e = Detector::from_bytes(p, &bytes).unwrap_err();
        assert!(matches!(e, VaeError::Corrupt { .. }) && e.to_string().contains("divisors"), "{bad:?}: {e}");
    }
    // Value histograms in a file that calls itself version 2: refused, not mis-scored.
    let mut meta = d.meta.clone();
    meta.format_version = 2;
    let bytes = lara_vae::file::to_bytes(2, &serde_json::to_vec(&meta).unwrap(), &d.vae).unwrap();
    let e = Detector::from_bytes(p, &bytes).unwrap_err();
    assert!(matches!(e, VaeError::Corrupt { .. }) && e.to_string().contains("version 2"), "{e}");
    // Histograms of a column the model does not have, without bins, with a negative score or
    // weight: refused.
    for edit in 0..4 {
        let mut meta = d.meta.clone();
        let mm = meta.marginal.as_mut().unwrap();
        match edit {
            0 => mm.channels[0].column = 3,
            1 => mm.channels[0].bin_score.clear(),
            2 => mm.channels[0].bin_score[0] = -1.0,
            _ => mm.lambda = -1.0,
        }
        let bytes = lara_vae::file::to_bytes(3, &serde_json::to_vec(&meta).unwrap(), &d.vae).unwrap();
        let e = Detector::from_bytes(p, &bytes).unwrap_err();
        assert!(matches!(e, VaeError::Corrupt { .. }) && e.to_string().contains("histogram"), "edit {edit}: {e}");
    }
    // Missing file.
    assert!(matches!(Detector::load(&dir.join("nope.lara")), Err(VaeError::Io { .. })));
    // Columns mismatch.
    let mut s2 = s.clone();
    s2.columns[1] = "B".into();
    let e = l.detect(&s2, None).unwrap_err();
    assert!(matches!(e, VaeError::ColumnMismatch { .. }), "{e}");
    assert!(e.to_string().contains("\"b\""), "{e}");
    let mut s3 = s.clone();
    s3.columns.pop();
    s3.values = s3.values.chunks(3).flat_map(|r| r[..2].to_vec()).collect();
    assert!(matches!(l.detect(&s3, None), Err(VaeError::ColumnMismatch { .. })));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_row_scored_and_anomaly_separated() {
    let (a0, len) = (760, 15);
    let s = synth(1000, 600, Some((a0, len)));
    let d = fit(&s);
    for stride in [1, 4, 16, 100] {
        let r = d.detect(&s, Some(stride)).unwrap();
        assert_eq!(r.score.len(), 1000);
        assert_eq!(r.top_dims.len(), 1000);
        assert!(r.score.iter().all(|v| v.is_finite()));
        let inside = r.score[a0..a0 + len].iter().cloned().fold(f64::INFINITY, f64::min);
        let outside =
            r.score[..a0 - 16].iter().chain(&r.score[a0 + len + 16..]).cloned().fold(f64::NEG_INFINITY, f64::max);
        assert!(inside > outside, "stride {stride}: min inside {inside} <= max outside {outside}");
        // The shifted column is the top contributor inside the anomaly.
        assert!(r.top_dims[a0 + 5][0] == 1, "{:?}", r.top_dims[a0 + 5]);
        assert!(r.is_anomaly[a0 + 5]);
    }
    // Series shorter than the window: still one score per row.
    let short = Series { values: s.values[..5 * 3].to_vec(), n_rows: 5, train_end: 0, ..s.clone() };
    let r = d.detect(&short, None).unwrap();
    assert_eq!(r.score.len(), 5);
    assert!(r.score.iter().all(|v| v.is_finite()));
    // Empty series: zero rows.
    let empty = Series { values: vec![], n_rows: 0, train_end: 0, ..s.clone() };
    assert_eq!(d.detect(&empty, None).unwrap().score.len(), 0);
}

/// Area under the ROC curve of `score` for rows `[a, b)` against the others (ties count ½).
fn auc(score: &[f64], a: usize, b: usize) -> f64 {
    let (inside, outside): (Vec<(usize, f64)>, Vec<(usize, f64)>) =
        score.iter().copied().enumerate().partition(|(t, _)| (a..b).contains(t));
    let mut wins = 0.0;
    for (_, x) in &inside {
        for (_, y) in &outside {
            wins += if x > y {
                1.0
            } else if x == y {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (inside.len() * outside.len()) as f64
}

/// Trained on every row (TSB-AD's protocol for IForest / PCA), the VAE also learns a long
/// stretch of one channel at an unusual level; the value histograms still find it rare.
#[test]
fn value_histograms_rank_a_long_unusual_stretch_learned_in_training() {
    let (a, b) = (700, 900);
    let s = synth(1000, 0, Some((a, b - a)));
    let with = fit(&s);
    let without = Detector::fit(&s, &FitOptions { marginal_bins: None, ..opts() }, &mut |_| {}).unwrap();
    assert!(with.meta.marginal.as_ref().is_some_and(|m| m.channels.len() == 3 && m.lambda > 0.0));
    assert!(without.meta.marginal.is_none());
    let (auc_with, auc_without) =
        (auc(&with.detect(&s, None).unwrap().score, a, b), auc(&without.detect(&s, None).unwrap().score, a, b));
    eprintln!("AUC-ROC of the stretch: {auc_with:.3} with histograms, {auc_without:.3} without");
    assert!(auc_with > auc_without, "{auc_with} vs {auc_without}");
    // The shifted channel's values are rarer inside the stretch than outside it.
    let h1 = with.meta.marginal.as_ref().unwrap().channels.iter().find(|h| h.column == 1).unwrap().clone();
    let x = with.scale(&s).unwrap();
    let mean = |rows: &mut dyn Iterator<Item = usize>| {
        let v: Vec<f32> = rows.map(|t| h1.score(x[t * 3 + 1])).collect();
        v.iter().sum::<f32>() / v.len() as f32
    };
    let (inside, outside) = (mean(&mut (a..b)), mean(&mut (0..a).chain(b..1000)));
    assert!(inside > outside, "{inside} vs {outside}");
    // One column: the VAE alone (file-level cross-validation, crate docs).
    let one = Series { values: s.values.chunks(3).map(|r| r[1]).collect(), columns: vec!["b".into()], ..s.clone() };
    assert!(fit(&one).meta.marginal.is_none());
    // Binary and constant columns get no histogram.
    let flags = Series {
        values: (0..1000).flat_map(|t| [(t % 13 == 0) as u8 as f32, 1.0]).collect(),
        columns: vec!["flag".into(), "constant".into()],
        ..s.clone()
    };
    assert!(fit(&flags).meta.marginal.is_none());
}

#[test]
fn training_prefix_too_short_is_an_error() {
    let s = synth(100, 10, None);
    let e = Detector::fit(&s, &opts(), &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("window"), "{e}");
}

mod common;

mod adaptation {
    use lara_adapt::{AdaptConfig, Adapter};
    use lara_core::Series;
    use lara_vae::{Adaptation, Detector};

    use super::common::{toy_detector as detector, toy_series as series};

    fn mean(v: &[f64]) -> f64 {
        v.iter().sum::<f64>() / v.len() as f64
    }

    /// The identity adapter reproduces the frozen VAE's scores exactly. An adapted model does
    /// not add the value histograms (they describe the pattern before the change), so the
    /// reference is the base model without them.
    #[test]
    fn identity_adapter_keeps_scores() {
        let det = detector();
        let data = series(400, 0, 0.0, 1.0, 9);
        assert!(det.meta.marginal.is_some());
        let with_hist = det.detect(&data, None).unwrap();
        let mut vae_only = det.clone();
        vae_only.meta.marginal = None;
        let base = vae_only.detect(&data, None).unwrap();
        assert_ne!(with_hist.score, base.score);
        let mut ident = det.clone();
        let m = 2;
        let latent = det.vae.latent();
        let threshold = det.meta.threshold.clone();
        let adapt =
            lara_adapt::adapt_rows(&det.vae, None, &det.scale(&data).unwrap()[..40 * m], m, &AdaptConfig::default())
                .unwrap()
                .1;
        ident.meta.adaptation = Some(Adaptation {
            adapter: Adapter::identity(latent, m),
            config: AdaptConfig::default(),
            report: adapt,
            rows: 40,
            parent: None,
            base_threshold: threshold,
        });
        let same = ident.detect(&data, None).unwrap();
        assert_eq!(base.score, same.score);
    }

    /// Adapting on 40 rows of a changed pattern yields a generation-1 model whose scores
    /// differ from the base model's, survive a save/load round trip bit for bit, and a second
    /// adaptation chains on top. (Whether the adapted scores are *better* is measured by
    /// `lara bench adapt`, not asserted here.)
    #[test]
    fn adaptation_fits_new_pattern_and_round_trips() {
        let det = detector();
        let shifted = series(600, 0, 2.0, 1.8, 5);
        let before = mean(&det.detect(&shifted, None).unwrap().score);
        let first40 = Series { values: shifted.values[..80].to_vec(), n_rows: 40, ..shifted.clone() };
        let (adapted, report) = det.adapt(&first40, &AdaptConfig::default(), None).unwrap();
        let after_scores = adapted.detect(&shifted, None).unwrap().score;
        let after = mean(&after_scores);
        assert!(after.is_finite() && after != before, "adapted scores should differ: {before} -> {after}");
        assert!(report.n_windows >= 1);
        let a = adapted.meta.adaptation.as_ref().unwrap();
        assert_eq!(a.adapter.generation, 1);
        assert_eq!(a.base_threshold, det.meta.threshold);

        let dir = std::env::temp_dir().join(format!("lara-adapt-rt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("adapted.lara");
        adapted.save(&path).unwrap();
        let loaded = Detector::load(&path).unwrap();
        assert_eq!(loaded.detect(&shifted, None).unwrap().score, after_scores);

        let (twice, _) = loaded.adapt(&first40, &AdaptConfig::default(), None).unwrap();
        assert_eq!(twice.meta.adaptation.as_ref().unwrap().adapter.generation, 2);

        // Fewer rows than one window are left-padded with the first row (the monitor's and
        // `lara adapt --slots 40`'s path on a window-100 model); no rows at all is a clear
        // error, not a panic.
        let short = Series { values: shifted.values[..20].to_vec(), n_rows: 10, ..shifted.clone() };
        let (padded, rep) = det.adapt(&short, &AdaptConfig::default(), None).unwrap();
        assert_eq!(rep.n_windows, 1);
        assert_eq!(padded.meta.adaptation.as_ref().unwrap().rows, 10);
        let empty = Series { values: Vec::new(), n_rows: 0, labels: None, timestamps: None, ..shifted.clone() };
        let err = det.adapt(&empty, &AdaptConfig::default(), None).unwrap_err().to_string();
        assert!(err.contains("row"), "{err}");
    }
}
