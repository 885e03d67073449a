//! Asking the LLM about windows: one request per window, repair or retry malformed answers,
//! and record what could not be used as missing (never a crash, never a silent zero).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::backend::{ChatRequest, LlmBackend};
use crate::cache::CachedLlm;
use crate::error::LlmError;
use crate::http::{HttpConfig, HttpLlm};
use crate::local::{cache_root, default_model_path, LocalLlm, LocalOptions, LocalWeights};
use crate::prompt::Prompt;
use crate::response::{parse_judgement, Judgement};

/// Appended to the pitch block on a retry, so that a greedy (deterministic) model gets a
/// different prompt and a second chance.
pub const RETRY_SUFFIX: &str =
    "\nReply with one JSON object only, for example {\"score\": 0.2, \"anomalous_steps\": [], \"reason\": \"values in normal range\"}.";

/// The outcome for one window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowVerdict {
    /// The caller's window index.
    pub window: usize,
    /// The parsed answer, or `None` = missing (see `error`).
    pub judgement: Option<Judgement>,
    /// Requests made (1 + retries used).
    pub attempts: usize,
    /// True when every request was answered from the cache.
    pub cached: bool,
    /// Why the window is missing (backend error or unusable answer).
    pub error: Option<String>,
    /// The last raw answer text.
    pub raw: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Backend time spent (0 for cache hits).
    pub elapsed: Duration,
}

impl WindowVerdict {
    /// The LLM score, if the window has a usable answer.
    pub fn score(&self) -> Option<f64> {
        self.judgement.as_ref().map(|j| j.score)
    }
}

/// Ask about one window; `retries` extra requests (with [`RETRY_SUFFIX`]) when the answer has
/// no usable score. Backend errors (server down after its own retries, prompt too long) make
/// the window missing.
pub fn judge_window(llm: &mut dyn LlmBackend, window: usize, prompt: &Prompt, retries: usize) -> WindowVerdict {
    let mut verdict = WindowVerdict {
        window,
        judgement: None,
        attempts: 0,
        cached: true,
        error: None,
        raw: String::new(),
        prompt_tokens: 0,
        completion_tokens: 0,
        elapsed: Duration::ZERO,
    };
    for attempt in 0..=retries {
        let request = if attempt == 0 {
            prompt.request.clone()
        } else {
            ChatRequest { user: format!("{}{RETRY_SUFFIX}", prompt.request.user), ..prompt.request.clone() }
        };
        verdict.attempts += 1;
        let start = Instant::now();
        match llm.complete(&request) {
            Ok(c) => {
                verdict.cached &= c.cached;
                if !c.cached {
                    verdict.elapsed += start.elapsed();
                }
                verdict.prompt_tokens += c.prompt_tokens;
                verdict.completion_tokens += c.completion_tokens;
                verdict.raw = c.text;
                match parse_judgement(&verdict.raw, prompt.window_len) {
                    Ok(j) => {
                        verdict.judgement = Some(j);
                        verdict.error = None;
                        return verdict;
                    }
                    Err(e) => verdict.error = Some(e.to_string()),
                }
            }
            Err(e) => {
                verdict.cached = false;
                verdict.error = Some(e.to_string());
                // Retrying a transport failure or an oversized prompt with a longer prompt is
                // pointless; HTTP already retried with backoff.
                return verdict;
            }
        }
    }
    verdict
}

/// Ask about several windows (`prompts[k]` is window `windows[k]`), logging progress.
pub fn judge_windows(
    llm: &mut dyn LlmBackend,
    windows: &[usize],
    prompts: &[Prompt],
    retries: usize,
) -> Result<Vec<WindowVerdict>, LlmError> {
    if windows.len() != prompts.len() {
        return Err(LlmError::InvalidInput(format!("{} windows but {} prompts", windows.len(), prompts.len())));
    }
    let mut out = Vec::with_capacity(windows.len());
    for (k, (&w, p)) in windows.iter().zip(prompts).enumerate() {
        let v = judge_window(llm, w, p, retries);
        tracing::debug!(window = w, n = k + 1, of = windows.len(), score = ?v.score(), cached = v.cached, "LLM verdict");
        if let Some(e) = &v.error {
            tracing::warn!(window = w, error = %e, "LLM verdict missing");
        }
        out.push(v);
    }
    Ok(out)
}

/// Per-window LLM score column of length `n_windows` (`None` where not asked or missing).
pub fn llm_score_column(n_windows: usize, verdicts: &[WindowVerdict]) -> Vec<Option<f64>> {
    let mut col = vec![None; n_windows];
    for v in verdicts {
        if v.window < n_windows {
            col[v.window] = v.score();
        }
    }
    col
}

/// Which backend to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum BackendKind {
    /// In-process GGUF model (default).
    #[default]
    Local,
    /// OpenAI-compatible server.
    Http,
}

impl std::str::FromStr for BackendKind {
    type Err = LlmError;
    fn from_str(s: &str) -> Result<Self, LlmError> {
        match s {
            "local" => Ok(BackendKind::Local),
            "http" => Ok(BackendKind::Http),
            other => Err(LlmError::InvalidInput(format!("unknown LLM backend {other:?} (local|http)"))),
        }
    }
}

/// Options the CLI maps its flags onto (`--llm`, `--llm-url`, `--llm-model`, `--cache`).
#[derive(Debug, Clone, Default)]
pub struct LlmOptions {
    pub kind: BackendKind,
    /// Local: GGUF path (default [`crate::local::default_model_path`]).
    pub model_path: Option<PathBuf>,
    /// Local: weight format in memory (default Q8_0).
    pub local_weights: LocalWeights,
    /// HTTP: base URL (default [`crate::http::DEFAULT_BASE_URL`]).
    pub url: Option<String>,
    /// HTTP: model name sent to the server (default: asked from the server).
    pub model_name: Option<String>,
    /// Response cache directory; `None` = [`default_response_cache`]. Use
    /// [`open_backend_uncached`] for no cache.
    pub cache_dir: Option<PathBuf>,
    /// HTTP: per-attempt timeout (default 120 s).
    pub timeout: Option<Duration>,
}

/// `<cache_root>/responses`.
pub fn default_response_cache() -> PathBuf {
    cache_root().join("responses")
}

/// Open the backend without the response cache (e.g. for `lara llm check`).
pub fn open_backend_uncached(opts: &LlmOptions) -> Result<Box<dyn LlmBackend>, LlmError> {
    Ok(match opts.kind {
        BackendKind::Local => {
            let path = opts.model_path.clone().unwrap_or_else(default_model_path);
            Box::new(LocalLlm::load_with(&path, &LocalOptions { weights: opts.local_weights })?)
        }
        BackendKind::Http => {
            let mut cfg = HttpConfig::for_url(opts.url.as_deref().unwrap_or(crate::http::DEFAULT_BASE_URL));
            cfg.model = opts.model_name.clone();
            if let Some(t) = opts.timeout {
                cfg.timeout = t;
            }
            Box::new(HttpLlm::new(cfg)?)
        }
    })
}

/// Open the backend wrapped in the on-disk response cache.
pub fn open_backend(opts: &LlmOptions) -> Result<CachedLlm<Box<dyn LlmBackend>>, LlmError> {
    let inner = open_backend_uncached(opts)?;
    CachedLlm::new(inner, opts.cache_dir.clone().unwrap_or_else(default_response_cache))
}
