//! Server-wide rate limiters: one token bucket shared by every response body and, separately,
//! one shared by every request body (uploads), to simulate slow links in tests.
//!
//! A bucket holds at most one second of tokens (at least 64 KiB) and refills continuously; a
//! body frame waits until its bytes are available. Frames are cut to 64 KiB first so that many
//! concurrent responses share the rate fairly.

use std::time::Duration;

// Tokio's clock: the same as std's in production, and one tests can pause and advance.
use tokio::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::Request;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;

use super::state::AppState;

const PIECE: usize = 64 * 1024;

/// A token bucket in bytes.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    state: tokio::sync::Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// A limiter of `bytes_per_sec` (at least 1).
    pub fn new(bytes_per_sec: u64) -> Self {
        let rate = bytes_per_sec.max(1) as f64;
        let burst = rate.max(PIECE as f64);
        Self { rate, burst, state: tokio::sync::Mutex::new((burst, Instant::now())) }
    }

    /// Waits until `n` bytes may be sent. Holding the lock while sleeping keeps the order FIFO.
    pub async fn acquire(&self, n: usize) {
        let mut guard = self.state.lock().await;
        let need = n as f64;
        loop {
            let now = Instant::now();
            let (tokens, last) = *guard;
            let tokens =
                (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.burst);
            if tokens >= need.min(self.burst) {
                *guard = (tokens - need, now);
                return;
            }
            *guard = (tokens, now);
            let wait = (need.min(self.burst) - tokens) / self.rate;
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
}

/// Middleware: re-streams request and response bodies through their limiters, and ends a
/// request body that pauses longer than the body-idle timeout (a trickling client then holds
/// neither a handler nor, for uploads, a slot for long).
pub async fn throttle(State(state): State<AppState>, req: Request<Body>, next: Next) -> Response {
    let idle = state.options.body_idle_timeout;
    let req = req.map(|body| idle_limited(body, idle));
    let req = match state.upload_limiter.clone() {
        Some(limiter) => req.map(|body| throttled(body, limiter)),
        None => req,
    };
    let response = next.run(req).await;
    match state.limiter.clone() {
        Some(limiter) => response.map(|body| throttled(body, limiter)),
        None => response,
    }
}

/// `body`, failing with an error when no frame arrives for `idle`.
fn idle_limited(body: Body, idle: Duration) -> Body {
    let stream = futures::stream::unfold(Some(body.into_data_stream()), move |stream| async move {
        let mut stream = stream?;
        match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(frame)) => Some((frame, Some(stream))),
            Ok(None) => None,
            Err(_) => {
                let why = format!("request body idle for {} s", idle.as_secs());
                Some((Err(axum::Error::new(std::io::Error::other(why))), None))
            }
        }
    });
    Body::from_stream(stream)
}

/// `body`, released no faster than `limiter` allows, in pieces of at most 64 KiB.
fn throttled(body: Body, limiter: std::sync::Arc<RateLimiter>) -> Body {
    let stream = body
        .into_data_stream()
        .flat_map(|frame| {
            let pieces: Vec<Result<Bytes, axum::Error>> = match frame {
                Ok(mut b) => {
                    let mut v = Vec::with_capacity(b.len() / PIECE + 1);
                    while b.len() > PIECE {
                        v.push(Ok(b.split_to(PIECE)));
                    }
                    v.push(Ok(b));
                    v
                }
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(pieces)
        })
        .then(move |piece| {
            let limiter = limiter.clone();
            async move {
                if let Ok(b) = &piece {
                    limiter.acquire(b.len()).await;
                }
                piece
            }
        });
    Body::from_stream(stream)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// On a paused clock (advanced only by the limiter's own sleeps), so the figure is exact
    /// on any machine rather than a wall-clock window.
    #[tokio::test(start_paused = true)]
    async fn bucket_limits_rate() {
        let l = RateLimiter::new(1_000_000);
        let t = Instant::now();
        // The first second's worth is the burst; the next 500 kB need 0.5 s.
        for _ in 0..15 {
            l.acquire(100_000).await;
        }
        let dt = t.elapsed().as_secs_f64();
        assert!((0.49..0.52).contains(&dt), "{dt}");
    }
}
