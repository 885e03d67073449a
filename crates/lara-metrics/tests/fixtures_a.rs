//! Reference values from TSB-AD 1.5 for the ranking, VUS, F1-family and range metrics.
//!
//! - `<shared>/fixtures/metrics_tsbad.json` (`get_metrics` on 29 cases); `<shared>` is
//!   `$LARA_SHARED`, else `<CARGO_MANIFEST_DIR>/../../../shared`. A missing file fails the test.
//! - `tests/data/metrics_edge_cases.json`: per-metric TSB-AD / sklearn values on edge cases
//!   (ties, anomalies at the ends, adjacent segments, constant scores, all-anomaly labels);
//!   `null` where TSB-AD raises, which must be `None` here. Its `generated_by` key names the
//!   command that produced it.

use lara_metrics::{f1, range, ranking, vus};
use serde_json::Value;
use std::path::PathBuf;

const TOLERANCE: f64 = 1e-6;

/// The metrics covered here, by their TSB-AD name.
fn compute(name: &str, labels: &[u8], scores: &[f64], window: usize) -> Option<f64> {
    match name {
        "AUC-PR" => ranking::average_precision(labels, scores),
        "AUC-ROC" => ranking::auc_roc(labels, scores),
        "VUS-PR" => vus::vus(labels, scores, window).map(|v| v.pr),
        "VUS-ROC" => vus::vus(labels, scores, window).map(|v| v.roc),
        "Standard-F1" => f1::standard_f1(labels, scores),
        "PA-F1" => f1::pa_f1(labels, scores),
        "Event-based-F1" => f1::event_f1(labels, scores),
        "R-based-F1" => range::range_f1(labels, scores),
        other => panic!("unknown metric {other}"),
    }
}

const METRICS: [&str; 8] =
    ["AUC-PR", "AUC-ROC", "VUS-PR", "VUS-ROC", "Standard-F1", "PA-F1", "Event-based-F1", "R-based-F1"];

fn shared_dir() -> PathBuf {
    match std::env::var("LARA_SHARED") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

fn load(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("fixture {} is missing or unreadable: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixture {} is not valid JSON: {e}", path.display()))
}

/// Checks every case of a fixture; returns the number of values compared.
fn check_cases(fixture: &Value) -> usize {
    let cases = fixture["cases"].as_array().expect("fixture has a `cases` array");
    assert!(!cases.is_empty(), "fixture has no cases");
    let mut failures = Vec::new();
    let mut compared = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap_or("?");
        let window = case["sliding_window"].as_u64().expect("sliding_window") as usize;
        let labels: Vec<u8> =
            case["label"].as_array().expect("label").iter().map(|v| v.as_u64().expect("0/1 label") as u8).collect();
        let scores: Vec<f64> =
            case["score"].as_array().expect("score").iter().map(|v| v.as_f64().expect("score")).collect();
        for metric in METRICS {
            let expected = &case["expected"][metric];
            let got = compute(metric, &labels, &scores, window);
            compared += 1;
            let ok = match (expected.as_f64(), got) {
                (Some(e), Some(g)) => (e - g).abs() <= TOLERANCE,
                (None, None) => expected.is_null(),
                _ => false,
            };
            if !ok {
                failures.push(format!("{name} (window {window}) {metric}: expected {expected}, got {got:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
    compared
}

#[test]
fn shared_tsbad_fixture_all_cases() {
    let path = shared_dir().join("fixtures/metrics_tsbad.json");
    let fixture = load(&path);
    let compared = check_cases(&fixture);
    assert_eq!(compared, 29 * METRICS.len(), "expected the 29 cases of {}", path.display());
}

#[test]
fn edge_case_fixture() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/metrics_edge_cases.json");
    check_cases(&load(&path));
}

#[test]
fn no_anomaly_is_undefined_everywhere() {
    let labels = [0u8; 10];
    let scores: Vec<f64> = (0..10).map(|i| f64::from(i) / 10.0).collect();
    for metric in METRICS {
        assert_eq!(compute(metric, &labels, &scores, 3), None, "{metric}");
    }
}

/// Timing of VUS on 100k points with window 100 (plus the F1-family sweeps).
/// Run with `cargo test -p lara-metrics --release --test fixtures_a -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark; prints timings"]
fn bench_vus_100k_window_100() {
    use rand::{Rng, SeedableRng};
    use std::time::Instant;
    let n = 100_000;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut labels = vec![0u8; n];
    let mut x = 0;
    while x < n {
        x += rng.gen_range(50..2000);
        let len = rng.gen_range(1..200);
        for l in labels.iter_mut().skip(x).take(len) {
            *l = 1;
        }
        x += len;
    }
    let scores: Vec<f64> = labels.iter().map(|&l| rng.gen::<f64>() + 0.5 * f64::from(l)).collect();
    let anomalies = labels.iter().filter(|&&l| l == 1).count();

    let t = Instant::now();
    let v = vus::vus(&labels, &scores, 100).expect("has anomalies");
    let vus_time = t.elapsed();
    println!("VUS n={n} window=100 anomalies={anomalies}: {vus_time:?} -> {v:?}");

    let timed = |name: &str, f: &dyn Fn() -> Option<f64>| {
        let t = Instant::now();
        let r = f();
        println!("{name}: {:?} -> {r:?}", t.elapsed());
    };
    timed("AUC-ROC", &|| ranking::auc_roc(&labels, &scores));
    timed("AUC-PR", &|| ranking::average_precision(&labels, &scores));
    timed("Standard-F1", &|| f1::standard_f1(&labels, &scores));
    timed("PA-F1", &|| f1::pa_f1(&labels, &scores));
    timed("Event-based-F1", &|| f1::event_f1(&labels, &scores));
    timed("R-based-F1", &|| range::range_f1(&labels, &scores));
}
