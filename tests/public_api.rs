//! The public Sigsum API of a real three-node cluster: interop with Debian's sigsum-go
//! tools and a real witness, every error path, publication invariants across leader kills,
//! follower reads, submit tokens and rate limits, metrics and health.

mod support;

use quorumlog::config::{CheckSubmissionsOn, NodeConfig};
use quorumlog::merkle::{verify_consistency, verify_inclusion, Hash};
use quorumlog::sigsum::leaf::parse_leaves;
use quorumlog::sigsum::proofs::{ConsistencyProof, InclusionProof};
use quorumlog::sigsum::tree_head::CosignedTreeHead;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::load::{check_heads, verify_run, Load};
use support::sigsum::{free_port, Http, Submitter, Witness};
use support::{fast_publish, Cluster};

/// Waits until every node in `ids` serves the same published head of at least `size`.
async fn wait_head(c: &Cluster, http: &Http, ids: &[u64], size: u64) -> CosignedTreeHead {
    c.wait_until(
        || format!("nodes {ids:?} to publish a head of size >= {size}"),
        60,
        || async {
            let mut heads = Vec::new();
            for &id in ids {
                heads.push(http.tree_head(&c.api_addr(id)).await?);
            }
            let first = heads[0].head;
            (first.size >= size && heads.iter().all(|h| h.head == first)).then(|| heads[0].clone())
        },
    )
    .await
}

/// Submits through node `via` until it answers 200 (202 and 503 are retried).
async fn submit_ok(c: &Cluster, http: &Http, via: u64, s: &Submitter, n: u64) {
    let body = s.request(n).to_ascii().into_bytes();
    let last = Mutex::new(String::new());
    c.wait_until(
        || {
            format!(
                "add-leaf {n} via node {via} to answer 200; last {}",
                last.lock().unwrap()
            )
        },
        30,
        || async {
            match http
                .post(&c.api_addr(via), "add-leaf", body.clone(), None)
                .await
            {
                Ok(a) if a.status == 200 => {
                    assert!(a.body.is_empty(), "a 200 has an empty body");
                    Some(())
                }
                Ok(a) => {
                    *last.lock().unwrap() = format!("{} {}", a.status, a.body);
                    assert!(
                        [202, 503].contains(&a.status),
                        "unexpected answer {} {}",
                        a.status,
                        a.body
                    );
                    None
                }
                Err(e) => {
                    *last.lock().unwrap() = e;
                    None
                }
            }
        },
    )
    .await
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A copy of the cluster's policy with the log URL pointing at node `id`.
fn policy_for(c: &Cluster, id: u64) -> std::path::PathBuf {
    let text = std::fs::read_to_string(c.path.join("policy")).unwrap();
    assert!(text.contains(&c.api_addr(1)), "{text}");
    let text = text.replace(&c.api_addr(1), &c.api_addr(id));
    let p = c.path.join(format!("policy-node{id}"));
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigsum_tools_submit_verify_and_monitor_across_a_leader_kill() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (witness_hex, witness_url) = Witness::prepare(dir.path(), port);
    let mut c = Cluster::init_in(
        dir,
        3,
        0,
        &[
            "--witness".into(),
            format!("w1:{witness_hex}:{witness_url}"),
        ],
        fast_publish,
    );
    let _witness = Witness::start(c.dir.path(), port, &c.path.join("log.key.pub"));
    for id in 1..=3 {
        c.start(id);
    }
    let http = Http::default();
    let head = wait_head(&c, &http, &[1, 2, 3], 0).await;
    let witness_hash = Hash::digest(&hex::decode(&witness_hex).unwrap());
    assert!(
        head.cosignatures
            .iter()
            .any(|cs| cs.key_hash == witness_hash),
        "the published head carries the witness's cosignature: {head:?}"
    );

    let work = c.dir.path().to_path_buf();
    support::sigsum::sigsum_key(&work.join("sub.key"));
    let msg = |i: u64| {
        let p = work.join(format!("msg{i}.txt"));
        std::fs::write(&p, format!("message {i}\n")).unwrap();
        p
    };
    let leader = c.leader(&[1, 2, 3]).await;
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    let survivor = (1..=3).find(|&i| i != leader && i != follower).unwrap();

    // sigsum-monitor follows the log through a node that survives the kill below.
    let monitor_out = work.join("monitor.out");
    let mut monitor = Command::new("sigsum-monitor")
        .args(["-p"])
        .arg(policy_for(&c, survivor))
        .args(["-i", "1s"])
        .arg(work.join("sub.key.pub"))
        .stdout(std::fs::File::create(&monitor_out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Submit through the leader and through a follower (forwarded), then verify offline.
    let mut messages = Vec::new();
    for (via, range) in [(leader, 1..=2), (follower, 3..=4)] {
        let files: Vec<_> = range.clone().map(msg).collect();
        run(Command::new("sigsum-submit")
            .args(["-k"])
            .arg(work.join("sub.key"))
            .arg("-p")
            .arg(policy_for(&c, via))
            .args(&files));
        messages.extend(files);
    }
    // The leader dies; the log goes on through the others.
    c.kill(leader);
    let files: Vec<_> = (5..=6).map(msg).collect();
    run(Command::new("sigsum-submit")
        .args(["-k"])
        .arg(work.join("sub.key"))
        .arg("-p")
        .arg(policy_for(&c, survivor))
        .args(&files));
    messages.extend(files);
    for m in &messages {
        run(Command::new("sigsum-verify")
            .args(["-k"])
            .arg(work.join("sub.key.pub"))
            .arg("-p")
            .arg(c.path.join("policy"))
            .arg(m.with_extension("txt.proof"))
            .stdin(std::fs::File::open(m).unwrap()));
    }
    // A tampered proof is refused, so the verification above means something.
    let proof = std::fs::read_to_string(messages[0].with_extension("txt.proof")).unwrap();
    let tampered = work.join("tampered.proof");
    std::fs::write(&tampered, proof.replacen("leaf_index=0", "leaf_index=1", 1)).unwrap();
    let out = Command::new("sigsum-verify")
        .args(["-k"])
        .arg(work.join("sub.key.pub"))
        .arg("-p")
        .arg(c.path.join("policy"))
        .arg(&tampered)
        .stdin(std::fs::File::open(&messages[0]).unwrap())
        .output()
        .unwrap();
    assert!(!out.status.success(), "a tampered proof must not verify");

    let wanted = messages.len();
    c.wait_for("sigsum-monitor to see every leaf", 60, || async {
        let text = std::fs::read_to_string(&monitor_out).unwrap_or_default();
        text.contains(&format!("total processed {wanted}"))
    })
    .await;
    let _ = monitor.kill();
    let _ = monitor.wait();
    let text = std::fs::read_to_string(&monitor_out).unwrap();
    assert!(!text.contains("inconsistent"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_bad_request_gets_its_4xx_and_changes_nothing() {
    let mut c = Cluster::init(3, 0, fast_publish);
    for id in 1..=3 {
        c.start(id);
    }
    let http = Http::default();
    let s = Submitter::new(1);
    for n in 0..5 {
        submit_ok(&c, &http, 1, &s, n).await;
    }
    let before = wait_head(&c, &http, &[1, 2, 3], 5).await;
    assert_eq!(before.head.size, 5);
    let leader = c.leader(&[1, 2, 3]).await;
    let follower = (1..=3).find(|&i| i != leader).unwrap();

    let good = s.request(100).to_ascii();
    let (m, rest) = good.split_once('\n').unwrap();
    let mut bad_sig = s.request(101);
    bad_sig.signature.0[0] ^= 1;
    let other = Submitter::new(2).request(100);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "bad hex",
            good.replacen("message=", "message=zz", 1).into_bytes(),
            400,
        ),
        (
            "short message",
            {
                let l: Vec<&str> = good.lines().collect();
                format!("{}\n{}\n{}\n", &l[0][..l[0].len() - 2], l[1], l[2]).into_bytes()
            },
            400,
        ),
        ("CRLF", good.replace('\n', "\r\n").into_bytes(), 400),
        (
            "duplicate key",
            format!("{m}\n{m}\n{rest}").into_bytes(),
            400,
        ),
        ("missing line", format!("{m}\n").into_bytes(), 400),
        ("trailing garbage", format!("{good}x=1\n").into_bytes(), 400),
        ("unterminated", good.trim_end().as_bytes().to_vec(), 400),
        ("empty", Vec::new(), 400),
        (
            "keys out of order",
            {
                let l: Vec<&str> = good.lines().collect();
                format!("{}\n{}\n{}\n", l[1], l[0], l[2]).into_bytes()
            },
            400,
        ),
        ("bad signature", bad_sig.to_ascii().into_bytes(), 403),
        (
            "signature by another key",
            format!(
                "{}\n{}\npublic_key={}\n",
                good.lines().next().unwrap(),
                good.lines().nth(1).unwrap(),
                hex::encode(other.public_key.0)
            )
            .into_bytes(),
            403,
        ),
        ("oversized", vec![b'a'; 64 * 1024], 413),
    ];
    for via in [leader, follower] {
        for (what, body, want) in &cases {
            let a = http
                .post(&c.api_addr(via), "add-leaf", body.clone(), None)
                .await
                .unwrap();
            assert_eq!(a.status, *want, "{what} via node {via}: {}", a.body);
            assert!(
                !a.body.trim().is_empty(),
                "{what}: error answers explain themselves"
            );
        }
        for (token, what) in [
            ("onlyonepart", "one part"),
            ("example.org nothex", "bad hex"),
            ("example.org 00", "short"),
            (" 00", "empty domain"),
        ] {
            let a = http
                .post(
                    &c.api_addr(via),
                    "add-leaf",
                    good.clone().into_bytes(),
                    Some(token),
                )
                .await
                .unwrap();
            assert_eq!(a.status, 400, "token {what} via {via}: {}", a.body);
        }
        // Past the published head: final (400) from the leader, retryable (503) from a
        // follower, which may only be behind.
        let beyond = if via == leader { 400 } else { 503 };
        let gets: Vec<(String, u16)> = vec![
            ("get-tree-head/".into(), 404),
            ("nope".into(), 404),
            ("get-inclusion-proof/1/".to_string() + &"00".repeat(32), 400),
            ("get-inclusion-proof/0/".to_string() + &"00".repeat(32), 400),
            (
                "get-inclusion-proof/6/".to_string() + &"00".repeat(32),
                beyond,
            ),
            (
                "get-inclusion-proof/05/".to_string() + &"00".repeat(32),
                400,
            ),
            ("get-inclusion-proof/5/".to_string() + &"00".repeat(31), 400),
            ("get-inclusion-proof/5/".to_string() + &"zz".repeat(32), 400),
            ("get-inclusion-proof/5/".to_string() + &"00".repeat(32), 404),
            (
                "get-inclusion-proof/9223372036854775808/".to_string() + &"00".repeat(32),
                400,
            ),
            (
                "get-inclusion-proof/-1/".to_string() + &"00".repeat(32),
                400,
            ),
            ("get-consistency-proof/0/5".into(), 400),
            ("get-consistency-proof/3/3".into(), 400),
            ("get-consistency-proof/4/3".into(), 400),
            ("get-consistency-proof/3/6".into(), beyond),
            ("get-consistency-proof/3/x".into(), 400),
            ("get-consistency-proof/3/5/7".into(), 404),
            ("get-leaves/2/2".into(), 400),
            ("get-leaves/3/2".into(), 400),
            ("get-leaves/5/6".into(), beyond),
            ("get-leaves/0/6".into(), beyond),
            ("get-leaves/0/+1".into(), 400),
            ("get-leaves/00/1".into(), 400),
        ];
        for (path, want) in &gets {
            let a = http.get(&c.api_addr(via), path).await.unwrap();
            assert_eq!(a.status, *want, "GET {path} via {via}: {}", a.body);
            assert!(
                !a.body.trim().is_empty(),
                "GET {path}: error answers explain themselves"
            );
        }
        let a = http.get(&c.api_addr(via), "add-leaf").await.unwrap();
        assert_eq!(a.status, 405, "{}", a.body);
        let a = http
            .post(&c.api_addr(via), "get-tree-head", Vec::new(), None)
            .await
            .unwrap();
        assert_eq!(a.status, 405, "{}", a.body);
    }

    // Nothing changed: after more publication rounds every node still has five leaves.
    let rounds_later = c
        .wait_until(
            || "a fresh publication round".to_string(),
            30,
            || async {
                let h = http.tree_head(&c.api_addr(leader)).await?;
                (h != before || h.cosignatures.is_empty()).then_some(h)
            },
        )
        .await;
    assert_eq!(rounds_later.head.size, 5);
    for id in 1..=3 {
        let m = http.get(&c.ops_addr(id), "metrics").await.unwrap().body;
        assert!(m.contains("quorumlog_tree_size 5\n"), "node {id}: {m}");
    }
    // And a good request still works afterwards.
    submit_ok(&c, &http, follower, &s, 100).await;
    wait_head(&c, &http, &[1, 2, 3], 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn followers_serve_the_same_head_and_verifiable_proofs() {
    let mut c = Cluster::init(3, 0, fast_publish);
    for id in 1..=3 {
        c.start(id);
    }
    let http = Http::default();
    let s = Submitter::new(3);
    let leader = c.leader(&[1, 2, 3]).await;
    for n in 0..20 {
        submit_ok(&c, &http, 1 + n % 3, &s, n).await;
    }
    let head = wait_head(&c, &http, &[1, 2, 3], 20).await;
    let key = c.log_key();
    head.head.verify(&key).unwrap();
    let old = wait_head(&c, &http, &[1, 2, 3], 0).await;
    let mut leaves_seen = Vec::new();
    for id in 1..=3 {
        let addr = c.api_addr(id);
        for n in 0..20 {
            let lh = s.leaf(n).leaf_hash();
            let a = http
                .get(
                    &addr,
                    &format!("get-inclusion-proof/{}/{lh}", head.head.size),
                )
                .await
                .unwrap();
            assert_eq!(a.status, 200, "node {id} leaf {n}: {}", a.body);
            let p = InclusionProof::parse(a.body.as_bytes()).unwrap();
            verify_inclusion(
                &lh,
                p.leaf_index,
                head.head.size,
                &p.path,
                &head.head.root_hash,
            )
            .unwrap_or_else(|e| panic!("node {id} leaf {n}: {e:?}"));
        }
        let a = http.get(&addr, "get-consistency-proof/7/20").await.unwrap();
        assert_eq!(a.status, 200, "{}", a.body);
        let p = ConsistencyProof::parse(a.body.as_bytes()).unwrap();
        // Root at 7 comes from the leaves each node serves.
        let leaves = parse_leaves(
            http.get(&addr, "get-leaves/0/20")
                .await
                .unwrap()
                .body
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(leaves.len(), 20);
        let hashes: Vec<Hash> = leaves.iter().map(|l| l.leaf_hash()).collect();
        let root7 =
            quorumlog::merkle::MerkleStore::open(&c.dir.path().join(format!("scratch{id}")))
                .map(|t| {
                    t.append(&hashes[..7]).unwrap();
                    t.root(7).unwrap()
                })
                .unwrap();
        verify_consistency(7, 20, &root7, &head.head.root_hash, &p.path)
            .unwrap_or_else(|e| panic!("node {id}: {e:?}"));
        leaves_seen.push(leaves);
        let health = http.get(&c.ops_addr(id), "health").await.unwrap();
        assert_eq!(health.status, 200, "{}", health.body);
        let metrics = http.get(&c.ops_addr(id), "metrics").await.unwrap().body;
        for name in [
            "quorumlog_leaves_appended_total",
            "quorumlog_batch_leaves_bucket",
            "quorumlog_commit_latency_seconds_bucket",
            "quorumlog_published_size",
            "quorumlog_raft_term",
            "quorumlog_raft_leader",
            "quorumlog_raft_commit_index",
        ] {
            assert!(metrics.contains(name), "node {id} lacks {name}");
        }
        if id == leader {
            assert!(metrics.contains("quorumlog_publishing 1"), "{metrics}");
            assert!(metrics.contains("quorumlog_add_leaf_total{status=\"200\"}"));
        }
    }
    assert!(leaves_seen.windows(2).all(|w| w[0] == w[1]));
    // get-leaves is clamped, and a smaller published head is still consistent.
    assert!(old.head.size <= head.head.size);
}

#[test]
fn the_head_checker_catches_planted_faults() {
    use quorumlog::publish::signer::LogSigner;
    let signer = LogSigner::from_seed(&[5; 32]);
    let key = signer.public_key();
    let head = |size: u64, root: u8| CosignedTreeHead {
        head: signer.sign_tree_head(size, Hash([root; 32])),
        cosignatures: vec![],
    };
    let good: BTreeMap<u64, Vec<CosignedTreeHead>> = BTreeMap::from([
        (1, vec![head(1, 1), head(3, 3)]),
        (2, vec![head(3, 3), head(4, 4)]),
    ]);
    assert!(check_heads(&good, &key).is_ok());
    // A regression on one node.
    let mut regress = good.clone();
    regress.get_mut(&2).unwrap().push(head(3, 3));
    assert!(check_heads(&regress, &key)
        .unwrap_err()
        .contains("went from 4 to 3"));
    // A fork: another root at a size already seen elsewhere.
    let mut fork = good.clone();
    fork.get_mut(&1).unwrap().push(head(4, 9));
    assert!(check_heads(&fork, &key)
        .unwrap_err()
        .contains("two different heads"));
    // A head not signed by the log.
    let mut forged = good;
    let mut bad = head(5, 5);
    bad.head.signature.0[0] ^= 1;
    forged.get_mut(&1).unwrap().push(bad);
    assert!(check_heads(&forged, &key).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn published_heads_never_regress_or_fork_across_leader_kills() {
    let mut c = Cluster::init(3, 0, fast_publish);
    for id in 1..=3 {
        c.start(id);
    }
    let http = Http::default();
    wait_head(&c, &http, &[1, 2, 3], 0).await;
    let key = c.log_key();
    let load = Load::start(c.handle(), http.clone(), 4, 10);
    // Three leader kills, each followed by a restart of the killed node.
    for round in 0..3 {
        let before = load.acked_len();
        c.wait_for("leaves to be acknowledged", 30, || async {
            load.acked_len() >= before + 20
        })
        .await;
        let leader = c.leader(&[1, 2, 3]).await;
        let published = http.tree_head(&c.api_addr(leader)).await.unwrap().head.size;
        c.kill(leader);
        let others: Vec<u64> = (1..=3).filter(|&i| i != leader).collect();
        // The new leader publishes again, never below what was published.
        let h = c
            .wait_until(
                || format!("round {round}: a larger head after killing {leader}"),
                30,
                || async {
                    let h = http.tree_head(&c.api_addr(others[0])).await?;
                    (h.head.size > published).then_some(h)
                },
            )
            .await;
        assert!(h.head.size > published);
        c.start(leader);
    }
    let (acked, seen) = load.finish().await;
    let sizes = verify_run(&c, &http, &key, &acked, &seen, 10).await;
    // At least one new head per leader (the loop above also checked each kill).
    assert!(
        sizes.len() >= 3,
        "the observer saw publication advance: {sizes:?}"
    );
    assert!(!acked.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leaf_answered_200_is_in_the_next_published_head() {
    let mut c = Cluster::init(3, 0, fast_publish);
    for id in 1..=3 {
        c.start(id);
    }
    let http = Http::default();
    let s = Submitter::new(4);
    let key = c.log_key();
    for n in 0..10 {
        let via = 1 + n % 3;
        submit_ok(&c, &http, via, &s, n).await;
        // A round that starts after the 200 signs a tree holding the leaf. The head served
        // at the 200, and at most one round already running then, may predate it: so at
        // most one new head without the leaf may appear before one with it.
        let lh = s.leaf(n).leaf_hash();
        let at_200 = http.tree_head(&c.api_addr(via)).await;
        let mut without = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "leaf {n} never published");
            let Some(h) = http.tree_head(&c.api_addr(via)).await else {
                continue;
            };
            h.head.verify(&key).unwrap();
            let included = h.head.size == 1
                || (h.head.size >= 2
                    && http
                        .get(
                            &c.api_addr(via),
                            &format!("get-inclusion-proof/{}/{lh}", h.head.size),
                        )
                        .await
                        .unwrap()
                        .status
                        == 200);
            if included {
                break;
            }
            if Some(&h) != at_200.as_ref() && !without.contains(&h) {
                without.push(h);
            }
            assert!(
                without.len() <= 1,
                "leaf {n}: two heads published after its 200 lack it: {without:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Followers check tokens and signatures themselves (the default).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn submit_tokens_and_rate_limits() {
    tokens_and_rate_limits(CheckSubmissionsOn::ReceivingNode).await;
}

/// Followers forward raw requests and the leader checks everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn submit_tokens_and_rate_limits_checked_on_the_leader() {
    tokens_and_rate_limits(CheckSubmissionsOn::Leader).await;
}

/// The answers a submitter sees do not depend on where its request is checked: 429s are
/// counted exactly on the leader, 400 and 403 come from whichever node checks.
async fn tokens_and_rate_limits(check: CheckSubmissionsOn) {
    let dir = tempfile::tempdir().unwrap();
    let a = Submitter::new(20);
    let b = Submitter::new(21);
    let token_key = Submitter::new(22);
    let rules = format!(
        "# test limits\nkey {} 3\ndomain example.org 2\ndomain other.org 5\n",
        a.public_key().key_hash()
    );
    std::fs::write(dir.path().join("limits"), rules).unwrap();
    let txt = format!(
        "_sigsum_v1.example.org {k}\n_sigsum_v1.other.org {k}\n_sigsum_v1.test.sigsum.org {k}\n",
        k = hex::encode(token_key.public_key().0)
    );
    std::fs::write(dir.path().join("txt"), txt).unwrap();
    let limits = dir.path().join("limits");
    let txt = dir.path().join("txt");
    let edit = move |c: &mut NodeConfig| {
        fast_publish(c);
        c.rate_limit.file = Some(limits.clone());
        c.rate_limit.static_txt_file = Some(txt.clone());
        c.api.check_submissions_on = check;
    };
    let mut c = Cluster::init_in(dir, 3, 0, &[], edit);
    for id in 1..=3 {
        c.start(id);
    }
    let http = Http::default();
    wait_head(&c, &http, &[1, 2, 3], 0).await;
    let leader = c.leader(&[1, 2, 3]).await;
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    let log = c.log_key();
    let token = |domain: &str, k: &Submitter| format!("{domain} {}", k.token(&log));
    let post = |via: u64, s: &Submitter, n: u64, t: Option<String>| {
        let http = http.clone();
        let addr = c.api_addr(via);
        let body = s.request(n).to_ascii().into_bytes();
        async move {
            http.post(&addr, "add-leaf", body, t.as_deref())
                .await
                .unwrap()
        }
    };

    // Per-key limit of 3, counted on the leader whichever node takes the request.
    for n in 0..3 {
        let r = post(if n == 0 { follower } else { leader }, &a, n, None).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = post(follower, &a, 3, None).await;
    assert_eq!(r.status, 429, "{}", r.body);
    // A leaf already in the log answers 200 and costs nothing.
    assert_eq!(post(leader, &a, 1, None).await.status, 200);
    // No rule matches b without a token.
    let r = post(leader, &b, 0, None).await;
    assert_eq!(r.status, 429, "{}", r.body);
    // A valid token for example.org: two leaves, then 429.
    let ok = Some(token("example.org", &token_key));
    assert_eq!(post(leader, &b, 1, ok.clone()).await.status, 200);
    assert_eq!(post(follower, &b, 2, ok.clone()).await.status, 200);
    let r = post(leader, &b, 3, ok.clone()).await;
    assert_eq!(r.status, 429, "{}", r.body);
    // Order of checks: the rate limit (429) comes before the signature (403).
    let mut forged = b.request(4);
    forged.signature.0[5] ^= 1;
    let r = http
        .post(
            &c.api_addr(leader),
            "add-leaf",
            forged.to_ascii().into_bytes(),
            ok.as_deref(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 429, "{}", r.body);
    let other = Some(token("other.org", &token_key));
    let r = http
        .post(
            &c.api_addr(follower),
            "add-leaf",
            forged.to_ascii().into_bytes(),
            other.as_deref(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    // Tokens that do not verify are 400.
    for (t, what) in [
        (token("other.org", &b), "signed by a key not in DNS"),
        (token("unknown.org", &token_key), "no TXT record"),
        (
            token("test.sigsum.org", &token_key),
            "test domain not allowed",
        ),
    ] {
        let r = post(leader, &b, 5, Some(t)).await;
        assert_eq!(r.status, 400, "{what}: {}", r.body);
        let r = post(follower, &b, 5, Some(token("other.org", &b))).await;
        assert_eq!(r.status, 400, "{what} (forwarded): {}", r.body);
    }
    // other.org still has its whole allowance: the refused requests cost nothing.
    for n in 10..15 {
        assert_eq!(post(leader, &b, n, other.clone()).await.status, 200);
    }
    assert_eq!(post(leader, &b, 15, other.clone()).await.status, 429);
}

/// The status line of a GET sent from `from` (another loopback address than the slow
/// clients', so that the per-address connection cap does not apply to it).
async fn get_from(from: &str, addr: &str, path: &str) -> String {
    send_from(
        from,
        addr,
        format!("GET /{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// The status line of the answer to `request`, sent from `from` as [`get_from`] does.
async fn send_from(from: &str, addr: &str, request: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut s = socket.connect(addr.parse().unwrap()).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out)).await;
    out.lines().next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_and_excess_clients_are_bounded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    let mut c = Cluster::init(1, 0, |c| {
        fast_publish(c);
        c.api.max_in_flight = 2;
        c.api.max_writes_in_flight = 2;
        c.api.max_connections_per_client = 8;
        c.api.header_timeout_ms = 500;
        c.api.body_timeout_ms = 1500;
    });
    c.start(1);
    let http = Http::default();
    wait_head(&c, &http, &[1], 0).await;
    let addr = c.api_addr(1);
    // Everything the server sends until it closes; None if it keeps the connection open.
    let read_all = |mut s: TcpStream| async move {
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(30), s.read_to_string(&mut out))
            .await
            .ok()
            .map(|_| out)
    };

    // Headers never finished: the connection is closed after the header deadline.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /get-tree-head HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let out = read_all(s)
        .await
        .expect("the server closes a connection stuck in its headers");
    assert!(!out.contains("200 OK"), "{out}");

    // Slowloris: connections from one address trickling add-leaf bodies. Before, each held
    // one of the permits every request shares, and reads failed with 503 while they
    // lasted; now a body is read before its request takes a permit.
    let mut slow = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"POST /add-leaf HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\nmessage=")
            .await
            .unwrap();
        slow.push(s);
    }
    for _ in 0..5 {
        let status = get_from("127.0.0.2", &addr, "get-tree-head").await;
        assert!(
            status.contains("200"),
            "a read while bodies trickle: {status}"
        );
    }
    // Writes too: the trickling bodies hold none of the two write permits.
    let body = Submitter::new(3).request(1).to_ascii();
    let request = format!(
        "POST /add-leaf HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let status = send_from("127.0.0.2", &addr, request).await;
    assert!(
        status.contains("200"),
        "a write while bodies trickle: {status}"
    );
    // One connection more from the same address is closed without an answer.
    let extra = TcpStream::connect(&addr).await.unwrap();
    let out = read_all(extra)
        .await
        .expect("an excess connection is closed");
    assert!(out.is_empty(), "{out}");
    // The slow bodies time out.
    for s in slow {
        let out = read_all(s).await.unwrap_or_default();
        assert!(
            out.starts_with("HTTP/1.1 408"),
            "the slow body times out: {out}"
        );
    }
    // Their connections are gone, so this address may connect again.
    c.wait_for("a read from the slow clients' address", 10, || async {
        http.get(&addr, "get-tree-head")
            .await
            .is_ok_and(|a| a.status == 200)
    })
    .await;
}
