//! The route answer cache: a stopped run resumes where it was.
//!
//! A route's answers are stored under `DIR/cache/<key>.json`, where the key is the SHA-256 of
//! everything the answers depend on ([`KeyParts`]: route, model file hash, adapter hash, KB
//! identity and generation, the test split's content, and the answer-affecting options), as
//! canonical JSON (object keys sorted, whatever serde_json's features), never of a folder name:
//! moving DIR, the model or the KB keeps the cache valid, and changing any of them misses it.
//! Files are written through a temporary file and a rename: complete or absent.

use crate::qa::QaItem;
use crate::{io_err, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Bumped when the stored format changes, so old entries miss instead of misreading.
const VERSION: &str = "lorag-eval-cache/1";

/// What a route's answers depend on. Use content hashes ([`file_hash`], [`split_hash`]), not
/// paths.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyParts {
    pub route: String,
    /// The model file's SHA-256 (or another content id).
    pub model: String,
    /// The adapter file's SHA-256, if the route uses one.
    pub adapter: Option<String>,
    /// The KB's identity (e.g. its embedding model id), if the route uses one.
    pub kb: Option<String>,
    /// The KB's generation (it changes with every commit to the KB).
    pub kb_generation: Option<u64>,
    /// [`split_hash`] of the test questions.
    pub split: String,
    /// Every option that changes an answer (k, answer budget, sampling, template, style…).
    pub options: Value,
}

/// A cache key: 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(pub String);

impl std::fmt::Display for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl KeyParts {
    /// SHA-256 of the canonical JSON of these parts.
    pub fn key(&self) -> CacheKey {
        let v = serde_json::to_value(self).expect("key parts always serialize");
        let mut h = Sha256::new();
        h.update(VERSION.as_bytes());
        h.update([0]);
        h.update(canonical_json(&v).as_bytes());
        CacheKey(hex::encode(h.finalize()))
    }
}

/// JSON with object keys sorted at every level and no whitespace: the same value always gives
/// the same text.
pub fn canonical_json(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let body: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical_json(&m[k])))
                .collect();
            format!("{{{}}}", body.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical_json).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// SHA-256 (hex) of questions in order: ids, questions, references and sources.
pub fn split_hash(items: &[QaItem]) -> String {
    let v = serde_json::to_value(items).expect("items always serialize");
    hex::encode(Sha256::digest(canonical_json(&v).as_bytes()))
}

/// SHA-256 (hex) of a file's bytes, read in 1 MiB blocks.
pub fn file_hash(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Answers cached under `DIR/cache/`.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// The cache of the run writing to `out_dir` (`out_dir/cache`; created on the first put).
    pub fn new(out_dir: &Path) -> Self {
        Self {
            dir: out_dir.join("cache"),
        }
    }

    /// Where `key`'s entry lives.
    pub fn path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// The rows stored under `key`, or `None` when absent. An entry that does not parse as `T`
    /// (written by another version) is a miss, and the next [`Cache::put`] replaces it.
    pub fn get<T: DeserializeOwned>(&self, key: &CacheKey) -> Result<Option<T>> {
        let path = self.path(key);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let v: Option<Value> = serde_json::from_str(&text).ok();
        Ok(
            v.filter(|v| v.get("key").and_then(Value::as_str) == Some(key.0.as_str()))
                .and_then(|mut v| v.get_mut("rows").map(Value::take))
                .and_then(|rows| serde_json::from_value(rows).ok()),
        )
    }

    /// Store `rows` under `key` (temporary file + rename).
    pub fn put<T: Serialize>(&self, key: &CacheKey, rows: &T) -> Result<()> {
        let v = serde_json::json!({ "key": key.0, "rows": rows });
        crate::write_atomic(&self.path(key), v.to_string().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parts() -> KeyParts {
        KeyParts {
            route: "rag".into(),
            model: "ab12".into(),
            adapter: None,
            kb: Some("all-MiniLM-L6-v2@9f0e".into()),
            kb_generation: Some(17),
            split: split_hash(&[]),
            options: json!({"k": 4, "max_tokens": 64, "style": "short"}),
        }
    }

    #[test]
    fn every_part_changes_the_key_and_key_order_does_not() {
        let base = parts().key();
        assert_eq!(base.0.len(), 64);
        assert_eq!(parts().key(), base);
        let mut p = parts();
        p.options = json!({"style": "short", "max_tokens": 64, "k": 4});
        assert_eq!(p.key(), base, "option order must not matter");
        let changes: [fn(&mut KeyParts); 7] = [
            |p| p.options["k"] = json!(5),
            |p| p.route = "rag+ft".into(),
            |p| p.model = "ab13".into(),
            |p| p.adapter = Some("cd34".into()),
            |p| p.kb_generation = Some(18),
            |p| p.kb = None,
            |p| {
                p.split = split_hash(&[QaItem {
                    id: "q1".into(),
                    question: "Q?".into(),
                    answer: "A".into(),
                    sources: vec![],
                    alternatives: vec![],
                }])
            },
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut p = parts();
            change(&mut p);
            assert_ne!(p.key(), base, "change {i} kept the key");
        }
        assert_eq!(
            canonical_json(&json!({"b": [1, {"d": 2, "c": "x"}], "a": null})),
            r#"{"a":null,"b":[1,{"c":"x","d":2}]}"#
        );
    }

    #[test]
    fn put_then_get_and_misses() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::new(d.path());
        let key = parts().key();
        assert_eq!(cache.get::<Vec<String>>(&key).unwrap(), None);
        let rows = vec!["first answer".to_string(), "second <b>".to_string()];
        cache.put(&key, &rows).unwrap();
        assert!(cache.path(&key).starts_with(d.path().join("cache")));
        assert_eq!(cache.get::<Vec<String>>(&key).unwrap(), Some(rows));
        // No temporary file left behind.
        assert_eq!(
            std::fs::read_dir(d.path().join("cache")).unwrap().count(),
            1
        );
        // Another type, a corrupt file, or a file under the wrong name: misses.
        assert_eq!(cache.get::<Vec<u32>>(&key).unwrap(), None);
        let other = KeyParts {
            route: "ft".into(),
            ..parts()
        }
        .key();
        std::fs::copy(cache.path(&key), cache.path(&other)).unwrap();
        assert_eq!(cache.get::<Vec<String>>(&other).unwrap(), None);
        std::fs::write(cache.path(&key), "{truncated").unwrap();
        assert_eq!(cache.get::<Vec<String>>(&key).unwrap(), None);
    }

    #[test]
    fn file_hash_is_sha256_of_the_bytes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.gguf");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            file_hash(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(file_hash(&d.path().join("none")).is_err());
    }
}
