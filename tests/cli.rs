//! The operator commands: files and modes written by init-cluster, and clear errors for bad
//! input (nothing is overwritten, nothing panics).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

mod support;

use support::BIN;

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("panicked"), "{text}");
    (out.status.success(), text)
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_cluster_writes_secrets_owner_only_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (ok, text) = run(&[
        "init-cluster",
        "--nodes",
        "3",
        "--dir",
        d,
        "--base-port",
        "9100",
    ]);
    assert!(ok, "{text}");
    for secret in [
        "ca.key",
        "log.key",
        "node1/node.key",
        "node2/node.key",
        "node3/node.key",
        "operator/operator.key",
    ] {
        assert_eq!(mode(&dir.path().join(secret)), 0o600, "{secret}");
    }
    assert_eq!(mode(&dir.path().join("operator")), 0o700);
    for public in [
        "ca.pem",
        "log.pub",
        "policy",
        "node1/node.pem",
        "node2/config.toml",
    ] {
        assert_eq!(mode(&dir.path().join(public)), 0o644, "{public}");
    }
    let public = std::fs::read_to_string(dir.path().join("log.pub")).unwrap();
    let policy = std::fs::read_to_string(dir.path().join("policy")).unwrap();
    assert!(
        policy.contains(&format!("log {} http://127.0.0.1:9100\n", public.trim())),
        "{policy}"
    );
    let cfg = std::fs::read_to_string(dir.path().join("node2/config.toml")).unwrap();
    assert!(cfg.contains("raft_addr = \"127.0.0.1:9104\""), "{cfg}");
    assert!(cfg.contains("bootstrap = false"), "{cfg}");
    // The private key never lands in a config or on stdout.
    let key = std::fs::read_to_string(dir.path().join("log.key")).unwrap();
    assert!(!cfg.contains(key.trim()) && !text.contains(key.trim()));

    let before = std::fs::read(dir.path().join("ca.key")).unwrap();
    let (ok, text) = run(&["init-cluster", "--nodes", "3", "--dir", d]);
    assert!(!ok && text.contains("already holds a cluster"), "{text}");
    assert_eq!(std::fs::read(dir.path().join("ca.key")).unwrap(), before);

    // new-node refuses an id that exists and works for a fresh one.
    let (ok, text) = run(&["new-node", "--dir", d, "--id", "2"]);
    assert!(!ok, "{text}");
    let (ok, text) = run(&["new-node", "--dir", d, "--id", "4", "--base-port", "9100"]);
    assert!(ok, "{text}");
    assert_eq!(mode(&dir.path().join("node4/node.key")), 0o600);
    assert!(
        text.contains("add-node --id 4 --raft-addr 127.0.0.1:9110"),
        "{text}"
    );
    // No node certificate may carry a role's name.
    let (ok, text) = run(&[
        "new-node",
        "--dir",
        d,
        "--id",
        "5",
        "--host",
        "operator.quorumlog",
    ]);
    assert!(!ok && text.contains("reserved"), "{text}");
}

/// Seconds-from-now test of a certificate's end date, by openssl (not our own code).
fn expires_within(cert: &std::path::Path, secs: u64) -> bool {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-checkend", &secs.to_string(), "-in"])
        .arg(cert)
        .output()
        .expect("openssl");
    // -checkend exits 1 when the certificate expires within `secs`.
    !out.status.success()
}

#[test]
fn certificates_expire_in_years_not_decades_and_renew_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (ok, text) = run(&[
        "init-cluster",
        "--nodes",
        "2",
        "--dir",
        d,
        "--base-port",
        "9150",
    ]);
    assert!(ok, "{text}");
    const YEAR: u64 = 365 * 86_400;
    for cert in ["node1/node.pem", "operator/operator.pem"] {
        let p = dir.path().join(cert);
        assert!(!expires_within(&p, YEAR), "{cert} expires within a year");
        assert!(
            expires_within(&p, 3 * YEAR),
            "{cert} is valid for more than 3 years"
        );
    }
    assert!(expires_within(&dir.path().join("ca.pem"), 11 * YEAR));

    let read = |f: &str| std::fs::read(dir.path().join(f)).unwrap();
    let (old_cert, old_key) = (read("node2/node.pem"), read("node2/node.key"));
    let (ok, text) = run(&["renew-cert", "--dir", d, "--node", "2"]);
    assert!(ok, "{text}");
    assert_ne!(read("node2/node.pem"), old_cert);
    assert_ne!(read("node2/node.key"), old_key);
    assert_eq!(mode(&dir.path().join("node2/node.key")), 0o600);
    assert!(!dir.path().join("node2/node.key.new").exists());
    // The renewed certificate still names the node and its host, so peers accept it.
    let text = String::from_utf8(
        Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
            .arg(dir.path().join("node2/node.pem"))
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        text.contains("DNS:node-2.quorumlog") && text.contains("127.0.0.1"),
        "{text}"
    );

    let old_op = read("operator/operator.key");
    let (ok, text) = run(&["renew-cert", "--dir", d]);
    assert!(ok, "{text}");
    assert_ne!(read("operator/operator.key"), old_op);
    assert_eq!(mode(&dir.path().join("operator/operator.key")), 0o600);

    let (ok, text) = run(&["renew-cert", "--dir", d, "--node", "7"]);
    assert!(!ok && text.contains("node7"), "{text}");
    let (ok, text) = run(&[
        "renew-cert",
        "--dir",
        d,
        "--node",
        "1",
        "--host",
        "node-2.quorumlog",
    ]);
    assert!(!ok && text.contains("reserved"), "{text}");
}

#[test]
fn a_directory_cluster_carries_its_keys_and_refuses_keys_of_another_log() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (ok, text) = run(&[
        "init-cluster",
        "--nodes",
        "2",
        "--dir",
        d,
        "--base-port",
        "9300",
        "--kt",
    ]);
    assert!(ok, "{text}");
    let kt_pub = std::fs::read_to_string(dir.path().join("kt.pub")).unwrap();
    let keys: Vec<&str> = kt_pub.split_whitespace().collect();
    assert_eq!(keys.len(), 2, "{kt_pub}");
    assert_eq!(mode(&dir.path().join("kt.pub")), 0o644);
    for id in [1, 2] {
        let cfg =
            std::fs::read_to_string(dir.path().join(format!("node{id}/config.toml"))).unwrap();
        assert!(cfg.contains("[kt]"), "{cfg}");
        assert!(
            cfg.contains(&format!("directory_key = \"{}\"", keys[0])),
            "{cfg}"
        );
        assert!(cfg.contains(&format!("vrf_key = \"{}\"", keys[1])), "{cfg}");
    }
    // A node added later runs the same directory.
    let (ok, text) = run(&["new-node", "--dir", d, "--id", "3", "--base-port", "9300"]);
    assert!(ok, "{text}");
    let cfg = std::fs::read_to_string(dir.path().join("node3/config.toml")).unwrap();
    assert!(
        cfg.contains(&format!("directory_key = \"{}\"", keys[0])),
        "{cfg}"
    );
    // Keys that are not derived from the log key: the node refuses to start.
    let path = dir.path().join("node1/config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edited(&text, keys[0], &"ab".repeat(32))).unwrap();
    let (ok, text) = run(&["serve", "--config", path.to_str().unwrap()]);
    assert!(!ok && text.contains("not the keys derived"), "{text}");
    // The client trusts only the log it is told to.
    let (ok, text) = run(&["kt", "--url", "http://127.0.0.1:9", "get", "--id", "a"]);
    assert!(!ok && text.contains("--log-key"), "{text}");
}

#[test]
fn bad_arguments_and_configs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (ok, text) = run(&["init-cluster", "--nodes", "0", "--dir", d]);
    assert!(!ok && text.contains("at least 1"), "{text}");
    let (ok, text) = run(&[
        "init-cluster",
        "--nodes",
        "3",
        "--dir",
        d,
        "--base-port",
        "65534",
    ]);
    assert!(!ok && text.contains("65535"), "{text}");

    let (ok, _) = run(&[
        "init-cluster",
        "--nodes",
        "1",
        "--dir",
        d,
        "--base-port",
        "9200",
    ]);
    assert!(ok);
    let cfg = dir.path().join("node1/config.toml");
    let good = std::fs::read_to_string(&cfg).unwrap();

    std::fs::write(&cfg, format!("{good}\n[surprise]\nkey = 1\n")).unwrap();
    let (ok, text) = run(&["serve", "--config", cfg.to_str().unwrap()]);
    assert!(
        !ok && text.contains("invalid configuration") && text.contains("surprise"),
        "{text}"
    );

    std::fs::write(
        &cfg,
        edited(&good, "cert = \"node.pem\"", "cert = \"missing.pem\""),
    )
    .unwrap();
    let (ok, text) = run(&["serve", "--config", cfg.to_str().unwrap()]);
    assert!(!ok && text.contains("missing.pem"), "{text}");

    std::fs::write(&cfg, edited(&good, "max_leaves = 1024", "max_leaves = 0")).unwrap();
    let (ok, text) = run(&["serve", "--config", cfg.to_str().unwrap()]);
    assert!(!ok && text.contains("max_leaves"), "{text}");
    // Batches that would not fit a replication message are refused up front.
    std::fs::write(
        &cfg,
        edited(&good, "max_leaves = 1024", "max_leaves = 100000"),
    )
    .unwrap();
    let (ok, text) = run(&["serve", "--config", cfg.to_str().unwrap()]);
    assert!(!ok && text.contains("at most 4096"), "{text}");

    let (ok, text) = run(&["admin", "--config", "/nonexistent/config.toml", "status"]);
    assert!(!ok && text.contains("/nonexistent/config.toml"), "{text}");

    // Publication and API settings are checked too, and a wrong key file is named.
    std::fs::write(&cfg, edited(&good, "interval_ms = 3000", "interval_ms = 0")).unwrap();
    let (ok, text) = run(&["serve", "--config", cfg.to_str().unwrap()]);
    assert!(!ok && text.contains("interval_ms"), "{text}");
    std::fs::write(
        &cfg,
        edited(
            &good,
            "key_file = \"../log.key\"",
            "key_file = \"node.key\"",
        ),
    )
    .unwrap();
    let (ok, text) = run(&["serve", "--config", cfg.to_str().unwrap()]);
    assert!(!ok && text.contains("node.key"), "{text}");
    let seed = std::fs::read_to_string(dir.path().join("log.key")).unwrap();
    assert!(!text.contains(seed.trim()));
    std::fs::write(
        &cfg,
        edited(
            &good,
            "policy_file = \"../policy\"",
            "policy_file = \"../ca.pem\"",
        ),
    )
    .unwrap();
    let (ok, text) = run(&["serve", "--config", cfg.to_str().unwrap()]);
    assert!(!ok && text.contains("ca.pem"), "{text}");
}

/// `text` with `from` replaced by `to`; `from` must be there, so a changed default cannot
/// turn an edit into a silent no-op.
fn edited(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the config no longer contains {from:?}:\n{text}"
    );
    text.replace(from, to)
}

#[test]
fn witnesses_given_to_init_cluster_land_in_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let w = |n: u8| {
        format!(
            "w{n}:{}:http://127.0.0.1:{}",
            hex::encode([n; 32]),
            9000 + n as u16
        )
    };
    let (ok, text) = run(&["init-cluster", "--dir", d, "--witness", "w1:zz:http://x"]);
    assert!(!ok && text.contains("64 hex"), "{text}");
    let (ok, text) = run(&["init-cluster", "--dir", d, "--witness", "w1:00"]);
    assert!(!ok && text.contains("NAME:PUBKEYHEX:URL"), "{text}");
    let (ok, text) = run(&[
        "init-cluster",
        "--dir",
        d,
        "--witness",
        &w(1),
        "--witness",
        &w(2),
        "--witness",
        &w(3),
    ]);
    assert!(ok, "{text}");
    let policy = std::fs::read_to_string(dir.path().join("policy")).unwrap();
    assert!(policy.contains(&format!(
        "witness w2 {} http://127.0.0.1:9002\n",
        hex::encode([2u8; 32])
    )));
    assert!(
        policy.contains("group witnesses 2 w1 w2 w3\nquorum witnesses\n"),
        "{policy}"
    );
    let parsed = quorumlog::sigsum::policy::Policy::parse(&policy).unwrap();
    assert_eq!(parsed.witnesses.len(), 3);
    // The OpenSSH form of the log key, for sigsum-witness --log-key.
    let ssh = std::fs::read_to_string(dir.path().join("log.key.pub")).unwrap();
    assert!(
        ssh.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI"),
        "{ssh}"
    );
}

#[test]
fn dev_runs_a_one_node_log_that_publishes() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let port = {
        // A free port with two more after it, below the ephemeral range.
        let mut p = 21000 + (std::process::id() % 500) as u16 * 3;
        while (p..p + 3).any(|q| std::net::TcpListener::bind(("127.0.0.1", q)).is_err()) {
            p += 3;
        }
        p
    };
    let data = dir.path().join("quorumlog-data");
    let child = Command::new(BIN)
        .args(["dev", "--dir"])
        .arg(&data)
        .args(["--port", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    // Killed and reaped even if an assertion below fails.
    let _child = Kill(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let answer = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "dev log never published"
        );
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ =
                s.write_all(b"GET /get-tree-head HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if out.starts_with("HTTP/1.1 200") {
                break out;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        answer.contains("\r\n\r\nsize=0\nroot_hash=e3b0c442"),
        "{answer}"
    );
    assert!(data.join("policy").exists() && data.join("log.key").exists());
}

#[test]
fn the_cluster_script_starts_a_publishing_cluster_and_stops_it() {
    let script = support::script::ScriptCluster::new();
    let (dir, base) = (script.dir().to_path_buf(), script.base);
    let run = |cmd: &str| script.run(cmd);
    let (ok, text) = run("start");
    assert!(ok, "{text}");
    let policy = dir.join("cluster/policy");
    assert!(text.contains(&format!("http://127.0.0.1:{base}")), "{text}");
    assert!(text.contains(policy.to_str().unwrap()), "{text}");
    // The policy names the witness, and every node already serves a cosigned head.
    let p = std::fs::read_to_string(&policy).unwrap();
    assert!(
        p.contains("witness witness1 ") && p.contains("quorum witness1"),
        "{p}"
    );
    let (ok, status) = run("status");
    assert!(
        ok && status.contains("leader") && status.contains("witness: running"),
        "{status}"
    );
    let (ok, text) = run("stop");
    assert!(ok, "{text}");
    let (_, status) = run("status");
    assert!(!status.contains("running"), "{status}");
    for f in ["node1.pid", "witness.pid"] {
        assert!(!dir.join("run").join(f).exists());
    }
}
