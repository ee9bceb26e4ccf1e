//! The log's signing key. This is the only module that holds the private key: it loads it,
//! generates it, and signs checkpoints with it. The key is never formatted, logged or
//! written anywhere but its own mode-0600 file.
//!
//! The Key Transparency directory's keys (docs/kt.md) are derived from the same seed, so
//! they live exactly where the log key lives and custody and hand-off move them with it.

use crate::merkle::Hash;
use crate::sigsum::checkpoint::Checkpoint;
use crate::sigsum::crypto::{PublicKey, Signature};
use crate::sigsum::leaf::{leaf_signed_message, TreeLeaf};
use crate::sigsum::tree_head::SignedTreeHead;
use ed25519_dalek::{Signer as _, SigningKey};
use quorumlog_kt::hasher::Index;
use quorumlog_kt::head::{MapHead, SignedMapHead};
use quorumlog_kt::vrf::{self, VrfSecretKey};
use sha2::{Digest, Sha256, Sha512};
use std::path::Path;
use thiserror::Error;
use zeroize::Zeroizing;

/// A key file that cannot be used. The messages never include the file's content.
#[derive(Debug, Error)]
pub enum KeyError {
    /// The file could not be read or written.
    #[error("log key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The file does not hold a 32-byte hex seed.
    #[error("log key file {path}: expected 64 hex characters (an Ed25519 seed)")]
    Format { path: String },
    /// The key is not the log's configured public key.
    #[error("log key file {path} holds the key of another log (public key {found}, config says {expected})")]
    WrongKey {
        path: String,
        /// Public key of the file's key.
        found: String,
        /// The configured public key.
        expected: String,
    },
}

/// The log's Ed25519 signing key.
pub struct LogSigner {
    key: SigningKey,
    directory: DirectoryKeys,
}

/// The directory's signing key (map heads, and the Sigsum leaves that carry them) and its
/// VRF key (user id to map index).
pub struct DirectoryKeys {
    signing: SigningKey,
    vrf: VrfSecretKey,
}

/// The directory's public keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectoryPublicKeys {
    pub signing: [u8; 32],
    pub vrf: [u8; 32],
}

impl DirectoryKeys {
    fn derive(seed: &[u8; 32]) -> DirectoryKeys {
        let derive = |label: &[u8]| {
            let mut h = Sha512::new();
            h.update(label);
            h.update(seed);
            let mut out = Zeroizing::new([0u8; 32]);
            out.copy_from_slice(&h.finalize()[..32]);
            out
        };
        let signing = SigningKey::from_bytes(&derive(b"quorumlog-kt directory signing key v1\0"));
        let mut vrf = derive(b"quorumlog-kt directory vrf key v1\0");
        // Below 2^252, so a canonical ristretto255 scalar (the group order is just above).
        vrf[31] &= 0x0f;
        let vrf = VrfSecretKey::from_bytes(*vrf).expect("a scalar below 2^252 is canonical");
        DirectoryKeys { signing, vrf }
    }

    pub fn public(&self) -> DirectoryPublicKeys {
        DirectoryPublicKeys {
            signing: self.signing.verifying_key().to_bytes(),
            vrf: self.vrf.public_key().to_bytes(),
        }
    }

    /// The map index of `id`, with the VRF proof that it is `id`'s.
    pub fn index(&self, id: &[u8]) -> (Index, [u8; vrf::PROOF_LEN]) {
        self.vrf.evaluate(id)
    }

    pub fn sign_map_head(&self, head: MapHead) -> SignedMapHead {
        head.sign(&self.signing)
    }

    /// The Sigsum leaf that submits `head` to the log, signed as its submitter.
    pub fn head_leaf(&self, head: &SignedMapHead) -> TreeLeaf {
        let checksum = Hash(Sha256::digest(head.checksum()).into());
        let signature = Signature(
            self.signing
                .sign(&leaf_signed_message(&checksum))
                .to_bytes(),
        );
        TreeLeaf {
            checksum,
            signature,
            key_hash: PublicKey(self.signing.verifying_key().to_bytes()).key_hash(),
        }
    }
}

impl std::fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSigner")
            .field("public_key", &hex::encode(self.public_key().0))
            .finish_non_exhaustive()
    }
}

impl LogSigner {
    /// A new random key.
    pub fn generate() -> LogSigner {
        let key = SigningKey::generate(&mut rand_core::OsRng);
        LogSigner::from_seed(&key.to_bytes())
    }

    /// A key from its 32-byte seed (the caller wipes its copy).
    pub fn from_seed(seed: &[u8; 32]) -> LogSigner {
        LogSigner {
            key: SigningKey::from_bytes(seed),
            directory: DirectoryKeys::derive(seed),
        }
    }

    /// The Key Transparency directory's keys.
    pub fn directory(&self) -> &DirectoryKeys {
        &self.directory
    }

    /// Reads a key file (hex seed) and checks it belongs to the log `expected`.
    pub fn load(path: &Path, expected: &PublicKey) -> Result<LogSigner, KeyError> {
        let p = path.display().to_string();
        // Both copies of the seed read here are wiped when dropped.
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyError::Io {
                    path: p.clone(),
                    source,
                })?,
            );
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), seed.as_mut())
            .map_err(|_| KeyError::Format { path: p.clone() })?;
        let signer = LogSigner::from_seed(&seed);
        if signer.public_key() != *expected {
            return Err(KeyError::WrongKey {
                path: p,
                found: hex::encode(signer.public_key().0),
                expected: hex::encode(expected.0),
            });
        }
        Ok(signer)
    }

    /// Writes the key to `path` (hex seed, mode 0600, refusing to overwrite).
    pub fn write(&self, path: &Path) -> Result<(), KeyError> {
        let mut text = Zeroizing::new(hex::encode(self.seed().as_ref()));
        text.push('\n');
        quorumlog_raft::pki::write_secret(path, text.as_bytes()).map_err(|e| KeyError::Io {
            path: path.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })
    }

    /// The 32-byte seed, for a hand-off to another node over the cluster's authenticated
    /// channel (custody `handoff`). Never log or store it.
    pub(crate) fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }

    /// The log's public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key().to_bytes())
    }

    /// Signs the checkpoint of a tree of `size` leaves with root `root_hash`.
    pub fn sign_tree_head(&self, size: u64, root_hash: Hash) -> SignedTreeHead {
        let checkpoint = Checkpoint {
            log_key_hash: self.public_key().key_hash(),
            size,
            root_hash,
        };
        let signature = Signature(self.key.sign(checkpoint.body().as_bytes()).to_bytes());
        SignedTreeHead {
            size,
            root_hash,
            signature,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_verifiable_heads_and_checks_the_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = LogSigner::generate();
        let path = dir.path().join("log.key");
        s.write(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let loaded = LogSigner::load(&path, &s.public_key()).unwrap();
        let head = loaded.sign_tree_head(3, Hash([7; 32]));
        head.verify(&s.public_key()).unwrap();
        let other = LogSigner::generate().public_key();
        let err = LogSigner::load(&path, &other).unwrap_err().to_string();
        assert!(err.contains("another log"), "{err}");
        // Neither the error nor the debug form carries the seed.
        let seed = std::fs::read_to_string(&path).unwrap();
        assert!(!err.contains(seed.trim()));
        assert!(!format!("{loaded:?}").contains(seed.trim()));
        // The directory keys follow the seed and differ from the log key.
        let dir_keys = loaded.directory().public();
        assert_eq!(dir_keys, s.directory().public());
        assert_ne!(dir_keys.signing, s.public_key().0);
        assert_ne!(dir_keys, LogSigner::generate().directory().public());
        std::fs::write(dir.path().join("bad"), "zz").unwrap();
        assert!(matches!(
            LogSigner::load(&dir.path().join("bad"), &s.public_key()),
            Err(KeyError::Format { .. })
        ));
    }
}
