//! The Debian FAQ (HTML, plain text and PDF, from the `debian-faq` package): real documents
//! through discover → load → chunk.

mod common;

use common::{check_overlap_rate, chunk_checked, faq_dir, gunzip_into, load_one, CharCounter};
use lorag_core::WordCounter;
use lorag_ingest::{discover, load, ChunkOptions, WalkOptions};

#[test]
fn faq_html_loads_with_title_sections_and_no_navigation() {
    let dir = faq_dir();
    let doc = load_one(&dir.join("basic-defs.en.html"), "html");
    assert_eq!(doc.kind, "html");
    assert_eq!(
        doc.title.as_deref(),
        Some("Chapter 1. Definitions and overview")
    );
    // The <style> in <head>, the navigation header/footer and the table of contents are gone.
    assert!(!doc.text.contains("background-repeat"), "style kept");
    assert!(
        !doc.text.contains("Table of Contents"),
        "table of contents kept"
    );
    assert!(
        !doc.text.contains("Chapter 2. Getting and installing"),
        "nav footer kept"
    );
    // Entities are decoded.
    assert!(doc
        .text
        .contains("Section 12.1, “What other documentation exists"));
    assert!(!doc.text.contains("&ldquo;") && !doc.text.contains("&#"));
    // h1 then h2s: heading paths, each section starting at its heading line.
    let paths: Vec<Vec<String>> = doc.sections.iter().map(|s| s.path.clone()).collect();
    assert_eq!(paths[0], ["Chapter 1. Definitions and overview"]);
    assert_eq!(
        paths[1],
        [
            "Chapter 1. Definitions and overview",
            "1.1. What is this FAQ?"
        ]
    );
    assert!(paths.contains(&vec![
        "Chapter 1. Definitions and overview".to_string(),
        "1.7. How does one pronounce Debian and what does this word mean?".to_string()
    ]));
    for s in &doc.sections {
        let line = doc.text[s.start..].lines().next().unwrap_or("");
        assert_eq!(line, s.path.last().expect("a title"), "heading line");
        assert!(s.start == 0 || doc.text[..s.start].ends_with("\n\n"));
    }
    // The h1 section spans everything; h2 sections end where the next one starts.
    assert_eq!(
        (doc.sections[0].start, doc.sections[0].end),
        (0, doc.text.len())
    );
    assert_eq!(doc.sections[1].end, doc.sections[2].start);
    let pos = doc
        .text
        .find("some answers assume some knowledge")
        .expect("FAQ text");
    assert_eq!(
        doc.section_at(pos).as_deref(),
        Some("Chapter 1. Definitions and overview > 1.1. What is this FAQ?")
    );
    // Block elements are separated, inline ones are not.
    assert!(doc.text.contains("\n\nThis document gives frequently asked questions (with their answers!) about the Debian distribution"));
}

#[test]
fn faq_html_chunks_follow_sections() {
    let dir = faq_dir();
    let doc = load_one(&dir.join("basic-defs.en.html"), "html");
    let opts = ChunkOptions {
        max_tokens: 120,
        overlap: 16,
    };
    let chunks = chunk_checked(&doc, &WordCounter, &opts);
    check_overlap_rate(&chunks, &doc, &opts);
    // The h1 has no body of its own: it stays with section 1.1.
    assert!(chunks[0]
        .text
        .starts_with("Chapter 1. Definitions and overview\n\n1.1. What is this FAQ?"));
    // Every other h2 section starts a chunk that begins with its heading.
    for s in doc.sections.iter().skip(2) {
        let c = chunks
            .iter()
            .find(|c| c.start == s.start)
            .unwrap_or_else(|| panic!("no chunk starts at section {:?}", s.path));
        assert!(c.text.starts_with(s.path.last().expect("title").as_str()));
        assert_eq!(c.section.as_deref(), Some(s.path.join(" > ").as_str()));
    }
    assert!(chunks.len() > doc.sections.len(), "long sections are split");
}

#[test]
fn whole_faq_discovers_loads_and_chunks() {
    let dir = faq_dir();
    let input = format!("{}/", dir.display());
    let (cands, skipped) =
        discover(std::slice::from_ref(&input), &WalkOptions::default()).expect("discover");
    // 17 chapters as *.en.html; the *.html links to them are the same files.
    let html: Vec<_> = cands.iter().filter(|c| c.kind == "html").collect();
    assert_eq!(html.len(), 17, "{cands:?}");
    assert!(html
        .iter()
        .all(|c| c.source.starts_with(&input) && c.source.ends_with(".en.html")));
    let reason = |name: &str| {
        skipped
            .iter()
            .find(|s| s.source == format!("{input}{name}"))
            .map(|s| s.reason.clone())
            .unwrap_or_else(|| panic!("{name} not skipped: {skipped:?}"))
    };
    assert_eq!(
        reason("index.html"),
        format!("same file as {input}index.en.html")
    );
    assert!(reason("debian-faq.en.pdf.gz").starts_with("binary file type (.gz)"));
    assert!(reason("debian.css").starts_with("unsupported file type (.css"));
    assert!(reason("images/next.png").starts_with("binary file type (.png)"));
    let opts = ChunkOptions::default();
    let mut total_chunks = 0;
    for c in &html {
        let loaded = load(c).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            loaded.fingerprint,
            lorag_ingest::fingerprint(c).expect("fingerprint")
        );
        for doc in &loaded.documents {
            assert!(
                doc.title.is_some() && !doc.sections.is_empty(),
                "{}",
                doc.source
            );
            let chunks = chunk_checked(doc, &WordCounter, &opts);
            check_overlap_rate(&chunks, doc, &opts);
            total_chunks += chunks.len();
            chunk_checked(
                doc,
                &CharCounter,
                &ChunkOptions {
                    max_tokens: 64,
                    overlap: 8,
                },
            );
        }
    }
    assert!(total_chunks > 100, "{total_chunks} chunks");
}

#[test]
fn faq_text_and_pdf_load_and_chunk() {
    let dir = faq_dir();
    let tmp = tempfile::tempdir().expect("tempdir");
    let txt = gunzip_into(&dir.join("debian-faq.en.txt.gz"), tmp.path());
    let doc = load_one(&txt, "txt");
    assert_eq!(doc.title.as_deref(), Some("debian-faq.en"));
    assert!(doc.text.contains("The Debian GNU/Linux FAQ"));
    let opts = ChunkOptions::default();
    let chunks = chunk_checked(&doc, &WordCounter, &opts);
    check_overlap_rate(&chunks, &doc, &opts);

    let pdf = gunzip_into(&dir.join("debian-faq.en.pdf.gz"), tmp.path());
    let doc = load_one(&pdf, "pdf");
    assert!(doc.pages.len() > 40, "{} pages", doc.pages.len());
    let first = &doc.pages[0];
    assert_eq!(first.number, 1);
    assert!(doc.text[first.start..first.end].contains("Debian"));
    for w in doc.pages.windows(2) {
        assert!(w[0].number < w[1].number && w[0].end < w[1].start);
    }
    let pos = doc
        .text
        .find("What is this FAQ?")
        .expect("chapter 1 in the PDF");
    assert!(doc.page_at(pos).expect("a page") > 1);
    let chunks = chunk_checked(&doc, &WordCounter, &opts);
    check_overlap_rate(&chunks, &doc, &opts);
    assert!(chunks.iter().all(|c| c.page.is_some()));
}
