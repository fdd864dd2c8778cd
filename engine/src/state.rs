//! [`EngineState`]: everything the matcher needs to carry on, as plain data. Snapshots write
//! it; recovery reads it back into a [`crate::Matcher`] and a [`crate::BookReplica`].
//!
//! Built from the replica (off the matcher's thread), never by stopping the matcher.

use crate::codec::{get_def, get_order, put_def, put_order, EVENT_BYTES, R, W};
use crate::command::NewOrder;
use crate::funds::{AssetId, Balance, InstrumentDef, Ledger};
use crate::types::{AccountId, InstrumentId, MatchPolicy, OrderId, Price, Qty, Side};

/// One resting order with its acceptance number (orders expiries and mass cancels).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestingState {
    /// The order with its current price and open quantity.
    pub order: NewOrder,
    /// The global acceptance counter when it was accepted.
    pub accept_seq: u64,
}

/// The engine's state after a given command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineState {
    /// The last command (input sequence) whose events are included.
    pub cmd_seq: u64,
    /// The last event (output sequence) included.
    pub event_seq: u64,
    /// Orders accepted so far.
    pub accept_seq: u64,
    /// Events so far that are administrative (account status, instrument added) rather than
    /// order or instrument-status events; event logs that leave them out number the rest.
    pub admin_events: u64,
    /// Instruments with a book, and whether each is halted.
    pub instruments: Vec<(InstrumentId, bool)>,
    /// Every resting order: per instrument, bids best first then asks best first, each
    /// price level in queue order (re-inserting in this order restores time priority).
    pub orders: Vec<RestingState>,
    /// Every order id used so far, resting or not (never reused), as ascending disjoint
    /// inclusive ranges: ids from a counter cost one range per gap, not one entry per id.
    pub used_ids: Vec<(u64, u64)>,
    /// The engine's clock: the latest command time handled (time never goes backwards in
    /// sequence order, and carries on from here after recovery).
    pub clock: u64,
    /// Blocked accounts, ascending.
    pub blocked: Vec<AccountId>,
    /// The definitions of funded instruments, in id order (the others are unfunded).
    pub definitions: Vec<InstrumentDef>,
    /// The last trade price of each instrument that has traded, in id order.
    pub last_prices: Vec<(InstrumentId, Price)>,
    /// Declared assets and their scales, in id order.
    pub assets: Vec<(AssetId, u8)>,
    /// Every non-zero balance, accounts ascending, then assets ascending.
    pub balances: Vec<(AccountId, AssetId, Balance)>,
    /// Instruments with a matching policy other than FIFO: (instrument, policy, min_alloc).
    pub policies: Vec<(InstrumentId, MatchPolicy, Qty)>,
    /// The TOP order of each side that has one (`pro_rata_top`).
    pub tops: Vec<(InstrumentId, Side, OrderId)>,
    /// Resting icebergs: (order, display size, shown peak).
    pub icebergs: Vec<(OrderId, Qty, Qty)>,
    /// Pending stop orders, in acceptance order.
    pub stops: Vec<PendingStop>,
}

/// A stop order waiting for its trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingStop {
    /// The order as accepted (a stop-market order has type market).
    pub order: NewOrder,
    /// The global acceptance counter when it was accepted.
    pub accept_seq: u64,
    /// The trigger price.
    pub stop: Price,
}

/// Version 1 (before funded instruments): still read.
const MAGIC_V1: &[u8; 8] = b"RGXSTAT1";
/// Version 2 (dead ids one by one, no clock): still read.
const MAGIC_V2: &[u8; 8] = b"RGXSTAT2";
/// Version 3 (before matching policies and order types): still read.
const MAGIC_V3: &[u8; 8] = b"RGXSTAT3";
const MAGIC: &[u8; 8] = b"RGXSTAT4";
/// Bytes of an encoded [`InstrumentDef`].
const DEF_BYTES: usize = 47;

/// Why bytes are not an engine state.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a ringex engine state: {0}")]
pub struct StateFormatError(pub &'static str);

impl EngineState {
    /// How instrument `i` was defined.
    pub fn definition(&self, i: InstrumentId) -> InstrumentDef {
        self.definitions
            .iter()
            .find(|d| d.id == i)
            .copied()
            .unwrap_or(InstrumentDef::unfunded(i))
    }

    /// The last trade price of instrument `i`.
    pub fn last_price(&self, i: InstrumentId) -> Option<Price> {
        self.last_prices
            .iter()
            .find(|(x, _)| *x == i)
            .map(|&(_, p)| p)
    }

    /// The balances as a [`Ledger`].
    pub fn ledger(&self) -> Ledger {
        let mut l = Ledger::new();
        for &(asset, scale) in &self.assets {
            l.add_asset(asset, scale);
        }
        for &(account, asset, b) in &self.balances {
            l.set(account, asset, b);
        }
        l
    }

    /// Encodes to bytes (no checksum: the file layer adds one).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v =
            Vec::with_capacity(128 + self.orders.len() * EVENT_BYTES + self.used_ids.len() * 16);
        v.extend_from_slice(MAGIC);
        for x in [
            self.cmd_seq,
            self.event_seq,
            self.accept_seq,
            self.admin_events,
            self.instruments.len() as u64,
            self.orders.len() as u64,
            self.used_ids.len() as u64,
            self.blocked.len() as u64,
            self.definitions.len() as u64,
            self.last_prices.len() as u64,
            self.assets.len() as u64,
            self.balances.len() as u64,
            self.clock,
        ] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        for (i, h) in &self.instruments {
            v.extend_from_slice(&i.0.to_le_bytes());
            v.push(*h as u8);
        }
        let mut block = [0u8; EVENT_BYTES];
        for o in &self.orders {
            block = [0; EVENT_BYTES];
            let mut w = W {
                b: &mut block,
                at: 0,
            };
            put_order(&mut w, &o.order);
            w.u64(o.accept_seq);
            v.extend_from_slice(&block);
        }
        let _ = block;
        for &(lo, hi) in &self.used_ids {
            v.extend_from_slice(&lo.to_le_bytes());
            v.extend_from_slice(&hi.to_le_bytes());
        }
        for a in &self.blocked {
            v.extend_from_slice(&a.0.to_le_bytes());
        }
        for d in &self.definitions {
            let mut block = [0u8; EVENT_BYTES];
            let mut w = W {
                b: &mut block,
                at: 0,
            };
            put_def(&mut w, d);
            v.extend_from_slice(&block[..DEF_BYTES]);
        }
        for (i, p) in &self.last_prices {
            v.extend_from_slice(&i.0.to_le_bytes());
            v.extend_from_slice(&p.0.to_le_bytes());
        }
        for (a, scale) in &self.assets {
            v.extend_from_slice(&a.0.to_le_bytes());
            v.push(*scale);
        }
        for (acc, a, b) in &self.balances {
            v.extend_from_slice(&acc.0.to_le_bytes());
            v.extend_from_slice(&a.0.to_le_bytes());
            v.extend_from_slice(&b.total.to_le_bytes());
            v.extend_from_slice(&b.held.to_le_bytes());
        }
        self.put_extras(&mut v);
        v
    }

    /// Policies, TOP orders, icebergs and pending stops (version 4).
    fn put_extras(&self, v: &mut Vec<u8>) {
        for n in [
            self.policies.len(),
            self.tops.len(),
            self.icebergs.len(),
            self.stops.len(),
        ] {
            v.extend_from_slice(&(n as u64).to_le_bytes());
        }
        for &(i, p, m) in &self.policies {
            v.extend_from_slice(&i.0.to_le_bytes());
            v.push(p as u8);
            v.extend_from_slice(&m.0.to_le_bytes());
        }
        for &(i, side, o) in &self.tops {
            v.extend_from_slice(&i.0.to_le_bytes());
            v.push(side as u8);
            v.extend_from_slice(&o.0.to_le_bytes());
        }
        for &(o, d, p) in &self.icebergs {
            for x in [o.0, d.0, p.0] {
                v.extend_from_slice(&x.to_le_bytes());
            }
        }
        for st in &self.stops {
            let mut block = [0u8; EVENT_BYTES];
            let mut w = W {
                b: &mut block,
                at: 0,
            };
            put_order(&mut w, &st.order);
            w.u64(st.accept_seq);
            v.extend_from_slice(&block);
            v.extend_from_slice(&st.stop.0.to_le_bytes());
        }
    }

    /// Reads what [`EngineState::put_extras`] wrote.
    fn get_extras(
        &mut self,
        take: &mut dyn FnMut(usize) -> Result<Vec<u8>, StateFormatError>,
    ) -> Result<(), StateFormatError> {
        let word = |take: &mut dyn FnMut(usize) -> Result<Vec<u8>, StateFormatError>| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&take(8)?);
            Ok::<u64, StateFormatError>(u64::from_le_bytes(a))
        };
        let counts = [word(take)?, word(take)?, word(take)?, word(take)?];
        let block = |take: &mut dyn FnMut(usize) -> Result<Vec<u8>, StateFormatError>, n: usize| {
            let mut b = [0u8; EVENT_BYTES];
            b[..n].copy_from_slice(&take(n)?);
            Ok::<[u8; EVENT_BYTES], StateFormatError>(b)
        };
        const POLICIES: [MatchPolicy; 3] = [
            MatchPolicy::Fifo,
            MatchPolicy::ProRata,
            MatchPolicy::ProRataTop,
        ];
        for _ in 0..counts[0] {
            let b = block(take, 13)?;
            let mut r = R { b: &b, at: 0 };
            let i = InstrumentId(r.u32());
            let p = *POLICIES
                .get(r.u8() as usize)
                .ok_or(StateFormatError("bad policy"))?;
            self.policies.push((i, p, Qty(r.u64())));
        }
        for _ in 0..counts[1] {
            let b = block(take, 13)?;
            let mut r = R { b: &b, at: 0 };
            let i = InstrumentId(r.u32());
            let side = if r.u8() == 1 { Side::Sell } else { Side::Buy };
            self.tops.push((i, side, OrderId(r.u64())));
        }
        for _ in 0..counts[2] {
            let b = block(take, 24)?;
            let mut r = R { b: &b, at: 0 };
            self.icebergs
                .push((OrderId(r.u64()), Qty(r.u64()), Qty(r.u64())));
        }
        for _ in 0..counts[3] {
            let b = block(take, EVENT_BYTES)?;
            let mut r = R { b: &b, at: 0 };
            let order = get_order(&mut r).ok_or(StateFormatError("bad stop order"))?;
            let accept_seq = r.u64();
            let mut a = [0u8; 8];
            a.copy_from_slice(&take(8)?);
            let stop = Price(i64::from_le_bytes(a));
            self.stops.push(PendingStop {
                order,
                accept_seq,
                stop,
            });
        }
        Ok(())
    }

    /// Decodes bytes written by [`EngineState::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, StateFormatError> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], StateFormatError> {
            let s = b.get(at..at + n).ok_or(StateFormatError("truncated"))?;
            at += n;
            Ok(s)
        };
        let version = match take(8)? {
            m if m == MAGIC => 4,
            m if m == MAGIC_V3 => 3,
            m if m == MAGIC_V2 => 2,
            m if m == MAGIC_V1 => 1,
            _ => return Err(StateFormatError("bad magic")),
        };
        let mut u64s = [0u64; 13];
        for x in u64s.iter_mut().take([8, 12, 13, 13][version - 1]) {
            let mut a = [0u8; 8];
            a.copy_from_slice(take(8)?);
            *x = u64::from_le_bytes(a);
        }
        let [cmd_seq, event_seq, accept_seq, admin_events, ni, no, nd, nb, nf, nl, na, nbal, clock] =
            u64s;
        let cap = |n: u64| (n as usize).min(b.len());
        let mut s = EngineState {
            cmd_seq,
            event_seq,
            accept_seq,
            admin_events,
            instruments: Vec::with_capacity(cap(ni)),
            orders: Vec::with_capacity(cap(no)),
            used_ids: Vec::with_capacity(cap(nd)),
            clock,
            blocked: Vec::with_capacity(cap(nb)),
            definitions: Vec::with_capacity(cap(nf)),
            last_prices: Vec::with_capacity(cap(nl)),
            assets: Vec::with_capacity(cap(na)),
            balances: Vec::with_capacity(cap(nbal)),
            ..EngineState::default()
        };
        for _ in 0..ni {
            let x = take(5)?;
            let mut a = [0u8; 4];
            a.copy_from_slice(&x[..4]);
            s.instruments
                .push((InstrumentId(u32::from_le_bytes(a)), x[4] == 1));
        }
        for _ in 0..no {
            let mut block = [0u8; EVENT_BYTES];
            block.copy_from_slice(take(EVENT_BYTES)?);
            let mut r = R { b: &block, at: 0 };
            let order = get_order(&mut r).ok_or(StateFormatError("bad order"))?;
            let accept_seq = r.u64();
            s.orders.push(RestingState { order, accept_seq });
        }
        let mut dead: Vec<u64> = Vec::new();
        for _ in 0..nd {
            let mut word = || -> Result<u64, StateFormatError> {
                let mut a = [0u8; 8];
                a.copy_from_slice(take(8)?);
                Ok(u64::from_le_bytes(a))
            };
            if version >= 3 {
                let (lo, hi) = (word()?, word()?);
                if lo > hi || s.used_ids.last().is_some_and(|&(_, h)| h >= lo) {
                    return Err(StateFormatError("used id ranges out of order"));
                }
                s.used_ids.push((lo, hi));
            } else {
                dead.push(word()?);
            }
        }
        for _ in 0..nb {
            let mut a = [0u8; 8];
            a.copy_from_slice(take(8)?);
            s.blocked.push(AccountId(u64::from_le_bytes(a)));
        }
        let mut fixed = |n: usize| -> Result<[u8; EVENT_BYTES], StateFormatError> {
            let mut block = [0u8; EVENT_BYTES];
            block[..n].copy_from_slice(take(n)?);
            Ok(block)
        };
        for _ in 0..nf {
            let block = fixed(DEF_BYTES)?;
            let d = get_def(&mut R { b: &block, at: 0 });
            s.definitions.push(d);
        }
        for _ in 0..nl {
            let block = fixed(12)?;
            let mut r = R { b: &block, at: 0 };
            s.last_prices
                .push((InstrumentId(r.u32()), Price(r.u64() as i64)));
        }
        for _ in 0..na {
            let block = fixed(3)?;
            let mut r = R { b: &block, at: 0 };
            s.assets.push((AssetId(r.u16()), r.u8()));
        }
        for _ in 0..nbal {
            let block = fixed(42)?;
            let mut r = R { b: &block, at: 0 };
            let (acc, asset) = (AccountId(r.u64()), AssetId(r.u16()));
            let (total, held) = (r.amount().get(), r.amount().get());
            s.balances.push((acc, asset, Balance { total, held }));
        }
        if version >= 4 {
            let mut t = |n: usize| take(n).map(<[u8]>::to_vec);
            s.get_extras(&mut t)?;
        }
        if at != b.len() {
            return Err(StateFormatError("trailing bytes"));
        }
        if version < 3 {
            // Older states listed dead ids one by one; resting ids were implied.
            dead.extend(s.orders.iter().map(|o| o.order.order_id.0));
            s.used_ids = ranges_of(dead);
        }
        Ok(s)
    }
}

/// Ascending disjoint inclusive ranges covering exactly `ids`.
pub fn ranges_of(mut ids: Vec<u64>) -> Vec<(u64, u64)> {
    ids.sort_unstable();
    let mut v: Vec<(u64, u64)> = Vec::new();
    for id in ids {
        match v.last_mut() {
            Some(last) if last.1.saturating_add(1) >= id => last.1 = last.1.max(id),
            _ => v.push((id, id)),
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, EventKind};
    use crate::types::{Qty, Sequence};

    /// Snapshots and journals written before funded instruments existed still load: a
    /// version-1 state (no funding sections) and an `InstrumentAdded` record holding only
    /// the id.
    #[test]
    fn version_one_states_and_events_still_load() {
        let state = EngineState {
            cmd_seq: 7,
            event_seq: 9,
            accept_seq: 1,
            instruments: vec![(InstrumentId(3), true)],
            used_ids: vec![(5, 5)],
            blocked: vec![AccountId(2)],
            ..EngineState::default()
        };
        // Versions 1 and 2: dead ids one by one; version 1 has eight header words.
        let sections = |v: &mut Vec<u8>| {
            v.extend_from_slice(&3u32.to_le_bytes());
            v.push(1);
            v.extend_from_slice(&5u64.to_le_bytes());
            v.extend_from_slice(&2u64.to_le_bytes());
        };
        let words = [7u64, 9, 1, 0, 1, 0, 1, 1, 0, 0, 0, 0];
        let mut v1 = MAGIC_V1.to_vec();
        let mut v2 = MAGIC_V2.to_vec();
        for (k, w) in words.iter().enumerate() {
            if k < 8 {
                v1.extend_from_slice(&w.to_le_bytes());
            }
            v2.extend_from_slice(&w.to_le_bytes());
        }
        sections(&mut v1);
        sections(&mut v2);
        assert_eq!(EngineState::from_bytes(&v1), Ok(state.clone()));
        assert_eq!(EngineState::from_bytes(&v2), Ok(state.clone()));
        let with_clock = EngineState {
            clock: 12345,
            used_ids: vec![(1, 3), (5, 9), (u64::MAX, u64::MAX)],
            ..state
        };
        assert_eq!(
            EngineState::from_bytes(&with_clock.to_bytes()),
            Ok(with_clock)
        );

        let mut old = [0u8; EVENT_BYTES];
        old[0] = 9; // InstrumentAdded
        old[1] = 1;
        old[2] = 4; // command 4
        old[10..14].copy_from_slice(&3u32.to_le_bytes());
        let e = Event::decode(&old).expect("decodes");
        assert_eq!(e.cmd_seq(), Sequence(4));
        assert_eq!(
            e.kind,
            EventKind::InstrumentAdded(InstrumentDef::unfunded(InstrumentId(3)))
        );
        assert!(InstrumentDef::unfunded(InstrumentId(3)).max_qty() != Some(Qty(0)));
    }

    #[test]
    fn funded_state_round_trips() {
        let def = InstrumentDef::funded(InstrumentId(1), AssetId(0), AssetId(1), 3, 7)
            .with_max_qty(crate::types::Qty(9));
        let state = EngineState {
            instruments: vec![(InstrumentId(1), false)],
            definitions: vec![def],
            last_prices: vec![(InstrumentId(1), Price(-5))],
            assets: vec![(AssetId(0), 0), (AssetId(1), 18)],
            balances: vec![(
                AccountId(u64::MAX),
                AssetId(1),
                Balance {
                    total: i128::MAX,
                    held: 1 << 100,
                },
            )],
            ..EngineState::default()
        };
        assert_eq!(EngineState::from_bytes(&state.to_bytes()), Ok(state));
    }
}
