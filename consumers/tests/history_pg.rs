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
