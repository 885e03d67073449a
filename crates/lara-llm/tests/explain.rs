//! `explain_alarm` on the real local model (SmolLM2-135M). Skipped, with a printed SKIPPED
//! line, only when the GGUF file is absent.

mod common;

use lara_llm::explain::{
    explain_alarm, explain_alarm_with, explain_request, open_explain_backend, AlarmContext, ExplainBackend,
    ExplainConfig,
};
use lara_llm::local::default_model_path;
use lara_llm::prompt::ExpertDocs;

fn cloudwatch_alarm() -> AlarmContext {
    let columns: Vec<String> =
        ["cpu_utilization", "network_in", "disk_read_ops", "latency_ms"].map(String::from).to_vec();
    let window: Vec<Vec<f32>> = (0..48)
        .map(|t| {
            let spike = t == 44;
            vec![
                if spike { 97.5 } else { 31.0 + (t % 4) as f32 },
                if spike { 9.1e6 } else { 2.0e6 + (t % 3) as f32 * 1.0e5 },
                120.0 + (t % 5) as f32,
                if spike { 850.0 } else { 40.0 + (t % 2) as f32 },
            ]
        })
        .collect();
    AlarmContext {
        entity: "web-frontend-3".into(),
        columns,
        window,
        alarm_row: 44,
        top_columns: vec![("cpu_utilization".into(), 0.58), ("latency_ms".into(), 0.31)],
        score: 6.4,
        threshold: 2.9,
    }
}

#[test]
fn explains_an_alarm_with_the_local_model() {
    let path = default_model_path();
    if !path.is_file() {
        println!(
            "SKIPPED explains_an_alarm_with_the_local_model: no model at {} (run `lara llm fetch`)",
            path.display()
        );
        return;
    }
    let docs = ExpertDocs::load(&[common::docs_dir()]).unwrap();
    let ctx = cloudwatch_alarm();

    // The prompt: top columns, their values around the alarm, an excerpt of a document.
    let request = explain_request(&docs, &ctx, &ExplainConfig::default()).unwrap();
    for name in ["cpu_utilization", "latency_ms"] {
        assert!(request.user.contains(name), "top column {name} missing from {}", request.user);
    }
    assert!(request.user.contains("97.5") && request.user.contains("850"), "{}", request.user);
    assert!(!request.user.contains("disk_read_ops"), "only the top columns: {}", request.user);
    assert!(request.system.contains("Operator notes"), "{}", request.system);
    // A line of the excerpt is verbatim text of one of the documents.
    let doc_texts: Vec<String> = std::fs::read_dir(common::docs_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md") && !p.ends_with("README.md"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let excerpt = request.system.split("Operator notes (rules and normal ranges):\n").nth(1).unwrap();
    let body_line = excerpt.lines().find(|l| !l.starts_with('[') && l.len() > 30).expect("an excerpt body line");
    assert!(doc_texts.iter().any(|d| d.contains(body_line)), "{body_line:?} is not from a document");
    let lower = excerpt.to_lowercase();
    assert!(lower.contains("cpu") || lower.contains("latency"), "excerpt not chosen by the top columns: {excerpt}");

    let mut backend = open_explain_backend(&ExplainBackend::Local { gguf: Some(path) }).unwrap();
    let e = explain_alarm(backend.as_mut(), &docs, &ctx).unwrap();
    eprintln!(
        "explanation ({} prompt + {} completion tokens, {:.1} s): {}",
        e.prompt_tokens, e.completion_tokens, e.seconds, e.reason
    );
    // The default answer starts with the factual lead computed from the window.
    assert!(
        request.prefill.contains("cpu_utilization rose to 97.5") && request.prefill.contains("latency_ms rose to 850")
    );
    assert!(e.reason.starts_with(&request.prefill), "{}", e.reason);
    assert!(!e.reason.contains('\n') && !e.reason.contains("<|im_end|>"));
    assert!(e.completion_tokens > 0 && e.completion_tokens <= 80);
    assert!(e.prompt_tokens > 100 && e.seconds > 0.0);

    // Without the lead, the model's own words alone make a non-empty reason.
    let cfg = ExplainConfig { prefill: false, ..ExplainConfig::default() };
    let own = explain_alarm_with(backend.as_mut(), &docs, &ctx, &cfg).unwrap();
    eprintln!("explanation without lead ({} completion tokens): {}", own.completion_tokens, own.reason);
    assert!(!own.reason.trim().is_empty() && own.completion_tokens > 0 && own.completion_tokens <= 80);
}
