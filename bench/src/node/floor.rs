//! The transport floor of a node: what a node does with NATS and nothing else. [`echo`]
//! follows a shard's command stream with the node's consumer (an ordered pull consumer),
//! and for the commands that arrived answers one event message a turn on the event subject
//! through JetStream (the node's headers and message id, waiting for the acknowledgement
//! before the next turn, as the node does): no engine, no journal, no fsync. `node_bench
//! --floor` times it on the same schedule as a node, so that a node's latency can be read
//! against the part of it that belongs to nats-server and the machine.

use super::*;

/// Echoes shard `shard`'s commands (each becomes one `Rejected` event with its input
/// sequence) until `stop` is set; returns the commands echoed.
pub async fn echo(
    url: &str,
    names: &Names,
    shard: u32,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Result<u64, NodeError> {
    let client = async_nats::connect(url).await.map_err(nats("connect"))?;
    let js = jetstream::new(client);
    setup(&js, names, [shard], Duration::from_millis(500)).await?;
    let (_, mut msgs) =
        shard::ordered(&js, &names.cmd_stream(shard), names.cmd_subject(shard), 1).await?;
    let subject = names.evt_subject(shard);
    let mut cmd_seq = 0u64;
    let mut first = 1u64;
    let mut out = Vec::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        // Wait for a message, then take every one already here (the node's publisher takes
        // every batch ready in the same way).
        let Ok(next) = tokio::time::timeout(Duration::from_millis(50), msgs.next()).await else {
            continue;
        };
        let mut ready = vec![next];
        while let Some(Some(m)) = futures_util::FutureExt::now_or_never(msgs.next()) {
            ready.push(Some(m));
        }
        out.clear();
        for m in ready.into_iter().flatten() {
            let m = m.map_err(nats("command message"))?;
            for _ in m.payload.chunks(COMMAND_BYTES) {
                cmd_seq += 1;
                let mut e = Event::new(
                    Sequence(cmd_seq),
                    ringex_engine::EventKind::Rejected {
                        instrument: None,
                        order_id: None,
                        account: ringex_engine::AccountId(0),
                        code: ringex_engine::RejectCode::UnknownOrder,
                    },
                );
                e.set_last_of_command(true);
                let mut b = [0u8; EVENT_BYTES];
                e.encode(&mut b);
                out.extend_from_slice(&b);
            }
        }
        if out.is_empty() {
            continue;
        }
        let n = (out.len() / EVENT_BYTES) as u64;
        let mut h = async_nats::HeaderMap::new();
        h.insert("Ringex-First", first.to_string().as_str());
        h.insert("Ringex-Last", (first + n - 1).to_string().as_str());
        h.insert("Ringex-Node", "floor");
        let p = Publish::build()
            .payload(Bytes::copy_from_slice(&out))
            .headers(h)
            .message_id(format!("{shard}.{first}"));
        js.send_publish(subject.clone(), p)
            .await
            .map_err(nats("publish"))?
            .await
            .map_err(nats("publish ack"))?;
        first += n;
    }
    Ok(cmd_seq)
}
