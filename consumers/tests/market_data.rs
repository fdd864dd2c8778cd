//! Market data: L2 equals the matcher's books after every command; late joiners and slow
//! subscribers end up with the same books as a subscriber that was there from the start.

use proptest::prelude::*;
use ringex_consumers::market_data::{L2Books, MarketData, MdUpdate};
use ringex_engine::*;

const DEPTH: usize = 5;

fn cmds(raw: &[(u8, u8, u8, u8, bool)]) -> Vec<Command> {
    cmds_with(raw, false)
}

/// With `extras`, instrument 0 is pro-rata with a TOP order, and new orders are now and
/// then icebergs (instrument 1) or stops.
fn cmds_with(raw: &[(u8, u8, u8, u8, bool)], extras: bool) -> Vec<Command> {
    let mut v = vec![
        Command::new(
            Timestamp(0),
            CommandKind::AddInstrument(InstrumentId(0).into()),
        ),
        Command::new(
            Timestamp(0),
            CommandKind::AddInstrument(InstrumentId(1).into()),
        ),
    ];
    for (i, &(k, inst, px, qty, buy)) in raw.iter().enumerate() {
        let inst = InstrumentId(u32::from(inst % 2));
        let side = if buy { Side::Buy } else { Side::Sell };
        let id = i as u64 + 1;
        let acct = AccountId(u64::from(k % 3));
        let mut o = NewOrder::limit(
            inst,
            acct,
            OrderId(id),
            side,
            Price(90 + i64::from(px % 20)),
            Qty(1 + u64::from(qty % 9)),
        );
        // Every kind of order: what trades, rests, is cancelled in part or expires.
        match (px >> 5) % 8 {
            0 => o.tif = TimeInForce::Ioc,
            1 => o.tif = TimeInForce::Fok,
            2 => o.order_type = OrderType::Market,
            3 => {
                o.tif = TimeInForce::Gtd;
                o.expiry = Timestamp(i as u64 + u64::from(qty % 16));
            }
            4 => o.post_only = true,
            5 => {
                o.stp = [
                    SelfTradePrevention::CancelMaker,
                    SelfTradePrevention::CancelBoth,
                    SelfTradePrevention::Allow,
                ][usize::from(qty % 3)]
            }
            _ => {}
        }
        let kind = match k % 10 {
            0..=5 => CommandKind::NewOrder(o),
            6 => CommandKind::Cancel {
                instrument: inst,
                account: acct,
                order_id: OrderId(id.saturating_sub(u64::from(px % 10))),
            },
            7 => CommandKind::Modify {
                instrument: inst,
                account: acct,
                order_id: OrderId(id.saturating_sub(u64::from(px % 10))),
                price: Price(90 + i64::from(qty % 20)),
                qty: Qty(1 + u64::from(px % 5)),
            },
            8 => CommandKind::Halt { instrument: inst },
            _ => CommandKind::Resume { instrument: inst },
        };
        if let (true, CommandKind::NewOrder(o)) = (extras, &kind) {
            let terms = match (k >> 4) % 4 {
                0 if o.instrument.0 == 1 => Some((Qty(1 + u64::from(qty >> 6)), None)),
                1 => Some((Qty(0), Some(Price(90 + i64::from(qty % 20))))),
                _ => None,
            };
            if let Some((display, stop)) = terms {
                let t = OrderTerms {
                    instrument: o.instrument,
                    order_id: o.order_id,
                    display,
                    stop,
                };
                v.push(Command::new(
                    Timestamp(i as u64),
                    CommandKind::OrderTerms(t),
                ));
            }
        }
        // Time moves on, so GTD orders expire.
        v.push(Command::new(Timestamp(i as u64), kind));
    }
    if extras {
        v.insert(
            2,
            Command::new(
                Timestamp(0),
                CommandKind::SetMatchPolicy {
                    instrument: InstrumentId(0),
                    policy: MatchPolicy::ProRataTop,
                    min_alloc: Qty(1),
                },
            ),
        );
    }
    v
}

fn top(m: &Matcher, i: InstrumentId, side: Side) -> Vec<(Price, u128)> {
    m.depth(i, side)
        .take(DEPTH)
        .map(|(p, q, _)| (p, q))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn l2_and_bbo_equal_the_matchers_books_after_every_command(
        raw in prop::collection::vec((any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>(), any::<bool>()), 1..300),
        extras in any::<bool>(),
    ) {
        let (mut md, hub) = MarketData::new(DEPTH);
        let sub = hub.subscribe(1 << 16);
        let mut books = L2Books::default();
        let mut m = Matcher::default();
        let mut out = Vec::new();
        let mut ev = 0u64;
        for (i, c) in cmds_with(&raw, extras).iter().enumerate() {
            out.clear();
            m.process(Sequence(i as u64 + 1), c, &mut out);
            let n = out.len();
            for (k, e) in out.iter().enumerate() {
                ev += 1;
                md.on_event(e, Sequence(ev), k + 1 == n);
            }
            for u in sub.rx.try_iter() {
                books.apply(&u);
            }
            for inst in [InstrumentId(0), InstrumentId(1)] {
                let (b, a) = md.l2(inst);
                prop_assert_eq!(&b, &top(&m, inst, Side::Buy));
                prop_assert_eq!(&a, &top(&m, inst, Side::Sell));
                let (_, sb, sa) = books.book(inst).unwrap_or_default();
                prop_assert_eq!(sb, b, "the subscriber's bids");
                prop_assert_eq!(sa, a, "the subscriber's asks");
            }
            prop_assert!(!books.gap);
        }
    }
}

#[test]
fn late_and_slow_subscribers_resync_to_the_same_books() {
    let raw: Vec<(u8, u8, u8, u8, bool)> = (0..3000u32)
        .map(|i| {
            let x = i.wrapping_mul(2654435761);
            (
                (x >> 3) as u8,
                (x >> 11) as u8,
                (x >> 17) as u8,
                (x >> 23) as u8,
                x & 1 == 1,
            )
        })
        .collect();
    let (mut md, hub) = MarketData::new(DEPTH);
    let early = hub.subscribe(1 << 16);
    let slow = hub.subscribe(8);
    let mut late = None;
    let (mut eb, mut lb, mut sb) = (L2Books::default(), L2Books::default(), L2Books::default());
    let mut m = Matcher::default();
    let mut out = Vec::new();
    let mut ev = 0u64;
    let mut saw_resync = false;
    for (i, c) in cmds(&raw).iter().enumerate() {
        if i == 1500 {
            late = Some(hub.subscribe(1 << 16));
        }
        out.clear();
        m.process(Sequence(i as u64 + 1), c, &mut out);
        let n = out.len();
        for (k, e) in out.iter().enumerate() {
            ev += 1;
            md.on_event(e, Sequence(ev), k + 1 == n);
        }
        for u in early.rx.try_iter() {
            eb.apply(&u);
        }
        if let Some(l) = &late {
            for u in l.rx.try_iter() {
                lb.apply(&u);
            }
            if i > 1500 {
                assert_eq!(
                    lb.book(InstrumentId(0)),
                    eb.book(InstrumentId(0)),
                    "late joiner at command {i}"
                );
                assert_eq!(lb.book(InstrumentId(1)), eb.book(InstrumentId(1)));
            }
        }
        // The slow subscriber reads only now and then: it falls behind and is told.
        if i % 400 == 399 {
            for u in slow.rx.try_iter() {
                saw_resync |= u == MdUpdate::Resync;
                sb.apply(&u);
            }
        }
    }
    assert!(saw_resync, "the slow subscriber was told it fell behind");
    // Two more batches (a status event that changes nothing) let the publisher send the now
    // drained subscriber fresh snapshots.
    for k in 1..=2 {
        let same = EventKind::InstrumentStatus {
            instrument: InstrumentId(0),
            halted: m.is_halted(InstrumentId(0)),
        };
        md.on_event(&Event::new(Sequence(0), same), Sequence(ev + k), true);
        early.rx.try_iter().for_each(|u| eb.apply(&u));
        slow.rx.try_iter().for_each(|u| sb.apply(&u));
    }
    for inst in [InstrumentId(0), InstrumentId(1)] {
        let (_, b, a) = sb.book(inst).expect("slow subscriber resynced");
        assert_eq!(
            (b, a),
            (top(&m, inst, Side::Buy), top(&m, inst, Side::Sell))
        );
        assert_eq!(
            sb.book(inst).map(|x| (x.1, x.2)),
            eb.book(inst).map(|x| (x.1, x.2))
        );
    }
}

#[test]
fn a_snapshot_request_command_sends_subscribers_a_snapshot() {
    let (mut md, hub) = MarketData::new(DEPTH);
    let sub = hub.subscribe(1024);
    let mut m = Matcher::default();
    let mut out = Vec::new();
    let c = |k| Command::new(Timestamp(0), k);
    let cmds = [
        c(CommandKind::AddInstrument(InstrumentId(0).into())),
        c(CommandKind::NewOrder(NewOrder::limit(
            InstrumentId(0),
            AccountId(1),
            OrderId(1),
            Side::Buy,
            Price(99),
            Qty(4),
        ))),
        c(CommandKind::SnapshotRequest {
            instrument: InstrumentId(0),
        }),
        c(CommandKind::SnapshotRequest {
            instrument: InstrumentId(7),
        }),
    ];
    let mut ev = 0;
    for (i, cmd) in cmds.iter().enumerate() {
        out.clear();
        m.process(Sequence(i as u64 + 1), cmd, &mut out);
        for e in &out {
            ev += 1;
            md.on_event(e, Sequence(ev), e.is_last_of_command());
        }
    }
    assert!(matches!(
        out[0].kind,
        EventKind::Rejected {
            code: RejectCode::UnknownInstrument,
            ..
        }
    ));
    let snaps: Vec<_> = sub
        .rx
        .try_iter()
        .filter_map(|u| match u {
            MdUpdate::Snapshot(s) => Some(s),
            _ => None,
        })
        .collect();
    // The subscriber's first snapshot, then the one it asked for, with the bid in it.
    let last = snaps.last().expect("a snapshot");
    assert_eq!(last.bids, vec![(Price(99), 4)]);
    assert!(last.seq >= 2);
}
