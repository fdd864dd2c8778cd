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

/// Turns random words into a command stream with time mostly non-decreasing (one command in
/// sixteen stamped up to 3 before the one ahead of it), starting with the two
/// instruments being added (unfunded).
pub fn decode(raw: &[[u16; 8]]) -> Vec<Command> {
    decode_with(raw, false, None)
}

fn rate(s: &str) -> Rate {
    Rate::from_decimal(s.parse().expect("decimal")).expect("rate")
}

/// The funded world of [`decode_funded`]: assets 0 (scale 0), 1 (scale 2) and 2 (scale 4);
/// instrument 0 trades asset 0 for asset 1 (3 base units a lot, 7 quote units a tick-lot,
/// maker -0.03%, taker 0.25%, at most 7 lots, band 5%), instrument 1 trades asset 2 for asset
/// 1 (1000 base units a lot, 1 quote unit a tick-lot, maker 0.1%, taker 0.05%).
pub fn funded_setup() -> Vec<CommandKind> {
    let mut v = vec![
        CommandKind::AddAsset {
            asset: AssetId(0),
            scale: 0,
        },
        CommandKind::AddAsset {
            asset: AssetId(1),
            scale: 2,
        },
        CommandKind::AddAsset {
            asset: AssetId(2),
            scale: 4,
        },
        CommandKind::AddInstrument(
            InstrumentDef::funded(INSTRUMENTS[0], AssetId(0), AssetId(1), 3, 7)
                .with_fees(rate("-0.0003"), rate("0.0025"))
                .with_max_qty(Qty(7))
                .with_band(rate("0.05")),
        ),
        CommandKind::AddInstrument(
            InstrumentDef::funded(INSTRUMENTS[1], AssetId(2), AssetId(1), 1000, 1)
                .with_fees(rate("0.001"), rate("0.0005")),
        ),
    ];
    for a in 1..=4u64 {
        for (asset, amount) in [(0, 200), (1, 5_000), (2, 50_000)] {
            v.push(CommandKind::Deposit {
                account: AccountId(a),
                asset: AssetId(asset),
                amount: Amount::new(amount * a as i128),
            });
        }
    }
    v
}

/// Like [`decode`], on funded instruments ([`funded_setup`]), with deposits and withdrawals
/// (some of them bad) mixed in.
pub fn decode_funded(raw: &[[u16; 8]]) -> Vec<Command> {
    decode_with(raw, true, None)
}

/// Like [`decode`] (funded or not), with instrument 0 under a pro-rata `policy` (`min_alloc`
/// lots) and instrument 1 FIFO; new orders are now and then icebergs (on either: on the
/// pro-rata one they are refused) or stops (stop-limit and stop-market, any time in force,
/// some with bad terms), so that levels split with residues, TOP orders change, icebergs
/// are refilled and hit again and stops cascade.
#[allow(dead_code)]
pub fn decode_policy(
    raw: &[[u16; 8]],
    funded: bool,
    policy: MatchPolicy,
    min_alloc: u64,
) -> Vec<Command> {
    decode_with(raw, funded, Some((policy, min_alloc)))
}

fn decode_with(raw: &[[u16; 8]], funded: bool, policy: Option<(MatchPolicy, u64)>) -> Vec<Command> {
    let mut ts = 0u64;
    let mut next_id = 0u64;
    let mut placed: std::collections::HashMap<u64, (AccountId, InstrumentId, Price, Qty)> =
        Default::default();
    let mut out: Vec<Command> = if funded {
        funded_setup()
            .into_iter()
            .map(|k| Command::new(Timestamp(0), k))
            .collect()
    } else {
        vec![
            Command::new(
                Timestamp(0),
                CommandKind::AddInstrument(INSTRUMENTS[0].into()),
            ),
            Command::new(
                Timestamp(0),
                CommandKind::AddInstrument(INSTRUMENTS[1].into()),
            ),
        ]
    };
    if let Some((policy, min_alloc)) = policy {
        out.push(Command::new(
            Timestamp(0),
            CommandKind::SetMatchPolicy {
                instrument: INSTRUMENTS[0],
                policy,
                min_alloc: Qty(min_alloc),
            },
        ));
    }
    for w in raw {
        ts += (w[7] % 4) as u64;
        // Mostly instrument 0, sometimes 1, rarely the unknown 2.
        let mut instrument = INSTRUMENTS[match w[1] % 16 {
            0 => 2,
            1..=4 => 1,
            _ => 0,
        }];
        let mut price = Price(95 + (w[4] % 11) as i64);
        if w[4] % 101 == 0 {
            // Now and then a price at or below zero (funded instruments refuse it).
            price = Price(-((w[5] % 2) as i64));
        }
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
            94..=95 if funded => {
                let asset = AssetId(w[5] % 4);
                let amount = Amount::new((w[4] % 5000) as i128 - 100);
                if w[6] % 2 == 0 {
                    CommandKind::Deposit {
                        account,
                        asset,
                        amount,
                    }
                } else {
                    CommandKind::Withdraw {
                        account,
                        asset,
                        amount,
                    }
                }
            }
            94..=95 => CommandKind::Tick,
            96 => CommandKind::SnapshotRequest { instrument },
            97 if w[6] % 4 == 0 => {
                CommandKind::AddInstrument(InstrumentId(u32::MAX - u32::from(w[5] % 2)).into())
            }
            97 => CommandKind::AddInstrument(instrument.into()),
            _ => CommandKind::Invalid {
                instrument: (w[6] % 2 == 0).then_some(instrument),
                order_id: Some(order_id),
                account,
                code: RejectCode::ALL[w[6] as usize % 6],
            },
        };
        // Now and then stamped a little before the command ahead of it (two gateways): the
        // engine's time must not go back.
        let stamp = if w[6] % 16 == 5 {
            ts.saturating_sub(3)
        } else {
            ts
        };
        if let (Some(_), CommandKind::NewOrder(o)) = (policy, &kind) {
            let pick = w[7] >> 8;
            let terms = match pick % 8 {
                0 | 1 => Some(OrderTerms {
                    instrument: o.instrument,
                    order_id: o.order_id,
                    display: Qty(1 + (pick >> 3) as u64 % 4),
                    stop: None,
                }),
                2..=4 => Some(OrderTerms {
                    instrument: o.instrument,
                    order_id: o.order_id,
                    display: Qty(if (pick >> 3) % 29 == 0 { 1 } else { 0 }),
                    stop: Some(Price(if (pick >> 3) % 31 == 0 {
                        0
                    } else {
                        95 + (w[3] >> 8) as i64 % 11
                    })),
                }),
                _ => None,
            };
            if let Some(t) = terms {
                out.push(Command::new(Timestamp(stamp), CommandKind::OrderTerms(t)));
            }
        }
        out.push(Command::new(Timestamp(stamp), kind));
    }
    out
}

/// The same commands with every order id mapped through one injective function of the
/// generator's counter, so that the id index meets other id patterns: 1 — three
/// interleaved flows (a dense counter, sparse ids ~5,000 apart from 2^40, a far counter at
/// 2^62, like LOBSTER's references and a replay's synthetic ids); 2 — random 64-bit ids
/// (a bijective mix); 3 — falling ids; 4 — ids scattered over 2^20 (a bijection of the
/// counter: out of order, within one 2^32 block, so the used ids go to a bitmap). Anything
/// else: unchanged.
#[allow(dead_code)]
pub fn reshape_ids(cmds: &[Command], shape: u8) -> Vec<Command> {
    let f = |id: OrderId| {
        let k = id.0;
        OrderId(match shape {
            1 => match k % 3 {
                0 => k,
                1 => (1 << 40) + k * 4_999,
                _ => (1 << 62) + k,
            },
            2 => k.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17),
            3 => (u64::MAX / 2) - k * 7,
            4 => (k.wrapping_mul(0x9E37_79B1) & 0xF_FFFF) + (k >> 20 << 20) + 1,
            _ => k,
        })
    };
    cmds.iter()
        .map(|c| {
            let mut c = *c;
            match &mut c.kind {
                CommandKind::NewOrder(o) => o.order_id = f(o.order_id),
                CommandKind::Cancel { order_id, .. } | CommandKind::Modify { order_id, .. } => {
                    *order_id = f(*order_id)
                }
                CommandKind::Invalid {
                    order_id: Some(id), ..
                } => *id = f(*id),
                CommandKind::OrderTerms(t) => t.order_id = f(t.order_id),
                _ => {}
            }
            c
        })
        .collect()
}
