//! Runs the matcher alone over one workload, for timing and for instruction counting with
//! callgrind (`bench/callgrind.sh`). The setup (the instrument, the starting book) and then
//! the measured commands run in the `#[inline(never)]` function `run_matcher`, so
//! `--toggle-collect=*run_matcher*` counts both (the time is the measured commands'). One
//! run in a fresh process: a workload whose book grows (the deep-book flow) pays for its
//! first page faults here, so time those with `peers` or criterion (warmed runs).
//!
//! ```text
//! matcher_loop [N]                     # the exchange-core mix, N commands (default 200000)
//! matcher_loop [N] --funded            # the funded exchange-core mix
//! matcher_loop [N] --multi             # the multi-symbol flow (1000 instruments)
//! matcher_loop [N] --deep [SCENARIO]   # the deep-book flow, N new orders (default calm)
//! matcher_loop --lobster FILE          # a LOBSTER replay with real ids (N is ignored)
//! matcher_loop [N] --policies          # pro-rata levels, icebergs and stops (N steps)
//! matcher_loop [N] --deep --ids ORDER  # ids relabelled: arrival|shuffled|gateways|random
//! ```
//!
//! `--runs R` times the measured commands R times, each on a fresh matcher after its setup,
//! and prints the fastest run and every run's figure (on a machine shared with other work,
//! the fastest run is the one the least disturbed).
//! `--ids ORDER` relabels any workload's order ids (`ringex_engine::id_order`).
//! `--live-ids` runs the matcher with `IdUniqueness::Live` (only live orders' ids refused).
//! `--id-memory` also prints what the record of used ids costs on the flow: the heap the
//! matcher holds after the flow under `IdUniqueness::Ever`, less what it holds under
//! `IdUniqueness::Live` (the same books, the same live-id table; nothing kept for dead ids),
//! per distinct order id (a counting allocator, requested sizes; no room reserved for
//! gaps up front, `MatcherCapacity::ids` 0).

use ringex_engine::workload::{
    DeepBookWorkload, ExchangeCoreWorkload, GeneratedWorkload, MultiSymbolWorkload, PriceScenario,
};
use ringex_engine::{Command, Event, Matcher, MatcherCapacity, Sequence};
use std::hint::black_box;

#[global_allocator]
static GLOBAL: ringex_engine::testing::CountingAllocator =
    ringex_engine::testing::CountingAllocator;

/// Heap the matcher holds after the whole flow under `rule`, and the allocations the
/// measured commands made.
fn held_after(
    w: &GeneratedWorkload,
    cap: MatcherCapacity,
    rule: ringex_engine::IdUniqueness,
) -> (i64, u64) {
    let mut out = Vec::with_capacity(4096);
    let base = ringex_engine::testing::live_bytes();
    let mut m = Matcher::with_capacity(cap).with_id_uniqueness(rule);
    run_matcher(&mut m, &w.setup, 0, &mut out);
    let allocs = ringex_engine::testing::count_allocations(|| {
        run_matcher(&mut m, &w.commands, w.setup.len() as u64, &mut out);
    });
    let held = ringex_engine::testing::live_bytes() - base;
    drop(m);
    (held, allocs)
}

#[inline(never)]
fn run_matcher(m: &mut Matcher, cmds: &[Command], base: u64, out: &mut Vec<Event>) -> usize {
    let mut events = 0;
    for (i, c) in cmds.iter().enumerate() {
        out.clear();
        m.process(Sequence(base + i as u64 + 1), c, out);
        events += out.len();
    }
    black_box(events)
}

fn main() {
    let usage = "usage: matcher_loop [N] [--funded | --multi | --policies | --deep [SCENARIO] | --lobster FILE] [--ids arrival|shuffled|gateways|random] [--id-memory] [--live-ids] [--runs R]";
    ringex_bench::harness::args::check(
        usage,
        &[
            "--funded",
            "--multi",
            "--policies",
            "--deep",
            "--lobster",
            "--ids",
            "--id-memory",
            "--live-ids",
            "--runs",
        ],
    );
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let has = |f: &str| args.iter().any(|a| a == f);
    let (name, w, cap): (String, GeneratedWorkload, MatcherCapacity) =
        if let Some(file) = ringex_bench::harness::args::value("--lobster") {
            let w = ringex_engine::lobster::workload(file.as_ref()).unwrap_or_else(|e| {
                eprintln!("{file}: {e}");
                std::process::exit(2)
            });
            (format!("LOBSTER {file}"), w, MatcherCapacity::default())
        } else if has("--deep") {
            let sc = ringex_bench::harness::args::value("--deep")
                .and_then(|s| PriceScenario::parse(&s))
                .unwrap_or(PriceScenario::ALL[0]);
            let w = DeepBookWorkload {
                scenario: sc,
                ..Default::default()
            }
            .generate(n);
            (
                format!("deep {} ({n} new orders)", sc.name()),
                w,
                MatcherCapacity::default(),
            )
        } else if has("--policies") {
            let w = ringex_engine::policy_workload::PolicyWorkload::default().generate(n);
            ("policies".into(), w, MatcherCapacity::default())
        } else if has("--multi") {
            let w = MultiSymbolWorkload::default().generate(n);
            ("multi-symbol".into(), w, MatcherCapacity::default())
        } else {
            let funded = has("--funded");
            let w = ExchangeCoreWorkload {
                funded,
                ..ExchangeCoreWorkload::default()
            }
            .generate(n);
            let cap = MatcherCapacity {
                orders: 8192,
                ids: n + 8192,
                gtd: 16,
            };
            let name = if funded {
                "funded exchange-core"
            } else {
                "exchange-core"
            };
            (name.into(), w, cap)
        };
    let (name, w) = match ringex_bench::harness::args::value("--ids") {
        Some(s) => {
            let Some(order) = ringex_engine::id_order::IdOrder::parse(&s) else {
                eprintln!("{usage}");
                std::process::exit(2)
            };
            (
                format!("{name}, ids {}", order.name()),
                ringex_engine::id_order::relabel(&w, order, 1),
            )
        }
        None => (name, w),
    };
    let runs = ringex_bench::harness::args::number("--runs", 1).max(1) as usize;
    let mut out = Vec::with_capacity(4096);
    let setup = w.setup.len();
    let mut timed = Vec::with_capacity(runs);
    let (mut events_setup, mut events) = (0, 0);
    for _ in 0..runs {
        let mut m = Matcher::with_capacity(cap);
        if has("--live-ids") {
            m = m.with_id_uniqueness(ringex_engine::IdUniqueness::Live);
        }
        events_setup = run_matcher(&mut m, &w.setup, 0, &mut out);
        let t = std::time::Instant::now();
        events = run_matcher(&mut m, &w.commands, setup as u64, &mut out);
        timed.push(t.elapsed().as_secs_f64());
    }
    let secs = timed.iter().copied().fold(f64::MAX, f64::min);
    let rate = |secs: f64| w.commands.len() as f64 / secs / 1e6;
    println!(
        "{name}: setup commands {setup} (events {events_setup}), measured commands {} (events {events}) in {:.1} ms = {:.2} M commands/s, mix {:?}",
        w.commands.len(),
        secs * 1e3,
        rate(secs),
        w.stats
    );
    if runs > 1 {
        let all: Vec<String> = timed.iter().map(|&s| format!("{:.2}", rate(s))).collect();
        println!(
            "the fastest of {runs} runs; every run (M commands/s): {}",
            all.join(" ")
        );
    }
    if has("--id-memory") {
        // Nothing reserved for gaps up front: what the flow itself makes the record hold.
        let cap = MatcherCapacity { ids: 0, ..cap };
        let ever = held_after(&w, cap, ringex_engine::IdUniqueness::Ever);
        let live = held_after(&w, cap, ringex_engine::IdUniqueness::Live);
        let ids: std::collections::HashSet<u64> = w
            .setup
            .iter()
            .chain(&w.commands)
            .filter_map(|c| match c.kind {
                ringex_engine::CommandKind::NewOrder(o) => Some(o.order_id.0),
                _ => None,
            })
            .collect();
        let ((ever, allocs_ever), (live, allocs_live)) = (ever, live);
        println!(
            "used-id record: {} bytes for {} order ids = {:.3} bytes per id (matcher heap {} bytes under Ever, {} under Live; allocations during the measured commands: {} under Ever, {} under Live)",
            ever - live,
            ids.len(),
            (ever - live) as f64 / ids.len() as f64,
            ever,
            live,
            allocs_ever,
            allocs_live
        );
    }
}
