//! openraft's storage conformance suite on the RocksDB log store and state machine.

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb, StorageError};
use quorumlog_raft::log_store::LogStore;
use quorumlog_raft::state_machine::StateMachine;
use quorumlog_raft::types::{Command, CommandResult, TypeConfig};
use quorumlog_raft::Application;
use rocksdb::{ColumnFamilyDescriptor, Options, WriteBatch, DB};
use std::io;
use std::sync::{Arc, Mutex};

/// A minimal application: counts applied commands in its own column family.
#[derive(Default)]
struct Counter {
    db: Mutex<Option<Arc<DB>>>,
}

impl Application for Counter {
    fn column_families(&self) -> Vec<ColumnFamilyDescriptor> {
        vec![ColumnFamilyDescriptor::new("count", Options::default())]
    }

    fn db_options(&self) -> Options {
        Options::default()
    }

    fn attach(&self, db: Arc<DB>) -> io::Result<()> {
        *self.db.lock().unwrap() = Some(db);
        Ok(())
    }

    fn apply(
        &self,
        commands: &[&Command],
        meta: &mut dyn FnMut(&mut WriteBatch),
    ) -> io::Result<Vec<CommandResult>> {
        let db = self.db.lock().unwrap().clone().unwrap();
        let cf = db.cf_handle("count").unwrap();
        let before = db
            .get_cf(cf, b"n")
            .map_err(io::Error::other)?
            .map_or(0, |v| u64::from_be_bytes(v.try_into().unwrap()));
        let mut batch = WriteBatch::default();
        batch.put_cf(cf, b"n", (before + commands.len() as u64).to_be_bytes());
        meta(&mut batch);
        db.write(batch).map_err(io::Error::other)?;
        Ok((1..=commands.len() as u64)
            .map(|i| CommandResult((before + i).to_be_bytes().to_vec()))
            .collect())
    }

    fn status(&self) -> Vec<u8> {
        Vec::new()
    }
}

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let io = |e| StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, e);
        let dir = tempfile::tempdir().map_err(io)?;
        let log = LogStore::open(&dir.path().join("raft-log")).map_err(io)?;
        let sm = StateMachine::open(dir.path(), Arc::new(Counter::default())).map_err(io)?;
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite() {
    Suite::test_all(Builder).await.unwrap();
}
