//! [`PairTable`]: the risk updater's index of (account, instrument) pairs with the exposure
//! every order event changes, in its own open-addressing table so that a pair's slot is
//! known from its key alone: the consumer starts loading it a few events ahead
//! ([`ringex_engine::Consumer::prefetch`]).

/// Marks an empty slot.
const EMPTY: u32 = u32::MAX;
/// The dirty bit in a slot's `meta` (the pair index is the low 31 bits).
const DIRTY: u32 = 1 << 31;

/// One pair: 32 bytes, aligned to 32, so a slot never straddles two cache lines.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(32))]
pub(super) struct Slot {
    account: u64,
    /// Open-order exposure in ticks × lots (an `i128` as two words: 8-byte alignment).
    tl: [u64; 2],
    instrument: u32,
    /// The pair's dense index (low 31 bits) and the dirty bit; `EMPTY` when unused.
    meta: u32,
}

// Two slots to a cache line, each on its own half.
const _: () = assert!(std::mem::size_of::<Slot>() == 32 && std::mem::align_of::<Slot>() == 32);

impl Slot {
    const VACANT: Slot = Slot {
        account: 0,
        tl: [0, 0],
        instrument: 0,
        meta: EMPTY,
    };

    /// Exposure, ticks × lots.
    #[inline]
    pub(super) fn tl(&self) -> i128 {
        ((self.tl[1] as u128) << 64 | self.tl[0] as u128) as i128
    }

    #[inline]
    pub(super) fn set_tl(&mut self, v: i128) {
        self.tl = [v as u64, ((v as u128) >> 64) as u64];
    }

    /// The pair's dense index.
    #[inline]
    pub(super) fn k(&self) -> u32 {
        self.meta & !DIRTY
    }

    /// Listed as changed since the last publish.
    #[inline]
    pub(super) fn dirty(&self) -> bool {
        self.meta & DIRTY != 0
    }

    #[inline]
    pub(super) fn set_dirty(&mut self, d: bool) {
        self.meta = (self.meta & !DIRTY) | if d { DIRTY } else { 0 };
    }
}

/// (account, instrument) → [`Slot`]: linear probing, at most 5/8 full, never shrinks (a
/// pair, once seen, stays).
pub(super) struct PairTable {
    slots: Vec<Slot>,
    /// 64 − log2(slots): the hash's top bits pick the home slot.
    shift: u32,
    len: usize,
}

impl PairTable {
    pub(super) fn new() -> Self {
        PairTable {
            slots: vec![Slot::VACANT; 64],
            shift: 64 - 6,
            len: 0,
        }
    }

    #[inline]
    fn home(&self, account: u64, instrument: u32) -> usize {
        let h = (account ^ (instrument as u64).rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> self.shift) as usize
    }

    /// The slot holding the pair, or the empty slot where it would go.
    #[inline]
    fn find(&self, account: u64, instrument: u32) -> (usize, bool) {
        let mask = self.slots.len() - 1;
        let mut i = self.home(account, instrument);
        loop {
            let s = &self.slots[i];
            if s.meta == EMPTY {
                return (i, false);
            }
            if s.account == account && s.instrument == instrument {
                return (i, true);
            }
            i = (i + 1) & mask;
        }
    }

    #[inline]
    pub(super) fn get(&self, account: u64, instrument: u32) -> Option<&Slot> {
        match self.find(account, instrument) {
            (i, true) => Some(&self.slots[i]),
            _ => None,
        }
    }

    #[inline]
    pub(super) fn get_mut(&mut self, account: u64, instrument: u32) -> Option<&mut Slot> {
        match self.find(account, instrument) {
            (i, true) => Some(&mut self.slots[i]),
            _ => None,
        }
    }

    /// The pair's slot; when it is new, `make()` gives its dense index (below 2^31) and the
    /// second value is true.
    #[inline]
    pub(super) fn entry(
        &mut self,
        account: u64,
        instrument: u32,
        make: impl FnOnce() -> u32,
    ) -> (&mut Slot, bool) {
        let (mut i, found) = self.find(account, instrument);
        if !found {
            if (self.len + 1) * 8 > self.slots.len() * 5 {
                self.grow();
                i = self.find(account, instrument).0;
            }
            self.slots[i] = Slot {
                account,
                tl: [0, 0],
                instrument,
                meta: make() & !DIRTY,
            };
            self.len += 1;
        }
        (&mut self.slots[i], !found)
    }

    #[cold]
    fn grow(&mut self) {
        let n = self.slots.len() * 2;
        let old = std::mem::replace(&mut self.slots, vec![Slot::VACANT; n]);
        self.shift -= 1;
        let mask = self.slots.len() - 1;
        for s in old.into_iter().filter(|s| s.meta != EMPTY) {
            let mut i = self.home(s.account, s.instrument);
            while self.slots[i].meta != EMPTY {
                i = (i + 1) & mask;
            }
            self.slots[i] = s;
        }
    }

    /// True while the table is small enough to stay in the caches (512 KiB): prefetching
    /// it would only cost.
    #[inline]
    pub(super) fn is_small(&self) -> bool {
        self.slots.len() <= 1 << 14
    }

    /// Starts loading the pair's home slot into the cache (a hint: nothing is read).
    #[inline]
    pub(super) fn prefetch(&self, account: u64, instrument: u32) {
        // The home slot's line and the next (probing goes on past a taken slot).
        let p = self
            .slots
            .as_ptr()
            .wrapping_add(self.home(account, instrument));
        prefetch(p);
        prefetch(p.wrapping_add(2));
    }
}

pub(super) use ringex_engine::consumer::prefetch;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// The table against a `HashMap`: the same pairs with the same exposure and index,
        /// through growth, colliding and arbitrary keys.
        #[test]
        fn pair_table_equals_a_hash_map(
            ops in prop::collection::vec((0u64..50, 0u32..20, any::<i64>(), any::<bool>()), 1..2000),
            wide in any::<bool>(),
        ) {
            let mut t = PairTable::new();
            let mut m: HashMap<(u64, u32), (i128, u32, bool)> = HashMap::new();
            for (a, i, v, d) in ops {
                let (a, i) = if wide { (a.wrapping_mul(0x1234_5678_9abc_def1), i.wrapping_mul(7919)) } else { (a, i) };
                let n = m.len() as u32;
                let (s, new) = t.entry(a, i, || n);
                prop_assert_eq!(new, !m.contains_key(&(a, i)));
                let e = m.entry((a, i)).or_insert((0, n, false));
                prop_assert_eq!(s.k(), e.1);
                let tl = s.tl().wrapping_add(v as i128 * 3);
                s.set_tl(tl);
                s.set_dirty(d);
                e.0 = e.0.wrapping_add(v as i128 * 3);
                e.2 = d;
                t.prefetch(a, i);
            }
            prop_assert_eq!(t.len, m.len());
            for (&(a, i), &(tl, k, d)) in &m {
                let s = t.get(a, i).expect("held");
                prop_assert_eq!((s.tl(), s.k(), s.dirty()), (tl, k, d));
            }
            prop_assert!(t.get(u64::MAX, 12345).is_none());
        }
    }
}
