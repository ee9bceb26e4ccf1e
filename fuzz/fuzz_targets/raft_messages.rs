//! Every message a peer or operator sends over gRPC, and every Raft record on disk: the
//! consensus messages as the server converts them to openraft's types (raft/src/codec.rs)
//! and the other protobuf messages of the Raft and Admin services. Decoding never panics,
//! and what decodes encodes back to bytes that decode to the same encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use quorumlog_raft::codec::{decode, encode, Owned};
use quorumlog_raft::network::pb;
use quorumlog_raft::types::msg::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use quorumlog_raft::types::{Entry, LogId, SnapshotMeta, StoredMembership, Vote};

fn owned<T: Owned>(data: &[u8]) {
    if let Ok(v) = decode::<T>(data) {
        let bytes = encode(&v);
        let again: T = decode(&bytes).expect("own encoding decodes");
        assert_eq!(encode(&again), bytes);
    }
}

fn proto<T: Message + Default + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(m) = T::decode(data) {
        let again = T::decode(m.encode_to_vec().as_slice()).expect("own encoding decodes");
        assert_eq!(again, m);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, data)) = data.split_first() else {
        return;
    };
    match which % 22 {
        0 => owned::<AppendEntriesRequest>(data),
        1 => owned::<AppendEntriesResponse>(data),
        2 => owned::<StreamAppendResult>(data),
        3 => owned::<VoteRequest>(data),
        4 => owned::<VoteResponse>(data),
        5 => owned::<TransferLeaderRequest>(data),
        6 => owned::<Vote>(data),
        7 => owned::<SnapshotMeta>(data),
        8 => proto::<pb::SnapshotChunk>(data),
        9 => proto::<pb::NodeStatus>(data),
        10 => proto::<pb::AddNodeRequest>(data),
        11 => proto::<pb::RemoveNodeRequest>(data),
        12 => proto::<pb::TransferLeaderRequest>(data),
        13 => proto::<pb::ForwardRequest>(data),
        14 => proto::<pb::HandoverRequest>(data),
        15 => proto::<pb::ReadIndexReply>(data),
        16 => owned::<TransferLeaderResponse>(data),
        17 => owned::<SnapshotResponse>(data),
        18 => owned::<Entry>(data),
        19 => owned::<LogId>(data),
        20 => owned::<Option<LogId>>(data),
        _ => owned::<StoredMembership>(data),
    }
});
