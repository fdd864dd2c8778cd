//! Soak: the exchange-core mix with fresh order ids through the full pipeline (journal with
//! `--fsync batch`, risk, market data, allocation) for a long time, printing the process's
//! resident memory at checkpoints. Memory that grows with the number of commands (not with
//! the live orders) shows up here.
//!
//! `soak [--commands N] [--every N] [--dir DIR]` (default 100M commands, a line every 10M).
//!
//! One loop replays a generated 1M-command stream with every order id shifted past all ids
//! used before (so ids are fresh and increasing, as from a counter), then mass-cancels every
//! account, so the live book stays at its usual size (~1000 orders) loop after loop.

use ringex_consumers::allocation::{Allocation, Allocator};
use ringex_consumers::journal::{FsyncPolicy, Journal, JournalConfig};
use ringex_consumers::market_data::MarketData;
use ringex_consumers::risk::RiskUpdater;
use ringex_engine::pipeline::ConsumerOptions;
use ringex_engine::workload::ExchangeCoreWorkload;
use ringex_engine::*;
use std::path::PathBuf;
use std::time::Instant;

/// Resident set size of this process in MiB.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn main() {
    ringex_bench::harness::args::check(
        "usage: soak [--commands N] [--every N] [--dir DIR]",
        &["--commands", "--every", "--dir"],
    );
    let total = ringex_bench::harness::args::number("--commands", 100_000_000);
    let every = ringex_bench::harness::args::number("--every", 10_000_000).max(1);
    let dir: PathBuf = std::env::args()
        .skip_while(|a| a != "--dir")
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("ringex-soak-{}", std::process::id()))
        });
    let _ = std::fs::remove_dir_all(&dir);
    let w = ExchangeCoreWorkload::default().generate(1_000_000);
    let span = (w.setup.len() + w.commands.len()) as u64 + 1;
    let mut b = Pipeline::builder();
    let mut cfg = JournalConfig::new(&dir);
    cfg.fsync = FsyncPolicy::Batch;
    b.add_consumer(
        Journal::new(cfg),
        ConsumerOptions::default().max_batch(4096),
    );
    b.add_consumer(
        RiskUpdater::new(Default::default()).0,
        ConsumerOptions::default(),
    );
    b.add_consumer(MarketData::new(10).0, ConsumerOptions::default());
    b.add_consumer(
        Allocator::new(Default::default(), |_: &Allocation| {}),
        ConsumerOptions::default(),
    );
    let p = b.start().expect("start");
    let mut g = p.gateway();
    println!("soak: exchange-core mix, fresh ids, full pipeline (journal batch, risk, md, alloc), journal in {}", dir.display());
    println!("commands,rss_mib,seconds");
    let t = Instant::now();
    let mut sent = 0u64;
    let mut next_mark = every;
    let mut round = 0u64;
    while sent < total {
        let by = round * span;
        let setup = w.setup.iter().skip(if round == 0 { 0 } else { 1 });
        for c in setup.chain(&w.commands) {
            g.submit_at(ringex_engine::workload::shift_order_id(c, by))
                .expect("submit");
            sent += 1;
            if sent >= next_mark {
                // Let the pipeline catch up so the figure is of a settled state.
                while p.status().commands_processed < sent {
                    std::thread::yield_now();
                }
                println!("{sent},{:.0},{:.1}", rss_mib(), t.elapsed().as_secs_f64());
                next_mark += every;
            }
            if sent >= total {
                break;
            }
        }
        for a in 1..=1000 {
            g.submit(CommandKind::MassCancel {
                account: AccountId(a),
                instrument: None,
            })
            .expect("submit");
        }
        round += 1;
    }
    drop(g);
    let report = p.shutdown();
    println!(
        "done: {} commands, {} events, {:.1} s, resting at the end {}",
        report.commands_processed,
        report.events_published,
        t.elapsed().as_secs_f64(),
        report.matcher.as_ref().map_or(0, |m| m.resting_count())
    );
    let _ = std::fs::remove_dir_all(&dir);
}
