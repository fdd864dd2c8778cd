//! Snapshots: the engine state built from the book replica, off the matcher's thread,
//! written atomically (temp file, fsync, rename, fsync of the directory), recording the
//! command and event sequences they cover.
//!
//! File `snapshot-<cmd_seq>.snap` (20 digits): magic `RGXSNAP1`, payload length (u64),
//! CRC-32 of the payload (u32), payload ([`EngineState::to_bytes`]).

use crate::files::{list_segments, segment_name, sync_dir};
pub use crate::files::{list_snapshots, snapshot_name};
use crate::journal::DurableSeq;
use ringex_engine::state::EngineState;
use ringex_engine::{BookReplica, Consumer, Event, Sequence};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"RGXSNAP1";

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

/// A consumer that keeps a [`BookReplica`] and takes snapshots periodically. Gate it after
/// the journal: it only snapshots what the journal has made durable.
///
/// Off the hot path: on its own thread it only copies the replica's state (the one step that
/// must see a consistent replica); encoding, writing, the fsyncs and pruning happen on a
/// writer thread, so a slow disk never holds the ring. While the writer is busy, later
/// snapshot points are skipped, not queued. The two newest snapshots are kept, and journal
/// segments only once the *older* of them covers them, so a damaged newest snapshot still
/// recovers from the older one plus the journal.
pub struct Snapshotter {
    cfg: SnapshotConfig,
    replica: BookReplica,
    durable: DurableSeq,
    last_cmd: u64,
    last_event: u64,
    last_snapshot_cmd: u64,
    writer: Option<SnapshotWriter>,
    clocks: Option<ringex_engine::pipeline::ClockReader>,
    /// Snapshots handed to the writer.
    pub written: u64,
    /// The first error (snapshots stop; the journal still holds everything).
    pub error: Option<io::Error>,
}

struct SnapshotWriter {
    tx: std::sync::mpsc::SyncSender<EngineState>,
    thread: std::thread::JoinHandle<io::Result<()>>,
}

/// The writer thread: writes each state it gets, then prunes.
fn writer_loop(cfg: SnapshotConfig, rx: std::sync::mpsc::Receiver<EngineState>) -> io::Result<()> {
    // The event sequence of the newest snapshot this writer wrote (pruning keeps what the
    // one before the newest needs).
    let mut newest: Option<u64> = None;
    for state in rx {
        write_snapshot(&cfg.dir, &state)?;
        if cfg.prune {
            prune(&cfg.dir, &state, newest)?;
        }
        newest = Some(state.event_seq);
    }
    Ok(())
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
            writer: None,
            clocks: None,
            written: 0,
            error: None,
        }
    }

    fn snapshot(&mut self) -> io::Result<()> {
        if self.writer.is_none() {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            let cfg = self.cfg.clone();
            let thread = std::thread::Builder::new()
                .name("ringex-snapshot-writer".into())
                .spawn(move || writer_loop(cfg, rx))?;
            self.writer = Some(SnapshotWriter { tx, thread });
        }
        let Some(w) = &self.writer else {
            return Ok(());
        };
        if w.thread.is_finished() {
            // It stopped on an error: collect it.
            return match self.writer.take().map(|w| w.thread.join()) {
                Some(Ok(Err(e))) => Err(e),
                _ => Err(io::Error::other("the snapshot writer stopped")),
            };
        }
        let state = self.replica.state(self.last_cmd, self.last_event);
        match w.tx.try_send(state) {
            Ok(()) => {
                self.written += 1;
                self.last_snapshot_cmd = self.last_cmd;
            }
            // Busy writing the previous one: try again at a later command.
            Err(std::sync::mpsc::TrySendError::Full(_)) => {}
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                return Err(io::Error::other("the snapshot writer stopped"));
            }
        }
        Ok(())
    }

    /// Waits for the writer to finish what it was given.
    fn finish(&mut self) {
        if let Some(w) = self.writer.take() {
            drop(w.tx);
            match w.thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!("snapshot failed: {e}; the journal has everything");
                    self.error.get_or_insert(e);
                }
                Err(_) => {
                    self.error
                        .get_or_insert(io::Error::other("the snapshot writer panicked"));
                }
            }
        }
    }
}

/// Keeps the two newest snapshots (`state`'s, just written, and the one before it) and
/// deletes the journal segments whose events all precede the older of the two
/// (`previous`, its event sequence; when unknown, no segment is deleted).
pub fn prune(dir: &Path, state: &EngineState, previous: Option<u64>) -> io::Result<()> {
    for (_, p) in list_snapshots(dir)?.into_iter().skip(2) {
        std::fs::remove_file(p)?;
    }
    let Some(covered) = previous.map(|p| p.min(state.event_seq)) else {
        return Ok(());
    };
    let segs: Vec<u64> = list_segments(dir)?.into_iter().map(|(s, _)| s).collect();
    // A segment can go when the next one starts at or before the first event after the
    // older snapshot: all of its events are covered.
    for w in segs.windows(2) {
        if w[1] <= covered + 1 {
            std::fs::remove_file(dir.join(segment_name(w[0])))?;
        }
    }
    Ok(())
}

impl Consumer for Snapshotter {
    fn name(&self) -> &str {
        "snapshotter"
    }

    fn on_start_with(&mut self, ctx: &ringex_engine::pipeline::ConsumerContext) {
        self.clocks = Some(ctx.clocks());
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
            // The engine clock after this command (its slot is valid while we handle it).
            if let Some(c) = &self.clocks {
                self.replica.set_clock(c.at(seq).0);
            }
            if let Err(err) = self.snapshot() {
                tracing::error!(
                    "snapshot failed: {err}; snapshots stop, the journal has everything"
                );
                self.error = Some(err);
            }
        }
    }

    fn on_shutdown(&mut self) {
        self.finish();
    }
}
