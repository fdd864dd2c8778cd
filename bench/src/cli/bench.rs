//! `ringex bench`: configuration, the run, and its outputs.

use crate::harness::report;
use crate::harness::topology::{
    crossbeam_pipeline_one_to_four, pipeline_one_to_four, ring_one_to_four, Placement,
};
use crate::harness::{self, timed, AddConsumer, BenchConfig, Recorded, Workload};
use ringex_consumers::journal::{FsyncPolicy, Journal, JournalConfig};
use ringex_engine::pipeline::{validate_core, IdleStrategy};
use ringex_engine::workload::GeneratedWorkload;
use ringex_engine::workload::{ExchangeCoreWorkload, MultiSymbolWorkload};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `ringex bench` options.
#[derive(clap::Args, Clone, Debug)]
pub struct BenchArgs {
    /// exchange-core, multi-symbol, policies, deep[:calm|trend-up|trend-down|volatile|jumps] (the deep-book flow), or lobster (with --lobster-file).
    #[arg(long, default_value = "exchange-core")]
    pub workload: String,
    /// With --workload exchange-core: trade a funded instrument, every account funded so
    /// that almost every order passes its pre-trade funds check (2-3% are rejected).
    #[arg(long)]
    pub funded: bool,
    /// A LOBSTER message file (CSV or the sample zip) for --workload lobster.
    #[arg(long)]
    pub lobster_file: Option<PathBuf>,
    /// Relabel the workload's order ids: arrival (1, 2, 3, …), shuffled (a permutation of
    /// 1..N), gateways (16 interleaved counters) or random (64-bit).
    #[arg(long)]
    pub ids: Option<String>,
    /// Measured commands.
    #[arg(long, default_value_t = 1_000_000)]
    pub commands: usize,
    /// Warm-up commands, sent first and not recorded.
    #[arg(long, default_value_t = 200_000)]
    pub warmup: usize,
    /// Target commands per second (open loop), or `max`.
    #[arg(long, default_value = "1000000")]
    pub rate: String,
    /// Slots of each ring (a power of two).
    #[arg(long, default_value_t = 1 << 16)]
    pub ring: usize,
    /// Pin the matcher to this core.
    #[arg(long)]
    pub matcher_core: Option<usize>,
    /// Pin the consumers (the ring probe first, then --consumers in order) to these cores.
    #[arg(long, value_delimiter = ',')]
    pub consumer_cores: Vec<usize>,
    /// Idle strategy of every stage: spin, backoff, yield, park, or sleep:<µs>. Default: spin
    /// when pinned, else backoff.
    #[arg(long)]
    pub idle: Option<String>,
    /// Consumers to run (comma separated): journal, risk, md (market data, depth 10),
    /// history (the SQLite order history, in a temp file beside the journal),
    /// alloc (pro-rata allocation).
    #[arg(long, value_delimiter = ',', default_value = "journal,risk,md,alloc")]
    pub consumers: Vec<String>,
    /// Journal fsync policy: batch, interval:<ms>, none.
    #[arg(long, default_value = "batch")]
    pub fsync: FsyncPolicy,
    /// Journal directory (default: a fresh temporary directory, removed afterwards).
    #[arg(long)]
    pub journal_dir: Option<PathBuf>,
    /// Where the outputs go.
    #[arg(long, default_value = "target/bench-out")]
    pub out: PathBuf,
    /// Also run baselines in the same run (comma separated): crossbeam (the same topology
    /// on crossbeam-channel), ring (the ring alone: trivial handlers, 64-byte slots,
    /// 1 → 1 → 4, 10M events closed loop and 1M at 1M/s open loop).
    #[arg(long, value_delimiter = ',')]
    pub compare: Vec<String>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Consumer threads: `threads` (one per consumer stage), `grouped` (the probe and the
    /// in-memory consumers on one thread, a consumer group; the journal and the history,
    /// which wait on I/O, keep a thread each), or `auto` (grouped when the machine has fewer
    /// cores than stages + 2, threads otherwise; never grouped with --pin).
    #[arg(long, default_value = "auto")]
    pub layout: String,
    /// Pin every stage to its own core and busy-spin: the matcher on core 1, the probe and
    /// the consumers on cores 2, 3, … (core 0 is left to the sender and the OS). Needs
    /// 2 + number of consumers cores; overrides --matcher-core/--consumer-cores/--idle.
    #[arg(long)]
    pub pin: bool,
}

/// Parses an idle strategy name.
pub fn parse_idle(s: &str) -> Result<IdleStrategy, String> {
    match s {
        "spin" => Ok(IdleStrategy::BusySpin),
        "backoff" => Ok(IdleStrategy::SHARED),
        "yield" => Ok(IdleStrategy::Yield),
        "park" => Ok(IdleStrategy::PARK),
        _ => s
            .strip_prefix("sleep:")
            .and_then(|u| u.parse::<u64>().ok())
            .map(|u| IdleStrategy::Sleep(Duration::from_micros(u)))
            .ok_or_else(|| {
                format!("idle strategy {s:?}: use spin, backoff, yield, park or sleep:<µs>")
            }),
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Runs the benchmark and writes its outputs; returns the table.
pub fn bench(a: &BenchArgs) -> Result<String, String> {
    let rate = parse_rate(&a.rate)?;
    let a = &with_pinning(a)?;
    let (group, layout) = plan_layout(a)?;
    let idle = a.idle.as_deref().map(parse_idle).transpose()?;
    for c in a.matcher_core.iter().chain(&a.consumer_cores) {
        validate_core(*c).map_err(|e| e.to_string())?;
    }
    let n = a.commands + a.warmup;
    let gen_t = Instant::now();
    let work = workload(a)?;
    let data = work.generate(n);
    if data.commands.is_empty() {
        return Err("the workload made no commands".into());
    }
    let journal_dir = a.journal_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("ringex-bench-journal-{}", std::process::id()))
    });
    let temp_journal = a.journal_dir.is_none();
    let _ = std::fs::remove_dir_all(&journal_dir);
    // The floors the figures are read against, measured first in the same run: the disk's
    // write+fdatasync (where the journal writes) and each stage's single-thread work.
    let fsync_floor = if a.consumers.iter().any(|c| c == "journal") {
        Some(
            harness::floor::fsync_floor(&journal_dir, 200, 4096).map_err(|e| {
                format!(
                    "measuring write+fdatasync in {}: {e}",
                    journal_dir.display()
                )
            })?,
        )
    } else {
        None
    };
    let cores = core_affinity::get_core_ids().map_or(1, |c| c.len()).max(1);
    let cpu = harness::floor::cpu_bound(&data, &a.consumers, cores);
    let consumers = consumers(a, &journal_dir)?;
    let header = header(a, work.name(), rate, idle, layout, &journal_dir, || {
        format!(
            "{} (generated in {:.1} s, {} setup commands)",
            work.name(),
            gen_t.elapsed().as_secs_f64(),
            data.setup.len()
        )
    });
    let mut text = String::new();
    for (k, v) in &header {
        text.push_str(&format!("# {k}: {v}\n"));
    }
    eprint!("{text}");
    let cfg = BenchConfig {
        commands: a.commands,
        warmup: a.warmup,
        rate,
        ring: a.ring,
        matcher_core: a.matcher_core,
        consumer_cores: a.consumer_cores.clone(),
        idle,
        grouped: group,
    };
    let bar = if a.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(n as u64)
    };
    let t = Instant::now();
    let r =
        harness::run(&data, consumers, &cfg, |i| bar.set_position(i)).map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    let secs = t.elapsed().as_secs_f64();
    if temp_journal {
        let _ = std::fs::remove_dir_all(&journal_dir);
    }
    text.push('\n');
    text.push_str(&report::table(&r));
    text.push_str(&floors(&r, fsync_floor.as_ref(), &cpu, rate.is_none()));
    let place = Placement {
        stage_core: a.matcher_core,
        consumer_cores: a.consumer_cores.clone(),
        idle,
    };
    let mut baselines: Vec<report::Baseline> = Vec::new();
    for c in &a.compare {
        match c.as_str() {
            "crossbeam" => compare_crossbeam(a, &data, &place, &mut text, &mut baselines)?,
            "ring" => compare_ring(a, &place, &mut text, &mut baselines),
            o => return Err(format!("unknown --compare {o:?}: crossbeam, ring")),
        }
    }
    report::write_all(&a.out, &r, &baselines, &header, secs)
        .map_err(|e| format!("writing {}: {e}", a.out.display()))?;
    text.push_str(&format!("\noutputs: {}/{{percentiles.txt,percentiles.json,latency.hlog,latency.svg,<stage>.hgrm}}\n", a.out.display()));
    Ok(text)
}

/// The measured figures beside their floors: the journal's p50 against the disk's own
/// write+fdatasync, the throughput against what the stages' work allows on these cores.
fn floors(
    r: &harness::BenchResult,
    fsync: Option<&harness::floor::FsyncFloor>,
    cpu: &harness::floor::CpuBound,
    closed_loop: bool,
) -> String {
    let mut s = String::from("\n");
    if let Some(f) = fsync {
        let journal = r
            .stages
            .iter()
            .find(|st| st.name == "journal")
            .map(|st| st.hist.value_at_quantile(0.5) as f64 / 1e3);
        s.push_str(&format!(
            "fsync floor: write+fdatasync of {} B where the journal writes: p50 {:.1} µs, p99 {:.1} µs ({} writes, measured before the run)",
            f.bytes, f.p50_us, f.p99_us, f.samples
        ));
        if let Some(j) = journal {
            s.push_str(&format!(
                "; journal p50 {j:.1} µs = {:.2}× the floor",
                j / f.p50_us.max(1e-3)
            ));
        }
        s.push('\n');
    }
    let parts: Vec<String> = cpu
        .stages
        .iter()
        .map(|(n, ns)| format!("{n} {ns:.0}"))
        .collect();
    let bound = cpu.bound_per_sec();
    s.push_str(&format!(
        "cpu bound: {} = {:.0} ns of single-thread work per command; on {} core(s) at most {:.2}M commands/s",
        parts.join(" + "),
        cpu.total_ns(),
        cpu.cores,
        bound / 1e6,
    ));
    if let Some((name, ns)) = cpu.slowest() {
        if 1e9 / ns <= bound * 1.0001 {
            s.push_str(&format!(
                " (the slowest stage, {name}, alone on its thread)"
            ));
        }
    }
    if closed_loop {
        s.push_str(&format!(
            "; measured {:.2}M = {:.0}% of it",
            r.commands_per_sec / 1e6,
            100.0 * r.commands_per_sec / bound.max(1.0)
        ));
    }
    s.push('\n');
    s
}

/// `--rate`: a number of commands per second, or `max` (closed loop: `None`).
fn parse_rate(rate: &str) -> Result<Option<u64>, String> {
    match rate {
        "max" => Ok(None),
        r => Ok(Some(
            r.parse::<u64>()
                .map_err(|_| format!("--rate {r:?}: a number or max"))?,
        )),
    }
}

/// The arguments with `--pin` applied: the matcher on core 1, the probe and each consumer on
/// the next cores, busy spinning; refused when the machine has too few cores.
fn with_pinning(a: &BenchArgs) -> Result<BenchArgs, String> {
    let mut a = a.clone();
    if a.pin {
        let stages = 1 + a.consumers.iter().filter(|c| !c.is_empty()).count();
        let cores = core_affinity::get_core_ids().map_or(0, |c| c.len());
        if cores < stages + 2 {
            return Err(format!(
                "--pin needs {} cores (sender/OS, matcher, {} consumer stages); this machine has {cores}",
                stages + 2,
                stages
            ));
        }
        a.matcher_core = Some(1);
        a.consumer_cores = (2..2 + stages).collect();
        a.idle = Some("spin".into());
    }
    Ok(a)
}

/// `--layout`: which stages share the group thread (the probe first, then each consumer;
/// empty for a thread per stage) and the line that says so.
fn plan_layout(a: &BenchArgs) -> Result<(Vec<bool>, String), String> {
    let stages = 1 + a.consumers.iter().filter(|c| !c.is_empty()).count();
    let cores = core_affinity::get_core_ids().map_or(0, |c| c.len());
    let grouped = match a.layout.as_str() {
        "threads" => false,
        "grouped" => true,
        "auto" => !a.pin && cores < stages + 2,
        o => return Err(format!("--layout {o:?}: auto, threads or grouped")),
    };
    if !grouped {
        return Ok((
            Vec::new(),
            format!(
                "threads: one per stage, {stages} consumer threads ({cores} cores; --layout {})",
                a.layout
            ),
        ));
    }
    let io_bound = |c: &str| c == "journal" || c == "history";
    let group: Vec<bool> = std::iter::once(true)
        .chain(
            a.consumers
                .iter()
                .filter(|c| !c.is_empty())
                .map(|c| !io_bound(c)),
        )
        .collect();
    let solo: Vec<&str> = a
        .consumers
        .iter()
        .filter(|c| io_bound(c))
        .map(|c| c.as_str())
        .collect();
    let layout = format!(
        "grouped: the probe and {} in-memory consumers on one thread, {} on their own ({cores} cores; --layout {})",
        group.iter().filter(|&&g| g).count() - 1,
        if solo.is_empty() { "none".to_string() } else { solo.join(", ") },
        a.layout
    );
    Ok((group, layout))
}

/// `--workload` (and `--funded`, `--lobster-file`, `--ids`).
fn workload(a: &BenchArgs) -> Result<Box<dyn Workload>, String> {
    let w = flow(a)?;
    Ok(match &a.ids {
        None => w,
        Some(s) => {
            let order = ringex_engine::id_order::IdOrder::parse(s).ok_or(format!(
                "unknown --ids {s:?}: arrival, shuffled, gateways or random"
            ))?;
            Box::new(crate::harness::Relabelled { inner: w, order })
        }
    })
}

/// `--workload` (and `--funded`, `--lobster-file`).
fn flow(a: &BenchArgs) -> Result<Box<dyn Workload>, String> {
    Ok(match a.workload.as_str() {
        "exchange-core" => Box::new(ExchangeCoreWorkload {
            funded: a.funded,
            ..ExchangeCoreWorkload::default()
        }),
        _ if a.funded => return Err("--funded goes with --workload exchange-core".into()),
        "multi-symbol" => Box::new(MultiSymbolWorkload::default()),
        "policies" => Box::new(ringex_engine::policy_workload::PolicyWorkload::default()),
        w if w.starts_with("deep") => {
            // deep, or deep:<scenario> (calm, trend-up, trend-down, volatile, jumps).
            let sc = w.strip_prefix("deep").unwrap_or("").trim_start_matches(':');
            let scenario = if sc.is_empty() {
                ringex_engine::workload::PriceScenario::Calm
            } else {
                ringex_engine::workload::PriceScenario::parse(sc)
                    .ok_or(format!("unknown deep-book scenario {sc:?}: calm, trend-up, trend-down, volatile, jumps"))?
            };
            Box::new(ringex_engine::workload::DeepBookWorkload {
                scenario,
                ..Default::default()
            })
        }
        "lobster" => {
            let f = a
                .lobster_file
                .clone()
                .or_else(|| crate::lobster::default_file("AAPL"))
                .ok_or("--workload lobster needs --lobster-file (or RINGEX_LOBSTER_DIR / ../shared/lobster)")?;
            Box::new(Recorded {
                name: format!("lobster {}", f.display()),
                data: crate::lobster::workload(&f).map_err(|e| e.to_string())?,
            })
        }
        w => {
            return Err(format!(
                "unknown workload {w:?}: exchange-core, multi-symbol, policies, deep[:scenario] or lobster"
            ))
        }
    })
}

/// `--consumers`, each wrapped to stamp its latencies; the journal and the history store in
/// `journal_dir`.
fn consumers(a: &BenchArgs, journal_dir: &Path) -> Result<Vec<AddConsumer>, String> {
    let mut consumers: Vec<AddConsumer> = Vec::new();
    for c in &a.consumers {
        match c.as_str() {
            "journal" => {
                let mut cfg = JournalConfig::new(journal_dir);
                cfg.fsync = a.fsync;
                consumers.push(timed(Journal::new(cfg)));
            }
            "risk" => {
                let (r, _view) = ringex_consumers::risk::RiskUpdater::new(Default::default());
                consumers.push(timed(r));
            }
            "md" => consumers.push(timed(ringex_consumers::market_data::MarketData::new(10).0)),
            "alloc" => consumers.push(timed(ringex_consumers::allocation::Allocator::new(
                Default::default(),
                |_: &ringex_consumers::allocation::Allocation| {},
            ))),
            "history" => {
                let db = journal_dir.with_extension("history.db");
                let _ = std::fs::remove_file(&db);
                let store = ringex_consumers::history::sqlite::SqliteStore::open(&db)
                    .map_err(|e| e.to_string())?;
                let h = ringex_consumers::history::History::new(store, Default::default())
                    .map_err(|e| e.to_string())?;
                consumers.push(timed(h));
            }
            "" => {}
            other => {
                return Err(format!(
                    "unknown consumer {other:?}: journal, risk, md, alloc, history"
                ))
            }
        }
    }
    Ok(consumers)
}

/// The run's description: `# key: value` lines of the table and of every output file.
fn header(
    a: &BenchArgs,
    name: String,
    rate: Option<u64>,
    idle: Option<IdleStrategy>,
    layout: String,
    journal_dir: &Path,
    workload: impl FnOnce() -> String,
) -> Vec<(String, String)> {
    vec![
        (
            "title".into(),
            format!(
                "ringex {}: {} commands, {}",
                name,
                thousands(a.commands as u64),
                rate.map_or("closed loop (as fast as it goes)".to_string(), |r| format!(
                    "open loop at {} commands/s",
                    thousands(r)
                ))
            ),
        ),
        (
            "machine".into(),
            format!(
                "{} cores, {}",
                core_affinity::get_core_ids().map_or(0, |c| c.len()),
                cpu_model()
            ),
        ),
        ("workload".into(), workload()),
        (
            "commands".into(),
            format!("{} measured after {} warm-up", a.commands, a.warmup),
        ),
        (
            "rate".into(),
            rate.map_or(
                "max (closed loop: intended time = actual send time)".into(),
                |r| format!("{r}/s open loop, latency from intended send time"),
            ),
        ),
        ("rings".into(), format!("{} slots each", a.ring)),
        ("matcher core".into(), format!("{:?}", a.matcher_core)),
        (
            "consumer cores".into(),
            format!("{:?} (probe first)", a.consumer_cores),
        ),
        (
            "idle".into(),
            idle.map_or("default: spin when pinned, backoff otherwise".into(), |i| {
                format!("{i:?}")
            }),
        ),
        (
            "consumers".into(),
            format!("ring probe + {}", a.consumers.join(", ")),
        ),
        ("layout".into(), layout),
        (
            "journal".into(),
            format!("{:?} in {}", a.fsync, journal_dir.display()),
        ),
    ]
}

/// `--compare crossbeam`: the same stream through the matcher and four counting consumers,
/// on the ring and on crossbeam channels, closed loop.
fn compare_crossbeam(
    a: &BenchArgs,
    data: &GeneratedWorkload,
    place: &Placement,
    text: &mut String,
    baselines: &mut Vec<report::Baseline>,
) -> Result<(), String> {
    let cmds: Vec<_> = data
        .commands
        .iter()
        .cycle()
        .take(a.commands)
        .copied()
        .collect();
    let ours =
        pipeline_one_to_four(&data.setup, &cmds, a.ring, place).map_err(|e| e.to_string())?;
    let base = crossbeam_pipeline_one_to_four(&data.setup, &cmds, a.ring);
    text.push_str(&format!(
        "\nbaseline, same stream, closed loop, matcher + 4 counting consumers: ringex {:.0} commands/s, crossbeam-channel {:.0} commands/s, ratio {:.2}\n",
        ours.per_second(),
        base.per_second(),
        ours.per_second() / base.per_second()
    ));
    baselines.push(report::Baseline {
        name: format!(
            "crossbeam baseline (closed loop): {:.2}M vs ringex {:.2}M commands/s",
            base.per_second() / 1e6,
            ours.per_second() / 1e6
        ),
        hist: None,
    });
    Ok(())
}

/// `--compare ring`: the ring alone (1 → 1 → 4), closed loop and at 1M events/s.
fn compare_ring(
    a: &BenchArgs,
    place: &Placement,
    text: &mut String,
    baselines: &mut Vec<report::Baseline>,
) {
    let closed = ring_one_to_four(10_000_000, a.ring, None, place);
    let open = ring_one_to_four(1_000_000, a.ring, Some(1_000_000), place);
    text.push_str(&format!(
        "\nring only (1 -> 1 -> 4, 64-byte slots): {:.1}M events/s closed loop",
        closed.throughput.per_second() / 1e6
    ));
    if let Some(h) = &open.latency {
        baselines.push(report::Baseline {
            name: format!(
                "ring only, 1M events/s (baseline; {:.0}M events/s closed loop)",
                closed.throughput.per_second() / 1e6
            ),
            hist: Some(h.clone()),
        });
        text.push_str(&format!(
            "; at 1M events/s open loop p50 {:.1} µs, p99 {:.1} µs, p99.99 {:.1} µs",
            h.value_at_quantile(0.5) as f64 / 1e3,
            h.value_at_quantile(0.99) as f64 / 1e3,
            h.value_at_quantile(0.9999) as f64 / 1e3
        ));
    }
    text.push('\n');
}

/// 1000000 → "1,000,000".
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
