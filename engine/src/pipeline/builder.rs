//! [`PipelineBuilder`]: wires the rings, the matcher and the consumers, validates cores,
//! ring sizes and gates, and starts every thread.

use super::*;

pub(crate) type OutPoller = EventPoller<Event, SingleProducerBarrier>;
/// Builds a consumer's stage from its run (the consumer's type is erased here, once per
/// consumer; the per-event calls inside the stage stay monomorphized).
pub(crate) type Starter = Box<dyn FnOnce(ConsumerRun) -> Box<dyn Member>>;

pub(crate) struct ConsumerRun {
    pub(crate) poller: OutPoller,
    pub(crate) cell: Arc<ConsumerCell>,
    pub(crate) deps: Vec<Arc<ConsumerCell>>,
    pub(crate) max_batch: u64,
    pub(crate) policy: FailurePolicy,
    pub(crate) shared: Arc<Shared>,
    /// Taken when the consumer starts.
    pub(crate) ctx: Option<ConsumerContext>,
}

pub(crate) struct PendingConsumer {
    pub(crate) name: String,
    pub(crate) opts: ConsumerOptions,
    pub(crate) start: Starter,
}

/// Wires the whole pipeline in one place. See the module docs.
pub struct PipelineBuilder {
    pub(crate) input_size: usize,
    pub(crate) output_size: usize,
    pub(crate) matcher: Option<Matcher>,
    pub(crate) matcher_core: Option<usize>,
    pub(crate) matcher_idle: Option<IdleStrategy>,
    pub(crate) gateway_idle: IdleStrategy,
    pub(crate) consumers: Vec<PendingConsumer>,
    pub(crate) resume: (u64, u64),
    pub(crate) panic_at: Option<u64>,
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

pub(crate) fn pin(core: Option<core_affinity::CoreId>, who: &str) {
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
        let (matcher_core, cores) = self.validate()?;

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
        let cells = status_cells(&self.consumers, self.resume.1);
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
        let runs = self
            .consumers
            .into_iter()
            .zip(pollers)
            .zip(cells.iter().cloned().zip(cores))
            .map(|((pending, poller), (cell, core))| {
                let deps = pending
                    .opts
                    .after
                    .iter()
                    .map(|d| Arc::clone(&cells[d.0]))
                    .collect();
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
                (pending, run, core)
            });
        let consumer_threads = spawn_consumers(runs, &gateway_shared.wakeups)?;
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

    /// Checks ring sizes, that there is a consumer, every core id, and that each consumer is
    /// gated only after consumers registered before it. Returns the matcher's core and each
    /// consumer's.
    #[allow(clippy::type_complexity)]
    fn validate(
        &self,
    ) -> Result<
        (
            Option<core_affinity::CoreId>,
            Vec<Option<core_affinity::CoreId>>,
        ),
        PipelineError,
    > {
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
        Ok((matcher_core, cores))
    }
}

/// One live status cell per consumer, starting at the resumed output sequence.
fn status_cells(consumers: &[PendingConsumer], resume: u64) -> Vec<Arc<ConsumerCell>> {
    consumers
        .iter()
        .map(|c| {
            Arc::new(ConsumerCell {
                name: c.name.clone(),
                sequence: CachePadded::new(AtomicU64::new(resume)),
                gate: CachePadded::new(AtomicU64::new(resume)),
                finished: AtomicBool::new(false),
                failed: AtomicBool::new(false),
                failure: Mutex::new(None),
            })
        })
        .collect()
}

/// Starts each consumer's stage on its thread: one thread per group (the first member's
/// core and idle strategy), one per consumer without a group. Returns each thread with the
/// ids of the consumers it runs.
fn spawn_consumers(
    runs: impl Iterator<Item = (PendingConsumer, ConsumerRun, Option<core_affinity::CoreId>)>,
    wakeups: &Arc<crate::idle::Wakeups>,
) -> Result<Vec<(ConsumerThread, Vec<usize>)>, PipelineError> {
    let mut threads: Vec<(String, Option<core_affinity::CoreId>, IdleStrategy)> = Vec::new();
    let mut thread_members: Vec<Vec<(usize, Box<dyn Member>)>> = Vec::new();
    let mut group_thread: std::collections::HashMap<u32, usize> = Default::default();
    for (id, (pending, run, core)) in runs.enumerate() {
        let idle = pending
            .opts
            .idle
            .unwrap_or(IdleStrategy::default_for(core.is_some()));
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
        let w = Arc::clone(wakeups);
        let h = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || run_group(stages, core, idle, &tname, w))
            .map_err(|source| PipelineError::Spawn { name, source })?;
        consumer_threads.push((h, ids));
    }
    Ok(consumer_threads)
}
