//! A witness's answer to `add-checkpoint`. The fuzzer chooses the time, the name and the
//! text around a cosignature line that is correctly signed by the witness key (a fuzzer
//! cannot forge Ed25519), and anything else in the body. Whatever the publisher takes
//! from it must make a head that every reader can parse back: the defect where a signed
//! time of 2^64-1 froze publication.
#![no_main]

use arbitrary::Arbitrary;
use ed25519_dalek::{Signer, SigningKey};
use libfuzzer_sys::fuzz_target;
use quorumlog::merkle::Hash;
use quorumlog::publish::witness::fuzzing::answer;
use quorumlog::sigsum::checkpoint::{key_id, Checkpoint, SIG_TYPE_COSIGNATURE};
use quorumlog::sigsum::cosignature::cosigned_message;
use quorumlog::sigsum::crypto::{PublicKey, Signature};
use quorumlog::sigsum::tree_head::{CosignedTreeHead, SignedTreeHead};

#[derive(Debug, Arbitrary)]
struct Answer<'a> {
    timestamp: u64,
    name: &'a str,
    before: &'a [u8],
    after: &'a [u8],
    /// Sign another size than the one asked for.
    size_skew: u8,
    /// Flip one byte of the signed blob.
    corrupt: Option<u8>,
}

fuzz_target!(|a: Answer<'_>| {
    let witness = SigningKey::from_bytes(&[3; 32]);
    let witness_key = PublicKey(witness.verifying_key().to_bytes());
    let checkpoint = Checkpoint {
        log_key_hash: Hash([1; 32]),
        size: 10,
        root_hash: Hash([2; 32]),
    };
    let signed = Checkpoint {
        size: checkpoint.size + u64::from(a.size_skew % 2),
        ..checkpoint
    };
    let sig = witness.sign(cosigned_message(a.timestamp, &signed).as_bytes());
    let mut blob = key_id(a.name, SIG_TYPE_COSIGNATURE, &witness_key).to_vec();
    blob.extend_from_slice(&a.timestamp.to_be_bytes());
    blob.extend_from_slice(&sig.to_bytes());
    if let Some(i) = a.corrupt {
        let i = usize::from(i) % blob.len();
        blob[i] ^= 1;
    }
    let b64 = {
        use base64_engine::encode;
        encode(&blob)
    };
    let mut body = a.before.to_vec();
    body.extend_from_slice(format!("\u{2014} {} {b64}\n", a.name).as_bytes());
    body.extend_from_slice(a.after);

    let (_size, cosignature) = answer(&body, &witness_key, &checkpoint);
    if let Some(c) = cosignature {
        assert_eq!(c.key_hash, witness_key.key_hash());
        assert!(c.verify(&witness_key, &checkpoint).is_ok());
        let head = CosignedTreeHead {
            head: SignedTreeHead {
                size: checkpoint.size,
                root_hash: checkpoint.root_hash,
                signature: Signature([0; 64]),
            },
            cosignatures: vec![c],
        };
        let again = CosignedTreeHead::parse(head.to_ascii().as_bytes())
            .expect("a head with a taken cosignature must parse back");
        assert_eq!(again, head);
    }
    // The 409 path: any body, never a panic.
    let _ = answer(a.before, &witness_key, &checkpoint);
});

/// Standard base64 with padding, written here so the target does not depend on how the
/// server encodes.
mod base64_engine {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(data: &[u8]) -> String {
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}
