//! `lara front`: the HTTP API in front of the workers. It publishes ingest to `LARA_POINTS`
//! (answering once the broker acknowledged it: the row is durable) and serves results from
//! `LARA_RESULTS`. Stateless apart from a cache of entity widths: run as many as needed.
//!
//! | route | |
//! |---|---|
//! | `PUT /v1/models/{id}/file` | a `.lara` model file (body) into the object store |
//! | `PUT /v1/entities/{id}` | `{"model": id}` or `{"base": id}` (LARA cold start), optional `policy`, `slots`; 201, or 200 when it exists identically |
//! | `GET /v1/entities/{id}` | its spec and partition |
//! | `POST /v1/entities/{id}/points` | `{"rows": [[..], ..]}`; 202 `{"seq", "duplicate", "rows"}` once stored; an `Idempotency-Key` header makes a retry safe |
//! | `GET /v1/entities/{id}/scores?from=ROW` | the results published so far, in order |
//! | `GET /v1/alarms` | every alarm so far |
//! | `GET /v1/cluster` | partitions, owners, live workers, lease TTL |
//! | `GET /metrics`, `/healthz` | |

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Result};
use serde_json::{json, Value};

use crate::{partition_of, valid_id, Broker, EntitySpec};

#[derive(Default)]
struct FrontMetrics {
    requests: AtomicU64,
    errors: AtomicU64,
    rows: AtomicU64,
    duplicates: AtomicU64,
    publish_us: AtomicU64,
    publishes: AtomicU64,
}

struct Front {
    b: Broker,
    rt: tokio::runtime::Handle,
    /// Entity → its model's column count.
    widths: Mutex<HashMap<String, usize>>,
    m: FrontMetrics,
    max_body: usize,
}

/// How to run the front.
#[derive(Debug, Clone)]
pub struct FrontConfig {
    pub nats: String,
    pub addr: String,
    pub partitions: Option<u32>,
    pub lease_ttl: Option<std::time::Duration>,
    pub threads: usize,
}

/// Runs the front until the process ends; prints `listening on http://ADDR` once bound.
pub fn run(cfg: FrontConfig) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let b = rt.block_on(Broker::connect(&cfg.nats, cfg.partitions, cfg.lease_ttl))?;
    let server = tiny_http::Server::http(cfg.addr.as_str()).map_err(|e| anyhow!("{}: {e}", cfg.addr))?;
    let server = Arc::new(server);
    let front = Arc::new(Front {
        b,
        rt: rt.handle().clone(),
        widths: Mutex::new(HashMap::new()),
        m: FrontMetrics::default(),
        max_body: 64 << 20,
    });
    println!("listening on http://{}", server.server_addr());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let mut hs = Vec::new();
    for _ in 0..cfg.threads.max(1) {
        let (server, front) = (server.clone(), front.clone());
        hs.push(std::thread::spawn(move || {
            while let Ok(req) = server.recv() {
                handle(&front, req);
            }
        }));
    }
    for h in hs {
        let _ = h.join();
    }
    drop(rt);
    Ok(())
}

fn answer(status: u16, v: &Value) -> (u16, &'static str, Vec<u8>) {
    (status, "application/json", serde_json::to_vec(v).unwrap_or_default())
}
fn bad(status: u16, msg: impl std::fmt::Display) -> (u16, &'static str, Vec<u8>) {
    answer(status, &json!({ "error": msg.to_string() }))
}

fn handle(f: &Front, mut req: tiny_http::Request) {
    f.m.requests.fetch_add(1, Ordering::Relaxed);
    let method = req.method().as_str().to_string();
    let url = req.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut body = Vec::new();
    let too_big = req.as_reader().take(f.max_body as u64 + 1).read_to_end(&mut body).is_err() || body.len() > f.max_body;
    let idem = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("Idempotency-Key"))
        .map(|h| h.value.as_str().to_string());
    let (status, ct, out) = if too_big {
        bad(413, "body too large")
    } else {
        match (method.as_str(), segs.as_slice()) {
            ("GET", ["healthz"]) => (200, "text/plain", b"ok\n".to_vec()),
            ("GET", ["metrics"]) => (200, "text/plain; version=0.0.4", metrics(f).into_bytes()),
            ("GET", ["v1", "cluster"]) => wrap(f.rt.block_on(f.b.cluster_view()).map(|v| answer(200, &v))),
            ("PUT", ["v1", "models", id, "file"]) => wrap(
                f.rt.block_on(f.b.put_model(id, &body))
                    .map(|cols| answer(200, &json!({ "id": id, "columns": cols, "bytes": body.len() }))),
            ),
            ("PUT", ["v1", "entities", id]) => put_entity(f, id, &body),
            ("GET", ["v1", "entities", id]) => match f.rt.block_on(f.b.entity(id)) {
                Ok(Some(s)) => answer(
                    200,
                    &json!({ "id": id, "spec": s, "partition": partition_of(id, f.b.partitions) }),
                ),
                Ok(None) => bad(404, format!("no entity {id:?}")),
                Err(e) => bad(500, e),
            },
            ("POST", ["v1", "entities", id, "points"]) => post_points(f, id, &body, idem.as_deref()),
            ("GET", ["v1", "entities", id, "scores"]) => {
                let from: u64 = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("from="))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                wrap(f.rt.block_on(f.b.scores(id)).map(|rows| {
                    let rows: Vec<Value> =
                        rows.into_iter().filter(|r| r["row"].as_u64().is_some_and(|x| x >= from)).collect();
                    answer(200, &json!({ "entity": id, "scores": rows }))
                }))
            }
            ("GET", ["v1", "alarms"]) => wrap(f.rt.block_on(f.b.alarms()).map(|a| answer(200, &json!({ "alarms": a })))),
            _ => bad(404, format!("no route {method} {path}")),
        }
    };
    if status >= 400 {
        f.m.errors.fetch_add(1, Ordering::Relaxed);
    }
    let resp = tiny_http::Response::from_data(out).with_status_code(status).with_header(
        tiny_http::Header::from_bytes(&b"Content-Type"[..], ct.as_bytes()).expect("valid header"),
    );
    let _ = req.respond(resp);
}

fn wrap(r: Result<(u16, &'static str, Vec<u8>)>) -> (u16, &'static str, Vec<u8>) {
    r.unwrap_or_else(|e| bad(500, format!("{e:#}")))
}

fn put_entity(f: &Front, id: &str, body: &[u8]) -> (u16, &'static str, Vec<u8>) {
    if !valid_id(id) {
        return bad(400, "entity id: use 1-128 of [A-Za-z0-9_-]");
    }
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return bad(400, format!("body: not JSON ({e})")),
    };
    let (model, cold) = match (v["model"].as_str(), v["base"].as_str()) {
        (Some(m), None) => (m.to_string(), false),
        (None, Some(b)) => (b.to_string(), true),
        _ => return bad(400, "body: give exactly one of \"model\" or \"base\" (a model id)"),
    };
    let spec = EntitySpec {
        model,
        cold_start: cold,
        policy: v["policy"].as_str().unwrap_or("adapt").to_string(),
        slots: v["slots"].as_u64().unwrap_or(40) as usize,
    };
    match f.rt.block_on(f.b.create_entity(id, &spec)) {
        Ok(created) => answer(
            if created { 201 } else { 200 },
            &json!({ "id": id, "spec": spec, "partition": partition_of(id, f.b.partitions) }),
        ),
        Err(e) => {
            let msg = format!("{e:#}");
            let status = if msg.contains("no model") {
                404
            } else if msg.contains("exists") {
                409
            } else {
                400
            };
            bad(status, msg)
        }
    }
}

fn width(f: &Front, id: &str) -> Result<Option<usize>> {
    if let Some(w) = f.widths.lock().expect("widths").get(id) {
        return Ok(Some(*w));
    }
    let Some(spec) = f.rt.block_on(f.b.entity(id))? else { return Ok(None) };
    let cols = f.rt.block_on(f.b.model_columns(&spec.model))?.ok_or_else(|| anyhow!("no model {:?}", spec.model))?;
    f.widths.lock().expect("widths").insert(id.to_string(), cols.len());
    Ok(Some(cols.len()))
}

fn post_points(f: &Front, id: &str, body: &[u8], idem: Option<&str>) -> (u16, &'static str, Vec<u8>) {
    let w = match width(f, id) {
        Ok(Some(w)) => w,
        Ok(None) => return bad(404, format!("no entity {id:?}")),
        Err(e) => return bad(503, format!("{e:#}")),
    };
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return bad(400, format!("body: not JSON ({e})")),
    };
    let Some(arr) = v["rows"].as_array() else { return bad(400, "body: \"rows\" must be an array of rows") };
    if arr.is_empty() {
        return bad(400, "body: no rows");
    }
    let mut rows = Vec::with_capacity(arr.len());
    for (i, r) in arr.iter().enumerate() {
        let Some(cells) = r.as_array() else { return bad(400, format!("rows[{i}]: not an array")) };
        if cells.len() != w {
            return bad(400, format!("rows[{i}]: {} values, the model has {w} columns", cells.len()));
        }
        let mut row = Vec::with_capacity(w);
        for (j, c) in cells.iter().enumerate() {
            match c.as_f64().map(|x| x as f32) {
                Some(x) if x.is_finite() => row.push(x),
                _ => return bad(400, format!("rows[{i}][{j}]: not a finite number")),
            }
        }
        rows.push(row);
    }
    if let Some(k) = idem {
        if k.is_empty() || k.len() > 200 {
            return bad(400, "Idempotency-Key: 1-200 characters");
        }
    }
    let t = std::time::Instant::now();
    match f.rt.block_on(f.b.publish_points(id, &rows, idem)) {
        Ok((seq, dup)) => {
            f.m.publish_us.fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
            f.m.publishes.fetch_add(1, Ordering::Relaxed);
            if dup {
                f.m.duplicates.fetch_add(1, Ordering::Relaxed);
            } else {
                f.m.rows.fetch_add(rows.len() as u64, Ordering::Relaxed);
            }
            answer(202, &json!({ "seq": seq, "duplicate": dup, "rows": rows.len() }))
        }
        Err(e) => bad(503, format!("publish: {e:#}")),
    }
}

fn metrics(f: &Front) -> String {
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut s = String::new();
    for (name, kind, v, help) in [
        ("lara_front_requests_total", "counter", g(&f.m.requests) as f64, "HTTP requests"),
        ("lara_front_errors_total", "counter", g(&f.m.errors) as f64, "HTTP answers >= 400"),
        ("lara_front_rows_published_total", "counter", g(&f.m.rows) as f64, "rows published to LARA_POINTS"),
        ("lara_front_duplicates_total", "counter", g(&f.m.duplicates) as f64, "ingest requests the broker recognised as retries"),
        ("lara_front_publish_seconds_sum", "counter", g(&f.m.publish_us) as f64 / 1e6, "time waiting for publish acks"),
        ("lara_front_publish_seconds_count", "counter", g(&f.m.publishes) as f64, "publishes"),
    ] {
        s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"));
    }
    s
}
