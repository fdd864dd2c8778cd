//! Idle strategies: what a stage does when its ring has nothing for it.
//!
//! This machine may have fewer cores than the pipeline has threads (the full pipeline has a
//! matcher, several consumers and the gateways). Busy spinning is right for a thread pinned
//! to its own core; with more threads than cores it steals the time the other threads need,
//! so unpinned threads back off: spin a little, then yield, then sleep briefly.
//!
//! [`IdleStrategy::Park`] sleeps without a period instead: a stage that found nothing for a
//! while parks its thread, and whoever makes progress in the pipeline (a gateway publishing
//! a command, the matcher publishing events, a consumer finishing a batch) wakes it
//! ([`Wakeups`]), as the LMAX disruptor's blocking wait strategy does. A lone command then
//! crosses the stages without waiting out anyone's sleep, and an idle pipeline costs almost
//! no CPU. The price is on the producers while some stage sleeps: a fence and a load per
//! publication, and a `futex` wake for each sleeper when there is one.

use crossbeam_utils::Backoff;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
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
    /// Spin and yield a little (as `Backoff`), then park the thread until another stage of
    /// the pipeline makes progress, or `max` at the longest. A thread outside the pipeline's
    /// stages (a gateway waiting for room) backs off as `Backoff` does.
    Park {
        /// The longest sleep without a wake-up.
        max: Duration,
    },
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

    /// Park, woken by progress, at most a millisecond at a time.
    pub const PARK: IdleStrategy = IdleStrategy::Park {
        max: Duration::from_millis(1),
    };

    /// A fresh idler for one thread.
    pub fn idler(self) -> Idler {
        Idler {
            strategy: self,
            backoff: Backoff::new(),
            parker: None,
        }
    }

    /// A fresh idler for a stage thread of the pipeline whose progress `wakeups` reports:
    /// with [`IdleStrategy::Park`] it sleeps until woken.
    pub fn idler_in(self, wakeups: &Arc<Wakeups>) -> Idler {
        let parker = match self {
            IdleStrategy::Park { .. } => wakeups.register().map(|slot| Parker {
                wakeups: Arc::clone(wakeups),
                slot,
                announced: false,
            }),
            _ => None,
        };
        Idler {
            strategy: self,
            backoff: Backoff::new(),
            parker,
        }
    }
}

/// The stage threads of one pipeline that may be asleep, and the wake-up the producers
/// call after each publication ([`Wakeups::progress`]). Without a [`IdleStrategy::Park`]
/// stage it costs a relaxed load per call.
pub struct Wakeups {
    /// Set once a parking stage registers.
    on: AtomicBool,
    /// How many stages are announced asleep.
    asleep: AtomicUsize,
    /// Slots handed out.
    next: AtomicUsize,
    slots: Box<[Slot]>,
}

struct Slot {
    thread: OnceLock<Thread>,
    asleep: AtomicBool,
}

/// Parking stages per pipeline; more back off instead.
const SLOTS: usize = 64;

impl Default for Wakeups {
    fn default() -> Self {
        Wakeups {
            on: AtomicBool::new(false),
            asleep: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            slots: (0..SLOTS)
                .map(|_| Slot {
                    thread: OnceLock::new(),
                    asleep: AtomicBool::new(false),
                })
                .collect(),
        }
    }
}

impl Wakeups {
    /// Called after a publication (commands, events, a consumer's batch done): wakes the
    /// stages asleep, if any. A stage announces itself before its last look at the rings
    /// and this looks for sleepers after the publication, each behind a `SeqCst` fence, so
    /// either the stage sees the publication or this sees the stage.
    #[inline]
    pub fn progress(&self) {
        if !self.on.load(Ordering::Relaxed) {
            return;
        }
        fence(Ordering::SeqCst);
        if self.asleep.load(Ordering::Relaxed) != 0 {
            self.wake();
        }
    }

    /// Wakes every stage announced asleep (shutdown, halt: they look at their flags).
    #[cold]
    #[inline(never)]
    pub fn wake(&self) {
        let n = self.next.load(Ordering::Acquire).min(SLOTS);
        for s in &self.slots[..n] {
            if s.asleep.load(Ordering::Relaxed) {
                if let Some(t) = s.thread.get() {
                    t.unpark();
                }
            }
        }
    }

    fn register(&self) -> Option<usize> {
        let k = self.next.fetch_add(1, Ordering::AcqRel);
        if k >= SLOTS {
            return None;
        }
        let _ = self.slots[k].thread.set(std::thread::current());
        self.on.store(true, Ordering::SeqCst);
        Some(k)
    }
}

/// A parking stage's place in [`Wakeups`].
struct Parker {
    wakeups: Arc<Wakeups>,
    slot: usize,
    /// Announced asleep: producers will wake this thread.
    announced: bool,
}

impl Parker {
    fn announce(&mut self) {
        self.wakeups.slots[self.slot]
            .asleep
            .store(true, Ordering::SeqCst);
        self.wakeups.asleep.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.announced = true;
    }

    fn withdraw(&mut self) {
        self.wakeups.slots[self.slot]
            .asleep
            .store(false, Ordering::Relaxed);
        self.wakeups.asleep.fetch_sub(1, Ordering::Relaxed);
        self.announced = false;
    }
}

impl Drop for Parker {
    fn drop(&mut self) {
        if self.announced {
            self.withdraw();
        }
    }
}

/// The per-thread state of an [`IdleStrategy`].
pub struct Idler {
    strategy: IdleStrategy,
    backoff: Backoff,
    parker: Option<Parker>,
}

impl Idler {
    /// Work was found: the next idle starts from the shortest wait again.
    #[inline]
    pub fn reset(&mut self) {
        if !matches!(self.strategy, IdleStrategy::BusySpin) {
            self.backoff.reset();
        }
        if let Some(p) = &mut self.parker {
            if p.announced {
                p.withdraw();
            }
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
            IdleStrategy::Park { max } => {
                if !self.backoff.is_completed() {
                    self.backoff.snooze();
                    return;
                }
                match &mut self.parker {
                    // Not a stage: back off.
                    None => std::thread::sleep(Duration::from_micros(50).min(max)),
                    // Announce first and let the caller look at its ring once more: what
                    // was published before the announcement is seen there, what comes
                    // after it wakes this thread (or leaves the token that makes the park
                    // below return at once).
                    Some(p) if !p.announced => p.announce(),
                    Some(_) => std::thread::park_timeout(max),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A stage parked for up to 30 s comes back as soon as a producer reports progress
    /// (the work it waits for is there before the report), and is no longer counted asleep.
    #[test]
    fn a_parked_stage_is_woken_by_progress_not_by_its_timeout() {
        let w = Arc::new(Wakeups::default());
        let work = Arc::new(AtomicBool::new(false));
        let (w2, work2) = (Arc::clone(&w), Arc::clone(&work));
        let stage = std::thread::spawn(move || {
            let mut idler = IdleStrategy::Park {
                max: Duration::from_secs(30),
            }
            .idler_in(&w2);
            while !work2.load(Ordering::Acquire) {
                idler.idle();
            }
            idler.reset();
        });
        while w.asleep.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_millis(20));
        let t = Instant::now();
        work.store(true, Ordering::Release);
        w.progress();
        stage.join().expect("stage");
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "woken, not timed out"
        );
        assert_eq!(w.asleep.load(Ordering::SeqCst), 0);
    }

    /// Without a parking stage, progress does nothing (and a non-stage idler backs off).
    #[test]
    fn without_parking_stages_progress_is_a_load() {
        let w = Arc::new(Wakeups::default());
        w.progress();
        assert!(!w.on.load(Ordering::SeqCst));
        let mut gateway = IdleStrategy::PARK.idler();
        for _ in 0..100 {
            gateway.idle();
        }
        assert_eq!(w.next.load(Ordering::SeqCst), 0);
    }
}
