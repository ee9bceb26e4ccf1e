//! The Docker cluster script (`cluster/docker.sh`) driven from tests, as an operator runs
//! it: a project, port range, subnet and directory of its own, reset when dropped (so
//! containers, volumes, network and files go even when the test fails).

use super::{Handle, BIN};
use quorumlog::status::ClusterStatus;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Set to `1` to skip the tests that need Docker (they fail, loudly, when it is missing).
pub const SKIP_VAR: &str = "QUORUMLOG_SKIP_DOCKER_TESTS";

/// True when the person running the tests opted out of the Docker tests.
pub fn skipped(test: &str) -> bool {
    if std::env::var(SKIP_VAR).is_ok_and(|v| v == "1") {
        eprintln!("{test}: skipped because {SKIP_VAR}=1");
        return true;
    }
    false
}

/// A cluster managed through `cluster/docker.sh`.
pub struct DockerCluster {
    dir: tempfile::TempDir,
    /// Compose project (container name prefix).
    pub project: String,
    /// First published port: node k's API on base+3(k-1), its ops listener two higher.
    pub base: u16,
    subnet: String,
}

impl DockerCluster {
    /// Settings for a new cluster; nothing is created yet. `subnet_octet` picks the private
    /// /24 (172.28.<octet>.0) so concurrent test clusters do not collide.
    pub fn new(name: &str, subnet_octet: u8) -> DockerCluster {
        DockerCluster {
            dir: tempfile::tempdir().unwrap(),
            project: format!("qltest-{name}-{}", std::process::id()),
            base: super::free_base(9),
            subnet: format!("172.28.{subnet_octet}"),
        }
    }

    /// The script's directory (keys, configs, secrets).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The cluster directory init-cluster wrote (log.pub, policy).
    pub fn cluster_path(&self) -> PathBuf {
        self.dir.path().join("cluster")
    }

    /// A client of the published ports, for the load and the HTTP helpers.
    pub fn handle(&self) -> Handle {
        Handle::at(self.cluster_path(), self.base)
    }

    /// Runs `cluster/docker.sh ARGS` with this cluster's settings and `bin` as the binary;
    /// success and all output.
    pub fn run_with(&self, bin: &Path, args: &[&str]) -> (bool, String) {
        let out = self
            .command(bin)
            .args(args)
            .output()
            .expect("run cluster/docker.sh");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// The script as a command with this cluster's environment.
    pub fn command(&self, bin: &Path) -> Command {
        let mut c = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/cluster/docker.sh"));
        c.env("QUORUMLOG_BIN", bin)
            .env("QUORUMLOG_DOCKER_DIR", self.dir.path())
            .env("QUORUMLOG_DOCKER_PROJECT", &self.project)
            .env("QUORUMLOG_DOCKER_PORT", self.base.to_string())
            .env("QUORUMLOG_DOCKER_SUBNET", &self.subnet);
        c
    }

    /// Runs the script with the test build's binary; panics with its output on failure.
    pub fn run(&self, args: &[&str]) -> String {
        let (ok, text) = self.run_with(Path::new(BIN), args);
        assert!(ok, "cluster/docker.sh {args:?} failed:\n{text}");
        text
    }

    /// `status --json`, parsed.
    pub fn status(&self) -> Result<ClusterStatus, String> {
        let (ok, text) = self.run_with(Path::new(BIN), &["status", "--json"]);
        if !ok {
            return Err(text);
        }
        serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
    }

    /// Container name of service `svc` (n1, witness, ...).
    pub fn container(&self, svc: &str) -> String {
        format!("{}-{svc}", self.project)
    }

    /// Names of this project's containers, volumes and networks that exist now.
    pub fn leftovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (what, args) in [
            ("container", vec!["ps", "-a", "--format", "{{.Names}}"]),
            ("volume", vec!["volume", "ls", "--format", "{{.Name}}"]),
            ("network", vec!["network", "ls", "--format", "{{.Name}}"]),
        ] {
            let o = Command::new("docker").args(&args).output().unwrap();
            for name in String::from_utf8_lossy(&o.stdout).lines() {
                if name.starts_with(&self.project) {
                    out.push(format!("{what} {name}"));
                }
            }
        }
        out
    }
}

impl Drop for DockerCluster {
    fn drop(&mut self) {
        let (ok, text) = self.run_with(Path::new(BIN), &["reset"]);
        if !ok {
            eprintln!("cleanup of {} failed:\n{text}", self.project);
        }
    }
}
