//! The history store over REST (`--history FILE`): a trader key's open orders
//! (`GET /v1/orders?status=open&symbol=S`) and trades, paged by event sequence
//! (`GET /v1/trades?since=SEQ&limit=N`), its own account's only (docs/server.md).
//!
//! The store is written after the journal, so it may lag the reports by a batch; each
//! answer says how far it goes (`as_of_seq`: the last event the store holds).

use crate::serve::{error, order_json, App};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ringex_consumers::history::{sqlite::SqliteStore, HistoryQuery, HistoryStore};
use ringex_engine::{AccountId, InstrumentId, Side};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Trades per page by default, and at most.
const PAGE: usize = 1000;
const MAX_PAGE: usize = 10_000;

/// The key's account and the store, or the answer that says why not.
fn account_and_store(
    app: &App,
    headers: &HeaderMap,
) -> Result<(AccountId, std::path::PathBuf), Box<Response>> {
    let Some(account) = app.account_of(headers) else {
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "not_authenticated",
            "send Authorization: Bearer <API key>",
        )));
    };
    let Some(db) = app.history.clone() else {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            "no_history",
            "this needs the history store: start the server with --history FILE",
        )));
    };
    Ok((account, db))
}

/// Runs a query on the store off the async workers.
async fn query<T: Send + 'static>(
    db: std::path::PathBuf,
    f: impl FnOnce(&mut SqliteStore) -> Result<T, ringex_consumers::history::HistoryError>
        + Send
        + 'static,
) -> Result<(T, u64), Box<Response>> {
    let r = tokio::task::spawn_blocking(move || {
        let mut q = SqliteStore::open(&db)?;
        let as_of = q.last_seq()?;
        f(&mut q).map(|t| (t, as_of))
    })
    .await;
    match r {
        Ok(Ok(x)) => Ok(x),
        Ok(Err(e)) => Err(Box::new(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "history",
            e.to_string(),
        ))),
        Err(e) => Err(Box::new(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "history",
            e.to_string(),
        ))),
    }
}

/// One order of `account` from the store at `db`: another account's order looks like no
/// order at all (`404 unknown_order`).
pub(crate) async fn order_of(
    db: std::path::PathBuf,
    account: AccountId,
    id: u64,
) -> Result<ringex_consumers::history::OrderRow, Box<Response>> {
    match query(db, move |s| s.order(id)).await?.0 {
        Some(o) if o.account == account.0 => Ok(o),
        _ => Err(Box::new(error(
            StatusCode::NOT_FOUND,
            "unknown_order",
            format!("no order {id} of account {}", account.0),
        ))),
    }
}

/// `GET /v1/orders?status=open[&symbol=S]`: the account's open orders, in time priority.
pub async fn open_orders(
    State(app): State<Arc<App>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (account, db) = match account_and_store(&app, &headers) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    open_orders_of(app, account, db, q).await
}

/// An account's open orders from the store at `db` (`?status=open[&symbol=S]`), for its
/// trader or an admin.
pub(crate) async fn open_orders_of(
    app: Arc<App>,
    account: AccountId,
    db: std::path::PathBuf,
    q: HashMap<String, String>,
) -> Response {
    match q.get("status").map(String::as_str) {
        Some("open") => {}
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_message",
                "give ?status=open (one order by id: GET /v1/orders/{id})",
            )
        }
    }
    let instrument = match q.get("symbol") {
        None => None,
        Some(s) => match app.specs.by_symbol(s) {
            Some(spec) => Some(spec.id.0),
            None => {
                return error(
                    StatusCode::NOT_FOUND,
                    "unknown_symbol",
                    format!("no symbol {s:?}"),
                )
            }
        },
    };
    match query(db, move |s| s.open_orders(account.0, instrument)).await {
        Ok((rows, as_of)) => {
            let orders: Vec<Value> = rows.iter().map(|o| order_json(&app, o)).collect();
            Json(json!({"account": account.0, "as_of_seq": as_of, "orders": orders}))
                .into_response()
        }
        Err(r) => *r,
    }
}

/// `GET /v1/trades?since=SEQ[&limit=N]`: the account's trades after event sequence `SEQ`
/// (0: from the start), at most `N` (1000 by default, 10,000 at most); `next` is the
/// `since` of the following page (`null`: none).
pub async fn trades(
    State(app): State<Arc<App>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (account, db) = match account_and_store(&app, &headers) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let since = match q.get("since").map(|s| s.parse::<u64>()) {
        None => 0,
        Some(Ok(s)) => s,
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_message",
                "?since=: an event sequence (a whole number)",
            )
        }
    };
    let limit = match q.get("limit").map(|s| s.parse::<usize>()) {
        None => PAGE,
        Some(Ok(n)) if (1..=MAX_PAGE).contains(&n) => n,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_message",
                format!("?limit=: 1 to {MAX_PAGE}"),
            )
        }
    };
    // One more than asked: whether another page follows.
    let r = query(db, move |s| s.trades_page(account.0, since, limit + 1)).await;
    let (mut rows, as_of) = match r {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let more = rows.len() > limit;
    rows.truncate(limit);
    let trades: Vec<Value> = rows
        .iter()
        .map(|t| {
            let spec = app.specs.by_id(InstrumentId(t.instrument));
            let taker = t.taker_account == account.0;
            let (order, side, liquidity) = if taker {
                (t.taker_order, t.taker_side, "taker")
            } else {
                (t.maker_order, t.taker_side.opposite(), "maker")
            };
            // Fees in the quote asset's smallest units (funded instruments; negative: a
            // rebate).
            let fee = t.fees.map(|(buyer, seller)| {
                (if side == Side::Buy { buyer } else { seller }).to_string()
            });
            json!({
                "seq": t.seq,
                "symbol": spec.as_ref().map(|s| s.symbol.clone()),
                "order_id": order,
                "side": if side == Side::Buy { "buy" } else { "sell" },
                "liquidity": liquidity,
                "price": spec.as_ref().map_or(t.price.to_string(), |s| s.price_text(ringex_engine::Price(t.price))),
                "qty": spec.map_or(t.qty.to_string(), |s| s.qty_text(t.qty as u128)),
                "fee_units": fee,
                "ts": t.ts,
            })
        })
        .collect();
    let next = if more {
        rows.last().map(|t| t.seq)
    } else {
        None
    };
    Json(json!({"account": account.0, "as_of_seq": as_of, "trades": trades, "next": next}))
        .into_response()
}
