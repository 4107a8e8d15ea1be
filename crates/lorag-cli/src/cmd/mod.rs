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

/// `PATH` or `PATH:SCALE` of a `--lora` flag.
pub fn parse_lora(spec: &str) -> anyhow::Result<(PathBuf, f32)> {
    if let Some((p, s)) = spec.rsplit_once(':') {
        if let Ok(scale) = s.parse::<f32>() {
            if !scale.is_finite() {
                anyhow::bail!("--lora {spec}: scale must be a finite number");
            }
            return Ok((PathBuf::from(p), scale));
        }
    }
    Ok((PathBuf::from(spec), 1.0))
}

/// The embedder named by `--embedder` (a catalogue name or a folder; default all-MiniLM-L6-v2).
pub fn load_embedder(spec: Option<&str>) -> anyhow::Result<lorag_embed::BertEmbedder> {
    let spec = spec.unwrap_or(lorag_models::DEFAULT_EMBED_MODEL);
    let dir = lorag_models::resolve(spec, &lorag_models::models_dir())?;
    Ok(lorag_embed::BertEmbedder::load(
        &dir,
        &lorag_embed::EmbedOptions::default(),
    )?)
}
