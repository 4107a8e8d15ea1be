//! The knowledge-base store. [`Store`] is the seam: the embedded [`SqliteStore`] implements it
//! now, a PostgreSQL + pgvector store will implement it for scale-out.
//!
//! The seam (any backend):
//! - `Store: Send + Sync` and every method takes `&self`, writes too: one handle
//!   (`Arc<dyn Store>`) serves every thread of a long-running server.
//! - A handle sees other handles' and other processes' commits: every query reflects the database
//!   as committed when it ran (derived indexes are caught up first).
//! - A handle opened for reading never writes: no schema change, no pragma write, no index save.
//!
//! Invariants of the embedded store (a KB is a directory):
//! - `kb.sqlite` (WAL) is the source of truth: sources, documents, chunks, their vectors, and an
//!   FTS5 index kept in step by triggers. `index.usearch` (HNSW) is derived: when it is missing,
//!   stale (its generation differs from the database's) or corrupt, it is rebuilt from SQLite.
//! - The database's `generation` (meta table) grows by one with every committed change. Each
//!   dense query compares it with the generation the in-memory index reflects (one indexed read)
//!   and, when they differ, catches the index up first: it applies the difference in chunk ids when
//!   an index is loaded, else loads the saved index if its `index.json` generation matches, else
//!   rebuilds it from SQLite in memory. Only a writable handle saves it (through temporary files
//!   with unique names, then renames).
//! - A source (file) is replaced in one transaction: it is there whole or not at all, and a
//!   process killed mid-ingest leaves the previous state.
//! - Chunk ids are never reused (AUTOINCREMENT), and every search result is read back from SQLite,
//!   so a stale index can never return a chunk that no longer exists.
//! - A KB records the embedding model that built it and refuses vectors from another.

mod hnsw;
mod sqlite;

pub use sqlite::SqliteStore;

/// An empty HNSW index with the parameters the store uses (cosine, M = 16, ef_construction = 128,
/// ef_search = 96), for benchmarks and tools that want the same index outside a knowledge base.
pub fn hnsw_index(dim: usize, capacity: usize) -> Result<usearch::Index> {
    hnsw::new_index(dim, capacity)
}

use lorag_core::{Chunk, Document, Metadata};
use serde::Serialize;
use std::path::PathBuf;

pub type ChunkId = i64;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The storage backend failed (an SQL error, a locked database...): what it said.
    #[error("{path}: {message}")]
    Backend { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the knowledge base at {kb} was built with embedding model {built} but this run uses {given}; use another --kb, or re-ingest into a new one")]
    ModelMismatch {
        kb: PathBuf,
        built: String,
        given: String,
    },
    #[error("vector of dimension {got} for a knowledge base of dimension {want}")]
    Dimension { want: usize, got: usize },
    #[error("HNSW index: {0}")]
    Index(String),
    #[error("invalid filter {0:?}: {1}")]
    Filter(String, String),
    #[error("{path}: not a lorag knowledge base ({why})")]
    NotKb { path: PathBuf, why: String },
    #[error("{path}: the knowledge base was opened for reading; it cannot be changed through this handle")]
    ReadOnly { path: PathBuf },
}

pub type Result<T> = std::result::Result<T, Error>;

/// A file (or other source) as ingested: its identity and fingerprint.
#[derive(Debug, Clone)]
pub struct SourceRecord {
    pub source: String,
    pub kind: String,
    pub hash: String,
    pub mtime: i64,
    pub size: u64,
}

/// A document with its chunks and one vector per chunk.
pub struct DocumentChunks<'a> {
    pub document: &'a Document,
    pub chunks: &'a [Chunk],
    pub vectors: &'a [Vec<f32>],
}

/// A retrieval filter; several filters must all hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// The source path matches a glob (`*` and `?` match any characters, `/` included).
    Source(String),
    /// The document kind (`pdf`, `md`, `csv`...).
    Kind(String),
    /// A metadata field equals a value (compared as text).
    Field(String, String),
}

impl Filter {
    /// Parse `KEY=VALUE`: `source=GLOB`, `kind=EXT` (or `type=`), anything else a metadata field.
    pub fn parse(s: &str) -> Result<Self> {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| Error::Filter(s.into(), "expected KEY=VALUE".into()))?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            return Err(Error::Filter(s.into(), "empty key".into()));
        }
        Ok(match k {
            "source" => Filter::Source(v.into()),
            "kind" | "type" => Filter::Kind(v.trim_start_matches('.').to_ascii_lowercase()),
            _ => Filter::Field(k.into(), v.into()),
        })
    }
}

/// A chunk as stored, with its provenance.
#[derive(Debug, Clone, Serialize)]
pub struct StoredChunk {
    pub id: ChunkId,
    pub source: String,
    pub kind: String,
    pub title: Option<String>,
    pub section: Option<String>,
    pub page: Option<u32>,
    pub start: usize,
    pub end: usize,
    pub text: String,
    pub metadata: Metadata,
}

/// A source as listed for people (a document list): what it is, how big, when it came in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceInfo {
    pub source: String,
    pub kind: String,
    /// Chunks stored for it.
    pub chunks: u64,
    /// When it was (last) ingested, in Unix seconds.
    pub ingested_at: i64,
    /// Its size in bytes when it was ingested.
    pub size: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoreStats {
    pub sources: u64,
    pub documents: u64,
    pub chunks: u64,
    pub embedding_model: Option<String>,
    pub dim: Option<usize>,
    /// The state of the backend's derived vector index, in the backend's own words (for people,
    /// not for programs). The embedded store says `fresh`, `stale`, `missing` or `corrupt` about
    /// its saved HNSW files (a search catches up from the latter three).
    pub index_state: String,
    pub bytes_on_disk: u64,
}

/// What the knowledge base needs from storage, whatever the backend.
///
/// Every method takes `&self` and a handle is `Send + Sync`: one handle, shared as
/// `Arc<dyn Store>`, serves concurrent searches and writes. Queries see every change committed
/// before they start, by this handle or any other (another thread, another process).
pub trait Store: Send + Sync {
    /// The embedding model recorded in the KB, with its dimension.
    fn embedding_model(&self) -> Result<Option<(String, usize)>>;
    /// Record the model on first use; an error if the KB holds another model. A read-only
    /// handle only compares (an empty KB stays without a model).
    fn check_embedding_model(&self, model_id: &str, dim: usize) -> Result<()>;
    /// The fingerprint hash of a source, if it is in the KB.
    fn source_hash(&self, source: &str) -> Result<Option<String>>;
    /// Replace everything of `rec.source` with `docs`, atomically. Returns the number of chunks.
    fn put_source(&self, rec: &SourceRecord, docs: &[DocumentChunks<'_>]) -> Result<usize>;
    /// Remove a source and its chunks. Returns false if it was not there.
    fn remove_source(&self, source: &str) -> Result<bool>;
    /// The sources' names, sorted.
    fn sources(&self) -> Result<Vec<String>>;
    /// The sources with their kind, chunk count, ingestion time and size, sorted by name.
    fn documents(&self) -> Result<Vec<SourceInfo>>;
    /// A number that grows with every committed change (0 for a new KB): equal generations
    /// mean equal contents.
    fn generation(&self) -> Result<u64>;
    /// Nearest chunks by cosine similarity (score = similarity, higher is better).
    fn dense(&self, query: &[f32], k: usize, filters: &[Filter]) -> Result<Vec<(ChunkId, f32)>>;
    /// Best chunks by BM25 (score = BM25, higher is better).
    fn lexical(&self, query: &str, k: usize, filters: &[Filter]) -> Result<Vec<(ChunkId, f32)>>;
    /// The chunks with these ids that exist, in the order asked.
    fn chunks(&self, ids: &[ChunkId]) -> Result<Vec<StoredChunk>>;
    /// The vectors of the chunks with these ids that exist, in the order asked.
    fn vectors(&self, ids: &[ChunkId]) -> Result<Vec<(ChunkId, Vec<f32>)>>;
    fn stats(&self) -> Result<StoreStats>;
    /// Bring derived indexes up to date and persist them (a no-op on a read-only handle).
    fn flush(&self) -> Result<()>;
}

pub(crate) fn vec_to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(crate) fn blob_to_vec(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_is_shared_across_threads() {
        fn shared(s: std::sync::Arc<SqliteStore>) -> std::sync::Arc<dyn Store> {
            s
        }
        let _ = shared;
    }

    #[test]
    fn filters_parse() {
        assert_eq!(
            Filter::parse("source=docs/*.md").unwrap(),
            Filter::Source("docs/*.md".into())
        );
        assert_eq!(
            Filter::parse("type=.PDF").unwrap(),
            Filter::Kind("pdf".into())
        );
        assert_eq!(
            Filter::parse("author = Ann").unwrap(),
            Filter::Field("author".into(), "Ann".into())
        );
        assert!(Filter::parse("nokey").is_err());
        assert!(Filter::parse("=x").is_err());
    }
}
