//! `discover` on a real folder tree: kinds, hidden and binary files, globs, nested folders and
//! sources exactly as given.

use std::collections::BTreeMap;
use std::path::Path;

use lorag_ingest::{discover, Candidate, Skipped, WalkOptions};

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write");
}

/// docs/ with every case discover has to sort out.
fn tree(root: &Path) {
    let text = b"some text\n";
    write(root, "docs/a.md", text);
    write(root, "docs/B.TXT", text);
    write(root, "docs/guide.markdown", text);
    write(root, "docs/sub/page.html", b"<p>hi</p>");
    write(
        root,
        "docs/sub/deeper/report.pdf",
        b"%PDF-1.4 not parsed by discover",
    );
    write(root, "docs/sub/deeper/people.csv", b"a,b\n1,2\n");
    write(root, "docs/sub/deeper/data.json", b"{}");
    write(root, "docs/sub/deeper/log.jsonl", b"{}");
    write(root, "docs/sub/deeper/letter.docx", b"PK\x03\x04");
    write(root, "docs/page.htm", b"<p>x</p>");
    write(root, "docs/.secret.md", text);
    write(root, "docs/.git/config.txt", text);
    write(root, "docs/img.png", b"\x89PNG");
    write(root, "docs/tool.exe", b"MZ");
    write(root, "docs/bundle.zip", b"PK");
    write(root, "docs/kb.sqlite", b"SQLite format 3\0");
    write(root, "docs/old.doc", b"\xd0\xcf");
    write(root, "docs/fake.txt", b"looks like text\0but is not");
    write(root, "docs/style.css", b"p{}");
    write(root, "docs/Makefile", b"all:");
    write(root, "docs/node_modules/pkg/readme.md", text);
}

fn sources(cands: &[Candidate]) -> Vec<(String, String)> {
    cands
        .iter()
        .map(|c| (c.source.clone(), c.kind.clone()))
        .collect()
}

fn reasons(skipped: &[Skipped]) -> BTreeMap<String, String> {
    skipped
        .iter()
        .map(|s| (s.source.clone(), s.reason.clone()))
        .collect()
}

#[test]
fn walks_nested_folders_with_kinds_and_reasons() {
    let tmp = tempfile::tempdir().expect("tempdir");
    tree(tmp.path());
    let input = format!("{}/docs/", tmp.path().display());
    let (cands, skipped) =
        discover(std::slice::from_ref(&input), &WalkOptions::default()).expect("discover");
    let p = |rel: &str| format!("{input}{rel}");
    let expect: Vec<(String, String)> = [
        ("B.TXT", "txt"),
        ("a.md", "md"),
        ("guide.markdown", "md"),
        ("node_modules/pkg/readme.md", "md"),
        ("page.htm", "html"),
        ("sub/deeper/data.json", "json"),
        ("sub/deeper/letter.docx", "docx"),
        ("sub/deeper/log.jsonl", "jsonl"),
        ("sub/deeper/people.csv", "csv"),
        ("sub/deeper/report.pdf", "pdf"),
        ("sub/page.html", "html"),
    ]
    .iter()
    .map(|(rel, kind)| (p(rel), kind.to_string()))
    .collect();
    assert_eq!(sources(&cands), expect);
    assert!(cands.iter().all(|c| c.path == Path::new(&c.source)));
    let r = reasons(&skipped);
    assert_eq!(r[&p(".secret.md")], "hidden (name starts with '.')");
    assert_eq!(r[&p(".git")], "hidden (name starts with '.')");
    assert!(
        !r.contains_key(&p(".git/config.txt")),
        "a hidden folder is not entered"
    );
    assert_eq!(r[&p("img.png")], "binary file type (.png)");
    assert_eq!(r[&p("tool.exe")], "binary file type (.exe)");
    assert_eq!(r[&p("bundle.zip")], "binary file type (.zip)");
    assert_eq!(
        r[&p("kb.sqlite")],
        "binary file type (.sqlite); to ingest a SQLite table use sqlite:PATH?table=T"
    );
    assert_eq!(
        r[&p("old.doc")],
        "binary file type (.doc); save it as .docx or .pdf to ingest it"
    );
    assert_eq!(r[&p("fake.txt")], "binary content (NUL bytes)");
    assert!(r[&p("style.css")].starts_with("unsupported file type (.css; supported: txt, md"));
    assert!(r[&p("Makefile")].starts_with("no file extension (supported: "));
    assert_eq!(r.len(), 10, "{r:#?}");
}

#[test]
fn include_and_exclude_globs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    tree(tmp.path());
    let input = format!("{}/docs", tmp.path().display());
    let p = |rel: &str| format!("{input}/{rel}");

    let opts = WalkOptions {
        include: vec!["*.md".into(), "sub/**/*.csv".into()],
        exclude: vec![],
    };
    let (cands, skipped) = discover(std::slice::from_ref(&input), &opts).expect("discover");
    let got: Vec<String> = cands.into_iter().map(|c| c.source).collect();
    assert_eq!(
        got,
        [
            p("a.md"),
            p("node_modules/pkg/readme.md"),
            p("sub/deeper/people.csv")
        ]
    );
    let r = reasons(&skipped);
    assert_eq!(
        r[&p("page.htm")],
        "not matched by any include pattern (*.md, sub/**/*.csv)"
    );

    // Exclude wins over include; an excluded folder is not entered; the file name matches too.
    let opts = WalkOptions {
        include: vec!["**/*.md".into(), "*.csv".into()],
        exclude: vec!["node_modules".into(), "people.*".into()],
    };
    let (cands, skipped) = discover(std::slice::from_ref(&input), &opts).expect("discover");
    let got: Vec<String> = cands.into_iter().map(|c| c.source).collect();
    assert_eq!(got, [p("a.md")]);
    let r = reasons(&skipped);
    assert_eq!(r[&p("node_modules")], "excluded by pattern `node_modules`");
    assert!(!r.contains_key(&p("node_modules/pkg/readme.md")));
    assert_eq!(
        r[&p("sub/deeper/people.csv")],
        "excluded by pattern `people.*`"
    );

    // Globs see the source as given too (an absolute path here).
    let opts = WalkOptions {
        include: vec![format!("{input}/sub/*")],
        exclude: vec![],
    };
    let (cands, _) = discover(std::slice::from_ref(&input), &opts).expect("discover");
    assert_eq!(cands.len(), 6, "`*` crosses `/` in these globs: {cands:?}");
}

#[test]
fn sources_are_the_paths_as_given() {
    let tmp = tempfile::tempdir().expect("tempdir");
    tree(tmp.path());
    // The one test here that uses relative paths, and the only one to change the current
    // directory (the others use absolute paths, so they do not mind).
    std::env::set_current_dir(tmp.path()).expect("chdir");
    let opts = WalkOptions {
        include: vec!["page.html".into()],
        exclude: vec![],
    };
    for (input, want) in [
        ("docs", "docs/sub/page.html"),
        ("docs/", "docs/sub/page.html"),
        ("./docs", "./docs/sub/page.html"),
        ("docs/sub/../sub", "docs/sub/../sub/page.html"),
    ] {
        let (cands, _) = discover(&[input.to_string()], &opts).expect("discover");
        let got: Vec<&str> = cands.iter().map(|c| c.source.as_str()).collect();
        assert_eq!(got, [want], "input {input}");
    }
    // A file given by name, even a hidden one, is taken as given; two paths to one file are
    // one candidate; a glob matches without the leading `./`.
    let inputs = [
        "./docs/a.md",
        "docs/.secret.md",
        "docs/a.md",
        "docs/sub/../a.md",
    ]
    .map(String::from);
    let opts = WalkOptions {
        include: vec!["docs/*".into()],
        exclude: vec![],
    };
    let (cands, skipped) = discover(&inputs, &opts).expect("discover");
    let got: Vec<&str> = cands.iter().map(|c| c.source.as_str()).collect();
    assert_eq!(got, ["./docs/a.md", "docs/.secret.md"]);
    let r = reasons(&skipped);
    assert_eq!(r["docs/a.md"], "same file as ./docs/a.md");
    assert_eq!(r["docs/sub/../a.md"], "same file as ./docs/a.md");
}

#[test]
fn symlinked_files_and_loops() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("kb");
    write(&root, "real/notes.md", b"# Notes\n");
    std::os::unix::fs::symlink(root.join("real/notes.md"), root.join("alias.md")).expect("link");
    std::os::unix::fs::symlink(&root, root.join("real/loop")).expect("loop link");
    let input = root.to_string_lossy().into_owned();
    let (cands, skipped) =
        discover(std::slice::from_ref(&input), &WalkOptions::default()).expect("discover");
    let got: Vec<String> = cands.into_iter().map(|c| c.source).collect();
    assert_eq!(got, [format!("{input}/alias.md")]);
    let r = reasons(&skipped);
    assert_eq!(
        r[&format!("{input}/real/notes.md")],
        format!("same file as {input}/alias.md")
    );
    assert_eq!(r[&format!("{input}/real/loop")], "symbolic link loop");
}
