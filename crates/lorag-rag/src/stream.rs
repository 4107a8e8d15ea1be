//! Streaming with checked citations: what a client sees stream is, character for character, the
//! final answer.
//!
//! The words of a sentence stream as the model writes them; the model's `[n]` markers and the
//! sentence's final punctuation are held back until the sentence ends, then the sentence is
//! checked (`check(body, model_cites)` decides the final citations) and its markers and
//! punctuation are emitted: "It takes 10 weeks" ... " [1]." Whitespace is collapsed, so that
//! removing a marker never leaves a double space.
//!
//! Small models fall into loops ("The process is usually completed within 2-3 months." again
//! and again). A sentence that repeats an earlier one word for word is never shown: while the
//! sentence so far is the start of an earlier one its words are held back; a sentence that turns
//! out to be a repeat is dropped and the stream asks the generator to stop.

/// What the checker decided for one sentence.
pub(crate) struct Verdict {
    pub cites: Vec<usize>,
}

pub(crate) struct CitedStream<'a> {
    /// Raw model text not processed yet.
    raw: String,
    /// Body of the current sentence as emitted (markers removed).
    body: String,
    /// Model citations of the current sentence.
    cites: Vec<usize>,
    /// Whitespace seen but not emitted (it is emitted before the next word).
    space: bool,
    /// The terminator of the current sentence, once seen (held back).
    term: Option<char>,
    /// Everything emitted.
    pub out: String,
    /// Text of the current sentence held back while it repeats the start of an earlier one.
    held: String,
    /// Earlier sentences, normalised (lower case, single spaces).
    earlier: Vec<String>,
    /// A repeated sentence was found: the generation should stop.
    pub stopped: bool,
    emit: &'a mut dyn FnMut(&str),
    check: &'a mut dyn FnMut(&str, &[usize]) -> Verdict,
}

fn parse_marker(s: &str) -> Option<(Vec<usize>, usize)> {
    // s starts with '['; Some((numbers, byte length)) for a complete marker.
    let close = s.find(']')?;
    let inner = &s[1..close];
    if inner.trim().is_empty() {
        return None;
    }
    let nums: Option<Vec<usize>> = inner.split(',').map(|p| p.trim().parse().ok()).collect();
    nums.map(|n| (n, close + 1))
}

/// Whether `s` (starting with '[') could still become a marker as more text arrives.
fn could_be_marker(s: &str) -> bool {
    s[1..]
        .chars()
        .all(|c| c.is_ascii_digit() || c == ',' || c == ' ')
        && s.len() < 16
}

impl<'a> CitedStream<'a> {
    pub fn new(
        emit: &'a mut dyn FnMut(&str),
        check: &'a mut dyn FnMut(&str, &[usize]) -> Verdict,
    ) -> Self {
        Self {
            raw: String::new(),
            body: String::new(),
            cites: Vec::new(),
            space: false,
            term: None,
            out: String::new(),
            held: String::new(),
            earlier: Vec::new(),
            stopped: false,
            emit,
            check,
        }
    }

    fn put(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        self.out.push_str(s);
        (self.emit)(s);
    }

    fn norm(s: &str) -> String {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    }

    /// Whether the sentence so far is the start of an earlier sentence.
    fn repeating(&self) -> bool {
        let b = Self::norm(&self.body);
        !b.is_empty() && self.earlier.iter().any(|e| e.starts_with(&b))
    }

    fn word(&mut self, s: &str) {
        let mut piece = String::new();
        if self.space && !self.body.is_empty() {
            self.body.push(' ');
            piece.push(' ');
        } else if self.space && self.body.is_empty() && !self.out.is_empty() {
            // Between sentences.
            if !self.out.ends_with('\n') {
                piece.push(' ');
            }
        }
        self.space = false;
        self.body.push_str(s);
        piece.push_str(s);
        self.held.push_str(&piece);
        if !self.repeating() {
            let h = std::mem::take(&mut self.held);
            self.put(&h);
        }
    }

    /// End the current sentence: check it, emit its citations and its punctuation.
    fn close_sentence(&mut self) {
        let term = self.term.take();
        if self.body.trim().is_empty() {
            if let Some(t) = term {
                self.put(&t.to_string());
            }
            self.cites.clear();
            return;
        }
        if !self.held.is_empty() {
            // Everything of this sentence so far repeats the start of an earlier one; ended
            // here (or cut off by the end of generation), it is a repeat: drop it and stop.
            self.held.clear();
            self.body.clear();
            self.cites.clear();
            self.space = false;
            self.stopped = true;
            return;
        }
        self.earlier.push(Self::norm(&self.body));
        let v = (self.check)(&self.body, &self.cites);
        let marks: String = v.cites.iter().map(|n| format!("[{n}]")).collect();
        if !marks.is_empty() {
            self.put(&format!(" {marks}"));
        }
        if let Some(t) = term {
            self.put(&t.to_string());
        }
        self.body.clear();
        self.cites.clear();
        self.space = false;
    }

    /// Add model text; emits what is safe. Returns false once the generation should stop (the
    /// model began repeating itself).
    pub fn push(&mut self, text: &str) -> bool {
        if self.stopped {
            return false;
        }
        self.raw.push_str(text);
        self.drain(false);
        !self.stopped
    }

    /// The generation ended: emit the rest.
    pub fn finish(mut self) -> String {
        if self.stopped {
            return self.out;
        }
        self.drain(true);
        if !self.raw.is_empty() {
            let rest = std::mem::take(&mut self.raw);
            self.word(&rest);
        }
        self.close_sentence();
        self.out
    }

    fn drain(&mut self, end: bool) {
        loop {
            if self.stopped {
                self.raw.clear();
                return;
            }
            let Some(c) = self.raw.chars().next() else {
                return;
            };
            if let Some(t) = self.term {
                // After a terminator: markers and spaces belong to this sentence; anything else
                // starts the next one.
                if c == ' ' || c == '\t' {
                    self.raw.drain(..1);
                    self.space = true;
                    continue;
                }
                if c == '[' {
                    match parse_marker(&self.raw) {
                        Some((n, len)) => {
                            self.cites.extend(n);
                            self.raw.drain(..len);
                            continue;
                        }
                        None if could_be_marker(&self.raw) && !end => return,
                        None => {}
                    }
                }
                let _ = t;
                let had_space = self.space;
                self.close_sentence();
                self.space = had_space || c == '\n';
                if c == '\n' {
                    self.raw.drain(..1);
                    self.put("\n");
                    self.space = false;
                }
                continue;
            }
            match c {
                ' ' | '\t' | '\r' => {
                    self.raw.drain(..1);
                    self.space = true;
                }
                '\n' => {
                    self.raw.drain(..1);
                    if !self.body.is_empty() {
                        self.close_sentence();
                    }
                    self.put("\n");
                    self.space = false;
                }
                '[' => match parse_marker(&self.raw) {
                    Some((n, len)) => {
                        self.cites.extend(n);
                        self.raw.drain(..len);
                        // "word [1] more": one space stays between the words.
                    }
                    None if could_be_marker(&self.raw) && !end => return,
                    None => {
                        self.raw.drain(..1);
                        self.word("[");
                    }
                },
                '.' | '!' | '?' => {
                    // A '.' followed by a non-space ("3.5", "e.g.") is not an end.
                    let next = self.raw[1..].chars().next();
                    match next {
                        None if !end => return,
                        Some(n) if c == '.' && !n.is_whitespace() && n != '[' => {
                            self.raw.drain(..1);
                            self.word(".");
                        }
                        _ => {
                            self.raw.drain(..1);
                            self.space = false;
                            self.term = Some(c);
                        }
                    }
                }
                _ => {
                    // A run of ordinary characters.
                    let n = self
                        .raw
                        .find(|x: char| {
                            matches!(x, ' ' | '\t' | '\r' | '\n' | '[' | '.' | '!' | '?')
                        })
                        .unwrap_or(self.raw.len());
                    let w: String = self.raw.drain(..n).collect();
                    self.word(&w);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        pieces: &[&str],
        fixed: Option<Vec<usize>>,
    ) -> (String, String, Vec<(String, Vec<usize>)>) {
        let mut streamed = String::new();
        let mut seen = Vec::new();
        let mut emit = |s: &str| streamed.push_str(s);
        let mut check = |b: &str, c: &[usize]| {
            seen.push((b.to_string(), c.to_vec()));
            Verdict {
                cites: fixed.clone().unwrap_or_else(|| c.to_vec()),
            }
        };
        let mut st = CitedStream::new(&mut emit, &mut check);
        for p in pieces {
            st.push(p);
        }
        let out = st.finish();
        (out, streamed, seen)
    }

    #[test]
    fn stream_equals_final_text_and_markers_wait_for_the_check() {
        let (out, streamed, seen) = run(
            &[
                "It takes",
                " 10 we",
                "eks [",
                "4]. Simple",
                " cases 4",
                "-6 weeks",
                " [1].",
            ],
            Some(vec![1]),
        );
        assert_eq!(out, streamed);
        assert_eq!(out, "It takes 10 weeks [1]. Simple cases 4-6 weeks [1].");
        assert_eq!(seen[0], ("It takes 10 weeks".to_string(), vec![4]));
        assert_eq!(seen[1], ("Simple cases 4-6 weeks".to_string(), vec![1]));
    }

    #[test]
    fn markers_after_the_stop_decimals_and_brackets() {
        let (out, streamed, seen) = run(&["Pi is 3.14. [2] See [note] x"], None);
        assert_eq!(out, streamed);
        assert_eq!(out, "Pi is 3.14 [2]. See [note] x");
        assert_eq!(seen[0].1, vec![2]);
        let (out, _, _) = run(&["a [1] b [2]"], None);
        assert_eq!(out, "a b [1][2]");
    }

    #[test]
    fn a_repeated_sentence_is_never_shown_and_stops_the_stream() {
        let mut streamed = String::new();
        let mut emit = |s: &str| streamed.push_str(s);
        let mut check = |_: &str, c: &[usize]| Verdict { cites: c.to_vec() };
        let mut st = CitedStream::new(&mut emit, &mut check);
        let mut go = true;
        for p in [
            "It takes 2-3 months [1]. It takes 4",
            "-6 weeks [2]. It takes 2-3 months [1].",
            " It takes 2-3 months [1].",
        ] {
            go = st.push(p);
            if !go {
                break;
            }
        }
        assert!(!go, "the repeat stops the generation");
        let out = st.finish();
        assert_eq!(out, "It takes 2-3 months [1]. It takes 4-6 weeks [2].");
        assert_eq!(streamed, out);
        // A sentence that only starts like an earlier one is shown whole once it differs.
        let (out, streamed, _) = run(&["No. No", " way."], None);
        assert_eq!(out, "No. No way.");
        assert_eq!(streamed, out);
    }

    #[test]
    fn removed_citations_leave_single_spaces() {
        let (out, streamed, _) = run(&["No [9] way [7].\nNext line"], Some(vec![]));
        assert_eq!(out, streamed);
        assert_eq!(out, "No way.\nNext line");
    }
}
