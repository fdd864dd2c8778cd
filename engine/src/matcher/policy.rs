//! Matching policies and order types (docs/formats.md, "Matching policies and order
//! types"): pro-rata levels with a TOP order, icebergs in FIFO books, and pending stops
//! elected by the command's trades.
//!
//! A FIFO book with no iceberg resting never comes here: [`Matcher::match_taker`] checks
//! one byte of the book and keeps its plain loop. Nothing here allocates once warm: a
//! level's shares are computed in two passes over the level (the allocations are
//! recomputed, not stored), and the stop queue reuses its buffers.

use super::{cancelled, funding_of, MatchEnd, Matcher, Taker, NIL};
use crate::book::books::IdState;
use crate::book::ext::{Ext, STOP_MARKET};
use crate::command::NewOrder;
use crate::event::{CancelReason, Event, EventKind};
use crate::types::{
    InstrumentId, MatchPolicy, OrderType, Price, Qty, SelfTradePrevention, Sequence, Side,
    TimeInForce,
};
use std::cmp::Reverse;

/// How one pro-rata level ended.
enum LevelEnd {
    /// Go on to the next level (or stop: nothing left).
    Next,
    /// Self-trade prevention cancelled the taker's rest.
    TakerCancelled,
    /// A funded market buy could not pay for more.
    OutOfFunds,
}

impl Matcher {
    /// Matching for books with a policy or an iceberg: FIFO with peaks, or pro-rata levels.
    pub(super) fn match_general(
        &mut self,
        seq: Sequence,
        taker: &Taker,
        mut remaining: u64,
        out: &mut Vec<Event>,
    ) -> MatchEnd {
        let opp = taker.side.opposite();
        let mut end = MatchEnd {
            remaining,
            taker_cancelled: false,
            out_of_funds: false,
        };
        let mut last_price = None;
        let policy = self.books.books[taker.book as usize].policy;
        while remaining > 0 {
            let Some(l) = self.books.best(&self.books.books[taker.book as usize], opp) else {
                break;
            };
            let price = self.books.levels[l as usize].price;
            if !taker.crosses(price) {
                break;
            }
            let before = remaining;
            let r = if policy.is_pro_rata() {
                self.pro_rata_level(seq, taker, l, price, &mut remaining, out)
            } else {
                self.fifo_level(seq, taker, l, price, &mut remaining, out)
            };
            if remaining != before {
                last_price = Some(price);
            }
            match r {
                LevelEnd::Next => {}
                LevelEnd::TakerCancelled => {
                    end.taker_cancelled = true;
                    break;
                }
                LevelEnd::OutOfFunds => {
                    end.out_of_funds = true;
                    break;
                }
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

    /// One FIFO level with icebergs: always at the head of the queue; an iceberg shows its
    /// peak, and a used-up peak with hidden lots left goes to the back with a new one.
    fn fifo_level(
        &mut self,
        seq: Sequence,
        taker: &Taker,
        l: u32,
        price: Price,
        remaining: &mut u64,
        out: &mut Vec<Event>,
    ) -> LevelEnd {
        while *remaining > 0 {
            let i = self.books.levels[l as usize].head;
            if i == NIL {
                return LevelEnd::Next;
            }
            let n = *self.books.hot(i);
            if n.account == taker.account && taker.stp != SelfTradePrevention::Allow {
                if taker.stp != SelfTradePrevention::CancelTaker {
                    self.cancel_own_maker(seq, i, out);
                }
                if taker.stp != SelfTradePrevention::CancelMaker {
                    self.cancel_taker_rest(seq, taker, *remaining, out);
                    return LevelEnd::TakerCancelled;
                }
                continue;
            }
            let e = self.books.ext(i);
            let shown = if e.is_iceberg() {
                e.peak.min(n.qty.0)
            } else {
                n.qty.0
            };
            let mut q = (*remaining).min(shown);
            if let (Some(f), None, Side::Buy) = (&self.funding(taker), taker.limit, taker.side) {
                q = f.affordable(price, q, self.ledger.available(taker.account, f.quote));
                if q == 0 {
                    return LevelEnd::OutOfFunds;
                }
            }
            self.fill(seq, taker, i, price, q, *remaining, out);
            *remaining -= q;
            let left = n.qty.0 - q;
            if left == 0 {
                self.books.remove(i);
            } else {
                self.books.set_qty(i, Qty(left));
                if e.is_iceberg() {
                    let peak = shown - q;
                    if peak == 0 {
                        self.books.set_peak(i, e.display.min(left));
                        self.books.requeue(i);
                    } else {
                        self.books.set_peak(i, peak);
                    }
                }
            }
        }
        LevelEnd::Next
    }

    /// One fill of `q` lots against pool order `i` at `price`, settled when funded.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn fill(
        &mut self,
        seq: Sequence,
        taker: &Taker,
        i: u32,
        price: Price,
        q: u64,
        taker_open: u64,
        out: &mut Vec<Event>,
    ) {
        let h = *self.books.hot(i);
        out.push(Event::new(
            seq,
            EventKind::Fill {
                instrument: taker.instrument,
                taker: taker.id,
                maker: self.books.cold(i).id,
                maker_account: h.account,
                price,
                qty: Qty(q),
                maker_left: Qty(h.qty.0 - q),
                taker_side: taker.side,
            },
        ));
        if let Some(f) = &self.funding(taker) {
            let n = self.books.node(i);
            self.settle(seq, f, taker, taker_open, &n, i, price, q, out);
        }
    }

    /// Self-trade prevention cancels resting order `i` (reason `stp`).
    fn cancel_own_maker(&mut self, seq: Sequence, i: u32, out: &mut Vec<Event>) {
        let n = self.books.node(i);
        let what = (n.side, n.price);
        let r = CancelReason::SelfTrade;
        cancelled(seq, n.instrument, n.id, n.account, what, n.qty.0, r, out);
        self.remove_resting(i);
    }

    fn cancel_taker_rest(&mut self, seq: Sequence, taker: &Taker, open: u64, out: &mut Vec<Event>) {
        cancelled(
            seq,
            taker.instrument,
            taker.id,
            taker.account,
            (taker.side, taker.limit.unwrap_or(Price(0))),
            open,
            CancelReason::SelfTrade,
            out,
        );
    }

    /// One pro-rata level: self-trade prevention for the whole level first, then the TOP
    /// order, the size shares (`floor(R × q_i / T)`, below `min_alloc` none) and what is
    /// left in time priority; one fill per maker, the TOP order's first.
    fn pro_rata_level(
        &mut self,
        seq: Sequence,
        taker: &Taker,
        l: u32,
        price: Price,
        remaining: &mut u64,
        out: &mut Vec<Event>,
    ) -> LevelEnd {
        if taker.stp != SelfTradePrevention::Allow && self.level_has_account(l, taker) {
            if taker.stp != SelfTradePrevention::CancelTaker {
                let mut i = self.books.levels[l as usize].head;
                while i != NIL {
                    let next = self.books.hot(i).next;
                    if self.books.hot(i).account == taker.account {
                        self.cancel_own_maker(seq, i, out);
                    }
                    i = next;
                }
            }
            if taker.stp != SelfTradePrevention::CancelMaker {
                self.cancel_taker_rest(seq, taker, *remaining, out);
                return LevelEnd::TakerCancelled;
            }
            if self.books.levels[l as usize].count == 0 {
                return LevelEnd::Next;
            }
        }
        let book = &self.books.books[taker.book as usize];
        let (policy, min_alloc) = (book.policy, book.min_alloc);
        let top_idx = match self.books.top(taker.book, taker.side.opposite()) {
            t if t != NIL && policy == MatchPolicy::ProRataTop && self.books.hot(t).level == l => t,
            _ => NIL,
        };
        let total = self.books.levels[l as usize].qty();
        let mut q_take = *remaining;
        let mut capped = false;
        if let (Some(f), None, Side::Buy) = (&self.funding(taker), taker.limit, taker.side) {
            let q = f.affordable(price, q_take, self.ledger.available(taker.account, f.quote));
            if q == 0 {
                return LevelEnd::OutOfFunds;
            }
            capped = q < q_take;
            q_take = q;
        }
        if q_take as u128 >= total {
            // Every order fills completely: the TOP order first, then queue order.
            if top_idx != NIL {
                let q = self.books.hot(top_idx).qty.0;
                self.fill(seq, taker, top_idx, price, q, *remaining, out);
                *remaining -= q;
                self.books.remove(top_idx);
            }
            while self.books.levels[l as usize].head != NIL {
                let i = self.books.levels[l as usize].head;
                let q = self.books.hot(i).qty.0;
                self.fill(seq, taker, i, price, q, *remaining, out);
                *remaining -= q;
                self.books.remove(i);
            }
        } else {
            let mut r = q_take;
            let mut top_share = 0;
            let mut t = total;
            if top_idx != NIL {
                let tq = self.books.hot(top_idx).qty.0;
                top_share = r.min(tq);
                r -= top_share;
                t -= tq as u128;
            }
            let share = |q: u64| -> u64 {
                if t == 0 {
                    return 0;
                }
                let a = (r as u128 * q as u128 / t) as u64;
                if a < min_alloc {
                    0
                } else {
                    a
                }
            };
            let mut allocated: u64 = 0;
            let mut i = self.books.levels[l as usize].head;
            while i != NIL {
                let h = self.books.hot(i);
                if i != top_idx {
                    allocated += share(h.qty.0);
                }
                i = h.next;
            }
            let mut left = r - allocated;
            if top_share > 0 {
                self.fill_share(seq, taker, top_idx, price, top_share, remaining, out);
            }
            let mut i = self.books.levels[l as usize].head;
            while i != NIL {
                let h = *self.books.hot(i);
                if i != top_idx {
                    let a = share(h.qty.0);
                    let extra = left.min(h.qty.0 - a);
                    left -= extra;
                    if a + extra > 0 {
                        self.fill_share(seq, taker, i, price, a + extra, remaining, out);
                    }
                }
                i = h.next;
            }
        }
        if capped {
            LevelEnd::OutOfFunds
        } else {
            LevelEnd::Next
        }
    }

    /// Fills maker `i` with its share and takes it out when it is used up.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn fill_share(
        &mut self,
        seq: Sequence,
        taker: &Taker,
        i: u32,
        price: Price,
        q: u64,
        remaining: &mut u64,
        out: &mut Vec<Event>,
    ) {
        self.fill(seq, taker, i, price, q, *remaining, out);
        *remaining -= q;
        let left = self.books.hot(i).qty.0 - q;
        if left == 0 {
            self.books.remove(i);
        } else {
            self.books.set_qty(i, Qty(left));
        }
    }

    fn level_has_account(&self, l: u32, taker: &Taker) -> bool {
        let mut i = self.books.levels[l as usize].head;
        while i != NIL {
            let h = self.books.hot(i);
            if h.account == taker.account {
                return true;
            }
            i = h.next;
        }
        false
    }

    /// FOK on a pro-rata book: whole levels, self-trade prevention per level.
    pub(super) fn fok_fillable_pro_rata(&self, taker: &Taker, qty: u64) -> bool {
        let Some(book) = self.books.books.get(taker.book as usize) else {
            return false;
        };
        let funded_market_buy = matches!(
            (&self.funding(taker), taker.limit, taker.side),
            (Some(_), None, Side::Buy)
        );
        let mut available = self
            .funding(taker)
            .map_or(0, |f| self.ledger.available(taker.account, f.quote));
        let mut need = qty as u128;
        for &(_, l) in book.side(taker.side.opposite()).entries.iter().rev() {
            let lv = &self.books.levels[l as usize];
            if lv.count == 0 {
                continue;
            }
            if !taker.crosses(lv.price) {
                break;
            }
            let mut level = lv.qty();
            if taker.stp != SelfTradePrevention::Allow && self.level_has_account(l, taker) {
                if taker.stp != SelfTradePrevention::CancelMaker {
                    return false;
                }
                let mut i = lv.head;
                while i != NIL {
                    let h = self.books.hot(i);
                    if h.account == taker.account {
                        level -= h.qty.0 as u128;
                    }
                    i = h.next;
                }
            }
            let want = need.min(level) as u64;
            let mut got = want;
            if let (true, Some(f)) = (funded_market_buy, &self.funding(taker)) {
                got = f.affordable(lv.price, want, available);
                available = available.saturating_sub(f.taker_cost(lv.price, got));
                if got < want {
                    return need == got as u128;
                }
            }
            need -= got as u128;
            if need == 0 {
                return true;
            }
        }
        false
    }

    /// After a command traded in book `slot` (its events from `from` on), elects the
    /// pending stops its trades reached, in acceptance order, and lets each arrive; their
    /// trades elect more, queued behind.
    ///
    /// Most commands reach no stop: that test (two reads and two peeks) is made inline at
    /// the caller, and only a command that reaches one calls the election loop.
    #[inline(always)]
    pub(super) fn run_stops(
        &mut self,
        seq: Sequence,
        slot: u32,
        from: usize,
        out: &mut Vec<Event>,
    ) {
        let reached = self.traded(slot, &out[from..]).is_some_and(|(lo, hi)| {
            self.books.books[slot as usize]
                .stops
                .as_ref()
                .is_some_and(|st| st.reaches(lo.0, hi.0))
        });
        if reached {
            self.elect_stops(seq, slot, from, out);
        }
    }

    /// [`Matcher::run_stops`] once a trade of the command reached a stop's trigger.
    #[inline(never)]
    fn elect_stops(&mut self, seq: Sequence, slot: u32, from: usize, out: &mut Vec<Event>) {
        let instrument = self.books.books[slot as usize].def.id;
        let mut queue = std::mem::take(&mut self.stop_queue);
        let mut batch = std::mem::take(&mut self.stop_batch);
        queue.clear();
        let mut head = 0;
        let mut scan = from;
        loop {
            if let Some((lo, hi)) = self.traded(slot, &out[scan..]) {
                batch.clear();
                if let Some(st) = self.books.books[slot as usize].stops.as_mut() {
                    st.pop_reached(lo.0, hi.0, &mut batch);
                }
                batch.retain(|&(s, i)| self.books.is_pending(i, s));
                batch.sort_unstable();
                batch.dedup();
                for &(s, i) in &batch {
                    let market = self.books.ext(i).kind == STOP_MARKET;
                    self.books.elect(i);
                    queue.push((s, i, market));
                }
            }
            if head == queue.len() {
                break;
            }
            let (accept_seq, i, market) = queue[head];
            head += 1;
            let n = self.books.node(i);
            let stop = Price(self.books.ext(i).stop);
            out.push(Event::new(
                seq,
                EventKind::Triggered {
                    instrument,
                    order_id: n.id,
                    account: n.account,
                    side: n.side,
                    stop,
                },
            ));
            scan = out.len();
            let mut o = n.as_new_order();
            if market {
                o.order_type = OrderType::Market;
                o.price = Price(0);
            }
            let policy = self.books.books[slot as usize].policy;
            self.arrive(seq, slot, &o, 0, accept_seq, i, policy, out);
        }
        self.stop_queue = queue;
        self.stop_batch = batch;
    }

    /// The lowest and highest price at which `events` (one incoming order's arrival in book
    /// `slot`) traded. Its fills walk the opposite side from the best level outwards, so their
    /// prices are monotonic: the first fill's price and the last (the book's last price)
    /// bound them, and the events need not be scanned past the first fill.
    #[inline(always)]
    fn traded(&self, slot: u32, events: &[Event]) -> Option<(Price, Price)> {
        let first = events.iter().find_map(|e| match e.kind {
            EventKind::Fill { price, .. } => Some(price),
            _ => None,
        })?;
        let last = self.books.books[slot as usize].last_price?;
        let r = (first.min(last), first.max(last));
        debug_assert_eq!(
            Some(r),
            trade_range(events, self.books.books[slot as usize].def.id)
        );
        Some(r)
    }

    /// Records a pending stop (its hold is taken): outside the book until elected.
    pub(super) fn add_pending_stop(&mut self, slot: u32, o: &NewOrder, stop: Price) {
        let mut node = crate::book::order::OrderNode::from_new(o, o.qty, self.accept_seq);
        node.book = slot;
        if o.order_type == OrderType::Market {
            node.price = Price(0);
        }
        let market = o.order_type == OrderType::Market;
        let i = self.books.insert_pending(node, Ext::stop(stop.0, market));
        if let Some(f) = funding_of(&self.books.books[slot as usize]) {
            self.set_hold(i, f.hold(o.side, o.order_type, o.price, o.qty.0));
        }
        if o.tif == TimeInForce::Gtd {
            self.expiries
                .push(Reverse((o.expiry.0, self.accept_seq, o.order_id.0)));
            self.compact_expiries();
        }
        self.compact_stops(slot);
    }

    /// Drops stale entries of a book's stop queues when they outnumber the pending stops.
    fn compact_stops(&mut self, slot: u32) {
        let due = self.books.books[slot as usize]
            .stops
            .as_ref()
            .is_some_and(|st| st.len() > 2 * st.count as usize + 64);
        if !due {
            return;
        }
        if let Some(mut st) = self.books.books[slot as usize].stops.take() {
            let books = &self.books;
            st.retain(|s, i| books.is_pending(i, s));
            self.books.books[slot as usize].stops = Some(st);
        }
    }

    /// True when a pending stop of a book rests (the book has stops to elect).
    #[inline]
    pub(super) fn has_stops(&self, slot: u32) -> bool {
        self.books.books[slot as usize]
            .stops
            .as_ref()
            .is_some_and(|s| s.count > 0)
    }

    /// True when `idx` is a live pending stop (a modify is refused).
    #[inline]
    pub(super) fn is_pending_stop(&self, idx: u32) -> bool {
        self.books.ext(idx).is_stop()
    }

    /// A resting order (by id) and whether it is an iceberg: (display, peak).
    pub fn iceberg_of(&self, id: crate::types::OrderId) -> Option<(Qty, Qty)> {
        match self.books.id_state(id) {
            IdState::Live(i) => {
                let e = self.books.ext(i);
                e.is_iceberg().then_some((Qty(e.display), Qty(e.peak)))
            }
            _ => None,
        }
    }
}

/// The lowest and highest price of the fills of `instrument` among `events` (what
/// [`Matcher::traded`] finds without scanning them all; checked against it in debug builds).
fn trade_range(events: &[Event], instrument: InstrumentId) -> Option<(Price, Price)> {
    let mut r: Option<(Price, Price)> = None;
    for e in events {
        if let EventKind::Fill {
            instrument: i,
            price,
            ..
        } = e.kind
        {
            if i == instrument {
                r = Some(match r {
                    None => (price, price),
                    Some((lo, hi)) => (lo.min(price), hi.max(price)),
                });
            }
        }
    }
    r
}
