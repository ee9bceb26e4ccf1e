//! The Docker cluster, driven through `cluster/docker.sh` as an operator drives it: real
//! containers built from Debian's packages, a real sigsum-witness container, Debian's
//! sigsum-submit and sigsum-verify on the host, headless Chromium for the status page.
//!
//! These tests need Docker Engine and docker-compose. Without them they fail with a clear
//! message; `QUORUMLOG_SKIP_DOCKER_TESTS=1` skips them explicitly.

mod support;

use quorumlog::status::ClusterStatus;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use support::docker::{skipped, DockerCluster};
use support::load::{leaf_hashes, verify_run, Load};
use support::sigsum::{Http, Submitter};
use support::{Handle, BIN};

/// The tests share the machine's Docker: one at a time.
static DOCKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn require_docker() {
    let out = Command::new("docker").arg("info").output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "Docker is not usable ({}); these tests need Docker Engine, or set {}=1 to skip them",
            String::from_utf8_lossy(&o.stderr).trim(),
            support::docker::SKIP_VAR
        ),
        Err(e) => panic!(
            "docker is not installed ({e}); these tests need Docker Engine, or set {}=1 to skip them",
            support::docker::SKIP_VAR
        ),
    }
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

/// Every node's `/status.json`, once all of them serve the same cosigned published head.
async fn converged_status(h: &Handle, http: &Http) -> Vec<ClusterStatus> {
    h.wait_until(
        || "every node's status page to show the same published head".into(),
        60,
        || async {
            let mut all = Vec::new();
            for id in 1..=3 {
                let a = http.get(&h.api_addr(id), "status.json").await.ok()?;
                all.push(serde_json::from_str::<ClusterStatus>(&a.body).ok()?);
            }
            let head =
                |s: &ClusterStatus| s.published.as_ref().map(|p| (p.size, p.root_hash.clone()));
            let cosigned = all
                .iter()
                .all(|s| s.witnesses.iter().all(|w| w.cosigned_at.is_some()));
            (head(&all[0]).is_some() && cosigned && all.iter().all(|s| head(s) == head(&all[0])))
                .then_some(all)
        },
    )
    .await
}

fn image_of(dc: &DockerCluster, svc: &str) -> String {
    run(Command::new("docker")
        .args(["inspect", "-f", "{{.Config.Image}}"])
        .arg(dc.container(svc)))
    .trim()
    .to_string()
}

/// Renders the status page in headless Chromium: the DOM it built and a screenshot, saved
/// as a test artifact.
fn render_in_chromium(url: &str, work: &Path) -> String {
    let profile = work.join("chromium-profile");
    let flags = |c: &mut Command| {
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--window-size=1280,1400");
    };
    let mut dom = Command::new("chromium");
    flags(&mut dom);
    let dom = run(dom.arg("--dump-dom").arg(url));
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("docker-status-page.png");
    let _ = std::fs::remove_file(&shot);
    let mut c = Command::new("chromium");
    flags(&mut c);
    run(c.arg(format!("--screenshot={}", shot.display())).arg(url));
    let png = std::fs::read(&shot).expect("chromium wrote no screenshot");
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
    eprintln!("status page screenshot: {}", shot.display());
    dom
}

/// Every leaf of `(seed, n)` answered 200 is in node 1's tree at its head.
async fn assert_all_included(h: &Handle, http: &Http, acked: &[(u8, u64)]) {
    let size = http.tree_head(&h.api_addr(1)).await.unwrap().head.size;
    let present = leaf_hashes(h, http, 1, size).await;
    for &(seed, n) in acked {
        let lh = Submitter::new(seed).leaf(n).leaf_hash();
        assert!(
            present.contains(&lh),
            "acknowledged leaf ({seed}, {n}) missing"
        );
    }
}

/// Runs a script command on a blocking thread, so a load can go on meanwhile.
async fn script(dc: &Arc<DockerCluster>, bin: &Path, args: &'static [&'static str]) -> String {
    let (dc, bin) = (dc.clone(), bin.to_path_buf());
    let (ok, text) = tokio::task::spawn_blocking(move || dc.run_with(&bin, args))
        .await
        .unwrap();
    assert!(ok, "cluster/docker.sh {args:?} failed:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn docker_cluster_from_up_to_reset() {
    if skipped("docker_cluster_from_up_to_reset") {
        return;
    }
    let _one = DOCKER.lock().await;
    require_docker();
    let dc = Arc::new(DockerCluster::new("life", 61));
    let bin = Path::new(BIN);
    let h = dc.handle();
    let http = Http::default();
    let mut all_acked: Vec<(u8, u64)> = Vec::new();

    // `up` from nothing to a cosigned head on every node.
    let out = script(&dc, bin, &["up"]).await;
    let policy = dc.cluster_path().join("policy");
    assert!(out.contains(&policy.display().to_string()), "{out}");
    let key = h.log_key();

    // Debian's sigsum-submit through a published port, then sigsum-verify offline.
    let work = dc.dir().join("work");
    std::fs::create_dir_all(&work).unwrap();
    run(Command::new("sigsum-key")
        .args(["generate", "-o"])
        .arg(work.join("sub.key")));
    std::fs::write(work.join("msg"), b"hello from the host\n").unwrap();
    run(Command::new("sigsum-submit")
        .arg("-k")
        .arg(work.join("sub.key"))
        .arg("-p")
        .arg(&policy)
        .arg(work.join("msg")));
    run(Command::new("sigsum-verify")
        .arg("-k")
        .arg(work.join("sub.key.pub"))
        .arg("-p")
        .arg(&policy)
        .arg(work.join("msg.proof"))
        .stdin(std::fs::File::open(work.join("msg")).unwrap()));

    // Every node's status page shows the same published head, the leader and the witness.
    let views = converged_status(&h, &http).await;
    let leader = views[0].leader.expect("a leader");
    for v in &views {
        assert_eq!(v.members.len(), 3, "{v:?}");
        assert!(v.members.iter().all(|m| m.node.is_some()), "{v:?}");
        assert_eq!(v.publisher, Some(leader), "{v:?}");
        assert_eq!(v.witnesses.len(), 1, "{v:?}");
    }
    let cli = dc.status().unwrap();
    assert_eq!(cli.leader, Some(leader));
    let page = http.get(&h.api_addr(2), "").await.unwrap();
    assert!(page.body.contains("Quorumlog status"), "{}", page.body);
    assert!(!page.body.contains("PRIVATE KEY"));

    // The page as a browser renders it.
    let size = views[0].published.as_ref().unwrap().size;
    let dom = render_in_chromium(&format!("http://{}/", h.api_addr(1)), &work);
    assert!(dom.contains("Quorumlog status"), "{dom}");
    let shown: u64 = dom
        .split("id=\"published-size\">")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no published size on the page: {dom}"));
    assert!(shown >= size, "page shows size {shown}, status had {size}");
    assert!(dom.contains("id=\"leader\">"), "{dom}");

    // `docker kill` of the leader: writes go on, a new head is published, the old leader
    // comes back and catches up, and no acknowledged leaf is lost.
    let load = Load::start(h.clone(), http.clone(), 4, 1);
    h.wait_for("leaves accepted before the kill", 60, || async {
        load.acked_len() >= 30
    })
    .await;
    let survivor = (1..=3).find(|&k| k != leader).unwrap();
    let published_at_kill = http
        .tree_head(&h.api_addr(survivor))
        .await
        .unwrap()
        .head
        .size;
    run(Command::new("docker")
        .arg("kill")
        .arg(dc.container(&format!("n{leader}"))));
    let acked_at_kill = load.acked_len();
    h.wait_for("writes to resume after the leader's kill", 90, || async {
        load.acked_len() >= acked_at_kill + 50
    })
    .await;
    h.wait_for("a new head after the leader's kill", 90, || async {
        http.tree_head(&h.api_addr(survivor))
            .await
            .is_some_and(|t| t.head.size > published_at_kill)
    })
    .await;
    let after = dc.status().unwrap();
    assert_ne!(after.leader, Some(leader), "{after:?}");
    dc.run(&["start", &format!("n{leader}")]);
    assert!(load.failures().is_empty(), "{:?}", load.failures());
    let (acked, seen) = load.finish().await;
    verify_run(&h, &http, &key, &acked, &seen, 1).await;
    all_acked.extend(acked.iter().map(|&n| (1, n)));

    // `rolling-restart` and `upgrade` under a steady load: no submission fails (a 202 is
    // retried, as sigsum-submit does; a node being replaced refuses connections and the
    // client goes to another node).
    let upgraded = dc.dir().join("quorumlog-upgraded");
    std::fs::copy(BIN, &upgraded).unwrap();
    // Same program, different bytes: a different image, as a new release would be.
    let mut bytes = std::fs::read(&upgraded).unwrap();
    bytes.extend_from_slice(b"quorumlog-upgrade-test");
    std::fs::write(&upgraded, bytes).unwrap();
    let old_image = image_of(&dc, "n1");
    let steps: [(u8, &'static [&'static str], &Path); 2] =
        [(2, &["rolling-restart"], bin), (3, &["upgrade"], &upgraded)];
    for (seed, args, with) in steps {
        let load = Load::start(h.clone(), http.clone(), 4, seed);
        h.wait_for("leaves accepted before the restarts", 60, || async {
            load.acked_len() >= 20
        })
        .await;
        let out = script(&dc, with, args).await;
        let before = load.acked_len();
        h.wait_for("leaves accepted after the restarts", 60, || async {
            load.acked_len() >= before + 20
        })
        .await;
        let failures = load.failures();
        let unanswered = load.unanswered();
        let (acked, seen) = load.finish().await;
        assert!(
            failures.is_empty(),
            "{args:?}: failed submissions {failures:?}\n{out}"
        );
        eprintln!(
            "{args:?}: {} leaves acknowledged, {unanswered} requests to a stopped node retried elsewhere",
            acked.len()
        );
        verify_run(&h, &http, &key, &acked, &seen, seed).await;
        all_acked.extend(acked.iter().map(|&n| (seed, n)));
    }
    let new_image = image_of(&dc, "n1");
    assert_ne!(new_image, old_image, "upgrade kept the old image");
    for svc in ["n2", "n3"] {
        assert_eq!(image_of(&dc, svc), new_image, "{svc} not upgraded");
    }

    // `down` keeps the data: after `up` every acknowledged leaf is still there.
    let size_before = http.tree_head(&h.api_addr(1)).await.unwrap().head.size;
    dc.run(&["down"]);
    let left = dc.leftovers();
    assert!(
        left.iter().all(|l| l.starts_with("volume ")),
        "down left more than volumes: {left:?}"
    );
    assert_eq!(left.len(), 4, "node and witness volumes kept: {left:?}");
    script(&dc, bin, &["up"]).await;
    let size_after = http.tree_head(&h.api_addr(1)).await.unwrap().head.size;
    assert!(size_after >= size_before, "{size_after} < {size_before}");
    assert_all_included(&h, &http, &all_acked).await;
    run(Command::new("sigsum-verify")
        .arg("-k")
        .arg(work.join("sub.key.pub"))
        .arg("-p")
        .arg(&policy)
        .arg(work.join("msg.proof"))
        .stdin(std::fs::File::open(work.join("msg")).unwrap()));

    // `reset` removes everything the script created.
    dc.run(&["reset"]);
    assert_eq!(dc.leftovers(), Vec::<String>::new());
    assert!(!dc.dir().exists(), "reset left {}", dc.dir().display());
    let images = run(Command::new("docker").args(["images", "-q", &new_image]));
    assert!(images.trim().is_empty(), "reset left image {new_image}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_script_reports_clear_errors() {
    if skipped("docker_script_reports_clear_errors") {
        return;
    }
    let _one = DOCKER.lock().await;
    require_docker();
    let dc = DockerCluster::new("errors", 62);

    // No daemon behind the socket.
    let out = dc
        .command(Path::new(BIN))
        .arg("status")
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("the Docker daemon is not running or not reachable"),
        "{text}"
    );

    // A binary that is not there.
    let (ok, text) = dc.run_with(Path::new("/nonexistent/quorumlog"), &["up"]);
    assert!(!ok && text.contains("is not an executable"), "{text}");

    // A published port already taken by another program: refused before anything starts.
    let _taken = std::net::TcpListener::bind(("127.0.0.1", dc.base + 3)).unwrap();
    let (ok, text) = dc.run_with(Path::new(BIN), &["up"]);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("port {} on this host is taken", dc.base + 3)),
        "{text}"
    );
    assert!(
        dc.leftovers().is_empty(),
        "a refused up left {:?}",
        dc.leftovers()
    );

    // An unknown node name.
    let (ok, text) = dc.run_with(Path::new(BIN), &["stop", "n7"]);
    assert!(!ok && text.contains("no node n7"), "{text}");
}
