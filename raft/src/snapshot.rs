//! Snapshots as directories on disk: a RocksDB checkpoint of the state database plus its
//! metadata. They are built, listed, cleaned up, and written atomically here; the network
//! module streams their files in chunks and never holds a whole snapshot in memory.
//!
//! Layout under the node's data directory:
//!
//! ```text
//! snapshots/snap-<index>-<term>-<leader>/meta   protobuf SnapshotMeta (codec.rs)
//! snapshots/snap-<index>-<term>-<leader>/db/    RocksDB checkpoint (flat list of files)
//! snapshots/incoming-<n>/                       a transfer in progress
//! ```

use crate::codec::{decode, encode};
use crate::types::SnapshotMeta;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use thiserror::Error;

/// Most files a received snapshot may have (a RocksDB checkpoint has a few dozen).
pub const MAX_SNAPSHOT_FILES: usize = 10_000;

/// Most bytes a received snapshot may have: a bound on what a peer can make this node
/// write, far above any tree this log is meant for (a billion leaves take about 300 GiB).
pub const MAX_SNAPSHOT_BYTES: u64 = 4 << 40;

/// Snapshot directories being streamed to followers, with how many transfers read each.
/// Process-wide because a sender holds only the directory openraft handed it; paths are
/// absolute per node, so nodes sharing a process do not collide.
static PINNED: Mutex<BTreeMap<PathBuf, usize>> = Mutex::new(BTreeMap::new());

fn pinned() -> std::sync::MutexGuard<'static, BTreeMap<PathBuf, usize>> {
    PINNED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps a snapshot directory from being deleted while a transfer reads it. When the last
/// pin of a snapshot that is no longer the newest goes, the snapshot is deleted.
#[derive(Debug)]
pub struct SnapshotPin {
    path: PathBuf,
}

impl Drop for SnapshotPin {
    fn drop(&mut self) {
        let mut pins = pinned();
        let last = match pins.get_mut(&self.path) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            _ => {
                pins.remove(&self.path);
                true
            }
        };
        if !last {
            return;
        }
        // Deleted under the lock, so that nobody pins it in between.
        let newer_exists = self.path.parent().is_some_and(|root| {
            fs::read_dir(root).is_ok_and(|entries| {
                entries.filter_map(|e| e.ok()).any(|e| {
                    e.file_name().to_string_lossy().starts_with("snap-") && e.path() > self.path
                })
            })
        });
        if newer_exists {
            if let Err(e) = fs::remove_dir_all(&self.path) {
                tracing::warn!(snapshot = %self.path.display(), error = %e, "could not remove a superseded snapshot");
            }
        }
    }
}

/// Snapshot data as openraft sees it: the directory holding `meta` and `db/`.
#[derive(Debug, Clone)]
pub struct SnapshotDir {
    pub path: PathBuf,
}

impl SnapshotDir {
    /// Pins the snapshot for a transfer; fails if it has been deleted meanwhile (a newer
    /// one replaced it before the transfer began).
    pub fn pin(&self) -> io::Result<SnapshotPin> {
        let mut pins = pinned();
        if !self.path.join("meta").exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("snapshot {} is gone", self.path.display()),
            ));
        }
        *pins.entry(self.path.clone()).or_insert(0) += 1;
        Ok(SnapshotPin {
            path: self.path.clone(),
        })
    }

    /// The checkpoint directory inside the snapshot.
    pub fn db_dir(&self) -> PathBuf {
        self.path.join("db")
    }

    /// The files of the checkpoint, sorted by name (checkpoints are flat).
    pub fn files(&self) -> io::Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(self.db_dir())? {
            let entry = entry?;
            let md = entry.metadata()?;
            if md.is_file() {
                let name = entry
                    .file_name()
                    .into_string()
                    .map_err(|_| io::Error::other("non UTF-8 file name in snapshot"))?;
                out.push((name, md.len()));
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Whether `name` is safe as a file name inside a snapshot: no path separators, no `..`.
pub fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// fsyncs a file or directory.
pub fn sync_path(p: &Path) -> io::Result<()> {
    File::open(p)?.sync_all()
}

/// fsyncs every file in `dir` and the directory itself.
pub fn sync_dir_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let p = entry?.path();
        if p.is_dir() {
            sync_dir_tree(&p)?;
        } else {
            sync_path(&p)?;
        }
    }
    sync_path(dir)
}

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename, fsync directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        sync_path(parent)?;
    }
    Ok(())
}

/// The snapshot directory of a node.
#[derive(Debug)]
pub struct SnapshotStore {
    root: PathBuf,
    incoming: AtomicU64,
}

impl SnapshotStore {
    /// Opens `root`, creating it, and removes transfers a crash left half done.
    pub fn open(root: PathBuf) -> io::Result<SnapshotStore> {
        fs::create_dir_all(&root)?;
        for entry in fs::read_dir(&root)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("incoming-") || name.starts_with("tmp-") {
                fs::remove_dir_all(entry.path())?;
            }
        }
        Ok(SnapshotStore {
            root,
            incoming: AtomicU64::new(0),
        })
    }

    fn name(meta: &SnapshotMeta) -> String {
        match &meta.last_log_id {
            None => "snap-00000000000000000000-0-0".to_string(),
            Some(l) => format!(
                "snap-{:020}-{}-{}",
                l.index, l.leader_id.term, l.leader_id.node_id
            ),
        }
    }

    /// A fresh directory for building a snapshot locally; `db/` must not exist yet
    /// (RocksDB's checkpoint creates it).
    pub fn new_tmp_dir(&self) -> io::Result<PathBuf> {
        let n = self.incoming.fetch_add(1, Ordering::Relaxed);
        let dir = self.root.join(format!("tmp-{}-{n}", std::process::id()));
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// A fresh directory (with an empty `db/`) to receive a snapshot into.
    pub fn new_incoming_dir(&self) -> io::Result<PathBuf> {
        let n = self.incoming.fetch_add(1, Ordering::Relaxed);
        let dir = self
            .root
            .join(format!("incoming-{}-{n}", std::process::id()));
        fs::create_dir_all(dir.join("db"))?;
        Ok(dir)
    }

    /// Makes a fully written directory (with `db/`) the current snapshot for `meta`:
    /// writes the metadata, syncs everything, renames it into place and deletes older
    /// snapshots.
    pub fn commit(&self, dir: &Path, meta: &SnapshotMeta) -> io::Result<SnapshotDir> {
        let dest = self.root.join(Self::name(meta));
        if dir == dest {
            // Re-installing the snapshot we already hold (openraft does so at startup).
            return Ok(SnapshotDir { path: dest });
        }
        write_atomic(&dir.join("meta"), &encode(meta))?;
        sync_dir_tree(dir)?;
        if dest.exists() {
            fs::remove_dir_all(&dest)?;
        }
        fs::rename(dir, &dest)?;
        sync_path(&self.root)?;
        self.remove_older_than(&dest)?;
        Ok(SnapshotDir { path: dest })
    }

    fn snapshots(&self) -> io::Result<Vec<PathBuf>> {
        let mut out: Vec<PathBuf> = fs::read_dir(&self.root)?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("snap-"))
            .map(|e| e.path())
            .collect();
        out.sort();
        Ok(out)
    }

    /// Deletes snapshots older than `keep`, except those a transfer is reading (the last
    /// transfer's pin deletes them).
    fn remove_older_than(&self, keep: &Path) -> io::Result<()> {
        let pins = pinned();
        for p in self.snapshots()? {
            if p.as_path() < keep && !pins.contains_key(&p) {
                fs::remove_dir_all(&p)?;
            }
        }
        Ok(())
    }

    /// The newest complete snapshot, if any.
    pub fn current(&self) -> io::Result<Option<(SnapshotMeta, SnapshotDir)>> {
        for p in self.snapshots()?.into_iter().rev() {
            if let Ok(bytes) = fs::read(p.join("meta")) {
                let meta: SnapshotMeta = decode(&bytes)?;
                return Ok(Some((meta, SnapshotDir { path: p })));
            }
        }
        Ok(None)
    }
}

/// Copies a checkpoint directory into a new database directory: table files are immutable
/// and are hard-linked, everything else is copied.
pub fn clone_checkpoint(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let src = entry.path();
        let dst = to.join(&name);
        let is_table = name.to_string_lossy().ends_with(".sst");
        if !(is_table && fs::hard_link(&src, &dst).is_ok()) {
            fs::copy(&src, &dst)?;
        }
    }
    sync_dir_tree(to)
}

/// Why a received snapshot was refused.
#[derive(Debug, Error)]
pub enum ReceiveError {
    /// A file name that could escape the snapshot directory.
    #[error("invalid file name in snapshot: {0:?}")]
    BadName(String),
    /// Chunks not in order: a gap in a file, or a file resumed after another began.
    #[error("snapshot file {name}: {reason}")]
    OutOfOrder {
        name: String,
        /// What was wrong.
        reason: String,
    },
    /// More files or bytes than a snapshot may have.
    #[error("snapshot exceeds {0}")]
    TooLarge(String),
    /// The stream ended before the manifest: the transfer was cut short.
    #[error("snapshot stream ended without its manifest: truncated")]
    Truncated,
    /// What arrived is not what the manifest lists.
    #[error("snapshot does not match its manifest: {0}")]
    Mismatch(String),
    /// Writing failed here.
    #[error("writing snapshot: {0}")]
    Io(#[from] io::Error),
}

/// What the manifest says of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content.
    pub sha256: [u8; 32],
}

/// Computes manifest entries for files as they are read, for the sending side.
#[derive(Default)]
pub struct ManifestBuilder {
    files: BTreeMap<String, ManifestEntry>,
}

impl ManifestBuilder {
    /// Records file `name` with its whole content hashed in `hasher` over `size` bytes.
    pub fn add(&mut self, name: String, size: u64, hasher: Sha256) {
        self.files.insert(
            name,
            ManifestEntry {
                size,
                sha256: hasher.finalize().into(),
            },
        );
    }

    /// The manifest.
    pub fn finish(self) -> BTreeMap<String, ManifestEntry> {
        self.files
    }
}

/// A snapshot being received into `dir/db/`: one file open at a time, each hashed as it
/// is written, with caps on file count and bytes.
pub struct IncomingSnapshot {
    dir: PathBuf,
    open: Option<(String, File, u64, Sha256)>,
    done: BTreeMap<String, ManifestEntry>,
    bytes: u64,
    max_files: usize,
    max_bytes: u64,
}

impl IncomingSnapshot {
    /// Receives into `dir` (made by [`SnapshotStore::new_incoming_dir`]).
    pub fn new(dir: PathBuf) -> IncomingSnapshot {
        IncomingSnapshot::with_limits(dir, MAX_SNAPSHOT_FILES, MAX_SNAPSHOT_BYTES)
    }

    /// Like [`IncomingSnapshot::new`] with other caps.
    pub fn with_limits(dir: PathBuf, max_files: usize, max_bytes: u64) -> IncomingSnapshot {
        IncomingSnapshot {
            dir,
            open: None,
            done: BTreeMap::new(),
            bytes: 0,
            max_files,
            max_bytes,
        }
    }

    /// The directory being received into.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes one chunk. A file's chunks come in order and together: a new name closes
    /// the file before it for good.
    pub fn chunk(&mut self, name: &str, offset: u64, data: &[u8]) -> Result<(), ReceiveError> {
        let out_of_order = |reason: String| ReceiveError::OutOfOrder {
            name: name.to_string(),
            reason,
        };
        if self.open.as_ref().is_none_or(|(open, ..)| open != name) {
            if !valid_file_name(name) {
                return Err(ReceiveError::BadName(name.to_string()));
            }
            if self.done.contains_key(name) {
                return Err(out_of_order("resumed after another file began".into()));
            }
            self.close_open()?;
            if self.done.len() + 1 > self.max_files {
                return Err(ReceiveError::TooLarge(format!("{} files", self.max_files)));
            }
            let file = File::create(self.dir.join("db").join(name))?;
            self.open = Some((name.to_string(), file, 0, Sha256::new()));
        }
        let (_, file, written, hasher) = self.open.as_mut().expect("opened above");
        if offset != *written {
            return Err(out_of_order(format!(
                "chunk at offset {offset} but {written} bytes received"
            )));
        }
        self.bytes += data.len() as u64;
        if self.bytes > self.max_bytes {
            return Err(ReceiveError::TooLarge(format!("{} bytes", self.max_bytes)));
        }
        file.write_all(data)?;
        hasher.update(data);
        *written += data.len() as u64;
        Ok(())
    }

    fn close_open(&mut self) -> io::Result<()> {
        // Synced all together by `finish`.
        if let Some((name, _file, size, hasher)) = self.open.take() {
            self.done.insert(
                name,
                ManifestEntry {
                    size,
                    sha256: hasher.finalize().into(),
                },
            );
        }
        Ok(())
    }

    /// Checks what arrived against the sender's manifest and syncs the directory.
    pub fn finish(
        mut self,
        manifest: &BTreeMap<String, ManifestEntry>,
    ) -> Result<(), ReceiveError> {
        self.close_open()?;
        if self.done != *manifest {
            let missing = manifest
                .keys()
                .filter(|k| !self.done.contains_key(*k))
                .count();
            let extra = self
                .done
                .keys()
                .filter(|k| !manifest.contains_key(*k))
                .count();
            let differ = manifest
                .iter()
                .filter(|(k, v)| self.done.get(*k).is_some_and(|d| d != *v))
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>();
            return Err(ReceiveError::Mismatch(format!(
                "{missing} files missing, {extra} not listed, content differs for {differ:?}"
            )));
        }
        if !manifest.contains_key("CURRENT") {
            return Err(ReceiveError::Mismatch("no CURRENT file".into()));
        }
        sync_dir_tree(&self.dir)?;
        Ok(())
    }
}

/// Reads a file for sending, in chunks of `chunk` bytes, hashing it; calls `send` with
/// each chunk (an empty file is one empty chunk, so that the receiver creates it).
pub fn read_file_chunks(
    path: &Path,
    chunk: usize,
    mut send: impl FnMut(u64, Vec<u8>) -> io::Result<()>,
) -> io::Result<(u64, Sha256)> {
    use std::io::Read;
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut offset = 0u64;
    loop {
        let mut buf = vec![0u8; chunk];
        let n = f.read(&mut buf)?;
        if n == 0 && offset > 0 {
            break;
        }
        buf.truncate(n);
        hasher.update(&buf);
        send(offset, buf)?;
        offset += n as u64;
        if n == 0 {
            break;
        }
    }
    Ok((offset, hasher))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta_at(index: u64) -> SnapshotMeta {
        use openraft::vote::RaftLeaderId;
        let leader = openraft::alias::LeaderIdOf::<crate::types::TypeConfig>::new(1, 1);
        SnapshotMeta {
            last_log_id: Some(crate::types::LogId::new(leader.to_committed(), index)),
            last_membership: Default::default(),
        }
    }

    fn built(store: &SnapshotStore, index: u64) -> SnapshotDir {
        let dir = store.new_incoming_dir().unwrap();
        fs::write(dir.join("db").join("CURRENT"), format!("{index}")).unwrap();
        store.commit(&dir, &meta_at(index)).unwrap()
    }

    #[test]
    fn a_snapshot_being_sent_outlives_newer_ones_until_the_transfer_ends() {
        let tmp = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(tmp.path().join("snapshots")).unwrap();
        let old = built(&store, 10);
        let pin = old.pin().unwrap();
        let second_pin = old.pin().unwrap();
        let newer = built(&store, 20);
        built(&store, 30);
        // The transfer can still read every file of the old snapshot.
        assert_eq!(
            fs::read_to_string(old.db_dir().join("CURRENT")).unwrap(),
            "10"
        );
        // An unpinned older snapshot goes as before.
        assert!(!newer.path.exists());
        drop(pin);
        assert!(old.path.exists(), "another transfer still reads it");
        drop(second_pin);
        assert!(!old.path.exists(), "the last transfer's end deletes it");
        // A deleted snapshot cannot be pinned: the sender fails instead of sending nothing.
        assert!(newer.pin().is_err());
        let (meta, current) = store.current().unwrap().unwrap();
        assert_eq!(meta.last_log_id.unwrap().index, 30);
        // The newest snapshot stays when its transfer ends.
        drop(current.pin().unwrap());
        assert!(current.path.exists());
    }

    fn send_all(
        files: &[(&str, &[u8])],
        rx: &mut IncomingSnapshot,
    ) -> BTreeMap<String, ManifestEntry> {
        let mut manifest = ManifestBuilder::default();
        for (name, content) in files {
            let src = rx.dir().join(format!("src-{name}"));
            fs::write(&src, content).unwrap();
            let (size, hasher) = read_file_chunks(&src, 4, |offset, data| {
                rx.chunk(name, offset, &data).map_err(io::Error::other)
            })
            .unwrap();
            manifest.add(name.to_string(), size, hasher);
        }
        manifest.finish()
    }

    fn incoming(tmp: &Path) -> IncomingSnapshot {
        let dir = tmp.join("in");
        fs::create_dir_all(dir.join("db")).unwrap();
        IncomingSnapshot::new(dir)
    }

    #[test]
    fn a_received_snapshot_must_match_its_manifest() {
        let files: &[(&str, &[u8])] = &[
            ("000001.sst", b"table data here"),
            ("CURRENT", b"MANIFEST-1\n"),
            ("EMPTY", b""),
        ];
        let tmp = tempfile::tempdir().unwrap();
        let mut rx = incoming(tmp.path());
        let manifest = send_all(files, &mut rx);
        rx.finish(&manifest).unwrap();
        assert_eq!(fs::read(tmp.path().join("in/db/EMPTY")).unwrap(), b"");

        // A file cut short, a file altered, a file missing, a file not listed.
        let refused = |sent: &[(&str, &[u8])],
                       edit: &dyn Fn(&mut BTreeMap<String, ManifestEntry>)| {
            let tmp = tempfile::tempdir().unwrap();
            let mut rx = incoming(tmp.path());
            let mut manifest = send_all(sent, &mut rx);
            edit(&mut manifest);
            matches!(rx.finish(&manifest), Err(ReceiveError::Mismatch(_)))
        };
        assert!(refused(files, &|m| m
            .get_mut("000001.sst")
            .unwrap()
            .size += 1));
        assert!(refused(files, &|m| m.get_mut("CURRENT").unwrap().sha256[0] ^= 1));
        assert!(refused(&files[..2], &|m| {
            m.insert(
                "EMPTY".into(),
                ManifestEntry {
                    size: 0,
                    sha256: Sha256::digest(b"").into(),
                },
            );
        }));
        assert!(refused(files, &|m| {
            m.remove("EMPTY");
        }));
    }

    #[test]
    fn chunks_out_of_order_and_oversized_snapshots_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let mut rx = incoming(tmp.path());
        rx.chunk("A", 0, b"abc").unwrap();
        assert!(matches!(
            rx.chunk("A", 5, b"x"),
            Err(ReceiveError::OutOfOrder { .. })
        ));
        rx.chunk("B", 0, b"x").unwrap();
        assert!(matches!(
            rx.chunk("A", 3, b"x"),
            Err(ReceiveError::OutOfOrder { .. })
        ));
        assert!(matches!(
            rx.chunk("../x", 0, b"x"),
            Err(ReceiveError::BadName(_))
        ));

        let dir = tmp.path().join("capped");
        fs::create_dir_all(dir.join("db")).unwrap();
        let mut rx = IncomingSnapshot::with_limits(dir.clone(), 2, 10);
        rx.chunk("A", 0, b"1234").unwrap();
        rx.chunk("B", 0, b"1234").unwrap();
        assert!(matches!(
            rx.chunk("C", 0, b""),
            Err(ReceiveError::TooLarge(_))
        ));
        let mut rx = IncomingSnapshot::with_limits(dir, 2, 10);
        rx.chunk("A", 0, b"123456").unwrap();
        assert!(matches!(
            rx.chunk("A", 6, b"12345"),
            Err(ReceiveError::TooLarge(_))
        ));
    }

    #[test]
    fn file_names_are_confined() {
        for ok in ["000012.sst", "MANIFEST-000005", "CURRENT", "OPTIONS-000007"] {
            assert!(valid_file_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "../x", "a/b", "/etc/passwd", "a\0b", "a b"] {
            assert!(!valid_file_name(bad), "{bad:?}");
        }
    }
}
