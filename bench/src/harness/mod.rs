//! The latency harness behind `ringex bench`: the full pipeline (gateway → input ring →
//! matcher → output ring → consumers) on a chosen workload, open loop at a target rate (or
//! as fast as it goes), with HDR histograms per stage.
//!
//! **No coordinated omission**: commands are sent on a schedule, and each latency is
//! measured from the command's *intended* send time, so a stall that delays later sends is
//! charged to every command it delayed. Warm-up commands are sent first and not recorded.
//!
//! Stages measured, each from the intended send time (a monotonic clock read by the harness
//! and by thin wrappers around each consumer, never by the matcher):
//! - `ring`: the command's last event seen by a trivial probe consumer (ingress → matcher
//!   done → output ring);
//! - one histogram per consumer (journal, plug-ins, …): the consumer has handled the
//!   command's last event;
//! - `slowest`: the latest of all of the above for each command.

pub mod args;
pub mod floor;
pub mod report;
pub mod topology;

use hdrhistogram::Histogram;
use ringex_engine::pipeline::{ConsumerOptions, IdleStrategy};
use ringex_engine::workload::{ExchangeCoreWorkload, GeneratedWorkload, MultiSymbolWorkload};
use ringex_engine::{Command, Consumer, Event, Pipeline, PipelineError, Sequence};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A source of commands for the harness. Implement it to benchmark your own flow.
pub trait Workload {
    /// A short name for reports.
    fn name(&self) -> String;
    /// The setup commands (instruments, the starting book) and `n` measured commands.
    fn generate(&self, n: usize) -> GeneratedWorkload;
}

impl Workload for ExchangeCoreWorkload {
    fn name(&self) -> String {
        if self.funded {
            "exchange-core, funded".into()
        } else {
            "exchange-core".into()
        }
    }
    fn generate(&self, n: usize) -> GeneratedWorkload {
        ExchangeCoreWorkload::generate(self, n)
    }
}

impl Workload for ringex_engine::workload::DeepBookWorkload {
    fn name(&self) -> String {
        format!(
            "deep book ({}, {}–{} resting orders, sparse ids)",
            self.scenario.name(),
            self.min_depth,
            self.max_depth
        )
    }
    /// About two messages per new order: half as many new orders, cut to `n` commands.
    fn generate(&self, n: usize) -> GeneratedWorkload {
        let mut w = ringex_engine::workload::DeepBookWorkload::generate(self, n / 2 + 1);
        w.commands.truncate(n);
        w
    }
}

impl Workload for MultiSymbolWorkload {
    fn name(&self) -> String {
        format!(
            "multi-symbol ({} instruments, Zipf s={})",
            self.instruments, self.zipf_s
        )
    }
    fn generate(&self, n: usize) -> GeneratedWorkload {
        MultiSymbolWorkload::generate(self, n)
    }
}

/// A pre-made command stream (e.g. a LOBSTER replay) as a workload.
pub struct Recorded {
    /// Its name.
    pub name: String,
    /// Setup and commands.
    pub data: GeneratedWorkload,
}

impl Workload for ringex_engine::policy_workload::PolicyWorkload {
    fn name(&self) -> String {
        "policies (pro-rata with TOP, pro-rata, FIFO with icebergs; stops)".into()
    }

    fn generate(&self, n: usize) -> GeneratedWorkload {
        ringex_engine::policy_workload::PolicyWorkload::generate(self, n)
    }
}

/// Another workload with its order ids relabelled (`ringex bench --ids`).
pub struct Relabelled {
    /// The flow.
    pub inner: Box<dyn Workload>,
    /// Its ids' new order.
    pub order: ringex_engine::id_order::IdOrder,
}

impl Workload for Relabelled {
    fn name(&self) -> String {
        format!("{}, ids {}", self.inner.name(), self.order.name())
    }
    fn generate(&self, n: usize) -> GeneratedWorkload {
        ringex_engine::id_order::relabel(&self.inner.generate(n), self.order, 1)
    }
}

impl Workload for Recorded {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn generate(&self, n: usize) -> GeneratedWorkload {
        let mut d = self.data.clone();
        d.commands.truncate(n);
        d
    }
}

/// Shared clock and schedule: intended send time of each command, by input sequence.
pub struct Schedule {
    epoch: Instant,
    /// Input sequence of the first scheduled command.
    base: u64,
    /// Intended send time (ns since epoch) of command `base + i`.
    intended: Vec<AtomicU64>,
    /// Commands before this input sequence are warm-up (not recorded).
    record_from: u64,
}

impl Schedule {
    #[inline]
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Latency of command `cmd_seq`, done at `now`, if it is recorded.
    #[inline]
    fn latency(&self, cmd_seq: u64, now: u64) -> Option<u64> {
        if cmd_seq < self.record_from {
            return None;
        }
        let t = self
            .intended
            .get(cmd_seq.checked_sub(self.base)? as usize)?
            .load(Ordering::Relaxed);
        Some(now.saturating_sub(t).max(1))
    }
}

fn histogram() -> Histogram<u64> {
    // 1 ns .. 100 s, 3 significant digits: constant bounds the crate accepts.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid constant bounds")
}

/// Records, per command, when the wrapped consumer's work for it is really done: at the end
/// of the batch holding its last event (after the batch's flush), and for a consumer with a
/// gate (the journal) only once its gate covers the command (after the fsync that makes it
/// durable).
pub struct Timed<C: Consumer> {
    inner: C,
    name: String,
    schedule: Arc<Schedule>,
    hist: Histogram<u64>,
    /// Per command, the latest done latency over all stages (the `slowest` stage).
    done: Arc<Mutex<Vec<u64>>>,
    done_local: Vec<u64>,
    /// Where the histogram goes at shutdown, with this stage's position.
    results: Arc<Mutex<Vec<(usize, StageResult)>>>,
    position: usize,
    /// (last event sequence, command sequence) of commands handled but not yet done.
    pending: std::collections::VecDeque<(u64, u64)>,
}

impl<C: Consumer> Timed<C> {
    /// Stamps every pending command the wrapped consumer is done with. They are all done
    /// now (the batch's flush or the covering fsync has returned): one clock read for all.
    fn stamp_done(&mut self) {
        let gate = self.inner.gate_sequence().unwrap_or(u64::MAX);
        if self.pending.front().is_none_or(|&(ev, _)| ev > gate) {
            return;
        }
        let now = self.schedule.now();
        while let Some(&(ev, c)) = self.pending.front() {
            if ev > gate {
                break;
            }
            self.pending.pop_front();
            if let Some(l) = self.schedule.latency(c, now) {
                let _ = self.hist.record(l);
                if let Some(slot) = self.done_local.get_mut((c - self.schedule.base) as usize) {
                    *slot = l;
                }
            }
        }
    }

    fn new(inner: C, sh: &Shared, position: usize) -> Self {
        let name = inner.name().to_string();
        Timed {
            inner,
            name,
            schedule: Arc::clone(&sh.schedule),
            hist: histogram(),
            done: Arc::clone(&sh.done),
            done_local: Vec::new(),
            results: Arc::clone(&sh.results),
            position,
            pending: std::collections::VecDeque::with_capacity(1 << 16),
        }
    }
}

impl<C: Consumer> Consumer for Timed<C> {
    fn name(&self) -> &str {
        &self.name
    }
    fn on_start_with(&mut self, ctx: &ringex_engine::pipeline::ConsumerContext) {
        self.done_local = vec![0; self.schedule.intended.len()];
        self.inner.on_start_with(ctx);
    }
    #[inline]
    fn on_event(&mut self, e: &Event, s: Sequence, end: bool) {
        self.inner.on_event(e, s, end);
        if e.is_last_of_command() {
            self.pending.push_back((s.0, e.cmd_seq().0));
        }
        if end {
            self.stamp_done();
        }
    }
    fn timeout(&self) -> Option<std::time::Duration> {
        self.inner.timeout()
    }
    fn on_timeout(&mut self) {
        self.inner.on_timeout();
        self.stamp_done();
    }
    fn gate_sequence(&self) -> Option<u64> {
        self.inner.gate_sequence()
    }
    fn lookahead(&self) -> usize {
        self.inner.lookahead()
    }
    fn prefetch(&mut self, e: &Event) {
        self.inner.prefetch(e);
    }
    fn failure(&self) -> Option<String> {
        self.inner.failure()
    }
    fn on_shutdown(&mut self) {
        self.inner.on_shutdown();
        self.stamp_done();
        if let Ok(mut d) = self.done.lock() {
            if d.len() < self.done_local.len() {
                d.resize(self.done_local.len(), 0);
            }
            for (a, b) in d.iter_mut().zip(&self.done_local) {
                *a = (*a).max(*b);
            }
        }
        if let Ok(mut r) = self.results.lock() {
            let hist = std::mem::replace(&mut self.hist, histogram());
            r.push((
                self.position,
                StageResult {
                    name: self.name.clone(),
                    hist,
                },
            ));
        }
    }
}

/// What the timing wrappers share.
pub struct Shared {
    schedule: Arc<Schedule>,
    done: Arc<Mutex<Vec<u64>>>,
    results: Arc<Mutex<Vec<(usize, StageResult)>>>,
}

/// The probe: a trivial consumer that only observes when events appear on the ring.
pub struct Probe;

impl Consumer for Probe {
    fn name(&self) -> &str {
        "ring"
    }
    #[inline]
    fn on_event(&mut self, _: &Event, _: Sequence, _: bool) {}
}

/// Harness settings.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Measured commands.
    pub commands: usize,
    /// Warm-up commands (sent first, not recorded).
    pub warmup: usize,
    /// Commands per second (open loop), or `None` for as fast as possible.
    pub rate: Option<u64>,
    /// Ring sizes.
    pub ring: usize,
    /// Matcher core.
    pub matcher_core: Option<usize>,
    /// Consumer cores, in order (probe first).
    pub consumer_cores: Vec<usize>,
    /// Idle strategy of the matcher and consumers.
    pub idle: Option<IdleStrategy>,
    /// Stages (the probe first, then the consumers in order) that share one thread, a
    /// consumer group; the others get a thread each. Empty: a thread each.
    pub grouped: Vec<bool>,
}

/// One stage's result.
pub struct StageResult {
    /// Stage name.
    pub name: String,
    /// Its latency histogram (ns).
    pub hist: Histogram<u64>,
}

/// What a run measured.
pub struct BenchResult {
    /// Commands per second achieved over the measured part.
    pub commands_per_sec: f64,
    /// Events per second.
    pub events_per_sec: f64,
    /// Measured commands.
    pub commands: u64,
    /// Per stage, the probe first and `slowest` last.
    pub stages: Vec<StageResult>,
}

/// A consumer to put in the pipeline (wrapped with a timer); it may gate itself after
/// consumers added before it (by their position in the list, 1-based; 0 is the probe).
pub type AddConsumer = Box<
    dyn FnOnce(
        &mut ringex_engine::PipelineBuilder,
        &Shared,
        usize,
        ConsumerOptions,
    ) -> ringex_engine::ConsumerId,
>;

/// Wraps a consumer for the harness.
pub fn timed<C: Consumer>(c: C) -> AddConsumer {
    Box::new(move |b, sh, position, opts| b.add_consumer(Timed::new(c, sh, position), opts))
}

/// Runs the full pipeline on `work` with `consumers` and measures every stage.
pub fn run(
    work: &GeneratedWorkload,
    consumers: Vec<AddConsumer>,
    cfg: &BenchConfig,
    mut progress: impl FnMut(u64),
) -> Result<BenchResult, PipelineError> {
    let setup = work.setup.len() as u64;
    let total = cfg.warmup + cfg.commands;
    let cmds: Vec<Command> = work.commands.iter().cycle().take(total).copied().collect();
    let schedule = Arc::new(Schedule {
        epoch: Instant::now(),
        base: setup + 1,
        intended: (0..cmds.len()).map(|_| AtomicU64::new(0)).collect(),
        record_from: setup + 1 + cfg.warmup as u64,
    });
    let sh = Shared {
        schedule: Arc::clone(&schedule),
        done: Arc::new(Mutex::new(Vec::new())),
        results: Arc::new(Mutex::new(Vec::new())),
    };
    let p = start_pipeline(cfg, consumers, &sh)?;
    let mut g = p.gateway();
    for c in &work.setup {
        let _ = g.submit_at(*c);
    }
    while p.status().commands_processed < setup {
        std::thread::yield_now();
    }
    let period = cfg.rate.map(|r| 1e9 / r as f64);
    let start = schedule.now();
    let mut measured_start = start;
    let mut events_at_measure = 0;
    let mut last_read = start;
    for (i, c) in cmds.iter().enumerate() {
        if i == cfg.warmup {
            measured_start = schedule.now();
            events_at_measure = p.status().events_published;
        }
        let intended = match period {
            Some(per) => {
                let t = start + (i as f64 * per) as u64;
                loop {
                    let now = schedule.now();
                    if now >= t {
                        break;
                    }
                    // Yield rather than spin: on a machine with fewer cores than threads a
                    // spinning sender takes a core from the stages it measures. Latency is
                    // measured from the intended time, so a late send is charged, not hidden.
                    let _ = now;
                    std::thread::yield_now();
                }
                t
            }
            // Closed loop: the send time, read once per 8 commands (a clock read costs as
            // much as a submit on this VM). A command sent after the read is charged from
            // it: latencies err long by at most 8 submits, never short.
            None => {
                if i % 8 == 0 {
                    last_read = schedule.now();
                }
                last_read
            }
        };
        schedule.intended[i].store(intended, Ordering::Relaxed);
        let _ = g.submit_at(*c);
        if i % 65536 == 0 {
            progress(i as u64);
        }
    }
    wait_until_drained(&p, setup + cmds.len() as u64);
    let secs = (schedule.now() - measured_start) as f64 / 1e9;
    drop(g);
    let report = p.shutdown();
    progress(total as u64);
    let events = report.events_published - events_at_measure;
    let stages = collect_stages(&sh, cfg.warmup);
    Ok(BenchResult {
        commands_per_sec: cfg.commands as f64 / secs,
        events_per_sec: events as f64 / secs,
        commands: cfg.commands as u64,
        stages,
    })
}

/// The pipeline under test: rings, matcher core and idling from `cfg`, the ring probe and
/// each consumer wrapped to stamp its latencies, pinned, idled and grouped as `cfg` says.
fn start_pipeline(
    cfg: &BenchConfig,
    consumers: Vec<AddConsumer>,
    sh: &Shared,
) -> Result<Pipeline, PipelineError> {
    let mut b = Pipeline::builder()
        .input_ring(cfg.ring)
        .output_ring(cfg.ring);
    if let Some(c) = cfg.matcher_core {
        b = b.matcher_core(c);
    }
    if let Some(i) = cfg.idle {
        b = b.matcher_idle(i).gateway_idle(i);
    }
    let opts = |k: usize| {
        let mut o = ConsumerOptions::default();
        if let Some(&c) = cfg.consumer_cores.get(k) {
            o = o.pinned(c);
        }
        if let Some(i) = cfg.idle {
            o = o.idle(i);
        }
        if cfg.grouped.get(k).copied().unwrap_or(false) {
            o = o.in_group(0);
        }
        o
    };
    b.add_consumer(Timed::new(Probe, sh, 0), opts(0));
    for (k, add) in consumers.into_iter().enumerate() {
        add(&mut b, sh, k + 1, opts(k + 1));
    }
    b.start()
}

/// Waits until every command has been processed and every consumer has seen every event.
fn wait_until_drained(p: &Pipeline, all: u64) {
    loop {
        let st = p.status();
        if st.commands_processed >= all
            && st
                .consumers
                .iter()
                .all(|c| c.sequence >= st.events_published)
        {
            break;
        }
        std::thread::yield_now();
    }
}

/// Each stage's histogram in registration order, then `slowest`: per command, the latest
/// of every stage (warm-up commands left out).
fn collect_stages(sh: &Shared, warmup: usize) -> Vec<StageResult> {
    let mut stages: Vec<(usize, StageResult)> = match sh.results.lock() {
        Ok(mut r) => r.drain(..).collect(),
        Err(_) => Vec::new(),
    };
    stages.sort_by_key(|s| s.0);
    let mut stages: Vec<StageResult> = stages.into_iter().map(|s| s.1).collect();
    let mut slowest = histogram();
    if let Ok(d) = sh.done.lock() {
        for &l in d.iter().skip(warmup) {
            if l > 0 {
                let _ = slowest.record(l);
            }
        }
    }
    stages.push(StageResult {
        name: "slowest".into(),
        hist: slowest,
    });
    stages
}
