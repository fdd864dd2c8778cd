//! The admin API under `/v1/admin/` (admin keys only: `--key KEY:admin`): halt and resume a
//! symbol, block and unblock an account, deposit and withdraw, cancel an account's orders,
//! and read any account's balances (docs/server.md, "Admin API").
//!
//! Every action is a command through the same input ring as the orders: sequenced,
//! journaled, replayed on restart. A call answers once the report router has routed the
//! command (so the journal holds it), with the command's events as JSON: a refused action
//! is an event too (`rejected` with its code, e.g. a withdrawal past the available balance).

use crate::serve::router::{Registration, Report, SessionLink};
use crate::serve::{error, App};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ringex_engine::funds::{format_units, units_of};
use ringex_engine::{AccountId, Amount, CommandKind, EventKind, InstrumentId, SubmitError};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A call refused before anything was sequenced: status, error code, message.
struct Refusal(StatusCode, &'static str, String);

fn refuse(code: StatusCode, what: &'static str, message: impl Into<String>) -> Refusal {
    Refusal(code, what, message.into())
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.0, self.1, self.2)
    }
}

/// How long a call waits for its command to be routed.
const ROUTED_WITHIN: Duration = Duration::from_secs(10);

/// `Ok` for an admin key; `401` without a known key, `403` for a trader key.
fn admin(app: &App, headers: &HeaderMap) -> Result<(), Refusal> {
    let key = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match key {
        Some(k) if app.admin_keys.contains(k) => Ok(()),
        Some(k) if app.keys.contains_key(k) => Err(refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a trader key cannot reach the admin API",
        )),
        Some(_) => Err(refuse(
            StatusCode::UNAUTHORIZED,
            "bad_key",
            "unknown API key",
        )),
        None => Err(refuse(
            StatusCode::UNAUTHORIZED,
            "not_authenticated",
            "send Authorization: Bearer <admin key>",
        )),
    }
}

fn bad(message: impl Into<String>) -> Refusal {
    refuse(StatusCode::BAD_REQUEST, "invalid_message", message)
}

/// The body as a JSON object.
fn object(body: &[u8]) -> Result<serde_json::Map<String, Value>, Refusal> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(bad("the body is a JSON object")),
        Err(e) => Err(refuse(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("not JSON: {e}"),
        )),
    }
}

fn account_of(o: &serde_json::Map<String, Value>) -> Result<AccountId, Refusal> {
    match o.get("account").and_then(Value::as_u64) {
        Some(a) if a > 0 => Ok(AccountId(a)),
        _ => Err(bad("\"account\": a positive integer")),
    }
}

fn symbol_of(app: &App, o: &serde_json::Map<String, Value>) -> Result<InstrumentId, Refusal> {
    let Some(s) = o.get("symbol").and_then(Value::as_str) else {
        return Err(bad("\"symbol\": a string"));
    };
    app.specs.by_symbol(s).map(|s| s.id).ok_or_else(|| {
        refuse(
            StatusCode::NOT_FOUND,
            "unknown_symbol",
            format!("no symbol {s:?}"),
        )
    })
}

/// An event of the admin's command as JSON (`None`: nothing to say).
fn event_json(app: &App, e: &ringex_engine::Event) -> Option<Value> {
    let symbol = |i: InstrumentId| app.specs.by_id(i).map(|s| s.symbol.clone());
    let asset = |a: ringex_engine::AssetId| {
        app.assets
            .get(a.0 as usize)
            .map_or((format!("#{}", a.0), 0), |s| (s.name.clone(), s.scale))
    };
    Some(match e.kind {
        EventKind::InstrumentStatus { instrument, halted } => {
            json!({"type": if halted { "halted" } else { "resumed" }, "symbol": symbol(instrument)})
        }
        EventKind::AccountStatus { account, blocked } => {
            json!({"type": if blocked { "blocked" } else { "unblocked" }, "account": account.0})
        }
        EventKind::Deposited {
            account,
            asset: a,
            amount,
        }
        | EventKind::Withdrawn {
            account,
            asset: a,
            amount,
        } => {
            let (name, scale) = asset(a);
            let kind = if matches!(e.kind, EventKind::Deposited { .. }) {
                "deposited"
            } else {
                "withdrawn"
            };
            json!({"type": kind, "account": account.0, "asset": name,
                "amount": format_units(amount.get(), scale)})
        }
        EventKind::Cancelled {
            instrument,
            order_id,
            account,
            reason,
            ..
        } => {
            json!({"type": "cancelled", "order_id": order_id.0, "account": account.0,
                "symbol": symbol(instrument), "reason": reason.as_str()})
        }
        EventKind::Rejected { account, code, .. } => {
            json!({"type": "rejected", "account": account.0, "code": code.as_str()})
        }
        _ => return None,
    })
}

/// Submits an admin command and answers with its events once it is routed (durable).
async fn act(app: Arc<App>, kind: CommandKind) -> Response {
    let id = app
        .next_session
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Report>(4096);
    // Watching starts before the command goes in, so none of its events is missed.
    let _ = app.registry.send(Registration::Watch(SessionLink {
        id,
        tx,
        overflowed: Arc::new(AtomicBool::new(false)),
    }));
    let seq = match app.gateway().try_submit(kind) {
        Ok(s) => s.0,
        Err(e) => {
            let _ = app.registry.send(Registration::Unwatch(id));
            return match e {
                SubmitError::Busy => error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "the engine's input ring is full: retry later",
                ),
                e => error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    e.to_string(),
                ),
            };
        }
    };
    app.submitted.fetch_add(1, Ordering::Relaxed);
    crate::serve::metrics::command("admin");
    let deadline = tokio::time::Instant::now() + ROUTED_WITHIN;
    let mut events = Vec::new();
    let answer = loop {
        let routed = app.progress.routed_cmd_seq.load(Ordering::Acquire) >= seq;
        while let Ok(r) = rx.try_recv() {
            if r.event.cmd_seq().0 == seq {
                events.extend(event_json(&app, &r.event));
            }
        }
        if routed {
            break (StatusCode::OK, json!({"seq": seq, "events": events}));
        }
        if tokio::time::Instant::now() >= deadline {
            break (
                StatusCode::GATEWAY_TIMEOUT,
                json!({"error": "timeout", "message": "the command was not routed within 10 s"}),
            );
        }
        tokio::select! {
            r = rx.recv() => {
                if let Some(r) = r {
                    if r.event.cmd_seq().0 == seq {
                        events.extend(event_json(&app, &r.event));
                    }
                }
            }
            // A command whose events go to nobody is known done by the router's progress.
            _ = tokio::time::sleep(Duration::from_millis(1)) => {}
        }
    };
    let _ = app.registry.send(Registration::Unwatch(id));
    (answer.0, axum::Json(answer.1)).into_response()
}

/// An admin call whose JSON body makes one command (`make`), answered by [`act`].
async fn call(
    app: Arc<App>,
    headers: HeaderMap,
    body: Bytes,
    make: impl FnOnce(&App, &serde_json::Map<String, Value>) -> Result<CommandKind, Refusal>,
) -> Response {
    if let Err(r) = admin(&app, &headers) {
        return r.into_response();
    }
    match object(&body).and_then(|o| make(&app, &o)) {
        Ok(kind) => act(app, kind).await,
        Err(r) => r.into_response(),
    }
}

/// `POST /v1/admin/halt` `{"symbol"}`.
pub async fn halt(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    call(app, headers, body, |app, o| {
        Ok(CommandKind::Halt {
            instrument: symbol_of(app, o)?,
        })
    })
    .await
}

/// `POST /v1/admin/resume` `{"symbol"}`.
pub async fn resume(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    call(app, headers, body, |app, o| {
        Ok(CommandKind::Resume {
            instrument: symbol_of(app, o)?,
        })
    })
    .await
}

/// `POST /v1/admin/block` `{"account"}`.
pub async fn block(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    call(app, headers, body, |_, o| {
        Ok(CommandKind::Block {
            account: account_of(o)?,
        })
    })
    .await
}

/// `POST /v1/admin/unblock` `{"account"}`.
pub async fn unblock(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    call(app, headers, body, |_, o| {
        Ok(CommandKind::Unblock {
            account: account_of(o)?,
        })
    })
    .await
}

/// `POST /v1/admin/deposit` `{"account", "asset", "amount"}`.
pub async fn deposit(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    call(app, headers, body, |app, o| {
        let (account, asset, amount) = money(app, o)?;
        Ok(CommandKind::Deposit {
            account,
            asset,
            amount,
        })
    })
    .await
}

/// `POST /v1/admin/withdraw` `{"account", "asset", "amount"}`.
pub async fn withdraw(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    call(app, headers, body, |app, o| {
        let (account, asset, amount) = money(app, o)?;
        Ok(CommandKind::Withdraw {
            account,
            asset,
            amount,
        })
    })
    .await
}

/// The account, asset and amount (in the asset's units) of a deposit or withdrawal.
fn money(
    app: &App,
    o: &serde_json::Map<String, Value>,
) -> Result<(AccountId, ringex_engine::AssetId, Amount), Refusal> {
    let account = account_of(o)?;
    let Some(name) = o.get("asset").and_then(Value::as_str) else {
        return Err(bad("\"asset\": a string"));
    };
    let Some(pos) = app.assets.iter().position(|a| a.name == name) else {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            "unknown_asset",
            format!("no asset {name:?}"),
        ));
    };
    let amount = match o.get("amount") {
        Some(Value::String(s)) => Decimal::from_str(s).ok(),
        Some(Value::Number(n)) => Decimal::from_str(&n.to_string()).ok(),
        _ => None,
    };
    let scale = app.assets[pos].scale;
    let units = amount
        .and_then(|d| units_of(d, scale))
        .filter(|u| *u > 0)
        .ok_or_else(|| {
            bad(format!(
                "\"amount\": a positive decimal with at most {scale} places"
            ))
        })?;
    Ok((
        account,
        ringex_engine::AssetId(pos as u16),
        Amount::new(units),
    ))
}

/// `POST /v1/admin/mass_cancel` `{"account", "symbol"?}`: every open order of the account.
pub async fn mass_cancel(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    call(app, headers, body, |app, o| {
        let instrument = if o.contains_key("symbol") {
            Some(symbol_of(app, o)?)
        } else {
            None
        };
        Ok(CommandKind::MassCancel {
            account: account_of(o)?,
            instrument,
        })
    })
    .await
}

/// `GET /v1/admin/balances?account=A`: any account's balances.
pub async fn balances(
    State(app): State<Arc<App>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admin(&app, &headers) {
        return r.into_response();
    }
    let Some(account) = q
        .get("account")
        .and_then(|a| a.parse::<u64>().ok())
        .map(AccountId)
    else {
        return bad("?account=: a positive integer").into_response();
    };
    crate::serve::balances_json(&app, account)
}

/// `GET /v1/admin/orders?account=A&status=open[&symbol=S]`: any account's open orders, from
/// the history store (`--history`).
pub async fn orders(
    State(app): State<Arc<App>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admin(&app, &headers) {
        return r.into_response();
    }
    let Some(account) = q
        .get("account")
        .and_then(|a| a.parse::<u64>().ok())
        .map(AccountId)
    else {
        return bad("?account=: a positive integer").into_response();
    };
    let Some(db) = app.history.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "no_history",
            "this needs the history store: start the server with --history FILE",
        );
    };
    crate::serve::history::open_orders_of(app, account, db, q).await
}
