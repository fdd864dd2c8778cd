//! The smallest useful exchange: start a pipeline, submit orders from two gateway threads,
//! read the fills in a consumer, shut down.
//!
//! `cargo run --release --example minimal_exchange`

use ringex_engine::pipeline::ConsumerOptions;
use ringex_engine::*;
use std::sync::mpsc;

/// Sends every fill to the main thread.
struct Fills(mpsc::Sender<(OrderId, OrderId, Price, Qty)>);

impl Consumer for Fills {
    fn name(&self) -> &str {
        "fills"
    }
    fn on_event(&mut self, e: &Event, _: Sequence, _: bool) {
        if let EventKind::Fill {
            taker,
            maker,
            price,
            qty,
            ..
        } = e.kind
        {
            let _ = self.0.send((taker, maker, price, qty));
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const INSTRUMENT: InstrumentId = InstrumentId(0);
    let (tx, rx) = mpsc::channel();
    let mut builder = Pipeline::builder();
    builder.add_consumer(Fills(tx), ConsumerOptions::default());
    let pipeline = builder.start()?;

    let mut admin = pipeline.gateway();
    admin.submit(CommandKind::AddInstrument(INSTRUMENT.into()))?;

    // Two gateway threads: one sells 10 lots at 100..=109, the other buys them back.
    let sellers = {
        let mut g = pipeline.gateway();
        std::thread::spawn(move || -> Result<(), SubmitError> {
            for i in 0..10 {
                let o = NewOrder::limit(
                    INSTRUMENT,
                    AccountId(1),
                    OrderId(i + 1),
                    Side::Sell,
                    Price(100 + i as i64),
                    Qty(1),
                );
                g.submit(CommandKind::NewOrder(o))?;
            }
            Ok(())
        })
    };
    sellers.join().map_err(|_| "seller thread panicked")??;
    let buyers = {
        let mut g = pipeline.gateway();
        std::thread::spawn(move || -> Result<(), SubmitError> {
            let mut o = NewOrder::limit(
                INSTRUMENT,
                AccountId(2),
                OrderId(100),
                Side::Buy,
                Price(109),
                Qty(10),
            );
            o.tif = TimeInForce::Ioc;
            g.submit(CommandKind::NewOrder(o))?;
            Ok(())
        })
    };
    buyers.join().map_err(|_| "buyer thread panicked")??;
    drop(admin);

    let report = pipeline.shutdown();
    let fills: Vec<_> = rx.try_iter().collect();
    for (taker, maker, price, qty) in &fills {
        println!("fill: taker {taker} maker {maker} {qty} lots at {price} ticks");
    }
    println!(
        "{} commands, {} events, {} fills; consumers: {:?}",
        report.commands_processed,
        report.events_published,
        fills.len(),
        report.consumers
    );
    assert_eq!(fills.len(), 10);
    Ok(())
}
