//! Runs the matcher alone over a generated exchange-core stream, for instruction counting
//! with callgrind (`bench/callgrind.sh`). The measured loop is the `#[inline(never)]`
//! function `run_matcher`, so `--toggle-collect=*run_matcher*` counts only it.
//!
//! Usage: `matcher_loop [COMMANDS] [--funded | --multi]` (default 200000; `--funded`: the
//! funded exchange-core mix; `--multi`: the multi-symbol flow, 1000 instruments).

use ringex_engine::workload::{ExchangeCoreWorkload, MultiSymbolWorkload};
use ringex_engine::{Command, Event, Matcher, MatcherCapacity, Sequence};
use std::hint::black_box;

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
    ringex_bench::args::check(
        "usage: matcher_loop [N] [--funded | --multi]",
        &["--funded", "--multi"],
    );
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let funded = std::env::args().any(|a| a == "--funded");
    let multi = std::env::args().any(|a| a == "--multi");
    let w = if multi {
        MultiSymbolWorkload::default().generate(n)
    } else {
        ExchangeCoreWorkload {
            funded,
            ..ExchangeCoreWorkload::default()
        }
        .generate(n)
    };
    let mut m = Matcher::with_capacity(if multi {
        MatcherCapacity::default()
    } else {
        MatcherCapacity {
            orders: 8192,
            ids: n + 8192,
            gtd: 16,
        }
    });
    let mut out = Vec::with_capacity(4096);
    let setup = w.setup.len();
    let events_setup = run_matcher(&mut m, &w.setup, 0, &mut out);
    let t = std::time::Instant::now();
    let events = run_matcher(&mut m, &w.commands, setup as u64, &mut out);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{}{}setup commands {setup} (events {events_setup}), measured commands {} (events {events}) in {:.1} ms = {:.2} M commands/s, mix {:?}",
        if funded { "funded: " } else { "" },
        if multi { "multi-symbol: " } else { "" },
        w.commands.len(),
        secs * 1e3,
        w.commands.len() as f64 / secs / 1e6,
        w.stats
    );
}
