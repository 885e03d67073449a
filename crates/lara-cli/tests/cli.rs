//! End-to-end tests that drive the real `lara` binary.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn shared() -> PathBuf {
    let dir = std::env::var("LARA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    assert!(
        dir.join("fixtures/metrics_tsbad.json").is_file(),
        "shared data not found at {} (set LARA_SHARED)",
        dir.display()
    );
    dir
}

fn lara(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lara")).args(args).output().expect("run lara")
}

fn tmp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lara-cli-test-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tsbad_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(shared().join("data/tsbad"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    v.sort();
    assert!(v.len() >= 100, "expected the TSB-AD dev files, found {}", v.len());
    v
}

/// The fixture case computed on a real file: `lara eval` must reproduce TSB-AD's numbers.
#[test]
fn eval_matches_tsbad_on_real_file() {
    let fx: Value =
        serde_json::from_str(&std::fs::read_to_string(shared().join("fixtures/metrics_tsbad.json")).unwrap()).unwrap();
    let case = fx["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().starts_with("nab_rolling_median:"))
        .expect("NAB fixture case");
    let file = case["name"].as_str().unwrap().split(':').nth(1).unwrap();
    let dir = tmp_dir("fixture");
    let scores_path = dir.join("scores.txt");
    let text: String =
        case["score"].as_array().unwrap().iter().map(|s| format!("{:e}\n", s.as_f64().unwrap())).collect();
    std::fs::write(&scores_path, text).unwrap();
    let data = shared().join("data/tsbad").join(file);
    let window = case["sliding_window"].as_u64().unwrap().to_string();
    let out = lara(&[
        "eval",
        "--data",
        data.to_str().unwrap(),
        "--scores",
        scores_path.to_str().unwrap(),
        "--window",
        &window,
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    for (k, v) in case["expected"].as_object().unwrap() {
        let g = got[k].as_f64().unwrap_or_else(|| panic!("missing {k} in {got}"));
        assert!((g - v.as_f64().unwrap()).abs() < 1e-6, "{k}: got {g}, expected {v}");
    }
    // Without --window the TSB-AD period estimate is used; for this file it is the fixture's.
    let out = lara(&[
        "eval",
        "--data",
        data.to_str().unwrap(),
        "--scores",
        scores_path.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["window"].as_u64(), case["sliding_window"].as_u64());
    assert_eq!(got["window_source"], "estimated");
}

/// `lara inspect` and `lara eval` work on every bundled benchmark file, including the one
/// without any labelled anomaly (metrics print as null there).
#[test]
fn inspect_and_eval_work_on_every_tsbad_file() {
    let dir = tmp_dir("every");
    for path in tsbad_files() {
        let p = path.to_str().unwrap();
        let out = lara(&["inspect", p, "--format", "json"]);
        assert!(out.status.success(), "inspect {p}: {}", String::from_utf8_lossy(&out.stderr));
        let info: Value = serde_json::from_slice(&out.stdout).unwrap();
        let rows = info["rows"].as_u64().unwrap() as usize;
        let name = path.file_name().unwrap().to_str().unwrap();
        let tr: usize = name.split("_tr_").nth(1).unwrap().split('_').next().unwrap().parse().unwrap();
        assert_eq!(info["train_end"].as_u64().unwrap() as usize, tr, "{name}");
        // A deterministic, label-free score: a hash of the row index.
        let scores: String =
            (0..rows).map(|i| format!("{}\n", ((i as u64).wrapping_mul(2654435761) % 1000) as f64 / 1000.0)).collect();
        let sp = dir.join("s.txt");
        std::fs::write(&sp, scores).unwrap();
        let out = lara(&["eval", "--data", p, "--scores", sp.to_str().unwrap(), "--format", "json"]);
        assert!(out.status.success(), "eval {p}: {}", String::from_utf8_lossy(&out.stderr));
        let m: Value = serde_json::from_slice(&out.stdout).unwrap();
        let anomalies = info["anomalies"].as_u64().unwrap();
        for key in [
            "AUC-PR",
            "AUC-ROC",
            "VUS-PR",
            "VUS-ROC",
            "Standard-F1",
            "PA-F1",
            "Event-based-F1",
            "R-based-F1",
            "Affiliation-F",
        ] {
            if anomalies == 0 {
                assert!(m[key].is_null(), "{name}: {key} should be null without anomalies");
            } else {
                let v = m[key].as_f64().unwrap_or_else(|| panic!("{name}: {key} missing"));
                assert!((0.0..=1.0 + 1e-9).contains(&v), "{name}: {key} = {v}");
            }
        }
    }
}

#[test]
fn eval_rejects_scores_of_wrong_length_naming_both_counts() {
    let dir = tmp_dir("len");
    let sp = dir.join("short.txt");
    std::fs::write(&sp, "0.1\n0.2\n").unwrap();
    let data = shared().join("data/tsbad/064_NAB_id_7_WebService_tr_604_1st_3447.csv");
    let out = lara(&["eval", "--data", data.to_str().unwrap(), "--scores", sp.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("short.txt") && err.contains('2') && err.contains("4032"), "{err}");
}

#[test]
fn eval_reports_missing_file_and_unknown_column() {
    let out = lara(&["eval", "--data", "/nonexistent/x.csv", "--scores", "/nonexistent/s.txt"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.csv"));
    let data = shared().join("data/tsbad/064_NAB_id_7_WebService_tr_604_1st_3447.csv");
    let out = lara(&["inspect", data.to_str().unwrap(), "--columns", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

#[test]
fn demo_runs_from_bundled_data() {
    let dir = tmp_dir("demo");
    let out = lara(&["demo", "--out-dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("VUS-PR"), "{stdout}");
    for f in ["detections.csv", "detections.png", "model.lara"] {
        assert!(dir.join(f).is_file(), "demo did not write {f}");
    }
    let csv = std::fs::read_to_string(dir.join("detections.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4032 + 1, "one row per input row");
    // The series has a daily spike (every ~289 rows) that also occurs twice in the 604-row
    // training prefix: the detector has seen it and must not alarm on it; the labelled
    // incident (rows 3447..=3848) must be alarmed.
    let alarmed: Vec<bool> = csv.lines().skip(1).map(|l| l.split(',').nth(3) == Some("1")).collect();
    let spikes_after_training = [729, 1018, 1309, 1597, 1883, 2172, 2461, 2748, 3032, 3321, 3898];
    for s in spikes_after_training {
        let near = s - 60..(s + 60).min(alarmed.len());
        assert!(!alarmed[near.clone()].iter().any(|&a| a), "alarm on the regular spike at row {s} ({near:?})");
    }
    assert!(alarmed[3447..=3848].iter().any(|&a| a), "the labelled incident is not alarmed");
}

#[test]
fn help_teaches_the_commands() {
    let out = lara(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["eval", "inspect", "bench", "demo"] {
        assert!(text.contains(cmd), "--help lacks {cmd}: {text}");
    }
    let out = lara(&["eval", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("--window"));
}

#[test]
fn threshold_flags_the_tail_and_writes_every_row() {
    let dir = tmp_dir("threshold");
    let sp = dir.join("s.txt");
    // Exponential-like scores (inverse CDF of a fixed grid) with three large spikes at the end.
    let mut scores: Vec<f64> = (1..=5000).map(|i| -(1.0 - (i as f64 - 0.5) / 5000.0).ln()).collect();
    let mut state = 7u64;
    for i in (1..scores.len()).rev() {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        scores.swap(i, (state >> 33) as usize % (i + 1));
    }
    scores.extend([40.0, 50.0, 60.0]);
    std::fs::write(&sp, scores.iter().map(|s| format!("{s}\n")).collect::<String>()).unwrap();
    let out_csv = dir.join("alarms.csv");
    let out = lara(&[
        "threshold",
        "--scores",
        sp.to_str().unwrap(),
        "--calibration",
        "5000",
        "--risk",
        "1e-4",
        "--out",
        out_csv.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The 1e-4 quantile of Exp(1) is ln(1e4) ≈ 9.2: the spikes are above it, the bulk is not.
    let th = v["threshold"].as_f64().unwrap();
    assert!((7.0..14.0).contains(&th), "threshold {th}");
    // The three spikes, plus at most a couple of the 5000 bulk scores (expected: 0.5).
    let alarms = v["alarms"].as_u64().unwrap();
    assert!((3..=5).contains(&alarms), "{alarms} alarms");
    let text = std::fs::read_to_string(&out_csv).unwrap();
    assert_eq!(text.lines().count(), scores.len() + 1);
    assert!(text.lines().rev().take(3).all(|l| l.ends_with(",1")), "spikes not flagged");
    let out = lara(&["threshold", "--scores", sp.to_str().unwrap(), "--calibration", "99999"]);
    assert!(!out.status.success());
}

/// `lara train` then `lara detect` on a small real file: one output row per input row, the
/// documented columns, and clear errors for a corrupt model and for mismatched columns.
#[test]
fn train_then_detect_end_to_end() {
    let dir = tmp_dir("train");
    let data = shared().join("data/tsbad/081_NAB_id_28_WebService_tr_246_1st_340.csv");
    let model = dir.join("m.lara");
    let out = lara(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--window",
        "32",
        "--epochs",
        "3",
        "--max-steps",
        "40",
        "--seed",
        "3",
    ]);
    assert!(out.status.success(), "train: {}", String::from_utf8_lossy(&out.stderr));
    assert!(model.is_file());
    let scores = dir.join("scores.csv");
    let out = lara(&[
        "detect",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        scores.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "detect: {}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&scores).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap(), "timestamp,score,threshold,is_anomaly,top_dims");
    let rows: Vec<&str> = lines.collect();
    let n_input = std::fs::read_to_string(&data).unwrap().lines().count() - 1;
    assert_eq!(rows.len(), n_input, "one output row per input row");
    for r in &rows {
        let f: Vec<&str> = r.split(',').collect();
        assert_eq!(f.len(), 5, "{r}");
        assert!(f[1].parse::<f64>().unwrap().is_finite(), "{r}");
        assert!(f[3] == "0" || f[3] == "1");
        assert_eq!(f[4], "value");
    }
    // The score file feeds straight into `lara eval`.
    let out =
        lara(&["eval", "--data", data.to_str().unwrap(), "--scores", scores.to_str().unwrap(), "--format", "json"]);
    assert!(out.status.success(), "eval: {}", String::from_utf8_lossy(&out.stderr));

    // A truncated model file is rejected with its path in the message.
    let bytes = std::fs::read(&model).unwrap();
    let broken = dir.join("broken.lara");
    std::fs::write(&broken, &bytes[..bytes.len() / 2]).unwrap();
    let out = lara(&[
        "detect",
        "--model",
        broken.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        dir.join("x.csv").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken.lara"));
    assert!(!dir.join("x.csv").exists(), "no output on failure");

    // A file without the model's column is rejected, naming the column.
    let other = shared().join("data/tsbad/042_MSL_id_1_Sensor_tr_2158_1st_2708.csv");
    let out = lara(&[
        "detect",
        "--model",
        model.to_str().unwrap(),
        "--data",
        other.to_str().unwrap(),
        "--out",
        dir.join("y.csv").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("value"), "{err}");
}

/// On a file with several columns `lara train` adds value histograms of the continuous ones
/// (the telemetry channel; not the binary command flags) and says so; `--marginal-bins 0`
/// leaves the VAE alone; an absurd bin count is refused.
#[test]
fn train_adds_value_histograms_on_multivariate_data() {
    let dir = tmp_dir("marginal");
    let data = shared().join("data/tsbad/042_MSL_id_1_Sensor_tr_2158_1st_2708.csv");
    let train = |model: &Path, extra: &[&str]| {
        let mut args =
            vec!["train", "--data", data.to_str().unwrap(), "--model", model.to_str().unwrap(), "--max-steps", "30"];
        args.extend_from_slice(extra);
        lara(&args)
    };
    let with = dir.join("with.lara");
    let out = train(&with, &[]);
    assert!(out.status.success(), "train: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("value histograms (50 bins) beside the VAE on 1 of 55 columns: telemetry"), "{text}");
    let without = dir.join("without.lara");
    let out = train(&without, &["--marginal-bins", "0"]);
    assert!(out.status.success(), "train: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("value histograms"));
    // Both score every row; the scores differ.
    let mut scores = Vec::new();
    for m in [&with, &without] {
        let csv = dir.join("s.csv");
        let out = lara(&[
            "detect",
            "--model",
            m.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            csv.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "detect: {}", String::from_utf8_lossy(&out.stderr));
        scores.push(std::fs::read_to_string(&csv).unwrap());
    }
    assert_eq!(scores[0].lines().count(), scores[1].lines().count());
    assert_ne!(scores[0], scores[1]);
    let out = train(&dir.join("x.lara"), &["--marginal-bins", "1000000"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("marginal_bins must be at most"));
    assert!(!dir.join("x.lara").exists());
}

/// `lara adapt` on the first rows of another entity: a new model file that records its
/// parent and that `lara detect` reads unchanged; zero rows and foreign columns are errors.
#[test]
fn adapt_then_detect_end_to_end() {
    let dir = tmp_dir("adapt");
    let old_data = shared().join("data/tsbad/078_NAB_id_24_WebService_tr_243_1st_244.csv");
    let new_data = shared().join("data/tsbad/079_NAB_id_25_WebService_tr_243_1st_565.csv");
    let old = dir.join("old.lara");
    let out = lara(&[
        "train",
        "--data",
        old_data.to_str().unwrap(),
        "--model",
        old.to_str().unwrap(),
        "--window",
        "20",
        "--max-steps",
        "40",
        "--hidden",
        "32",
    ]);
    assert!(out.status.success(), "train: {}", String::from_utf8_lossy(&out.stderr));
    let new = dir.join("new.lara");
    let out = lara(&[
        "adapt",
        "--model",
        old.to_str().unwrap(),
        "--data",
        new_data.to_str().unwrap(),
        "--slots",
        "40",
        "--out",
        new.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "adapt: {}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("generation 1") && said.contains("old.lara"), "{said}");
    let bytes = std::fs::read(&new).unwrap();
    let header = String::from_utf8_lossy(&bytes[..bytes.len().min(200_000)]);
    assert!(header.contains("\"adaptation\"") && header.contains("\"parent\""), "adapted file lacks its lineage");
    let scores = dir.join("scores.csv");
    let out = lara(&[
        "detect",
        "--model",
        new.to_str().unwrap(),
        "--data",
        new_data.to_str().unwrap(),
        "--out",
        scores.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "detect: {}", String::from_utf8_lossy(&out.stderr));
    let rows = std::fs::read_to_string(&scores).unwrap().lines().count() - 1;
    assert_eq!(rows, std::fs::read_to_string(&new_data).unwrap().lines().count() - 1);
    // Chained: adapting the adapted model gives generation 2.
    let newer = dir.join("newer.lara");
    let out = lara(&[
        "adapt",
        "--model",
        new.to_str().unwrap(),
        "--data",
        new_data.to_str().unwrap(),
        "--slots",
        "60",
        "--out",
        newer.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("generation 2"), "{}", String::from_utf8_lossy(&out.stderr));
    // Zero rows.
    let out = lara(&[
        "adapt",
        "--model",
        old.to_str().unwrap(),
        "--data",
        new_data.to_str().unwrap(),
        "--slots",
        "0",
        "--out",
        dir.join("x.lara").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--slots"));
    assert!(!dir.join("x.lara").exists());
    // Data without the model's columns.
    let msl = shared().join("data/tsbad/042_MSL_id_1_Sensor_tr_2158_1st_2708.csv");
    let out = lara(&[
        "adapt",
        "--model",
        old.to_str().unwrap(),
        "--data",
        msl.to_str().unwrap(),
        "--out",
        dir.join("y.lara").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("value"));
}

#[test]
fn bench_adapt_reports_every_method() {
    let out = lara(&[
        "bench",
        "adapt",
        "--data-dir",
        shared().join("data/tsbad").to_str().unwrap(),
        "--scenarios",
        "shift",
        "--slots",
        "40",
        "--window",
        "20",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let methods: Vec<&str> = v["summary"].as_array().unwrap().iter().map(|r| r["method"].as_str().unwrap()).collect();
    for m in ["none", "full", "lara", "finetune", "scratch"] {
        assert!(methods.contains(&m), "{m} missing from {methods:?}");
    }
    let lara_runs: Vec<&Value> = v["runs"].as_array().unwrap().iter().filter(|r| r["method"] == "lara").collect();
    assert!(!lara_runs.is_empty());
    for r in lara_runs {
        assert!(r["vus_pr"].as_f64().is_some(), "{r}");
        assert!(r["adapter_bytes"].as_u64().unwrap() < 64 * 1024);
    }
}

/// CoLLaTe end to end with the in-process LLM (fetched by scripts/fetch-smollm.sh): one row
/// per input row with the documented columns, an LLM score on the windows it saw, and the
/// same output again from the response cache.
#[test]
fn collate_end_to_end_with_local_llm() {
    let model_file =
        std::env::var("LARA_LLM_MODEL").map(PathBuf::from).unwrap_or_else(|_| lara_llm::local::default_model_path());
    assert!(model_file.is_file(), "{} is missing: run scripts/fetch-smollm.sh", model_file.display());
    let dir = tmp_dir("collate");
    // A small two-channel series with a level shift near the end.
    let mut csv = String::from("cpu,latency,Label\n");
    for t in 0..120 {
        let spike = (100..110).contains(&t);
        let cpu = 40.0 + 5.0 * (t as f64 * 0.3).sin() + if spike { 45.0 } else { 0.0 };
        let lat = 120.0 + 10.0 * (t as f64 * 0.3).cos() + if spike { 300.0 } else { 0.0 };
        csv.push_str(&format!("{cpu:.2},{lat:.2},{}\n", u8::from(spike)));
    }
    let data = dir.join("svc_tr_80_1st_100.csv");
    std::fs::write(&data, csv).unwrap();
    let model = dir.join("m.lara");
    let out = lara(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--window",
        "20",
        "--max-steps",
        "30",
        "--hidden",
        "16",
    ]);
    assert!(out.status.success(), "train: {}", String::from_utf8_lossy(&out.stderr));
    let docs = dir.join("runbook.md");
    std::fs::write(&docs, "# Service runbook\nCPU is normally 35-45 %. Latency is normally 110-130 ms. Latency above 300 ms is an incident.\n").unwrap();
    let cache = dir.join("cache");
    let run = |out_name: &str| {
        let out_csv = dir.join(out_name);
        let out = lara(&[
            "collate",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--docs",
            docs.to_str().unwrap(),
            "--out",
            out_csv.to_str().unwrap(),
            "--budget",
            "2",
            "--cache",
            cache.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "collate: {}", String::from_utf8_lossy(&out.stderr));
        (std::fs::read_to_string(out_csv).unwrap(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (first, said) = run("a.csv");
    let mut lines = first.lines();
    assert_eq!(lines.next().unwrap(), "row,score,threshold,is_anomaly,detector_score,llm_score,reason");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 120);
    let with_llm = rows.iter().filter(|r| r.split(',').nth(5).is_some_and(|v| !v.is_empty())).count();
    assert!(with_llm > 0 || said.contains("unusable"), "no LLM score and no unusable answer reported: {said}");
    for r in &rows {
        let f: Vec<&str> = r.splitn(7, ',').collect();
        assert!(f[1].parse::<f64>().unwrap().is_finite(), "{r}");
    }
    let (second, said2) = run("b.csv");
    assert_eq!(first, second, "the cached replay must reproduce the output exactly");
    assert!(said2.contains("2 answered from cache"), "{said2}");
}

/// `lara … | head` closes the pipe early: the process must end quietly, not panic.
#[test]
fn closed_stdout_pipe_is_not_a_panic() {
    use std::io::Read;
    let data = shared().join("data/tsbad/042_MSL_id_1_Sensor_tr_2158_1st_2708.csv");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lara"))
        .args(["inspect", data.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away before anything is read
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    child.wait().unwrap();
    assert!(!err.contains("panicked"), "{err}");
}

/// `lara llm fetch` verifies an existing file by its checksum and leaves it alone; a file with
/// the wrong bytes at --dest is not accepted as present (checked without the network by making
/// the download fail: an unreachable index).
#[test]
fn llm_fetch_checks_what_is_there() {
    let cached = lara_llm::local::default_model_path();
    if cached.exists() {
        let out = lara(&["llm", "fetch", "--dest", cached.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("already present"));
    } else {
        println!("SKIPPED (present case): no model at {}", cached.display());
    }
    let dir = std::env::temp_dir().join(format!("lara-fetch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("m.gguf");
    std::fs::write(&bad, b"not the model").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lara"))
        .args(["llm", "fetch", "--dest", bad.to_str().unwrap()])
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("ALL_PROXY", "http://127.0.0.1:9")
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!said.contains("already present"), "{said}");
    assert!(!said.contains("panicked"), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}
