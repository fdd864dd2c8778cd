//! `ringex node`: hot standby and scale-out on NATS JetStream (feature `nats`).
//!
//! Instruments are sharded across engines; **the sequence comes from JetStream**, never from
//! ringex: each shard's commands are one stream (`RINGEX_CMD_<shard>`, subject
//! `ringex.cmd.<shard>`; `ringex` is the default `--cluster` name, [`Names`]), packed
//! several 64-byte encoded [`Command`]s to a message by the [`Router`]; the engine's input
//! sequence follows from the stream's (the commands of a message come after those of the
//! messages before it), the same on every node, which takes the stream up after a restart
//! from its [`Anchor`]. Every node of a shard (a primary and any number
//! of standbys) consumes that stream in order and runs the full pipeline with its own local
//! journal; being deterministic, they hold the same books. Only the **lease holder** publishes
//! the shard's events (`RINGEX_EVT_<shard>`, subject `ringex.evt.<shard>`): the events of
//! several whole commands to a message (64 bytes each), the message id `<shard>.<first event sequence>`,
//! so JetStream's deduplication drops a re-publication after a failover. The lease is a
//! message on `ringex.lease.<shard>` in the stream `RINGEX_LEASES`, which keeps one message
//! per subject and expires it after `--lease-ms` (how JetStream's key-value buckets work): the primary renews it every fifth of that with a compare-and-set on
//! its revision; a standby tries to create it every fifth of that and, once it holds it,
//! reads the last event the stream has and publishes everything after it.
//!
//! Routing ([`targets`]): a command naming an instrument goes to shard `instrument % shards`
//! (stable: it depends only on the instrument id and the shard count); account-wide
//! commands (block, unblock, a mass cancel of every symbol, tick) go to every shard. Money
//! commands (assets, deposits, withdrawals) have no shard of their own: they go to every
//! shard, so funded trading across shards is not supported (each shard would count a
//! deposit once); shard unfunded instruments.

mod anchor;
mod auth;
mod cli;
mod floor;
mod lease;
mod names;
mod reader;
mod router;
mod routing;
mod shard;
mod streams;

pub use anchor::*;
pub use auth::*;
pub use cli::*;
pub use floor::*;
pub use lease::*;
pub use names::*;
pub use reader::*;
pub use router::*;
pub use routing::*;
pub use shard::*;
pub use streams::*;

use crate::startup::RunError;
use async_nats::jetstream::{self, consumer, context::Publish, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use ringex_consumers::journal::{DurableMark, FsyncPolicy, Journal, JournalConfig};
use ringex_engine::codec::{COMMAND_BYTES, EVENT_BYTES};
use ringex_engine::pipeline::ConsumerOptions;
use ringex_engine::{
    Command, CommandKind, Consumer, Event, Gateway, InstrumentId, Matcher, MatcherCapacity,
    Pipeline, Sequence, SubmitError, Timestamp,
};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// NATS or JetStream refused something.
    #[error("NATS: {0}")]
    Nats(String),
    /// The local pipeline or journal failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// Recovery from the local journal failed.
    #[error(transparent)]
    Recovery(#[from] ringex_consumers::recovery::RecoveryError),
    /// The command stream skipped a sequence (messages deleted from it?).
    #[error("shard {shard}: the command stream went from {expected} to {got}: a gap")]
    Gap {
        /// The shard.
        shard: u32,
        /// The sequence expected.
        expected: u64,
        /// The sequence seen.
        got: u64,
    },
    /// The event stream holds a gap or bytes that are not events.
    #[error("shard {0}: {1}")]
    Events(u32, String),
    /// The runtime could not start.
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
}

pub(crate) fn nats<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> NodeError {
    move |e| NodeError::Nats(format!("{what}: {e}"))
}
