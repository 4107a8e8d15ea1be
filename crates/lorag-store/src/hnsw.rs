//! The HNSW index beside the database: `index.usearch` plus `index.json` (the database generation
//! it reflects). Written through temporary files and renames; the JSON goes last, so an index
//! whose write was interrupted reads as stale and is rebuilt.

use crate::{Error, Result};
use std::path::Path;
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

pub(crate) const INDEX_FILE: &str = "index.usearch";
pub(crate) const STATE_FILE: &str = "index.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IndexState {
    Fresh,
    Stale,
    Missing,
    Corrupt,
}

impl IndexState {
    pub fn as_str(self) -> &'static str {
        match self {
            IndexState::Fresh => "fresh",
            IndexState::Stale => "stale",
            IndexState::Missing => "missing",
            IndexState::Corrupt => "corrupt",
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StateJson {
    generation: u64,
    count: u64,
    dim: usize,
}

pub(crate) fn new_index(dim: usize, capacity: usize) -> Result<Index> {
    let opts = IndexOptions {
        dimensions: dim,
        metric: MetricKind::Cos,
        quantization: ScalarKind::F32,
        connectivity: 16,
        expansion_add: 128,
        expansion_search: 96,
        multi: false,
    };
    let idx = Index::new(&opts).map_err(|e| Error::Index(e.to_string()))?;
    idx.reserve(capacity.max(16))
        .map_err(|e| Error::Index(e.to_string()))?;
    Ok(idx)
}

/// Whether the files in `dir` reflect database `generation` with `count` vectors of `dim`.
pub(crate) fn state(dir: &Path, generation: u64, count: u64, dim: usize) -> IndexState {
    let idx = dir.join(INDEX_FILE);
    let st = dir.join(STATE_FILE);
    if !idx.exists() || !st.exists() {
        return IndexState::Missing;
    }
    let Ok(s) = std::fs::read(&st) else {
        return IndexState::Corrupt;
    };
    let Ok(s) = serde_json::from_slice::<StateJson>(&s) else {
        return IndexState::Corrupt;
    };
    match Index::metadata(&idx.to_string_lossy()) {
        Ok(m) if m.dimensions as usize == s.dim => {}
        _ => return IndexState::Corrupt,
    }
    if s.generation != generation || s.count != count || s.dim != dim {
        return IndexState::Stale;
    }
    IndexState::Fresh
}

/// Load the index; None when the file cannot be loaded or does not hold `count` vectors.
pub(crate) fn load(dir: &Path, dim: usize, count: usize) -> Option<Index> {
    let idx = new_index(dim, 16).ok()?;
    idx.load(&dir.join(INDEX_FILE).to_string_lossy()).ok()?;
    (idx.size() == count && idx.dimensions() == dim).then_some(idx)
}

pub(crate) fn save(dir: &Path, idx: &Index, generation: u64) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let tmp = dir.join("index.usearch.tmp");
    idx.save(&tmp.to_string_lossy())
        .map_err(|e| Error::Index(format!("saving {}: {e}", tmp.display())))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, dir.join(INDEX_FILE)).map_err(io(&tmp))?;
    let st = StateJson {
        generation,
        count: idx.size() as u64,
        dim: idx.dimensions(),
    };
    let tmp = dir.join("index.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(&st).expect("serializable")).map_err(io(&tmp))?;
    std::fs::rename(&tmp, dir.join(STATE_FILE)).map_err(io(&tmp))?;
    Ok(())
}
