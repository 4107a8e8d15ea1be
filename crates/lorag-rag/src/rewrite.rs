//! Follow-up questions ("and how long does it take?") rewritten into standalone queries before
//! retrieval. The model rewrites; the rewrite is checked (it must keep the follow-up's content
//! words and bring in some of the conversation's), and when the check fails the query falls back
//! to the previous question joined with the follow-up, which retrieval handles well.

use crate::Result;
use lorag_llm::{Generator, Message, Role, SamplingParams};
use std::collections::HashSet;

const STOP: &[&str] = &[
    "a", "an", "the", "and", "or", "but", "is", "are", "was", "were", "be", "it", "its", "it's",
    "this", "that", "these", "those", "what", "which", "who", "whom", "how", "when", "where",
    "why", "do", "does", "did", "of", "in", "on", "to", "for", "with", "about", "can", "could",
    "should", "would", "will", "i", "you", "we", "they", "he", "she", "them", "their", "there",
    "then", "also", "so", "much", "many", "long", "take", "takes",
];

fn content_words(s: &str) -> HashSet<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .map(str::to_lowercase)
        .filter(|w| w.len() > 1 && !STOP.contains(&w.as_str()))
        .collect()
}

pub(crate) fn standalone(
    session: &mut dyn Generator,
    history: &[Message],
    question: &str,
) -> Result<String> {
    let users: Vec<&str> = history
        .iter()
        .filter(|m| m.role == Role::User)
        .map(|m| m.content.as_str())
        .collect();
    let Some(prev) = users.last().copied() else {
        return Ok(question.to_string());
    };
    let mut convo = String::new();
    for m in history.iter().rev().take(4).rev() {
        let who = match m.role {
            Role::User => "User",
            Role::Assistant => "Assistant",
            Role::System => continue,
        };
        let text: String = m.content.chars().take(300).collect();
        convo.push_str(&format!("{who}: {text}\n"));
    }
    let msgs = [
        Message::system(
            "Rewrite the follow-up question so that it can be understood without the conversation. \
             Keep its meaning, name what it refers to, and reply with the rewritten question only.",
        ),
        Message::user(
            "Conversation:\nUser: What is a building permit?\nAssistant: A permit from the municipality to build.\n\
             Follow-up: and how long does it take?",
        ),
        Message::assistant("How long does it take to get a building permit?"),
        Message::user(format!("Conversation:\n{convo}Follow-up: {question}")),
    ];
    let rendered = session.render(&msgs)?;
    let mut params = SamplingParams::greedy(48);
    params.stop = vec!["\n".into()];
    let g = session.stream(&rendered, &params, &mut |_| true)?;
    let rewrite = g.text.trim().trim_matches('"').trim().to_string();

    let follow = content_words(question);
    let before = content_words(prev);
    let got = content_words(&rewrite);
    let keeps_followup = follow.iter().all(|w| got.contains(w)) || follow.is_empty();
    let brings_context = before
        .iter()
        .any(|w| got.contains(w) && !follow.contains(w))
        || before.is_subset(&follow);
    let sane = rewrite.split_whitespace().count() >= 3
        && rewrite.len() <= 4 * (prev.len() + question.len()) + 40;
    if keeps_followup && brings_context && sane {
        Ok(rewrite)
    } else {
        Ok(format!("{prev} {question}"))
    }
}

#[cfg(test)]
mod tests {
    use super::content_words;

    #[test]
    fn content_words_drop_function_words() {
        let w = content_words("And how long does it take to get a building permit?");
        assert!(w.contains("building") && w.contains("permit") && w.contains("get"));
        assert!(!w.contains("how") && !w.contains("long"));
    }
}
