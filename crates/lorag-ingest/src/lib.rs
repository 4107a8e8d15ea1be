//! Ingestion: files and SQLite tables become [`Document`]s, documents become [`Chunk`]s.
//!
//! The pipeline is `discover` (inputs → [`Candidate`]s, plus [`Skipped`] with reasons) →
//! `fingerprint` (cheap hash, to skip unchanged sources) → `load` (parse into documents) →
//! `chunk` (token-aware pieces for embedding).
//!
//! Invariants:
//! - **One bad input never aborts a batch.** `discover` reports a missing input, a hidden, binary
//!   or unsupported file as a [`Skipped`] with a reason; it fails only for an invalid glob
//!   pattern. `load` and `fingerprint` work on one candidate at a time.
//! - **Errors name their source.** Every [`IngestError`] displays the source (the path as the
//!   user gave it, or the `sqlite:` spec) and a reason a user can act on, e.g.
//!   `notes/a.txt: empty file (nothing to index)`. No panic on user data: the PDF extractor
//!   runs under `catch_unwind`.
//! - **Any text encoding**: text formats (txt, md, html, csv, json, jsonl) in UTF-8, UTF-16 with
//!   a byte-order mark, or a legacy encoding (Windows-1252/Latin-1, Shift_JIS... detected with
//!   `chardetng`) are decoded; a source that was not UTF-8 has its encoding in each document's
//!   metadata as `encoding` (`windows-1252`, `UTF-16LE`). Only bytes that no encoding explains
//!   are an error ([`IngestError::Undecodable`]).
//! - **Bounded memory**: a file larger than [`MAX_FILE_BYTES`] is refused before it is read
//!   ([`IngestError::TooLarge`]); a DOCX part larger than [`MAX_DOCX_PART_BYTES`] uncompressed
//!   is refused while it is inflated (zip bombs); [`fingerprint`] hashes a file in pieces.
//! - **Sources are never canonicalized**: input `docs/` gives `docs/a/b.md`.
//! - **Spans**: every `start`/`end` (sections, pages, chunks) is a byte offset into
//!   `Document::text` at a character boundary. For a chunk, `chunk.text == doc.text[start..end]`,
//!   with no whitespace at either edge; chunks cover every non-whitespace byte of the text, in
//!   order (`start` and `end` strictly increase).
//! - **Structure**: headings become [`Section`](lorag_core::Section)s whose `path` is the heading
//!   hierarchy and whose span starts at the heading line and runs to the next heading of the same
//!   or a higher level; PDF pages become [`Page`](lorag_core::Page)s (1-based). Structured data
//!   (CSV, JSON, JSONL, SQLite) gives one record document per row, whose metadata holds every
//!   field plus `row` (1-based).
//!
//! Text is normalized on load: a UTF-8 byte-order mark is dropped and line ends become `\n`.

mod chunk;
mod loaders;
mod walk;

use std::path::PathBuf;

pub use chunk::chunk;
pub use loaders::{fingerprint, load, MAX_DOCX_PART_BYTES, MAX_FILE_BYTES};
pub use walk::discover;

#[doc(no_inline)]
pub use lorag_core::{Chunk, Document, TokenCounter};

/// Which files a directory walk keeps. Globs (`*.md`, `docs/**/draft-*`) are matched against a
/// file's source path, its path below the input directory, and its file name. An empty
/// `include` keeps every supported file; `exclude` wins over `include`, and a directory matching
/// an `exclude` pattern is not entered. Files named explicitly as inputs are filtered too;
/// `sqlite:` inputs are not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalkOptions {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

/// A source found by [`discover`], ready to [`fingerprint`] and [`load`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The path as the user gave it joined with the path below it, or the `sqlite:` spec.
    pub source: String,
    /// The file to read (for SQLite, the database file).
    pub path: PathBuf,
    /// `txt`, `md`, `html`, `pdf`, `docx`, `csv`, `json`, `jsonl` or `sqlite`.
    pub kind: String,
}

/// An input or file that [`discover`] left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub source: String,
    pub reason: String,
}

/// What identifies a version of a source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    /// SHA-256 (hex) of the file's bytes; for SQLite, of the rendered rows.
    pub hash: String,
    /// Modification time in unix seconds; 0 for SQLite.
    pub mtime: i64,
    /// Size in bytes (for SQLite, of the rendered rows).
    pub size: u64,
}

/// A loaded source: its documents and the fingerprint of exactly the bytes they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedSource {
    pub source: String,
    pub kind: String,
    pub fingerprint: Fingerprint,
    pub documents: Vec<Document>,
}

/// Chunk size and overlap, in tokens of the counter passed to [`chunk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkOptions {
    pub max_tokens: usize,
    pub overlap: usize,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            overlap: 32,
        }
    }
}

/// Why a source could not be ingested. Display always starts with the source.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("invalid glob pattern `{pattern}`: {reason}")]
    InvalidGlob { pattern: String, reason: String },
    #[error("{input}: not found{hint}")]
    NotFound { input: String, hint: String },
    #[error("{input}: cannot read: {error}")]
    Io {
        input: String,
        #[source]
        error: std::io::Error,
    },
    #[error("{input}: empty file (nothing to index)")]
    Empty { input: String },
    #[error("{input}: binary content (NUL bytes), not text")]
    Binary { input: String },
    /// Bytes that no text encoding explains (the offset is the first byte that is not UTF-8,
    /// or the first byte invalid in the encoding a byte-order mark names).
    #[error("{input}: cannot decode the text: {reason}")]
    Undecodable {
        input: String,
        offset: usize,
        reason: String,
    },
    /// A file larger than the loader reads into memory.
    #[error(
        "{input}: the file is {} ({size} bytes), over the {} limit for one file; split it into smaller files",
        human_bytes(*.size),
        human_bytes(*.limit)
    )]
    TooLarge {
        input: String,
        size: u64,
        limit: u64,
    },
    /// The content is not valid for its format (corrupt PDF, malformed CSV...).
    #[error("{input}: not a valid {format} file: {reason}")]
    Parse {
        input: String,
        format: &'static str,
        reason: String,
    },
    /// A JSONL line that is not one JSON object.
    #[error("{input}: line {line}: {reason}")]
    Line {
        input: String,
        line: usize,
        reason: String,
    },
    /// The file parsed but holds nothing to index (a scanned PDF, an HTML page of scripts).
    #[error("{input}: no text found{hint}")]
    NoText { input: String, hint: String },
    #[error("{input}: {reason}")]
    Sqlite { input: String, reason: String },
    #[error("{input}: unsupported kind `{kind}` (supported: {supported})")]
    Unsupported {
        input: String,
        kind: String,
        supported: &'static str,
    },
}

impl IngestError {
    /// The source the error is about (`None` for an invalid glob pattern).
    pub fn input(&self) -> Option<&str> {
        match self {
            IngestError::InvalidGlob { .. } => None,
            IngestError::NotFound { input, .. }
            | IngestError::Io { input, .. }
            | IngestError::Empty { input }
            | IngestError::Binary { input }
            | IngestError::Undecodable { input, .. }
            | IngestError::TooLarge { input, .. }
            | IngestError::Parse { input, .. }
            | IngestError::Line { input, .. }
            | IngestError::NoText { input, .. }
            | IngestError::Sqlite { input, .. }
            | IngestError::Unsupported { input, .. } => Some(input),
        }
    }
}

/// `1.5 GiB`, `64 MiB`, `12 KiB`, `7 bytes`.
fn human_bytes(n: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if n >= size {
            let whole = n / size;
            let tenth = (n % size) * 10 / size;
            return if tenth == 0 {
                format!("{whole} {unit}")
            } else {
                format!("{whole}.{tenth} {unit}")
            };
        }
    }
    format!("{n} bytes")
}
