pub mod ask;
pub mod chat;
pub mod kb;
pub mod merge;
pub mod models;
pub mod rag_data;
pub mod serve;
pub mod tune;

use std::path::PathBuf;

/// `--model` as given (a catalogue name or a path), resolved against the models folder.
pub fn resolve_model(spec: Option<&str>) -> anyhow::Result<PathBuf> {
    let spec = spec.unwrap_or(lorag_models::DEFAULT_CHAT_MODEL);
    Ok(lorag_models::resolve(spec, &lorag_models::models_dir())?)
}

/// Retrieval flags shared by `ask` and `rag-data` (so that training data is retrieved as asking is).
#[derive(clap::Args, Debug)]
pub struct RetrievalArgs {
    /// Sources to retrieve
    #[arg(short, default_value_t = 4)]
    pub k: usize,
    /// hybrid, dense or bm25
    #[arg(long, default_value = "hybrid")]
    pub mode: String,
    /// Retrieval filter KEY=VALUE (source=GLOB, kind=EXT, or a metadata field); repeatable
    #[arg(long)]
    pub filter: Vec<String>,
}

/// `--mode` and `--filter` values, parsed.
pub fn parse_retrieval(
    mode: &str,
    filters: &[String],
) -> anyhow::Result<(lorag_kb::Mode, Vec<lorag_kb::Filter>)> {
    let mode = mode.parse().map_err(anyhow::Error::msg)?;
    let filters = filters
        .iter()
        .map(|f| lorag_kb::Filter::parse(f))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((mode, filters))
}
