//! The knowledge base through the binary, on real files, a real SQLite file, the real embedder:
//! ingest contracts, incremental updates, failures that do not abort a batch, SIGKILL safety.

mod common;

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
    // Latin-1 is decoded now (lorag-ingest tests/encodings.rs); UTF-8 mixed with a stray
    // Latin-1 byte is text that no one encoding explains.
    std::fs::write(
        d.join("mixed.txt"),
        [
            "café crème in UTF-8, then a stray byte: ".as_bytes(),
            b"\xe9!",
        ]
        .concat(),
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
        "mixed.txt",
        "dangling.txt",
    ] {
        let f = failed.iter().find(|(s, _)| s.ends_with(name));
        let (_, reason) = f.unwrap_or_else(|| panic!("{name} not in failed: {r}"));
        assert!(reason.len() > 5, "{name}: {reason}");
    }
    assert_eq!(search(&kb, "roof trusses", &[]).len(), 2);
}

/// Every source's chunks as (source, document ordinal in source, chunk ordinal, text), sorted: the
/// content of a KB, whatever the ids and the order of commits.
fn kb_content(db: &Path) -> Vec<(String, i64, String)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut st = conn
        .prepare(
            "SELECT s.source, c.ordinal, c.text FROM chunks c JOIN sources s ON s.id = c.source_id",
        )
        .unwrap();
    let mut rows: Vec<(String, i64, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows.sort();
    rows
}

/// The invariants a kill must never break: no source without chunks, no duplicate chunk, no
/// document with a gap in its chunk ordinals; the KB opens and agrees on the source count.
fn assert_whole(kb: &Path, n: i64) -> i64 {
    let db = kb.join("kb.sqlite");
    if !db.exists() {
        return 0; // killed before the KB was created
    }
    let sources = rusqlite_count(&db, "SELECT COUNT(*) FROM sources").unwrap();
    assert!(sources <= n, "{sources}");
    assert_eq!(rusqlite_count(&db, "SELECT COUNT(*) FROM sources s WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.source_id = s.id)").unwrap(), 0);
    assert_eq!(rusqlite_count(&db, "SELECT COUNT(*) FROM (SELECT document_id, ordinal FROM chunks GROUP BY 1, 2 HAVING COUNT(*) > 1)").unwrap(), 0);
    assert_eq!(
        rusqlite_count(&db, "SELECT COUNT(*) FROM (SELECT document_id FROM chunks GROUP BY document_id HAVING MAX(ordinal) + 1 != COUNT(*))").unwrap(),
        0
    );
    let stats = ok_json(
        lorag()
            .args(["kb", "stats", "--json"])
            .arg("--kb")
            .arg(kb)
            .output()
            .unwrap(),
    );
    assert_eq!(stats["sources"].as_u64().unwrap() as i64, sources);
    sources
}

/// kill -9 during `lorag ingest`, 20 times at points spread over the run (while the embedder
/// loads, right after a commit, a few milliseconds later: inside the next transaction): each time
/// the KB opens whole, and the run that finally completes leaves the content of an uninterrupted
/// run.
#[test]
fn sigkill_mid_ingest_twenty_times_leaves_a_consistent_kb() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("many");
    let kb = tmp.path().join("kb");
    let n = 600;
    for i in 0..n {
        // One short chunk per file: cheap to embed, and many commits per burst.
        let body: String = (0..3)
            .map(|j| format!("Document {i} paragraph {j} describes load-bearing wall number {} and its mortar.\n\n", i * 100 + j))
            .collect();
        write(&d, &format!("f{i:04}.txt"), &body);
    }
    let db = kb.join("kb.sqlite");
    let count = || {
        if db.exists() {
            rusqlite_count(&db, "SELECT COUNT(*) FROM sources").unwrap_or(0)
        } else {
            0
        }
    };
    let mut kills = Vec::new();
    for k in 0..20u64 {
        let before = count();
        let mut child = lorag()
            .arg("ingest")
            .arg(&d)
            .arg("--kb")
            .arg(&kb)
            .arg("--json")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Every fourth kill lands while the process starts (model load, discovery, the first
        // embedding); the others once a new commit shows, 0-5 ms later: sources are committed
        // in bursts (one embedding call for ~128 chunks, then a transaction per source), so
        // these land inside the burst, in or between transactions.
        let t0 = std::time::Instant::now();
        if k % 4 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(50 + 40 * k));
        } else {
            while count() <= before && child.try_wait().unwrap().is_none() {
                assert!(t0.elapsed().as_secs() < 300, "ingest made no progress");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            std::thread::sleep(std::time::Duration::from_millis(
                [0, 1, 2, 3, 5][k as usize % 5],
            ));
        }
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
        kills.push(assert_whole(&kb, n));
    }
    assert!(
        kills.last().copied().unwrap_or(0) < n,
        "the run ended before the last kill: {kills:?}"
    );
    // The run that completes skips what was committed and adds the rest.
    let committed = count();
    let r = ingest(&kb, &[&d], &[]);
    assert_eq!(r["unchanged"].as_i64().unwrap(), committed, "{r}");
    assert_eq!(r["added"].as_i64().unwrap(), n - committed, "{r}");
    assert_eq!(assert_whole(&kb, n), n);
    // The same content as one uninterrupted run.
    let straight = tmp.path().join("straight");
    ingest(&straight, &[&d], &[]);
    let (a, b) = (kb_content(&db), kb_content(&straight.join("kb.sqlite")));
    assert_eq!(a.len(), b.len());
    assert!(
        a == b,
        "the interrupted KB's chunks differ from an uninterrupted run's"
    );
    let hits = search(&kb, "load-bearing wall number 59902", &["--mode", "bm25"]);
    assert!(
        hits[0]["source"].as_str().unwrap().ends_with("f0599.txt"),
        "{:?}",
        hits[0]
    );
    eprintln!("sources after each kill: {kills:?}");
}

/// A full disk during ingest (every file the process writes limited in size, see
/// `common::size_limited`): one clear error that names the KB file, says what to do and which
/// source was not written; the sources committed before stay whole, nothing half-written is
/// left, and a run with space completes.
#[test]
fn a_full_disk_stops_ingest_with_a_clear_error_and_a_whole_kb() {
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    let more = tmp.path().join("more");
    let kb = tmp.path().join("kb");
    for i in 0..5 {
        write(
            &first,
            &format!("d{i}.txt"),
            &format!("Mortar type {i} holds load-bearing walls.\n"),
        );
    }
    for i in 0..60 {
        let body: String = (0..40)
            .map(|j| {
                format!(
                    "More {i} paragraph {j} on roof trusses number {} and rafters.\n\n",
                    i * 100 + j
                )
            })
            .collect();
        write(&more, &format!("m{i:03}.txt"), &body);
    }
    ingest(&kb, &[&first], &[]);
    let db = kb.join("kb.sqlite");
    let before = kb_content(&db);
    let size = std::fs::metadata(&db).unwrap().len() / 1024;
    let out = common::size_limited(
        size + 64,
        &[
            "ingest",
            more.to_str().unwrap(),
            "--kb",
            kb.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    for needle in [
        "kb.sqlite",
        "disk full",
        "ingest stopped",
        "run ingest again",
    ] {
        assert!(line.contains(needle), "{needle:?} in {line}");
    }
    assert!(
        err.lines().filter(|l| l.starts_with("failed")).count() <= 1,
        "{err}"
    );
    // What was there is intact; what was added is whole.
    let committed = assert_whole(&kb, 65);
    assert!(
        committed < 65,
        "the limit stopped nothing: {committed} sources"
    );
    let after = kb_content(&db);
    assert!(
        before.iter().all(|r| after.contains(r)),
        "a source from before was lost"
    );
    assert!(
        common::leftovers(&kb).is_empty(),
        "{:?}",
        common::leftovers(&kb)
    );
    // With space, the next run completes.
    let r = ingest(&kb, &[&more], &[]);
    assert_eq!(r["failed"].as_array().unwrap().len(), 0, "{r}");
    assert_eq!(assert_whole(&kb, 65), 65);
    assert_eq!(
        search(&kb, "roof trusses number 5939", &["--mode", "bm25"])[0]["source"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap(),
        "m059.txt"
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

/// `lorag rag-data`: each Q&A becomes the conversation `lorag ask` would have (its system
/// prompt, the retrieved sources numbered and quoted, the question with the style), with the
/// reference answer citing the source that holds it; answers no source supports are skipped
/// (or become refusals); a bad line names file and line; nothing is written on failure.
#[test]
fn rag_data_turns_qa_into_ask_prompts_with_cited_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("docs");
    let kb = tmp.path().join("kb");
    write(
        &d,
        "concrete.txt",
        "Concrete curing\n\nFresh concrete must be kept moist for seven days after it is poured.\n",
    );
    write(
        &d,
        "roofs.txt",
        "Roof trusses\n\nRoof trusses are spaced 600 millimetres apart on centre.\n",
    );
    write(
        &d,
        "permits.txt",
        "Permits\n\nA building permit is issued by the municipal building department.\n",
    );
    ingest(&kb, &[&d], &[]);
    let qa = tmp.path().join("qa.jsonl");
    let qa_line = |q: &str, a: &str| {
        serde_json::json!({"messages": [
            {"role": "user", "content": q}, {"role": "assistant", "content": a}]})
        .to_string()
    };
    std::fs::write(
        &qa,
        [
            qa_line("How far apart are roof trusses spaced?", "600 millimetres"),
            qa_line(
                "How long must fresh concrete be kept moist?",
                "For seven days after it is poured.",
            ),
            qa_line(
                "What colour is the site office?",
                "Bright green with purple stripes",
            ),
        ]
        .join("\n"),
    )
    .unwrap();
    let out = tmp.path().join("train.jsonl");
    let style = "Answer with a short phrase from the sources.";
    let run = |missing: &str| {
        ok_json(
            lorag()
                .args(["rag-data", "-k", "2", "--json", "--style", style])
                .args(["--missing", missing])
                .arg("--kb")
                .arg(&kb)
                .arg("--data")
                .arg(&qa)
                .arg("--out")
                .arg(&out)
                .output()
                .unwrap(),
        )
    };
    let r = run("skip");
    assert_eq!(
        (&r["written"], &r["cited"], &r["skipped"]),
        (&2.into(), &2.into(), &1.into()),
        "{r}"
    );
    let convs: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(convs.len(), 2);
    for (c, (question, answer, doc_text)) in convs.iter().zip([
        (
            "How far apart are roof trusses spaced?",
            "600 millimetres",
            "spaced 600 millimetres apart",
        ),
        (
            "How long must fresh concrete be kept moist?",
            "For seven days after it is poured",
            "kept moist for seven days",
        ),
    ]) {
        let m = c["messages"].as_array().unwrap();
        let roles: Vec<&str> = m.iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["system", "user", "assistant"], "{c}");
        assert!(m[0]["content"]
            .as_str()
            .unwrap()
            .contains("cite the sources"));
        let user = m[1]["content"].as_str().unwrap();
        assert!(user.starts_with("Sources:\n\n[1]"), "{user}");
        assert!(
            user.ends_with(&format!("Question: {question}\n{style}")),
            "{user}"
        );
        // The reply cites the number of the source block that holds the answer.
        let reply = m[2]["content"].as_str().unwrap();
        assert!(reply.starts_with(answer), "{reply}");
        let n: usize = reply
            .split('[')
            .nth(1)
            .and_then(|s| s.split(']').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no citation in {reply:?}"));
        let block = user
            .split(&format!("[{n}] "))
            .nth(1)
            .unwrap_or_else(|| panic!("no source [{n}] in {user}"));
        let block = block.split("\"\"\"").nth(1).unwrap();
        assert!(
            block.contains(doc_text),
            "[{n}] is {block:?}, reply {reply:?}"
        );
    }

    // `lorag tune` takes the output as it is.
    let tuned = ok_json(
        lorag()
            .args(["tune", "--steps=1", "--batch=2", "--eval-split=0", "--json"])
            .arg("--data")
            .arg(&out)
            .arg("--out")
            .arg(tmp.path().join("run"))
            .output()
            .unwrap(),
    );
    assert_eq!(tuned["data"]["train_examples"], 2, "{tuned}");
    assert!(tmp.path().join("run/adapter.gguf").exists());

    let r = run("refuse");
    assert_eq!(
        (&r["written"], &r["refusals"]),
        (&3.into(), &1.into()),
        "{r}"
    );
    let last = std::fs::read_to_string(&out).unwrap();
    let last: Value = serde_json::from_str(last.lines().last().unwrap()).unwrap();
    assert_eq!(
        last["messages"][2]["content"],
        "The knowledge base does not contain the answer."
    );

    // A malformed line: the error names file and line, the earlier output stays as it was.
    let before = std::fs::read(&out).unwrap();
    std::fs::write(
        &qa,
        format!(
            "{}\n{{\"messages\": 3}}\n",
            qa_line("How far apart are roof trusses spaced?", "600 millimetres")
        ),
    )
    .unwrap();
    let o = lorag()
        .args(["rag-data", "--kb"])
        .arg(&kb)
        .arg("--data")
        .arg(&qa)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("qa.jsonl:2:"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), before);
    assert!(!tmp.path().join("train.jsonl.partial").exists());
}

/// The demo's knowledge base (the construction-law FAQ) and its two questions, answered right
/// with the right record cited: by `--quote` (the record's own sentence) and by the default set-up
/// (SmolLM2 with the grounded adapter shipped for it). Without the adapter the model's answer
/// still never cites the geothermal record for the permit question (the wrong citation a first
/// user once saw).
#[test]
fn demo_questions_cite_the_right_record() {
    let dir = tempfile::tempdir().unwrap();
    let faq = lorag_models::test_model("construction-faq");
    let kb = dir.path().join("kb");
    let out = Command::new(env!("CARGO_BIN_EXE_lorag"))
        .args([
            "ingest",
            faq.to_str().unwrap(),
            "--kb",
            kb.to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ask = |q: &str, extra: &[&str]| -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_lorag"))
            .args(["ask", q, "--kb", kb.to_str().unwrap(), "--json"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let titles = |a: &serde_json::Value| -> Vec<String> {
        a["citations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["title"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let a = ask(
        "How long does it take to get a building permit?",
        &["--quote"],
    );
    assert_eq!(titles(&a), ["bygglov-002"], "{a:#}");
    let text = a["answer"].as_str().unwrap();
    assert!(
        text.contains("10 weeks") && text.ends_with("[1]."),
        "{text}"
    );
    let a = ask("Do I need a building permit for a deck?", &["--quote"]);
    let t = titles(&a);
    assert!(
        t == ["bygglov-014"] || t == ["altan-staket-plank-001"],
        "{a:#}"
    );
    let text = a["answer"].as_str().unwrap().to_lowercase();
    assert!(text.contains("deck") && text.contains("permit"), "{text}");

    // The default set-up: the grounded adapter answers both, citing the right record.
    let a = ask("Do I need a building permit for a deck?", &[]);
    assert_eq!(a["default_adapter"], "smollm2-135m-grounded", "{a:#}");
    let t = titles(&a);
    assert!(
        !t.is_empty()
            && t.iter()
                .all(|t| t == "bygglov-014" || t == "altan-staket-plank-001"),
        "{a:#}"
    );
    let text = a["answer"].as_str().unwrap();
    assert!(text.contains("1.8"), "{text}");
    let a = ask("How long does it take to get a building permit?", &[]);
    assert_eq!(a["default_adapter"], "smollm2-135m-grounded", "{a:#}");
    assert_eq!(titles(&a), ["bygglov-002"], "{a:#}");
    let text = a["answer"].as_str().unwrap();
    assert!(text.contains("10 weeks"), "{text}");
    check_sentences(&a);
    // With the benchmarks' style, a short cited phrase instead of a sentence.
    let a = ask(
        "How long does it take to get a building permit?",
        &["--style", "Answer with a short phrase from the sources."],
    );
    assert_eq!(titles(&a), ["bygglov-002"], "{a:#}");
    let text = a["answer"].as_str().unwrap();
    assert!(
        text.contains("10 weeks") && text.split_whitespace().count() <= 6,
        "{text}"
    );

    // The model as given: whatever it writes, a citation to the geothermal record does not survive.
    let a = ask(
        "How long does it take to get a building permit?",
        &["--no-default-adapter"],
    );
    assert!(a["default_adapter"].is_null(), "{a:#}");
    let t = titles(&a);
    assert!(!t.iter().any(|t| t.starts_with("bergvarme")), "{a:#}");
    let sources: Vec<&str> = a["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["title"].as_str().unwrap())
        .collect();
    assert_eq!(sources[0], "bygglov-002", "retrieval: {sources:?}");
    check_sentences(&a);
}

/// The JSON's sentences carry each claim's checked citations: together they are the answer's.
fn check_sentences(a: &serde_json::Value) {
    let sentences = a["sentences"].as_array().expect("sentences");
    assert!(!sentences.is_empty(), "{a:#}");
    let numbers = |v: &serde_json::Value| -> Vec<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .collect()
    };
    let mut cited: Vec<u64> = sentences
        .iter()
        .flat_map(|s| numbers(&s["cites"]))
        .collect();
    cited.sort_unstable();
    cited.dedup();
    let mut listed: Vec<u64> = a["citations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["n"].as_u64().unwrap())
        .collect();
    listed.sort_unstable();
    assert_eq!(cited, listed, "{a:#}");
    for s in sentences {
        assert!(
            s["text"].is_string() && s["supported"].is_boolean(),
            "{s:#}"
        );
        assert!(
            s["auto_cited"].is_boolean() && s["filler"].is_boolean(),
            "{s:#}"
        );
        numbers(&s["moved_from"]);
    }
}
