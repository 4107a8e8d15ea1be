//! Prometheus text metrics: requests by route and status, queue depth, busy slots, tokens,
//! time-to-first-token and request-duration histograms.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

const BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    n: u64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        for (i, b) in BUCKETS.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.n += 1;
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let c = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.n);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.n);
    }
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    ttft: Histogram,
    duration: Histogram,
}

/// Gauges and counters owned elsewhere, read when rendering.
pub struct Live {
    pub queue_depth: usize,
    pub busy_slots: usize,
    pub slots: usize,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub decode_calls: usize,
    pub cancelled: usize,
}

impl Metrics {
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        let mut m = self.inner.lock().expect("not poisoned");
        *m.requests.entry((route.to_string(), status)).or_default() += 1;
        m.duration.observe(seconds);
    }

    pub fn ttft(&self, seconds: f64) {
        self.inner
            .lock()
            .expect("not poisoned")
            .ttft
            .observe(seconds);
    }

    pub fn render(&self, live: Option<&Live>) -> String {
        let m = self.inner.lock().expect("not poisoned");
        let mut out = String::new();
        out.push_str("# HELP lorag_requests_total HTTP requests by route and status.\n# TYPE lorag_requests_total counter\n");
        for ((route, status), n) in &m.requests {
            let route = route.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(
                out,
                "lorag_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        if let Some(l) = live {
            let gauge = |out: &mut String, name: &str, help: &str, kind: &str, v: usize| {
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
                );
            };
            gauge(
                &mut out,
                "lorag_queue_depth",
                "Requests waiting for a slot.",
                "gauge",
                l.queue_depth,
            );
            gauge(
                &mut out,
                "lorag_busy_slots",
                "Slots generating now.",
                "gauge",
                l.busy_slots,
            );
            gauge(
                &mut out,
                "lorag_slots",
                "Slots (--parallel).",
                "gauge",
                l.slots,
            );
            gauge(
                &mut out,
                "lorag_prompt_tokens_total",
                "Prompt tokens submitted.",
                "counter",
                l.prompt_tokens,
            );
            gauge(
                &mut out,
                "lorag_completion_tokens_total",
                "Completion tokens generated.",
                "counter",
                l.completion_tokens,
            );
            gauge(
                &mut out,
                "lorag_cancelled_total",
                "Generations stopped early (client gone, timeout).",
                "counter",
                l.cancelled,
            );
            gauge(
                &mut out,
                "lorag_decode_calls_total",
                "llama_decode calls (one per batched step).",
                "counter",
                l.decode_calls,
            );
        }
        m.ttft.render(
            "lorag_time_to_first_token_seconds",
            "Time from request to first streamed token (chat completions).",
            &mut out,
        );
        m.duration.render(
            "lorag_request_duration_seconds",
            "Request duration, headers to end of body.",
            &mut out,
        );
        out
    }
}
