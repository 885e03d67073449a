//! `lara serve` end to end: the real binary on a free port, its embedded store on disk.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

mod common;

use common::{lara, shared, tmp_dir, train_small as train, FILE};

/// A running `lara serve`; killed (SIGKILL) when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(data_dir: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lara"))
            .args(["serve", "--addr", "127.0.0.1:0", "--data-dir", data_dir.to_str().unwrap()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start lara serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let base = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("{line}")).to_string();
        Server { child, base }
    }
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

fn call(method: &str, url: &str, ct: &str, body: &[u8], token: Option<&str>) -> (u16, Vec<u8>) {
    let a = agent();
    let auth = token.map(|t| format!("Bearer {t}"));
    let resp = match method {
        "GET" | "DELETE" => {
            let mut r = if method == "GET" { a.get(url) } else { a.delete(url) };
            if let Some(h) = &auth {
                r = r.header("Authorization", h);
            }
            r.call()
        }
        _ => {
            let mut r = if method == "PUT" { a.put(url) } else { a.post(url) };
            if let Some(h) = &auth {
                r = r.header("Authorization", h);
            }
            r.header("Content-Type", ct).send(body)
        }
    }
    .expect("request");
    let status = resp.status().as_u16();
    let body = resp.into_body().read_to_vec().unwrap_or_default();
    (status, body)
}

fn js(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(b)))
}

/// The file's values as rows.
fn values() -> Vec<f64> {
    let text = std::fs::read_to_string(shared().join(FILE)).unwrap();
    text.lines().skip(1).map(|l| l.split(',').nth(1).unwrap().parse().unwrap()).collect()
}

/// The service scores exactly as `lara replay --model` does, and a SIGKILL + restart in the
/// middle changes nothing: every acknowledged row was stored and the monitor resumes from its
/// snapshot.
#[test]
fn results_equal_a_replay_across_a_kill_and_restart() {
    let dir = tmp_dir("restart");
    let model = train(&dir);
    let data_dir = dir.join("store");
    let vals = values();
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
    let rows: Vec<Vec<f64>> = values()[..60].iter().map(|v| vec![*v + 5.0]).collect();
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
