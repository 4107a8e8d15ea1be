//! `chunk`: boundaries, overlap, sizes under several counters, and speed on 2 MB of text.

mod common;

use std::time::Instant;

use common::{check_chunks, chunk_checked, faq_dir, gunzip_into, CharCounter, SpecialsCounter};
use lorag_core::{Document, Section, TokenCounter, WordCounter};
use lorag_ingest::{chunk, ChunkOptions};

/// Sentences of `len` numbered words (`w0 w1 ... w9.`), `n` of them, starting at word `from`.
fn sentences(from: usize, n: usize, len: usize) -> String {
    (0..n)
        .map(|s| {
            let words: Vec<String> = (0..len)
                .map(|w| format!("w{}", from + s * len + w))
                .collect();
            format!("{}.", words.join(" "))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn md_doc(text: &str) -> Document {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("doc.md");
    std::fs::write(&path, text).expect("write");
    common::load_one(&path, "md")
}

#[test]
fn overlap_repeats_the_last_words_and_chunks_end_at_sentences() {
    // One paragraph of 100 sentences of 10 words: atoms are sentences.
    let doc = Document::new("s.txt", "txt", sentences(0, 100, 10));
    let opts = ChunkOptions {
        max_tokens: 50,
        overlap: 10,
    };
    let chunks = chunk_checked(&doc, &WordCounter, &opts);
    assert_eq!(chunks[0].tokens, 50);
    for w in chunks.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        assert!(
            a.text.ends_with('.'),
            "chunk {} ends inside a sentence",
            a.ordinal
        );
        let repeated = &doc.text[b.start..a.end];
        assert_eq!(
            WordCounter.count_tokens(repeated),
            10,
            "chunk {}",
            b.ordinal
        );
        assert!(b.text.starts_with(repeated));
        if b.end < doc.text.len() {
            assert_eq!(b.tokens, 50, "10 repeated + 4 new sentences");
        }
    }
    // No overlap asked: chunks tile the text.
    let chunks = chunk_checked(
        &doc,
        &WordCounter,
        &ChunkOptions {
            max_tokens: 50,
            overlap: 0,
        },
    );
    assert_eq!(chunks.len(), 20);
    for w in chunks.windows(2) {
        assert_eq!(doc.text[w[0].end..w[1].start].trim(), "");
    }
}

#[test]
fn paragraph_boundaries_win_when_the_chunk_is_half_full() {
    let p1 = sentences(0, 3, 10); // 30 words
    let p2 = sentences(100, 3, 10); // 30 words
    let doc = Document::new("p.txt", "txt", format!("{p1}\n\n{p2}\n"));
    let chunks = chunk_checked(
        &doc,
        &WordCounter,
        &ChunkOptions {
            max_tokens: 50,
            overlap: 0,
        },
    );
    assert_eq!(chunks.len(), 2);
    assert_eq!(
        chunks[0].text, p1,
        "the chunk ends at the paragraph, not inside p2"
    );
    assert_eq!(chunks[1].text, p2);

    // A short first paragraph: the next is split at a sentence to fill the chunk.
    let p1 = sentences(0, 1, 10); // 10 words
    let p2 = sentences(100, 3, 15); // 45 words, fits alone
    let doc = Document::new("p.txt", "txt", format!("{p1}\n\n{p2}"));
    let chunks = chunk_checked(
        &doc,
        &WordCounter,
        &ChunkOptions {
            max_tokens: 50,
            overlap: 0,
        },
    );
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[0].tokens, 40);
    assert!(chunks[0].text.starts_with(&p1) && chunks[0].text.ends_with("w129."));
}

#[test]
fn sections_start_chunks_and_empty_headings_stay_with_their_children() {
    let doc = md_doc(
        "Intro line.\n\n# A\n\n## B\n\nBody of b.\n\n## C\n\nBody of c.\n\n# D has a long heading line of many words\n\nd.\n",
    );
    let chunks = chunk_checked(
        &doc,
        &WordCounter,
        &ChunkOptions {
            max_tokens: 1000,
            overlap: 50,
        },
    );
    let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "Intro line.",
            "# A\n\n## B\n\nBody of b.",
            "## C\n\nBody of c.",
            "# D has a long heading line of many words\n\nd."
        ]
    );
    let secs: Vec<Option<&str>> = chunks.iter().map(|c| c.section.as_deref()).collect();
    assert_eq!(
        secs,
        [
            None,
            Some("A"),
            Some("A > C"),
            Some("D has a long heading line of many words")
        ]
    );

    // A heading longer than the budget is one chunk on its own, never split.
    let chunks = chunk_checked(
        &doc,
        &WordCounter,
        &ChunkOptions {
            max_tokens: 4,
            overlap: 1,
        },
    );
    let heading = chunks
        .iter()
        .find(|c| c.text.starts_with("# D"))
        .expect("heading chunk");
    assert_eq!(heading.text, "# D has a long heading line of many words");
    assert_eq!(heading.tokens, 10);
    assert_eq!(chunks.last().map(|c| c.text.as_str()), Some("d."));
}

#[test]
fn sections_from_a_loader_are_respected_at_every_size() {
    // Sections given by hand (as a loader would), with deep nesting and a section inside a line.
    let text = "Title\n\nPara one is here. It has two sentences.\n\nSub\n\nMore text follows here, and more.\n\nSub two\n\nEnd.";
    let at = |s: &str| text.find(s).expect("in text");
    let mut doc = Document::new("h.html", "html", text);
    doc.sections = vec![
        Section {
            path: vec!["Title".into()],
            start: 0,
            end: text.len(),
        },
        Section {
            path: vec!["Title".into(), "Sub".into()],
            start: at("Sub\n"),
            end: at("Sub two"),
        },
        Section {
            path: vec!["Title".into(), "Sub two".into()],
            start: at("Sub two"),
            end: text.len(),
        },
    ];
    for max in 1..=24 {
        for overlap in [0, 1, 3] {
            chunk_checked(
                &doc,
                &WordCounter,
                &ChunkOptions {
                    max_tokens: max,
                    overlap,
                },
            );
            chunk_checked(
                &doc,
                &CharCounter,
                &ChunkOptions {
                    max_tokens: max,
                    overlap,
                },
            );
        }
    }
}

#[test]
fn a_word_longer_than_the_budget_is_cut_at_characters() {
    // 100 KB without whitespace (minified data, a base64 blob): CharCounter counts it as
    // 25,600 tokens, so it is cut into pieces of at most 64 tokens (256 characters).
    let blob: String = "0123456789abcdef€".repeat(6000);
    let doc = Document::new(
        "blob.txt",
        "txt",
        format!("Header words here.\n\n{blob}\n\nTail."),
    );
    let opts = ChunkOptions {
        max_tokens: 64,
        overlap: 8,
    };
    let chunks = chunk_checked(&doc, &CharCounter, &opts);
    assert!(chunks.iter().all(|c| c.tokens <= 64), "every piece fits");
    let inside: Vec<_> = chunks
        .iter()
        .filter(|c| c.text.chars().all(|ch| ch != ' '))
        .collect();
    assert!(inside.len() > 350);
    assert!(inside[1..inside.len() - 1]
        .iter()
        .all(|c| c.text.chars().count() == 256));
}

#[test]
fn special_tokens_count_against_the_budget() {
    let doc = Document::new("s.txt", "txt", sentences(0, 40, 7));
    let opts = ChunkOptions {
        max_tokens: 30,
        overlap: 5,
    };
    let chunks = chunk_checked(&doc, &SpecialsCounter, &opts);
    assert!(chunks.iter().all(|c| c.tokens <= 30));
    // 28 words of budget: four 7-word sentences per chunk, not two.
    assert!(chunks[0].tokens == 30, "{}", chunks[0].tokens);
}

/// Words, plus one token per ten words of the whole text: a counter whose count of a text is
/// more than the sum over its pieces, so chunk sizes must be checked on the finished chunk.
struct SuperAdditive;

impl TokenCounter for SuperAdditive {
    fn count_tokens(&self, text: &str) -> usize {
        let w = text.split_whitespace().count();
        w + w / 10
    }
}

#[test]
fn a_counter_that_is_not_additive_still_gets_chunks_within_max() {
    let doc = Document::new("s.txt", "txt", sentences(0, 200, 1).replace('.', ""));
    let opts = ChunkOptions {
        max_tokens: 40,
        overlap: 4,
    };
    let chunks = chunk_checked(&doc, &SuperAdditive, &opts);
    assert!(chunks.iter().all(|c| c.tokens <= 40));
    assert!(chunks.iter().filter(|c| c.tokens >= 36).count() * 2 > chunks.len());
}

#[test]
fn blank_documents_have_no_chunks() {
    for text in ["", " \n\t "] {
        let doc = Document::new("b.txt", "txt", text);
        assert!(chunk(&doc, &WordCounter, &ChunkOptions::default()).is_empty());
    }
    let doc = Document::new("one.txt", "txt", "  word  ");
    let chunks = chunk(&doc, &WordCounter, &ChunkOptions::default());
    assert_eq!((chunks.len(), chunks[0].start, chunks[0].end), (1, 2, 6));
}

/// About 2 MB of real text (the Debian FAQ, repeated), as plain text and as Markdown with a
/// heading every 20 lines.
fn big_texts() -> (Document, Document) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let txt = gunzip_into(&faq_dir().join("debian-faq.en.txt.gz"), tmp.path());
    let one = std::fs::read_to_string(txt).expect("FAQ text");
    let mut text = String::new();
    while text.len() < 2_000_000 {
        text.push_str(&one);
    }
    let mut md = String::new();
    for (i, line) in text.lines().enumerate() {
        if i % 20 == 0 {
            md.push_str(&format!("\n{} Part {i}\n\n", "#".repeat(1 + (i / 20) % 3)));
        }
        md.push_str(line.trim_start_matches('#'));
        md.push('\n');
    }
    let path = tmp.path().join("big.md");
    std::fs::write(&path, &md).expect("write");
    let md_doc = common::load_one(&path, "md");
    (Document::new("big.txt", "txt", text), md_doc)
}

#[test]
fn two_megabytes_chunk_in_well_under_a_few_seconds() {
    let (txt, md) = big_texts();
    assert!(txt.text.len() >= 2_000_000 && md.sections.len() > 1000);
    for (doc, counter, name) in [
        (&txt, &WordCounter as &dyn TokenCounter, "txt/words"),
        (&txt, &CharCounter as &dyn TokenCounter, "txt/chars"),
        (&md, &WordCounter as &dyn TokenCounter, "md/words"),
    ] {
        let opts = ChunkOptions::default();
        let started = Instant::now();
        let chunks = chunk(doc, counter, &opts);
        let elapsed = started.elapsed();
        eprintln!(
            "{name}: {} bytes -> {} chunks in {elapsed:?}",
            doc.text.len(),
            chunks.len()
        );
        assert!(elapsed.as_secs_f64() < 3.0, "{name}: {elapsed:?}");
        assert!(chunks.len() > 1000);
        check_chunks(doc, &chunks, counter, &opts);
    }
}
