//! The knowledge-base store. [`Store`] is the seam: the embedded [`SqliteStore`] implements it
//! now, a PostgreSQL + pgvector store will implement it for scale-out.
//!
//! Invariants of the embedded store (a KB is a directory):
//! - `kb.sqlite` (WAL) is the source of truth: sources, documents, chunks, their vectors, and an
//!   FTS5 index kept in step by triggers. `index.usearch` (HNSW) is derived: when it is missing,
//!   stale (its generation differs from the database's) or corrupt, it is rebuilt from SQLite.
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
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
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

#[derive(Debug, Clone, Serialize)]
pub struct StoreStats {
    pub sources: u64,
    pub documents: u64,
    pub chunks: u64,
    pub embedding_model: Option<String>,
    pub dim: Option<usize>,
    /// `fresh`, `stale`, `missing` or `corrupt` (the next search rebuilds the latter three).
    pub index_state: String,
    pub bytes_on_disk: u64,
}

/// What the knowledge base needs from storage.
pub trait Store {
    /// The embedding model recorded in the KB, with its dimension.
    fn embedding_model(&self) -> Result<Option<(String, usize)>>;
    /// Record the model on first use; an error if the KB holds another model.
    fn check_embedding_model(&mut self, model_id: &str, dim: usize) -> Result<()>;
    /// The fingerprint hash of a source, if it is in the KB.
    fn source_hash(&self, source: &str) -> Result<Option<String>>;
    /// Replace everything of `rec.source` with `docs`, atomically. Returns the number of chunks.
    fn put_source(&mut self, rec: &SourceRecord, docs: &[DocumentChunks<'_>]) -> Result<usize>;
    /// Remove a source and its chunks. Returns false if it was not there.
    fn remove_source(&mut self, source: &str) -> Result<bool>;
    fn sources(&self) -> Result<Vec<String>>;
    /// Nearest chunks by cosine similarity (score = similarity, higher is better).
    fn dense(&self, query: &[f32], k: usize, filters: &[Filter]) -> Result<Vec<(ChunkId, f32)>>;
    /// Best chunks by BM25 (score = BM25, higher is better).
    fn lexical(&self, query: &str, k: usize, filters: &[Filter]) -> Result<Vec<(ChunkId, f32)>>;
    /// The chunks with these ids that exist, in the order asked.
    fn chunks(&self, ids: &[ChunkId]) -> Result<Vec<StoredChunk>>;
    fn vectors(&self, ids: &[ChunkId]) -> Result<Vec<(ChunkId, Vec<f32>)>>;
    fn stats(&self) -> Result<StoreStats>;
    /// Bring derived indexes up to date and persist them.
    fn flush(&mut self) -> Result<()>;
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
