//! [`Router`]: publishes commands to their shards' streams.

use super::*;

/// Publishes commands to their shards' streams.
pub struct Router {
    js: jetstream::Context,
    names: Names,
    shards: u32,
}

impl Router {
    /// A router on `url` for `shards` shards (creates the streams if needed).
    pub async fn connect(url: &str, cluster: &str, shards: u32) -> Result<Router, NodeError> {
        let client = async_nats::connect(url).await.map_err(nats("connect"))?;
        let js = jetstream::new(client);
        let names = Names::new(cluster);
        setup(&js, &names, 0..shards, Duration::from_millis(500)).await?;
        Ok(Router {
            js,
            names,
            shards: shards.max(1),
        })
    }

    /// The JetStream context.
    pub fn context(&self) -> &jetstream::Context {
        &self.js
    }

    /// Publishes `cmds` in order (each to its shard or shards), with up to `window`
    /// acknowledgements in flight; returns the messages published.
    pub async fn submit(&self, cmds: &[Command], window: usize) -> Result<u64, NodeError> {
        let mut inflight = VecDeque::new();
        let mut n = 0;
        for c in cmds {
            let mut b = [0u8; COMMAND_BYTES];
            c.encode(&mut b);
            let payload = Bytes::copy_from_slice(&b);
            let shards: Vec<u32> = match targets(c, self.shards) {
                Targets::One(s) => vec![s],
                Targets::All => (0..self.shards).collect(),
            };
            for s in shards {
                let ack = self
                    .js
                    .publish(self.names.cmd_subject(s), payload.clone())
                    .await
                    .map_err(nats("publish command"))?;
                inflight.push_back(ack);
                n += 1;
                if inflight.len() >= window.max(1) {
                    if let Some(a) = inflight.pop_front() {
                        a.await.map_err(nats("command ack"))?;
                    }
                }
            }
        }
        for a in inflight {
            a.await.map_err(nats("command ack"))?;
        }
        Ok(n)
    }
}
