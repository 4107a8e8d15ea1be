//! The company's Q&A: one question, its reference answer and (optionally) the sources that hold
//! the answer.
//!
//! Accepted files:
//! - JSONL, one object per line, in any shape `lorag tune` reads — OpenAI `messages`, Alpaca
//!   `instruction`/`input`/`output`, ShareGPT `conversations` of `from`/`value` — where the first
//!   user turn is the question and the assistant turn after it the answer; or
//!   `{"question", "answer", "sources"?, "id"?, "answers"?}` (`sources`: a string or an array of
//!   strings; `answers`: further acceptable reference answers, e.g. SQuAD's). A top-level
//!   `sources` is read in every shape.
//! - CSV (`.csv`, or `.tsv` with tabs) with a header naming `question` and `answer` columns, and
//!   optionally `id` and `sources` (several separated by `;` or `|`). Column names are matched
//!   case-insensitively.
//!
//! Blank lines are skipped. A bad line is [`Error::Data`] (`FILE:LINE: reason`); so is a
//! repeated `id`. Items without an `id` get `q<LINE>`.

use crate::{io_err, Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;

/// One question with its reference answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QaItem {
    /// Stable name of the question: the file's `id`, else `q<LINE>`.
    pub id: String,
    pub question: String,
    /// The reference answer.
    pub answer: String,
    /// Sources (document names or paths) that hold the answer; empty when unknown.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Further acceptable answers; scores take the best over `answer` and these.
    #[serde(default, rename = "answers", skip_serializing_if = "Vec::is_empty")]
    pub alternatives: Vec<String>,
}

impl QaItem {
    /// `answer` followed by the alternatives: what a prediction is scored against.
    pub fn references(&self) -> Vec<&str> {
        std::iter::once(self.answer.as_str())
            .chain(self.alternatives.iter().map(String::as_str))
            .collect()
    }
}

/// Read a Q&A file (CSV by its `.csv`/`.tsv` extension, JSONL otherwise). An empty file is an
/// error.
pub fn read_qa(path: &Path) -> Result<Vec<QaItem>> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let items = match ext.as_str() {
        "csv" => read_csv(path, b',')?,
        "tsv" => read_csv(path, b'\t')?,
        _ => read_jsonl(path)?,
    };
    if items.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no questions in the file",
            path.display()
        )));
    }
    Ok(items)
}

fn bad(path: &Path, line: usize, msg: impl Into<String>) -> Error {
    Error::Data {
        path: path.to_path_buf(),
        line,
        msg: msg.into(),
    }
}

/// The longest line [`read_jsonl`] reads (16 MiB): a longer one is refused, naming file and
/// line, after reading no more than this much of it.
pub use lorag_core::io::MAX_LINE_BYTES;
use lorag_core::io::{human_bytes, next_line, Line};

/// Read a JSONL Q&A file, line by line. A line that is not UTF-8, or longer than
/// [`MAX_LINE_BYTES`], is a bad line like any other.
pub fn read_jsonl(path: &Path) -> Result<Vec<QaItem>> {
    read_jsonl_limited(path, MAX_LINE_BYTES)
}

fn read_jsonl_limited(path: &Path, limit: usize) -> Result<Vec<QaItem>> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut reader = std::io::BufReader::new(file);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut ids = HashSet::new();
    let mut n = 0;
    loop {
        let line = next_line(&mut reader, &mut buf, limit).map_err(io_err(path))?;
        n += 1;
        if matches!(line, Line::End) {
            break;
        }
        if matches!(line, Line::TooLong) {
            return Err(bad(
                path,
                n,
                format!(
                    "the line is longer than the {} limit for one line",
                    human_bytes(limit)
                ),
            ));
        }
        let bytes = if n == 1 {
            buf.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&buf)
        } else {
            &buf
        };
        let line = std::str::from_utf8(bytes).map_err(|e| {
            bad(
                path,
                n,
                format!(
                    "not UTF-8 text (invalid bytes after byte {} of the line)",
                    e.valid_up_to()
                ),
            )
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let item = serde_json::from_str::<Value>(line)
            .map_err(|e| format!("invalid JSON: {e}"))
            .and_then(|v| parse_item(&v, n))
            .map_err(|e| bad(path, n, e))?;
        if !ids.insert(item.id.clone()) {
            return Err(bad(path, n, format!("id {:?} appears twice", item.id)));
        }
        out.push(item);
    }
    Ok(out)
}

fn str_field<'a>(v: &'a Value, key: &str) -> std::result::Result<&'a str, String> {
    match v.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!("field {key:?} must be a string, found {other}")),
        None => Err(format!("field {key:?} is missing")),
    }
}

fn string_list(v: &Value, key: &str) -> std::result::Result<Vec<String>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("field {key:?} must hold strings, found {x}"))
            })
            .collect(),
        Some(other) => Err(format!(
            "field {key:?} must be a string or an array of strings, found {other}"
        )),
    }
}

/// The first user turn and the assistant turn that follows it, from `(role, text)` turns.
fn first_exchange(
    turns: &[(String, String)],
    what: &str,
) -> std::result::Result<(String, String), String> {
    let is_user = |r: &str| matches!(r, "user" | "human");
    let is_assistant = |r: &str| matches!(r, "assistant" | "gpt" | "bot" | "model");
    let q = turns
        .iter()
        .position(|(r, _)| is_user(r))
        .ok_or_else(|| format!("{what} has no user turn"))?;
    let a = turns[q + 1..]
        .iter()
        .find(|(r, _)| is_assistant(r))
        .ok_or_else(|| format!("{what} has no assistant turn after the first user turn"))?;
    Ok((turns[q].1.clone(), a.1.clone()))
}

fn turns(
    v: &Value,
    key: &str,
    role: &str,
    text: &str,
) -> std::result::Result<Vec<(String, String)>, String> {
    let arr = v
        .get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{key:?} must be an array"))?;
    arr.iter()
        .enumerate()
        .map(|(i, m)| {
            let r = str_field(m, role).map_err(|e| format!("{key}[{i}]: {e}"))?;
            let t = str_field(m, text).map_err(|e| format!("{key}[{i}]: {e}"))?;
            Ok((r.to_string(), t.to_string()))
        })
        .collect()
}

/// Parse one JSON object (line `line` of its file) into a [`QaItem`].
pub fn parse_item(v: &Value, line: usize) -> std::result::Result<QaItem, String> {
    if !v.is_object() {
        return Err("a line must be a JSON object".into());
    }
    let (question, answer) = if v.get("question").is_some() {
        (
            str_field(v, "question")?.to_string(),
            str_field(v, "answer")?.to_string(),
        )
    } else if v.get("messages").is_some() {
        first_exchange(&turns(v, "messages", "role", "content")?, "\"messages\"")?
    } else if v.get("conversations").is_some() {
        first_exchange(
            &turns(v, "conversations", "from", "value")?,
            "\"conversations\"",
        )?
    } else if v.get("instruction").is_some() {
        let ins = str_field(v, "instruction")?;
        let input = match v.get("input") {
            None | Some(Value::Null) => "",
            Some(Value::String(s)) => s,
            Some(o) => return Err(format!("field \"input\" must be a string, found {o}")),
        };
        let q = if input.trim().is_empty() {
            ins.to_string()
        } else {
            format!("{ins}\n\n{input}")
        };
        (q, str_field(v, "output")?.to_string())
    } else {
        return Err("unknown format: expected \"question\"/\"answer\", \"messages\" (OpenAI), \"conversations\" (ShareGPT) or \"instruction\"/\"output\" (Alpaca)".into());
    };
    if question.trim().is_empty() {
        return Err("the question is empty".into());
    }
    if answer.trim().is_empty() {
        return Err("the answer is empty".into());
    }
    let id = match v.get("id") {
        None | Some(Value::Null) => format!("q{line}"),
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(format!(
                "field \"id\" must be a non-empty string or a number, found {other}"
            ))
        }
    };
    Ok(QaItem {
        id,
        question: question.trim().to_string(),
        answer: answer.trim().to_string(),
        sources: string_list(v, "sources")?,
        alternatives: string_list(v, "answers")?,
    })
}

/// Read a CSV (or TSV) Q&A file with a header row.
pub fn read_csv(path: &Path, delimiter: u8) -> Result<Vec<QaItem>> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    // csv's own line numbers are off by one after CRLF line ends: count from the byte offset.
    let newlines: Vec<usize> = bytes
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .map(|(i, _)| i)
        .collect();
    let line_at = |pos: Option<&csv::Position>| {
        let Some(p) = pos else { return 0 };
        let mut at = p.byte() as usize;
        while at < bytes.len() && matches!(bytes[at], b'\r' | b'\n') {
            at += 1;
        }
        1 + newlines.partition_point(|&n| n < at)
    };
    let mut rd = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(false)
        .from_reader(bytes.as_slice());
    let header = rd
        .headers()
        .map_err(|e| bad(path, 1, format!("cannot read the header: {e}")))?
        .clone();
    let col = |name: &str| {
        header.iter().position(|h| {
            h.trim()
                .trim_start_matches('\u{feff}')
                .eq_ignore_ascii_case(name)
        })
    };
    let found = || header.iter().collect::<Vec<_>>().join(", ");
    let q = col("question").ok_or_else(|| {
        bad(
            path,
            1,
            format!("no \"question\" column (found: {})", found()),
        )
    })?;
    let a = col("answer").ok_or_else(|| {
        bad(
            path,
            1,
            format!("no \"answer\" column (found: {})", found()),
        )
    })?;
    let (id_col, src_col) = (col("id"), col("sources"));
    let mut out = Vec::new();
    let mut ids = HashSet::new();
    for rec in rd.records() {
        let rec =
            rec.map_err(|e| bad(path, line_at(e.position()), format!("bad CSV record: {e}")))?;
        let line = line_at(rec.position());
        let field = |i: usize| rec.get(i).unwrap_or("").trim();
        if rec.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if field(q).is_empty() {
            return Err(bad(path, line, "the question is empty"));
        }
        if field(a).is_empty() {
            return Err(bad(path, line, "the answer is empty"));
        }
        let id = match id_col.map(field) {
            Some(s) if !s.is_empty() => s.to_string(),
            _ => format!("q{line}"),
        };
        if !ids.insert(id.clone()) {
            return Err(bad(path, line, format!("id {id:?} appears twice")));
        }
        let sources = src_col
            .map(field)
            .unwrap_or("")
            .split([';', '|'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        out.push(QaItem {
            id,
            question: field(q).to_string(),
            answer: field(a).to_string(),
            sources,
            alternatives: Vec::new(),
        });
    }
    Ok(out)
}

/// Write items as JSONL in the `{"id","question","answer","sources"}` shape (readable back by
/// [`read_qa`]), atomically.
pub fn write_jsonl(path: &Path, items: &[QaItem]) -> Result<()> {
    let mut s = String::new();
    for it in items {
        s.push_str(&serde_json::to_string(it).expect("a QaItem always serializes"));
        s.push('\n');
    }
    crate::write_atomic(path, s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reads_every_jsonl_shape() {
        let d = tempfile::tempdir().unwrap();
        let p = file(
            &d,
            "qa.jsonl",
            concat!(
                r#"{"question":" What is the fee? ","answer":"10 EUR","sources":["fees.md"]}"#,
                "\n",
                "\n",
                r#"{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Who signs?"},{"role":"assistant","content":"The manager."},{"role":"user","content":"And then?"},{"role":"assistant","content":"Filing."}]}"#,
                "\n",
                r#"{"instruction":"Summarise","input":"clause 4","output":"It caps fees.","sources":"law.pdf"}"#,
                "\n",
                r#"{"conversations":[{"from":"human","value":"Deadline?"},{"from":"gpt","value":"30 days."}],"id":7}"#,
                "\n",
                r#"{"id":"s1","question":"Q?","answer":"A","answers":["a.","A!"]}"#,
                "\n",
            ),
        );
        let items = read_qa(&p).unwrap();
        assert_eq!(items.len(), 5);
        assert_eq!(items[0].id, "q1");
        assert_eq!(items[0].question, "What is the fee?");
        assert_eq!(items[0].sources, vec!["fees.md"]);
        assert_eq!(items[1].id, "q3");
        assert_eq!(
            (items[1].question.as_str(), items[1].answer.as_str()),
            ("Who signs?", "The manager.")
        );
        assert_eq!(items[2].question, "Summarise\n\nclause 4");
        assert_eq!(items[2].answer, "It caps fees.");
        assert_eq!(items[2].sources, vec!["law.pdf"]);
        assert_eq!(items[3].id, "7");
        assert_eq!(items[3].answer, "30 days.");
        assert_eq!(items[4].references(), vec!["A", "a.", "A!"]);
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let cases = [
            ("{\"question\":\"a\",\"answer\":\"b\"}\n{oops\n", 2, "invalid JSON"),
            ("\n\n{\"question\":\"a\"}\n", 3, "\"answer\" is missing"),
            ("{\"foo\":1}\n", 1, "unknown format"),
            ("{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}\n", 1, "no assistant turn"),
            ("{\"question\":\"  \",\"answer\":\"b\"}\n", 1, "question is empty"),
            ("{\"question\":\"q\",\"answer\":\"b\",\"sources\":[1]}\n", 1, "must hold strings"),
            ("{\"id\":\"x\",\"question\":\"q\",\"answer\":\"b\"}\n{\"id\":\"x\",\"question\":\"r\",\"answer\":\"c\"}\n", 2, "appears twice"),
            ("[1,2]\n", 1, "JSON object"),
        ];
        for (text, line, reason) in cases {
            let p = file(&d, "bad.jsonl", text);
            let e = read_qa(&p).unwrap_err().to_string();
            let want = format!("{}:{line}: ", p.display());
            assert!(
                e.starts_with(&want) && e.contains(reason),
                "{text:?} gave {e}"
            );
        }
        let p = file(
            &d,
            "bom.jsonl",
            "\u{feff}{\"question\":\"q\",\"answer\":\"a\"}\r\n",
        );
        assert_eq!(read_qa(&p).unwrap()[0].answer, "a");
        let p = file(&d, "empty.jsonl", "\n\n");
        assert!(read_qa(&p)
            .unwrap_err()
            .to_string()
            .contains("no questions"));
    }

    #[test]
    fn a_line_over_the_limit_or_not_utf8_names_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let ok = r#"{"question":"q","answer":"a"}"#;
        let long = format!(r#"{{"question":"{}","answer":"a"}}"#, "x".repeat(300));
        for end in ["\n", "\r\n", ""] {
            let p = file(&d, "long.jsonl", &format!("{ok}\n\n{long}{end}"));
            let e = read_jsonl_limited(&p, 256).unwrap_err().to_string();
            assert_eq!(
                e,
                format!(
                    "{}:3: the line is longer than the 256-byte limit for one line",
                    p.display()
                )
            );
            // The limit is on the line's bytes, without its end.
            assert_eq!(read_jsonl_limited(&p, long.len()).unwrap().len(), 2);
            assert!(read_jsonl_limited(&p, long.len() - 1).is_err());
        }
        assert_eq!(human_bytes(MAX_LINE_BYTES), "16 MiB");
        let p = d.path().join("latin1.jsonl");
        std::fs::write(&p, b"{\"question\":\"q\",\"answer\":\"caf\xe9\"}\n").unwrap();
        let e = read_qa(&p).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}:1: not UTF-8 text", p.display())),
            "{e}"
        );
    }

    #[test]
    fn reads_csv_and_reports_bad_rows() {
        let d = tempfile::tempdir().unwrap();
        let p = file(
            &d,
            "qa.csv",
            "ID,Question,Answer,Sources\n1,\"What is X, really?\",It is Y.,a.md; b.md\n,Who?,\"Me,\nnobody else\",\n",
        );
        let items = read_qa(&p).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].id, "1");
        assert_eq!(items[0].question, "What is X, really?");
        assert_eq!(items[0].sources, vec!["a.md", "b.md"]);
        assert_eq!(items[1].id, "q3");
        assert_eq!(items[1].answer, "Me,\nnobody else");
        assert!(items[1].sources.is_empty());

        let p = file(&d, "bom.csv", "\u{feff}Question,Answer\r\nx,y\r\n");
        let p2 = file(&d, "crlf.csv", "question,answer\r\nx,y\r\nz,w\r\n");
        let ids: Vec<String> = read_qa(&p2).unwrap().into_iter().map(|x| x.id).collect();
        assert_eq!(ids, ["q2", "q3"]);
        assert_eq!(read_qa(&p).unwrap()[0].id, "q2");
        let p = file(&d, "qa.tsv", "question\tanswer\tsources\nx, y\tz\ta|b\n");
        let t = read_qa(&p).unwrap();
        assert_eq!((t[0].question.as_str(), t[0].sources.len()), ("x, y", 2));
        let p = file(&d, "nocol.csv", "q,a\nx,y\n");
        let e = read_qa(&p).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}:1: no \"question\" column", p.display())),
            "{e}"
        );
        let p = file(&d, "short.csv", "question,answer\nx,y\nz\n");
        let e = read_qa(&p).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:3: ", p.display())), "{e}");
        let p = file(&d, "empty.csv", "question,answer\nx,\n");
        let e = read_qa(&p).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}:2: the answer is empty", p.display())),
            "{e}"
        );
    }

    #[test]
    fn written_items_read_back() {
        let d = tempfile::tempdir().unwrap();
        let items = vec![QaItem {
            id: "a\"1".into(),
            question: "Q <1>?".into(),
            answer: "A\nB".into(),
            sources: vec!["x.md".into()],
            alternatives: vec!["alt".into()],
        }];
        let p = d.path().join("out.jsonl");
        write_jsonl(&p, &items).unwrap();
        assert_eq!(read_qa(&p).unwrap(), items);
    }
}
