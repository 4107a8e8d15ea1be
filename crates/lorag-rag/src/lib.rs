//! Grounded answers. `ask` = (rewrite a follow-up into a standalone query) → retrieve → refuse when
//! no retrieved sentence is evidence for the question (`evidence`) → fit the sources into the
//! context budget → prompt with numbered, delimited sources → generate on llama.cpp (streaming)
//! → check every citation and every sentence.
//!
//! Invariants:
//! - Documents are data: source text is quoted inside delimiters and stripped of every control
//!   token of the model's vocabulary, so no document can open a turn or a system prompt.
//! - Every `[n]` left in the answer refers to a source that was given; citations to other numbers
//!   are removed and reported.
//! - The prompt never exceeds the context: sources are fitted with the model's own tokenizer,
//!   leaving `answer_tokens` free for the answer.

mod cite;
mod evidence;
mod prompt;
mod rewrite;
mod stream;

pub use cite::{
    check_citations, split_sentences, strip_filler, CitationCheck, CitationChecker, SentenceCheck,
    SentenceVerdict, LEXICAL_COVERAGE, MOVE_COSINE_MARGIN, MOVE_COVERAGE_MARGIN,
};
pub use evidence::{best_quote, evidence, word_overlap};
pub use prompt::{neutralize, REFUSAL};

use lorag_embed::Embedder;
use lorag_kb::{Hit, Mode, SearchOptions};
use lorag_llm::{Generator, Message, SamplingParams};
use lorag_store::{Filter, Store};
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Llm(#[from] lorag_llm::Error),
    #[error(transparent)]
    Kb(#[from] lorag_kb::Error),
    #[error("embedding: {0}")]
    Embed(#[from] lorag_embed::EmbedError),
    #[error("the question is {question} tokens but the model's context holds {n_ctx}, with {reserve} kept for the answer; shorten the question")]
    QuestionTooLong {
        question: usize,
        n_ctx: usize,
        reserve: usize,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Clone)]
pub struct RagOptions {
    pub k: usize,
    pub mode: Mode,
    pub filters: Vec<Filter>,
    /// Tokens kept free for the answer.
    pub answer_tokens: usize,
    /// Refuse when the evidence score of the retrieved passages (see `evidence`) is below this.
    pub refuse_below: f32,
    /// A sentence is supported when its cosine similarity to a cited source (or, for an uncited
    /// sentence, to any given source) reaches this.
    pub support_threshold: f32,
    pub sampling: SamplingParams,
    /// Rewrite a follow-up question into a standalone query before retrieval.
    pub rewrite: bool,
    /// An extra instruction appended to the question (e.g. "Answer with a short phrase.").
    pub style: Option<String>,
    /// Extractive answers: the best evidence sentence of the sources, verbatim and cited, with no
    /// generation (every word traceable; the baseline a generated answer should beat).
    pub quote: bool,
}

impl Default for RagOptions {
    fn default() -> Self {
        Self {
            k: 4,
            mode: Mode::Hybrid,
            filters: Vec::new(),
            answer_tokens: 256,
            refuse_below: DEFAULT_REFUSE_BELOW,
            support_threshold: DEFAULT_SUPPORT_THRESHOLD,
            sampling: SamplingParams::greedy(256),
            rewrite: true,
            style: None,
            quote: false,
        }
    }
}

/// Calibrated with bench/rag.py on SQuAD v1.1 dev (all-MiniLM-L6-v2): on one half of the
/// questions, the highest evidence threshold that refuses at most 10% of answerable questions;
/// checked on the other half (see bench/README.md for the rates).
pub const DEFAULT_REFUSE_BELOW: f32 = 0.46;
/// A sentence and a passage that states it have a MiniLM cosine well above this; unrelated text
/// rarely reaches it.
pub const DEFAULT_SUPPORT_THRESHOLD: f32 = 0.45;

#[derive(Debug, Clone, Serialize)]
pub struct Citation {
    pub n: usize,
    pub source: String,
    pub title: Option<String>,
    pub section: Option<String>,
    pub page: Option<u32>,
    pub start: usize,
    pub end: usize,
    pub text: String,
    /// Retrieval score (RRF in hybrid mode, cosine in dense, BM25 in bm25).
    pub score: f32,
    /// Cosine similarity of the query and the passage (what the refusal threshold looks at).
    pub similarity: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub answer: String,
    /// The sources cited in the answer (by their number in the prompt).
    pub citations: Vec<Citation>,
    /// Sentences that no given source supports.
    pub unsupported: Vec<String>,
    pub refused: bool,
    /// The query used for retrieval (the question, or its standalone rewrite).
    pub query: String,
    /// Citation numbers the model wrote that match no given source (removed from the answer).
    pub invalid_citations: Vec<usize>,
    /// Every source that was given to the model, in prompt order.
    pub sources: Vec<Citation>,
    pub sentences: Vec<SentenceCheck>,
    pub retrieval_ms: f64,
    pub ttft_ms: f64,
    pub total_ms: f64,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// The best cosine similarity between the query and a retrieved passage (0 when none).
    pub best_similarity: f32,
    /// The evidence score that the refusal threshold looks at (0 when nothing was retrieved).
    pub evidence: f32,
}

/// The knowledge base half of RAG: a store and the embedder that built it.
pub struct Kb<'a> {
    pub store: &'a dyn Store,
    pub embedder: &'a dyn Embedder,
}

/// Answer `question`, given the conversation so far (`history`: earlier user/assistant turns).
/// Without a KB it answers from the model alone (for comparison).
pub fn ask(
    session: &mut dyn Generator,
    kb: Option<&Kb<'_>>,
    history: &[Message],
    question: &str,
    opts: &RagOptions,
    on_text: &mut dyn FnMut(&str),
) -> Result<Answer> {
    let t0 = Instant::now();
    let n_ctx = session.context_size();
    let q_tokens = session.count_tokens(question);
    if q_tokens + opts.answer_tokens + 64 > n_ctx {
        return Err(Error::QuestionTooLong {
            question: q_tokens,
            n_ctx,
            reserve: opts.answer_tokens,
        });
    }
    let mut answer = Answer {
        answer: String::new(),
        citations: Vec::new(),
        unsupported: Vec::new(),
        refused: false,
        query: question.to_string(),
        invalid_citations: Vec::new(),
        sources: Vec::new(),
        sentences: Vec::new(),
        retrieval_ms: 0.0,
        ttft_ms: 0.0,
        total_ms: 0.0,
        prompt_tokens: 0,
        completion_tokens: 0,
        best_similarity: 0.0,
        evidence: 0.0,
    };
    let mut params = opts.sampling.clone();
    params.max_tokens = params.max_tokens.min(opts.answer_tokens);

    let Some(kb) = kb else {
        // No retrieval: the model alone.
        let mut msgs = history.to_vec();
        msgs.push(Message::user(prompt::plain_question(
            question,
            opts.style.as_deref(),
        )));
        let rendered = session.render(&msgs)?;
        let mut first: Option<f64> = None;
        let g = session.stream(&rendered, &params, &mut |t| {
            first.get_or_insert_with(|| t0.elapsed().as_secs_f64() * 1e3);
            on_text(t);
            true
        })?;
        answer.answer = g.text.trim().to_string();
        answer.ttft_ms = first.unwrap_or_default();
        answer.total_ms = t0.elapsed().as_secs_f64() * 1e3;
        answer.prompt_tokens = g.prompt_tokens;
        answer.completion_tokens = g.completion_tokens;
        return Ok(answer);
    };

    if opts.rewrite && !history.is_empty() {
        answer.query = rewrite::standalone(session, history, question)?;
    }
    let hits = retrieve(kb, &answer.query, opts)?;
    answer.retrieval_ms = t0.elapsed().as_secs_f64() * 1e3;
    let best = hits.iter().map(|h| h.similarity).fold(f32::MIN, f32::max);
    answer.best_similarity = if hits.is_empty() { 0.0 } else { best };
    let passages: Vec<&str> = hits.iter().map(|h| h.chunk.text.as_str()).collect();
    answer.evidence = evidence(&answer.query, &passages, kb.embedder)?;
    if hits.is_empty() || answer.evidence < opts.refuse_below {
        answer.refused = true;
        answer.answer = REFUSAL.to_string();
        on_text(REFUSAL);
        answer.ttft_ms = t0.elapsed().as_secs_f64() * 1e3;
        answer.total_ms = answer.ttft_ms;
        return Ok(answer);
    }

    let controls = session.control_token_texts();
    let fitted = prompt::fit_sources(session, &hits, &controls, question, history, opts)?;
    answer.sources = fitted
        .iter()
        .enumerate()
        .map(|(i, (h, _))| citation(i + 1, h))
        .collect();
    if opts.quote {
        let texts: Vec<&str> = fitted.iter().map(|(h, _)| h.chunk.text.as_str()).collect();
        if let Some((i, quote, score)) = best_quote(&answer.query, &texts, kb.embedder)? {
            let n = i + 1;
            let text = cite::render(&quote, &[n]);
            on_text(&text);
            answer.ttft_ms = t0.elapsed().as_secs_f64() * 1e3;
            answer.sentences = vec![SentenceCheck {
                text: text.clone(),
                cites: vec![n],
                support: score,
                supported: true,
                auto_cited: false,
                moved_from: Vec::new(),
                filler: false,
            }];
            answer.citations = vec![answer.sources[i].clone()];
            answer.answer = text;
        } else {
            answer.refused = true;
            answer.answer = REFUSAL.to_string();
            on_text(REFUSAL);
        }
        answer.total_ms = t0.elapsed().as_secs_f64() * 1e3;
        return Ok(answer);
    }
    let msgs = prompt::messages(history, question, &fitted, opts.style.as_deref());
    let rendered = session.render(&msgs)?;
    let mut first: Option<f64> = None;
    let source_texts: Vec<&str> = fitted.iter().map(|(_, t)| t.as_str()).collect();
    // Stream the words as they come; each sentence's citations are checked when it ends and only
    // then streamed, so the streamed text is the final answer (see stream.rs).
    let mut sentences: Vec<SentenceCheck> = Vec::new();
    let mut invalid: Vec<usize> = Vec::new();
    let mut failure: Option<Error> = None;
    let checker = cite::CitationChecker::new(&source_texts, kb.embedder, opts.support_threshold)?;
    let mut check = |body: &str, cites: &[usize]| -> stream::Verdict {
        match checker.check(body, cites) {
            Ok(v) => {
                invalid.extend(v.invalid.iter().copied());
                sentences.push(SentenceCheck {
                    text: cite::render(body, &v.cites),
                    cites: v.cites.clone(),
                    support: v.support,
                    supported: v.supported,
                    auto_cited: v.auto_cited,
                    moved_from: v.moved_from,
                    filler: v.filler,
                });
                stream::Verdict { cites: v.cites }
            }
            Err(e) => {
                failure.get_or_insert(e);
                stream::Verdict { cites: Vec::new() }
            }
        }
    };
    let mut emit = |t: &str| {
        first.get_or_insert_with(|| t0.elapsed().as_secs_f64() * 1e3);
        on_text(t)
    };
    let mut cited_stream = stream::CitedStream::new(&mut emit, &mut check);
    // The stream asks to stop when the model starts repeating itself.
    let g = session.stream(&rendered, &params, &mut |t| cited_stream.push(t))?;
    let text = cited_stream.finish();
    if let Some(e) = failure {
        return Err(e);
    }
    answer.ttft_ms = first.unwrap_or_else(|| t0.elapsed().as_secs_f64() * 1e3);
    answer.prompt_tokens = g.prompt_tokens;
    answer.completion_tokens = g.completion_tokens;
    answer.answer = text;
    invalid.sort_unstable();
    invalid.dedup();
    answer.invalid_citations = invalid;
    answer.unsupported = sentences
        .iter()
        .filter(|s| !s.supported)
        .map(|s| s.text.clone())
        .collect();
    let mut cited: Vec<usize> = sentences
        .iter()
        .flat_map(|s| s.cites.iter().copied())
        .collect();
    cited.sort_unstable();
    cited.dedup();
    answer.citations = cited
        .into_iter()
        .filter_map(|n| answer.sources.get(n - 1).cloned())
        .collect();
    answer.sentences = sentences;
    if answer.answer.trim().is_empty() || prompt::is_refusal(&answer.answer) {
        answer.refused = true;
    }
    answer.total_ms = t0.elapsed().as_secs_f64() * 1e3;
    Ok(answer)
}

fn retrieve(kb: &Kb<'_>, query: &str, opts: &RagOptions) -> Result<Vec<Hit>> {
    Ok(lorag_kb::search(
        kb.store,
        kb.embedder,
        query,
        &SearchOptions {
            k: opts.k,
            mode: opts.mode,
            filters: opts.filters.clone(),
            ..SearchOptions::default()
        },
    )?)
}

/// One conversation for RAG-aware fine-tuning (see `training_conversation`).
#[derive(Debug, Clone)]
pub struct TrainingConversation {
    /// What `ask` would give the model: its system prompt, the history, and the question with
    /// the numbered sources retrieved for it (fitted, neutralized and delimited as `ask` does).
    pub messages: Vec<Message>,
    /// The reference answer with each sentence citing the given source that supports it;
    /// `None` when some sentence is supported by no given source (retrieval missed the answer).
    pub reply: Option<String>,
    /// How many sources were given.
    pub sources: usize,
}

/// RAG-aware fine-tuning data: the prompt `ask` would build for `question` on this KB, and
/// `answer` as the reply to learn, with citations added the way `ask` checks them. A one-sentence
/// answer that appears word for word in a given source cites the best-ranked such source; any
/// other sentence cites the given source that supports it best (`check_citations`: embedding
/// similarity or lexical coverage). Retrieval uses the question as written (no follow-up
/// rewriting), so multi-turn data should hold standalone questions.
pub fn training_conversation(
    session: &dyn Generator,
    kb: &Kb<'_>,
    history: &[Message],
    question: &str,
    answer: &str,
    opts: &RagOptions,
) -> Result<TrainingConversation> {
    let hits = retrieve(kb, question, opts)?;
    let controls = session.control_token_texts();
    let fitted = prompt::fit_sources(session, &hits, &controls, question, history, opts)?;
    let messages = prompt::messages(history, question, &fitted, opts.style.as_deref());
    let texts: Vec<&str> = fitted.iter().map(|(_, t)| t.as_str()).collect();
    let answer = answer.trim();
    if texts.is_empty() || answer.is_empty() {
        return Ok(TrainingConversation {
            messages,
            reply: None,
            sources: texts.len(),
        });
    }
    let draft = match verbatim_source(answer, &texts) {
        Some(n) if split_sentences(answer).len() == 1 => cite::render(answer, &[n]),
        _ => answer.to_string(),
    };
    let check = check_citations(&draft, &texts, kb.embedder, opts.support_threshold)?;
    let complete = check.sentences.iter().all(|s| s.supported);
    Ok(TrainingConversation {
        messages,
        reply: complete.then_some(check.answer),
        sources: texts.len(),
    })
}

/// The first source (1-based) that contains `answer` word for word (case and spacing aside).
fn verbatim_source(answer: &str, sources: &[&str]) -> Option<usize> {
    let norm = |s: &str| {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    let a = norm(answer.trim().trim_end_matches(['.', '!', '?']));
    if !a.chars().any(char::is_alphanumeric) {
        return None;
    }
    sources
        .iter()
        .position(|s| norm(s).contains(&a))
        .map(|i| i + 1)
}

/// The prompt `ask` gives the model for these hits: sources fitted to the budget, neutralized,
/// numbered and delimited (for inspection and tests).
pub fn render_prompt(
    session: &dyn Generator,
    history: &[Message],
    question: &str,
    hits: &[Hit],
    opts: &RagOptions,
) -> Result<String> {
    let controls = session.control_token_texts();
    let fitted = prompt::fit_sources(session, hits, &controls, question, history, opts)?;
    Ok(session.render(&prompt::messages(
        history,
        question,
        &fitted,
        opts.style.as_deref(),
    ))?)
}

/// The sentence of `text` that shares most content words with `claims` (what a reader should see
/// highlighted in a cited chunk); None when no sentence shares any.
pub fn best_span<'t>(text: &'t str, claims: &[&str]) -> Option<&'t str> {
    let want: std::collections::HashSet<String> = claims
        .iter()
        .flat_map(|c| cite::words(c))
        .filter(|w| w.len() > 2 || w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    if want.is_empty() {
        return None;
    }
    let mut best: Option<(&str, usize)> = None;
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, c) in text.char_indices() {
        let end = matches!(c, '.' | '!' | '?' | '\n')
            && (i + 1 >= bytes.len() || bytes[i + 1].is_ascii_whitespace());
        if end || i + c.len_utf8() == text.len() {
            let s = text[start..i + c.len_utf8()].trim();
            let n = cite::words(s).iter().filter(|w| want.contains(*w)).count();
            if n > 0 && best.is_none_or(|(_, b)| n > b) {
                best = Some((s, n));
            }
            start = i + c.len_utf8();
        }
    }
    best.map(|(s, _)| s)
}

fn citation(n: usize, h: &Hit) -> Citation {
    Citation {
        n,
        source: h.chunk.source.clone(),
        title: h.chunk.title.clone(),
        section: h.chunk.section.clone(),
        page: h.chunk.page,
        start: h.chunk.start,
        end: h.chunk.end,
        text: h.chunk.text.clone(),
        score: h.score,
        similarity: h.similarity,
    }
}

#[cfg(test)]
mod tests {
    use super::verbatim_source;

    #[test]
    fn verbatim_source_ignores_case_spacing_and_the_final_stop() {
        let sources = [
            "Trusses are braced.",
            "Roof trusses are spaced 600\n millimetres apart.",
            "Spaced 600 MILLIMETRES apart, again.",
        ];
        assert_eq!(verbatim_source("600 millimetres.", &sources), Some(2));
        assert_eq!(verbatim_source("  trusses  ", &sources), Some(1));
        assert_eq!(verbatim_source("900 millimetres", &sources), None);
        assert_eq!(verbatim_source(" . ", &sources), None);
    }
}
