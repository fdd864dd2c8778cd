//! The CSV event log and book dump of `ringex run` (docs/formats.md).
//!
//! Events that have no line in the format (account status, instrument added) are not
//! written, and `seq` counts only the lines written, from 1.

use crate::script::Script;
use ringex_engine::funds::format_units;
use ringex_engine::{
    AccountId, Amount, AssetId, Balance, Event, EventKind, InstrumentId, RestingOrder, Side,
};
use std::io::{self, Write};

/// Writes events as CSV lines, numbering them.
#[derive(Debug, Default)]
pub struct EventCsv {
    seq: u64,
}

impl EventCsv {
    /// A writer whose first line gets `seq` 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer that continues after `seq` lines already written.
    pub fn continuing_after(seq: u64) -> Self {
        EventCsv { seq }
    }

    /// The `seq` of the last line written.
    pub fn last_seq(&self) -> u64 {
        self.seq
    }

    /// Writes one event; returns its `seq`, or `None` when the format has no line for it.
    pub fn write<W: Write + ?Sized>(
        &mut self,
        script: &Script,
        e: &Event,
        w: &mut W,
    ) -> io::Result<Option<u64>> {
        let sym = |i: InstrumentId| script.spec(i).map_or("-", |s| s.symbol.as_str());
        let price =
            |i: InstrumentId, p| script.spec(i).map(|s| s.price_text(p)).unwrap_or_default();
        let qty = |i: InstrumentId, q: ringex_engine::Qty| {
            script
                .spec(i)
                .map(|s| s.qty_text(q.0 as u128))
                .unwrap_or_default()
        };
        if e.is_admin() {
            return Ok(None);
        }
        self.seq += 1;
        let seq = self.seq;
        match e.kind {
            EventKind::Accepted {
                instrument,
                order_id,
                ..
            } => {
                writeln!(w, "accepted,{seq},{},{order_id}", sym(instrument))
            }
            EventKind::Rejected {
                instrument,
                order_id,
                code,
                ..
            } => {
                let s = instrument.map_or("-", sym);
                match order_id {
                    Some(id) => writeln!(w, "rejected,{seq},{s},{id},{code}"),
                    None => writeln!(w, "rejected,{seq},{s},-,{code}"),
                }
            }
            EventKind::Fill {
                instrument: i,
                taker,
                maker,
                price: p,
                qty: q,
                ..
            } => writeln!(
                w,
                "fill,{seq},{},{taker},{maker},{},{}",
                sym(i),
                price(i, p),
                qty(i, q)
            ),
            EventKind::Cancelled {
                instrument: i,
                order_id,
                qty: q,
                reason,
                ..
            } => writeln!(
                w,
                "cancelled,{seq},{},{order_id},{},{}",
                sym(i),
                qty(i, q),
                reason.as_str()
            ),
            EventKind::Modified {
                instrument: i,
                order_id,
                price: p,
                qty: q,
                ..
            } => writeln!(
                w,
                "modified,{seq},{},{order_id},{},{}",
                sym(i),
                price(i, p),
                qty(i, q)
            ),
            EventKind::Expired {
                instrument: i,
                order_id,
                qty: q,
                ..
            } => writeln!(w, "expired,{seq},{},{order_id},{}", sym(i), qty(i, q)),
            EventKind::InstrumentStatus { instrument, halted } => {
                let st = if halted { "halted" } else { "open" };
                writeln!(w, "status,{seq},{},{st}", sym(instrument))
            }
            EventKind::Triggered {
                instrument,
                order_id,
                ..
            } => writeln!(w, "triggered,{seq},{},{order_id}", sym(instrument)),
            EventKind::Deposited {
                account,
                asset,
                amount,
            } => {
                let (name, a) = money(script, asset, amount);
                writeln!(w, "deposited,{seq},{account},{name},{a}")
            }
            EventKind::Withdrawn {
                account,
                asset,
                amount,
            } => {
                let (name, a) = money(script, asset, amount);
                writeln!(w, "withdrawn,{seq},{account},{name},{a}")
            }
            EventKind::AccountStatus { .. }
            | EventKind::InstrumentAdded(_)
            | EventKind::AssetAdded { .. }
            | EventKind::FillFees { .. }
            | EventKind::OrderTerms { .. }
            | EventKind::MatchPolicySet { .. }
            | EventKind::SnapshotRequested { .. } => Ok(()),
        }?;
        Ok(Some(seq))
    }
}

/// An asset's name and an amount of it as a normalized decimal.
fn money(script: &Script, asset: AssetId, amount: Amount) -> (String, String) {
    match script.asset(asset) {
        Some(a) => (a.name.clone(), format_units(amount.get(), a.scale)),
        None => (asset.to_string(), amount.to_string()),
    }
}

/// Writes `balance,<account>,<asset>,<total>,<held>` for every non-zero balance, accounts
/// ascending, assets in declaration order.
pub fn write_balances(
    script: &Script,
    balances: &[(AccountId, AssetId, Balance)],
    w: &mut impl Write,
) -> io::Result<()> {
    for &(account, asset, b) in balances {
        let (name, total) = money(script, asset, Amount::new(b.total));
        let held = money(script, asset, Amount::new(b.held)).1;
        writeln!(w, "balance,{account},{name},{total},{held}")?;
    }
    Ok(())
}

/// Writes `book,<symbol>,<bid|ask>,<price>,<order_id>,<open_qty>` for every resting order of
/// every instrument (in definition order), bids best first then asks best first.
pub fn write_book(
    script: &Script,
    orders: impl Fn(InstrumentId) -> Vec<RestingOrder>,
    w: &mut impl Write,
) -> io::Result<()> {
    for spec in script.specs() {
        for o in orders(spec.id) {
            let side = match o.side {
                Side::Buy => "bid",
                Side::Sell => "ask",
            };
            writeln!(
                w,
                "book,{},{side},{},{},{}",
                spec.symbol,
                spec.price_text(o.price),
                o.order_id,
                spec.qty_text(o.qty.0 as u128)
            )?;
        }
    }
    Ok(())
}
