//! `lorag serve`: one process, one model in memory, an OpenAI-compatible HTTP API over the base
//! model, its LoRA adapters and knowledge bases, API keys, Prometheus metrics and the web page.
//!
//! Concurrency invariants:
//! - Generation runs on the `BatchEngine`'s decode thread only (one llama.cpp context, `--parallel`
//!   sequences decoded together). HTTP handlers run on tokio; anything that blocks (retrieval,
//!   embedding, waiting for tokens, ingestion) runs on tokio's blocking pool.
//! - Admission is a semaphore of `--parallel + --queue` permits held for a request's life: past
//!   it a request gets 429 at once, so the decode queue never overflows.
//! - A request's generation stops when its client goes away (the token channel closes) or its
//!   `--timeout` passes: the cancel flag frees the slot at the next decode step.
//! - Each KB has one read handle shared by every request (it follows other processes' commits);
//!   writes (upload, delete) open a writer per operation, serialised per KB by a mutex.
//! - Threads: the decode thread uses `--threads`; tokio gets a small worker pool, so llama.cpp's
//!   threads are not oversubscribed.

pub mod error;
pub mod keys;
pub mod metrics;
mod routes;

pub use error::ApiError;

use anyhow::{bail, Context, Result};
use lorag_embed::Embedder;
use lorag_llm::{AdapterSet, BatchEngine, BatchOptions, Engine, LoadOptions, LoraAdapter};
use lorag_store::Store;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Everything `lorag serve` is started with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub host: String,
    pub port: u16,
    /// The model file, and the id clients use for it.
    pub model_path: PathBuf,
    pub model_name: String,
    /// name → (adapter file, scale).
    pub loras: Vec<(String, PathBuf, f32)>,
    /// name → KB directory.
    pub kbs: Vec<(String, PathBuf)>,
    /// The embedder's folder, and its name.
    pub embedder_dir: PathBuf,
    pub embedder_name: String,
    pub parallel: usize,
    pub queue: usize,
    /// Context tokens per slot (0: the model's, at most 4096).
    pub ctx: u32,
    pub threads: i32,
    pub api_keys: Option<PathBuf>,
    pub no_auth: bool,
    pub max_body: usize,
    pub timeout: Duration,
    pub gpu_layers: u32,
}

pub(crate) struct Kb {
    pub dir: PathBuf,
    pub store: Arc<dyn Store>,
    /// Serialises this server's writes to the KB.
    pub write: tokio::sync::Mutex<()>,
}

/// What exists once the model is loaded.
pub(crate) struct Loaded {
    pub engine: BatchEngine,
    pub embedder: Arc<dyn Embedder>,
    pub loras: BTreeMap<String, (Arc<LoraAdapter>, f32)>,
    pub kbs: BTreeMap<String, Kb>,
}

pub(crate) struct App {
    pub config: ServeConfig,
    pub loaded: RwLock<Option<Arc<Loaded>>>,
    pub keys: Option<keys::KeyStore>,
    pub admission: Arc<tokio::sync::Semaphore>,
    pub metrics: metrics::Metrics,
    pub started: std::time::Instant,
}

impl App {
    pub fn loaded(&self) -> Option<Arc<Loaded>> {
        self.loaded.read().expect("not poisoned").clone()
    }
}

fn is_loopback(host: &str) -> bool {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host == "localhost",
    }
}

/// Check the configuration before anything loads (so a mistake is reported at once).
pub fn check_config(c: &ServeConfig) -> Result<()> {
    if c.api_keys.is_none() && !c.no_auth && !is_loopback(&c.host) {
        bail!(
            "refusing to serve {} without API keys: anyone who can reach this address could use the model and read every knowledge base. Pass --api-keys FILE (make keys with `lorag keys add NAME`), or --no-auth if that is really what you want",
            c.host
        );
    }
    if c.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    let mut names = std::collections::HashSet::new();
    for (n, p, _) in &c.loras {
        if !names.insert(n.clone()) || n == &c.model_name {
            bail!("--lora name {n:?} is used twice (or equals the model's name)");
        }
        if !p.exists() {
            bail!("--lora {n}: {} does not exist", p.display());
        }
    }
    let mut kbn = std::collections::HashSet::new();
    for (n, p) in &c.kbs {
        if !kbn.insert(n.clone()) {
            bail!("--kb name {n:?} is used twice");
        }
        if n.is_empty() || n.contains('/') {
            bail!("--kb name {n:?}: use letters, digits, '-' or '_'");
        }
        let _ = p;
    }
    Ok(())
}

fn load(c: &ServeConfig) -> Result<Loaded> {
    let embedder: Arc<dyn Embedder> = Arc::new(
        lorag_embed::BertEmbedder::load(&c.embedder_dir, &lorag_embed::EmbedOptions::default())
            .with_context(|| format!("loading the embedder {}", c.embedder_dir.display()))?,
    );
    let mut kbs = BTreeMap::new();
    for (name, dir) in &c.kbs {
        if !dir.join("kb.sqlite").exists() {
            // A new KB: create it so that documents can be uploaded to it.
            lorag_kb::SqliteStore::open(dir, true)
                .and_then(|s| s.check_embedding_model(embedder.model_id(), embedder.dim()))
                .with_context(|| format!("--kb {name}: creating {}", dir.display()))?;
        }
        let store = lorag_kb::open_for_search(dir, embedder.as_ref())
            .with_context(|| format!("--kb {name}"))?;
        kbs.insert(
            name.clone(),
            Kb {
                dir: dir.clone(),
                store: Arc::new(store),
                write: tokio::sync::Mutex::new(()),
            },
        );
    }
    let engine = Engine::load(
        &c.model_path,
        &LoadOptions {
            n_gpu_layers: c.gpu_layers,
            ..LoadOptions::default()
        },
    )?;
    let mut loras = BTreeMap::new();
    for (name, path, scale) in &c.loras {
        loras.insert(name.clone(), (engine.load_lora(path)?, *scale));
    }
    let engine = BatchEngine::start(
        &engine,
        &BatchOptions {
            n_slots: c.parallel,
            n_ctx_per_slot: c.ctx,
            n_batch: 512,
            n_threads: c.threads,
            max_queue: c.parallel + c.queue,
            chat_template: None,
        },
    )?;
    Ok(Loaded {
        engine,
        embedder,
        loras,
        kbs,
    })
}

/// Run the server until SIGTERM or Ctrl-C. Binds first (so `/health` answers 503 while the model
/// loads), then loads; a load failure ends the process with the error.
pub fn serve(config: ServeConfig) -> Result<()> {
    check_config(&config)?;
    let keys = match (&config.api_keys, config.no_auth) {
        (Some(p), _) => Some(keys::KeyStore::open(p)?),
        (None, _) => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(64 + 2 * (config.parallel + config.queue))
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let addr = format!("{}:{}", config.host, config.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (is the port in use?)"))?;
        let local: SocketAddr = listener.local_addr()?;
        let app = Arc::new(App {
            admission: Arc::new(tokio::sync::Semaphore::new(config.parallel + config.queue)),
            config: config.clone(),
            loaded: RwLock::new(None),
            keys,
            metrics: metrics::Metrics::default(),
            started: std::time::Instant::now(),
        });
        eprintln!("lorag serve: listening on http://{local} (loading the model...)");
        let loader = {
            let app = app.clone();
            tokio::task::spawn_blocking(move || -> Result<()> {
                let l = load(&app.config)?;
                *app.loaded.write().expect("not poisoned") = Some(Arc::new(l));
                Ok(())
            })
        };
        let router = routes::router(app.clone());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<anyhow::Error>();
        tokio::spawn(async move {
            match loader.await {
                Ok(Ok(())) => eprintln!("lorag serve: ready"),
                Ok(Err(e)) => {
                    let _ = stop_tx.send(e);
                }
                Err(e) => {
                    let _ = stop_tx.send(anyhow::anyhow!("loading failed: {e}"));
                }
            }
        });
        let failed = Arc::new(std::sync::Mutex::new(None));
        let f2 = failed.clone();
        let shutdown = async move {
            tokio::select! {
                _ = shutdown_signal() => eprintln!("lorag serve: stopping (finishing running requests)"),
                Ok(e) = stop_rx => { *f2.lock().expect("not poisoned") = Some(e); }
            }
        };
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving")?;
        if let Some(e) = failed.lock().expect("not poisoned").take() {
            return Err(e);
        }
        if let Some(l) = app.loaded() {
            l.engine.shutdown();
        }
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

pub(crate) fn adapters_for(
    l: &Loaded,
    names: &[(String, f32)],
) -> std::result::Result<AdapterSet, ApiError> {
    let mut v = Vec::new();
    for (n, scale) in names {
        let Some((a, _)) = l.loras.get(n) else {
            return Err(ApiError::not_found(
                format!(
                    "no adapter named {n:?}; this server has: {}",
                    if l.loras.is_empty() {
                        "none".to_string()
                    } else {
                        l.loras.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                ),
                Some("lora"),
            ));
        };
        v.push((a.clone(), *scale));
    }
    Ok(v)
}
