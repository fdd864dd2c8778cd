//! One side of a book: its levels sorted from worst to best price (the best is the last
//! entry, O(1)), searched from the best end (gallop, then a binary search), with a
//! direct-indexed cache of levels by price on the grid the side's prices have shown. A level
//! that empties below the top stays in place, empty, so that an order arriving at that price
//! later needs no insert; empty levels at the top are popped at once, so the last entry is
//! always the non-empty best; when empty levels pass 1024 and eight times the live ones the
//! side is compacted in place.

use super::level::Level;
use super::order::NIL;
use crate::types::{Price, Side};

/// The levels of one side, worst first, best last. The key orders prices so that a larger
/// key is a better price: the price for bids, its bitwise complement for asks.
#[derive(Clone, Debug, Default)]
pub(crate) struct Ladder {
    pub entries: Vec<(i64, u32)>,
    /// How many entries are empty levels.
    pub empties: usize,
    /// Price of `slots[0]`.
    pub(super) slot_base: i64,
    /// Price units per slot (0 reads as 1). Prices may come in units finer than the
    /// prices really used (LOBSTER's are $0.0001 for a market that moves in cents): then
    /// one slot in a hundred would ever hold a level, and the window would cover a hundredth
    /// of the book. The step is the grid the side's prices have shown so far: the greatest
    /// common divisor of their distances from `anchor` (at most [`MAX_STEP`]).
    pub(super) step: u64,
    /// That greatest common divisor (0: no price but the anchor yet).
    pub(super) grid: u64,
    /// The first price this side had a level at.
    pub(super) anchor: i64,
    /// Direct-indexed cache: level index by price offset (NIL when none); it always agrees
    /// with `entries` for the prices inside its window.
    pub(super) slots: Vec<u32>,
    /// Orders linked at prices outside the window since it last moved: past
    /// [`RECENTER_AFTER`] the window is re-centred on the flow (prices drift through a
    /// day: a window that stayed where the day opened would miss every time).
    pub(super) misses: u32,
}

/// Orders placed outside a full-size window before it moves to them (a re-centre costs one
/// pass over the window and the levels, so it is done rarely).
const RECENTER_AFTER: u32 = 1024;

#[inline]
pub(super) fn key(side: Side, price: Price) -> i64 {
    match side {
        Side::Buy => price.0,
        Side::Sell => !price.0,
    }
}

/// Where key `k` is (`Ok`) or would go (`Err`) in a side's ascending entries, searched
/// from the best end: galloping down 1, 2, 4, … entries, then a binary search of the last
/// stretch. Orders go mostly near the top of a book, so a deep side costs the few cache
/// lines at its end instead of a binary search's walk from the middle (on the LOBSTER
/// level-10 sample that search had been 6% of the matcher's time).
#[inline]
pub(super) fn search_from_top(entries: &[(i64, u32)], k: i64) -> Result<usize, usize> {
    let mut hi = entries.len();
    let mut step = 1;
    let lo = loop {
        if step >= hi {
            break 0;
        }
        let probe = hi - step;
        if entries[probe].0 <= k {
            break probe;
        }
        hi = probe;
        step *= 2;
    };
    match entries[lo..hi].binary_search_by_key(&k, |&(bk, _)| bk) {
        Ok(p) => Ok(lo + p),
        Err(p) => Err(lo + p),
    }
}
/// Price slots per side in the direct-indexed level cache: it starts at `MIN_SLOTS` and
/// grows (four times at a step, re-placed around the new price) while levels open outside
/// it, up to `SLOTS`, so a book's cache stays proportional to the prices it really uses.
pub(super) const SLOTS: usize = 4096;
pub(super) const MIN_SLOTS: usize = 64;

/// The largest price step the cache takes (prices further apart than this share no grid
/// worth indexing).
const MAX_STEP: u64 = 1 << 20;

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Ladder {
    /// Price units per slot.
    #[inline]
    pub(super) fn unit(&self) -> u64 {
        self.step.max(1)
    }

    /// The slot of `price` in the window, if it is inside it and on the grid.
    #[inline]
    pub(super) fn slot_of(&self, price: Price) -> Option<usize> {
        // Below the base the difference wraps past any window.
        let d = price.0.wrapping_sub(self.slot_base) as u64;
        let off = if self.step <= 1 {
            d
        } else if d.is_multiple_of(self.step) {
            d / self.step
        } else {
            return None;
        };
        (off < self.slots.len() as u64).then_some(off as usize)
    }

    /// The level at `price` from the direct-indexed cache, or NIL (none, or outside the
    /// cached window: then the sorted entries decide).
    #[inline]
    pub(super) fn cached(&self, price: Price) -> u32 {
        match self.slot_of(price) {
            Some(s) => self.slots[s],
            None => NIL,
        }
    }

    /// The grid price at or below `x` (clamped to `i64`).
    pub(super) fn align(&self, x: i128) -> i64 {
        let u = self.unit() as i128;
        let a = self.anchor as i128;
        (a + (x - a).div_euclid(u) * u).clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }

    /// A new level at `price`: refines the grid, and re-places the window (same centre,
    /// same number of slots) when the step changes.
    #[inline]
    pub(super) fn learn(&mut self, price: Price, levels: &[Level]) {
        // A grid of one unit is as fine as it gets (most books, after a few levels).
        if self.grid == 1 || self.slots.is_empty() {
            return; // (The first level: `cache` takes it as the anchor.)
        }
        self.refine(price, levels);
    }

    #[cold]
    fn refine(&mut self, price: Price, levels: &[Level]) {
        let d = price.0.abs_diff(self.anchor);
        if d == 0 || (self.grid != 0 && d.is_multiple_of(self.grid)) {
            return;
        }
        self.grid = gcd(self.grid, d);
        let step = if self.grid <= MAX_STEP { self.grid } else { 1 };
        if step == self.unit() {
            return;
        }
        let len = self.slots.len();
        let centre = self.slot_base as i128 + (len as i128 * self.unit() as i128) / 2;
        self.step = step;
        let base = self.align(centre - (len as i128 / 2) * step as i128);
        self.place(base, len, levels);
    }

    /// Grows the window (up to `SLOTS`) when a new level at `price` falls outside it: the
    /// new window is centred on the span of prices in use and refilled from the entries.
    pub(super) fn grow_for(&mut self, price: Price, levels: &[Level]) {
        if self.slot_of(price).is_some() || self.slots.len() >= SLOTS || self.slots.is_empty() {
            return;
        }
        // Cover the span of the levels in use (twice over, for room), centred on it.
        let (Some(&(_, first)), Some(&(_, last))) = (self.entries.first(), self.entries.last())
        else {
            return;
        };
        let (a, b) = (
            levels[first as usize].price.0,
            levels[last as usize].price.0,
        );
        let (lo, hi) = (a.min(b).min(price.0) as i128, a.max(b).max(price.0) as i128);
        let u = self.unit() as i128;
        let span = ((hi - lo) / u + 1).saturating_mul(2);
        let len = (self.slots.len() * 4)
            .max(span.min(SLOTS as i128) as usize)
            .next_power_of_two()
            .min(SLOTS);
        let base = self.align((lo + hi) / 2 - (len as i128 / 2) * u);
        self.place(base, len, levels);
    }

    /// Puts the window of `len` slots at `base` and refills it from the entries.
    fn place(&mut self, base: i64, len: usize, levels: &[Level]) {
        self.slot_base = base;
        self.slots.clear();
        self.slots.resize(len, NIL);
        for i in 0..self.entries.len() {
            let l = self.entries[i].1;
            if let Some(s) = self.slot_of(levels[l as usize].price) {
                self.slots[s] = l;
            }
        }
    }

    /// Counts an order linked at a price outside the window; after [`RECENTER_AFTER`] of
    /// them the window (at full size) is re-centred on `price` and refilled from the
    /// entries.
    #[cold]
    pub(super) fn missed(&mut self, price: Price, levels: &[Level]) {
        if self.slot_of(price).is_some() || self.slots.len() < SLOTS {
            return;
        }
        self.misses += 1;
        if self.misses < RECENTER_AFTER {
            return;
        }
        self.misses = 0;
        let len = self.slots.len();
        let base = self.align(price.0 as i128 - (len as i128 / 2) * self.unit() as i128);
        self.place(base, len, levels);
    }

    /// Records a level in the cache (the window is placed around the first price seen,
    /// which anchors the grid).
    #[inline]
    pub(super) fn cache(&mut self, price: Price, level: u32) {
        if self.slots.is_empty() {
            self.anchor = price.0;
            self.grid = 0;
            self.step = 1;
            self.slot_base = price.0.saturating_sub(MIN_SLOTS as i64 / 2);
            self.slots = vec![NIL; MIN_SLOTS];
        }
        if let Some(s) = self.slot_of(price) {
            self.slots[s] = level;
        }
    }
}
