//! Signed and cosigned tree heads, and cosignature wire values: what parses prints back to
//! an equal value, and a cosignature that parses survives the wire format (the check the
//! log applies before it publishes one).
#![no_main]

use libfuzzer_sys::fuzz_target;
use quorumlog::sigsum::cosignature::Cosignature;
use quorumlog::sigsum::crypto::PublicKey;
use quorumlog::sigsum::tree_head::{CosignedTreeHead, SignedTreeHead};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = SignedTreeHead::parse(data) {
        let again = SignedTreeHead::parse(h.to_ascii().as_bytes()).expect("own output parses");
        assert_eq!(again, h);
        let _ = h.verify(&PublicKey([7; 32]));
    }
    if let Ok(h) = CosignedTreeHead::parse(data) {
        let again = CosignedTreeHead::parse(h.to_ascii().as_bytes()).expect("own output parses");
        assert_eq!(again, h);
        assert!(h.cosignatures.iter().all(Cosignature::survives_wire_format));
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let values: Vec<&str> = s.split(' ').collect();
        if let Ok(c) = Cosignature::parse_wire_value(&values) {
            assert!(c.survives_wire_format());
        }
    }
});
