//! The generation runtime. Every user-facing forward pass of lorag goes through llama.cpp, here.
//!
//! - [`Engine`]: one loaded GGUF model (validated with `lorag-gguf` before llama.cpp sees it).
//! - [`Session`]: a context over the engine, with its KV cache, its LoRA adapters and a
//!   prefix cache: a prompt that shares a prefix with the previous one reuses its KV entries.
//! - [`Generator`]: the seam the rest of lorag uses (RAG, evaluation, serving).
//!
//! Invariants:
//! - Loading never panics on bad input: a missing file, a non-GGUF, a truncated GGUF are errors
//!   that name the file.
//! - A prompt that does not fit the context is an error before any decoding.
//! - Greedy decoding (temperature 0) is deterministic; sampling with a fixed seed is too.
//! - Changing the set of adapters drops the KV cache (its keys/values were computed under the old set).

mod batch;
mod chat;
mod context;
mod generate;
mod sampling;

pub use batch::{AdapterSet, BatchClient, BatchEngine, BatchOptions, BatchStats, Event, Request};
pub use chat::{Message, Role};
pub use context::{quantize, LoraAdapter, QUANT_TYPES};
pub use generate::{FinishReason, Generation, Session, SessionOptions};
pub use sampling::SamplingParams;

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Gguf(#[from] lorag_gguf::Error),
    #[error("{path}: llama.cpp could not load this model: {msg}")]
    Load { path: PathBuf, msg: String },
    #[error("{path}: LoRA adapter: {msg}")]
    Lora { path: PathBuf, msg: String },
    #[error("model {model} has no chat template (no tokenizer.chat_template in the GGUF); pass a template name such as chatml, phi3, llama3, gemma")]
    NoChatTemplate { model: String },
    #[error("chat template {template:?} is not one llama.cpp knows; pass a template name such as chatml, phi3, llama3, gemma")]
    BadChatTemplate { template: String },
    #[error("prompt is {prompt} tokens but the context holds {n_ctx} (leave room for at least one generated token); shorten the prompt or raise the context size")]
    ContextOverflow { prompt: usize, n_ctx: usize },
    #[error("llama.cpp context: {0}")]
    Context(String),
    #[error("invalid sampling parameter: {0}")]
    Param(String),
    #[error("the server is busy: every slot is taken and the queue is full; retry later")]
    QueueFull,
    #[error("the generator is shutting down")]
    ShuttingDown,
    #[error("the request was cancelled")]
    Cancelled,
}

pub type Result<T> = std::result::Result<T, Error>;

fn backend() -> &'static LlamaBackend {
    static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
    BACKEND.get_or_init(|| {
        let mut b = LlamaBackend::init().expect("llama.cpp backend initialises once");
        if std::env::var_os("LORAG_LLAMA_LOG").is_none() {
            b.void_logs();
        }
        b
    })
}

/// Layers to offload by default: every layer when this build has a GPU backend and a GPU is
/// present (llama.cpp's `llama_supports_gpu_offload`), else 0 (CPU).
pub fn default_gpu_layers() -> u32 {
    if backend().supports_gpu_offload() {
        u32::MAX
    } else {
        0
    }
}

/// `--gpu-layers` as given, or the default.
pub fn gpu_layers(flag: Option<u32>) -> u32 {
    flag.unwrap_or_else(default_gpu_layers)
}

/// Options for loading a model.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Load only the vocabulary (tokenizer and metadata, no weights).
    pub vocab_only: bool,
    /// Layers to offload to a GPU (only with the `cuda` feature).
    pub n_gpu_layers: u32,
}

/// A loaded model.
pub struct Engine {
    model: Arc<LlamaModel>,
    path: PathBuf,
    gguf: lorag_gguf::Gguf,
}

impl Engine {
    pub fn load(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        // Validate first: llama.cpp's own errors on bad files are terse, and some abort.
        let gguf = lorag_gguf::Gguf::open(&path)?;
        let arch = gguf.architecture().ok_or_else(|| Error::Load {
            path: path.clone(),
            msg: "no general.architecture key".into(),
        })?;
        if gguf.get_str("general.type") == Some("adapter") {
            return Err(Error::Load {
                path,
                msg: "this is a LoRA adapter, not a model; pass it with --lora".into(),
            });
        }
        if gguf.tensors.is_empty() && !opts.vocab_only {
            return Err(Error::Load {
                path,
                msg: "vocab-only GGUF (no weights): it can tokenize but not generate".into(),
            });
        }
        let mut params = LlamaModelParams::default()
            .with_n_gpu_layers(opts.n_gpu_layers)
            .with_vocab_only(opts.vocab_only);
        if opts.vocab_only {
            params = params.with_use_mmap(true);
        }
        let model =
            LlamaModel::load_from_file(backend(), &path, &params).map_err(|e| Error::Load {
                path: path.clone(),
                msg: format!(
                    "{e} (architecture {arch:?}: is it one this llama.cpp build supports?)"
                ),
            })?;
        Ok(Self {
            model: Arc::new(model),
            path,
            gguf,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The parsed GGUF header of the model file.
    pub fn gguf(&self) -> &lorag_gguf::Gguf {
        &self.gguf
    }
    pub fn architecture(&self) -> &str {
        self.gguf.architecture().unwrap_or("unknown")
    }
    pub fn n_ctx_train(&self) -> u32 {
        self.model.n_ctx_train()
    }
    pub fn n_vocab(&self) -> usize {
        self.model.n_vocab() as usize
    }

    /// Token ids of `text`. `add_special` adds BOS (etc.) as the model asks; `parse_special`
    /// turns `<|im_start|>`-style markers into their control tokens.
    pub fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<i32> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), add_special, parse_special)
            .into_iter()
            .map(|t| t.0)
            .collect()
    }

    /// The bytes of one token as text would hold them (special tokens rendered when `special`).
    pub fn token_bytes(&self, token: i32, special: bool) -> Vec<u8> {
        self.model
            .vocab()
            .token_to_piece(llama_cpp_2::token::LlamaToken(token), special, None)
    }

    pub fn detokenize(&self, tokens: &[i32]) -> String {
        let mut bytes = Vec::new();
        for &t in tokens {
            bytes.extend(self.token_bytes(t, false));
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub fn is_eog(&self, token: i32) -> bool {
        self.model
            .vocab()
            .is_eog(llama_cpp_2::token::LlamaToken(token))
    }

    /// The model's own chat template (Jinja source from `tokenizer.chat_template`), if any.
    pub fn chat_template(&self) -> Option<String> {
        self.gguf
            .get_str("tokenizer.chat_template")
            .map(str::to_string)
    }

    /// Render a conversation with the model's template, or with `template` (a llama.cpp template
    /// name like "chatml"/"phi3", or a Jinja source it recognises). Ends with the assistant's turn
    /// opened when `add_assistant`.
    pub fn render_chat(
        &self,
        messages: &[Message],
        template: Option<&str>,
        add_assistant: bool,
    ) -> Result<String> {
        chat::render(self, messages, template, add_assistant)
    }

    /// Load a GGUF LoRA adapter for this model. Set it on a session with [`Session::set_adapters`].
    pub fn load_lora(&self, path: impl AsRef<Path>) -> Result<Arc<LoraAdapter>> {
        let path = path.as_ref();
        let g = lorag_gguf::Gguf::open(path).map_err(|e| Error::Lora {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        if g.get_str("general.type") != Some("adapter") {
            return Err(Error::Lora {
                path: path.to_path_buf(),
                msg:
                    "not a LoRA adapter (general.type is not \"adapter\"); a model goes in --model"
                        .into(),
            });
        }
        if let (Some(a), Some(b)) = (g.architecture(), self.gguf.architecture()) {
            if a != b {
                return Err(Error::Lora {
                    path: path.to_path_buf(),
                    msg: format!("adapter is for architecture {a:?}, the model is {b:?}"),
                });
            }
        }
        Ok(Arc::new(LoraAdapter::load(&self.model, path)?))
    }

    /// A new session (context) on this model.
    pub fn session(&self, opts: &SessionOptions) -> Result<Session> {
        Session::new(self, opts)
    }
}

/// What RAG, evaluation and serving need from a model: a prompt in, text out, streamed and
/// cancellable. [`Session`] (one context, one user) and [`BatchClient`] (a handle on the batched
/// server engine) implement it.
pub trait Generator {
    /// Render `messages` with the chat template, the assistant's turn opened.
    fn render(&self, messages: &[Message]) -> Result<String>;
    /// The text of every control token of the vocabulary, longest first (for neutralising
    /// document text).
    fn control_token_texts(&self) -> Vec<String>;
    /// Count tokens as this model does (for context budgets).
    fn count_tokens(&self, text: &str) -> usize;
    /// The context size in tokens (per request).
    fn context_size(&self) -> usize;
    /// Generate from a rendered prompt, streaming text to `on_text`; when it returns false the
    /// generation stops with `FinishReason::Cancelled`.
    fn stream(
        &mut self,
        prompt: &str,
        params: &SamplingParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation>;
    /// Render `messages` and generate the assistant's reply.
    fn chat(
        &mut self,
        messages: &[Message],
        params: &SamplingParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let prompt = self.render(messages)?;
        self.stream(&prompt, params, on_text)
    }
}

/// Default thread count: the machine's cores.
pub fn default_threads() -> i32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as i32)
        .unwrap_or(4)
}
