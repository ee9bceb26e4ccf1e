//! Node-to-node gRPC (tonic) over mutual TLS: the client openraft uses to reach peers, the
//! server that feeds their messages to the local Raft node, and the admin service.

pub mod client;
pub mod revocation;
pub mod server;
pub mod tls;

/// Largest gRPC message accepted or sent, in bytes. Raft appends carry up to
/// `max_payload_entries` batches of leaves; snapshot chunks are 1 MiB.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// Size of one snapshot file chunk on the wire.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// The gRPC metadata header naming the Raft protocol version a node speaks.
pub const PROTOCOL_HEADER: &str = "quorumlog-protocol";
/// The Raft protocol (the consensus messages of proto/raft.proto) this version speaks.
pub const PROTOCOL: u32 = 1;
/// The oldest protocol this version still reads. A rolling upgrade needs every pair of
/// versions that run side by side to read each other (docs/operations.md, "Upgrades").
pub const OLDEST_PROTOCOL: u32 = 1;

/// Adds the protocol header to every Raft call a node makes.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProtocolHeader;

impl tonic::service::Interceptor for ProtocolHeader {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert(
            PROTOCOL_HEADER,
            tonic::metadata::MetadataValue::from(PROTOCOL),
        );
        Ok(req)
    }
}

/// Refuses a Raft call from a peer whose protocol this node cannot read, naming both
/// versions, before anything of it is decoded.
pub fn check_protocol(req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    let Some(value) = req.metadata().get(PROTOCOL_HEADER) else {
        return Err(tonic::Status::failed_precondition(format!(
            "the peer sent no {PROTOCOL_HEADER} header: it runs a Quorumlog from before the              Raft protocol was versioned, which this node (protocol {PROTOCOL}) cannot read;              upgrade it"
        )));
    };
    let version = value.to_str().ok().and_then(|v| v.parse::<u32>().ok());
    match version {
        Some(v) if (OLDEST_PROTOCOL..=PROTOCOL).contains(&v) => Ok(req),
        Some(v) => Err(tonic::Status::failed_precondition(format!(
            "the peer speaks Raft protocol {v}; this node reads protocols              {OLDEST_PROTOCOL} to {PROTOCOL}: run versions that can run side by side              (docs/operations.md, Upgrades)"
        ))),
        None => Err(tonic::Status::failed_precondition(format!(
            "the peer's {PROTOCOL_HEADER} header {value:?} is not a version number"
        ))),
    }
}

/// Generated protobuf and tonic code for `proto/raft.proto`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("quorumlog.raft.v1");
}
