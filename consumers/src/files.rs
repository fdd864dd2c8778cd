//! The files of a journal directory: segment and snapshot names, listing them in order,
//! and syncing the directory. Shared by the journal, snapshots and recovery.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// The segment file name for a segment whose first event is `seq`.
pub fn segment_name(seq: u64) -> String {
    format!("{seq:020}.journal")
}

/// Files `<prefix><number><suffix>` in `dir`, by number ascending (none if `dir` is missing).
pub fn list_numbered(dir: &Path, prefix: &str, suffix: &str) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut v = Vec::new();
    if !dir.exists() {
        return Ok(v);
    }
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let n = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|n| n.strip_suffix(suffix))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(n) = n {
            v.push((n, p));
        }
    }
    v.sort();
    Ok(v)
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Journal segments in `dir`, in order: (first event sequence, path).
pub fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    list_numbered(dir, "", ".journal")
}

/// The file name of the snapshot covering commands up to `cmd_seq`.
pub fn snapshot_name(cmd_seq: u64) -> String {
    format!("snapshot-{cmd_seq:020}.snap")
}

/// Snapshot files in `dir`, newest (highest command sequence) first.
pub fn list_snapshots(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut v = list_numbered(dir, "snapshot-", ".snap")?;
    v.reverse();
    Ok(v)
}
