//! A journal whose writes fail (injected, as on a full disk) halts the pipeline: the hook
//! never acknowledges an event that is not durable, and a consumer gated after the journal
//! never sees one.

use ringex_consumers::journal::{DurableMark, Journal, JournalConfig};
use ringex_consumers::recovery::recover;
use ringex_engine::pipeline::ConsumerOptions;
use ringex_engine::workload::ExchangeCoreWorkload;
use ringex_engine::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

struct Acks(Arc<AtomicU64>);

impl Consumer for Acks {
    fn name(&self) -> &str {
        "acks"
    }
    fn on_event(&mut self, _: &Event, s: Sequence, _: bool) {
        self.0.store(s.0, Ordering::Release);
    }
}

#[test]
fn a_failing_journal_halts_and_nothing_past_durable_is_acknowledged() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut cfg = JournalConfig::new(tmp.path());
    cfg.fail_after_bytes = Some(1 << 20);
    let hooked = Arc::new(AtomicU64::new(0));
    let h = Arc::clone(&hooked);
    let journal = Journal::with_hook(cfg, move |m: DurableMark| {
        h.store(m.event_seq, Ordering::Release)
    });
    let durable = journal.durable();
    let gated = Arc::new(AtomicU64::new(0));
    let mut b = Pipeline::builder().input_ring(1024).output_ring(1024);
    let j = b.add_consumer(journal, ConsumerOptions::default().max_batch(512));
    b.add_consumer(
        Acks(Arc::clone(&gated)),
        ConsumerOptions::default().after(j),
    );
    let p = b.start().expect("start");
    let mut g = p.gateway();
    let w = ExchangeCoreWorkload::default().generate(200_000);
    let mut refused = None;
    for c in w.setup.iter().chain(&w.commands) {
        if let Err(e) = g.submit_at(*c) {
            refused = Some(e);
            break;
        }
    }
    assert_eq!(
        refused,
        Some(SubmitError::Halted),
        "1 MiB holds ~16k events"
    );
    let why = p.status().halted.expect("halted");
    assert!(why.contains("journal") && why.contains("no space"), "{why}");
    drop(g);
    let report = p.shutdown();
    assert!(report.consumers[j.0].failure.is_some());
    let on_disk = recover(tmp.path()).expect("recover").mark.event_seq;
    let (hooked, gated, durable) = (
        hooked.load(Ordering::Acquire),
        gated.load(Ordering::Acquire),
        durable.event_seq(),
    );
    assert!(on_disk > 0 && hooked > 0);
    assert!(
        hooked <= on_disk,
        "hook acked {hooked}, journal holds {on_disk}"
    );
    assert!(
        durable <= on_disk,
        "durable {durable}, journal holds {on_disk}"
    );
    assert!(
        gated <= on_disk,
        "gated consumer saw {gated}, journal holds {on_disk}"
    );
}

/// `--fsync interval:5`: the last batch of a run that then goes quiet becomes durable and
/// acknowledged with no further event (the journal's timeout hook syncs it). How soon is a
/// figure for a benchmark, not a test on a shared CI machine: the deadline here only stops
/// a hang (without the hook the tail would never be synced); the time taken is printed.
#[test]
fn with_interval_fsync_a_quiet_pipeline_becomes_durable_with_no_further_event() {
    use ringex_consumers::journal::FsyncPolicy;
    let tmp = tempfile::tempdir().expect("tmp");
    let mut cfg = JournalConfig::new(tmp.path());
    cfg.fsync = FsyncPolicy::Interval(std::time::Duration::from_millis(5));
    let hooked = Arc::new(AtomicU64::new(0));
    let h = Arc::clone(&hooked);
    let journal = Journal::with_hook(cfg, move |m: DurableMark| {
        h.store(m.event_seq, Ordering::Release)
    });
    let durable = journal.durable();
    let p = Pipeline::builder()
        .consumer(journal)
        .start()
        .expect("start");
    let mut g = p.gateway();
    let w = ExchangeCoreWorkload::default().generate(20_000);
    for c in w.setup.iter().chain(&w.commands) {
        g.submit_at(*c).expect("submit");
    }
    let total = (w.setup.len() + w.commands.len()) as u64;
    while p.status().commands_processed < total {
        std::thread::yield_now();
    }
    let published = p.status().events_published;
    let t = std::time::Instant::now();
    while hooked.load(Ordering::Acquire) < published {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "not durable 10 s after the last event: {} of {published}",
            durable.event_seq()
        );
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    eprintln!(
        "durable and acknowledged {:?} after the last event",
        t.elapsed()
    );
    assert_eq!(durable.event_seq(), published);
    drop(g);
    p.shutdown();
}

/// A consumer gated after the journal (client acks) only ever sees durable events, also
/// with `interval` fsync (the journal's gate is its durable sequence), and still sees every
/// event by the end.
#[test]
fn a_consumer_gated_after_the_journal_sees_only_durable_events() {
    use ringex_consumers::journal::FsyncPolicy;

    /// Checks, at every event, that it is durable already.
    struct DurableAcks {
        durable: ringex_consumers::journal::DurableSeq,
        seen: Arc<AtomicU64>,
        early: Arc<AtomicU64>,
    }
    impl Consumer for DurableAcks {
        fn name(&self) -> &str {
            "acks"
        }
        fn on_event(&mut self, _: &Event, s: Sequence, _: bool) {
            if s.0 > self.durable.event_seq() {
                self.early.fetch_add(1, Ordering::Relaxed);
            }
            self.seen.store(s.0, Ordering::Release);
        }
    }

    let tmp = tempfile::tempdir().expect("tmp");
    let mut cfg = JournalConfig::new(tmp.path());
    cfg.fsync = FsyncPolicy::Interval(std::time::Duration::from_millis(3));
    let journal = Journal::new(cfg);
    let durable = journal.durable();
    let (seen, early) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut b = Pipeline::builder();
    let j = b.add_consumer(journal, ConsumerOptions::default().max_batch(300));
    b.add_consumer(
        DurableAcks {
            durable,
            seen: Arc::clone(&seen),
            early: Arc::clone(&early),
        },
        ConsumerOptions::default().after(j),
    );
    let p = b.start().expect("start");
    let mut g = p.gateway();
    let w = ExchangeCoreWorkload::default().generate(100_000);
    for c in w.setup.iter().chain(&w.commands) {
        g.submit_at(*c).expect("submit");
    }
    drop(g);
    let report = p.shutdown();
    assert_eq!(
        early.load(Ordering::Relaxed),
        0,
        "events seen before they were durable"
    );
    assert_eq!(seen.load(Ordering::Acquire), report.events_published);
}

/// Feeds `commands` through a matcher into `journal`, a batch every `batch` commands, and
/// calls `after_batch` after each.
fn journal_commands<
    F: FnMut(DurableMark) + Send + 'static,
    S: ringex_consumers::storage::Storage,
>(
    journal: &mut Journal<F, S>,
    commands: &[Command],
    batch: usize,
    mut after_batch: impl FnMut(&mut Journal<F, S>, usize),
) {
    let mut m = Matcher::default();
    let mut out = Vec::new();
    let mut ev = 0u64;
    for (i, c) in commands.iter().enumerate() {
        out.clear();
        m.process(Sequence(i as u64 + 1), c, &mut out);
        let end = (i + 1) % batch == 0 || i + 1 == commands.len();
        for (k, e) in out.iter().enumerate() {
            ev += 1;
            journal.on_event(e, Sequence(ev), end && k + 1 == out.len());
        }
        if end {
            after_batch(journal, i + 1);
        }
    }
}

/// Power loss, not only kill -9: with `--fsync interval:<ms>`, segments rolling over, and the
/// power cut after a sync at many points, recovery starts, and it holds every event the hook
/// acknowledged, exactly as a matcher fed the same first commands holds them. (The outgoing
/// segment used to be dropped unsynced at a roll, while the next sync, of the new segment
/// only, acknowledged the old one's tail: after the cut, acknowledged events were gone and
/// recovery refused to start, a gap in the old segment with valid records after it.)
#[test]
fn with_interval_fsync_a_power_cut_loses_nothing_acknowledged_across_segment_rolls() {
    use ringex_consumers::storage::PowerLossDisk;
    let w = ExchangeCoreWorkload::default().generate(6_000);
    let cmds: Vec<Command> = w.setup.iter().chain(&w.commands).copied().collect();
    for cut_after in [7usize, 19, 33, 48] {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut cfg = JournalConfig::new(tmp.path());
        cfg.fsync =
            ringex_consumers::journal::FsyncPolicy::Interval(std::time::Duration::from_secs(3600));
        cfg.segment_bytes = 16 << 10;
        let acked = Arc::new(AtomicU64::new(0));
        let a = Arc::clone(&acked);
        let disk = PowerLossDisk::new();
        let mut j = Journal::with_hook(cfg, move |m: DurableMark| {
            a.store(m.event_seq, Ordering::Release)
        })
        .on_storage(disk.clone());
        // The power goes at the end of batch `cut_after`: the process writes nothing after.
        let mut batches = 0;
        journal_commands(&mut j, &cmds[..cut_after * 128], 128, |j, _| {
            batches += 1;
            // The interval's sync comes from the timeout hook every fifth batch.
            if batches % 5 == 0 {
                j.on_timeout();
            }
        });
        let lost = disk.cut_power().expect("cut");
        let segments = ringex_consumers::files::list_segments(tmp.path())
            .expect("list")
            .len();
        assert!(segments > 1, "the run rolls segments ({segments})");
        let acked = acked.load(Ordering::Acquire);
        assert!(
            acked > 0,
            "something was acknowledged before the cut at batch {cut_after}"
        );
        assert!(
            lost > 0 || cut_after % 5 == 0,
            "the cut drops the unsynced tail"
        );
        drop(j);
        let rec = recover(tmp.path()).unwrap_or_else(|e| panic!("cut at batch {cut_after}: {e}"));
        assert!(
            rec.mark.event_seq >= acked,
            "cut at batch {cut_after}: acknowledged {acked}, recovered {}",
            rec.mark.event_seq
        );
        // The recovered book is that of the first K commands.
        let k = rec.mark.cmd_seq as usize;
        let mut m = Matcher::default();
        let mut out = Vec::new();
        for (i, c) in cmds[..k].iter().enumerate() {
            m.process(Sequence(i as u64 + 1), c, &mut out);
        }
        let replica = BookReplica::from_state(&rec.state);
        assert_eq!(
            replica.resting_orders(InstrumentId(0)),
            m.resting_orders(InstrumentId(0)),
            "cut at batch {cut_after}"
        );
    }
}

/// The events after a given one are read from the segment that holds the next on: earlier
/// segments are not needed (they may be gone, pruned after a snapshot).
#[test]
fn events_after_a_point_need_only_the_segments_from_there() {
    use ringex_consumers::recovery::{journal_events, journal_events_after};
    let tmp = tempfile::tempdir().expect("tmp");
    let mut cfg = JournalConfig::new(tmp.path());
    cfg.segment_bytes = 16 << 10;
    let mut j = Journal::new(cfg);
    let w = ExchangeCoreWorkload::default().generate(3_000);
    let cmds: Vec<Command> = w.setup.iter().chain(&w.commands).copied().collect();
    journal_commands(&mut j, &cmds, 64, |_, _| {});
    j.on_shutdown();
    let all = journal_events(tmp.path()).expect("read");
    let segments = ringex_consumers::files::list_segments(tmp.path()).expect("list");
    assert!(segments.len() > 4, "{} segments", segments.len());
    // Take away the first half of the segments: what comes after them still reads.
    let keep = segments.len() / 2;
    for (_, p) in &segments[..keep] {
        std::fs::remove_file(p).unwrap();
    }
    let from = segments[keep].0;
    for after in [
        from - 1,
        from,
        from + 100,
        all.last().unwrap().0 - 1,
        all.last().unwrap().0,
    ] {
        let got = journal_events_after(tmp.path(), after).expect("read after");
        let want: Vec<_> = all.iter().filter(|(s, _)| *s > after).cloned().collect();
        assert_eq!(got, want, "after {after}");
    }
}
