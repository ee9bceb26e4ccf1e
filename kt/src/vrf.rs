//! The VRF that turns a user id into a map index: ECVRF over ristretto255 (the C2SP
//! `vrf-r255` suite, RFC 9381's construction). Only the directory's key holder can compute
//! an index, so the map does not reveal which ids it holds; anyone with the public key can
//! check that an index belongs to an id.
//!
//! The index is the first 32 bytes of the 64-byte VRF output (itself a SHA-512 output).

use crate::hasher::Index;
use thiserror::Error;

/// Bytes of an encoded proof.
pub const PROOF_LEN: usize = 80;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum VrfError {
    #[error("not a valid VRF secret key (a canonical non-zero scalar)")]
    SecretKey,
    #[error("not a valid VRF public key")]
    PublicKey,
    #[error("malformed VRF proof")]
    MalformedProof,
    #[error("the VRF proof does not verify for this id")]
    BadProof,
}

/// The directory's VRF secret key. Its bytes are never printed.
#[derive(Clone)]
pub struct VrfSecretKey(vrf_r255::SecretKey);

impl std::fmt::Debug for VrfSecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VrfSecretKey(..)")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VrfPublicKey(vrf_r255::PublicKey);

fn index_of(output: &[u8; 64]) -> Index {
    let mut i = [0u8; 32];
    i.copy_from_slice(&output[..32]);
    i
}

/// The output of a proof this process just made: the suite's proof-to-hash,
/// `SHA-512(suite_string || 0x03 || Gamma || 0x00)` with Gamma the proof's first 32
/// bytes. The crate exposes the output only through verification, which costs more than
/// proving; a proof from our own key needs no verifying. Never used on a received proof.
fn own_output(proof: &[u8; PROOF_LEN]) -> [u8; 64] {
    use sha2::{Digest, Sha512};
    let mut h = Sha512::new();
    h.update([0xff]);
    h.update(b"c2sp.org/vrf-r255");
    h.update([0x03]);
    h.update(&proof[..32]);
    h.update([0x00]);
    h.finalize().into()
}

impl VrfSecretKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, VrfError> {
        Option::from(vrf_r255::SecretKey::from_bytes(bytes))
            .map(VrfSecretKey)
            .ok_or(VrfError::SecretKey)
    }

    pub fn public_key(&self) -> VrfPublicKey {
        VrfPublicKey(vrf_r255::PublicKey::from(self.0))
    }

    /// The index of `id` and the proof that it is `id`'s.
    pub fn evaluate(&self, id: &[u8]) -> (Index, [u8; PROOF_LEN]) {
        let proof = self.0.prove(id).to_bytes();
        (index_of(&own_output(&proof)), proof)
    }
}

impl VrfPublicKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, VrfError> {
        vrf_r255::PublicKey::from_bytes(bytes)
            .map(VrfPublicKey)
            .ok_or(VrfError::PublicKey)
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The index `proof` shows to belong to `id`.
    pub fn verify(&self, id: &[u8], proof: &[u8; PROOF_LEN]) -> Result<Index, VrfError> {
        let proof = vrf_r255::Proof::from_bytes(*proof).ok_or(VrfError::MalformedProof)?;
        Option::<[u8; 64]>::from(self.0.verify(id, &proof))
            .map(|o| index_of(&o))
            .ok_or(VrfError::BadProof)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes<const N: usize>(s: &str) -> [u8; N] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// The test vector of the C2SP vrf-r255 specification.
    #[test]
    fn c2sp_vector() {
        let sk = VrfSecretKey::from_bytes(bytes(
            "3431c2b03533e280b23232e280b34e2c3132c2b03238e280b23131e280b34500",
        ))
        .unwrap();
        let pk = sk.public_key();
        assert_eq!(
            pk.to_bytes(),
            bytes::<32>("54136cd90d99fbd1d4e855d9556efea87ba0337f2a6ce22028d0f5726fcb854e")
        );
        let alpha = b"c2sp.org/vrf-r255";
        let (index, proof) = sk.evaluate(alpha);
        assert_eq!(
            proof,
            bytes::<80>("0a97d961262fb549b4175c5117860f42ae44a123f93c476c439eddd1c0cff9265c805525233e2284dbed45e593b8eea31d5ca9734d72bcbba9738d5237f955f3b2422351149d1312503b6441a47c940c")
        );
        let beta = bytes::<64>("dd653f0879b48c3ef69e13551239bec4cbcc1c18fe8894de2e9e1c790e18273603bf1c6c25d7a797aeff3c43fd32b974d3fcbd4bcce916007097922a3ea3a794");
        assert_eq!(index[..], beta[..32]);
        assert_eq!(own_output(&proof), beta);
        assert_eq!(pk.verify(alpha, &proof), Ok(index));
    }

    #[test]
    fn a_proof_is_bound_to_its_id_and_key() {
        let sk = VrfSecretKey::from_bytes([7; 32]).unwrap();
        let (index, proof) = sk.evaluate(b"alice@example.org");
        let pk = sk.public_key();
        assert_eq!(pk.verify(b"alice@example.org", &proof), Ok(index));
        // The prover's shortcut gives what verification gives, for other ids too.
        for id in [&b""[..], b"x", &[0xff; 300]] {
            let (ix, p) = sk.evaluate(id);
            assert_eq!(pk.verify(id, &p), Ok(ix));
        }
        assert_eq!(
            pk.verify(b"bob@example.org", &proof),
            Err(VrfError::BadProof)
        );
        let other = VrfSecretKey::from_bytes([8; 32]).unwrap().public_key();
        assert_eq!(
            other.verify(b"alice@example.org", &proof),
            Err(VrfError::BadProof)
        );
        let mut garbled = proof;
        garbled[40] ^= 1;
        assert!(pk.verify(b"alice@example.org", &garbled).is_err());
        assert_eq!(
            VrfSecretKey::from_bytes([0; 32]).map(|_| ()),
            Err(VrfError::SecretKey)
        );
        assert!(!format!("{sk:?}").contains("07"));
    }
}
