//! Sampling parameters, turned into a llama.cpp sampler chain.

use crate::{Error, Result};
use llama_cpp_2::sampling::LlamaSampler;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// 0 means greedy (argmax).
    pub temperature: f32,
    pub top_p: f32,
    /// 0 disables top-k.
    pub top_k: i32,
    /// 0 disables min-p.
    pub min_p: f32,
    /// 1 disables the repeat penalty.
    pub repeat_penalty: f32,
    /// How many recent tokens the repeat penalty looks at.
    pub repeat_last_n: i32,
    /// None: a seed from the clock.
    pub seed: Option<u32>,
    pub max_tokens: usize,
    /// Generation stops before the first occurrence of any of these; they are not part of the text.
    pub stop: Vec<String>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.7,
            top_p: 0.95,
            top_k: 40,
            min_p: 0.05,
            repeat_penalty: 1.1,
            repeat_last_n: 64,
            seed: None,
            max_tokens: 512,
            stop: Vec::new(),
        }
    }
}

impl SamplingParams {
    /// Greedy decoding, no penalties: what evaluations and benchmarks use.
    pub fn greedy(max_tokens: usize) -> Self {
        Self {
            temperature: 0.0,
            repeat_penalty: 1.0,
            max_tokens,
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Param(m));
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(format!(
                "temperature must be >= 0, got {}",
                self.temperature
            ));
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            return bad(format!("top-p must be in [0, 1], got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(format!("min-p must be in [0, 1], got {}", self.min_p));
        }
        if self.top_k < 0 {
            return bad(format!("top-k must be >= 0, got {}", self.top_k));
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return bad(format!(
                "repeat penalty must be > 0, got {}",
                self.repeat_penalty
            ));
        }
        if self.max_tokens == 0 {
            return bad("max tokens must be at least 1".into());
        }
        if self.stop.iter().any(String::is_empty) {
            return bad("a stop string is empty".into());
        }
        Ok(())
    }

    pub(crate) fn seed_value(&self) -> u32 {
        self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos() ^ d.as_secs() as u32)
                .unwrap_or(0)
        })
    }

    /// The chain, in llama.cpp's usual order: penalties, top-k, top-p, min-p, temperature, draw.
    pub(crate) fn chain(&self, n_vocab: i32) -> LlamaSampler {
        let mut s = Vec::new();
        if self.repeat_penalty != 1.0 {
            s.push(LlamaSampler::penalties(
                n_vocab,
                self.repeat_last_n,
                self.repeat_penalty,
                0.0,
                0.0,
            ));
        }
        if self.temperature <= 0.0 {
            s.push(LlamaSampler::greedy());
        } else {
            if self.top_k > 0 {
                s.push(LlamaSampler::top_k(self.top_k));
            }
            if self.top_p < 1.0 {
                s.push(LlamaSampler::top_p(self.top_p, 1));
            }
            if self.min_p > 0.0 {
                s.push(LlamaSampler::min_p(self.min_p, 1));
            }
            s.push(LlamaSampler::temp(self.temperature));
            s.push(LlamaSampler::dist(self.seed_value()));
        }
        LlamaSampler::chain_simple(s)
    }
}
