//! Routes, handlers and the OpenAPI document built from the same route table.

use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use lara_stream::{model_fingerprint, Monitor, MonitorConfig, Policy, Scored};
use lara_vae::{Detector, FitOptions};
use serde_json::{json, Value};
use tiny_http::{Header, Request, Response};

use crate::store::IngestWrite;
use crate::{Entity, EntityInfo, Job, LoadedModel, ModelInfo, Service};

/// One route: method, path pattern (`{id}` matches one segment), summary, body and answer.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    /// Request body content type and description (empty: none).
    pub body: &'static str,
    pub answer: &'static str,
    pub handler: fn(&Arc<Service>, &mut Req) -> Answer,
}

/// The service's routes: dispatch and the OpenAPI document both read this table.
pub const ROUTES: &[Route] = &[
    Route { method: "GET", path: "/v1/openapi.json", summary: "This OpenAPI document", body: "", answer: "application/json", handler: openapi },
    Route { method: "GET", path: "/metrics", summary: "Prometheus metrics (text exposition format)", body: "", answer: "text/plain", handler: metrics },
    Route { method: "GET", path: "/v1/models", summary: "List models", body: "", answer: "application/json: {models: [ModelInfo]}", handler: list_models },
    Route { method: "POST", path: "/v1/models", summary: "Train a model from a CSV body (query: name, train_end, window, seed); asynchronous: 202 + {job}", body: "text/csv: the CLI's CSV format", answer: "application/json: {job}", handler: train_model },
    Route { method: "GET", path: "/v1/jobs/{id}", summary: "A training job: status, progress and, when done, the model id", body: "", answer: "application/json: Job", handler: get_job },
    Route { method: "GET", path: "/v1/models/{id}", summary: "One model", body: "", answer: "application/json: ModelInfo", handler: get_model },
    Route { method: "DELETE", path: "/v1/models/{id}", summary: "Delete a model no entity uses", body: "", answer: "204", handler: delete_model },
    Route { method: "GET", path: "/v1/models/{id}/file", summary: "The .lara file (the bytes `lara train` writes)", body: "", answer: "application/octet-stream", handler: get_model_file },
    Route { method: "PUT", path: "/v1/models/{id}/file", summary: "Upload a .lara file", body: "application/octet-stream: a .lara file", answer: "application/json: ModelInfo", handler: put_model_file },
    Route { method: "GET", path: "/v1/entities", summary: "List entities with state, model version and last alarm", body: "", answer: "application/json: {entities: [Entity]}", handler: list_entities },
    Route { method: "PUT", path: "/v1/entities/{id}", summary: "Create an entity: {\"model\": id} or {\"base\": id} (LARA cold start from `slots` rows), optional \"policy\" (static|adapt|adapt+retrain), \"slots\"", body: "application/json", answer: "application/json: Entity", handler: put_entity },
    Route { method: "GET", path: "/v1/entities/{id}", summary: "One entity", body: "", answer: "application/json: Entity", handler: get_entity },
    Route { method: "DELETE", path: "/v1/entities/{id}", summary: "Delete an entity with its results and events", body: "", answer: "204", handler: delete_entity },
    Route { method: "POST", path: "/v1/entities/{id}/points", summary: "Ingest rows in time order and score them: {\"rows\": [[..]], \"timestamps\": [..]} or a CSV with the model's columns (+ timestamp)", body: "application/json or text/csv", answer: "application/json: {results: [Scored]}", handler: post_points },
    Route { method: "GET", path: "/v1/entities/{id}/scores", summary: "Stored results of rows [from, to] (query: from, to, limit)", body: "", answer: "application/json: {results: [Scored]}", handler: get_scores },
    Route { method: "GET", path: "/v1/entities/{id}/alarms", summary: "Stored results with is_anomaly (query: from, to, limit)", body: "", answer: "application/json: {alarms: [Scored]}", handler: get_alarms },
    Route { method: "GET", path: "/v1/entities/{id}/events", summary: "The monitor's decisions with their evidence", body: "", answer: "application/json: {events: [Event]}", handler: get_events },
    Route { method: "POST", path: "/v1/entities/{id}/adapt", summary: "Adapt now on the newest rows (re-selects a stored pattern that explains them, else LARA); validated on the next rows", body: "", answer: "application/json: {entity, events}", handler: post_adapt },
    Route { method: "POST", path: "/v1/entities/{id}/rollback", summary: "Return to the pattern the latest switch replaced", body: "", answer: "application/json: {entity, events}", handler: post_rollback },
    Route { method: "GET", path: "/v1/entities/{id}/versions", summary: "The pattern scoring now (first) and the stored ones it can return to", body: "", answer: "application/json: {current, versions}", handler: get_versions },
];

/// A parsed request.
pub struct Req {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub params: Vec<String>,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Req {
    fn q(&self, k: &str) -> Option<&str> {
        self.query.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
    }
    fn q_num<T: std::str::FromStr>(&self, k: &str) -> Result<Option<T>, Answer> {
        match self.q(k) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| bad(400, format!("query parameter {k}={v:?} is not a number"))),
        }
    }
}

/// An answer: status, content type, body.
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

fn ok_json(status: u16, v: &Value) -> Answer {
    Answer { status, content_type: "application/json", body: serde_json::to_vec(v).unwrap_or_default() }
}

fn bad(status: u16, msg: impl Into<String>) -> Answer {
    ok_json(status, &json!({ "error": msg.into() }))
}

fn valid_id(id: &str) -> Result<(), Answer> {
    if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) {
        return Err(bad(400, format!("invalid id {id:?}: use 1-128 characters of A-Z a-z 0-9 - _ . :")));
    }
    Ok(())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn matches(pattern: &str, path: &str) -> Option<Vec<String>> {
    let (p, q): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    if p.len() != q.len() {
        return None;
    }
    let mut params = Vec::new();
    for (a, b) in p.iter().zip(&q) {
        if *a == "{id}" {
            params.push(percent_decode(b));
        } else if a != b {
            return None;
        }
    }
    Some(params)
}

/// Handles one request (never panics on bad input).
pub fn handle(service: &Arc<Service>, mut request: Request) {
    service.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let answer = route(service, &mut request);
    if answer.status >= 400 {
        service.metrics.errors.fetch_add(1, Ordering::Relaxed);
    }
    let mut resp = Response::from_data(answer.body).with_status_code(answer.status);
    if let Ok(h) = Header::from_bytes("Content-Type", answer.content_type) {
        resp = resp.with_header(h);
    }
    let _ = request.respond(resp);
}

/// The value of header `name` ("" when absent).
fn header(request: &Request, name: &'static str) -> String {
    request.headers().iter().find(|h| h.field.equiv(name)).map(|h| h.value.as_str().to_string()).unwrap_or_default()
}

fn route(service: &Arc<Service>, request: &mut Request) -> Answer {
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let query: Vec<(String, String)> = query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    if let Some(t) = &service.token {
        if header(request, "Authorization") != format!("Bearer {t}") {
            return bad(401, "missing or wrong bearer token (Authorization: Bearer <token>)");
        }
    }
    let method = request.method().as_str().to_string();
    let mut found_path = false;
    for r in ROUTES {
        let Some(params) = matches(r.path, path) else { continue };
        found_path = true;
        if r.method != method {
            continue;
        }
        let content_type = header(request, "Content-Type").to_ascii_lowercase();
        if let Some(len) = request.body_length() {
            if len > service.max_body {
                return bad(
                    413,
                    format!("request body of {len} bytes exceeds the limit of {} bytes", service.max_body),
                );
            }
        }
        let mut body = Vec::new();
        let limit = service.max_body as u64 + 1;
        if let Err(e) = request.as_reader().take(limit).read_to_end(&mut body) {
            return bad(400, format!("reading the request body: {e}"));
        }
        if body.len() > service.max_body {
            return bad(413, format!("request body exceeds the limit of {} bytes", service.max_body));
        }
        for p in &params {
            if let Err(a) = valid_id(p) {
                return a;
            }
        }
        let mut req = Req { method, path: path.to_string(), query, params, content_type, body };
        return (r.handler)(service, &mut req);
    }
    if found_path {
        bad(405, format!("method {method} is not allowed on {path}"))
    } else {
        bad(404, format!("no route {path} (see /v1/openapi.json)"))
    }
}

// ----------------------------------------------------------------------------------
// OpenAPI and metrics

fn openapi(_: &Arc<Service>, _: &mut Req) -> Answer {
    ok_json(200, &openapi_document())
}

/// The OpenAPI 3.0 document of [`ROUTES`].
pub fn openapi_document() -> Value {
    let mut paths = serde_json::Map::new();
    for r in ROUTES {
        let entry = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        let mut op = json!({
            "summary": r.summary,
            "operationId": format!("{}{}", r.method.to_ascii_lowercase(), r.path.replace(['/', '{', '}', '.'], "_")),
            "responses": {
                "200": { "description": r.answer },
                "4XX": { "description": "{\"error\": message}" },
            },
        });
        if r.path.contains("{id}") {
            op["parameters"] =
                json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }]);
        }
        if !r.body.is_empty() {
            let ct = r.body.split(':').next().unwrap_or("application/octet-stream").split(" or ").next().unwrap_or("");
            op["requestBody"] = json!({ "description": r.body, "content": { ct: { "schema": {} } } });
        }
        entry[r.method.to_ascii_lowercase()] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": { "title": "lara", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Anomaly detection on multivariate time series: entities, streaming ingest, automatic adaptation (LARA)." },
        "components": { "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } } },
        "security": [{ "bearer": [] }],
        "paths": paths,
    })
}

fn metrics(s: &Arc<Service>, _: &mut Req) -> Answer {
    let m = &s.metrics;
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, v: u64| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"));
    };
    counter("lara_http_requests_total", "HTTP requests handled.", m.requests.load(Ordering::Relaxed));
    counter(
        "lara_http_errors_total",
        "HTTP requests answered with a 4xx or 5xx status.",
        m.errors.load(Ordering::Relaxed),
    );
    counter("lara_rows_ingested_total", "Rows scored.", m.rows.load(Ordering::Relaxed));
    counter("lara_alarms_total", "Rows scored as anomalous.", m.alarms.load(Ordering::Relaxed));
    counter(
        "lara_adaptations_total",
        "Adaptations and re-selections decided by the monitors.",
        m.adaptations.load(Ordering::Relaxed),
    );
    let ents = s.entities.read().expect("entities lock");
    let mut by_state: std::collections::BTreeMap<&str, u64> = Default::default();
    for st in ["warmup", "normal", "suspect", "collecting", "adapted"] {
        by_state.insert(st, 0);
    }
    for e in ents.values() {
        *by_state.entry(e.lock().expect("entity lock").monitor.state().as_str()).or_default() += 1;
    }
    out.push_str("# HELP lara_entities Entities by monitor state.\n# TYPE lara_entities gauge\n");
    for (k, v) in by_state {
        out.push_str(&format!("lara_entities{{state=\"{k}\"}} {v}\n"));
    }
    drop(ents);
    let n_models = s.models.lock().expect("models lock").len();
    out.push_str(&format!("# HELP lara_models Models stored.\n# TYPE lara_models gauge\nlara_models {n_models}\n"));
    Answer { status: 200, content_type: "text/plain; version=0.0.4", body: out.into_bytes() }
}

// ----------------------------------------------------------------------------------
// Models

/// The description of a model.
pub fn model_info(id: &str, det: &Detector, bytes: &[u8]) -> ModelInfo {
    ModelInfo {
        id: id.to_string(),
        columns: det.meta.columns.clone(),
        window: det.meta.options.window,
        train_rows: det.meta.train_rows,
        bytes: bytes.len(),
        // The fingerprint entity snapshots record for their shared base model.
        sha256: model_fingerprint(det).unwrap_or_default(),
        adapted: det.meta.adaptation.is_some(),
    }
}

fn list_models(s: &Arc<Service>, _: &mut Req) -> Answer {
    let models = s.models.lock().expect("models lock");
    let mut v: Vec<&ModelInfo> = models.values().map(|m| &m.info).collect();
    v.sort_by(|a, b| a.id.cmp(&b.id));
    ok_json(200, &json!({ "models": v }))
}

fn get_model(s: &Arc<Service>, r: &mut Req) -> Answer {
    match s.models.lock().expect("models lock").get(&r.params[0]) {
        Some(m) => ok_json(200, &json!(m.info)),
        None => bad(404, format!("no model {:?}", r.params[0])),
    }
}

fn get_model_file(s: &Arc<Service>, r: &mut Req) -> Answer {
    match s.store.model(&r.params[0]) {
        Ok(Some(b)) => Answer { status: 200, content_type: "application/octet-stream", body: b },
        Ok(None) => bad(404, format!("no model {:?}", r.params[0])),
        Err(e) => bad(500, e.to_string()),
    }
}

fn install_model(s: &Service, id: &str, det: Detector, bytes: &[u8]) -> Answer {
    let info = model_info(id, &det, bytes);
    let meta = serde_json::to_vec(&info).unwrap_or_default();
    if let Err(e) = s.store.put_model(id, bytes, &meta) {
        return bad(500, e.to_string());
    }
    s.models
        .lock()
        .expect("models lock")
        .insert(id.to_string(), LoadedModel { det: Arc::new(det), info: info.clone() });
    ok_json(200, &json!(info))
}

fn put_model_file(s: &Arc<Service>, r: &mut Req) -> Answer {
    let id = r.params[0].clone();
    if s.models.lock().expect("models lock").contains_key(&id) {
        return bad(409, format!("model {id:?} exists; delete it first (entities keep their model)"));
    }
    let det = match Detector::from_bytes(std::path::Path::new(&id), &r.body) {
        Ok(d) => d,
        Err(e) => return bad(422, format!("not a usable .lara file: {e}")),
    };
    if det.meta.online.is_none() {
        return bad(422, "the model has no online calibration (trained by an older lara); retrain it");
    }
    let body = std::mem::take(&mut r.body);
    install_model(s, &id, det, &body)
}

fn delete_model(s: &Arc<Service>, r: &mut Req) -> Answer {
    let id = &r.params[0];
    let user = s.entities.read().expect("entities lock").values().find_map(|e| {
        let e = e.lock().expect("entity lock");
        (&e.info.model == id).then(|| e.info.id.clone())
    });
    if let Some(u) = user {
        return bad(409, format!("model {id:?} is used by entity {u:?}"));
    }
    if s.models.lock().expect("models lock").remove(id).is_none() {
        return bad(404, format!("no model {id:?}"));
    }
    match s.store.delete_model(id) {
        Ok(()) => Answer { status: 204, content_type: "application/json", body: Vec::new() },
        Err(e) => bad(500, e.to_string()),
    }
}

fn train_model(s: &Arc<Service>, r: &mut Req) -> Answer {
    let name = r.q("name").map(str::to_string);
    if let Some(n) = &name {
        if let Err(a) = valid_id(n) {
            return a;
        }
        if s.models.lock().expect("models lock").contains_key(n) {
            return bad(409, format!("model {n:?} exists"));
        }
    }
    let train_end: Option<usize> = match r.q_num("train_end") {
        Ok(v) => v,
        Err(a) => return a,
    };
    let window: Option<usize> = match r.q_num("window") {
        Ok(v) => v,
        Err(a) => return a,
    };
    let seed: Option<u64> = match r.q_num("seed") {
        Ok(v) => v,
        Err(a) => return a,
    };
    let opts = lara_core::CsvOptions { train_end, ..Default::default() };
    let series = match lara_core::read_csv_bytes("request body", &r.body, &opts) {
        Ok(s) => s,
        Err(e) => return bad(400, e.to_string()),
    };
    let mut fit = FitOptions::default();
    if let Some(w) = window {
        fit.window = w;
    }
    if let Some(seed) = seed {
        fit.train.seed = seed;
    }
    let job_id = s.fresh_id("job");
    let model_id = name.unwrap_or_else(|| s.fresh_id("model"));
    s.jobs.lock().expect("jobs lock").insert(
        job_id.clone(),
        Job { id: job_id.clone(), status: "running".into(), progress: 0.0, model: None, error: None },
    );
    let service = s.clone();
    let jid = job_id.clone();
    std::thread::spawn(move || {
        let mut total = 1usize;
        let mut done = 0usize;
        let result = Detector::fit(&series, &fit, &mut |p| match p {
            lara_vae::Progress::Start { epochs, steps_per_epoch, max_steps } => {
                total = (epochs * steps_per_epoch).min(if max_steps > 0 { max_steps } else { usize::MAX }).max(1);
            }
            lara_vae::Progress::Step { .. } => {
                done += 1;
                if let Some(j) = service.jobs.lock().expect("jobs lock").get_mut(&jid) {
                    j.progress = (done as f64 / total as f64).min(0.99);
                }
            }
            _ => {}
        });
        let outcome = result.map_err(|e| e.to_string()).and_then(|det| {
            let bytes = det.to_bytes().map_err(|e| e.to_string())?;
            let a = install_model(&service, &model_id, det, &bytes);
            if a.status == 200 {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&a.body).into_owned())
            }
        });
        if let Some(j) = service.jobs.lock().expect("jobs lock").get_mut(&jid) {
            match outcome {
                Ok(()) => {
                    j.status = "done".into();
                    j.progress = 1.0;
                    j.model = Some(model_id);
                }
                Err(e) => {
                    j.status = "failed".into();
                    j.error = Some(e);
                }
            }
        }
    });
    ok_json(202, &json!({ "job": job_id }))
}

fn get_job(s: &Arc<Service>, r: &mut Req) -> Answer {
    match s.jobs.lock().expect("jobs lock").get(&r.params[0]) {
        Some(j) => ok_json(200, &json!(j)),
        None => bad(404, format!("no job {:?}", r.params[0])),
    }
}

// ----------------------------------------------------------------------------------
// Entities

/// The live entity `id` (its own lock: ingests of different entities run in parallel).
fn entity(s: &Service, id: &str) -> Option<Arc<Mutex<Entity>>> {
    s.entities.read().expect("entities lock").get(id).cloned()
}

fn entity_json(e: &Entity) -> Value {
    json!({
        "id": e.info.id,
        "model": e.info.model,
        "state": e.monitor.state(),
        "model_version": e.monitor.version(),
        "rows": e.info.rows,
        "alarms": e.info.alarms,
        "last_alarm_row": e.info.last_alarm_row,
        "last_timestamp": e.info.last_timestamp,
        "policy": e.info.policy,
        "slots": e.info.slots,
        "cold_start": e.info.cold_start,
        "events": e.info.events,
    })
}

fn list_entities(s: &Arc<Service>, _: &mut Req) -> Answer {
    let all: Vec<Arc<Mutex<Entity>>> = s.entities.read().expect("entities lock").values().cloned().collect();
    let mut v: Vec<Value> = all.iter().map(|e| entity_json(&e.lock().expect("entity lock"))).collect();
    v.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    ok_json(200, &json!({ "entities": v }))
}

fn get_entity(s: &Arc<Service>, r: &mut Req) -> Answer {
    match entity(s, &r.params[0]) {
        Some(e) => ok_json(200, &entity_json(&e.lock().expect("entity lock"))),
        None => bad(404, format!("no entity {:?}", r.params[0])),
    }
}

fn put_entity(s: &Arc<Service>, r: &mut Req) -> Answer {
    let id = r.params[0].clone();
    let v: Value = match serde_json::from_slice(&r.body) {
        Ok(v) => v,
        Err(e) => return bad(400, format!("body: not JSON ({e})")),
    };
    let known = ["model", "base", "policy", "slots"];
    if let Some(k) = v.as_object().and_then(|o| o.keys().find(|k| !known.contains(&k.as_str()))) {
        return bad(400, format!("body: unknown field {k:?} (expected model or base, policy, slots)"));
    }
    let (model, cold) = match (v["model"].as_str(), v["base"].as_str()) {
        (Some(m), None) => (m.to_string(), false),
        (None, Some(b)) => (b.to_string(), true),
        _ => return bad(400, "body: give exactly one of \"model\" or \"base\" (a model id)"),
    };
    let policy: Policy = match v["policy"].as_str().unwrap_or("adapt").parse() {
        Ok(p) => p,
        Err(e) => return bad(400, format!("body: policy: {e}")),
    };
    let slots = match &v["slots"] {
        Value::Null => 40,
        x => match x.as_u64() {
            Some(k) if k > 0 && k <= 100_000 => k as usize,
            _ => return bad(400, "body: slots must be a positive integer"),
        },
    };
    // The fingerprint was computed once when the model was installed.
    let (base, fingerprint) = match s.models.lock().expect("models lock").get(&model) {
        Some(m) => (m.det.clone(), m.info.sha256.clone()),
        None => return bad(404, format!("no model {model:?}")),
    };
    let mut ents = s.entities.write().expect("entities lock");
    if ents.contains_key(&id) {
        return bad(409, format!("entity {id:?} exists; delete it first"));
    }
    let cfg = MonitorConfig { policy, slots, cold_start: cold, ..MonitorConfig::default() };
    let monitor = match Monitor::new_shared(base, fingerprint, cfg) {
        Ok(m) => m,
        Err(e) => return bad(422, e.to_string()),
    };
    let info = EntityInfo {
        id: id.clone(),
        model,
        cold_start: cold,
        policy: policy.to_string(),
        slots,
        rows: 0,
        alarms: 0,
        last_alarm_row: None,
        last_timestamp: None,
        events: 0,
    };
    let snap = match monitor.snapshot() {
        Ok(b) => b,
        Err(e) => return bad(500, e.to_string()),
    };
    if let Err(e) = s.store.put_entity(&id, &serde_json::to_vec(&info).unwrap_or_default(), &snap) {
        return bad(500, e.to_string());
    }
    let e = Entity { info, monitor };
    let answer = ok_json(201, &entity_json(&e));
    ents.insert(id, Arc::new(Mutex::new(e)));
    answer
}

fn delete_entity(s: &Arc<Service>, r: &mut Req) -> Answer {
    let id = &r.params[0];
    let mut ents = s.entities.write().expect("entities lock");
    if !ents.contains_key(id) {
        return bad(404, format!("no entity {id:?}"));
    }
    if let Err(e) = s.store.delete_entity(id) {
        return bad(500, e.to_string());
    }
    ents.remove(id);
    Answer { status: 204, content_type: "application/json", body: Vec::new() }
}

/// Rows and optional timestamps of an ingest body.
type Points = (Vec<Vec<f32>>, Option<Vec<String>>);

fn parse_points(r: &Req, columns: &[String]) -> Result<Points, Answer> {
    if r.content_type.starts_with("text/csv") {
        let mut rd = csv::ReaderBuilder::new().flexible(false).from_reader(r.body.as_slice());
        let header: Vec<String> = rd
            .headers()
            .map_err(|e| bad(400, format!("CSV header: {e}")))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        let mut idx = vec![usize::MAX; columns.len()];
        let mut ts_col = None;
        for (j, h) in header.iter().enumerate() {
            if h == "timestamp" {
                ts_col = Some(j);
            } else if let Some(k) = columns.iter().position(|c| c == h) {
                idx[k] = j;
            } else {
                return Err(bad(
                    400,
                    format!("CSV header: unknown column {h:?} (the model's columns: {})", columns.join(", ")),
                ));
            }
        }
        if let Some(k) = idx.iter().position(|&j| j == usize::MAX) {
            return Err(bad(400, format!("CSV header: missing column {:?}", columns[k])));
        }
        let mut rows = Vec::new();
        let mut ts = Vec::new();
        for (i, rec) in rd.records().enumerate() {
            let line = i + 2;
            let rec = rec.map_err(|e| bad(400, format!("CSV line {line}: {e}")))?;
            let mut row = Vec::with_capacity(columns.len());
            for (k, &j) in idx.iter().enumerate() {
                let cell = rec.get(j).unwrap_or("").trim();
                let v: f32 = cell.parse().map_err(|_| {
                    bad(400, format!("CSV line {line}, column {:?}: {cell:?} is not a number", columns[k]))
                })?;
                if !v.is_finite() {
                    return Err(bad(400, format!("CSV line {line}, column {:?}: {cell:?} is not finite", columns[k])));
                }
                row.push(v);
            }
            rows.push(row);
            if let Some(j) = ts_col {
                ts.push(rec.get(j).unwrap_or("").trim().to_string());
            }
        }
        return Ok((rows, ts_col.map(|_| ts)));
    }
    let v: Value = serde_json::from_slice(&r.body)
        .map_err(|e| bad(400, format!("body: not JSON ({e}); send JSON or text/csv")))?;
    let arr = v["rows"].as_array().ok_or_else(|| bad(400, "body: \"rows\" must be an array of rows"))?;
    let mut rows = Vec::with_capacity(arr.len());
    for (i, row) in arr.iter().enumerate() {
        let cells = row.as_array().ok_or_else(|| bad(400, format!("rows[{i}]: not an array")))?;
        if cells.len() != columns.len() {
            return Err(bad(
                400,
                format!("rows[{i}]: {} values, the model has {} columns", cells.len(), columns.len()),
            ));
        }
        let mut out = Vec::with_capacity(cells.len());
        for (k, c) in cells.iter().enumerate() {
            let x = c
                .as_f64()
                .ok_or_else(|| bad(400, format!("rows[{i}], column {:?}: {c} is not a number", columns[k])))?;
            out.push(x as f32);
        }
        rows.push(out);
    }
    let ts = match &v["timestamps"] {
        Value::Null => None,
        Value::Array(a) => {
            if a.len() != rows.len() {
                return Err(bad(400, format!("timestamps: {} values for {} rows", a.len(), rows.len())));
            }
            Some(a.iter().map(|t| t.as_str().map(str::to_string).unwrap_or_else(|| t.to_string())).collect())
        }
        _ => return Err(bad(400, "timestamps: must be an array")),
    };
    Ok((rows, ts))
}

/// Strictly later: numerically when both are numbers, else as text (ISO 8601 sorts).
fn later(a: &str, b: &str) -> bool {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x > y,
        _ => a > b,
    }
}

fn post_points(s: &Arc<Service>, r: &mut Req) -> Answer {
    let id = r.params[0].clone();
    let Some(shared) = entity(s, &id) else { return bad(404, format!("no entity {id:?}")) };
    let mut guard = shared.lock().expect("entity lock");
    let ent = &mut *guard;
    let columns = ent.monitor.columns().to_vec();
    let (rows, ts) = match parse_points(r, &columns) {
        Ok(x) => x,
        Err(a) => return a,
    };
    if rows.is_empty() {
        return bad(400, "no rows");
    }
    // Time order: every timestamp strictly after the previous one (409 otherwise).
    if let Some(ts) = &ts {
        let mut prev = ent.info.last_timestamp.clone();
        for (i, t) in ts.iter().enumerate() {
            if let Some(p) = &prev {
                if !later(t, p) {
                    return bad(409, format!("row {}: timestamp {t:?} is not after {p:?} (rows must arrive in time order, without duplicates)", i + 1));
                }
            }
            prev = Some(t.clone());
        }
    }
    // Score on a copy; it replaces the live monitor only once the store has committed.
    let mut mon = ent.monitor.clone();
    let results = match mon.push(&rows) {
        Ok(r) => r,
        Err(e) => return bad(400, e.to_string()),
    };
    let events = mon.drain_events();
    let mut info = ent.info.clone();
    let out: Vec<Value> =
        results.iter().enumerate().map(|(i, sc)| scored_json(sc, ts.as_ref().map(|t| t[i].as_str()))).collect();
    let alarms = results.iter().filter(|x| x.is_anomaly).count() as u64;
    info.rows += results.len() as u64;
    info.alarms += alarms;
    if let Some(last) = results.iter().rev().find(|x| x.is_anomaly) {
        info.last_alarm_row = Some(last.row);
    }
    if let Some(ts) = &ts {
        info.last_timestamp = ts.last().cloned();
    }
    let stored: Vec<(u64, Vec<u8>)> =
        results.iter().zip(&out).map(|(sc, v)| (sc.row, serde_json::to_vec(v).unwrap_or_default())).collect();
    if let Err(a) = commit(s, ent, mon, info, stored, &events) {
        return a;
    }
    s.metrics.rows.fetch_add(results.len() as u64, Ordering::Relaxed);
    s.metrics.alarms.fetch_add(alarms, Ordering::Relaxed);
    let adapted = events.iter().filter(|e| e.kind == "adapt" || e.kind == "reselect").count() as u64;
    s.metrics.adaptations.fetch_add(adapted, Ordering::Relaxed);
    ok_json(200, &json!({ "results": out }))
}

/// Stores the new monitor's snapshot, the entity's description, `results` and `events` in one
/// transaction, then swaps the new monitor in (nothing changes when the store fails).
fn commit(
    s: &Service,
    ent: &mut Entity,
    mon: Monitor,
    mut info: EntityInfo,
    results: Vec<(u64, Vec<u8>)>,
    events: &[lara_stream::Event],
) -> Result<(), Answer> {
    let snap = mon.snapshot().map_err(|e| bad(500, e.to_string()))?;
    let first = info.events;
    info.events += events.len() as u64;
    let write = IngestWrite {
        entity: &info.id,
        meta: &serde_json::to_vec(&info).unwrap_or_default(),
        snapshot: &snap,
        results,
        events: events
            .iter()
            .enumerate()
            .map(|(k, e)| (first + k as u64, serde_json::to_vec(e).unwrap_or_default()))
            .collect(),
    };
    s.store.ingest(write).map_err(|e| bad(500, format!("not stored, nothing changed: {e}")))?;
    ent.monitor = mon;
    ent.info = info;
    Ok(())
}

/// Runs an operator control on a copy of the monitor; stores its snapshot and events in one
/// transaction, then swaps it in.
fn control(s: &Service, id: &str, f: fn(&mut Monitor) -> Result<(), lara_stream::StreamError>) -> Answer {
    let Some(shared) = entity(s, id) else { return bad(404, format!("no entity {id:?}")) };
    let mut guard = shared.lock().expect("entity lock");
    let ent = &mut *guard;
    let mut mon = ent.monitor.clone();
    if let Err(e) = f(&mut mon) {
        return bad(409, e.to_string());
    }
    let events = mon.drain_events();
    let info = ent.info.clone();
    if let Err(a) = commit(s, ent, mon, info, Vec::new(), &events) {
        return a;
    }
    ok_json(200, &json!({ "entity": entity_json(ent), "events": events }))
}

fn post_adapt(s: &Arc<Service>, r: &mut Req) -> Answer {
    control(s, &r.params[0].clone(), Monitor::adapt_now)
}

fn post_rollback(s: &Arc<Service>, r: &mut Req) -> Answer {
    control(s, &r.params[0].clone(), Monitor::rollback)
}

fn get_versions(s: &Arc<Service>, r: &mut Req) -> Answer {
    let Some(shared) = entity(s, &r.params[0]) else { return bad(404, format!("no entity {:?}", r.params[0])) };
    let e = shared.lock().expect("entity lock");
    let versions: Vec<Value> = e
        .monitor
        .current()
        .into_iter()
        .chain(e.monitor.memory())
        .map(|p| {
            json!({
                "pattern": p.id,
                "adapted": p.adaptation.is_some(),
                "fitted_rows": p.fitted_rows,
                "adapter_bytes": p.adaptation.as_ref().map(|a| a.adapter.param_bytes()),
            })
        })
        .collect();
    ok_json(
        200,
        &json!({ "current": e.monitor.current().map(|p| p.id), "model_version": e.monitor.version(), "versions": versions }),
    )
}

fn scored_json(sc: &Scored, ts: Option<&str>) -> Value {
    let mut v = json!(sc);
    if let Some(t) = ts {
        v["timestamp"] = json!(t);
    }
    v
}

fn stored(s: &Service, r: &Req, only_alarms: bool) -> Result<Vec<Value>, Answer> {
    let id = &r.params[0];
    if entity(s, id).is_none() {
        return Err(bad(404, format!("no entity {id:?}")));
    }
    let from: u64 = r.q_num("from")?.unwrap_or(0);
    let to: u64 = r.q_num("to")?.unwrap_or(u64::MAX);
    let limit: usize = r.q_num("limit")?.unwrap_or(100_000).min(1_000_000);
    let raw = s
        .store
        .results(id, from, to, if only_alarms { usize::MAX } else { limit })
        .map_err(|e| bad(500, e.to_string()))?;
    let mut out = Vec::new();
    for b in raw {
        let v: Value = serde_json::from_slice(&b).map_err(|e| bad(500, e.to_string()))?;
        if !only_alarms || v["is_anomaly"].as_bool() == Some(true) {
            out.push(v);
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
}

fn get_scores(s: &Arc<Service>, r: &mut Req) -> Answer {
    match stored(s, r, false) {
        Ok(v) => ok_json(200, &json!({ "results": v })),
        Err(a) => a,
    }
}

fn get_alarms(s: &Arc<Service>, r: &mut Req) -> Answer {
    match stored(s, r, true) {
        Ok(v) => ok_json(200, &json!({ "alarms": v })),
        Err(a) => a,
    }
}

fn get_events(s: &Arc<Service>, r: &mut Req) -> Answer {
    let id = &r.params[0];
    if entity(s, id).is_none() {
        return bad(404, format!("no entity {id:?}"));
    }
    match s.store.events(id, 1_000_000) {
        Ok(raw) => {
            let v: Vec<Value> = raw.iter().filter_map(|b| serde_json::from_slice(b).ok()).collect();
            ok_json(200, &json!({ "events": v }))
        }
        Err(e) => bad(500, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_with_their_parameters() {
        assert_eq!(matches("/v1/entities/{id}/points", "/v1/entities/web-1/points"), Some(vec!["web-1".to_string()]));
        assert_eq!(matches("/v1/entities/{id}", "/v1/entities/a%3Ab"), Some(vec!["a:b".to_string()]));
        assert_eq!(matches("/v1/entities/{id}", "/v1/entities/a/points"), None);
        assert_eq!(matches("/v1/models", "/v1/model"), None);
        assert_eq!(percent_decode("a%20b+c%"), "a b c%");
        assert!(valid_id("web-01.eu:1").is_ok());
        assert!(valid_id("a/b").is_err() && valid_id("").is_err());
    }

    #[test]
    fn time_order_is_numeric_or_textual() {
        assert!(later("10", "9"));
        assert!(!later("9", "10"));
        assert!(later("2024-01-02T00:00:00Z", "2024-01-01T23:59:59Z"));
        assert!(!later("2024-01-01", "2024-01-01"));
    }

    #[test]
    fn the_openapi_document_lists_every_route() {
        let doc = openapi_document();
        for r in ROUTES {
            let op = &doc["paths"][r.path][r.method.to_ascii_lowercase()];
            assert!(op["summary"].is_string(), "{} {}", r.method, r.path);
            assert_eq!(op["parameters"].is_array(), r.path.contains("{id}"), "{} {}", r.method, r.path);
        }
        // Operation ids are unique.
        let mut ids: Vec<String> = ROUTES
            .iter()
            .map(|r| doc["paths"][r.path][r.method.to_ascii_lowercase()]["operationId"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }
}
