//! [`BertEmbedder`]: candle-transformers' `BertModel`, a `tokenizers` tokenizer, pooling and L2
//! normalisation, in length-sorted batches.

use crate::encoder::Encoder;
use crate::folder::{io_err, ModelFolder, Pooling};
use crate::{EmbedError, EmbedOptions, Embedder};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use sha2::{Digest, Sha256};
use std::path::Path;
use tokenizers::{
    Encoding, PostProcessor, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

/// A BERT-family sentence-transformers model (e.g. all-MiniLM-L6-v2) on candle.
pub struct BertEmbedder {
    model: Encoder,
    device: Device,
    /// Truncates to `max_tokens`, never pads: each batch is padded here to its longest text.
    tokenizer: Tokenizer,
    /// Neither truncates nor pads: counts the whole text.
    counter: Tokenizer,
    pooling: Pooling,
    lowercase: bool,
    pad_id: u32,
    dim: usize,
    max_tokens: usize,
    batch_size: usize,
    model_id: String,
}

impl std::fmt::Debug for BertEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertEmbedder")
            .field("model_id", &self.model_id)
            .field("pooling", &self.pooling)
            .field("max_tokens", &self.max_tokens)
            .field("batch_size", &self.batch_size)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl BertEmbedder {
    /// Load a sentence-transformers folder: `config.json`, `tokenizer.json`, `model.safetensors`,
    /// and, when present, `modules.json`, `sentence_bert_config.json` and the pooling config.
    pub fn load(dir: &Path, opts: &EmbedOptions) -> Result<Self, EmbedError> {
        let folder = ModelFolder::read(dir)?;
        let tok_err = |msg: String| EmbedError::Tokenizer {
            path: folder.tokenizer_path.clone(),
            msg,
        };

        let mut counter =
            Tokenizer::from_file(&folder.tokenizer_path).map_err(|e| tok_err(e.to_string()))?;
        counter.with_padding(None);
        counter
            .with_truncation(None)
            .map_err(|e| tok_err(e.to_string()))?;
        let added = counter
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(false));
        if folder.max_tokens <= added {
            return Err(EmbedError::Config {
                path: folder.config_path.clone(),
                msg: format!(
                    "max_seq_length {} leaves no room for text after {added} special tokens",
                    folder.max_tokens
                ),
            });
        }
        let mut tokenizer = counter.clone();
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: folder.max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| tok_err(e.to_string()))?;
        let vocab = tokenizer.get_vocab_size(true);
        if vocab > folder.config.vocab_size {
            return Err(tok_err(format!(
                "{vocab} tokens, but the model's vocab_size is {} ({})",
                folder.config.vocab_size,
                folder.config_path.display()
            )));
        }

        let weights = std::fs::read(&folder.weights_path).map_err(io_err(&folder.weights_path))?;
        let sha = hex::encode(Sha256::digest(&weights));
        let model_id = format!(
            "{}:{}:{}",
            folder.name,
            folder.config.hidden_size,
            &sha[..16]
        );

        let device = Device::cuda_if_available(0)?;
        let weights_err = |e: candle_core::Error| EmbedError::Weights {
            path: folder.weights_path.clone(),
            msg: e.to_string(),
        };
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(weights_err)?;
        let model = Encoder::load(vb, &folder.config).map_err(weights_err)?;

        Ok(Self {
            model,
            device,
            tokenizer,
            counter,
            pooling: folder.pooling,
            lowercase: folder.lowercase,
            pad_id: folder.config.pad_token_id as u32,
            dim: folder.config.hidden_size,
            max_tokens: folder.max_tokens,
            batch_size: opts.batch_size.max(1),
            model_id,
        })
    }

    /// How token vectors are pooled, from the folder's pooling config.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// The token ids the model sees for `text`: special tokens included, truncated to
    /// [`Embedder::max_tokens`].
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, EmbedError> {
        let text = self.prepare(text);
        let enc = self
            .tokenizer
            .encode_fast(text.as_ref(), true)
            .map_err(|e| EmbedError::Tokenize(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    fn prepare<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        if self.lowercase {
            text.to_lowercase().into()
        } else {
            text.into()
        }
    }

    /// One batch of encodings (longest first) -> one normalised vector per encoding.
    fn embed_batch(&self, encs: &[&Encoding]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let b = encs.len();
        let len = encs.iter().map(|e| e.len()).max().unwrap_or(0);
        let mut ids = vec![self.pad_id; b * len];
        let mut types = vec![0u32; b * len];
        let mut mask = vec![0f32; b * len];
        let lens: Vec<usize> = encs.iter().map(|e| e.len()).collect();
        for (row, e) in encs.iter().enumerate() {
            let n = e.len();
            let at = row * len;
            ids[at..at + n].copy_from_slice(e.get_ids());
            types[at..at + n].copy_from_slice(e.get_type_ids());
            for (m, &a) in mask[at..at + n].iter_mut().zip(e.get_attention_mask()) {
                *m = a as f32;
            }
        }
        let ids = Tensor::from_vec(ids, (b, len), &self.device)?;
        let types = Tensor::from_vec(types, (b, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (b, len), &self.device)?;
        let hidden = self.model.forward(&ids, &types, &lens)?;
        let pooled = match self.pooling {
            Pooling::Mean => {
                let summed = hidden.broadcast_mul(&mask.unsqueeze(2)?)?.sum(1)?;
                let count = mask.sum_keepdim(1)?.clamp(1e-9f32, f32::MAX)?;
                summed.broadcast_div(&count)?
            }
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
        };
        let norm = pooled
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12f32, f32::MAX)?;
        Ok(pooled.broadcast_div(&norm)?.to_vec2::<f32>()?)
    }
}

impl lorag_core::TokenCounter for BertEmbedder {
    /// Tokens of the whole text, without special tokens and without truncation.
    fn count_tokens(&self, text: &str) -> usize {
        let text = self.prepare(text);
        match self.counter.encode_fast(text.as_ref(), false) {
            Ok(e) => e.len(),
            // WordPiece does not fail on any string; should a tokenizer fail, a word count is a
            // better estimate than zero.
            Err(_) => text.split_whitespace().count(),
        }
    }
}

impl Embedder for BertEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let inputs: Vec<std::borrow::Cow<str>> = texts.iter().map(|t| self.prepare(t)).collect();
        let encs = self
            .tokenizer
            .encode_batch_fast(inputs.iter().map(|t| t.as_ref()).collect(), true)
            .map_err(|e| EmbedError::Tokenize(e.to_string()))?;
        // Longest first, so that each batch pads little; a stable sort keeps equal lengths in
        // input order.
        let mut order: Vec<usize> = (0..encs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encs[i].len()));
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(self.batch_size) {
            let batch: Vec<&Encoding> = chunk.iter().map(|&i| &encs[i]).collect();
            for (&i, v) in chunk.iter().zip(self.embed_batch(&batch)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }
}
