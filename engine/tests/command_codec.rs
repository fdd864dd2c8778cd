//! The command wire format (the command streams of `ringex node`): every kind round-trips
//! exactly, and so do whole generated workloads, funded ones included.

use ringex_engine::codec::COMMAND_BYTES;
use ringex_engine::workload::{ExchangeCoreWorkload, MultiSymbolWorkload};
use ringex_engine::*;

fn round_trip(c: &Command) {
    let mut b = [0u8; COMMAND_BYTES];
    c.encode(&mut b);
    assert_eq!(Command::decode(&b).as_ref(), Some(c), "{c:?}");
}

#[test]
fn every_command_kind_round_trips() {
    let t = Timestamp(1_700_000_000_123_456_789);
    let i = InstrumentId(7);
    let a = AccountId(u64::MAX - 3);
    let mut o = NewOrder::limit(
        i,
        a,
        OrderId(u64::MAX),
        Side::Sell,
        Price(-12345),
        Qty(u64::MAX),
    );
    o.tif = TimeInForce::Gtd;
    o.expiry = Timestamp(99);
    o.post_only = true;
    o.stp = SelfTradePrevention::CancelBoth;
    o.alloc_group = AllocGroupId(3);
    let kinds = [
        CommandKind::NewOrder(o),
        CommandKind::NewOrder(NewOrder {
            order_type: OrderType::Market,
            ..NewOrder::limit(i, a, OrderId(1), Side::Buy, Price(0), Qty(1))
        }),
        CommandKind::Cancel {
            instrument: i,
            account: a,
            order_id: OrderId(5),
        },
        CommandKind::Modify {
            instrument: i,
            account: a,
            order_id: OrderId(5),
            price: Price(i64::MIN),
            qty: Qty(2),
        },
        CommandKind::MassCancel {
            account: a,
            instrument: None,
        },
        CommandKind::MassCancel {
            account: a,
            instrument: Some(InstrumentId(0)),
        },
        CommandKind::Halt { instrument: i },
        CommandKind::Resume { instrument: i },
        CommandKind::Block { account: a },
        CommandKind::Unblock { account: a },
        CommandKind::Tick,
        CommandKind::SnapshotRequest { instrument: i },
        CommandKind::AddInstrument(InstrumentDef::unfunded(i)),
        CommandKind::AddAsset {
            asset: AssetId(3),
            scale: 18,
        },
        CommandKind::Deposit {
            account: a,
            asset: AssetId(1),
            amount: Amount::new(i128::MAX),
        },
        CommandKind::Withdraw {
            account: a,
            asset: AssetId(1),
            amount: Amount::new(-5),
        },
        CommandKind::Invalid {
            instrument: Some(i),
            order_id: None,
            account: a,
            code: RejectCode::InvalidInstrument,
        },
        CommandKind::Invalid {
            instrument: None,
            order_id: Some(OrderId(9)),
            account: AccountId(0),
            code: RejectCode::OffTick,
        },
    ];
    for k in kinds {
        round_trip(&Command::new(t, k));
    }
    assert_eq!(Command::decode(&[0xff; COMMAND_BYTES]), None);
}

#[test]
fn generated_workloads_round_trip() {
    for funded in [false, true] {
        let w = ExchangeCoreWorkload {
            funded,
            ..Default::default()
        }
        .generate(20_000);
        w.setup.iter().chain(&w.commands).for_each(round_trip);
    }
    let w = MultiSymbolWorkload {
        instruments: 50,
        ..Default::default()
    }
    .generate(20_000);
    w.setup.iter().chain(&w.commands).for_each(round_trip);
}
