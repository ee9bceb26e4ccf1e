//! Certificate revocation: the cluster CA's certificate revocation list (CRL), written by
//! `quorumlog revoke-cert` and read by every node, which re-reads it when the file
//! changes. A peer presenting a certificate the list names is refused on every call,
//! whatever it is otherwise allowed: a removed node whose id is used again, a node whose
//! key was lost, a superseded operator certificate.
//!
//! The check runs on each request, after TLS has verified the chain: tonic's TLS layer
//! takes no CRL, and checking here also lets a changed list apply to connections that
//! are already open. Verdicts are cached per certificate, so a busy peer costs one
//! signature check per list, not per message.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, RootCertStore};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;
use thiserror::Error;
use tonic::{Request, Status};

/// A revocation list that cannot be used. A node refuses to start with one; a running node
/// keeps the list it has and logs this.
#[derive(Debug, Error)]
pub enum RevocationError {
    #[error("revocation list {path}: {reason}")]
    List { path: String, reason: String },
    #[error(
        "this node's own certificate is revoked by {0}: issue it a new one (quorumlog renew-cert)"
    )]
    OwnRevoked(String),
}

/// When the list file last changed, as far as `stat` can tell (a file replaced by rename
/// has a new inode even within one tick of the clock).
type Stamp = (SystemTime, u64, u64);

struct Loaded {
    stamp: Stamp,
    verifier: Arc<dyn ClientCertVerifier>,
    entries: usize,
    /// Verdict per certificate (DER): `true` if revoked.
    verdicts: HashMap<Vec<u8>, bool>,
}

/// Caps the verdict cache; a cluster has a handful of certificates.
const MAX_VERDICTS: usize = 1024;

/// The revocation list of one node (none if its config names none).
pub struct Revocation {
    path: Option<PathBuf>,
    ca_pem: String,
    loaded: RwLock<Option<Loaded>>,
}

impl std::fmt::Debug for Revocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocation")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((m.modified()?, m.len(), m.ino()))
}

impl Revocation {
    /// Reads the list at `path` (if any), checked against the CA and against this node's
    /// own certificate, which must not be on it.
    pub fn load(
        ca_pem: &str,
        own_cert_pem: &str,
        path: Option<&Path>,
    ) -> Result<Revocation, RevocationError> {
        let r = Revocation {
            path: path.map(Path::to_path_buf),
            ca_pem: ca_pem.to_string(),
            loaded: RwLock::new(None),
        };
        if let Some(path) = path {
            let loaded = r.read(path)?;
            let own = CertificateDer::from_pem_slice(own_cert_pem.as_bytes()).map_err(|e| {
                RevocationError::List {
                    path: path.display().to_string(),
                    reason: format!("this node's certificate is unreadable: {e}"),
                }
            })?;
            if verdict(&*loaded.verifier, &own).map_err(|reason| RevocationError::List {
                path: path.display().to_string(),
                reason,
            })? {
                return Err(RevocationError::OwnRevoked(path.display().to_string()));
            }
            *r.loaded.write().unwrap_or_else(|e| e.into_inner()) = Some(loaded);
        }
        Ok(r)
    }

    /// The number of certificates the list names (`None`: no list configured).
    pub fn entries(&self) -> Option<usize> {
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|l| l.entries)
    }

    fn read(&self, path: &Path) -> Result<Loaded, RevocationError> {
        let fail = |reason: String| RevocationError::List {
            path: path.display().to_string(),
            reason,
        };
        let stamp = stamp(path).map_err(|e| fail(e.to_string()))?;
        let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        let crls = CertificateRevocationListDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(format!("not PEM: {e}")))?;
        if crls.is_empty() {
            return Err(fail("holds no X509 CRL".into()));
        }
        let mut entries = 0;
        for der in &crls {
            let crl = webpki::BorrowedCertRevocationList::from_der(der)
                .map_err(|e| fail(format!("malformed CRL: {e:?}")))?;
            for revoked in &crl {
                revoked.map_err(|e| fail(format!("malformed CRL entry: {e:?}")))?;
                entries += 1;
            }
        }
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            let ca = ca.map_err(|e| fail(format!("the CA certificate: {e}")))?;
            roots
                .add(ca)
                .map_err(|e| fail(format!("the CA certificate: {e}")))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .with_crls(crls)
        .only_check_end_entity_revocation()
        .build()
        .map_err(|e| fail(e.to_string()))?;
        Ok(Loaded {
            stamp,
            verifier,
            entries,
            verdicts: HashMap::new(),
        })
    }

    /// Re-reads the list if its file changed. A list that cannot be used is logged and
    /// ignored: the node keeps the one it has, so a bad copy never opens the door wider.
    pub fn reload(&self) {
        let Some(path) = &self.path else { return };
        let current = self
            .loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|l| l.stamp);
        match stamp(path) {
            Ok(s) if Some(s) == current => return,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "revocation list unreadable; keeping the one loaded");
                return;
            }
        }
        match self.read(path) {
            Ok(loaded) => {
                tracing::info!(path = %path.display(), revoked = loaded.entries, "revocation list loaded");
                *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = Some(loaded);
            }
            Err(e) => {
                tracing::error!(error = %e, "revocation list refused; keeping the one loaded")
            }
        }
    }

    /// Refuses `req` if the certificate it came with is revoked.
    pub fn check<T>(&self, req: &Request<T>) -> Result<(), Status> {
        if self.path.is_none() {
            return Ok(());
        }
        let Some(cert) = req.peer_certs().and_then(|c| c.first().cloned()) else {
            // TLS demands a certificate; without TLS (never in a node) there is none.
            return Err(Status::unauthenticated("no client certificate"));
        };
        if let Some(l) = self
            .loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            if let Some(&revoked) = l.verdicts.get(cert.as_ref()) {
                return refuse_if(revoked);
            }
        }
        let mut guard = self.loaded.write().unwrap_or_else(|e| e.into_inner());
        let Some(l) = guard.as_mut() else {
            return Ok(());
        };
        let revoked = match verdict(&*l.verifier, &cert) {
            Ok(r) => r,
            // Chain errors are TLS's to report (it accepted this certificate); only a
            // verdict of the list refuses here.
            Err(reason) => {
                tracing::warn!(%reason, "revocation status of a peer certificate unknown");
                return Err(Status::permission_denied(format!(
                    "revocation status unknown: {reason}"
                )));
            }
        };
        if l.verdicts.len() >= MAX_VERDICTS {
            l.verdicts.clear();
        }
        l.verdicts.insert(cert.as_ref().to_vec(), revoked);
        refuse_if(revoked)
    }
}

fn refuse_if(revoked: bool) -> Result<(), Status> {
    if revoked {
        Err(Status::permission_denied(
            "the client certificate is revoked by the cluster's revocation list",
        ))
    } else {
        Ok(())
    }
}

/// `Ok(true)` if the list revokes `cert`, `Ok(false)` if the certificate verifies with
/// the list, `Err` if the list cannot say (not the CA's, or unreadable).
fn verdict(verifier: &dyn ClientCertVerifier, cert: &CertificateDer<'_>) -> Result<bool, String> {
    match verifier.verify_client_cert(cert, &[], UnixTime::now()) {
        Ok(_) => Ok(false),
        Err(rustls::Error::InvalidCertificate(CertificateError::Revoked)) => Ok(true),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{self, Revoked};

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_list_revokes_what_it_names_and_only_from_its_own_ca() {
        crate::network::tls::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let ca = pki::new_ca().unwrap();
        let (n1, n2) = (
            pki::new_node(&ca, 1, None).unwrap(),
            pki::new_node(&ca, 2, None).unwrap(),
        );
        let serial = pki::issued_serial(&ca, &n2.cert_pem).unwrap();
        let list = pki::revocation_list(&ca, &[Revoked::now(serial.clone())]).unwrap();
        assert_eq!(
            pki::revoked_entries(&list).unwrap()[0].serial,
            serial,
            "the entry round-trips"
        );
        let crl = write(dir.path(), "crl.pem", &list);

        let r = Revocation::load(&ca.cert_pem, &n1.cert_pem, Some(&crl)).unwrap();
        assert_eq!(r.entries(), Some(1));
        let own = |pem: &str| {
            let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
            let l = r.loaded.read().unwrap();
            verdict(&*l.as_ref().unwrap().verifier, &der)
        };
        assert_eq!(own(&n2.cert_pem), Ok(true));
        assert_eq!(own(&n1.cert_pem), Ok(false));

        // A node whose own certificate is on the list does not start.
        assert!(matches!(
            Revocation::load(&ca.cert_pem, &n2.cert_pem, Some(&crl)),
            Err(RevocationError::OwnRevoked(_))
        ));
        // Another CA's list, garbage, or nothing at the path: refused at start.
        let other = pki::new_ca().unwrap();
        let foreign = write(
            dir.path(),
            "foreign.pem",
            &pki::revocation_list(&other, &[]).unwrap(),
        );
        let garbage = write(dir.path(), "garbage.pem", "not a list");
        for bad in [foreign, garbage, dir.path().join("missing.pem")] {
            assert!(
                matches!(
                    Revocation::load(&ca.cert_pem, &n1.cert_pem, Some(&bad)),
                    Err(RevocationError::List { .. })
                ),
                "{}",
                bad.display()
            );
        }
        // And another CA's certificate cannot be revoked by ours.
        let stranger = pki::new_node(&other, 2, None).unwrap();
        assert!(pki::issued_serial(&ca, &stranger.cert_pem).is_err());
    }

    #[test]
    fn a_changed_file_is_read_again_and_a_bad_one_is_ignored() {
        crate::network::tls::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let ca = pki::new_ca().unwrap();
        let n1 = pki::new_node(&ca, 1, None).unwrap();
        let n2 = pki::new_node(&ca, 2, None).unwrap();
        let crl = write(
            dir.path(),
            "crl.pem",
            &pki::revocation_list(&ca, &[]).unwrap(),
        );
        let r = Revocation::load(&ca.cert_pem, &n1.cert_pem, Some(&crl)).unwrap();
        assert_eq!(r.entries(), Some(0));
        let serial = pki::issued_serial(&ca, &n2.cert_pem).unwrap();
        pki::replace_file(
            &crl,
            pki::revocation_list(&ca, &[Revoked::now(serial)])
                .unwrap()
                .as_bytes(),
            0o644,
        )
        .unwrap();
        r.reload();
        assert_eq!(r.entries(), Some(1));
        // A broken copy keeps the list in force.
        std::fs::write(&crl, "truncated").unwrap();
        r.reload();
        assert_eq!(r.entries(), Some(1));
    }
}
