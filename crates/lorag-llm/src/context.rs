//! The one place with `unsafe`: a llama.cpp context driven through `llama-cpp-sys-2`.
//!
//! `llama-cpp-2` covers models, vocabularies, chat templates and samplers, and we use it for those.
//! Its context wrapper can set only one LoRA adapter at a time, so the context (decode, logits,
//! KV memory, adapters) is ours, over the same C API.
//!
//! Invariants: a `RawContext` is used from one thread at a time (`Send`, not `Sync`); every pointer
//! it holds is freed exactly once in `Drop`; adapters outlive the contexts they are set on (the
//! `Session` holds an `Arc` to each adapter it sets).

use crate::{Error, Result};
use llama_cpp_2::model::LlamaModel;
use llama_cpp_sys_2 as sys;
use std::ffi::CString;
use std::path::Path;
use std::ptr::NonNull;

// `LlamaModel` is `repr(transparent)` over a non-null `llama_model*`.
const _: () =
    assert!(std::mem::size_of::<LlamaModel>() == std::mem::size_of::<*mut sys::llama_model>());

pub(crate) fn model_ptr(model: &LlamaModel) -> *mut sys::llama_model {
    // SAFETY: `LlamaModel` is `#[repr(transparent)]` over `Ptr<llama_model>`, itself
    // `#[repr(transparent)]` over `NonNull<llama_model>`; the size assertion above guards it.
    unsafe { *(model as *const LlamaModel as *const *mut sys::llama_model) }
}

/// A LoRA adapter loaded for one model.
pub struct LoraAdapter {
    ptr: NonNull<sys::llama_adapter_lora>,
    pub path: std::path::PathBuf,
    // Keeps the model alive while the adapter exists: llama.cpp ties an adapter to its model.
    _model: std::sync::Arc<LlamaModel>,
}

// SAFETY: llama.cpp never mutates an adapter after it is loaded.
unsafe impl Send for LoraAdapter {}
unsafe impl Sync for LoraAdapter {}

impl LoraAdapter {
    pub(crate) fn load(model: &std::sync::Arc<LlamaModel>, path: &Path) -> Result<Self> {
        let c = CString::new(path.to_string_lossy().as_bytes()).map_err(|_| Error::Lora {
            path: path.to_path_buf(),
            msg: "path contains a NUL byte".into(),
        })?;
        // SAFETY: the model pointer is valid; the adapter keeps an Arc to the model, so the model
        // is freed only after the adapter.
        let p = unsafe { sys::llama_adapter_lora_init(model_ptr(model), c.as_ptr()) };
        let ptr = NonNull::new(p).ok_or_else(|| Error::Lora {
            path: path.to_path_buf(),
            msg: "llama.cpp rejected the adapter (not a GGUF LoRA, or made for another base model: check general.architecture and tensor shapes)".into(),
        })?;
        Ok(Self {
            ptr,
            path: path.to_path_buf(),
            _model: model.clone(),
        })
    }
}

impl Drop for LoraAdapter {
    fn drop(&mut self) {
        // SAFETY: allocated by llama_adapter_lora_init, freed once.
        unsafe { sys::llama_adapter_lora_free(self.ptr.as_ptr()) }
    }
}

/// Receives (position in the decoded tokens, logits row).
pub(crate) type LogitsSink<'a> = dyn FnMut(usize, &[f32]) + 'a;

pub(crate) struct RawContext {
    ctx: NonNull<sys::llama_context>,
    batch: sys::llama_batch,
    batch_cap: usize,
    pub n_ctx: u32,
    n_vocab: usize,
}

// SAFETY: a llama_context may move between threads; it is never shared (no Sync).
unsafe impl Send for RawContext {}

impl RawContext {
    pub fn new(model: &LlamaModel, n_ctx: u32, n_batch: u32, n_threads: i32) -> Result<Self> {
        Self::with_sequences(model, n_ctx, n_batch, n_threads, 1)
    }

    /// A context for `n_seq` independent sequences (slots), each with `n_ctx / n_seq` KV cells of
    /// its own (not unified: sequences rarely share long prefixes, and a split cache keeps one
    /// slot from starving the others).
    pub fn with_sequences(
        model: &LlamaModel,
        n_ctx: u32,
        n_batch: u32,
        n_threads: i32,
        n_seq: u32,
    ) -> Result<Self> {
        // SAFETY: plain C struct constructors and a valid model pointer.
        unsafe {
            let mut p = sys::llama_context_default_params();
            p.n_ctx = n_ctx;
            p.n_batch = n_batch;
            p.n_ubatch = n_batch;
            p.n_seq_max = n_seq.max(1);
            p.kv_unified = false;
            p.n_threads = n_threads;
            p.n_threads_batch = n_threads;
            p.no_perf = true;
            let ctx = sys::llama_init_from_model(model_ptr(model), p);
            let ctx = NonNull::new(ctx).ok_or(Error::Context(format!(
                "llama.cpp could not create a context of {n_ctx} tokens (out of memory?)"
            )))?;
            let batch = sys::llama_batch_init(n_batch as i32, 0, 1);
            Ok(Self {
                n_ctx: sys::llama_n_ctx(ctx.as_ptr()),
                ctx,
                batch,
                batch_cap: n_batch as usize,
                n_vocab: model.n_vocab() as usize,
            })
        }
    }

    /// Decode `tokens` at positions `pos0..`, in chunks of the batch size. Logits are kept for the
    /// last token only, unless `all_logits` (then for every token of the last chunk... of each chunk,
    /// collected through `on_logits`).
    pub fn decode(
        &mut self,
        tokens: &[i32],
        pos0: usize,
        mut on_logits: Option<&mut LogitsSink<'_>>,
    ) -> Result<()> {
        let all = on_logits.is_some();
        for (ci, chunk) in tokens.chunks(self.batch_cap).enumerate() {
            let base = ci * self.batch_cap;
            let last_chunk = base + chunk.len() == tokens.len();
            // SAFETY: batch arrays were allocated for batch_cap tokens with one seq id each.
            unsafe {
                let b = &mut self.batch;
                b.n_tokens = chunk.len() as i32;
                for (i, &t) in chunk.iter().enumerate() {
                    *b.token.add(i) = t;
                    *b.pos.add(i) = (pos0 + base + i) as i32;
                    *b.n_seq_id.add(i) = 1;
                    *(*b.seq_id.add(i)) = 0;
                    let want = all || (last_chunk && i + 1 == chunk.len());
                    *b.logits.add(i) = i8::from(want);
                }
                let rc = sys::llama_decode(self.ctx.as_ptr(), *b);
                if rc != 0 {
                    return Err(Error::Context(match rc {
                        1 => "no room left in the KV cache (context full)".to_string(),
                        2 => "decoding was aborted".to_string(),
                        _ => format!("llama_decode failed with code {rc}"),
                    }));
                }
            }
            if let Some(cb) = on_logits.as_deref_mut() {
                for i in 0..chunk.len() {
                    cb(base + i, self.logits_ith(i as i32));
                }
            }
        }
        Ok(())
    }

    /// Decode one batch of `(token, position, sequence, want_logits)` entries in a single
    /// `llama_decode` call (at most the batch capacity). Rows with `want_logits` can then be read
    /// with [`Self::logits_ith`] by their index in `entries`.
    pub fn decode_entries(&mut self, entries: &[(i32, usize, i32, bool)]) -> Result<()> {
        assert!(
            entries.len() <= self.batch_cap,
            "batch larger than its capacity"
        );
        if entries.is_empty() {
            return Ok(());
        }
        // SAFETY: batch arrays were allocated for batch_cap tokens with one seq id each.
        unsafe {
            let b = &mut self.batch;
            b.n_tokens = entries.len() as i32;
            for (i, &(t, pos, seq, want)) in entries.iter().enumerate() {
                *b.token.add(i) = t;
                *b.pos.add(i) = pos as i32;
                *b.n_seq_id.add(i) = 1;
                *(*b.seq_id.add(i)) = seq;
                *b.logits.add(i) = i8::from(want);
            }
            let rc = sys::llama_decode(self.ctx.as_ptr(), *b);
            if rc != 0 {
                return Err(Error::Context(match rc {
                    1 => "no room left in the KV cache (context full)".to_string(),
                    2 => "decoding was aborted".to_string(),
                    _ => format!("llama_decode failed with code {rc}"),
                }));
            }
        }
        Ok(())
    }

    pub fn batch_capacity(&self) -> usize {
        self.batch_cap
    }

    /// Drop KV entries of sequence `seq` at positions >= `pos`.
    pub fn truncate_seq(&mut self, seq: i32, pos: usize) -> bool {
        // SAFETY: valid context; memory handle owned by it.
        unsafe {
            let mem = sys::llama_get_memory(self.ctx.as_ptr());
            sys::llama_memory_seq_rm(mem, seq, pos as i32, -1)
        }
    }

    /// Logits of the i-th token of the last decoded batch (-1: the last one).
    pub fn logits_ith(&self, i: i32) -> &[f32] {
        // SAFETY: llama.cpp returns n_vocab floats for an output row (asserted non-null).
        unsafe {
            let p = sys::llama_get_logits_ith(self.ctx.as_ptr(), i);
            assert!(!p.is_null(), "llama.cpp returned no logits for row {i}");
            std::slice::from_raw_parts(p, self.n_vocab)
        }
    }

    /// Drop KV entries at positions >= `pos` (sequence 0).
    pub fn truncate(&mut self, pos: usize) -> bool {
        // SAFETY: valid context; memory handle owned by it.
        unsafe {
            let mem = sys::llama_get_memory(self.ctx.as_ptr());
            sys::llama_memory_seq_rm(mem, 0, pos as i32, -1)
        }
    }

    pub fn clear(&mut self) {
        // SAFETY: as above.
        unsafe {
            let mem = sys::llama_get_memory(self.ctx.as_ptr());
            sys::llama_memory_clear(mem, true);
        }
    }

    /// Replace the set of active adapters. The caller keeps the adapters alive while set.
    pub fn set_adapters(&mut self, adapters: &[(&LoraAdapter, f32)]) -> Result<()> {
        let mut ptrs: Vec<*mut sys::llama_adapter_lora> =
            adapters.iter().map(|(a, _)| a.ptr.as_ptr()).collect();
        let mut scales: Vec<f32> = adapters.iter().map(|(_, s)| *s).collect();
        // SAFETY: arrays of equal length n; null arrays with n = 0 clear the set.
        let rc = unsafe {
            if ptrs.is_empty() {
                sys::llama_set_adapters_lora(
                    self.ctx.as_ptr(),
                    std::ptr::null_mut(),
                    0,
                    std::ptr::null_mut(),
                )
            } else {
                sys::llama_set_adapters_lora(
                    self.ctx.as_ptr(),
                    ptrs.as_mut_ptr(),
                    ptrs.len(),
                    scales.as_mut_ptr(),
                )
            }
        };
        if rc != 0 {
            return Err(Error::Context(format!(
                "llama.cpp could not set the LoRA adapters (code {rc})"
            )));
        }
        Ok(())
    }
}

impl Drop for RawContext {
    fn drop(&mut self) {
        // SAFETY: both allocated in `new`, freed once.
        unsafe {
            sys::llama_batch_free(self.batch);
            sys::llama_free(self.ctx.as_ptr());
        }
    }
}

/// The output types of [`quantize`]: (name, llama.cpp file type). I-quants are left out: they need
/// an importance matrix.
pub const QUANT_TYPES: &[(&str, sys::llama_ftype)] = &[
    ("f32", sys::LLAMA_FTYPE_ALL_F32),
    ("f16", sys::LLAMA_FTYPE_MOSTLY_F16),
    ("bf16", sys::LLAMA_FTYPE_MOSTLY_BF16),
    ("q8_0", sys::LLAMA_FTYPE_MOSTLY_Q8_0),
    ("q6_k", sys::LLAMA_FTYPE_MOSTLY_Q6_K),
    ("q5_k_m", sys::LLAMA_FTYPE_MOSTLY_Q5_K_M),
    ("q5_k_s", sys::LLAMA_FTYPE_MOSTLY_Q5_K_S),
    ("q5_1", sys::LLAMA_FTYPE_MOSTLY_Q5_1),
    ("q5_0", sys::LLAMA_FTYPE_MOSTLY_Q5_0),
    ("q4_k_m", sys::LLAMA_FTYPE_MOSTLY_Q4_K_M),
    ("q4_k_s", sys::LLAMA_FTYPE_MOSTLY_Q4_K_S),
    ("q4_1", sys::LLAMA_FTYPE_MOSTLY_Q4_1),
    ("q4_0", sys::LLAMA_FTYPE_MOSTLY_Q4_0),
    ("q3_k_l", sys::LLAMA_FTYPE_MOSTLY_Q3_K_L),
    ("q3_k_m", sys::LLAMA_FTYPE_MOSTLY_Q3_K_M),
    ("q3_k_s", sys::LLAMA_FTYPE_MOSTLY_Q3_K_S),
    ("q2_k", sys::LLAMA_FTYPE_MOSTLY_Q2_K),
];

/// Quantize the GGUF model `input` to `output` with llama.cpp's own quantizer
/// (`llama_model_quantize`, as `llama-quantize` does), to the type named `ty` (see
/// [`QUANT_TYPES`]). Already-quantized tensors of the input are requantized.
pub fn quantize(input: &Path, output: &Path, ty: &str, n_threads: i32) -> Result<()> {
    let ftype = QUANT_TYPES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(ty))
        .map(|(_, f)| *f)
        .ok_or_else(|| {
            Error::Param(format!(
                "unknown quantization type {ty:?}; use one of: {}",
                QUANT_TYPES
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    lorag_gguf::Gguf::open(input)?;
    let cstr = |p: &Path| {
        CString::new(p.to_string_lossy().as_bytes()).map_err(|_| Error::Load {
            path: p.to_path_buf(),
            msg: "path contains a NUL byte".into(),
        })
    };
    let (inp, out) = (cstr(input)?, cstr(output)?);
    crate::backend();
    // SAFETY: plain C calls; the strings and the params outlive the call, the pointers in the
    // default params are null (no imatrix, no overrides).
    let rc = unsafe {
        let mut p = sys::llama_model_quantize_default_params();
        p.nthread = n_threads;
        p.ftype = ftype;
        p.allow_requantize = true;
        sys::llama_model_quantize(inp.as_ptr(), out.as_ptr(), &p)
    };
    if rc != 0 {
        return Err(Error::Load {
            path: input.to_path_buf(),
            msg: format!("llama.cpp could not quantize it to {ty} (code {rc})"),
        });
    }
    Ok(())
}
