//! The matcher's money: pre-trade checks and holds, settlement of fills, deposits and
//! withdrawals, and the definitions of assets and instruments.
//!
//! Why here, in the matcher's thread, and not in a stage before it: a hold must be taken in
//! the same step that admits the order (a stage ahead of the matcher would see balances
//! that fills still in flight are about to change), a market buy pays fill by fill as it
//! walks the book, and a fill settles both sides at once. Doing it in one thread keeps the
//! whole engine one pure function of the command sequence with no second copy of the books;
//! on unfunded instruments the money branches cost about 20 instructions per command.

use super::{reject, Matcher, Taker, MAX_INSTRUMENTS, NIL};
use crate::book::order::OrderNode;
use crate::command::NewOrder;
use crate::event::{Event, EventKind, RejectCode};
use crate::funds::{AssetId, Funding, InstrumentDef};
use crate::types::{AccountId, OrderType, Price, SelfTradePrevention, Sequence, Side};

impl Matcher {
    /// The funded checks of a new order, after every other check: `max_qty`, the price
    /// band (limit orders, once the instrument has traded), then funds for its hold, which
    /// is taken when they pass (nothing can reject the order after them).
    pub(super) fn funds_check_new(
        &mut self,
        f: &Funding,
        o: &NewOrder,
        last_price: Option<Price>,
    ) -> Option<RejectCode> {
        if o.qty.0 > f.max_qty {
            return Some(RejectCode::MaxQty);
        }
        if o.order_type == OrderType::Limit && f.outside_band(o.side, o.price, last_price) {
            return Some(RejectCode::PriceBand);
        }
        let hold = f.hold(o.side, o.order_type, o.price, o.qty.0);
        if !self
            .ledger
            .reserve(o.account, f.hold_asset(o.side), 0, hold)
        {
            return Some(RejectCode::InsufficientFunds);
        }
        None
    }

    /// The funded checks of a modify of the resting order at pool index `i`: `max_qty` and
    /// the band on the new values, and the new hold within `available + current hold`,
    /// which is taken when they pass.
    pub(super) fn funds_check_modify(
        &mut self,
        slot: u32,
        i: u32,
        price: Price,
        qty: u64,
    ) -> Option<RejectCode> {
        let (account, side) = {
            let n = self.books.hot(i);
            (n.account, n.side())
        };
        // Borrowed in place (no copy of the rules on the hot path).
        let book = self.books.books.get(slot as usize)?;
        let (f, last_price) = (book.funding.as_ref()?, book.last_price);
        if qty > f.max_qty {
            return Some(RejectCode::MaxQty);
        }
        if f.outside_band(side, price, last_price) {
            return Some(RejectCode::PriceBand);
        }
        let old = self.holds[i as usize];
        let new = f.hold(side, OrderType::Limit, price, qty);
        if !self.ledger.reserve(account, f.hold_asset(side), old, new) {
            return Some(RejectCode::InsufficientFunds);
        }
        self.holds[i as usize] = new;
        None
    }

    /// Records what the resting order at pool index `i` holds.
    #[inline]
    pub(super) fn set_hold(&mut self, i: u32, hold: i128) {
        let i = i as usize;
        if self.holds.len() <= i {
            self.holds.resize(self.books.pool_len().max(i + 1), 0);
        }
        self.holds[i] = hold;
    }

    /// Gives back the hold of the incoming order's `open` quantity (its rest is cancelled,
    /// or it stops matching). Nothing to do for an unfunded book: tested inline.
    #[inline(always)]
    pub(super) fn release_taker(&mut self, taker: &Taker, open: u64) {
        if taker.funded {
            self.release_funded_taker(taker, open);
        }
    }

    #[inline(never)]
    fn release_funded_taker(&mut self, taker: &Taker, open: u64) {
        if let Some(f) = &self.funding(taker) {
            let (ty, price) = taker_type(taker);
            let hold = f.hold(taker.side, ty, price, open);
            self.ledger
                .add_held(taker.account, f.hold_asset(taker.side), -hold);
        }
    }

    /// Removes a resting order from its book, giving back its hold.
    #[inline]
    pub(super) fn remove_resting(&mut self, i: u32) {
        let n = self.books.hot(i);
        if let Some(f) = self
            .books
            .books
            .get(n.book() as usize)
            .and_then(|b| b.funding.as_ref())
        {
            let hold = self.holds[i as usize];
            self.ledger
                .add_held(n.account, f.hold_asset(n.side()), -hold);
        }
        self.books.remove(i);
    }

    /// Settles a fill of `q` at `price` between the taker (with `taker_open` open before
    /// it) and the resting order `maker`: both holds shrink to their new open quantities,
    /// the buyer gets base and pays the notional plus its fee, the seller gives base and
    /// gets the notional less its fee. Emits the fill's [`EventKind::FillFees`].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn settle(
        &mut self,
        seq: Sequence,
        f: &Funding,
        taker: &Taker,
        taker_open: u64,
        maker: &OrderNode,
        maker_index: u32,
        price: Price,
        q: u64,
        out: &mut Vec<Event>,
    ) {
        let (ty, tprice) = taker_type(taker);
        let taker_release = f.hold(taker.side, ty, tprice, taker_open)
            - f.hold(taker.side, ty, tprice, taker_open - q);
        self.ledger
            .add_held(taker.account, f.hold_asset(taker.side), -taker_release);
        let maker_hold = f.hold(maker.side, OrderType::Limit, maker.price, maker.qty.0 - q);
        let maker_release = self.holds[maker_index as usize] - maker_hold;
        self.holds[maker_index as usize] = maker_hold;
        self.ledger
            .add_held(maker.account, f.hold_asset(maker.side), -maker_release);
        let n = f.notional(price, q);
        let (buyer, seller, buyer_rate, seller_rate) = match taker.side {
            Side::Buy => (taker.account, maker.account, f.taker, f.maker),
            Side::Sell => (maker.account, taker.account, f.maker, f.taker),
        };
        let (buyer_fee, seller_fee) = (buyer_rate.apply(n), seller_rate.apply(n));
        let base = f.base_units(q);
        self.ledger
            .add_total(buyer, f.quote, -n.saturating_add(buyer_fee));
        self.ledger
            .add_total(seller, f.quote, n.saturating_sub(seller_fee));
        self.ledger.add_total(buyer, f.base, base);
        self.ledger.add_total(seller, f.base, -base);
        out.push(Event::new(
            seq,
            EventKind::FillFees {
                instrument: taker.instrument,
                buyer_fee: buyer_fee.into(),
                seller_fee: seller_fee.into(),
            },
        ));
    }

    /// Whether a market buy FOK can pay for its whole quantity: the walk matching would do,
    /// maker by maker, with the buyer's available quote shrinking by each fill's cost (and
    /// growing by what it gets when it sells to itself).
    pub(super) fn fok_payable(&self, f: &Funding, taker: &Taker, qty: u64) -> bool {
        let Some(book) = self.books.book(taker.instrument) else {
            return false;
        };
        let mut available = self.ledger.available(taker.account, f.quote);
        let mut remaining = qty;
        for &(_, l) in book.side(taker.side.opposite()).entries.iter().rev() {
            let lv = &self.books.levels[l as usize];
            let mut i = lv.head;
            while i != NIL {
                let n = self.books.hot(i);
                i = n.next;
                if n.account == taker.account && taker.stp != SelfTradePrevention::Allow {
                    if taker.stp == SelfTradePrevention::CancelMaker {
                        continue;
                    }
                    return false;
                }
                let want = remaining.min(n.qty.0);
                let q = f.affordable(lv.price, want, available);
                available = available.saturating_sub(f.taker_cost(lv.price, q));
                if n.account == taker.account {
                    let notional = f.notional(lv.price, q);
                    available = available.saturating_add(notional - f.maker.apply(notional));
                }
                remaining -= q;
                if remaining == 0 {
                    return true;
                }
                if q < want {
                    return false;
                }
            }
        }
        false
    }

    pub(super) fn add_instrument(
        &mut self,
        seq: Sequence,
        def: InstrumentDef,
        out: &mut Vec<Event>,
    ) {
        let code = if def.id.0 >= MAX_INSTRUMENTS {
            Some(RejectCode::InstrumentIdOutOfRange)
        } else if self.books.book(def.id).is_some() {
            Some(RejectCode::DuplicateInstrument)
        } else if def.problem().is_some() {
            Some(RejectCode::InvalidInstrument)
        } else if def.is_funded() && {
            let (b, q) = def.assets();
            !self.ledger.has_asset(b) || !self.ledger.has_asset(q)
        } {
            Some(RejectCode::UnknownAsset)
        } else {
            None
        };
        match code {
            Some(code) => reject(seq, Some(def.id), None, AccountId(0), code, out),
            None => {
                self.books.add_instrument(def);
                out.push(Event::new(seq, EventKind::InstrumentAdded(def)));
            }
        }
    }

    pub(super) fn add_asset(
        &mut self,
        seq: Sequence,
        asset: AssetId,
        scale: u8,
        out: &mut Vec<Event>,
    ) {
        if scale > 18 {
            reject(seq, None, None, AccountId(0), RejectCode::BadAmount, out);
        } else if self.ledger.add_asset(asset, scale) {
            out.push(Event::new(seq, EventKind::AssetAdded { asset, scale }));
        } else {
            reject(
                seq,
                None,
                None,
                AccountId(0),
                RejectCode::DuplicateAsset,
                out,
            );
        }
    }

    /// A deposit (`withdraw` false) or a withdrawal of `amount` units: an unknown asset,
    /// then a bad amount (not positive; a deposit that would overflow the total), then for a
    /// withdrawal the available balance.
    pub(super) fn transfer(
        &mut self,
        seq: Sequence,
        account: AccountId,
        asset: AssetId,
        amount: i128,
        withdraw: bool,
        out: &mut Vec<Event>,
    ) {
        let b = self.ledger.get(account, asset);
        let code = if !self.ledger.has_asset(asset) {
            Some(RejectCode::UnknownAsset)
        } else if amount <= 0 || (!withdraw && b.total.checked_add(amount).is_none()) {
            Some(RejectCode::BadAmount)
        } else if withdraw && b.available() < amount {
            Some(RejectCode::InsufficientFunds)
        } else {
            None
        };
        if let Some(code) = code {
            return reject(seq, None, None, account, code, out);
        }
        let (delta, kind) = if withdraw {
            (
                -amount,
                EventKind::Withdrawn {
                    account,
                    asset,
                    amount: amount.into(),
                },
            )
        } else {
            (
                amount,
                EventKind::Deposited {
                    account,
                    asset,
                    amount: amount.into(),
                },
            )
        };
        self.ledger.add_total(account, asset, delta);
        out.push(Event::new(seq, kind));
    }
}

/// The order type and hold price of an incoming order.
#[inline]
fn taker_type(taker: &Taker) -> (OrderType, Price) {
    match taker.limit {
        Some(p) => (OrderType::Limit, p),
        None => (OrderType::Market, Price(0)),
    }
}
