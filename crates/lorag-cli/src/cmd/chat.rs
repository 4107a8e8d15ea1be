//! `lorag chat`: one prompt, or an interactive multi-turn session.

use anyhow::{Context, Result};
use clap::Args;
use lorag_llm::{Message, SamplingParams, Session, SessionOptions};
use std::io::{BufRead, IsTerminal, Write};

#[derive(Args, Debug)]
pub struct ChatArgs {
    /// Model layers to offload to a GPU (default: all when built with CUDA and a GPU is present, else 0)
    #[arg(long = "gpu-layers")]
    pub gpu_layers: Option<u32>,
    /// The prompt; without it, an interactive session reads turns from stdin
    pub prompt: Option<String>,
    /// A model path (.gguf) or catalogue name (default: smollm2-135m-instruct)
    #[arg(long, short)]
    pub model: Option<String>,
    /// System prompt
    #[arg(long)]
    pub system: Option<String>,
    /// GGUF LoRA adapter, optionally with a scale (PATH or PATH:SCALE); repeatable
    #[arg(long = "lora", value_name = "PATH[:SCALE]")]
    pub lora: Vec<String>,
    /// 0 = greedy
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// 0 disables
    #[arg(long, default_value_t = 40)]
    pub top_k: i32,
    /// 0 disables
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// 1 disables
    #[arg(long, default_value_t = 1.1)]
    pub repeat_penalty: f32,
    #[arg(long)]
    pub seed: Option<u32>,
    #[arg(long, default_value_t = 512)]
    pub max_tokens: usize,
    /// Stop before this string; repeatable
    #[arg(long)]
    pub stop: Vec<String>,
    /// Context size in tokens (0: the model's, capped at 4096)
    #[arg(long = "ctx", default_value_t = 0)]
    pub n_ctx: u32,
    #[arg(long)]
    pub threads: Option<i32>,
    /// Chat template name (chatml, phi3, llama3, gemma, ...) overriding the model's own
    #[arg(long)]
    pub chat_template: Option<String>,
    /// Print one JSON object (one per turn in an interactive session): text, finish_reason, token counts and speeds
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ChatArgs) -> Result<()> {
    let params = SamplingParams {
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        min_p: args.min_p,
        repeat_penalty: args.repeat_penalty,
        repeat_last_n: 64,
        seed: args.seed,
        max_tokens: args.max_tokens,
        stop: args.stop.clone(),
    };
    params.validate()?;
    let service = lorag_service::Service::load(&lorag_service::Config {
        model: args.model.clone(),
        loras: args
            .lora
            .iter()
            .map(|s| lorag_service::LoraSpec::parse(s))
            .collect::<Result<_>>()?,
        gpu_layers: args.gpu_layers,
        ..Default::default()
    })?;
    let mut session = service.session(&SessionOptions {
        n_ctx: args.n_ctx,
        n_threads: args.threads.unwrap_or_else(lorag_llm::default_threads),
        chat_template: args.chat_template.clone(),
        ..SessionOptions::default()
    })?;

    let mut history = Vec::new();
    if let Some(s) = &args.system {
        history.push(Message::system(s));
    }
    match &args.prompt {
        Some(p) => one_shot(&mut session, history, p, &params, args.json),
        None => interactive(&mut session, history, &params, &service, args.json),
    }
}

fn one_shot(
    session: &mut Session,
    mut history: Vec<Message>,
    prompt: &str,
    params: &SamplingParams,
    json: bool,
) -> Result<()> {
    history.push(Message::user(prompt));
    let rendered = session.render(&history)?;
    let stdout = std::io::stdout();
    let g = if json {
        session.generate(&rendered, params, &mut |_| {})?
    } else {
        let mut out = stdout.lock();
        let g = session.generate(&rendered, params, &mut |t| {
            let _ = out.write_all(t.as_bytes());
            let _ = out.flush();
        })?;
        let _ = writeln!(out);
        g
    };
    if json {
        println!("{}", to_json(&g));
    }
    Ok(())
}

/// The `--json` object of one generation.
fn to_json(g: &lorag_llm::Generation) -> serde_json::Value {
    serde_json::json!({
        "text": g.text,
        "finish_reason": g.finish_reason.as_str(),
        "prompt_tokens": g.prompt_tokens,
        "completion_tokens": g.completion_tokens,
        "prompt_tok_per_s": round2(g.prompt_tok_per_s),
        "decode_tok_per_s": round2(g.decode_tok_per_s),
        "cached_tokens": g.cached_tokens,
        "prompt_ms": round2(g.prompt_ms),
        "decode_ms": round2(g.decode_ms),
    })
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn interactive(
    session: &mut Session,
    mut history: Vec<Message>,
    params: &SamplingParams,
    service: &lorag_service::Service,
    json: bool,
) -> Result<()> {
    let tty = std::io::stdin().is_terminal();
    let system_turns = history.len();
    if tty {
        eprintln!(
            "lorag chat: {} ({}). Type a message; /reset clears the conversation, /exit or Ctrl-D ends.",
            service.engine().path().display(),
            service.engine().architecture()
        );
        let adapters = service.all_adapters();
        if !adapters.is_empty() {
            eprintln!(
                "adapters: {}",
                adapters
                    .iter()
                    .map(|(a, s)| format!("{}:{s}", a.path.display()))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if tty {
            eprint!("> ");
            let _ = std::io::stderr().flush();
        }
        let Some(line) = lines.next() else { break };
        let line = line.context("reading stdin")?;
        let line = line.trim();
        match line {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                // A new conversation; the KV cache keeps the system prompt's entries for reuse.
                history.truncate(system_turns);
                continue;
            }
            _ => {}
        }
        history.push(Message::user(line));
        // Drop the oldest turns (never the system prompt) until the conversation fits.
        let rendered = loop {
            let r = session.render(&history)?;
            let n = session.tokenize(&r).len();
            if n + params.max_tokens.min(256) <= session.n_ctx()
                || history.len() <= system_turns + 1
            {
                break r;
            }
            history.drain(system_turns..system_turns + 2.min(history.len() - system_turns - 1));
        };
        let mut out = std::io::stdout().lock();
        let g = session.generate(&rendered, params, &mut |t| {
            if !json {
                let _ = out.write_all(t.as_bytes());
                let _ = out.flush();
            }
        });
        match &g {
            // With --json: one object per turn (JSON lines).
            Ok(g) if json => {
                let _ = writeln!(out, "{}", to_json(g));
            }
            _ => {
                let _ = writeln!(out);
            }
        }
        let _ = out.flush();
        drop(out);
        match g {
            Ok(g) => {
                history.push(Message::assistant(g.text));
                if tty {
                    eprintln!(
                        "[{} tokens, {:.1} tok/s, {} prompt tokens reused, {}]",
                        g.completion_tokens,
                        g.decode_tok_per_s,
                        g.cached_tokens,
                        g.finish_reason.as_str()
                    );
                }
            }
            Err(e) => {
                // One bad turn does not end the session.
                history.pop();
                eprintln!("error: {e}");
            }
        }
    }
    Ok(())
}
