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

fn texts_of(s: &dyn Store, hits: &[(i64, f32)]) -> Vec<String> {
    s.chunks(&hits.iter().map(|h| h.0).collect::<Vec<_>>())
        .unwrap()
        .into_iter()
        .map(|c| c.text)
        .collect()
}

#[test]
fn a_handle_sees_commits_of_other_handles() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    put(
        &b,
        "a.txt",
        "h",
        &["alpha", "alpha two"],
        vec![axis(0), axis(3)],
    );
    b.flush().unwrap();

    // A: a reader, as `lorag search` or a server opens it; it loads the saved index.
    let a = SqliteStore::open_read(dir.path()).unwrap();
    assert_eq!(texts_of(&a, &a.dense(&axis(0), 1, &[]).unwrap()), ["alpha"]);
    let g0 = a.generation().unwrap();

    // B, another handle with its own connection (as another process), adds a source.
    put(&b, "b.txt", "h", &["beta"], vec![axis(1)]);
    assert_eq!(a.generation().unwrap(), g0 + 1);
    let hit = a.dense(&axis(1), 1, &[]).unwrap();
    assert_eq!(texts_of(&a, &hit), ["beta"]);
    assert!((hit[0].1 - 1.0).abs() < 1e-4);

    // ... removes one: its chunks leave A's dense results (not only the chunks read back).
    assert!(b.remove_source("a.txt").unwrap());
    let hits = a.dense(&axis(0), 10, &[]).unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(texts_of(&a, &hits), ["beta"]);

    // ... and replaces one: A follows again, and so does another writer's handle.
    let c = open(dir.path());
    assert_eq!(c.dense(&axis(1), 1, &[]).unwrap().len(), 1);
    put(&b, "b.txt", "h2", &["gamma"], vec![axis(2)]);
    for s in [&a as &dyn Store, &c] {
        let hits = s.dense(&axis(2), 10, &[]).unwrap();
        assert_eq!(texts_of(s, &hits), ["gamma"]);
        assert_eq!(s.stats().unwrap().index_state, "fresh");
    }

    // The document list, for any handle.
    let docs = a.documents().unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(
        (
            docs[0].source.as_str(),
            docs[0].kind.as_str(),
            docs[0].chunks,
            docs[0].size
        ),
        ("b.txt", "txt", 1, 1)
    );
    assert!(docs[0].ingested_at > 1_600_000_000);
    assert_eq!(c.documents().unwrap(), docs);
}

/// Name → (size, modification time, bytes) of the KB's files, SQLite's `-wal` and `-shm` aside.
fn snapshot(
    dir: &Path,
) -> std::collections::BTreeMap<String, (u64, std::time::SystemTime, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            !n.ends_with("-wal") && !n.ends_with("-shm")
        })
        .map(|e| {
            let m = e.metadata().unwrap();
            (
                e.file_name().to_string_lossy().to_string(),
                (
                    m.len(),
                    m.modified().unwrap(),
                    std::fs::read(e.path()).unwrap(),
                ),
            )
        })
        .collect()
}

#[test]
fn a_read_handle_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    let w = open(dir.path());
    put(&w, "a.txt", "h", &["one", "two"], vec![axis(0), axis(1)]);
    w.flush().unwrap();
    // Committed after the last save: the saved index is stale, a search must rebuild it.
    put(&w, "b.txt", "h", &["three"], vec![axis(2)]);
    drop(w);
    let before = snapshot(dir.path());
    assert_eq!(
        before.keys().map(String::as_str).collect::<Vec<_>>(),
        ["index.json", "index.usearch", "kb.sqlite"]
    );
    std::thread::sleep(std::time::Duration::from_millis(20));

    let r = SqliteStore::open_read(dir.path()).unwrap();
    assert!(r.is_read_only());
    r.check_embedding_model("test-model", 8).unwrap();
    assert!(r.check_embedding_model("other-model", 8).is_err());
    assert_eq!(r.stats().unwrap().index_state, "stale");
    for i in 0..50 {
        let hit = r.dense(&axis(i % 3), 1, &[]).unwrap();
        assert_eq!(r.chunks(&[hit[0].0]).unwrap().len(), 1);
        assert_eq!(r.vectors(&[hit[0].0]).unwrap()[0].1, axis(i % 3));
        r.lexical("three", 5, &[]).unwrap();
        r.dense(&axis(0), 2, &[Filter::parse("source=a.txt").unwrap()])
            .unwrap();
        r.stats().unwrap();
        r.documents().unwrap();
        r.flush().unwrap();
    }
    // In memory the index is current; on disk nothing moved.
    assert_eq!(r.stats().unwrap().index_state, "fresh");
    let rec = SourceRecord {
        source: "c.txt".into(),
        kind: "txt".into(),
        hash: "h".into(),
        mtime: 0,
        size: 1,
    };
    let e = r.put_source(&rec, &[]).unwrap_err().to_string();
    assert!(e.contains("read"), "{e}");
    assert!(r.remove_source("a.txt").is_err());
    drop(r);
    assert!(
        snapshot(dir.path()) == before,
        "a read handle changed the KB's files"
    );
    assert_eq!(
        SqliteStore::open_read(dir.path())
            .unwrap()
            .stats()
            .unwrap()
            .index_state,
        "stale"
    );

    // A reader leaves an empty KB without a model.
    let empty = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(empty.path(), true).unwrap());
    let r = SqliteStore::open_read(empty.path()).unwrap();
    r.check_embedding_model("test-model", 8).unwrap();
    assert_eq!(r.embedding_model().unwrap(), None);
    assert!(r.dense(&axis(0), 3, &[]).unwrap().is_empty());
    let missing = SqliteStore::open_read(&dir.path().join("nothing"))
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
    let e = SqliteStore::open_read(notdb.path())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("kb.sqlite"), "{e}");
}

#[test]
fn one_handle_serves_concurrent_searches_and_writes() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(dir.path()));
    let mut rng = Rng(0x5eed);
    let mut vecs = |n: usize| (0..n).map(|_| rng.unit(8)).collect::<Vec<_>>();
    let base = 20;
    for i in 0..base {
        put(
            &s,
            &format!("base{i}.txt"),
            "h",
            &["base chunk", "base chunk two"],
            vecs(2),
        );
    }
    s.flush().unwrap();
    let store: Arc<dyn Store> = s.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let searchers: Vec<_> = (0..4u64)
        .map(|t| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(0x1000 + t);
                let mut searches = 0;
                while !stop.load(Ordering::Relaxed) || searches < 20 {
                    let q = rng.unit(8);
                    let hits = store.dense(&q, 5, &[]).unwrap();
                    let ids: Vec<i64> = hits.iter().map(|h| h.0).collect();
                    assert!(store.chunks(&ids).unwrap().len() <= ids.len());
                    store.vectors(&ids).unwrap();
                    store.lexical("chunk", 5, &[]).unwrap();
                    store
                        .dense(&q, 5, &[Filter::parse("source=w*").unwrap()])
                        .unwrap();
                    searches += 1;
                }
                searches
            })
        })
        .collect();
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        let v = vecs(3 * 40);
        std::thread::spawn(move || {
            for r in 0..40 {
                let rec = SourceRecord {
                    source: format!("w{r}.txt"),
                    kind: "txt".into(),
                    hash: "h".into(),
                    mtime: 0,
                    size: 1,
                };
                let d = doc(&rec.source, "txt", "written chunk");
                let chunks: Vec<Chunk> = (0..3).map(|i| chunk("written chunk", i)).collect();
                let n = store
                    .put_source(
                        &rec,
                        &[DocumentChunks {
                            document: &d,
                            chunks: &chunks,
                            vectors: &v[r * 3..r * 3 + 3],
                        }],
                    )
                    .unwrap();
                assert_eq!(n, 3);
                if r % 2 == 0 {
                    assert!(store.remove_source(&format!("base{}.txt", r / 2)).unwrap());
                }
                if r % 10 == 9 {
                    store.flush().unwrap();
                }
            }
            stop.store(true, Ordering::Relaxed);
        })
    };
    writer.join().unwrap();
    let searches: usize = searchers.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(searches >= 80);

    // 20 base sources, all removed; 40 written ones of 3 chunks.
    let st = s.stats().unwrap();
    assert_eq!((st.sources, st.documents, st.chunks), (40, 40, 120));
    let docs = s.documents().unwrap();
    assert_eq!(docs.iter().map(|d| d.chunks).sum::<u64>(), 120);
    assert!(docs.iter().all(|d| d.source.starts_with('w')));
    // The in-memory index holds exactly the chunks there are: no removed id comes back.
    let hits = s.dense(&axis(0), 500, &[]).unwrap();
    assert!(hits.len() <= 120);
    assert_eq!(
        s.chunks(&hits.iter().map(|h| h.0).collect::<Vec<_>>())
            .unwrap()
            .len(),
        hits.len()
    );
    s.flush().unwrap();
    assert_eq!(st.index_state, "fresh");
    let again = SqliteStore::open_read(dir.path()).unwrap();
    assert_eq!(again.stats().unwrap().index_state, "fresh");
    assert_eq!(again.generation().unwrap(), s.generation().unwrap());
}

#[test]
fn chunks_and_vectors_by_batches_keep_the_order_asked() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let n = 1234;
    let texts: Vec<String> = (0..n).map(|i| format!("chunk {i}")).collect();
    let t: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut rng = Rng(7);
    let v: Vec<Vec<f32>> = (0..n).map(|_| rng.unit(8)).collect();
    put(&s, "big.txt", "h", &t, v.clone());
    // A new KB numbers chunks from 1, in the order put.
    let start = 1;
    assert_eq!(s.chunks(&[start]).unwrap()[0].text, "chunk 0");
    // Reversed, with missing ids between, and one id twice.
    let mut ask: Vec<i64> = (start..start + n as i64).rev().collect();
    ask.insert(700, -5);
    ask.insert(3, 999_999);
    ask.push(start);
    let got = s.chunks(&ask).unwrap();
    assert_eq!(got.len(), n + 1);
    let want: Vec<i64> = ask
        .iter()
        .copied()
        .filter(|&id| id >= start && id < start + n as i64)
        .collect();
    assert_eq!(got.iter().map(|c| c.id).collect::<Vec<_>>(), want);
    assert_eq!(got[0].text, format!("chunk {}", n - 1));
    let vs = s.vectors(&ask).unwrap();
    assert_eq!(vs.iter().map(|x| x.0).collect::<Vec<_>>(), want);
    assert_eq!(vs[0].1, v[n - 1]);
    assert!(s.chunks(&[]).unwrap().is_empty());
}
