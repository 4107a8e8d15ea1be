//! Training data: JSONL conversations in OpenAI `messages`, Alpaca (`instruction`/`input`/
//! `output`) or ShareGPT (`conversations` of `from`/`value`) form, detected line by line from the
//! fields. Each conversation is rendered with the model's chat template through llama.cpp and
//! tokenized with llama.cpp's tokenizer on the same GGUF, so training sees exactly the tokens
//! serving will. Loss is on assistant tokens only.
//!
//! Assistant spans come from rendering prefixes of the conversation: the text of
//! `render(messages[..k], add_assistant)` (the prompt as served) and of `render(messages[..=k])`
//! are prefixes of the full rendering, and the tokens between them are the k-th reply (with its
//! end-of-turn marker). Each piece is tokenized on its own, as the prompt is at inference.

use crate::rng::Rng;
use crate::{Error, Result};
use lorag_llm::{Engine, Message, Role};
use serde_json::Value;
use std::path::Path;

/// One tokenized training sequence. `mask[i]`: token i is a reply token whose prediction counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub tokens: Vec<i32>,
    pub mask: Vec<bool>,
}

impl Example {
    /// Tokens whose prediction counts (a token at position 0 has nothing to predict it from).
    pub fn n_targets(&self) -> usize {
        self.mask.iter().skip(1).filter(|&&m| m).count()
    }
}

/// The JSONL shapes we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Messages,
    Alpaca,
    ShareGpt,
}

#[derive(Debug, Clone)]
pub struct DataOptions {
    /// Longer sequences are cut to this many tokens (those left with no reply token are dropped).
    pub max_seq: usize,
    /// Fraction of conversations held out for evaluation.
    pub eval_split: f32,
    pub seed: u64,
    /// Count and skip malformed lines instead of failing on the first.
    pub skip_bad: bool,
    /// A llama.cpp template name or Jinja source overriding the model's own.
    pub chat_template: Option<String>,
}

impl Default for DataOptions {
    fn default() -> Self {
        Self {
            max_seq: 512,
            eval_split: 0.1,
            seed: 42,
            skip_bad: false,
            chat_template: None,
        }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DataStats {
    pub lines: usize,
    pub conversations: usize,
    pub skipped_bad: usize,
    pub truncated: usize,
    /// Dropped because no reply token fit in `max_seq`.
    pub dropped_too_long: usize,
    pub messages: usize,
    pub alpaca: usize,
    pub sharegpt: usize,
    pub train_tokens: usize,
    pub train_target_tokens: usize,
}

pub struct Dataset {
    pub train: Vec<Example>,
    pub eval: Vec<Example>,
    pub stats: DataStats,
}

fn bad(path: &Path, line: usize, msg: impl Into<String>) -> Error {
    Error::Data {
        path: path.to_path_buf(),
        line,
        msg: msg.into(),
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> std::result::Result<&'a str, String> {
    match v.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!("field {key:?} must be a string, found {other}")),
        None => Err(format!("field {key:?} is missing")),
    }
}

fn role(name: &str) -> std::result::Result<Role, String> {
    match name {
        "system" => Ok(Role::System),
        "user" | "human" => Ok(Role::User),
        "assistant" | "gpt" | "bot" | "model" => Ok(Role::Assistant),
        other => Err(format!(
            "unknown role {other:?} (expected system, user/human or assistant/gpt)"
        )),
    }
}

/// Parse one JSON object into a conversation, detecting its format from the fields.
pub fn parse_conversation(v: &Value) -> std::result::Result<(Format, Vec<Message>), String> {
    if !v.is_object() {
        return Err("a line must be a JSON object".into());
    }
    let (format, msgs) = if let Some(m) = v.get("messages") {
        let arr = m.as_array().ok_or("\"messages\" must be an array")?;
        let mut out = Vec::new();
        for (i, m) in arr.iter().enumerate() {
            let r = role(str_field(m, "role").map_err(|e| format!("messages[{i}]: {e}"))?)
                .map_err(|e| format!("messages[{i}]: {e}"))?;
            let c = str_field(m, "content").map_err(|e| format!("messages[{i}]: {e}"))?;
            out.push(Message {
                role: r,
                content: c.to_string(),
            });
        }
        (Format::Messages, out)
    } else if let Some(c) = v.get("conversations") {
        let arr = c.as_array().ok_or("\"conversations\" must be an array")?;
        let mut out = Vec::new();
        for (i, m) in arr.iter().enumerate() {
            let r = role(str_field(m, "from").map_err(|e| format!("conversations[{i}]: {e}"))?)
                .map_err(|e| format!("conversations[{i}]: {e}"))?;
            let c = str_field(m, "value").map_err(|e| format!("conversations[{i}]: {e}"))?;
            out.push(Message {
                role: r,
                content: c.to_string(),
            });
        }
        (Format::ShareGpt, out)
    } else if v.get("instruction").is_some() {
        let ins = str_field(v, "instruction")?;
        let input = match v.get("input") {
            None | Some(Value::Null) => "",
            Some(Value::String(s)) => s,
            Some(o) => return Err(format!("field \"input\" must be a string, found {o}")),
        };
        let out = str_field(v, "output")?;
        let user = if input.trim().is_empty() {
            ins.to_string()
        } else {
            format!("{ins}\n\n{input}")
        };
        let mut msgs = Vec::new();
        if let Some(Value::String(s)) = v.get("system") {
            msgs.push(Message::system(s.clone()));
        }
        msgs.push(Message::user(user));
        msgs.push(Message::assistant(out));
        (Format::Alpaca, msgs)
    } else {
        return Err(
            "unknown format: expected \"messages\" (OpenAI), \"conversations\" (ShareGPT) or \"instruction\"/\"output\" (Alpaca)"
                .into(),
        );
    };
    if !msgs.iter().any(|m| m.role == Role::Assistant) {
        return Err("the conversation has no assistant reply to train on".into());
    }
    if msgs.first().map(|m| m.role) == Some(Role::Assistant) {
        return Err("the conversation starts with an assistant reply (no prompt)".into());
    }
    Ok((format, msgs))
}

/// The longest line [`read_jsonl`] reads (16 MiB): a longer one is refused, naming file and
/// line, after reading no more than this much of it.
pub use lorag_core::io::MAX_LINE_BYTES;
use lorag_core::io::{human_bytes, next_line, Line};

/// Read a JSONL file into conversations, line by line (a UTF-8 BOM at the start is skipped). A
/// malformed line (not UTF-8, not JSON, not a conversation, or longer than
/// [`MAX_LINE_BYTES`]) is an error naming file and line, unless `skip_bad` (then it is counted
/// in `stats.skipped_bad`).
pub fn read_jsonl(path: &Path, skip_bad: bool, stats: &mut DataStats) -> Result<Vec<Vec<Message>>> {
    read_jsonl_limited(path, skip_bad, stats, MAX_LINE_BYTES)
}

fn read_jsonl_limited(
    path: &Path,
    skip_bad: bool,
    stats: &mut DataStats,
    limit: usize,
) -> Result<Vec<Vec<Message>>> {
    let file = std::fs::File::open(path).map_err(crate::io_err(path))?;
    let mut reader = std::io::BufReader::new(file);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut n = 0;
    loop {
        let line = next_line(&mut reader, &mut buf, limit).map_err(crate::io_err(path))?;
        n += 1;
        let parsed = match line {
            Line::End => break,
            Line::TooLong => Err(format!(
                "the line is longer than the {} limit for one line; shorten it, or skip it with --skip-bad",
                human_bytes(limit)
            )),
            Line::Text => {
                let bytes = if n == 1 {
                    buf.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&buf)
                } else {
                    &buf
                };
                match std::str::from_utf8(bytes) {
                    Ok(line) if line.trim().is_empty() => continue,
                    Ok(line) => serde_json::from_str::<Value>(line)
                        .map_err(|e| format!("invalid JSON: {e}"))
                        .and_then(|v| parse_conversation(&v)),
                    Err(e) => Err(format!(
                        "not UTF-8 text (invalid bytes after byte {} of the line)",
                        e.valid_up_to()
                    )),
                }
            }
        };
        stats.lines += 1;
        match parsed {
            Ok((f, msgs)) => {
                match f {
                    Format::Messages => stats.messages += 1,
                    Format::Alpaca => stats.alpaca += 1,
                    Format::ShareGpt => stats.sharegpt += 1,
                }
                out.push(msgs);
            }
            Err(_) if skip_bad => stats.skipped_bad += 1,
            Err(e) => return Err(bad(path, n, e)),
        }
    }
    if out.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no usable conversations ({} lines, {} malformed)",
            path.display(),
            stats.lines,
            stats.skipped_bad
        )));
    }
    stats.conversations = out.len();
    Ok(out)
}

/// Render and tokenize one conversation, with the reply mask. `None` when truncation to
/// `max_seq` leaves no reply token.
pub fn tokenize_conversation(
    engine: &Engine,
    msgs: &[Message],
    template: Option<&str>,
    max_seq: usize,
) -> Result<(Option<Example>, bool)> {
    // Cut points: (text so far, does the piece ending here belong to a reply).
    let mut cuts: Vec<(String, bool)> = Vec::new();
    for (k, m) in msgs.iter().enumerate() {
        if m.role == Role::Assistant {
            cuts.push((engine.render_chat(&msgs[..k], template, true)?, false));
            cuts.push((engine.render_chat(&msgs[..=k], template, false)?, true));
        }
    }
    let mut tokens = Vec::new();
    let mut mask = Vec::new();
    let mut done = String::new();
    for (i, (text, reply)) in cuts.iter().enumerate() {
        let piece = text.strip_prefix(done.as_str()).ok_or_else(|| {
            Error::Invalid(
                "the chat template renders a conversation prefix differently from the whole conversation; pass another template"
                    .into(),
            )
        })?;
        let t = engine.tokenize(piece, i == 0, true);
        mask.extend(std::iter::repeat_n(*reply, t.len()));
        tokens.extend(t);
        done.clone_from(text);
    }
    let truncated = tokens.len() > max_seq;
    tokens.truncate(max_seq);
    mask.truncate(max_seq);
    let ex = Example { tokens, mask };
    Ok((if ex.n_targets() > 0 { Some(ex) } else { None }, truncated))
}

/// Read, split (seeded, by conversation) and tokenize a JSONL file for `engine`'s model.
pub fn load(path: &Path, engine: &Engine, opts: &DataOptions) -> Result<Dataset> {
    if !(0.0..1.0).contains(&opts.eval_split) {
        return Err(Error::Invalid(format!(
            "eval split must be in [0, 1), got {}",
            opts.eval_split
        )));
    }
    if opts.max_seq < 2 {
        return Err(Error::Invalid(
            "max sequence length must be at least 2".into(),
        ));
    }
    let mut stats = DataStats::default();
    let convs = read_jsonl(path, opts.skip_bad, &mut stats)?;
    let mut order: Vec<usize> = (0..convs.len()).collect();
    Rng::new(crate::rng::mix(opts.seed, 0x5EED_5B17)).shuffle(&mut order);
    let n_eval = if opts.eval_split > 0.0 && convs.len() >= 2 {
        ((convs.len() as f64 * opts.eval_split as f64).round() as usize).clamp(1, convs.len() - 1)
    } else {
        0
    };
    let template = opts.chat_template.as_deref();
    let mut train = Vec::new();
    let mut eval = Vec::new();
    for (rank, &i) in order.iter().enumerate() {
        let (ex, truncated) = tokenize_conversation(engine, &convs[i], template, opts.max_seq)?;
        stats.truncated += usize::from(truncated);
        match ex {
            Some(ex) if rank < n_eval => eval.push(ex),
            Some(ex) => {
                stats.train_tokens += ex.tokens.len();
                stats.train_target_tokens += ex.n_targets();
                train.push(ex)
            }
            None => stats.dropped_too_long += 1,
        }
    }
    if train.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no training sequence left (max sequence length {} leaves no reply token?)",
            path.display(),
            opts.max_seq
        )));
    }
    Ok(Dataset { train, eval, stats })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    const OK: &str =
        r#"{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}"#;

    #[test]
    fn a_line_over_the_limit_names_file_line_and_limit_and_skip_bad_skips_it() {
        let d = tempfile::tempdir().unwrap();
        let long = format!(
            "{{\"instruction\":\"{}\",\"output\":\"x\"}}",
            "a".repeat(300)
        );
        for end in ["\n", "\r\n", ""] {
            // The long line in the middle, and last (without a line end).
            for text in [
                format!("{OK}\n{long}\n{OK}{end}"),
                format!("{OK}\n\n{OK}\n{long}{end}"),
            ] {
                let p = write(&d, "long.jsonl", text.as_bytes());
                let line = if text.starts_with(&format!("{OK}\n{long}")) {
                    2
                } else {
                    4
                };
                let e = read_jsonl_limited(&p, false, &mut DataStats::default(), 256)
                    .unwrap_err()
                    .to_string();
                assert_eq!(
                    e,
                    format!(
                        "{}:{line}: the line is longer than the 256-byte limit for one line; shorten it, or skip it with --skip-bad",
                        p.display()
                    )
                );
                let mut stats = DataStats::default();
                let convs = read_jsonl_limited(&p, true, &mut stats, 256).unwrap();
                assert_eq!(convs.len(), 2, "{text:?}");
                assert_eq!((stats.lines, stats.skipped_bad), (3, 1));
                // A limit the line fits (its bytes, without the line end) reads it.
                // The limit is on the line's bytes, without its end.
                let fits = long.len();
                let mut stats = DataStats::default();
                assert!(read_jsonl_limited(&p, false, &mut stats, fits - 1).is_err());
                let mut stats = DataStats::default();
                assert_eq!(
                    read_jsonl_limited(&p, false, &mut stats, fits)
                        .unwrap()
                        .len(),
                    3
                );
            }
        }
        assert_eq!(human_bytes(MAX_LINE_BYTES), "16 MiB");
    }

    #[test]
    fn a_bom_is_skipped_and_a_line_not_utf8_is_a_bad_line() {
        let d = tempfile::tempdir().unwrap();
        let p = write(&d, "bom.jsonl", format!("\u{feff}{OK}\r\n").as_bytes());
        let mut stats = DataStats::default();
        assert_eq!(read_jsonl(&p, false, &mut stats).unwrap().len(), 1);
        let mut text = format!("{OK}\n").into_bytes();
        text.extend(b"{\"messages\": \"\xff\"}\n");
        text.extend(OK.as_bytes());
        let p = write(&d, "latin1.jsonl", &text);
        let e = read_jsonl(&p, false, &mut DataStats::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("{}:2: not UTF-8 text", p.display())),
            "{e}"
        );
        let mut stats = DataStats::default();
        assert_eq!(read_jsonl(&p, true, &mut stats).unwrap().len(), 2);
        assert_eq!(stats.skipped_bad, 1);
    }
}
