//! The fast matcher against the naive reference, and the replica against the matcher, on
//! random command streams covering every command kind and bad inputs.

mod common;

use common::{decode, decode_funded, decode_policy, raw_stream, reshape_ids, INSTRUMENTS};
use proptest::prelude::*;
use ringex_engine::*;

/// Runs both matchers command by command: identical events, then identical books.
fn fast_vs_naive(cmds: &[Command], fast: Matcher) -> Result<(), TestCaseError> {
    fast_vs(cmds, fast, NaiveMatcher::new())
}

/// The same with the naive matcher given.
fn fast_vs(
    cmds: &[Command],
    mut fast: Matcher,
    mut naive: NaiveMatcher,
) -> Result<(), TestCaseError> {
    let (mut fe, mut ne) = (Vec::new(), Vec::new());
    for (i, c) in cmds.iter().enumerate() {
        let seq = Sequence(i as u64 + 1);
        fe.clear();
        ne.clear();
        fast.process(seq, c, &mut fe);
        naive.process(seq, c, &mut ne);
        prop_assert_eq!(&fe, &ne, "command {} = {:?}", i, c);
        prop_assert_eq!(
            fast.balances(),
            naive.balances(),
            "balances after command {} = {:?}",
            i,
            c
        );
    }
    let mut resting = 0;
    for inst in INSTRUMENTS {
        let books = fast.resting_orders(inst);
        resting += books.len();
        prop_assert_eq!(books, MatchingEngine::resting_orders(&naive, inst));
    }
    prop_assert_eq!(fast.resting_count(), resting);
    Ok(())
}

fn policy_of(v: u8) -> (MatchPolicy, u64) {
    match v % 4 {
        0 => (MatchPolicy::ProRata, 1),
        1 => (MatchPolicy::ProRataTop, 1),
        2 => (MatchPolicy::ProRataTop, 2),
        _ => (MatchPolicy::ProRata, 3),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Pro-rata levels (with and without TOP, several `min_alloc`), icebergs and stops.
    #[test]
    fn fast_and_naive_agree_on_policies_and_order_types(raw in raw_stream(300), v in 0u8..4, funded in any::<bool>()) {
        let (p, m) = policy_of(v);
        fast_vs_naive(&decode_policy(&raw, funded, p, m), Matcher::default())?;
    }

    #[test]
    fn replica_equals_matcher_on_policies_and_order_types(raw in raw_stream(300), v in 0u8..4, funded in any::<bool>()) {
        let (p, m) = policy_of(v);
        replica_equals_matcher(&decode_policy(&raw, funded, p, m))?;
    }

    #[test]
    fn restored_with_policies_and_order_types_continues_identically(raw in raw_stream(300), cut in 0usize..300, v in 0u8..4, funded in any::<bool>()) {
        let (p, m) = policy_of(v);
        restored_continues_identically(&decode_policy(&raw, funded, p, m), cut, IdUniqueness::Ever)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn fast_and_naive_give_identical_events_and_books(raw in raw_stream(300)) {
        fast_vs_naive(&decode(&raw), Matcher::default())?;
    }

    /// The same with little reserved (64 orders, 8 gaps between ids): the live-id table
    /// and the used-id ranges grow as they go.
    #[test]
    fn fast_and_naive_agree_with_little_reserved(raw in raw_stream(300)) {
        fast_vs_naive(&decode(&raw), Matcher::with_capacity(MatcherCapacity { orders: 64, ids: 8, gtd: 8 }))?;
    }

    /// Interleaved flows far apart, random 64-bit ids and falling ids: the id index's runs,
    /// its ordered map of out-of-order ids and its live table, with little reserved and with
    /// the defaults.
    #[test]
    fn fast_and_naive_agree_on_interleaved_random_and_falling_ids(raw in raw_stream(300), shape in 1u8..5, small in any::<bool>()) {
        let cmds = reshape_ids(&decode(&raw), shape);
        let m = if small {
            Matcher::with_capacity(MatcherCapacity { orders: 64, ids: 8, gtd: 8 })
        } else {
            Matcher::default()
        };
        fast_vs_naive(&cmds, m)?;
    }

    /// Uniqueness among live orders only (`IdUniqueness::Live`): a dead id may come back,
    /// a live one (resting or a pending stop) may not, whatever the ids' pattern.
    #[test]
    fn fast_and_naive_agree_when_only_live_ids_must_be_unique(raw in raw_stream(300), shape in 0u8..5, policies in any::<bool>(), v in 0u8..4) {
        let cmds = if policies {
            let (p, min) = policy_of(v);
            decode_policy(&raw, false, p, min)
        } else {
            decode(&raw)
        };
        let cmds = reshape_ids(&cmds, shape);
        fast_vs(
            &cmds,
            Matcher::default().with_id_uniqueness(IdUniqueness::Live),
            NaiveMatcher::new().with_id_uniqueness(IdUniqueness::Live),
        )?;
    }

    /// A limit on resting orders per account (`too_many_orders`), small enough to be hit
    /// often, set before the stream or on a matcher part-way through it.
    #[test]
    fn fast_and_naive_agree_with_a_limit_on_open_orders(raw in raw_stream(300), limit in 1u32..6, funded in any::<bool>()) {
        let cmds = if funded { decode_funded(&raw) } else { decode(&raw) };
        fast_vs(
            &cmds,
            Matcher::default().with_max_open_orders(limit),
            NaiveMatcher::new().with_max_open_orders(limit),
        )?;
    }

    #[test]
    fn fast_and_naive_agree_on_funded_instruments(raw in raw_stream(300)) {
        fast_vs_naive(&decode_funded(&raw), Matcher::default())?;
    }

    #[test]
    fn fast_and_naive_agree_on_funded_instruments_with_little_reserved(raw in raw_stream(300)) {
        fast_vs_naive(&decode_funded(&raw), Matcher::with_capacity(MatcherCapacity { orders: 64, ids: 8, gtd: 8 }))?;
    }

    #[test]
    fn replica_equals_matcher_after_every_command(raw in raw_stream(300)) {
        replica_equals_matcher(&decode(&raw))?;
    }

    #[test]
    fn replica_equals_matcher_with_balances_after_every_funded_command(raw in raw_stream(300)) {
        replica_equals_matcher(&decode_funded(&raw))?;
    }

    /// No balance ever goes negative; each account's held part is exactly the sum of its
    /// live orders' holds; every asset is conserved: what all accounts own equals deposits
    /// minus withdrawals, minus the fees the fills took (fees are paid in the quote asset).
    #[test]
    fn balances_stay_non_negative_holds_add_up_and_assets_are_conserved(raw in raw_stream(300)) {
        let cmds = decode_funded(&raw);
        let mut m = Matcher::default();
        let mut out = Vec::new();
        let mut expected: std::collections::BTreeMap<AssetId, i128> = Default::default();
        for (i, c) in cmds.iter().enumerate() {
            out.clear();
            m.process(Sequence(i as u64 + 1), c, &mut out);
            for e in &out {
                match e.kind {
                    EventKind::Deposited { asset, amount, .. } => *expected.entry(asset).or_default() += amount.get(),
                    EventKind::Withdrawn { asset, amount, .. } => *expected.entry(asset).or_default() -= amount.get(),
                    EventKind::FillFees { instrument, buyer_fee, seller_fee } => {
                        let quote = m.definition(instrument).expect("instrument").assets().1;
                        *expected.entry(quote).or_default() -= buyer_fee.get() + seller_fee.get();
                    }
                    _ => {}
                }
            }
            let balances = m.balances();
            let mut owned: std::collections::BTreeMap<AssetId, i128> = Default::default();
            let mut holds: std::collections::BTreeMap<(AccountId, AssetId), i128> = Default::default();
            for inst in INSTRUMENTS {
                let Some(f) = m.definition(inst).and_then(|d| d.funding()) else { continue };
                for o in m.resting_orders(inst) {
                    let h = f.hold(o.side, OrderType::Limit, o.price, o.qty.0);
                    *holds.entry((o.account, f.hold_asset(o.side))).or_default() += h;
                }
            }
            for &(a, asset, b) in &balances {
                prop_assert!(b.total >= 0 && b.held >= 0 && b.available() >= 0, "{:?} {:?} {:?} after {:?}", a, asset, b, c);
                prop_assert_eq!(b.held, holds.remove(&(a, asset)).unwrap_or(0), "held of {:?} in {:?} after {:?}", a, asset, c);
                *owned.entry(asset).or_default() += b.total;
            }
            prop_assert!(holds.values().all(|h| *h == 0), "holds without a balance: {:?}", holds);
            for (asset, want) in &expected {
                prop_assert_eq!(owned.get(asset).copied().unwrap_or(0), *want, "asset {:?} after {:?}", asset, c);
            }
        }
    }
}

/// Feeds the matcher and a replica of its events: the same books, halts, blocks and
/// balances after every command.
fn replica_equals_matcher(cmds: &[Command]) -> Result<(), TestCaseError> {
    {
        let mut fast = Matcher::default();
        let mut replica = BookReplica::new();
        let mut events = Vec::new();
        for (i, c) in cmds.iter().enumerate() {
            events.clear();
            fast.process(Sequence(i as u64 + 1), c, &mut events);
            for e in &events {
                // A resting order's cancel or expiry names its side and price.
                if let EventKind::Cancelled {
                    order_id,
                    side,
                    price,
                    ..
                }
                | EventKind::Expired {
                    order_id,
                    side,
                    price,
                    ..
                } = e.kind
                {
                    if let Some(o) = replica.order(order_id) {
                        prop_assert_eq!((o.side, o.price), (side, price), "{:?}", e);
                    }
                }
                // A fill names the resting order's owner and what it has left.
                if let EventKind::Fill {
                    maker,
                    maker_account,
                    qty,
                    maker_left,
                    ..
                } = e.kind
                {
                    let o = replica.order(maker);
                    prop_assert_eq!(
                        o.map(|o| (o.account, o.qty.0 - qty.0)),
                        Some((maker_account, maker_left.0)),
                        "{:?}",
                        e
                    );
                }
                // A modify names the order's side and its price and quantity before.
                if let EventKind::Modified {
                    order_id,
                    side,
                    old_price,
                    old_qty,
                    ..
                } = e.kind
                {
                    let o = replica.order(order_id);
                    prop_assert_eq!(
                        o.map(|o| (o.side, o.price, o.qty)),
                        Some((side, old_price, old_qty)),
                        "{:?}",
                        e
                    );
                }
                replica.apply(e);
            }
            prop_assert_eq!(
                replica.ledger().balances(),
                fast.balances(),
                "balances after command {} = {:?}",
                i,
                c
            );
            // Cancels and expiries carry the order's side and price; the matcher reads one
            // live order by id, in agreement with the replica.
            for e in &events {
                if let EventKind::Cancelled { order_id, .. } | EventKind::Expired { order_id, .. } =
                    e.kind
                {
                    prop_assert!(fast.order(order_id).is_none());
                }
            }
            for inst in INSTRUMENTS {
                for o in fast.resting_orders(inst) {
                    let got = fast
                        .order(o.order_id)
                        .expect("a resting order is found by id");
                    prop_assert_eq!(
                        (got.side, got.price, got.qty, got.account),
                        (o.side, o.price, o.qty, o.account)
                    );
                    prop_assert_eq!(replica.order(o.order_id), Some(got));
                }
            }
            for inst in INSTRUMENTS {
                prop_assert_eq!(
                    replica.resting_orders(inst),
                    fast.resting_orders(inst),
                    "after command {} = {:?}",
                    i,
                    c
                );
                prop_assert_eq!(replica.is_halted(inst), fast.is_halted(inst));
                prop_assert_eq!(
                    replica.depth(inst, Side::Buy).collect::<Vec<_>>(),
                    fast.depth(inst, Side::Buy).collect::<Vec<_>>()
                );
                prop_assert_eq!(
                    replica.depth(inst, Side::Sell).collect::<Vec<_>>(),
                    fast.depth(inst, Side::Sell).collect::<Vec<_>>()
                );
            }
            for a in 1..=4 {
                prop_assert_eq!(
                    replica.blocked_accounts().any(|x| x == AccountId(a)),
                    fast.is_blocked(AccountId(a))
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_same_commands_give_the_same_events(raw in raw_stream(200)) {
        let cmds = decode(&raw);
        let run = || {
            let mut m = Matcher::default();
            let mut out = Vec::new();
            for (i, c) in cmds.iter().enumerate() {
                m.process(Sequence(i as u64 + 1), c, &mut out);
            }
            out
        };
        prop_assert_eq!(run(), run());
    }

    #[test]
    fn every_command_is_answered_and_last_events_are_marked(raw in raw_stream(200)) {
        let cmds = decode(&raw);
        let mut m = Matcher::default();
        let mut out = Vec::new();
        for (i, c) in cmds.iter().enumerate() {
            out.clear();
            let seq = Sequence(i as u64 + 1);
            m.process(seq, c, &mut out);
            prop_assert!(out.iter().all(|e| e.cmd_seq() == seq));
            let lasts = out.iter().filter(|e| e.is_last_of_command()).count();
            prop_assert_eq!(lasts, usize::from(!out.is_empty()));
            if let Some(e) = out.last() {
                prop_assert!(e.is_last_of_command());
            }
            let answers_needed = !matches!(c.kind, CommandKind::Tick);
            if answers_needed {
                prop_assert!(!out.is_empty() || matches!(c.kind, CommandKind::MassCancel { .. }), "{:?}", c);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn events_round_trip_through_the_codec(raw in raw_stream(200)) {
        let cmds = decode(&raw);
        let mut m = Matcher::default();
        let mut out = Vec::new();
        for (i, c) in cmds.iter().enumerate() {
            m.process(Sequence(i as u64 + 1), c, &mut out);
        }
        let mut buf = [0u8; ringex_engine::codec::EVENT_BYTES];
        for e in &out {
            e.encode(&mut buf);
            prop_assert_eq!(Event::decode(&buf), Some(*e));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A matcher restored from the replica's state at any command boundary goes on exactly
    /// as the original does.
    #[test]
    fn a_matcher_restored_from_state_continues_identically(raw in raw_stream(300), cut in 0usize..300) {
        restored_continues_identically(&decode(&raw), cut, IdUniqueness::Ever)?;
    }

    /// The same with interleaved, random and falling ids (the used-id ranges travel through
    /// the state's bytes and come back as runs).
    #[test]
    fn restored_with_other_id_patterns_continues_identically(raw in raw_stream(300), cut in 0usize..300, shape in 1u8..5) {
        restored_continues_identically(&reshape_ids(&decode(&raw), shape), cut, IdUniqueness::Ever)?;
    }

    /// Restored with uniqueness among live orders only (the state's used ids are dropped).
    #[test]
    fn restored_with_live_uniqueness_continues_identically(raw in raw_stream(300), cut in 0usize..300, shape in 0u8..5) {
        restored_continues_identically(&reshape_ids(&decode(&raw), shape), cut, IdUniqueness::Live)?;
    }

    #[test]
    fn a_funded_matcher_restored_from_state_continues_identically(raw in raw_stream(300), cut in 0usize..300) {
        restored_continues_identically(&decode_funded(&raw), cut, IdUniqueness::Ever)?;
    }
}

/// Cuts the stream at `cut`, restores a matcher and a replica from the replica's state
/// (through its bytes), and runs the rest on both: the same events, books and balances.
fn restored_continues_identically(
    cmds: &[Command],
    cut: usize,
    rule: IdUniqueness,
) -> Result<(), TestCaseError> {
    {
        let mut cut = cut.min(cmds.len());
        // A state is taken after a command with events: never between an order's terms
        // (which have none) and the order.
        if cut > 0 && matches!(cmds[cut - 1].kind, CommandKind::OrderTerms(_)) {
            cut -= 1;
        }
        let mut a = Matcher::default().with_id_uniqueness(rule);
        let mut replica = BookReplica::new();
        let mut out = Vec::new();
        for (i, c) in cmds[..cut].iter().enumerate() {
            out.clear();
            a.process(Sequence(i as u64 + 1), c, &mut out);
            out.iter().for_each(|e| replica.apply(e));
        }
        replica.set_clock(a.clock().0);
        let state = replica.state(cut as u64, 0);
        prop_assert_eq!(state.clock, a.clock().0);
        let bytes = state.to_bytes();
        let state = ringex_engine::state::EngineState::from_bytes(&bytes).expect("decodes");
        let mut b =
            Matcher::from_state(&state, MatcherCapacity::default()).with_id_uniqueness(rule);
        let mut r2 = BookReplica::from_state(&state);
        let (mut ea, mut eb) = (Vec::new(), Vec::new());
        for (i, c) in cmds[cut..].iter().enumerate() {
            let seq = Sequence((cut + i) as u64 + 1);
            a.process(seq, c, &mut ea);
            b.process(seq, c, &mut eb);
        }
        prop_assert_eq!(&ea, &eb);
        eb.iter().for_each(|e| r2.apply(e));
        for inst in INSTRUMENTS {
            prop_assert_eq!(a.resting_orders(inst), b.resting_orders(inst));
            prop_assert_eq!(r2.resting_orders(inst), b.resting_orders(inst));
        }
        prop_assert_eq!(a.balances(), b.balances());
        prop_assert_eq!(r2.ledger().balances(), b.balances());
    }
    Ok(())
}

/// The funded streams reach every money rule: each funded reject code, the market buy that
/// runs out of funds, rebates and fees, deposits and withdrawals.
#[test]
fn funded_streams_exercise_every_money_rule() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut seen = std::collections::BTreeMap::<&'static str, usize>::new();
    for _ in 0..200 {
        let raw = raw_stream(300)
            .new_tree(&mut runner)
            .expect("stream")
            .current();
        let mut m = Matcher::default();
        let mut out = Vec::new();
        for (i, c) in decode_funded(&raw).iter().enumerate() {
            m.process(Sequence(i as u64 + 1), c, &mut out);
        }
        for e in &out {
            let key = match e.kind {
                EventKind::Rejected { code, .. } => code.as_str(),
                EventKind::Cancelled {
                    reason: CancelReason::InsufficientFunds,
                    ..
                } => "market buy out of funds",
                EventKind::FillFees {
                    seller_fee,
                    buyer_fee,
                    ..
                } if seller_fee.get() < 0 || buyer_fee.get() < 0 => "rebate",
                EventKind::FillFees { .. } => "fees",
                EventKind::Deposited { .. } => "deposited",
                EventKind::Withdrawn { .. } => "withdrawn",
                _ => continue,
            };
            *seen.entry(key).or_default() += 1;
        }
    }
    for key in [
        "insufficient_funds",
        "max_qty",
        "price_band",
        "unknown_asset",
        "bad_amount",
        "market buy out of funds",
        "rebate",
        "fees",
        "deposited",
        "withdrawn",
    ] {
        assert!(
            seen.get(key).copied().unwrap_or(0) > 0,
            "{key} never happened: {seen:?}"
        );
    }
}

/// GTD orders cancelled long before their expiry do not pile up: the expiry heap stays
/// proportional to the live orders.
#[test]
fn cancelled_gtd_orders_do_not_accumulate() {
    let mut m = Matcher::default();
    let mut out = Vec::new();
    let mut seq = 0u64;
    let mut run = |m: &mut Matcher, k: CommandKind| {
        seq += 1;
        out.clear();
        m.process(Sequence(seq), &Command::new(Timestamp(seq), k), &mut out);
    };
    run(&mut m, CommandKind::AddInstrument(InstrumentId(0).into()));
    for id in 1..=200_000u64 {
        let mut o = NewOrder::limit(
            InstrumentId(0),
            AccountId(1),
            OrderId(id),
            Side::Buy,
            Price(10),
            Qty(1),
        );
        o.tif = TimeInForce::Gtd;
        o.expiry = Timestamp(u64::MAX);
        run(&mut m, CommandKind::NewOrder(o));
        run(
            &mut m,
            CommandKind::Cancel {
                instrument: InstrumentId(0),
                account: AccountId(1),
                order_id: OrderId(id),
            },
        );
    }
    assert_eq!(m.resting_count(), 0);
    assert!(
        m.expiry_entries() <= MatcherCapacity::default().gtd + 1,
        "{}",
        m.expiry_entries()
    );
}

/// The two id rules on the same commands: under `Ever` a cancelled order's id is refused
/// for good; under `Live` it is taken again once its order is gone, never while it is live
/// (resting, or a pending stop), and nothing is kept for dead ids.
#[test]
fn id_rules_refuse_what_they_promise() {
    let new = |id: u64, side: Side, price: i64| {
        CommandKind::NewOrder(NewOrder::limit(
            InstrumentId(0),
            AccountId(1),
            OrderId(id),
            side,
            Price(price),
            Qty(1),
        ))
    };
    let cancel = |id: u64| CommandKind::Cancel {
        instrument: InstrumentId(0),
        account: AccountId(1),
        order_id: OrderId(id),
    };
    let stop = CommandKind::OrderTerms(OrderTerms {
        instrument: InstrumentId(0),
        order_id: OrderId(2),
        display: Qty(0),
        stop: Some(Price(50)),
    });
    let script = [
        CommandKind::AddInstrument(InstrumentId(0).into()),
        new(1, Side::Buy, 10),
        new(1, Side::Buy, 11), // 1 is live: refused under both rules
        cancel(1),
        new(1, Side::Buy, 12), // 1 is dead: refused under `Ever` only
        stop,
        new(2, Side::Buy, 60), // a pending buy stop at 50
        new(2, Side::Buy, 13), // 2 is a pending stop: refused under both
    ];
    // Whether the dead id 1 is refused.
    for (rule, dead) in [(IdUniqueness::Ever, true), (IdUniqueness::Live, false)] {
        let mut m = Matcher::default().with_id_uniqueness(rule);
        let mut naive = NaiveMatcher::new().with_id_uniqueness(rule);
        let mut dup = Vec::new();
        for (i, k) in script.iter().enumerate() {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let c = Command::new(Timestamp(i as u64), *k);
            m.process(Sequence(i as u64 + 1), &c, &mut a);
            naive.process(Sequence(i as u64 + 1), &c, &mut b);
            assert_eq!(a, b, "{rule:?}, command {i}");
            if matches!(k, CommandKind::NewOrder(_)) {
                dup.push(a.iter().any(|e| {
                    matches!(
                        e.kind,
                        EventKind::Rejected {
                            code: RejectCode::DuplicateOrderId,
                            ..
                        }
                    )
                }));
            }
        }
        assert_eq!(dup, [false, true, dead, false, true], "{rule:?}");
        assert_eq!(m.pending_stop_count(), 1);
    }
    // Under `Live`, 100,000 orders with ids from any pattern leave nothing behind them.
    let mut m = Matcher::default().with_id_uniqueness(IdUniqueness::Live);
    let mut out = Vec::new();
    m.process(
        Sequence(1),
        &Command::new(
            Timestamp(0),
            CommandKind::AddInstrument(InstrumentId(0).into()),
        ),
        &mut out,
    );
    for k in 0..100_000u64 {
        let id = k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for (j, kind) in [new(id, Side::Buy, 10), cancel(id)].into_iter().enumerate() {
            out.clear();
            m.process(
                Sequence(2 + 2 * k + j as u64),
                &Command::new(Timestamp(1), kind),
                &mut out,
            );
        }
    }
    assert_eq!(m.used_id_entries(), 0);
    assert_eq!(m.resting_count(), 0);
}

/// A live set large enough that the live-id table doubles several times while commands
/// come (8,192 slots at first; ~12,000 live orders at the peak), with sparse 64-bit ids,
/// cancels and modifies of random live orders, crossing orders and cancels of dead and
/// unknown ids: the fast matcher and the naive reference give the same events and books,
/// and so does a matcher restored from the replica's state in the middle.
#[test]
fn fast_and_naive_agree_while_the_live_id_table_doubles() {
    let mut rng = workload::SplitMix64::new(11);
    let inst = INSTRUMENTS[0];
    let mut cmds = vec![Command::new(
        Timestamp(0),
        CommandKind::AddInstrument(inst.into()),
    )];
    let mut live: Vec<(u64, u64)> = Vec::new();
    let mut dead: Vec<u64> = Vec::new();
    for t in 1..40_000u64 {
        let account = AccountId(1 + rng.below(50));
        let kind = match rng.below(10) {
            // Growing the book for the first 20,000 commands, shrinking it after.
            k if (t < 20_000 && k < 8) || k < 3 => {
                let id = rng.next_u64() | 1 << 63;
                let buy = rng.below(2) == 0;
                // Mostly resting (bids 900–999, asks 1001–1100), now and then crossing.
                let px = match (buy, rng.below(50)) {
                    (true, 0) => 1_050,
                    (true, _) => 900 + rng.below(100) as i64,
                    (false, 0) => 950,
                    (false, _) => 1_001 + rng.below(100) as i64,
                };
                let side = if buy { Side::Buy } else { Side::Sell };
                live.push((id, account.0));
                CommandKind::NewOrder(NewOrder::limit(
                    inst,
                    account,
                    OrderId(id),
                    side,
                    Price(px),
                    Qty(1 + rng.below(20)),
                ))
            }
            8 if !live.is_empty() => {
                let (id, acct) = live[rng.below(live.len() as u64) as usize];
                CommandKind::Modify {
                    instrument: inst,
                    account: AccountId(acct),
                    order_id: OrderId(id),
                    price: Price(if id % 2 == 0 { 950 } else { 1_050 } + rng.below(10) as i64),
                    qty: Qty(1 + rng.below(20)),
                }
            }
            _ if !live.is_empty() => {
                let (id, acct) = live.swap_remove(rng.below(live.len() as u64) as usize);
                dead.push(id);
                // Now and then a cancel of an id that is gone, or was never used.
                let id = match rng.below(20) {
                    0 => dead[rng.below(dead.len() as u64) as usize],
                    1 => rng.next_u64(),
                    _ => id,
                };
                CommandKind::Cancel {
                    instrument: inst,
                    account: AccountId(acct),
                    order_id: OrderId(id),
                }
            }
            _ => CommandKind::Tick,
        };
        cmds.push(Command::new(Timestamp(t), kind));
    }
    // The live set did pass three doublings of the table (3/8 of 8,192, 16,384, 32,768).
    let mut m = Matcher::default();
    let (mut out, mut peak) = (Vec::new(), 0);
    for (i, c) in cmds.iter().enumerate() {
        out.clear();
        m.process(Sequence(i as u64 + 1), c, &mut out);
        peak = peak.max(m.resting_count());
    }
    assert!(peak > 12_288, "peak live orders {peak}");
    fast_vs_naive(&cmds, Matcher::default()).expect("fast = naive");
    restored_continues_identically(&cmds, 25_000, IdUniqueness::Ever)
        .expect("restored = uninterrupted");
}

/// The policy streams reach every new rule: pro-rata levels shared among several makers,
/// TOP orders filled first, icebergs refilled and met again in one command, stops elected,
/// cascades, and each new reject code.
#[test]
fn policy_streams_exercise_every_new_rule() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut shared, mut refills, mut triggered, mut cascades) = (0, 0, 0, 0);
    let mut codes = std::collections::BTreeSet::new();
    for k in 0..200u8 {
        let raw = raw_stream(300).new_tree(&mut runner).unwrap().current();
        let (p, m) = policy_of(k);
        let cmds = decode_policy(&raw, k % 2 == 0, p, m);
        let mut fast = Matcher::default();
        let mut out = Vec::new();
        for (i, c) in cmds.iter().enumerate() {
            out.clear();
            fast.process(Sequence(i as u64 + 1), c, &mut out);
            let mut makers = std::collections::BTreeMap::new();
            let mut n_trig = 0;
            let mut pr_fills = 0;
            for e in &out {
                match e.kind {
                    EventKind::Fill {
                        instrument, maker, ..
                    } => {
                        *makers.entry(maker).or_insert(0) += 1;
                        if instrument == INSTRUMENTS[0] {
                            pr_fills += 1;
                        }
                    }
                    EventKind::Triggered { .. } => n_trig += 1,
                    EventKind::Rejected { code, .. } => {
                        codes.insert(code.as_str());
                    }
                    _ => {}
                }
            }
            shared += (pr_fills >= 3) as u32;
            refills += makers.values().any(|&n| n >= 2) as u32;
            triggered += n_trig;
            cascades += (n_trig >= 2) as u32;
        }
    }
    assert!(shared > 10, "pro-rata levels shared: {shared}");
    assert!(refills > 10, "icebergs met twice in a command: {refills}");
    assert!(triggered > 100, "stops triggered: {triggered}");
    assert!(cascades > 10, "commands electing several stops: {cascades}");
    for c in [
        "invalid_display",
        "invalid_stop",
        "bad_price",
        "stop_would_trigger",
        "stop_pending",
    ] {
        assert!(codes.contains(c), "{c} never happened: {codes:?}");
    }
}
