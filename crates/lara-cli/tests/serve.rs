//! `lara serve` end to end: the real binary on a free port, its embedded store on disk.

use serde_json::{json, Value};

mod common;

use common::server::{call, follow_alarms, js, Receiver, Server};
use common::{file_values, lara, shared, tmp_dir, train_small as train, FILE};


/// The service scores exactly as `lara replay --model` does, and a SIGKILL + restart in the
/// middle changes nothing: every acknowledged row was stored and the monitor resumes from its
/// snapshot.
#[test]
fn results_equal_a_replay_across_a_kill_and_restart() {
    let dir = tmp_dir("restart");
    let model = train(&dir);
    let data_dir = dir.join("store");
    let vals = file_values();
    let half = vals.len() / 2;

    let srv = Server::start(&data_dir, &[]);
    let (st, b) = call(
        "PUT",
        &format!("{}/v1/models/nab/file", srv.base),
        "application/octet-stream",
        &std::fs::read(&model).unwrap(),
        None,
    );
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
    let (st, b) =
        call("PUT", &format!("{}/v1/entities/web-1", srv.base), "application/json", br#"{"model": "nab"}"#, None);
    assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
    let push = |base: &str, rows: &[f64]| {
        for chunk in rows.chunks(37) {
            let body = json!({ "rows": chunk.iter().map(|v| vec![*v]).collect::<Vec<_>>() });
            let (st, b) = call(
                "POST",
                &format!("{base}/v1/entities/web-1/points"),
                "application/json",
                body.to_string().as_bytes(),
                None,
            );
            assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
            assert_eq!(js(&b)["results"].as_array().unwrap().len(), chunk.len());
        }
    };
    push(&srv.base, &vals[..half]);
    srv.kill();

    let srv = Server::start(&data_dir, &[]);
    let (st, b) = call("GET", &format!("{}/v1/entities/web-1", srv.base), "", b"", None);
    assert_eq!(st, 200);
    assert_eq!(js(&b)["rows"], json!(half));
    push(&srv.base, &vals[half..]);
    let (st, b) = call("GET", &format!("{}/v1/entities/web-1/scores", srv.base), "", b"", None);
    assert_eq!(st, 200);
    let served = js(&b)["results"].as_array().unwrap().clone();
    assert_eq!(served.len(), vals.len());

    let csv = dir.join("replay.csv");
    let out = lara(&[
        "replay",
        "--model",
        model.to_str().unwrap(),
        "--data",
        shared().join(FILE).to_str().unwrap(),
        "--out",
        csv.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&csv).unwrap();
    for (i, (line, s)) in text.lines().skip(1).zip(&served).enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f[1].parse::<f64>().unwrap(), s["score"].as_f64().unwrap(), "row {i} score");
        assert_eq!(f[2].parse::<f64>().unwrap(), s["threshold"].as_f64().unwrap(), "row {i} threshold");
        assert_eq!(f[3] == "1", s["is_anomaly"].as_bool().unwrap(), "row {i}");
        assert_eq!(f[4].parse::<f64>().unwrap(), s["p_anomaly"].as_f64().unwrap(), "row {i}");
        assert_eq!(f[5], s["state"].as_str().unwrap(), "row {i}");
        assert_eq!(f[6].parse::<u64>().unwrap(), s["model_version"].as_u64().unwrap(), "row {i}");
    }
    // The model file comes back byte for byte; metrics and OpenAPI answer.
    let (st, b) = call("GET", &format!("{}/v1/models/nab/file", srv.base), "", b"", None);
    assert_eq!((st, b), (200, std::fs::read(&model).unwrap()));
    let (st, b) = call("GET", &format!("{}/metrics", srv.base), "", b"", None);
    let m = String::from_utf8_lossy(&b);
    assert!(st == 200 && m.contains(&format!("lara_rows_ingested_total {}", vals.len() - half)), "{m}");
    let (st, b) = call("GET", &format!("{}/v1/openapi.json", srv.base), "", b"", None);
    assert_eq!(st, 200);
    let doc = js(&b);
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/v1/entities/{id}/points"]["post"].is_object());
}

/// Bad requests get a clear 4xx and change nothing; the token is enforced; CSV ingest works.
#[test]
fn bad_requests_are_refused_clearly() {
    let dir = tmp_dir("bad");
    let model = train(&dir);
    std::fs::write(dir.join("token"), "s3cret\n").unwrap();
    let srv = Server::start(
        &dir.join("store"),
        &["--token-file", dir.join("token").to_str().unwrap(), "--max-body-mib", "1"],
    );
    let t = Some("s3cret");
    let u = |p: &str| format!("{}{p}", srv.base);
    assert_eq!(call("GET", &u("/v1/models"), "", b"", None).0, 401);
    assert_eq!(call("GET", &u("/v1/models"), "", b"", Some("wrong")).0, 401);
    assert_eq!(call("GET", &u("/v1/models"), "", b"", t).0, 200);
    let (st, b) = call("PUT", &u("/v1/models/bad/file"), "application/octet-stream", b"not a model", t);
    assert_eq!(st, 422, "{}", String::from_utf8_lossy(&b));
    assert_eq!(call("PUT", &u("/v1/models/nab/file"), "", &std::fs::read(&model).unwrap(), t).0, 200);
    assert_eq!(call("PUT", &u("/v1/entities/e"), "application/json", br#"{"model": "nope"}"#, t).0, 404);
    assert_eq!(call("PUT", &u("/v1/entities/e"), "application/json", br#"{"model": "nab", "x": 1}"#, t).0, 400);
    assert_eq!(call("PUT", &u("/v1/entities/e"), "application/json", br#"{"model": "nab"}"#, t).0, 201);
    assert_eq!(call("PUT", &u("/v1/entities/e"), "application/json", br#"{"model": "nab"}"#, t).0, 409);
    let pts = u("/v1/entities/e/points");
    let csv = "timestamp,value\n2020-01-01 00:00,1.5\n2020-01-01 00:05,1.6\n";
    let (st, b) = call("POST", &pts, "text/csv", csv.as_bytes(), t);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
    let first = js(&b)["results"][1].clone();
    for (body, ct, want, says) in [
        ("timestamp,value,cpu\n2020-01-02,1,2\n", "text/csv", 400, "unknown column"),
        ("timestamp,value\n2020-01-02,abc\n", "text/csv", 400, "line 2"),
        ("timestamp,value\n2020-01-01 00:05,1.0\n", "text/csv", 409, "not after"),
        (r#"{"rows": [[1.0, 2.0]]}"#, "application/json", 400, "2 values"),
        (r#"{"rows": [[null]]}"#, "application/json", 400, "not a number"),
        (r#"{"rows": 5}"#, "application/json", 400, "rows"),
        ("{", "application/json", 400, "not JSON"),
    ] {
        let (st, b) = call("POST", &pts, ct, body.as_bytes(), t);
        let msg = String::from_utf8_lossy(&b);
        assert_eq!(st, want, "{body}: {msg}");
        assert!(msg.contains(says), "{body}: {msg}");
    }
    let big = vec![b'1'; 2 << 20];
    assert_eq!(call("POST", &pts, "text/csv", &big, t).0, 413);
    assert_eq!(call("GET", &u("/v1/nothing"), "", b"", t).0, 404);
    assert_eq!(call("DELETE", &u("/v1/models/nab"), "", b"", t).0, 409, "a model in use is kept");
    // Nothing the refused requests carried was scored.
    let (_, b) = call("GET", &u("/v1/entities/e/scores"), "", b"", t);
    let stored = js(&b)["results"].as_array().unwrap().clone();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1], first);
    // Operator controls: nothing to roll back yet; adapt now, then roll back.
    assert_eq!(call("POST", &u("/v1/entities/e/rollback"), "", b"", t).0, 409);
    let (st, b) = call("POST", &u("/v1/entities/e/adapt"), "", b"", t);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
    assert_eq!(js(&b)["entity"]["state"], "adapted");
    let (st, b) = call("POST", &u("/v1/entities/e/rollback"), "", b"", t);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
    assert_eq!(js(&b)["entity"]["model_version"], 3);
    let (_, b) = call("GET", &u("/v1/entities/e/versions"), "", b"", t);
    assert_eq!(js(&b)["current"], 1, "{}", String::from_utf8_lossy(&b));
    let (_, b) = call("GET", &u("/v1/entities/e/events"), "", b"", t);
    let kinds: Vec<String> =
        js(&b)["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_string()).collect();
    assert_eq!(kinds, ["adapt", "rollback"]);
    assert_eq!(call("DELETE", &u("/v1/entities/e"), "", b"", t).0, 204);
    assert_eq!(call("GET", &u("/v1/entities/e"), "", b"", t).0, 404);
}

/// `POST /v1/models` trains in the background; the job reports progress, then the model.
#[test]
fn a_training_job_produces_a_usable_model() {
    let dir = tmp_dir("job");
    let srv = Server::start(&dir.join("store"), &[]);
    let text = std::fs::read(shared().join(FILE)).unwrap();
    let (st, b) =
        call("POST", &format!("{}/v1/models?name=trained&train_end=246&window=24", srv.base), "text/csv", &text, None);
    assert_eq!(st, 202, "{}", String::from_utf8_lossy(&b));
    let job = js(&b)["job"].as_str().unwrap().to_string();
    let mut done = Value::Null;
    for _ in 0..600 {
        let (_, b) = call("GET", &format!("{}/v1/jobs/{job}", srv.base), "", b"", None);
        let v = js(&b);
        assert_ne!(v["status"], "failed", "{v}");
        if v["status"] == "done" {
            done = v;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(done["model"], "trained", "{done}");
    let (st, b) = call("GET", &format!("{}/v1/models/trained", srv.base), "", b"", None);
    assert_eq!(st, 200);
    assert_eq!(js(&b)["window"], 24);
    assert_eq!(js(&b)["train_rows"], 246);
    // A new entity on it as a shared base starts by LARA from its first slots.
    let (st, _) = call(
        "PUT",
        &format!("{}/v1/entities/c", srv.base),
        "application/json",
        br#"{"base": "trained", "slots": 30}"#,
        None,
    );
    assert_eq!(st, 201);
    let rows: Vec<Vec<f64>> = file_values()[..60].iter().map(|v| vec![*v + 5.0]).collect();
    let (st, b) = call(
        "POST",
        &format!("{}/v1/entities/c/points", srv.base),
        "application/json",
        json!({ "rows": rows }).to_string().as_bytes(),
        None,
    );
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
    let (_, b) = call("GET", &format!("{}/v1/entities/c/events", srv.base), "", b"", None);
    let ev = js(&b);
    assert_eq!(ev["events"][0]["kind"], "adapt", "{ev}");
    assert_eq!(ev["events"][0]["row"], 29, "{ev}");
}

/// Push `rows` (one value each) to entity `e`; returns the results.
fn push_values(base: &str, e: &str, rows: &[f64], token: Option<&str>) -> Vec<Value> {
    let body = json!({ "rows": rows.iter().map(|v| vec![*v]).collect::<Vec<_>>() });
    let (st, b) =
        call("POST", &format!("{base}/v1/entities/{e}/points"), "application/json", body.to_string().as_bytes(), token);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
    js(&b)["results"].as_array().unwrap().clone()
}

/// An alarm reaches the SSE stream and the webhook (after a failed attempt, retried); a webhook
/// that never answers ends in the dead letters; the alarm can be explained; /healthz needs no
/// token; the config file is honoured.
#[test]
fn alarms_reach_sse_webhooks_and_explain() {
    let dir = tmp_dir("alarms");
    let model = train(&dir);
    let hook = Receiver::start(1);
    // A port nothing listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/gone", l.local_addr().unwrap())
    };
    std::fs::write(dir.join("token"), "tok\n").unwrap();
    std::fs::write(
        dir.join("lara.toml"),
        format!(
            "token_file = \"token\"\ndata_dir = \"store\"\n\
             [[webhooks]]\nurl = \"{}\"\nretries = 3\nbackoff_ms = 20\n\
             [[webhooks]]\nurl = \"{dead}\"\nretries = 1\nbackoff_ms = 20\ntimeout_ms = 500\n",
            hook.url
        ),
    )
    .unwrap();
    let srv = Server::start_with_config(&dir.join("lara.toml"));
    let t = Some("tok");
    let u = |p: &str| format!("{}{p}", srv.base);
    assert_eq!(call("GET", &u("/healthz"), "", b"", None).0, 200);
    assert_eq!(call("GET", &u("/readyz"), "", b"", None).0, 200);
    assert_eq!(call("GET", &u("/v1/entities"), "", b"", None).0, 401);
    assert!(dir.join("store/lara.redb").exists(), "data_dir from the config, relative to it");
    assert_eq!(call("PUT", &u("/v1/models/nab/file"), "", &std::fs::read(&model).unwrap(), t).0, 200);
    assert_eq!(call("PUT", &u("/v1/entities/e"), "application/json", br#"{"model": "nab"}"#, t).0, 201);
    let alarms = follow_alarms(&srv.base, t);
    // Wait until the stream is subscribed (the SSE thread registers before answering).
    std::thread::sleep(std::time::Duration::from_millis(300));
    let vals = file_values();
    let normal = push_values(&srv.base, "e", &vals[..200], t);
    let first_alarm = normal.iter().position(|r| r["is_anomaly"] == true);
    let spike: Vec<f64> = (0..5).map(|_| vals[199] * 50.0 + 100.0).collect();
    let res = push_values(&srv.base, "e", &spike, t);
    assert!(res.iter().all(|r| r["is_anomaly"] == true), "{res:?}");
    // One alarm per episode: the first anomalous row of each run.
    let mut expected = Vec::new();
    let all: Vec<&Value> = normal.iter().chain(&res).collect();
    for (i, r) in all.iter().enumerate() {
        if r["is_anomaly"] == true && (i == 0 || all[i - 1]["is_anomaly"] != true) {
            expected.push(format!("e:{i}"));
        }
    }
    assert!(expected.contains(&"e:200".to_string()) || first_alarm.is_some());
    let last = expected.last().unwrap().clone();
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let a = alarms.recv_timeout(std::time::Duration::from_secs(10)).expect("alarm on the SSE stream");
        got.push(a["id"].as_str().unwrap().to_string());
    }
    assert_eq!(got, expected);
    // The webhook got every alarm once, in order, after its first attempt failed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while hook.bodies.lock().unwrap().len() < expected.len() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let delivered: Vec<String> = hook
        .bodies
        .lock()
        .unwrap()
        .iter()
        .map(|b| serde_json::from_str::<Value>(b).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(delivered, expected);
    // The dead webhook: each alarm tried twice (1 retry), then a dead letter.
    let mut dl = Value::Null;
    while std::time::Instant::now() < deadline + std::time::Duration::from_secs(20) {
        let (_, b) = call("GET", &u("/v1/webhooks/dead-letters"), "", b"", t);
        dl = js(&b);
        if dl["dead_letters"].as_array().unwrap().len() == expected.len() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let dls = dl["dead_letters"].as_array().unwrap();
    assert_eq!(dls.len(), expected.len(), "{dl}");
    assert_eq!(dls[0]["attempts"], 2, "{dl}");
    assert_eq!(dls[0]["url"], dead.as_str());
    let (_, b) = call("GET", &u("/metrics"), "", b"", t);
    let m = String::from_utf8_lossy(&b).into_owned();
    assert!(m.contains(&format!("lara_webhooks_dead_total {}", expected.len())), "{m}");
    assert!(m.contains(&format!("lara_alarms_total {}", expected.len())), "{m}");
    assert!(m.contains("lara_http_request_duration_seconds_bucket{le=\"+Inf\"}"), "{m}");
    // Explain the spike's alarm: the one column, far above its window.
    let (st, b) = call("GET", &u(&format!("/v1/alarms/{last}/explain")), "", b"", t);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
    let x = js(&b);
    assert_eq!(x["top_columns"][0]["column"], "value", "{x}");
    assert!(x["top_columns"][0]["z"].as_f64().unwrap() > 5.0, "{x}");
    assert!(x["llm"].as_str().unwrap().contains("not configured"), "{x}");
    assert_eq!(call("GET", &u("/v1/alarms/e:3/explain"), "", b"", t).0, 404, "row 3 is no alarm");
    assert_eq!(call("GET", &u("/v1/alarms/nope/explain"), "", b"", t).0, 400);
}

/// `POST /v1/detect` scores like `lara detect` (both modes); `POST /v1/models/{id}/train`
/// trains from an entity's stored rows; `POST /v1/models` gives the bytes `lara train` writes.
#[test]
fn detect_and_training_from_history_match_the_cli() {
    let dir = tmp_dir("detect");
    let model = train(&dir);
    let srv = Server::start(&dir.join("store"), &[]);
    let u = |p: &str| format!("{}{p}", srv.base);
    assert_eq!(call("PUT", &u("/v1/models/nab/file"), "", &std::fs::read(&model).unwrap(), None).0, 200);
    let data = shared().join(FILE);
    let text = std::fs::read(&data).unwrap();
    for causal in [false, true] {
        let out = dir.join(format!("d{causal}.csv"));
        let mut args = vec!["detect", "--model", model.to_str().unwrap(), "--data", data.to_str().unwrap()];
        args.extend(["--out", out.to_str().unwrap()]);
        if causal {
            args.push("--causal");
        }
        common::ok(&lara(&args), "detect");
        let (st, b) = call("POST", &u(&format!("/v1/detect?model=nab&causal={causal}&format=csv")), "text/csv", &text, None);
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
        assert_eq!(String::from_utf8(b).unwrap(), std::fs::read_to_string(&out).unwrap(), "causal={causal}");
        let (st, b) = call("POST", &u(&format!("/v1/detect?model=nab&causal={causal}")), "text/csv", &text, None);
        assert_eq!(st, 200);
        assert_eq!(js(&b)["results"].as_array().unwrap().len(), file_values().len());
    }
    assert_eq!(call("POST", &u("/v1/detect?model=nope"), "text/csv", &text, None).0, 404);
    assert_eq!(call("POST", &u("/v1/detect?model=nab"), "text/csv", b"timestamp,cpu\n1,2\n", None).0, 400);

    // Training from history: rows pushed to an entity become a model's training data.
    assert_eq!(call("PUT", &u("/v1/entities/h"), "application/json", br#"{"model": "nab"}"#, None).0, 201);
    push_values(&srv.base, "h", &file_values()[..246], None);
    let (_, b) = call("GET", &u("/v1/entities/h/scores?from=5&to=6&values=true"), "", b"", None);
    let got = js(&b)["results"].as_array().unwrap().clone();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["values"][0].as_f64().unwrap(), file_values()[5] as f32 as f64);
    let (st, b) = call("POST", &u("/v1/models/fromh/train?entity=h&window=24&seed=7"), "", b"", None);
    assert_eq!(st, 202, "{}", String::from_utf8_lossy(&b));
    let job = js(&b)["job"].as_str().unwrap().to_string();
    wait_job(&srv.base, &job);
    let (_, b) = call("GET", &u("/v1/models/fromh"), "", b"", None);
    assert_eq!(js(&b)["train_rows"], 246, "{}", String::from_utf8_lossy(&b));
    assert_eq!(call("POST", &u("/v1/models/x/train?entity=nope"), "", b"", None).0, 404);
    assert_eq!(call("POST", &u("/v1/models/fromh/train?entity=h"), "", b"", None).0, 409);

    // The same data and seed give the same bytes as `lara train`.
    let cli = dir.join("cli.lara");
    common::ok(
        &lara(&["train", "--data", data.to_str().unwrap(), "--model", cli.to_str().unwrap(), "--window", "24", "--seed", "7"]),
        "train",
    );
    let (st, b) = call("POST", &u("/v1/models?name=same&train_end=246&window=24&seed=7"), "text/csv", &text, None);
    assert_eq!(st, 202);
    wait_job(&srv.base, js(&b)["job"].as_str().unwrap());
    let (_, served) = call("GET", &u("/v1/models/same/file"), "", b"", None);
    assert!(served == std::fs::read(&cli).unwrap(), "the served model differs from lara train's file");
}

fn wait_job(base: &str, job: &str) {
    for _ in 0..1200 {
        let (_, b) = call("GET", &format!("{base}/v1/jobs/{job}"), "", b"", None);
        let v = js(&b);
        assert_ne!(v["status"], "failed", "{v}");
        if v["status"] == "done" {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("job {job} did not finish");
}

/// SIGKILL during a sustained ingest: after a restart every acknowledged row is stored and
/// scored, and continuing from where the store stands gives the results of an uninterrupted
/// run, row for row.
#[test]
fn a_kill_during_sustained_ingest_loses_no_acknowledged_row() {
    let dir = tmp_dir("sustained");
    let model = train(&dir);
    let data_dir = dir.join("store");
    let vals = file_values();
    let srv = Server::start(&data_dir, &[]);
    let u = |base: &str, p: &str| format!("{base}{p}");
    assert_eq!(call("PUT", &u(&srv.base, "/v1/models/nab/file"), "", &std::fs::read(&model).unwrap(), None).0, 200);
    for e in ["live", "reference"] {
        let path = format!("/v1/entities/{e}");
        assert_eq!(call("PUT", &u(&srv.base, &path), "application/json", br#"{"model": "nab"}"#, None).0, 201);
    }
    let chunk = |from: usize, to: usize| {
        json!({ "rows": vals[from..to].iter().map(|v| vec![*v]).collect::<Vec<_>>(),
                "timestamps": (from..to).map(|i| i.to_string()).collect::<Vec<_>>() })
        .to_string()
    };
    // The reference: every row, uninterrupted.
    let (st, b) = call(
        "POST",
        &u(&srv.base, "/v1/entities/reference/points"),
        "application/json",
        chunk(0, vals.len()).as_bytes(),
        None,
    );
    assert_eq!(st, 200);
    let reference = js(&b)["results"].as_array().unwrap().clone();

    // A client pushes 7 rows per request as fast as it can; the server is killed meanwhile.
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (base, a) = (srv.base.clone(), acked.clone());
    let n = vals.len();
    let client = std::thread::spawn(move || {
        let mut i = 0;
        while i < n {
            let to = (i + 7).min(n);
            let body = json!({ "rows": file_values()[i..to].iter().map(|v| vec![*v]).collect::<Vec<_>>(),
                               "timestamps": (i..to).map(|k| k.to_string()).collect::<Vec<_>>() });
            let url = format!("{base}/v1/entities/live/points");
            let ok = common::server::agent()
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.to_string().as_bytes())
                .map(|r| r.status().as_u16() == 200)
                .unwrap_or(false);
            if !ok {
                break;
            }
            i = to;
            a.store(i, std::sync::atomic::Ordering::SeqCst);
        }
    });
    while acked.load(std::sync::atomic::Ordering::SeqCst) < 300 {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    srv.kill();
    client.join().unwrap();
    let acked = acked.load(std::sync::atomic::Ordering::SeqCst);
    assert!(acked < n, "the kill happened mid-stream");

    let srv = Server::start(&data_dir, &[]);
    let (_, b) = call("GET", &u(&srv.base, "/v1/entities/live"), "", b"", None);
    let stored = js(&b)["rows"].as_u64().unwrap() as usize;
    // Every acknowledged row is there; at most the request in flight beyond them.
    assert!(stored >= acked && stored <= acked + 7, "stored {stored}, acknowledged {acked}");
    let (st, _) = call(
        "POST",
        &u(&srv.base, "/v1/entities/live/points"),
        "application/json",
        chunk(stored, n).as_bytes(),
        None,
    );
    assert_eq!(st, 200);
    let (_, b) = call("GET", &u(&srv.base, "/v1/entities/live/scores"), "", b"", None);
    let live = js(&b)["results"].as_array().unwrap().clone();
    assert_eq!(live.len(), n);
    assert_eq!(live, reference);
}

/// Random, truncated and mistyped bodies at every route: never a 5xx, the server stays up, and
/// the entity's stored state survives a restart unchanged.
#[test]
fn fuzzed_requests_never_break_the_server() {
    use rand::{Rng, SeedableRng};
    let dir = tmp_dir("fuzz");
    let model = train(&dir);
    let model_bytes = std::fs::read(&model).unwrap();
    let srv = Server::start(&dir.join("store"), &[]);
    let u = |p: &str| format!("{}{p}", srv.base);
    assert_eq!(call("PUT", &u("/v1/models/nab/file"), "", &model_bytes, None).0, 200);
    assert_eq!(call("PUT", &u("/v1/entities/e"), "application/json", br#"{"model": "nab"}"#, None).0, 201);
    push_values(&srv.base, "e", &file_values()[..100], None);
    let (_, b) = call("GET", &u("/v1/openapi.json"), "", b"", None);
    let doc = js(&b);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let valid: Vec<Vec<u8>> = vec![
        json!({ "rows": [[1.0], [2.0]], "timestamps": ["a", "b"] }).to_string().into_bytes(),
        b"timestamp,value\n1,2\n2,3\n".to_vec(),
        br#"{"model": "nab", "policy": "adapt", "slots": 40}"#.to_vec(),
        model_bytes[..model_bytes.len().min(4096)].to_vec(),
        std::fs::read(shared().join(FILE)).unwrap()[..2000].to_vec(),
    ];
    let mut sent = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let method = method.to_ascii_uppercase();
            // Deleting or streaming is not what this test is about.
            if method == "DELETE" || path.ends_with("/stream") {
                continue;
            }
            for id in ["e", "nab", "e:3", "zz", "%ff%00", "a%2Fb"] {
                let p = path.replace("{id}", id);
                for k in 0..8 {
                    let body: Vec<u8> = match k {
                        0 => Vec::new(),
                        1..=3 => (0..rng.gen_range(1..300)).map(|_| rng.gen()).collect(),
                        _ => {
                            let v = &valid[rng.gen_range(0..valid.len())];
                            v[..rng.gen_range(0..v.len())].to_vec()
                        }
                    };
                    // Training from random CSV would only burn CPU: bodies there stay random.
                    if path == "/v1/models" && k >= 4 {
                        continue;
                    }
                    let ct = ["application/json", "text/csv", "application/octet-stream", "application/x-protobuf"][k % 4];
                    let (st, resp) = call(&method, &u(&p), ct, &body, None);
                    sent += 1;
                    assert!(st < 500, "{method} {p} ({ct}, {} bytes): {st} {}", body.len(), String::from_utf8_lossy(&resp));
                }
            }
        }
    }
    assert!(sent > 300, "{sent}");
    assert_eq!(call("GET", &u("/healthz"), "", b"", None).0, 200);
    let (_, before) = call("GET", &u("/v1/entities/e/scores"), "", b"", None);
    let (_, ent) = call("GET", &u("/v1/entities/e"), "", b"", None);
    let data_dir = dir.join("store");
    srv.kill();
    let srv = Server::start(&data_dir, &[]);
    let (_, after) = call("GET", &format!("{}/v1/entities/e/scores", srv.base), "", b"", None);
    let (_, ent2) = call("GET", &format!("{}/v1/entities/e", srv.base), "", b"", None);
    assert_eq!(js(&before), js(&after));
    assert_eq!(js(&ent), js(&ent2));
    // And it still scores.
    push_values(&srv.base, "e", &file_values()[300..310], None);
}

/// With `[llm]` configured (the local SmolLM2 GGUF that `lara llm fetch` or
/// scripts/fetch-smollm.sh puts in place), an alarm's explanation carries the LLM's reason.
#[test]
fn an_alarm_is_explained_by_the_local_llm() {
    let gguf = std::env::var_os("LARA_LLM_MODEL").map(std::path::PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("LARA_CACHE").map(std::path::PathBuf::from).unwrap_or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(|x| std::path::PathBuf::from(x).join("lara"))
                .unwrap_or_else(|| std::path::PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/lara"))
        });
        cache.join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
    });
    if !gguf.exists() {
        println!("SKIPPED: no local LLM at {} (run `lara llm fetch`)", gguf.display());
        return;
    }
    let dir = tmp_dir("explain-llm");
    let model = train(&dir);
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/experts");
    std::fs::write(
        dir.join("lara.toml"),
        format!(
            "data_dir = \"store\"\n[llm]\nbackend = \"local\"\nmodel = \"{}\"\ndocs = [\"{}\"]\nmax_tokens = 40\n",
            gguf.display(),
            docs.display()
        ),
    )
    .unwrap();
    let srv = Server::start_with_config(&dir.join("lara.toml"));
    let u = |p: &str| format!("{}{p}", srv.base);
    assert_eq!(call("PUT", &u("/v1/models/nab/file"), "", &std::fs::read(&model).unwrap(), None).0, 200);
    assert_eq!(call("PUT", &u("/v1/entities/web"), "application/json", br#"{"model": "nab"}"#, None).0, 201);
    let vals = file_values();
    push_values(&srv.base, "web", &vals[..150], None);
    let res = push_values(&srv.base, "web", &[vals[149] * 50.0 + 100.0], None);
    assert_eq!(res[0]["is_anomaly"], true);
    let (st, b) = call("GET", &u("/v1/alarms/web:150/explain"), "", b"", None);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
    let x = js(&b);
    let reason = x["reason"].as_str().unwrap_or_else(|| panic!("no reason: {x}"));
    assert!(reason.split_whitespace().count() >= 3, "{x}");
    assert!(reason.contains("value"), "the reason names the column: {x}");
    println!("explanation: {x}");
    assert_eq!(x["llm"]["backend"], "local", "{x}");
    assert!(x["llm"]["completion_tokens"].as_u64().unwrap() > 0, "{x}");
}

/// `--retain-rows`: older rows and results are deleted, never those a restart needs; results
/// after a restart still equal an uninterrupted run without retention.
#[test]
fn retention_keeps_what_a_restart_needs() {
    let dir = tmp_dir("retain");
    let model = train(&dir);
    let vals = file_values();
    let push_all = |base: &str, rows: &[f64]| {
        for c in rows.chunks(50) {
            push_values(base, "r", c, None);
        }
    };
    let setup = |srv: &Server| {
        assert_eq!(call("PUT", &format!("{}/v1/models/nab/file", srv.base), "", &std::fs::read(&model).unwrap(), None).0, 200);
        let (st, _) = call("PUT", &format!("{}/v1/entities/r", srv.base), "application/json", br#"{"model": "nab"}"#, None);
        assert_eq!(st, 201);
    };
    let full = Server::start(&dir.join("full"), &[]);
    setup(&full);
    push_all(&full.base, &vals);
    let (_, b) = call("GET", &format!("{}/v1/entities/r/scores", full.base), "", b"", None);
    let reference = js(&b)["results"].as_array().unwrap().clone();

    let args = ["--retain-rows", "300", "--snapshot-every-rows", "100"];
    let store = dir.join("kept");
    let srv = Server::start(&store, &args);
    setup(&srv);
    let half = 1000;
    push_all(&srv.base, &vals[..half]);
    srv.kill();
    let srv = Server::start(&store, &args);
    push_all(&srv.base, &vals[half..]);
    let (_, b) = call("GET", &format!("{}/v1/entities/r/scores", srv.base), "", b"", None);
    let kept = js(&b)["results"].as_array().unwrap().clone();
    let first = kept[0]["row"].as_u64().unwrap() as usize;
    assert!(kept.len() >= 300 && kept.len() < 300 + 100 + 50, "{} rows kept", kept.len());
    assert_eq!(first + kept.len(), vals.len());
    assert_eq!(kept[..], reference[first..]);
    // Below the retention, nothing is left.
    let (_, b) = call("GET", &format!("{}/v1/entities/r/scores?to={}", srv.base, first - 1), "", b"", None);
    assert!(js(&b)["results"].as_array().unwrap().is_empty());
    // A retention below the snapshot interval is refused at start.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lara"))
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir", dir.join("x").to_str().unwrap(), "--retain-rows", "10"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("lara serve started with a retention below the snapshot interval");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(err.contains("retain_rows"), "{err}");
}
