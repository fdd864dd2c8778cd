//! The persistence batcher: an append-only journal of the event stream, in group commits.
//!
//! - Segment files `<first_event_seq>.journal` (20 digits) in one directory, preallocated
//!   to the segment size, rolled when full.
//! - One record per ring batch: a 64-byte header (magic `RGJ3`, payload length, CRC-32 of
//!   everything after the CRC field, first event sequence, last command sequence, event
//!   count, the engine clock after the last command, the number of commands, zero padding),
//!   the events, 64 bytes each ([`ringex_engine::codec`]), then the engine time of each
//!   command whose events the record holds (8 bytes each, zero-padded to 32 bytes): replays
//!   (the history store's catch-up) see every command's time. Records of the earlier
//!   formats (`RGJ1`: a 32-byte header, no times; `RGJ2`: the last command's time only)
//!   are still read.
//! - **Command boundaries**: a record ends on the last event of a command. Events of a
//!   command that is not complete at the end of a batch wait for the next batch, so the
//!   durable prefix never ends between two events of one command.
//! - **Group commit**: one `write` and (policy `batch`) one `fdatasync` per ring batch;
//!   `interval:<ms>` syncs at most that often; `none` never syncs (benchmarks).
//! - The highest durable sequence is published in a [`DurableSeq`] readable from any thread,
//!   and an optional hook is called after every sync (client acknowledgements).

use crossbeam_utils::CachePadded;
use ringex_engine::codec::EVENT_BYTES;
use ringex_engine::{Consumer, Event, Sequence};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Record magic of the first format (32-byte header, no clock): "RGJ1".
pub const RECORD_MAGIC_V1: u32 = 0x314A_4752;
/// Record magic of the second format (64-byte header with the last clock, no command
/// times): "RGJ2".
pub const RECORD_MAGIC_V2: u32 = 0x324A_4752;
/// Record magic: "RGJ3".
pub const RECORD_MAGIC: u32 = 0x334A_4752;
/// Bytes of a record header of the first format.
pub const HEADER_BYTES_V1: usize = 32;
/// Bytes of a record header.
pub const HEADER_BYTES: usize = 64;

/// When the journal calls `fdatasync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every ring batch (group commit): durable before acknowledged.
    Batch,
    /// At most once per interval; an event is durable only after the next sync.
    Interval(Duration),
    /// Never (benchmarks): "durable" means written to the OS.
    None,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "batch" => Ok(FsyncPolicy::Batch),
            "none" => Ok(FsyncPolicy::None),
            _ => s
                .strip_prefix("interval:")
                .and_then(|ms| ms.parse::<u64>().ok())
                .map(|ms| FsyncPolicy::Interval(Duration::from_millis(ms)))
                .ok_or_else(|| format!("fsync policy {s:?}: use batch, interval:<ms> or none")),
        }
    }
}

/// Journal settings.
#[derive(Clone, Debug)]
pub struct JournalConfig {
    /// The directory of segment files.
    pub dir: PathBuf,
    /// When to sync.
    pub fsync: FsyncPolicy,
    /// Segment size (preallocated).
    pub segment_bytes: u64,
    /// Fault injection for tests: every write that would take the journal past this many
    /// record bytes fails, as on a full disk.
    pub fail_after_bytes: Option<u64>,
}

impl JournalConfig {
    /// Defaults: sync every batch, 16 MiB segments.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        JournalConfig {
            dir: dir.into(),
            fsync: FsyncPolicy::Batch,
            segment_bytes: 16 << 20,
            fail_after_bytes: None,
        }
    }
}

/// A durability mark: every event up to `event_seq`, i.e. every command up to `cmd_seq`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DurableMark {
    /// The last durable event (output sequence).
    pub event_seq: u64,
    /// The last command whose events are all durable (input sequence).
    pub cmd_seq: u64,
}

/// The highest durable sequences, readable from any thread.
#[derive(Clone, Debug, Default)]
pub struct DurableSeq {
    event: Arc<CachePadded<AtomicU64>>,
    cmd: Arc<CachePadded<AtomicU64>>,
}

impl DurableSeq {
    /// The last durable event sequence.
    pub fn event_seq(&self) -> u64 {
        self.event.load(Ordering::Acquire)
    }
    /// The last command whose events are all durable.
    pub fn cmd_seq(&self) -> u64 {
        self.cmd.load(Ordering::Acquire)
    }
    fn publish(&self, m: DurableMark) {
        self.cmd.store(m.cmd_seq, Ordering::Release);
        self.event.store(m.event_seq, Ordering::Release);
    }
}

pub use crate::files::{list_numbered, segment_name};
pub use crate::storage::{Disk, PowerLossDisk, SegmentFile, Storage};

struct Segment<T> {
    file: T,
    pos: u64,
}

/// The journal consumer. `F` is the hook called after each sync with the new mark; `S` is
/// where its segments live ([`Disk`] unless a test says otherwise).
pub struct Journal<F: FnMut(DurableMark) + Send + 'static = fn(DurableMark), S: Storage = Disk> {
    cfg: JournalConfig,
    storage: S,
    segment: Option<Segment<S::File>>,
    /// Encoded events not yet written.
    pending: Vec<u8>,
    pending_first: u64,
    /// Bytes, event count and mark of the last complete command in `pending`.
    boundary: (usize, u32, DurableMark),
    /// The engine clock after that command.
    boundary_clock: u64,
    /// The engine time of each complete command in `pending`.
    pending_clocks: Vec<u64>,
    clocks: Option<ringex_engine::pipeline::ClockReader>,
    record: Vec<u8>,
    written: DurableMark,
    durable: DurableSeq,
    on_durable: F,
    last_sync: Instant,
    /// The first I/O error; the journal stops writing (and nothing more becomes durable).
    pub error: Option<io::Error>,
    /// Records written (for reports).
    pub records: u64,
    /// Syncs done.
    pub syncs: u64,
    /// Record bytes written.
    bytes_written: u64,
}

fn no_hook(_: DurableMark) {}

impl Journal {
    /// A journal with no hook.
    pub fn new(cfg: JournalConfig) -> Self {
        Journal::with_hook(cfg, no_hook)
    }
}

impl<F: FnMut(DurableMark) + Send + 'static> Journal<F> {
    /// A journal that calls `on_durable` after every sync (from the journal's thread).
    pub fn with_hook(cfg: JournalConfig, on_durable: F) -> Self {
        Journal {
            cfg,
            storage: Disk,
            segment: None,
            pending: Vec::with_capacity(1 << 20),
            pending_first: 0,
            boundary: (0, 0, DurableMark::default()),
            boundary_clock: 0,
            pending_clocks: Vec::with_capacity(1 << 14),
            clocks: None,
            record: Vec::with_capacity(1 << 20),
            written: DurableMark::default(),
            durable: DurableSeq::default(),
            on_durable,
            last_sync: Instant::now(),
            error: None,
            records: 0,
            syncs: 0,
            bytes_written: 0,
        }
    }

    /// The same journal on other storage (a test's [`PowerLossDisk`]).
    pub fn on_storage<S: Storage>(self, storage: S) -> Journal<F, S> {
        Journal {
            cfg: self.cfg,
            storage,
            segment: None,
            pending: self.pending,
            pending_first: self.pending_first,
            boundary: self.boundary,
            boundary_clock: self.boundary_clock,
            pending_clocks: self.pending_clocks,
            clocks: self.clocks,
            record: self.record,
            written: self.written,
            durable: self.durable,
            on_durable: self.on_durable,
            last_sync: self.last_sync,
            error: self.error,
            records: self.records,
            syncs: self.syncs,
            bytes_written: self.bytes_written,
        }
    }
}

impl<F: FnMut(DurableMark) + Send + 'static, S: Storage> Journal<F, S> {
    /// Continues after a recovered mark (sequence numbers and durable state).
    pub fn resume_after(mut self, mark: DurableMark) -> Self {
        self.written = mark;
        self.durable.publish(mark);
        self
    }

    /// A handle on the durable sequence, for other threads.
    pub fn durable(&self) -> DurableSeq {
        self.durable.clone()
    }

    /// Rolls to a new segment whose first event is `first_seq`. What was written to the
    /// outgoing segment since its last sync is synced first (unless the policy is `none`):
    /// a later sync covers only the new segment, so without it an interval policy would
    /// mark durable a tail that only the page cache holds.
    fn open_segment(&mut self, first_seq: u64) -> io::Result<()> {
        if let Some(old) = self.segment.as_mut() {
            if self.cfg.fsync != FsyncPolicy::None {
                old.file.sync()?;
                self.syncs += 1;
            }
        }
        std::fs::create_dir_all(&self.cfg.dir)?;
        let path = self.cfg.dir.join(segment_name(first_seq));
        let file = self.storage.create(&path, self.cfg.segment_bytes)?;
        self.segment = Some(Segment { file, pos: 0 });
        Ok(())
    }

    /// Writes the complete commands buffered so far as one record, then syncs per policy.
    fn commit(&mut self) -> io::Result<()> {
        let (bytes, count, mark) = self.boundary;
        if count == 0 {
            return Ok(());
        }
        let ncmds = self.pending_clocks.len();
        let times = (ncmds * 8).next_multiple_of(32);
        self.record.clear();
        self.record.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
        self.record
            .extend_from_slice(&((bytes + times) as u32).to_le_bytes());
        self.record.extend_from_slice(&[0; 4]);
        self.record
            .extend_from_slice(&self.pending_first.to_le_bytes());
        self.record.extend_from_slice(&mark.cmd_seq.to_le_bytes());
        self.record.extend_from_slice(&count.to_le_bytes());
        self.record
            .extend_from_slice(&self.boundary_clock.to_le_bytes());
        self.record.extend_from_slice(&(ncmds as u32).to_le_bytes());
        self.record.resize(HEADER_BYTES, 0);
        self.record.extend_from_slice(&self.pending[..bytes]);
        for c in &self.pending_clocks {
            self.record.extend_from_slice(&c.to_le_bytes());
        }
        self.record.resize(HEADER_BYTES + bytes + times, 0);
        let mut h = crc32fast::Hasher::new();
        h.update(&self.record[12..]);
        let crc = h.finalize();
        self.record[8..12].copy_from_slice(&crc.to_le_bytes());

        let len = self.record.len() as u64;
        let roll = match &self.segment {
            None => true,
            Some(s) => s.pos > 0 && s.pos + len > self.cfg.segment_bytes,
        };
        if roll {
            self.open_segment(self.pending_first)?;
        }
        if let Some(limit) = self.cfg.fail_after_bytes {
            if self.bytes_written + len > limit {
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "no space left on device (injected)",
                ));
            }
        }
        if let Some(seg) = self.segment.as_mut() {
            seg.file.append(&self.record)?;
            seg.pos += len;
        }
        self.bytes_written += len;
        self.records += 1;
        self.written = mark;
        // Keep the events of the incomplete command.
        self.pending.drain(..bytes);
        self.pending_clocks.clear();
        self.pending_first = mark.event_seq + 1;
        self.boundary = (0, 0, mark);
        match self.cfg.fsync {
            FsyncPolicy::Batch => self.sync()?,
            FsyncPolicy::Interval(d) if self.last_sync.elapsed() >= d => self.sync()?,
            FsyncPolicy::Interval(_) => {}
            FsyncPolicy::None => self.mark_durable(),
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        if let Some(seg) = self.segment.as_mut() {
            seg.file.sync()?;
        }
        self.syncs += 1;
        self.last_sync = Instant::now();
        self.mark_durable();
        Ok(())
    }

    fn mark_durable(&mut self) {
        if self.written.event_seq > self.durable.event_seq() {
            self.durable.publish(self.written);
            (self.on_durable)(self.written);
        }
    }
}

impl<F: FnMut(DurableMark) + Send + 'static, S: Storage> Consumer for Journal<F, S> {
    fn name(&self) -> &str {
        "journal"
    }

    fn on_start_with(&mut self, ctx: &ringex_engine::pipeline::ConsumerContext) {
        self.clocks = Some(ctx.clocks());
    }

    /// With `--fsync interval:<ms>`, a quiet pipeline still syncs: the tail written since the
    /// last sync becomes durable (and acknowledged) within one interval.
    fn timeout(&self) -> Option<std::time::Duration> {
        match self.cfg.fsync {
            FsyncPolicy::Interval(d) => Some(d.max(std::time::Duration::from_micros(100))),
            _ => None,
        }
    }

    fn on_timeout(&mut self) {
        let unsynced = self.written.event_seq > self.durable.event_seq();
        if self.error.is_none() && unsynced {
            if let Err(err) = self.sync() {
                tracing::error!("journal sync failed: {err}; nothing more becomes durable");
                self.error = Some(err);
            }
        }
    }

    /// Consumers gated after the journal see only what is durable.
    fn gate_sequence(&self) -> Option<u64> {
        Some(self.durable.event_seq())
    }

    /// A write or sync error is fatal: nothing after it can become durable, so nothing
    /// gated after the journal may see it (the pipeline halts by default).
    fn failure(&self) -> Option<String> {
        self.error
            .as_ref()
            .map(|e| format!("journal I/O error: {e}"))
    }

    fn on_event(&mut self, e: &Event, seq: Sequence, end_of_batch: bool) {
        if self.error.is_some() {
            return;
        }
        if self.pending.is_empty() {
            self.pending_first = seq.0;
        }
        let mut buf = [0u8; EVENT_BYTES];
        e.encode(&mut buf);
        self.pending.extend_from_slice(&buf);
        if e.is_last_of_command() {
            let count = (self.pending.len() / EVENT_BYTES) as u32;
            self.boundary = (
                self.pending.len(),
                count,
                DurableMark {
                    event_seq: seq.0,
                    cmd_seq: e.cmd_seq().0,
                },
            );
            if let Some(c) = &self.clocks {
                self.boundary_clock = c.at(seq).0;
            }
            self.pending_clocks.push(self.boundary_clock);
        }
        if end_of_batch {
            if let Err(err) = self.commit() {
                tracing::error!("journal write failed: {err}; nothing more becomes durable");
                self.error = Some(err);
            }
        }
    }

    fn on_shutdown(&mut self) {
        if self.error.is_none() {
            let r = self.commit().and_then(|_| match self.cfg.fsync {
                FsyncPolicy::None => Ok(()),
                _ => self.sync(),
            });
            if let Err(err) = r {
                self.error = Some(err);
            }
        }
    }
}
