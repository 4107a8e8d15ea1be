//! The knowledge base: a directory that holds everything (see `lorag-store`), the ingestion
//! pipeline that fills it (discover → fingerprint → load → chunk → embed → store, one source per
//! transaction), and retrieval (dense, BM25, hybrid by reciprocal-rank fusion; a request with
//! several questions searched per question and merged round-robin).
//!
//! Invariants:
//! - One bad file never aborts a batch: it lands in `failed` with its reason, the rest goes on.
//! - An unchanged source (same content hash) is not loaded, chunked or embedded again.
//! - The KB's embedding model is checked before any work: a KB never mixes models.
//! - Ingestion and retrieval go through `&dyn Store` only, so any backend serves; searching opens
//!   the KB read-only ([`open_for_search`]) and never writes to it.

mod ingest;
mod retrieve;

pub use ingest::{ingest, ingest_into, Failed, IngestOptions, IngestReport};
pub use retrieve::{fuse, round_robin, search, split_needs, Hit, Mode, NeedFusion, SearchOptions};

pub use lorag_store::{Filter, SourceInfo, SqliteStore, Store, StoreStats};

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

/// Open an existing KB for reading, checking that `embedder` is the model that built it. The
/// handle never writes (see [`SqliteStore::open_read`]) and sees later commits of other processes;
/// share it between threads as `Arc<SqliteStore>` or `Arc<dyn Store>`.
pub fn open_for_search(
    dir: &std::path::Path,
    embedder: &dyn lorag_embed::Embedder,
) -> Result<SqliteStore> {
    let store = SqliteStore::open_read(dir)?;
    store.check_embedding_model(embedder.model_id(), embedder.dim())?;
    Ok(store)
}
