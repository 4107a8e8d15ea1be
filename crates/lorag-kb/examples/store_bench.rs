//! Store benchmark helper (driven by bench/store.sh): the same KB on each backend given, in one
//! run. For every `--kb`: ingest time, search latency p50/p95 and QPS with 1 and 8 client threads
//! sharing one handle (a dense and a lexical query per search, fused as `lorag search --mode
//! hybrid` does), and recall@5 of dense and of hybrid search. Prints one JSON line per KB.
//!
//! Two data sets:
//! - synthetic (default): `--n` chunks in sources of 100, one transaction each; dense recall@5 is
//!   against exact search, hybrid recall@5 finds the chunk a query was made from (its vector moved
//!   a little, and three of its words, in half of the queries a rare one). The data: clustered
//!   unit vectors, and texts of words drawn from a Zipf-like vocabulary, each chunk with two rare
//!   words of its own.
//! - `--squad FILE --work DIR`: SQuAD v1.1 dev's 2,067 paragraphs as documents, ingested by
//!   lorag's own pipeline (load, chunk, embed, store); every text is embedded once (the first,
//!   end-to-end ingest goes to a scratch KB under DIR), so each backend's ingest time is the
//!   pipeline without the model; `--queries` questions drawn with a fixed seed (with
//!   replacement), a hit being a chunk of the question's own paragraph in the top 5.
//!
//! ```text
//! cargo run --release -p lorag-kb --example store_bench -- --n 100000 --kb DIR --kb postgres://...
//! cargo run --release -p lorag-kb --example store_bench -- --squad squaddev_v1.1.json --work TMP \
//!     --queries 2000 --kb DIR --kb postgres://...
//! ```
//!
//! The KB locations must be new or empty.

use lorag_core::{Chunk, Document};
use lorag_embed::{BertEmbedder, EmbedOptions, Embedder};
use lorag_kb::{Access, Store};
use lorag_store::{DocumentChunks, SourceRecord};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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

/// A query: its vector and its text (one dense and one lexical search, fused).
#[derive(Clone)]
struct Query {
    v: Vec<f32>,
    text: String,
}

/// What one backend measured on one set of queries.
struct Measured {
    recall5_dense: f64,
    recall5_hybrid: f64,
    p50: f64,
    p95: f64,
    qps1: f64,
    qps8: f64,
}

const POOL: usize = 50;

/// The top 5 of a dense and a lexical list of `POOL` each, fused as `lorag search` does.
fn hybrid(s: &dyn Store, q: &Query) -> Vec<i64> {
    let dense = s.dense(&q.v, POOL, &[]).unwrap();
    let lex = s.lexical(&q.text, POOL, &[]).unwrap();
    lorag_kb::fuse(&[&dense, &lex])
        .into_iter()
        .take(5)
        .map(|x| x.0)
        .collect()
}

/// Quality, latency and throughput of `store` on `qs`. `dense_score(i, top5)` scores query i's
/// dense top 5 (0..1); `hybrid_hit(i, top5)` says whether its fused top 5 holds its target. The
/// latency is the fused search alone (two store queries and the fusion); throughput also reads
/// the 5 chunks back, as a search does, with 1 and 8 threads sharing the one handle.
fn measure(
    store: &Arc<dyn Store>,
    qs: &[Query],
    dense_score: impl Fn(usize, &[lorag_store::StoredChunk]) -> f64,
    hybrid_hit: impl Fn(usize, &[lorag_store::StoredChunk]) -> bool,
) -> Measured {
    let (mut dense_sum, mut hybrid_hits) = (0.0f64, 0usize);
    let mut lat = Vec::new();
    for (qi, q) in qs.iter().enumerate() {
        let dense: Vec<i64> = store
            .dense(&q.v, 5, &[])
            .unwrap()
            .into_iter()
            .map(|x| x.0)
            .collect();
        dense_sum += dense_score(qi, &store.chunks(&dense).unwrap());
        let t1 = Instant::now();
        let h = hybrid(&**store, q);
        lat.push(t1.elapsed().as_secs_f64() * 1e3);
        if hybrid_hit(qi, &store.chunks(&h).unwrap()) {
            hybrid_hits += 1;
        }
    }
    let qps = |threads: usize| -> f64 {
        let qs = Arc::new(qs.to_vec());
        let t0 = Instant::now();
        // Each thread runs at most 500 searches (the SQuAD part has 2,000 queries).
        let per = qs.len().min(500);
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let (store, qs) = (store.clone(), qs.clone());
                std::thread::spawn(move || {
                    for j in 0..per {
                        let ids = hybrid(&*store, &qs[(j + t * 7) % qs.len()]);
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
    let (qps1, qps8) = (qps(1), qps(8));
    Measured {
        recall5_dense: dense_sum / qs.len() as f64,
        recall5_hybrid: hybrid_hits as f64 / qs.len() as f64,
        p50: pct(&mut lat, 0.5),
        p95: pct(&mut lat, 0.95),
        qps1,
        qps8,
    }
}

fn report(
    data: &str,
    store: &dyn Store,
    n_queries: usize,
    ingest_s: f64,
    m: &Measured,
) -> serde_json::Value {
    let st = store.stats().unwrap();
    let r2 = |x: f64| (x * 100.0).round() / 100.0;
    let r4 = |x: f64| (x * 1e4).round() / 1e4;
    serde_json::json!({
        "data": data, "kb": lorag_kb::display_location(&st.location), "backend": st.backend,
        "sources": st.sources, "chunks": st.chunks, "dim": st.dim, "queries": n_queries,
        "ingest_s": r2(ingest_s),
        "ingest_chunks_per_s": (st.chunks as f64 / ingest_s).round(),
        "hybrid_ms_p50": r2(m.p50), "hybrid_ms_p95": r2(m.p95),
        "qps_1": m.qps1.round(), "qps_8": m.qps8.round(),
        "recall5_dense": r4(m.recall5_dense),
        "recall5_hybrid": r4(m.recall5_hybrid),
        "bytes": st.bytes_on_disk,
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut kbs = Vec::new();
    let (mut n, mut dim, mut queries) = (20_000usize, 384usize, 200usize);
    let (mut squad, mut work, mut model) = (None, None, None);
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--kb" => kbs.push(v),
            "--n" => n = v.parse().expect("--n N"),
            "--dim" => dim = v.parse().expect("--dim D"),
            "--queries" => queries = v.parse().expect("--queries Q"),
            "--squad" => squad = Some(std::path::PathBuf::from(v)),
            "--work" => work = Some(std::path::PathBuf::from(v)),
            "--model" => model = Some(std::path::PathBuf::from(v)),
            a => panic!("unknown argument {a}"),
        }
        i += 2;
    }
    match squad {
        Some(squad) => squad_main(&squad, &work.expect("--work DIR"), model, queries, &kbs),
        None => synthetic_main(n, dim, queries, &kbs),
    }
}

fn synthetic_main(n: usize, dim: usize, queries: usize, kbs: &[String]) {
    let d = data(n, dim, 42);
    let mut rng = Rng(7);
    // Queries: a chunk's vector, moved a little, and three of its words (one rare).
    let targets: Vec<usize> = (0..queries).map(|_| rng.below(n)).collect();
    let qs: Vec<Query> = targets
        .iter()
        .map(|&t| {
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
            Query { v, text }
        })
        .collect();
    let truth: Vec<Vec<usize>> = qs.iter().map(|q| exact_top(&d, &q.v, 5)).collect();
    let rare: std::collections::HashMap<String, usize> =
        (0..n).map(|i| (word(3000 + 2 * i + 1), i)).collect();
    // Chunk -> data index, by the chunk's last word (rare: word(vocab + 2 i + 1)).
    let index_of = |cs: &[lorag_store::StoredChunk]| -> Vec<usize> {
        cs.iter()
            .map(|c| {
                let last = c.text.rsplit(' ').next().unwrap_or("");
                rare.get(last).copied().unwrap_or(usize::MAX)
            })
            .collect()
    };
    for kb in kbs {
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
        let m = measure(
            &store,
            &qs,
            |qi, cs| {
                let got = index_of(cs);
                truth[qi].iter().filter(|i| got.contains(i)).count() as f64 / 5.0
            },
            |qi, cs| index_of(cs).contains(&targets[qi]),
        );
        println!("{}", report("synthetic", &*store, qs.len(), ingest_s, &m));
    }
}

/// An embedder that remembers every vector it made: the SQuAD part embeds each text once, so
/// that each backend's timed ingest is the pipeline without the model (chunking, writing,
/// indexing), and the model's share is reported once.
struct Cached<'a> {
    inner: &'a dyn Embedder,
    memo: Mutex<HashMap<String, Vec<f32>>>,
}

impl lorag_core::TokenCounter for Cached<'_> {
    fn count_tokens(&self, text: &str) -> usize {
        self.inner.count_tokens(text)
    }
}

impl Embedder for Cached<'_> {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn max_tokens(&self) -> usize {
        self.inner.max_tokens()
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, lorag_embed::EmbedError> {
        let missing: Vec<&str> = {
            let memo = self.memo.lock().unwrap();
            texts
                .iter()
                .copied()
                .filter(|t| !memo.contains_key(*t))
                .collect()
        };
        if !missing.is_empty() {
            let vs = self.inner.embed(&missing)?;
            let mut memo = self.memo.lock().unwrap();
            for (t, v) in missing.iter().zip(vs) {
                memo.insert(t.to_string(), v);
            }
        }
        let memo = self.memo.lock().unwrap();
        Ok(texts.iter().map(|t| memo[*t].clone()).collect())
    }
}

/// SQuAD v1.1 dev (the KB of bench/retrieval.sh: 2,067 paragraphs, one `.txt` document each,
/// ingested by lorag's own pipeline into each backend), `queries` questions drawn with a fixed
/// seed; a hit is a chunk of the question's own paragraph among the top 5.
fn squad_main(
    squad: &std::path::Path,
    work: &std::path::Path,
    model: Option<std::path::PathBuf>,
    queries: usize,
    kbs: &[String],
) {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(squad).expect("read the SQuAD file"))
            .expect("SQuAD JSON");
    let docs = work.join("paragraphs");
    std::fs::create_dir_all(&docs).expect("create the documents folder");
    let mut questions: Vec<(String, String)> = Vec::new();
    let mut paragraphs = 0usize;
    for art in v["data"].as_array().expect("data") {
        let title = art["title"].as_str().unwrap_or("").replace('_', " ");
        for p in art["paragraphs"].as_array().expect("paragraphs") {
            let name = format!("p{paragraphs:04}.txt");
            let ctx = p["context"].as_str().unwrap_or("");
            std::fs::write(docs.join(&name), format!("{title}\n\n{ctx}\n")).expect("write");
            for qa in p["qas"].as_array().expect("qas") {
                let q = qa["question"].as_str().unwrap_or("").replace('\n', " ");
                questions.push((q, name.clone()));
            }
            paragraphs += 1;
        }
    }
    let mut rng = Rng(11);
    let picked: Vec<(String, String)> = (0..queries.min(questions.len()))
        .map(|_| questions[rng.below(questions.len())].clone())
        .collect();
    let model = model.unwrap_or_else(|| lorag_models::test_model("all-minilm-l6-v2"));
    let bert = BertEmbedder::load(&model, &EmbedOptions::default()).expect("load the embedder");
    let emb = Cached {
        inner: &bert,
        memo: Mutex::new(HashMap::new()),
    };
    let inputs = vec![docs.to_string_lossy().into_owned()];
    // Embed every chunk once (into a scratch KB: this is the end-to-end ingest of one backend).
    let t0 = Instant::now();
    let first = lorag_kb::ingest(
        work.join("scratch-kb"),
        &inputs,
        &emb,
        &lorag_kb::IngestOptions::default(),
    )
    .expect("ingest into the scratch KB");
    let end_to_end_s = t0.elapsed().as_secs_f64();
    let texts: Vec<&str> = picked.iter().map(|(q, _)| q.as_str()).collect();
    let t1 = Instant::now();
    let vs = emb.embed(&texts).expect("embed the questions");
    let query_embed_ms = t1.elapsed().as_secs_f64() * 1e3 / texts.len() as f64;
    eprintln!(
        "SQuAD: {paragraphs} paragraphs, {} chunks, embedded and ingested end to end in {end_to_end_s:.1} s; {} of {} questions, embedded at {query_embed_ms:.1} ms each",
        first.chunks,
        picked.len(),
        questions.len()
    );
    let qs: Vec<Query> = picked
        .iter()
        .zip(vs)
        .map(|((text, _), v)| Query {
            v,
            text: text.clone(),
        })
        .collect();
    let gold = |qi: usize, cs: &[lorag_store::StoredChunk]| {
        cs.iter().any(|c| {
            std::path::Path::new(&c.source)
                .file_name()
                .is_some_and(|f| f.to_string_lossy() == picked[qi].1)
        })
    };
    for kb in kbs {
        let shown = lorag_kb::display_location(kb);
        let store = lorag_kb::open_store(kb, Access::Create).expect("open");
        assert_eq!(store.stats().unwrap().chunks, 0, "{shown} is not empty");
        let t0 = Instant::now();
        let r = lorag_kb::ingest_into(&*store, &inputs, &emb, &lorag_kb::IngestOptions::default())
            .expect("ingest");
        let ingest_s = t0.elapsed().as_secs_f64();
        assert!(r.failed.is_empty(), "{shown}: {:?}", r.failed);
        let m = measure(
            &store,
            &qs,
            |qi, cs| f64::from(u8::from(gold(qi, cs))),
            |qi, cs| gold(qi, cs),
        );
        let mut line = report("squad", &*store, qs.len(), ingest_s, &m);
        line["end_to_end_ingest_s"] = serde_json::json!((end_to_end_s * 10.0).round() / 10.0);
        line["query_embed_ms"] = serde_json::json!((query_embed_ms * 100.0).round() / 100.0);
        println!("{line}");
    }
}
