//! Parsing and repair of the LLM's answer `{"score": 0..1, "anomalous_steps": [...], "reason": "..."}`.
//!
//! Repairs, in order: strip code fences and prose around the first JSON object; close a JSON
//! object cut off by the token limit; drop trailing commas; accept the score as a number, a
//! numeric string (`"0.7"`), a percentage (`"70%"`, or a bare number in (1, 100]), and clamp it
//! to [0, 1]; without any JSON object, take the first number after the word "score". When no
//! score can be found the answer is [`ParseError`] — the caller retries and finally records the
//! window as missing, never as a zero.

use serde_json::{Map, Value};

/// A parsed LLM verdict on one window.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Judgement {
    /// Anomaly score in [0, 1].
    pub score: f64,
    /// Time indices (within the original window) the LLM called anomalous; out-of-range or
    /// non-integer entries are dropped.
    pub anomalous_steps: Vec<usize>,
    /// Short reason, one line, at most 200 characters (may be empty).
    pub reason: String,
    /// True when the answer needed a repair (not clean JSON, score out of range, percentage…).
    pub repaired: bool,
}

/// Why an answer could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unusable LLM answer: {0}")]
pub struct ParseError(pub String);

const MAX_REASON_CHARS: usize = 200;

/// Parse `text`; `window_len` bounds `anomalous_steps` (pass `usize::MAX` for no bound).
pub fn parse_judgement(text: &str, window_len: usize) -> Result<Judgement, ParseError> {
    let trimmed = text.trim();
    if let Some((obj, mut repaired)) = find_object(trimmed) {
        repaired |= trimmed.len() != obj.1;
        let map = obj.0;
        let score_value = ["score", "anomaly_score", "anomaly", "probability"].iter().find_map(|k| map.get(*k));
        if let Some((score, score_repaired)) = score_value.and_then(score_from_value) {
            let steps = map
                .get("anomalous_steps")
                .or_else(|| map.get("steps"))
                .map(|v| steps_from_value(v, window_len))
                .unwrap_or_default();
            let reason = map.get("reason").or_else(|| map.get("explanation")).map(value_text).unwrap_or_default();
            return Ok(Judgement {
                score,
                anomalous_steps: steps,
                reason: clean_reason(&reason),
                repaired: repaired || score_repaired,
            });
        }
    }
    // No usable object: look for `score ... <number>` in free text.
    if let Some(score) = score_from_prose(trimmed) {
        let reason = reason_from_prose(trimmed);
        return Ok(Judgement { score, anomalous_steps: Vec::new(), reason: clean_reason(&reason), repaired: true });
    }
    let preview: String = trimmed.chars().take(80).collect();
    Err(ParseError(format!("no score found in {preview:?}")))
}

/// The first JSON object in `text` (parsed as-is, else repaired). Returns the object, the byte
/// length of the source slice it came from, and whether a repair was needed.
type FoundObject = ((Map<String, Value>, usize), bool);

fn find_object(text: &str) -> Option<FoundObject> {
    let mut search = 0;
    while let Some(rel) = text[search..].find('{') {
        let start = search + rel;
        let (end, closed) = scan_object(&text[start..]);
        let candidate = &text[start..start + end];
        if closed {
            if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(candidate) {
                return Some(((m, candidate.len()), false));
            }
        }
        if let Some(m) = repair_object(candidate, closed) {
            return Some(((m, candidate.len()), true));
        }
        search = start + 1;
    }
    None
}

/// A string-aware scan of JSON-ish text over its whole length: where the first bracket closes
/// (byte index just past it), and what is still open at the end.
struct BracketScan {
    first_close: Option<usize>,
    /// Closing characters owed, innermost last.
    open: Vec<char>,
    in_str: bool,
    escaped: bool,
}

fn scan_brackets(s: &str) -> BracketScan {
    let mut scan = BracketScan { first_close: None, open: Vec::new(), in_str: false, escaped: false };
    for (i, c) in s.char_indices() {
        if scan.in_str {
            match c {
                _ if scan.escaped => scan.escaped = false,
                '\\' => scan.escaped = true,
                '"' => scan.in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => scan.in_str = true,
            '{' => scan.open.push('}'),
            '[' => scan.open.push(']'),
            '}' | ']' => {
                scan.open.pop();
                if scan.open.is_empty() && scan.first_close.is_none() {
                    scan.first_close = Some(i + 1);
                }
            }
            _ => {}
        }
    }
    scan
}

/// Length of the object starting at `s[0] == '{'` and whether it closed (string-aware).
fn scan_object(s: &str) -> (usize, bool) {
    match scan_brackets(s).first_close {
        Some(end) => (end, true),
        None => (s.len(), false),
    }
}

/// Close an object cut off mid-way, drop trailing commas, and use double quotes when the model
/// wrote single-quoted keys.
fn repair_object(candidate: &str, closed: bool) -> Option<Map<String, Value>> {
    let mut s = candidate.to_string();
    if !s.contains('"') && s.contains('\'') {
        s = s.replace('\'', "\"");
    }
    if !closed {
        // Which brackets / string are still open.
        let BracketScan { open: mut stack, in_str, escaped, .. } = scan_brackets(&s);
        if escaped {
            s.pop();
        }
        if in_str {
            s.push('"');
        }
        // A number cut after its `.` or sign, a dangling `,` or `"key":` cannot be closed as-is.
        let t = s.trim_end().trim_end_matches(['.', '-', '+']).trim_end().trim_end_matches(',');
        s = if t.ends_with(':') { format!("{t} null") } else { t.to_string() };
        while let Some(close) = stack.pop() {
            s.push(close);
        }
    }
    let s = remove_trailing_commas(&s);
    match serde_json::from_str::<Value>(&s) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

fn remove_trailing_commas(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut in_str = false;
    let mut escaped = false;
    for (i, &c) in chars.iter().enumerate() {
        if in_str {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_str = false,
                _ => {}
            }
        } else if c == '"' {
            in_str = true;
        } else if c == ',' {
            let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
            if matches!(next, Some('}') | Some(']') | None) {
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// Score from a JSON value: number, numeric string, percentage. Returns (score, repaired).
fn score_from_value(v: &Value) -> Option<(f64, bool)> {
    match v {
        Value::Number(n) => n.as_f64().and_then(|x| normalise_score(x, false)),
        Value::String(s) => parse_score_text(s),
        Value::Array(a) if !a.is_empty() => {
            // Per-step scores: take the maximum.
            let xs: Vec<f64> = a.iter().filter_map(|x| score_from_value(x).map(|p| p.0)).collect();
            xs.iter().cloned().reduce(f64::max).map(|m| (m, true))
        }
        _ => None,
    }
}

fn parse_score_text(s: &str) -> Option<(f64, bool)> {
    let s = s.trim();
    let (num, pct) = match s.strip_suffix('%') {
        Some(rest) => (rest.trim(), true),
        None => (s, false),
    };
    let x: f64 = num.parse().ok()?;
    normalise_score(x, pct).map(|(v, _)| (v, true))
}

/// Percent (explicit, or a bare value in (1, 100]) → fraction; clamp to [0, 1]; reject non-finite.
fn normalise_score(x: f64, percent: bool) -> Option<(f64, bool)> {
    if !x.is_finite() {
        return None;
    }
    let (y, repaired) = if percent || (x > 1.0 && x <= 100.0) { (x / 100.0, true) } else { (x, false) };
    let clamped = y.clamp(0.0, 1.0);
    Some((clamped, repaired || clamped != y))
}

fn steps_from_value(v: &Value, window_len: usize) -> Vec<usize> {
    let Value::Array(items) = v else { return Vec::new() };
    let mut steps: Vec<usize> = items
        .iter()
        .filter_map(|x| match x {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        })
        .filter(|x| x.is_finite() && *x >= 0.0 && x.fract() == 0.0 && *x < window_len as f64)
        .map(|x| x as usize)
        .collect();
    steps.sort_unstable();
    steps.dedup();
    steps
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn clean_reason(s: &str) -> String {
    let one_line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(MAX_REASON_CHARS).collect()
}

/// First number after the word "score" (case-insensitive), as in `Score: 0.8` or `score of 70%`.
fn score_from_prose(text: &str) -> Option<f64> {
    let lower = text.to_lowercase();
    let mut from = 0;
    while let Some(rel) = lower[from..].find("score") {
        let after = from + rel + "score".len();
        let tail = &lower[after..];
        // Only look a short distance ahead, and not past the end of the sentence/line.
        let window: String = tail.chars().take(24).take_while(|c| *c != '\n').collect();
        if let Some((num, pct)) = first_number(&window) {
            if let Some((x, _)) = normalise_score(num, pct) {
                return Some(x);
            }
        }
        from = after;
    }
    None
}

fn first_number(s: &str) -> Option<(f64, bool)> {
    let bytes = s.as_bytes();
    let start = bytes.iter().position(|b| b.is_ascii_digit())?;
    let mut end = start;
    while end < bytes.len() && (bytes[end].is_ascii_digit() || bytes[end] == b'.') {
        end += 1;
    }
    let x: f64 = s[start..end].trim_end_matches('.').parse().ok()?;
    let pct = s[end..].trim_start().starts_with('%');
    Some((x, pct))
}

fn reason_from_prose(text: &str) -> String {
    let lower = text.to_lowercase();
    match lower.find("reason") {
        Some(i) => text[i + "reason".len()..]
            .trim_start_matches([':', ' ', '"'])
            .lines()
            .next()
            .unwrap_or("")
            .trim_end_matches(['"', '}'])
            .to_string(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_json() {
        let j = parse_judgement(r#"{"score": 0.8, "anomalous_steps": [3, 4, 99], "reason": "CPU spike"}"#, 10).unwrap();
        assert_eq!(j.score, 0.8);
        assert_eq!(j.anomalous_steps, vec![3, 4]);
        assert_eq!(j.reason, "CPU spike");
        assert!(!j.repaired);
    }

    #[test]
    fn fenced_string_percent_and_truncated() {
        let j = parse_judgement("Here you go:\n```json\n{\"score\": \"70%\", \"reason\": \"x\"}\n```", 10).unwrap();
        assert!((j.score - 0.7).abs() < 1e-12 && j.repaired);
        let j = parse_judgement(r#"{"score": "0.7", "reason": "ok"}"#, 10).unwrap();
        assert!((j.score - 0.7).abs() < 1e-12);
        let j = parse_judgement(r#"{"score": 0.9, "anomalous_steps": [1, 2,"#, 10).unwrap();
        assert_eq!((j.score, j.anomalous_steps.clone()), (0.9, vec![1, 2]));
        let j = parse_judgement(r#"{"score": 0.2, "anomalous_steps": [1.0, 2.0, 6."#, 10).unwrap();
        assert_eq!((j.score, j.anomalous_steps.clone()), (0.2, vec![1, 2, 6]));
        let j = parse_judgement(r#"{"score": 0.4, "reason": "the load is hi"#, 10).unwrap();
        assert_eq!(j.reason, "the load is hi");
        let j = parse_judgement(r#"{"score": 1.7, "reason": "x",}"#, 10).unwrap();
        assert_eq!(j.score, 0.017);
        let j = parse_judgement(r#"{"score": 250}"#, 10).unwrap();
        assert_eq!(j.score, 1.0);
        let j = parse_judgement(r#"{"score": -0.2}"#, 10).unwrap();
        assert_eq!(j.score, 0.0);
        let j = parse_judgement("{'score': 0.3, 'reason': 'fine'}", 10).unwrap();
        assert_eq!(j.score, 0.3);
    }

    #[test]
    fn prose_and_garbage() {
        let j = parse_judgement("The anomaly score is 0.65 because traffic dropped.", 10).unwrap();
        assert_eq!(j.score, 0.65);
        assert!(parse_judgement("I cannot help with that.", 10).is_err());
        assert!(parse_judgement("", 10).is_err());
        assert!(parse_judgement(r#"{"score": null}"#, 10).is_err());
        assert!(parse_judgement(r#"{"score": "high"}"#, 10).is_err());
        assert!(parse_judgement("{{{{", 10).is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_scores_stay_in_unit_interval(s in ".{0,200}") {
            if let Ok(j) = parse_judgement(&s, 50) {
                proptest::prop_assert!((0.0..=1.0).contains(&j.score));
                proptest::prop_assert!(j.anomalous_steps.iter().all(|&t| t < 50));
            }
        }
    }
}
