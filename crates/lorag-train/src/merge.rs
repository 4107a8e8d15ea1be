//! Merging GGUF LoRA adapters into their base model: `W' = W + Σ scale·(alpha/r)·B·A` for every
//! adapted tensor, written as a new GGUF in which every other tensor and every metadata key is
//! copied as it is.
//!
//! The scale rule is llama.cpp's (`llama-adapter.cpp`): an adapter with `adapter.lora.alpha` set
//! contributes `user_scale · alpha / r`, one without it `user_scale`. So a merged model computes
//! what llama.cpp computes with `--lora ADAPTER:SCALE` (up to the rounding of the output type).
//!
//! Invariants:
//! - Every adapter is checked before any work: it is a LoRA adapter for the base's architecture,
//!   its A/B tensors come in pairs, name tensors of the base, and have matching shapes and rank.
//!   An error names the adapter file and the tensor.
//! - The output is written through a `.partial` file and a rename ([`lorag_gguf::Writer`]).

use crate::{Error, Result};
use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType};
use candle_core::{DType, Device, Tensor};
use lorag_gguf::{GgmlType, Gguf, TensorInfo, Value, Writer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The type the merged tensors are written in (a quantized output is made from an F16 merge by
/// llama.cpp's quantizer, see `lorag_llm::quantize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergedType {
    F16,
    F32,
}

/// What a merge did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MergeReport {
    /// Base tensors that received a delta.
    pub merged_tensors: usize,
    pub copied_tensors: usize,
    /// Per adapter: path, user scale, alpha, rank, effective scale (user · alpha / r).
    pub adapters: Vec<AdapterInfo>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AdapterInfo {
    pub path: PathBuf,
    pub scale: f32,
    pub alpha: Option<f32>,
    pub rank: usize,
    pub effective_scale: f32,
    pub tensors: usize,
}

/// One adapted tensor of one adapter: A (r, n_in), B (n_out, r) and the effective scale.
struct Pair {
    a: TensorInfo,
    b: TensorInfo,
}

fn model_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Model {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

fn candle_type(t: GgmlType) -> Option<GgmlDType> {
    Some(match t.0 {
        0 => GgmlDType::F32,
        1 => GgmlDType::F16,
        2 => GgmlDType::Q4_0,
        3 => GgmlDType::Q4_1,
        6 => GgmlDType::Q5_0,
        7 => GgmlDType::Q5_1,
        8 => GgmlDType::Q8_0,
        9 => GgmlDType::Q8_1,
        10 => GgmlDType::Q2K,
        11 => GgmlDType::Q3K,
        12 => GgmlDType::Q4K,
        13 => GgmlDType::Q5K,
        14 => GgmlDType::Q6K,
        15 => GgmlDType::Q8K,
        30 => GgmlDType::BF16,
        _ => return None,
    })
}

/// A 2-D GGUF tensor as f32 (rows = dims[1], columns = dims[0]).
fn read_f32(g: &Gguf, t: &TensorInfo) -> Result<Tensor> {
    let ty = candle_type(t.ty).ok_or_else(|| {
        model_err(
            &g.path,
            format!(
                "tensor {} has type {}, which cannot be dequantized here",
                t.name, t.ty
            ),
        )
    })?;
    if t.dims.len() != 2 {
        return Err(model_err(
            &g.path,
            format!("tensor {} is not a matrix (dims {:?})", t.name, t.dims),
        ));
    }
    let bytes = g.read_tensor_bytes(t)?;
    let dims = vec![t.dims[1] as usize, t.dims[0] as usize];
    let q = qtensor_from_ggml(ty, &bytes, dims, &Device::Cpu)?;
    Ok(q.dequantize(&Device::Cpu)?.to_dtype(DType::F32)?)
}

/// Open and check one adapter against the base; returns its pairs keyed by base tensor name.
fn open_adapter(
    base: &Gguf,
    path: &Path,
    scale: f32,
) -> Result<(Gguf, BTreeMap<String, Pair>, AdapterInfo)> {
    let g = Gguf::open(path)?;
    if g.get_str("general.type") != Some("adapter") {
        return Err(model_err(
            path,
            "not a LoRA adapter (general.type is not \"adapter\"); the base model goes in --model",
        ));
    }
    if let Some(t) = g.get_str("adapter.type") {
        if t != "lora" {
            return Err(model_err(
                path,
                format!("adapter.type is {t:?}; only \"lora\" adapters can be merged"),
            ));
        }
    }
    if let (Some(a), Some(b)) = (g.architecture(), base.architecture()) {
        if a != b {
            return Err(model_err(
                path,
                format!("the adapter is for architecture {a:?}, the model is {b:?}"),
            ));
        }
    }
    let mut a_of: BTreeMap<String, TensorInfo> = BTreeMap::new();
    let mut b_of: BTreeMap<String, TensorInfo> = BTreeMap::new();
    for t in &g.tensors {
        if let Some(n) = t.name.strip_suffix(".lora_a") {
            a_of.insert(n.to_string(), t.clone());
        } else if let Some(n) = t.name.strip_suffix(".lora_b") {
            b_of.insert(n.to_string(), t.clone());
        } else {
            return Err(model_err(
                path,
                format!(
                    "tensor {} is neither a .lora_a nor a .lora_b tensor",
                    t.name
                ),
            ));
        }
    }
    let mut pairs = BTreeMap::new();
    let mut rank = None;
    for (name, a) in a_of {
        let b = b_of
            .remove(&name)
            .ok_or_else(|| model_err(path, format!("{name}.lora_a has no {name}.lora_b")))?;
        let w = base.tensor(&name).ok_or_else(|| {
            model_err(
                path,
                format!(
                    "the adapter changes {name}, which the model {} does not have (an adapter for another model?)",
                    base.path.display()
                ),
            )
        })?;
        // ggml shapes: W [n_in, n_out], A [n_in, r], B [r, n_out].
        let ok = w.dims.len() == 2
            && a.dims.len() == 2
            && b.dims.len() == 2
            && a.dims[0] == w.dims[0]
            && b.dims[1] == w.dims[1]
            && a.dims[1] == b.dims[0];
        if !ok {
            return Err(model_err(
                path,
                format!(
                    "{name}: lora_a {:?} and lora_b {:?} do not fit the model's tensor {:?} (ggml order)",
                    a.dims, b.dims, w.dims
                ),
            ));
        }
        // llama.cpp allows a rank per tensor; so do we (alpha/r is per tensor).
        rank.get_or_insert(a.dims[1] as usize);
        pairs.insert(name, Pair { a, b });
    }
    if let Some(name) = b_of.keys().next() {
        return Err(model_err(
            path,
            format!("{name}.lora_b has no {name}.lora_a"),
        ));
    }
    if pairs.is_empty() {
        return Err(model_err(path, "the adapter has no LoRA tensors"));
    }
    let alpha = g
        .get("adapter.lora.alpha")
        .and_then(Value::as_f64)
        .map(|a| a as f32)
        .filter(|&a| a != 0.0);
    let rank = rank.unwrap_or(0);
    let info = AdapterInfo {
        path: path.to_path_buf(),
        scale,
        alpha,
        rank,
        effective_scale: alpha.map_or(scale, |a| scale * a / rank as f32),
        tensors: pairs.len(),
    };
    Ok((g, pairs, info))
}

fn f16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|&x| lorag_gguf::f32_to_f16_bits(x).to_le_bytes())
        .collect()
}

/// Merge `adapters` (path, user scale) into the GGUF model `base` and write the result to `out`.
pub fn merge(
    base: &Path,
    adapters: &[(PathBuf, f32)],
    out: &Path,
    ty: MergedType,
) -> Result<MergeReport> {
    if adapters.is_empty() {
        return Err(Error::Invalid("no adapter to merge (pass --lora)".into()));
    }
    let g = Gguf::open(base)?;
    if g.get_str("general.type") == Some("adapter") {
        return Err(model_err(
            base,
            "this is a LoRA adapter, not a base model; it goes in --lora",
        ));
    }
    if g.tensors.is_empty() {
        return Err(model_err(
            base,
            "the model has no tensors (vocab-only GGUF?)",
        ));
    }
    let mut opened = Vec::new();
    let mut infos = Vec::new();
    for (p, s) in adapters {
        if !s.is_finite() {
            return Err(model_err(p, format!("scale {s} is not a finite number")));
        }
        let (ag, pairs, info) = open_adapter(&g, p, *s)?;
        opened.push((ag, pairs));
        infos.push(info);
    }

    let mut w = Writer::new();
    for (k, v) in &g.metadata {
        w.set(k.clone(), v.clone());
    }
    let (mut merged, mut copied) = (0, 0);
    for t in &g.tensors {
        let deltas: Vec<(&Gguf, &Pair, f32)> = opened
            .iter()
            .zip(&infos)
            .filter_map(|((ag, pairs), info)| {
                pairs.get(&t.name).map(|p| {
                    let r = p.a.dims[1] as f32;
                    let s = info.alpha.map_or(info.scale, |a| info.scale * a / r);
                    (ag, p, s)
                })
            })
            .collect();
        if deltas.is_empty() {
            w.tensor(t.name.clone(), &t.dims, t.ty, g.read_tensor_bytes(t)?);
            copied += 1;
            continue;
        }
        let mut wt = read_f32(&g, t)?;
        for (ag, p, s) in deltas {
            let a = read_f32(ag, &p.a)?; // (r, n_in)
            let b = read_f32(ag, &p.b)?; // (n_out, r)
            wt = (wt + (b.matmul(&a)? * s as f64)?)?;
        }
        let v = wt.flatten_all()?.to_vec1::<f32>()?;
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::Invalid(format!(
                "merging into {} gives a non-finite value at element {i}; check the adapter scales",
                t.name
            )));
        }
        match ty {
            MergedType::F16 => w.tensor(t.name.clone(), &t.dims, GgmlType::F16, f16_bytes(&v)),
            MergedType::F32 => w.tensor_f32(t.name.clone(), &t.dims, &v),
        }
        merged += 1;
    }
    // llama.cpp's "mostly" file type: the merged weights are now in this type.
    w.set(
        "general.file_type",
        Value::U32(match ty {
            MergedType::F32 => 0,
            MergedType::F16 => 1,
        }),
    );
    w.write(out).map_err(crate::io_err(out))?;
    Ok(MergeReport {
        merged_tensors: merged,
        copied_tensors: copied,
        adapters: infos,
    })
}
