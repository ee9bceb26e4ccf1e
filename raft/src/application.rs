//! What the application gives the replication layer, in one trait object at
//! [`Node::start`](crate::Node::start): the replicated state machine, and its answers to the
//! few node-to-node calls that carry application messages (forwarded requests, the state a
//! leader hands to the target of a leadership transfer). The layer never reads those
//! messages; it only decides who may send them.

use crate::node::NodeHandle;
use crate::types::{Command, CommandResult, NodeId};
use futures::future::BoxFuture;
use rocksdb::{ColumnFamilyDescriptor, Options, WriteBatch, DB};
use std::io;
use std::sync::Arc;
use thiserror::Error;

/// The application declining a request; the message goes back to the caller.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{0}")]
pub struct Refusal(pub String);

/// The replicated application: what the commands mean, where their effects live, and how
/// it answers application messages from other nodes.
pub trait Application: Send + Sync + 'static {
    /// Column families the application keeps in the state database.
    fn column_families(&self) -> Vec<ColumnFamilyDescriptor>;
    /// Database-wide options the application's column families need.
    fn db_options(&self) -> Options;
    /// Binds to the state database, at startup and again after a snapshot install.
    fn attach(&self, db: Arc<DB>) -> io::Result<()>;
    /// Applies `commands` in log order. `progress(batch, done)` adds Raft's progress to a
    /// write that completes the first `done` commands; the last write to the attached
    /// database must carry `progress(batch, commands.len())`. A write that records no
    /// progress is applied again after a crash before the next one that does, so either
    /// applying it twice changes nothing or it records its progress. Returns one result per
    /// command. Must be deterministic: every node applies the same commands.
    fn apply(
        &self,
        commands: &[&Command],
        progress: &mut dyn FnMut(&mut WriteBatch, usize),
    ) -> io::Result<Vec<CommandResult>>;
    /// The application's status for `NodeStatus.app_status`, in its own encoding (the raft
    /// layer passes it through without reading it).
    fn status(&self) -> Vec<u8>;

    /// Runs, on the leader, a request a member forwarded with
    /// [`NodeHandle::forward_to_leader`]; the reply goes back to that member.
    fn forward(
        &self,
        _node: &NodeHandle,
        _request: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, Refusal>> {
        Box::pin(futures::future::ready(Err(Refusal(
            "this node accepts no forwarded requests".into(),
        ))))
    }

    /// Takes a hand-over payload: from an operator, or from the leader (sent with
    /// [`NodeHandle::hand_over`] in [`Application::before_transfer`]) while it moves
    /// leadership to this node. Returns a message for the sender.
    fn receive_handover(&self, _payload: Vec<u8>) -> BoxFuture<'static, Result<String, Refusal>> {
        Box::pin(futures::future::ready(Err(Refusal(
            "this node takes no hand-over".into(),
        ))))
    }

    /// Runs on the leader before leadership moves to `to`; a refusal cancels the transfer.
    fn before_transfer(
        &self,
        _node: &NodeHandle,
        _to: NodeId,
    ) -> BoxFuture<'static, Result<(), Refusal>> {
        Box::pin(futures::future::ready(Ok(())))
    }

    /// Runs on the old leader once a transfer to `to` has ended: `moved` if `to` took over
    /// in time.
    fn after_transfer(
        &self,
        _node: &NodeHandle,
        _to: NodeId,
        _moved: bool,
    ) -> BoxFuture<'static, ()> {
        Box::pin(futures::future::ready(()))
    }
}
