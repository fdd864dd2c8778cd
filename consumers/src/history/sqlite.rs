//! The history store in SQLite (bundled with the `rusqlite` crate: a fresh machine needs
//! nothing installed). WAL mode, `synchronous=NORMAL` (a commit survives kill -9; a power
//! loss may take the last commits back, and the journal replays them: the sequence is in
//! the same transaction), prepared statements, one transaction per commit.

use super::raw::RawStatement;
use super::rows::{self, ORDER_COLUMNS, SCHEMA, TRADE_COLUMNS};
use super::*;
use rusqlite::{params, Connection, OptionalExtension, Params, Row, Statement};
use std::path::Path;

const UPSERT_ORDER: &str = "
INSERT INTO orders (order_id, instrument, account, side, order_type, tif, expiry, price,
    orig_qty, open_qty, filled_qty, status, reason, accept_seq, priority_seq, last_seq,
    created_ts, updated_ts, display, peak)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
    ?19, ?20)
ON CONFLICT (order_id) DO UPDATE SET instrument = excluded.instrument,
    account = excluded.account, side = excluded.side, order_type = excluded.order_type,
    tif = excluded.tif, expiry = excluded.expiry, price = excluded.price,
    orig_qty = excluded.orig_qty, open_qty = excluded.open_qty,
    filled_qty = excluded.filled_qty, status = excluded.status, reason = excluded.reason,
    accept_seq = excluded.accept_seq, priority_seq = excluded.priority_seq,
    last_seq = excluded.last_seq, created_ts = excluded.created_ts,
    updated_ts = excluded.updated_ts, display = excluded.display, peak = excluded.peak";

const INSERT_REJECTED: &str = "
INSERT INTO orders (order_id, instrument, account, side, order_type, tif, expiry, price,
    orig_qty, open_qty, filled_qty, status, reason, accept_seq, priority_seq, last_seq,
    created_ts, updated_ts, display, peak)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
    ?19, ?20)
ON CONFLICT (order_id) DO NOTHING";

/// A row the store holds already: only what an order's life changes.
const UPDATE_ORDER: &str = "
UPDATE orders SET price = ?2, open_qty = ?3, filled_qty = ?4, status = ?5, reason = ?6,
    priority_seq = ?7, last_seq = ?8, updated_ts = ?9, peak = ?10
WHERE order_id = ?1";

const INSERT_TRADE: &str = "
INSERT INTO trades (seq, instrument, taker_order, maker_order, taker_account, maker_account,
    taker_side, price, qty, buyer_fee, seller_fee, ts)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";

/// SQLite stores integers as i64: ids and quantities above 2^63 are stored wrapped and read
/// back the same.
fn i(x: u64) -> i64 {
    x as i64
}

fn u(x: i64) -> u64 {
    x as u64
}

/// Every row of a query, decoded.
fn all<T>(
    st: &mut Statement<'_>,
    p: impl Params,
    f: fn(&Row<'_>) -> Result<T, HistoryError>,
) -> Result<Vec<T>, HistoryError> {
    let mut out = Vec::new();
    let mut rows = st.query(p)?;
    while let Some(r) = rows.next()? {
        out.push(f(r)?);
    }
    Ok(out)
}

fn order_row(r: &Row<'_>) -> Result<OrderRow, HistoryError> {
    rows::order(r)
}

fn trade_row(r: &Row<'_>) -> Result<TradeRow, HistoryError> {
    rows::trade(r)
}

/// A history store in one SQLite file.
pub struct SqliteStore {
    /// The bulk writes' statements, by their SQL, prepared once. Declared before the
    /// connection: fields drop in order, so they are finalized before it closes.
    writes: Vec<(&'static str, RawStatement)>,
    conn: Connection,
}

impl SqliteStore {
    /// Deletes the store at `path` with its WAL and shared-memory files (those missing are
    /// skipped).
    pub fn remove_files(path: &Path) {
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
        }
    }

    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, HistoryError> {
        let conn = Connection::open(path)?;
        // 16 KiB pages for a new store (an existing one keeps its own): fewer levels and
        // page splits per insert; 4 KiB takes a fifth longer per event on the
        // 1000-instrument stream.
        conn.pragma_update(None, "page_size", 16384)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "cache_size", -65536)?;
        conn.execute_batch(SCHEMA)?;
        // Stores made before the iceberg columns get them (with their defaults).
        for (col, def) in rows::ADDED_ORDER_COLUMNS {
            let has: bool = conn
                .prepare("SELECT 1 FROM pragma_table_info('orders') WHERE name = ?1")?
                .exists([col])?;
            if !has {
                conn.execute_batch(&format!("ALTER TABLE orders ADD COLUMN {col} {def}"))?;
            }
        }
        conn.set_prepared_statement_cache_capacity(32);
        Ok(SqliteStore {
            writes: Vec::new(),
            conn,
        })
    }

    /// The connection, for ad-hoc SQL.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Every order row, by id (tests and reconciliation).
    pub fn all_orders(&self) -> Result<Vec<OrderRow>, HistoryError> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders ORDER BY order_id"
        ))?;
        all(&mut st, [], order_row)
    }

    /// Every trade, in order.
    pub fn all_trades(&self) -> Result<Vec<TradeRow>, HistoryError> {
        let mut st = self
            .conn
            .prepare(&format!("SELECT {TRADE_COLUMNS} FROM trades ORDER BY seq"))?;
        all(&mut st, [], trade_row)
    }

    /// Every balance change, in order.
    pub fn all_balance_changes(&self) -> Result<Vec<BalanceChangeRow>, HistoryError> {
        let mut st = self.conn.prepare(
            "SELECT seq, n, account, asset, delta, kind, ts FROM balance_changes ORDER BY seq, n",
        )?;
        all(&mut st, [], |r| rows::change(r))
    }

    /// Every transfer, in order.
    pub fn all_transfers(&self) -> Result<Vec<TransferRow>, HistoryError> {
        let mut st = self
            .conn
            .prepare("SELECT seq, account, asset, amount, ts FROM transfers ORDER BY seq")?;
        all(&mut st, [], |r| rows::transfer(r))
    }
}

/// Binds the values to parameters 1, 2, … in order, one by one (no parameter list built).
macro_rules! bind {
    ($st:expr; $($v:expr),+ $(,)?) => {{
        let mut k = 0;
        $(
            k += 1;
            $st.bind(k, $v)?;
        )+
        Ok(())
    }};
}

/// Binds an order row's 20 columns.
fn bind_order(st: &mut RawStatement, o: &OrderRow) -> rusqlite::Result<()> {
    bind!(st;
        i(o.order_id), o.instrument as i64, i(o.account), side_str(o.side),
        type_str(o.order_type), tif_str(o.tif), i(o.expiry), o.price, i(o.orig_qty),
        i(o.open_qty), i(o.filled_qty), o.status.as_str(), o.reason.as_deref(),
        i(o.accept_seq), i(o.priority_seq), i(o.last_seq), i(o.created_ts), i(o.updated_ts),
        i(o.display), i(o.peak))
}

fn bind_trade(st: &mut RawStatement, t: &TradeRow) -> rusqlite::Result<()> {
    bind!(st;
        i(t.seq), t.instrument as i64, i(t.taker_order), i(t.maker_order),
        i(t.taker_account), i(t.maker_account), side_str(t.taker_side), t.price, i(t.qty),
        t.fees.map(|f| f.0.to_string()), t.fees.map(|f| f.1.to_string()), i(t.ts))
}

/// Binds what [`UPDATE_ORDER`] changes.
fn bind_update(st: &mut RawStatement, o: &OrderRow) -> rusqlite::Result<()> {
    bind!(st;
        i(o.order_id), o.price, i(o.open_qty), i(o.filled_qty), o.status.as_str(),
        o.reason.as_deref(), i(o.priority_seq), i(o.last_seq), i(o.updated_ts), i(o.peak))
}

/// Runs the statement `sql` once per row, binding each with `bind` (through SQLite's C
/// API: [`RawStatement`], prepared on first use and kept in `writes`).
fn each<'a, T: 'a>(
    writes: &mut Vec<(&'static str, RawStatement)>,
    conn: &Connection,
    sql: &'static str,
    rows: impl IntoIterator<Item = &'a T>,
    bind: fn(&mut RawStatement, &T) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let mut rows = rows.into_iter().peekable();
    if rows.peek().is_none() {
        return Ok(());
    }
    let k = match writes.iter().position(|(s, _)| *s == sql) {
        Some(k) => k,
        None => {
            // SAFETY: kept in the store's `writes`, which drop before its connection; the
            // store is used from one thread at a time (it is not `Sync`).
            writes.push((sql, unsafe { RawStatement::prepare(conn, sql) }?));
            writes.len() - 1
        }
    };
    let st = &mut writes[k].1;
    for r in rows {
        bind(st, r)?;
        st.run()?;
    }
    Ok(())
}

impl HistoryStore for SqliteStore {
    fn funded(&mut self) -> Result<Vec<FundedRow>, HistoryError> {
        let mut st = self.conn.prepare(
            "SELECT instrument, base, quote, base_per_lot, quote_per_tick_lot FROM funded_instruments",
        )?;
        all(&mut st, [], |r| rows::funded(r))
    }

    fn last_seq(&mut self) -> Result<u64, HistoryError> {
        let v: Option<i64> = self
            .conn
            .query_row("SELECT v FROM meta WHERE k = 'last_seq'", [], |r| r.get(0))
            .optional()?;
        Ok(v.map_or(0, u))
    }

    fn active_rows(&mut self) -> Result<Vec<OrderRow>, HistoryError> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE status IN ('active', 'pending') ORDER BY priority_seq"
        ))?;
        all(&mut st, [], order_row)
    }

    fn write(&mut self, b: &Batch) -> Result<(), HistoryError> {
        let tx = self.conn.transaction()?;
        {
            // Rows the store holds (accepted at or before its sequence) are updated in
            // place; the others inserted (upserted: a rejected command may have left a row
            // under the same id).
            let held = |o: &&OrderRow| o.accept_seq <= b.prev_seq;
            let w = &mut self.writes;
            each(
                w,
                &tx,
                UPDATE_ORDER,
                b.orders.iter().filter(held),
                bind_update,
            )?;
            let fresh = b.orders.iter().filter(|o| !held(o));
            each(w, &tx, UPSERT_ORDER, fresh, bind_order)?;
            each(w, &tx, INSERT_REJECTED, &b.rejected, bind_order)?;
            each(w, &tx, INSERT_TRADE, &b.trades, bind_trade)?;
            let mut st = tx.prepare_cached(
                "INSERT INTO transfers (seq, account, asset, amount, ts) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for t in &b.transfers {
                st.execute(params![
                    i(t.seq),
                    i(t.account),
                    t.asset as i64,
                    t.amount.to_string(),
                    i(t.ts)
                ])?;
            }
            let mut st = tx.prepare_cached(
                "INSERT INTO balance_changes (seq, n, account, asset, delta, kind, ts) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for c in &b.balance_changes {
                st.execute(params![
                    i(c.seq),
                    c.n as i64,
                    i(c.account),
                    c.asset as i64,
                    c.delta.to_string(),
                    c.kind,
                    i(c.ts)
                ])?;
            }
            let mut st = tx.prepare_cached(
                "INSERT INTO funded_instruments (instrument, base, quote, base_per_lot, \
                 quote_per_tick_lot) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (instrument) DO NOTHING",
            )?;
            for f in &b.funded {
                st.execute(params![
                    f.instrument as i64,
                    f.base as i64,
                    f.quote as i64,
                    i(f.base_per_lot),
                    i(f.quote_per_tick_lot)
                ])?;
            }
            let mut st = tx.prepare_cached(
                "INSERT INTO symbols (instrument, name) VALUES (?1, ?2) \
                 ON CONFLICT (instrument) DO UPDATE SET name = excluded.name",
            )?;
            for (id, name) in &b.symbols {
                st.execute(params![*id as i64, name])?;
            }
            tx.prepare_cached(
                "INSERT INTO meta (k, v) VALUES ('last_seq', ?1) \
                 ON CONFLICT (k) DO UPDATE SET v = excluded.v",
            )?
            .execute(params![i(b.last_seq)])?;
        }
        tx.commit()?;
        Ok(())
    }
}

impl HistoryQuery for SqliteStore {
    fn order(&mut self, id: u64) -> Result<Option<OrderRow>, HistoryError> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = ?1"
        ))?;
        Ok(all(&mut st, params![i(id)], order_row)?.pop())
    }

    fn open_orders(
        &mut self,
        account: u64,
        instrument: Option<u32>,
    ) -> Result<Vec<OrderRow>, HistoryError> {
        let rows = match instrument {
            Some(inst) => {
                let mut st = self.conn.prepare_cached(&format!(
                    "SELECT {ORDER_COLUMNS} FROM orders WHERE status = 'active' AND account = ?1 \
                     AND instrument = ?2 ORDER BY priority_seq"
                ))?;
                all(&mut st, params![i(account), inst as i64], order_row)?
            }
            None => {
                let mut st = self.conn.prepare_cached(&format!(
                    "SELECT {ORDER_COLUMNS} FROM orders WHERE status = 'active' AND account = ?1 \
                     ORDER BY instrument, priority_seq"
                ))?;
                all(&mut st, params![i(account)], order_row)?
            }
        };
        Ok(rows)
    }

    fn trades_page(
        &mut self,
        account: u64,
        since: u64,
        limit: usize,
    ) -> Result<Vec<TradeRow>, HistoryError> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {TRADE_COLUMNS} FROM trades WHERE taker_account = ?1 AND seq > ?2 \
             UNION SELECT {TRADE_COLUMNS} FROM trades WHERE maker_account = ?1 AND seq > ?2 \
             ORDER BY seq LIMIT ?3"
        ))?;
        all(
            &mut st,
            params![i(account), i(since), limit.min(i64::MAX as usize) as i64],
            trade_row,
        )
    }

    fn active_orders(&mut self, instrument: u32) -> Result<Vec<OrderRow>, HistoryError> {
        let mut out = Vec::new();
        for (side, order) in [("buy", "price DESC"), ("sell", "price ASC")] {
            let mut st = self.conn.prepare_cached(&format!(
                "SELECT {ORDER_COLUMNS} FROM orders WHERE status = 'active' AND instrument = ?1 \
                 AND side = ?2 ORDER BY {order}, priority_seq"
            ))?;
            out.extend(all(&mut st, params![instrument as i64, side], order_row)?);
        }
        Ok(out)
    }

    fn instruments(&mut self) -> Result<Vec<u32>, HistoryError> {
        let mut st = self.conn.prepare_cached(
            "SELECT DISTINCT instrument FROM orders WHERE status != 'rejected' \
             UNION SELECT instrument FROM symbols ORDER BY 1",
        )?;
        let v = st
            .query_map([], |r| r.get::<_, i64>(0))?
            .map(|x| x.map(|x| x as u32))
            .collect::<Result<_, _>>()?;
        Ok(v)
    }

    fn symbol_name(&mut self, instrument: u32) -> Result<Option<String>, HistoryError> {
        Ok(self
            .conn
            .query_row(
                "SELECT name FROM symbols WHERE instrument = ?1",
                params![instrument as i64],
                |r| r.get::<_, String>(0),
            )
            .optional()?)
    }

    fn instrument_id(&mut self, symbol: &str) -> Result<Option<u32>, HistoryError> {
        let v: Option<i64> = self
            .conn
            .query_row(
                "SELECT instrument FROM symbols WHERE name = ?1",
                params![symbol],
                |r| r.get(0),
            )
            .optional()?;
        Ok(v.map(|x| x as u32))
    }
}
