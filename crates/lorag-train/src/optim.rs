//! AdamW over the adapter `Var`s, the learning-rate schedule and global-norm gradient clipping.
//! Ours rather than candle_nn's AdamW because a checkpoint must hold the moments.

use candle_core::{Result, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Warmup, then cosine decay to `min_lr_ratio · lr`.
    #[default]
    Cosine,
    /// Warmup, then linear decay to `min_lr_ratio · lr`.
    Linear,
    /// Warmup, then constant.
    Constant,
}

/// The learning rate of optimizer step `step` (0-based) of `total`.
pub fn lr_at(
    step: usize,
    total: usize,
    warmup: usize,
    peak: f64,
    min_ratio: f64,
    s: Schedule,
) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1);
    let progress = ((step - warmup) as f64 / span as f64).min(1.0);
    let min = peak * min_ratio;
    match s {
        Schedule::Cosine => {
            min + (peak - min) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
        Schedule::Linear => peak - (peak - min) * progress,
        Schedule::Constant => peak,
    }
}

/// Scale `grads` so that their global L2 norm is at most `max_norm` (0: no clipping). Returns the
/// norm before clipping.
pub fn clip_grad_norm(grads: &mut [Tensor], max_norm: f64) -> Result<f64> {
    let mut sq = 0f64;
    for g in grads.iter() {
        sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    }
    let norm = sq.sqrt();
    if max_norm > 0.0 && norm > max_norm && norm.is_finite() {
        let k = max_norm / (norm + 1e-6);
        for g in grads.iter_mut() {
            *g = (&*g * k)?;
        }
    }
    Ok(norm)
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWParams {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWParams {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// AdamW with bias correction and decoupled weight decay (Loshchilov & Hutter).
pub struct AdamW {
    pub p: AdamWParams,
    /// Steps taken.
    pub t: usize,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl AdamW {
    pub fn new(vars: &[Var], p: AdamWParams) -> Result<Self> {
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        Ok(Self {
            p,
            t: 0,
            m: vars.iter().map(zeros).collect::<Result<_>>()?,
            v: vars.iter().map(zeros).collect::<Result<_>>()?,
        })
    }

    pub fn step(&mut self, vars: &[Var], grads: &[Tensor], lr: f64) -> Result<()> {
        self.t += 1;
        let AdamWParams {
            beta1: b1,
            beta2: b2,
            eps,
            weight_decay: wd,
        } = self.p;
        let c1 = 1.0 - b1.powi(self.t as i32);
        let c2 = 1.0 - b2.powi(self.t as i32);
        for (i, (var, g)) in vars.iter().zip(grads).enumerate() {
            let m = ((&self.m[i] * b1)? + (g * (1.0 - b1))?)?;
            let v = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let update = ((&m / c1)? / ((&v / c2)?.sqrt()? + eps)?)?;
            let theta = var.as_tensor();
            let next = ((theta * (1.0 - lr * wd))? - (update * lr)?)?;
            var.set(&next)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// The moments by variable name (`m.<name>`, `v.<name>`), for a checkpoint.
    pub fn state(&self, names: &[String]) -> HashMap<String, Tensor> {
        let mut s = HashMap::new();
        for (i, n) in names.iter().enumerate() {
            s.insert(format!("m.{n}"), self.m[i].clone());
            s.insert(format!("v.{n}"), self.v[i].clone());
        }
        s
    }

    pub fn load_state(
        &mut self,
        names: &[String],
        s: &HashMap<String, Tensor>,
        t: usize,
    ) -> std::result::Result<(), String> {
        for (i, n) in names.iter().enumerate() {
            for (slot, key) in [
                (&mut self.m[i], format!("m.{n}")),
                (&mut self.v[i], format!("v.{n}")),
            ] {
                let x = s
                    .get(&key)
                    .ok_or_else(|| format!("optimizer state has no {key}"))?;
                if x.shape() != slot.shape() {
                    return Err(format!(
                        "optimizer state {key} has shape {:?}, expected {:?}",
                        x.shape(),
                        slot.shape()
                    ));
                }
                *slot = x.clone();
            }
        }
        self.t = t;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn schedule_shapes() {
        let lr = |s, sch| lr_at(s, 100, 10, 1.0, 0.1, sch);
        assert!((lr(0, Schedule::Cosine) - 0.1).abs() < 1e-12);
        assert!((lr(9, Schedule::Cosine) - 1.0).abs() < 1e-12);
        assert!((lr(10, Schedule::Cosine) - 1.0).abs() < 1e-12);
        assert!((lr(55, Schedule::Cosine) - 0.55).abs() < 1e-9);
        assert!((lr(100, Schedule::Cosine) - 0.1).abs() < 1e-12);
        assert!((lr(55, Schedule::Linear) - 0.55).abs() < 1e-9);
        assert!((lr(99, Schedule::Constant) - 1.0).abs() < 1e-12);
        let mut prev = f64::INFINITY;
        for s in 10..100 {
            let x = lr(s, Schedule::Cosine);
            assert!(x <= prev);
            prev = x;
        }
    }

    #[test]
    fn clipping_bounds_the_global_norm() {
        let dev = Device::Cpu;
        let mut g = vec![
            Tensor::new(&[3f32, 0.0], &dev).unwrap(),
            Tensor::new(&[4f32], &dev).unwrap(),
        ];
        let n = clip_grad_norm(&mut g, 1.0).unwrap();
        assert!((n - 5.0).abs() < 1e-6);
        assert!((clip_grad_norm(&mut g, 0.0).unwrap() - 1.0).abs() < 1e-5);
        assert!((g[0].to_vec1::<f32>().unwrap()[0] - 0.6).abs() < 1e-5);
    }

    #[test]
    fn adamw_minimises_a_quadratic_and_matches_the_formula() {
        let dev = Device::Cpu;
        let x = Var::new(&[2f32, -3.0], &dev).unwrap();
        let mut opt = AdamW::new(std::slice::from_ref(&x), AdamWParams::default()).unwrap();
        // First step: m̂ = g, v̂ = g², so each coordinate moves by lr·sign(g).
        let g = (x.as_tensor() * 2.0).unwrap();
        opt.step(std::slice::from_ref(&x), &[g], 0.1).unwrap();
        let v = x.to_vec1::<f32>().unwrap();
        assert!(
            (v[0] - 1.9).abs() < 1e-5 && (v[1] + 2.9).abs() < 1e-5,
            "{v:?}"
        );
        for _ in 0..300 {
            let g = (x.as_tensor() * 2.0).unwrap();
            opt.step(std::slice::from_ref(&x), &[g], 0.05).unwrap();
        }
        let v = x.to_vec1::<f32>().unwrap();
        assert!(v.iter().all(|a| a.abs() < 0.05), "{v:?}");
    }
}
