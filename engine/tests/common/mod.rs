//! Random command streams for the property tests: few instruments, accounts, ids and
//! prices, so that every rule and every reject code is hit often.
#![allow(dead_code)]

use proptest::prelude::*;
use ringex_engine::*;

/// Instruments 0 and 1 exist; 2 is never added.
pub const INSTRUMENTS: [InstrumentId; 3] = [InstrumentId(0), InstrumentId(1), InstrumentId(2)];

/// Raw random words, decoded into commands by [`decode`]; shrinking works on the words.
pub fn raw_stream(max_len: usize) -> impl Strategy<Value = Vec<[u16; 8]>> {
    prop::collection::vec(any::<[u16; 8]>(), 1..max_len)
}

fn side(w: u16) -> Side {
    if w & 1 == 0 {
        Side::Buy
    } else {
        Side::Sell
    }
}

fn stp(w: u16) -> SelfTradePrevention {
    match w % 4 {
        0 => SelfTradePrevention::CancelTaker,
        1 => SelfTradePrevention::CancelMaker,
        2 => SelfTradePrevention::CancelBoth,
        _ => SelfTradePrevention::Allow,
    }
}

/// Turns random words into a command stream with non-decreasing time, starting with the two
/// instruments being added.
pub fn decode(raw: &[[u16; 8]]) -> Vec<Command> {
    let mut ts = 0u64;
    let mut next_id = 0u64;
    let mut placed: std::collections::HashMap<u64, (AccountId, InstrumentId, Price, Qty)> =
        Default::default();
    let mut out = vec![
        Command::new(
            Timestamp(0),
            CommandKind::AddInstrument(INSTRUMENTS[0].into()),
        ),
        Command::new(
            Timestamp(0),
            CommandKind::AddInstrument(INSTRUMENTS[1].into()),
        ),
    ];
    for w in raw {
        ts += (w[7] % 4) as u64;
        // Mostly instrument 0, sometimes 1, rarely the unknown 2.
        let mut instrument = INSTRUMENTS[match w[1] % 16 {
            0 => 2,
            1..=4 => 1,
            _ => 0,
        }];
        let mut price = Price(95 + (w[4] % 11) as i64);
        let mut qty = Qty((w[5] % 9) as u64 + if w[5] % 23 == 0 { 0 } else { 1 });
        let mut account = AccountId(1 + (w[2] % 4) as u64);
        // New orders mostly take a fresh id (1 in 16 reuses one); cancels and modifies
        // mostly name a recent order, usually as its owner.
        let is_new = w[0] % 100 < 45;
        let order_id = if is_new && w[3] % 16 != 0 {
            next_id += 1;
            OrderId(next_id)
        } else {
            OrderId(next_id.saturating_sub((w[3] >> 4) as u64 % 8))
        };
        if is_new {
            placed
                .entry(order_id.0)
                .or_insert((account, instrument, price, qty));
        } else if let Some(&(a, i, p, q)) = placed.get(&order_id.0) {
            if w[2] % 4 != 0 {
                account = a;
            }
            if w[1] % 8 != 0 {
                instrument = i;
            }
            // A third of modifies keep the price and shrink the quantity.
            if w[4] % 3 == 0 {
                price = p;
                qty = Qty(q.0.saturating_sub(w[5] as u64 % 3));
            }
        }
        let kind = match w[0] % 100 {
            0..=44 => {
                let mut o = NewOrder::limit(instrument, account, order_id, side(w[6]), price, qty);
                o.order_type = if w[6] % 13 == 1 {
                    OrderType::Market
                } else {
                    OrderType::Limit
                };
                o.tif = match (w[6] >> 1) % 10 {
                    0 => TimeInForce::Ioc,
                    1 => TimeInForce::Fok,
                    2 | 3 => TimeInForce::Gtd,
                    _ => TimeInForce::Gtc,
                };
                o.expiry = Timestamp(ts + (w[7] >> 2) as u64 % 12);
                o.post_only = (w[6] >> 5) % 8 == 0;
                o.stp = stp(w[6] >> 8);
                o.alloc_group = AllocGroupId((w[6] >> 12) as u32 % 3);
                CommandKind::NewOrder(o)
            }
            45..=59 => CommandKind::Cancel {
                instrument,
                account,
                order_id,
            },
            60..=79 => CommandKind::Modify {
                instrument,
                account,
                order_id,
                price,
                qty,
            },
            80..=83 => CommandKind::MassCancel {
                account,
                instrument: (w[6] % 2 == 0).then_some(instrument),
            },
            84 => CommandKind::Halt { instrument },
            85 => CommandKind::Tick,
            86..=89 => CommandKind::Resume { instrument },
            90 => CommandKind::Block { account },
            91..=93 => CommandKind::Unblock { account },
            94..=95 => CommandKind::Tick,
            96 => CommandKind::SnapshotRequest { instrument },
            97 if w[6] % 4 == 0 => CommandKind::AddInstrument(InstrumentId(u32::MAX - u32::from(w[5] % 2)).into()),
            97 => CommandKind::AddInstrument(instrument.into()),
            _ => CommandKind::Invalid {
                instrument: (w[6] % 2 == 0).then_some(instrument),
                order_id: Some(order_id),
                account,
                code: RejectCode::ALL[w[6] as usize % 6],
            },
        };
        out.push(Command::new(Timestamp(ts), kind));
    }
    out
}
