//! [`IdTable`]: an open-addressing hash table from 64-bit ids to `u32` values, for the ids
//! the id index keeps outside its window (sparse ids: LOBSTER's, a client's random ids).
//!
//! One probe sequence answers both questions a new order asks (is the id live? was it
//! used?), where two hash maps took two: an entry's value is a pool index or
//! [`super::ids::DEAD`]. Linear probing over 16-byte slots (four to a cache line), a
//! multiplicative hash of the id's bits, at most 5/8 full; removal shifts the following
//! entries back (no tombstones), so lookups stay short however many removals there were.

/// The value of an empty slot (never stored).
const EMPTY: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Slot {
    key: u64,
    val: u32,
}

const VACANT: Slot = Slot { key: 0, val: EMPTY };

/// See the module docs.
#[derive(Clone, Debug, Default)]
pub(crate) struct IdTable {
    slots: Vec<Slot>,
    /// `64 - log2(capacity)`: the hash's top bits pick the home slot.
    shift: u32,
    len: usize,
}

#[inline]
fn hash(key: u64) -> u64 {
    // Fibonacci hashing of the mixed id: ids that differ in any bits spread evenly.
    (key ^ (key >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl IdTable {
    /// Room for `n` entries before it grows.
    pub fn reserve(&mut self, n: usize) {
        let need = (self.len + n).saturating_mul(8) / 5 + 1;
        if need > self.slots.len() {
            self.resize(need.next_power_of_two().max(16));
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        (hash(key) >> self.shift) as usize
    }

    /// The slot holding `key` (`Ok`), or the empty slot ending its probe (`Err`). The
    /// table must have slots.
    #[inline]
    fn find(&self, key: u64) -> Result<usize, usize> {
        let mask = self.mask();
        let mut i = self.home(key);
        loop {
            let s = self.slots[i];
            if s.val == EMPTY {
                return Err(i);
            }
            if s.key == key {
                return Ok(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// The value stored for `key`.
    #[inline]
    pub fn get(&self, key: u64) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        self.find(key).ok().map(|i| self.slots[i].val)
    }

    /// Stores `val` (never `u32::MAX`) for `key`; returns the value it replaces.
    #[inline]
    pub fn insert(&mut self, key: u64, val: u32) -> Option<u32> {
        debug_assert!(val != EMPTY);
        if (self.len + 1) * 8 > self.slots.len() * 5 {
            self.resize((self.slots.len() * 2).max(16));
        }
        match self.find(key) {
            Ok(i) => Some(std::mem::replace(&mut self.slots[i].val, val)),
            Err(i) => {
                self.slots[i] = Slot { key, val };
                self.len += 1;
                None
            }
        }
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: u64) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let i = self.find(key).ok()?;
        let mask = self.mask();
        let old = self.slots[i].val;
        // Backward shift: move later entries of the run into the hole when their home slot
        // does not lie (cyclically) between the hole and them.
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let s = self.slots[j];
            if s.val == EMPTY {
                break;
            }
            let home = self.home(s.key);
            // Distance from home to j and from home to the hole, cyclically.
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = s;
                hole = j;
            }
        }
        self.slots[hole] = VACANT;
        self.len -= 1;
        Some(old)
    }

    /// Every (key, value), in no particular order.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.slots
            .iter()
            .filter(|s| s.val != EMPTY)
            .map(|s| (s.key, s.val))
    }

    fn resize(&mut self, cap: usize) {
        debug_assert!(cap.is_power_of_two());
        let old = std::mem::replace(&mut self.slots, vec![VACANT; cap]);
        self.shift = 64 - cap.trailing_zeros();
        let mask = cap - 1;
        for s in old.into_iter().filter(|s| s.val != EMPTY) {
            let mut i = self.home(s.key);
            while self.slots[i].val != EMPTY {
                i = (i + 1) & mask;
            }
            self.slots[i] = s;
        }
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
            for (op, k, v) in ops {
                match op {
                    0 | 1 => prop_assert_eq!(t.insert(k, v), m.insert(k, v)),
                    _ => prop_assert_eq!(t.remove(k), m.remove(&k)),
                }
                prop_assert_eq!(t.len(), m.len());
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
