//! The pro-rata allocation post-processor: splits each fill of a block order (an order
//! placed with an allocation group) across the group's accounts by weight, in whole lots —
//! the post-trade allocation of brokers and clearing systems (FIX AllocationInstruction).
//! Matching is not changed.
//!
//! **Cumulative allocation.** After each fill the order's total filled quantity `F` is
//! apportioned again: every account keeps at least what it had (running totals never go
//! down) and at least the floor of its exact share `F·w/W`; the lots left over go one at a
//! time to accounts still below the ceiling of their share, largest remainder first, ties to
//! the account listed first. So after every fill each account is within one lot of its exact
//! share, the split of the fill sums exactly to the fill, and rounding never drifts against
//! one account.
//!
//! **Durability.** Allocations are a pure function of the journaled event stream and the
//! group definitions (kept in the journal directory's `edge.meta`), so they are durable by
//! the same journal: replaying the journal through this consumer reproduces them exactly.

use ringex_engine::{
    AccountId, AllocGroupId, Consumer, Event, EventKind, InstrumentId, OrderId, Price, Qty,
    Sequence,
};
use rust_decimal::Decimal;
use std::collections::HashMap;

/// A group: accounts and their positive weights, in a fixed order (the tie-break order).
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// (account, weight).
    pub members: Vec<(AccountId, Decimal)>,
}

/// One allocation: lots of one fill given to one account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// Output sequence of the fill being split.
    pub fill_seq: Sequence,
    /// The instrument.
    pub instrument: InstrumentId,
    /// The block order.
    pub order_id: OrderId,
    /// The account receiving lots.
    pub account: AccountId,
    /// Lots allocated from this fill (always > 0).
    pub qty: Qty,
    /// The fill price.
    pub price: Price,
}

/// Per-account totals of one block order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountAllocation {
    /// Lots allocated so far.
    pub lots: u128,
    /// Σ price × lots (ticks × lots), exact.
    pub notional: i128,
}

impl AccountAllocation {
    /// The average price of the allocations in ticks (Decimal; exact when representable,
    /// else rounded at Decimal's 28 digits).
    pub fn avg_price_ticks(&self) -> Option<Decimal> {
        (self.lots > 0).then(|| {
            Decimal::from_i128_with_scale(self.notional, 0)
                / Decimal::from_i128_with_scale(self.lots as i128, 0)
        })
    }
}

struct BlockOrder {
    instrument: InstrumentId,
    group: AllocGroupId,
    filled: u128,
    accounts: Vec<AccountAllocation>,
}

/// Apportions `total` lots by `weights` given the previous running totals `prev`
/// (see the module docs). Returns the new running totals.
pub fn apportion(weights: &[Decimal], prev: &[u128], total: u128) -> Vec<u128> {
    let wsum: Decimal = weights.iter().copied().sum();
    let t = Decimal::from_i128_with_scale(total as i128, 0);
    // Exact shares as (floor, remainder) with the remainder compared exactly.
    let shares: Vec<(u128, Decimal)> = weights
        .iter()
        .map(|w| {
            let s = t * *w / wsum;
            let f = s.floor();
            (f.mantissa() as u128 / 10u128.pow(f.scale()), s - f)
        })
        .collect();
    let mut next: Vec<u128> = prev
        .iter()
        .zip(&shares)
        .map(|(&a, &(f, _))| a.max(f))
        .collect();
    let mut sum: u128 = next.iter().sum();
    while sum < total {
        // Accounts below the ceiling of their share, largest remainder of share - current.
        let mut best: Option<(usize, Decimal)> = None;
        for (i, &(f, r)) in shares.iter().enumerate() {
            let ceil = f + u128::from(!r.is_zero());
            if next[i] < ceil {
                let room = Decimal::from_i128_with_scale(f as i128, 0) + r
                    - Decimal::from_i128_with_scale(next[i] as i128, 0);
                if best.is_none_or(|(_, b)| room > b) {
                    best = Some((i, room));
                }
            }
        }
        match best {
            Some((i, _)) => {
                next[i] += 1;
                sum += 1;
            }
            None => {
                // Cannot happen for positive weights (the ceilings sum to at least the
                // total); stay exact anyway.
                next[0] += total - sum;
                sum = total;
            }
        }
    }
    next
}

/// The allocation consumer. `F` receives every allocation (an in-process subscriber).
pub struct Allocator<F: FnMut(&Allocation) + Send + 'static> {
    groups: HashMap<AllocGroupId, Group>,
    orders: rustc_hash::FxHashMap<OrderId, BlockOrder>,
    sink: F,
    /// Allocations made.
    pub allocations: u64,
}

impl<F: FnMut(&Allocation) + Send + 'static> Allocator<F> {
    /// An allocator for these groups, sending allocations to `sink`.
    pub fn new(groups: HashMap<AllocGroupId, Group>, sink: F) -> Self {
        Allocator {
            groups,
            orders: Default::default(),
            sink,
            allocations: 0,
        }
    }

    /// Totals of a block order per account (in the group's order), if it is known.
    pub fn order_totals(&self, id: OrderId) -> Option<Vec<(AccountId, AccountAllocation)>> {
        let o = self.orders.get(&id)?;
        let g = self.groups.get(&o.group)?;
        Some(
            g.members
                .iter()
                .map(|m| m.0)
                .zip(o.accounts.iter().cloned())
                .collect(),
        )
    }

    fn allocate(&mut self, fill_seq: Sequence, id: OrderId, price: Price, qty: Qty) {
        let Some(o) = self.orders.get_mut(&id) else {
            return;
        };
        let Some(g) = self.groups.get(&o.group) else {
            return;
        };
        let weights: Vec<Decimal> = g.members.iter().map(|m| m.1).collect();
        let prev: Vec<u128> = o.accounts.iter().map(|a| a.lots).collect();
        o.filled += qty.0 as u128;
        let next = apportion(&weights, &prev, o.filled);
        for (i, (&n, &p)) in next.iter().zip(&prev).enumerate() {
            if n > p {
                let lots = n - p;
                let a = &mut o.accounts[i];
                a.lots = n;
                a.notional += price.0 as i128 * lots as i128;
                self.allocations += 1;
                (self.sink)(&Allocation {
                    fill_seq,
                    instrument: o.instrument,
                    order_id: id,
                    account: g.members[i].0,
                    qty: Qty(lots as u64),
                    price,
                });
            }
        }
    }
}

impl<F: FnMut(&Allocation) + Send + 'static> Consumer for Allocator<F> {
    fn name(&self) -> &str {
        "allocation"
    }

    fn on_event(&mut self, e: &Event, seq: Sequence, _end: bool) {
        match e.kind {
            EventKind::Accepted(o) if o.alloc_group != AllocGroupId::NONE => {
                if let Some(g) = self.groups.get(&o.alloc_group) {
                    self.orders.insert(
                        o.order_id,
                        BlockOrder {
                            instrument: o.instrument,
                            group: o.alloc_group,
                            filled: 0,
                            accounts: vec![AccountAllocation::default(); g.members.len()],
                        },
                    );
                }
            }
            EventKind::Fill {
                taker,
                maker,
                price,
                qty,
                ..
            } => {
                self.allocate(seq, taker, price, qty);
                self.allocate(seq, maker, price, qty);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(x: u64) -> Decimal {
        Decimal::from(x)
    }

    #[test]
    fn equal_weights_on_ten_lots() {
        assert_eq!(
            apportion(&[d(1), d(1), d(1)], &[0, 0, 0], 10),
            vec![4, 3, 3]
        );
    }

    #[test]
    fn fifty_thirty_twenty_over_partial_fills() {
        let w = [d(50), d(30), d(20)];
        // Fills of 3, 4, 1, 2 lots: cumulative 3, 7, 8, 10.
        let a1 = apportion(&w, &[0, 0, 0], 3); // shares 1.5, 0.9, 0.6
        assert_eq!(a1, vec![1, 1, 1]);
        let a2 = apportion(&w, &a1, 7); // shares 3.5, 2.1, 1.4
        assert_eq!(a2, vec![4, 2, 1]);
        let a3 = apportion(&w, &a2, 8); // shares 4, 2.4, 1.6
        assert_eq!(a3, vec![4, 2, 2]);
        let a4 = apportion(&w, &a3, 10); // shares 5, 3, 2
        assert_eq!(a4, vec![5, 3, 2]);
    }

    proptest! {
        #[test]
        fn cumulative_splits_are_exact_monotone_and_within_a_lot(
            weights in prop::collection::vec(1u64..100, 1..8),
            fills in prop::collection::vec(1u64..50, 1..40),
        ) {
            let w: Vec<Decimal> = weights.iter().map(|&x| d(x)).collect();
            let wsum: u64 = weights.iter().sum();
            let mut prev = vec![0u128; w.len()];
            let mut total = 0u128;
            for f in fills {
                total += f as u128;
                let next = apportion(&w, &prev, total);
                prop_assert_eq!(next.iter().sum::<u128>(), total);
                for i in 0..w.len() {
                    prop_assert!(next[i] >= prev[i], "running totals never go down");
                    let exact = total as f64 * weights[i] as f64 / wsum as f64;
                    prop_assert!((next[i] as f64 - exact).abs() < 1.0 + 1e-9, "within one lot: {} vs {}", next[i], exact);
                }
                prop_assert_eq!(apportion(&w, &prev, total), next.clone(), "deterministic");
                prev = next;
            }
        }
    }
}
