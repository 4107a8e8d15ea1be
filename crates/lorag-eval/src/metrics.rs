//! Answer-quality metrics on one (prediction, reference) pair.
//!
//! Text is compared after SQuAD's normalisation ([`normalize`]): lowercase, ASCII punctuation
//! removed, the articles a/an/the removed, whitespace collapsed — the official SQuAD scorer's
//! rules and `bench/rag.py`'s, so the figures agree with it. With several acceptable references
//! the best score counts ([`best`]).

use std::collections::HashMap;

/// SQuAD normalisation: lowercase, drop ASCII punctuation, drop the words a/an/the (as the
/// regex `\b(a|an|the)\b` does), collapse whitespace.
pub fn normalize(s: &str) -> String {
    let lower: String = s
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    // Split into runs of word characters and of others; drop article runs.
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut kept = String::with_capacity(lower.len());
    let mut run = String::new();
    let mut run_word = false;
    let flush = |run: &mut String, word: bool, kept: &mut String| {
        if !(word && matches!(run.as_str(), "a" | "an" | "the")) {
            kept.push_str(run);
        } else {
            kept.push(' ');
        }
        run.clear();
    };
    for c in lower.chars() {
        if !run.is_empty() && is_word(c) != run_word {
            flush(&mut run, run_word, &mut kept);
        }
        run_word = is_word(c);
        run.push(c);
    }
    flush(&mut run, run_word, &mut kept);
    kept.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The normalised tokens of `s`.
pub fn tokens(s: &str) -> Vec<String> {
    normalize(s)
        .split(' ')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// SQuAD token F1 (bag of normalised tokens). Both empty: 1; one empty: 0.
pub fn token_f1(pred: &str, reference: &str) -> f64 {
    let (p, g) = (tokens(pred), tokens(reference));
    if p.is_empty() || g.is_empty() {
        return f64::from(u8::from(p.is_empty() && g.is_empty()));
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &g {
        *counts.entry(t.as_str()).or_default() += 1;
    }
    let mut same = 0usize;
    for t in &p {
        if let Some(c) = counts.get_mut(t.as_str()).filter(|c| **c > 0) {
            *c -= 1;
            same += 1;
        }
    }
    f_measure(same, p.len(), g.len())
}

/// 1 when the normalised texts are equal, else 0.
pub fn exact_match(pred: &str, reference: &str) -> f64 {
    f64::from(u8::from(normalize(pred) == normalize(reference)))
}

/// ROUGE-L F-measure (β = 1) on normalised tokens: the longest common subsequence over the
/// prediction's length (precision) and the reference's (recall). Both empty: 1; one empty: 0.
pub fn rouge_l(pred: &str, reference: &str) -> f64 {
    let (p, g) = (tokens(pred), tokens(reference));
    if p.is_empty() || g.is_empty() {
        return f64::from(u8::from(p.is_empty() && g.is_empty()));
    }
    f_measure(lcs(&p, &g), p.len(), g.len())
}

fn f_measure(same: usize, n_pred: usize, n_ref: usize) -> f64 {
    if same == 0 {
        return 0.0;
    }
    let (prec, rec) = (same as f64 / n_pred as f64, same as f64 / n_ref as f64);
    2.0 * prec * rec / (prec + rec)
}

/// Length of the longest common subsequence of two token lists (O(n·m) time, O(m) memory).
pub fn lcs<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        let mut diag = 0;
        for (j, y) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = if x == y { diag + 1 } else { up.max(row[j]) };
            diag = up;
        }
    }
    row[b.len()]
}

/// The best score of `pred` against any of `references` (0 when there are none).
pub fn best(metric: fn(&str, &str) -> f64, pred: &str, references: &[&str]) -> f64 {
    references
        .iter()
        .map(|r| metric(pred, r))
        .fold(0.0, f64::max)
}

/// Cosine similarity of two vectors; 0 when either is zero or their lengths differ.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

/// The answer as scored: citation markers (`[1]`, `[1, 2]`) and the refusal sentence removed,
/// as `bench/rag.py`'s `clean` does.
pub fn clean_answer(answer: &str, refusal: &str) -> String {
    let mut out = String::with_capacity(answer.len());
    let mut rest = answer;
    while let Some(i) = rest.find('[') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after.find(']') {
            Some(j) if is_marker(&after[..j]) => rest = &after[j + 1..],
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    let out = if refusal.is_empty() {
        out
    } else {
        out.replace(refusal, "")
    };
    out.trim().to_string()
}

fn is_marker(inner: &str) -> bool {
    let mut parts = inner.split(',').map(str::trim);
    !inner.is_empty() && parts.all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether a retrieved or cited source names a gold source: equal, or equal file names, or one
/// path ends with the other at a `/` boundary (`docs/a.md` matches `/kb/docs/a.md`).
pub fn source_matches(gold: &str, found: &str) -> bool {
    let norm = |s: &str| s.trim().replace('\\', "/");
    let (g, f) = (norm(gold), norm(found));
    if g.is_empty() || f.is_empty() {
        return false;
    }
    let ends = |long: &str, short: &str| {
        long == short || (long.ends_with(short) && long[..long.len() - short.len()].ends_with('/'))
    };
    ends(&f, &g) || ends(&g, &f)
}

/// Whether any of `found` matches any of `gold` ([`source_matches`]).
pub fn any_source_matches(gold: &[String], found: &[String]) -> bool {
    gold.iter()
        .any(|g| found.iter().any(|f| source_matches(g, f)))
}

/// Whether `text` contains `answer` after normalisation, on token boundaries: how a chunk is
/// found to hold a reference answer when the Q&A names no sources (`bench/rag.py`'s
/// "contains a gold answer"). An answer that normalises to nothing is never contained.
pub fn contains_answer(text: &str, answer: &str) -> bool {
    let (t, a) = (normalize(text), normalize(answer));
    !a.is_empty() && format!(" {t} ").contains(&format!(" {a} "))
}

/// Token-set Jaccard similarity of two texts' normalised tokens (1 when both are empty).
pub fn jaccard(a: &[String], b: &[String]) -> f64 {
    let sa: std::collections::HashSet<&str> = a.iter().map(String::as_str).collect();
    let sb: std::collections::HashSet<&str> = b.iter().map(String::as_str).collect();
    if sa.is_empty() && sb.is_empty() {
        return 1.0;
    }
    let inter = sa.intersection(&sb).count();
    inter as f64 / (sa.len() + sb.len() - inter) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn normalisation_follows_squad() {
        assert_eq!(normalize("The  Cat's hat, a HAT!"), "cats hat hat");
        assert_eq!(normalize("An apple; theory"), "apple theory");
        assert_eq!(normalize("Über-Straße 5"), "überstraße 5");
        // `\b` also falls between a word and a non-ASCII symbol.
        assert_eq!(normalize("the’s"), "’s");
        assert_eq!(normalize("a"), "");
    }

    #[test]
    fn f1_and_exact_match_values() {
        // pred: [cat, sat, on, mat] (the dropped), gold: [cat, on, mat, today]: 3 common.
        let f = token_f1("The cat sat on the mat.", "cat on a mat today");
        assert!(close(f, 0.75), "{f}");
        assert!(close(token_f1("Paris", "paris!"), 1.0));
        assert!(close(token_f1("", "x"), 0.0));
        assert!(close(token_f1("the", "a"), 1.0)); // both normalise to nothing
                                                   // Repeated tokens count once per occurrence in the reference.
        let f = token_f1("yes yes yes", "yes no");
        assert!(close(f, 2.0 * (1.0 / 3.0) * 0.5 / (1.0 / 3.0 + 0.5)), "{f}");
        assert!(close(exact_match("The Eiffel Tower.", "eiffel tower"), 1.0));
        assert!(close(exact_match("Eiffel", "eiffel tower"), 0.0));
        assert!(close(
            best(token_f1, "in 1990", &["1991", "1990"]),
            2.0 / 3.0
        ));
        assert!(close(best(token_f1, "x", &[]), 0.0));
    }

    #[test]
    fn rouge_l_values() {
        // LCS of [police, killed, gunman] and [police, kill, gunman] is 2: P = R = 2/3.
        assert!(close(
            rouge_l("police killed the gunman", "the police kill the gunman"),
            2.0 / 3.0
        ));
        // Order matters for ROUGE-L, not for F1.
        assert!(close(token_f1("y x", "x y"), 1.0));
        assert!(close(rouge_l("y x", "x y"), 0.5));
        assert_eq!(lcs(&[1, 2, 3, 4], &[2, 4, 3]), 2);
    }

    #[test]
    fn cosine_values() {
        assert!(close(cosine(&[1.0, 0.0], &[0.0, 2.0]), 0.0));
        assert!(close(cosine(&[1.0, 1.0], &[2.0, 2.0]), 1.0));
        assert!(close(cosine(&[3.0, 4.0], &[4.0, 3.0]), 24.0 / 25.0));
        assert!(close(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0));
        assert!(close(cosine(&[1.0], &[1.0, 2.0]), 0.0));
    }

    #[test]
    fn cleaning_and_sources() {
        let refusal = "The knowledge base does not contain the answer.";
        assert_eq!(
            clean_answer("It is 10 EUR [1]. Paid yearly [2, 3].", refusal),
            "It is 10 EUR . Paid yearly ."
        );
        assert_eq!(clean_answer("see [a] and [", refusal), "see [a] and [");
        assert_eq!(clean_answer(refusal, refusal), "");
        assert!(source_matches("fees.md", "/kb/docs/fees.md"));
        assert!(source_matches("/kb/docs/fees.md", "docs/fees.md"));
        assert!(!source_matches("fees.md", "/kb/docs/otherfees.md"));
        assert!(!source_matches("", "x"));
        assert!(contains_answer("The fee is 10 EUR per year.", "10 eur"));
        assert!(!contains_answer("The fee is 110 EUR.", "10 EUR"));
        assert!(!contains_answer("anything", "the"));
        assert!(any_source_matches(
            &["a.md".into(), "b.md".into()],
            &["x/b.md".into()]
        ));
        let t = |s: &str| tokens(s);
        assert!(close(
            jaccard(&t("what is the fee"), &t("what is a fee")),
            1.0
        ));
        assert!(close(
            jaccard(&t("what is the fee"), &t("what fee applies")),
            2.0 / 4.0
        ));
    }
}
