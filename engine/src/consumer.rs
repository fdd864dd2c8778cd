//! The plug-in consumer API.
//!
//! A consumer reads the matcher's events from the output ring on its own thread, in
//! parallel with the other consumers. Implement [`Consumer`] and register it with
//! [`crate::pipeline::PipelineBuilder::consumer`].
//!
//! # The contract
//!
//! - `on_start` runs once on the consumer's thread before the first event.
//! - `on_event(event, sequence, end_of_batch)` runs for every event, in sequence order
//!   (sequences count output events from 1). Events arrive in batches: whatever the matcher
//!   published since the last poll. **Flush buffered I/O when `end_of_batch` is true**
//!   (group commit); that is the moment the ring has nothing more for you right now.
//! - **Never block forever** in `on_event`: a slow consumer back-pressures the matcher through
//!   the ring (the matcher cannot reuse a slot until every consumer has read it), which is
//!   the intended flow control, but a consumer that never returns stops the whole pipeline.
//! - `on_shutdown` runs once after the last event, when the pipeline shuts down.
//! - **A failure is never silent**: a panic is caught on the consumer's thread, and a fatal
//!   error is reported through [`Consumer::failure`]; either is logged with `tracing` and
//!   recorded in [`crate::pipeline::ConsumerStatus`] (`failure`). Then the consumer's
//!   [`crate::pipeline::FailurePolicy`] applies: `Halt` (the default) stops the whole
//!   pipeline — the matcher takes no more commands, gateways return
//!   [`crate::pipeline::SubmitError::Halted`], `status().halted` names the stage and why;
//!   `Skip` skips the consumer from then on while the rest runs. Either way the failing
//!   batch counts as not processed, and no consumer ever runs ahead of one it is gated
//!   after: a consumer gated after a failed one fails too ("upstream failed") and its own
//!   policy applies.
//! - Calls never overlap: a consumer is only ever called from its own thread, so it needs no
//!   locks for its own state.
//!
//! The pipeline calls consumers through generics (one monomorphized loop per consumer type),
//! never through `dyn`.

use crate::event::Event;
use crate::pipeline::ConsumerContext;
use crate::types::Sequence;

/// A plug-in reader of the event stream. See the module docs for the contract.
pub trait Consumer: Send + 'static {
    /// A short name: the thread name and the key in status reports.
    fn name(&self) -> &str;

    /// Called once on the consumer's thread before the first event.
    fn on_start(&mut self) {}

    /// Like [`Consumer::on_start`], with access to the pipeline (a gateway for consumers
    /// that submit commands, such as a kill switch). The default calls `on_start`.
    fn on_start_with(&mut self, ctx: &ConsumerContext) {
        let _ = ctx;
        self.on_start();
    }

    /// Called for every event in sequence order. Flush at `end_of_batch`.
    fn on_event(&mut self, event: &Event, sequence: Sequence, end_of_batch: bool);

    /// Called once after the last event.
    fn on_shutdown(&mut self) {}

    /// How long the pipeline may go quiet before [`Consumer::on_timeout`] is called (like
    /// LMAX's timeout handler); `None` (the default): never. Read once, at start.
    fn timeout(&self) -> Option<std::time::Duration> {
        None
    }

    /// Called on the consumer's thread when no event has arrived for [`Consumer::timeout`]:
    /// periodic work on a quiet pipeline (an interval fsync, a retry). Failures are checked
    /// after it as after a batch.
    fn on_timeout(&mut self) {}

    /// How far consumers gated after this one may read (an output sequence), when that is
    /// less than what it has processed; `None` (the default): everything it processed. The
    /// journal answers its durable sequence, so a consumer gated after it (client acks) only
    /// ever sees durable events, whatever the fsync policy.
    fn gate_sequence(&self) -> Option<u64> {
        None
    }

    /// A fatal error this consumer cannot recover from (a journal that cannot write), or
    /// `None`. Checked after every batch (and after `on_shutdown`): when it is `Some`, the
    /// batch counts as not processed — no consumer gated after this one ever sees it — and
    /// the consumer's [`crate::pipeline::FailurePolicy`] applies, exactly as for a panic.
    fn failure(&self) -> Option<String> {
        None
    }
}
