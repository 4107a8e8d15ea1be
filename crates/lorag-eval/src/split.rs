//! The seeded train/test split, with the leak check.
//!
//! Each question's place comes from `sha256(seed, normalised question, question, id)`: the same
//! seed gives the same split of the same questions whatever their order in the file. The first
//! `round(n · test_fraction)` questions in that order are the tentative test set.
//!
//! **Leak check.** Two questions are near-duplicates when their SQuAD-normalised texts are equal,
//! or when they contain the same numbers and the Jaccard similarity of their normalised token
//! sets is at least [`SplitOptions::near_duplicate`] (default 0.8: "What is the fee for a
//! building permit?" and "what is fee for building permit" are one question; "Who signs the
//! lease?" and "Who signs the contract?" are not, nor are "fee for permit 12" and "fee for permit
//! 13", which templated Q&A produces by the hundred). Near-duplicates are grouped
//! transitively, and a test question whose group has a member in train moves to train: no test
//! question, nor a near-duplicate of one, is ever trained on. The moves are counted and the first
//! [`MAX_EXAMPLES`] reported. [`find_leaks`] runs the same check on any pair of sets (e.g. on the
//! training data actually built).

use crate::metrics::tokens;
use crate::qa::{read_qa, write_jsonl, QaItem};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

/// At most this many leak examples are kept in a [`Split`].
pub const MAX_EXAMPLES: usize = 5;

/// How to split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitOptions {
    /// Share of the questions held out for testing, in (0, 1). Default 0.2.
    pub test_fraction: f64,
    pub seed: u64,
    /// Token-set Jaccard at or above which two questions are near-duplicates. Default 0.8.
    pub near_duplicate: f64,
    /// Fewest test questions (default 2).
    pub min_test: usize,
    /// Fewest training questions (default 2).
    pub min_train: usize,
}

impl Default for SplitOptions {
    fn default() -> Self {
        Self {
            test_fraction: 0.2,
            seed: 42,
            near_duplicate: 0.8,
            min_test: 2,
            min_train: 2,
        }
    }
}

/// A test question found in train (or a near-duplicate of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leak {
    pub test_id: String,
    pub test: String,
    pub train_id: String,
    pub train: String,
    /// "same normalised text" or "token Jaccard 0.83".
    pub reason: String,
}

/// The split: disjoint, leak-free train and test sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    pub train: Vec<QaItem>,
    pub test: Vec<QaItem>,
    /// Test questions moved to train because a near-duplicate was in train.
    pub leaks_removed: usize,
    /// The first few of those moves.
    pub leak_examples: Vec<Leak>,
}

/// The smallest number of questions that `opts` can split.
pub fn min_questions(opts: &SplitOptions) -> usize {
    (opts.min_test.max(1)..100_000)
        .find(|&n| {
            let t = n_test(n, opts.test_fraction);
            t >= opts.min_test && n - t >= opts.min_train
        })
        .unwrap_or(usize::MAX)
}

fn n_test(n: usize, fraction: f64) -> usize {
    ((n as f64 * fraction).round() as usize).min(n)
}

fn order_key(seed: u64, it: &QaItem) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(crate::metrics::normalize(&it.question).as_bytes());
    h.update([0]);
    h.update(it.question.as_bytes());
    h.update([0]);
    h.update(it.id.as_bytes());
    h.finalize().into()
}

/// Split `items` (see the module docs). Errors before any work when there are too few
/// questions, when the fraction is not in (0, 1), or when the leak check leaves too few test
/// questions.
pub fn split(items: &[QaItem], opts: &SplitOptions) -> Result<Split> {
    if !(opts.test_fraction > 0.0 && opts.test_fraction < 1.0) {
        return Err(Error::Invalid(format!(
            "the test split must be between 0 and 1 (exclusive), got {}",
            opts.test_fraction
        )));
    }
    let n = items.len();
    let t = n_test(n, opts.test_fraction);
    if t < opts.min_test || n - t < opts.min_train {
        return Err(Error::Invalid(format!(
            "{n} questions are too few for a test split of {}: it needs at least {} test and {} training questions, so at least {} questions (or another --test-split)",
            opts.test_fraction,
            opts.min_test,
            opts.min_train,
            min_questions(opts)
        )));
    }
    let mut order: Vec<(usize, [u8; 32])> = items
        .iter()
        .enumerate()
        .map(|(i, it)| (i, order_key(opts.seed, it)))
        .collect();
    order.sort_by(|a, b| {
        a.1.cmp(&b.1)
            .then_with(|| items[a.0].id.cmp(&items[b.0].id))
    });
    let ranked: Vec<usize> = order.into_iter().map(|(i, _)| i).collect();
    let (test_idx, train_idx) = ranked.split_at(t);

    let index = NearDup::new(items, opts.near_duplicate);
    let groups = index.groups();
    let train_groups: std::collections::HashSet<usize> =
        train_idx.iter().map(|&i| groups[i]).collect();
    let mut test = Vec::new();
    let mut moved = Vec::new();
    for &i in test_idx {
        if train_groups.contains(&groups[i]) {
            moved.push(i);
        } else {
            test.push(i);
        }
    }
    if test.len() < opts.min_test {
        return Err(Error::Invalid(format!(
            "after moving {} test questions that have near-duplicates in train, only {} test questions remain (at least {} needed): the Q&A repeats itself; raise --test-split or remove duplicates",
            moved.len(),
            test.len(),
            opts.min_test
        )));
    }
    let leak_examples = moved
        .iter()
        .take(MAX_EXAMPLES)
        .map(|&i| {
            let (j, reason) = train_idx
                .iter()
                .filter(|&&j| groups[j] == groups[i])
                .map(|&j| (j, index.similarity(i, j)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(j, s)| (j, index.reason(i, j, s)))
                .expect("a moved question has a group member in train");
            leak(&items[i], &items[j], reason)
        })
        .collect();
    let mut train: Vec<usize> = train_idx.to_vec();
    // Moved questions join train in rank order, so train keeps one order.
    train.extend(&moved);
    let rank: HashMap<usize, usize> = ranked.iter().enumerate().map(|(r, &i)| (i, r)).collect();
    train.sort_by_key(|i| rank[i]);
    Ok(Split {
        train: train.iter().map(|&i| items[i].clone()).collect(),
        test: test.iter().map(|&i| items[i].clone()).collect(),
        leaks_removed: moved.len(),
        leak_examples,
    })
}

fn leak(test: &QaItem, train: &QaItem, reason: String) -> Leak {
    Leak {
        test_id: test.id.clone(),
        test: test.question.clone(),
        train_id: train.id.clone(),
        train: train.question.clone(),
        reason,
    }
}

/// Every test question that equals or nearly duplicates (Jaccard ≥ `threshold`) a question of
/// `train`, each with its closest train question. Empty means no leak.
pub fn find_leaks(test: &[QaItem], train: &[QaItem], threshold: f64) -> Vec<Leak> {
    let all: Vec<QaItem> = test.iter().chain(train).cloned().collect();
    let index = NearDup::new(&all, threshold);
    let nt = test.len();
    let mut best: HashMap<usize, (usize, f64)> = HashMap::new();
    for (a, b, s) in index.pairs() {
        let (t, r) = match (a < nt, b < nt) {
            (true, false) => (a, b),
            (false, true) => (b, a),
            _ => continue,
        };
        let e = best.entry(t).or_insert((r, s));
        if s > e.1 {
            *e = (r, s);
        }
    }
    let mut out: Vec<(usize, Leak)> = best
        .into_iter()
        .map(|(t, (r, s))| (t, leak(&all[t], &all[r], index.reason(t, r, s))))
        .collect();
    out.sort_by_key(|(t, _)| *t);
    out.into_iter().map(|(_, l)| l).collect()
}

/// Near-duplicate search over questions' normalised token sets.
struct NearDup {
    normal: Vec<String>,
    sets: Vec<Vec<u32>>,
    /// The tokens that contain a digit, sorted.
    numbers: Vec<Vec<u32>>,
    threshold: f64,
}

impl NearDup {
    fn new(items: &[QaItem], threshold: f64) -> Self {
        let mut vocab: HashMap<String, u32> = HashMap::new();
        let sets: Vec<Vec<u32>> = items
            .iter()
            .map(|it| {
                let mut s: Vec<u32> = tokens(&it.question)
                    .into_iter()
                    .map(|t| {
                        let n = vocab.len() as u32;
                        *vocab.entry(t).or_insert(n)
                    })
                    .collect();
                s.sort_unstable();
                s.dedup();
                s
            })
            .collect();
        let normal = items
            .iter()
            .map(|it| crate::metrics::normalize(&it.question))
            .collect();
        let numeric: std::collections::HashSet<u32> = vocab
            .iter()
            .filter(|(t, _)| t.bytes().any(|b| b.is_ascii_digit()))
            .map(|(_, &id)| id)
            .collect();
        let numbers = sets
            .iter()
            .map(|s| s.iter().copied().filter(|t| numeric.contains(t)).collect())
            .collect();
        Self {
            normal,
            sets,
            numbers,
            threshold,
        }
    }

    fn similarity(&self, i: usize, j: usize) -> f64 {
        if self.normal[i] == self.normal[j] {
            return 1.0;
        }
        let (a, b) = (&self.sets[i], &self.sets[j]);
        let (mut x, mut y, mut inter) = (0, 0, 0usize);
        while x < a.len() && y < b.len() {
            match a[x].cmp(&b[y]) {
                std::cmp::Ordering::Less => x += 1,
                std::cmp::Ordering::Greater => y += 1,
                std::cmp::Ordering::Equal => {
                    inter += 1;
                    x += 1;
                    y += 1;
                }
            }
        }
        let union = a.len() + b.len() - inter;
        if union == 0 {
            1.0
        } else {
            inter as f64 / union as f64
        }
    }

    fn reason(&self, i: usize, j: usize, s: f64) -> String {
        if self.normal[i] == self.normal[j] {
            "same normalised text".into()
        } else {
            format!("token Jaccard {s:.2}")
        }
    }

    /// Every near-duplicate pair `(i, j, similarity)`, `i < j`: equal normalised texts, and
    /// pairs with the same numbers whose Jaccard reaches the threshold. Candidates come from
    /// prefix filtering (Bayardo et al., "Scaling up all pairs similarity search"): with each set's
    /// tokens ordered rarest first, two sets with Jaccard >= t share a token among the first
    /// `|A| - ceil(t·|A|) + 1` of each; then a length filter (|small| >= t·|large|).
    fn pairs(&self) -> Vec<(usize, usize, f64)> {
        let mut out = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, t) in self.normal.iter().enumerate() {
            match seen.get(t.as_str()) {
                Some(&f) => out.push((f, i, 1.0)),
                None => {
                    seen.insert(t, i);
                }
            }
        }
        if self.threshold > 1.0 {
            return out;
        }
        let t = self.threshold.max(0.0);
        let mut df: HashMap<u32, usize> = HashMap::new();
        for set in &self.sets {
            for &tok in set {
                *df.entry(tok).or_default() += 1;
            }
        }
        let mut index: HashMap<u32, Vec<usize>> = HashMap::new();
        let mut cands: Vec<usize> = Vec::new();
        for i in 0..self.sets.len() {
            let mut ordered = self.sets[i].clone();
            ordered.sort_by_key(|tok| (df[tok], *tok));
            let len = ordered.len();
            // With t = 0 every pair qualifies: the whole set is the prefix.
            let need = ((t * len as f64) - 1e-9).ceil().max(1.0) as usize;
            let prefix = &ordered[..(len + 1).saturating_sub(need).min(len)];
            cands.clear();
            for tok in prefix {
                if let Some(list) = index.get(tok) {
                    cands.extend(list);
                }
            }
            cands.sort_unstable();
            cands.dedup();
            for &j in &cands {
                let (li, lj) = (len as f64, self.sets[j].len() as f64);
                if li.min(lj) < t * li.max(lj) - 1e-9
                    || self.normal[i] == self.normal[j]
                    || self.numbers[i] != self.numbers[j]
                {
                    continue;
                }
                let s = self.similarity(i, j);
                if s >= t {
                    out.push((j.min(i), j.max(i), s));
                }
            }
            for &tok in prefix {
                index.entry(tok).or_default().push(i);
            }
        }
        out
    }

    /// The near-duplicate group of every item (union-find over [`Self::pairs`]).
    fn groups(&self) -> Vec<usize> {
        let mut parent: Vec<usize> = (0..self.sets.len()).collect();
        fn root(p: &mut [usize], mut i: usize) -> usize {
            while p[i] != i {
                p[i] = p[p[i]];
                i = p[i];
            }
            i
        }
        for (a, b, _) in self.pairs() {
            let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
            parent[ra.max(rb)] = ra.min(rb);
        }
        (0..parent.len()).map(|i| root(&mut parent, i)).collect()
    }
}

/// The first `round(fraction · n)` questions of `train` in a seeded order: nested subsets (the
/// 25% set is inside the 50% set) for the learning curve. At least one question when
/// `fraction > 0`; all of them when `fraction >= 1`.
pub fn subset(train: &[QaItem], fraction: f64, seed: u64) -> Vec<QaItem> {
    let n = if fraction >= 1.0 {
        train.len()
    } else if fraction <= 0.0 {
        0
    } else {
        ((train.len() as f64 * fraction).round() as usize).clamp(1, train.len())
    };
    let mut order: Vec<(&QaItem, [u8; 32])> = train
        .iter()
        .map(|it| (it, order_key(seed ^ 0x5B5E_7C0F, it)))
        .collect();
    order.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.id.cmp(&b.0.id)));
    order
        .into_iter()
        .take(n)
        .map(|(it, _)| it.clone())
        .collect()
}

/// The slice for measuring refusals: questions asked against a KB without their sources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldOut {
    pub questions: Vec<QaItem>,
    /// Sources to leave out of the KB the held-out questions are asked against.
    pub sources: Vec<String>,
}

/// Up to `count` test questions (a seeded choice among those that name sources) whose sources
/// are to be left out of a second KB, and those sources. A question is chosen only when none of
/// its sources is a gold source of another test question that stays answerable, so leaving the
/// sources out takes no answer away from the others.
pub fn held_out_slice(test: &[QaItem], count: usize, seed: u64) -> HeldOut {
    let mut order: Vec<(usize, [u8; 32])> = test
        .iter()
        .enumerate()
        .filter(|(_, it)| !it.sources.is_empty())
        .map(|(i, it)| (i, order_key(seed ^ 0x4E1D_u64, it)))
        .collect();
    order.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| test[a.0].id.cmp(&test[b.0].id)));
    let mut chosen: Vec<usize> = Vec::new();
    let mut sources: Vec<String> = Vec::new();
    for (i, _) in order {
        if chosen.len() == count {
            break;
        }
        let mine = &test[i].sources;
        let shared = test.iter().enumerate().any(|(j, other)| {
            j != i
                && !chosen.contains(&j)
                && other
                    .sources
                    .iter()
                    .any(|s| mine.iter().any(|m| crate::metrics::source_matches(m, s)))
        });
        if !shared {
            chosen.push(i);
            sources.extend(mine.iter().cloned());
        }
    }
    sources.sort();
    sources.dedup();
    HeldOut {
        questions: chosen.into_iter().map(|i| test[i].clone()).collect(),
        sources,
    }
}

/// Write `DIR/train.jsonl` and `DIR/test.jsonl` in the `{"id","question","answer","sources"}`
/// shape.
pub fn write_split(dir: &Path, split: &Split) -> Result<()> {
    write_jsonl(&dir.join("train.jsonl"), &split.train)?;
    write_jsonl(&dir.join("test.jsonl"), &split.test)
}

/// Read back `(train, test)` written by [`write_split`].
pub fn read_split(dir: &Path) -> Result<(Vec<QaItem>, Vec<QaItem>)> {
    Ok((
        read_qa(&dir.join("train.jsonl"))?,
        read_qa(&dir.join("test.jsonl"))?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: usize, q: &str) -> QaItem {
        QaItem {
            id: format!("q{id}"),
            question: q.into(),
            answer: format!("answer {id}"),
            sources: vec![],
            alternatives: vec![],
        }
    }

    fn distinct(n: usize) -> Vec<QaItem> {
        (0..n)
            .map(|i| {
                item(
                    i,
                    &format!("Which permit covers building number {i} in zone {}?", i * 7),
                )
            })
            .collect()
    }

    fn ids(v: &[QaItem]) -> Vec<&str> {
        v.iter().map(|x| x.id.as_str()).collect()
    }

    #[test]
    fn split_is_disjoint_sized_and_stable_under_the_seed() {
        let items = distinct(50);
        let o = SplitOptions::default();
        let s = split(&items, &o).unwrap();
        assert_eq!((s.train.len(), s.test.len(), s.leaks_removed), (40, 10, 0));
        let mut all: Vec<&str> = ids(&s.train).into_iter().chain(ids(&s.test)).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 50);
        // Same seed, reversed input: same split, same order.
        let mut rev = items.clone();
        rev.reverse();
        assert_eq!(split(&rev, &o).unwrap(), s);
        // Another seed: another test set.
        let other = split(
            &items,
            &SplitOptions {
                seed: 43,
                ..o.clone()
            },
        )
        .unwrap();
        assert_ne!(ids(&other.test), ids(&s.test));
    }

    #[test]
    fn too_few_questions_is_a_clear_error() {
        let o = SplitOptions::default();
        assert_eq!(min_questions(&o), 8); // round(8 · 0.2) = 2 test, 6 train
        let e = split(&distinct(7), &o).unwrap_err().to_string();
        assert!(
            e.contains("7 questions are too few") && e.contains("at least 8 questions"),
            "{e}"
        );
        assert!(split(&distinct(8), &o).is_ok());
        let e = split(
            &distinct(8),
            &SplitOptions {
                test_fraction: 1.0,
                ..o
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("between 0 and 1"));
    }

    #[test]
    fn near_duplicates_never_straddle_the_split() {
        let mut items = distinct(40);
        // Each question gets a rephrasing (same normalised text or Jaccard >= 0.8).
        for i in 0..20 {
            let q = items[i].question.clone();
            let dup = if i % 2 == 0 {
                q.to_uppercase().replace('?', " !")
            } else {
                format!("{} then", q.trim_end_matches('?')) // one extra token of ~9
            };
            items.push(item(100 + i, &dup));
        }
        let s = split(&items, &SplitOptions::default()).unwrap();
        assert!(
            s.leaks_removed > 0,
            "the seed should put some pair on both sides"
        );
        assert_eq!(s.train.len() + s.test.len(), 60);
        assert_eq!(s.test.len(), 12 - s.leaks_removed);
        assert!(find_leaks(&s.test, &s.train, 0.8).is_empty());
        let ex = &s.leak_examples[0];
        assert!(
            ex.reason == "same normalised text" || ex.reason.starts_with("token Jaccard 0.9"),
            "{ex:?}"
        );
        assert!(s.leak_examples.len() == s.leaks_removed.min(MAX_EXAMPLES));
    }

    #[test]
    fn find_leaks_reports_the_closest_train_question() {
        let test = vec![
            item(1, "What is the fee for a permit?"),
            item(2, "Who signs the contract?"),
        ];
        let train = vec![
            item(3, "what is fee for permit"),
            item(4, "Who signs the lease?"),
            item(5, "What is the fee for a permit in Lyon?"),
        ];
        let l = find_leaks(&test, &train, 0.8);
        // Templated questions that differ in a number are different questions.
        let t = [item(
            6,
            "What is the fee for building permit number 12 in zone B?",
        )];
        let r = [item(
            7,
            "What is the fee for building permit number 13 in zone B?",
        )];
        assert!(find_leaks(&t, &r, 0.8).is_empty());
        let r = [item(
            8,
            "What is the fee for the building permit number 12 in zone B please?",
        )];
        assert_eq!(find_leaks(&t, &r, 0.8)[0].reason, "token Jaccard 0.92"); // 11 of 12
        assert_eq!(l.len(), 1);
        assert_eq!(
            (l[0].test_id.as_str(), l[0].train_id.as_str()),
            ("q1", "q3")
        );
        assert_eq!(l[0].reason, "same normalised text");
        // "who signs contract" vs "who signs lease": Jaccard 2/4, not a leak.
        assert!(find_leaks(&test[1..], &train, 0.8).is_empty());
        // At 0.5 it is.
        assert_eq!(
            find_leaks(&test[1..], &train, 0.5)[0].reason,
            "token Jaccard 0.50"
        );
    }

    #[test]
    fn subsets_are_nested_and_sized() {
        let train = distinct(40);
        let q = subset(&train, 0.25, 1);
        let h = subset(&train, 0.5, 1);
        assert_eq!(
            (q.len(), h.len(), subset(&train, 1.0, 1).len()),
            (10, 20, 40)
        );
        assert!(q.iter().all(|x| h.contains(x)));
        assert_eq!(subset(&train[..3], 0.01, 1).len(), 1);
        assert!(subset(&train, 0.0, 1).is_empty());
        let mut rev = train.clone();
        rev.reverse();
        assert_eq!(subset(&rev, 0.25, 1), q);
    }

    #[test]
    fn held_out_slice_never_takes_another_questions_source() {
        let mut test = distinct(8);
        for (i, it) in test.iter_mut().enumerate() {
            it.sources = vec![format!("doc{}.md", i / 2)]; // pairs share a document
        }
        test[6].sources = vec!["solo6.md".into()];
        test[7].sources = vec!["kb/solo7.md".into()];
        test.push(item(50, "Which document says nothing?")); // no sources: never chosen
        let h = held_out_slice(&test, 3, 42);
        let mut ids: Vec<&str> = h.questions.iter().map(|q| q.id.as_str()).collect();
        ids.sort();
        assert_eq!(
            ids,
            ["q6", "q7"],
            "only questions with a source of their own"
        );
        assert_eq!(h.sources, ["kb/solo7.md", "solo6.md"]);
        assert_eq!(held_out_slice(&test, 1, 42).questions.len(), 1);
        assert_eq!(held_out_slice(&test, 1, 42), held_out_slice(&test, 1, 42));
    }

    #[test]
    fn prefix_filtered_pairs_equal_brute_force() {
        let words = [
            "what", "fee", "permit", "zone", "court", "lease", "owner", "days", "12", "13",
        ];
        let mut x = 7u64;
        let items: Vec<QaItem> = (0..400)
            .map(|i| {
                let n = 1 + (i % 9);
                let q: Vec<&str> = (0..n)
                    .map(|_| {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        words[(x >> 33) as usize % words.len()]
                    })
                    .collect();
                item(i, &q.join(" "))
            })
            .collect();
        for t in [0.5, 0.8, 1.0] {
            let nd = NearDup::new(&items, t);
            let mut fast: Vec<(usize, usize)> =
                nd.pairs().into_iter().map(|(a, b, _)| (a, b)).collect();
            fast.sort();
            fast.dedup();
            let mut slow = Vec::new();
            for i in 0..items.len() {
                for j in i + 1..items.len() {
                    // Equal texts pair with their first occurrence (enough for grouping).
                    let first = nd.normal.iter().position(|x| *x == nd.normal[i]) == Some(i);
                    let same = nd.normal[i] == nd.normal[j];
                    if (same && first)
                        || (!same && nd.numbers[i] == nd.numbers[j] && nd.similarity(i, j) >= t)
                    {
                        slow.push((i, j));
                    }
                }
            }
            assert!(slow.len() > 100, "{t}: {}", slow.len());
            let missing: Vec<_> = slow.iter().filter(|p| !fast.contains(p)).take(3).collect();
            let extra: Vec<_> = fast.iter().filter(|p| !slow.contains(p)).take(3).collect();
            let show = |v: &[&(usize, usize)]| {
                v.iter()
                    .map(|(a, b)| {
                        format!(
                            "{:?}/{:?} {:.2}",
                            items[*a].question,
                            items[*b].question,
                            nd.similarity(*a, *b)
                        )
                    })
                    .collect::<Vec<_>>()
            };
            assert!(
                missing.is_empty() && extra.is_empty(),
                "threshold {t}: missing {:?} extra {:?}",
                show(&missing),
                show(&extra)
            );
        }
    }

    #[test]
    fn split_files_read_back() {
        let d = tempfile::tempdir().unwrap();
        let s = split(&distinct(10), &SplitOptions::default()).unwrap();
        write_split(d.path(), &s).unwrap();
        let (train, test) = read_split(d.path()).unwrap();
        assert_eq!((train, test), (s.train, s.test));
    }
}
