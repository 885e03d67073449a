//! Build a CoLLaTe prompt for a synthetic CloudWatch CPU window and ask the local model.
//! `cargo run --release -p lara-llm --example collate_prompt [DOCS_DIR]`
use lara_llm::judge::judge_window;
use lara_llm::local::LocalLlm;
use lara_llm::prompt::{build_prompt, Channel, ExpertDocs, PromptConfig, WindowView};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "docs/experts".into());
    let docs = ExpertDocs::load(&[dir.into()])?;
    let mut llm = LocalLlm::load_default()?;
    for spike in [false, true] {
        let cpu: Vec<f64> = (0..96)
            .map(|t| 30.0 + 8.0 * ((t as f64) / 15.0).sin() + if spike && (60..66).contains(&t) { 60.0 } else { 0.0 })
            .collect();
        let net: Vec<f64> = (0..96).map(|t| 4.0e6 + 1.0e6 * ((t as f64) / 15.0).sin()).collect();
        let w = WindowView {
            channels: vec![
                Channel { name: "cpu_utilization", values: &cpu },
                Channel { name: "network_in", values: &net },
            ],
            channel_priority: None,
        };
        let cfg = PromptConfig {
            system_description: "a web service monitored with AWS CloudWatch".into(),
            ..Default::default()
        };
        let p = build_prompt(&docs, &w, &cfg, Some(&llm))?;
        println!("=== SYSTEM ({} prompt tokens)\n{}\n=== USER\n{}", p.prompt_tokens, p.request.system, p.request.user);
        let v = judge_window(&mut llm, 0, &p, 1);
        println!(
            "=== ANSWER ({} attempts, {:?}): {}\n=> {:?} {:?}",
            v.attempts, v.elapsed, v.raw, v.judgement, v.error
        );
    }
    Ok(())
}
