//! BertEmbedder on the real all-MiniLM-L6-v2, against vectors that sentence-transformers computed
//! from the same folder (tests/data/minilm_reference.json, written by bench/embed_reference.py).

use lorag_core::TokenCounter;
use lorag_embed::{BertEmbedder, EmbedOptions, Embedder, Pooling};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

#[derive(serde::Deserialize)]
struct Reference {
    model: String,
    max_seq_length: usize,
    sentences: Vec<String>,
    token_counts: Vec<usize>,
    input_ids: Vec<Vec<u32>>,
    vectors: Vec<Vec<f32>>,
    cls_vectors: Vec<Vec<f32>>,
}

fn reference() -> &'static Reference {
    static R: OnceLock<Reference> = OnceLock::new();
    R.get_or_init(|| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/minilm_reference.json");
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    })
}

fn model_dir() -> PathBuf {
    lorag_models::test_model("all-minilm-l6-v2")
}

fn with_batch(batch_size: usize) -> BertEmbedder {
    BertEmbedder::load(&model_dir(), &EmbedOptions { batch_size }).unwrap()
}

/// The default embedder (batch 32), loaded once for the tests that do not vary options.
fn embedder() -> &'static BertEmbedder {
    static E: OnceLock<BertEmbedder> = OnceLock::new();
    E.get_or_init(|| with_batch(EmbedOptions::default().batch_size))
}

fn sentences() -> Vec<&'static str> {
    reference().sentences.iter().map(String::as_str).collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

fn assert_matches(ours: &[Vec<f32>], theirs: &[Vec<f32>], what: &str) {
    let r = reference();
    assert_eq!(ours.len(), theirs.len());
    for (i, (o, t)) in ours.iter().zip(theirs).enumerate() {
        let c = cosine(o, t);
        assert!(
            c >= 0.999,
            "{what}: sentence {i} ({:?}...): cosine {c} < 0.999 against sentence-transformers",
            r.sentences[i].chars().take(40).collect::<String>()
        );
    }
}

#[test]
fn matches_sentence_transformers() {
    let r = reference();
    assert_eq!(r.model, "all-minilm-l6-v2");
    let v = embedder().embed(&sentences()).unwrap();
    assert_matches(&v, &r.vectors, "mean pooling");
}

#[test]
fn token_ids_match_the_python_tokenizer() {
    let e = embedder();
    for (s, ids) in reference().sentences.iter().zip(&reference().input_ids) {
        assert_eq!(&e.token_ids(s).unwrap(), ids, "token ids of {s:?}");
    }
}

#[test]
fn counts_tokens_without_special_tokens_or_truncation() {
    let e = embedder();
    for (s, &n) in reference().sentences.iter().zip(&reference().token_counts) {
        assert_eq!(e.count_tokens(s), n, "tokens of {s:?}");
    }
    assert_eq!(e.count_tokens(""), 0);
    assert_eq!(e.count_tokens("hello world"), 2);
    // Longer than max_tokens, and still counted in full.
    assert!(reference().token_counts.iter().any(|&n| n > e.max_tokens()));
}

#[test]
fn identity_dim_and_limits() {
    let e = embedder();
    assert_eq!(e.dim(), 384);
    assert_eq!(e.max_tokens(), 256);
    assert_eq!(e.max_tokens(), reference().max_seq_length);
    assert_eq!(e.pooling(), Pooling::Mean);
    let weights = std::fs::read(model_dir().join("model.safetensors")).unwrap();
    let sha = hex::encode(Sha256::digest(&weights));
    assert_eq!(e.model_id(), format!("all-minilm-l6-v2:384:{}", &sha[..16]));
    let v = e.embed(&["dimension check"]).unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].len(), 384);
}

#[test]
fn vectors_are_unit_length() {
    for v in embedder().embed(&sentences()).unwrap() {
        let n: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-5, "norm {n}");
    }
}

#[test]
fn empty_input_gives_empty_output() {
    assert!(embedder().embed(&[]).unwrap().is_empty());
}

#[test]
fn deterministic() {
    let s = sentences();
    let a = embedder().embed(&s).unwrap();
    let b = embedder().embed(&s).unwrap();
    assert_eq!(a, b, "two calls on the same texts differ");
}

#[test]
fn batch_size_does_not_change_vectors_and_order_is_kept() {
    let s = sentences();
    let base = embedder().embed(&s).unwrap();
    for bs in [1, 7] {
        let v = with_batch(bs).embed(&s).unwrap();
        let d = max_abs_diff(&v, &base);
        assert!(
            d <= 1e-5,
            "batch size {bs}: max difference {d} from batch size 32"
        );
    }
    // Reversed input gives reversed output: no vector lands at another text's index.
    let rev: Vec<&str> = s.iter().rev().copied().collect();
    let mut v = with_batch(7).embed(&rev).unwrap();
    v.reverse();
    assert!(max_abs_diff(&v, &base) <= 1e-5);
    // And each vector is closest to its own reference, not a neighbour's.
    for (i, vi) in v.iter().enumerate() {
        let best = reference()
            .vectors
            .iter()
            .enumerate()
            .max_by(|a, b| cosine(vi, a.1).total_cmp(&cosine(vi, b.1)))
            .unwrap()
            .0;
        assert_eq!(best, i, "vector {i} is closest to reference {best}");
    }
}

#[test]
fn padding_next_to_a_long_text_changes_nothing() {
    let e = embedder();
    let short = "What is a building permit?";
    let long = reference().sentences.last().unwrap().as_str();
    let alone = e.embed(&[short]).unwrap();
    let padded = e.embed(&[long, short]).unwrap();
    assert!(max_abs_diff(&alone, &padded[1..]) <= 1e-5);
}

#[test]
fn long_text_is_truncated_to_max_tokens() {
    let e = embedder();
    let long = reference().sentences.last().unwrap().clone();
    assert!(e.count_tokens(&long) > 2 * e.max_tokens());
    assert_eq!(e.token_ids(&long).unwrap().len(), e.max_tokens());
    // Whatever follows the first max_tokens tokens does not reach the model.
    let more = format!("{long} Completely unrelated words about cooking pasta and the weather.");
    let v = e.embed(&[long.as_str(), more.as_str()]).unwrap();
    assert!(max_abs_diff(&v[..1], &v[1..]) <= 1e-6);
    // A text of one-token words: its first max_tokens - 2 words alone give the same ids and the
    // same vector as the whole text.
    let words = [
        "house", "wall", "roof", "door", "window", "floor", "permit", "site", "law",
    ];
    let all: Vec<&str> = (0..3 * e.max_tokens())
        .map(|i| words[i % words.len()])
        .collect();
    let whole = all.join(" ");
    let head = all[..e.max_tokens() - 2].join(" ");
    assert_eq!(e.count_tokens(&whole), all.len());
    assert_eq!(e.token_ids(&whole).unwrap(), e.token_ids(&head).unwrap());
    let v = e.embed(&[whole.as_str(), head.as_str()]).unwrap();
    assert!(max_abs_diff(&v[..1], &v[1..]) <= 1e-6);
    // One word fewer is a different input.
    let shorter = all[..e.max_tokens() - 3].join(" ");
    let w = e.embed(&[shorter.as_str()]).unwrap();
    assert!(max_abs_diff(&w, &v[..1]) > 1e-6);
}

#[test]
fn cls_pooling_from_the_pooling_config() {
    // The same folder, with 1_Pooling/config.json asking for CLS pooling.
    let tmp = tempfile::tempdir().unwrap();
    let src = model_dir();
    for f in [
        "config.json",
        "tokenizer.json",
        "sentence_bert_config.json",
        "modules.json",
    ] {
        std::fs::copy(src.join(f), tmp.path().join(f)).unwrap();
    }
    link_or_copy(
        &src.join("model.safetensors"),
        &tmp.path().join("model.safetensors"),
    );
    std::fs::create_dir(tmp.path().join("1_Pooling")).unwrap();
    std::fs::write(
        tmp.path().join("1_Pooling/config.json"),
        r#"{"word_embedding_dimension": 384, "pooling_mode_cls_token": true,
            "pooling_mode_mean_tokens": false, "pooling_mode_max_tokens": false,
            "pooling_mode_mean_sqrt_len_tokens": false}"#,
    )
    .unwrap();
    let e = BertEmbedder::load(tmp.path(), &EmbedOptions::default()).unwrap();
    assert_eq!(e.pooling(), Pooling::Cls);
    let v = e.embed(&sentences()).unwrap();
    assert_matches(&v, &reference().cls_vectors, "cls pooling");
    // Not the mean vectors under another name.
    assert!(cosine(&v[3], &reference().vectors[3]) < 0.99);
}

fn link_or_copy(from: &Path, to: &Path) {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).unwrap();
    }
}
