//! Serving metrics in the Prometheus text format: per model, requests, errors by status, a
//! latency histogram and the model's load time. Lock-free counters; the set of models is fixed
//! when the server starts. The exposition itself is [`tessera_metrics`]'s.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use tessera_metrics::LATENCY_BUCKETS;
use tessera_metrics::{Histogram, escape_label};

/// Counters of one model.
#[derive(Debug, Default)]
pub struct ModelMetrics {
    requests: AtomicU64,
    /// (status code, count); the few codes the server answers with.
    errors: [(u16, AtomicU64); 5],
    latency: Histogram,
    load_us: AtomicU64,
    loaded: AtomicU64,
    cache_hit: AtomicU64,
    in_flight: AtomicU64,
}

/// Counts a request as in flight until dropped.
#[derive(Debug)]
pub struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

const ERROR_CODES: [u16; 5] = [400, 413, 500, 503, 0];

impl ModelMetrics {
    fn new() -> Self {
        let mut m = ModelMetrics::default();
        for (slot, code) in m.errors.iter_mut().zip(ERROR_CODES) {
            slot.0 = code;
        }
        m
    }

    /// Marks a request in flight (REST or gRPC) until the guard drops: what an operator drains
    /// before a restart, and what tests await instead of sleeping.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.in_flight)
    }

    /// Records one finished inference request: its HTTP status and how long it took.
    pub fn observe(&self, status: u16, took: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 400 {
            let slot = self.errors.iter().find(|(c, _)| *c == status).unwrap_or(&self.errors[4]);
            slot.1.fetch_add(1, Ordering::Relaxed);
        }
        self.latency.observe(took);
    }

    /// Records the model's load: how long it took and whether the optimized-model cache served it.
    pub fn set_loaded(&self, took: Duration, cache_hit: bool) {
        self.load_us.store(took.as_micros() as u64, Ordering::Relaxed);
        self.cache_hit.store(u64::from(cache_hit), Ordering::Relaxed);
        self.loaded.store(1, Ordering::Relaxed);
    }
}

/// All metrics of a server.
#[derive(Debug)]
pub struct Metrics {
    models: BTreeMap<String, ModelMetrics>,
    unknown_model: AtomicU64,
}

impl Metrics {
    /// Metrics for a fixed set of model names.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        Metrics {
            models: names.into_iter().map(|n| (n.to_string(), ModelMetrics::new())).collect(),
            unknown_model: AtomicU64::new(0),
        }
    }

    /// The counters of one model.
    pub fn model(&self, name: &str) -> Option<&ModelMetrics> {
        self.models.get(name)
    }

    /// Counts a request for a model that does not exist.
    pub fn unknown_model(&self) {
        self.unknown_model.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let families: [(&str, &str, &str); 7] = [
            ("tessera_infer_requests_total", "counter", "Inference requests answered, per model."),
            (
                "tessera_infer_in_flight",
                "gauge",
                "Inference requests being answered now, per model.",
            ),
            (
                "tessera_infer_errors_total",
                "counter",
                "Inference requests answered with an error, per model and status.",
            ),
            (
                "tessera_infer_duration_seconds",
                "histogram",
                "Inference request latency, from body read to response.",
            ),
            (
                "tessera_model_load_seconds",
                "gauge",
                "Time to load the model (session creation), per model.",
            ),
            (
                "tessera_model_optimized_cache_hit",
                "gauge",
                "1 when the model loaded from the optimized-model cache.",
            ),
            (
                "tessera_infer_unknown_model_total",
                "counter",
                "Requests naming a model that is not served.",
            ),
        ];
        for (name, kind, help) in families {
            tessera_metrics::family(&mut out, name, kind, help);
            match name {
                "tessera_infer_unknown_model_total" => {
                    let _ = writeln!(out, "{name} {}", self.unknown_model.load(Ordering::Relaxed));
                }
                _ => self.models.iter().for_each(|(m, mm)| render_family(&mut out, name, m, mm)),
            }
        }
        out
    }
}

fn render_family(out: &mut String, family: &str, model: &str, m: &ModelMetrics) {
    let model = escape_label(model);
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    match family {
        "tessera_infer_requests_total" => {
            let _ = writeln!(out, "{family}{{model=\"{model}\"}} {}", get(&m.requests));
        }
        "tessera_infer_in_flight" => {
            let _ = writeln!(out, "{family}{{model=\"{model}\"}} {}", get(&m.in_flight));
        }
        "tessera_infer_errors_total" => {
            for (code, n) in &m.errors {
                let code = if *code == 0 { "other".to_string() } else { code.to_string() };
                let _ = writeln!(out, "{family}{{model=\"{model}\",code=\"{code}\"}} {}", get(n));
            }
        }
        "tessera_infer_duration_seconds" => {
            m.latency.render(out, family, &format!("model=\"{model}\""));
        }
        "tessera_model_load_seconds" if get(&m.loaded) == 1 => {
            let _ = writeln!(out, "{family}{{model=\"{model}\"}} {}", get(&m.load_us) as f64 / 1e6);
        }
        "tessera_model_optimized_cache_hit" if get(&m.loaded) == 1 => {
            let _ = writeln!(out, "{family}{{model=\"{model}\"}} {}", get(&m.cache_hit));
        }
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::new(["a"]);
        let a = m.model("a").unwrap();
        a.observe(200, Duration::from_micros(700));
        a.observe(400, Duration::from_millis(3));
        a.set_loaded(Duration::from_millis(250), true);
        m.unknown_model();
        let text = m.render();
        for line in [
            "tessera_infer_requests_total{model=\"a\"} 2",
            "tessera_infer_errors_total{model=\"a\",code=\"400\"} 1",
            "tessera_infer_duration_seconds_bucket{model=\"a\",le=\"0.0005\"} 0",
            "tessera_infer_duration_seconds_bucket{model=\"a\",le=\"0.001\"} 1",
            "tessera_infer_duration_seconds_bucket{model=\"a\",le=\"0.005\"} 2",
            "tessera_infer_duration_seconds_bucket{model=\"a\",le=\"+Inf\"} 2",
            "tessera_infer_duration_seconds_count{model=\"a\"} 2",
            "tessera_model_load_seconds{model=\"a\"} 0.25",
            "tessera_model_optimized_cache_hit{model=\"a\"} 1",
            "tessera_infer_unknown_model_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn in_flight_counts_until_the_guard_drops() {
        let m = Metrics::new(["a"]);
        let gauge =
            |m: &Metrics| m.render().lines().any(|l| l == "tessera_infer_in_flight{model=\"a\"} 1");
        let guard = m.model("a").unwrap().in_flight();
        assert!(gauge(&m));
        drop(guard);
        assert!(!gauge(&m));
    }
}
