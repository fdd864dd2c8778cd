//! Reading the shards' event streams: a whole stream checked for gaps and duplicates
//! ([`read_events`]), every shard merged live ([`follow`]), and a command stream.

use super::*;

/// What a shard's event stream holds.
#[derive(Clone, Debug, Default)]
pub struct ShardEvents {
    /// Every event, by event sequence.
    pub events: Vec<(u64, Event)>,
    /// Messages that repeated events already read (dropped; JetStream's deduplication
    /// should leave none).
    pub duplicates: u64,
    /// Messages in the stream.
    pub messages: u64,
    /// The node that published each message, in order (its first event, the node).
    pub publishers: Vec<(u64, String)>,
    /// Messages no node wrote (no `Ringex-First` header): skipped.
    pub foreign: u64,
}

/// Reads a shard's whole event stream, checking that events follow each other with no gap
/// (a repeated message is counted in `duplicates` and skipped).
pub async fn read_events(
    js: &jetstream::Context,
    names: &Names,
    shard: u32,
) -> Result<ShardEvents, NodeError> {
    let mut out = ShardEvents::default();
    let (total, mut msgs) =
        ordered(js, &names.evt_stream(shard), names.evt_subject(shard), 1).await?;
    let mut last = 0u64;
    while out.messages < total {
        let Some(m) = msgs.next().await else { break };
        let m = m.map_err(nats("event message"))?;
        out.messages += 1;
        let h = m.headers.clone().unwrap_or_default();
        let Some(first) = header_u64(&h, "Ringex-First") else {
            out.foreign += 1;
            continue;
        };
        let node = h.get("Ringex-Node").map_or("?", |v| v.as_str()).to_string();
        out.publishers.push((first, node));
        if first <= last {
            out.duplicates += 1;
            continue;
        }
        if first != last + 1 {
            return Err(NodeError::Events(
                shard,
                format!("a gap: event {} follows event {last}", first),
            ));
        }
        let events = events_of(first, &m.payload)
            .map_err(|at| NodeError::Events(shard, format!("bad event bytes at {at}")))?;
        last = events.last().map_or(last, |e| e.0);
        out.events.extend(events);
    }
    Ok(out)
}

/// Follows every shard's event stream from the start and hands each event, with its shard
/// and sequence, to one receiver: events of one instrument keep their order (an instrument
/// lives on one shard). Duplicated messages are skipped.
pub async fn follow(
    js: jetstream::Context,
    names: &Names,
    shards: u32,
) -> Result<mpsc::Receiver<(u32, u64, Event)>, NodeError> {
    let (tx, rx) = mpsc::channel(65_536);
    for shard in 0..shards {
        let (_, mut msgs) =
            ordered(&js, &names.evt_stream(shard), names.evt_subject(shard), 1).await?;
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut last = 0u64;
            while let Some(Ok(m)) = msgs.next().await {
                let h = m.headers.clone().unwrap_or_default();
                let Some(first) = header_u64(&h, "Ringex-First") else {
                    continue;
                };
                if first <= last {
                    continue;
                }
                let Ok(events) = events_of(first, &m.payload) else {
                    continue;
                };
                for (seq, e) in events {
                    last = seq;
                    if tx.send((shard, seq, e)).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
    Ok(rx)
}

/// Reads a shard's command stream back (for checks: the commands every node consumed).
pub async fn read_commands(
    js: &jetstream::Context,
    names: &Names,
    shard: u32,
) -> Result<Vec<Command>, NodeError> {
    let (total, mut msgs) =
        ordered(js, &names.cmd_stream(shard), names.cmd_subject(shard), 1).await?;
    let mut out = Vec::with_capacity(total as usize);
    let mut read = 0u64;
    while read < total {
        let Some(m) = msgs.next().await else { break };
        let m = m.map_err(nats("command message"))?;
        out.extend(commands_of(&m.payload));
        read += 1;
    }
    Ok(out)
}
