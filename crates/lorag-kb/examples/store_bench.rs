//! Store benchmark helper (driven by bench/store.sh): the same synthetic KB on each backend given,
//! in one run. For every `--kb`: ingest time (sources of 100 chunks, one transaction each),
//! search latency p50/p95 and QPS with 1 and 8 client threads sharing one handle (a dense and a
//! lexical query per search, fused as `lorag search --mode hybrid` does), and recall@5 of dense
//! (against exact search) and of hybrid (the chunk a query was made from, in the fused top 5; a
//! query is that chunk's vector moved a little, and three of its words, in half of them a rare one).
//! Prints one JSON line per KB.
//!
//!   cargo run --release -p lorag-kb --example store_bench -- --n 100000 --kb DIR --kb postgres://...
//!
//! The KB locations must be new or empty (the data is synthetic: clustered unit vectors, and texts
//! of words drawn from a Zipf-like vocabulary, each chunk with two rare words of its own).

use lorag_core::{Chunk, Document};
use lorag_kb::{Access, Store};
use lorag_store::{DocumentChunks, SourceRecord};
use std::sync::Arc;
use std::time::Instant;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn f(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn unit(v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.into_iter().map(|x| x / n).collect()
}

fn word(i: usize) -> String {
    // Pronounceable, distinct, not English (no stop word, no stemming surprise).
    const C: &[u8] = b"bcdfghjklmnprstvz";
    const V: &[u8] = b"aeiou";
    let mut s = String::new();
    let mut x = i + 17 * 5;
    while x > 0 || s.len() < 6 {
        s.push(C[x % C.len()] as char);
        x /= C.len();
        s.push(V[x % V.len()] as char);
        x /= V.len();
    }
    s
}

struct Data {
    vectors: Vec<Vec<f32>>,
    texts: Vec<String>,
}

fn data(n: usize, dim: usize, seed: u64) -> Data {
    let mut rng = Rng(seed);
    let centers: Vec<Vec<f32>> = (0..(n / 200).max(8))
        .map(|_| unit((0..dim).map(|_| rng.f()).collect()))
        .collect();
    let vocab = 3000;
    let mut vectors = Vec::with_capacity(n);
    let mut texts = Vec::with_capacity(n);
    for i in 0..n {
        let c = &centers[rng.below(centers.len())];
        vectors.push(unit(c.iter().map(|x| x + rng.f() * 0.1).collect()));
        let mut t: Vec<String> = (0..40)
            .map(|_| {
                // Zipf-like: small ids far more often.
                let r = rng.below(vocab) as f64 / vocab as f64;
                word((r * r * r * vocab as f64) as usize)
            })
            .collect();
        t.push(word(vocab + 2 * i));
        t.push(word(vocab + 2 * i + 1));
        texts.push(t.join(" "));
    }
    Data { vectors, texts }
}

fn exact_top(d: &Data, q: &[f32], k: usize) -> Vec<usize> {
    let mut s: Vec<(usize, f32)> = d
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| (i, v.iter().zip(q).map(|(a, b)| a * b).sum()))
        .collect();
    s.sort_by(|a, b| b.1.total_cmp(&a.1));
    s.into_iter().take(k).map(|x| x.0).collect()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut kbs = Vec::new();
    let (mut n, mut dim, mut queries) = (20_000usize, 384usize, 200usize);
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--kb" => kbs.push(v),
            "--n" => n = v.parse().expect("--n N"),
            "--dim" => dim = v.parse().expect("--dim D"),
            "--queries" => queries = v.parse().expect("--queries Q"),
            a => panic!("unknown argument {a}"),
        }
        i += 2;
    }
    let d = data(n, dim, 42);
    let mut rng = Rng(7);
    // Queries: a chunk's vector, moved a little, and three of its words (one rare).
    let qs: Vec<(usize, Vec<f32>, String)> = (0..queries)
        .map(|_| {
            let t = rng.below(n);
            let v = unit(d.vectors[t].iter().map(|x| x + rng.f() * 0.1).collect());
            let words: Vec<&str> = d.texts[t].split(' ').collect();
            // Half the queries carry one of the chunk's rare words; the others only common ones.
            let text = if rng.below(2) == 0 {
                format!(
                    "{} {} {}",
                    words[rng.below(40)],
                    words[rng.below(40)],
                    words[40 + rng.below(2)]
                )
            } else {
                format!(
                    "{} {} {}",
                    words[rng.below(40)],
                    words[rng.below(40)],
                    words[rng.below(40)]
                )
            };
            (t, v, text)
        })
        .collect();
    let truth: Vec<Vec<usize>> = qs.iter().map(|(_, v, _)| exact_top(&d, v, 5)).collect();
    let rare: std::collections::HashMap<String, usize> =
        (0..n).map(|i| (word(3000 + 2 * i + 1), i)).collect();
    for kb in &kbs {
        let shown = lorag_kb::display_location(kb);
        let store = lorag_kb::open_store(kb, Access::Create).expect("open");
        store
            .check_embedding_model(&format!("synthetic:{dim}"), dim)
            .expect("model");
        assert_eq!(store.stats().unwrap().chunks, 0, "{shown} is not empty");
        let t0 = Instant::now();
        for (s, range) in (0..n).collect::<Vec<_>>().chunks(100).enumerate() {
            let source = format!("synthetic/{s:06}.txt");
            let doc = Document::new(&source, "txt", "");
            let chunks: Vec<Chunk> = range
                .iter()
                .enumerate()
                .map(|(o, &i)| Chunk {
                    ordinal: o as u32,
                    text: d.texts[i].clone(),
                    start: 0,
                    end: d.texts[i].len(),
                    section: None,
                    page: None,
                    tokens: 42,
                })
                .collect();
            let vectors: Vec<Vec<f32>> = range.iter().map(|&i| d.vectors[i].clone()).collect();
            store
                .put_source(
                    &SourceRecord {
                        source,
                        kind: "txt".into(),
                        hash: "h".into(),
                        mtime: 0,
                        size: 0,
                    },
                    &[DocumentChunks {
                        document: &doc,
                        chunks: &chunks,
                        vectors: &vectors,
                    }],
                )
                .expect("put");
        }
        store.flush().unwrap();
        let ingest_s = t0.elapsed().as_secs_f64();
        // Chunk id -> data index, by the chunk's last word (rare: word(vocab + 2 i + 1)).
        let index_of = |s: &dyn Store, ids: &[i64]| -> Vec<usize> {
            s.chunks(ids)
                .unwrap()
                .iter()
                .map(|c| {
                    let last = c.text.rsplit(' ').next().unwrap_or("");
                    rare.get(last).copied().unwrap_or(usize::MAX)
                })
                .collect()
        };
        let pool = 50;
        let hybrid = |s: &dyn Store, v: &[f32], q: &str| -> Vec<i64> {
            let dense = s.dense(v, pool, &[]).unwrap();
            let lex = s.lexical(q, pool, &[]).unwrap();
            lorag_kb::fuse(&[&dense, &lex])
                .into_iter()
                .take(5)
                .map(|x| x.0)
                .collect()
        };
        let (mut dense_hits, mut hybrid_hits) = (0usize, 0usize);
        let mut lat = Vec::new();
        for (qi, (t, v, text)) in qs.iter().enumerate() {
            let dense: Vec<i64> = store
                .dense(v, 5, &[])
                .unwrap()
                .into_iter()
                .map(|x| x.0)
                .collect();
            let got = index_of(&*store, &dense);
            dense_hits += truth[qi].iter().filter(|i| got.contains(i)).count();
            let t1 = Instant::now();
            let h = hybrid(&*store, v, text);
            lat.push(t1.elapsed().as_secs_f64() * 1e3);
            if index_of(&*store, &h).contains(t) {
                hybrid_hits += 1;
            }
        }
        let qps = |threads: usize| -> f64 {
            let store: Arc<dyn Store> = store.clone();
            let qs = Arc::new(qs.clone());
            let t0 = Instant::now();
            let per = qs.len();
            let hs: Vec<_> = (0..threads)
                .map(|t| {
                    let (store, qs) = (store.clone(), qs.clone());
                    std::thread::spawn(move || {
                        for j in 0..per {
                            let (_, v, text) = &qs[(j + t * 7) % qs.len()];
                            let dense = store.dense(v, pool, &[]).unwrap();
                            let lex = store.lexical(text, pool, &[]).unwrap();
                            let f = lorag_kb::fuse(&[&dense, &lex]);
                            let ids: Vec<i64> = f.iter().take(5).map(|x| x.0).collect();
                            store.chunks(&ids).unwrap();
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            (threads * per) as f64 / t0.elapsed().as_secs_f64()
        };
        let (q1, q8) = (qps(1), qps(8));
        let st = store.stats().unwrap();
        println!(
            "{}",
            serde_json::json!({
                "kb": shown, "backend": st.backend, "chunks": st.chunks, "dim": dim,
                "ingest_s": (ingest_s * 100.0).round() / 100.0,
                "ingest_chunks_per_s": (n as f64 / ingest_s).round(),
                "hybrid_ms_p50": (pct(&mut lat, 0.5) * 100.0).round() / 100.0,
                "hybrid_ms_p95": (pct(&mut lat, 0.95) * 100.0).round() / 100.0,
                "qps_1": q1.round(), "qps_8": q8.round(),
                "recall5_dense": dense_hits as f64 / (5 * qs.len()) as f64,
                "recall5_hybrid": hybrid_hits as f64 / qs.len() as f64,
                "bytes": st.bytes_on_disk,
            })
        );
    }
}
