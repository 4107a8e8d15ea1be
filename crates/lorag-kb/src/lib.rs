//! The knowledge base: where it lives (see `lorag-store`: a folder with SQLite, or a PostgreSQL
//! schema), the ingestion pipeline that fills it (discover → fingerprint → load → chunk → embed →
//! store, one source per transaction), and retrieval (dense, BM25, hybrid by reciprocal-rank
//! fusion; a request with several questions is searched per question and merged round-robin).
//!
//! Opening a KB: [`open`] is the one entry point, for every command and the server:
//!
//! ```no_run
//! # fn f(embedder: &dyn lorag_embed::Embedder) -> lorag_kb::Result<()> {
//! use lorag_kb::Access;
//! // A folder (the embedded SQLite store) ...
//! let kb = lorag_kb::open("my-kb", embedder, Access::Read)?;
//! // ... or a PostgreSQL schema (password from PGPASSWORD or ~/.pgpass, never printed).
//! let shared = lorag_kb::open("postgres://lorag@db:5432/kbs?schema=handbook", embedder, Access::Create)?;
//! let hits = lorag_kb::search(&kb, embedder, "who issues permits?", &Default::default())?;
//! # let _ = (shared, hits); Ok(()) }
//! ```
//!
//! It returns an `Arc<dyn Store>`: share it between threads; `&Arc<dyn Store>` passes where a
//! `&dyn Store` is wanted. Nothing above `lorag-store` names a backend type.
//!
//! Invariants:
//! - One bad file never aborts a batch: it lands in `failed` with its reason, the rest goes on.
//! - An unchanged source (same content hash) is not loaded, chunked or embedded again.
//! - The KB's embedding model is checked before any work: a KB never mixes models.
//! - Ingestion and retrieval go through `&dyn Store` only, so any backend serves; searching opens
//!   the KB read-only ([`Access::Read`]) and never writes to it.
//! - Hybrid search fuses the backend's dense and lexical lists here ([`fuse`]), the same way for
//!   every backend.

mod copy;
mod ingest;
mod retrieve;

pub use copy::{copy, CopyReport};
pub use ingest::{ingest, ingest_into, Failed, IngestOptions, IngestReport};
pub use retrieve::{
    fuse, round_robin, search, split_needs, Hit, Mode, NeedFusion, SearchOptions, RRF_K,
};

/// The embedded store's type, for code not yet moved to [`open`] (the server's upload and delete
/// paths); new code opens KBs with [`open`] and holds `Arc<dyn Store>`.
pub use lorag_store::SqliteStore;
pub use lorag_store::{
    display_location, is_postgres, Access, Filter, SourceInfo, Store, StoreStats,
};

use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] lorag_store::Error),
    #[error(transparent)]
    Ingest(#[from] lorag_ingest::IngestError),
    #[error("embedding: {0}")]
    Embed(#[from] lorag_embed::EmbedError),
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Open the KB at `kb` and check that `embedder` is the model that built it (a new KB opened
/// with [`Access::Create`] or [`Access::Write`] records it; a reader only compares, and leaves
/// an empty KB without a model).
///
/// `kb` is a folder (the embedded store: SQLite plus an HNSW index; created with
/// [`Access::Create`]) or `postgres://user@host:port/db?schema=NAME` (PostgreSQL + pgvector, one
/// KB per schema; the password from the URL, `PGPASSWORD` or `~/.pgpass`). An [`Access::Read`]
/// handle never writes; every handle sees later commits of other handles and processes.
pub fn open(
    kb: &str,
    embedder: &dyn lorag_embed::Embedder,
    access: Access,
) -> Result<Arc<dyn Store>> {
    open_path(Path::new(kb), embedder, access)
}

/// [`open`] for a location held as a path.
pub fn open_path(
    kb: &Path,
    embedder: &dyn lorag_embed::Embedder,
    access: Access,
) -> Result<Arc<dyn Store>> {
    let store = lorag_store::open_path(kb, access)?;
    store.check_embedding_model(embedder.model_id(), embedder.dim())?;
    Ok(store)
}

/// Open the KB at `kb` without an embedder (statistics, copies): see [`open`].
pub fn open_store(kb: &str, access: Access) -> Result<Arc<dyn Store>> {
    Ok(lorag_store::open(kb, access)?)
}

/// Open an existing KB for reading: [`open`] with [`Access::Read`] (a folder or a PostgreSQL URL,
/// as a path or a string).
pub fn open_for_search(
    kb: impl AsRef<Path>,
    embedder: &dyn lorag_embed::Embedder,
) -> Result<Arc<dyn Store>> {
    open_path(kb.as_ref(), embedder, Access::Read)
}
