//! Snapshots as directories on disk: a RocksDB checkpoint of the state database plus its
//! metadata. They are built, listed, cleaned up, and written atomically here; the network
//! module streams their files in chunks and never holds a whole snapshot in memory.
//!
//! Layout under the node's data directory:
//!
//! ```text
//! snapshots/snap-<index>-<term>-<leader>/meta   postcard SnapshotMeta
//! snapshots/snap-<index>-<term>-<leader>/db/    RocksDB checkpoint (flat list of files)
//! snapshots/incoming-<n>/                       a transfer in progress
//! ```

use crate::log_store::{decode, encode};
use crate::types::SnapshotMeta;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Snapshot data as openraft sees it: the directory holding `meta` and `db/`.
#[derive(Debug, Clone)]
pub struct SnapshotDir {
    /// The snapshot directory.
    pub path: PathBuf,
}

impl SnapshotDir {
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
        write_atomic(&dir.join("meta"), &encode(meta)?)?;
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

    fn remove_older_than(&self, keep: &Path) -> io::Result<()> {
        for p in self.snapshots()? {
            if p.as_path() < keep {
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

#[cfg(test)]
mod tests {
    use super::*;

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
