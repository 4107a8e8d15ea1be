//! Citation checking: every `[n]` must name a given source; every claim must be supported by
//! the source it cites, checked against every given source, not only the cited one.
//!
//! A claim is supported by a passage when the passage holds the claim's numbers and names
//! (digits, ranges, number words, dates; capitalised words that are not sentence-initial) and
//! either (a) their cosine similarity under the KB's own embedder reaches the threshold
//! (`RagOptions::support_threshold`), or (b) at least `LEXICAL_COVERAGE` of the claim's content
//! words (numbers included) occur in the passage: short extractive answers ("6 weeks") are far
//! from a whole passage in embedding space, yet plainly taken from it.
//!
//! `CitationChecker` decides one sentence at a time (it can run while an answer streams);
//! `check_citations` runs it over a whole answer. Neither changes the words of the answer: only
//! the markers after each sentence (see `CitationChecker` for the rules).

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
    /// Source numbers the sentence cites (after invalid ones were removed, misplaced ones moved,
    /// auto-citations added).
    pub cites: Vec<usize>,
    /// Best similarity between the sentence and the sources it cites.
    pub support: f32,
    pub supported: bool,
    /// The model cited nothing here; the citation was added because a source supports it.
    pub auto_cited: bool,
    /// Model citations that were replaced (see [`SentenceVerdict::moved_from`]).
    pub moved_from: Vec<usize>,
    /// The sentence is filler ("The answer is:", "Sure!"): it claims nothing and cites nothing.
    pub filler: bool,
}

#[derive(Debug, Clone)]
pub struct CitationCheck {
    pub answer: String,
    /// Numbers cited by the model that match no given source (removed from the answer).
    pub invalid: Vec<usize>,
    pub sentences: Vec<SentenceCheck>,
}

/// What [`CitationChecker::check`] decides for one sentence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SentenceVerdict {
    /// The final citations (valid source numbers only, in order, without repeats).
    pub cites: Vec<usize>,
    /// Numbers the model wrote that name no source (0, or above the number of sources).
    pub invalid: Vec<usize>,
    /// Valid model citations replaced by `cites`: another source supports the claim clearly
    /// better, or the cited ones lack a number or name of the claim that another source holds.
    pub moved_from: Vec<usize>,
    /// The model cited nothing and `cites` was added because that source supports the claim.
    pub auto_cited: bool,
    /// The best support (cosine, lifted to the threshold by lexical coverage) of the claim by its
    /// final citations; by any source when it cites nothing; 0 for filler and bare yes/no, which
    /// are not measured.
    pub support: f32,
    pub supported: bool,
    /// The body is only filler ("The answer is:", "Sure!", "Here is the answer"): no claim, no
    /// citation (model citations are dropped), and `supported` is true (nothing unsupported).
    pub filler: bool,
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

/// A move to another source needs it to beat the cited one by this much cosine (under the KB's
/// embedder) ...
///
/// Measured with all-MiniLM-L6-v2 on 52 hand-written claims over five sets of four FAQ-like
/// records (156 claim / wrong-record pairs): a wrong record never beat the right one by both
/// margins (0 moves away from a right citation), and the right record beat a wrong citation by
/// both in 141 of 156 pairs. Cosine alone cannot decide: a record of the same article beat the
/// right one by 0.17 with equal coverage; coverage alone neither: short claims share one or two
/// words with many records. 0.10 is about twice the usual cosine spread between two records on
/// the claim's topic; 0.25 is one content word of a four-word claim.
pub const MOVE_COSINE_MARGIN: f32 = 0.10;
/// ... and by this much lexical coverage (share of the claim's content words), both at once
/// (when the cited source supports the claim; see `CitationChecker`).
pub const MOVE_COVERAGE_MARGIN: f32 = 0.25;

/// Leading phrases that introduce an answer without stating anything, and whether a plain space
/// may follow them ("The answer is 6 weeks"); the others need punctuation or the end ("Sure,"
/// but not "Sure enough", "Answer:" but not "Answer the phone").
const FILLER_LEADS: &[(&str, bool)] = &[
    ("the short answer is", true),
    ("the answer to your question is", true),
    ("the answer is", true),
    ("my answer is", true),
    ("short answer", false),
    ("final answer", false),
    ("answer", false),
    ("sure", false),
    ("certainly", false),
    ("of course", false),
    ("okay", false),
    ("ok", false),
    ("great question", false),
    ("good question", false),
    ("here is the answer to your question", false),
    ("here is the answer", false),
    ("here's the answer", false),
    ("here is my answer", false),
    ("here is what i found", false),
    ("here's what i found", false),
    ("to answer your question", false),
    ("according to the provided sources", true),
    ("according to the sources", true),
    ("according to the source", true),
    ("according to the documents", true),
    ("according to the context", true),
    ("according to the knowledge base", true),
    ("according to sources", true),
    ("according to source", true),
    ("based on the provided sources", true),
    ("based on the sources", true),
    ("based on the information provided", true),
    ("based on the context", true),
    ("based on the documents", true),
];

/// A body that starts with one of these (after any leading filler) is only filler.
const FILLER_CLOSINGS: &[&str] = &[
    "i hope this helps",
    "hope this helps",
    "let me know if",
    "feel free to ask",
    "is there anything else",
];

/// `s` starts with `phrase` (ASCII lower case; case-insensitive, either apostrophe): the byte
/// length matched.
fn match_phrase(s: &str, phrase: &str) -> Option<usize> {
    let mut it = s.char_indices();
    for p in phrase.chars() {
        let (_, c) = it.next()?;
        let ok = match p {
            '\'' => c == '\'' || c == '\u{2019}',
            _ => c.to_ascii_lowercase() == p,
        };
        if !ok {
            return None;
        }
    }
    Some(it.next().map_or(s.len(), |(i, _)| i))
}

fn filler_punct(c: char) -> bool {
    matches!(
        c,
        ':' | ',' | '!' | '.' | ';' | '-' | '\u{2013}' | '\u{2014}'
    )
}

/// Split a sentence body into its leading filler ("The answer is: ", "Sure, according to the
/// sources, ") and the claim after it. A body that is only filler ("Here is the answer", "I hope
/// this helps") gives the whole body as filler and an empty claim. The two parts are slices of
/// `body`: `filler.len() + claim.len() == body.len()` up to the whitespace between them.
pub fn strip_filler(body: &str) -> (&str, &str) {
    let mut k = 0;
    'phrases: loop {
        let rest = body[k..].trim_start();
        for &(phrase, space_ok) in FILLER_LEADS {
            let Some(n) = match_phrase(rest, phrase) else {
                continue;
            };
            let after = &rest[n..];
            match after.chars().next() {
                None => {}
                Some(c) if filler_punct(c) => {}
                Some(c) if c.is_whitespace() && space_ok => {}
                _ => continue,
            }
            let tail = after.trim_start_matches(|c: char| filler_punct(c) || c.is_whitespace());
            k = body.len() - tail.len();
            if tail.is_empty() {
                break 'phrases;
            }
            continue 'phrases;
        }
        break;
    }
    let claim = body[k..].trim_start();
    if FILLER_CLOSINGS
        .iter()
        .any(|c| match_phrase(claim, c).is_some())
    {
        return (body, &body[body.len()..]);
    }
    (&body[..k], claim)
}

/// A number of a claim: one value, or a range ("4-6", "4–6").
#[derive(Debug, Clone, PartialEq, Eq)]
enum Num {
    One(String),
    Range(String, String),
}

const NUMBER_WORDS: &[&str] = &[
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
];
const TENS_WORDS: &[&str] = &[
    "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

fn number_word(w: &str) -> Option<String> {
    if let Some(i) = NUMBER_WORDS.iter().position(|x| *x == w) {
        return Some(i.to_string());
    }
    TENS_WORDS
        .iter()
        .position(|x| *x == w)
        .map(|i| ((i + 3) * 10).to_string())
}

fn is_dash(c: char) -> bool {
    matches!(
        c,
        '-' | '\u{2010}' | '\u{2011}' | '\u{2012}' | '\u{2013}' | '\u{2014}' | '\u{2212}'
    )
}

/// Spaces used between digit groups ("10 000").
fn is_group_space(c: char) -> bool {
    matches!(c, '\u{a0}' | '\u{202f}' | '\u{2009}')
}

/// The numeric token starting at `chars[i]` (a digit): digits with inner separators ('.', ',',
/// group spaces as ' '), and the index after it.
fn read_number(chars: &[char], mut i: usize) -> (String, usize) {
    let mut raw = String::new();
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() {
            raw.push(c);
        } else if (c == '.' || c == ',' || is_group_space(c))
            && chars.get(i + 1).is_some_and(char::is_ascii_digit)
        {
            raw.push(if is_group_space(c) { ' ' } else { c });
        } else {
            break;
        }
        i += 1;
    }
    (raw, i)
}

/// The values of a numeric token: thousands separators dropped ("10,000", "10 000",
/// "1.234.567"), a decimal comma read as a point ("3,5" = "3.5"), leading and trailing zeros
/// dropped; anything else ("07.02.2016", "1,2,3") is its separate integers. A lone "1.200" is
/// read as 1.2 (a point with three digits after it is ambiguous; both sides read it alike).
fn normalize(raw: &str) -> Vec<String> {
    let seps: Vec<char> = raw.chars().filter(|c| !c.is_ascii_digit()).collect();
    let groups: Vec<&str> = raw.split(|c: char| !c.is_ascii_digit()).collect();
    let int = |g: &str| {
        let t = g.trim_start_matches('0');
        if t.is_empty() {
            "0".to_string()
        } else {
            t.to_string()
        }
    };
    let dec = |i: &str, f: &str| {
        let f = f.trim_end_matches('0');
        if f.is_empty() {
            int(i)
        } else {
            format!("{}.{f}", int(i))
        }
    };
    let threes = |gs: &[&str]| gs.iter().all(|g| g.len() == 3);
    match seps.as_slice() {
        [] => vec![int(raw)],
        [c] => match c {
            ',' | ' ' if groups[0].len() <= 3 && groups[1].len() == 3 => {
                vec![int(&groups.concat())]
            }
            ' ' => groups.iter().map(|g| int(g)).collect(),
            _ => vec![dec(groups[0], groups[1])],
        },
        [first, .., last] => {
            let n = groups.len();
            let inner = &seps[..seps.len() - 1];
            if seps.iter().all(|c| c == first) && groups[0].len() <= 3 && threes(&groups[1..]) {
                vec![int(&groups.concat())]
            } else if inner.iter().all(|c| c == first)
                && last != first
                && *last != ' '
                && groups[0].len() <= 3
                && threes(&groups[1..n - 1])
            {
                vec![dec(&groups[..n - 1].concat(), groups[n - 1])]
            } else {
                groups.iter().map(|g| int(g)).collect()
            }
        }
    }
}

/// The numbers in `text`: digits (see `normalize`), two joined by a dash as a range ("4-6",
/// "4 – 6"; three or more, like "2016-02-07", are separate values), and number words ("ten");
/// "one" only when `with_one` (in a claim it is more often a pronoun than a number).
fn numbers(text: &str, with_one: bool) -> Vec<Num> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let (raw, mut j) = read_number(&chars, i);
        let mut chain = vec![normalize(&raw)];
        loop {
            let mut k = j;
            while chars.get(k) == Some(&' ') {
                k += 1;
            }
            if !chars.get(k).is_some_and(|&c| is_dash(c)) {
                break;
            }
            k += 1;
            while chars.get(k) == Some(&' ') {
                k += 1;
            }
            if !chars.get(k).is_some_and(char::is_ascii_digit) {
                break;
            }
            let (raw, e) = read_number(&chars, k);
            chain.push(normalize(&raw));
            j = e;
        }
        match chain.as_slice() {
            [a, b] if a.len() == 1 && b.len() == 1 => {
                out.push(Num::Range(a[0].clone(), b[0].clone()));
            }
            _ => out.extend(chain.into_iter().flatten().map(Num::One)),
        }
        i = j;
    }
    for w in words(text) {
        if w == "one" && !with_one {
            continue;
        }
        if let Some(v) = number_word(&w) {
            out.push(Num::One(v));
        }
    }
    out
}

/// Capitalised words of a claim that are not sentence-initial (lower-cased): names, places,
/// months. The first word counts only as an acronym ("EU"): a capitalised first word cannot be
/// told from a name. "I" and a claim in capitals throughout give none.
fn names(claim: &str) -> Vec<String> {
    if !claim.chars().any(char::is_lowercase) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let runs = claim
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty());
    for (i, w) in runs.enumerate() {
        if !w.chars().next().is_some_and(char::is_uppercase) || w == "I" {
            continue;
        }
        let acronym = w.chars().count() >= 2 && !w.chars().any(char::is_lowercase);
        if i == 0 && !acronym {
            continue;
        }
        let w = w.to_lowercase();
        if !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

/// The numbers and names a claim states: its cited source must hold them all.
#[derive(Debug, Default)]
struct Keys {
    nums: Vec<Num>,
    names: Vec<String>,
}

impl Keys {
    fn of(claim: &str) -> Self {
        let mut nums = Vec::new();
        for n in numbers(claim, false) {
            if !nums.contains(&n) {
                nums.push(n);
            }
        }
        Keys {
            nums,
            names: names(claim),
        }
    }
}

/// The numbers of a source: every value, range endpoints included, and its ranges.
struct SourceNumbers {
    values: HashSet<String>,
    ranges: HashSet<(String, String)>,
}

impl SourceNumbers {
    fn of(text: &str) -> Self {
        let mut values = HashSet::new();
        let mut ranges = HashSet::new();
        for n in numbers(text, true) {
            match n {
                Num::One(v) => {
                    values.insert(v);
                }
                Num::Range(a, b) => {
                    values.insert(a.clone());
                    values.insert(b.clone());
                    ranges.insert((a, b));
                }
            }
        }
        SourceNumbers { values, ranges }
    }

    /// A value is held as a value or a range end ("6 weeks" in "4-6 weeks"); a range as a range
    /// or by both its ends ("between 4 and 6").
    fn holds(&self, n: &Num) -> bool {
        match n {
            Num::One(v) => self.values.contains(v),
            Num::Range(a, b) => {
                self.ranges.contains(&(a.clone(), b.clone()))
                    || (self.values.contains(a) && self.values.contains(b))
            }
        }
    }
}

/// Decides the citations of answer sentences against a fixed set of sources, one sentence at a
/// time (so that it can run while the answer streams). The sources are embedded once.
///
/// For a sentence body (markers removed, final punctuation removed) and the numbers the model
/// cited for it:
/// 1. Invalid numbers are reported and dropped; leading filler is set aside (`strip_filler`); a
///    body that is only filler claims nothing: no citation, not unsupported.
/// 2. A bare yes/no (a claim without content words: "No", "It is not") cannot be checked
///    without the question: it is supported only when the model cited source 1, the best-ranked
///    source (the one retrieved for the question). It is never auto-cited and never moved.
/// 3. Any other claim is compared with every source: cosine under the embedder, lexical
///    coverage, and whether the source holds the claim's numbers and names (`Keys`). A source
///    supports it when it holds them and its cosine, lifted to the threshold when coverage
///    reaches `LEXICAL_COVERAGE`, reaches the threshold.
/// 4. When the cited sources (together) lack a number or name and a single other source holds
///    them all and supports the claim, the citation moves there. When the cited ones hold them,
///    the citation moves only to a supporting source that beats the best cited one by both
///    `MOVE_COSINE_MARGIN` and `MOVE_COVERAGE_MARGIN` (by the cosine margin and no less
///    coverage when the cited one does not support the claim). Otherwise the citations stay:
///    when no source holds the claim's numbers, the marker stays (the reader sees what the model
///    claimed) and the sentence is unsupported.
/// 5. An uncited claim is cited to the strongest supporting source (mean of cosine and
///    coverage; the better-ranked on ties), if any.
///
/// The body text is never changed; only the markers after it are decided.
pub struct CitationChecker<'e> {
    embedder: &'e dyn Embedder,
    threshold: f32,
    vecs: Vec<Vec<f32>>,
    words: Vec<HashSet<String>>,
    numbers: Vec<SourceNumbers>,
}

impl<'e> CitationChecker<'e> {
    /// Embed the sources (source n is `sources[n - 1]`) once.
    pub fn new(sources: &[&str], embedder: &'e dyn Embedder, threshold: f32) -> Result<Self> {
        let vecs = if sources.is_empty() {
            Vec::new()
        } else {
            embedder.embed(sources)?
        };
        Ok(CitationChecker {
            embedder,
            threshold,
            vecs,
            words: sources
                .iter()
                .map(|s| words(s).into_iter().collect())
                .collect(),
            numbers: sources.iter().map(|s| SourceNumbers::of(s)).collect(),
        })
    }

    /// Whether `srcs` together hold every number and name of the claim.
    fn holds(&self, keys: &Keys, srcs: &[usize]) -> bool {
        keys.nums
            .iter()
            .all(|n| srcs.iter().any(|&s| self.numbers[s - 1].holds(n)))
            && keys
                .names
                .iter()
                .all(|w| srcs.iter().any(|&s| self.words[s - 1].contains(w)))
    }

    /// `body`: one sentence's text with every [n] marker already removed and without its final
    /// punctuation; `model_cites`: the numbers the model wrote for it, in order (may hold
    /// invalid ones).
    pub fn check(&self, body: &str, model_cites: &[usize]) -> Result<SentenceVerdict> {
        let n_src = self.vecs.len();
        let mut v = SentenceVerdict {
            cites: Vec::new(),
            invalid: Vec::new(),
            moved_from: Vec::new(),
            auto_cited: false,
            support: 0.0,
            supported: false,
            filler: false,
        };
        let mut cited = Vec::new();
        for &n in model_cites {
            let list = if n == 0 || n > n_src {
                &mut v.invalid
            } else {
                &mut cited
            };
            if !list.contains(&n) {
                list.push(n);
            }
        }
        let (_, claim) = strip_filler(body);
        if !claim.chars().any(char::is_alphanumeric) {
            v.filler = true;
            v.supported = true;
            return Ok(v);
        }
        if !words(claim)
            .iter()
            .any(|w| !FUNCTION_WORDS.contains(&w.as_str()))
        {
            // A bare yes/no.
            v.supported = cited.contains(&1);
            v.cites = cited;
            return Ok(v);
        }
        if n_src == 0 {
            return Ok(v);
        }

        let keys = Keys::of(claim);
        let cv = self
            .embedder
            .embed(&[claim])?
            .pop()
            .expect("one vector per text");
        let cos: Vec<f32> = self.vecs.iter().map(|s| dot(&cv, s)).collect();
        let cov: Vec<f32> = self.words.iter().map(|w| coverage(claim, w)).collect();
        let t = self.threshold;
        // Lexical support counts as reaching the threshold.
        let sim = |n: usize| {
            if cov[n - 1] >= LEXICAL_COVERAGE {
                cos[n - 1].max(t)
            } else {
                cos[n - 1]
            }
        };
        let strength = |n: usize| (cos[n - 1] + cov[n - 1]) / 2.0;
        // The strongest source that holds the claim's numbers and names and supports it
        // (the better-ranked one on ties).
        let best = (1..=n_src)
            .filter(|&n| self.holds(&keys, &[n]) && sim(n) >= t)
            .max_by(|&a, &b| strength(a).total_cmp(&strength(b)).then(b.cmp(&a)));

        if cited.is_empty() {
            if let Some(b) = best {
                v.cites = vec![b];
                v.auto_cited = true;
            }
        } else if !self.holds(&keys, &cited) {
            match best {
                Some(b) => {
                    v.moved_from = cited;
                    v.cites = vec![b];
                }
                None => v.cites = cited,
            }
        } else {
            let c = *cited
                .iter()
                .max_by(|&&a, &&b| strength(a).total_cmp(&strength(b)).then(b.cmp(&a)))
                .expect("not empty");
            // When the cited source does not support the claim at all, a supporting source
            // need not beat its coverage by the margin, only match it.
            let cov_margin = if sim(c) >= t {
                MOVE_COVERAGE_MARGIN
            } else {
                0.0
            };
            match best {
                Some(b)
                    if !cited.contains(&b)
                        && cos[b - 1] >= cos[c - 1] + MOVE_COSINE_MARGIN
                        && cov[b - 1] >= cov[c - 1] + cov_margin =>
                {
                    v.moved_from = cited;
                    v.cites = vec![b];
                }
                _ => v.cites = cited,
            }
        }
        v.support = if v.cites.is_empty() {
            (1..=n_src).map(sim).fold(f32::MIN, f32::max)
        } else {
            v.cites.iter().map(|&n| sim(n)).fold(f32::MIN, f32::max)
        };
        v.supported = !v.cites.is_empty() && v.support >= t && self.holds(&keys, &v.cites);
        Ok(v)
    }
}

/// Check `answer` against `sources` (source n is `sources[n - 1]`): every sentence goes through
/// [`CitationChecker::check`] and is written back as "body [n]." (`render`).
pub fn check_citations(
    answer: &str,
    sources: &[&str],
    embedder: &dyn Embedder,
    threshold: f32,
) -> Result<CitationCheck> {
    let checker = CitationChecker::new(sources, embedder, threshold)?;
    let mut invalid = Vec::new();
    let mut checks = Vec::new();
    let mut out = Vec::new();
    for sentence in split_sentences(answer) {
        let (nums, plain) = take_citations(&sentence);
        let body = plain.trim_end_matches(['.', '!', '?']).trim_end();
        let v = checker.check(body, &nums)?;
        invalid.extend(v.invalid.iter().copied());
        let text = render(&plain, &v.cites);
        out.push(text.clone());
        checks.push(SentenceCheck {
            text,
            cites: v.cites,
            support: v.support,
            supported: v.supported,
            auto_cited: v.auto_cited,
            moved_from: v.moved_from,
            filler: v.filler,
        });
    }
    invalid.sort_unstable();
    invalid.dedup();
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
    use lorag_embed::EmbedError;

    /// Bag of words over a small topic vocabulary (crude plural stemming; other words are not
    /// seen): cosines behave like a topic model.
    struct FakeEmbedder;

    const VOCAB: &[&str] = &[
        "building",
        "permit",
        "processing",
        "time",
        "week",
        "geothermal",
        "heat",
        "pump",
        "drilling",
        "borehole",
        "deck",
        "fee",
        "inspection",
        "inspector",
        "foundation",
        "committee",
        "stockholm",
        "uppsala",
        "application",
        "decided",
        "case",
        "simple",
    ];

    impl lorag_core::TokenCounter for FakeEmbedder {
        fn count_tokens(&self, text: &str) -> usize {
            text.split_whitespace().count()
        }
    }

    impl Embedder for FakeEmbedder {
        fn model_id(&self) -> &str {
            "fake"
        }
        fn dim(&self) -> usize {
            VOCAB.len()
        }
        fn max_tokens(&self) -> usize {
            512
        }
        fn embed(&self, texts: &[&str]) -> std::result::Result<Vec<Vec<f32>>, EmbedError> {
            Ok(texts
                .iter()
                .map(|t| {
                    let mut v = vec![0f32; VOCAB.len()];
                    for w in words(t) {
                        if FUNCTION_WORDS.contains(&w.as_str()) {
                            continue;
                        }
                        let stem = w.strip_suffix('s').unwrap_or(&w);
                        if let Some(i) = VOCAB.iter().position(|x| *x == stem) {
                            v[i] += 1.0;
                        }
                    }
                    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
                    v.iter().map(|x| x / n).collect()
                })
                .collect())
        }
    }

    const FAQ: [&str; 4] = [
        "How long does it take to get a building permit? The statutory processing time for a building permit is 10 weeks; simple cases are often decided in 4-6 weeks.",
        "What does a building permit cost? The fee depends on the size of the building; a small extension costs about 12,000 SEK.",
        "Do I need a permit for a deck? A deck lower than 1.2 metres needs no building permit in Uppsala.",
        "Geothermal heat pumps: drilling a borehole for a geothermal heat pump needs a permit from the environment office; it is usually handled within 3 weeks.",
    ];

    fn checker() -> CitationChecker<'static> {
        CitationChecker::new(&FAQ, &FakeEmbedder, 0.45).unwrap()
    }

    #[test]
    fn filler_is_split_from_the_claim() {
        assert_eq!(
            strip_filler("The answer is: 6 weeks"),
            ("The answer is: ", "6 weeks")
        );
        assert_eq!(
            strip_filler("The answer is 6 weeks"),
            ("The answer is ", "6 weeks")
        );
        assert_eq!(strip_filler("Answer: No"), ("Answer: ", "No"));
        assert_eq!(
            strip_filler("Sure, according to the sources, permits take 10 weeks"),
            ("Sure, according to the sources, ", "permits take 10 weeks")
        );
        assert_eq!(
            strip_filler("According to source, the fee is 40 euros"),
            ("According to source, ", "the fee is 40 euros")
        );
        assert_eq!(
            strip_filler("Here\u{2019}s the answer:"),
            ("Here\u{2019}s the answer:", "")
        );
        assert_eq!(strip_filler("Sure!"), ("Sure!", ""));
        assert_eq!(
            strip_filler("Here is the answer"),
            ("Here is the answer", "")
        );
        assert_eq!(strip_filler("I hope this helps"), ("I hope this helps", ""));
        // Not filler: the phrase is part of the claim.
        assert_eq!(
            strip_filler("Sure enough, it rains"),
            ("", "Sure enough, it rains")
        );
        assert_eq!(
            strip_filler("Answering takes time"),
            ("", "Answering takes time")
        );
        assert_eq!(strip_filler("Okapis are rare"), ("", "Okapis are rare"));
        assert_eq!(
            strip_filler("  Permits take 10 weeks"),
            ("", "Permits take 10 weeks")
        );
    }

    #[test]
    fn numbers_are_normalised() {
        let src = SourceNumbers::of(
            "Simple cases take 4\u{2013}6 weeks, the fee is 12,000 SEK (3,5 percent), ten days, 1.50 m, on 07.02.2016 and 2016-02-09.",
        );
        let claim = |s: &str| Keys::of(s).nums;
        for ok in [
            "4-6 weeks",
            "4 - 6 weeks",
            "6 weeks",
            "a 6-week wait",
            "12000 SEK",
            "12\u{a0}000 SEK",
            "3.5 percent",
            "10 days",
            "1.5 m",
            "7 February 2016",
            "the 9th",
        ] {
            let nums = claim(ok);
            assert!(!nums.is_empty(), "{ok}");
            assert!(nums.iter().all(|n| src.holds(n)), "{ok}: {nums:?}");
        }
        for bad in ["5 weeks", "4-8 weeks", "12,500 SEK", "eleven days", "1.2 m"] {
            assert!(!claim(bad).iter().all(|n| src.holds(n)), "{bad}");
        }
        assert_eq!(
            claim("one of the fees"),
            vec![],
            "\"one\" in a claim is a pronoun"
        );
        assert_eq!(
            claim("It costs 1,234,567.50 or 1.234.567"),
            vec![Num::One("1234567.5".into()), Num::One("1234567".into())]
        );
    }

    #[test]
    fn names_skip_the_sentence_initial_word() {
        assert_eq!(
            names("Permits in Stockholm take 10 weeks"),
            vec!["stockholm"]
        );
        assert_eq!(names("EU rules apply to Levi's farm"), vec!["eu", "levi"]);
        assert_eq!(names("I think so"), Vec::<String>::new());
        assert_eq!(names("ALL CAPS SHOUTING"), Vec::<String>::new());
    }

    #[test]
    fn invalid_numbers_are_reported_and_dropped() {
        let v = checker()
            .check(
                "The statutory processing time is 10 weeks",
                &[7, 1, 0, 1, 7],
            )
            .unwrap();
        assert_eq!(v.invalid, vec![7, 0]);
        assert_eq!(v.cites, vec![1]);
        assert!(
            v.supported && v.moved_from.is_empty() && !v.auto_cited,
            "{v:?}"
        );
    }

    #[test]
    fn a_number_the_cited_source_lacks_moves_the_citation() {
        // The demo: "6 weeks" is in [1] ("4-6 weeks"), not in the geothermal record [4].
        let v = checker().check("The answer is: 6 weeks", &[4]).unwrap();
        assert_eq!(
            (v.cites.clone(), v.moved_from.clone()),
            (vec![1], vec![4]),
            "{v:?}"
        );
        assert!(v.supported && !v.filler && !v.auto_cited, "{v:?}");
        // The same with the number written out, and with the other dash.
        let v = checker()
            .check("Simple cases take four to six weeks", &[4])
            .unwrap();
        assert_eq!(v.cites, vec![1], "{v:?}");
        let v = checker()
            .check("Simple cases are decided in 4\u{2013}6 weeks", &[2])
            .unwrap();
        assert_eq!((v.cites, v.moved_from), (vec![1], vec![2]));
    }

    #[test]
    fn a_number_no_source_holds_keeps_the_citation_unsupported() {
        let v = checker().check("The answer is: 8 weeks", &[1]).unwrap();
        assert_eq!(v.cites, vec![1]);
        assert!(!v.supported && v.moved_from.is_empty(), "{v:?}");
        // Uncited: nothing to cite.
        let v = checker().check("Processing takes 8 weeks", &[]).unwrap();
        assert!(v.cites.is_empty() && !v.supported && !v.auto_cited, "{v:?}");
    }

    #[test]
    fn a_name_the_cited_source_lacks_moves_the_citation() {
        let v = checker()
            .check("A low deck needs no building permit in Uppsala", &[1])
            .unwrap();
        assert_eq!((v.cites, v.moved_from), (vec![3], vec![1]));
        let v = checker()
            .check("A low deck needs no building permit in Stockholm", &[3])
            .unwrap();
        assert_eq!(v.cites, vec![3]);
        assert!(!v.supported, "Stockholm is in no source: {v:?}");
    }

    #[test]
    fn a_clearly_better_source_takes_the_citation() {
        // Right topic, no numbers: [4] beats [1] on cosine and coverage by both margins.
        let v = checker()
            .check(
                "Drilling a borehole for a geothermal heat pump needs a permit",
                &[1],
            )
            .unwrap();
        assert_eq!((v.cites, v.moved_from), (vec![4], vec![1]));
    }

    #[test]
    fn a_source_that_does_not_support_the_claim_yields_to_one_that_does() {
        // Same coverage (only "permit" is in either), but [1] does not support the claim and [3]
        // does, by far more than the cosine margin.
        let v = checker()
            .check("Low decks are exempt from the permit requirement", &[1])
            .unwrap();
        assert_eq!((v.cites, v.moved_from), (vec![3], vec![1]));
        assert!(v.supported);
    }

    #[test]
    fn a_right_citation_stays_when_another_source_is_close() {
        // [1] and [2] both speak of building permits; the model cited one that supports the
        // claim, and the other is not better by both margins.
        let c = checker();
        for (body, n) in [
            ("The processing time for a building permit is 10 weeks", 1),
            (
                "A building permit fee depends on the size of the building",
                2,
            ),
            ("A small extension costs about 12000 SEK", 2),
            ("A low deck needs no building permit", 3),
            (
                "Geothermal drilling permits are usually handled within 3 weeks",
                4,
            ),
        ] {
            let v = c.check(body, &[n]).unwrap();
            assert_eq!(v.cites, vec![n], "{body}: {v:?}");
            assert!(v.supported && v.moved_from.is_empty(), "{body}: {v:?}");
        }
        // A sentence citing two sources for two facts keeps both: together they hold its numbers.
        let v = c
            .check(
                "A permit takes 10 weeks and geothermal drilling 3 weeks",
                &[1, 4],
            )
            .unwrap();
        assert_eq!(v.cites, vec![1, 4], "{v:?}");
        assert!(v.moved_from.is_empty(), "{v:?}");
    }

    #[test]
    fn an_uncited_claim_is_cited_to_the_source_that_supports_it() {
        let v = checker()
            .check("A small extension costs 12,000 SEK", &[])
            .unwrap();
        assert_eq!(v.cites, vec![2]);
        assert!(
            v.auto_cited && v.supported && v.moved_from.is_empty(),
            "{v:?}"
        );
        let v = checker().check("Bananas are yellow fruit", &[]).unwrap();
        assert!(v.cites.is_empty() && !v.supported && !v.auto_cited, "{v:?}");
    }

    #[test]
    fn filler_claims_nothing_and_cites_nothing() {
        for body in [
            "The answer is:",
            "Sure",
            "Here is the answer",
            "I hope this helps",
            "",
        ] {
            let v = checker().check(body, &[2]).unwrap();
            assert!(
                v.filler && v.supported && v.cites.is_empty(),
                "{body:?}: {v:?}"
            );
        }
    }

    #[test]
    fn a_bare_yes_or_no_stands_only_on_the_best_ranked_source() {
        let v = checker().check("The answer is: No", &[]).unwrap();
        assert!(
            !v.filler && !v.supported && v.cites.is_empty() && !v.auto_cited,
            "{v:?}"
        );
        let v = checker().check("No", &[1]).unwrap();
        assert!(v.supported && v.cites == vec![1], "{v:?}");
        let v = checker().check("Yes", &[3]).unwrap();
        assert!(
            !v.supported && v.cites == vec![3] && v.moved_from.is_empty(),
            "{v:?}"
        );
    }

    #[test]
    fn check_citations_renders_the_decided_markers_around_the_same_words() {
        let answer = "Sure! The answer is: 6 weeks [4]. The answer is: No. Bananas are yellow [9].";
        let c = check_citations(answer, &FAQ, &FakeEmbedder, 0.45).unwrap();
        assert_eq!(
            c.answer,
            "Sure! The answer is: 6 weeks [1]. The answer is: No. Bananas are yellow."
        );
        assert_eq!(c.invalid, vec![9]);
        let s = &c.sentences;
        assert!(
            s[0].filler && s[0].supported && s[0].cites.is_empty(),
            "{s:?}"
        );
        assert_eq!(
            (s[1].cites.clone(), s[1].moved_from.clone()),
            (vec![1], vec![4])
        );
        assert!(s[1].supported, "{s:?}");
        assert!(!s[2].supported && !s[2].filler, "a bare uncited No: {s:?}");
        assert!(!s[3].supported, "{s:?}");
        let json = serde_json::to_string(&s[1]).unwrap();
        assert!(
            json.contains("\"moved_from\":[4]") && json.contains("\"filler\":false"),
            "{json}"
        );
    }

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
