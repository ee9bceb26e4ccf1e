//! The Sigsum ASCII key-value codec: numbers, hex, and the line parser driven through an
//! arbitrary sequence of expectations. Whatever is accepted must be canonical.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quorumlog::sigsum::ascii::{parse_hex, parse_int, Parser, MAX_INT};

const KEYS: [&str; 4] = ["size", "root_hash", "leaf", "node_hash"];

fuzz_target!(|data: &[u8]| {
    let Some((&plan, body)) = data.split_first() else {
        return;
    };
    if let Ok(s) = std::str::from_utf8(body) {
        if let Ok(v) = parse_int(s) {
            assert!(v <= MAX_INT);
            assert_eq!(v.to_string(), s, "a number has one spelling");
        }
        if let Ok(b) = parse_hex::<32>(s) {
            assert_eq!(hex::encode(b), s.to_ascii_lowercase());
        }
    }
    let Ok(mut p) = Parser::new(body) else {
        return;
    };
    // Two bits per step choose the call, the next two the key.
    for step in 0..4 {
        let key = KEYS[usize::from(plan >> (2 * step + 1)) % KEYS.len()];
        let r = match (plan >> (2 * step)) & 3 {
            0 => p.int(key).map(|_| ()),
            1 => p.hex::<32>(key).map(|_| ()),
            2 => p.values(key, 3).map(|v| assert_eq!(v.len(), 3)),
            _ => p
                .repeated(key, 1, 8, |p| p.value(key).map(str::len))
                .map(|v| assert!((1..=8).contains(&v.len()))),
        };
        if r.is_err() || p.at_end() {
            break;
        }
    }
});
