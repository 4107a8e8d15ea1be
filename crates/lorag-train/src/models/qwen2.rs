//! qwen2 (Qwen2, Qwen2.5): separate q/k/v with biases, NEOX rope, gate/up separate. The block
//! is llama's with q/k/v biases; the rope kind comes from [`super::Arch::rope`].

use super::{Block, GgufSource, Hparams};
use crate::Result;

pub fn load_block(src: &mut GgufSource, hp: &Hparams, l: usize) -> Result<Block> {
    super::llama::load_split_block(src, hp, l, true)
}
