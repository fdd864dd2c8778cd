//! Matcher alone, one thread, on the exchange-core mix (see `ringex_engine::workload`):
//! one instrument, 1000 accounts, ~1000 resting orders over ~750 price slots, commands
//! 9% GTC / 3% IOC / 6% cancel / 82% move, ~6% trading, seed 1 — unfunded, and funded
//! (every order checked and held against its account's balances, fills settled with fees)
//! in the same run.
//!
//! `cargo bench -p ringex-engine --bench matcher_exchange_core`

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringex_engine::workload::ExchangeCoreWorkload;
use ringex_engine::{Matcher, MatcherCapacity};

const COMMANDS: usize = 1_000_000;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("matcher");
    g.throughput(Throughput::Elements(COMMANDS as u64));
    g.sample_size(20);
    for funded in [false, true] {
        let w = ExchangeCoreWorkload {
            funded,
            ..ExchangeCoreWorkload::default()
        }
        .generate(COMMANDS);
        let (warm, base) = common::warmed(
            Matcher::with_capacity(MatcherCapacity {
                orders: 8192,
                ids: COMMANDS + 8192,
                gtd: 16,
            }),
            &w.setup,
        );
        let name = if funded {
            "exchange_core_funded_1M_commands"
        } else {
            "exchange_core_1M_commands"
        };
        common::bench_commands(&mut g, name, &warm, base, &w.commands);
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
