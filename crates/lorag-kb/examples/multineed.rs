//! Multi-need retrieval benchmark (issue 17): long, situational requests that combine two or three
//! SQuAD-format questions from different articles, every one of their paragraphs required.
//!
//! ```text
//! cargo run --release -p lorag-kb --example multineed -- \
//!     --kb KB_DIR --squad new_wiki_v1.0.json [--n 300] [--singles 300] [--seed 17] \
//!     [--variants baseline,doc1,split-rrf,...] [--long-kb DIR] [--build] [--show 2]
//! ```
//!
//! The KB holds one document per paragraph, its source file named `pNNNN.txt` (NNNN = the
//! paragraph's position in the file, as `bench/squad_data.py` numbers them). With `--long-kb` the
//! same requests also run against a KB of long documents: every `GROUP` consecutive paragraphs of an
//! article in one file (`aAAA_gGGG.txt`), chunked by the default chunker; a request then needs the
//! long documents that hold its paragraphs. `--build` writes and ingests a missing KB first
//! (`--kb` must then end in `/kb`; the paragraphs are written beside it).
//!
//! Metrics, for k in {5, 10}, over the documents of the k hits `lorag_kb::search` returns: all@k,
//! the share of requests whose required documents are all there; found@k, the mean share of a
//! request's required documents that are there. And single@5: recall@5 of plain single questions
//! (a seeded sample), so that nothing regresses for ordinary questions.

use lorag_embed::{BertEmbedder, EmbedOptions, Embedder};
use lorag_kb::{Mode, NeedFusion, SearchOptions, Store};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

const GROUP: usize = 6;

/// Paragraph id → the id of the document that holds it in a KB.
type DocMap = Box<dyn Fn(usize) -> usize>;

struct Para {
    article: usize,
    context: String,
}

struct Question {
    text: String,
    pid: usize,
}

/// splitmix64: a seeded generator that needs no crate and gives the same requests everywhere.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.below(v.len())]
    }
}

fn load(path: &Path) -> (Vec<Para>, Vec<Question>) {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read the SQuAD file"))
            .expect("SQuAD JSON");
    let (mut paras, mut qs) = (Vec::new(), Vec::new());
    for (a, art) in v["data"].as_array().expect("data").iter().enumerate() {
        for p in art["paragraphs"].as_array().expect("paragraphs") {
            let pid = paras.len();
            paras.push(Para {
                article: a,
                context: p["context"].as_str().unwrap_or("").to_string(),
            });
            for qa in p["qas"].as_array().expect("qas") {
                let text = qa["question"].as_str().unwrap_or("").trim().to_string();
                if text.split_whitespace().count() >= 3 {
                    qs.push(Question { text, pid });
                }
            }
        }
    }
    (paras, qs)
}

const OPENERS: &[&str] = &[
    "I'm writing a report and have a few things I can't figure out.",
    "My daughter has a school project due on Monday and we got stuck on a couple of points.",
    "Hi, I'm preparing a quiz night for my book club and need to check some facts before I print the sheets.",
    "I've been reading about several unrelated topics this week and some questions keep bugging me.",
    "Hello, I work at a small library and a visitor left me a list of questions I could not answer at the desk.",
    "I'm putting together notes for a presentation at work, and my colleague asked me to double-check a few details.",
];
const MIDDLES: &[&str] = &[
    "I looked online but the pages I found disagree with each other.",
    "I'd rather not guess, since the report goes to my manager.",
    "",
    "",
];
const CLOSERS: &[&str] = &[
    "Thanks in advance for any help.",
    "Any pointers would be really appreciated!",
    "Sorry for the long message, and thank you.",
    "",
];
const LEADS: [&[&str]; 3] = [
    &["First, ", "To start with, ", "The first thing: ", ""],
    &["Also, ", "Second, ", "Another thing: ", "And "],
    &["Finally, ", "And lastly, ", "One more thing: ", "Last, "],
];

/// A question as a customer writes it inside a longer message: first letter lowered after a
/// connective, and ended with '?' only when the question had one (SQuAD's often do not).
fn phrase(lead: &str, q: &str) -> String {
    let q = q.trim();
    let q = if lead.is_empty() || lead.ends_with(": ") {
        q.to_string()
    } else {
        let mut c = q.chars();
        match c.next() {
            Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
            None => String::new(),
        }
    };
    let end = if q.ends_with(['?', '.', '!']) {
        ""
    } else {
        "."
    };
    format!("{lead}{q}{end}")
}

struct Request {
    text: String,
    pids: Vec<usize>,
}

fn requests(paras: &[Para], qs: &[Question], n: usize, seed: u64) -> Vec<Request> {
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let m = 2 + rng.below(2);
        let mut chosen: Vec<&Question> = Vec::new();
        let mut tries = 0;
        while chosen.len() < m && tries < 1000 {
            tries += 1;
            let q = &qs[rng.below(qs.len())];
            if chosen
                .iter()
                .all(|c| paras[c.pid].article != paras[q.pid].article)
            {
                chosen.push(q);
            }
        }
        let mut parts = vec![rng.pick(OPENERS).to_string()];
        let mid = rng.pick(MIDDLES);
        if !mid.is_empty() {
            parts.push(mid.to_string());
        }
        for (i, q) in chosen.iter().enumerate() {
            let slot = if i == 0 {
                0
            } else if i + 1 == chosen.len() {
                2
            } else {
                1
            };
            parts.push(phrase(rng.pick(LEADS[slot]), &q.text));
        }
        let close = rng.pick(CLOSERS);
        if !close.is_empty() {
            parts.push(close.to_string());
        }
        out.push(Request {
            text: parts.join(" "),
            pids: chosen.iter().map(|q| q.pid).collect(),
        });
    }
    out
}

/// The document a source file stands for: `pNNNN.txt` is paragraph NNNN, `aAAA_gGGG.txt` a
/// long document (its id is returned as AAA * 10000 + GGG).
fn doc_of(source: &str) -> Option<usize> {
    let name = Path::new(source).file_stem()?.to_str()?;
    if let Some(n) = name.strip_prefix('p') {
        return n.parse().ok();
    }
    let (a, g) = name.strip_prefix('a')?.split_once("_g")?;
    Some(a.parse::<usize>().ok()? * 10_000 + g.parse::<usize>().ok()?)
}

/// Paragraph → long document: every GROUP consecutive paragraphs of an article.
fn long_doc_map(paras: &[Para]) -> Vec<usize> {
    let mut map = Vec::with_capacity(paras.len());
    let mut i_in_art = 0;
    for (pid, p) in paras.iter().enumerate() {
        if pid > 0 && paras[pid - 1].article != p.article {
            i_in_art = 0;
        }
        map.push(p.article * 10_000 + i_in_art / GROUP);
        i_in_art += 1;
    }
    map
}

/// Write the documents (paragraphs, or long documents with `long`) under `dir` and ingest them
/// into `dir/kb`.
fn build(dir: &Path, paras: &[Para], emb: &dyn Embedder, long: bool) {
    let docs = dir.join(if long { "docs_long" } else { "docs_new_wiki" });
    std::fs::create_dir_all(&docs).expect("mkdir");
    let map: Vec<usize> = if long {
        long_doc_map(paras)
    } else {
        (0..paras.len()).collect()
    };
    let mut text: HashMap<usize, String> = HashMap::new();
    for (pid, p) in paras.iter().enumerate() {
        let t = text.entry(map[pid]).or_default();
        if !t.is_empty() {
            t.push_str("\n\n");
        }
        t.push_str(&p.context);
    }
    for (id, t) in &text {
        let f = if long {
            docs.join(format!("a{:03}_g{:03}.txt", id / 10_000, id % 10_000))
        } else {
            docs.join(format!("p{id:04}.txt"))
        };
        std::fs::write(f, t).expect("write");
    }
    let t0 = Instant::now();
    let r = lorag_kb::ingest(
        dir.join("kb"),
        &[docs.to_string_lossy().into_owned()],
        emb,
        &lorag_kb::IngestOptions::default(),
    )
    .expect("ingest");
    eprintln!(
        "built {}: {} documents, {} chunks, {:.0} s",
        dir.join("kb").display(),
        text.len(),
        r.chunks,
        t0.elapsed().as_secs_f64()
    );
}

#[derive(Clone)]
struct Variant {
    name: &'static str,
    opts: SearchOptions,
}

fn variants() -> Vec<Variant> {
    let base = SearchOptions {
        max_per_source: 0,
        split_needs: false,
        ..SearchOptions::default()
    };
    let v = |name, f: &dyn Fn(&mut SearchOptions)| {
        let mut opts = base.clone();
        f(&mut opts);
        Variant { name, opts }
    };
    vec![
        v("baseline", &|_| {}),
        v("dense", &|o| o.mode = Mode::Dense),
        v("bm25", &|o| o.mode = Mode::Bm25),
        v("doc1", &|o| o.max_per_source = 1),
        v("doc2", &|o| o.max_per_source = 2),
        v("split-rrf", &|o| {
            o.split_needs = true;
            o.need_fusion = NeedFusion::Rrf
        }),
        v("split-rr", &|o| {
            o.split_needs = true;
            o.need_fusion = NeedFusion::RoundRobin
        }),
        v("split-rrf+doc1", &|o| {
            o.split_needs = true;
            o.need_fusion = NeedFusion::Rrf;
            o.max_per_source = 1
        }),
        v("split-rr+doc1", &|o| {
            o.split_needs = true;
            o.need_fusion = NeedFusion::RoundRobin;
            o.max_per_source = 1
        }),
        v("default", &|o| *o = SearchOptions::default()),
    ]
}

#[derive(Default)]
struct Score {
    all: [f64; 2],
    found: [f64; 2],
    n: usize,
    ms: f64,
}

/// Documents of the k hits, in rank order.
fn docs_in(
    store: &dyn Store,
    emb: &dyn Embedder,
    q: &str,
    opts: &SearchOptions,
    k: usize,
) -> Vec<usize> {
    let o = SearchOptions { k, ..opts.clone() };
    lorag_kb::search(store, emb, q, &o)
        .expect("search")
        .iter()
        .filter_map(|h| doc_of(&h.chunk.source))
        .collect()
}

fn run_requests(
    store: &dyn Store,
    emb: &dyn Embedder,
    reqs: &[Request],
    map: &dyn Fn(usize) -> usize,
    opts: &SearchOptions,
) -> Score {
    let mut s = Score::default();
    let t0 = Instant::now();
    for r in reqs {
        let need: HashSet<usize> = r.pids.iter().map(|&p| map(p)).collect();
        // One search at k = 10: its first 5 hits are the k = 5 search's (the candidate pool is
        // 50 for both, and the hits are taken from it in order).
        let docs = docs_in(store, emb, &r.text, opts, 10);
        for (i, k) in [5usize, 10].into_iter().enumerate() {
            let got: HashSet<usize> = docs.iter().take(k).copied().collect();
            let hit = need.iter().filter(|d| got.contains(d)).count();
            s.all[i] += (hit == need.len()) as u8 as f64;
            s.found[i] += hit as f64 / need.len() as f64;
        }
        s.n += 1;
    }
    s.ms = t0.elapsed().as_secs_f64() * 1000.0 / reqs.len().max(1) as f64;
    s
}

fn run_singles(
    store: &dyn Store,
    emb: &dyn Embedder,
    qs: &[&Question],
    map: &dyn Fn(usize) -> usize,
    opts: &SearchOptions,
) -> f64 {
    let hits = qs
        .iter()
        .filter(|q| docs_in(store, emb, &q.text, opts, 5).contains(&map(q.pid)))
        .count();
    hits as f64 / qs.len().max(1) as f64
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let flag = |name: &str| args.iter().any(|a| a == name);
    let kb = PathBuf::from(arg("--kb").expect("--kb DIR"));
    let squad = PathBuf::from(arg("--squad").expect("--squad FILE"));
    let n: usize = arg("--n").map_or(300, |s| s.parse().expect("--n"));
    let n_single: usize = arg("--singles").map_or(300, |s| s.parse().expect("--singles"));
    let seed: u64 = arg("--seed").map_or(17, |s| s.parse().expect("--seed"));
    let show: usize = arg("--show").map_or(2, |s| s.parse().expect("--show"));
    let wanted: Option<Vec<String>> =
        arg("--variants").map(|s| s.split(',').map(str::to_string).collect());
    let model = arg("--model").map_or_else(
        || lorag_models::test_model("all-minilm-l6-v2"),
        PathBuf::from,
    );

    let emb = BertEmbedder::load(&model, &EmbedOptions::default()).expect("load the embedder");
    let (paras, qs) = load(&squad);
    let reqs = requests(&paras, &qs, n, seed);
    let mut rng = Rng(seed ^ 0x5151);
    let singles: Vec<&Question> = (0..n_single).map(|_| &qs[rng.below(qs.len())]).collect();
    let two = reqs.iter().filter(|r| r.pids.len() == 2).count();
    println!(
        "{} paragraphs, {} questions; {} requests ({} with 2 needs, {} with 3), seed {seed}; {} single questions",
        paras.len(),
        qs.len(),
        reqs.len(),
        two,
        reqs.len() - two,
        singles.len()
    );
    for r in reqs.iter().take(show) {
        println!("  e.g. {:?} -> paragraphs {:?}", r.text, r.pids);
    }

    let mut kbs: Vec<(String, std::sync::Arc<dyn lorag_kb::Store>, DocMap)> = Vec::new();
    if !kb.exists() && flag("--build") {
        let parent = kb.parent().expect("--kb has a parent");
        assert!(
            kb.ends_with("kb"),
            "--build writes DIR/kb: give --kb DIR/kb"
        );
        build(parent, &paras, &emb, false);
    }
    let store = lorag_kb::open_for_search(&kb, &emb).expect("open the KB");
    kbs.push(("paragraphs".into(), store, Box::new(|p| p)));
    if let Some(long) = arg("--long-kb") {
        let long = PathBuf::from(long);
        if flag("--build") && !long.join("kb").exists() {
            build(&long, &paras, &emb, true);
        }
        let store = lorag_kb::open_for_search(long.join("kb"), &emb).expect("open the long KB");
        let map = long_doc_map(&paras);
        kbs.push((
            format!("long documents ({GROUP} paragraphs each)"),
            store,
            Box::new(move |p| map[p]),
        ));
    }

    for (name, store, map) in &kbs {
        let st = store.stats().ok();
        println!(
            "\n## KB: {name}{}",
            st.map(|s| format!(" ({} documents, {} chunks)", s.sources, s.chunks))
                .unwrap_or_default()
        );
        println!(
            "| variant | all@5 | all@10 | found@5 | found@10 | single@5 | ms/search |\n|---|---|---|---|---|---|---|"
        );
        for v in variants() {
            if wanted
                .as_ref()
                .is_some_and(|w| !w.iter().any(|x| x == v.name))
            {
                continue;
            }
            let s = run_requests(store, &emb, &reqs, map.as_ref(), &v.opts);
            let single = run_singles(store, &emb, &singles, map.as_ref(), &v.opts);
            let f = |x: f64| format!("{:.3}", x / s.n as f64);
            println!(
                "| {} | {} | {} | {} | {} | {:.3} | {:.0} |",
                v.name,
                f(s.all[0]),
                f(s.all[1]),
                f(s.found[0]),
                f(s.found[1]),
                single,
                s.ms
            );
        }
    }
}
