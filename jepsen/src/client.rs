//! The workload's side of the Sigsum v1 API: signing add-leaf requests and reading the
//! answers. Written here rather than taken from the server, so the suite talks to the
//! cluster as an independent client would.

use crate::check::FinalLeaf;
use crate::history::{CosignatureValue, HeadValue, LeafValue};
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// What the signed leaf message is prefixed with (Sigsum v1 tree-leaf namespace, NUL).
const LEAF_NAMESPACE: &[u8] = b"sigsum.org/v1/tree-leaf\0";

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// One workload client's submitter key.
pub(crate) struct Submitter {
    client: u64,
    key: SigningKey,
    /// Makes messages unique per test run.
    run: u64,
}

/// A signed add-leaf request and the leaf it makes.
pub(crate) struct Submission {
    pub(crate) body: String,
    /// The tree leaf, for the history.
    pub(crate) leaf: LeafValue,
}

impl Submitter {
    /// The key of client `client` in the run with seed `run`.
    pub(crate) fn new(run: u64, client: u64) -> Submitter {
        let seed = sha256(&[
            b"quorumlog-jepsen client",
            &run.to_be_bytes(),
            &client.to_be_bytes(),
        ]);
        Submitter {
            client,
            key: SigningKey::from_bytes(&seed),
            run,
        }
    }

    /// The request for this client's leaf number `seq`.
    pub(crate) fn submission(&self, seq: u64) -> Submission {
        let message = sha256(&[
            b"quorumlog-jepsen leaf",
            &self.run.to_be_bytes(),
            &self.client.to_be_bytes(),
            &seq.to_be_bytes(),
        ]);
        let checksum = sha256(&[&message]);
        let mut signed = LEAF_NAMESPACE.to_vec();
        signed.extend_from_slice(&checksum);
        let signature = self.key.sign(&signed).to_bytes();
        let public = self.key.verifying_key().to_bytes();
        Submission {
            body: format!(
                "message={}\nsignature={}\npublic_key={}\n",
                hex::encode(message),
                hex::encode(signature),
                hex::encode(public)
            ),
            leaf: LeafValue {
                client: self.client,
                seq,
                checksum: hex::encode(checksum),
                signature: hex::encode(signature),
                key_hash: hex::encode(sha256(&[&public])),
            },
        }
    }
}

/// The RFC 6962 leaf hash of a tree leaf, hex (for inclusion-proof requests).
pub(crate) fn leaf_hash_hex(leaf: &LeafValue) -> Option<String> {
    let mut bytes = vec![0u8];
    for f in [&leaf.checksum, &leaf.signature, &leaf.key_hash] {
        bytes.extend(hex::decode(f).ok()?);
    }
    Some(hex::encode(sha256(&[&bytes])))
}

/// An HTTP answer: status and body.
pub(crate) type Answer = Result<(u16, String), String>;

/// An HTTP client of the nodes' public ports.
#[derive(Clone)]
pub(crate) struct Api {
    http: reqwest::Client,
}

impl Api {
    /// A client whose requests give up after `timeout`.
    pub(crate) fn new(timeout: Duration) -> Api {
        // reqwest is built without a crypto provider of its own (Cargo.toml); this client
        // only speaks plain HTTP, but building it needs one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Api {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .pool_idle_timeout(Duration::from_secs(5))
                .build()
                .expect("HTTP client"),
        }
    }

    /// `GET http://addr/path`.
    pub(crate) async fn get(&self, addr: &str, path: &str) -> Answer {
        let r = self
            .http
            .get(format!("http://{addr}/{path}"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        Ok((status, r.text().await.map_err(|e| e.to_string())?))
    }

    /// `POST http://addr/path` with a JSON body.
    pub(crate) async fn post(&self, addr: &str, path: &str, body: &str) -> Answer {
        let r = self
            .http
            .post(format!("http://{addr}/{path}"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        Ok((status, r.text().await.map_err(|e| e.to_string())?))
    }

    /// `POST http://addr/add-leaf`.
    pub(crate) async fn add_leaf(&self, addr: &str, body: &str) -> Answer {
        let r = self
            .http
            .post(format!("http://{addr}/add-leaf"))
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        Ok((status, r.text().await.map_err(|e| e.to_string())?))
    }
}

/// The values of every `key=value` line with this key, in order.
fn values<'a>(body: &'a str, key: &str) -> Vec<&'a str> {
    body.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

fn hex_of_len(s: &str, bytes: usize) -> Option<String> {
    (s.len() == 2 * bytes && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_lowercase())
}

/// Parses a `get-tree-head` answer.
pub(crate) fn parse_tree_head(body: &str) -> Option<HeadValue> {
    let size = values(body, "size").first()?.parse().ok()?;
    let root_hash = hex_of_len(values(body, "root_hash").first()?, 32)?;
    let signature = hex_of_len(values(body, "signature").first()?, 64)?;
    let mut cosignatures = Vec::new();
    for v in values(body, "cosignature") {
        let mut w = v.split(' ');
        let (Some(kh), Some(ts), Some(sig), None) = (w.next(), w.next(), w.next(), w.next()) else {
            return None;
        };
        cosignatures.push(CosignatureValue {
            key_hash: hex_of_len(kh, 32)?,
            timestamp: ts.parse().ok()?,
            signature: hex_of_len(sig, 64)?,
        });
    }
    Some(HeadValue {
        size,
        root_hash,
        signature,
        cosignatures,
    })
}

/// Parses a proof answer: the `leaf_index` if present and the `node_hash` lines.
pub(crate) fn parse_proof(body: &str) -> Option<(Option<u64>, Vec<String>)> {
    let index = match values(body, "leaf_index").first() {
        Some(v) => Some(v.parse().ok()?),
        None => None,
    };
    let path = values(body, "node_hash")
        .into_iter()
        .map(|h| hex_of_len(h, 32))
        .collect::<Option<Vec<_>>>()?;
    Some((index, path))
}

/// Parses a `get-leaves` answer.
pub(crate) fn parse_leaves(body: &str) -> Option<Vec<FinalLeaf>> {
    values(body, "leaf")
        .into_iter()
        .map(|v| {
            let mut w = v.split(' ');
            let (Some(c), Some(s), Some(k), None) = (w.next(), w.next(), w.next(), w.next()) else {
                return None;
            };
            Some(FinalLeaf {
                checksum: hex_of_len(c, 32)?,
                signature: hex_of_len(s, 64)?,
                key_hash: hex_of_len(k, 32)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};

    #[test]
    fn submissions_are_signed_sigsum_leaves() {
        let s = Submitter::new(7, 3);
        let a = s.submission(1);
        let b = s.submission(2);
        assert_ne!(a.leaf.checksum, b.leaf.checksum);
        let line = |k: &str| {
            a.body
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap()
                .to_string()
        };
        let message = hex::decode(line("message")).unwrap();
        assert_eq!(hex::encode(sha256(&[&message])), a.leaf.checksum);
        let key: [u8; 32] = hex::decode(line("public_key")).unwrap().try_into().unwrap();
        let sig: [u8; 64] = hex::decode(line("signature")).unwrap().try_into().unwrap();
        let mut signed = LEAF_NAMESPACE.to_vec();
        signed.extend(hex::decode(&a.leaf.checksum).unwrap());
        VerifyingKey::from_bytes(&key)
            .unwrap()
            .verify(&signed, &Signature::from_bytes(&sig))
            .unwrap();
        assert_eq!(a.leaf.key_hash, hex::encode(sha256(&[&key])));
    }

    #[test]
    fn parses_answers_and_refuses_malformed_ones() {
        let h = format!(
            "size=5\nroot_hash={}\nsignature={}\ncosignature={} 17 {}\n",
            "ab".repeat(32),
            "cd".repeat(64),
            "ef".repeat(32),
            "01".repeat(64)
        );
        let head = parse_tree_head(&h).unwrap();
        assert_eq!((head.size, head.cosignatures.len()), (5, 1));
        assert_eq!(head.cosignatures[0].timestamp, 17);
        assert!(parse_tree_head("size=5\n").is_none());
        assert!(parse_tree_head(&h.replace("size=5", "size=x")).is_none());
        let p = parse_proof(&format!("leaf_index=3\nnode_hash={}\n", "aa".repeat(32))).unwrap();
        assert_eq!(p, (Some(3), vec!["aa".repeat(32)]));
        assert!(parse_proof("node_hash=zz\n").is_none());
        let leaves = parse_leaves(&format!(
            "leaf={} {} {}\n",
            "aa".repeat(32),
            "bb".repeat(64),
            "cc".repeat(32)
        ))
        .unwrap();
        assert_eq!(leaves.len(), 1);
        assert!(parse_leaves("leaf=aa bb\n").is_none());
    }
}
