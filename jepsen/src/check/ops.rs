//! Pairs each `invoke` with its completion, so the checkers reason about operations with
//! a start, an end and an outcome rather than about raw events.

use std::collections::{HashMap, VecDeque};
use std::mem::discriminant;

use crate::history::{Event, EventType, Op, Process};

/// One operation: its invoke and, if the history has one, its completion.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Operation<'a> {
    /// The `invoke` event (for a completion without an invoke, the completion itself).
    pub(crate) invoke: &'a Event,
    /// The `ok`, `fail` or `info` event; none if the history ended first.
    pub(crate) completion: Option<&'a Event>,
}

impl<'a> Operation<'a> {
    /// `ok`, `fail`, or `info` (also for an operation that never completed: unknown).
    pub(crate) fn outcome(&self) -> EventType {
        match self.completion {
            Some(c) if c.kind != EventType::Invoke => c.kind,
            _ => EventType::Info,
        }
    }

    /// Whether it completed `ok`.
    pub(crate) fn is_ok(&self) -> bool {
        self.outcome() == EventType::Ok
    }

    /// The value: the completion's when there is one (read results live there).
    pub(crate) fn op(&self) -> &'a Op {
        &self.completion.unwrap_or(self.invoke).op
    }

    /// Who ran it.
    pub(crate) fn process(&self) -> Process {
        self.invoke.process
    }

    /// The node it went to.
    pub(crate) fn node(&self) -> Option<u64> {
        self.invoke.node.or(self.completion.and_then(|c| c.node))
    }

    /// When it started.
    pub(crate) fn invoke_ns(&self) -> u64 {
        self.invoke.time_ns
    }

    /// When it completed, if it did.
    pub(crate) fn complete_ns(&self) -> Option<u64> {
        self.completion.map(|c| c.time_ns)
    }

    /// When its effect was certainly over: the completion, or else the invoke (a nemesis
    /// step with no completion is taken to have acted when invoked).
    pub(crate) fn end_ns(&self) -> u64 {
        self.complete_ns().unwrap_or(self.invoke.time_ns)
    }

    /// The completion's history index, or the invoke's.
    pub(crate) fn end_index(&self) -> u64 {
        self.completion.unwrap_or(self.invoke).index
    }
}

/// Pairs invokes with completions per (process, operation kind), first in first out: a
/// Jepsen process runs one operation at a time, and the FIFO also copes with a workload
/// that pipelines operations of one kind in order. Returned in invoke order.
pub(crate) fn pair(history: &[Event]) -> Vec<Operation<'_>> {
    let mut events: Vec<&Event> = history.iter().collect();
    events.sort_by_key(|e| e.index);
    let mut ops: Vec<Operation<'_>> = Vec::new();
    let mut open: HashMap<_, VecDeque<usize>> = HashMap::new();
    for e in events {
        let key = (e.process, discriminant(&e.op));
        if e.kind == EventType::Invoke {
            open.entry(key).or_default().push_back(ops.len());
            ops.push(Operation {
                invoke: e,
                completion: None,
            });
        } else if let Some(i) = open.get_mut(&key).and_then(VecDeque::pop_front) {
            ops[i].completion = Some(e);
        } else {
            ops.push(Operation {
                invoke: e,
                completion: Some(e),
            });
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{NemesisTag, StatusValue};

    fn ev(index: u64, process: Process, kind: EventType, op: Op) -> Event {
        Event {
            index,
            time_ns: index * 10,
            process,
            kind,
            node: Some(1),
            op,
            error: None,
        }
    }

    #[test]
    fn pairs_per_process_and_kind_and_keeps_unfinished_ones_indeterminate() {
        let c0 = Process::Client(0);
        let c1 = Process::Client(1);
        let st = |v| Op::Status(v);
        let h = vec![
            ev(0, c0, EventType::Invoke, Op::ReadHead(None)),
            ev(1, c1, EventType::Invoke, st(None)),
            ev(2, c1, EventType::Fail, st(None)),
            ev(3, c0, EventType::Ok, Op::ReadHead(None)),
            ev(4, c1, EventType::Invoke, st(None)),
            ev(
                5,
                Process::Nemesis(NemesisTag::Nemesis),
                EventType::Info,
                st(Some(StatusValue {
                    tree_size: Some(1),
                    committed_index: None,
                    published_size: None,
                    role: None,
                })),
            ),
        ];
        let ops = pair(&h);
        assert_eq!(ops.len(), 4);
        assert_eq!((ops[0].invoke.index, ops[0].end_index()), (0, 3));
        assert!(ops[0].is_ok());
        assert_eq!(ops[1].outcome(), EventType::Fail);
        assert_eq!(ops[1].complete_ns(), Some(20));
        assert_eq!(ops[2].outcome(), EventType::Info);
        assert_eq!(ops[2].complete_ns(), None);
        assert_eq!(ops[2].end_ns(), 40);
        // A completion without an invoke stands alone.
        assert_eq!(ops[3].invoke.index, 5);
        assert_eq!(ops[3].outcome(), EventType::Info);
    }
}
