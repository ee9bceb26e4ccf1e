//! Serving a router over HTTP/1.1 with the limits a public endpoint needs: deadlines for
//! the request headers, the body, the handling and each stalled response write; separate
//! bounds on reads and writes in flight (more get 503 at once rather than queueing without
//! end), taken only once the body is in; and a cap on connections per client address.

use super::public::text;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::Instrument;

/// Limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Longest a client may take to send its request headers.
    pub header_timeout: Duration,
    /// Longest a client may take to send a request body, once its headers are in.
    pub body_timeout: Duration,
    /// Longest one request may take once its body is in; also the longest a response
    /// write may stall on a client that does not read.
    pub request_timeout: Duration,
    /// Most reads (GET, HEAD) served at once.
    pub max_reads_in_flight: usize,
    /// Most writes (anything else) served at once.
    pub max_writes_in_flight: usize,
    /// Most open connections from one client address.
    pub max_connections_per_client: usize,
}

/// Largest request body read before the handler runs; handlers enforce their own, lower,
/// limits (add-leaf: 4 KiB).
const MAX_BUFFERED_BODY: usize = 64 << 10;

/// Wraps `router` with the body deadline, the request deadline and the in-flight bounds.
/// A request's body is read in full *before* it takes a permit, so clients trickling
/// bodies hold no share of the budget that serves everybody else; reads and writes have
/// separate budgets, so a flood of one cannot starve the other.
pub fn with_limits(router: Router, limits: HttpLimits) -> Router {
    let reads = Arc::new(Semaphore::new(limits.max_reads_in_flight));
    let writes = Arc::new(Semaphore::new(limits.max_writes_in_flight));
    router.layer(middleware::from_fn(move |req: Request, next: Next| {
        let is_read = req.method() == Method::GET || req.method() == Method::HEAD;
        let permits = if is_read {
            reads.clone()
        } else {
            writes.clone()
        };
        async move { limited(permits, limits, req, next).await }
    }))
}

async fn limited(
    permits: Arc<Semaphore>,
    limits: HttpLimits,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = match tokio::time::timeout(
        limits.body_timeout,
        axum::body::to_bytes(body, MAX_BUFFERED_BODY),
    )
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            let too_large = e
                .into_inner()
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            return if too_large {
                text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body larger than {MAX_BUFFERED_BODY} bytes"),
                )
            } else {
                text(
                    StatusCode::BAD_REQUEST,
                    "request body incomplete or malformed".into(),
                )
            };
        }
        Err(_) => {
            return text(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request body not received within {} ms",
                    limits.body_timeout.as_millis()
                ),
            )
        }
    };
    let req = Request::from_parts(parts, Body::from(body));
    let Ok(_permit) = permits.try_acquire() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests in flight; retry shortly".into(),
        );
    };
    let span =
        tracing::debug_span!("http_request", method = %req.method(), path = %req.uri().path());
    let timeout = limits.request_timeout;
    match tokio::time::timeout(timeout, next.run(req).instrument(span)).await {
        Ok(r) => r,
        Err(_) => text(
            StatusCode::REQUEST_TIMEOUT,
            format!("request not completed within {} s", timeout.as_secs()),
        ),
    }
}

/// Open connections per client address.
#[derive(Default)]
struct ConnectionCounts(Mutex<HashMap<IpAddr, usize>>);

/// One counted connection; uncounted when dropped.
struct Counted {
    counts: Arc<ConnectionCounts>,
    ip: IpAddr,
}

impl ConnectionCounts {
    fn admit(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<Counted> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Counted {
            counts: self.clone(),
            ip,
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut m = self.counts.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// A connection whose writes fail once one has been stalled for `limit`: a client that
/// never reads its responses must not hold the connection (and its buffers) forever.
struct WriteDeadline<T> {
    inner: T,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> WriteDeadline<T> {
    fn new(inner: T, limit: Duration) -> Self {
        WriteDeadline {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Passes a write's or flush's result through: progress disarms the deadline; a write
    /// that cannot proceed arms it, or fails once it has passed.
    fn watch<R>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if r.is_ready() {
            self.stalled = None;
            return r;
        }
        let limit = self.limit;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client did not read its response in time",
            )));
        }
        Poll::Pending
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
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
    let counts = Arc::new(ConnectionCounts::default());
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
        let Some(counted) = counts.admit(peer.ip(), limits.max_connections_per_client) else {
            tracing::debug!(%peer, "connection refused: too many from this address");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        tokio::spawn(async move {
            let _counted = counted;
            let io = WriteDeadline::new(stream, limits.request_timeout);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true)
                .max_buf_size(16 * 1024)
                .serve_connection(TokioIo::new(io), service);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use tokio::io::AsyncWriteExt;
    use tower::ServiceExt;

    fn limits() -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            max_reads_in_flight: 1,
            max_writes_in_flight: 1,
            max_connections_per_client: 2,
        }
    }

    fn request(method: Method, path: &str) -> Request {
        Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn reads_and_writes_have_separate_budgets() {
        let gate = Arc::new(tokio::sync::Notify::new());
        let g = gate.clone();
        let router = with_limits(
            Router::new()
                .route(
                    "/wait",
                    get(move || {
                        let g = g.clone();
                        async move {
                            g.notified().await;
                            "done"
                        }
                    }),
                )
                .route("/read", get(|| async { "read" }))
                .route("/write", post(|| async { "written" })),
            limits(),
        );
        let held = tokio::spawn(router.clone().oneshot(request(Method::GET, "/wait")));
        // Once the first read holds the only read permit, a second read is refused...
        let mut refused = None;
        for _ in 0..100 {
            let r = router
                .clone()
                .oneshot(request(Method::GET, "/read"))
                .await
                .unwrap();
            if r.status() == StatusCode::SERVICE_UNAVAILABLE {
                refused = Some(r);
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(refused.is_some(), "the read budget of 1 was not enforced");
        // ... while a write still goes through on its own budget.
        let w = router
            .clone()
            .oneshot(request(Method::POST, "/write"))
            .await
            .unwrap();
        assert_eq!(w.status(), StatusCode::OK);
        gate.notify_one();
        assert_eq!(held.await.unwrap().unwrap().status(), StatusCode::OK);
        let r = router.oneshot(request(Method::GET, "/read")).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_client_that_never_reads_fails_the_write_after_the_deadline() {
        let (server_side, _client_side_never_read) = tokio::io::duplex(64);
        let mut io = WriteDeadline::new(server_side, Duration::from_millis(200));
        let r = tokio::time::timeout(Duration::from_secs(10), io.write_all(&[0; 4096]))
            .await
            .expect("the write deadline fired");
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn connections_are_counted_per_address() {
        let counts = Arc::new(ConnectionCounts::default());
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let first = counts.admit(a, 2).unwrap();
        let _second = counts.admit(a, 2).unwrap();
        assert!(counts.admit(a, 2).is_none());
        assert!(counts.admit(b, 2).is_some());
        drop(first);
        assert!(counts.admit(a, 2).is_some());
    }
}
