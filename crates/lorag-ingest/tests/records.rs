//! Structured data: CSV, JSON, JSONL and SQLite rows become record documents.

mod common;

use std::path::Path;

use common::{candidate, chunk_checked};
use lorag_core::WordCounter;
use lorag_ingest::{discover, fingerprint, load, ChunkOptions, IngestError, WalkOptions};
use serde_json::json;

fn write(dir: &Path, name: &str, content: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write");
    path
}

#[test]
fn csv_rows_become_records_with_typed_metadata() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "people.csv",
        "name,city,age,score,zip,notes\n\
         \"Müller, Jörg\",Zürich,42,3.5,007,\"He said \"\"hi\"\"\nthen left\"\n\
         Ann,東京,,-1e3,10115,\n\
         ,,,,,\n\
         \"Zoë\", Paris , 30 ,x,0,ok\n",
    );
    let loaded = load(&candidate(&path, "csv")).expect("load csv");
    let docs = &loaded.documents;
    // The all-empty row gives no document, but row numbers count it.
    assert_eq!(docs.len(), 3);
    let d = &docs[0];
    assert_eq!(d.kind, "csv");
    assert_eq!(d.source, path.to_string_lossy());
    assert_eq!(d.title.as_deref(), Some("Müller, Jörg"));
    assert_eq!(
        d.text,
        "name: Müller, Jörg\ncity: Zürich\nage: 42\nscore: 3.5\nzip: 007\nnotes: He said \"hi\"\nthen left"
    );
    assert_eq!(d.metadata["age"], json!(42));
    assert_eq!(d.metadata["score"], json!(3.5));
    assert_eq!(d.metadata["zip"], json!("007"));
    assert_eq!(d.metadata["row"], json!(1));
    let d = &docs[1];
    assert_eq!(d.text, "name: Ann\ncity: 東京\nscore: -1e3\nzip: 10115");
    assert_eq!(d.metadata["score"], json!(-1000.0));
    assert_eq!(d.metadata["age"], json!(""));
    assert_eq!(d.metadata["row"], json!(2));
    let d = &docs[2];
    assert_eq!(d.metadata["row"], json!(4));
    assert_eq!(d.metadata["city"], json!("Paris"), "cells are trimmed");
    assert_eq!(d.metadata["age"], json!(30));
    assert_eq!(d.metadata["score"], json!("x"));
    // A record that fits is one chunk.
    for doc in docs {
        let chunks = chunk_checked(doc, &WordCounter, &ChunkOptions::default());
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].text, doc.text.trim());
    }
}

#[test]
fn csv_title_falls_back_to_row_and_semicolons_are_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "eu.csv", "id;label\n;Erster\n2;Zweiter\n");
    let docs = load(&candidate(&path, "csv")).expect("load").documents;
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].title.as_deref(), Some("row 1"));
    assert_eq!(docs[0].text, "label: Erster");
    assert_eq!(docs[1].title.as_deref(), Some("2"));
    // Only a header: a valid, empty table.
    let path = write(dir.path(), "empty-table.csv", "a,b\n");
    assert!(load(&candidate(&path, "csv"))
        .expect("load")
        .documents
        .is_empty());
}

#[test]
fn csv_ragged_row_is_an_error_with_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "ragged.csv",
        "a,b,c\n1,2,3\n\"multi\nline\",5,6\n7,8\n",
    );
    let err = load(&candidate(&path, "csv")).expect_err("ragged");
    assert!(matches!(err, IngestError::Line { line: 5, .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: line 5: the row has 2 fields, the header has 3",
            path.display()
        )
    );
}

#[test]
fn json_array_and_single_object() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "faq.json",
        r#"[
  {"question": "How do I reset?", "answer": "Hold the button.", "tags": ["reset", "power"], "meta": {"a": null, "b": 1}, "votes": 12},
  {"zeta": "order is kept", "alpha": true, "none": null}
]"#,
    );
    let docs = load(&candidate(&path, "json"))
        .expect("load json")
        .documents;
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].kind, "json");
    assert_eq!(docs[0].title.as_deref(), Some("How do I reset?"));
    assert_eq!(
        docs[0].text,
        "question: How do I reset?\nanswer: Hold the button.\ntags: [\"reset\",\"power\"]\nmeta: {\"a\":null,\"b\":1}\nvotes: 12"
    );
    assert_eq!(docs[0].metadata["tags"], json!(["reset", "power"]));
    assert_eq!(docs[0].metadata["votes"], json!(12));
    assert_eq!(docs[0].metadata["row"], json!(1));
    assert_eq!(docs[1].text, "zeta: order is kept\nalpha: true");
    assert_eq!(docs[1].metadata["row"], json!(2));

    let path = write(
        dir.path(),
        "one.json",
        r#"{"title": "Only", "body": "One object"}"#,
    );
    let docs = load(&candidate(&path, "json")).expect("load").documents;
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].metadata["row"], json!(1));

    let path = write(dir.path(), "strings.json", r#"[{"a": 1}, "two"]"#);
    let err = load(&candidate(&path, "json")).expect_err("not objects");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: not a valid JSON file: element 2 of the array is a string, expected an object",
            path.display()
        )
    );
    let path = write(dir.path(), "broken.json", "[{\"a\": 1},\n {\"b\": }]");
    let err = load(&candidate(&path, "json")).expect_err("syntax");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{}: not a valid JSON file:", path.display())),
        "{msg}"
    );
    assert!(msg.contains("line 2"), "{msg}");
}

#[test]
fn jsonl_lines_and_a_bad_line_number() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "tickets.jsonl",
        "{\"id\": 1, \"text\": \"Printer jams\"}\n\n{\"id\": 2, \"text\": \"Wi-Fi drops\"}\n",
    );
    let docs = load(&candidate(&path, "jsonl")).expect("load").documents;
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[1].kind, "jsonl");
    assert_eq!(docs[1].text, "id: 2\ntext: Wi-Fi drops");
    assert_eq!(docs[1].metadata["row"], json!(2));
    assert_eq!(docs[1].metadata["line"], json!(3));

    let path = write(
        dir.path(),
        "bad.jsonl",
        "{\"ok\": 1}\n{\"ok\": 2}\n{\"ok\": 3,,}\n{\"ok\": 4}\n",
    );
    let err = load(&candidate(&path, "jsonl")).expect_err("bad line");
    assert!(matches!(err, IngestError::Line { line: 3, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "{}: line 3: invalid JSON at column",
            path.display()
        )),
        "{msg}"
    );
    let path = write(dir.path(), "array-line.jsonl", "{\"ok\": 1}\n[1, 2]\n");
    let err = load(&candidate(&path, "jsonl")).expect_err("array line");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: line 2: expected a JSON object, found an array",
            path.display()
        )
    );
}

fn make_db(path: &Path) {
    let conn = rusqlite::Connection::open(path).expect("create db");
    conn.execute_batch(
        "CREATE TABLE \"support notes\" (id INTEGER PRIMARY KEY, title TEXT, body TEXT, price REAL, data BLOB);
         INSERT INTO \"support notes\" VALUES (1, 'Reset', 'Hold the button for 10 s.', 9.5, x'00ff');
         INSERT INTO \"support notes\" VALUES (2, 'Café hours', 'Open 8–17 ☕', NULL, NULL);
         CREATE TABLE other (x TEXT);
         CREATE VIEW titles AS SELECT title FROM \"support notes\";",
    )
    .expect("fill db");
}

#[test]
fn sqlite_table_and_query() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("kb.sqlite3");
    make_db(&db);
    let input = format!("sqlite:{}?table=support%20notes", db.display());
    let (cands, skipped) =
        discover(std::slice::from_ref(&input), &WalkOptions::default()).expect("discover");
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(cands.len(), 1);
    assert_eq!(cands[0].source, input);
    assert_eq!(cands[0].kind, "sqlite");
    assert_eq!(cands[0].path, db);

    let loaded = load(&cands[0]).expect("load table");
    assert_eq!(loaded.documents.len(), 2);
    let d = &loaded.documents[0];
    assert_eq!(d.source, input);
    assert_eq!(d.kind, "sqlite");
    assert_eq!(d.title.as_deref(), Some("1"));
    assert_eq!(
        d.text,
        "id: 1\ntitle: Reset\nbody: Hold the button for 10 s.\nprice: 9.5"
    );
    assert_eq!(d.metadata["price"], json!(9.5));
    assert_eq!(d.metadata["data"], json!(null), "BLOBs are left out");
    assert_eq!(loaded.documents[1].metadata["row"], json!(2));
    assert_eq!(loaded.documents[1].metadata["body"], json!("Open 8–17 ☕"));
    let fp = fingerprint(&cands[0]).expect("fingerprint");
    assert_eq!(fp, loaded.fingerprint);
    assert_eq!(fp.mtime, 0);

    // A query, percent-encoded, with `+` kept as SQL.
    let q = format!(
        "sqlite:{}?query=SELECT%20title,%20id+100%20AS%20n%20FROM%20%22support%20notes%22%20ORDER%20BY%20id%20DESC",
        db.display()
    );
    let c = lorag_ingest::Candidate {
        source: q.clone(),
        path: db.clone(),
        kind: "sqlite".into(),
    };
    let docs = load(&c).expect("load query").documents;
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].text, "title: Café hours\nn: 102");
    assert_eq!(docs[0].title.as_deref(), Some("Café hours"));

    // A view is a table for this purpose; names match case-insensitively.
    let c = lorag_ingest::Candidate {
        source: format!("sqlite:{}?table=TITLES", db.display()),
        path: db.clone(),
        kind: "sqlite".into(),
    };
    assert_eq!(load(&c).expect("view").documents.len(), 2);

    // The fingerprint follows the rows.
    let conn = rusqlite::Connection::open(&db).expect("open");
    conn.execute(
        "UPDATE \"support notes\" SET body = 'Hold it for 5 s.' WHERE id = 1",
        [],
    )
    .expect("update");
    assert_ne!(fingerprint(&cands[0]).expect("fingerprint").hash, fp.hash);
    conn.execute("UPDATE other SET x = 'y'", [])
        .expect("unrelated update");
    assert_eq!(
        fingerprint(&cands[0]).expect("again"),
        fingerprint(&cands[0]).expect("again")
    );
}

#[test]
fn sqlite_errors_are_clear_and_injection_is_impossible() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("kb.db");
    make_db(&db);
    let cand = |spec: &str| lorag_ingest::Candidate {
        source: format!("sqlite:{}?{spec}", db.display()),
        path: db.clone(),
        kind: "sqlite".into(),
    };
    let c = cand("table=missing");
    let err = load(&c).expect_err("missing table");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: no table or view named `missing` in {} (it has: other, support notes, titles)",
            c.source,
            db.display()
        )
    );
    // An injection attempt is just a table name that does not exist.
    let c = cand("table=other%22%3B%20DROP%20TABLE%20other%3B%20--");
    let err = load(&c).expect_err("no such table");
    assert!(
        err.to_string()
            .contains("no table or view named `other\"; DROP TABLE other; --`"),
        "{err}"
    );
    let c = cand("query=DELETE%20FROM%20other");
    let err = load(&c).expect_err("write query");
    assert!(
        err.to_string()
            .ends_with("only read-only queries (SELECT) can be ingested"),
        "{err}"
    );
    let c = cand("query=SELECT%20*%20FROM%20nope");
    let err = load(&c).expect_err("bad query");
    assert!(
        err.to_string().contains("query failed:")
            && err.to_string().contains("no such table: nope"),
        "{err}"
    );
    let c = cand("query=SELECT%201;%20DROP%20TABLE%20other");
    assert!(load(&c).is_err(), "two statements");
    let conn = rusqlite::Connection::open(&db).expect("open");
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'other'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(n, 1, "table `other` survived");

    // Not a database; a missing database; a malformed spec (discover skips these).
    let text = dir.path().join("notes.db");
    std::fs::write(&text, "just some text, not sqlite at all........................................................................................").expect("write");
    let c = lorag_ingest::Candidate {
        source: format!("sqlite:{}?table=t", text.display()),
        path: text.clone(),
        kind: "sqlite".into(),
    };
    let err = load(&c).expect_err("not a db");
    assert_eq!(
        err.to_string(),
        format!("{}: {} is not a SQLite database", c.source, text.display())
    );
    let inputs = [
        format!("sqlite:{}/absent.db?table=t", dir.path().display()),
        format!("sqlite:{}", db.display()),
        format!("sqlite:{}?name=t", db.display()),
    ];
    let (cands, skipped) = discover(&inputs, &WalkOptions::default()).expect("discover");
    assert!(cands.is_empty());
    assert_eq!(skipped[0].reason, "not found");
    assert!(
        skipped[1].reason.starts_with("expected sqlite:PATH?table="),
        "{:?}",
        skipped[1]
    );
    assert!(skipped[2].reason.starts_with("expected sqlite:PATH?table="));
}
