//! The in-process backend on the real SmolLM2-135M GGUF (fetched by scripts/fetch-smollm.sh).
//! Few, short generations: structure, determinism, cache hits, and no panics on bad files.

mod common;

use lara_llm::cache::CachedLlm;
use lara_llm::check::{check_request, llm_check};
use lara_llm::judge::judge_window;
use lara_llm::local::LocalLlm;
use lara_llm::prompt::{build_prompt, Channel, ExpertDocs, PromptConfig, WindowView};
use lara_llm::{LlmBackend, LlmError};

#[test]
fn local_model_is_deterministic_cached_and_structured() {
    let path = common::model_path();
    let mut llm = LocalLlm::load(&path).expect("load model");
    assert_eq!(llm.backend_name(), "local");
    assert!(llm.context_tokens().unwrap() >= 2048);

    // Tokenizer rebuilt from GGUF metadata round-trips text, digits one per token.
    let tk = llm.tokenizer();
    let text = "cpu_utilization: 31.1 97.3\nNetworkIn (x1e6) é {\"score\": 0.5}";
    assert_eq!(tk.decode(&tk.encode(text).unwrap()).unwrap(), text);
    assert_eq!(tk.encode("2024").unwrap().len(), 4);

    // Same prompt twice -> identical text (greedy decoding).
    let req = check_request(24);
    let a = llm.complete(&req).expect("first generation");
    let b = llm.complete(&req).expect("second generation");
    assert_eq!(a.text, b.text);
    assert!(a.prompt_tokens > 50 && a.completion_tokens > 0 && a.completion_tokens <= 24);
    eprintln!(
        "local: {} prompt + {} completion tokens in {:?} ({:.1} tok/s): {:?}",
        a.prompt_tokens,
        a.completion_tokens,
        a.elapsed,
        a.tokens_per_second(),
        a.text
    );

    // The on-disk cache: miss, then hit with the same text.
    let dir = common::temp_dir("local-cache");
    let mut cached = CachedLlm::new(llm, &dir).unwrap();
    let c1 = cached.complete(&req).unwrap();
    let c2 = cached.complete(&req).unwrap();
    assert!(!c1.cached && c2.cached);
    assert_eq!((cached.misses, cached.hits), (1, 1));
    assert_eq!(c1.text, a.text);
    assert_eq!(c2.text, a.text);

    // A CoLLaTe prompt from the example expert documents, on a short window.
    let docs = ExpertDocs::load(&[common::docs_dir()]).unwrap();
    assert!(!docs.is_empty());
    let cpu: Vec<f64> = (0..40).map(|t| if t == 25 { 97.0 } else { 30.0 + (t % 5) as f64 }).collect();
    let window =
        WindowView { channels: vec![Channel { name: "cpu_utilization", values: &cpu }], channel_priority: None };
    let cfg = PromptConfig {
        system_description: "a web service monitored with AWS CloudWatch".into(),
        max_doc_chars: 400,
        max_points: 20,
        max_new_tokens: 40,
        max_prompt_tokens: 400,
        ..PromptConfig::default()
    };
    let prompt = build_prompt(&docs, &window, &cfg, Some(&cached)).unwrap();
    assert!(prompt.prompt_tokens <= 400, "{}", prompt.prompt_tokens);
    assert!(prompt.shown_steps.contains(&25));
    let v1 = judge_window(&mut cached, 7, &prompt, 1);
    eprintln!("verdict: {:?} raw={:?} error={:?}", v1.judgement, v1.raw, v1.error);
    assert_eq!(v1.window, 7);
    assert!(v1.attempts >= 1 && v1.attempts <= 2);
    assert!(v1.raw.starts_with("{\"score\":"), "prefill missing: {:?}", v1.raw);
    match &v1.judgement {
        Some(j) => assert!((0.0..=1.0).contains(&j.score) && j.anomalous_steps.iter().all(|&t| t < 40)),
        None => assert!(v1.error.is_some(), "a missing verdict must say why"),
    }
    // Replays from the cache, identically.
    let v2 = judge_window(&mut cached, 7, &prompt, 1);
    assert!(v2.cached);
    assert_eq!(v1.raw, v2.raw);
    assert_eq!(v1.judgement, v2.judgement);

    // `lara llm check` round trip.
    let mut llm = LocalLlm::load(&path).unwrap();
    let report = llm_check(&mut llm, 8).unwrap();
    assert!(report.completion_tokens > 0 && report.tokens_per_second > 0.0);
    eprintln!("check: {:?} latency, {:.1} tok/s", report.latency, report.tokens_per_second);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_model_files_are_errors_not_panics() {
    let dir = common::temp_dir("bad-model");
    match LocalLlm::load(&dir.join("absent.gguf")) {
        Err(e @ LlmError::ModelMissing(_)) => {
            assert!(e.to_string().contains("lara llm fetch") && e.to_string().contains("scripts/fetch-smollm.sh"))
        }
        other => panic!("expected ModelMissing, got {other:?}"),
    }
    let garbage = dir.join("garbage.gguf");
    std::fs::write(&garbage, b"this is not a gguf file at all").unwrap();
    assert!(matches!(LocalLlm::load(&garbage), Err(LlmError::ModelFile(_))));
    // A truncated copy of the real file (header only).
    let path = common::model_path();
    let bytes = std::fs::read(&path).unwrap();
    let truncated = dir.join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len().min(3_000_000)]).unwrap();
    assert!(LocalLlm::load(&truncated).is_err());
    let _ = std::fs::remove_dir_all(dir);
}
