//! Errors of the adaptation library. Every bad input is reported here; nothing panics.

/// Why an adaptation, a fit or a scoring call was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AdaptError {
    /// The model reports an unusable shape (zero window, features or latent dimension, or an
    /// output variance of the wrong length).
    #[error("invalid model: {0}")]
    InvalidModel(String),

    /// Fewer data rows than one window of the model.
    #[error("need at least one window of {window} rows to adapt or score, got {rows} rows")]
    TooFewRows { rows: usize, window: usize },

    /// The data has a different number of columns than the model has features.
    #[error("the data has {got} columns but the model expects {expected} features")]
    ColumnMismatch { expected: usize, got: usize },

    /// A flat buffer is not a whole number of rows / windows / vectors of the stated width.
    #[error("{what}: {len} values are not a whole number of {width}-value rows")]
    BadLength { what: &'static str, len: usize, width: usize },

    /// An empty batch (no rows, no windows).
    #[error("{0}: empty input")]
    Empty(&'static str),

    /// A NaN or infinite value in the input data.
    #[error("{what}: non-finite value {value} at row {row}, column {col}")]
    NonFinite { what: &'static str, row: usize, col: usize, value: f32 },

    /// The model returned a buffer of the wrong length.
    #[error("model {method} returned {got} values, expected {expected}")]
    ModelOutputLength { method: &'static str, expected: usize, got: usize },

    /// The model returned a NaN or infinite value.
    #[error("model {method} returned a non-finite value at index {index}")]
    ModelNonFinite { method: &'static str, index: usize },

    /// An adapter whose maps do not match the model's latent / feature dimensions, or whose
    /// stored tensors are inconsistent (e.g. after deserialisation).
    #[error("adapter mismatch: {0}")]
    AdapterMismatch(String),

    /// A configuration value out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// The ridge normal matrix is not (numerically) positive definite: the ridge is zero or
    /// too small for the given rows.
    #[error(
        "least-squares system of size {size} is not positive definite (pivot {pivot} = {value:e}); increase the ridge"
    )]
    NotPositiveDefinite { size: usize, pivot: usize, value: f64 },

    /// The gradient solver stopped before reaching its tolerance.
    #[error("gradient solver for {stage} did not converge in {iterations} iterations (relative gradient {relative_gradient:e})")]
    NotConverged { stage: &'static str, iterations: usize, relative_gradient: f64 },

    /// Every importance weight of the ruminate block was non-finite.
    #[error("ruminate block: all importance log-weights are non-finite for window {window}")]
    DegenerateWeights { window: usize },
}
