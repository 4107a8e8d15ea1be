//! The BERT encoder for inference: the network of candle-transformers' `BertModel`, on the same
//! weights, reorganised for speed on CPU (measured: bench/embed.sh):
//!
//! - query, key and value are one matmul (their weights concatenated at load), and the
//!   `1/sqrt(head_dim)` scale is folded into the query weights, so no pass divides the scores;
//! - the softmax is one fused pass per row that also applies the padding mask: padded keys get
//!   probability 0 without a mask tensor being added (`BertModel` adds a mask, then runs a
//!   five-op softmax);
//! - GELU (erf) is one parallel, vectorisable pass (candle's unary ops run on one thread).
//!
//! The test `same_hidden_states_as_candle_transformers` checks that the output equals
//! `BertModel`'s on the real model.

use candle_core::{CpuStorage, CustomOp1, Layout, Module, Result, Shape, Tensor};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};
use candle_transformers::models::bert::{Config, HiddenAct};
use rayon::prelude::*;

pub(crate) struct Encoder {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    head_dim: usize,
}

struct Layer {
    /// Query (pre-scaled), key and value, stacked: `(3 * hidden, hidden)`.
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    act: HiddenAct,
    out: Linear,
    out_norm: LayerNorm,
}

impl Encoder {
    /// Loads the tensors that `BertModel::load` loads, under the same names (with or without a
    /// `bert.` prefix).
    pub(crate) fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let h = cfg.hidden_size;
        let heads = cfg.num_attention_heads;
        let head_dim = h / heads;
        let emb = vb.pp("embeddings");
        let word = embedding(cfg.vocab_size, h, emb.pp("word_embeddings"))?;
        let position = embedding(
            cfg.max_position_embeddings,
            h,
            emb.pp("position_embeddings"),
        )?;
        let token_type = embedding(cfg.type_vocab_size, h, emb.pp("token_type_embeddings"))?;
        let norm = layer_norm(h, cfg.layer_norm_eps, emb.pp("LayerNorm"))?;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let vb = vb.pp(format!("encoder.layer.{i}"));
                let att = vb.pp("attention");
                let q = linear(h, h, att.pp("self.query"))?;
                let k = linear(h, h, att.pp("self.key"))?;
                let v = linear(h, h, att.pp("self.value"))?;
                let bias = |l: &Linear| {
                    l.bias()
                        .cloned()
                        .ok_or_else(|| candle_core::Error::Msg("linear without bias".into()))
                };
                let w = Tensor::cat(
                    &[
                        (q.weight() * scale)?,
                        k.weight().clone(),
                        v.weight().clone(),
                    ],
                    0,
                )?;
                let b = Tensor::cat(&[(bias(&q)? * scale)?, bias(&k)?, bias(&v)?], 0)?;
                Ok(Layer {
                    qkv: Linear::new(w, Some(b)),
                    attn_out: linear(h, h, att.pp("output.dense"))?,
                    attn_norm: layer_norm(h, cfg.layer_norm_eps, att.pp("output.LayerNorm"))?,
                    intermediate: linear(h, cfg.intermediate_size, vb.pp("intermediate.dense"))?,
                    act: cfg.hidden_act,
                    out: linear(cfg.intermediate_size, h, vb.pp("output.dense"))?,
                    out_norm: layer_norm(h, cfg.layer_norm_eps, vb.pp("output.LayerNorm"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            word,
            position,
            token_type,
            norm,
            layers,
            heads,
            head_dim,
        })
    }

    /// Hidden states `(batch, seq, hidden)` of right-padded `ids`/`types` `(batch, seq)`; row `i`
    /// holds `lens[i]` real tokens, the rest is padding that no real token attends to.
    pub(crate) fn forward(&self, ids: &Tensor, types: &Tensor, lens: &[usize]) -> Result<Tensor> {
        let (b, seq) = ids.dims2()?;
        let positions = Tensor::arange(0u32, seq as u32, ids.device())?;
        let x = (self.word.forward(ids)? + self.token_type.forward(types)?)?
            .broadcast_add(&self.position.forward(&positions)?)?;
        let mut x = self.norm.forward(&x)?;
        let mask = KeyMask {
            lens: lens.to_vec(),
            heads: self.heads,
            seq,
        };
        let additive = if ids.device().is_cpu() {
            None
        } else {
            Some(mask.additive(b, ids.device())?)
        };
        for layer in &self.layers {
            x = self.layer(layer, &x, &mask, additive.as_ref())?;
        }
        Ok(x)
    }

    fn layer(
        &self,
        l: &Layer,
        x: &Tensor,
        mask: &KeyMask,
        additive: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, seq, h) = x.dims3()?;
        let qkv = l
            .qkv
            .forward(x)?
            .reshape((b, seq, 3, self.heads, self.head_dim))?;
        let part = |i: usize| {
            qkv.narrow(2, i, 1)?
                .squeeze(2)?
                .transpose(1, 2)?
                .contiguous()
        };
        let (q, k, v) = (part(0)?, part(1)?, part(2)?);
        let scores = q.matmul(&k.t()?)?;
        let probs = match additive {
            None => scores.apply_op1_no_bwd(mask)?,
            Some(m) => candle_nn::ops::softmax_last_dim(&scores.broadcast_add(m)?)?,
        };
        let ctx = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, seq, h))?;
        let a = l.attn_norm.forward(&(l.attn_out.forward(&ctx)? + x)?)?;
        let i = l.intermediate.forward(&a)?;
        let i = match l.act {
            HiddenAct::Gelu if i.device().is_cpu() => i.apply_op1_no_bwd(&GeluErf)?,
            HiddenAct::Gelu => i.gelu_erf()?,
            HiddenAct::GeluApproximate => i.gelu()?,
            HiddenAct::Relu => i.relu()?,
        };
        l.out_norm.forward(&(l.out.forward(&i)? + a)?)
    }
}

/// Softmax over the last dimension of attention scores `(batch, heads, seq, seq)`, where only the
/// first `lens[batch]` keys are real: the rest get probability 0.
struct KeyMask {
    lens: Vec<usize>,
    heads: usize,
    seq: usize,
}

impl KeyMask {
    /// The same mask as a tensor to add to the scores `(batch, 1, 1, seq)`, for other devices.
    fn additive(&self, b: usize, dev: &candle_core::Device) -> Result<Tensor> {
        let mut m = vec![0f32; b * self.seq];
        for (row, &n) in m.chunks_mut(self.seq).zip(&self.lens) {
            row[n..].fill(f32::MIN);
        }
        Tensor::from_vec(m, (b, 1, 1, self.seq), dev)
    }
}

impl CustomOp1 for KeyMask {
    fn name(&self) -> &'static str {
        "lorag-masked-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(src) = storage else {
            candle_core::bail!("masked softmax: f32 only");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("masked softmax: input must be contiguous");
        };
        let dims = layout.shape().dims();
        let rows_per_item = self.heads * self.seq;
        if dims.len() != 4
            || dims[1] != self.heads
            || dims[2] != self.seq
            || dims[3] != self.seq
            || dims[0] != self.lens.len()
        {
            candle_core::bail!("masked softmax: unexpected shape {dims:?}");
        }
        let src = &src[start..end];
        let mut dst = vec![0f32; src.len()];
        dst.par_chunks_mut(self.seq)
            .zip(src.par_chunks(self.seq))
            .enumerate()
            .for_each(|(row, (d, s))| {
                let n = self.lens[row / rows_per_item].min(self.seq);
                let (d, s) = (&mut d[..n], &s[..n]);
                let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0f32;
                for (d, &s) in d.iter_mut().zip(s) {
                    *d = (s - max).exp();
                    sum += *d;
                }
                let inv = 1.0 / sum;
                d.iter_mut().for_each(|d| *d *= inv);
            });
        Ok((CpuStorage::F32(dst), layout.shape().clone()))
    }
}

/// GELU with the exact (erf) form, `0.5 x (1 + erf(x / sqrt 2))`, in parallel chunks.
struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "lorag-gelu-erf"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(src) = storage else {
            candle_core::bail!("gelu: f32 only");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("gelu: input must be contiguous");
        };
        let src = &src[start..end];
        let mut dst = vec![0f32; src.len()];
        dst.par_chunks_mut(16 * 1024)
            .zip(src.par_chunks(16 * 1024))
            .for_each(|(d, s)| {
                for (d, &x) in d.iter_mut().zip(s) {
                    *d = 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
                }
            });
        Ok((CpuStorage::F32(dst), layout.shape().clone()))
    }
}

/// erf for f32 as a rational function on [-4, 4] (beyond it erf is ±1 in f32): the
/// approximation of Eigen's `generic_fast_erf_float`, a few ulp from the exact value. Branch-free,
/// so that the loop above vectorises.
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2.mul_add(-2.726_142_3e-10, 2.770_681_4e-8);
    p = x2.mul_add(p, -2.101_024e-6);
    p = x2.mul_add(p, -5.692_506_4e-5);
    p = x2.mul_add(p, -7.349_906e-4);
    p = x2.mul_add(p, -2.954_6e-3);
    p = x2.mul_add(p, -1.609_603_3e-2);
    let mut q = x2.mul_add(-1.456_607_2e-5, -2.133_740_6e-4);
    q = x2.mul_add(q, -1.682_827e-3);
    q = x2.mul_add(q, -7.373_329e-3);
    q = x2.mul_add(q, -1.426_474e-2);
    x * p / q
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, D};

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn erf_is_accurate() {
        let mut worst = 0f64;
        for i in -60_000..=60_000 {
            let x = i as f32 * 1e-4;
            let exact = candle_core::cpu::erf::erf_f64(x as f64);
            worst = worst.max((erf(x) as f64 - exact).abs());
        }
        assert!(worst < 5e-7, "erf: max error {worst}");
        // Saturates beyond the clamp, odd, and never outside [-1, 1].
        assert!((erf(100.0) - 1.0).abs() < 1e-6 && erf(100.0) <= 1.0);
        assert_eq!(erf(-100.0), -erf(100.0));
        assert_eq!(erf(0.0), 0.0);
    }

    #[test]
    fn gelu_matches_candle() {
        let x = (Tensor::arange(-40_000f32, 40_000f32, &Device::Cpu).unwrap() * 1e-4).unwrap();
        let ours = x.apply_op1_no_bwd(&GeluErf).unwrap();
        let theirs = x.gelu_erf().unwrap();
        assert!(max_diff(&ours, &theirs) < 1e-6);
    }

    #[test]
    fn masked_softmax_matches_softmax_with_an_additive_mask() {
        let dev = Device::Cpu;
        let (b, heads, seq) = (3, 2, 5);
        let scores = Tensor::randn(0f32, 3.0, (b, heads, seq, seq), &dev).unwrap();
        let lens = [5, 2, 1];
        let mask = KeyMask {
            lens: lens.to_vec(),
            heads,
            seq,
        };
        let ours = scores.apply_op1_no_bwd(&mask).unwrap();
        let additive = mask.additive(b, &dev).unwrap();
        let theirs =
            candle_nn::ops::softmax(&scores.broadcast_add(&additive).unwrap(), D::Minus1).unwrap();
        assert!(max_diff(&ours, &theirs) < 1e-6);
        // Padded keys get exactly 0, and every row sums to 1.
        let flat: Vec<f32> = ours.flatten_all().unwrap().to_vec1().unwrap();
        for (r, row) in flat.chunks(seq).enumerate() {
            let n = lens[r / (heads * seq)];
            assert!(row[n..].iter().all(|&p| p == 0.0));
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn same_hidden_states_as_candle_transformers() {
        use candle_transformers::models::bert::BertModel;
        let dir = lorag_models::test_model("all-minilm-l6-v2");
        let folder = crate::folder::ModelFolder::read(&dir).unwrap();
        let dev = Device::Cpu;
        let weights = std::fs::read(&folder.weights_path).unwrap();
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &dev).unwrap();
        let ours = Encoder::load(vb.clone(), &folder.config).unwrap();
        let theirs = BertModel::load(vb, &folder.config).unwrap();
        // Two rows, the second padded after 4 tokens.
        let ids = Tensor::new(
            &[
                [101u32, 7592, 2088, 2003, 1037, 3231, 102],
                [101, 7592, 2088, 102, 0, 0, 0],
            ],
            &dev,
        )
        .unwrap();
        let types = ids.zeros_like().unwrap();
        let mask = Tensor::new(&[[1f32; 7], [1., 1., 1., 1., 0., 0., 0.]], &dev).unwrap();
        let a = ours.forward(&ids, &types, &[7, 4]).unwrap();
        let b = theirs.forward(&ids, &types, Some(&mask)).unwrap();
        // The mask applies to keys in both, so padded positions agree too.
        let d = max_diff(&a, &b);
        assert!(d < 1e-4, "max difference {d}");
    }
}
