//! `lorag merge`: fold GGUF LoRA adapters into their base model and write a standalone GGUF.
//!
//! The merged tensors are computed in f32 (`W + scale·(alpha/r)·B·A`, see
//! `lorag_train::merge`) and written as f16 (default) or f32; every other tensor and all metadata
//! are copied. Other `--type`s go through llama.cpp's own quantizer: the f16 merge is written to a
//! temporary file next to the output, quantized to a second one, and renamed onto the output, so
//! the output is complete or absent.

use anyhow::{bail, Context, Result};
use clap::Args;
use lorag_train::merge::{merge, MergedType};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Base model: a .gguf file or a catalogue name (default: smollm2-135m-instruct)
    #[arg(long, short)]
    pub model: Option<String>,
    /// GGUF LoRA adapter, optionally with a scale (PATH or PATH:SCALE); repeatable
    #[arg(long = "lora", value_name = "ADAPTER.gguf[:SCALE]", required = true)]
    pub lora: Vec<String>,
    /// Output GGUF
    #[arg(long, value_name = "OUT.gguf")]
    pub out: PathBuf,
    /// Output type: f16 (default), f32, or a llama.cpp quantization (q8_0, q6_k, q5_k_m, q4_k_m, q4_0, ...)
    #[arg(long = "type", default_value = "f16")]
    pub ty: String,
    /// CPU threads for quantization (default: all cores)
    #[arg(long)]
    pub threads: Option<i32>,
    /// Print one JSON object
    #[arg(long)]
    pub json: bool,
}

/// Removes a temporary file when dropped (on success it is already gone).
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn sibling(out: &Path, suffix: &str) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "merged.gguf".into());
    out.with_file_name(format!(".{name}.{suffix}"))
}

pub fn run(args: MergeArgs) -> Result<()> {
    let t0 = Instant::now();
    let ty = args.ty.to_ascii_lowercase();
    if !lorag_llm::QUANT_TYPES.iter().any(|(n, _)| *n == ty) {
        bail!(
            "--type {}: unknown type; use one of: {}",
            args.ty,
            lorag_llm::QUANT_TYPES
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let model = super::resolve_model(args.model.as_deref())?;
    let mut adapters = Vec::new();
    for spec in &args.lora {
        let (p, s) = super::parse_lora(spec)?;
        if !p.is_file() {
            bail!("LoRA adapter not found: {}", p.display());
        }
        adapters.push((p, s));
    }
    if args.out.is_dir() {
        bail!(
            "--out {} is a folder; give a .gguf file name",
            args.out.display()
        );
    }
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let report = match ty.as_str() {
        "f16" | "f32" => {
            let t = if ty == "f16" {
                MergedType::F16
            } else {
                MergedType::F32
            };
            merge(&model, &adapters, &args.out, t)?
        }
        q => {
            let f16 = TempFile(sibling(&args.out, "f16.partial"));
            let quant = TempFile(sibling(&args.out, "quant.partial"));
            let r = merge(&model, &adapters, &f16.0, MergedType::F16)?;
            let threads = args.threads.unwrap_or_else(lorag_llm::default_threads);
            lorag_llm::quantize(&f16.0, &quant.0, q, threads)?;
            std::fs::rename(&quant.0, &args.out)
                .with_context(|| format!("renaming onto {}", args.out.display()))?;
            r
        }
    };
    // The result must be a GGUF we (and so llama.cpp) accept.
    let g = lorag_gguf::Gguf::open(&args.out)?;
    let size = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    if args.json {
        println!(
            "{}",
            json!({
                "out": args.out,
                "model": model,
                "type": ty,
                "quantization": g.quantization(),
                "merged_tensors": report.merged_tensors,
                "copied_tensors": report.copied_tensors,
                "adapters": report.adapters,
                "bytes": size,
                "seconds": (t0.elapsed().as_secs_f64() * 100.0).round() / 100.0,
            })
        );
    } else {
        for a in &report.adapters {
            eprintln!(
                "{}: scale {} x alpha/r {} = {} on {} tensors",
                a.path.display(),
                a.scale,
                a.alpha
                    .map_or("(none)".into(), |al| format!("{al}/{}", a.rank)),
                a.effective_scale,
                a.tensors
            );
        }
        eprintln!(
            "merged {} tensors, copied {}: {} ({}, {:.1} MB) in {:.1} s",
            report.merged_tensors,
            report.copied_tensors,
            args.out.display(),
            g.quantization(),
            size as f64 / 1e6,
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
