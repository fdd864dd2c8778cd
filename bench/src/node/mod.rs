//! `ringex node`: hot standby and scale-out on NATS JetStream (feature `nats`).
//!
//! Instruments are sharded across engines; **the sequence comes from JetStream**, never from
//! ringex: each shard's commands are one stream (`RINGEX_CMD_<shard>`, subject
//! `ringex.cmd.<shard>`; `ringex` is the default `--cluster` name, [`Names`]), one 64-byte encoded [`Command`] per message, and the stream's
//! sequence *is* the engine's input sequence. Every node of a shard (a primary and any number
//! of standbys) consumes that stream in order and runs the full pipeline with its own local
//! journal; being deterministic, they hold the same books. Only the **lease holder** publishes
//! the shard's events (`RINGEX_EVT_<shard>`, subject `ringex.evt.<shard>`): one message per
//! command with its events (64 bytes each), the message id `<shard>.<first event sequence>`,
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

/// The names of one deployment's streams and subjects: `cluster` (letters, digits, `_`,
/// `-`; `ringex` by default) keeps deployments (and tests) on one NATS server apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    cluster: String,
}

impl Names {
    /// The names of `cluster`.
    pub fn new(cluster: &str) -> Self {
        Names {
            cluster: cluster.to_string(),
        }
    }
    /// The command stream of a shard: `<CLUSTER>_CMD_<shard>`.
    pub fn cmd_stream(&self, shard: u32) -> String {
        format!("{}_CMD_{shard}", self.cluster.to_uppercase())
    }
    /// The subject of a shard's commands: `<cluster>.cmd.<shard>`.
    pub fn cmd_subject(&self, shard: u32) -> String {
        format!("{}.cmd.{shard}", self.cluster)
    }
    /// The event stream of a shard: `<CLUSTER>_EVT_<shard>`.
    pub fn evt_stream(&self, shard: u32) -> String {
        format!("{}_EVT_{shard}", self.cluster.to_uppercase())
    }
    /// The subject of a shard's events: `<cluster>.evt.<shard>`.
    pub fn evt_subject(&self, shard: u32) -> String {
        format!("{}.evt.{shard}", self.cluster)
    }
    /// The stream of the leases: `<CLUSTER>_LEASES`.
    pub fn lease_stream(&self) -> String {
        format!("{}_LEASES", self.cluster.to_uppercase())
    }
    /// The lease subject of a shard: `<cluster>.lease.<shard>`.
    pub fn lease_subject(&self, shard: u32) -> String {
        format!("{}.lease.{shard}", self.cluster)
    }
}

/// A shard's lease: a message on the shard's lease subject that expires after the lease
/// time. Taking it publishes with `Nats-Expected-Last-Subject-Sequence: 0` (only when no
/// live message is there); renewing publishes with the revision the holder last wrote
/// (compare-and-set); releasing purges the subject.
///
/// The lease stream keeps one message per subject and expires it after the lease time:
/// JetStream's key-value buckets are built the same way (the client's bucket API does not
/// talk to Debian's nats-server 2.9; the stream does).
pub struct Lease {
    js: jetstream::Context,
    stream: String,
    subject: String,
}

impl Lease {
    /// The lease of `shard`.
    pub fn new(js: jetstream::Context, names: &Names, shard: u32) -> Self {
        Lease {
            js,
            stream: names.lease_stream(),
            subject: names.lease_subject(shard),
        }
    }

    async fn put(&self, holder: &str, expect: u64) -> Result<u64, NodeError> {
        let mut h = async_nats::HeaderMap::new();
        h.insert(
            "Nats-Expected-Last-Subject-Sequence",
            expect.to_string().as_str(),
        );
        let ack = self
            .js
            .send_publish(
                self.subject.clone(),
                Publish::build()
                    .payload(Bytes::from(holder.to_string()))
                    .headers(h),
            )
            .await
            .map_err(nats("lease"))?
            .await
            .map_err(nats("lease"))?;
        Ok(ack.sequence)
    }

    /// Takes the lease if nobody holds it; the revision to renew with.
    pub async fn acquire(&self, holder: &str) -> Result<u64, NodeError> {
        self.put(holder, 0).await
    }

    /// Renews a lease held at `revision`; the new revision.
    pub async fn renew(&self, holder: &str, revision: u64) -> Result<u64, NodeError> {
        self.put(holder, revision).await
    }

    /// Gives the lease back at once.
    pub async fn release(&self) -> Result<(), NodeError> {
        let s = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(nats("lease stream"))?;
        s.purge()
            .filter(self.subject.clone())
            .await
            .map_err(nats("lease release"))?;
        Ok(())
    }
}

/// The shard of an instrument.
pub fn shard_of(i: InstrumentId, shards: u32) -> u32 {
    i.0 % shards.max(1)
}

/// Where a command goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Targets {
    /// One shard.
    One(u32),
    /// Every shard.
    All,
}

/// The shards a command goes to (module docs).
pub fn targets(cmd: &Command, shards: u32) -> Targets {
    let one = |i: InstrumentId| Targets::One(shard_of(i, shards));
    match cmd.kind {
        CommandKind::NewOrder(o) => one(o.instrument),
        CommandKind::Cancel { instrument, .. }
        | CommandKind::Modify { instrument, .. }
        | CommandKind::Halt { instrument }
        | CommandKind::Resume { instrument }
        | CommandKind::SnapshotRequest { instrument }
        | CommandKind::MassCancel {
            instrument: Some(instrument),
            ..
        } => one(instrument),
        CommandKind::AddInstrument(d) => one(d.id),
        CommandKind::Invalid {
            instrument: Some(i),
            ..
        } => one(i),
        CommandKind::Invalid {
            instrument: None, ..
        } => Targets::One(0),
        CommandKind::MassCancel {
            instrument: None, ..
        }
        | CommandKind::Block { .. }
        | CommandKind::Unblock { .. }
        | CommandKind::Tick
        | CommandKind::AddAsset { .. }
        | CommandKind::Deposit { .. }
        | CommandKind::Withdraw { .. } => Targets::All,
    }
}

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

fn nats<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> NodeError {
    move |e| NodeError::Nats(format!("{what}: {e}"))
}

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
        js.get_or_create_stream(file_stream(names.cmd_stream(s), names.cmd_subject(s), 120))
            .await
            .map_err(nats("command stream"))?;
        // Re-publications after a failover come within seconds; ten minutes is ample.
        js.get_or_create_stream(file_stream(names.evt_stream(s), names.evt_subject(s), 600))
            .await
            .map_err(nats("event stream"))?;
    }
    js.get_or_create_stream(stream::Config {
        name: names.lease_stream(),
        subjects: vec![format!("{}.lease.>", names.cluster)],
        storage: stream::StorageType::Memory,
        max_messages_per_subject: 1,
        max_age: lease,
        duplicate_window: lease,
        ..Default::default()
    })
    .await
    .map_err(nats("lease stream"))?;
    Ok(())
}

/// Where a shard's event stream ends: its last event sequence and the first event of its
/// last message (0, 0: empty).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamEnd {
    /// The last event.
    pub last: u64,
    /// The first event of the last message (its message id is `<shard>.<first>`).
    pub last_first: u64,
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
    match s
        .get_last_raw_message_by_subject(&names.evt_subject(shard))
        .await
    {
        Ok(m) => Ok(StreamEnd {
            last: header_u64(&m.headers, "Ringex-Last").unwrap_or(0),
            last_first: header_u64(&m.headers, "Ringex-First").unwrap_or(0),
        }),
        Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
            Ok(StreamEnd::default())
        }
        Err(e) => Err(NodeError::Nats(format!("last event: {e}"))),
    }
}

fn header_u64(h: &async_nats::HeaderMap, name: &str) -> Option<u64> {
    h.get(name)?.as_str().parse().ok()
}

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
struct BatchTap {
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
fn batches(events: &[(u64, Event)]) -> Vec<Batch> {
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
    /// The deployment's name (its streams and subjects; README).
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
    let unpublished_from_journal = ringex_consumers::recovery::journal_events(&o.journal)?;
    let matcher = Matcher::from_state(&state, MatcherCapacity::default());
    let mut b = Pipeline::builder()
        .matcher(matcher)
        .resume_after(state.cmd_seq, state.event_seq);
    let mut cfg = JournalConfig::new(&o.journal);
    cfg.fsync = o.fsync.unwrap_or(FsyncPolicy::Batch);
    let journal = Journal::new(cfg).resume_after(DurableMark {
        event_seq: state.event_seq,
        cmd_seq: state.cmd_seq,
    });
    let durable = journal.durable();
    let jid = b.add_consumer(journal, ConsumerOptions::default().max_batch(4096));
    let (tx, rx) = mpsc::unbounded_channel();
    b.add_consumer(
        BatchTap {
            tx,
            cur: Vec::new(),
            first: 0,
        },
        ConsumerOptions::default().after(jid),
    );
    let pipeline = b.start().map_err(RunError::from)?;
    let gateway = pipeline.gateway();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(NodeError::Runtime)?;
    let r = rt.block_on(node_main(
        o,
        state.cmd_seq,
        batches(&unpublished_from_journal),
        gateway,
        rx,
        durable,
        pipeline,
    ));
    drop(rt);
    r
}

#[allow(clippy::too_many_arguments)]
async fn node_main(
    o: NodeOptions,
    cmd_seq: u64,
    journaled: Vec<Batch>,
    gateway: Gateway,
    mut rx: mpsc::UnboundedReceiver<Batch>,
    durable: ringex_consumers::journal::DurableSeq,
    pipeline: Pipeline,
) -> Result<(), NodeError> {
    let lease = Duration::from_millis(o.lease_ms.max(50));
    let client = async_nats::ConnectOptions::new()
        .name(format!("ringex-node-{}", o.node_id))
        .connect(&o.nats)
        .await
        .map_err(nats("connect"))?;
    let js = jetstream::new(client);
    let names = Names::new(&o.cluster);
    setup(&js, &names, [o.shard], lease).await?;
    let leases = Lease::new(js.clone(), &names, o.shard);
    let mut end = last_published(&js, &names, o.shard).await?;
    let mut published = end.last;
    // Events this node journaled before a restart that the stream still lacks (it was the
    // primary and died before publishing them): they go out if it becomes the primary.
    let mut pending: VecDeque<Batch> = journaled
        .into_iter()
        .filter(|b| b.last > published)
        .collect();
    let consumer = tokio::spawn(consume(
        js.clone(),
        names.clone(),
        o.shard,
        cmd_seq + 1,
        gateway,
    ));
    let mut role: Option<u64> = None; // Some(revision) while primary
    let mut tick = tokio::time::interval(lease / 5);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(NodeError::Runtime)?;
    let status_path = o.journal.join("node.status");
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match role {
                    None => {
                        end = last_published(&js, &names, o.shard).await.unwrap_or(end);
                        published = end.last;
                        if !stopping {
                            if let Ok(rev) = leases.acquire(&o.node_id).await {
                                // Primary now: everything after the stream's last event is ours
                                // to publish.
                                end = last_published(&js, &names, o.shard).await?;
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
                        }
                    },
                }
                while pending.front().is_some_and(|b| b.last <= published) {
                    pending.pop_front();
                }
                let status = format!(
                    "role={} cmd_seq={} event_seq={} published={published}\n",
                    if role.is_some() { "primary" } else { "standby" },
                    durable.cmd_seq(),
                    durable.event_seq()
                );
                let tmp = status_path.with_extension("tmp");
                if std::fs::write(&tmp, status).is_ok() {
                    let _ = std::fs::rename(&tmp, &status_path);
                }
                if stopping && pending.is_empty() {
                    break;
                }
            }
            b = rx.recv(), if !stopping => match b {
                Some(b) => {
                    if b.last > published {
                        pending.push_back(b);
                    }
                    while let Ok(b) = rx.try_recv() {
                        if b.last > published {
                            pending.push_back(b);
                        }
                    }
                }
                None => stopping = true,
            },
            _ = term.recv() => { stopping = true; consumer.abort(); }
            _ = tokio::signal::ctrl_c() => { stopping = true; consumer.abort(); }
        }
        if role.is_some() && !pending.is_empty() {
            match publish(&js, &names, o.shard, &o.node_id, &mut pending, &mut end).await {
                Ok(()) => published = end.last,
                Err(e) => {
                    // Another publisher moved the stream's end (a primary that lost its
                    // lease and did not know yet): find the end again and go on after it.
                    eprintln!("ringex node {}: publish: {e}", o.node_id);
                    if let Ok(e2) = last_published(&js, &names, o.shard).await {
                        end = e2;
                        published = end.last;
                        while pending.front().is_some_and(|b| b.last <= published) {
                            pending.pop_front();
                        }
                    }
                }
            }
        }
        if stopping && (role.is_none() || pending.is_empty()) {
            break;
        }
    }
    // A clean stop: the journal is flushed; a primary hands the lease back at once.
    consumer.abort();
    let _ = tokio::task::spawn_blocking(move || pipeline.shutdown()).await;
    if role.is_some() {
        while let Ok(b) = rx.try_recv() {
            if b.last > published {
                pending.push_back(b);
            }
        }
        let _ = publish(&js, &names, o.shard, &o.node_id, &mut pending, &mut end).await;
        let _ = leases.release().await;
    }
    Ok(())
}

/// Publishes the pending batches in order, up to 512 acknowledgements in flight, and moves
/// `end` along. Each message names the message it must follow
/// (`Nats-Expected-Last-Msg-Id`), so the stream refuses an out-of-order publication and
/// never holds a gap; a re-publication of a message it has is deduplicated by its id.
async fn publish(
    js: &jetstream::Context,
    names: &Names,
    shard: u32,
    node: &str,
    pending: &mut VecDeque<Batch>,
    end: &mut StreamEnd,
) -> Result<(), NodeError> {
    let subject = names.evt_subject(shard);
    while !pending.is_empty() {
        let n = pending.len().min(512);
        let mut acks = Vec::with_capacity(n);
        let mut prev = *end;
        for b in pending.iter().take(n) {
            let mut h = async_nats::HeaderMap::new();
            h.insert("Ringex-First", b.first.to_string().as_str());
            h.insert("Ringex-Last", b.last.to_string().as_str());
            h.insert("Ringex-Node", node);
            if prev.last == 0 {
                h.insert("Nats-Expected-Last-Sequence", "0");
            } else {
                h.insert(
                    "Nats-Expected-Last-Msg-Id",
                    format!("{shard}.{}", prev.last_first).as_str(),
                );
            }
            prev = StreamEnd {
                last: b.last,
                last_first: b.first,
            };
            let p = Publish::build()
                .payload(Bytes::copy_from_slice(&b.bytes))
                .headers(h)
                .message_id(format!("{shard}.{}", b.first));
            acks.push(
                js.send_publish(subject.clone(), p)
                    .await
                    .map_err(nats("publish"))?,
            );
        }
        for a in acks {
            a.await.map_err(nats("publish ack"))?;
            if let Some(b) = pending.pop_front() {
                *end = StreamEnd {
                    last: b.last,
                    last_first: b.first,
                };
            }
        }
    }
    Ok(())
}

/// Feeds the shard's command stream, from `start`, into the pipeline.
async fn consume(
    js: jetstream::Context,
    names: Names,
    shard: u32,
    start: u64,
    mut gateway: Gateway,
) -> Result<(), NodeError> {
    let (_, mut msgs) = ordered(
        &js,
        &names.cmd_stream(shard),
        names.cmd_subject(shard),
        start,
    )
    .await?;
    let mut expect = start;
    while let Some(m) = msgs.next().await {
        let m = m.map_err(nats("command message"))?;
        let seq = m.info().map_err(nats("command info"))?.stream_sequence;
        if seq != expect {
            let e = NodeError::Gap {
                shard,
                expected: expect,
                got: seq,
            };
            eprintln!("ringex node: {e}");
            std::process::exit(3);
        }
        let cmd = command_of(&m.payload);
        loop {
            match gateway.try_submit_at(cmd) {
                Ok(_) => break,
                Err(SubmitError::Busy) => tokio::task::yield_now().await,
                Err(_) => return Ok(()),
            }
        }
        expect += 1;
    }
    Ok(())
}

/// An ordered consumer of `subject` in `stream` from `start` (1: the beginning), with the
/// number of messages the stream holds now.
async fn ordered(
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

/// A command message's payload. Bytes that are not a command still take their sequence
/// (every node reads the same bytes, so all of them do the same): a tick that changes
/// nothing.
fn command_of(payload: &[u8]) -> Command {
    <&[u8; COMMAND_BYTES]>::try_from(payload)
        .ok()
        .and_then(Command::decode)
        .unwrap_or(Command::new(Timestamp(0), CommandKind::Tick))
}

/// The events of an event message (`first`: the sequence of its first event).
fn events_of(first: u64, payload: &[u8]) -> Result<Vec<(u64, Event)>, u64> {
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
        let first = header_u64(&h, "Ringex-First")
            .ok_or_else(|| NodeError::Events(shard, "a message without Ringex-First".into()))?;
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
    while (out.len() as u64) < total {
        let Some(m) = msgs.next().await else { break };
        let m = m.map_err(nats("command message"))?;
        out.push(command_of(&m.payload));
    }
    Ok(out)
}

/// Waits until `f` holds, polling every 20 ms, for at most `limit`.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// `ringex node …`.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum NodeCmd {
    /// Run a node of one shard (primary or standby, by lease) until SIGTERM.
    Run(NodeOptions),
    /// Publish a command script's commands to their shards (the router).
    Submit {
        /// The NATS server, deployment and shard count.
        #[command(flatten)]
        target: ClusterArgs,
        /// The command script (FORMATS.md).
        script: PathBuf,
    },
    /// Print every shard's events, merged (per instrument in order), as they come.
    Read {
        /// The NATS server, deployment and shard count.
        #[command(flatten)]
        target: ClusterArgs,
        /// Stop after this many events.
        #[arg(long)]
        limit: Option<u64>,
    },
}

/// Which deployment a client command talks to.
#[derive(Clone, Debug, clap::Args)]
pub struct ClusterArgs {
    /// The NATS server.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// The deployment's name.
    #[arg(long, default_value = "ringex")]
    pub cluster: String,
    /// How many shards.
    #[arg(long)]
    pub shards: u32,
}

/// Runs `ringex node …`.
pub fn node_cmd(cmd: NodeCmd) -> Result<String, NodeError> {
    match cmd {
        NodeCmd::Run(o) => run_node(o).map(|_| String::new()),
        NodeCmd::Submit {
            target:
                ClusterArgs {
                    nats: url,
                    cluster,
                    shards,
                },
            script,
        } => {
            let mut sc = crate::script::Script::new();
            let mut meta = crate::meta::EdgeMeta::default();
            let (cmds, malformed) = crate::startup::read_script(&script, &mut sc, 0, &mut meta)?;
            let rt = tokio::runtime::Runtime::new().map_err(NodeError::Runtime)?;
            let n = rt.block_on(async {
                let r = Router::connect(&url, &cluster, shards).await?;
                r.submit(&cmds, 1024).await
            })?;
            Ok(format!(
                "{} commands published as {n} messages to {shards} shard(s); {} malformed line(s) skipped\n",
                cmds.len(),
                malformed.len()
            ))
        }
        NodeCmd::Read {
            target:
                ClusterArgs {
                    nats: url,
                    cluster,
                    shards,
                },
            limit,
        } => {
            let rt = tokio::runtime::Runtime::new().map_err(NodeError::Runtime)?;
            rt.block_on(async {
                let client = async_nats::connect(&url).await.map_err(nats("connect"))?;
                let mut rx = follow(jetstream::new(client), &Names::new(&cluster), shards).await?;
                let mut n = 0;
                while let Some((shard, seq, e)) = rx.recv().await {
                    println!("{shard},{seq},{:?}", e.kind);
                    n += 1;
                    if limit.is_some_and(|l| n >= l) {
                        break;
                    }
                }
                Ok(String::new())
            })
        }
    }
}
