//! Order entry over REST (`POST /v1/orders`, `DELETE /v1/orders/{id}`, `PATCH
//! /v1/orders/{id}`, `DELETE /v1/orders?symbol=`): the same reports and reject codes as the
//! WebSocket, returned after the journal; idempotency keys; roles, bad input and limits.
#![cfg(feature = "serve")]

#[path = "common/ws.rs"]
mod ws;

use serde_json::{json, Value};
use ws::{demo_server, demo_server_in, eventually, get_json, http, post, Client};

fn order(symbol: &str, side: &str, price: &str, qty: &str) -> Value {
    json!({"symbol": symbol, "side": side, "price": price, "qty": qty})
}

/// The `type` of each report.
fn types(v: &Value) -> Vec<String> {
    v["reports"]
        .as_array()
        .unwrap_or_else(|| panic!("no reports in {v}"))
        .iter()
        .map(|r| r["type"].as_str().unwrap_or("?").to_string())
        .collect()
}

#[test]
fn rest_orders_are_placed_traded_modified_and_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let server = demo_server_in(dir.path(), |o| o.history = Some(db.clone()));
    let addr = server.addr;

    let r = post(
        addr,
        "/v1/orders",
        Some("alice"),
        &json!({
        "cl_ord_id": "a1", "symbol": "DEMO-A", "side": "buy", "price": "100.00", "qty": "5"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let a = r.json();
    let id = a["order_id"].as_u64().unwrap();
    assert_eq!(types(&a), ["accepted"]);
    assert_eq!(a["reports"][0]["order_id"], id);
    assert_eq!(a["reports"][0]["cl_ord_id"], "a1");
    assert_eq!(a["reports"][0]["price"], "100");

    // Bob's sell trades 2 against it: his response carries his accept and his fill.
    let b = post(
        addr,
        "/v1/orders",
        Some("bob"),
        &order("DEMO-A", "sell", "99", "2"),
    )
    .json();
    assert_eq!(types(&b), ["accepted", "fill"]);
    assert_eq!(
        (
            &b["reports"][1]["liquidity"],
            &b["reports"][1]["price"],
            &b["reports"][1]["qty"],
            &b["reports"][1]["leaves_qty"]
        ),
        (&json!("taker"), &json!("100"), &json!("2"), &json!("0"))
    );
    // Alice's resting order's later fill is in its status (a REST response carries the
    // reports of its own command only).
    eventually("the maker fill in the order's status", || {
        let r = http(
            addr,
            "GET",
            &format!("/v1/orders/{id}"),
            Some("alice"),
            &[],
            b"",
        );
        r.status == 200 && r.json()["filled_qty"] == "2"
    });

    // Modify with the symbol given; then cancel with none (the history store knows it).
    let m = http(
        addr,
        "PATCH",
        &format!("/v1/orders/{id}"),
        Some("alice"),
        &[],
        json!({"price": "100.50", "qty": "4", "symbol": "DEMO-A"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(m.status, 200, "{}", m.body);
    let m = m.json();
    assert_eq!(types(&m), ["modified"]);
    assert_eq!(
        (&m["reports"][0]["price"], &m["reports"][0]["qty"]),
        (&json!("100.5"), &json!("4"))
    );
    eventually("the history store has the order", || {
        http(
            addr,
            "GET",
            &format!("/v1/orders/{id}"),
            Some("alice"),
            &[],
            b"",
        )
        .status
            == 200
    });
    let c = http(
        addr,
        "DELETE",
        &format!("/v1/orders/{id}"),
        Some("alice"),
        &[],
        b"",
    );
    assert_eq!(c.status, 200, "{}", c.body);
    let c = c.json();
    assert_eq!(types(&c), ["cancelled"]);
    assert_eq!(
        (
            &c["order_id"],
            &c["reports"][0]["reason"],
            &c["reports"][0]["qty"]
        ),
        (&json!(id), &json!("user"), &json!("4"))
    );

    // Reject codes are reports too (200: the command was sequenced).
    let x = post(
        addr,
        "/v1/orders",
        Some("alice"),
        &order("DEMO-A", "buy", "100.001", "1"),
    )
    .json();
    assert_eq!(types(&x), ["rejected"]);
    assert_eq!(x["reports"][0]["code"], "off_tick");
    let x = post(
        addr,
        "/v1/orders",
        Some("alice"),
        &order("NOPE", "buy", "1", "1"),
    )
    .json();
    assert_eq!(x["reports"][0]["code"], "unknown_symbol");
    // Bob's order is not alice's to cancel.
    let bob = post(
        addr,
        "/v1/orders",
        Some("bob"),
        &order("DEMO-B", "sell", "50", "1"),
    )
    .json();
    let bid = bob["order_id"].as_u64().unwrap();
    let x = http(
        addr,
        "DELETE",
        &format!("/v1/orders/{bid}?symbol=DEMO-B"),
        Some("alice"),
        &[],
        b"",
    )
    .json();
    assert_eq!(x["reports"][0]["code"], "not_owner", "{x}");
    // Without a symbol, the history store finds no order of alice's with that id.
    eventually("the history store has bob's order", || {
        http(
            addr,
            "GET",
            &format!("/v1/orders/{bid}"),
            Some("bob"),
            &[],
            b"",
        )
        .status
            == 200
    });
    assert_eq!(
        http(
            addr,
            "DELETE",
            &format!("/v1/orders/{bid}"),
            Some("alice"),
            &[],
            b""
        )
        .status,
        404
    );

    // Mass cancel: every open order of the account on the symbol, each reported.
    for p in ["90", "91", "92"] {
        assert_eq!(
            types(
                &post(
                    addr,
                    "/v1/orders",
                    Some("alice"),
                    &order("DEMO-A", "buy", p, "1")
                )
                .json()
            ),
            ["accepted"]
        );
    }
    post(
        addr,
        "/v1/orders",
        Some("alice"),
        &order("DEMO-B", "buy", "10", "1"),
    );
    let mc = http(
        addr,
        "DELETE",
        "/v1/orders?symbol=DEMO-A",
        Some("alice"),
        &[],
        b"",
    )
    .json();
    assert_eq!(types(&mc), ["cancelled", "cancelled", "cancelled"], "{mc}");
    assert!(mc["reports"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["reason"] == "mass_cancel"));
    eventually("the book empty", || {
        get_json(addr, "/v1/book/DEMO-A", None)["bids"] == json!([])
    });
    let mc = http(addr, "DELETE", "/v1/orders", Some("alice"), &[], b"").json();
    assert_eq!(types(&mc), ["cancelled"], "the DEMO-B order");
    server.stop().unwrap();
}

#[test]
fn idempotency_keys_answer_a_retry_with_the_same_order() {
    let (server, _dir) = demo_server(|_| {});
    let addr = server.addr;
    let body = order("DEMO-A", "buy", "10", "3");
    let send = |key: &str, body: &Value| {
        http(
            addr,
            "POST",
            "/v1/orders",
            Some("alice"),
            &[("Idempotency-Key", key)],
            body.to_string().as_bytes(),
        )
    };
    let first = send("k-1", &body);
    assert_eq!(first.status, 200);
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = send("k-1", &body);
    assert_eq!(again.status, 200);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        again.json(),
        first.json(),
        "the same answer, the same order"
    );
    // One order rests, not two (the feed runs beside the router: wait for it).
    eventually("the book shows the order", || {
        get_json(addr, "/v1/book/DEMO-A", None)["bids"] != json!([])
    });
    let book = get_json(addr, "/v1/book/DEMO-A", None);
    assert_eq!(book["bids"], json!([["10", "3"]]), "{book}");
    // The same key with another body is refused, and places nothing.
    let other = send("k-1", &order("DEMO-A", "buy", "11", "3"));
    assert_eq!(other.status, 422, "{}", other.body);
    assert_eq!(other.json()["error"], "idempotency_key_reused");
    // Another key is another order; keys are per API key (bob's k-1 is his own).
    assert_ne!(
        send("k-2", &body).json()["order_id"],
        first.json()["order_id"]
    );
    let bob = http(
        addr,
        "POST",
        "/v1/orders",
        Some("bob"),
        &[("Idempotency-Key", "k-1")],
        body.to_string().as_bytes(),
    );
    assert_eq!(bob.status, 200);
    assert_ne!(bob.json()["order_id"], first.json()["order_id"]);
    // A cancel retried: the first answer again, not `unknown_order`.
    let id = first.json()["order_id"].as_u64().unwrap();
    let path = format!("/v1/orders/{id}?symbol=DEMO-A");
    let c1 = http(
        addr,
        "DELETE",
        &path,
        Some("alice"),
        &[("Idempotency-Key", "c-1")],
        b"",
    );
    let c2 = http(
        addr,
        "DELETE",
        &path,
        Some("alice"),
        &[("Idempotency-Key", "c-1")],
        b"",
    );
    assert_eq!(types(&c1.json()), ["cancelled"]);
    assert_eq!(c2.json(), c1.json());
    let long = "x".repeat(200);
    assert_eq!(send(&long, &body).status, 400);
    server.stop().unwrap();
}

#[test]
fn rest_refuses_bad_keys_roles_bodies_and_floods() {
    let (server, _dir) = demo_server(|o| {
        o.keys = vec!["root:admin".into()];
        o.max_msgs_per_sec = 20;
        o.max_frame = 2048;
    });
    let addr = server.addr;
    let body = order("DEMO-A", "buy", "10", "1");
    assert_eq!(post(addr, "/v1/orders", None, &body).status, 401);
    assert_eq!(post(addr, "/v1/orders", Some("nobody"), &body).status, 401);
    // An admin key places no orders, over REST or WebSocket.
    let r = post(addr, "/v1/orders", Some("root"), &body);
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (403, Some("forbidden"))
    );
    assert_eq!(
        http(addr, "DELETE", "/v1/orders", Some("root"), &[], b"").status,
        403
    );
    let mut ws = Client::orders(addr);
    ws.send(json!({"type": "auth", "key": "root"}));
    assert_eq!(
        ws.recv()["code"],
        "forbidden",
        "the WebSocket's own error message"
    );
    ws.close();
    // Malformed and incomplete bodies: 400 with the WebSocket's error codes, nothing sequenced.
    let r = http(addr, "POST", "/v1/orders", Some("alice"), &[], b"{not json");
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("bad_json"))
    );
    let r = http(addr, "POST", "/v1/orders", Some("alice"), &[], b"[1,2]");
    assert_eq!(r.status, 400);
    let r = post(
        addr,
        "/v1/orders",
        Some("alice"),
        &json!({"symbol": "DEMO-A", "side": "buy"}),
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("invalid_message")),
        "{}",
        r.body
    );
    let r = post(
        addr,
        "/v1/orders",
        Some("alice"),
        &json!({"symbol": "DEMO-A", "side": "up", "price": "1", "qty": "1"}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let r = post(
        addr,
        "/v1/orders",
        Some("alice"),
        &json!({"symbol": "DEMO-A", "side": "buy", "price": "x", "qty": "1"}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    // Another account named in the body.
    let mut other = body.clone();
    other["account"] = json!(12);
    let r = post(addr, "/v1/orders", Some("alice"), &other);
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (403, Some("wrong_account"))
    );
    // A body over the frame limit.
    let mut big = body.clone();
    big["cl_ord_id"] = json!("y".repeat(4000));
    assert_eq!(post(addr, "/v1/orders", Some("alice"), &big).status, 413);
    // A modify without a price; a cancel of an order with no symbol and no history store.
    let r = http(
        addr,
        "PATCH",
        "/v1/orders/5",
        Some("alice"),
        &[],
        br#"{"qty":"1","symbol":"DEMO-A"}"#,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        http(addr, "DELETE", "/v1/orders/5", Some("alice"), &[], b"").status,
        400
    );
    assert_eq!(
        http(
            addr,
            "DELETE",
            "/v1/orders/notanumber?symbol=DEMO-A",
            Some("alice"),
            &[],
            b""
        )
        .status,
        400
    );
    // None of it reached the book.
    assert_eq!(get_json(addr, "/v1/book/DEMO-A", None)["bids"], json!([]));
    // A flood past the key's rate: refused with 429, the rest still taken.
    let codes: Vec<u16> = (0..60)
        .map(|_| {
            post(
                addr,
                "/v1/orders",
                Some("bob"),
                &order("DEMO-B", "sell", "99", "1"),
            )
            .status
        })
        .collect();
    assert!(codes.contains(&429), "{codes:?}");
    assert!(codes.contains(&200));
    assert!(codes.iter().all(|c| *c == 200 || *c == 429), "{codes:?}");
    server.stop().unwrap();
}

#[test]
fn open_orders_and_trades_come_from_the_history_store_paged_and_own_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let server = demo_server_in(dir.path(), |o| o.history = Some(db.clone()));
    let addr = server.addr;
    // Alice rests three bids; bob sells into two of them, one fill each.
    let mut ids = Vec::new();
    for p in ["100", "99", "98"] {
        ids.push(
            post(
                addr,
                "/v1/orders",
                Some("alice"),
                &order("DEMO-A", "buy", p, "2"),
            )
            .json()["order_id"]
                .as_u64()
                .unwrap(),
        );
    }
    post(
        addr,
        "/v1/orders",
        Some("alice"),
        &order("DEMO-B", "buy", "5", "1"),
    );
    let b = post(
        addr,
        "/v1/orders",
        Some("bob"),
        &order("DEMO-A", "sell", "99", "4"),
    )
    .json();
    assert_eq!(types(&b), ["accepted", "fill", "fill"]);
    let bob_id = b["order_id"].as_u64().unwrap();
    let get = |path: &str, key: &str| http(addr, "GET", path, Some(key), &[], b"");
    eventually("the store caught up", || {
        let r = get("/v1/trades?since=0", "alice");
        r.status == 200 && r.json()["trades"].as_array().map_or(0, |t| t.len()) == 2
    });
    // Open orders: alice's, in time priority; one symbol, or all.
    let o = get("/v1/orders?status=open&symbol=DEMO-A", "alice").json();
    let open: Vec<_> = o["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["order_id"].as_u64().unwrap(),
                x["open_qty"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(open, [(ids[2], "2".to_string())], "{o}");
    assert_eq!(
        get("/v1/orders?status=open", "alice").json()["orders"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        get("/v1/orders?status=open", "bob").json()["orders"],
        json!([])
    );
    // Trades: alice's as maker, in sequence; bob's as taker; paged.
    let t = get("/v1/trades?since=0", "alice").json();
    let got: Vec<_> = t["trades"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["order_id"].as_u64().unwrap(),
                x["price"].as_str().unwrap().to_string(),
                x["liquidity"].as_str().unwrap().to_string(),
                x["side"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (ids[0], "100".into(), "maker".into(), "buy".into()),
            (ids[1], "99".into(), "maker".into(), "buy".into())
        ]
    );
    assert_eq!(t["next"], json!(null));
    let p1 = get("/v1/trades?since=0&limit=1", "bob").json();
    assert_eq!(p1["trades"].as_array().unwrap().len(), 1);
    assert_eq!(
        (
            p1["trades"][0]["order_id"].as_u64(),
            p1["trades"][0]["liquidity"].as_str()
        ),
        (Some(bob_id), Some("taker"))
    );
    let next = p1["next"].as_u64().expect("another page");
    let p2 = get(&format!("/v1/trades?since={next}&limit=1"), "bob").json();
    assert_eq!(
        (p2["trades"][0]["price"].as_str(), &p2["next"]),
        (Some("99"), &json!(null))
    );
    // Past the end: empty, no next page.
    let end = get("/v1/trades?since=1000000", "bob").json();
    assert_eq!(
        (end["trades"].clone(), end["next"].clone()),
        (json!([]), json!(null))
    );
    // Refusals.
    assert_eq!(get("/v1/trades?since=x", "bob").status, 400);
    assert_eq!(get("/v1/trades?limit=0", "bob").status, 400);
    assert_eq!(get("/v1/trades?limit=100000", "bob").status, 400);
    assert_eq!(get("/v1/orders?status=closed", "bob").status, 400);
    assert_eq!(get("/v1/orders?status=open&symbol=NOPE", "bob").status, 404);
    assert_eq!(http(addr, "GET", "/v1/trades", None, &[], b"").status, 401);
    server.stop().unwrap();
    // Without a history store: 404 `no_history`.
    let (server, _d) = demo_server(|_| {});
    let r = http(server.addr, "GET", "/v1/trades", Some("alice"), &[], b"");
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (404, Some("no_history"))
    );
    server.stop().unwrap();
}
