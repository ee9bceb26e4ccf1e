//! Replication through real `quorumlog serve` processes on loopback: convergence under
//! concurrent proposals, a leader killed with SIGKILL, snapshot catch-up, a node joining,
//! and rejection of foreign certificates and malformed messages.

mod support;

use quorumlog::config::NodeConfig;
use quorumlog::merkle::Hash;
use quorumlog::sigsum::leaf::parse_leaves;
use quorumlog_raft::codec::Owned;
use quorumlog_raft::network::pb::{self, snapshot_chunk, SnapshotChunk};
use quorumlog_raft::network::ProtocolHeader;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{as_written, leaf, Cluster};
use tonic::Code;

/// Test clusters batch for longer so that concurrent proposals visibly share entries.
/// Snapshot transfer directories under `dir`, at any depth.
fn incoming_dirs(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            if entry.file_name().to_string_lossy().starts_with("incoming-") {
                found.push(p);
            } else {
                found.extend(incoming_dirs(&p));
            }
        }
    }
    found
}

fn slow_batches(c: &mut NodeConfig) {
    c.batch.max_delay_us = 20_000;
}

/// Snapshots every 20 entries, keeping 5: logs get purged quickly.
fn small_snapshots(c: &mut NodeConfig) {
    c.raft.snapshot_every_entries = 20;
    c.raft.keep_entries_after_snapshot = 5;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_proposals_converge_on_every_node() {
    let mut c = Cluster::init(3, 0, slow_batches);
    for id in 1..=3 {
        c.start(id);
    }
    let leader = c.leader(&[1, 2, 3]).await;
    // A follower takes a submission and forwards it to the leader.
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    c.add_any(&[follower], &[100_000]).await;
    c.wait_converged(&[1, 2, 3], 1).await;

    let before = c.status(1).await.unwrap().last_log_index.unwrap();
    let c = Arc::new(c);
    let mut tasks = Vec::new();
    for n in 0..200u64 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.add_any(&[leader, 1, 2, 3], &[n]).await
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Every leaf got its own index: 200 distinct leaves, a tree of 201.
    let converged = c.wait_converged(&[1, 2, 3], 201).await;
    // Leaves are served up to the published size.
    let http = support::sigsum::Http::default();
    let served = c
        .wait_until(
            || "the leader to serve 201 leaves".to_string(),
            30,
            || async {
                let a = http
                    .get(&c.api_addr(leader), "get-leaves/0/201")
                    .await
                    .ok()?;
                (a.status == 200 && a.body.lines().count() == 201).then_some(a)
            },
        )
        .await;
    let hashes: BTreeSet<Hash> = parse_leaves(served.body.as_bytes())
        .unwrap()
        .iter()
        .map(|l| l.leaf_hash())
        .collect();
    assert_eq!(hashes.len(), 201, "every leaf gets its own index");
    assert!((0..200).all(|n| hashes.contains(&leaf(n).leaf_hash())));
    // Re-submitting a leaf is idempotent: it is acknowledged and the tree does not grow.
    c.add_any(&[1, 2, 3], &[17]).await;
    assert!(converged.root_hash.is_some(), "{converged:?}");
    // Group commit: 200 concurrent single-leaf proposals took far fewer Raft entries.
    let after = c.status(1).await.unwrap().last_log_index.unwrap();
    assert!(
        after - before < 100,
        "{} entries for 200 proposals",
        after - before
    );

    // Planned leadership transfer through the CLI: the target leads, the log goes on.
    let current = c.leader(&[1, 2, 3]).await;
    let target = (1..=3).find(|&i| i != current).unwrap();
    c.admin_cli(target, &["transfer-leader", "--to", &target.to_string()]);
    assert_eq!(c.leader(&[1, 2, 3]).await, target);
    c.add_any(&[target, 1, 2, 3], &[1_000]).await;
    c.wait_converged(&[1, 2, 3], 202).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_loses_no_acknowledged_leaf() {
    let mut c = Cluster::init(3, 0, as_written);
    for id in 1..=3 {
        c.start(id);
    }
    let old_leader = c.leader(&[1, 2, 3]).await;
    let c = Arc::new(Mutex::new(c));
    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // Writers: batches of 8 leaves to whichever node leads, retried elsewhere on error.
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let (c, acked, stop) = (c.clone(), acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = w * 1_000_000;
            let mut via = 1;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let batch: Vec<u64> = (n..n + 8).collect();
                let cluster = { c.lock().unwrap().handle() };
                match cluster.add(via, &batch).await {
                    Ok(_) => {
                        acked.lock().unwrap().extend(n..n + 8);
                        n += 8;
                    }
                    Err(_) => {
                        via = via % 3 + 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }

    let wait_acked = |at_least: usize| {
        let acked = acked.clone();
        async move {
            for _ in 0..600 {
                if acked.lock().unwrap().len() >= at_least {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("writers stalled at {} leaves", acked.lock().unwrap().len());
        }
    };
    wait_acked(400).await;
    c.lock().unwrap().kill(old_leader);
    let survivors: Vec<u64> = (1..=3).filter(|&i| i != old_leader).collect();
    let handle = c.lock().unwrap().handle();
    let new_leader = handle.leader(&survivors).await;
    assert_ne!(new_leader, old_leader);
    let after_kill = acked.lock().unwrap().len();
    wait_acked(after_kill + 400).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    // The killed node restarts and catches up with the others.
    c.lock().unwrap().start(old_leader);
    let size = handle.app(new_leader).await.unwrap().tree_size;
    assert!(size >= acked.len() as u64);
    handle.wait_converged(&[1, 2, 3], size).await;

    // Every acknowledged leaf is in every node's tree (read from disk after stopping).
    let mut c = c.lock().unwrap();
    for id in 1..=3 {
        c.kill(id);
    }
    for id in 1..=3 {
        let tree = c.open_tree(id);
        for n in &acked {
            assert!(
                tree.index_of(&leaf(*n).leaf_hash()).unwrap().is_some(),
                "acknowledged leaf {n} missing on node {id}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_and_new_nodes_catch_up_by_snapshot() {
    let mut c = Cluster::init(3, 1, small_snapshots);
    for id in 1..=3 {
        c.start(id);
    }
    let leader = c.leader(&[1, 2, 3]).await;
    let lagging = (1..=3).find(|&i| i != leader).unwrap();
    c.kill(lagging);

    // 60 entries: three snapshots' worth, and the log before them purged.
    let running: Vec<u64> = (1..=3).filter(|&i| i != lagging).collect();
    for n in 0..60u64 {
        c.add_any(&running, &[n, 1000 + n]).await;
    }
    c.wait_for("the running nodes to snapshot and purge", 30, || async {
        for &id in &running {
            let Ok(s) = c.status(id).await else {
                return false;
            };
            if s.snapshot_index.unwrap_or(0) < 40 || s.purged_index.unwrap_or(0) < 20 {
                return false;
            }
        }
        true
    })
    .await;

    c.start(lagging);
    c.wait_converged(&[1, 2, 3], 120).await;
    let s = c.status(lagging).await.unwrap();
    assert!(
        s.snapshot_index.unwrap_or(0) >= 20,
        "node {lagging} should have installed a snapshot: {s:?}"
    );

    // A brand-new node joins through the CLI, by snapshot, and becomes a voter.
    c.new_node(4);
    c.edit_config(4, small_snapshots);
    c.start(4);
    let out = std::process::Command::new(support::BIN)
        .args(["admin", "--config"])
        .arg(c.config_path(lagging))
        .args([
            "add-node",
            "--id",
            "4",
            "--raft-addr",
            &c.raft_addr(4),
            "--api-addr",
        ])
        .arg(c.api_addr(4))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "add-node: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.logs()
    );
    c.wait_converged(&[1, 2, 3, 4], 120).await;
    let s4 = c.status(4).await.unwrap();
    assert!(
        s4.snapshot_index.is_some(),
        "node 4 joined without a snapshot: {s4:?}"
    );
    let leader_view = c.status(1).await.unwrap();
    assert!(
        leader_view.members.iter().any(|m| m.id == 4 && m.voter),
        "node 4 is not a voter: {:?}",
        leader_view.members
    );

    // The cluster keeps committing with the new voter.
    c.add_any(&[1, 2, 3, 4], &[5000]).await;
    c.wait_converged(&[1, 2, 3, 4], 121).await;

    // Old snapshots are deleted as new ones are taken: one remains.
    let snaps = std::fs::read_dir(c.node_dir(running[0]).join("data/snapshots"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("snap-")
        })
        .count();
    assert_eq!(snaps, 1, "old snapshots were not cleaned up");

    // And the admin status command shows all four, as typed JSON.
    let status: quorumlog::status::ClusterStatus =
        serde_json::from_str(&c.admin_cli(1, &["status", "--json"])).unwrap();
    assert_eq!(status.members.len(), 4, "{status:?}");
    let reports: Vec<_> = status
        .members
        .iter()
        .map(|m| m.node.as_ref().expect("every member answers"))
        .collect();
    assert!(
        reports
            .iter()
            .all(|r| r.app.as_ref().unwrap().tree_size == 121),
        "{status:?}"
    );
    let leaders = reports
        .iter()
        .filter(|r| r.role == quorumlog::status::RaftRole::Leader)
        .count();
    assert_eq!(leaders, 1, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_certificates_and_malformed_messages_are_rejected() {
    // Node 4 has a certificate of this cluster's CA but is no member.
    let mut c = Cluster::init(3, 1, as_written);
    for id in 1..=3 {
        c.start(id);
    }
    let leader = c.leader(&[1, 2, 3]).await;
    let target = (1..=3).find(|&i| i != leader).unwrap();
    c.add_any(&[leader, 1, 2, 3], &[1]).await;
    let term = c.status(target).await.unwrap().term;

    // Certificates from another cluster's CA: the TLS handshake fails for every RPC.
    let other = Cluster::init(3, 0, as_written);
    let foreign = quorumlog_raft::network::client::connect_lazy(
        &other.tls(leader),
        target,
        &c.raft_addr(target),
    )
    .unwrap();
    let mut raft = pb::raft_client::RaftClient::with_interceptor(foreign.clone(), ProtocolHeader);
    let e = raft.vote(pb::VoteRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let e = raft
        .append_entries(pb::AppendRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let header = SnapshotChunk {
        item: Some(snapshot_chunk::Item::Header(pb::SnapshotHeader {
            vote: None,
            meta: None,
        })),
    };
    let e = raft
        .install_snapshot(futures::stream::iter(vec![header.clone()]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let mut admin = pb::admin_client::AdminClient::new(foreign);
    assert!(admin.status(pb::StatusRequest {}).await.is_err());

    // A certified node that is no member (never added, or removed) may not vote or
    // append: with a higher term, its vote would have made the target step up its term.
    c.new_node(4);
    let vote = quorumlog_raft::types::msg::VoteRequest::new(
        quorumlog_raft::types::Vote::new(term + 5, 4),
        None,
    );
    let e = c
        .raft_client(4, target)
        .vote(vote.to_pb())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("not a member"), "{e:?}");
    // Nor hand the leader a submission to commit (before, any certificate could), and a
    // member's certificate cannot forward in another member's name.
    let forward = |from: u64| pb::ForwardRequest {
        request: Vec::new(),
        from,
    };
    let e = pb::admin_client::AdminClient::new(c.channel(4, leader))
        .forward(forward(4))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("not a member"), "{e:?}");
    let e = pb::admin_client::AdminClient::new(c.channel(target, leader))
        .forward(forward(leader))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");

    // A real cluster certificate claiming to be another node is refused.
    let as_other = (1..=3).find(|&i| i != target && i != leader).unwrap();
    let vote = quorumlog_raft::types::msg::VoteRequest::new(
        quorumlog_raft::types::Vote::new(term + 5, leader),
        None,
    );
    let e = c
        .raft_client(as_other, target)
        .vote(vote.to_pb())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");

    // A peer of a protocol this node cannot read, or of none, is refused by name.
    let vote_pb = vote.to_pb();
    let mut unversioned = pb::raft_client::RaftClient::new(c.channel(leader, target));
    let e = unversioned.vote(vote_pb).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("quorumlog-protocol"), "{e:?}");
    let mut future = tonic::Request::new(vote_pb);
    future.metadata_mut().insert(
        "quorumlog-protocol",
        tonic::metadata::MetadataValue::from(99u32),
    );
    let e = unversioned.vote(future).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("protocol 99"), "{e:?}");

    // Malformed messages from a genuine peer: typed errors, nothing changes.
    let mut peer = c.raft_client(leader, target);
    let no_vote = pb::AppendRequest {
        entries: vec![pb::Entry::default()],
        ..Default::default()
    };
    let e = peer.append_entries(no_vote).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let entry_without_payload = pb::AppendRequest {
        vote: Some(quorumlog_raft::types::Vote::new_committed(term, leader).to_pb()),
        entries: vec![pb::Entry {
            log_id: Some(pb::LogId::default()),
            payload: None,
        }],
        ..Default::default()
    };
    let e = peer
        .append_entries(entry_without_payload)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("payload"), "{e:?}");
    let e = peer.vote(pb::VoteRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = peer
        .transfer_leader(pb::TransferRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let chunk = |name: &str| SnapshotChunk {
        item: Some(snapshot_chunk::Item::Chunk(pb::FileChunk {
            name: name.into(),
            offset: 0,
            data: vec![1, 2, 3],
        })),
    };
    // No header first.
    let e = peer
        .install_snapshot(futures::stream::iter(vec![chunk("CURRENT")]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    // Undecodable header.
    let e = peer
        .install_snapshot(futures::stream::iter(vec![header]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    // A valid header, then a path escaping the snapshot directory, or a truncated transfer.
    let meta = quorumlog_raft::types::SnapshotMeta::default();
    let good_header = SnapshotChunk {
        item: Some(snapshot_chunk::Item::Header(pb::SnapshotHeader {
            vote: Some(quorumlog_raft::types::Vote::new_committed(term, leader).to_pb()),
            meta: Some(meta.to_pb()),
        })),
    };
    let e = peer
        .install_snapshot(futures::stream::iter(vec![
            good_header.clone(),
            chunk("../../escape"),
        ]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(!c.node_dir(target).join("escape").exists());
    let e = peer
        .install_snapshot(futures::stream::iter(vec![
            good_header.clone(),
            chunk("000001.sst"),
        ]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    // A stream cut short after CURRENT (before, this was installed as a whole snapshot),
    // and one whose manifest disagrees with the content.
    let e = peer
        .install_snapshot(futures::stream::iter(vec![
            good_header.clone(),
            chunk("CURRENT"),
        ]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("truncated"), "{e:?}");
    let manifest = |sha256: Vec<u8>| SnapshotChunk {
        item: Some(snapshot_chunk::Item::Manifest(pb::SnapshotManifest {
            files: vec![pb::SnapshotFile {
                name: "CURRENT".into(),
                size: 3,
                sha256,
            }],
        })),
    };
    let e = peer
        .install_snapshot(futures::stream::iter(vec![
            good_header.clone(),
            chunk("CURRENT"),
            manifest(vec![0; 32]),
        ]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("does not match"), "{e:?}");
    // A complete snapshot older than the node's state is passed over by openraft; its
    // directory must not stay behind.
    use sha2::Digest;
    let _ = peer
        .install_snapshot(futures::stream::iter(vec![
            good_header,
            chunk("CURRENT"),
            manifest(sha2::Sha256::digest([1, 2, 3]).to_vec()),
        ]))
        .await;
    let leftovers = incoming_dirs(&c.node_dir(target));
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The node is alive, its term unchanged, and the cluster still commits.
    let s = c.status(target).await.unwrap();
    assert_eq!(
        s.term, term,
        "the forged and malformed messages changed the term"
    );
    c.add_any(&[1, 2, 3], &[2]).await;
    c.wait_converged(&[1, 2, 3], 2).await;
}

/// A paused member accepts connections and never answers; status must still come back,
/// naming it unreachable (found by the fault suite: `admin status` hung on a paused
/// container and stalled the nemesis for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_answers_while_a_member_is_paused() {
    let mut c = Cluster::init(3, 0, as_written);
    for id in 1..=3 {
        c.start(id);
    }
    c.leader(&[1, 2, 3]).await;
    c.signal(3, "STOP");
    let config = c.config_path(1);
    let mut status = tokio::process::Command::new(support::BIN)
        .args(["admin", "--config"])
        .arg(&config)
        .args(["status", "--json"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = status.stdout.take().unwrap();
    // A deadline only so a hang fails the test instead of the whole suite.
    let done = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        use tokio::io::AsyncReadExt;
        let mut text = String::new();
        let mut out = out;
        out.read_to_string(&mut text).await.unwrap();
        (status.wait().await.unwrap(), text)
    })
    .await;
    c.signal(3, "CONT");
    let (exit, text) = done.expect("admin status hangs on a paused member");
    assert!(exit.success(), "{text}");
    let s: quorumlog::status::ClusterStatus = serde_json::from_str(&text).unwrap();
    let m3 = s.members.iter().find(|m| m.id == 3).unwrap();
    assert!(m3.node.is_none() && m3.error.is_some(), "{m3:?}");
}
