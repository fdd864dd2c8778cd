//! Row decoding shared by both stores: each database's row type reads integers and texts
//! by column ([`Cols`]); the rows are built once, here.

use super::*;

/// One result row, by column index.
pub(crate) trait Cols {
    /// An integer column.
    fn int(&self, k: usize) -> Result<i64, HistoryError>;
    /// A text column that may be null.
    fn opt_text(&self, k: usize) -> Result<Option<String>, HistoryError>;
    /// A text column.
    fn text(&self, k: usize) -> Result<String, HistoryError> {
        self.opt_text(k)?
            .ok_or_else(|| HistoryError::Format(format!("column {k} is null")))
    }
    /// An unsigned integer column (stored as i64, wrapping above 2^63).
    fn uint(&self, k: usize) -> Result<u64, HistoryError> {
        Ok(self.int(k)? as u64)
    }
}

impl Cols for rusqlite::Row<'_> {
    fn int(&self, k: usize) -> Result<i64, HistoryError> {
        Ok(self.get(k)?)
    }
    fn opt_text(&self, k: usize) -> Result<Option<String>, HistoryError> {
        Ok(self.get(k)?)
    }
}

#[cfg(feature = "postgres")]
impl Cols for ::postgres::Row {
    fn int(&self, k: usize) -> Result<i64, HistoryError> {
        Ok(self.try_get(k)?)
    }
    fn opt_text(&self, k: usize) -> Result<Option<String>, HistoryError> {
        Ok(self.try_get(k)?)
    }
}

fn bad(what: &str, v: &str) -> HistoryError {
    HistoryError::Format(format!("bad {what} {v:?}"))
}

fn side(r: &impl Cols, k: usize) -> Result<Side, HistoryError> {
    let s = r.text(k)?;
    parse_side(&s).ok_or_else(|| bad("side", &s))
}

fn amount(r: &impl Cols, k: usize, what: &str) -> Result<i128, HistoryError> {
    let s = r.text(k)?;
    s.parse().map_err(|_| bad(what, &s))
}

/// Columns: [`ORDER_COLUMNS`].
pub(crate) fn order(r: &impl Cols) -> Result<OrderRow, HistoryError> {
    let (ty, tif, status) = (r.text(4)?, r.text(5)?, r.text(11)?);
    Ok(OrderRow {
        order_id: r.uint(0)?,
        instrument: r.int(1)? as u32,
        account: r.uint(2)?,
        side: side(r, 3)?,
        order_type: parse_type(&ty).ok_or_else(|| bad("order type", &ty))?,
        tif: parse_tif(&tif).ok_or_else(|| bad("time in force", &tif))?,
        expiry: r.uint(6)?,
        price: r.int(7)?,
        orig_qty: r.uint(8)?,
        open_qty: r.uint(9)?,
        filled_qty: r.uint(10)?,
        status: OrderStatus::parse(&status).ok_or_else(|| bad("status", &status))?,
        reason: r.opt_text(12)?.map(Cow::Owned),
        accept_seq: r.uint(13)?,
        priority_seq: r.uint(14)?,
        last_seq: r.uint(15)?,
        created_ts: r.uint(16)?,
        updated_ts: r.uint(17)?,
        display: r.uint(18)?,
        peak: r.uint(19)?,
    })
}

/// Columns: [`TRADE_COLUMNS`].
pub(crate) fn trade(r: &impl Cols) -> Result<TradeRow, HistoryError> {
    let fees = match (r.opt_text(9)?, r.opt_text(10)?) {
        (Some(b), Some(s)) => Some((
            b.parse().map_err(|_| bad("fee", &b))?,
            s.parse().map_err(|_| bad("fee", &s))?,
        )),
        _ => None,
    };
    Ok(TradeRow {
        seq: r.uint(0)?,
        instrument: r.int(1)? as u32,
        taker_order: r.uint(2)?,
        maker_order: r.uint(3)?,
        taker_account: r.uint(4)?,
        maker_account: r.uint(5)?,
        taker_side: side(r, 6)?,
        price: r.int(7)?,
        qty: r.uint(8)?,
        fees,
        ts: r.uint(11)?,
    })
}

/// Columns: seq, account, asset, amount, ts.
pub(crate) fn transfer(r: &impl Cols) -> Result<TransferRow, HistoryError> {
    Ok(TransferRow {
        seq: r.uint(0)?,
        account: r.uint(1)?,
        asset: r.int(2)? as u16,
        amount: amount(r, 3, "amount")?,
        ts: r.uint(4)?,
    })
}

/// Columns: seq, n, account, asset, delta, kind, ts.
pub(crate) fn change(r: &impl Cols) -> Result<BalanceChangeRow, HistoryError> {
    let kind = r.text(5)?;
    Ok(BalanceChangeRow {
        seq: r.uint(0)?,
        n: r.int(1)? as u8,
        account: r.uint(2)?,
        asset: r.int(3)? as u16,
        delta: amount(r, 4, "delta")?,
        kind: change_kind(&kind).ok_or_else(|| bad("kind", &kind))?,
        ts: r.uint(6)?,
    })
}

/// Columns: instrument, base, quote, base_per_lot, quote_per_tick_lot.
pub(crate) fn funded(r: &impl Cols) -> Result<FundedRow, HistoryError> {
    Ok(FundedRow {
        instrument: r.int(0)? as u32,
        base: r.int(1)? as u16,
        quote: r.int(2)? as u16,
        base_per_lot: r.uint(3)?,
        quote_per_tick_lot: r.uint(4)?,
    })
}

/// A balance change's kind as the static name the consumer writes.
pub(crate) fn change_kind(s: &str) -> Option<&'static str> {
    ["deposit", "withdrawal", "buy", "sell"]
        .into_iter()
        .find(|k| *k == s)
}

/// The order columns, in the order [`order`] reads them.
pub(crate) const ORDER_COLUMNS: &str = "order_id, instrument, account, side, order_type, tif, \
    expiry, price, orig_qty, open_qty, filled_qty, status, reason, accept_seq, priority_seq, \
    last_seq, created_ts, updated_ts, display, peak";

/// The trade columns, in the order [`trade`] reads them.
pub(crate) const TRADE_COLUMNS: &str = "seq, instrument, taker_order, maker_order, \
    taker_account, maker_account, taker_side, price, qty, buyer_fee, seller_fee, ts";

/// The schema, written once for both stores: SQLite as it stands (its `INTEGER` is 64-bit),
/// PostgreSQL with `BIGINT` for `INTEGER` ([`pg_schema`]).
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS symbols (instrument INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS orders (
    order_id INTEGER PRIMARY KEY,
    instrument INTEGER NOT NULL,
    account INTEGER NOT NULL,
    side TEXT NOT NULL,
    order_type TEXT NOT NULL,
    tif TEXT NOT NULL,
    expiry INTEGER NOT NULL,
    price INTEGER NOT NULL,
    orig_qty INTEGER NOT NULL,
    open_qty INTEGER NOT NULL,
    filled_qty INTEGER NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    accept_seq INTEGER NOT NULL,
    priority_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    created_ts INTEGER NOT NULL,
    updated_ts INTEGER NOT NULL,
    display INTEGER NOT NULL DEFAULT 0,
    peak INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS orders_open_by_account
    ON orders (account, instrument, priority_seq) WHERE status = 'active';
CREATE INDEX IF NOT EXISTS orders_open_by_instrument
    ON orders (instrument, side, price, priority_seq) WHERE status = 'active';
CREATE TABLE IF NOT EXISTS trades (
    seq INTEGER PRIMARY KEY,
    instrument INTEGER NOT NULL,
    taker_order INTEGER NOT NULL,
    maker_order INTEGER NOT NULL,
    taker_account INTEGER NOT NULL,
    maker_account INTEGER NOT NULL,
    taker_side TEXT NOT NULL,
    price INTEGER NOT NULL,
    qty INTEGER NOT NULL,
    buyer_fee TEXT,
    seller_fee TEXT,
    ts INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS trades_by_taker ON trades (taker_account, seq);
CREATE INDEX IF NOT EXISTS trades_by_maker ON trades (maker_account, seq);
CREATE TABLE IF NOT EXISTS transfers (
    seq INTEGER PRIMARY KEY,
    account INTEGER NOT NULL,
    asset INTEGER NOT NULL,
    amount TEXT NOT NULL,
    ts INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS transfers_by_account ON transfers (account, seq);
CREATE TABLE IF NOT EXISTS balance_changes (
    seq INTEGER NOT NULL,
    n INTEGER NOT NULL,
    account INTEGER NOT NULL,
    asset INTEGER NOT NULL,
    delta TEXT NOT NULL,
    kind TEXT NOT NULL,
    ts INTEGER NOT NULL,
    PRIMARY KEY (seq, n)
);
CREATE INDEX IF NOT EXISTS balance_changes_by_account ON balance_changes (account, asset, seq);
CREATE TABLE IF NOT EXISTS funded_instruments (
    instrument INTEGER PRIMARY KEY,
    base INTEGER NOT NULL,
    quote INTEGER NOT NULL,
    base_per_lot INTEGER NOT NULL,
    quote_per_tick_lot INTEGER NOT NULL
);
";

/// Columns added since the first schema, for stores created before them: (column,
/// definition).
pub(crate) const ADDED_ORDER_COLUMNS: [(&str, &str); 2] = [
    ("display", "INTEGER NOT NULL DEFAULT 0"),
    ("peak", "INTEGER NOT NULL DEFAULT 0"),
];

/// The schema for PostgreSQL: the same tables, columns and indexes, 64-bit integers.
#[cfg(feature = "postgres")]
pub(crate) fn pg_schema() -> String {
    SCHEMA.replace("INTEGER", "BIGINT")
}
