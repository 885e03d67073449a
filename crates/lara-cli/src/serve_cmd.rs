//! `lara serve`: the anomaly-detection service (crate `lara-server`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

/// Run the anomaly-detection service: models, entities, streaming ingest with automatic
/// adaptation, a durable embedded store.
///
/// Examples:
///   lara serve --addr 127.0.0.1:7070 --data-dir ./lara-data
///   lara serve --config lara.toml          # webhooks, remote-write mapping, LLM, limits
///   curl -X PUT --data-binary @m.lara localhost:7070/v1/models/cpu/file
///   curl -X PUT -d '{"base": "cpu"}' localhost:7070/v1/entities/web-01
///   curl -X POST -H 'Content-Type: text/csv' --data-binary @rows.csv localhost:7070/v1/entities/web-01/points
///   curl -N localhost:7070/v1/alarms/stream          # live alarms (Server-Sent Events)
///   curl localhost:7070/v1/openapi.json
///
/// Prometheus can remote-write to /api/v1/write (entity = the `instance` label, column = the
/// metric name by default; see [remote_write] in the config). A restart restores every entity
/// exactly from --data-dir (an acknowledged row is never lost: each ingest is one fsynced
/// transaction). With a token every route but /healthz and /readyz requires
/// `Authorization: Bearer <token>`. Flags override the config file.
///
/// Scale-out: with --nats URL (or `nats = "..."` in the config) this process is the API front
/// of a cluster on NATS JetStream instead (crate lara-cluster): it keeps no state, publishes
/// ingest and operator controls to the LARA_POINTS stream, and serves results, decisions and
/// alarms that the `lara worker`s publish. Same routes and bodies for what the cluster offers:
/// models (upload), entities (create, get, delete), points, adapt, rollback, scores, alarms,
/// events, /v1/alarms/stream, /api/v1/write, plus /v1/cluster; --addr, --token-file,
/// --max-body-mib, --max-rows-per-request, --threads and [remote_write] apply.
///   nats-server -js -sd /var/lib/nats &
///   lara serve  --nats nats://127.0.0.1:4222 --addr 127.0.0.1:7070 --token-file token.txt
///   lara worker --nats nats://127.0.0.1:4222 --partitions 64     # as many as needed
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port; the chosen address is printed)
    /// [default: 127.0.0.1:7070].
    #[arg(long)]
    pub addr: Option<String>,
    /// Folder of the embedded store (created if missing) [default: ./lara-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// File holding the bearer token every request must carry.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The configuration file (TOML): the flags' settings plus [remote_write], [[webhooks]]
    /// and [llm]; see the lara-server crate docs for every field.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Largest request body in MiB [default: 64].
    #[arg(long)]
    pub max_body_mib: Option<usize>,
    /// Most rows one ingest request may carry [default: 100000].
    #[arg(long)]
    pub max_rows_per_request: Option<usize>,
    /// Rows between two snapshots of an entity's monitor; a restart replays at most this many
    /// stored rows per entity [default: 500].
    #[arg(long)]
    pub snapshot_every_rows: Option<u64>,
    /// Rows (with their results) kept per entity, older ones deleted; at least
    /// --snapshot-every-rows [default: 0 = keep all].
    #[arg(long)]
    pub retain_rows: Option<u64>,
    /// Worker threads answering requests [default: 4].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run as the API front of a lara cluster on this NATS server (JetStream enabled) instead
    /// of the single-node service; the `lara worker`s hold the state (see `lara worker --help`).
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// With --nats: results, decisions and alarms older than this are removed from the
    /// LARA_RESULTS stream (0: kept; keep it far above the lease TTL) [default: unchanged].
    #[arg(long, value_name = "SECONDS")]
    pub results_max_age_s: Option<u64>,
    /// With --nats: LARA_RESULTS keeps at most this many MiB, oldest removed first (0: no
    /// limit) [default: unchanged].
    #[arg(long, value_name = "MIB")]
    pub results_max_mib: Option<u64>,
}

/// The bearer token in `path` (trimmed; an empty file is an error).
pub(crate) fn read_token(path: &std::path::Path) -> Result<String> {
    let t = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let t = t.trim().to_string();
    if t.is_empty() {
        bail!("{}: the token file is empty", path.display());
    }
    Ok(t)
}

pub fn run(args: &ServeArgs) -> Result<()> {
    let file = match &args.config {
        Some(p) => lara_server::config::FileConfig::load(p)?,
        None => Default::default(),
    };
    let token_file = args.token_file.clone().or(file.token_file.clone());
    let token = token_file.as_deref().map(read_token).transpose()?;
    let addr = args.addr.clone().or(file.addr.clone()).unwrap_or_else(|| "127.0.0.1:7070".into());
    if let Some(nats) = args.nats.clone().or(file.nats.clone()) {
        return run_front(args, file, nats, addr, token);
    }
    if args.results_max_age_s.is_some() || args.results_max_mib.is_some() {
        bail!("--results-max-age-s and --results-max-mib apply only with --nats (a cluster's results stream)");
    }
    let data_dir = args.data_dir.clone().or(file.data_dir.clone()).unwrap_or_else(|| "./lara-data".into());
    let mut cfg = lara_server::ServeConfig::new(&addr, data_dir);
    cfg.token = token;
    cfg.max_body = args.max_body_mib.or(file.max_body_mib).unwrap_or(64).max(1) << 20;
    cfg.max_rows = args.max_rows_per_request.or(file.max_rows_per_request).unwrap_or(100_000).max(1);
    cfg.threads = args.threads.or(file.threads).unwrap_or(4).max(1);
    cfg.snapshot_every = args.snapshot_every_rows.or(file.snapshot_every_rows).unwrap_or(500).max(1);
    cfg.retain_rows = args.retain_rows.or(file.retain_rows).unwrap_or(0);
    cfg.remote_write = file.remote_write.unwrap_or_default();
    cfg.webhooks = file.webhooks;
    cfg.llm = file.llm;
    lara_server::serve(&cfg)?;
    Ok(())
}

/// `lara serve --nats URL`: the cluster's API front (crate `lara-cluster`).
fn run_front(
    args: &ServeArgs,
    file: lara_server::config::FileConfig,
    nats: String,
    addr: String,
    token: Option<String>,
) -> Result<()> {
    // Settings of the single node's store would be silently ignored: refused instead.
    for (given, what) in [
        (args.data_dir.is_some() || file.data_dir.is_some(), "--data-dir / data_dir"),
        (args.snapshot_every_rows.is_some() || file.snapshot_every_rows.is_some(), "--snapshot-every-rows / snapshot_every_rows (see lara worker --snapshot-every)"),
        (args.retain_rows.is_some() || file.retain_rows.is_some(), "--retain-rows / retain_rows (see --results-max-age-s, --results-max-mib)"),
        (!file.webhooks.is_empty(), "[[webhooks]] (follow GET /v1/alarms/stream instead)"),
        (file.llm.is_some(), "[llm] (alarm explanations)"),
    ] {
        if given {
            bail!("{what} does not apply with --nats: the cluster front keeps no store");
        }
    }
    let mut cfg = lara_cluster::front::FrontConfig::new(&nats, &addr);
    cfg.token = token;
    cfg.max_body = args.max_body_mib.or(file.max_body_mib).unwrap_or(64).max(1) << 20;
    cfg.max_rows = args.max_rows_per_request.or(file.max_rows_per_request).unwrap_or(100_000).max(1);
    cfg.threads = args.threads.or(file.threads).unwrap_or(4).max(1);
    cfg.remote_write = file.remote_write.unwrap_or_default();
    cfg.results_max_age = args.results_max_age_s.map(std::time::Duration::from_secs);
    cfg.results_max_bytes = args.results_max_mib.map(|m| m << 20);
    lara_cluster::front::run(cfg)
}
