//! What a directory client checks before it believes an answer (docs/kt.md, "How a
//! client verifies a lookup"): the VRF proof, the map proof under the signed map head,
//! the commitment, the head's signature, the head's leaf in the Sigsum log up to a tree
//! head signed by the log and cosigned as the policy requires.

use super::wire::{IndexAnswer, Lookup, Parameters, SmhWithLeaf};
use crate::sigsum::crypto::PublicKey;
use crate::sigsum::leaf::TreeLeaf;
use crate::sigsum::policy::Policy;
use crate::sigsum::tree_head::CosignedTreeHead;
use quorumlog_kt::entry::{commit, Entry, NONCE_LEN};
use quorumlog_kt::hasher::{ConiksSha256, Hash as MapHash, Index};
use quorumlog_kt::head::SignedMapHead;
use quorumlog_kt::map::{self, Proof};
use quorumlog_kt::vrf::{VrfPublicKey, PROOF_LEN};
use quorumlog_sigsum::merkle::{verify_inclusion, Hash};
use sha2::{Digest, Sha256};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("malformed {0} in the answer")]
    Malformed(&'static str),
    #[error("the VRF proof does not verify for this id")]
    Vrf,
    #[error("the answer's index is not the VRF's index for this id")]
    WrongIndex,
    #[error("the map head is for map {found}, not {expected}")]
    MapId { found: u64, expected: u64 },
    #[error("the map head is for epoch {found}, the answer says {claimed}")]
    Epoch { found: u64, claimed: u64 },
    #[error("the map head's signature does not verify under the directory key")]
    HeadSignature,
    #[error("the value and nonce do not open the entry's commitment")]
    Commitment,
    #[error("the map proof does not lead to the head's map root")]
    MapProof,
    #[error("the head's Sigsum leaf does not carry this head, or is not signed by the directory")]
    Leaf,
    #[error("the tree head is not signed by the log")]
    TreeHeadSignature,
    #[error("the tree head's cosignatures do not satisfy the policy")]
    Policy,
    #[error("the head's leaf is not in the tree head (inclusion proof fails)")]
    Inclusion,
}

/// The parameters a client checks answers with.
#[derive(Debug, Clone)]
pub struct Trust {
    pub map_id: u64,
    pub directory_key: PublicKey,
    pub vrf_key: VrfPublicKey,
    pub log_key: PublicKey,
    /// Cosignatures required on tree heads; none: the log's signature only.
    pub policy: Option<Policy>,
}

fn hex_array<const N: usize>(s: &str, what: &'static str) -> Result<[u8; N], VerifyError> {
    let mut out = [0; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| VerifyError::Malformed(what))?;
    Ok(out)
}

impl Trust {
    /// Trust from fetched parameters, pinned where the caller knows better: `log_key` must
    /// equal the parameters' (a directory cannot name its own log).
    pub fn from_parameters(
        p: &Parameters,
        log_key: PublicKey,
        policy: Option<Policy>,
    ) -> Result<Trust, VerifyError> {
        if hex_array::<32>(&p.log_key, "log key")? != log_key.0 {
            return Err(VerifyError::Malformed(
                "log key (not the log the client trusts)",
            ));
        }
        Ok(Trust {
            map_id: p.map_id,
            directory_key: PublicKey(hex_array(&p.directory_key, "directory key")?),
            vrf_key: VrfPublicKey::from_bytes(hex_array(&p.vrf_key, "VRF key")?)
                .map_err(|_| VerifyError::Malformed("VRF key"))?,
            log_key,
            policy,
        })
    }

    /// The index of `id`, checked against its VRF proof.
    pub fn index(&self, a: &IndexAnswer) -> Result<Index, VerifyError> {
        self.vrf_index(&a.id, &a.vrf_proof, &a.index)
    }

    fn vrf_index(&self, id: &str, proof: &str, claimed: &str) -> Result<Index, VerifyError> {
        let proof: [u8; PROOF_LEN] = hex_array(proof, "VRF proof")?;
        let index = self
            .vrf_key
            .verify(id.as_bytes(), &proof)
            .map_err(|_| VerifyError::Vrf)?;
        if hex_array::<32>(claimed, "index")? != index {
            return Err(VerifyError::WrongIndex);
        }
        Ok(index)
    }

    /// Checks a signed map head and its Sigsum leaf.
    pub fn head(&self, h: &SmhWithLeaf) -> Result<(SignedMapHead, TreeLeaf), VerifyError> {
        let bytes = hex::decode(&h.signed_head).map_err(|_| VerifyError::Malformed("map head"))?;
        let head = SignedMapHead::decode(&bytes).map_err(|_| VerifyError::Malformed("map head"))?;
        if head.head.map_id != self.map_id {
            return Err(VerifyError::MapId {
                found: head.head.map_id,
                expected: self.map_id,
            });
        }
        if head.head.epoch != h.epoch {
            return Err(VerifyError::Epoch {
                found: head.head.epoch,
                claimed: h.epoch,
            });
        }
        let key = ed25519_dalek::VerifyingKey::from_bytes(&self.directory_key.0)
            .map_err(|_| VerifyError::Malformed("directory key"))?;
        head.verify(&key).map_err(|_| VerifyError::HeadSignature)?;
        let leaf_bytes = hex::decode(&h.leaf).map_err(|_| VerifyError::Malformed("leaf"))?;
        let leaf = TreeLeaf::from_bytes(&leaf_bytes).ok_or(VerifyError::Malformed("leaf"))?;
        let checksum: [u8; 32] = Sha256::digest(head.checksum()).into();
        if leaf.checksum.0 != checksum
            || leaf.key_hash != self.directory_key.key_hash()
            || leaf.verify(&self.directory_key).is_err()
        {
            return Err(VerifyError::Leaf);
        }
        Ok((head, leaf))
    }

    /// Checks a tree head's signature and, with a policy, its cosignatures.
    pub fn tree_head(&self, ascii: &str) -> Result<CosignedTreeHead, VerifyError> {
        let th = CosignedTreeHead::parse(ascii.as_bytes())
            .map_err(|_| VerifyError::Malformed("tree head"))?;
        th.head
            .verify(&self.log_key)
            .map_err(|_| VerifyError::TreeHeadSignature)?;
        if let Some(policy) = &self.policy {
            let checkpoint = th.head.checkpoint(&self.log_key.key_hash());
            let good: Vec<Hash> = th
                .cosignatures
                .iter()
                .filter(|c| {
                    policy
                        .witness_by_key_hash(&c.key_hash)
                        .is_some_and(|w| c.verify(&w.public_key, &checkpoint).is_ok())
                })
                .map(|c| c.key_hash)
                .collect();
            if !policy.quorum_satisfied(&good) {
                return Err(VerifyError::Policy);
            }
        }
        Ok(th)
    }

    /// Checks everything a lookup claims; returns the user's entry and value, if any.
    pub fn lookup(&self, l: &Lookup) -> Result<Verified, VerifyError> {
        let index = self.vrf_index(&l.id, &l.vrf_proof, &l.index)?;
        let (head, leaf) = self.head(&l.head)?;
        if head.head.epoch != l.epoch {
            return Err(VerifyError::Epoch {
                found: head.head.epoch,
                claimed: l.epoch,
            });
        }
        let entry = match (&l.entry, &l.value, &l.nonce) {
            (Some(e), Some(v), Some(n)) => {
                let e = hex::decode(e).map_err(|_| VerifyError::Malformed("entry"))?;
                let entry = Entry::decode(&e).map_err(|_| VerifyError::Malformed("entry"))?;
                let value = hex::decode(v).map_err(|_| VerifyError::Malformed("value"))?;
                let nonce: [u8; NONCE_LEN] = hex_array(n, "nonce")?;
                if commit(l.id.as_bytes(), &value, &nonce) != entry.commitment {
                    return Err(VerifyError::Commitment);
                }
                Some((entry, value))
            }
            (None, None, None) => None,
            _ => {
                return Err(VerifyError::Malformed(
                    "entry, value and nonce (all or none)",
                ))
            }
        };
        let proof = hex::decode(&l.map_proof)
            .ok()
            .and_then(|b| Proof::decode(&b).ok())
            .ok_or(VerifyError::Malformed("map proof"))?;
        let hasher = ConiksSha256::new(self.map_id);
        let encoded = entry.as_ref().map(|(e, _)| e.encode());
        map::verify(
            &hasher,
            &MapHash(head.head.map_root),
            &index,
            encoded.as_deref(),
            &proof,
        )
        .map_err(|_| VerifyError::MapProof)?;
        let th = self.tree_head(&l.tree_head)?;
        let path = l
            .inclusion_path
            .iter()
            .map(|h| hex_array(h, "inclusion path").map(Hash))
            .collect::<Result<Vec<_>, _>>()?;
        verify_inclusion(
            &leaf.leaf_hash(),
            l.head.leaf_index,
            th.head.size,
            &path,
            &th.head.root_hash,
        )
        .map_err(|_| VerifyError::Inclusion)?;
        Ok(Verified {
            index,
            head,
            tree_head: th,
            entry,
        })
    }
}

/// A lookup that verified.
#[derive(Debug, Clone)]
pub struct Verified {
    pub index: Index,
    pub head: SignedMapHead,
    pub tree_head: CosignedTreeHead,
    /// The user's entry and value; `None`: proven absent at this epoch.
    pub entry: Option<(Entry, Vec<u8>)>,
}
