//! `lorag models list`: what is in the models folder, read from the files themselves.

use crate::{catalog, entry_path, io_err, Error, Kind, Result};
use lorag_gguf::Gguf;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub kind: &'static str,
    pub path: PathBuf,
    pub fetched: bool,
    pub architecture: Option<String>,
    pub parameters: Option<u64>,
    pub quantization: Option<String>,
    pub context_length: Option<u64>,
    /// A short name of the chat template family ("chatml", "phi3", ...), "custom", or "none".
    pub chat_template: Option<String>,
}

/// Name the family of a Jinja chat template by its markers.
pub fn template_family(t: &str) -> &'static str {
    if t.contains("<|im_start|>") {
        "chatml"
    } else if t.contains("<|user|>") && t.contains("<|end|>") {
        "phi3"
    } else if t.contains("<start_of_turn>") {
        "gemma"
    } else if t.contains("<|start_header_id|>") {
        "llama3"
    } else if t.contains("[INST]") {
        "llama2"
    } else {
        "custom"
    }
}

/// Describe one model file (GGUF) or folder (sentence-transformers).
pub fn describe(name: &str, path: &Path) -> Result<ModelInfo> {
    if path.extension().is_some_and(|e| e != "gguf") && path.is_file() {
        // A data set file: nothing to read but its presence.
        return Ok(ModelInfo {
            name: name.to_string(),
            kind: "dataset",
            path: path.to_path_buf(),
            fetched: true,
            architecture: None,
            parameters: None,
            quantization: None,
            context_length: None,
            chat_template: None,
        });
    }
    if path.is_dir() {
        return describe_folder(name, path);
    }
    let g = Gguf::open(path)?;
    let vocab_only = g.tensors.is_empty();
    Ok(ModelInfo {
        name: name.to_string(),
        kind: if vocab_only { "vocab" } else { "chat" },
        path: path.to_path_buf(),
        fetched: true,
        architecture: g.architecture().map(str::to_string),
        parameters: (!vocab_only).then(|| g.n_params()),
        quantization: (!vocab_only).then(|| g.quantization()),
        context_length: g.arch_u64("context_length"),
        chat_template: Some(
            g.get_str("tokenizer.chat_template")
                .map(template_family)
                .unwrap_or("none")
                .to_string(),
        ),
    })
}

fn describe_folder(name: &str, dir: &Path) -> Result<ModelInfo> {
    let cfg_path = dir.join("config.json");
    let cfg: serde_json::Value = std::fs::read(&cfg_path)
        .map_err(io_err(&cfg_path))
        .and_then(|b| {
            serde_json::from_slice(&b).map_err(|e| Error::Archive {
                path: cfg_path.clone(),
                msg: e.to_string(),
            })
        })?;
    let (params, dtype) = safetensors_summary(&dir.join("model.safetensors"))?;
    Ok(ModelInfo {
        name: name.to_string(),
        kind: "embedding",
        path: dir.to_path_buf(),
        fetched: true,
        architecture: cfg["model_type"].as_str().map(str::to_string),
        parameters: Some(params),
        quantization: Some(dtype),
        context_length: cfg["max_position_embeddings"].as_u64(),
        chat_template: None,
    })
}

/// Parameter count and dominant dtype of a safetensors file, from its JSON header.
fn safetensors_summary(path: &Path) -> Result<(u64, String)> {
    use std::io::Read;
    let bad = |msg: String| Error::Archive {
        path: path.to_path_buf(),
        msg,
    };
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut n = [0u8; 8];
    f.read_exact(&mut n).map_err(io_err(path))?;
    let n = u64::from_le_bytes(n);
    if n > 100 << 20 {
        return Err(bad(format!("header of {n} bytes is implausible")));
    }
    let mut hdr = vec![0u8; n as usize];
    f.read_exact(&mut hdr).map_err(io_err(path))?;
    let hdr: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&hdr).map_err(|e| bad(e.to_string()))?;
    let mut total = 0u64;
    let mut by_dtype = std::collections::BTreeMap::<String, u64>::new();
    for (k, v) in hdr {
        if k == "__metadata__" {
            continue;
        }
        let count: u64 = v["shape"]
            .as_array()
            .map(|s| s.iter().filter_map(|d| d.as_u64()).product())
            .unwrap_or(0);
        total += count;
        *by_dtype
            .entry(v["dtype"].as_str().unwrap_or("?").to_string())
            .or_default() += count;
    }
    let dtype = by_dtype
        .into_iter()
        .max_by_key(|(_, c)| *c)
        .map(|(d, _)| d)
        .unwrap_or_default();
    Ok((total, dtype))
}

/// Every catalogue entry (fetched or not), then any other `.gguf` file in the models folder.
pub fn list(dir: &Path) -> Vec<Result<ModelInfo>> {
    let mut out = Vec::new();
    let mut known = std::collections::HashSet::new();
    for e in catalog() {
        let path = entry_path(dir, e);
        known.insert(path.clone());
        if path.exists() {
            out.push(describe(e.name, &path));
        } else {
            out.push(Ok(ModelInfo {
                name: e.name.to_string(),
                kind: match e.kind {
                    Kind::Chat => "chat",
                    Kind::Embedding => "embedding",
                    Kind::Vocab => "vocab",
                    Kind::Dataset => "dataset",
                },
                path,
                fetched: false,
                architecture: None,
                parameters: None,
                quantization: None,
                context_length: None,
                chat_template: None,
            }));
        }
    }
    let mut extra: Vec<PathBuf> = walk_gguf(dir)
        .into_iter()
        .filter(|p| !known.contains(p))
        .collect();
    extra.sort();
    for p in extra {
        let name = p
            .strip_prefix(dir)
            .unwrap_or(&p)
            .to_string_lossy()
            .to_string();
        out.push(describe(&name, &p));
    }
    out
}

fn walk_gguf(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for d in rd.flatten() {
        let p = d.path();
        let hidden = d.file_name().to_string_lossy().starts_with('.');
        if hidden {
            continue;
        }
        if p.is_dir() {
            out.extend(walk_gguf(&p));
        } else if p.extension().is_some_and(|e| e == "gguf") {
            out.push(p);
        }
    }
    out
}
