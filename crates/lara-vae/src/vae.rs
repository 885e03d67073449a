//! The window-level Gaussian VAE: MLP encoder/decoder over a flattened `w × m` window, with a
//! hand-written forward and backward pass on a fast GEMM ([`crate::matmul`]).
//!
//! All matrices are row-major `f32`. A batch of `n` windows is an `n × (w·m)` matrix whose row
//! `i` is the window flattened time-major (`x[i][t*m + k]` = feature `k` at step `t`).
//!
//! * Encoder `q(z|x) = N(μ(x), diag σ²(x))`: `x → [Linear(H) → act] × depth → Linear(2d)`;
//!   the first `d` outputs are `μ`, the last `d` are `log σ²` (clamped to `[-LOGVAR_CLAMP, LOGVAR_CLAMP]`).
//! * Prior `p(z) = N(0, I)`.
//! * Decoder `p(x|z) = Π_{t,k} N(x_{t,k}; μ_θ(z)_{t,k}, s²_k)`:
//!   `z → [Linear(H) → act] × depth → Linear(w·m)` for the mean, and a per-feature variance
//!   `s²_k` shared over the time steps. Training uses `s² = 1` (data are standardised); after
//!   training `s²_k` is *calibrated* to the mean squared reconstruction error of feature `k`
//!   on the validation windows (with a floor), see [`Vae::calibrate_variance`].

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::gemm::gemm;

/// `log σ²` of the encoder is clamped to ± this value.
pub const LOGVAR_CLAMP: f32 = 8.0;

/// Hidden-layer non-linearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Relu,
    Tanh,
}

impl Activation {
    #[inline]
    fn apply(self, v: &mut [f32]) {
        match self {
            Activation::Relu => v.iter_mut().for_each(|x| *x = x.max(0.0)),
            Activation::Tanh => v.iter_mut().for_each(|x| *x = x.tanh()),
        }
    }
    /// Multiplies `grad` by the derivative, given the activation's *output* `y`.
    #[inline]
    fn backward(self, y: &[f32], grad: &mut [f32]) {
        match self {
            Activation::Relu => grad.iter_mut().zip(y).for_each(|(g, &y)| {
                if y <= 0.0 {
                    *g = 0.0
                }
            }),
            Activation::Tanh => grad.iter_mut().zip(y).for_each(|(g, &y)| *g *= 1.0 - y * y),
        }
    }
}

/// Shape of the network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VaeConfig {
    /// Window length `w` (time steps).
    pub window: usize,
    /// Number of features `m`.
    pub n_features: usize,
    /// Width `H` of the hidden layers.
    pub hidden: usize,
    /// Hidden layers on each side (encoder and decoder), ≥ 1.
    pub depth: usize,
    /// Latent dimension `d`.
    pub latent: usize,
    pub activation: Activation,
}

impl VaeConfig {
    /// `w · m`, the flattened window size.
    pub fn input_dim(&self) -> usize {
        self.window * self.n_features
    }
}

/// One dense layer `y = x·W + b` with `W` stored row-major `in × out` at `w` in the flat
/// parameter vector and `b` (length `out`) at `b`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Dense {
    pub w: usize,
    pub b: usize,
    pub fan_in: usize,
    pub fan_out: usize,
}

/// Named tensor in the flat parameter vector (for serialisation).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub offset: usize,
    pub shape: Vec<usize>,
}

/// The model: configuration, flat parameters and the calibrated decoder variance.
#[derive(Debug, Clone, PartialEq)]
pub struct Vae {
    pub(crate) cfg: VaeConfig,
    pub(crate) params: Vec<f32>,
    pub(crate) enc: Vec<Dense>,
    pub(crate) dec: Vec<Dense>,
    /// Per-feature decoder log-variance `log s²_k` (length `m`).
    pub(crate) dec_logvar: Vec<f32>,
}

/// Activations kept by [`Vae::forward_train`] for the backward pass.
pub(crate) struct Cache<'x> {
    pub n: usize,
    /// The batch itself (borrowed: no copy of the `n × w·m` input per step).
    pub x: &'x [f32],
    pub enc_h: Vec<Vec<f32>>,
    pub mu: Vec<f32>,
    pub logvar: Vec<f32>,
    /// `true` where `log σ²` was clamped (no gradient).
    pub clamped: Vec<bool>,
    pub eps: Vec<f32>,
    pub z: Vec<f32>,
    pub dec_h: Vec<Vec<f32>>,
    pub xhat: Vec<f32>,
}

fn layout(cfg: &VaeConfig) -> (Vec<Dense>, Vec<Dense>, usize) {
    let mut off = 0;
    let mut mk = |i: usize, o: usize| {
        let d = Dense { w: off, b: off + i * o, fan_in: i, fan_out: o };
        off += i * o + o;
        d
    };
    let d_in = cfg.input_dim();
    let mut enc = Vec::new();
    let mut prev = d_in;
    for _ in 0..cfg.depth {
        enc.push(mk(prev, cfg.hidden));
        prev = cfg.hidden;
    }
    enc.push(mk(prev, 2 * cfg.latent));
    let mut dec = Vec::new();
    prev = cfg.latent;
    for _ in 0..cfg.depth {
        dec.push(mk(prev, cfg.hidden));
        prev = cfg.hidden;
    }
    dec.push(mk(prev, d_in));
    (enc, dec, off)
}

/// Standard normal draw (Box–Muller; one value per call, deterministic given the RNG).
pub(crate) fn randn(rng: &mut ChaCha8Rng) -> f32 {
    loop {
        let u1: f64 = rng.gen();
        let u2: f64 = rng.gen();
        if u1 > 1e-300 {
            return ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32;
        }
    }
}

impl Vae {
    /// A freshly initialised model (He-uniform for ReLU, Glorot-uniform for tanh, zero
    /// biases; the encoder's `log σ²` head starts near 0). Deterministic given `rng`.
    pub fn new(cfg: VaeConfig, rng: &mut ChaCha8Rng) -> Self {
        assert!(cfg.depth >= 1 && cfg.hidden >= 1 && cfg.latent >= 1 && cfg.input_dim() >= 1);
        let (enc, dec, n) = layout(&cfg);
        let mut params = vec![0.0f32; n];
        for (li, l) in enc.iter().chain(dec.iter()).enumerate() {
            let is_out = li == enc.len() - 1 || li == enc.len() + dec.len() - 1;
            let bound = if is_out || cfg.activation == Activation::Tanh {
                (6.0 / (l.fan_in + l.fan_out) as f64).sqrt()
            } else {
                (6.0 / l.fan_in as f64).sqrt()
            };
            for p in &mut params[l.w..l.w + l.fan_in * l.fan_out] {
                *p = rng.gen_range(-bound..bound) as f32;
            }
        }
        // Small initial log-variance weights: start with σ ≈ 1 but let μ dominate.
        let head = enc[enc.len() - 1];
        for i in 0..head.fan_in {
            for j in cfg.latent..2 * cfg.latent {
                params[head.w + i * head.fan_out + j] *= 0.1;
            }
        }
        let m = cfg.n_features;
        Vae { cfg, params, enc, dec, dec_logvar: vec![0.0; m] }
    }

    /// Rebuilds a model from its configuration and flat parameters.
    pub fn from_parts(cfg: VaeConfig, params: Vec<f32>, dec_logvar: Vec<f32>) -> Result<Self, String> {
        if cfg.depth < 1 || cfg.hidden < 1 || cfg.latent < 1 || cfg.input_dim() < 1 {
            return Err(format!("invalid architecture {cfg:?}"));
        }
        let (enc, dec, n) = layout(&cfg);
        if params.len() != n {
            return Err(format!("expected {n} parameters, found {}", params.len()));
        }
        if dec_logvar.len() != cfg.n_features {
            return Err(format!("decoder variance has {} entries, expected {}", dec_logvar.len(), cfg.n_features));
        }
        if params.iter().chain(&dec_logvar).any(|v| !v.is_finite()) {
            return Err("non-finite parameter".into());
        }
        Ok(Vae { cfg, params, enc, dec, dec_logvar })
    }

    pub fn config(&self) -> &VaeConfig {
        &self.cfg
    }
    /// Window length `w`.
    pub fn window(&self) -> usize {
        self.cfg.window
    }
    /// Number of features `m`.
    pub fn n_features(&self) -> usize {
        self.cfg.n_features
    }
    /// Latent dimension `d`.
    pub fn latent(&self) -> usize {
        self.cfg.latent
    }
    /// `w · m`.
    pub fn input_dim(&self) -> usize {
        self.cfg.input_dim()
    }
    /// Flat parameter vector (all dense layers; see [`Vae::tensors`]).
    pub fn params(&self) -> &[f32] {
        &self.params
    }
    pub fn params_mut(&mut self) -> &mut [f32] {
        &mut self.params
    }
    /// Per-feature decoder variance `s²_k` (length `m`).
    pub fn obs_var(&self) -> Vec<f32> {
        self.dec_logvar.iter().map(|v| v.exp()).collect()
    }
    /// Per-feature decoder log-variance `log s²_k`.
    pub fn obs_logvar(&self) -> &[f32] {
        &self.dec_logvar
    }
    /// Sets the per-feature decoder log-variance (length `m`).
    pub fn set_obs_logvar(&mut self, lv: Vec<f32>) {
        assert_eq!(lv.len(), self.cfg.n_features);
        self.dec_logvar = lv;
    }

    /// Names and shapes of the dense-layer tensors in the flat parameter vector.
    pub fn tensors(&self) -> Vec<TensorInfo> {
        let mut out = Vec::new();
        for (side, layers) in [("enc", &self.enc), ("dec", &self.dec)] {
            for (i, l) in layers.iter().enumerate() {
                out.push(TensorInfo {
                    name: format!("{side}.{i}.weight"),
                    offset: l.w,
                    shape: vec![l.fan_in, l.fan_out],
                });
                out.push(TensorInfo { name: format!("{side}.{i}.bias"), offset: l.b, shape: vec![l.fan_out] });
            }
        }
        out
    }

    // ----------------------------------------------------------------------------------
    // Building blocks

    fn dense_fwd(&self, l: &Dense, x: &[f32], n: usize) -> Vec<f32> {
        let mut y = Vec::with_capacity(n * l.fan_out);
        let bias = &self.params[l.b..l.b + l.fan_out];
        for _ in 0..n {
            y.extend_from_slice(bias);
        }
        gemm(n, l.fan_out, l.fan_in, x, false, &self.params[l.w..], false, 1.0, &mut y);
        y
    }

    /// Runs an MLP (hidden layers with activation, linear last layer). Returns the hidden
    /// outputs (if `keep`) and the final output.
    fn mlp(&self, layers: &[Dense], x: &[f32], n: usize, keep: bool) -> (Vec<Vec<f32>>, Vec<f32>) {
        let mut hs: Vec<Vec<f32>> = Vec::new();
        let mut cur: Vec<f32> = Vec::new();
        for (i, l) in layers.iter().enumerate() {
            let mut y = self.dense_fwd(l, if i == 0 { x } else { &cur }, n);
            if i + 1 == layers.len() {
                if keep && i > 0 {
                    hs.push(cur);
                }
                return (hs, y);
            }
            self.cfg.activation.apply(&mut y);
            let prev = std::mem::replace(&mut cur, y);
            if keep && i > 0 {
                hs.push(prev);
            }
        }
        unreachable!("an MLP has at least one layer")
    }

    /// Backward through an MLP. `hs[i]` is the output of hidden layer `i` (input of layer
    /// `i+1`), `x` the input. `dy` is the gradient w.r.t. the (linear) output. Accumulates
    /// parameter gradients into `grad`; returns the gradient w.r.t. `x` if `need_dx`.
    #[allow(clippy::too_many_arguments)]
    fn mlp_backward(
        &self,
        layers: &[Dense],
        x: &[f32],
        hs: &[Vec<f32>],
        n: usize,
        mut dy: Vec<f32>,
        grad: &mut [f32],
        need_dx: bool,
    ) -> Option<Vec<f32>> {
        for i in (0..layers.len()).rev() {
            let l = &layers[i];
            let inp: &[f32] = if i == 0 { x } else { &hs[i - 1] };
            // dW = inpᵀ · dy (each layer's gradient is written exactly once per pass)
            gemm(l.fan_in, l.fan_out, n, inp, true, &dy, false, 0.0, &mut grad[l.w..l.w + l.fan_in * l.fan_out]);
            let gb = &mut grad[l.b..l.b + l.fan_out];
            gb.iter_mut().for_each(|g| *g = 0.0);
            for row in dy.chunks_exact(l.fan_out) {
                for (g, &d) in gb.iter_mut().zip(row) {
                    *g += d;
                }
            }
            if i == 0 && !need_dx {
                return None;
            }
            let mut dx = vec![0.0f32; n * l.fan_in];
            gemm(n, l.fan_in, l.fan_out, &dy, false, &self.params[l.w..], true, 0.0, &mut dx);
            if i > 0 {
                self.cfg.activation.backward(&hs[i - 1], &mut dx);
            }
            dy = dx;
        }
        Some(dy)
    }

    fn check_rows(&self, x: &[f32], n: usize, width: usize, what: &str) {
        assert_eq!(x.len(), n * width, "{what}: expected {n} rows of {width} values");
    }

    // ----------------------------------------------------------------------------------
    // Public inference API (batches of windows, row-major)

    /// Encoder output for `n` windows: `(μ, log σ²)`, each `n × d`.
    pub fn encode(&self, x: &[f32], n: usize) -> (Vec<f32>, Vec<f32>) {
        self.check_rows(x, n, self.input_dim(), "encode");
        let (_, e) = self.mlp(&self.enc, x, n, false);
        let d = self.cfg.latent;
        let mut mu = Vec::with_capacity(n * d);
        let mut lv = Vec::with_capacity(n * d);
        for row in e.chunks_exact(2 * d) {
            mu.extend_from_slice(&row[..d]);
            lv.extend(row[d..].iter().map(|v| v.clamp(-LOGVAR_CLAMP, LOGVAR_CLAMP)));
        }
        (mu, lv)
    }

    /// Posterior means `μ(x)` for `n` windows (`n × d`).
    pub fn encode_mean(&self, x: &[f32], n: usize) -> Vec<f32> {
        self.encode(x, n).0
    }

    /// One posterior sample `z = μ + σ ⊙ ε` per window (`n × d`).
    pub fn encode_sample(&self, x: &[f32], n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
        let (mu, lv) = self.encode(x, n);
        mu.iter().zip(&lv).map(|(&m, &l)| m + (0.5 * l).exp() * randn(rng)).collect()
    }

    /// `k` posterior samples per window: returns `(n·k) × d`, the samples of window `i` at
    /// rows `i*k .. (i+1)*k`.
    pub fn encode_samples(&self, x: &[f32], n: usize, k: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
        let (mu, lv) = self.encode(x, n);
        let d = self.cfg.latent;
        let mut out = Vec::with_capacity(n * k * d);
        for i in 0..n {
            for _ in 0..k {
                for j in 0..d {
                    let (m, l) = (mu[i * d + j], lv[i * d + j]);
                    out.push(m + (0.5 * l).exp() * randn(rng));
                }
            }
        }
        out
    }

    /// Decoder means `μ_θ(z)` for `n` given latents (`n × d` → `n × (w·m)`).
    pub fn decode_mean(&self, z: &[f32], n: usize) -> Vec<f32> {
        self.check_rows(z, n, self.cfg.latent, "decode_mean");
        self.mlp(&self.dec, z, n, false).1
    }

    /// The last `steps` time steps of the decoder means `μ_θ(z)` (`n × (steps·m)`): the same
    /// values as the tail of [`Vae::decode_mean`]'s rows, at `steps/w` of the last layer's
    /// cost (causal scoring needs only the newest step of each window).
    pub fn decode_mean_tail(&self, z: &[f32], n: usize, steps: usize) -> Vec<f32> {
        self.check_rows(z, n, self.cfg.latent, "decode_mean_tail");
        let steps = steps.clamp(1, self.cfg.window);
        let (hidden, _) = self.dec.split_at(self.dec.len() - 1);
        let last = &self.dec[self.dec.len() - 1];
        let cols = steps * self.cfg.n_features;
        let first_col = last.fan_out - cols;
        let h = if hidden.is_empty() {
            z.to_vec()
        } else {
            let (_, mut h) = self.mlp(hidden, z, n, false);
            self.cfg.activation.apply(&mut h);
            h
        };
        // The sub-matrix of the last layer's weights for the wanted outputs (fan_in × cols).
        let w = &self.params[last.w..last.w + last.fan_in * last.fan_out];
        let mut sub = Vec::with_capacity(last.fan_in * cols);
        for row in w.chunks_exact(last.fan_out) {
            sub.extend_from_slice(&row[first_col..]);
        }
        let bias = &self.params[last.b + first_col..last.b + last.fan_out];
        let mut y = Vec::with_capacity(n * cols);
        for _ in 0..n {
            y.extend_from_slice(bias);
        }
        gemm(n, cols, last.fan_in, &h, false, &sub, false, 1.0, &mut y);
        y
    }

    /// Deterministic reconstruction `μ_θ(μ_φ(x))` (`n × (w·m)`).
    pub fn reconstruct(&self, x: &[f32], n: usize) -> Vec<f32> {
        let mu = self.encode_mean(x, n);
        self.decode_mean(&mu, n)
    }

    /// `log p(x_{t} | x̂_{t})` per window and time step (`n × w`), Gaussian with the
    /// per-feature decoder variance, where `xhat` are given reconstructions (e.g. decoder
    /// means, possibly adjusted by LARA's `M_x`).
    pub fn log_likelihood_steps(&self, x: &[f32], xhat: &[f32], n: usize) -> Vec<f32> {
        let dim = self.input_dim();
        self.check_rows(x, n, dim, "log_likelihood x");
        self.check_rows(xhat, n, dim, "log_likelihood xhat");
        let m = self.cfg.n_features;
        let inv: Vec<f32> = self.dec_logvar.iter().map(|v| (-v).exp()).collect();
        let c: f32 = self.dec_logvar.iter().map(|v| 0.5 * (v + (std::f32::consts::TAU).ln())).sum();
        x.chunks_exact(m)
            .zip(xhat.chunks_exact(m))
            .map(|(a, b)| {
                let mut s = 0.0f32;
                for k in 0..m {
                    let r = a[k] - b[k];
                    s += r * r * inv[k];
                }
                -0.5 * s - c
            })
            .collect()
    }

    /// `log p(x | x̂)` per window (`n`): the sum of [`Vae::log_likelihood_steps`] over steps.
    pub fn log_likelihood(&self, x: &[f32], xhat: &[f32], n: usize) -> Vec<f32> {
        let w = self.cfg.window;
        self.log_likelihood_steps(x, xhat, n).chunks_exact(w).map(|r| r.iter().sum()).collect()
    }

    /// `log p(x | z)` per window for given latents: decodes `z` and scores `x` (`n`).
    pub fn log_likelihood_z(&self, x: &[f32], z: &[f32], n: usize) -> Vec<f32> {
        let xhat = self.decode_mean(z, n);
        self.log_likelihood(x, &xhat, n)
    }

    /// `log p(x | z)` per window and time step for given latents (`n × w`).
    pub fn log_likelihood_z_steps(&self, x: &[f32], z: &[f32], n: usize) -> Vec<f32> {
        let xhat = self.decode_mean(z, n);
        self.log_likelihood_steps(x, &xhat, n)
    }

    /// Sets the decoder variance to the per-feature mean squared reconstruction error of the
    /// given windows (`z = μ(x)`), floored at `floor_rel ×` the mean over features and at
    /// `floor_abs`.
    pub fn calibrate_variance(&mut self, x: &[f32], n: usize, floor_rel: f32, floor_abs: f32) {
        let m = self.cfg.n_features;
        let mut acc = vec![0.0f64; m];
        let mut cnt = 0usize;
        let bs = 256;
        let dim = self.input_dim();
        for s in (0..n).step_by(bs) {
            let e = (s + bs).min(n);
            let xb = &x[s * dim..e * dim];
            let xh = self.reconstruct(xb, e - s);
            for (a, b) in xb.chunks_exact(m).zip(xh.chunks_exact(m)) {
                for k in 0..m {
                    let r = (a[k] - b[k]) as f64;
                    acc[k] += r * r;
                }
                cnt += 1;
            }
        }
        if cnt == 0 {
            return;
        }
        let var: Vec<f64> = acc.iter().map(|a| a / cnt as f64).collect();
        let mean = var.iter().sum::<f64>() / m as f64;
        let floor = (floor_rel as f64 * mean).max(floor_abs as f64);
        self.dec_logvar = var.iter().map(|v| v.max(floor).ln() as f32).collect();
    }

    // ----------------------------------------------------------------------------------
    // Training pass

    /// Forward pass with reparameterised sampling, keeping what backward needs.
    pub(crate) fn forward_train<'x>(&self, x: &'x [f32], n: usize, rng: Option<&mut ChaCha8Rng>) -> Cache<'x> {
        let d = self.cfg.latent;
        let (enc_h, e) = self.mlp(&self.enc, x, n, true);
        let mut mu = Vec::with_capacity(n * d);
        let mut logvar = Vec::with_capacity(n * d);
        let mut clamped = Vec::with_capacity(n * d);
        for row in e.chunks_exact(2 * d) {
            mu.extend_from_slice(&row[..d]);
            for &v in &row[d..] {
                clamped.push(!(-LOGVAR_CLAMP..=LOGVAR_CLAMP).contains(&v));
                logvar.push(v.clamp(-LOGVAR_CLAMP, LOGVAR_CLAMP));
            }
        }
        let eps: Vec<f32> = match rng {
            Some(r) => (0..n * d).map(|_| randn(r)).collect(),
            None => vec![0.0; n * d],
        };
        let z: Vec<f32> = (0..n * d).map(|i| mu[i] + (0.5 * logvar[i]).exp() * eps[i]).collect();
        let (dec_h, xhat) = self.mlp(&self.dec, &z, n, true);
        Cache { n, x, enc_h, mu, logvar, clamped, eps, z, dec_h, xhat }
    }

    /// Loss terms of a cache, averaged over the batch: `(reconstruction, KL)` where
    /// reconstruction = ½ Σ (x − x̂)² (unit-variance Gaussian NLL without constants).
    pub(crate) fn loss_terms(&self, c: &Cache) -> (f64, f64) {
        let rec: f64 = c.x.iter().zip(&c.xhat).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>() * 0.5;
        let kl: f64 =
            c.mu.iter().zip(&c.logvar).map(|(&m, &l)| 0.5 * ((m * m) as f64 + (l as f64).exp() - 1.0 - l as f64)).sum();
        (rec / c.n as f64, kl / c.n as f64)
    }

    /// Gradient of `rec + beta · KL` (batch means) w.r.t. all parameters, written into `grad`
    /// (every entry is overwritten). Consumes the cache: the reconstruction's buffer becomes
    /// the gradient `(x̂ − x)/n` in place.
    pub(crate) fn backward(&self, c: Cache, beta: f32, grad: &mut [f32]) {
        // Every parameter belongs to exactly one dense layer, whose gradient mlp_backward
        // overwrites: no zeroing pass needed.
        let n = c.n;
        let d = self.cfg.latent;
        let inv_n = 1.0 / n as f32;
        let mut dxh = c.xhat;
        dxh.iter_mut().zip(c.x).for_each(|(h, &x)| *h = (*h - x) * inv_n);
        let dz = self.mlp_backward(&self.dec, &c.z, &c.dec_h, n, dxh, grad, true).expect("dz requested");
        let mut de = vec![0.0f32; n * 2 * d];
        for i in 0..n {
            for j in 0..d {
                let k = i * d + j;
                let (m, l, e) = (c.mu[k], c.logvar[k], c.eps[k]);
                de[i * 2 * d + j] = dz[k] + beta * m * inv_n;
                let s = (0.5 * l).exp();
                let g = dz[k] * e * 0.5 * s + beta * 0.5 * (l.exp() - 1.0) * inv_n;
                de[i * 2 * d + d + j] = if c.clamped[k] { 0.0 } else { g };
            }
        }
        self.mlp_backward(&self.enc, c.x, &c.enc_h, n, de, grad, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn tiny(act: Activation, depth: usize) -> (Vae, Vec<f32>) {
        let cfg = VaeConfig { window: 3, n_features: 2, hidden: 5, depth, latent: 2, activation: act };
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let vae = Vae::new(cfg, &mut rng);
        let x: Vec<f32> = (0..4 * 6).map(|_| randn(&mut rng)).collect();
        (vae, x)
    }

    #[allow(clippy::needless_range_loop)]
    /// Central finite differences (in f64 around the f32 parameters) against the analytic
    /// backward pass, with fixed ε noise.
    #[test]
    fn gradient_check() {
        for (act, depth) in [(Activation::Tanh, 1), (Activation::Tanh, 2), (Activation::Relu, 2)] {
            let (mut vae, x) = tiny(act, depth);
            let n = 4;
            let beta = 0.7f32;
            let loss = |v: &Vae| {
                let mut r = ChaCha8Rng::seed_from_u64(3);
                let c = v.forward_train(&x, n, Some(&mut r));
                let (a, b) = v.loss_terms(&c);
                a + beta as f64 * b
            };
            let mut r = ChaCha8Rng::seed_from_u64(3);
            let c = vae.forward_train(&x, n, Some(&mut r));
            let mut g = vec![0.0; vae.params.len()];
            vae.backward(c, beta, &mut g);
            let h = 1e-2f32;
            let mut max_rel = 0.0f64;
            for i in 0..vae.params.len() {
                let p0 = vae.params[i];
                vae.params[i] = p0 + h;
                let lp = loss(&vae);
                vae.params[i] = p0 - h;
                let lm = loss(&vae);
                vae.params[i] = p0;
                let fd = (lp - lm) / (2.0 * h as f64);
                let an = g[i] as f64;
                let rel = (fd - an).abs() / (1e-2 + fd.abs().max(an.abs()));
                // ReLU kinks make a few finite differences meaningless; tolerate them there.
                if act == Activation::Tanh {
                    assert!(rel < 2e-2, "{act:?} param {i}: fd {fd} vs analytic {an}");
                }
                max_rel = max_rel.max(rel);
            }
            if act == Activation::Relu {
                // Count of bad entries must be tiny.
                let mut bad = 0;
                for i in 0..vae.params.len() {
                    let p0 = vae.params[i];
                    vae.params[i] = p0 + 1e-2;
                    let lp = loss(&vae);
                    vae.params[i] = p0 - 1e-2;
                    let lm = loss(&vae);
                    vae.params[i] = p0;
                    let fd = (lp - lm) / 2e-2;
                    let an = g[i] as f64;
                    if (fd - an).abs() / (1e-2 + fd.abs().max(an.abs())) > 5e-2 {
                        bad += 1;
                    }
                }
                assert!(bad * 20 <= vae.params.len(), "{bad} of {} ReLU gradients off", vae.params.len());
            }
        }
    }

    #[test]
    fn api_shapes_and_likelihood() {
        let (vae, x) = tiny(Activation::Tanh, 1);
        let n = 4;
        let mu = vae.encode_mean(&x, n);
        assert_eq!(mu.len(), n * 2);
        let xh = vae.decode_mean(&mu, n);
        assert_eq!(xh, vae.reconstruct(&x, n));
        let steps = vae.log_likelihood_steps(&x, &xh, n);
        assert_eq!(steps.len(), n * 3);
        let win = vae.log_likelihood(&x, &xh, n);
        for i in 0..n {
            let s: f32 = steps[i * 3..i * 3 + 3].iter().sum();
            assert!((s - win[i]).abs() < 1e-4);
        }
        assert_eq!(win, vae.log_likelihood_z(&x, &mu, n));
        // Perfect reconstruction gives the Gaussian normaliser only.
        let ll = vae.log_likelihood_steps(&x, &x, n);
        let c = -(std::f32::consts::TAU).ln(); // m = 2, s² = 1
        assert!(ll.iter().all(|v| (v - c).abs() < 1e-5));
        let mut r = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(vae.encode_samples(&x, n, 3, &mut r).len(), n * 3 * 2);
    }
}
