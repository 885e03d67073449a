//! Routes, handlers and the OpenAPI document built from the same route table.

use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use tiny_http::{Header, Request, Response};

use crate::alarms::{get_dead_letters, get_stream};
use crate::dashboard::{get_asset, get_index};
use crate::detect::post_detect;
use crate::entities::*;
use crate::explain::get_explain;
use crate::models::*;
use crate::remote_write::post_write;
use crate::{Service, LATENCY_BUCKETS};

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
    Route { method: "GET", path: "/healthz", summary: "Liveness: 200 while the process answers (no token needed)", body: "", answer: "text/plain: ok", handler: healthz },
    Route { method: "GET", path: "/readyz", summary: "Readiness: 200 once the store is open and every entity restored (no token needed)", body: "", answer: "application/json: {models, entities}", handler: readyz },
    Route { method: "GET", path: "/v1/openapi.json", summary: "This OpenAPI document", body: "", answer: "application/json", handler: openapi },
    Route { method: "GET", path: "/metrics", summary: "Prometheus metrics (text exposition format)", body: "", answer: "text/plain", handler: metrics },
    Route { method: "POST", path: "/api/v1/write", summary: "Prometheus remote-write (snappy protobuf): samples become entity rows, one per scrape timestamp ([remote_write] in lara.toml maps labels to entity and column)", body: "application/x-protobuf: snappy-compressed prometheus.WriteRequest", answer: "204", handler: post_write },
    Route { method: "POST", path: "/v1/detect", summary: "Score a whole CSV with a model, stateless (query: model, causal=true for the online monitor's causal score; format=csv for the CLI's CSV)", body: "text/csv: the model's columns (+ timestamp)", answer: "application/json: {threshold, results: [{row, score, is_anomaly, top_dims}]}", handler: post_detect },
    Route { method: "GET", path: "/v1/models", summary: "List models", body: "", answer: "application/json: {models: [ModelInfo]}", handler: list_models },
    Route { method: "POST", path: "/v1/models", summary: "Train a model from a CSV body (query: name, train_end, window, seed); asynchronous: 202 + {job}", body: "text/csv: the CLI's CSV format", answer: "application/json: {job}", handler: train_model },
    Route { method: "POST", path: "/v1/models/{id}/train", summary: "Train model {id} from an entity's stored rows (query: entity, from, to, train_end, window, seed); asynchronous: 202 + {job}", body: "", answer: "application/json: {job}", handler: train_from_history },
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
    Route { method: "GET", path: "/v1/entities/{id}/scores", summary: "Stored results of rows [from, to] (query: from, to, limit; values=true adds each row's values)", body: "", answer: "application/json: {results: [Scored]}", handler: get_scores },
    Route { method: "GET", path: "/v1/entities/{id}/alarms", summary: "Stored results with is_anomaly (query: from, to, limit)", body: "", answer: "application/json: {alarms: [Scored]}", handler: get_alarms },
    Route { method: "GET", path: "/v1/entities/{id}/events", summary: "The monitor's decisions with their evidence", body: "", answer: "application/json: {events: [Event]}", handler: get_events },
    Route { method: "POST", path: "/v1/entities/{id}/adapt", summary: "Adapt now on the newest rows (re-selects a stored pattern that explains them, else LARA); validated on the next rows", body: "", answer: "application/json: {entity, events}", handler: post_adapt },
    Route { method: "POST", path: "/v1/entities/{id}/rollback", summary: "Return to the pattern the latest switch replaced", body: "", answer: "application/json: {entity, events}", handler: post_rollback },
    Route { method: "GET", path: "/v1/entities/{id}/versions", summary: "The pattern scoring now (first) and the stored ones it can return to", body: "", answer: "application/json: {current, versions}", handler: get_versions },
    Route { method: "GET", path: "/v1/alarms/stream", summary: "Server-Sent Events: one `alarm` event per alarm (the first anomalous row of an episode) as it is committed (query: entity to follow one)", body: "", answer: "text/event-stream", handler: get_stream },
    Route { method: "GET", path: "/v1/alarms/{id}/explain", summary: "Why alarm {id} (`entity:row`): its top contributing columns with their values against the window, and the LLM's short reason when an LLM is configured", body: "", answer: "application/json: Explanation", handler: get_explain },
    Route { method: "GET", path: "/v1/webhooks/dead-letters", summary: "Alarms a webhook gave up on, with the last error", body: "", answer: "application/json: {dead_letters}", handler: get_dead_letters },
    Route { method: "GET", path: "/", summary: "The web dashboard: fleet, entity charts, live alarms (no token needed: the page asks for it and sends it with every API call)", body: "", answer: "text/html", handler: get_index },
    Route { method: "GET", path: "/assets/{id}", summary: "The dashboard's embedded assets: app.js, app.css, uplot.iife.min.js, uplot.min.css, LICENSE-uPlot (no token needed)", body: "", answer: "text/javascript, text/css or text/plain", handler: get_asset },
];

/// Routes answered without the bearer token: health, and the dashboard's page and assets
/// (the page asks for the token and sends it with every API call).
fn is_open(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/") || path.starts_with("/assets/")
}

/// Status of an [`Answer`] that hands the connection to the Server-Sent Events writer; its
/// body is the entity filter (empty: all).
pub(crate) const SSE_STATUS: u16 = 0;

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
    pub(crate) fn q(&self, k: &str) -> Option<&str> {
        self.query.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
    }
    pub(crate) fn q_num<T: std::str::FromStr>(&self, k: &str) -> Result<Option<T>, Answer> {
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

pub(crate) fn ok_json(status: u16, v: &Value) -> Answer {
    Answer { status, content_type: "application/json", body: serde_json::to_vec(v).unwrap_or_default() }
}

pub(crate) fn bad(status: u16, msg: impl Into<String>) -> Answer {
    ok_json(status, &json!({ "error": msg.into() }))
}

pub(crate) fn valid_id(id: &str) -> Result<(), Answer> {
    if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) {
        return Err(bad(400, format!("invalid id {id:?}: use 1-128 characters of A-Z a-z 0-9 - _ . :")));
    }
    Ok(())
}

pub(crate) fn percent_decode(s: &str) -> String {
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
    let t0 = Instant::now();
    service.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let answer = route(service, &mut request);
    if answer.status == SSE_STATUS {
        let filter = String::from_utf8(answer.body).ok().filter(|f| !f.is_empty());
        crate::alarms::serve_stream(service, request, filter);
        return;
    }
    service.metrics.observe(t0.elapsed().as_secs_f64());
    if answer.status >= 400 {
        service.metrics.errors.fetch_add(1, Ordering::Relaxed);
    }
    let mut resp = Response::from_data(answer.body).with_status_code(answer.status);
    if let Ok(h) = Header::from_bytes("Content-Type", answer.content_type) {
        resp = resp.with_header(h);
    }
    // Dashboard assets are requested as `?v=<hash of all assets>`: cacheable for good. The page
    // itself and API answers are not cached.
    let cache = if request.url().starts_with("/assets/") && answer.status == 200 {
        "public, max-age=31536000, immutable"
    } else {
        "no-store"
    };
    if let Ok(h) = Header::from_bytes("Cache-Control", cache) {
        resp = resp.with_header(h);
    }
    let _ = request.respond(resp);
}

/// The value of header `name` ("" when absent).
pub(crate) fn header(request: &Request, name: &'static str) -> String {
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
        let header_value = header(request, "Authorization");
        let mut given = header_value.strip_prefix("Bearer ").unwrap_or("").to_string();
        // A browser's EventSource cannot set headers: the stream also takes ?access_token=.
        if given.is_empty() && path == "/v1/alarms/stream" {
            if let Some((_, v)) = query.iter().find(|(k, _)| k == "access_token") {
                given = v.clone();
            }
        }
        if !is_open(path) && !constant_time_eq(given.as_bytes(), t.as_bytes()) {
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

/// Equality whose time depends only on the lengths, not on where the bytes differ (bearer
/// tokens).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ----------------------------------------------------------------------------------
// Health, OpenAPI and metrics

fn healthz(_: &Arc<Service>, _: &mut Req) -> Answer {
    Answer { status: 200, content_type: "text/plain", body: b"ok\n".to_vec() }
}

/// The service exists only once `Service::open` restored everything, so answering is ready.
fn readyz(s: &Arc<Service>, _: &mut Req) -> Answer {
    let models = s.models.lock().expect("models lock").len();
    let entities = s.entities.read().expect("entities lock").len();
    ok_json(200, &json!({ "ready": true, "models": models, "entities": entities }))
}

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
    counter("lara_anomalous_rows_total", "Rows scored as anomalous.", m.anomalous_rows.load(Ordering::Relaxed));
    counter("lara_alarms_total", "Alarms: first anomalous rows of episodes.", m.alarms.load(Ordering::Relaxed));
    counter(
        "lara_adaptations_total",
        "Adaptations and re-selections decided by the monitors.",
        m.adaptations.load(Ordering::Relaxed),
    );
    counter("lara_rollbacks_total", "Roll-backs to an earlier pattern.", m.rollbacks.load(Ordering::Relaxed));
    counter("lara_webhooks_delivered_total", "Alarms delivered to webhooks.", m.webhooks_delivered.load(Ordering::Relaxed));
    counter("lara_webhooks_retried_total", "Failed webhook attempts retried.", m.webhooks_retried.load(Ordering::Relaxed));
    counter("lara_webhooks_dead_total", "Alarms a webhook gave up on.", m.webhooks_dead.load(Ordering::Relaxed));
    counter(
        "lara_remote_write_samples_total",
        "Remote-write samples received.",
        m.remote_write_samples.load(Ordering::Relaxed),
    );
    counter(
        "lara_remote_write_dropped_total",
        "Remote-write samples dropped (unlabelled, unknown entity or column, late, or rows given up incomplete).",
        m.remote_write_dropped.load(Ordering::Relaxed),
    );
    out.push_str("# HELP lara_http_request_duration_seconds Request latency.\n# TYPE lara_http_request_duration_seconds histogram\n");
    let mut cum = 0u64;
    for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
        cum += m.latency[i].load(Ordering::Relaxed);
        out.push_str(&format!("lara_http_request_duration_seconds_bucket{{le=\"{b}\"}} {cum}\n"));
    }
    cum += m.latency[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
    out.push_str(&format!("lara_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {cum}\n"));
    out.push_str(&format!(
        "lara_http_request_duration_seconds_sum {}\nlara_http_request_duration_seconds_count {cum}\n",
        m.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
    ));
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
    let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n"));
    };
    gauge(&mut out, "lara_store_bytes", "Size of the store file.", s.store.file_bytes(&s.data_dir));
    gauge(&mut out, "lara_sse_clients", "Live Server-Sent Events clients.", m.sse_clients.load(Ordering::Relaxed));
    Answer { status: 200, content_type: "text/plain; version=0.0.4", body: out.into_bytes() }
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
