//! Tiny models with random weights, in the exact tensor layout llama.cpp expects for each
//! architecture. Tests use them to prove an architecture path (load, generate, LoRA, parity)
//! where no real weights of that family can be had, with a real tokenizer taken from a
//! vocab-only GGUF.

use crate::{Gguf, Value, Writer};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    /// Fused `attn_qkv` and `ffn_up` (gate then up), NEOX rope.
    Phi3,
    /// Separate q/k/v with biases.
    Qwen2,
    /// q/k norms, post-attention and post-ffw norms.
    Gemma3,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Phi3 => "phi3",
            Arch::Qwen2 => "qwen2",
            Arch::Gemma3 => "gemma3",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct TinyConfig {
    pub n_embd: u64,
    pub n_ff: u64,
    pub n_layer: u64,
    pub n_head: u64,
    pub n_head_kv: u64,
    pub n_ctx: u64,
    pub seed: u64,
    /// Scale of the uniform random weights.
    pub init: f32,
}

impl Default for TinyConfig {
    fn default() -> Self {
        Self {
            n_embd: 64,
            n_ff: 128,
            n_layer: 2,
            n_head: 4,
            n_head_kv: 2,
            n_ctx: 512,
            seed: 1,
            init: 0.08,
        }
    }
}

/// A small deterministic generator (xorshift64*), so that tests need no RNG crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }
}

/// Write a tiny `arch` model to `out`, with the tokenizer (every `tokenizer.*` key) of `vocab`.
pub fn write_tiny_model(
    arch: Arch,
    vocab: &Path,
    out: &Path,
    cfg: &TinyConfig,
) -> crate::Result<()> {
    let v = Gguf::open(vocab)?;
    let n_vocab = v
        .get("tokenizer.ggml.tokens")
        .and_then(Value::as_array)
        .map(|a| a.len() as u64)
        .ok_or_else(|| crate::Error::Malformed {
            path: vocab.to_path_buf(),
            what: "no tokenizer.ggml.tokens".into(),
        })?;
    let mut w = Writer::new();
    let a = arch.name();
    w.set("general.architecture", Value::String(a.into()));
    w.set("general.name", Value::String(format!("tiny-random-{a}")));
    w.set("general.file_type", Value::U32(0));
    for (k, val) in &v.metadata {
        if k.starts_with("tokenizer.") {
            w.set(k.clone(), val.clone());
        }
    }
    if arch == Arch::Phi3 && v.get("tokenizer.chat_template").is_none() {
        w.set("tokenizer.chat_template", Value::String("phi3".into()));
    }
    let (e, ff, nl) = (cfg.n_embd, cfg.n_ff, cfg.n_layer);
    let n_kv_head = if arch == Arch::Phi3 {
        cfg.n_head
    } else {
        cfg.n_head_kv
    };
    let hd = e / cfg.n_head;
    let e_kv = hd * n_kv_head;
    w.set(format!("{a}.context_length"), Value::U32(cfg.n_ctx as u32));
    w.set(format!("{a}.embedding_length"), Value::U32(e as u32));
    w.set(format!("{a}.feed_forward_length"), Value::U32(ff as u32));
    w.set(format!("{a}.block_count"), Value::U32(nl as u32));
    w.set(
        format!("{a}.attention.head_count"),
        Value::U32(cfg.n_head as u32),
    );
    w.set(
        format!("{a}.attention.head_count_kv"),
        Value::U32(n_kv_head as u32),
    );
    w.set(
        format!("{a}.attention.layer_norm_rms_epsilon"),
        Value::F32(1e-5),
    );
    w.set(format!("{a}.rope.dimension_count"), Value::U32(hd as u32));
    w.set(format!("{a}.rope.freq_base"), Value::F32(10000.0));
    if arch == Arch::Gemma3 {
        w.set(format!("{a}.attention.key_length"), Value::U32(hd as u32));
        w.set(format!("{a}.attention.value_length"), Value::U32(hd as u32));
        w.set(
            format!("{a}.attention.sliding_window"),
            Value::U32(cfg.n_ctx as u32),
        );
    }
    if arch == Arch::Llama {
        w.set(format!("{a}.vocab_size"), Value::U32(n_vocab as u32));
    }

    let mut rng = Rng::new(cfg.seed);
    let s = cfg.init;
    let ones = |n: u64| vec![1.0f32; n as usize];
    // Gemma's norms store (weight - 1): zero means identity.
    let norm = |n: u64| {
        if arch == Arch::Gemma3 {
            vec![0.0f32; n as usize]
        } else {
            ones(n)
        }
    };
    w.tensor_f32(
        "token_embd.weight",
        &[e, n_vocab],
        &rng.vec((e * n_vocab) as usize, s),
    );
    w.tensor_f32("output_norm.weight", &[e], &norm(e));
    if arch != Arch::Gemma3 {
        w.tensor_f32(
            "output.weight",
            &[e, n_vocab],
            &rng.vec((e * n_vocab) as usize, s),
        );
    }
    for l in 0..nl {
        let p = |n: &str| format!("blk.{l}.{n}.weight");
        w.tensor_f32(p("attn_norm"), &[e], &norm(e));
        w.tensor_f32(p("ffn_norm"), &[e], &norm(e));
        match arch {
            Arch::Phi3 => {
                let qkv = e + 2 * e_kv;
                w.tensor_f32(p("attn_qkv"), &[e, qkv], &rng.vec((e * qkv) as usize, s));
                w.tensor_f32(
                    p("ffn_up"),
                    &[e, 2 * ff],
                    &rng.vec((e * 2 * ff) as usize, s),
                );
            }
            _ => {
                w.tensor_f32(p("attn_q"), &[e, e], &rng.vec((e * e) as usize, s));
                w.tensor_f32(p("attn_k"), &[e, e_kv], &rng.vec((e * e_kv) as usize, s));
                w.tensor_f32(p("attn_v"), &[e, e_kv], &rng.vec((e * e_kv) as usize, s));
                w.tensor_f32(p("ffn_gate"), &[e, ff], &rng.vec((e * ff) as usize, s));
                w.tensor_f32(p("ffn_up"), &[e, ff], &rng.vec((e * ff) as usize, s));
            }
        }
        if arch == Arch::Qwen2 {
            w.tensor_f32(
                format!("blk.{l}.attn_q.bias"),
                &[e],
                &rng.vec(e as usize, s),
            );
            w.tensor_f32(
                format!("blk.{l}.attn_k.bias"),
                &[e_kv],
                &rng.vec(e_kv as usize, s),
            );
            w.tensor_f32(
                format!("blk.{l}.attn_v.bias"),
                &[e_kv],
                &rng.vec(e_kv as usize, s),
            );
        }
        if arch == Arch::Gemma3 {
            w.tensor_f32(p("attn_q_norm"), &[hd], &norm(hd));
            w.tensor_f32(p("attn_k_norm"), &[hd], &norm(hd));
            w.tensor_f32(p("post_attention_norm"), &[e], &norm(e));
            w.tensor_f32(p("post_ffw_norm"), &[e], &norm(e));
        }
        w.tensor_f32(p("attn_output"), &[e, e], &rng.vec((e * e) as usize, s));
        w.tensor_f32(p("ffn_down"), &[ff, e], &rng.vec((ff * e) as usize, s));
    }
    w.write(out).map_err(|source| crate::Error::Io {
        path: out.to_path_buf(),
        source,
    })
}

/// Write a GGUF LoRA adapter with random A and B (scaled by `b_scale`; 0 gives a no-op adapter)
/// for the given `(tensor base name, n_in, n_out)` targets, e.g. `("blk.0.attn_q", 576, 576)`.
pub fn write_random_lora(
    arch: &str,
    targets: &[(String, u64, u64)],
    rank: u64,
    alpha: f32,
    seed: u64,
    b_scale: f32,
    out: &Path,
) -> crate::Result<()> {
    let mut w = Writer::new();
    w.set("general.architecture", Value::String(arch.into()));
    w.set("general.type", Value::String("adapter".into()));
    w.set("adapter.type", Value::String("lora".into()));
    w.set("adapter.lora.alpha", Value::F32(alpha));
    let mut rng = Rng::new(seed);
    for (name, n_in, n_out) in targets {
        // ggml shapes: A is [n_in, r], B is [r, n_out].
        w.tensor_f32(
            format!("{name}.weight.lora_a"),
            &[*n_in, rank],
            &rng.vec((n_in * rank) as usize, 0.1),
        );
        w.tensor_f32(
            format!("{name}.weight.lora_b"),
            &[rank, *n_out],
            &rng.vec((rank * n_out) as usize, b_scale),
        );
    }
    w.write(out).map_err(|source| crate::Error::Io {
        path: out.to_path_buf(),
        source,
    })
}
