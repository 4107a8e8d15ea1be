//! Adapters that ship inside the lorag binary: the grounded-answer LoRA for the default chat model.
//!
//! `adapters/smollm2-135m-grounded.gguf` (repository root) is rebuilt from open data with a fixed
//! seed by `scripts/grounded-adapter.sh` (data and leak checks: `bench/grounded_adapter.py`). The
//! bytes are compiled in, so the adapter needs no download and works offline; on first use they are
//! written to `<models>/.adapters/` (llama.cpp loads adapters from a file).
//!
//! Invariants:
//! - The compiled-in bytes hash to the catalogue's sha256 (a unit test checks it).
//! - A file in `<models>/.adapters/` is complete and verified: it is written whole
//!   (`lorag_core::io::write_atomic`), and an existing file whose hash differs is replaced.
//! - The adapter is offered only for the model it was trained on: the catalogue entry's file.

use crate::{entry_path, find, io_err, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// A LoRA adapter compiled into the binary.
#[derive(Debug, Clone, Copy)]
pub struct ShippedAdapter {
    /// The name users and the JSON outputs see.
    pub name: &'static str,
    /// The catalogue model it was trained for.
    pub model: &'static str,
    /// The file name under `<models>/.adapters/`.
    pub file: &'static str,
    pub sha256: &'static str,
    pub about: &'static str,
    bytes: &'static [u8],
}

/// The grounded-answer adapters, one per model at most.
pub const SHIPPED_ADAPTERS: &[ShippedAdapter] = &[ShippedAdapter {
    name: "smollm2-135m-grounded",
    model: "smollm2-135m-instruct",
    file: "smollm2-135m-grounded.gguf",
    sha256: "88a5c649df42c3b66b2238062c2fb2f79e162cfeab80caf2189ba0b3b9c6a96b",
    about: "grounded answers for lorag's RAG prompt: a short cited phrase with --style, else a full cited sentence (rank 16, F16)",
    bytes: include_bytes!("../../../adapters/smollm2-135m-grounded.gguf"),
}];

impl ShippedAdapter {
    pub fn bytes(&self) -> &'static [u8] {
        self.bytes
    }
}

/// The shipped grounded adapter for the model at `model_path`, written to `<dir>/.adapters/` if it
/// is not there yet: `None` when the model is not one an adapter was made for (a catalogue entry's
/// file, compared after resolving links).
pub fn grounded_adapter(
    model_path: &Path,
    dir: &Path,
) -> Result<Option<(&'static ShippedAdapter, PathBuf)>> {
    let Ok(model) = model_path.canonicalize() else {
        return Ok(None);
    };
    for a in SHIPPED_ADAPTERS {
        let Some(e) = find(a.model) else { continue };
        let made_for = entry_path(dir, e).canonicalize().ok();
        if made_for.as_deref() != Some(model.as_path()) {
            continue;
        }
        let dest = dir.join(".adapters").join(a.file);
        if !crate::fetch::is_verified(&dest, a.sha256)? {
            write_verified(&dest, a)?;
        }
        return Ok(Some((a, dest)));
    }
    Ok(None)
}

fn write_verified(dest: &Path, a: &ShippedAdapter) -> Result<()> {
    let actual = hex::encode(Sha256::digest(a.bytes));
    if actual != a.sha256 {
        return Err(crate::Error::Checksum {
            path: PathBuf::from(format!("(compiled-in adapter {})", a.name)),
            expected: a.sha256.to_string(),
            actual,
        });
    }
    let parent = dest.parent().expect("has a parent");
    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    // A temporary file per process and call, then a rename: two processes starting at once
    // each write their own.
    lorag_core::io::write_atomic(dest, a.bytes).map_err(io_err(dest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_in_bytes_match_the_catalogue() {
        for a in SHIPPED_ADAPTERS {
            assert_eq!(hex::encode(Sha256::digest(a.bytes)), a.sha256, "{}", a.name);
            assert!(a.bytes.starts_with(b"GGUF"), "{}", a.name);
            assert!(a.bytes.len() <= 16 << 20, "{}: over 16 MiB", a.name);
            assert!(find(a.model).is_some(), "{}: unknown model", a.name);
        }
    }

    #[test]
    fn written_once_for_its_own_model_only() {
        let dir = tempfile::tempdir().unwrap();
        let a = &SHIPPED_ADAPTERS[0];
        let e = find(a.model).unwrap();
        // Not the model it was made for (and a missing path): no adapter.
        let other = dir.path().join("other.gguf");
        std::fs::write(&other, b"GGUF").unwrap();
        assert!(grounded_adapter(&other, dir.path()).unwrap().is_none());
        assert!(grounded_adapter(&dir.path().join("nope.gguf"), dir.path())
            .unwrap()
            .is_none());
        // The catalogue's file (a stand-in: only its path matters here).
        let model = entry_path(dir.path(), e);
        std::fs::create_dir_all(model.parent().unwrap()).unwrap();
        std::fs::write(&model, b"GGUF").unwrap();
        let (got, path) = grounded_adapter(&model, dir.path()).unwrap().unwrap();
        assert_eq!(got.name, a.name);
        assert_eq!(std::fs::read(&path).unwrap(), a.bytes);
        // A damaged copy is replaced.
        std::fs::write(&path, b"damaged").unwrap();
        let (_, path) = grounded_adapter(&model, dir.path()).unwrap().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), a.bytes);
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|d| d.file_name())
            .collect();
        assert!(
            left.iter().all(|n| !n.to_string_lossy().ends_with(".tmp")),
            "{left:?}"
        );
    }
}
