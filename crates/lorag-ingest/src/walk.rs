//! `discover`: inputs → candidates, with a reason for everything left out.

use std::collections::HashMap;
use std::fs;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::loaders::sqlite::SqliteSpec;
use crate::{Candidate, IngestError, Skipped, WalkOptions};

/// The extensions `load` reads, as shown in messages.
pub(crate) const SUPPORTED: &str = "txt, md, markdown, html, htm, pdf, docx, csv, json, jsonl";

/// How many leading bytes of a text file are sniffed for NUL bytes.
const SNIFF_BYTES: u64 = 8192;

/// The kind of a file by its extension (case-insensitive).
pub(crate) fn kind_for_extension(ext: &str) -> Option<&'static str> {
    Some(match ext.to_ascii_lowercase().as_str() {
        "txt" => "txt",
        "md" | "markdown" => "md",
        "html" | "htm" => "html",
        "pdf" => "pdf",
        "docx" => "docx",
        "csv" => "csv",
        "json" => "json",
        "jsonl" => "jsonl",
        _ => return None,
    })
}

/// Why a known binary extension is skipped, with a hint where there is a better way in.
fn binary_extension_reason(ext: &str) -> Option<String> {
    let ext = ext.to_ascii_lowercase();
    let hint = match ext.as_str() {
        "db" | "sqlite" | "sqlite3" => "; to ingest a SQLite table use sqlite:PATH?table=T",
        "doc" | "xls" | "ppt" | "rtf" | "odt" => "; save it as .docx or .pdf to ingest it",
        "png" | "jpg" | "jpeg" | "gif" | "bmp" | "ico" | "webp" | "tif" | "tiff" | "heic"
        | "psd" | "exe" | "dll" | "so" | "dylib" | "o" | "a" | "lib" | "obj" | "bin" | "class"
        | "jar" | "war" | "pyc" | "pyo" | "wasm" | "zip" | "gz" | "tgz" | "bz2" | "xz" | "zst"
        | "7z" | "rar" | "tar" | "iso" | "img" | "dmg" | "deb" | "rpm" | "msi" | "apk" | "mp3"
        | "mp4" | "m4a" | "wav" | "ogg" | "flac" | "avi" | "mov" | "mkv" | "webm" | "woff"
        | "woff2" | "ttf" | "otf" | "eot" | "xlsx" | "pptx" | "parquet" | "npy" | "pt"
        | "safetensors" | "gguf" | "onnx" => "",
        _ => return None,
    };
    Some(format!("binary file type (.{ext}){hint}"))
}

/// Include/exclude glob sets, matched against the source, the relative path and the name.
struct Filter {
    include: Option<(GlobSet, Vec<String>)>,
    exclude: Option<(GlobSet, Vec<String>)>,
}

impl Filter {
    fn new(opts: &WalkOptions) -> Result<Self, IngestError> {
        Ok(Self {
            include: build_set(&opts.include)?,
            exclude: build_set(&opts.exclude)?,
        })
    }

    fn first_match(set: &(GlobSet, Vec<String>), keys: &[&str]) -> Option<String> {
        keys.iter()
            .find_map(|k| set.0.matches(k).first().map(|&i| set.1[i].clone()))
    }

    /// The reason a file is filtered out, if it is.
    fn reject_file(&self, keys: &[&str]) -> Option<String> {
        if let Some(p) = self
            .exclude
            .as_ref()
            .and_then(|s| Self::first_match(s, keys))
        {
            return Some(format!("excluded by pattern `{p}`"));
        }
        match &self.include {
            Some(set) if Self::first_match(set, keys).is_none() => Some(format!(
                "not matched by any include pattern ({})",
                set.1.join(", ")
            )),
            _ => None,
        }
    }

    fn reject_dir(&self, keys: &[&str]) -> Option<String> {
        let p = self
            .exclude
            .as_ref()
            .and_then(|s| Self::first_match(s, keys))?;
        Some(format!("excluded by pattern `{p}`"))
    }
}

fn build_set(patterns: &[String]) -> Result<Option<(GlobSet, Vec<String>)>, IngestError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for p in patterns {
        let glob = Glob::new(p).map_err(|e| IngestError::InvalidGlob {
            pattern: p.clone(),
            reason: e.kind().to_string(),
        })?;
        builder.add(glob);
    }
    let set = builder.build().map_err(|e| IngestError::InvalidGlob {
        pattern: patterns.join(", "),
        reason: e.to_string(),
    })?;
    Ok(Some((set, patterns.to_vec())))
}

struct Walk<'a> {
    filter: &'a Filter,
    candidates: Vec<Candidate>,
    skipped: Vec<Skipped>,
    /// Canonical path → source of the candidate, to keep each file once.
    seen: HashMap<PathBuf, String>,
}

/// Expands inputs (files, directories walked recursively, or `sqlite:PATH?table=T` /
/// `sqlite:PATH?query=SELECT...`) into candidates, in input order and, within a directory, by
/// name. Hidden files and directories (name starting with `.`) met during a walk, binary files
/// (by extension, and for text kinds by NUL bytes in the first 8 KiB without a UTF-16 byte-order
/// mark), unsupported extensions,
/// files filtered by `opts`, non-regular files and second paths to an already found file are
/// skipped with a reason; so is an input that does not exist ("not found"). A file named
/// explicitly is taken even when hidden. Symbolic links are followed. The only error is an
/// invalid glob pattern.
pub fn discover(
    inputs: &[String],
    opts: &WalkOptions,
) -> Result<(Vec<Candidate>, Vec<Skipped>), IngestError> {
    let filter = Filter::new(opts)?;
    let mut walk = Walk {
        filter: &filter,
        candidates: Vec::new(),
        skipped: Vec::new(),
        seen: HashMap::new(),
    };
    for input in inputs {
        walk.input(input);
    }
    Ok((walk.candidates, walk.skipped))
}

impl Walk<'_> {
    fn skip(&mut self, source: impl Into<String>, reason: impl Into<String>) {
        self.skipped.push(Skipped {
            source: source.into(),
            reason: reason.into(),
        });
    }

    fn input(&mut self, input: &str) {
        if let Some(spec) = input.strip_prefix("sqlite:") {
            return self.sqlite(input, spec);
        }
        let path = Path::new(input);
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let reason = if fs::symlink_metadata(path).is_ok() {
                    "not found (broken symbolic link)"
                } else {
                    "not found"
                };
                return self.skip(input, reason);
            }
            Err(e) => return self.skip(input, format!("cannot read: {e}")),
        };
        if meta.is_dir() {
            self.dir(input, path);
        } else if meta.is_file() {
            let name = file_name(path);
            self.file(input.to_string(), &name, &name, path);
        } else {
            self.skip(input, "not a regular file (fifo, socket or device)");
        }
    }

    fn sqlite(&mut self, input: &str, spec: &str) {
        match SqliteSpec::parse(spec) {
            Err(reason) => self.skip(input, reason),
            Ok(spec) if !spec.path.is_file() => {
                let reason = if spec.path.exists() {
                    "not a regular file"
                } else {
                    "not found"
                };
                self.skip(input, reason)
            }
            Ok(spec) => self.candidates.push(Candidate {
                source: input.to_string(),
                path: spec.path,
                kind: "sqlite".to_string(),
            }),
        }
    }

    fn dir(&mut self, input: &str, root: &Path) {
        let mut it = walkdir::WalkDir::new(root)
            .follow_links(true)
            .min_depth(1)
            .sort_by_file_name()
            .into_iter();
        while let Some(entry) = it.next() {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    let source = e
                        .path()
                        .map_or_else(|| input.to_string(), |p| p.to_string_lossy().into_owned());
                    let reason = if e.loop_ancestor().is_some() {
                        "symbolic link loop".to_string()
                    } else if e.io_error().map(|io| io.kind()) == Some(ErrorKind::NotFound) {
                        "not found (broken symbolic link)".to_string()
                    } else {
                        match e.io_error() {
                            Some(io) => format!("cannot read: {io}"),
                            None => format!("cannot read: {e}"),
                        }
                    };
                    self.skip(source, reason);
                    continue;
                }
            };
            let path = entry.path();
            // walkdir joins names onto the root as given: this is `input` + relative path.
            let source = path.to_string_lossy().into_owned();
            let rel = path
                .strip_prefix(root)
                .unwrap_or(path)
                .to_string_lossy()
                .into_owned();
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_dir = entry.file_type().is_dir();
            if name.starts_with('.') {
                self.skip(source, "hidden (name starts with '.')");
                if is_dir {
                    it.skip_current_dir();
                }
                continue;
            }
            if is_dir {
                let keys = [match_key(&source), rel.as_str(), name.as_str()];
                if let Some(reason) = self.filter.reject_dir(&keys) {
                    self.skip(source, reason);
                    it.skip_current_dir();
                }
                continue;
            }
            if !entry.file_type().is_file() {
                self.skip(source, "not a regular file (fifo, socket or device)");
                continue;
            }
            self.file(source, &rel, &name, path);
        }
    }

    fn file(&mut self, source: String, rel: &str, name: &str, path: &Path) {
        let keys = [match_key(&source), rel, name];
        if let Some(reason) = self.filter.reject_file(&keys) {
            return self.skip(source, reason);
        }
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(kind) = kind_for_extension(&ext) else {
            let reason = if let Some(r) = binary_extension_reason(&ext) {
                r
            } else if ext.is_empty() {
                format!("no file extension (supported: {SUPPORTED})")
            } else {
                format!("unsupported file type (.{ext}; supported: {SUPPORTED})")
            };
            return self.skip(source, reason);
        };
        let key = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if let Some(first) = self.seen.get(&key) {
            let reason = format!("same file as {first}");
            return self.skip(source, reason);
        }
        if !matches!(kind, "pdf" | "docx") {
            match has_nul_prefix(path) {
                Ok(true) => return self.skip(source, "binary content (NUL bytes)"),
                Ok(false) => {}
                Err(e) => return self.skip(source, format!("cannot read: {e}")),
            }
        }
        self.seen.insert(key, source.clone());
        self.candidates.push(Candidate {
            source,
            path: path.to_path_buf(),
            kind: kind.to_string(),
        });
    }
}

/// The source as globs see it: without a leading `./`.
fn match_key(source: &str) -> &str {
    source.strip_prefix("./").unwrap_or(source)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string_lossy().into_owned())
}

/// NUL bytes in the first 8 KiB, unless a UTF-16 byte-order mark says they are text.
fn has_nul_prefix(path: &Path) -> std::io::Result<bool> {
    let mut head = Vec::with_capacity(SNIFF_BYTES as usize);
    fs::File::open(path)?
        .take(SNIFF_BYTES)
        .read_to_end(&mut head)?;
    let utf16 = head.starts_with(b"\xff\xfe") || head.starts_with(b"\xfe\xff");
    Ok(!utf16 && head.contains(&0))
}
