//! The history store on PostgreSQL gives the same rows and query answers as on SQLite, and
//! the same exactly-once recovery. Needs a server: `RINGEX_PG_URL` (set by `.ci/test`,
//! which starts one). Without it these tests fail — they never skip.
#![cfg(feature = "postgres")]

mod common;

use common::events_of;
use ringex_consumers::history::postgres::PgStore;
use ringex_consumers::history::sqlite::SqliteStore;
use ringex_consumers::history::{
    rebuild_books, reconcile, History, HistoryConfig, HistoryQuery, HistoryStore,
};
use ringex_engine::workload::ExchangeCoreWorkload;
use ringex_engine::*;

/// The tests share one database: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn pg() -> PgStore {
    let url = std::env::var("RINGEX_PG_URL").expect(
        "RINGEX_PG_URL is not set: these tests need a PostgreSQL server (run `bash .ci/test`, \
         which installs and starts one)",
    );
    PgStore::connect(&url).unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {url:?}: {e}"))
}

fn feed<S: HistoryStore>(store: S, events: &[(u64, Event, u64)], min_events: u64) -> S {
    let mut h = History::new(
        store,
        HistoryConfig {
            min_events,
            ..HistoryConfig::default()
        },
    )
    .expect("history");
    h.catch_up(events.iter().copied()).expect("catch up");
    h.into_store()
}

#[test]
fn postgres_and_sqlite_hold_the_same_history() {
    let _one = serial();
    let w = ExchangeCoreWorkload {
        funded: true,
        accounts: 40,
        target_orders: 150,
        ..ExchangeCoreWorkload::default()
    }
    .generate(15_000);
    let cmds: Vec<Command> = w.setup.iter().chain(&w.commands).copied().collect();
    let (m, events) = events_of(&cmds);

    let tmp = tempfile::tempdir().expect("tmp");
    let lite = feed(
        SqliteStore::open(&tmp.path().join("h.db")).expect("sqlite"),
        &events,
        300,
    );
    let mut p = pg();
    p.reset().expect("reset");
    let mut p = feed(p, &events, 300);

    assert_eq!(
        p.all_orders().expect("pg"),
        lite.all_orders().expect("lite")
    );
    assert_eq!(
        p.all_trades().expect("pg"),
        lite.all_trades().expect("lite")
    );
    assert_eq!(
        p.all_transfers().expect("pg"),
        lite.all_transfers().expect("lite")
    );
    assert_eq!(
        p.all_balance_changes().expect("pg"),
        lite.all_balance_changes().expect("lite")
    );
    let mut lite = lite;
    for account in [1u64, 7, 23, 40] {
        assert_eq!(
            p.open_orders(account, None).expect("pg"),
            lite.open_orders(account, None).expect("lite")
        );
        assert_eq!(
            p.trades(account, 100).expect("pg"),
            lite.trades(account, 100).expect("lite")
        );
    }
    assert_eq!(
        p.active_orders(0).expect("pg"),
        lite.active_orders(0).expect("lite")
    );
    let mut replica = BookReplica::new();
    events.iter().for_each(|(_, e, _)| replica.apply(e));
    assert!(reconcile(&mut p, &replica).expect("reconcile").is_empty());
    let rebuilt = rebuild_books(&mut p).expect("rebuild");
    assert_eq!(
        rebuilt.resting_orders(InstrumentId(0)),
        m.resting_orders(InstrumentId(0))
    );

    // Exactly once after a crash at any commit: a store fed part of the stream, reopened,
    // then caught up with the whole stream (twice) equals the store fed it in one go.
    let want = p.all_orders().expect("pg");
    for cut in [1usize, 977, events.len() / 2, events.len() - 3] {
        let mut s = pg();
        s.reset().expect("reset");
        {
            let mut h = History::new(
                s,
                HistoryConfig {
                    min_events: 101,
                    ..HistoryConfig::default()
                },
            )
            .expect("history");
            h.catch_up(events[..cut].iter().copied()).expect("part");
            drop(h); // no final commit: what came after the last commit is lost
        }
        let s = feed(pg(), &events, 1 << 40);
        let mut s = feed(s, &events, 1 << 40);
        assert_eq!(s.all_orders().expect("pg"), want, "cut at {cut}");
        assert_eq!(
            s.all_trades().expect("pg"),
            lite.all_trades().expect("lite")
        );
    }
}

/// Order ids in any order (shuffled, 16 gateways' counters, random 64-bit ids, half of
/// them above 2^63 and stored wrapped) and the policy flow (stops pending then elected,
/// iceberg peaks): PostgreSQL, fed in many commits with a reconnect half way, holds the same
/// rows as SQLite fed in one. Orders above every id the store holds are COPYed straight
/// into the table, the others upserted: both paths, and the largest id read back on
/// reconnecting, are exercised here.
#[test]
fn any_id_order_and_the_policy_flow_give_the_same_rows_as_sqlite() {
    let _one = serial();
    use ringex_engine::id_order::{relabel, IdOrder};
    let base = ExchangeCoreWorkload {
        funded: true,
        accounts: 30,
        target_orders: 120,
        ..ExchangeCoreWorkload::default()
    }
    .generate(6_000);
    let mut flows: Vec<(&str, ringex_engine::workload::GeneratedWorkload)> =
        [IdOrder::Shuffled, IdOrder::Gateways, IdOrder::Random]
            .into_iter()
            .map(|o| (o.name(), relabel(&base, o, 7)))
            .collect();
    flows.push((
        "policies",
        ringex_engine::policy_workload::PolicyWorkload::default().generate(6_000),
    ));
    let tmp = tempfile::tempdir().expect("tmp");
    for (name, w) in flows {
        let cmds: Vec<Command> = w.setup.iter().chain(&w.commands).copied().collect();
        let (_, events) = events_of(&cmds);
        let lite = feed(
            SqliteStore::open(&tmp.path().join(format!("{name}.db"))).expect("sqlite"),
            &events,
            1 << 40,
        );
        let mut p = pg();
        p.reset().expect("reset");
        let p = feed(p, &events[..events.len() / 2], 97);
        drop(p);
        let mut p = feed(pg(), &events, 97);
        let want = lite.all_orders().expect("lite");
        if name == "random" {
            assert!(want.iter().any(|o| o.order_id > 1 << 63), "wrapped ids");
        }
        assert_eq!(p.all_orders().expect("pg"), want, "{name}: orders");
        assert_eq!(
            p.all_trades().expect("pg"),
            lite.all_trades().expect("lite"),
            "{name}: trades"
        );
    }
}
