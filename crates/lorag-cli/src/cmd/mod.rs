pub mod ask;
pub mod chat;
pub mod eval;
pub mod kb;
pub mod merge;
pub mod models;
pub mod rag_data;
pub mod serve;
pub mod tune;

use std::path::PathBuf;

/// `--model` as given (a catalogue name or a path), resolved against the models folder.
pub fn resolve_model(spec: Option<&str>) -> anyhow::Result<PathBuf> {
    lorag_service::resolve_model(spec)
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

/// `PATH` or `PATH:SCALE` of a `--lora` flag.
pub fn parse_lora(spec: &str) -> anyhow::Result<(PathBuf, f32)> {
    let l = lorag_service::LoraSpec::parse(spec)?;
    Ok((l.path, l.scale))
}

/// The embedder named by `--embedder` (a catalogue name or a folder; default all-MiniLM-L6-v2).
pub fn load_embedder(spec: Option<&str>) -> anyhow::Result<lorag_embed::BertEmbedder> {
    Ok(lorag_service::load_embedder(spec)?.1)
}
