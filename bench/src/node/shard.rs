//! A shard's node ([`run_node`]): consumes the command stream in order, runs the full
//! pipeline with its own journal, and publishes the events while it holds the lease.

use super::*;

/// The events of one command, encoded.
#[derive(Clone, Debug)]
pub struct Batch {
    /// First event sequence.
    pub first: u64,
    /// Last event sequence.
    pub last: u64,
    /// 64 bytes per event.
    pub bytes: Vec<u8>,
}

/// The consumer (gated after the journal) that hands each command's durable events to the
/// publisher task.
pub(crate) struct BatchTap {
    tx: mpsc::UnboundedSender<Batch>,
    cur: Vec<u8>,
    first: u64,
}

impl Consumer for BatchTap {
    fn name(&self) -> &str {
        "nats-publisher"
    }
    fn on_event(&mut self, e: &Event, seq: Sequence, _: bool) {
        if self.cur.is_empty() {
            self.first = seq.0;
        }
        let mut b = [0u8; EVENT_BYTES];
        e.encode(&mut b);
        self.cur.extend_from_slice(&b);
        if e.is_last_of_command() {
            let bytes = std::mem::take(&mut self.cur);
            let _ = self.tx.send(Batch {
                first: self.first,
                last: seq.0,
                bytes,
            });
        }
    }
}

/// Groups journaled events by command.
pub(crate) fn batches(events: &[(u64, Event)]) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut cur: Option<Batch> = None;
    for (s, e) in events {
        let b = cur.get_or_insert_with(|| Batch {
            first: *s,
            last: *s,
            bytes: Vec::new(),
        });
        let mut x = [0u8; EVENT_BYTES];
        e.encode(&mut x);
        b.bytes.extend_from_slice(&x);
        b.last = *s;
        if e.is_last_of_command() {
            out.extend(cur.take());
        }
    }
    out
}

/// The flags of `ringex node run`.
#[derive(Clone, Debug, clap::Args)]
pub struct NodeOptions {
    /// The NATS server.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// The deployment's name (its streams and subjects; docs/node.md).
    #[arg(long, default_value = "ringex")]
    pub cluster: String,
    /// The shard this node serves.
    #[arg(long)]
    pub shard: u32,
    /// This node's name (in the lease and on every message it publishes).
    #[arg(long)]
    pub node_id: String,
    /// The local journal (recovered at start; the stream resumes after its last command).
    #[arg(long)]
    pub journal: PathBuf,
    /// The lease's time to live: a dead primary is replaced after at most this long.
    #[arg(long, default_value_t = 500)]
    pub lease_ms: u64,
    /// When the local journal syncs: batch (the default), interval:<ms>, none.
    #[arg(long)]
    pub fsync: Option<FsyncPolicy>,
    /// NATS credentials.
    #[command(flatten)]
    pub auth: NatsAuth,
    /// Take a snapshot every N commands (older journal segments are then pruned), so a
    /// restart replays at most the commands since the older of the two newest. `0`: none.
    #[arg(long, default_value_t = 1_000_000)]
    pub snapshot_every: u64,
    /// Resting orders an account may have (`too_many_orders` past it); every node of a
    /// shard must say the same. None by default.
    #[arg(long)]
    pub max_open_orders: Option<u32>,
    /// Events packed into one event message, whole commands only (a command with more
    /// events is a message of its own; 1: a message per command).
    #[arg(long, default_value_t = DEFAULT_MESSAGE_EVENTS)]
    pub message_events: usize,
    /// What the pipeline's stages do when idle: backoff (the default: spin, yield, then
    /// sleep 50 µs at a time), park (spin, yield, then sleep until a command or an event
    /// arrives: a lone command waits for nobody's sleep, but each command in a steady
    /// trickle pays the wake-ups), yield (polling without sleeping), spin (a core each) or
    /// sleep:<µs>.
    #[arg(long, value_parser = crate::cli::bench::parse_idle)]
    pub idle: Option<ringex_engine::pipeline::IdleStrategy>,
}

/// Where a node stands, written to `<journal>/node.status` five times a lease.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeStatus {
    /// `primary` or `standby`.
    pub role: String,
    /// The last command durable in the local journal.
    pub cmd_seq: u64,
    /// The last event durable in the local journal.
    pub event_seq: u64,
    /// The last event the shard's event stream holds, as this node last saw it.
    pub published: u64,
}

impl NodeStatus {
    /// Reads `<journal>/node.status`.
    pub fn read(journal: &std::path::Path) -> Option<NodeStatus> {
        let t = std::fs::read_to_string(journal.join("node.status")).ok()?;
        let mut s = NodeStatus::default();
        for kv in t.split_whitespace() {
            let (k, v) = kv.split_once('=')?;
            match k {
                "role" => s.role = v.to_string(),
                "cmd_seq" => s.cmd_seq = v.parse().ok()?,
                "event_seq" => s.event_seq = v.parse().ok()?,
                "published" => s.published = v.parse().ok()?,
                _ => {}
            }
        }
        Some(s)
    }
}

/// Runs a node until SIGTERM or Ctrl-C.
pub fn run_node(o: NodeOptions) -> Result<(), NodeError> {
    std::fs::create_dir_all(&o.journal).map_err(|source| RunError::Output {
        path: o.journal.clone(),
        source,
    })?;
    let rec = ringex_consumers::recovery::recover(&o.journal)?;
    let state = rec.state;
    let matcher = Matcher::from_state(&state, MatcherCapacity::default())
        .with_max_open_orders(o.max_open_orders.unwrap_or(u32::MAX));
    let idle = o
        .idle
        .unwrap_or(ringex_engine::pipeline::IdleStrategy::SHARED);
    let mut b = Pipeline::builder()
        .matcher(matcher)
        .matcher_idle(idle)
        .resume_after(state.cmd_seq, state.event_seq);
    let mut cfg = JournalConfig::new(&o.journal);
    cfg.fsync = o.fsync.unwrap_or(FsyncPolicy::Batch);
    let journal = Journal::new(cfg).resume_after(DurableMark {
        event_seq: state.event_seq,
        cmd_seq: state.cmd_seq,
    });
    let durable = journal.durable();
    // The events' tap shares the journal's thread and runs right after it: a batch made
    // durable goes to the publisher without waking another thread.
    let jid = b.add_consumer(
        journal,
        ConsumerOptions::default()
            .max_batch(4096)
            .in_group(0)
            .idle(idle),
    );
    let (tx, rx) = mpsc::unbounded_channel();
    b.add_consumer(
        BatchTap {
            tx,
            cur: Vec::new(),
            first: 0,
        },
        ConsumerOptions::default().after(jid).in_group(0).idle(idle),
    );
    // The snapshot consumer has a thread of its own (its writing another).
    if o.snapshot_every > 0 {
        b.add_consumer(
            crate::startup::snapshotter(&o.journal, o.snapshot_every, &state, durable.clone()),
            ConsumerOptions::default().after(jid).idle(idle),
        );
    }
    let pipeline = b.start().map_err(RunError::from)?;
    let gateway = pipeline.gateway();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(NodeError::Runtime)?;
    let r = rt.block_on(node_main(o, state.cmd_seq, gateway, rx, durable, pipeline));
    drop(rt);
    r
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn node_main(
    o: NodeOptions,
    cmd_seq: u64,
    gateway: Gateway,
    mut rx: mpsc::UnboundedReceiver<Batch>,
    durable: ringex_consumers::journal::DurableSeq,
    pipeline: Pipeline,
) -> Result<(), NodeError> {
    let lease = Duration::from_millis(o.lease_ms.max(50));
    let client = o
        .auth
        .connect(&o.nats, &format!("ringex-node-{}", o.node_id))
        .await?;
    let js = jetstream::new(client);
    let names = Names::new(&o.cluster);
    setup(&js, &names, [o.shard], lease).await?;
    let leases = Lease::new(js.clone(), &names, o.shard);
    let out = EventPublisher {
        js: &js,
        names: &names,
        shard: o.shard,
        node: &o.node_id,
        message_events: o.message_events,
    };
    let mut end = last_published(&js, &names, o.shard).await?;
    let mut published = end.last;
    // Events this node journaled before a restart that the stream still lacks (it was the
    // primary and died before publishing them): they go out if it becomes the primary. The
    // journal is read from where the stream ends, not from its first segment.
    let journaled = ringex_consumers::recovery::journal_events_after(&o.journal, published)?;
    let mut ob = Outbox {
        pending: batches(&journaled)
            .into_iter()
            .filter(|b| b.last > published)
            .collect(),
        ..Outbox::default()
    };
    let mut consumer = tokio::spawn(consume(
        js.clone(),
        names.clone(),
        o.shard,
        Anchor::read(&o.journal, cmd_seq),
        cmd_seq,
        gateway,
        (o.journal.clone(), durable.clone()),
    ));
    let mut failed: Option<NodeError> = None;
    let mut last_setup = Instant::now();
    let mut role: Option<u64> = None; // Some(revision) while primary
    let mut tick = tokio::time::interval(lease / 5);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(NodeError::Runtime)?;
    let status_path = o.journal.join("node.status");
    let mut stopping = false;
    loop {
        // In order: the lease's tick first (renewal must never wait behind a backlog), and
        // sending pending batches last (it is always ready while there are some to send;
        // their acknowledgements are settled as they come, while later batches go out).
        tokio::select! {
            biased;
            _ = tick.tick() => {
                match role {
                    None => {
                        ob.recall();
                        end = last_published(&js, &names, o.shard).await.unwrap_or(end);
                        published = end.last;
                        if !stopping {
                            let got = leases.acquire(&o.node_id).await;
                            if got.is_err() && last_setup.elapsed() > Duration::from_secs(1) {
                                // The lease stream lives in memory: after a NATS server
                                // restart it is gone until someone creates it again.
                                last_setup = Instant::now();
                                let _ = setup(&js, &names, [o.shard], lease).await;
                            }
                            if let Ok(rev) = got {
                                // Primary now: everything after the stream's last event is ours
                                // to publish (unless the end cannot be read: then give it back).
                                match last_published(&js, &names, o.shard).await {
                                    Ok(e) => end = e,
                                    Err(_) => {
                                        let _ = leases.release(rev).await;
                                        continue;
                                    }
                                }
                                published = end.last;
                                role = Some(rev);
                                tracing::warn!("node {} is the primary of shard {} (events published up to {published})", o.node_id, o.shard);
                                eprintln!("ringex node {}: primary of shard {} from event {}", o.node_id, o.shard, published + 1);
                            }
                        }
                    }
                    Some(rev) => match leases.renew(&o.node_id, rev).await {
                        Ok(r) => role = Some(r),
                        Err(e) => {
                            eprintln!("ringex node {}: lost the lease of shard {}: {e}", o.node_id, o.shard);
                            role = None;
                            ob.recall();
                        }
                    },
                }
                if !ob.in_flight() {
                    drop_published(&mut ob.pending, published);
                }
                write_status(&status_path, role.is_some(), &durable, published);
                if stopping && ob.is_empty() {
                    break;
                }
            }
            b = rx.recv(), if !stopping => match b {
                Some(b) => {
                    if b.last > published {
                        ob.pending.push_back(b);
                    }
                    take_ready(&mut rx, &mut ob.pending, published);
                }
                None => stopping = true,
            },
            // The oldest message in flight is stored (or refused).
            r = ob.next_ack(), if role.is_some() && ob.in_flight() => match r {
                Ok(ack) => {
                    ob.acked(ack, &mut end);
                    published = end.last;
                }
                Err(e) => {
                    // Another publisher moved the stream's end (a primary that lost its
                    // lease and did not know yet): every later message is refused too;
                    // find the end again and go on after it.
                    eprintln!("ringex node {}: publish: {e}", o.node_id);
                    published = ob.resync(&js, &names, o.shard, &mut end).await;
                }
            },
            // The command stream cannot be followed any more: this node can no longer
            // keep up, so it must not hold the lease. Fatal: step down and exit non-zero.
            r = &mut consumer, if !stopping => {
                let e = match r {
                    Ok(Err(e)) => e,
                    Ok(Ok(())) => NodeError::Nats("the command stream ended".into()),
                    Err(e) => NodeError::Nats(format!("command consumer: {e}")),
                };
                eprintln!("ringex node {}: {e}; stepping down", o.node_id);
                failed = Some(e);
                break;
            }
            _ = term.recv() => { stopping = true; consumer.abort(); }
            _ = tokio::signal::ctrl_c() => { stopping = true; consumer.abort(); }
            // Pending batches go out at once, a chunk per turn (the tick comes first).
            _ = std::future::ready(()), if role.is_some() && ob.can_send() => {}
        }
        if role.is_some() && ob.can_send() {
            if let Err(e) = ob.send(&out, &end).await {
                eprintln!("ringex node {}: publish: {e}", o.node_id);
                published = ob.resync(&js, &names, o.shard, &mut end).await;
            }
        }
        if stopping && (role.is_none() || ob.is_empty()) {
            break;
        }
    }
    // A clean stop: the journal is flushed; a primary publishes what is left and hands the
    // lease back at once. A failed node gives the lease back without publishing more.
    consumer.abort();
    let _ = tokio::task::spawn_blocking(move || pipeline.shutdown()).await;
    if let Some(rev) = role {
        if failed.is_none() {
            take_ready(&mut rx, &mut ob.pending, published);
            if let Err(e) = ob.flush(&out, &mut end).await {
                eprintln!("ringex node {}: publish: {e}", o.node_id);
            }
        }
        let _ = leases.release(rev).await;
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Most event bytes one chunk of publications holds (8 MiB).
const CHUNK_BYTES: usize = 8 << 20;

/// Events in one event message unless `--message-events` says otherwise: 4,096 (256 KiB,
/// a quarter of NATS's default largest payload).
pub const DEFAULT_MESSAGE_EVENTS: usize = 4096;

/// The most `--message-events` can be (512 KiB of events).
pub const MAX_MESSAGE_EVENTS: usize = 8192;

/// Forgets the pending batches the stream already holds.
fn drop_published(pending: &mut VecDeque<Batch>, published: u64) {
    while pending.front().is_some_and(|b| b.last <= published) {
        pending.pop_front();
    }
}

/// Queues every batch the pipeline has handed over so far that the stream lacks.
fn take_ready(
    rx: &mut mpsc::UnboundedReceiver<Batch>,
    pending: &mut VecDeque<Batch>,
    published: u64,
) {
    while let Ok(b) = rx.try_recv() {
        if b.last > published {
            pending.push_back(b);
        }
    }
}

/// `<journal>/node.status`, replaced atomically: the role, the durable sequences and how
/// far the stream holds this shard's events.
fn write_status(
    path: &std::path::Path,
    primary: bool,
    durable: &ringex_consumers::journal::DurableSeq,
    published: u64,
) {
    let status = format!(
        "role={} cmd_seq={} event_seq={} published={published}\n",
        if primary { "primary" } else { "standby" },
        durable.cmd_seq(),
        durable.event_seq()
    );
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, status).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// Where and as whom a primary publishes its shard's events.
pub(crate) struct EventPublisher<'a> {
    pub(crate) js: &'a jetstream::Context,
    pub(crate) names: &'a Names,
    pub(crate) shard: u32,
    pub(crate) node: &'a str,
    /// Most events in one message.
    pub(crate) message_events: usize,
}

impl EventPublisher<'_> {
    /// Sends the pending batches from `sent` on, in order, several commands' events to a
    /// message (up to `message_events` events; the cut points need not match another
    /// node's: a new primary publishes after the stream's last event, which always ends a
    /// command), one chunk of at most 512 messages and 8 MiB, and returns them in flight:
    /// nothing here waits for an acknowledgement, so the next batches go out while earlier
    /// ones are being stored (the caller settles the acknowledgements in order, and comes
    /// back for the rest, so a long backlog never keeps the lease from being renewed). The
    /// first message with nothing in flight must follow the stream's last
    /// (`Nats-Expected-Last-Sequence`), every other one its predecessor
    /// (`Nats-Expected-Last-Msg-Id`, `chain`: the first event of the last message in
    /// flight), so the stream refuses an out-of-order publication (a stale primary's) and
    /// never holds a gap: once one is refused, every later one is too. A message the nodes
    /// did not write moves the end and is stepped over at the next try; a re-publication of
    /// a message the stream has is deduplicated by its id `<shard>.<first event>`.
    pub(crate) async fn send(
        &self,
        pending: &VecDeque<Batch>,
        sent: usize,
        chain: Option<u64>,
        end: &StreamEnd,
    ) -> Result<Vec<InFlight>, NodeError> {
        let EventPublisher {
            js,
            names,
            shard,
            node,
            message_events,
        } = *self;
        let subject = names.evt_subject(shard);
        let message_bytes = message_events.clamp(1, MAX_MESSAGE_EVENTS) * EVENT_BYTES;
        // The messages: (batches merged, first event, last event, bytes).
        let mut messages: Vec<(usize, u64, u64, Vec<u8>)> = Vec::new();
        let mut bytes = 0;
        for b in pending.iter().skip(sent) {
            // A chunk ends at 512 messages or 8 MiB, so that it goes out well within a
            // lease (the lease is renewed between chunks).
            let full = messages.len() == 512 || bytes >= CHUNK_BYTES;
            bytes += b.bytes.len();
            match messages.last_mut() {
                Some(m) if m.3.len() + b.bytes.len() <= message_bytes => {
                    m.0 += 1;
                    m.2 = b.last;
                    m.3.extend_from_slice(&b.bytes);
                }
                _ if full => break,
                _ => messages.push((1, b.first, b.last, b.bytes.clone())),
            }
        }
        let mut flying = Vec::with_capacity(messages.len());
        let mut prev_first = chain;
        for (merged, first, last, bytes) in messages {
            let mut h = async_nats::HeaderMap::new();
            h.insert("Ringex-First", first.to_string().as_str());
            h.insert("Ringex-Last", last.to_string().as_str());
            h.insert("Ringex-Node", node);
            // The first message follows the stream's last, whoever wrote it; each next one
            // follows its predecessor by id, so if one is refused every later one is too (a
            // sequence number alone could let a later one in after a foreign message took
            // the refused one's place: a gap).
            match prev_first {
                None => h.insert("Nats-Expected-Last-Sequence", end.seq.to_string().as_str()),
                Some(p) => h.insert("Nats-Expected-Last-Msg-Id", format!("{shard}.{p}").as_str()),
            }
            prev_first = Some(first);
            let p = Publish::build()
                .payload(Bytes::from(bytes))
                .headers(h)
                .message_id(format!("{shard}.{first}"));
            let ack = js
                .send_publish(subject.clone(), p)
                .await
                .map_err(nats("publish"))?;
            flying.push(InFlight {
                merged,
                first,
                last,
                ack: Box::pin(std::future::IntoFuture::into_future(ack)),
            });
        }
        Ok(flying)
    }
}

/// An event message sent and not yet acknowledged.
pub(crate) struct InFlight {
    /// Pending batches it carries (the first ones not acknowledged).
    merged: usize,
    /// Its first and last events.
    first: u64,
    last: u64,
    ack: std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<
                        jetstream::publish::PublishAck,
                        jetstream::context::PublishError,
                    >,
                > + Send,
        >,
    >,
}

/// Events on their way to the stream: batches not yet acknowledged (the first `sent` of
/// them in flight, as the messages of `flying`, oldest first).
#[derive(Default)]
pub(crate) struct Outbox {
    pub(crate) pending: VecDeque<Batch>,
    sent: usize,
    flying: VecDeque<InFlight>,
}

/// Event messages in flight at most (each one's batches stay pending until acknowledged).
const MAX_IN_FLIGHT: usize = 1024;

impl Outbox {
    /// Batches wait to be sent, and there is room in flight.
    pub(crate) fn can_send(&self) -> bool {
        self.sent < self.pending.len() && self.flying.len() < MAX_IN_FLIGHT
    }

    /// Nothing pending, nothing in flight.
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Some message awaits its acknowledgement.
    pub(crate) fn in_flight(&self) -> bool {
        !self.flying.is_empty()
    }

    /// Sends the next chunk.
    pub(crate) async fn send(
        &mut self,
        out: &EventPublisher<'_>,
        end: &StreamEnd,
    ) -> Result<(), NodeError> {
        let chain = self.flying.back().map(|f| f.first);
        let new = out.send(&self.pending, self.sent, chain, end).await?;
        self.sent += new.iter().map(|f| f.merged).sum::<usize>();
        self.flying.extend(new);
        Ok(())
    }

    /// The oldest message's acknowledgement (pending forever while none is in flight).
    pub(crate) async fn next_ack(
        &mut self,
    ) -> Result<jetstream::publish::PublishAck, jetstream::context::PublishError> {
        match self.flying.front_mut() {
            Some(f) => f.ack.as_mut().await,
            None => std::future::pending().await,
        }
    }

    /// The oldest message is stored: its batches leave, `end` moves past it.
    pub(crate) fn acked(&mut self, ack: jetstream::publish::PublishAck, end: &mut StreamEnd) {
        if let Some(f) = self.flying.pop_front() {
            for _ in 0..f.merged {
                self.pending.pop_front();
            }
            self.sent -= f.merged;
            *end = StreamEnd {
                last: f.last,
                last_first: f.first,
                seq: ack.sequence,
            };
        }
    }

    /// Forgets what is in flight (refused, or no longer this node's to publish): it is
    /// all pending again, to be sent after the stream's end once it is read again.
    pub(crate) fn recall(&mut self) {
        self.flying.clear();
        self.sent = 0;
    }

    /// After a refusal or a failed send: takes everything in flight back, reads where the
    /// stream ends (kept as it was if that cannot be read) and forgets what it holds
    /// already. Returns the last event the stream holds.
    pub(crate) async fn resync(
        &mut self,
        js: &jetstream::Context,
        names: &Names,
        shard: u32,
        end: &mut StreamEnd,
    ) -> u64 {
        self.recall();
        if let Ok(e) = last_published(js, names, shard).await {
            *end = e;
        }
        drop_published(&mut self.pending, end.last);
        end.last
    }

    /// Sends everything and waits for every acknowledgement (a clean stop).
    pub(crate) async fn flush(
        &mut self,
        out: &EventPublisher<'_>,
        end: &mut StreamEnd,
    ) -> Result<(), NodeError> {
        while !self.is_empty() {
            if self.can_send() {
                self.send(out, end).await?;
            }
            let ack = self.next_ack().await.map_err(nats("publish ack"))?;
            self.acked(ack, end);
        }
        Ok(())
    }
}

/// Feeds the shard's command stream into the pipeline in order, from the message at
/// `from` on; the first `applied` commands (the local journal's) are counted, not
/// submitted again. Every second or so the position of a message whose commands before it
/// are durable is written as the journal's [`Anchor`]. A lost subscription (a NATS server
/// restart, a network cut) is taken up again from the next message needed, as often as it
/// takes within `GIVE_UP`; a gap in the sequence (messages deleted from the stream) or a
/// stream that stays unreachable ends it with an error, which the node treats as fatal.
pub(crate) async fn consume(
    js: jetstream::Context,
    names: Names,
    shard: u32,
    from: Anchor,
    applied: u64,
    mut gateway: Gateway,
    (journal, durable): (PathBuf, ringex_consumers::journal::DurableSeq),
) -> Result<(), NodeError> {
    const GIVE_UP: Duration = Duration::from_secs(60);
    const ANCHOR_EVERY: Duration = Duration::from_secs(1);
    let mut expect = from.seq;
    // Commands in the messages before `expect`.
    let mut counted = from.before;
    // Positions not yet known durable (message, commands before it), oldest first.
    let mut positions: VecDeque<Anchor> = VecDeque::new();
    let mut anchored = Instant::now();
    let mut failing_since: Option<Instant> = None;
    loop {
        let r = async {
            let (_, mut msgs) = ordered(
                &js,
                &names.cmd_stream(shard),
                names.cmd_subject(shard),
                expect,
            )
            .await?;
            while let Some(m) = msgs.next().await {
                let m = m.map_err(nats("command message"))?;
                let seq = m.info().map_err(nats("command info"))?.stream_sequence;
                if seq < expect {
                    continue; // Delivered again after a re-subscription.
                }
                if seq != expect {
                    return Err(NodeError::Gap {
                        shard,
                        expected: expect,
                        got: seq,
                    });
                }
                for cmd in commands_of(&m.payload) {
                    counted += 1;
                    if counted <= applied {
                        continue; // In the local journal already.
                    }
                    loop {
                        match gateway.try_submit_at(cmd) {
                            Ok(_) => break,
                            Err(SubmitError::Busy) => tokio::task::yield_now().await,
                            Err(_) => return Ok(true),
                        }
                    }
                }
                expect += 1;
                failing_since = None;
                positions.push_back(Anchor {
                    seq: expect,
                    before: counted,
                });
                if anchored.elapsed() >= ANCHOR_EVERY {
                    anchored = Instant::now();
                    let durable = durable.cmd_seq();
                    let mut last = None;
                    while positions.front().is_some_and(|p| p.before <= durable) {
                        last = positions.pop_front();
                    }
                    if let Some(a) = last {
                        let dir = journal.clone();
                        // A lost anchor only means reading a little more of the stream.
                        let _ = tokio::task::spawn_blocking(move || a.write(&dir)).await;
                    }
                }
            }
            Ok(false)
        }
        .await;
        match r {
            Ok(true) => return Ok(()),
            Err(e @ NodeError::Gap { .. }) => return Err(e),
            Ok(false) | Err(_) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > GIVE_UP {
                    return Err(match r {
                        Err(e) => e,
                        _ => NodeError::Nats("the command stream keeps ending".into()),
                    });
                }
                if let Err(e) = &r {
                    eprintln!("ringex node: shard {shard}: {e}; following the command stream again from {expect}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// An ordered consumer of `subject` in `stream` from `start` (1: the beginning), with the
/// number of messages the stream holds now.
pub(crate) async fn ordered(
    js: &jetstream::Context,
    stream_name: &str,
    subject: String,
    start: u64,
) -> Result<(u64, consumer::pull::Ordered), NodeError> {
    let mut s = js
        .get_stream(stream_name)
        .await
        .map_err(nats("get stream"))?;
    let total = s.info().await.map_err(nats("stream info"))?.state.messages;
    let c = s
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: subject,
            deliver_policy: if start <= 1 {
                consumer::DeliverPolicy::All
            } else {
                consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                }
            },
            ..Default::default()
        })
        .await
        .map_err(nats("ordered consumer"))?;
    let msgs = c.messages().await.map_err(nats("ordered messages"))?;
    Ok((total, msgs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::jetstream::publish::PublishAck;

    fn batch(first: u64, last: u64) -> Batch {
        Batch {
            first,
            last,
            bytes: vec![0; (last - first + 1) as usize * EVENT_BYTES],
        }
    }

    fn flying(merged: usize, first: u64, last: u64, seq: u64) -> InFlight {
        InFlight {
            merged,
            first,
            last,
            ack: Box::pin(async move {
                Ok(PublishAck {
                    stream: "s".into(),
                    sequence: seq,
                    domain: String::new(),
                    duplicate: false,
                })
            }),
        }
    }

    /// The outbox's bookkeeping: a batch leaves only when the message carrying it is
    /// acknowledged, the end moves to that message, a recall makes everything in flight
    /// pending again (sent from the first batch), and the number in flight is bounded.
    #[tokio::test]
    async fn batches_leave_on_acknowledgement_and_a_recall_sends_them_again() {
        let mut ob = Outbox::default();
        for k in 0..5u64 {
            ob.pending.push_back(batch(10 * k + 1, 10 * k + 10));
        }
        // Two messages in flight: batches 1–2 merged, then batch 3.
        ob.flying.push_back(flying(2, 1, 20, 7));
        ob.flying.push_back(flying(1, 21, 30, 8));
        ob.sent = 3;
        assert!(ob.can_send() && ob.in_flight());
        let mut end = StreamEnd::default();
        let ack = ob.next_ack().await.expect("ack");
        ob.acked(ack, &mut end);
        assert_eq!(
            end,
            StreamEnd {
                last: 20,
                last_first: 1,
                seq: 7
            }
        );
        assert_eq!(ob.pending.len(), 3);
        assert_eq!(ob.pending.front().map(|b| b.first), Some(21));
        assert_eq!(ob.sent, 1);
        // The rest is refused: recalled, all three batches pending from the first again.
        ob.recall();
        assert!(!ob.in_flight());
        assert_eq!(ob.sent, 0);
        assert_eq!(ob.pending.len(), 3);
        assert!(ob.can_send());
        // Nothing pending: nothing to send, nothing awaited.
        let mut empty = Outbox::default();
        assert!(!empty.can_send() && empty.is_empty());
        assert!(
            tokio::time::timeout(Duration::from_millis(20), empty.next_ack())
                .await
                .is_err(),
            "no message in flight: no acknowledgement ever comes"
        );
        // At most MAX_IN_FLIGHT messages in flight.
        let mut full = Outbox::default();
        full.pending.push_back(batch(1, 1));
        for k in 0..MAX_IN_FLIGHT as u64 {
            full.flying.push_back(flying(0, k, k, k));
        }
        assert!(!full.can_send());
    }
}
