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
