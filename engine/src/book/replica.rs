//! [`BookReplica`]: rebuilds the matcher's L3 books from its events alone.
//!
//! Everything derived from events (L2 depth, market data, snapshots, recovery, tests) goes
//! through this one component. After any command, a replica that has applied the matcher's
//! events holds exactly the matcher's books.

use crate::book::books::{IdState, OrderBooks, RestingOrder};
use crate::book::ext::{Ext, STOP_MARKET};
use crate::book::order::OrderNode;
use crate::command::{NewOrder, OrderTerms};
use crate::event::{Event, EventKind};
use crate::funds::{Funding, Ledger};
use crate::state::{EngineState, RestingState};
use crate::types::{AccountId, InstrumentId, OrderId, OrderType, Price, Qty, Side};
use std::collections::BTreeSet;

/// An L3 book of every instrument, maintained from events.
#[derive(Clone, Debug, Default)]
pub struct BookReplica {
    books: OrderBooks,
    blocked: BTreeSet<u64>,
    /// The incoming order of the current command when it cannot rest (IOC, FOK, market),
    /// with its open quantity.
    transient: Option<(NewOrder, u64)>,
    accept_seq: u64,
    admin_events: u64,
    ledger: Ledger,
    /// Buyer, seller and quote asset of the last fill on a funded instrument, until its
    /// fees arrive.
    pending_fees: Option<(AccountId, AccountId, crate::funds::AssetId)>,
    /// The engine clock as last told ([`BookReplica::set_clock`]): events carry no time.
    clock: u64,
    /// The terms announced for the next accepted order.
    pending_terms: Option<OrderTerms>,
    /// The order arriving in this command (new, elected or moved by a modify) and its
    /// display size: once its matching is over, its peak and TOP status are settled.
    arriving: Option<(OrderId, u64)>,
}

impl BookReplica {
    /// An empty replica.
    pub fn new() -> Self {
        Self::default()
    }

    /// A replica that keeps only the live books and forgets dead order ids (market data,
    /// risk): its memory follows the resting orders, never the history. Its
    /// [`BookReplica::state`] cannot be used to restart a matcher.
    pub fn live_only() -> Self {
        let mut r = Self::default();
        r.books.forget_dead_ids();
        r
    }

    /// Sets the engine clock that [`BookReplica::state`] records (the time of the last
    /// command applied; the pipeline publishes it beside the events).
    pub fn set_clock(&mut self, clock: u64) {
        self.clock = self.clock.max(clock);
    }

    /// Applies one event.
    pub fn apply(&mut self, e: &Event) {
        if e.is_admin() {
            self.admin_events += 1;
        }
        if matches!(
            e.kind,
            EventKind::Accepted { .. } | EventKind::Triggered { .. } | EventKind::Modified { .. }
        ) {
            self.settle_arrival();
        }
        match e.kind {
            EventKind::Accepted { .. } => {
                let Some(o) = e.kind.accepted_order() else {
                    return;
                };
                let terms = self
                    .pending_terms
                    .take()
                    .filter(|t| t.order_id == o.order_id)
                    .unwrap_or_default();
                self.accept_seq += 1;
                if let Some(f) = self.funding(o.instrument) {
                    let hold = f.hold(o.side, o.order_type, o.price, o.qty.0);
                    self.ledger.add_held(o.account, f.hold_asset(o.side), hold);
                }
                if let Some(stop) = terms.stop {
                    let mut node = OrderNode::from_new(&o, o.qty, self.accept_seq);
                    let market = o.order_type == OrderType::Market;
                    if market {
                        node.price = Price(0);
                    }
                    self.books.insert_pending(node, Ext::stop(stop.0, market));
                    self.transient = None;
                } else if o.order_type == OrderType::Limit && o.tif.may_rest() {
                    self.books
                        .insert(OrderNode::from_new(&o, o.qty, self.accept_seq));
                    self.arriving = Some((o.order_id, terms.display.0));
                    self.transient = None;
                } else {
                    self.books.mark_dead(o.order_id);
                    self.transient = Some((o, o.qty.0));
                }
            }
            EventKind::OrderTerms { terms, .. } => self.pending_terms = Some(terms),
            EventKind::MatchPolicySet {
                instrument,
                policy,
                min_alloc,
            } => {
                if let Some(b) = self.books.book_mut(instrument) {
                    b.policy = policy;
                    b.min_alloc = min_alloc.0.max(1);
                    b.top = [0, 0];
                    b.refresh_general();
                }
            }
            EventKind::Triggered { order_id, .. } => {
                if let IdState::Live(i) = self.books.id_state(order_id) {
                    let market = self.books.ext(i).kind == STOP_MARKET;
                    let n = self.books.node(i);
                    let mut o = n.as_new_order();
                    if market {
                        o.order_type = OrderType::Market;
                    }
                    if !market && o.tif.may_rest() {
                        self.books.activate(i, n.qty);
                        self.arriving = Some((order_id, 0));
                        self.transient = None;
                    } else {
                        self.books.remove(i);
                        self.transient = Some((o, o.qty.0));
                    }
                }
            }
            EventKind::Fill {
                instrument,
                taker,
                maker,
                maker_account: _,
                price,
                qty,
                taker_side,
                ..
            } => {
                if let Some(b) = self.books.book_mut(instrument) {
                    b.last_price = Some(price);
                }
                if let Some(f) = self.funding(instrument) {
                    self.settle(&f, taker, maker, price, qty, taker_side);
                }
                self.reduce_maker(maker, qty);
                match &mut self.transient {
                    Some((o, open)) if o.order_id == taker => *open -= qty.0.min(*open),
                    _ => self.reduce(taker, qty),
                }
            }
            EventKind::FillFees {
                buyer_fee,
                seller_fee,
                ..
            } => {
                if let Some((buyer, seller, quote)) = self.pending_fees.take() {
                    self.ledger.add_total(buyer, quote, -buyer_fee.get());
                    self.ledger.add_total(seller, quote, -seller_fee.get());
                }
            }
            EventKind::Cancelled { order_id, .. } | EventKind::Expired { order_id, .. } => {
                if let IdState::Live(i) = self.books.id_state(order_id) {
                    self.release_resting(i);
                    self.books.remove(i);
                } else if let Some((o, open)) = self.transient {
                    if o.order_id == order_id {
                        if let Some(f) = self.funding(o.instrument) {
                            let hold = f.hold(o.side, o.order_type, o.price, open);
                            self.ledger.add_held(o.account, f.hold_asset(o.side), -hold);
                        }
                        self.transient = Some((o, 0));
                    }
                }
            }
            EventKind::Modified {
                order_id,
                price,
                qty,
                kept_priority,
                ..
            } => {
                if let IdState::Live(i) = self.books.id_state(order_id) {
                    let n = self.books.node(i);
                    if let Some(f) = self.funding(n.instrument) {
                        let old = f.hold(n.side, OrderType::Limit, n.price, n.qty.0);
                        let new = f.hold(n.side, OrderType::Limit, price, qty.0);
                        self.ledger
                            .add_held(n.account, f.hold_asset(n.side), new - old);
                    }
                    let e = self.books.ext(i);
                    if kept_priority {
                        self.books.set_qty(i, qty);
                        if e.is_iceberg() {
                            self.books.set_peak(i, e.peak.min(qty.0));
                        }
                    } else {
                        let slot = self.books.hot(i).book();
                        if self.books.top(slot, n.side) == i {
                            self.books.clear_top(slot, n.side);
                        }
                        self.books.move_to_back(i, price, qty);
                        self.arriving = Some((order_id, 0));
                    }
                }
            }
            EventKind::InstrumentStatus { instrument, halted } => {
                if let Some(b) = self.books.book_mut(instrument) {
                    b.halted = halted;
                }
            }
            EventKind::AccountStatus { account, blocked } => {
                if blocked {
                    self.blocked.insert(account.0);
                } else {
                    self.blocked.remove(&account.0);
                }
            }
            EventKind::InstrumentAdded(def) => {
                self.books.add_instrument(def);
            }
            EventKind::AssetAdded { asset, scale } => {
                self.ledger.add_asset(asset, scale);
            }
            EventKind::Deposited {
                account,
                asset,
                amount,
            } => self.ledger.add_total(account, asset, amount.get()),
            EventKind::Withdrawn {
                account,
                asset,
                amount,
            } => self.ledger.add_total(account, asset, -amount.get()),
            EventKind::Rejected { .. } | EventKind::SnapshotRequested { .. } => {}
        }
        if e.is_last_of_command() {
            self.settle_arrival();
            self.transient = None;
        }
    }

    /// The arriving order's matching is over: if it rests, its peak is `min(display, open)`
    /// and it becomes its side's TOP when it betters every other order of its side
    /// (`pro_rata_top`).
    fn settle_arrival(&mut self) {
        let Some((id, display)) = self.arriving.take() else {
            return;
        };
        let IdState::Live(i) = self.books.id_state(id) else {
            return;
        };
        let (open, slot, side) = {
            let h = self.books.hot(i);
            (h.qty.0, h.book(), h.side())
        };
        let e = self.books.ext(i);
        if display != 0 {
            self.books.set_ext(i, Ext::iceberg(display, open));
        } else if e.is_iceberg() {
            self.books.set_peak(i, e.display.min(open));
        }
        let price = self.books.cold(i).price;
        self.books.rest_top(slot, side, i, price);
    }

    /// A maker's fill: an iceberg whose peak is used up shows a new one at the back.
    fn reduce_maker(&mut self, id: OrderId, qty: Qty) {
        if let IdState::Live(i) = self.books.id_state(id) {
            let e = self.books.ext(i);
            let open = self.books.hot(i).qty.0;
            if open <= qty.0 {
                self.books.remove(i);
                return;
            }
            let left = open - qty.0;
            self.books.set_qty(i, Qty(left));
            if e.is_iceberg() {
                let peak = e.peak.min(open).saturating_sub(qty.0);
                if peak == 0 {
                    self.books.set_peak(i, e.display.min(left));
                    self.books.requeue(i);
                } else {
                    self.books.set_peak(i, peak);
                }
            }
        }
    }

    #[inline]
    fn funding(&self, instrument: InstrumentId) -> Option<Funding> {
        self.books.book(instrument).and_then(|b| b.funding)
    }

    /// Gives back the hold of a resting order that leaves the book.
    fn release_resting(&mut self, i: u32) {
        let n = self.books.node(i);
        if let Some(f) = self.funding(n.instrument) {
            let hold = f.hold(n.side, OrderType::Limit, n.price, n.qty.0);
            self.ledger.add_held(n.account, f.hold_asset(n.side), -hold);
        }
    }

    /// The order behind `id` in this command: (account, side, type, price, open).
    fn party(&self, id: OrderId) -> Option<(AccountId, Side, OrderType, Price, u64)> {
        if let Some((o, open)) = self.transient {
            if o.order_id == id {
                return Some((o.account, o.side, o.order_type, o.price, open));
            }
        }
        match self.books.id_state(id) {
            IdState::Live(i) => {
                let n = self.books.node(i);
                Some((n.account, n.side, OrderType::Limit, n.price, n.qty.0))
            }
            _ => None,
        }
    }

    /// A fill on a funded instrument, as the matcher settled it (the fees follow in the
    /// next event).
    fn settle(
        &mut self,
        f: &Funding,
        taker: OrderId,
        maker: OrderId,
        price: Price,
        qty: Qty,
        taker_side: Side,
    ) {
        let q = qty.0;
        let (Some(t), Some(m)) = (self.party(taker), self.party(maker)) else {
            return;
        };
        for (account, side, ty, p, open) in [t, m] {
            let release = f.hold(side, ty, p, open) - f.hold(side, ty, p, open - q.min(open));
            self.ledger.add_held(account, f.hold_asset(side), -release);
        }
        let (buyer, seller) = match taker_side {
            Side::Buy => (t.0, m.0),
            Side::Sell => (m.0, t.0),
        };
        let n = f.notional(price, q);
        let base = f.base_units(q);
        self.ledger.add_total(buyer, f.quote, -n);
        self.ledger.add_total(seller, f.quote, n);
        self.ledger.add_total(buyer, f.base, base);
        self.ledger.add_total(seller, f.base, -base);
        self.pending_fees = Some((buyer, seller, f.quote));
    }

    /// Every balance, as of the events applied so far.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    fn reduce(&mut self, id: OrderId, qty: Qty) {
        if let IdState::Live(i) = self.books.id_state(id) {
            let open = self.books.hot(i).qty;
            if open.0 <= qty.0 {
                self.books.remove(i);
            } else {
                self.books.set_qty(i, Qty(open.0 - qty.0));
            }
        }
    }

    /// The resting orders of an instrument, bids best first then asks best first, each level
    /// in queue order.
    pub fn resting_orders(&self, instrument: InstrumentId) -> Vec<RestingOrder> {
        self.books.resting_orders(instrument)
    }

    /// Aggregated depth of one side, best first: (price, total lots, order count).
    pub fn depth(
        &self,
        instrument: InstrumentId,
        side: Side,
    ) -> impl Iterator<Item = (Price, u128, u32)> + '_ {
        self.books.depth(instrument, side)
    }

    /// Instruments with a book, in id order.
    pub fn instruments(&self) -> impl Iterator<Item = InstrumentId> + '_ {
        self.books.instruments()
    }

    /// True when the instrument is halted.
    pub fn is_halted(&self, instrument: InstrumentId) -> bool {
        self.books.book(instrument).is_some_and(|b| b.halted)
    }

    /// Blocked accounts, ascending.
    pub fn blocked_accounts(&self) -> impl Iterator<Item = AccountId> + '_ {
        self.blocked.iter().map(|&a| AccountId(a))
    }

    /// True when the order id was ever used.
    pub fn id_used(&self, id: OrderId) -> bool {
        self.books.id_known(id)
    }

    /// A live order (resting, or a pending stop) with all its attributes (current price and
    /// open quantity).
    pub fn order(&self, id: OrderId) -> Option<NewOrder> {
        match self.books.id_state(id) {
            IdState::Live(i) => Some(self.books.node(i).as_new_order()),
            _ => None,
        }
    }

    /// Everything the matcher needs, as of the events applied so far (which must end on a
    /// command boundary: `cmd_seq` and `event_seq` name the last ones).
    pub fn state(&self, cmd_seq: u64, event_seq: u64) -> EngineState {
        let instruments: Vec<_> = self
            .books
            .instruments()
            .map(|i| (i, self.is_halted(i)))
            .collect();
        let orders = instruments
            .iter()
            .flat_map(|&(i, _)| self.books.resting_nodes(i))
            .map(|n| RestingState {
                order: n.as_new_order(),
                accept_seq: n.accept_seq,
            })
            .collect();
        let mut state = EngineState {
            cmd_seq,
            event_seq,
            accept_seq: self.accept_seq,
            admin_events: self.admin_events,
            orders,
            used_ids: self.books.used_id_ranges(),
            clock: self.clock,
            blocked: self.blocked_accounts().collect(),
            definitions: instruments
                .iter()
                .filter_map(|&(i, _)| self.books.book(i).map(|b| b.def))
                .filter(|d| d.is_funded())
                .collect(),
            last_prices: instruments
                .iter()
                .filter_map(|&(i, _)| self.books.book(i)?.last_price.map(|p| (i, p)))
                .collect(),
            assets: self.ledger.assets().collect(),
            balances: self.ledger.balances(),
            instruments,
            ..EngineState::default()
        };
        self.books.extras_into(&mut state);
        state
    }

    /// A replica holding `state`.
    pub fn from_state(state: &EngineState) -> Self {
        Self::load(state, false)
    }

    /// A replica holding `state` that keeps live orders only (see
    /// [`BookReplica::live_only`]): for publishers restarted after a recovery.
    pub fn from_state_live_only(state: &EngineState) -> Self {
        Self::load(state, true)
    }

    fn load(state: &EngineState, live_only: bool) -> Self {
        let mut r = BookReplica {
            books: OrderBooks::with_capacity(state.orders.len(), 1 << 16),
            blocked: state.blocked.iter().map(|a| a.0).collect(),
            transient: None,
            accept_seq: state.accept_seq,
            admin_events: state.admin_events,
            ledger: state.ledger(),
            pending_fees: None,
            clock: state.clock,
            pending_terms: None,
            arriving: None,
        };
        r.books.add_instruments_of(state);
        r.books.reserve_live_ids(state.orders.len());
        if live_only {
            r.books.forget_dead_ids();
        } else {
            r.books.load_used_ids(&state.used_ids);
        }
        for o in &state.orders {
            r.books
                .insert(OrderNode::from_new(&o.order, o.order.qty, o.accept_seq));
        }
        r.books.load_extras(state);
        r.books.end_load();
        r
    }

    /// The number of resting orders (pending stops are not in the book).
    pub fn resting_count(&self) -> usize {
        self.books.live_count() - self.books.pending_count()
    }

    /// The number of orders accepted so far.
    pub fn accepted_count(&self) -> u64 {
        self.accept_seq
    }
}
