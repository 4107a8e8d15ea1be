//! `fingerprint` and `load`: one candidate at a time, dispatching on its kind.

mod decode;
mod docx;
mod html;
mod markdown;
mod pdf;
mod records;
pub(crate) mod sqlite;
mod text;

use std::fs;
use std::io::{ErrorKind, Read};
use std::path::Path;
use std::time::UNIX_EPOCH;

use decode::Decoded;
use lorag_core::Document;
use sha2::{Digest, Sha256};

use crate::walk::SUPPORTED;
use crate::{Candidate, Fingerprint, IngestError, LoadedSource};

/// The largest file `load` reads (text, PDF, DOCX): a larger one is [`IngestError::TooLarge`]
/// before any of it is read, so memory stays bounded by a small multiple of this.
pub const MAX_FILE_BYTES: u64 = 256 << 20;

pub use docx::MAX_PART as MAX_DOCX_PART_BYTES;

/// Hashes the candidate's bytes (for SQLite: its rendered rows) without parsing them, so that an
/// unchanged source can be skipped. A file is hashed in pieces (any size, bounded memory).
pub fn fingerprint(c: &Candidate) -> Result<Fingerprint, IngestError> {
    if c.kind == "sqlite" {
        return sqlite::fingerprint(c);
    }
    let io = |e| io_error(&c.source, &c.path, e);
    let mut file = fs::File::open(&c.path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok(Fingerprint {
        hash: hex::encode(hasher.finalize()),
        mtime: mtime(&meta),
        size,
    })
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

/// The file's bytes (at most [`MAX_FILE_BYTES`]) and their fingerprint.
fn read_file(c: &Candidate) -> Result<(Vec<u8>, Fingerprint), IngestError> {
    let io = |e| io_error(&c.source, &c.path, e);
    let file = fs::File::open(&c.path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let too_large = |size| IngestError::TooLarge {
        input: c.source.clone(),
        size,
        limit: MAX_FILE_BYTES,
    };
    if meta.is_file() && meta.len() > MAX_FILE_BYTES {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len().min(MAX_FILE_BYTES) as usize);
    // The file may grow while it is read: never read past the limit.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    let fp = Fingerprint {
        hash: sha256_hex(&bytes),
        mtime: mtime(&meta),
        size: bytes.len() as u64,
    };
    Ok((bytes, fp))
}

/// Modification time in unix seconds (negative before 1970, 0 when unknown).
fn mtime(meta: &fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).ok(),
            Err(e) => i64::try_from(e.duration().as_secs()).ok().map(|s| -s),
        })
        .unwrap_or(0)
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

/// Bytes of a text format as text (see `decode`): NUL bytes are binary content, a byte-order
/// mark is dropped, line ends become `\n`, blank content is empty, and text that is not UTF-8 is
/// decoded from the encoding it is in (recorded with [`record_encoding`]).
pub(crate) fn decode_text(input: &str, bytes: &[u8]) -> Result<Decoded, IngestError> {
    decode::decode(input, bytes, None)
}

/// Records the encoding of a source that was not UTF-8 as `encoding` in each document's
/// metadata (a record field of that name is kept as `encoding (field)`).
pub(crate) fn record_encoding(docs: &mut [Document], encoding: Option<&str>) {
    let Some(encoding) = encoding else {
        return;
    };
    for doc in docs {
        if let Some(field) = doc.metadata.remove("encoding") {
            doc.metadata.insert("encoding (field)".to_string(), field);
        }
        doc.metadata
            .insert("encoding".to_string(), serde_json::Value::from(encoding));
    }
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
