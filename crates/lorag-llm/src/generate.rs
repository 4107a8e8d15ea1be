//! A session: one llama.cpp context, a prefix cache, adapters, and the generation loop.

use crate::context::{LoraAdapter, RawContext};
use crate::{Engine, Error, Generator, Message, Result, SamplingParams};
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Context size in tokens; 0: the model's training context, capped at 4096.
    pub n_ctx: u32,
    /// Prompt tokens per llama_decode call.
    pub n_batch: u32,
    pub n_threads: i32,
    /// A chat template name or source that overrides the model's own.
    pub chat_template: Option<String>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            n_ctx: 0,
            n_batch: 512,
            n_threads: crate::default_threads(),
            chat_template: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its turn (an end-of-generation token).
    Stop,
    /// A stop string appeared (it is not part of the text).
    StopString,
    /// `max_tokens` were generated.
    Length,
    /// The context filled up before the model stopped.
    ContextFull,
    /// The caller stopped it (a client disconnected, a Stop button).
    Cancelled,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::StopString => "stop_string",
            FinishReason::Length => "length",
            FinishReason::ContextFull => "context_full",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

/// The result of one generation, with its timings.
#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    pub text: String,
    pub finish_reason: FinishReason,
    pub prompt_tokens: usize,
    /// Prompt tokens whose KV entries were reused from the previous call (not evaluated again).
    pub cached_tokens: usize,
    pub completion_tokens: usize,
    /// Wall time from the call to the first token's logits (evaluating the uncached prompt).
    pub prompt_ms: f64,
    pub decode_ms: f64,
    /// Evaluated (uncached) prompt tokens per second.
    pub prompt_tok_per_s: f64,
    pub decode_tok_per_s: f64,
    /// Time spent waiting for a slot (batched serving; 0 for a session).
    #[serde(skip_serializing_if = "is_zero")]
    pub queued_ms: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

pub struct Session {
    // Field order is drop order: the context goes before the adapters and the model.
    ctx: RawContext,
    adapters: Vec<(Arc<LoraAdapter>, f32)>,
    model: Arc<LlamaModel>,
    chat_template: Option<String>,
    source_template: Option<String>,
    model_path: String,
    /// Tokens whose KV entries sit in the context, at positions 0.. (sequence 0).
    cached: Vec<i32>,
    candidates: LlamaTokenDataArray,
}

impl Session {
    pub(crate) fn new(engine: &Engine, opts: &SessionOptions) -> Result<Self> {
        let n_ctx = if opts.n_ctx == 0 {
            engine.n_ctx_train().clamp(1, 4096)
        } else {
            opts.n_ctx
        };
        let ctx = RawContext::new(
            &engine.model,
            n_ctx,
            opts.n_batch.clamp(1, n_ctx),
            opts.n_threads,
        )?;
        Ok(Self {
            ctx,
            adapters: Vec::new(),
            model: engine.model.clone(),
            chat_template: opts.chat_template.clone(),
            source_template: engine.chat_template(),
            model_path: engine.path().display().to_string(),
            cached: Vec::new(),
            candidates: LlamaTokenDataArray::new(Vec::new(), false),
        })
    }

    pub fn n_ctx(&self) -> usize {
        self.ctx.n_ctx as usize
    }

    /// Set the active LoRA adapters (replacing the previous set) with their scales. The base model
    /// is not reloaded. The KV cache is dropped when the set changes.
    pub fn set_adapters(&mut self, adapters: &[(Arc<LoraAdapter>, f32)]) -> Result<()> {
        let same = adapters.len() == self.adapters.len()
            && adapters
                .iter()
                .zip(&self.adapters)
                .all(|((a, s), (b, t))| Arc::ptr_eq(a, b) && s == t);
        if same {
            return Ok(());
        }
        let refs: Vec<(&LoraAdapter, f32)> = adapters.iter().map(|(a, s)| (&**a, *s)).collect();
        self.ctx.set_adapters(&refs)?;
        self.adapters = adapters.to_vec();
        self.ctx.clear();
        self.cached.clear();
        Ok(())
    }

    /// The text of every control token of the vocabulary (`<|im_start|>`, `<|end|>`, ...), longest
    /// first: text from documents must never contain them, or it could open a turn of its own.
    pub fn control_token_texts(&self) -> Vec<String> {
        Self::control_texts(&self.model)
    }

    pub(crate) fn control_texts(model: &LlamaModel) -> Vec<String> {
        let vocab = model.vocab();
        let mut v: Vec<String> = vocab
            .tokens()
            .filter(|t| vocab.is_control(*t))
            .map(|t| String::from_utf8_lossy(&vocab.token_to_piece(t, true, None)).into_owned())
            .filter(|s| s.chars().count() > 1)
            .collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.len()));
        v.dedup();
        v
    }

    /// Forget the KV cache.
    pub fn reset(&mut self) {
        self.ctx.clear();
        self.cached.clear();
    }

    pub fn tokenize(&self, text: &str) -> Vec<i32> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), true, true)
            .into_iter()
            .map(|t| t.0)
            .collect()
    }

    /// Render `messages` with the chat template (the session's override, else the model's).
    pub fn render(&self, messages: &[Message]) -> Result<String> {
        let source = match (&self.chat_template, &self.source_template) {
            (Some(t), _) | (None, Some(t)) => t.clone(),
            (None, None) => {
                return Err(Error::NoChatTemplate {
                    model: self.model_path.clone(),
                })
            }
        };
        crate::chat::render_source(&self.model, &source, messages, true)
    }

    /// Evaluate `tokens` into the context, reusing the longest cached prefix. Returns how many
    /// tokens were reused. Leaves the logits of the last token ready.
    fn feed(&mut self, tokens: &[i32]) -> Result<usize> {
        let common = self
            .cached
            .iter()
            .zip(tokens)
            .take_while(|(a, b)| a == b)
            .count();
        // Always evaluate at least the last token, so that its logits are fresh.
        let mut reuse = common.min(tokens.len().saturating_sub(1));
        if reuse < self.cached.len() && !self.ctx.truncate(reuse) {
            self.ctx.clear();
            reuse = 0;
        }
        self.cached.truncate(reuse);
        self.ctx
            .decode(&tokens[reuse..], reuse, None)
            .inspect_err(|_| {
                // A failed decode leaves the cache in an unknown state.
                self.ctx.clear();
                self.cached.clear();
            })?;
        self.cached.extend_from_slice(&tokens[reuse..]);
        Ok(reuse)
    }

    /// Logits at every position of `tokens` (evaluated from an empty cache), for parity tests.
    pub fn eval_logits(&mut self, tokens: &[i32]) -> Result<Vec<Vec<f32>>> {
        if tokens.len() > self.n_ctx() {
            return Err(Error::ContextOverflow {
                prompt: tokens.len(),
                n_ctx: self.n_ctx(),
            });
        }
        self.reset();
        let mut out = vec![Vec::new(); tokens.len()];
        self.ctx
            .decode(tokens, 0, Some(&mut |i, l: &[f32]| out[i] = l.to_vec()))?;
        self.cached.extend_from_slice(tokens);
        Ok(out)
    }

    /// Generate from a rendered prompt (text with special markers, tokenized with BOS as the model wants).
    pub fn generate(
        &mut self,
        prompt: &str,
        params: &SamplingParams,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation> {
        let tokens = self.tokenize(prompt);
        self.generate_tokens(&tokens, params, &mut |t| {
            on_text(t);
            true
        })
    }

    /// Generate from prompt tokens; `on_text` returns false to stop (`FinishReason::Cancelled`).
    pub fn generate_tokens(
        &mut self,
        prompt: &[i32],
        params: &SamplingParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        params.validate()?;
        if prompt.is_empty() {
            return Err(Error::Param("the prompt is empty".into()));
        }
        let n_ctx = self.n_ctx();
        if prompt.len() + 1 > n_ctx {
            return Err(Error::ContextOverflow {
                prompt: prompt.len(),
                n_ctx,
            });
        }
        let n_vocab = self.model.n_vocab();
        let mut sampler = params.chain(n_vocab);
        let tail = prompt
            .len()
            .saturating_sub(params.repeat_last_n.max(0) as usize);
        sampler.accept_many(prompt[tail..].iter().map(|&t| LlamaToken(t)));

        let t0 = Instant::now();
        let cached = self.feed(prompt)?;
        let prompt_ms = t0.elapsed().as_secs_f64() * 1e3;
        let t1 = Instant::now();

        let mut out = TextStream::new(params.stop.clone());
        let mut completion = 0usize;
        let mut go_on = true;
        let vocab = self.model.vocab();
        let finish = loop {
            let logits = self.ctx.logits_ith(-1);
            let arr = &mut self.candidates;
            arr.data.clear();
            arr.data.extend(
                logits
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| LlamaTokenData::new(LlamaToken(i as i32), l, 0.0)),
            );
            arr.sorted = false;
            arr.selected = None;
            arr.apply_sampler(&mut sampler);
            let token = arr
                .selected_token()
                .ok_or_else(|| Error::Context("the sampler selected no token".into()))?;
            sampler.accept(token);
            if vocab.is_eog(token) {
                break FinishReason::Stop;
            }
            completion += 1;
            let piece = vocab.token_to_piece(token, false, None);
            if out.push(&piece, &mut |t| go_on &= on_text(t)) {
                break FinishReason::StopString;
            }
            if !go_on {
                break FinishReason::Cancelled;
            }
            if completion >= params.max_tokens {
                break FinishReason::Length;
            }
            if self.cached.len() + 1 > n_ctx {
                break FinishReason::ContextFull;
            }
            let pos = self.cached.len();
            self.ctx.decode(&[token.0], pos, None).inspect_err(|_| {
                self.cached.clear();
            })?;
            self.cached.push(token.0);
        };
        let text = out.finish(
            &mut |t| {
                on_text(t);
            },
            finish == FinishReason::StopString,
        );
        let decode_ms = t1.elapsed().as_secs_f64() * 1e3;
        let evaluated = prompt.len() - cached;
        Ok(Generation {
            text,
            finish_reason: finish,
            prompt_tokens: prompt.len(),
            cached_tokens: cached,
            completion_tokens: completion,
            prompt_ms,
            decode_ms,
            prompt_tok_per_s: evaluated as f64 / (prompt_ms / 1e3).max(1e-9),
            decode_tok_per_s: completion as f64 / (decode_ms / 1e3).max(1e-9),
            queued_ms: 0.0,
        })
    }
}

impl Generator for Session {
    fn render(&self, messages: &[Message]) -> Result<String> {
        Session::render(self, messages)
    }
    fn control_token_texts(&self) -> Vec<String> {
        Session::control_token_texts(self)
    }
    fn stream(
        &mut self,
        prompt: &str,
        params: &SamplingParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let tokens = self.tokenize(prompt);
        self.generate_tokens(&tokens, params, on_text)
    }
    fn count_tokens(&self, text: &str) -> usize {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), false, false)
            .len()
    }
    fn context_size(&self) -> usize {
        self.n_ctx()
    }
}

/// Turns token bytes into streamed text: whole UTF-8 characters only, and never text that might
/// turn out to be the start of a stop string.
pub(crate) struct TextStream {
    stop: Vec<String>,
    pending: Vec<u8>,
    text: String,
    emitted: usize,
}

impl TextStream {
    pub(crate) fn new(stop: Vec<String>) -> Self {
        Self {
            stop,
            pending: Vec::new(),
            text: String::new(),
            emitted: 0,
        }
    }

    /// Add a token's bytes. Returns true when a stop string has appeared.
    pub(crate) fn push(&mut self, bytes: &[u8], on_text: &mut dyn FnMut(&str)) -> bool {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(s) => s.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            // Invalid bytes (not just an unfinished character): replace them.
            Err(_) => {
                let s = String::from_utf8_lossy(&self.pending).into_owned();
                self.pending = s.into_bytes();
                self.pending.len()
            }
        };
        let s = std::str::from_utf8(&self.pending[..valid]).expect("checked");
        // Search only where a new stop could start.
        let max_stop = self.stop.iter().map(String::len).max().unwrap_or(0);
        let search_from = self.text.len().saturating_sub(max_stop);
        self.text.push_str(s);
        self.pending.drain(..valid);
        let mut cut = None;
        for st in &self.stop {
            let from = self.text.floor_char_boundary(search_from);
            if let Some(i) = self.text[from..].find(st.as_str()) {
                cut = Some(cut.map_or(from + i, |c: usize| c.min(from + i)));
            }
        }
        if let Some(c) = cut {
            self.text.truncate(c);
            return true;
        }
        // Hold back a tail that is a prefix of some stop string.
        let mut hold = 0;
        for st in &self.stop {
            for k in (1..st.len().min(self.text.len() + 1)).rev() {
                if self.text.is_char_boundary(self.text.len() - k)
                    && st.starts_with(&self.text[self.text.len() - k..])
                {
                    hold = hold.max(k);
                    break;
                }
            }
        }
        let upto = self.text.len() - hold;
        if upto > self.emitted {
            on_text(&self.text[self.emitted..upto]);
            self.emitted = upto;
        }
        false
    }

    pub(crate) fn finish(mut self, on_text: &mut dyn FnMut(&str), stopped: bool) -> String {
        if !stopped && !self.pending.is_empty() {
            self.text.push_str(&String::from_utf8_lossy(&self.pending));
        }
        if self.text.len() > self.emitted {
            on_text(&self.text[self.emitted..]);
        }
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::TextStream;

    fn run(pieces: &[&[u8]], stop: &[&str]) -> (String, Vec<String>, bool) {
        let stop: Vec<String> = stop.iter().map(|s| s.to_string()).collect();
        let mut ts = TextStream::new(stop);
        let mut chunks = Vec::new();
        let mut stopped = false;
        for p in pieces {
            if ts.push(p, &mut |s| chunks.push(s.to_string())) {
                stopped = true;
                break;
            }
        }
        let text = ts.finish(&mut |s| chunks.push(s.to_string()), stopped);
        (text, chunks, stopped)
    }

    #[test]
    fn utf8_split_across_tokens_is_held_until_whole() {
        let e = "é".as_bytes();
        let (text, chunks, _) = run(&[b"caf", &e[..1], &e[1..], b"!"], &[]);
        assert_eq!(text, "café!");
        assert_eq!(chunks.concat(), "café!");
        assert!(chunks.iter().all(|c| !c.contains('\u{fffd}')));
    }

    #[test]
    fn stop_string_across_tokens_is_cut_and_never_streamed() {
        let (text, chunks, stopped) = run(
            &[b"Hello", b" wor", b"ld\nUs", b"er:", b" more"],
            &["\nUser:"],
        );
        assert!(stopped);
        assert_eq!(text, "Hello world");
        assert_eq!(chunks.concat(), "Hello world");
    }

    #[test]
    fn false_stop_prefix_is_released() {
        let (text, chunks, stopped) = run(&[b"a\nU", b"nits"], &["\nUser:"]);
        assert!(!stopped);
        assert_eq!(text, "a\nUnits");
        assert_eq!(chunks.concat(), "a\nUnits");
    }
}
