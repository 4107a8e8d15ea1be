//! ANN benchmark helper (driven by bench/ann.sh): builds the store's HNSW index over the vectors
//! in BASE (raw little-endian f32, DIM per row), runs every query in QUERIES on one thread, and
//! prints one JSON line: build seconds, queries per second, and recall@K against exact search.
//!
//!   cargo run --release -p lorag-store --example ann_bench -- BASE QUERIES DIM [K]

use std::time::Instant;

fn read_f32(path: &str, dim: usize) -> Vec<Vec<f32>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(
        bytes.len().is_multiple_of(4 * dim),
        "{path}: size is not a multiple of {dim} f32"
    );
    bytes
        .chunks_exact(4 * dim)
        .map(|row| {
            row.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        })
        .collect()
}

fn exact_top(base: &[Vec<f32>], q: &[f32], k: usize) -> Vec<u64> {
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let qn = norm(q);
    let mut s: Vec<(u64, f32)> = base
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let dot: f32 = v.iter().zip(q).map(|(a, b)| a * b).sum();
            (i as u64, dot / (norm(v) * qn).max(1e-12))
        })
        .collect();
    s.sort_by(|a, b| b.1.total_cmp(&a.1));
    s.into_iter().take(k).map(|(i, _)| i).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: ann_bench BASE QUERIES DIM [K]");
        std::process::exit(2);
    }
    let dim: usize = args[3].parse().expect("DIM");
    let k: usize = args.get(4).map(|s| s.parse().expect("K")).unwrap_or(10);
    let base = read_f32(&args[1], dim);
    let queries = read_f32(&args[2], dim);

    let t0 = Instant::now();
    let idx = lorag_store::hnsw_index(dim, base.len()).expect("index");
    for (i, v) in base.iter().enumerate() {
        idx.add(i as u64, v).expect("add");
    }
    let build_s = t0.elapsed().as_secs_f64();

    let t0 = Instant::now();
    let found: Vec<Vec<u64>> = queries
        .iter()
        .map(|q| idx.search(q, k).expect("search").keys)
        .collect();
    let search_s = t0.elapsed().as_secs_f64();

    let mut hits = 0usize;
    for (q, f) in queries.iter().zip(&found) {
        let truth = exact_top(&base, q, k);
        hits += f.iter().filter(|id| truth.contains(id)).count();
    }
    println!(
        "{}",
        serde_json::json!({
            "n": base.len(), "queries": queries.len(), "dim": dim, "k": k,
            "build_s": build_s, "qps": queries.len() as f64 / search_s,
            "recall": hits as f64 / (queries.len() * k) as f64,
        })
    );
}
