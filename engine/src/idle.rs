//! Idle strategies: what a stage does when its ring has nothing for it.
//!
//! This machine may have fewer cores than the pipeline has threads (the full pipeline has a
//! matcher, several consumers and the gateways). Busy spinning is right for a thread pinned
//! to its own core; with more threads than cores it steals the time the other threads need,
//! so unpinned threads back off: spin a little, then yield, then sleep briefly.

use crossbeam_utils::Backoff;
use std::time::Duration;

/// How a stage waits for work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleStrategy {
    /// Spin on the ring (with a spin-loop hint). Lowest latency; needs a core of its own.
    BusySpin,
    /// `crossbeam_utils::Backoff`: exponential spinning, then `yield_now`; once the backoff
    /// is exhausted, sleep `park` between polls.
    Backoff {
        /// Sleep between polls after the spin/yield phase (0 = keep yielding).
        park: Duration,
    },
    /// `yield_now` between polls: gives the core to another runnable thread at once, and
    /// comes back as soon as the scheduler allows. Good when threads outnumber cores and
    /// latency matters.
    Yield,
    /// Sleep this long between polls. For development and non-latency-sensitive consumers.
    Sleep(Duration),
}

impl IdleStrategy {
    /// The default for a thread pinned to its own core.
    pub const PINNED: IdleStrategy = IdleStrategy::BusySpin;
    /// The default for an unpinned thread that shares cores.
    pub const SHARED: IdleStrategy = IdleStrategy::Backoff {
        park: Duration::from_micros(50),
    };

    /// The default for a stage: busy spin when pinned, back off when not.
    pub fn default_for(pinned: bool) -> Self {
        if pinned {
            Self::PINNED
        } else {
            Self::SHARED
        }
    }

    /// A fresh idler for one thread.
    pub fn idler(self) -> Idler {
        Idler {
            strategy: self,
            backoff: Backoff::new(),
        }
    }
}

/// The per-thread state of an [`IdleStrategy`].
pub struct Idler {
    strategy: IdleStrategy,
    backoff: Backoff,
}

impl Idler {
    /// Work was found: the next idle starts from the shortest wait again.
    #[inline]
    pub fn reset(&mut self) {
        if !matches!(self.strategy, IdleStrategy::BusySpin) {
            self.backoff.reset();
        }
    }

    /// Nothing to do: wait a little, longer each time in a row.
    #[inline]
    pub fn idle(&mut self) {
        match self.strategy {
            IdleStrategy::BusySpin => std::hint::spin_loop(),
            IdleStrategy::Backoff { park } => {
                if self.backoff.is_completed() && !park.is_zero() {
                    std::thread::sleep(park);
                } else {
                    self.backoff.snooze();
                }
            }
            IdleStrategy::Yield => std::thread::yield_now(),
            IdleStrategy::Sleep(d) => std::thread::sleep(d),
        }
    }
}
