//! qwen2 (Qwen2, Qwen2.5): separate q/k/v with biases, NEOX rope, gate/up separate.

use super::{Block, GateUp, GgufSource, Hparams, Qkv};
use crate::Result;

pub fn load_block(src: &mut GgufSource, hp: &Hparams, l: usize) -> Result<Block> {
    let p = |n: &str| format!("blk.{l}.{n}");
    let q = src.linear(&p("attn_q"), true)?;
    let k = src.linear(&p("attn_k"), true)?;
    let v = src.linear(&p("attn_v"), true)?;
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
