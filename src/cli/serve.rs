//! `serve`: run one node until SIGINT or SIGTERM.

use crate::config::NodeConfig;
use crate::replicated::{
    decode_leaves, encode_result, ApplyOutcome, GroupCommit, LeafState, ProposeError,
};
use anyhow::Context;
use quorumlog_raft::{Node, NodeOptions, ProposeFn, WriteError};
use std::path::Path;
use std::sync::Arc;

/// The admin `Propose` path: decode the batch, then commit it through group commit.
fn propose_fn(gc: GroupCommit) -> ProposeFn {
    Arc::new(move |command| {
        let gc = gc.clone();
        Box::pin(async move {
            let leaves = match decode_leaves(&command) {
                Ok(l) => l,
                Err(e) => return Ok(encode_result(&ApplyOutcome::Invalid(e))),
            };
            match gc.propose(leaves).await {
                Ok(ix) => Ok(encode_result(&ApplyOutcome::Indexes(ix))),
                Err(ProposeError::Invalid(e)) => Ok(encode_result(&ApplyOutcome::Invalid(e))),
                Err(ProposeError::Write(e)) => Err(e),
                Err(ProposeError::Stopped) => Err(WriteError::Stopped("shutting down".into())),
            }
        })
    })
}

/// Runs the node described by `config_path`.
pub async fn serve(config_path: &Path) -> anyhow::Result<()> {
    init_tracing();
    let cfg = NodeConfig::load(config_path)?;
    let tls = cfg.tls_files()?;
    let opts = NodeOptions {
        id: cfg.node.id,
        data_dir: cfg.path(&cfg.node.data_dir),
        raft_addr: cfg.node.raft_addr.clone(),
        tls,
        raft: cfg.raft_config(),
        bootstrap: cfg.node.bootstrap.then(|| cfg.members()),
    };
    let state = Arc::new(LeafState::new());
    let node = Node::start(opts, state.clone())
        .await
        .with_context(|| format!("starting node {}", cfg.node.id))?;
    let gc = GroupCommit::start(node.handle().clone(), cfg.batch_config());
    node.handle().set_proposer(propose_fn(gc));
    tracing::info!(id = cfg.node.id, raft_addr = %cfg.node.raft_addr, "node running");

    wait_for_signal().await?;
    tracing::info!("shutting down");
    node.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
