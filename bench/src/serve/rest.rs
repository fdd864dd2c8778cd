//! Order entry over REST: `POST /v1/orders`, `DELETE /v1/orders/{id}`,
//! `PATCH /v1/orders/{id}`, `DELETE /v1/orders?symbol=` (docs/server.md, "Order entry over
//! REST").
//!
//! Each call is a short order-entry session ([`RestSession`]): the same API keys and account
//! binding, the same checks, commands and reject codes as the WebSocket, and the same JSON
//! execution reports, returned in the response once the router has them — that is, once the
//! journal has made the command durable. A trader key's calls share one token bucket at the
//! WebSocket's message rate. An `Idempotency-Key` header makes a retried call answer with
//! the first call's response instead of placing a second order; the same key with another
//! body is refused (`422`).

use crate::serve::protocol::{self, ClientMsg, ProtocolError};
use crate::serve::session::{Bucket, RestSession, RestWait};
use crate::serve::{error, App};
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ringex_engine::{AccountId, InstrumentId, Side};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

/// How long a call waits for its command's reports.
const REPORTS_WITHIN: Duration = Duration::from_secs(10);

/// Idempotency keys remembered (the oldest is forgotten past it).
const IDEMPOTENCY_KEYS: usize = 100_000;

/// The longest `Idempotency-Key` taken.
const MAX_IDEMPOTENCY_KEY: usize = 128;

/// A call's outcome as sent: status and JSON body.
#[derive(Clone, Debug)]
struct Answer {
    status: StatusCode,
    body: Value,
}

impl Answer {
    fn new(status: StatusCode, body: Value) -> Self {
        Answer { status, body }
    }

    fn error(status: StatusCode, what: &str, message: impl Into<String>) -> Self {
        Answer::new(status, json!({"error": what, "message": message.into()}))
    }

    fn into_response(self, replayed: bool) -> Response {
        let mut r = (self.status, axum::Json(self.body)).into_response();
        if replayed {
            r.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        r
    }
}

enum Remembered {
    /// The first call with this key is still running.
    Running(u64),
    /// Its answer.
    Done(u64, Answer),
}

/// Idempotency keys per API key: the fingerprint of the first call's request and its
/// answer, the most recent [`IDEMPOTENCY_KEYS`] of them.
#[derive(Default)]
pub struct Idempotency {
    calls: HashMap<(String, String), Remembered>,
    order: VecDeque<(String, String)>,
}

/// What a call with an idempotency key does.
enum Claim {
    /// The first with this key: go on, and `finish` it.
    First,
    /// Answered before: send this again.
    Replay(Answer),
    /// The same key with another request.
    Mismatch,
    /// The first call with this key has not finished.
    Running,
}

impl Idempotency {
    fn claim(&mut self, k: &(String, String), fingerprint: u64) -> Claim {
        match self.calls.get(k) {
            Some(Remembered::Done(f, a)) if *f == fingerprint => Claim::Replay(a.clone()),
            Some(Remembered::Running(f)) if *f == fingerprint => Claim::Running,
            Some(_) => Claim::Mismatch,
            None => {
                if self.order.len() >= IDEMPOTENCY_KEYS {
                    if let Some(old) = self.order.pop_front() {
                        self.calls.remove(&old);
                    }
                }
                self.order.push_back(k.clone());
                self.calls
                    .insert(k.clone(), Remembered::Running(fingerprint));
                Claim::First
            }
        }
    }

    /// The first call's answer; a call that sequenced nothing (`busy`, the engine halted)
    /// is forgotten instead, so that its retry is tried again.
    fn finish(&mut self, k: &(String, String), fingerprint: u64, a: &Answer, sequenced: bool) {
        if sequenced {
            self.calls
                .insert(k.clone(), Remembered::Done(fingerprint, a.clone()));
        } else {
            self.calls.remove(k);
            self.order.retain(|x| x != k);
        }
    }
}

/// The trader key of a call and its account: `401` without a known key, `403` for an admin
/// key (it places no orders), `429` past the key's rate.
fn trader(app: &App, headers: &HeaderMap) -> Result<(String, AccountId), Answer> {
    let key = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|k| k.trim().to_string());
    let Some(key) = key else {
        return Err(Answer::error(
            StatusCode::UNAUTHORIZED,
            "not_authenticated",
            "send Authorization: Bearer <API key>",
        ));
    };
    if app.admin_keys.contains(&key) {
        return Err(Answer::error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "an admin key places no orders: use a trader key",
        ));
    }
    let Some(&account) = app.keys.get(&key) else {
        return Err(Answer::error(
            StatusCode::UNAUTHORIZED,
            "bad_key",
            "unknown API key",
        ));
    };
    let allowed = {
        let mut b = app.rest_buckets.lock().unwrap_or_else(|e| e.into_inner());
        b.entry(key.clone())
            .or_insert_with(|| Bucket::new(app.limits.max_msgs_per_sec))
            .take()
    };
    if !allowed {
        crate::serve::metrics::dropped_message("rate_limited");
        return Err(Answer::error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "more than {} requests a second for this key: this one was not taken",
                app.limits.max_msgs_per_sec
            ),
        ));
    }
    Ok((key, account))
}

/// The JSON object of a body with `extra` fields set, as the WebSocket message it stands
/// for, checked as the WebSocket checks it.
fn message(body: &[u8], extra: &[(&str, Value)]) -> Result<ClientMsg, Answer> {
    let mut v: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|e| {
            Answer::error(
                StatusCode::BAD_REQUEST,
                "bad_json",
                format!("not JSON: {e}"),
            )
        })?
    };
    let Some(o) = v.as_object_mut() else {
        return Err(Answer::error(
            StatusCode::BAD_REQUEST,
            "invalid_message",
            "the body is a JSON object",
        ));
    };
    for (k, x) in extra {
        o.insert((*k).to_string(), x.clone());
    }
    protocol::parse(&v.to_string()).map_err(|e| bad_request(&e))
}

/// A request the session refused (nothing sequenced): the WebSocket's error code as the
/// REST error.
fn bad_request(e: &ProtocolError) -> Answer {
    let status = match e.code {
        "busy" | "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        "forbidden" | "wrong_account" => StatusCode::FORBIDDEN,
        _ => StatusCode::BAD_REQUEST,
    };
    Answer::error(status, e.code, e.message.clone())
}

/// Runs one request through a REST session: its reports, or why there are none.
/// `sequenced` says whether a command went in (for idempotency).
async fn run(
    app: &Arc<App>,
    account: AccountId,
    msg: ClientMsg,
    known: Option<(u64, InstrumentId, Side)>,
) -> (Answer, bool) {
    let mut s = RestSession::new(Arc::clone(app), account);
    if let Some((id, instrument, side)) = known {
        s.know(id, instrument, side);
    }
    let order_id = match &msg {
        ClientMsg::Cancel { order_id, .. } | ClientMsg::Modify { order_id, .. } => Some(*order_id),
        _ => None,
    };
    let is_new = matches!(msg, ClientMsg::New(_));
    let immediate = match s.request(msg) {
        Ok(v) => v,
        Err(e) => return (bad_request(&e), false),
    };
    let order_id = if is_new { s.placed() } else { order_id };
    match s.reports(REPORTS_WITHIN).await {
        Ok(reports) => {
            let reports: Vec<Value> = immediate
                .iter()
                .chain(&reports)
                .filter_map(|r| serde_json::from_str(r).ok())
                .collect();
            let mut body = json!({ "reports": reports });
            if let Some(id) = order_id {
                body["order_id"] = json!(id);
            }
            (Answer::new(StatusCode::OK, body), true)
        }
        Err(RestWait::Unavailable) => (
            Answer::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the engine stopped before the command's reports came",
            ),
            true,
        ),
        Err(RestWait::Timeout) => (
            Answer::error(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!("the command's reports did not come within {REPORTS_WITHIN:?}"),
            ),
            true,
        ),
    }
}

/// A call with its idempotency handling: `work` runs on its own task (a client that goes
/// away does not cancel it half-way), once per idempotency key.
async fn call<F>(
    app: Arc<App>,
    key: String,
    headers: &HeaderMap,
    fingerprint_of: (&str, &str, &[u8]),
    work: F,
) -> Response
where
    F: std::future::Future<Output = (Answer, bool)> + Send + 'static,
{
    let idem = match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(k)) if !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY => Some(k.to_string()),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_message",
                format!("Idempotency-Key: 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
            )
        }
    };
    let fingerprint = {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        fingerprint_of.hash(&mut h);
        h.finish()
    };
    let slot = idem.map(|k| (key, k));
    if let Some(k) = &slot {
        let claim = app
            .idempotency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .claim(k, fingerprint);
        match claim {
            Claim::First => {}
            Claim::Replay(a) => return a.into_response(true),
            Claim::Mismatch => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used with another request",
                )
            }
            Claim::Running => {
                return error(
                    StatusCode::CONFLICT,
                    "in_progress",
                    "the first request with this Idempotency-Key has not finished: retry",
                )
            }
        }
    }
    let Some(slot) = slot else {
        // No idempotency key: nothing to finish if the client goes away half-way.
        return work.await.0.into_response(false);
    };
    let slot = Some(slot);
    let app2 = Arc::clone(&app);
    let task = tokio::spawn(async move {
        let (answer, sequenced) = work.await;
        if let Some(k) = &slot {
            app2.idempotency
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .finish(k, fingerprint, &answer, sequenced);
        }
        answer
    });
    match task.await {
        Ok(a) => a.into_response(false),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// Runs `msg` for `account` as one call (with its idempotency handling).
async fn submit(
    app: Arc<App>,
    key: String,
    headers: &HeaderMap,
    fingerprint: (&str, &str, &[u8]),
    account: AccountId,
    msg: ClientMsg,
    known: Option<(u64, InstrumentId, Side)>,
) -> Response {
    let app2 = Arc::clone(&app);
    call(app, key, headers, fingerprint, async move {
        run(&app2, account, msg, known).await
    })
    .await
}

/// `POST /v1/orders`: a new order, the WebSocket `new` message's fields as a JSON body.
pub async fn post_order(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let (key, account) = match trader(&app, &headers) {
        Ok(x) => x,
        Err(a) => return a.into_response(false),
    };
    let msg = match message(&body, &[("type", json!("new"))]) {
        Ok(m) => m,
        Err(a) => return a.into_response(false),
    };
    submit(app, key, &headers, ("POST", "", &body), account, msg, None).await
}

/// The instrument and side of an order of `account` this call did not place: from the
/// `symbol` given, else from the history store.
async fn locate(
    app: &Arc<App>,
    account: AccountId,
    id: u64,
    symbol: Option<&str>,
) -> Result<Option<(u64, InstrumentId, Side)>, Box<Response>> {
    if let Some(s) = symbol {
        // An unknown symbol is sequenced as `unknown_symbol` by the session.
        return Ok(app.specs.by_symbol(s).map(|spec| (id, spec.id, Side::Buy)));
    }
    let Some(db) = app.history.clone() else {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_message",
            "give ?symbol= (or start the server with --history FILE to look orders up)",
        )));
    };
    let o = crate::serve::history::order_of(db, account, id).await?;
    Ok(Some((id, InstrumentId(o.instrument), o.side)))
}

/// `DELETE /v1/orders/{id}[?symbol=S]`: cancels an order of the key's account.
pub async fn cancel_order(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<u64>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (key, account) = match trader(&app, &headers) {
        Ok(x) => x,
        Err(a) => return a.into_response(false),
    };
    let symbol = q.get("symbol").cloned();
    let known = match locate(&app, account, id, symbol.as_deref()).await {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let msg = ClientMsg::Cancel {
        order_id: id,
        // Known orders need no symbol; an unknown symbol is sequenced as a reject.
        symbol: if known.is_some() { None } else { symbol },
        account: None,
        req_id: None,
    };
    let path = format!("/v1/orders/{id}");
    submit(
        app,
        key,
        &headers,
        ("DELETE", &path, &[]),
        account,
        msg,
        known,
    )
    .await
}

/// `PATCH /v1/orders/{id}`: a new price and quantity (`{"price": …, "qty": …}`, and
/// `symbol` unless the history store knows the order).
pub async fn modify_order(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<u64>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (key, account) = match trader(&app, &headers) {
        Ok(x) => x,
        Err(a) => return a.into_response(false),
    };
    let msg = match message(&body, &[("type", json!("modify")), ("order_id", json!(id))]) {
        Ok(m) => m,
        Err(a) => return a.into_response(false),
    };
    let ClientMsg::Modify {
        price,
        qty,
        symbol,
        account: a,
        req_id,
        ..
    } = msg
    else {
        return error(StatusCode::BAD_REQUEST, "invalid_message", "a modify");
    };
    let known = match locate(&app, account, id, symbol.as_deref()).await {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let msg = ClientMsg::Modify {
        order_id: id,
        price,
        qty,
        symbol: if known.is_some() { None } else { symbol },
        account: a,
        req_id,
    };
    let path = format!("/v1/orders/{id}");
    submit(
        app,
        key,
        &headers,
        ("PATCH", &path, &body),
        account,
        msg,
        known,
    )
    .await
}

/// `DELETE /v1/orders[?symbol=S]`: cancels every order of the key's account (on `S` only
/// when given).
pub async fn mass_cancel(
    State(app): State<Arc<App>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (key, account) = match trader(&app, &headers) {
        Ok(x) => x,
        Err(a) => return a.into_response(false),
    };
    let symbol = q.get("symbol").cloned();
    let msg = ClientMsg::MassCancel {
        symbol: symbol.clone(),
        account: None,
        req_id: None,
    };
    let path = format!("/v1/orders?symbol={}", symbol.unwrap_or_default());
    submit(
        app,
        key,
        &headers,
        ("DELETE", &path, &[]),
        account,
        msg,
        None,
    )
    .await
}
