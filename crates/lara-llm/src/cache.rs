//! On-disk response cache: every completion is stored under
//! `sha256(backend, model, system, user, max_tokens)` so experiments replay exactly.
//!
//! Layout: `<dir>/<first 2 hex>/<64 hex>.json`, one JSON object per response (written to a
//! temporary file and renamed, so a crash never leaves a half-written entry). An unreadable
//! entry counts as a miss and is overwritten.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backend::{ChatRequest, Completion, LlmBackend};
use crate::error::LlmError;

/// Cache key: hex SHA-256 over a canonical JSON of (backend, model, request).
pub fn cache_key(backend: &str, model: &str, request: &ChatRequest) -> String {
    let canonical = serde_json::json!({
        "v": 1,
        "backend": backend,
        "model": model,
        "system": request.system,
        "user": request.user,
        "max_tokens": request.max_tokens,
        "prefill": request.prefill,
    })
    .to_string();
    let digest = Sha256::digest(canonical.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Serialize, Deserialize)]
struct Entry {
    backend: String,
    model: String,
    request: ChatRequest,
    completion: Completion,
}

/// A backend wrapped with the on-disk cache. Counts hits and misses.
#[derive(Debug)]
pub struct CachedLlm<B> {
    inner: B,
    dir: PathBuf,
    /// Requests answered from the cache.
    pub hits: usize,
    /// Requests sent to the backend.
    pub misses: usize,
}

impl<B: LlmBackend> CachedLlm<B> {
    /// Wrap `inner`, storing responses under `dir` (created if needed).
    pub fn new(inner: B, dir: impl Into<PathBuf>) -> Result<Self, LlmError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| LlmError::io(&dir, e))?;
        Ok(Self { inner, dir, hits: 0, misses: 0 })
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_for(&self, key: &str) -> PathBuf {
        self.dir.join(&key[..2]).join(format!("{key}.json"))
    }

    /// The cached completion for `request`, if any (does not call the backend).
    pub fn lookup(&self, request: &ChatRequest) -> Option<Completion> {
        let key = cache_key(self.inner.backend_name(), self.inner.model_name(), request);
        let text = fs::read_to_string(self.path_for(&key)).ok()?;
        let entry: Entry = serde_json::from_str(&text).ok()?;
        (entry.request == *request).then_some(Completion { cached: true, ..entry.completion })
    }

    fn store(&self, request: &ChatRequest, completion: &Completion) -> Result<(), LlmError> {
        let key = cache_key(self.inner.backend_name(), self.inner.model_name(), request);
        let path = self.path_for(&key);
        let parent = path.parent().unwrap_or(&self.dir);
        fs::create_dir_all(parent).map_err(|e| LlmError::io(parent, e))?;
        let entry = Entry {
            backend: self.inner.backend_name().to_string(),
            model: self.inner.model_name().to_string(),
            request: request.clone(),
            completion: Completion { cached: false, ..completion.clone() },
        };
        let text = serde_json::to_string_pretty(&entry).map_err(|e| LlmError::InvalidInput(e.to_string()))?;
        let tmp = path.with_extension(format!("json.tmp{}", std::process::id()));
        fs::write(&tmp, text).map_err(|e| LlmError::io(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| LlmError::io(&path, e))
    }
}

impl<B: LlmBackend> LlmBackend for CachedLlm<B> {
    fn backend_name(&self) -> &str {
        self.inner.backend_name()
    }
    fn model_name(&self) -> &str {
        self.inner.model_name()
    }
    fn context_tokens(&self) -> Option<usize> {
        self.inner.context_tokens()
    }
    fn count_tokens(&self, text: &str) -> Option<usize> {
        self.inner.count_tokens(text)
    }

    fn complete(&mut self, request: &ChatRequest) -> Result<Completion, LlmError> {
        if let Some(hit) = self.lookup(request) {
            self.hits += 1;
            return Ok(hit);
        }
        self.misses += 1;
        let completion = self.inner.complete(request)?;
        if let Err(e) = self.store(request, &completion) {
            // A read-only cache must not lose the answer: log and carry on.
            tracing::warn!(error = %e, "could not write the LLM response cache");
        }
        Ok(completion)
    }
}
