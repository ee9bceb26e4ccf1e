//! Quorumlog's replication layer. Empty until the replication issue lands: it will hold the
//! openraft type configuration, the RocksDB log store and state-machine glue, and the tonic
//! network with mutual TLS.
