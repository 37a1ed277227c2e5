//! The Prometheus text exposition (format 0.0.4), shared by every process that exposes metrics
//! (`serve`'s inference metrics, the mount's read and fetch metrics, store sizes): one latency
//! histogram type, one way to write a family and a sample, one label escaper, so every scrape
//! parses the same way. A leaf: it imports nothing of the crate and does no I/O.
//!
//! ```
//! use std::time::Duration;
//! let h = tessera_metrics::Histogram::default();
//! h.observe(Duration::from_millis(3));
//! let mut out = String::new();
//! tessera_metrics::family(&mut out, "x_seconds", "histogram", "Example.");
//! h.render(&mut out, "x_seconds", "");
//! assert!(out.contains("x_seconds_bucket{le=\"0.005\"} 1"));
//! assert!(out.contains("x_seconds_count 1"));
//! ```

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms' buckets; `+Inf` is implied.
pub const LATENCY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A latency histogram with [`LATENCY_BUCKETS`]; lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&b| secs <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes the `_bucket`, `_sum` and `_count` samples; `labels` is `""` or `a="b",c="d"`.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (b, n) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        sample(out, &format!("{name}_sum"), labels, sum);
        sample(out, &format!("{name}_count"), labels, count);
    }
}

/// Writes a family's `# HELP` and `# TYPE` lines.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Writes one sample; `labels` is `""` or `a="b",c="d"` (values escaped by [`escape_label`]).
pub fn sample(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// A label value as the text format wants it.
pub fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// `tessera_build_info{version="..."} 1`, with its family lines: which build answers.
pub fn build_info(out: &mut String) {
    family(out, "tessera_build_info", "gauge", "The running tessera's version (always 1).");
    sample(out, "tessera_build_info", &format!("version=\"{}\"", env!("CARGO_PKG_VERSION")), 1);
}
