//! Scalers fitted on the training prefix: `x' = (x − offset) / scale`, per column.
//!
//! Statistics are computed in `f64` over the finite values of each column (NaN / ±inf, which
//! only the reader's `keep` policy lets through, are ignored). A column that is constant, has
//! no finite value, or whose scale is 0, non-finite or below the smallest normal `f32` gets
//! scale 1 (a constant column also gets its value as offset, so it maps to 0): transformed
//! values of finite inputs are never NaN.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{CoreError, Series};

/// The kind of scaler. Serialised in lower case (`"zscore"`, `"minmax"`, `"robust"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScalerKind {
    /// offset = mean, scale = population standard deviation (ddof = 0, as numpy's `std`,
    /// scipy's `zscore` and scikit-learn's `StandardScaler`).
    #[default]
    ZScore,
    /// offset = min, scale = max − min (maps the training range to [0, 1]).
    MinMax,
    /// offset = median, scale = interquartile range q75 − q25 (numpy `percentile`, method
    /// `linear`), as scikit-learn's `RobustScaler`.
    Robust,
}

impl ScalerKind {
    /// The accepted spellings, for help texts.
    pub const VARIANTS: &'static str = "zscore|minmax|robust";

    /// The lower-case name, as accepted by [`FromStr`].
    pub fn as_str(self) -> &'static str {
        match self {
            ScalerKind::ZScore => "zscore",
            ScalerKind::MinMax => "minmax",
            ScalerKind::Robust => "robust",
        }
    }
}

impl fmt::Display for ScalerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ScalerKind {
    type Err = CoreError;

    /// `zscore` (or `z-score`), `minmax` (or `min-max`), `robust`; any letter case.
    fn from_str(s: &str) -> Result<Self, CoreError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "zscore" | "z-score" => Ok(ScalerKind::ZScore),
            "minmax" | "min-max" => Ok(ScalerKind::MinMax),
            "robust" => Ok(ScalerKind::Robust),
            _ => Err(CoreError::UnknownOption { what: "scaler", value: s.to_string(), expected: Self::VARIANTS }),
        }
    }
}

/// A fitted per-column affine scaler: `x' = (x − offset[j]) / scale[j]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    pub kind: ScalerKind,
    pub offset: Vec<f32>,
    pub scale: Vec<f32>,
}

impl Scaler {
    /// Fits on the training prefix of `series` (all rows if `train_end == 0`).
    pub fn fit(series: &Series, kind: ScalerKind) -> Scaler {
        let values = if series.train_end == 0 { &series.values[..] } else { series.train_values() };
        Scaler::fit_rows(values, series.n_cols(), kind)
    }

    /// Fits on row-major `values` with `n_cols` columns (a trailing partial row is ignored;
    /// `n_cols == 0` gives an empty scaler).
    pub fn fit_rows(values: &[f32], n_cols: usize, kind: ScalerKind) -> Scaler {
        let mut offset = Vec::with_capacity(n_cols);
        let mut scale = Vec::with_capacity(n_cols);
        if let Some(n_rows) = values.len().checked_div(n_cols) {
            let mut col: Vec<f64> = Vec::with_capacity(n_rows);
            for j in 0..n_cols {
                col.clear();
                col.extend((0..n_rows).map(|t| values[t * n_cols + j] as f64).filter(|v| v.is_finite()));
                let (o, s) = column_stats(&mut col, kind);
                offset.push(o);
                scale.push(s);
            }
        }
        Scaler { kind, offset, scale }
    }

    /// Number of columns the scaler was fitted on.
    pub fn n_cols(&self) -> usize {
        self.offset.len().min(self.scale.len())
    }

    /// Scales row-major `values` (with [`Self::n_cols`] columns) in place; value `i` belongs
    /// to column `i % n_cols`. No-op for an empty scaler.
    pub fn transform(&self, values: &mut [f32]) {
        let m = self.n_cols();
        if m == 0 {
            return;
        }
        for row in values.chunks_mut(m) {
            for ((x, &o), &s) in row.iter_mut().zip(&self.offset).zip(&self.scale) {
                *x = ((*x as f64 - o as f64) / s as f64) as f32;
            }
        }
    }

    /// The scaled values of `series` (a new row-major buffer).
    pub fn transformed(&self, series: &Series) -> Vec<f32> {
        let mut v = series.values.clone();
        self.transform(&mut v);
        v
    }

    /// Undoes [`Self::transform`] in place: `x = x' · scale + offset`.
    pub fn inverse_transform(&self, values: &mut [f32]) {
        let m = self.n_cols();
        if m == 0 {
            return;
        }
        for row in values.chunks_mut(m) {
            for ((x, &o), &s) in row.iter_mut().zip(&self.offset).zip(&self.scale) {
                *x = (*x as f64 * s as f64 + o as f64) as f32;
            }
        }
    }
}

/// (offset, scale) of one column's finite values; `col` gets reordered.
fn column_stats(col: &mut [f64], kind: ScalerKind) -> (f32, f32) {
    if col.is_empty() {
        return (0.0, 1.0);
    }
    let (mn, mx) = col.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    if mn == mx {
        return (safe_offset(mn), 1.0);
    }
    let (o, s) = match kind {
        ScalerKind::ZScore => {
            let n = col.len() as f64;
            let mean = col.iter().sum::<f64>() / n;
            let var = col.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            (mean, var.sqrt())
        }
        ScalerKind::MinMax => (mn, mx - mn),
        ScalerKind::Robust => {
            col.sort_unstable_by(f64::total_cmp);
            let q = |p: f64| percentile_linear(col, p);
            (q(0.5), q(0.75) - q(0.25))
        }
    };
    (safe_offset(o), safe_scale(s))
}

fn safe_offset(o: f64) -> f32 {
    let o = o as f32;
    if o.is_finite() {
        o
    } else {
        0.0
    }
}

fn safe_scale(s: f64) -> f32 {
    let s = s as f32;
    if s.is_finite() && s >= f32::MIN_POSITIVE {
        s
    } else {
        1.0
    }
}

/// numpy `percentile(..., method="linear")` of sorted, non-empty `a`, `p` in [0, 1].
fn percentile_linear(a: &[f64], p: f64) -> f64 {
    let n = a.len();
    if n == 1 {
        return a[0];
    }
    let pos = p * (n - 1) as f64;
    let lo = (pos.floor() as usize).min(n - 1);
    let hi = (lo + 1).min(n - 1);
    let t = pos - lo as f64;
    let (x, y) = (a[lo], a[hi]);
    let d = y - x;
    // numpy's _lerp: a + d·t, or b − d·(1 − t) for t ≥ 0.5.
    if t >= 0.5 {
        y - d * (1.0 - t)
    } else {
        x + d * t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zscore_matches_numpy() {
        // numpy: x = [1, 2, 3, 4]; mean 2.5, std (ddof=0) = 1.118033988749895
        let s = Scaler::fit_rows(&[1.0, 2.0, 3.0, 4.0], 1, ScalerKind::ZScore);
        assert_eq!(s.offset, vec![2.5]);
        assert!((s.scale[0] - 1.118_034).abs() < 1e-6);
    }

    #[test]
    fn robust_matches_numpy() {
        // numpy.percentile([1, 2, 4, 7, 100], [25, 50, 75]) = [2, 4, 7]
        let s = Scaler::fit_rows(&[7.0, 1.0, 100.0, 2.0, 4.0], 1, ScalerKind::Robust);
        assert_eq!((s.offset[0], s.scale[0]), (4.0, 5.0));
        // numpy.percentile([1, 2, 3, 4], [25, 50, 75]) = [1.75, 2.5, 3.25]
        let s = Scaler::fit_rows(&[1.0, 2.0, 3.0, 4.0], 1, ScalerKind::Robust);
        assert_eq!((s.offset[0], s.scale[0]), (2.5, 1.5));
    }

    #[test]
    fn minmax_and_constant() {
        let v = [1.0, 5.0, 3.0, 5.0, 5.0, 5.0];
        let s = Scaler::fit_rows(&v, 2, ScalerKind::MinMax);
        assert_eq!(s.offset, vec![1.0, 5.0]);
        assert_eq!(s.scale, vec![4.0, 1.0]);
        let mut w = v;
        s.transform(&mut w);
        assert_eq!(w, [0.0, 0.0, 0.5, 0.0, 1.0, 0.0]);
        // Robust with IQR 0 but not constant (a rare 0/1 flag).
        let s = Scaler::fit_rows(&[0.0, 0.0, 0.0, 0.0, 1.0], 1, ScalerKind::Robust);
        assert_eq!((s.offset[0], s.scale[0]), (0.0, 1.0));
    }

    #[test]
    fn non_finite_ignored_and_empty() {
        let s = Scaler::fit_rows(&[f32::NAN, 1.0, f32::INFINITY, 3.0], 1, ScalerKind::ZScore);
        assert_eq!((s.offset[0], s.scale[0]), (2.0, 1.0));
        let s = Scaler::fit_rows(&[f32::NAN], 1, ScalerKind::ZScore);
        assert_eq!((s.offset[0], s.scale[0]), (0.0, 1.0));
        let s = Scaler::fit_rows(&[], 0, ScalerKind::ZScore);
        let mut v = [1.0];
        s.transform(&mut v);
        assert_eq!(v, [1.0]);
    }

    #[test]
    fn fit_uses_training_prefix() {
        let series = Series::new(vec![0.0, 2.0, 100.0], 3, vec!["a".into()], None, None, 2).unwrap();
        let s = Scaler::fit(&series, ScalerKind::MinMax);
        assert_eq!((s.offset[0], s.scale[0]), (0.0, 2.0));
        assert_eq!(s.transformed(&series), vec![0.0, 1.0, 50.0]);
        let all = Series { train_end: 0, ..series };
        assert_eq!(Scaler::fit(&all, ScalerKind::MinMax).scale[0], 100.0);
    }

    #[test]
    fn kind_names() {
        assert_eq!("MinMax".parse::<ScalerKind>().unwrap(), ScalerKind::MinMax);
        assert!("foo".parse::<ScalerKind>().is_err());
        assert_eq!(ScalerKind::default(), ScalerKind::ZScore);
        for k in [ScalerKind::ZScore, ScalerKind::MinMax, ScalerKind::Robust] {
            assert_eq!(k.to_string().parse::<ScalerKind>().unwrap(), k);
        }
    }
}
