//! What a pipeline figure is read against on a small machine: the disk's own
//! write+fdatasync latency (the journal cannot be durable faster), and the single-thread
//! work per command of every stage (on `cores` cores the pipeline cannot run faster than
//! `cores` divided by their sum, whatever the threads). `ringex bench` measures both in the
//! same run and prints them beside its figures.

use hdrhistogram::Histogram;
use ringex_engine::consumer::deliver;
use ringex_engine::workload::GeneratedWorkload;
use ringex_engine::{Consumer, Event, Matcher, MatcherCapacity, Sequence};
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// The disk's write+fdatasync latency, measured in the journal's directory.
#[derive(Clone, Debug)]
pub struct FsyncFloor {
    /// Bytes per write.
    pub bytes: usize,
    /// Writes measured.
    pub samples: usize,
    /// Median, µs.
    pub p50_us: f64,
    /// 90th percentile, µs.
    pub p90_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
}

/// Appends `bytes` and `fdatasync`s, `samples` times, in a scratch file in `dir` (removed
/// after): what one journal record with its sync costs at least.
pub fn fsync_floor(dir: &Path, samples: usize, bytes: usize) -> io::Result<FsyncFloor> {
    fsync_floor_paced(dir, samples, bytes, Duration::ZERO)
}

/// [`fsync_floor`] with the writes on a schedule, one every `every` (at a benchmark's rate;
/// a write that comes due while the one before is still syncing starts at once).
pub fn fsync_floor_paced(
    dir: &Path,
    samples: usize,
    bytes: usize,
    every: Duration,
) -> io::Result<FsyncFloor> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("fsync-floor-{}.probe", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let buf = vec![0x5au8; bytes.max(1)];
    let mut h = Histogram::<u64>::new(3).map_err(io::Error::other)?;
    let start = Instant::now();
    for k in 0..samples.max(1) {
        let due = start + every * k as u32;
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let t = Instant::now();
        f.write_all(&buf)?;
        f.sync_data()?;
        let _ = h.record(t.elapsed().as_nanos() as u64);
    }
    drop(f);
    let _ = std::fs::remove_file(&path);
    Ok(FsyncFloor {
        bytes,
        samples: samples.max(1),
        p50_us: h.value_at_quantile(0.5) as f64 / 1e3,
        p90_us: h.value_at_quantile(0.9) as f64 / 1e3,
        p99_us: h.value_at_quantile(0.99) as f64 / 1e3,
    })
}

/// Single-thread work per command of each stage, on the run's own commands.
#[derive(Clone, Debug)]
pub struct CpuBound {
    /// (stage, ns per command), the matcher first.
    pub stages: Vec<(String, f64)>,
    /// Cores the pipeline shares.
    pub cores: usize,
}

impl CpuBound {
    /// Work per command, all stages.
    pub fn total_ns(&self) -> f64 {
        self.stages.iter().map(|s| s.1).sum()
    }

    /// The stage with the most work per command (each stage is one thread).
    pub fn slowest(&self) -> Option<&(String, f64)> {
        self.stages.iter().max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// The most commands per second: what `cores` cores can do with all the work, and no
    /// more than the slowest stage alone on its thread.
    pub fn bound_per_sec(&self) -> f64 {
        let shared = self.cores as f64 * 1e9 / self.total_ns().max(1e-9);
        let serial = 1e9 / self.slowest().map_or(0.0, |s| s.1).max(1e-9);
        shared.min(serial)
    }
}

/// Runs `c` alone over `events` in batches of about 64 events ending on command
/// boundaries (as a pipeline stage gets them); returns the seconds it took.
pub fn time_consumer<C: Consumer>(c: C, events: &[Event]) -> f64 {
    time_consumer_warm(c, events, 0)
}

/// [`time_consumer`] that times only the events from `warm` on: those before it run
/// first, untimed, so that the consumer's state holds the accounts, instruments and pairs
/// the stream has introduced by then (its steady state, not its first touch of each).
/// `warm` is moved to the next command boundary.
pub fn time_consumer_warm<C: Consumer>(mut c: C, events: &[Event], warm: usize) -> f64 {
    let lookahead = c.lookahead();
    let mut warm = warm.min(events.len());
    while warm > 0 && warm < events.len() && !events[warm - 1].is_last_of_command() {
        warm += 1;
    }
    let mut t = Instant::now();
    let mut start = 0;
    for (i, e) in events.iter().enumerate() {
        if (e.is_last_of_command() && (i % 64 >= 63 || i + 1 == warm)) || i + 1 == events.len() {
            let batch = &events[start..=i];
            deliver(
                &mut c,
                lookahead,
                batch.iter(),
                start as u64,
                batch.len() as u64,
            );
            start = i + 1;
            if start == warm {
                t = Instant::now();
            }
        }
    }
    c.on_shutdown();
    t.elapsed().as_secs_f64()
}

/// Times the matcher alone on `data`'s commands (after its setup), then each of the
/// in-memory consumers the run has (`risk`, `md`, `alloc`), the journal's encoding and
/// checksums, and the history store (SQLite in a temp file, its writes included) on the
/// events it made: each stage's work per measured command.
pub fn cpu_bound(data: &GeneratedWorkload, consumers: &[String], cores: usize) -> CpuBound {
    // The events, recorded in a first pass (untimed)...
    let run = |record: bool| -> (f64, Vec<Event>, usize) {
        let mut m = Matcher::with_capacity(MatcherCapacity::default());
        let mut out = Vec::with_capacity(256);
        let mut events = Vec::new();
        for (k, c) in data.setup.iter().enumerate() {
            out.clear();
            m.process(Sequence(k as u64 + 1), c, &mut out);
        }
        let base = data.setup.len() as u64;
        let t = Instant::now();
        for (k, c) in data.commands.iter().enumerate() {
            out.clear();
            m.process(Sequence(base + k as u64 + 1), c, &mut out);
            if record {
                events.extend_from_slice(&out);
            }
            std::hint::black_box(&out);
        }
        (t.elapsed().as_secs_f64(), events, 0)
    };
    let (_, events, from) = run(true);
    // ... then the matcher timed alone on the same commands.
    let (matcher_secs, _, _) = run(false);
    let n = data.commands.len().max(1) as f64;
    let per = |secs: f64| secs * 1e9 / n;
    let mut stages = vec![("matcher".to_string(), per(matcher_secs))];
    let measured = &events[from..];
    for c in consumers {
        let secs = match c.as_str() {
            "risk" => time_consumer(
                ringex_consumers::risk::RiskUpdater::new(Default::default()).0,
                measured,
            ),
            "md" => time_consumer(
                ringex_consumers::market_data::MarketData::new(10).0,
                measured,
            ),
            "alloc" => time_consumer(
                ringex_consumers::allocation::Allocator::new(
                    Default::default(),
                    |_: &ringex_consumers::allocation::Allocation| {},
                ),
                measured,
            ),
            "journal" => {
                // Its CPU part: every event encoded and checksummed (the write and the
                // sync are the disk's, read against the fsync floor).
                let t = Instant::now();
                let mut crc = crc32fast::Hasher::new();
                let mut b = [0u8; ringex_engine::codec::EVENT_BYTES];
                for e in measured {
                    e.encode(&mut b);
                    crc.update(&b);
                }
                std::hint::black_box(crc.finalize());
                t.elapsed().as_secs_f64()
            }
            "history" => {
                let db = std::env::temp_dir()
                    .join(format!("ringex-cpu-bound-{}.db", std::process::id()));
                use ringex_consumers::history::{sqlite::SqliteStore, History};
                let timed = SqliteStore::open(&db)
                    .and_then(|s| History::new(s, Default::default()))
                    .map(|h| time_consumer(h, measured));
                SqliteStore::remove_files(&db);
                match timed {
                    Ok(secs) => secs,
                    Err(e) => {
                        tracing::warn!("the history store could not be timed alone: {e}");
                        continue;
                    }
                }
            }
            _ => continue,
        };
        stages.push((c.clone(), per(secs)));
    }
    CpuBound { stages, cores }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(stages: &[(&str, f64)], cores: usize) -> CpuBound {
        CpuBound {
            stages: stages.iter().map(|&(n, ns)| (n.to_string(), ns)).collect(),
            cores,
        }
    }

    #[test]
    fn the_bound_is_the_shared_cores_or_the_slowest_stage_whichever_is_lower() {
        // 100 ns in all on 2 cores: 20M; the slowest stage (40 ns) alone allows 25M.
        let b = bound(&[("matcher", 40.0), ("risk", 30.0), ("md", 30.0)], 2);
        assert_eq!(b.total_ns(), 100.0);
        assert!((b.bound_per_sec() - 20e6).abs() < 1.0);
        // A stage of 1,000 ns caps the pipeline at 1M whatever the cores.
        let b = bound(&[("matcher", 40.0), ("history", 1000.0)], 16);
        assert_eq!(b.slowest().map(|s| s.0.as_str()), Some("history"));
        assert!((b.bound_per_sec() - 1e6).abs() < 1.0);
    }

    #[test]
    fn the_history_store_is_timed_as_a_stage_of_its_own() {
        let data = ringex_engine::workload::MultiSymbolWorkload::default().generate(2000);
        let names = ["risk", "history"].map(String::from);
        let b = cpu_bound(&data, &names, 2);
        let stages: Vec<&str> = b.stages.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(stages, ["matcher", "risk", "history"]);
        assert!(b.stages.iter().all(|s| s.1 > 0.0), "{:?}", b.stages);
    }
}
