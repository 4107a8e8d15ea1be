//! File loaders on real files written by the tests: PDF (lopdf), DOCX (zip), Markdown, HTML,
//! plain text.

mod common;

use std::io::Write;
use std::path::PathBuf;

use common::{candidate, chunk_checked, load_one, para, run, write_docx, write_pdf, CharCounter};
use lorag_core::WordCounter;
use lorag_ingest::{load, ChunkOptions, IngestError};

// ---------- PDF ----------

#[test]
fn pdf_pages_are_spans_with_their_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("report.pdf");
    write_pdf(
        &path,
        "Quarterly Report",
        &[
            &["Revenue grew in the first quarter.", "Costs were flat."],
            &["The second page covers hiring plans."],
            &["Page three lists the risks: supply and demand."],
        ],
    );
    let doc = load_one(&path, "pdf");
    assert_eq!(doc.kind, "pdf");
    assert_eq!(doc.title.as_deref(), Some("Quarterly Report"));
    let numbers: Vec<u32> = doc.pages.iter().map(|p| p.number).collect();
    assert_eq!(numbers, [1, 2, 3]);
    let page_text = |n: usize| &doc.text[doc.pages[n].start..doc.pages[n].end];
    assert!(
        page_text(0).contains("Revenue grew in the first quarter."),
        "{:?}",
        page_text(0)
    );
    assert!(page_text(0).contains("Costs were flat."));
    assert!(!page_text(0).contains("second page"));
    assert!(page_text(1).contains("The second page covers hiring plans."));
    assert!(page_text(2).contains("supply and demand"));
    // page_at finds the page of any position.
    let pos = doc.text.find("hiring").expect("page 2 text");
    assert_eq!(doc.page_at(pos), Some(2));
    // Chunks know their page.
    let chunks = chunk_checked(
        &doc,
        &WordCounter,
        &ChunkOptions {
            max_tokens: 8,
            overlap: 2,
        },
    );
    let last = chunks.last().expect("chunks");
    assert_eq!(last.page, Some(3));
    assert_eq!(chunks[0].page, Some(1));
}

#[test]
fn corrupt_pdfs_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = write_pdf(&dir.path().join("good.pdf"), "T", &[&["Some text here."]]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated.pdf", good[..good.len() / 3].to_vec()),
        ("garbage.pdf", {
            let mut b = b"%PDF-1.7\n".to_vec();
            b.extend((0..4000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
            b
        }),
        ("header-only.pdf", b"%PDF-1.4\n%%EOF\n".to_vec()),
        (
            "not-a-pdf.pdf",
            b"hello, I am text pretending to be a PDF".to_vec(),
        ),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).expect("write");
        let c = candidate(&path, "pdf");
        let err = load(&c).expect_err(name);
        let msg = err.to_string();
        assert!(msg.starts_with(&c.source), "{msg}");
        assert!(
            matches!(err, IngestError::Parse { format: "PDF", .. }),
            "{name}: {err:?}"
        );
    }
    // A PDF whose pages have no text (a scan) says so.
    let path = dir.path().join("scan.pdf");
    write_pdf(&path, "Scan", &[&[], &[]]);
    let err = load(&candidate(&path, "pdf")).expect_err("no text");
    assert!(
        err.to_string().contains("no text found (a scanned PDF?"),
        "{err}"
    );
}

// ---------- DOCX ----------

#[test]
fn docx_headings_become_sections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("handbook.docx");
    let body = [
        para(Some("Title"), &run("Employee Handbook")),
        para(None, &run("Welcome to the company.")),
        para(Some("Heading1"), &run("Leave")),
        para(None, &format!("{}{}", run("Annual leave is "), run("25 days."))),
        para(Some("Heading2"), &run("Sick leave")),
        para(
            None,
            "<w:r><w:t>Call your manager</w:t><w:tab/><w:t>before 9am.</w:t></w:r>\
             <w:del><w:r><w:delText>Deleted words.</w:delText></w:r></w:del>",
        ),
        para(Some("Heading2"), &run("Parental leave")),
        format!(
            "<w:tbl><w:tr><w:tc>{}</w:tc><w:tc>{}</w:tc></w:tr><w:tr><w:tc>{}</w:tc><w:tc>{}</w:tc></w:tr></w:tbl>",
            para(None, &run("Parent")),
            para(None, &run("Weeks")),
            para(None, &run("Birth")),
            para(None, &run("16")),
        ),
        para(Some("Heading1"), &run("Expenses &amp; travel")),
        para(None, &run("Keep receipts.")),
        para(None, ""),
    ]
    .concat();
    write_docx(&path, &body, None);
    let doc = load_one(&path, "docx");
    assert_eq!(doc.kind, "docx");
    assert_eq!(doc.title.as_deref(), Some("Employee Handbook"));
    let paths: Vec<String> = doc.sections.iter().map(|s| s.path.join(" > ")).collect();
    assert_eq!(
        paths,
        [
            "Leave",
            "Leave > Sick leave",
            "Leave > Parental leave",
            "Expenses & travel"
        ]
    );
    assert_eq!(
        doc.text,
        "Employee Handbook\n\nWelcome to the company.\n\nLeave\n\nAnnual leave is 25 days.\n\n\
         Sick leave\n\nCall your manager\tbefore 9am.\n\nParental leave\n\nParent | Weeks\nBirth | 16\n\n\
         Expenses & travel\n\nKeep receipts."
    );
    let leave = &doc.sections[0];
    assert_eq!(
        &doc.text[leave.start..leave.end].lines().next(),
        &Some("Leave")
    );
    assert_eq!(leave.end, doc.sections[3].start);
    let pos = doc.text.find("before 9am").expect("text");
    assert_eq!(doc.section_at(pos).as_deref(), Some("Leave > Sick leave"));
    let chunks = chunk_checked(
        &doc,
        &WordCounter,
        &ChunkOptions {
            max_tokens: 12,
            overlap: 2,
        },
    );
    assert!(chunks.iter().any(|c| c.text.starts_with("Sick leave")));
}

#[test]
fn docx_heading_styles_are_found_through_styles_xml() {
    // A German Word names its heading style ids "berschrift1"; the style *name* stays
    // "heading 1". A custom style with an outline level is a heading too.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("anleitung.docx");
    let styles = r#"<w:style w:type="paragraph" w:styleId="berschrift1"><w:name w:val="heading 1"/></w:style>
<w:style w:type="paragraph" w:styleId="Custom"><w:name w:val="My Section"/><w:pPr><w:outlineLvl w:val="1"/></w:pPr></w:style>"#;
    let body = [
        para(Some("berschrift1"), &run("Installation")),
        para(None, &run("Erst auspacken.")),
        para(Some("Custom"), &run("Unter Debian")),
        para(None, &run("apt install x")),
    ]
    .concat();
    write_docx(&path, &body, Some(styles));
    let doc = load_one(&path, "docx");
    let paths: Vec<Vec<String>> = doc.sections.iter().map(|s| s.path.clone()).collect();
    assert_eq!(
        paths,
        [vec!["Installation"], vec!["Installation", "Unter Debian"]]
    );
    assert_eq!(doc.title.as_deref(), Some("Installation"));
}

#[test]
fn broken_docx_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let not_zip = dir.path().join("not-zip.docx");
    std::fs::write(&not_zip, "plain text").expect("write");
    let err = load(&candidate(&not_zip, "docx")).expect_err("not a zip");
    assert!(
        err.to_string().starts_with(&format!(
            "{}: not a valid DOCX file: not a zip",
            not_zip.display()
        )),
        "{err}"
    );

    let no_doc = dir.path().join("no-document.docx");
    {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&no_doc).expect("create"));
        zip.start_file("hello.txt", zip::write::SimpleFileOptions::default())
            .expect("entry");
        zip.write_all(b"hi").expect("write");
        zip.finish().expect("finish");
    }
    let err = load(&candidate(&no_doc, "docx")).expect_err("no document.xml");
    assert!(
        err.to_string()
            .contains("no-document.docx: not a valid DOCX file: no word/document.xml"),
        "{err}"
    );

    let bad_xml = dir.path().join("bad-xml.docx");
    write_docx(&bad_xml, "<w:p><w:r><w:t>unclosed", None);
    let err = load(&candidate(&bad_xml, "docx")).expect_err("bad xml");
    assert!(
        err.to_string()
            .contains("bad-xml.docx: not a valid DOCX file: word/document.xml:"),
        "{err}"
    );
}

// ---------- Markdown ----------

const MARKDOWN: &str = "---
title: Front matter is not text
tags: [a, b]
---
# Install

Get the package.

## On Debian

Run `apt install lorag`:

```sh
# this is a comment, not a heading
apt install lorag
```

### From source

Build it with `cargo build --release`.

## On `macOS` *too*

Use brew.

Setext Title
============

Text under a setext heading.

    # indented code, not a heading

Final words.
";

#[test]
fn markdown_headings_nest_and_code_is_not_a_heading() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("guide.md");
    std::fs::write(&path, MARKDOWN.replace('\n', "\r\n")).expect("write");
    let doc = load_one(&path, "md");
    assert_eq!(doc.kind, "md");
    assert_eq!(doc.title.as_deref(), Some("Install"));
    assert!(!doc.text.contains("Front matter") && !doc.text.contains('\r'));
    assert!(doc.text.starts_with("# Install\n"));
    let paths: Vec<String> = doc.sections.iter().map(|s| s.path.join(" > ")).collect();
    assert_eq!(
        paths,
        [
            "Install",
            "Install > On Debian",
            "Install > On Debian > From source",
            "Install > On macOS too",
            "Setext Title",
        ]
    );
    // Heading lines stay in the text, at the section starts.
    for (s, line) in doc.sections.iter().zip([
        "# Install",
        "## On Debian",
        "### From source",
        "## On `macOS` *too*",
        "Setext Title",
    ]) {
        assert!(doc.text[s.start..].starts_with(line), "{:?}", s.path);
    }
    let install = &doc.sections[0];
    assert_eq!(install.end, doc.sections[4].start);
    assert_eq!(doc.sections[1].end, doc.sections[3].start);
    assert_eq!(doc.sections[4].end, doc.text.len());
    let pos = doc.text.find("# this is a comment").expect("code");
    assert_eq!(doc.section_at(pos).as_deref(), Some("Install > On Debian"));
    let pos = doc.text.find("indented code").expect("code");
    assert_eq!(doc.section_at(pos).as_deref(), Some("Setext Title"));

    for max in [4, 8, 16, 64] {
        let opts = ChunkOptions {
            max_tokens: max,
            overlap: max / 4,
        };
        let chunks = chunk_checked(&doc, &WordCounter, &opts);
        if max >= 16 {
            common::check_overlap_rate(&chunks, &doc, &opts);
        }
        // A chunk never holds the end of one section and the start of another.
        for c in &chunks {
            let inner = doc
                .sections
                .iter()
                .filter(|s| s.start > c.start && s.start < c.end);
            for s in inner {
                assert!(
                    doc.text[c.start..s.start]
                        .lines()
                        .all(|l| l.trim().is_empty() || l.starts_with('#')),
                    "max {max}: chunk {} has body text before section {:?}",
                    c.ordinal,
                    s.path
                );
            }
        }
    }
}

#[test]
fn the_repository_markdown_chunks_cleanly() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    for name in ["ARCHITECTURE.md", "README.md"] {
        let path = root.join(name);
        let doc = load_one(&path, "md");
        assert!(!doc.sections.is_empty(), "{name} has headings");
        chunk_checked(
            &doc,
            &WordCounter,
            &ChunkOptions {
                max_tokens: 64,
                overlap: 8,
            },
        );
        chunk_checked(
            &doc,
            &CharCounter,
            &ChunkOptions {
                max_tokens: 48,
                overlap: 8,
            },
        );
    }
}

// ---------- HTML ----------

const HTML: &str = r#"<!DOCTYPE html>
<html><head><title>  Widget &amp; Co —
 Support </title><style>body { color: red }</style>
<script>var tracking = "SECRET_SCRIPT";</script></head>
<body>
<header><a href="/">Home</a> | Products</header>
<nav><ul><li>Menu item</li></ul></nav>
<div role="navigation">Breadcrumbs here</div>
<main>
<h1>Widget manual</h1>
<p>The <b>widget</b> is a small&nbsp;device. It costs &lt;10&euro; &#8212; cheap.</p>
<noscript>Enable JavaScript</noscript>
<h2>Setup</h2>
<p>Plug it in.
   Then press the   button.</p>
<ul><li>Step one</li><li>Step <em>two</em></li></ul>
<pre>line 1
    indented line 2</pre>
<h3>Troubleshooting</h3>
<table><tr><th>Symptom</th><th>Fix</th></tr><tr><td>No light</td><td>Replace battery</td></tr></table>
<form><label>Email</label><input value="x"><button>Subscribe</button></form>
<div hidden>Hidden promo</div>
<aside>Related products</aside>
<h2>Warranty</h2>
<p>Two years.<br>Keep the receipt.</p>
</main>
<footer>Copyright footer text</footer>
<script>document.write("SECRET_SCRIPT")</script>
</body></html>"#;

#[test]
fn html_keeps_main_text_and_heading_sections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("manual.html");
    std::fs::write(&path, HTML).expect("write");
    let doc = load_one(&path, "html");
    assert_eq!(doc.title.as_deref(), Some("Widget & Co — Support"));
    for gone in [
        "SECRET_SCRIPT",
        "color: red",
        "Home",
        "Menu item",
        "Breadcrumbs",
        "Enable JavaScript",
        "Subscribe",
        "Email",
        "Hidden promo",
        "Related products",
        "Copyright footer",
    ] {
        assert!(!doc.text.contains(gone), "{gone:?} kept in {:?}", doc.text);
    }
    assert_eq!(
        doc.text,
        "Widget manual\n\nThe widget is a small device. It costs <10€ — cheap.\n\n\
         Setup\n\nPlug it in. Then press the button.\n\n- Step one\n- Step two\n\n\
         line 1\n    indented line 2\n\nTroubleshooting\n\nSymptom | Fix\nNo light | Replace battery\n\n\
         Warranty\n\nTwo years.\nKeep the receipt."
    );
    let paths: Vec<String> = doc.sections.iter().map(|s| s.path.join(" > ")).collect();
    assert_eq!(
        paths,
        [
            "Widget manual",
            "Widget manual > Setup",
            "Widget manual > Setup > Troubleshooting",
            "Widget manual > Warranty"
        ]
    );
    let pos = doc.text.find("Replace battery").expect("table");
    assert_eq!(
        doc.section_at(pos).as_deref(),
        Some("Widget manual > Setup > Troubleshooting")
    );
    chunk_checked(
        &doc,
        &WordCounter,
        &ChunkOptions {
            max_tokens: 10,
            overlap: 3,
        },
    );
}

#[test]
fn html_in_a_declared_legacy_charset_is_decoded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.htm");
    let mut bytes = b"<html><head><meta charset=\"windows-1252\"><title>Caf".to_vec();
    bytes.extend([0xE9]); // é in windows-1252, invalid as UTF-8
    bytes.extend(b"</title></head><body><p>Men\xFC du jour</p></body></html>");
    std::fs::write(&path, &bytes).expect("write");
    let doc = load_one(&path, "html");
    assert_eq!(doc.title.as_deref(), Some("Café"));
    assert_eq!(doc.text, "Menü du jour");
}

// ---------- plain text ----------

#[test]
fn text_is_normalized_and_titled_by_stem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("release notes.txt");
    std::fs::write(&path, "\u{feff}Line one\r\nLine two\rLine three\n").expect("write");
    let doc = load_one(&path, "txt");
    assert_eq!(doc.title.as_deref(), Some("release notes"));
    assert_eq!(doc.text, "Line one\nLine two\nLine three\n");
    assert!(doc.sections.is_empty() && doc.pages.is_empty());
    let loaded = load(&candidate(&path, "txt")).expect("load");
    let fp = lorag_ingest::fingerprint(&candidate(&path, "txt")).expect("fingerprint");
    assert_eq!(loaded.fingerprint, fp);
    assert_eq!(fp.size, std::fs::metadata(&path).expect("meta").len());
    assert_eq!(fp.hash.len(), 64);
    assert!(fp.mtime > 1_600_000_000);
}
