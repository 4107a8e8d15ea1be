//! The training loop (nanoGPT style: everything that happens in a step is in [`train`]), with its
//! helpers below it: length-bucketed batches, evaluation, metrics, checkpoints.
//!
//! Invariants:
//! - A run is a pure function of (model, data, config): batches, dropout masks and the schedule
//!   derive from the seed and the step, so stopping after step k and resuming from the checkpoint
//!   gives the same numbers as a straight run.
//! - A checkpoint is complete or absent (written to `checkpoint.partial/`, synced, then renamed;
//!   [`recover_checkpoint`] undoes a kill between the renames), so kill -9 at any point and
//!   `--resume` give the adapter of a straight run.
//! - A NaN/inf loss or gradient stops the run before the update; the last checkpoint stays.

use crate::data::Example;
use crate::linear::{ForwardCtx, QuantForward};
use crate::models::Model;
use crate::optim::{clip_grad_norm, lr_at, AdamW, AdamWParams, Schedule};
use crate::rng::{mix, Rng};
use crate::{io_err, Error, Result};
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Optimizer steps in the whole run.
    pub steps: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    pub schedule: Schedule,
    /// The schedule decays to `lr · min_lr_ratio`.
    pub min_lr_ratio: f64,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Clip the global gradient norm to this (0: off).
    pub max_grad_norm: f64,
    pub adamw: AdamWParams,
    /// Evaluate every N steps (0: only at the start and the end).
    pub eval_every: usize,
    /// Checkpoint every N steps (0: only at the end).
    pub save_every: usize,
    pub seed: u64,
    #[serde(skip)]
    pub quant: QuantForward,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 100,
            lr: 2e-4,
            warmup_steps: 10,
            schedule: Schedule::Cosine,
            min_lr_ratio: 0.1,
            batch_size: 4,
            grad_accum: 1,
            max_grad_norm: 1.0,
            adamw: AdamWParams::default(),
            eval_every: 50,
            save_every: 50,
            seed: 42,
            quant: QuantForward::default(),
        }
    }
}

/// How a run is driven (not part of what is computed).
#[derive(Default, Clone)]
pub struct RunControl {
    /// Continue from `<run>/checkpoint` when there is one.
    pub resume: bool,
    /// Stop (with a checkpoint) after this step, as an interruption would.
    pub stop_after: Option<usize>,
    /// Set from outside (a Ctrl-C handler): save a checkpoint and stop after the current step.
    pub interrupt: Option<Arc<AtomicBool>>,
    pub progress: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Metric {
    pub step: usize,
    pub loss: Option<f64>,
    pub eval_loss: Option<f64>,
    pub lr: f64,
    pub tokens_per_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub steps_done: usize,
    pub resumed_from: Option<usize>,
    pub first_loss: Option<f64>,
    pub final_loss: Option<f64>,
    pub eval_loss_start: Option<f64>,
    pub eval_loss_end: Option<f64>,
    pub tokens_per_s: f64,
    pub stopped_early: bool,
    pub metrics: PathBuf,
    pub plot: PathBuf,
    pub checkpoint: PathBuf,
}

/// Train the adapters of `model` (its `Var`s) on `train`, evaluating on `eval`, in `run_dir`.
pub fn train(
    model: &Model,
    train: &[Example],
    eval: &[Example],
    cfg: &TrainConfig,
    run_dir: &Path,
    ctl: &RunControl,
) -> Result<TrainReport> {
    let named = model.lora_vars();
    if named.is_empty() {
        return Err(Error::Invalid(
            "the model has no LoRA adapters to train".into(),
        ));
    }
    check_config(cfg, train)?;
    std::fs::create_dir_all(run_dir).map_err(io_err(run_dir))?;
    let names: Vec<String> = named.iter().map(|(n, _)| n.clone()).collect();
    let vars: Vec<Var> = named.into_iter().map(|(_, v)| v).collect();
    let mut opt = AdamW::new(&vars, cfg.adamw)?;
    let plan = BatchPlan::new(train, cfg);
    let mut log = MetricsLog::open(run_dir)?;
    let mut start = 0;
    if ctl.resume && recover_checkpoint(run_dir)?.is_some() {
        start = load_checkpoint(run_dir, &names, &vars, &mut opt, cfg)?;
        log.truncate_after(start)?;
        if ctl.progress {
            eprintln!(
                "resuming from step {start} of {} ({})",
                cfg.steps,
                checkpoint_dir(run_dir).display()
            );
        }
    } else {
        log.reset()?;
        let el = eval_loss(model, eval, cfg)?;
        log.push(Metric {
            step: 0,
            loss: None,
            eval_loss: el,
            lr: 0.0,
            tokens_per_s: None,
        })?;
    }
    let mut progress = Progress::new(ctl.progress, cfg.steps, start);
    let (mut tokens_total, t_run) = (0usize, Instant::now());
    let mut stopped_early = false;
    for step in start..cfg.steps {
        let t0 = Instant::now();
        let lr = lr_at(
            step,
            cfg.steps,
            cfg.warmup_steps,
            cfg.lr,
            cfg.min_lr_ratio,
            cfg.schedule,
        );
        let micro = plan.step(step, cfg.grad_accum);
        let n_targets: usize = micro.iter().map(|b| b.n_targets).sum::<usize>().max(1);
        let (mut grads, mut loss_sum, mut tokens) = (vec![None::<Tensor>; vars.len()], 0f64, 0);
        for (i, b) in micro.iter().enumerate() {
            let ctx = ForwardCtx {
                dropout_seed: Some(mix(cfg.seed, (step * 1024 + i) as u64)),
                quant: cfg.quant,
            };
            let (loss, _) = model.loss_sum(&model.ids(&b.inputs)?, &b.targets, &b.mask, &ctx)?;
            let g = (&loss / n_targets as f64)?.backward()?;
            for (acc, v) in grads.iter_mut().zip(&vars) {
                let gv = g
                    .get(v.as_tensor())
                    .cloned()
                    .unwrap_or(v.as_tensor().zeros_like()?);
                *acc = Some(match acc.take() {
                    Some(a) => (a + gv)?,
                    None => gv,
                });
            }
            loss_sum += loss.to_scalar::<f32>()? as f64;
            tokens += b.n_tokens;
        }
        let loss = loss_sum / n_targets as f64;
        let mut grads: Vec<Tensor> = grads
            .into_iter()
            .map(|g| g.expect("one micro-batch at least"))
            .collect();
        let norm = clip_grad_norm(&mut grads, cfg.max_grad_norm)?;
        if !loss.is_finite() || !norm.is_finite() {
            progress.abandon();
            write_plot(run_dir, &log)?;
            return Err(Error::NonFinite {
                step: step + 1,
                loss,
                last_checkpoint: last_checkpoint_step(run_dir),
            });
        }
        opt.step(&vars, &grads, lr)?;
        let done = step + 1;
        let tok_s = tokens as f64 / t0.elapsed().as_secs_f64().max(1e-9);
        tokens_total += tokens;
        let last = done == cfg.steps;
        let el = if last || (cfg.eval_every > 0 && done % cfg.eval_every == 0) {
            eval_loss(model, eval, cfg)?
        } else {
            None
        };
        log.push(Metric {
            step: done,
            loss: Some(loss),
            eval_loss: el,
            lr,
            tokens_per_s: Some(tok_s),
        })?;
        progress.step(done, loss, lr, tok_s, el);
        let interrupted = ctl
            .interrupt
            .as_ref()
            .is_some_and(|f| f.load(Ordering::SeqCst))
            || ctl.stop_after == Some(done);
        if last || interrupted || (cfg.save_every > 0 && done % cfg.save_every == 0) {
            save_checkpoint(run_dir, &names, &vars, &opt, done, cfg)?;
            write_plot(run_dir, &log)?;
        }
        if interrupted && !last {
            stopped_early = true;
            break;
        }
    }
    progress.finish();
    write_plot(run_dir, &log)?;
    let train_losses: Vec<f64> = log.rows.iter().filter_map(|m| m.loss).collect();
    let evals: Vec<f64> = log.rows.iter().filter_map(|m| m.eval_loss).collect();
    Ok(TrainReport {
        steps_done: log.rows.last().map_or(0, |m| m.step),
        resumed_from: (start > 0).then_some(start),
        first_loss: train_losses.first().copied(),
        final_loss: train_losses.last().copied(),
        eval_loss_start: evals.first().copied(),
        eval_loss_end: evals.last().copied(),
        tokens_per_s: tokens_total as f64 / t_run.elapsed().as_secs_f64().max(1e-9),
        stopped_early,
        metrics: log.path.clone(),
        plot: run_dir.join("loss.svg"),
        checkpoint: checkpoint_dir(run_dir),
    })
}

fn check_config(cfg: &TrainConfig, train: &[Example]) -> Result<()> {
    let bad = |m: &str| Err(Error::Invalid(m.into()));
    if train.is_empty() {
        return bad("no training examples");
    }
    if cfg.steps == 0 || cfg.batch_size == 0 || cfg.grad_accum == 0 {
        return bad("steps, batch size and gradient accumulation must be at least 1");
    }
    if !(cfg.lr.is_finite() && cfg.lr > 0.0) {
        return bad("the learning rate must be a positive number");
    }
    Ok(())
}

/// A padded micro-batch: `inputs` rows of equal length, next-token `targets` and the loss mask
/// (reply tokens only; right padding is masked out, and causal attention keeps pads from
/// influencing real positions).
pub struct Batch {
    pub inputs: Vec<Vec<i32>>,
    pub targets: Vec<u32>,
    pub mask: Vec<bool>,
    pub n_targets: usize,
    /// Real (unpadded) input tokens.
    pub n_tokens: usize,
}

impl Batch {
    pub fn new(examples: &[&Example]) -> Self {
        let t = examples
            .iter()
            .map(|e| e.tokens.len() - 1)
            .max()
            .unwrap_or(0);
        let mut b = Batch {
            inputs: Vec::new(),
            targets: Vec::new(),
            mask: Vec::new(),
            n_targets: 0,
            n_tokens: 0,
        };
        for e in examples {
            let n = e.tokens.len() - 1;
            let mut row = e.tokens[..n].to_vec();
            row.resize(t, e.tokens[0]);
            b.inputs.push(row);
            for j in 0..t {
                let m = j < n && e.mask[j + 1];
                b.targets
                    .push(if j < n { e.tokens[j + 1] as u32 } else { 0 });
                b.mask.push(m);
                b.n_targets += usize::from(m);
            }
            b.n_tokens += n;
        }
        b
    }
}

/// The sequence of micro-batches of a run: per epoch, a seeded shuffle, then sort by length
/// within windows of 32 batches (length bucketing: little padding), then a shuffle of the batches.
pub struct BatchPlan<'a> {
    examples: &'a [Example],
    batches: Vec<Vec<usize>>,
}

impl<'a> BatchPlan<'a> {
    pub fn new(examples: &'a [Example], cfg: &TrainConfig) -> Self {
        let per_epoch = examples.len().div_ceil(cfg.batch_size);
        let needed = cfg.steps * cfg.grad_accum;
        let mut batches = Vec::with_capacity(needed);
        let mut epoch = 0u64;
        while batches.len() < needed {
            let mut rng = Rng::new(mix(cfg.seed, 0xE90C + epoch));
            let mut order: Vec<usize> = (0..examples.len()).collect();
            rng.shuffle(&mut order);
            let mut epoch_batches = Vec::with_capacity(per_epoch);
            for window in order.chunks(cfg.batch_size * 32) {
                let mut w = window.to_vec();
                w.sort_by_key(|&i| examples[i].tokens.len());
                epoch_batches.extend(w.chunks(cfg.batch_size).map(<[usize]>::to_vec));
            }
            rng.shuffle(&mut epoch_batches);
            batches.extend(epoch_batches);
            epoch += 1;
        }
        Self { examples, batches }
    }

    pub fn epochs_to_steps(
        n_examples: usize,
        epochs: f64,
        batch: usize,
        grad_accum: usize,
    ) -> usize {
        let micro = (n_examples.div_ceil(batch.max(1)) as f64 * epochs).ceil() as usize;
        micro.div_ceil(grad_accum.max(1)).max(1)
    }

    pub fn step(&self, step: usize, grad_accum: usize) -> Vec<Batch> {
        self.batches[step * grad_accum..(step + 1) * grad_accum]
            .iter()
            .map(|idx| Batch::new(&idx.iter().map(|&i| &self.examples[i]).collect::<Vec<_>>()))
            .collect()
    }
}

/// Mean reply-token loss on `eval` (no dropout), or None without eval data.
pub fn eval_loss(model: &Model, eval: &[Example], cfg: &TrainConfig) -> Result<Option<f64>> {
    if eval.is_empty() {
        return Ok(None);
    }
    let mut idx: Vec<usize> = (0..eval.len()).collect();
    idx.sort_by_key(|&i| eval[i].tokens.len());
    let ctx = ForwardCtx {
        dropout_seed: None,
        quant: cfg.quant,
    };
    let (mut sum, mut n) = (0f64, 0usize);
    for chunk in idx.chunks(cfg.batch_size.max(1)) {
        let b = Batch::new(&chunk.iter().map(|&i| &eval[i]).collect::<Vec<_>>());
        let (loss, count) = model.loss_sum(&model.ids(&b.inputs)?, &b.targets, &b.mask, &ctx)?;
        sum += loss.detach().to_scalar::<f32>()? as f64;
        n += count;
    }
    Ok((n > 0).then(|| sum / n as f64))
}

/// Progress on stderr: an indicatif bar (loss, lr, tokens/s, ETA) on a terminal; otherwise (a
/// log file, a pipe) plain lines, about twenty per run and at every evaluation.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    lines: bool,
    steps: usize,
    start: usize,
    every: usize,
    t0: Instant,
}

impl Progress {
    fn new(show: bool, steps: usize, start: usize) -> Self {
        use std::io::IsTerminal;
        let tty = std::io::stderr().is_terminal();
        let bar = (show && tty).then(|| {
            let bar = indicatif::ProgressBar::new(steps as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{wide_bar}] {pos}/{len} {msg} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_position(start as u64);
            bar.reset_eta();
            bar
        });
        Self {
            bar,
            lines: show && !tty,
            steps,
            start,
            every: (steps / 20).max(1),
            t0: Instant::now(),
        }
    }

    fn step(&mut self, done: usize, loss: f64, lr: f64, tok_s: f64, eval: Option<f64>) {
        let msg = format!("loss {loss:.4} lr {lr:.2e} {tok_s:.0} tok/s");
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            bar.set_message(msg);
            if let Some(e) = eval {
                bar.println(format!("step {done}/{}: eval loss {e:.4}", self.steps));
            }
        } else if self.lines
            && (done.is_multiple_of(self.every) || done == self.steps || eval.is_some())
        {
            let per_step = self.t0.elapsed().as_secs_f64() / (done - self.start).max(1) as f64;
            let eta = per_step * (self.steps - done) as f64;
            let eval = eval.map_or(String::new(), |e| format!(" eval loss {e:.4}"));
            eprintln!(
                "step {done}/{} {msg}{eval} ETA {}",
                self.steps,
                fmt_secs(eta)
            );
        }
    }

    fn abandon(&self) {
        if let Some(b) = &self.bar {
            b.abandon();
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish();
        }
    }
}

fn fmt_secs(s: f64) -> String {
    let s = s.round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// `metrics.jsonl`: one line per step (and a step-0 line with the base model's eval loss).
struct MetricsLog {
    path: PathBuf,
    rows: Vec<Metric>,
}

impl MetricsLog {
    fn open(dir: &Path) -> Result<Self> {
        let path = dir.join("metrics.jsonl");
        let mut rows = Vec::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                match serde_json::from_str(line) {
                    Ok(m) => rows.push(m),
                    Err(_) => break, // a line cut by a crash: what follows it is not trusted
                }
            }
        }
        Ok(Self { path, rows })
    }

    fn reset(&mut self) -> Result<()> {
        self.rows.clear();
        self.rewrite()
    }

    fn truncate_after(&mut self, step: usize) -> Result<()> {
        self.rows.retain(|m| m.step <= step);
        self.rewrite()
    }

    fn rewrite(&self) -> Result<()> {
        let mut s = String::new();
        for m in &self.rows {
            s.push_str(&serde_json::to_string(m).expect("serializable"));
            s.push('\n');
        }
        lorag_core::write_atomic(&self.path, s.as_bytes()).map_err(io_err(&self.path))
    }

    fn push(&mut self, m: Metric) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(io_err(&self.path))?;
        writeln!(f, "{}", serde_json::to_string(&m).expect("serializable"))
            .map_err(io_err(&self.path))?;
        self.rows.push(m);
        Ok(())
    }
}

fn write_plot(dir: &Path, log: &MetricsLog) -> Result<()> {
    let train: Vec<(usize, f64)> = log
        .rows
        .iter()
        .filter_map(|m| m.loss.map(|l| (m.step, l)))
        .collect();
    let eval: Vec<(usize, f64)> = log
        .rows
        .iter()
        .filter_map(|m| m.eval_loss.map(|l| (m.step, l)))
        .collect();
    let p = dir.join("loss.svg");
    lorag_core::write_atomic(&p, crate::plot::loss_svg(&train, &eval).as_bytes())
        .map_err(io_err(&p))
}

/// What a checkpoint records besides tensors.
#[derive(Debug, Serialize, Deserialize)]
struct CheckpointState {
    step: usize,
    adam_t: usize,
    /// The config the run was started with: a resume must not silently change it.
    config: serde_json::Value,
}

pub fn checkpoint_dir(run: &Path) -> PathBuf {
    run.join("checkpoint")
}

/// The run's last complete checkpoint, after undoing what a kill in the middle of
/// [`save_checkpoint`] left: a `checkpoint.partial/` is dropped (it was never complete), and a
/// `checkpoint.old/` without a `checkpoint/` (killed between the two renames) becomes the
/// checkpoint again. None when the run has none.
pub fn recover_checkpoint(run: &Path) -> Result<Option<PathBuf>> {
    let dst = checkpoint_dir(run);
    let old = run.join("checkpoint.old");
    let tmp = run.join("checkpoint.partial");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    if !dst.exists() && old.join("state.json").is_file() {
        std::fs::rename(&old, &dst).map_err(io_err(&old))?;
    }
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io_err(&old))?;
    }
    Ok(dst.join("state.json").is_file().then_some(dst))
}

fn last_checkpoint_step(run: &Path) -> Option<usize> {
    let s = std::fs::read_to_string(checkpoint_dir(run).join("state.json")).ok()?;
    serde_json::from_str::<CheckpointState>(&s)
        .ok()
        .map(|c| c.step)
}

fn save_checkpoint(
    run: &Path,
    names: &[String],
    vars: &[Var],
    opt: &AdamW,
    step: usize,
    cfg: &TrainConfig,
) -> Result<()> {
    let tmp = run.join("checkpoint.partial");
    let _ = std::fs::remove_dir_all(&tmp);
    let written = write_checkpoint_files(&tmp, names, vars, opt, step, cfg);
    if written.is_err() {
        // A full disk: the last checkpoint stays, and no partial one is left to fill it more.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    written?;
    let dst = checkpoint_dir(run);
    let old = run.join("checkpoint.old");
    let _ = std::fs::remove_dir_all(&old);
    if dst.exists() {
        std::fs::rename(&dst, &old).map_err(io_err(&dst))?;
    }
    std::fs::rename(&tmp, &dst).map_err(io_err(&dst))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// The files of a checkpoint in `tmp`, each synced.
fn write_checkpoint_files(
    tmp: &Path,
    names: &[String],
    vars: &[Var],
    opt: &AdamW,
    step: usize,
    cfg: &TrainConfig,
) -> Result<()> {
    std::fs::create_dir_all(tmp).map_err(io_err(tmp))?;
    let adapter: std::collections::HashMap<String, Tensor> = names
        .iter()
        .cloned()
        .zip(vars.iter().map(|v| v.as_tensor().clone()))
        .collect();
    save_tensors(&adapter, &tmp.join("adapter.safetensors"))?;
    save_tensors(&opt.state(names), &tmp.join("optimizer.safetensors"))?;
    let state = CheckpointState {
        step,
        adam_t: opt.t,
        config: serde_json::to_value(cfg).expect("serializable"),
    };
    let sp = tmp.join("state.json");
    std::fs::write(
        &sp,
        serde_json::to_string_pretty(&state).expect("serializable"),
    )
    .map_err(io_err(&sp))?;
    // On disk before the renames, so that a crash of the machine (not only of the process)
    // cannot leave a renamed checkpoint whose files are empty.
    for f in ["adapter.safetensors", "optimizer.safetensors", "state.json"] {
        let p = tmp.join(f);
        std::fs::File::open(&p)
            .and_then(|f| f.sync_all())
            .map_err(io_err(&p))?;
    }
    Ok(())
}

/// candle's safetensors writer, with its error naming the file (a full disk says where).
pub(crate) fn save_tensors(
    tensors: &std::collections::HashMap<String, Tensor>,
    path: &Path,
) -> Result<()> {
    candle_core::safetensors::save(tensors, path).map_err(|e| Error::Model {
        path: path.to_path_buf(),
        msg: format!("could not write: {e}"),
    })
}

fn load_checkpoint(
    run: &Path,
    names: &[String],
    vars: &[Var],
    opt: &mut AdamW,
    cfg: &TrainConfig,
) -> Result<usize> {
    let dir = checkpoint_dir(run);
    let bad = |msg: String| Error::Model {
        path: dir.clone(),
        msg,
    };
    let sp = dir.join("state.json");
    let state: CheckpointState =
        serde_json::from_str(&std::fs::read_to_string(&sp).map_err(io_err(&sp))?)
            .map_err(|e| bad(format!("state.json: {e}")))?;
    let now = serde_json::to_value(cfg).expect("serializable");
    if state.config != now {
        return Err(bad(format!(
            "the checkpoint was made with another training configuration; resume with the same options, or use a new --out folder\n  checkpoint: {}\n  now:        {}",
            state.config, now
        )));
    }
    let dev = vars[0].device().clone();
    let adapter = candle_core::safetensors::load(dir.join("adapter.safetensors"), &dev)?;
    for (n, v) in names.iter().zip(vars) {
        let t = adapter.get(n).ok_or_else(|| {
            bad(format!(
                "adapter has no tensor {n} (other LoRA targets or rank?)"
            ))
        })?;
        if t.shape() != v.shape() {
            return Err(bad(format!(
                "{n} has shape {:?}, the model's adapter {:?}",
                t.shape(),
                v.shape()
            )));
        }
        v.set(t)?;
    }
    let o = candle_core::safetensors::load(dir.join("optimizer.safetensors"), &dev)?;
    opt.load_state(names, &o, state.adam_t).map_err(bad)?;
    Ok(state.step)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ckpt(dir: &Path, step: usize) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("state.json"), format!("{{\"step\": {step}}}")).unwrap();
    }

    fn step_of(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("state.json")).unwrap()
    }

    /// Every state a kill inside `save_checkpoint` can leave, and what resuming finds.
    #[test]
    fn a_kill_inside_save_checkpoint_leaves_the_last_complete_checkpoint() {
        let t = tempfile::tempdir().unwrap();
        let run = t.path();
        let (dst, old, tmp) = (
            checkpoint_dir(run),
            run.join("checkpoint.old"),
            run.join("checkpoint.partial"),
        );
        assert_eq!(recover_checkpoint(run).unwrap(), None);
        // Killed while writing the new one: the old one stands, the partial one goes.
        ckpt(&dst, 4);
        ckpt(&tmp, 8);
        assert_eq!(recover_checkpoint(run).unwrap(), Some(dst.clone()));
        assert!(step_of(&dst).contains('4') && !tmp.exists());
        // Killed between the two renames: the old one comes back.
        std::fs::rename(&dst, &old).unwrap();
        ckpt(&tmp, 8);
        assert_eq!(recover_checkpoint(run).unwrap(), Some(dst.clone()));
        assert!(step_of(&dst).contains('4') && !tmp.exists() && !old.exists());
        // Killed before the old one was removed: the new one stands.
        ckpt(&old, 4);
        std::fs::write(dst.join("state.json"), "{\"step\": 8}").unwrap();
        assert_eq!(recover_checkpoint(run).unwrap(), Some(dst.clone()));
        assert!(step_of(&dst).contains('8') && !old.exists());
    }
}
