//! llama (SmolLM2, Llama 2/3): separate q/k/v and gate/up, no biases.
//!
//! llama.cpp's converter permutes the rows of q and k inside each head so that its NORM rope
//! (adjacent pairs) computes what Hugging Face's `rotate_half` rope computes on the original rows.
//! We keep the GGUF rows and use NORM rope, as llama.cpp does; [`crate::repack`] undoes the
//! permutation where a layout with NEOX rope (phi3, Hugging Face) is wanted.

use super::{Block, GateUp, GgufSource, Hparams, Qkv};
use crate::Result;

pub fn load_block(src: &mut GgufSource, hp: &Hparams, l: usize) -> Result<Block> {
    load_split_block(src, hp, l, false)
}

/// A block with separate q/k/v and gate/up (llama, and qwen2 with `qkv_bias`).
pub(super) fn load_split_block(
    src: &mut GgufSource,
    hp: &Hparams,
    l: usize,
    qkv_bias: bool,
) -> Result<Block> {
    let p = |n: &str| format!("blk.{l}.{n}");
    let q = src.linear(&p("attn_q"), qkv_bias)?;
    let k = src.linear(&p("attn_k"), qkv_bias)?;
    let v = src.linear(&p("attn_v"), qkv_bias)?;
    let o = src.linear(&p("attn_output"), false)?;
    let gate = src.linear(&p("ffn_gate"), false)?;
    let up = src.linear(&p("ffn_up"), false)?;
    let down = src.linear(&p("ffn_down"), false)?;
    src.expect(&q, hp.q_dim(), hp.n_embd)?;
    src.expect(&k, hp.kv_dim(), hp.n_embd)?;
    src.expect(&v, hp.kv_dim(), hp.n_embd)?;
    src.expect(&o, hp.n_embd, hp.q_dim())?;
    src.expect(&gate, hp.n_ff, hp.n_embd)?;
    src.expect(&up, hp.n_ff, hp.n_embd)?;
    src.expect(&down, hp.n_embd, hp.n_ff)?;
    Ok(Block {
        attn_norm: src.vector(&format!("blk.{l}.attn_norm.weight"))?,
        qkv: Qkv::Split { q, k, v },
        o,
        ffn_norm: src.vector(&format!("blk.{l}.ffn_norm.weight"))?,
        gate_up: GateUp::Split { gate, up },
        down,
    })
}
