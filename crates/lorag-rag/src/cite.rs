//! Citation checking: every `[n]` must name a given source; every sentence must be supported by
//! what it cites (or, when the model cited nothing, by some given source, which is then cited).
//!
//! A sentence is supported by a passage when either (a) their cosine similarity under the KB's
//! own embedder reaches the threshold (`RagOptions::support_threshold`), or (b) at least
//! `LEXICAL_COVERAGE` of the sentence's content words (numbers included) occur in the passage:
//! short extractive answers ("6 weeks") are far from a whole passage in embedding space, yet
//! plainly taken from it.

use crate::Result;
use lorag_embed::Embedder;
use serde::Serialize;
use std::collections::HashSet;

/// Share of a sentence's content words that must occur in a passage for lexical support.
pub const LEXICAL_COVERAGE: f32 = 0.75;

const FUNCTION_WORDS: &[&str] = &[
    "a", "an", "the", "and", "or", "but", "is", "are", "was", "were", "be", "been", "it", "its",
    "this", "that", "of", "in", "on", "to", "for", "with", "as", "by", "at", "from", "answer",
    "yes", "no", "not", "can", "you", "your", "i",
];

/// Lower-cased alphanumeric words (shared with the evidence score).
pub(crate) fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Share of the sentence's content words found in the passage (0 when it has none).
fn coverage(sentence: &str, passage: &HashSet<String>) -> f32 {
    let content: Vec<String> = words(sentence)
        .into_iter()
        .filter(|w| !FUNCTION_WORDS.contains(&w.as_str()))
        .collect();
    if content.is_empty() {
        return 0.0;
    }
    content.iter().filter(|w| passage.contains(*w)).count() as f32 / content.len() as f32
}

#[derive(Debug, Clone, Serialize)]
pub struct SentenceCheck {
    /// The sentence as it stands in the final answer (citations included).
    pub text: String,
    /// Source numbers the sentence cites (after invalid ones were removed, auto-citations added).
    pub cites: Vec<usize>,
    /// Best similarity between the sentence and the sources it cites.
    pub support: f32,
    pub supported: bool,
    /// The model cited nothing here; the citation was added because a source supports it.
    pub auto_cited: bool,
}

#[derive(Debug, Clone)]
pub struct CitationCheck {
    pub answer: String,
    /// Numbers cited by the model that match no given source (removed from the answer).
    pub invalid: Vec<usize>,
    pub sentences: Vec<SentenceCheck>,
}

/// Split text into sentences; a sentence keeps the citation markers that follow its final
/// punctuation ("It is red. [1] Next." gives "It is red. [1]" and "Next.").
pub fn split_sentences(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        cur.push(c);
        i += 1;
        let end = matches!(c, '.' | '!' | '?' | '\n');
        if !end {
            continue;
        }
        // A decimal point or an abbreviation-like "e.g." is not an end.
        if c == '.' && i < chars.len() && !chars[i].is_whitespace() && chars[i] != '[' {
            continue;
        }
        // Take trailing citation markers with the sentence.
        loop {
            let mut j = i;
            while j < chars.len() && chars[j] == ' ' {
                j += 1;
            }
            if j < chars.len() && chars[j] == '[' {
                if let Some(close) = chars[j..].iter().position(|&x| x == ']') {
                    let inner: String = chars[j + 1..j + close].iter().collect();
                    if !inner.is_empty()
                        && inner.split(',').all(|p| p.trim().parse::<usize>().is_ok())
                    {
                        cur.extend(&chars[i..j + close + 1]);
                        i = j + close + 1;
                        continue;
                    }
                }
            }
            break;
        }
        if !cur.trim().is_empty() {
            out.push(cur.trim().to_string());
        }
        cur.clear();
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// The citation numbers in `s`, and `s` without its markers.
fn take_citations(s: &str) -> (Vec<usize>, String) {
    let mut nums = Vec::new();
    let mut plain = String::new();
    let mut rest = s;
    while let Some(open) = rest.find('[') {
        plain.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find(']') {
            Some(close)
                if !after[..close].trim().is_empty()
                    && after[..close]
                        .split(',')
                        .all(|p| p.trim().parse::<usize>().is_ok()) =>
            {
                nums.extend(
                    after[..close]
                        .split(',')
                        .map(|p| p.trim().parse::<usize>().expect("checked")),
                );
                rest = &after[close + 1..];
            }
            _ => {
                plain.push('[');
                rest = after;
            }
        }
    }
    plain.push_str(rest);
    let plain = plain.split_whitespace().collect::<Vec<_>>().join(" ");
    (nums, plain.replace(" .", ".").replace(" ,", ","))
}

pub(crate) fn render(plain: &str, cites: &[usize]) -> String {
    if cites.is_empty() {
        return plain.to_string();
    }
    let marks: String = cites.iter().map(|n| format!("[{n}]")).collect();
    // Put the markers before the final punctuation: "It is red [1]."
    match plain.char_indices().last() {
        Some((i, c)) if matches!(c, '.' | '!' | '?') => {
            format!("{} {marks}{c}", plain[..i].trim_end())
        }
        _ => format!("{plain} {marks}"),
    }
}

/// Check `answer` against `sources` (source n is `sources[n - 1]`).
pub fn check_citations(
    answer: &str,
    sources: &[&str],
    embedder: &dyn Embedder,
    threshold: f32,
) -> Result<CitationCheck> {
    let sentences = split_sentences(answer);
    let parsed: Vec<(Vec<usize>, String)> = sentences.iter().map(|s| take_citations(s)).collect();
    let mut invalid: Vec<usize> = parsed
        .iter()
        .flat_map(|(n, _)| n.iter().copied())
        .filter(|&n| n == 0 || n > sources.len())
        .collect();
    invalid.sort_unstable();
    invalid.dedup();

    let mut texts: Vec<&str> = parsed.iter().map(|(_, p)| p.as_str()).collect();
    texts.extend(sources.iter().copied());
    let vecs = if texts.is_empty() {
        Vec::new()
    } else {
        embedder.embed(&texts)?
    };
    let (sent_v, src_v) = vecs.split_at(parsed.len());

    let src_words: Vec<HashSet<String>> = sources
        .iter()
        .map(|s| words(s).into_iter().collect())
        .collect();
    let mut checks = Vec::new();
    let mut out = Vec::new();
    for ((nums, plain), sv) in parsed.iter().zip(sent_v) {
        let mut cites: Vec<usize> = nums
            .iter()
            .copied()
            .filter(|&n| n >= 1 && n <= sources.len())
            .collect();
        cites.dedup();
        let trivial = words(plain)
            .iter()
            .filter(|w| !FUNCTION_WORDS.contains(&w.as_str()))
            .count()
            == 0;
        // Lexical support counts as reaching the threshold.
        let sim = |n: usize| {
            let cos = dot(sv, &src_v[n - 1]);
            if coverage(plain, &src_words[n - 1]) >= LEXICAL_COVERAGE {
                cos.max(threshold)
            } else {
                cos
            }
        };
        let mut auto = false;
        let support = if !cites.is_empty() {
            cites.iter().map(|&n| sim(n)).fold(f32::MIN, f32::max)
        } else {
            // Uncited: find the source that supports it best and, if it does, cite it.
            let best = (1..=sources.len())
                .map(|n| (n, sim(n)))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            match best {
                Some((n, s)) if s >= threshold && !trivial => {
                    cites.push(n);
                    auto = true;
                    s
                }
                Some((_, s)) => s,
                None => 0.0,
            }
        };
        let text = render(plain, &cites);
        out.push(text.clone());
        checks.push(SentenceCheck {
            text,
            supported: trivial || (!cites.is_empty() && support >= threshold),
            cites,
            support,
            auto_cited: auto,
        });
    }
    Ok(CitationCheck {
        answer: out.join(" "),
        invalid,
        sentences: checks,
    })
}

pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_keep_their_citations() {
        let s = split_sentences("The permit costs 3.5 percent. [1] It is issued by the committee [2]. Done! Why? [1][3]");
        assert_eq!(
            s,
            vec![
                "The permit costs 3.5 percent. [1]",
                "It is issued by the committee [2].",
                "Done!",
                "Why? [1][3]"
            ]
        );
    }

    #[test]
    fn coverage_counts_content_words() {
        let p: HashSet<String> = words("Simple cases take 4-6 weeks; larger projects 8-12 weeks.")
            .into_iter()
            .collect();
        assert_eq!(coverage("The answer is: 6 weeks.", &p), 1.0);
        assert!(coverage("It takes six months in Stockholm.", &p) < 0.5);
    }

    #[test]
    fn citations_are_parsed_and_stripped() {
        let (n, p) = take_citations("It is red [1, 3] and blue [2]. [x] stays");
        assert_eq!(n, vec![1, 3, 2]);
        assert_eq!(p, "It is red and blue. [x] stays");
        assert_eq!(render("It is red.", &[1, 2]), "It is red [1][2].");
    }
}
