//! [`History`]: the consumer that projects the event stream into a [`HistoryStore`].

use super::*;

/// Something the current command touched.
#[derive(Clone, Copy, Debug)]
enum Touched {
    Order(u64),
    Trade(usize),
    Rejected(usize),
    Transfer(usize),
    Balance(usize),
}

/// When the history consumer commits.
///
/// A commit writes each changed order once, however often it changed since the last one,
/// and each B-tree page once, however many rows it took: the more a commit holds, the less
/// each event costs. So the window between commits follows the load: `max_delay` while the
/// store keeps up, and, once a commit takes longer than a quarter of that (the store is
/// behind, and the rows are waiting anyway), four times the last commit's duration, up to
/// `max_window`.
#[derive(Clone, Debug)]
pub struct HistoryConfig {
    /// Commit at the end of a ring batch once this many events are pending.
    pub min_events: u64,
    /// ... or once this long has passed since the last commit (when the store keeps up).
    pub max_delay: Duration,
    /// The longest window between commits when the store is behind.
    pub max_window: Duration,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            min_events: 262_144,
            max_delay: Duration::from_millis(10),
            max_window: Duration::from_millis(100),
        }
    }
}

impl HistoryConfig {
    /// The time to wait after a commit that took `took`.
    pub fn window(&self, took: Duration) -> Duration {
        (took * 4).clamp(self.max_delay, self.max_window.max(self.max_delay))
    }
}

/// Where the names of instruments listed while the consumer runs come from (read only when
/// an `InstrumentAdded` event names an instrument without a name yet).
pub type SymbolSource = std::sync::Arc<dyn Fn(InstrumentId) -> Option<String> + Send + Sync>;

/// The history consumer. See the module docs.
pub struct History<S: HistoryStore> {
    store: S,
    cfg: HistoryConfig,
    /// Live orders' rows.
    live: FxHashMap<u64, OrderRow>,
    /// Live orders changed since the last commit.
    dirty: FxHashSet<u64>,
    batch: Batch,
    /// What the current command touched, stamped with its time at its last event.
    touched: Vec<Touched>,
    /// (order id, place in the batch) of each row, for putting rows in key order.
    sort_keys: Vec<(u64, u32)>,
    /// The first event sequence of the current command, while one is open.
    cmd_first: Option<u64>,
    /// Events at or below this were applied before (a restart).
    applied: u64,
    pending: u64,
    last_commit: Instant,
    /// How long the last commit took.
    last_commit_took: Duration,
    clocks: Option<ClockReader>,
    /// The time of the last command (when no clock is published: 0).
    clock: u64,
    names: FxHashMap<u32, String>,
    symbol_source: Option<SymbolSource>,
    /// Funded instruments' settlement terms (learnt from the stream, kept in the store).
    defs: FxHashMap<u32, FundedRow>,
    /// The last fill on a funded instrument until its fees arrive: (buyer, seller,
    /// instrument, price, lots).
    pending_fill: Option<(u64, u64, u32, i64, u64)>,
    /// The order whose terms made it a stop (its `accepted` comes next).
    next_stop: Option<OrderId>,
    /// The order whose terms made it an iceberg, and its display size.
    next_display: Option<(OrderId, u64)>,
    /// The first store error: the consumer fails (halt by default).
    pub error: Option<HistoryError>,
    /// Commits done.
    pub commits: u64,
}

impl<S: HistoryStore> History<S> {
    /// A consumer writing into `store`, carrying on from what it holds.
    pub fn new(mut store: S, cfg: HistoryConfig) -> Result<Self, HistoryError> {
        let applied = store.last_seq()?;
        let defs = store
            .funded()?
            .into_iter()
            .map(|f| (f.instrument, f))
            .collect();
        let live = store
            .active_rows()?
            .into_iter()
            .map(|r| (r.order_id, r))
            .collect();
        Ok(History {
            store,
            cfg,
            live,
            dirty: FxHashSet::default(),
            batch: Batch {
                last_seq: applied,
                ..Batch::default()
            },
            touched: Vec::new(),
            sort_keys: Vec::new(),
            cmd_first: None,
            applied,
            pending: 0,
            last_commit: Instant::now(),
            last_commit_took: Duration::ZERO,
            clocks: None,
            clock: 0,
            names: FxHashMap::default(),
            symbol_source: None,
            defs,
            pending_fill: None,
            next_stop: None,
            next_display: None,
            error: None,
            commits: 0,
        })
    }

    /// Records instrument names (written with the next commit).
    pub fn with_symbols(mut self, names: impl IntoIterator<Item = (InstrumentId, String)>) -> Self {
        for (i, n) in names {
            self.names.insert(i.0, n.clone());
            self.batch.symbols.push((i.0, n));
        }
        self
    }

    /// Names instruments listed later: an `InstrumentAdded` event for an instrument without
    /// a name asks `source` for it (written with the next commit).
    pub fn with_symbol_source(mut self, source: SymbolSource) -> Self {
        self.symbol_source = Some(source);
        self
    }

    /// The last event sequence the store holds (after the last commit).
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Applies journaled events the store does not hold yet (a restart after a crash):
    /// `(sequence, event, engine time of its command)`, in order; events at or below the
    /// store's sequence are skipped, so running it twice changes nothing. Commits.
    pub fn catch_up(
        &mut self,
        events: impl IntoIterator<Item = (u64, Event, u64)>,
    ) -> Result<u64, HistoryError> {
        let mut n = 0;
        for (seq, e, ts) in events {
            if seq <= self.batch.last_seq {
                continue;
            }
            self.clock = ts;
            self.apply(&e, seq);
            n += 1;
            if e.is_last_of_command() {
                self.stamp();
                if self.pending >= self.cfg.min_events {
                    self.commit()?;
                }
            }
        }
        self.commit()?;
        Ok(n)
    }

    /// The store, for queries after the run.
    pub fn into_store(self) -> S {
        self.store
    }

    fn finish_row(&mut self, id: u64) {
        if let Some(row) = self.live.remove(&id) {
            self.dirty.remove(&id);
            self.batch.orders.push(row);
        }
    }

    fn touch(&mut self, id: u64, seq: u64) -> Option<&mut OrderRow> {
        let row = self.live.get_mut(&id)?;
        row.last_seq = seq;
        self.dirty.insert(id);
        self.touched.push(Touched::Order(id));
        Some(row)
    }

    fn apply(&mut self, e: &Event, seq: u64) {
        self.cmd_first.get_or_insert(seq);
        self.pending += 1;
        self.batch.last_seq = seq;
        match e.kind {
            EventKind::Accepted { .. } => {
                if let Some(o) = e.kind.accepted_order() {
                    self.accepted(&o, seq)
                }
            }
            EventKind::Fill {
                instrument,
                taker,
                maker,
                maker_account,
                price,
                qty,
                taker_side,
                ..
            } => {
                let mut accounts = [0u64, maker_account.0];
                for (k, id) in [taker, maker].into_iter().enumerate() {
                    if let Some(row) = self.touch(id.0, seq) {
                        if k == 1 && row.display != 0 {
                            // A resting iceberg: a used-up peak with lots left shows a new
                            // one at the back of the level (a new time priority).
                            let open = row.open_qty;
                            let peak = match row.peak {
                                0 => row.display.min(open),
                                p => p,
                            };
                            let (peak, left) =
                                (peak.saturating_sub(qty.0), open.saturating_sub(qty.0));
                            if left > 0 && peak == 0 {
                                row.priority_seq = seq;
                            }
                            row.peak = peak;
                        }
                        row.open_qty = row.open_qty.saturating_sub(qty.0);
                        row.filled_qty += qty.0;
                        accounts[k] = row.account;
                        if row.open_qty == 0 {
                            row.status = OrderStatus::Filled;
                        }
                    }
                }
                self.touched.push(Touched::Trade(self.batch.trades.len()));
                self.batch.trades.push(TradeRow {
                    seq,
                    instrument: instrument.0,
                    taker_order: taker.0,
                    maker_order: maker.0,
                    taker_account: accounts[0],
                    maker_account: accounts[1],
                    taker_side,
                    price: price.0,
                    qty: qty.0,
                    fees: None,
                    ts: self.clock,
                });
                if self.defs.contains_key(&instrument.0) {
                    let (buyer, seller) = match taker_side {
                        Side::Buy => (accounts[0], accounts[1]),
                        Side::Sell => (accounts[1], accounts[0]),
                    };
                    self.pending_fill = Some((buyer, seller, instrument.0, price.0, qty.0));
                }
                for id in [taker, maker] {
                    if self
                        .live
                        .get(&id.0)
                        .is_some_and(|r| r.status == OrderStatus::Filled)
                    {
                        self.finish_row(id.0);
                    }
                }
            }
            EventKind::FillFees {
                buyer_fee,
                seller_fee,
                ..
            } => {
                let (bf, sf) = (buyer_fee.get(), seller_fee.get());
                if let Some(t) = self.batch.trades.last_mut() {
                    t.fees = Some((bf, sf));
                }
                if let Some((buyer, seller, inst, price, lots)) = self.pending_fill.take() {
                    if let Some(&d) = self.defs.get(&inst) {
                        let (base, quote) = (d.base, d.quote);
                        let notional = price as i128 * lots as i128 * d.quote_per_tick_lot as i128;
                        let units = lots as i128 * d.base_per_lot as i128;
                        for (n, (account, asset, delta, kind)) in [
                            (buyer, quote, -(notional + bf), "buy"),
                            (buyer, base, units, "buy"),
                            (seller, base, -units, "sell"),
                            (seller, quote, notional - sf, "sell"),
                        ]
                        .into_iter()
                        .enumerate()
                        {
                            self.balance_change(seq, n as u8, account, asset, delta, kind);
                        }
                    }
                }
            }
            EventKind::InstrumentAdded(def) => self.instrument_added(def),
            EventKind::Cancelled {
                order_id, reason, ..
            } => self.closed(order_id, seq, OrderStatus::Cancelled, Some(reason)),
            EventKind::Expired { order_id, .. } => {
                self.closed(order_id, seq, OrderStatus::Expired, None)
            }
            EventKind::OrderTerms { terms, .. } => {
                self.next_stop = terms.stop.map(|_| terms.order_id);
                self.next_display =
                    (terms.display.0 != 0).then_some((terms.order_id, terms.display.0));
            }
            EventKind::Triggered { order_id, .. } => {
                if let Some(row) = self.touch(order_id.0, seq) {
                    row.status = OrderStatus::Active;
                    row.reason = Some(Cow::Borrowed("triggered"));
                    row.priority_seq = seq;
                }
            }
            EventKind::Modified {
                order_id,
                price,
                qty,
                kept_priority,
                ..
            } => {
                if let Some(row) = self.touch(order_id.0, seq) {
                    row.price = price.0;
                    row.open_qty = qty.0;
                    if !kept_priority {
                        row.priority_seq = seq;
                        row.peak = 0;
                    } else if row.peak != 0 {
                        row.peak = row.peak.min(qty.0);
                    }
                }
            }
            EventKind::Rejected {
                instrument,
                order_id: Some(id),
                account,
                code,
            } => self.rejected(id, instrument, account, code, seq),
            EventKind::Deposited {
                account,
                asset,
                amount,
            } => self.transfer(seq, account, asset.0, amount.get()),
            EventKind::Withdrawn {
                account,
                asset,
                amount,
            } => self.transfer(seq, account, asset.0, -amount.get()),
            _ => {}
        }
    }

    fn accepted(&mut self, o: &NewOrder, seq: u64) {
        let row = OrderRow {
            order_id: o.order_id.0,
            instrument: o.instrument.0,
            account: o.account.0,
            side: o.side,
            order_type: o.order_type,
            tif: o.tif,
            expiry: if o.tif == TimeInForce::Gtd {
                o.expiry.0
            } else {
                0
            },
            price: if o.order_type == OrderType::Market {
                0
            } else {
                o.price.0
            },
            orig_qty: o.qty.0,
            open_qty: o.qty.0,
            filled_qty: 0,
            status: if self.next_stop.take() == Some(o.order_id) {
                OrderStatus::Pending
            } else {
                OrderStatus::Active
            },
            reason: None,
            accept_seq: seq,
            priority_seq: seq,
            last_seq: seq,
            created_ts: self.clock,
            updated_ts: self.clock,
            display: match self.next_display.take() {
                Some((id, d)) if id == o.order_id => d,
                _ => 0,
            },
            peak: 0,
        };
        self.live.insert(row.order_id, row);
        self.dirty.insert(o.order_id.0);
        self.touched.push(Touched::Order(o.order_id.0));
    }

    fn closed(&mut self, id: OrderId, seq: u64, status: OrderStatus, why: Option<CancelReason>) {
        if let Some(row) = self.touch(id.0, seq) {
            row.open_qty = 0;
            row.status = status;
            row.reason = why.map(|r| Cow::Borrowed(r.as_str()));
            self.finish_row(id.0);
        }
    }

    fn rejected(
        &mut self,
        id: OrderId,
        instrument: Option<InstrumentId>,
        account: AccountId,
        code: RejectCode,
        seq: u64,
    ) {
        // A reject that names a live order (a cancel by someone else, a bad modify) does
        // not change it; a rejected new order gets a row unless its id has one already.
        if self.live.contains_key(&id.0) {
            return;
        }
        self.touched
            .push(Touched::Rejected(self.batch.rejected.len()));
        self.batch.rejected.push(OrderRow {
            order_id: id.0,
            instrument: instrument.map_or(u32::MAX, |i| i.0),
            account: account.0,
            side: Side::Buy,
            order_type: OrderType::Limit,
            tif: TimeInForce::Gtc,
            expiry: 0,
            price: 0,
            orig_qty: 0,
            open_qty: 0,
            filled_qty: 0,
            status: OrderStatus::Rejected,
            reason: Some(Cow::Borrowed(code.as_str())),
            accept_seq: seq,
            priority_seq: seq,
            last_seq: seq,
            created_ts: self.clock,
            updated_ts: self.clock,
            display: 0,
            peak: 0,
        });
    }

    fn balance_change(
        &mut self,
        seq: u64,
        n: u8,
        account: u64,
        asset: u16,
        delta: i128,
        kind: &'static str,
    ) {
        self.touched
            .push(Touched::Balance(self.batch.balance_changes.len()));
        self.batch.balance_changes.push(BalanceChangeRow {
            seq,
            n,
            account,
            asset,
            delta,
            kind,
            ts: self.clock,
        });
    }

    fn transfer(&mut self, seq: u64, account: AccountId, asset: u16, amount: i128) {
        let kind = if amount < 0 { "withdrawal" } else { "deposit" };
        self.balance_change(seq, 0, account.0, asset, amount, kind);
        self.batch.transfers.push(TransferRow {
            seq,
            account: account.0,
            asset,
            amount,
            ts: self.clock,
        });
        self.touched
            .push(Touched::Transfer(self.batch.transfers.len() - 1));
    }

    /// Stamps what the current command touched with its time.
    fn stamp(&mut self) {
        let ts = self.clock;
        let first = self.cmd_first.take().unwrap_or(0);
        let stamp_row = |r: &mut OrderRow| {
            r.updated_ts = ts;
            if r.accept_seq >= first {
                r.created_ts = ts;
            }
        };
        let mut touched = std::mem::take(&mut self.touched);
        for &t in &touched {
            match t {
                Touched::Order(id) => {
                    if let Some(r) = self.live.get_mut(&id) {
                        stamp_row(r);
                    } else if let Some(r) = self
                        .batch
                        .orders
                        .iter_mut()
                        .rev()
                        .find(|r| r.order_id == id)
                    {
                        stamp_row(r);
                    }
                }
                Touched::Trade(i) => {
                    if let Some(t) = self.batch.trades.get_mut(i) {
                        t.ts = ts;
                    }
                }
                Touched::Rejected(i) => {
                    if let Some(r) = self.batch.rejected.get_mut(i) {
                        r.created_ts = ts;
                        r.updated_ts = ts;
                    }
                }
                Touched::Transfer(i) => {
                    if let Some(t) = self.batch.transfers.get_mut(i) {
                        t.ts = ts;
                    }
                }
                Touched::Balance(i) => {
                    if let Some(b) = self.batch.balance_changes.get_mut(i) {
                        b.ts = ts;
                    }
                }
            }
        }
        touched.clear();
        self.touched = touched;
    }

    /// A listed instrument: its name (from the symbol source, when the consumer has none)
    /// and, when funded, its settlement terms.
    fn instrument_added(&mut self, def: ringex_engine::InstrumentDef) {
        if !self.names.contains_key(&def.id.0) {
            if let Some(n) = self.symbol_source.as_ref().and_then(|f| f(def.id)) {
                self.names.insert(def.id.0, n.clone());
                self.batch.symbols.push((def.id.0, n));
            }
        }
        if def.is_funded() {
            let (base, quote) = def.assets();
            let (base_per_lot, quote_per_tick_lot) = def.units();
            let f = FundedRow {
                instrument: def.id.0,
                base: base.0,
                quote: quote.0,
                base_per_lot,
                quote_per_tick_lot,
            };
            self.defs.insert(f.instrument, f);
            self.batch.funded.push(f);
        }
    }

    /// Writes everything pending in one transaction, up to the last complete command (a
    /// command whose last event has not arrived stays pending: the store never holds half
    /// a command, and its rows get its time).
    pub fn commit(&mut self) -> Result<(), HistoryError> {
        if self.cmd_first.is_some() {
            return Ok(());
        }
        if self.batch.last_seq == self.applied && self.batch.symbols.is_empty() {
            return Ok(());
        }
        for id in self.dirty.drain() {
            if let Some(r) = self.live.get(&id) {
                self.batch.orders.push(r.clone());
            }
        }
        // In key order: each insert lands next to the one before in the B-tree (a fifth
        // faster than the order orders changed in, on SQLite). Stable: an id used again
        // (live-only uniqueness) keeps its rows in the order they happened, the last one
        // written last.
        sort_by_id(&mut self.batch.orders, &mut self.sort_keys);
        self.batch.prev_seq = self.applied;
        let started = Instant::now();
        self.store.write(&self.batch)?;
        self.last_commit_took = started.elapsed();
        self.applied = self.batch.last_seq;
        self.batch.orders.clear();
        self.batch.rejected.clear();
        self.batch.trades.clear();
        self.batch.transfers.clear();
        self.batch.balance_changes.clear();
        self.batch.funded.clear();
        self.batch.symbols.clear();
        self.pending = 0;
        self.commits += 1;
        self.last_commit = Instant::now();
        Ok(())
    }

    fn try_commit(&mut self) {
        if self.error.is_none() {
            if let Err(e) = self.commit() {
                tracing::error!("{e}; the history store stops (the journal has everything)");
                self.error = Some(e);
            }
        }
    }
}

/// Sorts rows by order id, stably: the keys (id, place) are sorted, then the rows moved to
/// their places once each, cycle by cycle. A row is large (a sort that moves rows spent
/// 8% of the consumer's instructions moving them).
fn sort_by_id(rows: &mut [OrderRow], keys: &mut Vec<(u64, u32)>) {
    if rows.windows(2).all(|w| w[0].order_id <= w[1].order_id) {
        return;
    }
    keys.clear();
    keys.extend(rows.iter().enumerate().map(|(k, r)| (r.order_id, k as u32)));
    // The place breaks ties: equal ids keep their order.
    keys.sort_unstable();
    // Row j takes the row at `keys[j].1`; a key whose place is its own is done.
    for start in 0..keys.len() {
        let mut j = start;
        loop {
            let src = keys[j].1 as usize;
            keys[j].1 = j as u32;
            if src == start || src == j {
                break;
            }
            rows.swap(j, src);
            j = src;
        }
    }
}

impl<S: HistoryStore> Consumer for History<S> {
    fn name(&self) -> &str {
        "history"
    }

    fn on_start_with(&mut self, ctx: &ringex_engine::pipeline::ConsumerContext) {
        self.clocks = Some(ctx.clocks());
    }

    fn on_event(&mut self, e: &Event, seq: Sequence, end_of_batch: bool) {
        if self.error.is_some() || seq.0 <= self.applied {
            return;
        }
        let last = e.is_last_of_command();
        if last {
            if let Some(c) = &self.clocks {
                self.clock = c.at(seq).0;
            }
        }
        self.apply(e, seq.0);
        if !last {
            return;
        }
        self.stamp();
        // Commits end on a command boundary: the store never holds half a command.
        if self.pending >= self.cfg.min_events
            || (end_of_batch
                && self.last_commit.elapsed() >= self.cfg.window(self.last_commit_took))
        {
            self.try_commit();
        }
    }

    fn timeout(&self) -> Option<Duration> {
        Some(self.cfg.max_delay)
    }

    fn on_timeout(&mut self) {
        if self.pending > 0 && self.cmd_first.is_none() {
            self.try_commit();
        }
    }

    fn on_shutdown(&mut self) {
        self.try_commit();
    }

    fn failure(&self) -> Option<String> {
        self.error.as_ref().map(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringex_engine::{OrderType, Side, TimeInForce};

    fn row(order_id: u64, place: u64) -> OrderRow {
        OrderRow {
            order_id,
            instrument: 1,
            account: 7,
            side: Side::Buy,
            order_type: OrderType::Limit,
            tif: TimeInForce::Gtc,
            expiry: 0,
            price: 100,
            orig_qty: 5,
            open_qty: 5,
            filled_qty: 0,
            status: OrderStatus::Active,
            reason: None,
            accept_seq: place,
            priority_seq: place,
            last_seq: place,
            created_ts: 0,
            updated_ts: 0,
            display: 0,
            peak: 0,
        }
    }

    #[test]
    fn rows_are_sorted_by_id_and_equal_ids_keep_their_order() {
        let mut rng = ringex_engine::workload::SplitMix64::new(5);
        let mut keys = Vec::new();
        for n in [0usize, 1, 2, 3, 17, 1000] {
            // Ids from a small range, so that many repeat.
            let mut rows: Vec<OrderRow> = (0..n)
                .map(|k| row(rng.below(n as u64 / 3 + 1), k as u64))
                .collect();
            let mut want = rows.clone();
            want.sort_by_key(|r| r.order_id);
            sort_by_id(&mut rows, &mut keys);
            assert_eq!(rows, want, "{n} rows");
        }
        let mut sorted: Vec<OrderRow> = (0..10).map(|k| row(k, k)).collect();
        let want = sorted.clone();
        sort_by_id(&mut sorted, &mut keys);
        assert_eq!(sorted, want);
    }
}
