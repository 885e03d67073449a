//! In-process backend: a quantized GGUF llama-architecture chat model (SmolLM2-135M-Instruct
//! Q4_1 by default) run on the CPU with candle-core quantized tensors ([`crate::llama`], a
//! minimal port of the llama forward pass that `candle-transformers::quantized_llama` implements;
//! same greedy tokens on SmolLM2, without compiling all of candle-transformers), greedy
//! decoding, ChatML prompt format, tokenizer rebuilt from the GGUF metadata as a
//! `tokenizers::Tokenizer` ([`crate::tokenizer`]).

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::quantized::{gguf_file, GgmlDType};
use candle_core::Tensor;

use crate::llama::{self, Llama};

use crate::backend::{ChatRequest, Completion, LlmBackend};
use crate::error::LlmError;
use crate::tokenizer::GgufTokenizer;

/// File name of the default model (fetched by `lara llm fetch` or `scripts/fetch-smollm.sh`).
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Environment variable that overrides the model path.
pub const MODEL_ENV: &str = "LARA_LLM_MODEL";

/// lara's cache root: `$LARA_CACHE`, else `$XDG_CACHE_HOME/lara`, else `~/.cache/lara`.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("LARA_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("lara");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("lara")
}

/// Where the local model is looked for: `$LARA_LLM_MODEL`, else `<cache_root>/models/<DEFAULT_MODEL_FILE>`.
pub fn default_model_path() -> PathBuf {
    match std::env::var_os(MODEL_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => cache_root().join("models").join(DEFAULT_MODEL_FILE),
    }
}

/// How the weights are held in memory (see [`LocalOptions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LocalWeights {
    /// Q4_1 / Q5_0 / Q5_1 re-quantized to Q8_0 at load (default): candle has SIMD (AVX2) dot
    /// products for Q8_0 but only scalar ones for those formats, so decoding is several times
    /// faster; Q8_0 holds the 4/5-bit values almost exactly. ~320 MB RSS for SmolLM2-135M.
    #[default]
    Q8,
    /// All weights dequantized to f32 (dense GEMM): about 2x faster prompt processing on long
    /// prompts, ~700 MB RSS for SmolLM2-135M.
    F32,
    /// Weights as stored in the file (slowest for Q4_1).
    AsStored,
}

/// Options of [`LocalLlm::load_with`].
#[derive(Debug, Clone, Default)]
pub struct LocalOptions {
    pub weights: LocalWeights,
}

/// The in-process GGUF chat model.
///
/// Threads: candle's CPU pool, sized once per process from `CANDLE_NUM_THREADS` (else
/// `RAYON_NUM_THREADS`, else the physical cores). Its workers spin-wait at barriers, so on a
/// machine shared with other busy processes `CANDLE_NUM_THREADS=1` can be several times faster.
pub struct LocalLlm {
    model: Llama,
    tokenizer: GgufTokenizer,
    model_name: String,
    context: usize,
    im_start: u32,
    im_end: u32,
    stop_ids: Vec<u32>,
}

impl std::fmt::Debug for LocalLlm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLlm").field("model", &self.model_name).field("context", &self.context).finish()
    }
}

impl LocalLlm {
    /// Load the model at [`default_model_path`]. Fails with [`LlmError::ModelMissing`] (which
    /// names `lara llm fetch` and `scripts/fetch-smollm.sh`) when the file is absent.
    pub fn load_default() -> Result<Self, LlmError> {
        Self::load(&default_model_path())
    }

    /// Load a GGUF llama-architecture chat model that uses the ChatML template
    /// (`<|im_start|>` / `<|im_end|>`) and a byte-level BPE tokenizer, with default options.
    pub fn load(path: &Path) -> Result<Self, LlmError> {
        Self::load_with(path, &LocalOptions::default())
    }

    /// Load with explicit options.
    pub fn load_with(path: &Path, options: &LocalOptions) -> Result<Self, LlmError> {
        if !path.is_file() {
            return Err(LlmError::ModelMissing(path.to_path_buf()));
        }
        let file = File::open(path).map_err(|e| LlmError::io(path, e))?;
        let mut reader = BufReader::new(file);
        let content = gguf_file::Content::read(&mut reader)
            .map_err(|e| LlmError::ModelFile(format!("{}: not a readable GGUF file: {e}", path.display())))?;
        let arch =
            content.metadata.get("general.architecture").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
        if arch != "llama" {
            return Err(LlmError::ModelFile(format!(
                "{}: architecture {arch:?} is not supported (only `llama`, e.g. SmolLM2)",
                path.display()
            )));
        }
        let context = content
            .metadata
            .get("llama.context_length")
            .and_then(|v| v.to_u32().ok())
            .map(|c| c as usize)
            .unwrap_or(2048)
            .min(llama::MAX_SEQ_LEN);
        let tokenizer =
            GgufTokenizer::from_gguf(&content).map_err(|e| LlmError::ModelFile(format!("{}: {e}", path.display())))?;
        let special = |name: &str| {
            tokenizer
                .token_id(name)
                .ok_or_else(|| LlmError::ModelFile(format!("no {name} token: not a ChatML chat model")))
        };
        let im_start = special("<|im_start|>")?;
        let im_end = special("<|im_end|>")?;
        let mut stop_ids = vec![im_end];
        stop_ids.extend(tokenizer.eos_id);
        stop_ids.extend(tokenizer.token_id("<|endoftext|>"));
        let target = options.weights;
        let convert = move |dt: GgmlDType| match target {
            LocalWeights::Q8 => {
                matches!(dt, GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1).then_some(GgmlDType::Q8_0)
            }
            LocalWeights::F32 => Some(GgmlDType::F32),
            LocalWeights::AsStored => None,
        };
        let model = Llama::from_gguf(&content, &mut reader, &convert)
            .map_err(|e| LlmError::ModelFile(format!("{}: cannot load weights: {e}", path.display())))?;
        // The weight format changes the answers, so it is part of the model's identity (and of
        // the response-cache key).
        let tag = match options.weights {
            LocalWeights::Q8 => "q8_0",
            LocalWeights::F32 => "f32",
            LocalWeights::AsStored => "stored",
        };
        let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let model_name = format!("{file}#{tag}");
        Ok(Self { model, tokenizer, model_name, context, im_start, im_end, stop_ids })
    }

    /// The tokenizer rebuilt from the GGUF metadata (a `tokenizers::Tokenizer`, see
    /// [`crate::tokenizer`]).
    pub fn tokenizer(&self) -> &GgufTokenizer {
        &self.tokenizer
    }

    /// ChatML prompt ids: system turn (omitted when `system` is empty), user turn, open
    /// assistant turn followed by the request's prefill. `<|im_start|>` / `<|im_end|>` are
    /// inserted by id; the texts themselves cannot produce control tokens.
    pub fn chat_prompt_ids(&self, request: &ChatRequest) -> Result<Vec<u32>, LlmError> {
        let nl = self.tokenizer.encode("\n")?;
        let mut ids = Vec::new();
        for (role, text) in [("system", request.system.as_str()), ("user", request.user.as_str())] {
            if role == "system" && text.is_empty() {
                continue;
            }
            ids.push(self.im_start);
            ids.extend(self.tokenizer.encode(&format!("{role}\n{text}"))?);
            ids.push(self.im_end);
            ids.extend(&nl);
        }
        ids.push(self.im_start);
        ids.extend(self.tokenizer.encode(&format!("assistant\n{}", request.prefill))?);
        Ok(ids)
    }

    fn argmax(logits: &Tensor) -> Result<u32, LlmError> {
        let v: Vec<f32> = logits.to_dtype(candle_core::DType::F32)?.to_vec1()?;
        let mut best = 0usize;
        for (i, &x) in v.iter().enumerate() {
            // Strict `>`: ties resolve to the lowest id, so decoding is deterministic.
            if x > v[best] || v[best].is_nan() {
                best = i;
            }
        }
        Ok(best as u32)
    }
}

impl LlmBackend for LocalLlm {
    fn backend_name(&self) -> &str {
        "local"
    }
    fn model_name(&self) -> &str {
        &self.model_name
    }
    fn context_tokens(&self) -> Option<usize> {
        Some(self.context)
    }
    fn count_tokens(&self, text: &str) -> Option<usize> {
        self.tokenizer.encode(text).ok().map(|ids| ids.len())
    }

    fn complete(&mut self, request: &ChatRequest) -> Result<Completion, LlmError> {
        self.generate(request)
    }
}

impl LocalLlm {
    /// Greedy generation from explicit prompt ids (what [`LlmBackend::complete`] runs on
    /// [`LocalLlm::chat_prompt_ids`]): at most `max_new` (≥ 1) ids, stopping before
    /// `<|im_end|>` / EOS / `<|endoftext|>` (not included). Errors on an empty prompt, an id
    /// outside the vocabulary, or a prompt that does not fit the context with `max_new`.
    pub fn generate_ids(&mut self, prompt: &[u32], max_new: usize) -> Result<Vec<u32>, LlmError> {
        let max_new = max_new.max(1);
        if prompt.is_empty() {
            return Err(LlmError::InvalidInput("empty prompt".into()));
        }
        let vocab = self.tokenizer.vocab_size();
        if let Some(&bad) = prompt.iter().find(|&&id| id as usize >= vocab) {
            return Err(LlmError::InvalidInput(format!("token id {bad} outside the vocabulary of {vocab}")));
        }
        if prompt.len() + max_new > self.context {
            return Err(LlmError::ContextOverflow { prompt: prompt.len(), max_new, context: self.context });
        }
        self.model.clear_kv_cache();
        let result = self.generate_inner(prompt, max_new);
        self.model.clear_kv_cache();
        result
    }

    fn generate_inner(&mut self, prompt: &[u32], max_new: usize) -> Result<Vec<u32>, LlmError> {
        let logits = self.model.forward(prompt, 0)?;
        let mut next = Self::argmax(&logits)?;
        let mut generated: Vec<u32> = Vec::new();
        while !self.stop_ids.contains(&next) {
            generated.push(next);
            if generated.len() >= max_new {
                break;
            }
            let logits = self.model.forward(&[next], prompt.len() + generated.len() - 1)?;
            next = Self::argmax(&logits)?;
        }
        Ok(generated)
    }

    fn generate(&mut self, request: &ChatRequest) -> Result<Completion, LlmError> {
        let start = Instant::now();
        let prompt = self.chat_prompt_ids(request)?;
        let generated = self.generate_ids(&prompt, request.max_tokens)?;
        Ok(Completion {
            text: format!("{}{}", request.prefill, self.tokenizer.decode(&generated)?),
            prompt_tokens: prompt.len(),
            completion_tokens: generated.len(),
            elapsed: start.elapsed(),
            cached: false,
        })
    }
}
