//! [`PipelineError`]: why a pipeline could not be built or started.

use super::*;

/// Why a pipeline could not be built or started. Each variant says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A core id that this machine does not have.
    #[error("core {core} does not exist on this machine (available cores: {available:?}); pick one of those or leave the stage unpinned")]
    NoSuchCore {
        /// The core asked for.
        core: usize,
        /// The cores this process may run on.
        available: Vec<usize>,
    },
    /// Ring sizes must be powers of two, at least 2.
    #[error("{ring} ring size {size} must be a power of two (e.g. 65536)")]
    RingSize {
        /// Which ring.
        ring: &'static str,
        /// The size asked for.
        size: usize,
    },
    /// The output ring needs at least one consumer to free its slots.
    #[error("add at least one consumer: the output ring needs a reader")]
    NoConsumers,
    /// A consumer was gated after an id that is not an earlier consumer.
    #[error("consumer {consumer} is gated after {after:?}, which is not an earlier consumer of this builder")]
    BadGate {
        /// The consumer's name.
        consumer: String,
        /// The bad dependency.
        after: ConsumerId,
    },
    /// A thread could not be spawned.
    #[error("could not spawn thread {name}: {source}")]
    Spawn {
        /// The thread.
        name: String,
        /// The cause.
        source: std::io::Error,
    },
}
