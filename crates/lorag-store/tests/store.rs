//! The embedded store on a real SQLite file and a real usearch index.

use lorag_core::{Chunk, Document};
use lorag_store::{DocumentChunks, Filter, SourceRecord, SqliteStore, Store};
use std::path::Path;

struct Rng(u64);
impl Rng {
    fn f(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
    fn unit(&mut self, dim: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..dim).map(|_| self.f()).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }
}

fn doc(source: &str, kind: &str, text: &str) -> Document {
    let mut d = Document::new(source, kind, text);
    d.title = Some(format!("title of {source}"));
    d.metadata.insert("author".into(), "ann".into());
    d.metadata.insert("year".into(), 2024.into());
    d
}

fn chunk(text: &str, ordinal: u32) -> Chunk {
    Chunk {
        ordinal,
        text: text.into(),
        start: 0,
        end: text.len(),
        section: Some("Intro".into()),
        page: None,
        tokens: text.split_whitespace().count(),
    }
}

/// Put one source with one document whose chunks are `texts`, with the given vectors.
fn put(store: &SqliteStore, source: &str, hash: &str, texts: &[&str], vectors: Vec<Vec<f32>>) {
    let d = doc(source, "txt", &texts.join("\n"));
    let chunks: Vec<Chunk> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| chunk(t, i as u32))
        .collect();
    let rec = SourceRecord {
        source: source.into(),
        kind: "txt".into(),
        hash: hash.into(),
        mtime: 0,
        size: 1,
    };
    store
        .put_source(
            &rec,
            &[DocumentChunks {
                document: &d,
                chunks: &chunks,
                vectors: &vectors,
            }],
        )
        .unwrap();
}

fn open(dir: &Path) -> SqliteStore {
    let s = SqliteStore::open(dir, true).unwrap();
    s.check_embedding_model("test-model", 8).unwrap();
    s
}

fn axis(i: usize) -> Vec<f32> {
    let mut v = vec![0.0; 8];
    v[i] = 1.0;
    v
}

#[test]
fn replace_remove_and_never_stale() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    put(
        &s,
        "a.txt",
        "h1",
        &["concrete cures slowly", "steel beams carry loads"],
        vec![axis(0), axis(1)],
    );
    put(
        &s,
        "b.txt",
        "h1",
        &["timber frames are light"],
        vec![axis(2)],
    );
    s.flush().unwrap();
    assert_eq!(s.source_hash("a.txt").unwrap().as_deref(), Some("h1"));
    let hit = s.dense(&axis(1), 1, &[]).unwrap();
    let c = s.chunks(&[hit[0].0]).unwrap();
    assert_eq!(c[0].text, "steel beams carry loads");
    assert_eq!(c[0].source, "a.txt");
    assert!((hit[0].1 - 1.0).abs() < 1e-4);
    let lex = s.lexical("Steel!", 5, &[]).unwrap();
    assert_eq!(lex.len(), 1);
    assert_eq!(
        s.chunks(&[lex[0].0]).unwrap()[0].text,
        "steel beams carry loads"
    );

    // Replace a.txt: its old chunks are gone from every path.
    put(
        &s,
        "a.txt",
        "h2",
        &["glass facades reflect light"],
        vec![axis(1)],
    );
    let hit = s.dense(&axis(1), 3, &[]).unwrap();
    let texts: Vec<String> = s
        .chunks(&hit.iter().map(|h| h.0).collect::<Vec<_>>())
        .unwrap()
        .into_iter()
        .map(|c| c.text)
        .collect();
    assert!(texts.contains(&"glass facades reflect light".to_string()));
    assert!(
        !texts
            .iter()
            .any(|t| t.contains("steel") || t.contains("concrete")),
        "{texts:?}"
    );
    assert!(s.lexical("steel concrete", 5, &[]).unwrap().is_empty());
    assert_eq!(s.stats().unwrap().chunks, 2);

    assert!(s.remove_source("b.txt").unwrap());
    assert!(!s.remove_source("b.txt").unwrap());
    assert!(s.lexical("timber", 5, &[]).unwrap().is_empty());
    s.flush().unwrap();
    let st = s.stats().unwrap();
    assert_eq!((st.sources, st.documents, st.chunks), (1, 1, 1));
    drop(s);

    // Reopened: the saved index is fresh and agrees.
    let s = open(dir.path());
    assert_eq!(s.stats().unwrap().index_state, "fresh");
    let hit = s.dense(&axis(1), 5, &[]).unwrap();
    assert_eq!(hit.len(), 1);
}

#[test]
fn index_is_rebuilt_when_missing_stale_or_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    put(&s, "a.txt", "h", &["one", "two"], vec![axis(0), axis(1)]);
    s.flush().unwrap();
    drop(s);
    let idx = dir.path().join("index.usearch");

    std::fs::remove_file(&idx).unwrap();
    let s = open(dir.path());
    assert_eq!(s.stats().unwrap().index_state, "missing");
    assert_eq!(s.dense(&axis(0), 1, &[]).unwrap().len(), 1);
    assert_eq!(s.stats().unwrap().index_state, "fresh");
    assert!(idx.exists(), "rebuilt and saved");
    drop(s);

    std::fs::write(&idx, b"garbage, not an index").unwrap();
    let s = open(dir.path());
    assert_eq!(s.stats().unwrap().index_state, "corrupt");
    let hit = s.dense(&axis(1), 1, &[]).unwrap();
    assert_eq!(s.chunks(&[hit[0].0]).unwrap()[0].text, "two");
    drop(s);

    // A writer that dies before saving the index leaves it stale.
    let s = open(dir.path());
    put(&s, "b.txt", "h", &["three"], vec![axis(2)]);
    std::mem::forget(s); // no flush, no drop: as if killed
    let s = open(dir.path());
    assert_eq!(s.stats().unwrap().index_state, "stale");
    let hit = s.dense(&axis(2), 1, &[]).unwrap();
    assert_eq!(s.chunks(&[hit[0].0]).unwrap()[0].text, "three");
}

#[test]
fn models_are_never_mixed() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let e = s
        .check_embedding_model("other-model", 8)
        .unwrap_err()
        .to_string();
    assert!(e.contains("test-model") && e.contains("other-model"), "{e}");
    assert!(s.check_embedding_model("test-model", 8).is_ok());
    let missing = SqliteStore::open(&dir.path().join("nothing"), false)
        .err()
        .unwrap()
        .to_string();
    assert!(missing.contains("lorag ingest"), "{missing}");
    let notdb = tempfile::tempdir().unwrap();
    std::fs::write(
        notdb.path().join("kb.sqlite"),
        "this is not a database, just some text here ok",
    )
    .unwrap();
    let e = SqliteStore::open(notdb.path(), false)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("kb.sqlite"), "{e}");
}

#[test]
fn filters_on_source_kind_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    put(&s, "docs/a.md", "h", &["alpha"], vec![axis(0)]);
    put(&s, "notes/b.txt", "h", &["alpha beta"], vec![axis(0)]);
    let n = |f: Vec<Filter>| s.lexical("alpha", 10, &f).unwrap().len();
    let d = |f: Vec<Filter>| s.dense(&axis(0), 10, &f).unwrap().len();
    assert_eq!(n(vec![]), 2);
    assert_eq!(n(vec![Filter::parse("source=docs/*").unwrap()]), 1);
    assert_eq!(d(vec![Filter::parse("source=docs/*").unwrap()]), 1);
    assert_eq!(n(vec![Filter::parse("kind=txt").unwrap()]), 2);
    assert_eq!(n(vec![Filter::parse("author=ann").unwrap()]), 2);
    assert_eq!(n(vec![Filter::parse("author=bob").unwrap()]), 0);
    assert_eq!(d(vec![Filter::parse("year=2024").unwrap()]), 2);
    assert_eq!(
        d(vec![
            Filter::parse("year=2024").unwrap(),
            Filter::parse("source=notes/*").unwrap()
        ]),
        1
    );
}

#[test]
fn hnsw_recall_against_exact_search() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path(), true).unwrap();
    let dim = 64;
    s.check_embedding_model("random", dim).unwrap();
    let mut rng = Rng(0x1234_5678_9abc);
    let n = 5000;
    let vecs: Vec<Vec<f32>> = (0..n).map(|_| rng.unit(dim)).collect();
    let texts: Vec<String> = (0..n).map(|i| format!("chunk {i}")).collect();
    for (b, batch) in vecs.chunks(500).enumerate() {
        let t: Vec<&str> = texts[b * 500..b * 500 + batch.len()]
            .iter()
            .map(String::as_str)
            .collect();
        put(&s, &format!("f{b}.txt"), "h", &t, batch.to_vec());
    }
    s.flush().unwrap();
    let mut hits = 0;
    let queries = 100;
    for _ in 0..queries {
        let q = rng.unit(dim);
        let ann: std::collections::HashSet<i64> = s
            .dense(&q, 10, &[])
            .unwrap()
            .into_iter()
            .map(|h| h.0)
            .collect();
        let mut exact: Vec<(usize, f32)> = vecs
            .iter()
            .enumerate()
            .map(|(i, v)| (i, v.iter().zip(&q).map(|(a, b)| a * b).sum()))
            .collect();
        exact.sort_by(|a, b| b.1.total_cmp(&a.1));
        let ann_texts: std::collections::HashSet<String> = s
            .chunks(&ann.iter().copied().collect::<Vec<_>>())
            .unwrap()
            .into_iter()
            .map(|c| c.text)
            .collect();
        hits += exact[..10]
            .iter()
            .filter(|(i, _)| ann_texts.contains(&texts[*i]))
            .count();
    }
    let recall = hits as f64 / (queries * 10) as f64;
    assert!(recall >= 0.95, "recall@10 {recall}");
}
