//! `ringex serve`: one engine behind a network (feature `serve`).
//!
//! One process runs the full pipeline with the embedded journal (gateway → input ring →
//! matcher → output ring → journal → {report router, market data, balances, history}) and
//! serves, on 127.0.0.1 by default:
//!
//! - `GET /v1/orders/ws` — order entry over WebSocket ([`session`], [`protocol`]);
//! - `GET /v1/md` — public market data over WebSocket ([`md`]);
//! - `GET /v1/book/{symbol}`, `/v1/bbo/{symbol}`, `/v1/symbols`, `/v1/status`,
//!   `/v1/orders/{id}` and `/v1/balances` (with `Authorization: Bearer <key>`) — REST;
//! - `GET /metrics` — Prometheus ([`metrics`]);
//! - `GET /` — a live web page (L2 book, trade tape, pipeline lag and throughput).
//!
//! Every consumer that talks to clients is gated after the journal: an execution report,
//! a trade on the feed or a row in the history is never out before its event is durable.

pub mod admin;
pub mod dropcopy;
pub mod history;
pub mod ids;
pub mod listing;
pub mod md;
pub mod metrics;
pub mod protocol;
pub mod rest;
pub mod router;
pub mod session;
pub mod specs;

pub use specs::Specs;

use crate::meta::EdgeMeta;
use crate::script::Script;
use crate::startup::{read_script, recover_dir, snapshotter, RunError};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ringex_consumers::balances::{BalancesPublisher, BalancesView};
use ringex_consumers::journal::{FsyncPolicy, Journal, JournalConfig};
use ringex_consumers::market_data::{MarketData, MdUpdate};
use ringex_engine::pipeline::ConsumerOptions;
use ringex_engine::pipeline::ShutdownReport;
use ringex_engine::state::EngineState;
use ringex_engine::Command;
use ringex_engine::{
    AccountId, BookReplica, Gateway, InstrumentId, Matcher, MatcherCapacity, Pipeline,
};
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// The flags of `ringex serve`.
#[derive(Clone, Debug, clap::Args)]
pub struct ServeOptions {
    /// Where to listen (loopback by default; say 0.0.0.0:PORT to open it up).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Journal directory: recovered at start, every event journaled (fsync per batch).
    #[arg(long, default_value = "ringex-journal")]
    pub journal: PathBuf,
    /// When the journal syncs: batch (the default), interval:<ms>, or none.
    #[arg(long)]
    pub fsync: Option<FsyncPolicy>,
    /// A command script (docs/formats.md) run once into a fresh journal: instruments, assets,
    /// deposits, resting orders. Ignored when the journal already holds commands.
    #[arg(long)]
    pub setup: Option<PathBuf>,
    /// An API key and the account it acts for, `KEY:ACCOUNT`, or an admin key, `KEY:admin`
    /// (repeat the flag).
    #[arg(long = "key")]
    pub keys: Vec<String>,
    /// A file of `KEY:ACCOUNT` and `KEY:admin` lines (`#` comments).
    #[arg(long)]
    pub keys_file: Option<PathBuf>,
    /// The demo: symbols DEMO-A and DEMO-B (tick 0.01, lot 1) when the journal is fresh,
    /// and the keys `mm:1`, `twap:2`, `buyer:3`, `alice:11`, `bob:12`.
    #[arg(long)]
    pub demo: bool,
    /// Keep the order history in this SQLite file (`GET /v1/orders/{id}`, `ringex query`).
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// Levels per side in the market-data feed and the REST book.
    #[arg(long, default_value_t = 20)]
    pub depth: usize,
    /// Messages a second one order-entry session may send (bursts of one second's worth);
    /// past it messages are refused, and a session that keeps on is disconnected.
    #[arg(long, default_value_t = 20_000)]
    pub max_msgs_per_sec: u32,
    /// The largest WebSocket frame taken (bytes); a larger one closes the connection (1009).
    #[arg(long, default_value_t = 16 * 1024)]
    pub max_frame: usize,
    /// Execution reports queued per session before a slow session is dropped.
    #[arg(long, default_value_t = 65_536)]
    pub report_queue: usize,
    /// Consumer threads: `grouped` runs the report router, market data and balances on one
    /// thread (the journal and the history store keep their own), `threads` one thread
    /// each; `auto` groups when the machine has fewer cores than stages + 2.
    #[arg(long, default_value = "auto")]
    pub layout: String,
    /// Market-data updates a client may fall behind before it is dropped.
    #[arg(long, default_value_t = 65_536)]
    pub md_queue: usize,
    /// Take a snapshot every N commands (written beside the journal, whose older segments
    /// are then pruned): a restart replays at most the commands since the older of the two
    /// newest snapshots. `0`: none (a restart replays the whole journal).
    #[arg(long, default_value_t = 1_000_000)]
    pub snapshot_every: u64,
    /// Resting orders an account may have: a GTC or GTD limit order past it is rejected
    /// `too_many_orders` (sequenced). `0`: no limit.
    #[arg(long, default_value_t = 10_000)]
    pub max_open_orders: u32,
    /// Order-entry sessions one API key may have open at once; another is refused (1008).
    #[arg(long, default_value_t = 16)]
    pub max_sessions_per_key: u32,
    /// Book snapshots (`GET /v1/book`, market-data subscriptions and resyncs) a second, for
    /// the whole server; past it they are refused (`429`, `rate_limited`).
    #[arg(long, default_value_t = 200)]
    pub max_snapshots_per_sec: u32,
    /// A connection that sends nothing for this long (not even the pong to the pings the
    /// server sends every third of it) is closed (`30s`, `500ms`, `2m`).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// An order-entry connection that has not authenticated within this is closed.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub auth_timeout: Duration,
    /// A write to a client that takes longer than this closes the connection.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub write_timeout: Duration,
    /// What the engine's stages do when idle: backoff (spin, yield, then sleep 50 µs at a
    /// time), park (spin, yield, then sleep until a command or an event arrives), yield,
    /// spin or sleep:<µs>.
    #[arg(long, default_value = "backoff", value_parser = crate::cli::bench::parse_idle)]
    pub idle: ringex_engine::pipeline::IdleStrategy,
}

/// `30s`, `500ms`, `2m`, or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: a duration such as 30s, 500ms or 2m"))?;
    let secs = match unit {
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("{s:?}: a duration such as 30s, 500ms or 2m")),
    };
    if !(secs > 0.0 && secs < 1e9) {
        return Err(format!("{s:?}: a positive duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl ServeOptions {
    /// Defaults, listening on `listen`, journaling into `journal`.
    pub fn new(listen: SocketAddr, journal: PathBuf) -> Self {
        ServeOptions {
            listen,
            journal,
            fsync: None,
            setup: None,
            keys: Vec::new(),
            keys_file: None,
            demo: false,
            history: None,
            depth: 20,
            max_msgs_per_sec: 20_000,
            max_frame: 16 * 1024,
            report_queue: 65_536,
            md_queue: 65_536,
            layout: "auto".into(),
            snapshot_every: 1_000_000,
            max_open_orders: 10_000,
            max_sessions_per_key: 16,
            max_snapshots_per_sec: 200,
            idle_timeout: Duration::from_secs(30),
            auth_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            idle: ringex_engine::pipeline::IdleStrategy::SHARED,
        }
    }
}

/// The demo's setup script.
pub const DEMO_SETUP: &str = "instrument,DEMO-A,0.01,1\ninstrument,DEMO-B,0.01,1\n";
/// The demo's keys.
pub const DEMO_KEYS: [(&str, u64); 5] = [
    ("mm", 1),
    ("twap", 2),
    ("buyer", 3),
    ("alice", 11),
    ("bob", 12),
];

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Recovery, the setup script or the pipeline failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// A key flag or file line is not `KEY:ACCOUNT`.
    #[error("bad API key entry {0:?}: write KEY:ACCOUNT (e.g. mm:1) or KEY:admin")]
    Key(String),
    /// The keys file could not be read.
    #[error("cannot read keys file {0}: {1}")]
    KeysFile(PathBuf, std::io::Error),
    /// The listen address could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// The runtime could not start.
    #[error("tokio runtime: {0}")]
    Runtime(std::io::Error),
    /// An unknown `--layout`.
    #[error("--layout {0:?}: auto, threads or grouped")]
    Layout(String),
    /// No API keys were configured: nobody could trade.
    #[error("no API keys: give --key KEY:ACCOUNT, --keys-file FILE or --demo")]
    NoKeys,
}

/// Limits on what one client may do.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Messages a second per order-entry session.
    pub max_msgs_per_sec: u32,
    /// Largest frame.
    pub max_frame: usize,
    /// Execution reports queued per session.
    pub report_queue: usize,
    /// Silence after which a connection is closed (pings go out every third of it).
    pub idle_timeout: Duration,
    /// Time to authenticate.
    pub auth_timeout: Duration,
    /// Longest write to a client.
    pub write_timeout: Duration,
    /// Order-entry sessions per API key.
    pub max_sessions_per_key: u32,
}

/// What every connection shares.
pub struct App {
    /// The instruments.
    pub specs: Arc<Specs>,
    /// API key → account (trader keys).
    pub keys: HashMap<String, AccountId>,
    /// Admin keys (`KEY:admin`): they place no orders.
    pub admin_keys: std::collections::HashSet<String>,
    /// REST calls' token buckets, per trader key.
    pub(crate) rest_buckets: Mutex<HashMap<String, session::Bucket>>,
    /// REST calls' idempotency keys.
    pub idempotency: Mutex<rest::Idempotency>,
    /// The order ids the server assigns.
    pub ids: ids::OrderIds,
    /// Session sign-ups for the report router.
    pub registry: crossbeam_channel::Sender<router::Registration>,
    /// The router's progress.
    pub progress: Arc<router::RouterProgress>,
    /// Market data.
    pub md: Arc<md::MdFeed>,
    /// Balances.
    pub balances: BalancesView,
    /// The history store, when kept.
    pub history: Option<PathBuf>,
    /// The edge state (`edge.meta`), rewritten by a listing; held while one runs.
    pub(crate) edge: tokio::sync::Mutex<EdgeMeta>,
    /// The journal directory (drop copy replays from it).
    pub journal: PathBuf,
    /// Commands submitted so far (setup included).
    pub submitted: AtomicU64,
    /// The next session id.
    pub next_session: AtomicU64,
    /// Per-client limits.
    pub limits: Limits,
    /// Levels per side in the book answers.
    pub depth: usize,
    gateway: Mutex<Gateway>,
    pipeline: Arc<Pipeline>,
    halted: watch::Receiver<Option<String>>,
    started: Instant,
    /// Set when the server stops: sessions end (cancel-on-disconnect included) first.
    stopping: watch::Receiver<bool>,
    /// Order-entry sessions running now.
    pub live_sessions: AtomicU64,
    sessions_by_key: Mutex<HashMap<String, u32>>,
    snapshots: Mutex<session::Bucket>,
}

impl App {
    /// A gateway for one session.
    pub fn gateway(&self) -> Gateway {
        match self.gateway.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Changes when the pipeline halts.
    pub fn halted_watch(&self) -> watch::Receiver<Option<String>> {
        self.halted.clone()
    }

    /// Counts a session of `key`; false (nothing counted) when it has the most allowed.
    pub fn open_session(&self, key: &str) -> bool {
        let mut m = self
            .sessions_by_key
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let n = m.entry(key.to_string()).or_default();
        if *n >= self.limits.max_sessions_per_key {
            return false;
        }
        *n += 1;
        true
    }

    /// A session of `key` ended.
    pub fn close_session(&self, key: &str) {
        let mut m = self
            .sessions_by_key
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(key);
            }
        }
    }

    /// Takes one book snapshot from the server-wide budget (false: over it).
    pub fn take_snapshot(&self) -> bool {
        let ok = self
            .snapshots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if !ok {
            metrics::dropped_message("snapshot_rate_limited");
        }
        ok
    }

    /// Changes to `true` when the server begins to stop.
    pub fn stopping_watch(&self) -> watch::Receiver<bool> {
        self.stopping.clone()
    }

    fn account_of(&self, headers: &HeaderMap) -> Option<AccountId> {
        let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let key = v.strip_prefix("Bearer ")?;
        self.keys.get(key.trim()).copied()
    }
}

/// A running server.
pub struct Server {
    /// The address it listens on.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<ShutdownReport, ServeError>>>,
}

impl Server {
    /// Stops taking connections, shuts the pipeline down (journal flushed) and returns its
    /// report.
    pub fn stop(mut self) -> Result<ShutdownReport, ServeError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.join()
    }

    /// Runs until Ctrl-C (or `stop`).
    pub fn join(mut self) -> Result<ShutdownReport, ServeError> {
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            _ => Err(ServeError::Runtime(std::io::Error::other(
                "the server thread panicked",
            ))),
        }
    }
}

/// Trader keys (`KEY:ACCOUNT`) and admin keys (`KEY:admin`).
#[allow(clippy::type_complexity)]
fn parse_keys(
    opts: &ServeOptions,
) -> Result<
    (
        HashMap<String, AccountId>,
        std::collections::HashSet<String>,
    ),
    ServeError,
> {
    let mut lines: Vec<String> = opts.keys.clone();
    if let Some(p) = &opts.keys_file {
        let text = std::fs::read_to_string(p).map_err(|e| ServeError::KeysFile(p.clone(), e))?;
        lines.extend(
            text.lines()
                .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
                .filter(|l| !l.is_empty()),
        );
    }
    if opts.demo {
        lines.extend(DEMO_KEYS.iter().map(|(k, a)| format!("{k}:{a}")));
    }
    let mut keys = HashMap::new();
    let mut admin = std::collections::HashSet::new();
    for l in lines {
        let (k, a) = l
            .rsplit_once(':')
            .ok_or_else(|| ServeError::Key(l.clone()))?;
        let k = k.trim();
        if k.is_empty() {
            return Err(ServeError::Key(l));
        }
        if a.trim() == "admin" {
            keys.remove(k);
            admin.insert(k.to_string());
            continue;
        }
        let a: u64 = a.trim().parse().map_err(|_| ServeError::Key(l.clone()))?;
        if a == 0 {
            return Err(ServeError::Key(l));
        }
        admin.remove(k);
        keys.insert(k.to_string(), AccountId(a));
    }
    if keys.is_empty() && admin.is_empty() {
        return Err(ServeError::NoKeys);
    }
    Ok((keys, admin))
}

/// Starts the server on its own threads and returns once it listens.
pub fn start(opts: ServeOptions) -> Result<Server, ServeError> {
    let (keys, admin_keys) = parse_keys(&opts)?;
    let (meta, state, setup_cmds) = prepare_journal(&opts)?;
    let policies =
        state
            .policies
            .iter()
            .map(|&(i, p, m)| (i, (p, m)))
            .chain(setup_cmds.iter().filter_map(|c| match c.kind {
                ringex_engine::CommandKind::SetMatchPolicy {
                    instrument,
                    policy,
                    min_alloc,
                } => Some((instrument, (policy, min_alloc))),
                _ => None,
            }));
    let specs = Arc::new(Specs::new(&meta.specs, &meta.assets, policies));
    let ids = ids::OrderIds::open(&opts.journal, &state, &setup_cmds).map_err(|source| {
        RunError::Output {
            path: opts.journal.join("order-ids"),
            source,
        }
    })?;
    let gone = cod_orders(&state);
    let grouped = grouped_layout(&opts)?;
    let Stages {
        pipeline,
        registry,
        progress,
        feed,
        balances,
    } = start_pipeline(&opts, &state, &meta, &specs, grouped)?;
    let pipeline = Arc::new(pipeline);
    let mut gateway = pipeline.gateway();
    for c in &setup_cmds {
        let _ = gateway.submit_at(*c);
    }
    // Every session is gone after a restart: the resting orders of those that had
    // cancel-on-disconnect (their id range says which) are cancelled now, sequenced.
    for c in &gone {
        let _ = gateway.submit(*c);
    }
    if !gone.is_empty() {
        tracing::warn!(
            "cancelled {} resting order(s) of cancel-on-disconnect sessions that are gone",
            gone.len()
        );
    }
    let (halt_tx, halt_rx) = watch::channel(None);
    let (stop_tx_sessions, stopping) = watch::channel(false);
    let app = Arc::new(App {
        specs,
        keys,
        admin_keys,
        rest_buckets: Mutex::new(HashMap::new()),
        idempotency: Mutex::new(rest::Idempotency::default()),
        ids,
        registry,
        progress,
        md: feed,
        balances,
        history: opts.history.clone(),
        journal: opts.journal.clone(),
        edge: tokio::sync::Mutex::new(meta),
        submitted: AtomicU64::new(state.cmd_seq + (setup_cmds.len() + gone.len()) as u64),
        next_session: AtomicU64::new(1),
        limits: Limits {
            max_msgs_per_sec: opts.max_msgs_per_sec,
            max_frame: opts.max_frame,
            report_queue: opts.report_queue.max(16),
            idle_timeout: opts.idle_timeout,
            auth_timeout: opts.auth_timeout,
            write_timeout: opts.write_timeout,
            max_sessions_per_key: opts.max_sessions_per_key.max(1),
        },
        sessions_by_key: Mutex::new(HashMap::new()),
        snapshots: Mutex::new(session::Bucket::new(opts.max_snapshots_per_sec)),
        depth: opts.depth,
        gateway: Mutex::new(gateway),
        pipeline: Arc::clone(&pipeline),
        halted: halt_rx,
        started: Instant::now(),
        stopping,
        live_sessions: AtomicU64::new(0),
    });
    metrics::handle();
    let std_listener =
        std::net::TcpListener::bind(opts.listen).map_err(|e| ServeError::Bind(opts.listen, e))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| ServeError::Bind(opts.listen, e))?;
    let addr = std_listener
        .local_addr()
        .map_err(|e| ServeError::Bind(opts.listen, e))?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("ringex-serve".into())
        .spawn(move || -> Result<ShutdownReport, ServeError> {
            serve_until_stopped(app, std_listener, addr, halt_tx, stop_rx, stop_tx_sessions)?;
            // Every connection is gone: the App (and its gateway clones) go with them.
            Ok(take_pipeline(pipeline)?.shutdown())
        })
        .map_err(ServeError::Runtime)?;
    Ok(Server {
        addr,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

/// Recovers the journal directory (created if missing) and, on a fresh journal, reads the
/// setup script (`--setup`, or the demo's); writes the edge state back. Returns the edge
/// state, the engine state and the setup commands still to submit.
fn prepare_journal(
    opts: &ServeOptions,
) -> Result<(EdgeMeta, EngineState, Vec<Command>), ServeError> {
    std::fs::create_dir_all(&opts.journal).map_err(|source| RunError::Output {
        path: opts.journal.clone(),
        source,
    })?;
    let (mut meta, state, _) = recover_dir(&opts.journal)?;
    let mut script = Script::restored(
        meta.specs.clone(),
        meta.groups.clone(),
        meta.assets.clone(),
        meta.command_number(state.cmd_seq),
    );
    let mut setup_cmds = Vec::new();
    if state.cmd_seq == 0 {
        let setup = match (&opts.setup, opts.demo) {
            (Some(p), _) => Some(p.clone()),
            (None, true) => {
                let p = opts.journal.join("demo-setup.csv");
                std::fs::write(&p, DEMO_SETUP).map_err(|source| RunError::Output {
                    path: p.clone(),
                    source,
                })?;
                Some(p)
            }
            (None, false) => None,
        };
        if let Some(p) = setup {
            let (cmds, malformed) = read_script(&p, &mut script, 0, &mut meta)?;
            if !malformed.is_empty() {
                tracing::warn!("{} malformed setup line(s) skipped", malformed.len());
            }
            setup_cmds = cmds;
        }
    }
    meta.take_definitions(&script);
    meta.write(&opts.journal).map_err(|source| RunError::Meta {
        path: opts.journal.clone(),
        source,
    })?;
    Ok((meta, state, setup_cmds))
}

/// Cancels of the resting orders of cancel-on-disconnect sessions (their ids are in the
/// range [`ids::COD_BASE`] up).
fn cod_orders(state: &EngineState) -> Vec<ringex_engine::CommandKind> {
    state
        .orders
        .iter()
        .filter(|r| r.order.order_id.0 >= ids::COD_BASE)
        .map(|r| ringex_engine::CommandKind::Cancel {
            instrument: r.order.instrument,
            account: r.order.account,
            order_id: r.order.order_id,
        })
        .collect()
}

/// `--layout`: whether the in-memory consumers share one thread.
fn grouped_layout(opts: &ServeOptions) -> Result<bool, ServeError> {
    let stages = 5 + opts.history.is_some() as usize;
    let cores = core_affinity::get_core_ids().map_or(1, |c| c.len());
    let grouped = match opts.layout.as_str() {
        "threads" => false,
        "grouped" => true,
        "auto" => cores < stages + 2,
        o => {
            return Err(ServeError::Layout(o.to_string()));
        }
    };
    tracing::info!(
        "layout: {} ({cores} cores, {stages} stages)",
        if grouped { "grouped" } else { "threads" }
    );
    Ok(grouped)
}

/// The running pipeline and the handles the network side reads.
struct Stages {
    pipeline: Pipeline,
    registry: crossbeam_channel::Sender<router::Registration>,
    progress: Arc<router::RouterProgress>,
    feed: Arc<md::MdFeed>,
    balances: BalancesView,
}

/// The pipeline from the recovered state: the journal, then, gated after it, the report
/// router, market data, balances and (with `--history`) the history store.
fn start_pipeline(
    opts: &ServeOptions,
    state: &EngineState,
    meta: &EdgeMeta,
    specs: &Arc<Specs>,
    grouped: bool,
) -> Result<Stages, ServeError> {
    let limit = match opts.max_open_orders {
        0 => u32::MAX,
        n => n,
    };
    let matcher =
        Matcher::from_state(state, MatcherCapacity::default()).with_max_open_orders(limit);
    let mut builder = Pipeline::builder()
        .matcher(matcher)
        .matcher_idle(opts.idle)
        .resume_after(state.cmd_seq, state.event_seq);
    let mut cfg = JournalConfig::new(&opts.journal);
    cfg.fsync = opts.fsync.unwrap_or(FsyncPolicy::Batch);
    let journal = Journal::new(cfg).resume_after(ringex_consumers::journal::DurableMark {
        event_seq: state.event_seq,
        cmd_seq: state.cmd_seq,
    });
    let durable = journal.durable();
    let idle = opts.idle;
    let jid = builder.add_consumer(
        journal,
        ConsumerOptions::default().max_batch(4096).idle(idle),
    );
    // The in-memory consumers share one thread when grouped; the journal and the history
    // store (they wait on I/O) keep their own. (The snapshot consumer only copies the state:
    // a writer thread of its own encodes and writes it.)
    let after = || {
        let o = ConsumerOptions::default().after(jid).idle(idle);
        if grouped {
            o.in_group(1)
        } else {
            o
        }
    };
    if opts.snapshot_every > 0 {
        builder.add_consumer(
            snapshotter(&opts.journal, opts.snapshot_every, state, durable),
            after(),
        );
    }
    let (router, registry, progress) = router::ReportRouter::new();
    builder.add_consumer(router, after());
    let feed = md::MdFeed::new(Arc::clone(specs), opts.md_queue);
    let tap_feed = Arc::clone(&feed);
    let tap = move |u: &MdUpdate| tap_feed.apply(u);
    // Books recovered from the journal are published as snapshots at once.
    let (mdc, _hub) = MarketData::restored(opts.depth, tap, state);
    builder.add_consumer(mdc, after());
    let (balances, view) = BalancesPublisher::new(BookReplica::from_state(state));
    builder.add_consumer(balances, after());
    if let Some(p) = &opts.history {
        let names = Arc::clone(specs);
        let h = crate::startup::open_history(p, Some(&opts.journal), &meta.specs)?
            .with_symbol_source(Arc::new(move |i| names.name(i)));
        builder.add_consumer(h, ConsumerOptions::default().after(jid).idle(idle));
    }
    let pipeline = builder.start().map_err(RunError::from)?;
    Ok(Stages {
        pipeline,
        registry,
        progress,
        feed,
        balances: view,
    })
}

/// Runs the HTTP/WebSocket server on its own runtime until `stop` or Ctrl-C.
fn serve_until_stopped(
    app: Arc<App>,
    std_listener: std::net::TcpListener,
    addr: SocketAddr,
    halt_tx: watch::Sender<Option<String>>,
    stop_rx: oneshot::Receiver<()>,
    stopping: watch::Sender<bool>,
) -> Result<(), ServeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("ringex-net")
        .build()
        .map_err(ServeError::Runtime)?;
    rt.block_on(async move {
        use axum::serve::ListenerExt;
        // Reports are small frames: send them at once (no Nagle delay).
        let listener = tokio::net::TcpListener::from_std(std_listener)
            .map_err(|e| ServeError::Bind(addr, e))?
            .tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
        let monitor = tokio::spawn(monitor(Arc::clone(&app), halt_tx));
        let routes = routes(Arc::clone(&app));
        let serve = axum::serve(listener, routes).with_graceful_shutdown(async move {
            tokio::select! {
                _ = stop_rx => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            // Sessions end now: cancel-on-disconnect cancels go in before the pipeline stops.
            let _ = stopping.send(true);
        });
        let r = serve.await;
        // Upgraded connections outlive axum's graceful shutdown: wait for the sessions.
        let deadline = Instant::now() + Duration::from_secs(5);
        while app.live_sessions.load(std::sync::atomic::Ordering::Acquire) > 0
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        monitor.abort();
        if let Err(e) = r {
            tracing::error!("server: {e}");
        }
        Ok::<(), ServeError>(())
    })?;
    drop(rt);
    Ok(())
}

/// The pipeline back from the last `Arc` once the sessions are gone (a session task that
/// still holds the App is waited for briefly).
fn take_pipeline(pipeline: Arc<Pipeline>) -> Result<Pipeline, ServeError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut p = pipeline;
    loop {
        match Arc::try_unwrap(p) {
            Ok(x) => return Ok(x),
            Err(x) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
                p = x;
            }
            Err(_) => {
                return Err(ServeError::Runtime(std::io::Error::other(
                    "the pipeline is still referenced at shutdown",
                )))
            }
        }
    }
}

/// Every 100 ms: ring occupancy and lag into the metrics, and a halted pipeline reported to
/// every session.
async fn monitor(app: Arc<App>, halted: watch::Sender<Option<String>>) {
    let mut t = tokio::time::interval(Duration::from_millis(100));
    loop {
        t.tick().await;
        let s = app.pipeline.status();
        metrics::pipeline(&s, app.submitted.load(std::sync::atomic::Ordering::Relaxed));
        // The recorder keeps every histogram sample until upkeep folds it into the buckets:
        // without it, memory grew by every round trip recorded between two scrapes.
        metrics::handle().run_upkeep();
        if s.halted.is_some() && halted.borrow().is_none() {
            tracing::error!("the pipeline halted: {:?}", s.halted);
            let _ = halted.send(s.halted.clone());
        }
    }
}

fn routes(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(WEB_PAGE) }))
        .route("/admin", get(|| async { Html(ADMIN_PAGE) }))
        .route("/v1/orders/ws", get(order_entry))
        .route("/v1/md", get(market_data))
        .route("/v1/dropcopy", get(drop_copy))
        .route("/v1/symbols", get(symbols))
        .route("/v1/book/{symbol}", get(book))
        .route("/v1/bbo/{symbol}", get(bbo))
        .route("/v1/status", get(status))
        .route(
            "/v1/orders",
            get(history::open_orders)
                .post(rest::post_order)
                .delete(rest::mass_cancel),
        )
        .route("/v1/trades", get(history::trades))
        .route(
            "/v1/orders/{id}",
            get(order_status)
                .delete(rest::cancel_order)
                .patch(rest::modify_order),
        )
        .route("/v1/balances", get(balances))
        .route("/v1/admin/halt", axum::routing::post(admin::halt))
        .route(
            "/v1/admin/assets",
            get(listing::assets).post(listing::add_asset),
        )
        .route(
            "/v1/admin/instruments",
            axum::routing::post(listing::add_instrument),
        )
        .route("/v1/admin/resume", axum::routing::post(admin::resume))
        .route("/v1/admin/block", axum::routing::post(admin::block))
        .route("/v1/admin/unblock", axum::routing::post(admin::unblock))
        .route("/v1/admin/deposit", axum::routing::post(admin::deposit))
        .route("/v1/admin/withdraw", axum::routing::post(admin::withdraw))
        .route(
            "/v1/admin/mass_cancel",
            axum::routing::post(admin::mass_cancel),
        )
        .route("/v1/admin/balances", get(admin::balances))
        .route("/v1/admin/orders", get(admin::orders))
        .route("/metrics", get(prometheus))
        // A body past the WebSocket's frame limit is refused (413) before it is read.
        .layer(axum::extract::DefaultBodyLimit::max(app.limits.max_frame))
        .with_state(app)
}

/// The live web page.
pub const WEB_PAGE: &str = include_str!("web/index.html");

/// The admin view: halt and resume symbols, block and unblock accounts, deposit, read an
/// account's balances (every call with the admin key typed into the page).
pub const ADMIN_PAGE: &str = include_str!("web/admin.html");

async fn order_entry(ws: WebSocketUpgrade, State(app): State<Arc<App>>) -> Response {
    let max = app.limits.max_frame;
    // Small buffers (tungstenite's default is 128 KiB each way): an idle session costs a few
    // KiB, and frames are small.
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(4096)
        .write_buffer_size(4096)
        .on_upgrade(move |socket| session::run(socket, app))
}

async fn drop_copy(ws: WebSocketUpgrade, State(app): State<Arc<App>>) -> Response {
    ws.max_message_size(4096)
        .read_buffer_size(4096)
        .write_buffer_size(4096)
        .on_upgrade(move |socket| dropcopy::run(socket, app))
}

async fn market_data(
    ws: WebSocketUpgrade,
    Query(q): Query<HashMap<String, String>>,
    State(app): State<Arc<App>>,
) -> Response {
    match md::symbol_set(&app.specs, q.get("symbols").map(|s| s.as_str())) {
        Ok(set) => ws
            .max_message_size(4096)
            .read_buffer_size(4096)
            .on_upgrade(move |socket| md::run(socket, app, set)),
        Err(e) => error(StatusCode::NOT_FOUND, "unknown_symbol", e),
    }
}

pub(crate) fn error(code: StatusCode, what: &str, message: impl Into<String>) -> Response {
    (
        code,
        Json(json!({"error": what, "message": message.into()})),
    )
        .into_response()
}

async fn symbols(State(app): State<Arc<App>>) -> Response {
    let v: Vec<_> = app
        .specs
        .all()
        .into_iter()
        .map(|s| {
            let (policy, min_alloc) = app.specs.policy(s.id);
            json!({"symbol": s.symbol, "tick_size": s.tick_size.to_string(),
                "lot_size": s.lot_size.to_string(), "match": policy.as_str(),
                "min_alloc": s.qty_text(min_alloc.0 as u128), "halted": app.md.halted(s.id)})
        })
        .collect();
    Json(v).into_response()
}

async fn book(
    UrlPath(symbol): UrlPath<String>,
    Query(q): Query<HashMap<String, String>>,
    State(app): State<Arc<App>>,
) -> Response {
    let Some(s) = app.specs.by_symbol(&symbol) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_symbol",
            format!("no symbol {symbol:?}"),
        );
    };
    if !app.take_snapshot() {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many book snapshots a second (--max-snapshots-per-sec): retry later",
        );
    }
    let depth = q
        .get("depth")
        .and_then(|d| d.parse().ok())
        .unwrap_or(app.depth)
        .min(app.depth);
    Json(app.md.book_json(s.id, depth)).into_response()
}

async fn bbo(UrlPath(symbol): UrlPath<String>, State(app): State<Arc<App>>) -> Response {
    match app.specs.by_symbol(&symbol) {
        Some(s) => Json(app.md.bbo_json(s.id)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "unknown_symbol",
            format!("no symbol {symbol:?}"),
        ),
    }
}

async fn status(State(app): State<Arc<App>>) -> Response {
    let s = app.pipeline.status();
    let submitted = app.submitted.load(std::sync::atomic::Ordering::Relaxed);
    let consumers: Vec<_> = s
        .consumers
        .iter()
        .map(|c| {
            json!({"name": c.name, "sequence": c.sequence,
                "lag": s.events_published.saturating_sub(c.sequence), "failure": c.failure})
        })
        .collect();
    Json(json!({
        "uptime_s": app.started.elapsed().as_secs_f64(),
        "commands_submitted": submitted,
        "commands_processed": s.commands_processed,
        "events_published": s.events_published,
        "input_ring": {"capacity": s.input_capacity,
            "occupancy": submitted.saturating_sub(s.commands_processed)},
        "output_ring": {"capacity": s.output_capacity},
        "consumers": consumers,
        "halted": s.halted,
        "sessions_dropped_slow": app.progress.dropped_slow.load(std::sync::atomic::Ordering::Relaxed),
    }))
    .into_response()
}

async fn order_status(
    UrlPath(id): UrlPath<u64>,
    headers: HeaderMap,
    State(app): State<Arc<App>>,
) -> Response {
    let Some(account) = app.account_of(&headers) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "not_authenticated",
            "send Authorization: Bearer <API key>",
        );
    };
    let Some(db) = app.history.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "no_history",
            "order status needs the history store: start the server with --history FILE",
        );
    };
    match history::order_of(db, account, id).await {
        Ok(o) => Json(order_json(&app, &o)).into_response(),
        Err(r) => *r,
    }
}

/// An order of the history store as the REST answer.
pub(crate) fn order_json(app: &App, o: &ringex_consumers::history::OrderRow) -> serde_json::Value {
    let spec = app.specs.by_id(InstrumentId(o.instrument));
    let spec = spec.as_deref();
    let px = |p: i64| spec.map_or(p.to_string(), |s| s.price_text(ringex_engine::Price(p)));
    let q = |x: u64| spec.map_or(x.to_string(), |s| s.qty_text(x as u128));
    json!({
        "order_id": o.order_id,
        "symbol": spec.map(|s| s.symbol.clone()),
        "account": o.account,
        "side": ringex_consumers::history::side_str(o.side),
        "order_type": ringex_consumers::history::type_str(o.order_type),
        "tif": ringex_consumers::history::tif_str(o.tif),
        "price": px(o.price),
        "orig_qty": q(o.orig_qty),
        "open_qty": q(o.open_qty),
        "filled_qty": q(o.filled_qty),
        "status": o.status.as_str(),
        "reason": o.reason.as_deref(),
        "last_seq": o.last_seq,
    })
}

async fn balances(headers: HeaderMap, State(app): State<Arc<App>>) -> Response {
    let Some(account) = app.account_of(&headers) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "not_authenticated",
            "send Authorization: Bearer <API key>",
        );
    };
    balances_json(&app, account)
}

/// An account's balances as the REST answer.
pub(crate) fn balances_json(app: &App, account: AccountId) -> Response {
    let v: Vec<_> = app
        .balances
        .account(account)
        .into_iter()
        .map(|(asset, _)| {
            let name = app.specs.asset_name(asset);
            let (total, held) = app
                .balances
                .balance_decimal(account, asset)
                .unwrap_or_default();
            json!({"asset": name, "total": total.to_string(), "held": held.to_string(),
                "available": (total - held).to_string()})
        })
        .collect();
    Json(json!({"account": account.0, "as_of_seq": app.balances.as_of().0, "balances": v}))
        .into_response()
}

async fn prometheus() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::handle().render(),
    )
        .into_response()
}
