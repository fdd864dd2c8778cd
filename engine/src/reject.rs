//! [`RejectCode`]: why a command was refused, shared by commands (a [`crate::CommandKind`]
//! can carry a reject found at the edge) and events (`rejected`).

use std::fmt;

/// Why a command was rejected. Grouped by the stage that finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectCode {
    // -- edge: conversion of a user's decimal values --
    /// The price is not a whole number of ticks.
    OffTick,
    /// The quantity is not a whole number of lots.
    OffLot,
    /// The quantity is negative.
    NegativeQty,
    /// More lots than fit in a `u64`.
    QtyOverflow,
    /// More ticks than fit in an `i64`.
    PriceOverflow,
    /// A limit order without a price.
    MissingPrice,
    /// The order names an allocation group that was never defined.
    UnknownAllocGroup,
    // -- matcher: references --
    /// The symbol or instrument is not known.
    UnknownInstrument,
    /// The order is not resting (never existed, already filled, cancelled or expired).
    UnknownOrder,
    /// The order belongs to another account.
    NotOwner,
    /// The order id was used before.
    DuplicateOrderId,
    /// The instrument already exists.
    DuplicateInstrument,
    // -- matcher: state --
    /// The instrument is halted.
    Halted,
    /// The account is blocked.
    Blocked,
    // -- matcher: content --
    /// A zero quantity.
    ZeroQty,
    /// A post-only order would take liquidity.
    PostOnlyWouldTake,
    /// A GTD order whose expiry is not after the command's time.
    ExpiryInPast,
    /// An instrument id at or above [`crate::types::MAX_INSTRUMENTS`]: books are indexed
    /// by id, so ids must be small (number instruments densely from 0).
    InstrumentIdOutOfRange,
    // -- matcher: funds (funded instruments, deposits and withdrawals) --
    /// The asset was never declared.
    UnknownAsset,
    /// An amount that is zero, negative or not a whole number of the asset's units.
    BadAmount,
    /// The account's available balance does not cover the order's hold or the withdrawal.
    InsufficientFunds,
    /// The quantity is above the instrument's `max_qty`.
    MaxQty,
    /// A limit price outside the band around the last trade price.
    PriceBand,
    /// The asset was declared before.
    DuplicateAsset,
    /// A funded instrument definition that cannot be used (same asset on both sides, a zero
    /// unit, a bad rate, an undeclared asset's scale).
    InvalidInstrument,
    /// The account already has as many resting orders as the engine allows
    /// ([`crate::Matcher::with_max_open_orders`]).
    TooManyOrders,
    // -- matcher: order types --
    /// An iceberg that cannot be one: a market, IOC or FOK order, a display size that is
    /// not a whole number of lots above 0 and at most the quantity, or a pro-rata instrument.
    InvalidDisplay,
    /// A stop order with `post_only` or a display size.
    InvalidStop,
    /// A stop trigger at or below 0.
    BadPrice,
    /// A stop whose trigger the last trade price has already reached (a buy stop at or
    /// below it, a sell stop at or above it).
    StopWouldTrigger,
    /// A modify of a stop order that has not been triggered yet.
    StopPending,
}

impl RejectCode {
    /// The code as written in event logs.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::OffTick => "off_tick",
            RejectCode::OffLot => "off_lot",
            RejectCode::NegativeQty => "negative_qty",
            RejectCode::QtyOverflow => "qty_overflow",
            RejectCode::PriceOverflow => "price_overflow",
            RejectCode::MissingPrice => "missing_price",
            RejectCode::UnknownAllocGroup => "unknown_alloc_group",
            RejectCode::UnknownInstrument => "unknown_symbol",
            RejectCode::UnknownOrder => "unknown_order",
            RejectCode::NotOwner => "not_owner",
            RejectCode::DuplicateOrderId => "duplicate_order_id",
            RejectCode::DuplicateInstrument => "duplicate_instrument",
            RejectCode::Halted => "halted",
            RejectCode::Blocked => "blocked",
            RejectCode::ZeroQty => "zero_qty",
            RejectCode::PostOnlyWouldTake => "post_only_would_take",
            RejectCode::ExpiryInPast => "expiry_in_past",
            RejectCode::InstrumentIdOutOfRange => "instrument_id_out_of_range",
            RejectCode::UnknownAsset => "unknown_asset",
            RejectCode::BadAmount => "bad_amount",
            RejectCode::InsufficientFunds => "insufficient_funds",
            RejectCode::MaxQty => "max_qty",
            RejectCode::PriceBand => "price_band",
            RejectCode::DuplicateAsset => "duplicate_asset",
            RejectCode::InvalidInstrument => "invalid_instrument",
            RejectCode::TooManyOrders => "too_many_orders",
            RejectCode::InvalidDisplay => "invalid_display",
            RejectCode::InvalidStop => "invalid_stop",
            RejectCode::BadPrice => "bad_price",
            RejectCode::StopWouldTrigger => "stop_would_trigger",
            RejectCode::StopPending => "stop_pending",
        }
    }

    /// Every code, for tests and documentation.
    pub const ALL: [RejectCode; 31] = [
        RejectCode::OffTick,
        RejectCode::OffLot,
        RejectCode::NegativeQty,
        RejectCode::QtyOverflow,
        RejectCode::PriceOverflow,
        RejectCode::MissingPrice,
        RejectCode::UnknownAllocGroup,
        RejectCode::UnknownInstrument,
        RejectCode::UnknownOrder,
        RejectCode::NotOwner,
        RejectCode::DuplicateOrderId,
        RejectCode::DuplicateInstrument,
        RejectCode::Halted,
        RejectCode::Blocked,
        RejectCode::ZeroQty,
        RejectCode::PostOnlyWouldTake,
        RejectCode::ExpiryInPast,
        RejectCode::InstrumentIdOutOfRange,
        RejectCode::UnknownAsset,
        RejectCode::BadAmount,
        RejectCode::InsufficientFunds,
        RejectCode::MaxQty,
        RejectCode::PriceBand,
        RejectCode::DuplicateAsset,
        RejectCode::InvalidInstrument,
        RejectCode::TooManyOrders,
        RejectCode::InvalidDisplay,
        RejectCode::InvalidStop,
        RejectCode::BadPrice,
        RejectCode::StopWouldTrigger,
        RejectCode::StopPending,
    ];
}

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
