//! Events per second each consumer sustains alone (one thread, no ring) on a recorded event
//! stream: the exchange-core workload run through the matcher once, its events kept, then
//! fed to each consumer. `consumer_throughput [COMMANDS] [multi]` (default 1000000;
//! `CT_ONLY=risk,market-data` times only those; `CT_DROP=fill,modified` leaves those event
//! kinds out of the stream, to see what each kind costs; `CT_RUNS=N` the best of N runs, 3
//! by default; `CT_WARM=F` times the stream after its first fraction F only;
//! `CT_HISTORY_EVENTS`/`CT_HISTORY_MS`/`CT_HISTORY_WINDOW_MS` the history consumer's commit
//! policy). Prints the
//! stream's event mix.

use ringex_consumers::allocation::{Allocation, Allocator, Group};
use ringex_consumers::market_data::MarketData;
use ringex_consumers::risk::RiskUpdater;
use ringex_engine::workload::ExchangeCoreWorkload;
use ringex_engine::*;
use std::collections::HashMap;
use std::time::Instant;

/// Times a fresh consumer from `make` `CT_RUNS` times (3 by default) and prints the best.
fn time<C: Consumer>(name: &str, make: impl FnMut() -> C, events: &[Event]) {
    let runs: usize = std::env::var("CT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    time_runs(name, runs, make, events)
}

fn time_runs<C: Consumer>(name: &str, runs: usize, mut make: impl FnMut() -> C, events: &[Event]) {
    // `CT_ONLY=NAME[,NAME…]`: time only these consumers (for a profiler).
    if let Ok(only) = std::env::var("CT_ONLY") {
        if !only.split(',').any(|o| o == name) {
            return;
        }
    }
    // Batches of about 64 events, ending on command boundaries, delivered as a pipeline
    // stage delivers them (with the consumer's lookahead).
    let warm = warm_events(events.len());
    let best = (0..runs.max(1))
        .map(|_| ringex_bench::harness::floor::time_consumer_warm(make(), events, warm))
        .fold(f64::MAX, f64::min);
    let timed = events.len() - warm.min(events.len());
    println!(
        "{name:<14} {:>8.2}M events/s ({} events, {:.3} s)",
        timed as f64 / best / 1e6,
        timed,
        best
    );
}

/// The history consumer's commit policy: the default, or `CT_HISTORY_EVENTS=N` and
/// `CT_HISTORY_MS=M` (commit once N events are pending or M ms have passed),
/// `CT_HISTORY_WINDOW_MS=W` (the longest window when the store is behind).
fn history_config() -> ringex_consumers::history::HistoryConfig {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let mut cfg = ringex_consumers::history::HistoryConfig::default();
    if let Some(n) = env("CT_HISTORY_EVENTS") {
        cfg.min_events = n;
    }
    if let Some(ms) = env("CT_HISTORY_MS") {
        cfg.max_delay = std::time::Duration::from_millis(ms);
    }
    if let Some(ms) = env("CT_HISTORY_WINDOW_MS") {
        cfg.max_window = std::time::Duration::from_millis(ms);
    }
    cfg
}

/// `CT_WARM=F` (a fraction, 0 by default): the first F of the stream runs untimed.
fn warm_events(n: usize) -> usize {
    let f: f64 = std::env::var("CT_WARM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    (n as f64 * f.clamp(0.0, 0.99)) as usize
}

fn main() {
    ringex_bench::harness::args::check("usage: consumer_throughput [N] [multi]   (CT_ONLY=consumer, CT_DROP=kind,… in the environment)", &[]);
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    // `consumer_throughput N multi` uses the multi-symbol workload (1000 instruments, Zipf).
    let w = if std::env::args().nth(2).as_deref() == Some("multi") {
        ringex_engine::workload::MultiSymbolWorkload::default().generate(n)
    } else {
        ExchangeCoreWorkload::default().generate(n)
    };
    // Every fourth order in a 3-account allocation group so the allocator has work.
    let mut events = w.recorded_events(Some(AllocGroupId(1)));
    if let Ok(drop) = std::env::var("CT_DROP") {
        events.retain(|e| {
            let k = match e.kind {
                EventKind::Accepted { .. } => "accepted",
                EventKind::Fill { .. } => "fill",
                EventKind::Cancelled { .. } => "cancelled",
                EventKind::Modified { .. } => "modified",
                _ => "other",
            };
            !drop.split(',').any(|d| d == k)
        });
    }
    println!(
        "recorded {} events from {} {} commands (matcher alone)",
        events.len(),
        n,
        if std::env::args().nth(2).as_deref() == Some("multi") {
            "multi-symbol"
        } else {
            "exchange-core"
        }
    );
    let mut kinds: std::collections::BTreeMap<&str, usize> = Default::default();
    for e in &events {
        let k = match e.kind {
            EventKind::Accepted { .. } => "accepted",
            EventKind::Fill { .. } => "fill",
            EventKind::Cancelled { .. } => "cancelled",
            EventKind::Modified { .. } => "modified",
            EventKind::Rejected { .. } => "rejected",
            _ => "other",
        };
        *kinds.entry(k).or_default() += 1;
    }
    println!("  event mix: {kinds:?}");
    time("risk", || RiskUpdater::new(HashMap::new()).0, &events);
    // The query path: a reader thread polling an account's state as fast as it can while
    // the consumer runs. The consumer publishes with try_lock, so the reader never blocks it.
    let (risk, view) = RiskUpdater::new(HashMap::new());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    let reader = std::thread::spawn(move || {
        let (mut reads, mut found) = (0u64, 0u64);
        let t = Instant::now();
        while !s2.load(std::sync::atomic::Ordering::Relaxed) {
            found += u64::from(view.account(AccountId(1 + reads % 1000)).is_some());
            reads += 1;
        }
        (reads, found, t.elapsed().as_secs_f64())
    });
    let mut risk = Some(risk);
    time_runs("risk+reader", 1, || risk.take().expect("one run"), &events);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Ok((reads, found, secs)) = reader.join() {
        println!(
            "  reader: {:.2}M account reads/s ({found} of {reads} found)",
            reads as f64 / secs / 1e6
        );
    }
    time("market-data", || MarketData::new(10).0, &events);
    let groups = HashMap::from([(
        AllocGroupId(1),
        Group::weighted(&[(AccountId(1), 50), (AccountId(2), 30), (AccountId(3), 20)]),
    )]);
    let allocs = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let a = allocs.clone();
    time(
        "allocation",
        || {
            let a = a.clone();
            a.store(0, std::sync::atomic::Ordering::Relaxed);
            Allocator::new(groups.clone(), move |_: &Allocation| {
                a.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            })
        },
        &events,
    );
    println!(
        "({} allocations made)",
        allocs.load(std::sync::atomic::Ordering::Relaxed)
    );
    // The order history in SQLite (a temp file; the default commit policy).
    let dir = std::env::temp_dir().join(format!("ringex-ct-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let mut run = 0;
    time(
        "history",
        || {
            run += 1;
            let db = dir.join(format!("history-{run}.db"));
            let store = ringex_consumers::history::sqlite::SqliteStore::open(&db).expect("store");
            ringex_consumers::history::History::new(store, history_config()).expect("history")
        },
        &events,
    );
    #[cfg(feature = "postgres")]
    if let Ok(url) = std::env::var("RINGEX_PG_URL") {
        time(
            "history-pg",
            || {
                let mut store =
                    ringex_consumers::history::postgres::PgStore::connect(&url).expect("pg");
                store.reset().expect("reset");
                ringex_consumers::history::History::new(store, history_config()).expect("history")
            },
            &events,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
