//! Seeded mutation fuzzing of the training-data reader (`data::read_jsonl`, what `lorag tune`
//! and `lorag rag-data` read): real-looking JSONL in the OpenAI `messages`, Alpaca and ShareGPT
//! shapes, mixed, with blank lines, CRLF, a BOM and non-ASCII text, mutated 1-4 times
//! (`lorag_fuzz::mutate`: bit flips, interesting bytes and numbers, JSON tokens, deletions,
//! duplications, long repeats, truncation).
//!
//! Each case reads the file twice, with `skip_bad` false and true, on a thread of its own (2 MiB
//! stack) and requires: no panic, no hang (`LORAG_FUZZ_TIMEOUT_S`, default 20 s), the peak of
//! bytes held under 64 MiB + 64 x the input, and
//! - an error names the file; a bad line's names `FILE:LINE`, and the line is the first bad one;
//!   with `skip_bad` no line is an error (only "no usable conversations" or I/O);
//! - what is read agrees with a line-by-line model (split at `\n`, `\r` and a first-line BOM
//!   dropped, each non-blank line through `parse_conversation`): the same conversations in the
//!   same order, every non-blank line counted as a conversation or a skipped bad line;
//! - every conversation is what training needs: at least one assistant reply, and a prompt
//!   before the first.
//!
//! The suite runs a bounded number of cases; `bench/fuzz.sh` runs many more (`LORAG_FUZZ_CASES`,
//! `LORAG_FUZZ_SEED`; a failing input is kept under `LORAG_FUZZ_OUT` and replayed with
//! `LORAG_FUZZ_ONLY`). The harness is `crates/lorag-fuzz`.

use std::path::Path;

use lorag_fuzz::{peak_of, Target};
use lorag_llm::{Message, Role};
use lorag_train::data::{parse_conversation, read_jsonl, DataStats, MAX_LINE_BYTES};
use lorag_train::Error;

#[global_allocator]
static ALLOC: lorag_fuzz::Counting = lorag_fuzz::Counting;

fn bound(len: u64) -> u64 {
    (64 << 20) + 64 * len
}

/// What the reader should make of each non-blank line: `(line number, conversation or not)`.
fn model(bytes: &[u8]) -> Vec<(usize, Option<Vec<Message>>)> {
    let mut out = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = if i == 0 {
            line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(line)
        } else {
            line
        };
        let conv = match std::str::from_utf8(line) {
            Ok(s) if s.trim().is_empty() => continue,
            Ok(s) => serde_json::from_str::<serde_json::Value>(s)
                .ok()
                .and_then(|v| parse_conversation(&v).ok())
                .map(|(_, msgs)| msgs),
            Err(_) => None,
        };
        out.push((i + 1, conv));
    }
    out
}

fn check_conversation(msgs: &[Message]) {
    assert!(
        msgs.iter().any(|m| m.role == Role::Assistant),
        "a conversation without an assistant reply: {msgs:?}"
    );
    assert_ne!(
        msgs.first().map(|m| m.role),
        Some(Role::Assistant),
        "a conversation that starts with the reply: {msgs:?}"
    );
}

fn check_stats(stats: &DataStats, n: usize) {
    assert_eq!(
        stats.messages + stats.alpaca + stats.sharegpt,
        n,
        "{stats:?}"
    );
    assert_eq!(stats.conversations, n, "{stats:?}");
    assert_eq!(stats.lines, n + stats.skipped_bad, "{stats:?}");
}

/// Reads `path` (whose bytes are `bytes`) strictly and with `skip_bad`, checking both against
/// [`model`]; `Err` with the strict read's message when it refused the file.
fn read_checked(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let shown = path.display().to_string();
    let expected = model(bytes);
    let good: Vec<&Vec<Message>> = expected.iter().filter_map(|(_, c)| c.as_ref()).collect();
    let first_bad = expected.iter().find(|(_, c)| c.is_none()).map(|(n, _)| *n);

    let mut lax_stats = DataStats::default();
    match read_jsonl(path, true, &mut lax_stats) {
        Ok(convs) => {
            assert_eq!(convs.iter().collect::<Vec<_>>(), good);
            convs.iter().for_each(|c| check_conversation(c));
            check_stats(&lax_stats, convs.len());
            assert_eq!(lax_stats.lines, expected.len());
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                matches!(e, Error::Invalid(_)) && good.is_empty(),
                "skip_bad refused the file ({} good lines): {msg}",
                good.len()
            );
            assert_eq!(
                msg,
                format!(
                    "{shown}: no usable conversations ({} lines, {} malformed)",
                    expected.len(),
                    expected.len()
                )
            );
        }
    }

    let mut stats = DataStats::default();
    match read_jsonl(path, false, &mut stats) {
        Ok(convs) => {
            assert_eq!(first_bad, None, "a bad line was read");
            assert_eq!(convs.iter().collect::<Vec<_>>(), good);
            check_stats(&stats, convs.len());
            assert_eq!(stats.skipped_bad, 0);
            Ok(())
        }
        Err(e) => {
            let msg = e.to_string();
            match (&e, first_bad) {
                (Error::Data { line, .. }, Some(bad)) => {
                    assert_eq!(*line, bad, "{msg}");
                    assert!(msg.starts_with(&format!("{shown}:{bad}: ")), "{msg}");
                }
                (Error::Invalid(_), None) => {
                    assert!(good.is_empty(), "{msg}");
                    assert!(msg.starts_with(&format!("{shown}: ")), "{msg}");
                }
                _ => panic!("unexpected error (first bad line {first_bad:?}): {msg}"),
            }
            Err(msg)
        }
    }
}

/// An error message's kind: quoted text (a mistyped role, say) dropped, then the first words.
fn error_kind(rest: &str) -> String {
    let unquoted: String = rest
        .split('"')
        .enumerate()
        .map(|(i, part)| if i % 2 == 0 { part } else { "\"…\"" })
        .collect();
    lorag_fuzz::error_kind(&unquoted)
}

#[test]
fn fuzz_training_jsonl() {
    let seeds: Vec<Vec<u8>> = vec![
        concat!(
            r#"{"messages": [{"role": "system", "content": "You answer questions about the handbook."}, {"role": "user", "content": "How many days of annual leave do I get?"}, {"role": "assistant", "content": "25 days a year, plus public holidays."}]}"#,
            "\n",
            r#"{"messages": [{"role": "user", "content": "Vem godkänner bygglov?"}, {"role": "assistant", "content": "Kommunens byggnadsnämnd."}, {"role": "user", "content": "Och kostnaden?"}, {"role": "assistant", "content": "Cirka 5 000 kr för en altan."}]}"#,
            "\n\n",
            r#"{"messages": [{"role": "user", "content": "Escape \"quotes\" \\ and \u00e9\ud83d\ude00\n newlines"}, {"role": "model", "content": "ok"}]}"#,
            "\n",
        )
        .into(),
        concat!(
            r#"{"instruction": "Summarise the clause.", "input": "Clause 4: fees are capped at 10 EUR.", "output": "Fees cannot exceed 10 EUR."}"#,
            "\r\n",
            r#"{"instruction": "What is the notice period?", "input": "", "output": "One month.", "system": "Be brief."}"#,
            "\r\n",
            r#"{"instruction": "Translate 'hello'", "input": null, "output": "hej"}"#,
            "\r\n",
        )
        .into(),
        concat!(
            "\u{feff}",
            r#"{"conversations": [{"from": "human", "value": "Deadline for the form?"}, {"from": "gpt", "value": "30 days after the decision."}]}"#,
            "\n",
            r#"{"conversations": [{"from": "system", "value": "Answer in Swedish."}, {"from": "human", "value": "Hej"}, {"from": "gpt", "value": "Hej! Hur kan jag hjälpa dig?"}], "id": 7}"#,
            "\n",
        )
        .into(),
        concat!(
            r#"{"messages": [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]}"#,
            "\n",
            r#"{"instruction": "q2", "output": "a2"}"#,
            "\n",
            r#"{"conversations": [{"from": "user", "value": "q3"}, {"from": "bot", "value": "a3"}]}"#,
            "\n",
            r#"{"messages": [{"role": "user", "content": "no reply"}]}"#,
            "\n",
            r#"{"messages": [{"role": "wizard", "content": "x"}]}"#,
            "\n",
            "   \t\n",
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
        b"\\ud800",
        b"null",
        b"true",
        b"1e999",
        b"\"role\"",
        b"\"content\"",
        b"\"messages\"",
        b"\"conversations\"",
        b"\"from\"",
        b"\"value\"",
        b"\"instruction\"",
        b"\"input\"",
        b"\"output\"",
        b"\"system\"",
        b"\"user\"",
        b"\"assistant\"",
        b"\"human\"",
        b"\"gpt\"",
        b"{\"role\": \"assistant\", \"content\": \"x\"}, ",
        b"\xef\xbb\xbf",
    ];
    let target = Target {
        kind: "tune",
        cases: lorag_fuzz::cases(1500),
        seeds: &seeds,
        tokens,
        bound,
        error_kind,
    };
    let stats = lorag_fuzz::fuzz(&target, |dir, bytes, _| {
        lorag_fuzz::file_case(dir, "case.jsonl", bytes, read_checked)
    });
    if lorag_fuzz::only().is_none() {
        assert!(
            stats.ok > 0 && stats.err > 0,
            "{} read, {} refused",
            stats.ok,
            stats.err
        );
    }
}

/// A line far over `MAX_LINE_BYTES` (40 MiB of text in one JSON string) between two good
/// ones: refused naming file, line and limit, or skipped with `skip_bad`; the reader never holds
/// more than about twice the limit, however long the line.
#[test]
fn an_enormous_line_is_refused_at_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("huge.jsonl");
    let good = r#"{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}"#;
    let mut text = format!("{good}\n{{\"instruction\": \"").into_bytes();
    text.resize(text.len() + (40 << 20), b'a');
    text.extend(format!("\", \"output\": \"x\"}}\n{good}\n").as_bytes());
    std::fs::write(&path, &text).expect("write");
    drop(text);

    let (r, peak) = peak_of(|| read_jsonl(&path, false, &mut DataStats::default()));
    let msg = r.expect_err("a line over the limit").to_string();
    assert_eq!(
        msg,
        format!(
            "{}:2: the line is longer than the 16 MiB limit for one line; shorten it, or skip it with --skip-bad",
            path.display()
        )
    );
    assert!(
        peak <= 2 * MAX_LINE_BYTES as u64 + (1 << 20),
        "held {peak} bytes"
    );

    let mut stats = DataStats::default();
    let (r, peak) = peak_of(|| read_jsonl(&path, true, &mut stats));
    assert_eq!(r.expect("skip_bad skips it").len(), 2);
    assert_eq!((stats.lines, stats.skipped_bad), (3, 1));
    assert!(
        peak <= 2 * MAX_LINE_BYTES as u64 + (1 << 20),
        "held {peak} bytes"
    );
}
