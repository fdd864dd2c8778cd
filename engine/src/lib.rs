//! # ringex engine
//!
//! An in-process exchange core built the LMAX way:
//!
//! ```text
//!  gateways ──submit(Command)──▶ input ring ──▶ matcher ──batch_publish(Event…)──▶ output ring
//!  (any threads)                 (multi-producer) (one thread,             (single producer)
//!                                                  owns every book)           │  │  │  │
//!                                                                  journal ◀──┘  │  │  └──▶ plug-ins
//!                                                                  risk ◀────────┘  └──▶ market data
//! ```
//!
//! Each arrow is one module: [`command`] → [`pipeline`] (input ring) → [`matcher`] →
//! [`event`] → [`pipeline`] (output ring) → [`consumer`].
//!
//! Prices are [`Price`] ticks (`i64`) and quantities [`Qty`] lots (`u64`); decimals live only at
//! the edge ([`instrument`]).
#![deny(missing_docs)]

pub mod book;
pub mod codec;
pub mod command;
pub mod consumer;
pub mod event;
pub mod instrument;
pub mod matcher;
pub mod pipeline;
pub mod state;
pub mod types;
pub mod workload;

pub use book::naive::NaiveMatcher;
pub use book::replica::BookReplica;
pub use book::RestingOrder;
pub use command::{Command, CommandKind, NewOrder};
pub use consumer::Consumer;
pub use event::{CancelReason, Event, EventKind, RejectCode};
pub use instrument::{EdgeError, InstrumentSpec};
pub use matcher::{Matcher, MatcherCapacity, MatchingEngine};
pub use pipeline::{
    ConsumerId, ConsumerOptions, Gateway, IdleStrategy, Pipeline, PipelineBuilder, PipelineError,
    SubmitError,
};
pub use types::*;
