//! [`Matcher`]: owns the book of every instrument and turns each [`Command`] into events.
//!
//! The matcher is a pure function of the command sequence: it never reads a clock (time is
//! [`Command::ts`]), uses no randomness, and never depends on hash-map iteration order, so
//! the same commands always give the same events, byte for byte. Bad input never panics: it
//! becomes a [`EventKind::Rejected`] event with a [`RejectCode`].
//!
//! Rules (docs/formats.md): price-time priority; fills at the maker's price; limit and market
//! orders; GTC, IOC, FOK (all or nothing, across levels), GTD (expires before the first
//! command whose time is at or past the expiry); post-only; self-trade prevention; cancel;
//! modify (a same-price decrease keeps priority, anything else goes to the back and may
//! trade); mass cancel; halt/resume; block/unblock; order ids are never reused.
//!
//! Money (docs/formats.md, "Accounts, balances and pre-trade risk") is checked here too, in the
//! same thread and the same step as matching ([`money`]): an order on a funded instrument
//! holds its funds before the book sees it, and each fill settles as it happens.

mod money;
mod policy;

use crate::book::books::{IdState, OrderBooks, RestingOrder};
use crate::book::ext::Ext;
use crate::book::order::{OrderNode, NIL};
use crate::command::{Command, CommandKind, NewOrder, OrderTerms};
use crate::event::{CancelReason, Event, EventKind, RejectCode};
use crate::funds::{Balance, Funding, InstrumentDef, Ledger};
use crate::types::{
    AccountId, IdUniqueness, InstrumentId, MatchPolicy, OrderId, OrderType, Price, Qty,
    SelfTradePrevention, Sequence, Side, TimeInForce, Timestamp,
};
use rustc_hash::FxHashSet;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

pub use crate::matching::MatchingEngine;
pub use crate::types::MAX_INSTRUMENTS;

/// The terms of a plain order.
const NO_TERMS: OrderTerms = OrderTerms {
    instrument: InstrumentId(0),
    order_id: OrderId(0),
    display: Qty(0),
    stop: None,
};

/// The incoming side of a match.
#[derive(Clone, Copy)]
struct Taker {
    instrument: InstrumentId,
    /// Its book's slot.
    book: u32,
    id: OrderId,
    account: AccountId,
    side: Side,
    limit: Option<Price>,
    stp: SelfTradePrevention,
    /// Its book is funded ([`Matcher::funding`] reads the rules where they are used: a
    /// copy of them in every taker cost the unfunded flows a 90-byte move per order).
    funded: bool,
}

impl Taker {
    #[inline]
    fn crosses(&self, maker_price: Price) -> bool {
        match self.limit {
            None => true,
            Some(l) => match self.side {
                Side::Buy => maker_price <= l,
                Side::Sell => maker_price >= l,
            },
        }
    }
}

/// How a match ended.
struct MatchEnd {
    remaining: u64,
    /// The taker's rest was cancelled by self-trade prevention (event already emitted).
    taker_cancelled: bool,
    /// A market buy on a funded instrument could not pay for one more lot.
    out_of_funds: bool,
}

/// Sizes to reserve up front so that the hot path never allocates once warm.
#[derive(Clone, Copy, Debug)]
pub struct MatcherCapacity {
    /// Resting orders across all books (the order pool and its free list; the pool is
    /// touched only as orders use it).
    pub orders: usize,
    /// Gaps between used order ids (one range of 16 bytes each) before the id index
    /// allocates: a counter with no gaps needs none, sparse ids one per id. Live ids are in
    /// a table that follows the live orders, doubling without a stall (`book/table.rs`):
    /// presized to `orders`, a small live set spread over a large table missed the caches
    /// on every lookup. See `book/ids.rs`.
    pub ids: usize,
    /// GTD orders waiting to expire (room reserved; also how many entries of GTD orders
    /// that left early the expiry heap tolerates beyond twice the live orders).
    pub gtd: usize,
}

impl Default for MatcherCapacity {
    fn default() -> Self {
        MatcherCapacity {
            orders: 1 << 16,
            ids: 1 << 16,
            gtd: 1 << 12,
        }
    }
}

/// The matching engine: every book, the blocked accounts, the GTD expiry queue.
#[derive(Clone)]
pub struct Matcher {
    books: OrderBooks,
    blocked: FxHashSet<u64>,
    /// (expiry, accept sequence, order id), earliest first; stale entries are skipped.
    expiries: BinaryHeap<Reverse<(u64, u64, u64)>>,
    accept_seq: u64,
    scratch: Vec<(u64, u32)>,
    /// Stale expiry entries tolerated beyond twice the live orders (`MatcherCapacity::gtd`).
    expiry_slack: usize,
    ledger: Ledger,
    /// What each resting order of a funded instrument holds, by pool index (kept beside the
    /// pool so that a modify or a cancel never recomputes the old hold).
    holds: Vec<i128>,
    /// The latest command time handled: time never goes backwards in sequence order.
    clock: u64,
    /// Resting orders an account may have (`u32::MAX`: no limit).
    max_open_orders: u32,
    /// The terms of the next command's order ([`CommandKind::OrderTerms`]).
    pending_terms: Option<OrderTerms>,
    /// Elected stops of the command: (acceptance number, pool index, stop-market).
    stop_queue: Vec<(u64, u32, bool)>,
    /// Stops one trade reached, before they are sorted into the queue.
    stop_batch: Vec<(u64, u32)>,
}

impl Default for Matcher {
    fn default() -> Self {
        Matcher::with_capacity(MatcherCapacity::default())
    }
}

impl Matcher {
    /// A matcher with room reserved for `cap`.
    pub fn with_capacity(cap: MatcherCapacity) -> Self {
        Matcher {
            books: OrderBooks::with_capacity(cap.orders, cap.ids),
            blocked: FxHashSet::default(),
            expiries: BinaryHeap::with_capacity(cap.gtd),
            accept_seq: 0,
            scratch: Vec::with_capacity(1024),
            expiry_slack: cap.gtd.max(8),
            ledger: Ledger::new(),
            holds: Vec::with_capacity(cap.orders),
            clock: 0,
            max_open_orders: u32::MAX,
            pending_terms: None,
            stop_queue: Vec::with_capacity(256),
            stop_batch: Vec::with_capacity(256),
        }
    }

    /// Limits how many orders an account may have resting: a GTC or GTD limit order of an
    /// account that has `n` resting is rejected `too_many_orders` (after the halted and
    /// blocked checks; IOC, FOK and market orders never rest and are not limited). The
    /// same limit must be set wherever the same commands are replayed (every node of a
    /// shard); it counts the orders resting now, so it can be set on a recovered matcher.
    pub fn with_max_open_orders(mut self, n: u32) -> Self {
        self.max_open_orders = n;
        if n != u32::MAX {
            self.books.count_accounts();
        }
        self
    }

    /// Sets which ids a new order may not take ([`IdUniqueness`]; `Ever` by default). With
    /// `Live`, the dead ids known so far are forgotten at once, and from then on a
    /// `duplicate_order_id` reject means an order with that id is live now. Set it the same
    /// wherever the same commands are replayed (every node of a shard, recovery): switched
    /// from `Live` back to `Ever`, only ids used from then on are remembered.
    pub fn with_id_uniqueness(mut self, rule: IdUniqueness) -> Self {
        if rule == IdUniqueness::Live {
            self.books.forget_dead_ids();
        } else {
            self.books.track_dead_ids();
        }
        self
    }

    /// A matcher that carries on from `state` (a snapshot or a recovered journal).
    pub fn from_state(state: &crate::state::EngineState, cap: MatcherCapacity) -> Self {
        let mut m = Matcher::with_capacity(MatcherCapacity {
            orders: cap.orders.max(state.orders.len()),
            ids: cap.ids,
            gtd: cap.gtd,
        });
        m.books.add_instruments_of(state);
        m.books.reserve_live_ids(state.orders.len());
        m.books.load_used_ids(&state.used_ids);
        m.clock = state.clock;
        m.ledger = state.ledger();
        for r in &state.orders {
            let o = &r.order;
            let i = m.books.insert(OrderNode::from_new(o, o.qty, r.accept_seq));
            if let Some(f) = m.books.book(o.instrument).and_then(|b| b.funding) {
                m.set_hold(i, f.hold(o.side, OrderType::Limit, o.price, o.qty.0));
            }
            if o.tif == TimeInForce::Gtd {
                m.expiries
                    .push(Reverse((o.expiry.0, r.accept_seq, o.order_id.0)));
            }
        }
        let stops = m.books.load_extras(state);
        for (st, &i) in state.stops.iter().zip(&stops) {
            let o = &st.order;
            if let Some(f) = m.books.book(o.instrument).and_then(|b| b.funding) {
                m.set_hold(i, f.hold(o.side, o.order_type, o.price, o.qty.0));
            }
            if o.tif == TimeInForce::Gtd {
                m.expiries
                    .push(Reverse((o.expiry.0, st.accept_seq, o.order_id.0)));
            }
        }
        m.books.end_load();
        m.blocked = state.blocked.iter().map(|a| a.0).collect();
        m.accept_seq = state.accept_seq;
        m
    }

    /// Handles one command, appending its events to `out`.
    #[inline]
    pub fn process(&mut self, seq: Sequence, cmd: &Command, out: &mut Vec<Event>) {
        let start = out.len();
        // Engine time: the command's time, or the latest time seen if that is later (two
        // gateways may stamp out of sequence order; time never goes backwards here).
        let now = Timestamp(cmd.ts.0.max(self.clock));
        self.clock = now.0;
        if let Some(&Reverse((exp, _, _))) = self.expiries.peek() {
            if exp <= now.0 {
                self.expire(seq, now, out);
            }
        }
        match cmd.kind {
            CommandKind::NewOrder(ref o) => {
                if self.pending_terms.is_none() {
                    self.new_order::<false>(seq, now, o, &NO_TERMS, out)
                } else {
                    self.new_order_with_terms(seq, now, o, out)
                }
            }
            CommandKind::OrderTerms(t) => self.pending_terms = Some(t),
            CommandKind::SetMatchPolicy {
                instrument,
                policy,
                min_alloc,
            } => self.set_policy(seq, instrument, policy, min_alloc, out),
            CommandKind::Cancel {
                instrument,
                account,
                order_id,
            } => self.cancel(seq, instrument, account, order_id, out),
            CommandKind::Modify {
                instrument,
                account,
                order_id,
                price,
                qty,
            } => self.modify(seq, instrument, account, order_id, price, qty, out),
            CommandKind::MassCancel {
                account,
                instrument,
            } => self.mass_cancel(seq, account, instrument, out),
            CommandKind::Halt { instrument } => self.set_halted(seq, instrument, true, out),
            CommandKind::Resume { instrument } => self.set_halted(seq, instrument, false, out),
            CommandKind::Block { account } => {
                self.blocked.insert(account.0);
                out.push(Event::new(
                    seq,
                    EventKind::AccountStatus {
                        account,
                        blocked: true,
                    },
                ));
            }
            CommandKind::Unblock { account } => {
                self.blocked.remove(&account.0);
                out.push(Event::new(
                    seq,
                    EventKind::AccountStatus {
                        account,
                        blocked: false,
                    },
                ));
            }
            CommandKind::Tick => {}
            CommandKind::SnapshotRequest { instrument } => {
                if self.has_instrument(instrument) {
                    out.push(Event::new(seq, EventKind::SnapshotRequested { instrument }));
                } else {
                    let code = RejectCode::UnknownInstrument;
                    reject(seq, None, None, AccountId(0), code, out);
                }
            }
            CommandKind::AddInstrument(def) => self.add_instrument(seq, def, out),
            CommandKind::AddAsset { asset, scale } => self.add_asset(seq, asset, scale, out),
            CommandKind::Deposit {
                account,
                asset,
                amount,
            } => self.transfer(seq, account, asset, amount.get(), false, out),
            CommandKind::Withdraw {
                account,
                asset,
                amount,
            } => self.transfer(seq, account, asset, amount.get(), true, out),
            CommandKind::Invalid {
                instrument,
                order_id,
                account,
                code,
            } => reject(seq, instrument, order_id, account, code, out),
        }
        // An order's terms apply to the very next command only.
        if self.pending_terms.is_some() && !matches!(cmd.kind, CommandKind::OrderTerms(_)) {
            self.pending_terms = None;
        }
        if out.len() > start {
            if let Some(last) = out.last_mut() {
                last.set_last_of_command(true);
            }
        }
    }

    /// A new order after [`CommandKind::OrderTerms`]: with them when they name it.
    #[inline(never)]
    fn new_order_with_terms(
        &mut self,
        seq: Sequence,
        now: Timestamp,
        o: &NewOrder,
        out: &mut Vec<Event>,
    ) {
        match self.pending_terms.take() {
            Some(t) if t.order_id == o.order_id => self.new_order::<true>(seq, now, o, &t, out),
            _ => self.new_order::<false>(seq, now, o, &NO_TERMS, out),
        }
    }

    /// The instruments with a book, in id order.
    pub fn instruments(&self) -> impl Iterator<Item = InstrumentId> + '_ {
        self.books.instruments()
    }

    /// True when the instrument has a book.
    pub fn has_instrument(&self, instrument: InstrumentId) -> bool {
        self.books.book(instrument).is_some()
    }

    /// True when the instrument is halted.
    #[inline]
    pub fn is_halted(&self, instrument: InstrumentId) -> bool {
        self.books.book(instrument).is_some_and(|b| b.halted)
    }

    /// True when the account is blocked.
    #[inline]
    pub fn is_blocked(&self, account: AccountId) -> bool {
        !self.blocked.is_empty() && self.blocked.contains(&account.0)
    }

    /// The resting orders of an instrument (see [`MatchingEngine::resting_orders`]).
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

    /// The engine clock: the latest command time handled.
    pub fn clock(&self) -> Timestamp {
        Timestamp(self.clock)
    }

    /// Ranges the order-id index holds for used ids (16 bytes each; one per gap between
    /// used ids): the soak benchmark reports it.
    pub fn used_id_entries(&self) -> usize {
        self.books.used_id_entries()
    }

    /// A live order by id — resting, or a pending stop (its type then reads limit) — with
    /// its current price and open quantity: O(1) (the id index), `None` when it is neither.
    pub fn order(&self, id: OrderId) -> Option<NewOrder> {
        match self.books.id_state(id) {
            IdState::Live(i) => Some(self.books.node(i).as_new_order()),
            _ => None,
        }
    }

    /// The number of pending stop orders (accepted, waiting for their trigger).
    pub fn pending_stop_count(&self) -> usize {
        self.books.pending_count()
    }

    /// The number of resting orders (pending stops are not in the book).
    pub fn resting_count(&self) -> usize {
        self.books.live_count() - self.books.pending_count()
    }

    /// Every balance (read from the matcher's own thread, or after shutdown; other threads
    /// read balances through a consumer's view).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// How an instrument was defined.
    pub fn definition(&self, instrument: InstrumentId) -> Option<InstrumentDef> {
        self.books.book(instrument).map(|b| b.def)
    }

    fn expire(&mut self, seq: Sequence, now: Timestamp, out: &mut Vec<Event>) {
        while let Some(&Reverse((exp, accept_seq, id))) = self.expiries.peek() {
            if exp > now.0 {
                break;
            }
            self.expiries.pop();
            // The order the entry was made for (under `IdUniqueness::Live` its id may have
            // come back on a later order).
            if let IdState::Live(i) = self.books.id_state(OrderId(id)) {
                if self.books.cold(i).accept_seq != accept_seq {
                    continue;
                }
                let n = self.books.node(i);
                out.push(Event::new(
                    seq,
                    EventKind::Expired {
                        instrument: n.instrument,
                        order_id: n.id,
                        account: n.account,
                        qty: n.qty,
                        side: n.side,
                        price: n.price,
                    },
                ));
                self.remove_resting(i);
            }
        }
    }

    #[inline]
    fn best_crosses(&self, book: u32, side: Side, limit: Price) -> bool {
        let Some(book) = self.books.books.get(book as usize) else {
            return false;
        };
        match self.books.best(book, side.opposite()) {
            None => false,
            Some(l) => {
                let p = self.books.levels[l as usize].price;
                match side {
                    Side::Buy => p <= limit,
                    Side::Sell => p >= limit,
                }
            }
        }
    }

    /// A new order; `EXT`: it has terms (an iceberg or a stop), else `terms` is ignored.
    fn new_order<const EXT: bool>(
        &mut self,
        seq: Sequence,
        ts: Timestamp,
        o: &NewOrder,
        terms: &OrderTerms,
        out: &mut Vec<Event>,
    ) {
        let Some(slot) = self.books.slot(o.instrument) else {
            return reject(
                seq,
                None,
                Some(o.order_id),
                o.account,
                RejectCode::UnknownInstrument,
                out,
            );
        };
        let book = &self.books.books[slot as usize];
        let (halted, last_price, policy) = (book.halted, book.last_price, book.policy);
        let general = book.general;
        // The rules are copied only for a funded book: `perf annotate` put 35% of
        // `new_order`'s samples on LOBSTER on copying a whole `Option<Funding>` (its tag a
        // byte inside it) for every order.
        let funding = funding_of(book);
        let code = if o.qty.0 == 0 {
            Some(RejectCode::ZeroQty)
        } else if EXT && terms_problem(o, terms, policy).is_some() {
            terms_problem(o, terms, policy)
        } else if self.books.id_known(o.order_id) {
            Some(RejectCode::DuplicateOrderId)
        } else if halted {
            Some(RejectCode::Halted)
        } else if self.is_blocked(o.account) {
            Some(RejectCode::Blocked)
        } else if self.max_open_orders != u32::MAX
            && o.order_type == OrderType::Limit
            && o.tif.may_rest()
            && self.books.open_orders(o.account) >= self.max_open_orders
        {
            Some(RejectCode::TooManyOrders)
        } else if o.tif == TimeInForce::Gtd && o.expiry <= ts {
            Some(RejectCode::ExpiryInPast)
        } else if o.post_only
            && (o.order_type == OrderType::Market || self.best_crosses(slot, o.side, o.price))
        {
            Some(RejectCode::PostOnlyWouldTake)
        } else if EXT
            && terms.stop.is_some_and(|t| {
                last_price.is_some_and(|p| match o.side {
                    Side::Buy => t <= p,
                    Side::Sell => t >= p,
                })
            })
        {
            Some(RejectCode::StopWouldTrigger)
        } else {
            match &funding {
                Some(f) => self.funds_check_new(f, o, last_price),
                None => None,
            }
        };
        if let Some(code) = code {
            return reject(
                seq,
                Some(o.instrument),
                Some(o.order_id),
                o.account,
                code,
                out,
            );
        }
        if EXT {
            out.push(Event::new(
                seq,
                EventKind::OrderTerms {
                    instrument: o.instrument,
                    terms: *terms,
                },
            ));
        }
        out.push(Event::new(seq, EventKind::accepted(o)));
        self.accept_seq += 1;
        if let (true, Some(stop)) = (EXT, terms.stop) {
            return self.add_pending_stop(slot, o, stop);
        }
        let from = out.len();
        let display = if EXT { terms.display.0 } else { 0 };
        self.arrive(seq, slot, o, display, self.accept_seq, NIL, policy, out);
        if general && self.has_stops(slot) {
            self.run_stops(seq, slot, from, out);
        }
    }

    /// An accepted order arrives: it trades, then rests or leaves. `pending` is the pool
    /// node of an elected stop (NIL for a new order), which keeps its place in the pool and
    /// its acceptance number.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn arrive(
        &mut self,
        seq: Sequence,
        slot: u32,
        o: &NewOrder,
        display: u64,
        accept_seq: u64,
        pending: u32,
        policy: MatchPolicy,
        out: &mut Vec<Event>,
    ) {
        let taker = Taker {
            instrument: o.instrument,
            book: slot,
            id: o.order_id,
            account: o.account,
            side: o.side,
            limit: (o.order_type == OrderType::Limit).then_some(o.price),
            stp: o.stp,
            funded: self.books.books[slot as usize].funding.is_some(),
        };
        if o.tif == TimeInForce::Fok && !self.fok_fillable(&taker, o.qty.0) {
            self.taker_gone(o.order_id, pending);
            self.release_taker(&taker, o.qty.0);
            return cancelled(
                seq,
                o.instrument,
                o.order_id,
                o.account,
                (o.side, order_price(o)),
                o.qty.0,
                CancelReason::Fok,
                out,
            );
        }
        let end = self.match_taker(seq, &taker, o.qty.0, out);
        if end.taker_cancelled || end.remaining == 0 {
            self.taker_gone(o.order_id, pending);
            self.release_taker(&taker, end.remaining);
            return;
        }
        let reason = match (o.order_type, o.tif) {
            _ if end.out_of_funds => Some(CancelReason::InsufficientFunds),
            (OrderType::Market, _) => Some(CancelReason::Market),
            (_, TimeInForce::Ioc) => Some(CancelReason::Ioc),
            (_, TimeInForce::Fok) => Some(CancelReason::Fok),
            _ => None,
        };
        if let Some(reason) = reason {
            self.taker_gone(o.order_id, pending);
            self.release_taker(&taker, end.remaining);
            return cancelled(
                seq,
                o.instrument,
                o.order_id,
                o.account,
                (o.side, order_price(o)),
                end.remaining,
                reason,
                out,
            );
        }
        let i = if pending == NIL {
            let mut node = OrderNode::from_new(o, Qty(end.remaining), accept_seq);
            node.book = slot;
            self.books.insert(node)
        } else {
            self.books.activate(pending, Qty(end.remaining));
            pending
        };
        if display != 0 {
            self.books.set_ext(i, Ext::iceberg(display, end.remaining));
        }
        if policy == MatchPolicy::ProRataTop {
            self.books.rest_top(slot, o.side, i, o.price);
        }
        if let Some(f) = &self.funding(&taker) {
            self.set_hold(i, f.hold(o.side, o.order_type, o.price, end.remaining));
        }
        if o.tif == TimeInForce::Gtd && pending == NIL {
            self.expiries
                .push(Reverse((o.expiry.0, accept_seq, o.order_id.0)));
            self.compact_expiries();
        }
    }

    /// The incoming order is done without resting: a new order's id is recorded as used,
    /// an elected stop leaves the pool (its hold went with the taker's).
    #[inline(always)]
    fn taker_gone(&mut self, id: OrderId, pending: u32) {
        if pending == NIL {
            // Accepted with its id unknown, and never rested: not in the live table.
            self.books.mark_used(id);
        } else {
            self.books.remove(pending);
        }
    }

    fn set_policy(
        &mut self,
        seq: Sequence,
        instrument: InstrumentId,
        policy: MatchPolicy,
        min_alloc: Qty,
        out: &mut Vec<Event>,
    ) {
        let Some(slot) = self.books.slot(instrument) else {
            let code = RejectCode::UnknownInstrument;
            return reject(seq, None, None, AccountId(0), code, out);
        };
        let b = &self.books.books[slot as usize];
        let empty = b
            .bids
            .entries
            .iter()
            .chain(b.asks.entries.iter())
            .all(|&(_, l)| self.books.levels[l as usize].count == 0)
            && !self.has_stops(slot);
        if !empty || min_alloc.0 == 0 || (policy == MatchPolicy::Fifo && min_alloc.0 != 1) {
            let code = RejectCode::InvalidInstrument;
            return reject(seq, Some(instrument), None, AccountId(0), code, out);
        }
        let b = &mut self.books.books[slot as usize];
        b.policy = policy;
        b.min_alloc = min_alloc.0;
        b.top = [0, 0];
        b.refresh_general();
        out.push(Event::new(
            seq,
            EventKind::MatchPolicySet {
                instrument,
                policy,
                min_alloc,
            },
        ));
    }

    /// Entries of GTD orders that left the book early (cancelled, filled) stay in the
    /// expiry heap until their expiry comes up; when they outnumber the live orders, they
    /// are dropped in place (no allocation), so the heap stays proportional to the live
    /// orders, at amortized O(1) per GTD order.
    fn compact_expiries(&mut self) {
        if self.expiries.len() <= 2 * self.books.live_count() + self.expiry_slack {
            return;
        }
        let books = &self.books;
        self.expiries.retain(|&Reverse((_, accept_seq, id))| {
            matches!(books.id_state(OrderId(id)),
                IdState::Live(i) if books.cold(i).accept_seq == accept_seq)
        });
    }

    /// The number of entries in the GTD expiry heap (live GTD orders plus entries of ones
    /// that left early and were not dropped yet).
    pub fn expiry_entries(&self) -> usize {
        self.expiries.len()
    }

    /// Whether a FOK order can fill completely now, walking the book as matching would
    /// (self-trade prevention included).
    fn fok_fillable(&self, taker: &Taker, qty: u64) -> bool {
        if self
            .books
            .books
            .get(taker.book as usize)
            .is_some_and(|b| b.policy.is_pro_rata())
        {
            return self.fok_fillable_pro_rata(taker, qty);
        }
        if let (Some(f), None, Side::Buy) = (&self.funding(taker), taker.limit, taker.side) {
            return self.fok_payable(f, taker, qty);
        }
        let Some(book) = self.books.books.get(taker.book as usize) else {
            return false;
        };
        let mut avail: u128 = 0;
        for &(_, l) in book.side(taker.side.opposite()).entries.iter().rev() {
            let lv = &self.books.levels[l as usize];
            if lv.count == 0 {
                continue;
            }
            if !taker.crosses(lv.price) {
                break;
            }
            if taker.stp == SelfTradePrevention::Allow {
                avail += lv.qty();
            } else {
                let mut i = lv.head;
                while i != NIL {
                    let n = self.books.hot(i);
                    if n.account == taker.account {
                        if taker.stp != SelfTradePrevention::CancelMaker {
                            return avail >= qty as u128;
                        }
                    } else {
                        avail += n.qty.0 as u128;
                        if avail >= qty as u128 {
                            return true;
                        }
                    }
                    i = n.next;
                }
            }
            if avail >= qty as u128 {
                return true;
            }
        }
        avail >= qty as u128
    }

    /// Matches an incoming order against the opposite side, best price first, FIFO within a
    /// level. Emits fills and self-trade cancels.
    fn match_taker(
        &mut self,
        seq: Sequence,
        taker: &Taker,
        mut remaining: u64,
        out: &mut Vec<Event>,
    ) -> MatchEnd {
        if let Some(b) = self.books.books.get(taker.book as usize) {
            if b.general && (b.icebergs != 0 || b.policy != MatchPolicy::Fifo) {
                return self.match_general(seq, taker, remaining, out);
            }
        }
        let opp = taker.side.opposite();
        let mut last_price = None;
        let mut end = MatchEnd {
            remaining,
            taker_cancelled: false,
            out_of_funds: false,
        };
        'book: while remaining > 0 {
            let Some(book) = self.books.books.get(taker.book as usize) else {
                break;
            };
            let Some(l) = self.books.best(book, opp) else {
                break;
            };
            let (price, mut i) = {
                let lv = &self.books.levels[l as usize];
                (lv.price, lv.head)
            };
            if !taker.crosses(price) {
                break;
            }
            while i != NIL && remaining > 0 {
                let n = *self.books.hot(i);
                let next = n.next;
                if n.account == taker.account && taker.stp != SelfTradePrevention::Allow {
                    if taker.stp != SelfTradePrevention::CancelTaker {
                        let n = self.books.node(i);
                        cancelled(
                            seq,
                            n.instrument,
                            n.id,
                            n.account,
                            (n.side, n.price),
                            n.qty.0,
                            CancelReason::SelfTrade,
                            out,
                        );
                        self.remove_resting(i);
                    }
                    if taker.stp != SelfTradePrevention::CancelMaker {
                        cancelled(
                            seq,
                            taker.instrument,
                            taker.id,
                            taker.account,
                            (taker.side, taker.limit.unwrap_or(Price(0))),
                            remaining,
                            CancelReason::SelfTrade,
                            out,
                        );
                        end.taker_cancelled = true;
                        break 'book;
                    }
                } else {
                    let mut q = remaining.min(n.qty.0);
                    if let (Some(f), None, Side::Buy) =
                        (&self.funding(taker), taker.limit, taker.side)
                    {
                        // A market buy pays as it goes.
                        q = f.affordable(price, q, self.ledger.available(taker.account, f.quote));
                        if q == 0 {
                            end.out_of_funds = true;
                            break 'book;
                        }
                    }
                    out.push(Event::new(
                        seq,
                        EventKind::Fill {
                            instrument: taker.instrument,
                            taker: taker.id,
                            maker: self.books.cold(i).id,
                            maker_account: n.account,
                            price,
                            qty: Qty(q),
                            maker_left: Qty(n.qty.0 - q),
                            taker_side: taker.side,
                        },
                    ));
                    if let Some(f) = &self.funding(taker) {
                        let n = self.books.node(i);
                        self.settle(seq, f, taker, remaining, &n, i, price, q, out);
                    }
                    last_price = Some(price);
                    remaining -= q;
                    if q == n.qty.0 {
                        self.books.remove(i);
                    } else {
                        // The maker keeps the rest: either the taker is done, or a market
                        // buy paid for part of it and meets it again.
                        self.books.set_qty(i, Qty(n.qty.0 - q));
                        continue;
                    }
                }
                i = next;
            }
        }
        if last_price.is_some() {
            if let Some(b) = self.books.books.get_mut(taker.book as usize) {
                b.last_price = last_price;
            }
        }
        end.remaining = remaining;
        end
    }

    /// Looks up a live order of `account` in `instrument` (its pool index and its book's
    /// slot), or says why not.
    #[inline(always)]
    fn owned_order(
        &self,
        instrument: InstrumentId,
        account: AccountId,
        order_id: OrderId,
    ) -> Result<(u32, u32), RejectCode> {
        let Some(slot) = self.books.slot(instrument) else {
            return Err(RejectCode::UnknownInstrument);
        };
        let IdState::Live(i) = self.books.id_state(order_id) else {
            return Err(RejectCode::UnknownOrder);
        };
        let n = self.books.hot(i);
        if n.book() != slot {
            Err(RejectCode::UnknownOrder)
        } else if n.account != account {
            Err(RejectCode::NotOwner)
        } else {
            Ok((i, slot))
        }
    }

    fn cancel(
        &mut self,
        seq: Sequence,
        instrument: InstrumentId,
        account: AccountId,
        order_id: OrderId,
        out: &mut Vec<Event>,
    ) {
        match self.owned_order(instrument, account, order_id) {
            Err(code) => reject_ref(seq, instrument, order_id, account, code, out),
            Ok((i, _)) => {
                let (h, price) = (*self.books.hot(i), self.books.cold(i).price);
                cancelled(
                    seq,
                    instrument,
                    order_id,
                    account,
                    (h.side(), price),
                    h.qty.0,
                    CancelReason::User,
                    out,
                );
                self.remove_resting(i);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn modify(
        &mut self,
        seq: Sequence,
        instrument: InstrumentId,
        account: AccountId,
        order_id: OrderId,
        price: Price,
        qty: Qty,
        out: &mut Vec<Event>,
    ) {
        let (i, slot) = match self.owned_order(instrument, account, order_id) {
            Err(code) => return reject_ref(seq, instrument, order_id, account, code, out),
            Ok(x) => x,
        };
        let (h, c) = (self.books.hot(i), self.books.cold(i));
        let (old_price, old_qty, side, post_only, stp) =
            (c.price, h.qty, h.side(), c.post_only, c.stp);
        let b = &self.books.books[slot as usize];
        let (halted, funded) = (b.halted, b.funding.is_some());
        // A book with a policy, icebergs or stops takes the general path below.
        let special = b.general;
        let code = if special && self.is_pending_stop(i) {
            Some(RejectCode::StopPending)
        } else if halted {
            Some(RejectCode::Halted)
        } else if self.is_blocked(account) {
            Some(RejectCode::Blocked)
        } else if qty.0 == 0 {
            Some(RejectCode::ZeroQty)
        } else if post_only && price != old_price && self.best_crosses(slot, side, price) {
            Some(RejectCode::PostOnlyWouldTake)
        } else {
            match funded {
                true => self.funds_check_modify(slot, i, price, qty.0),
                false => None,
            }
        };
        if let Some(code) = code {
            return reject(seq, Some(instrument), Some(order_id), account, code, out);
        }
        let kept_priority = price == old_price && qty <= old_qty;
        out.push(Event::new(
            seq,
            EventKind::Modified {
                instrument,
                order_id,
                account,
                price,
                qty,
                kept_priority,
                side,
                old_price,
                old_qty,
            },
        ));
        if special {
            return self.modify_special(seq, slot, i, (price, qty), kept_priority, out);
        }
        if kept_priority {
            self.books.set_qty(i, qty);
            return;
        }
        if !self.books.move_to_back(i, price, qty) {
            return;
        }
        let taker = self.repriced(slot, order_id, account, side, price, stp);
        let end = self.match_taker(seq, &taker, qty.0, out);
        if end.taker_cancelled || end.remaining == 0 {
            self.release_taker(&taker, end.remaining);
            self.books.remove(i);
        } else if end.remaining != qty.0 {
            self.books.set_qty(i, Qty(end.remaining));
            if let Some(f) = &self.funding(&taker) {
                self.set_hold(i, f.hold(side, OrderType::Limit, price, end.remaining));
            }
        }
    }

    /// A modified order as the taker at its new price (a modify that loses its place trades
    /// like a new order).
    #[inline]
    fn repriced(
        &self,
        slot: u32,
        id: OrderId,
        account: AccountId,
        side: Side,
        price: Price,
        stp: SelfTradePrevention,
    ) -> Taker {
        let book = &self.books.books[slot as usize];
        Taker {
            instrument: book.def.id,
            book: slot,
            id,
            account,
            side,
            limit: Some(price),
            stp,
            funded: book.funding.is_some(),
        }
    }

    /// The funding rules of a taker's book (a copy), when it is funded.
    #[inline(always)]
    fn funding(&self, taker: &Taker) -> Option<Funding> {
        if taker.funded {
            funding_of(&self.books.books[taker.book as usize])
        } else {
            None
        }
    }

    /// The rest of a modify (already checked and reported) in a book with a policy,
    /// icebergs or stops: the iceberg's peak, the TOP order, the trade, the stops it elects.
    #[inline(never)]
    fn modify_special(
        &mut self,
        seq: Sequence,
        slot: u32,
        i: u32,
        (price, qty): (Price, Qty),
        kept_priority: bool,
        out: &mut Vec<Event>,
    ) {
        let ext = self.books.ext(i);
        if kept_priority {
            self.books.set_qty(i, qty);
            if ext.is_iceberg() {
                self.books.set_peak(i, ext.peak.min(qty.0));
            }
            return;
        }
        let (side, account, order_id, stp) = {
            let n = self.books.node(i);
            (n.side, n.account, n.id, n.stp)
        };
        if self.books.top(slot, side) == i {
            self.books.clear_top(slot, side);
        }
        if ext.is_iceberg() {
            self.books.set_peak(i, ext.display.min(qty.0));
        }
        if !self.books.move_to_back(i, price, qty) {
            return self.books.rest_top(slot, side, i, price);
        }
        let taker = self.repriced(slot, order_id, account, side, price, stp);
        let from = out.len();
        let end = self.match_taker(seq, &taker, qty.0, out);
        if end.taker_cancelled || end.remaining == 0 {
            self.release_taker(&taker, end.remaining);
            self.books.remove(i);
        } else {
            if end.remaining != qty.0 {
                self.books.set_qty(i, Qty(end.remaining));
                if ext.is_iceberg() {
                    self.books.set_peak(i, ext.display.min(end.remaining));
                }
                if let Some(f) = &self.funding(&taker) {
                    self.set_hold(i, f.hold(side, OrderType::Limit, price, end.remaining));
                }
            }
            self.books.rest_top(slot, side, i, price);
        }
        if self.has_stops(slot) {
            self.run_stops(seq, slot, from, out);
        }
    }

    fn mass_cancel(
        &mut self,
        seq: Sequence,
        account: AccountId,
        instrument: Option<InstrumentId>,
        out: &mut Vec<Event>,
    ) {
        if let Some(inst) = instrument {
            if self.books.book(inst).is_none() {
                return reject(seq, None, None, account, RejectCode::UnknownInstrument, out);
            }
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        // Only the account's own orders are visited (a per-account list in the pool).
        let books = &self.books;
        scratch.extend(
            self.books
                .account_orders(account)
                .map(|i| (i, books.cold(i)))
                .filter(|(_, n)| instrument.is_none_or(|x| x == n.instrument))
                .map(|(i, n)| (n.accept_seq, i)),
        );
        scratch.sort_unstable();
        for &(_, i) in &scratch {
            let n = self.books.node(i);
            cancelled(
                seq,
                n.instrument,
                n.id,
                n.account,
                (n.side, n.price),
                n.qty.0,
                CancelReason::MassCancel,
                out,
            );
            self.remove_resting(i);
        }
        self.scratch = scratch;
    }

    fn set_halted(
        &mut self,
        seq: Sequence,
        instrument: InstrumentId,
        halted: bool,
        out: &mut Vec<Event>,
    ) {
        match self.books.book_mut(instrument) {
            None => reject(
                seq,
                None,
                None,
                AccountId(0),
                RejectCode::UnknownInstrument,
                out,
            ),
            Some(b) => {
                b.halted = halted;
                out.push(Event::new(
                    seq,
                    EventKind::InstrumentStatus { instrument, halted },
                ));
            }
        }
    }
}

impl MatchingEngine for Matcher {
    #[inline]
    fn process(&mut self, seq: Sequence, cmd: &Command, out: &mut Vec<Event>) {
        Matcher::process(self, seq, cmd, out)
    }

    fn resting_orders(&self, instrument: InstrumentId) -> Vec<RestingOrder> {
        Matcher::resting_orders(self, instrument)
    }

    fn balances(&self) -> Vec<(AccountId, crate::funds::AssetId, Balance)> {
        self.ledger.balances()
    }
}

#[inline]
fn reject(
    seq: Sequence,
    instrument: Option<InstrumentId>,
    order_id: Option<OrderId>,
    account: AccountId,
    code: RejectCode,
    out: &mut Vec<Event>,
) {
    out.push(Event::new(
        seq,
        EventKind::Rejected {
            instrument,
            order_id,
            account,
            code,
        },
    ));
}

/// A reject of a command that names an order: the instrument is left out when unknown.
#[inline]
fn reject_ref(
    seq: Sequence,
    instrument: InstrumentId,
    order_id: OrderId,
    account: AccountId,
    code: RejectCode,
    out: &mut Vec<Event>,
) {
    let inst = (code != RejectCode::UnknownInstrument).then_some(instrument);
    reject(seq, inst, Some(order_id), account, code, out)
}

/// A book's funding rules, copied only when it has them.
#[inline(always)]
fn funding_of(book: &crate::book::books::InstrumentBook) -> Option<Funding> {
    book.funding.as_ref().copied()
}

/// Why an order's terms (display size, stop trigger) cannot be used, if they cannot.
fn terms_problem(o: &NewOrder, t: &OrderTerms, policy: MatchPolicy) -> Option<RejectCode> {
    if let Some(stop) = t.stop {
        if o.post_only || t.display.0 != 0 {
            return Some(RejectCode::InvalidStop);
        }
        if stop.0 <= 0 {
            return Some(RejectCode::BadPrice);
        }
        return None;
    }
    let ok = o.order_type == OrderType::Limit
        && o.tif.may_rest()
        && t.display.0 <= o.qty.0
        && !policy.is_pro_rata();
    (!ok).then_some(RejectCode::InvalidDisplay)
}

/// The price an order's events report: its limit, or 0 for a market order.
#[inline]
fn order_price(o: &NewOrder) -> Price {
    match o.order_type {
        OrderType::Limit => o.price,
        OrderType::Market => Price(0),
    }
}

#[inline]
#[allow(clippy::too_many_arguments)]
fn cancelled(
    seq: Sequence,
    instrument: InstrumentId,
    order_id: OrderId,
    account: AccountId,
    (side, price): (Side, Price),
    qty: u64,
    reason: CancelReason,
    out: &mut Vec<Event>,
) {
    out.push(Event::new(
        seq,
        EventKind::Cancelled {
            instrument,
            order_id,
            account,
            qty: Qty(qty),
            reason,
            side,
            price,
        },
    ));
}
