//! [`Command`]: what gateways submit into the input ring.
//!
//! A command is a small `Copy` value written in place into a preallocated ring slot.

use crate::funds::{Amount, AssetId, InstrumentDef};
use crate::reject::RejectCode;
use crate::types::{
    AccountId, AllocGroupId, InstrumentId, OrderId, OrderType, Price, Qty, SelfTradePrevention,
    Side, TimeInForce, Timestamp,
};

/// A new order, as submitted and as echoed back in [`crate::event::EventKind::Accepted`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewOrder {
    /// The instrument.
    pub instrument: InstrumentId,
    /// The owner of the order.
    pub account: AccountId,
    /// The client's order id, unique in the engine.
    pub order_id: OrderId,
    /// Buy or sell.
    pub side: Side,
    /// Limit or market.
    pub order_type: OrderType,
    /// Time in force.
    pub tif: TimeInForce,
    /// The expiry of a [`TimeInForce::Gtd`] order; ignored otherwise.
    pub expiry: Timestamp,
    /// The limit price in ticks; ignored for market orders.
    pub price: Price,
    /// The quantity in lots.
    pub qty: Qty,
    /// Rejected instead of taking liquidity on arrival.
    pub post_only: bool,
    /// What to do when it would trade with an order of the same account.
    pub stp: SelfTradePrevention,
    /// The pro-rata allocation group of a block order, or [`AllocGroupId::NONE`].
    pub alloc_group: AllocGroupId,
}

impl NewOrder {
    /// A GTC limit order with default flags.
    pub fn limit(
        instrument: InstrumentId,
        account: AccountId,
        order_id: OrderId,
        side: Side,
        price: Price,
        qty: Qty,
    ) -> Self {
        NewOrder {
            instrument,
            account,
            order_id,
            side,
            order_type: OrderType::Limit,
            tif: TimeInForce::Gtc,
            expiry: Timestamp(0),
            price,
            qty,
            post_only: false,
            stp: SelfTradePrevention::CancelTaker,
            alloc_group: AllocGroupId::NONE,
        }
    }
}

/// What a new order carries beyond [`NewOrder`]: an iceberg's display size or a stop's
/// trigger. A command slot has no room for them, so such an order is two commands, sent
/// together ([`crate::pipeline::Gateway::try_submit_order`]): [`CommandKind::OrderTerms`] and, right
/// after it, the [`CommandKind::NewOrder`] with the same id. Terms that no such order
/// follows are ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrderTerms {
    /// The instrument of the order (routes the terms with it).
    pub instrument: InstrumentId,
    /// The order they belong to.
    pub order_id: OrderId,
    /// The iceberg's display size in lots (0: not an iceberg).
    pub display: Qty,
    /// The stop's trigger price in ticks (`None`: not a stop).
    pub stop: Option<Price>,
}

impl OrderTerms {
    /// True when the terms ask for nothing (a plain order).
    #[inline]
    pub fn is_plain(&self) -> bool {
        self.display.0 == 0 && self.stop.is_none()
    }
}

/// What a command asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandKind {
    /// Place a new order.
    NewOrder(NewOrder),
    /// Cancel a resting order.
    Cancel {
        /// The instrument of the order.
        instrument: InstrumentId,
        /// The account that owns it.
        account: AccountId,
        /// The order.
        order_id: OrderId,
    },
    /// Set a new price and open quantity (a same-price decrease keeps queue priority).
    Modify {
        /// The instrument of the order.
        instrument: InstrumentId,
        /// The account that owns it.
        account: AccountId,
        /// The order.
        order_id: OrderId,
        /// The new limit price in ticks.
        price: Price,
        /// The new open quantity in lots (0 is rejected: cancel instead).
        qty: Qty,
    },
    /// Cancel every resting order of an account, optionally in one instrument only.
    MassCancel {
        /// The account.
        account: AccountId,
        /// Only this instrument, or all of them.
        instrument: Option<InstrumentId>,
    },
    /// Reject new orders and modifies for the instrument until resumed.
    Halt {
        /// The instrument.
        instrument: InstrumentId,
    },
    /// Reopen a halted instrument.
    Resume {
        /// The instrument.
        instrument: InstrumentId,
    },
    /// Reject new orders and modifies of the account; its resting orders stay.
    Block {
        /// The account.
        account: AccountId,
    },
    /// Lift a block.
    Unblock {
        /// The account.
        account: AccountId,
    },
    /// Only advances time (GTD expiries).
    Tick,
    /// Asks for a book snapshot of an instrument (answered by book-publishing consumers).
    SnapshotRequest {
        /// The instrument.
        instrument: InstrumentId,
    },
    /// Open a book for a new instrument (setup; allocates once). A funded definition
    /// (base and quote assets, fees, limits) makes the engine check and hold money for its
    /// orders.
    AddInstrument(InstrumentDef),
    /// Declare an asset whose balances count whole units of 10^-scale.
    AddAsset {
        /// The asset.
        asset: AssetId,
        /// Decimal places of one unit (0 to 18).
        scale: u8,
    },
    /// Add to an account's total of an asset.
    Deposit {
        /// The account.
        account: AccountId,
        /// The asset.
        asset: AssetId,
        /// Units of the asset (positive).
        amount: Amount,
    },
    /// Take from an account's available balance of an asset.
    Withdraw {
        /// The account.
        account: AccountId,
        /// The asset.
        asset: AssetId,
        /// Units of the asset (positive, at most the available balance).
        amount: Amount,
    },
    /// The display size or stop trigger of the [`CommandKind::NewOrder`] that comes next.
    OrderTerms(OrderTerms),
    /// Chooses how the instrument's price levels are shared (only while its book is empty;
    /// `min_alloc` in lots, at least 1, used by the pro-rata policies).
    SetMatchPolicy {
        /// The instrument.
        instrument: InstrumentId,
        /// The policy.
        policy: crate::types::MatchPolicy,
        /// The smallest pro-rata share in lots.
        min_alloc: Qty,
    },
    /// A command the edge already found bad (off-tick price, unknown symbol, …). It still
    /// goes through the matcher so that its rejection is sequenced with everything else and
    /// its time still expires GTD orders.
    Invalid {
        /// The instrument, when the edge knew it.
        instrument: Option<InstrumentId>,
        /// The order id, when the command named one.
        order_id: Option<OrderId>,
        /// The account, when the command named one.
        account: AccountId,
        /// Why it is bad.
        code: RejectCode,
    },
}

/// One command with its ingress time: 64 bytes on one cache line (64-byte aligned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct Command {
    /// Ingress time, stamped by the gateway (or taken from a script).
    pub ts: Timestamp,
    /// What it asks for.
    pub kind: CommandKind,
}

// One ring slot, one cache line: no slot straddles two.
const _: () =
    assert!(std::mem::size_of::<Command>() == 64 && std::mem::align_of::<Command>() == 64);

impl Command {
    /// A command at `ts`.
    #[inline]
    pub fn new(ts: Timestamp, kind: CommandKind) -> Self {
        Command { ts, kind }
    }
}

impl Default for Command {
    fn default() -> Self {
        Command {
            ts: Timestamp(0),
            kind: CommandKind::Tick,
        }
    }
}
