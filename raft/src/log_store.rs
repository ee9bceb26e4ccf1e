//! The Raft log and vote on RocksDB.
//!
//! Durability rules (openraft's contract): appended entries are readable when `append`
//! returns, and its callback fires only after they are fsynced; the vote is fsynced before
//! `save_vote` returns; no write is reordered. Vote and entries share one RocksDB instance,
//! hence one write-ahead log, so syncing the WAL makes every earlier write durable in order.
//!
//! Group commit: appends write to the WAL without syncing and hand their callback to one
//! flusher thread, which syncs once for everything queued and then fires the callbacks in
//! submission order.

use crate::codec::{decode, encode, Owned};
use crate::types::{Entry, IoFlushed, LogId, LogState, TypeConfig, Vote};
use openraft::storage::{RaftLogReader, RaftLogStorage};
use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, DB};
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;

const CF_META: &str = "log_meta";
const CF_ENTRIES: &str = "log_entries";
const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"last_purged";

/// The Raft log store. Clones share the database and the flusher.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    // Declared before `thread`: a clone drops its sender first, so when the last clone goes
    // the channel is closed by the time `_thread` joins the thread.
    flusher: mpsc::Sender<IoFlushed>,
    _thread: Arc<FlusherThread>,
}

/// Joins the flusher thread when the last handle goes, so the database is closed before
/// the process can exit (RocksDB aborts if its threads outlive its statics).
struct FlusherThread(std::sync::Mutex<Option<std::thread::JoinHandle<()>>>);

impl Drop for FlusherThread {
    fn drop(&mut self) {
        let handle = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl LogStore {
    /// Opens (or creates) the log database in `dir`.
    pub fn open(dir: &Path) -> io::Result<LogStore> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let cfs = [CF_META, CF_ENTRIES]
            .into_iter()
            .map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
        let db = Arc::new(DB::open_cf_descriptors(&opts, dir, cfs).map_err(io_err)?);
        let (tx, rx) = mpsc::channel::<IoFlushed>();
        let flush_db = db.clone();
        let handle = std::thread::Builder::new()
            .name("raft-log-flusher".into())
            .spawn(move || flusher(flush_db, rx))?;
        Ok(LogStore {
            db,
            flusher: tx,
            _thread: Arc::new(FlusherThread(std::sync::Mutex::new(Some(handle)))),
        })
    }

    fn cf(&self, name: &str) -> io::Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| io_err(format!("column family {name} missing")))
    }

    fn get_meta<T: Owned>(&self, k: &[u8]) -> io::Result<Option<T>> {
        match self.db.get_cf(self.cf(CF_META)?, k).map_err(io_err)? {
            None => Ok(None),
            Some(v) => Ok(Some(decode(&v)?)),
        }
    }

    /// Writes a metadata value and fsyncs the WAL before returning.
    async fn put_synced(&self, key: &'static [u8], value: Vec<u8>) -> io::Result<()> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let cf = db.cf_handle(CF_META).ok_or_else(|| io_err("meta cf"))?;
            db.put_cf(cf, key, value).map_err(io_err)?;
            db.flush_wal(SYNC_LOG).map_err(io_err)
        })
        .await
        .map_err(io_err)?
    }

    fn last_entry_id(&self) -> io::Result<Option<LogId>> {
        let mut it = self.db.iterator_cf(self.cf(CF_ENTRIES)?, IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(kv) => {
                let (_, v) = kv.map_err(io_err)?;
                let e: Entry = decode(&v)?;
                Ok(Some(e.log_id))
            }
        }
    }

    fn read_range(&self, start: u64, end: Option<u64>) -> io::Result<Vec<Entry>> {
        let cf = self.cf(CF_ENTRIES)?;
        let mut out = Vec::new();
        let it = self
            .db
            .iterator_cf(cf, IteratorMode::From(&key(start), Direction::Forward));
        for kv in it {
            let (k, v) = kv.map_err(io_err)?;
            let idx = u64::from_be_bytes(k.as_ref().try_into().map_err(io_err)?);
            if end.is_some_and(|e| idx >= e) {
                break;
            }
            out.push(decode(&v)?);
        }
        Ok(out)
    }
}

/// Whether the log store fsyncs at all: appends before their callbacks, the vote and the
/// committed index before returning. Off only in the planted-fault build the power-loss
/// tests use to show that they catch a log that acknowledges before its data is durable
/// (with appends alone unsynced, the synced committed index still covers the leader's
/// entries before it acknowledges them); no configuration reaches it.
#[cfg(not(feature = "unsafe-ack-before-fsync"))]
const SYNC_LOG: bool = true;
#[cfg(feature = "unsafe-ack-before-fsync")]
const SYNC_LOG: bool = false;

/// Syncs the WAL for every queued append, then fires their callbacks in order.
fn flusher(db: Arc<DB>, rx: mpsc::Receiver<IoFlushed>) {
    while let Ok(first) = rx.recv() {
        let mut waiting = vec![first];
        waiting.extend(rx.try_iter());
        let result = db.flush_wal(SYNC_LOG);
        for cb in waiting {
            cb.io_completed(result.as_ref().map(|_| ()).map_err(io_err));
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => Some(e + 1),
            Bound::Excluded(e) => Some(*e),
            Bound::Unbounded => None,
        };
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read_range(start, end))
            .await
            .map_err(io_err)?
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.get_meta(KEY_VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState, io::Error> {
        let last_purged: Option<LogId> = self.get_meta(KEY_PURGED)?;
        let last = self.last_entry_id()?.or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        // The vote must be on disk before anyone acts on it.
        self.put_synced(KEY_VOTE, encode(vote)).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Durable before openraft acts on it: after a restart, entries up to this index are
        // re-applied without waiting for a new leader.
        self.put_synced(KEY_COMMITTED, encode(&committed)).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IoFlushed) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut batch = WriteBatch::default();
        let cf = self.cf(CF_ENTRIES)?;
        for e in entries {
            batch.put_cf(cf, key(e.log_id.index), encode(&e));
        }
        let db = self.db.clone();
        // Written (unsynced) before returning, so the entries are readable at once.
        tokio::task::spawn_blocking(move || db.write(batch).map_err(io_err))
            .await
            .map_err(io_err)??;
        self.flusher
            .send(callback)
            .map_err(|_| io_err("log flusher stopped"))
    }

    async fn truncate_after(&mut self, last: Option<LogId>) -> Result<(), io::Error> {
        let from = last.map_or(0, |l| l.index + 1);
        self.db
            .delete_range_cf(self.cf(CF_ENTRIES)?, key(from), key(u64::MAX))
            .map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // Record the purge point first: a crash in between leaves extra entries, never a gap.
        self.db
            .put_cf(self.cf(CF_META)?, KEY_PURGED, encode(&log_id))
            .map_err(io_err)?;
        self.db
            .delete_range_cf(self.cf(CF_ENTRIES)?, key(0), key(log_id.index + 1))
            .map_err(io_err)
    }
}
