//! `lorag eval` end to end on a tiny random model (real Phi-3 tokenizer) and a real KB (real
//! embedder): the split is disjoint, stable under the seed and kept out of training; all four
//! routes answer (two adapters trained by `lorag tune`); the report files exist and parse; a
//! second run resumes from the cache with the same results; bad Q&A files name file and line.
//! The figures of real models are bench/eval.sh's job.

mod common;

use common::{lorag_cmd as lorag, s, tiny_phi3};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

fn ok(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}, stderr: {err}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const TOPICS: &[(&str, &str, &str)] = &[
    (
        "deck",
        "Do I need a permit for a deck?",
        "A deck lower than 1.8 metres needs no permit.",
    ),
    (
        "garage",
        "How big may a garage be without a permit?",
        "A garage of up to 30 square metres needs no permit.",
    ),
    (
        "fence",
        "How high may a fence be?",
        "A fence may be 1.1 metres high without a permit.",
    ),
    (
        "heat",
        "Is a heat pump permit required?",
        "A ground source heat pump needs a notification.",
    ),
    (
        "roof",
        "Can I change my roof colour?",
        "Changing the roof colour needs a permit in a detailed plan area.",
    ),
    (
        "solar",
        "Do solar panels need a permit?",
        "Solar panels that follow the roof shape need no permit.",
    ),
    (
        "window",
        "Can I add a window?",
        "A new window changes the facade and needs a permit.",
    ),
    (
        "demolish",
        "Do I need a permit to demolish a shed?",
        "Demolishing a small shed needs no permit outside a plan area.",
    ),
    (
        "attefall",
        "What is an attefall house?",
        "An attefall house is a building of up to 30 square metres.",
    ),
    (
        "fee",
        "What does a building permit cost?",
        "The permit fee depends on the size of the building.",
    ),
    (
        "time",
        "How long does a permit take?",
        "The statutory processing time is ten weeks.",
    ),
    (
        "start",
        "When may building start?",
        "Building may start after the start notice is given.",
    ),
    (
        "plan",
        "What is a detailed plan?",
        "A detailed plan regulates how land may be used.",
    ),
    (
        "appeal",
        "Can I appeal a refusal?",
        "A refusal can be appealed within three weeks.",
    ),
    (
        "pool",
        "Does a pool need a permit?",
        "A pool normally needs no permit but may need a notification.",
    ),
];

/// A KB of one document per topic, and the Q&A naming each topic's document as its source.
fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let docs = dir.join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    let mut qa = String::new();
    for (name, q, a) in TOPICS {
        std::fs::write(
            docs.join(format!("{name}.txt")),
            format!("{name}\n\n{a} Ask the building committee when unsure.\n"),
        )
        .unwrap();
        qa.push_str(
            &serde_json::json!({"question": q, "answer": a, "sources": [format!("{name}.txt")]})
                .to_string(),
        );
        qa.push('\n');
        // A near-duplicate of every question: it must never be on the other side of the split.
        qa.push_str(&serde_json::json!({"question": q.to_uppercase(), "answer": a}).to_string());
        qa.push('\n');
    }
    let qa_path = dir.join("qa.jsonl");
    std::fs::write(&qa_path, qa).unwrap();
    let kb = dir.join("kb");
    ok(&lorag()
        .args(["ingest", s(&docs), "--kb", s(&kb), "--json"])
        .output()
        .unwrap());
    (kb, qa_path)
}

fn questions(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["question"].as_str().unwrap().to_lowercase()
        })
        .collect()
}

#[test]
fn four_routes_report_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_phi3(dir.path());
    let (kb, qa) = setup(dir.path());
    let out = dir.path().join("run");
    let args = [
        "eval",
        "--kb",
        s(&kb),
        "--qa",
        s(&qa),
        "--out",
        s(&out),
        "--model",
        s(&model),
        "--train-steps",
        "2",
        "--max-tokens",
        "8",
        "--test-split",
        "0.4",
        "--seed",
        "7",
        "--json",
    ];
    let first: Value = serde_json::from_str(&ok(&lorag().args(args).output().unwrap())).unwrap();

    // The split: written, disjoint (near-duplicates included), stable under the seed.
    let train = questions(&out.join("train.jsonl"));
    let test = questions(&out.join("test.jsonl"));
    assert!(!test.is_empty() && !train.is_empty());
    for q in &test {
        assert!(
            !train.contains(q),
            "test question {q:?} is in the training split"
        );
    }
    for f in [
        "report.html",
        "report.md",
        "results.json",
        "ft/adapter.gguf",
        "rag-ft/adapter.gguf",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let saved: Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(saved, first);
    for r in ["base", "rag", "ft", "rag+ft"] {
        let m = &first["routes"][r]["metrics"];
        let f1 = &m["f1"];
        assert!(f1["value"].is_number(), "{r}: {m}");
        assert!(f1["low"].as_f64().unwrap() <= f1["value"].as_f64().unwrap() + 1e-9);
    }
    for r in ["rag", "rag+ft"] {
        let m = &first["routes"][r]["metrics"];
        for k in [
            "gold_retrieved",
            "gold_cited",
            "false_refusal",
            "correct_refusal",
        ] {
            assert!(m[k]["value"].is_number(), "{r} {k}: {m}");
        }
    }
    // The held-out slice was asked of a copy of the KB without its sources.
    let held: Vec<&Value> = first["questions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| q["held_out"] == true)
        .collect();
    assert!(!held.is_empty());
    assert!(first["recommendation"]["text"].as_str().unwrap().len() > 40);
    assert_eq!(
        first["questions"].as_array().unwrap().len(),
        test.len() + held.len()
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        !html.contains("https://") && !html.contains("http://"),
        "no external assets"
    );

    // A second run resumes: same split, same answers, same results.
    let again: Value = serde_json::from_str(&ok(&lorag().args(args).output().unwrap())).unwrap();
    assert_eq!(questions(&out.join("test.jsonl")), test);
    assert_eq!(again["routes"], first["routes"]);
    assert_eq!(again["questions"], first["questions"]);

    // --budget times each adapter's own training data (RAG-aware conversations carry their
    // sources, so their steps cost more) and says what it chose, in results.json too.
    let mut budgeted: Vec<&str> = args
        .iter()
        .copied()
        .filter(|x| *x != "--train-steps" && *x != "2")
        .collect();
    budgeted.extend(["--budget", "30"]);
    let run = lorag().args(&budgeted).output().unwrap();
    let res: Value = serde_json::from_str(&ok(&run)).unwrap();
    let probes: Value =
        serde_json::from_slice(&std::fs::read(out.join("budget-probe.json")).unwrap()).unwrap();
    for r in ["ft", "rag+ft"] {
        assert!(
            probes[r]["seconds_per_step"].as_f64().unwrap() > 0.0,
            "{probes}"
        );
    }
    let plan = res["options"]["training_plan"].as_str().unwrap();
    assert!(
        plan.contains("ft at ")
            && plan.contains("rag+ft at ")
            && plan.contains("within the budget of 30 min"),
        "{plan}"
    );
    assert!(String::from_utf8_lossy(&run.stderr).contains(plan));
}

#[test]
fn bad_qa_files_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let qa = dir.path().join("qa.jsonl");
    std::fs::write(
        &qa,
        "{\"question\": \"a?\", \"answer\": \"b\"}\n{\"question\": \"c?\", \"answer\": \"d\"}\n{not json\n",
    )
    .unwrap();
    let out = lorag()
        .args([
            "eval",
            "--kb",
            s(dir.path()),
            "--qa",
            s(&qa),
            "--out",
            s(&dir.path().join("o")),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("qa.jsonl:3"), "{err}");

    // Too few questions for the split: a clear error before any work.
    std::fs::write(&qa, "{\"question\": \"a?\", \"answer\": \"b\"}\n").unwrap();
    let out = lorag()
        .args([
            "eval",
            "--kb",
            s(dir.path()),
            "--qa",
            s(&qa),
            "--out",
            s(&dir.path().join("o")),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.to_lowercase().contains("too few") || err.contains("at least"),
        "{err}"
    );
    assert!(!dir.path().join("o").join("ft").exists());
}
