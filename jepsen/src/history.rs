//! The history of a test: one JSON line per operation event, in the shape of Jepsen's
//! histories. A client operation is an `invoke` followed by its completion: `ok` (it
//! happened), `fail` (it certainly did not happen) or `info` (unknown: a 202, a timeout, a
//! dropped connection; the checkers must allow both outcomes). Nemesis operations use the
//! process `nemesis`.

use serde::{Deserialize, Serialize};

/// Who performed an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Process {
    /// A client process, numbered from 0.
    Client(u64),
    /// The fault injector (serialised as the string `"nemesis"`).
    Nemesis(NemesisTag),
}

/// The one value of [`Process::Nemesis`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum NemesisTag {
    /// The fault injector.
    Nemesis,
}

/// How an event ends (or starts) an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EventType {
    /// The operation starts.
    Invoke,
    /// It completed and took effect.
    Ok,
    /// It completed and certainly took no effect.
    Fail,
    /// Unknown whether it took effect.
    Info,
}

/// A leaf as the workload made it: which client, which sequence number, and the three
/// fields of a Sigsum tree leaf (hex).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct LeafValue {
    /// Client process that submitted it.
    pub(crate) client: u64,
    /// That client's sequence number (unique per client).
    pub(crate) seq: u64,
    /// SHA-256 of the message, hex (the leaf's checksum).
    pub(crate) checksum: String,
    /// The submitter's Ed25519 signature, hex.
    pub(crate) signature: String,
    /// SHA-256 of the submitter's public key, hex.
    pub(crate) key_hash: String,
}

/// A tree head as a node served it (`get-tree-head`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HeadValue {
    /// Tree size.
    pub(crate) size: u64,
    /// Root hash, hex.
    pub(crate) root_hash: String,
    /// The log's signature over the checkpoint, hex.
    pub(crate) signature: String,
    /// Cosignatures: witness key hash (hex), timestamp, signature (hex).
    pub(crate) cosignatures: Vec<CosignatureValue>,
}

/// One cosignature line of a tree head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CosignatureValue {
    /// SHA-256 of the witness key, hex.
    pub(crate) key_hash: String,
    /// Unix seconds.
    pub(crate) timestamp: u64,
    /// Signature, hex.
    pub(crate) signature: String,
}

/// A consistency proof fetched between two heads a reader saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ConsistencyValue {
    /// Older size.
    pub(crate) old_size: u64,
    /// Its root, hex (from the head the reader saw).
    pub(crate) old_root: String,
    /// Newer size.
    pub(crate) new_size: u64,
    /// Its root, hex.
    pub(crate) new_root: String,
    /// The proof's hashes, hex (on `ok`).
    pub(crate) path: Vec<String>,
}

/// An inclusion proof fetched for an acknowledged leaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InclusionValue {
    /// The leaf's hash, hex.
    pub(crate) leaf_hash: String,
    /// Tree size the proof is for.
    pub(crate) size: u64,
    /// Root at that size, hex (from a head the reader saw).
    pub(crate) root: String,
    /// Leaf index (on `ok`).
    pub(crate) index: Option<u64>,
    /// The proof's hashes, hex (on `ok`).
    pub(crate) path: Vec<String>,
}

/// A node's report from the ops `/status.json`, as the quorum checker needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StatusValue {
    /// Applied tree size.
    pub(crate) tree_size: Option<u64>,
    /// Raft commit index.
    pub(crate) committed_index: Option<u64>,
    /// Published size it serves.
    pub(crate) published_size: Option<u64>,
    /// Its role.
    pub(crate) role: Option<String>,
}

/// A fault: its name and what exactly it did (which nodes, which links).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NemesisValue {
    /// Nemesis name (`partition-leader`, `kill`, `pause`...).
    pub(crate) name: String,
    /// `start` (the fault begins) or `stop` (it is healed).
    pub(crate) phase: NemesisPhase,
    /// Human-readable detail (affected nodes, links).
    pub(crate) detail: String,
}

/// Whether a nemesis operation starts or heals a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum NemesisPhase {
    /// The fault begins.
    Start,
    /// The fault is healed.
    Stop,
}

/// What an operation is, with its value (`f` and `value` in the JSON line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", content = "value", rename_all = "snake_case")]
pub(crate) enum Op {
    /// `POST add-leaf`.
    AddLeaf(LeafValue),
    /// `GET get-tree-head`; the value is none on invoke and on failure.
    ReadHead(Option<HeadValue>),
    /// `GET get-consistency-proof`.
    Consistency(ConsistencyValue),
    /// `GET get-inclusion-proof`.
    Inclusion(InclusionValue),
    /// `GET /status.json` of one node.
    Status(Option<StatusValue>),
    /// A fault starts or is healed.
    Nemesis(NemesisValue),
    /// `POST /kt/v1/update` of the directory workload.
    KtUpdate(KtUpdateValue),
    /// `GET /kt/v1/heads`: the signed map heads a node served (empty on invoke and failure).
    KtHeads(Vec<KtHeadValue>),
}

/// A directory update as the workload made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KtUpdateValue {
    /// The user id.
    pub(crate) user: String,
    /// The new value (UTF-8).
    pub(crate) value: String,
    /// The signed mutation, hex.
    pub(crate) mutation: String,
    /// Its place in the log of mutations (on `ok`).
    pub(crate) log_index: Option<u64>,
}

/// A signed map head and the Sigsum leaf carrying it, as a node served them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KtHeadValue {
    pub(crate) epoch: u64,
    /// The signed head, hex.
    pub(crate) signed_head: String,
    /// The 128-byte Sigsum leaf, hex.
    pub(crate) leaf: String,
    pub(crate) leaf_index: u64,
}

/// One line of `history.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Event {
    /// Position in the history, from 0.
    pub(crate) index: u64,
    /// Nanoseconds since the test started.
    pub(crate) time_ns: u64,
    /// Who.
    pub(crate) process: Process,
    /// invoke, ok, fail or info.
    #[serde(rename = "type")]
    pub(crate) kind: EventType,
    /// The node the operation went to (none for the nemesis).
    pub(crate) node: Option<u64>,
    /// The operation and its value.
    #[serde(flatten)]
    pub(crate) op: Op,
    /// Why it failed or is indeterminate (HTTP status and body, or transport error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// Appends events from many tasks, numbering them and timing them from the test's start.
pub(crate) struct Recorder {
    start: std::time::Instant,
    events: std::sync::Mutex<Vec<Event>>,
}

impl Recorder {
    /// An empty history starting now.
    pub(crate) fn new() -> Recorder {
        Recorder {
            start: std::time::Instant::now(),
            events: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Nanoseconds since the start.
    pub(crate) fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Appends one event.
    pub(crate) fn record(
        &self,
        process: Process,
        kind: EventType,
        node: Option<u64>,
        op: Op,
        error: Option<String>,
    ) {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let index = events.len() as u64;
        events.push(Event {
            index,
            time_ns: self.now_ns(),
            process,
            kind,
            node,
            op,
            error,
        });
    }

    /// Everything recorded so far.
    pub(crate) fn snapshot(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The history as JSON lines.
pub(crate) fn to_jsonl(events: &[Event]) -> String {
    let mut out = String::new();
    for e in events {
        out.push_str(&serde_json::to_string(e).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// Reads a history written one event per line.
pub(crate) fn parse_jsonl(text: &str) -> Result<Vec<Event>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_one_jepsen_like_json_line() {
        let e = Event {
            index: 3,
            time_ns: 1_000,
            process: Process::Client(2),
            kind: EventType::Info,
            node: Some(1),
            op: Op::AddLeaf(LeafValue {
                client: 2,
                seq: 9,
                checksum: "aa".into(),
                signature: "bb".into(),
                key_hash: "cc".into(),
            }),
            error: Some("202".into()),
        };
        let line = serde_json::to_string(&e).unwrap();
        assert!(line.contains("\"type\":\"info\""), "{line}");
        assert!(line.contains("\"f\":\"add_leaf\""), "{line}");
        assert!(line.contains("\"value\":{\"client\":2"), "{line}");
        assert_eq!(parse_jsonl(&line).unwrap(), vec![e]);
        let n = Event {
            index: 4,
            time_ns: 2,
            process: Process::Nemesis(NemesisTag::Nemesis),
            kind: EventType::Invoke,
            node: None,
            op: Op::Nemesis(NemesisValue {
                name: "kill".into(),
                phase: NemesisPhase::Start,
                detail: "n1".into(),
            }),
            error: None,
        };
        let line = serde_json::to_string(&n).unwrap();
        assert!(line.contains("\"process\":\"nemesis\""), "{line}");
        assert_eq!(parse_jsonl(&line).unwrap(), vec![n]);
    }
}
