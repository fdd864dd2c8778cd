//! [`NaiveMatcher`]: the reference. Obviously correct and slow: every resting order sits in
//! one `Vec`, and each step of a match scans and sorts. It shares no book code with the fast
//! [`crate::Matcher`]; the proptest differential tests run both on the same random command
//! streams and require identical events and identical books.
//!
//! Its money is as plain: it keeps only each account's totals, and computes what an account
//! holds by summing the holds of its resting orders whenever it needs it, with fees and
//! bands in straightforward `i128` and `Decimal` arithmetic.

use crate::book::books::RestingOrder;
use crate::command::{Command, CommandKind, NewOrder};
use crate::event::{CancelReason, Event, EventKind, RejectCode};
use crate::funds::{Amount, AssetId, Balance, InstrumentDef, Rate};
use crate::matching::MatchingEngine;
use crate::types::{
    AccountId, InstrumentId, OrderId, OrderType, Price, Qty, SelfTradePrevention, Sequence, Side,
    TimeInForce,
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
                o.instrument == instrument
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
            let mut fill = remaining.min(maker.order.qty.0);
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
                self.resting[i].order.qty.0 -= fill;
            }
        }
        (remaining, false, false)
    }

    fn fok_fillable(&self, taker: &NewOrder, limit: Option<Price>) -> bool {
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

    fn find(&self, id: OrderId) -> Option<usize> {
        self.resting.iter().position(|r| r.order.order_id == id)
    }

    fn new_order(&mut self, seq: Sequence, cmd: &Command, o: &NewOrder, out: &mut Vec<Event>) {
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
        let code = if o.qty.0 == 0 {
            Some(RejectCode::ZeroQty)
        } else if self.used_ids.contains(&o.order_id.0) {
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
        } else if let Some(d) = self.defs.get(&o.instrument.0) {
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
        } else {
            None
        };
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
        out.push(ev(seq, EventKind::accepted(o)));
        self.used_ids.insert(o.order_id.0);
        self.accept_seq += 1;
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
            self.resting.push(Resting {
                order,
                queue_time: self.clock,
                accept_seq: self.accept_seq,
            });
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
                let code = if self.halted[&instrument.0] {
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
                    self.resting[i].order.qty = qty;
                } else {
                    let mut r = self.resting.remove(i);
                    r.order.price = price;
                    r.order.qty = qty;
                    let (remaining, stp, _) =
                        self.match_taker(seq, &r.order, Some(price), qty.0, out);
                    if !stp && remaining > 0 {
                        self.clock += 1;
                        r.order.qty = Qty(remaining);
                        r.queue_time = self.clock;
                        self.resting.push(r);
                    }
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
        match cmd.kind {
            CommandKind::NewOrder(ref o) => self.new_order(seq, cmd, o, out),
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
            .filter(|r| r.order.instrument == instrument)
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
