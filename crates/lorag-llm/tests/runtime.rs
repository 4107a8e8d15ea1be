//! The runtime on the real SmolLM2 GGUF: determinism, streaming, stops, context limits, prefix
//! reuse, and LoRA adapters (several at once, swapped without reloading).

use lorag_gguf::tiny::write_random_lora;
use lorag_llm::{
    Engine, Error, FinishReason, LoadOptions, Message, SamplingParams, Session, SessionOptions,
};
use std::sync::{Arc, OnceLock};

fn smollm() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        Engine::load(
            lorag_models::test_model("smollm2-135m-instruct"),
            &LoadOptions::default(),
        )
        .unwrap()
    })
}

fn session(n_ctx: u32) -> Session {
    smollm()
        .session(&SessionOptions {
            n_ctx,
            ..SessionOptions::default()
        })
        .unwrap()
}

fn chat_prompt(s: &Session, system: Option<&str>, user: &str) -> String {
    let mut m = Vec::new();
    if let Some(sys) = system {
        m.push(Message::system(sys));
    }
    m.push(Message::user(user));
    s.render(&m).unwrap()
}

#[test]
fn greedy_is_deterministic_and_fluent() {
    let mut s = session(1024);
    let p = chat_prompt(&s, None, "What is a building permit?");
    assert!(
        p.contains("<|im_start|>user\nWhat is a building permit?<|im_end|>"),
        "{p}"
    );
    let mut streamed = String::new();
    let a = s
        .generate(&p, &SamplingParams::greedy(48), &mut |t| {
            streamed.push_str(t)
        })
        .unwrap();
    let b = session(1024)
        .generate(&p, &SamplingParams::greedy(48), &mut |_| {})
        .unwrap();
    assert_eq!(a.text, b.text);
    assert_eq!(streamed, a.text, "streamed text is the text");
    let words = a.text.split_whitespace().count();
    assert!(words >= 20, "fluent text expected: {:?}", a.text);
    assert!(
        a.text.to_lowercase().contains("build"),
        "on topic: {:?}",
        a.text
    );
    assert_eq!(a.finish_reason, FinishReason::Length);
    assert_eq!(a.completion_tokens, 48);
}

#[test]
fn seeded_sampling_repeats_and_seeds_differ() {
    let p = chat_prompt(&session(512), None, "Write a short poem about the sea.");
    let params = |seed| SamplingParams {
        temperature: 1.0,
        seed: Some(seed),
        max_tokens: 32,
        ..SamplingParams::default()
    };
    let a = session(512).generate(&p, &params(7), &mut |_| {}).unwrap();
    let b = session(512).generate(&p, &params(7), &mut |_| {}).unwrap();
    let c = session(512).generate(&p, &params(8), &mut |_| {}).unwrap();
    assert_eq!(a.text, b.text);
    assert_ne!(a.text, c.text);
}

#[test]
fn stop_strings_and_eos_are_reported() {
    let mut s = session(512);
    let p = chat_prompt(
        &s,
        None,
        "Count from one to ten in words, separated by commas.",
    );
    let full = s
        .generate(&p, &SamplingParams::greedy(64), &mut |_| {})
        .unwrap();
    // Stop on the fourth word of the full answer.
    let word = full
        .text
        .split_whitespace()
        .nth(3)
        .expect("a few words")
        .to_string();
    let stop = word.as_str();
    let mut params = SamplingParams::greedy(64);
    params.stop = vec![stop.into()];
    let cut = s.generate(&p, &params, &mut |_| {}).unwrap();
    assert_eq!(cut.finish_reason, FinishReason::StopString);
    assert_eq!(cut.text, full.text[..full.text.find(stop).unwrap()]);

    let p = chat_prompt(&s, None, "What is the capital of France?");
    let g = s
        .generate(&p, &SamplingParams::greedy(64), &mut |_| {})
        .unwrap();
    assert_eq!(g.finish_reason, FinishReason::Stop, "{:?}", g.text);
    assert!(g.text.contains("Paris"), "{:?}", g.text);
    assert!(g.completion_tokens < 64);
}

#[test]
fn context_overflow_is_an_error_before_generation() {
    let mut s = session(128);
    let n_ctx = s.n_ctx(); // llama.cpp rounds the context up to its padding
    assert!(n_ctx >= 128);
    let long = "word ".repeat(n_ctx + 100);
    let p = chat_prompt(&s, None, &long);
    match s.generate(&p, &SamplingParams::greedy(8), &mut |_| {
        panic!("no text may be produced")
    }) {
        Err(Error::ContextOverflow { prompt, n_ctx: n }) => {
            assert!(prompt > n_ctx);
            assert_eq!(n, n_ctx);
        }
        other => panic!("expected ContextOverflow, got {other:?}"),
    }
    // The session is still usable.
    let p = chat_prompt(&s, None, "Hi");
    s.generate(&p, &SamplingParams::greedy(4), &mut |_| {})
        .unwrap();
    // Generation that reaches the end of the context stops there, with its reason.
    let p = chat_prompt(&s, None, &"word ".repeat(n_ctx - 40));
    let g = s
        .generate(&p, &SamplingParams::greedy(500), &mut |_| {})
        .unwrap();
    assert!(
        matches!(
            g.finish_reason,
            FinishReason::ContextFull | FinishReason::Stop
        ),
        "{g:?}"
    );
    assert!(g.prompt_tokens + g.completion_tokens <= n_ctx);
}

#[test]
fn repeated_system_prompt_reuses_the_kv_cache_and_changes_nothing() {
    let system = "You are a careful assistant for a construction company. ".repeat(20);
    let mut warm = session(2048);
    let p1 = chat_prompt(&warm, Some(&system), "What is concrete?");
    let p2 = chat_prompt(&warm, Some(&system), "What is a beam?");
    let g1 = warm
        .generate(&p1, &SamplingParams::greedy(16), &mut |_| {})
        .unwrap();
    assert_eq!(g1.cached_tokens, 0);
    let g2 = warm
        .generate(&p2, &SamplingParams::greedy(16), &mut |_| {})
        .unwrap();
    assert!(
        g2.cached_tokens > 200,
        "system prompt reused: {}",
        g2.cached_tokens
    );
    // Same answer as a cold session.
    let cold = session(2048)
        .generate(&p2, &SamplingParams::greedy(16), &mut |_| {})
        .unwrap();
    assert_eq!(g2.text, cold.text);
    // The identical prompt again: all but the last token reused, same answer.
    let g3 = warm
        .generate(&p2, &SamplingParams::greedy(16), &mut |_| {})
        .unwrap();
    assert_eq!(g3.cached_tokens, g3.prompt_tokens - 1);
    assert_eq!(g3.text, cold.text);
}

fn lora_targets(e: &Engine) -> Vec<(String, u64, u64)> {
    let g = e.gguf();
    (0..30)
        .flat_map(|l| ["attn_q", "attn_v", "ffn_down"].map(|n| format!("blk.{l}.{n}")))
        .map(|name| {
            let t = g.tensor(&format!("{name}.weight")).unwrap();
            (name, t.dims[0], t.dims[1])
        })
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn lora_adapters_apply_stack_and_swap_without_reload() {
    let e = smollm();
    let dir = tempfile::tempdir().unwrap();
    let t = lora_targets(e);
    let (pa, pb, pneg, pzero) = (
        dir.path().join("a.gguf"),
        dir.path().join("b.gguf"),
        dir.path().join("a_neg.gguf"),
        dir.path().join("zero.gguf"),
    );
    write_random_lora("llama", &t, 8, 16.0, 1, 0.05, &pa).unwrap();
    write_random_lora("llama", &t, 8, 16.0, 2, 0.05, &pb).unwrap();
    write_random_lora("llama", &t, 8, 16.0, 1, -0.05, &pneg).unwrap();
    write_random_lora("llama", &t, 8, 16.0, 3, 0.0, &pzero).unwrap();
    let (a, b, neg, zero) = (
        e.load_lora(&pa).unwrap(),
        e.load_lora(&pb).unwrap(),
        e.load_lora(&pneg).unwrap(),
        e.load_lora(&pzero).unwrap(),
    );
    let mut s = session(256);
    let toks = s.tokenize(&chat_prompt(&s, None, "Tell me about bridges."));
    let last = |s: &mut Session| s.eval_logits(&toks).unwrap().pop().unwrap();
    let base = last(&mut s);
    s.set_adapters(&[(a.clone(), 1.0)]).unwrap();
    let with_a = last(&mut s);
    assert!(
        max_diff(&base, &with_a) > 0.05,
        "adapter A changes the logits"
    );
    s.set_adapters(&[(b.clone(), 1.0)]).unwrap();
    let with_b = last(&mut s);
    assert!(max_diff(&with_a, &with_b) > 0.05);
    // Swap back: exactly A again, with no reload of the base.
    s.set_adapters(&[(a.clone(), 1.0)]).unwrap();
    assert!(max_diff(&with_a, &last(&mut s)) < 1e-4);
    // Scale 0 and a zero-B adapter are the base.
    s.set_adapters(&[(a.clone(), 0.0)]).unwrap();
    assert!(max_diff(&base, &last(&mut s)) < 1e-3);
    s.set_adapters(&[(zero.clone(), 1.0)]).unwrap();
    assert!(max_diff(&base, &last(&mut s)) < 1e-3);
    // Two adapters at once: A and its negation cancel; A and B differ from either alone.
    s.set_adapters(&[(a.clone(), 1.0), (neg.clone(), 1.0)])
        .unwrap();
    assert!(max_diff(&base, &last(&mut s)) < 2e-2);
    s.set_adapters(&[(a.clone(), 1.0), (b.clone(), 1.0)])
        .unwrap();
    let ab = last(&mut s);
    assert!(max_diff(&ab, &with_a) > 0.05 && max_diff(&ab, &with_b) > 0.05);
    s.set_adapters(&[]).unwrap();
    assert!(max_diff(&base, &last(&mut s)) < 1e-4);
    // Generation works with an adapter set.
    s.set_adapters(&[(Arc::clone(&a), 0.5)]).unwrap();
    let p = chat_prompt(&s, None, "Hello");
    s.generate(&p, &SamplingParams::greedy(8), &mut |_| {})
        .unwrap();
}

#[test]
fn bad_adapters_are_clear_errors() {
    let e = smollm();
    let dir = tempfile::tempdir().unwrap();
    let model_as_lora = e.load_lora(e.path()).err().unwrap().to_string();
    assert!(
        model_as_lora.contains("not a LoRA adapter"),
        "{model_as_lora}"
    );
    let p = dir.path().join("phi.gguf");
    write_random_lora(
        "phi3",
        &[("blk.0.attn_qkv".into(), 576, 1152)],
        4,
        8.0,
        1,
        0.1,
        &p,
    )
    .unwrap();
    let wrong_arch = e.load_lora(&p).err().unwrap().to_string();
    assert!(wrong_arch.contains("phi3"), "{wrong_arch}");
    let p = dir.path().join("shape.gguf");
    write_random_lora(
        "llama",
        &[("blk.0.attn_q".into(), 100, 576)],
        4,
        8.0,
        1,
        0.1,
        &p,
    )
    .unwrap();
    let bad_shape = e.load_lora(&p).err().unwrap().to_string();
    assert!(bad_shape.contains("shape.gguf"), "{bad_shape}");
}

#[test]
fn bad_model_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = Engine::load(dir.path().join("nope.gguf"), &LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(missing.contains("nope.gguf"), "{missing}");
    let text = dir.path().join("text.gguf");
    std::fs::write(&text, "not a model at all").unwrap();
    let e = Engine::load(&text, &LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a GGUF file"), "{e}");
    let real = std::fs::read(smollm().path()).unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &real[..real.len() / 3]).unwrap();
    let e = Engine::load(&cut, &LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("truncated"), "{e}");
}
