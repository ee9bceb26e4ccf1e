//! Hostile input against a running three-node cluster, sent as raw HTTP so that nothing a
//! client library normalises gets in the way: every answer is a 4xx (or a retryable 503),
//! no node stops, and the tree and the published head do not change.

mod support;

use std::time::Duration;
use support::sigsum::{Http, Submitter};
use support::{fast_publish, Cluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `request` as is and returns the status code of the answer, or None if the server
/// closed the connection without one.
async fn raw(addr: &str, request: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before it has read everything (a header flood).
    let _ = s.write_all(request).await;
    let _ = s.shutdown().await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await;
    let line = String::from_utf8_lossy(&out);
    let line = line.lines().next()?;
    line.split(' ').nth(1)?.parse().ok()
}

fn get(path: &str) -> Vec<u8> {
    format!("GET /{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()
}

fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST /{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_requests_get_4xx_and_change_nothing() {
    let mut c = Cluster::init(3, 0, fast_publish);
    for id in 1..=3 {
        c.start(id);
    }
    let http = Http::default();
    let s = Submitter::new(7);
    for n in 0..3 {
        let body = s.request(n).to_ascii().into_bytes();
        c.wait_for("a leaf accepted", 30, || async {
            http.post(&c.api_addr(1), "add-leaf", body.clone(), None)
                .await
                .is_ok_and(|a| a.status == 200)
        })
        .await;
    }
    let before = c
        .wait_until(
            || "every node to publish size 3".into(),
            60,
            || async {
                let mut heads = Vec::new();
                for id in 1..=3 {
                    heads.push(http.tree_head(&c.api_addr(id)).await?);
                }
                (heads
                    .iter()
                    .all(|h| h.head == heads[0].head && h.head.size == 3))
                .then(|| heads[0].head)
            },
        )
        .await;

    let good = s.request(100).to_ascii();
    let mut invalid_utf8 = good.clone().into_bytes();
    invalid_utf8[10] = 0xff;
    let huge_number = "9".repeat(400);
    let long_hex = "ab".repeat(5000);
    let many_headers: String = (0..2000).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    let long_header = format!("X-Long: {}\r\n", "a".repeat(64 << 10));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("invalid UTF-8 body", post("add-leaf", &invalid_utf8)),
        ("NUL in body", post("add-leaf", b"message=\0\n")),
        ("1 MiB body", post("add-leaf", &vec![b'x'; 1 << 20])),
        (
            "body shorter than Content-Length",
            format!(
                "POST /add-leaf HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n\r\n{good}"
            )
            .into_bytes(),
        ),
        (
            "two Content-Lengths",
b"POST /add-leaf HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
                .to_vec(),
        ),
        (
            "PUT",
            b"PUT /add-leaf HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".to_vec(),
        ),
        ("DELETE", b"DELETE /get-tree-head HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("not HTTP", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec()),
        ("overlong number", get(&format!("get-leaves/{huge_number}/1"))),
        ("overlong hex", get(&format!("get-inclusion-proof/2/{long_hex}"))),
        ("huge range", get("get-leaves/0/9223372036854775807")),
        ("reversed range", get("get-leaves/3/1")),
        ("negative", get("get-consistency-proof/-1/2")),
        ("dot-dot path", get("../../etc/passwd")),
        ("encoded NUL", get("get-tree-head%00")),
        ("long path", get(&"a/".repeat(20_000))),
        (
            "header flood",
            format!("GET /get-tree-head HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n").into_bytes(),
        ),
        (
            "one huge header",
            format!("GET /get-tree-head HTTP/1.1\r\nHost: x\r\n{long_header}\r\n").into_bytes(),
        ),
        (
            "duplicate keys",
            post(
                "add-leaf",
                format!("{}{}", good.lines().next().unwrap().to_owned() + "\n", good).as_bytes(),
            ),
        ),
        (
            "reordered keys",
            post("add-leaf", {
                let l: Vec<&str> = good.lines().collect();
                format!("{}\n{}\n{}\n", l[2], l[1], l[0])
            }
            .as_bytes()),
        ),
    ];
    for id in 1..=3 {
        let addr = c.api_addr(id);
        for (what, request) in &cases {
            // None: the server closed the connection on input that is not HTTP at all.
            if let Some(status) = raw(&addr, request).await {
                assert!(
                    (400..500).contains(&status) || status == 503,
                    "{what} to node {id}: answered {status}"
                );
            }
        }
    }
    // Every node is alive and unchanged: same tree, same published head.
    for id in 1..=3 {
        let app = c.app(id).await.unwrap_or_else(|e| panic!("node {id}: {e}"));
        assert_eq!(app.tree_size, 3, "node {id}");
        let head = http
            .tree_head(&c.api_addr(id))
            .await
            .unwrap_or_else(|| panic!("node {id} serves no head"));
        assert_eq!(head.head, before, "node {id}");
    }
}
