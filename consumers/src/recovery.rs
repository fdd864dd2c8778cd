//! Recovery: the newest valid snapshot plus the journal tail, with torn-tail detection.
//!
//! A record that fails its checksum (or is cut short) with nothing valid after it anywhere
//! is a torn tail: the journal is cut there (truncated) and the cut is reported. A bad record
//! followed by any valid record, or a gap in the sequence numbers, is corruption in the
//! middle of the journal: recovery stops with a clear error rather than build a wrong book.

pub use crate::files::list_segments;
use crate::journal::{
    DurableMark, HEADER_BYTES, HEADER_BYTES_V1, RECORD_MAGIC, RECORD_MAGIC_V1, RECORD_MAGIC_V2,
};
use crate::snapshot::{list_snapshots, read_snapshot};
use ringex_engine::codec::EVENT_BYTES;
use ringex_engine::state::EngineState;
use ringex_engine::{BookReplica, Event};
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why recovery refused to go on.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// A file could not be read or written.
    #[error("recovery I/O error on {0}: {1}")]
    Io(PathBuf, io::Error),
    /// A damaged record with valid records after it.
    #[error("journal {segment} is corrupt at byte {offset} (valid records follow, so this is not a torn tail); refusing to recover a wrong book: restore the directory from a replica or backup")]
    Corrupt {
        /// The segment.
        segment: PathBuf,
        /// Where the damaged record starts.
        offset: u64,
    },
    /// A record repeats events an earlier record already holds.
    #[error("journal {segment} repeats events: a record starts at {first} after one that ended at {previous}")]
    Overlap {
        /// The segment.
        segment: PathBuf,
        /// First event of the repeating record.
        first: u64,
        /// Last event of the record before it.
        previous: u64,
    },
    /// Events are missing between the snapshot or one record and the next.
    #[error("journal has a gap: expected event {expected}, found {found} in {segment}")]
    Gap {
        /// The segment.
        segment: PathBuf,
        /// The event sequence expected next.
        expected: u64,
        /// The one found.
        found: u64,
    },
}

/// What recovery did.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    /// The snapshot used, if any.
    pub snapshot: Option<PathBuf>,
    /// Snapshots skipped because they were damaged.
    pub damaged_snapshots: Vec<PathBuf>,
    /// Journal records replayed after the snapshot.
    pub records: u64,
    /// Events replayed after the snapshot.
    pub events: u64,
    /// A torn tail that was cut: (segment, offset, bytes cut).
    pub torn_tail: Option<(PathBuf, u64, u64)>,
    /// Empty segments removed.
    pub empty_segments_removed: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// The recovered engine.
pub struct Recovered {
    /// The state after the last durable command.
    pub state: EngineState,
    /// The durable mark (last event, last command).
    pub mark: DurableMark,
    /// What happened.
    pub report: RecoveryReport,
}

fn io_err(p: &Path) -> impl Fn(io::Error) -> RecoveryError + '_ {
    move |e| RecoveryError::Io(p.to_path_buf(), e)
}

/// A parsed record header.
struct Header {
    /// Header bytes (64, or 32 in the first format).
    hlen: usize,
    /// The engine clock after the record's last command (0 in the first format).
    clock: u64,
    /// Commands whose times follow the events (the third format; 0 before).
    ncmds: usize,
    len: usize,
    crc: u32,
    first: u64,
    last_cmd: u64,
    count: u32,
}

fn header(b: &[u8]) -> Option<Header> {
    let h = b.get(..HEADER_BYTES_V1)?;
    let u32at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let u64at = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&h[i..i + 8]);
        u64::from_le_bytes(a)
    };
    let (hlen, clock, ncmds) = match u32at(0) {
        m @ (RECORD_MAGIC | RECORD_MAGIC_V2) => {
            let full = b.get(..HEADER_BYTES)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(&full[32..40]);
            let mut n = [0u8; 4];
            n.copy_from_slice(&full[40..44]);
            let ncmds = if m == RECORD_MAGIC {
                u32::from_le_bytes(n) as usize
            } else {
                0
            };
            (HEADER_BYTES, u64::from_le_bytes(a), ncmds)
        }
        RECORD_MAGIC_V1 => (HEADER_BYTES_V1, 0, 0),
        _ => return None,
    };
    Some(Header {
        hlen,
        clock,
        ncmds,
        len: u32at(4) as usize,
        crc: u32at(8),
        first: u64at(12),
        last_cmd: u64at(20),
        count: u32at(28),
    })
}

/// A whole valid record at `b[0..]`: its header and total length.
fn valid_record(b: &[u8]) -> Option<(Header, usize)> {
    let h = header(b)?;
    let times = (h.ncmds * 8).next_multiple_of(32);
    if h.len != h.count as usize * EVENT_BYTES + times || h.count == 0 || h.ncmds > h.count as usize
    {
        return None;
    }
    let total = h.hlen + h.len;
    let rec = b.get(..total)?;
    (crc32fast::hash(&rec[12..]) == h.crc).then_some((h, total))
}

/// True when a valid record starts anywhere at or after `from` (records start on 32-byte
/// boundaries).
fn any_valid_after(b: &[u8], from: usize) -> bool {
    let mut at = from.next_multiple_of(32);
    while at + HEADER_BYTES_V1 <= b.len() {
        if valid_record(&b[at..]).is_some() {
            return true;
        }
        at += 32;
    }
    false
}

/// Recovers the engine state from `dir`: newest valid snapshot plus the journal tail. Cuts
/// a torn tail (the directory is modified) and removes empty segments.
pub fn recover(dir: &Path) -> Result<Recovered, RecoveryError> {
    let t = Instant::now();
    let mut report = RecoveryReport::default();
    let state = newest_snapshot(dir, &mut report)?;
    // The replica is built only if the journal has events after the snapshot.
    let mut replica: Option<BookReplica> = None;
    let mut mark = DurableMark {
        event_seq: state.event_seq,
        cmd_seq: state.cmd_seq,
    };
    let segments = list_segments(dir).map_err(io_err(dir))?;
    let mut buf = [0u8; EVENT_BYTES];
    // The last event that came from the journal itself (a record that repeats it is a
    // duplicate, not a record the snapshot already covers).
    let mut from_journal = 0u64;
    let mut clock = state.clock;
    // One segment in memory at a time (a later one is read only to tell a torn tail from
    // damage in the middle).
    for (i, (_, path)) in segments.iter().enumerate() {
        let b = &read_segment(path)?;
        let mut at = 0usize;
        let mut records_here = 0u64;
        loop {
            if at + HEADER_BYTES_V1 > b.len() || b[at..at + HEADER_BYTES_V1].iter().all(|&x| x == 0)
            {
                // End of this segment's data (preallocated zeros or end of file). Anything
                // non-zero after zeros would be a record we cannot reach.
                if at < b.len() && b[at..].iter().any(|&x| x != 0) && any_valid_after(b, at) {
                    return Err(RecoveryError::Corrupt {
                        segment: path.clone(),
                        offset: at as u64,
                    });
                }
                break;
            }
            let Some((h, total)) = valid_record(&b[at..]) else {
                let later = any_valid_after(b, at + 32) || valid_in_later(&segments[i + 1..])?;
                if later {
                    return Err(RecoveryError::Corrupt {
                        segment: path.clone(),
                        offset: at as u64,
                    });
                }
                cut_torn_tail(path, at as u64, b.len() as u64, &mut report)?;
                break;
            };
            let last = h.first + h.count as u64 - 1;
            if h.first <= from_journal {
                return Err(RecoveryError::Overlap {
                    segment: path.clone(),
                    first: h.first,
                    previous: from_journal,
                });
            }
            from_journal = last;
            if h.first > mark.event_seq + 1 {
                return Err(RecoveryError::Gap {
                    segment: path.clone(),
                    expected: mark.event_seq + 1,
                    found: h.first,
                });
            }
            if last > mark.event_seq {
                for k in 0..h.count as u64 {
                    let seq = h.first + k;
                    if seq <= mark.event_seq {
                        continue;
                    }
                    let off = at + h.hlen + k as usize * EVENT_BYTES;
                    buf.copy_from_slice(&b[off..off + EVENT_BYTES]);
                    let Some(e) = Event::decode(&buf) else {
                        return Err(RecoveryError::Corrupt {
                            segment: path.clone(),
                            offset: off as u64,
                        });
                    };
                    replica
                        .get_or_insert_with(|| BookReplica::from_state(&state))
                        .apply(&e);
                    report.events += 1;
                }
                mark = DurableMark {
                    event_seq: last,
                    cmd_seq: h.last_cmd,
                };
                clock = clock.max(h.clock);
                report.records += 1;
            }
            records_here += 1;
            at += total;
        }
        if records_here == 0 {
            std::fs::remove_file(path).map_err(io_err(path))?;
            report.empty_segments_removed += 1;
        }
    }
    let mut state = match replica {
        Some(r) => r.state(mark.cmd_seq, mark.event_seq),
        None => state,
    };
    state.clock = state.clock.max(clock);
    report.elapsed = t.elapsed();
    Ok(Recovered {
        state,
        mark,
        report,
    })
}

/// The newest snapshot that reads back whole (the state at command 0 if none); damaged ones
/// are passed over and named in the report.
fn newest_snapshot(dir: &Path, report: &mut RecoveryReport) -> Result<EngineState, RecoveryError> {
    for (_, p) in list_snapshots(dir).map_err(io_err(dir))? {
        match read_snapshot(&p) {
            Ok(s) => {
                report.snapshot = Some(p);
                return Ok(s);
            }
            Err(e) => {
                tracing::warn!("{e}; trying an older snapshot");
                report.damaged_snapshots.push(p);
            }
        }
    }
    Ok(EngineState::default())
}

/// A segment's bytes.
fn read_segment(path: &Path) -> Result<Vec<u8>, RecoveryError> {
    let mut b = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut b))
        .map_err(io_err(path))?;
    Ok(b)
}

/// Whether any of `segments` holds a valid record (read one at a time).
fn valid_in_later(segments: &[(u64, PathBuf)]) -> Result<bool, RecoveryError> {
    for (_, p) in segments {
        if any_valid_after(&read_segment(p)?, 0) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Cuts a torn tail: the segment is truncated at `at` (of `len` bytes) and synced, and the
/// cut is reported.
fn cut_torn_tail(
    path: &Path,
    at: u64,
    len: u64,
    report: &mut RecoveryReport,
) -> Result<(), RecoveryError> {
    let cut = len - at;
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    f.set_len(at).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))?;
    tracing::warn!(
        "journal {}: torn tail at byte {at} cut ({cut} bytes)",
        path.display()
    );
    report.torn_tail = Some((path.to_path_buf(), at, cut));
    Ok(())
}

/// Every event the journal in `dir` holds, in order, with its output sequence (run
/// [`recover`] first: this reads the valid records and stops at the first invalid one).
/// Consumers that keep their own state (the allocator) rebuild it from this.
pub fn journal_events(dir: &Path) -> Result<Vec<(u64, Event)>, RecoveryError> {
    journal_events_after(dir, 0)
}

/// The journaled events after event `after`, read from the segment that holds `after + 1`
/// on: time and memory follow what is needed, not the whole history.
pub fn journal_events_after(dir: &Path, after: u64) -> Result<Vec<(u64, Event)>, RecoveryError> {
    Ok(journal_events_timed_after(dir, after)?
        .into_iter()
        .map(|(s, e, _)| (s, e))
        .collect())
}

/// Like [`journal_events`], with the engine time of each event's command (from the
/// records' command times; records of the earlier formats give the record's last time, or
/// 0).
pub fn journal_events_timed(dir: &Path) -> Result<Vec<(u64, Event, u64)>, RecoveryError> {
    journal_events_timed_after(dir, 0)
}

/// Like [`journal_events_after`], with each event's command time.
pub fn journal_events_timed_after(
    dir: &Path,
    after: u64,
) -> Result<Vec<(u64, Event, u64)>, RecoveryError> {
    let mut out = Vec::new();
    let mut buf = [0u8; EVENT_BYTES];
    let segments = list_segments(dir).map_err(io_err(dir))?;
    // A segment is named by its first event: the ones whose successor starts at or before
    // `after + 1` hold nothing needed.
    let from = segments
        .iter()
        .rposition(|(first, _)| *first <= after + 1)
        .unwrap_or(0);
    for (_, path) in &segments[from..] {
        let mut b = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut b))
            .map_err(io_err(path))?;
        let mut at = 0;
        while let Some((h, total)) = b.get(at..).and_then(valid_record) {
            let times_at = at + h.hlen + h.count as usize * EVENT_BYTES;
            let time = |k: usize| -> u64 {
                let mut a = [0u8; 8];
                a.copy_from_slice(&b[times_at + k * 8..times_at + k * 8 + 8]);
                u64::from_le_bytes(a)
            };
            // Events of one command share its time: the k-th command ends at the k-th
            // event marked last of its command.
            let mut cmd = 0usize;
            let mut decoded = Vec::with_capacity(h.count as usize);
            for k in 0..h.count as usize {
                let off = at + h.hlen + k * EVENT_BYTES;
                buf.copy_from_slice(&b[off..off + EVENT_BYTES]);
                if let Some(e) = Event::decode(&buf) {
                    decoded.push((h.first + k as u64, e, cmd));
                    if e.is_last_of_command() {
                        cmd += 1;
                    }
                }
            }
            for (seq, e, c) in decoded {
                if seq > after {
                    let t = if c < h.ncmds { time(c) } else { h.clock };
                    out.push((seq, e, t));
                }
            }
            at += total;
        }
    }
    Ok(out)
}
