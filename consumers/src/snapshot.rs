//! Snapshots: the engine state built from the book replica, off the matcher's thread,
//! written atomically (temp file, fsync, rename, fsync of the directory), recording the
//! command and event sequences they cover.
//!
//! File `snapshot-<cmd_seq>.snap` (20 digits): magic `RGXSNAP1`, payload length (u64),
//! CRC-32 of the payload (u32), payload ([`EngineState::to_bytes`]).

use crate::journal::{list_numbered, segment_name, sync_dir, DurableSeq};
use crate::recovery::list_segments;
use ringex_engine::state::EngineState;
use ringex_engine::{BookReplica, Consumer, Event, Sequence};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"RGXSNAP1";

/// The file name of the snapshot covering commands up to `cmd_seq`.
pub fn snapshot_name(cmd_seq: u64) -> String {
    format!("snapshot-{cmd_seq:020}.snap")
}

/// Writes `state` atomically into `dir`; returns its path.
pub fn write_snapshot(dir: &Path, state: &EngineState) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let payload = state.to_bytes();
    let final_path = dir.join(snapshot_name(state.cmd_seq));
    let tmp = dir.join(format!("{}.tmp", snapshot_name(state.cmd_seq)));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(MAGIC)?;
        f.write_all(&(payload.len() as u64).to_le_bytes())?;
        f.write_all(&crc32fast::hash(&payload).to_le_bytes())?;
        f.write_all(&payload)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &final_path)?;
    sync_dir(dir)?;
    Ok(final_path)
}

/// Why a snapshot file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// It could not be read.
    #[error("cannot read snapshot {0}: {1}")]
    Io(PathBuf, io::Error),
    /// Its checksum or format is wrong (a torn or damaged file).
    #[error("snapshot {0} is damaged: {1}")]
    Damaged(PathBuf, String),
}

/// Reads and verifies a snapshot file.
pub fn read_snapshot(path: &Path) -> Result<EngineState, SnapshotError> {
    let mut b = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut b))
        .map_err(|e| SnapshotError::Io(path.to_path_buf(), e))?;
    let damaged = |why: &str| SnapshotError::Damaged(path.to_path_buf(), why.to_string());
    if b.len() < 20 || &b[..8] != MAGIC {
        return Err(damaged("bad header"));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&b[8..16]);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&b[16..20]);
    let payload = &b[20..];
    if payload.len() as u64 != u64::from_le_bytes(len) {
        return Err(damaged("length mismatch"));
    }
    if crc32fast::hash(payload) != u32::from_le_bytes(crc) {
        return Err(damaged("checksum mismatch"));
    }
    EngineState::from_bytes(payload).map_err(|e| damaged(&e.to_string()))
}

/// Snapshot files in `dir`, newest (highest command sequence) first.
pub fn list_snapshots(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut v = list_numbered(dir, "snapshot-", ".snap")?;
    v.reverse();
    Ok(v)
}

/// Snapshot settings.
#[derive(Clone, Debug)]
pub struct SnapshotConfig {
    /// Where snapshots go (the journal directory).
    pub dir: PathBuf,
    /// Take a snapshot after at least this many commands since the last one.
    pub every_commands: u64,
    /// Delete journal segments (and older snapshots) wholly covered by the newest snapshot.
    pub prune: bool,
}

/// A consumer that keeps a [`BookReplica`] and writes snapshots periodically. Gate it after
/// the journal: it only snapshots what the journal has made durable.
pub struct Snapshotter {
    cfg: SnapshotConfig,
    replica: BookReplica,
    durable: DurableSeq,
    last_cmd: u64,
    last_event: u64,
    last_snapshot_cmd: u64,
    /// Snapshots written.
    pub written: u64,
    /// The first error (snapshots stop; the journal still holds everything).
    pub error: Option<io::Error>,
}

impl Snapshotter {
    /// Starts from `replica` (empty, or the recovered state), after `cmd_seq`/`event_seq`.
    pub fn new(
        cfg: SnapshotConfig,
        replica: BookReplica,
        durable: DurableSeq,
        cmd_seq: u64,
        event_seq: u64,
    ) -> Self {
        Snapshotter {
            cfg,
            replica,
            durable,
            last_cmd: cmd_seq,
            last_event: event_seq,
            last_snapshot_cmd: cmd_seq,
            written: 0,
            error: None,
        }
    }

    fn snapshot(&mut self) -> io::Result<()> {
        let state = self.replica.state(self.last_cmd, self.last_event);
        write_snapshot(&self.cfg.dir, &state)?;
        self.written += 1;
        self.last_snapshot_cmd = self.last_cmd;
        if self.cfg.prune {
            prune(&self.cfg.dir, &state)?;
        }
        Ok(())
    }
}

/// Deletes older snapshots and the journal segments whose events all precede `state`.
pub fn prune(dir: &Path, state: &EngineState) -> io::Result<()> {
    for (seq, p) in list_snapshots(dir)? {
        if seq < state.cmd_seq {
            std::fs::remove_file(p)?;
        }
    }
    let segs: Vec<u64> = list_segments(dir)?.into_iter().map(|(s, _)| s).collect();
    // A segment can go when the next one starts at or before the first event after the
    // snapshot: all of its events are covered.
    for w in segs.windows(2) {
        if w[1] <= state.event_seq + 1 {
            std::fs::remove_file(dir.join(segment_name(w[0])))?;
        }
    }
    Ok(())
}

impl Consumer for Snapshotter {
    fn name(&self) -> &str {
        "snapshotter"
    }

    fn on_event(&mut self, e: &Event, seq: Sequence, _end: bool) {
        self.replica.apply(e);
        if !e.is_last_of_command() {
            return;
        }
        self.last_cmd = e.cmd_seq().0;
        self.last_event = seq.0;
        if self.error.is_none()
            && self.last_cmd >= self.last_snapshot_cmd + self.cfg.every_commands
            && self.durable.event_seq() >= self.last_event
        {
            if let Err(err) = self.snapshot() {
                tracing::error!(
                    "snapshot failed: {err}; snapshots stop, the journal has everything"
                );
                self.error = Some(err);
            }
        }
    }
}
