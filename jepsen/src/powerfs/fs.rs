//! The FUSE side: every operation is carried out on the backing directory at once, through
//! `O_PATH` descriptors held per inode (so renames never leave a stale path behind), and
//! recorded in the [`Journal`] first so a power loss can take it back.

use super::journal::{FileKey, Journal, NsOp, Pending};
use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};
use rustix::fs::{AtFlags, Mode, OFlags};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{DirEntryExt as _, FileExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nothing is cached in the kernel: after a power loss every name and size must be read
/// again from the rolled-back backing directory.
const TTL: Duration = Duration::ZERO;
/// Reads and writes bypass the page cache, so every write reaches `write` below (and its
/// undo record) when the program makes it, not at some later writeback.
const FOPEN_DIRECT_IO: u32 = 1;
const FALLOC_FL_KEEP_SIZE: i32 = 1;
const RENAME_NOREPLACE: u32 = 1;

struct Inode {
    fd: Arc<OwnedFd>,
    lookups: u64,
    key: FileKey,
}

enum Handle {
    File {
        file: File,
        ino: u64,
        append: bool,
        /// Opened `O_SYNC`/`O_DSYNC`: every write is durable when it returns.
        sync: bool,
    },
    Dir(Vec<(u64, FileType, OsString)>),
}

pub(crate) struct State {
    graveyard: OwnedFd,
    inodes: HashMap<u64, Inode>,
    by_key: HashMap<(u64, u64), u64>,
    next_ino: u64,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
    journal: Journal,
}

/// The report of a power loss.
#[derive(Debug, serde::Serialize)]
pub(crate) struct PowerLoss {
    #[serde(flatten)]
    pub(crate) undone: Pending,
    /// Open files whose handles were dropped (the program using them is gone by then).
    pub(crate) dropped_handles: usize,
}

impl State {
    pub(crate) fn new(root: &Path, graveyard: &Path) -> io::Result<State> {
        let open_path = |p: &Path| -> io::Result<OwnedFd> {
            Ok(rustix::fs::open(
                p,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?)
        };
        let root_fd = open_path(root)?;
        let st = rustix::fs::fstat(&root_fd)?;
        let key = (st.st_dev as u64, st.st_ino as u64);
        let mut state = State {
            graveyard: open_path(graveyard)?,
            inodes: HashMap::new(),
            by_key: HashMap::new(),
            next_ino: fuser::FUSE_ROOT_ID + 1,
            handles: HashMap::new(),
            next_fh: 1,
            journal: Journal::default(),
        };
        state.inodes.insert(
            fuser::FUSE_ROOT_ID,
            Inode {
                fd: Arc::new(root_fd),
                // The root is never forgotten.
                lookups: u64::MAX / 2,
                key,
            },
        );
        state.by_key.insert(key, fuser::FUSE_ROOT_ID);
        Ok(state)
    }

    pub(crate) fn pending(&self) -> Pending {
        self.journal.pending()
    }

    pub(crate) fn power_loss(&mut self) -> io::Result<PowerLoss> {
        let dropped_handles = self
            .handles
            .values()
            .filter(|h| matches!(h, Handle::File { .. }))
            .count();
        self.handles.clear();
        let (undone, result) = self.journal.power_loss(&self.graveyard);
        result?;
        Ok(PowerLoss {
            undone,
            dropped_handles,
        })
    }

    fn fd(&self, ino: u64) -> Result<Arc<OwnedFd>, i32> {
        self.inodes
            .get(&ino)
            .map(|i| i.fd.clone())
            .ok_or(libc::ESTALE)
    }

    fn key(&self, ino: u64) -> Result<FileKey, i32> {
        self.inodes.get(&ino).map(|i| i.key).ok_or(libc::ESTALE)
    }

    pub(crate) fn sync_file(&mut self, ino: u64) -> Result<(), i32> {
        let key = self.key(ino)?;
        self.journal.sync_file(key);
        Ok(())
    }

    /// Counts one more kernel reference to `name` in `parent` and returns its attributes.
    fn lookup_in(&mut self, parent: u64, name: &OsStr) -> Result<FileAttr, i32> {
        let dir = self.fd(parent)?;
        let fd = rustix::fs::openat(
            &*dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        let st = rustix::fs::fstat(&fd).map_err(errno)?;
        let key = (st.st_dev as u64, st.st_ino as u64);
        let ino = match self.by_key.get(&key) {
            Some(&ino) => {
                self.inodes.get_mut(&ino).expect("indexed inode").lookups += 1;
                ino
            }
            None => {
                let ino = self.next_ino;
                self.next_ino += 1;
                self.inodes.insert(
                    ino,
                    Inode {
                        fd: Arc::new(fd),
                        lookups: 1,
                        key,
                    },
                );
                self.by_key.insert(key, ino);
                ino
            }
        };
        Ok(attr(ino, &st))
    }

    fn getattr(&self, ino: u64) -> Result<FileAttr, i32> {
        let st = rustix::fs::fstat(&*self.fd(ino)?).map_err(errno)?;
        Ok(attr(ino, &st))
    }

    /// A read-write handle on the file behind `ino` (for undo records and truncation).
    fn open_rw(fd: &OwnedFd) -> io::Result<File> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(proc_path(fd))
    }

    fn resize(&mut self, ino: u64, size: u64) -> Result<(), i32> {
        let (fd, key) = (self.fd(ino)?, self.key(ino)?);
        self.journal
            .before_change(key, size, u64::MAX, 0, || Self::open_rw(&fd))
            .map_err(io_errno)?;
        Self::open_rw(&fd)
            .and_then(|f| f.set_len(size))
            .map_err(io_errno)
    }

    /// Makes a new entry belong to the user who asked for it (the daemon runs as root).
    fn chown_new(dir: &OwnedFd, name: &OsStr, req: &Request<'_>) -> Result<(), i32> {
        rustix::fs::chownat(
            dir,
            name,
            Some(rustix::fs::Uid::from_raw(req.uid())),
            Some(rustix::fs::Gid::from_raw(req.gid())),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(errno)
    }

    /// Records a new entry and looks it up for the kernel; undoes the creation if either
    /// step fails.
    fn created(
        &mut self,
        parent: u64,
        dir: Arc<OwnedFd>,
        name: &OsStr,
        req: &Request<'_>,
    ) -> Result<FileAttr, i32> {
        let result = Self::chown_new(&dir, name, req).and_then(|()| self.lookup_in(parent, name));
        match result {
            Ok(a) => {
                self.journal.push(NsOp::Created {
                    dir,
                    name: name.to_owned(),
                });
                Ok(a)
            }
            Err(e) => {
                let _ = rustix::fs::unlinkat(&*dir, name, AtFlags::empty())
                    .or_else(|_| rustix::fs::unlinkat(&*dir, name, AtFlags::REMOVEDIR));
                Err(e)
            }
        }
    }

    /// Creates an empty regular file (`O_EXCL`) with permission bits `mode`.
    fn create_file(
        &mut self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        req: &Request<'_>,
    ) -> Result<FileAttr, i32> {
        let dir = self.fd(parent)?;
        rustix::fs::openat(
            &*dir,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_bits_truncate(mode & 0o7777),
        )
        .map_err(errno)?;
        self.created(parent, dir, name, req)
    }

    fn park(&mut self, dir: &Arc<OwnedFd>, name: &OsStr) -> Result<String, i32> {
        let grave = self.journal.grave();
        rustix::fs::renameat(&**dir, name, &self.graveyard, grave.as_str()).map_err(errno)?;
        Ok(grave)
    }

    fn remove(&mut self, parent: u64, name: &OsStr, dir_wanted: bool) -> Result<(), i32> {
        let dir = self.fd(parent)?;
        let st = rustix::fs::statat(&*dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(errno)?;
        let is_dir = file_type(mode_of(&st)) == FileType::Directory;
        match (dir_wanted, is_dir) {
            (true, false) => return Err(libc::ENOTDIR),
            (false, true) => return Err(libc::EISDIR),
            (true, true) if !dir_is_empty(&dir, name)? => return Err(libc::ENOTEMPTY),
            _ => {}
        }
        let grave = self.park(&dir, name)?;
        self.journal.push(NsOp::Removed {
            dir,
            name: name.to_owned(),
            grave,
        });
        Ok(())
    }

    fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> Result<(), i32> {
        if flags & !RENAME_NOREPLACE != 0 {
            // RENAME_EXCHANGE and RENAME_WHITEOUT are not modelled.
            return Err(libc::EINVAL);
        }
        let (from, to) = (self.fd(parent)?, self.fd(newparent)?);
        let src = rustix::fs::statat(&*from, name, AtFlags::SYMLINK_NOFOLLOW).map_err(errno)?;
        let displaced = match rustix::fs::statat(&*to, newname, AtFlags::SYMLINK_NOFOLLOW) {
            Err(e) if e == rustix::io::Errno::NOENT => None,
            Err(e) => return Err(errno(e)),
            Ok(_) if flags & RENAME_NOREPLACE != 0 => return Err(libc::EEXIST),
            Ok(dst) if (dst.st_dev, dst.st_ino) == (src.st_dev, src.st_ino) => return Ok(()),
            Ok(dst) => {
                let src_dir = file_type(mode_of(&src)) == FileType::Directory;
                let dst_dir = file_type(mode_of(&dst)) == FileType::Directory;
                match (src_dir, dst_dir) {
                    (true, false) => return Err(libc::ENOTDIR),
                    (false, true) => return Err(libc::EISDIR),
                    (true, true) if !dir_is_empty(&to, newname)? => return Err(libc::ENOTEMPTY),
                    _ => {}
                }
                Some(self.park(&to, newname)?)
            }
        };
        if let Err(e) = rustix::fs::renameat(&*from, name, &*to, newname) {
            if let Some(g) = &displaced {
                let _ = rustix::fs::renameat(&self.graveyard, g.as_str(), &*to, newname);
            }
            return Err(errno(e));
        }
        self.journal.push(NsOp::Renamed {
            from,
            from_name: name.to_owned(),
            to,
            to_name: newname.to_owned(),
            displaced,
        });
        Ok(())
    }

    fn forget(&mut self, ino: u64, n: u64) {
        if let Some(i) = self.inodes.get_mut(&ino) {
            i.lookups = i.lookups.saturating_sub(n);
            if i.lookups == 0 {
                let key = i.key;
                self.inodes.remove(&ino);
                self.by_key.remove(&key);
            }
        }
    }

    fn new_handle(&mut self, h: Handle) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, h);
        fh
    }

    fn open_file(&mut self, ino: u64, flags: i32) -> Result<u64, i32> {
        let fd = self.fd(ino)?;
        let file = std::fs::OpenOptions::new()
            .read(flags & libc::O_ACCMODE != libc::O_WRONLY)
            .write(flags & libc::O_ACCMODE != libc::O_RDONLY)
            .open(proc_path(&fd))
            .map_err(io_errno)?;
        Ok(self.new_handle(Handle::File {
            file,
            ino,
            append: flags & libc::O_APPEND != 0,
            // O_SYNC includes O_DSYNC's bit.
            sync: flags & libc::O_DSYNC != 0,
        }))
    }

    fn file(&self, fh: u64) -> Result<(&File, u64, bool, bool), i32> {
        match self.handles.get(&fh) {
            Some(Handle::File {
                file,
                ino,
                append,
                sync,
            }) => Ok((file, *ino, *append, *sync)),
            _ => Err(libc::EBADF),
        }
    }

    fn read(&self, fh: u64, offset: u64, size: usize) -> Result<Vec<u8>, i32> {
        let (file, ..) = self.file(fh)?;
        let mut buf = vec![0; size];
        let mut got = 0;
        while got < size {
            match file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_errno(e)),
            }
        }
        buf.truncate(got);
        Ok(buf)
    }

    fn write(&mut self, fh: u64, offset: u64, data: &[u8]) -> Result<u32, i32> {
        let (file, ino, append, sync) = self.file(fh)?;
        // An O_APPEND write lands at the end of the backing file, whatever offset the kernel
        // computed from attributes it was told not to cache.
        let offset = if append {
            file.metadata().map_err(io_errno)?.len()
        } else {
            offset
        };
        let (fd, key) = (self.fd(ino)?, self.key(ino)?);
        let len = data.len() as u64;
        self.journal
            .before_change(key, offset, len, len, || Self::open_rw(&fd))
            .map_err(io_errno)?;
        let (file, ..) = self.file(fh)?;
        file.write_all_at(data, offset).map_err(io_errno)?;
        if sync {
            self.journal.sync_file(key);
        }
        Ok(data.len() as u32)
    }

    fn fallocate(&mut self, ino: u64, offset: u64, len: u64, mode: i32) -> Result<(), i32> {
        match mode {
            // Preallocation (RocksDB asks for it) changes nothing a reader can see.
            FALLOC_FL_KEEP_SIZE => Ok(()),
            0 => {
                let size = self.getattr(ino)?.size;
                if offset + len > size {
                    self.resize(ino, offset + len)?;
                }
                Ok(())
            }
            _ => Err(libc::EOPNOTSUPP),
        }
    }

    fn opendir(&mut self, ino: u64) -> Result<u64, i32> {
        let fd = self.fd(ino)?;
        let mut entries = vec![
            (ino, FileType::Directory, OsString::from(".")),
            (ino, FileType::Directory, OsString::from("..")),
        ];
        for e in std::fs::read_dir(proc_path(&fd)).map_err(io_errno)? {
            let e = e.map_err(io_errno)?;
            let t = e.file_type().map_err(io_errno)?;
            let kind = if t.is_dir() {
                FileType::Directory
            } else if t.is_symlink() {
                FileType::Symlink
            } else {
                FileType::RegularFile
            };
            entries.push((e.ino(), kind, e.file_name()));
        }
        Ok(self.new_handle(Handle::Dir(entries)))
    }

    fn setattr(
        &mut self,
        ino: u64,
        mode: Option<u32>,
        owner: (Option<u32>, Option<u32>),
        size: Option<u64>,
        times: (Option<TimeOrNow>, Option<TimeOrNow>),
    ) -> Result<FileAttr, i32> {
        let fd = self.fd(ino)?;
        if let Some(size) = size {
            self.resize(ino, size)?;
        }
        if let Some(mode) = mode {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(proc_path(&fd), std::fs::Permissions::from_mode(mode))
                .map_err(io_errno)?;
        }
        if owner.0.is_some() || owner.1.is_some() {
            rustix::fs::chownat(
                &*fd,
                "",
                owner.0.map(rustix::fs::Uid::from_raw),
                owner.1.map(rustix::fs::Gid::from_raw),
                AtFlags::EMPTY_PATH,
            )
            .map_err(errno)?;
        }
        if times.0.is_some() || times.1.is_some() {
            let ts = |t: Option<TimeOrNow>| match t {
                None => rustix::fs::Timespec {
                    tv_sec: 0,
                    tv_nsec: rustix::fs::UTIME_OMIT,
                },
                Some(TimeOrNow::Now) => rustix::fs::Timespec {
                    tv_sec: 0,
                    tv_nsec: rustix::fs::UTIME_NOW,
                },
                Some(TimeOrNow::SpecificTime(t)) => {
                    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
                    rustix::fs::Timespec {
                        tv_sec: d.as_secs() as _,
                        tv_nsec: d.subsec_nanos() as _,
                    }
                }
            };
            let stamps = rustix::fs::Timestamps {
                last_access: ts(times.0),
                last_modification: ts(times.1),
            };
            rustix::fs::utimensat(rustix::fs::CWD, proc_path(&fd), &stamps, AtFlags::empty())
                .map_err(errno)?;
        }
        self.getattr(ino)
    }
}

/// The kernel's path to whatever `fd` refers to, usable with ordinary path calls.
fn proc_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn dir_is_empty(parent: &OwnedFd, name: &OsStr) -> Result<bool, i32> {
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)?;
    let mut entries = std::fs::read_dir(proc_path(&fd)).map_err(io_errno)?;
    Ok(entries.next().is_none())
}

fn errno(e: rustix::io::Errno) -> i32 {
    e.raw_os_error()
}

fn io_errno(e: io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn file_type(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

// The field types of `struct stat` differ between architectures; the casts are no-ops on
// some of them only.
#[allow(clippy::unnecessary_cast)]
fn mode_of(st: &rustix::fs::Stat) -> u32 {
    st.st_mode as u32
}

#[allow(clippy::unnecessary_cast)]
fn attr(ino: u64, st: &rustix::fs::Stat) -> FileAttr {
    let time = |s: i64, ns: u64| {
        if s >= 0 {
            UNIX_EPOCH + Duration::new(s as u64, ns as u32)
        } else {
            UNIX_EPOCH
        }
    };
    FileAttr {
        ino,
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: time(st.st_atime as i64, st.st_atime_nsec as u64),
        mtime: time(st.st_mtime as i64, st.st_mtime_nsec as u64),
        ctime: time(st.st_ctime as i64, st.st_ctime_nsec as u64),
        crtime: SystemTime::UNIX_EPOCH,
        kind: file_type(mode_of(st)),
        perm: (st.st_mode & 0o7777) as u16,
        nlink: st.st_nlink as u32,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev as u32,
        blksize: st.st_blksize as u32,
        flags: 0,
    }
}

/// The file system handed to `fuser`; shares its state with the control socket.
pub(crate) struct PowerFs(pub(crate) Arc<Mutex<State>>);

impl PowerFs {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock would leave a half-applied operation; nothing
        // better can be done than carry on with what is there.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

macro_rules! reply_with {
    ($reply:expr, $result:expr, |$v:ident| $ok:expr) => {
        match $result {
            Ok($v) => $ok,
            Err(e) => $reply.error(e),
        }
    };
}

impl Filesystem for PowerFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        reply_with!(reply, self.state().lookup_in(parent, name), |a| reply
            .entry(&TTL, &a, 0));
    }

    fn forget(&mut self, _req: &Request<'_>, ino: u64, nlookup: u64) {
        self.state().forget(ino, nlookup);
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        reply_with!(reply, self.state().getattr(ino), |a| reply.attr(&TTL, &a));
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let r = self
            .state()
            .setattr(ino, mode, (uid, gid), size, (atime, mtime));
        reply_with!(reply, r, |a| reply.attr(&TTL, &a));
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        let r = self.state().fd(ino).and_then(|fd| {
            rustix::fs::readlinkat(&*fd, "", Vec::new())
                .map(|t| t.into_bytes())
                .map_err(errno)
        });
        reply_with!(reply, r, |t| reply.data(&t));
    }

    fn mknod(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            // Only regular files: nothing here needs device nodes, FIFOs or sockets.
            return reply.error(libc::EPERM);
        }
        let r = self.state().create_file(parent, name, mode & !umask, req);
        reply_with!(reply, r, |a| reply.entry(&TTL, &a, 0));
    }

    fn mkdir(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut s = self.state();
        let r = s.fd(parent).and_then(|dir| {
            rustix::fs::mkdirat(
                &*dir,
                name,
                Mode::from_bits_truncate(mode & !umask & 0o7777),
            )
            .map_err(errno)?;
            s.created(parent, dir, name, req)
        });
        reply_with!(reply, r, |a| reply.entry(&TTL, &a, 0));
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        reply_with!(reply, self.state().remove(parent, name, false), |_v| reply
            .ok());
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        reply_with!(reply, self.state().remove(parent, name, true), |_v| reply
            .ok());
    }

    fn symlink(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let mut s = self.state();
        let r = s.fd(parent).and_then(|dir| {
            rustix::fs::symlinkat(target, &*dir, link_name).map_err(errno)?;
            s.created(parent, dir, link_name, req)
        });
        reply_with!(reply, r, |a| reply.entry(&TTL, &a, 0));
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        let r = self.state().rename(parent, name, newparent, newname, flags);
        reply_with!(reply, r, |_v| reply.ok());
    }

    fn link(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        newparent: u64,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let mut s = self.state();
        let r = (|| {
            let (fd, dir) = (s.fd(ino)?, s.fd(newparent)?);
            rustix::fs::linkat(&*fd, "", &*dir, newname, AtFlags::EMPTY_PATH).map_err(errno)?;
            s.journal.push(NsOp::Created {
                dir,
                name: newname.to_owned(),
            });
            s.lookup_in(newparent, newname)
        })();
        reply_with!(reply, r, |a| reply.entry(&TTL, &a, 0));
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        reply_with!(reply, self.state().open_file(ino, flags), |fh| reply
            .opened(fh, FOPEN_DIRECT_IO));
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let r = self.state().read(fh, offset.max(0) as u64, size as usize);
        reply_with!(reply, r, |d| reply.data(&d));
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let r = self.state().write(fh, offset.max(0) as u64, data);
        reply_with!(reply, r, |n| reply.written(n));
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lo: u64, reply: ReplyEmpty) {
        reply.ok();
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.state().handles.remove(&fh);
        reply.ok();
    }

    fn fsync(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, _ds: bool, reply: ReplyEmpty) {
        reply_with!(reply, self.state().sync_file(ino), |_v| reply.ok());
    }

    fn opendir(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        reply_with!(reply, self.state().opendir(ino), |fh| reply.opened(fh, 0));
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let s = self.state();
        let Some(Handle::Dir(entries)) = s.handles.get(&fh) else {
            return reply.error(libc::EBADF);
        };
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset.max(0) as usize) {
            if reply.add(*ino, i as i64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&mut self, _req: &Request<'_>, _ino: u64, fh: u64, _fl: i32, reply: ReplyEmpty) {
        self.state().handles.remove(&fh);
        reply.ok();
    }

    fn fsyncdir(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _ds: bool, reply: ReplyEmpty) {
        let mut s = self.state();
        let State {
            journal, graveyard, ..
        } = &mut *s;
        journal.commit_namespace(graveyard);
        reply.ok();
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        let r = self
            .state()
            .fd(fuser::FUSE_ROOT_ID)
            .and_then(|fd| rustix::fs::fstatvfs(fd.as_fd()).map_err(errno));
        reply_with!(reply, r, |v| reply.statfs(
            v.f_blocks,
            v.f_bfree,
            v.f_bavail,
            v.f_files,
            v.f_ffree,
            v.f_bsize as u32,
            v.f_namemax as u32,
            v.f_frsize as u32
        ));
    }

    fn access(&mut self, _req: &Request<'_>, _ino: u64, _mask: i32, reply: ReplyEmpty) {
        // `default_permissions`: the kernel has checked already.
        reply.ok();
    }

    fn create(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut s = self.state();
        let r = s
            .create_file(parent, name, mode & !umask, req)
            .and_then(|a| {
                match s.open_file(a.ino, flags) {
                    Ok(fh) => Ok((a, fh)),
                    Err(e) => {
                        // The kernel is told the create failed: take the file back out, with
                        // its journal record and the lookup the kernel will not forget.
                        if let Ok(dir) = s.fd(parent) {
                            let _ = rustix::fs::unlinkat(&*dir, name, AtFlags::empty());
                        }
                        s.journal.pop_created();
                        s.forget(a.ino, 1);
                        Err(e)
                    }
                }
            });
        reply_with!(reply, r, |v| reply.created(
            &TTL,
            &v.0,
            0,
            v.1,
            FOPEN_DIRECT_IO
        ));
    }

    fn fallocate(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        length: i64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let r = self
            .state()
            .fallocate(ino, offset.max(0) as u64, length.max(0) as u64, mode);
        reply_with!(reply, r, |_v| reply.ok());
    }
}
