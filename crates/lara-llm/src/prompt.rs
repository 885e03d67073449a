//! Set-up / pitch prompting (digest §A.2) from operators' expert documents.
//!
//! * **Set-up block** (system message): role, what the monitored system and its metrics are,
//!   the rules and normal ranges excerpted from the expert documents, the answer format.
//! * **Pitch block** (user message): the window, one line per named channel with fixed
//!   precision, under a line of time indices `t` (0-based within the window); asks for
//!   `{"score": 0..1, "anomalous_steps": [...], "reason": "..."}`.
//!
//! Token budget (SmolLM2-135M: small context, ~23 tok/s): long windows are downsampled to at
//! most `max_points` steps (per bin the step farthest from the window's median is kept, so
//! spikes survive), at most `max_channels` channels are shown (highest `channel_priority`
//! first, e.g. per-channel reconstruction error), the document excerpt is capped at
//! `max_doc_chars`, and all three are halved until the prompt fits `max_prompt_tokens`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::backend::{ChatRequest, LlmBackend};
use crate::error::LlmError;

/// Expert documents split into sections (a markdown heading starts a section).
#[derive(Debug, Clone, Default)]
pub struct ExpertDocs {
    sections: Vec<DocSection>,
}

#[derive(Debug, Clone)]
struct DocSection {
    heading: String,
    body: String,
}

/// Largest document file read (bytes); larger files are an error, not a silent truncation.
pub const MAX_DOC_BYTES: u64 = 4 << 20;

impl ExpertDocs {
    /// Read documents from files and directories (a directory contributes its `.md`,
    /// `.markdown` and `.txt` files except README.*, recursively, in path order).
    pub fn load(paths: &[PathBuf]) -> Result<Self, LlmError> {
        let mut files = Vec::new();
        for p in paths {
            collect_files(p, &mut files)?;
        }
        files.sort();
        let mut docs = ExpertDocs::default();
        for f in files {
            let size = fs::metadata(&f).map_err(|e| LlmError::io(&f, e))?.len();
            if size > MAX_DOC_BYTES {
                return Err(LlmError::InvalidInput(format!(
                    "{}: expert document over {MAX_DOC_BYTES} bytes",
                    f.display()
                )));
            }
            let bytes = fs::read(&f).map_err(|e| LlmError::io(&f, e))?;
            let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            docs.add_text(&name, &String::from_utf8_lossy(&bytes));
        }
        Ok(docs)
    }

    /// Documents from in-memory text.
    pub fn from_text(source: &str, text: &str) -> Self {
        let mut d = ExpertDocs::default();
        d.add_text(source, text);
        d
    }

    /// Append a document.
    pub fn add_text(&mut self, source: &str, text: &str) {
        let mut heading = source.to_string();
        let mut body = String::new();
        for line in text.lines() {
            if line.trim_start().starts_with('#') {
                self.push(&heading, &body);
                heading = line.trim_start().trim_start_matches('#').trim().to_string();
                body.clear();
            } else {
                body.push_str(line.trim_end());
                body.push('\n');
            }
        }
        self.push(&heading, &body);
    }

    fn push(&mut self, heading: &str, body: &str) {
        let body = body.trim();
        if !body.is_empty() {
            self.sections.push(DocSection { heading: heading.to_string(), body: body.to_string() });
        }
    }

    /// True when no document text was loaded.
    pub fn is_empty(&self) -> bool {
        self.sections.is_empty()
    }

    /// At most `max_chars` of document text, preferring the sections that mention the most
    /// `keywords` (case-insensitive; e.g. channel and system names), in document order.
    pub fn excerpt(&self, keywords: &[String], max_chars: usize) -> String {
        let kws: Vec<String> = keywords
            .iter()
            .flat_map(|k| k.split(|c: char| !c.is_alphanumeric()).map(str::to_lowercase).collect::<Vec<_>>())
            .filter(|k| k.len() >= 3)
            .collect();
        let mut ranked: Vec<(usize, usize)> = self
            .sections
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let text = format!("{} {}", s.heading, s.body).to_lowercase();
                (i, kws.iter().filter(|k| text.contains(k.as_str())).count())
            })
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut chosen: Vec<(usize, String)> = Vec::new();
        let mut used = 0;
        for (i, _) in ranked {
            if used >= max_chars {
                break;
            }
            let s = &self.sections[i];
            let full = format!("[{}]\n{}\n", s.heading, s.body);
            let part = truncate_lines(&full, max_chars - used);
            // A heading without any of its body says nothing: skip it.
            if part.trim_end().lines().count() < 2 {
                continue;
            }
            used += part.len();
            chosen.push((i, part));
        }
        chosen.sort_by_key(|c| c.0);
        chosen.into_iter().map(|c| c.1).collect::<String>().trim_end().to_string()
    }
}

fn collect_files(p: &Path, out: &mut Vec<PathBuf>) -> Result<(), LlmError> {
    let meta = fs::metadata(p).map_err(|e| LlmError::io(p, e))?;
    if meta.is_file() {
        out.push(p.to_path_buf());
    } else if meta.is_dir() {
        let entries = fs::read_dir(p).map_err(|e| LlmError::io(p, e))?;
        for e in entries {
            let e = e.map_err(|e| LlmError::io(p, e))?;
            let path = e.path();
            if path.is_dir() {
                collect_files(&path, out)?;
            } else if matches!(path.extension().and_then(|x| x.to_str()), Some("md" | "markdown" | "txt"))
                && !path.file_stem().is_some_and(|s| s.eq_ignore_ascii_case("readme"))
            {
                out.push(path);
            }
        }
    }
    Ok(())
}

/// Keep whole lines up to `max` bytes (cutting one long line at a char boundary if needed).
fn truncate_lines(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut out = String::new();
    for line in s.split_inclusive('\n') {
        if out.len() + line.len() > max {
            if out.is_empty() {
                let mut end = max;
                while !line.is_char_boundary(end) {
                    end -= 1;
                }
                out.push_str(&line[..end]);
            }
            break;
        }
        out.push_str(line);
    }
    out
}

/// One named channel of a window.
#[derive(Debug, Clone)]
pub struct Channel<'a> {
    pub name: &'a str,
    pub values: &'a [f64],
}

/// A window to show the LLM: channels of equal length L (time index t = 0..L−1).
#[derive(Debug, Clone)]
pub struct WindowView<'a> {
    pub channels: Vec<Channel<'a>>,
    /// Optional per-channel importance (same order as `channels`), e.g. the detector's
    /// per-channel reconstruction error; the highest are shown when channels must be dropped.
    pub channel_priority: Option<Vec<f64>>,
}

/// Prompt settings.
#[derive(Debug, Clone)]
pub struct PromptConfig {
    /// What is monitored, e.g. "a web service monitored with AWS CloudWatch".
    pub system_description: String,
    pub max_doc_chars: usize,
    pub max_points: usize,
    pub max_channels: usize,
    pub significant_digits: usize,
    /// Prompt budget (system + user) in tokens.
    pub max_prompt_tokens: usize,
    /// Generation budget.
    pub max_new_tokens: usize,
    /// Forced start of the answer (see [`ChatRequest::prefill`]); default `{"score":`.
    pub answer_prefill: String,
}

impl Default for PromptConfig {
    fn default() -> Self {
        Self {
            system_description: "a monitored IT system".to_string(),
            max_doc_chars: 900,
            max_points: 32,
            max_channels: 6,
            significant_digits: 3,
            max_prompt_tokens: 800,
            max_new_tokens: 48,
            answer_prefill: "{\"score\":".to_string(),
        }
    }
}

/// A built prompt and what it shows.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub request: ChatRequest,
    /// Window length L (bound for `anomalous_steps`).
    pub window_len: usize,
    /// The time indices shown (after downsampling).
    pub shown_steps: Vec<usize>,
    /// The channel names shown.
    pub shown_channels: Vec<String>,
    /// Token count of system + user (exact when the backend can count, else estimated).
    pub prompt_tokens: usize,
}

/// Build the set-up + pitch prompt for one window. `llm` (optional) counts tokens exactly.
pub fn build_prompt(
    docs: &ExpertDocs,
    window: &WindowView<'_>,
    config: &PromptConfig,
    llm: Option<&dyn LlmBackend>,
) -> Result<Prompt, LlmError> {
    if window.channels.is_empty() {
        return Err(LlmError::InvalidInput("window has no channels".into()));
    }
    let len = window.channels[0].values.len();
    if len == 0 || window.channels.iter().any(|c| c.values.len() != len) {
        return Err(LlmError::InvalidInput("window channels must be non-empty and of equal length".into()));
    }
    if let Some(p) = &window.channel_priority {
        if p.len() != window.channels.len() {
            return Err(LlmError::InvalidInput("channel_priority length differs from channels".into()));
        }
    }
    let count = |text: &str| llm.and_then(|l| l.count_tokens(text)).unwrap_or_else(|| text.len().div_ceil(3));
    let (mut doc_chars, mut points, mut channels) =
        (config.max_doc_chars, config.max_points.max(2), config.max_channels.max(1));
    loop {
        let prompt = render(docs, window, config, doc_chars, points, channels);
        let tokens = count(&prompt.request.system) + count(&prompt.request.user) + 12;
        let fits = tokens <= config.max_prompt_tokens;
        if fits || (doc_chars <= 200 && points <= 8 && channels <= 1) {
            if !fits {
                tracing::warn!(tokens, budget = config.max_prompt_tokens, "prompt over budget at minimum size");
            }
            return Ok(Prompt { prompt_tokens: tokens, ..prompt });
        }
        if doc_chars > 200 {
            doc_chars = (doc_chars / 2).max(200);
        } else if points > 8 {
            points = (points / 2).max(8);
        } else {
            channels = (channels / 2).max(1);
        }
    }
}

fn render(
    docs: &ExpertDocs,
    w: &WindowView<'_>,
    cfg: &PromptConfig,
    doc_chars: usize,
    points: usize,
    max_channels: usize,
) -> Prompt {
    let len = w.channels[0].values.len();
    // Channels: by priority (desc), ties in given order; shown in given order.
    let mut order: Vec<usize> = (0..w.channels.len()).collect();
    if let Some(p) = &w.channel_priority {
        let key = |i: usize| if p[i].is_nan() { f64::NEG_INFINITY } else { p[i] };
        order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
    }
    order.truncate(max_channels);
    order.sort_unstable();
    let steps = downsample_steps(w, &order, points);

    let names: Vec<String> = order.iter().map(|&c| w.channels[c].name.to_string()).collect();
    let mut keywords = names.clone();
    keywords.push(cfg.system_description.clone());
    let excerpt = docs.excerpt(&keywords, doc_chars);
    let mut system = format!(
        "You are an expert operator of {}. You judge whether a window of its monitoring data is anomalous.\n",
        cfg.system_description
    );
    if !excerpt.is_empty() {
        system.push_str("Operator notes (rules and normal ranges):\n");
        system.push_str(&excerpt);
        system.push('\n');
    }
    system.push_str(
        "Answer with JSON only, in this form: {\"score\": S, \"anomalous_steps\": [T, ...], \"reason\": \"...\"} \
         where S is a number from 0 (normal) to 1 (certainly anomalous), T are t values of anomalous steps, \
         and the reason has at most 12 words.",
    );

    let mut user = String::new();
    if steps.len() < len {
        user.push_str(&format!("Window of {len} steps; {} shown (t = time index).\n", steps.len()));
    } else {
        user.push_str(&format!("Window of {len} steps (t = time index).\n"));
    }
    user.push_str("t:");
    for &t in &steps {
        user.push_str(&format!(" {t}"));
    }
    user.push('\n');
    for &c in &order {
        let ch = &w.channels[c];
        let exp = engineering_exponent(ch.values);
        let unit = 10f64.powi(exp);
        let scaled: Vec<f64> = ch.values.iter().map(|v| v / unit).collect();
        let decimals = decimals_for(&scaled, cfg.significant_digits);
        user.push_str(ch.name);
        if exp != 0 {
            user.push_str(&format!(" (x1e{exp})"));
        }
        user.push(':');
        for &t in &steps {
            let v = scaled[t];
            if v.is_finite() {
                user.push_str(&format!(" {v:.decimals$}"));
            } else {
                user.push_str(" nan");
            }
        }
        user.push('\n');
    }
    user.push_str("Is this window anomalous? Reply with the JSON object.");
    Prompt {
        request: ChatRequest { system, user, max_tokens: cfg.max_new_tokens, prefill: cfg.answer_prefill.clone() },
        window_len: len,
        shown_steps: steps,
        shown_channels: names,
        prompt_tokens: 0,
    }
}

/// Power of ten (a multiple of 3) that brings the channel's largest magnitude into [1, 1000)
/// when it is ≥ 1000 or < 0.01 (fewer digits = fewer tokens); else 0.
pub(crate) fn engineering_exponent(values: &[f64]) -> i32 {
    let m = values.iter().filter(|x| x.is_finite()).fold(0.0f64, |a, &x| a.max(x.abs()));
    if m == 0.0 || (0.01..1000.0).contains(&m) {
        return 0;
    }
    (m.log10() / 3.0).floor() as i32 * 3
}

/// Decimals so that the channel's largest magnitude has `sig` significant digits (0..=6).
pub(crate) fn decimals_for(values: &[f64], sig: usize) -> usize {
    let m = values.iter().filter(|x| x.is_finite()).fold(0.0f64, |a, &x| a.max(x.abs()));
    if m == 0.0 {
        return 0;
    }
    let mag = m.log10().floor() as i64;
    (sig as i64 - 1 - mag).clamp(0, 6) as usize
}

/// All steps when L ≤ points; else one step per bin, the one farthest from the channels'
/// medians in units of their spread (robust z summed over the shown channels).
fn downsample_steps(w: &WindowView<'_>, channels: &[usize], points: usize) -> Vec<usize> {
    let len = w.channels[0].values.len();
    if len <= points {
        return (0..len).collect();
    }
    let stats: Vec<(f64, f64)> = channels
        .iter()
        .map(|&c| {
            let mut v: Vec<f64> = w.channels[c].values.iter().copied().filter(|x| x.is_finite()).collect();
            v.sort_by(f64::total_cmp);
            if v.is_empty() {
                return (0.0, 1.0);
            }
            let med = v[v.len() / 2];
            let mut dev: Vec<f64> = v.iter().map(|x| (x - med).abs()).collect();
            dev.sort_by(f64::total_cmp);
            let mad = dev[dev.len() / 2];
            (med, if mad > 0.0 { mad } else { 1.0 })
        })
        .collect();
    let z = |t: usize| -> f64 {
        channels
            .iter()
            .zip(&stats)
            .map(|(&c, &(med, mad))| {
                let x = w.channels[c].values[t];
                if x.is_finite() {
                    (x - med).abs() / mad
                } else {
                    f64::INFINITY
                }
            })
            .sum()
    };
    (0..points)
        .map(|b| {
            let lo = b * len / points;
            let hi = ((b + 1) * len / points).max(lo + 1);
            (lo..hi).fold(lo, |best, t| if z(t) > z(best) { t } else { best })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_prefers_matching_sections_and_caps_length() {
        let docs = ExpertDocs::from_text(
            "ops.md",
            "# CPU\nCPU utilisation normally 20-60%.\n# Disk\nDisk writes under 100 MB/s.\n# Network\nNetworkIn below 5 GB/h.\n",
        );
        let e = docs.excerpt(&["NetworkIn".into()], 1000);
        assert!(e.contains("NetworkIn below"));
        let e = docs.excerpt(&["networkin".into()], 45);
        assert!(e.len() <= 45 && e.contains("NetworkIn below") && !e.contains("CPU"), "{e}");
    }

    #[test]
    fn prompt_fits_budget_and_keeps_spikes() {
        let mut v: Vec<f64> = (0..500).map(|i| 50.0 + (i % 7) as f64 * 0.1).collect();
        v[333] = 99.0;
        let w = WindowView { channels: vec![Channel { name: "cpu_util", values: &v }], channel_priority: None };
        let docs = ExpertDocs::from_text("d", &"# CPU\ncpu_util normal 40-60.\n".repeat(200));
        let cfg = PromptConfig { max_prompt_tokens: 400, ..PromptConfig::default() };
        let p = build_prompt(&docs, &w, &cfg, None).unwrap();
        assert!(p.prompt_tokens <= 400, "{}", p.prompt_tokens);
        assert!(p.shown_steps.contains(&333));
        assert!(p.request.user.contains("99.0"));
        assert_eq!(p.window_len, 500);
        let bad = WindowView { channels: vec![], channel_priority: None };
        assert!(build_prompt(&docs, &bad, &cfg, None).is_err());
    }

    #[test]
    fn channel_priority_selects_channels() {
        let a = [1.0, 2.0];
        let b = [3.0, 4.0];
        let c = [5.0, 6.0];
        let w = WindowView {
            channels: vec![
                Channel { name: "a", values: &a },
                Channel { name: "b", values: &b },
                Channel { name: "c", values: &c },
            ],
            channel_priority: Some(vec![0.1, 5.0, 3.0]),
        };
        let cfg = PromptConfig { max_channels: 2, ..PromptConfig::default() };
        let p = build_prompt(&ExpertDocs::default(), &w, &cfg, None).unwrap();
        assert_eq!(p.shown_channels, vec!["b".to_string(), "c".to_string()]);
    }
}
