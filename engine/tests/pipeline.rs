//! The pipeline end to end: rings, matcher thread, consumers, failure isolation, back
//! pressure, shutdown.

mod common;

use ringex_engine::pipeline::ConsumerStatus;
use ringex_engine::workload::SplitMix64;
use ringex_engine::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Keeps every event it sees.
struct Collect {
    name: String,
    events: Vec<(Sequence, Event)>,
    ends: u64,
}

impl Collect {
    fn new(name: &str) -> Self {
        Collect {
            name: name.into(),
            events: Vec::new(),
            ends: 0,
        }
    }
}

impl Consumer for Collect {
    fn name(&self) -> &str {
        &self.name
    }
    fn on_event(&mut self, e: &Event, s: Sequence, end: bool) {
        self.events.push((s, *e));
        self.ends += end as u64;
    }
}

/// Counts events, checks sequences are contiguous, hashes the stream.
#[derive(Default)]
struct Digest {
    name: String,
    count: u64,
    gaps: u64,
    hash: u64,
    panic_at: Option<u64>,
}

impl Consumer for Digest {
    fn name(&self) -> &str {
        &self.name
    }
    fn on_event(&mut self, e: &Event, s: Sequence, _end: bool) {
        if Some(s.0) == self.panic_at {
            panic!("deliberate failure at event {}", s.0);
        }
        if s.0 != self.count + 1 {
            self.gaps += 1;
        }
        self.count += 1;
        self.hash = fold(self.hash, e);
    }
}

fn fold(h: u64, e: &Event) -> u64 {
    let mut x = h ^ e.cmd_seq().0;
    x = x.wrapping_mul(0x100_0000_01b3) ^ format!("{:?}", e.kind).len() as u64;
    match e.kind {
        EventKind::Fill { maker, qty, .. } => x ^ maker.0.wrapping_mul(31) ^ qty.0,
        EventKind::Accepted { order_id, .. } => x ^ order_id.0,
        _ => x,
    }
}

fn add_instruments(g: &mut Gateway) {
    for i in [0, 1] {
        g.submit_at(Command::new(
            Timestamp(0),
            CommandKind::AddInstrument(InstrumentId(i).into()),
        ))
        .expect("open");
    }
}

/// A random stream for one producer thread (no GTD, so time does not matter).
fn stream(seed: u64, n: usize, id_base: u64) -> Vec<Command> {
    let mut rng = SplitMix64::new(seed);
    let raw: Vec<[u16; 8]> = (0..n)
        .map(|_| {
            let mut w = [0u16; 8];
            for x in &mut w {
                *x = rng.next_u64() as u16;
            }
            w[7] &= !3; // no time steps
            w
        })
        .collect();
    common::decode(&raw)
        .into_iter()
        .skip(2) // the instruments are added once, up front
        .map(|mut c| {
            c.ts = Timestamp(0);
            match &mut c.kind {
                CommandKind::NewOrder(o) => {
                    o.order_id.0 += id_base;
                    if o.tif == TimeInForce::Gtd {
                        o.tif = TimeInForce::Gtc;
                    }
                }
                CommandKind::Cancel { order_id, .. } | CommandKind::Modify { order_id, .. } => {
                    order_id.0 += id_base
                }
                _ => {}
            }
            c
        })
        .collect()
}

#[test]
fn four_producers_every_consumer_sees_every_event_once_in_order_as_a_single_thread_would() {
    four_producers(250_000, None, 1 << 14);
}

/// The same with every stage parked when idle and woken by progress: small rings keep the
/// matcher waiting for room and the consumers for events, bursts and pauses between them
/// put every stage to sleep again and again; nothing is lost, nothing stalls.
#[test]
fn parked_stages_are_woken_by_progress_and_lose_nothing() {
    four_producers(60_000, Some(IdleStrategy::PARK), 256);
}

fn four_producers(per_thread: usize, idle: Option<IdleStrategy>, output_ring: usize) {
    let mut b = Pipeline::builder()
        .input_ring(1 << 12)
        .output_ring(output_ring);
    let opts = || match idle {
        Some(i) => ConsumerOptions::default().idle(i),
        None => ConsumerOptions::default(),
    };
    if let Some(i) = idle {
        b = b.matcher_idle(i);
    }
    let collect = b.add_consumer(Collect::new("collect"), opts());
    let d1 = b.add_consumer(
        Digest {
            name: "digest-1".into(),
            ..Default::default()
        },
        opts(),
    );
    let d2 = b.add_consumer(
        Digest {
            name: "digest-2".into(),
            ..Default::default()
        },
        opts().after(collect),
    );
    let p = b.start().expect("start");
    add_instruments(&mut p.gateway());
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let mut g = p.gateway();
            std::thread::spawn(move || {
                stream(100 + t, per_thread, t * 1_000_000)
                    .into_iter()
                    .enumerate()
                    .map(|(k, c)| {
                        // Parked runs: a pause now and then, so the stages fall asleep.
                        if idle.is_some() && k % 5_000 == 4_999 {
                            std::thread::sleep(std::time::Duration::from_millis(3));
                        }
                        (g.submit_at(c).expect("accepted"), c)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut sent: Vec<(Sequence, Command)> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("producer"))
        .collect();
    let mut report = p.shutdown();
    assert_eq!(report.commands_processed, 2 + 4 * per_thread as u64);

    // Replay the same order on one thread.
    sent.sort_by_key(|(s, _)| *s);
    let mut m = Matcher::default();
    let mut want = Vec::new();
    let mut seq = 0;
    for i in [0, 1] {
        seq += 1;
        let c = Command::new(
            Timestamp(0),
            CommandKind::AddInstrument(InstrumentId(i).into()),
        );
        m.process(Sequence(seq), &c, &mut want);
    }
    for (s, c) in &sent {
        seq += 1;
        assert_eq!(s.0, seq, "input sequences are dense");
        m.process(*s, c, &mut want);
    }
    let c: Collect = report.take_consumer(collect).expect("collector");
    let got: Vec<Event> = c.events.iter().map(|(_, e)| *e).collect();
    assert_eq!(got.len(), want.len());
    assert!(
        got == want,
        "pipeline events differ from the single-threaded run"
    );
    assert!(c
        .events
        .iter()
        .enumerate()
        .all(|(i, (s, _))| s.0 == i as u64 + 1));
    let hash = want.iter().fold(0, fold);
    for id in [d1, d2] {
        let d: Digest = report.take_consumer(id).expect("digest");
        assert_eq!((d.count, d.gaps, d.hash), (want.len() as u64, 0, hash));
    }
    assert!(report
        .consumers
        .iter()
        .all(|c| c.sequence == want.len() as u64 && c.failure.is_none()));
    for i in [0, 1] {
        let inst = InstrumentId(i);
        assert_eq!(
            report
                .matcher
                .as_ref()
                .expect("matcher")
                .resting_orders(inst),
            m.resting_orders(inst)
        );
    }
}

#[test]
fn a_skipped_consumer_is_isolated_and_nothing_gated_after_it_runs_ahead() {
    let mut b = Pipeline::builder().input_ring(256).output_ring(256);
    let skip = ConsumerOptions::default().on_failure(FailurePolicy::Skip);
    let bad = b.add_consumer(
        Digest {
            name: "bad".into(),
            panic_at: Some(1000),
            ..Default::default()
        },
        skip.clone(),
    );
    let good = b.add_consumer(
        Digest {
            name: "good".into(),
            ..Default::default()
        },
        ConsumerOptions::default(),
    );
    let after_bad = b.add_consumer(
        Digest {
            name: "after-bad".into(),
            ..Default::default()
        },
        skip.after(bad),
    );
    let p = b.start().expect("start");
    let mut g = p.gateway();
    add_instruments(&mut g);
    let cmds = stream(7, 20_000, 0);
    for c in &cmds {
        g.submit_at(*c).expect("accepted");
    }
    // The matcher keeps going past the failure: wait until it has processed everything.
    let total = cmds.len() as u64 + 2;
    while p.status().commands_processed < total {
        std::thread::sleep(Duration::from_millis(1));
    }
    let st = p.status();
    assert_eq!(st.halted, None, "skip does not halt");
    let failure = st.consumers[bad.0]
        .failure
        .clone()
        .expect("failure is visible in status");
    assert!(
        failure.contains("deliberate failure at event 1000"),
        "{failure}"
    );
    drop(g);
    let mut report = p.shutdown();
    let events = report.events_published;
    let good: Digest = report.take_consumer(good).expect("good");
    assert_eq!((good.count, good.gaps), (events, 0));
    // The consumer gated after the failed one stopped where it stopped: it never saw an
    // event that `bad` did not process (the failing batch included).
    let after: Digest = report.take_consumer(after_bad).expect("after-bad");
    assert!(after.count < 1000, "{}", after.count);
    assert_eq!(after.gaps, 0);
    assert!(report.consumers[after_bad.0]
        .failure
        .as_deref()
        .is_some_and(|f| f.contains("upstream consumer bad failed")));
    let bad_status: &ConsumerStatus = &report.consumers[bad.0];
    assert_eq!(
        bad_status.sequence, events,
        "a skipped consumer's sequence keeps advancing"
    );
}

/// A store that reports a fatal error (not a panic) from event `fail_at` on, and the
/// highest sequence it really stored.
struct FailingStore {
    fail_at: u64,
    stored: Arc<AtomicU64>,
    broken: bool,
}

impl Consumer for FailingStore {
    fn name(&self) -> &str {
        "store"
    }
    fn on_event(&mut self, _: &Event, s: Sequence, end: bool) {
        if s.0 >= self.fail_at {
            self.broken = true;
        }
        if end && !self.broken {
            self.stored.store(s.0, Ordering::Release);
        }
    }
    fn failure(&self) -> Option<String> {
        self.broken.then(|| "disk full".to_string())
    }
}

/// Records the highest sequence it acknowledged.
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
fn a_failing_store_halts_the_pipeline_and_no_ack_passes_what_it_stored() {
    let stored = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let mut b = Pipeline::builder().input_ring(256).output_ring(256);
    let store = b.add_consumer(
        FailingStore {
            fail_at: 5000,
            stored: Arc::clone(&stored),
            broken: false,
        },
        ConsumerOptions::default(),
    );
    b.add_consumer(
        Acks(Arc::clone(&acked)),
        ConsumerOptions::default().after(store),
    );
    let p = b.start().expect("start");
    let mut g = p.gateway();
    add_instruments(&mut g);
    // Submitting goes on until the halt is seen: `submit` returns an error, never spins.
    let mut refused = None;
    for c in stream(3, 200_000, 0) {
        if let Err(e) = g.submit_at(c) {
            refused = Some(e);
            break;
        }
    }
    assert_eq!(refused, Some(SubmitError::Halted));
    assert_eq!(g.try_submit(CommandKind::Tick), Err(SubmitError::Halted));
    let st = p.status();
    let why = st.halted.clone().expect("halted");
    assert!(why.contains("store") && why.contains("disk full"), "{why}");
    drop(g);
    let report = p.shutdown();
    assert!(report.halted.is_some());
    let (stored, acked) = (
        stored.load(Ordering::Acquire),
        acked.load(Ordering::Acquire),
    );
    assert!(stored < 5000 && stored > 0, "{stored}");
    assert!(
        acked <= stored,
        "acknowledged {acked} but only {stored} was stored"
    );
}

#[test]
fn a_matcher_panic_halts_the_pipeline_and_submit_returns_an_error() {
    let acked = Arc::new(AtomicU64::new(0));
    let p = Pipeline::builder()
        .input_ring(64)
        .output_ring(64)
        .inject_matcher_panic_at(500)
        .consumer(Acks(Arc::clone(&acked)))
        .start()
        .expect("start");
    let mut g = p.gateway();
    add_instruments(&mut g);
    let mut refused = None;
    for c in stream(4, 100_000, 0) {
        if let Err(e) = g.submit_at(c) {
            refused = Some(e);
            break;
        }
    }
    assert_eq!(refused, Some(SubmitError::Halted));
    let why = p.status().halted.expect("halted");
    assert!(why.contains("matcher panicked"), "{why}");
    drop(g);
    let report = p.shutdown();
    assert!(
        report.matcher.is_none(),
        "a panicked matcher is not handed back"
    );
    assert!(acked.load(Ordering::Acquire) < 2000);
}

/// Blocks while `hold` is set.
struct Held {
    hold: Arc<AtomicBool>,
    seen: Arc<AtomicU64>,
}

impl Consumer for Held {
    fn name(&self) -> &str {
        "held"
    }
    fn on_event(&mut self, _: &Event, s: Sequence, _: bool) {
        while self.hold.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_micros(100));
        }
        self.seen.store(s.0, Ordering::Release);
    }
}

#[test]
fn a_held_consumer_back_pressures_until_released_and_nothing_is_lost() {
    let hold = Arc::new(AtomicBool::new(true));
    let seen = Arc::new(AtomicU64::new(0));
    let mut b = Pipeline::builder().input_ring(64).output_ring(64);
    b.add_consumer(
        Held {
            hold: hold.clone(),
            seen: seen.clone(),
        },
        ConsumerOptions::default(),
    );
    let other = b.add_consumer(
        Digest {
            name: "other".into(),
            ..Default::default()
        },
        ConsumerOptions::default(),
    );
    let p = b.start().expect("start");
    let mut g = p.gateway();
    add_instruments(&mut g);
    let cmds = stream(9, 5_000, 0);
    let mut accepted = 0usize;
    let mut busy = false;
    for c in &cmds {
        match g.try_submit_at(*c) {
            Ok(_) => accepted += 1,
            Err(SubmitError::Busy) => {
                busy = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(busy, "try_submit must report Busy once both rings are full");
    assert!(accepted < 64 * 3, "accepted {accepted} with 64-slot rings");
    assert_eq!(g.try_submit_at(cmds[accepted]), Err(SubmitError::Busy));
    hold.store(false, Ordering::Release);
    for c in &cmds[accepted..] {
        g.submit_at(*c).expect("accepted after release");
    }
    drop(g);
    let mut report = p.shutdown();
    assert_eq!(report.commands_processed, cmds.len() as u64 + 2);
    let d: Digest = report.take_consumer(other).expect("other");
    assert_eq!((d.count, d.gaps), (report.events_published, 0));
    assert_eq!(seen.load(Ordering::Acquire), report.events_published);
}

#[test]
fn shutdown_in_the_middle_of_a_burst_delivers_every_accepted_command() {
    let mut b = Pipeline::builder().input_ring(1024).output_ring(1024);
    let c1 = b.add_consumer(Collect::new("c1"), ConsumerOptions::default());
    let c2 = b.add_consumer(Collect::new("c2"), ConsumerOptions::default().after(c1));
    let p = b.start().expect("start");
    add_instruments(&mut p.gateway());
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..3u64)
        .map(|t| {
            let mut g = p.gateway();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut accepted = Vec::new();
                let mut id = t * 10_000_000;
                loop {
                    id += 1;
                    let o = NewOrder::limit(
                        InstrumentId(0),
                        AccountId(t),
                        OrderId(id),
                        Side::Buy,
                        Price(100),
                        Qty(1),
                    );
                    match g.submit(CommandKind::NewOrder(o)) {
                        Ok(s) => accepted.push(s.0),
                        Err(SubmitError::Closed) => return accepted,
                        Err(SubmitError::Busy | SubmitError::Halted) => {
                            unreachable!("submit waits, and nothing fails here")
                        }
                    }
                    if stop.load(Ordering::Relaxed) && accepted.len() > 1_000_000 {
                        return accepted;
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut report = p.shutdown();
    stop.store(true, Ordering::Relaxed);
    let mut accepted: Vec<u64> = producers
        .into_iter()
        .flat_map(|h| h.join().expect("producer"))
        .collect();
    accepted.extend([1, 2]);
    accepted.sort_unstable();
    assert!(accepted.len() > 1000, "the burst was running");
    for id in [c1, c2] {
        let c: Collect = report.take_consumer(id).expect("collector");
        let mut seen: Vec<u64> = c.events.iter().map(|(_, e)| e.cmd_seq().0).collect();
        seen.dedup();
        assert_eq!(
            seen, accepted,
            "every accepted command's events reached {}",
            c.name
        );
    }
}

#[test]
fn an_invalid_core_is_a_clear_error() {
    let r = Pipeline::builder()
        .matcher_core(10_000)
        .consumer(Collect::new("c"))
        .start();
    match r {
        Err(e @ PipelineError::NoSuchCore { core: 10_000, .. }) => {
            assert!(e.to_string().contains("core 10000 does not exist"), "{e}")
        }
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("a missing core must not start"),
    }
    let mut b = Pipeline::builder();
    b.add_consumer(Collect::new("c"), ConsumerOptions::default().pinned(99_999));
    assert!(matches!(
        b.start(),
        Err(PipelineError::NoSuchCore { core: 99_999, .. })
    ));
    assert!(matches!(
        Pipeline::builder()
            .input_ring(1000)
            .consumer(Collect::new("c"))
            .start(),
        Err(PipelineError::RingSize {
            ring: "input",
            size: 1000
        })
    ));
    assert!(matches!(
        Pipeline::builder().start(),
        Err(PipelineError::NoConsumers)
    ));
}

/// The ingress clock is the wall clock carried on monotonically: a pipeline started after
/// another (a restart) stamps later times than the first one did, and no gateway's stamps
/// ever go backwards.
#[test]
fn ingress_time_goes_on_across_a_restart_and_never_backwards() {
    let wall = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as u64
    };
    let start = |acked: &Arc<AtomicU64>| {
        Pipeline::builder()
            .consumer(Acks(Arc::clone(acked)))
            .start()
            .expect("start")
    };
    let acked = Arc::new(AtomicU64::new(0));
    let p = start(&acked);
    let before = wall();
    let stamps: Vec<Vec<u64>> = (0..4)
        .map(|_| {
            let g = p.gateway();
            std::thread::spawn(move || (0..20_000).map(|_| g.now().0).collect::<Vec<_>>())
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    for s in &stamps {
        assert!(
            s.windows(2).all(|w| w[0] <= w[1]),
            "a gateway's stamps went back"
        );
        assert!(s[0] + 1_000_000_000 >= before, "near the wall clock");
    }
    let last = stamps.iter().flatten().copied().max().expect("stamps");
    p.shutdown();
    let p = start(&acked);
    assert!(p.gateway().now().0 >= last, "time goes on after a restart");
    p.shutdown();
}

/// Holds consumers gated after it back to a multiple of 100 events (like a journal whose
/// durable sequence lags what it has written).
struct Lagging {
    seen: u64,
    gate: Arc<AtomicU64>,
}

impl Consumer for Lagging {
    fn name(&self) -> &str {
        "lagging"
    }
    fn on_event(&mut self, _: &Event, s: Sequence, _: bool) {
        self.seen = s.0;
    }
    fn gate_sequence(&self) -> Option<u64> {
        let g = self.seen / 100 * 100;
        self.gate.fetch_max(g, Ordering::AcqRel);
        Some(g)
    }
}

/// Checks it never sees an event past the lagging gate.
struct Behind {
    gate: Arc<AtomicU64>,
    max: u64,
    ahead: u64,
}

impl Consumer for Behind {
    fn name(&self) -> &str {
        "behind"
    }
    fn on_event(&mut self, _: &Event, s: Sequence, _: bool) {
        if s.0 > self.gate.load(Ordering::Acquire) {
            self.ahead += 1;
        }
        self.max = s.0;
    }
}

/// The names of this process's threads.
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|t| {
                std::fs::read_to_string(t.ok()?.path().join("comm"))
                    .ok()
                    .map(|s| s.trim().to_string())
            })
            .collect()
        })
        .unwrap_or_default()
}

/// Five consumers in one group run on one thread, each with its own sequence, gating and
/// failure policy: a failing one is skipped alone, the one gated after it stops where it
/// stopped, one gated after a lagging gate never runs ahead of it, the others see
/// everything in order.
#[test]
fn a_consumer_group_shares_one_thread_and_keeps_isolation_and_gating() {
    let mut b = Pipeline::builder().input_ring(256).output_ring(256);
    let grp = ConsumerOptions::default().in_group(7);
    let skip = grp.clone().on_failure(FailurePolicy::Skip);
    let bad = b.add_consumer(
        Digest {
            name: "bad".into(),
            panic_at: Some(1000),
            ..Default::default()
        },
        skip.clone(),
    );
    let good = b.add_consumer(
        Digest {
            name: "good".into(),
            ..Default::default()
        },
        grp.clone(),
    );
    let after_bad = b.add_consumer(
        Digest {
            name: "after-bad".into(),
            ..Default::default()
        },
        skip.after(bad),
    );
    let gate = Arc::new(AtomicU64::new(0));
    let lag = b.add_consumer(
        Lagging {
            seen: 0,
            gate: Arc::clone(&gate),
        },
        grp.clone(),
    );
    let behind = b.add_consumer(
        Behind {
            gate: Arc::clone(&gate),
            max: 0,
            ahead: 0,
        },
        grp.after(lag),
    );
    // One more, alone on its own thread.
    let solo = b.add_consumer(
        Digest {
            name: "solo".into(),
            ..Default::default()
        },
        ConsumerOptions::default(),
    );
    let p = b.start().expect("start");
    // A new thread names itself when it starts: wait for the names to settle.
    let mut names = thread_names();
    for _ in 0..400 {
        let named = |n: &str| names.iter().any(|x| x == n);
        if named("ringex-solo") && named("ringex-group-7") && named("ringex-matcher") {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
        names = thread_names();
    }
    assert_eq!(
        names
            .iter()
            .filter(|n| n.as_str() == "ringex-group-7")
            .count(),
        1,
        "{names:?}"
    );
    for n in [
        "ringex-good",
        "ringex-bad",
        "ringex-lagging",
        "ringex-behind",
    ] {
        assert!(
            !names.iter().any(|x| x == n),
            "{n} has no thread: {names:?}"
        );
    }
    assert!(names.iter().any(|x| x == "ringex-solo"), "{names:?}");
    let mut g = p.gateway();
    add_instruments(&mut g);
    let cmds = stream(11, 20_000, 0);
    for c in &cmds {
        g.submit_at(*c).expect("accepted");
    }
    drop(g);
    let mut report = p.shutdown();
    assert_eq!(report.halted, None, "skip does not halt");
    let events = report.events_published;
    for id in [good, solo] {
        let d: Digest = report.take_consumer(id).expect("digest");
        assert_eq!((d.count, d.gaps), (events, 0));
    }
    let after: Digest = report.take_consumer(after_bad).expect("after-bad");
    assert!(after.count < 1000 && after.gaps == 0, "{}", after.count);
    assert!(report.consumers[bad.0]
        .failure
        .as_deref()
        .is_some_and(|f| f.contains("deliberate failure at event 1000")));
    let behind: Behind = report.take_consumer(behind).expect("behind");
    assert_eq!(behind.ahead, 0, "never past the lagging gate");
    assert_eq!(behind.max, events / 100 * 100);
}
