//! Errors of the online monitor. A rejected push leaves the monitor unchanged.

/// What can go wrong when building, feeding or restoring a monitor.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A row of the pushed batch (1-based within the batch) is malformed.
    #[error("row {row} of the batch: {detail}")]
    BadRow { row: usize, detail: String },
    #[error("monitor settings: {0}")]
    Config(String),
    #[error("snapshot: {0}")]
    Snapshot(String),
    #[error(transparent)]
    Model(#[from] lara_vae::VaeError),
}
