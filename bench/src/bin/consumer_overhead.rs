//! Does adding consumers slow the matcher? Closed-loop pipeline throughput on the
//! exchange-core stream, same run, alternating configurations, median of `--runs`:
//! - base: one counting consumer;
//! - + risk and allocation;
//! - + the market-data publisher with 4 subscribers draining their queues on their own threads.
//!
//! `consumer_overhead [--commands N] [--runs R] [--idle spin|backoff|yield]`

use ringex_bench::harness::topology::CountingConsumer;
use ringex_consumers::allocation::{Allocation, Allocator};
use ringex_consumers::market_data::MarketData;
use ringex_consumers::risk::RiskUpdater;
use ringex_engine::pipeline::{ConsumerOptions, IdleStrategy};
use ringex_engine::workload::ExchangeCoreWorkload;
use ringex_engine::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

fn run(setup: &[Command], cmds: &[Command], mode: u8, idle: IdleStrategy) -> f64 {
    let mut b = Pipeline::builder().matcher_idle(idle).gateway_idle(idle);
    let o = || ConsumerOptions::default().idle(idle);
    b.add_consumer(CountingConsumer::new("count".into()), o());
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    if mode == 1 {
        b.add_consumer(RiskUpdater::new(Default::default()).0, o());
        b.add_consumer(Allocator::new(Default::default(), |_: &Allocation| {}), o());
    }
    if mode == 2 {
        let (md, hub) = MarketData::new(10);
        for _ in 0..4 {
            let sub = hub.subscribe(1 << 14);
            let stop = stop.clone();
            readers.push(std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    match sub.rx.recv_timeout(std::time::Duration::from_millis(1)) {
                        Ok(_) => n += 1,
                        Err(_) => continue,
                    }
                }
                n + sub.rx.try_iter().count() as u64
            }));
        }
        b.add_consumer(md, o());
    }
    let p = b.start().expect("start");
    let mut g = p.gateway();
    for c in setup {
        let _ = g.submit_at(*c);
    }
    let t = Instant::now();
    for c in cmds {
        let _ = g.submit_at(*c);
    }
    let total = (setup.len() + cmds.len()) as u64;
    while p.status().commands_processed < total {
        std::thread::yield_now();
    }
    let secs = t.elapsed().as_secs_f64();
    drop(g);
    let _ = p.shutdown();
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        let _ = r.join();
    }
    cmds.len() as f64 / secs
}

fn main() {
    ringex_bench::harness::args::check(
        "usage: consumer_overhead [--commands N] [--runs R] [--idle spin|backoff|yield]",
        &["--commands", "--runs", "--idle"],
    );
    let n: usize = ringex_bench::harness::args::value("--commands")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let runs: usize = ringex_bench::harness::args::value("--runs")
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let idle = match ringex_bench::harness::args::value("--idle").as_deref() {
        Some("spin") => IdleStrategy::BusySpin,
        Some("yield") => IdleStrategy::Yield,
        _ => IdleStrategy::SHARED,
    };
    let w = ExchangeCoreWorkload::default().generate(n);
    println!("matcher throughput (commands processed per second, closed loop), exchange-core, {n} commands, idle {idle:?}, {runs} runs each, alternating");
    let mut r: [Vec<f64>; 3] = Default::default();
    for _ in 0..runs {
        for (mode, v) in r.iter_mut().enumerate() {
            v.push(run(&w.setup, &w.commands, mode as u8, idle));
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let base = med(&mut r[0]);
    let ra = med(&mut r[1]);
    let md = med(&mut r[2]);
    println!(
        "base (1 counting consumer):             {:.2}M commands/s",
        base / 1e6
    );
    println!(
        "+ risk + allocation:                    {:.2}M commands/s ({:+.1}%)",
        ra / 1e6,
        100.0 * (ra / base - 1.0)
    );
    println!(
        "+ market data with 4 subscribers:       {:.2}M commands/s ({:+.1}%)",
        md / 1e6,
        100.0 * (md / base - 1.0)
    );
}
