//! `ringex query` and `ringex reconcile` against a PostgreSQL store (`--pg URL`) answer
//! exactly as against the SQLite store of the same journal. Needs a server: `RINGEX_PG_URL`
//! (set by `.ci/test`, which starts one); without it this test fails, it never skips.
#![cfg(feature = "postgres")]

use ringex_bench::cli::query::catch_up;
use ringex_consumers::history::postgres::PgStore;
use ringex_consumers::history::{History, HistoryConfig};
use ringex_engine::InstrumentId;
use std::process::Command;

fn ringex(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ringex"))
        .args(args)
        .output()
        .expect("run ringex");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn query_and_reconcile_answer_the_same_from_postgres() {
    let url = std::env::var("RINGEX_PG_URL").expect(
        "RINGEX_PG_URL is not set: this test needs a PostgreSQL server (run `bash .ci/test`, \
         which installs and starts one)",
    );
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.csv");
    std::fs::write(
        &script,
        "asset,USD,2\nasset,BTC,8\n\
         instrument,BTC-USD,1,0.01,base=BTC,quote=USD,maker_fee=0.001,taker_fee=0.002\n\
         instrument,PLAIN,0.01,1\n\
         deposit,0,1,USD,100000\ndeposit,0,2,BTC,10\ndeposit,0,3,USD,100000\n\
         new,1,BTC-USD,1,101,buy,limit,gtc,100,0.5\n\
         new,2,BTC-USD,2,102,sell,limit,gtc,100,0.2\n\
         new,3,PLAIN,1,103,buy,limit,gtc,10.5,3\n\
         new,4,PLAIN,3,104,sell,limit,gtc,10.5,1\n\
         new,5,PLAIN,3,105,sell,limit,gtc,11,2\n\
         cancel,6,PLAIN,3,105\n\
         new,7,BTC-USD,3,106,buy,limit,gtc,99,1\n",
    )
    .unwrap();
    let journal = dir.path().join("journal");
    let db = dir.path().join("h.db");
    let (ok, out) = ringex(&[
        "run",
        script.to_str().unwrap(),
        "--journal",
        journal.to_str().unwrap(),
        "--history",
        db.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    // The same journal into PostgreSQL, from the start.
    let mut pg = PgStore::connect(&url).unwrap_or_else(|e| panic!("PostgreSQL at {url:?}: {e}"));
    pg.reset().unwrap();
    let mut h = History::new(pg, HistoryConfig::default())
        .unwrap()
        .with_symbols([
            (InstrumentId(0), "BTC-USD".to_string()),
            (InstrumentId(1), "PLAIN".to_string()),
        ]);
    assert!(catch_up(&mut h, &journal).unwrap() > 0);
    drop(h);
    let questions: [&[&str]; 6] = [
        &["order", "101"],
        &["open-orders", "--account", "1"],
        &["open-orders", "--account", "3", "--symbol", "BTC-USD"],
        &["trades", "--account", "3"],
        &["trades", "--account", "1", "--since", "0"],
        &["active", "--symbol", "PLAIN"],
    ];
    for q in questions {
        let lite: Vec<&str> = ["query", "--db", db.to_str().unwrap()]
            .into_iter()
            .chain(q.iter().copied())
            .collect();
        let post: Vec<&str> = ["query", "--pg", &url]
            .into_iter()
            .chain(q.iter().copied())
            .collect();
        let (a_ok, a) = ringex(&lite);
        let (b_ok, b) = ringex(&post);
        assert!(a_ok && b_ok, "{q:?}: {a} / {b}");
        assert!(a.lines().count() >= 2, "{q:?} answers something: {a}");
        assert_eq!(a, b, "{q:?}");
    }
    let (ok, out) = ringex(&[
        "reconcile",
        "--journal",
        journal.to_str().unwrap(),
        "--pg",
        &url,
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("agree"), "{out}");
    // Both stores named: refused.
    let (ok, _) = ringex(&[
        "query",
        "--db",
        db.to_str().unwrap(),
        "--pg",
        &url,
        "order",
        "1",
    ]);
    assert!(!ok);
}
