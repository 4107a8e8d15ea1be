//! The engine-free half of `lorag eval`: everything that needs no model.
//!
//! `lorag eval` answers the same held-out questions with four routes (`base`, `rag`, `ft`,
//! `rag+ft`) and recommends one. The orchestration (loading the model, answering, training
//! adapters) lives in `lorag-cli`; this crate holds the parts that are pure functions of files and
//! numbers, each in one module:
//!
//! - [`qa`]: read the company's Q&A (JSONL in any shape `lorag tune` reads, or
//!   `{"question","answer","sources"?}`, or CSV) into [`QaItem`]s; a bad line is `FILE:LINE: reason`.
//! - [`split`](mod@split): the seeded, leak-checked train/test split, written as `train.jsonl`/`test.jsonl`;
//!   nested subsets for the learning curve; the held-out slice for refusals.
//! - [`metrics`]: token F1, exact match, ROUGE-L (SQuAD normalisation), cosine, source matching,
//!   answer cleaning (citation markers, refusal sentence).
//! - [`stats`]: bootstrap intervals, the paired bootstrap between two routes, percentiles.
//! - [`results`]: the `results.json` schema (`lorag-eval/1`) and the summary of per-question rows
//!   into per-route metrics, latency, pairs and the recommendation.
//! - [`recommend`](mod@recommend): the one-paragraph recommendation, a pure function of the results.
//! - [`report`] and [`plots`]: `report.md`, `report.html` (self-contained) and `plots/*.svg`.
//! - [`cache`]: route answers cached under `DIR/cache/<sha256>.json`, keyed by content.
//! - [`budget`]: training steps fitted to `--budget` from a measured speed.
//!
//! # Flow (the orchestration's side)
//!
//! ```text
//! items  = qa::read_qa(qa_path)?                          // FILE:LINE errors
//! split  = split::split(&items, &SplitOptions{..})?       // errors before any work
//! split::write_split(out, &split)?
//! held   = split::held_out_slice(&split.test, n, seed)    // KB without held.sources
//! plan   = budget::plan(budget, &[Training{route, seconds_per_step}], steps, &[0.25, 0.5], min)?
//! // train ft on split.train (and split::subset(&split.train, f, seed) for the curve);
//! // check split::find_leaks(&split.test, &training_items, 0.8).is_empty()
//! results = Results::new(model, kb, options); results.split = SplitSummary::of(&split, &opts);
//! for each route: key = KeyParts{..}.key(); rows = cache.get(&key)? or answer + cache.put(&key, &rows)?
//!     row = QuestionRow::new(&item, held_out); row.answers.insert(route, Answer::scored(&row, text, REFUSAL) + cited, retrieved, …)
//! results.loss_curves / learning_curve = …; results.compute(&[RouteSpec{..}], &StatsOptions::default());
//! report::write_report(out, &results)?                    // results.json, report.md/.html, plots/
//! ```
//!
//! # `results.json` (schema `lorag-eval/1`)
//!
//! ```text
//! {
//!   "schema": "lorag-eval/1",
//!   "model": "SmolLM2-135M-Instruct (sha256 …)",     // what answered
//!   "kb": "kb/" | null,
//!   "options": { … },                                 // the options of the run, as given
//!   "split": { "train": 80, "test": 20, "seed": 42, "test_fraction": 0.2,
//!              "leaks_removed": 1,
//!              "leak_examples": [ {"test_id","test","train_id","train","reason"} ] },
//!   "routes": {
//!     "rag": {
//!       "rag": true,
//!       "n": 20,                                      // answerable test questions answered
//!       "metrics": { "f1": {"value": 0.61, "low": 0.52, "high": 0.70}, … },
//!       "latency": { "ttft_ms": {"p50","p95","mean"}, "total_ms": {"p50","p95","mean"} },
//!       "cost": { "train_minutes": null, "adapter_bytes": null, "update_seconds": 0.8 }
//!     }, …
//!   },
//!   "pairs": [ {"a","b","metric":"f1","n","diff","low","high","p_value","significant"} ],
//!   "learning_curve": [ {"route":"ft","fraction":0.25,"f1":0.31,"f1s":[…]}, … ],
//!   "curve_pairs": [ {"a":"ft @100%","b":"ft @25%", …as in pairs} ],
//!   "loss_curves": { "ft": [[step, loss], …] },
//!   "recommendation": { "route": "rag", "text": "…" },
//!   "questions": [ { "id", "question", "reference", "alternatives"?: [..], "sources": [..],
//!                    "held_out": false,
//!                    "answers": { "rag": { "text", "f1", "rouge_l", "exact_match",
//!                                          "similarity"?, "cited": [..], "retrieved": [..],
//!                                          "supported_share"?, "refused", "ttft_ms",
//!                                          "total_ms" } } } ]
//! }
//! ```
//!
//! Metric names: `f1`, `rouge_l`, `exact_match`, `similarity` (when embeddings were given) for
//! every route, over the answerable questions; for RAG routes also `gold_retrieved`,
//! `gold_cited` (over questions that name sources), `cited_share` (answers citing at least one
//! source), `supported_share` (mean share of an answer's sentences supported by their
//! citations), `correct_refusal` (refusals on the held-out slice, whose sources are not in the
//! KB) and `false_refusal` (refusals on answerable questions). All values are fractions in
//! [0, 1]; `low`/`high` is the 95% percentile bootstrap interval of the mean over questions.
//! `docs/eval-results.md` describes the same schema for readers of the file.

pub mod budget;
pub mod cache;
pub mod metrics;
pub mod plots;
pub mod qa;
pub mod recommend;
pub mod report;
pub mod results;
mod rng;
pub mod split;
pub mod stats;

pub use cache::{Cache, CacheKey, KeyParts};
pub use qa::{read_qa, QaItem};
pub use recommend::recommend;
pub use report::write_report;
pub use results::{Answer, Cost, QuestionRow, Recommendation, Results, RouteSpec, SCHEMA};
pub use split::{find_leaks, read_split, split, write_split, Split, SplitOptions};
pub use stats::{Estimate, StatsOptions};

use std::path::{Path, PathBuf};

/// Errors of this crate. Each names the file it concerns; a bad Q&A line names its line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {msg}")]
    Data {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {msg}")]
    Plot { path: PathBuf, msg: String },
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Write `bytes` to `path` through a temporary file in the same folder, synced, and a rename: the
/// file is complete or absent, never half-written (a kill, or a full disk, leaves the old file
/// and no temporary one). The CLI writes its own small state files (`tune.json`) with it too.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    lorag_core::write_atomic(path, bytes).map_err(io_err(path))
}
