//! The power-loss file system against real mounts (needs root and /dev/fuse, as on CI): the
//! daemon is the `quorumlog-jepsen powerfs mount` process, power is lost through its control
//! socket, and what survives is read back through the mount.
//!
//! `harness = false`: the RocksDB cases need a writer process that dies before the power
//! goes, and RocksDB cannot reopen a database its own process still holds. This binary is that
//! writer when called with `rocksdb-writer`.

use rocksdb::{Options, WriteOptions, DB};
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_quorumlog-jepsen");

/// One mounted powerfs daemon; unmounted and deleted when dropped, also after a failure.
struct Mount {
    tmp: tempfile::TempDir,
    daemon: Child,
}

impl Mount {
    fn new() -> Mount {
        let tmp = tempfile::Builder::new()
            .prefix("powerfs-test")
            .tempdir_in("/var/tmp")
            .expect("temp dir");
        fs::create_dir(tmp.path().join("mnt")).unwrap();
        let daemon = Command::new(BIN)
            .args(["powerfs", "mount", "--state"])
            .arg(tmp.path().join("state"))
            .arg("--mountpoint")
            .arg(tmp.path().join("mnt"))
            .stdin(Stdio::null())
            .spawn()
            .expect("start powerfs");
        let m = Mount { tmp, daemon };
        let deadline = Instant::now() + Duration::from_secs(20);
        while fs::metadata(m.dir()).unwrap().dev() == fs::metadata(m.tmp.path()).unwrap().dev() {
            assert!(Instant::now() < deadline, "powerfs did not mount");
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("mnt")
    }

    fn control(&self, command: &str) -> serde_json::Value {
        let out = Command::new(BIN)
            .args(["powerfs", command, "--state"])
            .arg(self.tmp.path().join("state"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "powerfs {command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn power_loss(&self) -> serde_json::Value {
        self.control("power-loss")
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) of our own child.
        unsafe { libc::kill(self.daemon.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.daemon.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        let _ = Command::new("umount").arg("-l").arg(self.dir()).output();
    }
}

fn write_file(path: &Path, data: &[u8], sync: bool) {
    let mut f = File::create(path).unwrap();
    f.write_all(data).unwrap();
    if sync {
        f.sync_all().unwrap();
    }
}

fn sync_dir(path: &Path) {
    File::open(path).unwrap().sync_all().unwrap();
}

fn unsynced_data_is_lost_synced_data_survives() {
    let m = Mount::new();
    let p = m.dir().join("a");
    write_file(&p, b"durable", true);
    sync_dir(&m.dir());
    let mut f = OpenOptions::new().append(true).open(&p).unwrap();
    f.write_all(b" and lost").unwrap();
    drop(f);
    // An overwrite inside the durable part is lost too.
    let f = OpenOptions::new().write(true).open(&p).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"DUR", 0).unwrap();
    drop(f);
    assert_eq!(fs::read(&p).unwrap(), b"DURable and lost");
    let stats = m.control("stats");
    assert_eq!(stats["unsynced_bytes"], 12, "{stats}");
    let report = m.power_loss();
    assert_eq!(report["dirty_files"], 1, "{report}");
    assert_eq!(fs::read(&p).unwrap(), b"durable");
    // fdatasync counts as well as fsync.
    let f = OpenOptions::new().append(true).open(&p).unwrap();
    (&f).write_all(b"!").unwrap();
    f.sync_data().unwrap();
    drop(f);
    m.power_loss();
    assert_eq!(fs::read(&p).unwrap(), b"durable!");
}

/// The kernel forgets a file at its last close and may number it anew at the next open;
/// what was written before must still count as that file's.
fn fsync_after_reopening_covers_earlier_writes() {
    let m = Mount::new();
    let p = m.dir().join("r");
    write_file(&p, b"one", true);
    sync_dir(&m.dir());
    for _ in 0..3 {
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"+").unwrap();
    }
    let f = OpenOptions::new().append(true).open(&p).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let mut f = OpenOptions::new().append(true).open(&p).unwrap();
    f.write_all(b"lost").unwrap();
    drop(f);
    m.power_loss();
    assert_eq!(fs::read(&p).unwrap(), b"one+++");
}

fn sync_writes_links_and_preallocation() {
    let m = Mount::new();
    // O_DSYNC: each write is durable when it returns.
    let p = m.dir().join("dsync");
    write_file(&p, b"", true);
    sync_dir(&m.dir());
    let mut f = OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_DSYNC)
        .open(&p)
        .unwrap();
    f.write_all(b"kept").unwrap();
    drop(f);
    // A hard link is a name like any other; the data is the file's.
    fs::hard_link(&p, m.dir().join("link")).unwrap();
    assert_eq!(fs::read(m.dir().join("link")).unwrap(), b"kept");
    // Preallocation without changing the size is accepted and invisible; plain fallocate
    // extends the file, until the power goes.
    let f = OpenOptions::new().write(true).open(&p).unwrap();
    // SAFETY: fallocate(2) on an open descriptor.
    let rc = unsafe { libc::fallocate(f.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, 1 << 20) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    assert_eq!(fs::metadata(&p).unwrap().len(), 4);
    // SAFETY: as above.
    let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, 100) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    assert_eq!(fs::metadata(&p).unwrap().len(), 100);
    drop(f);
    // Writing through a file after its name is gone still undoes cleanly.
    let mut f = OpenOptions::new()
        .append(true)
        .open(m.dir().join("link"))
        .unwrap();
    fs::remove_file(m.dir().join("link")).unwrap();
    f.write_all(b"ghost").unwrap();
    drop(f);
    // RENAME_NOREPLACE reaches the file system and is honoured.
    let (a, b) = (c"noreplace-a", c"dsync");
    write_file(&m.dir().join("noreplace-a"), b"a", false);
    let dir = File::open(m.dir()).unwrap();
    // SAFETY: renameat2(2) with NUL-terminated names relative to an open directory.
    let rc = unsafe {
        libc::renameat2(
            dir.as_raw_fd(),
            a.as_ptr(),
            dir.as_raw_fd(),
            b.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    assert_eq!(rc, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EEXIST)
    );
    m.power_loss();
    assert_eq!(fs::read(&p).unwrap(), b"kept");
    assert!(!m.dir().join("link").exists());
    assert!(!m.dir().join("noreplace-a").exists());
}

fn new_file_needs_its_directory_synced() {
    let m = Mount::new();
    write_file(&m.dir().join("file-only"), b"x", true);
    write_file(&m.dir().join("never"), b"y", false);
    fs::create_dir(m.dir().join("sub")).unwrap();
    m.power_loss();
    for name in ["file-only", "never", "sub"] {
        assert!(!m.dir().join(name).exists(), "{name} survived");
    }
    write_file(&m.dir().join("both"), b"z", true);
    fs::create_dir(m.dir().join("sub")).unwrap();
    sync_dir(&m.dir());
    write_file(&m.dir().join("sub/inner"), b"w", true);
    sync_dir(&m.dir().join("sub"));
    m.power_loss();
    assert_eq!(fs::read(m.dir().join("both")).unwrap(), b"z");
    assert_eq!(fs::read(m.dir().join("sub/inner")).unwrap(), b"w");
}

fn rename_over_is_durable_only_after_the_directory_sync() {
    let m = Mount::new();
    let (cur, tmp) = (m.dir().join("CURRENT"), m.dir().join("CURRENT.tmp"));
    write_file(&cur, b"old", true);
    sync_dir(&m.dir());
    write_file(&tmp, b"new", true);
    fs::rename(&tmp, &cur).unwrap();
    assert_eq!(fs::read(&cur).unwrap(), b"new");
    m.power_loss();
    assert_eq!(fs::read(&cur).unwrap(), b"old");
    assert!(!tmp.exists());

    write_file(&tmp, b"new", true);
    fs::rename(&tmp, &cur).unwrap();
    sync_dir(&m.dir());
    m.power_loss();
    assert_eq!(fs::read(&cur).unwrap(), b"new");
    assert!(!tmp.exists());
}

fn removals_and_directory_renames_are_undone() {
    let m = Mount::new();
    fs::create_dir(m.dir().join("d")).unwrap();
    fs::create_dir(m.dir().join("empty")).unwrap();
    sync_dir(&m.dir());
    write_file(&m.dir().join("d/f"), b"kept", true);
    write_file(&m.dir().join("gone"), b"g", true);
    sync_dir(&m.dir().join("d"));
    fs::remove_file(m.dir().join("gone")).unwrap();
    fs::remove_dir(m.dir().join("empty")).unwrap();
    fs::rename(m.dir().join("d"), m.dir().join("renamed")).unwrap();
    fs::remove_file(m.dir().join("renamed/f")).unwrap();
    fs::remove_dir(m.dir().join("renamed")).unwrap();
    m.power_loss();
    assert_eq!(fs::read(m.dir().join("d/f")).unwrap(), b"kept");
    assert_eq!(fs::read(m.dir().join("gone")).unwrap(), b"g");
    assert!(m.dir().join("empty").is_dir());
    assert!(!m.dir().join("renamed").exists());
    // Once the directory is synced, a removal stays.
    fs::remove_file(m.dir().join("gone")).unwrap();
    sync_dir(&m.dir());
    m.power_loss();
    assert!(!m.dir().join("gone").exists());
    // rmdir of a directory that is not empty is refused, as on any file system.
    let err = fs::remove_dir(m.dir().join("d")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTEMPTY));
}

fn truncation_and_extension_are_undone() {
    let m = Mount::new();
    let p = m.dir().join("t");
    write_file(&p, b"0123456789", true);
    sync_dir(&m.dir());
    let f = OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(3).unwrap();
    f.set_len(20).unwrap();
    assert_eq!(fs::metadata(&p).unwrap().len(), 20);
    drop(f);
    m.power_loss();
    assert_eq!(fs::read(&p).unwrap(), b"0123456789");
    // O_TRUNC on open is a truncation like any other.
    write_file(&p, b"short", false);
    m.power_loss();
    assert_eq!(fs::read(&p).unwrap(), b"0123456789");
}

fn files_belong_to_the_user_who_created_them() {
    let m = Mount::new();
    let sub = m.dir().join("node");
    fs::create_dir(&sub).unwrap();
    Command::new("chown")
        .arg("10001:10001")
        .arg(&sub)
        .status()
        .unwrap();
    let status = Command::new("setpriv")
        .args([
            "--reuid",
            "10001",
            "--regid",
            "10001",
            "--clear-groups",
            "sh",
            "-c",
        ])
        .arg("echo hi > \"$0\"/f && mkdir \"$0\"/g")
        .arg(&sub)
        .status()
        .unwrap();
    assert!(status.success());
    for name in ["f", "g"] {
        let md = fs::metadata(sub.join(name)).unwrap();
        assert_eq!((md.uid(), md.gid()), (10001, 10001), "{name}");
    }
    // And other users are kept out by the permissions it reports.
    let status = Command::new("setpriv")
        .args([
            "--reuid",
            "10002",
            "--regid",
            "10002",
            "--clear-groups",
            "sh",
            "-c",
        ])
        .arg("echo no > \"$0\"/h")
        .arg(&sub)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success());
}

/// Writes `count` keys with the given WAL sync setting in a child process, which is then
/// killed; power is lost; the database is opened again and its keys counted.
fn rocksdb_keys_after_power_loss(sync: bool, count: u32) -> usize {
    let m = Mount::new();
    let db = m.dir().join("db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("rocksdb-writer")
        .arg(&db)
        .arg(if sync { "sync" } else { "nosync" })
        .arg(count.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "written", "writer failed");
    // Crash: the writer is killed with its database open, then the machine loses power.
    child.kill().unwrap();
    child.wait().unwrap();
    let report = m.power_loss();
    eprintln!("powerfs: rocksdb sync={sync}: power loss undid {report}");
    let db = DB::open(&Options::default(), &db).expect("reopen after power loss");
    let n = db
        .iterator(rocksdb::IteratorMode::Start)
        .filter(|kv| kv.as_ref().unwrap().0.starts_with(b"key"))
        .count();
    drop(db);
    n
}

fn rocksdb_writer(db: &Path, sync: bool, count: u32) {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    let db = DB::open(&opts, db).unwrap();
    let mut w = WriteOptions::default();
    w.set_sync(sync);
    for i in 0..count {
        db.put_opt(format!("key{i:06}"), [7u8; 100], &w).unwrap();
    }
    println!("written");
    // Wait to be killed, with the database still open.
    std::thread::sleep(Duration::from_secs(600));
}

fn rocksdb_without_sync_loses_writes() {
    let n = rocksdb_keys_after_power_loss(false, 2000);
    assert!(n < 2000, "all {n} unsynced writes survived a power loss");
}

fn rocksdb_with_sync_keeps_every_write() {
    assert_eq!(rocksdb_keys_after_power_loss(true, 2000), 2000);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("rocksdb-writer") {
        rocksdb_writer(
            Path::new(&args[2]),
            args[3] == "sync",
            args[4].parse().unwrap(),
        );
        return;
    }
    let tests: &[(&str, fn())] = &[
        (
            "unsynced_data_is_lost_synced_data_survives",
            unsynced_data_is_lost_synced_data_survives,
        ),
        (
            "fsync_after_reopening_covers_earlier_writes",
            fsync_after_reopening_covers_earlier_writes,
        ),
        (
            "sync_writes_links_and_preallocation",
            sync_writes_links_and_preallocation,
        ),
        (
            "new_file_needs_its_directory_synced",
            new_file_needs_its_directory_synced,
        ),
        (
            "rename_over_is_durable_only_after_the_directory_sync",
            rename_over_is_durable_only_after_the_directory_sync,
        ),
        (
            "removals_and_directory_renames_are_undone",
            removals_and_directory_renames_are_undone,
        ),
        (
            "truncation_and_extension_are_undone",
            truncation_and_extension_are_undone,
        ),
        (
            "files_belong_to_the_user_who_created_them",
            files_belong_to_the_user_who_created_them,
        ),
        (
            "rocksdb_without_sync_loses_writes",
            rocksdb_without_sync_loses_writes,
        ),
        (
            "rocksdb_with_sync_keeps_every_write",
            rocksdb_with_sync_keeps_every_write,
        ),
    ];
    // A filter argument, as with the standard harness (flags such as --nocapture are ignored).
    let filter = args[1..].iter().find(|a| !a.starts_with('-'));
    let mut failed = Vec::new();
    for (name, test) in tests {
        if filter.is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        eprint!("test {name} ... ");
        match std::panic::catch_unwind(test) {
            Ok(()) => eprintln!("ok"),
            Err(_) => {
                eprintln!("FAILED");
                failed.push(*name);
            }
        }
    }
    if !failed.is_empty() {
        eprintln!("failed: {failed:?}");
        std::process::exit(1);
    }
}
