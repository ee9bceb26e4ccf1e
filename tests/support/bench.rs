//! What the load-generating benchmarks share: settings from the environment and one
//! HTTP/1.1 keep-alive connection per client, with one request at a time on it.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use quorumlog::config::NodeConfig;
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
/// unless `QL_EDIT="section.key=value;..."` sets config values for experiments (for example
/// `QL_EDIT="raft.snapshot_every_entries=1000000"`; the value is TOML). An unknown key or a
/// value of the wrong type stops the benchmark.
pub fn publish_every_second(c: &mut NodeConfig) {
    c.publish.interval_ms = 1000;
    c.publish.witness_timeout_ms = 1000;
    if let Ok(edits) = std::env::var("QL_EDIT") {
        let mut table = toml::Table::try_from(&*c).expect("config as TOML");
        for e in edits.split(';').filter(|e| !e.is_empty()) {
            let (path, value) = e
                .split_once('=')
                .unwrap_or_else(|| panic!("QL_EDIT: {e:?} is not section.key=value"));
            let (section, key) = path
                .trim()
                .split_once('.')
                .unwrap_or_else(|| panic!("QL_EDIT: {path:?} is not section.key"));
            let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
                .unwrap_or_else(|err| panic!("QL_EDIT: {value:?}: {err}"))
                .remove("v")
                .unwrap();
            table
                .entry(section)
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .unwrap_or_else(|| panic!("QL_EDIT: {section} is not a section"))
                .insert(key.to_string(), value);
        }
        let base_dir = c.base_dir.clone();
        *c = table
            .try_into()
            .unwrap_or_else(|err| panic!("QL_EDIT {edits:?}: {err}"));
        c.base_dir = base_dir;
    }
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

/// `f(i)` for every `i` in `0..count`, in order, computed on all cores.
pub fn on_all_cores<T: Send>(count: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = count.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let f = &f;
        let parts: Vec<_> = (0..count)
            .step_by(chunk)
            .map(|lo| s.spawn(move || (lo..(lo + chunk).min(count)).map(f).collect::<Vec<T>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().expect("worker thread"))
            .collect()
    })
}

/// Runs a benchmark's `run` on the two-worker runtime every load generator uses.
pub fn block_on<F: std::future::Future>(run: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run)
}
