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
//! - **Seeing ahead** (optional): a consumer whose `lookahead()` is `k` > 0 gets
//!   `prefetch(event)` for each event `k` events before that event's `on_event` (or when its
//!   batch ends), to start loading the state it will touch; [`prefetch`] is the hint. It
//!   changes nothing else: every event still reaches `on_event` once, in order.
//!
//! The pipeline calls consumers through generics (one monomorphized loop per consumer type),
//! never through `dyn`.

use crate::context::ConsumerContext;
use crate::event::Event;
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

    /// How many events ahead of [`Consumer::on_event`] the pipeline shows this consumer
    /// each event in [`Consumer::prefetch`] (0, the default: none). Read once, at start;
    /// at most [`MAX_LOOKAHEAD`].
    fn lookahead(&self) -> usize {
        0
    }

    /// An event that [`Consumer::on_event`] will get `lookahead()` events from now (or at
    /// the end of its batch): a hint. A consumer whose state is larger than the caches
    /// starts loading the state the event will touch, so that the loads of several events
    /// overlap instead of each waiting on memory in turn. Must not change what `on_event`
    /// does.
    fn prefetch(&mut self, event: &Event) {
        let _ = event;
    }
}

/// Starts loading the cache line at `p` into the caches, for a consumer's
/// [`Consumer::prefetch`]: a hint, nothing is read (any address will do).
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never dereferences its address: it cannot fault or read, whatever
    // `p` is; SSE is part of x86_64. Measured (docs/performance-log.md): risk alone on the
    // multi-symbol stream 7.1–7.5M → 9.7–10.4M events/s with its state loaded ahead.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The most events a consumer is shown ahead ([`Consumer::lookahead`]).
pub const MAX_LOOKAHEAD: usize = 16;

/// Delivers one batch of `n` events, whose sequences follow `seq`, to a consumer: each event
/// first to [`Consumer::prefetch`] (when `lookahead` > 0), then `lookahead` events later to
/// [`Consumer::on_event`], the last one with `end_of_batch`. The pipeline's stages and the
/// consumer benchmarks drive consumers through it.
#[inline]
pub fn deliver<'a, C: Consumer + ?Sized>(
    consumer: &mut C,
    lookahead: usize,
    events: impl Iterator<Item = &'a Event>,
    seq: u64,
    n: u64,
) {
    let mut s = seq;
    let end = seq + n;
    let lookahead = lookahead.min(MAX_LOOKAHEAD);
    if lookahead == 0 {
        for e in events {
            s += 1;
            consumer.on_event(e, Sequence(s), s == end);
        }
        return;
    }
    // A ring of the events shown but not yet handled.
    let mut window: [Option<&Event>; MAX_LOOKAHEAD] = [None; MAX_LOOKAHEAD];
    let (mut head, mut len) = (0usize, 0usize);
    for e in events {
        consumer.prefetch(e);
        if len == lookahead {
            if let Some(old) = window[head].take() {
                s += 1;
                consumer.on_event(old, Sequence(s), s == end);
            }
            head = (head + 1) % MAX_LOOKAHEAD;
            len -= 1;
        }
        window[(head + len) % MAX_LOOKAHEAD] = Some(e);
        len += 1;
    }
    while len > 0 {
        if let Some(old) = window[head].take() {
            s += 1;
            consumer.on_event(old, Sequence(s), s == end);
        }
        head = (head + 1) % MAX_LOOKAHEAD;
        len -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use crate::types::InstrumentId;

    /// Records what it is shown and handed.
    struct Recorder {
        lookahead: usize,
        log: Vec<(char, u32, u64, bool)>,
    }

    impl Consumer for Recorder {
        fn name(&self) -> &str {
            "recorder"
        }
        fn on_event(&mut self, e: &Event, s: Sequence, end: bool) {
            self.log.push(('e', tag(e), s.0, end));
        }
        fn lookahead(&self) -> usize {
            self.lookahead
        }
        fn prefetch(&mut self, e: &Event) {
            self.log.push(('p', tag(e), 0, false));
        }
    }

    fn tag(e: &Event) -> u32 {
        e.instrument().map_or(u32::MAX, |i| i.0)
    }

    /// Every event reaches `on_event` once, in order, with its sequence and the batch's end
    /// on the last; with a lookahead each is shown first, exactly that many events before
    /// it is handled (or when the batch ends).
    #[test]
    fn deliver_hands_every_event_once_in_order_after_showing_it_ahead() {
        for lookahead in [0, 1, 3, 8, 16, 40] {
            for n in 0..40u32 {
                let events: Vec<Event> = (0..n)
                    .map(|i| {
                        Event::new(
                            Sequence(1),
                            EventKind::SnapshotRequested {
                                instrument: InstrumentId(i),
                            },
                        )
                    })
                    .collect();
                let mut r = Recorder {
                    lookahead,
                    log: Vec::new(),
                };
                deliver(&mut r, lookahead, events.iter(), 100, n as u64);
                let handled: Vec<_> = r.log.iter().filter(|x| x.0 == 'e').copied().collect();
                let want: Vec<_> = (0..n)
                    .map(|i| ('e', i, 101 + i as u64, i + 1 == n))
                    .collect();
                assert_eq!(handled, want, "lookahead {lookahead}, {n} events");
                let la = lookahead.min(MAX_LOOKAHEAD);
                let shown = r.log.iter().filter(|x| x.0 == 'p').count();
                assert_eq!(shown, if la == 0 { 0 } else { n as usize });
                for i in 0..n {
                    let p = r.log.iter().position(|x| *x == ('p', i, 0, false));
                    let e = r.log.iter().position(|x| x.0 == 'e' && x.1 == i);
                    if la > 0 {
                        let (p, e) = (p.expect("shown"), e.expect("handled"));
                        assert!(p < e, "shown before handled");
                        // Shown `la` events ahead: between the two, `la` more are shown
                        // (fewer near the end of the batch).
                        let between = r.log[p + 1..e].iter().filter(|x| x.0 == 'p').count();
                        assert_eq!(between, la.min((n - 1 - i) as usize));
                    }
                }
            }
        }
    }
}
