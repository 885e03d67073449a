//! Helpers shared by the end-to-end tests that drive the real `lara` binary.

#![allow(dead_code)]

pub mod server;

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

/// A small real NAB file (1643 rows, training prefix 246).
pub const FILE: &str = "data/tsbad/081_NAB_id_28_WebService_tr_246_1st_340.csv";

/// The values of [`FILE`]'s one feature column, in row order.
pub fn file_values() -> Vec<f64> {
    let text = std::fs::read_to_string(shared().join(FILE)).unwrap();
    text.lines().skip(1).map(|l| l.split(',').nth(1).unwrap().parse().unwrap()).collect()
}

/// Asserts that a run succeeded; returns its stdout.
pub fn ok(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A small model (window 24, 40 steps) trained on [`FILE`] into `dir/m.lara`.
pub fn train_small(dir: &Path) -> PathBuf {
    let (data, model) = (shared().join(FILE), dir.join("m.lara"));
    let (data, out) = (data.to_str().unwrap(), model.to_str().unwrap());
    ok(&lara(&["train", "--data", data, "--model", out, "--window", "24", "--max-steps", "40"]), "train");
    model
}
