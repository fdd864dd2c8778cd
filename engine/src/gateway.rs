//! [`Gateway`]: the producer handle of the input ring. One clone per producer thread.

use crate::command::{Command, CommandKind};
use crate::idle::{IdleStrategy, Idler, Wakeups};
use crate::types::{Sequence, Timestamp};
use crossbeam_utils::CachePadded;
use disruptor::{MultiProducer, Producer, SingleConsumerBarrier};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Why a command was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The input ring is full right now (only from the `try_` forms): back off and retry,
    /// or shed load.
    #[error("the input ring is full: retry later or shed load")]
    Busy,
    /// The pipeline is shutting down or shut down: nothing more is taken.
    #[error("the pipeline is shut down: no more commands are taken")]
    Closed,
    /// The pipeline halted on a failure (a consumer with the halt policy failed, or the
    /// matcher panicked): nothing more is taken. `Pipeline::status().halted` says why.
    #[error("the pipeline halted on a failure: no more commands are taken (see its status)")]
    Halted,
}

/// State shared by every gateway of one pipeline.
pub(crate) struct GatewayShared {
    pub closed: AtomicBool,
    /// Set when the pipeline halts on a failure.
    pub halted: AtomicBool,
    /// One flag per gateway clone, set while it is inside a submit.
    pub busy: Mutex<Vec<Arc<CachePadded<AtomicU64>>>>,
    pub epoch: Instant,
    /// Nanoseconds since the UNIX epoch at `epoch` (the wall clock, read once).
    pub wall_at_epoch: u64,
    /// The latest time any gateway stamped: stamps never go backwards across gateways.
    pub last_stamp: CachePadded<AtomicU64>,
    /// Input sequence of the ring's slot 0, minus one (after a recovery).
    pub base: u64,
    /// The pipeline's parked stages, woken after each publication.
    pub wakeups: Arc<Wakeups>,
}

impl GatewayShared {
    pub fn new(base: u64) -> Arc<Self> {
        Arc::new(GatewayShared {
            closed: AtomicBool::new(false),
            halted: AtomicBool::new(false),
            busy: Mutex::new(Vec::new()),
            epoch: Instant::now(),
            wall_at_epoch: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
            last_stamp: CachePadded::new(AtomicU64::new(0)),
            base,
            wakeups: Arc::new(Wakeups::default()),
        })
    }

    fn register(&self) -> Arc<CachePadded<AtomicU64>> {
        let flag = Arc::new(CachePadded::new(AtomicU64::new(0)));
        if let Ok(mut v) = self.busy.lock() {
            v.retain(|f| Arc::strong_count(f) > 1);
            v.push(Arc::clone(&flag));
        }
        flag
    }

    /// Stops intake and waits until no gateway is inside a submit: after this returns, every
    /// command that any submit accepted is published in the ring.
    pub fn close_and_quiesce(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let flags: Vec<_> = match self.busy.lock() {
            Ok(v) => v.clone(),
            Err(p) => p.into_inner().clone(),
        };
        for f in flags {
            let mut idle = IdleStrategy::SHARED.idler();
            while f.load(Ordering::SeqCst) != 0 {
                idle.idle();
            }
        }
    }
}

/// A producer handle of the input ring. Cheap to clone; use one clone per thread.
///
/// [`Gateway::submit`] stamps the ingress time (see [`Gateway::now`]) and waits for a free slot; [`Gateway::try_submit`] returns
/// [`SubmitError::Busy`] at once when the ring is full. The `_at` forms keep the time the
/// caller put in the command (replays, scripts). Each returns the command's input sequence.
pub struct Gateway {
    producer: MultiProducer<Command, SingleConsumerBarrier>,
    shared: Arc<GatewayShared>,
    busy: Arc<CachePadded<AtomicU64>>,
    idle: IdleStrategy,
}

impl Clone for Gateway {
    fn clone(&self) -> Self {
        Gateway {
            producer: self.producer.clone(),
            shared: Arc::clone(&self.shared),
            busy: self.shared.register(),
            idle: self.idle,
        }
    }
}

impl Gateway {
    pub(crate) fn new(
        producer: MultiProducer<Command, SingleConsumerBarrier>,
        shared: Arc<GatewayShared>,
        idle: IdleStrategy,
    ) -> Self {
        let busy = shared.register();
        Gateway {
            producer,
            shared,
            busy,
            idle,
        }
    }

    /// The ingress clock: nanoseconds since the UNIX epoch, read from the wall clock once when
    /// the pipeline starts and advanced by a monotonic clock, so times go on across a restart
    /// (recovered GTD orders expire when they should) and never go backwards within a
    /// process, across every gateway of the pipeline (one shared `fetch_max`).
    #[inline]
    pub fn now(&self) -> Timestamp {
        let t = self
            .shared
            .wall_at_epoch
            .saturating_add(self.shared.epoch.elapsed().as_nanos() as u64);
        let prev = self.shared.last_stamp.fetch_max(t, Ordering::AcqRel);
        Timestamp(t.max(prev))
    }

    /// Stamps the ingress time and submits, waiting while the ring is full.
    #[inline]
    pub fn submit(&mut self, kind: CommandKind) -> Result<Sequence, SubmitError> {
        let cmd = Command::new(self.now(), kind);
        self.submit_at(cmd)
    }

    /// Stamps the ingress time and submits, or returns [`SubmitError::Busy`] at once.
    #[inline]
    pub fn try_submit(&mut self, kind: CommandKind) -> Result<Sequence, SubmitError> {
        let cmd = Command::new(self.now(), kind);
        self.try_submit_at(cmd)
    }

    /// Submits a command with the time it carries, waiting while the ring is full.
    pub fn submit_at(&mut self, cmd: Command) -> Result<Sequence, SubmitError> {
        let mut idler: Option<Idler> = None;
        loop {
            match self.try_submit_at(cmd) {
                Err(SubmitError::Busy) => idler.get_or_insert_with(|| self.idle.idler()).idle(),
                other => return other,
            }
        }
    }

    /// Submits an order with its terms (an iceberg's display size or a stop's trigger:
    /// [`crate::command::OrderTerms`]) as two adjacent commands, the terms first, stamped
    /// now; or returns [`SubmitError::Busy`] at once. Returns the order's input sequence.
    /// Plain terms submit the order alone.
    pub fn try_submit_order(
        &mut self,
        terms: crate::command::OrderTerms,
        order: crate::command::NewOrder,
    ) -> Result<Sequence, SubmitError> {
        let now = self.now();
        self.try_submit_order_at(
            Command::new(now, CommandKind::OrderTerms(terms)),
            Command::new(now, CommandKind::NewOrder(order)),
        )
    }

    /// Submits two commands in two adjacent slots (no other producer's command between
    /// them: an order's [`CommandKind::OrderTerms`] and the order), or returns
    /// [`SubmitError::Busy`] at once. Returns the second one's input sequence.
    pub fn try_submit_order_at(
        &mut self,
        terms: Command,
        order: Command,
    ) -> Result<Sequence, SubmitError> {
        if matches!(terms.kind, CommandKind::OrderTerms(t) if t.is_plain()) {
            return self.try_submit_at(order);
        }
        self.open_then(|p| {
            let pair = [terms, order];
            p.try_batch_publish(2, |slots| {
                for (slot, c) in slots.zip(pair) {
                    *slot = c;
                }
            })
            .ok()
        })
    }

    /// Runs `publish` unless the pipeline is halted or closed (the Dekker-style handshake
    /// with `close_and_quiesce`: set busy, then check closed); `None` from it: the ring is
    /// full.
    #[inline(always)]
    fn open_then(
        &mut self,
        publish: impl FnOnce(&mut MultiProducer<Command, SingleConsumerBarrier>) -> Option<i64>,
    ) -> Result<Sequence, SubmitError> {
        self.busy.store(1, Ordering::SeqCst);
        let r = if self.shared.halted.load(Ordering::Acquire) {
            Err(SubmitError::Halted)
        } else if self.shared.closed.load(Ordering::SeqCst) {
            Err(SubmitError::Closed)
        } else {
            match publish(&mut self.producer) {
                Some(s) => {
                    self.shared.wakeups.progress();
                    Ok(Sequence(self.shared.base + s as u64 + 1))
                }
                None => Err(SubmitError::Busy),
            }
        };
        self.busy.store(0, Ordering::Release);
        r
    }

    /// Submits a command with the time it carries, or returns [`SubmitError::Busy`] at once.
    #[inline]
    pub fn try_submit_at(&mut self, cmd: Command) -> Result<Sequence, SubmitError> {
        self.open_then(|p| p.try_publish(|slot| *slot = cmd).ok())
    }
}
