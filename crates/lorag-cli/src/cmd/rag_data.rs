//! `lorag rag-data`: RAG-aware fine-tuning data. Each Q&A conversation becomes the conversation
//! `lorag ask` would have with the model (system prompt, numbered sources retrieved from the KB,
//! the question) with the reference answer, cited, as the reply. Train on the output with
//! `lorag tune`, then ask with `--lora`.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use lorag_llm::{Engine, LoadOptions, Message, Role, SessionOptions};
use lorag_rag::{Kb, RagOptions};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Missing {
    /// Leave the conversation out
    Skip,
    /// Keep it, with the refusal as the reply (teaches the model to refuse when the sources lack the answer)
    Refuse,
}

#[derive(Args, Debug)]
pub struct RagDataArgs {
    /// Model layers to offload to a GPU (default: all when built with CUDA and a GPU is present, else 0)
    #[arg(long = "gpu-layers")]
    pub gpu_layers: Option<u32>,
    /// Knowledge base to retrieve the sources from: a folder or
    /// postgres://USER@HOST:PORT/DB?schema=NAME
    #[arg(long)]
    pub kb: String,
    /// Q&A conversations, JSONL (OpenAI "messages", Alpaca or ShareGPT, as `lorag tune` reads):
    /// the last user turn is the question, the assistant turn after it the reference answer
    #[arg(long, value_name = "FILE.jsonl")]
    pub data: PathBuf,
    /// Output JSONL of "messages" conversations for `lorag tune --data`
    #[arg(long, value_name = "FILE.jsonl")]
    pub out: PathBuf,
    /// The model that will be tuned (its tokenizer fits the sources into its context as `ask` does)
    #[arg(long, short)]
    pub model: Option<String>,
    #[command(flatten)]
    pub retrieval: super::RetrievalArgs,
    /// Tokens kept for the answer (as `lorag ask --max-tokens`)
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// The instruction `lorag ask --style` will add to the question
    #[arg(long)]
    pub style: Option<String>,
    /// When no retrieved source supports the reference answer
    #[arg(long, value_enum, default_value = "skip")]
    pub missing: Missing,
    /// Similarity an answer sentence needs with a source to cite it
    #[arg(long, default_value_t = lorag_rag::DEFAULT_SUPPORT_THRESHOLD)]
    pub support_threshold: f32,
    /// Count and skip malformed lines instead of stopping at the first
    #[arg(long)]
    pub skip_bad: bool,
    #[arg(long = "ctx", default_value_t = 0)]
    pub n_ctx: u32,
    #[arg(long)]
    pub embedder: Option<String>,
    /// Print one JSON summary object on stdout
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: RagDataArgs) -> Result<()> {
    let (mode, filters) = super::parse_retrieval(&a.retrieval.mode, &a.retrieval.filter)?;
    let mut stats = lorag_train::data::DataStats::default();
    let convs = lorag_train::data::read_jsonl(&a.data, a.skip_bad, &mut stats)?;
    let embedder = super::load_embedder(a.embedder.as_deref())?;
    let store = lorag_kb::open_for_search(&a.kb, &embedder)?;
    let kb = Kb {
        store: &store,
        embedder: &embedder,
    };
    let model_path = super::resolve_model(a.model.as_deref())?;
    let engine = Engine::load(
        &model_path,
        &LoadOptions {
            n_gpu_layers: lorag_llm::gpu_layers(a.gpu_layers),
            ..LoadOptions::default()
        },
    )?;
    let session = engine.session(&SessionOptions {
        n_ctx: a.n_ctx,
        ..SessionOptions::default()
    })?;
    let opts = RagOptions {
        k: a.retrieval.k,
        mode,
        filters,
        answer_tokens: a.max_tokens,
        support_threshold: a.support_threshold,
        style: a.style.clone(),
        ..RagOptions::default()
    };

    let partial = a.out.with_extension("jsonl.partial");
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&partial)
            .with_context(|| format!("creating {}", partial.display()))?,
    );
    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(convs.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg} (eta {eta})",
            )
            .expect("valid template"),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let (mut cited, mut refusals, mut skipped, mut sources) = (0usize, 0usize, 0usize, 0usize);
    for (i, conv) in convs.iter().enumerate() {
        // The last user turn with an assistant reply after it.
        let Some(q) = (0..conv.len().saturating_sub(1))
            .rev()
            .find(|&j| conv[j].role == Role::User && conv[j + 1].role == Role::Assistant)
        else {
            skipped += 1;
            bar.inc(1);
            continue;
        };
        let history: Vec<Message> = conv[..q]
            .iter()
            .filter(|m| m.role != Role::System)
            .cloned()
            .collect();
        let t = lorag_rag::training_conversation(
            &session,
            &kb,
            &history,
            &conv[q].content,
            &conv[q + 1].content,
            &opts,
        )
        .with_context(|| format!("{}: conversation {}", a.data.display(), i + 1))?;
        let reply = match (t.reply, a.missing) {
            (Some(r), _) => {
                cited += 1;
                r
            }
            (None, Missing::Refuse) => {
                refusals += 1;
                lorag_rag::REFUSAL.to_string()
            }
            (None, Missing::Skip) => {
                skipped += 1;
                bar.inc(1);
                continue;
            }
        };
        sources += t.sources;
        let mut msgs = t.messages;
        msgs.push(Message::assistant(reply));
        let line = serde_json::json!({ "messages": msgs });
        writeln!(out, "{line}").with_context(|| format!("writing {}", partial.display()))?;
        bar.set_message(format!("{cited} cited, {skipped} skipped"));
        bar.inc(1);
    }
    bar.finish_and_clear();
    out.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("writing {}", partial.display()))?;
    let written = cited + refusals;
    if written == 0 {
        let _ = std::fs::remove_file(&partial);
        anyhow::bail!(
            "{}: no conversation written: for none of the {} questions did the retrieved sources support the reference answer (is --kb the knowledge base these Q&A are about?)",
            a.data.display(),
            convs.len()
        );
    }
    std::fs::rename(&partial, &a.out)
        .with_context(|| format!("renaming {} to {}", partial.display(), a.out.display()))?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "conversations": convs.len(),
                "written": written,
                "cited": cited,
                "refusals": refusals,
                "skipped": skipped,
                "skipped_bad": stats.skipped_bad,
                "mean_sources": sources as f64 / written as f64,
                "out": a.out,
            })
        );
    } else {
        eprintln!(
            "{}: {written} of {} conversations ({cited} with cited answers, {refusals} refusals; {skipped} skipped: the retrieved sources do not support the answer; {} malformed lines skipped)",
            a.out.display(),
            convs.len(),
            stats.skipped_bad
        );
    }
    Ok(())
}
