//! API keys: a JSON file of key records. A key is shown once when made; only its SHA-256 is
//! stored, with its name, the knowledge bases it may read and whether it may ingest.
//!
//! The server re-reads the file when its modification time changes, so `lorag keys revoke`
//! takes effect without a restart.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyRecord {
    pub name: String,
    /// SHA-256 of the key, hex.
    pub sha256: String,
    #[serde(default)]
    pub kbs: Vec<String>,
    #[serde(default)]
    pub all_kbs: bool,
    #[serde(default)]
    pub ingest: bool,
    #[serde(default)]
    pub created: u64,
}

impl KeyRecord {
    pub fn may_read(&self, kb: &str) -> bool {
        self.all_kbs || self.kbs.iter().any(|k| k == kb)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct KeyFile {
    pub keys: Vec<KeyRecord>,
}

pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The default key file: `$LORAG_HOME/keys.json`, else `~/.config/lorag/keys.json`.
pub fn default_path() -> PathBuf {
    if let Some(h) = std::env::var_os("LORAG_HOME") {
        return PathBuf::from(h).join("keys.json");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".config/lorag/keys.json")
}

impl KeyFile {
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).with_context(|| {
                format!(
                    "{}: not a lorag key file (expected {{\"keys\": [...]}})",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Write through a temporary file and a rename (never a half-written key file), mode 0600.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
        let body = serde_json::to_vec_pretty(self).expect("serializable");
        std::fs::write(&tmp, body).with_context(|| format!("writing {}", tmp.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600));
        }
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Add a key named `name`; returns the key (shown once).
    pub fn add(
        &mut self,
        name: &str,
        kbs: &[String],
        all_kbs: bool,
        ingest: bool,
    ) -> Result<String> {
        if name.trim().is_empty() || name.chars().any(|c| c.is_control()) {
            bail!("a key name must be non-empty printable text");
        }
        if self.keys.iter().any(|k| k.name == name) {
            bail!("a key named {name:?} exists; revoke it first or pick another name");
        }
        let mut bytes = [0u8; 24];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
        let key = format!("lorag-{}", hex::encode(bytes));
        self.keys.push(KeyRecord {
            name: name.to_string(),
            sha256: hash_key(&key),
            kbs: kbs.to_vec(),
            all_kbs,
            ingest,
            created: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        });
        Ok(key)
    }

    pub fn revoke(&mut self, name: &str) -> bool {
        let n = self.keys.len();
        self.keys.retain(|k| k.name != name);
        self.keys.len() != n
    }

    pub fn find(&self, key: &str) -> Option<&KeyRecord> {
        let h = hash_key(key);
        self.keys.iter().find(|k| k.sha256 == h)
    }
}

/// The server's view of a key file, reloaded when the file changes.
pub struct KeyStore {
    path: PathBuf,
    state: Mutex<(Option<SystemTime>, KeyFile)>,
}

impl KeyStore {
    pub fn open(path: &Path) -> Result<Self> {
        if !path.exists() {
            bail!(
                "{}: no such key file; make one with `lorag keys add NAME --file {}`",
                path.display(),
                path.display()
            );
        }
        let file = KeyFile::load(path)?;
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        Ok(Self {
            path: path.to_path_buf(),
            state: Mutex::new((mtime, file)),
        })
    }

    /// The record of `key`, after re-reading the file if it changed. A file that became
    /// unreadable keeps the last good set (and the error is the caller's to log).
    pub fn lookup(&self, key: &str) -> Option<KeyRecord> {
        let mut st = self.state.lock().expect("not poisoned");
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if mtime != st.0 {
            match mtime {
                Some(_) => {
                    if let Ok(f) = KeyFile::load(&self.path) {
                        *st = (mtime, f);
                    }
                }
                // Deleted: no key is valid any more.
                None => *st = (None, KeyFile::default()),
            }
        }
        st.1.find(key).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stored_hashed_found_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let mut f = KeyFile::load(&path).unwrap();
        let k = f.add("alice", &["faq".into()], false, true).unwrap();
        assert!(f.add("alice", &[], true, false).is_err());
        f.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&k), "the key itself is never stored");
        let store = KeyStore::open(&path).unwrap();
        let rec = store.lookup(&k).unwrap();
        assert!(rec.may_read("faq") && !rec.may_read("hr") && rec.ingest);
        assert!(store.lookup("lorag-wrong").is_none());
        let mut f = KeyFile::load(&path).unwrap();
        assert!(f.revoke("alice"));
        std::thread::sleep(std::time::Duration::from_millis(20));
        f.save(&path).unwrap();
        // Force a visible mtime change even on coarse clocks.
        let later = SystemTime::now() + std::time::Duration::from_secs(2);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(
            store.lookup(&k).is_none(),
            "revocation applies without restart"
        );
    }
}
