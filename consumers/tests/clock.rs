//! Engine time is monotone in sequence order and survives recovery: the journal records and
//! the snapshots carry the clock, a recovered matcher carries on from it, gateways stamp no
//! earlier than it, and a recovered GTD order expires exactly when it should.

use ringex_consumers::journal::{FsyncPolicy, Journal, JournalConfig};
use ringex_consumers::recovery::recover;
use ringex_consumers::snapshot::{list_snapshots, SnapshotConfig, Snapshotter};
use ringex_engine::pipeline::ConsumerOptions;
use ringex_engine::*;
use std::sync::{Arc, Mutex};

struct Collect(Arc<Mutex<Vec<Event>>>);

impl Consumer for Collect {
    fn name(&self) -> &str {
        "collect"
    }
    fn on_event(&mut self, e: &Event, _: Sequence, _: bool) {
        self.0.lock().expect("lock").push(*e);
    }
}

/// Far in the future, so gateway stamps (the wall clock) are below it.
const T0: u64 = u64::MAX / 2;

fn gtd(id: u64, expiry: u64) -> CommandKind {
    let mut o = NewOrder::limit(
        InstrumentId(1),
        AccountId(1),
        OrderId(id),
        Side::Buy,
        Price(100),
        Qty(5),
    );
    o.tif = TimeInForce::Gtd;
    o.expiry = Timestamp(expiry);
    CommandKind::NewOrder(o)
}

fn tick() -> CommandKind {
    CommandKind::Tick
}

/// Runs `cmds` (time, command) on `matcher` with a journal and snapshots in `dir`; returns
/// the events.
fn run(dir: &std::path::Path, matcher: Matcher, cmds: &[(u64, CommandKind)]) -> Vec<Event> {
    let (cmd_seq, event_seq) = {
        let r = recover(dir).expect("recover");
        (r.mark.cmd_seq, r.mark.event_seq)
    };
    let state = recover(dir).expect("recover").state;
    let mut cfg = JournalConfig::new(dir);
    cfg.fsync = FsyncPolicy::None;
    let journal = Journal::new(cfg)
        .resume_after(ringex_consumers::journal::DurableMark { event_seq, cmd_seq });
    let durable = journal.durable();
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut b = Pipeline::builder()
        .input_ring(64)
        .output_ring(64)
        .matcher(matcher)
        .resume_after(cmd_seq, event_seq);
    let j = b.add_consumer(journal, ConsumerOptions::default());
    b.add_consumer(
        Snapshotter::new(
            SnapshotConfig {
                dir: dir.to_path_buf(),
                every_commands: 2,
                prune: false,
            },
            BookReplica::from_state(&state),
            durable,
            cmd_seq,
            event_seq,
        ),
        ConsumerOptions::default().after(j),
    );
    b.add_consumer(
        Collect(Arc::clone(&events)),
        ConsumerOptions::default().after(j),
    );
    let p = b.start().expect("start");
    let mut g = p.gateway();
    for (t, k) in cmds {
        g.submit_at(Command::new(Timestamp(*t), *k))
            .expect("submit");
    }
    drop(g);
    p.shutdown();
    let v = events.lock().expect("lock").clone();
    v
}

#[test]
fn time_never_goes_back_and_survives_recovery() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let first = vec![
        (
            T0,
            CommandKind::AddInstrument(InstrumentDef::unfunded(InstrumentId(1))),
        ),
        (T0 + 1000, gtd(1, T0 + 5000)),
        (T0 + 4000, gtd(2, T0 + 9000)),
        // Stamped earlier than the command before it (two gateways): the engine's time
        // stays at T0 + 4000, so an expiry of T0 + 3500 is already past.
        (T0 + 3000, gtd(3, T0 + 3500)),
        (T0 + 3000, tick()),
        (T0 + 3100, tick()),
    ];
    let ev = run(dir, Matcher::default(), &first);
    let rejected: Vec<_> = ev
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Rejected { order_id, code, .. } => Some((order_id, code)),
            _ => None,
        })
        .collect();
    assert_eq!(
        rejected,
        vec![(Some(OrderId(3)), RejectCode::ExpiryInPast)],
        "engine time did not go back to T0 + 3000"
    );

    // The journal holds each command's engine time.
    let timed = ringex_consumers::recovery::journal_events_timed(dir).expect("timed");
    assert_eq!(
        timed.iter().map(|(_, _, t)| *t).collect::<Vec<_>>(),
        vec![T0, T0 + 1000, T0 + 4000, T0 + 4000],
        "the rejected command ran at the engine's time, not its stamp"
    );

    // Recovered from the newest snapshot plus the journal, and from the journal alone.
    let r = recover(dir).expect("recover");
    assert_eq!(r.state.clock, T0 + 4000, "the clock is carried");
    assert!(!list_snapshots(dir).expect("list").is_empty(), "a snapshot");
    let journal_only = tempfile::tempdir().expect("tmp");
    for e in std::fs::read_dir(dir).expect("dir") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "journal") {
            std::fs::copy(&p, journal_only.path().join(p.file_name().expect("name")))
                .expect("copy");
        }
    }
    let r2 = recover(journal_only.path()).expect("recover");
    assert_eq!(r2.state, r.state, "snapshot + journal = journal alone");
    for (_, snap) in list_snapshots(dir).expect("list") {
        let s = ringex_consumers::snapshot::read_snapshot(&snap).expect("snapshot");
        assert!(s.clock >= T0 + 1000 && s.clock <= T0 + 4000, "{}", s.clock);
    }

    // Carry on: a command stamped before the recovered clock still runs at T0 + 4000 (order
    // 4 with expiry T0 + 4000 is already past), order 1 expires at T0 + 5000 and not earlier.
    let m = Matcher::from_state(&r.state, MatcherCapacity::default());
    assert_eq!(m.clock(), Timestamp(T0 + 4000));
    let ev = run(
        dir,
        m,
        &[
            (T0 + 10, gtd(4, T0 + 4000)),
            (T0 + 4999, tick()),
            (T0 + 5000, tick()),
        ],
    );
    let kinds: Vec<_> = ev
        .iter()
        .map(|e| match e.kind {
            EventKind::Rejected { order_id, code, .. } => format!("rejected {order_id:?} {code:?}"),
            EventKind::Expired { order_id, .. } => {
                format!("expired {order_id:?} @{}", e.cmd_seq().0)
            }
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            "rejected Some(OrderId(4)) ExpiryInPast".to_string(),
            format!("expired OrderId(1) @{}", r.mark.cmd_seq + 3),
        ]
    );
    assert_eq!(recover(dir).expect("recover").state.clock, T0 + 5000);
}

#[test]
fn gateways_stamp_no_earlier_than_the_recovered_clock() {
    let state = ringex_engine::state::EngineState {
        clock: T0,
        ..Default::default()
    };
    let m = Matcher::from_state(&state, MatcherCapacity::default());
    let events = Arc::new(Mutex::new(Vec::new()));
    let p = Pipeline::builder()
        .matcher(m)
        .consumer(Collect(Arc::clone(&events)))
        .start()
        .expect("start");
    let g = p.gateway();
    assert!(g.now().0 >= T0, "stamps carry on from the recovered clock");
    drop(g);
    p.shutdown();
}
