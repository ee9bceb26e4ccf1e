//! The log's node-to-node messages, generated from proto/log.proto. They travel inside the
//! Raft layer's opaque `Forward` call; protobuf lets a field be added without breaking a
//! node one version older.

include!(concat!(env!("OUT_DIR"), "/quorumlog.log.v1.rs"));
