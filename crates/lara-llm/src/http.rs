//! OpenAI-compatible chat-completions backend (llama.cpp `llama-server`, Ollama, vLLM, OpenAI).
//!
//! `POST {base_url}/chat/completions` with `temperature: 0` (greedy) and a fixed `seed`;
//! per-request timeout; retries with exponential backoff on transport errors, 408, 429 and 5xx;
//! API key (optional) read from an environment variable, sent as `Authorization: Bearer`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::backend::{ChatRequest, Completion, LlmBackend};
use crate::error::LlmError;

/// Default endpoint: a local `llama-server`.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:8080/v1";
/// Default environment variable holding the API key.
pub const DEFAULT_API_KEY_ENV: &str = "LARA_LLM_API_KEY";

/// Settings of [`HttpLlm`].
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Base URL up to and including `/v1`, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// Model name sent to the server; `None` = ask `GET {base}/models` once, else `"default"`.
    pub model: Option<String>,
    /// Environment variable that holds the API key (absent or empty variable = no key).
    pub api_key_env: String,
    /// Timeout of one attempt (connect + request + response).
    pub timeout: Duration,
    /// Attempts in total (≥ 1).
    pub max_attempts: u32,
    /// First backoff; doubles on each retry.
    pub backoff: Duration,
    /// Extra JSON fields merged into every request body. Default `{"cache_prompt": false}`:
    /// llama-server otherwise reuses the KV cache of a previous request's common prefix, which
    /// changes the batching of the prompt and so, at temperature 0, the answer. Servers that
    /// ignore unknown fields (Ollama, vLLM) are unaffected; clear it for strict ones (OpenAI —
    /// [`HttpConfig::for_url`] does so for `api.openai.com`).
    pub extra_body: serde_json::Map<String, Value>,
    /// Send [`ChatRequest::prefill`] as a trailing assistant message (llama-server continues
    /// it). Turn off for servers that reject a trailing assistant message.
    pub send_prefill: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_string(),
            model: None,
            api_key_env: DEFAULT_API_KEY_ENV.to_string(),
            timeout: Duration::from_secs(120),
            max_attempts: 3,
            backoff: Duration::from_millis(500),
            send_prefill: true,
            extra_body: [("cache_prompt".to_string(), Value::Bool(false))].into_iter().collect(),
        }
    }
}

impl HttpConfig {
    /// Defaults for `base_url` (no llama.cpp-specific fields for `api.openai.com`).
    pub fn for_url(base_url: &str) -> Self {
        let mut c = HttpConfig { base_url: base_url.to_string(), ..HttpConfig::default() };
        if base_url.contains("api.openai.com") {
            c.extra_body.clear();
        }
        c
    }
}

/// The HTTP backend.
#[derive(Debug)]
pub struct HttpLlm {
    config: HttpConfig,
    agent: ureq::Agent,
    model: String,
    model_resolved: bool,
}

enum Attempt {
    Retry(LlmError),
    Fail(LlmError),
}

impl HttpLlm {
    /// Create the client. When `config.model` is `None`, asks the server once for its model id
    /// (`GET {base}/models`), so the cache key names the served model; if that fails the name
    /// is `"default"` (llama-server ignores the name anyway).
    pub fn new(config: HttpConfig) -> Result<Self, LlmError> {
        if !(config.base_url.starts_with("http://") || config.base_url.starts_with("https://")) {
            return Err(LlmError::InvalidInput(format!(
                "LLM URL must start with http:// or https://: {}",
                config.base_url
            )));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let (model, model_resolved) = match &config.model {
            Some(m) => (m.clone(), true),
            None => ("default".to_string(), false),
        };
        let mut llm = Self { config, agent, model, model_resolved };
        llm.resolve_model();
        Ok(llm)
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}", self.config.base_url.trim_end_matches('/'), path)
    }

    fn api_key(&self) -> Option<String> {
        std::env::var(&self.config.api_key_env).ok().filter(|k| !k.trim().is_empty())
    }

    fn resolve_model(&mut self) -> &str {
        if !self.model_resolved {
            self.model_resolved = true;
            let url = self.url("models");
            let mut req = self.agent.get(&url);
            if let Some(key) = self.api_key() {
                req = req.header("Authorization", &format!("Bearer {key}"));
            }
            if let Ok(mut resp) = req.call() {
                if resp.status().is_success() {
                    if let Ok(body) = resp.body_mut().read_to_string() {
                        if let Some(id) = serde_json::from_str::<Value>(&body)
                            .ok()
                            .and_then(|v| v["data"][0]["id"].as_str().map(str::to_string))
                        {
                            // Keep the file name only, so the cache key does not depend on paths.
                            self.model = id.rsplit(['/', '\\']).next().unwrap_or(&id).to_string();
                        }
                    }
                }
            }
        }
        &self.model
    }

    fn attempt(&self, url: &str, body: &str) -> Result<Value, Attempt> {
        let mut req = self.agent.post(url).header("Content-Type", "application/json");
        if let Some(key) = self.api_key() {
            req = req.header("Authorization", &format!("Bearer {key}"));
        }
        let mut resp = match req.send(body) {
            Ok(r) => r,
            Err(e) => {
                return Err(Attempt::Retry(LlmError::Http {
                    url: url.to_string(),
                    attempts: 1,
                    message: e.to_string(),
                }))
            }
        };
        let status = resp.status().as_u16();
        let text = resp.body_mut().with_config().limit(16 << 20).read_to_string().map_err(|e| {
            Attempt::Retry(LlmError::Http { url: url.to_string(), attempts: 1, message: format!("reading body: {e}") })
        })?;
        if !(200..300).contains(&status) {
            let err = LlmError::HttpStatus { url: url.to_string(), status, body: text.chars().take(500).collect() };
            return Err(if status == 408 || status == 429 || status >= 500 {
                Attempt::Retry(err)
            } else {
                Attempt::Fail(err)
            });
        }
        serde_json::from_str(&text).map_err(|e| {
            Attempt::Retry(LlmError::BadResponse {
                url: url.to_string(),
                message: format!("not JSON ({e}): {}", text.chars().take(200).collect::<String>()),
            })
        })
    }
}

impl LlmBackend for HttpLlm {
    fn backend_name(&self) -> &str {
        "http"
    }
    fn model_name(&self) -> &str {
        &self.model
    }

    fn complete(&mut self, request: &ChatRequest) -> Result<Completion, LlmError> {
        let url = self.url("chat/completions");
        let mut messages = Vec::new();
        if !request.system.is_empty() {
            messages.push(json!({"role": "system", "content": request.system}));
        }
        messages.push(json!({"role": "user", "content": request.user}));
        if !request.prefill.is_empty() && self.config.send_prefill {
            // Servers that support assistant prefill (llama-server) continue this message.
            messages.push(json!({"role": "assistant", "content": request.prefill}));
        }
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "temperature": 0.0,
            "top_p": 1.0,
            "seed": 0,
            "max_tokens": request.max_tokens.max(1),
            "stream": false,
        });
        if let Value::Object(map) = &mut body {
            for (k, v) in &self.config.extra_body {
                map.insert(k.clone(), v.clone());
            }
        }
        let body = body.to_string();
        let start = Instant::now();
        let attempts = self.config.max_attempts.max(1);
        let mut backoff = self.config.backoff;
        let mut last = None;
        for attempt in 1..=attempts {
            match self.attempt(&url, &body) {
                Ok(v) => {
                    let text = v["choices"][0]["message"]["content"].as_str().ok_or_else(|| LlmError::BadResponse {
                        url: url.clone(),
                        message: format!(
                            "no choices[0].message.content in {}",
                            v.to_string().chars().take(200).collect::<String>()
                        ),
                    })?;
                    let usage = |k: &str| v["usage"][k].as_u64().map(|n| n as usize);
                    // Continuations come without the prefill: put it back so the text is whole.
                    let text = if request.prefill.is_empty()
                        || !self.config.send_prefill
                        || text.trim_start().starts_with(request.prefill.trim())
                    {
                        text.to_string()
                    } else {
                        format!("{}{text}", request.prefill)
                    };
                    return Ok(Completion {
                        text,
                        prompt_tokens: usage("prompt_tokens").unwrap_or(0),
                        completion_tokens: usage("completion_tokens").unwrap_or(0),
                        elapsed: start.elapsed(),
                        cached: false,
                    });
                }
                Err(Attempt::Fail(e)) => return Err(e),
                Err(Attempt::Retry(e)) => {
                    tracing::warn!(attempt, attempts, error = %e, "LLM request failed");
                    last = Some(e);
                    if attempt < attempts {
                        std::thread::sleep(backoff);
                        backoff = backoff.saturating_mul(2);
                    }
                }
            }
        }
        Err(match last {
            Some(LlmError::Http { url, message, .. }) => LlmError::Http { url, attempts, message },
            Some(e) => e,
            None => LlmError::Http { url, attempts, message: "no attempt made".into() },
        })
    }
}
