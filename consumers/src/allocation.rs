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
//! **Bounded, no allocation per event.** A block order is kept while it can still trade
//! (from `Accepted` until it fills completely, is cancelled or expires) and its per-account
//! vector is then recycled; weights are taken once per group and the apportioning works in
//! reused buffers, so once warm the consumer allocates nothing (test
//! `consumers/tests/zero_alloc.rs`).
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

impl Group {
    /// A group of whole-number weights, e.g. `[(AccountId(1), 50), (AccountId(2), 30)]`.
    pub fn weighted(members: &[(AccountId, u64)]) -> Self {
        Group {
            members: members
                .iter()
                .map(|&(a, w)| (a, Decimal::from(w)))
                .collect(),
        }
    }
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
    /// Open quantity: the order is forgotten when it reaches 0.
    open: u64,
    accounts: Vec<AccountAllocation>,
}

/// Apportions `total` lots by `weights` given the previous running totals `prev`
/// (see the module docs). Returns the new running totals.
pub fn apportion(weights: &[Decimal], prev: &[u128], total: u128) -> Vec<u128> {
    let next = &mut Vec::new();
    match Weights::of(weights) {
        Some(w) if w.apportion_into(prev, total, &mut Vec::new(), next) => {}
        _ => apportion_decimal(weights, prev, total, &mut Vec::new(), next),
    }
    next.clone()
}

/// Gives the lots `next` lacks to reach `total`, one at a time, each to the account with
/// the largest room (`room(i, next[i])`: `None` at its ceiling), ties to the one listed
/// first; `Err` when a room cannot be computed.
fn give_out<R: PartialOrd>(
    next: &mut [u128],
    total: u128,
    mut room: impl FnMut(usize, u128) -> Result<Option<R>, ()>,
) -> Result<(), ()> {
    let mut sum: u128 = next.iter().sum();
    while sum < total && !next.is_empty() {
        let mut best: Option<(usize, R)> = None;
        for (i, &n) in next.iter().enumerate() {
            if let Some(r) = room(i, n)? {
                if best.as_ref().is_none_or(|(_, b)| r > *b) {
                    best = Some((i, r));
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
    Ok(())
}

/// A group's weights as integers over one denominator (each weight × 10^scale, the scale
/// of the most precise one), so that shares are compared exactly in integers.
#[derive(Clone, Debug)]
struct Weights {
    w: Vec<u128>,
    sum: u128,
}

impl Weights {
    /// `None` when a weight is not positive or the integers would not fit.
    fn of(weights: &[Decimal]) -> Option<Weights> {
        let scale = weights.iter().map(|w| w.scale()).max().unwrap_or(0);
        let w: Option<Vec<u128>> = weights
            .iter()
            .map(|d| {
                let m = u128::try_from(d.mantissa()).ok().filter(|m| *m > 0)?;
                m.checked_mul(10u128.checked_pow(scale - d.scale())?)
            })
            .collect();
        let w = w?;
        let sum = w.iter().try_fold(0u128, |a, x| a.checked_add(*x))?;
        Some(Weights { w, sum })
    }

    /// [`apportion`] in integers: the share of weight w in `total` is `total·w / W`, kept
    /// as its floor and remainder (all over the same `W`). False when `total·w` would not
    /// fit in 128 bits (the caller apportions in decimals then).
    fn apportion_into(
        &self,
        prev: &[u128],
        total: u128,
        shares: &mut Vec<(u128, u128)>,
        next: &mut Vec<u128>,
    ) -> bool {
        shares.clear();
        for &w in &self.w {
            let Some(p) = total.checked_mul(w) else {
                return false;
            };
            shares.push((p / self.sum, p % self.sum));
        }
        next.clear();
        next.extend(prev.iter().zip(shares.iter()).map(|(&a, &(f, _))| a.max(f)));
        // Below the ceiling of its share, the room is (share − current) × W; next ≤ f there,
        // so it is not negative.
        give_out(next, total, |i, n| {
            let (f, r) = shares[i];
            if n >= f + u128::from(r != 0) {
                return Ok(None);
            }
            (f - n)
                .checked_mul(self.sum)
                .and_then(|x| x.checked_add(r))
                .map(Some)
                .ok_or(())
        })
        .is_ok()
    }
}

/// [`apportion`] in decimals (weights too large for [`Weights`]), into `next`, with
/// `shares` as scratch.
fn apportion_decimal(
    weights: &[Decimal],
    prev: &[u128],
    total: u128,
    shares: &mut Vec<(u128, Decimal)>,
    next: &mut Vec<u128>,
) {
    // Checked arithmetic throughout (weights near Decimal's limits): a share that cannot
    // be computed counts as 0, and the loop below still makes the split sum to the total.
    let wsum = weights
        .iter()
        .fold(Decimal::ZERO, |a, w| a.saturating_add(*w));
    let t = Decimal::try_from_i128_with_scale(total as i128, 0).unwrap_or(Decimal::MAX);
    shares.clear();
    shares.extend(weights.iter().map(|w| {
        let s = t
            .checked_mul(*w)
            .and_then(|x| x.checked_div(wsum))
            .or_else(|| w.checked_div(wsum).and_then(|x| x.checked_mul(t)))
            .unwrap_or(Decimal::ZERO);
        let f = s.floor();
        (f.mantissa() as u128 / 10u128.pow(f.scale()), s - f)
    }));
    next.clear();
    next.extend(prev.iter().zip(shares.iter()).map(|(&a, &(f, _))| a.max(f)));
    let int = |x: u128| Decimal::try_from_i128_with_scale(x as i128, 0).unwrap_or(Decimal::MAX);
    // Accounts below the ceiling of their share: room = share − current.
    let _ = give_out(next, total, |i, n| {
        let (f, r) = shares[i];
        Ok((n < f + u128::from(!r.is_zero()))
            .then(|| int(f).saturating_add(r).saturating_sub(int(n))))
    });
}

/// The allocation consumer. `F` receives every allocation (an in-process subscriber).
pub struct Allocator<F: FnMut(&Allocation) + Send + 'static> {
    groups: HashMap<AllocGroupId, Group>,
    /// Each group's weights, in member order, and as integers when they fit.
    weights: HashMap<AllocGroupId, (Vec<Decimal>, Option<Weights>)>,
    /// Block orders that can still trade.
    orders: rustc_hash::FxHashMap<OrderId, BlockOrder>,
    /// Per-account vectors of block orders that are done, for reuse.
    free: Vec<Vec<AccountAllocation>>,
    /// Scratch for apportioning: shares (integer and decimal), previous and next running
    /// totals.
    shares: Vec<(u128, u128)>,
    dec_shares: Vec<(u128, Decimal)>,
    prev: Vec<u128>,
    next: Vec<u128>,
    sink: F,
    /// The current command's order when it is a block order (the accepted or modified one:
    /// fills name it as their taker), so a fill looks up its taker only then.
    taker_block: Option<OrderId>,
    /// Allocations made.
    pub allocations: u64,
}

impl<F: FnMut(&Allocation) + Send + 'static> Allocator<F> {
    /// An allocator for these groups, sending allocations to `sink`.
    pub fn new(groups: HashMap<AllocGroupId, Group>, sink: F) -> Self {
        let weights = groups
            .iter()
            .map(|(&id, g)| {
                let w: Vec<Decimal> = g.members.iter().map(|m| m.1).collect();
                let int = Weights::of(&w);
                (id, (w, int))
            })
            .collect();
        Allocator {
            groups,
            weights,
            orders: Default::default(),
            free: Vec::new(),
            shares: Vec::new(),
            dec_shares: Vec::new(),
            prev: Vec::new(),
            next: Vec::new(),
            sink,
            taker_block: None,
            allocations: 0,
        }
    }

    /// Forgets a block order that can no longer trade (its vector is kept for reuse).
    fn done(&mut self, id: OrderId) {
        if let Some(o) = self.orders.remove(&id) {
            self.free.push(o.accounts);
        }
    }

    /// Totals of a block order per account (in the group's order) while it can still
    /// trade (afterwards its allocations are in the stream the sink received).
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

    /// Splits a fill of block order `id` (when it is one); true when the order has no open
    /// quantity left.
    fn allocate(&mut self, fill_seq: Sequence, id: OrderId, price: Price, qty: Qty) -> bool {
        let Allocator {
            groups,
            weights,
            orders,
            shares,
            dec_shares,
            prev,
            next,
            ..
        } = self;
        let Some(o) = orders.get_mut(&id) else {
            return false;
        };
        let (Some(g), Some(weights)) = (groups.get(&o.group), weights.get(&o.group)) else {
            return o.open == 0;
        };
        prev.clear();
        prev.extend(o.accounts.iter().map(|a| a.lots));
        o.filled += qty.0 as u128;
        o.open = o.open.saturating_sub(qty.0);
        let exact = weights
            .1
            .as_ref()
            .is_some_and(|w| w.apportion_into(prev, o.filled, shares, next));
        if !exact {
            apportion_decimal(&weights.0, prev, o.filled, dec_shares, next);
        }
        for (i, (&n, &p)) in next.iter().zip(prev.iter()).enumerate() {
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
        o.open == 0
    }
}

impl<F: FnMut(&Allocation) + Send + 'static> Consumer for Allocator<F> {
    fn name(&self) -> &str {
        "allocation"
    }

    fn on_event(&mut self, e: &Event, seq: Sequence, _end: bool) {
        match e.kind {
            EventKind::Accepted {
                order_id,
                instrument,
                qty,
                alloc_group,
                ..
            } if alloc_group != AllocGroupId::NONE => {
                self.taker_block = None;
                if let Some(g) = self.groups.get(&alloc_group) {
                    self.taker_block = Some(order_id);
                    let mut accounts = self.free.pop().unwrap_or_default();
                    accounts.clear();
                    accounts.resize(g.members.len(), AccountAllocation::default());
                    self.orders.insert(
                        order_id,
                        BlockOrder {
                            instrument,
                            group: alloc_group,
                            filled: 0,
                            open: qty.0,
                            accounts,
                        },
                    );
                }
            }
            EventKind::Accepted { .. } => self.taker_block = None,
            EventKind::Fill {
                taker,
                maker,
                price,
                qty,
                ..
            } => {
                let taker = (self.taker_block == Some(taker)).then_some(taker);
                for id in taker.into_iter().chain([maker]) {
                    if self.allocate(seq, id, price, qty) {
                        self.done(id);
                    }
                }
            }
            EventKind::Modified { order_id, qty, .. } => {
                self.taker_block = None;
                if let Some(o) = self.orders.get_mut(&order_id) {
                    o.open = qty.0;
                    self.taker_block = Some(order_id);
                }
            }
            EventKind::Triggered { order_id, .. } => {
                // An elected stop trades now as the taker.
                self.taker_block = self.orders.contains_key(&order_id).then_some(order_id);
            }
            EventKind::Cancelled { order_id, .. } | EventKind::Expired { order_id, .. } => {
                self.done(order_id);
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

    /// Block orders are kept while they can trade, and forgotten when they fill
    /// completely, are cancelled or expire: memory follows the live block orders. A modified
    /// one keeps its totals.
    #[test]
    fn block_orders_are_forgotten_when_done() {
        use ringex_engine::{Matcher, NewOrder, Side};
        let g = AllocGroupId(7);
        let groups = HashMap::from([(
            g,
            Group {
                members: vec![(AccountId(1), d(1)), (AccountId(2), d(1))],
            },
        )]);
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = got.clone();
        let mut a = Allocator::new(groups, move |x: &Allocation| {
            sink.lock().unwrap().push(*x);
        });
        let mut m = Matcher::default();
        let i = InstrumentId(0);
        let mut seq = 0u64;
        let mut run = |a: &mut Allocator<_>, kind: ringex_engine::CommandKind| {
            seq += 1;
            let mut out = Vec::new();
            m.process(
                Sequence(seq),
                &ringex_engine::Command::new(ringex_engine::Timestamp(seq), kind),
                &mut out,
            );
            for e in &out {
                a.on_event(e, Sequence(seq), true);
            }
        };
        run(&mut a, ringex_engine::CommandKind::AddInstrument(i.into()));
        let block = |id: u64, side, qty| {
            let mut o = NewOrder::limit(i, AccountId(9), OrderId(id), side, Price(100), Qty(qty));
            o.alloc_group = g;
            ringex_engine::CommandKind::NewOrder(o)
        };
        let plain = |id: u64, side, qty| {
            ringex_engine::CommandKind::NewOrder(NewOrder::limit(
                i,
                AccountId(5),
                OrderId(id),
                side,
                Price(100),
                Qty(qty),
            ))
        };
        // Block 1 rests for 10, is modified to 8, trades 5 as maker, then is cancelled.
        run(&mut a, block(1, Side::Buy, 10));
        run(
            &mut a,
            ringex_engine::CommandKind::Modify {
                instrument: i,
                account: AccountId(9),
                order_id: OrderId(1),
                price: Price(100),
                qty: Qty(8),
            },
        );
        run(&mut a, plain(2, Side::Sell, 5));
        assert_eq!(a.orders.len(), 1);
        let t = a.order_totals(OrderId(1)).expect("still live");
        assert_eq!(t.iter().map(|x| x.1.lots).sum::<u128>(), 5);
        run(
            &mut a,
            ringex_engine::CommandKind::Cancel {
                instrument: i,
                account: AccountId(9),
                order_id: OrderId(1),
            },
        );
        assert!(a.orders.is_empty(), "cancelled: forgotten");
        // Block 3 rests for 4 and is filled completely by two takers.
        run(&mut a, block(3, Side::Sell, 4));
        run(&mut a, plain(4, Side::Buy, 3));
        assert_eq!(a.orders.len(), 1);
        run(&mut a, plain(5, Side::Buy, 1));
        assert!(a.orders.is_empty(), "filled: forgotten");
        // Block 6 takes 2 as an IOC: filled, the rest cancelled.
        run(&mut a, plain(7, Side::Sell, 2));
        let mut o = NewOrder::limit(i, AccountId(9), OrderId(6), Side::Buy, Price(100), Qty(5));
        o.alloc_group = g;
        o.tif = ringex_engine::TimeInForce::Ioc;
        run(&mut a, ringex_engine::CommandKind::NewOrder(o));
        assert!(a.orders.is_empty(), "IOC rest cancelled: forgotten");
        assert_eq!(a.free.len(), 1, "one vector, reused three times");
        let v = got.lock().unwrap();
        let per_order = |id| {
            v.iter()
                .filter(|x| x.order_id == OrderId(id))
                .map(|x| x.qty.0)
                .sum::<u64>()
        };
        assert_eq!((per_order(1), per_order(3), per_order(6)), (5, 4, 2));
    }

    /// Fractional weights are scaled to one denominator; a share the decimals could only
    /// round (1/3 of a lot each) is compared exactly, ties to the account listed first.
    #[test]
    fn fractional_and_huge_weights() {
        let w = ["0.5", "0.25", "0.25"].map(|x| x.parse::<Decimal>().unwrap());
        // Shares 1.5, 0.75, 0.75: floors 1, 0, 0; the two lots left go to the larger
        // remainders (0.75, 0.75), not to the first account's 0.5.
        assert_eq!(apportion(&w, &[0, 0, 0], 3), vec![1, 1, 1]);
        let w = ["1.1", "2.2", "3.3"].map(|x| x.parse::<Decimal>().unwrap());
        assert_eq!(apportion(&w, &[0, 0, 0], 6), vec![1, 2, 3]);
        assert_eq!(apportion(&[d(1), d(1), d(1)], &[0, 0, 0], 1), vec![1, 0, 0]);
        // Weights whose integers do not fit: decimals, still summing to the total.
        let big = Decimal::MAX;
        let small = "0.0000000000000000000000000001".parse::<Decimal>().unwrap();
        assert!(Weights::of(&[big, small]).is_none());
        assert_eq!(apportion(&[big, small], &[0, 0], 5).iter().sum::<u128>(), 5);
        // A group without members splits nothing (and does not panic).
        assert_eq!(apportion(&[], &[], 5), Vec::<u128>::new());
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
                // Largest remainder, exactly: with share_i = total·w_i / W as floor f_i and
                // remainder r_i, each account has max(prev_i, f_i) and the lots left go one
                // each to the accounts still below their ceiling with the largest r_i, ties
                // to the one listed first.
                let ws = wsum as u128;
                let shares: Vec<(u128, u128)> = weights
                    .iter()
                    .map(|&x| (total * x as u128 / ws, total * x as u128 % ws))
                    .collect();
                let base: Vec<u128> = (0..w.len()).map(|i| prev[i].max(shares[i].0)).collect();
                let mut eligible: Vec<usize> = (0..w.len())
                    .filter(|&i| shares[i].1 > 0 && base[i] == shares[i].0)
                    .collect();
                eligible.sort_by_key(|&i| (std::cmp::Reverse(shares[i].1), i));
                let extra = (total - base.iter().sum::<u128>()) as usize;
                let mut expect = base.clone();
                for &i in eligible.iter().take(extra) {
                    expect[i] += 1;
                }
                prop_assert_eq!(&expect, &next, "largest remainder, exactly");
                prev = next;
            }
        }
    }
}
