//! The admin API (`/v1/admin/…`, admin keys only): halt and resume, block and unblock,
//! deposit and withdraw, an account's mass cancel, balances; every action journaled, so a
//! restarted server comes back with it; trader keys refused.
#![cfg(feature = "serve")]

#[path = "common/ws.rs"]
mod ws;

use serde_json::{json, Value};
use ws::{admin_post, admin_tune, demo_server_in, get_json, http, post};

fn order(symbol: &str, side: &str, price: &str, qty: &str) -> Value {
    json!({"symbol": symbol, "side": side, "price": price, "qty": qty})
}

/// The events' `type`s of an admin answer (status 200 asserted).
fn events(r: &ws::HttpResponse) -> Vec<String> {
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?").to_string())
        .collect()
}

fn code_of(r: &ws::HttpResponse) -> String {
    r.json()["reports"][0]["code"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn admin_actions_are_sequenced_journaled_and_for_admins_only() {
    let dir = tempfile::tempdir().unwrap();
    let (tune, _) = admin_tune(
        dir.path(),
        "asset,USD,2\nasset,BTC,8\ninstrument,BTC-USD,1,0.01,base=BTC,quote=USD\ninstrument,PLAIN,0.01,1\n",
    );
    let server = demo_server_in(dir.path(), &tune);
    let addr = server.addr;
    let admin = |path: &str, body: Value| admin_post(addr, path, body);

    // Roles: a trader key never reaches the admin API; no key or an unknown one is 401.
    for path in [
        "halt",
        "resume",
        "block",
        "unblock",
        "deposit",
        "withdraw",
        "mass_cancel",
    ] {
        let r = post(
            addr,
            &format!("/v1/admin/{path}"),
            Some("alice"),
            &json!({"symbol": "PLAIN", "account": 11}),
        );
        assert_eq!(
            (r.status, r.json()["error"].as_str()),
            (403, Some("forbidden")),
            "{path}"
        );
        assert_eq!(
            post(addr, &format!("/v1/admin/{path}"), None, &json!({})).status,
            401
        );
        assert_eq!(
            post(addr, &format!("/v1/admin/{path}"), Some("x"), &json!({})).status,
            401
        );
    }
    assert_eq!(
        http(
            addr,
            "GET",
            "/v1/admin/balances?account=11",
            Some("bob"),
            &[],
            b""
        )
        .status,
        403
    );

    // Money: deposits, a withdrawal, one past the balance refused by the engine.
    assert_eq!(
        events(&admin(
            "deposit",
            json!({"account": 11, "asset": "USD", "amount": "1000.50"})
        )),
        ["deposited"]
    );
    assert_eq!(
        events(&admin(
            "deposit",
            json!({"account": 12, "asset": "BTC", "amount": 2})
        )),
        ["deposited"]
    );
    let w = admin(
        "withdraw",
        json!({"account": 11, "asset": "USD", "amount": "0.50"}),
    );
    assert_eq!(events(&w), ["withdrawn"]);
    assert_eq!(w.json()["events"][0]["amount"], "0.5");
    let w = admin(
        "withdraw",
        json!({"account": 11, "asset": "USD", "amount": "5000"}),
    );
    assert_eq!(events(&w), ["rejected"]);
    assert_eq!(w.json()["events"][0]["code"], "insufficient_funds");
    // (The balances publisher runs beside the router: wait for it.)
    ws::eventually("the balances", || {
        get_json_admin(addr, "/v1/admin/balances?account=11")["balances"]
            == json!([{"asset": "USD", "total": "1000", "held": "0", "available": "1000"}])
    });

    // Halt: orders refused `halted`; resume: taken again.
    assert_eq!(
        events(&admin("halt", json!({"symbol": "PLAIN"}))),
        ["halted"]
    );
    assert_eq!(
        code_of(&post(
            addr,
            "/v1/orders",
            Some("alice"),
            &order("PLAIN", "buy", "1", "1")
        )),
        "halted"
    );
    assert_eq!(
        events(&admin("resume", json!({"symbol": "PLAIN"}))),
        ["resumed"]
    );
    let r = post(
        addr,
        "/v1/orders",
        Some("alice"),
        &order("PLAIN", "buy", "1", "1"),
    );
    assert_eq!(r.json()["reports"][0]["type"], "accepted");

    // Block: the account's resting orders go, new ones are refused `blocked`.
    post(
        addr,
        "/v1/orders",
        Some("alice"),
        &order("BTC-USD", "buy", "100", "1"),
    );
    let blk = admin("block", json!({"account": 11}));
    let t = events(&blk);
    assert_eq!(t.last().map(String::as_str), Some("blocked"), "{t:?}");
    assert_eq!(
        code_of(&post(
            addr,
            "/v1/orders",
            Some("alice"),
            &order("PLAIN", "buy", "1", "1")
        )),
        "blocked"
    );
    assert_eq!(
        events(&admin("unblock", json!({"account": 11}))),
        ["unblocked"]
    );

    // An account's orders cancelled by the admin, one symbol then all.
    for p in ["2", "3"] {
        post(
            addr,
            "/v1/orders",
            Some("bob"),
            &order("PLAIN", "sell", p, "1"),
        );
    }
    post(
        addr,
        "/v1/orders",
        Some("bob"),
        &order("BTC-USD", "sell", "200", "0.5"),
    );
    // The admin reads bob's open orders from the history store (once it has them).
    ws::eventually("bob's three orders in the store", || {
        let r = http(
            addr,
            "GET",
            "/v1/admin/orders?account=12&status=open",
            Some("root"),
            &[],
            b"",
        );
        r.status == 200 && r.json()["orders"].as_array().map_or(0, |o| o.len()) == 3
    });
    assert_eq!(
        http(
            addr,
            "GET",
            "/v1/admin/orders?account=12&status=open",
            Some("bob"),
            &[],
            b""
        )
        .status,
        403
    );
    assert_eq!(
        http(
            addr,
            "GET",
            "/v1/admin/orders?status=open",
            Some("root"),
            &[],
            b""
        )
        .status,
        400
    );
    let mc = admin("mass_cancel", json!({"account": 12, "symbol": "PLAIN"}));
    assert_eq!(events(&mc), ["cancelled", "cancelled"]);
    assert!(mc.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["account"] == 12 && e["reason"] == "mass_cancel"));
    assert_eq!(
        events(&admin("mass_cancel", json!({"account": 12}))),
        ["cancelled"]
    );

    // Bad input: refused before anything is sequenced.
    assert_eq!(admin("halt", json!({"symbol": "NOPE"})).status, 404);
    assert_eq!(admin("halt", json!({})).status, 400);
    assert_eq!(
        http(addr, "POST", "/v1/admin/halt", Some("root"), &[], b"{oops").status,
        400
    );
    assert_eq!(admin("block", json!({"account": "eleven"})).status, 400);
    assert_eq!(admin("block", json!({"account": 0})).status, 400);
    assert_eq!(
        admin(
            "deposit",
            json!({"account": 11, "asset": "EUR", "amount": "1"})
        )
        .status,
        404
    );
    assert_eq!(
        admin(
            "deposit",
            json!({"account": 11, "asset": "USD", "amount": "0.001"})
        )
        .status,
        400
    );
    assert_eq!(
        admin(
            "deposit",
            json!({"account": 11, "asset": "USD", "amount": "-5"})
        )
        .status,
        400
    );
    assert_eq!(
        admin("deposit", json!({"account": 11, "asset": "USD"})).status,
        400
    );
    // An admin key places no orders.
    assert_eq!(
        post(
            addr,
            "/v1/orders",
            Some("root"),
            &order("PLAIN", "buy", "1", "1")
        )
        .status,
        403
    );

    // The halt is journaled: a restarted server has PLAIN halted and the balances back.
    admin("halt", json!({"symbol": "PLAIN"}));
    server.stop().unwrap();
    let server = demo_server_in(dir.path(), &tune);
    let addr = server.addr;
    assert_eq!(
        code_of(&post(
            addr,
            "/v1/orders",
            Some("alice"),
            &order("PLAIN", "buy", "1", "1")
        )),
        "halted"
    );
    ws::eventually("the balances recovered", || {
        get_json(addr, "/v1/balances", Some("alice"))["balances"][0]["total"] == "1000"
    });
    server.stop().unwrap();
}

fn get_json_admin(addr: std::net::SocketAddr, path: &str) -> Value {
    let r = http(addr, "GET", path, Some("root"), &[], b"");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}
