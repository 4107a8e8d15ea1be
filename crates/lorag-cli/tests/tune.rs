//! `lorag tune` and `lorag merge` as a user runs them: the artifacts of a run, the adapter in
//! `lorag chat`, interrupt and resume, bad data and bad flags, the three data formats, and the
//! merged model against base + adapter in llama.cpp.
//!
//! Fast paths: SmolLM2 for a few steps at a short --max-seq where the real model matters (the
//! artifacts, chat, merge), tiny random phi3 models (real Phi-3 tokenizer) elsewhere.

mod common;

use common::{lorag_cmd as lorag, s, tiny_phi3};
use lorag_gguf::tiny::write_random_lora;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn run(args: &[&str]) -> Output {
    lorag().args(args).output().unwrap()
}

fn ok_json(out: &Output) -> Value {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}, stderr: {err}", out.status);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Exit code 1 and one `error:` line containing every needle.
fn assert_error(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    for n in needles {
        assert!(lines[0].contains(n), "{n:?} in {err}");
    }
}

fn smollm() -> PathBuf {
    lorag_models::test_model("smollm2-135m-instruct")
}

const QA: &[(&str, &str)] = &[
    (
        "What is a bygglov?",
        "A building permit from the municipality's building committee.",
    ),
    (
        "How long does a permit take?",
        "Ten weeks by law, extendable once by ten more weeks.",
    ),
    (
        "Do I need a permit for a small shed?",
        "Not under 30 square metres, if the neighbours agree.",
    ),
    (
        "Who approves the control plan?",
        "The building committee, at the technical consultation.",
    ),
    (
        "What is a start decision?",
        "The committee's permission to begin the work.",
    ),
    (
        "What is a final decision?",
        "The committee's permission to take the building into use.",
    ),
    (
        "Can a neighbour appeal?",
        "Yes, within three weeks of being notified of the decision.",
    ),
    (
        "What is an attefall house?",
        "A detached house of up to 30 square metres, notified, not permitted.",
    ),
    (
        "Who is the certified inspector?",
        "The person who checks that the control plan is followed.",
    ),
    (
        "What does PBL stand for?",
        "The Planning and Building Act, plan- och bygglagen.",
    ),
    (
        "Is a deck permit-free?",
        "A low deck usually is; a high one close to the boundary may not be.",
    ),
    (
        "What is a detail plan?",
        "The municipality's binding plan for how land may be used.",
    ),
];

fn messages_line(q: &str, a: &str) -> String {
    json!({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
        .to_string()
}

fn write_lines(path: &Path, lines: &[String]) -> PathBuf {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
    path.to_path_buf()
}

fn messages_file(dir: &Path) -> PathBuf {
    let lines: Vec<String> = QA.iter().map(|(q, a)| messages_line(q, a)).collect();
    write_lines(&dir.join("data.jsonl"), &lines)
}

fn metrics(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn tune_writes_every_artifact_and_the_adapter_loads_in_chat() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data = messages_file(dir.path());
    let out = dir.path().join("run");
    let m = smollm();
    let j = ok_json(&run(&[
        "tune",
        "--data",
        s(&data),
        "--model",
        s(&m),
        "--out",
        s(&out),
        "--qlora",
        "--steps",
        "2",
        "--batch",
        "2",
        "--max-seq",
        "48",
        "--eval-split",
        "0.17",
        "--rank",
        "4",
        "--targets",
        "attn_q,attn_v,ffn_down",
        "--lr",
        "1e-3",
        "--json",
    ]));
    eprintln!("{j:#}");
    assert_eq!(j["steps"], 2);
    assert_eq!(j["interrupted"], false);
    assert_eq!(j["qlora"], true);
    assert_eq!(j["lora"]["layers"], 90, "3 targets x 30 layers");
    for k in [
        "train_loss_start",
        "train_loss_end",
        "eval_loss_start",
        "eval_loss_end",
        "tokens_per_s",
        "seconds",
    ] {
        assert!(j[k].as_f64().is_some_and(f64::is_finite), "{k} in {j}");
    }
    assert_eq!(j["data"]["train_examples"], 10);
    assert_eq!(j["data"]["eval_examples"], 2);
    assert_eq!(j["data"]["stats"]["messages"], 12);
    for p in [
        "adapter.gguf",
        "peft/adapter_config.json",
        "peft/adapter_model.safetensors",
        "metrics.jsonl",
        "loss.svg",
        "checkpoint/adapter.safetensors",
        "checkpoint/optimizer.safetensors",
        "checkpoint/state.json",
    ] {
        assert!(out.join(p).is_file(), "{p} missing");
    }
    assert_eq!(j["paths"]["adapter"], s(&out.join("adapter.gguf")));
    let ms = metrics(&out);
    assert_eq!(ms.len(), 3, "step 0 and two steps");
    for (i, m) in ms.iter().enumerate() {
        for k in ["step", "loss", "eval_loss", "lr", "tokens_per_s"] {
            assert!(m.get(k).is_some(), "field {k} in {m}");
        }
        assert_eq!(m["step"], i);
    }
    assert!(ms[0]["loss"].is_null() && ms[0]["eval_loss"].is_f64());
    assert!(ms[2]["loss"].is_f64() && ms[2]["tokens_per_s"].as_f64().unwrap() > 0.0);
    let cfg: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("peft/adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["r"], 4);
    assert_eq!(cfg["lora_alpha"], 8.0);

    let adapter = out.join("adapter.gguf");
    let g = lorag_gguf::Gguf::open(&adapter).unwrap();
    assert_eq!(g.get_str("general.type"), Some("adapter"));
    assert_eq!(g.tensors.len(), 180);
    let chat = ok_json(&run(&[
        "chat",
        "What is a bygglov?",
        "--model",
        s(&m),
        "--lora",
        s(&adapter),
        "--json",
        "--temperature",
        "0",
        "--max-tokens",
        "8",
    ]));
    assert!(chat["completion_tokens"].as_u64().unwrap() > 0);
    eprintln!("{:.1} s", t0.elapsed().as_secs_f64());
}

/// The same tiny-model run, straight or interrupted (SIGINT, or --stop-after) and resumed, gives
/// the same metrics.
#[test]
fn interrupt_then_resume_continues_the_same_loss_curve() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data = messages_file(dir.path());
    let model = tiny_phi3(dir.path());
    let common = |out: &Path| -> Vec<String> {
        tune_args(
            &data,
            &model,
            out,
            &[
                "--steps",
                "60",
                "--batch",
                "3",
                "--grad-accum",
                "2",
                "--max-seq",
                "64",
                "--lr",
                "5e-3",
                "--dropout",
                "0.1",
                "--eval-every",
                "20",
                "--save-every",
                "1000",
            ],
        )
    };
    let straight = dir.path().join("straight");
    let a = ok_json(&lorag().args(common(&straight)).output().unwrap());
    assert_eq!(a["steps"], 60);
    assert!(a["train_loss_end"].as_f64().unwrap() < a["train_loss_start"].as_f64().unwrap());

    // SIGINT once the metrics show a step.
    let split = dir.path().join("split");
    let child = lorag()
        .args(common(&split))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = std::fs::read_to_string(split.join("metrics.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if n >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no step after 120 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let k = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(k.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "stderr: {err}");
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["interrupted"], true);
    let stopped = j["steps"].as_u64().unwrap();
    assert!((1..60).contains(&stopped), "stopped at {stopped}");
    assert!(split.join("checkpoint/state.json").is_file());
    assert!(
        !split.join("adapter.gguf").exists(),
        "no adapter from a cut run"
    );

    // Without --resume the run folder is not overwritten.
    assert_error(
        &lorag().args(common(&split)).output().unwrap(),
        &["--resume"],
    );
    // Resuming with other options is refused, naming the option.
    let mut other = common(&split);
    other.extend(["--resume".into(), "--rank".into(), "4".into()]);
    assert_error(
        &lorag().args(other).output().unwrap(),
        &["lora.rank: 8 -> 4", "same options"],
    );

    let mut resume = common(&split);
    resume.push("--resume".into());
    let b = ok_json(&lorag().args(&resume).output().unwrap());
    assert_eq!(b["resumed_from"], stopped);
    assert_eq!(b["steps"], 60);
    assert!(split.join("adapter.gguf").is_file());

    let (ma, mb) = (metrics(&straight), metrics(&split));
    assert_eq!(ma.len(), 61);
    assert_eq!(ma.len(), mb.len());
    for (x, y) in ma.iter().zip(&mb) {
        assert_eq!(x["step"], y["step"]);
        assert_eq!(x["lr"], y["lr"], "{x} vs {y}");
        for k in ["loss", "eval_loss"] {
            match (x[k].as_f64(), y[k].as_f64()) {
                (Some(p), Some(q)) => assert!((p - q).abs() < 1e-4, "{k}: {x} vs {y}"),
                (None, None) => {}
                _ => panic!("{k}: {x} vs {y}"),
            }
        }
    }

    // --stop-after does what Ctrl-C does, at a chosen step.
    let cut = dir.path().join("cut");
    let mut c = common(&cut);
    c.extend(["--stop-after".into(), "7".into()]);
    let out = lorag().args(&c).output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    assert_eq!(metrics(&cut).len(), 8);
    eprintln!("{:.1} s", t0.elapsed().as_secs_f64());
}

/// kill -9 (no handler runs) at six points of a run: before the first checkpoint, between steps,
/// and at times that fall inside checkpoint writes on some runs. Each time `--resume` goes on from
/// the last complete checkpoint (never from scratch); the final adapter is byte for byte a
/// straight run's, and the loss curve is the straight run's.
#[test]
fn sigkill_then_resume_gives_the_adapter_of_a_straight_run() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data = messages_file(dir.path());
    let model = tiny_phi3(dir.path());
    let args = |out: &Path, resume: bool| -> Vec<String> {
        let mut options = vec![
            "--steps",
            "40",
            "--batch",
            "3",
            "--max-seq",
            "64",
            "--lr",
            "5e-3",
            "--dropout",
            "0.1",
            "--eval-every",
            "10",
            "--save-every",
            "4",
        ];
        if resume {
            options.push("--resume");
        }
        tune_args(&data, &model, out, &options)
    };
    let straight = dir.path().join("straight");
    let a = ok_json(&lorag().args(args(&straight, false)).output().unwrap());
    assert_eq!(a["steps"], 40);
    let want = std::fs::read(straight.join("adapter.gguf")).unwrap();

    let split = dir.path().join("split");
    let steps_done = || {
        std::fs::read_to_string(split.join("metrics.jsonl"))
            .map(|t| t.lines().filter(|l| l.ends_with('}')).count())
            .unwrap_or(0)
    };
    // The step of the last complete checkpoint: `checkpoint/`, or `checkpoint.old/` when the kill
    // fell between save_checkpoint's two renames (the next run puts it back).
    let checkpoint_step = || -> u64 {
        ["checkpoint", "checkpoint.old"]
            .iter()
            .find_map(|d| std::fs::read_to_string(split.join(d).join("state.json")).ok())
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["step"].as_u64())
            .unwrap_or(0)
    };
    let log = dir.path().join("stderr.txt");
    // (metrics lines to wait for, then extra milliseconds before the kill)
    let mut killed_at = Vec::new();
    for (i, (lines, extra_ms)) in [(1, 0u64), (6, 3), (13, 0), (22, 7), (30, 1), (37, 0)]
        .into_iter()
        .enumerate()
    {
        let from = checkpoint_step();
        let mut child = lorag()
            .args(args(&split, i > 0))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while steps_done() < lines {
            assert!(
                Instant::now() < deadline,
                "no progress to {lines} metrics lines"
            );
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(extra_ms));
        let _ = child.kill(); // SIGKILL (the run may just have ended)
        child.wait().unwrap();
        killed_at.push(steps_done());
        // A run that found a checkpoint went on from it (it wrote metrics past it before the
        // kill), rather than starting over.
        if from > 0 {
            let err = std::fs::read_to_string(&log).unwrap();
            assert!(
                err.contains(&format!("resuming from step {from} of 40")),
                "run {i} did not resume from step {from}: {err}"
            );
        }
        // Whatever was cut, no temporary checkpoint is trusted and tune.json stays whole.
        let info: Value =
            serde_json::from_str(&std::fs::read_to_string(split.join("tune.json")).unwrap())
                .unwrap();
        assert!(info["train"].is_object());
    }
    let from = checkpoint_step();
    assert!(
        from >= 28,
        "the last kill came after step 36, its checkpoint is at {from}"
    );
    let b = ok_json(&lorag().args(args(&split, true)).output().unwrap());
    assert_eq!(b["steps"], 40);
    assert_eq!(b["resumed_from"], from);
    let got = std::fs::read(split.join("adapter.gguf")).unwrap();
    assert!(
        got == want,
        "the resumed adapter differs from the straight run's (killed after {killed_at:?} metrics lines)"
    );
    let (ma, mb) = (metrics(&straight), metrics(&split));
    assert_eq!(ma.len(), mb.len(), "killed after {killed_at:?}");
    for (x, y) in ma.iter().zip(&mb) {
        for k in ["step", "loss", "eval_loss", "lr"] {
            assert_eq!(x[k], y[k], "{k}, killed after {killed_at:?}");
        }
    }
    for leftover in ["checkpoint.partial", "checkpoint.old"] {
        assert!(!split.join(leftover).exists(), "{leftover} left behind");
    }
    eprintln!(
        "killed after {killed_at:?} metrics lines; {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

/// A full disk (every file the process writes limited in size, see `common::size_limited`)
/// during tune, while it writes a checkpoint, and during merge: one clear error naming the file
/// that could not be written; the last checkpoint and the previous merged model intact, nothing
/// partial left; with space, `--resume` finishes with the adapter of a straight run.
#[test]
fn a_full_disk_during_tune_and_merge_is_a_clear_error_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = messages_file(dir.path());
    let model = tiny_phi3(dir.path());
    let args = |out: &Path, extra: &[&str]| -> Vec<String> {
        let mut options = vec![
            "--steps",
            "16",
            "--batch",
            "3",
            "--max-seq",
            "64",
            "--lr",
            "5e-3",
            "--save-every",
            "4",
        ];
        options.extend_from_slice(extra);
        tune_args(&data, &model, out, &options)
    };
    let straight = dir.path().join("straight");
    ok_json(&lorag().args(args(&straight, &[])).output().unwrap());
    let want = std::fs::read(straight.join("adapter.gguf")).unwrap();

    let split = dir.path().join("split");
    let out = lorag()
        .args(args(&split, &["--stop-after", "8"]))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(130));
    let ckpt = split.join("checkpoint");
    let before: Vec<Vec<u8>> = ["adapter.safetensors", "optimizer.safetensors", "state.json"]
        .iter()
        .map(|f| std::fs::read(ckpt.join(f)).unwrap())
        .collect();
    // A limit under the size of a checkpoint's adapter file, above every other file of the run.
    let limit = before[0].len() as u64 / 2;
    for f in ["metrics.jsonl", "loss.svg", "tune.json"] {
        let n = std::fs::metadata(split.join(f)).unwrap().len();
        assert!(
            n * 3 < limit,
            "{f} ({n} bytes) is too close to the limit ({limit} bytes)"
        );
    }
    let a = args(&split, &["--resume"]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let out = common::size_limited(limit / 1024, &a).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains("adapter.safetensors") && line.contains("could not write"),
        "{line}"
    );
    let after: Vec<Vec<u8>> = ["adapter.safetensors", "optimizer.safetensors", "state.json"]
        .iter()
        .map(|f| std::fs::read(ckpt.join(f)).unwrap())
        .collect();
    assert!(before == after, "the last checkpoint changed");
    assert!(!split.join("checkpoint.partial").exists());
    assert!(
        common::leftovers(&split).is_empty(),
        "{:?}",
        common::leftovers(&split)
    );
    assert!(!split.join("adapter.gguf").exists());
    let b = ok_json(&lorag().args(args(&split, &["--resume"])).output().unwrap());
    assert_eq!(b["resumed_from"], 8);
    assert!(std::fs::read(split.join("adapter.gguf")).unwrap() == want);

    // Merge: the output is written whole or not at all; an earlier merged model stays.
    let adapter = split.join("adapter.gguf");
    let merged = dir.path().join("merged.gguf");
    merge_ok(&model, &[s(&adapter)], &merged, &["--type", "f32"]);
    let old = std::fs::read(&merged).unwrap();
    let limit = old.len() as u64 / 2 / 1024;
    let out = common::size_limited(
        limit,
        &[
            "merge",
            "--model",
            s(&model),
            "--lora",
            &format!("{}:0.5", s(&adapter)),
            "--out",
            s(&merged),
            "--type",
            "f32",
        ],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("merged"), "{line}");
    assert!(
        std::fs::read(&merged).unwrap() == old,
        "the earlier merged model changed"
    );
    assert_no_partial_file(dir.path());
    assert!(common::leftovers(dir.path()).is_empty());
}

#[test]
fn a_malformed_line_names_file_and_line_and_skip_bad_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_phi3(dir.path());
    let mut lines: Vec<String> = QA.iter().map(|(q, a)| messages_line(q, a)).collect();
    lines[2] = r#"{"messages": [{"role": "user", "content": "no reply"}"#.into();
    lines[6] = json!({"messages": [{"role": "wizard", "content": "x"}]}).to_string();
    let data = write_lines(&dir.path().join("bad.jsonl"), &lines);
    let out = dir.path().join("run");
    let base = |extra: &[&str]| {
        let mut v = vec![
            "tune",
            "--data",
            s(&data),
            "--model",
            s(&model),
            "--out",
            s(&out),
            "--steps",
            "1",
            "--batch",
            "2",
            "--max-seq",
            "48",
            "--json",
        ];
        v.extend_from_slice(extra);
        run(&v)
    };
    assert_error(
        &base(&[]),
        &[&format!("{}:3:", data.display()), "invalid JSON"],
    );
    let j = ok_json(&base(&["--skip-bad"]));
    assert_eq!(j["data"]["stats"]["skipped_bad"], 2);
    assert_eq!(j["data"]["stats"]["conversations"], 10);
    assert_eq!(j["steps"], 1);
}

#[test]
fn alpaca_and_sharegpt_files_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_phi3(dir.path());
    let alpaca: Vec<String> = QA
        .iter()
        .map(|(q, a)| json!({"instruction": q, "input": "", "output": a}).to_string())
        .collect();
    let sharegpt: Vec<String> = QA
        .iter()
        .map(|(q, a)| {
            json!({"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]})
                .to_string()
        })
        .collect();
    for (name, lines, key) in [
        ("alpaca", alpaca, "alpaca"),
        ("sharegpt", sharegpt, "sharegpt"),
    ] {
        let data = write_lines(&dir.path().join(format!("{name}.jsonl")), &lines);
        let out = dir.path().join(name);
        let j = ok_json(&run(&[
            "tune",
            "--data",
            s(&data),
            "--model",
            s(&model),
            "--out",
            s(&out),
            "--steps",
            "2",
            "--batch",
            "4",
            "--max-seq",
            "48",
            "--targets",
            "attn_qkv",
            "--json",
        ]));
        assert_eq!(j["data"]["stats"][key], 12, "{j}");
        assert_eq!(j["data"]["stats"]["messages"], 0);
        assert!(out.join("adapter.gguf").is_file());
        let g = lorag_gguf::Gguf::open(out.join("adapter.gguf")).unwrap();
        assert!(g.tensors.iter().all(|t| t.name.contains("attn_qkv")));
    }
}

#[test]
fn bad_flags_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_phi3(dir.path());
    let data = messages_file(dir.path());
    let out = dir.path().join("run");
    let t = |extra: &[&str]| {
        let mut v = vec![
            "tune",
            "--data",
            s(&data),
            "--model",
            s(&model),
            "--out",
            s(&out),
            "--max-seq",
            "32",
        ];
        v.extend_from_slice(extra);
        run(&v)
    };
    assert_error(
        &t(&["--epochs", "1", "--steps", "3"]),
        &["--epochs", "--steps"],
    );
    assert_error(&t(&["--rank", "0"]), &["--rank"]);
    assert_error(&t(&["--eval-split", "1.5"]), &["--eval-split"]);
    assert_error(&t(&["--lr=-1"]), &["--lr"]);
    // Training on a GPU that this build cannot reach is an error that says what to do.
    if !cfg!(feature = "cuda") {
        assert_error(
            &t(&["--device", "cuda", "--steps", "1"]),
            &["--device cuda", "--features cuda"],
        );
    }
    // clap's own usage errors are one line too (exit code 2)
    let o = t(&["--rank", "many"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: ") && err.contains("--rank"),
        "{err}"
    );
    assert_error(
        &t(&["--targets", "attn_q,ffn_gate", "--steps", "1"]),
        &["attn_q", "phi3", "attn_qkv, attn_output, ffn_up, ffn_down"],
    );
    assert_error(
        &run(&["tune", "--data", "/no/such/file.jsonl", "--out", s(&out)]),
        &["/no/such/file.jsonl"],
    );
    assert_error(
        &run(&[
            "merge",
            "--model",
            s(&model),
            "--lora",
            "/no/such.gguf",
            "--out",
            "x.gguf",
        ]),
        &["/no/such.gguf"],
    );
    assert_error(
        &run(&[
            "merge",
            "--model",
            s(&model),
            "--lora",
            s(&data),
            "--out",
            "x.gguf",
            "--type",
            "q3_x",
        ]),
        &["q3_x", "q4_k_m"],
    );
}

/// Argmax of each row.
fn top1(rows: &[Vec<f32>]) -> Vec<usize> {
    rows.iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0
        })
        .collect()
}

fn logits(model: &Path, adapters: &[(&Path, f32)], tokens: &[i32]) -> Vec<Vec<f32>> {
    let e = lorag_llm::Engine::load(model, &lorag_llm::LoadOptions::default()).unwrap();
    let mut sess = e
        .session(&lorag_llm::SessionOptions {
            n_ctx: 512,
            ..Default::default()
        })
        .unwrap();
    let ads: Vec<_> = adapters
        .iter()
        .map(|(p, sc)| (e.load_lora(p).unwrap(), *sc))
        .collect();
    sess.set_adapters(&ads).unwrap();
    sess.eval_logits(tokens).unwrap()
}

/// (max |difference| relative to the logits' spread, top-1 agreement)
fn compare(a: &[Vec<f32>], b: &[Vec<f32>]) -> (f32, f64) {
    let mut worst = 0f32;
    for (x, y) in a.iter().zip(b) {
        let spread =
            x.iter().cloned().fold(f32::MIN, f32::max) - x.iter().cloned().fold(f32::MAX, f32::min);
        let d = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        worst = worst.max(d / spread);
    }
    let (ta, tb) = (top1(a), top1(b));
    let agree = ta.iter().zip(&tb).filter(|(p, q)| p == q).count() as f64 / ta.len() as f64;
    (worst, agree)
}

/// The arguments `tune --data D --model M --out O OPTIONS... --json`.
fn tune_args(data: &Path, model: &Path, out: &Path, options: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "tune",
        "--data",
        s(data),
        "--model",
        s(model),
        "--out",
        s(out),
    ]
    .iter()
    .chain(options)
    .map(|x| x.to_string())
    .collect();
    v.push("--json".into());
    v
}

/// `lorag tune --data D --model M --out O EXTRA... --json`, which must succeed.
fn tune_ok(data: &Path, model: &Path, out: &Path, extra: &[&str]) -> Value {
    ok_json(
        &lorag()
            .args(tune_args(data, model, out, extra))
            .output()
            .unwrap(),
    )
}

/// `lorag merge --model M (--lora L)... --out O EXTRA... --json`, which must succeed.
fn merge_ok(model: &Path, loras: &[&str], out: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["merge", "--model", s(model)];
    for l in loras {
        args.extend_from_slice(&["--lora", l]);
    }
    args.extend_from_slice(&["--out", s(out)]);
    args.extend_from_slice(extra);
    args.push("--json");
    ok_json(&run(&args))
}

/// Merges write through a temporary file that is renamed: none may be left behind.
fn assert_no_partial_file(dir: &Path) {
    assert!(!dir.read_dir().unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("partial")));
}

#[test]
fn merged_smollm2_matches_base_plus_adapters_in_llama_cpp() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let m = smollm();
    // Two random adapters over different and overlapping targets, with their own alpha.
    let targets =
        |names: &[(&str, u64, u64)], layers: std::ops::Range<u64>| -> Vec<(String, u64, u64)> {
            layers
                .flat_map(|l| {
                    names
                        .iter()
                        .map(move |(n, i, o)| (format!("blk.{l}.{n}"), *i, *o))
                })
                .collect()
        };
    let a = dir.path().join("a.gguf");
    let b = dir.path().join("b.gguf");
    write_random_lora(
        "llama",
        &targets(
            &[
                ("attn_q", 576, 576),
                ("attn_v", 576, 192),
                ("ffn_down", 1536, 576),
            ],
            0..30,
        ),
        8,
        16.0,
        1,
        0.05,
        &a,
    )
    .unwrap();
    write_random_lora(
        "llama",
        &targets(&[("attn_q", 576, 576), ("ffn_up", 576, 1536)], 10..20),
        4,
        4.0,
        2,
        0.08,
        &b,
    )
    .unwrap();
    let merged = dir.path().join("out/merged.gguf");
    let j = merge_ok(&m, &[&format!("{}:0.7", a.display()), s(&b)], &merged, &[]);
    eprintln!("{j:#}");
    assert_eq!(j["merged_tensors"], 30 * 3 + 10);
    let eff = j["adapters"][0]["effective_scale"].as_f64().unwrap();
    assert!((eff - 0.7 * 16.0 / 8.0).abs() < 1e-6, "{eff}");
    let g = lorag_gguf::Gguf::open(&merged).unwrap();
    let base = lorag_gguf::Gguf::open(&m).unwrap();
    assert_eq!(g.tensors.len(), base.tensors.len());
    assert_eq!(
        g.tensor("blk.3.attn_q.weight").unwrap().ty,
        lorag_gguf::GgmlType::F16
    );
    assert_eq!(
        g.tensor("blk.3.attn_k.weight").unwrap().ty,
        base.tensor("blk.3.attn_k.weight").unwrap().ty
    );
    for (k, v) in &base.metadata {
        if k != "general.file_type" {
            assert_eq!(g.get(k), Some(v), "metadata {k}");
        }
    }
    assert_no_partial_file(&dir.path().join("out"));

    let e = lorag_llm::Engine::load(
        &m,
        &lorag_llm::LoadOptions {
            vocab_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    let text = e
        .render_chat(
            &[
                lorag_llm::Message::user("Do I need a building permit to put up a garden shed next to my house, and how long does the municipality take to decide?"),
                lorag_llm::Message::assistant("Usually not for a small shed: up to 30 square metres is exempt, but the neighbours must agree if it is closer than 4.5 metres to the boundary. Where a permit is needed, the committee decides within ten weeks, and it may extend that once by ten more weeks when the case is complex. The local plan may still forbid the building."),
            ],
            None,
            false,
        )
        .unwrap();
    let tokens = e.tokenize(&text, true, true);
    assert!(tokens.len() > 90, "{}", tokens.len());
    // llama.cpp multiplies a Q4_1 weight with activations quantized to 8 bits, an f16 weight
    // without: to see the merge alone, the reference is the same base in f16 (a merge at scale
    // 0 converts exactly the adapted tensors) with the adapters applied at run time.
    let base_f16 = dir.path().join("out/base-f16.gguf");
    merge_ok(
        &m,
        &[&format!("{}:0", a.display()), &format!("{}:0", b.display())],
        &base_f16,
        &[],
    );
    let with_adapters = logits(&base_f16, &[(&a, 0.7), (&b, 1.0)], &tokens);
    let plain = logits(&base_f16, &[], &tokens);
    let of_merged = logits(&merged, &[], &tokens);
    let (d_base, agree_base) = compare(&with_adapters, &plain);
    let (d, agree) = compare(&with_adapters, &of_merged);
    // and against the original Q4_1 base + adapters (the quantized matmul differs, see above)
    let (d_q, agree_q4) = compare(&logits(&m, &[(&a, 0.7), (&b, 1.0)], &tokens), &of_merged);
    eprintln!(
        "{} positions: merged vs f16 base + adapters: max |diff|/spread {d:.4}, top-1 agreement {agree:.3}; merged vs Q4_1 base + adapters: {d_q:.4}, {agree_q4:.3}; base alone vs base + adapters: {d_base:.4}, {agree_base:.3}",
        tokens.len()
    );
    assert!(
        d_base > 0.05 && agree_base < 0.9,
        "the adapters must change the model"
    );
    // Random dense adapters (measured: 2.3% of the spread, 94.6% top-1) push activations where
    // llama.cpp's f16 rounding flips near-ties more often than a trained adapter does (below:
    // 0.8%, 100%); the exact f32 parity of the merge is shown on the tiny phi3 (1e-3, 100%).
    assert!(
        d < 0.03,
        "merged logits within 3% of the logit spread, got {d}"
    );
    assert!(agree >= 0.93, "top-1 agreement {agree}");
    assert!(
        agree_q4 >= 0.9,
        "top-1 agreement with the Q4_1 base + adapters {agree_q4}"
    );

    // A trained adapter (few steps, high lr: a large effect) merges to the same model: this is
    // the >= 99% top-1 check (random dense adapters above are harsher than trained ones).
    let data = messages_file(dir.path());
    let run_dir = dir.path().join("run");
    tune_ok(
        &data,
        &m,
        &run_dir,
        &[
            "--steps",
            "3",
            "--batch",
            "4",
            "--max-seq",
            "40",
            "--lr",
            "1e-2",
            "--eval-split",
            "0",
        ],
    );
    let tuned = run_dir.join("adapter.gguf");
    let (t16, tm) = (
        dir.path().join("out/t16.gguf"),
        dir.path().join("out/tm.gguf"),
    );
    merge_ok(&m, &[&format!("{}:0", tuned.display())], &t16, &[]);
    merge_ok(&m, &[s(&tuned)], &tm, &[]);
    let reference = logits(&t16, &[(&tuned, 1.0)], &tokens);
    let (d_eff, agree_eff) = compare(&reference, &logits(&t16, &[], &tokens));
    let (d_t, agree_t) = compare(&reference, &logits(&tm, &[], &tokens));
    eprintln!("trained adapter: merged vs f16 base + adapter {d_t:.4}, top-1 {agree_t:.3} (the adapter's own effect {d_eff:.4}, {agree_eff:.3})");
    assert!(d_eff > 0.05, "the trained adapter changes the model");
    assert!(d_t < 0.02 && agree_t >= 0.99, "{d_t} {agree_t}");

    // A quantized merge goes through llama.cpp's quantizer.
    let q8 = dir.path().join("out/merged-q8.gguf");
    let j = merge_ok(
        &m,
        &[&format!("{}:0.7", a.display()), s(&b)],
        &q8,
        &["--type", "q8_0"],
    );
    assert_eq!(j["quantization"], "Q8_0", "{j}");
    let g = lorag_gguf::Gguf::open(&q8).unwrap();
    assert_eq!(
        g.tensor("blk.3.attn_q.weight").unwrap().ty,
        lorag_gguf::GgmlType::Q8_0
    );
    let (dq, agree_q) = compare(&with_adapters, &logits(&q8, &[], &tokens));
    eprintln!("q8_0 merge: max |diff|/spread {dq:.4}, top-1 agreement {agree_q:.3}");
    assert!(agree_q >= 0.9, "q8_0 top-1 agreement {agree_q}");
    assert_no_partial_file(&dir.path().join("out"));
    eprintln!("{:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
fn merge_of_a_tuned_tiny_phi3_matches_llama_cpp_with_the_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_phi3(dir.path());
    let data = messages_file(dir.path());
    let out = dir.path().join("run");
    tune_ok(
        &data,
        &model,
        &out,
        &[
            "--steps",
            "15",
            "--batch",
            "4",
            "--max-seq",
            "48",
            "--lr",
            "2e-2",
            "--rank",
            "4",
            "--rslora",
        ],
    );
    let adapter = out.join("adapter.gguf");
    let merged = dir.path().join("merged.gguf");
    merge_ok(&model, &[s(&adapter)], &merged, &["--type", "f32"]);
    let e = lorag_llm::Engine::load(&model, &lorag_llm::LoadOptions::default()).unwrap();
    let tokens = e.tokenize(
        &e.render_chat(
            &[
                lorag_llm::Message::user(QA[0].0),
                lorag_llm::Message::assistant(QA[0].1),
            ],
            None,
            false,
        )
        .unwrap(),
        true,
        true,
    );
    drop(e);
    let with = logits(&model, &[(&adapter, 1.0)], &tokens);
    let (d_base, _) = compare(&with, &logits(&model, &[], &tokens));
    let (d, agree) = compare(&with, &logits(&merged, &[], &tokens));
    eprintln!("tiny phi3 f32 merge: {d:.2e} (adapter's own effect {d_base:.2e}), top-1 {agree}");
    assert!(d_base > 1e-3, "training changed the model");
    assert!(d < 1e-3 && agree == 1.0);
}
