//! Fused training ops with hand-written backward passes, for the CPU.
//!
//! candle records every elementary op of a step and keeps each op's inputs alive until the
//! backward pass ends. A LoRA linear layer built from elementary ops keeps four (tokens × out)
//! tensors, an attention layer several (heads × t × t) score tensors, an rms-norm three copies of
//! its input. The ops here keep only what their backward needs (their inputs, which the graph
//! holds anyway), and recompute the rest: the activation memory of a step drops several fold, and
//! fewer passes go over memory.
//!
//! - [`LoraMatMul`]: `y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ` for a frozen W; gradients for x, A and B.
//! - [`CausalAttention`]: `softmax(q·kᵀ·scale + causal mask)·v` in the grouped-query layout of
//!   `Model::attention`; the probabilities are recomputed in the backward pass.
//! - [`RmsNorm`]: `x / sqrt(mean(x²) + eps) · w` for a frozen w.
//! - [`CrossEntropy`]: per row, `-log softmax(logits)[target]`.
//!
//! Each has a test against the composed ops it replaces (values and gradients). On other devices
//! the callers keep the composed ops.

use crate::linear::{BaseWeight, FrozenMatMul, QuantForward};
use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp3, Device, Layout, Result, Shape, Tensor, D,
};

/// A contiguous f32 CPU storage as a tensor (a copy).
fn cpu_tensor(s: &CpuStorage, l: &Layout) -> Result<Tensor> {
    let CpuStorage::F32(v) = s else {
        bail!("fused op: expected an f32 input")
    };
    let Some((a, b)) = l.contiguous_offsets() else {
        bail!("fused op: expected a contiguous input, got {l:?}")
    };
    Tensor::from_slice(&v[a..b], l.shape(), &Device::Cpu)
}

fn storage(t: &Tensor) -> Result<(CpuStorage, Shape)> {
    Ok((
        CpuStorage::F32(t.flatten_all()?.to_vec1::<f32>()?),
        t.shape().clone(),
    ))
}

/// `y = x·Wᵀ + scale·(x·Aᵀ)·Bᵀ`: x (m, in), A (r, in), B (out, r), W frozen (out, in).
pub struct LoraMatMul {
    pub w: BaseWeight,
    pub mode: QuantForward,
    pub scale: f64,
}

impl CustomOp3 for LoraMatMul {
    fn name(&self) -> &'static str {
        "lorag-lora-matmul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let base = FrozenMatMul {
            w: self.w.clone(),
            mode: self.mode,
        };
        let (CpuStorage::F32(mut y), shape) = base.cpu_fwd(s1, l1)? else {
            bail!("lora matmul: the base matmul did not give f32")
        };
        let x = cpu_tensor(s1, l1)?;
        let (a, b) = (cpu_tensor(s2, l2)?, cpu_tensor(s3, l3)?);
        let d = x.matmul(&a.t()?)?.matmul(&b.t()?)?;
        let d = d.flatten_all()?.to_vec1::<f32>()?;
        let s = self.scale as f32;
        for (yi, di) in y.iter_mut().zip(d) {
            *yi += di * s;
        }
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (x, a, b) = (x.detach(), a.detach(), b.detach());
        let dy = dy.detach().contiguous()?;
        let w = self.w.to_dense()?;
        let h = x.matmul(&a.t()?)?; // (m, r)
        let g = (dy.matmul(&b)? * self.scale)?; // (m, r)
        let dx = (dy.matmul(&w)? + g.matmul(&a)?)?;
        let da = g.t()?.matmul(&x)?;
        let db = (dy.t()?.matmul(&h)? * self.scale)?;
        Ok((Some(dx), Some(da), Some(db)))
    }
}

/// Causal attention over q (b, n_kv, rep·t, hd) (the query heads that share a kv head stacked
/// along the rows), k and v (b, n_kv, t, hd); `mask` is the (t, t) additive causal mask.
pub struct CausalAttention {
    pub t: usize,
    pub scale: f64,
    pub mask: Tensor,
}

impl CausalAttention {
    fn probs(&self, q: &Tensor, k: &Tensor) -> Result<Tensor> {
        let (b, nkv, rt, _) = q.dims4()?;
        let t = self.t;
        let s = (q.matmul(&k.t()?)? * self.scale)?
            .reshape((b, nkv, rt / t, t, t))?
            .broadcast_add(&self.mask)?;
        candle_nn::ops::softmax_last_dim(&s)?.reshape((b, nkv, rt, t))
    }
}

impl CustomOp3 for CausalAttention {
    fn name(&self) -> &'static str {
        "lorag-causal-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (q, k, v) = (
            cpu_tensor(s1, l1)?,
            cpu_tensor(s2, l2)?,
            cpu_tensor(s3, l3)?,
        );
        storage(&self.probs(&q, &k)?.matmul(&v)?)
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        d_o: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (q, k, v) = (q.detach(), k.detach(), v.detach());
        let d_o = d_o.detach().contiguous()?;
        let p = self.probs(&q, &k)?;
        let dv = p.t()?.matmul(&d_o)?;
        let dp = d_o.matmul(&v.t()?)?;
        let row = (&dp * &p)?.sum_keepdim(D::Minus1)?;
        let ds = ((p * dp.broadcast_sub(&row)?)? * self.scale)?;
        let dq = ds.matmul(&k)?;
        let dk = ds.t()?.matmul(&q)?;
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

/// `x / sqrt(mean(x²) + eps) · w` over the last dimension, for a frozen `w`.
pub struct RmsNorm {
    pub w: Vec<f32>,
    pub eps: f32,
}

impl RmsNorm {
    pub fn new(w: &Tensor, eps: f32) -> Result<Self> {
        Ok(Self {
            w: w.flatten_all()?.to_vec1::<f32>()?,
            eps,
        })
    }

    fn rows<'a>(&self, v: &'a [f32]) -> Result<std::slice::ChunksExact<'a, f32>> {
        let e = self.w.len();
        if e == 0 || !v.len().is_multiple_of(e) {
            bail!("rms norm: input does not match the weight of {e}")
        }
        Ok(v.chunks_exact(e))
    }

    fn inv_rms(&self, row: &[f32]) -> f32 {
        let ms = row.iter().map(|x| x * x).sum::<f32>() / row.len() as f32;
        1.0 / (ms + self.eps).sqrt()
    }
}

impl CustomOp1 for RmsNorm {
    fn name(&self) -> &'static str {
        "lorag-rms-norm"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = cpu_tensor(s, l)?.flatten_all()?.to_vec1::<f32>()?;
        let mut y = Vec::with_capacity(x.len());
        for row in self.rows(&x)? {
            let r = self.inv_rms(row);
            y.extend(row.iter().zip(&self.w).map(|(x, w)| x * r * w));
        }
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    /// With g = dy·w and r = 1/rms(x): dx = r·g - x·r³·mean(g·x).
    fn bwd(&self, x: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let xv = x.detach().flatten_all()?.to_vec1::<f32>()?;
        let dyv = dy.detach().flatten_all()?.to_vec1::<f32>()?;
        let e = self.w.len();
        let mut dx = Vec::with_capacity(xv.len());
        for (row, drow) in self.rows(&xv)?.zip(dyv.chunks_exact(e)) {
            let r = self.inv_rms(row);
            let gx = row
                .iter()
                .zip(drow)
                .zip(&self.w)
                .map(|((x, d), w)| x * d * w)
                .sum::<f32>()
                / e as f32;
            let k = r * r * r * gx;
            dx.extend(
                row.iter()
                    .zip(drow)
                    .zip(&self.w)
                    .map(|((x, d), w)| r * d * w - x * k),
            );
        }
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

/// Per row of logits (n, vocab): `logsumexp(row) - row[target]`, i.e. `-log softmax[target]`.
pub struct CrossEntropy {
    pub targets: Vec<u32>,
}

impl CrossEntropy {
    /// (max, logsumexp) of each row.
    fn lse(row: &[f32]) -> (f32, f32) {
        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let s: f32 = row.iter().map(|x| (x - m).exp()).sum();
        (m, m + s.ln())
    }
}

impl CustomOp1 for CrossEntropy {
    fn name(&self) -> &'static str {
        "lorag-cross-entropy"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, v) = l.shape().dims2()?;
        if n != self.targets.len() {
            bail!("cross entropy: {n} rows, {} targets", self.targets.len())
        }
        let x = cpu_tensor(s, l)?.flatten_all()?.to_vec1::<f32>()?;
        let mut out = Vec::with_capacity(n);
        for (row, &t) in x.chunks_exact(v).zip(&self.targets) {
            out.push(Self::lse(row).1 - row[t as usize]);
        }
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    /// d logits = dy · (softmax - onehot(target)).
    fn bwd(&self, x: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let (_, v) = x.dims2()?;
        let xv = x.detach().flatten_all()?.to_vec1::<f32>()?;
        let dyv = dy.detach().flatten_all()?.to_vec1::<f32>()?;
        let mut g = Vec::with_capacity(xv.len());
        for ((row, &t), d) in xv.chunks_exact(v).zip(&self.targets).zip(dyv) {
            let (_, lse) = Self::lse(row);
            let start = g.len();
            g.extend(row.iter().map(|x| (x - lse).exp() * d));
            g[start + t as usize] -= d;
        }
        Ok(Some(Tensor::from_vec(g, x.shape(), x.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use candle_core::Var;

    fn rand(shape: &[usize], seed: u64) -> Tensor {
        let mut r = Rng::new(seed);
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| r.uniform(-1.0, 1.0)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

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

    /// Value and input gradients of `f` (fused) and `g` (composed) under a random projection.
    fn same(
        inputs: &[Tensor],
        f: impl Fn(&[Tensor]) -> Tensor,
        g: impl Fn(&[Tensor]) -> Tensor,
        tol: f32,
    ) {
        let vars: Vec<Var> = inputs
            .iter()
            .map(|t| Var::from_tensor(t).unwrap())
            .collect();
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let (yf, yg) = (f(&ts), g(&ts));
        assert!(max_diff(&yf, &yg) < tol, "values {}", max_diff(&yf, &yg));
        let r = rand(yf.dims(), 99);
        let gf = (yf * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gg = (yg * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for (i, t) in ts.iter().enumerate() {
            let (a, b) = (gf.get(t).unwrap(), gg.get(t).unwrap());
            assert!(
                max_diff(a, b) < tol,
                "gradient of input {i}: {}",
                max_diff(a, b)
            );
        }
    }

    #[test]
    fn lora_matmul_matches_the_composed_ops() {
        let w = rand(&[24, 32], 1);
        for quant in [false, true] {
            let bw = if quant {
                let q = candle_core::quantized::QTensor::quantize(
                    &rand(&[24, 64], 1),
                    candle_core::quantized::GgmlDType::Q8_0,
                )
                .unwrap();
                BaseWeight::Quant(std::sync::Arc::new(q))
            } else {
                BaseWeight::Dense(w.clone())
            };
            let wd = bw.to_dense().unwrap();
            let k = wd.dim(1).unwrap();
            let op = || LoraMatMul {
                w: bw.clone(),
                mode: QuantForward::Dequant,
                scale: 1.5,
            };
            same(
                &[rand(&[10, k], 2), rand(&[4, k], 3), rand(&[24, 4], 4)],
                |t| t[0].apply_op3(&t[1], &t[2], op()).unwrap(),
                |t| {
                    let base = t[0].matmul(&wd.t().unwrap()).unwrap();
                    let d = t[0]
                        .matmul(&t[1].t().unwrap())
                        .unwrap()
                        .matmul(&t[2].t().unwrap())
                        .unwrap();
                    (base + (d * 1.5).unwrap()).unwrap()
                },
                1e-4,
            );
        }
    }

    #[test]
    fn causal_attention_matches_the_composed_ops() {
        let (b, nkv, rep, t, hd) = (2, 2, 3, 7, 8);
        let mask = crate::models::causal_mask(t, &Device::Cpu).unwrap();
        let scale = 1.0 / (hd as f64).sqrt();
        let m2 = mask.clone();
        same(
            &[
                rand(&[b, nkv, rep * t, hd], 5),
                rand(&[b, nkv, t, hd], 6),
                rand(&[b, nkv, t, hd], 7),
            ],
            |x| {
                x[0].apply_op3(
                    &x[1],
                    &x[2],
                    CausalAttention {
                        t,
                        scale,
                        mask: m2.clone(),
                    },
                )
                .unwrap()
            },
            |x| {
                let s = (x[0].matmul(&x[1].t().unwrap()).unwrap() * scale)
                    .unwrap()
                    .reshape((b, nkv * rep, t, t))
                    .unwrap()
                    .broadcast_add(&mask)
                    .unwrap();
                candle_nn::ops::softmax(&s, D::Minus1)
                    .unwrap()
                    .reshape((b, nkv, rep * t, t))
                    .unwrap()
                    .matmul(&x[2])
                    .unwrap()
            },
            1e-5,
        );
    }

    #[test]
    fn rms_norm_matches_the_composed_ops() {
        let w = rand(&[16], 8);
        let op = RmsNorm::new(&w, 1e-5).unwrap();
        let wv = op.w.clone();
        same(
            &[rand(&[3, 5, 16], 9)],
            |x| {
                x[0].apply_op1(RmsNorm {
                    w: wv.clone(),
                    eps: 1e-5,
                })
                .unwrap()
            },
            |x| {
                let ms = x[0].sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
                x[0].broadcast_div(&(ms + 1e-5).unwrap().sqrt().unwrap())
                    .unwrap()
                    .broadcast_mul(&w)
                    .unwrap()
            },
            1e-5,
        );
    }

    #[test]
    fn cross_entropy_matches_log_softmax() {
        let targets = vec![3u32, 0, 9, 5];
        let tg = Tensor::from_vec(targets.clone(), (4, 1), &Device::Cpu).unwrap();
        same(
            &[(rand(&[4, 10], 10) * 4.0).unwrap()],
            |x| {
                x[0].apply_op1(CrossEntropy {
                    targets: targets.clone(),
                })
                .unwrap()
            },
            |x| {
                candle_nn::ops::log_softmax(&x[0], D::Minus1)
                    .unwrap()
                    .gather(&tg, 1)
                    .unwrap()
                    .squeeze(1)
                    .unwrap()
                    .neg()
                    .unwrap()
            },
            1e-5,
        );
    }
}
