//! `--budget`: fit the training steps to a time budget, from speeds measured on this machine.
//!
//! Each adapter to train has its own speed: a route's training data decides its sequence
//! lengths, and RAG-aware conversations (retrieved sources in every prompt) cost several times
//! a plain Q&A step. A step of every adapter together costs `Σ seconds_per_step`, so `s` steps
//! per adapter cost `s · Σ seconds_per_step`; the learning curve adds, per trained route, one
//! training on each smaller share `f` of the train split with `round(s · f)` steps (the same
//! number of epochs). The plan keeps the learning curve when the budget allows at least
//! `min_steps` with it, else drops it; with less than `min_steps` either way it is an error
//! before any work.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// What the budget allows, and the sentence that says so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetPlan {
    /// Steps of each full training.
    pub steps: usize,
    /// Whether the learning-curve trainings fit.
    pub learning_curve: bool,
    /// Estimated training minutes in all (`None` when no speed was measured).
    pub minutes: Option<f64>,
    pub text: String,
}

/// One adapter to train: its route, and its speed on this machine when a budget needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Training<'a> {
    pub route: &'a str,
    pub seconds_per_step: Option<f64>,
}

/// Steps of the learning-curve training on `fraction` of the train split.
pub fn curve_steps(steps: usize, fraction: f64) -> usize {
    ((steps as f64 * fraction).round() as usize).max(1)
}

/// Plan one full training per entry of `trainings` of at most `wanted_steps`, plus the learning
/// curve at `curve_fractions` (e.g. `[0.25, 0.5]`; the full training is the 100% point), within
/// `budget_minutes` (`None`: no limit). A budget needs every training's measured speed.
pub fn plan(
    budget_minutes: Option<f64>,
    trainings: &[Training],
    wanted_steps: usize,
    curve_fractions: &[f64],
    min_steps: usize,
) -> Result<BudgetPlan> {
    if trainings.is_empty() {
        return Ok(BudgetPlan {
            steps: 0,
            learning_curve: false,
            minutes: Some(0.0),
            text: "No route needs training.".into(),
        });
    }
    let mut per_step = Some(0.0);
    for t in trainings {
        match t.seconds_per_step {
            Some(s) if s.is_nan() || s <= 0.0 => {
                return Err(Error::Invalid(format!(
                    "the measured training speed of {} must be positive, got {s} s/step",
                    t.route
                )))
            }
            Some(s) => per_step = per_step.map(|p| p + s),
            None => per_step = None,
        }
    }
    let curve_steps_sum = |steps: usize, curve: bool| -> usize {
        if curve {
            curve_fractions.iter().map(|&f| curve_steps(steps, f)).sum()
        } else {
            0
        }
    };
    let minutes = |steps: usize, curve: bool| {
        per_step.map(|p| (steps + curve_steps_sum(steps, curve)) as f64 * p / 60.0)
    };
    let curve_factor = 1.0 + curve_fractions.iter().sum::<f64>();
    let speeds: Vec<String> = trainings
        .iter()
        .map(|t| match t.seconds_per_step {
            Some(s) => format!("{} at {s:.2} s/step", t.route),
            None => t.route.to_string(),
        })
        .collect();
    let (steps, curve) = match budget_minutes {
        None => (wanted_steps, !curve_fractions.is_empty()),
        Some(b) => {
            let Some(p) = per_step else {
                return Err(Error::Invalid(format!(
                    "a budget of {b} min needs the measured speed of every adapter to train ({})",
                    speeds.join(", ")
                )));
            };
            let fit = |factor: f64| {
                let mut s = ((b * 60.0 / (p * factor)).floor() as usize).min(wanted_steps);
                // Rounding of the curve's steps may overshoot by a step or two.
                while s > 0 && minutes(s, factor > 1.0).unwrap_or(0.0) > b {
                    s -= 1;
                }
                s
            };
            let with_curve = fit(curve_factor);
            if !curve_fractions.is_empty() && with_curve >= min_steps {
                (with_curve, true)
            } else {
                let alone = fit(1.0);
                if alone < min_steps {
                    return Err(Error::Invalid(format!(
                        "a budget of {b} min allows only {alone} training steps per adapter ({}); at least {min_steps} are needed: raise --budget or give adapters with --ft-adapter/--rag-ft-adapter",
                        speeds.join(", ")
                    )));
                }
                (alone, false)
            }
        }
    };
    let total = minutes(steps, curve);
    let mut text = format!("{steps} training steps per adapter ({})", speeds.join(", "));
    if curve {
        let shares: Vec<String> = curve_fractions
            .iter()
            .map(|f| format!("{:.0}%", 100.0 * f))
            .collect();
        text.push_str(&format!(
            ", with the learning curve at {} of the train split",
            shares.join(", ")
        ));
    } else if !curve_fractions.is_empty() && budget_minutes.is_some() {
        text.push_str(", without the learning curve (it does not fit the budget)");
    }
    if let Some(t) = total {
        text.push_str(&format!(": about {t:.1} min of training"));
    }
    if let Some(b) = budget_minutes {
        text.push_str(&format!(" within the budget of {b} min"));
    }
    text.push('.');
    Ok(BudgetPlan {
        steps,
        learning_curve: curve,
        minutes: total,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(route: &str, s: f64) -> Training<'_> {
        Training {
            route,
            seconds_per_step: Some(s),
        }
    }

    #[test]
    fn budget_fits_steps_and_drops_the_curve_last() {
        // ft at 0.5 s/step, rag+ft at 2.5 s/step; curve at 25% and 50%: 1.75 · 3 s = 5.25 s per step.
        let two = [t("ft", 0.5), t("rag+ft", 2.5)];
        let p = plan(Some(30.0), &two, 1000, &[0.25, 0.5], 50).unwrap();
        assert!(p.learning_curve);
        assert_eq!(p.steps, 342); // floor(1800 / 5.25)
        let m = p.minutes.unwrap();
        assert!(m <= 30.0 && m > 29.5, "{p:?}");
        assert!(p.text.starts_with("342 training steps per adapter (ft at 0.50 s/step, rag+ft at 2.50 s/step), with the learning curve at 25%, 50% of the train split: about"), "{}", p.text);
        // The slow route's speed counts: at 0.5 s/step for both, five times the steps would fit.
        let p = plan(
            Some(30.0),
            &[t("ft", 0.5), t("rag+ft", 0.5)],
            10_000,
            &[],
            1,
        )
        .unwrap();
        assert_eq!(p.steps, 1800);
        // The wanted steps cap the plan.
        assert_eq!(
            plan(Some(30.0), &two, 200, &[0.25, 0.5], 50).unwrap().steps,
            200
        );
        // Tight budget: the curve goes first.
        let p = plan(Some(2.0), &two, 1000, &[0.25, 0.5], 30).unwrap();
        assert_eq!((p.steps, p.learning_curve), (40, false));
        assert!(p.text.contains("without the learning curve"));
        // Too tight: a clear error that names each speed.
        let e = plan(Some(0.5), &two, 1000, &[0.25], 30)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("allows only 10 training steps")
                && e.contains("rag+ft at 2.50 s/step")
                && e.contains("at least 30"),
            "{e}"
        );
        // No budget: as asked, and no minutes claimed without a measured speed.
        let unmeasured = [Training {
            route: "ft",
            seconds_per_step: None,
        }];
        let p = plan(None, &unmeasured, 100, &[0.5], 10).unwrap();
        assert_eq!((p.steps, p.learning_curve, p.minutes), (100, true, None));
        assert_eq!(
            p.text,
            "100 training steps per adapter (ft), with the learning curve at 50% of the train split."
        );
        assert!(
            (plan(None, &[t("ft", 1.0)], 100, &[0.5], 10)
                .unwrap()
                .minutes
                .unwrap()
                - 2.5)
                .abs()
                < 1e-9
        );
        assert_eq!(plan(Some(1.0), &[], 100, &[], 10).unwrap().steps, 0);
        assert!(plan(Some(1.0), &unmeasured, 100, &[], 10).is_err());
        assert!(plan(None, &[t("ft", 0.0)], 100, &[], 10).is_err());
        assert_eq!(curve_steps(342, 0.25), 86);
    }
}
