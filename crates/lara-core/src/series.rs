//! The multivariate time series.

/// A T×m matrix of `f32` (row-major: `values[t * n_cols + j]`), its column names, optional
/// timestamps (kept as text), optional 0/1 labels and the length of the training prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub values: Vec<f32>,
    pub n_rows: usize,
    pub columns: Vec<String>,
    pub timestamps: Option<Vec<String>>,
    pub labels: Option<Vec<u8>>,
    /// Rows `[0, train_end)` are the training prefix.
    pub train_end: usize,
}
