//! The OpenAI-compatible backend against a real llama.cpp `llama-server` serving the same GGUF.
//! The server binary comes from scripts/build-llama-server.sh ($LARA_LLAMA_SERVER overrides the
//! path); without it the server test is skipped with a printed message. The test starts the
//! server itself on 127.0.0.1 with a free port and stops it at the end.

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lara_llm::cache::CachedLlm;
use lara_llm::check::{check_request, llm_check};
use lara_llm::http::{HttpConfig, HttpLlm};
use lara_llm::judge::judge_window;
use lara_llm::local::cache_root;
use lara_llm::prompt::{build_prompt, Channel, ExpertDocs, PromptConfig, WindowView};
use lara_llm::{ChatRequest, LlmBackend, LlmError};

fn server_binary() -> PathBuf {
    match std::env::var_os("LARA_LLAMA_SERVER") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => cache_root().join("llama-server").join("bin").join("llama-server"),
    }
}

struct Server {
    child: Child,
    base_url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(bin: &std::path::Path, model: &std::path::Path) -> Server {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = std::fs::File::create(common::temp_dir("llama-server-log").join("server.log")).unwrap();
    let child = Command::new(bin)
        .args(["-m", &model.to_string_lossy(), "--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["-c", "2048", "-np", "1", "-t", "1"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start llama-server");
    let server = Server { child, base_url: format!("http://127.0.0.1:{port}/v1") };
    let health = format!("http://127.0.0.1:{port}/health");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .http_status_as_error(false)
        .build()
        .into();
    let start = Instant::now();
    loop {
        if let Ok(r) = agent.get(&health).call() {
            if r.status().as_u16() == 200 {
                break;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(120), "llama-server did not become healthy in 120 s");
        std::thread::sleep(Duration::from_millis(250));
    }
    server
}

#[test]
fn http_backend_against_llama_server() {
    let bin = server_binary();
    if !bin.is_file() {
        println!(
            "SKIPPED http_backend_against_llama_server: no llama-server binary at {} \
             (build it with scripts/build-llama-server.sh, or set LARA_LLAMA_SERVER)",
            bin.display()
        );
        return;
    }
    let model = common::model_path();
    let server = start_server(&bin, &model);
    let mut llm = HttpLlm::new(HttpConfig { base_url: server.base_url.clone(), ..HttpConfig::default() }).unwrap();
    assert_eq!(llm.backend_name(), "http");
    assert!(llm.model_name().contains("SmolLM2"), "model id from /models: {}", llm.model_name());

    // Our tokenizer (rebuilt from the GGUF metadata) agrees with llama.cpp's on tricky text.
    let local = lara_llm::local::LocalLlm::load(&model).unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let tokenize_url = server.base_url.trim_end_matches("/v1").to_string() + "/tokenize";
    for text in [
        "cpu_utilization: 31.1 97.3 0.004\nNetworkIn (x1e6): 4.13 4.33",
        "It's   a  test\n\n  with 'quotes', \"JSON\" {\"score\": 0.5} and ünïcödé — 温度 🚀",
        "Answer with JSON only:\t{\"score\": S, \"anomalous_steps\": [T, ...]}   ",
    ] {
        let body = serde_json::json!({"content": text, "add_special": false}).to_string();
        let mut r = agent.post(&tokenize_url).header("Content-Type", "application/json").send(body.as_str()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        let theirs: Vec<u32> = v["tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect();
        assert_eq!(local.tokenizer().encode(text).unwrap(), theirs, "tokenization differs from llama.cpp for {text:?}");
    }
    drop(local);

    // Determinism at temperature 0.
    let req = check_request(24);
    let a = llm.complete(&req).expect("first request");
    let b = llm.complete(&req).expect("second request");
    assert_eq!(a.text, b.text);
    assert!(a.prompt_tokens > 50 && a.completion_tokens > 0 && a.completion_tokens <= 24, "{a:?}");
    eprintln!(
        "http: {} prompt + {} completion tokens in {:?} ({:.1} tok/s): {:?}",
        a.prompt_tokens,
        a.completion_tokens,
        a.elapsed,
        a.tokens_per_second(),
        a.text
    );

    // Cache.
    let dir = common::temp_dir("http-cache");
    let mut cached = CachedLlm::new(llm, &dir).unwrap();
    let c1 = cached.complete(&req).unwrap();
    let c2 = cached.complete(&req).unwrap();
    assert!(!c1.cached && c2.cached && c1.text == c2.text);

    // A CoLLaTe prompt with the assistant prefill.
    let docs = ExpertDocs::load(&[common::docs_dir()]).unwrap();
    let cpu: Vec<f64> = (0..40).map(|t| if t == 25 { 97.0 } else { 30.0 + (t % 5) as f64 }).collect();
    let window =
        WindowView { channels: vec![Channel { name: "cpu_utilization", values: &cpu }], channel_priority: None };
    let cfg = PromptConfig { max_doc_chars: 400, max_points: 20, max_new_tokens: 40, ..PromptConfig::default() };
    let prompt = build_prompt(&docs, &window, &cfg, None).unwrap();
    let v = judge_window(&mut cached, 3, &prompt, 1);
    eprintln!("http verdict: {:?} raw={:?} error={:?}", v.judgement, v.raw, v.error);
    assert!(v.judgement.is_some() || v.error.is_some());
    assert!(v.raw.starts_with("{\"score\":"), "{:?}", v.raw);

    // `lara llm check` round trip (uncached).
    let mut llm = HttpLlm::new(HttpConfig { base_url: server.base_url.clone(), ..HttpConfig::default() }).unwrap();
    let report = llm_check(&mut llm, 8).unwrap();
    eprintln!("http check: {:?} latency, {:.1} tok/s", report.latency, report.tokens_per_second);
    assert!(report.completion_tokens > 0);
    drop(server);

    // Server gone: an error after the retries, not a panic.
    let t = Instant::now();
    let err = llm.complete(&req).unwrap_err();
    assert!(matches!(err, LlmError::Http { attempts: 3, .. }), "{err}");
    assert!(t.elapsed() >= Duration::from_millis(1500), "backoff 0.5 s + 1 s expected");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn unreachable_server_is_an_error_after_retries() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = HttpConfig {
        base_url: format!("http://127.0.0.1:{port}/v1"),
        model: Some("m".into()),
        max_attempts: 2,
        backoff: Duration::from_millis(10),
        timeout: Duration::from_secs(2),
        ..HttpConfig::default()
    };
    let mut llm = HttpLlm::new(cfg).unwrap();
    let req = ChatRequest { system: String::new(), user: "hi".into(), max_tokens: 4, prefill: String::new() };
    match llm.complete(&req) {
        Err(LlmError::Http { attempts, .. }) => assert_eq!(attempts, 2),
        other => panic!("expected an HTTP error, got {other:?}"),
    }
    assert!(HttpLlm::new(HttpConfig { base_url: "ftp://x".into(), ..HttpConfig::default() }).is_err());
}

/// A tiny fake OpenAI server answering garbage, then a 500, to exercise repair and retries.
#[test]
fn garbage_and_server_errors_are_handled() {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let responses = vec![
        (500, "oops".to_string()),
        (200, r#"{"choices":[{"message":{"content":"Sure! The score is 70% because CPU spiked."}}],"usage":{"prompt_tokens":5,"completion_tokens":9}}"#.to_string()),
        (200, "not json at all".to_string()),
        (400, r#"{"error":"bad request"}"#.to_string()),
    ];
    let handle = std::thread::spawn(move || {
        for (status, body) in responses {
            let (mut stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                if line == "\r\n" || line.is_empty() {
                    break;
                }
            }
            let mut buf = vec![0u8; len];
            reader.read_exact(&mut buf).unwrap();
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(reply.as_bytes()).unwrap();
        }
    });
    let cfg = HttpConfig {
        base_url: format!("http://127.0.0.1:{port}/v1"),
        model: Some("fake".into()),
        max_attempts: 2,
        backoff: Duration::from_millis(10),
        ..HttpConfig::default()
    };
    let mut llm = HttpLlm::new(cfg).unwrap();
    let req = ChatRequest { system: String::new(), user: "rate".into(), max_tokens: 8, prefill: String::new() };
    // 500 then a prose answer: retried, then repaired to 0.7.
    let c = llm.complete(&req).unwrap();
    let j = lara_llm::response::parse_judgement(&c.text, 10).unwrap();
    assert!((j.score - 0.7).abs() < 1e-12 && j.repaired);
    assert_eq!((c.prompt_tokens, c.completion_tokens), (5, 9));
    // Non-JSON body (retried) then a 400 (not retried): an error, no panic.
    assert!(matches!(llm.complete(&req), Err(LlmError::HttpStatus { status: 400, .. })));
    handle.join().unwrap();
}
