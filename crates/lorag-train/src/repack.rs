//! Rewrite a llama GGUF in the phi3 layout: `attn_qkv` = q | k | v rows, `ffn_up` = gate | up
//! rows, and q/k rows un-permuted, because phi3 uses NEOX rope where llama.cpp's llama uses NORM
//! rope on rows its converter permuted. The result computes the same function in llama.cpp.
//!
//! A row of a ggml tensor is a whole number of quantization blocks, so moving rows is exact:
//! [`RepackType::Keep`] keeps every tensor's type and bytes (lossless). `F32` / `F16` dequantize
//! the repacked weights instead.

use crate::{io_err, Error, Result};
use candle_core::quantized::gguf_file;
use lorag_gguf::{GgmlType, Gguf, Value, Writer};
use std::fs::File;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RepackType {
    /// Keep each tensor's bytes and type (exact), when q/k/v (and gate/up) share a type.
    #[default]
    Keep,
    F32,
    F16,
}

/// For each row of a Hugging Face q or k projection, the GGUF (llama.cpp-permuted) row it holds:
/// `hf[h·d + s·d/2 + j] = gguf[h·d + 2j + s]` (the inverse of the converter's `permute`).
pub fn hf_rows_from_gguf(n_head: usize, head_dim: usize) -> Vec<usize> {
    let half = head_dim / 2;
    let mut idx = Vec::with_capacity(n_head * head_dim);
    for h in 0..n_head {
        for s in 0..2 {
            for j in 0..half {
                idx.push(h * head_dim + 2 * j + s);
            }
        }
    }
    idx
}

struct Src {
    g: Gguf,
    content: gguf_file::Content,
    file: File,
}

/// One tensor as rows: (row length in elements, type, row bytes...).
struct Rows {
    n_in: u64,
    ty: GgmlType,
    rows: Vec<Vec<u8>>,
}

impl Src {
    fn rows(&mut self, name: &str, as_f32: bool) -> Result<Rows> {
        let t = self.g.tensor(name).cloned().ok_or_else(|| Error::Model {
            path: self.g.path.clone(),
            msg: format!("tensor {name:?} is missing"),
        })?;
        let n_in = t.dims[0];
        let (ty, bytes) = if as_f32 {
            let q = self
                .content
                .tensor(&mut self.file, name, &candle_core::Device::Cpu)?;
            let v = q
                .dequantize(&candle_core::Device::Cpu)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            (
                GgmlType::F32,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        } else {
            (t.ty, self.g.read_tensor_bytes(&t)?)
        };
        let row = ty.bytes_for(n_in).expect("validated by Gguf::open") as usize;
        Ok(Rows {
            n_in,
            ty,
            rows: bytes.chunks(row).map(<[u8]>::to_vec).collect(),
        })
    }
}

fn permute_rows(r: Rows, n_head: usize, head_dim: usize) -> Rows {
    let idx = hf_rows_from_gguf(n_head, head_dim);
    assert_eq!(idx.len(), r.rows.len(), "rows = heads x head_dim");
    Rows {
        rows: idx.iter().map(|&i| r.rows[i].clone()).collect(),
        ..r
    }
}

fn to_f16(r: Rows) -> Rows {
    Rows {
        ty: GgmlType::F16,
        rows: r
            .rows
            .into_iter()
            .map(|row| {
                row.chunks(4)
                    .flat_map(|c| {
                        let v = f32::from_le_bytes(c.try_into().expect("f32"));
                        lorag_gguf::f32_to_f16_bits(v).to_le_bytes()
                    })
                    .collect()
            })
            .collect(),
        ..r
    }
}

fn write_rows(w: &mut Writer, name: &str, parts: Vec<Rows>, ty: RepackType) {
    let parts: Vec<Rows> = if ty == RepackType::F16 {
        parts.into_iter().map(to_f16).collect()
    } else {
        parts
    };
    let n_in = parts[0].n_in;
    let t = parts[0].ty;
    let n_out: usize = parts.iter().map(|p| p.rows.len()).sum();
    let data: Vec<u8> = parts.into_iter().flat_map(|p| p.rows.concat()).collect();
    w.tensor(name, &[n_in, n_out as u64], t, data);
}

/// Write `src` (a llama GGUF) as a phi3 GGUF at `out`. Returns the phi3 GGUF's tensor count.
pub fn llama_to_phi3(src: &Path, out: &Path, ty: RepackType) -> Result<usize> {
    let g = Gguf::open(src)?;
    if g.architecture() != Some("llama") {
        return Err(Error::Model {
            path: src.to_path_buf(),
            msg: format!(
                "repack to phi3 needs a llama model, this is {:?}",
                g.architecture().unwrap_or("unknown")
            ),
        });
    }
    let hp = crate::models::Hparams::from_gguf(&g)?;
    if hp.n_rot != hp.head_dim {
        return Err(Error::Model {
            path: src.to_path_buf(),
            msg: "partial rotary dimensions cannot be repacked".into(),
        });
    }
    let mut file = File::open(src).map_err(io_err(src))?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| Error::Model {
        path: src.to_path_buf(),
        msg: e.to_string(),
    })?;
    let mut s = Src { g, content, file };
    let mut w = Writer::new();
    for (k, v) in &s.g.metadata {
        let key = match k.strip_prefix("llama.") {
            Some(rest) => format!("phi3.{rest}"),
            None => k.clone(),
        };
        w.set(key, v.clone());
    }
    w.set("general.architecture", Value::String("phi3".into()));
    if ty != RepackType::Keep {
        w.set(
            "general.file_type",
            Value::U32(if ty == RepackType::F16 { 1 } else { 0 }),
        );
    }
    let names: Vec<String> = s.g.tensors.iter().map(|t| t.name.clone()).collect();
    let mut n = 0;
    for name in &names {
        let (blk, rest) = match name.strip_prefix("blk.").and_then(|r| r.split_once('.')) {
            Some((b, r)) => (Some(b.to_string()), r),
            None => (None, name.as_str()),
        };
        let f32_mode = ty != RepackType::Keep;
        let p = |t: &str| format!("blk.{}.{t}.weight", blk.as_deref().unwrap_or(""));
        match (blk.is_some(), rest) {
            (true, "attn_q.weight") => {
                let q = permute_rows(s.rows(&p("attn_q"), f32_mode)?, hp.n_head, hp.head_dim);
                let k = permute_rows(s.rows(&p("attn_k"), f32_mode)?, hp.n_head_kv, hp.head_dim);
                let v = s.rows(&p("attn_v"), f32_mode)?;
                let parts = same_type(
                    vec![q, k, v],
                    &mut s,
                    &[&p("attn_q"), &p("attn_k"), &p("attn_v")],
                    &hp,
                )?;
                write_rows(&mut w, &p("attn_qkv"), parts, ty);
                n += 1;
            }
            (true, "ffn_gate.weight") => {
                let gate = s.rows(&p("ffn_gate"), f32_mode)?;
                let up = s.rows(&p("ffn_up"), f32_mode)?;
                let parts =
                    same_type(vec![gate, up], &mut s, &[&p("ffn_gate"), &p("ffn_up")], &hp)?;
                write_rows(&mut w, &p("ffn_up"), parts, ty);
                n += 1;
            }
            (true, "attn_k.weight" | "attn_v.weight" | "ffn_up.weight") => {}
            (_, r) if r.ends_with(".bias") && blk.is_some() => {
                return Err(Error::Model {
                    path: src.to_path_buf(),
                    msg: format!("{name}: biases cannot be carried into the phi3 layout"),
                })
            }
            _ => {
                let t = s.g.tensor(name).cloned().expect("listed");
                let dense = matches!(t.ty, GgmlType::F32 | GgmlType::F16);
                if ty == RepackType::Keep || dense || t.dims.len() < 2 {
                    let bytes = s.g.read_tensor_bytes(&t)?;
                    w.tensor(name.clone(), &t.dims, t.ty, bytes);
                } else {
                    let r = s.rows(name, true)?;
                    write_rows(&mut w, name, vec![r], ty);
                }
                n += 1;
            }
        }
    }
    w.write(out).map_err(io_err(out))?;
    Ok(n)
}

/// Fused parts must share one type; when they do not (mixed quantizations such as Q4_K_M), read
/// them again as f32.
fn same_type(
    parts: Vec<Rows>,
    s: &mut Src,
    names: &[&str],
    hp: &crate::models::Hparams,
) -> Result<Vec<Rows>> {
    if parts.iter().all(|p| p.ty == parts[0].ty) {
        return Ok(parts);
    }
    let mut out = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let r = s.rows(n, true)?;
        out.push(match (names.len(), i) {
            (3, 0) => permute_rows(r, hp.n_head, hp.head_dim),
            (3, 1) => permute_rows(r, hp.n_head_kv, hp.head_dim),
            _ => r,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_the_converters_permute() {
        // The converter: w.reshape(n_head, 2, d/2, ...).swapaxes(1, 2): gguf[h, j, s] = hf[h, s, j].
        let (nh, d) = (3, 8);
        let hf: Vec<usize> = (0..nh * d).collect();
        let mut gguf = vec![0; nh * d];
        for h in 0..nh {
            for s in 0..2 {
                for j in 0..d / 2 {
                    gguf[h * d + 2 * j + s] = hf[h * d + s * d / 2 + j];
                }
            }
        }
        let idx = hf_rows_from_gguf(nh, d);
        let back: Vec<usize> = idx.iter().map(|&i| gguf[i]).collect();
        assert_eq!(back, hf);
    }
}
