//! What a mount did, for `--metrics-listen` and `tessera status`: bytes served to readers,
//! reads answered from the store (hits) or after a fetch (misses), fetch latency, fetches in
//! flight, errors by kind and the last few error messages. Lock-free counters except the short
//! list of recent errors.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use super::Errno;
use tessera_metrics::{Histogram, family, sample};

/// How many recent error messages are kept.
const RECENT: usize = 20;

/// Error kinds counted, in label order: the errno values a read can end in.
const KINDS: [&str; 4] = ["not_found", "io", "invalid", "other"];

/// Counters of one mount.
#[derive(Debug, Default)]
pub struct MountMetrics {
    bytes_served: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    fetch_latency: Histogram,
    fetches_in_flight: AtomicU64,
    errors: [AtomicU64; KINDS.len()],
    recent: Mutex<VecDeque<String>>,
}

/// Counts a fetch as in flight until dropped.
pub(crate) struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A point-in-time copy of the counters, for people and scripts (`tessera status --json`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MountSnapshot {
    /// Bytes returned to readers by this process (passthrough reads bypass it).
    pub bytes_served: u64,
    /// Reads answered from what the store held.
    pub cache_hits: u64,
    /// Reads that waited for a fetch.
    pub cache_misses: u64,
    /// Fetches running now.
    pub fetches_in_flight: u64,
    /// Failed reads by kind.
    pub errors: Vec<(String, u64)>,
    /// The last few failures, oldest first.
    pub recent_errors: Vec<String>,
}

impl MountMetrics {
    /// Records a finished read: bytes served or the error's kind, and whether it had to fetch.
    pub(crate) fn read_done(
        &self,
        result: Result<usize, &Errno>,
        fetched: bool,
        what: impl FnOnce() -> String,
    ) {
        let counter = if fetched { &self.misses } else { &self.hits };
        counter.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(n) => {
                self.bytes_served.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => self.error(e, what()),
        }
    }

    fn error(&self, e: &Errno, what: String) {
        let kind = match e {
            Errno::NotFound => 0,
            Errno::Io => 1,
            Errno::Invalid => 2,
            _ => 3,
        };
        self.errors[kind].fetch_add(1, Ordering::Relaxed);
        let mut recent = self.recent.lock();
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(format!("{what}: {e}"));
    }

    /// Marks a fetch in flight until the guard drops.
    pub(crate) fn fetch_started(&self) -> InFlight<'_> {
        self.fetches_in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.fetches_in_flight)
    }

    /// Records how long a read waited for its fetch.
    pub(crate) fn fetch_done(&self, took: Duration) {
        self.fetch_latency.observe(took);
    }

    /// The counters now.
    pub fn snapshot(&self) -> MountSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MountSnapshot {
            bytes_served: get(&self.bytes_served),
            cache_hits: get(&self.hits),
            cache_misses: get(&self.misses),
            fetches_in_flight: get(&self.fetches_in_flight),
            errors: KINDS.iter().zip(&self.errors).map(|(k, n)| (k.to_string(), get(n))).collect(),
            recent_errors: self.recent.lock().iter().cloned().collect(),
        }
    }

    /// The Prometheus families of a mount; `bytes_fetched` is the remote's count.
    pub fn render(&self, out: &mut String, bytes_fetched: u64) {
        let s = self.snapshot();
        let counters = [
            (
                "tessera_mount_bytes_served_total",
                "Bytes returned to readers through the mount.",
                s.bytes_served,
            ),
            (
                "tessera_mount_bytes_fetched_total",
                "Content bytes fetched from the remote.",
                bytes_fetched,
            ),
            ("tessera_mount_cache_hits_total", "Reads answered from the store.", s.cache_hits),
            ("tessera_mount_cache_misses_total", "Reads that waited for a fetch.", s.cache_misses),
        ];
        for (name, help, value) in counters {
            family(out, name, "counter", help);
            sample(out, name, "", value);
        }
        family(out, "tessera_mount_fetches_in_flight", "gauge", "Reads waiting for a fetch now.");
        sample(out, "tessera_mount_fetches_in_flight", "", s.fetches_in_flight);
        family(
            out,
            "tessera_mount_fetch_duration_seconds",
            "histogram",
            "How long a read waited for its fetch.",
        );
        self.fetch_latency.render(out, "tessera_mount_fetch_duration_seconds", "");
        family(out, "tessera_mount_errors_total", "counter", "Failed reads, by kind.");
        for (kind, n) in &s.errors {
            sample(out, "tessera_mount_errors_total", &format!("kind=\"{kind}\""), n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_errors_are_counted_and_recent_errors_bounded() {
        let m = MountMetrics::default();
        m.read_done(Ok(10), false, String::new);
        m.read_done(Ok(5), true, String::new);
        for i in 0..(RECENT + 3) {
            m.read_done(Err(&Errno::Io), true, || format!("read {i}"));
        }
        let s = m.snapshot();
        assert_eq!((s.bytes_served, s.cache_hits, s.cache_misses), (15, 1, RECENT as u64 + 4));
        assert_eq!(s.recent_errors.len(), RECENT);
        assert_eq!(s.recent_errors.last().map(String::as_str), Some("read 22: input/output error"));
        let mut text = String::new();
        m.render(&mut text, 7);
        assert!(text.lines().any(|l| l == "tessera_mount_errors_total{kind=\"io\"} 23"), "{text}");
        assert!(text.lines().any(|l| l == "tessera_mount_bytes_fetched_total 7"), "{text}");
    }
}
