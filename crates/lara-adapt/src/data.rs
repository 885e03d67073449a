//! Input validation and sliding windows over row-major series.

use crate::model::ModelDims;
use crate::AdaptError;

/// Checks a row-major `n_rows × n_cols` series against a model: column count, whole rows,
/// finiteness, at least one window. Returns `n_rows`.
pub fn check_rows(rows: &[f32], n_cols: usize, d: ModelDims) -> Result<usize, AdaptError> {
    if n_cols != d.features {
        return Err(AdaptError::ColumnMismatch { expected: d.features, got: n_cols });
    }
    if rows.len() % n_cols != 0 {
        return Err(AdaptError::BadLength { what: "data rows", len: rows.len(), width: n_cols });
    }
    let n_rows = rows.len() / n_cols;
    if n_rows < d.window {
        return Err(AdaptError::TooFewRows { rows: n_rows, window: d.window });
    }
    if let Some(i) = rows.iter().position(|v| !v.is_finite()) {
        return Err(AdaptError::NonFinite { what: "data", row: i / n_cols, col: i % n_cols, value: rows[i] });
    }
    Ok(n_rows)
}

/// Checks a batch of flattened windows (`n × (w·m)`): whole windows, at least one, finite.
/// Returns `n`. A NaN is reported with its window index as `row` and element index
/// (`t·m + k`) as `col`.
pub fn check_windows(windows: &[f32], d: ModelDims) -> Result<usize, AdaptError> {
    let size = d.window_size();
    if windows.len() % size != 0 {
        return Err(AdaptError::BadLength { what: "windows", len: windows.len(), width: size });
    }
    let n = windows.len() / size;
    if n == 0 {
        return Err(AdaptError::Empty("windows"));
    }
    if let Some(i) = windows.iter().position(|v| !v.is_finite()) {
        return Err(AdaptError::NonFinite { what: "windows", row: i / size, col: i % size, value: windows[i] });
    }
    Ok(n)
}

/// Window starts `0, s, 2s, …` plus a last window ending at the last row, so that every row
/// is covered (the stride is clamped to `1..=w`). Requires `n_rows ≥ w ≥ 1`.
pub fn cover_starts(n_rows: usize, w: usize, stride: usize) -> Vec<usize> {
    if w == 0 || n_rows < w {
        return Vec::new();
    }
    let last = n_rows - w;
    let mut s: Vec<usize> = (0..=last).step_by(stride.clamp(1, w)).collect();
    if s.last() != Some(&last) {
        s.push(last);
    }
    s
}

/// Copies the covering windows of a validated series (see [`check_rows`], [`cover_starts`])
/// into one flat batch `n × (w·m)`. Returns the batch and the window starts.
pub fn windows_from_rows(
    rows: &[f32],
    n_cols: usize,
    d: ModelDims,
    stride: usize,
) -> Result<(Vec<f32>, Vec<usize>), AdaptError> {
    let n_rows = check_rows(rows, n_cols, d)?;
    let starts = cover_starts(n_rows, d.window, stride);
    let m = d.features;
    let mut out = Vec::with_capacity(starts.len() * d.window_size());
    for &s in &starts {
        out.extend_from_slice(&rows[s * m..(s + d.window) * m]);
    }
    Ok((out, starts))
}
