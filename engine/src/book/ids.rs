//! [`IdIndex`]: every order id the engine has seen, compactly, and the pool index of each
//! live one.
//!
//! FORMATS.md: an order id is unique in the whole engine, for ever. Keeping every id ever
//! used costs memory that grows with history; this index keeps the rule exactly with memory
//! proportional to the live orders plus the gaps still open:
//!
//! - **A sliding window** of `W` slots (a ring buffer) covers the ids `[base, base + W)`:
//!   each slot holds the pool index of a live order, [`DEAD`] (used, no longer resting) or
//!   [`UNKNOWN`]. Ids from a counter (increasing, with gaps) land here: one array index per
//!   lookup, no hashing.
//! - **Below the window**, used ids are kept as disjoint ranges (`used`), and the live ones
//!   among them in a hash map (`below_live`). When the window slides forward over an id, a
//!   dead id extends the last range (a counter's ids with no gap cost nothing at all), a gap
//!   starts a new range, a live order moves to the map.
//! - **Above the window** (an id far ahead of the counter), ids wait in an ordered map
//!   (`above`) and move into the window when it reaches them. When ids keep arriving far
//!   ahead (the counter jumped, or a new client started at a high id), the window re-bases
//!   there after `W / 4` such ids in a row, so a jump costs one eviction pass (at most `W`
//!   slots) once, not on every command.
//!
//! Cost for sparse random ids (no counter): each id used outside the window costs one range
//! (two `u64` in an ordered map) until neighbouring ids fill the gap between them, and a
//! lookup there is an ordered-map search: memory then grows with the ids used, which is
//! what "never reused" means for ids with no structure.

use rustc_hash::FxHashMap;
use std::collections::BTreeMap;

/// A slot of an id never used.
pub(crate) const UNKNOWN: u32 = u32::MAX;
/// A slot of an id used before and no longer resting.
pub(crate) const DEAD: u32 = u32::MAX - 1;

/// What an id is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdState {
    /// Never seen.
    Unknown,
    /// Used before; no longer resting.
    Dead,
    /// Resting at this pool index.
    Live(u32),
}

/// Disjoint, non-adjacent inclusive ranges of ids, by first id.
#[derive(Clone, Debug, Default)]
pub(crate) struct RangeSet {
    ranges: BTreeMap<u64, u64>,
}

impl RangeSet {
    pub fn contains(&self, id: u64) -> bool {
        self.ranges
            .range(..=id)
            .next_back()
            .is_some_and(|(_, &hi)| id <= hi)
    }

    /// Adds `[lo, hi]`, merging with overlapping or adjacent ranges.
    pub fn insert(&mut self, lo: u64, hi: u64) {
        debug_assert!(lo <= hi);
        let (mut lo, mut hi) = (lo, hi);
        // The range starting at or before `lo` that reaches it (or `lo - 1`).
        if let Some((&l, &h)) = self.ranges.range(..=lo).next_back() {
            if h >= hi {
                return;
            }
            if h.saturating_add(1) >= lo {
                lo = l;
                hi = hi.max(h);
                self.ranges.remove(&l);
            }
        }
        // Ranges starting inside `[lo, hi + 1]` merge in.
        while let Some((&l, &h)) = self.ranges.range(lo..=hi.saturating_add(1)).next() {
            hi = hi.max(h);
            self.ranges.remove(&l);
        }
        self.ranges.insert(lo, hi);
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().map(|(&l, &h)| (l, h))
    }
}

/// Appends `[lo, hi]` to ascending ranges, merging with the last when adjacent.
fn push_range(v: &mut Vec<(u64, u64)>, lo: u64, hi: u64) {
    if let Some(last) = v.last_mut() {
        if last.1.saturating_add(1) >= lo {
            last.1 = last.1.max(hi);
            return;
        }
    }
    v.push((lo, hi));
}

impl Default for IdIndex {
    fn default() -> Self {
        IdIndex::new(1 << 16, true)
    }
}

/// The id index. See the module docs.
#[derive(Clone, Debug)]
pub(crate) struct IdIndex {
    /// Ring buffer of `W` slots; the id `x` in the window lives at `x & mask`.
    slots: Vec<u32>,
    mask: u64,
    base: u64,
    started: bool,
    used: RangeSet,
    below_live: FxHashMap<u64, u32>,
    above: BTreeMap<u64, u32>,
    /// Ids placed above the window in a row (re-bases at `W / 4`).
    above_streak: usize,
    /// False for replicas that need no dead ids (market data): a dead id is forgotten.
    track_used: bool,
    live: usize,
}

impl IdIndex {
    /// A window of `window` slots (rounded up to a power of two, at least 64).
    pub fn new(window: usize, track_used: bool) -> Self {
        let w = window.clamp(64, 1 << 24).next_power_of_two();
        IdIndex {
            slots: Vec::new(),
            mask: (w - 1) as u64,
            base: 0,
            started: false,
            used: RangeSet::default(),
            below_live: FxHashMap::default(),
            above: BTreeMap::new(),
            above_streak: 0,
            track_used,
            live: 0,
        }
    }

    /// The number of window slots.
    pub fn window(&self) -> usize {
        self.slots.len().max(self.mask as usize + 1)
    }

    #[inline]
    fn w(&self) -> u64 {
        self.mask + 1
    }

    /// The number of live ids.
    #[inline]
    pub fn live(&self) -> usize {
        self.live
    }

    #[inline]
    pub fn get(&self, id: u64) -> IdState {
        let off = id.wrapping_sub(self.base);
        if self.started && off <= self.mask {
            return match self.slots[(id & self.mask) as usize] {
                UNKNOWN => IdState::Unknown,
                DEAD => IdState::Dead,
                i => IdState::Live(i),
            };
        }
        self.get_outside(id)
    }

    #[cold]
    fn get_outside(&self, id: u64) -> IdState {
        if !self.started || id < self.base {
            match self.below_live.get(&id) {
                Some(&i) => IdState::Live(i),
                None if self.used.contains(id) => IdState::Dead,
                None => IdState::Unknown,
            }
        } else {
            match self.above.get(&id) {
                Some(&DEAD) => IdState::Dead,
                Some(&i) => IdState::Live(i),
                None => IdState::Unknown,
            }
        }
    }

    /// Records `id` as live at pool index `idx`.
    #[inline]
    pub fn set_live(&mut self, id: u64, idx: u32) {
        self.set(id, idx);
    }

    /// Records `id` as used and not resting.
    #[inline]
    pub fn set_dead(&mut self, id: u64) {
        self.set(id, if self.track_used { DEAD } else { UNKNOWN });
    }

    #[inline]
    fn set(&mut self, id: u64, value: u32) {
        if !self.started {
            self.start_at(id);
        }
        let off = id.wrapping_sub(self.base);
        let was_live = if off <= self.mask {
            self.above_streak = 0;
            let slot = &mut self.slots[(id & self.mask) as usize];
            let old = *slot;
            *slot = value;
            old < DEAD
        } else {
            self.set_outside(id, value)
        };
        let now_live = value < DEAD;
        match (was_live, now_live) {
            (false, true) => self.live += 1,
            (true, false) => self.live -= 1,
            _ => {}
        }
    }

    fn start_at(&mut self, base: u64) {
        self.slots = vec![UNKNOWN; self.w() as usize];
        // The window never reaches past u64::MAX.
        self.base = base.min(u64::MAX - self.mask);
        self.started = true;
    }

    /// Sets an id outside the window (sliding the window when it is just ahead); returns
    /// whether the id was live.
    #[cold]
    fn set_outside(&mut self, id: u64, value: u32) -> bool {
        if id < self.base {
            let was = if value < DEAD {
                self.below_live.insert(id, value).is_some()
            } else {
                self.below_live.remove(&id).is_some()
            };
            if value != UNKNOWN {
                self.used.insert(id, id);
            }
            return was;
        }
        let w = self.w();
        let near = id - self.base < 2 * w;
        if near || self.above_streak + 1 >= (w / 4) as usize {
            self.above_streak = 0;
            // Slide so that `id` is the last id of the window.
            self.slide_to(id - self.mask);
            let slot = &mut self.slots[(id & self.mask) as usize];
            let old = *slot;
            *slot = value;
            return old < DEAD;
        }
        self.above_streak += 1;
        let old = if value == UNKNOWN {
            self.above.remove(&id)
        } else {
            self.above.insert(id, value)
        };
        old.is_some_and(|v| v < DEAD)
    }

    /// Moves the window to start at `new_base` (> base): ids leaving it go below (ranges
    /// and live map), ids entering it come from `above`.
    fn slide_to(&mut self, new_base: u64) {
        let old_last = self.base + self.mask;
        let evict_last = (new_base - 1).min(old_last);
        let mut run: Option<(u64, u64)> = None;
        for id in self.base..=evict_last {
            let slot = &mut self.slots[(id & self.mask) as usize];
            let v = std::mem::replace(slot, UNKNOWN);
            if v == UNKNOWN {
                continue;
            }
            if v != DEAD {
                self.below_live.insert(id, v);
            }
            match &mut run {
                Some((_, hi)) if *hi + 1 == id => *hi = id,
                Some((lo, hi)) => {
                    self.used.insert(*lo, *hi);
                    run = Some((id, id));
                }
                None => run = Some((id, id)),
            }
        }
        if let Some((lo, hi)) = run {
            self.used.insert(lo, hi);
        }
        // Ids waiting above that the window jumped past go below.
        if !self.above.is_empty() {
            let passed: Vec<(u64, u32)> = self
                .above
                .range(..new_base)
                .map(|(&k, &v)| (k, v))
                .collect();
            for (k, v) in passed {
                self.above.remove(&k);
                if v != DEAD {
                    self.below_live.insert(k, v);
                }
                self.used.insert(k, k);
            }
        }
        self.base = new_base;
        let new_last = new_base + self.mask;
        let from = (old_last + 1).max(new_base);
        if !self.above.is_empty() && from <= new_last {
            let moving: Vec<(u64, u32)> = self
                .above
                .range(from..=new_last)
                .map(|(&k, &v)| (k, v))
                .collect();
            for (k, v) in moving {
                self.above.remove(&k);
                self.slots[(k & self.mask) as usize] = v;
            }
        }
    }

    /// Marks every id of `[lo, hi]` used (recovery): ranges below the window. Call before
    /// any other id is set; the window then starts after the highest id so loaded.
    pub fn load_used(&mut self, lo: u64, hi: u64) {
        debug_assert!(!self.started);
        if self.track_used {
            self.used.insert(lo, hi);
        }
    }

    /// Starts the window just after the ids loaded with [`IdIndex::load_used`].
    pub fn start_after_loaded(&mut self) {
        if let Some((_, hi)) = self.used.iter().last() {
            if hi < u64::MAX {
                self.start_at(hi + 1);
            }
        }
    }

    /// Every id used (live or dead) as ascending disjoint inclusive ranges.
    pub fn used_ranges(&self) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = Vec::with_capacity(self.used.len() + 16);
        let mut below = self.used.iter().peekable();
        // Live ids below the window are in `used` already.
        for (lo, hi) in below.by_ref() {
            push_range(&mut v, lo, hi);
        }
        if self.started {
            for id in self.base..=self.base + self.mask {
                if self.slots[(id & self.mask) as usize] != UNKNOWN {
                    push_range(&mut v, id, id);
                }
            }
            for &id in self.above.keys() {
                push_range(&mut v, id, id);
            }
        }
        v
    }

    /// Bytes held beyond the fixed window (ranges, maps), roughly: for the soak report.
    pub fn outside_entries(&self) -> usize {
        self.used.len() + self.below_live.len() + self.above.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn range_set_merges_and_answers() {
        let mut r = RangeSet::default();
        r.insert(5, 5);
        r.insert(7, 9);
        assert!(r.contains(5) && !r.contains(6) && r.contains(8) && !r.contains(10));
        r.insert(6, 6);
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![(5, 9)]);
        r.insert(0, 100);
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![(0, 100)]);
        r.insert(u64::MAX, u64::MAX);
        assert!(r.contains(u64::MAX));
        assert_eq!(r.len(), 2);
    }

    /// A counter with a gap every 1000 ids, 4 orders live at any time: after 1M ids the
    /// index holds one range per gap and nothing per dead id.
    #[test]
    fn counter_ids_cost_the_gaps_not_the_history() {
        let mut ix = IdIndex::new(1024, true);
        let mut live = std::collections::VecDeque::new();
        let mut id = 1u64;
        for n in 0..1_000_000u32 {
            if n % 1000 == 999 {
                id += 1; // a gap
            }
            assert_eq!(ix.get(id), IdState::Unknown);
            ix.set_live(id, n);
            live.push_back(id);
            if live.len() > 4 {
                let old = live.pop_front().unwrap();
                ix.set_dead(old);
            }
            id += 1;
        }
        assert_eq!(ix.live(), 4);
        assert!(ix.outside_entries() <= 1001, "{}", ix.outside_entries());
        assert_eq!(ix.get(1), IdState::Dead);
        assert_eq!(ix.get(1000), IdState::Unknown, "the first gap");
        assert_eq!(ix.get(id - 1), IdState::Live(999_999));
        assert_eq!(ix.get(id), IdState::Unknown);
    }

    #[test]
    fn a_jump_rebases_the_window_and_old_live_ids_stay_reachable() {
        let mut ix = IdIndex::new(64, true);
        ix.set_live(10, 1);
        ix.set_dead(11);
        for k in 0..40u64 {
            ix.set_dead(1_000_000 + k);
        }
        assert_eq!(ix.get(10), IdState::Live(1));
        assert_eq!(ix.get(11), IdState::Dead);
        assert_eq!(ix.get(12), IdState::Unknown);
        for k in 0..40u64 {
            assert_eq!(ix.get(1_000_000 + k), IdState::Dead);
        }
        assert_eq!(ix.get(1_000_040), IdState::Unknown);
        assert_eq!(
            ix.used_ranges(),
            vec![(10, 11), (1_000_000, 1_000_039)],
            "ranges merge across below, window and above"
        );
    }

    fn op() -> impl Strategy<Value = (u8, u64)> {
        prop_oneof![
            (0u8..3, 0u64..300),
            (0u8..3, 0u64..5000),
            (0u8..3, any::<u64>()),
        ]
    }

    proptest! {
        /// Any sequence of sets agrees with a plain map of every id ever used.
        #[test]
        fn agrees_with_a_map_of_every_id(ops in prop::collection::vec(op(), 1..600), w in 0usize..200) {
            let mut ix = IdIndex::new(w, true);
            let mut model: HashMap<u64, Option<u32>> = HashMap::new();
            let mut counter = 0u64;
            for (n, (kind, x)) in ops.into_iter().enumerate() {
                // Mostly a counter with gaps, sometimes anything.
                let id = if kind == 0 { counter += 1 + x % 3; counter } else { x };
                match model.get(&id).copied() {
                    None => { ix.set_live(id, n as u32); model.insert(id, Some(n as u32)); }
                    Some(Some(_)) => { ix.set_dead(id); model.insert(id, None); }
                    Some(None) => {}
                }
                let live = model.values().filter(|v| v.is_some()).count();
                prop_assert_eq!(ix.live(), live);
            }
            for (&id, &v) in &model {
                let want = match v { Some(i) => IdState::Live(i), None => IdState::Dead };
                prop_assert_eq!(ix.get(id), want);
                prop_assert_eq!(ix.get(id.wrapping_add(1)) == IdState::Unknown, !model.contains_key(&id.wrapping_add(1)));
            }
            let mut ids: Vec<u64> = model.keys().copied().collect();
            ids.sort_unstable();
            let mut want = Vec::new();
            for id in ids { push_range(&mut want, id, id); }
            prop_assert_eq!(ix.used_ranges(), want);
            // Reloaded from its ranges, every used id is still refused.
            let mut back = IdIndex::new(w, true);
            for (lo, hi) in ix.used_ranges() { back.load_used(lo, hi); }
            back.start_after_loaded();
            for &id in model.keys() {
                prop_assert_eq!(back.get(id), IdState::Dead);
            }
        }
    }
}
