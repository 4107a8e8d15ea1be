//! phi3 (Phi-3, Phi-3.5, Phi-4-mini): fused `attn_qkv` (q | k | v rows) and fused `ffn_up`
//! (gate | up rows, SwiGLU), NEOX rope, no biases. The LoRA targets are the fused layers
//! themselves, under their real names: there is no `attn_q` or `ffn_gate` in a phi3 GGUF.

use super::{Block, GateUp, GgufSource, Hparams, Qkv};
use crate::{Error, Result};

pub fn load_block(src: &mut GgufSource, hp: &Hparams, l: usize) -> Result<Block> {
    let p = |n: &str| format!("blk.{l}.{n}");
    if !src.has(&format!("{}.weight", p("attn_qkv"))) {
        return Err(Error::Model {
            path: src.path.clone(),
            msg: format!(
                "{}.weight is missing: the trainer needs phi3's fused qkv layout",
                p("attn_qkv")
            ),
        });
    }
    for f in ["rope_factors_long.weight", "rope_factors_short.weight"] {
        if src.has(f) {
            return Err(Error::Model {
                path: src.path.clone(),
                msg: format!(
                    "{f}: long-context rope factors (Phi-3 128k) are not supported by the trainer"
                ),
            });
        }
    }
    let qkv = src.linear(&p("attn_qkv"), false)?;
    let o = src.linear(&p("attn_output"), false)?;
    let gate_up = src.linear(&p("ffn_up"), false)?;
    let down = src.linear(&p("ffn_down"), false)?;
    src.expect(&qkv, hp.q_dim() + 2 * hp.kv_dim(), hp.n_embd)?;
    src.expect(&o, hp.n_embd, hp.q_dim())?;
    src.expect(&gate_up, 2 * hp.n_ff, hp.n_embd)?;
    src.expect(&down, hp.n_embd, hp.n_ff)?;
    Ok(Block {
        attn_norm: src.vector(&format!("blk.{l}.attn_norm.weight"))?,
        qkv: Qkv::Fused(qkv),
        o,
        ffn_norm: src.vector(&format!("blk.{l}.ffn_norm.weight"))?,
        gate_up: GateUp::Fused(gate_up),
        down,
    })
}
