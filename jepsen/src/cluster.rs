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
    /// Keep every node's data on a power-loss file system (`powerfs`) on the host.
    pub(crate) power_fs: bool,
}

/// A running cluster; reset (containers, volumes, network, keys) when dropped.
pub(crate) struct Cluster {
    spec: ClusterSpec,
    dir: PathBuf,
    project: String,
    base_port: u16,
    subnet: String,
    /// Declared last: dropped after `drop` has removed the containers using the mounts.
    disks: Option<PowerDisks>,
}

/// The nodes' data directories as power-loss file systems: one `quorumlog-jepsen powerfs`
/// daemon per node, its mount bind-mounted into the node's container. Unmounted and
/// deleted when dropped.
struct PowerDisks {
    root: PathBuf,
    daemons: Vec<std::process::Child>,
}

impl PowerDisks {
    fn state(root: &Path, k: u64) -> PathBuf {
        root.join(format!("state-n{k}"))
    }

    fn mountpoint(root: &Path, k: u64) -> PathBuf {
        root.join("data").join(format!("n{k}"))
    }

    fn mount(root: PathBuf) -> anyhow::Result<PowerDisks> {
        let exe = std::env::current_exe().context("this program's path")?;
        let mut disks = PowerDisks {
            root,
            daemons: Vec::new(),
        };
        for k in 1..=NODES {
            let (state, mnt) = (
                Self::state(&disks.root, k),
                Self::mountpoint(&disks.root, k),
            );
            std::fs::create_dir_all(&state)?;
            std::fs::create_dir_all(&mnt)?;
            let log = std::fs::File::create(disks.root.join(format!("powerfs-n{k}.log")))?;
            let child = Command::new(&exe)
                .args(["powerfs", "mount", "--state"])
                .arg(&state)
                .arg("--mountpoint")
                .arg(&mnt)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(log)
                .spawn()
                .context("start the powerfs daemon")?;
            disks.daemons.push(child);
            wait_mounted(&mnt, std::time::Duration::from_secs(20))?;
        }
        Ok(disks)
    }
}

/// Waits until `dir` is a mount point (its device differs from its parent's).
fn wait_mounted(dir: &Path, limit: std::time::Duration) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let parent = dir
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent", dir.display()))?;
    let deadline = std::time::Instant::now() + limit;
    loop {
        let mounted = match (std::fs::metadata(dir), std::fs::metadata(parent)) {
            (Ok(d), Ok(p)) => d.dev() != p.dev(),
            _ => false,
        };
        if mounted {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("{} was not mounted within {limit:?}", dir.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

impl Drop for PowerDisks {
    fn drop(&mut self) {
        for (i, child) in self.daemons.iter_mut().enumerate() {
            let mnt = Self::mountpoint(&self.root, i as u64 + 1);
            // SIGTERM makes the daemon unmount; a lazy unmount covers a daemon that died.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                if !matches!(child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            let _ = Command::new("umount").arg("-l").arg(&mnt).output();
        }
        if let Err(e) = std::fs::remove_dir_all(&self.root) {
            eprintln!("cleanup of {} failed: {e}", self.root.display());
        }
    }
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
            let disks = if spec.power_fs {
                let root = std::env::temp_dir().join(format!("quorumlog-powerfs-{id}"));
                Some(PowerDisks::mount(root).context("power-loss file systems")?)
            } else {
                None
            };
            let c = Cluster {
                dir: std::env::temp_dir().join(format!("quorumlog-jepsen-{id}")),
                project: format!("qlj-{id}"),
                base_port: free_base(24_000 + 100 * (spec.slot % 50)),
                subnet: format!("172.28.{}", 100 + (spec.slot + 13 * attempt) % 100),
                spec: spec.clone(),
                disks,
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
        let mut cmd = Command::new(self.spec.repo.join("cluster/docker.sh"));
        if let Some(d) = &self.disks {
            cmd.env("QUORUMLOG_DATA_DIRS", d.root.join("data"));
        }
        let out = cmd
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

    /// Deletes node `k`'s data (its container must be removed first).
    pub(crate) fn wipe_data(&self, k: u64) -> anyhow::Result<()> {
        match &self.disks {
            None => self
                .docker(&["volume", "rm", &format!("{}_n{k}-data", self.project)])
                .map(|_| ()),
            Some(d) => {
                let mnt = PowerDisks::mountpoint(&d.root, k);
                for entry in std::fs::read_dir(&mnt)? {
                    let path = entry?.path();
                    if path.is_dir() {
                        std::fs::remove_dir_all(&path)?;
                    } else {
                        std::fs::remove_file(&path)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Node `k`'s file system loses power: everything not yet fsynced is gone (kill the
    /// node first: a power loss stops the machine too). What was dropped, as the
    /// daemon reports it.
    pub(crate) fn power_loss(&self, k: u64) -> anyhow::Result<String> {
        let d = self
            .disks
            .as_ref()
            .ok_or_else(|| anyhow!("this cluster has no power-loss file systems"))?;
        let reply = crate::powerfs::control(&PowerDisks::state(&d.root, k), "power-loss")?;
        Ok(reply.to_string())
    }

    /// Lines of node `k`'s container log (all its runs) that contain `needle`; 0 if the
    /// log cannot be read.
    pub(crate) fn log_count(&self, k: u64, needle: &str) -> usize {
        Command::new("docker")
            .args(["logs", &self.container(k)])
            .output()
            .map(|o| {
                let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&o.stderr));
                text.lines().filter(|l| l.contains(needle)).count()
            })
            .unwrap_or(0)
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
