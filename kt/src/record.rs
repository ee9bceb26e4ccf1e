//! The log of mutations: every mutation the directory ordered, with the verdict it got,
//! and every epoch marker, as leaves of an RFC 6962 tree. Replaying it from the start
//! rebuilds the map at every epoch, which is how a monitor checks the directory.

use crate::entry::{DecodeError, Mutation, Rejection};
use thiserror::Error;

const TAG_MUTATION: u8 = 1;
const TAG_MARKER: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A mutation in queue order, and what applying it did (`None`: applied).
    Mutation {
        mutation: Mutation,
        verdict: Option<Rejection>,
    },
    /// The end of an epoch: the mutations since the previous marker make up `epoch`.
    Marker { epoch: u64, timestamp_ms: u64 },
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("empty record")]
    Empty,
    #[error("unknown record tag {0}")]
    Tag(u8),
    #[error("unknown verdict code {0}")]
    Verdict(u8),
    #[error("a marker is 17 bytes, not {0}")]
    MarkerLength(usize),
    #[error(transparent)]
    Mutation(#[from] DecodeError),
}

impl Record {
    /// `1 || verdict (0 = applied, else the rejection's code) || mutation`, or
    /// `2 || epoch || timestamp` (big-endian).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Record::Mutation { mutation, verdict } => {
                let mut b = vec![TAG_MUTATION, verdict.map_or(0, Rejection::code)];
                b.extend_from_slice(&mutation.encode());
                b
            }
            Record::Marker {
                epoch,
                timestamp_ms,
            } => {
                let mut b = vec![TAG_MARKER];
                b.extend_from_slice(&epoch.to_be_bytes());
                b.extend_from_slice(&timestamp_ms.to_be_bytes());
                b
            }
        }
    }

    pub fn decode(b: &[u8]) -> Result<Record, RecordError> {
        match b.split_first() {
            None => Err(RecordError::Empty),
            Some((&TAG_MUTATION, rest)) => {
                let (&code, m) = rest.split_first().ok_or(RecordError::Empty)?;
                let verdict = match code {
                    0 => None,
                    c => Some(Rejection::from_code(c).ok_or(RecordError::Verdict(c))?),
                };
                Ok(Record::Mutation {
                    mutation: Mutation::decode(m)?,
                    verdict,
                })
            }
            Some((&TAG_MARKER, rest)) => {
                if rest.len() != 16 {
                    return Err(RecordError::MarkerLength(b.len()));
                }
                Ok(Record::Marker {
                    epoch: u64::from_be_bytes(rest[..8].try_into().expect("8 bytes")),
                    timestamp_ms: u64::from_be_bytes(rest[8..].try_into().expect("8 bytes")),
                })
            }
            Some((&t, _)) => Err(RecordError::Tag(t)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Entry;

    #[test]
    fn records_round_trip_and_refuse_garbage() {
        let m = Mutation {
            index: [1; 32],
            entry: Entry {
                commitment: [2; 32],
                keys: vec![[3; 32]],
                previous: [0; 32],
            },
            signatures: vec![([3; 32], [4; 64])],
        };
        for r in [
            Record::Mutation {
                mutation: m.clone(),
                verdict: None,
            },
            Record::Mutation {
                mutation: m.clone(),
                verdict: Some(Rejection::Stale),
            },
            Record::Marker {
                epoch: 7,
                timestamp_ms: 8,
            },
        ] {
            assert_eq!(Record::decode(&r.encode()), Ok(r));
        }
        assert_eq!(Record::decode(&[]), Err(RecordError::Empty));
        assert_eq!(Record::decode(&[9]), Err(RecordError::Tag(9)));
        assert_eq!(Record::decode(&[2, 0]), Err(RecordError::MarkerLength(2)));
        let mut bad = Record::Mutation {
            mutation: m,
            verdict: None,
        }
        .encode();
        bad[1] = 77;
        assert_eq!(Record::decode(&bad), Err(RecordError::Verdict(77)));
    }
}
