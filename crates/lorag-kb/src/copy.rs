//! `lorag kb copy`: a KB from one store to another (any two backends), without re-embedding.

use crate::{Error, Result};
use lorag_store::{ExportedSource, Store};
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Clone, Default, Serialize)]
pub struct CopyReport {
    /// Sources in the KB copied from.
    pub sources: u64,
    /// Sources written to the destination.
    pub copied: u64,
    /// Sources already there with the same content hash and the same chunks (a resumed copy).
    pub unchanged: u64,
    pub documents: u64,
    pub chunks: u64,
    /// Sources whose chunks and vectors were read back from both sides and compared.
    pub verified_sources: u64,
    /// Vectors compared bit for bit.
    pub verified_vectors: u64,
    pub seconds: f64,
}

/// Sources compared chunk by chunk, vector by vector, after the copy (evenly spread).
const SAMPLE: usize = 64;

/// Copy every source of `from` into `to` (each in its own transaction, as ingestion writes), with
/// its chunks and vectors as stored: nothing is re-embedded. The destination must be empty or hold
/// the same embedding model and only sources of `from` (a source already copied, with the same
/// hash and chunks, is skipped: an interrupted copy resumes). Then the counts of both sides are
/// compared, and a sample of sources is read back from both and compared text for text, vector
/// for vector (bit for bit); any difference is an error.
pub fn copy(
    from: &dyn Store,
    to: &dyn Store,
    mut progress: impl FnMut(usize, usize),
) -> Result<CopyReport> {
    let t0 = Instant::now();
    let mut report = CopyReport::default();
    if let Some((model, dim)) = from.embedding_model()? {
        to.check_embedding_model(&model, dim)?;
    }
    let sources = from.sources()?;
    report.sources = sources.len() as u64;
    let wanted: std::collections::HashSet<&String> = sources.iter().collect();
    let extra: Vec<String> = to
        .sources()?
        .into_iter()
        .filter(|s| !wanted.contains(s))
        .collect();
    if !extra.is_empty() {
        return Err(Error::Other(format!(
            "{} already holds {} source(s) that {} does not (such as {}): copy into an empty KB",
            to.location(),
            extra.len(),
            from.location(),
            extra[0]
        )));
    }
    for (i, s) in sources.iter().enumerate() {
        progress(i, sources.len());
        let Some(src) = from.export_source(s)? else {
            // Removed meanwhile: the counts below will tell.
            continue;
        };
        if to.source_hash(s)?.as_deref() == Some(src.record.hash.as_str())
            && to.export_source(s)?.is_some_and(|d| same(&src, &d).is_ok())
        {
            report.unchanged += 1;
            continue;
        }
        to.put_source(&src.record, &src.as_docs())?;
        report.copied += 1;
    }
    progress(sources.len(), sources.len());
    to.flush()?;
    let (a, b) = (from.stats()?, to.stats()?);
    if (a.sources, a.documents, a.chunks) != (b.sources, b.documents, b.chunks) {
        return Err(Error::Other(format!(
            "copy verification failed: {} holds {} sources, {} documents, {} chunks but {} holds {}, {}, {}",
            from.location(),
            a.sources,
            a.documents,
            a.chunks,
            to.location(),
            b.sources,
            b.documents,
            b.chunks
        )));
    }
    report.documents = b.documents;
    report.chunks = b.chunks;
    let step = (sources.len() / SAMPLE).max(1);
    for s in sources.iter().step_by(step).take(SAMPLE) {
        let (Some(x), Some(y)) = (from.export_source(s)?, to.export_source(s)?) else {
            return Err(Error::Other(format!(
                "copy verification failed: {s} is missing on one side"
            )));
        };
        report.verified_vectors += same(&x, &y)
            .map_err(|why| Error::Other(format!("copy verification failed: {s}: {why}")))?;
        report.verified_sources += 1;
    }
    report.seconds = t0.elapsed().as_secs_f64();
    Ok(report)
}

/// The two exports hold the same documents, chunks and vectors (bit for bit): the number of
/// vectors compared, or what differs.
fn same(a: &ExportedSource, b: &ExportedSource) -> std::result::Result<u64, String> {
    if a.record.hash != b.record.hash || a.record.kind != b.record.kind {
        return Err("the source record differs".into());
    }
    if a.documents.len() != b.documents.len() {
        return Err(format!(
            "{} documents against {}",
            a.documents.len(),
            b.documents.len()
        ));
    }
    let mut n = 0;
    for (x, y) in a.documents.iter().zip(&b.documents) {
        if x.document.kind != y.document.kind
            || x.document.title != y.document.title
            || x.document.metadata != y.document.metadata
        {
            return Err("a document's kind, title or metadata differs".into());
        }
        if x.chunks != y.chunks {
            return Err("the chunks differ".into());
        }
        for (u, v) in x.vectors.iter().zip(&y.vectors) {
            if u.len() != v.len() || u.iter().zip(v).any(|(p, q)| p.to_bits() != q.to_bits()) {
                return Err("a vector differs".into());
            }
            n += 1;
        }
        if x.vectors.len() != y.vectors.len() {
            return Err("the number of vectors differs".into());
        }
    }
    Ok(n)
}
