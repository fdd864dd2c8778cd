//! The history store from the command line: `ringex query` and `ringex reconcile` (opening
//! and catching up a store is shared start-up: [`crate::startup`]).

pub use crate::startup::{catch_up, open_history, recover_history};
use crate::startup::{recover_dir, RunError};
use ringex_consumers::history::sqlite::SqliteStore;
use ringex_consumers::history::{
    reconcile, side_str, tif_str, type_str, HistoryError, HistoryQuery, OrderRow, TradeRow,
};
use ringex_engine::BookReplica;
use std::fmt::Write as _;
use std::path::Path;

/// What `ringex query` asks.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum Query {
    /// One order by id.
    Order {
        /// The order id.
        id: u64,
    },
    /// An account's open orders (time priority).
    OpenOrders {
        /// The account.
        #[arg(long)]
        account: u64,
        /// Only this symbol.
        #[arg(long)]
        symbol: Option<String>,
    },
    /// An account's trades (as taker or maker), oldest first.
    Trades {
        /// The account.
        #[arg(long)]
        account: u64,
        /// Only trades after this event sequence.
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
    /// A symbol's active orders in book order (bids best first, then asks).
    Active {
        /// The symbol.
        #[arg(long)]
        symbol: String,
    },
}

fn order_line<Q: HistoryQuery>(q: &mut Q, r: &OrderRow) -> String {
    format!(
        "order,{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
        r.order_id,
        symbol_of(q, r.instrument),
        r.account,
        side_str(r.side),
        type_str(r.order_type),
        if r.tif == ringex_engine::TimeInForce::Gtd {
            format!("gtd:{}", r.expiry)
        } else {
            tif_str(r.tif).to_string()
        },
        r.price,
        r.orig_qty,
        r.open_qty,
        r.filled_qty,
        r.status.as_str(),
        r.reason.as_deref().unwrap_or("-"),
        r.priority_seq,
        r.created_ts,
        r.updated_ts,
    )
}

fn trade_line<Q: HistoryQuery>(q: &mut Q, t: &TradeRow) -> String {
    let fees = t
        .fees
        .map_or("-,-".to_string(), |(b, s)| format!("{b},{s}"));
    format!(
        "trade,{},{},{},{},{},{},{},{},{},{},{}",
        t.seq,
        symbol_of(q, t.instrument),
        t.taker_order,
        t.maker_order,
        t.taker_account,
        t.maker_account,
        side_str(t.taker_side),
        t.price,
        t.qty,
        fees,
        t.ts
    )
}

fn symbol_of<Q: HistoryQuery>(q: &mut Q, instrument: u32) -> String {
    q.symbol_name(instrument)
        .ok()
        .flatten()
        .unwrap_or_else(|| format!("#{instrument}"))
}

/// Header lines of the query output.
pub const ORDER_HEADER: &str = "# order,id,symbol,account,side,type,tif,price_ticks,orig_lots,open_lots,filled_lots,status,reason,priority_seq,created_ts,updated_ts";
/// Header of trade lines.
pub const TRADE_HEADER: &str = "# trade,seq,symbol,taker_order,maker_order,taker_account,maker_account,taker_side,price_ticks,lots,buyer_fee,seller_fee,ts";

/// `ringex query --db FILE …`: the answer as text (prices in ticks, quantities in lots).
pub fn query(db: &Path, what: &Query) -> Result<String, RunError> {
    if !db.is_file() {
        return Err(RunError::History(HistoryError::Format(format!(
            "no history store at {}",
            db.display()
        ))));
    }
    let mut q = SqliteStore::open(db)?;
    query_store(&mut q, what)
}

/// `ringex query --pg URL …`: the same answer from a PostgreSQL store.
#[cfg(feature = "postgres")]
pub fn query_pg(url: &str, what: &Query) -> Result<String, RunError> {
    let mut q = ringex_consumers::history::postgres::PgStore::connect(url)?;
    query_store(&mut q, what)
}

/// The answer from any store.
pub fn query_store<Q: HistoryQuery>(q: &mut Q, what: &Query) -> Result<String, RunError> {
    let mut out = String::new();
    let instrument = |q: &mut Q, s: &str| -> Result<u32, RunError> {
        q.instrument_id(s)?
            .ok_or_else(|| RunError::History(HistoryError::Format(format!("unknown symbol {s:?}"))))
    };
    match what {
        Query::Order { id } => {
            let _ = writeln!(out, "{ORDER_HEADER}");
            match q.order(*id)? {
                Some(r) => {
                    let line = order_line(q, &r);
                    let _ = writeln!(out, "{line}");
                }
                None => {
                    let _ = writeln!(out, "# no order {id}");
                }
            }
        }
        Query::OpenOrders { account, symbol } => {
            let inst = symbol.as_deref().map(|s| instrument(q, s)).transpose()?;
            let _ = writeln!(out, "{ORDER_HEADER}");
            for r in q.open_orders(*account, inst)? {
                let line = order_line(q, &r);
                let _ = writeln!(out, "{line}");
            }
        }
        Query::Trades { account, since } => {
            let _ = writeln!(out, "{TRADE_HEADER}");
            for t in q.trades(*account, *since)? {
                let line = trade_line(q, &t);
                let _ = writeln!(out, "{line}");
            }
        }
        Query::Active { symbol } => {
            let inst = instrument(q, symbol)?;
            let _ = writeln!(out, "{ORDER_HEADER}");
            for r in q.active_orders(inst)? {
                let line = order_line(q, &r);
                let _ = writeln!(out, "{line}");
            }
        }
    }
    Ok(out)
}

/// `ringex reconcile --journal DIR --db FILE`: the differences between the store's active
/// orders and the books recovered from the journal (empty: they agree).
pub fn reconcile_cmd(journal: &Path, db: &Path) -> Result<Vec<String>, RunError> {
    if !journal.is_dir() {
        return Err(RunError::NoJournal(journal.to_path_buf()));
    }
    let mut q = SqliteStore::open(db)?;
    reconcile_store(journal, &mut q)
}

/// `ringex reconcile --journal DIR --pg URL`: the same against a PostgreSQL store.
#[cfg(feature = "postgres")]
pub fn reconcile_pg(journal: &Path, url: &str) -> Result<Vec<String>, RunError> {
    if !journal.is_dir() {
        return Err(RunError::NoJournal(journal.to_path_buf()));
    }
    let mut q = ringex_consumers::history::postgres::PgStore::connect(url)?;
    reconcile_store(journal, &mut q)
}

/// The differences between any store and the journal's books.
pub fn reconcile_store<Q: HistoryQuery + ringex_consumers::history::HistoryStore>(
    journal: &Path,
    q: &mut Q,
) -> Result<Vec<String>, RunError> {
    let (_, state, _) = recover_dir(journal)?;
    let books = BookReplica::from_state(&state);
    let applied = ringex_consumers::history::HistoryStore::last_seq(q)?;
    let mut diffs = Vec::new();
    if applied != state.event_seq {
        diffs.push(format!(
            "the store holds events up to {applied}, the journal up to {} (run `ringex recover \
             --journal DIR --history FILE` to catch up)",
            state.event_seq
        ));
    }
    diffs.extend(reconcile(q, &books)?);
    Ok(diffs)
}
