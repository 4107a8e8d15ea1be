//! Limits with clear errors: a file over `MAX_FILE_BYTES` (a sparse file: no disk used), a DOCX
//! zip bomb, HTML, XML, JSON and Markdown nested 100,000 deep (on a 2 MiB worker stack), a PDF
//! of 10,000 pages, and file names that are not UTF-8.

mod common;

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{candidate, write_pdf, W_NS};
use lorag_ingest::{
    discover, fingerprint, load, Candidate, IngestError, LoadedSource, WalkOptions,
    MAX_DOCX_PART_BYTES, MAX_FILE_BYTES,
};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write");
    path
}

/// Loads on a thread with a 2 MiB stack (a worker's), failing the test past `limit`.
fn load_on_worker(c: &Candidate, limit: Duration) -> Result<LoadedSource, IngestError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let c2 = c.clone();
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let _ = tx.send(load(&c2));
        })
        .expect("spawn");
    rx.recv_timeout(limit)
        .unwrap_or_else(|e| panic!("{}: no result within {limit:?} ({e})", c.source))
}

#[test]
fn a_file_over_the_limit_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 1 GiB of holes: the size is real, the disk blocks are not.
    for (name, kind) in [
        ("huge.txt", "txt"),
        ("huge.csv", "csv"),
        ("huge.pdf", "pdf"),
        ("huge.docx", "docx"),
    ] {
        let path = dir.path().join(name);
        std::fs::File::create(&path)
            .and_then(|f| f.set_len(1 << 30))
            .expect("sparse file");
        let started = Instant::now();
        let err = load(&candidate(&path, kind)).expect_err(name);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{name}: read it?"
        );
        assert!(
            matches!(err, IngestError::TooLarge { size, limit, .. } if size == 1 << 30 && limit == MAX_FILE_BYTES),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "{}: the file is 1 GiB (1073741824 bytes), over the 256 MiB limit for one file; \
                 split it into smaller files",
                path.display()
            )
        );
    }
    // Just over the limit is refused; fingerprint (used to skip unchanged files) hashes any
    // size in pieces.
    let path = dir.path().join("over.txt");
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(MAX_FILE_BYTES + 1))
        .expect("sparse file");
    let c = candidate(&path, "txt");
    assert!(matches!(load(&c), Err(IngestError::TooLarge { .. })));
    let fp = fingerprint(&c).expect("fingerprint streams");
    assert_eq!(fp.size, MAX_FILE_BYTES + 1);
    assert_eq!(fp.hash.len(), 64);
}

#[test]
fn a_docx_zip_bomb_is_refused_while_it_inflates() {
    use zip::write::SimpleFileOptions;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bomb.docx");
    let file = std::fs::File::create(&path).expect("create");
    let mut zip = zip::ZipWriter::new(file);
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("word/document.xml", opts).expect("entry");
    zip.write_all(format!("<w:document xmlns:w=\"{W_NS}\"><w:body><w:p><w:r><w:t>").as_bytes())
        .expect("write");
    let spaces = vec![b' '; 1 << 20];
    for _ in 0..(MAX_DOCX_PART_BYTES >> 20) + 8 {
        zip.write_all(&spaces).expect("write");
    }
    zip.write_all(b"</w:t></w:r></w:p></w:body></w:document>")
        .expect("write");
    zip.finish().expect("finish");
    let size = std::fs::metadata(&path).expect("meta").len();
    assert!(size < 1 << 20, "the bomb is small on disk: {size}");
    let started = Instant::now();
    let err = load_on_worker(&candidate(&path, "docx"), Duration::from_secs(60)).expect_err("bomb");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: not a valid DOCX file: word/document.xml inflates to more than 64 MiB (the limit \
             for one part; a zip bomb?)",
            path.display()
        )
    );
    eprintln!("zip bomb refused in {:?}", started.elapsed());
}

/// `open` x n + `inner` + `close` x n.
fn nested(open: &str, inner: &str, close: &str, n: usize) -> Vec<u8> {
    let mut s = open.repeat(n);
    s.push_str(inner);
    s.push_str(&close.repeat(n));
    s.into_bytes()
}

#[test]
fn nesting_100000_deep_is_no_stack_overflow() {
    let dir = tempfile::tempdir().expect("tempdir");
    const DEEP: usize = 100_000;
    let limit = Duration::from_secs(120);
    // HTML: the parser's time grows with the square of the depth (100,000 nested divs took 58 s,
    // nested lists over 120 s): past 1024 levels the page is refused at once, with the limit.
    for (name, open, close) in [
        ("divs.html", "<div>", "</div>"),
        ("spans.html", "<span>", "</span>"),
        ("lists.html", "<ul><li>", "</li></ul>"),
    ] {
        let path = write(dir.path(), name, &nested(open, "deep text", close, DEEP));
        let started = Instant::now();
        let err = load_on_worker(&candidate(&path, "html"), limit).expect_err(name);
        assert_eq!(
            err.to_string(),
            format!(
                "{}: not a valid HTML file: elements are nested more than 1024 deep (the limit; \
                 browsers stop at 512)",
                path.display()
            )
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name}: {:?}",
            started.elapsed()
        );
        // 1000 deep is read, quickly.
        let path = write(dir.path(), name, &nested(open, "deep text", close, 1000));
        let started = Instant::now();
        let loaded = load_on_worker(&candidate(&path, "html"), limit).expect(name);
        assert!(loaded.documents[0].text.contains("deep text"), "{name}");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "{name}: {took:?}");
        eprintln!("{name}: 1000 deep in {took:?}");
    }
    // JSON and JSONL: serde_json's depth limit makes it a clear error.
    for (name, kind, open, close) in [
        ("arrays.json", "json", "[", "]"),
        ("objects.json", "json", "{\"a\":", "}"),
        ("deep.jsonl", "jsonl", "{\"a\":", "}"),
    ] {
        let path = write(dir.path(), name, &nested(open, "1", close, DEEP));
        let err = load_on_worker(&candidate(&path, kind), limit).expect_err(name);
        assert!(
            err.to_string().contains("recursion limit exceeded"),
            "{name}: {err}"
        );
    }
    // DOCX: document.xml nested 100,000 deep.
    let body = String::from_utf8(nested(
        "<w:p><w:r>",
        "<w:t>deep</w:t>",
        "</w:r></w:p>",
        DEEP,
    ))
    .expect("utf8");
    let path = dir.path().join("deep.docx");
    common::write_docx(&path, &body, None);
    let started = Instant::now();
    match load_on_worker(&candidate(&path, "docx"), limit) {
        Ok(loaded) => assert!(loaded.documents[0].text.contains("deep")),
        Err(e) => assert!(
            e.to_string().starts_with(&path.display().to_string()),
            "{e}"
        ),
    }
    eprintln!("deep.docx: {:?}", started.elapsed());
    // Markdown: block quotes, lists and brackets.
    for (name, bytes) in [
        (
            "quotes.md",
            format!("{} deep text\n", ">".repeat(DEEP)).into_bytes(),
        ),
        (
            "lists.md",
            (0..2000)
                .map(|i| format!("{}- item {i}\n", "  ".repeat(i)))
                .collect::<String>()
                .into_bytes(),
        ),
        ("brackets.md", nested("[", "deep text", "](x)", DEEP)),
        ("emphasis.md", nested("*", "deep text", "*", DEEP)),
    ] {
        let path = write(dir.path(), name, &bytes);
        let started = Instant::now();
        eprintln!("{name}...");
        let loaded = load_on_worker(&candidate(&path, "md"), limit).expect(name);
        assert!(
            loaded.documents[0].text.contains("deep text") || name == "lists.md",
            "{name}"
        );
        eprintln!("{name}: {:?}", started.elapsed());
    }
}

#[test]
fn file_names_that_are_not_utf8() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sub = dir
        .path()
        .join(std::ffi::OsStr::from_bytes(b"r\xe9sum\xe9s"));
    std::fs::create_dir(&sub).expect("mkdir");
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
    let path = sub.join(name);
    std::fs::write(&path, "Bygglov kostar 5 000 kr för en altan.").expect("write");
    std::fs::write(sub.join(std::ffi::OsStr::from_bytes(b"bad\xff.md")), b"").expect("write");
    let inputs = vec![dir.path().to_string_lossy().into_owned()];
    let (cands, skipped) = discover(&inputs, &WalkOptions::default()).expect("discover");
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(cands.len(), 2);
    // The source is shown with U+FFFD for the bad bytes; the path still opens the file.
    let txt = cands.iter().find(|c| c.kind == "txt").expect("the txt");
    assert!(
        txt.source
            .ends_with("r\u{fffd}sum\u{fffd}s/caf\u{fffd}.txt"),
        "{}",
        txt.source
    );
    assert_eq!(txt.path, path);
    let loaded = load(txt).expect("loads");
    assert_eq!(
        loaded.documents[0].text,
        "Bygglov kostar 5 000 kr för en altan."
    );
    assert_eq!(loaded.documents[0].title.as_deref(), Some("caf\u{fffd}"));
    // An error about such a file names it the same way.
    let md = cands.iter().find(|c| c.kind == "md").expect("the md");
    let err = load(md).expect_err("empty");
    assert!(err.to_string().starts_with(&md.source), "{err}");
    assert!(err.to_string().contains("bad\u{fffd}.md"), "{err}");
}

#[test]
fn crafted_pdf_page_trees_are_errors_not_crashes() {
    use lopdf::{Object, ObjectId};
    let dir = tempfile::tempdir().expect("tempdir");
    let good = write_pdf(
        &dir.path().join("good.pdf"),
        "T",
        &[&["First page."], &["Second page."]],
    );
    let pages_node = |doc: &lopdf::Document| -> ObjectId {
        let first = *doc.get_pages().values().next().expect("a page");
        doc.get_dictionary(first)
            .and_then(|d| d.get(b"Parent"))
            .and_then(Object::as_reference)
            .expect("parent")
    };
    type Edit = fn(&mut lopdf::Document, ObjectId, ObjectId);
    fn set_content(doc: &mut lopdf::Document, page: ObjectId, ops: &[u8]) {
        let id = doc.add_object(lopdf::Stream::new(lopdf::Dictionary::new(), ops.to_vec()));
        doc.get_dictionary_mut(page)
            .expect("page")
            .set("Contents", Object::Reference(id));
    }
    let cases: [(&str, Edit, &str); 7] = [
        // Content streams: what pdf-extract asserts or unwraps (670 caught panics in 40,000
        // mutated PDFs before these checks, none after).
        (
            "text-before-font",
            |doc, page, _| set_content(doc, page, b"BT 72 760 Td (x) Tj ET"),
            "page 1: operator 2 (Tj) shows text before a font is selected (Tf)",
        ),
        (
            "missing-font",
            |doc, page, _| set_content(doc, page, b"BT /F9 12 Tf 72 760 Td (x) Tj ET"),
            "page 1: operator 1 (Tf) selects font /F9, which the resources do not hold",
        ),
        (
            "short-cm",
            |doc, page, _| set_content(doc, page, b"1 0 0 1 0 cm BT /F1 12 Tf (x) Tj ET"),
            "page 1: operator 0 (cm) needs 6 numbers",
        ),
        (
            // Without the check, pdf-extract follows /Parent (recursively) looking for the
            // MediaBox forever: measured, the load never returned (a hang; unoptimised, a stack
            // overflow, which aborts the process).
            "parent-loop",
            |doc, page, pages| {
                doc.get_dictionary_mut(pages)
                    .expect("pages")
                    .remove(b"MediaBox");
                doc.get_dictionary_mut(page)
                    .expect("page")
                    .set("Parent", page);
            },
            "page 1: its /Parent chain loops",
        ),
        (
            "no-mediabox",
            |doc, _, pages| {
                doc.get_dictionary_mut(pages)
                    .expect("pages")
                    .remove(b"MediaBox");
            },
            "page 1: no /MediaBox (page size) on the page or its parents",
        ),
        (
            "short-mediabox",
            |doc, _, pages| {
                let short = vec![0.into(), 0.into(), 612.into()];
                doc.get_dictionary_mut(pages)
                    .expect("pages")
                    .set("MediaBox", short);
            },
            "page 1: /MediaBox is not 4 numbers",
        ),
        (
            "missing-resources",
            |doc, _, pages| {
                doc.get_dictionary_mut(pages)
                    .expect("pages")
                    .set("Resources", Object::Reference((999, 0)));
            },
            "page 1: /Resources refers to a missing object",
        ),
    ];
    for (name, edit, want) in cases {
        let mut doc = lopdf::Document::load_mem(&good).expect("reload");
        let page = *doc.get_pages().values().next().expect("a page");
        let pages = pages_node(&doc);
        edit(&mut doc, page, pages);
        let path = dir.path().join(format!("{name}.pdf"));
        doc.save(&path).expect("save");
        let err =
            load_on_worker(&candidate(&path, "pdf"), Duration::from_secs(30)).expect_err(name);
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("{}: not a valid PDF file: {want}", path.display())),
            "{name}: {msg}"
        );
    }
}

/// 10,000 pages: one extraction pass (page by page, pdf-extract walked the whole page tree for
/// every page: 62 s here; now ~2 s).
#[test]
fn a_pdf_of_10000_pages_loads_in_bounded_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("long.pdf");
    let texts: Vec<String> = (1..=10_000)
        .map(|i| format!("Page {i} says hello."))
        .collect();
    let lines: Vec<[&str; 1]> = texts.iter().map(|t| [t.as_str()]).collect();
    let pages: Vec<&[&str]> = lines.iter().map(|l| &l[..]).collect();
    write_pdf(&path, "Long", &pages);
    let started = Instant::now();
    let loaded = load_on_worker(&candidate(&path, "pdf"), Duration::from_secs(600)).expect("loads");
    let doc = &loaded.documents[0];
    assert_eq!(doc.pages.len(), 10_000);
    assert_eq!(
        &doc.text[doc.pages[9_999].start..doc.pages[9_999].end],
        "Page 10000 says hello."
    );
    let took = started.elapsed();
    eprintln!("10000-page PDF: loaded in {took:?}");
    assert!(took < Duration::from_secs(30), "{took:?}");
}

#[test]
fn a_pdf_decompression_bomb_is_refused_while_it_inflates() {
    use lopdf::{dictionary, Object, Stream};
    use std::io::Write as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let good = write_pdf(&dir.path().join("good.pdf"), "T", &[&["Hello."]]);
    let mut doc = lopdf::Document::load_mem(&good).expect("reload");
    // A content stream of 300 MiB of spaces, compressed to ~300 KiB.
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(b"BT /F1 12 Tf 72 760 Td (bomb) Tj ET")
        .expect("zlib");
    let spaces = vec![b' '; 1 << 20];
    for _ in 0..300 {
        z.write_all(&spaces).expect("zlib");
    }
    let compressed = z.finish().expect("zlib");
    assert!(compressed.len() < 2 << 20, "{}", compressed.len());
    let stream = Stream::new(dictionary! { "Filter" => "FlateDecode" }, compressed);
    let id = doc.add_object(stream);
    let page = *doc.get_pages().values().next().expect("a page");
    doc.get_dictionary_mut(page)
        .expect("page")
        .set("Contents", Object::Reference(id));
    let path = dir.path().join("bomb.pdf");
    doc.save(&path).expect("save");
    let started = Instant::now();
    let err = load_on_worker(&candidate(&path, "pdf"), Duration::from_secs(120)).expect_err("bomb");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: not a valid PDF file: stream {} {} R inflates to more than 256 MiB (the limit \
             for one stream; a decompression bomb?)",
            path.display(),
            id.0,
            id.1
        )
    );
    eprintln!("PDF decompression bomb refused in {:?}", started.elapsed());
}

/// Found by fuzzing: a cross-reference stream whose /W claims a 4294967296-byte field made lopdf
/// reserve 4 GiB (tests/fuzz-findings/pdf-xref-w-4gib-13054.pdf).
#[test]
fn a_pdf_xref_stream_with_huge_field_widths_is_refused() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-findings/pdf-xref-w-4gib-13054.pdf");
    let err = load(&candidate(&path, "pdf")).expect_err("refused");
    assert!(
        err.to_string().ends_with(
            "not a valid PDF file: the cross-reference stream's /W [1, 4, 4294967296, 9, 11, 1] \
             is not 3 field widths of 0-8 bytes"
        ),
        "{err}"
    );
}

/// Found by fuzzing: rusqlite panics on a column name that is not UTF-8 (a corrupt database).
#[test]
fn a_sqlite_column_name_that_is_not_utf8_is_an_error() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-findings/sqlite-column-name-not-utf8-13981.db");
    let c = Candidate {
        source: format!("sqlite:{}?table=notes", path.display()),
        path: path.clone(),
        kind: "sqlite".into(),
    };
    let err = load(&c).expect_err("refused");
    assert!(
        err.to_string()
            .ends_with("is not valid UTF-8 (a corrupt database?)"),
        "{err}"
    );
    assert!(err.to_string().starts_with(&c.source), "{err}");
}
