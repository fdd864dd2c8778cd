//! Risk updater: hand-computed positions, P&L and fees; the kill switch; invariants on
//! random streams.

use proptest::prelude::*;
use ringex_consumers::risk::{Limits, RiskInstrument, RiskUpdater};
use ringex_engine::pipeline::ConsumerOptions;
use ringex_engine::*;
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::str::FromStr;

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).expect("decimal")
}

fn spec() -> HashMap<InstrumentId, RiskInstrument> {
    HashMap::from([(
        InstrumentId(0),
        RiskInstrument {
            tick_size: dec("1"),
            lot_size: dec("1"),
        },
    )])
}

/// Instrument 0 funded: base asset 0 (whole units), quote asset 1 in thousandths (one tick
/// × one lot = 1000 units), maker -0.02%, taker 0.1%; accounts 1 to 4 funded with plenty of
/// both.
fn funded_setup() -> Vec<CommandKind> {
    let rate = |s: &str| Rate::from_decimal(dec(s)).expect("rate");
    let mut v = vec![
        CommandKind::AddAsset {
            asset: AssetId(0),
            scale: 0,
        },
        CommandKind::AddAsset {
            asset: AssetId(1),
            scale: 3,
        },
        CommandKind::AddInstrument(
            InstrumentDef::funded(InstrumentId(0), AssetId(0), AssetId(1), 1, 1000)
                .with_fees(rate("-0.0002"), rate("0.001")),
        ),
    ];
    for a in 1..5 {
        for asset in [AssetId(0), AssetId(1)] {
            v.push(CommandKind::Deposit {
                account: AccountId(a),
                asset,
                amount: Amount::new(1 << 60),
            });
        }
    }
    v
}

/// The setup of a random-stream test: [`funded_setup`], or instrument 0 unfunded.
fn world(funded: bool) -> Vec<CommandKind> {
    if funded {
        funded_setup()
    } else {
        vec![CommandKind::AddInstrument(InstrumentDef::unfunded(
            InstrumentId(0),
        ))]
    }
}

/// The open notional of an account's resting orders in the matcher (instrument 0).
fn resting_notional(m: &Matcher, a: u64) -> Decimal {
    m.resting_orders(InstrumentId(0))
        .iter()
        .filter(|o| o.account == AccountId(a))
        .map(|o| Decimal::from(o.price.0) * Decimal::from(o.qty.0))
        .sum()
}

fn order(account: u64, id: u64, side: Side, price: i64, qty: u64) -> CommandKind {
    CommandKind::NewOrder(NewOrder::limit(
        InstrumentId(0),
        AccountId(account),
        OrderId(id),
        side,
        Price(price),
        Qty(qty),
    ))
}

/// One command of a random stream on instrument 0: `k` 0–2 a limit order, 3 a cancel and
/// 4–5 a modify (of an earlier id), 6 an IOC limit order, 7 a market order.
fn random_command(k: u8, acct: u64, id: u64, px: i64, qty: u64, buy: bool) -> CommandKind {
    let (inst, account) = (InstrumentId(0), AccountId(acct));
    let side = if buy { Side::Buy } else { Side::Sell };
    match k % 8 {
        0..=2 => order(acct, id, side, px, qty),
        3 => CommandKind::Cancel {
            instrument: inst,
            account,
            order_id: OrderId(id / 2),
        },
        4 | 5 => CommandKind::Modify {
            instrument: inst,
            account,
            order_id: OrderId(id / 2),
            price: Price(px),
            qty: Qty(qty),
        },
        6 => {
            let mut o = NewOrder::limit(inst, account, OrderId(id), side, Price(px), Qty(qty));
            o.tif = TimeInForce::Ioc;
            CommandKind::NewOrder(o)
        }
        _ => {
            let mut o = NewOrder::limit(inst, account, OrderId(id), side, Price(0), Qty(qty));
            o.order_type = OrderType::Market;
            CommandKind::NewOrder(o)
        }
    }
}

/// Feeds commands through a matcher into the risk updater directly.
fn feed(r: &mut RiskUpdater, m: &mut Matcher, seq: &mut u64, kinds: &[CommandKind]) -> Vec<Event> {
    let mut all = Vec::new();
    let mut out = Vec::new();
    for k in kinds {
        *seq += 1;
        out.clear();
        m.process(Sequence(*seq), &Command::new(Timestamp(0), *k), &mut out);
        let n = out.len();
        for (i, e) in out.iter().enumerate() {
            r.on_event(e, Sequence(0), i + 1 == n);
        }
        all.extend_from_slice(&out);
    }
    all
}

#[test]
fn buy_three_at_100_sell_one_at_105_with_fees() {
    let (mut r, view) = RiskUpdater::new(spec());
    let mut m = Matcher::default();
    let mut seq = 0;
    feed(&mut r, &mut m, &mut seq, &funded_setup());
    feed(
        &mut r,
        &mut m,
        &mut seq,
        &[
            order(1, 1, Side::Sell, 100, 3), // A rests: maker
            order(2, 2, Side::Buy, 100, 3),  // B takes 3 @ 100
            order(3, 3, Side::Buy, 105, 1),  // C rests: maker
            order(2, 4, Side::Sell, 105, 1), // B sells 1 @ 105 (taker)
        ],
    );
    let b = r.account(AccountId(2)).expect("B").positions[&InstrumentId(0)].clone();
    assert_eq!(b.qty, dec("2"));
    assert_eq!(b.avg_price, dec("100"));
    assert_eq!(b.realized, dec("5"));
    assert_eq!(b.fees, dec("0.405")); // 300 × 0.1% + 105 × 0.1%
    let a = r.account(AccountId(1)).expect("A").positions[&InstrumentId(0)].clone();
    assert_eq!(
        (a.qty, a.avg_price, a.fees),
        (dec("-3"), dec("100"), dec("-0.06"))
    );
    let c = r.account(AccountId(3)).expect("C").positions[&InstrumentId(0)].clone();
    assert_eq!(
        (c.qty, c.avg_price, c.fees),
        (dec("1"), dec("105"), dec("-0.021"))
    );
    assert_eq!(c.open_notional, dec("0"));
    // The published view matches.
    assert_eq!(
        view.account(AccountId(2)).expect("published").positions[&InstrumentId(0)],
        b
    );
}

#[test]
fn open_order_exposure_follows_accepts_modifies_fills_and_cancels() {
    let (mut r, _) = RiskUpdater::new(spec());
    let mut m = Matcher::default();
    let mut seq = 0;
    let inst = InstrumentId(0);
    feed(
        &mut r,
        &mut m,
        &mut seq,
        &[
            CommandKind::AddInstrument(inst.into()),
            order(1, 1, Side::Buy, 100, 5),
        ],
    );
    assert_eq!(
        r.account(AccountId(1)).expect("a").positions[&inst].open_notional,
        dec("500")
    );
    feed(
        &mut r,
        &mut m,
        &mut seq,
        &[CommandKind::Modify {
            instrument: inst,
            account: AccountId(1),
            order_id: OrderId(1),
            price: Price(90),
            qty: Qty(4),
        }],
    );
    assert_eq!(
        r.account(AccountId(1)).expect("a").positions[&inst].open_notional,
        dec("360")
    );
    feed(&mut r, &mut m, &mut seq, &[order(2, 2, Side::Sell, 90, 1)]);
    assert_eq!(
        r.account(AccountId(1)).expect("a").positions[&inst].open_notional,
        dec("270")
    );
    feed(
        &mut r,
        &mut m,
        &mut seq,
        &[CommandKind::Cancel {
            instrument: inst,
            account: AccountId(1),
            order_id: OrderId(1),
        }],
    );
    assert_eq!(
        r.account(AccountId(1)).expect("a").positions[&inst].open_notional,
        dec("0")
    );
}

/// Records every event.
struct Tape(std::sync::Arc<std::sync::Mutex<Vec<Event>>>);
impl Consumer for Tape {
    fn name(&self) -> &str {
        "tape"
    }
    fn on_event(&mut self, e: &Event, _: Sequence, _: bool) {
        if let Ok(mut t) = self.0.lock() {
            t.push(*e);
        }
    }
}

#[test]
fn a_breach_fires_the_kill_switch_through_the_input_ring() {
    let (risk, view) = RiskUpdater::new(spec());
    view.set_limits(
        AccountId(1),
        Limits {
            max_position: Some(dec("5")),
            ..Limits::default()
        },
    );
    let tape = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut b = Pipeline::builder();
    b.add_consumer(risk, ConsumerOptions::default());
    b.add_consumer(Tape(tape.clone()), ConsumerOptions::default());
    let p = b.start().expect("start");
    let mut g = p.gateway();
    g.submit(CommandKind::AddInstrument(InstrumentId(0).into()))
        .expect("ok");
    // Account 1 rests three bids, then gets 6 lots filled: position 6 > 5.
    g.submit(order(1, 1, Side::Buy, 100, 4)).expect("ok");
    g.submit(order(1, 2, Side::Buy, 99, 4)).expect("ok");
    g.submit(order(1, 3, Side::Buy, 98, 4)).expect("ok");
    g.submit(order(2, 10, Side::Sell, 99, 6)).expect("ok");
    // Wait for the kill switch to take effect.
    let mut waited = 0;
    while view.breaches().is_empty() || p.status().commands_processed < 7 {
        std::thread::sleep(std::time::Duration::from_millis(1));
        waited += 1;
        assert!(waited < 10_000, "kill switch did not fire");
    }
    while p.status().commands_processed < 7 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let late = g.submit(order(1, 20, Side::Buy, 50, 1)).expect("ok");
    drop(g);
    let report = p.shutdown();
    let m = report.matcher.as_ref().expect("matcher");
    assert!(m.is_blocked(AccountId(1)));
    assert!(
        m.resting_orders(InstrumentId(0))
            .iter()
            .all(|o| o.account != AccountId(1)),
        "every resting order of the account is cancelled"
    );
    let events = tape.lock().expect("tape").clone();
    let rejected = events.iter().any(|e| {
        e.cmd_seq() == late
            && matches!(
                e.kind,
                EventKind::Rejected {
                    code: RejectCode::Blocked,
                    ..
                }
            )
    });
    assert!(
        rejected,
        "new orders of the account are rejected with blocked"
    );
    let cancels = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Cancelled { reason: CancelReason::MassCancel, account, .. } if account == AccountId(1)))
        .count();
    // Orders 2 (99: 2 of 4 left after the fill) and 3 (98 × 4) still rested.
    assert_eq!(cancels, 2, "every order still resting was mass-cancelled");
    let (acct, why) = &view.breaches()[0];
    assert_eq!(*acct, AccountId(1));
    assert!(why.contains("position 6"), "{why}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn positions_sum_to_zero_and_fees_are_the_engines_rates_times_notional(
        raw in prop::collection::vec((0u8..6, 1u64..5, 95i64..106, 1u64..10, any::<bool>()), 1..200)
    ) {
        let (mut r, _) = RiskUpdater::new(spec());
        let mut m = Matcher::default();
        let mut seq = 0;
        let mut kinds = funded_setup();
        for (i, &(k, acct, px, qty, buy)) in raw.iter().enumerate() {
            kinds.push(random_command(k, acct, i as u64 + 1, px, qty, buy));
        }
        let events = feed(&mut r, &mut m, &mut seq, &kinds);
        // Expected fees from the fills: the taker pays 0.1%, the maker gets 0.02% back, each
        // truncated toward zero to a whole thousandth (the quote asset's unit).
        let mut owner = HashMap::new();
        let mut fees: HashMap<u64, Decimal> = HashMap::new();
        for e in &events {
            match e.kind {
                EventKind::Accepted {
                    order_id, account, ..
                } => {
                    owner.insert(order_id, account.0);
                }
                EventKind::Fill { taker, maker, price, qty, .. } => {
                    let units = Decimal::from(price.0) * Decimal::from(qty.0) * dec("1000");
                    let fee = |r: &str| (units * dec(r)).trunc() / dec("1000");
                    *fees.entry(owner[&taker]).or_default() += fee("0.001");
                    *fees.entry(owner[&maker]).or_default() += fee("-0.0002");
                }
                _ => {}
            }
        }
        let mut total = Decimal::ZERO;
        for a in 1..5 {
            let got: Decimal = r.account(AccountId(a)).map_or(Decimal::ZERO, |acc| {
                acc.positions.values().map(|p| p.fees).sum()
            });
            prop_assert_eq!(got, fees.get(&a).copied().unwrap_or_default(), "fees of account {}", a);
            if let Some(acc) = r.account(AccountId(a)) {
                total += acc.positions.values().map(|p| p.qty).sum::<Decimal>();
            }
        }
        prop_assert_eq!(total, Decimal::ZERO);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// The risk consumer keeps no order map (the events carry owner, side, price and the
    /// old and remaining quantities): after every command each account's open notional is
    /// still exactly that of its resting orders in the matcher, through GTC, IOC and market
    /// orders, partial fills, modifies up and down, cancels of live and dead orders.
    #[test]
    fn open_notional_is_always_that_of_the_resting_orders(
        raw in prop::collection::vec((0u8..8, 1u64..5, 95i64..106, 1u64..10, any::<bool>()), 1..200),
        funded in any::<bool>(),
    ) {
        let (mut r, _) = RiskUpdater::new(spec());
        let mut m = Matcher::default();
        let mut seq = 0;
        let setup = world(funded);
        feed(&mut r, &mut m, &mut seq, &setup);
        for (i, &(k, acct, px, qty, buy)) in raw.iter().enumerate() {
            let k = random_command(k, acct, i as u64 + 1, px, qty, buy);
            feed(&mut r, &mut m, &mut seq, &[k]);
            for a in 1..5 {
                let want = resting_notional(&m, a);
                let got = r.account(AccountId(a)).map_or(Decimal::ZERO, |x| x.open_notional());
                prop_assert_eq!(got, want, "account {} after command {}: {:?}", a, i, k);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// A risk updater restored from the engine state after the first `cut` commands (as
    /// recovery rebuilds it), then fed the rest, has every account's open notional equal to
    /// that of one that saw everything (and to the resting orders'), and counts the later
    /// fees in the same unit; its positions start at the restart.
    #[test]
    fn restored_from_a_state_it_counts_open_exposure_as_if_it_saw_everything(
        raw in prop::collection::vec((0u8..8, 1u64..5, 95i64..106, 1u64..10, any::<bool>()), 1..160),
        cut in 0usize..160,
        funded in any::<bool>(),
    ) {
        let cut = cut.min(raw.len());
        let (mut whole, _) = RiskUpdater::new(spec());
        let mut m = Matcher::default();
        let mut replica = BookReplica::new();
        let mut seq = 0;
        let setup = world(funded);
        let mut event_seq = 0;
        let mut apply = |replica: &mut BookReplica, events: &[Event]| {
            for e in events {
                replica.apply(e);
                event_seq += 1;
            }
            event_seq
        };
        let evs = feed(&mut whole, &mut m, &mut seq, &setup);
        let mut last = apply(&mut replica, &evs);
        let cmds: Vec<CommandKind> = raw
            .iter()
            .enumerate()
            .map(|(i, &(k, acct, px, qty, buy))| random_command(k, acct, i as u64 + 1, px, qty, buy))
            .collect();
        for k in &cmds[..cut] {
            let evs = feed(&mut whole, &mut m, &mut seq, std::slice::from_ref(k));
            last = apply(&mut replica, &evs);
        }
        let state = replica.state(seq, last);
        let fees_at_cut: Vec<Decimal> = (1..5)
            .map(|a| whole.account(AccountId(a)).map_or(Decimal::ZERO, |x| x.positions.values().map(|p| p.fees).sum()))
            .collect();
        let (mut restored, _) = RiskUpdater::restored(spec(), &state);
        for (i, k) in cmds[cut..].iter().enumerate() {
            let evs = feed(&mut whole, &mut m, &mut seq, std::slice::from_ref(k));
            let n = evs.len();
            for (j, e) in evs.iter().enumerate() {
                restored.on_event(e, Sequence(0), j + 1 == n);
            }
            for a in 1..5u64 {
                let want = resting_notional(&m, a);
                let got = restored.account(AccountId(a)).map_or(Decimal::ZERO, |x| x.open_notional());
                let all = whole.account(AccountId(a)).map_or(Decimal::ZERO, |x| x.open_notional());
                prop_assert_eq!(got, want, "account {} after command {}: {:?}", a, cut + i, k);
                prop_assert_eq!(all, want);
                let fees_since: Decimal = restored
                    .account(AccountId(a))
                    .map_or(Decimal::ZERO, |x| x.positions.values().map(|p| p.fees).sum());
                let fees_all: Decimal = whole
                    .account(AccountId(a))
                    .map_or(Decimal::ZERO, |x| x.positions.values().map(|p| p.fees).sum());
                prop_assert_eq!(fees_since, fees_all - fees_at_cut[a as usize - 1]);
            }
        }
    }
}

/// The average-cost reference: position, average entry and realized P&L per account, in
/// `Decimal`, updated fill by fill as a textbook would (an average after every add).
#[derive(Default)]
struct Reference {
    qty: Decimal,
    avg: Decimal,
    realized: Decimal,
}

impl Reference {
    fn trade(&mut self, buy: bool, px: Decimal, units: Decimal) {
        let signed = if buy { units } else { -units };
        let old = self.qty;
        if old.is_zero() || (old > Decimal::ZERO) == buy {
            let new = old + signed;
            self.avg = (self.avg * old.abs() + px * units) / new.abs();
            self.qty = new;
        } else {
            let closing = units.min(old.abs());
            let dir = if old > Decimal::ZERO {
                Decimal::ONE
            } else {
                Decimal::NEGATIVE_ONE
            };
            self.realized += (px - self.avg) * closing * dir;
            self.qty = old + signed;
            if self.qty.is_zero() {
                self.avg = Decimal::ZERO;
            } else if (self.qty > Decimal::ZERO) != (old > Decimal::ZERO) {
                self.avg = px;
            }
        }
    }
}

fn close(a: Decimal, b: Decimal) -> bool {
    (a - b).abs() <= dec("0.000000000000000001") * Decimal::ONE.max(b.abs())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Positions, average entries and realized P&L equal the textbook average-cost
    /// reference after random trading (the consumer keeps an entry cost and divides only
    /// when read or when part of a position closes: equal up to the 28th digit).
    #[test]
    fn positions_and_pnl_follow_the_average_cost_reference(
        raw in prop::collection::vec((0u8..8, 1u64..5, 95i64..106, 1u64..10, any::<bool>()), 1..300)
    ) {
        let (mut r, _) = RiskUpdater::new(spec());
        let mut m = Matcher::default();
        let mut seq = 0;
        let mut kinds = vec![CommandKind::AddInstrument(InstrumentDef::unfunded(InstrumentId(0)))];
        for (i, &(k, acct, px, qty, buy)) in raw.iter().enumerate() {
            kinds.push(random_command(k, acct, i as u64 + 1, px, qty, buy));
        }
        let events = feed(&mut r, &mut m, &mut seq, &kinds);
        let mut owner = HashMap::new();
        let mut refs: HashMap<u64, Reference> = HashMap::new();
        for e in &events {
            match e.kind {
                EventKind::Accepted { order_id, account, .. } => {
                    owner.insert(order_id, account.0);
                }
                EventKind::Fill { taker, maker_account, price, qty, taker_side, .. } => {
                    let (px, units) = (Decimal::from(price.0), Decimal::from(qty.0));
                    let buy = taker_side == Side::Buy;
                    refs.entry(owner[&taker]).or_default().trade(buy, px, units);
                    refs.entry(maker_account.0).or_default().trade(!buy, px, units);
                }
                _ => {}
            }
        }
        for (a, want) in &refs {
            let got = r.account(AccountId(*a)).expect("traded");
            let p = &got.positions[&InstrumentId(0)];
            prop_assert_eq!(p.qty, want.qty, "qty of {}", a);
            prop_assert!(close(p.avg_price, want.avg), "avg of {}: {} vs {}", a, p.avg_price, want.avg);
            prop_assert!(close(p.realized, want.realized), "realized of {}: {} vs {}", a, p.realized, want.realized);
        }
    }
}

/// No figure panics the consumer or its readers: the largest prices and quantities the
/// engine takes, traded, added to, partly closed and flipped, with every limit set (the
/// checks read the money view) and tick and lot sizes that overflow a `Decimal`.
#[test]
fn extreme_prices_and_quantities_never_panic() {
    let spec = HashMap::from([(
        InstrumentId(0),
        RiskInstrument {
            tick_size: Decimal::MAX,
            lot_size: Decimal::MAX,
        },
    )]);
    let (mut r, view) = RiskUpdater::new(spec);
    view.set_default_limits(Limits {
        max_position: Some(Decimal::MAX),
        max_open_notional: Some(Decimal::MAX),
        max_loss: Some(Decimal::MAX),
    });
    r.on_start_with_view_limits();
    let mut m = Matcher::default();
    let mut seq = 0;
    let (big, huge) = (i64::MAX - 1, u64::MAX);
    let mut kinds = vec![CommandKind::AddInstrument(InstrumentDef::unfunded(
        InstrumentId(0),
    ))];
    let mut id = 0;
    for (seller, buyer, px, qty) in [
        (2, 1, big, huge),
        (2, 1, 1, huge),
        (1, 2, big, huge / 3),
        (1, 2, 1, huge),
        (2, 1, big / 2, 7),
    ] {
        id += 1;
        kinds.push(order(seller, id, Side::Sell, px, qty));
        id += 1;
        kinds.push(order(buyer, id, Side::Buy, px, qty));
    }
    // Something left resting: open notional beyond any Decimal.
    id += 1;
    kinds.push(order(3, id, Side::Buy, big, huge));
    let events = feed(&mut r, &mut m, &mut seq, &kinds);
    assert!(events
        .iter()
        .any(|e| matches!(e.kind, EventKind::Fill { .. })));
    r.on_shutdown();
    for a in 1..=3 {
        let got = view.account(AccountId(a)).expect("published");
        let _ = (got.open_notional(), got.net_realized());
        assert_eq!(r.account(AccountId(a)), Some(got));
    }
}

/// The consumer keeps lots and ticks and turns them into money for readers: with a tick of
/// 0.01 and a lot of 10 units the figures are those worked by hand in money.
#[test]
fn positions_in_ticks_and_lots_read_back_in_money() {
    let spec = HashMap::from([(
        InstrumentId(0),
        RiskInstrument {
            tick_size: dec("0.01"),
            lot_size: dec("10"),
        },
    )]);
    let (mut r, view) = RiskUpdater::new(spec);
    let mut m = Matcher::default();
    let mut seq = 0;
    feed(
        &mut r,
        &mut m,
        &mut seq,
        &[
            CommandKind::AddInstrument(InstrumentDef::unfunded(InstrumentId(0))),
            order(2, 1, Side::Sell, 10050, 3),
            order(1, 2, Side::Buy, 10050, 3),
            order(2, 3, Side::Sell, 10100, 1),
            order(1, 4, Side::Buy, 10100, 1),
            order(2, 5, Side::Buy, 10200, 2),
            order(1, 6, Side::Sell, 10200, 2),
            // A resting bid of 4 lots at 99.00: 3960 of open notional.
            order(1, 7, Side::Buy, 9900, 4),
        ],
    );
    r.on_shutdown();
    for (account, sign) in [(1, 1), (2, -1)] {
        let got = view.account(AccountId(account)).expect("published");
        let p = &got.positions[&InstrumentId(0)];
        let sign = Decimal::from(sign);
        // Bought 30 units at 100.50 and 10 at 101.00 (average 100.625), sold 20 at 102.00.
        assert_eq!(p.qty, dec("20") * sign, "account {account}");
        assert_eq!(p.avg_price, dec("100.625"));
        assert_eq!(p.realized, dec("27.5") * sign);
        assert_eq!(p.traded_notional, dec("6065"));
        assert_eq!(r.account(AccountId(account)), Some(got));
    }
    let a1 = view.account(AccountId(1)).expect("published");
    assert_eq!(a1.open_notional(), dec("3960"));
}

#[test]
fn open_notional_and_loss_limits_are_breaches_too() {
    let (mut r, view) = RiskUpdater::new(spec());
    view.set_limits(
        AccountId(1),
        Limits {
            max_open_notional: Some(dec("1000")),
            ..Limits::default()
        },
    );
    view.set_limits(
        AccountId(2),
        Limits {
            max_loss: Some(dec("10")),
            ..Limits::default()
        },
    );
    r.on_start_with_view_limits();
    let mut m = Matcher::default();
    let mut seq = 0;
    feed(
        &mut r,
        &mut m,
        &mut seq,
        &[
            CommandKind::AddInstrument(InstrumentId(0).into()),
            order(1, 1, Side::Buy, 100, 9),
        ],
    );
    assert!(
        view.breaches().is_empty(),
        "900 of open notional is within 1000"
    );
    feed(&mut r, &mut m, &mut seq, &[order(1, 2, Side::Buy, 50, 3)]);
    // Account 2 buys 10 @ 110 from account 3, then sells 10 @ 100 into account 1's bid: -100.
    feed(
        &mut r,
        &mut m,
        &mut seq,
        &[
            order(3, 3, Side::Sell, 110, 10),
            order(2, 4, Side::Buy, 110, 10),
            order(2, 5, Side::Sell, 100, 9),
        ],
    );
    let b = view.breaches();
    assert_eq!(b.len(), 2, "{b:?}");
    assert_eq!(b[0].0, AccountId(1));
    assert!(b[0].1.contains("open-order notional 1050"), "{}", b[0].1);
    assert_eq!(b[1].0, AccountId(2));
    assert!(b[1].1.contains("loss"), "{}", b[1].1);
}
