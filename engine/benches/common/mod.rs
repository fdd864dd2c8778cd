//! The measured loop shared by the matcher benchmarks.

use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup};
use ringex_engine::{Command, Matcher, Sequence};
use std::hint::black_box;

/// A matcher that has handled `setup`, and the input sequence after it.
pub fn warmed(mut m: Matcher, setup: &[Command]) -> (Matcher, u64) {
    let mut out = Vec::with_capacity(4096);
    for (i, cmd) in setup.iter().enumerate() {
        out.clear();
        m.process(Sequence(i as u64 + 1), cmd, &mut out);
    }
    (m, setup.len() as u64)
}

/// Benchmarks `cmds` on a fresh clone of `warm` per iteration (the clone is not timed).
pub fn bench_commands(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    warm: &Matcher,
    base: u64,
    cmds: &[Command],
) {
    g.bench_function(name, |b| {
        b.iter_batched_ref(
            || warm.clone(),
            |m| {
                let mut out = Vec::with_capacity(4096);
                for (i, cmd) in cmds.iter().enumerate() {
                    out.clear();
                    m.process(Sequence(base + i as u64 + 1), cmd, &mut out);
                    black_box(&out);
                }
            },
            BatchSize::PerIteration,
        )
    });
}
