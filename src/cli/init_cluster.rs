//! `init-cluster` and `new-node`: certificates, keys and configuration files.

use crate::config::{
    BatchSection, LogSection, MemberSection, NodeConfig, NodeSection, RaftSection, TlsSection,
};
use crate::sigsum::crypto::PublicKey;
use anyhow::{bail, Context};
use ed25519_dalek::SigningKey;
use quorumlog_raft::pki::{self, CaFiles};
use std::path::{Path, PathBuf};

fn addrs(host: &str, base_port: u16, id: u64) -> anyhow::Result<(String, String)> {
    let api = u64::from(base_port) + 2 * (id - 1);
    if api + 1 > u64::from(u16::MAX) {
        bail!("ports for node {id} exceed 65535; choose a lower --base-port");
    }
    Ok((format!("{host}:{api}"), format!("{host}:{}", api + 1)))
}

fn node_config(
    id: u64,
    host: &str,
    base_port: u16,
    public_key: &str,
    bootstrap: bool,
    members: Vec<MemberSection>,
) -> anyhow::Result<NodeConfig> {
    let (api_addr, raft_addr) = addrs(host, base_port, id)?;
    Ok(NodeConfig {
        node: NodeSection {
            id,
            data_dir: PathBuf::from("data"),
            raft_addr,
            api_addr,
            bootstrap,
        },
        tls: TlsSection {
            ca_cert: PathBuf::from("../ca.pem"),
            cert: PathBuf::from("node.pem"),
            key: PathBuf::from("node.key"),
        },
        log: LogSection {
            public_key: public_key.to_string(),
            key_file: Some(PathBuf::from("../log.key")),
        },
        members,
        batch: BatchSection::default(),
        raft: RaftSection::default(),
        base_dir: PathBuf::new(),
    })
}

fn write_node(dir: &Path, ca: &CaFiles, config: &NodeConfig) -> anyhow::Result<PathBuf> {
    let id = config.node.id;
    let node_dir = dir.join(format!("node{id}"));
    std::fs::create_dir(&node_dir).with_context(|| format!("create {}", node_dir.display()))?;
    let files = pki::new_node(ca, id)?;
    pki::write_public(&node_dir.join("node.pem"), files.cert_pem.as_bytes())?;
    pki::write_secret(&node_dir.join("node.key"), files.key_pem.as_bytes())?;
    let path = node_dir.join("config.toml");
    let text = format!(
        "# Quorumlog node {id}. Relative paths are relative to this file.\n{}",
        toml::to_string(config)?
    );
    pki::write_public(&path, text.as_bytes())?;
    Ok(path)
}

/// Creates a cluster of `nodes` nodes in `dir`.
pub fn init_cluster(nodes: u64, dir: &Path, host: &str, base_port: u16) -> anyhow::Result<()> {
    if nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    // Check everything before writing anything, so a refused command leaves no files.
    let mut members = Vec::new();
    for id in 1..=nodes {
        let (api_addr, raft_addr) = addrs(host, base_port, id)?;
        members.push(MemberSection {
            id,
            raft_addr,
            api_addr,
        });
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    if dir.join("ca.pem").exists() {
        bail!("{} already holds a cluster (ca.pem exists)", dir.display());
    }
    let ca = pki::new_ca()?;
    pki::write_public(&dir.join("ca.pem"), ca.cert_pem.as_bytes())?;
    pki::write_secret(&dir.join("ca.key"), ca.key_pem.as_bytes())?;

    let log_key = SigningKey::generate(&mut rand_core::OsRng);
    let public = PublicKey(log_key.verifying_key().to_bytes());
    let public_hex = hex::encode(public.0);
    pki::write_secret(
        &dir.join("log.key"),
        format!("{}\n", hex::encode(log_key.to_bytes())).as_bytes(),
    )?;
    pki::write_public(&dir.join("log.pub"), format!("{public_hex}\n").as_bytes())?;

    let mut configs = Vec::new();
    for id in 1..=nodes {
        // Exactly one node initialises the cluster, and only while it has no Raft state.
        let cfg = node_config(id, host, base_port, &public_hex, id == 1, members.clone())?;
        configs.push(write_node(dir, &ca, &cfg)?);
    }
    let policy = format!(
        "# Sigsum policy for this log (sigsum-submit -p). No witnesses are configured yet.\nlog {public_hex} http://{}\nquorum none\n",
        members[0].api_addr
    );
    pki::write_public(&dir.join("policy"), policy.as_bytes())?;

    println!("cluster of {nodes} nodes written to {}", dir.display());
    println!("log public key: {public_hex}");
    println!("policy: {}", dir.join("policy").display());
    for c in configs {
        println!("node config: {}", c.display());
    }
    Ok(())
}

/// Creates the files of node `id` for the existing cluster in `dir`.
pub fn new_node(dir: &Path, id: u64, host: &str, base_port: u16) -> anyhow::Result<()> {
    if id == 0 {
        bail!("--id must be at least 1");
    }
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .with_context(|| format!("read {}", dir.join(name).display()))
    };
    let ca = CaFiles {
        cert_pem: read("ca.pem")?,
        key_pem: read("ca.key")?,
    };
    let public_hex = read("log.pub")?.trim().to_string();
    let cfg = node_config(id, host, base_port, &public_hex, false, Vec::new())?;
    let path = write_node(dir, &ca, &cfg)?;
    println!("node {id} config: {}", path.display());
    println!(
        "start it with `quorumlog serve --config {}`, then add it with\n`quorumlog admin --config <a member's config> add-node --id {id} --raft-addr {} --api-addr {}`",
        path.display(),
        cfg.node.raft_addr,
        cfg.node.api_addr
    );
    Ok(())
}
