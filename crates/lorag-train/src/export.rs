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

/// How a tensor's values become a GGUF tensor's bytes.
type TensorBytes = fn(&Tensor) -> Result<Vec<u8>>;

/// Bytes of a tensor as F16 (IEEE half, round to nearest even).
fn f16_bytes(t: &Tensor) -> Result<Vec<u8>> {
    Ok(t.flatten_all()?
        .to_vec1::<f32>()?
        .iter()
        .flat_map(|v| lorag_gguf::f32_to_f16_bits(*v).to_le_bytes())
        .collect())
}

/// Write the model's adapters as a GGUF LoRA adapter that llama.cpp loads (F32 tensors).
pub fn write_gguf_adapter(model: &Model, out: &Path) -> Result<usize> {
    write_gguf_adapter_as(model, out, false)
}

/// As [`write_gguf_adapter`], with F16 tensors when `f16` (half the size; llama.cpp applies
/// them as it does F32 ones).
pub fn write_gguf_adapter_as(model: &Model, out: &Path, f16: bool) -> Result<usize> {
    let (ty, bytes): (_, TensorBytes) = if f16 {
        (lorag_gguf::GgmlType::F16, f16_bytes)
    } else {
        (lorag_gguf::GgmlType::F32, f32_bytes)
    };
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
            ty,
            bytes(l.a.as_tensor())?,
        );
        w.tensor(
            format!("{}.weight.lora_b", lin.name),
            &[r as u64, n_out as u64],
            ty,
            bytes(l.b.as_tensor())?,
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

/// Write `adapter_config.json` and `adapter_model.safetensors` into `dir`: both are written in
/// `DIR.partial/`, which then replaces `dir`, so `dir` is a whole adapter or as it was (a full
/// disk leaves the previous export and no partial folder).
pub fn write_peft(model: &Model, cfg: &LoraConfig, base_model: &str, dir: &Path) -> Result<()> {
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("peft");
    let tmp = dir.with_file_name(format!("{name}.partial"));
    let _ = std::fs::remove_dir_all(&tmp);
    let written = write_peft_files(model, cfg, base_model, &tmp);
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    written?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io_err(dir))?;
    }
    std::fs::rename(&tmp, dir).map_err(io_err(dir))
}

fn write_peft_files(model: &Model, cfg: &LoraConfig, base_model: &str, dir: &Path) -> Result<()> {
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
    crate::train::save_tensors(&tensors, &dir.join("adapter_model.safetensors"))
}

/// Hugging Face `config.json` of `model` (`LlamaForCausalLM`, `Phi3ForCausalLM` or
/// `Qwen2ForCausalLM`), f32 weights. `tied`: the output head is the token embedding.
pub fn hf_config(model: &Model, tied: bool, gguf: &lorag_gguf::Gguf) -> serde_json::Value {
    let hp = &model.hp;
    let (arch, model_type) = match hp.arch {
        Arch::Llama => ("LlamaForCausalLM", "llama"),
        Arch::Phi3 => ("Phi3ForCausalLM", "phi3"),
        Arch::Qwen2 => ("Qwen2ForCausalLM", "qwen2"),
    };
    let token = |k: &str| {
        gguf.get(&format!("tokenizer.ggml.{k}_token_id"))
            .and_then(Value::as_u64)
    };
    // f32 metadata printed as the shortest decimal that reads back the same (1e-5, not 9.99e-6).
    let f = |x: f32| x.to_string().parse::<f64>().unwrap_or(x as f64);
    let mut c = serde_json::json!({
        "architectures": [arch],
        "model_type": model_type,
        "vocab_size": hp.n_vocab,
        "hidden_size": hp.n_embd,
        "intermediate_size": hp.n_ff,
        "num_hidden_layers": hp.n_layer,
        "num_attention_heads": hp.n_head,
        "num_key_value_heads": hp.n_head_kv,
        "head_dim": hp.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": hp.n_ctx_train,
        "rms_norm_eps": f(hp.rms_eps),
        // transformers 4 reads rope_theta, 5 reads rope_parameters (and converts rope_theta).
        "rope_theta": f(hp.rope_base),
        "rope_parameters": {"rope_type": "default", "rope_theta": f(hp.rope_base)},
        "rope_scaling": null,
        "tie_word_embeddings": tied,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "use_cache": true,
        "torch_dtype": "float32",
        "bos_token_id": token("bos"),
        "eos_token_id": token("eos"),
        "pad_token_id": token("padding"),
    });
    let extra = match hp.arch {
        Arch::Llama => serde_json::json!({
            "attention_bias": false, "mlp_bias": false, "pretraining_tp": 1,
        }),
        Arch::Phi3 => serde_json::json!({
            "original_max_position_embeddings": hp.n_ctx_train,
            "resid_pdrop": 0.0, "embd_pdrop": 0.0, "sliding_window": null,
        }),
        Arch::Qwen2 => serde_json::json!({
            "use_sliding_window": false, "sliding_window": null,
            "max_window_layers": hp.n_layer,
        }),
    };
    let obj = c.as_object_mut().expect("object");
    obj.extend(extra.as_object().expect("object").clone());
    c
}

/// The frozen base of `model` as a Hugging Face transformers folder: `config.json` and
/// `model.safetensors` (f32, HF tensor names; llama q/k rows put back in HF order, the inverse of
/// llama.cpp's converter). A quantized base is written dequantized, i.e. exactly the weights the
/// trainer computes with. With the PEFT export ([`write_peft`]) this gives a base + adapter pair
/// that `transformers` + `peft` load. Returns the number of tensors written.
pub fn write_hf_base(model: &Model, dir: &Path) -> Result<usize> {
    use crate::models::Embedding;
    let hp = &model.hp;
    if hp.n_rot != hp.head_dim {
        return Err(Error::Invalid(
            "partial rotary dimensions have no Hugging Face export yet".into(),
        ));
    }
    let gguf = lorag_gguf::Gguf::open(&model.path)?;
    let tied = gguf.tensor("output.weight").is_none();
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let dev = model.device.clone();
    let mut out: HashMap<String, Tensor> = HashMap::new();
    let embed = match &model.embed {
        Embedding::Quant(q) => q.dequantize(&dev)?,
        Embedding::Dense(t) => t.clone(),
    };
    out.insert(
        "model.embed_tokens.weight".into(),
        embed.to_dtype(candle_core::DType::F32)?,
    );
    out.insert("model.norm.weight".into(), model.out_norm.clone());
    if !tied {
        out.insert("lm_head.weight".into(), model.lm_head.weight.to_dense()?);
    }
    for (l, blk) in model.blocks.iter().enumerate() {
        let p = format!("model.layers.{l}");
        out.insert(format!("{p}.input_layernorm.weight"), blk.attn_norm.clone());
        out.insert(
            format!("{p}.post_attention_layernorm.weight"),
            blk.ffn_norm.clone(),
        );
        for lin in blk.linears() {
            let (_, short) = split_name(&lin.name).expect("block linear names are blk.N.name");
            let hf = hp
                .arch
                .hf_name(short)
                .ok_or_else(|| Error::Invalid(format!("{} has no Hugging Face name", lin.name)))?;
            let mut w = lin.weight.to_dense()?;
            let mut b = lin.bias.clone();
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
                let idx = Tensor::from_vec(idx, w.dim(0)?, &dev)?;
                w = w.index_select(&idx, 0)?;
                b = b.map(|b| b.index_select(&idx, 0)).transpose()?;
            }
            out.insert(format!("{p}.{hf}.weight"), w.contiguous()?);
            if let Some(b) = b {
                out.insert(format!("{p}.{hf}.bias"), b.contiguous()?);
            }
        }
    }
    let config = hf_config(model, tied, &gguf);
    let cp = dir.join("config.json");
    std::fs::write(&cp, serde_json::to_string_pretty(&config).expect("json"))
        .map_err(io_err(&cp))?;
    let n = out.len();
    candle_core::safetensors::save(&out, dir.join("model.safetensors"))?;
    Ok(n)
}
