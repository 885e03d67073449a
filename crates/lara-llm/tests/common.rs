#![allow(dead_code)]
use std::path::PathBuf;

use lara_llm::local::default_model_path;

/// The local model path, or a panic telling how to fetch it (CI must fetch it first).
pub fn model_path() -> PathBuf {
    let p = default_model_path();
    assert!(
        p.is_file(),
        "LLM model file not found at {}: run scripts/fetch-smollm.sh (or set LARA_LLM_MODEL)",
        p.display()
    );
    p
}

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lara-llm-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn docs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/experts")
}
