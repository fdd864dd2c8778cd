//! Runnable ringex examples: `cargo run --release --example <name>`.
//!
//! - `minimal_exchange`: start a pipeline, submit from two gateway threads, read fills,
//!   shut down.
//! - `custom_consumer`: a plug-in consumer written from scratch (VWAP per instrument).
