//! The history store (SQLite): exact rows for a small scenario, agreement with the matcher's
//! books and events on a generated workload, exactly-once application across crashes, and
//! the consumer inside the pipeline.

mod common;

use common::events_of;
use ringex_consumers::history::sqlite::SqliteStore;
use ringex_consumers::history::{
    rebuild_books, reconcile, History, HistoryConfig, HistoryQuery, OrderRow, OrderStatus,
};
use ringex_engine::pipeline::ConsumerOptions;
use ringex_engine::workload::ExchangeCoreWorkload;
use ringex_engine::*;
use std::path::Path;

fn store_at(p: &Path) -> SqliteStore {
    SqliteStore::open(p).expect("open store")
}

fn cfg(min_events: u64) -> HistoryConfig {
    HistoryConfig {
        min_events,
        ..HistoryConfig::default()
    }
}

fn build(path: &Path, events: &[(u64, Event, u64)], min_events: u64) {
    let mut h = History::new(store_at(path), cfg(min_events)).expect("history");
    h.catch_up(events.iter().copied()).expect("catch up");
}

fn dump(path: &Path) -> (Vec<OrderRow>, usize, usize, String) {
    let s = store_at(path);
    let orders = s.all_orders().expect("orders");
    let trades = s.all_trades().expect("trades");
    let transfers = s.all_transfers().expect("transfers");
    let changes = s.all_balance_changes().expect("changes");
    (
        orders,
        trades.len(),
        transfers.len(),
        format!("{trades:?}{transfers:?}{changes:?}"),
    )
}

fn limit(id: u64, account: u64, side: Side, price: i64, qty: u64) -> CommandKind {
    CommandKind::NewOrder(NewOrder::limit(
        InstrumentId(1),
        AccountId(account),
        OrderId(id),
        side,
        Price(price),
        Qty(qty),
    ))
}

#[test]
fn a_small_scenario_gives_exact_rows_and_queries() {
    let mut gtd = NewOrder::limit(
        InstrumentId(1),
        AccountId(9),
        OrderId(5),
        Side::Buy,
        Price(90),
        Qty(1),
    );
    gtd.tif = TimeInForce::Gtd;
    gtd.expiry = Timestamp(700);
    let cmds: Vec<Command> = [
        (
            100,
            CommandKind::AddInstrument(InstrumentDef::unfunded(InstrumentId(1))),
        ),
        (200, limit(1, 7, Side::Sell, 101, 10)),
        (300, limit(2, 8, Side::Sell, 102, 5)),
        // Takes all of 1 and 2 of 2 at their prices.
        (400, limit(3, 9, Side::Buy, 102, 12)),
        (
            500,
            CommandKind::Modify {
                instrument: InstrumentId(1),
                account: AccountId(8),
                order_id: OrderId(2),
                price: Price(103),
                qty: Qty(3),
            },
        ),
        (550, CommandKind::NewOrder(gtd)),
        // Duplicate id: rejected, order 1's row stays as it is.
        (600, limit(1, 7, Side::Sell, 101, 1)),
        (
            650,
            CommandKind::Cancel {
                instrument: InstrumentId(1),
                account: AccountId(7),
                order_id: OrderId(2),
            },
        ),
        (800, CommandKind::Tick),
        (900, limit(6, 7, Side::Buy, 95, 4)),
    ]
    .into_iter()
    .map(|(t, k)| Command::new(Timestamp(t), k))
    .collect();
    let (m, events) = events_of(&cmds);
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("h.db");
    build(&db, &events, 3);
    let mut s = store_at(&db);

    let o1 = s.order(1).expect("query").expect("order 1");
    assert_eq!(
        (
            o1.status,
            o1.open_qty,
            o1.filled_qty,
            o1.orig_qty,
            o1.account
        ),
        (OrderStatus::Filled, 0, 10, 10, 7)
    );
    assert_eq!((o1.created_ts, o1.updated_ts), (200, 400));
    let o2 = s.order(2).expect("query").expect("order 2");
    assert_eq!(
        (o2.status, o2.open_qty, o2.filled_qty, o2.price),
        (OrderStatus::Active, 3, 2, 103),
        "modified to 103 x 3; the cancel by account 7 was refused (not the owner)"
    );
    assert!(
        o2.priority_seq > o2.accept_seq,
        "a new price loses priority"
    );
    let o3 = s.order(3).expect("query").expect("order 3");
    assert_eq!(
        (o3.status, o3.open_qty, o3.filled_qty, o3.price, o3.side),
        (OrderStatus::Filled, 0, 12, 102, Side::Buy)
    );
    let o5 = s.order(5).expect("query").expect("order 5");
    assert_eq!(
        (o5.status, o5.tif, o5.expiry, o5.updated_ts),
        (OrderStatus::Expired, TimeInForce::Gtd, 700, 800)
    );
    let o6 = s.order(6).expect("query").expect("order 6");
    assert_eq!((o6.status, o6.open_qty), (OrderStatus::Active, 4));
    assert!(s.order(99).expect("query").is_none());

    // Trades: 3 took 10 of 1 at 101, then 2 of 2 at 102.
    let t = s.trades(9, 0).expect("trades");
    assert_eq!(
        t.iter()
            .map(|t| (
                t.taker_order,
                t.maker_order,
                t.maker_account,
                t.price,
                t.qty,
                t.ts
            ))
            .collect::<Vec<_>>(),
        vec![(3, 1, 7, 101, 10, 400), (3, 2, 8, 102, 2, 400)]
    );
    assert_eq!(s.trades(7, 0).expect("trades").len(), 1);
    assert_eq!(s.trades(9, t[0].seq).expect("trades").len(), 1, "since");
    assert!(s.trades(8, t[1].seq).expect("trades").is_empty());

    // Open orders and the book's order.
    let open: Vec<u64> = s
        .open_orders(7, None)
        .expect("open")
        .iter()
        .map(|r| r.order_id)
        .collect();
    assert_eq!(open, vec![6]);
    assert_eq!(
        s.open_orders(8, Some(1)).expect("open")[0].order_id,
        2,
        "by instrument"
    );
    assert!(s.open_orders(8, Some(2)).expect("open").is_empty());
    let book: Vec<u64> = s
        .active_orders(1)
        .expect("active")
        .iter()
        .map(|r| r.order_id)
        .collect();
    assert_eq!(
        book,
        m.resting_orders(InstrumentId(1))
            .iter()
            .map(|r| r.order_id.0)
            .collect::<Vec<_>>()
    );
    assert!(reconcile(&mut s, &replica_of(&events))
        .expect("reconcile")
        .is_empty());
}

fn replica_of(events: &[(u64, Event, u64)]) -> BookReplica {
    let mut r = BookReplica::new();
    for (_, e, _) in events {
        r.apply(e);
    }
    r
}

#[test]
fn the_store_agrees_with_the_matcher_on_a_funded_workload() {
    let w = ExchangeCoreWorkload {
        funded: true,
        accounts: 50,
        target_orders: 200,
        ..ExchangeCoreWorkload::default()
    }
    .generate(30_000);
    let cmds: Vec<Command> = w.setup.iter().chain(&w.commands).copied().collect();
    let (m, events) = events_of(&cmds);
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("h.db");
    build(&db, &events, 500);
    let mut s = store_at(&db);

    // The book, from the store's active orders, equals the matcher's.
    assert!(reconcile(&mut s, &replica_of(&events))
        .expect("reconcile")
        .is_empty());
    let rebuilt = rebuild_books(&mut s).expect("rebuild");
    let i = ringex_engine::workload::EXCHANGE_CORE_INSTRUMENT;
    assert_eq!(rebuilt.resting_orders(i), m.resting_orders(i));
    assert!(!m.resting_orders(i).is_empty());
    // Every fill is a trade (fees on each: funded), every deposit a transfer.
    let fills = events
        .iter()
        .filter(|(_, e, _)| matches!(e.kind, EventKind::Fill { .. }))
        .count();
    let deposits = events
        .iter()
        .filter(|(_, e, _)| {
            matches!(
                e.kind,
                EventKind::Deposited { .. } | EventKind::Withdrawn { .. }
            )
        })
        .count();
    let trades = s.all_trades().expect("trades");
    assert_eq!(trades.len(), fills);
    assert!(fills > 1000 && trades.iter().all(|t| t.fees.is_some()));
    assert_eq!(s.all_transfers().expect("transfers").len(), deposits);
    // The balance changes add up to every account's total in every asset, exactly.
    let mut totals: std::collections::BTreeMap<(u64, u16), i128> = Default::default();
    for c in s.all_balance_changes().expect("changes") {
        *totals.entry((c.account, c.asset)).or_default() += c.delta;
    }
    totals.retain(|_, v| *v != 0);
    let want: std::collections::BTreeMap<(u64, u16), i128> = m
        .balances()
        .into_iter()
        .filter(|(_, _, b)| b.total != 0)
        .map(|(a, asset, b)| ((a.0, asset.0), b.total))
        .collect();
    assert_eq!(totals, want, "the sum of the changes is the balance");
    assert!(want.len() > 40);
    // Each order's filled quantity is the sum of its trades; open + filled = original for
    // active and filled orders.
    let mut filled = std::collections::HashMap::new();
    for t in &trades {
        *filled.entry(t.taker_order).or_insert(0u64) += t.qty;
        *filled.entry(t.maker_order).or_insert(0u64) += t.qty;
    }
    let orders = s.all_orders().expect("orders");
    let accepted = events
        .iter()
        .filter(|(_, e, _)| matches!(e.kind, EventKind::Accepted { .. }))
        .count();
    assert_eq!(
        orders
            .iter()
            .filter(|o| o.status != OrderStatus::Rejected)
            .count(),
        accepted
    );
    for o in &orders {
        assert_eq!(o.filled_qty, filled.get(&o.order_id).copied().unwrap_or(0));
        if o.status == OrderStatus::Filled {
            assert_eq!(o.open_qty, 0);
        }
        if o.status == OrderStatus::Active {
            let live = m.order(OrderId(o.order_id)).expect("live in the matcher");
            assert_eq!((live.qty.0, live.price.0), (o.open_qty, o.price));
        }
    }
    let rejected = orders
        .iter()
        .filter(|o| o.status == OrderStatus::Rejected)
        .count();
    assert!(rejected > 0, "funds rejects are recorded");
}

/// kill -9 after any commit: reopened, the consumer replays the journal's events after the
/// store's sequence and the store equals one built in a single run, exactly once.
#[test]
fn a_crash_after_any_commit_then_catch_up_applies_every_event_exactly_once() {
    let w = ExchangeCoreWorkload {
        funded: true,
        accounts: 20,
        target_orders: 100,
        ..ExchangeCoreWorkload::default()
    }
    .generate(8_000);
    let cmds: Vec<Command> = w.setup.iter().chain(&w.commands).copied().collect();
    let (_, events) = events_of(&cmds);
    let tmp = tempfile::tempdir().expect("tmp");
    let whole = tmp.path().join("whole.db");
    build(&whole, &events, 1 << 40);
    let want = dump(&whole);
    let mut rng = 12345u64;
    for trial in 0..6 {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let cut = 1 + (rng >> 33) as usize % (events.len() - 1);
        let db = tmp.path().join(format!("t{trial}.db"));
        {
            let mut h = History::new(store_at(&db), cfg(97)).expect("history");
            h.catch_up(events[..cut].iter().copied()).expect("part");
            // What was applied after the last commit is lost with the process: dropping the
            // consumer does not commit (only `on_shutdown` does).
            drop(h);
        }
        let mut h = History::new(store_at(&db), cfg(1 << 40)).expect("reopen");
        assert!(h.applied() <= cut as u64);
        h.catch_up(events.iter().copied()).expect("catch up");
        // Twice changes nothing.
        h.catch_up(events.iter().copied()).expect("again");
        drop(h);
        let got = dump(&db);
        if let Some((a, b)) = got.0.iter().zip(&want.0).find(|(a, b)| a != b) {
            panic!("trial {trial}, cut at event {cut}: order rows differ:\n{a:?}\n{b:?}");
        }
        assert_eq!(got.0.len(), want.0.len(), "trial {trial}: order count");
        assert_eq!(
            (got.1, got.2),
            (want.1, want.2),
            "trial {trial}: trades, transfers"
        );
        assert!(
            got.3 == want.3,
            "trial {trial}: trade or transfer rows differ"
        );
    }
}

/// Rows written in one commit equal rows written over many: an order's row is inserted
/// once and then updated in place (its changing columns only) across commits, on the flow
/// with modifies, iceberg peaks used up and refilled, and stops pending then elected.
#[test]
fn rows_updated_across_commits_equal_rows_written_at_once() {
    let w = ringex_engine::policy_workload::PolicyWorkload::default().generate(20_000);
    let cmds: Vec<Command> = w.setup.iter().chain(&w.commands).copied().collect();
    let (_, events) = events_of(&cmds);
    let tmp = tempfile::tempdir().expect("tmp");
    let (whole, many) = (tmp.path().join("whole.db"), tmp.path().join("many.db"));
    build(&whole, &events, 1 << 40);
    build(&many, &events, 53);
    let (a, b) = (dump(&whole), dump(&many));
    assert!(
        a.0.iter().any(|o| o.reason.as_deref() == Some("triggered")),
        "the flow elects stops"
    );
    assert!(a
        .0
        .iter()
        .any(|o| o.display != 0 && o.filled_qty > o.display));
    assert!(a.0.iter().any(|o| o.status == OrderStatus::Pending));
    assert_eq!(a.0.len(), b.0.len());
    if let Some((x, y)) = a.0.iter().zip(&b.0).find(|(x, y)| x != y) {
        panic!("order rows differ:\n{x:?}\n{y:?}");
    }
    assert!(a.3 == b.3, "trade rows differ");
}

struct Collect(std::sync::Arc<std::sync::Mutex<Vec<(u64, Event)>>>);

impl Consumer for Collect {
    fn name(&self) -> &str {
        "collect"
    }
    fn on_event(&mut self, e: &Event, s: Sequence, _: bool) {
        self.0.lock().expect("lock").push((s.0, *e));
    }
}

/// Inside the pipeline: rows stamped with the engine clock, the store equal to the
/// matcher's books at the end.
#[test]
fn the_consumer_in_the_pipeline() {
    let w = ExchangeCoreWorkload::default().generate(20_000);
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("h.db");
    let h = History::new(store_at(&db), HistoryConfig::default())
        .expect("history")
        .with_symbols([(InstrumentId(0), "BTCUSD".to_string())]);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut b = Pipeline::builder();
    b.add_consumer(h, ConsumerOptions::default());
    b.add_consumer(
        Collect(std::sync::Arc::clone(&seen)),
        ConsumerOptions::default(),
    );
    let p = b.start().expect("start");
    let mut g = p.gateway();
    for c in w.setup.iter().chain(&w.commands) {
        g.submit_at(*c).expect("submit");
    }
    drop(g);
    let report = p.shutdown();
    let m = report.matcher.expect("matcher");
    let mut s = store_at(&db);
    let events: Vec<(u64, Event, u64)> = seen
        .lock()
        .expect("lock")
        .iter()
        .map(|&(q, e)| (q, e, 0))
        .collect();
    assert!(reconcile(&mut s, &replica_of(&events))
        .expect("reconcile")
        .is_empty());
    let inst = s.instrument_id("BTCUSD").expect("symbol").expect("known");
    let active = s.active_orders(inst).expect("active");
    assert_eq!(active.len(), m.resting_count());
    // Workload times are 1, 2, 3, ... per command: every row's times are real command times.
    let last_ts = w.commands.last().expect("commands").ts.0;
    assert!(active
        .iter()
        .all(|r| r.created_ts >= 1 && r.created_ts <= r.updated_ts && r.updated_ts <= last_ts));
}

/// The window between commits: `max_delay` while commits are quick, four times the last
/// commit's duration once the store is behind, never past `max_window`.
#[test]
fn the_commit_window_follows_the_load() {
    use std::time::Duration;
    let c = HistoryConfig::default();
    let ms = Duration::from_millis;
    assert_eq!(c.window(Duration::ZERO), c.max_delay);
    assert_eq!(c.window(ms(1)), ms(10));
    assert_eq!(c.window(ms(5)), ms(20));
    assert_eq!(c.window(ms(20)), ms(80));
    assert_eq!(c.window(ms(500)), c.max_window);
}
