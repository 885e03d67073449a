//! Closed-form ridge-to-anchor least squares (digest §5) and its iterative reference path.
//!
//! For inputs `u_r ∈ R^k`, targets `v_r ∈ R^k` (`r = 1..R`) and an anchor map `(A, a)`
//! (identity for a first adaptation, the previous adapter for a chained one), the fit is
//!
//! ```text
//!   min_{W,b}  Σ_r ‖W u_r + b − v_r‖²  +  λ_W ‖W − A‖_F²  +  λ_b ‖b − a‖²
//! ```
//!
//! Writing `Θ = [Wᵀ; bᵀ]` ((k+1) × k), `A_r = [u_rᵀ, 1]`, `Λ = diag(λ_W, …, λ_W, λ_b)`:
//! `Θ* = (AᵀA + Λ)⁻¹ (AᵀY + Λ Θ₀)` — a Cholesky solve of size `k + 1` with `k` right-hand
//! sides. `AᵀA + Λ` is positive definite for any `R ≥ 1` as soon as `λ_W > 0` (also with
//! `λ_b = 0`, since the bias column then has the positive pivot `R − 1ᵀU(UᵀU+λ_W I)⁻¹Uᵀ1`).

use serde::{Deserialize, Serialize};

use crate::{AdaptError, AffineMap};

/// Ridge strength in data units (the "pseudo-row" reading): the anchor counts as
/// `κ_eff` extra rows of evidence, `κ_eff = pseudo_rows` or, with `per_dim`,
/// `pseudo_rows · k` (k = dimension of the map: one pseudo-row per free weight of an output,
/// so that a wide `M_x` fitted on about as many rows as it has weights per output — one
/// window of 40 steps, `m = 38` — is not interpolated).
///
/// `λ_W = κ_eff · s̄` where `s̄ = Σ_r ‖u_r‖² / (R k)` is the mean squared input coordinate: a
/// perturbation `ΔW` costs `≈ R s̄ ‖ΔW‖²` in the data term, so ridge : data is `κ_eff : R`
/// whatever the scale of the inputs (the fit is equivariant to rescaling `u`). The bias
/// multiplies the constant input 1, so `λ_b = κ_eff` when `penalise_bias`, else `0`
/// (digest §5: bias unpenalised).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ridge {
    /// `κ > 0`: anchor weight in rows (windows for `M_z`, time steps for `M_x`), per input
    /// dimension when `per_dim`.
    pub pseudo_rows: f64,
    /// Multiply `pseudo_rows` by the map's dimension `k`.
    pub per_dim: bool,
    /// Whether the bias is pulled toward the anchor's bias too.
    pub penalise_bias: bool,
}

impl Ridge {
    /// `κ` pseudo-rows in total, bias free.
    pub fn rows(pseudo_rows: f64) -> Self {
        Ridge { pseudo_rows, per_dim: false, penalise_bias: false }
    }

    /// `κ · k` pseudo-rows, bias free.
    pub fn per_dim(pseudo_rows: f64) -> Self {
        Ridge { pseudo_rows, per_dim: true, penalise_bias: false }
    }

    /// Absolute penalties for the given inputs (row-major `R × k`).
    pub fn penalty(&self, inputs: &[f32], dim: usize) -> Penalty {
        let n = inputs.len().max(1) as f64;
        let mean_sq = inputs.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / n;
        // All-zero inputs: fall back to unit scale so that the system stays definite.
        let scale = if mean_sq > 0.0 && mean_sq.is_finite() { mean_sq } else { 1.0 };
        let kappa = if self.per_dim { self.pseudo_rows * dim as f64 } else { self.pseudo_rows };
        Penalty { weight: kappa * scale, bias: if self.penalise_bias { kappa } else { 0.0 } }
    }

    pub(crate) fn validate(&self, name: &str) -> Result<(), AdaptError> {
        if !(self.pseudo_rows.is_finite() && self.pseudo_rows > 0.0) {
            return Err(AdaptError::InvalidConfig(format!(
                "{name}.pseudo_rows must be finite and > 0 (got {})",
                self.pseudo_rows
            )));
        }
        Ok(())
    }
}

/// Absolute ridge penalties `λ_W` (on `W − A`) and `λ_b` (on `b − a`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Penalty {
    pub weight: f64,
    pub bias: f64,
}

/// Accumulated normal equations `AᵀA` ((k+1)²) and `AᵀY` ((k+1) × k), in `f64`.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalEquations {
    dim: usize,
    rows: usize,
    ata: Vec<f64>,
    aty: Vec<f64>,
}

impl NormalEquations {
    /// Empty system for maps on `R^dim`.
    pub fn new(dim: usize) -> Self {
        let p = dim + 1;
        NormalEquations { dim, rows: 0, ata: vec![0.0; p * p], aty: vec![0.0; p * dim] }
    }

    /// Number of rows added so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Adds the rows `(u_r, v_r)` (both row-major `R × k`). Errors on ragged lengths or
    /// non-finite values.
    pub fn add_rows(&mut self, inputs: &[f32], targets: &[f32]) -> Result<(), AdaptError> {
        let k = self.dim;
        check_rows("ridge inputs", inputs, k)?;
        check_rows("ridge targets", targets, k)?;
        if inputs.len() != targets.len() {
            return Err(AdaptError::InvalidConfig(format!(
                "ridge fit: {} input rows but {} target rows",
                inputs.len() / k,
                targets.len() / k
            )));
        }
        let p = k + 1;
        let mut a = vec![0.0f64; p];
        a[k] = 1.0;
        for (u, v) in inputs.chunks_exact(k).zip(targets.chunks_exact(k)) {
            for (dst, &x) in a.iter_mut().zip(u) {
                *dst = x as f64;
            }
            for i in 0..p {
                let ai = a[i];
                let row = &mut self.ata[i * p..(i + 1) * p];
                for (j, r) in row.iter_mut().enumerate().skip(i) {
                    *r += ai * a[j];
                }
                let rhs = &mut self.aty[i * k..(i + 1) * k];
                for (r, &y) in rhs.iter_mut().zip(v) {
                    *r += ai * y as f64;
                }
            }
            self.rows += 1;
        }
        Ok(())
    }

    /// `H = AᵀA + Λ` (full symmetric) and `rhs = AᵀY + ΛΘ₀`.
    fn system(&self, penalty: Penalty, anchor: &AffineMap) -> Result<(Vec<f64>, Vec<f64>), AdaptError> {
        let k = self.dim;
        if anchor.dim != k {
            return Err(AdaptError::AdapterMismatch(format!(
                "ridge anchor has dimension {} but the data has {k}",
                anchor.dim
            )));
        }
        anchor.validate()?;
        if !(penalty.weight >= 0.0 && penalty.bias >= 0.0 && penalty.weight.is_finite() && penalty.bias.is_finite()) {
            return Err(AdaptError::InvalidConfig(format!("ridge penalties must be finite and ≥ 0, got {penalty:?}")));
        }
        if self.rows == 0 {
            return Err(AdaptError::Empty("ridge fit"));
        }
        let p = k + 1;
        let mut h = self.ata.clone();
        for i in 0..p {
            for j in 0..i {
                h[i * p + j] = h[j * p + i];
            }
            h[i * p + i] += if i < k { penalty.weight } else { penalty.bias };
        }
        let theta0 = theta_of(anchor);
        let mut rhs = self.aty.clone();
        for i in 0..p {
            let l = if i < k { penalty.weight } else { penalty.bias };
            for c in 0..k {
                rhs[i * k + c] += l * theta0[i * k + c];
            }
        }
        Ok((h, rhs))
    }

    /// Closed-form minimiser (Cholesky solve of the normal equations).
    pub fn solve(&self, penalty: Penalty, anchor: &AffineMap) -> Result<AffineMap, AdaptError> {
        let (mut h, mut rhs) = self.system(penalty, anchor)?;
        let p = self.dim + 1;
        cholesky_in_place(&mut h, p)?;
        cholesky_solve(&h, p, &mut rhs, self.dim);
        map_of(self.dim, &rhs)
    }

    /// Full-batch gradient descent on the same objective, started at the anchor, step `1/L`
    /// with `L` the largest eigenvalue of `AᵀA + Λ` (power iteration): the paper's iterative
    /// training without the non-convex decoder coupling. Stops when the gradient norm is at
    /// most `tol · ‖rhs‖` or after `max_iter` steps.
    pub fn solve_gradient(
        &self,
        penalty: Penalty,
        anchor: &AffineMap,
        max_iter: usize,
        tol: f64,
    ) -> Result<GradientFit, AdaptError> {
        let (h, rhs) = self.system(penalty, anchor)?;
        let k = self.dim;
        let p = k + 1;
        let lmax = largest_eigenvalue(&h, p) * 1.02;
        if !(lmax > 0.0 && lmax.is_finite()) {
            return Err(AdaptError::NotPositiveDefinite { size: p, pivot: 0, value: lmax });
        }
        let step = 1.0 / lmax;
        let rhs_norm = rhs.iter().map(|v| v * v).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
        let mut theta = theta_of(anchor);
        let mut grad = vec![0.0f64; p * k];
        let mut iterations = 0;
        let mut grad_norm = f64::INFINITY;
        while iterations < max_iter {
            // grad = HΘ − rhs
            for i in 0..p {
                for c in 0..k {
                    grad[i * k + c] = -rhs[i * k + c];
                }
                for j in 0..p {
                    let hij = h[i * p + j];
                    if hij != 0.0 {
                        for c in 0..k {
                            grad[i * k + c] += hij * theta[j * k + c];
                        }
                    }
                }
            }
            grad_norm = grad.iter().map(|v| v * v).sum::<f64>().sqrt();
            if grad_norm <= tol * rhs_norm {
                break;
            }
            for (t, g) in theta.iter_mut().zip(&grad) {
                *t -= step * g;
            }
            iterations += 1;
        }
        Ok(GradientFit {
            map: map_of(k, &theta)?,
            iterations,
            converged: grad_norm <= tol * rhs_norm,
            relative_gradient: grad_norm / rhs_norm,
        })
    }
}

/// Result of [`NormalEquations::solve_gradient`].
#[derive(Debug, Clone, PartialEq)]
pub struct GradientFit {
    pub map: AffineMap,
    pub iterations: usize,
    pub converged: bool,
    /// Final `‖HΘ − rhs‖ / ‖rhs‖`.
    pub relative_gradient: f64,
}

/// Closed-form ridge fit toward `anchor` (digest §5):
/// `argmin Σ‖W u_r + b − v_r‖² + λ_W‖W − A‖² + λ_b‖b − a‖²`, inputs/targets row-major `R × k`.
/// With `anchor = AffineMap::identity(k)` this is the "ridge to identity" of the paper's
/// anti-overfitting reading.
pub fn fit_ridge_to_identity(
    inputs: &[f32],
    targets: &[f32],
    dim: usize,
    penalty: Penalty,
    anchor: &AffineMap,
) -> Result<AffineMap, AdaptError> {
    let mut ne = NormalEquations::new(dim);
    ne.add_rows(inputs, targets)?;
    ne.solve(penalty, anchor)
}

/// The iterative reference path of [`fit_ridge_to_identity`] (gradient descent from the
/// anchor); it reaches the same optimum (tested).
pub fn fit_ridge_gradient(
    inputs: &[f32],
    targets: &[f32],
    dim: usize,
    penalty: Penalty,
    anchor: &AffineMap,
    max_iter: usize,
    tol: f64,
) -> Result<GradientFit, AdaptError> {
    let mut ne = NormalEquations::new(dim);
    ne.add_rows(inputs, targets)?;
    ne.solve_gradient(penalty, anchor, max_iter, tol)
}

fn check_rows(what: &'static str, v: &[f32], k: usize) -> Result<(), AdaptError> {
    if k == 0 || v.len() % k != 0 {
        return Err(AdaptError::BadLength { what, len: v.len(), width: k });
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(AdaptError::NonFinite { what, row: i / k, col: i % k, value: v[i] });
    }
    Ok(())
}

/// `Θ = [Wᵀ; bᵀ]`, row-major `(k+1) × k`.
fn theta_of(map: &AffineMap) -> Vec<f64> {
    let k = map.dim;
    let mut t = vec![0.0f64; (k + 1) * k];
    for i in 0..k {
        for j in 0..k {
            t[j * k + i] = map.weight[i * k + j] as f64;
        }
        t[k * k + i] = map.bias[i] as f64;
    }
    t
}

fn map_of(k: usize, theta: &[f64]) -> Result<AffineMap, AdaptError> {
    let mut w = vec![0.0f64; k * k];
    for i in 0..k {
        for j in 0..k {
            w[i * k + j] = theta[j * k + i];
        }
    }
    AffineMap::from_f64(k, &w, &theta[k * k..(k + 1) * k])
}

/// In-place lower Cholesky factor `H = L Lᵀ` of a symmetric `p × p` matrix (row-major; the
/// strict upper triangle is left untouched and ignored). Errors on a pivot that is not
/// positive (relative to the largest diagonal entry).
pub fn cholesky_in_place(h: &mut [f64], p: usize) -> Result<(), AdaptError> {
    let max_diag = (0..p).map(|i| h[i * p + i].abs()).fold(0.0f64, f64::max);
    let floor = max_diag * 1e-14;
    for j in 0..p {
        let mut d = h[j * p + j];
        for l in 0..j {
            d -= h[j * p + l] * h[j * p + l];
        }
        if d.is_nan() || d <= floor || !d.is_finite() {
            return Err(AdaptError::NotPositiveDefinite { size: p, pivot: j, value: d });
        }
        let d = d.sqrt();
        h[j * p + j] = d;
        for i in j + 1..p {
            let mut s = h[i * p + j];
            for l in 0..j {
                s -= h[i * p + l] * h[j * p + l];
            }
            h[i * p + j] = s / d;
        }
    }
    Ok(())
}

/// Solves `L Lᵀ X = B` in place for `B` row-major `p × c` (`l` from [`cholesky_in_place`]).
pub fn cholesky_solve(l: &[f64], p: usize, b: &mut [f64], c: usize) {
    // Forward: L Y = B.
    for i in 0..p {
        for j in 0..i {
            let lij = l[i * p + j];
            if lij != 0.0 {
                for col in 0..c {
                    b[i * c + col] -= lij * b[j * c + col];
                }
            }
        }
        let d = l[i * p + i];
        for col in 0..c {
            b[i * c + col] /= d;
        }
    }
    // Backward: Lᵀ X = Y.
    for i in (0..p).rev() {
        for j in i + 1..p {
            let lji = l[j * p + i];
            if lji != 0.0 {
                for col in 0..c {
                    b[i * c + col] -= lji * b[j * c + col];
                }
            }
        }
        let d = l[i * p + i];
        for col in 0..c {
            b[i * c + col] /= d;
        }
    }
}

/// Largest eigenvalue of a symmetric positive semi-definite matrix by power iteration.
fn largest_eigenvalue(h: &[f64], p: usize) -> f64 {
    // A non-symmetric start vector, so that it is not orthogonal to the top eigenvector of
    // structured matrices.
    let mut v: Vec<f64> = (0..p).map(|i| 1.0 + 0.1 * ((i * 7919) % 13) as f64).collect();
    let mut lambda = 0.0;
    for _ in 0..200 {
        let mut hv = vec![0.0f64; p];
        for i in 0..p {
            hv[i] = (0..p).map(|j| h[i * p + j] * v[j]).sum();
        }
        let norm = hv.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm == 0.0 || !norm.is_finite() {
            return norm;
        }
        lambda = norm;
        for (a, b) in v.iter_mut().zip(&hv) {
            *a = b / norm;
        }
    }
    lambda
}
