//! A market-data subscriber printing a live top of book while the example submits orders.
//!
//! `cargo run --release --example market_data`

use ringex_consumers::market_data::{L2Books, MarketData, MdUpdate};
use ringex_engine::pipeline::ConsumerOptions;
use ringex_engine::workload::SplitMix64;
use ringex_engine::*;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const INST: InstrumentId = InstrumentId(0);
    let (md, hub) = MarketData::new(5);
    let mut builder = Pipeline::builder();
    builder.add_consumer(md, ConsumerOptions::default());
    let pipeline = builder.start()?;
    let sub = hub.subscribe(4096);

    // The subscriber: keeps L2 books from snapshots + incrementals, prints the top of book.
    let printer = std::thread::spawn(move || {
        let mut books = L2Books::default();
        let mut trades = 0u64;
        while let Ok(u) = sub.rx.recv_timeout(Duration::from_millis(500)) {
            if let MdUpdate::Trade {
                price,
                qty,
                aggressor,
                ..
            } = &u
            {
                trades += 1;
                if trades.is_multiple_of(200) {
                    println!("trade #{trades}: {qty} lots at {price} ({aggressor:?} aggressor)");
                }
            }
            let bbo = matches!(u, MdUpdate::Bbo { .. });
            books.apply(&u);
            if bbo {
                if let Some((seq, bids, asks)) = books.book(INST) {
                    if seq % 250 < 2 {
                        println!(
                            "seq {seq:>6}  bid {:>14}  ask {:>14}",
                            bids.first()
                                .map_or("-".into(), |(p, q)| format!("{q} @ {p}")),
                            asks.first()
                                .map_or("-".into(), |(p, q)| format!("{q} @ {p}")),
                        );
                    }
                }
            }
        }
        (books, trades)
    });

    let mut g = pipeline.gateway();
    g.submit(CommandKind::AddInstrument(INST.into()))?;
    let mut rng = SplitMix64::new(3);
    for id in 1..=20_000u64 {
        let side = if rng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let px = 1000 + rng.below(20) as i64 - if side == Side::Buy { 12 } else { 8 };
        let o = NewOrder::limit(
            INST,
            AccountId(1 + rng.below(50)),
            OrderId(id),
            side,
            Price(px),
            Qty(1 + rng.below(10)),
        );
        g.submit(CommandKind::NewOrder(o))?;
        if id.is_multiple_of(1000) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    drop(g);
    let report = pipeline.shutdown();
    let (books, trades) = printer.join().map_err(|_| "printer panicked")?;
    let (_, bids, asks) = books.book(INST).unwrap_or_default();
    println!("final top 5 (bids | asks): {bids:?} | {asks:?}");
    println!(
        "{trades} trades, {} events, gaps: {}",
        report.events_published, books.gap
    );
    Ok(())
}
