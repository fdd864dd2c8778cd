//! What some orders carry beyond a plain limit order: an iceberg's display size and shown
//! peak, a pending stop's trigger ([`Ext`], kept beside the pool by index, touched only for
//! such orders), and each book's pending stops ordered by trigger ([`StopBook`]).

use crate::types::Side;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A plain order.
pub(crate) const PLAIN: u8 = 0;
/// An iceberg: `display` and the `peak` shown now.
pub(crate) const ICEBERG: u8 = 1;
/// A pending stop-limit order.
pub(crate) const STOP_LIMIT: u8 = 2;
/// A pending stop-market order.
pub(crate) const STOP_MARKET: u8 = 3;
/// A stop elected in this command, being matched as an incoming order.
pub(crate) const ELECTED: u8 = 4;

/// An order's terms beyond a plain limit order (all zero: a plain order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ext {
    /// An iceberg's display size in lots.
    pub display: u64,
    /// An iceberg's shown peak in lots.
    pub peak: u64,
    /// A stop's trigger price in ticks.
    pub stop: i64,
    /// [`PLAIN`], [`ICEBERG`], [`STOP_LIMIT`], [`STOP_MARKET`] or [`ELECTED`].
    pub kind: u8,
}

impl Ext {
    /// An iceberg showing `min(display, open)`.
    pub fn iceberg(display: u64, open: u64) -> Self {
        Ext {
            display,
            peak: display.min(open),
            stop: 0,
            kind: ICEBERG,
        }
    }

    /// A pending stop.
    pub fn stop(trigger: i64, market: bool) -> Self {
        Ext {
            display: 0,
            peak: 0,
            stop: trigger,
            kind: if market { STOP_MARKET } else { STOP_LIMIT },
        }
    }

    #[inline]
    pub fn is_plain(&self) -> bool {
        self.kind == PLAIN
    }

    #[inline]
    pub fn is_iceberg(&self) -> bool {
        self.kind == ICEBERG
    }

    #[inline]
    pub fn is_stop(&self) -> bool {
        self.kind == STOP_LIMIT || self.kind == STOP_MARKET
    }
}

/// One book's pending stops: buy stops lowest trigger first, sell stops highest first, each
/// entry (trigger, acceptance number, pool index). Entries of stops that left (cancelled,
/// expired, elected) stay until they come up or the queue is compacted; an entry is valid
/// while its pool index holds a pending stop with that acceptance number.
#[derive(Clone, Debug)]
pub(crate) struct StopBook {
    buys: BinaryHeap<Reverse<(i64, u64, u32)>>,
    sells: BinaryHeap<(i64, Reverse<u64>, u32)>,
    /// Pending stops in this book.
    pub count: u32,
}

impl StopBook {
    /// A book's stop queues, with room for a few hundred stops before they grow (the
    /// first stop of an instrument allocates, the next ones do not).
    pub fn new() -> Self {
        StopBook {
            buys: BinaryHeap::with_capacity(256),
            sells: BinaryHeap::with_capacity(256),
            count: 0,
        }
    }

    pub fn push(&mut self, side: Side, trigger: i64, accept_seq: u64, idx: u32) {
        match side {
            Side::Buy => self.buys.push(Reverse((trigger, accept_seq, idx))),
            Side::Sell => self.sells.push((trigger, Reverse(accept_seq), idx)),
        }
    }

    /// Pops every entry that a trade at prices `lo..=hi` reaches (buy stops with trigger
    /// `<= hi`, sell stops with trigger `>= lo`), valid or not, into `out` as (acceptance
    /// number, pool index).
    pub fn pop_reached(&mut self, lo: i64, hi: i64, out: &mut Vec<(u64, u32)>) {
        while let Some(&Reverse((t, seq, i))) = self.buys.peek() {
            if t > hi {
                break;
            }
            self.buys.pop();
            out.push((seq, i));
        }
        while let Some(&(t, Reverse(seq), i)) = self.sells.peek() {
            if t < lo {
                break;
            }
            self.sells.pop();
            out.push((seq, i));
        }
    }

    /// True when a trade at prices `lo..=hi` reaches an entry (valid or not).
    #[inline]
    pub fn reaches(&self, lo: i64, hi: i64) -> bool {
        self.buys.peek().is_some_and(|Reverse((t, _, _))| *t <= hi)
            || self.sells.peek().is_some_and(|(t, _, _)| *t >= lo)
    }

    /// Every entry as (acceptance number, pool index), valid or not.
    pub fn entries(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.buys
            .iter()
            .map(|&Reverse((_, s, i))| (s, i))
            .chain(self.sells.iter().map(|&(_, Reverse(s), i)| (s, i)))
    }

    /// Entries held, valid or not.
    pub fn len(&self) -> usize {
        self.buys.len() + self.sells.len()
    }

    /// Keeps only the entries `valid` accepts (in place: no allocation).
    pub fn retain(&mut self, mut valid: impl FnMut(u64, u32) -> bool) {
        self.buys.retain(|&Reverse((_, s, i))| valid(s, i));
        self.sells.retain(|&(_, Reverse(s), i)| valid(s, i));
    }
}
