//! A stable binary encoding of [`Event`]s (64 bytes each, little-endian) for the journal
//! and snapshots. The in-memory layout of `Event` is not a file format; this is.
//!
//! Byte 0 is the kind, byte 1 flags (bit 0: last event of its command), bytes 2..10 the
//! command's input sequence; the rest depends on the kind (at most 54 bytes).

use crate::command::NewOrder;
use crate::event::{CancelReason, Event, EventKind, RejectCode};
use crate::funds::{Amount, AssetId, InstrumentDef};
use crate::types::*;

/// Bytes per encoded event.
pub const EVENT_BYTES: usize = 64;

pub(crate) struct W<'a> {
    pub(crate) b: &'a mut [u8; EVENT_BYTES],
    pub(crate) at: usize,
}

impl W<'_> {
    pub(crate) fn u8(&mut self, v: u8) {
        self.b[self.at] = v;
        self.at += 1;
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.b[self.at..self.at + 2].copy_from_slice(&v.to_le_bytes());
        self.at += 2;
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.b[self.at..self.at + 4].copy_from_slice(&v.to_le_bytes());
        self.at += 4;
    }
    pub(crate) fn amount(&mut self, v: Amount) {
        self.b[self.at..self.at + 16].copy_from_slice(&v.get().to_le_bytes());
        self.at += 16;
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.b[self.at..self.at + 8].copy_from_slice(&v.to_le_bytes());
        self.at += 8;
    }
}

pub(crate) struct R<'a> {
    pub(crate) b: &'a [u8; EVENT_BYTES],
    pub(crate) at: usize,
}

impl R<'_> {
    pub(crate) fn u8(&mut self) -> u8 {
        let v = self.b[self.at];
        self.at += 1;
        v
    }
    pub(crate) fn u16(&mut self) -> u16 {
        let mut a = [0u8; 2];
        a.copy_from_slice(&self.b[self.at..self.at + 2]);
        self.at += 2;
        u16::from_le_bytes(a)
    }
    pub(crate) fn amount(&mut self) -> Amount {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.b[self.at..self.at + 16]);
        self.at += 16;
        Amount::new(i128::from_le_bytes(a))
    }
    pub(crate) fn u32(&mut self) -> u32 {
        let mut a = [0u8; 4];
        a.copy_from_slice(&self.b[self.at..self.at + 4]);
        self.at += 4;
        u32::from_le_bytes(a)
    }
    pub(crate) fn u64(&mut self) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&self.b[self.at..self.at + 8]);
        self.at += 8;
        u64::from_le_bytes(a)
    }
}

fn side_u8(s: Side) -> u8 {
    s as u8
}
fn side_of(v: u8) -> Option<Side> {
    [Side::Buy, Side::Sell].get(v as usize).copied()
}
const TIFS: [TimeInForce; 4] = [
    TimeInForce::Gtc,
    TimeInForce::Ioc,
    TimeInForce::Fok,
    TimeInForce::Gtd,
];
const STPS: [SelfTradePrevention; 4] = [
    SelfTradePrevention::CancelTaker,
    SelfTradePrevention::CancelMaker,
    SelfTradePrevention::CancelBoth,
    SelfTradePrevention::Allow,
];
const REASONS: [CancelReason; 7] = [
    CancelReason::User,
    CancelReason::MassCancel,
    CancelReason::Ioc,
    CancelReason::Fok,
    CancelReason::Market,
    CancelReason::SelfTrade,
    CancelReason::InsufficientFunds,
];

const POLICIES: [MatchPolicy; 3] = [
    MatchPolicy::Fifo,
    MatchPolicy::ProRata,
    MatchPolicy::ProRataTop,
];

/// An order's terms: instrument, id, display size, stop flag and trigger (29 bytes).
pub(crate) fn put_terms(w: &mut W, t: &crate::command::OrderTerms) {
    w.u32(t.instrument.0);
    w.u64(t.order_id.0);
    w.u64(t.display.0);
    w.u8(t.stop.is_some() as u8);
    w.u64(t.stop.map_or(0, |p| p.0 as u64));
}

pub(crate) fn get_terms(r: &mut R) -> crate::command::OrderTerms {
    let instrument = InstrumentId(r.u32());
    let order_id = OrderId(r.u64());
    let display = Qty(r.u64());
    let has_stop = r.u8() == 1;
    let stop = Price(r.u64() as i64);
    crate::command::OrderTerms {
        instrument,
        order_id,
        display,
        stop: has_stop.then_some(stop),
    }
}

fn pos<T: PartialEq>(all: &[T], v: T) -> u8 {
    all.iter().position(|x| *x == v).unwrap_or(0) as u8
}

/// A rejection (event) or an invalid command: flags, code, instrument, order id, account.
pub(crate) fn put_reject(
    w: &mut W,
    instrument: Option<InstrumentId>,
    order_id: Option<OrderId>,
    account: AccountId,
    code: RejectCode,
) {
    w.u8(instrument.is_some() as u8 | (order_id.is_some() as u8) << 1);
    w.u8(pos(&RejectCode::ALL, code));
    w.u32(instrument.map_or(0, |i| i.0));
    w.u64(order_id.map_or(0, |i| i.0));
    w.u64(account.0);
}

/// What [`put_reject`] wrote.
pub(crate) type Reject = (Option<InstrumentId>, Option<OrderId>, AccountId, RejectCode);

pub(crate) fn get_reject(r: &mut R) -> Option<Reject> {
    let f = r.u8();
    let code = *RejectCode::ALL.get(r.u8() as usize)?;
    let i = InstrumentId(r.u32());
    let o = OrderId(r.u64());
    Some((
        (f & 1 == 1).then_some(i),
        (f & 2 == 2).then_some(o),
        AccountId(r.u64()),
        code,
    ))
}

/// A deposit or withdrawal: account, asset, amount.
pub(crate) fn put_transfer(w: &mut W, account: AccountId, asset: AssetId, amount: Amount) {
    w.u64(account.0);
    w.u16(asset.0);
    w.amount(amount);
}

pub(crate) fn get_transfer(r: &mut R) -> (AccountId, AssetId, Amount) {
    (AccountId(r.u64()), AssetId(r.u16()), r.amount())
}

/// Writes a [`NewOrder`] in 48 bytes.
/// Writes the definition in 47 bytes (the codec of events and snapshots).
pub(crate) fn put_def(w: &mut W, d: &InstrumentDef) {
    w.u32(d.id.0);
    w.u64(d.base_per_lot);
    w.u64(d.quote_per_tick_lot);
    w.u64(d.max_qty);
    w.u32(d.maker_m as u32);
    w.u32(d.taker_m as u32);
    w.u32(d.band_m);
    w.u16(d.base);
    w.u16(d.quote);
    w.u8(d.maker_s);
    w.u8(d.taker_s);
    w.u8(d.band_s);
}

/// Reads what [`put_def`] wrote. A definition without a base unit is
/// unfunded (journals written before funded instruments hold only the id, then zeros).
pub(crate) fn get_def(r: &mut R) -> InstrumentDef {
    let id = InstrumentId(r.u32());
    let d = InstrumentDef {
        id,
        base_per_lot: r.u64(),
        quote_per_tick_lot: r.u64(),
        max_qty: r.u64(),
        maker_m: r.u32() as i32,
        taker_m: r.u32() as i32,
        band_m: r.u32(),
        base: r.u16(),
        quote: r.u16(),
        maker_s: r.u8(),
        taker_s: r.u8(),
        band_s: r.u8(),
    };
    if d.is_funded() {
        d
    } else {
        InstrumentDef::unfunded(id)
    }
}

pub(crate) fn put_order(w: &mut W, o: &NewOrder) {
    w.u32(o.instrument.0);
    w.u64(o.account.0);
    w.u64(o.order_id.0);
    w.u64(o.expiry.0);
    w.u64(o.price.0 as u64);
    w.u64(o.qty.0);
    w.u32(o.alloc_group.0);
    w.u8(side_u8(o.side));
    w.u8((o.order_type == OrderType::Market) as u8);
    w.u8(pos(&TIFS, o.tif));
    w.u8(o.post_only as u8 | pos(&STPS, o.stp) << 1);
}

pub(crate) fn get_order(r: &mut R) -> Option<NewOrder> {
    let instrument = InstrumentId(r.u32());
    let account = AccountId(r.u64());
    let order_id = OrderId(r.u64());
    let expiry = Timestamp(r.u64());
    let price = Price(r.u64() as i64);
    let qty = Qty(r.u64());
    let alloc_group = AllocGroupId(r.u32());
    let side = side_of(r.u8())?;
    let order_type = match r.u8() {
        0 => OrderType::Limit,
        1 => OrderType::Market,
        _ => return None,
    };
    let tif = *TIFS.get(r.u8() as usize)?;
    let f = r.u8();
    Some(NewOrder {
        instrument,
        account,
        order_id,
        side,
        order_type,
        tif,
        expiry,
        price,
        qty,
        post_only: f & 1 == 1,
        stp: *STPS.get((f >> 1) as usize & 3)?,
        alloc_group,
    })
}

impl Event {
    /// Encodes into 64 bytes.
    pub fn encode(&self, out: &mut [u8; EVENT_BYTES]) {
        *out = [0; EVENT_BYTES];
        let mut w = W { b: out, at: 0 };
        let kind: u8 = match self.kind {
            EventKind::Accepted { .. } => 1,
            EventKind::Rejected { .. } => 2,
            EventKind::Fill { .. } => 3,
            EventKind::Cancelled { .. } => 4,
            EventKind::Modified { .. } => 5,
            EventKind::Expired { .. } => 6,
            EventKind::InstrumentStatus { .. } => 7,
            EventKind::AccountStatus { .. } => 8,
            EventKind::InstrumentAdded(_) => 9,
            EventKind::SnapshotRequested { .. } => 10,
            EventKind::AssetAdded { .. } => 11,
            EventKind::Deposited { .. } => 12,
            EventKind::Withdrawn { .. } => 13,
            EventKind::FillFees { .. } => 14,
            EventKind::OrderTerms { .. } => 15,
            EventKind::Triggered { .. } => 16,
            EventKind::MatchPolicySet { .. } => 17,
        };
        w.u8(kind);
        w.u8(self.is_last_of_command() as u8);
        w.u64(self.cmd_seq().0);
        match self.kind {
            EventKind::Accepted { .. } => {
                if let Some(o) = self.kind.accepted_order() {
                    put_order(&mut w, &o)
                }
            }
            EventKind::Rejected {
                instrument,
                order_id,
                account,
                code,
            } => put_reject(&mut w, instrument, order_id, account, code),
            EventKind::Fill {
                instrument,
                taker,
                maker,
                maker_account,
                price,
                qty,
                maker_left,
                taker_side,
            } => {
                w.u32(instrument.0);
                w.u64(taker.0);
                w.u64(maker.0);
                w.u64(price.0 as u64);
                w.u64(qty.0);
                w.u8(side_u8(taker_side));
                w.u64(maker_account.0);
                w.u64(maker_left.0);
            }
            EventKind::Cancelled {
                instrument,
                order_id,
                account,
                qty,
                reason,
                side,
                price,
            } => {
                w.u32(instrument.0);
                w.u64(order_id.0);
                w.u64(account.0);
                w.u64(qty.0);
                w.u8(pos(&REASONS, reason));
                w.u64(price.0 as u64);
                w.u8(side_u8(side));
            }
            EventKind::Modified {
                instrument,
                order_id,
                account,
                price,
                qty,
                kept_priority,
                side,
                old_price,
                old_qty,
            } => {
                w.u32(instrument.0);
                w.u64(order_id.0);
                w.u64(account.0);
                w.u64(price.0 as u64);
                w.u64(qty.0);
                w.u8(kept_priority as u8);
                w.u8(side_u8(side));
                w.u64(old_price.0 as u64);
                w.u64(old_qty.0);
            }
            EventKind::Expired {
                instrument,
                order_id,
                account,
                qty,
                side,
                price,
            } => {
                w.u32(instrument.0);
                w.u64(order_id.0);
                w.u64(account.0);
                w.u64(qty.0);
                w.u64(price.0 as u64);
                w.u8(side_u8(side));
            }
            EventKind::InstrumentStatus { instrument, halted } => {
                w.u32(instrument.0);
                w.u8(halted as u8);
            }
            EventKind::AccountStatus { account, blocked } => {
                w.u64(account.0);
                w.u8(blocked as u8);
            }
            EventKind::InstrumentAdded(d) => put_def(&mut w, &d),
            EventKind::SnapshotRequested { instrument } => w.u32(instrument.0),
            EventKind::AssetAdded { asset, scale } => {
                w.u16(asset.0);
                w.u8(scale);
            }
            EventKind::Deposited {
                account,
                asset,
                amount,
            }
            | EventKind::Withdrawn {
                account,
                asset,
                amount,
            } => put_transfer(&mut w, account, asset, amount),
            EventKind::FillFees {
                instrument,
                buyer_fee,
                seller_fee,
            } => {
                w.u32(instrument.0);
                w.amount(buyer_fee);
                w.amount(seller_fee);
            }
            EventKind::OrderTerms { instrument, terms } => {
                w.u32(instrument.0);
                put_terms(&mut w, &terms);
            }
            EventKind::Triggered {
                instrument,
                order_id,
                account,
                side,
                stop,
            } => {
                w.u32(instrument.0);
                w.u64(order_id.0);
                w.u64(account.0);
                w.u8(side_u8(side));
                w.u64(stop.0 as u64);
            }
            EventKind::MatchPolicySet {
                instrument,
                policy,
                min_alloc,
            } => {
                w.u32(instrument.0);
                w.u8(pos(&POLICIES, policy));
                w.u64(min_alloc.0);
            }
        }
    }

    /// Decodes 64 bytes written by [`Event::encode`]; `None` if they are not an event.
    pub fn decode(b: &[u8; EVENT_BYTES]) -> Option<Event> {
        let mut r = R { b, at: 0 };
        let kind = r.u8();
        let last = r.u8() & 1 == 1;
        let cmd_seq = Sequence(r.u64());
        let k = match kind {
            1 => EventKind::accepted(&get_order(&mut r)?),
            2 => {
                let (instrument, order_id, account, code) = get_reject(&mut r)?;
                EventKind::Rejected {
                    instrument,
                    order_id,
                    account,
                    code,
                }
            }
            // Journals written before the maker's account and open quantity were added read
            // them as 0.
            3 => {
                let instrument = InstrumentId(r.u32());
                let taker = OrderId(r.u64());
                let maker = OrderId(r.u64());
                let price = Price(r.u64() as i64);
                let qty = Qty(r.u64());
                let taker_side = side_of(r.u8())?;
                EventKind::Fill {
                    instrument,
                    taker,
                    maker,
                    maker_account: AccountId(r.u64()),
                    maker_left: Qty(r.u64()),
                    price,
                    qty,
                    taker_side,
                }
            }
            // Journals written before side and price were added read as buy at 0.
            4 => EventKind::Cancelled {
                instrument: InstrumentId(r.u32()),
                order_id: OrderId(r.u64()),
                account: AccountId(r.u64()),
                qty: Qty(r.u64()),
                reason: *REASONS.get(r.u8() as usize)?,
                price: Price(r.u64() as i64),
                side: side_of(r.u8())?,
            },
            // Journals written before side and the old price and quantity were added read
            // them as buy, 0 and 0.
            5 => EventKind::Modified {
                instrument: InstrumentId(r.u32()),
                order_id: OrderId(r.u64()),
                account: AccountId(r.u64()),
                price: Price(r.u64() as i64),
                qty: Qty(r.u64()),
                kept_priority: r.u8() == 1,
                side: side_of(r.u8())?,
                old_price: Price(r.u64() as i64),
                old_qty: Qty(r.u64()),
            },
            6 => EventKind::Expired {
                instrument: InstrumentId(r.u32()),
                order_id: OrderId(r.u64()),
                account: AccountId(r.u64()),
                qty: Qty(r.u64()),
                price: Price(r.u64() as i64),
                side: side_of(r.u8())?,
            },
            7 => EventKind::InstrumentStatus {
                instrument: InstrumentId(r.u32()),
                halted: r.u8() == 1,
            },
            8 => EventKind::AccountStatus {
                account: AccountId(r.u64()),
                blocked: r.u8() == 1,
            },
            9 => EventKind::InstrumentAdded(get_def(&mut r)),
            10 => EventKind::SnapshotRequested {
                instrument: InstrumentId(r.u32()),
            },
            11 => EventKind::AssetAdded {
                asset: AssetId(r.u16()),
                scale: r.u8(),
            },
            12 | 13 => {
                let (account, asset, amount) = get_transfer(&mut r);
                if kind == 12 {
                    EventKind::Deposited {
                        account,
                        asset,
                        amount,
                    }
                } else {
                    EventKind::Withdrawn {
                        account,
                        asset,
                        amount,
                    }
                }
            }
            14 => EventKind::FillFees {
                instrument: InstrumentId(r.u32()),
                buyer_fee: r.amount(),
                seller_fee: r.amount(),
            },
            15 => EventKind::OrderTerms {
                instrument: InstrumentId(r.u32()),
                terms: get_terms(&mut r),
            },
            16 => EventKind::Triggered {
                instrument: InstrumentId(r.u32()),
                order_id: OrderId(r.u64()),
                account: AccountId(r.u64()),
                side: side_of(r.u8())?,
                stop: Price(r.u64() as i64),
            },
            17 => EventKind::MatchPolicySet {
                instrument: InstrumentId(r.u32()),
                policy: *POLICIES.get(r.u8() as usize)?,
                min_alloc: Qty(r.u64()),
            },
            _ => return None,
        };
        let mut e = Event::new(cmd_seq, k);
        e.set_last_of_command(last);
        Some(e)
    }
}

/// Bytes per encoded command.
pub const COMMAND_BYTES: usize = 64;

impl crate::command::Command {
    /// Encodes into 64 bytes (the wire format of the command streams of `ringex node`):
    /// byte 0 the kind, bytes 1..9 the time, the rest depends on the kind (at most 55
    /// bytes).
    pub fn encode(&self, out: &mut [u8; COMMAND_BYTES]) {
        use crate::command::CommandKind as K;
        *out = [0; COMMAND_BYTES];
        let mut w = W { b: out, at: 0 };
        let kind = match self.kind {
            K::NewOrder(_) => 1,
            K::Cancel { .. } => 2,
            K::Modify { .. } => 3,
            K::MassCancel { .. } => 4,
            K::Halt { .. } => 5,
            K::Resume { .. } => 6,
            K::Block { .. } => 7,
            K::Unblock { .. } => 8,
            K::Tick => 9,
            K::SnapshotRequest { .. } => 10,
            K::AddInstrument(_) => 11,
            K::AddAsset { .. } => 12,
            K::Deposit { .. } => 13,
            K::Withdraw { .. } => 14,
            K::Invalid { .. } => 15,
            K::OrderTerms(_) => 16,
            K::SetMatchPolicy { .. } => 17,
        };
        w.u8(kind);
        w.u64(self.ts.0);
        match self.kind {
            K::NewOrder(o) => put_order(&mut w, &o),
            K::Cancel {
                instrument,
                account,
                order_id,
            } => {
                w.u32(instrument.0);
                w.u64(account.0);
                w.u64(order_id.0);
            }
            K::Modify {
                instrument,
                account,
                order_id,
                price,
                qty,
            } => {
                w.u32(instrument.0);
                w.u64(account.0);
                w.u64(order_id.0);
                w.u64(price.0 as u64);
                w.u64(qty.0);
            }
            K::MassCancel {
                account,
                instrument,
            } => {
                w.u64(account.0);
                w.u8(instrument.is_some() as u8);
                w.u32(instrument.map_or(0, |i| i.0));
            }
            K::Halt { instrument }
            | K::Resume { instrument }
            | K::SnapshotRequest { instrument } => w.u32(instrument.0),
            K::Block { account } | K::Unblock { account } => w.u64(account.0),
            K::Tick => {}
            K::AddInstrument(d) => put_def(&mut w, &d),
            K::AddAsset { asset, scale } => {
                w.u16(asset.0);
                w.u8(scale);
            }
            K::Deposit {
                account,
                asset,
                amount,
            }
            | K::Withdraw {
                account,
                asset,
                amount,
            } => put_transfer(&mut w, account, asset, amount),
            K::Invalid {
                instrument,
                order_id,
                account,
                code,
            } => put_reject(&mut w, instrument, order_id, account, code),
            K::OrderTerms(t) => put_terms(&mut w, &t),
            K::SetMatchPolicy {
                instrument,
                policy,
                min_alloc,
            } => {
                w.u32(instrument.0);
                w.u8(pos(&POLICIES, policy));
                w.u64(min_alloc.0);
            }
        }
    }

    /// Decodes what [`crate::command::Command::encode`] wrote; `None` for bytes that are
    /// not a command.
    pub fn decode(b: &[u8; COMMAND_BYTES]) -> Option<crate::command::Command> {
        use crate::command::CommandKind as K;
        let mut r = R { b, at: 0 };
        let kind = r.u8();
        let ts = Timestamp(r.u64());
        let k = match kind {
            1 => K::NewOrder(get_order(&mut r)?),
            2 => K::Cancel {
                instrument: InstrumentId(r.u32()),
                account: AccountId(r.u64()),
                order_id: OrderId(r.u64()),
            },
            3 => K::Modify {
                instrument: InstrumentId(r.u32()),
                account: AccountId(r.u64()),
                order_id: OrderId(r.u64()),
                price: Price(r.u64() as i64),
                qty: Qty(r.u64()),
            },
            4 => {
                let account = AccountId(r.u64());
                let some = r.u8() == 1;
                let i = InstrumentId(r.u32());
                K::MassCancel {
                    account,
                    instrument: some.then_some(i),
                }
            }
            5 => K::Halt {
                instrument: InstrumentId(r.u32()),
            },
            6 => K::Resume {
                instrument: InstrumentId(r.u32()),
            },
            7 => K::Block {
                account: AccountId(r.u64()),
            },
            8 => K::Unblock {
                account: AccountId(r.u64()),
            },
            9 => K::Tick,
            10 => K::SnapshotRequest {
                instrument: InstrumentId(r.u32()),
            },
            11 => K::AddInstrument(get_def(&mut r)),
            12 => K::AddAsset {
                asset: AssetId(r.u16()),
                scale: r.u8(),
            },
            13 | 14 => {
                let (account, asset, amount) = get_transfer(&mut r);
                if kind == 13 {
                    K::Deposit {
                        account,
                        asset,
                        amount,
                    }
                } else {
                    K::Withdraw {
                        account,
                        asset,
                        amount,
                    }
                }
            }
            15 => {
                let (instrument, order_id, account, code) = get_reject(&mut r)?;
                K::Invalid {
                    instrument,
                    order_id,
                    account,
                    code,
                }
            }
            16 => K::OrderTerms(get_terms(&mut r)),
            17 => K::SetMatchPolicy {
                instrument: InstrumentId(r.u32()),
                policy: *POLICIES.get(r.u8() as usize)?,
                min_alloc: Qty(r.u64()),
            },
            _ => return None,
        };
        Some(crate::command::Command::new(ts, k))
    }
}
