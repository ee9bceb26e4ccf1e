//! Mutual TLS for node-to-node gRPC: every node presents a certificate from the cluster CA,
//! accepts only peers whose certificates chain to that CA, and checks that the certificate
//! names the node a message claims to come from (`node-<id>.quorumlog`), or the operator
//! role (`operator.quorumlog`) for the calls only an operator may make.

use crate::pki::{node_name, OPERATOR_NAME};
use crate::types::NodeId;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::Path;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use tonic::{Request, Status};

/// The PEM material of one node.
#[derive(Clone)]
pub struct TlsFiles {
    /// Cluster CA certificate.
    pub ca_pem: String,
    /// This node's certificate.
    pub cert_pem: String,
    /// This node's private key.
    pub key_pem: String,
    /// The cluster's certificate revocation list, if the node uses one; read by
    /// [`crate::network::revocation::Revocation`], which re-reads it when it changes.
    pub crl: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("TlsFiles").finish_non_exhaustive()
    }
}

impl TlsFiles {
    /// Reads the three PEM files.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> std::io::Result<TlsFiles> {
        let read = |p: &Path| {
            std::fs::read_to_string(p)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))
        };
        Ok(TlsFiles {
            ca_pem: read(ca)?,
            cert_pem: read(cert)?,
            key_pem: read(key)?,
            crl: None,
        })
    }

    /// The same files, with the revocation list at `crl` (if any).
    pub fn with_crl(self, crl: Option<std::path::PathBuf>) -> TlsFiles {
        TlsFiles { crl, ..self }
    }

    /// Server side: our identity, and client certificates required from the cluster CA.
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
    }

    /// Client side toward node `target`: the server must present `target`'s certificate.
    pub fn client(&self, target: NodeId) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .domain_name(node_name(target))
    }
}

/// Installs the process-wide rustls crypto provider (ring); harmless if already done.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whether the (already CA-verified) client certificate of `req` is valid for `name`.
fn cert_names<T>(req: &Request<T>, name: &str) -> Result<bool, Status> {
    let certs = req
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
    let leaf: &CertificateDer<'static> = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
    let cert = webpki::EndEntityCert::try_from(leaf)
        .map_err(|_| Status::unauthenticated("unreadable client certificate"))?;
    let name = ServerName::try_from(name.to_string())
        .map_err(|_| Status::invalid_argument("invalid certificate name"))?;
    Ok(cert.verify_is_valid_for_subject_name(&name).is_ok())
}

/// Checks that the client certificate of `req` names node `claimed`.
pub fn check_peer<T>(req: &Request<T>, claimed: NodeId) -> Result<(), Status> {
    if cert_names(req, &node_name(claimed))? {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "client certificate does not belong to node {claimed}"
        )))
    }
}

/// Whether the client certificate of `req` is an operator certificate.
pub fn is_operator<T>(req: &Request<T>) -> Result<bool, Status> {
    cert_names(req, OPERATOR_NAME)
}

/// Refuses `req` unless it comes with an operator certificate.
pub fn require_operator<T>(req: &Request<T>, what: &str) -> Result<(), Status> {
    if is_operator(req)? {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "{what} needs the operator certificate (init-cluster writes it to \
             <cluster>/operator; `quorumlog admin --operator DIR`)"
        )))
    }
}
