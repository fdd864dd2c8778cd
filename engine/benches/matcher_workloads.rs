//! Matcher alone, one thread, on the workloads beside the exchange-core mix: LOBSTER replay
//! with real ids (every sample in `RINGEX_LOBSTER_DIR` or `../shared/lobster`: the three
//! message CSVs and the three zips; the replay's setup runs untimed), the deep-book flow
//! (`DeepBookWorkload`, 200,000 new orders, each of the five price scenarios) and the
//! multi-symbol flow (`MultiSymbolWorkload`, 1000 instruments, Zipf), and the policy flow
//! (`PolicyWorkload`: pro-rata levels with and without TOP, icebergs, stops), and the deep
//! calm flow with its ids relabelled (`id_order`: in arrival order, a shuffled
//! permutation, 16 gateways' interleaved counters, random 64-bit ids; 200,000 new orders).
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
    let files = ringex_engine::lobster::sample_files();
    if files.is_empty() {
        eprintln!("no LOBSTER samples found: set RINGEX_LOBSTER_DIR to run the replay benchmarks");
    }
    for f in &files {
        let w = ringex_engine::lobster::workload(f).expect("read a LOBSTER sample");
        let name = f
            .file_stem()
            .map_or(String::new(), |n| n.to_string_lossy().into());
        // AAPL_2012-06-21_34200000_57600000_message_1 → AAPL_1 (ticker, levels).
        let short = name
            .replace("LOBSTER_SampleFile_", "")
            .replace("_2012-06-21", "")
            .replace("_34200000_57600000_message", "");
        run(c, &format!("lobster_{short}_levels"), &w);
    }
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
    let w = ringex_engine::policy_workload::PolicyWorkload::default().generate(500_000);
    run(c, "policies_500k_steps", &w);
    let deep = DeepBookWorkload::default().generate(200_000);
    for order in ringex_engine::id_order::IdOrder::ALL {
        let w = ringex_engine::id_order::relabel(&deep, order, 1);
        run(
            c,
            &format!("deep_calm_200k_orders_ids_{}", order.name()),
            &w,
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
