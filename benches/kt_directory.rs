//! Epoch publication in the node itself: the directory's state machine on RocksDB, the
//! path every node runs (`cargo bench -p quorumlog --bench kt_directory`). The in-memory
//! comparison with akd is `cargo bench -p quorumlog-kt --bench epoch`.
//!
//! For each epoch size (1k, 10k, 100k new users; `QL_KT_SIZES` to change), a fresh child
//! process (so peak memory is its own) with a fresh data directory:
//!
//! - `vrf`: the leader's VRF evaluation of every user id (done as updates arrive), one core;
//! - `apply`: every update applied as Raft applies it, 256 commands per call: the
//!   commitment and the user's signature checked, the current entry read, the record
//!   appended to the log of mutations, the change stored (one RocksDB write per update);
//! - `marker`: the epoch closed: the versioned trie updated in RocksDB, the entries moved
//!   into the history, the marker logged;
//! - `head`: the map head signed and recorded with its Sigsum leaf;
//! - lookups: the map proof and the entry read from RocksDB for 2,000 random users;
//! - peak memory (VmHWM) of the child.
//!
//! Signing the users' mutations is the clients' work and is not timed. Nothing is asserted.

use ed25519_dalek::{Signer, SigningKey};
use quorumlog::kt::directory::{Directory, Opening, Params, Update};
use quorumlog::publish::signer::LogSigner;
use quorumlog::replicated::{decode_result, encode, ApplyOutcome, LeafState, LogCommand};
use quorumlog::sigsum::crypto::PublicKey;
use quorumlog_kt::entry::{commit, Entry, Mutation, NONCE_LEN};
use quorumlog_kt::head::MapHead;
use rocksdb::DB;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

const MAP: u64 = 1;
const LOOKUPS: usize = 2_000;
const CHUNK: usize = 256;
const CASE: &str = "QL_KT_CASE";

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn apply(state: &LeafState, cmds: &[LogCommand]) -> Vec<ApplyOutcome> {
    let encoded: Vec<_> = cmds.iter().map(encode).collect();
    let refs: Vec<_> = encoded.iter().collect();
    state
        .apply(&refs, &mut |_, _| {})
        .unwrap()
        .iter()
        .map(|r| decode_result(r).unwrap())
        .collect()
}

fn case(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let signer = LogSigner::from_seed(&[7; 32]);
    let keys = signer.directory();
    let public = keys.public();
    let directory = Arc::new(Directory::new(Params {
        map_id: MAP,
        signing_key: PublicKey(public.signing),
        vrf_key: public.vrf,
    }));
    let state = LeafState::new(signer.public_key()).with_directory(directory.clone());
    let mut opts = state.db_options();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    let db = DB::open_cf_descriptors(&opts, dir.path(), state.column_families()).unwrap();
    state.attach(Arc::new(db)).unwrap();

    let ids: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("user-{i}@example.org").into_bytes())
        .collect();
    let t = Instant::now();
    let indexes: Vec<_> = ids.iter().map(|id| keys.index(id)).collect();
    let vrf = t.elapsed();

    let user = SigningKey::from_bytes(&[3; 32]);
    let updates: Vec<LogCommand> = ids
        .iter()
        .zip(&indexes)
        .map(|(id, (index, vrf_proof))| {
            let nonce = [1; NONCE_LEN];
            let value = b"a public key, say 32 bytes long.".to_vec();
            let entry = Entry {
                commitment: commit(id, &value, &nonce),
                keys: vec![user.verifying_key().to_bytes()],
                previous: [0; 32],
            };
            let sig = user.sign(&Mutation::signed_message(MAP, index, &entry));
            LogCommand::KtUpdate(Update {
                mutation: Mutation {
                    index: *index,
                    entry,
                    signatures: vec![(user.verifying_key().to_bytes(), sig.to_bytes())],
                },
                opening: Opening {
                    id: id.clone(),
                    value,
                    nonce,
                    vrf_proof: *vrf_proof,
                },
            })
        })
        .collect();

    let t = Instant::now();
    for chunk in updates.chunks(CHUNK) {
        for o in apply(&state, chunk) {
            assert!(
                matches!(o, ApplyOutcome::KtUpdate { verdict: 0, .. }),
                "{o:?}"
            );
        }
    }
    let applied = t.elapsed();

    let t = Instant::now();
    let marker = apply(
        &state,
        &[LogCommand::KtMarker {
            epoch: 1,
            timestamp_ms: 1,
        }],
    );
    assert_eq!(marker, vec![ApplyOutcome::KtEpoch(1)]);
    let closed = t.elapsed();

    let t = Instant::now();
    let info = directory.epoch(1).unwrap().unwrap();
    let head = keys.sign_map_head(MapHead {
        map_id: MAP,
        epoch: 1,
        map_root: info.map_root,
        log_size: info.log_size,
        log_root: directory
            .mutation_log()
            .unwrap()
            .root(info.log_size)
            .unwrap()
            .0,
        timestamp_ms: info.timestamp_ms,
    });
    let leaf = keys.head_leaf(&head);
    let recorded = apply(&state, &[LogCommand::KtHead { head, leaf }]);
    assert!(matches!(recorded[0], ApplyOutcome::KtHead { .. }));
    let signed = t.elapsed();

    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let t = Instant::now();
    for _ in 0..LOOKUPS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (index, _) = &indexes[(x % n as u64) as usize];
        let (_, leaf) = directory.prove(index, 1).unwrap();
        let stored = directory.entry_at(index, 1).unwrap();
        assert!(leaf.is_some() && stored.is_some());
    }
    let lookups = LOOKUPS as f64 / t.elapsed().as_secs_f64();
    println!(
        "{n:>7} users | vrf {:>7.2} s | apply {:>7.2} s ({:>6.0}/s) | marker {:>6.2} s | head {:>5.3} s | lookups {:>6.0}/s | peak {:>5.0} MiB",
        vrf.as_secs_f64(),
        applied.as_secs_f64(),
        n as f64 / applied.as_secs_f64(),
        closed.as_secs_f64(),
        signed.as_secs_f64(),
        lookups,
        peak_rss_mib()
    );
}

fn main() {
    if let Ok(n) = std::env::var(CASE) {
        case(n.parse().expect("a user count"));
        return;
    }
    let sizes = std::env::var("QL_KT_SIZES").unwrap_or_else(|_| "1000,10000,100000".into());
    println!(
        "directory epoch publication in the node (RocksDB state machine), one child process per size"
    );
    for n in sizes.split(',') {
        let me = std::env::current_exe().expect("own path");
        let status = Command::new(me)
            .env(CASE, n.trim())
            .status()
            .expect("run the case");
        assert!(status.success(), "case {n} failed");
    }
}
