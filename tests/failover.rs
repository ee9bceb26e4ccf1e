//! Maintenance and failover: planned leadership transfers that carry the signing key
//! (custody `handoff`), leader loss in both custody modes, `load-key`, and who may hold
//! the key.

mod support;

use quorumlog::status::Publishing;
use quorumlog_raft::network::pb::{
    AddNodeRequest, HandoverRequest, RemoveNodeRequest, TransferLeaderRequest,
};
use std::time::Duration;
use support::load::{verify_run, Load};
use support::sigsum::Http;
use support::{as_written, fast_publish, Cluster};

/// A metric's value on node `id`.
async fn metric(c: &Cluster, http: &Http, id: u64, name: &str) -> Option<u64> {
    let text = http.get(&c.ops_addr(id), "metrics").await.ok()?.body;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

/// The nodes among `ids` that report holding the signing key, once the report is stable.
async fn key_holders(c: &Cluster, http: &Http, ids: &[u64]) -> Vec<u64> {
    let mut holders = Vec::new();
    for &id in ids {
        if metric(c, http, id, "quorumlog_signing_key_loaded").await == Some(1) {
            holders.push(id);
        }
    }
    holders
}

async fn published(c: &Cluster, http: &Http, id: u64) -> u64 {
    http.tree_head(&c.api_addr(id))
        .await
        .map_or(0, |h| h.head.size)
}

/// A started three-node cluster in custody `custody`, a client, and its leader.
async fn running(custody: &str) -> (Cluster, Http, u64) {
    let mut c = init(custody);
    for id in 1..=3 {
        c.start(id);
    }
    let leader = c.leader(&[1, 2, 3]).await;
    (c, Http::default(), leader)
}

fn init(custody: &str) -> Cluster {
    Cluster::init_with(
        3,
        0,
        &["--custody".to_string(), custody.to_string()],
        fast_publish,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_transfers_under_load_move_the_key_and_lose_nothing() {
    let mut c = init("handoff");
    for id in 1..=3 {
        c.start(id);
    }
    let http = Http::default();
    let key = c.log_key();
    let leader = c.leader(&[1, 2, 3]).await;
    assert_eq!(leader, 1, "the bootstrapping node leads first");
    c.wait_for("node 1 to publish", 30, || async {
        published(&c, &http, 1).await > 0 || http.tree_head(&c.api_addr(1)).await.is_some()
    })
    .await;
    let load = Load::start(c.handle(), http.clone(), 4, 30);
    for i in 0..20u64 {
        let from = c.leader(&[1, 2, 3]).await;
        let to = from % 3 + 1;
        let before = load.acked_len();
        c.wait_for("leaves accepted between transfers", 30, || async {
            load.acked_len() >= before + 5
        })
        .await;
        let reply = c
            .operator(from)
            .transfer_leader(TransferLeaderRequest { to })
            .await
            .unwrap_or_else(|e| panic!("transfer {i} from {from} to {to}: {}", e.message()));
        assert!(reply.into_inner().message.contains("now the leader"));
        // Exactly one node holds the key afterwards: the new leader.
        let holders = c
            .wait_until(
                || format!("transfer {i}: the key only on node {to}"),
                10,
                || async {
                    let h = key_holders(&c, &http, &[1, 2, 3]).await;
                    (h == vec![to]).then_some(h)
                },
            )
            .await;
        assert_eq!(holders, vec![to]);
        // ... and it publishes from the replicated head.
        let p = published(&c, &http, to).await;
        c.wait_for("the new leader to publish", 15, || async {
            published(&c, &http, to).await > p
        })
        .await;
    }
    let (acked, seen) = load.finish().await;
    verify_run(&c, &http, &key, &acked, &seen, 30).await;
    // Twenty hand-overs, and the key is in no log.
    let seed = std::fs::read_to_string(c.path.join("log.key")).unwrap();
    for id in 1..=3 {
        let log = std::fs::read_to_string(c.path.join(format!("node{id}.log"))).unwrap();
        assert!(log.contains("signing key"), "node {id} logged no hand-over");
        assert!(!log.contains(seed.trim()), "node {id} logged the key");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn losing_the_key_holder_stops_publication_until_load_key() {
    let mut c = init("handoff");
    for id in 1..=3 {
        c.start(id);
    }
    let http = Http::default();
    let key = c.log_key();
    assert_eq!(c.leader(&[1, 2, 3]).await, 1);
    c.wait_for("node 1 to publish", 30, || async {
        http.tree_head(&c.api_addr(1)).await.is_some()
    })
    .await;
    let load = Load::start(c.handle(), http.clone(), 2, 40);
    c.wait_for("leaves accepted", 30, || async { load.acked_len() >= 10 })
        .await;
    c.kill(1);
    let leader = c.leader(&[2, 3]).await;
    // Leaves still get 200 ...
    let before = load.acked_len();
    c.wait_for("leaves accepted without the key holder", 30, || async {
        load.acked_len() >= before + 20
    })
    .await;
    // ... but nothing is published, and the node says why.
    let stuck = published(&c, &http, leader).await;
    let status = c
        .wait_until(
            || "status to say there is no signing key".to_string(),
            10,
            || async {
                let s = c.app(leader).await.ok()?;
                (s.publishing == Publishing::NoSigningKey).then_some(s)
            },
        )
        .await;
    assert!(!status.key_loaded, "{status:?}");
    assert_eq!(
        metric(&c, &http, leader, "quorumlog_publishing").await,
        Some(0)
    );
    let more = load.acked_len();
    c.wait_for("more leaves", 30, || async {
        load.acked_len() >= more + 10
    })
    .await;
    assert_eq!(published(&c, &http, leader).await, stuck);

    // The operator loads the key into the new leader: publication resumes.
    let other = if leader == 2 { 3 } else { 2 };
    let key_file = c.path.join("log.key");
    c.admin_cli(
        other,
        &["load-key", "--key-file", key_file.to_str().unwrap()],
    );
    let acked_now = load.acked_len() as u64;
    c.wait_for("publication to resume", 30, || async {
        published(&c, &http, leader).await >= acked_now
    })
    .await;
    let (acked, seen) = load.finish().await;
    c.start(1);
    verify_run(&c, &http, &key, &acked, &seen, 40).await;

    // The key never reached a log.
    let seed = std::fs::read_to_string(c.path.join("log.key")).unwrap();
    for id in 1..=3 {
        let log = std::fs::read_to_string(c.path.join(format!("node{id}.log"))).unwrap();
        assert!(!log.contains(seed.trim()), "node {id} logged the key");
        assert!(log.contains("signing key") || id != leader);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_key_goes_only_to_members_and_transfers_check_the_target() {
    let mut c = init("handoff");
    // Node 1 starts with its own copy of the key and deletes it once loaded.
    let own = c.node_dir(1).join("own.key");
    std::fs::copy(c.path.join("log.key"), &own).unwrap();
    c.edit_config(1, |s| {
        s.log.key_file = Some("own.key".into());
        s.log.delete_key_file = true;
    });
    for id in 1..=3 {
        c.start(id);
    }
    let leader = c.leader(&[1, 2, 3]).await;
    // Not a voter: refused with a clear reason.
    let e = c
        .operator(leader)
        .transfer_leader(TransferLeaderRequest { to: 9 })
        .await
        .unwrap_err();
    assert!(e.message().contains("not a voter"), "{}", e.message());

    // A process with another cluster's certificate can neither deliver nor fetch a key:
    // the TLS handshake fails before any call.
    let other = Cluster::init(1, 0, as_written);
    let foreign = other.tls(1);
    let ch = quorumlog_raft::network::client::connect_lazy(&foreign, leader, &c.raft_addr(leader))
        .unwrap();
    let mut client = quorumlog_raft::network::pb::admin_client::AdminClient::new(ch);
    let delivery = |key: Vec<u8>, from: u64, to: u64| {
        let mut req = tonic::Request::new(HandoverRequest {
            payload: key,
            from,
            to,
        });
        req.set_timeout(Duration::from_secs(5));
        req
    };
    assert!(client
        .handover(delivery(vec![1; 32], 1, leader))
        .await
        .is_err());

    // A member that is not the leader may not make the key holder forget the key (before,
    // any certificate of the cluster could), nor hand it a key; neither may a node's own
    // certificate, addressed as if from the leader.
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    for (as_node, from) in [(follower, follower), (leader, leader)] {
        let e = c
            .admin(as_node)
            .handover(delivery(Vec::new(), from, leader))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    }
    // Certificate and claimed sender must agree.
    let e = c
        .admin(follower)
        .handover(delivery(Vec::new(), leader, leader))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    // Membership and leadership need the operator: a node's certificate is refused.
    let e = c
        .admin(follower)
        .transfer_leader(TransferLeaderRequest { to: follower })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("operator certificate"), "{e:?}");
    let e = c
        .admin(follower)
        .remove_node(RemoveNodeRequest { id: leader })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    let e = c
        .admin(follower)
        .add_node(AddNodeRequest {
            id: 9,
            raft_addr: "127.0.0.1:1".into(),
            api_addr: "127.0.0.1:1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");

    // The operator delivering the wrong key is refused and the holder keeps the right one.
    let e = c
        .operator(leader)
        .handover(delivery(vec![1; 32], 0, leader))
        .await
        .unwrap_err();
    assert!(
        e.message().contains("not this log's key"),
        "{}",
        e.message()
    );
    let http = Http::default();
    c.wait_for("the leader to keep publishing", 20, || async {
        http.tree_head(&c.api_addr(leader)).await.is_some()
    })
    .await;
    assert!(!own.exists(), "the key file was deleted once loaded");
    assert_eq!(key_holders(&c, &http, &[1, 2, 3]).await, vec![1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_custody_transfers_move_no_key_and_failover_publishes() {
    let (mut c, http, leader) = running("file").await;
    c.wait_for("every node to hold the key", 20, || async {
        key_holders(&c, &http, &[1, 2, 3]).await.len() == 3
    })
    .await;
    let to = leader % 3 + 1;
    c.operator(leader)
        .transfer_leader(TransferLeaderRequest { to })
        .await
        .unwrap();
    assert_eq!(key_holders(&c, &http, &[1, 2, 3]).await.len(), 3);
    // Kill the leader: the new one publishes by itself.
    let p = published(&c, &http, to).await;
    let load = Load::start(c.handle(), http.clone(), 2, 50);
    c.wait_for("leaves", 30, || async { load.acked_len() >= 10 })
        .await;
    c.kill(to);
    let next = c
        .leader(&(1..=3).filter(|&i| i != to).collect::<Vec<_>>())
        .await;
    c.wait_for("the new leader to publish", 30, || async {
        published(&c, &http, next).await > p
    })
    .await;
    let (acked, seen) = load.finish().await;
    c.start(to);
    verify_run(&c, &http, &c.log_key(), &acked, &seen, 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_restart_script_keeps_the_log_accepting_leaves() {
    let script = support::script::ScriptCluster::new();
    let (ok, text) = script.run("start");
    assert!(ok, "{text}");
    let (dir, base) = (script.dir().to_path_buf(), script.base);
    let c = support::Handle::at(dir.join("cluster"), base);
    let http = Http::default();
    let load = Load::start(c.clone(), http.clone(), 4, 60);
    c.wait_for("leaves", 30, || async { load.acked_len() >= 20 })
        .await;
    let before = load.acked_len();
    let script_dir = dir.clone();
    let (ok, text) = tokio::task::spawn_blocking(move || {
        support::script::run_script(&script_dir, base, "rolling-restart")
    })
    .await
    .unwrap();
    assert!(ok, "{text}");
    for k in 1..=3 {
        assert!(
            text.contains(&format!("node {k} is back and caught up")),
            "{text}"
        );
    }
    assert!(text.contains("moving leadership"), "{text}");
    // Leaves kept being accepted during the restarts, and after them.
    let during = load.acked_len();
    assert!(
        during > before + 20,
        "{before} then {during} leaves: the log stalled"
    );
    let c = support::Handle::at(dir.join("cluster"), base);
    c.wait_for("leaves after the restarts", 30, || async {
        load.acked_len() >= during + 20
    })
    .await;
    let (acked, seen) = load.finish().await;
    verify_run(&c, &http, &c.log_key(), &acked, &seen, 60).await;
}

/// A node removed from the cluster keeps its old state; it must not go on serving its last
/// published head as the log's current one (found by the fault suite's membership nemesis:
/// a wiped node re-added under its old address served size 0 after size 1588).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_node_serves_no_tree_head() {
    let (c, http, leader) = running("file").await;
    let victim = (1..=3).rev().find(|&k| k != leader).unwrap();
    c.wait_for("the victim to serve a head", 30, || async {
        http.tree_head(&c.api_addr(victim)).await.is_some()
    })
    .await;
    c.admin_cli(leader, &["remove-node", "--id", &victim.to_string()]);
    c.wait_for("the removed node to stop serving its head", 30, || async {
        http.get(&c.api_addr(victim), "get-tree-head")
            .await
            .is_ok_and(|a| a.status == 503 && a.body.contains("not a voting member"))
    })
    .await;
    // The remaining members go on serving.
    let other = (1..=3).find(|&k| k != victim).unwrap();
    assert!(http.tree_head(&c.api_addr(other)).await.is_some());
}

/// The status of node `to`, asked over a new connection with certificate `tls`.
async fn status_as(
    c: &Cluster,
    tls: &quorumlog_raft::network::tls::TlsFiles,
    to: u64,
) -> Result<(), tonic::Status> {
    let ch = quorumlog_raft::network::client::connect_lazy(tls, to, &c.raft_addr(to)).unwrap();
    let mut req = tonic::Request::new(quorumlog_raft::network::pb::StatusRequest {});
    req.set_timeout(Duration::from_secs(5));
    quorumlog_raft::network::pb::admin_client::AdminClient::new(ch)
        .status(req)
        .await
        .map(|_| ())
}

/// A removed node's certificate stays valid for its lifetime: once revoked it is refused
/// on every call by every node, without a restart, and the node's id can be used again
/// with a new certificate while the old one stays refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_is_refused_and_its_id_can_be_used_again() {
    let (mut c, _http, leader) = running("file").await;
    let victim = (1..=3).rev().find(|&k| k != leader).unwrap();
    let others: Vec<u64> = (1..=3).filter(|&k| k != victim).collect();
    let old = c.tls(victim);
    for &k in &others {
        status_as(&c, &old, k).await.unwrap();
    }
    c.add_any(&[1, 2, 3], &[1]).await;
    c.admin_cli(leader, &["remove-node", "--id", &victim.to_string()]);
    c.kill(victim);
    let dir = c.path.to_str().unwrap().to_string();
    let out = c.cli(&["revoke-cert", "--dir", &dir, "--node", &victim.to_string()]);
    assert!(out.contains("revoked"), "{out}");
    // Revoking twice changes nothing.
    let again = c.cli(&["revoke-cert", "--dir", &dir, "--node", &victim.to_string()]);
    assert!(again.contains("already revoked"), "{again}");
    let refused = |r: Result<(), tonic::Status>| {
        matches!(r, Err(e) if e.code() == tonic::Code::PermissionDenied
            && e.message().contains("revoked"))
    };
    for &k in &others {
        c.wait_for("a member to refuse the revoked certificate", 30, || async {
            refused(status_as(&c, &old, k).await)
        })
        .await;
    }
    // The operator and the other members are not affected.
    for &k in &others {
        c.operator(k)
            .status(quorumlog_raft::network::pb::StatusRequest {})
            .await
            .unwrap();
    }

    // The same id again, with a new key and certificate and a wiped data directory.
    c.cli(&["renew-cert", "--dir", &dir, "--node", &victim.to_string()]);
    c.forget_channels();
    std::fs::remove_dir_all(c.node_dir(victim).join("data")).unwrap();
    c.start(victim);
    c.admin_cli(
        leader,
        &[
            "add-node",
            "--id",
            &victim.to_string(),
            "--raft-addr",
            &c.raft_addr(victim),
            "--api-addr",
            &c.api_addr(victim),
        ],
    );
    c.add_any(&others, &[2]).await;
    c.wait_converged(&[1, 2, 3], 2).await;
    let new = c.tls(victim);
    status_as(&c, &new, leader).await.unwrap();
    // The re-added node reads the same list: the old certificate is refused there too.
    assert!(refused(status_as(&c, &old, victim).await));
    assert!(refused(status_as(&c, &old, leader).await));
}

/// A restarted node's stored head can be older than one it, or the cluster, already
/// published; it serves no tree head until it has applied what a leader committed after
/// the restart (found by the fault suite: a node killed and restarted served an older
/// head than before the kill, and a wiped node replaying the log served size 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_serves_no_head_until_it_has_caught_up() {
    let (mut c, http, leader) = running("file").await;
    let victim = (1..=3).rev().find(|&k| k != leader).unwrap();
    let others: Vec<u64> = (1..=3).filter(|&k| k != victim).collect();
    c.add_any(&[1, 2, 3], &[1, 2]).await;
    c.wait_for("the victim to serve a head of size 2", 30, || async {
        published(&c, &http, victim).await >= 2
    })
    .await;
    c.kill(victim);
    c.add_any(&others, &[3, 4, 5]).await;
    c.wait_for("the cluster to publish size 5", 30, || async {
        published(&c, &http, leader).await >= 5
    })
    .await;
    for &k in &others {
        c.kill(k);
    }
    // Alone, the victim cannot learn what the cluster committed meanwhile: the size-2
    // head on its disk must not be served.
    c.start(victim);
    let first = c
        .wait_until(
            || "the restarted node's API to answer".into(),
            30,
            || async { http.get(&c.api_addr(victim), "get-tree-head").await.ok() },
        )
        .await;
    assert_eq!(first.status, 503, "served {:?}", first.body);
    assert!(first.body.contains("not yet caught up"), "{}", first.body);
    let status = c.status(victim).await.unwrap();
    assert!(!status.caught_up, "{status:?}");
    for &k in &others {
        c.start(k);
    }
    let size = c
        .wait_until(
            || "the restarted node to serve a head again".into(),
            60,
            || async {
                http.tree_head(&c.api_addr(victim))
                    .await
                    .map(|h| h.head.size)
            },
        )
        .await;
    assert!(
        size >= 5,
        "served size {size} after the cluster published 5"
    );
    assert!(c.status(victim).await.unwrap().caught_up);
}

/// A follower cut off from every other node stops presenting its head as current once
/// its read lease runs out (before, it served its last head for as long as the cut
/// lasted, while the rest of the cluster could publish newer ones), and serves again once
/// it hears from a leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_cut_off_from_the_leader_serves_no_stale_head() {
    let (c, http, leader) = running("file").await;
    let lone = (1..=3).find(|&k| k != leader).unwrap();
    c.add_any(&[1, 2, 3], &[1, 2]).await;
    c.wait_for("the follower to serve a head of size 2", 30, || async {
        published(&c, &http, lone).await >= 2
    })
    .await;
    let others: Vec<u64> = (1..=3).filter(|&k| k != lone).collect();
    for &k in &others {
        c.signal(k, "STOP");
    }
    c.wait_for("the lone follower to refuse its head", 30, || async {
        http.get(&c.api_addr(lone), "get-tree-head")
            .await
            .is_ok_and(|a| a.status == 503 && a.body.contains("not heard from a leader"))
    })
    .await;
    // A proof past its head is retryable there: the client may have the size from a node
    // further ahead.
    let a = http
        .get(&c.api_addr(lone), "get-consistency-proof/1/3")
        .await
        .unwrap();
    assert_eq!(a.status, 503, "{}", a.body);
    for &k in &others {
        c.signal(k, "CONT");
    }
    c.wait_for("the follower to serve its head again", 30, || async {
        published(&c, &http, lone).await >= 2
    })
    .await;
}

/// In custody `handoff`, a node that handed the key on does not get it back from its key
/// file when it restarts (before, it did, and two nodes held the key).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_handed_the_key_on_does_not_reload_it_at_restart() {
    let (mut c, http, leader) = running("handoff").await;
    if leader != 1 {
        c.operator(leader)
            .transfer_leader(TransferLeaderRequest { to: 1 })
            .await
            .unwrap();
        c.leader(&[1, 2, 3]).await;
    }
    c.wait_for("node 1 alone to hold the key", 20, || async {
        key_holders(&c, &http, &[1, 2, 3]).await == vec![1]
    })
    .await;
    c.operator(1)
        .transfer_leader(TransferLeaderRequest { to: 2 })
        .await
        .unwrap();
    c.wait_for("the key to move to node 2", 20, || async {
        key_holders(&c, &http, &[1, 2, 3]).await == vec![2]
    })
    .await;
    assert!(marker_anywhere(&c.node_dir(1)), "the hand-off is recorded");
    c.kill(1);
    c.start(1);
    c.wait_for("node 1 to be back", 30, || async {
        metric(&c, &http, 1, "quorumlog_signing_key_loaded")
            .await
            .is_some()
    })
    .await;
    assert_eq!(key_holders(&c, &http, &[1, 2, 3]).await, vec![2]);
    // Loading the key into node 1 again lifts the marker.
    let key = std::fs::read_to_string(c.path.join("log.key")).unwrap();
    let mut req = tonic::Request::new(HandoverRequest {
        payload: hex::decode(key.trim()).unwrap(),
        from: 0,
        to: 1,
    });
    req.set_timeout(Duration::from_secs(5));
    c.operator(1).handover(req).await.unwrap();
    assert!(!marker_anywhere(&c.node_dir(1)));
}

/// Whether a `key-handed-off` marker exists under `dir`.
fn marker_anywhere(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            let p = e.path();
            e.file_name() == "key-handed-off" || (p.is_dir() && marker_anywhere(&p))
        })
}
