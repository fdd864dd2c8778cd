//! The matcher's thread: polls the input ring, runs each command through the matcher and
//! publishes its events into the output ring in coalesced batches.

use super::*;

/// Flush the matcher's event buffer before it passes this many events (at most half a
/// publish chunk, so a command of up to half a chunk of events is never split)…
pub(crate) const FLUSH_AT: usize = 512;
/// …or this many commands.
pub(crate) const COALESCE: usize = 64;

/// Publishes `events` in batches of at most `chunk`, waiting for room.
#[inline]
pub(crate) fn publish(
    output: &mut SingleProducer<Event, MultiConsumerBarrier>,
    events: &[Event],
    chunk: usize,
    idler: &mut Idler,
    shared: &Shared,
) -> bool {
    for part in events.chunks(chunk) {
        while output
            .try_batch_publish(part.len(), |slots| {
                for (slot, e) in slots.zip(part) {
                    *slot = *e;
                }
            })
            .is_err()
        {
            // A halted pipeline may never free the slot (its failed consumer stopped).
            if shared.halted() {
                return false;
            }
            idler.idle();
        }
        idler.reset();
        shared.gateway.wakeups.progress();
    }
    true
}

/// The matcher stage: commands in, each command's events out in one batch (several
/// commands' events may share a batch).
/// (Never inlined, so that profilers and callgrind can attribute the stage.)
#[inline(never)]
pub(crate) fn matcher_loop(
    mut matcher: Matcher,
    mut input: EventPoller<Command, MultiProducerBarrier>,
    mut output: SingleProducer<Event, MultiConsumerBarrier>,
    shared: Arc<Shared>,
    idle: IdleStrategy,
    core: Option<core_affinity::CoreId>,
    panic_at: u64,
) -> Option<Matcher> {
    pin(core, "matcher");
    // A panic in the matcher (a bug: input never panics it) halts the pipeline instead of
    // leaving gateways spinning on a ring nobody reads; the matcher's state is then
    // suspect and is not handed back.
    let r = catch_unwind(AssertUnwindSafe(|| {
        run_matcher(
            &mut matcher,
            &mut input,
            &mut output,
            &shared,
            idle,
            panic_at,
        )
    }));
    if let Err(p) = r {
        shared.halt(format!("matcher panicked: {}", panic_message(&*p)));
        drop(output);
        return None;
    }
    // Dropping the output producer tells the consumers to finish after the last event.
    drop(output);
    shared.gateway.wakeups.wake();
    Some(matcher)
}

pub(crate) fn run_matcher(
    matcher: &mut Matcher,
    input: &mut EventPoller<Command, MultiProducerBarrier>,
    output: &mut SingleProducer<Event, MultiConsumerBarrier>,
    shared: &Shared,
    idle: IdleStrategy,
    panic_at: u64,
) {
    let chunk = shared.output_capacity.min(4096);
    let flush_at = FLUSH_AT.min(chunk / 2).max(1);
    let mut events: Vec<Event> = Vec::with_capacity(4096);
    let mut idler = idle.idler_in(&shared.gateway.wakeups);
    let mut publish_idler = idle.idler_in(&shared.gateway.wakeups);
    let mut cmd_seq = shared.commands.load(Ordering::Relaxed);
    let mut published = shared.published.load(Ordering::Relaxed);
    let mut draining = false;
    while !shared.halted() {
        match input.poll() {
            Ok(mut guard) => {
                idler.reset();
                // Events of several commands go out in one ring batch (fewer publishes),
                // flushed before the buffer passes `flush_at` events or COALESCE commands, so a
                // command's events are never split unless it alone outgrows a chunk.
                let mut pending = 0usize;
                for cmd in &mut guard {
                    if events.len() >= flush_at || pending == COALESCE {
                        if !publish(output, &events, chunk, &mut publish_idler, shared) {
                            return;
                        }
                        published += events.len() as u64;
                        events.clear();
                        pending = 0;
                    }
                    cmd_seq += 1;
                    if cmd_seq == panic_at {
                        panic!("injected matcher panic at command {cmd_seq}");
                    }
                    let before = events.len();
                    matcher.process(Sequence(cmd_seq), cmd, &mut events);
                    if events.len() > before {
                        shared
                            .clocks
                            .set(published + events.len() as u64, matcher.clock());
                    }
                    pending += 1;
                }
                drop(guard);
                if !publish(output, &events, chunk, &mut publish_idler, shared) {
                    return;
                }
                published += events.len() as u64;
                events.clear();
                shared.commands.store(cmd_seq, Ordering::Release);
                shared.published.store(published, Ordering::Release);
            }
            Err(Polling::NoEvents) => {
                if draining {
                    break;
                }
                // Once intake is closed every accepted command is published: poll once
                // more after seeing the flag, then stop.
                draining = shared.drain.load(Ordering::Acquire);
                if !draining {
                    idler.idle();
                }
            }
            Err(Polling::Shutdown) => break,
        }
    }
}
