//! What the map holds for a user, and how a user changes it.
//!
//! The map leaf at a user's VRF index is an [`Entry`]: a commitment to the user's value,
//! the Ed25519 keys allowed to sign the next change, and the hash of the entry it replaced.
//! A [`Mutation`] proposes a new entry for an index, signed by the user's keys; it applies
//! only if it names the current entry (check-and-set), so two racing changes cannot both
//! land and a replayed old change is refused.
//!
//! The user id and the value never enter the map or the log of mutations: only the
//! commitment does, opened for a lookup by the value and a random nonce the directory keeps
//! beside the map.

use crate::hasher::Index;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Most keys an entry may authorise.
pub const MAX_KEYS: usize = 8;
/// Most signatures a mutation may carry.
pub const MAX_SIGNATURES: usize = 8;
/// Bytes of a commitment nonce.
pub const NONCE_LEN: usize = 16;

/// A map leaf: the value's commitment, the keys that may change it, and the entry before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub commitment: [u8; 32],
    pub keys: Vec<[u8; 32]>,
    /// [`Entry::hash`] of the entry this one replaced; zero for a user's first entry.
    pub previous: [u8; 32],
}

/// Why bytes are not an entry or a mutation.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("truncated {0}")]
    Truncated(&'static str),
    #[error("{0} has trailing bytes")]
    Trailing(&'static str),
    #[error("an entry authorises 1 to {MAX_KEYS} keys, not {0}")]
    KeyCount(usize),
    #[error("a mutation carries 1 to {MAX_SIGNATURES} signatures, not {0}")]
    SignatureCount(usize),
}

/// Why a well-formed mutation is not applied. Every node reaches the same verdict, and the
/// log of mutations records it.
#[derive(Debug, Clone, Copy, Error, PartialEq, Eq)]
pub enum Rejection {
    #[error("the mutation does not name the current entry (check-and-set failed)")]
    Stale,
    #[error("no valid signature by a key of the current entry")]
    NotAuthorised,
    #[error("the new key set is not signed by one of its own keys")]
    NewKeysUnproven,
}

impl Rejection {
    /// A stable one-byte code for the log of mutations.
    pub fn code(self) -> u8 {
        match self {
            Rejection::Stale => 1,
            Rejection::NotAuthorised => 2,
            Rejection::NewKeysUnproven => 3,
        }
    }

    pub fn from_code(c: u8) -> Option<Rejection> {
        Some(match c {
            1 => Rejection::Stale,
            2 => Rejection::NotAuthorised,
            3 => Rejection::NewKeysUnproven,
            _ => return None,
        })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError::Truncated(self.what));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    fn end(self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing(self.what))
        }
    }
}

impl Entry {
    /// `commitment || previous || key count (1 byte) || keys`.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(65 + 32 * self.keys.len());
        b.extend_from_slice(&self.commitment);
        b.extend_from_slice(&self.previous);
        b.push(self.keys.len() as u8);
        for k in &self.keys {
            b.extend_from_slice(k);
        }
        b
    }

    pub fn decode(bytes: &[u8]) -> Result<Entry, DecodeError> {
        let mut r = Reader {
            bytes,
            what: "entry",
        };
        let e = Entry::read(&mut r)?;
        r.end()?;
        Ok(e)
    }

    fn read(r: &mut Reader) -> Result<Entry, DecodeError> {
        let commitment = r.array()?;
        let previous = r.array()?;
        let n = r.take(1)?[0] as usize;
        if n == 0 || n > MAX_KEYS {
            return Err(DecodeError::KeyCount(n));
        }
        let keys = (0..n).map(|_| r.array()).collect::<Result<_, _>>()?;
        Ok(Entry {
            commitment,
            keys,
            previous,
        })
    }

    /// The entry's identity for check-and-set: SHA-256 of its encoding.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.encode()).into()
    }
}

/// The commitment to `value` for `user_id` under `nonce`. Lengths are encoded, so no two
/// (id, value) pairs share an input.
pub fn commit(user_id: &[u8], value: &[u8], nonce: &[u8; NONCE_LEN]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"quorumlog-kt commitment v1\0");
    h.update(nonce);
    h.update((user_id.len() as u64).to_be_bytes());
    h.update(user_id);
    h.update((value.len() as u64).to_be_bytes());
    h.update(value);
    h.finalize().into()
}

/// A proposed new entry for an index, with the users' signatures over
/// [`Mutation::signed_message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    pub index: Index,
    pub entry: Entry,
    pub signatures: Vec<([u8; 32], [u8; 64])>,
}

impl Mutation {
    /// What the user signs: the map it is for, the index and the new entry (whose
    /// `previous` makes the signature good for one change only).
    pub fn signed_message(map_id: u64, index: &Index, entry: &Entry) -> Vec<u8> {
        let mut m = b"quorumlog-kt mutation v1\0".to_vec();
        m.extend_from_slice(&map_id.to_be_bytes());
        m.extend_from_slice(index);
        m.extend_from_slice(&entry.encode());
        m
    }

    /// `index || entry || signature count (1 byte) || (key || signature)...`.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = self.index.to_vec();
        b.extend_from_slice(&self.entry.encode());
        b.push(self.signatures.len() as u8);
        for (k, s) in &self.signatures {
            b.extend_from_slice(k);
            b.extend_from_slice(s);
        }
        b
    }

    pub fn decode(bytes: &[u8]) -> Result<Mutation, DecodeError> {
        let mut r = Reader {
            bytes,
            what: "mutation",
        };
        let index = r.array()?;
        let entry = Entry::read(&mut r)?;
        let n = r.take(1)?[0] as usize;
        if n == 0 || n > MAX_SIGNATURES {
            return Err(DecodeError::SignatureCount(n));
        }
        let signatures = (0..n)
            .map(|_| Ok((r.array()?, r.array()?)))
            .collect::<Result<_, DecodeError>>()?;
        r.end()?;
        Ok(Mutation {
            index,
            entry,
            signatures,
        })
    }

    /// Whether some signature by a key of `keys` verifies.
    fn signed_by_one_of(&self, keys: &[[u8; 32]], message: &[u8]) -> bool {
        self.signatures.iter().any(|(k, s)| {
            keys.contains(k)
                && VerifyingKey::from_bytes(k)
                    .is_ok_and(|vk| vk.verify(message, &Signature::from_bytes(s)).is_ok())
        })
    }

    /// Checks this mutation against the index's current entry (`None`: the index is
    /// unset). A first entry is signed by one of its own keys; a later one by a key of the
    /// current entry and, if it changes the key set, by one of the new keys as well.
    pub fn check(&self, map_id: u64, current: Option<&Entry>) -> Result<(), Rejection> {
        let want = current.map_or([0; 32], Entry::hash);
        if self.entry.previous != want {
            return Err(Rejection::Stale);
        }
        let message = Mutation::signed_message(map_id, &self.index, &self.entry);
        if let Some(cur) = current {
            if !self.signed_by_one_of(&cur.keys, &message) {
                return Err(Rejection::NotAuthorised);
            }
            if cur.keys == self.entry.keys {
                return Ok(());
            }
        }
        if !self.signed_by_one_of(&self.entry.keys, &message) {
            return Err(Rejection::NewKeysUnproven);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    const MAP: u64 = 5;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn signed(index: Index, entry: Entry, by: &[&SigningKey]) -> Mutation {
        let m = Mutation::signed_message(MAP, &index, &entry);
        Mutation {
            index,
            entry,
            signatures: by
                .iter()
                .map(|k| (k.verifying_key().to_bytes(), k.sign(&m).to_bytes()))
                .collect(),
        }
    }

    fn entry(value: &[u8], keys: &[&SigningKey], previous: [u8; 32]) -> Entry {
        Entry {
            commitment: commit(b"alice", value, &[1; NONCE_LEN]),
            keys: keys.iter().map(|k| k.verifying_key().to_bytes()).collect(),
            previous,
        }
    }

    #[test]
    fn a_user_registers_updates_and_rotates_keys() {
        let (a, b) = (key(1), key(2));
        let ix = [9; 32];
        let first = signed(ix, entry(b"v1", &[&a], [0; 32]), &[&a]);
        first.check(MAP, None).unwrap();
        let e1 = first.entry.clone();
        let second = signed(ix, entry(b"v2", &[&a], e1.hash()), &[&a]);
        second.check(MAP, Some(&e1)).unwrap();
        // Rotating from a to b needs both.
        let rotate = entry(b"v2", &[&b], second.entry.hash());
        let e2 = second.entry.clone();
        assert_eq!(
            signed(ix, rotate.clone(), &[&b]).check(MAP, Some(&e2)),
            Err(Rejection::NotAuthorised)
        );
        assert_eq!(
            signed(ix, rotate.clone(), &[&a]).check(MAP, Some(&e2)),
            Err(Rejection::NewKeysUnproven)
        );
        signed(ix, rotate, &[&a, &b]).check(MAP, Some(&e2)).unwrap();
    }

    #[test]
    fn stale_replayed_and_misdirected_mutations_are_refused() {
        let a = key(1);
        let ix = [9; 32];
        let first = signed(ix, entry(b"v1", &[&a], [0; 32]), &[&a]);
        let e1 = first.entry.clone();
        // Replaying the first registration once the index is set.
        assert_eq!(first.check(MAP, Some(&e1)), Err(Rejection::Stale));
        // Naming an entry that is not the current one.
        let wrong = signed(ix, entry(b"v2", &[&a], [7; 32]), &[&a]);
        assert_eq!(wrong.check(MAP, Some(&e1)), Err(Rejection::Stale));
        // A signature for another index or another map does not carry over.
        let mut moved = signed([8; 32], entry(b"v2", &[&a], e1.hash()), &[&a]);
        moved.index = ix;
        assert_eq!(moved.check(MAP, Some(&e1)), Err(Rejection::NotAuthorised));
        let good = signed(ix, entry(b"v2", &[&a], e1.hash()), &[&a]);
        assert_eq!(
            good.check(MAP + 1, Some(&e1)),
            Err(Rejection::NotAuthorised)
        );
        // A stranger cannot take over a registered index.
        let stranger = key(3);
        let takeover = signed(ix, entry(b"x", &[&stranger], e1.hash()), &[&stranger]);
        assert_eq!(
            takeover.check(MAP, Some(&e1)),
            Err(Rejection::NotAuthorised)
        );
    }

    #[test]
    fn encodings_round_trip_and_refuse_garbage() {
        let (a, b) = (key(1), key(2));
        let m = signed([3; 32], entry(b"v", &[&a, &b], [4; 32]), &[&a, &b]);
        assert_eq!(Mutation::decode(&m.encode()), Ok(m.clone()));
        assert_eq!(Entry::decode(&m.entry.encode()), Ok(m.entry.clone()));
        let bytes = m.encode();
        for cut in [0, 31, 32, 100, bytes.len() - 1] {
            assert!(Mutation::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            Mutation::decode(&long),
            Err(DecodeError::Trailing("mutation"))
        );
        let mut no_keys = m.entry.encode();
        no_keys[64] = 0;
        no_keys.truncate(65);
        assert_eq!(Entry::decode(&no_keys), Err(DecodeError::KeyCount(0)));
        for r in [
            Rejection::Stale,
            Rejection::NotAuthorised,
            Rejection::NewKeysUnproven,
        ] {
            assert_eq!(Rejection::from_code(r.code()), Some(r));
        }
        assert_eq!(Rejection::from_code(0), None);
    }

    #[test]
    fn commitments_bind_id_value_and_nonce() {
        let n = [1; NONCE_LEN];
        let c = commit(b"alice", b"key", &n);
        assert_ne!(c, commit(b"alicek", b"ey", &n));
        assert_ne!(c, commit(b"alice", b"key", &[2; NONCE_LEN]));
        assert_ne!(c, commit(b"bob", b"key", &n));
    }
}
