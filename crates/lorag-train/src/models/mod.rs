//! The trainable decoder, shared by the llama, phi3 and qwen2 families, and its GGUF loader.
//!
//! The families differ only in how their tensors are laid out, and each has a small loader file:
//! - [`llama`]: separate q/k/v and gate/up; q/k rows permuted by llama.cpp's converter for its
//!   NORM (adjacent pairs) rope, and we use NORM rope on them, exactly as llama.cpp does.
//! - [`phi3`]: fused `attn_qkv` (q | k | v rows) and fused `ffn_up` (gate | up rows), NEOX rope.
//! - [`qwen2`]: separate q/k/v with biases, NEOX rope.
//!
//! Every op has a backward: on the CPU, rms-norm, attention, the LoRA linear layers and the loss
//! are the fused ops of [`crate::fused`] (hand-written backward, few stored activations);
//! elsewhere they are built from basic tensor ops, and the frozen matmul is
//! [`crate::linear::FrozenMatMul`].

pub mod llama;
pub mod phi3;
pub mod qwen2;

use crate::linear::{BaseWeight, ForwardCtx, Linear};
use crate::lora::{Lora, LoraConfig};
use crate::rng::Rng;
use crate::{Error, Result};
use candle_core::quantized::{gguf_file, QTensor};
use candle_core::{DType, Device, Tensor, Var, D};
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The architecture families the trainer knows (GGUF `general.architecture`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Phi3,
    Qwen2,
}

impl Arch {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "llama" => Some(Arch::Llama),
            "phi3" => Some(Arch::Phi3),
            "qwen2" => Some(Arch::Qwen2),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Phi3 => "phi3",
            Arch::Qwen2 => "qwen2",
        }
    }

    /// The linear layers of one block, under their GGUF names: the LoRA targets.
    pub fn linear_names(self) -> &'static [&'static str] {
        match self {
            Arch::Llama | Arch::Qwen2 => &[
                "attn_q",
                "attn_k",
                "attn_v",
                "attn_output",
                "ffn_gate",
                "ffn_up",
                "ffn_down",
            ],
            Arch::Phi3 => &["attn_qkv", "attn_output", "ffn_up", "ffn_down"],
        }
    }

    /// Hugging Face module path of a GGUF linear name (for PEFT).
    pub fn hf_name(self, gguf: &str) -> Option<&'static str> {
        Some(match (self, gguf) {
            (Arch::Phi3, "attn_qkv") => "self_attn.qkv_proj",
            (Arch::Phi3, "ffn_up") => "mlp.gate_up_proj",
            (Arch::Phi3, "attn_output") => "self_attn.o_proj",
            (Arch::Phi3, "ffn_down") => "mlp.down_proj",
            (Arch::Phi3, _) => return None,
            (_, "attn_q") => "self_attn.q_proj",
            (_, "attn_k") => "self_attn.k_proj",
            (_, "attn_v") => "self_attn.v_proj",
            (_, "attn_output") => "self_attn.o_proj",
            (_, "ffn_gate") => "mlp.gate_proj",
            (_, "ffn_up") => "mlp.up_proj",
            (_, "ffn_down") => "mlp.down_proj",
            _ => return None,
        })
    }

    pub fn rope(self) -> Rope {
        match self {
            Arch::Llama => Rope::Norm,
            Arch::Phi3 | Arch::Qwen2 => Rope::Neox,
        }
    }
}

/// ggml's two rope layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rope {
    /// Rotate adjacent pairs (2i, 2i+1).
    Norm,
    /// Rotate (i, i + n_rot/2) (GPT-NeoX, HF's `rotate_half`).
    Neox,
}

/// Hyper-parameters read from the GGUF metadata.
#[derive(Debug, Clone)]
pub struct Hparams {
    pub arch: Arch,
    pub n_vocab: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_rot: usize,
    pub rope_base: f32,
    pub rms_eps: f32,
    pub n_ctx_train: usize,
    pub rope: Rope,
}

/// How to load the base weights.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Dequantize every block-quantized weight to f32 at load (plain LoRA on an f32 base).
    /// Off: QLoRA, the base stays in its GGUF block format.
    pub dequantize: bool,
    pub device: DeviceKind,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeviceKind {
    #[default]
    Cpu,
    /// The first CUDA device (needs the `cuda` feature).
    Cuda,
}

impl DeviceKind {
    /// CUDA when this build has it (`--features cuda`) and a device answers, else the CPU.
    pub fn best_available() -> DeviceKind {
        if cfg!(feature = "cuda") && Device::new_cuda(0).is_ok() {
            DeviceKind::Cuda
        } else {
            DeviceKind::Cpu
        }
    }

    pub fn device(self) -> Result<Device> {
        match self {
            DeviceKind::Cpu => Ok(Device::Cpu),
            DeviceKind::Cuda => Device::new_cuda(0).map_err(|e| {
                Error::Invalid(format!(
                    "no CUDA device ({e}); build with --features cuda on a machine with a GPU"
                ))
            }),
        }
    }
}

/// Attention projections: separate, or fused q | k | v rows (phi3).
pub enum Qkv {
    Split { q: Linear, k: Linear, v: Linear },
    Fused(Linear),
}

/// Gate and up projections: separate, or fused gate | up rows (phi3).
pub enum GateUp {
    Split { gate: Linear, up: Linear },
    Fused(Linear),
}

pub struct Block {
    pub attn_norm: Tensor,
    pub qkv: Qkv,
    pub o: Linear,
    pub ffn_norm: Tensor,
    pub gate_up: GateUp,
    pub down: Linear,
}

impl Block {
    pub fn linears(&self) -> Vec<&Linear> {
        let mut v = Vec::new();
        match &self.qkv {
            Qkv::Split { q, k, v: vv } => v.extend([q, k, vv]),
            Qkv::Fused(l) => v.push(l),
        }
        v.push(&self.o);
        match &self.gate_up {
            GateUp::Split { gate, up } => v.extend([gate, up]),
            GateUp::Fused(l) => v.push(l),
        }
        v.push(&self.down);
        v
    }

    fn linears_mut(&mut self) -> Vec<&mut Linear> {
        let mut v = Vec::new();
        match &mut self.qkv {
            Qkv::Split { q, k, v: vv } => v.extend([q, k, vv]),
            Qkv::Fused(l) => v.push(l),
        }
        v.push(&mut self.o);
        match &mut self.gate_up {
            GateUp::Split { gate, up } => v.extend([gate, up]),
            GateUp::Fused(l) => v.push(l),
        }
        v.push(&mut self.down);
        v
    }
}

/// Token embeddings (looked up, never trained).
pub enum Embedding {
    Quant(Arc<QTensor>),
    Dense(Tensor),
}

/// Numerical choices that matter only when comparing with llama.cpp bit for bit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Numerics {
    /// Round k and v through f16, as llama.cpp's f16 KV cache does. Used by the parity tests;
    /// training leaves it off.
    pub f16_kv: bool,
}

pub struct Model {
    pub hp: Hparams,
    pub path: PathBuf,
    pub embed: Embedding,
    pub blocks: Vec<Block>,
    pub out_norm: Tensor,
    pub lm_head: Linear,
    pub device: Device,
    pub numerics: Numerics,
}

/// Where a GGUF's tensors are read from: candle's reader plus the open file.
pub struct GgufSource {
    pub content: gguf_file::Content,
    file: File,
    pub path: PathBuf,
    dev: Device,
    dequantize: bool,
}

impl GgufSource {
    pub fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    pub fn qtensor(&mut self, name: &str) -> Result<QTensor> {
        if !self.has(name) {
            return Err(Error::Model {
                path: self.path.clone(),
                msg: format!("tensor {name:?} is missing"),
            });
        }
        self.content
            .tensor(&mut self.file, name, &self.dev)
            .map_err(|e| Error::Model {
                path: self.path.clone(),
                msg: format!("tensor {name:?}: {e}"),
            })
    }

    /// A 1-D f32 tensor (norm weights, biases).
    pub fn vector(&mut self, name: &str) -> Result<Tensor> {
        let q = self.qtensor(name)?;
        Ok(q.dequantize(&self.dev)?.to_dtype(DType::F32)?)
    }

    pub fn weight(&mut self, name: &str) -> Result<BaseWeight> {
        let q = self.qtensor(name)?;
        Ok(BaseWeight::from_qtensor(q, self.dequantize)?)
    }

    /// A linear layer from `{base}.weight` (and `{base}.bias` when `bias`).
    pub fn linear(&mut self, base: &str, bias: bool) -> Result<Linear> {
        let w = self.weight(&format!("{base}.weight"))?;
        let b = if bias {
            Some(self.vector(&format!("{base}.bias"))?)
        } else {
            None
        };
        Ok(Linear::new(base, w, b))
    }

    /// Check a weight's shape (out, in) against the hyper-parameters.
    pub fn expect(&self, l: &Linear, out: usize, inp: usize) -> Result<()> {
        if l.dims() != (out, inp) {
            return Err(Error::Model {
                path: self.path.clone(),
                msg: format!(
                    "{}.weight is {:?} (out, in), expected ({out}, {inp}) from the hyper-parameters",
                    l.name,
                    l.dims()
                ),
            });
        }
        Ok(())
    }
}

fn meta_u64(g: &lorag_gguf::Gguf, key: &str) -> Result<usize> {
    g.arch_u64(key)
        .map(|v| v as usize)
        .ok_or_else(|| Error::Model {
            path: g.path.clone(),
            msg: format!(
                "metadata key {}.{key} is missing",
                g.architecture().unwrap_or("?")
            ),
        })
}

fn meta_f32(g: &lorag_gguf::Gguf, key: &str) -> Option<f32> {
    let arch = g.architecture()?;
    g.get(&format!("{arch}.{key}"))
        .and_then(lorag_gguf::Value::as_f64)
        .map(|v| v as f32)
}

impl Hparams {
    pub fn from_gguf(g: &lorag_gguf::Gguf) -> Result<Self> {
        let name = g.architecture().unwrap_or("none");
        let arch = Arch::from_name(name).ok_or_else(|| Error::Model {
            path: g.path.clone(),
            msg: format!(
                "architecture {name:?} cannot be trained; lorag trains llama, phi3 and qwen2"
            ),
        })?;
        let n_embd = meta_u64(g, "embedding_length")?;
        let n_head = meta_u64(g, "attention.head_count")?;
        let n_head_kv = g
            .arch_u64("attention.head_count_kv")
            .map_or(n_head, |v| v as usize);
        let head_dim = g
            .arch_u64("attention.key_length")
            .map_or(n_embd / n_head.max(1), |v| v as usize);
        let n_vocab = g
            .get("tokenizer.ggml.tokens")
            .and_then(lorag_gguf::Value::as_array)
            .map(<[_]>::len)
            .ok_or_else(|| Error::Model {
                path: g.path.clone(),
                msg: "no tokenizer.ggml.tokens".into(),
            })?;
        if let Some(t) = g.get_str(&format!("{name}.rope.scaling.type")) {
            if t != "none" {
                return Err(Error::Model {
                    path: g.path.clone(),
                    msg: format!("rope scaling {t:?} is not supported by the trainer"),
                });
            }
        }
        let hp = Hparams {
            arch,
            n_vocab,
            n_embd,
            n_ff: meta_u64(g, "feed_forward_length")?,
            n_layer: meta_u64(g, "block_count")?,
            n_head,
            n_head_kv,
            head_dim,
            n_rot: g
                .arch_u64("rope.dimension_count")
                .map_or(head_dim, |v| v as usize),
            rope_base: meta_f32(g, "rope.freq_base").unwrap_or(10000.0),
            rms_eps: meta_f32(g, "attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
            n_ctx_train: g.arch_u64("context_length").unwrap_or(2048) as usize,
            rope: arch.rope(),
        };
        if hp.n_head == 0
            || hp.n_head_kv == 0
            || !hp.n_head.is_multiple_of(hp.n_head_kv)
            || hp.n_rot > hp.head_dim
            || !hp.n_rot.is_multiple_of(2)
        {
            return Err(Error::Model {
                path: g.path.clone(),
                msg: format!("inconsistent attention hyper-parameters: {hp:?}"),
            });
        }
        Ok(hp)
    }

    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}

/// `x / sqrt(mean(x²) + eps) * w` over the last dimension, from basic ops.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f32) -> candle_core::Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        return x
            .contiguous()?
            .apply_op1(crate::fused::RmsNorm::new(w, eps)?);
    }
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    x.broadcast_div(&(ms + eps as f64)?.sqrt()?)?
        .broadcast_mul(w)
}

/// cos and sin of ggml's rope angles for positions 0..t: each (t, n_rot/2). The angle of pair i
/// at position p is `p · base^(-2i/n_rot)`, accumulated in f32 as ggml does.
pub fn rope_tables(
    t: usize,
    n_rot: usize,
    base: f32,
    dev: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let half = n_rot / 2;
    let theta_scale = base.powf(-2.0 / n_rot as f32);
    let mut cos = Vec::with_capacity(t * half);
    let mut sin = Vec::with_capacity(t * half);
    for p in 0..t {
        let mut theta = p as f32;
        for _ in 0..half {
            cos.push(theta.cos());
            sin.push(theta.sin());
            theta *= theta_scale;
        }
    }
    Ok((
        Tensor::from_vec(cos, (t, half), dev)?,
        Tensor::from_vec(sin, (t, half), dev)?,
    ))
}

/// Apply rope to x (b, t, heads, head_dim) on its first `n_rot` dims; cos/sin are (t, n_rot/2).
pub fn apply_rope(
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    n_rot: usize,
    style: Rope,
) -> candle_core::Result<Tensor> {
    let (b, t, h, hd) = x.dims4()?;
    let half = n_rot / 2;
    let rot = x.narrow(3, 0, n_rot)?;
    let y = match style {
        Rope::Norm => {
            let cos = cos.reshape((1, t, 1, half, 1))?;
            let sin = sin.reshape((1, t, 1, half, 1))?;
            let r = rot.reshape((b, t, h, half, 2))?;
            let x0 = r.narrow(4, 0, 1)?;
            let x1 = r.narrow(4, 1, 1)?;
            let y0 = (x0.broadcast_mul(&cos)? - x1.broadcast_mul(&sin)?)?;
            let y1 = (x0.broadcast_mul(&sin)? + x1.broadcast_mul(&cos)?)?;
            Tensor::cat(&[y0, y1], 4)?.reshape((b, t, h, n_rot))?
        }
        Rope::Neox => {
            let cos = cos.reshape((1, t, 1, half))?;
            let sin = sin.reshape((1, t, 1, half))?;
            let x0 = rot.narrow(3, 0, half)?;
            let x1 = rot.narrow(3, half, half)?;
            let y0 = (x0.broadcast_mul(&cos)? - x1.broadcast_mul(&sin)?)?;
            let y1 = (x1.broadcast_mul(&cos)? + x0.broadcast_mul(&sin)?)?;
            Tensor::cat(&[y0, y1], 3)?
        }
    };
    if n_rot == hd {
        Ok(y)
    } else {
        Tensor::cat(&[y, x.narrow(3, n_rot, hd - n_rot)?], 3)
    }
}

/// A (t, t) additive causal mask: 0 on and below the diagonal, -inf above.
pub fn causal_mask(t: usize, dev: &Device) -> candle_core::Result<Tensor> {
    let m: Vec<f32> = (0..t)
        .flat_map(|i| (0..t).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Tensor::from_vec(m, (t, t), dev)
}

fn round_f16(x: Tensor, on: bool) -> candle_core::Result<Tensor> {
    if on {
        x.to_dtype(DType::F16)?.to_dtype(DType::F32)
    } else {
        Ok(x)
    }
}

impl Model {
    /// Load a llama / phi3 / qwen2 GGUF (the file llama.cpp serves).
    pub fn load(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let g = lorag_gguf::Gguf::open(&path)?;
        if g.get_str("general.type") == Some("adapter") {
            return Err(Error::Model {
                path,
                msg: "this is a LoRA adapter, not a base model".into(),
            });
        }
        let hp = Hparams::from_gguf(&g)?;
        let dev = opts.device.device()?;
        let mut file = File::open(&path).map_err(|e| Error::Io {
            path: path.clone(),
            source: e,
        })?;
        let content = gguf_file::Content::read(&mut file).map_err(|e| Error::Model {
            path: path.clone(),
            msg: e.to_string(),
        })?;
        let mut src = GgufSource {
            content,
            file,
            path: path.clone(),
            dev: dev.clone(),
            dequantize: opts.dequantize,
        };
        let embd = src.qtensor("token_embd.weight")?;
        let embd = Arc::new(embd);
        let embed = match embd.dtype() {
            candle_core::quantized::GgmlDType::F32
            | candle_core::quantized::GgmlDType::F16
            | candle_core::quantized::GgmlDType::BF16 => {
                Embedding::Dense(embd.dequantize(&dev)?.to_dtype(DType::F32)?)
            }
            _ => Embedding::Quant(embd.clone()),
        };
        let lm_head = if src.has("output.weight") {
            src.linear("output", false)?
        } else {
            // Tied embeddings: the head shares the embedding's storage.
            let w = match &embed {
                Embedding::Dense(t) => BaseWeight::Dense(t.clone()),
                Embedding::Quant(q) if opts.dequantize => {
                    BaseWeight::Dense(q.dequantize(&dev)?.to_dtype(DType::F32)?)
                }
                Embedding::Quant(q) => BaseWeight::Quant(q.clone()),
            };
            Linear::new("output", w, None)
        };
        src.expect(&lm_head, hp.n_vocab, hp.n_embd)?;
        let mut blocks = Vec::with_capacity(hp.n_layer);
        for l in 0..hp.n_layer {
            let b = match hp.arch {
                Arch::Llama => llama::load_block(&mut src, &hp, l)?,
                Arch::Phi3 => phi3::load_block(&mut src, &hp, l)?,
                Arch::Qwen2 => qwen2::load_block(&mut src, &hp, l)?,
            };
            blocks.push(b);
        }
        Ok(Model {
            out_norm: src.vector("output_norm.weight")?,
            hp,
            path,
            embed,
            blocks,
            lm_head,
            device: dev,
            numerics: Numerics::default(),
        })
    }

    /// Hidden states after the final norm, (b, t, n_embd), for token ids (b, t).
    pub fn hidden(&self, ids: &Tensor, ctx: &ForwardCtx) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let hp = &self.hp;
        let mut x = match &self.embed {
            Embedding::Quant(q) => q.embedding(ids)?,
            Embedding::Dense(w) => w
                .index_select(&ids.flatten_all()?, 0)?
                .reshape((b, t, hp.n_embd))?,
        };
        let (cos, sin) = rope_tables(t, hp.n_rot, hp.rope_base, &self.device)?;
        let mask = causal_mask(t, &self.device)?;
        for (l, blk) in self.blocks.iter().enumerate() {
            let ctx = ForwardCtx {
                dropout_seed: ctx.dropout_seed.map(|s| crate::rng::mix(s, l as u64)),
                ..*ctx
            };
            let h = rms_norm(&x, &blk.attn_norm, hp.rms_eps)?;
            let a = self.attention(blk, &h, &cos, &sin, &mask, &ctx)?;
            x = (x + a)?;
            let h = rms_norm(&x, &blk.ffn_norm, hp.rms_eps)?;
            let (gate, up) = match &blk.gate_up {
                GateUp::Split { gate, up } => (gate.forward(&h, &ctx)?, up.forward(&h, &ctx)?),
                GateUp::Fused(gu) => {
                    let y = gu.forward(&h, &ctx)?;
                    let ff = y.dim(D::Minus1)? / 2;
                    (y.narrow(D::Minus1, 0, ff)?, y.narrow(D::Minus1, ff, ff)?)
                }
            };
            let f = blk.down.forward(&(gate.silu()? * up)?, &ctx)?;
            x = (x + f)?;
        }
        Ok(rms_norm(&x, &self.out_norm, hp.rms_eps)?)
    }

    fn attention(
        &self,
        blk: &Block,
        h: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &Tensor,
        ctx: &ForwardCtx,
    ) -> Result<Tensor> {
        let hp = &self.hp;
        let (b, t, _) = h.dims3()?;
        let (hd, nh, nkv) = (hp.head_dim, hp.n_head, hp.n_head_kv);
        let (q, k, v) = match &blk.qkv {
            Qkv::Split { q, k, v } => (q.forward(h, ctx)?, k.forward(h, ctx)?, v.forward(h, ctx)?),
            Qkv::Fused(qkv) => {
                let y = qkv.forward(h, ctx)?;
                (
                    y.narrow(2, 0, hp.q_dim())?,
                    y.narrow(2, hp.q_dim(), hp.kv_dim())?,
                    y.narrow(2, hp.q_dim() + hp.kv_dim(), hp.kv_dim())?,
                )
            }
        };
        let f16 = self.numerics.f16_kv;
        let q = apply_rope(&q.reshape((b, t, nh, hd))?, cos, sin, hp.n_rot, hp.rope)?;
        let k = apply_rope(&k.reshape((b, t, nkv, hd))?, cos, sin, hp.n_rot, hp.rope)?;
        let v = v.reshape((b, t, nkv, hd))?;
        // (b, heads, t, hd); the query heads that share a kv head are stacked along t, so that
        // grouped-query attention needs no copy of k and v.
        let rep = nh / nkv;
        let q = q
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, nkv, rep * t, hd))?;
        let k = round_f16(k.transpose(1, 2)?.contiguous()?, f16)?;
        let v = round_f16(v.transpose(1, 2)?.contiguous()?, f16)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let o = if q.device().is_cpu() {
            let op = crate::fused::CausalAttention {
                t,
                scale,
                mask: mask.clone(),
            };
            q.apply_op3(&k, &v, op)?
        } else {
            let scores = (q.matmul(&k.t()?)? * scale)?
                .reshape((b, nh, t, t))?
                .broadcast_add(mask)?;
            let p = candle_nn::ops::softmax(&scores, D::Minus1)?.reshape((b, nkv, rep * t, t))?;
            p.matmul(&v)?
        };
        let o = o
            .reshape((b, nh, t, hd))?
            .transpose(1, 2)?
            .reshape((b, t, nh * hd))?;
        Ok(blk.o.forward(&o, ctx)?)
    }

    /// Logits (b, t, n_vocab).
    pub fn logits(&self, ids: &Tensor, ctx: &ForwardCtx) -> Result<Tensor> {
        let h = self.hidden(ids, ctx)?;
        Ok(self.lm_head.forward(&h, ctx)?)
    }

    /// Logits of one sequence (no dropout), as rows of f32, for comparisons.
    pub fn logits_rows(&self, tokens: &[i32]) -> Result<Vec<Vec<f32>>> {
        let ids = self.ids(&[tokens.to_vec()])?;
        let l = self.logits(&ids, &ForwardCtx::default())?;
        Ok(l.squeeze(0)?.to_vec2::<f32>()?)
    }

    /// A (b, t) u32 tensor of equal-length token rows.
    pub fn ids(&self, rows: &[Vec<i32>]) -> Result<Tensor> {
        let t = rows.first().map_or(0, Vec::len);
        let mut flat = Vec::with_capacity(rows.len() * t);
        for r in rows {
            if r.len() != t {
                return Err(Error::Invalid("token rows of different lengths".into()));
            }
            for &id in r {
                if id < 0 || id as usize >= self.hp.n_vocab {
                    return Err(Error::Invalid(format!(
                        "token id {id} is outside the vocabulary (0..{})",
                        self.hp.n_vocab
                    )));
                }
                flat.push(id as u32);
            }
        }
        Ok(Tensor::from_vec(flat, (rows.len(), t), &self.device)?)
    }

    /// Summed cross-entropy over the positions where `mask` is set: `targets[i][j]` is the token
    /// that follows `ids[i][j]`. Returns (sum of losses, number of counted tokens).
    pub fn loss_sum(
        &self,
        ids: &Tensor,
        targets: &[u32],
        mask: &[bool],
        ctx: &ForwardCtx,
    ) -> Result<(Tensor, usize)> {
        let h = self.hidden(ids, ctx)?;
        let (b, t, e) = h.dims3()?;
        let sel: Vec<u32> = (0..b * t).filter(|&i| mask[i]).map(|i| i as u32).collect();
        let n = sel.len();
        if n == 0 {
            return Ok((Tensor::zeros((), DType::F32, &self.device)?, 0));
        }
        let tgt: Vec<u32> = sel.iter().map(|&i| targets[i as usize]).collect();
        let sel = Tensor::from_vec(sel, n, &self.device)?;
        // Only the counted positions go through the (large) output head.
        let h = h.reshape((b * t, e))?.index_select(&sel, 0)?;
        let logits = self.lm_head.forward(&h, ctx)?;
        if logits.device().is_cpu() {
            let ce = crate::fused::CrossEntropy { targets: tgt };
            return Ok((logits.contiguous()?.apply_op1(ce)?.sum_all()?, n));
        }
        let lsm = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let tgt = Tensor::from_vec(tgt, (n, 1), &self.device)?;
        let picked = lsm.gather(&tgt, 1)?;
        Ok((picked.sum_all()?.neg()?, n))
    }

    pub fn linears(&self) -> impl Iterator<Item = &Linear> {
        self.blocks.iter().flat_map(Block::linears)
    }

    /// Attach fresh LoRA adapters to the target layers (replacing any). Returns how many.
    pub fn add_lora(&mut self, cfg: &LoraConfig, seed: u64) -> Result<usize> {
        cfg.validate().map_err(Error::Invalid)?;
        let targets = self.resolve_targets(&cfg.targets)?;
        let mut rng = Rng::new(seed);
        let dev = self.device.clone();
        let mut n = 0;
        for blk in &mut self.blocks {
            for lin in blk.linears_mut() {
                lin.lora = None;
                if targets.iter().any(|t| lin.name.ends_with(&format!(".{t}"))) {
                    let (o, i) = lin.dims();
                    lin.lora = Some(Lora::new(i, o, cfg, &mut rng, &dev)?);
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Check target names against this architecture; empty means all of its linear layers.
    pub fn resolve_targets(&self, targets: &[String]) -> Result<Vec<String>> {
        let known = self.hp.arch.linear_names();
        if targets.is_empty() {
            return Ok(known.iter().map(|s| s.to_string()).collect());
        }
        for t in targets {
            if !known.contains(&t.as_str()) {
                return Err(Error::Invalid(format!(
                    "LoRA target {t:?} is not a linear layer of {} models; use any of: {}",
                    self.hp.arch.name(),
                    known.join(", ")
                )));
            }
        }
        Ok(targets.to_vec())
    }

    /// Every adapter tensor by name (`blk.N.<name>.lora_a` / `.lora_b`), in a stable order.
    pub fn lora_vars(&self) -> Vec<(String, Var)> {
        let mut v = Vec::new();
        for lin in self.linears() {
            if let Some(l) = &lin.lora {
                v.push((format!("{}.lora_a", lin.name), l.a.clone()));
                v.push((format!("{}.lora_b", lin.name), l.b.clone()));
            }
        }
        v
    }

    /// The linear layers that carry an adapter.
    pub fn lora_layers(&self) -> impl Iterator<Item = (&Linear, &Lora)> {
        self.linears()
            .filter_map(|l| l.lora.as_ref().map(|a| (l, a)))
    }

    /// Bytes held by the frozen base weights.
    pub fn base_bytes(&self) -> usize {
        let emb = match &self.embed {
            Embedding::Quant(q) => q.storage_size_in_bytes(),
            Embedding::Dense(t) => t.elem_count() * 4,
        };
        emb + self
            .linears()
            .map(|l| l.weight.size_in_bytes())
            .sum::<usize>()
    }

    /// All frozen tensors as f32 copies keyed by name: for tests that check the base is untouched.
    pub fn base_snapshot(&self) -> Result<HashMap<String, Vec<u8>>> {
        let mut m = HashMap::new();
        for l in self.linears().chain(std::iter::once(&self.lm_head)) {
            let bytes = match &l.weight {
                BaseWeight::Quant(q) => q.data()?.into_owned(),
                BaseWeight::Dense(t) => t
                    .flatten_all()?
                    .to_vec1::<f32>()?
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            };
            m.insert(l.name.clone(), bytes);
        }
        Ok(m)
    }
}
