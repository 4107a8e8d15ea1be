//! Bad inputs: each is an `Err` from `load`/`fingerprint` whose message names the file and a
//! reason, and each is a `Skipped` (never an `Err`) from `discover`.

mod common;

use std::path::Path;

use common::candidate;
use lorag_ingest::{discover, fingerprint, load, Candidate, IngestError, WalkOptions};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write");
    path
}

fn load_err(c: &Candidate) -> IngestError {
    let err = load(c).expect_err(&c.source);
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{}: ", c.source)),
        "does not name the file: {msg}"
    );
    assert_eq!(err.input(), Some(c.source.as_str()));
    err
}

#[test]
fn binary_renamed_txt() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A real PNG signature and header, renamed .txt.
    let path = write(
        dir.path(),
        "photo.txt",
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01",
    );
    let err = load_err(&candidate(&path, "txt"));
    assert_eq!(
        err.to_string(),
        format!("{}: binary content (NUL bytes), not text", path.display())
    );
    // The same check guards every text kind.
    for kind in ["md", "html", "csv", "json", "jsonl"] {
        assert!(matches!(
            load_err(&candidate(&path, kind)),
            IngestError::Binary { .. }
        ));
    }
}

#[test]
fn text_no_encoding_explains_names_the_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Latin-1 is not refused any more (tests/encodings.rs): it is decoded.
    let path = write(dir.path(), "latin1.txt", b"Caf\xe9 au lait");
    let loaded = load(&candidate(&path, "txt")).expect("Latin-1 decodes");
    assert_eq!(loaded.documents[0].text, "Café au lait");
    // UTF-8 with one stray byte: no one encoding explains the file.
    let path = write(dir.path(), "late.md", "# Title\n\nvalid ü then ".as_bytes());
    let mut bytes = std::fs::read(&path).expect("read");
    let offset = bytes.len();
    bytes.extend([0xff, b'x']);
    std::fs::write(&path, bytes).expect("write");
    let err = load_err(&candidate(&path, "md"));
    assert!(
        matches!(err, IngestError::Undecodable { offset: o, .. } if o == offset),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&format!("byte 0xFF at offset {offset} is not UTF-8")),
        "{err}"
    );
}

#[test]
fn empty_and_blank_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, kind, bytes) in [
        ("empty.txt", "txt", &b""[..]),
        ("blank.txt", "txt", b" \n\t\r\n  "),
        ("bom-only.md", "md", b"\xef\xbb\xbf\n"),
        ("front-matter-only.md", "md", b"---\ntitle: x\n---\n\n"),
        ("empty.csv", "csv", b""),
        ("empty.json", "json", b"  \n"),
        ("empty.jsonl", "jsonl", b"\n\n"),
        ("empty.html", "html", b""),
        ("empty.pdf", "pdf", b""),
        ("empty.docx", "docx", b""),
    ] {
        let path = write(dir.path(), name, bytes);
        let err = load_err(&candidate(&path, kind));
        assert_eq!(
            err.to_string(),
            format!("{}: empty file (nothing to index)", path.display()),
            "{name}"
        );
    }
    let path = write(
        dir.path(),
        "scripts.html",
        b"<html><script>x()</script><nav>menu</nav></html>",
    );
    let err = load_err(&candidate(&path, "html"));
    assert!(matches!(err, IngestError::NoText { .. }), "{err:?}");
}

#[test]
fn unreadable_missing_and_dangling() {
    // Tests run as root, for whom chmod 000 still reads: "unreadable" is simulated with a
    // directory named like a file (read fails with EISDIR) and a dangling symbolic link.
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join("x.txt");
    std::fs::create_dir(&folder).expect("mkdir");
    let c = candidate(&folder, "txt");
    let err = load_err(&c);
    assert!(matches!(err, IngestError::Io { .. }), "{err:?}");
    assert!(err
        .to_string()
        .starts_with(&format!("{}: cannot read: ", folder.display())));
    assert!(fingerprint(&c).is_err());

    let missing = dir.path().join("gone.md");
    let c = candidate(&missing, "md");
    assert_eq!(
        load_err(&c).to_string(),
        format!("{}: not found", missing.display())
    );
    assert_eq!(
        fingerprint(&c).expect_err("missing").to_string(),
        format!("{}: not found", missing.display())
    );

    let link = dir.path().join("link.txt");
    std::os::unix::fs::symlink(dir.path().join("nowhere.txt"), &link).expect("symlink");
    let err = load_err(&candidate(&link, "txt"));
    assert_eq!(
        err.to_string(),
        format!(
            "{}: not found (broken symbolic link to {})",
            link.display(),
            dir.path().join("nowhere.txt").display()
        )
    );

    let c = Candidate {
        kind: "rtf".into(),
        ..candidate(&link, "txt")
    };
    assert!(matches!(load_err(&c), IngestError::Unsupported { .. }));
}

#[test]
fn discover_skips_every_bad_input_and_keeps_going() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = write(dir.path(), "good.txt", b"fine");
    let nul = write(dir.path(), "binary.txt", b"abc\0def");
    let folder = dir.path().join("folder.txt");
    std::fs::create_dir(&folder).expect("mkdir");
    let link = dir.path().join("dangling.md");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).expect("symlink");
    let inputs: Vec<String> = [
        dir.path().join("missing.txt"),
        nul,
        link.clone(),
        good.clone(),
        dir.path().join("also-missing"),
    ]
    .iter()
    .map(|p| p.to_string_lossy().into_owned())
    .collect();
    let (cands, skipped) = discover(&inputs, &WalkOptions::default()).expect("never an Err");
    assert_eq!(cands.len(), 1);
    assert_eq!(cands[0].source, good.to_string_lossy());
    let reasons: Vec<(&str, &str)> = skipped
        .iter()
        .map(|s| (s.source.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            (inputs[0].as_str(), "not found"),
            (inputs[1].as_str(), "binary content (NUL bytes)"),
            (inputs[2].as_str(), "not found (broken symbolic link)"),
            (inputs[4].as_str(), "not found"),
        ]
    );
    // An invalid glob is the one error.
    let opts = WalkOptions {
        include: vec!["docs/[a-".into()],
        exclude: vec![],
    };
    let err = discover(&inputs, &opts).expect_err("bad glob");
    assert!(
        err.to_string()
            .starts_with("invalid glob pattern `docs/[a-`: "),
        "{err}"
    );
}
