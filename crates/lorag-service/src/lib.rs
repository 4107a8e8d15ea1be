//! The answering service: the one library entry point that turns names on a command line (a
//! model, LoRA adapters, knowledge bases, an embedder) into loaded, checked parts. `lorag ask`,
//! `lorag chat`, `lorag serve` and `lorag eval` all build a [`Service`] from a [`Config`] and
//! answer through it, so a model, an adapter or a KB is resolved, loaded and checked the same way
//! everywhere.
//!
//! Invariants:
//! - Knowledge bases and adapters are opened and checked before the model loads: a wrong `--kb`
//!   or `--lora` fails in milliseconds, not after a model load.
//! - A KB is opened read-only (its handle never writes and sees other processes' commits) and
//!   checked against the embedder; writes go through [`Service::kb_writer`], one handle per operation.
//! - Adapters keep the order they were given; [`Service::session`] applies all of them (the CLI's
//!   meaning of repeated `--lora`), [`Service::adapter_set`] a named subset (the server's).

use anyhow::{bail, Context, Result};
use lorag_embed::Embedder;
use lorag_llm::{
    AdapterSet, BatchEngine, BatchOptions, Engine, Generator, LoadOptions, LoraAdapter, Message,
    Session, SessionOptions,
};
use lorag_store::Store;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use lorag_rag::{Answer, RagOptions};

/// A LoRA adapter to load: the name clients pick it by, its GGUF file, its scale.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSpec {
    pub name: String,
    pub path: PathBuf,
    pub scale: f32,
}

impl LoraSpec {
    /// `PATH` or `PATH:SCALE` (a `--lora` flag); the name is the file's stem.
    pub fn parse(spec: &str) -> Result<LoraSpec> {
        let (path, scale) = match spec.rsplit_once(':') {
            Some((p, s)) if s.parse::<f32>().is_ok() => {
                let scale: f32 = s.parse().expect("checked");
                if !scale.is_finite() {
                    bail!("--lora {spec}: the scale must be a finite number");
                }
                (PathBuf::from(p), scale)
            }
            _ => (PathBuf::from(spec), 1.0),
        };
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| spec.to_string());
        Ok(LoraSpec { name, path, scale })
    }

    /// `NAME=PATH[:SCALE]` (the server's `--lora`).
    pub fn parse_named(spec: &str) -> Result<LoraSpec> {
        let (name, rest) = split_named("--lora", spec)?;
        let mut l = LoraSpec::parse(&rest)?;
        l.name = name;
        Ok(l)
    }
}

/// A knowledge base to open: the name it is served under and where it lives.
#[derive(Debug, Clone, PartialEq)]
pub struct KbSpec {
    pub name: String,
    /// A folder (the embedded SQLite store) or a `postgres://` URL.
    pub location: String,
}

impl KbSpec {
    /// `NAME=LOCATION` (the server's `--kb`).
    pub fn parse_named(spec: &str) -> Result<KbSpec> {
        let (name, location) = split_named("--kb", spec)?;
        if name.contains('/') {
            bail!("--kb name {name:?}: use letters, digits, '-' or '_'");
        }
        Ok(KbSpec { name, location })
    }

    /// A bare location (`lorag ask --kb KB`): the name is the folder's name (or "kb").
    pub fn unnamed(location: &str) -> KbSpec {
        let name = Path::new(location)
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "kb".to_string());
        KbSpec {
            name,
            location: location.to_string(),
        }
    }
}

fn split_named(flag: &str, spec: &str) -> Result<(String, String)> {
    match spec.split_once('=') {
        Some((n, v)) if !n.trim().is_empty() && !v.is_empty() => {
            Ok((n.trim().to_string(), v.to_string()))
        }
        _ => bail!("{flag} {spec:?}: expected NAME=VALUE"),
    }
}

/// What to load.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// A catalogue name or a .gguf path (default: the catalogue's default chat model).
    pub model: Option<String>,
    pub loras: Vec<LoraSpec>,
    pub kbs: Vec<KbSpec>,
    /// Create a KB that does not exist yet (the server, so that documents can be uploaded).
    pub create_kbs: bool,
    /// A catalogue name or a folder (default: all-MiniLM-L6-v2).
    pub embedder: Option<String>,
    /// Load the embedder even without a KB (the server's /v1/embeddings).
    pub need_embedder: bool,
    /// GPU layers (None: all when built with CUDA and a GPU is present, else 0).
    pub gpu_layers: Option<u32>,
    /// Load the grounded-answer adapter shipped for this model (when there is one): grounded
    /// answers for which the caller chose no adapter use it ([`Service::grounded_adapters`]).
    pub default_adapter: bool,
}

/// An open knowledge base.
pub struct KbHandle {
    pub name: String,
    pub location: String,
    /// The shared read handle (never writes; follows other processes' commits).
    pub store: Arc<dyn Store>,
}

/// The loaded parts.
pub struct Service {
    model_path: PathBuf,
    model_name: String,
    engine: Engine,
    loras: Vec<(String, Arc<LoraAdapter>, f32)>,
    grounded: Option<(String, Arc<LoraAdapter>)>,
    embedder: Option<(String, Arc<dyn Embedder>)>,
    kbs: BTreeMap<String, KbHandle>,
}

/// `--model` as given (a catalogue name or a path), resolved against the models folder.
pub fn resolve_model(spec: Option<&str>) -> Result<PathBuf> {
    let spec = spec.unwrap_or(lorag_models::DEFAULT_CHAT_MODEL);
    Ok(lorag_models::resolve(spec, &lorag_models::models_dir())?)
}

/// The name clients see for a model given as `spec`: the catalogue name, or a file's stem.
pub fn model_name(spec: Option<&str>) -> String {
    match spec {
        None => lorag_models::DEFAULT_CHAT_MODEL.to_string(),
        Some(m) if m.ends_with(".gguf") => Path::new(m)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| m.to_string()),
        Some(m) => m.to_string(),
    }
}

/// The embedder named by `spec` (a catalogue name or a folder; default all-MiniLM-L6-v2), and
/// the name clients see for it.
pub fn load_embedder(spec: Option<&str>) -> Result<(String, lorag_embed::BertEmbedder)> {
    let spec = spec.unwrap_or(lorag_models::DEFAULT_EMBED_MODEL);
    let dir = lorag_models::resolve(spec, &lorag_models::models_dir())?;
    let name = if dir.as_os_str() == spec {
        dir.file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| spec.to_string())
    } else {
        spec.to_string()
    };
    let e = lorag_embed::BertEmbedder::load(&dir, &lorag_embed::EmbedOptions::default())
        .with_context(|| format!("loading the embedder {}", dir.display()))?;
    Ok((name, e))
}

/// Whether a KB location names a PostgreSQL schema rather than a folder.
pub fn is_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// Open the KB at `location` (a folder or a `postgres://` URL) for reading, checked against
/// `embedder`; with `create`, a KB that does not exist yet is created first (empty, recording the
/// embedder).
pub fn open_kb(location: &str, embedder: &dyn Embedder, create: bool) -> Result<Arc<dyn Store>> {
    if create {
        lorag_kb::open(location, embedder, lorag_kb::Access::Create)
            .with_context(|| format!("creating the knowledge base {location}"))?;
    } else if !is_url(location) && !Path::new(location).join("kb.sqlite").exists() {
        bail!(
            "no knowledge base at {location}: build one with `lorag ingest FILES... --kb {location}`"
        );
    }
    Ok(lorag_kb::open(location, embedder, lorag_kb::Access::Read)?)
}

/// A handle that may write to the KB at `location` (one per operation: ingest, delete).
pub fn open_kb_writer(location: &str) -> Result<Arc<dyn Store>> {
    Ok(lorag_kb::open_store(location, lorag_kb::Access::Write)?)
}

impl Service {
    /// Resolve and load everything in `cfg`: KBs and adapter files are checked first, then the
    /// model loads and the adapters are attached to it.
    pub fn load(cfg: &Config) -> Result<Service> {
        let model_path = resolve_model(cfg.model.as_deref())?;
        let model_name = model_name(cfg.model.as_deref());
        let mut names = std::collections::HashSet::new();
        for l in &cfg.loras {
            if !names.insert(l.name.clone()) || l.name == model_name {
                bail!(
                    "--lora name {:?} is used twice (or equals the model's name)",
                    l.name
                );
            }
            if !l.path.is_file() {
                bail!(
                    "--lora {}: LoRA adapter not found: {}",
                    l.name,
                    l.path.display()
                );
            }
        }
        let grounded = if cfg.default_adapter {
            lorag_models::grounded_adapter(&model_path, &lorag_models::models_dir())
                .context("the default grounded adapter (--no-default-adapter goes without)")?
        } else {
            None
        };
        let embedder = if cfg.need_embedder || !cfg.kbs.is_empty() {
            let (name, e) = load_embedder(cfg.embedder.as_deref())?;
            Some((name, Arc::new(e) as Arc<dyn Embedder>))
        } else {
            None
        };
        let mut kbs = BTreeMap::new();
        for k in &cfg.kbs {
            if kbs.contains_key(&k.name) {
                bail!("--kb name {:?} is used twice", k.name);
            }
            let (_, e) = embedder.as_ref().expect("loaded when there are KBs");
            let store = open_kb(&k.location, e.as_ref(), cfg.create_kbs)
                .with_context(|| format!("--kb {}", k.name))?;
            kbs.insert(
                k.name.clone(),
                KbHandle {
                    name: k.name.clone(),
                    location: k.location.clone(),
                    store,
                },
            );
        }
        let engine = Engine::load(
            &model_path,
            &LoadOptions {
                n_gpu_layers: lorag_llm::gpu_layers(cfg.gpu_layers),
                ..LoadOptions::default()
            },
        )?;
        let mut loras = Vec::new();
        for l in &cfg.loras {
            let a = engine
                .load_lora(&l.path)
                .with_context(|| format!("--lora {}", l.name))?;
            loras.push((l.name.clone(), a, l.scale));
        }
        let grounded = match grounded {
            Some((a, path)) => Some((
                a.name.to_string(),
                engine
                    .load_lora(&path)
                    .with_context(|| format!("the default adapter {}", path.display()))?,
            )),
            None => None,
        };
        Ok(Service {
            model_path,
            model_name,
            engine,
            loras,
            grounded,
            embedder,
            kbs,
        })
    }

    pub fn model_path(&self) -> &Path {
        &self.model_path
    }

    /// The id clients use for the base model.
    pub fn model_name(&self) -> &str {
        &self.model_name
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A single-user session with every adapter attached, in the order given.
    pub fn session(&self, opts: &SessionOptions) -> Result<Session> {
        let mut s = self.engine.session(opts)?;
        s.set_adapters(&self.all_adapters())?;
        Ok(s)
    }

    /// A single-user session with the given adapters (a subset of this service's, e.g. from
    /// [`Service::adapter_set`]).
    pub fn session_with(&self, opts: &SessionOptions, adapters: &AdapterSet) -> Result<Session> {
        let mut s = self.engine.session(opts)?;
        s.set_adapters(adapters)?;
        Ok(s)
    }

    /// The batched engine the server decodes with (adapters are chosen per request).
    pub fn batch(&self, opts: &BatchOptions) -> Result<BatchEngine> {
        Ok(BatchEngine::start(&self.engine, opts)?)
    }

    /// Every adapter, with its scale.
    pub fn all_adapters(&self) -> AdapterSet {
        self.loras.iter().map(|(_, a, s)| (a.clone(), *s)).collect()
    }

    /// The shipped grounded-answer adapter, when [`Config::default_adapter`] asked for it and the
    /// model is the one it was made for: grounded answers with no adapter chosen use it.
    pub fn grounded_adapters(&self) -> AdapterSet {
        self.grounded
            .iter()
            .map(|(_, a)| (a.clone(), 1.0))
            .collect()
    }

    /// The name of the default grounded adapter in use (None: none for this model, or turned off).
    pub fn grounded_adapter_name(&self) -> Option<&str> {
        self.grounded.as_ref().map(|(n, _)| n.as_str())
    }

    /// Adapter names, in the order given.
    pub fn adapter_names(&self) -> impl Iterator<Item = &str> {
        self.loras.iter().map(|(n, _, _)| n.as_str())
    }

    /// The adapter called `name` and its configured scale.
    pub fn adapter(&self, name: &str) -> Option<(Arc<LoraAdapter>, f32)> {
        self.loras
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, a, s)| (a.clone(), *s))
    }

    /// The named adapters with the scales asked for; an unknown name is an error that lists
    /// the known ones.
    pub fn adapter_set(&self, names: &[(String, f32)]) -> Result<AdapterSet, String> {
        names
            .iter()
            .map(|(n, scale)| {
                self.adapter(n).map(|(a, _)| (a, *scale)).ok_or_else(|| {
                    let known: Vec<&str> = self.adapter_names().collect();
                    format!(
                        "no adapter named {n:?}; this server has: {}",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    )
                })
            })
            .collect()
    }

    /// The embedder and the name clients see for it (None when no KB needed one).
    pub fn embedder(&self) -> Option<(&str, &Arc<dyn Embedder>)> {
        self.embedder.as_ref().map(|(n, e)| (n.as_str(), e))
    }

    pub fn kb_names(&self) -> impl Iterator<Item = &str> {
        self.kbs.keys().map(|s| s.as_str())
    }

    pub fn kb_handle(&self, name: &str) -> Option<&KbHandle> {
        self.kbs.get(name)
    }

    /// The KB called `name` as RAG takes it (its store and the embedder that built it).
    pub fn kb(&self, name: &str) -> Option<lorag_rag::Kb<'_>> {
        let h = self.kbs.get(name)?;
        let (_, e) = self.embedder.as_ref()?;
        Some(lorag_rag::Kb {
            store: h.store.as_ref(),
            embedder: e.as_ref(),
        })
    }

    /// A handle that may write to the KB called `name` (ingest, delete): one per operation.
    pub fn kb_writer(&self, name: &str) -> Result<Arc<dyn Store>> {
        let h = self
            .kbs
            .get(name)
            .with_context(|| format!("no knowledge base named {name:?}"))?;
        open_kb_writer(&h.location)
    }

    /// Answer `question` with `generator` (a session of this service's model, or a client of
    /// its batched engine), over the KB called `kb` (or the model alone), exactly as `lorag ask`.
    pub fn ask(
        &self,
        generator: &mut dyn Generator,
        kb: Option<&str>,
        history: &[Message],
        question: &str,
        opts: &RagOptions,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Answer> {
        let kbv = match kb {
            Some(n) => Some(
                self.kb(n)
                    .with_context(|| format!("no knowledge base named {n:?}"))?,
            ),
            None => None,
        };
        Ok(lorag_rag::ask(
            generator,
            kbv.as_ref(),
            history,
            question,
            opts,
            on_text,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lora_specs() {
        let l = LoraSpec::parse("runs/faq/adapter.gguf:0.5").unwrap();
        assert_eq!(l.path, PathBuf::from("runs/faq/adapter.gguf"));
        assert_eq!(l.scale, 0.5);
        assert_eq!(l.name, "adapter");
        let l = LoraSpec::parse("C:dir/a.gguf").unwrap();
        assert_eq!(l.path, PathBuf::from("C:dir/a.gguf"));
        assert_eq!(l.scale, 1.0);
        assert!(LoraSpec::parse("a.gguf:inf").is_err());
        let l = LoraSpec::parse_named("faq=a.gguf:2").unwrap();
        assert_eq!((l.name.as_str(), l.scale), ("faq", 2.0));
        assert!(LoraSpec::parse_named("a.gguf").is_err());
        assert!(KbSpec::parse_named("a/b=dir").is_err());
        assert_eq!(KbSpec::parse_named("docs=kb").unwrap().location, "kb");
        assert_eq!(KbSpec::unnamed("/x/faq-kb").name, "faq-kb");
    }

    #[test]
    fn names() {
        assert_eq!(model_name(Some("/m/qwen.Q4.gguf")), "qwen.Q4");
        assert_eq!(model_name(Some("smollm2")), "smollm2");
    }

    #[test]
    fn a_missing_adapter_or_model_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        let cfg = Config {
            model: Some(d.path().join("no-model.gguf").display().to_string()),
            loras: vec![LoraSpec::parse(&d.path().join("x.gguf").display().to_string()).unwrap()],
            ..Config::default()
        };
        let e = format!("{:#}", Service::load(&cfg).err().unwrap());
        assert!(e.contains("x.gguf") || e.contains("no-model"), "{e}");
    }
}
