//! LoRA targets under each architecture's real GGUF names, and their validation.

mod common;

use common::*;
use lorag_gguf::tiny::Arch as TinyArch;
use lorag_train::lora::LoraConfig;
use lorag_train::models::{LoadOptions, Model};

fn names(m: &Model) -> Vec<String> {
    m.lora_vars()
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.starts_with("blk.0."))
        .collect()
}

#[test]
fn default_targets_are_every_linear_layer_under_its_gguf_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut phi = Model::load(
        tiny(TinyArch::Phi3, "phi3-vocab", dir.path()),
        &LoadOptions::default(),
    )
    .unwrap();
    let n = phi.add_lora(&LoraConfig::default(), 1).unwrap();
    assert_eq!(n, 4 * phi.hp.n_layer);
    assert_eq!(
        names(&phi),
        [
            "blk.0.attn_qkv.lora_a",
            "blk.0.attn_qkv.lora_b",
            "blk.0.attn_output.lora_a",
            "blk.0.attn_output.lora_b",
            "blk.0.ffn_up.lora_a",
            "blk.0.ffn_up.lora_b",
            "blk.0.ffn_down.lora_a",
            "blk.0.ffn_down.lora_b",
        ]
    );
    // fused shapes: qkv is (q + 2kv) rows, ffn_up is gate | up
    let (o, i) = phi.blocks[0].linears()[0].dims();
    assert_eq!(
        (o, i),
        (phi.hp.q_dim() + 2 * phi.hp.kv_dim(), phi.hp.n_embd)
    );
    let b = &phi.lora_vars()[1].1;
    assert_eq!(b.dims(), [o, 8]);

    for bad in ["attn_q", "q_proj", "ffn_gate", "gate_up_proj"] {
        let cfg = LoraConfig {
            targets: vec![bad.into()],
            ..LoraConfig::default()
        };
        let e = phi.add_lora(&cfg, 1).unwrap_err().to_string();
        assert!(
            e.contains(bad) && e.contains("attn_qkv, attn_output, ffn_up, ffn_down"),
            "{e}"
        );
    }

    let mut qwen = Model::load(
        tiny(TinyArch::Qwen2, "qwen2-vocab", dir.path()),
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(
        qwen.add_lora(&LoraConfig::default(), 1).unwrap(),
        7 * qwen.hp.n_layer
    );
    let cfg = LoraConfig {
        targets: vec!["attn_q".into(), "attn_v".into()],
        rank: 2,
        ..LoraConfig::default()
    };
    assert_eq!(qwen.add_lora(&cfg, 1).unwrap(), 2 * qwen.hp.n_layer);
    assert_eq!(
        names(&qwen),
        [
            "blk.0.attn_q.lora_a",
            "blk.0.attn_q.lora_b",
            "blk.0.attn_v.lora_a",
            "blk.0.attn_v.lora_b"
        ]
    );
    let e = qwen
        .add_lora(
            &LoraConfig {
                rank: 0,
                ..LoraConfig::default()
            },
            1,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("rank"), "{e}");
}

#[test]
fn fresh_adapters_leave_the_logits_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(TinyArch::Llama, "llama-spm-vocab", dir.path());
    let mut m = Model::load(&path, &LoadOptions::default()).unwrap();
    let tokens: Vec<i32> = (1..40).map(|i| (i * 37) % 3000 + 100).collect();
    let before = m.logits_rows(&tokens).unwrap();
    m.add_lora(
        &LoraConfig {
            rslora: true,
            dropout: 0.1,
            ..LoraConfig::default()
        },
        3,
    )
    .unwrap();
    assert_eq!(before, m.logits_rows(&tokens).unwrap());
}
