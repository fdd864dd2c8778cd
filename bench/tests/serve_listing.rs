//! Listing while the server runs: `POST /v1/admin/assets` and `/v1/admin/instruments`
//! (admin keys only). A listed funded instrument trades at once with exact balances, keeps
//! its match policy, is named in the history store, and comes back after a restart; a
//! definition that never reached the journal is forgotten on restart; bad bodies and
//! trader keys are refused before anything is sequenced.
#![cfg(feature = "serve")]

#[path = "common/ws.rs"]
mod ws;

use ringex_consumers::history::HistoryQuery;
use serde_json::{json, Value};
use ws::{admin_post, admin_tune, demo_server_in, eventually, get_json, http, post, HttpResponse};

fn order(symbol: &str, side: &str, price: &str, qty: &str) -> Value {
    json!({"symbol": symbol, "side": side, "price": price, "qty": qty})
}

fn types(r: &HttpResponse) -> Vec<String> {
    r.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?").to_string())
        .collect()
}

fn error_of(r: &HttpResponse) -> (u16, String) {
    (
        r.status,
        r.json()["error"].as_str().unwrap_or("").to_string(),
    )
}

fn symbol_row(addr: std::net::SocketAddr, symbol: &str) -> Option<Value> {
    get_json(addr, "/v1/symbols", None)
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["symbol"] == symbol)
        .cloned()
}

fn balances(addr: std::net::SocketAddr, key: &str) -> Value {
    get_json(addr, "/v1/balances", Some(key))["balances"].clone()
}

#[test]
fn instruments_and_assets_listed_while_running_trade_at_once_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (tune, db) = admin_tune(dir.path(), "asset,USD,2\ninstrument,PLAIN,0.01,1\n");
    let server = demo_server_in(dir.path(), &tune);
    let addr = server.addr;
    let admin = |path: &str, body: Value| admin_post(addr, path, body);
    let eth_usd = json!({"symbol": "ETH-USD", "tick_size": "1", "lot_size": "0.01",
        "base": "ETH", "quote": "USD", "taker_fee": "0.001", "match": "pro_rata",
        "min_alloc": "0.02"});

    // Roles: trader keys get 403, no key 401; nothing is listed.
    for path in ["assets", "instruments"] {
        let r = post(
            addr,
            &format!("/v1/admin/{path}"),
            Some("alice"),
            &json!({"asset": "ETH", "scale": 8}),
        );
        assert_eq!(error_of(&r), (403, "forbidden".into()), "{path}");
        let r = post(addr, &format!("/v1/admin/{path}"), None, &json!({}));
        assert_eq!(r.status, 401);
    }

    // A market-data client of every symbol, connected before the listing.
    let mut feed = ws::Client::connect(addr, "/v1/md");
    assert_eq!(feed.recv()["symbol"], "PLAIN");

    // An instrument on an asset not listed yet is refused by the script's rules.
    let r = admin("instruments", eth_usd.clone());
    assert_eq!(
        error_of(&r),
        (400, "invalid_instrument".into()),
        "{}",
        r.body
    );

    // The asset, then the instrument; each answers with the engine's events.
    let r = admin("assets", json!({"asset": "ETH", "scale": 8}));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.json()["events"],
        json!([{"type": "asset_added", "asset": "ETH", "scale": 8}])
    );
    let r = admin("instruments", eth_usd.clone());
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(types(&r), ["instrument_added", "match_policy_set"]);
    assert_eq!(
        r.json()["events"][0],
        json!({"type": "instrument_added", "symbol": "ETH-USD", "tick_size": "1",
            "lot_size": "0.01", "base": "ETH", "quote": "USD"})
    );
    assert_eq!(
        r.json()["events"][1],
        json!({"type": "match_policy_set", "symbol": "ETH-USD", "match": "pro_rata",
            "min_alloc": "0.02"})
    );
    let row = symbol_row(addr, "ETH-USD").expect("ETH-USD in /v1/symbols");
    assert_eq!(
        (row["match"].as_str(), row["min_alloc"].as_str()),
        (Some("pro_rata"), Some("0.02"))
    );

    // Listed twice: 409, nothing sequenced.
    assert_eq!(
        error_of(&admin("assets", json!({"asset": "ETH", "scale": 8}))),
        (409, "exists".into())
    );
    assert_eq!(
        error_of(&admin("instruments", eth_usd.clone())),
        (409, "exists".into())
    );
    // Bad bodies: 400 with what is wrong.
    for (body, code) in [
        (json!({"asset": "SOL"}), "invalid_message"),
        (json!({"asset": "SOL", "scale": 19}), "invalid_asset"),
        (json!({"asset": "SOL", "scale": -1}), "invalid_asset"),
        (json!({"asset": "S O L", "scale": 2}), "invalid_message"),
        (
            json!({"asset": "SOL", "scale": 2, "colour": "red"}),
            "invalid_message",
        ),
        (json!({"asset": ["SOL"], "scale": 2}), "invalid_message"),
    ] {
        assert_eq!(error_of(&admin("assets", body.clone())).1, code, "{body}");
    }
    for (body, code) in [
        (
            json!({"symbol": "X", "tick_size": "0.01"}),
            "invalid_message",
        ),
        (
            json!({"symbol": "X,Y", "tick_size": "0.01", "lot_size": "1"}),
            "invalid_message",
        ),
        (
            json!({"symbol": "X", "tick_size": "0.01", "lot_size": "1", "base": "ETH=1"}),
            "invalid_message",
        ),
        (
            json!({"symbol": "X", "tick_size": "abc", "lot_size": "1"}),
            "invalid_instrument",
        ),
        (
            json!({"symbol": "X", "tick_size": "0", "lot_size": "1"}),
            "invalid_instrument",
        ),
        (
            json!({"symbol": "X", "tick_size": "0.01", "lot_size": "1", "match": "lifo"}),
            "invalid_instrument",
        ),
        (
            json!({"symbol": "X", "tick_size": "0.01", "lot_size": "1", "min_alloc": "2"}),
            "invalid_instrument",
        ),
        (
            json!({"symbol": "X", "tick_size": "0.01", "lot_size": "1", "base": "ETH", "quote": "ETH"}),
            "invalid_instrument",
        ),
    ] {
        assert_eq!(
            error_of(&admin("instruments", body.clone())).1,
            code,
            "{body}"
        );
    }
    assert_eq!(
        http(
            addr,
            "POST",
            "/v1/admin/assets",
            Some("root"),
            &[],
            b"{oops"
        )
        .status,
        400
    );
    assert!(symbol_row(addr, "X").is_none());

    // The new instrument trades at once, with money checked and held.
    let dep = admin(
        "deposit",
        json!({"account": 12, "asset": "ETH", "amount": "1"}),
    );
    assert_eq!(types(&dep), ["deposited"]);
    admin(
        "deposit",
        json!({"account": 11, "asset": "USD", "amount": "1000"}),
    );
    let sell = post(
        addr,
        "/v1/orders",
        Some("bob"),
        &order("ETH-USD", "sell", "2000", "0.5"),
    );
    assert_eq!(
        sell.json()["reports"][0]["type"],
        "accepted",
        "{}",
        sell.body
    );
    // The every-symbol client got the new symbol's (empty) snapshot, named, then its
    // first level.
    let got = feed.recv_until(|v| v["type"] == "level" && v["symbol"] == "ETH-USD");
    let snap = got
        .iter()
        .find(|v| v["type"] == "snapshot")
        .expect("a snapshot of the new symbol");
    assert_eq!(
        (&snap["symbol"], &snap["asks"]),
        (&json!("ETH-USD"), &json!([]))
    );
    let level = got.last().unwrap();
    assert_eq!(
        (&level["side"], &level["price"], &level["qty"]),
        (&json!("ask"), &json!("2000"), &json!("0.5"))
    );
    feed.close();
    let buy = post(
        addr,
        "/v1/orders",
        Some("alice"),
        &order("ETH-USD", "buy", "2000", "0.2"),
    );
    let reports = buy.json()["reports"].clone();
    assert_eq!(
        (reports[1]["type"].as_str(), reports[1]["qty"].as_str()),
        (Some("fill"), Some("0.2")),
        "{reports}"
    );
    // Alice paid 400 and the 0.1% taker fee (0.40); bob holds the 0.3 still offered.
    eventually("the balances after the fill", || {
        balances(addr, "alice")
            == json!([
                {"asset": "USD", "total": "599.6", "held": "0", "available": "599.6"},
                {"asset": "ETH", "total": "0.2", "held": "0", "available": "0.2"}])
            && balances(addr, "bob")
                == json!([
                    {"asset": "USD", "total": "400", "held": "0", "available": "400"},
                    {"asset": "ETH", "total": "0.8", "held": "0.3", "available": "0.5"}])
    });
    // An order on a symbol that is not listed is still rejected `unknown_symbol`.
    let r = post(
        addr,
        "/v1/orders",
        Some("alice"),
        &order("X", "buy", "1", "1"),
    );
    assert_eq!(
        r.json()["reports"][0]["code"],
        "unknown_symbol",
        "{}",
        r.body
    );

    // The history store names the new instrument (it learnt the name as it was listed).
    eventually("the trade in the history store", || {
        get_json(addr, "/v1/trades?since=0", Some("alice"))["trades"]
            .as_array()
            .is_some_and(|t| t.len() == 1 && t[0]["symbol"] == "ETH-USD")
    });
    server.stop().unwrap();
    {
        let mut s = ringex_consumers::history::sqlite::SqliteStore::open(&db).unwrap();
        assert_eq!(s.symbol_name(1).unwrap().as_deref(), Some("ETH-USD"));
        assert_eq!(s.instrument_id("ETH-USD").unwrap(), Some(1));
    }

    // Definitions written to edge.meta whose commands never reached the journal (a crash
    // between the two steps): forgotten on restart.
    let meta = dir.path().join("journal").join("edge.meta");
    let mut text = std::fs::read_to_string(&meta).unwrap();
    text.push_str("instrument,2,GHOST,0.01,1\nasset,GHOSTCOIN,2\n");
    std::fs::write(&meta, text).unwrap();

    // Restarted: the listing is back, with its policy, book and balances.
    let server = demo_server_in(dir.path(), &tune);
    let addr = server.addr;
    let admin = |path: &str, body: Value| admin_post(addr, path, body);
    let row = symbol_row(addr, "ETH-USD").expect("ETH-USD after the restart");
    assert_eq!(row["match"], "pro_rata");
    assert!(symbol_row(addr, "GHOST").is_none());
    eventually("the book after the restart", || {
        get_json(addr, "/v1/book/ETH-USD", None)["asks"] == json!([["2000", "0.3"]])
    });
    eventually("the balances after the restart", || {
        balances(addr, "bob")[1]
            == json!({"asset": "ETH", "total": "0.8", "held": "0.3", "available": "0.5"})
    });
    let buy = post(
        addr,
        "/v1/orders",
        Some("alice"),
        &order("ETH-USD", "buy", "2000", "0.1"),
    );
    assert_eq!(buy.json()["reports"][1]["type"], "fill", "{}", buy.body);
    // The forgotten names are free again, and new ids follow the listed ones.
    let r = admin("assets", json!({"asset": "GHOSTCOIN", "scale": 2}));
    assert_eq!(r.status, 201, "{}", r.body);
    let r = admin(
        "instruments",
        json!({"symbol": "GHOST", "tick_size": 1, "lot_size": 1, "match": "fifo"}),
    );
    assert_eq!(types(&r), ["instrument_added"], "{}", r.body);
    let g = post(
        addr,
        "/v1/orders",
        Some("alice"),
        &order("GHOST", "buy", "3", "2"),
    );
    assert_eq!(g.json()["reports"][0]["type"], "accepted", "{}", g.body);
    server.stop().unwrap();
}
