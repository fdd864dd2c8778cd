//! Where the history is kept ([`HistoryStore`]) and how it is read ([`HistoryQuery`]), with
//! what is built on the queries alone: the books rebuilt from the store, and its
//! reconciliation with the journal's books.

use super::*;

/// A place to keep the history: SQLite ([`sqlite::SqliteStore`]) or PostgreSQL.
pub trait HistoryStore: Send + 'static {
    /// The last event sequence applied (0: none).
    fn last_seq(&mut self) -> Result<u64, HistoryError>;
    /// Every active order, for carrying on after a restart.
    fn active_rows(&mut self) -> Result<Vec<OrderRow>, HistoryError>;
    /// The funded instruments seen so far, for carrying on after a restart.
    fn funded(&mut self) -> Result<Vec<FundedRow>, HistoryError>;
    /// Writes one batch in one transaction, with `last_seq`.
    fn write(&mut self, batch: &Batch) -> Result<(), HistoryError>;
}

/// Read access to a store: the queries of operators and clients.
pub trait HistoryQuery {
    /// One order by id.
    fn order(&mut self, id: u64) -> Result<Option<OrderRow>, HistoryError>;
    /// An account's open orders, optionally on one instrument, in time priority.
    fn open_orders(
        &mut self,
        account: u64,
        instrument: Option<u32>,
    ) -> Result<Vec<OrderRow>, HistoryError>;
    /// An account's trades (as taker or maker) after event sequence `since`, in order.
    fn trades(&mut self, account: u64, since: u64) -> Result<Vec<TradeRow>, HistoryError> {
        self.trades_page(account, since, usize::MAX)
    }
    /// At most `limit` of an account's trades after event sequence `since`, in order (one
    /// page: the next starts after the last one's `seq`).
    fn trades_page(
        &mut self,
        account: u64,
        since: u64,
        limit: usize,
    ) -> Result<Vec<TradeRow>, HistoryError>;
    /// The active orders of an instrument: bids best first, then asks best first, each
    /// price in time priority (the book's order).
    fn active_orders(&mut self, instrument: u32) -> Result<Vec<OrderRow>, HistoryError>;
    /// The instrument id of a symbol the store knows.
    fn instrument_id(&mut self, symbol: &str) -> Result<Option<u32>, HistoryError>;
    /// The symbol of an instrument, when the store knows it.
    fn symbol_name(&mut self, instrument: u32) -> Result<Option<String>, HistoryError>;
    /// Every instrument the store has seen an order on, or a name for, ascending.
    fn instruments(&mut self) -> Result<Vec<u32>, HistoryError>;
}

/// The books rebuilt from the store alone: each instrument's active orders re-inserted in
/// the book's order (price, then time priority), as the seed's recovery path does. Holds
/// the resting orders only (no balances, halts or used ids: recovery proper comes from the
/// journal; this is the store's independent view, for reconciliation).
pub fn rebuild_books<Q: HistoryQuery>(
    q: &mut Q,
) -> Result<ringex_engine::BookReplica, HistoryError> {
    let mut state = ringex_engine::state::EngineState::default();
    for inst in q.instruments()? {
        state.instruments.push((InstrumentId(inst), false));
        for r in q.active_orders(inst)? {
            let mut o = NewOrder::limit(
                InstrumentId(r.instrument),
                AccountId(r.account),
                OrderId(r.order_id),
                r.side,
                ringex_engine::Price(r.price),
                ringex_engine::Qty(r.open_qty),
            );
            o.tif = r.tif;
            o.expiry = ringex_engine::Timestamp(r.expiry);
            state.orders.push(ringex_engine::state::RestingState {
                order: o,
                accept_seq: r.priority_seq,
            });
        }
    }
    Ok(ringex_engine::BookReplica::from_state(&state))
}

/// Compares the store's active orders with `books` (the books recovered from the journal),
/// instrument by instrument: every order missing on either side, at another price, with
/// another open quantity, side or account, or out of time priority. Empty: they agree.
pub fn reconcile<Q: HistoryQuery>(
    q: &mut Q,
    books: &ringex_engine::BookReplica,
) -> Result<Vec<String>, HistoryError> {
    let mut diffs = Vec::new();
    let mut instruments: Vec<u32> = q.instruments()?;
    instruments.extend(books.instruments().map(|i| i.0));
    instruments.sort_unstable();
    instruments.dedup();
    for inst in instruments {
        let store = q.active_orders(inst)?;
        let book = books.resting_orders(InstrumentId(inst));
        let key = |side: Side, price: i64, id: u64, account: u64, qty: u64| {
            format!(
                "{} {price} order {id} account {account} open {qty}",
                side_str(side)
            )
        };
        let a: Vec<String> = store
            .iter()
            .map(|r| key(r.side, r.price, r.order_id, r.account, r.open_qty))
            .collect();
        let b: Vec<String> = book
            .iter()
            .map(|r| key(r.side, r.price.0, r.order_id.0, r.account.0, r.qty.0))
            .collect();
        if a == b {
            continue;
        }
        let (sa, sb): (FxHashSet<&String>, FxHashSet<&String>) =
            (a.iter().collect(), b.iter().collect());
        for x in &a {
            if !sb.contains(x) {
                diffs.push(format!(
                    "instrument {inst}: store has {x}, the book does not"
                ));
            }
        }
        for x in &b {
            if !sa.contains(x) {
                diffs.push(format!(
                    "instrument {inst}: the book has {x}, the store does not"
                ));
            }
        }
        if sa == sb {
            diffs.push(format!(
                "instrument {inst}: same orders in another time priority (store {a:?}, book {b:?})"
            ));
        }
    }
    Ok(diffs)
}
