//! Money in the sequenced path: two assets, a funded instrument with fees, deposits, an
//! order refused for funds, a trade that settles both sides, and an operator thread reading
//! balances through a `BalancesView` while the pipeline runs.
//!
//! `cargo run --release --example funded_exchange`

use ringex_consumers::balances::BalancesPublisher;
use ringex_engine::pipeline::ConsumerOptions;
use ringex_engine::*;
use std::sync::mpsc;

/// Prints rejects and fees as they happen.
struct Tape(mpsc::Sender<String>);

impl Consumer for Tape {
    fn name(&self) -> &str {
        "tape"
    }
    fn on_event(&mut self, e: &Event, _: Sequence, _: bool) {
        let line = match e.kind {
            EventKind::Rejected { order_id, code, .. } => format!("rejected {order_id:?}: {code}"),
            EventKind::Fill {
                taker,
                maker,
                price,
                qty,
                ..
            } => format!("fill: taker {taker} maker {maker}, {qty} lots at {price} ticks"),
            EventKind::FillFees {
                buyer_fee,
                seller_fee,
                ..
            } => format!("  fees in cents: buyer {buyer_fee}, seller {seller_fee}"),
            _ => return,
        };
        let _ = self.0.send(line);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const BTCUSD: InstrumentId = InstrumentId(0);
    let (btc, usd) = (AssetId(0), AssetId(1));
    let (tx, rx) = mpsc::channel();
    let (balances, view) = BalancesPublisher::new(BookReplica::new());
    let mut b = Pipeline::builder();
    b.add_consumer(balances, ConsumerOptions::default());
    b.add_consumer(Tape(tx), ConsumerOptions::default());
    let pipeline = b.start()?;
    let mut g = pipeline.gateway();

    // BTC counted in satoshis (scale 8), USD in cents (scale 2). One lot is 0.01 BTC
    // (1,000,000 satoshis), one tick is 1 USD: one tick × one lot = 0.01 USD = 1 cent.
    // Makers get 0.01% back, takers pay 0.1%.
    g.submit(CommandKind::AddAsset {
        asset: btc,
        scale: 8,
    })?;
    g.submit(CommandKind::AddAsset {
        asset: usd,
        scale: 2,
    })?;
    let fees = (
        Rate {
            mantissa: -1,
            scale: 4,
        },
        Rate {
            mantissa: 1,
            scale: 3,
        },
    );
    g.submit(CommandKind::AddInstrument(
        InstrumentDef::funded(BTCUSD, btc, usd, 1_000_000, 1).with_fees(fees.0, fees.1),
    ))?;
    let deposit = |account, asset, units| CommandKind::Deposit {
        account: AccountId(account),
        asset,
        amount: Amount::new(units),
    };
    g.submit(deposit(1, btc, 100_000_000))?; // 1 BTC
    g.submit(deposit(2, usd, 5_000_000))?; // 50,000.00 USD

    // Account 1 offers 0.5 BTC at 60,000: it holds 0.5 BTC.
    g.submit(CommandKind::NewOrder(NewOrder::limit(
        BTCUSD,
        AccountId(1),
        OrderId(1),
        Side::Sell,
        Price(60_000),
        Qty(50),
    )))?;
    // Account 2 bids for 1 BTC at 60,000: 60,000 USD + fee is more than it has.
    g.submit(CommandKind::NewOrder(NewOrder::limit(
        BTCUSD,
        AccountId(2),
        OrderId(2),
        Side::Buy,
        Price(60_000),
        Qty(100),
    )))?;
    // 0.5 BTC fits: it trades at once against account 1's offer.
    g.submit(CommandKind::NewOrder(NewOrder::limit(
        BTCUSD,
        AccountId(2),
        OrderId(3),
        Side::Buy,
        Price(60_000),
        Qty(50),
    )))?;
    drop(g);

    // An operator thread may read the view at any time; after shutdown it is complete.
    pipeline.shutdown();
    for line in rx.try_iter() {
        println!("{line}");
    }
    for a in [AccountId(1), AccountId(2)] {
        for asset in [btc, usd] {
            if let Some((total, held)) = view.balance_decimal(a, asset) {
                let name = if asset == btc { "BTC" } else { "USD" };
                println!("account {a}: {total} {name} ({held} held)");
            }
        }
    }
    // 30,000 USD + 0.1% taker fee.
    assert_eq!(view.balance(AccountId(2), usd).total, 5_000_000 - 3_003_000);
    Ok(())
}
