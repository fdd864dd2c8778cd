//! Matcher alone, one thread, on the other generated workloads: the deep-book flow
//! (`DeepBookWorkload`, 200,000 new orders, each of the five price scenarios) and the
//! multi-symbol flow (`MultiSymbolWorkload`, 1000 instruments, Zipf). LOBSTER replay lives
//! in `ringex-bench` (it needs the parser): `ringex lobster --throughput FILE`.
//!
//! `cargo bench -p ringex-engine --bench matcher_workloads`

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringex_engine::workload::{
    DeepBookWorkload, GeneratedWorkload, MultiSymbolWorkload, PriceScenario,
};
use ringex_engine::{Matcher, MatcherCapacity};

fn run(c: &mut Criterion, name: &str, w: &GeneratedWorkload) {
    let mut g = c.benchmark_group("matcher_workloads");
    g.throughput(Throughput::Elements(w.commands.len() as u64));
    g.sample_size(10);
    let (warm, base) = common::warmed(Matcher::with_capacity(MatcherCapacity::default()), &w.setup);
    common::bench_commands(&mut g, name, &warm, base, &w.commands);
    g.finish();
}

fn bench(c: &mut Criterion) {
    for sc in PriceScenario::ALL {
        let w = DeepBookWorkload {
            scenario: sc,
            ..Default::default()
        }
        .generate(200_000);
        run(c, &format!("deep_{}_200k_orders", sc.name()), &w);
    }
    let w = MultiSymbolWorkload::default().generate(500_000);
    run(c, "multi_symbol_500k_commands", &w);
}

criterion_group!(benches, bench);
criterion_main!(benches);
