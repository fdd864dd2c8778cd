//! The risk updater: positions, average entry prices, realized P&L, fees and open-order
//! exposure per account and instrument, read in `Decimal` money; limits per account with a
//! kill switch that blocks the account and cancels its resting orders through its own
//! gateway.
//!
//! The hot path keeps lots and ticks (integers, and a `Decimal` only for the average entry
//! and realized P&L), one hash entry per (account, instrument) for exposure, a dense vector
//! for positions, and no order map: every event carries the owner, side, price and
//! quantities it changes. Money (tick and lot sizes) is applied when a reader asks.
//!
//! Fees are not computed here: the matcher settles each fill of a funded instrument and
//! sends its fees in quote units ([`EventKind::FillFees`]), so the risk updater, the journal
//! and every plug-in agree on one figure. Unfunded instruments have no fees.
//!
//! Readers on other threads get a consistent copy of an account's state through
//! [`RiskView`]; the consumer publishes changed accounts at the end of each batch with a
//! `try_lock`, so a reader can never block it (a contended publish is retried next batch).

use ringex_engine::pipeline::{ConsumerContext, Gateway};
use ringex_engine::{
    AccountId, CommandKind, Consumer, Event, EventKind, InstrumentId, OrderId, Price, Qty,
    Sequence, Side,
};
use rust_decimal::Decimal;
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

mod pairs;
use pairs::PairTable;

/// What the risk updater needs to know of an instrument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RiskInstrument {
    /// Price of one tick.
    pub tick_size: Decimal,
    /// Quantity of one lot.
    pub lot_size: Decimal,
}

/// Per account limits. `None` means no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Maximum absolute position per instrument (in units: lots × lot size).
    pub max_position: Option<Decimal>,
    /// Maximum notional of resting orders, all instruments.
    pub max_open_notional: Option<Decimal>,
    /// Maximum loss: realized P&L minus fees may not go below `-max_loss`.
    pub max_loss: Option<Decimal>,
}

/// One account's state in one instrument.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// Signed position in units (positive long).
    pub qty: Decimal,
    /// Average entry price of the open position.
    pub avg_price: Decimal,
    /// Realized P&L (before fees).
    pub realized: Decimal,
    /// Fees paid (negative: rebates received).
    pub fees: Decimal,
    /// Notional of this account's resting orders in this instrument.
    pub open_notional: Decimal,
    /// Traded notional.
    pub traded_notional: Decimal,
}

/// One account's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountRisk {
    /// Per instrument.
    pub positions: BTreeMap<InstrumentId, Position>,
    /// Set when a limit was breached (the kill switch fired): which one.
    pub breach: Option<String>,
}

impl AccountRisk {
    /// Open-order notional over all instruments.
    pub fn open_notional(&self) -> Decimal {
        self.positions
            .values()
            .fold(Decimal::ZERO, |a, p| a.saturating_add(p.open_notional))
    }
    /// Realized P&L minus fees over all instruments.
    pub fn net_realized(&self) -> Decimal {
        self.positions.values().fold(Decimal::ZERO, |a, p| {
            a.saturating_add(p.realized.saturating_sub(p.fees))
        })
    }
}

/// A handle for other threads: account states as of the last published batch, and limits
/// that can be changed at run time.
#[derive(Clone, Default)]
pub struct RiskView {
    accounts: Arc<Mutex<Published>>,
    limits: Arc<RwLock<(HashMap<AccountId, Limits>, Limits)>>,
    /// Bumped on every change of `limits`: the consumer copies them only when it moved.
    limits_version: Arc<std::sync::atomic::AtomicU64>,
    instruments: Arc<FxHashMap<InstrumentId, RiskInstrument>>,
}

/// What the consumer publishes: positions with their open-order exposure still in ticks ×
/// lots (the reader turns it into money, so the consumer's publish stays cheap), at the
/// consumer's own dense index of each (account, instrument) — a changed position costs one
/// indexed copy, no hashing — and per account the instruments it has a position in (with
/// their indexes) and its breach.
#[derive(Clone, Debug, Default)]
struct Published {
    /// Positions and exposures in lots and ticks, by the consumer's index.
    positions: Vec<Lots>,
    exposure: Vec<i128>,
    accounts: FxHashMap<AccountId, PublishedAccount>,
}

#[derive(Clone, Debug, Default)]
struct PublishedAccount {
    instruments: Vec<(InstrumentId, u32)>,
    breach: Option<String>,
}

/// An integer as a `Decimal` (saturating past its 96 bits).
fn dec(v: i128) -> Decimal {
    Decimal::try_from_i128_with_scale(v, 0).unwrap_or(if v < 0 {
        Decimal::MIN
    } else {
        Decimal::MAX
    })
}

/// An instrument's tick and lot sizes (1 and 1 when not given).
fn sizes(
    instruments: &FxHashMap<InstrumentId, RiskInstrument>,
    i: InstrumentId,
) -> (Decimal, Decimal) {
    instruments
        .get(&i)
        .map_or((Decimal::ONE, Decimal::ONE), |s| (s.tick_size, s.lot_size))
}

/// A position in the instrument's own units, as the consumer keeps and publishes it:
/// lots and ticks, integers where the arithmetic allows (a trade costs no tick or lot
/// multiplication); turned into money ([`Position`]) only for a reader.
#[derive(Clone, Copy, Debug, Default)]
struct Lots {
    /// Signed lots.
    qty: i128,
    /// Entry cost of the open position in ticks × lots (its magnitude): the average entry
    /// price is `cost / |qty|`, divided only when read (adding to a position is then an
    /// addition, not a division).
    cost: Decimal,
    /// Realized P&L in ticks × lots.
    realized: Decimal,
    /// Traded notional in ticks × lots.
    traded: i128,
    /// Fees, in money.
    fees: Decimal,
}

impl Lots {
    /// The money view, with `tl` ticks × lots of open-order exposure.
    fn position(&self, tick: Decimal, lot: Decimal, tl: i128) -> Position {
        // Saturating arithmetic: no figure, however large, can panic the reader.
        let avg = match self.qty {
            0 => Decimal::ZERO,
            q => self.cost.checked_div(dec(q.abs())).unwrap_or(Decimal::MAX),
        };
        let money = |v: Decimal| v.saturating_mul(tick).saturating_mul(lot);
        Position {
            qty: dec(self.qty).saturating_mul(lot),
            avg_price: avg.saturating_mul(tick),
            realized: money(self.realized),
            fees: self.fees,
            open_notional: money(dec(tl)),
            traded_notional: money(dec(self.traded)),
        }
    }

    /// A trade of `qty` lots at `price` ticks on `side`: opening or adding adds to the
    /// entry cost (weighted average entry); reducing realizes P&L against the average and
    /// takes its share of the cost (a division only when part of the position closes);
    /// flipping starts a new cost at the trade's price.
    #[inline]
    fn trade(&mut self, side: Side, price: Price, qty: Qty) {
        let lots = qty.0 as i128;
        let signed = if side == Side::Buy { lots } else { -lots };
        let value = price.0 as i128 * lots;
        self.traded = self.traded.saturating_add(value);
        let old = self.qty;
        // Saturating `Decimal` arithmetic (integers up to 2^96 are exact): no position,
        // however large, can panic the consumer.
        if old == 0 || (old > 0) == (signed > 0) {
            self.cost = self.cost.saturating_add(dec(value));
            self.qty = old.saturating_add(signed);
        } else {
            let held = old.abs();
            let closing = lots.min(held);
            let closed_cost = match closing == held {
                true => self.cost,
                false => self
                    .cost
                    .saturating_mul(dec(closing))
                    .checked_div(dec(held))
                    .unwrap_or(self.cost),
            };
            let pnl = dec(price.0 as i128 * closing).saturating_sub(closed_cost);
            self.realized = self
                .realized
                .saturating_add(if old > 0 { pnl } else { -pnl });
            self.cost = self.cost.saturating_sub(closed_cost);
            self.qty = old + signed;
            if self.qty == 0 {
                self.cost = Decimal::ZERO;
            } else if (self.qty > 0) != (old > 0) {
                self.cost = dec((price.0 as i128).saturating_mul(self.qty.abs()));
            }
        }
    }
}

impl RiskView {
    /// An account's state (as of the last published batch).
    pub fn account(&self, a: AccountId) -> Option<AccountRisk> {
        let (positions, breach) = {
            let m = self.accounts.lock().ok()?;
            let acc = m.accounts.get(&a)?;
            let positions: Vec<(InstrumentId, (Lots, i128))> = acc
                .instruments
                .iter()
                .filter_map(|&(i, k)| {
                    let k = k as usize;
                    Some((i, (*m.positions.get(k)?, *m.exposure.get(k)?)))
                })
                .collect();
            (positions, acc.breach.clone())
        };
        Some(AccountRisk {
            positions: positions
                .into_iter()
                .map(|(i, (lots, tl))| {
                    let (tick, lot) = sizes(&self.instruments, i);
                    (i, lots.position(tick, lot, tl))
                })
                .collect(),
            breach,
        })
    }
    /// Accounts whose kill switch fired, with the reason.
    pub fn breaches(&self) -> Vec<(AccountId, String)> {
        let Ok(m) = self.accounts.lock() else {
            return Vec::new();
        };
        let mut v: Vec<_> = m
            .accounts
            .iter()
            .filter_map(|(a, r)| r.breach.clone().map(|b| (*a, b)))
            .collect();
        v.sort();
        v
    }
    /// Sets an account's limits (takes effect from the next batch).
    pub fn set_limits(&self, a: AccountId, l: Limits) {
        if let Ok(mut g) = self.limits.write() {
            self.limits_version
                .fetch_add(1, std::sync::atomic::Ordering::Release);
            g.0.insert(a, l);
        }
    }
    /// Sets the limits of accounts without their own.
    pub fn set_default_limits(&self, l: Limits) {
        if let Ok(mut g) = self.limits.write() {
            self.limits_version
                .fetch_add(1, std::sync::atomic::Ordering::Release);
            g.1 = l;
        }
    }
}

/// Events whose pairs risk prefetches ahead ([`Consumer::lookahead`]); the second stage
/// runs half as far ahead. (Multi-symbol stream: 8 ahead 9.5M events/s, 16 ahead 9.5–10M.)
const AHEAD: usize = 16;

/// What an event prefetched touches: a pair (account, instrument), or a fill's maker and
/// taker accounts in an instrument.
#[derive(Clone, Copy, Debug)]
enum Ahead {
    None,
    Pair(u64, u32),
    Fill(u64, u32, u64),
}

/// The part only trades and fees change.
#[derive(Clone, Debug, Default)]
struct Cold {
    pos: Lots,
    /// Listed in `dirty_positions` since the last publish.
    dirty: bool,
}

/// The order that trades in the current command (the accepted or modified one): fills
/// name it as their taker.
#[derive(Clone, Copy)]
struct Taker {
    id: OrderId,
    account: AccountId,
    /// Its limit price.
    price: Price,
    /// Open quantity that counts as exposure (0 for market orders).
    exposure: u64,
}

/// The risk consumer.
pub struct RiskUpdater {
    /// Tick and lot sizes (a fast hash: looked up on every fill).
    instruments: FxHashMap<InstrumentId, RiskInstrument>,
    /// The events carry every order's owner, side, price and quantities, so the consumer
    /// keeps no order map: only the current command's taker.
    taker: Option<Taker>,
    /// Pending stop orders (their exposure counts from acceptance); a triggered one
    /// becomes the taker.
    stops: FxHashMap<OrderId, Taker>,
    /// The order whose terms made it a stop (its `accepted` comes next).
    next_stop: Option<OrderId>,
    /// Position and open-order exposure per (account, instrument): one flat map (one lookup
    /// per change), no per-account tree on the hot path.
    /// Exposure per (account, instrument), and the pair's dense index: its own table, so
    /// that a pair's slot is known from its key (prefetched a few events ahead).
    positions: PairTable,
    /// The position of each (account, instrument), at the index its entry gives: dense, so
    /// that publishing copies by index.
    pairs: Vec<Cold>,
    /// Pairs already known to the published view (those after it are new to it).
    published_pairs: usize,
    /// The (account, instrument) of each pair.
    keys: Vec<(AccountId, InstrumentId)>,
    /// The instruments each account has a position entry in (limit checks, reports).
    account_instruments: FxHashMap<AccountId, Vec<(InstrumentId, u32)>>,
    /// Why an account's kill switch fired.
    breaches: FxHashMap<AccountId, String>,
    /// Pairs whose exposure changed since the last publish.
    dirty: Vec<(AccountId, InstrumentId)>,
    /// Pairs whose position changed since the last publish.
    dirty_positions: Vec<u32>,
    /// The last [`AHEAD`] events prefetched, a ring.
    ahead: [Ahead; AHEAD],
    ahead_at: usize,
    /// The taker (account, instrument) as last seen by `prefetch`.
    ahead_taker: (u64, u32),
    /// Accounts whose breach state changed since the last publish.
    dirty_breach: FxHashSet<AccountId>,
    view: RiskView,
    limits: (HashMap<AccountId, Limits>, Limits),
    /// The view's `limits_version` when `limits` was copied.
    limits_seen: u64,
    gateway: Option<Gateway>,
    killed: HashSet<AccountId>,
    /// Kill-switch commands not yet taken by the input ring (never wait on it from here:
    /// the matcher may be waiting for this consumer).
    pending: Vec<CommandKind>,
    any_limits: bool,
    /// Buyer and seller of the last fill, until its fees arrive.
    last_fill: Option<(AccountId, AccountId)>,
    /// Decimal places of each declared asset.
    asset_scale: FxHashMap<ringex_engine::AssetId, u8>,
    /// Decimal places of each funded instrument's quote asset (its fees' unit).
    quote_scale: FxHashMap<InstrumentId, u8>,
}

impl RiskUpdater {
    /// A risk updater for these instruments; returns it and its view.
    pub fn new(instruments: HashMap<InstrumentId, RiskInstrument>) -> (Self, RiskView) {
        let instruments: FxHashMap<InstrumentId, RiskInstrument> =
            instruments.into_iter().collect();
        let view = RiskView {
            instruments: Arc::new(instruments.clone()),
            ..RiskView::default()
        };
        (
            RiskUpdater {
                instruments,
                taker: None,
                stops: FxHashMap::default(),
                next_stop: None,
                positions: PairTable::new(),
                pairs: Vec::new(),
                published_pairs: 0,
                keys: Vec::new(),
                account_instruments: FxHashMap::default(),
                breaches: FxHashMap::default(),
                dirty: Vec::new(),
                dirty_positions: Vec::new(),
                ahead: [Ahead::None; AHEAD],
                ahead_at: 0,
                ahead_taker: (0, 0),
                dirty_breach: FxHashSet::default(),
                view: view.clone(),
                limits: Default::default(),
                limits_seen: 0,
                gateway: None,
                killed: HashSet::new(),
                pending: Vec::new(),
                any_limits: false,
                last_fill: None,
                asset_scale: FxHashMap::default(),
                quote_scale: FxHashMap::default(),
            },
            view,
        )
    }

    /// A risk updater that continues from a recovered engine state (a snapshot plus the
    /// journal tail, [`crate::recovery`]): the resting orders' open exposure, the assets'
    /// scales and the funded instruments' fee units are what the events before the state
    /// made them, so later cancels, modifies and fills of those orders are counted against
    /// exposure that is there. Without this, a cancel of an order accepted before the
    /// restart would subtract exposure this consumer never added.
    ///
    /// Positions, realized P&L and fees start at zero: the engine state holds orders and
    /// balances, not trading history. A team that must carry positions across restarts
    /// replays the journal's fills into a fresh updater instead (every fill is in it).
    pub fn restored(
        instruments: HashMap<InstrumentId, RiskInstrument>,
        state: &ringex_engine::state::EngineState,
    ) -> (Self, RiskView) {
        let (mut r, view) = RiskUpdater::new(instruments);
        r.asset_scale.extend(state.assets.iter().copied());
        for def in state.definitions.iter().filter(|d| d.is_funded()) {
            let scale = r.asset_scale.get(&def.assets().1).copied().unwrap_or(0);
            r.quote_scale.insert(def.id, scale);
        }
        for o in &state.orders {
            let o = &o.order;
            if o.order_type == ringex_engine::OrderType::Limit {
                r.expose(o.account, o.instrument, o.price.0 as i128 * o.qty.0 as i128);
            }
        }
        for st in &state.stops {
            let o = &st.order;
            let exposure = match o.order_type {
                ringex_engine::OrderType::Limit => o.qty.0,
                ringex_engine::OrderType::Market => 0,
            };
            r.expose(
                o.account,
                o.instrument,
                o.price.0 as i128 * exposure as i128,
            );
            let t = Taker {
                id: o.order_id,
                account: o.account,
                price: o.price,
                exposure,
            };
            r.stops.insert(o.order_id, t);
        }
        r.publish();
        (r, view)
    }

    /// Reads the limits set through the view now (the pipeline does this in `on_start`; for
    /// driving the consumer by hand).
    pub fn on_start_with_view_limits(&mut self) {
        self.refresh_limits(true);
    }

    /// Copies the view's limits when they changed since the last copy (or now, when
    /// `wait`); a copy per batch of every account's limits would cost more than the batch.
    fn refresh_limits(&mut self, wait: bool) {
        let v = self
            .view
            .limits_version
            .load(std::sync::atomic::Ordering::Acquire);
        if v == self.limits_seen && !wait {
            return;
        }
        let guard = match wait {
            true => self.view.limits.read().ok(),
            false => self.view.limits.try_read().ok(),
        };
        if let Some(l) = guard {
            self.limits = l.clone();
            self.limits_seen = v;
            self.any_limits = !self.limits.0.is_empty() || self.limits.1 != Limits::default();
        }
    }

    /// The state held by the consumer itself (for tests and final reports).
    pub fn account(&self, a: AccountId) -> Option<AccountRisk> {
        let insts = self.account_instruments.get(&a)?;
        Some(AccountRisk {
            positions: insts
                .iter()
                .map(|&(i, k)| {
                    let tl = self.positions.get(a.0, i.0).map_or(0, |h| h.tl());
                    let (tick, lot) = sizes(&self.instruments, i);
                    (i, self.pairs[k as usize].pos.position(tick, lot, tl))
                })
                .collect(),
            breach: self.breaches.get(&a).cloned(),
        })
    }

    /// The slot of `a` in `i` (created, and listed under the account, on first use).
    #[inline]
    fn hot(&mut self, a: AccountId, i: InstrumentId) -> &mut pairs::Slot {
        let next = self.pairs.len() as u32;
        let (slot, new) = self.positions.entry(a.0, i.0, || next);
        if new {
            self.account_instruments
                .entry(a)
                .or_default()
                .push((i, next));
            self.pairs.push(Cold::default());
            self.keys.push((a, i));
        }
        slot
    }

    /// Adds `delta` ticks × lots to the exposure of `a` in `i`.
    #[inline]
    fn expose(&mut self, a: AccountId, i: InstrumentId, delta: i128) {
        let h = self.hot(a, i);
        h.set_tl(h.tl().saturating_add(delta));
        if !h.dirty() {
            h.set_dirty(true);
            self.dirty.push((a, i));
        }
    }

    /// The position of `a` in `i`, marked changed.
    #[inline]
    fn pos(&mut self, a: AccountId, i: InstrumentId) -> &mut Lots {
        let k = self.hot(a, i).k() as usize;
        let c = &mut self.pairs[k];
        if !c.dirty {
            c.dirty = true;
            self.dirty_positions.push(k as u32);
        }
        &mut c.pos
    }

    fn check_limits(&mut self, a: AccountId) {
        if !self.any_limits || self.killed.contains(&a) {
            return;
        }
        let l = self.limits.0.get(&a).copied().unwrap_or(self.limits.1);
        let Some(r) = self.account(a) else {
            return;
        };
        let breach = if let Some(max) = l.max_position {
            r.positions
                .iter()
                .find(|(_, p)| p.qty.abs() > max)
                .map(|(i, p)| format!("position {} in instrument {i} exceeds {max}", p.qty))
        } else {
            None
        }
        .or_else(|| {
            l.max_open_notional
                .filter(|m| r.open_notional() > *m)
                .map(|m| format!("open-order notional {} exceeds {m}", r.open_notional()))
        })
        .or_else(|| {
            l.max_loss
                .filter(|m| r.net_realized() < -*m)
                .map(|m| format!("loss {} exceeds {m}", -r.net_realized()))
        });
        if let Some(why) = breach {
            tracing::warn!(
                account = a.0,
                "risk limit breached: {why}; kill switch: block + mass cancel"
            );
            self.killed.insert(a);
            self.breaches.insert(a, why);
            self.dirty_breach.insert(a);
            self.pending.push(CommandKind::Block { account: a });
            self.pending.push(CommandKind::MassCancel {
                account: a,
                instrument: None,
            });
            self.flush_pending();
        }
    }

    fn flush_pending(&mut self) {
        let Some(g) = self.gateway.as_mut() else {
            self.pending.clear();
            return;
        };
        while let Some(&k) = self.pending.first() {
            match g.try_submit(k) {
                Ok(_)
                | Err(ringex_engine::SubmitError::Closed)
                | Err(ringex_engine::SubmitError::Halted) => {
                    self.pending.remove(0);
                }
                Err(ringex_engine::SubmitError::Busy) => break,
            }
        }
    }

    /// Kill-switch retries, and the publish at the end of a batch.
    #[inline]
    fn after_event(&mut self, end_of_batch: bool) {
        if !self.pending.is_empty() {
            self.flush_pending();
        }
        if end_of_batch {
            self.publish();
        }
    }

    fn publish(&mut self) {
        if self.dirty.is_empty() && self.dirty_positions.is_empty() && self.dirty_breach.is_empty()
        {
            return;
        }
        let view = self.view.accounts.clone();
        if let Ok(mut guard) = view.try_lock() {
            let m = &mut *guard;
            // New pairs join their account's list; then only the positions that changed
            // are copied, by index.
            m.positions.resize(self.pairs.len(), Default::default());
            m.exposure.resize(self.pairs.len(), 0);
            for k in self.published_pairs..self.pairs.len() {
                let (a, i) = self.keys[k];
                m.accounts
                    .entry(a)
                    .or_default()
                    .instruments
                    .push((i, k as u32));
            }
            self.published_pairs = self.pairs.len();
            // The copies' destinations are all over the published vectors: start loading
            // them all first, so their misses overlap. (The sources were touched in this
            // batch and are in the cache.)
            for &k in &self.dirty_positions {
                pairs::prefetch(m.positions.as_ptr().wrapping_add(k as usize));
            }
            for &(a, i) in &self.dirty {
                if let Some(h) = self.positions.get(a.0, i.0) {
                    pairs::prefetch(m.exposure.as_ptr().wrapping_add(h.k() as usize));
                }
            }
            for (a, i) in self.dirty.drain(..) {
                if let Some(h) = self.positions.get_mut(a.0, i.0) {
                    h.set_dirty(false);
                    m.exposure[h.k() as usize] = h.tl();
                }
            }
            for k in self.dirty_positions.drain(..) {
                let c = &mut self.pairs[k as usize];
                c.dirty = false;
                m.positions[k as usize] = c.pos;
            }
            for a in self.dirty_breach.drain() {
                let b = self.breaches.get(&a).cloned();
                m.accounts.entry(a).or_default().breach = b;
            }
        }
        self.refresh_limits(false);
    }
}

impl Consumer for RiskUpdater {
    fn name(&self) -> &str {
        "risk"
    }

    fn on_start_with(&mut self, ctx: &ConsumerContext) {
        self.gateway = Some(ctx.gateway());
        self.refresh_limits(true);
    }

    fn on_event(&mut self, e: &Event, _seq: Sequence, end_of_batch: bool) {
        match e.kind {
            EventKind::Accepted {
                order_id,
                account,
                instrument,
                order_type,
                price,
                qty,
                ..
            } => {
                let exposure = match order_type {
                    ringex_engine::OrderType::Limit => qty.0,
                    ringex_engine::OrderType::Market => 0,
                };
                let t = Taker {
                    id: order_id,
                    account,
                    price,
                    exposure,
                };
                if self.next_stop.take() == Some(order_id) {
                    self.stops.insert(order_id, t);
                }
                self.taker = Some(t);
                self.expose(account, instrument, price.0 as i128 * exposure as i128);
                self.check_limits(account);
            }
            EventKind::Fill {
                instrument,
                taker,
                maker_account,
                price,
                qty,
                taker_side,
                ..
            } => {
                self.last_fill = None;
                // The taker's exposure is at its own limit price, the maker's at the fill's.
                let t = match &mut self.taker {
                    Some(t) if t.id == taker => {
                        let q = qty.0.min(t.exposure);
                        t.exposure -= q;
                        Some((t.account, t.price.0 as i128 * q as i128))
                    }
                    _ => None,
                };
                let m = Some((maker_account, price.0 as i128 * qty.0 as i128));
                for (x, side) in [(t, taker_side), (m, taker_side.opposite())] {
                    let Some((a, less)) = x else {
                        continue;
                    };
                    self.expose(a, instrument, -less);
                    self.pos(a, instrument).trade(side, price, qty);
                    let (b, s) = self.last_fill.get_or_insert((a, a));
                    match side {
                        Side::Buy => *b = a,
                        Side::Sell => *s = a,
                    }
                    self.check_limits(a);
                }
            }
            EventKind::FillFees {
                instrument,
                buyer_fee,
                seller_fee,
            } => {
                let scale = self.quote_scale.get(&instrument).copied().unwrap_or(0);
                if let Some((buyer, seller)) = self.last_fill.take() {
                    for (a, fee) in [(buyer, buyer_fee), (seller, seller_fee)] {
                        let fee = Decimal::try_from_i128_with_scale(fee.get(), scale as u32)
                            .unwrap_or(Decimal::MAX);
                        let p = self.pos(a, instrument);
                        p.fees = p.fees.saturating_add(fee);
                        self.check_limits(a);
                    }
                }
            }
            EventKind::AssetAdded { asset, scale } => {
                self.asset_scale.insert(asset, scale);
            }
            EventKind::InstrumentAdded(def) if def.is_funded() => {
                let quote = def.assets().1;
                let scale = self.asset_scale.get(&quote).copied().unwrap_or(0);
                self.quote_scale.insert(def.id, scale);
            }
            EventKind::OrderTerms { terms, .. } => {
                self.next_stop = terms.stop.map(|_| terms.order_id);
            }
            EventKind::Triggered { order_id, .. } => {
                if let Some(t) = self.stops.remove(&order_id) {
                    self.taker = Some(t);
                }
            }
            EventKind::Cancelled {
                account,
                instrument,
                price,
                qty,
                order_id,
                ..
            }
            | EventKind::Expired {
                account,
                instrument,
                price,
                qty,
                order_id,
                ..
            } => {
                if !self.stops.is_empty() {
                    self.stops.remove(&order_id);
                }
                // A market order's price is 0: it never counted.
                self.expose(account, instrument, -(price.0 as i128 * qty.0 as i128));
            }
            EventKind::Modified {
                order_id,
                account,
                instrument,
                price,
                qty,
                old_price,
                old_qty,
                ..
            } => {
                let delta =
                    price.0 as i128 * qty.0 as i128 - old_price.0 as i128 * old_qty.0 as i128;
                self.expose(account, instrument, delta);
                self.taker = Some(Taker {
                    id: order_id,
                    account,
                    price,
                    exposure: qty.0,
                });
                if self.any_limits {
                    self.check_limits(account);
                }
            }
            EventKind::AccountStatus {
                account,
                blocked: false,
            } => {
                // Unblocked by an operator: the kill switch may fire again.
                self.killed.remove(&account);
                self.breaches.remove(&account);
                self.dirty_breach.insert(account);
            }
            _ => {}
        }
        self.after_event(end_of_batch);
    }

    /// Starts loading the (account, instrument) entries of events a few ahead: on many
    /// accounts and instruments they are not in any cache, and each would otherwise wait
    /// on memory in turn.
    fn lookahead(&self) -> usize {
        AHEAD
    }

    fn prefetch(&mut self, e: &Event) {
        if self.positions.is_small() {
            return;
        }
        // The pair each event touches; a fill touches its maker's and its taker's (the
        // taker is the order of the command's last accepted or modified event, shown
        // before it), and their positions too.
        let entry = match e.kind {
            EventKind::Accepted {
                account,
                instrument,
                ..
            }
            | EventKind::Modified {
                account,
                instrument,
                ..
            } => {
                self.ahead_taker = (account.0, instrument.0);
                Ahead::Pair(account.0, instrument.0)
            }
            EventKind::Cancelled {
                account,
                instrument,
                ..
            }
            | EventKind::Expired {
                account,
                instrument,
                ..
            } => Ahead::Pair(account.0, instrument.0),
            EventKind::Fill {
                maker_account,
                instrument,
                ..
            } => Ahead::Fill(maker_account.0, instrument.0, self.ahead_taker.0),
            _ => return,
        };
        // Stage one: the pair's slot. Stage two, half the lookahead later (the slot has
        // arrived by then): a fill's two position records, which the slots' indexes locate.
        if let Ahead::Pair(a, i) | Ahead::Fill(a, i, _) = entry {
            self.positions.prefetch(a, i);
        }
        let at = self.ahead_at;
        self.ahead[at] = entry;
        self.ahead_at = (at + 1) % AHEAD;
        if let Ahead::Fill(maker, i, taker) = self.ahead[(at + AHEAD / 2) % AHEAD] {
            for a in [maker, taker] {
                if let Some(h) = self.positions.get(a, i) {
                    // 96 bytes: two or three cache lines.
                    let p = self.pairs.as_ptr().wrapping_add(h.k() as usize) as *const u8;
                    pairs::prefetch(p);
                    pairs::prefetch(p.wrapping_add(64));
                }
            }
        }
    }

    /// Kill-switch commands refused with `Busy` are retried on a quiet pipeline too.
    fn timeout(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_millis(1))
    }

    fn on_timeout(&mut self) {
        if !self.pending.is_empty() {
            self.flush_pending();
        }
    }

    fn on_shutdown(&mut self) {
        self.publish();
        self.gateway = None;
    }
}
