//! openraft's state machine over an [`Application`](crate::Application) that keeps its state in RocksDB.
//!
//! Each applied chunk of entries is one RocksDB write batch holding the application's
//! changes together with `last_applied` and the membership, so a crash can never separate
//! them. Snapshots are RocksDB checkpoints of the whole state database; installing one
//! switches the node to a new database directory ("generation") named by an `ACTIVE` file
//! that is replaced atomically, so a crash mid-install leaves the old state intact.

use crate::application::Application;
use crate::codec::{decode, encode};
use crate::snapshot::{clone_checkpoint, write_atomic, SnapshotDir, SnapshotStore};
use crate::types::{
    CommandResult, EntryPayload, EntryResponder, LogId, Snapshot, SnapshotMeta, StoredMembership,
    TypeConfig,
};
use futures::{FutureExt, Stream, TryStreamExt};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use rocksdb::checkpoint::Checkpoint;
use rocksdb::{ColumnFamilyDescriptor, Options, WriteBatch, DB};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const CF_SM_META: &str = "sm_meta";
const KEY_APPLIED: &[u8] = b"last_applied";
const KEY_MEMBERSHIP: &[u8] = b"membership";
/// Most entries applied in one RocksDB write.
const APPLY_CHUNK: usize = 256;

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

struct Inner {
    app: Arc<dyn Application>,
    state_root: PathBuf,
    snapshots: SnapshotStore,
    /// Serialises applying and snapshot install.
    live: Mutex<Live>,
    /// Serialises snapshot building and snapshot install, so a snapshot is never taken of
    /// a database generation that an install is replacing. Applying does not take it.
    snapshotting: Mutex<()>,
}

struct Live {
    db: Arc<DB>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

/// The state machine handed to openraft. Cheap to clone.
#[derive(Clone)]
pub struct StateMachine {
    inner: Arc<Inner>,
}

fn open_db(app: &dyn Application, dir: &Path) -> io::Result<Arc<DB>> {
    let mut opts = app.db_options();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    let mut cfs = app.column_families();
    cfs.push(ColumnFamilyDescriptor::new(CF_SM_META, Options::default()));
    Ok(Arc::new(
        DB::open_cf_descriptors(&opts, dir, cfs).map_err(io_err)?,
    ))
}

/// Opens a snapshot's database without writing to it (to read its metadata).
fn open_db_read_only(app: &dyn Application, dir: &Path) -> io::Result<DB> {
    let opts = app.db_options();
    let mut cfs = app.column_families();
    cfs.push(ColumnFamilyDescriptor::new(CF_SM_META, Options::default()));
    DB::open_cf_descriptors_read_only(&opts, dir, cfs, false).map_err(io_err)
}

fn read_meta(db: &DB) -> io::Result<(Option<LogId>, StoredMembership)> {
    let cf = db.cf_handle(CF_SM_META).ok_or_else(|| io_err("sm_meta"))?;
    let applied = match db.get_cf(cf, KEY_APPLIED).map_err(io_err)? {
        Some(v) => decode(&v)?,
        None => None,
    };
    let membership = match db.get_cf(cf, KEY_MEMBERSHIP).map_err(io_err)? {
        Some(v) => decode(&v)?,
        None => StoredMembership::default(),
    };
    Ok((applied, membership))
}

fn meta_writer<'a>(
    db: &'a DB,
    applied: Option<LogId>,
    membership: &StoredMembership,
) -> io::Result<impl FnMut(&mut WriteBatch) + 'a> {
    let cf = db.cf_handle(CF_SM_META).ok_or_else(|| io_err("sm_meta"))?;
    let applied = encode(&applied);
    let membership = encode(membership);
    Ok(move |b: &mut WriteBatch| {
        b.put_cf(cf, KEY_APPLIED, &applied);
        b.put_cf(cf, KEY_MEMBERSHIP, &membership);
    })
}

/// Writes the progress of a chunk whose command `k` sits at `points[k]` (its entry's log id
/// and the membership as of that entry): a write completing the first `done` commands
/// records `points[done - 1]`, the one completing all of them the chunk's end.
fn progress_writer<'a>(
    db: &'a DB,
    points: &'a [(LogId, StoredMembership)],
    end: (Option<LogId>, &'a StoredMembership),
) -> io::Result<impl FnMut(&mut WriteBatch, usize) + 'a> {
    let cf = db.cf_handle(CF_SM_META).ok_or_else(|| io_err("sm_meta"))?;
    Ok(move |b: &mut WriteBatch, done: usize| {
        let (applied, membership) = if done >= points.len() {
            end
        } else if done == 0 {
            return;
        } else {
            let (id, m) = &points[done - 1];
            (Some(*id), m)
        };
        b.put_cf(cf, KEY_APPLIED, encode(&applied));
        b.put_cf(cf, KEY_MEMBERSHIP, encode(membership));
    })
}

impl StateMachine {
    /// Opens the state under `data_dir/state` and snapshots under `data_dir/snapshots`.
    pub fn open(data_dir: &Path, app: Arc<dyn Application>) -> io::Result<StateMachine> {
        let state_root = data_dir.join("state");
        fs::create_dir_all(&state_root)?;
        let active = state_root.join("ACTIVE");
        let generation = match fs::read_to_string(&active) {
            Ok(s) => s.trim().to_string(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                write_atomic(&active, b"gen-0")?;
                "gen-0".to_string()
            }
            Err(e) => return Err(e),
        };
        // Generations other than the active one are leftovers of past installs.
        for entry in fs::read_dir(&state_root)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("gen-") && name != generation {
                fs::remove_dir_all(entry.path())?;
            }
        }
        let db = open_db(app.as_ref(), &state_root.join(&generation))?;
        app.attach(db.clone())?;
        let (last_applied, membership) = read_meta(&db)?;
        let snapshots = SnapshotStore::open(data_dir.join("snapshots"))?;
        Ok(StateMachine {
            inner: Arc::new(Inner {
                app,
                state_root,
                snapshots,
                live: Mutex::new(Live {
                    db,
                    last_applied,
                    membership,
                }),
                snapshotting: Mutex::new(()),
            }),
        })
    }

    /// The directory where incoming snapshot transfers are written.
    pub fn new_incoming_snapshot_dir(&self) -> io::Result<PathBuf> {
        self.inner.snapshots.new_incoming_dir()
    }

    /// The application's status, opaque here.
    pub fn app_status(&self) -> Vec<u8> {
        self.inner.app.status()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Live> {
        self.inner.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies one chunk of entries in one write; returns the result of each entry.
    fn apply_chunk(&self, entries: &[(LogId, &EntryPayload)]) -> io::Result<Vec<CommandResult>> {
        let _span = tracing::debug_span!(
            "apply",
            first = entries.first().map(|(l, _)| l.index),
            last = entries.last().map(|(l, _)| l.index)
        )
        .entered();
        let mut live = self.lock();
        let mut membership = live.membership.clone();
        let mut commands = Vec::new();
        let mut points = Vec::new();
        for (log_id, payload) in entries {
            match payload {
                EntryPayload::Normal(c) => {
                    commands.push(c);
                    points.push((*log_id, membership.clone()));
                }
                EntryPayload::Membership(m) => {
                    membership = StoredMembership::new(Some(*log_id), m.clone());
                }
                EntryPayload::Blank => {}
            }
        }
        let last = entries.last().map(|(l, _)| *l);
        let db = live.db.clone();
        let mut results = if commands.is_empty() {
            let mut batch = WriteBatch::default();
            meta_writer(&db, last, &membership)?(&mut batch);
            db.write(batch).map_err(io_err)?;
            Vec::new()
        } else {
            let mut progress = progress_writer(&db, &points, (last, &membership))?;
            self.inner.app.apply(&commands, &mut progress)?
        }
        .into_iter();
        live.last_applied = last;
        live.membership = membership;
        Ok(entries
            .iter()
            .map(|(_, p)| match p {
                EntryPayload::Normal(_) => results.next().unwrap_or_default(),
                _ => CommandResult::default(),
            })
            .collect())
    }

    fn build(&self) -> io::Result<Snapshot> {
        let _building = self
            .inner
            .snapshotting
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let started = std::time::Instant::now();
        let db = self.lock().db.clone();
        let dir = self.inner.snapshots.new_tmp_dir()?;
        // Applying goes on meanwhile: RocksDB checkpoints a live database consistently
        // (every applied chunk is one atomic write), and the metadata is read back from the
        // checkpoint itself, where `last_applied` and the membership were written in the
        // same batches as the state they describe. Pausing applying for the checkpoint's
        // memtable flush stalled every client for hundreds of milliseconds.
        Checkpoint::new(&db)
            .and_then(|c| c.create_checkpoint(dir.join("db")))
            .map_err(io_err)?;
        drop(db);
        let checkpointed = started.elapsed();
        let (last_log_id, last_membership) = {
            let copy = open_db_read_only(self.inner.app.as_ref(), &dir.join("db"))?;
            read_meta(&copy)?
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
        };
        let snap = self.inner.snapshots.commit(&dir, &meta)?;
        tracing::info!(
            snapshot = %snap.path.display(),
            checkpoint_ms = checkpointed.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "built snapshot"
        );
        Ok(Snapshot {
            meta,
            snapshot: snap,
        })
    }

    fn install(&self, meta: &SnapshotMeta, data: SnapshotDir) -> io::Result<()> {
        let _installing = self
            .inner
            .snapshotting
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Check the snapshot before it replaces anything: it must open as a database and
        // state the position it claims. Committing it deletes the older snapshots, and the
        // live state is swapped only after the new one has opened.
        {
            let copy = open_db_read_only(self.inner.app.as_ref(), &data.db_dir())?;
            let (applied, _) = read_meta(&copy)?;
            if applied != meta.last_log_id {
                return Err(io::Error::other(format!(
                    "snapshot states position {applied:?} but was sent as {:?}",
                    meta.last_log_id
                )));
            }
        }
        let snap = self.inner.snapshots.commit(&data.path, meta)?;
        let mut live = self.lock();
        let next = (0u64..)
            .map(|n| format!("gen-{n}"))
            .find(|g| !self.inner.state_root.join(g).exists())
            .expect("unbounded range");
        let dir = self.inner.state_root.join(&next);
        clone_checkpoint(&snap.db_dir(), &dir)?;
        let db = open_db(self.inner.app.as_ref(), &dir)?;
        // The checkpoint already holds this metadata; write it again so the new database
        // states exactly what openraft was told, durably, before it becomes active.
        let mut batch = WriteBatch::default();
        meta_writer(&db, meta.last_log_id, &meta.last_membership)?(&mut batch);
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(true);
        db.write_opt(batch, &opts).map_err(io_err)?;
        write_atomic(&self.inner.state_root.join("ACTIVE"), next.as_bytes())?;
        self.inner.app.attach(db.clone())?;
        live.db = db;
        live.last_applied = meta.last_log_id;
        live.membership = meta.last_membership.clone();
        tracing::info!(snapshot = %snap.path.display(), generation = %next, "installed snapshot");
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotDir;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let sm = self.clone();
        tokio::task::spawn_blocking(move || sm.build())
            .await
            .map_err(io_err)?
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotDir;
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let live = self.lock();
        Ok((live.last_applied, live.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder, io::Error>> + Unpin + Send,
    {
        let mut done = false;
        while !done {
            // Take what is ready now (at least one entry) and apply it in one write.
            let mut chunk = match entries.try_next().await? {
                None => break,
                Some(e) => vec![e],
            };
            while chunk.len() < APPLY_CHUNK {
                match entries.try_next().now_or_never() {
                    Some(Ok(Some(e))) => chunk.push(e),
                    Some(Ok(None)) => {
                        done = true;
                        break;
                    }
                    Some(Err(e)) => return Err(e),
                    None => break,
                }
            }
            let sm = self.clone();
            let (chunk, results) = tokio::task::spawn_blocking(move || {
                let view: Vec<(LogId, &EntryPayload)> =
                    chunk.iter().map(|(e, _)| (e.log_id, &e.payload)).collect();
                let results = sm.apply_chunk(&view);
                (chunk, results)
            })
            .await
            .map_err(io_err)?;
            let results = results?;
            for ((_, responder), result) in chunk.into_iter().zip(results) {
                if let Some(r) = responder {
                    r.send(result);
                }
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotDir,
    ) -> Result<(), io::Error> {
        let sm = self.clone();
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || sm.install(&meta, snapshot))
            .await
            .map_err(io_err)?
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        Ok(self
            .inner
            .snapshots
            .current()?
            .map(|(meta, snapshot)| Snapshot { meta, snapshot }))
    }
}
