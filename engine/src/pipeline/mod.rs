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

mod builder;
mod consumer_stage;
mod error;
mod matcher_stage;
mod options;
mod status;

pub(crate) use crate::context::EventClocks;
pub use crate::context::{ClockReader, ConsumerContext};
pub(crate) use crate::gateway::GatewayShared;
pub use crate::gateway::{Gateway, SubmitError};
pub use crate::idle::{IdleStrategy, Idler, Wakeups};
use builder::*;
pub use builder::{validate_core, PipelineBuilder};
use consumer_stage::*;
pub use error::PipelineError;
use matcher_stage::*;
pub use options::{ConsumerId, ConsumerOptions, FailurePolicy};
use status::*;
pub use status::{ConsumerStatus, PipelineStatus, ShutdownReport};

use crate::command::Command;
use crate::consumer::Consumer;
use crate::event::Event;
use crate::matcher::Matcher;
use crate::types::Sequence;
use crossbeam_utils::CachePadded;
use disruptor::{
    EventPoller, MultiConsumerBarrier, MultiProducerBarrier, Polling, Producer, SingleProducer,
    SingleProducerBarrier,
};
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Live counters of one consumer.
pub(crate) struct ConsumerCell {
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
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
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
pub(crate) struct Shared {
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
        self.gateway.wakeups.wake();
    }

    #[inline]
    fn halted(&self) -> bool {
        self.gateway.halted.load(Ordering::Relaxed)
    }
}

/// A consumer thread: it hands back its consumers (type-erased) when joined.
pub(crate) type ConsumerThread = JoinHandle<Vec<Box<dyn Any + Send>>>;

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
        self.gateway_shared.wakeups.wake();
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
