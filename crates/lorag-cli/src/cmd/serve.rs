//! `lorag serve` (the OpenAI-compatible server and web page) and `lorag keys` (its API keys).

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use lorag_serve::keys::{default_path, KeyFile};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (a non-loopback address needs --api-keys or --no-auth)
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// A model path (.gguf) or catalogue name (default: smollm2-135m-instruct)
    #[arg(long, short)]
    pub model: Option<String>,
    /// A LoRA adapter offered as model NAME: NAME=PATH[:SCALE]; repeatable
    #[arg(long = "lora", value_name = "NAME=PATH[:SCALE]")]
    pub lora: Vec<String>,
    /// Do not use the grounded-answer adapter shipped for the default model (kb:NAME answers
    /// that name no adapter use it)
    #[arg(long)]
    pub no_default_adapter: bool,
    /// A knowledge base offered as model kb:NAME: NAME=DIR (created when missing); repeatable
    #[arg(long = "kb", value_name = "NAME=DIR")]
    pub kb: Vec<String>,
    /// Embedding model (catalogue name or sentence-transformers folder; default all-minilm-l6-v2)
    #[arg(long)]
    pub embedder: Option<String>,
    /// Sequences decoded together in one batch (slots)
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Requests that may wait for a slot; past that, 429
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// Context tokens per slot (default: the model's, at most 4096)
    #[arg(long = "ctx", default_value_t = 0)]
    pub ctx: u32,
    #[arg(long)]
    pub threads: Option<i32>,
    /// The key file made by `lorag keys add`
    #[arg(long = "api-keys", value_name = "FILE")]
    pub api_keys: Option<PathBuf>,
    /// Serve a non-loopback address without keys
    #[arg(long)]
    pub no_auth: bool,
    /// Largest request body in bytes (uploads included)
    #[arg(long, default_value_t = 32 * 1024 * 1024)]
    pub max_body: usize,
    /// Longest a request may generate, in seconds
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Model layers to offload to a GPU (default: all when built with CUDA and a GPU is present, else 0)
    #[arg(long = "gpu-layers")]
    pub gpu_layers: Option<u32>,
}

pub fn serve(a: ServeArgs) -> Result<()> {
    let service = lorag_service::Config {
        model: a.model.clone(),
        loras: a
            .lora
            .iter()
            .map(|s| lorag_service::LoraSpec::parse_named(s))
            .collect::<Result<_>>()?,
        kbs: a
            .kb
            .iter()
            .map(|s| lorag_service::KbSpec::parse_named(s))
            .collect::<Result<_>>()?,
        embedder: a.embedder.clone(),
        gpu_layers: a.gpu_layers,
        default_adapter: !a.no_default_adapter,
        ..Default::default()
    };
    lorag_serve::serve(lorag_serve::ServeConfig {
        host: a.host,
        port: a.port,
        service,
        parallel: a.parallel,
        queue: a.queue,
        ctx: a.ctx,
        threads: a.threads.unwrap_or_else(lorag_llm::default_threads),
        api_keys: a.api_keys,
        no_auth: a.no_auth,
        max_body: a.max_body,
        timeout: std::time::Duration::from_secs(a.timeout.max(1)),
    })
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Make a key; it is printed once, and only its hash is stored
    Add {
        name: String,
        /// A knowledge base the key may read; repeatable
        #[arg(long = "kb")]
        kb: Vec<String>,
        /// Every knowledge base
        #[arg(long)]
        all_kbs: bool,
        /// May upload and delete documents (in the KBs it may read)
        #[arg(long)]
        ingest: bool,
        /// Key file (default $LORAG_HOME/keys.json or ~/.config/lorag/keys.json)
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// List keys (names and rights; never the keys)
    List {
        #[arg(long)]
        file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by name (a running server stops accepting it at once)
    Revoke {
        name: String,
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

pub fn keys(c: KeysCommand) -> Result<()> {
    match c {
        KeysCommand::Add {
            name,
            kb,
            all_kbs,
            ingest,
            file,
        } => {
            let path = file.unwrap_or_else(default_path);
            let mut f = KeyFile::load(&path)?;
            let key = f.add(&name, &kb, all_kbs, ingest)?;
            f.save(&path)?;
            eprintln!(
                "key {name:?} added to {} (shown once; keep it safe):",
                path.display()
            );
            println!("{key}");
        }
        KeysCommand::List { file, json } => {
            let path = file.unwrap_or_else(default_path);
            let f = KeyFile::load(&path)?;
            if json {
                let v: Vec<_> = f
                    .keys
                    .iter()
                    .map(|k| serde_json::json!({"name": k.name, "kbs": k.kbs, "all_kbs": k.all_kbs, "ingest": k.ingest, "created": k.created}))
                    .collect();
                println!("{}", serde_json::json!({"keys": v}));
            } else {
                for k in &f.keys {
                    let kbs = if k.all_kbs {
                        "all KBs".to_string()
                    } else if k.kbs.is_empty() {
                        "no KB".to_string()
                    } else {
                        k.kbs.join(", ")
                    };
                    println!(
                        "{}\t{kbs}\t{}",
                        k.name,
                        if k.ingest { "may ingest" } else { "read only" }
                    );
                }
            }
        }
        KeysCommand::Revoke { name, file } => {
            let path = file.unwrap_or_else(default_path);
            let mut f = KeyFile::load(&path)?;
            if !f.revoke(&name) {
                bail!("no key named {name:?} in {}", path.display());
            }
            f.save(&path)?;
            eprintln!("key {name:?} revoked");
        }
    }
    Ok(())
}
