//! The frozen detector LARA adapts, seen through a minimal batch interface (digest §2).

use crate::{AdaptError, Adapter};

/// A trained, frozen window-level Gaussian VAE.
///
/// All buffers are row-major `f32`: a batch of `n` windows is `n × (w·m)` (time-major inside
/// a window: step `t`, feature `k` at `t·m + k`), latents are `n × d_z`.
///
/// * encoder `q(z|x) = N(μ(x), diag exp(logvar(x)))`, prior `p(z) = N(0, I)`;
/// * decoder `p(x|z) = Π_{t,k} N(x_{t,k}; μ_θ(z)_{t,k}, σ²_k)` with a fixed (not
///   `z`-dependent) variance: [`FrozenVae::output_log_var`] of length `m` (per feature, shared
///   over steps) or `w·m` (per element).
///
/// Implementations may panic on buffers of the wrong size; this crate always passes buffers of
/// the documented size and checks what comes back (length, finiteness) before using it.
pub trait FrozenVae {
    /// Window length `w` (time steps).
    fn window_len(&self) -> usize;
    /// Number of features `m`.
    fn n_features(&self) -> usize;
    /// Latent dimension `d_z`.
    fn latent_dim(&self) -> usize;
    /// Encoder `(μ, log σ²)` for `n` windows, each `n × d_z`.
    fn encode(&self, windows: &[f32], n: usize) -> (Vec<f32>, Vec<f32>);
    /// Decoder means `μ_θ(z)` for `n` latents: `n × (w·m)`.
    fn decode_mean(&self, z: &[f32], n: usize) -> Vec<f32>;
    /// Decoder log-variance `log σ²`, length `m` or `w·m`.
    fn output_log_var(&self) -> &[f32];
}

impl<M: FrozenVae + ?Sized> FrozenVae for &M {
    fn window_len(&self) -> usize {
        (**self).window_len()
    }
    fn n_features(&self) -> usize {
        (**self).n_features()
    }
    fn latent_dim(&self) -> usize {
        (**self).latent_dim()
    }
    fn encode(&self, windows: &[f32], n: usize) -> (Vec<f32>, Vec<f32>) {
        (**self).encode(windows, n)
    }
    fn decode_mean(&self, z: &[f32], n: usize) -> Vec<f32> {
        (**self).decode_mean(z, n)
    }
    fn output_log_var(&self) -> &[f32] {
        (**self).output_log_var()
    }
}

/// Shape of a model, validated once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelDims {
    pub window: usize,
    pub features: usize,
    pub latent: usize,
}

impl ModelDims {
    /// `w · m`.
    pub fn window_size(&self) -> usize {
        self.window * self.features
    }
}

/// Reads and validates the model's dimensions and output variance.
pub fn model_dims<M: FrozenVae + ?Sized>(model: &M) -> Result<ModelDims, AdaptError> {
    let d = ModelDims { window: model.window_len(), features: model.n_features(), latent: model.latent_dim() };
    if d.window == 0 || d.features == 0 || d.latent == 0 {
        return Err(AdaptError::InvalidModel(format!(
            "window {}, features {}, latent {} (all must be ≥ 1)",
            d.window, d.features, d.latent
        )));
    }
    let lv = model.output_log_var();
    if lv.len() != d.features && lv.len() != d.window_size() {
        return Err(AdaptError::InvalidModel(format!(
            "output log-variance has length {}, expected {} (per feature) or {} (per element)",
            lv.len(),
            d.features,
            d.window_size()
        )));
    }
    if let Some(i) = lv.iter().position(|v| !v.is_finite()) {
        return Err(AdaptError::InvalidModel(format!("output log-variance {i} is not finite")));
    }
    Ok(d)
}

/// Inverse variances `1/σ²` expanded to one per window element (`w·m`).
pub(crate) fn inv_var_per_element<M: FrozenVae + ?Sized>(model: &M, d: ModelDims) -> Vec<f64> {
    let lv = model.output_log_var();
    (0..d.window_size()).map(|e| (-(lv[e % lv.len()] as f64)).exp()).collect()
}

fn check_output(method: &'static str, v: &[f32], expected: usize) -> Result<(), AdaptError> {
    if v.len() != expected {
        return Err(AdaptError::ModelOutputLength { method, expected, got: v.len() });
    }
    if let Some(index) = v.iter().position(|x| !x.is_finite()) {
        return Err(AdaptError::ModelNonFinite { method, index });
    }
    Ok(())
}

/// [`FrozenVae::encode`] with the output checked.
pub(crate) fn encode_checked<M: FrozenVae + ?Sized>(
    model: &M,
    d: ModelDims,
    windows: &[f32],
    n: usize,
) -> Result<(Vec<f32>, Vec<f32>), AdaptError> {
    let (mu, lv) = model.encode(windows, n);
    check_output("encode (mean)", &mu, n * d.latent)?;
    check_output("encode (log-variance)", &lv, n * d.latent)?;
    Ok((mu, lv))
}

/// [`FrozenVae::decode_mean`] with the output checked.
pub(crate) fn decode_checked<M: FrozenVae + ?Sized>(
    model: &M,
    d: ModelDims,
    z: &[f32],
    n: usize,
) -> Result<Vec<f32>, AdaptError> {
    let x = model.decode_mean(z, n);
    check_output("decode_mean", &x, n * d.window_size())?;
    Ok(x)
}

/// The adapted detector `(M_z ∘ E, M_x ∘ D)` seen as a frozen VAE again (digest §6):
/// encoder mean `M_z(μ_φ(x))` with the base encoder's variance, decoder mean
/// `M_x(μ_θ(z))` applied per time step, the adapter's re-estimated decoder variance when it
/// has one (else the base decoder's). This is the model the
/// ruminate block restores history from when an adapted model is adapted again.
#[derive(Debug, Clone, Copy)]
pub struct AdaptedVae<'a, M: ?Sized> {
    pub base: &'a M,
    pub adapter: &'a Adapter,
}

impl<'a, M: FrozenVae + ?Sized> AdaptedVae<'a, M> {
    /// Checks that the adapter matches the model.
    pub fn new(base: &'a M, adapter: &'a Adapter) -> Result<Self, AdaptError> {
        let d = model_dims(base)?;
        adapter.check_model(d)?;
        Ok(AdaptedVae { base, adapter })
    }
}

impl<M: FrozenVae + ?Sized> FrozenVae for AdaptedVae<'_, M> {
    fn window_len(&self) -> usize {
        self.base.window_len()
    }
    fn n_features(&self) -> usize {
        self.base.n_features()
    }
    fn latent_dim(&self) -> usize {
        self.base.latent_dim()
    }
    /// `(M_z μ, logvar)`; a wrong-length base output is passed through unchanged (the
    /// checked callers report it).
    fn encode(&self, windows: &[f32], n: usize) -> (Vec<f32>, Vec<f32>) {
        let (mu, lv) = self.base.encode(windows, n);
        match self.adapter.m_z.apply(&mu) {
            Ok(m) => (m, lv),
            Err(_) => (mu, lv),
        }
    }
    fn decode_mean(&self, z: &[f32], n: usize) -> Vec<f32> {
        let x = self.base.decode_mean(z, n);
        self.adapter.m_x.apply(&x).unwrap_or(x)
    }
    /// The adapter's re-estimated variance when it has one, else the base model's.
    fn output_log_var(&self) -> &[f32] {
        self.adapter.log_var(self.base)
    }
}
