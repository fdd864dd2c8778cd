//! Order ids in any order of arrival: a generated stream relabelled so that its ids are a
//! shuffled permutation, come from interleaved gateway ranges, or are uniformly random 64-bit
//! numbers (feature `testkit`).
//!
//! The order flow itself (sides, prices, quantities, which order a cancel or a modify names)
//! is unchanged: only the labels change, consistently in the setup and the commands, so the
//! same stream under each [`IdOrder`] makes the same trades and books, and a speed
//! difference between them is the cost of the ids alone.
//!
//! | [`IdOrder`] | the k-th distinct order id of the stream (k = 0, 1, …, N−1) becomes |
//! |---|---|
//! | `Arrival` | k + 1: a counter with no gaps |
//! | `Shuffled` | π(k) + 1 for a seeded uniform permutation π of 0..N (a public matching-engine benchmark's flow) |
//! | `Gateways` | `g × 2^28 + c_g` for a uniformly drawn gateway g of 16, c_g its own counter (1, 2, …): 16 increasing flows interleaved, all within 2^32 of each other |
//! | `Random` | a uniformly random 64-bit id, distinct, never 0 |
//!
//! Every order of the input has its own id (the workloads never reuse one), so the relabelled
//! stream is as valid as the original.

use crate::command::{Command, CommandKind};
use crate::workload::{GeneratedWorkload, SplitMix64};
use rustc_hash::{FxHashMap, FxHashSet};

/// How the ids of a stream are assigned. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdOrder {
    /// 1, 2, 3, … in order of first appearance.
    Arrival,
    /// A seeded shuffled permutation of 1..=N.
    Shuffled,
    /// 16 gateways' counters, interleaved at random.
    Gateways,
    /// Uniformly random 64-bit ids.
    Random,
}

impl IdOrder {
    /// Every order, in a fixed order.
    pub const ALL: [IdOrder; 4] = [
        IdOrder::Arrival,
        IdOrder::Shuffled,
        IdOrder::Gateways,
        IdOrder::Random,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            IdOrder::Arrival => "arrival",
            IdOrder::Shuffled => "shuffled",
            IdOrder::Gateways => "gateways",
            IdOrder::Random => "random",
        }
    }

    /// By name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.name() == s)
    }
}

/// Gateways of [`IdOrder::Gateways`].
pub const GATEWAYS: u64 = 16;

/// The id range each gateway is handed (its counter's span).
pub const GATEWAY_SPAN: u64 = 1 << 28;

/// The order id a command names, if any.
fn id_of(c: &Command) -> Option<u64> {
    match c.kind {
        CommandKind::NewOrder(o) => Some(o.order_id.0),
        CommandKind::Cancel { order_id, .. } | CommandKind::Modify { order_id, .. } => {
            Some(order_id.0)
        }
        CommandKind::OrderTerms(t) => Some(t.order_id.0),
        _ => None,
    }
}

fn with_id(c: &Command, id: u64) -> Command {
    let mut c = *c;
    match &mut c.kind {
        CommandKind::NewOrder(o) => o.order_id.0 = id,
        CommandKind::Cancel { order_id, .. } | CommandKind::Modify { order_id, .. } => {
            order_id.0 = id
        }
        CommandKind::OrderTerms(t) => t.order_id.0 = id,
        _ => {}
    }
    c
}

/// `w` with its order ids assigned by `order` (seeded by `seed`). See the module docs.
pub fn relabel(w: &GeneratedWorkload, order: IdOrder, seed: u64) -> GeneratedWorkload {
    // Distinct ids in order of first appearance.
    let mut index: FxHashMap<u64, usize> = FxHashMap::default();
    for c in w.setup.iter().chain(&w.commands) {
        if let Some(id) = id_of(c) {
            let n = index.len();
            index.entry(id).or_insert(n);
        }
    }
    let n = index.len();
    let mut rng = SplitMix64::new(seed);
    let labels: Vec<u64> = match order {
        IdOrder::Arrival => (1..=n as u64).collect(),
        IdOrder::Shuffled => {
            let mut v: Vec<u64> = (1..=n as u64).collect();
            for i in (1..n).rev() {
                let j = rng.below(i as u64 + 1) as usize;
                v.swap(i, j);
            }
            v
        }
        IdOrder::Gateways => {
            let mut next = [0u64; GATEWAYS as usize];
            (0..n)
                .map(|_| {
                    let g = rng.below(GATEWAYS) as usize;
                    next[g] += 1;
                    g as u64 * GATEWAY_SPAN + next[g]
                })
                .collect()
        }
        IdOrder::Random => {
            let mut seen = FxHashSet::default();
            let mut v = Vec::with_capacity(n);
            while v.len() < n {
                let id = rng.next_u64();
                if id != 0 && seen.insert(id) {
                    v.push(id);
                }
            }
            v
        }
    };
    let map = |c: &Command| match id_of(c) {
        Some(id) => with_id(c, labels[index[&id]]),
        None => *c,
    };
    GeneratedWorkload {
        setup: w.setup.iter().map(map).collect(),
        commands: w.commands.iter().map(map).collect(),
        stats: w.stats.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::DeepBookWorkload;
    use crate::{Matcher, Sequence};

    fn run(w: &GeneratedWorkload) -> Vec<String> {
        let mut m = Matcher::default();
        let mut out = Vec::new();
        let mut shown = Vec::new();
        for (i, c) in w.setup.iter().chain(&w.commands).enumerate() {
            out.clear();
            m.process(Sequence(i as u64 + 1), c, &mut out);
            // Everything but the ids.
            for e in &out {
                shown.push(match e.kind {
                    crate::EventKind::Fill { price, qty, .. } => format!("fill {price:?} {qty:?}"),
                    crate::EventKind::Rejected { code, .. } => format!("reject {code:?}"),
                    crate::EventKind::Accepted { .. } => "accepted".into(),
                    crate::EventKind::Cancelled { .. } => "cancelled".into(),
                    _ => "other".into(),
                });
            }
        }
        shown
    }

    /// Every relabelling keeps the flow: the same events but for the ids, no reject, and
    /// ids of the promised shape.
    #[test]
    fn relabelled_streams_trade_the_same() {
        let w = DeepBookWorkload::default().generate(5_000);
        let want = run(&w);
        assert!(!want.iter().any(|e| e.starts_with("reject")));
        for order in IdOrder::ALL {
            let r = relabel(&w, order, 7);
            assert_eq!(run(&r), want, "{order:?}");
            let ids: Vec<u64> = r
                .commands
                .iter()
                .filter_map(|c| match c.kind {
                    CommandKind::NewOrder(o) => Some(o.order_id.0),
                    _ => None,
                })
                .collect();
            let n = ids.len() as u64;
            match order {
                IdOrder::Arrival => assert_eq!(ids, (1..=n).collect::<Vec<_>>()),
                IdOrder::Shuffled => {
                    let mut s = ids.clone();
                    s.sort_unstable();
                    assert_eq!(s, (1..=n).collect::<Vec<_>>());
                    assert!(ids.windows(2).filter(|p| p[1] < p[0]).count() as u64 > n / 3);
                }
                IdOrder::Gateways => {
                    assert!(ids.iter().all(|&id| id / GATEWAY_SPAN < GATEWAYS));
                    for g in 0..GATEWAYS {
                        let mine: Vec<u64> = ids
                            .iter()
                            .copied()
                            .filter(|id| id / GATEWAY_SPAN == g)
                            .collect();
                        assert!(mine.windows(2).all(|p| p[1] == p[0] + 1), "gateway {g}");
                        assert!(!mine.is_empty());
                    }
                }
                IdOrder::Random => {
                    assert!(ids.iter().filter(|&&id| id > u64::MAX / 2).count() as u64 > n / 3)
                }
            }
        }
    }
}
