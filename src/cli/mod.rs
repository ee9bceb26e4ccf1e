//! Command-line interface. Errors are reported with `anyhow` at this edge only.

mod admin;
mod init_cluster;
mod serve;

pub use admin::{connect_admin, AdminCommand};

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Quorumlog: a Raft-replicated Sigsum v1 transparency log.
#[derive(Debug, Parser)]
#[command(name = "quorumlog", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a new cluster: CA, node certificates, log key, one config per node, policy.
    InitCluster {
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        /// Directory to create the cluster in (must not contain a cluster already).
        #[arg(long)]
        dir: PathBuf,
        /// Host the nodes listen on and advertise.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// First port: node k gets HTTP on base+2(k-1) and gRPC on base+2(k-1)+1.
        #[arg(long, default_value_t = 7000)]
        base_port: u16,
    },
    /// Write the certificate and config of one more node for an existing cluster directory.
    NewNode {
        /// The cluster directory made by init-cluster (holds ca.pem and ca.key).
        #[arg(long)]
        dir: PathBuf,
        /// Id of the new node (never reuse an id).
        #[arg(long)]
        id: u64,
        /// Host the node listens on and advertises.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Same meaning as for init-cluster.
        #[arg(long, default_value_t = 7000)]
        base_port: u16,
    },
    /// Run one node.
    Serve {
        /// The node's config.toml.
        #[arg(long)]
        config: PathBuf,
    },
    /// Operate a running cluster through the node of the given config.
    Admin {
        /// A node's config.toml (its certificate authenticates the call).
        #[arg(long)]
        config: PathBuf,
        #[command(subcommand)]
        command: AdminCommand,
    },
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::InitCluster {
            nodes,
            dir,
            host,
            base_port,
        } => init_cluster::init_cluster(nodes, &dir, &host, base_port),
        Command::NewNode {
            dir,
            id,
            host,
            base_port,
        } => init_cluster::new_node(&dir, id, &host, base_port),
        Command::Serve { config } => runtime()?.block_on(serve::serve(&config)),
        Command::Admin { config, command } => runtime()?.block_on(admin::admin(&config, command)),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
