//! Sliding windows as views: window `i` is rows `[start(i), start(i) + len)` of a row-major
//! buffer, i.e. the contiguous slice `values[start·m .. (start + len)·m]` (no copy).
//!
//! [`Windows::new`] gives the starts `0, stride, 2·stride, …` while a full window fits
//! (`(n_rows − len) / stride + 1` windows); [`Windows::covering`] adds, when
//! `(n_rows − len) % stride ≠ 0`, one last window that ends exactly at the last row, so that
//! every row is in at least one window (it requires `stride ≤ len`: a larger stride leaves
//! gaps between windows).

use crate::CoreError;

/// Sliding windows over a row-major `values` buffer with `n_cols` columns.
#[derive(Debug, Clone, Copy)]
pub struct Windows<'a> {
    values: &'a [f32],
    n_cols: usize,
    n_rows: usize,
    len: usize,
    stride: usize,
    /// Windows on the regular grid `i · stride`.
    n_regular: usize,
    /// Whether one extra window ends at the last row.
    tail: bool,
}

impl<'a> Windows<'a> {
    /// Windows at starts `0, stride, …` (the last rows may be left out when
    /// `(n_rows − len) % stride ≠ 0`). Errors: `n_cols == 0`, `values.len()` not a multiple of
    /// `n_cols`, `len == 0`, `stride == 0`, `len > n_rows`.
    pub fn new(values: &'a [f32], n_cols: usize, len: usize, stride: usize) -> Result<Self, CoreError> {
        Self::build(values, n_cols, len, stride, false)
    }

    /// As [`Windows::new`], plus a last window `[n_rows − len, n_rows)` when the grid misses
    /// the last rows: every row is covered. Also an error: `stride > len`.
    pub fn covering(values: &'a [f32], n_cols: usize, len: usize, stride: usize) -> Result<Self, CoreError> {
        Self::build(values, n_cols, len, stride, true)
    }

    fn build(values: &'a [f32], n_cols: usize, len: usize, stride: usize, cover: bool) -> Result<Self, CoreError> {
        let bad = |m: String| Err(CoreError::InvalidWindow(m));
        if n_cols == 0 {
            return bad("zero columns".into());
        }
        let n_rows = values.len() / n_cols;
        if n_rows * n_cols != values.len() {
            return bad(format!("{} values are not a whole number of rows of {n_cols} columns", values.len()));
        }
        if len == 0 {
            return bad("window length must be at least 1".into());
        }
        if stride == 0 {
            return bad("stride must be at least 1".into());
        }
        if cover && stride > len {
            return bad(format!("stride {stride} > window length {len} leaves rows uncovered"));
        }
        if len > n_rows {
            return bad(format!("window length {len} is longer than the series ({n_rows} rows)"));
        }
        let span = n_rows - len;
        let n_regular = span / stride + 1;
        let tail = cover && (span / stride) * stride != span;
        Ok(Windows { values, n_cols, n_rows, len, stride, n_regular, tail })
    }

    /// Number of windows.
    pub fn count(&self) -> usize {
        self.n_regular + usize::from(self.tail)
    }

    /// First row of window `i` (`i < count()`; larger `i` give `n_rows − len`).
    pub fn start(&self, i: usize) -> usize {
        if i < self.n_regular {
            i * self.stride
        } else {
            self.n_rows - self.len
        }
    }

    /// Window `i` as a contiguous row-major slice of `len · n_cols` values; empty if
    /// `i >= count()`.
    pub fn get(&self, i: usize) -> &'a [f32] {
        if i >= self.count() {
            return &[];
        }
        let a = self.start(i) * self.n_cols;
        &self.values[a..a + self.len * self.n_cols]
    }

    /// The windows in order.
    pub fn iter(&self) -> WindowIter<'a> {
        WindowIter { w: *self, i: 0 }
    }

    /// The start rows in order.
    pub fn starts(&self) -> impl ExactSizeIterator<Item = usize> + '_ {
        (0..self.count()).map(move |i| self.start(i))
    }

    /// Window length in rows.
    pub fn window_len(&self) -> usize {
        self.len
    }

    /// Stride in rows.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Rows of the underlying buffer.
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Columns of the underlying buffer.
    pub fn n_cols(&self) -> usize {
        self.n_cols
    }
}

impl<'a> IntoIterator for &Windows<'a> {
    type Item = &'a [f32];
    type IntoIter = WindowIter<'a>;
    fn into_iter(self) -> WindowIter<'a> {
        self.iter()
    }
}

/// Iterator over the windows of a [`Windows`].
#[derive(Debug, Clone)]
pub struct WindowIter<'a> {
    w: Windows<'a>,
    i: usize,
}

impl<'a> Iterator for WindowIter<'a> {
    type Item = &'a [f32];
    fn next(&mut self) -> Option<&'a [f32]> {
        if self.i >= self.w.count() {
            return None;
        }
        let s = self.w.get(self.i);
        self.i += 1;
        Some(s)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.w.count().saturating_sub(self.i);
        (n, Some(n))
    }
}

impl ExactSizeIterator for WindowIter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_and_cover() {
        let v: Vec<f32> = (0..20).map(|x| x as f32).collect(); // 10 rows × 2
        let w = Windows::new(&v, 2, 4, 3).unwrap();
        assert_eq!(w.count(), 3); // starts 0, 3, 6; rows 0..10
        assert_eq!(w.starts().collect::<Vec<_>>(), vec![0, 3, 6]);
        assert_eq!(w.get(1), &v[6..14]);
        assert!(w.get(3).is_empty());
        let c = Windows::covering(&v, 2, 4, 4).unwrap();
        assert_eq!(c.starts().collect::<Vec<_>>(), vec![0, 4, 6]);
        assert_eq!(c.iter().len(), 3);
        assert_eq!(c.iter().last().unwrap(), &v[12..20]);
        let e = Windows::covering(&v, 2, 4, 3).unwrap();
        assert_eq!(e.count(), 3);
        let full = Windows::new(&v, 2, 10, 1).unwrap();
        assert_eq!(full.count(), 1);
    }

    #[test]
    fn errors() {
        let v = [0.0f32; 6];
        assert!(Windows::new(&v, 0, 1, 1).is_err());
        assert!(Windows::new(&v, 4, 1, 1).is_err());
        assert!(Windows::new(&v, 2, 0, 1).is_err());
        assert!(Windows::new(&v, 2, 1, 0).is_err());
        assert!(Windows::new(&v, 2, 4, 1).is_err());
        assert!(Windows::new(&[], 2, 1, 1).is_err());
        assert!(Windows::covering(&v, 2, 1, 2).is_err());
        assert!(Windows::new(&v, 2, 1, 2).is_ok());
    }
}
