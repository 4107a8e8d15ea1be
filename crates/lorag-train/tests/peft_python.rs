//! PEFT interop, end to end through Python: the base written as a Hugging Face folder
//! (`export::write_hf_base`) plus the adapter written as PEFT (`export::write_peft`), loaded by
//! `transformers` + `peft.PeftModel.from_pretrained`, give our logits.
//!
//! Tiny random llama (q/k rows permuted by llama.cpp's layout, un-permuted on export), phi3 (fused
//! `qkv_proj` / `gate_up_proj`, rsLoRA) and qwen2 (q/k/v biases) models, with adapters whose A and
//! B are both random, so that every adapter tensor and its scale matter.
//!
//! Tolerance: both sides compute in f32 on the CPU; they differ only in summation order and in
//! how the rope angles are computed (ggml accumulates `theta *= base^(-2/d)`, HF takes powers).
//! Every position must have the same top-1 token, and |ours - theirs| ≤ 1e-4 on every logit
//! (measured: about 2e-6; logit rows span about 5, and the adapter moves logits by about 2.5).
//!
//! Python: `$LORAG_PYTHON`, else `bench/.venv/bin/python` when it exists, else `python3`. The
//! tests are `#[ignore]`d in the suite (torch + transformers + peft are ~3 GB): `bench/peft.sh`
//! installs the stack and runs them. Without the stack they fail, saying what is missing.

mod common;

use candle_core::{Device, Tensor};
use common::*;
use lorag_gguf::tiny::Arch as TinyArch;
use lorag_train::export::{write_hf_base, write_peft};
use lorag_train::lora::LoraConfig;
use lorag_train::models::{LoadOptions, Model};
use lorag_train::rng::Rng;
use std::path::{Path, PathBuf};
use std::process::Command;

const MAX_ABS: f32 = 1e-4;

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("LORAG_PYTHON") {
        return p.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/.venv/bin/python");
    if venv.exists() {
        return venv;
    }
    "python3".into()
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peft_check.py")
}

/// The Python stack; a test that cannot run it fails (it never passes without checking).
fn python_stack() -> PathBuf {
    probe().unwrap_or_else(|| {
        panic!("transformers + peft are not importable: run bench/peft.sh (it installs them into bench/.venv), or set LORAG_PYTHON")
    })
}

fn probe() -> Option<PathBuf> {
    let py = python();
    match Command::new(&py).arg(script()).arg("--probe").output() {
        Ok(o) if o.status.success() => {
            eprintln!(
                "python {}: {}",
                py.display(),
                String::from_utf8_lossy(&o.stdout).trim()
            );
            Some(py)
        }
        Ok(o) => {
            eprintln!(
                "skipped: python stack transformers+peft not installed ({}: {}); run bench/train.sh to install it, or set LORAG_PYTHON",
                py.display(),
                String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("import failed")
            );
            None
        }
        Err(e) => {
            eprintln!(
                "skipped: no python ({}: {e}); run bench/train.sh to install the transformers+peft stack, or set LORAG_PYTHON",
                py.display()
            );
            None
        }
    }
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().unwrap()
}

fn check(arch: TinyArch, vocab: &str, lora: LoraConfig) {
    let py = python_stack();
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(arch, vocab, dir.path());
    let tokens = chat_tokens(&vocab_engine(&path), 96);
    let mut m = Model::load(&path, &LoadOptions::default()).unwrap();
    let ours_base = m.logits_rows(&tokens).unwrap();
    let n = m.add_lora(&lora, 7).unwrap();
    assert!(n > 0);
    // B is zero after add_lora: give it random values, as training would.
    let mut rng = Rng::new(11);
    for (_, l) in m.lora_layers() {
        let (o, r) = l.b.as_tensor().dims2().unwrap();
        let v: Vec<f32> = (0..o * r).map(|_| rng.uniform(-0.2, 0.2)).collect();
        l.b.set(&Tensor::from_vec(v, (o, r), &Device::Cpu).unwrap())
            .unwrap();
    }
    let ours = m.logits_rows(&tokens).unwrap();

    let base_dir = dir.path().join("hf-base");
    let adapter_dir = dir.path().join("peft-adapter");
    let n_tensors = write_hf_base(&m, &base_dir).unwrap();
    write_peft(&m, &lora, "hf-base", &adapter_dir).unwrap();
    let tok_path = dir.path().join("tokens.json");
    std::fs::write(&tok_path, serde_json::to_string(&tokens).unwrap()).unwrap();
    let out = dir.path().join("peft-logits.safetensors");
    let o = Command::new(&py)
        .arg(script())
        .args([&base_dir, &adapter_dir, &tok_path, &out])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{} failed:\n{}",
        script().display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let info = String::from_utf8_lossy(&o.stdout);
    let theirs = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
    let (t_with, t_base) = (rows(&theirs["with"]), rows(&theirs["base"]));

    let d_base = diff(&t_base, &ours_base);
    let d = diff(&t_with, &ours);
    let effect = diff(&t_base, &t_with);
    eprintln!(
        "{} ({n} adapters, {n_tensors} base tensors; python: {}):\n  base: ours vs transformers {d_base:?}\n  base + adapter: ours vs transformers+peft {d:?}\n  adapter effect in peft {effect:?}",
        arch.name(),
        info.trim()
    );
    assert!(
        info.contains(&format!("\"lora_tensors\": {}", 2 * n)),
        "peft loaded every adapter: {info}"
    );
    for (what, d) in [("base", &d_base), ("base + adapter", &d)] {
        assert!(
            d.top1_agree == 1.0 && d.max_abs <= MAX_ABS,
            "{} {what}: logits disagree with transformers: {d:?}",
            arch.name()
        );
    }
    assert!(
        effect.max_abs > 100.0 * d.max_abs && effect.top1_agree < 1.0,
        "the adapter must change the logits well beyond the tolerance: {effect:?}"
    );
}

#[test]
#[ignore = "needs torch + transformers + peft (~3 GB): run bench/peft.sh"]
fn peft_adapter_on_tiny_llama_matches_transformers() {
    check(
        TinyArch::Llama,
        "llama-spm-vocab",
        LoraConfig {
            rank: 4,
            alpha: 8.0,
            ..LoraConfig::default()
        },
    );
}

#[test]
#[ignore = "needs torch + transformers + peft (~3 GB): run bench/peft.sh"]
fn peft_adapter_on_tiny_phi3_matches_transformers() {
    check(
        TinyArch::Phi3,
        "phi3-vocab",
        LoraConfig {
            rank: 8,
            alpha: 4.0,
            rslora: true,
            ..LoraConfig::default()
        },
    );
}

#[test]
#[ignore = "needs torch + transformers + peft (~3 GB): run bench/peft.sh"]
fn peft_adapter_on_tiny_qwen2_matches_transformers() {
    check(
        TinyArch::Qwen2,
        "qwen2-vocab",
        LoraConfig {
            rank: 4,
            alpha: 16.0,
            targets: vec!["attn_q".into(), "attn_v".into(), "ffn_down".into()],
            ..LoraConfig::default()
        },
    );
}
