//! `ringex run`: feeds a command script through the real pipeline (gateway → input ring →
//! matcher → output ring → consumers) and writes what came out.

use crate::csv::{write_balances, write_book, EventCsv};
use crate::meta::EdgeMeta;
use crate::script::{Script, ScriptError};
use crate::startup::meta_err;
pub use crate::startup::{read_script, recover_dir, RunError};
use ringex_consumers::allocation::{Allocation, Allocator, Group};
use ringex_consumers::journal::{FsyncPolicy, Journal, JournalConfig};
use ringex_consumers::market_data::{MarketData, MdUpdate};
use ringex_consumers::recovery::RecoveryReport;
use ringex_engine::pipeline::{ConsumerId, ConsumerOptions, PipelineBuilder};
use ringex_engine::state::EngineState;
use ringex_engine::AllocGroupId;
use ringex_engine::{BookReplica, Consumer, Event, Matcher, MatcherCapacity, Pipeline, Sequence};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;

/// What to run and where to write (also the flags of `ringex run`).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct RunOptions {
    /// The command script (CSV, docs/formats.md).
    pub script: PathBuf,
    /// Write the event log here (default: stdout).
    #[arg(long)]
    pub events_out: Option<PathBuf>,
    /// Write the final book here.
    #[arg(long)]
    pub book_out: Option<PathBuf>,
    /// Journal directory: recover from it first, then journal this run into it.
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// When the journal syncs: batch (every ring batch, the default), interval:<ms>, or none.
    #[arg(long)]
    pub fsync: Option<FsyncPolicy>,
    /// Append `durable,<event_seq>,<cmd_seq>` to this file after every journal sync (the ack
    /// hook).
    #[arg(long)]
    pub acks_out: Option<PathBuf>,
    /// Take a snapshot every N commands (with --journal); older segments are pruned.
    #[arg(long)]
    pub snapshot_every: Option<u64>,
    /// Write the pro-rata allocations of block orders here
    /// (`alloc,<fill_seq>,<symbol>,<order_id>,<account>,<qty>,<price>`).
    #[arg(long)]
    pub alloc_out: Option<PathBuf>,
    /// Write the market-data feed here (depth 10, conflated per command; docs/formats.md has the
    /// format).
    #[arg(long)]
    pub md_out: Option<PathBuf>,
    /// Write every non-zero balance after the run here
    /// (`balance,<account>,<asset>,<total>,<held>`).
    #[arg(long)]
    pub balances_out: Option<PathBuf>,
    /// Resting orders an account may have: a GTC or GTD limit order past it is rejected
    /// `too_many_orders`. No limit unless given.
    #[arg(long)]
    pub max_open_orders: Option<u32>,
    /// Keep the order history in this SQLite file (orders, trades, transfers; `ringex
    /// query`). With --journal it is gated after the journal and first catches up with it.
    #[arg(long)]
    pub history: Option<PathBuf>,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    /// Commands sent to the engine (definitions included).
    pub commands: u64,
    /// Event lines written.
    pub events: u64,
    /// Lines that could not be parsed (reported and skipped).
    pub malformed: Vec<ScriptError>,
}

fn out_file(path: &Path) -> Result<BufWriter<File>, RunError> {
    File::create(path)
        .map(BufWriter::new)
        .map_err(|source| RunError::Output {
            path: path.to_path_buf(),
            source,
        })
}

/// A consumer that writes the CSV event log, flushing at the end of every ring batch.
pub struct CsvEventWriter<W: Write + Send + 'static> {
    script: Arc<Script>,
    csv: EventCsv,
    out: W,
    /// The first write error; later events are not written.
    pub error: Option<io::Error>,
}

impl<W: Write + Send + 'static> CsvEventWriter<W> {
    /// Writes to `out`, naming instruments from `script`; the first line gets `seq`
    /// `after + 1`.
    pub fn new(script: Arc<Script>, out: W, after: u64) -> Self {
        CsvEventWriter {
            script,
            csv: EventCsv::continuing_after(after),
            out,
            error: None,
        }
    }

    /// Lines written.
    pub fn lines(&self) -> u64 {
        self.csv.last_seq()
    }
}

impl<W: Write + Send + 'static> Consumer for CsvEventWriter<W> {
    fn name(&self) -> &str {
        "csv-events"
    }

    fn on_event(&mut self, e: &Event, _: Sequence, end_of_batch: bool) {
        if self.error.is_some() {
            return;
        }
        let r = self
            .csv
            .write(&self.script, e, &mut self.out)
            .and_then(|_| {
                if end_of_batch {
                    self.out.flush()
                } else {
                    Ok(())
                }
            });
        if let Err(err) = r {
            self.error = Some(err);
        }
    }

    fn on_shutdown(&mut self) {
        if let Err(err) = self.out.flush() {
            self.error.get_or_insert(err);
        }
    }

    fn failure(&self) -> Option<String> {
        self.error
            .as_ref()
            .map(|e| format!("event log write error: {e}"))
    }
}

/// The allocation post-processor writing `--alloc-out` lines, numbering fills as the event
/// log does (administrative events are not counted).
type AllocSink = Box<dyn FnMut(&Allocation) + Send>;

struct AllocCsv {
    inner: Allocator<AllocSink>,
    admin: Arc<AtomicU64>,
    out: Arc<Mutex<BufWriter<File>>>,
}

impl Consumer for AllocCsv {
    fn name(&self) -> &str {
        "allocation"
    }
    fn on_event(&mut self, e: &Event, seq: Sequence, end: bool) {
        if e.is_admin() {
            self.admin.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.on_event(e, seq, end);
        if end {
            if let Ok(mut w) = self.out.lock() {
                let _ = w.flush();
            }
        }
    }
    fn on_shutdown(&mut self) {
        if let Ok(mut w) = self.out.lock() {
            let _ = w.flush();
        }
    }
}

/// The allocator for `--alloc-out`. When a journaled run continues, block orders filled
/// partly before the restart carry on from their cumulative state, rebuilt by replaying the
/// journal through the allocator with its output off.
fn alloc_consumer(
    script: &Arc<Script>,
    path: &Path,
    state: &EngineState,
    journal: Option<&Path>,
) -> Result<AllocCsv, RunError> {
    let out = Arc::new(Mutex::new(out_file(path)?));
    let admin = Arc::new(AtomicU64::new(state.admin_events));
    let replaying = Arc::new(AtomicBool::new(false));
    let groups = script
        .groups()
        .iter()
        .enumerate()
        .map(|(i, g)| {
            (
                AllocGroupId(i as u32 + 1),
                Group {
                    members: g.members.clone(),
                },
            )
        })
        .collect();
    let (w, a, sc) = (Arc::clone(&out), Arc::clone(&admin), Arc::clone(script));
    let quiet = Arc::clone(&replaying);
    let sink: AllocSink = Box::new(move |x: &Allocation| {
        if quiet.load(Ordering::Relaxed) {
            return;
        }
        let Some(spec) = sc.spec(x.instrument) else {
            return;
        };
        let fill_seq = x.fill_seq.0 - a.load(Ordering::Relaxed);
        if let Ok(mut w) = w.lock() {
            let _ = writeln!(
                w,
                "alloc,{fill_seq},{},{},{},{},{}",
                spec.symbol,
                x.order_id,
                x.account,
                spec.qty_text(x.qty.0 as u128),
                spec.price_text(x.price)
            );
        }
    });
    let mut c = AllocCsv {
        inner: Allocator::new(groups, sink),
        admin,
        out,
    };
    if let Some(dir) = journal.filter(|_| state.event_seq > 0) {
        let events = ringex_consumers::recovery::journal_events(dir)?;
        if events.first().map(|e| e.0) != Some(1) {
            tracing::warn!(
                "the journal no longer starts at event 1 (pruned after a snapshot): block orders \
                 filled before it restart their allocation from zero"
            );
        }
        replaying.store(true, Ordering::Relaxed);
        c.admin.store(0, Ordering::Relaxed);
        for (seq, e) in events.iter().filter(|(s, _)| *s <= state.event_seq) {
            c.on_event(e, Sequence(*seq), false);
        }
        c.admin.store(state.admin_events, Ordering::Relaxed);
        replaying.store(false, Ordering::Relaxed);
    }
    Ok(c)
}

type MdTap = Box<dyn FnMut(&MdUpdate) + Send>;

/// The market-data publisher with a tap writing the feed as CSV:
/// `level,<md_seq>,<symbol>,<bid|ask>,<price>,<qty>` (qty 0: level removed),
/// `bbo,<md_seq>,<symbol>,<bid_price|->,<bid_qty|->,<ask_price|->,<ask_qty|->`,
/// `trade,<md_seq>,<symbol>,<price>,<qty>,<buy|sell (aggressor)>`,
/// `status,<md_seq>,<symbol>,<halted|open>`; `md_seq` counts per symbol from 1.
fn md_consumer(script: &Arc<Script>, path: &Path) -> Result<MarketData<MdTap>, RunError> {
    let mut out = out_file(path)?;
    let sc = Arc::clone(script);
    let tap: MdTap = Box::new(move |u: &MdUpdate| {
        let sym = |i: ringex_engine::InstrumentId| {
            sc.spec(i).map_or("-".to_string(), |s| s.symbol.clone())
        };
        let px = |i, p| sc.spec(i).map(|s| s.price_text(p)).unwrap_or_default();
        let lots = |i, q: u128| sc.spec(i).map(|s| s.qty_text(q)).unwrap_or_default();
        let side = |s: ringex_engine::Side| {
            if s == ringex_engine::Side::Buy {
                "bid"
            } else {
                "ask"
            }
        };
        let _ = match u {
            MdUpdate::Level {
                instrument: i,
                seq,
                side: s,
                price,
                qty,
            } => {
                writeln!(
                    out,
                    "level,{seq},{},{},{},{}",
                    sym(*i),
                    side(*s),
                    px(*i, *price),
                    lots(*i, *qty)
                )
            }
            MdUpdate::Bbo {
                instrument: i,
                seq,
                bid,
                ask,
            } => {
                let f = |l: &Option<(ringex_engine::Price, u128)>| match l {
                    Some((p, q)) => format!("{},{}", px(*i, *p), lots(*i, *q)),
                    None => "-,-".into(),
                };
                writeln!(out, "bbo,{seq},{},{},{}", sym(*i), f(bid), f(ask))
            }
            MdUpdate::Trade {
                instrument: i,
                seq,
                price,
                qty,
                aggressor,
                ..
            } => {
                let a = if *aggressor == ringex_engine::Side::Buy {
                    "buy"
                } else {
                    "sell"
                };
                writeln!(
                    out,
                    "trade,{seq},{},{},{},{a}",
                    sym(*i),
                    px(*i, *price),
                    lots(*i, qty.0 as u128)
                )
            }
            MdUpdate::Status {
                instrument: i,
                seq,
                halted,
            } => {
                writeln!(
                    out,
                    "status,{seq},{},{}",
                    sym(*i),
                    if *halted { "halted" } else { "open" }
                )
            }
            MdUpdate::Snapshot(_) | MdUpdate::Resync => Ok(()),
        };
        let _ = out.flush();
    });
    // Conflated per command so that the file is the same on every run.
    Ok(MarketData::with_tap(10, tap).0.per_command())
}

/// The journal commits at least every 4096 events (records of at most 256 KiB).
fn journal_opts() -> ConsumerOptions {
    ConsumerOptions::default().max_batch(4096)
}

/// Appends ack lines to a file, one write per sync.
struct AckFile(File);

impl AckFile {
    fn hook(mut self) -> impl FnMut(ringex_consumers::journal::DurableMark) + Send + 'static {
        move |m| {
            let _ = writeln!(self.0, "durable,{},{}", m.event_seq, m.cmd_seq);
        }
    }
}

/// Runs a script through the pipeline (recovering from and journaling into
/// `opts.journal` when given).
pub fn run_script(opts: &RunOptions) -> Result<RunReport, RunError> {
    let (mut meta, state, _report) = match &opts.journal {
        Some(dir) => recover_dir(dir)?,
        None => (EdgeMeta::default(), EngineState::default(), None),
    };
    let mut script = Script::restored(
        meta.specs.clone(),
        meta.groups.clone(),
        meta.assets.clone(),
        meta.command_number(state.cmd_seq),
    );
    let (cmds, malformed) = read_script(&opts.script, &mut script, state.cmd_seq, &mut meta)?;
    if let Some(dir) = &opts.journal {
        meta.take_definitions(&script);
        meta.write(dir).map_err(meta_err(dir))?;
    }
    let script = Arc::new(script);
    let events_path = opts.events_out.clone().unwrap_or_else(|| "stdout".into());
    let out_err = |source| RunError::Output {
        path: events_path.clone(),
        source,
    };
    let sink: Box<dyn Write + Send> = match &opts.events_out {
        Some(p) => Box::new(out_file(p)?),
        None => Box::new(BufWriter::new(io::stdout())),
    };
    let matcher = Matcher::from_state(
        &state,
        MatcherCapacity {
            ids: cmds.len().clamp(1 << 16, 1 << 22),
            ..MatcherCapacity::default()
        },
    )
    .with_max_open_orders(opts.max_open_orders.unwrap_or(u32::MAX));
    let mut builder = Pipeline::builder()
        .matcher(matcher)
        .resume_after(state.cmd_seq, state.event_seq);
    let writer = builder.add_consumer(
        CsvEventWriter::new(
            Arc::clone(&script),
            sink,
            state.event_seq - state.admin_events,
        ),
        ConsumerOptions::default(),
    );
    if let Some(p) = &opts.md_out {
        builder.add_consumer(md_consumer(&script, p)?, ConsumerOptions::default());
    }
    if let Some(p) = &opts.alloc_out {
        builder.add_consumer(
            alloc_consumer(&script, p, &state, opts.journal.as_deref())?,
            ConsumerOptions::default(),
        );
    }
    let history = match &opts.history {
        Some(p) => Some(crate::startup::open_history(
            p,
            opts.journal.as_deref(),
            script.specs(),
        )?),
        None => None,
    };
    let journal_id = match &opts.journal {
        Some(dir) => Some((
            add_journal(&mut builder, dir, opts, &state)?,
            opts.acks_out.is_some(),
        )),
        None => None,
    };
    if let Some(h) = history {
        // Gated after the journal: the store never holds an event the journal may lose.
        let o = match journal_id {
            Some((id, _)) => ConsumerOptions::default().after(id),
            None => ConsumerOptions::default(),
        };
        builder.add_consumer(h, o);
    }
    let pipeline = builder.start()?;
    let mut gateway = pipeline.gateway();
    for cmd in &cmds {
        if gateway.submit_at(*cmd).is_err() {
            break;
        }
    }
    drop(gateway);
    let mut done = pipeline.shutdown();
    let mut report = RunReport {
        commands: done.commands_processed,
        events: 0,
        malformed,
    };
    if let Some(mut w) = done.take_consumer::<CsvEventWriter<Box<dyn Write + Send>>>(writer) {
        report.events = w.lines() - (state.event_seq - state.admin_events);
        if let Some(e) = w.error.take() {
            return Err(out_err(e));
        }
    }
    if let Some((id, _)) = journal_id {
        let failed = done.consumers.get(id.0).and_then(|c| c.failure.clone());
        if let Some(f) = failed {
            return Err(RunError::Journal(io::Error::other(f)));
        }
    }
    if let Some(why) = done.halted {
        return Err(RunError::Halted(why));
    }
    if let Some(p) = &opts.book_out {
        if let Some(m) = &done.matcher {
            write_book_file(&script, p, |i| m.resting_orders(i))?;
        }
    }
    if let Some(p) = &opts.balances_out {
        if let Some(m) = &done.matcher {
            write_balances_file(&script, p, &m.ledger().balances())?;
        }
    }
    Ok(report)
}

/// The journal in `dir` (with `--acks-out`'s hook), resumed after the recovered state, and
/// with `--snapshot-every` the snapshot consumer gated after it. Returns the journal's id.
fn add_journal(
    builder: &mut PipelineBuilder,
    dir: &Path,
    opts: &RunOptions,
    state: &EngineState,
) -> Result<ConsumerId, RunError> {
    let mut cfg = JournalConfig::new(dir);
    cfg.fsync = opts.fsync.unwrap_or(FsyncPolicy::Batch);
    let mark = ringex_consumers::journal::DurableMark {
        event_seq: state.event_seq,
        cmd_seq: state.cmd_seq,
    };
    let acks = match &opts.acks_out {
        Some(p) => Some(AckFile(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|source| RunError::Output {
                    path: p.clone(),
                    source,
                })?,
        )),
        None => None,
    };
    let (id, durable) = match acks {
        Some(a) => {
            let j = Journal::with_hook(cfg, a.hook()).resume_after(mark);
            let d = j.durable();
            (builder.add_consumer(j, journal_opts()), d)
        }
        None => {
            let j = Journal::new(cfg).resume_after(mark);
            let d = j.durable();
            (builder.add_consumer(j, journal_opts()), d)
        }
    };
    if let Some(every) = opts.snapshot_every {
        let snap = crate::startup::snapshotter(dir, every, state, durable);
        builder.add_consumer(snap, ConsumerOptions::default().after(id));
    }
    Ok(id)
}

fn write_book_file(
    script: &Script,
    p: &Path,
    orders: impl Fn(ringex_engine::InstrumentId) -> Vec<ringex_engine::RestingOrder>,
) -> Result<(), RunError> {
    let mut w = out_file(p)?;
    let err = |source| RunError::Output {
        path: p.to_path_buf(),
        source,
    };
    write_book(script, orders, &mut w).map_err(err)?;
    w.flush().map_err(err)
}

fn write_balances_file(
    script: &Script,
    p: &Path,
    balances: &[(
        ringex_engine::AccountId,
        ringex_engine::AssetId,
        ringex_engine::Balance,
    )],
) -> Result<(), RunError> {
    let mut w = out_file(p)?;
    let err = |source| RunError::Output {
        path: p.to_path_buf(),
        source,
    };
    write_balances(script, balances, &mut w).map_err(err)?;
    w.flush().map_err(err)
}

/// `ringex recover`: recovers the journal directory, writes the book and the balances, and
/// returns the number K of the last script command whose events are all durable.
pub fn recover_to_book(
    dir: &Path,
    book_out: Option<&Path>,
    balances_out: Option<&Path>,
) -> Result<(u64, Option<RecoveryReport>), RunError> {
    if !dir.is_dir() {
        return Err(RunError::NoJournal(dir.to_path_buf()));
    }
    let (meta, state, report) = recover_dir(dir)?;
    let k = meta.command_number(state.cmd_seq);
    let script = Script::restored(
        meta.specs.clone(),
        meta.groups.clone(),
        meta.assets.clone(),
        k,
    );
    if let Some(p) = book_out {
        let replica = BookReplica::from_state(&state);
        write_book_file(&script, p, |i| replica.resting_orders(i))?;
    }
    if let Some(p) = balances_out {
        write_balances_file(&script, p, &state.balances)?;
    }
    Ok((k, report))
}
