//! A short, human-readable reason for one alarm (the service's `GET /v1/alarms/{id}/explain`).
//!
//! [`explain_alarm`] builds one small chat request from an [`AlarmContext`]:
//!
//! * system block: the role (explain an alarm to an on-call engineer in one to three
//!   sentences) and an excerpt of the operators' expert documents, chosen by
//!   [`ExpertDocs::excerpt`] with the top contributing columns as keywords;
//! * user block: entity, alarm row, score vs threshold, the top columns with their
//!   contributions, and those columns' values over the recent window (at most
//!   [`ExplainConfig::max_points`] rows, ending a few rows after the alarm row), with the same
//!   number formatting as the CoLLaTe prompts;
//!
//! asks the backend (greedy, [`ExplainConfig::max_tokens`] new tokens, 80 by default) and
//! returns the cleaned answer (one line, at most three sentences) with the token counts and the
//! time taken. Opening a backend from a service config: [`open_explain_backend`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::backend::{ChatRequest, LlmBackend};
use crate::error::LlmError;
use crate::http::{HttpConfig, HttpLlm};
use crate::local::{default_model_path, LocalLlm};
use crate::prompt::{decimals_for, engineering_exponent, ExpertDocs};

/// What is known about one alarm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmContext {
    /// The entity (series) the alarm is on.
    pub entity: String,
    /// Column names, in the order of each window row.
    pub columns: Vec<String>,
    /// The recent window, oldest row first: `window[r][c]` is column `c` at row `r`; every row
    /// has `columns.len()` values (non-finite values are shown as `nan`).
    pub window: Vec<Vec<f32>>,
    /// Index into `window` of the alarmed row.
    pub alarm_row: usize,
    /// The columns that contribute most to the score, with their contributions (e.g. the
    /// share of the anomaly score), most important first. Names must be in `columns`. Empty =
    /// the first [`ExplainConfig::max_columns`] columns are shown, without contributions.
    pub top_columns: Vec<(String, f64)>,
    /// Anomaly score of the alarmed row.
    pub score: f64,
    /// The alarm threshold the score crossed.
    pub threshold: f64,
}

/// An explanation and what it cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// One to three sentences, on one line.
    pub reason: String,
    /// Prompt tokens as counted by the backend.
    pub prompt_tokens: usize,
    /// Generated tokens.
    pub completion_tokens: usize,
    /// Wall time of the generation (for a cached answer: the time recorded when it was made).
    pub seconds: f64,
}

/// Settings of [`explain_alarm_with`]; [`ExplainConfig::default`] is what [`explain_alarm`] uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainConfig {
    /// Upper bound on generated tokens.
    pub max_tokens: usize,
    /// Upper bound on the expert-document excerpt, in bytes.
    pub max_doc_chars: usize,
    /// At most this many window rows are shown.
    pub max_points: usize,
    /// At most this many columns are shown (the top ones).
    pub max_columns: usize,
    /// Significant digits of the shown values.
    pub significant_digits: usize,
    /// Start the answer with a factual lead computed from the window (part of the reason),
    /// e.g. `At t=44, cpu_utilization rose to 97.5 (typical 33.0) and latency_ms rose to 850
    /// (typical 40.0).`; the model continues it with a likely cause.
    /// Small local models otherwise tend to restate the score instead of the metrics.
    pub prefill: bool,
}

impl Default for ExplainConfig {
    fn default() -> Self {
        Self {
            max_tokens: 80,
            max_doc_chars: 600,
            max_points: 16,
            max_columns: 3,
            significant_digits: 3,
            prefill: true,
        }
    }
}

/// Explain one alarm with [`ExplainConfig::default`] (80 new tokens at most). See the module docs.
///
/// Errors: [`LlmError::InvalidInput`] for an inconsistent `ctx` (no columns or rows, ragged
/// rows, `alarm_row` out of range, a top column that is not a column); the backend's errors
/// (model missing, server down, context overflow); [`LlmError::EmptyAnswer`] when the answer is
/// empty after cleaning.
pub fn explain_alarm(
    backend: &mut dyn LlmBackend,
    docs: &ExpertDocs,
    ctx: &AlarmContext,
) -> Result<Explanation, LlmError> {
    explain_alarm_with(backend, docs, ctx, &ExplainConfig::default())
}

/// [`explain_alarm`] with explicit settings.
pub fn explain_alarm_with(
    backend: &mut dyn LlmBackend,
    docs: &ExpertDocs,
    ctx: &AlarmContext,
    config: &ExplainConfig,
) -> Result<Explanation, LlmError> {
    let request = explain_request(docs, ctx, config)?;
    let completion = backend.complete(&request)?;
    let reason = clean_reason(&completion.text);
    if reason.is_empty() {
        return Err(LlmError::EmptyAnswer {
            backend: backend.backend_name().to_string(),
            model: backend.model_name().to_string(),
            what: format!("the explanation of alarm {}:{}", ctx.entity, ctx.alarm_row),
        });
    }
    Ok(Explanation {
        reason,
        prompt_tokens: completion.prompt_tokens,
        completion_tokens: completion.completion_tokens,
        seconds: completion.elapsed.as_secs_f64(),
    })
}

/// The chat request [`explain_alarm_with`] sends (exposed for logging and tests).
pub fn explain_request(docs: &ExpertDocs, ctx: &AlarmContext, config: &ExplainConfig) -> Result<ChatRequest, LlmError> {
    let shown = validate(ctx, config)?;
    let names: Vec<String> = shown.iter().map(|&(c, _)| ctx.columns[c].clone()).collect();
    let excerpt = docs.excerpt(&names, config.max_doc_chars);

    let mut system = String::from(
        "You are an expert operator of a monitored system. You explain an anomaly alarm to an on-call \
         engineer in one to three short sentences: which metrics behave unusually and what that may mean. \
         Answer in plain text, without lists or JSON.\n",
    );
    if !excerpt.is_empty() {
        system.push_str("Operator notes (rules and normal ranges):\n");
        system.push_str(&excerpt);
        system.push('\n');
    }

    let rows = ctx.window.len();
    let (lo, hi) = shown_rows(rows, ctx.alarm_row, config.max_points.max(1));
    let mut user = format!(
        "Alarm on {} at t={} (anomaly score {} above threshold {}).\n",
        ctx.entity,
        ctx.alarm_row,
        fmt_num(ctx.score),
        fmt_num(ctx.threshold)
    );
    if shown.iter().any(|(_, contrib)| contrib.is_some()) {
        user.push_str("Metrics that contribute most to the score:");
        for (k, &(c, contrib)) in shown.iter().enumerate() {
            let sep = if k == 0 { " " } else { ", " };
            match contrib {
                Some(v) => user.push_str(&format!("{sep}{} ({})", ctx.columns[c], fmt_num(v))),
                None => user.push_str(&format!("{sep}{}", ctx.columns[c])),
            }
        }
        user.push_str(".\n");
    }
    user.push_str(&format!("Recent values (t = row; the alarm is at t={}):\nt:", ctx.alarm_row));
    for t in lo..hi {
        user.push_str(&format!(" {t}"));
    }
    user.push('\n');
    for &(c, _) in &shown {
        let values: Vec<f64> = ctx.window[lo..hi].iter().map(|row| f64::from(row[c])).collect();
        let exp = engineering_exponent(&values);
        let unit = 10f64.powi(exp);
        let scaled: Vec<f64> = values.iter().map(|v| v / unit).collect();
        let decimals = decimals_for(&scaled, config.significant_digits);
        user.push_str(&ctx.columns[c]);
        if exp != 0 {
            user.push_str(&format!(" (x1e{exp})"));
        }
        user.push(':');
        for v in scaled {
            if v.is_finite() {
                user.push_str(&format!(" {v:.decimals$}"));
            } else {
                user.push_str(" nan");
            }
        }
        user.push('\n');
    }
    let t = ctx.alarm_row;
    user.push_str(&format!(
        "In one to three sentences: which metrics are unusual at t={t}, and what may be the cause?"
    ));
    let prefill = if config.prefill { lead(ctx, &shown) } else { String::new() };
    Ok(ChatRequest { system, user, max_tokens: config.max_tokens.max(1), prefill })
}

/// The factual start of the answer: each shown column's value at the alarm row against its
/// median over the rest of the window, e.g.
/// `At t=44, cpu_utilization rose to 97.5 (typical 33.0) and latency_ms rose to 850 (typical 40.0).`
fn lead(ctx: &AlarmContext, shown: &[(usize, Option<f64>)]) -> String {
    let t = ctx.alarm_row;
    let parts: Vec<String> = shown
        .iter()
        .map(|&(c, _)| {
            let name = &ctx.columns[c];
            let at = f64::from(ctx.window[t][c]);
            let mut others: Vec<f64> = ctx
                .window
                .iter()
                .enumerate()
                .filter(|&(r, _)| r != t)
                .map(|(_, row)| f64::from(row[c]))
                .filter(|v| v.is_finite())
                .collect();
            if !at.is_finite() {
                return format!("{name} is missing");
            }
            if others.is_empty() {
                return format!("{name} is {}", fmt_num(at));
            }
            others.sort_by(f64::total_cmp);
            let typical = others[others.len() / 2];
            let verb = if at > typical {
                "rose to"
            } else if at < typical {
                "fell to"
            } else {
                "stayed at"
            };
            format!("{name} {verb} {} (typical {})", fmt_num(at), fmt_num(typical))
        })
        .collect();
    let joined = match parts.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => parts.join(""),
    };
    format!("At t={t}, {joined}.")
}

/// Checks `ctx`; returns the columns to show (index, contribution) in importance order.
fn validate(ctx: &AlarmContext, config: &ExplainConfig) -> Result<Vec<(usize, Option<f64>)>, LlmError> {
    let bad = |m: String| Err(LlmError::InvalidInput(format!("alarm context of {:?}: {m}", ctx.entity)));
    if ctx.columns.is_empty() {
        return bad("no columns".into());
    }
    if ctx.window.is_empty() {
        return bad("empty window".into());
    }
    if let Some((r, row)) = ctx.window.iter().enumerate().find(|(_, row)| row.len() != ctx.columns.len()) {
        return bad(format!("window row {r} has {} values for {} columns", row.len(), ctx.columns.len()));
    }
    if ctx.alarm_row >= ctx.window.len() {
        return bad(format!("alarm_row {} outside the window of {} rows", ctx.alarm_row, ctx.window.len()));
    }
    let max_columns = config.max_columns.max(1);
    if ctx.top_columns.is_empty() {
        return Ok((0..ctx.columns.len().min(max_columns)).map(|c| (c, None)).collect());
    }
    let mut shown: Vec<(usize, Option<f64>)> = Vec::new();
    for (name, contrib) in &ctx.top_columns {
        let Some(c) = ctx.columns.iter().position(|n| n == name) else {
            return bad(format!("top column {name:?} is not one of the columns"));
        };
        if shown.len() < max_columns && !shown.iter().any(|&(s, _)| s == c) {
            shown.push((c, Some(*contrib)));
        }
    }
    Ok(shown)
}

/// Rows `[lo, hi)` shown: at most `max` rows (`alarm < rows`), including `alarm` and up to a
/// quarter of `max` rows after it (more when the alarm is near the start of the window).
fn shown_rows(rows: usize, alarm: usize, max: usize) -> (usize, usize) {
    let after = (rows - 1 - alarm).min(max / 4);
    let lo = (alarm + 1 + after).saturating_sub(max);
    (lo, (lo + max).min(rows))
}

/// A number with 3 significant digits, without float noise (`0.873`, `12.5`, `1.23e+06`).
fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    if x == 0.0 {
        return "0".into();
    }
    let mag = x.abs().log10().floor() as i32;
    if !(-3..6).contains(&mag) {
        return format!("{x:.2e}");
    }
    let decimals = (2 - mag).max(0) as usize;
    format!("{x:.decimals$}")
}

/// The answer on one line: cut at a leftover template marker, whitespace collapsed, repeated
/// sentences dropped, at most three sentences, and a trailing unfinished sentence (generation
/// stopped by `max_tokens`) dropped when a complete one precedes it.
pub fn clean_reason(text: &str) -> String {
    let mut t = text.to_string();
    for marker in ["<|im_end|>", "<|im_start|>", "<|endoftext|>"] {
        if let Some(i) = t.find(marker) {
            t.truncate(i);
        }
    }
    let one_line = t.split_whitespace().collect::<Vec<_>>().join(" ");
    // Split after '.', '!' or '?' followed by a space or the end.
    let mut sentences: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut chars = one_line.chars().peekable();
    while let Some(c) = chars.next() {
        current.push(c);
        if matches!(c, '.' | '!' | '?') && chars.peek().is_none_or(|&n| n == ' ') {
            sentences.push(current.trim().to_string());
            current.clear();
        }
    }
    let fragment = current.trim().to_string();
    let mut kept: Vec<String> = Vec::new();
    for s in sentences {
        if !kept.contains(&s) && kept.len() < 3 {
            kept.push(s);
        }
    }
    if kept.is_empty() {
        return fragment;
    }
    kept.join(" ")
}

/// Which LLM explains alarms (the service's `[llm]` section).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExplainBackend {
    /// The in-process GGUF model at `gguf` (default [`default_model_path`], where
    /// `lara llm fetch` puts SmolLM2).
    Local { gguf: Option<PathBuf> },
    /// An OpenAI-compatible server: base URL up to `/v1`, model name (default: the server's
    /// first model). API key from `$LARA_LLM_API_KEY` when set.
    OpenAi { url: String, model: Option<String> },
}

/// Open the backend of `config`, uncached, as a `Send` trait object (it can live behind a
/// mutex shared by server threads). The local model takes ~1 s to load; load it once.
pub fn open_explain_backend(config: &ExplainBackend) -> Result<Box<dyn LlmBackend + Send>, LlmError> {
    Ok(match config {
        ExplainBackend::Local { gguf } => {
            let path = gguf.clone().unwrap_or_else(default_model_path);
            Box::new(LocalLlm::load(&path)?)
        }
        ExplainBackend::OpenAi { url, model } => {
            let mut cfg = HttpConfig::for_url(url);
            cfg.model = model.clone();
            Box::new(HttpLlm::new(cfg)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Completion;
    use std::time::Duration;

    fn ctx() -> AlarmContext {
        let window: Vec<Vec<f32>> =
            (0..40).map(|t| vec![30.0 + (t % 3) as f32, if t == 35 { 2.5e6 } else { 1.0e6 }, 0.5]).collect();
        AlarmContext {
            entity: "web-1".into(),
            columns: vec!["cpu_utilization".into(), "network_in".into(), "disk_queue".into()],
            window,
            alarm_row: 35,
            top_columns: vec![("network_in".into(), 0.81), ("cpu_utilization".into(), 0.12)],
            score: 7.25,
            threshold: 3.1,
        }
    }

    struct Canned(&'static str);
    impl LlmBackend for Canned {
        fn backend_name(&self) -> &str {
            "canned"
        }
        fn model_name(&self) -> &str {
            "canned"
        }
        fn complete(&mut self, r: &ChatRequest) -> Result<Completion, LlmError> {
            assert!(r.max_tokens <= 80);
            Ok(Completion {
                text: self.0.to_string(),
                prompt_tokens: 10,
                completion_tokens: 5,
                elapsed: Duration::from_millis(250),
                cached: false,
            })
        }
    }

    #[test]
    fn request_shows_top_columns_values_and_docs() {
        let docs = ExpertDocs::from_text(
            "ops.md",
            "# Network\nnetwork_in above 2 MB/s means a backup or an attack.\n# Disk\nDisk fine.\n",
        );
        let r = explain_request(&docs, &ctx(), &ExplainConfig::default()).unwrap();
        assert!(r.system.contains("network_in above 2 MB/s"), "{}", r.system);
        assert!(r.user.contains("network_in (0.810), cpu_utilization (0.120)"), "{}", r.user);
        assert!(r.user.contains("network_in (x1e6):") && r.user.contains(" 2.50 "), "{}", r.user);
        assert!(!r.user.contains("disk_queue"), "only the top columns are shown: {}", r.user);
        // 16 rows: 12 up to the alarm, 4 after it.
        assert!(r.user.contains("t: 24 25") && r.user.contains(" 38 39\n"), "{}", r.user);
        assert!(r.user.contains("score 7.25 above threshold 3.10"), "{}", r.user);
        assert_eq!(r.max_tokens, 80);
        assert_eq!(
            r.prefill,
            "At t=35, network_in rose to 2.50e6 (typical 1.00e6) and cpu_utilization rose to 32.0 (typical 31.0)."
        );
        let r = explain_request(&docs, &ctx(), &ExplainConfig { prefill: false, ..ExplainConfig::default() }).unwrap();
        assert!(r.prefill.is_empty());
    }

    #[test]
    fn bad_contexts_are_errors() {
        let docs = ExpertDocs::default();
        let cfg = ExplainConfig::default();
        let mut c = ctx();
        c.alarm_row = 40;
        assert!(matches!(explain_request(&docs, &c, &cfg), Err(LlmError::InvalidInput(m)) if m.contains("alarm_row")));
        let mut c = ctx();
        c.window[3].pop();
        assert!(matches!(explain_request(&docs, &c, &cfg), Err(LlmError::InvalidInput(m)) if m.contains("row 3")));
        let mut c = ctx();
        c.top_columns.push(("nope".into(), 1.0));
        assert!(matches!(explain_request(&docs, &c, &cfg), Err(LlmError::InvalidInput(m)) if m.contains("nope")));
        let mut c = ctx();
        c.window.clear();
        assert!(explain_request(&docs, &c, &cfg).is_err());
        // No top columns: the first columns are shown; NaN values do not break formatting.
        let mut c = ctx();
        c.top_columns.clear();
        c.window[35][0] = f32::NAN;
        let r = explain_request(&docs, &c, &cfg).unwrap();
        assert!(r.user.contains("disk_queue:") && r.user.contains(" nan"), "{}", r.user);
    }

    #[test]
    fn answers_are_cleaned_and_empty_ones_refused() {
        let docs = ExpertDocs::default();
        let mut b = Canned(
            "  Network traffic jumped\n to 2.5 MB/s. This suggests a backup. Or an attack! Extra sentence.<|im_end|>",
        );
        let e = explain_alarm(&mut b, &docs, &ctx()).unwrap();
        assert_eq!(e.reason, "Network traffic jumped to 2.5 MB/s. This suggests a backup. Or an attack!");
        assert_eq!(clean_reason("A b. A b. C d. Unfinished because max_tok"), "A b. C d.");
        assert_eq!(clean_reason("only a fragment"), "only a fragment");
        assert_eq!(clean_reason("3.5 is high? yes"), "3.5 is high?");
        assert_eq!((e.prompt_tokens, e.completion_tokens), (10, 5));
        assert!((e.seconds - 0.25).abs() < 1e-9);
        let mut b = Canned(" \n<|im_end|>");
        assert!(matches!(explain_alarm(&mut b, &docs, &ctx()), Err(LlmError::EmptyAnswer { .. })));
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(fmt_num(0.873_21), "0.873");
        assert_eq!(fmt_num(12.53), "12.5");
        assert_eq!(fmt_num(3.1), "3.10");
        assert_eq!(fmt_num(1_234_567.0), "1.23e6");
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(f64::NAN), "NaN");
        assert_eq!(shown_rows(40, 35, 16), (24, 40));
        assert_eq!(shown_rows(5, 4, 16), (0, 5));
        assert_eq!(shown_rows(100, 10, 16), (0, 16));
    }

    #[test]
    fn backends_are_send() {
        fn send<T: Send>() {}
        send::<LocalLlm>();
        send::<HttpLlm>();
    }
}
