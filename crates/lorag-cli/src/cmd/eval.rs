//! `lorag eval`: base, RAG, fine-tuned and RAG + fine-tuned, measured on the same held-out
//! questions with the same model, greedy sampling and answer budget; a report recommends a route.
//!
//! The run folder (`--out`) holds `train.jsonl`/`test.jsonl` (the seeded split), the adapters it
//! trained (`ft/`, `rag-ft/`: `lorag tune` run folders), `cache/` (each route's answers, keyed by
//! a hash of model, adapter, KB generation, questions and options) and the report
//! (`report.md`, `report.html`, `results.json`, `plots/`). A stopped run resumes: answers in the
//! cache and adapters whose inputs did not change are reused.
//!
//! Adapters are trained by running this binary's own `tune` and `rag-data` commands, so that
//! `ft` is exactly what `lorag tune` gives and `rag+ft` what `lorag rag-data` + `lorag tune` give.

use anyhow::{bail, Context, Result};
use clap::Args;
use lorag_eval::budget::{self, BudgetPlan};
use lorag_eval::cache::{file_hash, split_hash};
use lorag_eval::results::{CurvePoint, SplitSummary};
use lorag_eval::split::{held_out_slice, subset};
use lorag_eval::{metrics, Answer, Cache, Cost, KeyParts, QaItem, QuestionRow, Results, RouteSpec};
use lorag_eval::{SplitOptions, StatsOptions};
use lorag_llm::{SamplingParams, SessionOptions};
use lorag_rag::RagOptions;
use lorag_service::{Config, KbSpec, LoraSpec, Service};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The knowledge base the RAG routes retrieve from
    #[arg(long)]
    pub kb: String,
    /// The company's Q&A: JSONL (messages, Alpaca, ShareGPT or {"question","answer","sources"}) or CSV
    #[arg(long, value_name = "FILE")]
    pub qa: PathBuf,
    /// Run folder: split, adapters, answer cache, report
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// A model path (.gguf) or catalogue name (default: smollm2-135m-instruct)
    #[arg(long, short)]
    pub model: Option<String>,
    /// Routes to compare (base, rag, ft, rag+ft)
    #[arg(long, value_delimiter = ',', default_value = "base,rag,ft,rag+ft")]
    pub routes: Vec<String>,
    /// Share of the questions held out for testing
    #[arg(long = "test-split", default_value_t = 0.2)]
    pub test_split: f64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Use this adapter for `ft` instead of training one
    #[arg(long = "ft-adapter")]
    pub ft_adapter: Option<PathBuf>,
    /// Use this adapter for `rag+ft` instead of training one
    #[arg(long = "rag-ft-adapter")]
    pub rag_ft_adapter: Option<PathBuf>,
    /// Optimizer steps per trained adapter (default: one epoch over the train split, or what
    /// --budget allows)
    #[arg(long = "train-steps")]
    pub train_steps: Option<usize>,
    /// Train QLoRA adapters (4-bit base) instead of LoRA
    #[arg(long)]
    pub qlora: bool,
    /// Answer at most this many test questions
    #[arg(long = "max-questions")]
    pub max_questions: Option<usize>,
    /// Sources retrieved per question (RAG routes)
    #[arg(short, long, default_value_t = 4)]
    pub k: usize,
    /// Minutes of training allowed in all (the steps are fitted to it on this machine)
    #[arg(long, value_name = "MINUTES")]
    pub budget: Option<f64>,
    /// Tokens per answer (the same for every route)
    #[arg(long = "max-tokens", default_value_t = 64)]
    pub max_tokens: usize,
    /// An instruction added to every question (as `lorag ask --style`)
    #[arg(long)]
    pub style: Option<String>,
    #[arg(long)]
    pub embedder: Option<String>,
    #[arg(long)]
    pub threads: Option<i32>,
    /// Print results.json on stdout
    #[arg(long)]
    pub json: bool,
}

const ROUTES: [&str; 4] = ["base", "rag", "ft", "rag+ft"];
const CURVE: [f64; 2] = [0.25, 0.5];

/// One route's answer to one question, as answered (what the cache keeps).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Row {
    id: String,
    text: String,
    refused: bool,
    /// Sources cited and sources given to the model (RAG routes).
    cited: Vec<String>,
    retrieved: Vec<String>,
    /// The given passages that hold the reference answer's text (`source@start-end`).
    holding: Vec<String>,
    /// Share of the answer's claims that their citations support (RAG routes).
    supported_share: Option<f64>,
    ttft_ms: f64,
    total_ms: f64,
}

/// What a route needs to answer: its adapter (a name in the service) and whether it retrieves.
struct Route {
    name: &'static str,
    adapter: Option<String>,
    rag: bool,
}

pub fn run(a: EvalArgs) -> Result<()> {
    let routes = parse_routes(&a.routes)?;
    if !(a.test_split > 0.0 && a.test_split < 1.0) {
        bail!("--test-split {}: must be between 0 and 1", a.test_split);
    }
    let items = lorag_eval::read_qa(&a.qa)?;
    let split_opts = SplitOptions {
        test_fraction: a.test_split,
        seed: a.seed,
        ..SplitOptions::default()
    };
    let sp = lorag_eval::split(&items, &split_opts)?;
    let mut test = sp.test.clone();
    if let Some(n) = a.max_questions {
        test.truncate(n.max(1));
    }
    // The KB is checked before any training.
    let embedder = lorag_service::load_embedder(a.embedder.as_deref())?.1;
    lorag_service::open_kb(&a.kb, &embedder, false).with_context(|| format!("--kb {}", a.kb))?;
    drop(embedder);
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    lorag_eval::write_split(&a.out, &sp)?;
    eprintln!(
        "lorag eval: {} questions: {} to train on, {} to test{}; {} near-duplicates of test questions kept out of the test split",
        items.len(),
        sp.train.len(),
        test.len(),
        if test.len() < sp.test.len() { format!(" (of {})", sp.test.len()) } else { String::new() },
        sp.leaks_removed
    );

    // Adapters (trained by this binary's `tune`, so no model is loaded here yet).
    let model_path = lorag_service::resolve_model(a.model.as_deref())?;
    let model_hash = file_hash(&model_path)?;
    let train_qa = a.out.join("ft-qa.jsonl");
    write_messages(&sp.train, &train_qa)?;
    let to_train: Vec<&str> = routes
        .iter()
        .copied()
        .filter(|r| {
            (*r == "ft" && a.ft_adapter.is_none()) || (*r == "rag+ft" && a.rag_ft_adapter.is_none())
        })
        .collect();
    // Each route's training data first: the budget needs each one's speed.
    let mut data: BTreeMap<&str, PathBuf> = BTreeMap::new();
    for route in &to_train {
        data.insert(route, training_data(&a, route, &sp.train, &train_qa, "")?);
    }
    let plan = plan_training(&a, &data, &sp.train, &model_path)?;
    if !to_train.is_empty() {
        eprintln!("lorag eval: {}", plan.text);
    }
    let mut costs: BTreeMap<&str, Cost> = BTreeMap::new();
    let mut loss_curves = BTreeMap::new();
    let mut loras = Vec::new();
    let mut curve_adapters: Vec<(&str, f64, PathBuf)> = Vec::new();
    for (route, given, dir) in [
        ("ft", &a.ft_adapter, "ft"),
        ("rag+ft", &a.rag_ft_adapter, "rag-ft"),
    ] {
        if !routes.contains(&route) {
            continue;
        }
        let path = match given {
            Some(p) => {
                costs.insert(route, adapter_cost(p, None));
                p.clone()
            }
            None => {
                check_no_leak(&test, &sp.train)?;
                let t = train(&a, &data[route], &a.out.join(dir), plan.steps)?;
                costs.insert(route, adapter_cost(&t.adapter, Some(t.minutes)));
                if let Some(c) = t.loss {
                    loss_curves.insert(route.to_string(), c);
                }
                if plan.learning_curve {
                    for f in CURVE {
                        let part = subset(&sp.train, f, a.seed);
                        let tag = format!("-{:.0}", f * 100.0);
                        let data = training_data(
                            &a,
                            route,
                            &part,
                            &a.out.join(format!("ft-qa{tag}.jsonl")),
                            &tag,
                        )?;
                        let t = train(
                            &a,
                            &data,
                            &a.out.join(format!("{dir}{tag}")),
                            budget::curve_steps(plan.steps, f),
                        )?;
                        curve_adapters.push((route, f, t.adapter));
                    }
                }
                t.adapter
            }
        };
        loras.push(LoraSpec {
            name: dir.into(),
            path,
            scale: 1.0,
        });
    }
    for (i, (_, _, path)) in curve_adapters.iter().enumerate() {
        loras.push(LoraSpec {
            name: format!("curve{i}"),
            path: path.clone(),
            scale: 1.0,
        });
    }

    let service = Service::load(&Config {
        model: a.model.clone(),
        loras,
        kbs: vec![KbSpec {
            name: "kb".into(),
            location: a.kb.clone(),
        }],
        embedder: a.embedder.clone(),
        ..Default::default()
    })?;
    let session_opts = SessionOptions {
        n_threads: a.threads.unwrap_or_else(lorag_llm::default_threads),
        ..SessionOptions::default()
    };
    let opts = RagOptions {
        k: a.k,
        answer_tokens: a.max_tokens,
        sampling: SamplingParams::greedy(a.max_tokens),
        rewrite: false,
        style: a.style.clone(),
        ..RagOptions::default()
    };
    let store = service.kb_handle("kb").expect("loaded").store.clone();
    let generation = store.generation()?;
    let kb_id = store.embedding_model()?.map(|(m, _)| m).unwrap_or_default();
    let update = reindex_seconds(&a, &service, generation)?;
    let answer_options = serde_json::json!({
        "k": a.k, "max_tokens": a.max_tokens, "style": a.style, "sampling": "greedy",
        "rewrite": false, "refuse_below": opts.refuse_below, "support_threshold": opts.support_threshold,
    });
    let cache = Cache::new(&a.out);
    let answer = |route: &Route,
                  svc: &Service,
                  qs: &[QaItem],
                  kb: (&str, u64),
                  label: &str|
     -> Result<Vec<Row>> {
        let key = KeyParts {
            route: route.name.to_string(),
            model: model_hash.clone(),
            adapter: match &route.adapter {
                Some(n) => Some(file_hash(&svc.adapter(n).expect("loaded").0.path)?),
                None => None,
            },
            kb: route.rag.then(|| format!("{kb_id} {}", kb.0)),
            kb_generation: route.rag.then_some(kb.1),
            split: split_hash(qs),
            options: answer_options.clone(),
        }
        .key();
        if let Some(rows) = cache.get::<Vec<Row>>(&key)? {
            if rows.len() == qs.len() {
                eprintln!("lorag eval: {label}: {} answers from the cache", rows.len());
                return Ok(rows);
            }
        }
        let rows = answer_all(svc, label, route, qs, &opts, &session_opts)?;
        cache.put(&key, &rows)?;
        Ok(rows)
    };

    let route_list: Vec<Route> = routes
        .iter()
        .map(|r| Route {
            name: r,
            adapter: match *r {
                "ft" => Some("ft".to_string()),
                "rag+ft" => Some("rag-ft".to_string()),
                _ => None,
            },
            rag: r.starts_with("rag"),
        })
        .collect();
    let mut res = Results::new(
        service.model_name().to_string(),
        Some(a.kb.clone()),
        serde_json::json!({
            "routes": routes, "test_split": a.test_split, "seed": a.seed, "k": a.k,
            "max_tokens": a.max_tokens, "style": a.style, "train_steps": plan.steps,
            "qlora": a.qlora, "budget_minutes": a.budget, "training_plan": plan.text,
            "questions": test.len(),
        }),
    );
    res.split = SplitSummary::of(&sp, &split_opts);
    res.questions = test.iter().map(|q| QuestionRow::new(q, false)).collect();
    for route in &route_list {
        let rows = answer(route, &service, &test, (&a.kb, generation), route.name)?;
        for (q, r) in res.questions.iter_mut().zip(&rows) {
            let ans = scored(&service, q, r);
            q.answers.insert(route.name.to_string(), ans);
        }
    }
    // Refusals: a slice of the test questions asked of a copy of the KB without their sources.
    let rag_routes: Vec<&Route> = route_list.iter().filter(|r| r.rag).collect();
    if !rag_routes.is_empty() {
        let held = held_out_slice(&test, (test.len() / 4).clamp(5, 50), a.seed);
        match heldout_kb(&a, &store, &held.sources, generation)? {
            Some(dir) if held.questions.len() >= 3 => {
                eprintln!(
                    "lorag eval: {} questions asked of a copy of the KB without their {} sources",
                    held.questions.len(),
                    held.sources.len()
                );
                let hs = Service::load(&Config {
                    model: a.model.clone(),
                    loras: service
                        .adapter_names()
                        .filter(|n| *n == "rag-ft")
                        .map(|n| LoraSpec { name: n.into(), path: service.adapter(n).expect("listed").0.path.clone(), scale: 1.0 })
                        .collect(),
                    kbs: vec![KbSpec { name: "kb".into(), location: dir.display().to_string() }],
                    embedder: a.embedder.clone(),
                    ..Default::default()
                })?;
                let hgen = hs.kb_handle("kb").expect("loaded").store.generation()?;
                let mut rows_h: Vec<QuestionRow> = held
                    .questions
                    .iter()
                    .map(|q| {
                        let mut r = QuestionRow::new(q, true);
                        r.id = format!("{}/held-out", q.id);
                        r
                    })
                    .collect();
                for route in &rag_routes {
                    let label = format!("{} (held out)", route.name);
                    let rows = answer(route, &hs, &held.questions, (&dir.display().to_string(), hgen), &label)?;
                    for (q, r) in rows_h.iter_mut().zip(&rows) {
                        let ans = scored(&hs, q, r);
                        q.answers.insert(route.name.to_string(), ans);
                    }
                }
                res.questions.extend(rows_h);
            }
            _ => eprintln!("lorag eval: no held-out slice (too few test questions name sources that can be left out of the KB): correct refusals are not measured"),
        }
    }

    // The learning curve: the fine-tuned routes trained on 25% and 50% of the train split.
    if !curve_adapters.is_empty() {
        for (i, (route, f, _)) in curve_adapters.iter().enumerate() {
            let r = Route {
                name: route,
                adapter: Some(format!("curve{i}")),
                rag: route.starts_with("rag"),
            };
            let label = format!("{route} @{:.0}%", f * 100.0);
            let rows = answer(&r, &service, &test, (&a.kb, generation), &label)?;
            let f1s: Vec<f64> = test
                .iter()
                .zip(&rows)
                .map(|(q, row)| {
                    Answer::scored(
                        &QuestionRow::new(q, false),
                        row.text.clone(),
                        lorag_rag::REFUSAL,
                    )
                    .f1
                })
                .collect();
            res.learning_curve.push(CurvePoint {
                route: route.to_string(),
                fraction: *f,
                f1: mean(&f1s),
                f1s,
            });
        }
        for r in route_list.iter().filter(|r| r.adapter.is_some()) {
            let f1s: Vec<f64> = res
                .questions
                .iter()
                .filter(|q| !q.held_out)
                .filter_map(|q| Some(q.answers.get(r.name)?.f1))
                .collect();
            res.learning_curve.push(CurvePoint {
                route: r.name.to_string(),
                fraction: 1.0,
                f1: mean(&f1s),
                f1s,
            });
        }
    }
    res.loss_curves = loss_curves;
    let specs: Vec<RouteSpec> = route_list
        .iter()
        .map(|r| RouteSpec {
            name: r.name.to_string(),
            rag: r.rag,
            cost: {
                let mut c = costs.get(r.name).copied().unwrap_or_default();
                if r.rag {
                    c.update_seconds = Some(update);
                } else if let Some(m) = c.train_minutes {
                    // Facts live in the adapter: a changed document means training again.
                    c.update_seconds = Some(m * 60.0);
                }
                c
            },
        })
        .collect();
    res.compute(&specs, &StatsOptions::default());
    lorag_eval::write_report(&a.out, &res)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&res)?);
    } else {
        println!("{}", res.recommendation.text);
        println!("report: {}", a.out.join("report.html").display());
    }
    Ok(())
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// A row's answer scored against its references, with what RAG reported.
fn scored(service: &Service, q: &mut QuestionRow, r: &Row) -> Answer {
    if q.sources.is_empty() && !r.retrieved.is_empty() {
        // The Q&A names no source: the gold passages are the given ones that hold the reference.
        q.sources = if r.holding.is_empty() {
            vec![NO_GOLD.to_string()]
        } else {
            r.holding.clone()
        };
    }
    let mut ans = Answer::scored(q, r.text.clone(), lorag_rag::REFUSAL);
    ans.cited = r.cited.clone();
    ans.retrieved = r.retrieved.clone();
    ans.supported_share = r.supported_share;
    ans.refused = r.refused;
    ans.ttft_ms = r.ttft_ms;
    ans.total_ms = r.total_ms;
    ans.similarity = Some(similarity(
        service,
        &metrics::clean_answer(&r.text, lorag_rag::REFUSAL),
        &q.reference,
    ));
    ans
}

/// The gold "source" of a question whose reference no given passage holds (never matches).
const NO_GOLD: &str = "(no given passage holds the reference answer)";

fn parse_routes(rs: &[String]) -> Result<Vec<&'static str>> {
    let mut out = Vec::new();
    for r in rs {
        let r = r.trim();
        match ROUTES.iter().find(|x| **x == r) {
            Some(x) if !out.contains(x) => out.push(*x),
            Some(_) => {}
            None => bail!("--routes: unknown route {r:?} (use base, rag, ft, rag+ft)"),
        }
    }
    if out.is_empty() {
        bail!("--routes: name at least one route");
    }
    Ok(out)
}

/// The train split as `lorag tune` reads it (one "messages" conversation per line).
fn write_messages(items: &[QaItem], path: &Path) -> Result<()> {
    let mut s = String::new();
    for q in items {
        let line = serde_json::json!({"messages": [
            {"role": "user", "content": q.question},
            {"role": "assistant", "content": q.answer},
        ]});
        s.push_str(&line.to_string());
        s.push('\n');
    }
    write_atomic(path, s.as_bytes())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(lorag_eval::write_atomic(path, bytes)?)
}

fn lorag_exe() -> Result<PathBuf> {
    std::env::current_exe().context("finding the lorag binary")
}

/// Run this binary's `lorag ARGS`: its messages go to stderr, its stdout nowhere (ours carries
/// only the eval's own output, e.g. the `--json` results).
fn run_lorag(args: &[String]) -> Result<()> {
    let st = Command::new(lorag_exe()?)
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .with_context(|| format!("running lorag {}", args[0]))?;
    if !st.success() {
        bail!(
            "`lorag {}` failed ({st}): see its messages above",
            args.join(" ")
        );
    }
    Ok(())
}

/// Steps per adapter and whether the learning curve is trained: --train-steps (or one epoch at
/// batch 4), fitted to --budget from a few steps of each route's own data timed on this machine
/// (a RAG-aware conversation carries its sources, so its steps cost several plain ones).
fn plan_training(
    a: &EvalArgs,
    data: &BTreeMap<&str, PathBuf>,
    train: &[QaItem],
    model: &Path,
) -> Result<BudgetPlan> {
    let wanted = a
        .train_steps
        .unwrap_or_else(|| train.len().div_ceil(4))
        .max(1);
    let mut trainings = Vec::new();
    for (route, path) in data {
        let seconds_per_step = match a.budget {
            Some(_) => Some(seconds_per_step(a, route, path, model)?),
            None => None,
        };
        trainings.push(budget::Training {
            route,
            seconds_per_step,
        });
    }
    Ok(budget::plan(a.budget, &trainings, wanted, &CURVE, 2)?)
}

/// Seconds per training step of `route` on `data`: a 4-step `lorag tune` timed whole (model
/// loading included, so the estimate errs on the slow side), kept in DIR/budget-probe.json
/// while the model, the data and the training options are the same.
fn seconds_per_step(a: &EvalArgs, route: &str, data: &Path, model: &Path) -> Result<f64> {
    let stamp = a.out.join("budget-probe.json");
    let mut probes: serde_json::Map<String, serde_json::Value> = std::fs::read(&stamp)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let probe = 4;
    let probe_dir = a.out.join("budget-probe");
    let args = tune_args(a, data, &probe_dir, probe, model);
    let key = tune_stamp(data, model, &args)?;
    if let Some(s) = probes
        .get(route)
        .filter(|p| p["key"] == key.as_str())
        .and_then(|p| p["seconds_per_step"].as_f64())
    {
        return Ok(s);
    }
    eprintln!("lorag eval: timing {probe} training steps of {route} for the budget");
    let _ = std::fs::remove_dir_all(&probe_dir);
    let t0 = Instant::now();
    run_lorag(&args)?;
    let per_step = t0.elapsed().as_secs_f64() / probe as f64;
    let _ = std::fs::remove_dir_all(&probe_dir);
    probes.insert(
        route.to_string(),
        serde_json::json!({"key": key, "seconds_per_step": per_step}),
    );
    write_atomic(
        &stamp,
        serde_json::Value::Object(probes).to_string().as_bytes(),
    )?;
    Ok(per_step)
}

/// What a `lorag tune` run depends on: its data, its model and its options (`tune_args` past
/// `--data`/`--out`, so the folder it writes to does not count).
fn tune_stamp(data: &Path, model: &Path, args: &[String]) -> Result<String> {
    let mut h = sha2::Sha256::new();
    h.update(file_hash(data)?);
    h.update(file_hash(model)?);
    h.update(args[5..].join(" "));
    Ok(hex::encode(h.finalize()))
}

fn tune_args(a: &EvalArgs, data: &Path, out: &Path, steps: usize, model: &Path) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "tune".into(),
        "--data".into(),
        data.display().to_string(),
        "--out".into(),
        out.display().to_string(),
        "--model".into(),
        model.display().to_string(),
        "--steps".into(),
        steps.to_string(),
        "--seed".into(),
        a.seed.to_string(),
        "--eval-split".into(),
        "0".into(),
        "--json".into(),
    ];
    if a.qlora {
        v.push("--qlora".into());
    }
    if let Some(t) = a.threads {
        v.extend(["--threads".into(), t.to_string()]);
    }
    v
}

/// No test question (nor a near-duplicate) may be trained on.
fn check_no_leak(test: &[QaItem], trained: &[QaItem]) -> Result<()> {
    let leaks = lorag_eval::find_leaks(test, trained, 0.8);
    if let Some(l) = leaks.first() {
        bail!(
            "{} test questions are in the training data, e.g. {:?} ({}): the split is broken",
            leaks.len(),
            l.test,
            l.reason
        );
    }
    Ok(())
}

/// The training file of a fine-tuned route on `items`: the Q&A as conversations (`ft`), or
/// `lorag rag-data`'s RAG-aware conversations built from them (`rag+ft`).
fn training_data(
    a: &EvalArgs,
    route: &str,
    items: &[QaItem],
    qa_path: &Path,
    tag: &str,
) -> Result<PathBuf> {
    write_messages(items, qa_path)?;
    if route == "ft" {
        return Ok(qa_path.to_path_buf());
    }
    let out = a.out.join(format!("rag-ft-train{tag}.jsonl"));
    let mut args: Vec<String> = vec![
        "rag-data".into(),
        "--kb".into(),
        a.kb.clone(),
        "--data".into(),
        qa_path.display().to_string(),
        "--out".into(),
        out.display().to_string(),
        "-k".into(),
        a.k.to_string(),
        "--max-tokens".into(),
        a.max_tokens.to_string(),
        "--missing".into(),
        "refuse".into(),
        "--json".into(),
    ];
    if let Some(m) = &a.model {
        args.extend(["--model".into(), m.clone()]);
    }
    if let Some(s) = &a.style {
        args.extend(["--style".into(), s.clone()]);
    }
    if let Some(e) = &a.embedder {
        args.extend(["--embedder".into(), e.clone()]);
    }
    let st = Command::new(lorag_exe()?)
        .args(&args)
        .stdout(std::process::Stdio::null())
        .status()
        .context("running lorag rag-data")?;
    if !st.success() {
        bail!(
            "`lorag {}` failed ({st}): see its messages above",
            args.join(" ")
        );
    }
    Ok(out)
}

struct Trained {
    adapter: PathBuf,
    minutes: f64,
    loss: Option<Vec<[f64; 2]>>,
}

/// Train (or reuse) an adapter: a run folder is reused when its inputs (data, model, options)
/// hash to the stamp it was made with.
fn train(a: &EvalArgs, data: &Path, out: &Path, steps: usize) -> Result<Trained> {
    let model = lorag_service::resolve_model(a.model.as_deref())?;
    let args = tune_args(a, data, out, steps, &model);
    let stamp = tune_stamp(data, &model, &args)?;
    let stamp_file = out.join("eval-stamp.json");
    let adapter = out.join("adapter.gguf");
    let old: Option<serde_json::Value> = std::fs::read(&stamp_file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let minutes = match old {
        Some(o) if o["stamp"] == stamp.as_str() && adapter.is_file() => {
            eprintln!("lorag eval: reusing {}", adapter.display());
            o["minutes"].as_f64().unwrap_or(0.0)
        }
        _ => {
            let _ = std::fs::remove_dir_all(out);
            eprintln!("lorag eval: training {} ({steps} steps)", out.display());
            let t0 = Instant::now();
            let st = Command::new(lorag_exe()?)
                .args(&args)
                .stdout(std::process::Stdio::null())
                .status()
                .context("running lorag tune")?;
            if !st.success() {
                bail!(
                    "`lorag {}` failed ({st}): see its messages above",
                    args.join(" ")
                );
            }
            let minutes = t0.elapsed().as_secs_f64() / 60.0;
            write_atomic(
                &stamp_file,
                serde_json::json!({"stamp": stamp, "minutes": minutes})
                    .to_string()
                    .as_bytes(),
            )?;
            minutes
        }
    };
    Ok(Trained {
        loss: read_loss(&out.join("metrics.jsonl")),
        adapter,
        minutes,
    })
}

fn adapter_cost(p: &Path, minutes: Option<f64>) -> Cost {
    Cost {
        train_minutes: minutes,
        adapter_bytes: std::fs::metadata(p).ok().map(|m| m.len()),
        update_seconds: None,
    }
}

/// (step, training loss) from a tune run's metrics.jsonl.
fn read_loss(path: &Path) -> Option<Vec<[f64; 2]>> {
    let s = std::fs::read_to_string(path).ok()?;
    let v: Vec<[f64; 2]> = s
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("eval_loss").is_none())
        .filter_map(|v| Some([v["step"].as_f64()?, v["loss"].as_f64()?]))
        .collect();
    (!v.is_empty()).then_some(v)
}

/// Seconds to take one changed document into account with RAG: load, chunk, embed and store a
/// document of the KB's median size (made of the KB's own text) into a scratch KB, which is what
/// `lorag ingest` does for a changed file. Measured once per KB generation (`update.json`).
fn reindex_seconds(a: &EvalArgs, service: &Service, generation: u64) -> Result<f64> {
    let stamp = a.out.join("update.json");
    let id = format!("{}@{generation}", a.kb);
    if let Some(v) = std::fs::read(&stamp)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    {
        if v["kb"] == id.as_str() {
            if let Some(s) = v["seconds"].as_f64() {
                return Ok(s);
            }
        }
    }
    let h = service.kb_handle("kb").expect("loaded");
    let mut docs = h.store.documents()?;
    if docs.is_empty() {
        return Ok(0.0);
    }
    docs.sort_by_key(|d| d.size);
    let target = docs[docs.len() / 2].size.max(200) as usize;
    let total = h.store.stats()?.chunks;
    let (mut text, mut seen, mut next) = (String::new(), 0u64, 1i64);
    while text.len() < target && seen < total && next < 10_000_000 {
        let ids: Vec<i64> = (next..next + 500).collect();
        next += 500;
        for c in h.store.chunks(&ids)? {
            seen += 1;
            text.push_str(&c.text);
            text.push_str("\n\n");
        }
    }
    text.truncate(text.floor_char_boundary(target));
    let scratch = a.out.join("update-probe");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let file = scratch.join("changed.txt");
    std::fs::write(&file, text)?;
    let (_, e) = service.embedder().expect("loaded with the KB");
    let t0 = Instant::now();
    lorag_kb::ingest(
        scratch.join("kb"),
        &[file.display().to_string()],
        e.as_ref(),
        &lorag_kb::IngestOptions::default(),
    )?;
    let secs = t0.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&scratch);
    write_atomic(
        &stamp,
        serde_json::json!({"kb": id, "seconds": secs})
            .to_string()
            .as_bytes(),
    )?;
    Ok(secs)
}

/// A copy of the KB without `sources` (those of the held-out questions), made once per KB
/// generation and set of sources; None when nothing (or everything) would be left out.
fn heldout_kb(
    a: &EvalArgs,
    store: &std::sync::Arc<dyn lorag_kb::Store>,
    sources: &[String],
    generation: u64,
) -> Result<Option<PathBuf>> {
    let all = store.sources()?;
    let gone: Vec<&String> = all
        .iter()
        .filter(|s| sources.iter().any(|g| metrics::source_matches(g, s)))
        .collect();
    if gone.is_empty() || gone.len() == all.len() {
        return Ok(None);
    }
    let mut h = sha2::Sha256::new();
    h.update(format!("{}@{generation}", a.kb));
    for g in &gone {
        h.update([0]);
        h.update(g.as_bytes());
    }
    let dir = a
        .out
        .join(format!("kb-heldout-{}", &hex::encode(h.finalize())[..12]));
    if !dir.join("heldout.done").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        copy_kb(&a.kb, &dir)?;
        let w = lorag_service::open_kb_writer(&dir.to_string_lossy())?;
        for s in &gone {
            w.remove_source(s)?;
        }
        w.flush()?;
        let list: Vec<&str> = gone.iter().map(|s| s.as_str()).collect();
        std::fs::write(dir.join("heldout.done"), list.join("\n"))?;
    }
    Ok(Some(dir))
}

/// Copy a KB into the folder `to`: a folder KB file by file (the read handle never writes, so
/// its database and WAL are consistent while no ingest runs); any other with `lorag kb copy`.
fn copy_kb(from: &str, to: &Path) -> Result<()> {
    let src = Path::new(from);
    if !src.is_dir() {
        return run_lorag(&[
            "kb".into(),
            "copy".into(),
            "--from".into(),
            from.into(),
            "--to".into(),
            to.display().to_string(),
        ]);
    }
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(src).with_context(|| format!("reading {from}"))? {
        let e = e?;
        let name = e.file_name();
        let n = name.to_string_lossy();
        if e.file_type()?.is_file() && n.starts_with("kb.sqlite") && !n.ends_with("-shm") {
            std::fs::copy(e.path(), to.join(&name))
                .with_context(|| format!("copying {}", e.path().display()))?;
        }
    }
    Ok(())
}

fn answer_all(
    service: &Service,
    label: &str,
    route: &Route,
    test: &[QaItem],
    opts: &RagOptions,
    session_opts: &SessionOptions,
) -> Result<Vec<Row>> {
    let adapters = match &route.adapter {
        Some(n) => service
            .adapter_set(&[(n.clone(), 1.0)])
            .map_err(anyhow::Error::msg)?,
        None => Vec::new(),
    };
    let mut session = service.session_with(session_opts, &adapters)?;
    let bar = indicatif::ProgressBar::new(test.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} {eta}")
            .expect("template")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    let mut rows = Vec::new();
    for q in test {
        let ans = service
            .ask(
                &mut session,
                route.rag.then_some("kb"),
                &[],
                &q.question,
                opts,
                &mut |_| {},
            )
            .with_context(|| format!("{label}, question {}", q.id))?;
        let claims: Vec<_> = ans.sentences.iter().filter(|s| !s.filler).collect();
        let supported = claims
            .iter()
            .filter(|s| s.supported && !s.cites.is_empty())
            .count();
        rows.push(Row {
            id: q.id.clone(),
            text: ans.answer.clone(),
            refused: ans.refused,
            cited: ans.citations.iter().map(|c| c.source.clone()).collect(),
            retrieved: ans.sources.iter().map(|c| c.source.clone()).collect(),
            holding: ans
                .sources
                .iter()
                .filter(|c| {
                    q.references()
                        .iter()
                        .any(|r| metrics::contains_answer(&c.text, r))
                })
                .map(|c| c.source.clone())
                .collect(),
            supported_share: (route.rag && !claims.is_empty() && !ans.refused)
                .then(|| supported as f64 / claims.len() as f64),
            ttft_ms: ans.ttft_ms,
            total_ms: ans.total_ms,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(rows)
}

fn similarity(service: &Service, a: &str, b: &str) -> f64 {
    let (_, e) = service.embedder().expect("loaded with the KB");
    match e.embed(&[a, b]) {
        Ok(v) if v.len() == 2 => metrics::cosine(&v[0], &v[1]),
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse() {
        assert_eq!(
            parse_routes(&["rag".into(), "base".into(), "rag".into()]).unwrap(),
            vec!["rag", "base"]
        );
        assert!(parse_routes(&["lora".into()]).is_err());
    }
}
