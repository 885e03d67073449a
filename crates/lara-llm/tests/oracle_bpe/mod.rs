#![allow(dead_code)]
//! TEST ORACLE: the hand-written byte-level BPE that lara-llm used before it switched to the
//! `tokenizers` crate (`lara_llm::tokenizer::GgufTokenizer`), kept verbatim (errors as
//! strings) so `tests/tokenizer_agreement.rs` can check the two agree token for token.
//!
//! Reads `tokenizer.ggml.tokens`, `tokenizer.ggml.merges` and `tokenizer.ggml.token_type`
//! (GGUF spec) and implements the GPT-2 byte-level scheme that SmolLM2 uses:
//! digits are split one per piece (`tokenizer.ggml.pre = "smollm"` in llama.cpp), the rest is
//! split with the GPT-2 pre-tokenizer pattern
//! `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
//! (hand-written scanner, no regex engine), bytes are mapped to printable characters with the
//! GPT-2 `bytes_to_unicode` table, and each piece is merged by merge rank.

use std::collections::HashMap;

use candle_core::quantized::gguf_file;

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp `llama_token_type`).
const TOKEN_TYPE_CONTROL: i32 = 3;

/// A GPT-2-style byte-level BPE tokenizer.
#[derive(Debug, Clone)]
pub struct BpeTokenizer {
    tokens: Vec<String>,
    token_ids: HashMap<String, u32>,
    merge_ranks: HashMap<(String, String), u32>,
    control: Vec<bool>,
    byte_to_char: [char; 256],
    char_to_byte: HashMap<char, u8>,
    /// `tokenizer.ggml.eos_token_id`, if present.
    pub eos_id: Option<u32>,
    /// `tokenizer.ggml.bos_token_id`, if present.
    pub bos_id: Option<u32>,
}

impl BpeTokenizer {
    /// Build from a parsed GGUF header. Errors (never panics) on missing or malformed metadata,
    /// or a tokenizer model other than `gpt2`.
    pub fn from_gguf(content: &gguf_file::Content) -> Result<Self, String> {
        let md = &content.metadata;
        let bad = |what: &str| format!("GGUF tokenizer metadata: {what}");
        if let Some(model) = md.get("tokenizer.ggml.model") {
            let model = model.to_string().map_err(|_| bad("tokenizer.ggml.model is not a string"))?;
            if model != "gpt2" {
                return Err(bad(&format!("tokenizer model {model:?} is not supported (only byte-level BPE `gpt2`)")));
            }
        }
        let strings = |key: &str| -> Result<Vec<String>, String> {
            let v = md.get(key).ok_or_else(|| bad(&format!("{key} missing")))?;
            let arr = v.to_vec().map_err(|_| bad(&format!("{key} is not an array")))?;
            arr.iter().map(|s| s.to_string().cloned().map_err(|_| bad(&format!("{key} holds a non-string")))).collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?;
        let types: Vec<i32> = match md.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()
                .map_err(|_| bad("token_type is not an array"))?
                .iter()
                .map(|t| t.to_i32().map_err(|_| bad("token_type holds a non-i32")))
                .collect::<Result<_, _>>()?,
            None => vec![1; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(bad("token_type and tokens differ in length"));
        }
        let id = |key: &str| md.get(key).and_then(|v| v.to_u32().ok());
        let mut merge_pairs = Vec::with_capacity(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            let (a, b) = m.split_once(' ').ok_or_else(|| bad(&format!("merge {rank} has no space: {m:?}")))?;
            merge_pairs.push(((a.to_string(), b.to_string()), rank as u32));
        }
        Self::new(
            tokens,
            merge_pairs,
            types.iter().map(|&t| t == TOKEN_TYPE_CONTROL).collect(),
            id("tokenizer.ggml.bos_token_id"),
            id("tokenizer.ggml.eos_token_id"),
        )
    }

    /// Build from explicit parts (used by `from_gguf` and by tests).
    pub fn new(
        tokens: Vec<String>,
        merges: Vec<((String, String), u32)>,
        control: Vec<bool>,
        bos_id: Option<u32>,
        eos_id: Option<u32>,
    ) -> Result<Self, String> {
        if tokens.is_empty() {
            return Err("GGUF tokenizer has no tokens".into());
        }
        let n = tokens.len() as u32;
        let check = |x: Option<u32>| x.filter(|&i| i < n);
        let token_ids = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let byte_to_char = bytes_to_unicode();
        let char_to_byte = byte_to_char.iter().enumerate().map(|(b, &c)| (c, b as u8)).collect();
        Ok(Self {
            tokens,
            token_ids,
            merge_ranks: merges.into_iter().collect(),
            control,
            byte_to_char,
            char_to_byte,
            eos_id: check(eos_id),
            bos_id: check(bos_id),
        })
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// Id of an exact token string, e.g. `<|im_start|>`.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.token_ids.get(token).copied()
    }

    /// Encode plain text (special-token strings inside `text` are NOT interpreted: they are
    /// tokenized as ordinary characters, so document text cannot inject control tokens).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        for piece in pre_tokenize(text) {
            let mapped: String = piece.bytes().map(|b| self.byte_to_char[b as usize]).collect();
            self.bpe(&mapped, &mut out);
        }
        out
    }

    fn bpe(&self, word: &str, out: &mut Vec<u32>) {
        if let Some(&id) = self.token_ids.get(word) {
            out.push(id);
            return;
        }
        let mut parts: Vec<String> = word.chars().map(|c| c.to_string()).collect();
        while parts.len() > 1 {
            let mut best: Option<(u32, usize)> = None;
            for i in 0..parts.len() - 1 {
                if let Some(&r) = self.merge_ranks.get(&(parts[i].clone(), parts[i + 1].clone())) {
                    if !matches!(best, Some((br, _)) if br <= r) {
                        best = Some((r, i));
                    }
                }
            }
            let Some((_, i)) = best else { break };
            let merged = format!("{}{}", parts[i], parts[i + 1]);
            parts[i] = merged;
            parts.remove(i + 1);
        }
        for p in parts {
            match self.token_ids.get(&p) {
                Some(&id) => out.push(id),
                // Unknown symbol (should not happen with a complete byte-level vocabulary):
                // fall back to per-character tokens, skipping any that are absent.
                None => out.extend(p.chars().filter_map(|c| self.token_ids.get(&c.to_string()).copied())),
            }
        }
    }

    /// Decode ids to bytes; control tokens are skipped. Invalid UTF-8 is replaced.
    pub fn decode(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids)).into_owned()
    }

    /// Decode ids to raw bytes (control tokens skipped, unknown ids ignored).
    pub fn decode_bytes(&self, ids: &[u32]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for &id in ids {
            let Some(tok) = self.tokens.get(id as usize) else { continue };
            if self.control.get(id as usize).copied().unwrap_or(false) {
                continue;
            }
            for c in tok.chars() {
                match self.char_to_byte.get(&c) {
                    Some(&b) => bytes.push(b),
                    None => bytes.extend(c.to_string().as_bytes()),
                }
            }
        }
        bytes
    }
}

/// GPT-2 `bytes_to_unicode`: printable bytes map to themselves, the rest to U+0100.. in order.
fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut next = 256u32;
    for b in 0..256u32 {
        table[b as usize] = if printable(b) {
            char::from_u32(b).unwrap_or('?')
        } else {
            let c = char::from_u32(next).unwrap_or('?');
            next += 1;
            c
        };
    }
    table
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Letter,
    Number,
    Space,
    Other,
}

fn class(c: char) -> Class {
    if c.is_alphabetic() {
        Class::Letter
    } else if c.is_numeric() {
        Class::Number
    } else if c.is_whitespace() {
        Class::Space
    } else {
        Class::Other
    }
}

/// Split text into pre-tokens: every digit alone, the rest by the GPT-2 pattern.
pub(crate) fn pre_tokenize(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c.is_numeric() {
            if start < i {
                gpt2_split(&text[start..i], &mut out);
            }
            out.push(&text[i..i + c.len_utf8()]);
            start = i + c.len_utf8();
        }
    }
    if start < text.len() {
        gpt2_split(&text[start..], &mut out);
    }
    out
}

/// The GPT-2 pre-tokenizer pattern as a scanner (see the module docs).
fn gpt2_split<'a>(s: &'a str, out: &mut Vec<&'a str>) {
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let n = chars.len();
    let off = |k: usize| if k < n { chars[k].0 } else { s.len() };
    let run = |mut k: usize, cl: Class| {
        while k < n && class(chars[k].1) == cl {
            k += 1;
        }
        k
    };
    let mut i = 0;
    while i < n {
        let c = chars[i].1;
        // Contractions.
        if c == '\'' {
            let rest = &s[off(i + 1)..];
            if let Some(len) =
                ["re", "ve", "ll", "s", "t", "m", "d"].iter().find(|suf| rest.starts_with(*suf)).map(|suf| suf.len())
            {
                out.push(&s[off(i)..off(i + 1 + len)]);
                i += 1 + len;
                continue;
            }
        }
        // Optional single space followed by a run of letters / numbers / others.
        let (lead, k) =
            if c == ' ' && i + 1 < n && class(chars[i + 1].1) != Class::Space { (1, i + 1) } else { (0, i) };
        let cl = class(chars[k].1);
        if cl != Class::Space {
            let end = run(k, cl);
            out.push(&s[off(k - lead)..off(end)]);
            i = end;
            continue;
        }
        // Whitespace run: `\s+(?!\S)` leaves the last space for the next word, else `\s+`.
        let end = run(i, Class::Space);
        let end = if end < n && end - i > 1 { end - 1 } else { end };
        out.push(&s[off(i)..off(end)]);
        i = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_tokenizer_follows_gpt2_with_single_digits() {
        assert_eq!(pre_tokenize("Hello world"), vec!["Hello", " world"]);
        assert_eq!(pre_tokenize("cpu: 12.5%"), vec!["cpu", ":", " ", "1", "2", ".", "5", "%"]);
        assert_eq!(pre_tokenize("a  b"), vec!["a", " ", " b"]);
        assert_eq!(pre_tokenize("x\n\ny"), vec!["x", "\n", "\n", "y"]);
        assert_eq!(pre_tokenize("it's ok  "), vec!["it", "'s", " ok", "  "]);
        assert_eq!(pre_tokenize(" {\"a\""), vec![" {\"", "a", "\""]);
    }

    #[test]
    fn byte_table_is_a_bijection() {
        let t = bytes_to_unicode();
        let set: std::collections::HashSet<char> = t.iter().copied().collect();
        assert_eq!(set.len(), 256);
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
    }

    #[test]
    fn toy_bpe_round_trips() {
        let toks: Vec<String> = ["a", "b", "ab", "Ġ", "Ġab", "<|end|>"].iter().map(|s| s.to_string()).collect();
        let merges = vec![(("a".into(), "b".into()), 0), (("Ġ".into(), "ab".into()), 1)];
        let tk = BpeTokenizer::new(toks, merges, vec![false, false, false, false, false, true], None, Some(5)).unwrap();
        let ids = tk.encode("ab ab");
        assert_eq!(ids, vec![2, 4]);
        assert_eq!(tk.decode(&[2, 4, 5]), "ab ab");
    }
}
