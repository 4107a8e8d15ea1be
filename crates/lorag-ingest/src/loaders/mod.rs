//! `fingerprint` and `load`: one candidate at a time, dispatching on its kind.

mod docx;
mod html;
mod markdown;
mod pdf;
mod records;
pub(crate) mod sqlite;
mod text;

use std::fs;
use std::io::ErrorKind;
use std::path::Path;
use std::time::UNIX_EPOCH;

use lorag_core::Document;
use sha2::{Digest, Sha256};

use crate::walk::SUPPORTED;
use crate::{Candidate, Fingerprint, IngestError, LoadedSource};

/// Hashes the candidate's bytes (for SQLite: its rendered rows) without parsing them, so that an
/// unchanged source can be skipped.
pub fn fingerprint(c: &Candidate) -> Result<Fingerprint, IngestError> {
    if c.kind == "sqlite" {
        return sqlite::fingerprint(c);
    }
    read_file(c).map(|(_, fp)| fp)
}

/// Reads and parses one candidate. The fingerprint describes exactly the bytes (rows) loaded.
pub fn load(c: &Candidate) -> Result<LoadedSource, IngestError> {
    if c.kind == "sqlite" {
        return sqlite::load(c);
    }
    let parse: fn(&Candidate, &[u8]) -> Result<Vec<Document>, IngestError> = match c.kind.as_str() {
        "txt" => text::load,
        "md" => markdown::load,
        "html" => html::load,
        "pdf" => pdf::load,
        "docx" => docx::load,
        "csv" => records::load_csv,
        "json" => records::load_json,
        "jsonl" => records::load_jsonl,
        other => {
            return Err(IngestError::Unsupported {
                input: c.source.clone(),
                kind: other.to_string(),
                supported: SUPPORTED,
            })
        }
    };
    let (bytes, fingerprint) = read_file(c)?;
    let documents = parse(c, &bytes)?;
    Ok(LoadedSource {
        source: c.source.clone(),
        kind: c.kind.clone(),
        fingerprint,
        documents,
    })
}

fn read_file(c: &Candidate) -> Result<(Vec<u8>, Fingerprint), IngestError> {
    let io = |e| io_error(&c.source, &c.path, e);
    let meta = fs::metadata(&c.path).map_err(io)?;
    let bytes = fs::read(&c.path).map_err(io)?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).ok(),
            Err(e) => i64::try_from(e.duration().as_secs()).ok().map(|s| -s),
        })
        .unwrap_or(0);
    let fp = Fingerprint {
        hash: sha256_hex(&bytes),
        mtime,
        size: bytes.len() as u64,
    };
    Ok((bytes, fp))
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// An I/O error as a user reads it: "not found" (with a hint for a broken link), else the OS
/// reason ("Is a directory", "Permission denied").
pub(crate) fn io_error(input: &str, path: &Path, error: std::io::Error) -> IngestError {
    if error.kind() == ErrorKind::NotFound {
        let hint = match fs::read_link(path) {
            Ok(target) => format!(" (broken symbolic link to {})", target.to_string_lossy()),
            Err(_) => String::new(),
        };
        return IngestError::NotFound {
            input: input.to_string(),
            hint,
        };
    }
    IngestError::Io {
        input: input.to_string(),
        error,
    }
}

/// Bytes of a text format as a `String`: NUL bytes are binary content, invalid UTF-8 is named by
/// offset, a byte-order mark is dropped, line ends become `\n`, and blank content is empty.
pub(crate) fn decode_text(input: &str, bytes: &[u8]) -> Result<String, IngestError> {
    if bytes.contains(&0) {
        return Err(IngestError::Binary {
            input: input.to_string(),
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| IngestError::InvalidUtf8 {
        input: input.to_string(),
        offset: e.valid_up_to(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(IngestError::Empty {
            input: input.to_string(),
        });
    }
    Ok(normalize_newlines(text))
}

pub(crate) fn normalize_newlines(text: &str) -> String {
    if !text.contains('\r') {
        return text.to_string();
    }
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// The file stem, the title of last resort.
pub(crate) fn stem_title(path: &Path) -> Option<String> {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
}

/// Collapses runs of whitespace to one space and trims (titles, headings).
pub(crate) fn collapse_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Builds nested sections from headings met in text order.
#[derive(Default)]
pub(crate) struct SectionBuilder {
    /// Open sections: (heading level, index in `sections`).
    open: Vec<(u8, usize)>,
    sections: Vec<lorag_core::Section>,
}

impl SectionBuilder {
    /// A heading of `level` (1 = top) titled `title`, whose line starts at byte `start`: it
    /// closes every open section of the same or a deeper level.
    pub(crate) fn heading(&mut self, level: u8, title: String, start: usize) {
        while let Some(&(l, i)) = self.open.last() {
            if l < level {
                break;
            }
            self.sections[i].end = start;
            self.open.pop();
        }
        let mut path: Vec<String> = self
            .open
            .iter()
            .map(|&(_, i)| self.sections[i].path.last().cloned().unwrap_or_default())
            .collect();
        path.push(title);
        self.open.push((level, self.sections.len()));
        self.sections.push(lorag_core::Section {
            path,
            start,
            end: start,
        });
    }

    pub(crate) fn first_title(&self) -> Option<String> {
        self.sections.first().and_then(|s| s.path.last().cloned())
    }

    /// Closes the open sections at `end` (the text's length).
    pub(crate) fn finish(mut self, end: usize) -> Vec<lorag_core::Section> {
        for (_, i) in self.open.drain(..) {
            self.sections[i].end = end;
        }
        self.sections
    }
}
