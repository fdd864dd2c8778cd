//! Matcher alone, one thread, on the other generated workloads: the deep-book flow
//! (`DeepBookWorkload`, 200,000 new orders, each of the five price scenarios) and the
//! multi-symbol flow (`MultiSymbolWorkload`, 1000 instruments, Zipf). LOBSTER replay lives
//! in `ringex-bench` (it needs the parser): `ringex lobster --throughput FILE`.
//!
//! `cargo bench -p ringex-engine --bench matcher_workloads`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ringex_engine::workload::{
    DeepBookWorkload, GeneratedWorkload, MultiSymbolWorkload, PriceScenario,
};
use ringex_engine::{Matcher, MatcherCapacity, Sequence};
use std::hint::black_box;

fn run(c: &mut Criterion, name: &str, w: &GeneratedWorkload) {
    let mut g = c.benchmark_group("matcher_workloads");
    g.throughput(Throughput::Elements(w.commands.len() as u64));
    g.sample_size(10);
    let mut warm = Matcher::with_capacity(MatcherCapacity::default());
    let mut out = Vec::with_capacity(4096);
    for (i, cmd) in w.setup.iter().enumerate() {
        out.clear();
        warm.process(Sequence(i as u64 + 1), cmd, &mut out);
    }
    let base = w.setup.len() as u64;
    g.bench_function(name, |b| {
        b.iter_batched_ref(
            || warm.clone(),
            |m| {
                let mut out = Vec::with_capacity(4096);
                for (i, cmd) in w.commands.iter().enumerate() {
                    out.clear();
                    m.process(Sequence(base + i as u64 + 1), cmd, &mut out);
                    black_box(&out);
                }
            },
            BatchSize::PerIteration,
        )
    });
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
