//! Sessions that end in every way: idle (half-open) clients noticed by ping and closed,
//! connections that never authenticate closed, and cancel-on-disconnect honoured when the
//! server stops gracefully (its cancels journaled before exit), on Ctrl-C, and after a
//! crash (the restart cancels the orders of the sessions that are gone).
#![cfg(feature = "serve")]

#[path = "common/ws.rs"]
mod ws;

use serde_json::json;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command as Proc, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use ws::{demo_server_in, eventually, get_json, Client, Got};

/// Reads raw frames until `f` says stop, or the timeout; answers pings (tungstenite does).
fn read_until(c: &mut Client, limit: Duration, mut f: impl FnMut(&Message) -> bool) -> bool {
    if let tokio_tungstenite::tungstenite::stream::MaybeTlsStream::Plain(s) = c.ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    }
    let t = Instant::now();
    while t.elapsed() < limit {
        match c.ws.read() {
            Ok(m) => {
                if f(&m) {
                    return true;
                }
            }
            Err(tokio_tungstenite::tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return false,
        }
    }
    false
}

#[test]
fn a_silent_client_is_closed_after_the_idle_timeout_and_a_live_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let server = demo_server_in(dir.path(), |o| o.idle_timeout = Duration::from_millis(300));
    // A client that reads answers the server's pings and stays, also saying nothing.
    let mut live = Client::authed(server.addr, "alice", false);
    let mut pings = 0;
    assert!(!read_until(&mut live, Duration::from_millis(1_200), |m| {
        pings += matches!(m, Message::Ping(_)) as u32;
        matches!(m, Message::Close(_))
    }));
    assert!(pings >= 3, "{pings} pings in 1.2 s");
    live.send(json!({"type": "ping", "req_id": 9}));
    assert_eq!(live.recv()["type"], "pong");
    // A half-open client: it reads nothing (no pong) for longer than the idle timeout.
    let mut silent = Client::authed(server.addr, "bob", false);
    std::thread::sleep(Duration::from_millis(900));
    let mut why = None;
    read_until(&mut silent, Duration::from_secs(3), |m| {
        if let Message::Close(Some(f)) = m {
            why = Some((u16::from(f.code), f.reason.to_string()));
            return true;
        }
        false
    });
    let (code, reason) = why.expect("closed by the server");
    assert_eq!(code, 1008);
    assert!(reason.contains("idle"), "{reason}");
    live.close();
    server.stop().unwrap();
}

#[test]
fn a_connection_that_never_authenticates_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = demo_server_in(dir.path(), |o| o.auth_timeout = Duration::from_millis(200));
    let mut c = Client::orders(server.addr);
    match c.next() {
        Got::Closed(Some((code, reason))) => {
            assert_eq!(code, 1008);
            assert!(reason.contains("not authenticated"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    server.stop().unwrap();
}

/// The resting orders a journal directory holds (after recovery).
fn resting(journal: &std::path::Path) -> usize {
    ringex_consumers::recovery::recover(journal)
        .expect("recover")
        .state
        .orders
        .len()
}

#[test]
fn stopping_the_server_cancels_the_orders_of_cancel_on_disconnect_sessions_first() {
    let dir = tempfile::tempdir().unwrap();
    let server = demo_server_in(dir.path(), |_| {});
    let mut cod = Client::authed(server.addr, "alice", true);
    let mut keep = Client::authed(server.addr, "bob", false);
    cod.send(json!({"type": "new", "symbol": "DEMO-A", "side": "buy", "price": "99", "qty": "3"}));
    assert_eq!(cod.recv()["type"], "accepted");
    keep.send(
        json!({"type": "new", "symbol": "DEMO-A", "side": "sell", "price": "101", "qty": "2"}),
    );
    assert_eq!(keep.recv()["type"], "accepted");
    // Stop while both sessions are connected: the cancel is journaled before the exit.
    server.stop().unwrap();
    assert_eq!(
        resting(&dir.path().join("journal")),
        1,
        "only bob's order rests"
    );
    let server = demo_server_in(dir.path(), |_| {});
    let book = get_json(server.addr, "/v1/book/DEMO-A", None);
    assert_eq!(
        (book["bids"].clone(), book["asks"].clone()),
        (json!([]), json!([["101", "2"]]))
    );
    server.stop().unwrap();
}

/// A `ringex serve` process, killed when dropped (also when a test fails).
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ringex serve` as its own process, and its address.
fn spawn_server(journal: &std::path::Path) -> (Spawned, SocketAddr) {
    let mut child = Proc::new(env!("CARGO_BIN_EXE_ringex"))
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--journal"])
        .arg(journal)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let l = lines.next().expect("ringex serve said nothing").unwrap();
        if let Some(rest) = l.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    // Keep draining its stderr so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Spawned(child), addr)
}

/// Places a resting order from a cancel-on-disconnect session, then stops the process with
/// `signal`; returns the journal directory.
fn cod_order_then(signal: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let (mut child, addr) = spawn_server(&journal);
    let mut cod = Client::authed(addr, "alice", true);
    cod.send(json!({"type": "new", "symbol": "DEMO-A", "side": "buy", "price": "99", "qty": "3"}));
    assert_eq!(cod.recv()["type"], "accepted");
    let st = Proc::new("kill")
        .args(["-s", signal, &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    child.0.wait().unwrap();
    dir
}

#[test]
fn ctrl_c_cancels_them_before_exit() {
    let dir = cod_order_then("INT");
    assert_eq!(resting(&dir.path().join("journal")), 0);
}

#[test]
fn after_a_crash_the_restart_cancels_them() {
    let dir = cod_order_then("KILL");
    let journal = dir.path().join("journal");
    assert_eq!(resting(&journal), 1, "kill -9: nothing cancelled it");
    let (child, addr) = spawn_server(&journal);
    eventually("the restart cancelled the gone session's order", || {
        get_json(addr, "/v1/book/DEMO-A", None)["bids"] == json!([])
    });
    drop(child);
    assert_eq!(resting(&journal), 0, "the cancel is journaled");
}

#[test]
fn limits_keep_one_client_from_hurting_others() {
    let dir = tempfile::tempdir().unwrap();
    let server = demo_server_in(dir.path(), |o| {
        o.max_sessions_per_key = 2;
        o.max_open_orders = 2;
        o.max_snapshots_per_sec = 3;
    });
    let addr = server.addr;
    // Sessions per key: a third session of alice's key is refused; bob's are not affected.
    let mut a1 = Client::authed(addr, "alice", false);
    let a2 = Client::authed(addr, "alice", false);
    let mut a3 = Client::orders(addr);
    a3.send(json!({"type": "auth", "key": "alice"}));
    match a3.next() {
        Got::Closed(Some((code, reason))) => {
            assert_eq!(code, 1008);
            assert!(reason.contains("sessions"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let mut b = Client::authed(addr, "bob", false);
    // Once one of them leaves, another may come.
    a2.close();
    ws::eventually("a place freed", || {
        let mut c = Client::orders(addr);
        c.send(json!({"type": "auth", "key": "alice"}));
        matches!(c.next(), Got::Msg(m) if m["type"] == "authenticated")
    });
    // Open orders per account, in the sequenced path.
    for (k, px) in ["99", "98", "97"].iter().enumerate() {
        a1.send(json!({"type": "new", "cl_ord_id": format!("o{k}"), "symbol": "DEMO-A", "side": "buy", "price": px, "qty": "1"}));
    }
    let got: Vec<_> = (0..3).map(|_| a1.recv()).collect();
    assert_eq!(
        got.iter()
            .map(|m| m["type"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["accepted", "accepted", "rejected"]
    );
    assert_eq!(got[2]["code"], "too_many_orders");
    b.send(json!({"type": "new", "symbol": "DEMO-A", "side": "buy", "price": "97", "qty": "1"}));
    assert_eq!(
        b.recv()["type"],
        "accepted",
        "another account is not limited"
    );
    // Book snapshots: a server-wide budget a second.
    let codes: Vec<u16> = (0..6)
        .map(|_| ws::http_get(addr, "/v1/book/DEMO-A", None).0)
        .collect();
    assert!(codes.contains(&200) && codes.contains(&429), "{codes:?}");
    std::thread::sleep(Duration::from_millis(1_100));
    assert_eq!(ws::http_get(addr, "/v1/book/DEMO-A", None).0, 200);
    a1.close();
    b.close();
    server.stop().unwrap();
}

/// `ringex serve` takes snapshots and prunes its journal: a restart recovers from the
/// newest snapshot plus the tail, to the same book, and ids go on above every one used.
#[test]
fn serve_takes_snapshots_and_a_restart_recovers_from_them() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let server = demo_server_in(dir.path(), |o| o.snapshot_every = 40);
    let mut c = Client::authed(server.addr, "alice", false);
    let mut last = 0;
    for k in 0..300u64 {
        let side = if k % 2 == 0 { "buy" } else { "sell" };
        let px = if k % 2 == 0 { 90 + k % 7 } else { 110 + k % 5 };
        c.send(json!({"type": "new", "symbol": "DEMO-A", "side": side, "price": px.to_string(), "qty": "1"}));
        last = c.recv()["order_id"].as_u64().unwrap();
    }
    // The book is market data's: it may lag the last report by a batch. Wait until it
    // holds all 300 lots (none trade: bids at 90–96, asks at 110–114).
    let lots = |side: &serde_json::Value| -> u64 {
        side.as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|x| x[1].as_str()?.parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or(0)
    };
    let mut before = serde_json::Value::Null;
    eventually("the book to show every order", || {
        before = get_json(server.addr, "/v1/book/DEMO-A?depth=20", None);
        (lots(&before["bids"]), lots(&before["asks"])) == (150, 150)
    });
    c.close();
    server.stop().unwrap();
    let snaps = ringex_consumers::snapshot::list_snapshots(&journal).unwrap();
    assert_eq!(
        snaps.len(),
        2,
        "the two newest snapshots are kept: {snaps:?}"
    );
    let rec = ringex_consumers::recovery::recover(&journal).unwrap();
    assert!(rec.report.snapshot.is_some(), "recovered from a snapshot");
    assert!(
        rec.report.events < 300,
        "replayed {} events, not the whole run",
        rec.report.events
    );
    let server = demo_server_in(dir.path(), |o| o.snapshot_every = 40);
    let after = get_json(server.addr, "/v1/book/DEMO-A?depth=20", None);
    assert_eq!(
        (&after["bids"], &after["asks"]),
        (&before["bids"], &before["asks"])
    );
    let mut c = Client::authed(server.addr, "alice", false);
    c.send(json!({"type": "new", "symbol": "DEMO-A", "side": "buy", "price": "1", "qty": "1"}));
    assert!(c.recv()["order_id"].as_u64().unwrap() > last);
    c.close();
    server.stop().unwrap();
}
