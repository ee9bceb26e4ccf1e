//! The Key Transparency directory on a 3-node cluster with a real witness: updates through
//! every node, verified lookups on followers, a leader killed mid-epoch, the monitor
//! agreeing with every node, and a client that refuses tampered answers.

mod support;

use quorumlog::kt::verify::{Trust, VerifyError};
use quorumlog::kt::wire::{LogProof, Lookup, Parameters};
use quorumlog::sigsum::crypto::PublicKey;
use quorumlog::sigsum::merkle::{leaf_hash, verify_consistency, verify_inclusion, Hash};
use quorumlog::sigsum::policy::Policy;
use std::process::Command;
use std::time::{Duration, Instant};
use support::sigsum::{free_port, Witness};
use support::{fast_publish, Cluster, BIN};

fn hash(h: &str) -> Hash {
    Hash(hex::decode(h).unwrap().try_into().unwrap())
}

/// Runs `quorumlog kt` against node `via`; `Ok(stdout)` or `Err(stderr)`.
fn kt(c: &Cluster, via: u64, args: &[&str]) -> Result<serde_json::Value, String> {
    let url = format!("http://{}", c.api_addr(via));
    let out = Command::new(BIN)
        .args(["kt", "--url", &url, "--log-key"])
        .arg(c.path.join("log.pub"))
        .arg("--policy")
        .arg(c.path.join("policy"))
        .arg("--state")
        .arg(c.dir.path().join(format!("kt-state-{via}.json")))
        .args(args)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("kt prints JSON"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn keygen(c: &Cluster, name: &str) -> String {
    let path = c.dir.path().join(format!("{name}.key"));
    let out = Command::new(BIN)
        .args(["kt", "keygen", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path.to_str().unwrap().to_string()
}

/// Polls `kt get` on `via` until the user's value is `want`.
async fn wait_value(c: &Cluster, via: u64, id: &str, want: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Err(String::new());
    while Instant::now() < deadline {
        last = kt(c, via, &["get", "--id", id]);
        if let Ok(v) = &last {
            if v["value"] == want {
                return v.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "node {via} never showed {id} = {want}: last {last:?}\n{}",
        c.logs()
    );
}

fn directory_settings(cfg: &mut quorumlog::config::NodeConfig) {
    fast_publish(cfg);
    let kt = cfg.kt.as_mut().expect("init-cluster --kt writes [kt]");
    kt.epoch_interval_ms = 300;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn directory_updates_lookups_failover_and_monitor() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (witness_hex, witness_url) = Witness::prepare(dir.path(), port);
    let mut c = Cluster::init_in(
        dir,
        3,
        0,
        &[
            "--kt".into(),
            "--witness".into(),
            format!("w1:{witness_hex}:{witness_url}"),
        ],
        directory_settings,
    );
    let _witness = Witness::start(c.dir.path(), port, &c.path.join("log.key.pub"));
    for id in 1..=3 {
        c.start(id);
    }
    let leader = c.leader(&[1, 2, 3]).await;
    let followers: Vec<u64> = (1..=3).filter(|&i| i != leader).collect();
    let alice = keygen(&c, "alice");
    let bob = keygen(&c, "bob");

    // Updates through a follower and through the leader; lookups on every node verify.
    let a = kt(
        &c,
        followers[0],
        &[
            "update",
            "--id",
            "alice@example.org",
            "--value",
            "alice-1",
            "--key",
            &alice,
        ],
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert_eq!(a["verdict"], "applied");
    let b = kt(
        &c,
        leader,
        &[
            "update",
            "--id",
            "bob@example.org",
            "--value",
            "bob-1",
            "--key",
            &bob,
        ],
    )
    .unwrap();
    assert_eq!(b["verdict"], "applied");
    for id in 1..=3 {
        let v = wait_value(&c, id, "alice@example.org", "alice-1").await;
        assert_eq!(v["verified"], true);
    }
    wait_value(&c, followers[1], "bob@example.org", "bob-1").await;
    // A user with no entry: absence, proven.
    let carol = kt(&c, followers[1], &["get", "--id", "carol@example.org"]).unwrap();
    assert_eq!(carol["present"], false);

    // Bob's key cannot change Alice's entry: refused before it is queued.
    let err = kt(
        &c,
        followers[1],
        &[
            "update",
            "--id",
            "alice@example.org",
            "--value",
            "evil",
            "--key",
            &bob,
        ],
    )
    .unwrap_err();
    assert!(err.contains("403"), "{err}");

    // A change of keys needs the old key and the new one; afterwards only the new one works.
    let alice2 = keygen(&c, "alice2");
    kt(
        &c,
        followers[1],
        &[
            "update",
            "--id",
            "alice@example.org",
            "--value",
            "alice-2",
            "--key",
            &alice,
            "--new-key",
            &alice2,
        ],
    )
    .unwrap();
    wait_value(&c, leader, "alice@example.org", "alice-2").await;
    let err = kt(
        &c,
        leader,
        &[
            "update",
            "--id",
            "alice@example.org",
            "--value",
            "alice-x",
            "--key",
            &alice,
        ],
    )
    .unwrap_err();
    assert!(err.contains("403"), "the replaced key still works: {err}");

    // An update acknowledged just before the leader dies appears in a later epoch.
    kt(
        &c,
        followers[0],
        &[
            "update",
            "--id",
            "bob@example.org",
            "--value",
            "bob-2",
            "--key",
            &bob,
        ],
    )
    .unwrap();
    c.kill(leader);
    let new_leader = c.leader(&followers).await;
    assert_ne!(new_leader, leader);
    for &id in &followers {
        wait_value(&c, id, "bob@example.org", "bob-2").await;
    }

    // The monitor replays the whole log of mutations on every live node and agrees.
    for &id in &followers {
        let m = kt(&c, id, &["monitor"]).unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
        assert_eq!(m["verified"], true);
        assert!(m["epochs"].as_u64().unwrap() >= 2, "{m}");
    }

    // A client refuses tampered answers, each for its own reason.
    let http = reqwest::Client::new();
    let url = format!("http://{}", c.api_addr(followers[0]));
    let get = |path: String| {
        let http = http.clone();
        async move {
            let body = http.get(path).send().await.unwrap().text().await.unwrap();
            body
        }
    };
    let params: Parameters =
        serde_json::from_str(&get(format!("{url}/kt/v1/parameters")).await).unwrap();
    let log_key = PublicKey(
        hex::decode(
            std::fs::read_to_string(c.path.join("log.pub"))
                .unwrap()
                .trim(),
        )
        .unwrap()
        .try_into()
        .unwrap(),
    );
    let policy = Policy::load(&c.path.join("policy")).unwrap();
    let trust = Trust::from_parameters(&params, log_key, Some(policy)).unwrap();
    let lookup: Lookup =
        serde_json::from_str(&get(format!("{url}/kt/v1/lookup?id=bob@example.org")).await).unwrap();
    trust
        .lookup(&lookup)
        .expect("the untouched answer verifies");
    let tamper = |f: &dyn Fn(&mut Lookup)| {
        let mut l = lookup.clone();
        f(&mut l);
        trust.lookup(&l).unwrap_err()
    };
    let flip = |s: &mut String, at: usize| {
        let mut b = hex::decode(&*s).unwrap();
        b[at] ^= 1;
        *s = hex::encode(b);
    };
    assert_eq!(
        tamper(&|l| l.value = Some(hex::encode("bob-evil"))),
        VerifyError::Commitment
    );
    assert_eq!(
        tamper(&|l| l.id = "mallory@example.org".into()),
        VerifyError::Vrf
    );
    assert_eq!(
        tamper(&|l| {
            l.entry = None;
            l.value = None;
            l.nonce = None;
        }),
        VerifyError::MapProof,
        "hiding bob's entry is caught"
    );
    assert_eq!(
        tamper(&|l| flip(&mut l.head.signed_head, 50)),
        VerifyError::HeadSignature
    );
    assert_eq!(
        tamper(&|l| l.head.leaf_index += 1),
        VerifyError::Inclusion,
        "a head whose leaf is not where the log has it is caught"
    );
    let other_tree_head = {
        let mut l = lookup.clone();
        l.tree_head = l.tree_head.replacen("size=", "size=1", 1);
        trust.lookup(&l).unwrap_err()
    };
    assert!(matches!(
        other_tree_head,
        VerifyError::TreeHeadSignature | VerifyError::Malformed(_)
    ));

    // The log of mutations' proofs verify against the heads that state its roots.
    let first = trust.head(&lookup.head).unwrap().0;
    let heads: serde_json::Value =
        serde_json::from_str(&get(format!("{url}/kt/v1/heads?start=1&end=100")).await).unwrap();
    let epoch1: quorumlog::kt::wire::SmhWithLeaf =
        serde_json::from_value(heads["heads"][0].clone()).unwrap();
    let one = trust.head(&epoch1).unwrap().0.head;
    let last = first.head;
    assert!(one.log_size < last.log_size);
    let proof: LogProof = serde_json::from_str(
        &get(format!(
            "{url}/kt/v1/log/consistency?old={}&new={}",
            one.log_size, last.log_size
        ))
        .await,
    )
    .unwrap();
    let path: Vec<Hash> = proof.path.iter().map(|h| hash(h)).collect();
    verify_consistency(
        one.log_size,
        last.log_size,
        &Hash(one.log_root),
        &Hash(last.log_root),
        &path,
    )
    .expect("the log of mutations grew append-only between the heads");
    let records: serde_json::Value =
        serde_json::from_str(&get(format!("{url}/kt/v1/records?start=0&end=1")).await).unwrap();
    let record = hex::decode(records["records"][0].as_str().unwrap()).unwrap();
    let proof: LogProof = serde_json::from_str(
        &get(format!(
            "{url}/kt/v1/log/inclusion?index=0&size={}",
            last.log_size
        ))
        .await,
    )
    .unwrap();
    let path: Vec<Hash> = proof.path.iter().map(|h| hash(h)).collect();
    verify_inclusion(
        &leaf_hash(&record),
        0,
        last.log_size,
        &path,
        &Hash(last.log_root),
    )
    .expect("the first record is in the log the last head states");
    let r = http
        .get(format!(
            "{url}/kt/v1/log/inclusion?index=0&size={}",
            last.log_size + 1000
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "no proof beyond what heads publish");

    // Bad input: clear 4xx, nothing queued.
    let r = http
        .post(format!("{url}/kt/v1/update"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .get(format!("{url}/kt/v1/lookup?id="))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .get(format!(
            "{url}/kt/v1/lookup?id=bob@example.org&epoch=999999"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
