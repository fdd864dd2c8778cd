//! # ringex bench
//!
//! The `ringex` binary's library: the product (command line, server, node) and the
//! measuring tools (latency harness, topologies, benchmark binaries).
//!
//! Product:
//! - [`script`]: the command-script format; [`csv`]: the output formats (events, book,
//!   balances, allocations, market data); [`meta`]: the edge state kept beside a journal.
//! - [`startup`]: reading a script, recovering a journal directory, opening the history
//!   store (shared by [`cli`], [`serve`] and [`node`]).
//! - [`cli`]: `run`, `recover`, `bench`, `lobster`, `query`, `reconcile`.
//! - `serve` (feature `serve`): WebSocket order entry and market data, REST, metrics, the
//!   live page.
//! - `node` (feature `nats`): a shard's node on NATS JetStream, the router, the reader.
//!
//! Measuring: [`harness`] (the pipeline under a workload, HDR histograms per stage, the
//! report and chart, the ring topologies and baselines, the benchmark binaries' flag
//! checks); the binaries in `src/bin/`.
//!
//! Features: `serve`, `nats`, `postgres` (the history store's PostgreSQL backend in the
//! benchmarks), `peers` (the open Rust order books in the `peers` benchmark).
#![deny(missing_docs)]

pub mod cli;
pub mod csv;
pub mod harness;
pub mod meta;
#[cfg(feature = "nats")]
pub mod node;
pub mod script;
#[cfg(feature = "serve")]
pub mod serve;
pub mod startup;

/// The LOBSTER reader and replay (in the engine's test kit, so that its criterion
/// benchmarks replay it).
pub use ringex_engine::lobster;

// The module paths of the earlier flat layout, kept for one release.
#[doc(hidden)]
pub use cli::{bench as bench_cmd, lobster as lobster_cmd, query as history_cmd, run};
#[doc(hidden)]
pub use harness::{args, report, topology};
