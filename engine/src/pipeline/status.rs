//! What [`super::Pipeline::status`] and [`super::Pipeline::shutdown`] report.

use super::*;

/// One consumer's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerStatus {
    /// Its name.
    pub name: String,
    /// The last output sequence it has processed (0: none yet).
    pub sequence: u64,
    /// Set once it panicked: what happened. It is skipped from then on.
    pub failure: Option<String>,
}

/// A point-in-time view of the pipeline, read without stopping anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineStatus {
    /// Commands the matcher has processed (the last input sequence).
    pub commands_processed: u64,
    /// Events the matcher has published (the last output sequence).
    pub events_published: u64,
    /// Slots of the input ring.
    pub input_capacity: usize,
    /// Slots of the output ring.
    pub output_capacity: usize,
    /// Every consumer, in registration order.
    pub consumers: Vec<ConsumerStatus>,
    /// Set once the pipeline halted on a failure: which stage and why.
    pub halted: Option<String>,
}

impl PipelineStatus {
    /// How many published events a consumer has not processed yet.
    pub fn lag(&self, id: ConsumerId) -> Option<u64> {
        self.consumers
            .get(id.0)
            .map(|c| self.events_published.saturating_sub(c.sequence))
    }
}

/// What a clean shutdown reports.
pub struct ShutdownReport {
    /// The matcher, with every book, after the last command (none if it panicked).
    pub matcher: Option<Matcher>,
    /// Set when the pipeline halted on a failure: which stage and why.
    pub halted: Option<String>,
    /// Commands processed.
    pub commands_processed: u64,
    /// Events published.
    pub events_published: u64,
    /// Each consumer's final status.
    pub consumers: Vec<ConsumerStatus>,
    pub(crate) values: Vec<Option<Box<dyn Any + Send>>>,
}

impl ShutdownReport {
    /// Takes back a consumer by its id and type (for its final state).
    pub fn take_consumer<C: Consumer>(&mut self, id: ConsumerId) -> Option<C> {
        let v = self.values.get_mut(id.0)?.take()?;
        match v.downcast::<C>() {
            Ok(c) => Some(*c),
            Err(v) => {
                self.values[id.0] = Some(v);
                None
            }
        }
    }
}

pub(crate) fn status_of(shared: &Shared) -> PipelineStatus {
    PipelineStatus {
        commands_processed: shared.commands.load(Ordering::Acquire),
        events_published: shared.published.load(Ordering::Acquire),
        input_capacity: shared.input_capacity,
        output_capacity: shared.output_capacity,
        consumers: shared
            .consumers
            .iter()
            .map(|c| ConsumerStatus {
                name: c.name.clone(),
                sequence: c.sequence.load(Ordering::Acquire),
                failure: if c.failed.load(Ordering::Acquire) {
                    c.failure.lock().ok().and_then(|f| f.clone())
                } else {
                    None
                },
            })
            .collect(),
        halted: if shared.halted() {
            shared.halt_reason.lock().ok().and_then(|r| r.clone())
        } else {
            None
        },
    }
}
