//! [`Event`]: what the matcher emits into the output ring.
//!
//! One command makes zero or more events. Every event carries the input sequence of the
//! command that caused it, and the last event of a command is marked, so that a consumer
//! (the journal) can tell command boundaries apart.

use crate::command::NewOrder;
use crate::funds::{Amount, AssetId, InstrumentDef};
pub use crate::reject::RejectCode;
use crate::types::{
    AccountId, AllocGroupId, InstrumentId, OrderId, OrderType, Price, Qty, SelfTradePrevention,
    Sequence, Side, TimeInForce, Timestamp,
};

/// Why an order left the book without trading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CancelReason {
    /// A cancel command.
    User,
    /// A mass cancel command.
    MassCancel,
    /// The unfilled rest of an IOC order.
    Ioc,
    /// A FOK order that could not fill completely.
    Fok,
    /// The unfilled rest of a market order.
    Market,
    /// Self-trade prevention.
    SelfTrade,
    /// A market buy on a funded instrument that cannot pay for one more lot.
    InsufficientFunds,
}

impl CancelReason {
    /// The reason as written in event logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::User => "user",
            CancelReason::MassCancel => "mass_cancel",
            CancelReason::Ioc => "ioc",
            CancelReason::Fok => "fok",
            CancelReason::Market => "market",
            CancelReason::SelfTrade => "stp",
            CancelReason::InsufficientFunds => "insufficient_funds",
        }
    }
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A new order was accepted (it may then trade, rest, or be cancelled). The order's
    /// fields as submitted, flat in the variant so that the 56-byte kind also has room for
    /// the larger `Fill` and `Modified` ([`EventKind::accepted`] builds it from a
    /// [`NewOrder`], [`EventKind::accepted_order`] gives the `NewOrder` back).
    Accepted {
        /// The instrument.
        instrument: InstrumentId,
        /// The owner of the order.
        account: AccountId,
        /// The client's order id.
        order_id: OrderId,
        /// Buy or sell.
        side: Side,
        /// Limit or market.
        order_type: OrderType,
        /// Time in force.
        tif: TimeInForce,
        /// The expiry of a GTD order.
        expiry: Timestamp,
        /// The limit price in ticks (ignored for market orders).
        price: Price,
        /// The quantity in lots.
        qty: Qty,
        /// Post-only.
        post_only: bool,
        /// Self-trade prevention.
        stp: SelfTradePrevention,
        /// The pro-rata allocation group, or [`AllocGroupId::NONE`].
        alloc_group: AllocGroupId,
    },
    /// A command was rejected; nothing changed.
    Rejected {
        /// The instrument, when known.
        instrument: Option<InstrumentId>,
        /// The order id the command named, if any.
        order_id: Option<OrderId>,
        /// The account the command named (0 when none).
        account: AccountId,
        /// Why.
        code: RejectCode,
    },
    /// A trade at the maker's price.
    Fill {
        /// The instrument.
        instrument: InstrumentId,
        /// The incoming (aggressive) order.
        taker: OrderId,
        /// The resting order.
        maker: OrderId,
        /// The resting order's owner (consumers route the maker's execution report without
        /// an order map of their own).
        maker_account: AccountId,
        /// The maker's price.
        price: Price,
        /// The traded lots.
        qty: Qty,
        /// The maker's open quantity after this fill (0: it left the book). The taker's is
        /// its accepted (or modified) quantity less its fills so far in the command.
        maker_left: Qty,
        /// The taker's side.
        taker_side: Side,
    },
    /// An order (or the rest of one) was cancelled.
    Cancelled {
        /// The instrument.
        instrument: InstrumentId,
        /// The order.
        order_id: OrderId,
        /// Its owner.
        account: AccountId,
        /// The open quantity that was cancelled.
        qty: Qty,
        /// Why.
        reason: CancelReason,
        /// Its side.
        side: Side,
        /// Its limit price (0 for a market order).
        price: Price,
    },
    /// A resting order got a new price and open quantity.
    Modified {
        /// The instrument.
        instrument: InstrumentId,
        /// The order.
        order_id: OrderId,
        /// Its owner.
        account: AccountId,
        /// The new price.
        price: Price,
        /// The new open quantity (before any trade the modify causes).
        qty: Qty,
        /// True when the order kept its place in the queue.
        kept_priority: bool,
        /// Its side.
        side: Side,
        /// The price before the modify.
        old_price: Price,
        /// The open quantity before the modify.
        old_qty: Qty,
    },
    /// A GTD order expired.
    Expired {
        /// The instrument.
        instrument: InstrumentId,
        /// The order.
        order_id: OrderId,
        /// Its owner.
        account: AccountId,
        /// The open quantity that expired.
        qty: Qty,
        /// Its side.
        side: Side,
        /// Its limit price.
        price: Price,
    },
    /// An instrument was halted or resumed.
    InstrumentStatus {
        /// The instrument.
        instrument: InstrumentId,
        /// True when halted.
        halted: bool,
    },
    /// An account was blocked or unblocked. (Not part of the CSV event log.)
    AccountStatus {
        /// The account.
        account: AccountId,
        /// True when blocked.
        blocked: bool,
    },
    /// An instrument's book was opened, with its funding rules. (Not part of the CSV event
    /// log.)
    InstrumentAdded(InstrumentDef),
    /// An asset was declared. (Not part of the CSV event log.)
    AssetAdded {
        /// The asset.
        asset: AssetId,
        /// Decimal places of one unit.
        scale: u8,
    },
    /// Units were added to an account's total.
    Deposited {
        /// The account.
        account: AccountId,
        /// The asset.
        asset: AssetId,
        /// The units.
        amount: Amount,
    },
    /// Units were taken from an account's total.
    Withdrawn {
        /// The account.
        account: AccountId,
        /// The asset.
        asset: AssetId,
        /// The units.
        amount: Amount,
    },
    /// The fees of the [`EventKind::Fill`] just before, on a funded instrument, in units of
    /// its quote asset (negative: a rebate). The buyer paid `notional + buyer_fee`, the
    /// seller got `notional − seller_fee`. (Not part of the CSV event log.)
    FillFees {
        /// The instrument.
        instrument: InstrumentId,
        /// The buyer's fee.
        buyer_fee: Amount,
        /// The seller's fee.
        seller_fee: Amount,
    },
    /// The display size or stop trigger of the order accepted in the next event (an
    /// [`EventKind::Accepted`] of the same command). (Not part of the CSV event log.)
    OrderTerms {
        /// The instrument.
        instrument: InstrumentId,
        /// The terms.
        terms: crate::command::OrderTerms,
    },
    /// A pending stop order was elected: it arrives now as a new order of its type.
    Triggered {
        /// The instrument.
        instrument: InstrumentId,
        /// The order.
        order_id: OrderId,
        /// Its owner.
        account: AccountId,
        /// Its side.
        side: Side,
        /// Its trigger price.
        stop: Price,
    },
    /// An instrument's matching policy was set. (Not part of the CSV event log.)
    MatchPolicySet {
        /// The instrument.
        instrument: InstrumentId,
        /// The policy.
        policy: crate::types::MatchPolicy,
        /// The smallest pro-rata share in lots.
        min_alloc: Qty,
    },
    /// Someone asked for a book snapshot of the instrument: consumers that publish books
    /// (market data) send one, sequenced here with everything else. (Not part of the CSV
    /// event log.)
    SnapshotRequested {
        /// The instrument.
        instrument: InstrumentId,
    },
}

impl EventKind {
    /// The [`EventKind::Accepted`] of an order.
    #[inline(always)]
    pub fn accepted(o: &NewOrder) -> Self {
        EventKind::Accepted {
            instrument: o.instrument,
            account: o.account,
            order_id: o.order_id,
            side: o.side,
            order_type: o.order_type,
            tif: o.tif,
            expiry: o.expiry,
            price: o.price,
            qty: o.qty,
            post_only: o.post_only,
            stp: o.stp,
            alloc_group: o.alloc_group,
        }
    }

    /// The order of an [`EventKind::Accepted`], as submitted.
    #[inline]
    pub fn accepted_order(&self) -> Option<NewOrder> {
        match *self {
            EventKind::Accepted {
                instrument,
                account,
                order_id,
                side,
                order_type,
                tif,
                expiry,
                price,
                qty,
                post_only,
                stp,
                alloc_group,
            } => Some(NewOrder {
                instrument,
                account,
                order_id,
                side,
                order_type,
                tif,
                expiry,
                price,
                qty,
                post_only,
                stp,
                alloc_group,
            }),
            _ => None,
        }
    }
}

/// One event in an output-ring slot: 64 bytes on one cache line (64-byte aligned), `Copy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct Event {
    /// Input sequence of the causing command, shifted left by one; bit 0 marks the last
    /// event of that command.
    meta: u64,
    /// What happened.
    pub kind: EventKind,
}

// One ring slot, one cache line: no slot straddles two.
const _: () = assert!(std::mem::size_of::<Event>() == 64 && std::mem::align_of::<Event>() == 64);

impl Event {
    /// An event caused by the command at input sequence `cmd_seq`.
    #[inline]
    pub fn new(cmd_seq: Sequence, kind: EventKind) -> Self {
        Event {
            meta: cmd_seq.0 << 1,
            kind,
        }
    }

    /// The input sequence of the command that caused this event.
    #[inline]
    pub fn cmd_seq(&self) -> Sequence {
        Sequence(self.meta >> 1)
    }

    /// True for the last event of its command: a durable prefix may end here.
    #[inline]
    pub fn is_last_of_command(&self) -> bool {
        self.meta & 1 == 1
    }

    /// Marks this event as the last of its command.
    #[inline]
    pub fn set_last_of_command(&mut self, last: bool) {
        self.meta = (self.meta & !1) | last as u64;
    }

    /// The instrument the event is about, if any.
    pub fn instrument(&self) -> Option<InstrumentId> {
        match self.kind {
            EventKind::Rejected { instrument, .. } => instrument,
            EventKind::Accepted { instrument, .. }
            | EventKind::Fill { instrument, .. }
            | EventKind::Cancelled { instrument, .. }
            | EventKind::Modified { instrument, .. }
            | EventKind::Expired { instrument, .. }
            | EventKind::InstrumentStatus { instrument, .. }
            | EventKind::FillFees { instrument, .. }
            | EventKind::OrderTerms { instrument, .. }
            | EventKind::Triggered { instrument, .. }
            | EventKind::MatchPolicySet { instrument, .. }
            | EventKind::SnapshotRequested { instrument } => Some(instrument),
            EventKind::InstrumentAdded(d) => Some(d.id),
            EventKind::AccountStatus { .. }
            | EventKind::AssetAdded { .. }
            | EventKind::Deposited { .. }
            | EventKind::Withdrawn { .. } => None,
        }
    }

    /// True for administrative events (account status, instrument or asset added, snapshot
    /// requested, the fees of a fill, an order's terms, a matching policy): they have no line in the CSV event log, whose `seq`
    /// numbers only the other events.
    #[inline]
    pub fn is_admin(&self) -> bool {
        matches!(
            self.kind,
            EventKind::AccountStatus { .. }
                | EventKind::InstrumentAdded(_)
                | EventKind::AssetAdded { .. }
                | EventKind::FillFees { .. }
                | EventKind::SnapshotRequested { .. }
                | EventKind::OrderTerms { .. }
                | EventKind::MatchPolicySet { .. }
        )
    }
}

impl Default for Event {
    fn default() -> Self {
        Event::new(
            Sequence(0),
            EventKind::InstrumentAdded(InstrumentDef::unfunded(InstrumentId(0))),
        )
    }
}
