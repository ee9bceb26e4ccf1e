//! Witness cosignatures (log.md section 2.2.3, C2SP tlog-cosignature): the signed message,
//! the Sigsum wire value and the signed-note line a tlog-witness returns.

use super::ascii::{parse_hex, parse_int};
use super::checkpoint::{key_id, Checkpoint, SIG_TYPE_COSIGNATURE};
use super::crypto::{BadSignature, PublicKey, Signature};
use crate::merkle::Hash;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use thiserror::Error;

/// One witness's cosignature of a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cosignature {
    /// SHA-256 of the witness public key.
    pub key_hash: Hash,
    /// Unix seconds at which the witness cosigned.
    pub timestamp: u64,
    /// Ed25519 signature over [`cosigned_message`].
    pub signature: Signature,
}

/// A signed-note line from a witness that is not a usable cosignature.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum NoteLineError {
    /// Not of the form `— <name> <base64>`.
    #[error("malformed signature line")]
    Malformed,
    /// Another signature type (ML-DSA, say) or another key: to be skipped, not an error of
    /// the witness.
    #[error("signature line is not an Ed25519 cosignature by this witness")]
    Unwanted,
}

/// `"cosignature/v1\ntime <t>\n" || checkpoint body`: what a witness signs.
pub fn cosigned_message(timestamp: u64, checkpoint: &Checkpoint) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{}", checkpoint.body())
}

impl Cosignature {
    /// Checks the cosignature under `witness` for `checkpoint`.
    pub fn verify(&self, witness: &PublicKey, checkpoint: &Checkpoint) -> Result<(), BadSignature> {
        if witness.key_hash() != self.key_hash {
            return Err(BadSignature("cosignature (key hash mismatch)"));
        }
        witness.verify(
            cosigned_message(self.timestamp, checkpoint).as_bytes(),
            &self.signature,
            "cosignature",
        )
    }

    /// The value of a `cosignature=` line: `<key hash hex> <timestamp> <signature hex>`.
    pub fn wire_value(&self) -> String {
        format!(
            "{} {} {}",
            self.key_hash.to_hex(),
            self.timestamp,
            hex::encode(self.signature.0)
        )
    }

    /// Parses the value of a `cosignature=` line.
    pub fn parse_wire_value(values: &[&str]) -> Result<Cosignature, String> {
        let [kh, ts, sig] = values else {
            return Err("expected three values".into());
        };
        Ok(Cosignature {
            key_hash: Hash(parse_hex::<32>(kh)?),
            timestamp: parse_int(ts)?,
            signature: Signature(parse_hex::<64>(sig)?),
        })
    }

    /// The signed-note line for this cosignature under the witness key name `name`.
    pub fn note_line(&self, name: &str, witness: &PublicKey) -> String {
        let mut blob = Vec::with_capacity(76);
        blob.extend_from_slice(&key_id(name, SIG_TYPE_COSIGNATURE, witness));
        blob.extend_from_slice(&self.timestamp.to_be_bytes());
        blob.extend_from_slice(&self.signature.0);
        format!("\u{2014} {name} {}\n", B64.encode(blob))
    }

    /// Reads one signed-note line (without its newline) returned by a witness whose public
    /// key is `witness`. Lines of other types or other keys are [`NoteLineError::Unwanted`].
    /// The signature itself is not checked here; use [`Cosignature::verify`].
    pub fn from_note_line(line: &str, witness: &PublicKey) -> Result<Cosignature, NoteLineError> {
        let rest = line
            .strip_prefix("\u{2014} ")
            .ok_or(NoteLineError::Malformed)?;
        let (name, b64) = rest.rsplit_once(' ').ok_or(NoteLineError::Malformed)?;
        if name.is_empty() || name.contains(' ') {
            return Err(NoteLineError::Malformed);
        }
        let blob = B64.decode(b64).map_err(|_| NoteLineError::Malformed)?;
        if blob.len() != 4 + 8 + 64 || blob[..4] != key_id(name, SIG_TYPE_COSIGNATURE, witness) {
            return Err(NoteLineError::Unwanted);
        }
        let cosignature = Cosignature {
            key_hash: witness.key_hash(),
            timestamp: u64::from_be_bytes(blob[4..12].try_into().expect("8 bytes")),
            signature: Signature(blob[12..].try_into().expect("64 bytes")),
        };
        // A note line can carry values the Sigsum wire format cannot (a time above
        // 2^63 - 1): such a cosignature, once published, would make the head unreadable
        // wherever it is parsed again, so it is taken only if the wire parser accepts it.
        if !cosignature.survives_wire_format() {
            return Err(NoteLineError::Malformed);
        }
        Ok(cosignature)
    }

    /// Whether [`Cosignature::parse_wire_value`] reads back exactly this cosignature.
    pub fn survives_wire_format(&self) -> bool {
        let value = self.wire_value();
        let values: Vec<&str> = value.split(' ').collect();
        Cosignature::parse_wire_value(&values).as_ref() == Ok(self)
    }
}
