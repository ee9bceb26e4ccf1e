//! The README's cluster script (`cluster/run.sh`) driven from tests: a cluster of its own
//! in a temporary directory on free ports, stopped when dropped.

use super::BIN;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A cluster started and stopped through `cluster/run.sh`.
pub struct ScriptCluster {
    dir: tempfile::TempDir,
    /// First port: node k uses base+3(k-1) .. +2; the witness uses base+9.
    pub base: u16,
}

impl ScriptCluster {
    /// A cluster directory and ten free ports; nothing started yet.
    pub fn new() -> ScriptCluster {
        ScriptCluster {
            dir: tempfile::tempdir().unwrap(),
            base: super::free_base(10),
        }
    }

    /// The script's cluster directory (holds `cluster/` and `run/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The directory `init-cluster` wrote (configs, keys, policy).
    pub fn cluster_path(&self) -> PathBuf {
        self.dir.path().join("cluster")
    }

    /// Runs `cluster/run.sh <cmd>` with this cluster's settings; success and all output.
    pub fn run(&self, cmd: &str) -> (bool, String) {
        run_script(self.dir.path(), self.base, cmd)
    }
}

/// Runs the script for the cluster in `dir` on ports from `base` (usable from a blocking
/// task, where the `ScriptCluster` cannot be borrowed).
pub fn run_script(dir: &Path, base: u16, cmd: &str) -> (bool, String) {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/cluster/run.sh"))
        .arg(cmd)
        .env("QUORUMLOG_BIN", BIN)
        .env("QUORUMLOG_CLUSTER_DIR", dir)
        .env("QUORUMLOG_BASE_PORT", base.to_string())
        .env("QUORUMLOG_WITNESS_PORT", (base + 9).to_string())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

impl Drop for ScriptCluster {
    fn drop(&mut self) {
        self.run("stop");
    }
}
