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
//! Each arrow is one module: [`command`] → [`gateway`] → [`pipeline`] (input ring) →
//! [`matcher`] → [`event`] → [`pipeline`] (output ring) → [`consumer`].
//!
//! Prices are [`Price`] ticks (`i64`) and quantities [`Qty`] lots (`u64`); decimals live only at
//! the edge ([`instrument`]).
//!
//! # Modules, from the bottom up
//!
//! - [`types`]: ids, prices, quantities, sides, sequences, time.
//! - [`reject`]: [`RejectCode`], shared by commands and events.
//! - [`funds`]: assets, funded instrument definitions, balances, hold and fee arithmetic.
//! - [`command`]: what gateways submit; [`event`]: what the matcher emits; [`codec`]: their
//!   stable 64-byte binary forms (journal, snapshots, the network).
//! - [`instrument`]: the decimal edge (tick and lot sizes, exact conversion).
//! - [`book`]: the fast book (order pool records, levels, ladders, books, the order-id
//!   index) and the [`BookReplica`] that rebuilds books from events.
//! - [`matching`]: the [`MatchingEngine`] contract; [`matcher`]: the fast matcher, with
//!   the money checks, holds and settlement.
//! - [`state`]: the engine's snapshot form.
//! - [`idle`]: idle strategies; [`gateway`]: submitting into the input ring;
//!   [`context`]: what a consumer gets at start; [`consumer`]: the plug-in contract.
//! - [`pipeline`]: the builder, the matcher's and the consumers' threads, status, failure
//!   policies.
//!
//! # Features
//!
//! - `testkit` (off by default): test and benchmark support — the naive reference matcher
//!   (`book::naive`, `NaiveMatcher`), seeded workload generators (`workload`, and
//!   `policy_workload` for pro-rata levels, icebergs and stops, `id_order` for order ids in
//!   any order of arrival), the LOBSTER
//!   reader and checked replay (`lobster`, which brings `zip` and `flate2`), and a counting
//!   allocator (`testing`). An embedder needs none of it.
//!
//! ```
//! use ringex_engine::*;
//! let mut m = Matcher::default();
//! let mut out = Vec::new();
//! let add = Command::new(Timestamp(0), CommandKind::AddInstrument(InstrumentId(0).into()));
//! m.process(Sequence(1), &add, &mut out);
//! let sell = NewOrder::limit(InstrumentId(0), AccountId(1), OrderId(1), Side::Sell, Price(100), Qty(5));
//! m.process(Sequence(2), &Command::new(Timestamp(1), CommandKind::NewOrder(sell)), &mut out);
//! let buy = NewOrder::limit(InstrumentId(0), AccountId(2), OrderId(2), Side::Buy, Price(101), Qty(3));
//! m.process(Sequence(3), &Command::new(Timestamp(2), CommandKind::NewOrder(buy)), &mut out);
//! assert!(matches!(out.last().unwrap().kind, EventKind::Fill { price: Price(100), qty: Qty(3), .. }));
//! ```
#![deny(missing_docs)]

pub mod book;
pub mod codec;
pub mod command;
pub mod consumer;
pub mod context;
pub mod event;
pub mod funds;
pub mod gateway;
#[cfg(feature = "testkit")]
pub mod id_order;
pub mod idle;
pub mod instrument;
#[cfg(feature = "testkit")]
pub mod lobster;
pub mod matcher;
pub mod matching;
pub mod pipeline;
#[cfg(feature = "testkit")]
pub mod policy_workload;
pub mod reject;
pub mod state;
#[cfg(feature = "testkit")]
pub mod testing;
pub mod types;
#[cfg(feature = "testkit")]
pub mod workload;

#[cfg(feature = "testkit")]
pub use book::naive::NaiveMatcher;
pub use book::replica::BookReplica;
pub use book::RestingOrder;
pub use command::{Command, CommandKind, NewOrder, OrderTerms};
pub use consumer::Consumer;
pub use event::{CancelReason, Event, EventKind, RejectCode};
pub use funds::{Amount, AssetId, Balance, Funding, InstrumentDef, Ledger, Rate};
pub use instrument::{EdgeError, InstrumentSpec};
pub use matcher::{Matcher, MatcherCapacity, MatchingEngine};
pub use pipeline::{
    ConsumerId, ConsumerOptions, FailurePolicy, Gateway, IdleStrategy, Pipeline, PipelineBuilder,
    PipelineError, SubmitError,
};
pub use types::*;
