//! Sigsum v1 byte formats the checkers verify: the tree leaf, the checkpoint body the log
//! signs, and the cosignature message witnesses sign (Sigsum `log.md` §2.2.2-2.2.4, C2SP
//! tlog-checkpoint and tlog-cosignature). Written independently of the server's
//! `src/sigsum`, for the same reason as [`super::merkle`].

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::merkle::{leaf_hash, Hash};
use crate::history::HeadValue;

/// Why a value from the history or the final state cannot be checked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum FormatError {
    /// A hex field does not decode to the expected number of bytes.
    #[error("{field}: expected {len} bytes of hex, got {value:?}")]
    BadHex {
        /// Which field.
        field: &'static str,
        /// Expected byte length.
        len: usize,
        /// The offending text (truncated).
        value: String,
    },
}

/// Why a signature is rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum SignatureError {
    /// The public key is not a valid Ed25519 point.
    #[error("invalid Ed25519 public key")]
    BadKey,
    /// The signature does not verify over the expected message.
    #[error("signature does not verify")]
    Invalid,
}

/// Decodes exactly `N` bytes of hex (either case).
pub(crate) fn decode_hex<const N: usize>(
    field: &'static str,
    value: &str,
) -> Result<[u8; N], FormatError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(value, &mut out).map_err(|_| FormatError::BadHex {
        field,
        len: N,
        value: value.chars().take(80).collect(),
    })?;
    Ok(out)
}

/// The RFC 6962 leaf hash of the 128-byte Sigsum tree leaf
/// `checksum[32] || signature[64] || key_hash[32]`.
pub(crate) fn tree_leaf_hash(
    checksum: &str,
    signature: &str,
    key_hash: &str,
) -> Result<Hash, FormatError> {
    let mut leaf = [0u8; 128];
    leaf[..32].copy_from_slice(&decode_hex::<32>("checksum", checksum)?);
    leaf[32..96].copy_from_slice(&decode_hex::<64>("signature", signature)?);
    leaf[96..].copy_from_slice(&decode_hex::<32>("key_hash", key_hash)?);
    Ok(leaf_hash(&leaf))
}

/// `SHA-256(public key)`, how Sigsum names logs and witnesses.
pub(crate) fn key_hash(public_key: &[u8; 32]) -> Hash {
    Sha256::digest(public_key).into()
}

/// The C2SP checkpoint body the log signs, byte for byte: origin line
/// `sigsum.org/v1/tree/<lowercase hex key hash>`, decimal size, padded standard base64
/// root, each terminated by `\n`, no namespace prefix.
pub(crate) fn checkpoint_body(log_key_hash: &Hash, size: u64, root: &Hash) -> String {
    format!(
        "sigsum.org/v1/tree/{}\n{}\n{}\n",
        hex::encode(log_key_hash),
        size,
        STANDARD.encode(root)
    )
}

/// The message a witness signs: `cosignature/v1\ntime <unix seconds>\n` followed by the
/// checkpoint body.
pub(crate) fn cosignature_message(
    log_key_hash: &Hash,
    size: u64,
    root: &Hash,
    timestamp: u64,
) -> String {
    format!(
        "cosignature/v1\ntime {timestamp}\n{}",
        checkpoint_body(log_key_hash, size, root)
    )
}

fn verify(
    public_key: &[u8; 32],
    message: &[u8],
    signature: &[u8; 64],
) -> Result<(), SignatureError> {
    let key = VerifyingKey::from_bytes(public_key).map_err(|_| SignatureError::BadKey)?;
    key.verify(message, &Signature::from_bytes(signature))
        .map_err(|_| SignatureError::Invalid)
}

/// Verifies the log's signature on the tree head (`size`, `root`).
pub(crate) fn verify_tree_head(
    log_public_key: &[u8; 32],
    size: u64,
    root: &Hash,
    signature: &[u8; 64],
) -> Result<(), SignatureError> {
    let body = checkpoint_body(&key_hash(log_public_key), size, root);
    verify(log_public_key, body.as_bytes(), signature)
}

/// Verifies one witness cosignature on the log's tree head (`size`, `root`).
pub(crate) fn verify_cosignature(
    witness_public_key: &[u8; 32],
    log_public_key: &[u8; 32],
    size: u64,
    root: &Hash,
    timestamp: u64,
    signature: &[u8; 64],
) -> Result<(), SignatureError> {
    let message = cosignature_message(&key_hash(log_public_key), size, root, timestamp);
    verify(witness_public_key, message.as_bytes(), signature)
}

/// A served tree head with its binary fields decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedHead {
    /// Tree size.
    pub(crate) size: u64,
    /// Root hash.
    pub(crate) root: Hash,
    /// The log's signature.
    pub(crate) signature: [u8; 64],
    /// Cosignatures: (witness key hash, timestamp, signature).
    pub(crate) cosignatures: Vec<(Hash, u64, [u8; 64])>,
}

/// Decodes the hex fields of a head as the workload recorded it.
pub(crate) fn parse_head(head: &HeadValue) -> Result<ParsedHead, FormatError> {
    let cosignatures = head
        .cosignatures
        .iter()
        .map(|c| {
            Ok((
                decode_hex::<32>("cosignature key_hash", &c.key_hash)?,
                c.timestamp,
                decode_hex::<64>("cosignature signature", &c.signature)?,
            ))
        })
        .collect::<Result<_, FormatError>>()?;
    Ok(ParsedHead {
        size: head.size,
        root: decode_hex::<32>("root_hash", &head.root_hash)?,
        signature: decode_hex::<64>("signature", &head.signature)?,
        cosignatures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn seed(first: u8, rest: u8) -> [u8; 32] {
        let mut s = [rest; 32];
        s[0] = first;
        s
    }

    fn h32(s: &str) -> [u8; 32] {
        decode_hex::<32>("test", s).unwrap()
    }

    fn h64(s: &str) -> [u8; 64] {
        decode_hex::<64>("test", s).unwrap()
    }

    /// Reference TV1: sigsum-go's checkpoint test (seed 0x11 then zeros, size 10).
    #[test]
    fn checkpoint_body_and_signature_match_reference_tv1() {
        let sk = SigningKey::from_bytes(&seed(0x11, 0));
        let pk = sk.verifying_key().to_bytes();
        assert_eq!(
            hex::encode(pk),
            "66e0b858e462a609e66fe71370c816d8846ff103d5499a22a7fec37fdbc424a7"
        );
        let kh = key_hash(&pk);
        assert_eq!(
            hex::encode(kh),
            "e796172b92befd62d9dc67e41c2f5bc9d3100a3023b20b1ca40288dd1c679e69"
        );
        let mut root = [0u8; 32];
        root[..3].copy_from_slice(&[0x1c, 0x0e, 0x47]);
        assert_eq!(
            checkpoint_body(&kh, 10, &root),
            "sigsum.org/v1/tree/e796172b92befd62d9dc67e41c2f5bc9d3100a3023b20b1ca40288dd1c679e69\n\
             10\nHA5HAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
        );
        let sig = h64("49fc17ca2571ead417514576fdb7e40ff96acfdca16ae92ebb44ee8bcc78fe70860c28b98131a301bf953ce7c6ee8e5068e3b79c8943a6d7b5371fef5f0ca804");
        verify_tree_head(&pk, 10, &root, &sig).unwrap();
        assert_eq!(
            verify_tree_head(&pk, 11, &root, &sig),
            Err(SignatureError::Invalid)
        );
        let mut other_root = root;
        other_root[31] = 1;
        assert_eq!(
            verify_tree_head(&pk, 10, &other_root, &sig),
            Err(SignatureError::Invalid)
        );
    }

    /// Reference TV2: the leaf of `"hello\n"` under the TV1 key.
    #[test]
    fn tree_leaf_hash_matches_reference_tv2() {
        let h = tree_leaf_hash(
            "ecb65bb98f9d905b70458986c39fcbad7715e5f2fcc3b1f07767d7c83e2438cc",
            "667b50a9c6e397438c07ece2f76414e60403fe15be5996f9fe754a7226fdd4719cf26afdf1f7d74cd49e88cff4f1ea940aebd02ced0fe98a8ff415b2c3c4cb0d",
            "E796172B92BEFD62D9DC67E41C2F5BC9D3100A3023B20B1CA40288DD1C679E69",
        )
        .unwrap();
        assert_eq!(
            hex::encode(h),
            "a366cfed9395928cb422fb4ea633160311858a84c7bcc11c7f7d188481ff70e7"
        );
        assert!(tree_leaf_hash("ab", "cd", "ef").is_err());
    }

    /// Reference TV4/TV5: a 3-leaf log (seed 0x01 x 32), its signed head, a witness
    /// cosignature (seed 0x02 x 32) and an inclusion proof, all produced by sigsum-go.
    #[test]
    fn head_cosignature_and_inclusion_match_reference_tv4_tv5() {
        let log = SigningKey::from_bytes(&[1u8; 32])
            .verifying_key()
            .to_bytes();
        let witness = SigningKey::from_bytes(&[2u8; 32])
            .verifying_key()
            .to_bytes();
        assert_eq!(
            hex::encode(key_hash(&witness)),
            "6a3803d5f059902a1c6dafbc9ba4729212f7caac08634cc3ae76b27529f03827"
        );
        let root = h32("24d8ab74f77842f7065b00ef7a7cac6dac727a7bab6c956cadd35c13c3727b1b");
        let ts = 1_795_303_196;
        assert_eq!(
            cosignature_message(&key_hash(&log), 3, &root, ts),
            "cosignature/v1\ntime 1795303196\nsigsum.org/v1/tree/34750f98bd59fcfc946da45aaabe933be154a4b5094e1c4abf42866505f3c97e\n3\nJNirdPd4QvcGWwDvenysbaxyenurbJVsrdNcE8Nyexs=\n"
        );
        let log_sig = h64("1cfa4be4befa504a0528f6027279dceb7e123fd78be0fd93514dbad2be017a0171097f69da83a3dfcd03fa98a6918bdb31226b514923c88cdd7d0707d0bfc801");
        verify_tree_head(&log, 3, &root, &log_sig).unwrap();
        let cosig = h64("c4818342cc333715e588f0a5f1470d2083b9d53815352b89a807210ecb0880bcaa876ba081a95d50dcc38fd727ad3009f686d1f84fc5c486c13abd5f30bfde0f");
        verify_cosignature(&witness, &log, 3, &root, ts, &cosig).unwrap();
        assert!(verify_cosignature(&witness, &log, 3, &root, ts + 1, &cosig).is_err());
        assert!(verify_cosignature(&log, &log, 3, &root, ts, &cosig).is_err());
        // The log signature is not a cosignature and vice versa.
        assert!(verify_tree_head(&log, 3, &root, &cosig).is_err());

        // TV5: leaf index 2 of that tree, message file "Third\n".
        let checksum = Sha256::digest(Sha256::digest(b"Third\n"));
        let leaf = tree_leaf_hash(
            &hex::encode(checksum),
            "25450be659edc6c9572fcd104b8d29cbe6e4f595d3be88f3055ac6c2982095b297bef5360e355c544d3b8b680fc54e2d517371293b3879f963088464bacb7a0b",
            "e796172b92befd62d9dc67e41c2f5bc9d3100a3023b20b1ca40288dd1c679e69",
        )
        .unwrap();
        let path = [h32(
            "8e1e35e9f00111bb13ecd70ef781965bd178290a0a5d510160aa95d8fcf00fbc",
        )];
        super::super::merkle::verify_inclusion(&leaf, 2, 3, &path, &root).unwrap();
        assert!(super::super::merkle::verify_inclusion(&leaf, 1, 3, &path, &root).is_err());
    }

    #[test]
    fn parse_head_decodes_and_rejects_bad_hex() {
        let head = HeadValue {
            size: 3,
            root_hash: "24d8ab74f77842f7065b00ef7a7cac6dac727a7bab6c956cadd35c13c3727b1b".into(),
            signature: "00".repeat(64),
            cosignatures: vec![crate::history::CosignatureValue {
                key_hash: "11".repeat(32),
                timestamp: 5,
                signature: "22".repeat(64),
            }],
        };
        let p = parse_head(&head).unwrap();
        assert_eq!(p.size, 3);
        assert_eq!(p.cosignatures, vec![([0x11; 32], 5, [0x22; 64])]);
        let bad = HeadValue {
            root_hash: "zz".into(),
            ..head
        };
        assert!(parse_head(&bad).is_err());
    }
}
