//! LoRA and QLoRA fine-tuning on candle, for the models llama.cpp serves.
//!
//! - [`models`]: a trainable decoder (llama, phi3, qwen2) loaded from the same GGUF llama.cpp
//!   runs; its logits match llama.cpp's (tests/parity.rs).
//! - [`linear`]: frozen base weights (quantized or dense) with a backward for the quantized
//!   matmul, and LoRA adapters ([`lora`]) as the only trainable tensors.
//! - [`fused`]: CPU training ops with hand-written backward (LoRA linear, attention, rms-norm,
//!   cross-entropy) that keep only their inputs for the backward pass.
//! - [`repack`]: rewrite a llama GGUF in the phi3 layout (fused qkv and gate|up, NEOX rope).
//! - [`data`]: JSONL conversations rendered and tokenized by llama.cpp, loss on replies only.
//! - [`merge`]: fold GGUF LoRA adapters into their base model (`lorag merge`).
//! - [`train`]: the loop (AdamW, schedule, accumulation, clipping, eval, checkpoints, resume).
//!
//! Invariants:
//! - The base weights never change and never get gradients or optimizer state.
//! - A quantized base stays quantized: one weight at a time is dequantized, transiently.

pub mod data;
pub mod export;
pub mod fused;
pub mod linear;
pub mod lora;
pub mod merge;
pub mod models;
pub mod optim;
pub mod plot;
pub mod repack;
pub mod rng;
pub mod train;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Gguf(#[from] lorag_gguf::Error),
    #[error(transparent)]
    Llm(#[from] lorag_llm::Error),
    #[error("{path}: {msg}")]
    Model { path: PathBuf, msg: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {msg}")]
    Data {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("the loss became {loss} at step {step}; training stopped{}", match last_checkpoint { Some(s) => format!(" (the last good checkpoint, step {s}, is kept)"), None => " (no checkpoint was written yet)".to_string() })]
    NonFinite {
        step: usize,
        loss: f64,
        last_checkpoint: Option<usize>,
    },
    #[error("tensor computation: {0}")]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}
