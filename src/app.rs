//! The application a node gives its Raft layer: the log's replicated state machine, the
//! leader's handling of add-leaf requests forwarded by followers, and the signing key's
//! hand-over around leadership transfers.

use crate::api::add_leaf::Submitter;
use crate::publish::custody::KeySlot;
use crate::replicated::LeafState;
use futures::future::BoxFuture;
use futures::FutureExt;
use quorumlog_raft::types::{Command, CommandResult, NodeId};
use quorumlog_raft::{Application, NodeHandle, Refusal};
use rocksdb::{ColumnFamilyDescriptor, Options, WriteBatch, DB};
use std::io;
use std::sync::Arc;

/// The Sigsum log as a Raft application.
pub struct LogApplication {
    pub state: Arc<LeafState>,
    pub submitter: Arc<Submitter>,
    pub keys: Arc<KeySlot>,
}

impl Application for LogApplication {
    fn column_families(&self) -> Vec<ColumnFamilyDescriptor> {
        self.state.column_families()
    }

    fn db_options(&self) -> Options {
        self.state.db_options()
    }

    fn attach(&self, db: Arc<DB>) -> io::Result<()> {
        self.state.attach(db)
    }

    fn apply(
        &self,
        commands: &[&Command],
        meta: &mut dyn FnMut(&mut WriteBatch),
    ) -> io::Result<Vec<CommandResult>> {
        self.state.apply(commands, meta)
    }

    fn status(&self) -> Vec<u8> {
        self.state
            .status(self.keys.publishing(), self.keys.get().is_some())
            .encode()
    }

    fn forward(
        &self,
        _node: &NodeHandle,
        request: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, Refusal>> {
        let submitter = self.submitter.clone();
        async move { Ok(submitter.forwarded(&request).await) }.boxed()
    }

    fn receive_handover(&self, payload: Vec<u8>) -> BoxFuture<'static, Result<String, Refusal>> {
        futures::future::ready(self.keys.receive_handover(payload)).boxed()
    }

    fn before_transfer(
        &self,
        node: &NodeHandle,
        to: NodeId,
    ) -> BoxFuture<'static, Result<(), Refusal>> {
        let (keys, node) = (self.keys.clone(), node.clone());
        async move { keys.before_transfer(&node, to).await }.boxed()
    }

    fn after_transfer(&self, node: &NodeHandle, to: NodeId, moved: bool) -> BoxFuture<'static, ()> {
        let (keys, node) = (self.keys.clone(), node.clone());
        async move { keys.after_transfer(&node, to, moved).await }.boxed()
    }
}
