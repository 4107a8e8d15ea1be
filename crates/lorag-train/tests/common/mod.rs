//! Shared helpers of the integration tests: models, a chat text, and logit comparisons.
#![allow(dead_code)]

use lorag_gguf::tiny::{write_tiny_model, Arch, TinyConfig};
use lorag_llm::{Engine, LoadOptions, Message, SessionOptions};
use std::path::{Path, PathBuf};

pub fn smollm_path() -> PathBuf {
    lorag_models::test_model("smollm2-135m-instruct")
}

pub fn engine(path: &Path) -> Engine {
    Engine::load(path, &LoadOptions::default()).unwrap()
}

pub fn vocab_engine(path: &Path) -> Engine {
    Engine::load(
        path,
        &LoadOptions {
            vocab_only: true,
            ..LoadOptions::default()
        },
    )
    .unwrap()
}

/// A tiny random model of `arch` with the real tokenizer of `vocab` (a catalogue name).
pub fn tiny(arch: Arch, vocab: &str, dir: &Path) -> PathBuf {
    let out = dir.join(format!("tiny-{}.gguf", arch.name()));
    let cfg = TinyConfig {
        n_embd: 128,
        n_ff: 256,
        n_layer: 3,
        n_head: 4,
        n_head_kv: 2,
        ..TinyConfig::default()
    };
    write_tiny_model(arch, &lorag_models::test_model(vocab), &out, &cfg).unwrap();
    out
}

pub fn conversation() -> Vec<Message> {
    vec![
        Message::system("You are a careful assistant for a Swedish construction company. Answer briefly and cite the rule you rely on."),
        Message::user("Do I need a building permit to put up a small garden shed of twelve square metres next to my house?"),
        Message::assistant("Usually not. A detached outbuilding of up to 30 square metres next to a one- or two-family house is exempt from the permit requirement, but you must notify the neighbours if it is closer than 4.5 metres to the boundary, and the local plan may still forbid it."),
        Message::user("What about extending the house by fifteen square metres, for a new bedroom?"),
        Message::assistant("An extension of up to 15 square metres of gross area can be built without a permit, but it needs a notification to the building committee and a start decision before work begins. The facade may not face a street, and structural changes need a control plan."),
        Message::user("And if my neighbour objects to the extension, what happens then? Can they stop the work, and how long does an appeal usually take in practice?"),
        Message::assistant("A neighbour who is affected can appeal the decision to the county administrative board within three weeks of being notified. The appeal does not stop the work by itself, but you build at your own risk: if the decision is overturned you may have to restore the site. An appeal is usually decided within a few months."),
        Message::user("Thank you. Which documents should I prepare before I send the notification, so that the committee can decide quickly?"),
    ]
}

/// The conversation rendered with the model's template and tokenized as llama.cpp serves it,
/// cut to `max` tokens.
pub fn chat_tokens(e: &Engine, max: usize) -> Vec<i32> {
    let text = e
        .render_chat(&conversation(), None, true)
        .or_else(|_| e.render_chat(&conversation(), Some("chatml"), true))
        .unwrap();
    let mut t = e.tokenize(&text, true, true);
    t.truncate(max);
    t
}

pub fn llama_cpp_logits(e: &Engine, tokens: &[i32]) -> Vec<Vec<f32>> {
    llama_cpp_logits_batch(e, tokens, 512)
}

/// llama.cpp's logits with prompt batches of `n_batch` tokens (its kernels differ by batch size).
pub fn llama_cpp_logits_batch(e: &Engine, tokens: &[i32], n_batch: u32) -> Vec<Vec<f32>> {
    let mut s = e
        .session(&SessionOptions {
            n_ctx: 1024,
            n_batch,
            ..SessionOptions::default()
        })
        .unwrap();
    s.eval_logits(tokens).unwrap()
}

#[derive(Debug)]
pub struct Diff {
    pub positions: usize,
    pub top1_agree: f64,
    /// max |a - b| over all positions and tokens
    pub max_abs: f32,
    /// the largest (max - min) of a row of the reference
    pub range: f32,
    /// max over rows of max|a - b| / (max - min of the reference row)
    pub max_rel: f32,
    /// mean |a - b| over all positions and tokens
    pub mean_abs: f32,
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| {
            if x > bv {
                (i, x)
            } else {
                (bi, bv)
            }
        })
        .0
}

/// Compare `ours` against the reference `theirs`, row by row.
pub fn diff(theirs: &[Vec<f32>], ours: &[Vec<f32>]) -> Diff {
    assert_eq!(theirs.len(), ours.len());
    let (mut agree, mut max_abs, mut range, mut max_rel) = (0usize, 0f32, 0f32, 0f32);
    let (mut sum, mut n) = (0f64, 0usize);
    for (a, b) in theirs.iter().zip(ours) {
        assert_eq!(a.len(), b.len(), "vocabulary sizes");
        if argmax(a) == argmax(b) {
            agree += 1;
        }
        let lo = a.iter().cloned().fold(f32::INFINITY, f32::min);
        let hi = a.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let d = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        sum += a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs() as f64)
            .sum::<f64>();
        n += a.len();
        assert!(d.is_finite(), "non-finite logits");
        max_abs = max_abs.max(d);
        range = range.max(hi - lo);
        max_rel = max_rel.max(d / (hi - lo));
    }
    Diff {
        positions: theirs.len(),
        top1_agree: agree as f64 / theirs.len() as f64,
        max_abs,
        range,
        max_rel,
        mean_abs: (sum / n.max(1) as f64) as f32,
    }
}
