//! `lara worker` and `lara front`: scale-out on NATS JetStream (crate `lara-cluster`).

use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;

/// Run a worker of a lara cluster on NATS JetStream: it claims partitions of the entities
/// through leases in a key-value bucket, scores their rows with the online monitor, publishes
/// results and alarms, and snapshots the monitors. Workers join and leave at any time; the
/// partitions rebalance, and a dead worker's partitions are taken over within the lease TTL
/// (plus a quarter of it), replayed from their snapshots: every row is scored exactly once in
/// the results, equal to a single-node `lara replay`.
///
/// Examples:
///   nats-server -js -sd /var/lib/nats &
///   lara serve  --nats nats://127.0.0.1:4222 --addr 127.0.0.1:7070
///   lara worker --nats nats://127.0.0.1:4222 --partitions 64
///   lara worker --nats nats://127.0.0.1:4222          # a second one: partitions rebalance
///
/// The first process to reach the broker creates the streams and buckets (LARA_POINTS,
/// LARA_RESULTS, lara-leases, lara-snapshots, …) with --partitions and --lease-ttl-ms; later
/// ones adopt them. Prints `worker <id> metrics on http://ADDR` once connected (Prometheus
/// text on /metrics). SIGTERM or Ctrl-C releases the partitions after their snapshots.
/// Operator controls (adapt, rollback, delete) arrive in the entities' streams and are applied
/// in stream order, so a takeover replays them exactly where they were. After each
/// checkpoint the partition's points below it are purged from LARA_POINTS (--keep-points:
/// kept).
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct WorkerArgs {
    /// The NATS server (JetStream enabled).
    #[arg(long, value_name = "URL", default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// Partitions of the entity space (fixed when the cluster is first set up) [default: the
    /// cluster's, or 64].
    #[arg(long)]
    pub partitions: Option<u32>,
    /// This worker's name (unique in the cluster) [default: w<pid>-<n>].
    #[arg(long)]
    pub id: Option<String>,
    /// Lease TTL in ms (only when the cluster is first set up) [default: 5000].
    #[arg(long)]
    pub lease_ttl_ms: Option<u64>,
    /// Rows between two snapshots of a partition's changed entities (a takeover replays at
    /// most about this many rows per partition).
    #[arg(long, default_value_t = 1000)]
    pub snapshot_every: u64,
    /// A partition idle this long (ms) after a change writes its snapshots and checkpoint
    /// (and purges the points below it).
    #[arg(long, default_value_t = 5000)]
    pub snapshot_idle_ms: u64,
    /// Where to serve /metrics ("none": nowhere).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub metrics_addr: String,
    /// Keep the points below the checkpoints in LARA_POINTS (default: purged once a
    /// checkpoint covers them, so the stream holds only what a takeover replays).
    #[arg(long)]
    pub keep_points: bool,
}

pub fn worker(a: &WorkerArgs) -> Result<()> {
    let mut cfg = lara_cluster::worker::WorkerConfig::new(&a.nats);
    cfg.partitions = a.partitions;
    if let Some(id) = &a.id {
        if !lara_cluster::valid_id(id) {
            bail!("--id: use 1-128 of [A-Za-z0-9_-]");
        }
        cfg.id = id.clone();
    }
    cfg.lease_ttl = a.lease_ttl_ms.map(Duration::from_millis);
    cfg.snapshot_every = a.snapshot_every.max(1);
    cfg.snapshot_idle = Duration::from_millis(a.snapshot_idle_ms.max(100));
    cfg.metrics_addr = if a.metrics_addr == "none" { None } else { Some(a.metrics_addr.clone()) };
    cfg.purge_points = !a.keep_points;
    // The monitors' GEMMs on one thread each: the worker's parallelism is its partitions.
    let _ = lara_vae::init_threads(1);
    lara_cluster::worker::run(cfg)
}

/// Run the HTTP API front of a lara cluster on NATS JetStream (the same as
/// `lara serve --nats URL`): ingest and operator controls are published to the LARA_POINTS
/// stream (answered 202 once the broker stored them), results, decisions and alarms are
/// served from LARA_RESULTS. Stateless: run as many as needed.
///
/// Examples:
///   lara front --nats nats://127.0.0.1:4222 --addr 127.0.0.1:7070 --token-file token.txt
///   curl -X PUT --data-binary @m.lara localhost:7070/v1/models/cpu/file
///   curl -X PUT -d '{"base": "cpu"}' localhost:7070/v1/entities/web-01
///   curl -X POST -H 'Idempotency-Key: web-01-000017' -d '{"rows": [[0.4], [0.5]]}' \
///        localhost:7070/v1/entities/web-01/points
///   curl localhost:7070/v1/entities/web-01/scores?from=0
///   curl -X POST localhost:7070/v1/entities/web-01/rollback     # or /adapt
///   curl -N localhost:7070/v1/alarms/stream                      # live alarms (SSE)
///   curl localhost:7070/v1/alarms ; curl localhost:7070/v1/cluster ; curl localhost:7070/metrics
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct FrontArgs {
    /// The NATS server (JetStream enabled).
    #[arg(long, value_name = "URL", default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// Address to listen on (port 0: any free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub addr: String,
    /// Partitions (only when the cluster is first set up) [default: the cluster's, or 64].
    #[arg(long)]
    pub partitions: Option<u32>,
    /// Lease TTL in ms (only when the cluster is first set up) [default: 5000].
    #[arg(long)]
    pub lease_ttl_ms: Option<u64>,
    /// Threads answering requests.
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    /// File holding the bearer token every request but /healthz and /readyz must carry.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<std::path::PathBuf>,
    /// Largest request body in MiB.
    #[arg(long, default_value_t = 64)]
    pub max_body_mib: usize,
    /// Results, decisions and alarms older than this are removed from LARA_RESULTS (0: kept)
    /// [default: unchanged].
    #[arg(long, value_name = "SECONDS")]
    pub results_max_age_s: Option<u64>,
    /// LARA_RESULTS keeps at most this many MiB (0: no limit) [default: unchanged].
    #[arg(long, value_name = "MIB")]
    pub results_max_mib: Option<u64>,
}

pub fn front(a: &FrontArgs) -> Result<()> {
    let mut cfg = lara_cluster::front::FrontConfig::new(&a.nats, &a.addr);
    cfg.partitions = a.partitions;
    cfg.lease_ttl = a.lease_ttl_ms.map(Duration::from_millis);
    cfg.threads = a.threads.max(1);
    cfg.token = a.token_file.as_deref().map(crate::serve_cmd::read_token).transpose()?;
    cfg.max_body = a.max_body_mib.max(1) << 20;
    cfg.results_max_age = a.results_max_age_s.map(Duration::from_secs);
    cfg.results_max_bytes = a.results_max_mib.map(|m| m << 20);
    lara_cluster::front::run(cfg)
}
