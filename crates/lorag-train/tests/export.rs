//! Export: the GGUF adapter loaded by llama.cpp gives the trainer's logits (within the parity
//! tolerance), and the PEFT export has HF names, shapes and q/k row order, proven by applying it
//! to the Hugging Face layout of the same model (the phi3 repack: un-permuted q/k, NEOX rope).

mod common;

use candle_core::{Device, Tensor, Var};
use common::*;
use lorag_gguf::tiny::Arch as TinyArch;
use lorag_llm::{Engine, SessionOptions};
use lorag_train::data::Example;
use lorag_train::export::{write_gguf_adapter, write_gguf_adapter_as, write_peft};
use lorag_train::lora::{Lora, LoraConfig};
use lorag_train::models::{GateUp, LoadOptions, Model, Numerics, Qkv};
use lorag_train::repack::{llama_to_phi3, RepackType};
use lorag_train::train::{train, RunControl, TrainConfig};
use std::collections::HashMap;
use std::path::Path;

fn examples(e: &Engine) -> Vec<Example> {
    let conv = conversation();
    (0..conv.len())
        .filter(|&k| conv[k].role == lorag_llm::Role::Assistant)
        .map(|k| {
            let text = e
                .render_chat(&conv[..=k], None, false)
                .or_else(|_| e.render_chat(&conv[..=k], Some("chatml"), false))
                .unwrap();
            let tokens = e.tokenize(&text, true, true);
            let tokens = tokens[..tokens.len().min(96)].to_vec();
            let mask = (0..tokens.len()).map(|i| i >= tokens.len() / 3).collect();
            Example { tokens, mask }
        })
        .collect()
}

/// A few training steps, so that B is not zero.
fn trained(path: &Path, e: &Engine, lora: &LoraConfig, lr: f64, steps: usize) -> Model {
    let mut m = Model::load(path, &LoadOptions::default()).unwrap();
    m.add_lora(lora, 5).unwrap();
    let cfg = TrainConfig {
        steps,
        lr,
        warmup_steps: 0,
        batch_size: 2,
        eval_every: 0,
        save_every: 0,
        ..TrainConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    train(
        &m,
        &examples(e),
        &[],
        &cfg,
        dir.path(),
        &RunControl::default(),
    )
    .unwrap();
    m.numerics = Numerics { f16_kv: true };
    m
}

fn llama_cpp_with_adapter(
    e: &Engine,
    adapter: &Path,
    tokens: &[i32],
    n_batch: u32,
) -> Vec<Vec<f32>> {
    let a = e.load_lora(adapter).unwrap();
    let mut s = e
        .session(&SessionOptions {
            n_ctx: 1024,
            n_batch,
            ..SessionOptions::default()
        })
        .unwrap();
    s.set_adapters(&[(a, 1.0)]).unwrap();
    s.eval_logits(tokens).unwrap()
}

#[test]
fn gguf_adapter_on_tiny_phi3_matches_llama_cpp() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(TinyArch::Phi3, "phi3-vocab", dir.path());
    let e = engine(&path);
    let lora = LoraConfig {
        rank: 4,
        alpha: 8.0,
        rslora: true,
        ..LoraConfig::default()
    };
    let m = trained(&path, &e, &lora, 2e-2, 3);
    let out = dir.path().join("adapter.gguf");
    assert_eq!(write_gguf_adapter(&m, &out).unwrap(), 4 * m.hp.n_layer);
    let tokens = chat_tokens(&e, 320);
    let base = llama_cpp_logits(&e, &tokens);
    let with = llama_cpp_with_adapter(&e, &out, &tokens, 512);
    let effect = diff(&base, &with);
    let d = diff(&with, &m.logits_rows(&tokens).unwrap());
    eprintln!(
        "tiny phi3 + adapter: ours vs llama.cpp {d:?}; adapter effect in llama.cpp {effect:?}"
    );
    assert!(
        effect.max_abs > 100.0 * d.max_abs,
        "the adapter changes the logits: {effect:?}"
    );
    assert!(d.top1_agree >= 0.99 && d.max_rel <= 1e-3, "{d:?}");

    // The F16 adapter is half the size and llama.cpp applies it as the F32 one, up to the
    // rounding of the adapter's weights (relative 2^-11), far below the adapter's own effect.
    let out16 = dir.path().join("adapter-f16.gguf");
    write_gguf_adapter_as(&m, &out16, true).unwrap();
    let (s32, s16) = (
        std::fs::metadata(&out).unwrap().len(),
        std::fs::metadata(&out16).unwrap().len(),
    );
    assert!(s16 < s32 * 6 / 10, "{s16} vs {s32}");
    let g = lorag_gguf::Gguf::open(&out16).unwrap();
    assert!(g.tensors.iter().all(|t| t.ty == lorag_gguf::GgmlType::F16));
    let with16 = llama_cpp_with_adapter(&e, &out16, &tokens, 512);
    let d16 = diff(&with, &with16);
    eprintln!("tiny phi3: F16 vs F32 adapter in llama.cpp {d16:?}");
    assert!(
        d16.top1_agree >= 0.99 && d16.max_abs < effect.max_abs / 20.0,
        "{d16:?} vs effect {effect:?}"
    );
}

#[test]
fn gguf_adapter_on_smollm2_matches_llama_cpp() {
    let path = smollm_path();
    let e = engine(&path);
    let m = trained(
        &path,
        &e,
        &LoraConfig {
            rank: 8,
            alpha: 16.0,
            ..LoraConfig::default()
        },
        3e-3,
        3,
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("adapter.gguf");
    write_gguf_adapter(&m, &out).unwrap();
    let tokens = chat_tokens(&e, 320);
    let base = llama_cpp_logits(&e, &tokens);
    let with = llama_cpp_with_adapter(&e, &out, &tokens, 512);
    let noise = diff(&with, &llama_cpp_with_adapter(&e, &out, &tokens, 8));
    let effect = diff(&base, &with);
    let d = diff(&with, &m.logits_rows(&tokens).unwrap());
    eprintln!("smollm2 + adapter: ours vs llama.cpp {d:?}\n  llama.cpp noise (batch 8 vs 512) {noise:?}\n  adapter effect {effect:?}");
    assert!(
        effect.max_abs > 2.0 * noise.max_abs && effect.mean_abs > 2.0 * noise.mean_abs,
        "the adapter changes the logits beyond the noise: {effect:?}"
    );
    // the parity tolerance of tests/parity.rs
    assert!(
        d.top1_agree >= 0.96 && d.top1_agree >= noise.top1_agree - 0.015,
        "{d:?} {noise:?}"
    );
    assert!(
        d.max_rel <= 0.06
            && d.max_abs <= 1.25 * noise.max_abs
            && d.mean_abs <= 1.25 * noise.mean_abs,
        "{d:?} {noise:?}"
    );
}

/// Block-diagonal B of fused parts: (sum of outs, sum of ranks).
fn block_diag(parts: &[&Tensor]) -> Tensor {
    let rows: usize = parts.iter().map(|p| p.dim(0).unwrap()).sum();
    let cols: usize = parts.iter().map(|p| p.dim(1).unwrap()).sum();
    let mut m = vec![0f32; rows * cols];
    let (mut r0, mut c0) = (0, 0);
    for p in parts {
        let (r, c) = p.dims2().unwrap();
        let v = p.to_vec2::<f32>().unwrap();
        for i in 0..r {
            for j in 0..c {
                m[(r0 + i) * cols + c0 + j] = v[i][j];
            }
        }
        r0 += r;
        c0 += c;
    }
    Tensor::from_vec(m, (rows, cols), &Device::Cpu).unwrap()
}

/// Put a PEFT llama adapter on the phi3 (HF-layout) model: the q, k, v adapters become one
/// adapter of rank 3r on the fused qkv (A stacked, B block-diagonal), gate and up likewise.
fn apply_peft_to_phi3(phi: &mut Model, peft: &HashMap<String, Tensor>, scale: f64) {
    let get = |l: usize, m: &str, p: &str| {
        peft[&format!("base_model.model.model.layers.{l}.{m}.{p}.weight")].clone()
    };
    let lora = |a: Tensor, b: Tensor| {
        Some(Lora {
            a: Var::from_tensor(&a).unwrap(),
            b: Var::from_tensor(&b).unwrap(),
            scale,
            dropout: 0.0,
        })
    };
    for (l, blk) in phi.blocks.iter_mut().enumerate() {
        let Qkv::Fused(qkv) = &mut blk.qkv else {
            panic!("phi3 is fused")
        };
        let names = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"];
        let a: Vec<Tensor> = names.iter().map(|n| get(l, n, "lora_A")).collect();
        let b: Vec<Tensor> = names.iter().map(|n| get(l, n, "lora_B")).collect();
        qkv.lora = lora(
            Tensor::cat(&a, 0).unwrap(),
            block_diag(&[&b[0], &b[1], &b[2]]),
        );
        let GateUp::Fused(gu) = &mut blk.gate_up else {
            panic!("phi3 is fused")
        };
        let (ag, au) = (
            get(l, "mlp.gate_proj", "lora_A"),
            get(l, "mlp.up_proj", "lora_A"),
        );
        let (bg, bu) = (
            get(l, "mlp.gate_proj", "lora_B"),
            get(l, "mlp.up_proj", "lora_B"),
        );
        gu.lora = lora(Tensor::cat(&[ag, au], 0).unwrap(), block_diag(&[&bg, &bu]));
        blk.o.lora = lora(
            get(l, "self_attn.o_proj", "lora_A"),
            get(l, "self_attn.o_proj", "lora_B"),
        );
        blk.down.lora = lora(
            get(l, "mlp.down_proj", "lora_A"),
            get(l, "mlp.down_proj", "lora_B"),
        );
    }
}

#[test]
fn peft_export_has_hf_names_shapes_and_row_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(TinyArch::Llama, "llama-spm-vocab", dir.path());
    let e = vocab_engine(&path);
    let cfg = LoraConfig {
        rank: 4,
        alpha: 8.0,
        ..LoraConfig::default()
    };
    let mut m = trained(&path, &e, &cfg, 2e-2, 3);
    m.numerics = Numerics::default();
    let peft_dir = dir.path().join("peft");
    write_peft(&m, &cfg, "tiny-llama", &peft_dir).unwrap();
    let conf: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(peft_dir.join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(conf["peft_type"], "LORA");
    assert_eq!(conf["r"], 4);
    assert_eq!(conf["lora_alpha"], 8.0);
    assert_eq!(
        conf["target_modules"],
        serde_json::json!([
            "down_proj",
            "gate_proj",
            "k_proj",
            "o_proj",
            "q_proj",
            "up_proj",
            "v_proj"
        ])
    );
    let t =
        candle_core::safetensors::load(peft_dir.join("adapter_model.safetensors"), &Device::Cpu)
            .unwrap();
    assert_eq!(t.len(), 2 * 7 * m.hp.n_layer);
    let (e_, kv, ff) = (m.hp.n_embd, m.hp.kv_dim(), m.hp.n_ff);
    let shape = |k: &str| t[k].dims().to_vec();
    assert_eq!(
        shape("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"),
        [4, e_]
    );
    assert_eq!(
        shape("base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight"),
        [kv, 4]
    );
    assert_eq!(
        shape("base_model.model.model.layers.1.mlp.down_proj.lora_A.weight"),
        [4, ff]
    );
    assert_eq!(
        shape("base_model.model.model.layers.1.mlp.gate_proj.lora_B.weight"),
        [ff, 4]
    );

    // The HF layout of the same model, with the PEFT adapter on it, computes what the trainer
    // computes on the GGUF layout: only true if q/k lora_B rows were put in HF order.
    let hf = dir.path().join("hf-layout.gguf");
    llama_to_phi3(&path, &hf, RepackType::Keep).unwrap();
    let mut phi = Model::load(&hf, &LoadOptions::default()).unwrap();
    apply_peft_to_phi3(&mut phi, &t, cfg.scale());
    let tokens: Vec<i32> = examples(&e)[0].tokens.clone();
    let d = diff(
        &m.logits_rows(&tokens).unwrap(),
        &phi.logits_rows(&tokens).unwrap(),
    );
    eprintln!("PEFT adapter on the HF layout vs trainer: {d:?}");
    assert!(d.top1_agree == 1.0 && d.max_rel <= 1e-4, "{d:?}");
    // ...and without the row fix it would not.
    let q0 = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight";
    let mut broken = t.clone();
    let gguf_order = m.blocks[0].linears()[0]
        .lora
        .as_ref()
        .unwrap()
        .b
        .as_tensor()
        .clone();
    broken.insert(q0.to_string(), gguf_order);
    let mut phi2 = Model::load(&hf, &LoadOptions::default()).unwrap();
    apply_peft_to_phi3(&mut phi2, &broken, cfg.scale());
    let bad = diff(
        &m.logits_rows(&tokens).unwrap(),
        &phi2.logits_rows(&tokens).unwrap(),
    );
    assert!(bad.max_abs > 10.0 * d.max_abs, "{bad:?} vs {d:?}");
}

#[test]
fn peft_names_for_phi3_are_the_fused_modules() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(TinyArch::Phi3, "phi3-vocab", dir.path());
    let mut m = Model::load(&path, &LoadOptions::default()).unwrap();
    let cfg = LoraConfig::default();
    m.add_lora(&cfg, 1).unwrap();
    let out = dir.path().join("peft");
    write_peft(&m, &cfg, "tiny-phi3", &out).unwrap();
    let conf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(
        conf["target_modules"],
        serde_json::json!(["down_proj", "gate_up_proj", "o_proj", "qkv_proj"])
    );
    let t = candle_core::safetensors::load(out.join("adapter_model.safetensors"), &Device::Cpu)
        .unwrap();
    let b = &t["base_model.model.model.layers.0.self_attn.qkv_proj.lora_B.weight"];
    assert_eq!(b.dims(), [m.hp.q_dim() + 2 * m.hp.kv_dim(), 8]);
    assert_eq!(
        t["base_model.model.model.layers.0.mlp.gate_up_proj.lora_B.weight"].dims(),
        [2 * m.hp.n_ff, 8]
    );
}
