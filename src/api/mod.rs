//! The HTTP side of a node: the public Sigsum v1 API (with add-leaf's checks, rate limits
//! and forwarding), the status page and the ops listener.

pub mod add_leaf;
pub mod dns;
pub mod ops;
pub mod public;
pub mod rate_limit;
pub mod server;
pub mod status_page;
