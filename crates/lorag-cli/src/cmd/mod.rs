pub mod ask;
pub mod chat;
pub mod kb;
pub mod merge;
pub mod models;
pub mod tune;

use std::path::PathBuf;

/// `--model` as given (a catalogue name or a path), resolved against the models folder.
pub fn resolve_model(spec: Option<&str>) -> anyhow::Result<PathBuf> {
    let spec = spec.unwrap_or(lorag_models::DEFAULT_CHAT_MODEL);
    Ok(lorag_models::resolve(spec, &lorag_models::models_dir())?)
}
