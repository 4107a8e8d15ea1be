//! `results.json`: the schema (`lorag-eval/1`, documented in the crate docs and
//! `docs/eval-results.md`) and [`Results::compute`], which turns per-question rows into
//! per-route metrics with intervals, latency, the paired comparisons and the recommendation.

use crate::metrics::{any_source_matches, best, clean_answer, exact_match, rouge_l, token_f1};
use crate::qa::QaItem;
use crate::split::{Leak, Split, SplitOptions};
use crate::stats::{
    bootstrap_mean, paired_bootstrap, percentiles, Estimate, Percentiles, StatsOptions,
};
use crate::{io_err, Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The `schema` field of every `results.json` this version writes.
pub const SCHEMA: &str = "lorag-eval/1";

/// Metric names, in the order reports show them.
pub const METRICS: &[&str] = &[
    "f1",
    "rouge_l",
    "exact_match",
    "similarity",
    "gold_retrieved",
    "gold_cited",
    "cited_share",
    "supported_share",
    "correct_refusal",
    "false_refusal",
];

/// Everything a run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub schema: String,
    /// The model that answered (name and file hash).
    pub model: String,
    pub kb: Option<String>,
    /// The run's options as given (free form).
    pub options: serde_json::Value,
    pub split: SplitSummary,
    pub routes: BTreeMap<String, RouteResult>,
    pub pairs: Vec<Pair>,
    #[serde(default)]
    pub learning_curve: Vec<CurvePoint>,
    /// Per fine-tuned route with a learning curve: the paired bootstrap on F1 of its full
    /// training against its smallest share (`a` = "ROUTE @100%", `b` = "ROUTE @25%").
    #[serde(default)]
    pub curve_pairs: Vec<Pair>,
    /// Training loss per route: `[[step, loss], …]`.
    #[serde(default)]
    pub loss_curves: BTreeMap<String, Vec<[f64; 2]>>,
    pub recommendation: Recommendation,
    pub questions: Vec<QuestionRow>,
}

/// The split's sizes and the leak check's findings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SplitSummary {
    pub train: usize,
    pub test: usize,
    pub seed: u64,
    pub test_fraction: f64,
    pub leaks_removed: usize,
    #[serde(default)]
    pub leak_examples: Vec<Leak>,
}

impl SplitSummary {
    /// The summary of `split`, made with `opts`.
    pub fn of(split: &Split, opts: &SplitOptions) -> Self {
        Self {
            train: split.train.len(),
            test: split.test.len(),
            seed: opts.seed,
            test_fraction: opts.test_fraction,
            leaks_removed: split.leaks_removed,
            leak_examples: split.leak_examples.clone(),
        }
    }
}

/// One route's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteResult {
    /// Answers from a knowledge base (retrieval, citations, refusals).
    pub rag: bool,
    /// Answerable test questions this route answered.
    pub n: usize,
    /// Metric name ([`METRICS`]) → mean with 95% interval.
    pub metrics: BTreeMap<String, Estimate>,
    pub latency: Latency,
    pub cost: Cost,
}

/// Time to first token and total time per answer, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Latency {
    pub ttft_ms: Percentiles,
    pub total_ms: Percentiles,
}

/// What a route costs. `None`: not applicable or not measured.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Cost {
    /// Minutes spent training the route's adapter.
    pub train_minutes: Option<f64>,
    pub adapter_bytes: Option<u64>,
    /// Seconds to take a changed document into account: re-indexing it for RAG, re-training for
    /// fine-tuning.
    pub update_seconds: Option<f64>,
}

/// The paired bootstrap of two routes on one metric (a − b).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    pub a: String,
    pub b: String,
    pub metric: String,
    /// Questions both routes answered.
    pub n: usize,
    pub diff: f64,
    pub low: f64,
    pub high: f64,
    pub p_value: f64,
    /// The 95% interval excludes 0.
    pub significant: bool,
}

impl Pair {
    /// The paired bootstrap on F1 of `a` against `b` (per-question scores `x` and `y` on the
    /// same questions); `None` when empty or of different lengths.
    fn f1(a: String, b: String, x: &[f64], y: &[f64], opts: &StatsOptions) -> Option<Pair> {
        let p = paired_bootstrap(x, y, opts)?;
        Some(Pair {
            a,
            b,
            metric: "f1".into(),
            n: x.len(),
            diff: p.diff,
            low: p.low,
            high: p.high,
            p_value: p.p_value,
            significant: p.significant,
        })
    }
}

/// F1 of a route trained on `fraction` of the train split.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CurvePoint {
    pub route: String,
    pub fraction: f64,
    pub f1: f64,
    /// F1 per test question (the answerable ones, in `questions` order): what the learning
    /// curve's paired bootstrap resamples. Empty in results written before it was kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub f1s: Vec<f64>,
}

/// The chosen route and the paragraph that says why.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Recommendation {
    pub route: String,
    pub text: String,
}

/// One test question and every route's answer to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionRow {
    pub id: String,
    pub question: String,
    pub reference: String,
    /// Further acceptable references.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alternatives: Vec<String>,
    /// Gold sources (from the Q&A, or the documents whose chunks contain the reference).
    #[serde(default)]
    pub sources: Vec<String>,
    /// In the slice whose sources are held out of the KB: refusing is right.
    #[serde(default)]
    pub held_out: bool,
    /// Route name → its answer.
    pub answers: BTreeMap<String, Answer>,
}

impl QuestionRow {
    /// A row for `item` with no answers yet; `held_out`: asked against a KB without its sources.
    pub fn new(item: &QaItem, held_out: bool) -> Self {
        Self {
            id: item.id.clone(),
            question: item.question.clone(),
            reference: item.answer.clone(),
            alternatives: item.alternatives.clone(),
            sources: item.sources.clone(),
            held_out,
            answers: BTreeMap::new(),
        }
    }

    fn references(&self) -> Vec<&str> {
        std::iter::once(self.reference.as_str())
            .chain(self.alternatives.iter().map(String::as_str))
            .collect()
    }
}

/// One route's answer to one question, with its scores.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Answer {
    /// The answer as the route gave it (markers and all).
    pub text: String,
    pub f1: f64,
    pub rouge_l: f64,
    pub exact_match: f64,
    /// Embedding cosine to the reference, when computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f64>,
    /// Sources the answer cites.
    #[serde(default)]
    pub cited: Vec<String>,
    /// Sources retrieved and given to the model.
    #[serde(default)]
    pub retrieved: Vec<String>,
    /// Share of the answer's sentences supported by their citations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supported_share: Option<f64>,
    pub refused: bool,
    pub ttft_ms: f64,
    pub total_ms: f64,
}

impl Answer {
    /// An answer scored against `row`'s references (best over them) after
    /// [`clean_answer`]`(text, refusal)`; the other fields are left for the caller.
    pub fn scored(row: &QuestionRow, text: impl Into<String>, refusal: &str) -> Self {
        let text = text.into();
        let clean = clean_answer(&text, refusal);
        let refs = row.references();
        Self {
            f1: best(token_f1, &clean, &refs),
            rouge_l: best(rouge_l, &clean, &refs),
            exact_match: best(exact_match, &clean, &refs),
            text,
            ..Self::default()
        }
    }
}

/// A route to summarise: its name, whether it is a RAG route, and what it costs.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSpec {
    pub name: String,
    pub rag: bool,
    pub cost: Cost,
}

/// How `curve_pairs` names a route trained on `fraction` of the train split: "ft @25%".
pub fn curve_label(route: &str, fraction: f64) -> String {
    format!("{route} @{:.0}%", 100.0 * fraction)
}

/// Per route of `curve`: its full training (the largest share) against its smallest share,
/// paired on the same test questions. Points without per-question scores give no pair.
pub(crate) fn curve_pairs(curve: &[CurvePoint], opts: &StatsOptions) -> Vec<Pair> {
    let mut routes: Vec<&str> = curve.iter().map(|p| p.route.as_str()).collect();
    routes.sort();
    routes.dedup();
    let mut out = Vec::new();
    for route in routes {
        let mut pts: Vec<&CurvePoint> = curve.iter().filter(|p| p.route == route).collect();
        pts.sort_by(|a, b| a.fraction.total_cmp(&b.fraction));
        let (Some(small), Some(full)) = (pts.first(), pts.last()) else {
            continue;
        };
        if pts.len() < 2 || small.f1s.is_empty() {
            continue;
        }
        out.extend(Pair::f1(
            curve_label(route, full.fraction),
            curve_label(route, small.fraction),
            &full.f1s,
            &small.f1s,
            opts,
        ));
    }
    out
}

impl Results {
    /// Empty results for `model` (and `kb`) with the run's `options`.
    pub fn new(model: impl Into<String>, kb: Option<String>, options: serde_json::Value) -> Self {
        Self {
            schema: SCHEMA.into(),
            model: model.into(),
            kb,
            options,
            split: SplitSummary::default(),
            routes: BTreeMap::new(),
            pairs: Vec::new(),
            learning_curve: Vec::new(),
            curve_pairs: Vec::new(),
            loss_curves: BTreeMap::new(),
            recommendation: Recommendation::default(),
            questions: Vec::new(),
        }
    }

    /// From `questions` (and `learning_curve`), compute every route's metrics, latency and
    /// cost, the paired bootstrap on F1 between every two routes (in `routes` order), and the
    /// recommendation. A pure function of the rows and `opts`.
    pub fn compute(&mut self, routes: &[RouteSpec], opts: &StatsOptions) {
        self.routes = routes
            .iter()
            .map(|r| (r.name.clone(), summarize(&self.questions, r, opts)))
            .collect();
        self.pairs.clear();
        for (i, a) in routes.iter().enumerate() {
            for b in &routes[i + 1..] {
                let both: Vec<(f64, f64)> = self
                    .questions
                    .iter()
                    .filter(|q| !q.held_out)
                    .filter_map(|q| Some((q.answers.get(&a.name)?.f1, q.answers.get(&b.name)?.f1)))
                    .collect();
                let (x, y): (Vec<f64>, Vec<f64>) = both.into_iter().unzip();
                self.pairs
                    .extend(Pair::f1(a.name.clone(), b.name.clone(), &x, &y, opts));
            }
        }
        self.curve_pairs = curve_pairs(&self.learning_curve, opts);
        self.recommendation = crate::recommend::recommend(self);
    }

    /// The pair of routes `a` and `b` on F1, oriented as a − b.
    pub fn pair(&self, a: &str, b: &str) -> Option<Pair> {
        self.pairs.iter().find_map(|p| {
            if p.a == a && p.b == b {
                Some(p.clone())
            } else if p.a == b && p.b == a {
                Some(Pair {
                    a: a.into(),
                    b: b.into(),
                    diff: -p.diff,
                    low: -p.high,
                    high: -p.low,
                    ..p.clone()
                })
            } else {
                None
            }
        })
    }

    /// A route's metric, if measured.
    pub fn metric(&self, route: &str, metric: &str) -> Option<Estimate> {
        self.routes.get(route)?.metrics.get(metric).copied()
    }

    /// Write as pretty JSON, atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).expect("results always serialize");
        crate::write_atomic(path, json.as_bytes())
    }

    /// Read a `results.json`; another schema is an error.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        let bad = |e: String| Error::Invalid(format!("{}: {e}", path.display()));
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if v.get("schema").and_then(|s| s.as_str()) != Some(SCHEMA) {
            return Err(bad(format!(
                "schema {}, expected {SCHEMA:?}",
                v.get("schema").unwrap_or(&serde_json::Value::Null)
            )));
        }
        serde_json::from_value(v).map_err(|e| bad(e.to_string()))
    }
}

fn share(flags: impl Iterator<Item = bool>) -> Vec<f64> {
    flags.map(|b| f64::from(u8::from(b))).collect()
}

fn summarize(questions: &[QuestionRow], route: &RouteSpec, opts: &StatsOptions) -> RouteResult {
    let answered: Vec<(&QuestionRow, &Answer)> = questions
        .iter()
        .filter_map(|q| Some((q, q.answers.get(&route.name)?)))
        .collect();
    let answerable: Vec<_> = answered
        .iter()
        .filter(|(q, _)| !q.held_out)
        .copied()
        .collect();
    let mut metrics = BTreeMap::new();
    let mut put = |name: &str, values: Vec<f64>| {
        if let Some(e) = bootstrap_mean(&values, opts) {
            metrics.insert(name.to_string(), e);
        }
    };
    put("f1", answerable.iter().map(|(_, a)| a.f1).collect());
    put(
        "rouge_l",
        answerable.iter().map(|(_, a)| a.rouge_l).collect(),
    );
    put(
        "exact_match",
        answerable.iter().map(|(_, a)| a.exact_match).collect(),
    );
    put(
        "similarity",
        answerable
            .iter()
            .filter_map(|(_, a)| a.similarity)
            .collect(),
    );
    if route.rag {
        let with_gold = || answerable.iter().filter(|(q, _)| !q.sources.is_empty());
        put(
            "gold_retrieved",
            share(with_gold().map(|(q, a)| any_source_matches(&q.sources, &a.retrieved))),
        );
        put(
            "gold_cited",
            share(with_gold().map(|(q, a)| any_source_matches(&q.sources, &a.cited))),
        );
        put(
            "cited_share",
            share(
                answerable
                    .iter()
                    .filter(|(_, a)| !a.refused)
                    .map(|(_, a)| !a.cited.is_empty()),
            ),
        );
        put(
            "supported_share",
            answerable
                .iter()
                .filter_map(|(_, a)| a.supported_share)
                .collect(),
        );
        put(
            "correct_refusal",
            share(
                answered
                    .iter()
                    .filter(|(q, _)| q.held_out)
                    .map(|(_, a)| a.refused),
            ),
        );
        put(
            "false_refusal",
            share(answerable.iter().map(|(_, a)| a.refused)),
        );
    }
    let ttft: Vec<f64> = answered.iter().map(|(_, a)| a.ttft_ms).collect();
    let total: Vec<f64> = answered.iter().map(|(_, a)| a.total_ms).collect();
    RouteResult {
        rag: route.rag,
        n: answerable.len(),
        metrics,
        latency: Latency {
            ttft_ms: percentiles(&ttft),
            total_ms: percentiles(&total),
        },
        cost: route.cost,
    }
}

/// Synthetic results for tests: `routes` of `(name, rag, per-question F1)`, each answer's
/// other scores equal to its F1; RAG answers cite the gold source when F1 > 0.
#[cfg(test)]
pub(crate) fn synthetic(routes: &[(&str, bool, Vec<f64>)]) -> Results {
    let n = routes[0].2.len();
    let mut r = Results::new(
        "tiny (sha256 0000)",
        Some("kb".into()),
        serde_json::json!({"k": 4}),
    );
    r.split = SplitSummary {
        train: 4 * n,
        test: n,
        seed: 42,
        test_fraction: 0.2,
        leaks_removed: 0,
        leak_examples: vec![],
    };
    for i in 0..n {
        let item = QaItem {
            id: format!("q{i}"),
            question: format!("Question {i}?"),
            answer: format!("answer {i}"),
            sources: vec![format!("doc{i}.md")],
            alternatives: vec![],
        };
        let mut row = QuestionRow::new(&item, false);
        for (name, rag, f1) in routes {
            let cited = if *rag && f1[i] > 0.0 {
                vec![format!("kb/doc{i}.md")]
            } else {
                vec![]
            };
            row.answers.insert(
                name.to_string(),
                Answer {
                    text: format!("{name} says {i}"),
                    f1: f1[i],
                    rouge_l: f1[i],
                    exact_match: f64::from(u8::from(f1[i] == 1.0)),
                    similarity: Some(0.5 + f1[i] / 2.0),
                    retrieved: if *rag {
                        vec![format!("kb/doc{i}.md")]
                    } else {
                        vec![]
                    },
                    cited,
                    supported_share: rag.then_some(1.0),
                    refused: false,
                    ttft_ms: 100.0 + i as f64,
                    total_ms: 1000.0 + 10.0 * i as f64,
                },
            );
        }
        r.questions.push(row);
    }
    let specs: Vec<RouteSpec> = routes
        .iter()
        .map(|(name, rag, _)| RouteSpec {
            name: name.to_string(),
            rag: *rag,
            cost: if *name == "base" {
                Cost::default()
            } else if *rag {
                Cost {
                    train_minutes: None,
                    adapter_bytes: None,
                    update_seconds: Some(0.8),
                }
            } else {
                Cost {
                    train_minutes: Some(12.0),
                    adapter_bytes: Some(1 << 20),
                    update_seconds: Some(720.0),
                }
            },
        })
        .collect();
    r.compute(&specs, &StatsOptions::default());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(reference: &str, sources: &[&str], held_out: bool) -> QuestionRow {
        let item = QaItem {
            id: "x".into(),
            question: "q?".into(),
            answer: reference.into(),
            sources: sources.iter().map(|s| s.to_string()).collect(),
            alternatives: vec!["the permit office".into()],
        };
        QuestionRow::new(&item, held_out)
    }

    #[test]
    fn answers_are_scored_clean_against_every_reference() {
        let r = row("the town hall", &[], false);
        let refusal = "The knowledge base does not contain the answer.";
        let a = Answer::scored(&r, "The permit office [1].", refusal);
        assert_eq!((a.f1, a.exact_match, a.rouge_l), (1.0, 1.0, 1.0));
        assert_eq!(a.text, "The permit office [1].");
        let a = Answer::scored(&r, refusal, refusal);
        assert_eq!((a.f1, a.exact_match), (0.0, 0.0));
        let a = Answer::scored(&r, "town hall of Lyon", refusal);
        assert!((a.f1 - 2.0 * 1.0 * 0.5 / 1.5).abs() < 1e-12); // P 2/4, R 2/2
    }

    #[test]
    fn compute_fills_metrics_rag_figures_refusals_and_pairs() {
        let mut res = Results::new("m", None, serde_json::json!({}));
        for i in 0..10 {
            let mut q = row("ten euros", &["fees.md"], i >= 8);
            q.id = format!("q{i}");
            let good = i % 2 == 0;
            let mut rag = Answer::scored(&q, if good { "Ten euros [1]." } else { "No idea." }, "");
            rag.cited = if good {
                vec!["kb/fees.md".into()]
            } else {
                vec![]
            };
            rag.retrieved = vec!["kb/fees.md".into(), "kb/other.md".into()];
            rag.refused = i >= 8 || i == 7;
            rag.supported_share = Some(if good { 1.0 } else { 0.0 });
            rag.ttft_ms = 10.0 * i as f64;
            rag.total_ms = 100.0 * i as f64;
            q.answers.insert("rag".into(), rag);
            q.answers
                .insert("base".into(), Answer::scored(&q, "Five euros.", ""));
            res.questions.push(q);
        }
        let specs = [
            RouteSpec {
                name: "base".into(),
                rag: false,
                cost: Cost::default(),
            },
            RouteSpec {
                name: "rag".into(),
                rag: true,
                cost: Cost {
                    update_seconds: Some(0.5),
                    ..Cost::default()
                },
            },
        ];
        res.compute(&specs, &StatsOptions::default());
        let m = |route: &str, name: &str| res.metric(route, name).map(|e| e.value);
        assert_eq!(res.routes["rag"].n, 8);
        assert_eq!(m("rag", "f1"), Some(0.5)); // questions 0, 2, 4, 6 of 0..8
        assert_eq!(m("rag", "exact_match"), Some(0.5));
        assert_eq!(m("base", "f1"), Some(0.5)); // "five euros" vs "ten euros": 1 of 2
        assert_eq!(m("rag", "gold_retrieved"), Some(1.0));
        assert_eq!(m("rag", "gold_cited"), Some(0.5));
        assert_eq!(m("rag", "cited_share"), Some(4.0 / 7.0)); // 7 not refused, 4 cite
        assert_eq!(m("rag", "supported_share"), Some(0.5));
        assert_eq!(m("rag", "correct_refusal"), Some(1.0)); // 8, 9 held out, refused
        assert_eq!(m("rag", "false_refusal"), Some(1.0 / 8.0)); // 7
        assert_eq!(m("base", "gold_cited"), None);
        assert_eq!(m("base", "similarity"), None);
        assert_eq!(res.routes["rag"].latency.total_ms.p50, 450.0);
        assert_eq!(res.routes["rag"].cost.update_seconds, Some(0.5));
        assert_eq!(res.pairs.len(), 1);
        let p = res.pair("rag", "base").unwrap();
        assert_eq!((p.n, p.diff), (8, 0.0));
        assert!(!p.significant);
        assert_eq!(res.pairs[0].a, "base");
    }

    #[test]
    fn a_resumed_run_computes_the_same_results() {
        let r = synthetic(&[
            ("base", false, vec![0.0, 0.5, 1.0, 0.2]),
            ("rag", true, vec![1.0, 1.0, 0.5, 0.7]),
        ]);
        // The answers come back from the cache (JSON), the figures are computed again.
        let d = tempfile::tempdir().unwrap();
        let cache = crate::Cache::new(d.path());
        let key = crate::cache::CacheKey("k".repeat(64));
        let rows: Vec<BTreeMap<String, Answer>> =
            r.questions.iter().map(|q| q.answers.clone()).collect();
        cache.put(&key, &rows).unwrap();
        let back: Vec<BTreeMap<String, Answer>> = cache.get(&key).unwrap().unwrap();
        let mut again = r.clone();
        for (q, a) in again.questions.iter_mut().zip(back) {
            q.answers = a;
        }
        let specs: Vec<RouteSpec> = r
            .routes
            .iter()
            .map(|(name, rr)| RouteSpec {
                name: name.clone(),
                rag: rr.rag,
                cost: rr.cost,
            })
            .collect();
        again.compute(&specs, &StatsOptions::default());
        assert_eq!(again, r);
    }

    #[test]
    fn results_round_trip_and_schema_is_checked() {
        let r = synthetic(&[
            ("base", false, vec![0.0, 0.5, 1.0]),
            ("rag", true, vec![1.0, 1.0, 0.5]),
        ]);
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("results.json");
        r.write(&p).unwrap();
        assert_eq!(Results::read(&p).unwrap(), r);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(v["schema"], "lorag-eval/1");
        assert!(v["routes"]["rag"]["metrics"]["f1"]["low"].is_number());
        assert_eq!(
            v["questions"][0]["answers"]["rag"]["cited"][0],
            "kb/doc0.md"
        );
        std::fs::write(&p, r#"{"schema":"other/2"}"#).unwrap();
        let e = Results::read(&p).unwrap_err().to_string();
        assert!(
            e.contains("schema \"other/2\", expected \"lorag-eval/1\""),
            "{e}"
        );
    }
}
