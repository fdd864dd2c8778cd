//! How a consumer runs: [`ConsumerOptions`] (gating, pinning, idling, groups, batches) and
//! its [`FailurePolicy`].

use super::*;

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
