//! The consumers' threads: a stage polls the output ring for one consumer (its gates, its
//! failure policy, its timeout), and a group steps several stages on one thread.

use super::*;

pub(crate) fn publish_gate<C: Consumer>(consumer: &C, cell: &ConsumerCell, seq: u64) {
    let gate = consumer.gate_sequence().map_or(seq, |g| g.min(seq));
    cell.gate.store(gate, Ordering::Release);
}

/// One step of a consumer stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// It handled a batch.
    Worked,
    /// Nothing for it right now.
    Idle,
    /// It is done (the stream ended, or it stopped on a failure).
    Done,
}

/// A consumer stage, its type erased for the thread that runs it (alone or in a group).
pub(crate) trait Member: Send {
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
pub(crate) enum StageState {
    Running,
    /// The stream ended: `on_shutdown` is due.
    Ended,
    /// Stopped on a failure (halt policy): no more calls.
    Stopped,
}

/// A consumer stage: poll, gate, call, catch failures, publish progress.
pub(crate) struct Stage<C: Consumer> {
    pub(crate) consumer: C,
    /// Its ring poller, gates, policy and context, as the pipeline wired them.
    pub(crate) run: ConsumerRun,
    /// Failed and skipped: the sequence keeps moving, nothing is called.
    pub(crate) skipping: bool,
    pub(crate) seq: u64,
    pub(crate) timeout: Option<std::time::Duration>,
    /// The consumer's [`Consumer::lookahead`], read once.
    pub(crate) lookahead: usize,
    pub(crate) last_work: std::time::Instant,
    pub(crate) state: StageState,
}

impl<C: Consumer> Stage<C> {
    pub(crate) fn new(consumer: C, run: ConsumerRun) -> Self {
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
    pub(crate) fn on_failure(&mut self) -> bool {
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
    pub(crate) fn quiet(&mut self) -> bool {
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

    pub(crate) fn stop(&mut self) -> Step {
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
pub(crate) fn run_group(
    mut members: Vec<Box<dyn Member>>,
    core: Option<core_affinity::CoreId>,
    idle: IdleStrategy,
    name: &str,
    wakeups: Arc<crate::idle::Wakeups>,
) -> Vec<Box<dyn Any + Send>> {
    pin(core, name);
    for m in &mut members {
        m.start();
    }
    let mut idler = idle.idler_in(&wakeups);
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
                    wakeups.wake();
                }
            }
        }
        if !running {
            break;
        }
        if worked {
            idler.reset();
            // Ring room for the matcher, a gate moved for the consumers after this one.
            wakeups.progress();
        } else {
            idler.idle();
        }
    }
    members.into_iter().map(|m| m.into_any()).collect()
}
