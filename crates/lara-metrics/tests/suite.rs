//! The whole suite through [`lara_metrics::evaluate`] on every reference case, and the
//! properties every metric must have whatever the input.

use lara_metrics::evaluate;
use proptest::prelude::*;
use serde_json::Value;
use std::path::PathBuf;

fn shared_dir() -> PathBuf {
    std::env::var("LARA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

/// All 29 cases of TSB-AD 1.5's `get_metrics`, all nine metrics, to 1e-6 absolute.
#[test]
fn evaluate_matches_every_tsbad_fixture_case() {
    let path = shared_dir().join("fixtures/metrics_tsbad.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} is missing (set LARA_SHARED): {e}", path.display()));
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 29, "the fixture should hold 29 cases");
    let mut compared = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let labels: Vec<u8> = case["label"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u8).collect();
        let scores: Vec<f64> = case["score"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let window = case["sliding_window"].as_u64().unwrap() as usize;
        let suite = evaluate(&labels, &scores, window).unwrap();
        let expected = case["expected"].as_object().unwrap();
        assert_eq!(expected.len(), 9, "{name}");
        for (metric, got) in suite.named() {
            let want = expected[metric].as_f64().unwrap_or_else(|| panic!("{name}: no {metric}"));
            let got = got.unwrap_or_else(|| panic!("{name}: {metric} undefined"));
            assert!((got - want).abs() <= 1e-6, "{name} w={window} {metric}: got {got}, want {want}");
            compared += 1;
        }
    }
    assert_eq!(compared, 29 * 9);
}

/// Labels with at least one anomaly and one normal point, and scores of the same length.
fn labelled_scores() -> impl Strategy<Value = (Vec<u8>, Vec<f64>)> {
    (8usize..200).prop_flat_map(|n| {
        (
            prop::collection::vec(prop::bool::weighted(0.15), n)
                .prop_map(|v| v.into_iter().map(u8::from).collect::<Vec<u8>>()),
            prop::collection::vec(-5.0f64..5.0, n),
        )
            .prop_filter("both classes present", |(l, _)| l.contains(&1) && l.contains(&0))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every metric lies in [0, 1] (or is undefined), for any input.
    #[test]
    fn metrics_are_bounded((labels, scores) in labelled_scores(), window in 0usize..20) {
        let suite = evaluate(&labels, &scores, window).unwrap();
        for (name, v) in suite.named() {
            if let Some(v) = v {
                prop_assert!((-1e-12..=1.0 + 1e-12).contains(&v), "{name} = {v}");
            }
        }
    }

    /// A score that equals the labels is perfect: every metric that rewards ranking is 1.
    #[test]
    fn perfect_scores_give_one((labels, _) in labelled_scores(), window in 0usize..20) {
        let scores: Vec<f64> = labels.iter().map(|&l| l as f64).collect();
        let s = evaluate(&labels, &scores, window).unwrap();
        for (name, v) in [("AUC-PR", s.auc_pr), ("AUC-ROC", s.auc_roc), ("PA-F1", s.pa_f1), ("Affiliation-F", s.affiliation_f)] {
            prop_assert!((v.unwrap() - 1.0).abs() < 1e-9, "{name} = {v:?}");
        }
        // TSB-AD's F1 formulas carry an epsilon (1e-5 / 1e-15) in the denominator.
        prop_assert!((s.standard_f1.unwrap() - 1.0).abs() < 1e-4);
        // The range-based and VUS variants reward buffers, so they are ≤ 1 but need not be 1;
        // at window 0 VUS-ROC is the plain ROC area.
        if window == 0 {
            prop_assert!((s.vus_roc.unwrap() - 1.0).abs() < 1e-9);
        }
    }

    /// Only the order of scores matters: a strictly increasing transform changes nothing
    /// that is threshold-free (the linspace sweeps are not rank-based, so they are left out).
    #[test]
    fn ranking_metrics_are_invariant_to_monotone_transforms((labels, scores) in labelled_scores(), window in 0usize..20) {
        let transformed: Vec<f64> = scores.iter().map(|s| 3.0 * s.exp() + 7.0).collect();
        let a = evaluate(&labels, &scores, window).unwrap();
        let b = evaluate(&labels, &transformed, window).unwrap();
        for (x, y, name) in [(a.auc_pr, b.auc_pr, "AUC-PR"), (a.auc_roc, b.auc_roc, "AUC-ROC"), (a.standard_f1, b.standard_f1, "Standard-F1"), (a.vus_pr, b.vus_pr, "VUS-PR"), (a.vus_roc, b.vus_roc, "VUS-ROC")] {
            prop_assert!((x.unwrap() - y.unwrap()).abs() < 1e-9, "{name}: {x:?} vs {y:?}");
        }
    }

    /// Point metrics ignore time order: permuting (label, score) pairs jointly keeps AUC-PR,
    /// AUC-ROC and Standard-F1.
    #[test]
    fn point_metrics_are_permutation_invariant((labels, scores) in labelled_scores(), seed in any::<u64>()) {
        let n = labels.len();
        let mut idx: Vec<usize> = (0..n).collect();
        let mut s = seed | 1;
        for i in (1..n).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            idx.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let pl: Vec<u8> = idx.iter().map(|&i| labels[i]).collect();
        let ps: Vec<f64> = idx.iter().map(|&i| scores[i]).collect();
        let a = evaluate(&labels, &scores, 0).unwrap();
        let b = evaluate(&pl, &ps, 0).unwrap();
        prop_assert!((a.auc_pr.unwrap() - b.auc_pr.unwrap()).abs() < 1e-12);
        prop_assert!((a.auc_roc.unwrap() - b.auc_roc.unwrap()).abs() < 1e-12);
        prop_assert!((a.standard_f1.unwrap() - b.standard_f1.unwrap()).abs() < 1e-12);
    }

    /// Reversing time mirrors every segment; the symmetric metrics keep their value.
    #[test]
    fn vus_is_time_reversal_symmetric((labels, scores) in labelled_scores(), window in 0usize..20) {
        let rl: Vec<u8> = labels.iter().rev().copied().collect();
        let rs: Vec<f64> = scores.iter().rev().copied().collect();
        let a = evaluate(&labels, &scores, window).unwrap();
        let b = evaluate(&rl, &rs, window).unwrap();
        prop_assert!((a.vus_roc.unwrap() - b.vus_roc.unwrap()).abs() < 1e-9);
        prop_assert!((a.vus_pr.unwrap() - b.vus_pr.unwrap()).abs() < 1e-9);
    }
}

#[test]
fn no_anomaly_leaves_ranking_metrics_undefined() {
    let labels = vec![0u8; 50];
    let scores: Vec<f64> = (0..50).map(|i| i as f64).collect();
    let s = evaluate(&labels, &scores, 5).unwrap();
    for (name, v) in s.named() {
        assert!(v.is_none(), "{name} should be undefined without anomalies, got {v:?}");
    }
}
