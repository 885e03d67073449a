//! `lara llm check` without the CLI: one round trip, latency and tokens/s.
//! `cargo run --release -p lara-llm --example llm_check -- [local|local-f32|http] [URL]`
use lara_llm::check::llm_check;
use lara_llm::judge::{open_backend_uncached, BackendKind, LlmOptions};
use lara_llm::local::LocalWeights;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let kind = std::env::args().nth(1).unwrap_or_else(|| "local".into());
    let mut opts = LlmOptions::default();
    match kind.as_str() {
        "local" => {}
        "local-f32" => opts.local_weights = LocalWeights::F32,
        "http" => {
            opts.kind = BackendKind::Http;
            opts.url = std::env::args().nth(2);
        }
        other => return Err(format!("unknown backend {other}").into()),
    }
    let t = std::time::Instant::now();
    let mut llm = open_backend_uncached(&opts)?;
    let open = t.elapsed();
    for _ in 0..2 {
        let r = llm_check(llm.as_mut(), 32)?;
        println!(
            "{} {}: open {:?}, latency {:?}, {} prompt + {} completion tokens, {:.1} tok/s, parsed={} text={:?}",
            r.backend,
            r.model,
            open,
            r.latency,
            r.prompt_tokens,
            r.completion_tokens,
            r.tokens_per_second,
            r.parsed,
            r.text
        );
    }
    Ok(())
}
