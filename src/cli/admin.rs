//! `admin`: status, membership and leadership operations over the admin gRPC service,
//! authenticated with the operator certificate (or, for the status alone, a node's).

use crate::config::NodeConfig;
use crate::sigsum::policy::Policy;
use crate::status::{self, ClusterStatus, StatusContext};
use anyhow::{anyhow, Context};
use clap::Subcommand;
use quorumlog_raft::network::client::connect_lazy;
use quorumlog_raft::network::pb::admin_client::AdminClient;
use quorumlog_raft::network::pb::{
    AddNodeRequest, HandoverRequest, NodeStatus, RemoveNodeRequest, StatusRequest,
    TransferLeaderRequest,
};
use quorumlog_raft::network::tls::{install_crypto_provider, TlsFiles};
use quorumlog_raft::network::MAX_MESSAGE_BYTES;
use std::path::Path;
use std::time::Duration;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Admin operations.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Show every member's role, term, commit and applied index, lag, tree and published
    /// sizes, and who holds the key and publishes.
    Status {
        /// Print the typed status as JSON (the structure of the status page's
        /// `/status.json`), for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Add a node: learner first, promoted to voter once it has caught up.
    AddNode {
        /// The new node's id.
        #[arg(long)]
        id: u64,
        /// Its gRPC address (host:port).
        #[arg(long)]
        raft_addr: String,
        /// Its HTTP address (host:port).
        #[arg(long)]
        api_addr: String,
    },
    /// Remove a node from the cluster.
    RemoveNode {
        /// The node's id.
        #[arg(long)]
        id: u64,
    },
    /// Move leadership to another voter (in custody `handoff`, the signing key goes with it).
    TransferLeader {
        /// The node that should lead.
        #[arg(long)]
        to: u64,
    },
    /// Load the log's signing key into the current leader (custody `handoff`), for
    /// instance after the node that held it was lost.
    LoadKey {
        /// The key file (hex seed, as written by init-cluster).
        #[arg(long)]
        key_file: std::path::PathBuf,
        /// Load into this node instead of the current leader.
        #[arg(long)]
        to: Option<u64>,
    },
}

/// An admin client to node `id` at `addr`, authenticated with the given certificates.
pub fn connect_admin(tls: &TlsFiles, id: u64, addr: &str) -> anyhow::Result<AdminClient<Channel>> {
    install_crypto_provider();
    let ch = connect_lazy(tls, id, addr).map_err(|e| anyhow!(e))?;
    Ok(AdminClient::new(ch)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

fn leader_of(s: &Status) -> Option<(u64, String)> {
    let id = s
        .metadata()
        .get("quorumlog-leader-id")?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    let addr = s
        .metadata()
        .get("quorumlog-leader-addr")?
        .to_str()
        .ok()?
        .to_string();
    Some((id, addr))
}

/// Runs `op` against the configured node, and once more against the leader it names if it
/// is not the leader itself.
async fn on_leader<T, F, Fut>(tls: &TlsFiles, cfg: &NodeConfig, op: F) -> anyhow::Result<T>
where
    F: Fn(AdminClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
{
    let client = connect_admin(tls, cfg.node.id, &cfg.node.raft_addr)?;
    match op(client).await {
        Ok(r) => Ok(r.into_inner()),
        Err(s) if s.code() == Code::FailedPrecondition => match leader_of(&s) {
            Some((id, addr)) if id != cfg.node.id => {
                let client = connect_admin(tls, id, &addr)?;
                op(client)
                    .await
                    .map(|r| r.into_inner())
                    .map_err(|s| anyhow!("node {id}: {}", s.message()))
            }
            _ => Err(anyhow!("{}", s.message())),
        },
        Err(s) => Err(anyhow!("node {}: {}", cfg.node.id, s.message())),
    }
}

fn print_status(s: &ClusterStatus) {
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    println!(
        "log {}  leader {}  term {}  publisher {}  published size {}",
        s.log.origin,
        opt(s.leader),
        s.term,
        opt(s.publisher),
        opt(s.published.as_ref().map(|p| p.size))
    );
    println!(
        "{:<4} {:<10} {:>6} {:>10} {:>10} {:>8} {:>10} {:>10}  key  publication",
        "id", "role", "term", "committed", "applied", "lag", "tree_size", "published"
    );
    for m in &s.members {
        match &m.node {
            Some(n) => {
                let app = n.app.as_ref();
                println!(
                    "{:<4} {:<10} {:>6} {:>10} {:>10} {:>8} {:>10} {:>10}  {:<4} {}",
                    m.id,
                    n.role.as_str(),
                    n.term,
                    opt(n.committed_index),
                    opt(n.applied_index),
                    n.lag,
                    opt(app.map(|a| a.tree_size)),
                    opt(app.and_then(|a| a.published.as_ref().map(|p| p.size))),
                    if app.is_some_and(|a| a.key_loaded) {
                        "yes"
                    } else {
                        "no"
                    },
                    app.map_or("-".into(), |a| format!("{:?}", a.publishing).to_lowercase())
                );
            }
            None => println!(
                "{:<4} unreachable: {}",
                m.id,
                m.error.as_deref().unwrap_or("no answer")
            ),
        }
    }
}

/// The cluster's status as the node of `cfg` sees it, with every member asked directly.
async fn cluster_status(cfg: &NodeConfig, tls: &TlsFiles) -> anyhow::Result<ClusterStatus> {
    let witnesses = match &cfg.log.policy_file {
        Some(f) => Policy::load(&cfg.path(f))?.witnesses,
        None => Vec::new(),
    };
    let ctx = StatusContext {
        log_key: cfg.log_public_key(),
        custody: cfg.log.custody,
        witnesses,
    };
    let here = format!("node {} at {}", cfg.node.id, cfg.node.raft_addr);
    let mine = status_of(tls, cfg.node.id, &cfg.node.raft_addr)
        .await
        .map_err(|e| anyhow!("{here}: {e}"))?;
    Ok(status::gather(mine, &ctx, |id, addr| async move {
        status_of(tls, id, &addr).await
    })
    .await)
}

/// One node's status, waiting at most [`CALL_TIMEOUT`] (a paused node accepts the
/// connection and never answers; the gRPC deadline alone is the server's to enforce).
async fn status_of(tls: &TlsFiles, id: u64, addr: &str) -> Result<NodeStatus, String> {
    let mut client = connect_admin(tls, id, addr).map_err(|e| e.to_string())?;
    match tokio::time::timeout(CALL_TIMEOUT, client.status(with_timeout(StatusRequest {}))).await {
        Ok(r) => r
            .map(|r| r.into_inner())
            .map_err(|s| s.message().to_string()),
        Err(_) => Err(format!("no answer within {} s", CALL_TIMEOUT.as_secs())),
    }
}

/// The certificate admin calls present: the operator's if there is one (`--operator`, or
/// the `operator` directory beside the node directories), otherwise the node's own.
fn identity(cfg: &NodeConfig, config: &Path, operator: Option<&Path>) -> anyhow::Result<TlsFiles> {
    let beside = config
        .parent()
        .and_then(Path::parent)
        .map(|cluster| cluster.join("operator"))
        .filter(|d| d.join("operator.pem").exists());
    match operator.map(Path::to_path_buf).or(beside) {
        Some(dir) => Ok(TlsFiles::load(
            &cfg.path(&cfg.tls.ca_cert),
            &dir.join("operator.pem"),
            &dir.join("operator.key"),
        )?),
        None => Ok(cfg.tls_files()?),
    }
}

/// Runs one admin command.
pub async fn admin(
    config: &Path,
    operator: Option<&Path>,
    command: AdminCommand,
) -> anyhow::Result<()> {
    let cfg = NodeConfig::load(config)?;
    let tls = identity(&cfg, config, operator)?;
    match command {
        AdminCommand::Status { json } => {
            let s = cluster_status(&cfg, &tls).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print_status(&s);
            }
        }
        AdminCommand::AddNode {
            id,
            raft_addr,
            api_addr,
        } => {
            let reply = on_leader(&tls, &cfg, |mut c| {
                let req = AddNodeRequest {
                    id,
                    raft_addr: raft_addr.clone(),
                    api_addr: api_addr.clone(),
                };
                async move { c.add_node(req).await }
            })
            .await?;
            println!("{}", reply.message);
        }
        AdminCommand::RemoveNode { id } => {
            let reply = on_leader(&tls, &cfg, |mut c| async move {
                c.remove_node(RemoveNodeRequest { id }).await
            })
            .await?;
            println!("{}", reply.message);
        }
        AdminCommand::TransferLeader { to } => {
            let reply = on_leader(&tls, &cfg, |mut c| async move {
                c.transfer_leader(TransferLeaderRequest { to }).await
            })
            .await?;
            println!("{}", reply.message);
        }
        AdminCommand::LoadKey { key_file, to } => {
            let signer = crate::publish::signer::LogSigner::load(&key_file, &cfg.log_public_key())?;
            let mut me = connect_admin(&tls, cfg.node.id, &cfg.node.raft_addr)?;
            let view = me
                .status(with_timeout(StatusRequest {}))
                .await
                .with_context(|| format!("node {} at {}", cfg.node.id, cfg.node.raft_addr))?
                .into_inner();
            let target = match to.or(view.leader) {
                Some(t) => t,
                None => {
                    anyhow::bail!("no leader is known; retry when one is elected, or pass --to")
                }
            };
            let member = view
                .members
                .iter()
                .find(|m| m.id == target)
                .ok_or_else(|| anyhow!("node {target} is not a member"))?;
            let reply = connect_admin(&tls, target, &member.raft_addr)?
                .handover(with_timeout(HandoverRequest {
                    payload: signer.seed().to_vec(),
                    from: 0,
                    to: target,
                }))
                .await
                .map_err(|s| anyhow!("node {target}: {}", s.message()))?;
            println!("node {target}: {}", reply.into_inner().message);
        }
    }
    Ok(())
}

/// Deadline of a status call.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

fn with_timeout<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(CALL_TIMEOUT);
    r
}
