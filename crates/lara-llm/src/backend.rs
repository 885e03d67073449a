//! The one trait every LLM backend implements, and the request/response types.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::LlmError;

/// A single-turn chat request: the set-up block goes in `system`, the pitch block in `user`.
/// Decoding is always greedy (temperature 0) so answers are deterministic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub system: String,
    pub user: String,
    /// Upper bound on generated tokens.
    pub max_tokens: usize,
    /// Start of the assistant's answer, forced before generation (e.g. `{"score":`), so that a
    /// small model answers in the requested format. The returned text includes it. Empty = none.
    #[serde(default)]
    pub prefill: String,
}

/// What a backend returned for one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub text: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Wall time of the generation (for a cache hit: the time recorded when it was generated).
    pub elapsed: Duration,
    /// True when the answer came from the on-disk cache.
    #[serde(default)]
    pub cached: bool,
}

impl Completion {
    /// Completion tokens per second of wall time (0 when nothing was generated).
    pub fn tokens_per_second(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.completion_tokens as f64 / s
        } else {
            0.0
        }
    }
}

/// An LLM that answers chat requests. Implementations must be deterministic for a fixed
/// (model, request): greedy decoding, no sampling.
pub trait LlmBackend {
    /// Backend kind, e.g. `"local"` or `"http"` (part of the cache key).
    fn backend_name(&self) -> &str;
    /// Model identity, e.g. the GGUF file name or the server-side model name (part of the cache key).
    fn model_name(&self) -> &str;
    /// Context window in tokens, when known (used to budget prompts).
    fn context_tokens(&self) -> Option<usize> {
        None
    }
    /// Count tokens of a text, when the backend can (used to budget prompts); else `None`
    /// and callers estimate ~3.5 characters per token.
    fn count_tokens(&self, _text: &str) -> Option<usize> {
        None
    }
    /// Run one request.
    fn complete(&mut self, request: &ChatRequest) -> Result<Completion, LlmError>;
}

impl<B: LlmBackend + ?Sized> LlmBackend for Box<B> {
    fn backend_name(&self) -> &str {
        (**self).backend_name()
    }
    fn model_name(&self) -> &str {
        (**self).model_name()
    }
    fn context_tokens(&self) -> Option<usize> {
        (**self).context_tokens()
    }
    fn count_tokens(&self, text: &str) -> Option<usize> {
        (**self).count_tokens(text)
    }
    fn complete(&mut self, request: &ChatRequest) -> Result<Completion, LlmError> {
        (**self).complete(request)
    }
}
