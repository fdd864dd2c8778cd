//! Every instrument's book, sharing one order pool ([`super::order`]) and one level pool
//! ([`super::level`]); each book has a [`Ladder`] per side.
//!
//! An order is found by id through the id index (`ids.rs`: a live-id table sized to the
//! resting orders, used ids as ranges). Cancel by id is one probe and an O(1) unlink. Every
//! order carries its book's dense slot, so a command looks its instrument up once. Each
//! account's resting orders are linked through the pool, so a mass cancel visits only them.
//!
//! Once the vectors and the map have grown to the working size, nothing here allocates.

use super::ext::{Ext, StopBook};
use super::ladder::{key, search_from_top, Ladder};
use super::level::{alloc_level, link_at, Level};
use super::order::{Cold, Hot, OrderNode, NIL};
use crate::funds::{Funding, InstrumentDef};
pub use crate::matching::RestingOrder;
use crate::types::{AccountId, InstrumentId, MatchPolicy, OrderId, Price, Qty, Side};
use rustc_hash::FxHashMap;
use std::hint::select_unpredictable;

/// The book of one instrument.
#[derive(Clone, Debug, Default)]
pub(crate) struct InstrumentBook {
    pub bids: Ladder,
    pub asks: Ladder,
    pub halted: bool,
    /// How it was defined (funding rules included).
    pub def: InstrumentDef,
    /// The expanded funding rules of a funded instrument.
    pub funding: Option<Funding>,
    /// The price of its last trade (the centre of the price band).
    pub last_price: Option<Price>,
    /// How a level is shared.
    pub policy: MatchPolicy,
    /// The smallest pro-rata share in lots (1 unless set).
    pub min_alloc: u64,
    /// The TOP order of each side (`pro_rata_top`), as pool index + 1 (0: none), valid while
    /// that pool slot holds the order accepted as `top_seq` in the book
    /// ([`OrderBooks::top`]): an order leaving the book stops being TOP with nothing to do.
    pub top: [u32; 2],
    /// The acceptance numbers of the TOP orders.
    pub top_seq: [u64; 2],
    /// Icebergs resting in the book (0: the plain FIFO loop is enough).
    pub icebergs: u32,
    /// Pending stop orders, ordered by trigger (allocated with the first stop).
    pub stops: Option<Box<StopBook>>,
    /// A policy, icebergs or stops: the general paths (one byte for the plain paths to
    /// test; [`InstrumentBook::refresh_general`] keeps it).
    pub general: bool,
}

impl InstrumentBook {
    /// Recomputes [`InstrumentBook::general`] after a change of policy, icebergs or stops.
    pub fn refresh_general(&mut self) {
        self.general =
            self.policy != MatchPolicy::Fifo || self.icebergs != 0 || self.stops.is_some();
    }

    #[inline]
    pub fn side(&self, side: Side) -> &Ladder {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    #[inline]
    pub fn side_mut(&mut self, side: Side) -> &mut Ladder {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }
}

use super::ids::IdIndex;
pub(crate) use super::ids::IdState;

/// Every instrument's book, sharing one order pool and one level pool.
#[derive(Clone, Debug, Default)]
pub(crate) struct OrderBooks {
    /// The books, densely in the order they were opened; [`BookIndex`] maps ids to them.
    pub books: Vec<InstrumentBook>,
    index: BookIndex,
    /// The order pool, hot and cold parts at the same index.
    hot: Vec<Hot>,
    cold: Vec<Cold>,
    free_orders: Vec<u32>,
    pub levels: Vec<Level>,
    free_levels: Vec<u32>,
    /// Every order id seen, compactly, and the pool index of each live one.
    ids: IdIndex,
    /// The first resting order of each account: accounts below 2^20 by index, larger ids
    /// in a map that holds only accounts with resting orders.
    acct_heads: Vec<u32>,
    acct_sparse: FxHashMap<u64, u32>,
    /// Resting orders per account, kept only while a limit on them is set.
    acct_counts: Option<AccountCounts>,
    /// Icebergs' and pending stops' terms by pool index (empty until the first one).
    ext: Vec<Ext>,
}

/// Resting orders per account: dense below 2^20, a map above.
#[derive(Clone, Debug, Default)]
struct AccountCounts {
    dense: Vec<u32>,
    sparse: FxHashMap<u64, u32>,
}

impl AccountCounts {
    fn get(&self, a: AccountId) -> u32 {
        if a.0 < DENSE_ACCOUNT_HEADS {
            self.dense.get(a.0 as usize).copied().unwrap_or(0)
        } else {
            self.sparse.get(&a.0).copied().unwrap_or(0)
        }
    }

    fn add(&mut self, a: AccountId, up: bool) {
        let c = if a.0 < DENSE_ACCOUNT_HEADS {
            let i = a.0 as usize;
            if self.dense.len() <= i {
                self.dense.resize((i + 1).next_power_of_two(), 0);
            }
            &mut self.dense[i]
        } else {
            self.sparse.entry(a.0).or_default()
        };
        *c = if up { *c + 1 } else { c.saturating_sub(1) };
        if !up && *c == 0 && a.0 >= DENSE_ACCOUNT_HEADS {
            self.sparse.remove(&a.0);
        }
    }
}

/// Accounts below this id find their resting orders by direct indexing.
const DENSE_ACCOUNT_HEADS: u64 = 1 << 20;

/// Instrument ids to dense book slots in two levels (pages of 1024 ids, allocated when an
/// instrument of that page opens): any id below `MAX_INSTRUMENTS` costs at most one 4 KiB
/// page, so a large id costs no more memory than a small one, and a lookup is two indexes.
#[derive(Clone, Debug, Default)]
pub(crate) struct BookIndex {
    pages: Vec<Option<Box<[u32; BOOK_PAGE]>>>,
}

const BOOK_PAGE: usize = 1024;

impl BookIndex {
    #[inline]
    fn get(&self, id: InstrumentId) -> Option<usize> {
        let id = id.0 as usize;
        let page = self.pages.get(id / BOOK_PAGE)?.as_deref()?;
        match page[id % BOOK_PAGE] {
            NIL => None,
            k => Some(k as usize),
        }
    }

    fn set(&mut self, id: InstrumentId, slot: u32) {
        let id = id.0 as usize;
        if self.pages.len() <= id / BOOK_PAGE {
            self.pages.resize_with(id / BOOK_PAGE + 1, || None);
        }
        let page = self.pages[id / BOOK_PAGE].get_or_insert_with(|| Box::new([NIL; BOOK_PAGE]));
        page[id % BOOK_PAGE] = slot;
    }

    /// Every (id, slot), ids ascending.
    fn iter(&self) -> impl Iterator<Item = (InstrumentId, usize)> + '_ {
        self.pages.iter().enumerate().flat_map(|(p, page)| {
            page.iter().flat_map(move |page| {
                page.iter()
                    .enumerate()
                    .filter(|(_, &k)| k != NIL)
                    .map(move |(i, &k)| (InstrumentId((p * BOOK_PAGE + i) as u32), k as usize))
            })
        })
    }
}

impl OrderBooks {
    /// Room for `orders` resting orders and `ids` order ids before anything grows.
    pub fn with_capacity(orders: usize, ids: usize) -> Self {
        OrderBooks {
            books: Vec::new(),
            index: BookIndex::default(),
            hot: Vec::with_capacity(orders),
            cold: Vec::with_capacity(orders),
            free_orders: Vec::with_capacity(orders),
            levels: Vec::with_capacity(orders.min(1 << 20)),
            free_levels: Vec::with_capacity(orders.min(1 << 20)),
            ids: {
                let mut x = IdIndex::new(true);
                x.reserve(ids);
                x
            },
            acct_heads: Vec::new(),
            acct_sparse: FxHashMap::default(),
            acct_counts: None,
            ext: Vec::new(),
        }
    }

    /// Opens a book; false if it exists already.
    pub fn add_instrument(&mut self, def: impl Into<InstrumentDef>) -> bool {
        let def = def.into();
        let id = def.id;
        if id.0 >= crate::types::MAX_INSTRUMENTS {
            return false;
        }
        if self.index.get(id).is_some() {
            return false;
        }
        self.index.set(id, self.books.len() as u32);
        self.books.push(InstrumentBook {
            def,
            funding: def.funding(),
            min_alloc: 1,
            ..InstrumentBook::default()
        });
        true
    }

    /// Opens the books of a state's instruments with their definitions, halts and last
    /// trade prices (recovery).
    pub fn add_instruments_of(&mut self, state: &crate::state::EngineState) {
        for &(i, halted) in &state.instruments {
            self.add_instrument(state.definition(i));
            if let Some(b) = self.book_mut(i) {
                b.halted = halted;
                b.last_price = state.last_price(i);
            }
        }
        for &(i, policy, min_alloc) in &state.policies {
            if let Some(b) = self.book_mut(i) {
                b.policy = policy;
                b.min_alloc = min_alloc.0.max(1);
                b.refresh_general();
            }
        }
    }

    /// After a state's resting orders are in: their icebergs' peaks, the TOP orders, and
    /// the pending stops (in acceptance order). Returns the stops' pool indices.
    pub fn load_extras(&mut self, state: &crate::state::EngineState) -> Vec<u32> {
        for &(id, display, peak) in &state.icebergs {
            if let IdState::Live(i) = self.id_state(id) {
                let open = self.hot[i as usize].qty.0;
                let mut e = super::ext::Ext::iceberg(display.0, open);
                e.peak = peak.0.min(open);
                self.set_ext(i, e);
            }
        }
        for &(inst, side, id) in &state.tops {
            if let (IdState::Live(i), Some(slot)) = (self.id_state(id), self.slot(inst)) {
                self.set_top(slot, side, i);
            }
        }
        let mut v = Vec::with_capacity(state.stops.len());
        for st in &state.stops {
            let o = &st.order;
            let mut node = OrderNode::from_new(o, o.qty, st.accept_seq);
            if o.order_type == crate::types::OrderType::Market {
                node.price = Price(0);
            }
            let market = o.order_type == crate::types::OrderType::Market;
            v.push(self.insert_pending(node, super::ext::Ext::stop(st.stop.0, market)));
        }
        v
    }

    /// What [`OrderBooks::load_extras`] reads, for a state of these instruments.
    pub fn extras_into(&self, state: &mut crate::state::EngineState) {
        for &(i, _) in &state.instruments {
            let Some(b) = self.book(i) else { continue };
            if b.policy != MatchPolicy::Fifo {
                state.policies.push((i, b.policy, Qty(b.min_alloc)));
            }
            let slot = self.slot(i).unwrap_or(NIL);
            for side in [Side::Buy, Side::Sell] {
                let t = self.top(slot, side);
                if t != NIL {
                    state.tops.push((i, side, self.cold[t as usize].id));
                }
            }
            for idx in self.pending_stops(i) {
                let mut o = self.node(idx).as_new_order();
                let e = self.ext(idx);
                if e.kind == super::ext::STOP_MARKET {
                    o.order_type = crate::types::OrderType::Market;
                }
                state.stops.push(crate::state::PendingStop {
                    order: o,
                    accept_seq: self.cold[idx as usize].accept_seq,
                    stop: Price(e.stop),
                });
            }
        }
        state.stops.sort_by_key(|s| s.accept_seq);
        for o in &state.orders {
            if let IdState::Live(i) = self.id_state(o.order.order_id) {
                let e = self.ext(i);
                if e.is_iceberg() {
                    state
                        .icebergs
                        .push((o.order.order_id, Qty(e.display), Qty(e.peak)));
                }
            }
        }
    }

    /// The dense slot of an instrument's book: the one instrument lookup of a command.
    #[inline]
    pub fn slot(&self, id: InstrumentId) -> Option<u32> {
        self.index.get(id).map(|k| k as u32)
    }

    #[inline]
    pub fn book(&self, id: InstrumentId) -> Option<&InstrumentBook> {
        self.index.get(id).map(|k| &self.books[k])
    }

    #[inline]
    pub fn book_mut(&mut self, id: InstrumentId) -> Option<&mut InstrumentBook> {
        self.index.get(id).map(|k| &mut self.books[k])
    }

    /// Instruments with a book, in id order.
    pub fn instruments(&self) -> impl Iterator<Item = InstrumentId> + '_ {
        self.index.iter().map(|(id, _)| id)
    }

    #[inline]
    pub fn id_state(&self, id: OrderId) -> IdState {
        self.ids.get(id.0)
    }

    /// True when `id` is live or was used ([`IdState::Unknown`] otherwise), without
    /// looking in the live table when the used ids say.
    #[inline(always)]
    pub fn id_known(&self, id: OrderId) -> bool {
        self.ids.known(id.0)
    }

    /// Records an id that was used but never rested (or no longer rests).
    #[inline]
    pub fn mark_dead(&mut self, id: OrderId) {
        self.ids.set_dead(id.0);
    }

    /// Records the id of an accepted order that never rested: it is not live (the caller
    /// knows; [`OrderBooks::mark_dead`] also takes a live one out).
    #[inline]
    pub fn mark_used(&mut self, id: OrderId) {
        self.ids.set_used(id.0);
    }

    /// Forgets dead ids from now on (a replica that only needs the live books).
    pub fn forget_dead_ids(&mut self) {
        let mut ids = IdIndex::new(false);
        ids.reserve_live(self.ids.live());
        // Carry the live ids over (a replica may forget dead ids at any time).
        for (k, c) in self.cold.iter().enumerate() {
            if c.live {
                ids.set_live(c.id.0, k as u32);
            }
        }
        self.ids = ids;
    }

    /// Remembers dead ids from now on (after [`OrderBooks::forget_dead_ids`]).
    pub fn track_dead_ids(&mut self) {
        self.ids.track_used();
    }

    /// Marks the ids of a state's used ranges (before any order is inserted); until
    /// [`OrderBooks::end_load`] the state's live orders go in as live only (their ids are in
    /// the ranges).
    pub fn load_used_ids(&mut self, ranges: &[(u64, u64)]) {
        for &(lo, hi) in ranges {
            self.ids.load_used(lo, hi);
        }
        self.ids.set_loading(true);
    }

    /// Room in the live-id table for `n` orders about to be loaded (a state's), so that
    /// loading does not double it step by step.
    pub fn reserve_live_ids(&mut self, n: usize) {
        self.ids.reserve_live(n);
    }

    /// The state's orders are in: new live ids are recorded as used again.
    pub fn end_load(&mut self) {
        self.ids.set_loading(false);
    }

    #[inline]
    pub fn best(&self, book: &InstrumentBook, side: Side) -> Option<u32> {
        book.side(side).entries.last().map(|&(_, l)| l)
    }

    /// Adds a node at the back of its price level; returns its pool index. The instrument
    /// must have a book (`node.book` is its slot, or NIL to look it up here).
    pub fn insert(&mut self, node: OrderNode) -> u32 {
        self.insert_at(node, true)
    }

    /// Adds a node to the pool (its id live, in its account's list), linked at the back of
    /// its level when `link`; unlinked it is a pending stop, outside every level.
    #[inline(always)]
    fn insert_at(&mut self, mut node: OrderNode, link: bool) -> u32 {
        if node.book == NIL {
            node.book = self.slot(node.instrument).unwrap_or(NIL >> 1);
        }
        // First in its account's list.
        let head = self.account_head(node.account);
        node.acct_next = head;
        node.acct_prev = NIL;
        node.live = true;
        let (hot, cold) = node.split();
        let idx = match self.free_orders.pop() {
            Some(i) => {
                self.hot[i as usize] = hot;
                self.cold[i as usize] = cold;
                i
            }
            None => {
                self.hot.push(hot);
                self.cold.push(cold);
                (self.hot.len() - 1) as u32
            }
        };
        self.ids.set_live(node.id.0, idx);
        if link {
            self.link_back(idx, node.price);
        } else {
            let h = &mut self.hot[idx as usize];
            (h.level, h.prev, h.next) = (NIL, NIL, NIL);
        }
        // The old head (if any) gets its back link; with none, the order's own NIL link is
        // written again (no branch: whether an account has orders resting is random).
        let cold = self.cold.as_mut_slice();
        cold[select_unpredictable(head != NIL, head, idx) as usize].acct_prev =
            select_unpredictable(head != NIL, idx, NIL);
        self.set_account_head(node.account, idx);
        if let Some(c) = self.acct_counts.as_mut() {
            c.add(node.account, true);
        }
        idx
    }

    /// Starts counting resting orders per account (for a limit on them), from the orders
    /// resting now.
    pub fn count_accounts(&mut self) {
        let mut c = AccountCounts::default();
        for (h, k) in self.hot.iter().zip(&self.cold) {
            if k.live {
                c.add(h.account, true);
            }
        }
        self.acct_counts = Some(c);
    }

    /// An account's resting orders (0 unless counting is on).
    #[inline]
    pub fn open_orders(&self, account: AccountId) -> u32 {
        self.acct_counts.as_ref().map_or(0, |c| c.get(account))
    }

    /// The hot part of a pooled order.
    #[inline]
    pub fn hot(&self, i: u32) -> &Hot {
        &self.hot[i as usize]
    }

    /// The cold part of a pooled order.
    #[inline]
    pub fn cold(&self, i: u32) -> &Cold {
        &self.cold[i as usize]
    }

    /// Slots in the order pool (live or free).
    #[inline]
    pub fn pool_len(&self) -> usize {
        self.hot.len()
    }

    /// A pooled order, whole (a copy).
    #[inline]
    pub fn node(&self, i: u32) -> OrderNode {
        OrderNode::join(&self.hot[i as usize], &self.cold[i as usize])
    }

    /// The first resting order of an account (NIL: none).
    #[inline]
    fn account_head(&self, account: AccountId) -> u32 {
        if account.0 < DENSE_ACCOUNT_HEADS {
            self.acct_heads
                .get(account.0 as usize)
                .copied()
                .unwrap_or(NIL)
        } else {
            self.acct_sparse.get(&account.0).copied().unwrap_or(NIL)
        }
    }

    #[inline(always)]
    fn set_account_head(&mut self, account: AccountId, head: u32) {
        match self.acct_heads.get_mut(account.0 as usize) {
            Some(h) if account.0 < DENSE_ACCOUNT_HEADS => *h = head,
            _ => self.set_account_head_slow(account, head),
        }
    }

    #[inline(never)]
    fn set_account_head_slow(&mut self, account: AccountId, head: u32) {
        if account.0 < DENSE_ACCOUNT_HEADS {
            let i = account.0 as usize;
            if self.acct_heads.len() <= i {
                self.acct_heads.resize((i + 1).next_power_of_two(), NIL);
            }
            self.acct_heads[i] = head;
        } else if head == NIL {
            self.acct_sparse.remove(&account.0);
        } else {
            self.acct_sparse.insert(account.0, head);
        }
    }

    /// The pool indices of an account's resting orders (in no particular order): time
    /// proportional to the account's own orders.
    pub fn account_orders(&self, account: AccountId) -> impl Iterator<Item = u32> + '_ {
        let mut i = self.account_head(account);
        std::iter::from_fn(move || {
            (i != NIL).then(|| {
                let here = i;
                i = self.cold[i as usize].acct_next;
                here
            })
        })
    }

    /// Links a pool node at the back of the level of `price` (its price).
    #[inline(always)]
    fn link_back(&mut self, idx: u32, price: Price) {
        let h = self.hot[idx as usize];
        let Some(level) = self.level_for(h.book(), h.side(), price) else {
            return;
        };
        link_at(&mut self.hot, &mut self.levels, idx, h, level);
    }

    /// The level an order joins at `price` on one side of a book: from the price cache (a
    /// kept empty level comes back to life: one empty less), else found or opened the slow
    /// way. None when there is no such book.
    #[inline(always)]
    fn level_for(&mut self, book: u32, side: Side, price: Price) -> Option<u32> {
        let ladder = self.books.get_mut(book as usize)?.side_mut(side);
        let cached = ladder.cached(price);
        Some(if cached != NIL {
            ladder.empties -= (self.levels[cached as usize].count == 0) as usize;
            cached
        } else {
            self.level_at(book, side, price)
        })
    }

    /// One side of a book, with the level pool and its free list, borrowed together.
    #[inline(always)]
    fn side_and_levels(
        &mut self,
        book: u32,
        side: Side,
    ) -> (&mut Ladder, &mut Vec<Level>, &mut Vec<u32>) {
        let OrderBooks {
            books,
            levels,
            free_levels,
            ..
        } = self;
        (books[book as usize].side_mut(side), levels, free_levels)
    }

    /// The level at `price` on one side of a book when the price cache does not have it:
    /// found in the sorted entries (a kept empty level comes back to life) or opened.
    #[inline(never)]
    fn level_at(&mut self, book: u32, side: Side, price: Price) -> u32 {
        let (ladder, levels, free_levels) = self.side_and_levels(book, side);
        ladder.missed(price, levels);
        let k = key(side, price);
        let found = match ladder.entries.last() {
            Some(&(bk, l)) if bk == k => Ok(l),
            Some(&(bk, _)) if bk < k => Err(ladder.entries.len()),
            _ => match search_from_top(&ladder.entries, k) {
                Ok(p) => Ok(ladder.entries[p].1),
                Err(p) => Err(p),
            },
        };
        match found {
            Ok(l) => {
                if levels[l as usize].count == 0 {
                    ladder.empties -= 1;
                }
                l
            }
            Err(pos) => {
                let l = alloc_level(levels, free_levels, price);
                ladder.entries.insert(pos, (k, l));
                ladder.learn(price, levels);
                ladder.grow_for(price, levels);
                ladder.cache(price, l);
                l
            }
        }
    }

    /// Takes a node out of its level's queue (its own links are left as they were); true
    /// when the level is now empty.
    #[inline(always)]
    fn take_out(&mut self, idx: u32, h: &Hot) -> bool {
        let hot = self.hot.as_mut_slice();
        // Without branches: a missing neighbour's link is written to the order itself
        // (every caller sets the order's links afterwards).
        hot[select_unpredictable(h.prev != NIL, h.prev, idx) as usize].next = h.next;
        hot[select_unpredictable(h.next != NIL, h.next, idx) as usize].prev = h.prev;
        let lv = &mut self.levels[h.level as usize];
        lv.head = select_unpredictable(lv.head == idx, h.next, lv.head);
        lv.tail = select_unpredictable(lv.tail == idx, h.prev, lv.tail);
        lv.sub(h.qty.0);
        lv.count -= 1;
        lv.count == 0
    }

    /// Unlinks a node from its level, removing the level when it empties.
    #[inline(always)]
    fn unlink(&mut self, idx: u32) {
        let h = self.hot[idx as usize];
        let emptied = self.take_out(idx, &h);
        self.taken_out(h.book(), h.side(), h.level, emptied);
        let n = &mut self.hot[idx as usize];
        n.level = NIL;
        n.prev = NIL;
        n.next = NIL;
    }

    /// An order was taken out of `level` (`emptied`: it was the last one). An emptied level
    /// is popped (with any empty levels under it) when it is the best, else left in place
    /// and counted; the side is compacted when empties pile up. Decided with as few
    /// branches as possible: whether a level empties is as good as random.
    #[inline(always)]
    fn taken_out(&mut self, book: u32, side: Side, level: u32, emptied: bool) {
        let Some(b) = self.books.get_mut(book as usize) else {
            return;
        };
        let ladder = b.side_mut(side);
        let last = ladder.entries.last().map_or(NIL, |e| e.1);
        let top = last == level;
        debug_assert!(
            !emptied
                || ladder
                    .entries
                    .binary_search_by_key(&key(side, self.levels[level as usize].price), |e| e.0)
                    .is_ok()
        );
        ladder.empties += (emptied & !top) as usize;
        // One test for "emptied and the best" (LLVM would branch on each half of `&`).
        if ((!emptied as u32) | (last ^ level)) == 0 {
            let price = self.levels[level as usize].price;
            self.pop_empty_top(book, side, price, level);
        } else if ladder.empties >= 1024
            && ladder.empties > 8 * (ladder.entries.len() - ladder.empties)
        {
            self.compact_side(book, side);
        }
    }

    /// The best level of a side emptied: pop it and any empty levels under it.
    #[inline(never)]
    fn pop_empty_top(&mut self, book: u32, side: Side, price: Price, level: u32) {
        let (ladder, levels, free_levels) = self.side_and_levels(book, side);
        ladder.entries.pop();
        ladder.cache(price, NIL);
        free_levels.push(level);
        while let Some(&(_, l)) = ladder.entries.last() {
            let lv = &levels[l as usize];
            if lv.count != 0 {
                break;
            }
            ladder.entries.pop();
            ladder.cache(lv.price, NIL);
            ladder.empties -= 1;
            free_levels.push(l);
        }
    }

    /// Drops a side's empty levels (they outnumber the live ones eight to one).
    #[cold]
    #[inline(never)]
    fn compact_side(&mut self, book: u32, side: Side) {
        let (ladder, levels, free_levels) = self.side_and_levels(book, side);
        let mut entries = std::mem::take(&mut ladder.entries);
        entries.retain(|&(_, l)| {
            let lv = &levels[l as usize];
            let keep = lv.count != 0;
            if !keep {
                ladder.cache(lv.price, NIL);
                free_levels.push(l);
            }
            keep
        });
        ladder.entries = entries;
        ladder.empties = 0;
    }

    /// Removes a resting order; its id stays known (never reused).
    pub fn remove(&mut self, idx: u32) {
        let h = self.hot[idx as usize];
        if h.level != NIL {
            self.unlink(idx);
        }
        if (idx as usize) < self.ext.len() {
            self.drop_ext(idx);
        }
        let account = h.account;
        let (prev, next) = {
            let c = &self.cold[idx as usize];
            (c.acct_prev, c.acct_next)
        };
        // Out of its account's list without branches on its neighbours (a missing one's
        // link is written to the order itself, which leaves the lists now).
        let cold = self.cold.as_mut_slice();
        cold[select_unpredictable(prev != NIL, prev, idx) as usize].acct_next = next;
        cold[select_unpredictable(next != NIL, next, idx) as usize].acct_prev = prev;
        match self.acct_heads.get_mut(account.0 as usize) {
            Some(head) if account.0 < DENSE_ACCOUNT_HEADS => {
                *head = select_unpredictable(prev == NIL, next, *head);
            }
            _ if prev == NIL => self.set_account_head(account, next),
            _ => {}
        }
        if let Some(c) = self.acct_counts.as_mut() {
            c.add(account, false);
        }
        let c = &mut self.cold[idx as usize];
        c.live = false;
        let id = c.id;
        self.ids.set_dead(id.0);
        self.free_orders.push(idx);
    }

    /// Makes pool order `i` its side's TOP order.
    pub fn set_top(&mut self, slot: u32, side: Side, i: u32) {
        let seq = self.cold[i as usize].accept_seq;
        if let Some(b) = self.books.get_mut(slot as usize) {
            b.top[side as usize] = i + 1;
            b.top_seq[side as usize] = seq;
        }
    }

    /// Pool order `i`, resting at `price`, comes to rest: it becomes its side's TOP order
    /// (`pro_rata_top`) when its price is strictly better than every other order of its
    /// side, or it is alone there.
    #[inline(always)]
    pub fn rest_top(&mut self, slot: u32, side: Side, i: u32, price: Price) {
        if self.books.get(slot as usize).map(|b| b.policy) != Some(MatchPolicy::ProRataTop) {
            return;
        }
        let better = self
            .best_price_excluding(slot, side, i)
            .is_none_or(|b| b != price && side.better_or_equal(price, b));
        if better {
            self.set_top(slot, side, i);
        }
    }

    /// The side has no TOP order.
    pub fn clear_top(&mut self, slot: u32, side: Side) {
        if let Some(b) = self.books.get_mut(slot as usize) {
            b.top[side as usize] = 0;
        }
    }

    /// The pool index of a side's TOP order while it rests in the book (NIL: none).
    #[inline]
    pub fn top(&self, slot: u32, side: Side) -> u32 {
        let Some(b) = self.books.get(slot as usize) else {
            return NIL;
        };
        let t = b.top[side as usize];
        if t == 0 {
            return NIL;
        }
        let i = (t - 1) as usize;
        let valid = self
            .cold
            .get(i)
            .is_some_and(|c| c.live && c.accept_seq == b.top_seq[side as usize])
            && self.hot[i].level != NIL
            && self.hot[i].side() == side;
        if valid {
            i as u32
        } else {
            NIL
        }
    }

    /// An iceberg's or a pending stop's terms (plain: all zero).
    #[inline]
    pub fn ext(&self, idx: u32) -> Ext {
        self.ext.get(idx as usize).copied().unwrap_or_default()
    }

    /// Sets an order's terms, counting icebergs and stops in its book.
    #[inline(always)]
    pub fn set_ext(&mut self, idx: u32, e: Ext) {
        let i = idx as usize;
        if self.ext.len() <= i {
            if e.is_plain() {
                return;
            }
            // Room for the whole pool at once: growing with each new pool slot would
            // allocate on the hot path.
            let want = self.hot.capacity().max(i + 1);
            self.ext.reserve(want.saturating_sub(self.ext.len()));
            self.ext.resize(self.hot.len().max(i + 1), Ext::default());
        }
        let old = self.ext[i];
        let book = self.hot[i].book() as usize;
        if let Some(b) = self.books.get_mut(book) {
            b.icebergs = b.icebergs - old.is_iceberg() as u32 + e.is_iceberg() as u32;
            if let Some(st) = b.stops.as_mut() {
                st.count = st.count - old.is_stop() as u32 + e.is_stop() as u32;
            }
            b.refresh_general();
        }
        self.ext[i] = e;
    }

    /// Forgets the terms of an order that leaves the pool.
    fn drop_ext(&mut self, idx: u32) {
        if !self.ext[idx as usize].is_plain() {
            self.set_ext(idx, Ext::default());
        }
    }

    /// Sets an iceberg's shown peak.
    #[inline]
    pub fn set_peak(&mut self, idx: u32, peak: u64) {
        if let Some(e) = self.ext.get_mut(idx as usize) {
            e.peak = peak;
        }
    }

    /// Adds a pending stop to the pool, outside every level, and to its book's trigger
    /// queues; returns its pool index.
    pub fn insert_pending(&mut self, node: OrderNode, e: Ext) -> u32 {
        let (side, accept_seq) = (node.side, node.accept_seq);
        let idx = self.insert_at(node, false);
        let book = self.hot[idx as usize].book() as usize;
        if let Some(b) = self.books.get_mut(book) {
            b.stops
                .get_or_insert_with(|| Box::new(StopBook::new()))
                .push(side, e.stop, accept_seq, idx);
            b.refresh_general();
        }
        self.set_ext(idx, e);
        idx
    }

    /// True when pool index `idx` is a pending stop accepted as `accept_seq`.
    #[inline]
    pub fn is_pending(&self, idx: u32, accept_seq: u64) -> bool {
        (idx as usize) < self.cold.len()
            && self.cold[idx as usize].live
            && self.cold[idx as usize].accept_seq == accept_seq
            && self.ext(idx).is_stop()
    }

    /// A pending stop (elected) becomes a plain order at the back of its level, with `qty`
    /// open.
    pub fn activate(&mut self, idx: u32, qty: Qty) {
        self.set_ext(idx, Ext::default());
        self.hot[idx as usize].qty = qty;
        let price = self.cold[idx as usize].price;
        self.link_back(idx, price);
    }

    /// A pending stop (elected) stops being one: it is matched as an incoming order, still
    /// in the pool and outside every level ([`OrderBooks::activate`] or
    /// [`OrderBooks::remove`] come next).
    #[inline(always)]
    pub fn elect(&mut self, idx: u32) {
        let e = self.ext(idx);
        self.set_ext(
            idx,
            Ext {
                kind: super::ext::ELECTED,
                ..e
            },
        );
    }

    /// An iceberg whose peak was used up goes to the back of its level (same level, same
    /// open quantity).
    #[inline]
    pub fn requeue(&mut self, idx: u32) {
        let h = self.hot[idx as usize];
        let level = h.level;
        if level == NIL {
            return;
        }
        self.take_out(idx, &h);
        link_at(&mut self.hot, &mut self.levels, idx, h, level);
    }

    /// The best price of a side among orders other than `idx` (a modify's own old place
    /// does not count).
    pub fn best_price_excluding(&self, book: u32, side: Side, idx: u32) -> Option<Price> {
        let b = self.books.get(book as usize)?;
        for &(_, l) in b.side(side).entries.iter().rev() {
            let lv = &self.levels[l as usize];
            if lv.count == 0 || (lv.count == 1 && lv.head == idx) {
                continue;
            }
            return Some(lv.price);
        }
        None
    }

    /// The visible (market-data) total of a level: each iceberg counts its peak only.
    pub fn visible_qty(&self, level: u32) -> u128 {
        let lv = &self.levels[level as usize];
        let mut total = lv.qty();
        if self.ext.is_empty() {
            return total;
        }
        let mut i = lv.head;
        while i != NIL {
            let e = self.ext(i);
            if e.is_iceberg() {
                total -=
                    (self.hot[i as usize].qty.0 - e.peak.min(self.hot[i as usize].qty.0)) as u128;
            }
            i = self.hot[i as usize].next;
        }
        total
    }

    /// Every pending stop: (pool index), in acceptance order.
    pub fn pending_stops(&self, instrument: InstrumentId) -> Vec<u32> {
        let Some(b) = self.book(instrument) else {
            return Vec::new();
        };
        let Some(st) = b.stops.as_ref() else {
            return Vec::new();
        };
        let mut v: Vec<(u64, u32)> = st
            .entries()
            .filter(|&(seq, i)| self.is_pending(i, seq))
            .collect();
        v.sort_unstable();
        v.dedup();
        v.into_iter().map(|(_, i)| i).collect()
    }

    /// Sets a resting order's open quantity in place (keeps its queue position).
    #[inline]
    pub fn set_qty(&mut self, idx: u32, qty: Qty) {
        let n = &mut self.hot[idx as usize];
        let old = n.qty;
        n.qty = qty;
        let lv = &mut self.levels[n.level as usize];
        lv.sub(old.0);
        lv.add(qty.0);
    }

    /// Moves a resting order to the back of the level at `price` with `qty` open. Returns
    /// true when the opposite side's best price crosses `price` now (the order must trade).
    #[inline]
    pub fn move_to_back(&mut self, idx: u32, price: Price, qty: Qty) -> bool {
        let h = self.hot[idx as usize];
        let (book, side) = (h.book(), h.side());
        let emptied = self.take_out(idx, &h);
        self.taken_out(book, side, h.level, emptied);
        let Some(level) = self.level_for(book, side, price) else {
            return false;
        };
        // No call from here on: the pool and the levels as slices, whose pointers and
        // lengths stay in registers.
        let OrderBooks {
            books,
            hot,
            cold,
            levels,
            ..
        } = self;
        let levels = levels.as_mut_slice();
        cold[idx as usize].price = price;
        link_at(hot, levels, idx, Hot { qty, ..h }, level);
        let Some(b) = books.get(book as usize) else {
            return false;
        };
        match b.side(side.opposite()).entries.last() {
            None => false,
            Some(&(_, l)) => {
                // A buy crosses an ask at or below its price, a sell a bid at or above it
                // (the side is as good as random: no branch on it).
                let p = levels[l as usize].price;
                let (lo, hi) = select_unpredictable(side == Side::Buy, (p, price), (price, p));
                lo <= hi
            }
        }
    }

    /// The resting orders of an instrument: bids best first, then asks best first, each
    /// level in queue order.
    pub fn resting_orders(&self, instrument: InstrumentId) -> Vec<RestingOrder> {
        let mut out = Vec::new();
        let Some(book) = self.book(instrument) else {
            return out;
        };
        for side in [Side::Buy, Side::Sell] {
            for &(_, l) in book.side(side).entries.iter().rev() {
                // Empty levels have head == NIL and are skipped by the loop.
                let mut i = self.levels[l as usize].head;
                while i != NIL {
                    let (h, c) = (&self.hot[i as usize], &self.cold[i as usize]);
                    out.push(RestingOrder {
                        side,
                        price: c.price,
                        order_id: c.id,
                        account: h.account,
                        qty: h.qty,
                    });
                    i = h.next;
                }
            }
        }
        out
    }

    /// The resting orders of an instrument as pool nodes, in the order of
    /// [`OrderBooks::resting_orders`].
    pub fn resting_nodes(&self, instrument: InstrumentId) -> Vec<OrderNode> {
        let mut out = Vec::new();
        if let Some(book) = self.book(instrument) {
            for side in [Side::Buy, Side::Sell] {
                for &(_, l) in book.side(side).entries.iter().rev() {
                    let mut i = self.levels[l as usize].head;
                    while i != NIL {
                        out.push(self.node(i));
                        i = self.hot[i as usize].next;
                    }
                }
            }
        }
        out
    }

    /// Every id used (resting or not) as ascending disjoint inclusive ranges.
    pub fn used_id_ranges(&self) -> Vec<(u64, u64)> {
        self.ids.used_ranges()
    }

    /// Ranges the id index holds for used ids (16 bytes each, beyond the live table).
    pub fn used_id_entries(&self) -> usize {
        self.ids.used_entries()
    }

    /// Aggregated depth of one side, best first: (price, total lots, order count). Each
    /// iceberg counts its shown peak only (the public view of the book).
    pub fn depth(
        &self,
        instrument: InstrumentId,
        side: Side,
    ) -> impl Iterator<Item = (Price, u128, u32)> + '_ {
        let icebergs = self.book(instrument).is_some_and(|b| b.icebergs != 0);
        self.book(instrument)
            .into_iter()
            .flat_map(move |b| b.side(side).entries.iter().rev())
            .filter(|&&(_, l)| self.levels[l as usize].count != 0)
            .map(move |&(_, l)| {
                let lv = &self.levels[l as usize];
                let q = if icebergs {
                    self.visible_qty(l)
                } else {
                    lv.qty()
                };
                (lv.price, q, lv.count)
            })
    }

    /// The number of live orders (resting, and pending stops).
    #[inline]
    pub fn live_count(&self) -> usize {
        self.ids.live()
    }

    /// Pending stop orders in every book.
    pub fn pending_count(&self) -> usize {
        self.books
            .iter()
            .filter_map(|b| b.stops.as_ref())
            .map(|s| s.count as usize)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::book::ladder::{MIN_SLOTS, SLOTS};
    use crate::command::NewOrder;

    fn node(id: u64, side: Side, price: i64, qty: u64, seq: u64) -> OrderNode {
        let o = NewOrder::limit(
            InstrumentId(0),
            AccountId(1),
            OrderId(id),
            side,
            Price(price),
            Qty(qty),
        );
        OrderNode::from_new(&o, Qty(qty), seq)
    }

    /// A move says whether the order now crosses the other side's best price, for either
    /// side, at, inside and past that price; the queues it leaves and joins stay exact
    /// (head, tail, links, totals), also when it was alone or last in its level.
    #[test]
    fn a_move_relinks_its_order_and_says_whether_it_crosses() {
        let mut b = OrderBooks::with_capacity(64, 64);
        b.add_instrument(InstrumentId(0));
        let bid1 = b.insert(node(1, Side::Buy, 100, 5, 1));
        let bid2 = b.insert(node(2, Side::Buy, 100, 7, 2));
        let bid3 = b.insert(node(3, Side::Buy, 99, 1, 3));
        let ask = b.insert(node(4, Side::Sell, 105, 3, 4));
        let queue = |b: &OrderBooks, side: Side, price: i64| -> Vec<u64> {
            b.resting_orders(InstrumentId(0))
                .into_iter()
                .filter(|o| o.side == side && o.price == Price(price))
                .map(|o| o.order_id.0)
                .collect()
        };
        // The head of a two-order level moves below the ask: no cross.
        assert!(!b.move_to_back(bid1, Price(104), Qty(6)));
        assert_eq!(queue(&b, Side::Buy, 100), vec![2]);
        assert_eq!(queue(&b, Side::Buy, 104), vec![1]);
        let lv = &b.levels[b.hot(bid2).level as usize];
        assert_eq!((lv.head, lv.tail, lv.count, lv.qty()), (bid2, bid2, 1, 7));
        // The last order of a level joins the back of another: it follows order 1.
        assert!(!b.move_to_back(bid2, Price(104), Qty(7)));
        assert_eq!(queue(&b, Side::Buy, 104), vec![1, 2]);
        assert_eq!((b.hot(bid1).next, b.hot(bid2).prev), (bid2, bid1));
        let lv = &b.levels[b.hot(bid1).level as usize];
        assert_eq!((lv.head, lv.tail, lv.count, lv.qty()), (bid1, bid2, 2, 13));
        // A buy at the ask crosses; a sell at or below the best bid crosses, above it not.
        assert!(b.move_to_back(bid3, Price(105), Qty(1)));
        assert!(!b.move_to_back(ask, Price(106), Qty(3)));
        assert!(b.move_to_back(ask, Price(105), Qty(3)));
        assert!(b.move_to_back(ask, Price(90), Qty(3)));
        assert_eq!(queue(&b, Side::Sell, 90), vec![4]);
        // The middle of a three-order level leaves: its neighbours link to each other.
        let bid5 = b.insert(node(5, Side::Buy, 104, 2, 5));
        assert!(b.move_to_back(bid2, Price(95), Qty(7)));
        assert_eq!(queue(&b, Side::Buy, 104), vec![1, 5]);
        assert_eq!((b.hot(bid1).next, b.hot(bid5).prev), (bid5, bid1));
        assert_eq!(b.live_count(), 5);
    }

    /// Each account's resting orders are found without looking at anyone else's, dense and
    /// sparse account ids alike, through inserts and removals in any order.
    #[test]
    fn account_lists_follow_inserts_and_removals() {
        let mut b = OrderBooks::with_capacity(64, 64);
        b.add_instrument(InstrumentId(0));
        let big = 1u64 << 40;
        let mut idx = Vec::new();
        for id in 1..=40u64 {
            let mut n = node(
                id,
                if id % 2 == 0 { Side::Buy } else { Side::Sell },
                100,
                1,
                id,
            );
            n.account = AccountId(if id % 3 == 0 { big } else { id % 3 });
            idx.push(b.insert(n));
        }
        for (k, &i) in idx.iter().enumerate() {
            if k % 4 == 1 {
                b.remove(i);
            }
        }
        for a in [1, 2, big] {
            let mut got: Vec<u64> = b
                .account_orders(AccountId(a))
                .map(|i| b.cold(i).id.0)
                .collect();
            got.sort();
            let want: Vec<u64> = (1..=40u64)
                .filter(|id| (if id % 3 == 0 { big } else { id % 3 }) == a)
                .filter(|id| (id - 1) % 4 != 1)
                .collect();
            assert_eq!(got, want, "account {a}");
        }
        for &i in &idx {
            if b.cold(i).live {
                b.remove(i);
            }
        }
        assert!(b.acct_sparse.is_empty());
        assert_eq!(b.account_orders(AccountId(1)).count(), 0);
    }

    /// Every level inside a side's cache window is cached, and every cached slot names a
    /// level of that side at that price.
    fn assert_cache_agrees(b: &OrderBooks, ladder: &Ladder) {
        for &(_, l) in &ladder.entries {
            let p = b.levels[l as usize].price;
            let c = ladder.cached(p);
            assert!(c == l || c == NIL, "cache disagrees at {p:?}");
            let d = p.0.wrapping_sub(ladder.slot_base) as u64;
            assert_eq!(d % ladder.unit(), 0, "every level price is on the grid");
            if d / ladder.unit() < ladder.slots.len() as u64 {
                assert_eq!(c, l, "a level inside the window is cached");
            }
        }
        for (off, &l) in ladder.slots.iter().enumerate() {
            if l != NIL {
                assert_eq!(
                    b.levels[l as usize].price.0,
                    ladder.slot_base + (off as u64 * ladder.unit()) as i64
                );
                assert!(ladder.entries.iter().any(|e| e.1 == l));
            }
        }
    }

    /// The level cache starts small, grows while levels open outside it, and always agrees
    /// with the sorted entries.
    #[test]
    fn the_level_cache_grows_with_the_prices_used_and_stays_exact() {
        let mut b = OrderBooks::with_capacity(4096, 4096);
        b.add_instrument(InstrumentId(0));
        let mut x = 12345u64;
        for id in 1..=3000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let price = 100_000 + ((x >> 33) % 6000) as i64 - 3000;
            let idx = b.insert(node(id, Side::Buy, price, 1, id));
            if id % 3 == 0 {
                b.remove(idx);
            }
        }
        let book = b.book(InstrumentId(0)).expect("book");
        let ladder = &book.bids;
        assert!(ladder.slots.len() > MIN_SLOTS && ladder.slots.len() <= SLOTS);
        assert_cache_agrees(&b, ladder);
        let prices: Vec<i64> = b
            .resting_orders(InstrumentId(0))
            .iter()
            .map(|o| o.price.0)
            .collect();
        assert!(prices.windows(2).all(|w| w[0] >= w[1]), "bids best first");
        assert_eq!(prices.len(), 2000);
    }

    /// The search from the best end agrees with a binary search of the whole side for
    /// every key, present or not, on sides of every length.
    #[test]
    fn search_from_top_agrees_with_a_binary_search() {
        for n in 0..70usize {
            let entries: Vec<(i64, u32)> = (0..n).map(|i| (3 * i as i64 - 50, i as u32)).collect();
            for k in -60..(3 * n as i64) {
                assert_eq!(
                    search_from_top(&entries, k),
                    entries.binary_search_by_key(&k, |e| e.0),
                    "n {n}, k {k}"
                );
            }
        }
    }

    /// A price that drifts far past a full-size window brings the window along (after
    /// enough orders out there), and the cache still agrees with the entries.
    #[test]
    fn the_level_cache_follows_a_drifting_price() {
        let mut b = OrderBooks::with_capacity(1 << 14, 1 << 14);
        b.add_instrument(InstrumentId(0));
        let mut id = 0u64;
        let mut live = std::collections::VecDeque::new();
        // Prices from 1,000,000 up to 1,200,000 (fifty times the window), odd and even
        // (the grid is one unit).
        for step in 0..2000i64 {
            let mid = 1_000_000 + step * 100;
            for k in 0..8 {
                id += 1;
                let price = mid - 100 * k - (k % 2);
                live.push_back(b.insert(node(id, Side::Buy, price, 1, id)));
                if live.len() > 64 {
                    let i = live.pop_front().expect("live");
                    b.remove(i);
                }
            }
        }
        let ladder = &b.book(InstrumentId(0)).expect("book").bids;
        assert_eq!(ladder.slots.len(), SLOTS);
        // It re-centres every RECENTER_AFTER orders placed outside it: on a price moving
        // this fast it lags the flow by at most that many orders' drift.
        assert!(
            ladder.slot_base > 1_150_000,
            "the window followed the flow: base {}",
            ladder.slot_base
        );
        assert_cache_agrees(&b, ladder);
    }

    /// Prices in units finer than the prices used (a cent market in $0.0001): the side
    /// learns the grid, one slot per grid step, so a book 2,000 steps wide is all in the
    /// window; a price off the grid refines it, and the cache agrees with the entries
    /// throughout.
    #[test]
    fn the_level_cache_learns_the_price_grid() {
        let mut b = OrderBooks::with_capacity(1 << 14, 1 << 14);
        b.add_instrument(InstrumentId(0));
        let mut x = 99u64;
        let mut id = 0u64;
        for _ in 0..6000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            id += 1;
            let price = 5_000_000 + 100 * (((x >> 33) % 2000) as i64 - 1000);
            b.insert(node(id, Side::Sell, price, 1, id));
        }
        let asks = &b.book(InstrumentId(0)).expect("book").asks;
        assert_eq!(asks.unit(), 100);
        assert_cache_agrees(&b, asks);
        let levels = asks.entries.len();
        let cached = asks.slots.iter().filter(|&&l| l != NIL).count();
        assert_eq!(cached, levels, "every level is in the window");
        for (price, step) in [(5_000_050, 50), (4_999_999, 1)] {
            id += 1;
            b.insert(node(id, Side::Sell, price, 1, id));
            let asks = &b.book(InstrumentId(0)).expect("book").asks;
            assert_eq!(asks.unit(), step);
            assert_cache_agrees(&b, asks);
        }
    }

    /// A book that uses few prices keeps a small cache.
    #[test]
    fn a_narrow_book_keeps_a_small_cache() {
        let mut b = OrderBooks::with_capacity(64, 64);
        b.add_instrument(InstrumentId(0));
        for id in 1..=40u64 {
            b.insert(node(id, Side::Sell, 100 + (id % 10) as i64, 1, id));
        }
        assert_eq!(
            b.book(InstrumentId(0)).expect("book").asks.slots.len(),
            MIN_SLOTS
        );
    }

    /// The largest instrument id costs one 4 KiB index page and one book, like id 1.
    #[test]
    fn a_large_instrument_id_costs_no_more_than_a_small_one() {
        let mut b = OrderBooks::with_capacity(16, 16);
        let big = InstrumentId(crate::types::MAX_INSTRUMENTS - 1);
        assert!(b.add_instrument(big));
        assert!(!b.add_instrument(big));
        assert!(b.add_instrument(InstrumentId(1)));
        assert_eq!(b.books.len(), 2);
        assert_eq!(b.index.pages.iter().filter(|p| p.is_some()).count(), 2);
        assert!(b.index.pages.len() <= crate::types::MAX_INSTRUMENTS as usize / BOOK_PAGE);
        assert_eq!(
            b.instruments().collect::<Vec<_>>(),
            vec![InstrumentId(1), big]
        );
        assert!(b.book(InstrumentId(2)).is_none());
    }

    /// A level's 96-bit total is exact past `u64::MAX`, up and down.
    #[test]
    fn level_totals_carry_past_u64() {
        let mut lv = Level::new(Price(1));
        for _ in 0..3 {
            lv.add(u64::MAX);
        }
        assert_eq!(lv.qty(), 3 * u64::MAX as u128);
        lv.sub(u64::MAX);
        lv.sub(5);
        assert_eq!(lv.qty(), 2 * u64::MAX as u128 - 5);
        lv.sub(u64::MAX);
        lv.sub(u64::MAX - 5);
        assert_eq!(lv.qty(), 0);
    }

    #[test]
    fn levels_keep_price_then_fifo_order() {
        let mut b = OrderBooks::with_capacity(16, 16);
        assert!(b.add_instrument(InstrumentId(0)));
        assert!(!b.add_instrument(InstrumentId(0)));
        let a = b.insert(node(1, Side::Buy, 100, 5, 1));
        b.insert(node(2, Side::Buy, 101, 1, 2));
        b.insert(node(3, Side::Buy, 100, 2, 3));
        b.insert(node(4, Side::Sell, 103, 7, 4));
        b.insert(node(5, Side::Sell, 102, 7, 5));
        let ids: Vec<u64> = b
            .resting_orders(InstrumentId(0))
            .iter()
            .map(|o| o.order_id.0)
            .collect();
        assert_eq!(ids, vec![2, 1, 3, 5, 4]);
        let depth: Vec<_> = b.depth(InstrumentId(0), Side::Buy).collect();
        assert_eq!(depth, vec![(Price(101), 1, 1), (Price(100), 7, 2)]);
        b.remove(a);
        assert_eq!(b.id_state(OrderId(1)), IdState::Dead);
        assert_eq!(b.id_state(OrderId(9)), IdState::Unknown);
        let depth: Vec<_> = b.depth(InstrumentId(0), Side::Buy).collect();
        assert_eq!(depth, vec![(Price(101), 1, 1), (Price(100), 2, 1)]);
        let IdState::Live(i2) = b.id_state(OrderId(2)) else {
            panic!("order 2 rests")
        };
        b.move_to_back(i2, Price(100), Qty(4));
        let depth: Vec<_> = b.depth(InstrumentId(0), Side::Buy).collect();
        assert_eq!(depth, vec![(Price(100), 6, 2)]);
        let ids: Vec<u64> = b
            .resting_orders(InstrumentId(0))
            .iter()
            .map(|o| o.order_id.0)
            .collect();
        assert_eq!(ids, vec![3, 2, 5, 4]);
    }

    #[test]
    fn empty_levels_are_reused_then_compacted_and_the_book_stays_exact() {
        let mut b = OrderBooks::with_capacity(4096, 4096);
        b.add_instrument(InstrumentId(0));
        let mut idx = Vec::new();
        for p in 0..3000u64 {
            idx.push(b.insert(node(p + 1, Side::Buy, p as i64, 1, p)));
        }
        // Empty every level but the best and a few in the middle: the middle ones stay as
        // empty levels until there are enough of them to compact.
        for (p, &i) in idx.iter().enumerate() {
            if p != 2999 && p % 500 != 0 {
                b.remove(i);
            }
        }
        let ladder = &b.book(InstrumentId(0)).expect("book").bids;
        assert!(
            ladder.entries.len() < 3000,
            "compacted: {}",
            ladder.entries.len()
        );
        let depth: Vec<i64> = b
            .depth(InstrumentId(0), Side::Buy)
            .map(|(p, _, _)| p.0)
            .collect();
        assert_eq!(depth, vec![2999, 2500, 2000, 1500, 1000, 500, 0]);
        // A new order at a price whose level was compacted away gets a fresh level.
        b.insert(node(9999, Side::Buy, 1234, 3, 9999));
        let depth: Vec<(i64, u128)> = b
            .depth(InstrumentId(0), Side::Buy)
            .map(|(p, q, _)| (p.0, q))
            .collect();
        assert_eq!(depth[4], (1234, 3));
        assert_eq!(depth.len(), 8);
    }
}
