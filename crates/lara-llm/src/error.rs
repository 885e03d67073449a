//! Errors of lara-llm. Every failure mode (bad model file, server down, garbage answers, bad
//! input arrays) is a value of [`LlmError`]; nothing in this crate panics on bad input.

use std::path::PathBuf;

/// Everything that can go wrong in lara-llm.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The local GGUF model file was not found; says how to fetch it.
    #[error(
        "LLM model file not found at {0}: run `lara llm fetch` or scripts/fetch-smollm.sh \
         (or set LARA_LLM_MODEL to a GGUF chat model)"
    )]
    ModelMissing(PathBuf),
    /// The model file exists but cannot be used (not GGUF, truncated, unsupported tokenizer…).
    #[error("bad model file: {0}")]
    ModelFile(String),
    /// candle failed while loading or running the model.
    #[error("inference failed: {0}")]
    Inference(String),
    /// The prompt does not fit in the model's context window.
    #[error("prompt of {prompt} tokens + {max_new} new tokens exceeds the context of {context} tokens")]
    ContextOverflow { prompt: usize, max_new: usize, context: usize },
    /// HTTP transport failure (connection refused, timeout, TLS…), after retries.
    #[error("HTTP request to {url} failed after {attempts} attempt(s): {message}")]
    Http { url: String, attempts: u32, message: String },
    /// The server answered with a non-success status, after retries where retrying made sense.
    #[error("HTTP {status} from {url}: {body}")]
    HttpStatus { url: String, status: u16, body: String },
    /// The server's body is not an OpenAI-style chat completion.
    #[error("unexpected response from {url}: {message}")]
    BadResponse { url: String, message: String },
    /// Reading or writing the response cache or expert documents failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The model answered with nothing usable (e.g. an empty explanation).
    #[error("{backend} model {model} gave an empty answer to {what}")]
    EmptyAnswer { backend: String, model: String, what: String },
    /// Invalid arguments to a library function (empty arrays, mismatched lengths, NaN…).
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

impl LlmError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LlmError::Io { path: path.into(), source }
    }
}

impl From<candle_core::Error> for LlmError {
    fn from(e: candle_core::Error) -> Self {
        LlmError::Inference(e.to_string())
    }
}
