//! Order history in a real database: a consumer that projects the event stream into a store
//! (SQLite embedded by default, PostgreSQL behind the `postgres` feature) that people and
//! programs can query: every order with its status, the trades, deposits and withdrawals.
//!
//! - **Rows**: `orders` (one row per order id: instrument, account, side, type, time in
//!   force, price, original / open / filled quantity, status, cancel or reject reason, the
//!   event sequence that accepted it, the sequence of its time priority, the last event
//!   sequence that touched it, created / updated engine times), `trades` (one per fill, with
//!   both accounts and the fees when the instrument is funded), `transfers` (deposits and
//!   withdrawals), `symbols` (instrument names when the run knows them) and `meta` (the
//!   last event sequence applied).
//! - **Writes**: the consumer keeps the rows of the live orders in memory (bounded by the
//!   live orders) and a set of the rows changed since the last commit; a commit writes each
//!   changed order once (a price move that touched an order ten times is one upsert), the
//!   new trades and transfers, and `meta.last_seq`, in **one transaction**. It commits at
//!   the end of a ring batch once at least [`HistoryConfig::min_events`] events are pending
//!   or [`HistoryConfig::max_delay`] has passed since the last commit, on a quiet pipeline
//!   from the timeout hook, and at shutdown.
//! - **Exactly once**: the last applied sequence is written in the same transaction as the
//!   rows, so after a crash the store is exactly the state after some sequence `S`; the
//!   consumer skips events up to `S` and a restart replays the journal after `S`
//!   ([`History::catch_up`]).
//! - **Time**: events carry no time; the engine clock after each command comes from the
//!   pipeline ([`ringex_engine::pipeline::ConsumerContext::clocks`]) and stamps the rows
//!   the command touched.

mod rows;
pub mod sqlite;

#[cfg(feature = "postgres")]
pub mod postgres;

use ringex_engine::pipeline::ClockReader;
use ringex_engine::{
    AccountId, CancelReason, Consumer, Event, EventKind, InstrumentId, NewOrder, OrderId,
    OrderType, RejectCode, Sequence, Side, TimeInForce,
};
use rustc_hash::{FxHashMap, FxHashSet};
use std::borrow::Cow;
use std::time::{Duration, Instant};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// SQLite said no.
    #[error("history store (SQLite): {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL said no.
    #[cfg(feature = "postgres")]
    #[error("history store (PostgreSQL): {0}")]
    Postgres(#[from] ::postgres::Error),
    /// The store holds something this version cannot read.
    #[error("history store: {0}")]
    Format(String),
}

/// An order's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    /// Resting in the book (or being handled).
    Active,
    /// Completely filled.
    Filled,
    /// Cancelled (by a user, a mass cancel, IOC/FOK/market rest, self-trade prevention or
    /// funds); it may have filled partly before.
    Cancelled,
    /// A GTD order that expired.
    Expired,
    /// Refused: nothing happened.
    Rejected,
}

impl OrderStatus {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Active => "active",
            OrderStatus::Filled => "filled",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Expired => "expired",
            OrderStatus::Rejected => "rejected",
        }
    }

    /// From the stored text.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => OrderStatus::Active,
            "filled" => OrderStatus::Filled,
            "cancelled" => OrderStatus::Cancelled,
            "expired" => OrderStatus::Expired,
            "rejected" => OrderStatus::Rejected,
            _ => return None,
        })
    }
}

/// A side as stored (`buy`, `sell`).
pub fn side_str(s: Side) -> &'static str {
    match s {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

pub(crate) fn parse_side(s: &str) -> Option<Side> {
    match s {
        "buy" => Some(Side::Buy),
        "sell" => Some(Side::Sell),
        _ => None,
    }
}

/// An order type as stored (`limit`, `market`).
pub fn type_str(t: OrderType) -> &'static str {
    match t {
        OrderType::Limit => "limit",
        OrderType::Market => "market",
    }
}

pub(crate) fn parse_type(s: &str) -> Option<OrderType> {
    match s {
        "limit" => Some(OrderType::Limit),
        "market" => Some(OrderType::Market),
        _ => None,
    }
}

/// A time in force as stored (`gtc`, `ioc`, `fok`, `gtd`).
pub fn tif_str(t: TimeInForce) -> &'static str {
    match t {
        TimeInForce::Gtc => "gtc",
        TimeInForce::Ioc => "ioc",
        TimeInForce::Fok => "fok",
        TimeInForce::Gtd => "gtd",
    }
}

pub(crate) fn parse_tif(s: &str) -> Option<TimeInForce> {
    Some(match s {
        "gtc" => TimeInForce::Gtc,
        "ioc" => TimeInForce::Ioc,
        "fok" => TimeInForce::Fok,
        "gtd" => TimeInForce::Gtd,
        _ => return None,
    })
}

/// One order as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderRow {
    /// The order id.
    pub order_id: u64,
    /// The instrument.
    pub instrument: u32,
    /// The owner.
    pub account: u64,
    /// Buy or sell.
    pub side: Side,
    /// Limit or market.
    pub order_type: OrderType,
    /// Time in force.
    pub tif: TimeInForce,
    /// The expiry of a GTD order (0 otherwise).
    pub expiry: u64,
    /// Its limit price in ticks (0 for a market order); the latest after modifies.
    pub price: i64,
    /// The quantity it was accepted with (lots).
    pub orig_qty: u64,
    /// Still open (lots).
    pub open_qty: u64,
    /// Filled so far (lots).
    pub filled_qty: u64,
    /// Its status.
    pub status: OrderStatus,
    /// The cancel reason or reject code, when there is one (borrowed from the engine's
    /// static names on the write path: no allocation per event).
    pub reason: Option<Cow<'static, str>>,
    /// The event sequence that accepted it (rejected: the reject's).
    pub accept_seq: u64,
    /// Time priority: the event sequence at which it took its place in the queue (accepted,
    /// or a modify that lost priority).
    pub priority_seq: u64,
    /// The last event sequence that touched it.
    pub last_seq: u64,
    /// Engine time of the command that created it.
    pub created_ts: u64,
    /// Engine time of the command that last touched it.
    pub updated_ts: u64,
}

/// One trade as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TradeRow {
    /// The fill's event sequence.
    pub seq: u64,
    /// The instrument.
    pub instrument: u32,
    /// The incoming order.
    pub taker_order: u64,
    /// The resting order.
    pub maker_order: u64,
    /// The taker's account.
    pub taker_account: u64,
    /// The maker's account.
    pub maker_account: u64,
    /// The taker's side.
    pub taker_side: Side,
    /// The maker's price (ticks).
    pub price: i64,
    /// Lots.
    pub qty: u64,
    /// Fees in quote units (funded instruments): buyer's and seller's.
    pub fees: Option<(i128, i128)>,
    /// Engine time of the command.
    pub ts: u64,
}

/// A deposit (positive) or withdrawal (negative), as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferRow {
    /// The event sequence.
    pub seq: u64,
    /// The account.
    pub account: u64,
    /// The asset.
    pub asset: u16,
    /// Units of the asset (withdrawals negative).
    pub amount: i128,
    /// Engine time of the command.
    pub ts: u64,
}

/// One change of one account's balance in one asset, as stored: every deposit, withdrawal
/// and both legs of each side of a fill on a funded instrument (fees included), so the sum
/// of an account's changes in an asset is its total.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BalanceChangeRow {
    /// The event sequence (the fill's fees event for a trade).
    pub seq: u64,
    /// Its place among the changes of that event.
    pub n: u8,
    /// The account.
    pub account: u64,
    /// The asset.
    pub asset: u16,
    /// Units of the asset, signed.
    pub delta: i128,
    /// `deposit`, `withdrawal`, `buy` or `sell`.
    pub kind: &'static str,
    /// Engine time of the command.
    pub ts: u64,
}

/// How a funded instrument settles, as stored (the history needs it after a restart to
/// turn fills into balance changes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FundedRow {
    /// The instrument.
    pub instrument: u32,
    /// Its base asset.
    pub base: u16,
    /// Its quote asset.
    pub quote: u16,
    /// Base units per lot.
    pub base_per_lot: u64,
    /// Quote units per tick × lot.
    pub quote_per_tick_lot: u64,
}

/// What one commit writes.
#[derive(Debug, Default)]
pub struct Batch {
    /// Changed orders, each once, with its latest state.
    pub orders: Vec<OrderRow>,
    /// Rejected commands naming an order id: inserted only when the id has no row.
    pub rejected: Vec<OrderRow>,
    /// New trades.
    pub trades: Vec<TradeRow>,
    /// New transfers.
    pub transfers: Vec<TransferRow>,
    /// New balance changes.
    pub balance_changes: Vec<BalanceChangeRow>,
    /// Funded instruments first seen.
    pub funded: Vec<FundedRow>,
    /// Instrument names first learnt.
    pub symbols: Vec<(u32, String)>,
    /// The last event sequence applied.
    pub last_seq: u64,
}

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
    fn trades(&mut self, account: u64, since: u64) -> Result<Vec<TradeRow>, HistoryError>;
    /// The active orders of an instrument: bids best first, then asks best first, each
    /// price in time priority (the book's order).
    fn active_orders(&mut self, instrument: u32) -> Result<Vec<OrderRow>, HistoryError>;
    /// The instrument id of a symbol the store knows.
    fn instrument_id(&mut self, symbol: &str) -> Result<Option<u32>, HistoryError>;
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

/// Something the current command touched.
#[derive(Clone, Copy, Debug)]
enum Touched {
    Order(u64),
    Trade(usize),
    Rejected(usize),
    Transfer(usize),
    Balance(usize),
}

/// When the history consumer commits.
#[derive(Clone, Debug)]
pub struct HistoryConfig {
    /// Commit at the end of a ring batch once this many events are pending.
    pub min_events: u64,
    /// ... or once this long has passed since the last commit.
    pub max_delay: Duration,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            min_events: 65536,
            max_delay: Duration::from_millis(10),
        }
    }
}

/// The history consumer. See the module docs.
pub struct History<S: HistoryStore> {
    store: S,
    cfg: HistoryConfig,
    /// Live orders' rows.
    live: FxHashMap<u64, OrderRow>,
    /// Live orders changed since the last commit.
    dirty: FxHashSet<u64>,
    batch: Batch,
    /// What the current command touched, stamped with its time at its last event.
    touched: Vec<Touched>,
    /// The first event sequence of the current command, while one is open.
    cmd_first: Option<u64>,
    /// Events at or below this were applied before (a restart).
    applied: u64,
    pending: u64,
    last_commit: Instant,
    clocks: Option<ClockReader>,
    /// The time of the last command (when no clock is published: 0).
    clock: u64,
    names: FxHashMap<u32, String>,
    /// Funded instruments' settlement terms (learnt from the stream, kept in the store).
    defs: FxHashMap<u32, FundedRow>,
    /// The last fill on a funded instrument until its fees arrive: (buyer, seller,
    /// instrument, price, lots).
    pending_fill: Option<(u64, u64, u32, i64, u64)>,
    /// The first store error: the consumer fails (halt by default).
    pub error: Option<HistoryError>,
    /// Commits done.
    pub commits: u64,
}

impl<S: HistoryStore> History<S> {
    /// A consumer writing into `store`, carrying on from what it holds.
    pub fn new(mut store: S, cfg: HistoryConfig) -> Result<Self, HistoryError> {
        let applied = store.last_seq()?;
        let defs = store
            .funded()?
            .into_iter()
            .map(|f| (f.instrument, f))
            .collect();
        let live = store
            .active_rows()?
            .into_iter()
            .map(|r| (r.order_id, r))
            .collect();
        Ok(History {
            store,
            cfg,
            live,
            dirty: FxHashSet::default(),
            batch: Batch {
                last_seq: applied,
                ..Batch::default()
            },
            touched: Vec::new(),
            cmd_first: None,
            applied,
            pending: 0,
            last_commit: Instant::now(),
            clocks: None,
            clock: 0,
            names: FxHashMap::default(),
            defs,
            pending_fill: None,
            error: None,
            commits: 0,
        })
    }

    /// Records instrument names (written with the next commit).
    pub fn with_symbols(mut self, names: impl IntoIterator<Item = (InstrumentId, String)>) -> Self {
        for (i, n) in names {
            self.names.insert(i.0, n.clone());
            self.batch.symbols.push((i.0, n));
        }
        self
    }

    /// The last event sequence the store holds (after the last commit).
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Applies journaled events the store does not hold yet (a restart after a crash):
    /// `(sequence, event, engine time of its command)`, in order; events at or below the
    /// store's sequence are skipped, so running it twice changes nothing. Commits.
    pub fn catch_up(
        &mut self,
        events: impl IntoIterator<Item = (u64, Event, u64)>,
    ) -> Result<u64, HistoryError> {
        let mut n = 0;
        for (seq, e, ts) in events {
            if seq <= self.batch.last_seq {
                continue;
            }
            self.clock = ts;
            self.apply(&e, seq);
            n += 1;
            if e.is_last_of_command() {
                self.stamp();
                if self.pending >= self.cfg.min_events {
                    self.commit()?;
                }
            }
        }
        self.commit()?;
        Ok(n)
    }

    /// The store, for queries after the run.
    pub fn into_store(self) -> S {
        self.store
    }

    fn finish_row(&mut self, id: u64) {
        if let Some(row) = self.live.remove(&id) {
            self.dirty.remove(&id);
            self.batch.orders.push(row);
        }
    }

    fn touch(&mut self, id: u64, seq: u64) -> Option<&mut OrderRow> {
        let row = self.live.get_mut(&id)?;
        row.last_seq = seq;
        self.dirty.insert(id);
        self.touched.push(Touched::Order(id));
        Some(row)
    }

    fn apply(&mut self, e: &Event, seq: u64) {
        self.cmd_first.get_or_insert(seq);
        self.pending += 1;
        self.batch.last_seq = seq;
        match e.kind {
            EventKind::Accepted { .. } => {
                if let Some(o) = e.kind.accepted_order() {
                    self.accepted(&o, seq)
                }
            }
            EventKind::Fill {
                instrument,
                taker,
                maker,
                maker_account,
                price,
                qty,
                taker_side,
                ..
            } => {
                let mut accounts = [0u64, maker_account.0];
                for (k, id) in [taker, maker].into_iter().enumerate() {
                    if let Some(row) = self.touch(id.0, seq) {
                        row.open_qty = row.open_qty.saturating_sub(qty.0);
                        row.filled_qty += qty.0;
                        accounts[k] = row.account;
                        if row.open_qty == 0 {
                            row.status = OrderStatus::Filled;
                        }
                    }
                }
                self.touched.push(Touched::Trade(self.batch.trades.len()));
                self.batch.trades.push(TradeRow {
                    seq,
                    instrument: instrument.0,
                    taker_order: taker.0,
                    maker_order: maker.0,
                    taker_account: accounts[0],
                    maker_account: accounts[1],
                    taker_side,
                    price: price.0,
                    qty: qty.0,
                    fees: None,
                    ts: self.clock,
                });
                if self.defs.contains_key(&instrument.0) {
                    let (buyer, seller) = match taker_side {
                        Side::Buy => (accounts[0], accounts[1]),
                        Side::Sell => (accounts[1], accounts[0]),
                    };
                    self.pending_fill = Some((buyer, seller, instrument.0, price.0, qty.0));
                }
                for id in [taker, maker] {
                    if self
                        .live
                        .get(&id.0)
                        .is_some_and(|r| r.status == OrderStatus::Filled)
                    {
                        self.finish_row(id.0);
                    }
                }
            }
            EventKind::FillFees {
                buyer_fee,
                seller_fee,
                ..
            } => {
                let (bf, sf) = (buyer_fee.get(), seller_fee.get());
                if let Some(t) = self.batch.trades.last_mut() {
                    t.fees = Some((bf, sf));
                }
                if let Some((buyer, seller, inst, price, lots)) = self.pending_fill.take() {
                    if let Some(&d) = self.defs.get(&inst) {
                        let (base, quote) = (d.base, d.quote);
                        let notional = price as i128 * lots as i128 * d.quote_per_tick_lot as i128;
                        let units = lots as i128 * d.base_per_lot as i128;
                        for (n, (account, asset, delta, kind)) in [
                            (buyer, quote, -(notional + bf), "buy"),
                            (buyer, base, units, "buy"),
                            (seller, base, -units, "sell"),
                            (seller, quote, notional - sf, "sell"),
                        ]
                        .into_iter()
                        .enumerate()
                        {
                            self.balance_change(seq, n as u8, account, asset, delta, kind);
                        }
                    }
                }
            }
            EventKind::InstrumentAdded(def) if def.is_funded() => {
                let (base, quote) = def.assets();
                let (base_per_lot, quote_per_tick_lot) = def.units();
                let f = FundedRow {
                    instrument: def.id.0,
                    base: base.0,
                    quote: quote.0,
                    base_per_lot,
                    quote_per_tick_lot,
                };
                self.defs.insert(f.instrument, f);
                self.batch.funded.push(f);
            }
            EventKind::Cancelled {
                order_id, reason, ..
            } => self.closed(order_id, seq, OrderStatus::Cancelled, Some(reason)),
            EventKind::Expired { order_id, .. } => {
                self.closed(order_id, seq, OrderStatus::Expired, None)
            }
            EventKind::Modified {
                order_id,
                price,
                qty,
                kept_priority,
                ..
            } => {
                if let Some(row) = self.touch(order_id.0, seq) {
                    row.price = price.0;
                    row.open_qty = qty.0;
                    if !kept_priority {
                        row.priority_seq = seq;
                    }
                }
            }
            EventKind::Rejected {
                instrument,
                order_id: Some(id),
                account,
                code,
            } => self.rejected(id, instrument, account, code, seq),
            EventKind::Deposited {
                account,
                asset,
                amount,
            } => self.transfer(seq, account, asset.0, amount.get()),
            EventKind::Withdrawn {
                account,
                asset,
                amount,
            } => self.transfer(seq, account, asset.0, -amount.get()),
            _ => {}
        }
    }

    fn accepted(&mut self, o: &NewOrder, seq: u64) {
        let row = OrderRow {
            order_id: o.order_id.0,
            instrument: o.instrument.0,
            account: o.account.0,
            side: o.side,
            order_type: o.order_type,
            tif: o.tif,
            expiry: if o.tif == TimeInForce::Gtd {
                o.expiry.0
            } else {
                0
            },
            price: if o.order_type == OrderType::Market {
                0
            } else {
                o.price.0
            },
            orig_qty: o.qty.0,
            open_qty: o.qty.0,
            filled_qty: 0,
            status: OrderStatus::Active,
            reason: None,
            accept_seq: seq,
            priority_seq: seq,
            last_seq: seq,
            created_ts: self.clock,
            updated_ts: self.clock,
        };
        self.live.insert(row.order_id, row);
        self.dirty.insert(o.order_id.0);
        self.touched.push(Touched::Order(o.order_id.0));
    }

    fn closed(&mut self, id: OrderId, seq: u64, status: OrderStatus, why: Option<CancelReason>) {
        if let Some(row) = self.touch(id.0, seq) {
            row.open_qty = 0;
            row.status = status;
            row.reason = why.map(|r| Cow::Borrowed(r.as_str()));
            self.finish_row(id.0);
        }
    }

    fn rejected(
        &mut self,
        id: OrderId,
        instrument: Option<InstrumentId>,
        account: AccountId,
        code: RejectCode,
        seq: u64,
    ) {
        // A reject that names a live order (a cancel by someone else, a bad modify) does
        // not change it; a rejected new order gets a row unless its id has one already.
        if self.live.contains_key(&id.0) {
            return;
        }
        self.touched
            .push(Touched::Rejected(self.batch.rejected.len()));
        self.batch.rejected.push(OrderRow {
            order_id: id.0,
            instrument: instrument.map_or(u32::MAX, |i| i.0),
            account: account.0,
            side: Side::Buy,
            order_type: OrderType::Limit,
            tif: TimeInForce::Gtc,
            expiry: 0,
            price: 0,
            orig_qty: 0,
            open_qty: 0,
            filled_qty: 0,
            status: OrderStatus::Rejected,
            reason: Some(Cow::Borrowed(code.as_str())),
            accept_seq: seq,
            priority_seq: seq,
            last_seq: seq,
            created_ts: self.clock,
            updated_ts: self.clock,
        });
    }

    fn balance_change(
        &mut self,
        seq: u64,
        n: u8,
        account: u64,
        asset: u16,
        delta: i128,
        kind: &'static str,
    ) {
        self.touched
            .push(Touched::Balance(self.batch.balance_changes.len()));
        self.batch.balance_changes.push(BalanceChangeRow {
            seq,
            n,
            account,
            asset,
            delta,
            kind,
            ts: self.clock,
        });
    }

    fn transfer(&mut self, seq: u64, account: AccountId, asset: u16, amount: i128) {
        let kind = if amount < 0 { "withdrawal" } else { "deposit" };
        self.balance_change(seq, 0, account.0, asset, amount, kind);
        self.batch.transfers.push(TransferRow {
            seq,
            account: account.0,
            asset,
            amount,
            ts: self.clock,
        });
        self.touched
            .push(Touched::Transfer(self.batch.transfers.len() - 1));
    }

    /// Stamps what the current command touched with its time.
    fn stamp(&mut self) {
        let ts = self.clock;
        let first = self.cmd_first.take().unwrap_or(0);
        let stamp_row = |r: &mut OrderRow| {
            r.updated_ts = ts;
            if r.accept_seq >= first {
                r.created_ts = ts;
            }
        };
        let mut touched = std::mem::take(&mut self.touched);
        for &t in &touched {
            match t {
                Touched::Order(id) => {
                    if let Some(r) = self.live.get_mut(&id) {
                        stamp_row(r);
                    } else if let Some(r) = self
                        .batch
                        .orders
                        .iter_mut()
                        .rev()
                        .find(|r| r.order_id == id)
                    {
                        stamp_row(r);
                    }
                }
                Touched::Trade(i) => {
                    if let Some(t) = self.batch.trades.get_mut(i) {
                        t.ts = ts;
                    }
                }
                Touched::Rejected(i) => {
                    if let Some(r) = self.batch.rejected.get_mut(i) {
                        r.created_ts = ts;
                        r.updated_ts = ts;
                    }
                }
                Touched::Transfer(i) => {
                    if let Some(t) = self.batch.transfers.get_mut(i) {
                        t.ts = ts;
                    }
                }
                Touched::Balance(i) => {
                    if let Some(b) = self.batch.balance_changes.get_mut(i) {
                        b.ts = ts;
                    }
                }
            }
        }
        touched.clear();
        self.touched = touched;
    }

    /// Writes everything pending in one transaction, up to the last complete command (a
    /// command whose last event has not arrived stays pending: the store never holds half
    /// a command, and its rows get its time).
    pub fn commit(&mut self) -> Result<(), HistoryError> {
        if self.cmd_first.is_some() {
            return Ok(());
        }
        if self.batch.last_seq == self.applied && self.batch.symbols.is_empty() {
            return Ok(());
        }
        for id in self.dirty.drain() {
            if let Some(r) = self.live.get(&id) {
                self.batch.orders.push(r.clone());
            }
        }
        self.store.write(&self.batch)?;
        self.applied = self.batch.last_seq;
        self.batch.orders.clear();
        self.batch.rejected.clear();
        self.batch.trades.clear();
        self.batch.transfers.clear();
        self.batch.balance_changes.clear();
        self.batch.funded.clear();
        self.batch.symbols.clear();
        self.pending = 0;
        self.commits += 1;
        self.last_commit = Instant::now();
        Ok(())
    }

    fn try_commit(&mut self) {
        if self.error.is_none() {
            if let Err(e) = self.commit() {
                tracing::error!("{e}; the history store stops (the journal has everything)");
                self.error = Some(e);
            }
        }
    }
}

impl<S: HistoryStore> Consumer for History<S> {
    fn name(&self) -> &str {
        "history"
    }

    fn on_start_with(&mut self, ctx: &ringex_engine::pipeline::ConsumerContext) {
        self.clocks = Some(ctx.clocks());
    }

    fn on_event(&mut self, e: &Event, seq: Sequence, end_of_batch: bool) {
        if self.error.is_some() || seq.0 <= self.applied {
            return;
        }
        let last = e.is_last_of_command();
        if last {
            if let Some(c) = &self.clocks {
                self.clock = c.at(seq).0;
            }
        }
        self.apply(e, seq.0);
        if !last {
            return;
        }
        self.stamp();
        // Commits end on a command boundary: the store never holds half a command.
        if self.pending >= self.cfg.min_events
            || (end_of_batch && self.last_commit.elapsed() >= self.cfg.max_delay)
        {
            self.try_commit();
        }
    }

    fn timeout(&self) -> Option<Duration> {
        Some(self.cfg.max_delay)
    }

    fn on_timeout(&mut self) {
        if self.pending > 0 && self.cmd_first.is_none() {
            self.try_commit();
        }
    }

    fn on_shutdown(&mut self) {
        self.try_commit();
    }

    fn failure(&self) -> Option<String> {
        self.error.as_ref().map(|e| e.to_string())
    }
}
