//! The accept loop of both HTTP servers (`hub serve`, `serve`): one hyper HTTP/1 connection
//! per client, with a deadline on request headers (a client that never finishes its request line cannot hold a connection, or a
//! shutdown, forever) and a bounded graceful shutdown: on the signal, stop accepting, let
//! in-flight requests finish for at most the grace period, then drop what is left.

#![forbid(unsafe_code)]

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Timeouts of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Longest wait for a request's headers (also the idle time of a kept-alive connection).
    pub header_timeout: Duration,
    /// Longest time in-flight requests get to finish after the shutdown signal.
    pub shutdown_grace: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self { header_timeout: Duration::from_secs(30), shutdown_grace: Duration::from_secs(30) }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then shuts down within the grace.
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        while conns.try_join_next().is_some() {}
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(connection(stream, app.clone(), limits, stop_rx.clone()));
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while conns.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        tracing::warn!(
            open = conns.len(),
            "connections still open after the grace period; closing them"
        );
        conns.abort_all();
    }
    Ok(())
}

/// One connection, asked to finish its current request and close when `stop` turns true.
async fn connection(
    stream: tokio::net::TcpStream,
    app: Router,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
) {
    let service = TowerToHyperService::new(app);
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = async { drop(stop.wait_for(|stop| *stop).await) } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
