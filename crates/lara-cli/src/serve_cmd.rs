//! `lara serve`: the anomaly-detection service (crate `lara-server`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

/// Run the anomaly-detection service: models, entities, streaming ingest with automatic
/// adaptation, a durable embedded store.
///
/// Examples:
///   lara serve --addr 127.0.0.1:7070 --data-dir ./lara-data
///   curl -X PUT --data-binary @m.lara localhost:7070/v1/models/cpu/file
///   curl -X PUT -d '{"base": "cpu"}' localhost:7070/v1/entities/web-01
///   curl -X POST -H 'Content-Type: text/csv' --data-binary @rows.csv localhost:7070/v1/entities/web-01/points
///   curl localhost:7070/v1/openapi.json
///
/// A restart restores every entity exactly from --data-dir (an acknowledged row is never
/// lost). With --token-file every route requires `Authorization: Bearer <token>`.
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub addr: String,
    /// Folder of the embedded store (created if missing).
    #[arg(long, default_value = "./lara-data")]
    pub data_dir: PathBuf,
    /// File holding the bearer token every request must carry.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Largest request body in MiB.
    #[arg(long, default_value_t = 64)]
    pub max_body_mib: usize,
    /// Worker threads answering requests.
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
}

pub fn run(args: &ServeArgs) -> Result<()> {
    let token = match &args.token_file {
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
    let cfg = lara_server::ServeConfig {
        addr: args.addr.clone(),
        data_dir: args.data_dir.clone(),
        token,
        max_body: args.max_body_mib.max(1) << 20,
        threads: args.threads,
    };
    lara_server::serve(&cfg)?;
    Ok(())
}
