//! The directory workload (`--directory`): writers that each own a few users and change
//! their values through random nodes with signed, check-and-set updates, and a reader of
//! every node's signed map heads. The update format (entries, commitments, mutations) is
//! written here from docs/kt.md, not taken from the server.

use crate::client::Api;
use crate::history::{EventType, KtHeadValue, KtUpdateValue, Op, Process, Recorder};
use crate::schedule::Rng;
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Users each directory writer owns (no other writer changes them, so a check-and-set
/// conflict on a resend means the first send was applied).
const USERS_PER_WRITER: u64 = 3;
const RESEND_AFTER: Duration = Duration::from_millis(500);
const READ_HEADS_EVERY: Duration = Duration::from_secs(1);

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// `commitment || previous || key count || keys`.
fn entry(commitment: &[u8; 32], previous: &[u8; 32], key: &[u8; 32]) -> Vec<u8> {
    let mut e = commitment.to_vec();
    e.extend_from_slice(previous);
    e.push(1);
    e.extend_from_slice(key);
    e
}

fn commitment(id: &str, value: &[u8], nonce: &[u8; 16]) -> [u8; 32] {
    sha256(&[
        b"quorumlog-kt commitment v1\0",
        nonce,
        &(id.len() as u64).to_be_bytes(),
        id.as_bytes(),
        &(value.len() as u64).to_be_bytes(),
        value,
    ])
}

struct User {
    id: String,
    key: SigningKey,
    index: [u8; 32],
    /// Hash of the entry the next change replaces (zero before the first).
    current: [u8; 32],
    version: u64,
}

/// The next update of `user`: the JSON body, the entry it installs, and its history value.
fn next_update(map_id: u64, u: &User, run: u64) -> (String, [u8; 32], KtUpdateValue) {
    let value = format!("{}-v{}", u.id, u.version);
    let nonce: [u8; 16] = sha256(&[
        b"nonce",
        &run.to_be_bytes(),
        u.id.as_bytes(),
        &u.version.to_be_bytes(),
    ])[..16]
        .try_into()
        .expect("16 bytes");
    let public = u.key.verifying_key().to_bytes();
    let e = entry(
        &commitment(&u.id, value.as_bytes(), &nonce),
        &u.current,
        &public,
    );
    let mut signed = b"quorumlog-kt mutation v1\0".to_vec();
    signed.extend_from_slice(&map_id.to_be_bytes());
    signed.extend_from_slice(&u.index);
    signed.extend_from_slice(&e);
    let mut mutation = u.index.to_vec();
    mutation.extend_from_slice(&e);
    mutation.push(1);
    mutation.extend_from_slice(&public);
    mutation.extend_from_slice(&u.key.sign(&signed).to_bytes());
    let body = serde_json::json!({
        "id": u.id,
        "value": hex::encode(value.as_bytes()),
        "nonce": hex::encode(nonce),
        "mutation": hex::encode(&mutation),
    })
    .to_string();
    let v = KtUpdateValue {
        user: u.id.clone(),
        value,
        mutation: hex::encode(&mutation),
        log_index: None,
    };
    (body, sha256(&[&e]), v)
}

pub(crate) struct DirectoryWriter {
    pub(crate) process: u64,
    pub(crate) run: u64,
    pub(crate) api: Api,
    pub(crate) addrs: Arc<Vec<String>>,
    pub(crate) rec: Arc<Recorder>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) every: Duration,
}

impl DirectoryWriter {
    async fn get_json(&self, rng: &mut Rng, path: &str) -> Option<serde_json::Value> {
        let node = rng.below(self.addrs.len() as u64) as usize;
        match self.api.get(&self.addrs[node], path).await {
            Ok((200, body)) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }

    pub(crate) async fn run(self) {
        let mut rng = Rng::new(self.run ^ 0x6b74 ^ self.process);
        // The map id and every user's index, from any node that answers.
        let mut map_id = None;
        while map_id.is_none() && !self.stop.load(Ordering::Relaxed) {
            map_id = self
                .get_json(&mut rng, "kt/v1/parameters")
                .await
                .and_then(|p| p.get("map_id")?.as_u64());
            if map_id.is_none() {
                tokio::time::sleep(RESEND_AFTER).await;
            }
        }
        let Some(map_id) = map_id else { return };
        let mut users = Vec::new();
        for k in 0..USERS_PER_WRITER {
            let id = format!("u{}-{k}@jepsen.example", self.process);
            let key = SigningKey::from_bytes(&sha256(&[
                b"quorumlog-jepsen user",
                &self.run.to_be_bytes(),
                id.as_bytes(),
            ]));
            let mut index = None;
            while index.is_none() && !self.stop.load(Ordering::Relaxed) {
                index = self
                    .get_json(&mut rng, &format!("kt/v1/index?id={id}"))
                    .await
                    .and_then(|a| {
                        let mut i = [0u8; 32];
                        hex::decode_to_slice(a.get("index")?.as_str()?, &mut i).ok()?;
                        Some(i)
                    });
                if index.is_none() {
                    tokio::time::sleep(RESEND_AFTER).await;
                }
            }
            let Some(index) = index else { return };
            users.push(User {
                id,
                key,
                index,
                current: [0; 32],
                version: 1,
            });
        }
        let mut ticker = tokio::time::interval(self.every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let p = Process::Client(self.process);
        let mut turn = 0usize;
        'updates: while !self.stop.load(Ordering::Relaxed) && !users.is_empty() {
            ticker.tick().await;
            let u = turn % users.len();
            turn += 1;
            let (body, new_hash, value) = next_update(map_id, &users[u], self.run);
            let mut resent = false;
            while !self.stop.load(Ordering::Relaxed) {
                let node = 1 + rng.below(self.addrs.len() as u64);
                self.rec.record(
                    p,
                    EventType::Invoke,
                    Some(node),
                    Op::KtUpdate(value.clone()),
                    None,
                );
                let answer = self
                    .api
                    .post(&self.addrs[(node - 1) as usize], "kt/v1/update", &body)
                    .await;
                let (kind, done, error) = match &answer {
                    Ok((200, b)) => {
                        let log_index = serde_json::from_str::<serde_json::Value>(b)
                            .ok()
                            .and_then(|v| v.get("log_index")?.as_u64());
                        let done = KtUpdateValue {
                            log_index,
                            ..value.clone()
                        };
                        (EventType::Ok, done, None)
                    }
                    // This writer alone changes the user: a conflict on a resend means an
                    // earlier send was applied (where, it does not know).
                    Ok((409, b)) if resent => (
                        EventType::Info,
                        value.clone(),
                        Some(format!(
                            "409 on a resend (an earlier send applied): {}",
                            b.trim()
                        )),
                    ),
                    Ok((s @ 400..=499, b)) => (
                        EventType::Fail,
                        value.clone(),
                        Some(format!("{s} {}", b.trim())),
                    ),
                    Ok((s, b)) => (
                        EventType::Info,
                        value.clone(),
                        Some(format!("{s} {}", b.trim())),
                    ),
                    Err(e) => (EventType::Info, value.clone(), Some(e.clone())),
                };
                let conflict_on_resend = matches!(&answer, Ok((409, _))) && resent;
                self.rec
                    .record(p, kind, Some(node), Op::KtUpdate(done), error);
                match kind {
                    EventType::Ok => {
                        users[u].current = new_hash;
                        users[u].version += 1;
                        continue 'updates;
                    }
                    _ if conflict_on_resend => {
                        users[u].current = new_hash;
                        users[u].version += 1;
                        continue 'updates;
                    }
                    EventType::Fail => {
                        // The user's state is no longer known here; leave it alone.
                        users.remove(u);
                        continue 'updates;
                    }
                    _ => {
                        resent = true;
                        tokio::time::sleep(RESEND_AFTER).await;
                    }
                }
            }
        }
    }
}

/// Parses a `/kt/v1/heads` answer.
pub(crate) fn parse_heads(body: &str) -> Option<(Vec<KtHeadValue>, u64)> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let latest = v.get("latest")?.as_u64()?;
    let heads = v
        .get("heads")?
        .as_array()?
        .iter()
        .map(|h| {
            Some(KtHeadValue {
                epoch: h.get("epoch")?.as_u64()?,
                signed_head: h.get("signed_head")?.as_str()?.to_string(),
                leaf: h.get("leaf")?.as_str()?.to_string(),
                leaf_index: h.get("leaf_index")?.as_u64()?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some((heads, latest))
}

/// Polls every node's signed map heads (each node from the epoch after the last it served).
pub(crate) async fn read_heads(
    process: u64,
    api: Api,
    addrs: Arc<Vec<String>>,
    rec: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) {
    let p = Process::Client(process);
    let mut next: BTreeMap<u64, u64> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        for node in 1..=addrs.len() as u64 {
            let start = *next.get(&node).unwrap_or(&1);
            rec.record(
                p,
                EventType::Invoke,
                Some(node),
                Op::KtHeads(Vec::new()),
                None,
            );
            let path = format!("kt/v1/heads?start={start}&end={}", start + 256);
            let (kind, heads, error) = match api.get(&addrs[(node - 1) as usize], &path).await {
                Ok((200, body)) => match parse_heads(&body) {
                    Some((h, _)) => (EventType::Ok, h, None),
                    None => (
                        EventType::Fail,
                        Vec::new(),
                        Some(format!("malformed: {body}")),
                    ),
                },
                Ok((s, body)) => (
                    EventType::Fail,
                    Vec::new(),
                    Some(format!("{s} {}", body.trim())),
                ),
                Err(e) => (EventType::Fail, Vec::new(), Some(e)),
            };
            if let Some(last) = heads.last() {
                next.insert(node, last.epoch + 1);
            }
            rec.record(p, kind, Some(node), Op::KtHeads(heads), error);
        }
        tokio::time::sleep(READ_HEADS_EVERY).await;
    }
}
