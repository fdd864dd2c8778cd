//! The `ringex` command's subcommands that are not servers: `run` (a script through the
//! pipeline), `recover`, `bench` (the latency harness), `lobster` (replay and check real
//! data), `query` and `reconcile` (the history store). `serve` and `node` have their own
//! modules ([`crate::serve`], [`crate::node`]).

pub mod bench;
pub mod lobster;
pub mod query;
pub mod run;
