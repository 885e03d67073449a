//! The single-file model container `M.lara`:
//!
//! ```text
//! offset  size  content
//! 0       8     magic  b"LARAVAE\n"
//! 8       4     format version, u32 little-endian (1, 2 or 3, see FORMAT_VERSION)
//! 12      8     header length H, u64 LE
//! 20      H     JSON header (ModelMeta: columns, scaler, architecture, threshold, ...)
//! 20+H    8     weights length W, u64 LE
//! 28+H    W     safetensors bytes (F32 tensors named like "enc.0.weight", "dec.obs_logvar")
//! 28+H+W  32    SHA-256 of all preceding bytes
//! ```
//!
//! Written atomically (temporary file in the same directory, fsync, rename).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use sha2::{Digest, Sha256};

use crate::vae::Vae;
use crate::VaeError;

pub const MAGIC: &[u8; 8] = b"LARAVAE\n";
/// The newest format version, read together with every older one. Version 2 marks a model
/// whose offline scores are divided per channel (`ModelMeta::channel_scale`): a reader of
/// version 1 would score it as NLL against a threshold in other units, so it must refuse it.
/// A model without divisors is written as version 1, which every reader scores correctly.
/// Version 3 marks a model whose offline scores add value histograms (`ModelMeta::marginal`),
/// which a reader of version 2 would ignore.
pub const FORMAT_VERSION: u32 = 3;
const OBS_LOGVAR: &str = "dec.obs_logvar";

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Serialises header JSON + weights into the container bytes of format `version`.
pub fn to_bytes(version: u32, header_json: &[u8], vae: &Vae) -> Result<Vec<u8>, VaeError> {
    let mut bufs: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for t in vae.tensors() {
        let len: usize = t.shape.iter().product();
        bufs.push((t.name, t.shape, le_bytes(&vae.params()[t.offset..t.offset + len])));
    }
    bufs.push((OBS_LOGVAR.to_string(), vec![vae.n_features()], le_bytes(vae.obs_logvar())));
    let views: Vec<(String, TensorView<'_>)> = bufs
        .iter()
        .map(|(n, s, b)| Ok((n.clone(), TensorView::new(Dtype::F32, s.clone(), b)?)))
        .collect::<Result<_, safetensors::SafeTensorError>>()
        .map_err(|e| VaeError::Invalid(format!("safetensors: {e}")))?;
    let st = safetensors::serialize(views, &None).map_err(|e| VaeError::Invalid(format!("safetensors: {e}")))?;
    let mut out = Vec::with_capacity(60 + header_json.len() + st.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(header_json.len() as u64).to_le_bytes());
    out.extend_from_slice(header_json);
    out.extend_from_slice(&(st.len() as u64).to_le_bytes());
    out.extend_from_slice(&st);
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    Ok(out)
}

/// Writes `bytes` to `path` atomically ([`lara_core::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), VaeError> {
    lara_core::write_atomic(path, bytes).map_err(|e| VaeError::Io { path: path.to_path_buf(), source: e })
}

/// Parsed container: header JSON bytes and the weights.
pub struct Container {
    pub header: Vec<u8>,
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

/// Parses container bytes; every malformation is an error naming `path`.
pub fn from_bytes(path: &Path, b: &[u8]) -> Result<Container, VaeError> {
    let p = || path.to_path_buf();
    let trunc = |d: String| VaeError::Truncated { path: p(), detail: d };
    if b.len() < 8 || &b[..8] != MAGIC {
        if b.len() < 8 && MAGIC.starts_with(b) && !b.is_empty() {
            return Err(trunc(format!("{} bytes", b.len())));
        }
        return Err(VaeError::NotAModel { path: p() });
    }
    if b.len() < 20 {
        return Err(trunc(format!("{} bytes, the fixed header needs 20", b.len())));
    }
    let version = u32::from_le_bytes(b[8..12].try_into().unwrap());
    if !(1..=FORMAT_VERSION).contains(&version) {
        return Err(VaeError::WrongVersion { path: p(), found: version, expected: FORMAT_VERSION });
    }
    let h = u64::from_le_bytes(b[12..20].try_into().unwrap());
    let need_h = 20u64.checked_add(h).and_then(|v| v.checked_add(8));
    let Some(need_h) = need_h.filter(|&n| n <= b.len() as u64) else {
        return Err(trunc(format!("header of {h} bytes announced, file has {} bytes", b.len())));
    };
    let h = h as usize;
    let wl = u64::from_le_bytes(b[20 + h..28 + h].try_into().unwrap());
    let total = need_h.checked_add(wl).and_then(|v| v.checked_add(32));
    match total {
        Some(t) if t == b.len() as u64 => {}
        Some(t) if t > b.len() as u64 => {
            return Err(trunc(format!("expected {t} bytes, file has {}", b.len())));
        }
        _ => {
            return Err(VaeError::Corrupt { path: p(), detail: "inconsistent section lengths".into() });
        }
    }
    let wl = wl as usize;
    let body_end = 28 + h + wl;
    let digest = Sha256::digest(&b[..body_end]);
    if digest.as_slice() != &b[body_end..] {
        return Err(VaeError::Corrupt { path: p(), detail: "checksum mismatch".into() });
    }
    let st = safetensors::SafeTensors::deserialize(&b[28 + h..body_end])
        .map_err(|e| VaeError::Corrupt { path: p(), detail: format!("weights: {e}") })?;
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(VaeError::Corrupt { path: p(), detail: format!("tensor {name} is not F32") });
        }
        let data: Vec<f32> = view.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        tensors.insert(name, (view.shape().to_vec(), data));
    }
    Ok(Container { header: b[20..20 + h].to_vec(), tensors })
}

/// Reassembles the flat parameters of a VAE of configuration `cfg` from named tensors.
pub fn vae_from_tensors(
    path: &Path,
    cfg: crate::vae::VaeConfig,
    tensors: &HashMap<String, (Vec<usize>, Vec<f32>)>,
) -> Result<Vae, VaeError> {
    let corrupt = |d: String| VaeError::Corrupt { path: PathBuf::from(path), detail: d };
    // Guard against absurd architectures in a damaged header before allocating anything.
    let stored: usize = tensors.iter().filter(|(n, _)| n.as_str() != OBS_LOGVAR).map(|(_, (_, d))| d.len()).sum();
    match checked_param_count(&cfg) {
        Some(n) if n == stored => {}
        _ => return Err(corrupt(format!("the header's architecture does not match the {stored} stored weights"))),
    }
    // A zero-initialised model of the right shape gives the layout.
    let template =
        Vae::from_parts(cfg.clone(), vec![0.0; param_count(&cfg)], vec![0.0; cfg.n_features]).map_err(corrupt)?;
    let mut params = vec![0.0f32; template.params().len()];
    let infos = template.tensors();
    if tensors.len() != infos.len() + 1 {
        return Err(corrupt(format!("expected {} tensors, found {}", infos.len() + 1, tensors.len())));
    }
    for t in infos {
        let (shape, data) = tensors.get(&t.name).ok_or_else(|| corrupt(format!("missing tensor {}", t.name)))?;
        if *shape != t.shape {
            return Err(corrupt(format!("tensor {} has shape {shape:?}, expected {:?}", t.name, t.shape)));
        }
        params[t.offset..t.offset + data.len()].copy_from_slice(data);
    }
    let (shape, lv) = tensors.get(OBS_LOGVAR).ok_or_else(|| corrupt(format!("missing tensor {OBS_LOGVAR}")))?;
    if *shape != vec![cfg.n_features] {
        return Err(corrupt(format!("tensor {OBS_LOGVAR} has shape {shape:?}")));
    }
    Vae::from_parts(cfg, params, lv.clone()).map_err(corrupt)
}

fn checked_param_count(cfg: &crate::vae::VaeConfig) -> Option<usize> {
    let d_in = cfg.window.checked_mul(cfg.n_features)?;
    let (h, d) = (cfg.hidden, cfg.latent);
    if cfg.depth == 0 || cfg.depth > 16 || h == 0 || d == 0 || d_in == 0 {
        return None;
    }
    let layer = |i: usize, o: usize| i.checked_mul(o)?.checked_add(o);
    let mut n = layer(d_in, h)?.checked_add(layer(h, 2 * d)?)?;
    n = n.checked_add(layer(d, h)?)?.checked_add(layer(h, d_in)?)?;
    for _ in 1..cfg.depth {
        n = n.checked_add(layer(h, h)?.checked_mul(2)?)?;
    }
    Some(n)
}

fn param_count(cfg: &crate::vae::VaeConfig) -> usize {
    let d_in = cfg.input_dim();
    let mut n = 0;
    let mut prev = d_in;
    for _ in 0..cfg.depth {
        n += prev * cfg.hidden + cfg.hidden;
        prev = cfg.hidden;
    }
    n += prev * 2 * cfg.latent + 2 * cfg.latent;
    prev = cfg.latent;
    for _ in 0..cfg.depth {
        n += prev * cfg.hidden + cfg.hidden;
        prev = cfg.hidden;
    }
    n + prev * d_in + d_in
}
