//! # ringex bench
//!
//! The `ringex` command-line tool (`run`, and later `bench`, `recover`, `lobster`) and the
//! latency harness. The library part holds the script format and the CSV writers so that
//! tests and users can drive the engine from files.
#![deny(missing_docs)]

pub mod args;
pub mod bench_cmd;
pub mod csv;
pub mod harness;
pub mod history_cmd;
/// The LOBSTER reader and replay (in the engine, so that its criterion benchmarks replay it).
pub use ringex_engine::lobster;
pub mod lobster_cmd;
pub mod meta;
#[cfg(feature = "nats")]
pub mod node;
pub mod report;
pub mod run;
pub mod script;
#[cfg(feature = "serve")]
pub mod serve;
pub mod topology;
