//! Reading a sentence-transformers model folder: which files hold what, and every setting we
//! take from them. Nothing here runs the model.

use crate::EmbedError;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean of the token vectors under the attention mask (special tokens included, padding not).
    Mean,
    /// The vector of the first token (`[CLS]`).
    Cls,
}

/// Everything [`crate::BertEmbedder`] needs to know about a folder before loading weights.
#[derive(Debug)]
pub(crate) struct ModelFolder {
    pub name: String,
    pub config_path: PathBuf,
    pub tokenizer_path: PathBuf,
    pub weights_path: PathBuf,
    pub config: candle_transformers::models::bert::Config,
    pub pooling: Pooling,
    pub max_tokens: usize,
    pub lowercase: bool,
}

/// The part of a Hugging Face `config.json` that a BERT needs. Fields that HF's `BertConfig`
/// defaults are optional here too; the shape of the network is required.
#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default = "default_max_pos")]
    max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    type_vocab_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default)]
    pad_token_id: Option<usize>,
    #[serde(default)]
    position_embedding_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_max_pos() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

#[derive(Deserialize)]
struct SbertConfig {
    max_seq_length: Option<usize>,
    #[serde(default)]
    do_lower_case: bool,
}

#[derive(Deserialize)]
struct Module {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(alias = "embedding_dimension")]
    word_embedding_dimension: Option<usize>,
    /// Newer sentence-transformers write the mode as one string as well.
    pooling_mode: Option<String>,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

const FOLDER_HINT: &str =
    "a sentence-transformers model folder needs config.json, tokenizer.json and model.safetensors";

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EmbedError + '_ {
    move |source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            EmbedError::MissingFile {
                path: path.to_path_buf(),
                hint: FOLDER_HINT,
            }
        } else {
            EmbedError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

fn config_err(path: &Path, msg: impl Into<String>) -> EmbedError {
    EmbedError::Config {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, EmbedError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    serde_json::from_str(&text).map_err(|e| config_err(path, e.to_string()))
}

/// Like [`read_json`], but a missing file is `None`.
fn read_json_opt<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, EmbedError> {
    if path.exists() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

impl ModelFolder {
    pub(crate) fn read(dir: &Path) -> Result<Self, EmbedError> {
        if !dir.is_dir() {
            return Err(EmbedError::NotAFolder(dir.to_path_buf()));
        }
        let name = std::fs::canonicalize(dir)
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".into())
            .to_lowercase();

        // modules.json says where the transformer lives and what follows it. Without it,
        // sentence-transformers takes the folder as a plain transformer plus mean pooling.
        let modules_path = dir.join("modules.json");
        let modules: Vec<Module> = read_json_opt(&modules_path)?.unwrap_or_default();
        let mut transformer_dir = dir.to_path_buf();
        let mut pooling_dir = None;
        for m in &modules {
            match m.kind.rsplit('.').next().unwrap_or_default() {
                "Transformer" => transformer_dir = dir.join(&m.path),
                "Pooling" => pooling_dir = Some(dir.join(&m.path)),
                "Normalize" => {}
                other => {
                    return Err(config_err(
                        &modules_path,
                        format!(
                            "module {other:?} (type {:?}) is not supported; lorag-embed runs Transformer, Pooling and Normalize only",
                            m.kind
                        ),
                    ))
                }
            }
        }
        if modules.is_empty() && dir.join("1_Pooling").is_dir() {
            pooling_dir = Some(dir.join("1_Pooling"));
        }

        let config_path = transformer_dir.join("config.json");
        let raw: RawConfig = read_json(&config_path)?;
        let config = bert_config(&config_path, raw)?;

        let tokenizer_path = transformer_dir.join("tokenizer.json");
        if !tokenizer_path.is_file() {
            return Err(EmbedError::MissingFile {
                path: tokenizer_path,
                hint: FOLDER_HINT,
            });
        }
        let weights_path = transformer_dir.join("model.safetensors");
        if !weights_path.is_file() {
            let hint = if transformer_dir.join("pytorch_model.bin").exists() {
                "only safetensors weights are supported (pytorch_model.bin is not)"
            } else {
                FOLDER_HINT
            };
            return Err(EmbedError::MissingFile {
                path: weights_path,
                hint,
            });
        }

        let sbert_path = transformer_dir.join("sentence_bert_config.json");
        let sbert: Option<SbertConfig> = read_json_opt(&sbert_path)?;
        let max_pos = config.max_position_embeddings;
        let max_tokens = match sbert.as_ref().and_then(|s| s.max_seq_length) {
            Some(0) => return Err(config_err(&sbert_path, "max_seq_length is 0")),
            Some(n) => n.min(max_pos),
            None => max_pos.min(512),
        };
        let lowercase = sbert.is_some_and(|s| s.do_lower_case);

        let pooling = match pooling_dir {
            Some(p) => read_pooling(&p.join("config.json"), config.hidden_size)?,
            None => Pooling::Mean,
        };

        Ok(Self {
            name,
            config_path,
            tokenizer_path,
            weights_path,
            config,
            pooling,
            max_tokens,
            lowercase,
        })
    }
}

fn bert_config(
    path: &Path,
    raw: RawConfig,
) -> Result<candle_transformers::models::bert::Config, EmbedError> {
    use candle_transformers::models::bert::{Config, HiddenAct, PositionEmbeddingType};
    if let Some(t) = raw.model_type.as_deref() {
        if t != "bert" {
            return Err(config_err(
                path,
                format!("model_type {t:?} is not supported; lorag-embed runs BERT models only"),
            ));
        }
    }
    if let Some(p) = raw.position_embedding_type.as_deref() {
        if p != "absolute" {
            return Err(config_err(
                path,
                format!("position_embedding_type {p:?} is not supported (only \"absolute\")"),
            ));
        }
    }
    let hidden_act = match raw.hidden_act.as_str() {
        "gelu" => HiddenAct::Gelu,
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => HiddenAct::GeluApproximate,
        "relu" => HiddenAct::Relu,
        other => {
            return Err(config_err(
                path,
                format!("hidden_act {other:?} is not supported (gelu, gelu_new, relu)"),
            ))
        }
    };
    for (field, v) in [
        ("vocab_size", raw.vocab_size),
        ("hidden_size", raw.hidden_size),
        ("num_hidden_layers", raw.num_hidden_layers),
        ("num_attention_heads", raw.num_attention_heads),
        ("intermediate_size", raw.intermediate_size),
        ("max_position_embeddings", raw.max_position_embeddings),
        ("type_vocab_size", raw.type_vocab_size),
    ] {
        if v == 0 {
            return Err(config_err(path, format!("field {field} is 0")));
        }
    }
    if !raw.hidden_size.is_multiple_of(raw.num_attention_heads) {
        return Err(config_err(
            path,
            format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                raw.hidden_size, raw.num_attention_heads
            ),
        ));
    }
    Ok(Config {
        vocab_size: raw.vocab_size,
        hidden_size: raw.hidden_size,
        num_hidden_layers: raw.num_hidden_layers,
        num_attention_heads: raw.num_attention_heads,
        intermediate_size: raw.intermediate_size,
        hidden_act,
        hidden_dropout_prob: 0.0,
        max_position_embeddings: raw.max_position_embeddings,
        type_vocab_size: raw.type_vocab_size,
        initializer_range: 0.02,
        layer_norm_eps: raw.layer_norm_eps,
        pad_token_id: raw.pad_token_id.unwrap_or(0),
        position_embedding_type: PositionEmbeddingType::Absolute,
        use_cache: false,
        classifier_dropout: None,
        model_type: Some("bert".into()),
    })
}

fn read_pooling(path: &Path, hidden: usize) -> Result<Pooling, EmbedError> {
    let p: PoolingConfig = read_json(path)?;
    if let Some(d) = p.word_embedding_dimension {
        if d != hidden {
            return Err(config_err(
                path,
                format!(
                    "word_embedding_dimension {d} differs from the model's hidden_size {hidden}"
                ),
            ));
        }
    }
    let modes: Vec<&str> = if let Some(m) = p.pooling_mode.as_deref() {
        vec![m]
    } else {
        [
            ("cls", p.pooling_mode_cls_token),
            ("mean", p.pooling_mode_mean_tokens),
            ("max", p.pooling_mode_max_tokens),
            ("mean_sqrt_len_tokens", p.pooling_mode_mean_sqrt_len_tokens),
            ("weightedmean", p.pooling_mode_weightedmean_tokens),
            ("lasttoken", p.pooling_mode_lasttoken),
        ]
        .into_iter()
        .filter(|(_, on)| *on)
        .map(|(m, _)| m)
        .collect()
    };
    match modes.as_slice() {
        ["mean"] => Ok(Pooling::Mean),
        ["cls"] => Ok(Pooling::Cls),
        [] => Err(config_err(path, "no pooling mode is set")),
        _ => Err(config_err(
            path,
            format!(
                "pooling {} is not supported (only one of mean, cls)",
                modes.join(" + ")
            ),
        )),
    }
}
