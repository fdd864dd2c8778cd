//! The market-data publisher: L2 depth, best bid and offer, and a trade tape per instrument,
//! for in-process subscribers, built from the events alone ([`Levels`]: price levels, no
//! order map).
//!
//! - **Incremental feed**: every update carries a per-instrument sequence number. Depth and
//!   BBO are **conflated per ring batch**: at the end of a batch the top `depth` levels of
//!   each instrument touched are compared with what was last published, and one update goes
//!   out per changed level (qty 0: the level is gone). Trades go out as they happen.
//! - **Snapshots**: a subscriber that joins late (or asks) gets a full snapshot tagged with
//!   the sequence it covers, then the incrementals after it, and can detect gaps.
//! - **Slow subscribers** never stall the publisher: each has its own bounded queue; when it
//!   is full the subscriber is marked stale and gets nothing more until there is room again,
//!   when it receives [`MdUpdate::Resync`] and fresh snapshots. A stale subscriber is always
//!   told: updates (trades included) are never dropped silently.

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use ringex_engine::{Consumer, Event, EventKind, InstrumentId, Price, Qty, Sequence, Side};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

mod levels;
pub use levels::Levels;

/// One L2 level: price and total lots.
pub type Level = (Price, u128);

/// Appends the level changes from `old` to `new` (both best first) in best-first order:
/// (side, price, new total; 0 when the level is gone). A merge walk: no allocation.
fn diff_levels(side: Side, old: &[Level], new: &[Level], out: &mut Vec<(Side, Price, u128)>) {
    let better = |a: Price, b: Price| match side {
        Side::Buy => a > b,
        Side::Sell => a < b,
    };
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(&(op, oq)), Some(&(np, nq))) if op == np => {
                if oq != nq {
                    out.push((side, np, nq));
                }
                i += 1;
                j += 1;
            }
            (Some(&(op, _)), Some(&(np, nq))) if better(np, op) => {
                out.push((side, np, nq));
                j += 1;
            }
            (Some(&(op, _)), _) => {
                out.push((side, op, 0));
                i += 1;
            }
            (None, Some(&(np, nq))) => {
                out.push((side, np, nq));
                j += 1;
            }
            (None, None) => break,
        }
    }
}

/// A full picture of one instrument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MdSnapshot {
    /// The instrument.
    pub instrument: InstrumentId,
    /// The last per-instrument sequence this snapshot includes.
    pub seq: u64,
    /// Bids, best first (at most the publisher's depth).
    pub bids: Vec<Level>,
    /// Asks, best first.
    pub asks: Vec<Level>,
    /// Halted?
    pub halted: bool,
}

/// A market-data update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MdUpdate {
    /// A level changed (`qty` 0: removed).
    Level {
        /// Instrument.
        instrument: InstrumentId,
        /// Per-instrument sequence.
        seq: u64,
        /// Side.
        side: Side,
        /// Price.
        price: Price,
        /// Total lots at the price now.
        qty: u128,
    },
    /// The best bid and offer changed.
    Bbo {
        /// Instrument.
        instrument: InstrumentId,
        /// Per-instrument sequence.
        seq: u64,
        /// Best bid.
        bid: Option<Level>,
        /// Best ask.
        ask: Option<Level>,
    },
    /// A trade.
    Trade {
        /// Instrument.
        instrument: InstrumentId,
        /// Per-instrument sequence.
        seq: u64,
        /// Price.
        price: Price,
        /// Lots.
        qty: Qty,
        /// The aggressor's side.
        aggressor: Side,
        /// The output sequence of the fill event.
        event_seq: Sequence,
    },
    /// Halted or resumed.
    Status {
        /// Instrument.
        instrument: InstrumentId,
        /// Per-instrument sequence.
        seq: u64,
        /// Halted?
        halted: bool,
    },
    /// A full snapshot of one instrument.
    Snapshot(MdSnapshot),
    /// You fell behind and updates were dropped: discard your books; snapshots follow.
    Resync,
}

struct SubscriberCell {
    tx: Sender<MdUpdate>,
    stale: AtomicBool,
    wants_snapshot: AtomicBool,
}

/// The subscription side: a bounded queue of updates.
pub struct Subscription {
    /// Updates, in order.
    pub rx: Receiver<MdUpdate>,
    cell: Arc<SubscriberCell>,
}

impl Subscription {
    /// Asks for fresh snapshots of every instrument (sent at the end of the next batch).
    pub fn request_snapshot(&self) {
        self.cell.wants_snapshot.store(true, Ordering::Release);
    }
}

/// Where subscribers sign up; share it with any thread.
#[derive(Clone, Default)]
pub struct MarketDataHub {
    subs: Arc<Mutex<Vec<Arc<SubscriberCell>>>>,
}

impl MarketDataHub {
    /// A new subscriber with a queue of `capacity` updates; it gets snapshots first.
    pub fn subscribe(&self, capacity: usize) -> Subscription {
        let (tx, rx) = bounded(capacity.max(2));
        let cell = Arc::new(SubscriberCell {
            tx,
            stale: AtomicBool::new(false),
            wants_snapshot: AtomicBool::new(true),
        });
        if let Ok(mut s) = self.subs.lock() {
            s.push(Arc::clone(&cell));
        }
        Subscription { rx, cell }
    }
}

/// Per-instrument state indexed by instrument id (ids are small and dense: the engine's
/// books are indexed the same way, below `MAX_INSTRUMENTS`); a tree lookup per update was a
/// large part of the publisher's time on many instruments.
pub(crate) struct ByInstrument<T> {
    slots: Vec<Option<T>>,
    count: usize,
}

impl<T: Default> ByInstrument<T> {
    pub(crate) fn new() -> Self {
        ByInstrument {
            slots: Vec::new(),
            count: 0,
        }
    }

    /// The instrument's entry, made on first use. `None` for an id the engine never has
    /// a book for.
    #[inline]
    pub(crate) fn entry(&mut self, i: InstrumentId) -> Option<&mut T> {
        if i.0 >= ringex_engine::matcher::MAX_INSTRUMENTS {
            return None;
        }
        let k = i.0 as usize;
        if k >= self.slots.len() {
            self.slots.resize_with(k + 1, || None);
        }
        let slot = &mut self.slots[k];
        if slot.is_none() {
            self.count += 1;
        }
        Some(slot.get_or_insert_with(T::default))
    }

    #[inline]
    pub(crate) fn get(&self, i: InstrumentId) -> Option<&T> {
        self.slots.get(i.0 as usize)?.as_ref()
    }

    /// The instrument's entry if it has one (none is made).
    #[inline]
    pub(crate) fn get_mut(&mut self, i: InstrumentId) -> Option<&mut T> {
        self.slots.get_mut(i.0 as usize)?.as_mut()
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = InstrumentId> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_some())
            .map(|(k, _)| InstrumentId(k as u32))
    }

    fn len(&self) -> usize {
        self.count
    }
}

#[derive(Default)]
struct Published {
    seq: u64,
    bids: Vec<Level>,
    asks: Vec<Level>,
}

/// The publisher consumer. `T` is a tap that sees every update (e.g. a CSV writer).
pub struct MarketData<T: FnMut(&MdUpdate) + Send + 'static = fn(&MdUpdate)> {
    levels: Levels,
    depth: usize,
    published: ByInstrument<Published>,
    /// Instruments whose published levels may have changed in this batch, with the sides
    /// (sorted at conflation).
    touched: Vec<(InstrumentId, u8)>,
    changes: Vec<(Side, Price, u128)>,
    scratch_bids: Vec<Level>,
    scratch_asks: Vec<Level>,
    out: Vec<MdUpdate>,
    hub: MarketDataHub,
    subs: Vec<Arc<SubscriberCell>>,
    tap: T,
    per_command: bool,
    snapshot_requests: Vec<InstrumentId>,
    /// Updates published.
    pub updates: u64,
}

fn no_tap(_: &MdUpdate) {}

impl MarketData {
    /// A publisher of `depth` levels; returns it and its hub.
    pub fn new(depth: usize) -> (Self, MarketDataHub) {
        MarketData::with_tap(depth, no_tap)
    }
}

impl<T: FnMut(&MdUpdate) + Send + 'static> MarketData<T> {
    /// A publisher that also hands every update to `tap`.
    pub fn with_tap(depth: usize, tap: T) -> (Self, MarketDataHub) {
        let hub = MarketDataHub::default();
        (
            MarketData {
                // Price levels only: its memory follows the levels, not the orders.
                levels: Levels::new(),
                depth: depth.max(1),
                published: ByInstrument::new(),
                touched: Vec::new(),
                changes: Vec::new(),
                scratch_bids: Vec::new(),
                scratch_asks: Vec::new(),
                out: Vec::new(),
                hub: hub.clone(),
                subs: Vec::new(),
                tap,
                per_command: false,
                snapshot_requests: Vec::new(),
                updates: 0,
            },
            hub,
        )
    }

    /// A publisher continuing from a recovered `state`: its books are those of the state,
    /// published at once as one snapshot per instrument (to the tap now, and to subscribers
    /// as they join).
    pub fn restored(
        depth: usize,
        tap: T,
        state: &ringex_engine::state::EngineState,
    ) -> (Self, MarketDataHub) {
        let (mut md, hub) = MarketData::with_tap(depth, tap);
        md.levels = Levels::from_state(state);
        let instruments: Vec<InstrumentId> = md.levels.instruments().collect();
        for i in instruments {
            let (mut bids, mut asks) = (Vec::new(), Vec::new());
            md.levels.top(i, Side::Buy, md.depth, &mut bids);
            md.levels.top(i, Side::Sell, md.depth, &mut asks);
            for (side, l) in [(Side::Buy, &bids), (Side::Sell, &asks)] {
                let last = (l.len() == md.depth).then(|| l[l.len() - 1].0);
                md.levels.set_floor(i, side, last);
            }
            if let Some(p) = md.published.entry(i) {
                *p = Published { seq: 0, bids, asks };
            }
            let snap = md.snapshot(i);
            md.out.push(MdUpdate::Snapshot(snap));
        }
        md.deliver();
        (md, hub)
    }

    /// Conflates at every command boundary instead of every ring batch: the feed is then a
    /// deterministic function of the commands (for logs and tests), at the cost of more
    /// updates in bursts.
    pub fn per_command(mut self) -> Self {
        self.per_command = true;
        self
    }

    /// The published L2 of an instrument (bids, asks; best first).
    pub fn l2(&self, i: InstrumentId) -> (Vec<Level>, Vec<Level>) {
        self.published.get(i).map_or((Vec::new(), Vec::new()), |p| {
            (p.bids.clone(), p.asks.clone())
        })
    }

    fn next_seq(&mut self, i: InstrumentId) -> u64 {
        match self.published.entry(i) {
            Some(p) => {
                p.seq += 1;
                p.seq
            }
            None => 0,
        }
    }

    fn snapshot(&self, i: InstrumentId) -> MdSnapshot {
        let p = self.published.get(i);
        MdSnapshot {
            instrument: i,
            seq: p.map_or(0, |p| p.seq),
            bids: p.map_or(Vec::new(), |p| p.bids.clone()),
            asks: p.map_or(Vec::new(), |p| p.asks.clone()),
            halted: self.levels.is_halted(i),
        }
    }

    /// Diffs the top levels of the touched instruments against what was published, then
    /// answers snapshot requests.
    fn conflate(&mut self) {
        self.conflate_levels();
        for i in std::mem::take(&mut self.snapshot_requests) {
            let snap = self.snapshot(i);
            self.out.push(MdUpdate::Snapshot(snap));
        }
    }

    fn conflate_levels(&mut self) {
        let mut touched = std::mem::take(&mut self.touched);
        self.levels.take_changed(&mut touched);
        touched.sort_unstable();
        let mut changes = std::mem::take(&mut self.changes);
        for &(i, sides) in &touched {
            let Some(p) = self.published.entry(i) else {
                continue;
            };
            let (old_bid, old_ask) = (p.bids.first().copied(), p.asks.first().copied());
            changes.clear();
            // Only the sides that changed above their last published level.
            for side in [Side::Buy, Side::Sell] {
                if sides & (1 << side as u8) == 0 {
                    continue;
                }
                let (published, scratch) = match side {
                    Side::Buy => (&mut p.bids, &mut self.scratch_bids),
                    Side::Sell => (&mut p.asks, &mut self.scratch_asks),
                };
                scratch.clear();
                self.levels.top(i, side, self.depth, scratch);
                diff_levels(side, published, scratch, &mut changes);
                // The new levels become the published ones; the old vector is reused.
                std::mem::swap(published, scratch);
                let full = published.len() == self.depth;
                self.levels
                    .set_floor(i, side, full.then(|| published[published.len() - 1].0));
            }
            let bbo_changed =
                p.bids.first().copied() != old_bid || p.asks.first().copied() != old_ask;
            for &(side, price, qty) in &changes {
                let seq = self.next_seq(i);
                self.out.push(MdUpdate::Level {
                    instrument: i,
                    seq,
                    side,
                    price,
                    qty,
                });
            }
            if bbo_changed {
                let seq = self.next_seq(i);
                let Some(p) = self.published.get(i) else {
                    continue;
                };
                self.out.push(MdUpdate::Bbo {
                    instrument: i,
                    seq,
                    bid: p.bids.first().copied(),
                    ask: p.asks.first().copied(),
                });
            }
        }
        touched.clear();
        self.touched = touched;
        self.changes = changes;
    }

    fn deliver(&mut self) {
        if let Ok(s) = self.hub.subs.try_lock() {
            if s.len() != self.subs.len() {
                self.subs = s.clone();
            }
        }
        for u in &self.out {
            (self.tap)(u);
        }
        self.updates += self.out.len() as u64;
        let count = self.published.len();
        for sub in &self.subs {
            let resync =
                sub.stale.load(Ordering::Acquire) || sub.wants_snapshot.load(Ordering::Acquire);
            if resync {
                // Send snapshots only when they all fit, so a stale subscriber gets a
                // complete picture.
                let room = sub
                    .tx
                    .capacity()
                    .unwrap_or(usize::MAX)
                    .saturating_sub(sub.tx.len());
                if room < count + 1 {
                    continue;
                }
                if sub.stale.swap(false, Ordering::AcqRel) {
                    let _ = sub.tx.try_send(MdUpdate::Resync);
                }
                sub.wants_snapshot.store(false, Ordering::Release);
                for i in self.published.keys() {
                    let _ = sub.tx.try_send(MdUpdate::Snapshot(self.snapshot(i)));
                }
                // The snapshots already include this batch.
                continue;
            }
            for u in &self.out {
                match sub.tx.try_send(u.clone()) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        sub.stale.store(true, Ordering::Release);
                        break;
                    }
                    Err(TrySendError::Disconnected(_)) => break,
                }
            }
        }
        self.out.clear();
    }
}

impl<T: FnMut(&MdUpdate) + Send + 'static> Consumer for MarketData<T> {
    fn name(&self) -> &str {
        "market-data"
    }

    fn on_event(&mut self, e: &Event, seq: Sequence, end_of_batch: bool) {
        self.levels.apply(e);
        match e.kind {
            EventKind::Fill {
                instrument,
                price,
                qty,
                taker_side,
                ..
            } => {
                let s = self.next_seq(instrument);
                self.out.push(MdUpdate::Trade {
                    instrument,
                    seq: s,
                    price,
                    qty,
                    aggressor: taker_side,
                    event_seq: seq,
                });
            }
            EventKind::InstrumentStatus { instrument, halted } => {
                let s = self.next_seq(instrument);
                self.out.push(MdUpdate::Status {
                    instrument,
                    seq: s,
                    halted,
                });
            }
            EventKind::SnapshotRequested { instrument } => {
                // Sent after this batch's conflation, so it includes everything before it.
                self.snapshot_requests.push(instrument);
            }
            EventKind::FillFees { .. } => {}
            EventKind::InstrumentAdded(def) => {
                // Subscribers learn of a new instrument through its (empty) snapshot.
                let instrument = def.id;
                self.published.entry(instrument);
                let snap = self.snapshot(instrument);
                self.out.push(MdUpdate::Snapshot(snap));
            }
            _ => {}
        }
        if end_of_batch || (self.per_command && e.is_last_of_command()) {
            self.conflate();
            self.deliver();
        }
    }

    fn on_shutdown(&mut self) {
        self.conflate();
        self.deliver();
    }
}

/// One instrument at a subscriber: (sequence, bids by price, asks by price).
type SubscriberBook = (u64, BTreeMap<Price, u128>, BTreeMap<Price, u128>);

/// A subscriber's L2 books, kept from snapshots and incrementals, with gap detection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct L2Books {
    books: BTreeMap<InstrumentId, SubscriberBook>,
    /// Set when an update's sequence was not the next one expected.
    pub gap: bool,
    /// Trades seen.
    pub trades: u64,
}

impl L2Books {
    /// Applies an update.
    pub fn apply(&mut self, u: &MdUpdate) {
        let mut step = |i: InstrumentId, seq: u64, gap: &mut bool| -> bool {
            match self.books.get_mut(&i) {
                // Updates before the snapshot are covered by it.
                Some(b) if seq <= b.0 => false,
                Some(b) => {
                    *gap |= seq != b.0 + 1;
                    b.0 = seq;
                    true
                }
                None => false,
            }
        };
        match u {
            MdUpdate::Snapshot(s) => {
                self.books.insert(
                    s.instrument,
                    (
                        s.seq,
                        s.bids.iter().copied().collect(),
                        s.asks.iter().copied().collect(),
                    ),
                );
            }
            MdUpdate::Resync => self.books.clear(),
            MdUpdate::Level {
                instrument,
                seq,
                side,
                price,
                qty,
            } => {
                if step(*instrument, *seq, &mut self.gap) {
                    if let Some(b) = self.books.get_mut(instrument) {
                        let m = if *side == Side::Buy {
                            &mut b.1
                        } else {
                            &mut b.2
                        };
                        if *qty == 0 {
                            m.remove(price);
                        } else {
                            m.insert(*price, *qty);
                        }
                    }
                }
            }
            MdUpdate::Trade {
                instrument, seq, ..
            } => {
                if step(*instrument, *seq, &mut self.gap) {
                    self.trades += 1;
                }
            }
            MdUpdate::Bbo {
                instrument, seq, ..
            }
            | MdUpdate::Status {
                instrument, seq, ..
            } => {
                step(*instrument, *seq, &mut self.gap);
            }
        }
    }

    /// The book of an instrument: (sequence, bids best first, asks best first).
    pub fn book(&self, i: InstrumentId) -> Option<(u64, Vec<Level>, Vec<Level>)> {
        self.books.get(&i).map(|(s, b, a)| {
            (
                *s,
                b.iter().rev().map(|(p, q)| (*p, *q)).collect(),
                a.iter().map(|(p, q)| (*p, *q)).collect(),
            )
        })
    }
}
