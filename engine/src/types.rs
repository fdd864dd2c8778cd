//! Newtypes for every id and unit that crosses the engine.
//!
//! Inside the engine prices are whole ticks ([`Price`], `i64`) and quantities whole lots
//! ([`Qty`], `u64`). Decimal values live only at the edge (see [`crate::instrument`]).

use std::fmt;

macro_rules! newtype {
    ($(#[$m:meta])* $name:ident($inner:ty)) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

newtype!(
    /// An order id, chosen by the client. Unique in the whole engine and never reused.
    OrderId(u64)
);
newtype!(
    /// A trading account.
    AccountId(u64)
);
newtype!(
    /// An instrument, numbered by the embedding application (dense small numbers are best).
    InstrumentId(u32)
);
newtype!(
    /// A price in whole ticks of its instrument.
    Price(i64)
);
newtype!(
    /// A quantity in whole lots of its instrument.
    Qty(u64)
);
newtype!(
    /// A position in a ring: the input sequence of a command, or the output sequence of an event.
    Sequence(u64)
);
newtype!(
    /// A time stamped at ingress (nanoseconds, or any unit that never goes backwards).
    /// The matcher never reads a clock: time is a field of the command.
    Timestamp(u64)
);
newtype!(
    /// A pro-rata allocation group (see `alloc_group` in docs/formats.md). 0 means none.
    AllocGroupId(u32)
);

impl Qty {
    /// No quantity.
    pub const ZERO: Qty = Qty(0);
}

impl AllocGroupId {
    /// The order belongs to no allocation group.
    pub const NONE: AllocGroupId = AllocGroupId(0);
}

/// The side of an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// A bid.
    Buy,
    /// An offer.
    Sell,
}

impl Side {
    /// The side this side trades against.
    #[inline]
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }

    /// True when `price` is at least as good as `other` for a resting order of this side
    /// (higher for bids, lower for asks).
    #[inline]
    pub fn better_or_equal(self, price: Price, other: Price) -> bool {
        match self {
            Side::Buy => price >= other,
            Side::Sell => price <= other,
        }
    }
}

/// Limit or market.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrderType {
    /// Trades at its limit price or better; may rest.
    Limit,
    /// Trades at any price and never rests: what it cannot fill is cancelled.
    Market,
}

/// Time in force. A GTD order's expiry is a separate field of the order
/// ([`crate::command::NewOrder::expiry`]) so that commands stay small.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeInForce {
    /// Good till cancelled.
    Gtc,
    /// Immediate or cancel: what does not fill at once is cancelled.
    Ioc,
    /// Fill or kill: fills completely at once or not at all.
    Fok,
    /// Good till date: expires before the first command whose time is at or past the expiry.
    Gtd,
}

impl TimeInForce {
    /// True for the kinds that may rest in the book.
    #[inline]
    pub fn may_rest(self) -> bool {
        matches!(self, TimeInForce::Gtc | TimeInForce::Gtd)
    }
}

/// Self-trade prevention: what happens when an incoming order would trade with a resting
/// order of the same account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SelfTradePrevention {
    /// Cancel the rest of the incoming order (the default).
    #[default]
    CancelTaker,
    /// Cancel the resting order and go on matching.
    CancelMaker,
    /// Cancel both the resting order and the rest of the incoming order.
    CancelBoth,
    /// Let the two orders trade.
    Allow,
}

/// How a price level is shared among its resting orders (docs/formats.md, "Matching
/// policies and order types").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MatchPolicy {
    /// First come, first served (the default).
    #[default]
    Fifo,
    /// By size: each order gets its share of what the level trades, exact in integers.
    ProRata,
    /// By size, after the side's TOP order (the one that last bettered the market).
    ProRataTop,
}

impl MatchPolicy {
    /// The name written in scripts (`match=`).
    pub fn as_str(self) -> &'static str {
        match self {
            MatchPolicy::Fifo => "fifo",
            MatchPolicy::ProRata => "pro_rata",
            MatchPolicy::ProRataTop => "pro_rata_top",
        }
    }

    /// True for the pro-rata policies.
    #[inline]
    pub fn is_pro_rata(self) -> bool {
        self != MatchPolicy::Fifo
    }
}

/// Which order ids a new order may not take: the rule is the matcher's
/// ([`crate::Matcher::with_id_uniqueness`]), and the same rule must be set wherever the same
/// commands are replayed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum IdUniqueness {
    /// Any id used before, live or not (docs/formats.md: an order id is unique in the whole
    /// engine, for ever; scripts and every CLI run keep this rule). The used ids are
    /// remembered compactly (`book/ids.rs`): nothing for a counter, a range per gap, at
    /// most 2 bytes per id for ids in any order within 2^32 of each other, 16 bytes per
    /// lone sparse id.
    #[default]
    Ever,
    /// Only the ids of orders live now (resting, or stops pending): a used id is free again
    /// once its order is gone — the rule exchange-core checks. Memory is bounded by the
    /// live orders whatever the ids.
    Live,
}

/// Instrument ids must be below this (books are indexed by id through a two-level index).
pub const MAX_INSTRUMENTS: u32 = 1 << 20;
