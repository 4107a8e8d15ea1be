//! The recommendation: one paragraph, computed from the measurements only.
//!
//! The rules, in order:
//! 1. Quality: routes are ranked by mean F1. When the best route's lead over every other route is
//!    significant (paired bootstrap, 95% interval excluding 0), it is recommended.
//! 2. Otherwise the routes whose difference from the best is not significant are tied on quality,
//!    and among them the recommendation prefers a traceable route (a RAG route that cites its
//!    sources), then the cheaper update (lower `update_seconds`; a route with no update cost,
//!    like `base`, counts as free), then less training (`train_minutes`), then the higher
//!    `cited_share`, then the higher F1.
//! 3. The paragraph then says which routes are traceable, what an update costs per route, the
//!    recommended RAG route's refusals when measured, and how the learning curve trends: F1
//!    grows (or falls) with training data only when the paired bootstrap of the full training
//!    against the smallest share says so; otherwise the run cannot tell, and says that.

use crate::results::{Recommendation, Results};

fn pct(x: f64) -> String {
    format!("{:.1}", 100.0 * x)
}

fn signed(x: f64) -> String {
    format!("{:+.1}", 100.0 * x)
}

/// Human duration: seconds below two minutes, minutes below two hours, else hours.
pub fn duration(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{seconds:.1} s")
    } else if seconds < 7200.0 {
        format!("{:.1} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

fn join(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The recommendation for `r` (its routes, pairs and learning curve must be computed).
pub fn recommend(r: &Results) -> Recommendation {
    let f1 = |name: &str| r.metric(name, "f1");
    let mut ranked: Vec<&String> = r.routes.keys().filter(|n| f1(n).is_some()).collect();
    ranked.sort_by(|a, b| f1(b).unwrap().value.total_cmp(&f1(a).unwrap().value));
    let Some(&best) = ranked.first() else {
        return Recommendation {
            route: String::new(),
            text: "No route was measured, so there is nothing to recommend.".into(),
        };
    };
    let cited = |name: &str| r.metric(name, "cited_share").map_or(0.0, |e| e.value);
    let traceable = |name: &str| r.routes[name].rag && cited(name) > 0.0;
    let update = |name: &str| r.routes[name].cost.update_seconds.unwrap_or(0.0);
    let train = |name: &str| r.routes[name].cost.train_minutes.unwrap_or(0.0);
    let e = f1(best).unwrap();
    let n = r.routes[best].n;
    let mut text = format!(
        "On {n} test questions, {best} has the highest F1 ({}, 95% CI {}–{})",
        pct(e.value),
        pct(e.low),
        pct(e.high)
    );
    let tied: Vec<&String> = ranked[1..]
        .iter()
        .copied()
        .filter(|o| r.pair(best, o).is_none_or(|p| !p.significant))
        .collect();
    let chosen: String = if ranked.len() == 1 {
        text.push_str(", the only route measured.");
        best.clone()
    } else if tied.is_empty() {
        let second = ranked[1];
        let p = r.pair(best, second).expect("not tied: the pair exists");
        text.push_str(&format!(
            ", and its lead is significant: {} F1 over the runner-up {second} (95% CI {} to {}).",
            signed(p.diff),
            signed(p.low),
            signed(p.high)
        ));
        best.clone()
    } else {
        let p = r.pair(best, tied[0]);
        let over = if tied.len() > 1 {
            format!("over {}: ", tied[0])
        } else {
            String::new()
        };
        let detail = p.map_or(String::new(), |p| {
            format!(
                " ({over}{} F1, 95% CI {} to {})",
                signed(p.diff),
                signed(p.low),
                signed(p.high)
            )
        });
        let tied_names: Vec<String> = tied.iter().map(|s| s.to_string()).collect();
        text.push_str(&format!(
            ", but its lead over {} is not significant{detail}, so these routes are tied on quality.",
            join(&tied_names)
        ));
        let mut candidates: Vec<&String> =
            std::iter::once(best).chain(tied.iter().copied()).collect();
        candidates.sort_by(|a, b| {
            traceable(b)
                .cmp(&traceable(a))
                .then(update(a).total_cmp(&update(b)))
                .then(train(a).total_cmp(&train(b)))
                .then(cited(b).total_cmp(&cited(a)))
                .then(f1(b).unwrap().value.total_cmp(&f1(a).unwrap().value))
        });
        let pick = candidates[0];
        let others = &candidates[1..];
        let min_of =
            |f: &dyn Fn(&str) -> f64| others.iter().map(|c| f(c)).fold(f64::INFINITY, f64::min);
        let why = if traceable(pick) && others.iter().any(|c| !traceable(c)) {
            "it cites its sources"
        } else if update(pick) < min_of(&update) {
            "it is cheaper to keep up to date"
        } else if train(pick) < min_of(&train) {
            if train(pick) == 0.0 {
                "it needs no training"
            } else {
                "it needs less training"
            }
        } else if others.iter().all(|c| cited(pick) > cited(c)) {
            "it cites its sources most often"
        } else if pick == best {
            "it scores highest"
        } else {
            "it does as well at no greater cost"
        };
        text.push_str(&format!(" Among them {pick} is recommended because {why}."));
        pick.clone()
    };

    // Traceability.
    let (trace, blind): (Vec<String>, Vec<String>) =
        r.routes.keys().cloned().partition(|n| traceable(n));
    if !trace.is_empty() {
        let parts: Vec<String> = trace
            .iter()
            .map(|n| {
                let gold = r.metric(n, "gold_cited").map_or(String::new(), |g| {
                    format!(", the gold source in {}%", pct(g.value))
                });
                format!(
                    "{n} cites a source in {}% of its answers{gold}",
                    pct(cited(n))
                )
            })
            .collect();
        text.push_str(&format!(" Traceability: {}", parts.join("; ")));
        if blind.is_empty() {
            text.push('.');
        } else {
            text.push_str(&format!(
                "; {} answers cannot be traced to a document.",
                join(&blind)
            ));
        }
    }

    // Cost of an update.
    let costs: Vec<String> = r
        .routes
        .iter()
        .filter_map(|(n, rr)| {
            let s = rr.cost.update_seconds?;
            // A RAG route takes a changed document in by re-indexing it (an adapter of
            // rag+ft teaches the answering, not the facts); a fine-tuned route re-trains.
            let how = if rr.rag { "re-indexing" } else { "re-training" };
            Some(format!("{} of {how} for {n}", duration(s)))
        })
        .collect();
    if !costs.is_empty() {
        text.push_str(&format!(
            " Taking a changed document into account costs {}.",
            join(&costs)
        ));
    }

    // Refusals of the chosen route.
    if let (Some(c), Some(f)) = (
        r.metric(&chosen, "correct_refusal"),
        r.metric(&chosen, "false_refusal"),
    ) {
        text.push_str(&format!(
            " {chosen} refuses {}% of the questions whose sources are not in the KB and {}% of the answerable ones.",
            pct(c.value),
            pct(f.value)
        ));
    }

    // Learning curves.
    let mut curve_routes: Vec<&String> = r.learning_curve.iter().map(|p| &p.route).collect();
    curve_routes.dedup();
    curve_routes.sort();
    curve_routes.dedup();
    for route in curve_routes {
        let mut pts: Vec<(f64, f64)> = r
            .learning_curve
            .iter()
            .filter(|p| &p.route == route)
            .map(|p| (p.fraction, p.f1))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (Some(first), Some(last)) = (pts.first(), pts.last()) else {
            continue;
        };
        if pts.len() < 2 {
            continue;
        }
        let at = format!(
            "{} at {:.0}% of the train split, {} at {:.0}%",
            pct(first.1),
            100.0 * first.0,
            pct(last.1),
            100.0 * last.0
        );
        let tag = crate::results::curve_label(route, last.0);
        let Some(p) = r.curve_pairs.iter().find(|p| p.a == tag) else {
            text.push_str(&format!(" {route}'s F1: {at}."));
            continue;
        };
        let ci = format!(
            "{}, 95% CI {} to {}",
            signed(p.diff),
            signed(p.low),
            signed(p.high)
        );
        let sentence = if p.significant && p.diff > 0.0 {
            format!("grows with training data ({at}; {ci}), so more Q&A should help it")
        } else if p.significant {
            format!("falls as training data grows ({at}; {ci})")
        } else {
            format!(
                "shows no significant change with training data ({at}; {ci}): these questions cannot tell whether more Q&A would help it"
            )
        };
        text.push_str(&format!(" {route}'s F1 {sentence}."));
    }
    Recommendation {
        route: chosen,
        text,
    }
}

#[cfg(test)]
mod tests {
    use crate::results::{curve_pairs, synthetic, CurvePoint};
    use crate::StatsOptions;

    fn wave(n: usize, base: f64) -> Vec<f64> {
        (0..n)
            .map(|i| (base + 0.1 * ((i % 3) as f64 - 1.0)).clamp(0.0, 1.0))
            .collect()
    }

    #[test]
    fn clear_winner_is_named_with_its_significant_lead() {
        let r = synthetic(&[
            ("base", false, wave(30, 0.2)),
            ("ft", false, wave(30, 0.35)),
            ("rag", true, wave(30, 0.8)),
            ("rag+ft", true, wave(30, 0.6)),
        ]);
        let rec = &r.recommendation;
        assert_eq!(rec.route, "rag");
        assert!(
            rec.text
                .starts_with("On 30 test questions, rag has the highest F1 (80.0, 95% CI "),
            "{}",
            rec.text
        );
        assert!(
            rec.text
                .contains("its lead is significant: +20.0 F1 over the runner-up rag+ft"),
            "{}",
            rec.text
        );
        assert!(
            rec.text
                .contains("rag cites a source in 100.0% of its answers, the gold source in 100.0%"),
            "{}",
            rec.text
        );
        assert!(
            rec.text
                .contains("base and ft answers cannot be traced to a document"),
            "{}",
            rec.text
        );
        assert!(
            rec.text.contains("0.8 s of re-indexing for rag"),
            "{}",
            rec.text
        );
        assert!(
            rec.text.contains("12.0 min of re-training for ft"),
            "{}",
            rec.text
        );
    }

    #[test]
    fn a_tie_is_not_significant_and_prefers_the_traceable_cheaper_route() {
        // ft is a hair ahead of rag, but the difference is noise.
        let ft: Vec<f64> = (0..30)
            .map(|i| if i % 2 == 0 { 0.9 } else { 0.3 })
            .collect();
        let rag: Vec<f64> = (0..30)
            .map(|i| if i % 2 == 0 { 0.3 } else { 0.85 })
            .collect();
        let r = synthetic(&[("ft", false, ft), ("rag", true, rag)]);
        let rec = &r.recommendation;
        assert_eq!(rec.route, "rag", "{}", rec.text);
        assert!(rec.text.contains("ft has the highest F1"), "{}", rec.text);
        assert!(
            rec.text
                .contains("its lead over rag is not significant (+2.5 F1, 95% CI "),
            "{}",
            rec.text
        );
        assert!(rec.text.contains("is not significant"), "{}", rec.text);
        assert!(
            rec.text
                .contains("Among them rag is recommended because it cites its sources."),
            "{}",
            rec.text
        );
    }

    #[test]
    fn a_tie_between_rag_routes_prefers_the_one_without_training() {
        let rag: Vec<f64> = (0..30)
            .map(|i| if i % 2 == 0 { 0.6 } else { 0.8 })
            .collect();
        let rag_ft: Vec<f64> = (0..30)
            .map(|i| if i % 2 == 0 { 0.9 } else { 0.55 })
            .collect();
        let mut r = synthetic(&[("rag", true, rag), ("rag+ft", true, rag_ft)]);
        r.routes.get_mut("rag+ft").unwrap().cost.train_minutes = Some(12.0);
        r.routes.get_mut("rag+ft").unwrap().cost.update_seconds = Some(0.8);
        let rec = super::recommend(&r);
        assert!(
            rec.text.contains("rag+ft has the highest F1"),
            "{}",
            rec.text
        );
        assert_eq!(rec.route, "rag", "{}", rec.text);
        assert!(
            rec.text
                .contains("Among them rag is recommended because it needs no training."),
            "{}",
            rec.text
        );
    }

    #[test]
    fn learning_curve_trend_and_degenerate_cases() {
        let mut r = synthetic(&[("base", false, wave(12, 0.5)), ("ft", false, wave(12, 0.5))]);
        let point = |fraction: f64, f1s: Vec<f64>| CurvePoint {
            route: "ft".into(),
            fraction,
            f1: f1s.iter().sum::<f64>() / f1s.len() as f64,
            f1s,
        };
        let pairs = |r: &mut crate::Results| {
            r.curve_pairs = curve_pairs(&r.learning_curve, &StatsOptions::default());
            super::recommend(r)
        };
        // Better on every question with the whole train split: a real trend.
        r.learning_curve = vec![
            point(1.0, wave(12, 0.4)),
            point(0.25, wave(12, 0.2)),
            point(0.5, wave(12, 0.3)),
        ];
        let rec = pairs(&mut r);
        // Tied, neither traceable: base is free to update, ft costs a re-training.
        assert_eq!(rec.route, "base", "{}", rec.text);
        assert!(
            rec.text
                .contains("because it is cheaper to keep up to date"),
            "{}",
            rec.text
        );
        assert!(rec.text.contains("ft's F1 grows with training data (20.0 at 25% of the train split, 40.0 at 100%; +20.0, 95% CI +20.0 to +20.0), so more Q&A should help it."), "{}", rec.text);
        assert_eq!(r.curve_pairs[0].a, "ft @100%");
        assert_eq!(r.curve_pairs[0].b, "ft @25%");
        // Worse on every question: it falls.
        r.learning_curve[1] = point(0.25, wave(12, 0.6));
        assert!(pairs(&mut r)
            .text
            .contains("ft's F1 falls as training data grows (60.0 at 25%"));
        // A higher mean that the questions do not support (one question moves): no claim.
        let mut one_up = wave(12, 0.2);
        one_up[0] = 1.0;
        r.learning_curve[0] = point(1.0, one_up);
        r.learning_curve[1] = point(0.25, wave(12, 0.2));
        let text = pairs(&mut r).text;
        assert!(
            text.contains("ft's F1 shows no significant change with training data (20.0 at 25% of the train split, 27.5 at 100%; +7.5, 95% CI")
                && text.contains("these questions cannot tell whether more Q&A would help it."),
            "{text}"
        );
        // Results written before per-question scores were kept: the figures, no trend.
        for p in &mut r.learning_curve {
            p.f1s.clear();
        }
        let text = pairs(&mut r).text;
        assert!(
            text.contains("ft's F1: 20.0 at 25% of the train split, 27.5 at 100%."),
            "{text}"
        );

        let one = synthetic(&[("rag", true, wave(5, 0.5))]);
        assert_eq!(one.recommendation.route, "rag");
        assert!(one.recommendation.text.contains("the only route measured"));
        let mut none = one.clone();
        none.routes.clear();
        assert_eq!(super::recommend(&none).route, "");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(super::duration(0.84), "0.8 s");
        assert_eq!(super::duration(720.0), "12.0 min");
        assert_eq!(super::duration(9000.0), "2.5 h");
    }
}
