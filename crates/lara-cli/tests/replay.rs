//! `lara replay` and `lara adapt --slots 40` end to end, driving the real binary.

use std::path::Path;

mod common;

use common::{lara, ok, shared, tmp_dir, train_small, FILE};

/// Warm-up from the file name, one output row per input row with the contract's columns,
/// events as JSON lines, and the same bytes for any push size.
#[test]
fn replay_writes_every_row_and_is_deterministic() {
    let dir = tmp_dir("det");
    let data = shared().join(FILE);
    let go = |name: &str, batch: &str| {
        let out_csv = dir.join(format!("{name}.csv"));
        let ev = dir.join(format!("{name}.jsonl"));
        let said = ok(
            &lara(&[
                "replay",
                "--data",
                data.to_str().unwrap(),
                "--out",
                out_csv.to_str().unwrap(),
                "--events",
                ev.to_str().unwrap(),
                "--window",
                "32",
                "--batch",
                batch,
            ]),
            "replay",
        );
        assert!(said.contains("replayed"), "{said}");
        (std::fs::read_to_string(out_csv).unwrap(), std::fs::read_to_string(ev).unwrap())
    };
    let (a, ev_a) = go("a", "1");
    let (b, ev_b) = go("b", "37");
    assert_eq!(a, b, "row-by-row and batched replays differ");
    let mut lines = a.lines();
    assert_eq!(lines.next().unwrap(), "timestamp,score,threshold,is_anomaly,p_anomaly,state,model_version,top_dims");
    let rows: Vec<&str> = lines.collect();
    let n_input = std::fs::read_to_string(&data).unwrap().lines().count() - 1;
    assert_eq!(rows.len(), n_input);
    for (i, r) in rows.iter().enumerate() {
        let f: Vec<&str> = r.split(',').collect();
        assert_eq!(f.len(), 8, "{r}");
        let score: f64 = f[1].parse().unwrap();
        assert!(score.is_finite(), "row {i}: {r}");
        let p: f64 = f[4].parse().unwrap();
        assert!((0.0..=1.0).contains(&p));
        assert_eq!(f[3] == "1", score > f[2].parse::<f64>().unwrap(), "{r}");
        let state = f[5];
        assert!(["warmup", "normal", "suspect", "collecting", "adapted"].contains(&state), "{r}");
        assert_eq!(state == "warmup", i < 246, "row {i}: {r}");
    }
    // Events: JSON lines, the first is the warm-up training; wall times aside, identical.
    let strip = |t: &str| -> Vec<serde_json::Value> {
        t.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["elapsed_ms"] = 0.into();
                v
            })
            .collect()
    };
    let (ea, eb) = (strip(&ev_a), strip(&ev_b));
    assert_eq!(ea, eb);
    assert_eq!(ea[0]["kind"], "train");
}

/// A default model (window 100) adapts from 40 slots; `lara replay --model` starts from it.
#[test]
fn adapt_from_40_slots_on_a_default_model_and_replay_it() {
    let dir = tmp_dir("k40");
    let old_data = shared().join("data/tsbad/078_NAB_id_24_WebService_tr_243_1st_244.csv");
    let new_data = shared().join("data/tsbad/079_NAB_id_25_WebService_tr_243_1st_565.csv");
    let old = dir.join("old.lara");
    ok(
        &lara(&["train", "--data", old_data.to_str().unwrap(), "--model", old.to_str().unwrap(), "--max-steps", "40"]),
        "train",
    );
    let new = dir.join("new.lara");
    let said = ok(
        &lara(&[
            "adapt",
            "--model",
            old.to_str().unwrap(),
            "--data",
            new_data.to_str().unwrap(),
            "--slots",
            "40",
            "--out",
            new.to_str().unwrap(),
        ]),
        "adapt --slots 40",
    );
    assert!(said.contains("on 40 rows"), "{said}");
    let out_csv = dir.join("s.csv");
    ok(
        &lara(&[
            "replay",
            "--data",
            new_data.to_str().unwrap(),
            "--model",
            new.to_str().unwrap(),
            "--out",
            out_csv.to_str().unwrap(),
        ]),
        "replay --model",
    );
    let text = std::fs::read_to_string(out_csv).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), std::fs::read_to_string(&new_data).unwrap().lines().count() - 1);
    assert!(rows.iter().all(|r| !r.contains(",warmup,")), "a given model scores from the first row");
}

/// Bad cells are errors naming the line and the column; nothing is written.
#[test]
fn replay_rejects_bad_input_clearly() {
    let dir = tmp_dir("bad");
    let mut text = String::from("a,b\n");
    for t in 0..400 {
        text.push_str(&format!("{},{}\n", (t as f32 * 0.3).sin(), (t as f32 * 0.2).cos()));
    }
    let good = dir.join("good.csv");
    std::fs::write(&good, &text).unwrap();
    for (name, line, bad) in [("nan", 301, "NaN"), ("text", 302, "abc"), ("empty", 303, "")] {
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines[line - 1] = format!("{bad},0.5");
        let p = dir.join(format!("{name}.csv"));
        std::fs::write(&p, lines.join("\n")).unwrap();
        let out_csv = dir.join(format!("{name}.out.csv"));
        let out = lara(&[
            "replay",
            "--data",
            p.to_str().unwrap(),
            "--train-end",
            "200",
            "--window",
            "20",
            "--out",
            out_csv.to_str().unwrap(),
        ]);
        assert!(!out.status.success(), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("line {line}")) && err.contains("\"a\""), "{name}: {err}");
        assert!(!out_csv.exists());
    }
    // A row with a missing column.
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines[250] = "0.5".into();
    let p = dir.join("short.csv");
    std::fs::write(&p, lines.join("\n")).unwrap();
    let out = lara(&["replay", "--data", p.to_str().unwrap(), "--train-end", "200", "--out", "/dev/null"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 251"), "{}", String::from_utf8_lossy(&out.stderr));
    // Neither a model nor a warm-up.
    let out = lara(&["replay", "--data", good.to_str().unwrap(), "--out", dir.join("z.csv").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--model"));
}

/// `lara detect --causal` (batch) and `lara replay --policy static` (the monitor, row by row)
/// publish the same scores and alarms.
#[test]
fn causal_detect_equals_a_static_replay() {
    let dir = tmp_dir("causal");
    let data = shared().join(FILE);
    let model = train_small(&dir);
    let det = dir.join("d.csv");
    ok(
        &lara(&[
            "detect",
            "--causal",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            det.to_str().unwrap(),
        ]),
        "detect --causal",
    );
    let rep = dir.join("r.csv");
    ok(
        &lara(&[
            "replay",
            "--policy",
            "static",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            rep.to_str().unwrap(),
        ]),
        "replay --policy static",
    );
    let cols = |p: &Path, idx: [usize; 3]| -> Vec<[String; 3]> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                [f[idx[0]].to_string(), f[idx[1]].to_string(), f[idx[2]].to_string()]
            })
            .collect()
    };
    // detect: key,score,threshold,is_anomaly,…; replay: key,score,threshold,is_anomaly,…
    let a = cols(&det, [1, 2, 3]);
    let b = cols(&rep, [1, 2, 3]);
    assert_eq!(a.len(), b.len());
    assert_eq!(a, b);
}
