//! A price level: a doubly linked FIFO of pool indices with its total quantity (96 bits: a
//! `u64` and a carry word); taking a level from the pool, and linking an order at a level's
//! back.

use super::order::{Hot, NIL};
use crate::types::Price;
use std::hint::select_unpredictable;

/// One price level: a FIFO of orders. 32 bytes, two to a cache line.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Level {
    pub price: Price,
    /// Total open lots, low 64 bits (with `qty_hi`: 96 bits, exact for up to 2^32 orders
    /// of `u64::MAX` lots each; the high word is touched only on a carry).
    qty_lo: u64,
    pub head: u32,
    pub tail: u32,
    pub count: u32,
    qty_hi: u32,
}

impl Level {
    pub(super) fn new(price: Price) -> Self {
        Level {
            price,
            qty_lo: 0,
            head: NIL,
            tail: NIL,
            count: 0,
            qty_hi: 0,
        }
    }

    /// Total open lots.
    #[inline]
    pub fn qty(&self) -> u128 {
        ((self.qty_hi as u128) << 64) | self.qty_lo as u128
    }

    #[inline]
    pub(super) fn add(&mut self, q: u64) {
        let (lo, carry) = self.qty_lo.overflowing_add(q);
        self.qty_lo = lo;
        self.qty_hi += carry as u32;
    }

    #[inline]
    pub(super) fn sub(&mut self, q: u64) {
        let (lo, borrow) = self.qty_lo.overflowing_sub(q);
        self.qty_lo = lo;
        self.qty_hi -= borrow as u32;
    }
}

/// Takes a level from the free list (or grows the pool).
pub(super) fn alloc_level(
    levels: &mut Vec<Level>,
    free_levels: &mut Vec<u32>,
    price: Price,
) -> u32 {
    let level = Level::new(price);
    match free_levels.pop() {
        Some(i) => {
            levels[i as usize] = level;
            i
        }
        None => {
            levels.push(level);
            (levels.len() - 1) as u32
        }
    }
}

/// Links pooled order `idx` (its record `h`: quantity, owner, book and side) at the back of
/// `level`, writing the whole record. Without branches (which level is empty is as good as
/// random): an empty level gets its head, else the tail its next; with no tail the order's
/// own link is written first, then the record over it.
#[inline(always)]
pub(super) fn link_at(hot: &mut [Hot], levels: &mut [Level], idx: u32, h: Hot, level: u32) {
    let lv = &mut levels[level as usize];
    let tail = lv.tail;
    lv.tail = idx;
    lv.head = select_unpredictable(tail == NIL, idx, lv.head);
    hot[select_unpredictable(tail == NIL, idx, tail) as usize].next = idx;
    lv.add(h.qty.0);
    lv.count += 1;
    hot[idx as usize] = Hot {
        prev: tail,
        next: NIL,
        level,
        ..h
    };
}

// Two levels to a cache line; a ladder entry (key, level index) is 16 bytes.
const _: () = assert!(std::mem::size_of::<Level>() == 32);
const _: () = assert!(std::mem::size_of::<(i64, u32)>() == 16);
