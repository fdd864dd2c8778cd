//! The web pages of `ringex serve` in a real headless browser (Debian's `chromium`, driven
//! over the DevTools protocol). The live page: loaded against a server fed by a script, it
//! renders the book, its best bid and ask are the engine's, a live update arrives, and a
//! screenshot is saved (`target/tmp/serve-page.png`). The admin view: a trader key is
//! refused; the admin halts and resumes a symbol, blocks and unblocks an account and
//! deposits, each checked against what the engine then does; a reload keeps the key and
//! shows the halt (`target/tmp/serve-admin.png`). Fails when chromium is missing (CI
//! installs it).
#![cfg(feature = "serve")]

#[path = "common/ws.rs"]
mod ws;

#[path = "common/browser.rs"]
mod browser;

use browser::Browser;
use ringex_engine::{InstrumentId, Side};
use serde_json::{json, Value};
use ws::{demo_server, Client};

/// What the live page shows: ready flag, best bid and ask prices, trades in the tape.
const SHOWN: &str = "JSON.stringify({ready: document.body.dataset.ready, \
     bid: document.getElementById('best-bid').dataset.price || null, \
     ask: document.getElementById('best-ask').dataset.price || null, \
     rows: document.querySelectorAll('#book tbody tr.bid, #book tbody tr.ask').length, \
     trades: document.querySelectorAll('#tape tbody tr').length, \
     status: document.querySelectorAll('#status tbody tr').length})";

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
    let shown = b.wait_until("the book", SHOWN, |v| {
        v["ready"] == "1" && v["bid"] == "99.75" && v["ask"] == "100.25" && v["trades"] == 1
    });
    assert_eq!(shown["rows"], 6);
    b.wait_until("the pipeline status", SHOWN, |v| {
        v["status"].as_u64().unwrap_or(0) >= 5
    });

    // Live: a better bid appears without a reload.
    mm.send(order("q9", "buy", "100", "2"));
    assert_eq!(mm.recv()["type"], "accepted");
    let shown = b.wait_until("the new best bid", SHOWN, |v| v["bid"] == "100");
    assert_eq!(shown["ask"], "100.25");

    b.screenshot(&std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-page.png"));
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

/// What the admin view shows: signed in or not, symbols' statuses, assets, the balances
/// table and the last action's line.
const ADMIN: &str = "JSON.stringify({admin: document.body.dataset.admin, \
     who: document.getElementById('who').textContent, \
     last: document.body.dataset.last || null, \
     symbols: [...document.querySelectorAll('#symbols td.status')].map(td => [td.dataset.symbol, td.textContent]), \
     assets: [...document.querySelectorAll('#asset option')].map(o => o.value), \
     balances: [...document.querySelectorAll('#balances tbody tr')].map(tr => [...tr.cells].map(c => c.textContent))})";

#[test]
fn the_admin_view_halts_blocks_and_deposits_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let setup = dir.path().join("setup.csv");
    std::fs::write(
        &setup,
        "asset,USD,2\ninstrument,DEMO-A,0.01,1\ninstrument,DEMO-B,0.01,1\n",
    )
    .unwrap();
    let server = ws::demo_server_in(dir.path(), |o| {
        o.setup = Some(setup.clone());
        o.demo = false;
        o.keys = vec!["alice:11".into(), "root:admin".into()];
    });
    let addr = server.addr;
    let alice_order = || {
        let r = ws::post(
            addr,
            "/v1/orders",
            Some("alice"),
            &json!({"symbol": "DEMO-A", "side": "buy", "price": "1", "qty": "1"}),
        );
        let r = r.json()["reports"][0].clone();
        r["code"]
            .as_str()
            .unwrap_or(r["type"].as_str().unwrap())
            .to_string()
    };
    let mut b = Browser::open(&format!("http://{addr}/admin"));
    b.loaded("#key");
    let sign_in = |b: &mut Browser, key: &str| {
        b.eval(&format!(
            "document.getElementById('key').value = '{key}'; \
             document.getElementById('sign-in').requestSubmit(); 1"
        ));
    };
    let click = |b: &mut Browser, selector: &str| {
        let found = b.eval(&format!(
            "(() => {{ const e = document.querySelector('{selector}'); if (e) e.click(); return !!e; }})()"
        ));
        assert_eq!(found, true, "no {selector} on the page");
    };

    // A trader key does not open the admin view.
    sign_in(&mut b, "alice");
    b.wait_until("the trader key refused", ADMIN, |v| {
        v["who"] == "not an admin key" && v["admin"] == "0"
    });
    sign_in(&mut b, "root");
    let v = b.wait_until("the admin view", ADMIN, |v| {
        v["admin"] == "1" && v["symbols"].as_array().is_some_and(|s| s.len() == 2)
    });
    assert_eq!(
        v["symbols"],
        json!([["DEMO-A", "open"], ["DEMO-B", "open"]])
    );
    assert_eq!(v["assets"], json!(["USD"]));

    // Halt and resume DEMO-A from its row: the engine refuses, then takes, alice's orders.
    click(&mut b, "button[data-action=halt][data-symbol=\"DEMO-A\"]");
    b.wait_until("DEMO-A halted", ADMIN, |v| {
        v["symbols"][0] == json!(["DEMO-A", "halted"])
    });
    assert_eq!(alice_order(), "halted");
    click(&mut b, "button[data-action=resume][data-symbol=\"DEMO-A\"]");
    b.wait_until("DEMO-A open", ADMIN, |v| {
        v["symbols"][0] == json!(["DEMO-A", "open"])
    });
    assert_eq!(alice_order(), "accepted");

    // Block and unblock account 11.
    b.eval("document.getElementById('account').value = '11'; 1");
    click(&mut b, "#block");
    b.wait_until("the block", ADMIN, |v| {
        v["last"]
            .as_str()
            .is_some_and(|l| l.starts_with("Block 11 → 200") && l.ends_with("blocked"))
    });
    assert_eq!(alice_order(), "blocked");
    click(&mut b, "#unblock");
    b.wait_until("the unblock", ADMIN, |v| {
        v["last"].as_str().is_some_and(|l| l.ends_with("unblocked"))
    });
    assert_eq!(alice_order(), "accepted");

    // A deposit, shown in the account's balances (read again until the publisher has it).
    b.eval("document.getElementById('amount').value = '250.50'; 1");
    click(&mut b, "#deposit");
    b.wait_until("the deposit", ADMIN, |v| {
        v["last"] == "Deposit 250.50 USD to 11 → 200 deposited"
    });
    // (The balances publisher runs beside the router: the page may have read them before
    // it had the deposit, so ask again until it shows.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while b.probe(ADMIN)["balances"] != json!([["USD", "250.5", "0", "250.5"]]) {
        assert!(
            std::time::Instant::now() < deadline,
            "the balance never showed"
        );
        click(&mut b, "#show");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    ws::eventually("alice's own balances", || {
        ws::get_json(addr, "/v1/balances", Some("alice"))["balances"][0]["total"] == "250.5"
    });

    // A halt outlives a reload of the page: the key stays in the tab, the status comes from
    // the server.
    click(&mut b, "button[data-action=halt][data-symbol=\"DEMO-B\"]");
    b.wait_until("DEMO-B halted", ADMIN, |v| {
        v["symbols"][1] == json!(["DEMO-B", "halted"])
    });
    b.screenshot(&std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-admin.png"));
    b.call("Page.reload", json!({}), true);
    b.loaded("#key");
    b.wait_until("the admin view after a reload", ADMIN, |v| {
        v["admin"] == "1" && v["symbols"] == json!([["DEMO-A", "open"], ["DEMO-B", "halted"]])
    });
    drop(b);
    server.stop().unwrap();
}
