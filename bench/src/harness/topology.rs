//! Throughput of the pipeline topologies, with baselines built the same way on
//! `crossbeam-channel`, so that the ring's contribution is measured in the same run.
//!
//! - [`pipeline_one_to_four`]: 1 producer → input ring → matcher → output ring → 4
//!   consumers, on a pre-generated exchange-core stream; and
//!   [`crossbeam_pipeline_one_to_four`], the same topology on bounded channels, batched the
//!   way the ringex matcher batches: it takes up to 64 waiting commands at a time and sends
//!   their events as one message to each of four channels, one per consumer.
//! - [`ring_one_to_four`]: the ring alone with trivial handlers and 64-byte events:
//!   1 producer → input ring → 1 pass-through stage → output ring → 4 parallel consumers;
//!   closed loop (as fast as it goes) or open loop at a fixed rate, recording latency from
//!   each event's intended send time into HDR histograms.

use crossbeam_channel::bounded;
use disruptor::{EventPoller, Polling, Producer};
use hdrhistogram::Histogram;
use ringex_engine::pipeline::{ConsumerOptions, IdleStrategy};
use ringex_engine::{Command, Consumer, Event, Matcher, Pipeline, Sequence};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

/// Stage placement: pin the stages to cores or leave them to the scheduler.
#[derive(Clone, Debug, Default)]
pub struct Placement {
    /// Core of the matcher / pass-through stage.
    pub stage_core: Option<usize>,
    /// Cores of the consumers, in order (fewer than consumers: the rest are unpinned).
    pub consumer_cores: Vec<usize>,
    /// Idle strategy of every stage (default: busy spin when pinned, back off otherwise).
    pub idle: Option<IdleStrategy>,
}

/// Counts events (a trivial consumer).
pub struct CountingConsumer {
    name: String,
    /// Events seen.
    pub count: u64,
    sum: u64,
}

impl CountingConsumer {
    /// A counter named `name`.
    pub fn new(name: String) -> Self {
        CountingConsumer {
            name,
            count: 0,
            sum: 0,
        }
    }
}

impl Consumer for CountingConsumer {
    fn name(&self) -> &str {
        &self.name
    }
    #[inline]
    fn on_event(&mut self, e: &Event, _: Sequence, _: bool) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(e.cmd_seq().0);
    }
    fn on_shutdown(&mut self) {
        black_box(self.sum);
    }
}

/// One throughput measurement.
#[derive(Clone, Copy, Debug)]
pub struct Throughput {
    /// Items pushed through (commands or events).
    pub items: u64,
    /// Events that reached each consumer.
    pub events: u64,
    /// Wall time in seconds.
    pub seconds: f64,
}

impl Throughput {
    /// Items per second.
    pub fn per_second(&self) -> f64 {
        self.items as f64 / self.seconds
    }
}

/// The ringex pipeline, 1 producer → matcher → 4 consumers, over `setup` then `commands`
/// (only `commands` are timed, from the first submit until every consumer has seen every
/// event).
pub fn pipeline_one_to_four(
    setup: &[Command],
    commands: &[Command],
    ring: usize,
    place: &Placement,
) -> Result<Throughput, ringex_engine::PipelineError> {
    let mut b = Pipeline::builder().input_ring(ring).output_ring(ring);
    if let Some(c) = place.stage_core {
        b = b.matcher_core(c);
    }
    if let Some(i) = place.idle {
        b = b.matcher_idle(i).gateway_idle(i);
    }
    let ids: Vec<_> = (0..4)
        .map(|k| {
            let mut o = ConsumerOptions::default();
            if let Some(&c) = place.consumer_cores.get(k) {
                o = o.pinned(c);
            }
            if let Some(i) = place.idle {
                o = o.idle(i);
            }
            b.add_consumer(CountingConsumer::new(format!("count-{k}")), o)
        })
        .collect();
    let p = b.start()?;
    let mut g = p.gateway();
    for c in setup {
        let _ = g.submit_at(*c);
    }
    while p.status().commands_processed < setup.len() as u64 {
        std::hint::spin_loop();
    }
    let before = p.status().events_published;
    let t = Instant::now();
    for c in commands {
        let _ = g.submit_at(*c);
    }
    let total = (setup.len() + commands.len()) as u64;
    loop {
        let st = p.status();
        if st.commands_processed == total
            && st
                .consumers
                .iter()
                .all(|c| c.sequence == st.events_published)
        {
            break;
        }
        std::thread::yield_now();
    }
    let seconds = t.elapsed().as_secs_f64();
    drop(g);
    let mut report = p.shutdown();
    let events = report.events_published - before;
    for id in ids {
        let c: Option<CountingConsumer> = report.take_consumer(id);
        debug_assert!(c.is_some_and(|c| c.count == report.events_published));
    }
    Ok(Throughput {
        items: commands.len() as u64,
        events,
        seconds,
    })
}

/// The same topology on `crossbeam-channel` bounded channels.
pub fn crossbeam_pipeline_one_to_four(
    setup: &[Command],
    commands: &[Command],
    cap: usize,
) -> Throughput {
    let (in_tx, in_rx) = bounded::<Command>(cap);
    let mut outs = Vec::new();
    let mut consumers = Vec::new();
    // Batches of the events of up to 64 commands: as many slots' worth as the ring has.
    let batches = (cap / 64).max(1);
    for _ in 0..4 {
        let (tx, rx) = bounded::<Arc<Vec<Event>>>(batches);
        outs.push(tx);
        consumers.push(std::thread::spawn(move || {
            let mut n = 0u64;
            let mut sum = 0u64;
            for batch in rx {
                for e in batch.iter() {
                    n += 1;
                    sum = sum.wrapping_add(e.cmd_seq().0);
                }
            }
            black_box(sum);
            n
        }));
    }
    let matcher = std::thread::spawn(move || {
        // The same matcher as the pipeline's default (room for 4M id gaps), so only the transport
        // differs.
        let mut m = Matcher::with_capacity(ringex_engine::MatcherCapacity {
            ids: 1 << 22,
            ..Default::default()
        });
        let mut seq = 0u64;
        while let Ok(first) = in_rx.recv() {
            // Like the ringex matcher: every command waiting (up to 64), one batch out.
            let mut events = Vec::with_capacity(128);
            let mut next = Some(first);
            let mut taken = 0;
            while let Some(c) = next {
                seq += 1;
                m.process(Sequence(seq), &c, &mut events);
                taken += 1;
                next = if taken < 64 {
                    in_rx.try_recv().ok()
                } else {
                    None
                };
            }
            let batch = Arc::new(events);
            for tx in &outs {
                let _ = tx.send(Arc::clone(&batch));
            }
        }
    });
    for c in setup {
        let _ = in_tx.send(*c);
    }
    let t = Instant::now();
    for c in commands {
        let _ = in_tx.send(*c);
    }
    drop(in_tx);
    let _ = matcher.join();
    let counts: Vec<u64> = consumers
        .into_iter()
        .map(|h| h.join().unwrap_or(0))
        .collect();
    let seconds = t.elapsed().as_secs_f64();
    Throughput {
        items: commands.len() as u64,
        events: counts.first().copied().unwrap_or(0),
        seconds,
    }
}

/// A 64-byte ring slot for the ring-only topology.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
pub struct Slot {
    /// Intended send time (ns since the run's epoch), or a counter in closed loop.
    pub t: u64,
    /// Payload.
    pub v: [u64; 7],
}

/// What the ring-only topology measured.
pub struct RingResult {
    /// Throughput (events published by the producer).
    pub throughput: Throughput,
    /// Latency from intended send time to each consumer's handling, all consumers merged
    /// (open loop only).
    pub latency: Option<Histogram<u64>>,
}

fn pin(core: Option<usize>) {
    if let Some(id) = core {
        if let Ok(c) = ringex_engine::pipeline::validate_core(id) {
            core_affinity::set_for_current(c);
        }
    }
}

/// The ring alone: producer → ring A → pass-through stage → ring B → 4 consumers.
/// `rate` = `None`: closed loop, batches of up to 64; `Some(r)`: open loop at `r` events/s.
pub fn ring_one_to_four(
    events: u64,
    ring: usize,
    rate: Option<u64>,
    place: &Placement,
) -> RingResult {
    let idle = place
        .idle
        .unwrap_or(IdleStrategy::default_for(place.stage_core.is_some()));
    let epoch = Arc::new(Instant::now());
    let (stage_poller, b) =
        disruptor::build_single_producer(ring, Slot::default, disruptor::BusySpin)
            .new_event_poller();
    let mut input = b.build();
    let mut out_b = disruptor::build_single_producer(ring, Slot::default, disruptor::BusySpin)
        .with_multi_consumer();
    let mut pollers: Vec<EventPoller<Slot, disruptor::SingleProducerBarrier>> = Vec::new();
    for _ in 0..4 {
        let (p, nb) = out_b.new_event_poller();
        pollers.push(p);
        out_b = nb;
    }
    let output = out_b.build();
    let stage = spawn_relay(stage_poller, output, place.stage_core, idle);
    let consumers: Vec<_> = pollers
        .into_iter()
        .enumerate()
        .map(|(k, poller)| {
            let core = place.consumer_cores.get(k).copied();
            spawn_counter(poller, core, idle, Arc::clone(&epoch), rate.is_some())
        })
        .collect();
    let t = Instant::now();
    match rate {
        None => send_closed(&mut input, events, idle),
        Some(r) => send_open(&mut input, events, r, &epoch),
    }
    drop(input);
    let _ = stage.join();
    let mut merged: Option<Histogram<u64>> = None;
    let mut count = 0;
    for c in consumers {
        if let Ok((n, h)) = c.join() {
            count = n;
            if let Some(h) = h.filter(|h| !h.is_empty()) {
                match merged.as_mut() {
                    Some(m) => {
                        let _ = m.add(&h);
                    }
                    None => merged = Some(h),
                }
            }
        }
    }
    let seconds = t.elapsed().as_secs_f64();
    RingResult {
        throughput: Throughput {
            items: events,
            events: count,
            seconds,
        },
        latency: merged,
    }
}

type RingPoller = EventPoller<Slot, disruptor::SingleProducerBarrier>;

/// The pass-through stage: copies each batch it takes from the input ring into the output
/// ring.
fn spawn_relay(
    mut stage_poller: RingPoller,
    mut output: disruptor::SingleProducer<Slot, disruptor::MultiConsumerBarrier>,
    stage_core: Option<usize>,
    idle: IdleStrategy,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        pin(stage_core);
        let mut idler = idle.idler();
        let mut buf: Vec<Slot> = Vec::with_capacity(1024);
        loop {
            match stage_poller.take(1024) {
                Ok(mut g) => {
                    idler.reset();
                    buf.clear();
                    buf.extend((&mut g).copied());
                    drop(g);
                    while output
                        .try_batch_publish(buf.len(), |it| {
                            for (s, e) in it.zip(&buf) {
                                *s = *e;
                            }
                        })
                        .is_err()
                    {
                        idler.idle();
                    }
                }
                Err(Polling::NoEvents) => idler.idle(),
                Err(Polling::Shutdown) => break,
            }
        }
    })
}

/// A consumer that counts (and, `open` loop, records each slot's latency from its stamp).
fn spawn_counter(
    mut poller: RingPoller,
    core: Option<usize>,
    idle: IdleStrategy,
    epoch: Arc<Instant>,
    open: bool,
) -> std::thread::JoinHandle<(u64, Option<Histogram<u64>>)> {
    std::thread::spawn(move || {
        pin(core);
        let mut idler = idle.idler();
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).ok();
        let mut n = 0u64;
        let mut sum = 0u64;
        loop {
            match poller.poll() {
                Ok(mut g) => {
                    idler.reset();
                    let now = if open {
                        epoch.elapsed().as_nanos() as u64
                    } else {
                        0
                    };
                    for s in &mut g {
                        n += 1;
                        sum = sum.wrapping_add(s.v[0]);
                        if open {
                            if let Some(h) = h.as_mut() {
                                let _ = h.record(now.saturating_sub(s.t).max(1));
                            }
                        }
                    }
                }
                Err(Polling::NoEvents) => idler.idle(),
                Err(Polling::Shutdown) => break,
            }
        }
        black_box(sum);
        (n, h)
    })
}

/// Closed loop: `events` slots in batches of up to 64, as fast as the ring takes them.
fn send_closed<P: Producer<Slot>>(input: &mut P, events: u64, idle: IdleStrategy) {
    let mut idler = idle.idler();
    let mut i = 0u64;
    while i < events {
        let n = (events - i).min(64) as usize;
        match input.try_batch_publish(n, |it| {
            for (k, s) in it.enumerate() {
                s.t = i + k as u64;
                s.v[0] = i + k as u64;
            }
        }) {
            Ok(_) => {
                i += n as u64;
                idler.reset();
            }
            Err(_) => idler.idle(),
        }
    }
}

/// Open loop: one slot at each intended time at `rate` per second, stamped with it.
fn send_open<P: Producer<Slot>>(input: &mut P, events: u64, rate: u64, epoch: &Instant) {
    let start = epoch.elapsed().as_nanos() as u64;
    let period = 1_000_000_000f64 / rate as f64;
    for i in 0..events {
        let intended = start + (i as f64 * period) as u64;
        // Wait for the intended time without holding a core the stages need.
        while (epoch.elapsed().as_nanos() as u64) < intended {
            std::thread::yield_now();
        }
        while input
            .try_publish(|s| {
                s.t = intended;
                s.v[0] = i;
            })
            .is_err()
        {
            std::hint::spin_loop();
        }
    }
}
