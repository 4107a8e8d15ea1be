//! `lorag ask`: grounded answers with checked citations (or, without --kb, the model alone).

use anyhow::{Context, Result};
use clap::Args;
use lorag_llm::{Message, SamplingParams, SessionOptions};
use lorag_rag::{Answer, RagOptions};
use std::io::{BufRead, IsTerminal, Write};

#[derive(Args, Debug)]
pub struct AskArgs {
    /// Model layers to offload to a GPU (default: all when built with CUDA and a GPU is present, else 0)
    #[arg(long = "gpu-layers")]
    pub gpu_layers: Option<u32>,
    /// The question; without it, an interactive session reads questions from stdin (follow-ups
    /// are rewritten into standalone queries)
    pub question: Option<String>,
    /// Knowledge base; without it the model answers alone (no retrieval), for comparison
    #[arg(long)]
    pub kb: Option<String>,
    /// A model path (.gguf) or catalogue name (default: smollm2-135m-instruct)
    #[arg(long, short)]
    pub model: Option<String>,
    /// GGUF LoRA adapter, optionally with a scale (PATH or PATH:SCALE); repeatable
    #[arg(long = "lora", value_name = "PATH[:SCALE]")]
    pub lora: Vec<String>,
    /// Do not use the grounded-answer adapter shipped for the default model (used with --kb
    /// when no --lora is given)
    #[arg(long)]
    pub no_default_adapter: bool,
    #[command(flatten)]
    pub retrieval: super::RetrievalArgs,
    /// Tokens kept for the answer
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// 0 = greedy (default)
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long)]
    pub seed: Option<u32>,
    /// Refuse when no retrieved sentence reaches this evidence score: the mean of its cosine
    /// similarity to the question and the share of the question's content words it contains
    #[arg(long, default_value_t = lorag_rag::DEFAULT_REFUSE_BELOW)]
    pub refuse_below: f32,
    /// Similarity a sentence needs with its cited source to count as supported
    #[arg(long, default_value_t = lorag_rag::DEFAULT_SUPPORT_THRESHOLD)]
    pub support_threshold: f32,
    /// An instruction added to the question, e.g. "Answer with a short phrase."
    #[arg(long)]
    pub style: Option<String>,
    /// Answer with the best evidence sentence of the sources, verbatim and cited (no generation)
    #[arg(long)]
    pub quote: bool,
    #[arg(long = "ctx", default_value_t = 0)]
    pub n_ctx: u32,
    #[arg(long)]
    pub threads: Option<i32>,
    #[arg(long)]
    pub embedder: Option<String>,
    /// Print one JSON object (one per question in an interactive session)
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: AskArgs) -> Result<()> {
    let (mode, filters) = super::parse_retrieval(&a.retrieval.mode, &a.retrieval.filter)?;
    let mut sampling = if a.temperature > 0.0 {
        SamplingParams {
            temperature: a.temperature,
            seed: a.seed,
            ..SamplingParams::default()
        }
    } else {
        SamplingParams::greedy(a.max_tokens)
    };
    sampling.max_tokens = a.max_tokens;
    sampling.validate()?;
    let opts = RagOptions {
        k: a.retrieval.k,
        mode,
        filters,
        answer_tokens: a.max_tokens,
        refuse_below: a.refuse_below,
        support_threshold: a.support_threshold,
        sampling,
        rewrite: true,
        style: a.style.clone(),
        quote: a.quote,
    };
    // The service opens the KB and checks the adapters before the model loads.
    let kb_spec = a.kb.as_ref().map(|d| lorag_service::KbSpec::unnamed(d));
    let service = lorag_service::Service::load(&lorag_service::Config {
        model: a.model.clone(),
        loras: a
            .lora
            .iter()
            .map(|s| lorag_service::LoraSpec::parse(s))
            .collect::<Result<_>>()?,
        kbs: kb_spec.iter().cloned().collect(),
        embedder: a.embedder.clone(),
        gpu_layers: a.gpu_layers,
        // Grounded answers use the shipped adapter unless the user chose adapters of their own.
        default_adapter: a.kb.is_some() && a.lora.is_empty() && !a.no_default_adapter,
        ..Default::default()
    })?;
    let adapters = if a.lora.is_empty() {
        service.grounded_adapters()
    } else {
        service.all_adapters()
    };
    let adapter = service.grounded_adapter_name().map(str::to_string);
    let mut session = service.session_with(
        &SessionOptions {
            n_ctx: a.n_ctx,
            n_threads: a.threads.unwrap_or_else(lorag_llm::default_threads),
            ..SessionOptions::default()
        },
        &adapters,
    )?;
    let kb_name = kb_spec.as_ref().map(|k| k.name.as_str());

    let mut history: Vec<Message> = Vec::new();
    let questions: Box<dyn Iterator<Item = std::io::Result<String>>> = match &a.question {
        Some(q) => Box::new(std::iter::once(Ok(q.clone()))),
        None => {
            if std::io::stdin().is_terminal() {
                eprintln!("lorag ask: type a question; follow-ups use the conversation. /reset starts over, Ctrl-D ends.");
            }
            Box::new(std::io::stdin().lock().lines())
        }
    };
    for q in questions {
        let q = q.context("reading stdin")?;
        let q = q.trim();
        if q.is_empty() {
            continue;
        }
        if q == "/reset" {
            history.clear();
            continue;
        }
        if q == "/exit" {
            break;
        }
        let mut out = std::io::stdout().lock();
        let json = a.json;
        let result = service.ask(&mut session, kb_name, &history, q, &opts, &mut |t| {
            if !json {
                let _ = out.write_all(t.as_bytes());
                let _ = out.flush();
            }
        });
        drop(out);
        let ans = match result {
            Ok(ans) => ans,
            Err(e) if a.question.is_none() => {
                eprintln!("error: {e}");
                continue;
            }
            Err(e) => return Err(e),
        };
        if json {
            println!("{}", to_json(&ans, adapter.as_deref()));
        } else {
            print_report(&ans, kb_name.is_some());
        }
        history.push(Message::user(q));
        history.push(Message::assistant(ans.answer.clone()));
    }
    Ok(())
}

fn to_json(a: &Answer, default_adapter: Option<&str>) -> serde_json::Value {
    let r = |x: f64| (x * 100.0).round() / 100.0;
    serde_json::json!({
        "answer": a.answer,
        "citations": a.citations,
        "unsupported": a.unsupported,
        "refused": a.refused,
        "retrieval_ms": r(a.retrieval_ms),
        "ttft_ms": r(a.ttft_ms),
        "total_ms": r(a.total_ms),
        "query": a.query,
        "invalid_citations": a.invalid_citations,
        "sources": a.sources,
        // Per sentence: its final citations, its support, and whether a citation was moved to
        // another source (`moved_from`: the model's), added (`auto_cited`) or the sentence is
        // filler.
        "sentences": a.sentences,
        "prompt_tokens": a.prompt_tokens,
        "completion_tokens": a.completion_tokens,
        "best_similarity": a.best_similarity,
        "evidence": a.evidence,
        // The shipped grounded adapter that answered (null: the model as given, or --lora's).
        "default_adapter": default_adapter,
    })
}

fn print_report(a: &Answer, with_kb: bool) {
    println!();
    if !with_kb {
        return;
    }
    if a.refused {
        return;
    }
    println!("\nAnswer with checked citations:\n  {}", a.answer);
    if !a.citations.is_empty() {
        println!("Sources:");
        for c in &a.citations {
            let mut loc = c.source.clone();
            if let Some(t) = &c.title {
                loc.push_str(&format!(" \"{t}\""));
            }
            if let Some(p) = c.page {
                loc.push_str(&format!(", page {p}"));
            }
            if let Some(s) = &c.section {
                loc.push_str(&format!(", § {s}"));
            }
            println!("  [{}] {loc} (bytes {}..{})", c.n, c.start, c.end);
        }
    }
    if !a.unsupported.is_empty() {
        println!("Not supported by the sources:");
        for s in &a.unsupported {
            println!("  - {s}");
        }
    }
    if !a.invalid_citations.is_empty() {
        println!(
            "Removed citations to sources that were not given: {:?}",
            a.invalid_citations
        );
    }
    println!(
        "[retrieval {:.0} ms, first token {:.0} ms, total {:.0} ms]",
        a.retrieval_ms, a.ttft_ms, a.total_ms
    );
}
