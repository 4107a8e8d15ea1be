//! `lorag serve` end to end: the real binary on a free loopback port, a real KB, a real model and
//! adapter; the official `openai` Python client (installed by scripts/setup.sh into a virtualenv
//! beside the build) drives the API; raw HTTP checks the error contract; a second process ingests
//! into the KB the server is reading.

use lorag_gguf::tiny::write_random_lora;
use lorag_models::test_model;
mod common;

use common::{add_key, bin, run_lorag as lorag, Server};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The virtualenv that setup.sh makes under the build folder, with the pinned `openai` client.
fn python() -> PathBuf {
    let target = bin()
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    let py = target.join("py-venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run scripts/setup.sh (it installs the openai client there)",
        py.display()
    );
    py
}

const DOCS: &[(&str, &str)] = &[
    ("permits.md", "# Building permits\n\nThe statutory processing time for a building permit in Lindholm municipality is 10 weeks. Simple cases are often decided in 4 to 6 weeks.\n"),
    ("decks.md", "# Decks\n\nA deck lower than 1.2 metres above the ground needs no building permit in Lindholm, if it is at least 4.5 metres from the property line.\n"),
    ("heat.md", "# Geothermal heat pumps\n\nDrilling for a geothermal heat pump requires a notification to the environment office, which answers within 6 weeks.\n"),
];

fn make_kb(dir: &Path) -> PathBuf {
    let docs = dir.join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    for (n, t) in DOCS {
        std::fs::write(docs.join(n), t).unwrap();
    }
    let kb = dir.join("kb");
    let out = lorag(&[
        "ingest",
        docs.to_str().unwrap(),
        "--kb",
        kb.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    kb
}

fn make_adapter(dir: &Path) -> PathBuf {
    let p = dir.join("style.gguf");
    let targets: Vec<(String, u64, u64)> = (0..30)
        .flat_map(|l| {
            [
                (format!("blk.{l}.attn_q"), 576, 576),
                (format!("blk.{l}.ffn_down"), 1536, 576),
            ]
        })
        .collect();
    write_random_lora("llama", &targets, 8, 16.0, 7, 0.05, &p).unwrap();
    p
}

#[test]
fn openai_client_errors_load_and_a_shared_kb() {
    let dir = tempfile::tempdir().unwrap();
    let kb = make_kb(dir.path());
    let adapter = make_adapter(dir.path());
    let keys = dir.path().join("keys.json");
    let key = add_key(&keys, "alice", &["--kb", "faq", "--ingest"]);
    let other = add_key(&keys, "bob", &[]);
    let kb_arg = format!("faq={}", kb.display());
    let lora_arg = format!("style={}", adapter.display());
    let server = Server::start(
        &[
            "--kb",
            &kb_arg,
            "--lora",
            &lora_arg,
            "--api-keys",
            keys.to_str().unwrap(),
            "--parallel",
            "4",
            "--queue",
            "64",
            "--ctx",
            "2048",
            "--max-body",
            "200000",
        ],
        &[],
    );

    // Reference embeddings from lorag-embed itself.
    let emb = lorag_embed::BertEmbedder::load(
        &test_model("all-minilm-l6-v2"),
        &lorag_embed::EmbedOptions::default(),
    )
    .unwrap();
    let texts = [
        "How long does a building permit take?",
        "Geothermal heat pumps need a notification.",
    ];
    let vectors = lorag_embed::Embedder::embed(&emb, &texts).unwrap();
    let cfg = dir.path().join("client.json");
    std::fs::write(
        &cfg,
        json!({
            "key": key, "other_key": other, "model": "smollm2-135m-instruct", "lora": "style", "kb": "faq",
            "embedder": "all-minilm-l6-v2",
            "question": "How long does it take to get a building permit in Lindholm?",
            "expect_source": "permits.md",
            "reference": {"texts": texts, "vectors": vectors},
        })
        .to_string(),
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/serve_client.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(server.url())
        .arg(&cfg)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("all ok"),
        "the openai client checks failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Raw HTTP: the error contract.
    let auth = format!("Bearer {key}");
    let h = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    // kb:NAME answers that name no adapter use the grounded adapter shipped for SmolLM2.
    let (st, _, v) = server.http("GET", "/v1/me", &h, b"");
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["default_adapter"], "smollm2-135m-grounded", "{v}");
    let (st, _, v) = server.http("POST", "/v1/chat/completions", &h, b"{\"messages\": [");
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("JSON"),
        "{v}"
    );
    let (st, _, v) = server.http(
        "POST",
        "/v1/chat/completions",
        &h,
        br#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": "ten"}"#,
    );
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["param"], "max_tokens", "{v}");
    let (st, _, v) = server.http(
        "POST",
        "/v1/chat/completions",
        &h,
        br#"{"messages": [{"role": "wizard", "content": "hi"}]}"#,
    );
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["param"], "messages[0].role", "{v}");
    let (st, _, v) = server.http("GET", "/v1/models", &[], b"");
    assert_eq!(st, 401, "{v}");
    assert_eq!(v["error"]["type"], "authentication_error");
    let (st, _, v) = server.http("GET", "/health", &[], b"");
    assert_eq!((st, v), (200, json!({"status": "ok"})));
    let big = vec![b'x'; 300_000];
    let (st, _, v) = server.http("POST", "/v1/chat/completions", &h, &big);
    assert_eq!(st, 413, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-body"),
        "{v}"
    );
    let (st, _, v) = server.http("GET", "/v1/nothing", &h, b"");
    assert_eq!(st, 404, "{v}");
    assert!(v["error"]["message"].is_string());
    let (st, _, v) = server.http(
        "POST",
        "/v1/chat/completions",
        &h,
        br#"{"model": "kb:hr", "messages": [{"role": "user", "content": "hi"}]}"#,
    );
    assert_eq!(st, 404, "{v}");
    let (st, _, v) = server.http(
        "POST",
        "/v1/kb/faq/search",
        &h,
        br#"{"query": "decks", "k": 2}"#,
    );
    assert_eq!(st, 200, "{v}");
    assert!(
        v["results"][0]["source"]
            .as_str()
            .unwrap()
            .ends_with("decks.md"),
        "{v}"
    );
    let (st, _, v) = server.http("GET", "/v1/kb/faq/documents", &h, b"");
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"].as_array().unwrap().len(), 3, "{v}");
    let (st, head, _) = server.http("GET", "/", &[], b"");
    assert_eq!(st, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-security-policy: default-src 'self'"),
        "{head}"
    );

    // Another process ingests into the KB while the server runs: the server finds it at once.
    let extra = dir.path().join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::write(
        extra.join("sauna.md"),
        "# Saunas\n\nA wood-fired sauna cabin in Lindholm needs a chimney inspection by the chimney sweep before first use.\n",
    )
    .unwrap();
    let out = lorag(&[
        "ingest",
        extra.to_str().unwrap(),
        "--kb",
        kb.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (st, _, v) = server.http(
        "POST",
        "/v1/kb/faq/search",
        &h,
        br#"{"query": "sauna chimney inspection", "k": 1, "mode": "dense"}"#,
    );
    assert_eq!(st, 200, "{v}");
    assert!(
        v["results"][0]["source"]
            .as_str()
            .unwrap()
            .ends_with("sauna.md"),
        "the server did not see the new chunk: {v}"
    );
    let (_, _, v) = server.http(
        "POST",
        "/v1/kb/faq/search",
        &h,
        br#"{"query": "sauna chimney inspection", "k": 1, "mode": "bm25"}"#,
    );
    assert!(
        v["results"][0]["source"]
            .as_str()
            .unwrap()
            .ends_with("sauna.md"),
        "{v}"
    );
}

#[test]
fn queue_full_is_429_and_sigterm_drains() {
    let server = Server::start(&["--parallel", "1", "--queue", "0", "--ctx", "1024"], &[]);
    let addr = server.addr.clone();
    // A long generation holds the only permit.
    let long = std::thread::spawn(move || {
        let mut s = TcpStream::connect(&addr).unwrap();
        let body = br#"{"stream": true, "max_tokens": 300, "temperature": 0, "messages": [{"role": "user", "content": "Count from 1 to 300, separated by commas."}]}"#;
        write!(
            s,
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        s.write_all(body).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    });
    // Wait until it is generating.
    let t0 = Instant::now();
    loop {
        let (_, _, m) = server.http("GET", "/metrics", &[], b"");
        if m.as_str().unwrap_or("").contains("lorag_busy_slots 1") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the long request never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (st, head, v) = server.http(
        "POST",
        "/v1/chat/completions",
        &[("Content-Type", "application/json")],
        br#"{"max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}"#,
    );
    assert_eq!(st, 429, "{v}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    assert_eq!(v["error"]["code"], "queue_full");
    // SIGTERM: stop taking requests, finish the running one, exit 0.
    let pid = server.child.id().to_string();
    let mut server = server;
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    let out = long.join().unwrap();
    assert!(
        out.contains("data: [DONE]"),
        "the running request was cut: {out}"
    );
}

#[test]
fn refuses_an_open_address_without_keys() {
    let out = Command::new(bin())
        .args(["serve", "--host", "0.0.0.0", "--port", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--api-keys") && err.contains("--no-auth"),
        "{err}"
    );
}

/// Two `lorag serve` replicas on one PostgreSQL KB (the server `scripts/test.sh` starts,
/// `LORAG_TEST_PG`): a document uploaded through one is found through the other, without a
/// restart; deleting it through the second removes it for both.
#[test]
fn two_replicas_share_a_postgresql_kb() {
    let base = std::env::var("LORAG_TEST_PG").unwrap_or_else(|_| {
        panic!("LORAG_TEST_PG is not set: this test needs a real PostgreSQL with pgvector (scripts/test.sh starts one; or `bash scripts/pg.sh start`)")
    });
    let schema = format!("serve_{}", std::process::id());
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}schema={schema}");
    let dir = tempfile::tempdir().unwrap();
    let kb_arg = format!("docs={url}");
    let data_home = dir.path().join("data");
    let models = lorag_models::models_dir();
    let env = [
        ("XDG_DATA_HOME", data_home.to_str().unwrap()),
        ("LORAG_MODELS", models.to_str().unwrap()),
    ];
    let a = Server::start(&["--kb", &kb_arg, "--parallel", "1"], &env);
    let b = Server::start(&["--kb", &kb_arg, "--parallel", "1"], &env);

    let boundary = "loragBOUNDARY";
    let doc = "Heat pumps\n\nA ground source heat pump needs a notification to the municipality before drilling.\n";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"heat-pumps.txt\"\r\nContent-Type: text/plain\r\n\r\n{doc}\r\n--{boundary}--\r\n"
    );
    let ct = format!("multipart/form-data; boundary={boundary}");
    let (st, _, v) = a.http(
        "POST",
        "/v1/kb/docs/documents",
        &[("Content-Type", ct.as_str())],
        body.as_bytes(),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["added"], 1, "{v}");

    let q = serde_json::json!({"query": "Does a heat pump need a notification?", "k": 3});
    let (st, _, v) = b.http(
        "POST",
        "/v1/kb/docs/search",
        &[("Content-Type", "application/json")],
        q.to_string().as_bytes(),
    );
    assert_eq!(st, 200, "{v}");
    let hits = v["results"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert!(
        hits.iter()
            .any(|h| h.to_string().contains("ground source heat pump")),
        "replica b finds what replica a ingested: {v}"
    );
    let (st, _, docs) = b.http("GET", "/v1/kb/docs/documents", &[], b"");
    assert_eq!(st, 200);
    let source = docs
        .to_string()
        .split('"')
        .find(|s| s.ends_with("heat-pumps.txt"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("{docs}"));
    let enc: String = source
        .bytes()
        .map(|c| {
            if c.is_ascii_alphanumeric() || b"-_.~".contains(&c) {
                (c as char).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect();
    let (st, _, v) = b.http("DELETE", &format!("/v1/kb/docs/documents/{enc}"), &[], b"");
    assert_eq!(st, 200, "{v}");
    let (_, _, v) = a.http(
        "POST",
        "/v1/kb/docs/search",
        &[("Content-Type", "application/json")],
        q.to_string().as_bytes(),
    );
    assert!(
        !v.to_string().contains("ground source heat pump"),
        "deleted through b, gone for a: {v}"
    );
}
