//! `lara llm check`: one round trip to the backend, timed.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::backend::{ChatRequest, LlmBackend};
use crate::error::LlmError;
use crate::response::parse_judgement;

/// Result of one round trip.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckReport {
    pub backend: String,
    pub model: String,
    /// Wall time of the request (prompt processing + generation + transport).
    pub latency: Duration,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// completion_tokens / latency.
    pub tokens_per_second: f64,
    /// The raw answer.
    pub text: String,
    /// Whether the answer parsed as a verdict (score found).
    pub parsed: bool,
}

/// The fixed request of the check: a tiny anomaly question with a JSON answer.
pub fn check_request(max_tokens: usize) -> ChatRequest {
    ChatRequest {
        system: "You are an expert operator of a web service. Answer with JSON only: \
                 {\"score\": <0 to 1>, \"anomalous_steps\": [<t values>], \"reason\": \"<at most 12 words>\"}."
            .to_string(),
        user: "Window of 8 steps (t = time index).\nt: 0 1 2 3 4 5 6 7\ncpu_percent: 21.0 22.5 20.8 97.3 21.9 22.1 20.5 21.7\n\
               Is this window anomalous? Reply with the JSON object."
            .to_string(),
        max_tokens,
        prefill: String::new(),
    }
}

/// One round trip (call it on an uncached backend to measure the backend itself).
pub fn llm_check(llm: &mut dyn LlmBackend, max_tokens: usize) -> Result<CheckReport, LlmError> {
    let start = Instant::now();
    let c = llm.complete(&check_request(max_tokens))?;
    let latency = start.elapsed();
    let secs = latency.as_secs_f64();
    Ok(CheckReport {
        backend: llm.backend_name().to_string(),
        model: llm.model_name().to_string(),
        latency,
        prompt_tokens: c.prompt_tokens,
        completion_tokens: c.completion_tokens,
        tokens_per_second: if secs > 0.0 { c.completion_tokens as f64 / secs } else { 0.0 },
        parsed: parse_judgement(&c.text, 8).is_ok(),
        text: c.text,
    })
}
