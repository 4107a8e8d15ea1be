//! The KB above the store seam, on both backends: ingestion and search through `lorag_kb::open`
//! on a folder and on PostgreSQL (`LORAG_TEST_PG`, provided by scripts/test.sh; without it
//! these tests fail), and `copy` between them without re-embedding.

use lorag_embed::{EmbedError, Embedder};
use lorag_kb::{Access, IngestOptions, Mode, SearchOptions, Store};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A deterministic bag-of-words embedder (hashed words, L2-normalised): enough to tell the
/// documents of these tests apart, with no model files. It counts the texts it embeds.
struct Words {
    embedded: AtomicUsize,
}

const DIM: usize = 256;

impl lorag_core::TokenCounter for Words {
    fn count_tokens(&self, text: &str) -> usize {
        text.split_whitespace().count()
    }
}

impl Embedder for Words {
    fn model_id(&self) -> &str {
        "test-words"
    }
    fn dim(&self) -> usize {
        DIM
    }
    fn max_tokens(&self) -> usize {
        512
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embedded.fetch_add(texts.len(), Ordering::Relaxed);
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = vec![0.0f32; DIM];
                for w in lorag_store_words(t) {
                    let h = w.bytes().fold(0xcbf29ce484222325u64, |h, b| {
                        (h ^ b as u64).wrapping_mul(0x100000001b3)
                    });
                    v[(h % DIM as u64) as usize] += 1.0;
                }
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
                v.into_iter().map(|x| x / n).collect()
            })
            .collect())
    }
}

fn lorag_store_words(t: &str) -> Vec<String> {
    t.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 2)
        .map(str::to_lowercase)
        .collect()
}

fn pg_base() -> String {
    match std::env::var("LORAG_TEST_PG") {
        Ok(u) if !u.trim().is_empty() => u.trim().to_string(),
        _ => panic!(
            "LORAG_TEST_PG is not set: the PostgreSQL tests need a real server (PostgreSQL with pgvector). \
             Run scripts/test.sh, or `scripts/pg.sh start && eval \"$(scripts/pg.sh env)\"` before cargo test"
        ),
    }
}

/// A schema of its own on the test server, dropped at the end.
struct PgKb {
    url: String,
    schema: String,
}

impl PgKb {
    fn new(tag: &str) -> Self {
        let base = pg_base();
        let schema = format!("kb_{tag}_{}", std::process::id());
        let sep = if base.contains('?') { '&' } else { '?' };
        Self {
            url: format!("{base}{sep}schema={schema}"),
            schema,
        }
    }
}

impl Drop for PgKb {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&pg_base(), postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        }
    }
}

const DOCS: &[(&str, &str)] = &[
    ("permits.md", "# Permits\n\nA building permit is issued by the municipal building committee within ten weeks.\n"),
    ("inspections.md", "# Inspections\n\nThe site inspector visits the construction site before the foundation is cast.\n"),
    ("timber.txt", "Timber frames are light and quick to raise; they need protection against moisture and fire.\n"),
    ("concrete.txt", "Concrete cures slowly; in cold weather the curing takes longer and needs heated blankets.\n"),
    ("glass.md", "# Glass\n\nGlass facades reflect light and heat; coated glazing keeps offices cool in summer.\n"),
];

const QUERIES: &[(&str, &str)] = &[
    ("who issues a building permit", "permits.md"),
    ("when does the site inspector visit", "inspections.md"),
    ("timber frames moisture", "timber.txt"),
    ("concrete curing cold weather", "concrete.txt"),
    ("glass facades summer", "glass.md"),
];

fn docs_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, text) in DOCS {
        std::fs::write(d.path().join(name), text).unwrap();
    }
    d
}

fn top_sources(store: &dyn Store, e: &Words, mode: Mode) -> Vec<String> {
    QUERIES
        .iter()
        .map(|(q, _)| {
            let hits = lorag_kb::search(
                store,
                e,
                q,
                &SearchOptions {
                    k: 3,
                    mode,
                    ..SearchOptions::default()
                },
            )
            .unwrap();
            std::path::Path::new(&hits[0].chunk.source)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[test]
fn ingest_and_search_agree_on_both_backends() {
    let e = Words {
        embedded: AtomicUsize::new(0),
    };
    let docs = docs_dir();
    let input = [docs.path().to_string_lossy().into_owned()];
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("kb").to_string_lossy().into_owned();
    let pg = PgKb::new("ingest");
    let want: Vec<String> = QUERIES.iter().map(|q| q.1.to_string()).collect();
    for kb in [&folder, &pg.url] {
        let r = lorag_kb::ingest(kb, &input, &e, &IngestOptions::default()).unwrap();
        assert_eq!((r.added, r.failed.len()), (5, 0), "{kb}");
        // Unchanged files are not embedded again.
        let before = e.embedded.load(Ordering::Relaxed);
        let r = lorag_kb::ingest(kb, &input, &e, &IngestOptions::default()).unwrap();
        assert_eq!((r.added, r.unchanged), (0, 5));
        assert_eq!(e.embedded.load(Ordering::Relaxed), before);
        let store = lorag_kb::open(kb, &e, Access::Read).unwrap();
        for mode in [Mode::Hybrid, Mode::Dense, Mode::Bm25] {
            assert_eq!(top_sources(&store, &e, mode), want, "{kb} {mode:?}");
        }
        let filtered = lorag_kb::search(
            &store,
            &e,
            "building permit",
            &SearchOptions {
                filters: vec![lorag_kb::Filter::parse("kind=txt").unwrap()],
                ..SearchOptions::default()
            },
        )
        .unwrap();
        assert!(filtered.iter().all(|h| h.chunk.kind == "txt"));
        let st = store.stats().unwrap();
        assert_eq!(
            (st.sources, st.embedding_model.as_deref()),
            (5, Some("test-words"))
        );
    }
    // A KB of another model is refused on both.
    struct Other(Words);
    impl lorag_core::TokenCounter for Other {
        fn count_tokens(&self, t: &str) -> usize {
            self.0.count_tokens(t)
        }
    }
    impl Embedder for Other {
        fn model_id(&self) -> &str {
            "other"
        }
        fn dim(&self) -> usize {
            DIM
        }
        fn max_tokens(&self) -> usize {
            512
        }
        fn embed(&self, t: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
            self.0.embed(t)
        }
    }
    let other = Other(Words {
        embedded: AtomicUsize::new(0),
    });
    for kb in [&folder, &pg.url] {
        let err = lorag_kb::open_for_search(kb, &other)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("test-words") && err.contains("other"), "{err}");
    }
}

#[test]
fn copy_between_backends_keeps_every_vector() {
    let e = Words {
        embedded: AtomicUsize::new(0),
    };
    let docs = docs_dir();
    let input = [docs.path().to_string_lossy().into_owned()];
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a").to_string_lossy().into_owned();
    let c = dir.path().join("c").to_string_lossy().into_owned();
    let pg = PgKb::new("copy");
    lorag_kb::ingest(&a, &input, &e, &IngestOptions::default()).unwrap();
    let embedded = e.embedded.load(Ordering::Relaxed);

    // Folder -> PostgreSQL -> folder.
    let from = lorag_kb::open_store(&a, Access::Read).unwrap();
    let to = lorag_kb::open_store(&pg.url, Access::Create).unwrap();
    let r = lorag_kb::copy(&from, &to, |_, _| {}).unwrap();
    assert_eq!((r.sources, r.copied, r.unchanged), (5, 5, 0));
    assert_eq!(r.verified_sources, 5);
    assert!(r.verified_vectors >= 5);
    // Again: nothing to do (an interrupted copy resumes).
    let r = lorag_kb::copy(&from, &to, |_, _| {}).unwrap();
    assert_eq!((r.copied, r.unchanged), (0, 5));
    let back = lorag_kb::open_store(&c, Access::Create).unwrap();
    lorag_kb::copy(&to, &back, |_, _| {}).unwrap();
    assert_eq!(
        e.embedded.load(Ordering::Relaxed),
        embedded,
        "nothing re-embedded"
    );

    let want: Vec<String> = QUERIES.iter().map(|q| q.1.to_string()).collect();
    for kb in [&pg.url, &c] {
        let s = lorag_kb::open(kb, &e, Access::Read).unwrap();
        assert_eq!(top_sources(&s, &e, Mode::Dense), want, "{kb}");
        assert_eq!(top_sources(&s, &e, Mode::Hybrid), want, "{kb}");
    }
    // Same dense scores everywhere: the vectors are the same, bit for bit.
    let q = &e.embed(&["concrete curing cold weather"]).unwrap()[0];
    let scores = |s: &dyn Store| -> Vec<f32> {
        s.dense(q, 5, &[])
            .unwrap()
            .into_iter()
            .map(|h| h.1)
            .collect()
    };
    let (x, y) = (scores(&from), scores(&to));
    assert_eq!(x.len(), y.len());
    for (u, v) in x.iter().zip(&y) {
        assert!((u - v).abs() < 1e-5, "{x:?} {y:?}");
    }

    // Into a KB that holds other documents: refused.
    let d2 = tempfile::tempdir().unwrap();
    std::fs::write(d2.path().join("other.txt"), "something else entirely\n").unwrap();
    let busy = dir.path().join("busy").to_string_lossy().into_owned();
    lorag_kb::ingest(
        &busy,
        &[d2.path().to_string_lossy().into_owned()],
        &e,
        &IngestOptions::default(),
    )
    .unwrap();
    let busy = lorag_kb::open_store(&busy, Access::Write).unwrap();
    let err = lorag_kb::copy(&from, &busy, |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty KB"), "{err}");
}
