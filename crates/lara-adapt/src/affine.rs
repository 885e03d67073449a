//! Affine adjusting functions `M(u) = W u + b` (digest §4: the MMSE map
//! `μ_v + Σ_vu Σ_uu⁻¹ (u − μ_u)` under joint Gaussianity is affine with a full matrix).

use serde::{Deserialize, Serialize};

use crate::AdaptError;

/// A square affine map `u ↦ W u + b` on `R^dim`, `W` row-major `dim × dim`.
///
/// Stored in `f32` (the size of what the lead writes into the model file); fits are computed
/// in `f64` and rounded once. `apply` accumulates in `f32`; for the identity map
/// (`W = I`, `b = 0`) the result is bit-identical to the input, which is what makes an
/// un-adapted LARA equal to the old model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AffineMap {
    /// Dimension `k` of input and output.
    pub dim: usize,
    /// `W`, row-major `k × k`: output `i` is `Σ_j weight[i·k + j] · u_j + bias[i]`.
    pub weight: Vec<f32>,
    /// `b`, length `k`.
    pub bias: Vec<f32>,
}

impl AffineMap {
    /// `W = I`, `b = 0` (the initialisation of both `M_z` and `M_x`; digest §4).
    pub fn identity(dim: usize) -> Self {
        let mut weight = vec![0.0; dim * dim];
        for i in 0..dim {
            weight[i * dim + i] = 1.0;
        }
        AffineMap { dim, weight, bias: vec![0.0; dim] }
    }

    /// Builds a map from `f64` parameters (`weight` row-major `k × k`, `bias` length `k`).
    pub fn from_f64(dim: usize, weight: &[f64], bias: &[f64]) -> Result<Self, AdaptError> {
        let map = AffineMap {
            dim,
            weight: weight.iter().map(|&v| v as f32).collect(),
            bias: bias.iter().map(|&v| v as f32).collect(),
        };
        map.validate()?;
        Ok(map)
    }

    /// Checks `weight.len() = k²`, `bias.len() = k` and that every entry is finite
    /// (use after deserialisation).
    pub fn validate(&self) -> Result<(), AdaptError> {
        if self.weight.len() != self.dim * self.dim || self.bias.len() != self.dim {
            return Err(AdaptError::AdapterMismatch(format!(
                "affine map of dimension {} has {} weights and {} biases (expected {} and {})",
                self.dim,
                self.weight.len(),
                self.bias.len(),
                self.dim * self.dim,
                self.dim
            )));
        }
        if let Some(i) = self.weight.iter().chain(&self.bias).position(|v| !v.is_finite()) {
            return Err(AdaptError::AdapterMismatch(format!("affine map has a non-finite parameter at index {i}")));
        }
        Ok(())
    }

    /// Whether this is exactly the identity map.
    pub fn is_identity(&self) -> bool {
        let k = self.dim;
        self.weight.len() == k * k
            && self.bias.iter().all(|&b| b == 0.0)
            && self.weight.iter().enumerate().all(|(e, &w)| w == if e / k == e % k { 1.0 } else { 0.0 })
    }

    /// Applies the map to every consecutive `k`-vector of `rows` (row-major `n × k`; for
    /// `M_x` the rows are the time steps of the reconstructed windows, so the map is shared
    /// over the steps of a window — digest §4, ambiguity 2). Errors if `rows.len()` is not a
    /// multiple of `k`. The identity map returns a copy of its input (exactly what the
    /// arithmetic gives, without the `O(n k²)` work).
    pub fn apply(&self, rows: &[f32]) -> Result<Vec<f32>, AdaptError> {
        let k = self.dim;
        if k == 0 || rows.len() % k != 0 {
            return Err(AdaptError::BadLength { what: "affine map input", len: rows.len(), width: k });
        }
        if self.is_identity() {
            return Ok(rows.to_vec());
        }
        // out_r = b + Σ_j u_{r,j} · W[:, j]: axpy over the columns of W (contiguous in Wᵀ),
        // which the compiler vectorises.
        let mut wt = vec![0.0f32; k * k];
        for i in 0..k {
            for j in 0..k {
                wt[j * k + i] = self.weight[i * k + j];
            }
        }
        let mut out = vec![0.0f32; rows.len()];
        for (u, o) in rows.chunks_exact(k).zip(out.chunks_exact_mut(k)) {
            o.copy_from_slice(&self.bias);
            for (&uj, col) in u.iter().zip(wt.chunks_exact(k)) {
                for (oi, &w) in o.iter_mut().zip(col) {
                    *oi += w * uj;
                }
            }
        }
        Ok(out)
    }

    /// `self ∘ inner`: the map `u ↦ W_s (W_i u + b_i) + b_s` (computed in `f64`). Two chained
    /// adaptations therefore collapse into one map of the same size.
    pub fn compose(&self, inner: &AffineMap) -> Result<AffineMap, AdaptError> {
        if self.dim != inner.dim {
            return Err(AdaptError::AdapterMismatch(format!(
                "cannot compose maps of dimensions {} and {}",
                self.dim, inner.dim
            )));
        }
        let k = self.dim;
        let mut w = vec![0.0f64; k * k];
        let mut b = vec![0.0f64; k];
        for i in 0..k {
            let mut bi = self.bias[i] as f64;
            for l in 0..k {
                let a = self.weight[i * k + l] as f64;
                bi += a * inner.bias[l] as f64;
                for j in 0..k {
                    w[i * k + j] += a * inner.weight[l * k + j] as f64;
                }
            }
            b[i] = bi;
        }
        AffineMap::from_f64(k, &w, &b)
    }

    /// A (ridge-regularised) left inverse: the affine map `y ↦ P (y − b)` with
    /// `P = (WᵀW + ε I)⁻¹ Wᵀ`, `ε = rel_eps · tr(WᵀW) / k`, so `inverse ∘ self ≈ id` for a
    /// well-conditioned `W` and directions that `W` (nearly) annihilates are not blown up.
    /// Used to carry new windows back into the old model's input space (the input-side
    /// correction of [`crate::ZTarget::Corrected`]).
    pub fn regularised_inverse(&self, rel_eps: f64) -> Result<AffineMap, AdaptError> {
        self.validate()?;
        let k = self.dim;
        let w: Vec<f64> = self.weight.iter().map(|&v| v as f64).collect();
        let mut h = vec![0.0f64; k * k];
        for i in 0..k {
            for j in 0..k {
                h[i * k + j] = (0..k).map(|l| w[l * k + i] * w[l * k + j]).sum();
            }
        }
        let tr = (0..k).map(|i| h[i * k + i]).sum::<f64>() / k.max(1) as f64;
        let eps = rel_eps.max(0.0) * if tr > 0.0 && tr.is_finite() { tr } else { 1.0 } + 1e-12;
        for i in 0..k {
            h[i * k + i] += eps;
        }
        crate::ridge::cholesky_in_place(&mut h, k)?;
        // rhs = Wᵀ (k × k): P = H⁻¹ Wᵀ.
        let mut p: Vec<f64> = (0..k * k).map(|e| w[(e % k) * k + e / k]).collect();
        crate::ridge::cholesky_solve(&h, k, &mut p, k);
        let bias: Vec<f64> = (0..k).map(|i| -(0..k).map(|j| p[i * k + j] * self.bias[j] as f64).sum::<f64>()).collect();
        AffineMap::from_f64(k, &p, &bias)
    }

    /// Number of parameters `k² + k`.
    pub fn n_params(&self) -> usize {
        self.dim * self.dim + self.dim
    }
}
