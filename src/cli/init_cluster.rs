//! `init-cluster` and `new-node`: certificates, keys and configuration files.

use crate::config::{
    ApiSection, BatchSection, KtSection, LogSection, MemberSection, NodeConfig, NodeSection,
    PublishSection, RaftSection, RateLimitSection, TlsSection,
};
use crate::publish::custody::Custody;
use crate::publish::signer::LogSigner;
use crate::sigsum::crypto::PublicKey;
use anyhow::{bail, Context};
use quorumlog_raft::pki::{self, CaFiles};
use std::path::{Path, PathBuf};

/// Ports each node takes: public HTTP, gRPC, ops HTTP.
pub const PORTS_PER_NODE: u64 = 3;

/// Which hosts nodes run on.
#[derive(Debug, Clone)]
pub enum Hosts {
    /// All nodes on one host: node k listens on base+3(k-1) and the next two ports.
    Shared(String),
    /// One host per node, in id order (container names): each node listens on the same
    /// three ports from the base port on its own host.
    PerNode(Vec<String>),
    /// One node alone on its host, with the three ports from the base port (`new-node`).
    Own(String),
}

/// Where nodes listen and keep their data.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Hosts.
    pub hosts: Hosts,
    /// First port.
    pub base_port: u16,
    /// Data directory written into each config (default `data` beside the config).
    pub data_dir: Option<PathBuf>,
}

impl Layout {
    /// The host node `id` runs on.
    fn host(&self, id: u64) -> anyhow::Result<&str> {
        match &self.hosts {
            Hosts::Shared(h) | Hosts::Own(h) => Ok(h),
            Hosts::PerNode(hosts) => usize::try_from(id - 1)
                .ok()
                .and_then(|i| hosts.get(i))
                .map(String::as_str)
                .ok_or_else(|| anyhow::anyhow!("no host given for node {id}")),
        }
    }

    /// The public API, gRPC and ops addresses of node `id`.
    fn addrs(&self, id: u64) -> anyhow::Result<(String, String, String)> {
        let host = self.host(id)?;
        let slot = match self.hosts {
            Hosts::Shared(_) => id - 1,
            _ => 0,
        };
        let api = u64::from(self.base_port) + PORTS_PER_NODE * slot;
        if api + 2 > u64::from(u16::MAX) {
            bail!("ports for node {id} exceed 65535; choose a lower --base-port");
        }
        Ok((
            format!("{host}:{api}"),
            format!("{host}:{}", api + 1),
            format!("{host}:{}", api + 2),
        ))
    }

    fn check(&self) -> anyhow::Result<()> {
        let bad = match &self.hosts {
            Hosts::Shared(h) | Hosts::Own(h) => (!valid_host(h)).then_some(h),
            Hosts::PerNode(hs) => hs.iter().find(|h| !valid_host(h)),
        };
        if let Some(h) = bad {
            bail!("bad host name {h:?}: expected a host name or IP address");
        }
        let all = match &self.hosts {
            Hosts::Shared(h) | Hosts::Own(h) => std::slice::from_ref(h),
            Hosts::PerNode(hs) => hs.as_slice(),
        };
        if let Some(h) = all.iter().find(|h| reserved_host(h)) {
            bail!("host name {h:?} is reserved: names under .quorumlog belong to roles");
        }
        if let Some(d) = self.data_dir.as_ref().filter(|d| !d.is_absolute()) {
            bail!("--data-dir {} must be an absolute path", d.display());
        }
        Ok(())
    }
}

/// A witness for the policy, given as `NAME:PUBKEYHEX:URL`.
#[derive(Debug, Clone)]
pub struct WitnessArg {
    name: String,
    public_key: String,
    url: String,
}

impl std::str::FromStr for WitnessArg {
    type Err = String;
    fn from_str(s: &str) -> Result<WitnessArg, String> {
        let mut parts = s.splitn(3, ':');
        let (Some(name), Some(key), Some(url)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("expected NAME:PUBKEYHEX:URL".into());
        };
        let mut k = [0u8; 32];
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(format!("bad witness name {name:?}"));
        }
        hex::decode_to_slice(key, &mut k)
            .map_err(|_| format!("witness key {key:?} is not 64 hex characters"))?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "witness URL {url:?} must start with http:// or https://"
            ));
        }
        Ok(WitnessArg {
            name: name.into(),
            public_key: key.to_lowercase(),
            url: url.into(),
        })
    }
}

/// The Sigsum policy of a new cluster: the log, its witnesses and a majority quorum.
fn policy_text(log_key: &str, log_url: &str, witnesses: &[WitnessArg]) -> String {
    let mut p =
        String::from("# Sigsum policy for this log (sigsum-submit -p, sigsum-verify -p).\n");
    p += &format!("log {log_key} {log_url}\n");
    for w in witnesses {
        p += &format!("witness {} {} {}\n", w.name, w.public_key, w.url);
    }
    match witnesses {
        [] => p += "quorum none\n",
        [w] => p += &format!("quorum {}\n", w.name),
        ws => {
            let names: Vec<&str> = ws.iter().map(|w| w.name.as_str()).collect();
            p += &format!(
                "group witnesses {} {}\nquorum witnesses\n",
                ws.len() / 2 + 1,
                names.join(" ")
            );
        }
    }
    p
}

fn node_config(
    id: u64,
    layout: &Layout,
    public_key: &str,
    bootstrap: bool,
    members: Vec<MemberSection>,
    custody: Custody,
    kt: Option<KtSection>,
) -> anyhow::Result<NodeConfig> {
    // In custody `handoff` only the bootstrapping node starts with the key; the others get
    // it in a transfer or from `admin load-key`.
    let key_file = (custody == Custody::File || bootstrap).then(|| PathBuf::from("../log.key"));
    let (api_addr, raft_addr, ops_addr) = layout.addrs(id)?;
    Ok(NodeConfig {
        node: NodeSection {
            id,
            data_dir: layout
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("data")),
            raft_addr,
            api_addr,
            ops_addr: Some(ops_addr),
            bootstrap,
        },
        tls: TlsSection {
            ca_cert: PathBuf::from("../ca.pem"),
            cert: PathBuf::from("node.pem"),
            key: PathBuf::from("node.key"),
            crl: Some(PathBuf::from(format!("../{CRL}"))),
        },
        log: LogSection {
            public_key: public_key.to_string(),
            key_file,
            policy_file: Some(PathBuf::from("../policy")),
            custody,
            delete_key_file: false,
        },
        members,
        batch: BatchSection::default(),
        raft: RaftSection::default(),
        publish: PublishSection::default(),
        api: ApiSection::default(),
        rate_limit: RateLimitSection::default(),
        kt,
        base_dir: PathBuf::new(),
    })
}

fn write_node(
    dir: &Path,
    ca: &CaFiles,
    config: &NodeConfig,
    host: &str,
) -> anyhow::Result<PathBuf> {
    let id = config.node.id;
    let node_dir = dir.join(format!("node{id}"));
    std::fs::create_dir(&node_dir).with_context(|| format!("create {}", node_dir.display()))?;
    let files = pki::new_node(ca, id, Some(host))?;
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

/// Creates a cluster of `nodes` nodes in `dir`. The policy names the log at `log_url`
/// (default: node 1's public API), the URL clients such as sigsum-submit use.
pub fn init_cluster(
    nodes: u64,
    dir: &Path,
    layout: &Layout,
    log_url: Option<&str>,
    witnesses: &[WitnessArg],
    custody: Custody,
    with_directory: bool,
) -> anyhow::Result<()> {
    if nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    layout.check()?;
    if let Hosts::PerNode(hs) = &layout.hosts {
        if hs.len() as u64 != nodes {
            bail!(
                "--hosts names {} hosts for {nodes} nodes; give one host per node",
                hs.len()
            );
        }
    }
    // Check everything before writing anything, so a refused command leaves no files.
    let mut members = Vec::new();
    for id in 1..=nodes {
        let (api_addr, raft_addr, _) = layout.addrs(id)?;
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

    write_operator(dir, &ca)?;
    pki::write_public(&dir.join(CRL), pki::revocation_list(&ca, &[])?.as_bytes())?;

    let log_key = LogSigner::generate();
    let public: PublicKey = log_key.public_key();
    let public_hex = hex::encode(public.0);
    log_key.write(&dir.join("log.key"))?;
    pki::write_public(&dir.join("log.pub"), format!("{public_hex}\n").as_bytes())?;
    // The same public key in OpenSSH form, for the sigsum-go tools (sigsum-witness --log-key).
    pki::write_public(&dir.join("log.key.pub"), public.to_openssh().as_bytes())?;
    let kt = if with_directory {
        let keys = log_key.directory().public();
        let text = format!("{} {}\n", hex::encode(keys.signing), hex::encode(keys.vrf));
        pki::write_public(&dir.join(KT_PUB), text.as_bytes())?;
        Some(kt_section(&text)?)
    } else {
        None
    };

    let mut configs = Vec::new();
    for id in 1..=nodes {
        // Exactly one node initialises the cluster, and only while it has no Raft state.
        let cfg = node_config(
            id,
            layout,
            &public_hex,
            id == 1,
            members.clone(),
            custody,
            kt.clone(),
        )?;
        configs.push(write_node(dir, &ca, &cfg, layout.host(id)?)?);
    }
    let default_url = format!("http://{}", members[0].api_addr);
    let policy = policy_text(&public_hex, log_url.unwrap_or(&default_url), witnesses);
    pki::write_public(&dir.join("policy"), policy.as_bytes())?;

    println!("cluster of {nodes} nodes written to {}", dir.display());
    println!("log public key: {public_hex}");
    println!("policy: {}", dir.join("policy").display());
    println!(
        "operator certificate (for `quorumlog admin`): {}",
        dir.join("operator").display()
    );
    for c in configs {
        println!("node config: {}", c.display());
    }
    Ok(())
}

/// Writes the operator's certificate and key into `<dir>/operator` (mode 0700).
fn write_operator(dir: &Path, ca: &CaFiles) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let op = dir.join("operator");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&op)
        .with_context(|| format!("create {}", op.display()))?;
    let files = pki::new_operator(ca)?;
    pki::write_public(&op.join("operator.pem"), files.cert_pem.as_bytes())?;
    pki::write_secret(&op.join("operator.key"), files.key_pem.as_bytes())?;
    Ok(())
}

/// The cluster's certificate revocation list, beside the CA; node configs name it.
const CRL: &str = "crl.pem";

/// `revoke-cert`: adds the certificate of node `node` (as it is now in the cluster
/// directory) or the certificate file `cert` to the cluster's revocation list. Nodes that
/// read the list refuse that certificate within seconds of seeing the new file.
pub fn revoke_cert(dir: &Path, node: Option<u64>, cert: Option<&Path>) -> anyhow::Result<()> {
    let ca = read_ca(dir)?;
    let cert_path = match (node, cert) {
        (Some(id), None) => {
            let node_dir = dir.join(format!("node{id}"));
            let cfg = NodeConfig::load(&node_dir.join("config.toml"))?;
            cfg.path(&cfg.tls.cert)
        }
        (None, Some(p)) => p.to_path_buf(),
        _ => bail!("name exactly one certificate: --node ID or --cert FILE"),
    };
    let pem = std::fs::read_to_string(&cert_path)
        .with_context(|| format!("read {}", cert_path.display()))?;
    let serial =
        pki::issued_serial(&ca, &pem).with_context(|| format!("{}", cert_path.display()))?;
    let crl_path = dir.join(CRL);
    let mut revoked = match std::fs::read_to_string(&crl_path) {
        Ok(text) => {
            pki::revoked_entries(&text).with_context(|| format!("{}", crl_path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("read {}", crl_path.display())),
    };
    if revoked.iter().any(|r| r.serial == serial) {
        println!(
            "{} is already revoked in {}",
            cert_path.display(),
            crl_path.display()
        );
        return Ok(());
    }
    revoked.push(pki::Revoked::now(serial));
    let crl = pki::revocation_list(&ca, &revoked)?;
    pki::replace_file(&crl_path, crl.as_bytes(), 0o644)?;
    println!(
        "revoked {} ({} certificates in {}); copy it to every node whose config names it \
         ([tls] crl); nodes re-read it within seconds",
        cert_path.display(),
        revoked.len(),
        crl_path.display()
    );
    Ok(())
}

/// Writes an empty revocation list into a cluster made before there were lists.
fn ensure_crl(dir: &Path, ca: &CaFiles) -> anyhow::Result<()> {
    if !dir.join(CRL).exists() {
        pki::write_public(&dir.join(CRL), pki::revocation_list(ca, &[])?.as_bytes())?;
    }
    Ok(())
}

/// The cluster CA of `dir`, key included.
fn read_ca(dir: &Path) -> anyhow::Result<CaFiles> {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .with_context(|| format!("read {}", dir.join(name).display()))
    };
    Ok(CaFiles {
        cert_pem: read("ca.pem")?,
        key_pem: read("ca.key")?,
    })
}

/// `renew-cert`: a new key and certificate for node `node` (its host from `host` or from
/// its config) or, without a node, for the operator; the old files are replaced atomically.
pub fn renew_cert(dir: &Path, node: Option<u64>, host: Option<String>) -> anyhow::Result<()> {
    let ca = read_ca(dir)?;
    let (files, cert, key) = match node {
        Some(id) => {
            let node_dir = dir.join(format!("node{id}"));
            let cfg = NodeConfig::load(&node_dir.join("config.toml"))?;
            let host = match host {
                Some(h) => h,
                None => addr_host(&cfg.node.raft_addr)
                    .with_context(|| format!("no host in raft_addr {:?}", cfg.node.raft_addr))?,
            };
            if !valid_host(&host) {
                bail!("invalid host {host:?}");
            }
            if reserved_host(&host) {
                bail!("host name {host:?} is reserved: names under .quorumlog belong to roles");
            }
            let files = pki::new_node(&ca, id, Some(&host))?;
            (files, cfg.path(&cfg.tls.cert), cfg.path(&cfg.tls.key))
        }
        None => {
            if host.is_some() {
                bail!("--host is for a node's certificate (with --node)");
            }
            let op = dir.join("operator");
            if !op.is_dir() {
                write_operator(dir, &ca)?;
                println!("operator certificate written to {}", op.display());
                return Ok(());
            }
            let files = pki::new_operator(&ca)?;
            (files, op.join("operator.pem"), op.join("operator.key"))
        }
    };
    // Key first: a certificate never names a key that is not there yet.
    pki::replace_file(&key, files.key_pem.as_bytes(), 0o600)?;
    pki::replace_file(&cert, files.cert_pem.as_bytes(), 0o644)?;
    println!(
        "new certificate {} (valid {} days) and key {}",
        cert.display(),
        pki::CERT_VALIDITY_DAYS,
        key.display()
    );
    Ok(())
}

/// The host part of `host:port` (brackets of an IPv6 address removed).
fn addr_host(addr: &str) -> Option<String> {
    let (host, _port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| host.to_string())
}

/// Names under `.quorumlog` are what certificates of roles carry (nodes, the operator).
fn reserved_host(h: &str) -> bool {
    h.to_ascii_lowercase().ends_with(".quorumlog")
}

/// A host name or IP address without spaces, ports or paths.
fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// The directory's public keys (`<signing key hex> <vrf key hex>`), in a cluster made with
/// `--kt`.
const KT_PUB: &str = "kt.pub";

fn kt_section(kt_pub: &str) -> anyhow::Result<KtSection> {
    let mut words = kt_pub.split_whitespace();
    let (Some(directory_key), Some(vrf_key)) = (words.next(), words.next()) else {
        bail!("{KT_PUB} must hold the directory key and the VRF key, hex");
    };
    Ok(KtSection {
        map_id: 1,
        directory_key: directory_key.into(),
        vrf_key: vrf_key.into(),
        epoch_interval_ms: 1000,
        max_epoch_mutations: 10_000,
        max_id_bytes: 256,
        max_value_bytes: 8192,
    })
}

/// Creates the files of node `id` for the existing cluster in `dir`.
pub fn new_node(dir: &Path, id: u64, layout: &Layout, custody: Custody) -> anyhow::Result<()> {
    if id == 0 {
        bail!("--id must be at least 1");
    }
    let ca = read_ca(dir)?;
    ensure_crl(dir, &ca)?;
    let public_hex = std::fs::read_to_string(dir.join("log.pub"))
        .with_context(|| format!("read {}", dir.join("log.pub").display()))?
        .trim()
        .to_string();
    layout.check()?;
    let kt = match std::fs::read_to_string(dir.join(KT_PUB)) {
        Ok(text) => Some(kt_section(&text)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("read {}", dir.join(KT_PUB).display())),
    };
    let cfg = node_config(id, layout, &public_hex, false, Vec::new(), custody, kt)?;
    let path = write_node(dir, &ca, &cfg, layout.host(id)?)?;
    println!("node {id} config: {}", path.display());
    println!(
        "start it with `quorumlog serve --config {}`, then add it with\n`quorumlog admin --config <a member's config> [--operator DIR] add-node --id {id} --raft-addr {} --api-addr {}`",
        path.display(),
        cfg.node.raft_addr,
        cfg.node.api_addr
    );
    Ok(())
}
