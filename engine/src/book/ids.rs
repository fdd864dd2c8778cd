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
//! - **Above the window** (an id far ahead of the counter, or a second client's counter in
//!   another range), used ids wait as ranges (`above_used`) and the live ones in an ordered
//!   map (`above_live`, bounded by the live orders); they move into the window (or below it)
//!   when it reaches them.
//! - **Re-basing**: when new orders land outside the window more often than inside (the
//!   counter jumped, a new client started in another range, or the first ids seen were
//!   odd ones), by a margin of `min(W / 4, 1024)`, the window moves to them, up or down:
//!   one pass over the window's occupancy bits and the live orders, once per shift of the
//!   flow, never on every command.
//!
//! Cost for sparse random ids (no counter): each id used outside the window costs one range
//! (two `u64` in an ordered map) until neighbouring ids fill the gap between them, and a
//! lookup there is an ordered-map search: memory then grows with the ids used, which is
//! what "never reused" means for ids with no structure.

use super::table::IdTable;
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
        // Fast path: past the last range (the window leaving ids behind, in order).
        match self.ranges.last_key_value() {
            None => {
                self.ranges.insert(lo, hi);
                return;
            }
            Some((&l, &h)) if h < u64::MAX && lo > h => {
                if lo == h + 1 {
                    self.ranges.insert(l, hi);
                } else {
                    self.ranges.insert(lo, hi);
                }
                return;
            }
            _ => {}
        }
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

    /// Removes and returns the ids within `[lo, hi]`, as ranges.
    pub fn take(&mut self, lo: u64, hi: u64) -> Vec<(u64, u64)> {
        let mut hit: Vec<(u64, u64)> = Vec::new();
        if lo > hi {
            return hit;
        }
        if let Some((&l, &h)) = self.ranges.range(..lo).next_back() {
            if h >= lo {
                hit.push((l, h));
            }
        }
        hit.extend(self.ranges.range(lo..=hi).map(|(&l, &h)| (l, h)));
        let mut out = Vec::with_capacity(hit.len());
        for (l, h) in hit {
            self.ranges.remove(&l);
            if l < lo {
                self.ranges.insert(l, lo - 1);
            }
            if h > hi {
                self.ranges.insert(hi + 1, h);
            }
            out.push((l.max(lo), h.min(hi)));
        }
        out
    }

    pub fn first(&self) -> Option<(u64, u64)> {
        self.ranges.first_key_value().map(|(&l, &h)| (l, h))
    }

    pub fn pop_first(&mut self) {
        self.ranges.pop_first();
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().map(|(&l, &h)| (l, h))
    }
}

/// Used ids below the window: the ranges the window left behind, in order (a sorted `Vec`:
/// appends and binary searches), and ids set below the window out of order (an ordered
/// map).
#[derive(Clone, Debug)]
pub(crate) struct Below {
    tail: Vec<(u64, u64)>,
    other: RangeSet,
    /// No used id here is above this (may be stale-high after `take`: only a fast path).
    max_hi: u64,
    /// Nothing has been added yet.
    empty: bool,
}

impl Default for Below {
    fn default() -> Self {
        Below {
            tail: Vec::new(),
            other: RangeSet::default(),
            max_hi: 0,
            empty: true,
        }
    }
}

impl Below {
    /// Adds `[lo, hi]`, appending when it is past everything left behind so far.
    fn append(&mut self, lo: u64, hi: u64) {
        self.note(hi);
        match self.tail.last_mut() {
            Some(last) if last.1 < u64::MAX && lo == last.1 + 1 => last.1 = hi,
            Some(last) if lo <= last.1 => self.other.insert(lo, hi),
            _ => self.tail.push((lo, hi)),
        }
    }

    fn insert(&mut self, lo: u64, hi: u64) {
        self.note(hi);
        self.other.insert(lo, hi);
    }

    #[inline]
    fn note(&mut self, hi: u64) {
        self.max_hi = if self.empty { hi } else { self.max_hi.max(hi) };
        self.empty = false;
    }

    /// Adds one id: appended when it is past every range (ids from a counter), else
    /// merged into the ordered map.
    fn add(&mut self, id: u64) {
        if self.empty || id > self.max_hi {
            self.append(id, id);
        } else if self.tail.last().is_some_and(|l| id > l.1) && !self.other.contains(id) {
            // Past the ordered part (another range sits higher in the map).
            self.append(id, id);
        } else if !self.contains(id) {
            self.insert(id, id);
        }
    }

    #[inline]
    fn contains(&self, id: u64) -> bool {
        if self.empty || id > self.max_hi {
            return false;
        }
        let k = self.tail.partition_point(|&(lo, _)| lo <= id);
        (k > 0 && id <= self.tail[k - 1].1) || self.other.contains(id)
    }

    fn len(&self) -> usize {
        self.tail.len() + self.other.len()
    }

    /// Removes and returns the ranges of one id.
    fn take_singles(&mut self) -> Vec<u64> {
        let mut out: Vec<u64> = Vec::new();
        self.tail.retain(|&(lo, hi)| {
            let single = lo == hi;
            if single {
                out.push(lo);
            }
            !single
        });
        let singles: Vec<u64> = self
            .other
            .iter()
            .filter(|&(lo, hi)| lo == hi)
            .map(|(lo, _)| lo)
            .collect();
        for &id in &singles {
            self.other.ranges.remove(&id);
        }
        out.extend(singles);
        out
    }

    /// Removes and returns the used ids within `[lo, hi]`, as ranges.
    fn take(&mut self, lo: u64, hi: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        if lo > hi {
            return out;
        }
        let start = self.tail.partition_point(|&(_, h)| h < lo);
        let end = self.tail.partition_point(|&(l, _)| l <= hi);
        if start < end {
            let mut keep = Vec::new();
            for &(l, h) in &self.tail[start..end] {
                if l < lo {
                    keep.push((l, lo - 1));
                }
                out.push((l.max(lo), h.min(hi)));
                if h > hi {
                    keep.push((hi + 1, h));
                }
            }
            self.tail.splice(start..end, keep);
        }
        out.extend(self.other.take(lo, hi));
        out
    }

    /// Every range, ascending by first id (the two parts merged; they may overlap).
    fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut a = self.tail.iter().copied().peekable();
        let mut b = self.other.iter().peekable();
        std::iter::from_fn(move || match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if y.0 < x.0 => b.next(),
            (Some(_), _) => a.next(),
            (None, _) => b.next(),
        })
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
    /// One bit per slot, set when the slot is not [`UNKNOWN`]: sliding skips empty stretches
    /// 64 slots at a time (sparse ids slide the window far on every new order).
    occ: Vec<u64>,
    /// One bit per `occ` word, set when that word is not zero: a slide skips 4096 empty
    /// slots at a time.
    occ2: Vec<u64>,
    mask: u64,
    base: u64,
    started: bool,
    used: Below,
    /// Ids below the window one by one (an open-addressing table; value: pool index or
    /// [`DEAD`]). Not parked: the live ones (all of them also in `used`) and dead records
    /// kept from a parked spell; parked: every id used below since parking, live or dead.
    table: IdTable,
    /// Used ids above the window (live or not), as ranges.
    above_used: RangeSet,
    /// The live ones among them.
    above_live: BTreeMap<u64, u32>,
    /// New orders placed outside the window minus those placed inside, floored at zero
    /// (re-bases at [`IdIndex::rebase_after`]): the window follows the larger flow of new
    /// ids, also when a smaller one (another client's counter) interleaves with it.
    outside_streak: usize,
    /// Re-bases so far.
    rebases: usize,
    /// Loading a state: no re-basing (the loaded live ids come in book order, not id order).
    loading: bool,
    /// Sparse ids (fewer than 64 new orders per window span): the window is parked at the
    /// top of the id space and every id lives below it (a map of the live ones, ranges of
    /// the used ones, appended in order when ids increase).
    parked: bool,
    /// The current density epoch: new orders, how far they moved the window's top in all
    /// (parked: a virtual top), that virtual top, and how many of the new orders were near
    /// the flow (in the window or just ahead of it; the others are other ranges or jumps).
    epoch: (usize, u64, Option<u64>, usize),
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
            occ: Vec::new(),
            occ2: Vec::new(),
            mask: (w - 1) as u64,
            base: 0,
            started: false,
            used: Below::default(),
            table: IdTable::default(),
            above_used: RangeSet::default(),
            above_live: BTreeMap::new(),
            outside_streak: 0,
            rebases: 0,
            loading: false,
            parked: false,
            epoch: (0, 0, None, 0),
            track_used,
            live: 0,
        }
    }

    /// Room for `live` live orders outside the window and as many used ids one by one (a
    /// parked window), before anything rehashes.
    pub fn reserve(&mut self, live: usize) {
        self.table.reserve(live);
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
            match self.table.get(id) {
                Some(DEAD) => IdState::Dead,
                Some(i) => IdState::Live(i),
                None if self.used.contains(id) => IdState::Dead,
                None => IdState::Unknown,
            }
        } else {
            match self.above_live.get(&id) {
                Some(&i) => IdState::Live(i),
                None if self.above_used.contains(id) => IdState::Dead,
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
        if value < DEAD && !self.loading {
            self.density(id);
        }
        let off = id.wrapping_sub(self.base);
        let was_live = if off <= self.mask {
            if value < DEAD {
                self.outside_streak = self.outside_streak.saturating_sub(1);
                self.epoch.3 += 1;
            }
            self.put(id, value)
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

    /// Writes a window slot and its occupancy bit; returns whether it was live.
    #[inline]
    fn put(&mut self, id: u64, value: u32) -> bool {
        let k = (id & self.mask) as usize;
        let old = std::mem::replace(&mut self.slots[k], value);
        if value == UNKNOWN {
            self.clear_occ(k);
        } else {
            let w = k / 64;
            self.occ[w] |= 1u64 << (k % 64);
            self.occ2[w / 64] |= 1u64 << (w % 64);
        }
        old < DEAD
    }

    #[inline]
    fn clear_occ(&mut self, k: usize) {
        let w = k / 64;
        self.occ[w] &= !(1u64 << (k % 64));
        if self.occ[w] == 0 {
            self.occ2[w / 64] &= !(1u64 << (w % 64));
        }
    }

    fn start_at(&mut self, base: u64) {
        self.slots = vec![UNKNOWN; self.w() as usize];
        self.occ = vec![0; self.w() as usize / 64];
        self.occ2 = vec![0; self.occ.len().div_ceil(64)];
        // The window never reaches past u64::MAX.
        self.base = base.min(u64::MAX - self.mask);
        self.started = true;
    }

    /// Sets an id outside the window (sliding the window when it is just ahead); returns
    /// whether the id was live.
    #[cold]
    fn set_outside(&mut self, id: u64, value: u32) -> bool {
        // New orders mostly land outside the window (the flow moved, or the window was
        // placed by a few odd ids): re-base it around them, one pass, then carry on there.
        if value < DEAD && !self.loading && !self.parked {
            self.outside_streak += 1;
            if self.outside_streak >= self.rebase_after() {
                self.outside_streak = 0;
                self.rebases += 1;
                if id > self.base {
                    self.slide_to(id - self.mask);
                    return self.put(id, value);
                }
                let room = self.w() / 16;
                if self.rebase_down(id.saturating_sub(room)) {
                    return self.put(id, value);
                }
            }
        }
        if id < self.base {
            return self.set_below(id, value);
        }
        let w = self.w();
        let top = self.base + self.mask;
        if id - top <= 2 * w {
            // Just ahead: slide so that `id` is the last id of the window.
            if value < DEAD {
                self.epoch.1 += id - top;
                self.epoch.3 += 1;
            }
            self.slide_to(id - self.mask);
            return self.put(id, value);
        }
        if self.track_used && value != UNKNOWN {
            self.above_used.insert(id, id);
        }
        if value < DEAD {
            self.above_live.insert(id, value).is_some()
        } else {
            self.above_live.remove(&id).is_some()
        }
    }

    /// Sets an id below the window; returns whether it was live.
    #[inline]
    fn set_below(&mut self, id: u64, value: u32) -> bool {
        if self.parked {
            // Every id used since parking has its own entry, live or dead.
            let old = if value == UNKNOWN {
                self.table.remove(id)
            } else {
                self.table.insert(id, value)
            };
            return old.is_some_and(|v| v < DEAD);
        }
        if value < DEAD {
            let old = self.table.insert(id, value);
            // A live id below is recorded in the ranges too, so that its entry can go when
            // it dies.
            if self.track_used && old.is_none() {
                self.used.add(id);
            }
            return old.is_some_and(|v| v < DEAD);
        }
        match self.table.get(id) {
            Some(v) if v < DEAD => {
                // It is in the ranges (recorded when it went live or left the window).
                self.table.remove(id);
                true
            }
            Some(_) => {
                if value == UNKNOWN {
                    self.table.remove(id);
                }
                false
            }
            None => {
                if self.track_used && value != UNKNOWN {
                    self.used.add(id);
                }
                false
            }
        }
    }

    /// Moves the window to start at `new_base` (> base): ids leaving it go below (ranges
    /// and live map), ids entering it come from `above`.
    fn slide_to(&mut self, new_base: u64) {
        let old_last = self.base + self.mask;
        let evict_last = (new_base - 1).min(old_last);
        let mut run: Option<(u64, u64)> = None;
        let mut id = self.base;
        while id <= evict_last {
            // Skip to the next occupied slot (ids and slots agree modulo the window).
            let k = (id & self.mask) as usize;
            if self.occ2[k / 4096] == 0 {
                // 64 empty words (or the whole window when it is smaller).
                let block = 4096.min(self.slots.len());
                match id.checked_add((block - k % block) as u64) {
                    Some(next) => id = next,
                    None => break,
                }
                continue;
            }
            let bits = self.occ[k / 64] >> (k % 64);
            if bits == 0 {
                match id.checked_add(64 - (k % 64) as u64) {
                    Some(next) => id = next,
                    None => break,
                }
                continue;
            }
            id += bits.trailing_zeros() as u64;
            if id > evict_last {
                break;
            }
            let k = (id & self.mask) as usize;
            self.clear_occ(k);
            let v = std::mem::replace(&mut self.slots[k], UNKNOWN);
            if v != DEAD {
                self.table.insert(id, v);
            }
            if !self.track_used {
                match id.checked_add(1) {
                    Some(next) => id = next,
                    None => break,
                }
                continue;
            }
            match &mut run {
                Some((_, hi)) if *hi + 1 == id => *hi = id,
                Some((lo, hi)) => {
                    self.used.append(*lo, *hi);
                    run = Some((id, id));
                }
                None => run = Some((id, id)),
            }
            match id.checked_add(1) {
                Some(next) => id = next,
                None => break,
            }
        }
        if let Some((lo, hi)) = run {
            self.used.append(lo, hi);
        }
        self.base = new_base;
        // Ids waiting above (all past the old window) that the window now reaches: those it
        // jumped past go below, those inside it go into their slots.
        let new_last = new_base + self.mask;
        while let Some((lo, hi)) = self.above_used.first() {
            if lo > new_last {
                break;
            }
            self.above_used.pop_first();
            if hi > new_last {
                self.above_used.insert(new_last + 1, hi);
            }
            let hi = hi.min(new_last);
            if lo < new_base {
                self.used.append(lo, hi.min(new_base - 1));
            }
            for x in lo.max(new_base)..=hi {
                self.put(x, DEAD);
            }
        }
        while let Some((&k, &v)) = self.above_live.first_key_value() {
            if k > new_last {
                break;
            }
            self.above_live.pop_first();
            if k < new_base {
                // Recorded in `used` when its range was appended above.
                self.table.insert(k, v);
            } else {
                self.put(k, v);
            }
        }
    }

    /// New orders per density epoch.
    #[inline]
    fn epoch_len(&self) -> usize {
        (self.w() as usize).min(1024)
    }

    /// Tracks what sliding costs: at the end of each epoch of new orders, parks the window
    /// when it moved more than W/64 ids per new order (sparse ids: it would hold fewer than
    /// 64 orders, and sliding over the gaps costs more than a map), and brings it back when,
    /// parked, the flow moves less than W/256 ids per new order (dense again). Ids far from
    /// the flow (another client's range, a jump) do not count.
    #[inline]
    fn density(&mut self, id: u64) {
        if self.parked {
            match self.epoch.2 {
                None => self.epoch.2 = Some(id),
                Some(top) if id > top && id - top < 2 * self.w() => {
                    self.epoch.1 += id - top;
                    self.epoch.2 = Some(id);
                    self.epoch.3 += 1;
                }
                _ => {}
            }
        }
        self.epoch.0 += 1;
        if self.epoch.0 < self.epoch_len() {
            return;
        }
        let near = self.epoch.3;
        let per_order = self.epoch.1 / near.max(1) as u64;
        self.epoch.0 = 0;
        self.epoch.1 = 0;
        self.epoch.3 = 0;
        // Too few orders near the flow to judge: keep things as they are.
        if near < self.epoch_len() / 4 {
            return;
        }
        if !self.parked && per_order > self.w() / 64 {
            self.park();
            // The flow that made it park, followed from here (not some other range).
            self.epoch.2 = Some(id);
        } else if self.parked && per_order < self.w() / 256 {
            let top = self.epoch.2.unwrap_or(id);
            if self.rebase_down(top.saturating_sub(self.w() / 2)) {
                self.parked = false;
                self.epoch.2 = None;
                // Not parked, a live entry below is also in the ranges (so that it can go
                // when it dies); dead entries stay as they are.
                if self.track_used {
                    let live: Vec<u64> = self
                        .table
                        .iter()
                        .filter(|&(_, v)| v < DEAD)
                        .map(|(k, _)| k)
                        .collect();
                    for k in live {
                        self.used.add(k);
                    }
                }
            }
        }
    }

    /// Moves the window to the top of the id space: everything it held goes below. Single
    /// ids in the ranges below move to the table as dead entries, so that the ranges keep
    /// only runs (few) and a new sparse id costs one table probe, not a range search.
    #[cold]
    fn park(&mut self) {
        let top = u64::MAX - self.mask;
        if self.base < top {
            self.slide_to(top);
        }
        for id in self.used.take_singles() {
            if self.table.get(id).is_none() {
                self.table.insert(id, DEAD);
            }
        }
        self.parked = true;
        self.outside_streak = 0;
    }

    /// New orders outside the window in a row before it re-bases.
    #[inline]
    fn rebase_after(&self) -> usize {
        // Doubles with every re-base (two interleaved flows of similar rates must not make
        // the window flip back and forth), up to W / 4.
        let w4 = (self.w() as usize / 4).max(16);
        (1024usize << self.rebases.min(20)).min(w4)
    }

    /// Moves the window down to start at `new_base`, entirely below the current one: its
    /// ids go above, the ids below that fall into it come into their slots. False (nothing
    /// done) when the new window would overlap the current one.
    fn rebase_down(&mut self, new_base: u64) -> bool {
        let new_last = new_base + self.mask;
        if new_last >= self.base {
            return false;
        }
        // 1. The whole window goes above (occupied slots only, by the occupancy bits).
        for word in 0..self.occ.len() {
            if self.occ2[word / 64] & (1u64 << (word % 64)) == 0 {
                continue;
            }
            let mut bits = self.occ[word];
            while bits != 0 {
                let k = word * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let v = std::mem::replace(&mut self.slots[k], UNKNOWN);
                // The id of slot k in the window [base, base + mask].
                let id = self.base + ((k as u64).wrapping_sub(self.base) & self.mask);
                if v != DEAD {
                    self.above_live.insert(id, v);
                }
                if self.track_used {
                    self.above_used.insert(id, id);
                }
            }
        }
        self.occ.iter_mut().for_each(|w| *w = 0);
        self.occ2.iter_mut().for_each(|w| *w = 0);
        let old_base = self.base;
        self.base = new_base;
        // Ids below the old window but above the new one go above too.
        for (lo, hi) in self.used.take(new_last + 1, old_base - 1) {
            self.above_used.insert(lo, hi);
        }
        // 2. Ids below that the new window covers come in: used ranges, then live ones.
        for (lo, hi) in self.used.take(new_base, new_last) {
            for x in lo..=hi {
                self.put(x, DEAD);
            }
        }
        // Entries of the table the new window covers or leaves above it (live or dead).
        let moving: Vec<(u64, u32)> = self
            .table
            .iter()
            .filter(|&(k, _)| k >= new_base && k < old_base)
            .collect();
        for (k, v) in moving {
            self.table.remove(k);
            if k <= new_last {
                self.put(k, v);
            } else {
                if self.track_used {
                    self.above_used.insert(k, k);
                }
                if v < DEAD {
                    self.above_live.insert(k, v);
                }
            }
        }
        true
    }

    /// Marks every id of `[lo, hi]` used (recovery): ranges below the window. Call before
    /// any other id is set; the window then starts after the highest id so loaded.
    pub fn load_used(&mut self, lo: u64, hi: u64) {
        debug_assert!(!self.started);
        if self.track_used {
            self.used.append(lo, hi);
        }
    }

    /// While loading a state, live ids never move the window (they arrive in book order).
    pub fn set_loading(&mut self, on: bool) {
        self.loading = on;
    }

    /// Starts the window just after the ids loaded with [`IdIndex::load_used`].
    pub fn start_after_loaded(&mut self) {
        if let Some(hi) = self.used.iter().map(|(_, h)| h).max() {
            if hi < u64::MAX {
                self.start_at(hi + 1);
            }
        }
    }

    /// Every id used (live or dead) as ascending disjoint inclusive ranges.
    pub fn used_ranges(&self) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = Vec::with_capacity(self.used.len() + 16);
        // The ranges below and the ids of the table (which may repeat ids of the ranges).
        let mut below: Vec<(u64, u64)> = self.used.iter().collect();
        if self.track_used && self.table.len() > 0 {
            below.extend(self.table.iter().map(|(k, _)| (k, k)));
            below.sort_unstable();
        }
        for (lo, hi) in below {
            push_range(&mut v, lo, hi);
        }
        if self.started {
            for id in self.base..=self.base + self.mask {
                if self.slots[(id & self.mask) as usize] != UNKNOWN {
                    push_range(&mut v, id, id);
                }
            }
            for (lo, hi) in self.above_used.iter() {
                push_range(&mut v, lo, hi);
            }
        }
        v
    }

    /// Bytes held beyond the fixed window (ranges, maps), roughly: for the soak report.
    pub fn outside_entries(&self) -> usize {
        self.used.len() + self.table.len() + self.above_used.len() + self.above_live.len()
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

    /// The window was placed by a few ids of another range (LOBSTER replay seeds synthetic
    /// orders at 2^62 first); the real flow comes from a counter far below. After a streak
    /// of new orders outside, the window moves down to the counter, and the synthetic ids
    /// stay refused.
    #[test]
    fn the_window_follows_the_flow_down_too() {
        let mut ix = IdIndex::new(1024, true);
        let hi = 1u64 << 62;
        for k in 0..10 {
            ix.set_live(hi + k, k as u32);
        }
        let mut id = 16_000_000u64;
        for n in 0..5000u32 {
            assert_eq!(ix.get(id), IdState::Unknown);
            ix.set_live(id, 100 + n);
            if n >= 3 {
                ix.set_dead(id - 3);
            }
            id += 1;
        }
        assert!(ix.base < hi, "the window moved down");
        assert!(
            ix.outside_entries() < 40,
            "{} entries outside",
            ix.outside_entries()
        );
        for k in 0..10 {
            assert_eq!(ix.get(hi + k), IdState::Live(k as u32));
        }
        assert_eq!(ix.get(16_000_000), IdState::Dead);
        assert_eq!(ix.get(15_999_999), IdState::Unknown);
        assert_eq!(ix.get(id), IdState::Unknown);
        assert_eq!(ix.live(), 13);
    }

    /// Ids 5,000 apart (LOBSTER-like) park the window; a dense counter brings it back.
    #[test]
    fn sparse_ids_park_the_window_and_dense_ones_bring_it_back() {
        let mut ix = IdIndex::new(4096, true);
        let mut live = std::collections::VecDeque::new();
        let mut id = 16_000_000u64;
        for n in 0..20_000u32 {
            assert_eq!(ix.get(id), IdState::Unknown);
            ix.set_live(id, n);
            live.push_back(id);
            if live.len() > 300 {
                ix.set_dead(live.pop_front().unwrap());
            }
            id += 5_000;
        }
        assert!(ix.parked, "sparse ids park the window");
        for n in 0..20_000u32 {
            ix.set_live(id, n);
            live.push_back(id);
            if live.len() > 300 {
                ix.set_dead(live.pop_front().unwrap());
            }
            id += 1;
        }
        assert!(!ix.parked, "a dense counter brings it back");
        assert_eq!(ix.live(), 300);
        assert_eq!(ix.get(16_000_000), IdState::Dead);
        assert_eq!(ix.get(16_000_001), IdState::Unknown);
        assert_eq!(ix.get(id - 1), IdState::Live(19_999));
        let tail = ix.used_ranges();
        assert_eq!(
            tail.last(),
            Some(&(id - 20_000, id - 1)),
            "the counter is one range"
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
        /// Phases of sparse increasing ids (LOBSTER-like: they park the window) and of a
        /// dense counter (it brings the window back), with stray ids and deaths in between,
        /// agree with a plain map of every id ever used, tracking and live-only alike.
        #[test]
        fn parking_and_unparking_agree_with_a_map(
            phases in prop::collection::vec((any::<bool>(), 200usize..1500), 1..6),
            strays in prop::collection::vec(any::<u64>(), 0..40),
            seed in any::<u64>(),
        ) {
            for track in [true, false] {
                let mut ix = IdIndex::new(64, track);
                let mut model: HashMap<u64, Option<u32>> = HashMap::new();
                let mut live: std::collections::VecDeque<u64> = Default::default();
                let (mut dense, mut sparse, mut x, mut n) = (1_000u64, 1u64 << 40, seed, 0u32);
                let mut was_parked = false;
                for &(is_sparse, len) in &phases {
                    for k in 0..len {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        let id = if k % 97 == 13 && !strays.is_empty() {
                            strays[(x >> 40) as usize % strays.len()]
                        } else if is_sparse {
                            // Gaps of 3 to 66 ids: sparse for a 64-id window (it parks).
                            sparse += 3 + (x >> 58);
                            sparse
                        } else {
                            dense += 1 + (x >> 62);
                            dense
                        };
                        if model.contains_key(&id) {
                            prop_assert!(!track || ix.get(id) != IdState::Unknown);
                            continue;
                        }
                        prop_assert_eq!(ix.get(id), IdState::Unknown);
                        n += 1;
                        ix.set_live(id, n);
                        model.insert(id, Some(n));
                        live.push_back(id);
                        // A book of ~100 orders; sometimes the oldest, sometimes a random one dies.
                        if live.len() > 100 {
                            let j = if x & 1 == 0 { 0 } else { (x >> 8) as usize % live.len() };
                            let Some(d) = live.remove(j) else { continue };
                            ix.set_dead(d);
                            model.insert(d, None);
                        }
                        was_parked |= ix.parked;
                    }
                }
                let nlive = model.values().filter(|v| v.is_some()).count();
                prop_assert_eq!(ix.live(), nlive);
                prop_assert!(was_parked || !phases.iter().any(|p| p.0 && p.1 >= 600), "a long sparse phase parks");
                for (&id, &v) in &model {
                    let want = match (v, track) {
                        (Some(i), _) => IdState::Live(i),
                        (None, true) => IdState::Dead,
                        (None, false) => IdState::Unknown,
                    };
                    prop_assert_eq!(ix.get(id), want, "id {} parked {} (ever {})", id, ix.parked, was_parked);
                }
                if track {
                    let mut ids: Vec<u64> = model.keys().copied().collect();
                    ids.sort_unstable();
                    let mut want = Vec::new();
                    for id in ids { push_range(&mut want, id, id); }
                    prop_assert_eq!(ix.used_ranges(), want);
                } else {
                    prop_assert!(ix.outside_entries() <= nlive + 64);
                }
            }
        }

        /// Any sequence of sets agrees with a plain map of every id ever used.
        #[test]
        fn agrees_with_a_map_of_every_id(ops in prop::collection::vec(op(), 1..600), w in 0usize..200) {
            let mut ix = IdIndex::new(w, true);
            // A live-only index (market data) fed the same: it knows the live ids and
            // keeps nothing for dead ones.
            let mut lv = IdIndex::new(w, false);
            let mut model: HashMap<u64, Option<u32>> = HashMap::new();
            let mut counter = 0u64;
            for (n, (kind, x)) in ops.into_iter().enumerate() {
                // Mostly a counter with gaps, sometimes anything.
                let id = if kind == 0 { counter += 1 + x % 3; counter } else { x };
                match model.get(&id).copied() {
                    None => { ix.set_live(id, n as u32); lv.set_live(id, n as u32); model.insert(id, Some(n as u32)); }
                    Some(Some(_)) => { ix.set_dead(id); lv.set_dead(id); model.insert(id, None); }
                    Some(None) => {}
                }
                let live = model.values().filter(|v| v.is_some()).count();
                prop_assert_eq!(ix.live(), live);
                prop_assert_eq!(lv.live(), live);
                prop_assert!(lv.outside_entries() <= live);
            }
            for (&id, &v) in &model {
                let want = match v { Some(i) => IdState::Live(i), None => IdState::Dead };
                prop_assert_eq!(ix.get(id), want);
                let want_lv = match v { Some(i) => IdState::Live(i), None => IdState::Unknown };
                prop_assert_eq!(lv.get(id), want_lv);
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
