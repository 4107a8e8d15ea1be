//! Sentence embeddings: a BERT-family sentence-transformers model folder (safetensors +
//! tokenizer.json) run on candle, mean- or CLS-pooled and L2-normalised.
//!
//! Invariants:
//! - Every vector is L2-normalised, and `embed` returns one per input text, in input order,
//!   whatever the batch size: texts are sorted by length internally so that a batch pads little,
//!   and the order is restored.
//! - Input longer than [`Embedder::max_tokens`] is truncated (the model's `max_seq_length` from
//!   `sentence_bert_config.json`), never an error. Padding is per batch (to its longest text),
//!   whatever `tokenizer.json` says.
//! - A bad model folder is an [`EmbedError`] that names the file and, where known, the field.

mod bert;
mod encoder;
mod folder;

pub use bert::BertEmbedder;
pub use folder::Pooling;

use std::path::PathBuf;

/// Turns texts into vectors. The seam between ingestion/retrieval and the model.
pub trait Embedder: lorag_core::TokenCounter + Send + Sync {
    /// Stable identity of the model: a KB records it and refuses to mix models, e.g.
    /// `"all-minilm-l6-v2:384:<first 16 hex of sha256 of model.safetensors>"`.
    fn model_id(&self) -> &str;
    fn dim(&self) -> usize;
    /// Longest input in tokens; longer input is truncated.
    fn max_tokens(&self) -> usize;
    /// One L2-normalised vector per text, in order. Empty input -> empty output.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedOptions {
    /// Texts per forward pass (at least 1).
    pub batch_size: usize,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        Self { batch_size: 32 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("{0}: not a model folder (expected a sentence-transformers folder with config.json, tokenizer.json and model.safetensors)")]
    NotAFolder(PathBuf),
    #[error("{path}: missing; {hint}")]
    MissingFile { path: PathBuf, hint: &'static str },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A JSON file that does not parse, lacks a field, or asks for something unsupported.
    #[error("{path}: {msg}")]
    Config { path: PathBuf, msg: String },
    #[error("{path}: bad tokenizer: {msg}")]
    Tokenizer { path: PathBuf, msg: String },
    #[error("{path}: bad weights: {msg}")]
    Weights { path: PathBuf, msg: String },
    #[error("tokenizing failed: {0}")]
    Tokenize(String),
    #[error("model inference failed: {0}")]
    Inference(#[from] candle_core::Error),
}
