//! The multivariate time series.

use crate::CoreError;

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

impl Series {
    /// Builds a series and checks it: at least one column, no duplicate column names,
    /// `values.len() == n_rows * columns.len()`, timestamps and labels of length `n_rows`,
    /// labels 0 or 1, `train_end <= n_rows`. Values may be non-finite (the reader's `keep`
    /// policy produces NaN); zero rows are allowed.
    pub fn new(
        values: Vec<f32>,
        n_rows: usize,
        columns: Vec<String>,
        timestamps: Option<Vec<String>>,
        labels: Option<Vec<u8>>,
        train_end: usize,
    ) -> Result<Self, CoreError> {
        let bad = |m: String| Err(CoreError::InvalidSeries(m));
        if columns.is_empty() {
            return bad("at least one column is required".into());
        }
        for (j, c) in columns.iter().enumerate() {
            if let Some(k) = columns[..j].iter().position(|d| d == c) {
                return bad(format!("duplicate column name {c:?} (columns {} and {})", k + 1, j + 1));
            }
        }
        match n_rows.checked_mul(columns.len()) {
            Some(n) if n == values.len() => {}
            _ => return bad(format!("{} values do not make {n_rows} rows of {} columns", values.len(), columns.len())),
        }
        if let Some(ts) = &timestamps {
            if ts.len() != n_rows {
                return bad(format!("{} timestamps for {n_rows} rows", ts.len()));
            }
        }
        if let Some(l) = &labels {
            if l.len() != n_rows {
                return bad(format!("{} labels for {n_rows} rows", l.len()));
            }
            if let Some(t) = l.iter().position(|&v| v > 1) {
                return bad(format!("label of row {t} is {}, expected 0 or 1", l[t]));
            }
        }
        if train_end > n_rows {
            return bad(format!("train_end {train_end} is beyond the data ({n_rows} rows)"));
        }
        Ok(Series { values, n_rows, columns, timestamps, labels, train_end })
    }

    /// Number of columns (features).
    pub fn n_cols(&self) -> usize {
        self.columns.len()
    }

    /// Row `t` (`n_cols` values); empty if `t >= n_rows`.
    pub fn row(&self, t: usize) -> &[f32] {
        let m = self.n_cols();
        t.checked_mul(m).and_then(|a| self.values.get(a..a.checked_add(m)?)).unwrap_or(&[])
    }

    /// Column `j` as a new vector; empty if `j >= n_cols`.
    pub fn column(&self, j: usize) -> Vec<f32> {
        let m = self.n_cols();
        if j >= m {
            return Vec::new();
        }
        self.values.iter().skip(j).step_by(m).copied().collect()
    }

    /// Index of the column named `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Number of training rows, `min(train_end, n_rows)`.
    pub fn n_train(&self) -> usize {
        self.train_end.min(self.n_rows)
    }

    /// Values of the training prefix, rows `[0, train_end)` (row-major).
    pub fn train_values(&self) -> &[f32] {
        let end = self.n_train().saturating_mul(self.n_cols()).min(self.values.len());
        &self.values[..end]
    }

    /// Values of the test part, rows `[train_end, n_rows)` (row-major).
    pub fn test_values(&self) -> &[f32] {
        let start = self.n_train().saturating_mul(self.n_cols()).min(self.values.len());
        &self.values[start..]
    }

    /// Fraction of rows labelled 1; `None` without labels or rows.
    pub fn anomaly_ratio(&self) -> Option<f64> {
        let l = self.labels.as_ref()?;
        if l.is_empty() {
            return None;
        }
        let ones = l.iter().filter(|&&v| v == 1).count();
        Some(ones as f64 / l.len() as f64)
    }

    /// Number of NaN or infinite values.
    pub fn non_finite_count(&self) -> usize {
        self.values.iter().filter(|v| !v.is_finite()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s() -> Series {
        Series::new(
            vec![1.0, 2.0, 3.0, 4.0, 5.0, f32::NAN],
            3,
            vec!["a".into(), "b".into()],
            None,
            Some(vec![0, 1, 1]),
            1,
        )
        .unwrap()
    }

    #[test]
    fn accessors() {
        let s = s();
        assert_eq!(s.n_cols(), 2);
        assert_eq!(s.row(1), &[3.0, 4.0]);
        assert!(s.row(3).is_empty());
        assert!(s.row(usize::MAX).is_empty());
        assert_eq!(s.column(0), vec![1.0, 3.0, 5.0]);
        assert!(s.column(2).is_empty());
        assert_eq!(s.train_values(), &[1.0, 2.0]);
        assert_eq!(s.test_values().len(), 4);
        assert_eq!(s.anomaly_ratio(), Some(2.0 / 3.0));
        assert_eq!(s.non_finite_count(), 1);
        assert_eq!(s.column_index("b"), Some(1));
    }

    #[test]
    fn validation() {
        let c = || vec!["a".to_string()];
        assert!(Series::new(vec![], 0, vec![], None, None, 0).is_err());
        assert!(Series::new(vec![1.0], 2, c(), None, None, 0).is_err());
        assert!(Series::new(vec![1.0], 1, c(), None, Some(vec![2]), 0).is_err());
        assert!(Series::new(vec![1.0], 1, c(), None, Some(vec![]), 0).is_err());
        assert!(Series::new(vec![1.0], 1, c(), Some(vec![]), None, 0).is_err());
        assert!(Series::new(vec![1.0], 1, c(), None, None, 2).is_err());
        assert!(Series::new(vec![1.0, 2.0], 1, vec!["a".into(), "a".into()], None, None, 0).is_err());
        assert!(Series::new(vec![1.0], usize::MAX, c(), None, None, 0).is_err());
        assert!(Series::new(vec![1.0], 1, c(), Some(vec!["t".into()]), Some(vec![1]), 1).is_ok());
    }
}
