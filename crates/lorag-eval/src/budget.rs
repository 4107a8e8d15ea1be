//! `--budget`: fit the training steps to a time budget, from a speed measured on this machine.
//!
//! A training of `s` steps costs `s · seconds_per_step`; the learning curve adds, per trained
//! route, one training on each smaller share `f` of the train split with `round(s · f)` steps
//! (the same number of epochs). The plan keeps the learning curve when the budget allows at
//! least `min_steps` with it, else drops it; with less than `min_steps` either way it is an
//! error before any work.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// What the budget allows, and the sentence that says so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetPlan {
    /// Steps of each full training.
    pub steps: usize,
    /// Whether the learning-curve trainings fit.
    pub learning_curve: bool,
    /// Estimated training minutes in all.
    pub minutes: f64,
    pub text: String,
}

/// Steps of the learning-curve training on `fraction` of the train split.
pub fn curve_steps(steps: usize, fraction: f64) -> usize {
    ((steps as f64 * fraction).round() as usize).max(1)
}

/// Plan `trainings` full trainings (one per route to train) of at most `wanted_steps`, plus the
/// learning curve at `curve_fractions` (e.g. `[0.25, 0.5]`; the full training is the 100%
/// point), within `budget_minutes` (`None`: no limit), at `seconds_per_step`.
pub fn plan(
    budget_minutes: Option<f64>,
    seconds_per_step: f64,
    trainings: usize,
    wanted_steps: usize,
    curve_fractions: &[f64],
    min_steps: usize,
) -> Result<BudgetPlan> {
    if trainings == 0 {
        return Ok(BudgetPlan {
            steps: 0,
            learning_curve: false,
            minutes: 0.0,
            text: "No route needs training.".into(),
        });
    }
    if seconds_per_step.is_nan() || seconds_per_step <= 0.0 {
        return Err(Error::Invalid(format!(
            "the measured training speed must be positive, got {seconds_per_step} s/step"
        )));
    }
    let minutes = |steps: usize, curve: bool| {
        let extra: usize = if curve {
            curve_fractions.iter().map(|&f| curve_steps(steps, f)).sum()
        } else {
            0
        };
        trainings as f64 * (steps + extra) as f64 * seconds_per_step / 60.0
    };
    let curve_factor = 1.0 + curve_fractions.iter().sum::<f64>();
    let (steps, curve) = match budget_minutes {
        None => (wanted_steps, !curve_fractions.is_empty()),
        Some(b) => {
            let fit = |factor: f64| {
                let mut s = ((b * 60.0 / (trainings as f64 * seconds_per_step * factor)).floor()
                    as usize)
                    .min(wanted_steps);
                // Rounding of the curve's steps may overshoot by a step or two.
                while s > 0 && minutes(s, factor > 1.0) > b {
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
                        "a budget of {b} min allows only {alone} training steps ({trainings} adapter{} at {seconds_per_step:.2} s/step); at least {min_steps} are needed: raise --budget or give adapters with --ft-adapter/--rag-ft-adapter",
                        if trainings == 1 { "" } else { "s" }
                    )));
                }
                (alone, false)
            }
        }
    };
    let total = minutes(steps, curve);
    let mut text = format!(
        "{steps} training steps per adapter ({trainings} adapter{} at {seconds_per_step:.2} s/step)",
        if trainings == 1 { "" } else { "s" }
    );
    if curve {
        let shares: Vec<String> = curve_fractions
            .iter()
            .map(|f| format!("{:.0}%", 100.0 * f))
            .collect();
        text.push_str(&format!(
            ", with the learning curve at {} of the train split",
            shares.join(", ")
        ));
    } else if !curve_fractions.is_empty() {
        text.push_str(", without the learning curve (it does not fit the budget)");
    }
    text.push_str(&format!(": about {total:.1} min of training"));
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

    #[test]
    fn budget_fits_steps_and_drops_the_curve_last() {
        // 2 adapters at 1.5 s/step, curve at 25% and 50%: 1.75 · 3 s = 5.25 s per step.
        let p = plan(Some(30.0), 1.5, 2, 1000, &[0.25, 0.5], 50).unwrap();
        assert!(p.learning_curve);
        assert_eq!(p.steps, 342); // floor(1800 / 5.25)
        assert!(p.minutes <= 30.0 && p.minutes > 29.5, "{p:?}");
        assert!(p.text.starts_with("342 training steps per adapter (2 adapters at 1.50 s/step), with the learning curve at 25%, 50% of the train split: about"), "{}", p.text);
        // The wanted steps cap the plan.
        assert_eq!(
            plan(Some(30.0), 1.5, 2, 200, &[0.25, 0.5], 50)
                .unwrap()
                .steps,
            200
        );
        // Tight budget: the curve goes first.
        let p = plan(Some(2.0), 1.5, 2, 1000, &[0.25, 0.5], 30).unwrap();
        assert_eq!((p.steps, p.learning_curve), (40, false));
        assert!(p.text.contains("without the learning curve"));
        // Too tight: a clear error.
        let e = plan(Some(0.5), 1.5, 2, 1000, &[0.25], 30)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("allows only 10 training steps") && e.contains("at least 30"),
            "{e}"
        );
        // No budget: as asked.
        let p = plan(None, 1.0, 1, 100, &[0.5], 10).unwrap();
        assert_eq!((p.steps, p.learning_curve), (100, true));
        assert!((p.minutes - 2.5).abs() < 1e-9);
        assert_eq!(plan(Some(1.0), 1.0, 0, 100, &[], 10).unwrap().steps, 0);
        assert!(plan(None, 0.0, 1, 100, &[], 10).is_err());
        assert_eq!(curve_steps(342, 0.25), 86);
    }
}
