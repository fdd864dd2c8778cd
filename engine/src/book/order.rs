//! The order pool's records: a resting order lives in two arrays at the same pool index, a
//! 32-byte [`Hot`] record (open quantity, owner, queue links, level, book slot and side)
//! that matching, linking and cancelling read, and a [`Cold`] record (id, price, expiry,
//! flags, account links) that events, modify and snapshots read. [`OrderNode`] is the two
//! together, as an order goes into and out of the pool.

use crate::command::NewOrder;
use crate::types::{
    AccountId, AllocGroupId, InstrumentId, OrderId, OrderType, Price, Qty, SelfTradePrevention,
    Side, TimeInForce, Timestamp,
};

/// No index.
pub(crate) const NIL: u32 = u32::MAX;

/// What matching, linking and cancelling touch of a resting order: 32 bytes, two to a
/// cache line. The pool keeps these apart from the [`Cold`] fields.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hot {
    pub qty: Qty,
    pub account: AccountId,
    pub prev: u32,
    pub next: u32,
    pub level: u32,
    /// Its book's slot, shifted left once, with the side in the low bit (1: sell).
    pub(super) book_side: u32,
}

impl Hot {
    /// Its book's dense slot.
    #[inline]
    pub fn book(&self) -> u32 {
        self.book_side >> 1
    }

    #[inline]
    pub fn side(&self) -> Side {
        if self.book_side & 1 == 1 {
            Side::Sell
        } else {
            Side::Buy
        }
    }
}

/// The rest of a resting order: read when an event reports it, by modify, expiry and
/// mass cancel, and by snapshots.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cold {
    pub id: OrderId,
    pub price: Price,
    pub expiry: Timestamp,
    pub accept_seq: u64,
    pub instrument: InstrumentId,
    pub alloc_group: AllocGroupId,
    pub acct_prev: u32,
    pub acct_next: u32,
    pub tif: TimeInForce,
    pub stp: SelfTradePrevention,
    pub post_only: bool,
    pub live: bool,
}

/// A resting order, whole: what goes into the pool ([`OrderBooks::insert`]) and what
/// [`OrderBooks::node`] reads back (a copy of its hot and cold parts).
#[derive(Clone, Copy, Debug)]
pub(crate) struct OrderNode {
    pub id: OrderId,
    pub account: AccountId,
    pub price: Price,
    pub qty: Qty,
    pub expiry: Timestamp,
    pub accept_seq: u64,
    pub instrument: InstrumentId,
    /// The dense slot of its instrument's book (`OrderBooks::books`): linking and
    /// unlinking never look the instrument up.
    pub book: u32,
    pub alloc_group: AllocGroupId,
    pub prev: u32,
    pub next: u32,
    pub level: u32,
    pub side: Side,
    pub tif: TimeInForce,
    pub stp: SelfTradePrevention,
    pub post_only: bool,
    pub live: bool,
    /// The account's other resting orders (a doubly linked list per account).
    pub acct_prev: u32,
    pub acct_next: u32,
}

impl OrderNode {
    /// A node for a new order that will rest with `qty` open.
    pub fn from_new(o: &NewOrder, qty: Qty, accept_seq: u64) -> Self {
        OrderNode {
            id: o.order_id,
            account: o.account,
            price: o.price,
            qty,
            expiry: o.expiry,
            accept_seq,
            instrument: o.instrument,
            book: NIL,
            alloc_group: o.alloc_group,
            prev: NIL,
            next: NIL,
            level: NIL,
            side: o.side,
            tif: o.tif,
            stp: o.stp,
            post_only: o.post_only,
            live: true,
            acct_prev: NIL,
            acct_next: NIL,
        }
    }

    pub(super) fn split(&self) -> (Hot, Cold) {
        (
            Hot {
                qty: self.qty,
                account: self.account,
                prev: self.prev,
                next: self.next,
                level: self.level,
                book_side: (self.book << 1) | (self.side == Side::Sell) as u32,
            },
            Cold {
                id: self.id,
                price: self.price,
                expiry: self.expiry,
                accept_seq: self.accept_seq,
                instrument: self.instrument,
                alloc_group: self.alloc_group,
                acct_prev: self.acct_prev,
                acct_next: self.acct_next,
                tif: self.tif,
                stp: self.stp,
                post_only: self.post_only,
                live: self.live,
            },
        )
    }

    pub(super) fn join(h: &Hot, c: &Cold) -> Self {
        OrderNode {
            id: c.id,
            account: h.account,
            price: c.price,
            qty: h.qty,
            expiry: c.expiry,
            accept_seq: c.accept_seq,
            instrument: c.instrument,
            book: h.book(),
            alloc_group: c.alloc_group,
            prev: h.prev,
            next: h.next,
            level: h.level,
            side: h.side(),
            tif: c.tif,
            stp: c.stp,
            post_only: c.post_only,
            live: c.live,
            acct_prev: c.acct_prev,
            acct_next: c.acct_next,
        }
    }

    /// The order as a [`NewOrder`] with its current price and open quantity.
    pub fn as_new_order(&self) -> NewOrder {
        NewOrder {
            instrument: self.instrument,
            account: self.account,
            order_id: self.id,
            side: self.side,
            order_type: OrderType::Limit,
            tif: self.tif,
            expiry: self.expiry,
            price: self.price,
            qty: self.qty,
            post_only: self.post_only,
            stp: self.stp,
            alloc_group: self.alloc_group,
        }
    }
}

// The per-order memory the documentation states: a hot record is half a cache line, the
// cold one 56 bytes.
const _: () = assert!(std::mem::size_of::<Hot>() == 32);
const _: () = assert!(std::mem::size_of::<Cold>() == 56);
