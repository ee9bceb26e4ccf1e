//! Serving a router over HTTP/1.1 with the limits a public endpoint needs: a deadline for
//! the request headers, a deadline for each whole request, and a bound on requests in
//! flight (more get 503 at once rather than queueing without end).

use super::public::text;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::Instrument;

/// Limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Longest a client may take to send its request headers.
    pub header_timeout: Duration,
    /// Longest one request may take, reading its body included.
    pub request_timeout: Duration,
    /// Most requests served at once.
    pub max_in_flight: usize,
}

/// Wraps `router` with the request deadline and the in-flight bound.
pub fn with_limits(router: Router, limits: HttpLimits) -> Router {
    let permits = Arc::new(Semaphore::new(limits.max_in_flight));
    router.layer(middleware::from_fn(move |req: Request, next: Next| {
        let permits = permits.clone();
        async move { limited(permits, limits.request_timeout, req, next).await }
    }))
}

async fn limited(permits: Arc<Semaphore>, timeout: Duration, req: Request, next: Next) -> Response {
    let Ok(_permit) = permits.try_acquire() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests in flight; retry shortly".into(),
        );
    };
    let span =
        tracing::debug_span!("http_request", method = %req.method(), path = %req.uri().path());
    match tokio::time::timeout(timeout, next.run(req).instrument(span)).await {
        Ok(r) => r,
        Err(_) => text(
            StatusCode::REQUEST_TIMEOUT,
            format!("request not completed within {} s", timeout.as_secs()),
        ),
    }
}

/// Serves `router` on `listener` until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
) {
    let service = TowerToHyperService::new(router);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, for instance: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true)
                .max_buf_size(16 * 1024)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
        });
    }
}
