//! The cluster under test: the three-node Docker cluster of `cluster/docker.sh`, brought up
//! fresh for each test and reset afterwards. The suite reaches it only as clients and
//! operators do: the published HTTP ports, `quorumlog admin` in the operator container,
//! `docker`, and `iptables` run in a node's network namespace.

use anyhow::{anyhow, bail, Context};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Nodes in the cluster.
pub(crate) const NODES: u64 = 3;

/// How to create a cluster.
#[derive(Debug, Clone)]
pub(crate) struct ClusterSpec {
    /// The repository (holds `cluster/docker.sh`).
    pub(crate) repo: PathBuf,
    /// The quorumlog binary the node image is built from.
    pub(crate) bin: PathBuf,
    /// Key custody: `file` or `handoff`.
    pub(crate) custody: String,
    /// Distinguishes concurrent clusters (project name, ports, subnet).
    pub(crate) slot: u16,
}

/// A running cluster; reset (containers, volumes, network, keys) when dropped.
pub(crate) struct Cluster {
    spec: ClusterSpec,
    dir: PathBuf,
    project: String,
    base_port: u16,
    subnet: String,
}

/// The first of nine free ports on 127.0.0.1, at or after `from`.
fn free_base(from: u16) -> u16 {
    let mut base = from;
    loop {
        let ok = (base..base + 9).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        if ok {
            return base;
        }
        base += 9;
    }
}

impl Cluster {
    /// Creates and starts a cluster and waits until every node serves a cosigned head.
    pub(crate) fn up(spec: ClusterSpec) -> anyhow::Result<Cluster> {
        let id = format!("{}-{}", std::process::id(), spec.slot);
        // Another suite running on the machine may hold the subnet this slot maps to
        // (Docker: "Pool overlaps with other one"): move on to another one.
        const ATTEMPTS: u16 = 8;
        for attempt in 0..ATTEMPTS {
            let c = Cluster {
                dir: std::env::temp_dir().join(format!("quorumlog-jepsen-{id}")),
                project: format!("qlj-{id}"),
                base_port: free_base(24_000 + 100 * (spec.slot % 50)),
                subnet: format!("172.28.{}", 100 + (spec.slot + 13 * attempt) % 100),
                spec: spec.clone(),
            };
            match c.script(&["up"]) {
                Ok(_) => return Ok(c),
                Err(e) if e.to_string().contains("Pool overlaps") && attempt + 1 < ATTEMPTS => {
                    eprintln!("jepsen: subnet {}.0/24 is taken; trying another", c.subnet);
                    // Dropping `c` resets what the failed start left.
                }
                Err(e) => return Err(e.context("cluster/docker.sh up")),
            }
        }
        unreachable!("the last attempt returns")
    }

    fn script(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(self.spec.repo.join("cluster/docker.sh"))
            .args(args)
            .env("QUORUMLOG_BIN", &self.spec.bin)
            .env("QUORUMLOG_DOCKER_DIR", &self.dir)
            .env("QUORUMLOG_DOCKER_PROJECT", &self.project)
            .env("QUORUMLOG_DOCKER_PORT", self.base_port.to_string())
            .env("QUORUMLOG_DOCKER_SUBNET", &self.subnet)
            .env("QUORUMLOG_CUSTODY", &self.spec.custody)
            // Snapshots every few seconds at the workload's rate, and a short log after
            // them: restarted and re-added nodes catch up by snapshot, under faults.
            .env("QUORUMLOG_SNAPSHOT_EVERY", "1000")
            .env("QUORUMLOG_SNAPSHOT_KEEP", "100")
            .output()
            .context("run cluster/docker.sh")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "cluster/docker.sh {args:?} failed:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(text)
    }

    /// Node `k`'s public API as the host reaches it.
    pub(crate) fn api_addr(&self, k: u64) -> String {
        format!("127.0.0.1:{}", u64::from(self.base_port) + 3 * (k - 1))
    }

    /// Node `k`'s container.
    pub(crate) fn container(&self, k: u64) -> String {
        format!("{}-n{k}", self.project)
    }

    /// Node `k`'s fixed address on the cluster network (see cluster/docker-compose.yml).
    pub(crate) fn ip(&self, k: u64) -> String {
        format!("{}.{}", self.subnet, 10 + k)
    }

    /// The cluster directory init-cluster wrote (log.pub, policy).
    pub(crate) fn cluster_dir(&self) -> PathBuf {
        self.dir.join("cluster")
    }

    /// The log's public key.
    pub(crate) fn log_key(&self) -> anyhow::Result<[u8; 32]> {
        let text = std::fs::read_to_string(self.cluster_dir().join("log.pub"))?;
        hex32(text.trim()).ok_or_else(|| anyhow!("log.pub is not 64 hex characters"))
    }

    /// The witness's name and public key (from its OpenSSH public key file).
    pub(crate) fn witness_key(&self) -> anyhow::Result<(String, [u8; 32])> {
        use base64::Engine as _;
        let text = std::fs::read_to_string(self.dir.join("secrets/witness/witness.key.pub"))?;
        let blob = text
            .split_whitespace()
            .nth(1)
            .ok_or_else(|| anyhow!("witness.key.pub: no key"))?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(blob)?;
        let key: [u8; 32] = bytes
            .get(bytes.len().saturating_sub(32)..)
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| anyhow!("witness.key.pub: short key"))?;
        Ok(("witness".into(), key))
    }

    /// Runs `docker ARGS`; its stdout.
    pub(crate) fn docker(&self, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new("docker").args(args))
    }

    /// Runs `iptables ARGS` in node `k`'s network namespace (the image's iptables, entered
    /// from the host, so the node containers need no extra capability).
    pub(crate) fn iptables(&self, k: u64, args: &[&str]) -> anyhow::Result<()> {
        let pid = self.docker(&["inspect", "-f", "{{.State.Pid}}", &self.container(k)])?;
        let pid = pid.trim();
        if pid == "0" {
            bail!("node {k} is not running");
        }
        run(Command::new("nsenter")
            .args(["-t", pid, "-m", "-n", "--", "iptables", "-w"])
            .args(args))
        .map(|_| ())
    }

    /// `quorumlog admin ARGS` as the operator (from the operator container), entering
    /// the cluster through node `k`.
    pub(crate) fn admin(&self, k: u64, args: &[&str]) -> anyhow::Result<String> {
        let config = format!("/etc/quorumlog/node{k}/config.toml");
        // Bounded: a command stuck on a paused node must not stall the nemesis.
        run(Command::new("timeout")
            .args([
                "60",
                "docker",
                "exec",
                &format!("{}-operator", self.project),
                "quorumlog",
                "admin",
            ])
            .arg("--config")
            .arg(config)
            .args(args))
    }

    /// Starts node `k` (its container, or a new one if it was removed).
    pub(crate) fn start(&self, k: u64) -> anyhow::Result<()> {
        self.script(&["start", &format!("n{k}")]).map(|_| ())
    }

    /// The named volume holding node `k`'s data.
    pub(crate) fn volume(&self, k: u64) -> String {
        format!("{}_n{k}-data", self.project)
    }

    /// Saves every container's log into `dir`.
    pub(crate) fn save_logs(&self, dir: &Path) {
        for name in (1..=NODES)
            .map(|k| format!("n{k}"))
            .chain(["witness".to_string()])
        {
            let out = Command::new("docker")
                .args(["logs", &format!("{}-{name}", self.project)])
                .output();
            if let Ok(o) = out {
                let mut text = o.stdout;
                text.extend(o.stderr);
                let _ = std::fs::write(dir.join(format!("{name}.log")), text);
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(e) = self.script(&["reset"]) {
            eprintln!("cleanup of cluster {} failed: {e}", self.project);
        }
    }
}

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// 64 hex characters as 32 bytes.
pub(crate) fn hex32(s: &str) -> Option<[u8; 32]> {
    hex::decode(s).ok()?.try_into().ok()
}
