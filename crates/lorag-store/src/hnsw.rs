//! The HNSW index beside the database: `index.usearch` plus `index.json` (the database generation
//! it reflects). Written through temporary files and renames; the JSON goes last, so an index
//! whose write was interrupted reads as stale and is rebuilt. Temporary names hold the process id
//! and a counter, so two writers never write into each other's temporary file.

use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

/// Searches that may run at once on one index: usearch keeps a context per concurrent caller and
/// fails a search that finds none free, so [`Slots`] makes the extra callers wait.
pub(crate) const THREADS: usize = 32;

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
    reserve(&idx, capacity)?;
    Ok(idx)
}

/// Room for `capacity` vectors (grown by half at least, so that adds one by one stay cheap) and
/// [`THREADS`] concurrent callers.
pub(crate) fn reserve(idx: &Index, capacity: usize) -> Result<()> {
    let have = idx.capacity();
    if capacity <= have && have > 0 {
        return Ok(());
    }
    let want = capacity.max(have + have / 2).max(16);
    idx.reserve_capacity_and_threads(want, THREADS)
        .map_err(|e| Error::Index(e.to_string()))
}

/// A counting gate in front of searches: at most [`THREADS`] at once.
pub(crate) struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

pub(crate) struct Slot<'a>(&'a Slots);

impl Slots {
    pub(crate) fn new() -> Self {
        Self {
            free: Mutex::new(THREADS),
            freed: Condvar::new(),
        }
    }

    pub(crate) fn take(&self) -> Slot<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.freed.notify_one();
    }
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
    if idx.size() != count || idx.dimensions() != dim {
        return None;
    }
    // Loading sets the library's default limits; searches need a context per caller.
    idx.reserve_capacity_and_threads(count.max(16), THREADS)
        .ok()?;
    Some(idx)
}

/// A temporary file name in `dir` that no other process or thread uses.
fn temp_name(dir: &Path, file: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{file}.{}.{n}.tmp", std::process::id()))
}

pub(crate) fn save(dir: &Path, idx: &Index, generation: u64) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let tmp = temp_name(dir, INDEX_FILE);
    let written = idx
        .save(&tmp.to_string_lossy())
        .map_err(|e| Error::Index(format!("saving {}: {e}", tmp.display())))
        .and_then(|()| {
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(io(&tmp))
        })
        .and_then(|()| std::fs::rename(&tmp, dir.join(INDEX_FILE)).map_err(io(&tmp)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    let st = StateJson {
        generation,
        count: idx.size() as u64,
        dim: idx.dimensions(),
    };
    let tmp = temp_name(dir, STATE_FILE);
    let written = std::fs::write(&tmp, serde_json::to_vec(&st).expect("serializable"))
        .and_then(|()| std::fs::rename(&tmp, dir.join(STATE_FILE)))
        .map_err(io(&tmp));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More concurrent searchers than cores: each finds a search context (the gate makes any
    /// caller beyond [`THREADS`] wait instead of failing).
    #[test]
    fn many_threads_search_one_index() {
        let dim = 32;
        let idx = new_index(dim, 3000).unwrap();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut f = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let vecs: Vec<Vec<f32>> = (0..3000).map(|_| (0..dim).map(|_| f()).collect()).collect();
        for (i, v) in vecs.iter().enumerate() {
            idx.add(i as u64, v).unwrap();
        }
        let slots = Slots::new();
        std::thread::scope(|s| {
            for t in 0..(THREADS + 8) {
                let (idx, slots, vecs) = (&idx, &slots, &vecs);
                s.spawn(move || {
                    for i in 0..200 {
                        let _slot = slots.take();
                        let q = &vecs[(t * 131 + i * 17) % vecs.len()];
                        let m = idx.search(q, 10).unwrap();
                        assert_eq!(m.keys.len(), 10);
                    }
                });
            }
        });
    }
}
