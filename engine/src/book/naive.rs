//! [`NaiveMatcher`]: the reference. Obviously correct and slow: every resting order sits in
//! one `Vec`, and each step of a match scans and sorts. It shares no book code with the fast
//! [`crate::Matcher`]; the proptest differential tests run both on the same random command
//! streams and require identical events and identical books.
//!
//! Its money is as plain: it keeps only each account's totals, and computes what an account
//! holds by summing the holds of its resting orders whenever it needs it, with fees and
//! bands in straightforward `i128` and `Decimal` arithmetic.

use crate::book::books::RestingOrder;
use crate::command::{Command, CommandKind, NewOrder, OrderTerms};
use crate::event::{CancelReason, Event, EventKind, RejectCode};
use crate::funds::{Amount, AssetId, Balance, InstrumentDef, Rate};
use crate::matching::MatchingEngine;
use crate::types::{
    AccountId, IdUniqueness, InstrumentId, MatchPolicy, OrderId, OrderType, Price, Qty,
    SelfTradePrevention, Sequence, Side, TimeInForce,
};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, Debug)]
struct Resting {
    order: NewOrder,
    /// When it joined its price level (priority); renewed when a modify loses priority.
    queue_time: u64,
    /// When it was accepted (orders expiries and mass cancels).
    accept_seq: u64,
    /// An iceberg's display size (0: not an iceberg) and the peak it shows.
    display: u64,
    peak: u64,
    /// A pending stop's trigger: it is not in the book (but holds its funds).
    stop: Option<Price>,
    /// A stop elected in this command and not yet arrived.
    elected: bool,
}

impl Resting {
    fn plain(order: NewOrder, queue_time: u64, accept_seq: u64) -> Self {
        Resting {
            order,
            queue_time,
            accept_seq,
            display: 0,
            peak: 0,
            stop: None,
            elected: false,
        }
    }

    /// True when it is in the book (not a pending stop).
    fn in_book(&self) -> bool {
        self.stop.is_none()
    }
}

/// The naive reference matcher.
#[derive(Default)]
pub struct NaiveMatcher {
    halted: BTreeMap<u32, bool>,
    resting: Vec<Resting>,
    used_ids: BTreeSet<u64>,
    blocked: BTreeSet<u64>,
    clock: u64,
    /// Engine time: the latest command time (never goes backwards).
    now: u64,
    accept_seq: u64,
    /// Funded instruments' definitions.
    defs: BTreeMap<u32, InstrumentDef>,
    /// Last trade price per instrument.
    last: BTreeMap<u32, Price>,
    /// Declared assets.
    assets: BTreeMap<u16, u8>,
    /// (account, asset) → total.
    totals: BTreeMap<(u64, u16), i128>,
    /// Resting orders an account may have (`None`: no limit).
    max_open_orders: Option<usize>,
    /// Instruments with a pro-rata policy: (policy, min_alloc).
    policies: BTreeMap<u32, (MatchPolicy, u64)>,
    /// The TOP order per (instrument, side as u8), while it rests.
    tops: BTreeMap<(u32, u8), u64>,
    /// The terms announced for the next order.
    terms: Option<OrderTerms>,
    /// Which ids a new order may not take.
    id_rule: IdUniqueness,
}

/// `n × r` truncated toward zero.
fn fee(n: i128, r: Rate) -> i128 {
    n * r.mantissa as i128 / 10i128.pow(r.scale as u32)
}

fn notional(d: &InstrumentDef, p: Price, q: u64) -> i128 {
    p.0 as i128 * q as i128 * d.units().1 as i128
}

/// What an order with `open` lots open holds, and of which asset.
fn hold(d: &InstrumentDef, o: &NewOrder, open: u64) -> (u16, i128) {
    let (base, quote) = d.assets();
    match (o.side, o.order_type) {
        (Side::Sell, _) => (base.0, open as i128 * d.units().0 as i128),
        (Side::Buy, OrderType::Market) => (quote.0, 0),
        (Side::Buy, OrderType::Limit) => {
            let (m, t) = d.fees();
            let h = m.to_decimal().max(t.to_decimal()).max(Decimal::ZERO);
            let h = Rate::from_decimal(h).unwrap_or(Rate::ZERO);
            let n = notional(d, o.price, open);
            (quote.0, n + fee(n, h))
        }
    }
}

/// What buying `q` at `p` costs a taker.
fn taker_cost(d: &InstrumentDef, p: Price, q: u64) -> i128 {
    let n = notional(d, p, q);
    n + fee(n, d.fees().1)
}

/// The largest `q <= want` a taker can pay for with `available`.
fn payable(d: &InstrumentDef, p: Price, want: u64, available: i128) -> u64 {
    let mut q = want;
    while q > 0 && taker_cost(d, p, q) > available {
        q -= 1;
    }
    q
}

fn outside_band(d: &InstrumentDef, side: Side, price: Price, last: Option<&Price>) -> bool {
    if price.0 <= 0 {
        return true;
    }
    let (Some(band), Some(last)) = (d.band(), last) else {
        return false;
    };
    let (p, l, b) = (
        Decimal::from(price.0),
        Decimal::from(last.0),
        band.to_decimal(),
    );
    match side {
        Side::Buy => p > l * (Decimal::ONE + b),
        Side::Sell => p < l * (Decimal::ONE - b),
    }
}

fn ev(seq: Sequence, kind: EventKind) -> Event {
    Event::new(seq, kind)
}

impl NaiveMatcher {
    /// An empty engine.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same rule as [`crate::Matcher::with_id_uniqueness`].
    pub fn with_id_uniqueness(mut self, rule: IdUniqueness) -> Self {
        if rule == IdUniqueness::Ever && self.id_rule == IdUniqueness::Live {
            // Only ids used from now on (and the live ones) are remembered.
            self.used_ids = self.resting.iter().map(|r| r.order.order_id.0).collect();
        }
        self.id_rule = rule;
        self
    }

    /// The same limit as [`crate::Matcher::with_max_open_orders`].
    pub fn with_max_open_orders(mut self, n: u32) -> Self {
        self.max_open_orders = (n != u32::MAX).then_some(n as usize);
        self
    }

    fn reject(
        seq: Sequence,
        instrument: Option<InstrumentId>,
        order_id: Option<OrderId>,
        account: AccountId,
        code: RejectCode,
        out: &mut Vec<Event>,
    ) {
        out.push(ev(
            seq,
            EventKind::Rejected {
                instrument,
                order_id,
                account,
                code,
            },
        ));
    }

    fn cancel_event(seq: Sequence, o: &NewOrder, qty: u64, reason: CancelReason) -> Event {
        ev(
            seq,
            EventKind::Cancelled {
                instrument: o.instrument,
                order_id: o.order_id,
                account: o.account,
                qty: Qty(qty),
                reason,
                side: o.side,
                price: if o.order_type == OrderType::Market {
                    Price(0)
                } else {
                    o.price
                },
            },
        )
    }

    fn total(&self, account: AccountId, asset: u16) -> i128 {
        self.totals.get(&(account.0, asset)).copied().unwrap_or(0)
    }

    fn add_total(&mut self, account: AccountId, asset: u16, delta: i128) {
        *self.totals.entry((account.0, asset)).or_default() += delta;
    }

    /// The sum of the holds of the account's resting orders in `asset`.
    fn held(&self, account: AccountId, asset: u16) -> i128 {
        self.resting
            .iter()
            .filter(|r| r.order.account == account)
            .filter_map(|r| {
                let d = self.defs.get(&r.order.instrument.0)?;
                let (a, h) = hold(d, &r.order, r.order.qty.0);
                (a == asset).then_some(h)
            })
            .sum()
    }

    fn available(&self, account: AccountId, asset: u16) -> i128 {
        self.total(account, asset) - self.held(account, asset)
    }

    /// Moves the money of a fill and emits its fees.
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &mut self,
        seq: Sequence,
        d: &InstrumentDef,
        taker: &NewOrder,
        maker: &NewOrder,
        price: Price,
        q: u64,
        out: &mut Vec<Event>,
    ) {
        let n = notional(d, price, q);
        let (maker_rate, taker_rate) = d.fees();
        let (buyer, seller, buyer_fee, seller_fee) = if taker.side == Side::Buy {
            (
                taker.account,
                maker.account,
                fee(n, taker_rate),
                fee(n, maker_rate),
            )
        } else {
            (
                maker.account,
                taker.account,
                fee(n, maker_rate),
                fee(n, taker_rate),
            )
        };
        let (base, quote) = d.assets();
        let units = q as i128 * d.units().0 as i128;
        self.add_total(buyer, quote.0, -(n + buyer_fee));
        self.add_total(seller, quote.0, n - seller_fee);
        self.add_total(buyer, base.0, units);
        self.add_total(seller, base.0, -units);
        out.push(ev(
            seq,
            EventKind::FillFees {
                instrument: taker.instrument,
                buyer_fee: buyer_fee.into(),
                seller_fee: seller_fee.into(),
            },
        ));
    }

    /// Opposite-side orders an incoming order may meet, in priority order.
    fn queue(&self, instrument: InstrumentId, side: Side, limit: Option<Price>) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.resting.len())
            .filter(|&i| {
                let o = &self.resting[i].order;
                self.resting[i].in_book()
                    && o.instrument == instrument
                    && o.side == side.opposite()
                    && match (limit, side) {
                        (None, _) => true,
                        (Some(l), Side::Buy) => o.price <= l,
                        (Some(l), Side::Sell) => o.price >= l,
                    }
            })
            .collect();
        v.sort_by_key(|&i| {
            let r = &self.resting[i];
            let p = match side {
                Side::Buy => r.order.price.0 as i128,
                Side::Sell => -(r.order.price.0 as i128),
            };
            (p, r.queue_time)
        });
        v
    }

    fn would_cross(&self, instrument: InstrumentId, side: Side, price: Price) -> bool {
        !self.queue(instrument, side, Some(price)).is_empty()
    }

    /// Matches; returns (remaining, taker cancelled by STP, out of funds).
    #[allow(clippy::too_many_arguments)]
    fn match_taker(
        &mut self,
        seq: Sequence,
        taker: &NewOrder,
        limit: Option<Price>,
        mut remaining: u64,
        out: &mut Vec<Event>,
    ) -> (u64, bool, bool) {
        let def = self.defs.get(&taker.instrument.0).copied();
        if self.policies.contains_key(&taker.instrument.0) {
            return self.match_pro_rata(seq, taker, limit, remaining, out);
        }
        while remaining > 0 {
            let q = self.queue(taker.instrument, taker.side, limit);
            let Some(&i) = q.first() else {
                break;
            };
            let maker = self.resting[i];
            if maker.order.account == taker.account && taker.stp != SelfTradePrevention::Allow {
                match taker.stp {
                    SelfTradePrevention::CancelMaker => {
                        out.push(Self::cancel_event(
                            seq,
                            &maker.order,
                            maker.order.qty.0,
                            CancelReason::SelfTrade,
                        ));
                        self.resting.remove(i);
                        continue;
                    }
                    SelfTradePrevention::CancelBoth => {
                        out.push(Self::cancel_event(
                            seq,
                            &maker.order,
                            maker.order.qty.0,
                            CancelReason::SelfTrade,
                        ));
                        self.resting.remove(i);
                        out.push(Self::cancel_event(
                            seq,
                            taker,
                            remaining,
                            CancelReason::SelfTrade,
                        ));
                        return (remaining, true, false);
                    }
                    _ => {
                        out.push(Self::cancel_event(
                            seq,
                            taker,
                            remaining,
                            CancelReason::SelfTrade,
                        ));
                        return (remaining, true, false);
                    }
                }
            }
            let shown = if maker.display > 0 {
                maker.peak
            } else {
                maker.order.qty.0
            };
            let mut fill = remaining.min(shown);
            if let (Some(d), None, Side::Buy) = (&def, limit, taker.side) {
                let quote = d.assets().1 .0;
                fill = payable(
                    d,
                    maker.order.price,
                    fill,
                    self.available(taker.account, quote),
                );
                if fill == 0 {
                    return (remaining, false, true);
                }
            }
            out.push(ev(
                seq,
                EventKind::Fill {
                    instrument: taker.instrument,
                    taker: taker.order_id,
                    maker: maker.order.order_id,
                    maker_account: maker.order.account,
                    price: maker.order.price,
                    qty: Qty(fill),
                    maker_left: Qty(maker.order.qty.0 - fill),
                    taker_side: taker.side,
                },
            ));
            self.last.insert(taker.instrument.0, maker.order.price);
            if let Some(d) = &def {
                self.settle(seq, d, taker, &maker.order, maker.order.price, fill, out);
            }
            remaining -= fill;
            if fill == maker.order.qty.0 {
                self.resting.remove(i);
            } else {
                let r = &mut self.resting[i];
                r.order.qty.0 -= fill;
                if r.display > 0 {
                    r.peak -= fill;
                    if r.peak == 0 {
                        // A new peak at the back of the level.
                        r.peak = r.display.min(r.order.qty.0);
                        self.clock += 1;
                        r.queue_time = self.clock;
                    }
                }
            }
        }
        (remaining, false, false)
    }

    fn fok_fillable(&self, taker: &NewOrder, limit: Option<Price>) -> bool {
        if self.policies.contains_key(&taker.instrument.0) {
            return self.fok_fillable_pro_rata(taker, limit);
        }
        if let (Some(d), None, Side::Buy) = (self.defs.get(&taker.instrument.0), limit, taker.side)
        {
            // A market buy counts what it can pay for, maker by maker.
            let quote = d.assets().1 .0;
            let mut available = self.available(taker.account, quote);
            let mut remaining = taker.qty.0;
            for i in self.queue(taker.instrument, taker.side, limit) {
                let m = &self.resting[i].order;
                if m.account == taker.account && taker.stp != SelfTradePrevention::Allow {
                    if taker.stp == SelfTradePrevention::CancelMaker {
                        continue;
                    }
                    break;
                }
                let want = remaining.min(m.qty.0);
                let q = payable(d, m.price, want, available);
                available -= taker_cost(d, m.price, q);
                if m.account == taker.account {
                    let n = notional(d, m.price, q);
                    available += n - fee(n, d.fees().0);
                }
                remaining -= q;
                if remaining == 0 || q < want {
                    break;
                }
            }
            return remaining == 0;
        }
        let mut avail: u128 = 0;
        for i in self.queue(taker.instrument, taker.side, limit) {
            let m = &self.resting[i].order;
            if m.account == taker.account && taker.stp != SelfTradePrevention::Allow {
                if taker.stp == SelfTradePrevention::CancelMaker {
                    continue;
                }
                break;
            }
            avail += m.qty.0 as u128;
        }
        avail >= taker.qty.0 as u128
    }

    /// FOK on a pro-rata book: level by level, self-trade prevention per level.
    fn fok_fillable_pro_rata(&self, taker: &NewOrder, limit: Option<Price>) -> bool {
        let def = self.defs.get(&taker.instrument.0);
        let mut available = def.map_or(0, |d| self.available(taker.account, d.assets().1 .0));
        let mut need = taker.qty.0 as u128;
        let mut levels: BTreeMap<i128, (u128, bool)> = BTreeMap::new();
        for i in self.queue(taker.instrument, taker.side, limit) {
            let m = &self.resting[i].order;
            let key = match taker.side {
                Side::Buy => m.price.0 as i128,
                Side::Sell => -(m.price.0 as i128),
            };
            let e = levels.entry(key).or_default();
            if m.account == taker.account && taker.stp != SelfTradePrevention::Allow {
                e.1 = true;
            } else {
                e.0 += m.qty.0 as u128;
            }
        }
        for (key, (qty, own)) in levels {
            if own && taker.stp != SelfTradePrevention::CancelMaker {
                return false;
            }
            let want = need.min(qty) as u64;
            let mut got = want;
            if let (Some(d), None, Side::Buy) = (def, limit, taker.side) {
                let price = Price(key as i64);
                got = payable(d, price, want, available);
                available -= taker_cost(d, price, got);
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

    fn find(&self, id: OrderId) -> Option<usize> {
        self.resting.iter().position(|r| r.order.order_id == id)
    }

    fn new_order(
        &mut self,
        seq: Sequence,
        cmd: &Command,
        o: &NewOrder,
        terms: OrderTerms,
        out: &mut Vec<Event>,
    ) {
        let Some(&halted) = self.halted.get(&o.instrument.0) else {
            return Self::reject(
                seq,
                None,
                Some(o.order_id),
                o.account,
                RejectCode::UnknownInstrument,
                out,
            );
        };
        let limit = (o.order_type == OrderType::Limit).then_some(o.price);
        let pro_rata = self.policies.contains_key(&o.instrument.0);
        let terms_code = match terms.stop {
            Some(_) if o.post_only || terms.display.0 > 0 => Some(RejectCode::InvalidStop),
            Some(t) if t.0 <= 0 => Some(RejectCode::BadPrice),
            Some(_) => None,
            None if terms.display.0 == 0 => None,
            None => {
                let iceberg_ok = limit.is_some()
                    && matches!(o.tif, TimeInForce::Gtc | TimeInForce::Gtd)
                    && terms.display <= o.qty
                    && !pro_rata;
                (!iceberg_ok).then_some(RejectCode::InvalidDisplay)
            }
        };
        let last = self.last.get(&o.instrument.0).copied();
        let code = if o.qty.0 == 0 {
            Some(RejectCode::ZeroQty)
        } else if terms_code.is_some() {
            terms_code
        } else if match self.id_rule {
            IdUniqueness::Ever => self.used_ids.contains(&o.order_id.0),
            IdUniqueness::Live => self.resting.iter().any(|r| r.order.order_id == o.order_id),
        } {
            Some(RejectCode::DuplicateOrderId)
        } else if halted {
            Some(RejectCode::Halted)
        } else if self.blocked.contains(&o.account.0) {
            Some(RejectCode::Blocked)
        } else if self.max_open_orders.is_some_and(|m| {
            o.order_type == OrderType::Limit
                && o.tif.may_rest()
                && self
                    .resting
                    .iter()
                    .filter(|r| r.order.account == o.account)
                    .count()
                    >= m
        }) {
            Some(RejectCode::TooManyOrders)
        } else if o.tif == TimeInForce::Gtd && o.expiry <= cmd.ts {
            Some(RejectCode::ExpiryInPast)
        } else if o.post_only
            && (limit.is_none() || self.would_cross(o.instrument, o.side, o.price))
        {
            Some(RejectCode::PostOnlyWouldTake)
        } else if let (Some(t), Some(p)) = (terms.stop, last) {
            let reached = match o.side {
                Side::Buy => t.0 <= p.0,
                Side::Sell => t.0 >= p.0,
            };
            reached.then_some(RejectCode::StopWouldTrigger)
        } else {
            None
        };
        let code = code.or_else(|| {
            let d = self.defs.get(&o.instrument.0)?;
            let (asset, h) = hold(d, o, o.qty.0);
            if d.max_qty().is_some_and(|m| o.qty > m) {
                Some(RejectCode::MaxQty)
            } else if limit.is_some()
                && outside_band(d, o.side, o.price, self.last.get(&o.instrument.0))
            {
                Some(RejectCode::PriceBand)
            } else if self.available(o.account, asset) < h {
                Some(RejectCode::InsufficientFunds)
            } else {
                None
            }
        });
        if let Some(code) = code {
            return Self::reject(
                seq,
                Some(o.instrument),
                Some(o.order_id),
                o.account,
                code,
                out,
            );
        }
        if terms.display.0 > 0 || terms.stop.is_some() {
            out.push(ev(
                seq,
                EventKind::OrderTerms {
                    instrument: o.instrument,
                    terms,
                },
            ));
        }
        out.push(ev(seq, EventKind::accepted(o)));
        self.used_ids.insert(o.order_id.0);
        self.accept_seq += 1;
        if let Some(stop) = terms.stop {
            let mut order = *o;
            if order.order_type == OrderType::Market {
                order.price = Price(0);
            }
            let mut r = Resting::plain(order, 0, self.accept_seq);
            r.stop = Some(stop);
            self.resting.push(r);
            return;
        }
        let from = out.len();
        self.arrive(seq, o, self.accept_seq, terms.display.0, out);
        self.run_stops(seq, o.instrument, from, out);
    }

    /// An accepted order (or an elected stop) trades, then rests or is cancelled.
    fn arrive(
        &mut self,
        seq: Sequence,
        o: &NewOrder,
        accept_seq: u64,
        display: u64,
        out: &mut Vec<Event>,
    ) {
        let limit = (o.order_type == OrderType::Limit).then_some(o.price);
        if o.tif == TimeInForce::Fok && !self.fok_fillable(o, limit) {
            out.push(Self::cancel_event(seq, o, o.qty.0, CancelReason::Fok));
            return;
        }
        let (remaining, stp_cancelled, out_of_funds) =
            self.match_taker(seq, o, limit, o.qty.0, out);
        if stp_cancelled || remaining == 0 {
            return;
        }
        if out_of_funds {
            out.push(Self::cancel_event(
                seq,
                o,
                remaining,
                CancelReason::InsufficientFunds,
            ));
        } else if o.order_type == OrderType::Market {
            out.push(Self::cancel_event(seq, o, remaining, CancelReason::Market));
        } else if o.tif == TimeInForce::Ioc {
            out.push(Self::cancel_event(seq, o, remaining, CancelReason::Ioc));
        } else if o.tif == TimeInForce::Fok {
            out.push(Self::cancel_event(seq, o, remaining, CancelReason::Fok));
        } else {
            self.clock += 1;
            let mut order = *o;
            order.qty = Qty(remaining);
            let mut r = Resting::plain(order, self.clock, accept_seq);
            if display > 0 {
                r.display = display;
                r.peak = display.min(remaining);
            }
            self.resting.push(r);
            self.maybe_top(o.order_id);
        }
    }

    /// An order that came to rest becomes its side's TOP (`pro_rata_top`) when its price is
    /// strictly better than every other order of its side in the book, or the side has none.
    fn maybe_top(&mut self, id: OrderId) {
        let Some(i) = self.find(id) else { return };
        let o = self.resting[i].order;
        if self.policies.get(&o.instrument.0).map(|p| p.0) != Some(MatchPolicy::ProRataTop) {
            return;
        }
        let better = self
            .resting
            .iter()
            .filter(|r| r.in_book() && r.order.instrument == o.instrument)
            .filter(|r| r.order.side == o.side && r.order.order_id != id)
            .all(|r| match o.side {
                Side::Buy => o.price > r.order.price,
                Side::Sell => o.price < r.order.price,
            });
        if better {
            self.tops.insert((o.instrument.0, o.side as u8), id.0);
        }
    }

    /// The TOP order of a side, if it still rests in the book.
    fn top_of(&self, instrument: InstrumentId, side: Side) -> Option<u64> {
        let id = *self.tops.get(&(instrument.0, side as u8))?;
        self.resting
            .iter()
            .any(|r| r.order.order_id.0 == id && r.in_book())
            .then_some(id)
    }

    /// Pro-rata matching, level by level (docs/formats.md, "Pro-rata levels").
    fn match_pro_rata(
        &mut self,
        seq: Sequence,
        taker: &NewOrder,
        limit: Option<Price>,
        mut remaining: u64,
        out: &mut Vec<Event>,
    ) -> (u64, bool, bool) {
        let def = self.defs.get(&taker.instrument.0).copied();
        let (policy, min_alloc) = self.policies[&taker.instrument.0];
        while remaining > 0 {
            let q = self.queue(taker.instrument, taker.side, limit);
            let Some(&first) = q.first() else { break };
            let price = self.resting[first].order.price;
            // The level, in time priority.
            let level: Vec<OrderId> = q
                .iter()
                .map(|&i| self.resting[i].order)
                .filter(|o| o.price == price)
                .map(|o| o.order_id)
                .collect();
            let own: Vec<OrderId> = level
                .iter()
                .copied()
                .filter(|id| {
                    self.resting[self.find(*id).unwrap_or(0)].order.account == taker.account
                })
                .collect();
            if !own.is_empty() && taker.stp != SelfTradePrevention::Allow {
                if matches!(
                    taker.stp,
                    SelfTradePrevention::CancelMaker | SelfTradePrevention::CancelBoth
                ) {
                    for id in &own {
                        if let Some(i) = self.find(*id) {
                            let r = self.resting.remove(i);
                            let qty = r.order.qty.0;
                            out.push(Self::cancel_event(
                                seq,
                                &r.order,
                                qty,
                                CancelReason::SelfTrade,
                            ));
                        }
                    }
                }
                if taker.stp != SelfTradePrevention::CancelMaker {
                    out.push(Self::cancel_event(
                        seq,
                        taker,
                        remaining,
                        CancelReason::SelfTrade,
                    ));
                    return (remaining, true, false);
                }
                continue;
            }
            let qtys: Vec<(OrderId, u64)> = level
                .iter()
                .filter_map(|id| self.find(*id).map(|i| (*id, self.resting[i].order.qty.0)))
                .collect();
            let total: u128 = qtys.iter().map(|x| x.1 as u128).sum();
            let mut take = remaining;
            let mut capped = false;
            if let (Some(d), None, Side::Buy) = (&def, limit, taker.side) {
                let quote = d.assets().1 .0;
                let q = payable(d, price, remaining, self.available(taker.account, quote));
                if q == 0 {
                    return (remaining, false, true);
                }
                capped = q < remaining;
                take = q;
            }
            let top = match policy {
                MatchPolicy::ProRataTop => self
                    .top_of(taker.instrument, taker.side.opposite())
                    .filter(|t| level.iter().any(|id| id.0 == *t)),
                _ => None,
            };
            // (maker, share) in fill order: the TOP order first, then time priority.
            let mut shares: Vec<(OrderId, u64)> = Vec::new();
            if let Some(t) = top {
                let tq = qtys.iter().find(|x| x.0 .0 == t).map_or(0, |x| x.1);
                shares.push((
                    OrderId(t),
                    if take as u128 >= total {
                        tq
                    } else {
                        take.min(tq)
                    },
                ));
            }
            let others: Vec<(OrderId, u64)> = qtys
                .iter()
                .copied()
                .filter(|x| Some(x.0 .0) != top)
                .collect();
            if take as u128 >= total {
                shares.extend(others.iter().copied());
            } else {
                let r = take - shares.first().map_or(0, |x| x.1);
                let t: u128 = others.iter().map(|x| x.1 as u128).sum();
                let alloc: Vec<u64> = others
                    .iter()
                    .map(|x| {
                        let a = (r as u128 * x.1 as u128).checked_div(t).unwrap_or(0) as u64;
                        if a < min_alloc {
                            0
                        } else {
                            a
                        }
                    })
                    .collect();
                let mut left = r - alloc.iter().sum::<u64>();
                for (k, x) in others.iter().enumerate() {
                    let extra = left.min(x.1 - alloc[k]);
                    left -= extra;
                    shares.push((x.0, alloc[k] + extra));
                }
            }
            for (id, share) in shares {
                if share == 0 {
                    continue;
                }
                let Some(i) = self.find(id) else { continue };
                let maker = self.resting[i];
                out.push(ev(
                    seq,
                    EventKind::Fill {
                        instrument: taker.instrument,
                        taker: taker.order_id,
                        maker: id,
                        maker_account: maker.order.account,
                        price,
                        qty: Qty(share),
                        maker_left: Qty(maker.order.qty.0 - share),
                        taker_side: taker.side,
                    },
                ));
                self.last.insert(taker.instrument.0, price);
                if let Some(d) = &def {
                    self.settle(seq, d, taker, &maker.order, price, share, out);
                }
                remaining -= share;
                if share == maker.order.qty.0 {
                    self.resting.remove(i);
                } else {
                    self.resting[i].order.qty.0 -= share;
                }
            }
            if capped {
                return (remaining, false, true);
            }
        }
        (remaining, false, false)
    }

    /// Elects the pending stops that the trades in `out[from..]` reached, in acceptance
    /// order, and lets each arrive; their trades elect more, queued behind.
    fn run_stops(
        &mut self,
        seq: Sequence,
        instrument: InstrumentId,
        from: usize,
        out: &mut Vec<Event>,
    ) {
        let mut queue: Vec<u64> = Vec::new();
        let mut scan = from;
        loop {
            let prices: Vec<Price> = out[scan..]
                .iter()
                .filter_map(|e| match e.kind {
                    EventKind::Fill {
                        instrument: i,
                        price,
                        ..
                    } if i == instrument => Some(price),
                    _ => None,
                })
                .collect();
            if let (Some(lo), Some(hi)) = (prices.iter().min(), prices.iter().max()) {
                let mut elected: Vec<(u64, u64)> = self
                    .resting
                    .iter()
                    .filter(|r| r.order.instrument == instrument && !r.elected)
                    .filter(|r| match (r.stop, r.order.side) {
                        (Some(t), Side::Buy) => t <= *hi,
                        (Some(t), Side::Sell) => t >= *lo,
                        (None, _) => false,
                    })
                    .map(|r| (r.accept_seq, r.order.order_id.0))
                    .collect();
                elected.sort();
                for &(_, id) in &elected {
                    if let Some(i) = self.find(OrderId(id)) {
                        self.resting[i].elected = true;
                    }
                    queue.push(id);
                }
            }
            if queue.is_empty() {
                break;
            }
            let id = queue.remove(0);
            let Some(i) = self.find(OrderId(id)) else {
                continue;
            };
            let r = self.resting.remove(i);
            out.push(ev(
                seq,
                EventKind::Triggered {
                    instrument,
                    order_id: r.order.order_id,
                    account: r.order.account,
                    side: r.order.side,
                    stop: r.stop.unwrap_or_default(),
                },
            ));
            scan = out.len();
            self.arrive(seq, &r.order, r.accept_seq, 0, out);
        }
    }

    /// The index of `id` if it rests in `instrument` and belongs to `account`.
    fn owned(
        &self,
        instrument: InstrumentId,
        account: AccountId,
        id: OrderId,
    ) -> Result<usize, (Option<InstrumentId>, RejectCode)> {
        if !self.halted.contains_key(&instrument.0) {
            return Err((None, RejectCode::UnknownInstrument));
        }
        match self.find(id) {
            Some(i) if self.resting[i].order.instrument == instrument => {
                if self.resting[i].order.account == account {
                    Ok(i)
                } else {
                    Err((Some(instrument), RejectCode::NotOwner))
                }
            }
            _ => Err((Some(instrument), RejectCode::UnknownOrder)),
        }
    }
}

impl NaiveMatcher {
    /// Expires the GTD orders due at `now`: earliest expiry first, then earliest accepted.
    fn expire_due(&mut self, seq: Sequence, now: crate::types::Timestamp, out: &mut Vec<Event>) {
        let mut due: Vec<Resting> = self
            .resting
            .iter()
            .filter(|r| r.order.tif == TimeInForce::Gtd && r.order.expiry <= now)
            .copied()
            .collect();
        due.sort_by_key(|r| (r.order.expiry, r.accept_seq));
        for r in due {
            out.push(ev(
                seq,
                EventKind::Expired {
                    instrument: r.order.instrument,
                    order_id: r.order.order_id,
                    account: r.order.account,
                    qty: r.order.qty,
                    side: r.order.side,
                    price: r.order.price,
                },
            ));
            self.resting
                .retain(|x| x.order.order_id != r.order.order_id);
        }
    }

    /// A modify: refused by the checks in order, else priority kept or lost (and matched).
    fn modify(
        &mut self,
        seq: Sequence,
        (instrument, account, order_id): (InstrumentId, AccountId, OrderId),
        price: Price,
        qty: Qty,
        out: &mut Vec<Event>,
    ) {
        match self.owned(instrument, account, order_id) {
            Err((inst, code)) => Self::reject(seq, inst, Some(order_id), account, code, out),
            Ok(i) => {
                let r = self.resting[i];
                let code = if r.stop.is_some() {
                    Some(RejectCode::StopPending)
                } else if self.halted[&instrument.0] {
                    Some(RejectCode::Halted)
                } else if self.blocked.contains(&account.0) {
                    Some(RejectCode::Blocked)
                } else if qty.0 == 0 {
                    Some(RejectCode::ZeroQty)
                } else if r.order.post_only
                    && price != r.order.price
                    && self.would_cross(instrument, r.order.side, price)
                {
                    Some(RejectCode::PostOnlyWouldTake)
                } else if let Some(d) = self.defs.get(&instrument.0) {
                    let mut new = r.order;
                    new.price = price;
                    let (asset, new_hold) = hold(d, &new, qty.0);
                    let (_, old_hold) = hold(d, &r.order, r.order.qty.0);
                    if d.max_qty().is_some_and(|m| qty > m) {
                        Some(RejectCode::MaxQty)
                    } else if outside_band(d, r.order.side, price, self.last.get(&instrument.0)) {
                        Some(RejectCode::PriceBand)
                    } else if self.available(account, asset) + old_hold < new_hold {
                        Some(RejectCode::InsufficientFunds)
                    } else {
                        None
                    }
                } else {
                    None
                };
                if let Some(code) = code {
                    Self::reject(seq, Some(instrument), Some(order_id), account, code, out);
                    return;
                }
                let kept_priority = price == r.order.price && qty <= r.order.qty;
                out.push(ev(
                    seq,
                    EventKind::Modified {
                        instrument,
                        order_id,
                        account,
                        price,
                        qty,
                        kept_priority,
                        side: self.resting[i].order.side,
                        old_price: self.resting[i].order.price,
                        old_qty: self.resting[i].order.qty,
                    },
                ));
                if kept_priority {
                    let r = &mut self.resting[i];
                    r.order.qty = qty;
                    r.peak = r.peak.min(qty.0);
                } else {
                    let key = (instrument.0, self.resting[i].order.side as u8);
                    if self.tops.get(&key) == Some(&order_id.0) {
                        self.tops.remove(&key);
                    }
                    let mut r = self.resting.remove(i);
                    r.order.price = price;
                    r.order.qty = qty;
                    let from = out.len();
                    let (remaining, stp, _) =
                        self.match_taker(seq, &r.order, Some(price), qty.0, out);
                    if !stp && remaining > 0 {
                        self.clock += 1;
                        r.order.qty = Qty(remaining);
                        r.queue_time = self.clock;
                        r.peak = r.display.min(remaining);
                        self.resting.push(r);
                        self.maybe_top(order_id);
                    }
                    self.run_stops(seq, instrument, from, out);
                }
            }
        }
    }

    /// A mass cancel of an account's orders (of one instrument, or all), in acceptance order.
    fn mass_cancel(
        &mut self,
        seq: Sequence,
        account: AccountId,
        instrument: Option<InstrumentId>,
        out: &mut Vec<Event>,
    ) {
        if instrument.is_some_and(|i| !self.halted.contains_key(&i.0)) {
            Self::reject(seq, None, None, account, RejectCode::UnknownInstrument, out);
        } else {
            let mut mine: Vec<Resting> = self
                .resting
                .iter()
                .filter(|r| {
                    r.order.account == account && instrument.is_none_or(|i| i == r.order.instrument)
                })
                .copied()
                .collect();
            mine.sort_by_key(|r| r.accept_seq);
            for r in mine {
                out.push(Self::cancel_event(
                    seq,
                    &r.order,
                    r.order.qty.0,
                    CancelReason::MassCancel,
                ));
                self.resting
                    .retain(|x| x.order.order_id != r.order.order_id);
            }
        }
    }

    /// Defines an instrument (funded or not).
    fn add_instrument(&mut self, seq: Sequence, def: InstrumentDef, out: &mut Vec<Event>) {
        let (base, quote) = def.assets();
        let code = if def.id.0 >= crate::types::MAX_INSTRUMENTS {
            Some(RejectCode::InstrumentIdOutOfRange)
        } else if self.halted.contains_key(&def.id.0) {
            Some(RejectCode::DuplicateInstrument)
        } else if def.problem().is_some() {
            Some(RejectCode::InvalidInstrument)
        } else if def.is_funded()
            && !(self.assets.contains_key(&base.0) && self.assets.contains_key(&quote.0))
        {
            Some(RejectCode::UnknownAsset)
        } else {
            None
        };
        if let Some(code) = code {
            Self::reject(seq, Some(def.id), None, AccountId(0), code, out);
        } else {
            self.halted.insert(def.id.0, false);
            if def.is_funded() {
                self.defs.insert(def.id.0, def);
            }
            out.push(ev(seq, EventKind::InstrumentAdded(def)));
        }
    }

    /// A deposit: a declared asset, a positive amount that overflows no total.
    fn deposit(
        &mut self,
        seq: Sequence,
        account: AccountId,
        asset: AssetId,
        amount: Amount,
        out: &mut Vec<Event>,
    ) {
        let a = amount.get();
        if !self.assets.contains_key(&asset.0) {
            Self::reject(seq, None, None, account, RejectCode::UnknownAsset, out);
        } else if a <= 0 || self.total(account, asset.0).checked_add(a).is_none() {
            Self::reject(seq, None, None, account, RejectCode::BadAmount, out);
        } else {
            self.add_total(account, asset.0, a);
            out.push(ev(
                seq,
                EventKind::Deposited {
                    account,
                    asset,
                    amount,
                },
            ));
        }
    }

    /// A withdrawal: a declared asset, a positive amount within what is available.
    fn withdraw(
        &mut self,
        seq: Sequence,
        account: AccountId,
        asset: AssetId,
        amount: Amount,
        out: &mut Vec<Event>,
    ) {
        let a = amount.get();
        if !self.assets.contains_key(&asset.0) {
            Self::reject(seq, None, None, account, RejectCode::UnknownAsset, out);
        } else if a <= 0 {
            Self::reject(seq, None, None, account, RejectCode::BadAmount, out);
        } else if self.available(account, asset.0) < a {
            Self::reject(seq, None, None, account, RejectCode::InsufficientFunds, out);
        } else {
            self.add_total(account, asset.0, -a);
            out.push(ev(
                seq,
                EventKind::Withdrawn {
                    account,
                    asset,
                    amount,
                },
            ));
        }
    }
}

impl MatchingEngine for NaiveMatcher {
    fn process(&mut self, seq: Sequence, cmd: &Command, out: &mut Vec<Event>) {
        let start = out.len();
        self.now = self.now.max(cmd.ts.0);
        let cmd = &Command::new(crate::types::Timestamp(self.now), cmd.kind);
        self.expire_due(seq, cmd.ts, out);
        let terms = self.terms.take();
        match cmd.kind {
            CommandKind::NewOrder(ref o) => {
                let t = terms
                    .filter(|t| t.order_id == o.order_id)
                    .unwrap_or_default();
                self.new_order(seq, cmd, o, t, out)
            }
            CommandKind::OrderTerms(t) => self.terms = Some(t),
            CommandKind::SetMatchPolicy {
                instrument,
                policy,
                min_alloc,
            } => {
                let busy = self
                    .resting
                    .iter()
                    .any(|r| r.order.instrument == instrument);
                if !self.halted.contains_key(&instrument.0) {
                    let code = RejectCode::UnknownInstrument;
                    Self::reject(seq, None, None, AccountId(0), code, out);
                } else if busy
                    || min_alloc.0 == 0
                    || (policy == MatchPolicy::Fifo && min_alloc.0 != 1)
                {
                    let code = RejectCode::InvalidInstrument;
                    Self::reject(seq, Some(instrument), None, AccountId(0), code, out);
                } else {
                    if policy == MatchPolicy::Fifo {
                        self.policies.remove(&instrument.0);
                    } else {
                        self.policies.insert(instrument.0, (policy, min_alloc.0));
                    }
                    self.tops.retain(|k, _| k.0 != instrument.0);
                    out.push(ev(
                        seq,
                        EventKind::MatchPolicySet {
                            instrument,
                            policy,
                            min_alloc,
                        },
                    ));
                }
            }
            CommandKind::Cancel {
                instrument,
                account,
                order_id,
            } => match self.owned(instrument, account, order_id) {
                Err((inst, code)) => Self::reject(seq, inst, Some(order_id), account, code, out),
                Ok(i) => {
                    let r = self.resting.remove(i);
                    out.push(Self::cancel_event(
                        seq,
                        &r.order,
                        r.order.qty.0,
                        CancelReason::User,
                    ));
                }
            },
            CommandKind::Modify {
                instrument,
                account,
                order_id,
                price,
                qty,
            } => self.modify(seq, (instrument, account, order_id), price, qty, out),
            CommandKind::MassCancel {
                account,
                instrument,
            } => self.mass_cancel(seq, account, instrument, out),
            CommandKind::Halt { instrument } | CommandKind::Resume { instrument } => {
                let halted = matches!(cmd.kind, CommandKind::Halt { .. });
                match self.halted.get_mut(&instrument.0) {
                    None => Self::reject(
                        seq,
                        None,
                        None,
                        AccountId(0),
                        RejectCode::UnknownInstrument,
                        out,
                    ),
                    Some(h) => {
                        *h = halted;
                        out.push(ev(seq, EventKind::InstrumentStatus { instrument, halted }));
                    }
                }
            }
            CommandKind::Block { account } | CommandKind::Unblock { account } => {
                let blocked = matches!(cmd.kind, CommandKind::Block { .. });
                if blocked {
                    self.blocked.insert(account.0);
                } else {
                    self.blocked.remove(&account.0);
                }
                out.push(ev(seq, EventKind::AccountStatus { account, blocked }));
            }
            CommandKind::Tick => {}
            CommandKind::SnapshotRequest { instrument } => {
                if self.halted.contains_key(&instrument.0) {
                    out.push(ev(seq, EventKind::SnapshotRequested { instrument }));
                } else {
                    let code = RejectCode::UnknownInstrument;
                    Self::reject(seq, None, None, AccountId(0), code, out);
                }
            }
            CommandKind::AddInstrument(def) => self.add_instrument(seq, def, out),
            CommandKind::AddAsset { asset, scale } => {
                if scale > 18 {
                    Self::reject(seq, None, None, AccountId(0), RejectCode::BadAmount, out);
                } else if let std::collections::btree_map::Entry::Vacant(v) =
                    self.assets.entry(asset.0)
                {
                    v.insert(scale);
                    out.push(ev(seq, EventKind::AssetAdded { asset, scale }));
                } else {
                    let code = RejectCode::DuplicateAsset;
                    Self::reject(seq, None, None, AccountId(0), code, out);
                }
            }
            CommandKind::Deposit {
                account,
                asset,
                amount,
            } => self.deposit(seq, account, asset, amount, out),
            CommandKind::Withdraw {
                account,
                asset,
                amount,
            } => self.withdraw(seq, account, asset, amount, out),
            CommandKind::Invalid {
                instrument,
                order_id,
                account,
                code,
            } => Self::reject(seq, instrument, order_id, account, code, out),
        }
        finish(out, start);
    }

    fn resting_orders(&self, instrument: InstrumentId) -> Vec<RestingOrder> {
        let mut v: Vec<&Resting> = self
            .resting
            .iter()
            .filter(|r| r.order.instrument == instrument && r.in_book())
            .collect();
        v.sort_by_key(|r| {
            let p = r.order.price.0 as i128;
            match r.order.side {
                Side::Buy => (0, -p, r.queue_time),
                Side::Sell => (1, p, r.queue_time),
            }
        });
        v.iter()
            .map(|r| RestingOrder {
                side: r.order.side,
                price: r.order.price,
                order_id: r.order.order_id,
                account: r.order.account,
                qty: r.order.qty,
            })
            .collect()
    }

    fn balances(&self) -> Vec<(AccountId, AssetId, Balance)> {
        let mut keys: BTreeSet<(u64, u16)> = self.totals.keys().copied().collect();
        for r in &self.resting {
            if let Some(d) = self.defs.get(&r.order.instrument.0) {
                keys.insert((r.order.account.0, hold(d, &r.order, 0).0));
            }
        }
        keys.into_iter()
            .map(|(a, asset)| {
                let b = Balance {
                    total: self.total(AccountId(a), asset),
                    held: self.held(AccountId(a), asset),
                };
                (AccountId(a), AssetId(asset), b)
            })
            .filter(|(_, _, b)| !b.is_zero())
            .collect()
    }
}

/// Marks the last event of the command.
fn finish(out: &mut [Event], start: usize) {
    if out.len() > start {
        if let Some(e) = out.last_mut() {
            e.set_last_of_command(true);
        }
    }
}
