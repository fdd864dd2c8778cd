//! The live web page of `ringex serve` in a real headless browser (Debian's `chromium`,
//! driven over the DevTools protocol): it loads the page against a server fed by a script,
//! waits for the book to render, checks the rendered best bid and ask against the engine's
//! book, watches a live update arrive, and saves a screenshot
//! (`target/tmp/serve-page.png`). Fails when chromium is missing (CI installs it).
#![cfg(feature = "serve")]

#[path = "common/ws.rs"]
mod ws;

use base64::Engine as _;
use ringex_engine::{InstrumentId, Side};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::{connect, Message};
use ws::{demo_server, Client};

const CHROMIUM: &str = "/usr/bin/chromium";

struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    cdp: tokio_tungstenite::tungstenite::WebSocket<
        tokio_tungstenite::tungstenite::stream::MaybeTlsStream<std::net::TcpStream>,
    >,
    next_id: u64,
    session: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    fn open(url: &str) -> Browser {
        assert!(
            std::path::Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: apt-get install chromium (.ci/test does)"
        );
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--window-size=1280,720",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        // Chromium writes its DevTools port and browser endpoint here once it listens.
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let text = loop {
            if let Ok(t) = std::fs::read_to_string(&port_file) {
                if t.lines().count() >= 2 {
                    break t;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromium did not start its DevTools endpoint"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut lines = text.lines();
        let port = lines.next().unwrap().trim();
        let path = lines.next().unwrap().trim();
        let (cdp, _) = connect(format!("ws://127.0.0.1:{port}{path}")).unwrap();
        let mut b = Browser {
            child,
            _profile: profile,
            cdp,
            next_id: 0,
            session: String::new(),
        };
        let page = loop {
            let targets = b.call("Target.getTargets", json!({}), false);
            let page = targets["targetInfos"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["type"] == "page" && t["url"].as_str().unwrap_or("").starts_with(url))
                .map(|t| t["targetId"].as_str().unwrap().to_string());
            if let Some(p) = page {
                break p;
            }
            assert!(Instant::now() < deadline, "no page for {url}: {targets}");
            std::thread::sleep(Duration::from_millis(50));
        };
        let r = b.call(
            "Target.attachToTarget",
            json!({"targetId": page, "flatten": true}),
            false,
        );
        b.session = r["sessionId"].as_str().unwrap().to_string();
        b
    }

    /// One DevTools call (on the page's session when `page`), waiting for its answer.
    fn call(&mut self, method: &str, params: Value, page: bool) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if page {
            msg["sessionId"] = json!(self.session);
        }
        self.cdp
            .send(Message::Text(msg.to_string().into()))
            .unwrap();
        loop {
            let m = self.cdp.read().unwrap();
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["id"] == id {
                    assert!(v.get("error").is_none(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
        }
    }

    /// Evaluates a JavaScript expression in the page and returns its value.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
            true,
        );
        r["result"]["value"].clone()
    }

    /// What the page shows: ready flag, best bid and ask prices, trades in the tape.
    fn shown(&mut self) -> Value {
        self.eval(
            "JSON.stringify({ready: document.body.dataset.ready, \
             bid: document.getElementById('best-bid').dataset.price || null, \
             ask: document.getElementById('best-ask').dataset.price || null, \
             rows: document.querySelectorAll('#book tbody tr.bid, #book tbody tr.ask').length, \
             trades: document.querySelectorAll('#tape tbody tr').length, \
             status: document.querySelectorAll('#status tbody tr').length})",
        )
        .as_str()
        .map(|s| serde_json::from_str(s).unwrap())
        .unwrap_or(Value::Null)
    }

    fn wait_for(&mut self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.shown();
            if f(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "the page never showed {what}: {v}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn order(cl: &str, side: &str, price: &str, qty: &str) -> Value {
    json!({"type": "new", "cl_ord_id": cl, "symbol": "DEMO-A", "side": side, "price": price, "qty": qty})
}

#[test]
fn the_live_page_renders_the_engines_book_in_chromium() {
    let (server, _dir) = demo_server(|_| {});
    let addr = server.addr;
    // The script: a few levels each side and one trade.
    let mut mm = Client::authed(addr, "mm", false);
    let mut taker = Client::authed(addr, "bob", false);
    for (i, (side, px, q)) in [
        ("buy", "99.50", "10"),
        ("buy", "99.75", "4"),
        ("buy", "99.00", "7"),
        ("sell", "100.25", "3"),
        ("sell", "100.50", "8"),
        ("sell", "101", "12"),
    ]
    .into_iter()
    .enumerate()
    {
        mm.send(order(&format!("q{i}"), side, px, q));
        assert_eq!(mm.recv()["type"], "accepted");
    }
    taker.send(order("t1", "buy", "100.25", "1"));
    assert_eq!(taker.recv_n(2)[1]["type"], "fill");
    assert_eq!(mm.recv()["liquidity"], "maker");

    let mut b = Browser::open(&format!("http://{addr}/?symbol=DEMO-A"));
    let shown = b.wait_for("the book", |v| {
        v["ready"] == "1" && v["bid"] == "99.75" && v["ask"] == "100.25" && v["trades"] == 1
    });
    assert_eq!(shown["rows"], 6);
    b.wait_for("the pipeline status", |v| {
        v["status"].as_u64().unwrap_or(0) >= 5
    });

    // Live: a better bid appears without a reload.
    mm.send(order("q9", "buy", "100", "2"));
    assert_eq!(mm.recv()["type"], "accepted");
    let shown = b.wait_for("the new best bid", |v| v["bid"] == "100");
    assert_eq!(shown["ask"], "100.25");

    let shot = b.call("Page.captureScreenshot", json!({"format": "png"}), true);
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-page.png");
    std::fs::write(&out, &png).unwrap();
    eprintln!("screenshot: {}", out.display());
    drop(b);

    // What the page showed is the engine's own book.
    mm.close();
    taker.close();
    let mut done = server.stop().unwrap();
    let m = done.matcher.take().unwrap();
    let spec_px = |ticks: i64| rust_decimal::Decimal::new(ticks, 2).normalize().to_string();
    let book = m.resting_orders(InstrumentId(0));
    let best_bid = book
        .iter()
        .filter(|o| o.side == Side::Buy)
        .map(|o| o.price.0)
        .max()
        .unwrap();
    let best_ask = book
        .iter()
        .filter(|o| o.side == Side::Sell)
        .map(|o| o.price.0)
        .min()
        .unwrap();
    assert_eq!(
        (spec_px(best_bid), spec_px(best_ask)),
        (
            shown["bid"].as_str().unwrap().to_string(),
            shown["ask"].as_str().unwrap().to_string()
        )
    );
}
