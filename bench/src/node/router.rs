//! [`Router`]: publishes commands to their shards' streams, each message with a stable id.
//!
//! **Exactly once on the stream.** Every command message carries the message id
//! `<submission>.<index>.<shard>` (`Nats-Msg-Id`): the submission's id, the command's
//! position in it and the shard. A publish whose acknowledgement is lost is retried with
//! the same id, and so is every command of a submission that is submitted again with the
//! same id (`ringex node submit` uses a digest of the script's bytes unless `--id` says
//! otherwise): JetStream drops a message whose id it has seen within the command stream's
//! duplicate window (two minutes), so nothing is sequenced twice.
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

    /// The JetStream context.
    pub fn context(&self) -> &jetstream::Context {
        &self.js
    }

    /// Publishes `cmds` in order as a new submission (a fresh id); returns the messages
    /// published.
    pub async fn submit(&self, cmds: &[Command], window: usize) -> Result<u64, NodeError> {
        Ok(self.submit_as(&fresh_id(), cmds, window).await?.messages)
    }

    /// Publishes `cmds` in order (each to its shard or shards) as submission `id`, with up to
    /// `window` acknowledgements in flight. Submitting the same `id` again publishes nothing
    /// twice (within the streams' duplicate window).
    pub async fn submit_as(
        &self,
        id: &str,
        cmds: &[Command],
        window: usize,
    ) -> Result<Submitted, NodeError> {
        let mut inflight: VecDeque<Inflight> = VecDeque::new();
        let mut done = Submitted::default();
        for (index, c) in cmds.iter().enumerate() {
            let mut b = [0u8; COMMAND_BYTES];
            c.encode(&mut b);
            let payload = Bytes::copy_from_slice(&b);
            let shards: Vec<u32> = match targets(c, self.shards) {
                Targets::One(s) => vec![s],
                Targets::All => (0..self.shards).collect(),
            };
            for shard in shards {
                let ack = self.send(id, index, shard, payload.clone()).await?;
                inflight.push_back(Inflight {
                    ack,
                    shard,
                    index,
                    payload: payload.clone(),
                });
                if inflight.len() >= window.max(1) {
                    if let Some(f) = inflight.pop_front() {
                        self.settle(id, f, &mut done).await?;
                    }
                }
            }
        }
        while let Some(f) = inflight.pop_front() {
            self.settle(id, f, &mut done).await?;
        }
        Ok(done)
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
                        "command ack: command {} of submission {id} for shard {}: {e} (submit \
                         it again with the same id to complete it)",
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
