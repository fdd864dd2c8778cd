//! # ringex consumers
//!
//! The consumers that ship with ringex, each a [`ringex_engine::Consumer`] reading the
//! output ring:
//!
//! - [`journal`]: the persistence batcher (group-committed, checksummed segments), with
//!   [`snapshot`]s and [`recovery`]; [`files`]: the names and listing of a journal
//!   directory's segments and snapshots; [`storage`]: where segments live (the disk, or a
//!   test disk that can lose power).
//! - [`risk`]: post-trade risk (positions, P&L, exposure, limits, the kill switch).
//! - [`market_data`]: L2 books, best bid and offer, trades, conflated.
//! - [`allocation`]: the pro-rata allocation of block orders' fills.
//! - [`balances`]: every account's balances, readable from any thread.
//! - [`history`]: order history in SQLite (and PostgreSQL), with queries.
//!
//! # Features
//!
//! - `postgres` (off by default): the history store on PostgreSQL (`history::postgres`).
#![deny(missing_docs)]

pub mod allocation;
pub mod balances;
pub mod files;
pub mod history;
pub mod journal;
pub mod market_data;
pub mod recovery;
pub mod risk;
pub mod snapshot;
pub mod storage;
