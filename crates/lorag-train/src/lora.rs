//! LoRA: `W' = W + scale · B·A`, A (r, in) random (kaiming-uniform as PEFT does), B (out, r) zero
//! at init, so a fresh adapter changes nothing. scale = alpha/r, or alpha/√r with rsLoRA.

use crate::rng::Rng;
use candle_core::{DType, Device, Result, Tensor, Var};
use serde::{Deserialize, Serialize};

/// Adapter hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f32,
    /// Dropout on the adapter's input while training (0 disables).
    pub dropout: f32,
    /// rsLoRA: scale alpha/√r instead of alpha/r.
    pub rslora: bool,
    /// GGUF names of the target linear layers (`attn_q`, `ffn_up`, ...); empty: every linear
    /// layer of the architecture.
    pub targets: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            rslora: false,
            targets: Vec::new(),
        }
    }
}

impl LoraConfig {
    pub fn scale(&self) -> f64 {
        let r = self.rank as f64;
        if self.rslora {
            self.alpha as f64 / r.sqrt()
        } else {
            self.alpha as f64 / r
        }
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.rank == 0 {
            return Err("LoRA rank must be at least 1".into());
        }
        if !self.alpha.is_finite() || self.alpha <= 0.0 {
            return Err(format!(
                "LoRA alpha must be a positive number, got {}",
                self.alpha
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!(
                "LoRA dropout must be in [0, 1), got {}",
                self.dropout
            ));
        }
        Ok(())
    }
}

/// One adapter on one linear layer.
pub struct Lora {
    /// (r, in)
    pub a: Var,
    /// (out, r)
    pub b: Var,
    pub scale: f64,
    pub dropout: f32,
}

impl Lora {
    /// A fresh adapter: A ~ U(-1/√in, 1/√in) (PEFT's `kaiming_uniform_(a=√5)`), B = 0.
    pub fn new(
        n_in: usize,
        n_out: usize,
        cfg: &LoraConfig,
        rng: &mut Rng,
        dev: &Device,
    ) -> Result<Self> {
        let bound = 1.0 / (n_in as f32).sqrt();
        let a: Vec<f32> = (0..cfg.rank * n_in)
            .map(|_| rng.uniform(-bound, bound))
            .collect();
        Ok(Self {
            a: Var::from_tensor(&Tensor::from_vec(a, (cfg.rank, n_in), dev)?)?,
            b: Var::zeros((n_out, cfg.rank), DType::F32, dev)?,
            scale: cfg.scale(),
            dropout: cfg.dropout,
        })
    }

    pub fn rank(&self) -> usize {
        self.a.dims()[0]
    }

    /// `scale · dropout(x)·Aᵀ·Bᵀ` for x (m, in). `seed` draws the dropout mask (None: no dropout).
    pub fn delta(&self, x: &Tensor, seed: Option<u64>) -> Result<Tensor> {
        let x = match seed {
            Some(seed) if self.dropout > 0.0 => {
                let p = self.dropout;
                let keep = 1.0 / (1.0 - p);
                let mut rng = Rng::new(seed);
                let mask: Vec<f32> = (0..x.elem_count())
                    .map(|_| if rng.f32() < p { 0.0 } else { keep })
                    .collect();
                (x * Tensor::from_vec(mask, x.shape(), x.device())?)?
            }
            _ => x.clone(),
        };
        let h = x.matmul(&self.a.as_tensor().t()?)?;
        h.matmul(&self.b.as_tensor().t()?)? * self.scale
    }
}
