//! Retries with exponential backoff and jitter, for every request the client sends.

use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};

use super::HubError;

/// How hard to try.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    /// First backoff; doubles each attempt, with ±50% jitter.
    pub base_delay: Duration,
    /// Longest single backoff (also caps `Retry-After`).
    pub max_delay: Duration,
    /// A transfer receiving nothing for this long is abandoned (and retried).
    pub stall_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// For a reader waiting on a mount: fewer, shorter retries, so a dead remote becomes an
    /// error within seconds rather than minutes.
    pub fn interactive() -> Self {
        Self { attempts: 4, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(2), stall_timeout: Duration::from_secs(15) }
    }

    /// Backoff before attempt `n` (1-based retries), with jitter.
    pub fn backoff(&self, n: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32 << n.min(16));
        let jitter = 0.5 + rand::random::<f64>();
        exp.mul_f64(jitter).min(self.max_delay)
    }
}

/// Whether a status is worth retrying.
pub(crate) fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}

/// `Retry-After` in seconds, when the server sent one.
fn retry_after(resp: &Response) -> Option<Duration> {
    let v = resp.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Sends the request built by `make` until it gets a non-retryable answer or attempts run out.
/// Returns the response whatever its status (the caller maps 4xx); transport failures and
/// retryable statuses that persist become errors.
pub(crate) async fn send(
    policy: &RetryPolicy,
    url: &str,
    make: impl Fn() -> RequestBuilder,
) -> Result<Response, HubError> {
    let mut last = String::new();
    for attempt in 0..policy.attempts.max(1) {
        if attempt > 0 {
            tracing::debug!(url, attempt, reason = %last, "retrying");
        }
        match make().send().await {
            Ok(resp) if retryable(resp.status()) => {
                let wait = retry_after(&resp).unwrap_or_else(|| policy.backoff(attempt)).min(policy.max_delay);
                last = format!("HTTP {}", resp.status().as_u16());
                if attempt + 1 < policy.attempts {
                    tokio::time::sleep(wait).await;
                    continue;
                }
                return Ok(resp);
            }
            Ok(resp) => return Ok(resp),
            // A URL that does not even parse will not get better by retrying.
            Err(e) if e.is_builder() => {
                return Err(HubError::Malformed { url: url.to_string(), message: describe(e) });
            }
            Err(e) => {
                last = describe(e);
                if attempt + 1 < policy.attempts {
                    tokio::time::sleep(policy.backoff(attempt)).await;
                }
            }
        }
    }
    Err(HubError::Transport { url: url.to_string(), message: format!("{last} (after {} attempts)", policy.attempts) })
}

/// A transport error without the URL's query string (which may carry signatures).
pub(crate) fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut s = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
