//! The operator commands: files and modes written by init-cluster, and clear errors for bad
//! input (nothing is overwritten, nothing panics).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_quorumlog");

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
    ] {
        assert_eq!(mode(&dir.path().join(secret)), 0o600, "{secret}");
    }
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
        text.contains("add-node --id 4 --raft-addr 127.0.0.1:9107"),
        "{text}"
    );
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
        good.replace("cert = \"node.pem\"", "cert = \"missing.pem\""),
    )
    .unwrap();
    let (ok, text) = run(&["serve", "--config", cfg.to_str().unwrap()]);
    assert!(!ok && text.contains("missing.pem"), "{text}");

    std::fs::write(&cfg, good.replace("max_leaves = 1024", "max_leaves = 0")).unwrap();
    let (ok, text) = run(&["serve", "--config", cfg.to_str().unwrap()]);
    assert!(!ok && text.contains("max_leaves"), "{text}");

    let (ok, text) = run(&["admin", "--config", "/nonexistent/config.toml", "status"]);
    assert!(!ok && text.contains("/nonexistent/config.toml"), "{text}");
}
