//! Alarms leave the service three ways: stored with the results (`GET …/alarms`), live as
//! Server-Sent Events (`GET /v1/alarms/stream`) and as webhooks (JSON POST, retried with a
//! doubling backoff, a dead-letter record when they give up).
//!
//! An alarm is the first anomalous row of an episode (a run of consecutive anomalous rows of
//! one entity), so an incident of fifty rows pages once. Its id is `<entity>:<row>`.
//!
//! Webhook delivery is durable: the alarm enters each webhook's outbox in the same store
//! transaction as the rows that raised it, and leaves it only when delivered (a 2xx answer) or
//! moved to the dead letters; a restart resumes delivery. Each webhook has its own thread and
//! delivers in order.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::api::{bad, ok_json, valid_id, Answer, Req, SSE_STATUS};
use crate::config::WebhookConfig;
use crate::Service;

/// Events a slow SSE client may have queued before it is dropped (it reconnects).
const SSE_QUEUE: usize = 4096;
/// A comment line sent when nothing happened for this long, so dead clients are noticed.
const SSE_KEEPALIVE: Duration = Duration::from_secs(15);

struct Subscriber {
    entity: Option<String>,
    tx: SyncSender<Arc<(String, String)>>,
}

/// Fans alarms out to the live SSE clients and wakes the webhook threads.
#[derive(Default)]
pub struct AlarmHub {
    subscribers: Mutex<Vec<Subscriber>>,
    wake: (Mutex<u64>, Condvar),
}

impl AlarmHub {
    /// Publishes committed alarms (JSON objects with `id` and `entity`).
    pub fn publish(&self, alarms: &[Value]) {
        if alarms.is_empty() {
            return;
        }
        {
            let mut subs = self.subscribers.lock().expect("subscribers lock");
            for a in alarms {
                let entity = a["entity"].as_str().unwrap_or_default();
                let msg = Arc::new((a["id"].as_str().unwrap_or_default().to_string(), a.to_string()));
                subs.retain(|s| {
                    if s.entity.as_deref().is_some_and(|e| e != entity) {
                        return true;
                    }
                    match s.tx.try_send(msg.clone()) {
                        Ok(()) => true,
                        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
                    }
                });
            }
        }
        let (m, c) = &self.wake;
        *m.lock().expect("wake lock") += 1;
        c.notify_all();
    }

    /// A subscription to the alarms of `entity` (None: all): `(alarm id, alarm JSON)` pairs;
    /// dropped by the hub when its queue is full (a slow client reconnects).
    pub fn subscribe(&self, entity: Option<String>) -> Receiver<Arc<(String, String)>> {
        let (tx, rx) = sync_channel(SSE_QUEUE);
        self.subscribers.lock().expect("subscribers lock").push(Subscriber { entity, tx });
        rx
    }

    /// Live SSE clients.
    pub fn subscribers(&self) -> usize {
        self.subscribers.lock().expect("subscribers lock").len()
    }

    /// Waits until something is published or `timeout` passes.
    fn wait(&self, seen: &mut u64, timeout: Duration) {
        let (m, c) = &self.wake;
        let g = m.lock().expect("wake lock");
        let (g, _) = c.wait_timeout_while(g, timeout, |n| *n == *seen).expect("wake lock");
        *seen = *g;
    }
}

/// The alarm record of row `scored` of `entity` (SSE, webhooks, explain).
pub fn alarm_json(entity: &str, result: &Value) -> Value {
    let row = result["row"].as_u64().unwrap_or_default();
    let mut a = json!({ "id": format!("{entity}:{row}"), "entity": entity });
    if let (Some(a), Some(r)) = (a.as_object_mut(), result.as_object()) {
        for (k, v) in r {
            a.insert(k.clone(), v.clone());
        }
    }
    a
}

/// Serves `GET /v1/alarms/stream` on its own thread: `text/event-stream`, one `alarm` event per
/// alarm (`id:` the alarm id, `data:` its JSON), a keep-alive comment every 15 s.
pub fn serve_stream(service: &Arc<Service>, request: tiny_http::Request, entity: Option<String>) {
    let rx = service.hub.subscribe(entity);
    service.metrics.sse_clients.fetch_add(1, Ordering::Relaxed);
    let service = service.clone();
    stream_events(request, rx, move || {
        service.metrics.sse_clients.fetch_sub(1, Ordering::Relaxed);
    });
}

/// Writes the events of a subscription ([`AlarmHub::subscribe`]) to `request` as Server-Sent
/// Events on a thread of its own (the format of [`serve_stream`]) until the client goes away
/// or the hub drops the subscription; then calls `on_end`.
pub fn stream_events(
    request: tiny_http::Request,
    rx: Receiver<Arc<(String, String)>>,
    on_end: impl FnOnce() + Send + 'static,
) {
    std::thread::spawn(move || {
        let mut w = request.into_writer();
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
                    Connection: close\r\nAccess-Control-Allow-Origin: *\r\n\r\n: lara alarms\n\n";
        let mut ok = w.write_all(head.as_bytes()).and_then(|_| w.flush()).is_ok();
        while ok {
            let chunk = match rx.recv_timeout(SSE_KEEPALIVE) {
                Ok(m) => format!("id: {}\nevent: alarm\ndata: {}\n\n", m.0, m.1),
                Err(RecvTimeoutError::Timeout) => ": keep-alive\n\n".to_string(),
                Err(RecvTimeoutError::Disconnected) => break,
            };
            ok = w.write_all(chunk.as_bytes()).and_then(|_| w.flush()).is_ok();
        }
        on_end();
    });
}

/// Starts one delivery thread per webhook.
pub fn start_webhooks(service: &Arc<Service>, hooks: &[WebhookConfig]) {
    for (i, hook) in hooks.iter().enumerate() {
        let (service, hook) = (service.clone(), hook.clone());
        std::thread::spawn(move || deliver_forever(&service, i as u32, &hook));
    }
}

fn deliver_forever(s: &Service, hook: u32, cfg: &WebhookConfig) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_millis(cfg.timeout_ms)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut seen = 0u64;
    loop {
        let batch = match s.store.outbox(hook, 256) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(url = %cfg.url, "webhook outbox unreadable: {e}");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        if batch.is_empty() {
            s.hub.wait(&mut seen, Duration::from_secs(1));
            continue;
        }
        for (seq, body) in batch {
            let mut wait = Duration::from_millis(cfg.backoff_ms);
            let mut attempts = 0u32;
            let dead = loop {
                attempts += 1;
                let outcome = agent
                    .post(&cfg.url)
                    .header("Content-Type", "application/json")
                    .send(body.as_slice())
                    .map_err(|e| e.to_string())
                    .and_then(|r| {
                        let st = r.status().as_u16();
                        if (200..300).contains(&st) {
                            Ok(())
                        } else {
                            Err(format!("HTTP {st}"))
                        }
                    });
                match outcome {
                    Ok(()) => {
                        s.metrics.webhooks_delivered.fetch_add(1, Ordering::Relaxed);
                        break None;
                    }
                    Err(e) if attempts > cfg.retries => {
                        tracing::warn!(url = %cfg.url, attempts, "webhook gave up: {e}");
                        s.metrics.webhooks_dead.fetch_add(1, Ordering::Relaxed);
                        let alarm: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let at = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_secs())
                            .unwrap_or_default();
                        break Some(json!({ "url": cfg.url, "attempts": attempts, "error": e,
                                           "gave_up_at_unix": at, "alarm": alarm }));
                    }
                    Err(e) => {
                        tracing::debug!(url = %cfg.url, attempts, "webhook failed, retrying in {wait:?}: {e}");
                        s.metrics.webhooks_retried.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(wait);
                        wait = (wait * 2).min(Duration::from_secs(300));
                    }
                }
            };
            let rec = dead.map(|d| d.to_string().into_bytes());
            if let Err(e) = s.store.outbox_done(hook, seq, rec.as_deref()) {
                tracing::error!(url = %cfg.url, "webhook outbox not updated: {e}");
            }
        }
    }
}

/// `GET /v1/alarms/stream[?entity=id]`: checks the filter, then hands the connection over.
pub(crate) fn get_stream(s: &Arc<Service>, r: &mut Req) -> Answer {
    let entity = r.q("entity").unwrap_or("").to_string();
    if !entity.is_empty() {
        if let Err(a) = valid_id(&entity) {
            return a;
        }
        if crate::entities::entity(s, &entity).is_none() {
            return bad(404, format!("no entity {entity:?}"));
        }
    }
    Answer { status: SSE_STATUS, content_type: "text/event-stream", body: entity.into_bytes() }
}

/// `GET /v1/webhooks/dead-letters`.
pub(crate) fn get_dead_letters(s: &Arc<Service>, r: &mut Req) -> Answer {
    let limit: usize = match r.q_num("limit") {
        Ok(v) => v.unwrap_or(10_000),
        Err(a) => return a,
    };
    match s.store.dead_letters(limit) {
        Ok(raw) => {
            let v: Vec<Value> = raw.iter().filter_map(|b| serde_json::from_slice(b).ok()).collect();
            ok_json(200, &json!({ "dead_letters": v }))
        }
        Err(e) => bad(500, e.to_string()),
    }
}
