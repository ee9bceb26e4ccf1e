//! Merkle store benchmarks: appends per second by batch size, proofs per second at 1k and
//! 1M leaves, and root-at-old-size lookups per second. Results are in docs/benchmarks.md.
//!
//! Run: `cargo bench --bench merkle` (criterion prints time per iteration and throughput).

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use quorumlog::merkle::{leaf_hash, Hash, MerkleStore, CF_LEAF_INDEX, CF_META, CF_TILES};
use std::hint::black_box;

fn leaves(from: u64, n: u64) -> Vec<Hash> {
    (from..from + n)
        .map(|i| leaf_hash(&i.to_be_bytes()))
        .collect()
}

fn filled(n: u64) -> (tempfile::TempDir, MerkleStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = MerkleStore::open(dir.path()).unwrap();
    let mut at = 0;
    while at < n {
        let b = (n - at).min(8192);
        store.append(&leaves(at, b)).unwrap();
        at += b;
    }
    // Steady state: a long-running log holds nearly all tiles in table files, not in the
    // memtable, so measure reads from there (block cache, pinned, no copy).
    for cf in [CF_TILES, CF_LEAF_INDEX, CF_META] {
        store
            .db()
            .flush_cf(store.db().cf_handle(cf).unwrap())
            .unwrap();
    }
    (dir, store)
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    for batch in [1u64, 64, 1024] {
        let (_dir, store) = filled(0);
        let mut next = 0u64;
        g.throughput(Throughput::Elements(batch));
        g.bench_with_input(
            BenchmarkId::new("leaves_per_batch", batch),
            &batch,
            |b, &batch| {
                b.iter_batched(
                    || {
                        let l = leaves(next, batch);
                        next += batch;
                        l
                    },
                    |l| store.append(&l).unwrap(),
                    BatchSize::SmallInput,
                )
            },
        );
    }
    g.finish();
}

/// A cheap deterministic sequence so every iteration asks for a different proof.
struct Picker(u64);
impl Picker {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) % below
    }
}

fn proofs(c: &mut Criterion) {
    let mut g = c.benchmark_group("proofs");
    g.throughput(Throughput::Elements(1));
    for size in [1_000u64, 1_000_000] {
        let (_dir, store) = filled(size);
        let mut pick = Picker(size);
        g.bench_function(BenchmarkId::new("inclusion", size), |b| {
            b.iter(|| {
                let i = pick.next(size);
                black_box(store.inclusion_proof(i, size).unwrap())
            })
        });
        g.bench_function(BenchmarkId::new("consistency", size), |b| {
            b.iter(|| {
                let old = 1 + pick.next(size - 1);
                black_box(store.consistency_proof(old, size).unwrap())
            })
        });
        g.bench_function(BenchmarkId::new("root_at_old_size", size), |b| {
            b.iter(|| {
                let s = 1 + pick.next(size);
                black_box(store.root(s).unwrap())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, append, proofs);
criterion_main!(benches);
