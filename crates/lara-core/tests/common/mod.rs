//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The shared directory: `$LARA_SHARED`, else `<CARGO_MANIFEST_DIR>/../../../shared`.
/// Panics (fails the test) with a message when it is missing.
pub fn shared_dir() -> PathBuf {
    let dir = match std::env::var_os("LARA_SHARED") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    assert!(
        dir.join("data/tsbad").is_dir(),
        "shared data not found at {} (set LARA_SHARED to the shared/ directory that holds data/tsbad)",
        dir.display()
    );
    dir
}

/// All `*.csv` files of `shared/data/tsbad`, sorted.
pub fn tsbad_files() -> Vec<PathBuf> {
    let dir = shared_dir().join("data/tsbad");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no CSV files in {}", dir.display());
    v
}
