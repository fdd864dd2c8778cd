//! Issue-4 figures: journal throughput with `--fsync batch`, the whole pipeline with the
//! journal on vs off, and recovery time for 1M resting orders with 100k funded accounts.
//!
//! `durability_bench [--commands N] [--orders N] [--dir DIR]` (DIR: where journals go;
//! default a temporary directory on the working disk).

use ringex_bench::harness::topology::CountingConsumer;
use ringex_consumers::journal::{FsyncPolicy, Journal, JournalConfig};
use ringex_consumers::recovery::recover;
use ringex_consumers::snapshot::write_snapshot;
use ringex_engine::pipeline::ConsumerOptions;
use ringex_engine::workload::ExchangeCoreWorkload;
use ringex_engine::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Funded accounts in the recovery measurement.
const ACCOUNTS: u64 = 100_000;

fn run(
    cmds: &[Command],
    setup: &[Command],
    journal: Option<(&Path, FsyncPolicy)>,
    counters: usize,
) -> (f64, u64, u64) {
    let mut b = Pipeline::builder();
    for k in 0..counters {
        b.add_consumer(
            CountingConsumer::new(format!("count-{k}")),
            ConsumerOptions::default(),
        );
    }
    let mut syncs_id = None;
    if let Some((dir, fsync)) = journal {
        let mut cfg = JournalConfig::new(dir);
        cfg.fsync = fsync;
        syncs_id = Some(b.add_consumer(
            Journal::new(cfg),
            ConsumerOptions::default().max_batch(4096),
        ));
    }
    let p = b.start().expect("start");
    let mut g = p.gateway();
    for c in setup {
        let _ = g.submit_at(*c);
    }
    let t = Instant::now();
    for c in cmds {
        let _ = g.submit_at(*c);
    }
    drop(g);
    let mut r = p.shutdown();
    let secs = t.elapsed().as_secs_f64();
    let syncs = syncs_id
        .and_then(|id| r.take_consumer::<Journal>(id))
        .map_or(0, |j| j.syncs);
    (secs, r.events_published, syncs)
}

fn main() {
    ringex_bench::harness::args::check(
        "usage: durability_bench [--commands N] [--orders N] [--dir DIR]",
        &["--commands", "--orders", "--dir"],
    );
    let n = ringex_bench::harness::args::number("--commands", 1_000_000) as usize;
    let orders = ringex_bench::harness::args::number("--orders", 1_000_000);
    let base: PathBuf = std::env::args()
        .skip_while(|a| a != "--dir")
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("ringex-durability-{}", std::process::id()))
        });
    let _ = std::fs::remove_dir_all(&base);
    let w = ExchangeCoreWorkload::default().generate(n);
    println!(
        "exchange-core mix, {} commands; journals under {}",
        w.commands.len(),
        base.display()
    );

    let (s, ev, syncs) = run(
        &w.commands,
        &w.setup,
        Some((&base.join("alone"), FsyncPolicy::Batch)),
        0,
    );
    println!(
        "journal alone, --fsync batch: {:.2}M events/s ({ev} events incl. setup, {syncs} fdatasyncs, {:.0} events per sync)",
        ev as f64 / s / 1e6,
        ev as f64 / syncs.max(1) as f64
    );
    let (off, _, _) = run(&w.commands, &w.setup, None, 4);
    let (on, _, _) = run(
        &w.commands,
        &w.setup,
        Some((&base.join("on"), FsyncPolicy::Batch)),
        4,
    );
    println!(
        "pipeline + 4 consumers: journal off {:.2}M commands/s, journal on (batch) {:.2}M commands/s, ratio on/off {:.2}",
        n as f64 / off / 1e6,
        n as f64 / on / 1e6,
        off / on
    );

    // Recovery of `orders` resting orders: from a snapshot, and from the journal alone.
    let dir = base.join("recovery");
    let (m, replica) = journal_resting_orders(&dir, orders);
    let t = Instant::now();
    let rec = recover(&dir).expect("recover journal");
    let from_journal = t.elapsed();
    assert_eq!(rec.state.orders.len() as u64, orders);
    // What a snapshot holds the snapshot consumer's thread for (and so, once the ring fills
    // behind it, the matcher): before, the copy of the state plus encoding, writing and the
    // fsyncs; now only the copy (the writer thread does the rest).
    let t = Instant::now();
    let state = replica.state(rec.mark.cmd_seq, rec.mark.event_seq);
    let copy = t.elapsed();
    let snap_dir = base.join("snapshot");
    let t = Instant::now();
    write_snapshot(&snap_dir, &state).expect("snapshot");
    let write = t.elapsed();
    println!(
        "snapshot of {orders} orders: the consumer's thread is held {:.3} s (state copy; was {:.3} s with the write and fsyncs on it)",
        copy.as_secs_f64(),
        (copy + write).as_secs_f64()
    );
    let t = Instant::now();
    let rec = recover(&snap_dir).expect("recover snapshot");
    let from_snapshot = t.elapsed();
    let t2 = Instant::now();
    let matcher = Matcher::from_state(&rec.state, MatcherCapacity::default());
    let to_matcher = t2.elapsed();
    assert_eq!(matcher.resting_count() as u64, orders);
    assert_eq!(matcher.ledger().balances(), m.ledger().balances());
    assert!(matcher.ledger().balances().len() as u64 >= 2 * ACCOUNTS);
    println!(
        "recovery of {orders} resting orders, {ACCOUNTS} funded accounts: from the snapshot {:.3} s (+ {:.3} s to rebuild the matcher), from the journal alone ({} events) {:.3} s",
        from_snapshot.as_secs_f64(),
        to_matcher.as_secs_f64(),
        rec.state.event_seq.max(state.event_seq),
        from_journal.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&base);
}

/// Journals (without syncs) a funded instrument, `ACCOUNTS` funded accounts and `orders`
/// resting orders into `dir`; returns the matcher and a replica that saw the same events.
fn journal_resting_orders(dir: &Path, orders: u64) -> (Matcher, BookReplica) {
    let mut m = Matcher::with_capacity(MatcherCapacity {
        orders: orders as usize + 16,
        ids: orders as usize + 16,
        gtd: 16,
    });
    let mut cfg = JournalConfig::new(dir);
    cfg.fsync = FsyncPolicy::None;
    let mut j = Journal::new(cfg);
    let mut replica = BookReplica::new();
    let mut out = Vec::new();
    let mut seq = 0u64;
    let mut ev = 0u64;
    let mut feed =
        |m: &mut Matcher, c: Command, j: &mut Journal, replica: &mut BookReplica, last: bool| {
            seq += 1;
            out.clear();
            m.process(Sequence(seq), &c, &mut out);
            let n = out.len();
            for (i, e) in out.iter().enumerate() {
                ev += 1;
                replica.apply(e);
                j.on_event(
                    e,
                    Sequence(ev),
                    last && i + 1 == n || (ev.is_multiple_of(4096) && e.is_last_of_command()),
                );
            }
        };
    // A funded instrument and 100k funded accounts: recovery rebuilds balances and holds too.
    let (base_asset, quote_asset) = (AssetId(0), AssetId(1));
    let mut setup = vec![
        CommandKind::AddAsset {
            asset: base_asset,
            scale: 0,
        },
        CommandKind::AddAsset {
            asset: quote_asset,
            scale: 2,
        },
        CommandKind::AddInstrument(
            InstrumentDef::funded(InstrumentId(0), base_asset, quote_asset, 1, 1).with_fees(
                Rate {
                    mantissa: -1,
                    scale: 4,
                },
                Rate {
                    mantissa: 5,
                    scale: 4,
                },
            ),
        ),
    ];
    for a in 1..=ACCOUNTS {
        for asset in [base_asset, quote_asset] {
            setup.push(CommandKind::Deposit {
                account: AccountId(a),
                asset,
                amount: Amount::new(1 << 40),
            });
        }
    }
    for k in setup {
        feed(
            &mut m,
            Command::new(Timestamp(0), k),
            &mut j,
            &mut replica,
            false,
        );
    }
    for i in 0..orders {
        let side = if i % 2 == 0 { Side::Buy } else { Side::Sell };
        let px = if side == Side::Buy {
            100_000 - (i % 1000) as i64
        } else {
            100_001 + (i % 1000) as i64
        };
        let o = NewOrder::limit(
            InstrumentId(0),
            AccountId(1 + i % ACCOUNTS),
            OrderId(i + 1),
            side,
            Price(px),
            Qty(1 + i % 100),
        );
        feed(
            &mut m,
            Command::new(Timestamp(i), CommandKind::NewOrder(o)),
            &mut j,
            &mut replica,
            i + 1 == orders,
        );
    }
    j.on_shutdown();
    (m, replica)
}
