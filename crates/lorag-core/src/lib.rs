//! Types that travel along the RAG pipeline (ingest → embed → store → retrieve → generate), and
//! the small traits at its seams. No I/O here, except the two file helpers every crate shares
//! ([`io`]): `write_atomic` (replace a small file whole) and `next_line` (read a text file line by
//! line with memory bounded).
//!
//! Offsets: every `start`/`end` is a byte offset into `Document::text` (the extracted text), at a
//! UTF-8 character boundary, so `&doc.text[start..end]` is always valid.

pub mod io;
pub use io::write_atomic;

use serde::{Deserialize, Serialize};

pub type Metadata = serde_json::Map<String, serde_json::Value>;

/// A heading path and the span of text under it (`["Install", "On Debian"]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Section {
    pub path: Vec<String>,
    pub start: usize,
    pub end: usize,
}

/// A page of a paged format (PDF), 1-based, and its span of text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    pub number: u32,
    pub start: usize,
    pub end: usize,
}

/// One document as a loader extracts it: text plus structure and provenance. A file gives one
/// document, except structured data (CSV, JSON/JSONL, SQLite), where each row or record is one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// The source as given at ingest (a path, or `sqlite:PATH?table=T`).
    pub source: String,
    /// `txt`, `md`, `html`, `pdf`, `docx`, `csv`, `json`, `jsonl`, `sqlite`.
    pub kind: String,
    pub title: Option<String>,
    pub text: String,
    pub sections: Vec<Section>,
    pub pages: Vec<Page>,
    /// Loader-provided fields: for records, every column/field; for files, e.g. `row`, `author`.
    pub metadata: Metadata,
}

impl Document {
    pub fn new(
        source: impl Into<String>,
        kind: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        Self {
            source: source.into(),
            kind: kind.into(),
            title: None,
            text: text.into(),
            sections: Vec::new(),
            pages: Vec::new(),
            metadata: Metadata::new(),
        }
    }

    /// The deepest section containing byte `pos`, as "A > B > C".
    pub fn section_at(&self, pos: usize) -> Option<String> {
        self.sections
            .iter()
            .filter(|s| s.start <= pos && pos < s.end.max(s.start + 1))
            .max_by_key(|s| s.path.len())
            .map(|s| s.path.join(" > "))
    }

    /// The page containing byte `pos`.
    pub fn page_at(&self, pos: usize) -> Option<u32> {
        self.pages
            .iter()
            .find(|p| p.start <= pos && pos < p.end.max(p.start + 1))
            .map(|p| p.number)
    }
}

/// A piece of a document that is embedded and retrieved on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    /// Position of the chunk within its document, from 0.
    pub ordinal: u32,
    pub text: String,
    /// Byte span in the document's text (`text == doc.text[start..end]`).
    pub start: usize,
    pub end: usize,
    pub section: Option<String>,
    pub page: Option<u32>,
    /// Length in tokens of the embedder's tokenizer.
    pub tokens: usize,
}

/// Counts tokens the way a model's tokenizer does (chunk sizes, context budgets).
pub trait TokenCounter {
    fn count_tokens(&self, text: &str) -> usize;
}

/// Counts whitespace-separated words: for tests of one seam only, never for real chunking.
pub struct WordCounter;

impl TokenCounter for WordCounter {
    fn count_tokens(&self, text: &str) -> usize {
        text.split_whitespace().count()
    }
}
