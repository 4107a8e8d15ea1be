//! Seeded mutation fuzzing of the Q&A reader (`read_qa`, what `lorag eval` reads): real-looking
//! JSONL in every shape it accepts (`question`/`answer`, `messages`, `conversations`,
//! `instruction`/`output`, with `id`, `sources` and `answers`), CSV and TSV with quoted fields,
//! BOMs and CRLF, mutated 1-4 times (`lorag_fuzz::mutate`).
//!
//! Each case reads the file on a thread of its own (2 MiB stack) and requires: no panic, no hang
//! (`LORAG_FUZZ_TIMEOUT_S`, default 20 s), the peak of bytes held under 64 MiB + 64 x the input,
//! and
//! - an error names the file; a bad line's names `FILE:LINE` with a line of the file (for JSONL,
//!   the first bad line of a line-by-line model: split at `\n`, `\r` and a first-line BOM
//!   dropped, each non-blank line through `parse_item`, ids unique);
//! - what is read is what evaluation needs: at least one item, ids unique and not blank,
//!   question and answer trimmed and not empty (CSV sources too); JSONL items equal the model's.
//!
//! The suite runs a bounded number of cases; `bench/fuzz.sh` runs many more (`LORAG_FUZZ_CASES`,
//! `LORAG_FUZZ_SEED`; a failing input is kept under `LORAG_FUZZ_OUT` and replayed with
//! `LORAG_FUZZ_ONLY`). The harness is `crates/lorag-fuzz`.

use std::collections::HashSet;
use std::path::Path;

use lorag_eval::qa::{parse_item, MAX_LINE_BYTES};
use lorag_eval::{read_qa, Error, QaItem};
use lorag_fuzz::{peak_of, Target};

#[global_allocator]
static ALLOC: lorag_fuzz::Counting = lorag_fuzz::Counting;

fn bound(len: u64) -> u64 {
    (64 << 20) + 64 * len
}

/// What the JSONL reader should make of `bytes`: the items, or the number of the first bad line.
fn model(bytes: &[u8]) -> Result<Vec<QaItem>, usize> {
    let mut out = Vec::new();
    let mut ids = HashSet::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = if i == 0 {
            line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(line)
        } else {
            line
        };
        let item = match std::str::from_utf8(line) {
            Ok(s) if s.trim().is_empty() => continue,
            Ok(s) => serde_json::from_str::<serde_json::Value>(s)
                .ok()
                .and_then(|v| parse_item(&v, i + 1).ok()),
            Err(_) => None,
        };
        match item {
            Some(item) if ids.insert(item.id.clone()) => out.push(item),
            _ => return Err(i + 1),
        }
    }
    Ok(out)
}

fn check_items(items: &[QaItem], csv: bool) {
    assert!(!items.is_empty());
    let mut ids = HashSet::new();
    for it in items {
        assert!(!it.id.trim().is_empty(), "{it:?}");
        assert!(ids.insert(&it.id), "id {:?} twice", it.id);
        for s in [&it.question, &it.answer] {
            assert!(!s.is_empty() && s.trim() == s, "{it:?}");
        }
        if csv {
            assert!(it.alternatives.is_empty(), "{it:?}");
            for s in &it.sources {
                assert!(!s.is_empty() && s.trim() == s, "{it:?}");
                assert!(!s.contains([';', '|']), "{it:?}");
            }
        }
    }
}

/// Reads `path` (whose bytes are `bytes`) with `read_qa` and checks what comes back; `Err` with
/// the message when the file is refused.
fn read_checked(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let shown = path.display().to_string();
    let csv = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("csv" | "tsv")
    );
    let expected = (!csv).then(|| model(bytes));
    match read_qa(path) {
        Ok(items) => {
            check_items(&items, csv);
            if let Some(expected) = expected {
                assert_eq!(Ok(items), expected);
            }
            Ok(())
        }
        Err(e) => {
            let msg = e.to_string();
            match &e {
                Error::Data { line, .. } => {
                    let lines = 1 + bytes.iter().filter(|&&b| b == b'\n').count();
                    assert!((1..=lines).contains(line), "line {line} of {lines}: {msg}");
                    assert!(msg.starts_with(&format!("{shown}:{line}: ")), "{msg}");
                    if let Some(expected) = expected {
                        assert_eq!(expected.map(|_| ()), Err(*line), "{msg}");
                    }
                }
                Error::Invalid(_) => {
                    assert_eq!(msg, format!("{shown}: no questions in the file"));
                    if let Some(expected) = expected {
                        assert_eq!(expected, Ok(Vec::new()));
                    }
                }
                _ => panic!("unexpected error: {msg}"),
            }
            Err(msg)
        }
    }
}

/// An error message's kind, without the header it found or the CSV parser's details.
fn error_kind(rest: &str) -> String {
    let rest = rest.split(" (found:").next().unwrap_or(rest);
    let rest = rest.split(" CSV error:").next().unwrap_or(rest);
    lorag_fuzz::error_kind(rest)
}

fn fuzz_qa(kind: &str, ext: &'static str, cases: u64, seeds: &[Vec<u8>], tokens: &[&[u8]]) {
    let target = Target {
        kind,
        cases: lorag_fuzz::cases(cases),
        seeds,
        tokens,
        bound,
        error_kind,
    };
    let name = format!("case.{ext}");
    let stats = lorag_fuzz::fuzz(&target, |dir, bytes, _| {
        lorag_fuzz::file_case(dir, &name, bytes, read_checked)
    });
    if lorag_fuzz::only().is_none() {
        assert!(
            stats.ok > 0 && stats.err > 0,
            "{kind}: {} read, {} refused",
            stats.ok,
            stats.err
        );
    }
}

#[test]
fn fuzz_qa_jsonl() {
    let seeds: Vec<Vec<u8>> = vec![
        concat!(
            r#"{"question": " What is the fee for a building permit? ", "answer": "About 5 000 kr for a deck.", "sources": ["bygglov.md", "fees.pdf"]}"#,
            "\n",
            r#"{"id": "s1", "question": "Vem godkänner?", "answer": "Byggnadsnämnden", "answers": ["nämnden", "kommunen"], "sources": "law.pdf"}"#,
            "\n\n",
            r#"{"id": 42, "question": "Escape \"quotes\" \\ \u00e9\ud83d\ude00", "answer": "ok", "sources": null}"#,
            "\n",
        )
        .into(),
        concat!(
            "\u{feff}",
            r#"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who signs?"}, {"role": "assistant", "content": "The manager."}, {"role": "user", "content": "And then?"}, {"role": "assistant", "content": "Filing."}]}"#,
            "\r\n",
            r#"{"conversations": [{"from": "human", "value": "Deadline?"}, {"from": "gpt", "value": "30 days."}], "id": 7}"#,
            "\r\n",
            r#"{"instruction": "Summarise", "input": "clause 4", "output": "It caps fees.", "sources": "law.pdf"}"#,
            "\r\n",
        )
        .into(),
    ];
    let tokens: &[&[u8]] = &[
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b":",
        b",",
        b"\n",
        b"\r\n",
        b"\\",
        b"\\u",
        b"null",
        b"1e999",
        b"\"id\"",
        b"\"question\"",
        b"\"answer\"",
        b"\"answers\"",
        b"\"sources\"",
        b"\"messages\"",
        b"\"role\"",
        b"\"content\"",
        b"\"user\"",
        b"\"assistant\"",
        b"\"conversations\"",
        b"\"instruction\"",
        b"\"output\"",
        b"\xef\xbb\xbf",
    ];
    fuzz_qa("qa-jsonl", "jsonl", 1200, &seeds, tokens);
}

#[test]
fn fuzz_qa_csv() {
    let seeds: Vec<Vec<u8>> = vec![
        b"ID,Question,Answer,Sources\n1,\"What is X, really?\",It is Y.,a.md; b.md\n,Who?,\"Me,\nnobody else\",\n2,\"Say \"\"hi\"\"\",hi,c.md|d.md\n".to_vec(),
        b"\xef\xbb\xbfquestion,answer\r\nVem godk\xc3\xa4nner?,N\xc3\xa4mnden\r\nx,y\r\n".to_vec(),
    ];
    let tokens: &[&[u8]] = &[
        b",",
        b"\"",
        b"\"\"",
        b"\n",
        b"\r\n",
        b";",
        b"|",
        b"question",
        b"answer",
        b"id",
        b"sources",
        b"\xef\xbb\xbf",
    ];
    fuzz_qa("qa-csv", "csv", 600, &seeds, tokens);
}

#[test]
fn fuzz_qa_tsv() {
    let seeds: Vec<Vec<u8>> = vec![
        b"id\tquestion\tanswer\tsources\nq1\tx, y\tz\ta|b\nq2\t\"quoted\ttab\"\tw\t\n".to_vec(),
    ];
    let tokens: &[&[u8]] = &[
        b"\t",
        b"\"",
        b"\n",
        b"\r\n",
        b"|",
        b"question",
        b"answer",
        b"id",
    ];
    fuzz_qa("qa-tsv", "tsv", 300, &seeds, tokens);
}

/// A JSONL line far over `MAX_LINE_BYTES` (40 MiB in one JSON string) after a good one: refused
/// naming file, line and limit, holding no more than about twice the limit.
#[test]
fn an_enormous_line_is_refused_at_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("huge.jsonl");
    let mut text = b"{\"question\": \"q\", \"answer\": \"a\"}\n{\"question\": \"".to_vec();
    text.resize(text.len() + (40 << 20), b'x');
    text.extend(b"\", \"answer\": \"a\"}\n");
    std::fs::write(&path, &text).expect("write");
    drop(text);
    let (r, peak) = peak_of(|| read_qa(&path));
    assert_eq!(
        r.expect_err("a line over the limit").to_string(),
        format!(
            "{}:2: the line is longer than the 16 MiB limit for one line",
            path.display()
        )
    );
    assert!(
        peak <= 2 * MAX_LINE_BYTES as u64 + (1 << 20),
        "held {peak} bytes"
    );
}
