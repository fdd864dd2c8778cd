//! Order history in a real database: a consumer that projects the event stream into a store
//! (SQLite embedded by default, PostgreSQL behind the `postgres` feature) that people and
//! programs can query: every order with its status, the trades, deposits and withdrawals.
//!
//! - **Rows**: `orders` (one row per order id: instrument, account, side, type, time in
//!   force, price, original / open / filled quantity, status, cancel or reject reason, the
//!   event sequence that accepted it, the sequence of its time priority, the last event
//!   sequence that touched it, created / updated engine times), `trades` (one per fill, with
//!   both accounts and the fees when the instrument is funded), `transfers` (deposits and
//!   withdrawals), `symbols` (instrument names when the run knows them) and `meta` (the
//!   last event sequence applied).
//! - **Writes**: the consumer keeps the rows of the live orders in memory (bounded by the
//!   live orders) and a set of the rows changed since the last commit; a commit writes each
//!   changed order once (a price move that touched an order ten times is one upsert), the
//!   new trades and transfers, and `meta.last_seq`, in **one transaction**. It commits at
//!   the end of a ring batch once at least [`HistoryConfig::min_events`] events are pending
//!   or [`HistoryConfig::max_delay`] has passed since the last commit, on a quiet pipeline
//!   from the timeout hook, and at shutdown.
//! - **Exactly once**: the last applied sequence is written in the same transaction as the
//!   rows, so after a crash the store is exactly the state after some sequence `S`; the
//!   consumer skips events up to `S` and a restart replays the journal after `S`
//!   ([`History::catch_up`]).
//! - **Time**: events carry no time; the engine clock after each command comes from the
//!   pipeline ([`ringex_engine::pipeline::ConsumerContext::clocks`]) and stamps the rows
//!   the command touched.

mod consumer;
mod model;
mod raw;
mod rows;
pub mod sqlite;
mod store;

#[cfg(feature = "postgres")]
pub mod postgres;

pub use consumer::{History, HistoryConfig, SymbolSource};
pub use model::*;
pub use store::*;

use ringex_engine::pipeline::ClockReader;
use ringex_engine::{
    AccountId, CancelReason, Consumer, Event, EventKind, InstrumentId, NewOrder, OrderId,
    OrderType, RejectCode, Sequence, Side, TimeInForce,
};
use rustc_hash::{FxHashMap, FxHashSet};
use std::borrow::Cow;
use std::time::{Duration, Instant};
