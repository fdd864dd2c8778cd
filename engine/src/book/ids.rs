//! [`IdIndex`]: the pool index of each live order id, and every order id the engine has
//! seen, compactly.
//!
//! docs/formats.md: an order id is unique in the whole engine, for ever. Two structures keep that
//! rule exactly:
//!
//! - **Live ids** in an open-addressing table ([`IdTable`]) sized to the live orders, not the
//!   history: a lookup is one hash and, almost always, one cache line, for dense counters
//!   and sparse 64-bit ids (LOBSTER's, a client's random ones) alike. A cancel removes its
//!   entry, so the table never holds a dead id.
//! - **Used ids** ([`UsedIds`]) as ascending ranges of ids in a few **runs**: each run is
//!   the ids of one increasing flow (a gateway's counter, an exchange's order references,
//!   the synthetic ids of a replay), stored in fixed-size chunks. A new id past the end of
//!   its flow is appended — it extends the last range when it follows it (a counter with
//!   no gaps costs nothing at all) or adds one range (16 bytes) when there is a gap — and
//!   answering "used?" for it is a look at the run heads and the run's last range, no
//!   search. An id that comes out of order (inside a run's span, or below the first run
//!   but within 2^32 of it) goes to [`Scattered`]: once a 2^32-id block holds two such
//!   ids, a compressed bitmap for the block (`roaring`), else an ordered map of ranges.
//!
//! Costs: memory is a 16-byte slot per live order in a table at most 3/8 full (43–85 bytes
//! per live order, 128 KiB at least) plus, for the used ids, 16 bytes per gap of an
//! increasing flow, at most 2 bytes per id (0.15 on a shuffled permutation of 1..N) for ids
//! in any order near each other, and 16 bytes (in an ordered map: about 27 with its nodes)
//! per lone id far from every other (uniformly random 64-bit ids: what "never reused" costs
//! for ids with no structure; [`crate::IdUniqueness::Live`] keeps nothing for them). Time per
//! command is O(1) for ids that increase within their flow, a few bitmap probes for ids out
//! of order near each other, O(log n) for lone ones; a table that doubles is drained a few
//! slots per operation, a chunk that fills is never copied, and a bitmap grows a
//! 65,536-id container at a time (at most 8 KiB), so no command copies the live set or
//! the history.

use super::table::IdTable;
use roaring::RoaringBitmap;
use std::collections::BTreeMap;

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

    /// Adds the lone id `id` unless the set holds another id of `[from, to]` (its block):
    /// `None` when it was added (or was in already), `Some(true)` when a neighbour in the
    /// block was found instead (nothing added). Two lookups, where `intersects` then
    /// `insert` take four.
    pub fn insert_one(&mut self, id: u64, from: u64, to: u64) -> Option<bool> {
        let pred = self.ranges.range(..=id).next_back().map(|(&l, &h)| (l, h));
        if pred.is_some_and(|(_, h)| h >= id) {
            return None;
        }
        let succ = id
            .checked_add(1)
            .and_then(|n| self.ranges.range(n..).next().map(|(&l, &h)| (l, h)));
        if pred.is_some_and(|(_, h)| h >= from) || succ.is_some_and(|(l, _)| l <= to) {
            return Some(true);
        }
        // Neither neighbour is in the block; one may still touch `id` across the block's
        // edge.
        let mut lo = id;
        let mut hi = id;
        if let Some((l, h)) = pred {
            if h.saturating_add(1) == id {
                lo = l;
            }
        }
        if let Some((l, h)) = succ {
            if l == id.saturating_add(1) {
                self.ranges.remove(&l);
                hi = h;
            }
        }
        self.ranges.insert(lo, hi);
        None
    }

    /// Whether any id of `[lo, hi]` is in the set.
    pub fn intersects(&self, lo: u64, hi: u64) -> bool {
        self.ranges
            .range(..=hi)
            .next_back()
            .is_some_and(|(_, &h)| h >= lo)
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().map(|(&l, &h)| (l, h))
    }
}

/// Ranges per chunk of a run (16 KiB): a chunk that fills is never copied, the next one is
/// allocated.
const CHUNK: usize = 1024;

/// Runs kept apart before further new flows go to the ordered map.
const MAX_RUNS: usize = 16;

/// An id this far past the end of its run, or below the first run, starts a run of its own
/// (a counter never jumps 2^32 ids; separate flows, like a replay's synthetic ids beside a
/// feed's, do). Nearer ones are out of order, or flows close together (gateways' ranges
/// 2^28 apart): they go to the bitmaps.
const FAR: u64 = 1 << 32;

/// The used ids of one increasing flow: ascending, disjoint, non-adjacent ranges in chunks.
#[derive(Clone, Debug)]
struct Run {
    chunks: Vec<Vec<(u64, u64)>>,
    /// Its first id (its first range never changes) and its last: kept beside the chunks,
    /// so that finding a flow's run reads one line per run.
    first: u64,
    end: u64,
}

impl Run {
    fn new(lo: u64, hi: u64, spare: &mut Vec<Vec<(u64, u64)>>) -> Self {
        let mut c = spare.pop().unwrap_or_else(|| Vec::with_capacity(4));
        c.push((lo, hi));
        Run {
            chunks: vec![c],
            first: lo,
            end: hi,
        }
    }

    #[inline]
    fn first(&self) -> u64 {
        self.first
    }

    #[inline]
    fn end(&self) -> u64 {
        self.end
    }

    /// Appends `[lo, hi]` (all past the run's end), merging when adjacent.
    #[inline]
    fn push(&mut self, lo: u64, hi: u64, spare: &mut Vec<Vec<(u64, u64)>>) {
        let adjacent = self.end.checked_add(1) == Some(lo);
        self.end = hi;
        // A run always holds a chunk, and its chunks a range each.
        let Some(ch) = self.chunks.last_mut() else {
            return;
        };
        if adjacent {
            if let Some(last) = ch.last_mut() {
                last.1 = hi;
            }
        } else if ch.len() < CHUNK {
            // The first chunk grows by doubling up to a full chunk (a run of few ranges
            // stays small).
            ch.push((lo, hi));
        } else {
            // Later chunks are full size, from the reserve when there is one.
            let mut c = spare.pop().unwrap_or_else(|| Vec::with_capacity(CHUNK));
            c.push((lo, hi));
            self.chunks.push(c);
        }
    }

    /// Extends the last range to `hi` (the ids after the run's end, adjacent to it).
    #[inline]
    fn extend_last(&mut self, hi: u64) {
        self.end = hi;
        if let Some(last) = self.chunks.last_mut().and_then(|c| c.last_mut()) {
            last.1 = hi;
        }
    }

    fn contains(&self, id: u64) -> bool {
        let c = self.chunks.partition_point(|ch| ch[0].0 <= id);
        if c == 0 {
            return false;
        }
        let ch = &self.chunks[c - 1];
        let k = ch.partition_point(|&(lo, _)| lo <= id);
        k > 0 && id <= ch[k - 1].1
    }

    fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.chunks.iter().flatten().copied()
    }

    fn len(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum()
    }
}

/// A range this long (or crossing a block) is kept as a range, never in a bitmap.
const LONG: u64 = 1 << 16;

/// Out-of-order used ids, by 2^32-id block: a block that holds more than one of them keeps
/// them in a compressed bitmap (`roaring`: an array of 16-bit halves while a 65,536-id
/// chunk of it is sparse, 2 bytes per id; a plain bitmap once dense, a bit per id; a list
/// of runs where full), so a flow whose ids come in any order — a shuffled permutation,
/// gateways' interleaved counters — costs at most 2 bytes per id and a few probes per
/// lookup. A lone id in its block (uniformly random 64-bit ids: every one is alone) and a
/// long range from a state stay in an ordered map of ranges (16 bytes each), which a
/// bitmap per block would multiply.
#[derive(Clone, Debug)]
struct Scattered {
    /// Bitmaps by block (`id >> 32`), of the ids' low 32 bits.
    dense: BTreeMap<u32, u32>,
    /// The bitmaps, by the index `dense` gives (never moved but by the Vec's growth).
    bitmaps: Vec<RoaringBitmap>,
    /// The block and index of the bitmap last created or written: most ids out of order
    /// fall in one block, found without the map.
    last: (u32, u32),
    /// Everything else.
    sparse: RangeSet,
    /// The lowest and highest id in `sparse` (a new id outside them skips its search: the
    /// few out-of-order ids of a real feed lie far below the flow).
    sparse_span: (u64, u64),
    /// Ids in `dense`.
    dense_len: usize,
    /// The lowest and highest id in `dense` (empty: `(1, 0)`), for the same reason.
    dense_span: (u64, u64),
    /// The lowest and highest id of both (empty: `(1, 0)`): checked inline by
    /// [`UsedIds::contains`] before the search (out of line) is called.
    span: (u64, u64),
}

impl Default for Scattered {
    fn default() -> Self {
        Scattered {
            dense: BTreeMap::new(),
            bitmaps: Vec::new(),
            last: (0, 0),
            sparse: RangeSet::default(),
            sparse_span: (0, 0),
            dense_len: 0,
            dense_span: (1, 0),
            span: (1, 0),
        }
    }
}

impl Scattered {
    #[inline]
    fn is_empty(&self) -> bool {
        self.dense.is_empty() && self.sparse.is_empty()
    }

    /// Out of line: the lookup of ids in order stays small enough to inline.
    #[inline(never)]
    fn contains(&self, id: u64) -> bool {
        if (self.dense_span.0..=self.dense_span.1).contains(&id) {
            if let Some(i) = self.bitmap_of((id >> 32) as u32) {
                if self.bitmaps[i].contains(id as u32) {
                    return true;
                }
            }
        }
        !self.sparse.is_empty()
            && (self.sparse_span.0..=self.sparse_span.1).contains(&id)
            && self.sparse.contains(id)
    }

    /// The index of `block`'s bitmap, if it has one.
    #[inline]
    fn bitmap_of(&self, block: u32) -> Option<usize> {
        if self.last.0 == block && !self.bitmaps.is_empty() {
            return Some(self.last.1 as usize);
        }
        self.dense.get(&block).map(|&i| i as usize)
    }

    /// Whether `id` may be held (inside the span of every id held).
    #[inline]
    fn may_hold(&self, id: u64) -> bool {
        (self.span.0..=self.span.1).contains(&id)
    }

    fn insert(&mut self, lo: u64, hi: u64) {
        self.span = if self.span.0 > self.span.1 {
            (lo, hi)
        } else {
            (self.span.0.min(lo), self.span.1.max(hi))
        };
        let block = (lo >> 32) as u32;
        if hi >> 32 == lo >> 32 && hi - lo < LONG {
            let (l, h) = (lo as u32, hi as u32);
            let widen = |span: (u64, u64)| {
                if span.0 > span.1 {
                    (lo, hi)
                } else {
                    (span.0.min(lo), span.1.max(hi))
                }
            };
            if let Some(i) = self.bitmap_of(block) {
                self.last = (block, i as u32);
                let b = &mut self.bitmaps[i];
                self.dense_len += if l == h {
                    b.insert(l) as usize
                } else {
                    b.insert_range(l..=h) as usize
                };
                self.dense_span = widen(self.dense_span);
                return;
            }
            // A second scattered id in its block: the block gets a bitmap (what the map
            // holds for it stays there; a lookup reads both).
            let base = (block as u64) << 32;
            let neighbour = if lo == hi {
                // A lone id (the per-command case): its neighbours in the map answer both
                // questions, and insert it when it stays there.
                match self.sparse.insert_one(lo, base, base | u32::MAX as u64) {
                    Some(near) => near,
                    None => {
                        self.widen_sparse(lo, hi);
                        return;
                    }
                }
            } else {
                self.sparse.intersects(base, base | u32::MAX as u64)
            };
            if neighbour {
                let mut b = RoaringBitmap::new();
                self.dense_len += b.insert_range(l..=h) as usize;
                let i = self.bitmaps.len() as u32;
                self.bitmaps.push(b);
                self.dense.insert(block, i);
                self.last = (block, i);
                self.dense_span = widen(self.dense_span);
                return;
            }
        }
        self.widen_sparse(lo, hi);
        self.sparse.insert(lo, hi);
    }

    /// Takes `[lo, hi]` into the span of `sparse` (before it goes in).
    fn widen_sparse(&mut self, lo: u64, hi: u64) {
        self.sparse_span = if self.sparse.is_empty() {
            (lo, hi)
        } else {
            (self.sparse_span.0.min(lo), self.sparse_span.1.max(hi))
        };
    }

    /// Appends every id as ranges (unsorted between the two parts).
    fn ranges_into(&self, all: &mut Vec<(u64, u64)>) {
        all.extend(self.sparse.iter());
        for (&block, &i) in &self.dense {
            let b = &self.bitmaps[i as usize];
            let base = (block as u64) << 32;
            let mut v: Vec<(u64, u64)> = Vec::new();
            for low in b {
                let id = base | low as u64;
                push_range(&mut v, id, id);
            }
            all.extend(v);
        }
    }

    fn len(&self) -> usize {
        self.sparse.len() + self.dense_len
    }
}

/// Every used id. See the module docs.
#[derive(Clone, Debug, Default)]
pub(crate) struct UsedIds {
    /// By first id; their spans (first id to end) are disjoint and ascending.
    runs: Vec<Run>,
    /// Ids that fell inside a run's span (out of order) or below every run once
    /// [`MAX_RUNS`] runs exist.
    other: Scattered,
    /// Empty chunks reserved up front ([`UsedIds::reserve`]), taken before allocating.
    spare: Vec<Vec<(u64, u64)>>,
    /// `run_of` of the last id added (0: none yet): most ids come from the flow the last
    /// one came from, and it is checked first.
    hint: usize,
}

impl UsedIds {
    /// Room for `ranges` more ranges (gaps between used ids) before anything allocates.
    pub fn reserve(&mut self, ranges: usize) {
        let chunks = ranges.div_ceil(CHUNK) + 1;
        while self.spare.len() < chunks {
            self.spare.push(Vec::with_capacity(CHUNK));
        }
        for r in &mut self.runs {
            r.chunks.reserve(chunks);
        }
        self.runs.reserve(MAX_RUNS);
    }

    /// The number of runs whose first id is at or below `id`.
    #[inline]
    fn run_of(&self, id: u64) -> usize {
        let h = self.hint;
        if h > 0
            && self.runs.get(h - 1).is_some_and(|r| r.first() <= id)
            && self.runs.get(h).is_none_or(|r| r.first() > id)
        {
            return h;
        }
        // Few runs: a linear scan of their heads beats a binary search.
        self.runs.iter().take_while(|r| r.first() <= id).count()
    }

    #[inline]
    pub fn contains(&self, id: u64) -> bool {
        let k = self.run_of(id);
        if k > 0 {
            let r = &self.runs[k - 1];
            if id <= r.end() && r.contains(id) {
                return true;
            }
        }
        self.other.may_hold(id) && self.other.contains(id)
    }

    /// Records `[lo, hi]` as used.
    #[inline(always)]
    pub fn add(&mut self, lo: u64, hi: u64) {
        // Most ids are the next one of the flow the last id came from: its run grows by
        // its last range, and nothing else is looked at.
        let h = self.hint;
        if h > 0 && self.runs.get(h).is_none_or(|n| hi < n.first()) {
            if let Some(r) = self.runs.get_mut(h - 1) {
                if r.end.checked_add(1) == Some(lo) {
                    r.extend_last(hi);
                    return;
                }
            }
        }
        self.add_slow(lo, hi)
    }

    fn add_slow(&mut self, lo: u64, hi: u64) {
        let k = self.run_of(lo);
        if k == 0 {
            // Below every run: a new flow (or the first id of all).
            match self.runs.first() {
                // Near the first run's start, or overlapping it: an out-of-order id of that
                // flow (a shuffled flow's ids would each start a run and fill the heads).
                Some(r) if hi.saturating_add(FAR) >= r.first() => self.add_other(lo, hi),
                _ if self.runs.len() < MAX_RUNS => {
                    let mut r = Run::new(lo, hi, &mut self.spare);
                    r.chunks.reserve(self.spare.len());
                    self.runs.insert(0, r);
                    self.hint = 1;
                }
                _ => self.add_other(lo, hi),
            }
            return;
        }
        let next = self.runs.get(k).map(Run::first);
        let room = self.runs.len() < MAX_RUNS;
        let r = &mut self.runs[k - 1];
        if lo > r.end() && lo - r.end() > FAR && room {
            // Far past its run: another flow (a second gateway's range, a replay's
            // synthetic ids), loaded from a state or starting now: a run of its own, so that
            // ids still coming in below it append instead of landing inside a span.
            let run = Run::new(lo, hi, &mut self.spare);
            self.runs.insert(k, run);
            self.hint = k + 1;
        } else if lo > r.end() && next.is_none_or(|n| hi < n) {
            // Past the end of its flow, before the next flow: the common case.
            r.push(lo, hi, &mut self.spare);
            self.hint = k;
        } else {
            // Inside the run's span (out of order), or reaching into the next run. (An id
            // the run holds already would only be held twice: callers add new ids.)
            self.add_other(lo, hi);
        }
    }

    fn add_other(&mut self, lo: u64, hi: u64) {
        self.other.insert(lo, hi);
    }

    /// Every used id as ascending disjoint inclusive ranges.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        let mut all: Vec<(u64, u64)> = self.runs.iter().flat_map(Run::ranges).collect();
        if !self.other.is_empty() {
            self.other.ranges_into(&mut all);
            all.sort_unstable();
        }
        let mut v: Vec<(u64, u64)> = Vec::with_capacity(all.len());
        for (lo, hi) in all {
            push_range(&mut v, lo, hi);
        }
        v
    }

    /// Ranges held, and ids in bitmaps.
    pub fn len(&self) -> usize {
        self.runs.iter().map(Run::len).sum::<usize>() + self.other.len()
    }
}

/// Appends `[lo, hi]` to ascending ranges, merging with the last when adjacent or
/// overlapping.
fn push_range(v: &mut Vec<(u64, u64)>, lo: u64, hi: u64) {
    if let Some(last) = v.last_mut() {
        if last.1.saturating_add(1) >= lo {
            last.1 = last.1.max(hi);
            return;
        }
    }
    v.push((lo, hi));
}

/// The id index. See the module docs.
#[derive(Clone, Debug)]
pub(crate) struct IdIndex {
    live: IdTable,
    used: UsedIds,
    /// False for replicas that need no dead ids (market data): a dead id is forgotten.
    track_used: bool,
    /// Loading a state: its used ranges are in already, so a live id is only checked
    /// against them (not appended out of order).
    loading: bool,
}

impl Default for IdIndex {
    fn default() -> Self {
        IdIndex::new(true)
    }
}

impl IdIndex {
    pub fn new(track_used: bool) -> Self {
        IdIndex {
            live: IdTable::default(),
            used: UsedIds::default(),
            track_used,
            loading: false,
        }
    }

    /// Records dead ids from now on (live ids are recorded as used at once).
    pub fn track_used(&mut self) {
        if !self.track_used {
            self.track_used = true;
            let live: Vec<u64> = self.live.iter().map(|(id, _)| id).collect();
            for id in live {
                self.used.add_other(id, id);
            }
        }
    }

    /// Room for `gaps` gaps between used ids (16 bytes each) before their ranges allocate.
    /// The live table is not presized: it follows the live orders (`table.rs`).
    pub fn reserve(&mut self, gaps: usize) {
        if self.track_used {
            self.used.reserve(gaps);
        }
    }

    /// Room in the live table for `n` more live ids (a known live set about to go in).
    pub fn reserve_live(&mut self, n: usize) {
        self.live.reserve(n);
    }

    /// The number of live ids.
    #[inline]
    pub fn live(&self) -> usize {
        self.live.len()
    }

    #[inline]
    pub fn get(&self, id: u64) -> IdState {
        match self.live.get(id) {
            Some(i) => IdState::Live(i),
            None if self.track_used && self.used.contains(id) => IdState::Dead,
            None => IdState::Unknown,
        }
    }

    /// True when `id` is live or was used: a new order may not take it. Every live id is
    /// also recorded as used, so while used ids are tracked the used-id record answers
    /// alone, and a new id (the next of its flow) costs no lookup in the live table, a
    /// cache line anywhere in it.
    #[inline(always)]
    pub fn known(&self, id: u64) -> bool {
        if self.track_used {
            debug_assert!(self.used.contains(id) || self.live.get(id).is_none());
            self.used.contains(id)
        } else {
            self.live.get(id).is_some()
        }
    }

    /// Records `id` as live at pool index `idx`.
    #[inline]
    pub fn set_live(&mut self, id: u64, idx: u32) {
        let old = self.live.insert(id, idx);
        // While loading a state its ranges should hold its live ids already; a state built
        // by hand may not, and an id must never become reusable.
        if old.is_none() && self.track_used && (!self.loading || !self.used.contains(id)) {
            self.used.add(id, id);
        }
    }

    /// Records `id` as used and not resting.
    #[inline]
    pub fn set_dead(&mut self, id: u64) {
        // A live id was recorded as used when it went live.
        if self.live.remove(id).is_none() && self.track_used {
            self.used.add(id, id);
        }
    }

    /// Records `id`, which is not live, as used: an accepted order that never rested.
    /// Nothing is looked up in the live table (a miss there cost about 60 instructions).
    #[inline(always)]
    pub fn set_used(&mut self, id: u64) {
        debug_assert!(self.live.get(id).is_none(), "{id} is live");
        if self.track_used {
            self.used.add(id, id);
        }
    }

    /// Marks every id of `[lo, hi]` used (recovery, ranges ascending).
    pub fn load_used(&mut self, lo: u64, hi: u64) {
        if self.track_used {
            self.used.add(lo, hi);
        }
    }

    /// While loading a state, live ids are in its used ranges already.
    pub fn set_loading(&mut self, on: bool) {
        self.loading = on;
    }

    /// Every id used (live or dead) as ascending disjoint inclusive ranges.
    pub fn used_ranges(&self) -> Vec<(u64, u64)> {
        self.used.ranges()
    }

    /// Ranges held for used ids (memory beyond the live table: 16 bytes each).
    pub fn used_entries(&self) -> usize {
        self.used.len()
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

    /// The next id of the last flow grows its run, up to the first id of the flow above it
    /// and up to the last id there is; the ids around stay unused.
    #[test]
    fn next_ids_grow_their_run_up_to_the_next_flow() {
        let mut u = UsedIds::default();
        let hi_flow = 10 + FAR * 2;
        u.add(10, 10);
        u.add(hi_flow, hi_flow);
        // The upper flow is last; ids under it come from the lower flow.
        u.add(11, 11);
        u.add(12, 12);
        assert_eq!(u.runs.len(), 2);
        // Up to the id right under the upper flow, then that one is used already.
        u.add(13, hi_flow - 2);
        u.add(hi_flow - 1, hi_flow - 1);
        assert_eq!(u.ranges(), vec![(10, hi_flow)]);
        u.add(u64::MAX - 1, u64::MAX - 1);
        u.add(u64::MAX, u64::MAX);
        assert!(u.contains(u64::MAX) && u.contains(u64::MAX - 1));
        assert!(!u.contains(u64::MAX - 2) && !u.contains(9) && !u.contains(hi_flow + 1));
        assert_eq!(u.ranges(), vec![(10, hi_flow), (u64::MAX - 1, u64::MAX)]);
    }

    /// A counter with a gap every 1000 ids, 4 orders live at any time: after 1M ids the
    /// index holds one range per gap and nothing per dead id.
    #[test]
    fn counter_ids_cost_the_gaps_not_the_history() {
        let mut ix = IdIndex::new(true);
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
        assert!(ix.used_entries() <= 1001, "{}", ix.used_entries());
        assert_eq!(ix.get(1), IdState::Dead);
        assert_eq!(ix.get(1000), IdState::Unknown, "the first gap");
        assert_eq!(ix.get(id - 1), IdState::Live(999_999));
        assert_eq!(ix.get(id), IdState::Unknown);
    }

    /// Two interleaved flows (LOBSTER's real ids and a replay's synthetic ids at 2^62) are
    /// two runs: both append, the synthetic counter is one range, and ids between or below
    /// them are unknown.
    #[test]
    fn interleaved_flows_are_runs_of_their_own() {
        let mut ix = IdIndex::new(true);
        let (mut real, mut syn) = (16_000_000u64, 1u64 << 62);
        for k in 0..10 {
            ix.set_live(syn + k, k as u32);
        }
        syn += 10;
        for n in 0..30_000u32 {
            assert_eq!(ix.get(real), IdState::Unknown);
            ix.set_live(real, 100 + n);
            if n >= 300 {
                ix.set_dead(real - 300 * 5_000);
            }
            real += 5_000;
            if n % 3 == 0 {
                assert_eq!(ix.get(syn), IdState::Unknown);
                ix.set_dead(syn); // an IOC that never rested
                syn += 1;
            }
        }
        assert_eq!(ix.used.runs.len(), 2);
        assert_eq!(ix.used.other.len(), 0);
        assert_eq!(ix.used_entries(), 30_000 + 1);
        assert_eq!(ix.get(16_000_000), IdState::Dead);
        assert_eq!(ix.get(16_000_001), IdState::Unknown);
        assert_eq!(ix.get(15_999_999), IdState::Unknown);
        assert_eq!(ix.get(1 << 62), IdState::Live(0));
        assert_eq!(ix.get(syn - 1), IdState::Dead);
        assert_eq!(ix.get(syn), IdState::Unknown);
        assert_eq!(ix.live(), 300 + 10);
    }

    #[test]
    fn out_of_order_and_far_ids_are_exact() {
        let mut ix = IdIndex::new(true);
        ix.set_live(10, 1);
        ix.set_dead(11);
        for k in 0..40u64 {
            ix.set_dead(1_000_000 + k);
        }
        ix.set_dead(5);
        ix.set_dead(500);
        assert_eq!(ix.get(10), IdState::Live(1));
        assert_eq!(ix.get(11), IdState::Dead);
        assert_eq!(ix.get(12), IdState::Unknown);
        assert_eq!(ix.get(5), IdState::Dead);
        assert_eq!(ix.get(500), IdState::Dead);
        for k in 0..40u64 {
            assert_eq!(ix.get(1_000_000 + k), IdState::Dead);
        }
        assert_eq!(ix.get(1_000_040), IdState::Unknown);
        assert_eq!(
            ix.used_ranges(),
            vec![(5, 5), (10, 11), (500, 500), (1_000_000, 1_000_039)],
        );
    }

    /// Loading a state: live ids inside its ranges add nothing; a live id its ranges miss
    /// (a hand-built state) is still recorded, so it stays refused once it dies.
    #[test]
    fn loaded_live_ids_stay_used() {
        let mut ix = IdIndex::new(true);
        ix.load_used(1, 3);
        ix.set_loading(true);
        ix.set_live(2, 0);
        ix.set_live(10, 1);
        ix.set_loading(false);
        assert_eq!(ix.used_ranges(), vec![(1, 3), (10, 10)]);
        ix.set_dead(2);
        ix.set_dead(10);
        assert_eq!(
            (ix.get(2), ix.get(10), ix.get(4)),
            (IdState::Dead, IdState::Dead, IdState::Unknown)
        );
    }

    /// Two flows loaded from a state's ranges (real ids, then synthetic ids at 2^62) are two
    /// runs, so that the real flow appends after recovery instead of landing inside one
    /// span.
    #[test]
    fn loaded_flows_far_apart_are_runs_of_their_own() {
        let mut ix = IdIndex::new(true);
        let syn = 1u64 << 62;
        for (lo, hi) in [(100, 100), (5_000, 5_000), (syn, syn + 9)] {
            ix.load_used(lo, hi);
        }
        assert_eq!(ix.used.runs.len(), 2);
        for k in 0..100u64 {
            ix.set_live(10_000 + k * 7, k as u32);
            ix.set_dead(syn + 10 + k);
        }
        assert_eq!(ix.used.runs.len(), 2);
        assert!(ix.used.other.is_empty(), "both flows appended");
        assert_eq!(ix.get(5_000), IdState::Dead);
        assert_eq!(ix.get(syn + 109), IdState::Dead);
        assert_eq!(ix.get(syn + 110), IdState::Unknown);
    }

    /// A run longer than a chunk is searched across chunks.
    #[test]
    fn long_runs_span_chunks() {
        let mut ix = IdIndex::new(true);
        for k in 0..5 * CHUNK as u64 {
            ix.set_dead(3 * k);
        }
        assert!(ix.used.runs[0].chunks.len() >= 5);
        for k in 0..5 * CHUNK as u64 {
            assert_eq!(ix.get(3 * k), IdState::Dead);
            assert_eq!(ix.get(3 * k + 1), IdState::Unknown);
        }
    }

    /// A shuffled permutation of 200,000 ids across a 2^32 block's edge: both blocks get
    /// bitmaps, every id is refused, its neighbours are not, and the ranges come back as
    /// one. Lone ids either side of the edge merge in the map.
    #[test]
    fn shuffled_ids_across_a_block_edge_are_exact() {
        let base = (1u64 << 32) - 100_000;
        let mut ids: Vec<u64> = (base..base + 200_000).collect();
        let mut rng = crate::workload::SplitMix64::new(3);
        for i in (1..ids.len()).rev() {
            ids.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut ix = IdIndex::new(true);
        for (n, &id) in ids.iter().enumerate() {
            assert_eq!(ix.get(id), IdState::Unknown);
            if n % 2 == 0 {
                ix.set_dead(id);
            } else {
                ix.set_live(id, n as u32);
                ix.set_dead(id);
            }
        }
        assert_eq!(ix.used.other.dense.len(), 2, "a bitmap per block");
        for &id in &ids {
            assert_eq!(ix.get(id), IdState::Dead);
        }
        assert_eq!(ix.get(base - 1), IdState::Unknown);
        assert_eq!(ix.get(base + 200_000), IdState::Unknown);
        assert_eq!(ix.used_ranges(), vec![(base, base + 199_999)]);

        let mut r = RangeSet::default();
        let edge = 1u64 << 32;
        assert_eq!(r.insert_one(edge - 1, 0, edge - 1), None);
        assert_eq!(
            r.insert_one(edge, edge, 2 * edge - 1),
            None,
            "alone in its block"
        );
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![(edge - 1, edge)]);
        assert_eq!(r.insert_one(edge + 5, edge, 2 * edge - 1), Some(true));
        assert_eq!(r.insert_one(edge, edge, 2 * edge - 1), None, "held already");
        assert_eq!(r.len(), 1);
    }

    fn op() -> impl Strategy<Value = (u8, u64)> {
        prop_oneof![
            (0u8..3, 0u64..300),
            (0u8..3, 0u64..5000),
            (0u8..3, any::<u64>()),
        ]
    }

    proptest! {
        /// Any sequence of sets agrees with a plain map of every id ever used: counters with
        /// gaps, several interleaved flows, ids below and between flows, any 64-bit id.
        #[test]
        fn agrees_with_a_map_of_every_id(ops in prop::collection::vec(op(), 1..2000), flows in 1usize..20) {
            let mut ix = IdIndex::new(true);
            // A live-only index (market data) fed the same: it knows the live ids and
            // keeps nothing for dead ones.
            let mut lv = IdIndex::new(false);
            let mut model: HashMap<u64, Option<u32>> = HashMap::new();
            let mut counters: Vec<u64> = (0..flows as u64).map(|f| f * 1_000_000 + (f % 3) * 7).collect();
            for (n, (kind, x)) in ops.into_iter().enumerate() {
                // Mostly counters with gaps, sometimes anything.
                let id = if kind == 0 {
                    let c = &mut counters[x as usize % flows];
                    *c += 1 + x % 3;
                    *c
                } else { x };
                match model.get(&id).copied() {
                    None => { ix.set_live(id, n as u32); lv.set_live(id, n as u32); model.insert(id, Some(n as u32)); }
                    Some(Some(_)) => { ix.set_dead(id); lv.set_dead(id); model.insert(id, None); }
                    Some(None) => {}
                }
                let live = model.values().filter(|v| v.is_some()).count();
                prop_assert_eq!(ix.live(), live);
                prop_assert_eq!(lv.live(), live);
                prop_assert_eq!(lv.used_entries(), 0);
            }
            for (&id, &v) in &model {
                let want = match v { Some(i) => IdState::Live(i), None => IdState::Dead };
                prop_assert_eq!(ix.get(id), want);
                let want_lv = match v { Some(i) => IdState::Live(i), None => IdState::Unknown };
                prop_assert_eq!(lv.get(id), want_lv);
                prop_assert_eq!(ix.get(id.wrapping_add(1)) == IdState::Unknown, !model.contains_key(&id.wrapping_add(1)));
                // `known` (a new order's duplicate check) agrees with `get`, in both kinds.
                for probe in [id, id.wrapping_add(1), id.wrapping_sub(1)] {
                    prop_assert_eq!(ix.known(probe), ix.get(probe) != IdState::Unknown);
                    prop_assert_eq!(lv.known(probe), lv.get(probe) != IdState::Unknown);
                }
            }
            let mut ids: Vec<u64> = model.keys().copied().collect();
            ids.sort_unstable();
            let mut want = Vec::new();
            for id in ids { push_range(&mut want, id, id); }
            prop_assert_eq!(ix.used_ranges(), want);
            // Reloaded from its ranges, every used id is still refused.
            let mut back = IdIndex::new(true);
            for (lo, hi) in ix.used_ranges() { back.load_used(lo, hi); }
            for &id in model.keys() {
                prop_assert_eq!(back.get(id), IdState::Dead);
            }
        }
    }
}
