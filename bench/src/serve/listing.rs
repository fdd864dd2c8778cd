//! Listing while the server runs (admin keys only): `POST /v1/admin/assets` and
//! `POST /v1/admin/instruments` (docs/server.md, "Admin API").
//!
//! A listing is checked by the command-script parser, so it accepts exactly what an
//! `asset` or `instrument` line of a setup script accepts. It becomes durable in two steps,
//! in this order: the edge state (`edge.meta`: the symbol, tick and lot sizes) is written
//! and synced, then the engine's command (`AddAsset`, or `AddInstrument` and the
//! `SetMatchPolicy` a `match=` key asks for) is sequenced and journaled, so it replays like
//! every other command. The call answers once the journal holds the command; sessions see
//! the new symbol from then on, so no order can reach the book before its match policy. A
//! crash between the two steps leaves a definition the engine never saw: it is forgotten
//! on restart, and the call was never answered.

use crate::meta::EdgeMeta;
use crate::script::{AssetSpec, Script, ScriptItem};
use crate::serve::admin::{admin, event_json, refuse, sequence, Refusal};
use crate::serve::{error, App};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ringex_engine::{CommandKind, EventKind};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The keys of `POST /v1/admin/instruments` after the three it needs, in the order of the
/// script line.
const INSTRUMENT_OPTIONS: [&str; 8] = [
    "base",
    "quote",
    "maker_fee",
    "taker_fee",
    "max_qty",
    "band",
    "match",
    "min_alloc",
];

fn bad(what: &'static str, message: impl Into<String>) -> Refusal {
    refuse(StatusCode::BAD_REQUEST, what, message)
}

/// The body as a JSON object whose values are plain words: strings or numbers, with none of
/// the script format's separators in them.
fn fields(body: &[u8], allowed: &[&str]) -> Result<Map<String, Value>, Refusal> {
    let o = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return Err(bad("invalid_message", "the body is a JSON object")),
        Err(e) => return Err(bad("bad_json", format!("not JSON: {e}"))),
    };
    for (k, v) in &o {
        if !allowed.contains(&k.as_str()) {
            return Err(bad(
                "invalid_message",
                format!("unknown key {k:?} (known: {})", allowed.join(", ")),
            ));
        }
        let ok = word(v).is_some_and(|w| {
            !w.is_empty()
                && w.len() <= 64
                && !w
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || ",#=;:".contains(c))
        });
        if !ok {
            return Err(bad(
                "invalid_message",
                format!(
                    "{k:?}: a string or number of up to 64 characters, without spaces or , # = ; :"
                ),
            ));
        }
    }
    Ok(o)
}

fn word(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn required(o: &Map<String, Value>, key: &str) -> Result<String, Refusal> {
    o.get(key)
        .and_then(word)
        .ok_or_else(|| bad("invalid_message", format!("{key:?} is required")))
}

/// Parses one definition line against the server's definitions so far: the script's
/// verdict, and the edge state with the new definition in it.
fn parse(meta: &EdgeMeta, line: &str) -> Result<(ScriptItem, EdgeMeta), String> {
    let mut script = Script::restored(
        meta.specs.clone(),
        meta.groups.clone(),
        meta.assets.clone(),
        0,
    );
    let item = script.parse_line(line).map_err(|e| e.reason)?;
    let mut next = meta.clone();
    next.take_definitions(&script);
    Ok((item, next))
}

/// Writes the edge state durably (off the async threads).
async fn write_meta(app: &App, meta: EdgeMeta) -> Result<(), Refusal> {
    let dir = app.journal.clone();
    let done = tokio::task::spawn_blocking(move || meta.write(&dir)).await;
    match done {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "io",
            format!("cannot write edge.meta: {e}"),
        )),
        Err(e) => Err(refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "io",
            e.to_string(),
        )),
    }
}

/// The answer to a listing: 201 with the events when the engine listed it, 422 with them
/// (a `rejected` one among them) when it refused.
fn answer(app: &App, seq: u64, listed: bool, events: &[ringex_engine::Event]) -> Response {
    let events: Vec<Value> = events.iter().filter_map(|e| event_json(app, e)).collect();
    let code = if listed {
        StatusCode::CREATED
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    (code, axum::Json(json!({"seq": seq, "events": events}))).into_response()
}

/// `GET /v1/admin/assets`: every asset with its scale, in id order.
pub async fn assets(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(r) = admin(&app, &headers) {
        return r.into_response();
    }
    let v: Vec<Value> = app
        .specs
        .assets()
        .into_iter()
        .map(|a| json!({"asset": a.name, "scale": a.scale}))
        .collect();
    axum::Json(v).into_response()
}

/// `POST /v1/admin/assets` `{"asset", "scale"}`.
pub async fn add_asset(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = admin(&app, &headers) {
        return r.into_response();
    }
    let o = match fields(&body, &["asset", "scale"]) {
        Ok(o) => o,
        Err(r) => return r.into_response(),
    };
    let (name, scale) = match (required(&o, "asset"), required(&o, "scale")) {
        (Ok(n), Ok(s)) => (n, s),
        (Err(r), _) | (_, Err(r)) => return r.into_response(),
    };
    let mut edge = app.edge.lock().await;
    if app.specs.asset_by_name(&name).is_some() {
        return error(
            StatusCode::CONFLICT,
            "exists",
            format!("asset {name} is already listed"),
        );
    }
    let (item, next) = match parse(&edge, &format!("asset,{name},{scale}")) {
        Ok(x) => x,
        Err(reason) => return bad("invalid_asset", reason).into_response(),
    };
    let ScriptItem::Instrument(cmd, _) = item else {
        return bad("invalid_asset", "not an asset").into_response();
    };
    let CommandKind::AddAsset { asset, scale } = cmd.kind else {
        return bad("invalid_asset", "not an asset").into_response();
    };
    if let Err(r) = write_meta(&app, next.clone()).await {
        return r.into_response();
    }
    let (seq, events) = match sequence(&app, &[cmd.kind]).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let listed = events
        .iter()
        .any(|e| matches!(e.kind, EventKind::AssetAdded { asset: a, .. } if a == asset));
    if listed {
        app.specs.add_asset(asset, AssetSpec { name, scale });
        *edge = next;
    }
    answer(&app, seq, listed, &events)
}

/// `POST /v1/admin/instruments` `{"symbol", "tick_size", "lot_size"}` and, as in a script's
/// `instrument` line, `base`, `quote`, `maker_fee`, `taker_fee`, `max_qty`, `band`,
/// `match`, `min_alloc`.
pub async fn add_instrument(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = admin(&app, &headers) {
        return r.into_response();
    }
    let mut allowed = vec!["symbol", "tick_size", "lot_size"];
    allowed.extend(INSTRUMENT_OPTIONS);
    let o = match fields(&body, &allowed) {
        Ok(o) => o,
        Err(r) => return r.into_response(),
    };
    let mut line = String::from("instrument");
    for key in ["symbol", "tick_size", "lot_size"] {
        match required(&o, key) {
            Ok(w) => {
                line.push(',');
                line.push_str(&w);
            }
            Err(r) => return r.into_response(),
        }
    }
    for key in INSTRUMENT_OPTIONS {
        if let Some(w) = o.get(key).and_then(word) {
            line.push_str(&format!(",{key}={w}"));
        }
    }
    let symbol = required(&o, "symbol").unwrap_or_default();
    let mut edge = app.edge.lock().await;
    if app.specs.by_symbol(&symbol).is_some() {
        return error(
            StatusCode::CONFLICT,
            "exists",
            format!("instrument {symbol} is already listed"),
        );
    }
    let (item, next) = match parse(&edge, &line) {
        Ok(x) => x,
        Err(reason) => return bad("invalid_instrument", reason).into_response(),
    };
    let ScriptItem::Instrument(add, policy) = item else {
        return bad("invalid_instrument", "not an instrument").into_response();
    };
    let CommandKind::AddInstrument(def) = add.kind else {
        return bad("invalid_instrument", "not an instrument").into_response();
    };
    let Some(spec) = next.specs.iter().find(|s| s.id == def.id).cloned() else {
        return bad("invalid_instrument", "not an instrument").into_response();
    };
    if let Err(r) = write_meta(&app, next.clone()).await {
        return r.into_response();
    }
    // Consumers that see the listing before this call ends (the history store) name it.
    app.specs.name_ahead(def.id, &spec.symbol);
    let mut kinds = vec![add.kind];
    kinds.extend(policy.map(|p| p.kind));
    let (seq, events) = match sequence(&app, &kinds).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let listed = events
        .iter()
        .any(|e| matches!(e.kind, EventKind::InstrumentAdded(d) if d.id == def.id));
    if listed {
        let policy = events.iter().find_map(|e| match e.kind {
            EventKind::MatchPolicySet {
                policy, min_alloc, ..
            } => Some((policy, min_alloc)),
            _ => None,
        });
        app.specs.add_instrument(spec, policy);
        *edge = next;
    }
    answer(&app, seq, listed, &events)
}
