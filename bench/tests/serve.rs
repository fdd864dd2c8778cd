//! `ringex serve` end to end over loopback: order entry and execution reports, bad input on
//! the wire, rate limits, cancel-on-disconnect, market data, REST, metrics and restart.
#![cfg(feature = "serve")]

#[path = "common/ws.rs"]
mod ws;

use ringex_engine::{InstrumentId, OrderId, Price, Qty, Side};
use serde_json::json;
use ws::{demo_server, demo_server_in, eventually, get_json, http_get, Client, Got};

fn new_order(cl: &str, symbol: &str, side: &str, price: &str, qty: &str) -> serde_json::Value {
    json!({"type": "new", "cl_ord_id": cl, "symbol": symbol, "side": side, "price": price, "qty": qty})
}

#[test]
fn execution_reports_reach_both_sides_in_sequence() {
    let (server, _dir) = demo_server(|_| {});
    let addr = server.addr;
    let mut alice = Client::authed(addr, "alice", false);
    let mut bob = Client::authed(addr, "bob", false);

    alice.send(new_order("a1", "DEMO-A", "sell", "100.00", "5"));
    let a = alice.recv();
    // The demo setup made two events (the two instruments): this is event 3.
    assert_eq!(
        a,
        json!({"type": "accepted", "seq": 3, "order_id": 1, "cl_ord_id": "a1", "symbol": "DEMO-A",
               "side": "sell", "order_type": "limit", "tif": "gtc", "price": "100", "qty": "5"})
    );
    bob.send(new_order("b1", "DEMO-A", "buy", "100.5", "3"));
    let b = bob.recv_n(2);
    assert_eq!(b[0]["type"], "accepted");
    assert_eq!(
        (b[0]["seq"].as_u64(), b[0]["order_id"].as_u64()),
        (Some(4), Some(2))
    );
    assert_eq!(
        b[1],
        json!({"type": "fill", "seq": 5, "order_id": 2, "cl_ord_id": "b1", "symbol": "DEMO-A",
               "side": "buy", "liquidity": "taker", "price": "100", "qty": "3", "leaves_qty": "0"})
    );
    assert_eq!(
        alice.recv(),
        json!({"type": "fill", "seq": 5, "order_id": 1, "cl_ord_id": "a1", "symbol": "DEMO-A",
               "side": "sell", "liquidity": "maker", "price": "100", "qty": "3", "leaves_qty": "2"})
    );

    // Modify (loses priority: new price) and cancel, with request ids echoed.
    alice.send(json!({"type": "modify", "order_id": 1, "price": "101", "qty": "1", "req_id": 7}));
    assert_eq!(
        alice.recv(),
        json!({"type": "modified", "seq": 6, "order_id": 1, "cl_ord_id": "a1", "symbol": "DEMO-A",
               "price": "101", "qty": "1", "kept_priority": false, "req_id": 7})
    );
    // Bob cannot touch Alice's order: the engine refuses it (not_owner) and Alice hears
    // nothing of it.
    bob.send(json!({"type": "cancel", "order_id": 1, "symbol": "DEMO-A", "req_id": 9}));
    assert_eq!(
        bob.recv(),
        json!({"type": "rejected", "seq": 7, "request": "cancel", "code": "not_owner",
               "order_id": 1, "symbol": "DEMO-A", "req_id": 9})
    );
    // Nor act for her account by naming it.
    bob.send(json!({"type": "mass_cancel", "account": 11, "req_id": 10}));
    let e = bob.recv();
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str(), e["req_id"].as_u64()),
        (Some("error"), Some("wrong_account"), Some(10))
    );
    alice.send(json!({"type": "cancel", "order_id": 1, "req_id": 8}));
    assert_eq!(
        alice.recv(),
        json!({"type": "cancelled", "seq": 8, "order_id": 1, "cl_ord_id": "a1", "symbol": "DEMO-A",
               "qty": "1", "reason": "user", "req_id": 8})
    );
    // IOC: accepted, partly filled, the rest cancelled; a market order with no liquidity.
    bob.send(new_order("b2", "DEMO-A", "sell", "99", "4"));
    assert_eq!(bob.recv()["type"], "accepted");
    alice.send(
        json!({"type": "new", "cl_ord_id": "a2", "symbol": "DEMO-A", "side": "buy",
                      "price": "99.5", "qty": "6", "tif": "ioc"}),
    );
    let r = alice.recv_n(3);
    assert_eq!(r[0]["type"], "accepted");
    assert_eq!(
        (
            r[1]["type"].as_str(),
            r[1]["qty"].as_str(),
            r[1]["leaves_qty"].as_str()
        ),
        (Some("fill"), Some("4"), Some("2"))
    );
    assert_eq!(
        (
            r[2]["type"].as_str(),
            r[2]["qty"].as_str(),
            r[2]["reason"].as_str()
        ),
        (Some("cancelled"), Some("2"), Some("ioc"))
    );
    assert_eq!(bob.recv()["leaves_qty"], "0");
    alice.send(
        json!({"type": "new", "cl_ord_id": "a3", "symbol": "DEMO-B", "side": "buy",
                      "order_type": "market", "qty": "1"}),
    );
    let r = alice.recv_n(2);
    assert_eq!(
        (r[0]["type"].as_str(), r[0].get("price")),
        (Some("accepted"), None)
    );
    assert_eq!(
        (r[1]["type"].as_str(), r[1]["reason"].as_str()),
        (Some("cancelled"), Some("market"))
    );

    // Sequence numbers only grow on each session.
    bob.send(new_order("b3", "DEMO-B", "buy", "10", "1"));
    let last = bob.recv();
    assert!(last["seq"].as_u64().unwrap() > 12);
    alice.close();
    bob.close();
    let mut done = server.stop().unwrap();
    let m = done.matcher.take().unwrap();
    let book: Vec<_> = m
        .resting_orders(InstrumentId(1))
        .iter()
        .map(|o| (o.order_id, o.side, o.price, o.qty))
        .collect();
    assert_eq!(
        book,
        vec![(
            OrderId(last["order_id"].as_u64().unwrap()),
            Side::Buy,
            Price(1000),
            Qty(1)
        )]
    );
    assert!(m.resting_orders(InstrumentId(0)).is_empty());
}

#[test]
fn bad_input_gets_an_error_and_nothing_else_is_affected() {
    let (server, _dir) = demo_server(|o| o.max_frame = 1024);
    let addr = server.addr;
    let mut alice = Client::authed(addr, "alice", false);
    let mut c = Client::orders(addr);
    let code = |c: &mut Client| {
        let m = c.recv();
        assert_eq!(m["type"], "error", "{m}");
        m["code"].as_str().unwrap().to_string()
    };
    // Before authentication.
    c.send(new_order("x", "DEMO-A", "buy", "1", "1"));
    assert_eq!(code(&mut c), "not_authenticated");
    c.send(json!({"type": "auth", "key": "nope"}));
    assert_eq!(code(&mut c), "bad_key");
    c.send(json!({"type": "auth", "key": "bob"}));
    assert_eq!(c.recv()["account"], 12);
    c.send(json!({"type": "auth", "key": "bob"}));
    assert_eq!(code(&mut c), "invalid_message");
    // Malformed, unknown, incomplete, binary.
    c.send_text("{not json");
    assert_eq!(code(&mut c), "bad_json");
    c.send_text("[1,2,3]");
    assert_eq!(code(&mut c), "invalid_message");
    c.send(json!({"type": "teleport", "req_id": 4}));
    let m = c.recv();
    assert_eq!(
        (m["code"].as_str(), m["req_id"].as_u64()),
        (Some("unknown_type"), Some(4))
    );
    c.send(json!({"type": "new", "symbol": "DEMO-A", "side": "buy", "price": "1"}));
    assert_eq!(code(&mut c), "invalid_message");
    c.send(
        json!({"type": "new", "symbol": "DEMO-A", "side": "sideways", "price": "1", "qty": "1"}),
    );
    assert_eq!(code(&mut c), "invalid_message");
    c.send(json!({"type": "new", "symbol": "DEMO-A", "side": "buy", "price": "abc", "qty": "1"}));
    assert_eq!(code(&mut c), "invalid_message");
    c.send(json!({"type": "cancel", "order_id": 424242}));
    assert_eq!(code(&mut c), "invalid_message");
    c.ws.send(tokio_tungstenite::tungstenite::Message::Binary(
        vec![1u8, 2, 3].into(),
    ))
    .unwrap();
    assert_eq!(code(&mut c), "invalid_message");
    // Bad values are sequenced rejections with the engine's codes.
    c.send(new_order("off", "DEMO-A", "buy", "1.001", "1"));
    let m = c.recv();
    assert_eq!(
        (
            m["type"].as_str(),
            m["code"].as_str(),
            m["cl_ord_id"].as_str()
        ),
        (Some("rejected"), Some("off_tick"), Some("off"))
    );
    c.send(new_order("zero", "DEMO-A", "buy", "1", "0"));
    assert_eq!(c.recv()["code"], "zero_qty");
    c.send(new_order("nosym", "NOPE", "buy", "1", "1"));
    assert_eq!(c.recv()["code"], "unknown_symbol");
    c.send(json!({"type": "new", "symbol": "DEMO-A", "side": "buy", "qty": "1"}));
    assert_eq!(c.recv()["code"], "missing_price");
    c.send(json!({"type": "cancel", "order_id": 424242, "symbol": "DEMO-A"}));
    assert_eq!(c.recv()["code"], "unknown_order");
    // The session still works, and so does everyone else.
    c.send(json!({"type": "ping", "req_id": 1}));
    assert_eq!(c.recv(), json!({"type": "pong", "req_id": 1}));
    alice.send(new_order("ok", "DEMO-A", "buy", "1", "1"));
    assert_eq!(alice.recv()["type"], "accepted");
    // An oversized frame closes that connection with 1009; Alice is unaffected.
    c.send_text(&format!(
        "{{\"type\":\"ping\",\"pad\":\"{}\"}}",
        "x".repeat(4096)
    ));
    match c.next() {
        Got::Closed(Some((code, _))) => assert_eq!(code, 1009),
        Got::Closed(None) => {}
        Got::Msg(m) => panic!("expected a close, got {m}"),
    }
    alice.send(json!({"type": "ping"}));
    assert_eq!(alice.recv()["type"], "pong");
    // Three bad keys close the connection.
    let mut d = Client::orders(addr);
    for _ in 0..2 {
        d.send(json!({"type": "auth", "key": "guess"}));
        assert_eq!(code(&mut d), "bad_key");
    }
    d.send(json!({"type": "auth", "key": "guess"}));
    let (code, why) = d.closed().unwrap();
    assert_eq!(code, 1008, "{why}");
    alice.close();
    server.stop().unwrap();
}

#[test]
fn a_flood_is_refused_then_disconnected_without_hurting_others() {
    let (server, _dir) = demo_server(|o| o.max_msgs_per_sec = 50);
    let addr = server.addr;
    let mut alice = Client::authed(addr, "alice", false);
    let mut bob = Client::authed(addr, "bob", false);
    // Bob floods: the first second's worth is taken, then each message is refused, then he
    // is cut off.
    for i in 0..400 {
        if bob
            .ws
            .send(tokio_tungstenite::tungstenite::Message::Text(
                json!({"type": "ping", "req_id": i}).to_string().into(),
            ))
            .is_err()
        {
            break;
        }
    }
    let (mut pongs, mut limited) = (0, 0);
    let close = loop {
        match bob.next() {
            Got::Msg(m) if m["type"] == "pong" => pongs += 1,
            Got::Msg(m) if m["code"] == "rate_limited" => limited += 1,
            Got::Msg(m) => panic!("unexpected {m}"),
            Got::Closed(c) => break c,
        }
    };
    assert!((49..=52).contains(&pongs), "{pongs} pongs");
    assert!(limited >= 90, "{limited} refusals");
    let (code, why) = close.expect("a close frame");
    assert_eq!(code, 1008);
    assert!(why.contains("flooding"), "{why}");
    alice.send(new_order("a", "DEMO-A", "buy", "1", "1"));
    assert_eq!(alice.recv()["type"], "accepted");
    alice.close();
    server.stop().unwrap();
}

#[test]
fn cancel_on_disconnect_cancels_only_that_sessions_orders() {
    let (server, _dir) = demo_server(|_| {});
    let addr = server.addr;
    let mut keep = Client::authed(addr, "alice", false);
    let mut cod = Client::authed(addr, "alice", true);
    keep.send(new_order("k", "DEMO-A", "buy", "10", "1"));
    assert_eq!(keep.recv()["type"], "accepted");
    cod.send(new_order("c1", "DEMO-A", "buy", "11", "2"));
    cod.send(new_order("c2", "DEMO-B", "sell", "12", "3"));
    assert_eq!(
        cod.recv_n(2)
            .iter()
            .filter(|m| m["type"] == "accepted")
            .count(),
        2
    );
    let book = |s: &str| get_json(addr, &format!("/v1/book/{s}"), None);
    eventually("both orders in the feed", || {
        book("DEMO-A")["bids"].as_array().unwrap().len() == 2
            && book("DEMO-B")["asks"].as_array().unwrap().len() == 1
    });
    cod.close();
    eventually("the disconnected session's orders cancelled", || {
        book("DEMO-A")["bids"] == json!([["10", "1"]]) && book("DEMO-B")["asks"] == json!([])
    });
    // The other session of the account heard nothing (they were not its orders), and its
    // order stays.
    keep.send(json!({"type": "ping"}));
    assert_eq!(keep.recv()["type"], "pong");
    keep.close();
    server.stop().unwrap();
}

#[test]
fn market_data_snapshot_then_gapless_updates() {
    let (server, _dir) = demo_server(|_| {});
    let addr = server.addr;
    let mut md = Client::connect(addr, "/v1/md?symbols=DEMO-A");
    assert_eq!(
        md.recv(),
        json!({"type": "snapshot", "symbol": "DEMO-A", "seq": 0, "bids": [], "asks": [], "halted": false})
    );
    let mut alice = Client::authed(addr, "alice", false);
    let mut bob = Client::authed(addr, "bob", false);
    alice.send(new_order("a1", "DEMO-A", "sell", "100", "5"));
    alice.recv();
    // A DEMO-B order is not in this feed.
    alice.send(new_order("a2", "DEMO-B", "sell", "7", "1"));
    alice.recv();
    assert_eq!(
        md.recv(),
        json!({"type": "level", "symbol": "DEMO-A", "seq": 1, "side": "ask", "price": "100", "qty": "5"})
    );
    assert_eq!(
        md.recv(),
        json!({"type": "bbo", "symbol": "DEMO-A", "seq": 2, "bid": null, "ask": ["100", "5"]})
    );
    bob.send(new_order("b1", "DEMO-A", "buy", "100", "2"));
    bob.recv_n(2);
    let trade = md.recv();
    assert_eq!(
        (
            trade["type"].as_str(),
            trade["seq"].as_u64(),
            trade["price"].as_str(),
            trade["qty"].as_str(),
            trade["aggressor"].as_str()
        ),
        (Some("trade"), Some(3), Some("100"), Some("2"), Some("buy"))
    );
    assert_eq!(
        md.recv(),
        json!({"type": "level", "symbol": "DEMO-A", "seq": 4, "side": "ask", "price": "100", "qty": "3"})
    );
    assert_eq!(md.recv()["seq"], 5);
    // A late subscriber: the trade for the tape, then a snapshot at the same sequence.
    let mut late = Client::connect(addr, "/v1/md?symbols=DEMO-A");
    let t = late.recv();
    assert_eq!(
        (t["type"].as_str(), t["history"].as_bool()),
        (Some("trade"), Some(true))
    );
    assert_eq!(
        late.recv(),
        json!({"type": "snapshot", "symbol": "DEMO-A", "seq": 5, "bids": [], "asks": [["100", "3"]], "halted": false})
    );
    // A resync on request.
    late.send(json!({"type": "snapshot"}));
    let again = late.recv_until(|m| m["type"] == "snapshot");
    assert_eq!(again.last().unwrap()["seq"], 5);
    // REST agrees with the feed.
    assert_eq!(
        get_json(addr, "/v1/bbo/DEMO-A", None),
        json!({"type": "bbo", "symbol": "DEMO-A", "seq": 5, "bid": null, "ask": ["100", "3"]})
    );
    assert_eq!(
        get_json(addr, "/v1/book/DEMO-A", None)["asks"],
        json!([["100", "3"]])
    );
    let (st, _) = http_get(addr, "/v1/book/NOPE", None);
    assert_eq!(st, 404);
    match tokio_tungstenite::tungstenite::connect(format!("ws://{addr}/v1/md?symbols=NOPE")) {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 404),
        other => panic!("expected 404, got {:?}", other.map(|_| ())),
    }
    md.send(json!({"type": "subscribe", "symbols": ["DEMO-B"]}));
    let s = md.recv_until(|m| m["type"] == "snapshot");
    assert_eq!(s.last().unwrap()["asks"], json!([["7", "1"]]));
    for c in [alice, bob] {
        c.close();
    }
    server.stop().unwrap();
}

#[test]
fn a_slow_market_data_client_is_dropped_and_the_engine_goes_on() {
    let (server, _dir) = demo_server(|o| {
        o.md_queue = 16;
        o.max_msgs_per_sec = 1_000_000;
        o.max_open_orders = 0;
    });
    let addr = server.addr;
    // Connects and never reads.
    let mut slow = Client::connect(addr, "/v1/md");
    let mut alice = Client::authed(addr, "alice", false);
    let n = 20_000u64;
    for i in 0..n {
        // Every order at its own price: a level and a BBO update each.
        alice.send(new_order(
            &format!("o{i}"),
            "DEMO-A",
            "buy",
            &format!("{}", 1 + i),
            "1",
        ));
    }
    let mut accepted = 0;
    while accepted < n {
        if alice.recv()["type"] == "accepted" {
            accepted += 1;
        }
    }
    let st = get_json(addr, "/v1/status", None);
    assert_eq!(st["commands_processed"], n + 2);
    // The slow client finds the updates it had room for, then the reason, then the close.
    let close = loop {
        match slow.next() {
            Got::Msg(m) if m["type"] == "error" => assert_eq!(m["code"], "slow_client"),
            Got::Msg(_) => {}
            Got::Closed(c) => break c,
        }
    };
    let (code, why) = close.expect("a close frame");
    assert_eq!(code, 1008);
    assert!(why.starts_with("slow client"), "{why}");
    let metrics = http_get(addr, "/metrics", None).1;
    assert!(metrics.contains("reason=\"md_slow_client\""), "{metrics}");
    alice.close();
    server.stop().unwrap();
}

#[test]
fn rest_status_orders_balances_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let setup = dir.path().join("setup.csv");
    std::fs::write(
        &setup,
        "asset,USD,2\nasset,BTC,8\ninstrument,BTC-USD,1,0.01,base=BTC,quote=USD\n\
         deposit,0,11,USD,1000\ndeposit,0,12,BTC,1\n",
    )
    .unwrap();
    let db = dir.path().join("history.db");
    let server = demo_server_in(dir.path(), |o| {
        o.setup = Some(setup.clone());
        o.history = Some(db.clone());
        o.demo = false;
        o.keys = vec!["alice:11".into(), "bob:12".into()];
    });
    let addr = server.addr;
    let mut alice = Client::authed(addr, "alice", false);
    let mut bob = Client::authed(addr, "bob", false);
    alice.send(new_order("a", "BTC-USD", "buy", "100", "0.5"));
    let id = alice.recv()["order_id"].as_u64().unwrap();
    bob.send(new_order("b", "BTC-USD", "sell", "100", "0.2"));
    bob.recv_n(2);
    alice.recv();
    eventually("order status from the history store", || {
        let (st, body) = http_get(addr, &format!("/v1/orders/{id}"), Some("alice"));
        st == 200 && body.contains("\"filled_qty\":\"0.2\"")
    });
    let o = get_json(addr, &format!("/v1/orders/{id}"), Some("alice"));
    assert_eq!(
        (
            o["status"].as_str(),
            o["open_qty"].as_str(),
            o["price"].as_str(),
            o["side"].as_str()
        ),
        (Some("active"), Some("0.3"), Some("100"), Some("buy"))
    );
    // Another account's order is not found; no key is not allowed.
    assert_eq!(
        http_get(addr, &format!("/v1/orders/{id}"), Some("bob")).0,
        404
    );
    assert_eq!(http_get(addr, &format!("/v1/orders/{id}"), None).0, 401);
    eventually("balances", || {
        let b = get_json(addr, "/v1/balances", Some("alice"));
        b["balances"]
            == json!([{"asset": "USD", "total": "980", "held": "30", "available": "950"},
                      {"asset": "BTC", "total": "0.2", "held": "0", "available": "0.2"}])
    });
    let st = get_json(addr, "/v1/status", None);
    assert_eq!(st["halted"], json!(null));
    let names: Vec<_> = st["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "journal",
            "snapshotter",
            "report-router",
            "market-data",
            "balances",
            "history"
        ]
    );
    let metrics = http_get(addr, "/metrics", None).1;
    for needle in [
        "ringex_commands_total{kind=\"new\"}",
        "ringex_events_total{kind=\"fill\"}",
        "ringex_consumer_lag_events{consumer=\"journal\"}",
        "ringex_ring_occupancy{ring=\"input\"}",
        "ringex_order_roundtrip_seconds_bucket",
        "ringex_sessions{kind=\"order_entry\"}",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }
    alice.send(new_order("x", "BTC-USD", "buy", "1.5", "1"));
    assert_eq!(alice.recv()["code"], "off_tick");
    eventually("the reject counted", || {
        http_get(addr, "/metrics", None)
            .1
            .contains("ringex_rejects_total{code=\"off_tick\"}")
    });
    let page = http_get(addr, "/", None);
    assert_eq!(page.0, 200);
    assert!(page.1.contains("id=\"best-bid\""));
    alice.close();
    bob.close();
    server.stop().unwrap();
}

#[test]
fn a_restarted_server_recovers_books_and_goes_on_with_fresh_ids() {
    let dir = tempfile::tempdir().unwrap();
    let server = demo_server_in(dir.path(), |_| {});
    let mut alice = Client::authed(server.addr, "alice", false);
    alice.send(new_order("a", "DEMO-A", "sell", "100", "5"));
    let first = alice.recv()["order_id"].as_u64().unwrap();
    alice.send(new_order("b", "DEMO-A", "buy", "99", "2"));
    alice.recv();
    // A rejected order takes an id too, and leaves no trace in the engine's state.
    alice.send(new_order("x", "DEMO-A", "buy", "99.001", "2"));
    let rejected = alice.recv();
    assert_eq!(rejected["code"], "off_tick");
    let rejected = rejected["order_id"].as_u64().unwrap();
    assert_eq!(rejected, first + 2);
    alice.close();
    let book = || get_json(server.addr, "/v1/book/DEMO-A", None);
    eventually("both orders in the feed", || {
        book()["bids"] == json!([["99", "2"]])
    });
    let before = book();
    server.stop().unwrap();

    let server = demo_server_in(dir.path(), |_| {});
    let after = get_json(server.addr, "/v1/book/DEMO-A", None);
    assert_eq!(after["bids"], before["bids"]);
    assert_eq!(after["asks"], before["asks"]);
    assert_eq!(after["asks"], json!([["100", "5"]]));
    let mut bob = Client::authed(server.addr, "bob", false);
    bob.send(new_order("c", "DEMO-A", "buy", "100", "1"));
    let r = bob.recv_n(2);
    // Ids go on above every id handed out before the restart, the rejected one included.
    assert!(r[0]["order_id"].as_u64().unwrap() > rejected, "{}", r[0]);
    // The recovered order is not this session's, so only the taker side is reported here.
    assert_eq!(
        (r[1]["type"].as_str(), r[1]["liquidity"].as_str()),
        (Some("fill"), Some("taker"))
    );
    assert_eq!(
        get_json(server.addr, "/v1/status", None)["commands_processed"],
        6
    );
    bob.close();
    server.stop().unwrap();
}

#[test]
fn a_gtd_order_expires_and_its_session_hears_it() {
    let (server, _dir) = demo_server(|_| {});
    let mut alice = Client::authed(server.addr, "alice", false);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    alice.send(
        json!({"type": "new", "cl_ord_id": "g", "symbol": "DEMO-A", "side": "buy",
                      "price": "10", "qty": "3", "tif": "gtd", "expiry": now + 200_000_000}),
    );
    let a = alice.recv();
    assert_eq!(
        (a["type"].as_str(), a["tif"].as_str()),
        (Some("accepted"), Some("gtd"))
    );
    // A GTD order without an expiry is refused before it is sequenced.
    alice.send(json!({"type": "new", "symbol": "DEMO-A", "side": "buy", "price": "10", "qty": "1", "tif": "gtd"}));
    assert_eq!(alice.recv()["code"], "invalid_message");
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Time moves with the next command: the order expires before it is handled.
    alice.send(new_order("n", "DEMO-B", "buy", "1", "1"));
    let r = alice.recv_n(2);
    assert_eq!(
        r[0],
        json!({"type": "expired", "seq": 4, "order_id": 1, "cl_ord_id": "g", "symbol": "DEMO-A", "qty": "3"})
    );
    assert_eq!(
        (r[1]["type"].as_str(), r[1]["seq"].as_u64()),
        (Some("accepted"), Some(5))
    );
    alice.close();
    server.stop().unwrap();
}

/// Extreme values over the wire (numbers at and past every limit, as strings and as JSON
/// numbers, on instruments with huge and tiny lots): every message is answered and nothing
/// halts — a level whose total passes a `Decimal`'s 96 bits is published exactly.
#[test]
fn extreme_values_over_the_wire_never_halt_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let setup = dir.path().join("setup.csv");
    let lot = "7922816251426433759354395033";
    std::fs::write(
        &setup,
        format!(
            "instrument,BIG,1,{lot}\ninstrument,LVL,1,{lot}\ninstrument,TINY,0.0000000000000000000000000001,0.0000000000000000000000000001\n\
             asset,B,18\nasset,Q,18\ninstrument,F,0.000000000000000001,1,base=B,quote=Q,taker_fee=0.5\n\
             deposit,0,11,Q,79228162514.264337593543950335\ndeposit,0,11,B,79228162514.264337593543950335\n"
        ),
    )
    .unwrap();
    let server = demo_server_in(dir.path(), |o| {
        o.setup = Some(setup.clone());
        o.demo = false;
        o.keys = vec!["alice:11".into()];
    });
    let addr = server.addr;
    let mut md = Client::connect(addr, "/v1/md?symbols=LVL");
    let mut c = Client::authed(addr, "alice", false);
    let values = [
        "1",
        "0",
        "-1",
        lot,
        "79228162514264337593543950335",
        "79228162514264337593543950336",
        "9223372036854775807",
        "9223372036854775808",
        "18446744073709551615",
        "0.0000000000000000000000000001",
        "10.9999999999999999999999999999",
        "1e30",
        "-0",
    ];
    let mut rng = ringex_engine::workload::SplitMix64::new(5);
    for k in 0..300u64 {
        let sym = ["BIG", "TINY", "F"][rng.below(3) as usize];
        let px = values[rng.below(values.len() as u64) as usize];
        let qty = values[rng.below(values.len() as u64) as usize];
        let side = if rng.below(2) == 0 { "buy" } else { "sell" };
        // Half as strings, half as bare JSON numbers.
        let text = if k % 2 == 0 {
            format!(
                r#"{{"type":"new","cl_ord_id":"{k}","symbol":"{sym}","side":"{side}","price":"{px}","qty":"{qty}","req_id":{k}}}"#
            )
        } else {
            format!(
                r#"{{"type":"new","cl_ord_id":"{k}","symbol":"{sym}","side":"{side}","price":{px},"qty":{qty},"req_id":{k}}}"#
            )
        };
        c.send_text(&text);
        // The answer: an error or a rejection (with the req_id) or the acceptance (with the
        // cl_ord_id).
        let cl = k.to_string();
        let got = c.recv_until(|v| v["req_id"] == k || v["cl_ord_id"] == cl.as_str());
        let last = got.last().unwrap();
        assert!(
            ["accepted", "rejected", "error", "fill", "cancelled"]
                .contains(&last["type"].as_str().unwrap_or("")),
            "{text} → {last}"
        );
    }
    // Eleven one-lot bids at one price on LVL: a level of 11 × 7.9e27 (past 96 bits).
    for k in 0..11 {
        let cl = format!("b{k}");
        c.send(json!({"type": "new", "cl_ord_id": cl, "symbol": "LVL", "side": "buy", "price": "1", "qty": lot}));
        c.recv_until(|v| v["cl_ord_id"] == cl.as_str() && v["type"] != "fill");
    }
    let total = (11 * 7922816251426433759354395033u128).to_string();
    md.recv_until(|v| v["type"] == "level" && v["price"] == "1" && v["qty"] == total.as_str());
    let st = get_json(addr, "/v1/status", None);
    assert_eq!(st["halted"], json!(null), "{st}");
    c.send(json!({"type": "ping", "req_id": 1}));
    assert!(!c.recv_until(|v| v["type"] == "pong").is_empty());
    c.close();
    server.stop().unwrap();
}

/// Icebergs and stops over the wire: `display` and `stop` on `new`, a `triggered` report
/// to the stop's session (then its fills as taker), the policy in `/v1/symbols`, and bad
/// terms refused with their codes.
#[test]
fn icebergs_stops_and_policies_over_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let setup = dir.path().join("setup.csv");
    std::fs::write(
        &setup,
        "instrument,FIFO,1,1\ninstrument,PRO,1,1,match=pro_rata_top,min_alloc=2\n",
    )
    .unwrap();
    let server = demo_server_in(dir.path(), |o| {
        o.setup = Some(setup.clone());
        o.demo = false;
        o.keys = vec!["alice:11".into(), "bob:12".into(), "carol:13".into()];
    });
    let addr = server.addr;
    let symbols = get_json(addr, "/v1/symbols", None);
    assert_eq!(symbols[0]["match"], "fifo");
    assert_eq!(
        (
            symbols[1]["match"].as_str(),
            symbols[1]["min_alloc"].as_str()
        ),
        (Some("pro_rata_top"), Some("2"))
    );
    let mut alice = Client::authed(addr, "alice", false);
    let mut bob = Client::authed(addr, "bob", false);
    let mut carol = Client::authed(addr, "carol", false);
    // An iceberg of 10 showing 3: the book shows the peak only.
    alice.send(
        json!({"type": "new", "cl_ord_id": "ice", "symbol": "FIFO", "side": "sell",
                      "price": "50", "qty": "10", "display": 3}),
    );
    let ice = alice.recv()["order_id"].as_u64().unwrap();
    eventually("the book shows the peak", || {
        let b = get_json(addr, "/v1/book/FIFO", None);
        b["asks"][0] == json!(["50", "3"]) || b["asks"][0] == json!({"price": "50", "qty": "3"})
    });
    // Carol's buy stop at 51 waits outside the book.
    carol.send(
        json!({"type": "new", "cl_ord_id": "stop", "symbol": "FIFO", "side": "buy",
                      "order_type": "market", "qty": "2", "stop": "51", "tif": "ioc"}),
    );
    let stop = carol.recv();
    assert_eq!(stop["type"], "accepted");
    let stop = stop["order_id"].as_u64().unwrap();
    bob.send(json!({"type": "new", "symbol": "FIFO", "side": "sell", "price": "51", "qty": "5"}));
    bob.recv();
    // Bob buys 4 at 50: the peak of 3, then the refilled peak for 1.
    bob.send(json!({"type": "new", "symbol": "FIFO", "side": "buy", "price": "50", "qty": "4"}));
    let r = bob.recv_n(3);
    assert_eq!(
        (r[1]["qty"].as_str(), r[2]["qty"].as_str()),
        (Some("3"), Some("1"))
    );
    let f = alice.recv_n(2);
    assert_eq!(
        (f[0]["order_id"].as_u64(), f[1]["leaves_qty"].as_str()),
        (Some(ice), Some("6"))
    );
    // A trade at 51 triggers Carol's stop: she hears `triggered`, then her fill as taker.
    alice.send(json!({"type": "cancel", "order_id": ice}));
    assert_eq!(alice.recv()["type"], "cancelled");
    alice.send(
        json!({"type": "new", "symbol": "FIFO", "side": "buy", "price": "51", "qty": "1",
                      "tif": "ioc"}),
    );
    let t = carol.recv_n(2);
    assert_eq!(
        t[0],
        json!({"type": "triggered", "seq": t[0]["seq"], "order_id": stop, "cl_ord_id": "stop",
               "symbol": "FIFO"})
    );
    assert_eq!(
        (
            t[1]["type"].as_str(),
            t[1]["liquidity"].as_str(),
            t[1]["qty"].as_str()
        ),
        (Some("fill"), Some("taker"), Some("2"))
    );
    // Bad terms: each its code.
    for (msg, code) in [
        (
            json!({"type": "new", "symbol": "PRO", "side": "buy", "price": "5", "qty": "4",
                "display": "2"}),
            "invalid_display",
        ),
        (
            json!({"type": "new", "symbol": "FIFO", "side": "buy", "price": "5", "qty": "4",
                "display": "0.5"}),
            "invalid_display",
        ),
        (
            json!({"type": "new", "symbol": "FIFO", "side": "buy", "price": "5", "qty": "4",
                "stop": "50"}),
            "stop_would_trigger",
        ),
        (
            json!({"type": "new", "symbol": "FIFO", "side": "sell", "price": "5", "qty": "4",
                "stop": "40", "post_only": true}),
            "invalid_stop",
        ),
    ] {
        alice.send(msg);
        let r = alice.recv_until(|v| v["type"] == "rejected");
        assert_eq!(r.last().unwrap()["code"], code);
    }
    alice.close();
    bob.close();
    carol.close();
    server.stop().unwrap();
}
