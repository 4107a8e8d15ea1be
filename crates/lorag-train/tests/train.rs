//! The trainer: loss goes down, only adapters change, resume continues the same curve, a NaN loss
//! stops the run with the last good checkpoint kept, and a few QLoRA steps on SmolLM2.

mod common;

use common::*;
use lorag_gguf::tiny::Arch as TinyArch;
use lorag_train::data::Example;
use lorag_train::lora::LoraConfig;
use lorag_train::models::{LoadOptions, Model};
use lorag_train::train::{train, Metric, RunControl, TrainConfig};
use std::path::Path;

/// Sequences of a fixed pattern: a prompt half (not trained) and a reply half (trained).
fn pattern_examples(n: usize, len: usize, vocab: i32) -> Vec<Example> {
    (0..n)
        .map(|i| {
            let tokens: Vec<i32> = (0..len + i % 3)
                .map(|j| ((j * 7 + i * 13) as i32 % 50) * 11 % vocab + 3)
                .collect();
            let mask = (0..tokens.len()).map(|j| j >= tokens.len() / 2).collect();
            Example { tokens, mask }
        })
        .collect()
}

fn tiny_model(dir: &Path, lora: &LoraConfig) -> Model {
    let mut m = Model::load(
        tiny(TinyArch::Llama, "llama-spm-vocab", dir),
        &LoadOptions::default(),
    )
    .unwrap();
    m.add_lora(lora, 7).unwrap();
    m
}

fn metrics(dir: &Path) -> Vec<Metric> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn loss_goes_down_and_only_the_adapters_change() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(
        dir.path(),
        &LoraConfig {
            rank: 8,
            alpha: 16.0,
            ..LoraConfig::default()
        },
    );
    let base = m.base_snapshot().unwrap();
    let data = pattern_examples(12, 24, 3000);
    let cfg = TrainConfig {
        steps: 25,
        lr: 1e-2,
        warmup_steps: 3,
        batch_size: 4,
        grad_accum: 2,
        eval_every: 10,
        save_every: 10,
        ..TrainConfig::default()
    };
    let run = dir.path().join("run");
    let r = train(
        &m,
        &data[..10],
        &data[10..],
        &cfg,
        &run,
        &RunControl::default(),
    )
    .unwrap();
    let (first, last) = (r.first_loss.unwrap(), r.final_loss.unwrap());
    eprintln!(
        "tiny llama: loss {first:.4} -> {last:.4}, eval {:?} -> {:?}, {:.0} tok/s",
        r.eval_loss_start, r.eval_loss_end, r.tokens_per_s
    );
    assert!(last < 0.7 * first, "{first} -> {last}");
    assert!(r.eval_loss_end.unwrap() < r.eval_loss_start.unwrap());
    assert_eq!(
        base,
        m.base_snapshot().unwrap(),
        "the base weights are bit-identical"
    );
    let b_norm: f32 = m
        .lora_vars()
        .iter()
        .filter(|(n, _)| n.ends_with("lora_b"))
        .map(|(_, v)| {
            v.as_tensor()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        })
        .sum();
    assert!(b_norm > 0.0);

    let ms = metrics(&run);
    assert_eq!(ms.len(), 26, "a step-0 line and one per step");
    assert_eq!(ms[0].step, 0);
    assert!(ms[0].eval_loss.is_some() && ms[0].loss.is_none());
    assert!(ms[10].eval_loss.is_some() && ms[11].eval_loss.is_none() && ms[25].eval_loss.is_some());
    assert!(ms[1..]
        .iter()
        .all(|m| m.loss.is_some() && m.tokens_per_s.unwrap() > 0.0 && m.lr > 0.0));
    assert!(ms[3].lr > ms[25].lr, "decays");
    let svg = std::fs::read_to_string(run.join("loss.svg")).unwrap();
    assert!(svg.contains("<polyline"));
    assert!(
        run.join("checkpoint/adapter.safetensors").exists()
            && run.join("checkpoint/optimizer.safetensors").exists()
    );
}

#[test]
fn resume_continues_the_same_loss_curve() {
    let lora = LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.1,
        ..LoraConfig::default()
    };
    let data = pattern_examples(10, 20, 3000);
    let cfg = TrainConfig {
        steps: 8,
        lr: 5e-3,
        warmup_steps: 2,
        batch_size: 3,
        grad_accum: 2,
        eval_every: 4,
        save_every: 0,
        ..TrainConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let straight = dir.path().join("straight");
    let m = tiny_model(dir.path(), &lora);
    train(
        &m,
        &data[..8],
        &data[8..],
        &cfg,
        &straight,
        &RunControl::default(),
    )
    .unwrap();

    let split = dir.path().join("split");
    let m1 = tiny_model(dir.path(), &lora);
    let r1 = train(
        &m1,
        &data[..8],
        &data[8..],
        &cfg,
        &split,
        &RunControl {
            stop_after: Some(4),
            ..RunControl::default()
        },
    )
    .unwrap();
    assert!(r1.stopped_early);
    assert_eq!(metrics(&split).len(), 5);
    // a fresh process: a new model with fresh adapters, then resume
    let m2 = tiny_model(dir.path(), &lora);
    let r2 = train(
        &m2,
        &data[..8],
        &data[8..],
        &cfg,
        &split,
        &RunControl {
            resume: true,
            ..RunControl::default()
        },
    )
    .unwrap();
    assert_eq!(r2.resumed_from, Some(4));
    let (a, b) = (metrics(&straight), metrics(&split));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.step, y.step);
        let close = |p: Option<f64>, q: Option<f64>| match (p, q) {
            (Some(p), Some(q)) => (p - q).abs() < 1e-4,
            (None, None) => true,
            _ => false,
        };
        assert!(
            close(x.loss, y.loss) && close(x.eval_loss, y.eval_loss) && x.lr == y.lr,
            "{x:?} vs {y:?}"
        );
    }
    eprintln!(
        "final loss straight {:?}, resumed {:?}",
        a.last().unwrap().loss,
        b.last().unwrap().loss
    );

    // resuming with other options is refused
    let other = TrainConfig { lr: 1e-3, ..cfg };
    let e = train(
        &m2,
        &data[..8],
        &data[8..],
        &other,
        &split,
        &RunControl {
            resume: true,
            ..RunControl::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("another training configuration"), "{e}");
}

#[test]
fn a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path(), &LoraConfig::default());
    let data = pattern_examples(6, 16, 3000);
    let cfg = TrainConfig {
        steps: 6,
        lr: 1e30,
        warmup_steps: 0,
        batch_size: 3,
        save_every: 1,
        max_grad_norm: 0.0,
        ..TrainConfig::default()
    };
    let run = dir.path().join("run");
    let e = train(&m, &data, &[], &cfg, &run, &RunControl::default()).unwrap_err();
    let msg = e.to_string();
    eprintln!("{msg}");
    match e {
        lorag_train::Error::NonFinite {
            step,
            last_checkpoint,
            ..
        } => {
            assert!(step >= 2);
            assert_eq!(last_checkpoint, Some(step - 1));
        }
        other => panic!("expected NonFinite, got {other}"),
    }
    assert!(msg.contains("last good checkpoint"), "{msg}");
    let ms = metrics(&run);
    assert!(ms.iter().all(|m| m.loss.is_none_or(f64::is_finite)));
}

#[test]
fn smollm2_qlora_steps_lower_the_loss() {
    let path = smollm_path();
    let e = vocab_engine(&path);
    let text = e
        .render_chat(
            &[
                lorag_llm::Message::user("What is a bygglov?"),
                lorag_llm::Message::assistant("A bygglov is a building permit granted by the municipality's building committee under the Planning and Building Act."),
            ],
            None,
            false,
        )
        .unwrap();
    let tokens = e.tokenize(&text, true, true);
    let mask: Vec<bool> = (0..tokens.len()).map(|i| i >= tokens.len() / 2).collect();
    let data = vec![Example { tokens, mask }; 4];
    let mut m = Model::load(&path, &LoadOptions::default()).unwrap();
    m.add_lora(
        &LoraConfig {
            rank: 8,
            alpha: 16.0,
            ..LoraConfig::default()
        },
        1,
    )
    .unwrap();
    let base = m.base_snapshot().unwrap();
    let cfg = TrainConfig {
        steps: 3,
        lr: 2e-3,
        warmup_steps: 0,
        batch_size: 2,
        eval_every: 0,
        save_every: 0,
        ..TrainConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let r = train(
        &m,
        &data,
        &data[..1],
        &cfg,
        dir.path(),
        &RunControl::default(),
    )
    .unwrap();
    let ms = metrics(dir.path());
    let tok_s: Vec<f64> = ms.iter().filter_map(|m| m.tokens_per_s).collect();
    eprintln!(
        "smollm2 QLoRA: {} tokens/sequence, eval loss {:?} -> {:?}, train loss {:?} -> {:?}, step tokens/s {tok_s:.1?}",
        data[0].tokens.len(), r.eval_loss_start, r.eval_loss_end, r.first_loss, r.final_loss
    );
    assert!(r.eval_loss_end.unwrap() < r.eval_loss_start.unwrap());
    assert!(r.final_loss.unwrap() < r.first_loss.unwrap());
    assert_eq!(
        base,
        m.base_snapshot().unwrap(),
        "the quantized base is bit-identical"
    );
}
