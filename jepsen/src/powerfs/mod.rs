//! `powerfs`: a FUSE file system that can lose power.
//!
//! It passes every operation through to `STATE/root` but remembers, until it is made
//! durable, how to take it back (see `journal.rs` for the rules). `power-loss` on the control
//! socket `STATE/control.sock` rolls the backing directory back to its last durable state;
//! the mount stays up and shows exactly that state from then on. The model, and what it
//! leaves out, is described in `jepsen/README.md` ("Power-loss file system").

mod fs;
mod journal;

use anyhow::{anyhow, bail, Context};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

fn socket(state: &Path) -> PathBuf {
    state.join("control.sock")
}

/// Mounts the file system backed by `state` on `mountpoint` and serves it until SIGTERM or
/// SIGINT, then unmounts. Everything under `state/root` is taken as durable at start.
pub(crate) fn serve(state: &Path, mountpoint: &Path) -> anyhow::Result<()> {
    // Block the stop signals before any thread exists, so all threads inherit the mask and
    // the main thread can wait for them with sigwait.
    let mut stop = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set; sigaddset and pthread_sigmask take valid
    // pointers to it.
    let stop = unsafe {
        libc::sigemptyset(stop.as_mut_ptr());
        let mut stop = stop.assume_init();
        libc::sigaddset(&mut stop, libc::SIGTERM);
        libc::sigaddset(&mut stop, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &stop, std::ptr::null_mut());
        stop
    };

    // Two descriptors per open file (its inode's and the handle's), and RocksDB keeps every
    // table file open: the default soft limit of 1024 would run out.
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        },
    )
    .context("raise the open file limit")?;

    let (root, graveyard) = (state.join("root"), state.join("graveyard"));
    std::fs::create_dir_all(&root).with_context(|| format!("create {}", root.display()))?;
    if graveyard.exists() {
        std::fs::remove_dir_all(&graveyard)?;
    }
    std::fs::create_dir_all(&graveyard)?;
    let shared = Arc::new(Mutex::new(fs::State::new(&root, &graveyard)?));

    let sock = socket(state);
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock).with_context(|| format!("bind {}", sock.display()))?;
    let control_state = shared.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            if let Err(e) = answer(&control_state, conn) {
                eprintln!("powerfs: control request failed: {e:#}");
            }
        }
    });

    let options = [
        fuser::MountOption::FSName("powerfs".into()),
        // Containers run the node as an unprivileged user.
        fuser::MountOption::AllowOther,
        fuser::MountOption::DefaultPermissions,
    ];
    let session = fuser::spawn_mount2(fs::PowerFs(shared), mountpoint, &options)
        .with_context(|| format!("mount powerfs on {}", mountpoint.display()))?;
    eprintln!(
        "powerfs: {} mounted on {}",
        root.display(),
        mountpoint.display()
    );
    let mut sig = 0;
    // SAFETY: `stop` is an initialised set and `sig` a valid out-pointer.
    unsafe { libc::sigwait(&stop, &mut sig) };
    eprintln!("powerfs: signal {sig}, unmounting");
    drop(session);
    let _ = std::fs::remove_file(&sock);
    Ok(())
}

fn answer(state: &Mutex<fs::State>, conn: UnixStream) -> anyhow::Result<()> {
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line)?;
    let reply = {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        match line.trim() {
            "power-loss" => match s.power_loss() {
                Ok(report) => {
                    let mut v = serde_json::to_value(report)?;
                    v["ok"] = true.into();
                    v
                }
                Err(e) => {
                    serde_json::json!({"ok": false, "error": format!("rollback failed: {e}")})
                }
            },
            "stats" => {
                let mut v = serde_json::to_value(s.pending())?;
                v["ok"] = true.into();
                v
            }
            other => {
                serde_json::json!({"ok": false, "error": format!("unknown command {other:?}")})
            }
        }
    };
    let mut conn = conn;
    writeln!(conn, "{reply}")?;
    Ok(())
}

/// Sends `command` (`power-loss` or `stats`) to the daemon serving `state` and returns its
/// JSON reply; an `"ok": false` reply is an error.
pub(crate) fn control(state: &Path, command: &str) -> anyhow::Result<serde_json::Value> {
    let sock = socket(state);
    let mut conn = UnixStream::connect(&sock)
        .with_context(|| format!("connect to powerfs at {}", sock.display()))?;
    conn.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
    writeln!(conn, "{command}")?;
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line)?;
    let v: serde_json::Value =
        serde_json::from_str(&line).map_err(|e| anyhow!("bad reply {line:?}: {e}"))?;
    if v["ok"] != true {
        bail!("powerfs {command}: {}", v["error"]);
    }
    Ok(v)
}
