//! What the raft crate's integration tests share: a minimal application.
#![allow(dead_code)]

use quorumlog_raft::types::{Command, CommandResult};
use quorumlog_raft::Application;
use rocksdb::{ColumnFamilyDescriptor, Options, WriteBatch, DB};
use std::io;
use std::sync::{Arc, Mutex};

/// A minimal application: counts applied commands in its own column family.
#[derive(Default)]
pub struct Counter {
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
        progress: &mut dyn FnMut(&mut WriteBatch, usize),
    ) -> io::Result<Vec<CommandResult>> {
        let db = self.db.lock().unwrap().clone().unwrap();
        let cf = db.cf_handle("count").unwrap();
        let before = db
            .get_cf(cf, b"n")
            .map_err(io::Error::other)?
            .map_or(0, |v| u64::from_be_bytes(v.try_into().unwrap()));
        let mut batch = WriteBatch::default();
        batch.put_cf(cf, b"n", (before + commands.len() as u64).to_be_bytes());
        progress(&mut batch, commands.len());
        db.write(batch).map_err(io::Error::other)?;
        Ok((1..=commands.len() as u64)
            .map(|i| CommandResult((before + i).to_be_bytes().to_vec()))
            .collect())
    }

    fn status(&self) -> Vec<u8> {
        Vec::new()
    }
}

impl Counter {
    /// Commands applied so far (0 before the database is attached).
    pub fn count(&self) -> u64 {
        let Some(db) = self.db.lock().unwrap().clone() else {
            return 0;
        };
        let cf = db.cf_handle("count").unwrap();
        db.get_cf(cf, b"n")
            .unwrap()
            .map_or(0, |v| u64::from_be_bytes(v.try_into().unwrap()))
    }
}
