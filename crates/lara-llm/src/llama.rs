//! A minimal llama-architecture decoder on `candle-core` quantized tensors (no
//! `candle-transformers`, whose compile time dominates the build): RMSNorm, interleaved RoPE
//! (llama.cpp `LLAMA_ROPE_TYPE_NORM`, as GGUF llama weights expect), grouped-query attention
//! with a KV cache, SwiGLU MLP, tied or separate output matrix. Enough for SmolLM2.

use std::io::{Read, Seek};

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor, D};

/// Longest sequence the RoPE tables cover.
pub const MAX_SEQ_LEN: usize = 8192;

struct Layer {
    attn_norm: Tensor,
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    wo: QMatMul,
    ffn_norm: Tensor,
    w_gate: QMatMul,
    w_up: QMatMul,
    w_down: QMatMul,
    kv: Option<(Tensor, Tensor)>,
}

/// The model weights and KV cache.
pub struct Llama {
    embeddings: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    output: QMatMul,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    eps: f64,
    cos: Tensor,
    sin: Tensor,
}

fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    x.broadcast_div(&(ms + eps)?.sqrt()?)?.broadcast_mul(w)
}

fn softmax_last(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// Interleaved RoPE on (b, h, t, d): pairs (2i, 2i+1) rotated by angle pos·θ_i.
fn rope_interleaved(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let (b, h, t, d) = x.dims4()?;
    let x = x.reshape((b, h, t, d / 2, 2))?;
    let x0 = x.narrow(D::Minus1, 0, 1)?.contiguous()?;
    let x1 = x.narrow(D::Minus1, 1, 1)?.contiguous()?;
    let cos = cos.reshape((1, 1, t, d / 2, 1))?;
    let sin = sin.reshape((1, 1, t, d / 2, 1))?;
    let r0 = (x0.broadcast_mul(&cos)? - x1.broadcast_mul(&sin)?)?;
    let r1 = (x0.broadcast_mul(&sin)? + x1.broadcast_mul(&cos)?)?;
    Tensor::cat(&[r0, r1], D::Minus1)?.reshape((b, h, t, d))
}

fn repeat_kv(x: Tensor, n_rep: usize) -> Result<Tensor> {
    if n_rep == 1 {
        return Ok(x);
    }
    let (b, h, t, d) = x.dims4()?;
    x.unsqueeze(2)?.expand((b, h, n_rep, t, d))?.reshape((b, h * n_rep, t, d))
}

impl Llama {
    /// Load from a GGUF file; tensors of a type in `convert` are turned into `target` first
    /// (e.g. Q4_1 → Q8_0 for candle's SIMD path).
    pub fn from_gguf<R: Read + Seek>(
        ct: &gguf_file::Content,
        reader: &mut R,
        convert: &dyn Fn(GgmlDType) -> Option<GgmlDType>,
    ) -> Result<Self> {
        let dev = Device::Cpu;
        let md =
            |k: &str| ct.metadata.get(k).ok_or_else(|| candle_core::Error::Msg(format!("GGUF metadata {k} missing")));
        let n_head = md("llama.attention.head_count")?.to_u32()? as usize;
        let n_kv_head = md("llama.attention.head_count_kv")?.to_u32()? as usize;
        let n_layer = md("llama.block_count")?.to_u32()? as usize;
        let dim = md("llama.embedding_length")?.to_u32()? as usize;
        let eps = md("llama.attention.layer_norm_rms_epsilon")?.to_f32()? as f64;
        let theta = md("llama.rope.freq_base").and_then(|v| v.to_f32()).unwrap_or(10_000.0);
        let divides = |a: usize, b: usize| b != 0 && a.checked_rem(b) == Some(0);
        if n_head == 0 || !divides(n_head, n_kv_head) || !divides(dim, n_head) || !divides(dim / n_head, 2) {
            candle_core::bail!("inconsistent attention shape: {n_head} heads, {n_kv_head} kv heads, dim {dim}");
        }
        let head_dim = dim / n_head;
        let load = |reader: &mut R, name: &str| -> Result<QTensor> {
            let q = ct.tensor(reader, name, &dev)?;
            let last = q.shape().dims().last().copied().unwrap_or(0);
            match convert(q.dtype()) {
                Some(t) if t != q.dtype() && (last % t.block_size() == 0) => QTensor::quantize(&q.dequantize(&dev)?, t),
                _ => Ok(q),
            }
        };
        let dense = |reader: &mut R, name: &str| -> Result<Tensor> { ct.tensor(reader, name, &dev)?.dequantize(&dev) };
        let mat = |reader: &mut R, name: &str| -> Result<QMatMul> { QMatMul::from_qtensor(load(reader, name)?) };

        let emb_q = ct.tensor(reader, "token_embd.weight", &dev)?;
        let embeddings = emb_q.dequantize(&dev)?;
        let output = if ct.tensor_infos.contains_key("output.weight") {
            mat(reader, "output.weight")?
        } else {
            let last = emb_q.shape().dims().last().copied().unwrap_or(0);
            match convert(emb_q.dtype()) {
                Some(t) if t != emb_q.dtype() && last % t.block_size() == 0 => {
                    QMatMul::from_qtensor(QTensor::quantize(&embeddings, t)?)?
                }
                _ => QMatMul::from_qtensor(emb_q)?,
            }
        };
        let norm = dense(reader, "output_norm.weight")?;
        let mut layers = Vec::with_capacity(n_layer);
        for i in 0..n_layer {
            let p = format!("blk.{i}");
            layers.push(Layer {
                attn_norm: dense(reader, &format!("{p}.attn_norm.weight"))?,
                wq: mat(reader, &format!("{p}.attn_q.weight"))?,
                wk: mat(reader, &format!("{p}.attn_k.weight"))?,
                wv: mat(reader, &format!("{p}.attn_v.weight"))?,
                wo: mat(reader, &format!("{p}.attn_output.weight"))?,
                ffn_norm: dense(reader, &format!("{p}.ffn_norm.weight"))?,
                w_gate: mat(reader, &format!("{p}.ffn_gate.weight"))?,
                w_up: mat(reader, &format!("{p}.ffn_up.weight"))?,
                w_down: mat(reader, &format!("{p}.ffn_down.weight"))?,
                kv: None,
            });
        }
        let half = head_dim / 2;
        let inv: Vec<f32> = (0..half).map(|i| 1.0 / theta.powf(2.0 * i as f32 / head_dim as f32)).collect();
        let inv = Tensor::from_vec(inv, (1, half), &dev)?;
        let pos = Tensor::arange(0u32, MAX_SEQ_LEN as u32, &dev)?.to_dtype(DType::F32)?.reshape((MAX_SEQ_LEN, 1))?;
        let angles = pos.broadcast_mul(&inv)?;
        Ok(Self {
            embeddings,
            layers,
            norm,
            output,
            n_head,
            n_kv_head,
            head_dim,
            eps,
            cos: angles.cos()?,
            sin: angles.sin()?,
        })
    }

    /// Drop the KV cache.
    pub fn clear_kv_cache(&mut self) {
        for l in &mut self.layers {
            l.kv = None;
        }
    }

    /// Logits (vocab) of the last position for tokens `ids` placed at `index_pos..`.
    pub fn forward(&mut self, ids: &[u32], index_pos: usize) -> Result<Tensor> {
        let t = ids.len();
        if t == 0 || index_pos + t > MAX_SEQ_LEN {
            candle_core::bail!("sequence of {t} tokens at {index_pos} exceeds {MAX_SEQ_LEN}");
        }
        let dev = Device::Cpu;
        let ids_t = Tensor::new(ids, &dev)?;
        let mut x = self.embeddings.index_select(&ids_t, 0)?.unsqueeze(0)?; // (1, t, dim)
        let cos = self.cos.narrow(0, index_pos, t)?;
        let sin = self.sin.narrow(0, index_pos, t)?;
        let mask = if t > 1 {
            let total = index_pos + t;
            let m: Vec<f32> = (0..t)
                .flat_map(|i| (0..total).map(move |j| if j > i + index_pos { f32::NEG_INFINITY } else { 0.0 }))
                .collect();
            Some(Tensor::from_vec(m, (t, total), &dev)?)
        } else {
            None
        };
        let (nh, nkv, hd) = (self.n_head, self.n_kv_head, self.head_dim);
        let scale = 1.0 / (hd as f64).sqrt();
        for layer in &mut self.layers {
            let h = rms_norm(&x, &layer.attn_norm, self.eps)?;
            let q = layer.wq.forward(&h)?.reshape((1, t, nh, hd))?.transpose(1, 2)?.contiguous()?;
            let k = layer.wk.forward(&h)?.reshape((1, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
            let v = layer.wv.forward(&h)?.reshape((1, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
            let q = rope_interleaved(&q, &cos, &sin)?;
            let k = rope_interleaved(&k, &cos, &sin)?;
            let (k, v) = match &layer.kv {
                Some((pk, pv)) if index_pos > 0 => (Tensor::cat(&[pk, &k], 2)?, Tensor::cat(&[pv, &v], 2)?),
                _ => (k, v),
            };
            layer.kv = Some((k.clone(), v.clone()));
            let k = repeat_kv(k, nh / nkv)?.contiguous()?;
            let v = repeat_kv(v, nh / nkv)?.contiguous()?;
            let mut att = (q.matmul(&k.t()?.contiguous()?)? * scale)?;
            if let Some(m) = &mask {
                att = att.broadcast_add(m)?;
            }
            let att = softmax_last(&att)?;
            let y = att.matmul(&v)?.transpose(1, 2)?.reshape((1, t, nh * hd))?;
            x = (x + layer.wo.forward(&y)?)?;
            let h = rms_norm(&x, &layer.ffn_norm, self.eps)?;
            let g = layer.w_gate.forward(&h)?.silu()?;
            let u = layer.w_up.forward(&h)?;
            x = (x + layer.w_down.forward(&(g * u)?)?)?;
        }
        let last = x.narrow(1, t - 1, 1)?;
        let last = rms_norm(&last, &self.norm, self.eps)?;
        self.output.forward(&last)?.squeeze(0)?.squeeze(0)
    }
}
