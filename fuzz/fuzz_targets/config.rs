//! The operator's files: a node config (TOML, then checked), a Sigsum policy and a
//! rate-limit file. Refusals are errors, never panics; an accepted config written back
//! out is accepted again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quorumlog::api::rate_limit::RateLimiter;
use quorumlog::config::NodeConfig;
use quorumlog::sigsum::policy::Policy;
use std::path::{Path, PathBuf};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = NodeConfig::parse(text, "fuzz.toml", PathBuf::from("/nonexistent")) {
        let out = toml::to_string(&c).expect("an accepted config serializes");
        NodeConfig::parse(&out, "again.toml", PathBuf::from("/nonexistent"))
            .expect("an accepted config, written out, is accepted again");
    }
    let _ = Policy::parse(text);
    let _ = RateLimiter::parse(text, Path::new("/nonexistent"));
});
