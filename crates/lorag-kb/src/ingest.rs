//! `lorag ingest`: the pipeline from paths to a searchable KB.

use crate::Result;
use indicatif::{ProgressBar, ProgressStyle};
use lorag_core::Chunk;
use lorag_embed::Embedder;
use lorag_ingest::{ChunkOptions, WalkOptions};
use lorag_store::{Access, DocumentChunks, SourceRecord, Store};
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

/// Ingest `inputs` into the KB at `kb` (a folder or a PostgreSQL URL, see [`crate::open`];
/// created when missing).
pub fn ingest(
    kb: impl AsRef<Path>,
    inputs: &[String],
    embedder: &dyn Embedder,
    opts: &IngestOptions,
) -> Result<IngestReport> {
    let store = lorag_store::open_path(kb.as_ref(), Access::Create)?;
    ingest_into(&*store, inputs, embedder, opts)
}

/// Ingest `inputs` into `store` (any backend; a shared handle is fine: each source is one
/// `put_source`), then flush it.
pub fn ingest_into(
    store: &dyn Store,
    inputs: &[String],
    embedder: &dyn Embedder,
    opts: &IngestOptions,
) -> Result<IngestReport> {
    let t0 = Instant::now();
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
    let failed_before = report.failed.len();
    let mut seen = HashSet::new();
    // Sources are loaded and chunked ahead until about EMBED_AHEAD chunks wait, then embedded in
    // one call (a corpus of many small files would otherwise embed one text at a time), then
    // each source is committed in its own transaction, as before.
    let mut pending: Vec<(&lorag_ingest::Candidate, Prepared)> = Vec::new();
    let mut pending_chunks = 0;
    for (i, c) in candidates.iter().enumerate() {
        seen.insert(c.source.clone());
        bar.set_message(short(&c.source));
        match prepare(store, c, embedder, &opts.chunk) {
            Ok(None) => {
                report.unchanged += 1;
                bar.inc(1);
            }
            Ok(Some(p)) => {
                pending_chunks += p.texts_len();
                pending.push((c, p));
            }
            Err(e) => {
                fail(&bar, &mut report, c, e);
                bar.inc(1);
            }
        }
        if pending_chunks >= EMBED_AHEAD || (i + 1 == candidates.len() && !pending.is_empty()) {
            if let Err(e) = commit_pending(
                store,
                std::mem::take(&mut pending),
                embedder,
                &bar,
                &mut report,
            ) {
                // The KB cannot take writes (disk full, I/O error, lost connection): no later
                // source could be written either. What was committed stays; the index is saved
                // when it can be (else the next open rebuilds it from the database).
                bar.finish_and_clear();
                let _ = store.flush();
                let failed_here = report.failed.len() - failed_before;
                let done = report.added + report.updated + report.unchanged + failed_here;
                let left = candidates.len().saturating_sub(done + 1);
                return Err(crate::Error::Other(format!(
                    "{e}; ingest stopped: the {} sources added and {} updated before it are in the knowledge base, {} and {left} other sources are not. Free space (or fix the store) and run ingest again: it skips what is already in",
                    report.added, report.updated, e.source
                )));
            }
            pending_chunks = 0;
        }
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

/// Chunks that wait for embedding before this many are pending.
const EMBED_AHEAD: usize = 128;

/// A changed or new source, loaded and chunked, not yet embedded or written.
struct Prepared {
    loaded: lorag_ingest::LoadedSource,
    chunked: Vec<Vec<Chunk>>,
    existed: bool,
}

impl Prepared {
    fn texts_len(&self) -> usize {
        self.chunked.iter().map(Vec::len).sum()
    }
    fn texts(&self) -> impl Iterator<Item = &str> {
        self.chunked.iter().flatten().map(|c| c.text.as_str())
    }
}

fn fail(
    bar: &ProgressBar,
    report: &mut IngestReport,
    c: &lorag_ingest::Candidate,
    e: crate::Error,
) {
    bar.suspend(|| eprintln!("failed: {e}"));
    report.failed.push(Failed {
        source: c.source.clone(),
        error: e.to_string(),
    });
}

/// Load and chunk `c`; None when its content hash is the one already stored.
fn prepare(
    store: &dyn Store,
    c: &lorag_ingest::Candidate,
    embedder: &dyn Embedder,
    chunk_opts: &ChunkOptions,
) -> Result<Option<Prepared>> {
    let fp = lorag_ingest::fingerprint(c)?;
    let previous = store.source_hash(&c.source)?;
    if previous.as_deref() == Some(fp.hash.as_str()) {
        return Ok(None);
    }
    let loaded = lorag_ingest::load(c)?;
    let chunked: Vec<Vec<Chunk>> = loaded
        .documents
        .iter()
        .map(|d| lorag_ingest::chunk(d, embedder, chunk_opts))
        .collect();
    if chunked.iter().all(Vec::is_empty) {
        return Err(crate::Error::Other(format!(
            "{}: no text to index",
            c.source
        )));
    }
    Ok(Some(Prepared {
        loaded,
        chunked,
        existed: previous.is_some(),
    }))
}

/// A source whose write the store refused: the store is the problem, not the source.
struct StoreFailed {
    source: String,
    error: lorag_store::Error,
}

impl std::fmt::Display for StoreFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "writing {}: {}", self.source, self.error)
    }
}

/// Embed the chunks of every pending source in one call, then write each source in its own
/// transaction. If the joint call fails, each source is embedded alone, so that one bad source
/// fails alone. A write the store refuses ends the batch (Err): that is no fault of the source.
fn commit_pending(
    store: &dyn Store,
    pending: Vec<(&lorag_ingest::Candidate, Prepared)>,
    embedder: &dyn Embedder,
    bar: &ProgressBar,
    report: &mut IngestReport,
) -> std::result::Result<(), StoreFailed> {
    let all: Vec<&str> = pending.iter().flat_map(|(_, p)| p.texts()).collect();
    let joint = embedder.embed(&all).ok();
    let mut at = 0;
    for (c, p) in &pending {
        let n = p.texts_len();
        let vectors = match &joint {
            Some(v) => Ok(v[at..at + n].to_vec()),
            None => embedder
                .embed(&p.texts().collect::<Vec<_>>())
                .map_err(crate::Error::from),
        };
        at += n;
        let chunks = match vectors {
            Ok(v) => write(store, p, &v).map_err(|error| StoreFailed {
                source: c.source.clone(),
                error,
            })?,
            Err(e) => {
                fail(bar, report, c, e);
                bar.inc(1);
                continue;
            }
        };
        if p.existed {
            report.updated += 1;
        } else {
            report.added += 1;
        }
        report.chunks += chunks;
        report.text_bytes += p
            .loaded
            .documents
            .iter()
            .map(|d| d.text.len())
            .sum::<usize>();
        bar.inc(1);
    }
    Ok(())
}

/// One source, whole, in one transaction.
fn write(store: &dyn Store, p: &Prepared, vectors: &[Vec<f32>]) -> lorag_store::Result<usize> {
    let mut docs = Vec::with_capacity(p.chunked.len());
    let mut at = 0;
    for (d, chunks) in p.loaded.documents.iter().zip(&p.chunked) {
        docs.push(DocumentChunks {
            document: d,
            chunks,
            vectors: &vectors[at..at + chunks.len()],
        });
        at += chunks.len();
    }
    let rec = SourceRecord {
        source: p.loaded.source.clone(),
        kind: p.loaded.kind.clone(),
        hash: p.loaded.fingerprint.hash.clone(),
        mtime: p.loaded.fingerprint.mtime,
        size: p.loaded.fingerprint.size,
    };
    store.put_source(&rec, &docs)
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
