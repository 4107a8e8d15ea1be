//! A linear layer over a frozen base weight (quantized or dense), with an optional bias and an
//! optional LoRA adapter. The only trainable tensors are the adapter's `Var`s.
//!
//! candle's `QMatMul::forward` produces an output with no backward. [`FrozenMatMul`] wraps the
//! frozen weight in a `CustomOp1` whose backward is `dy · dequant(W)`: one weight is
//! dequantized at a time, inside the backward, and dropped at once. The frozen base never gets a
//! gradient (there is no `dW`).

use crate::lora::Lora;
use crate::rng;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor, D};
use std::sync::Arc;

/// How a quantized matmul runs forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QuantForward {
    /// Dequantize the one weight to f32 and multiply with a dense GEMM (fast on CPUs for which
    /// candle has no SIMD kernel of the type, e.g. Q4_1), when there are at least 8 rows.
    #[default]
    Dequant,
    /// candle's quantized kernel: activations quantized to Q8 as llama.cpp does.
    Kernel,
}

/// `y = x · Wᵀ` for a frozen `W` of shape (out, in), with a backward for `x` only.
///
/// For a quantized `W` this is the op candle lacks; for a dense `W` it spares the `dW` that
/// candle's matmul backward always computes (a third of the work, for a weight that is frozen).
pub struct FrozenMatMul {
    pub w: BaseWeight,
    pub mode: QuantForward,
}

impl FrozenMatMul {
    fn dense_fwd(w: &Tensor, x: &[f32], m: usize, k: usize) -> Result<Vec<f32>> {
        let x = Tensor::from_slice(x, (m, k), w.device())?;
        x.matmul(&w.t()?)?.flatten_all()?.to_vec1::<f32>()
    }
}

impl CustomOp1 for FrozenMatMul {
    fn name(&self) -> &'static str {
        "lorag-frozen-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, k) = self.w.dims();
        let dims = layout.shape().dims();
        let m = layout.shape().elem_count() / k.max(1);
        let (CpuStorage::F32(data), true, Some(&kk)) =
            (storage, layout.is_contiguous(), dims.last())
        else {
            candle_core::bail!("frozen matmul: expected contiguous f32 input, got {layout:?}")
        };
        if kk != k {
            candle_core::bail!("frozen matmul: input {dims:?} does not match weight ({n}, {k})")
        }
        let x = &data[layout.start_offset()..layout.start_offset() + m * k];
        let y = match &self.w {
            BaseWeight::Dense(w) => Self::dense_fwd(w, x, m, k)?,
            BaseWeight::Quant(q) if self.mode == QuantForward::Dequant && m >= 8 => {
                Self::dense_fwd(&q.dequantize(&candle_core::Device::Cpu)?, x, m, k)?
            }
            BaseWeight::Quant(q) => return q.cpu_fwd(storage, layout),
        };
        let mut out = dims.to_vec();
        *out.last_mut().expect("rank >= 1") = n;
        Ok((CpuStorage::F32(y), Shape::from(out)))
    }

    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        match &self.w {
            BaseWeight::Quant(q) => q.cuda_fwd(storage, layout),
            BaseWeight::Dense(_) => {
                candle_core::bail!("dense frozen weights on CUDA go through Tensor::matmul")
            }
        }
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (n, k) = self.w.dims();
        let w = self.w.to_dense()?.to_dtype(grad.dtype())?;
        let m = grad.elem_count() / n;
        let dx = grad
            .detach()
            .contiguous()?
            .reshape((m, n))?
            .matmul(&w)?
            .reshape(arg.shape())?;
        debug_assert_eq!(dx.dim(D::Minus1)?, k);
        Ok(Some(dx))
    }
}

/// The frozen weight of a linear layer, shape (out, in).
#[derive(Clone)]
pub enum BaseWeight {
    /// Stays in its GGUF block format; dequantized one weight at a time when needed.
    Quant(Arc<QTensor>),
    /// f32 (from an F32/F16 GGUF tensor, or dequantized at load for plain LoRA).
    Dense(Tensor),
}

impl BaseWeight {
    /// From a GGUF tensor: F32/F16/BF16 become dense f32, block types stay quantized unless
    /// `dequantize` is set.
    pub fn from_qtensor(q: QTensor, dequantize: bool) -> Result<Self> {
        let dense = matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
        if dense || dequantize {
            Ok(Self::Dense(
                q.dequantize(&q.device())?.to_dtype(DType::F32)?,
            ))
        } else {
            Ok(Self::Quant(Arc::new(q)))
        }
    }

    pub fn dims(&self) -> (usize, usize) {
        match self {
            Self::Quant(q) => q.shape().dims2().unwrap_or((0, 0)),
            Self::Dense(t) => t.dims2().unwrap_or((0, 0)),
        }
    }

    /// The weight as f32 (out, in). For quantized weights this dequantizes one weight.
    pub fn to_dense(&self) -> Result<Tensor> {
        match self {
            Self::Quant(q) => q.dequantize(&q.device()),
            Self::Dense(t) => Ok(t.clone()),
        }
    }

    pub fn ggml_dtype(&self) -> Option<GgmlDType> {
        match self {
            Self::Quant(q) => Some(q.dtype()),
            Self::Dense(_) => None,
        }
    }

    /// Bytes this weight holds in memory.
    pub fn size_in_bytes(&self) -> usize {
        match self {
            Self::Quant(q) => q.storage_size_in_bytes(),
            Self::Dense(t) => t.elem_count() * t.dtype().size_in_bytes(),
        }
    }

    fn matmul(&self, x: &Tensor, mode: QuantForward) -> Result<Tensor> {
        match (self, x.device()) {
            (Self::Dense(w), dev) if !dev.is_cpu() => x.matmul(&w.t()?),
            _ => x.contiguous()?.apply_op1(FrozenMatMul {
                w: self.clone(),
                mode,
            }),
        }
    }
}

/// Per-forward settings shared by every layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct ForwardCtx {
    /// Seed of this forward's dropout masks; None: no dropout (evaluation).
    pub dropout_seed: Option<u64>,
    pub quant: QuantForward,
}

/// A linear layer `y = x·Wᵀ (+ b) (+ scale · dropout(x)·Aᵀ·Bᵀ)`.
pub struct Linear {
    /// The GGUF tensor name without `.weight`, e.g. `blk.3.attn_q`.
    pub name: String,
    pub weight: BaseWeight,
    pub bias: Option<Tensor>,
    pub lora: Option<Lora>,
}

impl Linear {
    pub fn new(name: impl Into<String>, weight: BaseWeight, bias: Option<Tensor>) -> Self {
        Self {
            name: name.into(),
            weight,
            bias,
            lora: None,
        }
    }

    /// (out, in)
    pub fn dims(&self) -> (usize, usize) {
        self.weight.dims()
    }

    /// `x` is (..., in); the result is (..., out).
    pub fn forward(&self, x: &Tensor, ctx: &ForwardCtx) -> Result<Tensor> {
        let (n_out, n_in) = self.dims();
        let mut out_dims = x.dims().to_vec();
        let m = x.elem_count() / n_in;
        *out_dims.last_mut().expect("rank >= 1") = n_out;
        let x = x.reshape((m, n_in))?;
        if let Some(l) = &self.lora {
            // Without dropout, on the CPU: one fused op that keeps only x for its backward.
            let dropout = ctx.dropout_seed.is_some() && l.dropout > 0.0;
            if !dropout && x.device().is_cpu() {
                let op = crate::fused::LoraMatMul {
                    w: self.weight.clone(),
                    mode: ctx.quant,
                    scale: l.scale,
                };
                let mut y = x
                    .contiguous()?
                    .apply_op3(l.a.as_tensor(), l.b.as_tensor(), op)?;
                if let Some(b) = &self.bias {
                    y = y.broadcast_add(b)?;
                }
                return y.reshape(out_dims);
            }
        }
        let mut y = self.weight.matmul(&x, ctx.quant)?;
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        if let Some(l) = &self.lora {
            let seed = ctx
                .dropout_seed
                .map(|s| rng::mix(s, rng::hash_str(&self.name)));
            y = (y + l.delta(&x, seed)?)?;
        }
        y.reshape(out_dims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lora::{Lora, LoraConfig};
    use crate::rng::Rng;
    use candle_core::{Device, Var};

    fn rand(shape: (usize, usize), seed: u64) -> Tensor {
        let mut r = Rng::new(seed);
        let v: Vec<f32> = (0..shape.0 * shape.1)
            .map(|_| r.uniform(-1.0, 1.0))
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn quantized_matmul_backward_is_dy_times_dequantized_w() {
        let (m, k, n) = (16, 64, 96);
        let w = rand((n, k), 1);
        let q = QTensor::quantize(&w, GgmlDType::Q4_0).unwrap();
        let wq = q.dequantize(&Device::Cpu).unwrap();
        let lin = Linear::new(
            "blk.0.attn_q",
            BaseWeight::from_qtensor(q, false).unwrap(),
            None,
        );
        let dense = Linear::new("blk.0.attn_q", BaseWeight::Dense(wq.clone()), None);
        let r = rand((m, n), 3);
        for mode in [QuantForward::Dequant, QuantForward::Kernel] {
            let x = Var::from_tensor(&rand((m, k), 2)).unwrap();
            let ctx = ForwardCtx {
                dropout_seed: None,
                quant: mode,
            };
            let y = lin.forward(x.as_tensor(), &ctx).unwrap();
            let y_ref = x.as_tensor().matmul(&wq.t().unwrap()).unwrap();
            // the kernel quantizes x to 8 bits, hence the looser bound
            let tol = if mode == QuantForward::Kernel {
                0.1
            } else {
                1e-4
            };
            assert!(max_diff(&y, &y_ref) < tol, "{mode:?}");
            let g = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gx = g.get(x.as_tensor()).expect("x has a gradient");
            assert!(max_diff(gx, &r.matmul(&wq).unwrap()) < 1e-4, "{mode:?}");
            // same through the dense weight
            let g2 = (dense.forward(x.as_tensor(), &ctx).unwrap() * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            assert!(max_diff(gx, g2.get(x.as_tensor()).unwrap()) < 1e-4);
        }
    }

    #[test]
    fn lora_starts_as_a_no_op_and_has_the_right_gradients() {
        let (m, k, n) = (8, 32, 24);
        let cfg = LoraConfig {
            rank: 4,
            alpha: 8.0,
            ..LoraConfig::default()
        };
        let mut lin = Linear::new(
            "blk.1.ffn_up",
            BaseWeight::Dense(rand((n, k), 5)),
            Some(rand((1, n), 6).squeeze(0).unwrap()),
        );
        let x = rand((m, k), 7);
        let ctx = ForwardCtx::default();
        let base = lin.forward(&x, &ctx).unwrap();
        lin.lora = Some(Lora::new(k, n, &cfg, &mut Rng::new(1), &Device::Cpu).unwrap());
        assert_eq!(
            max_diff(&base, &lin.forward(&x, &ctx).unwrap()),
            0.0,
            "B = 0 at init"
        );
        let l = lin.lora.as_ref().unwrap();
        let a =
            l.a.as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
        let bound = 1.0 / (k as f32).sqrt();
        assert!(a.iter().all(|v| v.abs() <= bound) && a.iter().any(|v| v.abs() > bound / 2.0));
        assert_eq!(l.scale, 2.0);
        // with B set, y = base + s·x·Aᵀ·Bᵀ, and dL/dB = s·dyᵀ·(x·Aᵀ)
        l.b.set(&rand((n, 4), 8)).unwrap();
        let y = lin.forward(&x, &ctx).unwrap();
        let xa = x.matmul(&l.a.as_tensor().t().unwrap()).unwrap();
        let want =
            (&base + (xa.matmul(&l.b.as_tensor().t().unwrap()).unwrap() * 2.0).unwrap()).unwrap();
        assert!(max_diff(&y, &want) < 1e-5);
        let r = rand((m, n), 9);
        let g = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = g.get(l.b.as_tensor()).unwrap();
        assert!(max_diff(gb, &(r.t().unwrap().matmul(&xa).unwrap() * 2.0).unwrap()) < 1e-4);
        let rs = LoraConfig {
            rslora: true,
            ..cfg
        };
        assert_eq!(rs.scale(), 4.0);
    }
}
