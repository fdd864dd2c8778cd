//! The history store on PostgreSQL (cargo feature `postgres`): the same tables, columns,
//! indexes and queries as SQLite, written in bulk — each commit is one transaction: a binary
//! `COPY` of the changed orders into a session staging table and one upsert from it (orders
//! with ids above every id the store holds, the usual case, are COPYed straight into the
//! table: none can conflict), a binary `COPY` of the trades, and multi-row `INSERT … SELECT * FROM unnest(…)` for the
//! rest, so a commit of thousands of rows is a handful of round trips.
//! Sessions run with `synchronous_commit = off` (see [`PgStore::connect`]).

use super::rows::{self, ORDER_COLUMNS, TRADE_COLUMNS};
use super::*;
use ::postgres::binary_copy::BinaryCopyInWriter;
use ::postgres::types::{ToSql, Type};
use ::postgres::{Client, NoTls, Row};

/// The session's staging table: order rows are COPYed here, then upserted in one statement.
const STAGE: &str =
    "CREATE TEMP TABLE IF NOT EXISTS orders_stage (LIKE orders) ON COMMIT DELETE ROWS";

const ORDER_TYPES: [Type; 20] = [
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
];

const TRADE_TYPES: [Type; 12] = [
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
];

const ORDERS_FROM_ARRAYS: &str = "
INSERT INTO orders (order_id, instrument, account, side, order_type, tif, expiry, price,
    orig_qty, open_qty, filled_qty, status, reason, accept_seq, priority_seq, last_seq,
    created_ts, updated_ts)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[],
    $6::text[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[],
    $12::text[], $13::text[], $14::bigint[], $15::bigint[], $16::bigint[], $17::bigint[],
    $18::bigint[])";

const ORDERS_UPSERT: &str = "
ON CONFLICT (order_id) DO UPDATE SET instrument = excluded.instrument,
    account = excluded.account, side = excluded.side, order_type = excluded.order_type,
    tif = excluded.tif, expiry = excluded.expiry, price = excluded.price,
    orig_qty = excluded.orig_qty, open_qty = excluded.open_qty,
    filled_qty = excluded.filled_qty, status = excluded.status, reason = excluded.reason,
    accept_seq = excluded.accept_seq, priority_seq = excluded.priority_seq,
    last_seq = excluded.last_seq, created_ts = excluded.created_ts,
    updated_ts = excluded.updated_ts, display = excluded.display, peak = excluded.peak";

fn i(x: u64) -> i64 {
    x as i64
}

fn u(x: i64) -> u64 {
    x as u64
}

fn order_row(r: &Row) -> Result<OrderRow, HistoryError> {
    rows::order(r)
}

fn trade_row(r: &Row) -> Result<TradeRow, HistoryError> {
    rows::trade(r)
}

/// A binary `COPY … FROM STDIN` into `table`'s `columns`.
fn copy_in<'a>(
    tx: &'a mut ::postgres::Transaction<'_>,
    table: &str,
    columns: &str,
    types: &[Type],
) -> Result<BinaryCopyInWriter<'a>, HistoryError> {
    let sink = tx.copy_in(&format!(
        "COPY {table} ({columns}) FROM STDIN (FORMAT binary)"
    ))?;
    Ok(BinaryCopyInWriter::new(sink, types))
}

/// A history store in a PostgreSQL database.
pub struct PgStore {
    client: Client,
    /// The largest order id with a row (as an unsigned id; `None` while there is none).
    max_id: Option<u64>,
}

/// The largest order id the store holds: ids above 2^63 are stored wrapped (negative), so
/// the largest negative value, when there is one, is the largest id.
fn max_order_id(client: &mut Client) -> Result<Option<u64>, HistoryError> {
    for filter in ["order_id < 0", "order_id >= 0"] {
        let r = client.query_one(
            &format!("SELECT max(order_id) FROM orders WHERE {filter}"),
            &[],
        )?;
        if let Some(v) = r.try_get::<_, Option<i64>>(0)? {
            return Ok(Some(u(v)));
        }
    }
    Ok(None)
}

impl PgStore {
    /// Connects (`host=127.0.0.1 port=5432 user=postgres dbname=ringex`, or a URL) and
    /// creates the tables when missing.
    pub fn connect(params: &str) -> Result<Self, HistoryError> {
        let mut client = Client::connect(params, NoTls)?;
        // Like SQLite's synchronous=NORMAL: a commit does not wait for the WAL flush. A
        // server crash may take the last commits back, sequence included, and the journal
        // replays them (exactly once all the same).
        client.batch_execute("SET synchronous_commit TO off")?;
        client.batch_execute(&rows::pg_schema())?;
        for (col, def) in rows::ADDED_ORDER_COLUMNS {
            client.batch_execute(&format!(
                "ALTER TABLE orders ADD COLUMN IF NOT EXISTS {col} {}",
                def.replace("INTEGER", "BIGINT")
            ))?;
        }
        client.batch_execute(STAGE)?;
        let max_id = max_order_id(&mut client)?;
        Ok(PgStore { client, max_id })
    }

    /// Drops every table (tests start clean).
    pub fn reset(&mut self) -> Result<(), HistoryError> {
        self.client.batch_execute(
            "DROP TABLE IF EXISTS meta, symbols, orders, trades, transfers, balance_changes, \
             funded_instruments CASCADE",
        )?;
        self.client.batch_execute(&rows::pg_schema())?;
        self.client.batch_execute(STAGE)?;
        self.max_id = None;
        Ok(())
    }

    /// Every order row, by id.
    pub fn all_orders(&mut self) -> Result<Vec<OrderRow>, HistoryError> {
        self.client
            .query(
                &format!("SELECT {ORDER_COLUMNS} FROM orders ORDER BY order_id"),
                &[],
            )?
            .iter()
            .map(order_row)
            .collect()
    }

    /// Every trade, in order.
    pub fn all_trades(&mut self) -> Result<Vec<TradeRow>, HistoryError> {
        self.client
            .query(
                &format!("SELECT {TRADE_COLUMNS} FROM trades ORDER BY seq"),
                &[],
            )?
            .iter()
            .map(trade_row)
            .collect()
    }

    /// Every balance change, in order.
    pub fn all_balance_changes(&mut self) -> Result<Vec<BalanceChangeRow>, HistoryError> {
        self.client
            .query(
                "SELECT seq, n, account, asset, delta, kind, ts FROM balance_changes ORDER BY seq, n",
                &[],
            )?
            .iter()
            .map(rows::change)
            .collect()
    }

    /// Every transfer, in order.
    pub fn all_transfers(&mut self) -> Result<Vec<TransferRow>, HistoryError> {
        self.client
            .query(
                "SELECT seq, account, asset, amount, ts FROM transfers ORDER BY seq",
                &[],
            )?
            .iter()
            .map(rows::transfer)
            .collect()
    }
}

/// Columns of order rows as arrays, for one `unnest` statement.
#[derive(Default)]
struct OrderArrays {
    id: Vec<i64>,
    instrument: Vec<i64>,
    account: Vec<i64>,
    side: Vec<&'static str>,
    ty: Vec<&'static str>,
    tif: Vec<&'static str>,
    expiry: Vec<i64>,
    price: Vec<i64>,
    orig: Vec<i64>,
    open: Vec<i64>,
    filled: Vec<i64>,
    status: Vec<&'static str>,
    reason: Vec<Option<String>>,
    accept: Vec<i64>,
    priority: Vec<i64>,
    last: Vec<i64>,
    created: Vec<i64>,
    updated: Vec<i64>,
}

impl OrderArrays {
    fn of(rows: &[OrderRow]) -> Self {
        let mut a = OrderArrays::default();
        for o in rows {
            a.id.push(i(o.order_id));
            a.instrument.push(o.instrument as i64);
            a.account.push(i(o.account));
            a.side.push(side_str(o.side));
            a.ty.push(type_str(o.order_type));
            a.tif.push(tif_str(o.tif));
            a.expiry.push(i(o.expiry));
            a.price.push(o.price);
            a.orig.push(i(o.orig_qty));
            a.open.push(i(o.open_qty));
            a.filled.push(i(o.filled_qty));
            a.status.push(o.status.as_str());
            a.reason.push(o.reason.as_deref().map(str::to_string));
            a.accept.push(i(o.accept_seq));
            a.priority.push(i(o.priority_seq));
            a.last.push(i(o.last_seq));
            a.created.push(i(o.created_ts));
            a.updated.push(i(o.updated_ts));
        }
        a
    }

    fn execute(
        &self,
        tx: &mut ::postgres::Transaction<'_>,
        conflict: &str,
    ) -> Result<u64, ::postgres::Error> {
        tx.execute(
            &format!("{ORDERS_FROM_ARRAYS} {conflict}"),
            &[
                &self.id,
                &self.instrument,
                &self.account,
                &self.side,
                &self.ty,
                &self.tif,
                &self.expiry,
                &self.price,
                &self.orig,
                &self.open,
                &self.filled,
                &self.status,
                &self.reason,
                &self.accept,
                &self.priority,
                &self.last,
                &self.created,
                &self.updated,
            ],
        )
    }
}

impl HistoryStore for PgStore {
    fn funded(&mut self) -> Result<Vec<FundedRow>, HistoryError> {
        self.client
            .query(
                "SELECT instrument, base, quote, base_per_lot, quote_per_tick_lot FROM funded_instruments",
                &[],
            )?
            .iter()
            .map(rows::funded)
            .collect()
    }

    fn last_seq(&mut self) -> Result<u64, HistoryError> {
        let r = self
            .client
            .query_opt("SELECT v FROM meta WHERE k = 'last_seq'", &[])?;
        Ok(r.map_or(Ok(0), |r| r.try_get::<_, i64>(0).map(u))?)
    }

    fn active_rows(&mut self) -> Result<Vec<OrderRow>, HistoryError> {
        self.client
            .query(
                &format!(
                    "SELECT {ORDER_COLUMNS} FROM orders WHERE status IN ('active', 'pending') ORDER BY priority_seq"
                ),
                &[],
            )?
            .iter()
            .map(order_row)
            .collect()
    }

    fn write(&mut self, b: &Batch) -> Result<(), HistoryError> {
        let mut tx = self.client.transaction()?;
        // Orders in strictly increasing id order above every id the store holds cannot
        // conflict: they are COPYed straight into the table; the rest go through the
        // staging table's upsert.
        let sorted = b.orders.windows(2).all(|w| w[0].order_id < w[1].order_id);
        let fresh = if sorted {
            b.orders
                .partition_point(|o| self.max_id.is_some_and(|m| o.order_id <= m))
        } else {
            b.orders.len()
        };
        if fresh > 0 {
            upsert_orders(&mut tx, &b.orders[..fresh])?;
        }
        if fresh < b.orders.len() {
            copy_orders(&mut tx, "orders", &b.orders[fresh..])?;
        }
        if !b.rejected.is_empty() {
            OrderArrays::of(&b.rejected).execute(&mut tx, "ON CONFLICT (order_id) DO NOTHING")?;
        }
        if !b.trades.is_empty() {
            copy_trades(&mut tx, &b.trades)?;
        }
        if !b.transfers.is_empty() {
            insert_transfers(&mut tx, &b.transfers)?;
        }
        if !b.balance_changes.is_empty() {
            insert_balance_changes(&mut tx, &b.balance_changes)?;
        }
        for f in &b.funded {
            tx.execute(
                "INSERT INTO funded_instruments (instrument, base, quote, base_per_lot, \
                 quote_per_tick_lot) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (instrument) DO NOTHING",
                &[
                    &(f.instrument as i64),
                    &(f.base as i64),
                    &(f.quote as i64),
                    &i(f.base_per_lot),
                    &i(f.quote_per_tick_lot),
                ],
            )?;
        }
        for (id, name) in &b.symbols {
            tx.execute(
                "INSERT INTO symbols (instrument, name) VALUES ($1, $2) \
                 ON CONFLICT (instrument) DO UPDATE SET name = excluded.name",
                &[&(*id as i64), name],
            )?;
        }
        tx.execute(
            "INSERT INTO meta (k, v) VALUES ('last_seq', $1) \
             ON CONFLICT (k) DO UPDATE SET v = excluded.v",
            &[&i(b.last_seq)],
        )?;
        tx.commit()?;
        let written = b.orders.iter().chain(&b.rejected).map(|o| o.order_id).max();
        self.max_id = self.max_id.max(written);
        Ok(())
    }
}

impl HistoryQuery for PgStore {
    fn order(&mut self, id: u64) -> Result<Option<OrderRow>, HistoryError> {
        self.client
            .query_opt(
                &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = $1"),
                &[&i(id)],
            )?
            .as_ref()
            .map(order_row)
            .transpose()
    }

    fn open_orders(
        &mut self,
        account: u64,
        instrument: Option<u32>,
    ) -> Result<Vec<OrderRow>, HistoryError> {
        let rows = match instrument {
            Some(inst) => self.client.query(
                &format!(
                    "SELECT {ORDER_COLUMNS} FROM orders WHERE status = 'active' AND account = $1 \
                     AND instrument = $2 ORDER BY priority_seq"
                ),
                &[&i(account), &(inst as i64)],
            )?,
            None => self.client.query(
                &format!(
                    "SELECT {ORDER_COLUMNS} FROM orders WHERE status = 'active' AND account = $1 \
                     ORDER BY instrument, priority_seq"
                ),
                &[&i(account)],
            )?,
        };
        rows.iter().map(order_row).collect()
    }

    fn trades_page(
        &mut self,
        account: u64,
        since: u64,
        limit: usize,
    ) -> Result<Vec<TradeRow>, HistoryError> {
        self.client
            .query(
                &format!(
                    "SELECT {TRADE_COLUMNS} FROM trades WHERE taker_account = $1 AND seq > $2 \
                     UNION SELECT {TRADE_COLUMNS} FROM trades WHERE maker_account = $1 \
                     AND seq > $2 ORDER BY seq LIMIT $3"
                ),
                &[
                    &i(account),
                    &i(since),
                    &(limit.min(i64::MAX as usize) as i64),
                ],
            )?
            .iter()
            .map(trade_row)
            .collect()
    }

    fn active_orders(&mut self, instrument: u32) -> Result<Vec<OrderRow>, HistoryError> {
        let mut out = Vec::new();
        for (side, order) in [("buy", "price DESC"), ("sell", "price ASC")] {
            let rows = self.client.query(
                &format!(
                    "SELECT {ORDER_COLUMNS} FROM orders WHERE status = 'active' \
                     AND instrument = $1 AND side = $2 ORDER BY {order}, priority_seq"
                ),
                &[&(instrument as i64), &side],
            )?;
            for r in &rows {
                out.push(order_row(r)?);
            }
        }
        Ok(out)
    }

    fn symbol_name(&mut self, instrument: u32) -> Result<Option<String>, HistoryError> {
        Ok(self
            .client
            .query_opt(
                "SELECT name FROM symbols WHERE instrument = $1",
                &[&(instrument as i64)],
            )?
            .map(|r| r.try_get::<_, String>(0))
            .transpose()?)
    }

    fn instrument_id(&mut self, symbol: &str) -> Result<Option<u32>, HistoryError> {
        Ok(self
            .client
            .query_opt("SELECT instrument FROM symbols WHERE name = $1", &[&symbol])?
            .map(|r| r.try_get::<_, i64>(0))
            .transpose()?
            .map(|x| x as u32))
    }

    fn instruments(&mut self) -> Result<Vec<u32>, HistoryError> {
        self.client
            .query(
                "SELECT DISTINCT instrument FROM orders WHERE status != 'rejected' \
                 UNION SELECT instrument FROM symbols ORDER BY 1",
                &[],
            )?
            .iter()
            .map(|r| Ok(r.try_get::<_, i64>(0)? as u32))
            .collect()
    }
}

/// The changed orders: a binary COPY into the staging table, then one upsert from it.
fn upsert_orders(
    tx: &mut ::postgres::Transaction<'_>,
    orders: &[OrderRow],
) -> Result<(), HistoryError> {
    copy_orders(tx, "orders_stage", orders)?;
    tx.execute(
        &format!(
            "INSERT INTO orders ({ORDER_COLUMNS}) SELECT {ORDER_COLUMNS} FROM orders_stage {ORDERS_UPSERT}"
        ),
        &[],
    )?;
    Ok(())
}

/// Order rows by binary COPY into `table`.
fn copy_orders(
    tx: &mut ::postgres::Transaction<'_>,
    table: &str,
    orders: &[OrderRow],
) -> Result<(), HistoryError> {
    let mut w = copy_in(tx, table, ORDER_COLUMNS, &ORDER_TYPES)?;
    for o in orders {
        let (id, inst, acct) = (i(o.order_id), o.instrument as i64, i(o.account));
        let (exp, orig, open, filled) =
            (i(o.expiry), i(o.orig_qty), i(o.open_qty), i(o.filled_qty));
        let (acc, pri, last, c, u) = (
            i(o.accept_seq),
            i(o.priority_seq),
            i(o.last_seq),
            i(o.created_ts),
            i(o.updated_ts),
        );
        let (display, peak) = (i(o.display), i(o.peak));
        let row: [&(dyn ToSql + Sync); 20] = [
            &id,
            &inst,
            &acct,
            &side_str(o.side),
            &type_str(o.order_type),
            &tif_str(o.tif),
            &exp,
            &o.price,
            &orig,
            &open,
            &filled,
            &o.status.as_str(),
            &o.reason.as_deref(),
            &acc,
            &pri,
            &last,
            &c,
            &u,
            &display,
            &peak,
        ];
        w.write(&row)?;
    }
    w.finish()?;
    Ok(())
}

/// The new trades, by binary COPY.
fn copy_trades(
    tx: &mut ::postgres::Transaction<'_>,
    trades: &[TradeRow],
) -> Result<(), HistoryError> {
    let mut w = copy_in(tx, "trades", TRADE_COLUMNS, &TRADE_TYPES)?;
    for t in trades {
        let v = [
            i(t.seq),
            t.instrument as i64,
            i(t.taker_order),
            i(t.maker_order),
            i(t.taker_account),
            i(t.maker_account),
        ];
        let (price, qty, ts) = (t.price, i(t.qty), i(t.ts));
        let fees = t.fees.map(|f| (f.0.to_string(), f.1.to_string()));
        let (bf, sf) = match &fees {
            Some((b, s)) => (Some(b.as_str()), Some(s.as_str())),
            None => (None, None),
        };
        let row: [&(dyn ToSql + Sync); 12] = [
            &v[0],
            &v[1],
            &v[2],
            &v[3],
            &v[4],
            &v[5],
            &side_str(t.taker_side),
            &price,
            &qty,
            &bf,
            &sf,
            &ts,
        ];
        w.write(&row)?;
    }
    w.finish()?;
    Ok(())
}

/// Deposits and withdrawals, in one multi-row insert.
fn insert_transfers(
    tx: &mut ::postgres::Transaction<'_>,
    t: &[TransferRow],
) -> Result<(), HistoryError> {
    tx.execute(
        "INSERT INTO transfers (seq, account, asset, amount, ts) SELECT * FROM \
             unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[])",
        &[
            &t.iter().map(|x| i(x.seq)).collect::<Vec<_>>(),
            &t.iter().map(|x| i(x.account)).collect::<Vec<_>>(),
            &t.iter().map(|x| x.asset as i64).collect::<Vec<_>>(),
            &t.iter().map(|x| x.amount.to_string()).collect::<Vec<_>>(),
            &t.iter().map(|x| i(x.ts)).collect::<Vec<_>>(),
        ],
    )?;
    Ok(())
}

/// Balance changes, in one multi-row insert.
fn insert_balance_changes(
    tx: &mut ::postgres::Transaction<'_>,
    c: &[BalanceChangeRow],
) -> Result<(), HistoryError> {
    tx.execute(
        "INSERT INTO balance_changes (seq, n, account, asset, delta, kind, ts) SELECT * \
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], \
             $6::text[], $7::bigint[])",
        &[
            &c.iter().map(|x| i(x.seq)).collect::<Vec<_>>(),
            &c.iter().map(|x| x.n as i64).collect::<Vec<_>>(),
            &c.iter().map(|x| i(x.account)).collect::<Vec<_>>(),
            &c.iter().map(|x| x.asset as i64).collect::<Vec<_>>(),
            &c.iter().map(|x| x.delta.to_string()).collect::<Vec<_>>(),
            &c.iter().map(|x| x.kind).collect::<Vec<_>>(),
            &c.iter().map(|x| i(x.ts)).collect::<Vec<_>>(),
        ],
    )?;
    Ok(())
}
