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
    if e % 2 == 0 {
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
