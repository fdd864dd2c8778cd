//! The JetStream streams: creating them, where a shard's event stream ends, and the
//! payloads of command and event messages.

use super::*;

/// Creates (or finds) the command and event streams of `shards` and the lease stream.
pub async fn setup(
    js: &jetstream::Context,
    names: &Names,
    shards: impl IntoIterator<Item = u32>,
    lease: Duration,
) -> Result<(), NodeError> {
    let file_stream = |name, subject, dedup_secs| stream::Config {
        name,
        subjects: vec![subject],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(dedup_secs),
        ..Default::default()
    };
    for s in shards {
        get_or_create(
            js,
            file_stream(names.cmd_stream(s), names.cmd_subject(s), 120),
        )
        .await
        .map_err(nats("command stream"))?;
        // Re-publications after a failover come within seconds; ten minutes is ample.
        get_or_create(
            js,
            file_stream(names.evt_stream(s), names.evt_subject(s), 600),
        )
        .await
        .map_err(nats("event stream"))?;
    }
    get_or_create(
        js,
        stream::Config {
            name: names.lease_stream(),
            subjects: vec![format!("{}.lease.>", names.cluster)],
            storage: stream::StorageType::Memory,
            max_messages_per_subject: 1,
            max_age: lease,
            duplicate_window: lease,
            ..Default::default()
        },
    )
    .await
    .map_err(nats("lease stream"))?;
    Ok(())
}

/// Gets or creates a stream, asking again when the request times out: a busy server can
/// take longer than a request's timeout to create a file stream, and asking again for the
/// same configuration is harmless (seen on a loaded 2-core machine). Three tries.
async fn get_or_create(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream, jetstream::context::CreateStreamError> {
    let mut tries = 0;
    loop {
        tries += 1;
        match js.get_or_create_stream(config.clone()).await {
            Err(e)
                if tries < 3 && e.kind() == jetstream::context::CreateStreamErrorKind::TimedOut =>
            {
                tracing::warn!("creating stream {}: {e}; asking again", config.name);
            }
            r => return r,
        }
    }
}

/// Where a shard's event stream ends: its last event sequence and the first event of its
/// last message (0, 0: empty).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamEnd {
    /// The last event.
    pub last: u64,
    /// The first event of the last message (its message id is `<shard>.<first>`).
    pub last_first: u64,
    /// The stream sequence of the stream's last message, whoever wrote it: the next
    /// publication must follow it (`Nats-Expected-Last-Sequence`).
    pub seq: u64,
}

/// Where a shard's event stream ends.
pub async fn last_published(
    js: &jetstream::Context,
    names: &Names,
    shard: u32,
) -> Result<StreamEnd, NodeError> {
    let s = js
        .get_stream(names.evt_stream(shard))
        .await
        .map_err(nats("event stream"))?;
    let m = match s
        .get_last_raw_message_by_subject(&names.evt_subject(shard))
        .await
    {
        Ok(m) => m,
        Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
            return Ok(StreamEnd::default())
        }
        Err(e) => return Err(NodeError::Nats(format!("last event: {e}"))),
    };
    let mut end = StreamEnd {
        seq: m.sequence,
        ..StreamEnd::default()
    };
    // A message the nodes did not write (no Ringex headers) holds no events: the last
    // events are in the last message before it that has them.
    // (Looked for over the last 10,000 sequences, deleted ones skipped.)
    let (mut n, mut here) = (m.sequence, Some(m));
    for _ in 0..10_000 {
        if let Some(m) = &here {
            if let (Some(first), Some(last)) = (
                header_u64(&m.headers, "Ringex-First"),
                header_u64(&m.headers, "Ringex-Last"),
            ) {
                end.last = last;
                end.last_first = first;
                break;
            }
        }
        if n <= 1 {
            break;
        }
        n -= 1;
        here = s.get_raw_message(n).await.ok();
    }
    Ok(end)
}

pub(crate) fn header_u64(h: &async_nats::HeaderMap, name: &str) -> Option<u64> {
    h.get(name)?.as_str().parse().ok()
}

/// The commands of a command message: its payload is one or more 64-byte encoded commands
/// (the router packs several into one message). Bytes that are not a command still take
/// their place (every node reads the same bytes, so all of them do the same): a tick that
/// changes nothing; a payload that is not a whole number of commands is one such tick.
pub(crate) fn commands_of(payload: &[u8]) -> impl Iterator<Item = Command> + '_ {
    let whole = !payload.is_empty() && payload.len().is_multiple_of(COMMAND_BYTES);
    let tick = Command::new(Timestamp(0), CommandKind::Tick);
    let (chunks, bad) = match whole {
        true => (payload.chunks(COMMAND_BYTES), None),
        false => (payload[..0].chunks(COMMAND_BYTES), Some(tick)),
    };
    chunks
        .map(move |c| {
            <&[u8; COMMAND_BYTES]>::try_from(c)
                .ok()
                .and_then(Command::decode)
                .unwrap_or(tick)
        })
        .chain(bad)
}

/// The events of an event message (`first`: the sequence of its first event).
pub(crate) fn events_of(first: u64, payload: &[u8]) -> Result<Vec<(u64, Event)>, u64> {
    payload
        .chunks(EVENT_BYTES)
        .enumerate()
        .map(|(k, chunk)| {
            let seq = first + k as u64;
            <&[u8; EVENT_BYTES]>::try_from(chunk)
                .ok()
                .and_then(Event::decode)
                .map(|e| (seq, e))
                .ok_or(seq)
        })
        .collect()
}
