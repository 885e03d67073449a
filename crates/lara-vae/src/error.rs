//! Errors of the VAE crate.

use std::path::PathBuf;

/// Everything that can go wrong in training, scoring or model files. Never a panic for bad
/// input files.
#[derive(Debug, thiserror::Error)]
pub enum VaeError {
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("training diverged (non-finite loss) at epoch {epoch}, step {step}; try a smaller --lr")]
    Diverged { epoch: usize, step: usize },
    #[error("{path}: not a lara model file (bad magic bytes)")]
    NotAModel { path: PathBuf },
    #[error("{path}: model format version {found} is not supported (this build reads versions 1 to {expected}); retrain the model with this version of lara")]
    WrongVersion { path: PathBuf, found: u32, expected: u32 },
    #[error("{path}: model file is truncated ({detail})")]
    Truncated { path: PathBuf, detail: String },
    #[error("{path}: model file is corrupt ({detail})")]
    Corrupt { path: PathBuf, detail: String },
    #[error("the data's columns do not match the model's: {detail}")]
    ColumnMismatch { detail: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("threshold: {0}")]
    Threshold(String),
}
