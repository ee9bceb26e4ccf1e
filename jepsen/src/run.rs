//! One test: a fresh cluster, the workload, the nemesis schedule, a recovery period, the
//! final state read back from every node, the checkers, and the stored run.

use crate::check::{
    check_all, head_log_size, CheckConfig, DirectoryConfig, DirectoryFinal, FinalState, NodeFinal,
    Results,
};
use crate::client::{parse_leaves, parse_tree_head, Api};
use crate::cluster::hex32;
use crate::cluster::{Cluster, ClusterSpec, NODES};
use crate::directory::parse_heads;
use crate::history::{to_jsonl, Recorder};
use crate::nemesis::{Nemesis, Plan};
use crate::report::render_html;
use crate::workload::{Workload, WorkloadSpec};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The cluster's publication settings (cluster/docker.sh keeps init-cluster's defaults).
const PUBLISH_INTERVAL: Duration = Duration::from_secs(3);
const WITNESS_TIMEOUT: Duration = Duration::from_secs(3);
/// The directory's `[kt] epoch_interval_ms` (init-cluster's default).
const EPOCH_INTERVAL: Duration = Duration::from_secs(1);
/// Writers go on this long after the last heal, so recovery is measured under load.
const RECOVERY: Duration = Duration::from_secs(10);
/// Longest the final reads wait for every node to serve a head of the whole tree.
const CONVERGE: Duration = Duration::from_secs(30);

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct TestSpec {
    /// `--nemesis`.
    pub(crate) nemesis: String,
    /// How long faults are injected.
    pub(crate) time_limit: Duration,
    pub(crate) workload: WorkloadSpec,
    /// Where runs are stored.
    pub(crate) store: PathBuf,
    /// Repository and binary for the cluster.
    pub(crate) repo: PathBuf,
    pub(crate) bin: PathBuf,
}

/// Runs one test; the directory it was stored in and the checkers' results.
pub(crate) async fn run_test(spec: &TestSpec, slot: u16) -> anyhow::Result<(PathBuf, Results)> {
    let plan = Plan::parse(&spec.nemesis)?;
    let name = spec.nemesis.replace(',', "+");
    let stamp = unix_now();
    let dir = spec
        .store
        .join(&name)
        .join(format!("{stamp}-seed{}", spec.workload.seed));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    eprintln!(
        "jepsen: {name}: starting a fresh cluster (run stored in {})",
        dir.display()
    );

    let cluster_spec = ClusterSpec {
        repo: spec.repo.clone(),
        bin: spec.bin.clone(),
        custody: if plan.transfers_only() {
            "handoff"
        } else {
            "file"
        }
        .into(),
        slot,
        power_fs: plan.needs_power_fs(),
    };
    let cluster = Arc::new(tokio::task::spawn_blocking(move || Cluster::up(cluster_spec)).await??);
    let result = drive(spec, &plan, cluster.clone(), &dir).await;
    cluster.save_logs(&dir);
    // Reset the cluster (in Drop) off the async threads.
    tokio::task::spawn_blocking(move || drop(cluster)).await?;
    let results = result?;
    Ok((dir, results))
}

async fn drive(
    spec: &TestSpec,
    plan: &Plan,
    cluster: Arc<Cluster>,
    dir: &Path,
) -> anyhow::Result<Results> {
    let rec = Arc::new(Recorder::new());
    let addrs: Vec<String> = (1..=NODES).map(|k| cluster.api_addr(k)).collect();
    let mut workload = Workload::start(&spec.workload, addrs.clone(), rec.clone());

    let until = Instant::now() + spec.time_limit;
    let mut nemesis = Nemesis::new(cluster.clone(), rec.clone(), spec.workload.seed);
    let plan = plan.clone();
    tokio::task::spawn_blocking(move || nemesis.run(&plan, until)).await?;
    tokio::time::sleep(RECOVERY).await;
    workload.stop_writers().await;

    // The readers watch every node converge on a head of the whole tree: one cosigned in
    // a publication round that began after the last write was acknowledged (a round that
    // began earlier gets its cosignature at most one witness timeout later).
    // With a directory, its last epoch closes up to one epoch interval after the last
    // update, and its head must be in the converged tree head too.
    let epoch_wait = if spec.workload.directory {
        EPOCH_INTERVAL.as_secs() + 1
    } else {
        0
    };
    let after = unix_now() + WITNESS_TIMEOUT.as_secs() + 1 + epoch_wait;
    let api = Api::new(Duration::from_secs(5));
    let deadline = Instant::now() + CONVERGE;
    while Instant::now() < deadline && !converged(&api, &addrs, after).await {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    workload.stop_readers().await;

    let mut final_state = FinalState::default();
    for k in 1..=NODES {
        let node = read_final(&api, &addrs[(k - 1) as usize]).await;
        let node = NodeFinal {
            head_time_ns: Some(rec.now_ns()),
            ..node
        };
        final_state.nodes.insert(k, node);
    }
    let mut config = CheckConfig::new(cluster.log_key()?, NODES);
    if spec.workload.directory {
        config.directory = Some(directory_config(&api, &addrs).await?);
        let log_key = hex::encode(cluster.log_key()?);
        for k in 1..=NODES {
            let d = read_directory(&api, &addrs[(k - 1) as usize], &spec.bin, &log_key).await;
            final_state.directory.insert(k, d);
        }
    }
    let history = rec.snapshot();

    let (wname, wkey) = cluster.witness_key()?;
    config.witness_keys.insert(wname, wkey);
    config.publish_interval = PUBLISH_INTERVAL;
    config.witness_timeout = WITNESS_TIMEOUT;
    let results = check_all(&history, &final_state, &config);

    std::fs::write(dir.join("history.jsonl"), to_jsonl(&history))?;
    std::fs::write(dir.join("final.json"), serde_json::to_string(&final_state)?)?;
    std::fs::write(
        dir.join("check-config.json"),
        serde_json::to_string_pretty(&config)?,
    )?;
    let results_json = serde_json::to_value(&results)?;
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&results_json)?,
    )?;
    let title = format!("Quorumlog under {}", spec.nemesis);
    std::fs::write(
        dir.join("report.html"),
        render_html(&title, &history, &results_json),
    )?;
    Ok(results)
}

/// Every node answers the same head, cosigned at or after `after` (Unix seconds).
async fn converged(api: &Api, addrs: &[String], after: u64) -> bool {
    let mut heads = Vec::new();
    for a in addrs {
        match api.get(a, "get-tree-head").await {
            Ok((200, body)) => heads.push(parse_tree_head(&body)),
            _ => return false,
        }
    }
    let fresh = heads[0]
        .as_ref()
        .is_some_and(|h| h.cosignatures.iter().any(|c| c.timestamp >= after));
    fresh && heads.iter().all(|h| *h == heads[0])
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A node's served head and its leaves up to that head (empty if it does not answer).
async fn read_final(api: &Api, addr: &str) -> NodeFinal {
    let head = match api.get(addr, "get-tree-head").await {
        Ok((200, body)) => parse_tree_head(&body),
        _ => None,
    };
    let mut leaves = Vec::new();
    let size = head.as_ref().map_or(0, |h| h.size);
    while (leaves.len() as u64) < size {
        let start = leaves.len() as u64;
        let end = (start + 512).min(size);
        let got = match api.get(addr, &format!("get-leaves/{start}/{end}")).await {
            Ok((200, body)) => parse_leaves(&body).unwrap_or_default(),
            _ => Vec::new(),
        };
        if got.is_empty() {
            break;
        }
        leaves.extend(got);
    }
    NodeFinal {
        leaves,
        head,
        head_time_ns: None,
    }
}

/// The directory's map id and key, from the first node that answers.
async fn directory_config(api: &Api, addrs: &[String]) -> anyhow::Result<DirectoryConfig> {
    for a in addrs {
        if let Ok((200, body)) = api.get(a, "kt/v1/parameters").await {
            let v: serde_json::Value = serde_json::from_str(&body)?;
            let key = v
                .get("directory_key")
                .and_then(|k| k.as_str())
                .and_then(hex32)
                .context("parameters without a directory key")?;
            return Ok(DirectoryConfig {
                map_id: v
                    .get("map_id")
                    .and_then(|m| m.as_u64())
                    .context("no map id")?,
                directory_key: key,
            });
        }
    }
    anyhow::bail!("no node served the directory's parameters")
}

/// A node's signed map heads, its log of mutations up to the newest, and what
/// `quorumlog kt monitor` says of it.
async fn read_directory(api: &Api, addr: &str, bin: &Path, log_key: &str) -> DirectoryFinal {
    let mut heads = Vec::new();
    loop {
        let start = heads.len() as u64 + 1;
        let path = format!("kt/v1/heads?start={start}&end={}", start + 256);
        let Ok((200, body)) = api.get(addr, &path).await else {
            break;
        };
        let Some((got, latest)) = parse_heads(&body) else {
            break;
        };
        let n = got.len() as u64;
        heads.extend(got);
        if n == 0 || start + n > latest {
            break;
        }
    }
    let log_size = heads
        .last()
        .and_then(|h| head_log_size(&h.signed_head))
        .unwrap_or(0);
    let mut records = Vec::new();
    while (records.len() as u64) < log_size {
        let start = records.len() as u64;
        let path = format!(
            "kt/v1/records?start={start}&end={}",
            log_size.min(start + 512)
        );
        let got: Vec<String> = match api.get(addr, &path).await {
            Ok((200, body)) => serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    v.get("records")?
                        .as_array()?
                        .iter()
                        .map(|r| r.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        if got.is_empty() {
            break;
        }
        records.extend(got);
    }
    let monitor = tokio::process::Command::new(bin)
        .args([
            "kt",
            "--url",
            &format!("http://{addr}"),
            "--log-key",
            log_key,
            "monitor",
        ])
        .output()
        .await;
    let (monitor_verified, monitor_output) = match monitor {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (false, format!("could not run {}: {e}", bin.display())),
    };
    DirectoryFinal {
        heads,
        records,
        monitor_verified,
        monitor_output,
    }
}

/// A one-screen summary of a run.
pub(crate) fn summary(name: &str, dir: &Path, results: &Results) -> String {
    let mut out = format!(
        "{name}: {}\n",
        if results.valid { "valid" } else { "INVALID" }
    );
    for c in &results.checks {
        out.push_str(&format!(
            "  {:<28} {:<8} {}\n",
            c.name,
            if c.valid { "ok" } else { "INVALID" },
            c.summary
        ));
        for a in c.anomalies.iter().take(3) {
            out.push_str(&format!("      {a}\n"));
        }
    }
    out.push_str(&format!(
        "  report: {}\n",
        dir.join("report.html").display()
    ));
    out
}

/// Checks a stored run again (after a checker changed): rewrites its `results.json` and
/// `report.html` from `history.jsonl`, `final.json` and `check-config.json`.
pub(crate) fn recheck(dir: &Path) -> anyhow::Result<Results> {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .map_err(|e| anyhow::anyhow!("read {}/{name}: {e}", dir.display()))
    };
    let history =
        crate::history::parse_jsonl(&read("history.jsonl")?).map_err(anyhow::Error::msg)?;
    let final_state: FinalState = serde_json::from_str(&read("final.json")?)?;
    let config: CheckConfig = serde_json::from_str(&read("check-config.json")?)?;
    let results = check_all(&history, &final_state, &config);
    let results_json = serde_json::to_value(&results)?;
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&results_json)?,
    )?;
    let title = format!("Quorumlog run {}", dir.display());
    std::fs::write(
        dir.join("report.html"),
        render_html(&title, &history, &results_json),
    )?;
    Ok(results)
}
