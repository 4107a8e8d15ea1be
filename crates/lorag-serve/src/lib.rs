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
use lorag_llm::{AdapterSet, BatchEngine, BatchOptions};
use lorag_service::Service;
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
    /// The model, its adapters (each a model id of its own), the KBs and the embedder.
    pub service: lorag_service::Config,
    pub parallel: usize,
    pub queue: usize,
    /// Context tokens per slot (0: the model's, at most 4096).
    pub ctx: u32,
    pub threads: i32,
    pub api_keys: Option<PathBuf>,
    pub no_auth: bool,
    pub max_body: usize,
    pub timeout: Duration,
}

pub(crate) struct Kb {
    /// Where the KB lives (a folder or a `postgres://` URL).
    pub location: String,
    /// Where uploaded files are kept: `uploads/` in a folder KB; for a PostgreSQL KB, this
    /// server's own folder (`$XDG_DATA_HOME/lorag/uploads/NAME`): the chunks are in the shared
    /// KB, the original file only on the replica that received it.
    pub uploads: PathBuf,
    pub store: Arc<dyn Store>,
    /// Serialises this server's writes to the KB.
    pub write: tokio::sync::Mutex<()>,
}

/// What exists once the model is loaded.
pub(crate) struct Loaded {
    pub service: Service,
    pub engine: BatchEngine,
    pub embedder: Arc<dyn Embedder>,
    pub embedder_name: String,
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
    let model_name = lorag_service::model_name(c.service.model.as_deref());
    let mut names = std::collections::HashSet::new();
    for l in &c.service.loras {
        if !names.insert(l.name.clone()) || l.name == model_name {
            bail!(
                "--lora name {:?} is used twice (or equals the model's name)",
                l.name
            );
        }
        if !l.path.exists() {
            bail!("--lora {}: {} does not exist", l.name, l.path.display());
        }
    }
    let mut kbn = std::collections::HashSet::new();
    for k in &c.service.kbs {
        if !kbn.insert(k.name.clone()) {
            bail!("--kb name {:?} is used twice", k.name);
        }
        if k.name.is_empty() || k.name.contains('/') {
            bail!("--kb name {:?}: use letters, digits, '-' or '_'", k.name);
        }
    }
    Ok(())
}

fn load(c: &ServeConfig) -> Result<Loaded> {
    let service = Service::load(&lorag_service::Config {
        create_kbs: true,
        need_embedder: true,
        ..c.service.clone()
    })?;
    let (embedder_name, embedder) = service.embedder().expect("need_embedder");
    let (embedder_name, embedder) = (embedder_name.to_string(), embedder.clone());
    let kbs = service
        .kb_names()
        .map(|name| {
            let h = service.kb_handle(name).expect("listed");
            let uploads = if lorag_service::is_url(&h.location) {
                uploads_home().join(name)
            } else {
                PathBuf::from(&h.location).join("uploads")
            };
            let kb = Kb {
                location: h.location.clone(),
                uploads,
                store: h.store.clone(),
                write: tokio::sync::Mutex::new(()),
            };
            (name.to_string(), kb)
        })
        .collect();
    let engine = service.batch(&BatchOptions {
        n_slots: c.parallel,
        n_ctx_per_slot: c.ctx,
        n_batch: 512,
        n_threads: c.threads,
        max_queue: c.parallel + c.queue,
        chat_template: None,
    })?;
    Ok(Loaded {
        service,
        engine,
        embedder,
        embedder_name,
        kbs,
    })
}

/// The folder for files uploaded to KBs that are not folders.
fn uploads_home() -> PathBuf {
    match std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("lorag/uploads"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into()))
            .join(".local/share/lorag/uploads"),
    }
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
    l.service
        .adapter_set(names)
        .map_err(|m| ApiError::not_found(m, Some("lora")))
}
