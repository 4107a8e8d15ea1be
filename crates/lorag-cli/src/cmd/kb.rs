//! `lorag ingest`, `lorag search`, `lorag kb stats`, `lorag kb copy`.
//!
//! Every `--kb` is a folder (the embedded SQLite store) or a PostgreSQL URL
//! `postgres://USER@HOST:PORT/DB?schema=NAME` (password from PGPASSWORD or ~/.pgpass), opened
//! through `lorag_kb::open`.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use lorag_kb::{Access, IngestOptions, SearchOptions, Store};
use std::io::{BufRead, IsTerminal, Write};

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// Files, directories (walked recursively) or `sqlite:PATH?table=T` / `sqlite:PATH?query=SQL`
    #[arg(required = true)]
    pub paths: Vec<String>,
    /// The knowledge base, created when missing: a folder, or
    /// postgres://USER@HOST:PORT/DB?schema=NAME (password from PGPASSWORD or ~/.pgpass)
    #[arg(long)]
    pub kb: String,
    /// Only files whose path matches one of these globs; repeatable
    #[arg(long)]
    pub include: Vec<String>,
    /// Skip files whose path matches one of these globs; repeatable
    #[arg(long)]
    pub exclude: Vec<String>,
    /// Chunk size in tokens of the embedder's tokenizer
    #[arg(long, default_value_t = 256)]
    pub chunk_tokens: usize,
    /// Tokens shared by consecutive chunks
    #[arg(long, default_value_t = 32)]
    pub overlap: usize,
    /// Remove documents whose files are gone
    #[arg(long)]
    pub prune: bool,
    /// Embedding model folder or catalogue name (default all-minilm-l6-v2)
    #[arg(long)]
    pub embedder: Option<String>,
    /// Print one JSON object: added, updated, unchanged, removed, failed, chunks, seconds
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SearchArgs {
    /// The query (or use --batch)
    #[arg(required_unless_present = "batch")]
    pub query: Option<String>,
    /// Read one query per line from FILE (- for stdin) and print one JSON object per line
    #[arg(long, value_name = "FILE", conflicts_with = "query")]
    pub batch: Option<String>,
    /// The knowledge base: a folder or postgres://USER@HOST:PORT/DB?schema=NAME
    #[arg(long)]
    pub kb: String,
    #[arg(short, default_value_t = 5)]
    pub k: usize,
    /// hybrid (reciprocal-rank fusion of dense and BM25), dense or bm25
    #[arg(long, default_value = "hybrid")]
    pub mode: String,
    /// KEY=VALUE: source=GLOB, kind=pdf (or type=), or any metadata field; repeatable (all must hold)
    #[arg(long)]
    pub filter: Vec<String>,
    #[arg(long)]
    pub embedder: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum KbCommand {
    /// Documents, chunks, embedding model, index state, size on disk
    Stats {
        /// A folder or postgres://USER@HOST:PORT/DB?schema=NAME
        #[arg(long)]
        kb: String,
        #[arg(long)]
        json: bool,
    },
    /// Copy a KB to another place or backend (folder <-> PostgreSQL), without re-embedding;
    /// then compare the counts and a sample of chunks and vectors, bit for bit
    Copy {
        /// The KB to copy (read only)
        #[arg(long)]
        from: String,
        /// Where to copy it: an empty or new KB (a copy that was interrupted resumes)
        #[arg(long)]
        to: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn ingest(a: IngestArgs) -> Result<()> {
    if a.chunk_tokens == 0 {
        bail!("--chunk-tokens must be at least 1");
    }
    if a.overlap >= a.chunk_tokens {
        bail!(
            "--overlap ({}) must be smaller than --chunk-tokens ({})",
            a.overlap,
            a.chunk_tokens
        );
    }
    let embedder = super::load_embedder(a.embedder.as_deref())?;
    let opts = IngestOptions {
        walk: lorag_ingest::WalkOptions {
            include: a.include,
            exclude: a.exclude,
        },
        chunk: lorag_ingest::ChunkOptions {
            max_tokens: a.chunk_tokens,
            overlap: a.overlap,
        },
        prune: a.prune,
        progress: !a.json && std::io::stderr().is_terminal(),
    };
    let r = lorag_kb::ingest(&a.kb, &a.paths, &embedder, &opts)?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "added": r.added, "updated": r.updated, "unchanged": r.unchanged, "removed": r.removed,
                "failed": r.failed, "chunks": r.chunks, "seconds": (r.seconds * 1000.0).round() / 1000.0,
                "skipped": r.skipped,
            })
        );
    } else {
        println!(
            "{} added, {} updated, {} unchanged, {} removed, {} failed, {} skipped; {} chunks in {:.1}s ({:.2} MB of text)",
            r.added,
            r.updated,
            r.unchanged,
            r.removed,
            r.failed.len(),
            r.skipped.len(),
            r.chunks,
            r.seconds,
            r.text_bytes as f64 / 1e6
        );
        for f in &r.failed {
            println!("  failed  {}: {}", f.source, f.error);
        }
        for s in &r.skipped {
            println!("  skipped {}: {}", s.source, s.error);
        }
    }
    Ok(())
}

pub fn search(a: SearchArgs) -> Result<()> {
    let (mode, filters) = super::parse_retrieval(&a.mode, &a.filter)?;
    let embedder = super::load_embedder(a.embedder.as_deref())?;
    let store = lorag_kb::open_for_search(&a.kb, &embedder)?;
    let opts = SearchOptions {
        k: a.k,
        mode,
        filters,
        ..SearchOptions::default()
    };
    if let Some(file) = &a.batch {
        let input: Box<dyn std::io::BufRead> = if file == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            let f = std::fs::File::open(file).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
            Box::new(std::io::BufReader::new(f))
        };
        let mut out = std::io::stdout().lock();
        for (i, line) in input.lines().enumerate() {
            let line = line.map_err(|e| anyhow::anyhow!("{file}: line {}: {e}", i + 1))?;
            let t0 = std::time::Instant::now();
            let hits = lorag_kb::search(&store, &embedder, &line, &opts)?;
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            let mut v = results_json(&hits);
            v["query"] = serde_json::Value::String(line);
            v["ms"] = serde_json::json!((ms * 1000.0).round() / 1000.0);
            writeln!(out, "{v}")?;
        }
        return Ok(());
    }
    let query = a.query.as_deref().unwrap_or_default();
    let hits = lorag_kb::search(&store, &embedder, query, &opts)?;
    if a.json {
        println!("{}", results_json(&hits));
        return Ok(());
    }
    if hits.is_empty() {
        println!("no results");
    }
    for h in &hits {
        let mut loc = h.chunk.source.clone();
        if let Some(p) = h.chunk.page {
            loc.push_str(&format!(" p.{p}"));
        }
        if let Some(s) = &h.chunk.section {
            loc.push_str(&format!(" § {s}"));
        }
        println!(
            "{}. [{:.4}] {} [{}..{}]",
            h.rank, h.score, loc, h.chunk.start, h.chunk.end
        );
        let text: String = h.chunk.text.chars().take(300).collect();
        println!("   {}\n", text.replace('\n', " "));
    }
    Ok(())
}

/// The `--json` object of a search: `{"results": [{rank, score, source, title, section, page, start, end, text, metadata}]}`.
fn results_json(hits: &[lorag_kb::Hit]) -> serde_json::Value {
    let results: Vec<_> = hits
        .iter()
        .map(|h| {
            serde_json::json!({
                "rank": h.rank, "score": h.score, "similarity": h.similarity, "source": h.chunk.source, "title": h.chunk.title,
                "section": h.chunk.section, "page": h.chunk.page, "start": h.chunk.start, "end": h.chunk.end,
                "text": h.chunk.text, "metadata": h.chunk.metadata,
            })
        })
        .collect();
    serde_json::json!({ "results": results })
}

pub fn kb(cmd: KbCommand) -> Result<()> {
    match cmd {
        KbCommand::Stats { kb, json } => {
            let store = lorag_kb::open_store(&kb, Access::Read)?;
            let s = store.stats()?;
            if json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                println!("knowledge base {} ({})", s.location, s.backend);
                println!("  sources (files)  {}", s.sources);
                println!("  documents        {}", s.documents);
                println!("  chunks           {}", s.chunks);
                println!(
                    "  embedding model  {}",
                    s.embedding_model.as_deref().unwrap_or("(none yet)")
                );
                println!(
                    "  dimension        {}",
                    s.dim.map(|d| d.to_string()).unwrap_or("-".into())
                );
                println!("  HNSW index       {}", s.index_state);
                println!("  size on disk     {:.2} MB", s.bytes_on_disk as f64 / 1e6);
            }
            Ok(())
        }
        KbCommand::Copy { from, to, json } => {
            if from == to {
                bail!("--from and --to are the same KB");
            }
            let src = lorag_kb::open_store(&from, Access::Read)?;
            let dst = lorag_kb::open_store(&to, Access::Create)?;
            let bar = if !json && std::io::stderr().is_terminal() {
                let b = indicatif::ProgressBar::new(0);
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} sources (eta {eta})",
                    )
                    .expect("valid template"),
                );
                b
            } else {
                indicatif::ProgressBar::hidden()
            };
            let r = lorag_kb::copy(&src, &dst, |i, n| {
                bar.set_length(n as u64);
                bar.set_position(i as u64);
            })?;
            bar.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "copied {} sources ({} already there), {} documents, {} chunks from {} to {} in {:.1}s; verified: counts, and {} vectors of {} sources bit for bit",
                    r.copied,
                    r.unchanged,
                    r.documents,
                    r.chunks,
                    src.location(),
                    dst.location(),
                    r.seconds,
                    r.verified_vectors,
                    r.verified_sources
                );
            }
            Ok(())
        }
    }
}
