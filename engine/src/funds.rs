//! Money in the sequenced path: assets, funded instruments, balances and the hold, fee and
//! settlement arithmetic (docs/formats.md, "Accounts, balances and pre-trade risk").
//!
//! Everything here is integer arithmetic: an asset's balances count whole units of
//! 10^-scale in `i128`, notionals are `price ticks × lots × quote units per tick-lot`, and a
//! fee is `n × r` truncated toward zero, with the rate an exact decimal `mantissa ×
//! 10^-scale`. Products that could overflow saturate: a hold that saturates can never be
//! covered, so such an order is rejected for funds instead of wrapping.
//!
//! [`InstrumentDef`] is the compact form that travels in commands and events (48 bytes);
//! [`Funding`] is the expanded form the matcher keeps per book; [`Ledger`] holds every
//! (account, asset) balance with dense storage for small account ids.

use crate::types::{AccountId, InstrumentId, OrderType, Price, Qty, Side};
use rust_decimal::Decimal;
use rustc_hash::FxHashMap;
use std::fmt;

/// An asset (a currency, a coin, a share), numbered densely from 0 by the embedding
/// application.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AssetId(pub u16);

impl fmt::Display for AssetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An amount of an asset in whole units of 10^-scale (an `i128`, stored as two halves so
/// that commands and events stay 8-byte aligned and one cache line).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Amount {
    lo: u64,
    hi: u64,
}

impl Amount {
    /// Zero units.
    pub const ZERO: Amount = Amount { lo: 0, hi: 0 };

    /// The amount `units`.
    #[inline]
    pub const fn new(units: i128) -> Self {
        Amount {
            lo: units as u64,
            hi: ((units as u128) >> 64) as u64,
        }
    }

    /// The units.
    #[inline]
    pub const fn get(self) -> i128 {
        ((self.hi as u128) << 64 | self.lo as u128) as i128
    }
}

impl From<i128> for Amount {
    fn from(v: i128) -> Self {
        Amount::new(v)
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({})", self.get())
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

/// Writes `units × 10^-scale` as a normalized decimal (`1.5`, `-0.25`, `100`), exactly,
/// for any `i128`.
pub fn format_units(units: i128, scale: u8) -> String {
    let neg = units < 0;
    let digits = units.unsigned_abs().to_string();
    let scale = scale as usize;
    let (int, frac) = if digits.len() > scale {
        let (a, b) = digits.split_at(digits.len() - scale);
        (a.to_string(), b.to_string())
    } else {
        ("0".to_string(), format!("{digits:0>scale$}"))
    };
    let frac = frac.trim_end_matches('0');
    let sign = if neg { "-" } else { "" };
    if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

/// Parses a decimal as whole units of 10^-scale: `None` when it is not a whole number of
/// units or does not fit (the caller decides what that means).
pub fn units_of(d: Decimal, scale: u8) -> Option<i128> {
    let d = d.normalize();
    if d.scale() > scale as u32 {
        return None;
    }
    let m = d.mantissa();
    m.checked_mul(POW10[(scale as u32 - d.scale()) as usize])
}

/// 10^k for k in 0..=38.
const POW10: [i128; 39] = {
    let mut t = [1i128; 39];
    let mut k = 1;
    while k < 39 {
        t[k] = t[k - 1] * 10;
        k += 1;
    }
    t
};

/// Division by 10^s for s in 1..=18 without a divide instruction (fees are computed on every
/// buy order's hold): Granlund and Montgomery's round-up method, exact for every `u64`.
/// Entry s holds (magic, ceil(log2(10^s))).
const DIV10: [(u64, u32); 19] = {
    let mut t = [(0u64, 0u32); 19];
    let mut s = 1;
    while s < 19 {
        let d = POW10[s] as u128;
        let l = 128 - (d - 1).leading_zeros();
        let m = ((1u128 << 64) * ((1u128 << l) - d)) / d + 1;
        t[s] = (m as u64, l);
        s += 1;
    }
    t
};

/// `x / 10^s`, truncated, for s in 0..=18.
#[inline]
fn div_pow10(x: u64, s: usize) -> u64 {
    if s == 0 {
        return x;
    }
    let (m, l) = DIV10[s];
    let t = ((m as u128 * x as u128) >> 64) as u64;
    (t + ((x - t) >> 1)) >> (l - 1)
}

/// An exact decimal rate `mantissa × 10^-scale` (`0.001` is 1 × 10^-3; negative: a rebate).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rate {
    /// The digits.
    pub mantissa: i32,
    /// How many of them are fractional (0 to 28).
    pub scale: u8,
}

impl Rate {
    /// 0.
    pub const ZERO: Rate = Rate {
        mantissa: 0,
        scale: 0,
    };

    /// The rate of a decimal, if it has at most 9 significant digits (a mantissa that fits
    /// an `i32`) and at most 28 fractional digits.
    pub fn from_decimal(d: Decimal) -> Option<Rate> {
        let d = d.normalize();
        let mantissa = i32::try_from(d.mantissa()).ok()?;
        Some(Rate {
            mantissa,
            scale: d.scale() as u8,
        })
    }

    /// As a decimal.
    pub fn to_decimal(self) -> Decimal {
        Decimal::new(self.mantissa as i64, self.scale as u32)
    }

    /// `n × rate`, truncated toward zero; saturates on overflow.
    #[inline]
    pub fn apply(self, n: i128) -> i128 {
        if self.mantissa == 0 || n == 0 {
            return 0;
        }
        // The common case in 64-bit multiplies, no divide.
        if self.scale <= 18 {
            if let Ok(n64) = i64::try_from(n) {
                if let Some(p) = n64.checked_mul(self.mantissa as i64) {
                    let q = div_pow10(p.unsigned_abs(), self.scale as usize) as i128;
                    return if p < 0 { -q } else { q };
                }
            }
        }
        self.apply_wide(n)
    }

    #[cold]
    fn apply_wide(self, n: i128) -> i128 {
        let d = POW10[self.scale as usize];
        let m = self.mantissa as i128;
        // n = a·d + b with a and b of n's sign: n·m/d = a·m + b·m/d, both parts of one sign,
        // so truncating the sum is a·m plus the truncated small part (|b·m| < 10^28 · 2^31).
        let (a, b) = (n / d, n % d);
        a.saturating_mul(m).saturating_add(b * m / d)
    }

    /// True when `self > other`.
    fn greater(self, other: Rate) -> bool {
        let s = self.scale.max(other.scale) as usize;
        let x = self.mantissa as i128 * POW10[s - self.scale as usize];
        let y = other.mantissa as i128 * POW10[s - other.scale as usize];
        x > y
    }
}

/// Unfunded (an instrument that checks no money).
const NO_BAND: u8 = u8::MAX;

/// How an instrument is defined in the sequenced path: its id and, for a funded instrument,
/// its base and quote assets, unit conversions, fees and limits. The compact form carried by
/// [`crate::CommandKind::AddInstrument`] and [`crate::EventKind::InstrumentAdded`] (48 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InstrumentDef {
    /// The instrument.
    pub id: InstrumentId,
    pub(crate) base_per_lot: u64,
    pub(crate) quote_per_tick_lot: u64,
    pub(crate) max_qty: u64,
    pub(crate) maker_m: i32,
    pub(crate) taker_m: i32,
    pub(crate) band_m: u32,
    pub(crate) base: u16,
    pub(crate) quote: u16,
    pub(crate) maker_s: u8,
    pub(crate) taker_s: u8,
    pub(crate) band_s: u8,
}

// Copied into every book: kept small.
const _: () = assert!(std::mem::size_of::<InstrumentDef>() == 48);

impl Default for InstrumentDef {
    fn default() -> Self {
        InstrumentDef::unfunded(InstrumentId(0))
    }
}

impl From<InstrumentId> for InstrumentDef {
    fn from(id: InstrumentId) -> Self {
        InstrumentDef::unfunded(id)
    }
}

impl InstrumentDef {
    /// An instrument that checks no money.
    pub const fn unfunded(id: InstrumentId) -> Self {
        InstrumentDef {
            id,
            base_per_lot: 0,
            quote_per_tick_lot: 0,
            max_qty: u64::MAX,
            maker_m: 0,
            taker_m: 0,
            band_m: 0,
            base: 0,
            quote: 0,
            maker_s: 0,
            taker_s: 0,
            band_s: NO_BAND,
        }
    }

    /// A funded instrument trading `base` for `quote`: one lot is `base_per_lot` units of
    /// the base asset, and one tick times one lot is `quote_per_tick_lot` units of the quote
    /// asset. No fees, no limits (add them with the `with_` methods).
    pub const fn funded(
        id: InstrumentId,
        base: AssetId,
        quote: AssetId,
        base_per_lot: u64,
        quote_per_tick_lot: u64,
    ) -> Self {
        let mut d = InstrumentDef::unfunded(id);
        d.base = base.0;
        d.quote = quote.0;
        d.base_per_lot = base_per_lot;
        d.quote_per_tick_lot = quote_per_tick_lot;
        d
    }

    /// With these maker and taker fee rates.
    pub const fn with_fees(mut self, maker: Rate, taker: Rate) -> Self {
        self.maker_m = maker.mantissa;
        self.maker_s = maker.scale;
        self.taker_m = taker.mantissa;
        self.taker_s = taker.scale;
        self
    }

    /// With a largest order quantity.
    pub const fn with_max_qty(mut self, max: Qty) -> Self {
        self.max_qty = max.0;
        self
    }

    /// With a price band (a fraction of the last trade price; `mantissa` must not be
    /// negative).
    pub const fn with_band(mut self, band: Rate) -> Self {
        self.band_m = band.mantissa as u32;
        self.band_s = band.scale;
        self
    }

    /// True for a funded instrument.
    #[inline]
    pub const fn is_funded(&self) -> bool {
        self.base_per_lot != 0
    }

    /// Base and quote assets (funded instruments).
    pub const fn assets(&self) -> (AssetId, AssetId) {
        (AssetId(self.base), AssetId(self.quote))
    }

    /// Base units per lot, quote units per tick × lot.
    pub const fn units(&self) -> (u64, u64) {
        (self.base_per_lot, self.quote_per_tick_lot)
    }

    /// Maker and taker fee rates.
    pub const fn fees(&self) -> (Rate, Rate) {
        (
            Rate {
                mantissa: self.maker_m,
                scale: self.maker_s,
            },
            Rate {
                mantissa: self.taker_m,
                scale: self.taker_s,
            },
        )
    }

    /// The largest order quantity, if limited.
    pub const fn max_qty(&self) -> Option<Qty> {
        if self.max_qty == u64::MAX {
            None
        } else {
            Some(Qty(self.max_qty))
        }
    }

    /// The price band, if any.
    pub const fn band(&self) -> Option<Rate> {
        if self.band_s == NO_BAND {
            None
        } else {
            Some(Rate {
                mantissa: self.band_m as i32,
                scale: self.band_s,
            })
        }
    }

    /// Why this definition cannot be used (scales past 28, a negative or oversized band, a
    /// funded instrument with the same asset on both sides or a zero unit), if it can't.
    pub fn problem(&self) -> Option<&'static str> {
        if !self.is_funded() {
            return None;
        }
        let (m, t) = self.fees();
        if m.scale > 28 || t.scale > 28 {
            return Some("fee scale");
        }
        if let Some(b) = self.band() {
            if b.scale > 28 || b.mantissa < 0 {
                return Some("band");
            }
        }
        if self.base == self.quote {
            return Some("base and quote are the same asset");
        }
        if self.quote_per_tick_lot == 0 {
            return Some("zero quote units per tick and lot");
        }
        // A lot of more than 2^63 base units would overflow `i128` in `qty × units per lot`
        // (holds, settlement): a sell's hold could wrap negative.
        if self.base_per_lot > i64::MAX as u64 {
            return Some("more than 2^63 base units per lot");
        }
        if self.quote_per_tick_lot > i64::MAX as u64 {
            return Some("more than 2^63 quote units per tick and lot");
        }
        None
    }

    /// The expanded form the matcher uses, for a funded instrument.
    pub fn funding(&self) -> Option<Funding> {
        if !self.is_funded() {
            return None;
        }
        let (maker, taker) = self.fees();
        let mut hold = Rate::ZERO;
        for r in [maker, taker] {
            if r.greater(hold) {
                hold = r;
            }
        }
        Some(Funding {
            base: AssetId(self.base),
            quote: AssetId(self.quote),
            base_per_lot: self.base_per_lot,
            quote_per_tick_lot: self.quote_per_tick_lot,
            max_qty: self.max_qty,
            maker,
            taker,
            hold,
            band: self.band(),
        })
    }
}

/// A funded instrument's rules in the form the hot path uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Funding {
    /// What is bought and sold.
    pub base: AssetId,
    /// What it is paid with.
    pub quote: AssetId,
    /// Base units per lot.
    pub base_per_lot: u64,
    /// Quote units per tick × lot.
    pub quote_per_tick_lot: u64,
    /// Largest order quantity in lots (`u64::MAX`: none).
    pub max_qty: u64,
    /// The maker's fee rate.
    pub maker: Rate,
    /// The taker's fee rate.
    pub taker: Rate,
    /// `max(maker, taker, 0)`: what a buy order holds for fees.
    pub hold: Rate,
    /// The price band, as a fraction of the last trade price.
    pub band: Option<Rate>,
}

impl Funding {
    /// `N(p, q)` in quote units (saturating).
    #[inline]
    pub fn notional(&self, price: Price, qty: u64) -> i128 {
        // |price × qty| < 2^127: exact in one widening multiply.
        let pq = price.0 as i128 * qty as i128;
        if self.quote_per_tick_lot == 1 {
            pq
        } else {
            pq.saturating_mul(self.quote_per_tick_lot as i128)
        }
    }

    /// Base units of `qty` lots.
    #[inline]
    pub fn base_units(&self, qty: u64) -> i128 {
        qty as i128 * self.base_per_lot as i128
    }

    /// The asset an order of this side holds.
    #[inline]
    pub fn hold_asset(&self, side: Side) -> AssetId {
        match side {
            Side::Buy => self.quote,
            Side::Sell => self.base,
        }
    }

    /// What an order holds with `qty` open: a limit buy `N(L, Q) + fee(N(L, Q), h)` quote,
    /// a sell `Q` base, a market buy nothing.
    #[inline]
    pub fn hold(&self, side: Side, order_type: OrderType, price: Price, qty: u64) -> i128 {
        // Both sides' holds are computed and one is selected: a branch on the side (as good
        // as random) was mispredicted on about every other funded modify.
        let buy = match order_type {
            OrderType::Market => 0,
            OrderType::Limit => {
                let n = self.notional(price, qty);
                n.saturating_add(self.hold.apply(n))
            }
        };
        std::hint::select_unpredictable(side == Side::Sell, self.base_units(qty), buy)
    }

    /// What buying `qty` at `price` costs the taker, fee included.
    #[inline]
    pub fn taker_cost(&self, price: Price, qty: u64) -> i128 {
        let n = self.notional(price, qty);
        n.saturating_add(self.taker.apply(n))
    }

    /// The largest `q <= qty` whose taker cost at `price` fits `available` (the cost is
    /// non-decreasing in `q` for any rate above -100%).
    pub fn affordable(&self, price: Price, qty: u64, available: i128) -> u64 {
        if self.taker_cost(price, qty) <= available {
            return qty;
        }
        let (mut lo, mut hi) = (0u64, qty); // cost(lo) fits (or lo = 0), cost(hi) does not
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.taker_cost(price, mid) <= available {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// True when a limit order at `price` is outside the band around the last trade price
    /// `last` (a buy above `last × (1 + band)`, a sell below `last × (1 − band)`).
    /// A funded instrument's limit prices are always positive (a price at or below zero
    /// would make a buyer's notional, and so its hold, negative): those are outside too.
    #[inline]
    pub fn outside_band(&self, side: Side, price: Price, last: Option<Price>) -> bool {
        if price.0 <= 0 {
            return true;
        }
        let (Some(b), Some(last)) = (self.band, last) else {
            return false;
        };
        let d = POW10[b.scale as usize];
        let m = b.mantissa as i128;
        let lhs = (price.0 as i128).saturating_mul(d);
        match side {
            Side::Buy => lhs > (last.0 as i128).saturating_mul(d + m),
            Side::Sell => lhs < (last.0 as i128).saturating_mul(d - m),
        }
    }
}

/// One account's balance of one asset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Balance {
    /// Everything the account owns.
    pub total: i128,
    /// The part held for its live orders.
    pub held: i128,
}

impl Balance {
    /// `total − held`.
    #[inline]
    pub fn available(&self) -> i128 {
        self.total - self.held
    }

    /// True when both parts are zero.
    pub fn is_zero(&self) -> bool {
        self.total == 0 && self.held == 0
    }
}

/// Accounts below this id keep their balances in a vector indexed by id (no hash lookup).
pub const DENSE_ACCOUNTS: u64 = 1 << 20;

#[derive(Clone, Debug, Default)]
struct AssetBalances {
    scale: u8,
    dense: Vec<Balance>,
    sparse: FxHashMap<u64, Balance>,
}

/// Every (account, asset) balance. Accounts below [`DENSE_ACCOUNTS`] are found by direct
/// indexing; larger ids go through a hash map.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    assets: Vec<Option<AssetBalances>>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares an asset; false when it exists already.
    pub fn add_asset(&mut self, asset: AssetId, scale: u8) -> bool {
        let i = asset.0 as usize;
        if self.assets.len() <= i {
            self.assets.resize(i + 1, None);
        }
        if self.assets[i].is_some() {
            return false;
        }
        self.assets[i] = Some(AssetBalances {
            scale,
            ..AssetBalances::default()
        });
        true
    }

    /// True when the asset was declared.
    #[inline]
    pub fn has_asset(&self, asset: AssetId) -> bool {
        matches!(self.assets.get(asset.0 as usize), Some(Some(_)))
    }

    /// The declared assets with their scales, in id order.
    pub fn assets(&self) -> impl Iterator<Item = (AssetId, u8)> + '_ {
        self.assets
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.as_ref().map(|a| (AssetId(i as u16), a.scale)))
    }

    /// The scale of an asset.
    pub fn scale(&self, asset: AssetId) -> Option<u8> {
        self.assets.get(asset.0 as usize)?.as_ref().map(|a| a.scale)
    }

    /// A balance (zero when the account never had any).
    #[inline]
    pub fn get(&self, account: AccountId, asset: AssetId) -> Balance {
        let Some(Some(a)) = self.assets.get(asset.0 as usize) else {
            return Balance::default();
        };
        if account.0 < DENSE_ACCOUNTS {
            a.dense.get(account.0 as usize).copied().unwrap_or_default()
        } else {
            a.sparse.get(&account.0).copied().unwrap_or_default()
        }
    }

    /// `total − held`.
    #[inline]
    pub fn available(&self, account: AccountId, asset: AssetId) -> i128 {
        self.get(account, asset).available()
    }

    /// A balance to change (created at zero). `None` for an undeclared asset.
    #[inline]
    pub fn get_mut(&mut self, account: AccountId, asset: AssetId) -> Option<&mut Balance> {
        let a = self.assets.get_mut(asset.0 as usize)?.as_mut()?;
        if account.0 < DENSE_ACCOUNTS {
            let i = account.0 as usize;
            if a.dense.len() <= i {
                a.dense
                    .resize((i + 1).next_power_of_two(), Balance::default());
            }
            Some(&mut a.dense[i])
        } else {
            Some(a.sparse.entry(account.0).or_default())
        }
    }

    /// Moves an order's hold from `old` to `new` if the account can cover it (available +
    /// `old` ≥ `new`), in one lookup; false (and nothing changed) if it cannot. Creates no
    /// balance: an account that has none can only hold nothing.
    #[inline]
    pub fn reserve(&mut self, account: AccountId, asset: AssetId, old: i128, new: i128) -> bool {
        let Some(Some(a)) = self.assets.get_mut(asset.0 as usize) else {
            return new <= old;
        };
        let slot = if account.0 < DENSE_ACCOUNTS {
            a.dense.get_mut(account.0 as usize)
        } else {
            a.sparse.get_mut(&account.0)
        };
        match slot {
            Some(b) => {
                // Holds and balances are never negative, so these cannot overflow: `more`
                // is a difference of two non-negative values, and held + more <= total.
                let more = new - old;
                if b.total - b.held < more {
                    return false;
                }
                b.held += more;
                true
            }
            None => new <= old,
        }
    }

    /// Adds `delta` to held (saturating).
    #[inline]
    pub fn add_held(&mut self, account: AccountId, asset: AssetId, delta: i128) {
        if delta != 0 {
            if let Some(b) = self.get_mut(account, asset) {
                b.held = b.held.saturating_add(delta);
            }
        }
    }

    /// Adds `delta` to total (saturating).
    #[inline]
    pub fn add_total(&mut self, account: AccountId, asset: AssetId, delta: i128) {
        if delta != 0 {
            if let Some(b) = self.get_mut(account, asset) {
                b.total = b.total.saturating_add(delta);
            }
        }
    }

    /// Sets a balance (recovery).
    pub fn set(&mut self, account: AccountId, asset: AssetId, b: Balance) {
        if let Some(x) = self.get_mut(account, asset) {
            *x = b;
        }
    }

    /// Every non-zero balance: accounts ascending, then assets ascending.
    pub fn balances(&self) -> Vec<(AccountId, AssetId, Balance)> {
        let mut v = Vec::new();
        for (ai, a) in self.assets.iter().enumerate() {
            let Some(a) = a else { continue };
            let asset = AssetId(ai as u16);
            v.extend(
                a.dense
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| !b.is_zero())
                    .map(|(i, b)| (AccountId(i as u64), asset, *b)),
            );
            v.extend(
                a.sparse
                    .iter()
                    .filter(|(_, b)| !b.is_zero())
                    .map(|(&i, b)| (AccountId(i), asset, *b)),
            );
        }
        v.sort_unstable_by_key(|&(acc, asset, _)| (acc, asset));
        v
    }

    /// One account's non-zero balances, assets ascending.
    pub fn account(&self, account: AccountId) -> Vec<(AssetId, Balance)> {
        self.assets()
            .map(|(a, _)| (a, self.get(account, a)))
            .filter(|(_, b)| !b.is_zero())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn rate(s: &str) -> Rate {
        Rate::from_decimal(Decimal::from_str(s).unwrap()).unwrap()
    }

    #[test]
    fn amounts_round_trip_every_i128() {
        for v in [0, 1, -1, i128::MAX, i128::MIN, 1 << 64, -(1 << 70) + 3] {
            assert_eq!(Amount::new(v).get(), v);
        }
    }

    #[test]
    fn fees_truncate_toward_zero() {
        assert_eq!(rate("0.001").apply(12345), 12);
        assert_eq!(rate("-0.0002").apply(12345), -2);
        assert_eq!(rate("0.001").apply(-12345), -12);
        assert_eq!(rate("0.0025").apply(399), 0);
        assert_eq!(rate("1.5").apply(3), 4);
        // Large notionals stay exact.
        let n = 10i128.pow(30) + 7;
        assert_eq!(rate("0.001").apply(n), 10i128.pow(27));
    }

    #[test]
    fn division_by_powers_of_ten_is_exact() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for (s, &d) in POW10.iter().enumerate().take(19) {
            let d = d as u64;
            let edges = [
                0,
                1,
                d - 1,
                d,
                d + 1,
                u64::MAX,
                u64::MAX - 1,
                1 << 63,
                (1 << 63) - 1,
            ];
            for v in edges {
                assert_eq!(div_pow10(v, s), v / d, "{v} / 10^{s}");
            }
            for _ in 0..20_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let v = x >> (x % 64);
                assert_eq!(div_pow10(v, s), v / d, "{v} / 10^{s}");
                assert_eq!(div_pow10(v / d * d, s), v / d);
            }
        }
    }

    #[test]
    fn units_format_and_parse_exactly() {
        assert_eq!(format_units(150, 2), "1.5");
        assert_eq!(format_units(-5, 3), "-0.005");
        assert_eq!(format_units(1_000, 0), "1000");
        assert_eq!(format_units(0, 4), "0");
        assert_eq!(
            format_units(i128::MAX, 18),
            "170141183460469231731.687303715884105727"
        );
        assert_eq!(units_of(Decimal::from_str("1.50").unwrap(), 2), Some(150));
        assert_eq!(units_of(Decimal::from_str("1.505").unwrap(), 2), None);
    }

    #[test]
    fn band_compares_exactly() {
        let f = InstrumentDef::funded(InstrumentId(0), AssetId(0), AssetId(1), 1, 1)
            .with_band(rate("0.1"))
            .funding()
            .unwrap();
        assert!(!f.outside_band(Side::Buy, Price(110), Some(Price(100))));
        assert!(f.outside_band(Side::Buy, Price(111), Some(Price(100))));
        assert!(!f.outside_band(Side::Sell, Price(90), Some(Price(100))));
        assert!(f.outside_band(Side::Sell, Price(89), Some(Price(100))));
        assert!(!f.outside_band(Side::Buy, Price(1000), None));
    }

    #[test]
    fn affordable_is_the_largest_quantity_that_fits() {
        let f = InstrumentDef::funded(InstrumentId(0), AssetId(0), AssetId(1), 1, 100)
            .with_fees(Rate::ZERO, rate("0.01"))
            .funding()
            .unwrap();
        // One lot at 10 ticks: 1000 + 10 = 1010.
        assert_eq!(f.affordable(Price(10), 5, 3029), 2);
        assert_eq!(f.affordable(Price(10), 5, 3030), 3);
        assert_eq!(f.affordable(Price(10), 5, 1_000_000), 5);
        assert_eq!(f.affordable(Price(10), 5, 0), 0);
    }

    #[test]
    fn hold_rate_is_the_larger_fee_or_zero() {
        let d = InstrumentDef::funded(InstrumentId(0), AssetId(0), AssetId(1), 1, 1);
        let f = d
            .with_fees(rate("-0.001"), rate("-0.002"))
            .funding()
            .unwrap();
        assert_eq!(f.hold, Rate::ZERO);
        let f = d
            .with_fees(rate("0.0015"), rate("0.001"))
            .funding()
            .unwrap();
        assert_eq!(f.hold, rate("0.0015"));
    }
}
