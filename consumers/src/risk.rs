//! The risk updater: positions, average entry prices, realized P&L, fees and open-order
//! exposure per account and instrument, in `Decimal` money; limits per account with a kill
//! switch that blocks the account and cancels its resting orders through its own gateway.
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
        self.positions.values().map(|p| p.open_notional).sum()
    }
    /// Realized P&L minus fees over all instruments.
    pub fn net_realized(&self) -> Decimal {
        self.positions.values().map(|p| p.realized - p.fees).sum()
    }
}

/// A handle for other threads: account states as of the last published batch, and limits
/// that can be changed at run time.
#[derive(Clone, Default)]
pub struct RiskView {
    accounts: Arc<Mutex<Published>>,
    limits: Arc<RwLock<(HashMap<AccountId, Limits>, Limits)>>,
    instruments: Arc<FxHashMap<InstrumentId, RiskInstrument>>,
}

/// What the consumer publishes: positions with their open-order exposure still in ticks ×
/// lots (the reader turns it into money, so the consumer's publish stays cheap), in one flat
/// map keyed by (account, instrument) — a changed position costs one map write — and per
/// account the instruments it has a position in and its breach.
#[derive(Clone, Debug, Default)]
struct Published {
    positions: FxHashMap<(AccountId, InstrumentId), (Position, i128)>,
    accounts: FxHashMap<AccountId, PublishedAccount>,
}

#[derive(Clone, Debug, Default)]
struct PublishedAccount {
    instruments: Vec<InstrumentId>,
    breach: Option<String>,
}

/// Money value of ticks × lots in an instrument.
fn tl_money(
    instruments: &FxHashMap<InstrumentId, RiskInstrument>,
    i: InstrumentId,
    tl: i128,
) -> Decimal {
    let (tick, lot) = instruments
        .get(&i)
        .map_or((Decimal::ONE, Decimal::ONE), |s| (s.tick_size, s.lot_size));
    Decimal::from_i128_with_scale(tl, 0) * tick * lot
}

impl RiskView {
    /// An account's state (as of the last published batch).
    pub fn account(&self, a: AccountId) -> Option<AccountRisk> {
        let (positions, breach) = {
            let m = self.accounts.lock().ok()?;
            let acc = m.accounts.get(&a)?;
            let positions: Vec<(InstrumentId, (Position, i128))> = acc
                .instruments
                .iter()
                .filter_map(|&i| m.positions.get(&(a, i)).map(|p| (i, p.clone())))
                .collect();
            (positions, acc.breach.clone())
        };
        Some(AccountRisk {
            positions: positions
                .into_iter()
                .map(|(i, (mut pos, tl))| {
                    pos.open_notional = tl_money(&self.instruments, i, tl);
                    (i, pos)
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
            g.0.insert(a, l);
        }
    }
    /// Sets the limits of accounts without their own.
    pub fn set_default_limits(&self, l: Limits) {
        if let Ok(mut g) = self.limits.write() {
            g.1 = l;
        }
    }
}

/// One account's state in one instrument, as the consumer keeps it.
#[derive(Clone, Debug, Default)]
struct Pair {
    pos: Position,
    /// Open-order exposure in ticks × lots: integer arithmetic on the hot path, turned into
    /// money only when published or checked.
    tl: i128,
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
    /// Position and open-order exposure per (account, instrument): one flat map (one lookup
    /// per change), no per-account tree on the hot path.
    positions: FxHashMap<(AccountId, InstrumentId), Pair>,
    /// The instruments each account has a position entry in (limit checks, reports).
    account_instruments: FxHashMap<AccountId, Vec<InstrumentId>>,
    /// Why an account's kill switch fired.
    breaches: FxHashMap<AccountId, String>,
    /// (account, instrument) pairs changed since the last publish.
    dirty: FxHashSet<(AccountId, InstrumentId)>,
    /// Accounts whose breach state changed since the last publish.
    dirty_breach: FxHashSet<AccountId>,
    view: RiskView,
    limits: (HashMap<AccountId, Limits>, Limits),
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
                positions: FxHashMap::default(),
                account_instruments: FxHashMap::default(),
                breaches: FxHashMap::default(),
                dirty: FxHashSet::default(),
                dirty_breach: FxHashSet::default(),
                view: view.clone(),
                limits: Default::default(),
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

    /// Reads the limits set through the view now (the pipeline does this in `on_start`; for
    /// driving the consumer by hand).
    pub fn on_start_with_view_limits(&mut self) {
        if let Ok(l) = self.view.limits.read() {
            self.limits = l.clone();
            self.any_limits = !self.limits.0.is_empty() || self.limits.1 != Limits::default();
        }
    }

    /// The state held by the consumer itself (for tests and final reports).
    pub fn account(&mut self, a: AccountId) -> Option<AccountRisk> {
        self.settle_exposure(a);
        let insts = self.account_instruments.get(&a)?;
        Some(AccountRisk {
            positions: insts
                .iter()
                .filter_map(|&i| self.positions.get(&(a, i)).map(|p| (i, p.pos.clone())))
                .collect(),
            breach: self.breaches.get(&a).cloned(),
        })
    }

    /// The state of `a` in `i` (created, and listed under the account, on first use),
    /// marked changed.
    fn pair(&mut self, a: AccountId, i: InstrumentId) -> &mut Pair {
        self.dirty.insert((a, i));
        match self.positions.entry((a, i)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                self.account_instruments.entry(a).or_default().push(i);
                e.insert(Pair::default())
            }
        }
    }

    fn pos(&mut self, a: AccountId, i: InstrumentId) -> &mut Position {
        &mut self.pair(a, i).pos
    }

    fn money(&self, i: InstrumentId, price: Price, qty: Qty) -> (Decimal, Decimal, Decimal) {
        let s = self.instruments.get(&i).copied().unwrap_or(RiskInstrument {
            tick_size: Decimal::ONE,
            lot_size: Decimal::ONE,
        });
        let px = Decimal::from(price.0) * s.tick_size;
        let units = Decimal::from(qty.0) * s.lot_size;
        (px, units, px * units)
    }

    /// Writes the open-order notional of every instrument of `a` into its positions.
    fn settle_exposure(&mut self, a: AccountId) {
        // Every pair with a position or exposure is listed under its account.
        let Some(insts) = self.account_instruments.get(&a) else {
            return;
        };
        for &i in insts {
            if let Some(p) = self.positions.get_mut(&(a, i)) {
                p.pos.open_notional = tl_money(&self.instruments, i, p.tl);
            }
        }
    }

    fn trade(&mut self, a: AccountId, i: InstrumentId, side: Side, price: Price, qty: Qty) {
        let (px, units, notional) = self.money(i, price, qty);
        let p = self.pos(a, i);
        let signed = if side == Side::Buy { units } else { -units };
        p.traded_notional += notional;
        let old = p.qty;
        if old.is_zero() || (old > Decimal::ZERO) == (signed > Decimal::ZERO) {
            // Opening or adding: weighted average entry.
            let new = old + signed;
            p.avg_price = (p.avg_price * old.abs() + px * units) / new.abs();
            p.qty = new;
        } else {
            // Reducing, closing or flipping.
            let closing = units.min(old.abs());
            let dir = if old > Decimal::ZERO {
                Decimal::ONE
            } else {
                Decimal::NEGATIVE_ONE
            };
            p.realized += (px - p.avg_price) * closing * dir;
            p.qty = old + signed;
            if p.qty.is_zero() {
                p.avg_price = Decimal::ZERO;
            } else if (p.qty > Decimal::ZERO) != (old > Decimal::ZERO) {
                p.avg_price = px;
            }
        }
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
        if self.dirty.is_empty() && self.dirty_breach.is_empty() {
            return;
        }
        let view = self.view.accounts.clone();
        if let Ok(mut guard) = view.try_lock() {
            let m = &mut *guard;
            // Only the positions that changed are copied, one map write each; an account's
            // instrument list grows only when it trades a new instrument.
            for (a, i) in self.dirty.drain() {
                let (pos, tl) = self
                    .positions
                    .get(&(a, i))
                    .map(|p| (p.pos.clone(), p.tl))
                    .unwrap_or_default();
                if m.positions.insert((a, i), (pos, tl)).is_none() {
                    m.accounts.entry(a).or_default().instruments.push(i);
                }
            }
            for a in self.dirty_breach.drain() {
                let b = self.breaches.get(&a).cloned();
                m.accounts.entry(a).or_default().breach = b;
            }
        }
        if let Ok(l) = self.view.limits.try_read() {
            self.limits = l.clone();
            self.any_limits = !self.limits.0.is_empty() || self.limits.1 != Limits::default();
        }
    }
}

impl Consumer for RiskUpdater {
    fn name(&self) -> &str {
        "risk"
    }

    fn on_start_with(&mut self, ctx: &ConsumerContext) {
        self.gateway = Some(ctx.gateway());
        if let Ok(l) = self.view.limits.read() {
            self.limits = l.clone();
            self.any_limits = !self.limits.0.is_empty() || self.limits.1 != Limits::default();
        }
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
                self.taker = Some(Taker {
                    id: order_id,
                    account,
                    price,
                    exposure,
                });
                self.pair(account, instrument).tl += price.0 as i128 * exposure as i128;
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
                    // One pair lookup: exposure and position together.
                    self.pair(a, instrument).tl -= less;
                    self.trade(a, instrument, side, price, qty);
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
                        self.pos(a, instrument).fees += fee;
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
            EventKind::Cancelled {
                account,
                instrument,
                price,
                qty,
                ..
            }
            | EventKind::Expired {
                account,
                instrument,
                price,
                qty,
                ..
            } => {
                // A market order's price is 0: it never counted.
                self.pair(account, instrument).tl -= price.0 as i128 * qty.0 as i128;
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
                self.pair(account, instrument).tl += delta;
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
