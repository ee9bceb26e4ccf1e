//! What the load-generating benchmarks share: settings from the environment and one
//! HTTP/1.1 keep-alive connection per client, with one request at a time on it.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A number from the environment variable `name`, or `default`.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Whether scenario `name` runs: listed in `QL_SCENARIOS` (comma-separated), or all when
/// it is unset.
pub fn wanted(name: &str) -> bool {
    std::env::var("QL_SCENARIOS").map_or(true, |v| v.split(',').any(|x| x.trim() == name))
}

/// Publication every second (witness wait no longer than that); everything else default,
/// unless `QL_EDIT="old=>new;old2=>new2"` asks for config text replacements (for
/// experiments such as `QL_EDIT="snapshot_every_entries = 10000=>snapshot_every_entries = 1000000"`).
pub fn publish_every_second(s: &str) -> String {
    let mut s = s
        .replace("interval_ms = 3000", "interval_ms = 1000")
        .replace("witness_timeout_ms = 3000", "witness_timeout_ms = 1000");
    if let Ok(edits) = std::env::var("QL_EDIT") {
        for e in edits.split(';').filter(|e| !e.is_empty()) {
            if let Some((from, to)) = e.split_once("=>") {
                s = s.replace(from, to);
            }
        }
    }
    s
}

/// The sending half of one HTTP/1.1 connection.
pub type Sender = http1::SendRequest<Full<Bytes>>;

/// One HTTP/1.1 keep-alive connection.
pub async fn connect(addr: &str) -> Result<Sender, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake {addr}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends one request on `conn` (connecting first if there is none) and reads the whole
/// answer; drops the connection on a transport error so the next call reconnects.
pub async fn exchange(
    conn: &mut Option<Sender>,
    addr: &str,
    req: Request<Full<Bytes>>,
) -> Result<(u16, Bytes), String> {
    if conn.is_none() {
        *conn = Some(connect(addr).await?);
    }
    let sender = conn.as_mut().expect("connected above");
    let result = async {
        sender.ready().await.map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }
    .await;
    if result.is_err() {
        *conn = None;
    }
    result
}

/// `POST /add-leaf` with `body`.
pub fn post_add_leaf(addr: &str, body: Bytes) -> Request<Full<Bytes>> {
    Request::builder()
        .method(Method::POST)
        .uri("/add-leaf")
        .header(hyper::header::HOST, addr)
        .body(Full::new(body))
        .expect("a valid request")
}

/// `GET path`.
pub fn get(addr: &str, path: String) -> Request<Full<Bytes>> {
    Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(hyper::header::HOST, addr)
        .body(Full::new(Bytes::new()))
        .expect("a valid request")
}
