//! The `add-leaf` request body and the `get-leaves` response: what parses must print back
//! to the same bytes' meaning, and checking a signature never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quorumlog::sigsum::leaf::{leaves_to_ascii, parse_leaves, AddLeafRequest, TreeLeaf};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = AddLeafRequest::parse(data) {
        let again = AddLeafRequest::parse(req.to_ascii().as_bytes()).expect("own output parses");
        assert_eq!(again, req);
        let leaf = req.leaf();
        assert_eq!(TreeLeaf::from_bytes(&leaf.to_bytes()), Some(leaf));
        // Most inputs carry a bad signature: refused, never a panic.
        let _ = req.verify();
    }
    if let Ok(leaves) = parse_leaves(data) {
        let again = parse_leaves(leaves_to_ascii(&leaves).as_bytes()).expect("own output parses");
        assert_eq!(again, leaves);
    }
});
