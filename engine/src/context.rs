//! [`ConsumerContext`]: what a consumer gets when it starts (a gateway into the input ring,
//! the engine clock published beside the output ring).

use crate::gateway::Gateway;
use crate::types::{Sequence, Timestamp};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What a consumer gets when it starts.
pub struct ConsumerContext {
    pub(crate) gateway: Gateway,
    pub(crate) clocks: Arc<EventClocks>,
}

/// The engine clock after each command, published by the matcher beside the output ring
/// (events carry no time): one slot per ring slot, written for the last event of each
/// command before that event is published.
pub(crate) struct EventClocks {
    pub(crate) slots: Box<[AtomicU64]>,
    pub(crate) mask: u64,
}

impl EventClocks {
    pub(crate) fn new(size: usize) -> Self {
        EventClocks {
            slots: (0..size).map(|_| AtomicU64::new(0)).collect(),
            mask: size as u64 - 1,
        }
    }

    #[inline]
    pub(crate) fn set(&self, event_seq: u64, clock: Timestamp) {
        self.slots[(event_seq & self.mask) as usize].store(clock.0, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn get(&self, event_seq: u64) -> Timestamp {
        Timestamp(self.slots[(event_seq & self.mask) as usize].load(Ordering::Relaxed))
    }
}

impl ConsumerContext {
    /// The engine clock after the command whose **last** event has output sequence `seq`
    /// ([`crate::Event::is_last_of_command`]). Valid only while that event is being handled (from
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
    /// [`crate::SubmitError::Closed`].
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
