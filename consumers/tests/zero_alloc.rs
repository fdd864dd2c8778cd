//! Every consumer on the hot path makes no allocation per event once warm: the exchange-core
//! stream (the matcher's own events, every fourth order in an allocation group) is fed to
//! each consumer in batches of about 64 events, the first half to warm it, and the
//! allocations during the second half are counted with a counting global allocator.
//! (The SQLite and PostgreSQL history stores are not on this list: their drivers allocate
//! per statement; the history consumer conflates per batch and commits on a timer.)

use ringex_consumers::allocation::{Allocation, Allocator, Group};
use ringex_consumers::journal::{FsyncPolicy, Journal, JournalConfig};
use ringex_consumers::market_data::MarketData;
use ringex_consumers::risk::RiskUpdater;
use ringex_engine::testing::{count_allocations, CountingAllocator};
use ringex_engine::workload::ExchangeCoreWorkload;
use ringex_engine::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Tests run one at a time here: the counter is global.
static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

const COMMANDS: usize = 200_000;

/// The exchange-core stream's events, every fourth order a block order of group 1.
fn events() -> Vec<Event> {
    ExchangeCoreWorkload::default()
        .generate(COMMANDS)
        .recorded_events(Some(AllocGroupId(1)))
}

/// Feeds the first half of the events to warm the consumer, then counts the allocations
/// made while it takes the second half (and the end of each batch).
fn allocations_once_warm<C: Consumer>(mut c: C, events: &[Event]) -> u64 {
    let half = events.len() / 2;
    let feed = |c: &mut C, range: std::ops::Range<usize>| {
        for i in range {
            let e = &events[i];
            c.on_event(
                e,
                Sequence(i as u64 + 1),
                e.is_last_of_command() && i % 64 >= 63,
            );
        }
    };
    feed(&mut c, 0..half);
    let n = count_allocations(|| feed(&mut c, half..events.len()));
    c.on_shutdown();
    n
}

#[test]
fn risk_makes_no_allocation_once_warm() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let ev = events();
    let (risk, _view) = RiskUpdater::new(HashMap::new());
    assert_eq!(allocations_once_warm(risk, &ev), 0);
}

#[test]
fn market_data_makes_no_allocation_once_warm() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let ev = events();
    let (md, _hub) = MarketData::new(10);
    assert_eq!(allocations_once_warm(md, &ev), 0);
}

#[test]
fn allocation_makes_no_allocation_once_warm() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let ev = events();
    let groups = HashMap::from([(
        AllocGroupId(1),
        Group::weighted(&[(AccountId(1), 50), (AccountId(2), 30), (AccountId(3), 20)]),
    )]);
    let made = std::sync::Arc::new(AtomicU64::new(0));
    let m = made.clone();
    let a = Allocator::new(groups, move |_: &Allocation| {
        m.fetch_add(1, Ordering::Relaxed);
    });
    assert_eq!(allocations_once_warm(a, &ev), 0);
    assert!(
        made.load(Ordering::Relaxed) > 1000,
        "the allocator had work"
    );
}

#[test]
fn journal_makes_no_allocation_once_warm() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let ev = events();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = JournalConfig::new(dir.path());
    // One segment holds the whole stream (a new segment allocates its path, once per
    // segment), and no fsync (the allocations are what is measured here).
    cfg.segment_bytes = 256 << 20;
    cfg.fsync = FsyncPolicy::None;
    assert_eq!(allocations_once_warm(Journal::new(cfg), &ev), 0);
}

/// On the 1000-instrument stream (1000 instruments × 1000 accounts) the state keeps growing
/// all along: pairs of account and instrument, price levels and live block orders appear
/// for the first time in the second half too. What the in-memory consumers allocate there is
/// the amortized growth of their tables for that new state (risk: an account's list of
/// instruments, the pair vectors; market data: a ladder's levels; allocation: a block
/// order's vector while the live ones grow in number) — at most one allocation per 50
/// events here, where the exchange-core stream's state stops growing and makes none.
#[test]
fn on_many_instruments_allocations_follow_new_state_only() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let ev = ringex_engine::workload::MultiSymbolWorkload::default()
        .generate(COMMANDS)
        .recorded_events(Some(AllocGroupId(1)));
    let half = (ev.len() - ev.len() / 2) as u64;
    let (risk, _view) = RiskUpdater::new(HashMap::new());
    let risk = allocations_once_warm(risk, &ev);
    let (md, _hub) = MarketData::new(10);
    let md = allocations_once_warm(md, &ev);
    let groups = HashMap::from([(
        AllocGroupId(1),
        Group::weighted(&[(AccountId(1), 50), (AccountId(2), 30), (AccountId(3), 20)]),
    )]);
    let alloc = allocations_once_warm(Allocator::new(groups, |_: &Allocation| {}), &ev);
    eprintln!(
        "allocations over {half} warm events: risk {risk}, market data {md}, allocation {alloc}"
    );
    for (name, n) in [("risk", risk), ("market data", md), ("allocation", alloc)] {
        assert!(n * 50 < half, "{name}: {n} allocations over {half} events");
    }
}
