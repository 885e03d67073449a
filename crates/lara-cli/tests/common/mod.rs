//! Helpers shared by the end-to-end tests that drive the real `lara` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `../shared` beside the checkout (or `$LARA_SHARED`).
pub fn shared() -> PathBuf {
    let dir = std::env::var("LARA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    assert!(dir.join("data/tsbad").is_dir(), "shared data not found at {} (set LARA_SHARED)", dir.display());
    dir
}

/// Runs the `lara` binary.
pub fn lara(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lara")).args(args).output().expect("run lara")
}

/// A fresh, empty folder for one test.
pub fn tmp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lara-e2e-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
