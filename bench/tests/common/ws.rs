//! Blocking WebSocket and HTTP clients for the `ringex serve` tests.
#![allow(dead_code)]

use ringex_bench::serve::{self, ServeOptions, Server};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::stream::MaybeTlsStream;
use tokio_tungstenite::tungstenite::{connect, Message, WebSocket};

/// A server on an ephemeral port with the demo setup and keys, journaling into a temp dir.
pub fn demo_server(tune: impl FnOnce(&mut ServeOptions)) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = demo_server_in(dir.path(), tune);
    (server, dir)
}

/// The same in a given journal directory.
pub fn demo_server_in(dir: &std::path::Path, tune: impl FnOnce(&mut ServeOptions)) -> Server {
    let mut o = ServeOptions::new("127.0.0.1:0".parse().unwrap(), dir.join("journal"));
    o.demo = true;
    tune(&mut o);
    serve::start(o).unwrap()
}

/// The options of a server with the instruments and assets of `setup` (a command
/// script's setup lines, written to `dir`), traders alice (11) and bob (12), an admin key
/// `root` and a history store in `dir` (its path returned beside): pass them to
/// [`demo_server_in`] as `&tune`, again for each restart.
pub fn admin_tune(
    dir: &std::path::Path,
    setup: &str,
) -> (impl Fn(&mut ServeOptions), std::path::PathBuf) {
    let script = dir.join("setup.csv");
    std::fs::write(&script, setup).unwrap();
    let db = dir.join("history.db");
    let history = db.clone();
    let tune = move |o: &mut ServeOptions| {
        o.setup = Some(script.clone());
        o.demo = false;
        o.keys = vec!["alice:11".into(), "bob:12".into(), "root:admin".into()];
        o.history = Some(history.clone());
    };
    (tune, db)
}

/// A call of the admin API with the admin key `root` (see [`admin_tune`]).
pub fn admin_post(addr: SocketAddr, path: &str, body: Value) -> HttpResponse {
    post(addr, &format!("/v1/admin/{path}"), Some("root"), &body)
}

/// One WebSocket connection.
pub struct Client {
    pub ws: WebSocket<MaybeTlsStream<TcpStream>>,
}

/// What `recv` found.
#[derive(Debug)]
pub enum Got {
    Msg(Value),
    Closed(Option<(u16, String)>),
}

impl Client {
    pub fn connect(addr: SocketAddr, path: &str) -> Client {
        let (ws, _) = connect(format!("ws://{addr}{path}")).unwrap();
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        }
        Client { ws }
    }

    pub fn orders(addr: SocketAddr) -> Client {
        Client::connect(addr, "/v1/orders/ws")
    }

    /// An order-entry session authenticated with `key`.
    pub fn authed(addr: SocketAddr, key: &str, cancel_on_disconnect: bool) -> Client {
        let mut c = Client::orders(addr);
        c.send(json!({"type": "auth", "key": key, "cancel_on_disconnect": cancel_on_disconnect}));
        let m = c.recv();
        assert_eq!(m["type"], "authenticated", "{m}");
        c
    }

    pub fn send(&mut self, v: Value) {
        self.ws.send(Message::Text(v.to_string().into())).unwrap();
    }

    pub fn send_text(&mut self, t: &str) {
        self.ws.send(Message::Text(t.to_string().into())).unwrap();
    }

    /// The next JSON message, or how the connection closed.
    pub fn next(&mut self) -> Got {
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => return Got::Msg(serde_json::from_str(t.as_str()).unwrap()),
                Ok(Message::Close(f)) => {
                    return Got::Closed(f.map(|f| (u16::from(f.code), f.reason.to_string())))
                }
                Ok(_) => continue,
                Err(e) => {
                    let s = e.to_string();
                    assert!(
                        !s.contains("WouldBlock") && !s.contains("timed out"),
                        "no message within the timeout"
                    );
                    return Got::Closed(None);
                }
            }
        }
    }

    /// The next JSON message (panics when the connection closed).
    pub fn recv(&mut self) -> Value {
        match self.next() {
            Got::Msg(v) => v,
            Got::Closed(c) => panic!("connection closed: {c:?}"),
        }
    }

    /// `n` messages.
    pub fn recv_n(&mut self, n: usize) -> Vec<Value> {
        (0..n).map(|_| self.recv()).collect()
    }

    /// Messages until one matches (included).
    pub fn recv_until(&mut self, f: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut v = Vec::new();
        loop {
            let m = self.recv();
            let done = f(&m);
            v.push(m);
            if done {
                return v;
            }
        }
    }

    /// Reads until the server closes; returns the close code and reason.
    pub fn closed(&mut self) -> Option<(u16, String)> {
        loop {
            if let Got::Closed(c) = self.next() {
                return c;
            }
        }
    }

    pub fn close(mut self) {
        let _ = self
            .ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }));
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if self.ws.read().is_err() {
                break;
            }
        }
    }
}

/// `GET path` with an optional bearer key: (status, body).
pub fn http_get(addr: SocketAddr, path: &str, bearer: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = bearer.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status: u16 = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    // Chunked bodies: axum sends JSON with a content length, so this is the body.
    (status, body)
}

/// `GET path` parsed as JSON (status 200 asserted).
pub fn get_json(addr: SocketAddr, path: &str, bearer: Option<&str>) -> Value {
    let (st, body) = http_get(addr, path, bearer);
    assert_eq!(st, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// Polls until `f` holds (5 s).
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

/// An HTTP response: status, headers (lower-case names), body.
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{e}: status {} body {}", self.status, self.body))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `METHOD path` with an optional bearer key, extra headers and a body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(k) = bearer {
        head.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // A body the server refuses early may not all be read: a failed write is its answer.
    let _ = s.write_all(body);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_string();
    let status: u16 = text.get(9..12).and_then(|x| x.parse().ok()).unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: body.to_string(),
    }
}

/// `POST path` with a JSON body.
pub fn post(addr: SocketAddr, path: &str, bearer: Option<&str>, body: &Value) -> HttpResponse {
    http(addr, "POST", path, bearer, &[], body.to_string().as_bytes())
}
