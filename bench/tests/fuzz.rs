//! Fuzzing with proptest: random and mutated inputs for the script parser, the event
//! decoder, snapshot loading and journal recovery. No input may panic or hang; every failure
//! is an error value.
//!
//! CI runs `RINGEX_FUZZ_CASES` inputs per target (default 2,000). The long run, over a
//! million inputs in all, is the ignored test:
//! `cargo test --release -p ringex-bench --test fuzz -- --ignored` (250,000 per target).

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use ringex_bench::script::Script;
use ringex_consumers::journal::{Journal, JournalConfig};
use ringex_consumers::recovery::recover;
use ringex_consumers::snapshot::{read_snapshot, write_snapshot};
use ringex_engine::codec::EVENT_BYTES;
use ringex_engine::state::EngineState;
use ringex_engine::workload::ExchangeCoreWorkload;
use ringex_engine::*;
use std::sync::OnceLock;

fn cases() -> u32 {
    std::env::var("RINGEX_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000)
}

/// Valid material to mutate: the events and the engine state of a funded run, and a
/// journal of it.
struct Corpus {
    events: Vec<[u8; EVENT_BYTES]>,
    state: Vec<u8>,
    journal: Vec<u8>,
}

fn corpus() -> &'static Corpus {
    static C: OnceLock<Corpus> = OnceLock::new();
    C.get_or_init(|| {
        let w = ExchangeCoreWorkload {
            funded: true,
            ..ExchangeCoreWorkload::default()
        }
        .generate(3_000);
        let mut m = Matcher::default();
        let mut replica = BookReplica::new();
        let mut out = Vec::new();
        let mut all = Vec::new();
        for (i, c) in w.setup.iter().chain(&w.commands).enumerate() {
            out.clear();
            m.process(Sequence(i as u64 + 1), c, &mut out);
            for e in &out {
                replica.apply(e);
            }
            all.extend_from_slice(&out);
        }
        let events = all
            .iter()
            .map(|e| {
                let mut b = [0u8; EVENT_BYTES];
                e.encode(&mut b);
                b
            })
            .collect();
        let state = replica
            .state((w.setup.len() + w.commands.len()) as u64, all.len() as u64)
            .to_bytes();
        let dir = tempfile::tempdir().expect("tmp");
        let mut cfg = JournalConfig::new(dir.path());
        cfg.segment_bytes = 1 << 20;
        let mut j = Journal::new(cfg);
        for (i, e) in all.iter().take(600).enumerate() {
            let end = i % 50 == 49;
            j.on_event(e, Sequence(i as u64 + 1), end && e.is_last_of_command());
        }
        j.on_shutdown();
        let seg = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().ends_with(".journal"))
            .expect("a segment");
        let mut journal = std::fs::read(seg.path()).expect("segment");
        // Only the written part (the rest is preallocated zeros).
        let used = journal.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        journal.truncate(used + 64);
        Corpus {
            events,
            state,
            journal,
        }
    })
}

/// Random bytes, or a valid input with a few bytes flipped, cut short, or spliced.
fn mutated(valid: Vec<Vec<u8>>, max: usize) -> impl Strategy<Value = Vec<u8>> {
    let valid = std::sync::Arc::new(valid);
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..max),
        (
            any::<prop::sample::Index>(),
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            any::<prop::sample::Index>(),
            any::<bool>(),
        )
            .prop_map(move |(pick, flips, cut, truncate)| {
                let mut v = pick.get(&valid[..]).clone();
                for (at, byte) in flips {
                    if !v.is_empty() {
                        let i = at.index(v.len());
                        v[i] ^= byte | 1;
                    }
                }
                if truncate && !v.is_empty() {
                    v.truncate(cut.index(v.len()));
                }
                v
            }),
    ]
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

const LINES: &[&str] = &[
    "asset,USD,2",
    "asset,XYZ,0",
    "instrument,ABC,0.01,1",
    "instrument,XYZUSD,0.01,1,base=XYZ,quote=USD,maker_fee=-0.0005,taker_fee=0.0015,max_qty=10,band=0.1",
    "alloc_group,7,1:1;2:3",
    "new,5,ABC,1,10,buy,limit,gtd:9,100.25,3,post_only,stp=allow,alloc=7",
    "new,6,XYZUSD,1,11,buy,market,fok,-,3",
    "cancel,6,ABC,1,10",
    "modify,6,ABC,1,10,100,2",
    "mass_cancel,6,1,ABC",
    "halt,6,ABC",
    "block,6,1",
    "tick,7",
    "deposit,8,1,USD,100.5",
    "withdraw,9,1,XYZ,3",
];

fn fuzz_script(cases: u32) {
    let valid: Vec<Vec<u8>> = LINES.iter().map(|l| l.as_bytes().to_vec()).collect();
    runner(cases)
        .run(&prop::collection::vec(mutated(valid, 120), 1..8), |lines| {
            let mut s = Script::new();
            for l in LINES.iter().take(5) {
                let _ = s.parse_line(l);
            }
            for l in &lines {
                match std::str::from_utf8(l) {
                    Ok(text) => {
                        if let Err(e) = s.parse_line(text) {
                            prop_assert!(e.line > 0 && !e.reason.is_empty());
                        }
                    }
                    Err(_) => prop_assert!(s.bad_bytes_line().line > 0),
                }
            }
            Ok(())
        })
        .expect("the script parser never panics");
}

fn fuzz_events(cases: u32) {
    let valid: Vec<Vec<u8>> = corpus().events.iter().map(|b| b.to_vec()).collect();
    runner(cases)
        .run(&mutated(valid, 80), |bytes| {
            let mut b = [0u8; EVENT_BYTES];
            let n = bytes.len().min(EVENT_BYTES);
            b[..n].copy_from_slice(&bytes[..n]);
            if let Some(e) = Event::decode(&b) {
                // Whatever decodes re-encodes to something that decodes to the same event.
                let mut again = [0u8; EVENT_BYTES];
                e.encode(&mut again);
                prop_assert_eq!(Event::decode(&again), Some(e));
            }
            Ok(())
        })
        .expect("the event decoder never panics");
}

fn fuzz_snapshots(cases: u32) {
    let valid = vec![corpus().state.clone()];
    let dir = tempfile::tempdir().expect("tmp");
    let n = std::cell::Cell::new(0u64);
    runner(cases)
        .run(&mutated(valid, 4096), |bytes| {
            let _ = EngineState::from_bytes(&bytes);
            // Through the file layer too (checksum, header) now and then.
            n.set(n.get() + 1);
            if n.get().is_multiple_of(16) {
                let p = dir.path().join("fuzz.snap");
                std::fs::write(&p, &bytes).expect("write");
                let _ = read_snapshot(&p);
            }
            Ok(())
        })
        .expect("snapshot loading never panics");
    // A valid state still round-trips through the file layer.
    let state = EngineState::from_bytes(&corpus().state).expect("valid");
    let p = write_snapshot(dir.path(), &state).expect("write");
    assert_eq!(read_snapshot(&p).expect("read"), state);
}

fn fuzz_journals(cases: u32) {
    let valid = vec![corpus().journal.clone()];
    let dir = tempfile::tempdir().expect("tmp");
    let seg = dir.path().join("00000000000000000001.journal");
    // The unmutated journal recovers (the corpus is real).
    std::fs::write(&seg, &corpus().journal).expect("write");
    let r = recover(dir.path()).expect("the valid journal recovers");
    assert!(r.mark.event_seq >= 500, "{:?}", r.mark);
    runner(cases)
        .run(&mutated(valid, 4096), |bytes| {
            std::fs::write(&seg, &bytes).expect("write");
            match recover(dir.path()) {
                Ok(r) => prop_assert!(r.state.orders.len() <= 600),
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
            Ok(())
        })
        .expect("journal recovery never panics");
}

/// Decimals at and past every limit: the smallest and largest a `Decimal` holds, the edges
/// of `i64` and `u64`, 2^63 and past it, many digits.
const EXTREME: &[&str] = &[
    "1",
    "0.01",
    "0.0000000000000000000000000001",
    "79228162514264337593543950335",
    "7922816251426433759354395033.5",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "1000000000000000000",
    "10.9999999999999999999999999999",
    "0.000000000000000001",
    "123456789012345678901234567890",
];

/// A script of extreme values through the whole pipeline (every output, market data and
/// balances included): the run ends normally, never halted by a panicking consumer.
fn fuzz_extremes(cases: u32) {
    let pick = || prop::sample::select(EXTREME.to_vec());
    let instrument = (pick(), pick(), 0u8..=18, 0u8..=18, any::<bool>());
    // Prices and quantities on the grid (ticks and lots at their limits) or anything extreme.
    let ticks = prop::sample::select(vec![
        1i64,
        2,
        3,
        -1,
        1 << 32,
        i64::MAX,
        i64::MIN,
        i64::MAX / 2,
    ]);
    let lots = prop::sample::select(vec![1u64, 2, 3, 1 << 32, 1 << 63, u64::MAX, u64::MAX / 3]);
    let order = (
        any::<bool>(),
        0u8..8,
        (ticks, any::<bool>(), pick()),
        (lots, any::<bool>(), pick()),
        1u64..5,
    );
    runner(cases)
        .run(
            &(instrument, prop::collection::vec(order, 1..24), pick()),
            |((tick, lot, bs, qs, funded), orders, deposit)| {
                // (A tick or lot that is no decimal makes the instrument line malformed: then
                // the orders name an unknown symbol, which is fine too.)
                let spec = tick
                    .parse()
                    .ok()
                    .zip(lot.parse().ok())
                    .and_then(|(t, l)| InstrumentSpec::new(InstrumentId(0), "X", t, l).ok());
                let mut text = format!("asset,B,{bs}\nasset,Q,{qs}\n");
                if funded {
                    text += &format!("instrument,X,{tick},{lot},base=B,quote=Q,taker_fee=0.001\n");
                } else {
                    text += &format!("instrument,X,{tick},{lot}\n");
                }
                for a in 1..=4 {
                    text += &format!("deposit,0,{a},B,{deposit}\ndeposit,0,{a},Q,{deposit}\n");
                }
                for (k, (buy, kind, (t, on_tick, px), (l, on_lot, qty), acct)) in
                    orders.iter().enumerate()
                {
                    let side = if *buy { "buy" } else { "sell" };
                    let px = match &spec {
                        Some(s) if *on_tick => s.price_text(Price(*t)),
                        _ => px.to_string(),
                    };
                    let qty = match &spec {
                        Some(s) if *on_lot => s.qty_text(*l as u128),
                        _ => qty.to_string(),
                    };
                    let (ty, px) = if *kind == 0 {
                        ("market", "-".to_string())
                    } else {
                        ("limit", px)
                    };
                    text += &format!("new,{k},X,{acct},{},{side},{ty},gtc,{px},{qty}\n", k + 1);
                }
                let dir = tempfile::tempdir().unwrap();
                let script = dir.path().join("s.csv");
                std::fs::write(&script, &text).unwrap();
                let out = |n: &str| Some(dir.path().join(n));
                let r = ringex_bench::cli::run::run_script(&ringex_bench::cli::run::RunOptions {
                    script: script.clone(),
                    events_out: out("events.csv"),
                    book_out: out("book.csv"),
                    md_out: out("md.csv"),
                    balances_out: out("balances.csv"),
                    alloc_out: out("alloc.csv"),
                    ..Default::default()
                });
                prop_assert!(r.is_ok(), "{text}\n{:?}", r.err());
                Ok(())
            },
        )
        .expect("extreme values never halt the pipeline");
}

/// Runs `text` as a script with every output on; returns the run and the market-data file.
fn run_all(
    text: &str,
) -> (
    Result<ringex_bench::cli::run::RunReport, String>,
    String,
    String,
) {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.csv");
    std::fs::write(&script, text).unwrap();
    let out = |n: &str| Some(dir.path().join(n));
    let r = ringex_bench::cli::run::run_script(&ringex_bench::cli::run::RunOptions {
        script,
        events_out: out("events.csv"),
        book_out: out("book.csv"),
        md_out: out("md.csv"),
        balances_out: out("balances.csv"),
        ..Default::default()
    })
    .map_err(|e| e.to_string());
    let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap_or_default();
    (r, read("md.csv"), read("events.csv"))
}

/// The cases found by reading the code: a level whose total in decimals passes 96 bits (the
/// market-data consumer's `Decimal` multiply panicked and halted the pipeline), and a funded
/// lot of more than 2^63 base units (`qty × units per lot` wrapped in `i128`: refused now).
#[test]
fn extreme_values_regressions() {
    // A lot of 28 digits; eleven orders of one lot at one price: a level total past 2^96.
    let lot = "7922816251426433759354395033";
    let mut text = format!("instrument,X,1,{lot}\n");
    for k in 1..=11 {
        text += &format!("new,{k},X,{k},{k},buy,limit,gtc,5,{lot}\n");
    }
    let (r, md, _) = run_all(&text);
    assert!(r.is_ok(), "{r:?}");
    assert!(
        md.contains(&format!(
            "level,21,X,bid,5,{}",
            11 * 7922816251426433759354395033u128
        )),
        "{md}"
    );
    let (r, _, events) = run_all(
        "asset,B,0\nasset,Q,0\ninstrument,X,1,9223372036854775809,base=B,quote=Q\n\
         deposit,0,1,B,9223372036854775809\nnew,1,X,1,1,sell,limit,gtc,5,9223372036854775809\n",
    );
    assert!(r.as_ref().is_ok_and(|r| r.malformed.len() == 1), "{r:?}");
    assert_eq!(
        events,
        "deposited,1,1,B,9223372036854775809\nrejected,2,-,1,unknown_symbol\n"
    );
}

#[test]
fn extreme_values_pass_through_the_whole_pipeline() {
    fuzz_extremes((cases() / 10).max(50));
}

#[test]
fn the_script_parser_takes_any_line() {
    fuzz_script(cases());
}

#[test]
fn the_event_decoder_takes_any_bytes() {
    fuzz_events(cases());
}

#[test]
fn snapshot_loading_takes_any_bytes() {
    fuzz_snapshots(cases());
}

#[test]
fn journal_recovery_takes_any_segment() {
    fuzz_journals(cases() / 4);
}

/// Over a million inputs: 250,000 per target.
#[test]
#[ignore = "long: run with --release -- --ignored"]
fn a_million_inputs() {
    let t = std::time::Instant::now();
    fuzz_script(250_000);
    fuzz_events(250_000);
    fuzz_snapshots(250_000);
    fuzz_journals(250_000);
    eprintln!(
        "1,000,000 inputs, no panic, in {:.1} s",
        t.elapsed().as_secs_f64()
    );
}
