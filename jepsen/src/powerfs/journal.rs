//! What a power loss would take back: per-file data undo records and the namespace journal.
//!
//! Every change reaches the backing directory at once, so reads need no overlay; what is not
//! yet durable is remembered as the means to undo it. `fsync` of a file retires its data
//! records; `fsync` of any directory retires the whole namespace journal (an ordered journal,
//! as ext4 commits one). A power loss replays all remaining undo records newest first.

use rustix::fs::{renameat, unlinkat, AtFlags};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt as _;
use std::sync::Arc;

/// Undoes one data change: restore `old` at `offset`, then the length `old_size`.
/// A write past the end has an empty `old`; a shrinking truncate keeps the cut tail.
struct DataUndo {
    offset: u64,
    old: Vec<u8>,
    old_size: u64,
}

/// A file with changes not yet fsynced, and a read-write handle to undo them through
/// (valid wherever the file has been renamed or unlinked to since).
struct DirtyFile {
    file: File,
    undo: Vec<DataUndo>,
}

/// A name change in the tree, with what is needed to reverse it. Removed and displaced
/// entries are parked in the graveyard directory under a fresh name until the journal
/// is committed.
pub(crate) enum NsOp {
    Created {
        dir: Arc<OwnedFd>,
        name: OsString,
    },
    Removed {
        dir: Arc<OwnedFd>,
        name: OsString,
        grave: String,
    },
    Renamed {
        from: Arc<OwnedFd>,
        from_name: OsString,
        to: Arc<OwnedFd>,
        to_name: OsString,
        displaced: Option<String>,
    },
}

/// What a power loss (or a `stats` request) reports.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub(crate) struct Pending {
    /// Files with unsynced data changes.
    pub(crate) dirty_files: usize,
    /// Unsynced data changes (writes and truncates).
    pub(crate) data_changes: usize,
    /// Bytes written and not yet fsynced (including appends).
    pub(crate) unsynced_bytes: u64,
    /// Namespace changes not yet made durable by a directory fsync.
    pub(crate) namespace_changes: usize,
}

/// A file as the backing file system knows it (device, inode number). Not the FUSE inode
/// number: the kernel forgets a file at its last close and may be given a new number for
/// it on the next lookup, while the changes to undo stay the same file's.
pub(crate) type FileKey = (u64, u64);

#[derive(Default)]
pub(crate) struct Journal {
    dirty: HashMap<FileKey, DirtyFile>,
    unsynced_bytes: HashMap<FileKey, u64>,
    ns: Vec<NsOp>,
    next_grave: u64,
}

impl Journal {
    /// A fresh graveyard name.
    pub(crate) fn grave(&mut self) -> String {
        self.next_grave += 1;
        format!("g{}", self.next_grave)
    }

    /// Records, before the change is made, that `len` bytes at `offset` of file `key` are
    /// about to be overwritten (or the file resized to `offset` when `len` covers its tail).
    /// `open` gives a read-write handle the first time the file becomes dirty.
    pub(crate) fn before_change(
        &mut self,
        key: FileKey,
        offset: u64,
        len: u64,
        written: u64,
        open: impl FnOnce() -> io::Result<File>,
    ) -> io::Result<()> {
        let dirty = match self.dirty.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(DirtyFile {
                file: open()?,
                undo: Vec::new(),
            }),
        };
        let old_size = dirty.file.metadata()?.len();
        let keep = old_size.saturating_sub(offset).min(len);
        let mut old = vec![0; keep as usize];
        dirty.file.read_exact_at(&mut old, offset)?;
        dirty.undo.push(DataUndo {
            offset,
            old,
            old_size,
        });
        *self.unsynced_bytes.entry(key).or_default() += written;
        Ok(())
    }

    /// `fsync`/`fdatasync` of file `key`: its data is durable now.
    pub(crate) fn sync_file(&mut self, key: FileKey) {
        self.dirty.remove(&key);
        self.unsynced_bytes.remove(&key);
    }

    pub(crate) fn push(&mut self, op: NsOp) {
        self.ns.push(op);
    }

    /// Drops the newest record, a creation that was taken back at once.
    pub(crate) fn pop_created(&mut self) {
        if matches!(self.ns.last(), Some(NsOp::Created { .. })) {
            self.ns.pop();
        }
    }

    /// `fsync` of a directory: every namespace change so far is durable; parked entries
    /// are deleted for good.
    pub(crate) fn commit_namespace(&mut self, graveyard: &OwnedFd) {
        for op in self.ns.drain(..) {
            let grave = match op {
                NsOp::Removed { grave, .. } => Some(grave),
                NsOp::Renamed { displaced, .. } => displaced,
                NsOp::Created { .. } => None,
            };
            if let Some(g) = grave {
                remove_entry(graveyard, &g);
            }
        }
    }

    pub(crate) fn pending(&self) -> Pending {
        Pending {
            dirty_files: self.dirty.len(),
            data_changes: self.dirty.values().map(|d| d.undo.len()).sum(),
            unsynced_bytes: self.unsynced_bytes.values().sum(),
            namespace_changes: self.ns.len(),
        }
    }

    /// Power loss: data first (through handles that follow the files wherever the names
    /// went), then the namespace, newest change first. Returns what was undone; the first
    /// error is reported after everything else has been tried.
    pub(crate) fn power_loss(&mut self, graveyard: &OwnedFd) -> (Pending, io::Result<()>) {
        let pending = self.pending();
        let mut first_err = Ok(());
        let mut note = |r: io::Result<()>| {
            if let Err(e) = r {
                if first_err.is_ok() {
                    first_err = Err(e);
                }
            }
        };
        for (_, dirty) in self.dirty.drain() {
            for u in dirty.undo.iter().rev() {
                note(dirty.file.write_all_at(&u.old, u.offset));
                note(dirty.file.set_len(u.old_size));
            }
        }
        self.unsynced_bytes.clear();
        for op in self.ns.drain(..).rev() {
            let r = match op {
                NsOp::Created { dir, name } => remove_in(&dir, &name),
                NsOp::Removed { dir, name, grave } => {
                    renameat(graveyard, grave.as_str(), &dir, name.as_os_str()).map_err(Into::into)
                }
                NsOp::Renamed {
                    from,
                    from_name,
                    to,
                    to_name,
                    displaced,
                } => renameat(&to, to_name.as_os_str(), &from, from_name.as_os_str())
                    .map_err(io::Error::from)
                    .and_then(|()| match displaced {
                        Some(g) => renameat(graveyard, g.as_str(), &to, to_name.as_os_str())
                            .map_err(Into::into),
                        None => Ok(()),
                    }),
            };
            note(r);
        }
        (pending, first_err)
    }
}

/// Removes a file or an (empty) directory named `name` in `dir`.
fn remove_in(dir: &OwnedFd, name: &OsString) -> io::Result<()> {
    match unlinkat(dir, name.as_os_str(), AtFlags::empty()) {
        Err(e) if e == rustix::io::Errno::ISDIR || e == rustix::io::Errno::PERM => {
            unlinkat(dir, name.as_os_str(), AtFlags::REMOVEDIR).map_err(Into::into)
        }
        r => r.map_err(Into::into),
    }
}

/// Deletes a graveyard entry (a parked directory is always empty: only `rmdir` and a
/// rename over an empty directory park one).
fn remove_entry(graveyard: &OwnedFd, name: &str) {
    let _ = remove_in(graveyard, &OsString::from(name));
}
