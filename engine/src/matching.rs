//! [`MatchingEngine`]: the contract of anything that turns commands into events, shared by
//! the fast matcher and the naive reference so that tests run them side by side, and the
//! [`RestingOrder`] through which their books are compared.

use crate::command::Command;
use crate::event::Event;
use crate::funds::{AssetId, Balance};
use crate::types::{AccountId, InstrumentId, OrderId, Price, Qty, Sequence, Side};

/// Anything that turns commands into events: the fast [`crate::Matcher`] and the naive
/// reference ([`crate::book::naive::NaiveMatcher`]) both do, and tests run them side by side.
pub trait MatchingEngine {
    /// Handles the command at input sequence `seq`, appending its events to `out` (the last
    /// one marked with [`Event::is_last_of_command`]).
    fn process(&mut self, seq: Sequence, cmd: &Command, out: &mut Vec<Event>);
    /// The resting orders of an instrument: bids best first, then asks best first, each
    /// price level in queue order.
    fn resting_orders(&self, instrument: InstrumentId) -> Vec<RestingOrder>;
    /// Every non-zero balance, accounts ascending, then assets ascending.
    fn balances(&self) -> Vec<(AccountId, AssetId, Balance)>;
}

/// A resting order as seen from outside: enough to compare books exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RestingOrder {
    /// Bid or ask.
    pub side: Side,
    /// Its price.
    pub price: Price,
    /// Its id.
    pub order_id: OrderId,
    /// Its owner.
    pub account: AccountId,
    /// Its open quantity.
    pub qty: Qty,
}
