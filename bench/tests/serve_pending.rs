//! A session's memory of its requests on a funded instrument: every trade there ends with a
//! `FillFees` event, which must reach the sessions of the fill or their requests never
//! complete. Alone in its binary: the gauge it reads sums over every server in the process.
#![cfg(feature = "serve")]

#[path = "common/ws.rs"]
mod ws;

use serde_json::json;
use ws::{demo_server_in, eventually, http_get, Client};

/// A metric's value in the Prometheus text (`None` if it is not there).
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn funded_trades_leave_no_pending_request_behind() {
    let dir = tempfile::tempdir().unwrap();
    let setup = dir.path().join("setup.csv");
    std::fs::write(
        &setup,
        "asset,USD,2\nasset,BTC,8\ninstrument,BTC-USD,1,0.01,base=BTC,quote=USD,taker_fee=0.001\n\
         deposit,0,11,USD,100000\ndeposit,0,12,BTC,10\n",
    )
    .unwrap();
    let server = demo_server_in(dir.path(), |o| {
        o.setup = Some(setup.clone());
        o.demo = false;
        o.keys = vec!["alice:11".into(), "bob:12".into()];
    });
    let addr = server.addr;
    let mut alice = Client::authed(addr, "alice", false);
    let mut bob = Client::authed(addr, "bob", false);
    const TRADES: usize = 25;
    for k in 0..TRADES {
        alice.send(
            json!({"type": "new", "cl_ord_id": format!("a{k}"), "symbol": "BTC-USD",
                          "side": "buy", "price": "100", "qty": "0.01"}),
        );
        assert_eq!(alice.recv()["type"], "accepted");
        // Bob's sell fills completely: its last event is the fill's fees.
        bob.send(
            json!({"type": "new", "cl_ord_id": format!("b{k}"), "symbol": "BTC-USD",
                        "side": "sell", "price": "100", "qty": "0.01"}),
        );
        let got = bob.recv_n(2);
        assert_eq!(
            (got[0]["type"].as_str(), got[1]["type"].as_str()),
            (Some("accepted"), Some("fill"))
        );
        assert_eq!(alice.recv()["type"], "fill");
    }
    // Every request was answered in full: the gauge is back to 0 and each request's round
    // trip was timed once.
    eventually("no pending request", || {
        let m = http_get(addr, "/metrics", None).1;
        metric(&m, "ringex_session_pending_requests") == Some(0.0)
            && metric(&m, "ringex_order_roundtrip_seconds_count") == Some(2.0 * TRADES as f64)
    });
    alice.close();
    bob.close();
    server.stop().unwrap();
}
