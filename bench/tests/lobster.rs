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

/// Market data on real data: the GOOG level-10 sample replayed as commands gives a trade tape
/// whose volume equals the file's visible executions (type 4).
#[test]
fn goog_level_10_trade_tape_volume_equals_visible_executions() {
    use ringex_consumers::market_data::{MarketData, MdUpdate};
    use ringex_engine::{Consumer, Matcher, Sequence};
    let Some(dir) = lobster_dir() else {
        eprintln!("SKIPPED: no LOBSTER folder (set RINGEX_LOBSTER_DIR or put the samples in ../shared/lobster)");
        return;
    };
    let path = dir.join("LOBSTER_SampleFile_GOOG_2012-06-21_10.zip");
    if !path.exists() {
        eprintln!("SKIPPED: {} not found", path.display());
        return;
    }
    let (msgs, rows) = read(&path, None).expect("read");
    let executed: u64 = msgs
        .iter()
        .skip(1)
        .filter(|m| m.kind == 4)
        .map(|m| m.size)
        .sum();
    let commands = replay(&msgs, &rows, true).commands;
    let volume = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let v = volume.clone();
    let (mut md, _hub) = MarketData::with_tap(10, move |u: &MdUpdate| {
        if let MdUpdate::Trade { qty, .. } = u {
            v.fetch_add(qty.0, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let mut m = Matcher::default();
    let mut out = Vec::new();
    let mut ev = 0;
    for (i, c) in commands.iter().enumerate() {
        out.clear();
        m.process(Sequence(i as u64 + 1), c, &mut out);
        for e in &out {
            ev += 1;
            md.on_event(e, Sequence(ev), e.is_last_of_command());
        }
    }
    md.on_shutdown();
    assert!(executed > 0);
    assert_eq!(volume.load(std::sync::atomic::Ordering::Relaxed), executed);
}
