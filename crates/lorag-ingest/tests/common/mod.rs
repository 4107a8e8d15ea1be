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
            let one_heading = headings
                .iter()
                .any(|&(s, e)| s == c.start && text[s..e].trim_end() == c.text);
            assert!(
                one_word || one_heading,
                "{at}: {} tokens > {}",
                c.tokens,
                opts.max_tokens
            );
        }
        // Headings are never split.
        for &(hs, he) in &headings {
            let he = hs + text[hs..he].trim_end().len();
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
