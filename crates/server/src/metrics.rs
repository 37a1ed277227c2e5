//! What a hub server answered, for `--metrics-listen`: requests by status class and their
//! latency. Counted where every request is logged (`log_request`), so the two never disagree.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tessera_metrics::{Histogram, family, sample};

/// Status classes counted: `1xx` to `5xx`.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Counters shared by every request; lock-free.
#[derive(Debug, Default)]
pub struct RequestMetrics {
    by_class: [AtomicU64; CLASSES.len()],
    latency: Histogram,
}

impl RequestMetrics {
    /// Counts one answered request.
    pub(crate) fn record(&self, status: u16, took: Duration) {
        let class = usize::from(status / 100).clamp(1, CLASSES.len()) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        self.latency.observe(took);
    }

    /// Writes the families in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let name = "tessera_hub_requests_total";
        family(out, name, "counter", "Requests answered, by status class.");
        for (class, n) in CLASSES.iter().zip(&self.by_class) {
            sample(out, name, &format!("code=\"{class}\""), n.load(Ordering::Relaxed));
        }
        let name = "tessera_hub_request_seconds";
        family(out, name, "histogram", "Time to answer a request (headers; bodies stream after).");
        self.latency.render(out, name, "");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_class_and_timed() {
        let m = RequestMetrics::default();
        for status in [200, 206, 404, 503, 999] {
            m.record(status, Duration::from_millis(2));
        }
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("tessera_hub_requests_total{code=\"2xx\"} 2"), "{out}");
        assert!(out.contains("tessera_hub_requests_total{code=\"4xx\"} 1"), "{out}");
        assert!(out.contains("tessera_hub_requests_total{code=\"5xx\"} 2"), "{out}");
        assert!(out.contains("tessera_hub_request_seconds_count 5"), "{out}");
    }
}
