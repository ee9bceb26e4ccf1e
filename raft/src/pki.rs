//! The cluster's certificates: a CA, and one certificate per node that names the node
//! (`node-<id>.quorumlog`), used for mutual TLS on every node-to-node connection.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use thiserror::Error;

/// Certificate generation failed.
#[derive(Debug, Error)]
pub enum PkiError {
    /// rcgen refused the parameters or key.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: io::Error,
    },
}

/// The DNS name a node's certificate carries and peers verify.
pub fn node_name(id: u64) -> String {
    format!("node-{id}.quorumlog")
}

/// A CA certificate and its private key, PEM-encoded.
pub struct CaFiles {
    /// CA certificate.
    pub cert_pem: String,
    /// CA private key (keep it offline or at mode 0600).
    pub key_pem: String,
}

/// A node certificate and its private key, PEM-encoded.
pub struct NodeFiles {
    /// Node certificate, signed by the cluster CA.
    pub cert_pem: String,
    /// Node private key.
    pub key_pem: String,
}

/// The CA's certificate parameters. They are fixed, so the issuer can be rebuilt from the
/// CA key alone when a node is added later; clusters differ by their CA key.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Quorumlog cluster CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_after = rcgen::date_time_ymd(2100, 1, 1);
    params
}

/// Creates a new cluster CA.
pub fn new_ca() -> Result<CaFiles, PkiError> {
    let key = KeyPair::generate()?;
    let cert = ca_params().self_signed(&key)?;
    Ok(CaFiles {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues the certificate of node `id`, valid as both TLS server and client. Peers verify
/// the name `node-<id>.quorumlog`; `host`, if given, is added as a further name (DNS name
/// or IP address) so the certificate also names where the node runs.
pub fn new_node(ca: &CaFiles, id: u64, host: Option<&str>) -> Result<NodeFiles, PkiError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::new(ca_params(), ca_key);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![node_name(id)])?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, node_name(id));
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::DnsName(node_name(id).try_into()?)];
    if let Some(h) = host.filter(|h| *h != node_name(id)) {
        params
            .subject_alt_names
            .push(match h.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(h.to_string().try_into()?),
            });
    }
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_after = rcgen::date_time_ymd(2100, 1, 1);
    let cert = params.signed_by(&key, &issuer)?;
    Ok(NodeFiles {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Writes a file readable only by its owner (mode 0600), failing if it already exists so
/// no secret is ever silently replaced.
pub fn write_secret(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    write_new(path, contents, 0o600)
}

/// Writes a public file (certificate, config), failing if it already exists.
pub fn write_public(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    write_new(path, contents, 0o644)
}

/// Creates `path` with `mode` (never replacing a file), writes and fsyncs it.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    f.write_all(contents).map_err(io)?;
    f.sync_all().map_err(io)
}
