//! The application a node gives its Raft layer: the log's replicated state machine, the
//! leader's handling of add-leaf requests forwarded by followers, and the signing key's
//! hand-over around leadership transfers.

use crate::api::add_leaf::Submitter;
use crate::kt::updates::Updates;
use crate::publish::custody::KeySlot;
use crate::replicated::LeafState;
use crate::wire;
use futures::future::BoxFuture;
use futures::FutureExt;
use prost::Message;
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
    /// The directory's update path, if this log runs one.
    pub updates: Option<Arc<Updates>>,
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
        progress: &mut dyn FnMut(&mut WriteBatch, usize),
    ) -> io::Result<Vec<CommandResult>> {
        self.state.apply(commands, progress)
    }

    fn status(&self) -> Vec<u8> {
        self.state
            .status(self.keys.publishing(), self.keys.get().is_some())
            .encode()
    }

    fn forward(
        &self,
        node: &NodeHandle,
        request: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, Refusal>> {
        let f = match wire::ForwardedAddLeaf::decode(request.as_slice()) {
            Ok(f) => f,
            Err(e) => {
                return futures::future::ready(Err(Refusal(format!(
                    "undecodable forwarded request: {e}"
                ))))
                .boxed()
            }
        };
        if let Some(update) = f.kt_update {
            let Some(updates) = self.updates.clone() else {
                return futures::future::ready(Err(Refusal("this log runs no directory".into())))
                    .boxed();
            };
            let node = node.clone();
            return async move { Ok(updates.forwarded(&node, &update).await) }.boxed();
        }
        let submitter = self.submitter.clone();
        async move { Ok(submitter.forwarded(f).await) }.boxed()
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
