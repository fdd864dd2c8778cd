//! A headless Chromium (Debian's `chromium`) driven over the DevTools protocol, for the
//! web-page tests. Fails when chromium is missing (CI installs it).
#![allow(dead_code)]

use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::{connect, Message};

const CHROMIUM: &str = "/usr/bin/chromium";

pub struct Browser {
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
    pub fn open(url: &str) -> Browser {
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
    pub fn call(&mut self, method: &str, params: Value, page: bool) -> Value {
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
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
            true,
        );
        r["result"]["value"].clone()
    }

    /// Waits until the page's document has loaded (a new tab starts on a blank one) and
    /// holds `selector`.
    pub fn loaded(&mut self, selector: &str) {
        let expr = format!(
            "JSON.stringify(document.readyState === 'complete' && !!document.querySelector('{selector}'))"
        );
        self.wait_until(&format!("{selector} loaded"), &expr, |v| v == true);
    }

    /// The JSON that `expr` (a JavaScript expression giving a JSON string) evaluates to.
    pub fn probe(&mut self, expr: &str) -> Value {
        self.eval(expr)
            .as_str()
            .map(|s| serde_json::from_str(s).unwrap())
            .unwrap_or(Value::Null)
    }

    /// Probes until `f` holds (20 s at most).
    pub fn wait_until(&mut self, what: &str, expr: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.probe(expr);
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

    /// Saves a PNG screenshot of the page to `path`.
    pub fn screenshot(&mut self, path: &std::path::Path) {
        use base64::Engine as _;
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}), true);
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(&png[1..4], b"PNG");
        std::fs::write(path, &png).unwrap();
        eprintln!("screenshot: {}", path.display());
    }
}
