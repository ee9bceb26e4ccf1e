//! The cluster's certificates: a CA; one certificate per node that names the node
//! (`node-<id>.quorumlog`), used for mutual TLS on every node-to-node connection; and
//! operator certificates (`operator.quorumlog`, client only), the one role allowed to
//! change membership, move leadership and load the signing key.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
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
    /// A host name in the certificate namespace of roles.
    #[error("host {0:?}: names under .quorumlog are reserved for roles")]
    ReservedName(String),
    /// A certificate or revocation list that cannot be used.
    #[error("{0}")]
    Invalid(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
}

/// The DNS name a node's certificate carries and peers verify.
pub fn node_name(id: u64) -> String {
    format!("node-{id}.quorumlog")
}

/// The name an operator certificate carries. No node certificate may carry it.
pub const OPERATOR_NAME: &str = "operator.quorumlog";

/// How long a node or operator certificate is valid. Short enough that a lost key does not
/// stay usable for decades, long enough for a yearly renewal (`quorumlog renew-cert`).
pub const CERT_VALIDITY_DAYS: i64 = 2 * 365;

/// How long the cluster CA is valid; renewing it means re-issuing every certificate.
pub const CA_VALIDITY_DAYS: i64 = 10 * 365;

/// `not_before`..`not_after` for a certificate issued now, valid for `days`. The start is
/// an hour back so a peer whose clock is a little behind accepts it at once.
fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
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
    params
}

/// Creates a new cluster CA.
pub fn new_ca() -> Result<CaFiles, PkiError> {
    let key = KeyPair::generate()?;
    let mut params = ca_params();
    validity(&mut params, CA_VALIDITY_DAYS);
    let cert = params.self_signed(&key)?;
    Ok(CaFiles {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues the certificate of node `id`, valid as both TLS server and client. Peers verify
/// the name `node-<id>.quorumlog`; `host`, if given, is added as a further name (DNS name
/// or IP address) so the certificate also names where the node runs.
pub fn new_node(ca: &CaFiles, id: u64, host: Option<&str>) -> Result<NodeFiles, PkiError> {
    let own = node_name(id);
    if let Some(h) = host.filter(|h| h.to_ascii_lowercase().ends_with(".quorumlog") && *h != own) {
        // A node certificate naming `operator.quorumlog` (or another node) would carry
        // that role.
        return Err(PkiError::ReservedName(h.to_string()));
    }
    let issuer = Issuer::new(ca_params(), KeyPair::from_pem(&ca.key_pem)?);
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
    validity(&mut params, CERT_VALIDITY_DAYS);
    let cert = params.signed_by(&key, &issuer)?;
    Ok(NodeFiles {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues an operator certificate: TLS client only, naming [`OPERATOR_NAME`].
pub fn new_operator(ca: &CaFiles) -> Result<NodeFiles, PkiError> {
    let issuer = Issuer::new(ca_params(), KeyPair::from_pem(&ca.key_pem)?);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![OPERATOR_NAME.to_string()])?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, OPERATOR_NAME);
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut params, CERT_VALIDITY_DAYS);
    let cert = params.signed_by(&key, &issuer)?;
    Ok(NodeFiles {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// One entry of the cluster's revocation list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// The certificate's serial number, as its DER encoding carries it.
    pub serial: Vec<u8>,
    /// When it was revoked.
    pub at: time::OffsetDateTime,
}

impl Revoked {
    /// An entry revoking `serial` now.
    pub fn now(serial: Vec<u8>) -> Revoked {
        Revoked {
            serial,
            at: time::OffsetDateTime::now_utc(),
        }
    }
}

/// The serial number of `cert_pem`, after checking that this cluster's CA issued it (a
/// list naming a stranger's serial could revoke one of ours by accident).
pub fn issued_serial(ca: &CaFiles, cert_pem: &str) -> Result<Vec<u8>, PkiError> {
    let invalid = |what: String| PkiError::Invalid(what);
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| invalid(format!("not a PEM certificate: {e}")))?;
    let ca_der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes())
        .map_err(|e| invalid(format!("the CA certificate: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca_der)
        .map_err(|e| invalid(format!("the CA certificate: {e}")))?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        std::sync::Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .map_err(|e| invalid(e.to_string()))?;
    let parsed = webpki::EndEntityCert::try_from(&cert)
        .map_err(|e| invalid(format!("unreadable certificate: {e:?}")))?;
    let serial = parsed.serial().to_vec();
    match verifier.verify_client_cert(&cert, &[], UnixTime::now()) {
        Ok(_) => {}
        Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Expired)) => {
            return Err(invalid(
                "the certificate has expired: every node refuses it already".into(),
            ))
        }
        Err(e) => {
            return Err(invalid(format!(
                "not a certificate of this cluster's CA: {e}"
            )))
        }
    }
    Ok(serial)
}

/// The entries of a revocation list written by [`revocation_list`].
pub fn revoked_entries(crl_pem: &str) -> Result<Vec<Revoked>, PkiError> {
    let invalid = |what: String| PkiError::Invalid(what);
    let der = CertificateRevocationListDer::from_pem_slice(crl_pem.as_bytes())
        .map_err(|e| invalid(format!("not a PEM revocation list: {e}")))?;
    let crl = webpki::BorrowedCertRevocationList::from_der(&der)
        .map_err(|e| invalid(format!("malformed revocation list: {e:?}")))?;
    let mut out = Vec::new();
    for entry in &crl {
        let entry = entry.map_err(|e| invalid(format!("malformed revocation entry: {e:?}")))?;
        let at = time::OffsetDateTime::from_unix_timestamp(entry.revocation_date.as_secs() as i64)
            .map_err(|e| invalid(format!("revocation date: {e}")))?;
        out.push(Revoked {
            serial: entry.serial_number.to_vec(),
            at,
        });
    }
    Ok(out)
}

/// A revocation list (PEM) signed by the cluster CA, naming `revoked`. Its number is the
/// time of issue, so a later list always has a higher one.
pub fn revocation_list(ca: &CaFiles, revoked: &[Revoked]) -> Result<String, PkiError> {
    let issuer = Issuer::new(ca_params(), KeyPair::from_pem(&ca.key_pem)?);
    let now = time::OffsetDateTime::now_utc();
    let params = CertificateRevocationListParams {
        this_update: now - time::Duration::hours(1),
        // Nodes do not expire a list: it stays in force until a newer one replaces it.
        next_update: now + time::Duration::days(CA_VALIDITY_DAYS),
        crl_number: SerialNumber::from(now.unix_timestamp() as u64),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|r| RevokedCertParams {
                serial_number: SerialNumber::from_slice(&r.serial),
                revocation_time: r.at,
                reason_code: Some(RevocationReason::CessationOfOperation),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    Ok(params.signed_by(&issuer)?.pem()?)
}

/// Writes a file readable only by its owner (mode 0600), failing if it already exists so
/// no secret is ever silently replaced.
pub fn write_secret(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    write_new(path, contents, 0o600)
}

/// Replaces `path` atomically with a new file of `mode` (a renewed certificate or key):
/// written and fsynced beside it, then renamed over it, then the directory is fsynced.
pub fn replace_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension("new");
    let _ = fs::remove_file(&tmp);
    write_new(&tmp, contents, mode)?;
    fs::rename(&tmp, path).map_err(io)?;
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    fs::File::open(parent.unwrap_or(Path::new(".")))
        .and_then(|d| d.sync_all())
        .map_err(io)
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
