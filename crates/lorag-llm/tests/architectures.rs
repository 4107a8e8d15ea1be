//! The Phi-3 path (and the other families) proven without their weights: the real Phi-3 tokenizer
//! against llama.cpp's own test vectors, the Phi-3 chat template rendered exactly, and tiny
//! random-weight models of each architecture that load and generate in llama.cpp.

use lorag_gguf::tiny::{write_tiny_model, Arch, TinyConfig};
use lorag_llm::{Engine, FinishReason, LoadOptions, Message, SamplingParams, SessionOptions};
use std::path::Path;

fn vocab_only(name: &str) -> Engine {
    Engine::load(
        lorag_models::test_model(name),
        &LoadOptions {
            vocab_only: true,
            ..LoadOptions::default()
        },
    )
    .unwrap()
}

/// llama.cpp's tokenizer test format: inputs separated by a marker line; one line of ids each.
fn check_vectors(engine: &Engine, entry: &str, file: &str) -> usize {
    let inp =
        std::fs::read_to_string(lorag_models::test_file(entry, &format!("{file}.inp"))).unwrap();
    let out =
        std::fs::read_to_string(lorag_models::test_file(entry, &format!("{file}.out"))).unwrap();
    let inputs: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    let expected: Vec<&str> = out.lines().collect();
    let inputs = &inputs[..expected.len()];
    let mut failures = Vec::new();
    for (text, ids) in inputs.iter().zip(&expected) {
        let want: Vec<i32> = ids.split_whitespace().map(|t| t.parse().unwrap()).collect();
        let got = engine.tokenize(text, false, false);
        if got != want {
            failures.push(format!("{text:?}: want {want:?}, got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors differ:\n{}",
        failures.len(),
        expected.len(),
        failures.join("\n")
    );
    expected.len()
}

#[test]
fn phi3_tokenizer_matches_llama_cpp_test_vectors() {
    let e = vocab_only("phi3-vocab");
    assert_eq!(e.n_vocab(), 32064);
    let n = check_vectors(&e, "phi3-vocab", "ggml-vocab-phi-3.gguf");
    assert!(n >= 40, "{n} vectors");
}

#[test]
fn qwen2_tokenizer_matches_llama_cpp_test_vectors() {
    let e = vocab_only("qwen2-vocab");
    // llama.cpp ships 46 vectors for each vocab; a truncated file must not pass.
    let n = check_vectors(&e, "qwen2-vocab", "ggml-vocab-qwen2.gguf");
    assert!(n >= 40, "{n} vectors");
}

#[test]
fn phi3_chat_template_renders_exactly() {
    let e = vocab_only("phi3-vocab");
    let src = e
        .chat_template()
        .expect("the Phi-3 vocab carries its chat template");
    assert!(src.contains("<|end|>"));
    let chat = [
        Message::system("You are a helpful assistant."),
        Message::user("What is a permit?"),
        Message::assistant("A permission to build."),
        Message::user("Who issues it?"),
    ];
    let r = e.render_chat(&chat, None, true).unwrap();
    assert_eq!(
        r,
        "<|system|>\nYou are a helpful assistant.<|end|>\n<|user|>\nWhat is a permit?<|end|>\n<|assistant|>\nA permission to build.<|end|>\n<|user|>\nWho issues it?<|end|>\n<|assistant|>\n"
    );
    // The markers are single control tokens of the real vocab.
    let toks = e.tokenize("<|user|>\nHi<|end|>\n<|assistant|>\n", false, true);
    assert_eq!(toks[0], 32010, "<|user|>");
    assert!(toks.contains(&32007), "<|end|>");
    assert!(toks.contains(&32001), "<|assistant|>");
    assert!(e.is_eog(32007), "<|end|> ends a turn");
}

#[test]
fn a_model_without_a_template_is_a_clear_error() {
    let e = vocab_only("llama-spm-vocab");
    let err = e
        .render_chat(&[Message::user("hi")], None, true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no chat template"), "{err}");
    // ...and a named template works.
    let r = e
        .render_chat(&[Message::user("hi")], Some("chatml"), true)
        .unwrap();
    assert_eq!(r, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    let err = e
        .render_chat(&[Message::user("hi")], Some("no-such-template"), true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not one llama.cpp knows"), "{err}");
}

fn tiny(arch: Arch, vocab: &str, dir: &Path) -> Engine {
    let out = dir.join(format!("tiny-{}.gguf", arch.name()));
    write_tiny_model(
        arch,
        &lorag_models::test_model(vocab),
        &out,
        &TinyConfig::default(),
    )
    .unwrap();
    Engine::load(&out, &LoadOptions::default()).unwrap()
}

fn generates(e: &Engine, template: Option<&str>) {
    let opts = SessionOptions {
        n_ctx: 256,
        chat_template: template.map(str::to_string),
        ..SessionOptions::default()
    };
    let mut s = e.session(&opts).unwrap();
    let p = s.render(&[Message::user("Hello there")]).unwrap();
    let mut params = SamplingParams::greedy(12);
    params.repeat_penalty = 1.3; // random weights: keep the output from being one token repeated
    let a = s.generate(&p, &params, &mut |_| {}).unwrap();
    let b = e
        .session(&opts)
        .unwrap()
        .generate(&p, &params, &mut |_| {})
        .unwrap();
    assert_eq!(a.text, b.text, "deterministic");
    assert!(matches!(
        a.finish_reason,
        FinishReason::Length | FinishReason::Stop
    ));
    assert!(a.completion_tokens > 0 || a.finish_reason == FinishReason::Stop);
    let logits = s.eval_logits(&s.tokenize(&p)).unwrap();
    assert!(logits.iter().flatten().all(|x| x.is_finite()));
}

#[test]
fn tiny_phi3_with_the_real_vocab_loads_and_generates() {
    let dir = tempfile::tempdir().unwrap();
    let e = tiny(Arch::Phi3, "phi3-vocab", dir.path());
    assert_eq!(e.architecture(), "phi3");
    assert_eq!(e.n_vocab(), 32064);
    let g = e.gguf();
    assert!(
        g.tensor("blk.0.attn_qkv.weight").is_some() && g.tensor("blk.0.attn_q.weight").is_none()
    );
    generates(&e, None);
}

#[test]
fn tiny_llama_qwen2_gemma3_load_and_generate() {
    let dir = tempfile::tempdir().unwrap();
    generates(
        &tiny(Arch::Llama, "llama-spm-vocab", dir.path()),
        Some("chatml"),
    );
    generates(&tiny(Arch::Qwen2, "qwen2-vocab", dir.path()), None);
    generates(
        &tiny(Arch::Gemma3, "llama-spm-vocab", dir.path()),
        Some("gemma"),
    );
}
