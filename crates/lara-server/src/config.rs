//! `lara.toml`: the service's configuration file (`lara serve --config lara.toml`). Command-line
//! flags override it. Every field is optional; unknown fields are refused with their name.
//!
//! ```toml
//! addr = "127.0.0.1:7070"
//! data_dir = "./lara-data"
//! token_file = "token.txt"      # bearer token (relative to this file)
//! max_body_mib = 64
//! max_rows_per_request = 100000
//! snapshot_every_rows = 500     # restart replays at most this many stored rows per entity
//! retain_rows = 100000          # rows and results kept per entity (default: all)
//! threads = 4
//! nats = "nats://127.0.0.1:4222"   # run as the API front of a NATS JetStream cluster (`lara serve --nats`; crate lara-cluster)
//!
//! [remote_write]                # Prometheus remote-write on POST /api/v1/write
//! entity_label = "instance"     # the label whose value names the entity
//! column_label = "__name__"     # the label whose value names the column
//! create_on_base = "cpu-base"   # unknown entities are created on this shared base (cold start)
//!
//! [[webhooks]]                  # JSON POST of every alarm, retried with backoff
//! url = "http://127.0.0.1:9000/alarm"
//! retries = 5
//! backoff_ms = 500
//! timeout_ms = 5000
//!
//! [llm]                         # reasons for GET /v1/alarms/{id}/explain
//! backend = "local"             # "local" (GGUF, `lara llm fetch`) or "openai"
//! model = "~/.cache/lara/models/SmolLM2-135M-Instruct.Q4_1.gguf"   # path, or the API's model name
//! url = "http://127.0.0.1:8080/v1"   # openai only (key from $LARA_LLM_API_KEY)
//! docs = ["docs/experts"]       # the operators' expert documents (files or folders)
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ServerError;

/// The contents of `lara.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub addr: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    pub max_body_mib: Option<usize>,
    pub max_rows_per_request: Option<usize>,
    /// Rows between two snapshots of an entity's monitor (default 500).
    pub snapshot_every_rows: Option<u64>,
    /// Rows (with their results) kept per entity; 0 or absent: all.
    pub retain_rows: Option<u64>,
    pub threads: Option<usize>,
    /// The NATS server of a lara cluster: `lara serve` then runs the cluster's API front
    /// (crate `lara-cluster`) instead of the single-node service; `data_dir`, `retain_rows`
    /// and `snapshot_every_rows` do not apply (the workers hold the state). Not read by this
    /// crate.
    pub nats: Option<String>,
    pub remote_write: Option<RemoteWriteConfig>,
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    pub llm: Option<LlmConfig>,
}

/// How Prometheus remote-write samples become entity rows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    #[serde(default = "default_entity_label")]
    pub entity_label: String,
    #[serde(default = "default_column_label")]
    pub column_label: String,
    /// Entities not known yet are created on this model as a shared base (LARA cold start);
    /// without it their samples are counted and dropped.
    pub create_on_base: Option<String>,
}

impl Default for RemoteWriteConfig {
    fn default() -> Self {
        RemoteWriteConfig {
            entity_label: default_entity_label(),
            column_label: default_column_label(),
            create_on_base: None,
        }
    }
}

fn default_entity_label() -> String {
    "instance".into()
}
fn default_column_label() -> String {
    "__name__".into()
}

/// One webhook: every alarm is POSTed to `url` as JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// Attempts after the first before the alarm goes to the dead-letter records.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// First wait between attempts; doubles after each failure.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_retries() -> u32 {
    5
}
fn default_backoff_ms() -> u64 {
    500
}
fn default_timeout_ms() -> u64 {
    5000
}

/// The LLM that explains alarms.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// `local` (a GGUF file run in process) or `openai` (an OpenAI-compatible server).
    pub backend: String,
    /// GGUF path (local; default: where `lara llm fetch` puts SmolLM2; `~/` expands) or model
    /// name (openai; default: the server's first model).
    pub model: Option<String>,
    /// Base URL of the OpenAI-compatible API (openai).
    pub url: Option<String>,
    /// Expert documents: files or folders of `.md`/`.txt`.
    #[serde(default)]
    pub docs: Vec<PathBuf>,
    #[serde(default = "default_llm_tokens")]
    pub max_tokens: usize,
}

fn default_llm_tokens() -> usize {
    80
}

impl FileConfig {
    /// Reads and checks `path`; relative paths inside are resolved against its folder.
    pub fn load(path: &Path) -> Result<FileConfig, ServerError> {
        let text = std::fs::read_to_string(path).map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))?;
        let mut cfg: FileConfig =
            toml::from_str(&text).map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        if let Some(p) = cfg.data_dir.as_mut() {
            resolve(p);
        }
        if let Some(p) = cfg.token_file.as_mut() {
            resolve(p);
        }
        if let Some(llm) = cfg.llm.as_mut() {
            llm.docs.iter_mut().for_each(resolve);
            if !matches!(llm.backend.as_str(), "local" | "openai") {
                return Err(ServerError::Config(format!(
                    "{}: llm.backend = {:?}: expected \"local\" or \"openai\"",
                    path.display(),
                    llm.backend
                )));
            }
            if llm.backend == "openai" && llm.url.is_none() {
                return Err(ServerError::Config(format!(
                    "{}: llm.backend = \"openai\" needs llm.url",
                    path.display()
                )));
            }
        }
        for (i, w) in cfg.webhooks.iter().enumerate() {
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                return Err(ServerError::Config(format!(
                    "{}: webhooks[{i}].url = {:?}: expected an http:// or https:// URL",
                    path.display(),
                    w.url
                )));
            }
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lara-config-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("lara.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_full_file_is_read_and_paths_resolve_against_its_folder() {
        let p = write(
            "full",
            "addr = \"127.0.0.1:9\"\ndata_dir = \"store\"\n[remote_write]\ncreate_on_base = \"b\"\n\
             [[webhooks]]\nurl = \"http://x/y\"\nretries = 2\n[llm]\nbackend = \"local\"\ndocs = [\"d\"]\n",
        );
        let c = FileConfig::load(&p).unwrap();
        assert_eq!(c.addr.as_deref(), Some("127.0.0.1:9"));
        assert_eq!(c.data_dir.unwrap(), p.parent().unwrap().join("store"));
        let rw = c.remote_write.unwrap();
        assert_eq!((rw.entity_label.as_str(), rw.column_label.as_str()), ("instance", "__name__"));
        assert_eq!(rw.create_on_base.as_deref(), Some("b"));
        assert_eq!((c.webhooks[0].retries, c.webhooks[0].backoff_ms), (2, 500));
        assert_eq!(c.llm.unwrap().docs[0], p.parent().unwrap().join("d"));
    }

    #[test]
    fn unknown_fields_and_bad_values_are_named() {
        let e = FileConfig::load(&write("unknown", "adress = \"x\"\n")).unwrap_err().to_string();
        assert!(e.contains("adress") && e.contains("lara.toml"), "{e}");
        let e = FileConfig::load(&write("llm", "[llm]\nbackend = \"gpt\"\n")).unwrap_err().to_string();
        assert!(e.contains("llm.backend"), "{e}");
        let e = FileConfig::load(&write("hook", "[[webhooks]]\nurl = \"ftp://x\"\n")).unwrap_err().to_string();
        assert!(e.contains("webhooks[0].url"), "{e}");
        let e = FileConfig::load(&write("type", "threads = \"four\"\n")).unwrap_err().to_string();
        assert!(e.contains("threads"), "{e}");
    }
}
