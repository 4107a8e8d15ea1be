//! Structured data: each CSV row, JSON object or JSONL line is one record document.
//!
//! A record's text is one `field: value` line per field in the source's order (empty and null
//! values left out; nested values as compact JSON); its metadata holds every field (CSV and
//! SQLite numbers as JSON numbers when they are written canonically, so `007` stays a string)
//! plus `row`, the 1-based record number (a field itself named `row` is kept as `row (field)`).
//! The title is the first field's value, else `row N`. A record with no non-empty value gives
//! no document. A file that holds only a header or `[]` gives no documents; a blank file is an
//! error.

use std::collections::{HashMap, HashSet};
use std::fmt;

use lorag_core::{Document, Metadata};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::{decode_text, record_encoding};
use crate::{Candidate, IngestError};

/// The longest title taken from a field, in characters.
const MAX_TITLE_CHARS: usize = 200;

/// One record document from fields in order, or `None` when every value is empty.
pub(crate) fn record_document(
    source: &str,
    kind: &str,
    row: usize,
    fields: Vec<(String, Value)>,
) -> Option<Document> {
    record_document_shown(source, kind, row, fields, None)
}

/// As `record_document`, the text showing `shown[i]` for field `i` (a CSV cell as written,
/// while its metadata value may be a number).
fn record_document_shown(
    source: &str,
    kind: &str,
    row: usize,
    fields: Vec<(String, Value)>,
    shown: Option<&[&str]>,
) -> Option<Document> {
    let mut text = String::new();
    for (i, (name, value)) in fields.iter().enumerate() {
        let rendered = match shown.and_then(|s| s.get(i)) {
            Some(s) => Some(s.to_string()).filter(|s| !s.trim().is_empty()),
            None => render(value),
        };
        let Some(rendered) = rendered else {
            continue;
        };
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(name);
        text.push_str(": ");
        text.push_str(rendered.trim());
    }
    if text.trim().is_empty() {
        return None;
    }
    let first_shown = shown.and_then(|s| s.first()).map(|s| s.to_string());
    let title = first_shown
        .or_else(|| fields.first().and_then(|(_, v)| render(v)))
        .map(|t| {
            super::collapse_ws(&t)
                .chars()
                .take(MAX_TITLE_CHARS)
                .collect()
        })
        .filter(|t: &String| !t.is_empty())
        .unwrap_or_else(|| format!("row {row}"));
    let mut metadata = Metadata::new();
    for (name, value) in fields {
        let key = if name == "row" {
            "row (field)".to_string()
        } else {
            name
        };
        metadata.insert(key, value);
    }
    metadata.insert("row".to_string(), Value::from(row));
    let mut doc = Document::new(source, kind, text);
    doc.title = Some(title);
    doc.metadata = metadata;
    Some(doc)
}

/// A value as text, `None` when empty.
fn render(value: &Value) -> Option<String> {
    let s = match value {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(_) | Value::Object(_) => value.to_string(),
    };
    (!s.trim().is_empty()).then_some(s)
}

/// A CSV cell as JSON: a number when it is written the way the number prints (`42`, `-1.5`,
/// `2e3`), else the string.
pub(crate) fn cell_value(s: &str) -> Value {
    if let Ok(i) = s.parse::<i64>() {
        if i.to_string() == s {
            return Value::from(i);
        }
    }
    if looks_decimal(s) {
        if let Some(n) = s.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(s.to_string())
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?` with a fraction or an exponent.
fn looks_decimal(s: &str) -> bool {
    let b = s.strip_prefix('-').unwrap_or(s).as_bytes();
    let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if int_len == 0 || (int_len > 1 && b[0] == b'0') {
        return false;
    }
    let mut rest = &b[int_len..];
    let mut special = false;
    if let Some(r) = rest.strip_prefix(b".") {
        let n = r.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = &r[n..];
        special = true;
    }
    if let Some(r) = rest.strip_prefix(b"e").or_else(|| rest.strip_prefix(b"E")) {
        let r = r
            .strip_prefix(b"+")
            .or_else(|| r.strip_prefix(b"-"))
            .unwrap_or(r);
        let n = r.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = &r[n..];
        special = true;
    }
    special && rest.is_empty()
}

/// Column names: blank ones become `column N`, repeated ones get ` (2)`, ` (3)`...
/// Linear in the number of names (a header of thousands of equal names once took minutes).
pub(crate) fn unique_names(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut taken: HashSet<String> = HashSet::new();
    // The next suffix to try for a base: suffixes below it are taken already.
    let mut next: HashMap<String, usize> = HashMap::new();
    for (i, name) in names.into_iter().enumerate() {
        let base = match name.trim() {
            "" => format!("column {}", i + 1),
            t => t.to_string(),
        };
        let mut candidate = base.clone();
        if taken.contains(&candidate) {
            let n = next.entry(base.clone()).or_insert(2);
            loop {
                candidate = format!("{base} ({n})");
                *n += 1;
                if !taken.contains(&candidate) {
                    break;
                }
            }
        }
        taken.insert(candidate.clone());
        out.push(candidate);
    }
    out
}

pub(super) fn load_csv(c: &Candidate, bytes: &[u8]) -> Result<Vec<Document>, IngestError> {
    let decoded = decode_text(&c.source, bytes)?;
    let text = decoded.text;
    let first_line = text.lines().next().unwrap_or("");
    // A comma-separated header wins; else a header with semicolons or tabs sets the delimiter.
    let delimiter = if first_line.contains(',') {
        b','
    } else if first_line.contains(';') {
        b';'
    } else if first_line.contains('\t') {
        b'\t'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let csv_error = |e: csv::Error| match e.position() {
        Some(pos) => IngestError::Line {
            input: c.source.clone(),
            line: pos.line() as usize,
            reason: match e.kind() {
                csv::ErrorKind::UnequalLengths {
                    expected_len, len, ..
                } => format!("the row has {len} fields, the header has {expected_len}"),
                _ => e.to_string(),
            },
        },
        None => IngestError::Parse {
            input: c.source.clone(),
            format: "CSV",
            reason: e.to_string(),
        },
    };
    let headers = reader.headers().map_err(csv_error)?.clone();
    let names = unique_names(headers.iter().map(str::to_string));
    let mut docs = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(csv_error)?;
        let cells: Vec<&str> = record.iter().collect();
        let fields = names
            .iter()
            .zip(&cells)
            .map(|(name, cell)| (name.clone(), cell_value(cell)))
            .collect();
        docs.extend(record_document_shown(
            &c.source,
            "csv",
            i + 1,
            fields,
            Some(&cells),
        ));
    }
    record_encoding(&mut docs, decoded.encoding);
    Ok(docs)
}

pub(super) fn load_json(c: &Candidate, bytes: &[u8]) -> Result<Vec<Document>, IngestError> {
    let decoded = decode_text(&c.source, bytes)?;
    let text = decoded.text;
    let parse_error = |reason: String| IngestError::Parse {
        input: c.source.clone(),
        format: "JSON",
        reason,
    };
    let top: Top = serde_json::from_str(&text).map_err(|e| parse_error(e.to_string()))?;
    let records = match top {
        Top::One(Rec::Object(fields)) => vec![fields],
        Top::One(Rec::Other(v)) => {
            return Err(parse_error(format!(
                "expected an object or an array of objects, found {}",
                kind_of(&v)
            )))
        }
        Top::Array(items) => {
            let mut records = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                match item {
                    Rec::Object(fields) => records.push(fields),
                    Rec::Other(v) => {
                        return Err(parse_error(format!(
                            "element {} of the array is {}, expected an object",
                            i + 1,
                            kind_of(&v)
                        )))
                    }
                }
            }
            records
        }
    };
    let mut docs: Vec<Document> = records
        .into_iter()
        .enumerate()
        .filter_map(|(i, fields)| record_document(&c.source, "json", i + 1, fields))
        .collect();
    record_encoding(&mut docs, decoded.encoding);
    Ok(docs)
}

pub(super) fn load_jsonl(c: &Candidate, bytes: &[u8]) -> Result<Vec<Document>, IngestError> {
    let decoded = decode_text(&c.source, bytes)?;
    let text = decoded.text;
    let mut docs = Vec::new();
    let mut row = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_error = |reason: String| IngestError::Line {
            input: c.source.clone(),
            line: i + 1,
            reason,
        };
        let rec: Rec = serde_json::from_str(line).map_err(|e| {
            line_error(format!(
                "invalid JSON at column {}: {}",
                e.column(),
                json_message(&e)
            ))
        })?;
        let Rec::Object(mut fields) = rec else {
            let found = match rec {
                Rec::Other(v) => kind_of(&v),
                Rec::Object(_) => "an object",
            };
            return Err(line_error(format!("expected a JSON object, found {found}")));
        };
        row += 1;
        let doc = record_document(&c.source, "jsonl", row, std::mem::take(&mut fields));
        docs.extend(doc.map(|mut d| {
            d.metadata.insert("line".to_string(), Value::from(i + 1));
            d
        }));
    }
    record_encoding(&mut docs, decoded.encoding);
    Ok(docs)
}

/// serde_json's message without its " at line L column C" tail.
fn json_message(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(at) => s[..at].to_string(),
        None => s,
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON value whose fields, if it is an object, keep their order.
enum Rec {
    Object(Vec<(String, Value)>),
    Other(Value),
}

/// A JSON document: an array (of records) or one value.
enum Top {
    Array(Vec<Rec>),
    One(Rec),
}

struct RecVisitor;

impl<'de> Visitor<'de> for RecVisitor {
    type Value = Rec;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Rec, A::Error> {
        let mut fields = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Value>()? {
            fields.push((k, v));
        }
        Ok(Rec::Object(fields))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Rec, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element::<Value>()? {
            items.push(v);
        }
        Ok(Rec::Other(Value::Array(items)))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Rec, E> {
        Ok(Rec::Other(Value::from(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Rec, E> {
        Ok(Rec::Other(Value::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Rec, E> {
        Ok(Rec::Other(Value::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Rec, E> {
        Ok(Rec::Other(Value::from(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Rec, E> {
        Ok(Rec::Other(Value::from(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Rec, E> {
        Ok(Rec::Other(Value::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<Rec, E> {
        Ok(Rec::Other(Value::Null))
    }
}

impl<'de> Deserialize<'de> for Rec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RecVisitor)
    }
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Top;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object or an array of objects")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top, A::Error> {
        let mut items = Vec::new();
        while let Some(rec) = seq.next_element::<Rec>()? {
            items.push(rec);
        }
        Ok(Top::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Top, A::Error> {
        RecVisitor.visit_map(map).map(Top::One)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Top, E> {
        RecVisitor.visit_bool(v).map(Top::One)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Top, E> {
        RecVisitor.visit_i64(v).map(Top::One)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Top, E> {
        RecVisitor.visit_u64(v).map(Top::One)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Top, E> {
        RecVisitor.visit_f64(v).map(Top::One)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Top, E> {
        RecVisitor.visit_str(v).map(Top::One)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Top, E> {
        RecVisitor.visit_unit().map(Top::One)
    }
}

impl<'de> Deserialize<'de> for Top {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TopVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_become_numbers_only_when_canonical() {
        assert_eq!(cell_value("42"), Value::from(42));
        assert_eq!(cell_value("-7"), Value::from(-7));
        assert_eq!(cell_value("3.25"), Value::from(3.25));
        assert_eq!(cell_value("2e3"), Value::from(2000.0));
        for s in [
            "007", "+5", "1.", ".5", "1e", "NaN", "inf", "12 ", "", "1,5", "0x10",
        ] {
            assert_eq!(cell_value(s), Value::from(s), "{s:?}");
        }
    }

    #[test]
    fn names_are_made_unique() {
        let names = unique_names(["a", "", "a", "a"].map(String::from));
        assert_eq!(names, ["a", "column 2", "a (2)", "a (3)"]);
        let names = unique_names(["a (2)", "a", "a", "a", "column 5", ""].map(String::from));
        assert_eq!(
            names,
            ["a (2)", "a", "a (3)", "a (4)", "column 5", "column 6"]
        );
        // 20,000 equal names: linear, not cubic.
        let started = std::time::Instant::now();
        let names = unique_names(std::iter::repeat_n("1".to_string(), 20_000));
        assert_eq!(names[19_999], "1 (20000)");
        assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
    }

    #[test]
    fn record_renders_fields_in_order() {
        let fields = vec![
            ("name".to_string(), Value::from("Ann")),
            ("row".to_string(), Value::from("r-1")),
            ("empty".to_string(), Value::from("")),
            ("tags".to_string(), serde_json::json!(["x", 1])),
        ];
        let doc = record_document("s.json", "json", 3, fields).expect("a document");
        assert_eq!(doc.text, "name: Ann\nrow: r-1\ntags: [\"x\",1]");
        assert_eq!(doc.title.as_deref(), Some("Ann"));
        assert_eq!(doc.metadata["row"], Value::from(3));
        assert_eq!(doc.metadata["row (field)"], Value::from("r-1"));
        assert_eq!(doc.metadata["empty"], Value::from(""));
        let blank = vec![("a".to_string(), Value::Null)];
        assert!(record_document("s", "json", 1, blank).is_none());
    }
}
