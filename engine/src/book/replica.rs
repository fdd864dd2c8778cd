//! [`BookReplica`]: rebuilds the matcher's L3 books from its events alone.
//!
//! Everything derived from events (L2 depth, market data, snapshots, recovery, tests) goes
//! through this one component. After any command, a replica that has applied the matcher's
//! events holds exactly the matcher's books.

use crate::book::fast::{IdState, OrderBooks, OrderNode, RestingOrder};
use crate::command::NewOrder;
use crate::event::{Event, EventKind};
use crate::state::{EngineState, RestingState};
use crate::types::{AccountId, InstrumentId, OrderId, OrderType, Price, Qty, Side};
use std::collections::BTreeSet;

/// An L3 book of every instrument, maintained from events.
#[derive(Clone, Debug, Default)]
pub struct BookReplica {
    books: OrderBooks,
    blocked: BTreeSet<u64>,
    /// The incoming order of the current command when it cannot rest (IOC, FOK, market).
    transient: Option<OrderId>,
    accept_seq: u64,
    admin_events: u64,
}

impl BookReplica {
    /// An empty replica.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one event.
    pub fn apply(&mut self, e: &Event) {
        if e.is_admin() {
            self.admin_events += 1;
        }
        match e.kind {
            EventKind::Accepted(o) => {
                self.accept_seq += 1;
                if o.order_type == OrderType::Limit && o.tif.may_rest() {
                    self.books
                        .insert(OrderNode::from_new(&o, o.qty, self.accept_seq));
                    self.transient = None;
                } else {
                    self.books.mark_dead(o.order_id);
                    self.transient = Some(o.order_id);
                }
            }
            EventKind::Fill {
                taker, maker, qty, ..
            } => {
                self.reduce(maker, qty);
                if self.transient != Some(taker) {
                    self.reduce(taker, qty);
                }
            }
            EventKind::Cancelled { order_id, .. } | EventKind::Expired { order_id, .. } => {
                if let IdState::Live(i) = self.books.id_state(order_id) {
                    self.books.remove(i);
                }
            }
            EventKind::Modified {
                order_id,
                price,
                qty,
                kept_priority,
                ..
            } => {
                if let IdState::Live(i) = self.books.id_state(order_id) {
                    if kept_priority {
                        self.books.set_qty(i, qty);
                    } else {
                        self.books.move_to_back(i, price, qty);
                    }
                }
            }
            EventKind::InstrumentStatus { instrument, halted } => {
                if let Some(b) = self.books.book_mut(instrument) {
                    b.halted = halted;
                }
            }
            EventKind::AccountStatus { account, blocked } => {
                if blocked {
                    self.blocked.insert(account.0);
                } else {
                    self.blocked.remove(&account.0);
                }
            }
            EventKind::InstrumentAdded { instrument } => {
                self.books.add_instrument(instrument);
            }
            EventKind::Rejected { .. } | EventKind::SnapshotRequested { .. } => {}
        }
        if e.is_last_of_command() {
            self.transient = None;
        }
    }

    fn reduce(&mut self, id: OrderId, qty: Qty) {
        if let IdState::Live(i) = self.books.id_state(id) {
            let open = self.books.orders[i as usize].qty;
            if open.0 <= qty.0 {
                self.books.remove(i);
            } else {
                self.books.set_qty(i, Qty(open.0 - qty.0));
            }
        }
    }

    /// The resting orders of an instrument, bids best first then asks best first, each level
    /// in queue order.
    pub fn resting_orders(&self, instrument: InstrumentId) -> Vec<RestingOrder> {
        self.books.resting_orders(instrument)
    }

    /// Aggregated depth of one side, best first: (price, total lots, order count).
    pub fn depth(
        &self,
        instrument: InstrumentId,
        side: Side,
    ) -> impl Iterator<Item = (Price, u128, u32)> + '_ {
        self.books.depth(instrument, side)
    }

    /// Instruments with a book, in id order.
    pub fn instruments(&self) -> impl Iterator<Item = InstrumentId> + '_ {
        self.books.instruments()
    }

    /// True when the instrument is halted.
    pub fn is_halted(&self, instrument: InstrumentId) -> bool {
        self.books.book(instrument).is_some_and(|b| b.halted)
    }

    /// Blocked accounts, ascending.
    pub fn blocked_accounts(&self) -> impl Iterator<Item = AccountId> + '_ {
        self.blocked.iter().map(|&a| AccountId(a))
    }

    /// True when the order id was ever used.
    pub fn id_used(&self, id: OrderId) -> bool {
        self.books.id_state(id) != IdState::Unknown
    }

    /// A resting order with all its attributes (current price and open quantity).
    pub fn order(&self, id: OrderId) -> Option<NewOrder> {
        match self.books.id_state(id) {
            IdState::Live(i) => Some(self.books.orders[i as usize].as_new_order()),
            _ => None,
        }
    }

    /// Everything the matcher needs, as of the events applied so far (which must end on a
    /// command boundary: `cmd_seq` and `event_seq` name the last ones).
    pub fn state(&self, cmd_seq: u64, event_seq: u64) -> EngineState {
        let instruments: Vec<_> = self
            .books
            .instruments()
            .map(|i| (i, self.is_halted(i)))
            .collect();
        let orders = instruments
            .iter()
            .flat_map(|&(i, _)| self.books.resting_nodes(i))
            .map(|n| RestingState {
                order: n.as_new_order(),
                accept_seq: n.accept_seq,
            })
            .collect();
        EngineState {
            cmd_seq,
            event_seq,
            accept_seq: self.accept_seq,
            admin_events: self.admin_events,
            instruments,
            orders,
            dead_ids: self.books.dead_ids(),
            blocked: self.blocked_accounts().collect(),
        }
    }

    /// A replica holding `state`.
    pub fn from_state(state: &EngineState) -> Self {
        let mut r = BookReplica {
            books: OrderBooks::with_capacity(state.orders.len(), state.dead_ids.len()),
            blocked: state.blocked.iter().map(|a| a.0).collect(),
            transient: None,
            accept_seq: state.accept_seq,
            admin_events: state.admin_events,
        };
        for &(i, halted) in &state.instruments {
            r.books.add_instrument(i);
            if let Some(b) = r.books.book_mut(i) {
                b.halted = halted;
            }
        }
        for o in &state.orders {
            r.books
                .insert(OrderNode::from_new(&o.order, o.order.qty, o.accept_seq));
        }
        for id in &state.dead_ids {
            r.books.mark_dead(*id);
        }
        r
    }

    /// The number of resting orders.
    pub fn resting_count(&self) -> usize {
        self.books.live_count()
    }

    /// The number of orders accepted so far.
    pub fn accepted_count(&self) -> u64 {
        self.accept_seq
    }
}
