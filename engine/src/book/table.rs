//! [`IdTable`]: an open-addressing hash table from 64-bit ids to `u32` values (the live
//! orders' pool indices), for any ids: dense counters, LOBSTER's, a client's random ones.
//!
//! Linear probing over 16-byte slots (four to a cache line), a multiplicative hash of the
//! id's bits whose top bits pick the home slot, at most 3/8 full; removal shifts the
//! following entries back (no tombstones), so lookups stay short however many removals
//! there were.
//!
//! **Sized to the live set.** The table starts at 8,192 slots (128 KiB) and doubles when
//! it passes 3/8 full (43–85 bytes per live order), so its slots, and the cache lines a lookup can land on, follow the
//! live orders rather than a capacity set up front. Presized for `MatcherCapacity`'s 64Ki
//! orders (2 MiB), a LOBSTER replay with a few thousand live orders ran at 15–18M
//! messages/s against 21–25M with this table (`peers`, same run). A doubling never stalls
//! a command: the new table is zeroed memory from the allocator (the OS maps it as it is
//! touched), and the old one is drained into it a few slots per insert or removal
//! (lookups look in both until it is empty), long before the next doubling is due.
//! Starting smaller costs more than it saves: from 16 slots, the doublings during a
//! 150k-message replay took it to 16.6–18.3M. Fuller costs too: at 5/8 the deep-book flow
//! (up to ~40k live orders, random ids: every new order probes for a missing id) ran 12%
//! slower than with the presized table; at 3/8 it runs as fast.

/// A slot: the key, and the value plus one (0: empty), so that a fresh table is all zero
/// bytes (`vec![[0; 2]; n]` takes zeroed memory from the allocator, not a fill).
type Slot = [u64; 2];

/// The most a table is filled before it doubles: `LOAD_NUM / LOAD_DEN`.
const LOAD_NUM: usize = 3;
const LOAD_DEN: usize = 8;

/// The smallest table (16 slots in tests, so that random operations double it).
const MIN_SLOTS: usize = if cfg!(test) { 16 } else { 8192 };

/// Slots of the old table drained per insert or removal while it is being emptied (the
/// next doubling needs at least 3/8 of its size in inserts and the drain 1/8, so it is
/// always empty first).
const DRAIN_STEP: usize = 8;

/// See the module docs.
#[derive(Clone, Debug, Default)]
pub(crate) struct IdTable {
    slots: Vec<Slot>,
    /// `64 - log2(slots.len())`: the hash's top bits pick the home slot.
    shift: u32,
    /// Entries in both tables.
    len: usize,
    /// The table before the last doubling, while it is being drained (empty otherwise).
    old: Vec<Slot>,
    old_shift: u32,
    /// Slots of `old` below this one are drained (empty).
    drained: usize,
}

#[inline]
fn hash(key: u64) -> u64 {
    // Fibonacci hashing of the mixed id: ids that differ in any bits spread evenly.
    (key ^ (key >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[inline]
fn home(key: u64, shift: u32) -> usize {
    (hash(key) >> shift) as usize
}

/// The slot holding `key` (`Ok`), or the empty slot ending its probe (`Err`). The table
/// must have slots and at least one of them empty.
#[inline]
fn find(slots: &[Slot], shift: u32, key: u64) -> Result<usize, usize> {
    let mask = slots.len() - 1;
    let mut i = home(key, shift);
    loop {
        let s = slots[i];
        if s[1] == 0 {
            return Err(i);
        }
        if s[0] == key {
            return Ok(i);
        }
        i = (i + 1) & mask;
    }
}

/// Empties slot `i`, shifting later entries of its run back into the hole when their home
/// slot does not lie (cyclically) between the hole and them.
fn remove_at(slots: &mut [Slot], shift: u32, i: usize) {
    let mask = slots.len() - 1;
    let mut hole = i;
    let mut j = i;
    loop {
        j = (j + 1) & mask;
        let s = slots[j];
        if s[1] == 0 {
            break;
        }
        let h = home(s[0], shift);
        if (j.wrapping_sub(h) & mask) >= (j.wrapping_sub(hole) & mask) {
            slots[hole] = s;
            hole = j;
        }
    }
    slots[hole] = [0, 0];
}

#[inline]
fn encode(key: u64, val: u32) -> Slot {
    [key, val as u64 + 1]
}

#[inline]
fn decode(s: Slot) -> u32 {
    (s[1] - 1) as u32
}

/// The value of `key` in a table (which may be empty).
#[inline]
fn lookup(slots: &[Slot], shift: u32, key: u64) -> Option<u32> {
    if slots.is_empty() {
        return None;
    }
    find(slots, shift, key).ok().map(|i| decode(slots[i]))
}

/// Removes `key` from a table (which may be empty); returns its value.
#[inline]
fn take(slots: &mut [Slot], shift: u32, key: u64) -> Option<u32> {
    if slots.is_empty() {
        return None;
    }
    let i = find(slots, shift, key).ok()?;
    let v = decode(slots[i]);
    remove_at(slots, shift, i);
    Some(v)
}

impl IdTable {
    /// Room for `n` entries before the next doubling. (The matcher does not presize its
    /// table: see the module docs.)
    pub fn reserve(&mut self, n: usize) {
        let need = (self.len + n).saturating_mul(LOAD_DEN) / LOAD_NUM + 1;
        while need > self.slots.len() {
            self.grow();
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Slots in the table (and in the one being drained).
    #[cfg(test)]
    pub fn slots(&self) -> usize {
        self.slots.len() + self.old.len()
    }

    /// The value stored for `key`. Always inlined: a call here cost the exchange-core mix
    /// about 10 instructions per command (callgrind) when the matcher's inlining shifted.
    #[inline(always)]
    pub fn get(&self, key: u64) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        lookup(&self.slots, self.shift, key).or_else(|| lookup(&self.old, self.old_shift, key))
    }

    /// Stores `val` for `key`; returns the value it replaces.
    #[inline]
    pub fn insert(&mut self, key: u64, val: u32) -> Option<u32> {
        if (self.len + 1) * LOAD_DEN > self.slots.len() * LOAD_NUM {
            self.grow();
        }
        if !self.old.is_empty() {
            self.drain(DRAIN_STEP);
        }
        // A key still in the old table moves to the new one with its new value.
        let moved = if self.old.is_empty() {
            None
        } else {
            take(&mut self.old, self.old_shift, key)
        };
        match find(&self.slots, self.shift, key) {
            Ok(i) => Some(decode(std::mem::replace(
                &mut self.slots[i],
                encode(key, val),
            ))),
            Err(i) => {
                self.slots[i] = encode(key, val);
                self.len += usize::from(moved.is_none());
                moved
            }
        }
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: u64) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        if !self.old.is_empty() {
            self.drain(DRAIN_STEP);
        }
        let v = take(&mut self.slots, self.shift, key)
            .or_else(|| take(&mut self.old, self.old_shift, key))?;
        self.len -= 1;
        Some(v)
    }

    /// Doubles the table; the old one is drained as operations come (or at once, if the
    /// previous one is still being drained, which the drain rate rules out in use).
    #[cold]
    fn grow(&mut self) {
        if !self.old.is_empty() {
            self.drain(usize::MAX);
        }
        let cap = (self.slots.len() * 2).max(MIN_SLOTS);
        self.old = std::mem::replace(&mut self.slots, vec![[0; 2]; cap]);
        self.old_shift = self.shift;
        self.shift = 64 - cap.trailing_zeros();
        self.drained = 0;
    }

    /// Moves the entries of up to `n` more slots of the old table into the new one. A slot
    /// is done when it is empty: taking its entry may shift a later one of its run into it.
    /// Every entry whose home lies below the drained mark has then been moved, so a lookup
    /// in the old table stays right.
    fn drain(&mut self, n: usize) {
        let mut left = n;
        while left > 0 && self.drained < self.old.len() {
            let d = self.drained;
            while self.old[d][1] != 0 {
                let s = self.old[d];
                if let Err(i) = find(&self.slots, self.shift, s[0]) {
                    self.slots[i] = s;
                }
                remove_at(&mut self.old, self.old_shift, d);
            }
            self.drained += 1;
            left -= 1;
        }
        if self.drained >= self.old.len() {
            self.old = Vec::new();
            self.drained = 0;
        }
    }

    /// Every (key, value), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.slots
            .iter()
            .chain(&self.old)
            .filter(|s| s[1] != 0)
            .map(|&s| (s[0], decode(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// Inserts, overwrites and removals in any order agree with a `HashMap`, also for
        /// keys that collide on their home slot (small key space) and any 64-bit key.
        #[test]
        fn agrees_with_a_hash_map(ops in prop::collection::vec((0u8..3, prop_oneof![0u64..64, any::<u64>()], 0u32..1000), 1..2000)) {
            let mut t = IdTable::default();
            let mut m: HashMap<u64, u32> = HashMap::new();
            for (n, (op, k, v)) in ops.into_iter().enumerate() {
                match op {
                    0 | 1 => prop_assert_eq!(t.insert(k, v), m.insert(k, v)),
                    _ => prop_assert_eq!(t.remove(k), m.remove(&k)),
                }
                prop_assert_eq!(t.len(), m.len());
                prop_assert_eq!(t.get(k), m.get(&k).copied());
                // Often enough to catch every key while a doubling is being drained.
                if n % 7 == 0 {
                    for (&k, &v) in &m {
                        prop_assert_eq!(t.get(k), Some(v), "key {} after op {}", k, n);
                    }
                }
            }
            for (&k, &v) in &m {
                prop_assert_eq!(t.get(k), Some(v));
            }
            let mut a: Vec<_> = t.iter().collect();
            a.sort_unstable();
            let mut b: Vec<_> = m.into_iter().collect();
            b.sort_unstable();
            prop_assert_eq!(a, b);
        }
    }

    /// The table follows the live set: a few thousand live ids take a few thousand slots
    /// however many were ever inserted, and every doubling is drained before the next.
    #[test]
    fn slots_follow_the_live_set_and_doublings_drain() {
        let mut t = IdTable::default();
        let mut live = std::collections::VecDeque::new();
        for k in 0..200_000u64 {
            let key = k.wrapping_mul(0x2545_F491_4F6C_DD1D);
            assert_eq!(t.insert(key, k as u32), None);
            live.push_back((key, k as u32));
            if live.len() > 3000 {
                if k % 1000 == 0 {
                    for &(key, v) in &live {
                        assert_eq!(t.get(key), Some(v));
                    }
                }
                let (key, v) = live.pop_front().expect("live");
                assert_eq!(t.remove(key), Some(v));
            }
            assert!(t.old.is_empty() || t.len * LOAD_DEN <= t.slots.len() * LOAD_NUM);
        }
        assert_eq!(t.len(), 3000);
        assert_eq!(
            t.slots(),
            8192,
            "3000 live ids at most 3/8 of a power of two"
        );
        for &(key, v) in &live {
            assert_eq!(t.get(key), Some(v));
        }
    }

    #[test]
    fn key_zero_and_max_are_ordinary_keys() {
        let mut t = IdTable::default();
        assert_eq!(t.get(0), None);
        t.insert(0, 7);
        t.insert(u64::MAX, 8);
        assert_eq!(
            (t.get(0), t.get(u64::MAX), t.get(1)),
            (Some(7), Some(8), None)
        );
        assert_eq!(t.remove(0), Some(7));
        assert_eq!(t.get(u64::MAX), Some(8));
    }
}
