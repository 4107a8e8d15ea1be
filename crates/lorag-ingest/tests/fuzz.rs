//! Seeded mutation fuzzing of every loader (txt, md, html, csv, json, jsonl, pdf, docx, sqlite).
//!
//! Each case takes a small real file, applies 1-4 random mutations (bit flips, interesting bytes
//! and numbers, format tokens, deletions, duplications, long repeats, truncation), loads it on a
//! thread of its own (2 MiB stack, as a worker thread has) and requires: no panic (the thread
//! ends), no hang (it ends within `LORAG_FUZZ_TIMEOUT_S`, default 20 s), memory bounded (the peak
//! of bytes the case allocates stays under 64 MiB + 64 x the input), and, when it loads, chunks
//! that keep every chunk invariant. An `Err` is fine: it must name the file.
//!
//! The suite runs a bounded number of cases per loader; `bench/fuzz.sh` runs many more
//! (`LORAG_FUZZ_CASES` per loader, `LORAG_FUZZ_SEED`). A failing case is kept in
//! `LORAG_FUZZ_OUT` (default: a `lorag-fuzz` folder in the temporary directory) and named in
//! the failure with its seed and number, so `LORAG_FUZZ_SEED=S LORAG_FUZZ_ONLY=N` replays it.
//! The harness (allocator, mutator, case runner) is shared: `crates/lorag-fuzz`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{candidate, para, run, write_docx, write_pdf};
use lorag_core::WordCounter;
use lorag_fuzz::{cases, env_u64, run_on_thread, Outcome, Prepared, Rng, Stats, Target};
use lorag_ingest::{load, Candidate, ChunkOptions};

#[global_allocator]
static ALLOC: lorag_fuzz::Counting = lorag_fuzz::Counting;

/// The most bytes loading an input of `len` bytes may hold at once.
fn bound(len: u64) -> u64 {
    (64 << 20) + 64 * len
}

/// Loads `c`, chunking what loads with every chunk invariant checked; an error must name the
/// file. `Err(message)` when the file is refused.
fn load_checked(c: Candidate) -> Result<(), String> {
    match load(&c) {
        Ok(loaded) => {
            let opts = ChunkOptions {
                max_tokens: 48,
                overlap: 8,
            };
            for doc in &loaded.documents {
                common::chunk_checked(doc, &WordCounter, &opts);
            }
            Ok(())
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("{}: ", c.source)),
                "an error that does not name the file: {msg}"
            );
            Err(msg)
        }
    }
}

/// Fuzzes `kind` from `seeds`: each case writes one mutated file (via `write`, which returns the
/// candidate to load) and loads it on its own thread under the time, panic and memory checks
/// (`lorag_fuzz::fuzz`).
fn fuzz(
    kind: &str,
    n: u64,
    seeds: &[Vec<u8>],
    tokens: &[&[u8]],
    write: impl Fn(&Path, &[u8], &mut Rng) -> Candidate,
) -> Stats {
    let target = Target {
        kind,
        cases: n,
        seeds,
        tokens,
        bound,
        error_kind,
    };
    lorag_fuzz::fuzz(&target, |dir, bytes, rng| {
        let cand = write(dir, bytes, rng);
        Prepared {
            file: cand.path.clone(),
            name: cand.source.clone(),
            run: Box::new(move || load_checked(cand)),
        }
    })
}

/// An error message (after its source) reduced to its kind: a caught PDF extractor panic by its
/// message, anything else by its first words without numbers.
fn error_kind(rest: &str) -> String {
    let rest = rest.trim_start_matches(": ");
    if let Some(at) = rest.find("the PDF extractor failed (") {
        let panic = &rest[at + "the PDF extractor failed (".len()..];
        let panic = panic
            .split("); the file is corrupt")
            .next()
            .unwrap_or(panic);
        let short: String = panic.chars().take(90).collect();
        return format!("caught panic: {short}");
    }
    lorag_fuzz::error_kind(rest)
}

/// Writes the bytes as `case.EXT` and returns its candidate.
fn file_writer(
    ext: &'static str,
    kind: &'static str,
) -> impl Fn(&Path, &[u8], &mut Rng) -> Candidate {
    move |dir, bytes, _| {
        let path = dir.join(format!("case.{ext}"));
        std::fs::write(&path, bytes).expect("write case");
        candidate(&path, kind)
    }
}

fn faq_text_head() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let txt = common::gunzip_into(&common::faq_dir().join("debian-faq.en.txt.gz"), dir.path());
    let mut bytes = std::fs::read(txt).expect("read faq");
    bytes.truncate(6000);
    bytes
}

fn utf16le(s: &str) -> Vec<u8> {
    let mut b = vec![0xff, 0xfe];
    b.extend(s.encode_utf16().flat_map(u16::to_le_bytes));
    b
}

// ---------- one test per loader ----------

#[test]
fn fuzz_txt() {
    let seeds = vec![
        faq_text_head(),
        b"Bygglov kostar 5 000 kr f\xf6r en altan.\r\nAns\xf6kan g\xf6rs hos kommunen.".to_vec(),
        utf16le("Bygglov kostar 5 000 kr för en altan.\nAnsökan görs hos kommunen."),
    ];
    fuzz(
        "txt",
        cases(250),
        &seeds,
        &[b"\r\n", b"\n\n", b"\xf6", b"\xe2\x80\x94", b" "],
        file_writer("txt", "txt"),
    );
}

#[test]
fn fuzz_markdown() {
    let arch = include_bytes!("../../../ARCHITECTURE.md");
    let seeds = vec![
        arch[..arch.len().min(5000)].to_vec(),
        b"---\ntitle: x\n---\n# Title\n\nSetext\n======\n\n## A *b* `c`\n\n> quote\n> > nested\n\n- a\n  - b\n    1. c\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```rust\n# not a heading\n```\n\n[link](http://x \"t\") ![img](y) <b>html</b> [^1]\n\n[^1]: note\n".to_vec(),
    ];
    let tokens: &[&[u8]] = &[
        b"#", b"## ", b"\n---\n", b"```", b"> ", b"- ", b"1. ", b"[", b"](", b"*", b"_", b"`",
        b"|", b"\n===\n", b"<div>", b"</div>", b"[^", b"\\", b"    ", b"&amp;", b"<!--",
    ];
    fuzz("md", cases(400), &seeds, tokens, file_writer("md", "md"));
}

#[test]
fn fuzz_html() {
    let faq = std::fs::read(common::faq_dir().join("basic-defs.en.html")).expect("faq html");
    let seeds = vec![
        faq,
        b"<!doctype html><html><head><meta charset=\"windows-1252\"><title>T \xe9</title></head><body><nav>menu</nav><main><h1>Head</h1><p>Text &amp; more<br>line</p><table><tr><td>a</td><td>b</td></tr></table><pre>  code\n  x</pre><ul><li>one<li>two</ul><h2>Sub <b>bold</b></h2><article>x</article></main><script>var a = '<p>';</script></body></html>".to_vec(),
    ];
    let tokens: &[&[u8]] = &[
        b"<div>",
        b"</div>",
        b"<p>",
        b"<h1>",
        b"</h1>",
        b"<h3>",
        b"<pre>",
        b"</pre>",
        b"<table>",
        b"<td>",
        b"<li>",
        b"<!--",
        b"-->",
        b"<script>",
        b"&#x",
        b"&#",
        b";",
        b"<",
        b">",
        b"\"",
        b"<main>",
        b"<article>",
        b"<br>",
        b"<meta charset=shift_jis>",
        b"<![CDATA[",
    ];
    fuzz(
        "html",
        cases(400),
        &seeds,
        tokens,
        file_writer("html", "html"),
    );
}

#[test]
fn fuzz_csv() {
    let seeds = vec![
        b"name,age,note\nAnn,42,\"a, quoted \"\"note\"\"\"\nBob,-1.5,\nC\xe9cile,007,x\n".to_vec(),
        b"a;b;c\n1;2;3\n4;5;6\n".to_vec(),
        b"\xef\xbb\xbfid\ttext\r\n1\tone\r\n2\ttwo\r\n".to_vec(),
    ];
    let tokens: &[&[u8]] = &[
        b",",
        b";",
        b"\t",
        b"\"",
        b"\"\"",
        b"\n",
        b"\r\n",
        b"row",
        b"encoding",
    ];
    fuzz("csv", cases(300), &seeds, tokens, file_writer("csv", "csv"));
}

#[test]
fn fuzz_json() {
    let seeds = vec![
        br#"[{"q": "Bygglov?", "a": "Ja, 5 000 kr.", "n": 1, "x": null, "tags": ["a", {"b": [1.5e3, true]}]}, {"row": 7, "q": "\u00e9\ud83d\ude00"}]"#.to_vec(),
        br#"{"only": "one object", "nested": {"a": {"b": {"c": []}}}}"#.to_vec(),
    ];
    let tokens: &[&[u8]] = &[
        b"[", b"]", b"{", b"}", b"\"", b":", b",", b"\\u", b"\\ud800", b"null", b"1e999", b"-0",
    ];
    fuzz(
        "json",
        cases(300),
        &seeds,
        tokens,
        file_writer("json", "json"),
    );
}

#[test]
fn fuzz_jsonl() {
    let seeds = vec![
        b"{\"q\": \"a\", \"n\": 1}\n\n{\"q\": \"b\", \"list\": [1, 2, {\"c\": null}]}\r\n{\"row\": 3}\n".to_vec(),
    ];
    let tokens: &[&[u8]] = &[
        b"[", b"]", b"{", b"}", b"\"", b":", b",", b"\n", b"\\", b"true",
    ];
    fuzz(
        "jsonl",
        cases(300),
        &seeds,
        tokens,
        file_writer("jsonl", "jsonl"),
    );
}

/// A small real PDF as written by lopdf (uncompressed), and the same compressed.
fn pdf_seeds() -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = write_pdf(
        &dir.path().join("a.pdf"),
        "Handbook",
        &[
            &["Annual leave is 25 days.", "Sick leave: tell your manager."],
            &["Expenses (receipts) \\ travel"],
        ],
    );
    let mut doc = lopdf::Document::load_mem(&plain).expect("reload");
    doc.compress();
    let mut compressed = Vec::new();
    doc.save_to(&mut compressed).expect("save");
    vec![plain, compressed]
}

#[test]
fn fuzz_pdf() {
    let tokens: &[&[u8]] = &[
        b"obj",
        b"endobj",
        b"stream\n",
        b"endstream",
        b"<<",
        b">>",
        b"/Length 999999999",
        b"/Count -1",
        b"/Kids [",
        b"]",
        b"R",
        b"xref",
        b"trailer",
        b"startxref",
        b"/Filter /FlateDecode",
        b"(",
        b")",
        b"Tj",
        b"TJ",
        b"Td",
        b"BT",
        b"ET",
        b"/Encrypt",
        b"%%EOF",
        b"0 0 R",
        b"/Parent 2 0 R",
    ];
    let stats = fuzz(
        "pdf",
        cases(400),
        &pdf_seeds(),
        tokens,
        file_writer("pdf", "pdf"),
    );
    assert!(
        stats.ok > 0,
        "no mutated PDF loaded: the fuzzing went nowhere"
    );
    // pdf-extract's panics are caught (an error, not a crash), but each is a check `check_page`
    // lacks: there were 670 in 40,000 cases before the content checks, none after.
    let caught: Vec<_> = stats
        .errors
        .iter()
        .filter(|(k, _)| k.starts_with("caught panic"))
        .collect();
    assert!(
        caught.is_empty(),
        "pdf-extract panicked (caught): {caught:?}"
    );
}

const DOCX_BODY_MARKER: &str = "@@BODY@@";

fn docx_xml_seed() -> String {
    [
        para(Some("Title"), &run("Handbook")),
        para(Some("Heading1"), &run("Leave")),
        para(None, &format!("{}{}", run("Annual leave is "), run("25 days."))),
        "<w:tbl><w:tr><w:tc><w:p><w:r><w:t>a</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>b</w:t></w:r></w:p></w:tc></w:tr></w:tbl>".to_string(),
        para(Some("Heading2"), &run("Sick &amp; more")),
        "<w:p><w:pPr><w:outlineLvl w:val=\"2\"/></w:pPr><w:r><w:tab/><w:t>x</w:t><w:br/><w:delText>gone</w:delText></w:r></w:p>".to_string(),
    ]
    .concat()
}

#[test]
fn fuzz_docx() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("seed.docx");
    let styles = r#"<w:style w:styleId="H"><w:name w:val="heading 3"/></w:style>"#;
    write_docx(&path, &docx_xml_seed(), Some(styles));
    let zip_seed = std::fs::read(&path).expect("read docx");
    // Half the cases mutate the zip's bytes; half mutate document.xml and zip it properly, so
    // that the XML reader and the text extraction see the mutations.
    let mut seeds = vec![zip_seed];
    seeds.push(format!("{DOCX_BODY_MARKER}{}", docx_xml_seed()).into_bytes());
    let tokens: &[&[u8]] = &[
        b"<w:p>",
        b"</w:p>",
        b"<w:t>",
        b"</w:t>",
        b"<w:tbl>",
        b"<w:tr>",
        b"<w:tc>",
        b"<w:sdt>",
        b"&amp;",
        b"&#x0;",
        b"<!DOCTYPE x [<!ENTITY a \"aaaaaaaa\">]>",
        b"&a;",
        b"<",
        b">",
        b"\"",
        b"PK\x03\x04",
        b"PK\x01\x02",
        b"PK\x05\x06",
    ];
    let write = |dir: &Path, bytes: &[u8], _: &mut Rng| {
        let path = dir.join("case.docx");
        match bytes.strip_prefix(DOCX_BODY_MARKER.as_bytes()) {
            Some(xml) => {
                let body = String::from_utf8_lossy(xml).into_owned();
                write_docx(&path, &body, None);
            }
            None => std::fs::write(&path, bytes).expect("write case"),
        }
        candidate(&path, "docx")
    };
    fuzz("docx", cases(400), &seeds, tokens, write);
}

#[test]
fn fuzz_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("seed.db");
    {
        let conn = rusqlite::Connection::open(&db).expect("create db");
        conn.execute_batch(
            "CREATE TABLE notes(id INTEGER PRIMARY KEY, title TEXT, body TEXT, score REAL, raw BLOB);
             CREATE INDEX notes_title ON notes(title);",
        )
        .expect("schema");
        for i in 0..40 {
            conn.execute(
                "INSERT INTO notes(title, body, score, raw) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![
                    format!("note {i}"),
                    format!("Bygglov kostar {i} 000 kr för en altan. ").repeat(i % 5 + 1),
                    i as f64 / 3.0,
                    vec![i as u8; 16]
                ],
            )
            .expect("insert");
        }
    }
    let seeds = vec![std::fs::read(&db).expect("read db")];
    let write = |dir: &Path, bytes: &[u8], _: &mut Rng| {
        let path = dir.join("case.db");
        std::fs::write(&path, bytes).expect("write case");
        Candidate {
            source: format!("sqlite:{}?table=notes", path.display()),
            path,
            kind: "sqlite".into(),
        }
    };
    fuzz(
        "sqlite",
        cases(300),
        &seeds,
        &[b"\x00\x00\x00\x00", b"\xff\xff"],
        write,
    );
}

/// The Debian FAQ as a real PDF (LaTeX output: compressed streams, Type 1 fonts, ~70 pages):
/// each case takes ~0.1-1 s, too slow for the suite. `bench/fuzz.sh` runs it
/// (`LORAG_FUZZ_FAQ_PDF_CASES`, default 100).
#[test]
#[ignore = "slow (a 70-page real PDF per case): run by bench/fuzz.sh"]
fn fuzz_debian_faq_pdf() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pdf = common::gunzip_into(&common::faq_dir().join("debian-faq.en.pdf.gz"), dir.path());
    let seeds = vec![std::fs::read(pdf).expect("read faq pdf")];
    let n = env_u64("LORAG_FUZZ_FAQ_PDF_CASES").unwrap_or(100);
    let tokens: &[&[u8]] = &[
        b"obj",
        b"endobj",
        b"stream",
        b"/Length 0",
        b"R",
        b"<<",
        b">>",
        b"[",
        b"]",
    ];
    let stats = fuzz("faq-pdf", n, &seeds, tokens, file_writer("pdf", "pdf"));
    assert!(stats.ok > 0, "no mutated FAQ PDF loaded");
}

/// Inputs that failed a fuzz run once (tests/fuzz-findings, named after the bug), replayed
/// under the same checks: each must now load or be refused cleanly.
#[test]
fn kept_fuzz_findings_stay_fixed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-findings");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/fuzz-findings")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 6, "{files:?}");
    for path in files {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .expect("ext")
            .to_string();
        let cand = if ext == "db" {
            Candidate {
                source: format!("sqlite:{}?table=notes", path.display()),
                path: path.clone(),
                kind: "sqlite".into(),
            }
        } else {
            candidate(&path, &ext)
        };
        let len = std::fs::metadata(&path).expect("meta").len();
        match run_on_thread(move || load_checked(cand), Duration::from_secs(60)) {
            Outcome::Done { value, peak } => {
                assert!(peak <= bound(len), "{}: held {peak} bytes", path.display());
                if let Err(msg) = value {
                    eprintln!("{}: refused: {msg}", path.display());
                }
            }
            Outcome::Panicked(why) => panic!("{}: panicked: {why}", path.display()),
            Outcome::Hung => panic!("{}: hung", path.display()),
        }
    }
}
