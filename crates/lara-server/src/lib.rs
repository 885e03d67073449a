//! # lara-server — `lara serve`, the anomaly-detection service
//!
//! A synchronous HTTP/1.1 server (`tiny_http`, a few worker threads) around the online
//! monitor of `lara-stream`, with a durable embedded store (redb, one file in
//! `--data-dir`). JSON API under `/v1`; its OpenAPI document (`/v1/openapi.json`) is built
//! from the same route table the server dispatches on ([`api::ROUTES`]), so the two cannot
//! disagree. Prometheus text on `/metrics`; `/healthz`, `/readyz`. Configuration: flags or
//! `lara.toml` ([`config`]).
//!
//! ## Ingest paths
//! `POST /v1/entities/{id}/points` (JSON or CSV), Prometheus remote-write on
//! `POST /api/v1/write` ([`remote_write`]: label sets map to entity and column, rows are
//! assembled per scrape timestamp), and stateless `POST /v1/detect` for a whole file.
//!
//! ## Durability and the fsync policy
//! An ingest runs on a copy of the entity's monitor. The rows, their results, the monitor's
//! events, the alarms for the webhook outboxes and the entity's description are written in
//! one redb transaction, committed with redb's default durability (flushed and fsynced before
//! `commit` returns) before the answer; only then does the copy replace the live monitor. So
//! an acknowledged row is on disk, and a failed write leaves the entity as it was. Concurrent
//! ingests share a transaction (group commit: one fsync for all of them, each answered after
//! it). The monitor's snapshot is rewritten every `snapshot_every` rows (500) and after every
//! operator control; a restart restores the snapshot and replays the stored rows after it —
//! the monitor is deterministic and batch-invariant, so results after a restart equal those
//! of a run without it (tested with SIGKILL between ingests and during a sustained ingest).
//! With `retain_rows` (`--retain-rows`), rows and results older than that many rows are deleted
//! in the same transactions, never past the stored snapshot (a restart must replay the rows
//! after it); events are kept.
//! Partial remote-write rows (a scrape whose series have not all arrived) are kept in memory
//! only: they are not acknowledged rows.
//!
//! ## Alarms
//! An alarm is the first anomalous row of an episode ([`alarms`]): stored, streamed as
//! Server-Sent Events, POSTed to webhooks (durable outbox, retries with a doubling backoff,
//! dead-letter records), explained on `GET /v1/alarms/{id}/explain` (top columns and, with
//! `[llm]` configured, an LLM's short reason from the operators' documents).
//!
//! Models are shared: an entity created with `{"base": id}` starts on the shared base model
//! by LARA from its first `slots` rows (cold start) and keeps only its adapter and monitor
//! state (tens of KiB); `{"model": id}` trusts the model as it is.

pub mod alarms;
pub mod api;
pub mod config;
mod dashboard;
mod detect;
mod entities;
mod explain;
mod models;
pub mod remote_write;
mod store;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use lara_stream::Monitor;
use lara_vae::Detector;
use serde::{Deserialize, Serialize};

pub use entities::{parse_points, Points};
pub use store::Store;

/// Errors of the service (I/O and store; request errors become HTTP answers).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("store: {0}")]
    Store(String),
    #[error("config: {0}")]
    Config(String),
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
    /// Most rows one ingest request may carry.
    pub max_rows: usize,
    /// An entity's snapshot is rewritten after this many rows (between two, its rows are
    /// stored and replayed on restart).
    pub snapshot_every: u64,
    /// Rows (and their results) kept per entity; older ones are deleted (0: keep all). At
    /// least `snapshot_every`, so a restart can always replay.
    pub retain_rows: u64,
    pub threads: usize,
    pub remote_write: config::RemoteWriteConfig,
    pub webhooks: Vec<config::WebhookConfig>,
    pub llm: Option<config::LlmConfig>,
}

impl ServeConfig {
    /// Defaults for `addr` and `data_dir` (what `lara serve` uses without flags).
    pub fn new(addr: &str, data_dir: impl Into<PathBuf>) -> ServeConfig {
        ServeConfig {
            addr: addr.to_string(),
            data_dir: data_dir.into(),
            token: None,
            max_body: 64 << 20,
            max_rows: 100_000,
            snapshot_every: 500,
            retain_rows: 0,
            threads: 4,
            remote_write: config::RemoteWriteConfig::default(),
            webhooks: Vec::new(),
            llm: None,
        }
    }
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
    /// Whether the latest row was anomalous (an alarm is the first row of an episode).
    #[serde(default)]
    pub in_episode: bool,
    /// Rows the stored snapshot covers.
    #[serde(default)]
    pub snapshot_row: u64,
    /// Rows and results below this row were pruned (`retain_rows`).
    #[serde(default)]
    pub pruned_below: u64,
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

/// Upper bounds (seconds) of the request latency histogram.
pub(crate) const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Default)]
pub(crate) struct Metrics {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub rows: AtomicU64,
    /// Anomalous rows.
    pub anomalous_rows: AtomicU64,
    /// Alarms (first rows of episodes).
    pub alarms: AtomicU64,
    pub adaptations: AtomicU64,
    pub rollbacks: AtomicU64,
    /// Request latency histogram: counts per bucket of [`LATENCY_BUCKETS`] (+Inf last), sum in µs.
    pub latency: [AtomicU64; 13],
    pub latency_sum_us: AtomicU64,
    pub sse_clients: AtomicU64,
    pub webhooks_delivered: AtomicU64,
    pub webhooks_retried: AtomicU64,
    pub webhooks_dead: AtomicU64,
    pub remote_write_samples: AtomicU64,
    pub remote_write_dropped: AtomicU64,
}

impl Metrics {
    pub(crate) fn observe(&self, seconds: f64) {
        let i = LATENCY_BUCKETS.iter().position(|&b| seconds <= b).unwrap_or(LATENCY_BUCKETS.len());
        self.latency[i].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }
}

/// The service's state: the store, the loaded models and the live monitors.
pub struct Service {
    pub(crate) store: Store,
    pub(crate) data_dir: PathBuf,
    pub(crate) token: Option<String>,
    pub(crate) max_body: usize,
    pub(crate) max_rows: usize,
    pub(crate) snapshot_every: u64,
    pub(crate) retain_rows: u64,
    pub(crate) remote_write: config::RemoteWriteConfig,
    /// Partial remote-write rows per entity.
    pub(crate) pending: Mutex<HashMap<String, remote_write::Pending>>,
    pub(crate) hub: alarms::AlarmHub,
    pub(crate) explainer: Option<explain::Explainer>,
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
        if cfg.retain_rows > 0 && cfg.retain_rows < cfg.snapshot_every {
            return Err(ServerError::Config(format!(
                "retain_rows = {} is below snapshot_every_rows = {}: a restart could not replay the rows after a snapshot",
                cfg.retain_rows, cfg.snapshot_every
            )));
        }
        let store = Store::open(&cfg.data_dir, cfg.webhooks.len() as u32)?;
        let mut models = HashMap::new();
        for (id, bytes) in store.models()? {
            let det = Detector::from_bytes(std::path::Path::new(&id), &bytes)
                .map_err(|e| ServerError::Store(format!("model {id}: {e}")))?;
            let info = models::model_info(&id, &det, &bytes);
            models.insert(id, LoadedModel { det: Arc::new(det), info });
        }
        let mut entities = HashMap::new();
        for (id, meta) in store.entities()? {
            let info: EntityInfo =
                serde_json::from_slice(&meta).map_err(|e| ServerError::Store(format!("entity {id}: {e}")))?;
            let snap = store.snapshot(&id)?.ok_or_else(|| ServerError::Store(format!("entity {id}: no snapshot")))?;
            let base = models.get(&info.model).map(|m: &LoadedModel| m.det.clone());
            let mut monitor =
                Monitor::restore(&snap, base).map_err(|e| ServerError::Store(format!("entity {id}: {e}")))?;
            // Rows stored after the snapshot: replayed (their results and events are stored).
            let seen = monitor.rows_seen();
            if info.rows > seen {
                let rows = store.rows(&id, seen, info.rows - 1, usize::MAX)?;
                if rows.len() as u64 != info.rows - seen {
                    return Err(ServerError::Store(format!(
                        "entity {id}: {} rows stored after the snapshot at row {seen}, expected {}",
                        rows.len(),
                        info.rows - seen
                    )));
                }
                monitor.push(&rows).map_err(|e| ServerError::Store(format!("entity {id}: replay: {e}")))?;
                monitor.drain_events();
            }
            entities.insert(id, Arc::new(Mutex::new(Entity { info, monitor })));
        }
        tracing::info!(models = models.len(), entities = entities.len(), "store opened");
        let explainer = match &cfg.llm {
            Some(l) => Some(explain::Explainer::new(l)?),
            None => None,
        };
        Ok(Arc::new(Service {
            store,
            data_dir: cfg.data_dir.clone(),
            token: cfg.token.clone(),
            max_body: cfg.max_body,
            max_rows: cfg.max_rows,
            snapshot_every: cfg.snapshot_every.max(1),
            retain_rows: cfg.retain_rows,
            remote_write: cfg.remote_write.clone(),
            pending: Mutex::new(HashMap::new()),
            hub: alarms::AlarmHub::default(),
            explainer,
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
/// ACK (about 40 ms per request). Public for the cluster front (`lara-cluster`).
pub fn set_nodelay(listener: &std::net::TcpListener) {
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
    alarms::start_webhooks(&service, &cfg.webhooks);
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
