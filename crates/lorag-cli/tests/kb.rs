//! The knowledge base through the binary, on real files, a real SQLite file, the real embedder:
//! ingest contracts, incremental updates, failures that do not abort a batch, SIGKILL safety.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn lorag() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lorag"))
}

fn ok_json(out: Output) -> Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn ingest(kb: &Path, paths: &[&Path], extra: &[&str]) -> Value {
    let mut c = lorag();
    c.arg("ingest");
    for p in paths {
        c.arg(p);
    }
    c.arg("--kb").arg(kb).arg("--json").args(extra);
    ok_json(c.output().unwrap())
}

fn search(kb: &Path, q: &str, extra: &[&str]) -> Vec<Value> {
    let out = lorag()
        .args(["search", q, "--json", "-k", "5"])
        .arg("--kb")
        .arg(kb)
        .args(extra)
        .output()
        .unwrap();
    ok_json(out)["results"].as_array().unwrap().clone()
}

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn ingest_search_change_delete_prune() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    let kb = tmp.path().join("kb");
    write(&docs, "permits.md", "# Permits\n\n## Applying\n\nA building permit application is filed with the municipal building committee.\n\n## Fees\n\nThe fee depends on the floor area of the building.\n");
    write(
        &docs,
        "safety.txt",
        "Scaffolding must be inspected every week by a competent person before use.\n",
    );
    write(
        &docs,
        "notes/concrete.txt",
        "Concrete reaches most of its strength after twenty-eight days of curing.\n",
    );
    let r = ingest(&kb, &[&docs], &[]);
    assert_eq!(r["added"], 3, "{r}");
    assert_eq!(r["failed"].as_array().unwrap().len(), 0, "{r}");
    for k in [
        "added",
        "updated",
        "unchanged",
        "removed",
        "failed",
        "chunks",
        "seconds",
    ] {
        assert!(r.get(k).is_some(), "{k} in {r}");
    }

    let hits = search(&kb, "who inspects scaffolding?", &[]);
    let top = &hits[0];
    for k in [
        "rank", "score", "source", "title", "section", "page", "start", "end", "text", "metadata",
    ] {
        assert!(top.get(k).is_some(), "{k} in {top}");
    }
    assert_eq!(
        top["source"],
        docs.join("safety.txt").to_str().unwrap(),
        "source as given at ingest"
    );
    let hits = search(&kb, "permit fee floor area", &["--mode", "bm25"]);
    assert!(hits[0]["source"].as_str().unwrap().ends_with("permits.md"));
    assert!(
        hits[0]["section"].as_str().unwrap().contains("Fees"),
        "{}",
        hits[0]
    );
    let only_txt = search(&kb, "building", &["--filter", "kind=txt"]);
    assert!(only_txt
        .iter()
        .all(|h| h["source"].as_str().unwrap().ends_with(".txt")));
    let only_notes = search(
        &kb,
        "strength",
        &["--filter", "source=*notes/*", "--mode", "dense"],
    );
    assert!(
        !only_notes.is_empty()
            && only_notes
                .iter()
                .all(|h| h["source"].as_str().unwrap().contains("notes/"))
    );

    // Unchanged files are skipped.
    let r = ingest(&kb, &[&docs], &[]);
    assert_eq!(
        (r["added"].as_u64(), r["unchanged"].as_u64()),
        (Some(0), Some(3)),
        "{r}"
    );

    // Change a file: results follow, the old text is never returned.
    write(
        &docs,
        "safety.txt",
        "Hard hats are required on every construction site at all times.\n",
    );
    let r = ingest(&kb, &[&docs], &[]);
    assert_eq!(r["updated"], 1, "{r}");
    for mode in ["hybrid", "dense", "bm25"] {
        for h in search(&kb, "scaffolding inspected every week", &["--mode", mode]) {
            assert!(
                !h["text"].as_str().unwrap().contains("Scaffolding"),
                "stale chunk in {mode}: {h}"
            );
        }
    }
    let hits = search(&kb, "hard hats", &[]);
    assert!(hits[0]["text"].as_str().unwrap().contains("Hard hats"));

    // Delete a file: --prune removes it.
    std::fs::remove_file(docs.join("notes/concrete.txt")).unwrap();
    let r = ingest(&kb, &[&docs], &["--prune"]);
    assert_eq!(r["removed"], 1, "{r}");
    for h in search(&kb, "concrete curing strength", &[]) {
        assert!(!h["source"].as_str().unwrap().contains("concrete"), "{h}");
    }
    let stats = ok_json(
        lorag()
            .args(["kb", "stats", "--json"])
            .arg("--kb")
            .arg(&kb)
            .output()
            .unwrap(),
    );
    assert_eq!(stats["sources"], 2, "{stats}");
    assert_eq!(stats["index_state"], "fresh");
}

#[test]
fn bad_files_land_in_failed_and_the_rest_is_ingested() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("in");
    let kb = tmp.path().join("kb");
    write(
        &d,
        "good.txt",
        "Good text about foundations and footings.\n",
    );
    write(
        &d,
        "good2.md",
        "# Roofs\n\nRoof trusses are spaced evenly.\n",
    );
    write(&d, "empty.txt", "");
    std::fs::write(
        d.join("corrupt.pdf"),
        b"%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage garbage",
    )
    .unwrap();
    std::fs::write(
        d.join("binary.txt"),
        [0u8, 159, 146, 150, 0, 1, 2, 3, 0, 0, 255, 254],
    )
    .unwrap();
    std::fs::write(
        d.join("latin1.txt"),
        b"caf\xe9 cr\xe8me, not UTF-8 \xff\xfe",
    )
    .unwrap();
    // Unreadable: tests run as root, for whom permissions do not apply; a dangling symlink
    // named like a document cannot be read by anyone.
    std::os::unix::fs::symlink(tmp.path().join("nowhere.txt"), d.join("dangling.txt")).unwrap();
    let r = ingest(&kb, &[&d], &[]);
    assert_eq!(r["added"], 2, "{r}");
    let failed: Vec<(String, String)> = r["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["source"].as_str().unwrap().to_string(),
                f["error"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for name in [
        "empty.txt",
        "corrupt.pdf",
        "binary.txt",
        "latin1.txt",
        "dangling.txt",
    ] {
        let f = failed.iter().find(|(s, _)| s.ends_with(name));
        let (_, reason) = f.unwrap_or_else(|| panic!("{name} not in failed: {r}"));
        assert!(reason.len() > 5, "{name}: {reason}");
    }
    assert_eq!(search(&kb, "roof trusses", &[]).len(), 2);
}

#[test]
fn sigkill_mid_ingest_leaves_a_consistent_kb() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("many");
    let kb = tmp.path().join("kb");
    let n = 300;
    for i in 0..n {
        let body: String = (0..40)
            .map(|j| format!("Document {i} paragraph {j} describes load-bearing wall number {} and its mortar.\n\n", i * 100 + j))
            .collect();
        write(&d, &format!("f{i:04}.txt"), &body);
    }
    let mut child = lorag()
        .arg("ingest")
        .arg(&d)
        .arg("--kb")
        .arg(&kb)
        .arg("--json")
        .spawn()
        .unwrap();
    // Wait until some sources are committed, then kill without warning.
    let db = kb.join("kb.sqlite");
    let t0 = std::time::Instant::now();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        if db.exists() {
            if let Ok(c) = rusqlite_count(&db, "SELECT COUNT(*) FROM sources") {
                if c >= 20 {
                    break;
                }
            }
        }
        assert!(t0.elapsed().as_secs() < 600, "ingest made no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "ingest finished before it could be killed"
        );
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // The KB opens; no partial document, no duplicate chunk.
    let sources = rusqlite_count(&db, "SELECT COUNT(*) FROM sources").unwrap();
    assert!(sources >= 20 && sources < n, "{sources}");
    assert_eq!(rusqlite_count(&db, "SELECT COUNT(*) FROM sources s WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.source_id = s.id)").unwrap(), 0);
    assert_eq!(rusqlite_count(&db, "SELECT COUNT(*) FROM (SELECT document_id, ordinal FROM chunks GROUP BY 1, 2 HAVING COUNT(*) > 1)").unwrap(), 0);
    // Every document's chunk ordinals are 0..n without a gap: nothing half-written.
    assert_eq!(
        rusqlite_count(&db, "SELECT COUNT(*) FROM (SELECT document_id FROM chunks GROUP BY document_id HAVING MAX(ordinal) + 1 != COUNT(*))").unwrap(),
        0
    );
    let stats = ok_json(
        lorag()
            .args(["kb", "stats", "--json"])
            .arg("--kb")
            .arg(&kb)
            .output()
            .unwrap(),
    );
    assert_eq!(stats["sources"].as_u64().unwrap() as i64, sources);

    // The second run completes, skipping what was committed.
    let r = ingest(&kb, &[&d], &[]);
    assert_eq!(r["unchanged"].as_i64().unwrap(), sources, "{r}");
    assert_eq!(r["added"].as_i64().unwrap(), n - sources, "{r}");
    assert_eq!(
        rusqlite_count(&db, "SELECT COUNT(*) FROM sources").unwrap(),
        n
    );
    let per_file = rusqlite_count(
        &db,
        "SELECT COUNT(DISTINCT c) FROM (SELECT COUNT(*) AS c FROM chunks GROUP BY source_id)",
    )
    .unwrap();
    assert_eq!(per_file, 1, "every file has the same number of chunks");
    let hits = search(&kb, "load-bearing wall number 29905", &["--mode", "bm25"]);
    assert!(
        hits[0]["source"].as_str().unwrap().ends_with("f0299.txt"),
        "{:?}",
        hits[0]
    );
}

/// Read a count through the sqlite3 CLI-free path: a tiny query via the `lorag` crate's own SQLite.
fn rusqlite_count(db: &Path, sql: &str) -> Result<i64, String> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| e.to_string())?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    conn.query_row(sql, [], |r| r.get(0))
        .map_err(|e| e.to_string())
}
