//! Every message a peer or operator sends over gRPC: the openraft messages inside
//! `Payload` (postcard, decoded as the server does) and the protobuf messages of the Raft
//! and Admin services. Decoding never panics, and what decodes encodes back to bytes that
//! decode to the same encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use quorumlog_raft::fuzzing::{decode, encode};
use quorumlog_raft::network::pb;
use quorumlog_raft::types::msg::{
    AppendEntriesRequest, AppendEntriesResponse, StreamAppendResult, TransferLeaderRequest,
    VoteRequest, VoteResponse,
};
use quorumlog_raft::types::{SnapshotMeta, Vote};

fn postcard<T: serde::Serialize + serde::de::DeserializeOwned>(data: &[u8]) {
    if let Ok(v) = decode::<T>(data) {
        let bytes = encode(&v).expect("a decoded message encodes");
        let again: T = decode(&bytes).expect("own encoding decodes");
        assert_eq!(encode(&again).expect("encodes"), bytes);
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
    match which % 17 {
        0 => postcard::<AppendEntriesRequest>(data),
        1 => postcard::<AppendEntriesResponse>(data),
        2 => postcard::<StreamAppendResult>(data),
        3 => postcard::<VoteRequest>(data),
        4 => postcard::<VoteResponse>(data),
        5 => postcard::<TransferLeaderRequest>(data),
        6 => postcard::<Vote>(data),
        7 => postcard::<SnapshotMeta>(data),
        8 => proto::<pb::SnapshotChunk>(data),
        9 => proto::<pb::NodeStatus>(data),
        10 => proto::<pb::AddNodeRequest>(data),
        11 => proto::<pb::RemoveNodeRequest>(data),
        12 => proto::<pb::TransferLeaderRequest>(data),
        13 => proto::<pb::ForwardRequest>(data),
        14 => proto::<pb::KeyDelivery>(data),
        15 => proto::<pb::ReadIndexReply>(data),
        _ => proto::<pb::Payload>(data),
    }
});
