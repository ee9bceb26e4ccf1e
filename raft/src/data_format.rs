//! The version of a node's data directory, in `<data_dir>/FORMAT`: what the Raft log, the
//! vote, the state machine's metadata and the snapshots in it are encoded as (the
//! messages of proto/raft.proto, see [`crate::codec`]). A node refuses a directory whose
//! format it cannot read, before opening anything in it.

use crate::snapshot::write_atomic;
use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The format this version writes.
pub const DATA_FORMAT: u32 = 1;
/// The oldest format this version reads.
pub const OLDEST_DATA_FORMAT: u32 = 1;

const FILE: &str = "FORMAT";
const PREFIX: &str = "quorumlog-data-format ";

/// Why a data directory cannot be used.
#[derive(Debug, Error)]
pub enum DataFormatError {
    #[error(
        "data directory {dir} has format {found}; this Quorumlog reads formats \
         {OLDEST_DATA_FORMAT} to {DATA_FORMAT}: run a version that reads it \
         (docs/operations.md, Upgrades)"
    )]
    Unsupported { dir: PathBuf, found: u32 },
    #[error(
        "data directory {dir} holds Raft data but no FORMAT file: it was written by a \
         Quorumlog from before the on-disk format was versioned, which this version cannot \
         read; wipe the directory and add the node back to the cluster (docs/operations.md, \
         Upgrades)"
    )]
    Unversioned { dir: PathBuf },
    #[error("data directory {dir}: FORMAT file is not `{PREFIX}<n>`: {content:?}")]
    Malformed { dir: PathBuf, content: String },
    #[error("data directory {dir}: {source}")]
    Io {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Checks the format of `data_dir`, writing this version's into a new directory; returns
/// the format found. A directory with anything of Raft's in it and no FORMAT file is an
/// old, unversioned one.
pub fn check_or_init(data_dir: &Path) -> Result<u32, DataFormatError> {
    let dir = data_dir.to_path_buf();
    let io_err = |source| DataFormatError::Io {
        dir: dir.clone(),
        source,
    };
    let path = data_dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(content) => {
            let found = content
                .trim_end()
                .strip_prefix(PREFIX)
                .and_then(|n| n.parse::<u32>().ok())
                .ok_or_else(|| DataFormatError::Malformed {
                    dir: dir.clone(),
                    content: content.clone(),
                })?;
            if !(OLDEST_DATA_FORMAT..=DATA_FORMAT).contains(&found) {
                return Err(DataFormatError::Unsupported { dir, found });
            }
            Ok(found)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let has_data = ["raft-log", "state", "snapshots"]
                .iter()
                .any(|d| data_dir.join(d).exists());
            if has_data {
                return Err(DataFormatError::Unversioned { dir });
            }
            std::fs::create_dir_all(data_dir).map_err(io_err)?;
            write_atomic(&path, format!("{PREFIX}{DATA_FORMAT}\n").as_bytes()).map_err(io_err)?;
            Ok(DATA_FORMAT)
        }
        Err(e) => Err(io_err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_gets_this_format_and_keeps_it() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("node");
        assert_eq!(check_or_init(&data).unwrap(), DATA_FORMAT);
        std::fs::create_dir_all(data.join("raft-log")).unwrap();
        assert_eq!(check_or_init(&data).unwrap(), DATA_FORMAT);
    }

    #[test]
    fn unreadable_directories_are_refused_by_name() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("raft-log")).unwrap();
        let e = check_or_init(d.path()).unwrap_err();
        assert!(matches!(e, DataFormatError::Unversioned { .. }), "{e}");
        std::fs::write(d.path().join(FILE), "quorumlog-data-format 99\n").unwrap();
        let e = check_or_init(d.path()).unwrap_err();
        assert!(e.to_string().contains("format 99"), "{e}");
        std::fs::write(d.path().join(FILE), "something else\n").unwrap();
        let e = check_or_init(d.path()).unwrap_err();
        assert!(matches!(e, DataFormatError::Malformed { .. }), "{e}");
    }
}
