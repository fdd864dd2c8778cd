//! The pipeline: wiring only. Gateways → input ring → matcher thread → output ring →
//! consumer threads.
//!
//! ```text
//!  Gateway::submit ──▶ input ring (disruptor, multi-producer, Command slots)
//!                          │ EventPoller
//!                          ▼
//!                      matcher thread (pinned optionally; owns every book)
//!                          │ try_batch_publish(events of one command)
//!                          ▼
//!                      output ring (disruptor, single producer, Event slots)
//!                          │ one EventPoller per consumer, all reading in parallel;
//!                          ▼ a consumer may be gated after others (a DAG)
//!                      consumer threads (journal, risk, market data, plug-ins, …)
//! ```
//!
//! Every stage runs on a thread the pipeline owns and polls its ring with the disruptor's
//! `EventPoller`, so pinning (validated core ids), idle strategies, panic isolation and
//! status are all under the pipeline's control. Everything is wired in
//! [`PipelineBuilder::start`].

mod gateway;
mod idle;

pub use gateway::{Gateway, SubmitError};
pub use idle::{IdleStrategy, Idler};

use crate::command::Command;
use crate::consumer::Consumer;
use crate::event::Event;
use crate::matcher::Matcher;
use crate::types::{Sequence, Timestamp};
use crossbeam_utils::CachePadded;
use disruptor::{
    EventPoller, MultiConsumerBarrier, MultiProducerBarrier, Polling, Producer, SingleProducer,
    SingleProducerBarrier,
};
use gateway::GatewayShared;
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Why a pipeline could not be built or started. Each variant says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A core id that this machine does not have.
    #[error("core {core} does not exist on this machine (available cores: {available:?}); pick one of those or leave the stage unpinned")]
    NoSuchCore {
        /// The core asked for.
        core: usize,
        /// The cores this process may run on.
        available: Vec<usize>,
    },
    /// Ring sizes must be powers of two, at least 2.
    #[error("{ring} ring size {size} must be a power of two (e.g. 65536)")]
    RingSize {
        /// Which ring.
        ring: &'static str,
        /// The size asked for.
        size: usize,
    },
    /// The output ring needs at least one consumer to free its slots.
    #[error("add at least one consumer: the output ring needs a reader")]
    NoConsumers,
    /// A consumer was gated after an id that is not an earlier consumer.
    #[error("consumer {consumer} is gated after {after:?}, which is not an earlier consumer of this builder")]
    BadGate {
        /// The consumer's name.
        consumer: String,
        /// The bad dependency.
        after: ConsumerId,
    },
    /// A thread could not be spawned.
    #[error("could not spawn thread {name}: {source}")]
    Spawn {
        /// The thread.
        name: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Identifies a consumer registered with a [`PipelineBuilder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConsumerId(pub usize);

/// What happens when a consumer fails (panics, or reports [`Consumer::failure`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Halt the whole pipeline: the matcher takes no more commands, gateways return
    /// [`SubmitError::Halted`], `status().halted` says which stage failed and why. The
    /// default: nothing can then be acknowledged past what the consumer really did.
    #[default]
    Halt,
    /// Skip the consumer from now on; the rest of the pipeline runs (for consumers whose
    /// loss is acceptable, such as a statistics tap). Consumers gated after it fail too.
    Skip,
}

/// How a consumer runs.
#[derive(Clone, Debug, Default)]
pub struct ConsumerOptions {
    /// What happens when it fails.
    pub on_failure: FailurePolicy,
    /// Pin the consumer's thread to this core.
    pub core: Option<usize>,
    /// How it waits for events (default: busy spin when pinned, back off otherwise).
    pub idle: Option<IdleStrategy>,
    /// Consumers that must have processed an event before this one sees it.
    pub after: Vec<ConsumerId>,
    /// At most this many events per batch (`end_of_batch` comes at least this often);
    /// default: everything available.
    pub max_batch: Option<u64>,
    /// Consumers with the same group share one thread (see [`ConsumerOptions::in_group`]);
    /// `None`: a thread of its own.
    pub group: Option<u32>,
}

impl ConsumerOptions {
    /// Pinned to `core`.
    pub fn pinned(mut self, core: usize) -> Self {
        self.core = Some(core);
        self
    }

    /// With this idle strategy.
    pub fn idle(mut self, idle: IdleStrategy) -> Self {
        self.idle = Some(idle);
        self
    }

    /// Batches of at most `n` events (bounds the work between two flushes).
    pub fn max_batch(mut self, n: u64) -> Self {
        self.max_batch = Some(n.max(1));
        self
    }

    /// With this failure policy (default [`FailurePolicy::Halt`]).
    pub fn on_failure(mut self, policy: FailurePolicy) -> Self {
        self.on_failure = policy;
        self
    }

    /// Gated after `other` (e.g. client acknowledgements after the journal).
    pub fn after(mut self, other: ConsumerId) -> Self {
        self.after.push(other);
        self
    }

    /// Runs on the thread of consumer group `g`: the group's consumers are called in
    /// registration order, each for its own batch, on one thread (pinned and idling as
    /// the group's first consumer says). Each keeps its own sequence, gating and failure
    /// policy: a consumer that fails is stopped or skipped alone, and one gated after
    /// another (in the group or not) never runs ahead of it. Fewer threads than
    /// consumers: for machines with fewer cores than stages.
    pub fn in_group(mut self, g: u32) -> Self {
        self.group = Some(g);
        self
    }
}

/// What a consumer gets when it starts.
pub struct ConsumerContext {
    gateway: Gateway,
    clocks: Arc<EventClocks>,
}

/// The engine clock after each command, published by the matcher beside the output ring
/// (events carry no time): one slot per ring slot, written for the last event of each
/// command before that event is published.
pub(crate) struct EventClocks {
    slots: Box<[AtomicU64]>,
    mask: u64,
}

impl EventClocks {
    fn new(size: usize) -> Self {
        EventClocks {
            slots: (0..size).map(|_| AtomicU64::new(0)).collect(),
            mask: size as u64 - 1,
        }
    }

    #[inline]
    fn set(&self, event_seq: u64, clock: Timestamp) {
        self.slots[(event_seq & self.mask) as usize].store(clock.0, Ordering::Relaxed);
    }

    #[inline]
    fn get(&self, event_seq: u64) -> Timestamp {
        Timestamp(self.slots[(event_seq & self.mask) as usize].load(Ordering::Relaxed))
    }
}

impl ConsumerContext {
    /// The engine clock after the command whose **last** event has output sequence `seq`
    /// ([`Event::is_last_of_command`]). Valid only while that event is being handled (from
    /// `on_event`, or before the end of its batch): the slot is reused when the ring wraps.
    /// The journal writes it into each record and snapshots into the state, so recovery
    /// carries the clock on.
    pub fn clock_at(&self, seq: Sequence) -> Timestamp {
        self.clocks.get(seq.0)
    }

    /// A handle that reads [`ConsumerContext::clock_at`] from the consumer's own state.
    pub fn clocks(&self) -> ClockReader {
        ClockReader(Arc::clone(&self.clocks))
    }

    /// A gateway into the input ring, for consumers that submit commands themselves (the
    /// risk updater's kill switch). Submits after shutdown began return
    /// [`SubmitError::Closed`].
    pub fn gateway(&self) -> Gateway {
        self.gateway.clone()
    }
}

/// Reads the engine clock published beside the output ring (see
/// [`ConsumerContext::clock_at`]).
#[derive(Clone)]
pub struct ClockReader(Arc<EventClocks>);

impl ClockReader {
    /// The engine clock after the command whose last event is `seq` (valid while that
    /// event is being handled).
    #[inline]
    pub fn at(&self, seq: Sequence) -> Timestamp {
        self.0.get(seq.0)
    }
}

impl std::fmt::Debug for ClockReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClockReader")
    }
}

/// Live counters of one consumer.
struct ConsumerCell {
    name: String,
    sequence: CachePadded<AtomicU64>,
    /// How far consumers gated after this one may read (≤ `sequence`).
    gate: CachePadded<AtomicU64>,
    /// Set when its thread is done (no more progress will come).
    finished: AtomicBool,
    failed: AtomicBool,
    failure: Mutex<Option<String>>,
}

/// The message of a panic payload.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-string payload".to_string())
}

impl ConsumerCell {
    /// Records a failure (the first one wins) and marks the consumer failed. The flag is set
    /// before the consumer's sequence moves on, so a consumer gated after it that sees the
    /// new sequence also sees the failure.
    fn fail(&self, reason: String) {
        tracing::error!(consumer = %self.name, "consumer failed: {reason}");
        if let Ok(mut f) = self.failure.lock() {
            f.get_or_insert(reason);
        }
        self.failed.store(true, Ordering::Release);
    }

    fn failure(&self) -> String {
        self.failure
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_default()
    }
}

/// Counters shared between the stages and [`Pipeline::status`].
struct Shared {
    commands: CachePadded<AtomicU64>,
    published: CachePadded<AtomicU64>,
    drain: AtomicBool,
    consumers: Vec<Arc<ConsumerCell>>,
    input_capacity: usize,
    output_capacity: usize,
    gateway: Arc<GatewayShared>,
    halt_reason: Mutex<Option<String>>,
    /// The engine clock after each command, beside the output ring.
    clocks: Arc<EventClocks>,
}

impl Shared {
    /// Halts the pipeline: gateways refuse, the matcher stops taking commands.
    fn halt(&self, reason: String) {
        tracing::error!("pipeline halted: {reason}");
        if let Ok(mut r) = self.halt_reason.lock() {
            r.get_or_insert(reason);
        }
        self.gateway.halted.store(true, Ordering::Release);
    }

    #[inline]
    fn halted(&self) -> bool {
        self.gateway.halted.load(Ordering::Relaxed)
    }
}

/// One consumer's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerStatus {
    /// Its name.
    pub name: String,
    /// The last output sequence it has processed (0: none yet).
    pub sequence: u64,
    /// Set once it panicked: what happened. It is skipped from then on.
    pub failure: Option<String>,
}

/// A point-in-time view of the pipeline, read without stopping anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineStatus {
    /// Commands the matcher has processed (the last input sequence).
    pub commands_processed: u64,
    /// Events the matcher has published (the last output sequence).
    pub events_published: u64,
    /// Slots of the input ring.
    pub input_capacity: usize,
    /// Slots of the output ring.
    pub output_capacity: usize,
    /// Every consumer, in registration order.
    pub consumers: Vec<ConsumerStatus>,
    /// Set once the pipeline halted on a failure: which stage and why.
    pub halted: Option<String>,
}

impl PipelineStatus {
    /// How many published events a consumer has not processed yet.
    pub fn lag(&self, id: ConsumerId) -> Option<u64> {
        self.consumers
            .get(id.0)
            .map(|c| self.events_published.saturating_sub(c.sequence))
    }
}

/// What a clean shutdown reports.
pub struct ShutdownReport {
    /// The matcher, with every book, after the last command (none if it panicked).
    pub matcher: Option<Matcher>,
    /// Set when the pipeline halted on a failure: which stage and why.
    pub halted: Option<String>,
    /// Commands processed.
    pub commands_processed: u64,
    /// Events published.
    pub events_published: u64,
    /// Each consumer's final status.
    pub consumers: Vec<ConsumerStatus>,
    values: Vec<Option<Box<dyn Any + Send>>>,
}

impl ShutdownReport {
    /// Takes back a consumer by its id and type (for its final state).
    pub fn take_consumer<C: Consumer>(&mut self, id: ConsumerId) -> Option<C> {
        let v = self.values.get_mut(id.0)?.take()?;
        match v.downcast::<C>() {
            Ok(c) => Some(*c),
            Err(v) => {
                self.values[id.0] = Some(v);
                None
            }
        }
    }
}

type OutPoller = EventPoller<Event, SingleProducerBarrier>;
/// Builds a consumer's stage from its run (the consumer's type is erased here, once per
/// consumer; the per-event calls inside the stage stay monomorphized).
type Starter = Box<dyn FnOnce(ConsumerRun) -> Box<dyn Member>>;

struct ConsumerRun {
    poller: OutPoller,
    cell: Arc<ConsumerCell>,
    deps: Vec<Arc<ConsumerCell>>,
    max_batch: u64,
    policy: FailurePolicy,
    shared: Arc<Shared>,
    /// Taken when the consumer starts.
    ctx: Option<ConsumerContext>,
}

struct PendingConsumer {
    name: String,
    opts: ConsumerOptions,
    start: Starter,
}

/// Wires the whole pipeline in one place. See the module docs.
pub struct PipelineBuilder {
    input_size: usize,
    output_size: usize,
    matcher: Option<Matcher>,
    matcher_core: Option<usize>,
    matcher_idle: Option<IdleStrategy>,
    gateway_idle: IdleStrategy,
    consumers: Vec<PendingConsumer>,
    resume: (u64, u64),
    panic_at: Option<u64>,
}

impl Default for PipelineBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// Checks a core id against the cores this process may use.
pub fn validate_core(core: usize) -> Result<core_affinity::CoreId, PipelineError> {
    let ids = core_affinity::get_core_ids().unwrap_or_default();
    ids.iter()
        .copied()
        .find(|c| c.id == core)
        .ok_or_else(|| PipelineError::NoSuchCore {
            core,
            available: ids.iter().map(|c| c.id).collect(),
        })
}

fn pin(core: Option<core_affinity::CoreId>, who: &str) {
    if let Some(c) = core {
        if !core_affinity::set_for_current(c) {
            tracing::warn!("{who}: could not pin to core {}; running unpinned", c.id);
        }
    }
}

impl PipelineBuilder {
    /// Defaults: 64Ki-slot rings, a default matcher, unpinned stages that back off when idle.
    pub fn new() -> Self {
        PipelineBuilder {
            input_size: 1 << 16,
            output_size: 1 << 16,
            matcher: None,
            matcher_core: None,
            matcher_idle: None,
            gateway_idle: IdleStrategy::SHARED,
            consumers: Vec::new(),
            resume: (0, 0),
            panic_at: None,
        }
    }

    /// Input ring slots (a power of two).
    pub fn input_ring(mut self, size: usize) -> Self {
        self.input_size = size;
        self
    }

    /// Output ring slots (a power of two).
    pub fn output_ring(mut self, size: usize) -> Self {
        self.output_size = size;
        self
    }

    /// The matcher to run (e.g. one restored from a snapshot, or one sized with
    /// [`Matcher::with_capacity`]); default: an empty one with room for 4M gaps between order ids.
    pub fn matcher(mut self, matcher: Matcher) -> Self {
        self.matcher = Some(matcher);
        self
    }

    /// Continues numbering after a recovered state: the next command gets input sequence
    /// `cmd_seq + 1` and the next event output sequence `event_seq + 1`.
    pub fn resume_after(mut self, cmd_seq: u64, event_seq: u64) -> Self {
        self.resume = (cmd_seq, event_seq);
        self
    }

    /// Fault injection for tests: the matcher thread panics before the command at this
    /// input sequence (as a bug would).
    #[doc(hidden)]
    pub fn inject_matcher_panic_at(mut self, cmd_seq: u64) -> Self {
        self.panic_at = Some(cmd_seq);
        self
    }

    /// Pins the matcher thread to a core.
    pub fn matcher_core(mut self, core: usize) -> Self {
        self.matcher_core = Some(core);
        self
    }

    /// How the matcher waits for commands (default: busy spin when pinned, else back off).
    pub fn matcher_idle(mut self, idle: IdleStrategy) -> Self {
        self.matcher_idle = Some(idle);
        self
    }

    /// How a gateway waits for a free slot in `submit` (default: back off).
    pub fn gateway_idle(mut self, idle: IdleStrategy) -> Self {
        self.gateway_idle = idle;
        self
    }

    /// Registers a consumer; returns its id (for gating other consumers after it and for
    /// status).
    pub fn add_consumer<C: Consumer>(&mut self, consumer: C, opts: ConsumerOptions) -> ConsumerId {
        let name = consumer.name().to_string();
        let start: Starter = Box::new(move |run: ConsumerRun| {
            Box::new(Stage::new(consumer, run)) as Box<dyn Member>
        });
        self.consumers.push(PendingConsumer { name, opts, start });
        ConsumerId(self.consumers.len() - 1)
    }

    /// Registers a consumer with default options (chaining form).
    pub fn consumer<C: Consumer>(mut self, consumer: C) -> Self {
        self.add_consumer(consumer, ConsumerOptions::default());
        self
    }

    /// Validates everything, builds both rings and starts every thread.
    pub fn start(self) -> Result<Pipeline, PipelineError> {
        for (ring, size) in [("input", self.input_size), ("output", self.output_size)] {
            if size < 2 || !size.is_power_of_two() {
                return Err(PipelineError::RingSize { ring, size });
            }
        }
        if self.consumers.is_empty() {
            return Err(PipelineError::NoConsumers);
        }
        let matcher_core = self.matcher_core.map(validate_core).transpose()?;
        let mut cores = Vec::with_capacity(self.consumers.len());
        for (i, c) in self.consumers.iter().enumerate() {
            cores.push(c.opts.core.map(validate_core).transpose()?);
            if let Some(&bad) = c.opts.after.iter().find(|d| d.0 >= i) {
                return Err(PipelineError::BadGate {
                    consumer: c.name.clone(),
                    after: bad,
                });
            }
        }

        // 1. Input ring: many gateways, one reader (the matcher).
        let (input_poller, input_builder) =
            disruptor::build_multi_producer(self.input_size, Command::default, disruptor::BusySpin)
                .new_event_poller();
        let gateway_shared = GatewayShared::new(self.resume.0);
        let clocks = Arc::new(EventClocks::new(self.output_size));
        let gateway = Gateway::new(
            input_builder.build(),
            Arc::clone(&gateway_shared),
            self.gateway_idle,
        );

        // 2. Output ring: one writer (the matcher), one poller per consumer.
        let mut out_builder =
            disruptor::build_single_producer(self.output_size, Event::default, disruptor::BusySpin)
                .with_multi_consumer();
        let mut pollers = Vec::with_capacity(self.consumers.len());
        for _ in &self.consumers {
            let (p, b) = out_builder.new_event_poller();
            pollers.push(p);
            out_builder = b;
        }
        let output: SingleProducer<Event, MultiConsumerBarrier> = out_builder.build();

        // 3. Status cells.
        let cells: Vec<Arc<ConsumerCell>> = self
            .consumers
            .iter()
            .map(|c| {
                Arc::new(ConsumerCell {
                    name: c.name.clone(),
                    sequence: CachePadded::new(AtomicU64::new(self.resume.1)),
                    gate: CachePadded::new(AtomicU64::new(self.resume.1)),
                    finished: AtomicBool::new(false),
                    failed: AtomicBool::new(false),
                    failure: Mutex::new(None),
                })
            })
            .collect();
        let shared = Arc::new(Shared {
            commands: CachePadded::new(AtomicU64::new(self.resume.0)),
            published: CachePadded::new(AtomicU64::new(self.resume.1)),
            drain: AtomicBool::new(false),
            consumers: cells.clone(),
            input_capacity: self.input_size,
            output_capacity: self.output_size,
            gateway: Arc::clone(&gateway_shared),
            halt_reason: Mutex::new(None),
            clocks: Arc::clone(&clocks),
        });

        // 4. Consumer threads: one per group (or per consumer without a group).
        let mut threads: Vec<(String, Option<core_affinity::CoreId>, IdleStrategy)> = Vec::new();
        let mut thread_members: Vec<Vec<(usize, Box<dyn Member>)>> = Vec::new();
        let mut group_thread: std::collections::HashMap<u32, usize> = Default::default();
        for (id, ((pending, poller), (cell, core))) in self
            .consumers
            .into_iter()
            .zip(pollers)
            .zip(cells.iter().cloned().zip(cores))
            .enumerate()
        {
            let deps = pending
                .opts
                .after
                .iter()
                .map(|d| Arc::clone(&cells[d.0]))
                .collect();
            let idle = pending
                .opts
                .idle
                .unwrap_or(IdleStrategy::default_for(core.is_some()));
            let run = ConsumerRun {
                poller,
                cell,
                deps,
                max_batch: pending.opts.max_batch.unwrap_or(u64::MAX),
                policy: pending.opts.on_failure,
                shared: Arc::clone(&shared),
                ctx: Some(ConsumerContext {
                    gateway: gateway.clone(),
                    clocks: Arc::clone(&clocks),
                }),
            };
            let member = (pending.start)(run);
            let t = match pending.opts.group {
                Some(g) if group_thread.contains_key(&g) => group_thread[&g],
                g => {
                    threads.push((
                        match g {
                            Some(g) => format!("ringex-group-{g}"),
                            None => format!("ringex-{}", pending.name),
                        },
                        core,
                        idle,
                    ));
                    thread_members.push(Vec::new());
                    if let Some(g) = g {
                        group_thread.insert(g, threads.len() - 1);
                    }
                    threads.len() - 1
                }
            };
            thread_members[t].push((id, member));
        }
        let mut consumer_threads = Vec::with_capacity(threads.len());
        for ((name, core, idle), members) in threads.into_iter().zip(thread_members) {
            let ids: Vec<usize> = members.iter().map(|(id, _)| *id).collect();
            let stages: Vec<Box<dyn Member>> = members.into_iter().map(|(_, m)| m).collect();
            let tname = name.clone();
            let h = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || run_group(stages, core, idle, &tname))
                .map_err(|source| PipelineError::Spawn { name, source })?;
            consumer_threads.push((h, ids));
        }
        let consumer_count = cells.len();

        // 5. The matcher thread.
        // Default: room for 4M sequential order ids in the direct-indexed window (16 MiB).
        let matcher = self.matcher.unwrap_or_else(|| {
            Matcher::with_capacity(crate::matcher::MatcherCapacity {
                ids: 1 << 22,
                ..Default::default()
            })
        });
        // Gateways stamp no earlier than the recovered clock.
        gateway_shared
            .last_stamp
            .fetch_max(matcher.clock().0, Ordering::AcqRel);
        let idle = self
            .matcher_idle
            .unwrap_or(IdleStrategy::default_for(matcher_core.is_some()));
        let sh = Arc::clone(&shared);
        let panic_at = self.panic_at.unwrap_or(u64::MAX);
        let matcher_thread = std::thread::Builder::new()
            .name("ringex-matcher".into())
            .spawn(move || {
                matcher_loop(
                    matcher,
                    input_poller,
                    output,
                    sh,
                    idle,
                    matcher_core,
                    panic_at,
                )
            })
            .map_err(|source| PipelineError::Spawn {
                name: "ringex-matcher".into(),
                source,
            })?;

        Ok(Pipeline {
            gateway,
            gateway_shared,
            shared,
            matcher_thread: Some(matcher_thread),
            consumer_threads,
            consumer_count,
        })
    }
}

/// A consumer thread: it hands back its consumers (type-erased) when joined.
type ConsumerThread = JoinHandle<Vec<Box<dyn Any + Send>>>;

/// A running pipeline.
pub struct Pipeline {
    gateway: Gateway,
    gateway_shared: Arc<GatewayShared>,
    shared: Arc<Shared>,
    matcher_thread: Option<JoinHandle<Option<Matcher>>>,
    /// Each consumer thread with the ids of the consumers it runs.
    consumer_threads: Vec<(ConsumerThread, Vec<usize>)>,
    consumer_count: usize,
}

impl Pipeline {
    /// A builder with defaults.
    pub fn builder() -> PipelineBuilder {
        PipelineBuilder::new()
    }

    /// A new gateway (one per producer thread).
    pub fn gateway(&self) -> Gateway {
        self.gateway.clone()
    }

    /// Live counters, readable from any thread at any time.
    pub fn status(&self) -> PipelineStatus {
        status_of(&self.shared)
    }

    /// Stops intake, drains both rings, calls every `on_shutdown`, joins every thread.
    /// Nothing that a submit accepted is lost.
    pub fn shutdown(mut self) -> ShutdownReport {
        self.stop()
    }

    fn stop(&mut self) -> ShutdownReport {
        // Stop intake; after this every accepted command is in the input ring.
        self.gateway_shared.close_and_quiesce();
        self.shared.drain.store(true, Ordering::SeqCst);
        let matcher = self.matcher_thread.take().and_then(|t| match t.join() {
            Ok(m) => m,
            Err(_) => {
                tracing::error!("the matcher thread panicked");
                None
            }
        });
        let mut values: Vec<Option<Box<dyn Any + Send>>> =
            (0..self.consumer_count).map(|_| None).collect();
        for (t, ids) in self.consumer_threads.drain(..) {
            if let Ok(got) = t.join() {
                for (id, v) in ids.into_iter().zip(got) {
                    values[id] = Some(v);
                }
            }
        }
        let st = status_of(&self.shared);
        ShutdownReport {
            matcher,
            halted: st.halted,
            commands_processed: st.commands_processed,
            events_published: st.events_published,
            consumers: st.consumers,
            values,
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if self.matcher_thread.is_some() {
            self.stop();
        }
    }
}

fn status_of(shared: &Shared) -> PipelineStatus {
    PipelineStatus {
        commands_processed: shared.commands.load(Ordering::Acquire),
        events_published: shared.published.load(Ordering::Acquire),
        input_capacity: shared.input_capacity,
        output_capacity: shared.output_capacity,
        consumers: shared
            .consumers
            .iter()
            .map(|c| ConsumerStatus {
                name: c.name.clone(),
                sequence: c.sequence.load(Ordering::Acquire),
                failure: if c.failed.load(Ordering::Acquire) {
                    c.failure.lock().ok().and_then(|f| f.clone())
                } else {
                    None
                },
            })
            .collect(),
        halted: if shared.halted() {
            shared.halt_reason.lock().ok().and_then(|r| r.clone())
        } else {
            None
        },
    }
}

/// Flush the matcher's event buffer before it passes this many events (at most half a
/// publish chunk, so a command of up to half a chunk of events is never split)…
const FLUSH_AT: usize = 512;
/// …or this many commands.
const COALESCE: usize = 64;

/// Publishes `events` in batches of at most `chunk`, waiting for room.
#[inline]
fn publish(
    output: &mut SingleProducer<Event, MultiConsumerBarrier>,
    events: &[Event],
    chunk: usize,
    idler: &mut Idler,
    shared: &Shared,
) -> bool {
    for part in events.chunks(chunk) {
        while output
            .try_batch_publish(part.len(), |slots| {
                for (slot, e) in slots.zip(part) {
                    *slot = *e;
                }
            })
            .is_err()
        {
            // A halted pipeline may never free the slot (its failed consumer stopped).
            if shared.halted() {
                return false;
            }
            idler.idle();
        }
        idler.reset();
    }
    true
}

/// The matcher stage: commands in, each command's events out in one batch (several
/// commands' events may share a batch).
/// (Never inlined, so that profilers and callgrind can attribute the stage.)
#[inline(never)]
fn matcher_loop(
    mut matcher: Matcher,
    mut input: EventPoller<Command, MultiProducerBarrier>,
    mut output: SingleProducer<Event, MultiConsumerBarrier>,
    shared: Arc<Shared>,
    idle: IdleStrategy,
    core: Option<core_affinity::CoreId>,
    panic_at: u64,
) -> Option<Matcher> {
    pin(core, "matcher");
    // A panic in the matcher (a bug: input never panics it) halts the pipeline instead of
    // leaving gateways spinning on a ring nobody reads; the matcher's state is then
    // suspect and is not handed back.
    let r = catch_unwind(AssertUnwindSafe(|| {
        run_matcher(
            &mut matcher,
            &mut input,
            &mut output,
            &shared,
            idle,
            panic_at,
        )
    }));
    if let Err(p) = r {
        shared.halt(format!("matcher panicked: {}", panic_message(&*p)));
        drop(output);
        return None;
    }
    // Dropping the output producer tells the consumers to finish after the last event.
    drop(output);
    Some(matcher)
}

fn run_matcher(
    matcher: &mut Matcher,
    input: &mut EventPoller<Command, MultiProducerBarrier>,
    output: &mut SingleProducer<Event, MultiConsumerBarrier>,
    shared: &Shared,
    idle: IdleStrategy,
    panic_at: u64,
) {
    let chunk = shared.output_capacity.min(4096);
    let flush_at = FLUSH_AT.min(chunk / 2).max(1);
    let mut events: Vec<Event> = Vec::with_capacity(4096);
    let mut idler = idle.idler();
    let mut publish_idler = idle.idler();
    let mut cmd_seq = shared.commands.load(Ordering::Relaxed);
    let mut published = shared.published.load(Ordering::Relaxed);
    let mut draining = false;
    while !shared.halted() {
        match input.poll() {
            Ok(mut guard) => {
                idler.reset();
                // Events of several commands go out in one ring batch (fewer publishes),
                // flushed before the buffer passes `flush_at` events or COALESCE commands, so a
                // command's events are never split unless it alone outgrows a chunk.
                let mut pending = 0usize;
                for cmd in &mut guard {
                    if events.len() >= flush_at || pending == COALESCE {
                        if !publish(output, &events, chunk, &mut publish_idler, shared) {
                            return;
                        }
                        published += events.len() as u64;
                        events.clear();
                        pending = 0;
                    }
                    cmd_seq += 1;
                    if cmd_seq == panic_at {
                        panic!("injected matcher panic at command {cmd_seq}");
                    }
                    let before = events.len();
                    matcher.process(Sequence(cmd_seq), cmd, &mut events);
                    if events.len() > before {
                        shared
                            .clocks
                            .set(published + events.len() as u64, matcher.clock());
                    }
                    pending += 1;
                }
                drop(guard);
                if !publish(output, &events, chunk, &mut publish_idler, shared) {
                    return;
                }
                published += events.len() as u64;
                events.clear();
                shared.commands.store(cmd_seq, Ordering::Release);
                shared.published.store(published, Ordering::Release);
            }
            Err(Polling::NoEvents) => {
                if draining {
                    break;
                }
                // Once intake is closed every accepted command is published: poll once
                // more after seeing the flag, then stop.
                draining = shared.drain.load(Ordering::Acquire);
                if !draining {
                    idler.idle();
                }
            }
            Err(Polling::Shutdown) => break,
        }
    }
}

fn publish_gate<C: Consumer>(consumer: &C, cell: &ConsumerCell, seq: u64) {
    let gate = consumer.gate_sequence().map_or(seq, |g| g.min(seq));
    cell.gate.store(gate, Ordering::Release);
}

/// One step of a consumer stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// It handled a batch.
    Worked,
    /// Nothing for it right now.
    Idle,
    /// It is done (the stream ended, or it stopped on a failure).
    Done,
}

/// A consumer stage, its type erased for the thread that runs it (alone or in a group).
trait Member: Send {
    /// Calls `on_start`.
    fn start(&mut self);
    /// Polls once: gate, take a batch, call the consumer, catch failures, publish progress.
    fn step(&mut self) -> Step;
    /// After `Done`: `on_shutdown` (unless it stopped on a failure or is skipped), then marks
    /// it finished for the consumers gated after it.
    fn finish(&mut self);
    /// The consumer, for `ShutdownReport::take_consumer`.
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StageState {
    Running,
    /// The stream ended: `on_shutdown` is due.
    Ended,
    /// Stopped on a failure (halt policy): no more calls.
    Stopped,
}

/// A consumer stage: poll, gate, call, catch failures, publish progress.
struct Stage<C: Consumer> {
    consumer: C,
    /// Its ring poller, gates, policy and context, as the pipeline wired them.
    run: ConsumerRun,
    /// Failed and skipped: the sequence keeps moving, nothing is called.
    skipping: bool,
    seq: u64,
    timeout: Option<std::time::Duration>,
    /// The consumer's [`Consumer::lookahead`], read once.
    lookahead: usize,
    last_work: std::time::Instant,
    state: StageState,
}

impl<C: Consumer> Stage<C> {
    fn new(consumer: C, run: ConsumerRun) -> Self {
        let seq = run.cell.sequence.load(Ordering::Acquire);
        let lookahead = consumer.lookahead();
        Stage {
            consumer,
            run,
            skipping: false,
            seq,
            timeout: None,
            lookahead,
            last_work: std::time::Instant::now(),
            state: StageState::Running,
        }
    }

    /// Applies the policy to a failure already recorded in the cell; false: stop.
    fn on_failure(&mut self) -> bool {
        match self.run.policy {
            FailurePolicy::Halt => {
                self.run.shared.halt(format!(
                    "consumer {} failed: {}",
                    self.run.cell.name,
                    self.run.cell.failure()
                ));
                false
            }
            FailurePolicy::Skip => {
                self.skipping = true;
                true
            }
        }
    }

    /// Runs the timeout hook once the stream has been quiet long enough; false: stop.
    fn quiet(&mut self) -> bool {
        let Some(t) = self.timeout else { return true };
        if self.skipping || self.last_work.elapsed() < t {
            return true;
        }
        self.last_work = std::time::Instant::now();
        let consumer = &mut self.consumer;
        let r = catch_unwind(AssertUnwindSafe(|| {
            consumer.on_timeout();
            consumer.failure()
        }));
        if let Ok(None) = r {
            publish_gate(
                &self.consumer,
                &self.run.cell,
                self.run.cell.sequence.load(Ordering::Relaxed),
            );
        }
        let reason = match r {
            Err(p) => Some(format!("panicked in on_timeout: {}", panic_message(&*p))),
            Ok(f) => f,
        };
        match reason {
            None => true,
            Some(reason) => {
                self.run.cell.fail(reason);
                self.on_failure()
            }
        }
    }

    fn stop(&mut self) -> Step {
        self.state = StageState::Stopped;
        Step::Done
    }
}

impl<C: Consumer> Member for Stage<C> {
    fn start(&mut self) {
        let Some(ctx) = self.run.ctx.take() else {
            return;
        };
        let consumer = &mut self.consumer;
        let started = catch_unwind(AssertUnwindSafe(|| consumer.on_start_with(&ctx)));
        drop(ctx);
        if let Err(p) = started {
            self.run
                .cell
                .fail(format!("panicked in on_start: {}", panic_message(&*p)));
            if !self.on_failure() {
                self.state = StageState::Stopped;
                return;
            }
        }
        self.seq = self.run.cell.sequence.load(Ordering::Acquire);
        self.timeout = self.consumer.timeout();
        self.last_work = std::time::Instant::now();
    }

    fn step(&mut self) -> Step {
        if self.state != StageState::Running {
            return Step::Done;
        }
        // Never run ahead of a consumer gated before this one: a failed one stops us too.
        // `finished` is read before the gate: a consumer that is finished has published
        // its last gate, so when all are finished the limit computed here is final.
        let mut limit = self.run.max_batch;
        let mut upstream_done = true;
        if !self.skipping {
            for k in 0..self.run.deps.len() {
                let d = &self.run.deps[k];
                upstream_done &= d.finished.load(Ordering::Acquire);
                let ds = d.gate.load(Ordering::Acquire);
                if d.failed.load(Ordering::Acquire) {
                    let why = format!("upstream consumer {} failed", d.name);
                    self.run.cell.fail(why);
                    if !self.on_failure() {
                        return self.stop();
                    }
                    break;
                }
                limit = limit.min(ds.saturating_sub(self.seq));
            }
        }
        if !self.skipping && limit == 0 {
            // Gated and caught up with what the consumers before us have done. When they
            // are all finished nothing more will come through: done (events past their
            // last gate, say a journal's undurable tail, are never seen). Else look for
            // the end of the stream (take(0) consumes nothing), or wait.
            if upstream_done && !self.run.deps.is_empty() {
                self.state = StageState::Ended;
                return Step::Done;
            }
            if let Err(Polling::Shutdown) = self.run.poller.take(0) {
                self.state = StageState::Ended;
                return Step::Done;
            }
            if self.run.shared.halted() {
                self.state = StageState::Ended;
                return Step::Done;
            }
            if !self.quiet() {
                return self.stop();
            }
            return Step::Idle;
        }
        // The batch is handled inside one scope (its guard borrows the poller); what to do
        // next is decided after the guard is dropped.
        let polled = match self.run.poller.take(limit) {
            Ok(mut guard) => {
                if self.timeout.is_some() {
                    self.last_work = std::time::Instant::now();
                }
                let n = {
                    let it = &mut guard;
                    it.len() as u64
                };
                let seq = self.seq;
                let mut failed = false;
                if !self.skipping {
                    let consumer = &mut self.consumer;
                    let lookahead = self.lookahead;
                    let r = catch_unwind(AssertUnwindSafe(|| {
                        crate::consumer::deliver(consumer, lookahead, &mut guard, seq, n);
                        consumer.failure()
                    }));
                    failed = match r {
                        Err(p) => {
                            self.run
                                .cell
                                .fail(format!("panicked in on_event: {}", panic_message(&*p)));
                            true
                        }
                        Ok(Some(reason)) => {
                            self.run.cell.fail(reason);
                            true
                        }
                        Ok(None) => false,
                    };
                }
                drop(guard);
                Some((n, failed))
            }
            Err(Polling::NoEvents) => None,
            Err(Polling::Shutdown) => {
                self.state = StageState::Ended;
                return Step::Done;
            }
        };
        match polled {
            Some((n, failed)) => {
                // The failing batch is not counted as processed.
                if failed && !self.on_failure() {
                    return self.stop();
                }
                self.seq += n;
                self.run.cell.sequence.store(self.seq, Ordering::Release);
                if self.skipping {
                    self.run.cell.gate.store(self.seq, Ordering::Release);
                } else {
                    publish_gate(&self.consumer, &self.run.cell, self.seq);
                }
                Step::Worked
            }
            None => {
                if self.run.shared.halted() && !self.run.deps.is_empty() {
                    self.state = StageState::Ended;
                    return Step::Done;
                }
                if !self.quiet() {
                    return self.stop();
                }
                Step::Idle
            }
        }
    }

    fn finish(&mut self) {
        if self.state == StageState::Ended && !self.skipping {
            let consumer = &mut self.consumer;
            match catch_unwind(AssertUnwindSafe(|| {
                consumer.on_shutdown();
                consumer.failure()
            })) {
                Err(p) => self
                    .run
                    .cell
                    .fail(format!("panicked in on_shutdown: {}", panic_message(&*p))),
                Ok(Some(reason)) => self.run.cell.fail(reason),
                Ok(None) => publish_gate(&self.consumer, &self.run.cell, self.seq),
            }
        }
        self.state = StageState::Stopped;
        self.run.cell.finished.store(true, Ordering::Release);
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        Box::new(self.consumer)
    }
}

/// A consumer thread: its stages (one, or a group's) called in registration order, each
/// for its own batch; it idles only when none of them had work.
#[inline(never)]
fn run_group(
    mut members: Vec<Box<dyn Member>>,
    core: Option<core_affinity::CoreId>,
    idle: IdleStrategy,
    name: &str,
) -> Vec<Box<dyn Any + Send>> {
    pin(core, name);
    for m in &mut members {
        m.start();
    }
    let mut idler = idle.idler();
    let mut done = vec![false; members.len()];
    loop {
        let (mut worked, mut running) = (false, false);
        for (m, d) in members.iter_mut().zip(done.iter_mut()) {
            if *d {
                continue;
            }
            match m.step() {
                Step::Worked => {
                    worked = true;
                    running = true;
                }
                Step::Idle => running = true,
                Step::Done => {
                    // Finished at once, so the consumers gated after it can stop too.
                    m.finish();
                    *d = true;
                }
            }
        }
        if !running {
            break;
        }
        if worked {
            idler.reset();
        } else {
            idler.idle();
        }
    }
    members.into_iter().map(|m| m.into_any()).collect()
}
