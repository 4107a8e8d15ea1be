//! The knowledge-base store. [`Store`] is the seam; two backends implement it: the embedded
//! [`SqliteStore`] (a KB is a folder) and [`PgStore`] (PostgreSQL + pgvector, a KB is a schema,
//! for KBs that several servers share or that outgrow one machine). Open either by location with
//! [`open`]: a folder path, or `postgres://user@host:port/db?schema=NAME`.
//!
//! The seam (any backend):
//! - `Store: Send + Sync` and every method takes `&self`, writes too: one handle
//!   (`Arc<dyn Store>`) serves every thread of a long-running server.
//! - A handle sees other handles' and other processes' commits: every query reflects the database
//!   as committed when it ran (derived indexes are caught up first).
//! - A handle opened for reading ([`Access::Read`]) never writes: no schema change, no pragma
//!   write, no index save; its writes fail with [`Error::ReadOnly`].
//! - A source is replaced in one transaction: it is there whole or not at all; a process killed
//!   mid-ingest leaves the previous state; two writers on one KB never duplicate a chunk.
//! - Chunk ids are never reused, and every result is read back from the database of record.
//! - A KB records the embedding model that built it and refuses vectors from another.
//! - [`Filter`]s mean the same on every backend (their semantics are defined here, in lorag's
//!   terms, and each backend translates them); hybrid fusion is done above the store (lorag-kb),
//!   on the dense and lexical lists each backend returns.
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
//!
//! Invariants of the PostgreSQL store (see [`PgStore`]): one KB per schema, created and upgraded
//! by versioned migrations; the vectors in a `vector(d)` column under an HNSW index (cosine,
//! the same M and ef_construction as the embedded index); a generated `tsvector` column under a
//! GIN index for lexical ranking; each source replaced in one transaction under a per-source
//! advisory lock; a lost connection retried a bounded number of times, and reported.

mod hnsw;
mod pg;
mod sqlite;

pub use pg::{is_postgres, PgStore};
pub use sqlite::SqliteStore;

/// How a KB is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only: the KB must exist; nothing is ever written (no schema, no index save).
    Read,
    /// Read and write an existing KB (a missing one is an error).
    Write,
    /// Read and write; a missing KB is created (and an old schema upgraded).
    Create,
}

/// Open the KB at `kb`: a folder (the embedded SQLite store) or a PostgreSQL URL
/// `postgres://user@host:port/db?schema=NAME` (one KB per schema; the password from the URL,
/// `PGPASSWORD` or `~/.pgpass`, never printed). The one way above this crate to open a KB.
pub fn open(kb: &str, access: Access) -> Result<std::sync::Arc<dyn Store>> {
    open_path(std::path::Path::new(kb), access)
}

/// [`open`] for a location held as a path (a folder whose name is not UTF-8 still opens).
pub fn open_path(kb: &std::path::Path, access: Access) -> Result<std::sync::Arc<dyn Store>> {
    if let Some(url) = kb.to_str().filter(|s| is_postgres(s)) {
        return Ok(std::sync::Arc::new(PgStore::open(url, access)?));
    }
    Ok(std::sync::Arc::new(match access {
        Access::Read => SqliteStore::open_read(kb)?,
        Access::Write => SqliteStore::open(kb, false)?,
        Access::Create => SqliteStore::open(kb, true)?,
    }))
}

/// A KB location for messages: a PostgreSQL URL without its password; a folder as it is.
pub fn display_location(kb: &str) -> String {
    if is_postgres(kb) {
        pg::redact(kb)
    } else {
        kb.to_string()
    }
}

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

/// A retrieval filter; several filters must all hold. These are lorag's semantics, the same on
/// every backend (each translates them; the store test suite checks both):
/// - `Source(pattern)`: the whole source name matches the glob `pattern`, case-sensitively: `*`
///   matches any run of characters (`/` included, possibly none), `?` exactly one character, and
///   every other character (`[`, `]`, `%`, `_`, `\` included) only itself.
/// - `Kind(k)`: the document's kind is `k` (`pdf`, `md`, `csv`...).
/// - `Field(key, value)`: the document's metadata has the top-level field `key`, and it is a
///   string equal to `value`; or a number equal to `value` read as a number (both as 64-bit
///   floats: `year=2024` matches 2024 and 2024.0); or a boolean and `value` is `true` or `false`
///   accordingly. A null, array or object field never matches, nor does a missing one. Field
///   names cannot hold `"` or `\`.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Source(String),
    Kind(String),
    Field(String, String),
}

/// One element of a source glob (see [`Filter::Source`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobPart {
    /// `*`: any run of characters.
    Any,
    /// `?`: exactly one character.
    One,
    /// This character, itself.
    Lit(char),
}

/// The parts of a source glob.
pub fn glob_parts(pattern: &str) -> Vec<GlobPart> {
    pattern
        .chars()
        .map(|c| match c {
            '*' => GlobPart::Any,
            '?' => GlobPart::One,
            c => GlobPart::Lit(c),
        })
        .collect()
}

/// Whether `name` matches the source glob `pattern` (the reference for the backends).
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let p = glob_parts(pattern);
    let n: Vec<char> = name.chars().collect();
    // Classic wildcard matching with backtracking to the last `*`.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < n.len() {
        match p.get(i) {
            Some(GlobPart::One) => {
                i += 1;
                j += 1;
            }
            Some(GlobPart::Lit(c)) if *c == n[j] => {
                i += 1;
                j += 1;
            }
            Some(GlobPart::Any) => {
                star = Some(i);
                mark = j;
                i += 1;
            }
            _ => match star {
                Some(s) => {
                    i = s + 1;
                    mark += 1;
                    j = mark;
                }
                None => return false,
            },
        }
    }
    p[i..].iter().all(|x| *x == GlobPart::Any)
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
            _ => {
                let f = Filter::Field(k.into(), v.into());
                f.check()?;
                f
            }
        })
    }

    /// An error for a filter no backend can apply (a field name with `"` or `\`).
    pub fn check(&self) -> Result<()> {
        if let Filter::Field(k, v) = self {
            if k.contains('"') || k.contains('\\') {
                return Err(Error::Filter(
                    format!("{k}={v}"),
                    "field names cannot hold quotes or backslashes".into(),
                ));
            }
        }
        Ok(())
    }

    /// The value of a `Field` filter read as a number, when it is one (finite).
    pub fn number(value: &str) -> Option<f64> {
        value.trim().parse::<f64>().ok().filter(|x| x.is_finite())
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
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// Where the KB is: its folder, or its URL without a password.
    pub location: String,
    pub sources: u64,
    pub documents: u64,
    pub chunks: u64,
    pub embedding_model: Option<String>,
    pub dim: Option<usize>,
    /// The state of the backend's derived vector index, in the backend's own words (for people,
    /// not for programs). The embedded store says `fresh`, `stale`, `missing` or `corrupt` about
    /// its saved HNSW files (a search catches up from the latter three); PostgreSQL says `ready`
    /// when its HNSW index exists (`missing` before a model is recorded).
    pub index_state: String,
    /// The space the KB takes: its folder's files, or the schema's tables and indexes.
    pub bytes_on_disk: u64,
}

/// A source as stored, whole: what `kb copy` moves between backends without re-embedding.
#[derive(Debug, Clone)]
pub struct ExportedSource {
    pub record: SourceRecord,
    pub documents: Vec<ExportedDocument>,
}

/// A document of an [`ExportedSource`]. The document's full text is not stored (its chunks are):
/// `document.text` is empty.
#[derive(Debug, Clone)]
pub struct ExportedDocument {
    pub document: Document,
    pub chunks: Vec<Chunk>,
    pub vectors: Vec<Vec<f32>>,
}

impl ExportedSource {
    /// The documents as [`Store::put_source`] takes them.
    pub fn as_docs(&self) -> Vec<DocumentChunks<'_>> {
        self.documents
            .iter()
            .map(|d| DocumentChunks {
                document: &d.document,
                chunks: &d.chunks,
                vectors: &d.vectors,
            })
            .collect()
    }
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
    /// A source as stored (record, documents, chunks in order, vectors), if it is in the KB.
    fn export_source(&self, source: &str) -> Result<Option<ExportedSource>>;
    /// Where the KB is, for people: its folder, or its URL without a password.
    fn location(&self) -> String;
}

/// A shared handle is a store too, so `&Arc<dyn Store>` passes where `&dyn Store` is wanted.
impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn embedding_model(&self) -> Result<Option<(String, usize)>> {
        (**self).embedding_model()
    }
    fn check_embedding_model(&self, model_id: &str, dim: usize) -> Result<()> {
        (**self).check_embedding_model(model_id, dim)
    }
    fn source_hash(&self, source: &str) -> Result<Option<String>> {
        (**self).source_hash(source)
    }
    fn put_source(&self, rec: &SourceRecord, docs: &[DocumentChunks<'_>]) -> Result<usize> {
        (**self).put_source(rec, docs)
    }
    fn remove_source(&self, source: &str) -> Result<bool> {
        (**self).remove_source(source)
    }
    fn sources(&self) -> Result<Vec<String>> {
        (**self).sources()
    }
    fn documents(&self) -> Result<Vec<SourceInfo>> {
        (**self).documents()
    }
    fn generation(&self) -> Result<u64> {
        (**self).generation()
    }
    fn dense(&self, query: &[f32], k: usize, filters: &[Filter]) -> Result<Vec<(ChunkId, f32)>> {
        (**self).dense(query, k, filters)
    }
    fn lexical(&self, query: &str, k: usize, filters: &[Filter]) -> Result<Vec<(ChunkId, f32)>> {
        (**self).lexical(query, k, filters)
    }
    fn chunks(&self, ids: &[ChunkId]) -> Result<Vec<StoredChunk>> {
        (**self).chunks(ids)
    }
    fn vectors(&self, ids: &[ChunkId]) -> Result<Vec<(ChunkId, Vec<f32>)>> {
        (**self).vectors(ids)
    }
    fn stats(&self) -> Result<StoreStats> {
        (**self).stats()
    }
    fn flush(&self) -> Result<()> {
        (**self).flush()
    }
    fn export_source(&self, source: &str) -> Result<Option<ExportedSource>> {
        (**self).export_source(source)
    }
    fn location(&self) -> String {
        (**self).location()
    }
}

/// Words of a free-text query for lexical search, lower-cased, each once, in order: split at
/// every character that is not alphanumeric (so no operator of any backend's query syntax gets
/// through). Any word may match; the backend ranks by how many and how rare.
pub fn query_words(q: &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| seen.insert(w.clone()))
        .collect()
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
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
    fn globs_match_whole_names_and_only_star_and_question_are_wild() {
        for (p, n, want) in [
            ("docs/*", "docs/a.md", true),
            ("docs/*", "docs/sub/a.md", true),
            ("docs/*", "xdocs/a.md", false),
            ("*.md", "a.md", true),
            ("*.md", "a.md.txt", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a?c", "aéc", true),
            ("[ab].txt", "[ab].txt", true),
            ("[ab].txt", "a.txt", false),
            ("100%_x", "100%_x", true),
            ("100%_x", "100abx", false),
            ("*", "", true),
            ("", "", true),
            ("a*b*c", "aXbYbc", true),
            ("A*", "a", false),
        ] {
            assert_eq!(glob_matches(p, n), want, "{p} {n}");
        }
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
        assert!(Filter::parse("a\"b=1").is_err());
        assert!(Filter::parse("=x").is_err());
    }
}
