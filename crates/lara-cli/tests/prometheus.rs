//! A real Prometheus scrapes a real exporter and remote-writes to `lara serve`, which scores
//! its rows (issue 10). Debian's `prometheus` package; `.ci/run` installs it and sets
//! `LARA_REQUIRE_PROMETHEUS=1`, so in CI its absence fails the test instead of skipping it.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;

use common::server::{call, js, Server};
use common::{file_values, tmp_dir, train_small};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An exporter whose gauge `value` takes the file's next value at every scrape; returns its
/// address and the values served so far.
fn exporter(values: Vec<f64>) -> (String, Arc<Mutex<Vec<f64>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let served = Arc::new(Mutex::new(Vec::new()));
    let log = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut r = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            let _ = r.read_line(&mut first);
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            if !first.starts_with("GET /metrics") {
                let _ = write!(stream, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                continue;
            }
            let mut served = log.lock().unwrap();
            let v = values[served.len() % values.len()];
            served.push(v);
            let body = format!("# HELP value The file's series.\n# TYPE value gauge\nvalue {v}\n");
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (addr, served)
}

#[test]
fn prometheus_remote_writes_scraped_rows_that_lara_scores() {
    let Some(prom) = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"].into_iter().find(|p| std::path::Path::new(p).exists())
    else {
        assert!(
            std::env::var("LARA_REQUIRE_PROMETHEUS").is_err(),
            "prometheus is required (LARA_REQUIRE_PROMETHEUS is set) but not installed"
        );
        println!("SKIPPED: prometheus not installed (apt-get install prometheus)");
        return;
    };
    let dir = tmp_dir("prometheus");
    let model = train_small(&dir);
    std::fs::write(dir.join("token"), "promtok\n").unwrap();
    let srv = Server::start(&dir.join("store"), &["--token-file", dir.join("token").to_str().unwrap()]);
    let t = Some("promtok");
    assert_eq!(call("PUT", &format!("{}/v1/models/nab/file", srv.base), "", &std::fs::read(&model).unwrap(), t).0, 200);

    let (target, served) = exporter(file_values());
    // The entity is the scrape target's `instance` label.
    let entity = target.clone();
    let (st, b) =
        call("PUT", &format!("{}/v1/entities/{entity}", srv.base), "application/json", br#"{"model": "nab"}"#, t);
    assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));

    let port = free_port();
    let cfg = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n\
         scrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{target}']\n\
         remote_write:\n  - url: {}/api/v1/write\n    authorization:\n      credentials: promtok\n\
         \x20   metadata_config:\n      send: false\n    queue_config:\n      batch_send_deadline: 1s\n      max_shards: 2\n",
        srv.base
    );
    std::fs::write(dir.join("prometheus.yml"), cfg).unwrap();
    let mut p = Command::new(prom)
        .args([
            &format!("--config.file={}", dir.join("prometheus.yml").display()),
            &format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
            &format!("--web.listen-address=127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start prometheus");
    let log = p.stderr.take().unwrap();
    let prom_log = Arc::new(Mutex::new(String::new()));
    let keep = prom_log.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(log).lines().map_while(Result::ok) {
            keep.lock().unwrap().push_str(&(l + "\n"));
        }
    });

    // Wait until lara holds at least 8 rows of the entity.
    let want = 8u64;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut ent = Value::Null;
    while Instant::now() < deadline {
        let (_, b) = call("GET", &format!("{}/v1/entities/{entity}", srv.base), "", b"", t);
        ent = js(&b);
        if ent["rows"].as_u64().unwrap_or(0) >= want {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let _ = p.kill();
    let _ = p.wait();
    let n = ent["rows"].as_u64().unwrap_or(0);
    assert!(n >= want, "lara got {n} rows from Prometheus: {ent}\n{}", prom_log.lock().unwrap());

    // Every row is a scrape, in order, scored; the same values pushed directly to a second
    // entity give the same scores (results over remote-write equal the API's).
    let (_, b) = call("GET", &format!("{}/v1/entities/{entity}/scores", srv.base), "", b"", t);
    let got = js(&b)["results"].as_array().unwrap().clone();
    let n = got.len();
    let ts: Vec<i64> = got.iter().map(|r| r["timestamp"].as_str().unwrap().parse().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[1] > w[0]), "timestamps (ms) increase: {ts:?}");
    let served: Vec<f64> = served.lock().unwrap().clone();
    assert!(served.len() >= n);
    let (st, _) = call("PUT", &format!("{}/v1/entities/direct", srv.base), "application/json", br#"{"model": "nab"}"#, t);
    assert_eq!(st, 201);
    let body = json!({ "rows": served[..n].iter().map(|v| vec![*v]).collect::<Vec<_>>() });
    let (st, b) =
        call("POST", &format!("{}/v1/entities/direct/points", srv.base), "application/json", body.to_string().as_bytes(), t);
    assert_eq!(st, 200);
    let direct = js(&b)["results"].as_array().unwrap().clone();
    for (i, (a, d)) in got.iter().zip(&direct).enumerate() {
        assert_eq!(a["score"], d["score"], "row {i}");
        assert_eq!(a["p_anomaly"], d["p_anomaly"], "row {i}");
    }
    let (_, b) = call("GET", &format!("{}/metrics", srv.base), "", b"", t);
    let m = String::from_utf8_lossy(&b).into_owned();
    let samples: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("lara_remote_write_samples_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(samples >= n as u64, "{m}");
}
