//! `GET /v1/alarms/{id}/explain`: why an alarm (`<entity>:<row>`) fired — its top contributing
//! columns, each with its value at the alarm against the window before it — and, where an LLM
//! is configured (`[llm]` in `lara.toml`: a local GGUF or an OpenAI-compatible server), the
//! LLM's short reason given the operators' expert documents (CoLLaTe's backends).

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::api::{bad, ok_json, Answer, Req};
use crate::config::LlmConfig;
use crate::{ServerError, Service};

/// Rows of history shown around an alarm (at most; the model's window when shorter).
const CONTEXT_ROWS: u64 = 100;

/// The configured LLM, loaded on the first explanation (a local model takes seconds and
/// hundreds of MB), with the expert documents read at start-up.
pub struct Explainer {
    cfg: LlmConfig,
    docs: lara_llm::prompt::ExpertDocs,
    backend: Mutex<Option<Box<dyn lara_llm::LlmBackend + Send>>>,
}

impl Explainer {
    pub fn new(cfg: &LlmConfig) -> Result<Explainer, ServerError> {
        let docs = lara_llm::prompt::ExpertDocs::load(&cfg.docs).map_err(|e| ServerError::Config(format!("llm.docs: {e}")))?;
        Ok(Explainer { cfg: cfg.clone(), docs, backend: Mutex::new(None) })
    }
}

/// A column's part in an alarm.
fn column_view(name: &str, window: &[Vec<f32>], j: usize) -> Value {
    let vals: Vec<f64> = window.iter().filter_map(|r| r.get(j).map(|&v| f64::from(v))).collect();
    let Some(&now) = vals.last() else { return json!({ "column": name }) };
    let before = &vals[..vals.len() - 1];
    let n = before.len().max(1) as f64;
    let mean = before.iter().sum::<f64>() / n;
    let sd = (before.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    let (lo, hi) = before.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    json!({
        "column": name,
        "value": now,
        "window_mean": mean,
        "window_min": if before.is_empty() { Value::Null } else { json!(lo) },
        "window_max": if before.is_empty() { Value::Null } else { json!(hi) },
        "z": if sd > 0.0 { json!((now - mean) / sd) } else { Value::Null },
    })
}

pub(crate) fn get_explain(s: &Arc<Service>, r: &mut Req) -> Answer {
    let run = || -> Result<Answer, Answer> {
        let id = r.params[0].clone();
        let (ent, row) = id
            .rsplit_once(':')
            .and_then(|(e, row)| Some((e.to_string(), row.parse::<u64>().ok()?)))
            .ok_or_else(|| bad(400, format!("alarm id {id:?}: expected <entity>:<row>")))?;
        let (columns, window) = match crate::entities::entity(s, &ent) {
            Some(e) => {
                let e = e.lock().expect("entity lock");
                (e.monitor.columns().to_vec(), e.monitor.base().map_or(CONTEXT_ROWS, |b| b.meta.options.window as u64))
            }
            None => return Err(bad(404, format!("no entity {ent:?}"))),
        };
        let result = s.store.results(&ent, row, row, 1).map_err(|e| bad(500, e.to_string()))?;
        let result: Value = match result.first() {
            Some(b) => serde_json::from_slice(b).map_err(|e| bad(500, e.to_string()))?,
            None => return Err(bad(404, format!("entity {ent:?} has no row {row}"))),
        };
        if result["is_anomaly"].as_bool() != Some(true) {
            return Err(bad(404, format!("row {row} of entity {ent:?} is not anomalous")));
        }
        let span = window.clamp(2, CONTEXT_ROWS);
        let rows = s
            .store
            .rows(&ent, row.saturating_sub(span - 1), row, span as usize)
            .map_err(|e| bad(500, e.to_string()))?;
        let top: Vec<usize> = result["top_dims"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_u64().map(|j| j as usize)).filter(|&j| j < columns.len()).collect())
            .unwrap_or_default();
        let top_columns: Vec<Value> = top.iter().map(|&j| column_view(&columns[j], &rows, j)).collect();
        let mut out = json!({
            "id": id,
            "entity": ent,
            "row": row,
            "timestamp": result["timestamp"],
            "score": result["score"],
            "threshold": result["threshold"],
            "p_anomaly": result["p_anomaly"],
            "state": result["state"],
            "model_version": result["model_version"],
            "window_rows": rows.len(),
            "top_columns": top_columns,
            "reason": Value::Null,
        });
        match &s.explainer {
            None => out["llm"] = json!("not configured ([llm] in lara.toml)"),
            Some(x) => match x.reason(&ent, &columns, &rows, &top, &result, &top_columns) {
                Ok(reason) => {
                    out["reason"] = json!(reason.text);
                    out["llm"] = json!({ "backend": x.cfg.backend, "seconds": reason.seconds,
                                         "prompt_tokens": reason.prompt_tokens, "completion_tokens": reason.completion_tokens });
                }
                Err(e) => out["llm"] = json!({ "backend": x.cfg.backend, "error": e }),
            },
        }
        Ok(ok_json(200, &out))
    };
    run().unwrap_or_else(|a| a)
}

/// The LLM's answer for one alarm.
pub(crate) struct Reason {
    pub text: String,
    pub seconds: f64,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

impl Explainer {
    /// The LLM's reason for an alarm at the last row of `rows` (loads the backend on first use;
    /// one explanation at a time).
    fn reason(
        &self,
        entity: &str,
        columns: &[String],
        rows: &[Vec<f32>],
        top: &[usize],
        result: &Value,
        views: &[Value],
    ) -> Result<Reason, String> {
        if rows.is_empty() {
            return Err("no stored rows for this alarm".into());
        }
        let mut guard = self.backend.lock().map_err(|_| "the LLM backend failed earlier".to_string())?;
        if guard.is_none() {
            let which = match self.cfg.backend.as_str() {
                "openai" => lara_llm::explain::ExplainBackend::OpenAi {
                    url: self.cfg.url.clone().unwrap_or_default(),
                    model: self.cfg.model.clone(),
                },
                _ => lara_llm::explain::ExplainBackend::Local { gguf: self.cfg.model.as_deref().map(expand_home) },
            };
            *guard = Some(lara_llm::explain::open_explain_backend(&which).map_err(|e| e.to_string())?);
        }
        let backend = guard.as_mut().expect("loaded above");
        let ctx = lara_llm::explain::AlarmContext {
            entity: entity.to_string(),
            columns: columns.to_vec(),
            window: rows.to_vec(),
            alarm_row: rows.len() - 1,
            // Each top column with its z-score against the window before the alarm.
            top_columns: top
                .iter()
                .zip(views)
                .map(|(&j, v)| (columns[j].clone(), v["z"].as_f64().unwrap_or(0.0)))
                .collect(),
            score: result["score"].as_f64().unwrap_or(f64::NAN),
            threshold: result["threshold"].as_f64().unwrap_or(f64::NAN),
        };
        let config = lara_llm::explain::ExplainConfig { max_tokens: self.cfg.max_tokens, ..Default::default() };
        let x = lara_llm::explain::explain_alarm_with(backend.as_mut(), &self.docs, &ctx, &config)
            .map_err(|e| e.to_string())?;
        Ok(Reason {
            text: x.reason,
            seconds: x.seconds,
            prompt_tokens: x.prompt_tokens,
            completion_tokens: x.completion_tokens,
        })
    }
}

/// `~/x` → `$HOME/x`.
fn expand_home(p: &str) -> std::path::PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => std::path::Path::new(&home).join(rest),
        _ => p.into(),
    }
}
