//! Verification of RFC 6962 / RFC 9162 inclusion and consistency proofs.

use super::hash::{node_hash, Hash};
use thiserror::Error;

/// Why a proof did not verify.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum VerifyError {
    /// The sizes or index do not describe a valid proof request.
    #[error("invalid proof parameters: {0}")]
    InvalidInput(&'static str),
    /// The proof has the wrong number of hashes for the sizes given.
    #[error("proof has the wrong length")]
    WrongLength,
    /// The recomputed root does not match the expected one.
    #[error("proof does not lead to the expected root")]
    RootMismatch,
}

/// Verifies an inclusion proof (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    path: &[Hash],
    root: &Hash,
) -> Result<(), VerifyError> {
    if index >= size {
        return Err(VerifyError::InvalidInput("leaf index not below tree size"));
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in path {
        if snode == 0 {
            return Err(VerifyError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(VerifyError::WrongLength);
    }
    if r != *root {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

/// Verifies a consistency proof (RFC 9162 section 2.1.4.2) between the tree of `old_size`
/// with root `old_root` and the tree of `new_size` with root `new_root`.
///
/// The trivial cases need an empty proof: `old_size == 0` (the empty tree is a prefix of
/// every tree) and `old_size == new_size` (the roots must then be equal).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    path: &[Hash],
) -> Result<(), VerifyError> {
    if old_size > new_size {
        return Err(VerifyError::InvalidInput("old size larger than new size"));
    }
    if old_size == 0 || old_size == new_size {
        if !path.is_empty() {
            return Err(VerifyError::WrongLength);
        }
        if old_size == new_size && old_root != new_root {
            return Err(VerifyError::RootMismatch);
        }
        return Ok(());
    }
    if path.is_empty() {
        return Err(VerifyError::WrongLength);
    }
    let mut hashes = path.iter();
    let first = if old_size.is_power_of_two() {
        *old_root
    } else {
        *hashes.next().expect("path is not empty")
    };
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (first, first);
    for c in hashes {
        if snode == 0 {
            return Err(VerifyError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(VerifyError::WrongLength);
    }
    if fr != *old_root || sr != *new_root {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}
