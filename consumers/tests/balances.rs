//! The balances view: readers on other threads see exactly the matcher's balances once the
//! pipeline has published them, and never a balance that breaks total ≥ held ≥ 0.

use ringex_consumers::balances::BalancesPublisher;
use ringex_engine::pipeline::ConsumerOptions;
use ringex_engine::workload::ExchangeCoreWorkload;
use ringex_engine::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[test]
fn the_view_shows_holds_and_settlements_as_the_matcher_does() {
    let (publisher, view) = BalancesPublisher::new(BookReplica::new());
    let mut b = Pipeline::builder();
    b.add_consumer(publisher, ConsumerOptions::default());
    let p = b.start().expect("start");
    let mut g = p.gateway();
    let (base, quote) = (AssetId(0), AssetId(1));
    let rate = |m, scale| Rate { mantissa: m, scale };
    for k in [
        CommandKind::AddAsset {
            asset: base,
            scale: 0,
        },
        CommandKind::AddAsset {
            asset: quote,
            scale: 2,
        },
        CommandKind::AddInstrument(
            InstrumentDef::funded(InstrumentId(0), base, quote, 1, 100)
                .with_fees(rate(0, 0), rate(1, 2)),
        ),
        CommandKind::Deposit {
            account: AccountId(1),
            asset: quote,
            amount: Amount::new(100_000),
        },
        CommandKind::Deposit {
            account: AccountId(2),
            asset: base,
            amount: Amount::new(10),
        },
        // Account 1 bids 5 @ 100: holds 5 × 100 × 100 cents + 1% = 505.00.
        CommandKind::NewOrder(NewOrder::limit(
            InstrumentId(0),
            AccountId(1),
            OrderId(1),
            Side::Buy,
            Price(100),
            Qty(5),
        )),
        // Account 2 sells 2 into it: 200.00 + 1% maker fee 0 (maker rate 0 for the bid).
        CommandKind::NewOrder(NewOrder::limit(
            InstrumentId(0),
            AccountId(2),
            OrderId(2),
            Side::Sell,
            Price(100),
            Qty(2),
        )),
    ] {
        g.submit(k).expect("submit");
    }
    drop(g);
    let done = p.shutdown();
    let m = done.matcher.as_ref().expect("matcher");
    // The bid was the maker (fee 0): account 1 paid 200.00 and holds 3 × 100.00 + 1%.
    let b1 = view.balance(AccountId(1), quote);
    assert_eq!(
        b1,
        Balance {
            total: 80_000,
            held: 30_300
        }
    );
    assert_eq!(view.balance(AccountId(1), base).total, 2);
    // The seller was the taker: 1% of 200.00 = 2.00.
    assert_eq!(view.balance(AccountId(2), quote).total, 19_800);
    assert_eq!(
        view.balance_decimal(AccountId(2), quote),
        Some(("198".parse().unwrap(), "0".parse().unwrap()))
    );
    for a in [AccountId(1), AccountId(2)] {
        assert_eq!(view.account(a), m.ledger().account(a));
    }
}

#[test]
fn a_publisher_restored_from_a_state_shows_its_balances_before_any_event() {
    let mut m = Matcher::default();
    let mut out = Vec::new();
    for (i, k) in [
        CommandKind::AddAsset {
            asset: AssetId(0),
            scale: 2,
        },
        CommandKind::Deposit {
            account: AccountId(7),
            asset: AssetId(0),
            amount: Amount::new(12_345),
        },
    ]
    .into_iter()
    .enumerate()
    {
        m.process(
            Sequence(i as u64 + 1),
            &Command::new(Timestamp(0), k),
            &mut out,
        );
    }
    let mut r = BookReplica::new();
    for e in &out {
        r.apply(e);
    }
    let state = r.state(2, out.len() as u64);
    let (_publisher, view) = BalancesPublisher::new(BookReplica::from_state(&state));
    assert_eq!(
        view.balance_decimal(AccountId(7), AssetId(0)),
        Some(("123.45".parse().unwrap(), "0".parse().unwrap()))
    );
}

#[test]
fn readers_never_block_the_pipeline_and_end_equal_to_the_matcher() {
    let w = ExchangeCoreWorkload {
        funded: true,
        ..ExchangeCoreWorkload::default()
    }
    .generate(100_000);
    let (publisher, view) = BalancesPublisher::new(BookReplica::new());
    let mut b = Pipeline::builder();
    b.add_consumer(publisher, ConsumerOptions::default());
    let p = b.start().expect("start");
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (view, stop) = (view.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for a in 1..=1000 {
                    for (_, bal) in view.account(AccountId(a)) {
                        assert!(bal.total >= bal.held && bal.held >= 0, "{bal:?}");
                    }
                    reads += 1;
                }
            }
            reads
        })
    };
    let mut g = p.gateway();
    for c in w.setup.iter().chain(&w.commands) {
        g.submit_at(*c).expect("submit");
    }
    drop(g);
    let done = p.shutdown();
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("reader");
    assert!(reads > 0);
    let m = done.matcher.as_ref().expect("matcher");
    let mut checked = 0;
    for a in 1..=1000 {
        let mine = m.ledger().account(AccountId(a));
        assert_eq!(view.account(AccountId(a)), mine, "account {a}");
        checked += mine.len();
    }
    assert!(checked >= 1000, "accounts hold balances: {checked}");
    assert_eq!(view.as_of().0, done.events_published);
}
