//! Epoch publication and lookups, Quorumlog's map against Meta's `akd`, side by side in one
//! run on one machine, both with in-memory storage.
//!
//! For each epoch size (1k, 10k, 100k; `QL_KT_SIZES` to change) and each system, a fresh
//! child process (so peak memory is its own) publishes two epochs and prints a line for
//! each: epoch 1 brings that many new users, epoch 2 gives every one of them a new value.
//!
//! - quorumlog: the VRF index of every new user (done when an update is queued, so timed
//!   on its own, on all cores), the check of every signed mutation against the current map
//!   (`epoch::apply`, one core), the trie update (`trie::update` into a `MemoryStore`, on
//!   all cores) and the signed map head; then lookup proofs (VRF proof, map proof, entry)
//!   and their verification (VRF, map proof, commitment) for 2,000 random users, per
//!   second. In epoch 2 the indexes are known (the directory stores each id's), so
//!   publication is the checks and the trie;
//! - akd 0.13 (`ExperimentalConfiguration`, `AsyncInMemoryDatabase`, its hard-coded test
//!   VRF key, default parallelism): `Directory::publish` of the same (label, value) pairs,
//!   then `lookup` and `client::lookup_verify` for 2,000 random users, per second; epoch 2
//!   publishes a new value for every label.
//!
//! akd's publish computes its VRF inside (for a new version of a known label as well);
//! it checks no user signatures (it has no notion of them), so the comparable figure is
//! quorumlog's VRF + trie, printed as "publish"; the mutation checks are printed beside
//! it. Peak memory is the child's VmHWM after both epochs.
//!
//! Run: `cargo bench -p quorumlog-kt --bench epoch` (a few minutes). Nothing is asserted.

use akd::append_only_zks::AzksParallelismConfig;
use akd::ecvrf::HardCodedAkdVRF;
use akd::storage::memory::AsyncInMemoryDatabase;
use akd::storage::StorageManager;
use akd::{AkdLabel, AkdValue, Directory};
use ed25519_dalek::{Signer, SigningKey};
use quorumlog_kt::entry::{commit, Entry, Mutation, NONCE_LEN};
use quorumlog_kt::epoch::apply;
use quorumlog_kt::hasher::{ConiksSha256, Hash, Index};
use quorumlog_kt::head::MapHead;
use quorumlog_kt::map;
use quorumlog_kt::trie::{self, MemoryStore, Reader};
use quorumlog_kt::vrf::VrfSecretKey;
use std::process::Command;
use std::time::Instant;

type AkdConfig = akd::ExperimentalConfiguration<akd::ExampleLabel>;

const MAP: u64 = 1;
const LOOKUPS: usize = 2_000;
const CASE: &str = "QL_KT_CASE";

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn user_id(i: usize) -> Vec<u8> {
    format!("user-{i}@example.org").into_bytes()
}

/// A small deterministic generator, so both systems look up the same users.
fn picks(n: usize) -> Vec<usize> {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    (0..LOOKUPS)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % n as u64) as usize
        })
        .collect()
}

/// Runs `f(i)` for every i in 0..n on all cores, in order.
fn parallel<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(2, |t| t.get());
    let chunk = n.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let f = &f;
        let parts: Vec<_> = (0..n)
            .step_by(chunk)
            .map(|lo| s.spawn(move || (lo..(lo + chunk).min(n)).map(f).collect::<Vec<T>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().expect("worker"))
            .collect()
    })
}

fn quorumlog(n: usize) {
    let vrf = VrfSecretKey::from_bytes([5; 32]).expect("a valid VRF key");
    let dir_key = SigningKey::from_bytes(&[6; 32]);
    let h = ConiksSha256::new(MAP);

    let t = Instant::now();
    let indexes: Vec<(Index, [u8; 80])> = parallel(n, |i| vrf.evaluate(&user_id(i)));
    let vrf_s = t.elapsed().as_secs_f64();

    // The users' signed first entries (not timed: clients make them).
    let mutations: Vec<Mutation> = parallel(n, |i| {
        let key = SigningKey::from_bytes(&indexes[i].0);
        let index = indexes[i].0;
        let entry = Entry {
            commitment: commit(&user_id(i), b"public key", &[i as u8; NONCE_LEN]),
            keys: vec![key.verifying_key().to_bytes()],
            previous: [0; 32],
        };
        let sig = key.sign(&Mutation::signed_message(MAP, &index, &entry));
        Mutation {
            index,
            entry,
            signatures: vec![(key.verifying_key().to_bytes(), sig.to_bytes())],
        }
    });

    let mut store = MemoryStore::default();
    let t = Instant::now();
    let changes = apply(MAP, |_| None, &mutations);
    let check_s = t.elapsed().as_secs_f64();
    assert!(
        changes.verdicts.iter().all(Option::is_none),
        "every mutation applies"
    );

    let t = Instant::now();
    let leaves: Vec<(Index, Hash)> = changes
        .entries
        .iter()
        .map(|(i, e)| (*i, h.leaf(i, &e.encode())))
        .collect();
    let (root, writes) = trie::update(&h, &store, 1, &leaves).expect("update");
    store.write(1, writes);
    let head = MapHead {
        map_id: MAP,
        epoch: 1,
        map_root: root.0,
        log_size: n as u64 + 1,
        log_root: [0; 32],
        timestamp_ms: 0,
    }
    .sign(&dir_key);
    let trie_s = t.elapsed().as_secs_f64();

    let who = picks(n);
    let reader = Reader::new(&h, &store, 1);
    let t = Instant::now();
    let answers: Vec<_> = who
        .iter()
        .map(|&i| {
            let (index, vrf_proof) = vrf.evaluate(&user_id(i));
            let (proof, _) = reader.prove(&index).expect("proof");
            (
                i,
                vrf_proof,
                proof.encode(),
                changes.entries[&index].clone(),
            )
        })
        .collect();
    let prove_rate = LOOKUPS as f64 / t.elapsed().as_secs_f64();

    let public = vrf.public_key();
    let t = Instant::now();
    for (i, vrf_proof, proof, entry) in &answers {
        let index = public.verify(&user_id(*i), vrf_proof).expect("VRF");
        let proof = map::Proof::decode(proof).expect("proof decodes");
        let root = Hash(head.head.map_root);
        map::verify(&h, &root, &index, Some(&entry.encode()), &proof).expect("map proof");
        let c = commit(&user_id(*i), b"public key", &[*i as u8; NONCE_LEN]);
        assert_eq!(c, entry.commitment);
    }
    let verify_rate = LOOKUPS as f64 / t.elapsed().as_secs_f64();

    println!(
        "quorumlog {n:>6} new users: publish {:.2} s (VRF {vrf_s:.2} s on all cores + trie {trie_s:.2} s), \
         mutation checks {check_s:.2} s; lookup proofs {prove_rate:.0}/s, verified {verify_rate:.0}/s",
        vrf_s + trie_s,
    );

    // Epoch 2: every user replaces its value. The directory keeps each id's index, so no
    // VRF is computed; the mutations are made (not timed) against the entries of epoch 1.
    let updates: Vec<Mutation> = parallel(n, |i| {
        let key = SigningKey::from_bytes(&indexes[i].0);
        let index = indexes[i].0;
        let entry = Entry {
            commitment: commit(&user_id(i), b"new public key", &[i as u8; NONCE_LEN]),
            keys: vec![key.verifying_key().to_bytes()],
            previous: changes.entries[&index].hash(),
        };
        let sig = key.sign(&Mutation::signed_message(MAP, &index, &entry));
        Mutation {
            index,
            entry,
            signatures: vec![(key.verifying_key().to_bytes(), sig.to_bytes())],
        }
    });
    let t = Instant::now();
    let second = apply(MAP, |i| changes.entries.get(i).cloned(), &updates);
    let check2_s = t.elapsed().as_secs_f64();
    assert!(
        second.verdicts.iter().all(Option::is_none),
        "every update applies"
    );
    let t = Instant::now();
    let leaves: Vec<(Index, Hash)> = second
        .entries
        .iter()
        .map(|(i, e)| (*i, h.leaf(i, &e.encode())))
        .collect();
    let (root2, writes) = trie::update(&h, &store, 2, &leaves).expect("update");
    store.write(2, writes);
    let _head2 = MapHead {
        map_id: MAP,
        epoch: 2,
        map_root: root2.0,
        log_size: 2 * n as u64 + 2,
        log_root: [0; 32],
        timestamp_ms: 0,
    }
    .sign(&dir_key);
    let trie2_s = t.elapsed().as_secs_f64();
    println!(
        "quorumlog {n:>6} updates:   publish {trie2_s:.2} s (trie; the index of a known id is stored), \
         mutation checks {check2_s:.2} s; peak memory {:.0} MiB",
        peak_rss_mib()
    );
}

async fn akd(n: usize) {
    let storage = StorageManager::new_no_cache(AsyncInMemoryDatabase::new());
    let dir = Directory::<AkdConfig, _, _>::new(
        storage,
        HardCodedAkdVRF {},
        AzksParallelismConfig::default(),
    )
    .await
    .expect("akd directory");
    let updates: Vec<(AkdLabel, AkdValue)> = (0..n)
        .map(|i| (AkdLabel(user_id(i)), AkdValue(b"public key".to_vec())))
        .collect();
    let t = Instant::now();
    dir.publish(updates).await.expect("publish");
    let publish_s = t.elapsed().as_secs_f64();

    let who = picks(n);
    let t = Instant::now();
    let mut answers = Vec::with_capacity(LOOKUPS);
    for &i in &who {
        let (proof, epoch_hash) = dir.lookup(AkdLabel(user_id(i))).await.expect("lookup");
        answers.push((i, proof, epoch_hash));
    }
    let prove_rate = LOOKUPS as f64 / t.elapsed().as_secs_f64();

    let public = dir.get_public_key().await.expect("VRF public key");
    let t = Instant::now();
    for (i, proof, eh) in answers {
        akd::client::lookup_verify::<AkdConfig>(
            public.as_bytes(),
            eh.hash(),
            eh.epoch(),
            AkdLabel(user_id(i)),
            proof,
        )
        .expect("akd lookup verifies");
    }
    let verify_rate = LOOKUPS as f64 / t.elapsed().as_secs_f64();
    println!(
        "akd       {n:>6} new users: publish {publish_s:.2} s; lookup proofs {prove_rate:.0}/s, \
         verified {verify_rate:.0}/s"
    );

    let updates: Vec<(AkdLabel, AkdValue)> = (0..n)
        .map(|i| (AkdLabel(user_id(i)), AkdValue(b"new public key".to_vec())))
        .collect();
    let t = Instant::now();
    dir.publish(updates).await.expect("publish");
    let publish2_s = t.elapsed().as_secs_f64();
    println!(
        "akd       {n:>6} updates:   publish {publish2_s:.2} s; peak memory {:.0} MiB",
        peak_rss_mib()
    );
}

fn main() {
    if let Ok(case) = std::env::var(CASE) {
        let (system, n) = case.split_once(':').expect("system:size");
        let n: usize = n.parse().expect("size");
        match system {
            "quorumlog" => quorumlog(n),
            _ => tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(akd(n)),
        }
        return;
    }
    let sizes = std::env::var("QL_KT_SIZES").unwrap_or_else(|_| "1000,10000,100000".into());
    let exe = std::env::current_exe().expect("own path");
    for n in sizes.split(',') {
        for system in ["quorumlog", "akd"] {
            let status = Command::new(&exe)
                .env(CASE, format!("{system}:{}", n.trim()))
                .status()
                .expect("running a case");
            assert!(status.success(), "{system} with {n} users failed");
        }
    }
}
