//! The history's data: order statuses, the rows of each table, and a commit's [`Batch`].

use super::*;

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
    /// A stop order waiting for its trigger (not in the book; it holds its funds). When
    /// triggered it becomes `active` with reason `triggered`.
    Pending,
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
            OrderStatus::Pending => "pending",
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
            "pending" => OrderStatus::Pending,
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
    /// An iceberg's display size (0: not an iceberg).
    pub display: u64,
    /// An iceberg's shown peak once it has been met as a maker (0: `min(display, open)`).
    pub peak: u64,
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
    /// Changed orders, each once, with its latest state, by id (a store inserts them in
    /// key order). Those accepted at or before `prev_seq` have a row in the store already.
    pub orders: Vec<OrderRow>,
    /// The last event sequence of the commit before (what the store held).
    pub prev_seq: u64,
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
