//! The HTTP side of a node: the public Sigsum v1 API (with add-leaf's checks, rate limits
//! and forwarding), the status page and the ops listener.

pub mod add_leaf;
pub mod dns;
pub mod domain;
pub mod forward;
pub mod ops;
pub mod public;
pub mod public_suffix;
pub mod rate_limit;
pub mod server;
pub mod status_page;
pub mod submit_token;
