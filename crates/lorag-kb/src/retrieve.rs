//! Retrieval: dense (HNSW), BM25 (FTS5), and hybrid by reciprocal-rank fusion, with filters and
//! near-duplicate collapsing.

use crate::Result;
use lorag_embed::Embedder;
use lorag_store::{ChunkId, Filter, Store, StoredChunk};
use serde::Serialize;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Hybrid,
    Dense,
    Bm25,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "hybrid" => Ok(Mode::Hybrid),
            "dense" => Ok(Mode::Dense),
            "bm25" => Ok(Mode::Bm25),
            _ => Err(format!("unknown mode {s:?} (hybrid, dense or bm25)")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SearchOptions {
    pub k: usize,
    pub mode: Mode,
    pub filters: Vec<Filter>,
    /// Drop a result whose vector is at least this similar to a better one (1.0 disables).
    pub dedup_threshold: f32,
}

impl Default for SearchOptions {
    fn default() -> Self {
        Self {
            k: 5,
            mode: Mode::Hybrid,
            filters: Vec::new(),
            dedup_threshold: 0.98,
        }
    }
}

/// Reciprocal-rank fusion constant (Cormack et al.): score = sum over lists of 1 / (RRF_K + rank).
pub const RRF_K: f32 = 60.0;

#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    pub rank: usize,
    /// Dense: cosine similarity; BM25: the BM25 score; hybrid: the fused RRF score.
    pub score: f32,
    /// The dense similarity of the query and this chunk, whatever the mode (for thresholds).
    pub similarity: f32,
    #[serde(flatten)]
    pub chunk: StoredChunk,
}

/// Search the store. Results are read back from the store, so none is ever stale.
pub fn search(
    store: &dyn Store,
    embedder: &dyn Embedder,
    query: &str,
    opts: &SearchOptions,
) -> Result<Vec<Hit>> {
    if opts.k == 0 || query.trim().is_empty() {
        return Ok(Vec::new());
    }
    // Fetch more than k from each list: fusion and de-duplication need room.
    let pool = (opts.k * 5).max(50);
    let qv = embedder
        .embed(&[query])?
        .pop()
        .ok_or_else(|| crate::Error::Other("the embedder returned no vector".into()))?;
    let ranked: Vec<(ChunkId, f32)> = match opts.mode {
        Mode::Dense => store.dense(&qv, pool, &opts.filters)?,
        Mode::Bm25 => store.lexical(query, pool, &opts.filters)?,
        Mode::Hybrid => {
            let dense = store.dense(&qv, pool, &opts.filters)?;
            let lexical = store.lexical(query, pool, &opts.filters)?;
            fuse(&[&dense, &lexical])
        }
    };
    let ids: Vec<ChunkId> = ranked.iter().map(|r| r.0).collect();
    let vectors: HashMap<ChunkId, Vec<f32>> = store.vectors(&ids)?.into_iter().collect();
    let mut kept: Vec<(ChunkId, f32)> = Vec::new();
    for (id, score) in ranked {
        let Some(v) = vectors.get(&id) else { continue };
        let dup = kept.iter().any(|(k, _)| {
            vectors
                .get(k)
                .is_some_and(|kv| cosine(kv, v) >= opts.dedup_threshold)
        });
        if !dup {
            kept.push((id, score));
        }
        if kept.len() == opts.k {
            break;
        }
    }
    let chunks = store.chunks(&kept.iter().map(|k| k.0).collect::<Vec<_>>())?;
    let by_id: HashMap<ChunkId, StoredChunk> = chunks.into_iter().map(|c| (c.id, c)).collect();
    Ok(kept
        .into_iter()
        .filter_map(|(id, score)| {
            let chunk = by_id.get(&id)?.clone();
            let similarity = vectors.get(&id).map(|v| cosine(&qv, v)).unwrap_or(0.0);
            Some((chunk, score, similarity))
        })
        .enumerate()
        .map(|(i, (chunk, score, similarity))| Hit {
            rank: i + 1,
            score,
            similarity,
            chunk,
        })
        .collect())
}

/// Reciprocal-rank fusion of ranked lists (best first). Ties keep the first list's order.
pub fn fuse(lists: &[&[(ChunkId, f32)]]) -> Vec<(ChunkId, f32)> {
    let mut score: HashMap<ChunkId, f32> = HashMap::new();
    let mut first_seen: HashMap<ChunkId, usize> = HashMap::new();
    let mut order = 0;
    for list in lists {
        for (rank, (id, _)) in list.iter().enumerate() {
            *score.entry(*id).or_default() += 1.0 / (RRF_K + rank as f32 + 1.0);
            first_seen.entry(*id).or_insert_with(|| {
                order += 1;
                order
            });
        }
    }
    let mut v: Vec<(ChunkId, f32)> = score.into_iter().collect();
    v.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then(first_seen[&a.0].cmp(&first_seen[&b.0]))
    });
    v
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut d, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        d += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        d / (na.sqrt() * nb.sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::fuse;

    #[test]
    fn rrf_rewards_agreement() {
        let dense = [(1, 0.9), (2, 0.8), (3, 0.7)];
        let bm25 = [(3, 9.0), (2, 5.0), (4, 1.0)];
        let f = fuse(&[&dense, &bm25]);
        let ids: Vec<i64> = f.iter().map(|x| x.0).collect();
        // 2 and 3 are in both lists; 2 is second in both, 3 first and third.
        assert_eq!(
            ids[..2]
                .iter()
                .copied()
                .collect::<std::collections::HashSet<_>>(),
            [2, 3].into()
        );
        assert_eq!(ids.len(), 4);
        assert!(f[0].1 > f[2].1);
    }
}
