//! What this version writes stays readable by every later one. Under
//! tests/fixtures/format-1/ are messages encoded by the version that introduced format 1
//! (one file per message kind) and a small data directory (a one-node cluster after a few
//! commands); this test decodes and opens them. A later format adds a directory of its
//! own and keeps every older one here for as long as it promises to read it.
//!
//! `QUORUMLOG_WRITE_FIXTURES=1` writes the fixtures of the current format instead; run it
//! only when creating a new format's directory, never to make a failing test pass.

mod common;

use common::Counter;
use quorumlog_raft::codec::{decode, encode, Owned};
use quorumlog_raft::data_format::DATA_FORMAT;
use quorumlog_raft::network::tls::TlsFiles;
use quorumlog_raft::types::{
    msg, Command, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, Peer, RaftConfig,
    SnapshotMeta, StoredMembership, Vote,
};
use quorumlog_raft::{pki, Node, NodeOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Commands in the fixture data directory.
const COMMANDS: u64 = 5;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-1")
}

fn writing() -> bool {
    std::env::var("QUORUMLOG_WRITE_FIXTURES").is_ok_and(|v| v == "1")
}

fn log_id(term: u64, node_id: u64, index: u64) -> LogId {
    LogId {
        leader_id: CommittedLeaderId { term, node_id },
        index,
    }
}

fn peer(id: u64) -> Peer {
    Peer {
        raft_addr: format!("node-{id}:7000"),
        api_addr: format!("node-{id}:8000"),
    }
}

fn joint_membership() -> Membership {
    let nodes: BTreeMap<u64, Peer> = (1..=4).map(|i| (i, peer(i))).collect();
    Membership::new(
        vec![BTreeSet::from([1, 2, 3]), BTreeSet::from([1, 2, 4])],
        nodes,
    )
    .unwrap()
}

fn entries() -> Vec<Entry> {
    vec![
        Entry {
            log_id: log_id(1, 1, 1),
            payload: EntryPayload::Blank,
        },
        Entry {
            log_id: log_id(1, 1, 2),
            payload: EntryPayload::Normal(Command(b"\x01command bytes".to_vec())),
        },
        Entry {
            log_id: log_id(2, 3, 3),
            payload: EntryPayload::Membership(joint_membership()),
        },
    ]
}

/// Compares the fixture `name` with `expected`, or writes it. Not every openraft message
/// implements `PartialEq`: values are compared by their debug form (every field) and by
/// this version's encoding of them.
fn check<T: Owned + std::fmt::Debug>(name: &str, expected: &T) {
    let path = fixtures().join("messages").join(format!("{name}.pb"));
    if writing() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, encode(expected)).unwrap();
        return;
    }
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let got: T = decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(format!("{got:?}"), format!("{expected:?}"), "{name}");
    assert_eq!(encode(&got), encode(expected), "{name}");
}

#[test]
fn messages_of_format_1_decode() {
    let vote = Vote::new_committed(7, 2);
    let stored = StoredMembership::new(Some(log_id(2, 3, 3)), joint_membership());
    for (i, e) in entries().iter().enumerate() {
        check(&format!("entry-{i}"), e);
    }
    check("log-id", &log_id(3, 2, 99));
    check("vote", &vote);
    check("committed", &Some(log_id(3, 2, 42)));
    check("committed-none", &None::<LogId>);
    check("stored-membership", &stored);
    check(
        "snapshot-meta",
        &SnapshotMeta {
            last_log_id: Some(log_id(3, 2, 1000)),
            last_membership: stored.clone(),
        },
    );
    check(
        "append-request",
        &msg::AppendEntriesRequest {
            vote,
            prev_log_id: Some(log_id(1, 1, 0)),
            entries: entries(),
            leader_commit: Some(log_id(1, 1, 2)),
        },
    );
    check(
        "append-response-partial",
        &msg::AppendEntriesResponse::PartialSuccess(Some(log_id(1, 1, 2))),
    );
    check(
        "append-response-higher-vote",
        &msg::AppendEntriesResponse::HigherVote(Vote::new(8, 3)),
    );
    check::<msg::StreamAppendResult>("stream-append-ok", &Ok(Some(log_id(1, 1, 2))));
    check::<msg::StreamAppendResult>(
        "stream-append-conflict",
        &Err(msg::StreamAppendError::Conflict(log_id(1, 1, 2))),
    );
    check(
        "vote-request",
        &msg::VoteRequest {
            vote: Vote::new(8, 3),
            last_log_id: Some(log_id(7, 2, 50)),
            leadership_transfer: true,
        },
    );
    check(
        "vote-response",
        &msg::VoteResponse {
            vote: Vote::new(8, 3),
            vote_granted: true,
            last_log_id: Some(log_id(7, 2, 50)),
        },
    );
    check(
        "transfer-request",
        &msg::TransferLeaderRequest::new(vote, 3, Some(log_id(7, 2, 50))),
    );
    check::<msg::TransferLeaderResponse>(
        "transfer-response-log-not-flushed",
        &Err(msg::TransferLeaderError::LogNotFlushed {
            expected: Some(log_id(7, 2, 50)),
            actual: None,
        }),
    );
    check("snapshot-response", &msg::SnapshotResponse::new(vote));
}

fn raft_config() -> RaftConfig {
    RaftConfig {
        heartbeat_interval: 100,
        election_timeout_min: 300,
        election_timeout_max: 600,
        ..Default::default()
    }
}

/// Options for node 1 in `data_dir`, on a free loopback port, with fresh certificates.
fn options(data_dir: &Path, bootstrap: bool) -> NodeOptions {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let ca = pki::new_ca().unwrap();
    let node = pki::new_node(&ca, 1, None).unwrap();
    NodeOptions {
        id: 1,
        data_dir: data_dir.to_path_buf(),
        raft_addr: addr.clone(),
        tls: TlsFiles {
            ca_pem: ca.cert_pem,
            cert_pem: node.cert_pem,
            key_pem: node.key_pem,
            crl: None,
        },
        raft: raft_config(),
        bootstrap: bootstrap.then(|| {
            BTreeMap::from([(
                1,
                Peer {
                    raft_addr: addr,
                    api_addr: String::new(),
                },
            )])
        }),
    }
}

async fn wait_leader(node: &Node) {
    node.handle()
        .raft()
        .wait(Some(Duration::from_secs(20)))
        .current_leader(1, "the single node leads")
        .await
        .unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        // RocksDB's info logs and lock files are not data.
        if name.starts_with("LOG") || name == "LOCK" {
            continue;
        }
        let target = to.join(&name);
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_of_format_1_opens_and_goes_on() {
    let fixture = fixtures().join("data");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    if writing() {
        let app = Arc::new(Counter::default());
        let node = Node::start(options(&dir, true), app.clone()).await.unwrap();
        wait_leader(&node).await;
        for i in 0..COMMANDS {
            node.handle()
                .client_write(Command(vec![i as u8]))
                .await
                .unwrap();
        }
        assert_eq!(app.count(), COMMANDS);
        node.shutdown().await;
        let _ = std::fs::remove_dir_all(&fixture);
        copy_dir(&dir, &fixture);
        return;
    }
    assert_eq!(
        std::fs::read_to_string(fixture.join("FORMAT"))
            .unwrap()
            .trim(),
        format!("quorumlog-data-format {}", 1)
    );
    copy_dir(&fixture, &dir);
    let app = Arc::new(Counter::default());
    let node = Node::start(options(&dir, false), app.clone())
        .await
        .unwrap_or_else(|e| panic!("format-1 data directory refused: {e}"));
    wait_leader(&node).await;
    // Everything the old node applied is there, and the log goes on from it.
    assert_eq!(app.count(), COMMANDS);
    node.handle()
        .client_write(Command(vec![0xff]))
        .await
        .unwrap();
    assert_eq!(app.count(), COMMANDS + 1);
    node.shutdown().await;
    assert_eq!(
        std::fs::read_to_string(dir.join("FORMAT")).unwrap().trim(),
        format!("quorumlog-data-format {DATA_FORMAT}")
    );
}
