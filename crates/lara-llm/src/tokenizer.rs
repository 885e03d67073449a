//! The local model's tokenizer: a [`tokenizers::Tokenizer`] (Hugging Face `tokenizers` crate)
//! rebuilt from the GGUF metadata, no hub access and no `tokenizer.json`.
//!
//! Reads `tokenizer.ggml.model` (must be `gpt2`: byte-level BPE), `tokenizer.ggml.tokens`,
//! `tokenizer.ggml.merges` and `tokenizer.ggml.token_type` (GGUF spec) and assembles what
//! SmolLM2's `tokenizer.json` declares:
//!
//! * pre-tokenizer: `Digits(individual_digits = true)` (every digit its own piece;
//!   `tokenizer.ggml.pre = "smollm"` in llama.cpp) then `ByteLevel(add_prefix_space = false)`
//!   with the GPT-2 pattern `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`;
//! * model: BPE over the GPT-2 `bytes_to_unicode` alphabet, merges by rank, no unknown token
//!   (every byte has a token);
//! * decoder: `ByteLevel` (bytes back to text, invalid UTF-8 replaced by U+FFFD);
//! * control tokens (`token_type` 3: `<|endoftext|>`, `<|im_start|>`, `<|im_end|>`, …) are
//!   registered as special tokens, so [`GgufTokenizer::decode`] skips them, but
//!   [`GgufTokenizer::encode`] never produces them from text: a document that contains the
//!   string `<|im_end|>` is tokenized as ordinary characters and cannot inject control
//!   tokens (callers such as [`crate::local::LocalLlm::chat_prompt_ids`] insert them by id).
//!
//! It replaced a hand-written BPE; `tests/tokenizer_agreement.rs` keeps that implementation as
//! the oracle and checks the two agree token for token on lara's prompts and tricky text.

use candle_core::quantized::gguf_file;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

use crate::error::LlmError;

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp `llama_token_type`).
const TOKEN_TYPE_CONTROL: i32 = 3;

/// A GPT-2-style byte-level BPE tokenizer built from GGUF metadata (see the module docs).
#[derive(Clone)]
pub struct GgufTokenizer {
    inner: Tokenizer,
    vocab_size: usize,
    /// `tokenizer.ggml.eos_token_id`, if present and in range.
    pub eos_id: Option<u32>,
    /// `tokenizer.ggml.bos_token_id`, if present and in range.
    pub bos_id: Option<u32>,
}

impl std::fmt::Debug for GgufTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufTokenizer")
            .field("vocab_size", &self.vocab_size)
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .finish_non_exhaustive()
    }
}

impl GgufTokenizer {
    /// Build from a parsed GGUF header. Errors (never panics) on missing or malformed metadata
    /// (the message names the GGUF key), or a tokenizer model other than `gpt2`.
    pub fn from_gguf(content: &gguf_file::Content) -> Result<Self, LlmError> {
        let md = &content.metadata;
        let bad = |what: &str| LlmError::ModelFile(format!("GGUF tokenizer metadata: {what}"));
        if let Some(model) = md.get("tokenizer.ggml.model") {
            let model = model.to_string().map_err(|_| bad("tokenizer.ggml.model is not a string"))?;
            if model != "gpt2" {
                return Err(bad(&format!(
                    "tokenizer.ggml.model {model:?} is not supported (only byte-level BPE `gpt2`)"
                )));
            }
        }
        let strings = |key: &str| -> Result<Vec<String>, LlmError> {
            let v = md.get(key).ok_or_else(|| bad(&format!("{key} missing")))?;
            let arr = v.to_vec().map_err(|_| bad(&format!("{key} is not an array")))?;
            arr.iter().map(|s| s.to_string().cloned().map_err(|_| bad(&format!("{key} holds a non-string")))).collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?;
        let types: Vec<i32> = match md.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()
                .map_err(|_| bad("tokenizer.ggml.token_type is not an array"))?
                .iter()
                .map(|t| t.to_i32().map_err(|_| bad("tokenizer.ggml.token_type holds a non-i32")))
                .collect::<Result<_, _>>()?,
            None => vec![1; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(bad(&format!(
                "tokenizer.ggml.token_type has {} entries but tokenizer.ggml.tokens has {}",
                types.len(),
                tokens.len()
            )));
        }
        let mut merge_pairs = Vec::with_capacity(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            let (a, b) =
                m.split_once(' ').ok_or_else(|| bad(&format!("tokenizer.ggml.merges[{rank}] has no space: {m:?}")))?;
            merge_pairs.push((a.to_string(), b.to_string()));
        }
        let id = |key: &str| md.get(key).and_then(|v| v.to_u32().ok());
        Self::from_parts(
            tokens,
            merge_pairs,
            types.iter().map(|&t| t == TOKEN_TYPE_CONTROL).collect(),
            id("tokenizer.ggml.bos_token_id"),
            id("tokenizer.ggml.eos_token_id"),
        )
    }

    /// Build from explicit parts: `tokens[i]` is the byte-level string of id `i`, `merges` in
    /// rank order (highest priority first), `control[i]` marks control tokens (same length as
    /// `tokens`). Out-of-range bos/eos ids are dropped; a duplicated token string is logged
    /// (only its last id is used). Errors on an empty vocabulary, a merge whose parts or result
    /// are not in the vocabulary, or mismatched lengths.
    pub fn from_parts(
        tokens: Vec<String>,
        merges: Vec<(String, String)>,
        control: Vec<bool>,
        bos_id: Option<u32>,
        eos_id: Option<u32>,
    ) -> Result<Self, LlmError> {
        let bad = |what: String| LlmError::ModelFile(format!("GGUF tokenizer metadata: {what}"));
        if tokens.is_empty() {
            return Err(bad("tokenizer.ggml.tokens is empty".into()));
        }
        if control.len() != tokens.len() {
            return Err(bad(format!("{} control flags for {} tokens", control.len(), tokens.len())));
        }
        let n = u32::try_from(tokens.len()).map_err(|_| bad("too many tokens".into()))?;
        let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        if vocab.len() != tokens.len() {
            // The BPE model maps strings to ids: of duplicated strings only the last id is
            // produced by encode, the others decode to nothing.
            tracing::warn!(
                duplicated = tokens.len() - vocab.len(),
                "GGUF tokenizer.ggml.tokens has duplicated entries; only the last id of each is used"
            );
        }
        // Checked here (not only by `tokenizers`): its builder indexes a buffer of the longest
        // token's length with the merged length, which a malformed file could overflow.
        for (rank, (a, b)) in merges.iter().enumerate() {
            for part in [a, b] {
                if !vocab.contains_key(part) {
                    return Err(bad(format!("tokenizer.ggml.merges[{rank}]: {part:?} is not a token")));
                }
            }
            if !vocab.contains_key(&format!("{a}{b}")) {
                return Err(bad(format!(
                    "tokenizer.ggml.merges[{rank}]: result {:?} is not a token",
                    format!("{a}{b}")
                )));
            }
        }
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| bad(format!("cannot build the BPE model from tokenizer.ggml.tokens/merges: {e}")))?;
        let mut inner = Tokenizer::new(bpe);
        let pre: Vec<PreTokenizerWrapper> = vec![
            Digits::new(true).into(),
            // add_prefix_space = false, trim_offsets = true (offsets only), use_regex = true.
            ByteLevel::new(false, true, true).into(),
        ];
        inner.with_pre_tokenizer(Some(Sequence::new(pre)));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(&control)
            .filter(|(t, &c)| c && !t.is_empty())
            .map(|(t, _)| AddedToken::from(t.clone(), true))
            .collect();
        inner.add_special_tokens(specials).map_err(|e| bad(format!("cannot register the control tokens: {e}")))?;
        // Special-token strings inside text are tokenized as ordinary text (no injection).
        inner.set_encode_special_tokens(true);
        let check = |x: Option<u32>| x.filter(|&i| i < n);
        Ok(Self { inner, vocab_size: tokens.len(), eos_id: check(eos_id), bos_id: check(bos_id) })
    }

    /// Vocabulary size (number of GGUF tokens).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Id of an exact token string, e.g. `<|im_start|>` (byte-level form: `Ġ` for a space).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Encode plain text (special-token strings inside `text` are NOT interpreted, see the
    /// module docs). No BOS/EOS is added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LlmError> {
        let enc = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| LlmError::Inference(format!("tokenizer: cannot encode {} bytes of text: {e}", text.len())))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decode ids to text: control tokens skipped, unknown ids ignored, invalid UTF-8 (e.g. a
    /// multi-byte character cut by `max_tokens`) replaced by U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String, LlmError> {
        self.inner
            .decode(ids, true)
            .map_err(|e| LlmError::Inference(format!("tokenizer: cannot decode {} ids: {e}", ids.len())))
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> GgufTokenizer {
        let toks: Vec<String> =
            ["a", "b", "ab", "Ġ", "Ġab", "<|end|>", "1", "2"].iter().map(|s| s.to_string()).collect();
        let merges = vec![("a".into(), "b".into()), ("Ġ".into(), "ab".into())];
        let mut control = vec![false; toks.len()];
        control[5] = true;
        GgufTokenizer::from_parts(toks, merges, control, None, Some(5)).unwrap()
    }

    #[test]
    fn toy_bpe_round_trips_and_skips_control_tokens() {
        let tk = toy();
        assert_eq!(tk.encode("ab ab").unwrap(), vec![2, 4]);
        assert_eq!(tk.encode("12").unwrap(), vec![6, 7]);
        assert_eq!(tk.decode(&[2, 4, 5]).unwrap(), "ab ab");
        assert_eq!(tk.token_id("<|end|>"), Some(5));
        assert_eq!(tk.eos_id, Some(5));
        assert_eq!(tk.vocab_size(), 8);
    }

    #[test]
    fn bad_parts_are_errors_naming_the_field() {
        let e = GgufTokenizer::from_parts(vec![], vec![], vec![], None, None).unwrap_err();
        assert!(e.to_string().contains("tokenizer.ggml.tokens"), "{e}");
        let e = GgufTokenizer::from_parts(
            vec!["a".into(), "b".into()],
            vec![("a".into(), "b".into())],
            vec![false, false],
            None,
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("merges"), "{e}");
        let e = GgufTokenizer::from_parts(vec!["a".into()], vec![], vec![false, true], None, None).unwrap_err();
        assert!(e.to_string().contains("control flags"), "{e}");
        // Out-of-range special ids are dropped, not trusted.
        let tk = GgufTokenizer::from_parts(vec!["a".into()], vec![], vec![false], Some(7), Some(9)).unwrap();
        assert_eq!((tk.bos_id, tk.eos_id), (None, None));
    }
}
