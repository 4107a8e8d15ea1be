//! `lorag tune`: LoRA / QLoRA fine-tuning of a GGUF model on a JSONL file of conversations.
//!
//! The run folder (`--out`) holds everything: `adapter.gguf` (llama.cpp), `peft/` (Hugging Face),
//! `metrics.jsonl`, `loss.svg`, `checkpoint/` and `tune.json` (the resolved options, so that a
//! `--resume` with other options is refused instead of silently mixing two runs).
//!
//! Ctrl-C saves a checkpoint after the current step and exits with code 130; the same command with
//! `--resume` continues the same loss curve. A second Ctrl-C exits at once.

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use lorag_train::data::DataOptions;
use lorag_train::lora::LoraConfig;
use lorag_train::models::{DeviceKind, LoadOptions, Model};
use lorag_train::optim::Schedule;
use lorag_train::train::{BatchPlan, RunControl, TrainConfig};
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DeviceArg {
    Cpu,
    Cuda,
}

#[derive(Args, Debug)]
pub struct TuneArgs {
    /// Training data: JSONL of conversations (OpenAI "messages", Alpaca or ShareGPT, per line)
    #[arg(long, value_name = "FILE.jsonl")]
    pub data: PathBuf,
    /// Base model: a .gguf file or a catalogue name (default: smollm2-135m-instruct)
    #[arg(long, short)]
    pub model: Option<String>,
    /// Run folder: adapter.gguf, peft/, metrics.jsonl, loss.svg, checkpoint/
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// QLoRA: keep the base in its GGUF quantized type (less memory); default: LoRA on an f32 copy
    #[arg(long)]
    pub qlora: bool,
    /// LoRA rank
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    /// LoRA alpha (default: 2 × rank)
    #[arg(long)]
    pub alpha: Option<f32>,
    /// Target layers by GGUF name, comma-separated (default: every linear layer of the model)
    #[arg(long, value_delimiter = ',', value_name = "a,b")]
    pub targets: Vec<String>,
    /// Epochs over the training split (default 1; fractions allowed)
    #[arg(long)]
    pub epochs: Option<f64>,
    /// Optimizer steps (instead of --epochs)
    #[arg(long)]
    pub steps: Option<usize>,
    /// Peak learning rate
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f64,
    /// Sequences per micro-batch
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Micro-batches per optimizer step
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Longest sequence in tokens (longer conversations are cut)
    #[arg(long, default_value_t = 512)]
    pub max_seq: usize,
    /// Fraction of the conversations held out for evaluation (seeded split)
    #[arg(long, default_value_t = 0.1)]
    pub eval_split: f32,
    /// Evaluate on this JSONL file instead of a split of --data (same formats)
    #[arg(long, value_name = "FILE.jsonl", conflicts_with = "eval_split")]
    pub eval_data: Option<PathBuf>,
    /// Continue the run in --out from its checkpoint
    #[arg(long)]
    pub resume: bool,
    /// Print one JSON summary object on stdout
    #[arg(long)]
    pub json: bool,
    /// Dropout on the adapters' input
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f32,
    /// rsLoRA scaling (alpha/√r instead of alpha/r)
    #[arg(long)]
    pub rslora: bool,
    /// Seed of the split, the adapter init, the batch order and dropout
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Warmup steps (default: 5% of the steps)
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Learning-rate schedule after warmup
    #[arg(long, value_enum, default_value_t = ScheduleArg::Cosine)]
    pub schedule: ScheduleArg,
    /// Evaluate every N steps (default: 5 times per run; 0: only at start and end)
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Checkpoint every N steps (default: 10 times per run; 0: only at the end)
    #[arg(long)]
    pub save_every: Option<usize>,
    /// Count and skip malformed lines instead of stopping at the first
    #[arg(long)]
    pub skip_bad: bool,
    /// Clip the gradient norm to this (0: off)
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Chat template name (chatml, phi3, llama3, gemma, ...) overriding the model's own
    #[arg(long)]
    pub chat_template: Option<String>,
    /// Weight decay of AdamW
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Write adapter.gguf with F16 tensors (half the size) instead of F32
    #[arg(long)]
    pub f16: bool,
    /// Where to train: cpu, or cuda (needs a build with --features cuda; default: cuda when the
    /// build has it and a GPU is present, else cpu)
    #[arg(long, value_enum)]
    pub device: Option<DeviceArg>,
    /// Stop (with a checkpoint, as Ctrl-C does) after this step (for tests and scripts)
    #[arg(long, hide = true)]
    pub stop_after: Option<usize>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScheduleArg {
    Cosine,
    Linear,
    Constant,
}

impl From<ScheduleArg> for Schedule {
    fn from(s: ScheduleArg) -> Self {
        match s {
            ScheduleArg::Cosine => Schedule::Cosine,
            ScheduleArg::Linear => Schedule::Linear,
            ScheduleArg::Constant => Schedule::Constant,
        }
    }
}

/// Exit code of a run stopped by Ctrl-C (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: i32 = 130;

/// The flag the SIGINT handler sets (and `RunControl::interrupt` reads).
static INTERRUPT: OnceLock<Arc<AtomicBool>> = OnceLock::new();

extern "C" fn on_sigint(_: libc::c_int) {
    // Only async-signal-safe work: atomics, and _exit on the second Ctrl-C.
    if let Some(f) = INTERRUPT.get() {
        if f.swap(true, Ordering::SeqCst) {
            // SAFETY: _exit is async-signal-safe.
            unsafe { libc::_exit(EXIT_INTERRUPTED) }
        }
    }
}

fn install_sigint() -> Arc<AtomicBool> {
    let flag = INTERRUPT
        .get_or_init(|| Arc::new(AtomicBool::new(false)))
        .clone();
    // SAFETY: installs a handler that only touches an atomic (and calls _exit).
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
    flag
}

/// Check the flags that clap cannot, each with a one-line error.
fn validate(a: &TuneArgs) -> Result<()> {
    if matches!(a.device, Some(DeviceArg::Cuda)) && !cfg!(feature = "cuda") {
        bail!("--device cuda: this lorag was built without CUDA; build it with --features cuda (see the README)");
    }
    if a.epochs.is_some() && a.steps.is_some() {
        bail!("--epochs and --steps exclude each other: give one");
    }
    if let Some(e) = a.epochs {
        if !(e.is_finite() && e > 0.0) {
            bail!("--epochs must be a positive number, got {e}");
        }
    }
    if a.steps == Some(0) {
        bail!("--steps must be at least 1");
    }
    if a.rank == 0 {
        bail!("--rank must be at least 1");
    }
    if let Some(al) = a.alpha {
        if !(al.is_finite() && al > 0.0) {
            bail!("--alpha must be a positive number, got {al}");
        }
    }
    if !(a.lr.is_finite() && a.lr > 0.0) {
        bail!("--lr must be a positive number, got {}", a.lr);
    }
    if a.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if a.grad_accum == 0 {
        bail!("--grad-accum must be at least 1");
    }
    if a.max_seq < 2 {
        bail!("--max-seq must be at least 2 tokens, got {}", a.max_seq);
    }
    if !(0.0..1.0).contains(&a.eval_split) {
        bail!("--eval-split must be in [0, 1), got {}", a.eval_split);
    }
    if !(0.0..1.0).contains(&a.dropout) {
        bail!("--dropout must be in [0, 1), got {}", a.dropout);
    }
    if !(a.max_grad_norm.is_finite() && a.max_grad_norm >= 0.0) {
        bail!("--max-grad-norm must be 0 (off) or positive");
    }
    if !(a.weight_decay.is_finite() && a.weight_decay >= 0.0) {
        bail!("--weight-decay must be 0 or positive");
    }
    if a.targets.iter().any(|t| t.trim().is_empty()) {
        bail!("--targets has an empty name");
    }
    if !a.data.is_file() {
        bail!("training data not found: {}", a.data.display());
    }
    if let Some(e) = &a.eval_data {
        if !e.is_file() {
            bail!("evaluation data not found: {}", e.display());
        }
    }
    if a.out.exists() && !a.out.is_dir() {
        bail!("--out {} exists and is not a folder", a.out.display());
    }
    Ok(())
}

pub fn run(args: TuneArgs) -> Result<()> {
    let t_start = Instant::now();
    validate(&args)?;
    let model_path = super::resolve_model(args.model.as_deref())?;
    let ckpt = lorag_train::train::recover_checkpoint(&args.out)?
        .unwrap_or_else(|| lorag_train::train::checkpoint_dir(&args.out));
    if ckpt.exists() && !args.resume {
        bail!(
            "{} already holds a run (a checkpoint); continue it with --resume, or choose another --out",
            args.out.display()
        );
    }
    // Targets are checked against the architecture before any work.
    let g = lorag_gguf::Gguf::open(&model_path)?;
    let arch_name = g.architecture().unwrap_or("unknown").to_string();
    let arch = lorag_train::models::Arch::from_name(&arch_name).ok_or_else(|| {
        anyhow::anyhow!(
            "{}: architecture {arch_name:?} cannot be fine-tuned here (llama, phi3 and qwen2 can)",
            model_path.display()
        )
    })?;
    let known = arch.linear_names();
    for t in &args.targets {
        if !known.contains(&t.trim()) {
            bail!(
                "--targets: {:?} is not a linear layer of {arch_name} models; use any of: {}",
                t.trim(),
                known.join(", ")
            );
        }
    }
    drop(g);
    let lora = LoraConfig {
        rank: args.rank,
        alpha: args.alpha.unwrap_or(2.0 * args.rank as f32),
        dropout: args.dropout,
        rslora: args.rslora,
        targets: args.targets.iter().map(|t| t.trim().to_string()).collect(),
    };
    let log = |s: String| {
        if !args.json {
            eprintln!("{s}");
        }
    };

    // Data: rendered and tokenized by llama.cpp on the model's own vocabulary.
    let vocab = lorag_llm::Engine::load(
        &model_path,
        &lorag_llm::LoadOptions {
            vocab_only: true,
            ..Default::default()
        },
    )?;
    let data_opts = DataOptions {
        max_seq: args.max_seq,
        eval_split: if args.eval_data.is_some() {
            0.0
        } else {
            args.eval_split
        },
        seed: args.seed,
        skip_bad: args.skip_bad,
        chat_template: args.chat_template.clone(),
    };
    let mut ds = lorag_train::data::load(&args.data, &vocab, &data_opts)?;
    if let Some(e) = &args.eval_data {
        ds.eval = lorag_train::data::load(e, &vocab, &data_opts)?.train;
    }
    drop(vocab);
    let st = &ds.stats;
    log(format!(
        "data: {} conversations ({} train, {} eval), {} train tokens ({} trained on); {} truncated to {} tokens, {} dropped, {} malformed lines skipped",
        st.conversations,
        ds.train.len(),
        ds.eval.len(),
        st.train_tokens,
        st.train_target_tokens,
        st.truncated,
        args.max_seq,
        st.dropped_too_long,
        st.skipped_bad
    ));

    // Model and adapters.
    let mut model = Model::load(
        &model_path,
        &LoadOptions {
            dequantize: !args.qlora,
            device: match args.device {
                Some(DeviceArg::Cpu) => DeviceKind::Cpu,
                Some(DeviceArg::Cuda) => DeviceKind::Cuda,
                None => DeviceKind::best_available(),
            },
        },
    )?;
    let n_adapters = model.add_lora(&lora, args.seed)?;
    let trainable: usize = model
        .lora_vars()
        .iter()
        .map(|(_, v)| v.as_tensor().elem_count())
        .sum();
    log(format!(
        "model: {} ({}, {} layers), {} base in memory ({} MB); LoRA r={} alpha={} on {} layers ({} trainable parameters)",
        model_path.display(),
        model.hp.arch.name(),
        model.hp.n_layer,
        if args.qlora { "quantized" } else { "f32" },
        model.base_bytes() / (1 << 20),
        lora.rank,
        lora.alpha,
        n_adapters,
        trainable
    ));

    let steps = match args.steps {
        Some(s) => s,
        None => BatchPlan::epochs_to_steps(
            ds.train.len(),
            args.epochs.unwrap_or(1.0),
            args.batch,
            args.grad_accum,
        ),
    };
    let adamw = lorag_train::optim::AdamWParams {
        weight_decay: args.weight_decay,
        ..Default::default()
    };
    let cfg = TrainConfig {
        steps,
        lr: args.lr,
        warmup_steps: args.warmup.unwrap_or(steps / 20).min(steps),
        schedule: args.schedule.into(),
        batch_size: args.batch,
        grad_accum: args.grad_accum,
        max_grad_norm: args.max_grad_norm,
        adamw,
        eval_every: args.eval_every.unwrap_or((steps / 5).max(1)),
        save_every: args.save_every.unwrap_or((steps / 10).max(1)),
        seed: args.seed,
        ..TrainConfig::default()
    };

    // What the run is: a resume must be the same run.
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let run_info = json!({
        "model": model_path,
        "data": std::fs::canonicalize(&args.data).unwrap_or(args.data.clone()),
        "qlora": args.qlora,
        "lora": lora,
        "data_options": {
            "max_seq": args.max_seq, "eval_split": data_opts.eval_split, "seed": args.seed,
            "eval_data": args.eval_data.as_ref().map(|e| std::fs::canonicalize(e).unwrap_or(e.clone())),
            "skip_bad": args.skip_bad, "chat_template": args.chat_template,
        },
        "train": cfg,
    });
    let info_path = args.out.join("tune.json");
    if args.resume && ckpt.exists() {
        if let Ok(text) = std::fs::read_to_string(&info_path) {
            let old: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not valid JSON", info_path.display()))?;
            let diff = differences(&old, &run_info, "");
            if !diff.is_empty() {
                bail!(
                    "{}: the run was started with other options ({}); resume with the same options, or use another --out",
                    info_path.display(),
                    diff.join("; ")
                );
            }
        }
    }
    lorag_eval::write_atomic(
        &info_path,
        serde_json::to_string_pretty(&run_info)
            .expect("json")
            .as_bytes(),
    )?;

    let interrupt = install_sigint();
    let ctl = RunControl {
        resume: args.resume,
        stop_after: args.stop_after,
        interrupt: Some(interrupt),
        progress: true,
    };
    log(format!(
        "training: {} steps of {}×{} sequences, lr {:.2e} ({:?}, {} warmup), eval every {}, checkpoint every {}",
        cfg.steps,
        cfg.batch_size,
        cfg.grad_accum,
        cfg.lr,
        cfg.schedule,
        cfg.warmup_steps,
        cfg.eval_every,
        cfg.save_every
    ));
    let report = match lorag_train::train::train(&model, &ds.train, &ds.eval, &cfg, &args.out, &ctl)
    {
        Ok(r) => r,
        Err(e @ lorag_train::Error::NonFinite { .. }) => {
            bail!(
                "{e}; metrics in {}",
                args.out.join("metrics.jsonl").display()
            )
        }
        Err(e) => return Err(e.into()),
    };

    let adapter = args.out.join("adapter.gguf");
    let peft = args.out.join("peft");
    if !report.stopped_early {
        lorag_train::export::write_gguf_adapter_as(&model, &adapter, args.f16)?;
        lorag_train::export::write_peft(&model, &lora, &model_path.to_string_lossy(), &peft)?;
    }
    let summary = json!({
        "steps": report.steps_done,
        "total_steps": cfg.steps,
        "resumed_from": report.resumed_from,
        "interrupted": report.stopped_early,
        "train_loss_start": report.first_loss,
        "train_loss_end": report.final_loss,
        "eval_loss_start": report.eval_loss_start,
        "eval_loss_end": report.eval_loss_end,
        "tokens_per_s": round(report.tokens_per_s, 1),
        "seconds": round(t_start.elapsed().as_secs_f64(), 2),
        "model": model_path,
        "qlora": args.qlora,
        "lora": { "rank": lora.rank, "alpha": lora.alpha, "rslora": lora.rslora, "dropout": lora.dropout, "layers": n_adapters, "trainable_params": trainable },
        "paths": {
            "out": args.out,
            "adapter": (!report.stopped_early).then_some(&adapter),
            "peft": (!report.stopped_early).then_some(&peft),
            "metrics": report.metrics,
            "plot": report.plot,
            "checkpoint": report.checkpoint,
        },
        "data": {
            "file": args.data,
            "eval_file": args.eval_data,
            "train_examples": ds.train.len(),
            "eval_examples": ds.eval.len(),
            "stats": ds.stats,
        },
    });
    if args.json {
        println!("{summary}");
    } else if report.stopped_early {
        eprintln!(
            "stopped after step {} of {}: checkpoint in {}; run the same command with --resume to continue",
            report.steps_done,
            cfg.steps,
            report.checkpoint.display()
        );
    } else {
        eprintln!(
            "done: {} steps in {:.0} s ({:.0} tokens/s); train loss {} -> {}, eval loss {} -> {}",
            report.steps_done,
            t_start.elapsed().as_secs_f64(),
            report.tokens_per_s,
            fmt_loss(report.first_loss),
            fmt_loss(report.final_loss),
            fmt_loss(report.eval_loss_start),
            fmt_loss(report.eval_loss_end)
        );
        eprintln!(
            "adapter: {}  (lorag chat --lora {})\nPEFT:    {}\nmetrics: {}  plot: {}",
            adapter.display(),
            adapter.display(),
            peft.display(),
            report.metrics.display(),
            report.plot.display()
        );
    }
    if report.stopped_early {
        std::process::exit(EXIT_INTERRUPTED);
    }
    Ok(())
}

fn fmt_loss(l: Option<f64>) -> String {
    l.map_or("-".into(), |l| format!("{l:.4}"))
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

/// The keys whose values differ between two JSON objects, as `path: old -> new`.
fn differences(old: &serde_json::Value, new: &serde_json::Value, at: &str) -> Vec<String> {
    use serde_json::Value;
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .flat_map(|k| {
                    let p = if at.is_empty() {
                        k.clone()
                    } else {
                        format!("{at}.{k}")
                    };
                    differences(
                        a.get(k).unwrap_or(&Value::Null),
                        b.get(k).unwrap_or(&Value::Null),
                        &p,
                    )
                })
                .collect()
        }
        (a, b) if a == b => Vec::new(),
        (a, b) => vec![format!("{at}: {a} -> {b}")],
    }
}
