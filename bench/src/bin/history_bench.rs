//! Query latency of the order history on a large store: builds a SQLite store of N orders
//! (default 10M) by streaming the exchange-core mix through the matcher into the history
//! consumer (a generated 1M-command stream replayed with fresh ids, as in the soak), then
//! times the queries people run: one order by id, an account's open orders, an account's
//! trades since a sequence, a symbol's active orders.
//!
//! `history_bench [--orders N] [--db FILE] [--keep]` (the store is deleted unless --keep).

use ringex_consumers::history::sqlite::SqliteStore;
use ringex_consumers::history::{History, HistoryConfig, HistoryQuery};
use ringex_engine::workload::{shift_order_id, ExchangeCoreWorkload, SplitMix64};
use ringex_engine::*;
use std::path::PathBuf;
use std::time::Instant;

fn percentiles(mut v: Vec<f64>) -> String {
    v.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q) as usize];
    format!(
        "p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs ({} queries)",
        p(0.5),
        p(0.99),
        v[v.len() - 1],
        v.len()
    )
}

fn main() {
    ringex_bench::harness::args::check(
        "usage: history_bench [--orders N] [--db FILE] [--keep]",
        &["--orders", "--db", "--keep"],
    );
    let want: u64 = ringex_bench::harness::args::value("--orders")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let db: PathBuf = ringex_bench::harness::args::value("--db")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("ringex-history-{}.db", std::process::id()))
        });
    let keep = std::env::args().any(|a| a == "--keep");
    SqliteStore::remove_files(&db);
    let w = ExchangeCoreWorkload::default().generate(1_000_000);
    let span = (w.setup.len() + w.commands.len()) as u64 + 1;
    let mut h = History::new(
        SqliteStore::open(&db).expect("store"),
        HistoryConfig::default(),
    )
    .expect("history")
    .with_symbols([(
        ringex_engine::workload::EXCHANGE_CORE_INSTRUMENT,
        "EXC".to_string(),
    )]);
    let mut m = Matcher::default();
    let (mut cmd_seq, mut ev_seq, mut orders, mut events_total) = (0u64, 0u64, 0u64, 0u64);
    let mut out = Vec::with_capacity(64);
    let mut chunk: Vec<(u64, Event, u64)> = Vec::with_capacity(1 << 16);
    let t = Instant::now();
    let mut round = 0u64;
    while orders < want {
        // Each round after the first starts from an empty book.
        if round > 0 {
            for a in 1..=1000 {
                cmd_seq += 1;
                out.clear();
                m.process(
                    Sequence(cmd_seq),
                    &Command::new(
                        m.clock(),
                        CommandKind::MassCancel {
                            account: AccountId(a),
                            instrument: None,
                        },
                    ),
                    &mut out,
                );
                for e in &out {
                    ev_seq += 1;
                    chunk.push((ev_seq, *e, m.clock().0));
                }
            }
        }
        let by = round * span;
        let setup = w.setup.iter().skip(if round == 0 { 0 } else { 1 });
        for c in setup.chain(&w.commands) {
            let c = shift_order_id(c, by);
            cmd_seq += 1;
            out.clear();
            m.process(Sequence(cmd_seq), &c, &mut out);
            for e in &out {
                ev_seq += 1;
                if matches!(e.kind, EventKind::Accepted { .. }) {
                    orders += 1;
                }
                chunk.push((ev_seq, *e, m.clock().0));
            }
            if chunk.len() >= 60_000 && out.last().is_some_and(|e| e.is_last_of_command()) {
                events_total += h.catch_up(chunk.drain(..)).expect("write");
            }
            if orders >= want {
                break;
            }
        }
        round += 1;
    }
    events_total += h.catch_up(chunk.drain(..)).expect("write");
    let build = t.elapsed().as_secs_f64();
    let mut q = h.into_store();
    let size: u64 = ["", "-wal"]
        .iter()
        .filter_map(|x| std::fs::metadata(format!("{}{x}", db.display())).ok())
        .map(|m| m.len())
        .sum();
    println!(
        "store: {orders} orders, {events_total} events applied in {build:.1} s ({:.2}M events/s, matcher included), {:.0} MiB, {}",
        events_total as f64 / build / 1e6,
        size as f64 / (1 << 20) as f64,
        db.display()
    );
    let mut rng = SplitMix64::new(9);
    let time = |f: &mut dyn FnMut() -> usize, n: usize| -> (Vec<f64>, usize) {
        let mut v = Vec::with_capacity(n);
        let mut rows = 0;
        for _ in 0..n {
            let t = Instant::now();
            rows += f();
            v.push(t.elapsed().as_secs_f64() * 1e6);
        }
        (v, rows)
    };
    let max_id = round * span;
    let (v, rows) = time(
        &mut || {
            q.order(1 + rng.below(max_id))
                .expect("order")
                .map_or(0, |_| 1)
        },
        20_000,
    );
    println!("order(id), random ids: {}; {rows} found", percentiles(v));
    let mut rng = SplitMix64::new(10);
    let (v, rows) = time(
        &mut || {
            q.open_orders(1 + rng.below(1000), None)
                .expect("open")
                .len()
        },
        20_000,
    );
    println!("open_orders(account): {}; {rows} rows", percentiles(v));
    let inst = ringex_engine::workload::EXCHANGE_CORE_INSTRUMENT.0;
    let mut rng = SplitMix64::new(11);
    let (v, rows) = time(
        &mut || {
            q.open_orders(1 + rng.below(1000), Some(inst))
                .expect("open")
                .len()
        },
        20_000,
    );
    println!(
        "open_orders(account, symbol): {}; {rows} rows",
        percentiles(v)
    );
    let mut rng = SplitMix64::new(12);
    let since = ev_seq.saturating_sub(200_000);
    let (v, rows) = time(
        &mut || q.trades(1 + rng.below(1000), since).expect("trades").len(),
        2_000,
    );
    println!(
        "trades(account, since the last 200k events): {}; {rows} rows",
        percentiles(v)
    );
    let (v, rows) = time(&mut || q.active_orders(inst).expect("active").len(), 200);
    println!("active_orders(symbol): {}; {rows} rows", percentiles(v));
    if !keep {
        SqliteStore::remove_files(&db);
    }
}
