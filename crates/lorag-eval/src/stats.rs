//! Uncertainty: percentile bootstrap intervals of a mean, the paired bootstrap between two
//! routes, and percentiles of latencies. Seeded ([`StatsOptions::seed`]): the same inputs give
//! the same intervals.

use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// How intervals are computed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StatsOptions {
    /// Bootstrap resamples (default 1000).
    pub resamples: usize,
    pub seed: u64,
    /// Interval coverage (default 0.95: the 2.5th and 97.5th percentiles).
    pub confidence: f64,
}

impl Default for StatsOptions {
    fn default() -> Self {
        Self {
            resamples: 1000,
            seed: 42,
            confidence: 0.95,
        }
    }
}

/// A mean with its bootstrap interval: `{"value", "low", "high"}` in `results.json`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

/// The paired bootstrap of `mean(a) - mean(b)` over the same questions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairedDiff {
    /// Mean of the per-question differences a − b.
    pub diff: f64,
    pub low: f64,
    pub high: f64,
    /// Two-sided bootstrap share: 2 · min(share of resampled means ≤ 0, share ≥ 0), at most 1.
    pub p_value: f64,
    /// The interval excludes 0.
    pub significant: bool,
}

/// Arithmetic mean (`None` when empty).
pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// The `q`-quantile (0 ≤ q ≤ 1) with linear interpolation between closest ranks (numpy's
/// default). `None` when empty.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(quantile_sorted(&v, q))
}

fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// Means of `opts.resamples` resamples (with replacement) of `values`, sorted.
fn resampled_means(values: &[f64], opts: &StatsOptions) -> Vec<f64> {
    let n = values.len();
    let mut rng = Rng::new(opts.seed ^ 0xB007_57A9);
    let mut means: Vec<f64> = (0..opts.resamples.max(1))
        .map(|_| (0..n).map(|_| values[rng.below(n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    means
}

/// The mean of `values` with its percentile bootstrap interval (`None` when empty).
pub fn bootstrap_mean(values: &[f64], opts: &StatsOptions) -> Option<Estimate> {
    let value = mean(values)?;
    let means = resampled_means(values, opts);
    let tail = (1.0 - opts.confidence) / 2.0;
    Some(Estimate {
        value,
        low: quantile_sorted(&means, tail),
        high: quantile_sorted(&means, 1.0 - tail),
    })
}

/// Paired bootstrap of two routes' per-question scores (`a[i]` and `b[i]` on the same
/// question): resample questions, not answers. `None` when empty or the lengths differ.
pub fn paired_bootstrap(a: &[f64], b: &[f64], opts: &StatsOptions) -> Option<PairedDiff> {
    if a.len() != b.len() {
        return None;
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let e = bootstrap_mean(&d, opts)?;
    let means = resampled_means(&d, opts);
    let share = |f: &dyn Fn(f64) -> bool| {
        means.iter().filter(|&&m| f(m)).count() as f64 / means.len() as f64
    };
    let p_value = (2.0 * share(&|m| m <= 0.0).min(share(&|m| m >= 0.0))).min(1.0);
    Some(PairedDiff {
        diff: e.value,
        low: e.low,
        high: e.high,
        p_value,
        significant: e.low > 0.0 || e.high < 0.0,
    })
}

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub mean: f64,
}

/// p50, p95 and mean of `values` (all 0 when empty).
pub fn percentiles(values: &[f64]) -> Percentiles {
    Percentiles {
        p50: percentile(values, 0.5).unwrap_or(0.0),
        p95: percentile(values, 0.95).unwrap_or(0.0),
        mean: mean(values).unwrap_or(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate() {
        let v = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(percentile(&v, 0.5), Some(3.0));
        assert_eq!(percentile(&v, 0.95), Some(4.8));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[], 0.5), None);
        let p = percentiles(&[10.0, 20.0]);
        assert_eq!((p.p50, p.p95, p.mean), (15.0, 19.5, 15.0));
    }

    #[test]
    fn bootstrap_interval_brackets_the_mean_and_is_seeded() {
        let v: Vec<f64> = (0..100).map(|i| f64::from(i % 2)).collect(); // mean 0.5, sd 0.5
        let o = StatsOptions::default();
        let e = bootstrap_mean(&v, &o).unwrap();
        assert_eq!(e.value, 0.5);
        // Normal approximation: 0.5 ± 1.96 · 0.05 ≈ [0.40, 0.60].
        assert!(
            (0.38..0.43).contains(&e.low) && (0.57..0.62).contains(&e.high),
            "{e:?}"
        );
        assert_eq!(bootstrap_mean(&v, &o), Some(e));
        let w: Vec<f64> = (0..50).map(|i| f64::from(i * i % 17) / 17.0).collect();
        let other = bootstrap_mean(&w, &StatsOptions { seed: 7, ..o }).unwrap();
        assert_ne!(bootstrap_mean(&w, &o).unwrap(), other);
        let c = bootstrap_mean(&[0.3; 10], &o).unwrap();
        assert!(
            [c.value, c.low, c.high]
                .iter()
                .all(|x| (x - 0.3).abs() < 1e-12),
            "{c:?}"
        );
        assert_eq!(bootstrap_mean(&[], &o), None);
    }

    #[test]
    fn paired_bootstrap_separates_real_from_noise() {
        let o = StatsOptions::default();
        // a beats b by 0.2 on every question but one: significant.
        let b: Vec<f64> = (0..40).map(|i| (i % 5) as f64 / 10.0).collect();
        let mut a: Vec<f64> = b.iter().map(|x| x + 0.2).collect();
        a[0] = b[0];
        let p = paired_bootstrap(&a, &b, &o).unwrap();
        assert!((p.diff - 0.195).abs() < 1e-12, "{p:?}");
        assert!(
            p.significant && p.low > 0.15 && p.high <= 0.2 + 1e-12 && p.p_value == 0.0,
            "{p:?}"
        );
        // Differences that cancel out: not significant, p near 1.
        let a2: Vec<f64> = (0..40)
            .map(|i| if i % 2 == 0 { 1.0 } else { 0.0 })
            .collect();
        let b2: Vec<f64> = (0..40)
            .map(|i| if i % 2 == 0 { 0.0 } else { 1.0 })
            .collect();
        let q = paired_bootstrap(&a2, &b2, &o).unwrap();
        assert_eq!(q.diff, 0.0);
        assert!(
            !q.significant && q.low < 0.0 && q.high > 0.0 && q.p_value > 0.5,
            "{q:?}"
        );
        // Identical routes.
        let same = paired_bootstrap(&b, &b, &o).unwrap();
        assert_eq!(
            (same.diff, same.significant, same.p_value),
            (0.0, false, 1.0)
        );
        assert_eq!(paired_bootstrap(&a, &b[1..], &o), None);
    }
}
