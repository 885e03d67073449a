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
}

pub fn run(args: &ServeArgs) -> Result<()> {
    let file = match &args.config {
        Some(p) => lara_server::config::FileConfig::load(p)?,
        None => Default::default(),
    };
    let token_file = args.token_file.clone().or(file.token_file.clone());
    let token = match &token_file {
        Some(p) => {
            let t = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            let t = t.trim().to_string();
            if t.is_empty() {
                bail!("{}: the token file is empty", p.display());
            }
            Some(t)
        }
        None => None,
    };
    let addr = args.addr.clone().or(file.addr.clone()).unwrap_or_else(|| "127.0.0.1:7070".into());
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
