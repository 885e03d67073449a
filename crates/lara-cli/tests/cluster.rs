//! Scale-out on NATS JetStream, end to end: a real `nats-server -js`, `lara front`, several
//! `lara worker`s. Skipped (with "SKIPPED") when nats-server is not installed, unless
//! `LARA_REQUIRE_NATS` is set.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::server::{call, js};
use common::{shared, tmp_dir, train_small, FILE};
use lara_cluster::natsd::{find_nats_server, NatsServer};
use serde_json::{json, Value};

fn nats_or_skip(test: &str) -> Option<PathBuf> {
    match find_nats_server() {
        Some(p) => Some(p),
        None if std::env::var_os("LARA_REQUIRE_NATS").is_some() => {
            panic!("nats-server is not installed (apt-get install nats-server) and LARA_REQUIRE_NATS is set")
        }
        None => {
            println!("SKIPPED {test}: nats-server is not installed");
            None
        }
    }
}

/// A child process killed (SIGKILL) when dropped; its first stdout line.
struct Proc {
    child: Child,
    first_line: String,
}

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lara"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start lara");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "lara {args:?} ended before it started");
        Proc { child, first_line: line.trim().to_string() }
    }
    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn front(url: &str, partitions: u32, ttl_ms: u64) -> (Proc, String) {
    let p = Proc::spawn(&[
        "front",
        "--nats",
        url,
        "--addr",
        "127.0.0.1:0",
        "--partitions",
        &partitions.to_string(),
        "--lease-ttl-ms",
        &ttl_ms.to_string(),
    ]);
    let base = p.first_line.strip_prefix("listening on ").unwrap_or_else(|| panic!("{}", p.first_line)).to_string();
    (p, base)
}

/// A worker and its /metrics URL.
fn worker(url: &str, id: &str, snapshot_every: u64) -> (Proc, String) {
    let p = Proc::spawn(&["worker", "--nats", url, "--id", id, "--snapshot-every", &snapshot_every.to_string()]);
    let m = p.first_line.split(" metrics on ").nth(1).unwrap_or_else(|| panic!("{}", p.first_line)).to_string();
    (p, format!("{m}/metrics"))
}

fn get(url: &str) -> Value {
    let (st, b) = call("GET", url, "", b"", None);
    assert_eq!(st, 200, "GET {url}: {}", String::from_utf8_lossy(&b));
    js(&b)
}

/// The values of the shared NAB file (one column).
fn nab() -> Vec<f32> {
    let s = lara_core::read_csv(&shared().join(FILE), &lara_core::CsvOptions::default()).unwrap();
    s.column(0)
}

/// Rows of entity `e`: `n` consecutive values of the file from an offset of its own.
fn entity_rows(vals: &[f32], e: usize, n: usize) -> Vec<Vec<f32>> {
    let off = (e * 37) % (vals.len() - n);
    vals[off..off + n].iter().map(|&v| vec![v]).collect()
}

/// Entities with an even index start on the model as it is; the odd ones on it as a shared base
/// with a LARA cold start (adapting from their first 40 rows).
fn spec(e: usize) -> Value {
    if e.is_multiple_of(2) {
        json!({ "model": "m" })
    } else {
        json!({ "base": "m" })
    }
}

/// The single-node results: the same rows through `lara_stream::Monitor` in this process, as
/// `lara replay` would run them.
fn expected(model: &Path, e: usize, rows: &[Vec<f32>]) -> Vec<Value> {
    let bytes = std::fs::read(model).unwrap();
    let det = Arc::new(lara_vae::Detector::from_bytes(model, &bytes).unwrap());
    let cfg = lara_stream::MonitorConfig { cold_start: e % 2 == 1, ..lara_stream::MonitorConfig::default() };
    let mut mon = lara_stream::Monitor::new(det, cfg).unwrap();
    mon.push(rows).unwrap().iter().map(|s| serde_json::to_value(s).unwrap()).collect()
}

/// The chunks an entity's rows are posted in (sizes 1..=7, by a fixed pseudo-random rule).
fn chunks(e: usize, n: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut a, mut k) = (0, e);
    while a < n {
        k = (k * 1103515245 + 12345) % 2147483648;
        let b = (a + 1 + (k >> 16) % 7).min(n);
        out.push(a..b);
        a = b;
    }
    out
}

/// Posts every chunk of every entity, round-robin over entities (so the stream interleaves
/// them), from `clients` threads; each request carries an Idempotency-Key and is retried until
/// the broker acknowledged it (202). `on_progress(done_fraction)` runs between rounds.
fn ingest(base: &str, data: &[Vec<Vec<f32>>], clients: usize, on_progress: &mut dyn FnMut(f64)) {
    let plans: Vec<Vec<std::ops::Range<usize>>> = data.iter().enumerate().map(|(e, r)| chunks(e, r.len())).collect();
    let rounds = plans.iter().map(|p| p.len()).max().unwrap();
    for round in 0..rounds {
        std::thread::scope(|s| {
            for c in 0..clients {
                let plans = &plans;
                s.spawn(move || {
                    for e in (c..data.len()).step_by(clients) {
                        let Some(r) = plans[e].get(round) else { continue };
                        let body = json!({ "rows": data[e][r.clone()] }).to_string();
                        let key = format!("e{e}-{round}");
                        let url = format!("{base}/v1/entities/e{e}/points");
                        let t = Instant::now();
                        loop {
                            let resp = common::server::agent()
                                .post(&url)
                                .header("Content-Type", "application/json")
                                .header("Idempotency-Key", &key)
                                .send(body.as_bytes());
                            if let Ok(r) = resp {
                                if r.status().as_u16() == 202 {
                                    break;
                                }
                            }
                            assert!(t.elapsed() < Duration::from_secs(60), "POST {url} never acknowledged");
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                });
            }
        });
        on_progress((round + 1) as f64 / rounds as f64);
    }
}

/// Waits until every entity has `n` scored rows (or more: duplicates would show), then checks
/// that rows 0..n each appear exactly once and equal the single-node results.
fn check_results(base: &str, model: &Path, data: &[Vec<Vec<f32>>], limit: Duration) {
    let t = Instant::now();
    for (e, rows) in data.iter().enumerate() {
        let got = loop {
            let v = get(&format!("{base}/v1/entities/e{e}/scores"));
            let s = v["scores"].as_array().unwrap().clone();
            if s.len() >= rows.len() || t.elapsed() > limit {
                break s;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let idx: Vec<u64> = got.iter().map(|r| r["row"].as_u64().unwrap()).collect();
        let want_idx: Vec<u64> = (0..rows.len() as u64).collect();
        assert_eq!(idx, want_idx, "entity e{e}: rows scored (lost or twice)");
        let want = expected(model, e, rows);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g, w, "entity e{e}, row {i}: differs from the single-node replay");
        }
    }
}

fn owners(base: &str) -> (usize, Vec<String>, Value) {
    let v = get(&format!("{base}/v1/cluster"));
    let o = v["owners"].as_object().unwrap();
    let mut ws: Vec<String> = o.values().map(|w| w.as_str().unwrap().to_string()).collect();
    ws.sort();
    ws.dedup();
    (o.len(), ws, v)
}

fn setup(base: &str, model: &Path, entities: usize) {
    let (st, b) = call("PUT", &format!("{base}/v1/models/m/file"), "application/octet-stream", &std::fs::read(model).unwrap(), None);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&b));
    for e in 0..entities {
        let (st, b) = call("PUT", &format!("{base}/v1/entities/e{e}"), "application/json", spec(e).to_string().as_bytes(), None);
        assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
    }
    // The same again is accepted (idempotent), another spec is refused.
    let (st, _) = call("PUT", &format!("{base}/v1/entities/e0"), "application/json", spec(0).to_string().as_bytes(), None);
    assert_eq!(st, 200);
    let (st, _) = call("PUT", &format!("{base}/v1/entities/e0"), "application/json", spec(1).to_string().as_bytes(), None);
    assert_eq!(st, 409);
    let (st, _) = call("POST", &format!("{base}/v1/entities/nobody/points"), "application/json", br#"{"rows": [[1]]}"#, None);
    assert_eq!(st, 404);
    let (st, _) = call("POST", &format!("{base}/v1/entities/e0/points"), "application/json", br#"{"rows": [[1, 2]]}"#, None);
    assert_eq!(st, 400);
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn three_workers_one_killed_mid_stream_every_row_scored_once_as_on_one_node() {
    let Some(bin) = nats_or_skip("cluster kill -9") else { return };
    let dir = tmp_dir("cluster-kill");
    let model = train_small(&dir);
    let nats = NatsServer::start(&bin, &dir.join("js")).unwrap();
    let (partitions, ttl_ms) = (16u32, 2000u64);
    let (_front, base) = front(&nats.url(), partitions, ttl_ms);
    let (n_e, n_rows) = (200usize, 60usize);
    setup(&base, &model, n_e);
    let mut ws: Vec<(Proc, String)> = (0..3).map(|i| worker(&nats.url(), &format!("w{i}"), 40)).collect();
    // All partitions owned, by all three.
    wait_for("3 workers owning all partitions", Duration::from_secs(30), || {
        let (n, w, _) = owners(&base);
        n == partitions as usize && w.len() == 3
    });
    let vals = nab();
    let data: Vec<Vec<Vec<f32>>> = (0..n_e).map(|e| entity_rows(&vals, e, n_rows)).collect();
    let mut killed: Option<Instant> = None;
    let mut owned_by_w1 = 0;
    let t_ingest = Instant::now();
    ingest(&base, &data, 4, &mut |done| {
        if done >= 0.5 && killed.is_none() {
            let (_, _, v) = owners(&base);
            owned_by_w1 = v["owners"].as_object().unwrap().values().filter(|w| *w == "w1").count();
            ws[1].0.kill9();
            killed = Some(Instant::now());
        }
    });
    let ingest_s = t_ingest.elapsed().as_secs_f64();
    let killed = killed.unwrap();
    assert!(owned_by_w1 > 0, "w1 owned nothing when it was killed");
    // The dead worker's partitions are owned again within the lease TTL (+ one renewal tick
    // of a quarter TTL, + 2 s for the broker's expiry timer, the test's polling and a loaded
    // 2-core machine).
    wait_for("partitions of the killed worker owned again", Duration::from_secs(30), || {
        let (n, w, _) = owners(&base);
        n == partitions as usize && !w.contains(&"w1".to_string())
    });
    let failover = killed.elapsed();
    println!("failover: {owned_by_w1} partitions of w1 owned again {:.2} s after kill -9 (TTL {ttl_ms} ms); ingest {ingest_s:.1} s", failover.as_secs_f64());
    assert!(failover < Duration::from_millis(ttl_ms + ttl_ms / 4 + 2000), "failover took {failover:?}");
    check_results(&base, &model, &data, Duration::from_secs(120));
    // Alarms are served; /metrics on the front and on a surviving worker.
    let alarms = get(&format!("{base}/v1/alarms"));
    assert!(alarms["alarms"].is_array());
    let (st, m) = call("GET", &format!("{base}/metrics"), "", b"", None);
    assert_eq!(st, 200);
    assert!(String::from_utf8_lossy(&m).contains("lara_front_rows_published_total"));
    let (st, m) = call("GET", &ws[0].1, "", b"", None);
    assert_eq!(st, 200);
    let m = String::from_utf8_lossy(&m).into_owned();
    assert!(m.contains("lara_worker_rows_total{worker=\"w0\"}"), "{m}");
    for w in [&ws[0], &ws[2]] {
        let (_, m) = call("GET", &w.1, "", b"", None);
        let m = String::from_utf8_lossy(&m).into_owned();
        let pick = |name: &str| m.lines().find(|l| l.starts_with(name)).unwrap_or("").to_string();
        println!("{} | {} | {}", pick("lara_worker_rows_total"), pick("lara_worker_rows_not_republished_total"), pick("lara_worker_results_duplicate_total"));
    }
    // A fourth worker joins: the partitions rebalance onto it.
    let _w3 = worker(&nats.url(), "w3", 40);
    wait_for("the new worker owning partitions", Duration::from_secs(30), || {
        let (n, w, _) = owners(&base);
        n == partitions as usize && w.contains(&"w3".to_string())
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn broker_restart_loses_nothing_acknowledged() {
    let Some(bin) = nats_or_skip("cluster broker restart") else { return };
    let dir = tmp_dir("cluster-restart");
    let model = train_small(&dir);
    let mut nats = NatsServer::start(&bin, &dir.join("js")).unwrap();
    let (_front, base) = front(&nats.url(), 8, 2000);
    let (n_e, n_rows) = (40usize, 60usize);
    setup(&base, &model, n_e);
    let _ws: Vec<(Proc, String)> = (0..2).map(|i| worker(&nats.url(), &format!("r{i}"), 30)).collect();
    let vals = nab();
    let data: Vec<Vec<Vec<f32>>> = (0..n_e).map(|e| entity_rows(&vals, e, n_rows)).collect();
    let mut restarted = false;
    ingest(&base, &data, 2, &mut |done| {
        if done >= 0.5 && !restarted {
            // kill -9: only what the broker wrote to its files survives.
            nats.restart().unwrap();
            restarted = true;
        }
    });
    assert!(restarted);
    check_results(&base, &model, &data, Duration::from_secs(120));
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------
// `lara serve --nats`: the single node's API on the cluster.

fn call_t(method: &str, url: &str, body: &[u8], token: &str) -> (u16, Value) {
    let ct = if url.ends_with("/api/v1/write") { "application/x-protobuf" } else { "application/json" };
    let (st, b) = call(method, url, ct, body, Some(token));
    let v = if b.is_empty() { Value::Null } else { serde_json::from_slice(&b).unwrap_or(Value::Null) };
    (st, v)
}

fn get_t(url: &str, token: &str) -> Value {
    let (st, v) = call_t("GET", url, b"", token);
    assert_eq!(st, 200, "GET {url}: {v}");
    v
}

/// Snappy block format with literals only (valid input for any snappy decoder).
fn snappy_literal(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    pb_varint(&mut out, raw.len() as u64);
    for chunk in raw.chunks(65536) {
        let n = chunk.len() - 1;
        if n < 60 {
            out.push((n as u8) << 2);
        } else if n < 256 {
            out.extend_from_slice(&[60 << 2, n as u8]);
        } else {
            out.push(61 << 2);
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        out.extend_from_slice(chunk);
    }
    out
}

fn pb_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn pb_bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    pb_varint(out, (field << 3) | 2);
    pb_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A remote-write series: labels, samples `(value, timestamp_ms)`.
type Series<'a> = (Vec<(&'a str, &'a str)>, Vec<(f64, i64)>);

/// A remote-write body (snappy-compressed protobuf `WriteRequest`).
fn remote_write_body(series: &[Series]) -> Vec<u8> {
    let mut req = Vec::new();
    for (labels, samples) in series {
        let mut ts = Vec::new();
        for (n, v) in labels {
            let mut l = Vec::new();
            pb_bytes(&mut l, 1, n.as_bytes());
            pb_bytes(&mut l, 2, v.as_bytes());
            pb_bytes(&mut ts, 1, &l);
        }
        for &(v, t) in samples {
            let mut s = vec![(1 << 3) | 1];
            s.extend_from_slice(&v.to_bits().to_le_bytes());
            pb_varint(&mut s, 2 << 3);
            pb_varint(&mut s, t as u64);
            pb_bytes(&mut ts, 2, &s);
        }
        pb_bytes(&mut req, 1, &ts);
    }
    snappy_literal(&req)
}

/// One step of an entity's life: rows, or an operator control.
enum Step {
    Rows(Vec<Vec<f32>>),
    Control(&'static str),
}

/// The single node's answer to the steps (a control the monitor refuses changes nothing, as on
/// `lara serve`): every row's result, every decision, and whether each control succeeded.
fn expected_steps(model: &Path, cold_start: bool, steps: &[Step]) -> (Vec<Value>, Vec<Value>, Vec<bool>) {
    let bytes = std::fs::read(model).unwrap();
    let det = Arc::new(lara_vae::Detector::from_bytes(model, &bytes).unwrap());
    let cfg = lara_stream::MonitorConfig { cold_start, ..lara_stream::MonitorConfig::default() };
    let mut mon = lara_stream::Monitor::new(det, cfg).unwrap();
    let (mut scores, mut events, mut ok) = (Vec::new(), Vec::new(), Vec::new());
    for s in steps {
        match s {
            Step::Rows(r) => scores.extend(mon.push(r).unwrap().iter().map(|s| serde_json::to_value(s).unwrap())),
            Step::Control(c) => {
                let mut m2 = mon.clone();
                let r = if *c == "adapt" { m2.adapt_now() } else { m2.rollback() };
                ok.push(r.is_ok());
                if r.is_ok() {
                    mon = m2;
                }
            }
        }
        events.extend(mon.drain_events().iter().map(|e| serde_json::to_value(e).unwrap()));
    }
    (scores, events, ok)
}

fn metric(url: &str, name: &str) -> u64 {
    let (_, m) = call("GET", url, "", b"", None);
    let m = String::from_utf8_lossy(&m).into_owned();
    m.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[test]
fn serve_nats_front_controls_once_across_kill9_sse_remote_write_delete_retention() {
    let Some(bin) = nats_or_skip("serve --nats") else { return };
    let t_test = Instant::now();
    let dir = tmp_dir("cluster-serve");
    let model = train_small(&dir);
    let nats = NatsServer::start(&bin, &dir.join("js")).unwrap();
    let url = nats.url();
    // The first worker sets the cluster up (8 partitions, a 2 s lease TTL); snapshots are rare
    // (1000 rows, or 12 s idle), so a takeover replays the controls from the stream.
    let w = |id: &str, extra: &[&str]| {
        let mut args = vec!["worker", "--nats", &url, "--id", id, "--snapshot-every", "1000", "--snapshot-idle-ms", "12000"];
        args.extend_from_slice(extra);
        let p = Proc::spawn(&args);
        let m = format!("{}/metrics", p.first_line.split(" metrics on ").nth(1).unwrap());
        (p, m)
    };
    let mut ws = vec![w("w0", &["--partitions", "8", "--lease-ttl-ms", "2000"]), w("w1", &[])];
    let token = "s3cret-token";
    std::fs::write(dir.join("token.txt"), format!("{token}\n")).unwrap();
    std::fs::write(
        dir.join("lara.toml"),
        format!("nats = \"{url}\"\ntoken_file = \"{}\"\n[remote_write]\ncreate_on_base = \"m\"\n", dir.join("token.txt").display()),
    )
    .unwrap();
    let config = dir.join("lara.toml");
    let serve = Proc::spawn(&["serve", "--config", config.to_str().unwrap(), "--addr", "127.0.0.1:0", "--threads", "4", "--results-max-mib", "512"]);
    let base = serve.first_line.strip_prefix("listening on ").unwrap_or_else(|| panic!("{}", serve.first_line)).to_string();

    // Tokens: health is open, everything else needs the right one.
    assert_eq!(call("GET", &format!("{base}/healthz"), "", b"", None).0, 200);
    assert_eq!(call("GET", &format!("{base}/readyz"), "", b"", None).0, 200);
    assert_eq!(call("GET", &format!("{base}/v1/cluster"), "", b"", None).0, 401);
    assert_eq!(call("GET", &format!("{base}/v1/cluster"), "", b"", Some("wrong")).0, 401);
    assert_eq!(call("POST", &format!("{base}/api/v1/write"), "application/x-protobuf", b"x", Some("wrong")).0, 401);
    let cluster = get_t(&format!("{base}/v1/cluster"), token);
    assert_eq!(cluster["partitions"], 8);
    assert_eq!(cluster["streams"]["LARA_RESULTS"]["max_bytes"], 512u64 << 20, "{cluster}");

    let (st, up) = call_t("PUT", &format!("{base}/v1/models/m/file"), &std::fs::read(&model).unwrap(), token);
    assert_eq!(st, 200, "{up}");
    let column = up["columns"][0].as_str().unwrap().to_string();
    for (e, spec) in [("a", json!({ "model": "m" })), ("b", json!({ "model": "m" }))] {
        let (st, v) = call_t("PUT", &format!("{base}/v1/entities/{e}"), spec.to_string().as_bytes(), token);
        assert_eq!(st, 201, "{v}");
    }
    assert_eq!(call_t("PUT", &format!("{base}/v1/entities/bad.id"), b"{\"model\": \"m\"}", token).0, 400);
    assert_eq!(call_t("POST", &format!("{base}/v1/entities/nobody/adapt"), b"", token).0, 404);
    let alarms_rx = common::server::follow_alarms(&base, Some(token));
    wait_for("2 workers owning all partitions", Duration::from_secs(30), || {
        let v = get_t(&format!("{base}/v1/cluster"), token);
        v["owners"].as_object().unwrap().len() == 8 && v["workers"].as_array().unwrap().len() == 2
    });

    // Entity a: rows, adapt, (kill -9 of its owner), rows, rollback, rows with a spike.
    let vals = nab();
    let rows: Vec<Vec<f32>> = vals[300..520].iter().map(|&v| vec![v]).collect();
    let spike = vals.iter().cloned().fold(0f32, f32::max) * 20.0;
    let mut tail: Vec<Vec<f32>> = rows[180..].to_vec();
    for r in tail.iter_mut().skip(10).take(3) {
        r[0] = spike;
    }
    let steps = vec![
        Step::Rows(rows[..120].to_vec()),
        Step::Control("adapt"),
        Step::Rows(rows[120..180].to_vec()),
        Step::Control("rollback"),
        Step::Rows(tail),
    ];
    let (want_scores, want_events, want_ok) = expected_steps(&model, false, &steps);
    assert!(want_ok[0], "the single node refuses adapt here: choose another row");
    let post_rows = |e: &str, r: &[Vec<f32>]| {
        for (k, c) in r.chunks(7).enumerate() {
            let (st, v) = call_t("POST", &format!("{base}/v1/entities/{e}/points"), json!({ "rows": c }).to_string().as_bytes(), token);
            assert_eq!(st, 202, "chunk {k}: {v}");
        }
    };
    let partition = get_t(&format!("{base}/v1/entities/a"), token)["partition"].as_u64().unwrap();
    let mut killed = None;
    for (i, s) in steps.iter().enumerate() {
        match s {
            Step::Rows(r) => post_rows("a", r),
            Step::Control(c) => {
                let (st, v) = call_t("POST", &format!("{base}/v1/entities/a/{c}"), b"", token);
                let k = if *c == "adapt" { 0 } else { 1 };
                assert_eq!(st, if want_ok[k] { 200 } else { 409 }, "{c}: {v}");
                if st == 200 {
                    assert!(v["events"].is_array() && v["entity"]["model_version"].is_u64(), "{v}");
                }
                if i == 1 {
                    // The adapt is applied and answered, not yet in a snapshot: kill its owner.
                    let owner = get_t(&format!("{base}/v1/cluster"), token)["owners"][partition.to_string()].as_str().unwrap().to_string();
                    let w = if owner == "w0" { 0 } else { 1 };
                    ws[w].0.kill9();
                    killed = Some(w);
                    wait_for("the dead worker's partitions owned again", Duration::from_secs(30), || {
                        let v = get_t(&format!("{base}/v1/cluster"), token);
                        let o = v["owners"].as_object().unwrap();
                        o.len() == 8 && o.values().all(|x| x.as_str() != Some(&owner))
                    });
                }
            }
        }
    }
    let survivor = &ws[1 - killed.unwrap()].1;
    wait_for("entity a's results", Duration::from_secs(60), || {
        get_t(&format!("{base}/v1/entities/a/scores"), token)["scores"].as_array().unwrap().len() >= want_scores.len()
    });
    let got = get_t(&format!("{base}/v1/entities/a/scores"), token)["scores"].as_array().unwrap().clone();
    assert_eq!(got.len(), want_scores.len(), "rows lost or scored twice");
    for (i, (g, w)) in got.iter().zip(&want_scores).enumerate() {
        assert_eq!(g, w, "entity a, row {i}: differs from the single-node replay");
    }
    // Every decision once, in order, as on one node: the adapt was replayed by the new owner
    // (its counter) but answered and published once.
    // (Without `elapsed_ms`, a wall-clock measurement.)
    let strip = |v: &[Value]| -> Vec<Value> {
        v.iter().cloned().map(|mut e| {
            e.as_object_mut().unwrap().remove("elapsed_ms");
            e
        }).collect()
    };
    let events = get_t(&format!("{base}/v1/entities/a/events"), token)["events"].as_array().unwrap().clone();
    assert_eq!(strip(&events), strip(&want_events), "decisions differ from the single node's");
    let replayed = metric(survivor, "lara_worker_controls_total");
    println!("controls applied by the surviving worker (replayed adapt + rollback): {replayed}");
    assert!(replayed >= 2, "the new owner did not replay the adapt");
    let alarms = get_t(&format!("{base}/v1/entities/a/alarms"), token)["alarms"].as_array().unwrap().clone();
    let spike_row = (120 + 60 + 10) as u64;
    assert!(alarms.iter().any(|a| a["row"] == spike_row), "the spike raised no alarm: {alarms:?}");

    // The alarm stream: the spike's alarm, in the single node's format.
    let t = Instant::now();
    let alarm = loop {
        let a = alarms_rx.recv_timeout(Duration::from_secs(30)).expect("no alarm on /v1/alarms/stream");
        if a["entity"] == "a" && a["row"] == spike_row {
            break a;
        }
        assert!(t.elapsed() < Duration::from_secs(30));
    };
    assert_eq!(alarm["id"], format!("a:{spike_row}"));
    assert_eq!(alarm["is_anomaly"], true);
    let stored = get_t(&format!("{base}/v1/alarms"), token)["alarms"].as_array().unwrap().clone();
    assert_eq!(stored.iter().filter(|x| x["id"] == alarm["id"]).count(), 1, "alarm stored once");

    // Remote-write: an unknown instance is created on the base (cold start); a retry of the
    // same body adds nothing.
    let rw_vals: Vec<f32> = vals[600..660].to_vec();
    let body = remote_write_body(&[(
        vec![("__name__", column.as_str()), ("instance", "rw1"), ("job", "node")],
        rw_vals.iter().enumerate().map(|(i, &v)| (v as f64, 1_700_000_000_000 + 15_000 * i as i64)).collect(),
    )]);
    assert_eq!(lara_server::remote_write::decode(&body).unwrap()[0].samples.len(), 60);
    for _ in 0..2 {
        let (st, v) = call_t("POST", &format!("{base}/api/v1/write"), &body, token);
        assert_eq!(st, 204, "{v}");
    }
    assert_eq!(call_t("POST", &format!("{base}/api/v1/write"), b"not snappy", token).0, 400);
    let rw_rows: Vec<Vec<f32>> = rw_vals.iter().map(|&v| vec![v]).collect();
    let (want_rw, _, _) = expected_steps(&model, true, &[Step::Rows(rw_rows)]);
    wait_for("rw1's results", Duration::from_secs(30), || {
        get_t(&format!("{base}/v1/entities/rw1/scores"), token)["scores"].as_array().unwrap().len() >= want_rw.len()
    });
    let mut got = get_t(&format!("{base}/v1/entities/rw1/scores"), token)["scores"].as_array().unwrap().clone();
    for (i, r) in got.iter_mut().enumerate() {
        let ts = r.as_object_mut().unwrap().remove("timestamp");
        assert_eq!(ts, Some(json!((1_700_000_000_000i64 + 15_000 * i as i64).to_string())), "rw1 row {i}");
    }
    assert_eq!(got, want_rw, "remote-written rows differ from the single-node replay");

    // Delete: b's rows are gone with it; created again, it starts from row 0.
    post_rows("b", &rows[..30]);
    wait_for("b's results", Duration::from_secs(30), || {
        get_t(&format!("{base}/v1/entities/b/scores"), token)["scores"].as_array().unwrap().len() >= 30
    });
    let (st, v) = call_t("DELETE", &format!("{base}/v1/entities/b"), b"", token);
    assert_eq!(st, 204, "{v}");
    assert_eq!(call_t("GET", &format!("{base}/v1/entities/b"), b"", token).0, 404);
    assert_eq!(call_t("GET", &format!("{base}/v1/entities/b/scores"), b"", token).0, 404);
    assert_eq!(call_t("DELETE", &format!("{base}/v1/entities/b"), b"", token).0, 404);
    let (st, _) = call_t("PUT", &format!("{base}/v1/entities/b"), json!({ "model": "m" }).to_string().as_bytes(), token);
    assert_eq!(st, 201);
    // (This time as the single node's CSV body, with timestamps.)
    let mut csv = format!("timestamp,{column}\n");
    for (i, r) in rows[100..125].iter().enumerate() {
        csv.push_str(&format!("2026-01-01T00:{i:02}:00Z,{}\n", r[0]));
    }
    let (st, b) = call("POST", &format!("{base}/v1/entities/b/points"), "text/csv", csv.as_bytes(), Some(token));
    assert_eq!(st, 202, "{}", String::from_utf8_lossy(&b));
    let (st, b) = call("POST", &format!("{base}/v1/entities/b/points"), "text/csv", b"timestamp,nope\n1,2\n", Some(token));
    assert_eq!(st, 400, "{}", String::from_utf8_lossy(&b));
    let want_b = expected(&model, 0, &rows[100..125]);
    wait_for("b's new results", Duration::from_secs(30), || {
        get_t(&format!("{base}/v1/entities/b/scores"), token)["scores"].as_array().unwrap().len() >= 25
    });
    let mut got = get_t(&format!("{base}/v1/entities/b/scores"), token)["scores"].as_array().unwrap().clone();
    for (i, r) in got.iter_mut().enumerate() {
        let ts = r.as_object_mut().unwrap().remove("timestamp");
        assert_eq!(ts, Some(json!(format!("2026-01-01T00:{i:02}:00Z"))), "b row {i}");
    }
    assert_eq!(got, want_b, "the re-created entity does not start afresh");

    // Retention: once idle, checkpoints are written and the points below them purged.
    wait_for("points purged below the checkpoints", Duration::from_secs(40), || {
        let v = get_t(&format!("{base}/v1/cluster"), token);
        v["streams"]["LARA_POINTS"]["messages"].as_u64().unwrap() < 10
    });
    let v = get_t(&format!("{base}/v1/cluster"), token);
    println!("streams after the run: {}; test {:.1} s", v["streams"], t_test.elapsed().as_secs_f64());
    drop(ws);
    let _ = std::fs::remove_dir_all(&dir);
}
