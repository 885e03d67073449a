//! The cluster's HTTP API (`lara serve --nats URL`, or `lara front`): it publishes ingest and
//! operator controls to `LARA_POINTS` (answering once the broker acknowledged them: they are
//! durable) and serves results, decisions and alarms from `LARA_RESULTS`. Stateless apart from
//! caches (entity columns) and the partial remote-write rows of this process: run as many as
//! needed.
//!
//! Routes, paths and bodies are the single node's (`lara-server`'s `api::ROUTES`) where the
//! cluster offers the same thing:
//!
//! | route | |
//! |---|---|
//! | `PUT /v1/models/{id}/file` | a `.lara` model file (body) into the object store |
//! | `PUT /v1/entities/{id}` | `{"model": id}` or `{"base": id}` (LARA cold start), optional `policy`, `slots`; 201, or 200 when it exists identically, 409 with another spec |
//! | `GET /v1/entities/{id}` | its spec and partition |
//! | `DELETE /v1/entities/{id}` | 204 once its owner dropped it (a `delete` control in its stream) and its spec, snapshot, points, results and decisions are removed; 503 when no worker answered within the control timeout (retry) |
//! | `POST /v1/entities/{id}/points` | the single node's body: `{"rows": [[..], ..], "timestamps": [..]}` or `text/csv` with the model's columns (+ `timestamp`); 202 `{"seq", "duplicate", "rows"}` once stored; an `Idempotency-Key` header makes a retry safe |
//! | `POST /v1/entities/{id}/adapt`, `/rollback` | an operator control, applied by the owning worker at its place in the entity's stream; 200 `{"entity": {id, state, model_version, rows}, "events", "seq"}`, 409 `{"error"}` when the monitor refused it, 202 `{"seq", "status": "queued"}` when no worker answered within the control timeout (it is applied when one gets to it). `Idempotency-Key` as for points |
//! | `GET /v1/entities/{id}/scores?from=&to=&limit=` | the results published so far, in row order (with `timestamp` when the rows had one) |
//! | `GET /v1/entities/{id}/alarms?from=&to=&limit=` | those results with `is_anomaly` |
//! | `GET /v1/entities/{id}/events` | the monitor's decisions (its own and the controls'), in order |
//! | `GET /v1/alarms` | every alarm stored |
//! | `GET /v1/alarms/stream?entity=` | Server-Sent Events: one `alarm` event per new alarm, the single node's format |
//! | `POST /api/v1/write` | Prometheus remote-write (the single node's decoder and `[remote_write]` mapping); 204 |
//! | `GET /v1/cluster` | partitions, owners, live workers, lease TTL, stream sizes and limits |
//! | `GET /metrics`, `/healthz`, `/readyz` | |
//!
//! A route that needs the broker answers 503 `{"error"}` when the broker does not answer within
//! 30 s: a request never hangs.
//!
//! With a token every route but `/healthz` and `/readyz` requires `Authorization: Bearer
//! <token>` (compared in constant time); the alarm stream also takes `?access_token=` (a
//! browser's `EventSource` cannot set headers).

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Result};
use async_nats::jetstream;
use futures_util::StreamExt;
use lara_server::alarms::AlarmHub;
use lara_server::config::RemoteWriteConfig;
use lara_server::remote_write::{decode, group, Pending};
use serde_json::{json, Value};

use crate::{partition_of, points_subject, valid_id, Broker, EntitySpec, PointsMsg, ALARMS_SUBJECT};

#[derive(Default)]
struct FrontMetrics {
    requests: AtomicU64,
    errors: AtomicU64,
    rows: AtomicU64,
    duplicates: AtomicU64,
    publish_us: AtomicU64,
    publishes: AtomicU64,
    controls: AtomicU64,
    sse_clients: AtomicU64,
    remote_write_samples: AtomicU64,
    remote_write_dropped: AtomicU64,
}

/// Remote-write state of one entity in this front.
#[derive(Default)]
struct RwEntity {
    pending: Pending,
    /// Timestamp (ms) of the last row published (None: not known yet).
    last_ts: Option<i64>,
}

/// The longest a request waits for the broker before it is answered 503: a front never
/// leaves a client hanging, whatever the broker does.
const BROKER_WAIT: Duration = Duration::from_secs(30);

struct Front {
    b: Broker,
    rt: tokio::runtime::Handle,
    /// Entity → its model's columns.
    columns: Mutex<HashMap<String, Arc<Vec<String>>>>,
    m: FrontMetrics,
    cfg: FrontConfig,
    /// Alarms from `lara.alarms` to the SSE clients.
    hub: AlarmHub,
    /// Held for a whole remote-write request: rows of one entity are published in time order.
    rw: Mutex<HashMap<String, RwEntity>>,
}

/// How to run the front.
#[derive(Debug, Clone)]
pub struct FrontConfig {
    pub nats: String,
    pub addr: String,
    /// Only when the cluster is first set up (see [`Broker::connect`]).
    pub partitions: Option<u32>,
    pub lease_ttl: Option<Duration>,
    pub threads: usize,
    /// Required as `Authorization: Bearer <token>` on every route but `/healthz`, `/readyz`.
    pub token: Option<String>,
    /// Largest request body (bytes).
    pub max_body: usize,
    /// Most rows one ingest request may carry.
    pub max_rows: usize,
    /// How remote-write label sets map to entity and column.
    pub remote_write: RemoteWriteConfig,
    /// How long a control request waits for the owning worker's answer.
    pub control_timeout: Duration,
    /// When either is set, the retention of `LARA_RESULTS` is set to both
    /// ([`Broker::set_results_retention`]; 0 = unlimited). None, None: left as it is.
    pub results_max_age: Option<Duration>,
    pub results_max_bytes: Option<u64>,
}

impl FrontConfig {
    /// The defaults of `lara serve --nats URL`.
    pub fn new(nats: &str, addr: &str) -> FrontConfig {
        FrontConfig {
            nats: nats.to_string(),
            addr: addr.to_string(),
            partitions: None,
            lease_ttl: None,
            threads: 4,
            token: None,
            max_body: 64 << 20,
            max_rows: 100_000,
            remote_write: RemoteWriteConfig::default(),
            control_timeout: Duration::from_secs(10),
            results_max_age: None,
            results_max_bytes: None,
        }
    }
}

impl Front {
    /// Runs a broker call on the front's runtime from a request thread, for at most
    /// [`BROKER_WAIT`].
    fn block<T>(&self, call: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        self.rt.block_on(async {
            tokio::time::timeout(BROKER_WAIT, call)
                .await
                .unwrap_or_else(|_| Err(anyhow!("the broker did not answer within {BROKER_WAIT:?}")))
        })
    }
}

/// Runs the front until the process ends; prints `listening on http://ADDR` once bound.
pub fn run(cfg: FrontConfig) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let b = rt.block_on(Broker::connect(&cfg.nats, cfg.partitions, cfg.lease_ttl))?;
    if cfg.results_max_age.is_some() || cfg.results_max_bytes.is_some() {
        let age = cfg.results_max_age.filter(|a| !a.is_zero());
        let bytes = cfg.results_max_bytes.filter(|&b| b > 0);
        rt.block_on(b.set_results_retention(age, bytes))?;
    }
    let listener = std::net::TcpListener::bind(&cfg.addr).map_err(|e| anyhow!("{}: {e}", cfg.addr))?;
    lara_server::set_nodelay(&listener);
    let server = tiny_http::Server::from_listener(listener, None).map_err(|e| anyhow!("{}: {e}", cfg.addr))?;
    let server = Arc::new(server);
    let threads = cfg.threads.max(1);
    let front = Arc::new(Front {
        b,
        rt: rt.handle().clone(),
        columns: Mutex::new(HashMap::new()),
        m: FrontMetrics::default(),
        cfg,
        hub: AlarmHub::default(),
        rw: Mutex::new(HashMap::new()),
    });
    rt.spawn(follow_alarms(front.clone()));
    println!("listening on http://{}", server.server_addr());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let mut hs = Vec::new();
    for _ in 0..threads {
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

/// Follows `lara.alarms` in `LARA_RESULTS` (stored alarms only: a copy the broker dropped as a
/// duplicate never reaches the SSE clients) and hands each new alarm to the hub. Re-created
/// after an error from the sequence after the last one seen.
async fn follow_alarms(f: Arc<Front>) {
    let mut next: Option<u64> = None;
    loop {
        let deliver_policy = match next {
            None => jetstream::consumer::DeliverPolicy::New,
            Some(s) => jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence: s },
        };
        let consumer = f
            .b
            .results
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                filter_subject: ALARMS_SUBJECT.to_string(),
                deliver_policy,
                ..Default::default()
            })
            .await;
        let mut msgs = match consumer {
            Ok(c) => match c.messages().await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!("alarm stream: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            Err(e) => {
                tracing::warn!("alarm stream: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(m) = msgs.next().await {
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!("alarm stream: {e}");
                    break;
                }
            };
            if let Ok(i) = m.info() {
                next = Some(i.stream_sequence + 1);
            }
            match serde_json::from_slice::<Value>(&m.payload) {
                Ok(v) => f.hub.publish(&[v]),
                Err(e) => tracing::warn!("alarm stream: a malformed alarm: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

type Answer = (u16, &'static str, Vec<u8>);

fn answer(status: u16, v: &Value) -> Answer {
    (status, "application/json", serde_json::to_vec(v).unwrap_or_default())
}
fn bad(status: u16, msg: impl std::fmt::Display) -> Answer {
    answer(status, &json!({ "error": msg.to_string() }))
}

fn header(req: &tiny_http::Request, name: &'static str) -> Option<String> {
    req.headers().iter().find(|h| h.field.equiv(name)).map(|h| h.value.as_str().to_string())
}

/// A query parameter as a number (None: absent); 400 naming the parameter when it is not one.
fn q_num(query: &[(&str, &str)], k: &str) -> Result<Option<u64>, Answer> {
    match query.iter().find(|(a, _)| *a == k) {
        None => Ok(None),
        Some((_, v)) => {
            v.parse().map(Some).map_err(|_| bad(400, format!("query parameter {k}={v:?} is not a number")))
        }
    }
}

/// Handles one request (never panics on bad input).
fn handle(f: &Arc<Front>, mut req: tiny_http::Request) {
    f.m.requests.fetch_add(1, Ordering::Relaxed);
    let method = req.method().as_str().to_string();
    let url = req.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let query: Vec<(&str, &str)> =
        query.split('&').filter(|s| !s.is_empty()).map(|kv| kv.split_once('=').unwrap_or((kv, ""))).collect();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (status, ct, out) = 'answer: {
        if let Some(t) = &f.cfg.token {
            let mut given = header(&req, "Authorization").unwrap_or_default().strip_prefix("Bearer ").unwrap_or("").to_string();
            if given.is_empty() && path == "/v1/alarms/stream" {
                if let Some((_, v)) = query.iter().find(|(k, _)| *k == "access_token") {
                    given = v.to_string();
                }
            }
            let open = matches!(path, "/healthz" | "/readyz");
            if !open && !lara_server::api::constant_time_eq(given.as_bytes(), t.as_bytes()) {
                break 'answer bad(401, "missing or wrong bearer token (Authorization: Bearer <token>)");
            }
        }
        // Path parameters are entity or model ids: subject tokens and KV keys.
        let id_at = match segs.as_slice() {
            ["v1", "models" | "entities", _, ..] => Some(2),
            _ => None,
        };
        if let Some(i) = id_at {
            if !valid_id(segs[i]) {
                break 'answer bad(400, format!("invalid id {:?}: use 1-128 characters of A-Z a-z 0-9 - _", segs[i]));
            }
        }
        if method == "GET" && path == "/v1/alarms/stream" {
            let entity = query.iter().find(|(k, _)| *k == "entity").map(|(_, v)| v.to_string()).filter(|e| !e.is_empty());
            let rx = f.hub.subscribe(entity);
            f.m.sse_clients.fetch_add(1, Ordering::Relaxed);
            let f2 = f.clone();
            lara_server::alarms::stream_events(req, rx, move || {
                f2.m.sse_clients.fetch_sub(1, Ordering::Relaxed);
            });
            return;
        }
        if let Some(len) = req.body_length() {
            if len > f.cfg.max_body {
                break 'answer bad(413, format!("request body of {len} bytes exceeds the limit of {} bytes", f.cfg.max_body));
            }
        }
        let mut body = Vec::new();
        if let Err(e) = req.as_reader().take(f.cfg.max_body as u64 + 1).read_to_end(&mut body) {
            break 'answer bad(400, format!("reading the request body: {e}"));
        }
        if body.len() > f.cfg.max_body {
            break 'answer bad(413, format!("request body exceeds the limit of {} bytes", f.cfg.max_body));
        }
        let idem = header(&req, "Idempotency-Key");
        if let Some(k) = &idem {
            if k.is_empty() || k.len() > 200 {
                break 'answer bad(400, "Idempotency-Key: 1-200 characters");
            }
        }
        let content_type = header(&req, "Content-Type").unwrap_or_default();
        route(f, &method, path, &segs, &query, &content_type, &mut body, idem.as_deref())
    };
    if status >= 400 {
        f.m.errors.fetch_add(1, Ordering::Relaxed);
    }
    let mut resp = tiny_http::Response::from_data(out).with_status_code(status);
    for (k, v) in [("Content-Type", ct), ("Cache-Control", "no-store")] {
        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            resp = resp.with_header(h);
        }
    }
    let _ = req.respond(resp);
}

#[allow(clippy::too_many_arguments)]
fn route(
    f: &Front,
    method: &str,
    path: &str,
    segs: &[&str],
    query: &[(&str, &str)],
    content_type: &str,
    body: &mut Vec<u8>,
    idem: Option<&str>,
) -> Answer {
    match (method, segs) {
        ("GET", ["healthz"]) => (200, "text/plain", b"ok\n".to_vec()),
        // The front answers only once it reached the broker and set the streams up.
        ("GET", ["readyz"]) => answer(200, &json!({ "ready": true, "partitions": f.b.partitions })),
        ("GET", ["metrics"]) => (200, "text/plain; version=0.0.4", metrics(f).into_bytes()),
        ("GET", ["v1", "cluster"]) => wrap(f.block(f.b.cluster_view()).map(|v| answer(200, &v))),
        ("PUT", ["v1", "models", id, "file"]) => match f.block(f.b.put_model(id, body)) {
            Ok(cols) => answer(200, &json!({ "id": id, "columns": cols, "bytes": body.len() })),
            Err(e) => {
                let msg = format!("{e:#}");
                bad(if msg.starts_with("storing model") { 503 } else { 400 }, msg)
            }
        },
        ("PUT", ["v1", "entities", id]) => put_entity(f, id, body),
        ("GET", ["v1", "entities", id]) => match f.block(f.b.entity(id)) {
            Ok(Some(s)) => answer(200, &json!({ "id": id, "spec": s, "partition": partition_of(id, f.b.partitions) })),
            Ok(None) => bad(404, format!("no entity {id:?}")),
            Err(e) => bad(503, format!("{e:#}")),
        },
        ("DELETE", ["v1", "entities", id]) => delete_entity(f, id, idem),
        ("POST", ["v1", "entities", id, "points"]) => post_points(f, id, content_type, body, idem),
        ("POST", ["v1", "entities", id, c @ ("adapt" | "rollback")]) => control(f, id, c, idem),
        ("GET", ["v1", "entities", id, which @ ("scores" | "alarms")]) => get_scores(f, id, query, *which == "alarms"),
        ("GET", ["v1", "entities", id, "events"]) => match exists(f, id) {
            Err(a) => a,
            Ok(()) => wrap(f.block(f.b.events(id)).map(|msgs| {
                let events: Vec<Value> =
                    msgs.iter().flat_map(|m| m.events.iter().map(|e| serde_json::to_value(e).unwrap_or_default())).collect();
                answer(200, &json!({ "entity": id, "events": events }))
            })),
        },
        ("GET", ["v1", "alarms"]) => wrap(f.block(f.b.alarms()).map(|a| answer(200, &json!({ "alarms": a })))),
        ("POST", ["api", "v1", "write"]) => remote_write(f, body),
        _ => bad(404, format!("no route {method} {path}")),
    }
}

fn wrap(r: Result<Answer>) -> Answer {
    r.unwrap_or_else(|e| bad(503, format!("{e:#}")))
}

/// 404 unless the entity exists.
fn exists(f: &Front, id: &str) -> Result<(), Answer> {
    match f.block(f.b.entity(id)) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(bad(404, format!("no entity {id:?}"))),
        Err(e) => Err(bad(503, format!("{e:#}"))),
    }
}

fn get_scores(f: &Front, id: &str, query: &[(&str, &str)], only_alarms: bool) -> Answer {
    if let Err(a) = exists(f, id) {
        return a;
    }
    let (from, to, limit) = match (q_num(query, "from"), q_num(query, "to"), q_num(query, "limit")) {
        (Ok(a), Ok(b), Ok(c)) => (a.unwrap_or(0), b.unwrap_or(u64::MAX), c.unwrap_or(1_000_000) as usize),
        (Err(a), _, _) | (_, Err(a), _) | (_, _, Err(a)) => return a,
    };
    wrap(f.block(f.b.scores(id)).map(|rows| {
        let rows: Vec<Value> = rows
            .into_iter()
            .filter(|r| r["row"].as_u64().is_some_and(|x| x >= from && x <= to))
            .filter(|r| !only_alarms || r["is_anomaly"].as_bool() == Some(true))
            .take(limit)
            .collect();
        answer(200, &json!({ "entity": id, if only_alarms { "alarms" } else { "scores" }: rows }))
    }))
}

fn put_entity(f: &Front, id: &str, body: &[u8]) -> Answer {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return bad(400, format!("body: not JSON ({e})")),
    };
    let (model, cold) = match (v["model"].as_str(), v["base"].as_str()) {
        (Some(m), None) => (m.to_string(), false),
        (None, Some(b)) => (b.to_string(), true),
        _ => return bad(400, "body: give exactly one of \"model\" or \"base\" (a model id)"),
    };
    let policy = match &v["policy"] {
        Value::Null => "adapt".to_string(),
        Value::String(s) => s.clone(),
        _ => return bad(400, "body: \"policy\" must be a string (static, adapt or adapt+retrain)"),
    };
    let slots = match &v["slots"] {
        Value::Null => 40,
        x => match x.as_u64() {
            Some(n) => n as usize,
            None => return bad(400, "body: \"slots\" must be a positive integer"),
        },
    };
    let spec = EntitySpec { model, cold_start: cold, policy, slots };
    match f.block(f.b.create_entity(id, &spec)) {
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

/// The columns of an entity's model (None: no such entity); cached.
fn columns(f: &Front, id: &str) -> Result<Option<Arc<Vec<String>>>> {
    if let Some(c) = f.columns.lock().expect("columns").get(id) {
        return Ok(Some(c.clone()));
    }
    let Some(spec) = f.block(f.b.entity(id))? else { return Ok(None) };
    let cols = f.block(f.b.model_columns(&spec.model))?.ok_or_else(|| anyhow!("no model {:?}", spec.model))?;
    let cols = Arc::new(cols);
    f.columns.lock().expect("columns").insert(id.to_string(), cols.clone());
    Ok(Some(cols))
}

/// Publishes a points message and counts it.
fn publish(f: &Front, id: &str, msg: &PointsMsg, msg_id: Option<&str>) -> Result<(u64, bool)> {
    let t = std::time::Instant::now();
    let (seq, dup) = f.block(f.b.publish_msg(id, msg, msg_id))?;
    f.m.publish_us.fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
    f.m.publishes.fetch_add(1, Ordering::Relaxed);
    if dup {
        f.m.duplicates.fetch_add(1, Ordering::Relaxed);
    } else {
        f.m.rows.fetch_add(msg.rows.len() as u64, Ordering::Relaxed);
    }
    Ok((seq, dup))
}

/// `POST /v1/entities/{id}/points`: the single node's body (JSON rows with optional
/// timestamps, or CSV), parsed by its parser; 202 once the broker stored the message.
fn post_points(f: &Front, id: &str, content_type: &str, body: &mut Vec<u8>, idem: Option<&str>) -> Answer {
    let cols = match columns(f, id) {
        Ok(Some(c)) => c,
        Ok(None) => return bad(404, format!("no entity {id:?}")),
        Err(e) => return bad(503, format!("{e:#}")),
    };
    let req = lara_server::api::Req {
        method: "POST".into(),
        path: format!("/v1/entities/{id}/points"),
        query: Vec::new(),
        params: vec![id.to_string()],
        content_type: content_type.to_ascii_lowercase(),
        body: std::mem::take(body),
    };
    let (rows, timestamps) = match lara_server::parse_points(&req, &cols) {
        Ok(x) => x,
        Err(a) => return (a.status, a.content_type, a.body),
    };
    if rows.is_empty() {
        return bad(400, "body: no rows");
    }
    if rows.len() > f.cfg.max_rows {
        return bad(413, format!("body: {} rows, more than the limit of {} per request", rows.len(), f.cfg.max_rows));
    }
    if let Some(i) = rows.iter().position(|r| r.iter().any(|v| !v.is_finite())) {
        return bad(400, format!("rows[{i}]: a value is not a finite 32-bit number"));
    }
    let n = rows.len();
    match publish(f, id, &PointsMsg { rows, timestamps, control: None }, idem) {
        Ok((seq, dup)) => answer(202, &json!({ "seq": seq, "duplicate": dup, "rows": n })),
        Err(e) => bad(503, format!("publish: {e:#}")),
    }
}

/// `POST /v1/entities/{id}/adapt|rollback`.
fn control(f: &Front, id: &str, which: &str, idem: Option<&str>) -> Answer {
    if let Err(a) = exists(f, id) {
        return a;
    }
    f.m.controls.fetch_add(1, Ordering::Relaxed);
    match f.block(f.b.control(id, which, idem, f.cfg.control_timeout)) {
        Ok((seq, Some(a))) => match a.error {
            Some(e) => answer(409, &json!({ "error": e, "seq": seq })),
            None => answer(
                200,
                &json!({
                    "entity": { "id": id, "state": a.state, "model_version": a.model_version, "rows": a.rows },
                    "events": a.events,
                    "seq": seq,
                }),
            ),
        },
        Ok((seq, None)) => answer(
            202,
            &json!({
                "seq": seq,
                "status": "queued",
                "detail": format!("no worker answered within {:?}; the control is stored and applied when a worker owns the entity's partition (see GET /v1/entities/{id}/events)", f.cfg.control_timeout),
            }),
        ),
        Err(e) => bad(503, format!("{e:#}")),
    }
}

/// `DELETE /v1/entities/{id}`: the `delete` control, then the cluster's copies.
fn delete_entity(f: &Front, id: &str, idem: Option<&str>) -> Answer {
    if let Err(a) = exists(f, id) {
        return a;
    }
    f.m.controls.fetch_add(1, Ordering::Relaxed);
    match f.block(f.b.control(id, "delete", idem, f.cfg.control_timeout)) {
        Ok((seq, Some(_))) => {
            if let Err(e) = f.block(f.b.remove_entity(id, seq)) {
                return bad(503, format!("{e:#}"));
            }
            f.columns.lock().expect("columns").remove(id);
            f.rw.lock().expect("remote-write state").remove(id);
            (204, "application/json", Vec::new())
        }
        Ok((seq, None)) => bad(
            503,
            format!("no worker dropped the entity within {:?} (delete control at sequence {seq}); retry", f.cfg.control_timeout),
        ),
        Err(e) => bad(503, format!("{e:#}")),
    }
}

/// `POST /api/v1/write`: the single node's decoding and mapping; each entity's ready rows
/// become one points message with their timestamps (ms), `Nats-Msg-Id` =
/// `rw:<entity>:<first timestamp>:<rows>` (a retried request is stored once). 204; 400 for a
/// malformed body (Prometheus does not retry it); 503 when the broker fails (it retries).
fn remote_write(f: &Front, body: &[u8]) -> Answer {
    let series = match decode(body) {
        Ok(x) => x,
        Err(e) => return bad(400, e.to_string()),
    };
    let cfg = &f.cfg.remote_write;
    let g = group(&series, &cfg.entity_label, &cfg.column_label);
    let total: usize = series.iter().map(|x| x.samples.len()).sum();
    f.m.remote_write_samples.fetch_add(total as u64, Ordering::Relaxed);
    let mut dropped = g.unlabelled;
    let mut state = f.rw.lock().expect("remote-write state");
    let mut result = (204, "text/plain", Vec::new());
    for (name, samples) in g.entities {
        let n_samples: usize = samples.values().map(|c| c.len()).sum();
        if !valid_id(&name) {
            dropped += n_samples;
            continue;
        }
        let cols = match columns(f, &name) {
            Ok(Some(c)) => c,
            Ok(None) => {
                let Some(base) = &cfg.create_on_base else {
                    dropped += n_samples;
                    continue;
                };
                let spec = EntitySpec { model: base.clone(), cold_start: true, policy: "adapt".into(), slots: 40 };
                if let Err(e) = f.block(f.b.create_entity(&name, &spec)) {
                    // Another spec under that name: its own columns decide below.
                    tracing::debug!(entity = name, "remote-write create: {e:#}");
                }
                match columns(f, &name) {
                    Ok(Some(c)) => c,
                    Ok(None) => {
                        dropped += n_samples;
                        continue;
                    }
                    Err(e) => {
                        result = bad(503, format!("{e:#}"));
                        break;
                    }
                }
            }
            Err(e) => {
                result = bad(503, format!("{e:#}"));
                break;
            }
        };
        if !state.contains_key(&name) {
            // The last timestamp published for the entity (by any front), while its last
            // points message is still in the stream.
            let subject = points_subject(partition_of(&name, f.b.partitions), &name);
            let last_ts = match f.block(f.b.last_on(&f.b.points, &subject)) {
                Ok(Some(m)) => serde_json::from_slice::<PointsMsg>(&m.payload)
                    .ok()
                    .and_then(|p| p.timestamps.and_then(|t| t.last().and_then(|x| x.parse().ok()))),
                Ok(None) => None,
                Err(e) => {
                    result = bad(503, format!("{e:#}"));
                    break;
                }
            };
            state.insert(name.clone(), RwEntity { pending: Pending::default(), last_ts });
        }
        let ent = state.get_mut(&name).expect("inserted");
        let known: usize = samples.values().map(|c| c.keys().filter(|k| cols.contains(k)).count()).sum();
        dropped += n_samples - known;
        let ready = ent.pending.add(samples, &cols, ent.last_ts);
        dropped += ready.late + ready.non_finite + ready.given_up * cols.len();
        if ready.rows.is_empty() {
            continue;
        }
        let (first, last, n) = (ready.timestamps[0], *ready.timestamps.last().expect("rows"), ready.rows.len());
        let ts = ready.timestamps.iter().map(|t| t.to_string()).collect();
        let msg = PointsMsg { rows: ready.rows, timestamps: Some(ts), control: None };
        match publish(f, &name, &msg, Some(&format!("rw:{name}:{first}:{n}"))) {
            Ok(_) => ent.last_ts = Some(last),
            // Not acknowledged: Prometheus retries the request (its rows are still after
            // last_ts, so they are taken again).
            Err(e) => {
                result = bad(503, format!("publish: {e:#}"));
                break;
            }
        }
    }
    f.m.remote_write_dropped.fetch_add(dropped as u64, Ordering::Relaxed);
    result
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
        ("lara_front_controls_total", "counter", g(&f.m.controls) as f64, "operator controls requested (adapt, rollback, delete)"),
        ("lara_front_sse_clients", "gauge", g(&f.m.sse_clients) as f64, "live Server-Sent Events clients"),
        ("lara_front_remote_write_samples_total", "counter", g(&f.m.remote_write_samples) as f64, "remote-write samples received"),
        ("lara_front_remote_write_dropped_total", "counter", g(&f.m.remote_write_dropped) as f64, "remote-write samples dropped (unlabelled, unknown entity or column, late, non-finite, or rows given up incomplete)"),
    ] {
        s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"));
    }
    s
}
