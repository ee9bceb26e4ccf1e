//! Command-line interface. Errors are reported with `anyhow` at this edge only.

mod admin;
mod init_cluster;
mod kt;
mod serve;

pub use admin::{connect_admin, AdminCommand};

use crate::publish::custody::Custody;
use clap::{Parser, Subcommand, ValueEnum};
use init_cluster::{Hosts, Layout};

/// `--custody` on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum CustodyArg {
    File,
    Handoff,
}

impl From<CustodyArg> for Custody {
    fn from(c: CustodyArg) -> Custody {
        match c {
            CustodyArg::File => Custody::File,
            CustodyArg::Handoff => Custody::Handoff,
        }
    }
}
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
        #[arg(long, default_value = "127.0.0.1", conflicts_with = "hosts")]
        host: String,
        /// One host name per node, comma-separated (for containers: n1,n2,n3). Each node
        /// then listens on --base-port and the next two ports of its own host, and its
        /// certificate names its host too.
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<String>,
        /// First port: node k gets its public API on base+3(k-1), gRPC on the next port
        /// and the ops listener (metrics, health) on the one after (with --hosts: every
        /// node uses base, base+1 and base+2).
        #[arg(long, default_value_t = 7000)]
        base_port: u16,
        /// Absolute data directory for every node's config (default: `data` beside it).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The log's URL in the policy, as clients reach it (default: node 1's API).
        #[arg(long)]
        log_url: Option<String>,
        /// A witness for the policy, as NAME:PUBKEYHEX:URL (repeatable). The policy's
        /// quorum is a majority of the witnesses.
        #[arg(long = "witness")]
        witnesses: Vec<init_cluster::WitnessArg>,
        /// Key custody: `file` (every node has the key file; automatic failover publishes)
        /// or `handoff` (only node 1 starts with the key; transfers hand it over).
        #[arg(long, value_enum, default_value = "file")]
        custody: CustodyArg,
        /// Also run a Key Transparency directory (docs/kt.md): writes `[kt]` with the
        /// directory's public keys (derived from the log key) into every node's config.
        #[arg(long)]
        kt: bool,
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
        /// The node has --host to itself (a container): it listens on --base-port and the
        /// next two ports instead of the slot its id gives on a shared host.
        #[arg(long)]
        own_host: bool,
        /// Same meaning as for init-cluster.
        #[arg(long, default_value_t = 7000)]
        base_port: u16,
        /// Same meaning as for init-cluster.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The cluster's key custody (as given to init-cluster).
        #[arg(long, value_enum, default_value = "file")]
        custody: CustodyArg,
    },
    /// Issue a new certificate and key for a node (`--node ID`) or for the operator (no
    /// `--node`), replacing the old files; a node uses its new certificate once restarted.
    RenewCert {
        /// The cluster directory made by init-cluster (holds ca.pem and ca.key).
        #[arg(long)]
        dir: PathBuf,
        /// The node whose certificate to renew; without it, the operator's.
        #[arg(long)]
        node: Option<u64>,
        /// The node's host name or address, if its certificate should name one (default:
        /// the host of the `raft_addr` in its config).
        #[arg(long)]
        host: Option<String>,
    },
    /// Revoke a certificate: add it to the cluster's revocation list (`crl.pem`), which
    /// every node refuses on every call once it has read the new file. Revoke a removed
    /// node's certificate before its id is used again, and a certificate whose key is lost.
    RevokeCert {
        /// The cluster directory made by init-cluster (holds ca.pem, ca.key and crl.pem).
        #[arg(long)]
        dir: PathBuf,
        /// The node whose current certificate to revoke.
        #[arg(long, conflicts_with = "cert")]
        node: Option<u64>,
        /// A certificate file to revoke (an operator's, or one already replaced).
        #[arg(long)]
        cert: Option<PathBuf>,
    },
    /// Run a one-node log for a first try. The first run writes keys, certificates and an
    /// embedded default configuration into DIR; later runs reuse them.
    Dev {
        /// Where the node's files and data live.
        #[arg(long, default_value = "quorumlog-data")]
        dir: PathBuf,
        /// Port of the public API (gRPC and ops take the next two).
        #[arg(long, default_value_t = 6965)]
        port: u16,
    },
    /// Run one node.
    Serve {
        /// The node's config.toml.
        #[arg(long)]
        config: PathBuf,
    },
    /// Operate a running cluster through the node of the given config.
    Admin {
        /// A node's config.toml: where to connect first, the cluster CA, the log's key.
        #[arg(long)]
        config: PathBuf,
        /// Directory with the operator certificate (operator.pem, operator.key), which
        /// membership changes, leadership transfers and load-key need. Default: the
        /// `operator` directory of the cluster directory the config is in, if there is
        /// one; otherwise the node's own certificate, which may only read the status.
        #[arg(long)]
        operator: Option<PathBuf>,
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// A Key Transparency directory client (docs/kt.md): update, verified lookups, monitor.
    Kt {
        /// The directory's URL (any node's public API).
        #[arg(long, default_value = "http://127.0.0.1:7000")]
        url: String,
        /// The Sigsum log's URL for tree-head proofs (default: --url).
        #[arg(long)]
        log_url: Option<String>,
        /// The log's public key: hex, or a file holding it (init-cluster writes log.pub).
        #[arg(long)]
        log_key: Option<String>,
        /// A Sigsum policy the log's tree heads must satisfy (witness cosignatures).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Where to keep the last verified tree head, to check the next one is consistent.
        #[arg(long)]
        state: Option<PathBuf>,
        #[command(subcommand)]
        command: kt::KtCommand,
    },
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::InitCluster {
            nodes,
            dir,
            host,
            hosts,
            base_port,
            data_dir,
            log_url,
            witnesses,
            custody,
            kt,
        } => {
            let layout = Layout {
                hosts: if hosts.is_empty() {
                    Hosts::Shared(host)
                } else {
                    Hosts::PerNode(hosts)
                },
                base_port,
                data_dir,
            };
            let url = log_url.as_deref();
            init_cluster::init_cluster(nodes, &dir, &layout, url, &witnesses, custody.into(), kt)
        }
        Command::NewNode {
            dir,
            id,
            host,
            own_host,
            base_port,
            data_dir,
            custody,
        } => {
            let layout = Layout {
                hosts: if own_host {
                    Hosts::Own(host)
                } else {
                    Hosts::Shared(host)
                },
                base_port,
                data_dir,
            };
            init_cluster::new_node(&dir, id, &layout, custody.into())
        }
        Command::Dev { dir, port } => {
            let config = dir.join("node1/config.toml");
            if !config.exists() {
                let layout = Layout {
                    hosts: Hosts::Shared("127.0.0.1".into()),
                    base_port: port,
                    data_dir: None,
                };
                init_cluster::init_cluster(1, &dir, &layout, None, &[], Custody::File, true)?;
            }
            println!(
                "dev log: public API http://127.0.0.1:{port}, metrics http://127.0.0.1:{}/metrics, policy {}",
                u32::from(port) + 2,
                dir.join("policy").display()
            );
            runtime()?.block_on(serve::serve(&config))
        }
        Command::Serve { config } => runtime()?.block_on(serve::serve(&config)),
        Command::Admin {
            config,
            operator,
            command,
        } => runtime()?.block_on(admin::admin(&config, operator.as_deref(), command)),
        Command::RenewCert { dir, node, host } => init_cluster::renew_cert(&dir, node, host),
        Command::RevokeCert { dir, node, cert } => {
            init_cluster::revoke_cert(&dir, node, cert.as_deref())
        }
        Command::Kt {
            command: kt::KtCommand::Keygen { out },
            ..
        } => kt::keygen(&out),
        Command::Kt {
            url,
            log_url,
            log_key,
            policy,
            state,
            command,
        } => runtime()?.block_on(async {
            let log_key = log_key.ok_or_else(|| {
                anyhow::anyhow!("--log-key is required: the client trusts the log it names")
            })?;
            let client =
                kt::Client::connect(&url, log_url.as_deref(), &log_key, policy.as_deref(), state)
                    .await?;
            kt::run(client, command).await
        }),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
