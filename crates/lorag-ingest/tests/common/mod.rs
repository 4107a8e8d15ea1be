//! Helpers shared by the integration tests: real files in temporary folders, and the chunk
//! invariants checked on every document.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use lorag_core::{Chunk, Document, TokenCounter, WordCounter};
use lorag_ingest::{Candidate, ChunkOptions};

/// The Debian FAQ as HTML (`apt-get install debian-faq`, done by scripts/setup.sh).
pub const FAQ_DIR: &str = "/usr/share/doc/debian/FAQ";

pub fn faq_dir() -> PathBuf {
    let dir = PathBuf::from(FAQ_DIR);
    assert!(
        dir.join("index.en.html").is_file(),
        "{FAQ_DIR} is missing: run scripts/setup.sh (apt-get install debian-faq)"
    );
    dir
}

/// Decompresses a gzipped file of the FAQ into `dir`, returning the new path.
pub fn gunzip_into(gz: &Path, dir: &Path) -> PathBuf {
    use std::io::Read;
    let name = gz
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".gz"))
        .expect("a .gz name");
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(gz).expect("open gz"))
        .read_to_end(&mut bytes)
        .expect("gunzip");
    let out = dir.join(name);
    std::fs::write(&out, bytes).expect("write");
    out
}

pub fn candidate(path: &Path, kind: &str) -> Candidate {
    Candidate {
        source: path.to_string_lossy().into_owned(),
        path: path.to_path_buf(),
        kind: kind.to_string(),
    }
}

/// Loads one file that must give exactly one document.
pub fn load_one(path: &Path, kind: &str) -> Document {
    let loaded = lorag_ingest::load(&candidate(path, kind))
        .unwrap_or_else(|e| panic!("load {}: {e}", path.display()));
    assert_eq!(loaded.documents.len(), 1, "{}", path.display());
    loaded.documents.into_iter().next().expect("one document")
}

/// Counts characters, 4 to a token (rounded up): a stand-in for a subword tokenizer, under
/// which a long word is several tokens.
pub struct CharCounter;

impl TokenCounter for CharCounter {
    fn count_tokens(&self, text: &str) -> usize {
        text.chars().count().div_ceil(4)
    }
}

/// Words plus two special tokens on every text, as a BERT tokenizer counts `[CLS] ... [SEP]`.
pub struct SpecialsCounter;

impl TokenCounter for SpecialsCounter {
    fn count_tokens(&self, text: &str) -> usize {
        WordCounter.count_tokens(text) + 2
    }
}

/// The heading lines of a document: from each section start to the end of its line.
pub fn heading_lines(doc: &Document) -> Vec<(usize, usize)> {
    doc.sections
        .iter()
        .map(|s| {
            let end = doc.text[s.start..]
                .find('\n')
                .map_or(doc.text.len(), |i| s.start + i);
            (s.start, end)
        })
        .collect()
}

/// Chunks `doc` and checks every invariant of `chunk`; returns the chunks. (The overlap rate is
/// checked apart, where chunks are large beside paragraphs: see `check_overlap_rate`.)
pub fn chunk_checked(
    doc: &Document,
    counter: &dyn TokenCounter,
    opts: &ChunkOptions,
) -> Vec<Chunk> {
    let chunks = lorag_ingest::chunk(doc, counter, opts);
    check_chunks(doc, &chunks, counter, opts);
    chunks
}

pub fn check_chunks(
    doc: &Document,
    chunks: &[Chunk],
    counter: &dyn TokenCounter,
    opts: &ChunkOptions,
) {
    let src = &doc.source;
    let text = &doc.text;
    assert!(!chunks.is_empty(), "{src}: no chunks");
    let headings = heading_lines(doc);
    let mut covered = 0;
    for (k, c) in chunks.iter().enumerate() {
        let at = format!("{src} chunk {k} [{}..{})", c.start, c.end);
        assert_eq!(c.ordinal as usize, k, "{at}: ordinal");
        assert!(c.start < c.end && c.end <= text.len(), "{at}: span");
        assert_eq!(c.text, text[c.start..c.end], "{at}: text is not the slice");
        assert_eq!(c.text, c.text.trim(), "{at}: whitespace at an edge");
        assert_eq!(c.tokens, counter.count_tokens(&c.text), "{at}: tokens");
        assert_eq!(c.section, doc.section_at(c.start), "{at}: section");
        assert_eq!(c.page, doc.page_at(c.start), "{at}: page");
        // Size: over max only for one unsplittable unit (a word or a heading line).
        if c.tokens > opts.max_tokens {
            let one_word = !c.text.contains(char::is_whitespace);
            // A heading line, with its setext underline (`===`, `---`) when it has one.
            let one_heading = headings.iter().any(|&(s, e)| {
                let line = text[s..e].trim();
                (s..=e).contains(&c.start)
                    && match c.text.strip_prefix(line) {
                        Some("") => true,
                        Some(rest) => {
                            let u = rest.trim();
                            // (the heading line may end in spaces)
                            rest.trim_start_matches([' ', '\t']).starts_with('\n')
                                && !u.is_empty()
                                && !u.contains('\n')
                                && (u.bytes().all(|b| b == b'=') || u.bytes().all(|b| b == b'-'))
                        }
                        None => false,
                    }
            });
            assert!(
                one_word || one_heading,
                "{at}: {} tokens > {}",
                c.tokens,
                opts.max_tokens
            );
        }
        // Headings are never split.
        for &(hs, he) in &headings {
            // Whitespace at a heading line's edges (an HTML heading holding a <pre>) is not
            // part of it: a chunk trimmed of it starts after it.
            let he = hs + text[hs..he].trim_end().len();
            let hs = he - text[hs..he].trim_start().len();
            for b in [c.start, c.end] {
                assert!(
                    !(hs < b && b < he),
                    "{at}: boundary {b} inside heading line [{hs}..{he})"
                );
            }
        }
        // Order, coverage and overlap.
        if k > 0 {
            let prev = &chunks[k - 1];
            assert!(
                c.start > prev.start && c.end > prev.end,
                "{at}: not after chunk {}",
                k - 1
            );
            if c.start > covered {
                assert!(
                    text[covered..c.start].trim().is_empty(),
                    "{at}: text before it is in no chunk: {:?}",
                    &text[covered..c.start]
                );
            }
            if c.start < prev.end {
                let repeated = counter.count_tokens(&text[c.start..prev.end]);
                assert!(
                    repeated <= opts.overlap + opts.overlap / 2 + 2,
                    "{at}: overlap of {repeated} tokens > {}",
                    opts.overlap
                );
                let before = text[..c.start].chars().next_back();
                assert!(
                    before.is_some_and(char::is_whitespace),
                    "{at}: overlap does not start at a word"
                );
            }
        } else {
            assert!(
                text[..c.start].trim().is_empty(),
                "{at}: text before the first chunk"
            );
        }
        covered = covered.max(c.end);
    }
    assert!(
        text[covered..].trim().is_empty(),
        "{src}: text after the last chunk"
    );
}

/// Within a section, at least 90% of consecutive chunks overlap (when overlap is asked for).
/// Not a hard rule: the overlap is what fits beside the next paragraph, which may be nothing.
pub fn check_overlap_rate(chunks: &[Chunk], doc: &Document, opts: &ChunkOptions) {
    let src = &doc.source;
    let section_starts: Vec<usize> = doc.sections.iter().map(|s| s.start).collect();
    if opts.overlap > 0 {
        let mut pairs = 0;
        let mut overlapping = 0;
        for w in chunks.windows(2) {
            if section_starts.contains(&w[1].start) || w[0].section != w[1].section {
                continue;
            }
            pairs += 1;
            if w[1].start < w[0].end {
                overlapping += 1;
            }
        }
        assert!(
            overlapping * 10 >= pairs * 9,
            "{src}: only {overlapping} of {pairs} chunk pairs within a section overlap"
        );
    }
}

/// A real PDF with one page per entry of `pages` (each a list of lines, Helvetica 12pt) and an
/// information dictionary title.
pub fn write_pdf(path: &Path, title: &str, pages: &[&[&str]]) -> Vec<u8> {
    use lopdf::content::{Content, Operation};
    use lopdf::{dictionary, Document, Object, Stream};

    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "Type1",
        "BaseFont" => "Helvetica",
    });
    let resources_id = doc.add_object(dictionary! {
        "Font" => dictionary! { "F1" => font_id },
    });
    let mut kids = Vec::new();
    for lines in pages {
        let mut ops = vec![
            Operation::new("BT", vec![]),
            Operation::new("Tf", vec!["F1".into(), 12.into()]),
            Operation::new("TL", vec![16.into()]),
            Operation::new("Td", vec![72.into(), 760.into()]),
        ];
        for line in *lines {
            ops.push(Operation::new("Tj", vec![Object::string_literal(*line)]));
            ops.push(Operation::new("T*", vec![]));
        }
        ops.push(Operation::new("ET", vec![]));
        let content = Content { operations: ops };
        let content_id = doc.add_object(Stream::new(
            dictionary! {},
            content.encode().expect("encode content"),
        ));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "Contents" => content_id,
        });
        kids.push(page_id.into());
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => kids,
            "Count" => count,
            "Resources" => resources_id,
            "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
        }),
    );
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    let info_id = doc.add_object(dictionary! { "Title" => Object::string_literal(title) });
    doc.trailer.set("Root", catalog_id);
    doc.trailer.set("Info", info_id);
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).expect("save pdf");
    std::fs::write(path, &bytes).expect("write pdf");
    bytes
}

pub const W_NS: &str = "http://schemas.openxmlformats.org/wordprocessingml/2006/main";

pub fn para(style: Option<&str>, runs: &str) -> String {
    let ppr = style.map_or(String::new(), |s| {
        format!("<w:pPr><w:pStyle w:val=\"{s}\"/></w:pPr>")
    });
    format!("<w:p>{ppr}{runs}</w:p>")
}

pub fn run(text: &str) -> String {
    format!("<w:r><w:t xml:space=\"preserve\">{text}</w:t></w:r>")
}

/// A real .docx: content types, package relationships, the document and optionally styles.
pub fn write_docx(path: &Path, body: &str, styles: Option<&str>) {
    use std::io::Write;
    use zip::write::SimpleFileOptions;
    let file = std::fs::File::create(path).expect("create docx");
    let mut zip = zip::ZipWriter::new(file);
    let opts = SimpleFileOptions::default();
    let mut add = |name: &str, content: &str| {
        zip.start_file(name, opts).expect("zip entry");
        zip.write_all(content.as_bytes()).expect("zip write");
    };
    add(
        "[Content_Types].xml",
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
<Default Extension="xml" ContentType="application/xml"/>
<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>
</Types>"#,
    );
    add(
        "_rels/.rels",
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/>
</Relationships>"#,
    );
    add(
        "word/document.xml",
        &format!(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="{W_NS}"><w:body>{body}<w:sectPr/></w:body></w:document>"#
        ),
    );
    if let Some(styles) = styles {
        add(
            "word/styles.xml",
            &format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><w:styles xmlns:w="{W_NS}">{styles}</w:styles>"#
            ),
        );
    }
    zip.finish().expect("finish zip");
}
