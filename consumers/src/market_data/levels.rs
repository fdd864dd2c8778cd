//! [`Levels`]: the L2 books market data publishes, kept from the events alone.
//!
//! Every event that changes a book names the side, price and quantity it changes (a fill
//! the maker's price, a cancel or expiry the order's side and price, a modify the old price
//! and quantity as well as the new), so a price level's total follows from the events
//! without an order map: memory follows the price levels, not the orders.

use ringex_engine::state::EngineState;
use ringex_engine::{
    Event, EventKind, InstrumentId, OrderId, OrderTerms, OrderType, Price, Qty, Side,
};
use std::collections::HashMap;

use super::{ByInstrument, Level};
use std::collections::BTreeMap;

/// Levels a side keeps in a sorted vector before it takes a window: a small book is a few
/// cache lines.
const SMALL: usize = 32;
/// Smallest window of direct-indexed price slots.
const MIN_WINDOW: usize = 64;
/// Largest window: 64 words of occupancy bits, so one summary word covers them (smaller
/// in tests, so that random books reach the map and the re-centring).
const MAX_WINDOW: usize = if cfg!(test) { 256 } else { 4096 };

/// One side of a book, by price key (the price for bids, `!price` for asks: larger is
/// better, and defined for every `i64`). Up to 32 levels sit in a sorted vector, the best
/// last. Past that, levels near the top sit in a window of
/// direct-indexed slots with a two-level occupancy bitmap (a change is one index; the next
/// level down is a `lzcnt` on a word, the next word a `lzcnt` on the summary); levels
/// outside the window in an ordered map. The window starts at 64 slots, grows to cover the
/// book up to 4096, and re-centres on the best level when the flow has moved away from it.
#[derive(Clone, Debug, Default)]
struct Ladder {
    /// The levels while there are few, ascending (the best last); empty once the window
    /// is in use.
    small: Vec<(i64, u128)>,
    /// Key of slot 0.
    base: i64,
    /// Total lots per slot (0: no level); empty until the first level.
    slots: Vec<u128>,
    /// Bit `s % 64` of word `s / 64`: slot `s` holds a level.
    bits: Vec<u64>,
    /// Bit `w`: word `w` of `bits` is not 0.
    summary: u64,
    /// Levels in the window.
    count: usize,
    /// Levels outside the window.
    far: BTreeMap<i64, u128>,
    /// Levels put in `far` since the window last moved.
    misses: usize,
}

impl Ladder {
    #[inline]
    fn slot(&self, key: i64) -> Option<usize> {
        // Below the base the difference wraps past any window length.
        let d = key.wrapping_sub(self.base) as u64;
        (d < self.slots.len() as u64).then_some(d as usize)
    }

    /// Where `key` is or would go in the small vector.
    #[inline]
    fn find_small(&self, key: i64) -> Result<usize, usize> {
        // Most changes are at or near the best level: look at the top few before searching.
        let n = self.small.len();
        let near = n.saturating_sub(4);
        for i in (near..n).rev() {
            let k = self.small[i].0;
            if k == key {
                return Ok(i);
            }
            if k < key {
                return Err(i + 1);
            }
        }
        self.small[..near].binary_search_by_key(&key, |l| l.0)
    }

    #[inline]
    fn add(&mut self, key: i64, qty: u128) {
        if qty == 0 {
            return;
        }
        if self.slots.is_empty() {
            match self.find_small(key) {
                Ok(i) => self.small[i].1 += qty,
                Err(i) if self.small.len() < SMALL => self.small.insert(i, (key, qty)),
                Err(_) => {
                    self.widen(key);
                    self.add(key, qty);
                }
            }
            return;
        }
        if let Some(s) = self.slot(key).or_else(|| self.place(key)) {
            let t = &mut self.slots[s];
            if *t == 0 {
                self.bits[s >> 6] |= 1 << (s & 63);
                self.summary |= 1 << (s >> 6);
                self.count += 1;
            }
            *t += qty;
        } else {
            *self.far.entry(key).or_default() += qty;
            self.misses += 1;
        }
    }

    #[inline]
    fn sub(&mut self, key: i64, qty: u128) {
        if self.slots.is_empty() {
            if let Ok(i) = self.find_small(key) {
                let t = &mut self.small[i].1;
                *t = t.saturating_sub(qty);
                if *t == 0 {
                    self.small.remove(i);
                }
            }
            return;
        }
        if let Some(s) = self.slot(key) {
            let t = &mut self.slots[s];
            if *t == 0 {
                return;
            }
            *t = t.saturating_sub(qty);
            if *t == 0 {
                let w = &mut self.bits[s >> 6];
                *w &= !(1 << (s & 63));
                if *w == 0 {
                    self.summary &= !(1 << (s >> 6));
                }
                self.count -= 1;
            }
        } else if let Some(t) = self.far.get_mut(&key) {
            *t = t.saturating_sub(qty);
            if *t == 0 {
                self.far.remove(&key);
            }
        }
    }

    /// The window's levels, best first.
    fn window(&self) -> Down<'_> {
        Down {
            l: self,
            summary: self.summary,
            word: 0,
            bits: 0,
        }
    }

    /// The small vector is full: a window covering its levels and `key` (those that do not
    /// fit in the largest window go to the map).
    #[cold]
    fn widen(&mut self, key: i64) {
        let lo = self.small.first().map_or(key, |l| l.0.min(key));
        let hi = self.small.last().map_or(key, |l| l.0.max(key));
        let span = (hi as i128 - lo as i128 + 1) as u128;
        let w = (span.saturating_mul(2).min(MAX_WINDOW as u128) as usize)
            .next_power_of_two()
            .clamp(MIN_WINDOW, MAX_WINDOW);
        // The top of the book matters most: when the levels are wider than the window,
        // it holds the best of them.
        let base = match span <= w as u128 {
            true => lo as i128 + span as i128 / 2 - w as i128 / 2,
            false => hi as i128 - (w as i128 * 3 / 4),
        };
        self.rebuild(base, w);
    }

    /// A key outside the window: moves or grows the window to hold it when that is cheap
    /// or overdue; its slot when it does.
    #[cold]
    fn place(&mut self, key: i64) -> Option<usize> {
        let width = self.slots.len();
        let (lo, hi) = match (self.window().last(), self.window().next()) {
            (Some((lo, _)), Some((hi, _))) => (lo.min(key), hi.max(key)),
            _ => (key, key),
        };
        let span = hi as i128 - lo as i128 + 1;
        if self.count == 0 || (1..=(MAX_WINDOW / 2) as i128).contains(&span) {
            // Empty, or the window's levels and this key fit in half the largest window:
            // a window twice their span, centred on them (at least as large as now).
            let w = ((span as usize) * 2)
                .next_power_of_two()
                .clamp(MIN_WINDOW, MAX_WINDOW)
                .max(width);
            let mid = lo as i128 + span / 2;
            self.rebuild(mid - w as i128 / 2, w);
        } else if self.misses > width {
            // The flow has moved on: centre the largest window a quarter below the best.
            let best = self
                .far
                .last_key_value()
                .map(|(k, _)| *k)
                .into_iter()
                .chain(self.window().next().map(|(k, _)| k))
                .chain([key])
                .max()
                .unwrap_or(key);
            self.rebuild(best as i128 - (MAX_WINDOW as i128 * 3 / 4), MAX_WINDOW);
        }
        self.slot(key)
    }

    /// Moves the window to `base` with `width` slots: levels that fall outside go to the
    /// map, levels of the map that fall inside come in.
    fn rebuild(&mut self, base: i128, width: usize) {
        let base = base.clamp(i64::MIN as i128, i64::MAX as i128 - width as i128) as i64;
        let mut old: Vec<(i64, u128)> = self.window().collect();
        old.append(&mut self.small);
        self.slots.clear();
        self.slots.resize(width, 0);
        self.bits.clear();
        self.bits.resize(width / 64, 0);
        self.summary = 0;
        self.count = 0;
        self.base = base;
        self.misses = 0;
        let top = base as i128 + width as i128 - 1;
        let inside: Vec<(i64, u128)> = self
            .far
            .range(base..=top as i64)
            .map(|(k, t)| (*k, *t))
            .collect();
        for (k, _) in &inside {
            self.far.remove(k);
        }
        for (k, t) in old.into_iter().chain(inside) {
            match self.slot(k) {
                Some(s) => {
                    self.slots[s] = t;
                    self.bits[s >> 6] |= 1 << (s & 63);
                    self.summary |= 1 << (s >> 6);
                    self.count += 1;
                }
                None => {
                    self.far.insert(k, t);
                }
            }
        }
    }

    /// Appends the best `n` levels to `out` as (price, total), best first, with plain
    /// loops (the conflation's hot path).
    fn top(&self, side: Side, n: usize, out: &mut Vec<Level>) {
        let price = |k: i64| match side {
            Side::Buy => Price(k),
            Side::Sell => Price(!k),
        };
        let end = out.len() + n;
        if self.slots.is_empty() {
            out.extend(self.small.iter().rev().take(n).map(|&(k, t)| (price(k), t)));
            return;
        }
        let top = self.base as i128 + self.slots.len() as i128;
        if !self.far.is_empty() && top <= i64::MAX as i128 {
            for (&k, &t) in self.far.range(top as i64..).rev() {
                if out.len() == end {
                    return;
                }
                out.push((price(k), t));
            }
        }
        let mut summary = self.summary;
        while summary != 0 && out.len() < end {
            let w = 63 - summary.leading_zeros() as usize;
            summary &= !(1 << w);
            let mut bits = self.bits[w];
            while bits != 0 && out.len() < end {
                let b = 63 - bits.leading_zeros() as usize;
                bits &= !(1 << b);
                let s = w * 64 + b;
                out.push((price(self.base.wrapping_add(s as i64)), self.slots[s]));
            }
        }
        if !self.far.is_empty() {
            for (&k, &t) in self.far.range(..self.base).rev() {
                if out.len() == end {
                    return;
                }
                out.push((price(k), t));
            }
        }
    }

    /// (key, total), best first.
    fn best_first(&self) -> impl Iterator<Item = (i64, u128)> + '_ {
        // Most books have nothing outside the window: no map ranges for them.
        let (above, below) = match (self.far.is_empty(), self.slots.len()) {
            (true, _) => (None, None),
            (false, 0) => (None, Some(self.far.range(..))),
            (false, w) => {
                let top = self.base as i128 + w as i128;
                let above = (top <= i64::MAX as i128).then(|| self.far.range(top as i64..));
                (above, Some(self.far.range(..self.base)))
            }
        };
        let above = above.into_iter().flatten().rev();
        let below = below.into_iter().flatten().rev();
        self.small
            .iter()
            .rev()
            .copied()
            .chain(above.map(|(k, t)| (*k, *t)))
            .chain(self.window())
            .chain(below.map(|(k, t)| (*k, *t)))
    }
}

/// The window's levels from the best down: the highest set bit of the highest non-zero
/// word, found with `lzcnt`.
struct Down<'a> {
    l: &'a Ladder,
    summary: u64,
    word: usize,
    bits: u64,
}

impl Iterator for Down<'_> {
    type Item = (i64, u128);

    #[inline]
    fn next(&mut self) -> Option<(i64, u128)> {
        while self.bits == 0 {
            if self.summary == 0 {
                return None;
            }
            let w = 63 - self.summary.leading_zeros() as usize;
            self.summary &= !(1 << w);
            self.word = w;
            self.bits = self.l.bits[w];
        }
        let b = 63 - self.bits.leading_zeros() as usize;
        self.bits &= !(1 << b);
        let s = self.word * 64 + b;
        Some((self.l.base.wrapping_add(s as i64), self.l.slots[s]))
    }
}

#[inline]
fn key(side: Side, price: Price) -> i64 {
    match side {
        Side::Buy => price.0,
        Side::Sell => !price.0,
    }
}

/// One instrument's L2 book.
#[derive(Clone, Debug)]
struct Book {
    bids: Ladder,
    asks: Ladder,
    halted: bool,
    /// Sides whose published top may have changed (bit 0 bids, bit 1 asks).
    changed: u8,
    /// Per side, the key of the last published level when the publisher shows as many as
    /// it can: a change below it cannot alter what it shows. `i64::MIN` otherwise.
    floor: [i64; 2],
}

impl Default for Book {
    fn default() -> Self {
        Book {
            bids: Ladder::default(),
            asks: Ladder::default(),
            halted: false,
            changed: 0,
            floor: [i64::MIN; 2],
        }
    }
}

impl Book {
    #[inline]
    fn side(&mut self, side: Side) -> &mut Ladder {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }
}

/// The order that trades in the current command (the accepted or modified one): it joins
/// its level, with what it has left, when the command ends.
#[derive(Clone, Copy, Debug)]
struct Incoming {
    id: OrderId,
    instrument: InstrumentId,
    side: Side,
    price: Price,
    open: u64,
    rests: bool,
    /// An iceberg's display size (0: not one).
    display: u64,
    /// The peak an iceberg kept through a same-price, smaller modify.
    kept_peak: Option<u64>,
}

/// A resting iceberg: what it shows and what it has.
#[derive(Clone, Copy, Debug)]
struct Berg {
    display: u64,
    peak: u64,
    open: u64,
}

impl Incoming {
    fn new(
        id: OrderId,
        instrument: InstrumentId,
        side: Side,
        price: Price,
        qty: Qty,
        rests: bool,
    ) -> Self {
        Incoming {
            id,
            instrument,
            side,
            price,
            open: qty.0,
            rests,
            display: 0,
            kept_peak: None,
        }
    }
}

/// Every instrument's L2 book, kept from the matcher's events.
pub struct Levels {
    /// Indexed by instrument id (the engine's books are, below `MAX_INSTRUMENTS`).
    books: ByInstrument<Book>,
    incoming: Option<Incoming>,
    /// Instruments with a changed side, in the order they first changed.
    changed: Vec<InstrumentId>,
    /// Resting icebergs (levels count their peaks only).
    bergs: HashMap<OrderId, Berg>,
    /// Pending stops: not in the book until triggered.
    stops: HashMap<OrderId, Incoming>,
    /// The terms announced for the next accepted order.
    terms: Option<OrderTerms>,
}

impl Default for Levels {
    fn default() -> Self {
        Levels {
            books: ByInstrument::new(),
            incoming: None,
            changed: Vec::new(),
            bergs: HashMap::new(),
            stops: HashMap::new(),
            terms: None,
        }
    }
}

impl Levels {
    /// No books.
    pub fn new() -> Self {
        Self::default()
    }

    /// The books of a recovered state.
    pub fn from_state(state: &EngineState) -> Self {
        let mut l = Levels::new();
        for &(i, halted) in &state.instruments {
            if let Some(b) = l.book(i) {
                b.halted = halted;
            }
        }
        let bergs: HashMap<OrderId, (Qty, Qty)> = state
            .icebergs
            .iter()
            .map(|&(id, d, p)| (id, (d, p)))
            .collect();
        for r in &state.orders {
            let o = r.order;
            let shown = match bergs.get(&o.order_id) {
                Some(&(display, peak)) => {
                    let berg = Berg {
                        display: display.0,
                        peak: peak.0.min(o.qty.0),
                        open: o.qty.0,
                    };
                    l.bergs.insert(o.order_id, berg);
                    berg.peak
                }
                None => o.qty.0,
            };
            if let Some(b) = l.book(o.instrument) {
                b.side(o.side).add(key(o.side, o.price), shown as u128);
            }
        }
        for st in &state.stops {
            let o = st.order;
            let rests = o.order_type == OrderType::Limit && o.tif.may_rest();
            let inc = Incoming::new(o.order_id, o.instrument, o.side, o.price, o.qty, rests);
            l.stops.insert(o.order_id, inc);
        }
        l
    }

    /// The arriving order's matching is over: what it has left joins its level (an
    /// iceberg its peak).
    fn flush(&mut self) {
        if let Some(t) = self.incoming.take() {
            if t.rests && t.open > 0 {
                let shown = if t.display > 0 {
                    let peak = t.kept_peak.unwrap_or(t.display).min(t.open);
                    let berg = Berg {
                        display: t.display,
                        peak,
                        open: t.open,
                    };
                    self.bergs.insert(t.id, berg);
                    peak
                } else {
                    t.open
                };
                self.change(t.instrument, t.side, t.price, shown, true);
            }
        }
    }

    #[inline]
    fn book(&mut self, i: InstrumentId) -> Option<&mut Book> {
        self.books.entry(i)
    }

    #[inline]
    fn change(&mut self, i: InstrumentId, side: Side, price: Price, qty: u64, add: bool) {
        let Some(b) = self.book(i) else {
            return;
        };
        let k = key(side, price);
        let l = b.side(side);
        match add {
            true => l.add(k, qty as u128),
            false => l.sub(k, qty as u128),
        }
        if k >= b.floor[side as usize] {
            let first = b.changed == 0;
            b.changed |= 1 << side as u8;
            if first {
                self.changed.push(i);
            }
        }
    }

    /// Takes the instruments whose published top may have changed since the last call,
    /// with the sides (bit 0 bids, bit 1 asks), into `out`.
    pub fn take_changed(&mut self, out: &mut Vec<(InstrumentId, u8)>) {
        for i in self.changed.drain(..) {
            if let Some(b) = self.books.get_mut(i) {
                out.push((i, std::mem::take(&mut b.changed)));
            }
        }
    }

    /// Tells the books the last level published for a side when the publisher shows as
    /// many levels as it can (`None` when it shows fewer): changes below it are not
    /// reported by [`Levels::take_changed`].
    pub fn set_floor(&mut self, i: InstrumentId, side: Side, last: Option<Price>) {
        if let Some(b) = self.books.get_mut(i) {
            b.floor[side as usize] = last.map_or(i64::MIN, |p| key(side, p));
        }
    }

    /// Applies one event. The books equal the matcher's after the last event of every
    /// command.
    #[inline]
    pub fn apply(&mut self, e: &Event) {
        match e.kind {
            EventKind::Accepted {
                order_id,
                instrument,
                side,
                order_type,
                tif,
                price,
                qty,
                ..
            } => {
                self.flush();
                let rests = order_type == OrderType::Limit && tif.may_rest();
                let mut inc = Incoming::new(order_id, instrument, side, price, qty, rests);
                match self.terms.take().filter(|t| t.order_id == order_id) {
                    Some(t) if t.stop.is_some() => {
                        self.stops.insert(order_id, inc);
                    }
                    t => {
                        inc.display = t.map_or(0, |t| t.display.0);
                        self.incoming = Some(inc);
                    }
                }
            }
            EventKind::OrderTerms { terms, .. } => self.terms = Some(terms),
            EventKind::Triggered { order_id, .. } => {
                self.flush();
                self.incoming = self.stops.remove(&order_id);
            }
            EventKind::Fill {
                instrument,
                taker,
                maker,
                price,
                qty,
                taker_side,
                ..
            } => {
                let side = taker_side.opposite();
                self.change(instrument, side, price, qty.0, false);
                if let Some(b) = self.bergs.get_mut(&maker) {
                    b.open -= qty.0.min(b.open);
                    b.peak -= qty.0.min(b.peak);
                    if b.open == 0 {
                        self.bergs.remove(&maker);
                    } else if b.peak == 0 {
                        // A new peak at the back of the level.
                        b.peak = b.display.min(b.open);
                        let peak = b.peak;
                        self.change(instrument, side, price, peak, true);
                    }
                }
                if let Some(t) = &mut self.incoming {
                    if t.id == taker {
                        t.open -= qty.0.min(t.open);
                    }
                }
            }
            EventKind::Cancelled {
                order_id,
                instrument,
                side,
                price,
                qty,
                ..
            }
            | EventKind::Expired {
                order_id,
                instrument,
                side,
                price,
                qty,
                ..
            } => match &mut self.incoming {
                // The incoming order's rest never joined its level.
                Some(t) if t.id == order_id => t.open = 0,
                _ => {
                    if self.stops.remove(&order_id).is_none() {
                        let shown = match self.bergs.remove(&order_id) {
                            Some(b) => b.peak,
                            None => qty.0,
                        };
                        self.change(instrument, side, price, shown, false);
                    }
                }
            },
            EventKind::Modified {
                order_id,
                instrument,
                side,
                price,
                qty,
                old_price,
                old_qty,
                kept_priority,
                ..
            } => {
                self.flush();
                let berg = self.bergs.remove(&order_id);
                let shown = berg.map_or(old_qty.0, |b| b.peak);
                self.change(instrument, side, old_price, shown, false);
                let mut inc = Incoming::new(order_id, instrument, side, price, qty, true);
                if let Some(b) = berg {
                    inc.display = b.display;
                    inc.kept_peak = kept_priority.then_some(b.peak);
                }
                self.incoming = Some(inc);
            }
            EventKind::InstrumentStatus { instrument, halted } => {
                if let Some(b) = self.book(instrument) {
                    b.halted = halted;
                }
            }
            EventKind::InstrumentAdded(def) => {
                self.book(def.id);
            }
            _ => {}
        }
        if e.is_last_of_command() {
            self.flush();
        }
    }

    /// Appends the best `n` levels of one side to `out`, best first: (price, total lots).
    pub fn top(&self, i: InstrumentId, side: Side, n: usize, out: &mut Vec<Level>) {
        if let Some(b) = self.books.get(i) {
            match side {
                Side::Buy => b.bids.top(side, n, out),
                Side::Sell => b.asks.top(side, n, out),
            }
        }
    }

    /// The levels of one side, best first: (price, total lots).
    pub fn depth(&self, i: InstrumentId, side: Side) -> impl Iterator<Item = Level> + '_ {
        let l = self.books.get(i).map(|b| match side {
            Side::Buy => &b.bids,
            Side::Sell => &b.asks,
        });
        l.into_iter().flat_map(move |l| {
            l.best_first().map(move |(k, q)| {
                let p = match side {
                    Side::Buy => k,
                    Side::Sell => !k,
                };
                (Price(p), q)
            })
        })
    }

    /// True when the instrument is halted.
    pub fn is_halted(&self, i: InstrumentId) -> bool {
        self.books.get(i).is_some_and(|b| b.halted)
    }

    /// Instruments with a book, in id order.
    pub fn instruments(&self) -> impl Iterator<Item = InstrumentId> + '_ {
        self.books.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Keys from several shapes: a narrow book, a wide one (window and map), a drifting
    /// one (re-centring), and the ends of `i64`.
    fn key_of(shape: u8, x: i64, step: i64) -> i64 {
        match shape % 5 {
            0 => x % 40,
            1 => x % 9000 - 4500,
            2 => step * 13 + x % 200,
            3 => i64::MAX - (x % 300),
            _ => i64::MIN + (x % 300),
        }
    }

    fn check(l: &Ladder, model: &BTreeMap<i64, u128>) -> Result<(), TestCaseError> {
        let want: Vec<(i64, u128)> = model.iter().rev().map(|(k, t)| (*k, *t)).collect();
        prop_assert_eq!(l.best_first().collect::<Vec<_>>(), want.clone());
        for n in [1, 5, 40] {
            let mut got = Vec::new();
            l.top(Side::Buy, n, &mut got);
            let want: Vec<Level> = want.iter().take(n).map(|&(k, t)| (Price(k), t)).collect();
            prop_assert_eq!(got, want);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The ladder against an ordered map: the same levels, best first, after every
        /// change, through the small vector, the window, the map, growing and re-centring.
        #[test]
        fn ladder_equals_an_ordered_map(
            ops in prop::collection::vec((any::<bool>(), 0u8..5, 0i64..1_000_000, 1u64..100), 1..1500),
            mix in any::<bool>(),
        ) {
            let mut l = Ladder::default();
            let mut model: BTreeMap<i64, u128> = BTreeMap::new();
            for (step, &(add, shape, x, q)) in ops.iter().enumerate() {
                // Either one shape per run or all of them mixed.
                let shape = if mix { shape } else { ops[0].1 };
                let k = key_of(shape, x, step as i64);
                if add {
                    l.add(k, q as u128);
                    *model.entry(k).or_default() += q as u128;
                } else {
                    // Take from a level that exists (or from a missing one: no change).
                    let k = match model.range(..=k).next_back() {
                        Some((&k, _)) if x % 4 != 0 => k,
                        _ => k,
                    };
                    l.sub(k, q as u128);
                    if let Some(t) = model.get_mut(&k) {
                        *t = t.saturating_sub(q as u128);
                        if *t == 0 {
                            model.remove(&k);
                        }
                    }
                }
                check(&l, &model)?;
            }
        }
    }

    #[test]
    fn a_wide_book_takes_a_window_and_keeps_far_levels_in_order() {
        let mut l = Ladder::default();
        for k in 0..100 {
            l.add(k * 100, 1);
        }
        assert!(
            !l.slots.is_empty(),
            "more than {SMALL} levels use the window"
        );
        assert!(
            !l.far.is_empty(),
            "levels 9900 ticks apart do not fit in one window"
        );
        let got: Vec<i64> = l.best_first().map(|(k, _)| k).collect();
        let want: Vec<i64> = (0..100).rev().map(|k| k * 100).collect();
        assert_eq!(got, want);
    }
}
