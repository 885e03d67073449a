//! # lara-server — `lara serve`, the anomaly-detection service
//!
//! A synchronous HTTP/1.1 server (`tiny_http`, a few worker threads) around the online
//! monitor of `lara-stream`, with a durable embedded store (redb, one file in
//! `--data-dir`). JSON API under `/v1`; its OpenAPI document (`/v1/openapi.json`) is built
//! from the same route table the server dispatches on ([`api::ROUTES`]), so the two cannot
//! disagree. Prometheus text on `/metrics`.
//!
//! Durability: an ingest runs on a copy of the entity's monitor; the new snapshot, the
//! results and the events are written in one redb transaction, committed before the answer,
//! and only then does the copy replace the live monitor. An acknowledged row is never lost; a
//! failed write leaves the entity as it was; a restart restores every entity from its
//! snapshot, so results after a restart equal those of a run without it (tested with a
//! SIGKILL between two ingests). fsync policy: redb's default durability, every commit is
//! flushed to disk before it returns, so the answer to an ingest means the rows are on disk.
//!
//! Not built yet (issue 10): `POST /v1/models/{id}/train` from stored history, `POST
//! /v1/detect`, Prometheus remote-write, Server-Sent Events and webhooks, alarm
//! explanations, `--config`. Ingests of
//! different entities score in parallel; the store serialises their commits (one fsync each).
//!
//! Models are shared: an entity created with `{"base": id}` starts on the shared base model
//! by LARA from its first `slots` rows (cold start) and keeps only its adapter and monitor
//! state (tens of KiB); `{"model": id}` trusts the model as it is.

pub mod api;
mod store;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use lara_stream::Monitor;
use lara_vae::Detector;
use serde::{Deserialize, Serialize};

pub use store::Store;

/// Errors of the service (I/O and store; request errors become HTTP answers).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("store: {0}")]
    Store(String),
    #[error("{0}")]
    Other(String),
}

/// How to run the service.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub addr: String,
    pub data_dir: PathBuf,
    /// Required as `Authorization: Bearer <token>` on every route when set.
    pub token: Option<String>,
    /// Largest request body accepted (bytes).
    pub max_body: usize,
    pub threads: usize,
}

/// A model known to the service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelInfo {
    pub id: String,
    pub columns: Vec<String>,
    pub window: usize,
    pub train_rows: usize,
    pub bytes: usize,
    pub sha256: String,
    pub adapted: bool,
}

/// An entity's description (stored beside its snapshot).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntityInfo {
    pub id: String,
    pub model: String,
    pub cold_start: bool,
    pub policy: String,
    pub slots: usize,
    pub rows: u64,
    pub alarms: u64,
    pub last_alarm_row: Option<u64>,
    pub last_timestamp: Option<String>,
    pub events: u64,
}

pub(crate) struct LoadedModel {
    pub det: Arc<Detector>,
    pub info: ModelInfo,
}

pub(crate) struct Entity {
    pub info: EntityInfo,
    pub monitor: Monitor,
}

/// A training job (`POST /v1/models`).
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: String,
    /// `running`, `done`, `failed`.
    pub status: String,
    pub progress: f64,
    pub model: Option<String>,
    pub error: Option<String>,
}

#[derive(Default)]
pub(crate) struct Metrics {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub rows: AtomicU64,
    pub alarms: AtomicU64,
    pub adaptations: AtomicU64,
}

/// The service's state: the store, the loaded models and the live monitors.
pub struct Service {
    pub(crate) store: Store,
    pub(crate) token: Option<String>,
    pub(crate) max_body: usize,
    pub(crate) models: Mutex<HashMap<String, LoadedModel>>,
    /// Each entity behind its own lock: ingests of different entities run in parallel.
    pub(crate) entities: RwLock<HashMap<String, Arc<Mutex<Entity>>>>,
    pub(crate) jobs: Mutex<HashMap<String, Job>>,
    pub(crate) metrics: Metrics,
    pub(crate) next_id: AtomicU64,
}

impl Service {
    /// Opens the store and restores every model and entity.
    pub fn open(cfg: &ServeConfig) -> Result<Arc<Service>, ServerError> {
        let store = Store::open(&cfg.data_dir)?;
        let mut models = HashMap::new();
        for (id, bytes) in store.models()? {
            let det = Detector::from_bytes(std::path::Path::new(&id), &bytes)
                .map_err(|e| ServerError::Store(format!("model {id}: {e}")))?;
            let info = api::model_info(&id, &det, &bytes);
            models.insert(id, LoadedModel { det: Arc::new(det), info });
        }
        let mut entities = HashMap::new();
        for (id, meta) in store.entities()? {
            let info: EntityInfo =
                serde_json::from_slice(&meta).map_err(|e| ServerError::Store(format!("entity {id}: {e}")))?;
            let snap = store.snapshot(&id)?.ok_or_else(|| ServerError::Store(format!("entity {id}: no snapshot")))?;
            let base = models.get(&info.model).map(|m: &LoadedModel| m.det.clone());
            let monitor = Monitor::restore(&snap, base).map_err(|e| ServerError::Store(format!("entity {id}: {e}")))?;
            entities.insert(id, Arc::new(Mutex::new(Entity { info, monitor })));
        }
        tracing::info!(models = models.len(), entities = entities.len(), "store opened");
        Ok(Arc::new(Service {
            store,
            token: cfg.token.clone(),
            max_body: cfg.max_body,
            models: Mutex::new(models),
            entities: RwLock::new(entities),
            jobs: Mutex::new(HashMap::new()),
            metrics: Metrics::default(),
            next_id: AtomicU64::new(1),
        }))
    }

    pub(crate) fn fresh_id(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.next_id.fetch_add(1, Ordering::SeqCst))
    }
}

/// Disables Nagle's algorithm on the listening socket; Linux passes it on to every accepted
/// connection. Without it a response written as header + body waits for the client's delayed
/// ACK (about 40 ms per request).
fn set_nodelay(listener: &std::net::TcpListener) {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        let one: libc::c_int = 1;
        // SAFETY: a valid socket descriptor and a pointer to a c_int of the size given.
        let rc = unsafe {
            libc::setsockopt(
                listener.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            tracing::warn!("TCP_NODELAY not set: {}", std::io::Error::last_os_error());
        }
    }
}

/// Runs the service until the process ends. Prints `listening on http://ADDR` once bound
/// (with port 0 the chosen port).
pub fn serve(cfg: &ServeConfig) -> Result<(), ServerError> {
    let service = Service::open(cfg)?;
    let listener =
        std::net::TcpListener::bind(&cfg.addr).map_err(|e| ServerError::Other(format!("{}: {e}", cfg.addr)))?;
    set_nodelay(&listener);
    let server = tiny_http::Server::from_listener(listener, None)
        .map_err(|e| ServerError::Other(format!("{}: {e}", cfg.addr)))?;
    let server = Arc::new(server);
    println!("listening on http://{}", server.server_addr());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let mut workers = Vec::new();
    for _ in 0..cfg.threads.max(1) {
        let (server, service) = (server.clone(), service.clone());
        workers.push(std::thread::spawn(move || {
            while let Ok(req) = server.recv() {
                api::handle(&service, req);
            }
        }));
    }
    for w in workers {
        let _ = w.join();
    }
    Ok(())
}
