//! Runnable ringex examples: `cargo run --release --example <name>`.
//!
//! - `minimal_exchange`: start a pipeline, submit from two gateway threads, read fills,
//!   shut down.
//! - `custom_consumer`: a plug-in consumer written from scratch (VWAP per instrument).
//! - `agents_demo`, `market_maker`, `twap`, `passive_buyer` (feature `agents`): trading
//!   agents, WebSocket clients of `ringex serve` ([`agents`]).

#[cfg(feature = "agents")]
pub mod agents;
