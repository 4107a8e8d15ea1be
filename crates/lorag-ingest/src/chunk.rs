//! Token-aware chunking that follows the document's structure.
//!
//! The text is cut into *atoms*: each heading line (never split), then the body of each section
//! split recursively — into paragraphs (at blank lines), a paragraph over budget into sentences,
//! then lines, then words, and a word over budget into pieces of characters — until every atom
//! fits. Each atom remembers the boundary before it. Counting pieces (never a growing chunk)
//! keeps chunking linear in the text: the counter sees each byte a few times, plus each
//! finished chunk once.
//!
//! Chunks are packed greedily from atoms:
//! - A heading starts a new chunk once the current chunk has body text: sections are never
//!   merged, except that a heading with no body of its own stays with what follows (`# A` +
//!   `## B` + B's text).
//! - When the next atom does not fit: if the chunk has no body yet or is less than half full,
//!   that atom is split one level finer (paragraph → sentences → lines → words → characters)
//!   to fill the chunk; otherwise the chunk ends at the strongest boundary it contains
//!   (paragraph > sentence > line > word > character) that keeps it at least half full, else
//!   before that atom.
//! - Within a section, the next chunk starts with about `overlap` tokens (at most half the
//!   budget, and only as many as fit beside the next atom) of the previous chunk, from a word
//!   start, never inside a heading line.
//! - The budget is `max_tokens` less what the counter adds to every text (special tokens,
//!   measured on `""`). A finished chunk is counted; if the counter is not additive and the count
//!   is over `max_tokens`, trailing atoms are dropped. Only a heading line longer than the
//!   budget makes a chunk over `max_tokens`.

use lorag_core::{Chunk, Document, TokenCounter};

use crate::ChunkOptions;

/// Boundary kinds, weakest first; an atom's `level` is the kind of split that produced it.
const CHAR: u8 = 0;
const WORD: u8 = 1;
const LINE: u8 = 2;
const SENTENCE: u8 = 3;
const PARA: u8 = 4;
const SECTION: u8 = 5;

/// At most this many recounts to bring a chunk under `max_tokens` (non-additive counters).
const MAX_SHRINK: usize = 16;

#[derive(Debug, Clone, Copy)]
struct Atom {
    start: usize,
    end: usize,
    /// Tokens, less the counter's per-text overhead.
    cost: usize,
    /// The boundary before this atom.
    prio: u8,
    /// The split that produced it (`SECTION` for a heading line, which is never split).
    level: u8,
}

impl Atom {
    fn is_heading(&self) -> bool {
        self.level == SECTION
    }
}

struct Chunker<'a> {
    text: &'a str,
    counter: &'a dyn TokenCounter,
    /// Tokens the counter gives `""` (special tokens), subtracted from every count.
    base: usize,
    budget: usize,
    atoms: Vec<Atom>,
}

/// Cuts `doc` into chunks of at most `opts.max_tokens` tokens (see the module docs). Each
/// chunk's `text == doc.text[start..end]`, trimmed of whitespace, with `section`/`page` those
/// at its start.
pub fn chunk(doc: &Document, counter: &dyn TokenCounter, opts: &ChunkOptions) -> Vec<Chunk> {
    let text = doc.text.as_str();
    if text.trim().is_empty() {
        return Vec::new();
    }
    let max = opts.max_tokens.max(1);
    let base = counter.count_tokens("");
    let budget = max.saturating_sub(base).max(1);
    let overlap = opts.overlap.min(budget / 2);
    let mut c = Chunker {
        text,
        counter,
        base,
        budget,
        atoms: Vec::new(),
    };
    let headings = heading_lines(doc);
    c.build_atoms(&headings);
    c.pack(doc, max, overlap, &headings)
}

/// `[start, end)` of every heading line (sorted by start; a setext underline included).
fn heading_lines(doc: &Document) -> Vec<(usize, usize)> {
    let text = doc.text.as_str();
    let mut starts: Vec<usize> = doc
        .sections
        .iter()
        .map(|s| s.start)
        .filter(|&s| s < text.len() && text.is_char_boundary(s))
        .collect();
    starts.sort_unstable();
    starts.dedup();
    let mut lines: Vec<(usize, usize)> = Vec::with_capacity(starts.len());
    for (i, &start) in starts.iter().enumerate() {
        let limit = starts.get(i + 1).copied().unwrap_or(text.len());
        let mut end = line_end(text, start).min(limit);
        // A setext heading: the next line is all `=` or all `-`.
        if end < limit {
            let next_end = line_end(text, end + 1).min(limit);
            let next = text[end + 1..next_end].trim();
            if !next.is_empty()
                && (next.bytes().all(|b| b == b'=') || next.bytes().all(|b| b == b'-'))
            {
                end = next_end;
            }
        }
        lines.push((start, end));
    }
    lines
}

/// The position of the `\n` ending the line at `pos`, or the text's end.
fn line_end(text: &str, pos: usize) -> usize {
    text[pos..].find('\n').map_or(text.len(), |i| pos + i)
}

/// The pieces of `[start, end)` at boundaries of kind `level` (`SENTENCE`, `LINE`, `WORD`,
/// or `PARA`), each ending with the whitespace after it.
fn split_at(text: &str, level: u8, start: usize, end: usize) -> Vec<(usize, usize)> {
    match level {
        PARA => split_paragraphs(text, start, end),
        SENTENCE => split_sentences(text, start, end),
        LINE => split_lines(text, start, end),
        _ => split_words(text, start, end),
    }
}

impl Chunker<'_> {
    fn cost(&self, start: usize, end: usize) -> usize {
        self.counter
            .count_tokens(&self.text[start..end])
            .saturating_sub(self.base)
    }

    fn atom(&self, start: usize, end: usize, prio: u8, level: u8) -> Atom {
        Atom {
            start,
            end,
            cost: self.cost(start, end),
            prio,
            level,
        }
    }

    fn build_atoms(&mut self, headings: &[(usize, usize)]) {
        let len = self.text.len();
        // The text before the first heading, then each heading line and the body after it.
        let first = headings.first().map_or(len, |h| h.0);
        if first > 0 {
            self.body(0, first, PARA, PARA);
        }
        for (i, &(start, end)) in headings.iter().enumerate() {
            let next = headings.get(i + 1).map_or(len, |h| h.0);
            // The heading atom takes its line break, so a body starts on its own line.
            let end = if end < next { end + 1 } else { end };
            let heading = self.atom(start, end, SECTION, SECTION);
            self.atoms.push(heading);
            if end < next {
                self.body(end, next, PARA, PARA);
            }
        }
    }

    /// Adds atoms for body text `[start, end)` split at `level` boundaries (finer where a
    /// piece is over budget); the first atom gets boundary `first_prio`.
    fn body(&mut self, start: usize, end: usize, level: u8, first_prio: u8) {
        if self.text[start..end].trim().is_empty() {
            // Whitespace joins the atom before it (atoms stay contiguous).
            match self.atoms.last_mut() {
                Some(last) if last.end == start => last.end = end,
                _ => self.atoms.push(Atom {
                    start,
                    end,
                    cost: 0,
                    prio: first_prio,
                    level,
                }),
            }
            return;
        }
        let pieces = split_at(self.text, level, start, end);
        for (k, &(s, e)) in pieces.iter().enumerate() {
            let prio = if k == 0 { first_prio } else { level };
            let atom = self.atom(s, e, prio, level);
            if atom.cost <= self.budget {
                self.atoms.push(atom);
            } else if level > WORD {
                self.body(s, e, level - 1, prio);
            } else {
                // A word over budget: pieces of characters.
                let mut atom = atom;
                while atom.cost > self.budget {
                    match self.split_chars(atom, self.budget) {
                        Some((head, rest)) => {
                            self.atoms.push(head);
                            atom = rest;
                        }
                        None => break,
                    }
                }
                self.atoms.push(atom);
            }
        }
    }

    /// Splits off the longest prefix of `a` that costs at most `room` (at least one character).
    fn split_chars(&self, a: Atom, room: usize) -> Option<(Atom, Atom)> {
        let text = self.text;
        let one = next_boundary(text, a.start + 1);
        if one >= a.end {
            return None;
        }
        let mut ok = one;
        let mut bad = a.end;
        let mut step = 64;
        loop {
            let probe = next_boundary(text, (ok + step).min(a.end));
            if probe >= bad {
                break;
            }
            if self.cost(a.start, probe) <= room {
                ok = probe;
                step *= 2;
            } else {
                bad = probe;
                break;
            }
        }
        while bad - ok > 1 {
            let mid = next_boundary(text, ok + (bad - ok) / 2);
            if mid >= bad {
                break;
            }
            if self.cost(a.start, mid) <= room {
                ok = mid;
            } else {
                bad = mid;
            }
        }
        let head = self.atom(a.start, ok, a.prio, CHAR);
        let rest = self.atom(ok, a.end, CHAR, CHAR);
        Some((head, rest))
    }

    /// `a` split one level finer (or, for a word, its longest prefix within `room`), in
    /// reverse order for the stack; `None` when it cannot be split.
    fn refine(&self, a: Atom, room: usize) -> Option<Vec<Atom>> {
        if a.is_heading() {
            return None;
        }
        let mut level = a.level;
        while level > WORD {
            level -= 1;
            let pieces = split_at(self.text, level, a.start, a.end);
            if pieces.len() > 1 {
                let atoms = pieces
                    .iter()
                    .enumerate()
                    .rev()
                    .map(|(k, &(s, e))| self.atom(s, e, if k == 0 { a.prio } else { level }, level))
                    .collect();
                return Some(atoms);
            }
        }
        let (head, rest) = self.split_chars(a, room.max(1))?;
        Some(vec![rest, head])
    }

    fn pack(
        &self,
        doc: &Document,
        max: usize,
        overlap: usize,
        headings: &[(usize, usize)],
    ) -> Vec<Chunk> {
        let min_fill = self.budget / 2;
        // Atoms still to place, the next one last.
        let mut todo: Vec<Atom> = self.atoms.iter().rev().copied().collect();
        let mut chunks = Vec::new();
        // Overlap carried into the next chunk: where it starts, and its cost.
        let mut carry: Option<(usize, usize)> = None;
        let mut cur: Vec<Atom> = Vec::new();
        while !todo.is_empty() {
            cur.clear();
            let carry_cost = carry.map_or(0, |c| c.1);
            let mut total = carry_cost;
            let mut has_body = carry.is_some();
            let mut overflow = false;
            while let Some(&a) = todo.last() {
                if a.prio == SECTION && has_body {
                    break;
                }
                if total + a.cost > self.budget {
                    let room = self.budget.saturating_sub(total);
                    if (!has_body || total < min_fill) && room > 0 {
                        if let Some(pieces) = self.refine(a, room) {
                            todo.pop();
                            todo.extend(pieces);
                            continue;
                        }
                    }
                    if !cur.is_empty() {
                        overflow = true;
                        break;
                    }
                }
                todo.pop();
                total += a.cost;
                has_body |= !a.is_heading() && a.cost > 0;
                cur.push(a);
            }
            if overflow {
                let natural = todo.last().map_or(CHAR, |a| a.prio);
                let keep = best_break(&cur, natural, carry_cost, min_fill);
                todo.extend(cur.drain(keep..).rev());
            }
            // Count the chunk; drop trailing atoms (then the overlap) while the count is over.
            let Some(first) = cur.first().copied() else {
                // Nothing fits beside the overlap (cannot happen: it is sized to fit).
                carry = None;
                continue;
            };
            let mut start = carry.map_or(first.start, |c| c.0);
            let mut span = trim(self.text, start, cur[cur.len() - 1].end);
            let mut tokens = self.counter.count_tokens(&self.text[span.0..span.1]);
            let mut tries = 0;
            while tokens > max && tries < MAX_SHRINK {
                if cur.len() > 1 {
                    todo.extend(cur.pop());
                } else if start != first.start {
                    start = first.start;
                } else {
                    break;
                }
                span = trim(self.text, start, cur[cur.len() - 1].end);
                tokens = self.counter.count_tokens(&self.text[span.0..span.1]);
                tries += 1;
            }
            let (s, e) = span;
            if s < e {
                chunks.push(Chunk {
                    ordinal: chunks.len() as u32,
                    text: self.text[s..e].to_string(),
                    start: s,
                    end: e,
                    section: doc.section_at(s),
                    page: doc.page_at(s),
                    tokens,
                });
            }
            carry = match todo.last() {
                Some(next) if overlap > 0 && next.prio != SECTION && s < e => {
                    let room = overlap.min(self.budget.saturating_sub(next.cost));
                    self.overlap_start(s, e, room, headings)
                }
                _ => None,
            };
        }
        chunks
    }

    /// The start of the last words of chunk `[s, e)` worth at most `budget` tokens: a word
    /// start after `s`, not inside a heading line. Returns it with its cost.
    fn overlap_start(
        &self,
        s: usize,
        e: usize,
        budget: usize,
        headings: &[(usize, usize)],
    ) -> Option<(usize, usize)> {
        if budget == 0 {
            return None;
        }
        let text = self.text;
        let mut found: Option<(usize, usize)> = None;
        let mut total = 0;
        let mut taken = e;
        let mut p = e;
        // Walk back word by word: a word starts at a non-space after a space.
        while p > s + 1 {
            p -= 1;
            if !text.is_char_boundary(p) {
                continue;
            }
            let here_ws = text[p..].chars().next().is_some_and(char::is_whitespace);
            let prev_ws = text[..p]
                .chars()
                .next_back()
                .is_some_and(char::is_whitespace);
            if here_ws || !prev_ws {
                continue;
            }
            if in_heading(headings, p) {
                break;
            }
            // The word and the whitespace after it, up to the words already taken.
            let cost = self.cost(p, taken);
            if total + cost > budget {
                break;
            }
            total += cost;
            found = Some((p, total));
            taken = p;
        }
        found
    }
}

/// How many atoms of `cur` to keep when the next atom (boundary `natural`) overflows: up to the
/// strongest boundary stronger than `natural` that keeps at least `min_fill` (the latest such),
/// else all.
fn best_break(cur: &[Atom], natural: u8, carry_cost: usize, min_fill: usize) -> usize {
    let mut best = cur.len();
    let mut best_prio = natural;
    let mut fill = carry_cost;
    for (k, a) in cur.iter().enumerate() {
        if k > 0 && fill >= min_fill && a.prio >= best_prio && a.prio > natural {
            best = k;
            best_prio = a.prio;
        }
        fill += a.cost;
    }
    best
}

fn in_heading(headings: &[(usize, usize)], p: usize) -> bool {
    let k = headings.partition_point(|h| h.0 <= p);
    k > 0 && p < headings[k - 1].1
}

/// `[s, e)` without whitespace at either edge.
fn trim(text: &str, s: usize, e: usize) -> (usize, usize) {
    let slice = &text[s..e];
    let lead = slice.len() - slice.trim_start().len();
    let trail = slice.len() - slice.trim_end().len();
    if lead == slice.len() {
        return (s + lead, s + lead);
    }
    (s + lead, e - trail)
}

/// The first character boundary at or after `pos`.
fn next_boundary(text: &str, mut pos: usize) -> usize {
    while pos < text.len() && !text.is_char_boundary(pos) {
        pos += 1;
    }
    pos.min(text.len())
}

/// Splits `[start, end)` into pieces that each end with their separator, given the positions
/// where a new piece starts.
fn pieces(start: usize, end: usize, cuts: impl Iterator<Item = usize>) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut s = start;
    for c in cuts {
        if c > s && c < end {
            out.push((s, c));
            s = c;
        }
    }
    out.push((s, end));
    out
}

/// Paragraphs: a new one starts at the first non-blank line after a blank line.
fn split_paragraphs(text: &str, start: usize, end: usize) -> Vec<(usize, usize)> {
    let slice = &text[start..end];
    let mut cuts = Vec::new();
    let mut pos = start;
    let mut blank_seen = false;
    let mut any_text = false;
    for line in slice.split_inclusive('\n') {
        let blank = line.trim().is_empty();
        if !blank {
            if blank_seen && any_text {
                cuts.push(pos);
            }
            any_text = true;
            blank_seen = false;
        } else {
            blank_seen = true;
        }
        pos += line.len();
    }
    pieces(start, end, cuts.into_iter())
}

/// Sentences: a new one starts at the first non-space after `.`, `!`, `?` or `…` that follows a
/// non-space (and any closing quotes or brackets after it) followed by whitespace, or right
/// after `。`, `！`, `？`.
fn split_sentences(text: &str, start: usize, end: usize) -> Vec<(usize, usize)> {
    let slice = &text[start..end];
    let mut cuts = Vec::new();
    let mut chars = slice.char_indices().peekable();
    let mut prev = ' ';
    while let Some((i, c)) = chars.next() {
        let after_space = prev.is_whitespace();
        prev = c;
        let cjk = matches!(c, '。' | '！' | '？');
        // A terminator right after a space (the leaders ` . . .` of a table of contents) ends
        // no sentence.
        if !(cjk || matches!(c, '.' | '!' | '?' | '…')) || after_space {
            continue;
        }
        let mut j = i + c.len_utf8();
        while let Some(&(k, q)) = chars.peek() {
            if matches!(
                q,
                '"' | '\'' | ')' | ']' | '”' | '’' | '»' | '」' | '』' | '）'
            ) {
                chars.next();
                prev = q;
                j = k + q.len_utf8();
            } else {
                break;
            }
        }
        let mut saw_ws = false;
        while let Some(&(k, w)) = chars.peek() {
            if w.is_whitespace() {
                chars.next();
                prev = w;
                saw_ws = true;
                j = k + w.len_utf8();
            } else {
                break;
            }
        }
        if saw_ws || cjk {
            cuts.push(start + j);
        }
    }
    pieces(start, end, cuts.into_iter())
}

/// Lines: a new one starts at the first non-space after a `\n`.
fn split_lines(text: &str, start: usize, end: usize) -> Vec<(usize, usize)> {
    split_after(text, start, end, |c| c == '\n')
}

/// Words: a new one starts at each non-space after whitespace.
fn split_words(text: &str, start: usize, end: usize) -> Vec<(usize, usize)> {
    split_after(text, start, end, char::is_whitespace)
}

/// A new piece starts at each non-whitespace character that follows a character for which
/// `sep` holds (and any whitespace after it).
fn split_after(
    text: &str,
    start: usize,
    end: usize,
    sep: impl Fn(char) -> bool,
) -> Vec<(usize, usize)> {
    let slice = &text[start..end];
    let mut cuts = Vec::new();
    let mut pending = false;
    for (i, c) in slice.char_indices() {
        if sep(c) {
            pending = true;
        } else if !c.is_whitespace() && pending {
            cuts.push(start + i);
            pending = false;
        }
    }
    pieces(start, end, cuts.into_iter())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitters_cover_their_range() {
        let t = "One. Two!  \"Three?\" four\n\nfive\nsix 七。八";
        let leaders = "See 5.3 . . . 17 more";
        assert_eq!(split_sentences(leaders, 0, leaders.len()).len(), 1);
        let s = split_sentences(t, 0, t.len());
        let got: Vec<&str> = s.iter().map(|&(a, b)| &t[a..b]).collect();
        assert_eq!(
            got,
            [
                "One. ",
                "Two!  ",
                "\"Three?\" ",
                "four\n\nfive\nsix 七。",
                "八"
            ]
        );
        let p = split_paragraphs(t, 0, t.len());
        let got: Vec<&str> = p.iter().map(|&(a, b)| &t[a..b]).collect();
        assert_eq!(got, ["One. Two!  \"Three?\" four\n\n", "five\nsix 七。八"]);
        let w = split_words(t, 5, 19);
        let got: Vec<&str> = w.iter().map(|&(a, b)| &t[a..b]).collect();
        assert_eq!(got, ["Two!  ", "\"Three?\""]);
    }

    #[test]
    fn trim_moves_offsets() {
        assert_eq!(trim("  ab \n", 0, 6), (2, 4));
        assert_eq!(trim("   ", 0, 3), (3, 3));
    }
}
