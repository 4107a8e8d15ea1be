//! `lorag ingest`: the pipeline from paths to a searchable KB.

use crate::Result;
use indicatif::{ProgressBar, ProgressStyle};
use lorag_core::Chunk;
use lorag_embed::Embedder;
use lorag_ingest::{ChunkOptions, WalkOptions};
use lorag_store::{DocumentChunks, SourceRecord, SqliteStore, Store};
use serde::Serialize;
use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

#[derive(Debug, Clone, Default)]
pub struct IngestOptions {
    pub walk: WalkOptions,
    pub chunk: ChunkOptions,
    /// Remove sources whose files are gone.
    pub prune: bool,
    /// Draw a progress bar on stderr (when it is a terminal).
    pub progress: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failed {
    pub source: String,
    pub error: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestReport {
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub removed: usize,
    pub failed: Vec<Failed>,
    /// Chunks written by this run.
    pub chunks: usize,
    pub seconds: f64,
    /// Files passed over on purpose (hidden, binary by extension, unknown type), with the reason.
    pub skipped: Vec<Failed>,
    /// Bytes of extracted text ingested by this run.
    pub text_bytes: usize,
}

/// Ingest `inputs` into the KB at `dir` (created when missing).
pub fn ingest(
    dir: &Path,
    inputs: &[String],
    embedder: &dyn Embedder,
    opts: &IngestOptions,
) -> Result<IngestReport> {
    let t0 = Instant::now();
    let mut store = SqliteStore::open(dir, true)?;
    store.check_embedding_model(embedder.model_id(), embedder.dim())?;
    let (candidates, skipped) = lorag_ingest::discover(inputs, &opts.walk)?;
    let mut report = IngestReport::default();
    for s in skipped {
        let f = Failed {
            source: s.source,
            error: s.reason,
        };
        if is_failure(&f) {
            report.failed.push(f);
        } else {
            report.skipped.push(f);
        }
    }
    let bar = if opts.progress {
        let b = ProgressBar::new(candidates.len() as u64);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg} (eta {eta})",
            )
            .expect("valid template"),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let mut seen = HashSet::new();
    for c in &candidates {
        seen.insert(c.source.clone());
        bar.set_message(short(&c.source));
        match ingest_one(&mut store, c, embedder, &opts.chunk) {
            Ok(Outcome::Unchanged) => report.unchanged += 1,
            Ok(Outcome::Written {
                existed,
                chunks,
                bytes,
            }) => {
                if existed {
                    report.updated += 1;
                } else {
                    report.added += 1;
                }
                report.chunks += chunks;
                report.text_bytes += bytes;
            }
            Err(e) => {
                bar.suspend(|| eprintln!("failed: {e}"));
                report.failed.push(Failed {
                    source: c.source.clone(),
                    error: e.to_string(),
                });
            }
        }
        bar.inc(1);
    }
    if opts.prune {
        for s in store.sources()? {
            if !seen.contains(&s) && source_is_gone(&s) && store.remove_source(&s)? {
                report.removed += 1;
            }
        }
    }
    bar.set_message("saving the index");
    store.flush()?;
    bar.finish_and_clear();
    report.seconds = t0.elapsed().as_secs_f64();
    Ok(report)
}

enum Outcome {
    Unchanged,
    Written {
        existed: bool,
        chunks: usize,
        bytes: usize,
    },
}

fn ingest_one(
    store: &mut SqliteStore,
    c: &lorag_ingest::Candidate,
    embedder: &dyn Embedder,
    chunk_opts: &ChunkOptions,
) -> Result<Outcome> {
    let fp = lorag_ingest::fingerprint(c)?;
    let previous = store.source_hash(&c.source)?;
    if previous.as_deref() == Some(fp.hash.as_str()) {
        return Ok(Outcome::Unchanged);
    }
    let loaded = lorag_ingest::load(c)?;
    let chunked: Vec<Vec<Chunk>> = loaded
        .documents
        .iter()
        .map(|d| lorag_ingest::chunk(d, embedder, chunk_opts))
        .collect();
    let texts: Vec<&str> = chunked.iter().flatten().map(|c| c.text.as_str()).collect();
    if texts.is_empty() {
        return Err(crate::Error::Other(format!(
            "{}: no text to index",
            c.source
        )));
    }
    let vectors = embedder.embed(&texts)?;
    let mut docs = Vec::with_capacity(chunked.len());
    let mut at = 0;
    for (d, chunks) in loaded.documents.iter().zip(&chunked) {
        docs.push(DocumentChunks {
            document: d,
            chunks,
            vectors: &vectors[at..at + chunks.len()],
        });
        at += chunks.len();
    }
    let rec = SourceRecord {
        source: loaded.source.clone(),
        kind: loaded.kind.clone(),
        hash: loaded.fingerprint.hash.clone(),
        mtime: loaded.fingerprint.mtime,
        size: loaded.fingerprint.size,
    };
    let n = store.put_source(&rec, &docs)?;
    Ok(Outcome::Written {
        existed: previous.is_some(),
        chunks: n,
        bytes: loaded.documents.iter().map(|d| d.text.len()).sum(),
    })
}

/// Document types a user expects to be ingested.
const DOCUMENT_EXTENSIONS: &[&str] = &[
    "txt", "md", "markdown", "html", "htm", "pdf", "docx", "csv", "json", "jsonl",
];

/// A passed-over file is a failure, not a skip, when it looks like a document (a binary file
/// renamed `.txt`, an unreadable `.pdf`) or cannot be read at all: the user expected it in the KB.
/// Hidden files, unsupported types and files excluded by globs are skips.
fn is_failure(f: &Failed) -> bool {
    let ext = Path::new(&f.source)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let on_purpose = ["hidden", "excluded by", "not matched by", "same file as"];
    if on_purpose.iter().any(|p| f.error.starts_with(p)) {
        return false;
    }
    DOCUMENT_EXTENSIONS.contains(&ext.as_str())
        || f.error.starts_with("not found")
        || f.error.starts_with("cannot read")
}

/// A file source whose file no longer exists (for `sqlite:PATH?...`, the database file).
fn source_is_gone(source: &str) -> bool {
    let path = match source.strip_prefix("sqlite:") {
        Some(rest) => rest.split('?').next().unwrap_or(rest),
        None => source,
    };
    !Path::new(path).exists()
}

fn short(s: &str) -> String {
    let n = s.chars().count();
    if n <= 50 {
        s.to_string()
    } else {
        format!("...{}", s.chars().skip(n - 47).collect::<String>())
    }
}
