//! # ringex consumers
//!
//! The consumers that ship with ringex, each a [`ringex_engine::Consumer`] on its own
//! thread reading the output ring:
//!
//! - [`journal`]: the persistence batcher (group-committed, checksummed segments), with
//!   [`snapshot`]s and [`recovery`].
//! - [`balances`]: every account's balances, readable from any thread.
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
