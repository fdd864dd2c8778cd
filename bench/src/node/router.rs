//! [`Router`]: publishes commands to their shards' streams, packed several to a message,
//! each message with a stable id.
//!
//! **Batches.** The commands of one submission bound for one shard go out in messages of up
//! to [`Router::with_batch`] commands (64 bytes each, in order; 1024 by default): JetStream
//! stores and acknowledges a message, not a command, so that is what bounds a shard's rate.
//! Nothing waits for a batch to fill: a submission of one command is one message at once.
//! The cut points depend only on the commands and the batch size.
//!
//! **Exactly once on the stream.** Every command message carries the message id
//! `<submission>.<index>.<shard>` (`Nats-Msg-Id`): the submission's id, the position of
//! the message's first command in it and the shard. A publish whose acknowledgement is lost
//! is retried with the same id, and so is every message of a submission that is submitted
//! again with the same id and batch size (`ringex node submit` uses a digest of the
//! script's bytes unless `--id` says otherwise): JetStream drops a message whose id it has
//! seen within the command stream's duplicate window (two minutes), so nothing is
//! sequenced twice.
//!
//! **A command for every shard** (block, unblock, a mass cancel of every symbol, a tick,
//! money commands) is one message per shard, each acknowledged on its own. If the router
//! stops after some shards acknowledged it, those shards apply it at their place in their
//! streams and the others do not: they disagree until it reaches them. `submit` fails then,
//! naming the command, and submitting the same submission again (same id, within the
//! window) completes it: the shards that hold it drop the repeat, the others get it.

use super::*;
use std::sync::atomic::{AtomicU64, Ordering};

/// Publishes commands to their shards' streams.
pub struct Router {
    js: jetstream::Context,
    names: Names,
    shards: u32,
    /// Most commands in one message.
    batch: usize,
    /// Test knob: every n-th acknowledgement is treated as lost (the message was stored),
    /// so the publish is retried with the same id.
    lose_every: u64,
    acks_seen: AtomicU64,
}

/// What a submission did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Submitted {
    /// Messages the streams acknowledged (one per command and shard).
    pub messages: u64,
    /// Of those, messages a stream already held (a retry, or a submission made again).
    pub duplicates: u64,
    /// Publishes retried after an acknowledgement was lost.
    pub retries: u64,
}

/// Commands in one message unless [`Router::with_batch`] says otherwise.
pub const DEFAULT_BATCH: usize = 1024;

/// How often a publish is tried before the submission fails.
const ATTEMPTS: u32 = 5;

static SUBMISSIONS: AtomicU64 = AtomicU64::new(0);

/// A submission id unique to this process and moment.
fn fresh_id() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}-{t:x}-{}",
        std::process::id(),
        SUBMISSIONS.fetch_add(1, Ordering::Relaxed)
    )
}

/// Most commands in one message: 8,192 × 64 bytes = 512 KiB, half of NATS's default
/// largest payload.
pub const MAX_BATCH: usize = 8_192;

/// One message in flight.
struct Inflight {
    ack: jetstream::context::PublishAckFuture,
    shard: u32,
    index: usize,
    payload: Bytes,
}

impl Router {
    /// A router on `url` for `shards` shards (creates the streams if needed).
    pub async fn connect(url: &str, cluster: &str, shards: u32) -> Result<Router, NodeError> {
        Router::connect_with(url, &NatsAuth::default(), cluster, shards).await
    }

    /// The same with NATS credentials.
    pub async fn connect_with(
        url: &str,
        auth: &NatsAuth,
        cluster: &str,
        shards: u32,
    ) -> Result<Router, NodeError> {
        let client = auth.connect(url, "ringex-router").await?;
        let js = jetstream::new(client);
        let names = Names::new(cluster);
        setup(&js, &names, 0..shards, Duration::from_millis(500)).await?;
        Ok(Router {
            js,
            names,
            shards: shards.max(1),
            batch: DEFAULT_BATCH,
            lose_every: 0,
            acks_seen: AtomicU64::new(0),
        })
    }

    /// Test knob: treat every `n`-th acknowledgement as lost (0: none), so its publish is
    /// retried with the same message id.
    pub fn lose_acks_every(mut self, n: u64) -> Self {
        self.lose_every = n;
        self
    }

    /// Packs up to `n` commands into one message (1: a message per command, as streams
    /// written before batches hold them). Resubmitting a submission completes it only with
    /// the batch size it was first submitted with (the message ids follow the cut points).
    pub fn with_batch(mut self, n: usize) -> Self {
        self.set_batch(n);
        self
    }

    /// [`Router::with_batch`] on a router in use.
    pub fn set_batch(&mut self, n: usize) {
        self.batch = n.clamp(1, MAX_BATCH);
    }

    /// The JetStream context.
    pub fn context(&self) -> &jetstream::Context {
        &self.js
    }

    /// Publishes `cmds` in order as a new submission (a fresh id); returns the messages
    /// published (one per batch and shard).
    pub async fn submit(&self, cmds: &[Command], window: usize) -> Result<u64, NodeError> {
        Ok(self.submit_as(&fresh_id(), cmds, window).await?.messages)
    }

    /// Publishes `cmds` in order (each to its shard or shards) as submission `id`, packed
    /// into messages of up to the batch size per shard, with up to `window` messages'
    /// acknowledgements in flight. Submitting the same `id` again (with the same batch size)
    /// publishes nothing twice (within the streams' duplicate window).
    pub async fn submit_as(
        &self,
        id: &str,
        cmds: &[Command],
        window: usize,
    ) -> Result<Submitted, NodeError> {
        let mut inflight: VecDeque<Inflight> = VecDeque::new();
        let mut done = Submitted::default();
        // Per shard: the message being filled and the index of its first command.
        let mut open: Vec<(Vec<u8>, usize)> = vec![(Vec::new(), 0); self.shards as usize];
        let batch_bytes = self.batch * COMMAND_BYTES;
        for (index, c) in cmds.iter().enumerate() {
            let mut b = [0u8; COMMAND_BYTES];
            c.encode(&mut b);
            let shards = match targets(c, self.shards) {
                Targets::One(s) => s..s + 1,
                Targets::All => 0..self.shards,
            };
            for shard in shards {
                let (buf, first) = &mut open[shard as usize];
                if buf.is_empty() {
                    *first = index;
                }
                buf.extend_from_slice(&b);
                if buf.len() >= batch_bytes {
                    let payload = Bytes::from(std::mem::take(buf));
                    let f = self.start(id, *first, shard, payload).await?;
                    self.push(id, f, &mut inflight, window, &mut done).await?;
                }
            }
        }
        for (shard, (buf, first)) in open.into_iter().enumerate() {
            if !buf.is_empty() {
                let f = self
                    .start(id, first, shard as u32, Bytes::from(buf))
                    .await?;
                self.push(id, f, &mut inflight, window, &mut done).await?;
            }
        }
        while let Some(f) = inflight.pop_front() {
            self.settle(id, f, &mut done).await?;
        }
        Ok(done)
    }

    /// Publishes one message (its acknowledgement in flight).
    async fn start(
        &self,
        id: &str,
        index: usize,
        shard: u32,
        payload: Bytes,
    ) -> Result<Inflight, NodeError> {
        let ack = self.send(id, index, shard, payload.clone()).await?;
        Ok(Inflight {
            ack,
            shard,
            index,
            payload,
        })
    }

    /// Queues a message in flight, settling the oldest once `window` are.
    async fn push(
        &self,
        id: &str,
        f: Inflight,
        inflight: &mut VecDeque<Inflight>,
        window: usize,
        done: &mut Submitted,
    ) -> Result<(), NodeError> {
        inflight.push_back(f);
        if inflight.len() >= window.max(1) {
            if let Some(f) = inflight.pop_front() {
                self.settle(id, f, done).await?;
            }
        }
        Ok(())
    }

    async fn send(
        &self,
        id: &str,
        index: usize,
        shard: u32,
        payload: Bytes,
    ) -> Result<jetstream::context::PublishAckFuture, NodeError> {
        let p = Publish::build()
            .payload(payload)
            .message_id(format!("{id}.{index}.{shard}"));
        self.js
            .send_publish(self.names.cmd_subject(shard), p)
            .await
            .map_err(nats("publish command"))
    }

    /// Waits for a message's acknowledgement, publishing it again with the same id while the
    /// acknowledgement is lost.
    async fn settle(&self, id: &str, f: Inflight, done: &mut Submitted) -> Result<(), NodeError> {
        let mut ack = f.ack;
        for attempt in 1..=ATTEMPTS {
            let r = ack.await;
            let n = self.acks_seen.fetch_add(1, Ordering::Relaxed) + 1;
            let lost = self.lose_every > 0 && n.is_multiple_of(self.lose_every);
            match r {
                Ok(a) if !lost => {
                    done.messages += 1;
                    done.duplicates += a.duplicate as u64;
                    return Ok(());
                }
                Err(e) if attempt == ATTEMPTS => {
                    return Err(NodeError::Nats(format!(
                        "command ack: the message from command {} of submission {id} for shard \
                         {}: {e} (submit it again with the same id to complete it)",
                        f.index, f.shard
                    )))
                }
                _ => {
                    done.retries += 1;
                    tokio::time::sleep(Duration::from_millis(10 << attempt.min(6))).await;
                    ack = self.send(id, f.index, f.shard, f.payload.clone()).await?;
                }
            }
        }
        Ok(())
    }
}
