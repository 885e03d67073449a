//! Toy frozen VAEs for the tests and the speed example.
#![allow(dead_code)]

use lara_adapt::ridge::{cholesky_in_place, cholesky_solve};
use lara_adapt::ruminate::fill_standard_normal;
use lara_adapt::FrozenVae;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

pub fn normals(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    let mut v = vec![0.0; n];
    fill_standard_normal(rng, &mut v);
    v
}

/// Row-major `C = A·B` (`A` m×k, `B` k×n) via matrixmultiply.
pub fn matmul(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut c = vec![0.0f32; m * n];
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            n as isize,
            1,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    c
}

/// Inverse of a symmetric positive-definite `p × p` matrix (f64).
pub fn spd_inverse(h: &[f64], p: usize) -> Vec<f64> {
    let mut l = h.to_vec();
    cholesky_in_place(&mut l, p).expect("SPD");
    let mut id = vec![0.0; p * p];
    for i in 0..p {
        id[i * p + i] = 1.0;
    }
    cholesky_solve(&l, p, &mut id, p);
    id
}

/// Linear-Gaussian VAE: `p(z) = N(0, I)`, `p(x|z) = N(A z + c, diag σ²)` (σ² per feature),
/// encoder = the exact posterior mean with the diagonal of the exact posterior covariance.
/// `A` is `(w·m) × d` row-major.
#[derive(Clone, Debug)]
pub struct LinearGaussianVae {
    pub w: usize,
    pub m: usize,
    pub d: usize,
    pub a: Vec<f64>,
    pub c: Vec<f64>,
    pub log_var: Vec<f32>,
    /// Posterior covariance `S = (I + AᵀΣ⁻¹A)⁻¹` (d × d).
    pub post_cov: Vec<f64>,
    /// `S AᵀΣ⁻¹` (d × w·m).
    pub gain: Vec<f64>,
}

impl LinearGaussianVae {
    pub fn random(w: usize, m: usize, d: usize, noise_var: f32, seed: u64) -> Self {
        let mut r = rng(seed);
        let size = w * m;
        let scale = 1.0 / (d as f64).sqrt();
        let a: Vec<f64> = normals(&mut r, size * d).into_iter().map(|v| v * scale).collect();
        let c: Vec<f64> = normals(&mut r, size).into_iter().map(|v| 0.5 * v).collect();
        let log_var: Vec<f32> = (0..m).map(|k| (noise_var * (1.0 + 0.5 * (k % 3) as f32)).ln()).collect();
        Self::with(w, m, d, a, c, log_var)
    }

    pub fn with(w: usize, m: usize, d: usize, a: Vec<f64>, c: Vec<f64>, log_var: Vec<f32>) -> Self {
        let mut model = LinearGaussianVae { w, m, d, a, c, log_var, post_cov: vec![], gain: vec![] };
        model.post_cov = spd_inverse(&model.precision(1.0), d);
        model.gain = model.gain_for(&model.post_cov);
        model
    }

    pub fn inv_var(&self, e: usize) -> f64 {
        (-(self.log_var[e % self.m] as f64)).exp()
    }

    /// `I + k AᵀΣ⁻¹A`.
    pub fn precision(&self, k: f64) -> Vec<f64> {
        let (d, size) = (self.d, self.w * self.m);
        let mut p = vec![0.0; d * d];
        for e in 0..size {
            let iv = self.inv_var(e) * k;
            for i in 0..d {
                for j in 0..d {
                    p[i * d + j] += self.a[e * d + i] * iv * self.a[e * d + j];
                }
            }
        }
        for i in 0..d {
            p[i * d + i] += 1.0;
        }
        p
    }

    /// `S AᵀΣ⁻¹` for a covariance `S`.
    fn gain_for(&self, s: &[f64]) -> Vec<f64> {
        let (d, size) = (self.d, self.w * self.m);
        let mut g = vec![0.0; d * size];
        for i in 0..d {
            for e in 0..size {
                let mut v = 0.0;
                for l in 0..d {
                    v += s[i * d + l] * self.a[e * d + l];
                }
                g[i * size + e] = v * self.inv_var(e);
            }
        }
        g
    }

    /// Analytic `E[z | o_1..o_k]` for `k` windows observed independently given `z`.
    pub fn posterior_mean_of(&self, obs: &[f32]) -> Vec<f64> {
        let size = self.w * self.m;
        let k = obs.len() / size;
        let s = spd_inverse(&self.precision(k as f64), self.d);
        let g = self.gain_for(&s);
        let mut out = vec![0.0; self.d];
        for o in obs.chunks_exact(size) {
            for i in 0..self.d {
                for e in 0..size {
                    out[i] += g[i * size + e] * (o[e] as f64 - self.c[e]);
                }
            }
        }
        out
    }

    /// `n` windows `x = A z + c + ε` from the model, `z ~ N(0, I)`.
    pub fn sample(&self, n: usize, seed: u64) -> Vec<f32> {
        let mut r = rng(seed);
        let size = self.w * self.m;
        let mut out = Vec::with_capacity(n * size);
        for _ in 0..n {
            let z = normals(&mut r, self.d);
            let eps = normals(&mut r, size);
            for (e, noise) in eps.iter().enumerate() {
                let mean: f64 = self.c[e] + (0..self.d).map(|i| self.a[e * self.d + i] * z[i]).sum::<f64>();
                out.push((mean + noise / self.inv_var(e).sqrt()) as f32);
            }
        }
        out
    }
}

impl FrozenVae for LinearGaussianVae {
    fn window_len(&self) -> usize {
        self.w
    }
    fn n_features(&self) -> usize {
        self.m
    }
    fn latent_dim(&self) -> usize {
        self.d
    }
    fn encode(&self, x: &[f32], n: usize) -> (Vec<f32>, Vec<f32>) {
        let size = self.w * self.m;
        let mut mu = Vec::with_capacity(n * self.d);
        let mut lv = Vec::with_capacity(n * self.d);
        for o in x.chunks_exact(size).take(n) {
            for i in 0..self.d {
                let v: f64 = (0..size).map(|e| self.gain[i * size + e] * (o[e] as f64 - self.c[e])).sum();
                mu.push(v as f32);
                lv.push(self.post_cov[i * self.d + i].ln() as f32);
            }
        }
        (mu, lv)
    }
    fn decode_mean(&self, z: &[f32], n: usize) -> Vec<f32> {
        let size = self.w * self.m;
        let mut out = Vec::with_capacity(n * size);
        for zz in z.chunks_exact(self.d).take(n) {
            for e in 0..size {
                let v: f64 = self.c[e] + (0..self.d).map(|i| self.a[e * self.d + i] * zz[i] as f64).sum::<f64>();
                out.push(v as f32);
            }
        }
        out
    }
    fn output_log_var(&self) -> &[f32] {
        &self.log_var
    }
}

/// A random 2-layer tanh MLP encoder/decoder (hidden `h`) of realistic cost (f32 GEMMs):
/// encoder `w·m → h → 2 d`, decoder `d → h → w·m`.
#[derive(Clone, Debug)]
pub struct MlpVae {
    pub w: usize,
    pub m: usize,
    pub d: usize,
    pub h: usize,
    pub enc1: (Vec<f32>, Vec<f32>),
    pub enc2: (Vec<f32>, Vec<f32>),
    pub dec1: (Vec<f32>, Vec<f32>),
    pub dec2: (Vec<f32>, Vec<f32>),
    pub log_var: Vec<f32>,
}

fn dense(r: &mut ChaCha8Rng, fan_in: usize, fan_out: usize, gain: f64) -> (Vec<f32>, Vec<f32>) {
    let s = gain / (fan_in as f64).sqrt();
    let w = normals(r, fan_in * fan_out).into_iter().map(|v| (v * s) as f32).collect();
    let b = normals(r, fan_out).into_iter().map(|v| (0.1 * v) as f32).collect();
    (w, b)
}

fn forward(x: &[f32], n: usize, layer: &(Vec<f32>, Vec<f32>), tanh: bool) -> Vec<f32> {
    let fan_out = layer.1.len();
    let fan_in = layer.0.len() / fan_out;
    let mut y = matmul(n, fan_in, fan_out, x, &layer.0);
    for row in y.chunks_exact_mut(fan_out) {
        for (v, b) in row.iter_mut().zip(&layer.1) {
            *v += b;
            if tanh {
                *v = v.tanh();
            }
        }
    }
    y
}

impl MlpVae {
    pub fn random(w: usize, m: usize, d: usize, h: usize, seed: u64) -> Self {
        let mut r = rng(seed);
        MlpVae {
            w,
            m,
            d,
            h,
            enc1: dense(&mut r, w * m, h, 1.0),
            enc2: dense(&mut r, h, 2 * d, 1.0),
            dec1: dense(&mut r, d, h, 1.5),
            dec2: dense(&mut r, h, w * m, 1.0),
            log_var: (0..m).map(|k| (0.05 + 0.01 * (k % 5) as f32).ln()).collect(),
        }
    }
}

impl FrozenVae for MlpVae {
    fn window_len(&self) -> usize {
        self.w
    }
    fn n_features(&self) -> usize {
        self.m
    }
    fn latent_dim(&self) -> usize {
        self.d
    }
    fn encode(&self, x: &[f32], n: usize) -> (Vec<f32>, Vec<f32>) {
        let hdn = forward(x, n, &self.enc1, true);
        let out = forward(&hdn, n, &self.enc2, false);
        let mut mu = Vec::with_capacity(n * self.d);
        let mut lv = Vec::with_capacity(n * self.d);
        for row in out.chunks_exact(2 * self.d) {
            mu.extend_from_slice(&row[..self.d]);
            lv.extend(row[self.d..].iter().map(|v| (v - 2.0).clamp(-8.0, 8.0)));
        }
        (mu, lv)
    }
    fn decode_mean(&self, z: &[f32], n: usize) -> Vec<f32> {
        let hdn = forward(z, n, &self.dec1, true);
        forward(&hdn, n, &self.dec2, false)
    }
    fn output_log_var(&self) -> &[f32] {
        &self.log_var
    }
}

/// Max absolute difference.
pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}
