//! The receiving end of a snapshot transfer, fed an arbitrary sequence of chunks and an
//! arbitrary manifest. Nothing is written outside the incoming directory; a transfer is
//! accepted only if every file on disk is exactly what the manifest lists.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use quorumlog_raft::snapshot::{IncomingSnapshot, ManifestEntry};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

const NAMES: [&str; 6] = [
    "CURRENT",
    "MANIFEST-000001",
    "000004.sst",
    "../x",
    "",
    "OPTIONS",
];

#[derive(Debug, Arbitrary)]
struct Chunk {
    name: u8,
    offset: u16,
    data: Vec<u8>,
}

#[derive(Debug, Arbitrary)]
struct Listed {
    name: u8,
    size: u16,
    /// Take the true digest of what was sent under that name, or a made-up one.
    true_digest: bool,
    digest: [u8; 32],
}

#[derive(Debug, Arbitrary)]
struct Transfer {
    chunks: Vec<Chunk>,
    manifest: Vec<Listed>,
}

fuzz_target!(|t: Transfer| {
    let root = tempfile::tempdir_in("/dev/shm").expect("tmpfs");
    let dir = root.path().join("incoming");
    std::fs::create_dir_all(dir.join("db")).unwrap();
    let mut rx = IncomingSnapshot::with_limits(dir.clone(), 4, 1 << 16);
    let mut sent: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    for c in t.chunks.iter().take(16) {
        let name = NAMES[usize::from(c.name) % NAMES.len()];
        if rx.chunk(name, u64::from(c.offset), &c.data).is_err() {
            // The server drops the whole transfer at the first refusal.
            return;
        }
        sent.entry(name).or_default().extend_from_slice(&c.data);
    }
    let mut manifest = BTreeMap::new();
    for l in &t.manifest {
        let name = NAMES[usize::from(l.name) % NAMES.len()];
        let digest = match (l.true_digest, sent.get(name)) {
            (true, Some(d)) => Sha256::digest(d).into(),
            _ => l.digest,
        };
        manifest.insert(
            name.to_string(),
            ManifestEntry {
                size: sent.get(name).map_or(u64::from(l.size), |d| d.len() as u64),
                sha256: digest,
            },
        );
    }
    let accepted = rx.finish(&manifest).is_ok();
    // Only the incoming directory was written to.
    let top: Vec<_> = std::fs::read_dir(root.path()).unwrap().flatten().collect();
    assert_eq!(top.len(), 1);
    if accepted {
        assert!(manifest.contains_key("CURRENT"));
        let on_disk: BTreeMap<String, Vec<u8>> = std::fs::read_dir(dir.join("db"))
            .unwrap()
            .flatten()
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        assert_eq!(on_disk.len(), manifest.len());
        for (name, entry) in &manifest {
            let content = &on_disk[name];
            assert_eq!(content.len() as u64, entry.size);
            assert_eq!(<[u8; 32]>::from(Sha256::digest(content)), entry.sha256);
        }
    }
});
