//! Drop copy (`/v1/dropcopy`): every execution report of an account, from any session or
//! REST call, live or replayed from the journal with no gap and no duplicate.
#![cfg(feature = "serve")]

#[path = "common/ws.rs"]
mod ws;

use serde_json::{json, Value};
use ws::{demo_server, post, Client};

/// (type, seq, order_id) of a report.
fn key(v: &Value) -> (String, u64, u64) {
    (
        v["type"].as_str().unwrap_or("?").to_string(),
        v["seq"].as_u64().unwrap_or(0),
        v["order_id"].as_u64().unwrap_or(0),
    )
}

fn drop_copy(addr: std::net::SocketAddr, key: &str, after: Option<u64>) -> Client {
    let mut c = Client::connect(addr, "/v1/dropcopy");
    c.send(json!({"type": "auth", "key": key}));
    assert_eq!(c.recv()["type"], "authenticated");
    match after {
        Some(a) => c.send(json!({"type": "resume", "after": a})),
        None => c.send(json!({"type": "resume"})),
    }
    assert_eq!(c.recv()["type"], "resumed");
    c
}

#[test]
fn drop_copy_sees_every_report_of_the_account_live_and_replayed() {
    let (server, _dir) = demo_server(|_| {});
    let addr = server.addr;
    let mut live = drop_copy(addr, "alice", None);
    // Alice trades from a WebSocket session and over REST; bob takes both.
    let mut alice = Client::authed(addr, "alice", false);
    alice.send(json!({"type": "new", "cl_ord_id": "w1", "symbol": "DEMO-A", "side": "buy", "price": "100", "qty": "2"}));
    let ws_id = alice.recv()["order_id"].as_u64().unwrap();
    let rest_id = post(
        addr,
        "/v1/orders",
        Some("alice"),
        &json!({"symbol": "DEMO-A", "side": "buy", "price": "99", "qty": "3"}),
    )
    .json()["order_id"]
        .as_u64()
        .unwrap();
    post(
        addr,
        "/v1/orders",
        Some("bob"),
        &json!({"symbol": "DEMO-A", "side": "sell", "price": "99", "qty": "4"}),
    );
    // A reject of alice's is hers too; bob's own reports are not.
    post(
        addr,
        "/v1/orders",
        Some("alice"),
        &json!({"symbol": "DEMO-A", "side": "buy", "price": "1.001", "qty": "1"}),
    );
    let got: Vec<Value> = live.recv_n(5);
    let keys: Vec<(String, u64, u64)> = got.iter().map(key).collect();
    let types: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
    assert_eq!(
        types,
        ["accepted", "accepted", "fill", "fill", "rejected"],
        "{got:?}"
    );
    assert_eq!((keys[0].2, keys[1].2), (ws_id, rest_id));
    // The maker fills, with the orders' sides and what is left.
    assert_eq!(
        (
            got[2]["order_id"].as_u64(),
            got[2]["liquidity"].as_str(),
            got[2]["leaves_qty"].as_str(),
            got[2]["side"].as_str()
        ),
        (Some(ws_id), Some("maker"), Some("0"), Some("buy"))
    );
    assert_eq!(
        (
            got[3]["order_id"].as_u64(),
            got[3]["qty"].as_str(),
            got[3]["leaves_qty"].as_str()
        ),
        (Some(rest_id), Some("2"), Some("1"))
    );
    assert_eq!(got[4]["code"], "off_tick");
    assert!(
        keys.windows(2).all(|w| w[0].1 < w[1].1),
        "in sequence: {keys:?}"
    );

    // Replayed from the journal from the start: the same reports, then live, no duplicate.
    let mut from0 = drop_copy(addr, "alice", Some(0));
    let replay: Vec<(String, u64, u64)> = from0.recv_n(5).iter().map(key).collect();
    assert_eq!(replay, keys);
    // From the middle: only what came after.
    let mid = keys[1].1;
    let mut from_mid = drop_copy(addr, "alice", Some(mid));
    let tail: Vec<(String, u64, u64)> = from_mid.recv_n(3).iter().map(key).collect();
    assert_eq!(tail, keys[2..]);
    // A new report reaches all three once.
    let c = ws::http(
        addr,
        "DELETE",
        &format!("/v1/orders/{rest_id}?symbol=DEMO-A"),
        Some("alice"),
        &[],
        b"",
    );
    assert_eq!(c.status, 200);
    for d in [&mut live, &mut from0, &mut from_mid] {
        let m = d.recv();
        assert_eq!(
            (
                m["type"].as_str(),
                m["order_id"].as_u64(),
                m["reason"].as_str()
            ),
            (Some("cancelled"), Some(rest_id), Some("user"))
        );
    }
    // Nothing else was queued (no duplicate of the replayed part): the next message is the
    // answer to one sent now.
    for d in [&mut live, &mut from0, &mut from_mid] {
        d.send(json!({"type": "ping"}));
        assert_eq!(d.recv()["code"], "unknown_type");
    }
    live.close();
    from0.close();
    from_mid.close();
    alice.close();
    server.stop().unwrap();
}

#[test]
fn drop_copy_refuses_bad_keys_and_resumes_past_the_end() {
    let (server, _dir) = demo_server(|o| o.keys = vec!["root:admin".into()]);
    let addr = server.addr;
    let mut c = Client::connect(addr, "/v1/dropcopy");
    c.send(json!({"type": "resume"}));
    assert_eq!(c.recv()["code"], "not_authenticated");
    c.send(json!({"type": "auth", "key": "nobody"}));
    assert_eq!(c.recv()["code"], "bad_key");
    c.send(json!({"type": "auth", "key": "root"}));
    assert_eq!(c.recv()["code"], "forbidden");
    c.send_text("{nope");
    assert_eq!(c.recv()["code"], "bad_json");
    c.send(json!({"type": "auth", "key": "alice"}));
    assert_eq!(c.recv()["type"], "authenticated");
    c.send(json!({"type": "resume", "after": 1_000_000}));
    let e = c.recv();
    assert_eq!(e["code"], "invalid_message", "{e}");
    assert!(e["message"]
        .as_str()
        .unwrap()
        .contains("past the journal's end"));
    c.send(json!({"type": "resume", "after": "x"}));
    assert_eq!(c.recv()["code"], "invalid_message");
    // Still usable: a resume within the journal starts the stream.
    c.send(json!({"type": "resume", "after": 0}));
    assert_eq!(c.recv()["type"], "resumed");
    c.send(json!({"type": "resume"}));
    assert_eq!(c.recv()["code"], "invalid_message", "once started");
    c.close();
    server.stop().unwrap();
}
