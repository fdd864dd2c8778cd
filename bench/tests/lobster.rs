//! LOBSTER replay against the real NASDAQ samples in `../shared/lobster` (or
//! `RINGEX_LOBSTER_DIR`). Skips, saying so, when the folder is not there (a user's clone).

use ringex_bench::lobster::{lobster_dir, read, replay};

fn check(file: &str) {
    let Some(dir) = lobster_dir() else {
        eprintln!("SKIPPED: no LOBSTER folder (set RINGEX_LOBSTER_DIR or put the samples in ../shared/lobster)");
        return;
    };
    let path = dir.join(file);
    if !path.exists() {
        eprintln!("SKIPPED: {} not found", path.display());
        return;
    }
    let (msgs, rows) = read(&path, None).expect("read LOBSTER files");
    assert_eq!(msgs.len(), rows.len(), "one orderbook row per message");
    let r = replay(&msgs, &rows, true).report;
    eprintln!("{file}: {:?}", r);
    assert_eq!(r.messages, msgs.len() as u64);
    assert_eq!(
        (r.passed, r.failed),
        (msgs.len() as u64, 0),
        "first failures: {:?}",
        r.first_failures
    );
    assert_eq!(
        r.short_executions, 0,
        "every visible execution fills completely at its price"
    );
}

#[test]
fn aapl_level_1_every_message_matches() {
    check("AAPL_2012-06-21_34200000_57600000_message_1.csv");
}

#[test]
fn amzn_level_1_every_message_matches() {
    check("AMZN_2012-06-21_34200000_57600000_message_1.csv");
}

#[test]
fn goog_level_1_every_message_matches() {
    check("GOOG_2012-06-21_34200000_57600000_message_1.csv");
}

/// The level-5 and level-10 samples (zips): `cargo test --release -p ringex-bench --test lobster -- --ignored`.
#[test]
#[ignore = "longer: run with --ignored"]
fn deeper_levels_every_message_matches() {
    for f in [
        "LOBSTER_SampleFile_AMZN_2012-06-21_5.zip",
        "LOBSTER_SampleFile_GOOG_2012-06-21_5.zip",
        "LOBSTER_SampleFile_GOOG_2012-06-21_10.zip",
    ] {
        check(f);
    }
}
