//! The HTTP side of a node: the public Sigsum v1 API and the ops listener.

pub mod dns;
pub mod rate_limit;
