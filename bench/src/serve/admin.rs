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
pub(crate) struct Refusal(StatusCode, &'static str, String);

pub(crate) fn refuse(code: StatusCode, what: &'static str, message: impl Into<String>) -> Refusal {
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
pub(crate) fn admin(app: &App, headers: &HeaderMap) -> Result<(), Refusal> {
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
pub(crate) fn event_json(app: &App, e: &ringex_engine::Event) -> Option<Value> {
    let symbol = |i: InstrumentId| app.specs.by_id(i).map(|s| s.symbol.clone());
    let asset = |a: ringex_engine::AssetId| {
        app.specs
            .asset(a)
            .map_or((format!("#{}", a.0), 0), |s| (s.name, s.scale))
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
        EventKind::InstrumentAdded(def) => {
            let spec = app.specs.by_id(def.id);
            let mut v = json!({"type": "instrument_added", "symbol": symbol(def.id),
                "tick_size": spec.as_ref().map(|s| s.tick_size.to_string()),
                "lot_size": spec.as_ref().map(|s| s.lot_size.to_string())});
            if def.is_funded() {
                let (b, q) = def.assets();
                v["base"] = json!(asset(b).0);
                v["quote"] = json!(asset(q).0);
            }
            v
        }
        EventKind::MatchPolicySet {
            instrument,
            policy,
            min_alloc,
        } => {
            let spec = app.specs.by_id(instrument);
            json!({"type": "match_policy_set", "symbol": symbol(instrument),
                "match": policy.as_str(),
                "min_alloc": spec.map_or(min_alloc.0.to_string(), |s| s.qty_text(min_alloc.0 as u128))})
        }
        EventKind::AssetAdded { asset: a, scale } => {
            json!({"type": "asset_added", "asset": asset(a).0, "scale": scale})
        }
        EventKind::Rejected { account, code, .. } => {
            json!({"type": "rejected", "account": account.0, "code": code.as_str()})
        }
        _ => return None,
    })
}

/// Submits an admin command and answers with its events once it is routed (durable).
async fn act(app: Arc<App>, kind: CommandKind) -> Response {
    match sequence(&app, &[kind]).await {
        Ok((seq, events)) => {
            let events: Vec<Value> = events.iter().filter_map(|e| event_json(&app, e)).collect();
            axum::Json(json!({"seq": seq, "events": events})).into_response()
        }
        Err(r) => *r,
    }
}

/// Submits commands, one after the other in the input ring, and waits until the report
/// router has routed the last (the journal holds them all). Returns the last command's
/// sequence and every event of the commands; an error answer when the ring refused a
/// command (those before it are in) or nothing was routed in time.
pub(crate) async fn sequence(
    app: &App,
    kinds: &[CommandKind],
) -> Result<(u64, Vec<ringex_engine::Event>), Box<Response>> {
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
    let mut seqs = Vec::with_capacity(kinds.len());
    for kind in kinds {
        match app.gateway().try_submit(*kind) {
            Ok(s) => seqs.push(s.0),
            Err(e) => {
                let _ = app.registry.send(Registration::Unwatch(id));
                return Err(Box::new(match e {
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
                }));
            }
        }
        app.submitted.fetch_add(1, Ordering::Relaxed);
        crate::serve::metrics::command("admin");
    }
    let last = seqs.last().copied().unwrap_or(0);
    let deadline = tokio::time::Instant::now() + ROUTED_WITHIN;
    let mut events = Vec::new();
    let mine = |r: &Report| seqs.contains(&r.event.cmd_seq().0);
    let answer = loop {
        let routed = app.progress.routed_cmd_seq.load(Ordering::Acquire) >= last;
        while let Ok(r) = rx.try_recv() {
            if mine(&r) {
                events.push(r.event);
            }
        }
        if routed {
            break Ok((last, events));
        }
        if tokio::time::Instant::now() >= deadline {
            break Err(Box::new(
                (
                    StatusCode::GATEWAY_TIMEOUT,
                    axum::Json(json!({"error": "timeout",
                        "message": "the command was not routed within 10 s"})),
                )
                    .into_response(),
            ));
        }
        tokio::select! {
            r = rx.recv() => {
                if let Some(r) = r.filter(|r| mine(r)) {
                    events.push(r.event);
                }
            }
            // A command whose events go to nobody is known done by the router's progress.
            _ = tokio::time::sleep(Duration::from_millis(1)) => {}
        }
    };
    let _ = app.registry.send(Registration::Unwatch(id));
    answer
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
    let Some((asset, scale)) = app.specs.asset_by_name(name) else {
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
    let units = amount
        .and_then(|d| units_of(d, scale))
        .filter(|u| *u > 0)
        .ok_or_else(|| {
            bad(format!(
                "\"amount\": a positive decimal with at most {scale} places"
            ))
        })?;
    Ok((account, asset, Amount::new(units)))
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
