//! Proves the hot path allocates nothing once warm: a counting global allocator around
//! 200k exchange-core commands (unfunded and funded) after a warm-up pass, (The ring slots' sizes are compile-time assertions beside `Command` and `Event`.)

use ringex_engine::testing::{count_allocations, CountingAllocator};
use ringex_engine::workload::ExchangeCoreWorkload;
use ringex_engine::*;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Counts the allocations of `N` warm commands of the exchange-core mix (funded or not).
fn warm_allocations(funded: bool) -> u64 {
    // One at a time: the counter is global, and the other test's setup allocates.
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    const N: usize = 200_000;
    // Twice the stream: the first half warms up, the second half is counted.
    let w = ExchangeCoreWorkload {
        funded,
        ..ExchangeCoreWorkload::default()
    }
    .generate(2 * N);
    let mut m = Matcher::with_capacity(MatcherCapacity {
        orders: 8192,
        ids: 4 * N + 8192,
        gtd: 16,
    });
    let mut out = Vec::with_capacity(4096);
    let mut seq = 0u64;
    for c in w.setup.iter().chain(&w.commands[..N]) {
        seq += 1;
        out.clear();
        m.process(Sequence(seq), c, &mut out);
    }
    let mut events = 0usize;
    let allocs = count_allocations(|| {
        for c in &w.commands[N..] {
            seq += 1;
            out.clear();
            m.process(Sequence(seq), c, &mut out);
            events += out.len();
        }
    });
    assert!(events >= N, "every command made at least one event");
    if funded {
        assert!(
            m.ledger().balances().len() >= 1000,
            "the accounts are funded"
        );
    }
    allocs
}

/// The two tests count in turn (the counter is global).
static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn matcher_makes_no_allocation_per_command_once_warm() {
    assert_eq!(warm_allocations(false), 0, "allocations in warm commands");
}

#[test]
fn funded_matcher_makes_no_allocation_per_command_once_warm() {
    assert_eq!(
        warm_allocations(true),
        0,
        "allocations in warm funded commands"
    );
}

/// The policy flow (pro-rata levels with and without TOP, icebergs refilled, stops elected
/// and cascading): no allocation once warm either.
#[test]
fn policy_flow_makes_no_allocation_per_command_once_warm() {
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    const N: usize = 200_000;
    let w = ringex_engine::policy_workload::PolicyWorkload::default().generate(2 * N);
    let mut m = Matcher::with_capacity(MatcherCapacity {
        orders: 1 << 16,
        ids: 1 << 16,
        gtd: 16,
    });
    let mut out = Vec::with_capacity(4096);
    let mut seq = 0u64;
    let half = w.commands.len() / 2;
    for c in w.setup.iter().chain(&w.commands[..half]) {
        seq += 1;
        out.clear();
        m.process(Sequence(seq), c, &mut out);
    }
    let (mut fills, mut triggered) = (0usize, 0usize);
    let allocs = count_allocations(|| {
        for c in &w.commands[half..] {
            seq += 1;
            out.clear();
            m.process(Sequence(seq), c, &mut out);
            for e in &out {
                fills += matches!(e.kind, EventKind::Fill { .. }) as usize;
                triggered += matches!(e.kind, EventKind::Triggered { .. }) as usize;
            }
        }
    });
    assert!(
        fills > 10_000 && triggered > 1_000,
        "{fills} fills, {triggered} stops triggered"
    );
    assert_eq!(allocs, 0, "allocations in warm commands");
}
