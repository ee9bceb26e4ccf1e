//! Inclusion and consistency proof bodies, and proof verification with arbitrary sizes,
//! indexes and hashes: what parses prints back equal; verification never panics.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use quorumlog::merkle::{verify_consistency, verify_inclusion, Hash};
use quorumlog::sigsum::proofs::{ConsistencyProof, InclusionProof};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    body: &'a [u8],
    a: u64,
    b: u64,
    h1: [u8; 32],
    h2: [u8; 32],
}

fuzz_target!(|x: Input<'_>| {
    if let Ok(p) = InclusionProof::parse(x.body) {
        let again = InclusionProof::parse(p.to_ascii().as_bytes()).expect("own output parses");
        assert_eq!(again, p);
        let _ = verify_inclusion(&Hash(x.h1), p.leaf_index, x.a, &p.path, &Hash(x.h2));
    }
    if let Ok(p) = ConsistencyProof::parse(x.body) {
        let again = ConsistencyProof::parse(p.to_ascii().as_bytes()).expect("own output parses");
        assert_eq!(again, p);
        let _ = verify_consistency(x.a, x.b, &Hash(x.h1), &Hash(x.h2), &p.path);
    }
});
