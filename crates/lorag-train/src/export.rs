//! Adapter export: a GGUF LoRA adapter for llama.cpp, and a PEFT folder for Hugging Face.
//!
//! - GGUF: `general.type=adapter`, `adapter.type=lora`, `adapter.lora.alpha`, tensors
//!   `blk.N.<name>.weight.lora_a` (ggml [n_in, r]) and `.lora_b` ([r, n_out]), F32, under the
//!   GGUF names of the base (llama.cpp multiplies B·A by alpha/r; we write alpha = scale·r, so
//!   rsLoRA's alpha/√r survives).
//! - PEFT: `adapter_config.json` + `adapter_model.safetensors` with Hugging Face module names
//!   and shapes (lora_A (r, in), lora_B (out, r)). llama.cpp's llama q/k rows are permuted for
//!   its NORM rope, Hugging Face's are not: lora_B rows of q and k are put back in HF order.

use crate::lora::LoraConfig;
use crate::models::{Arch, Model};
use crate::repack::hf_rows_from_gguf;
use crate::{io_err, Error, Result};
use candle_core::Tensor;
use lorag_gguf::{Value, Writer};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

fn f32_bytes(t: &Tensor) -> Result<Vec<u8>> {
    Ok(t.flatten_all()?
        .to_vec1::<f32>()?
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect())
}

/// (layer index, GGUF short name) of a linear layer named `blk.N.<name>`.
fn split_name(full: &str) -> Option<(usize, &str)> {
    let rest = full.strip_prefix("blk.")?;
    let (n, name) = rest.split_once('.')?;
    Some((n.parse().ok()?, name))
}

/// Write the model's adapters as a GGUF LoRA adapter that llama.cpp loads.
pub fn write_gguf_adapter(model: &Model, out: &Path) -> Result<usize> {
    let mut w = Writer::new();
    w.set(
        "general.architecture",
        Value::String(model.hp.arch.name().into()),
    );
    w.set("general.type", Value::String("adapter".into()));
    w.set("general.name", Value::String("lorag LoRA adapter".into()));
    w.set("adapter.type", Value::String("lora".into()));
    let mut alpha = None;
    let mut n = 0;
    for (lin, l) in model.lora_layers() {
        let (n_out, n_in) = lin.dims();
        let r = l.rank();
        let a = (l.scale * r as f64) as f32;
        if *alpha.get_or_insert(a) != a {
            return Err(Error::Invalid(
                "adapters with different scales cannot share one GGUF alpha".into(),
            ));
        }
        w.tensor(
            format!("{}.weight.lora_a", lin.name),
            &[n_in as u64, r as u64],
            lorag_gguf::GgmlType::F32,
            f32_bytes(l.a.as_tensor())?,
        );
        w.tensor(
            format!("{}.weight.lora_b", lin.name),
            &[r as u64, n_out as u64],
            lorag_gguf::GgmlType::F32,
            f32_bytes(l.b.as_tensor())?,
        );
        n += 1;
    }
    let alpha = alpha.ok_or_else(|| Error::Invalid("the model has no adapters".into()))?;
    w.set("adapter.lora.alpha", Value::F32(alpha));
    w.write(out).map_err(io_err(out))?;
    Ok(n)
}

/// Hugging Face tensor name of a PEFT adapter tensor (`part` is `lora_A` or `lora_B`).
pub fn peft_name(arch: Arch, gguf_full: &str, part: &str) -> Option<String> {
    let (layer, name) = split_name(gguf_full)?;
    let hf = arch.hf_name(name)?;
    Some(format!(
        "base_model.model.model.layers.{layer}.{hf}.{part}.weight"
    ))
}

/// The adapters as PEFT tensors (HF names and shapes, q/k rows in HF order).
pub fn peft_tensors(model: &Model) -> Result<HashMap<String, Tensor>> {
    let hp = &model.hp;
    let mut out = HashMap::new();
    for (lin, l) in model.lora_layers() {
        let (_, short) = split_name(&lin.name).expect("block linear names are blk.N.name");
        let name = |part| {
            peft_name(hp.arch, &lin.name, part)
                .ok_or_else(|| Error::Invalid(format!("{} has no Hugging Face name", lin.name)))
        };
        let mut b = l.b.as_tensor().clone();
        if hp.arch == Arch::Llama && (short == "attn_q" || short == "attn_k") {
            let heads = if short == "attn_q" {
                hp.n_head
            } else {
                hp.n_head_kv
            };
            let idx: Vec<u32> = hf_rows_from_gguf(heads, hp.head_dim)
                .into_iter()
                .map(|i| i as u32)
                .collect();
            let idx = Tensor::from_vec(idx, b.dim(0)?, b.device())?;
            b = b.index_select(&idx, 0)?;
        }
        out.insert(name("lora_A")?, l.a.as_tensor().detach().contiguous()?);
        out.insert(name("lora_B")?, b.detach().contiguous()?);
    }
    if out.is_empty() {
        return Err(Error::Invalid("the model has no adapters".into()));
    }
    Ok(out)
}

/// Write `adapter_config.json` and `adapter_model.safetensors` into `dir`.
pub fn write_peft(model: &Model, cfg: &LoraConfig, base_model: &str, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let tensors = peft_tensors(model)?;
    let targets: BTreeSet<&str> = model
        .lora_layers()
        .filter_map(|(lin, _)| split_name(&lin.name))
        .filter_map(|(_, n)| model.hp.arch.hf_name(n))
        .map(|hf| hf.rsplit('.').next().expect("non-empty"))
        .collect();
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": cfg.rank,
        "lora_alpha": cfg.alpha,
        "lora_dropout": cfg.dropout,
        "use_rslora": cfg.rslora,
        "target_modules": targets,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "modules_to_save": null,
        "layers_to_transform": null,
        "revision": null,
    });
    let p = dir.join("adapter_config.json");
    std::fs::write(&p, serde_json::to_string_pretty(&config).expect("json")).map_err(io_err(&p))?;
    candle_core::safetensors::save(&tensors, dir.join("adapter_model.safetensors"))?;
    Ok(())
}
