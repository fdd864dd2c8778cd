//! Trading agents: WebSocket clients of `ringex serve` (feature `agents`).
//!
//! - [`market_maker`]: quotes `levels` bids and asks around a mid that takes a seeded random
//!   walk, refreshing (modifying) its quotes every `refresh`; replaces quotes that filled.
//! - [`twap`]: buys or sells a total quantity in equal slices over a duration, each slice an
//!   IOC limit order capped at a price; what a slice misses is added to the next.
//! - [`passive_buyer`]: joins the best bid with a post-only order (following the market data
//!   feed) and re-pegs when the best bid moves, until its quantity is bought.
//!
//! Each returns what it did ([`AgentReport`]). `examples/agents_demo.rs` runs all three
//! against a server started with `ringex serve --demo`.

use futures_util::{SinkExt, StreamExt};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The WebSocket failed.
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    /// The server refused the agent.
    #[error("server: {0}")]
    Server(String),
}

/// What an agent did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentReport {
    /// Requests sent.
    pub sent: u64,
    /// Orders accepted.
    pub accepted: u64,
    /// Requests rejected (by code).
    pub rejected: HashMap<String, u64>,
    /// Fill reports.
    pub fills: u64,
    /// Quantity filled.
    pub filled: Decimal,
    /// Sum of price × quantity filled.
    pub notional: Decimal,
}

impl AgentReport {
    /// The average fill price.
    pub fn avg_price(&self) -> Option<Decimal> {
        (!self.filled.is_zero()).then(|| (self.notional / self.filled).round_dp(6))
    }

    fn count(&mut self, m: &Value) {
        match m["type"].as_str() {
            Some("accepted") => self.accepted += 1,
            Some("rejected") => {
                *self
                    .rejected
                    .entry(m["code"].as_str().unwrap_or("?").to_string())
                    .or_default() += 1
            }
            Some("fill") => {
                self.fills += 1;
                let q = dec(&m["qty"]);
                self.filled += q;
                self.notional += q * dec(&m["price"]);
            }
            _ => {}
        }
    }
}

fn dec(v: &Value) -> Decimal {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or_default()
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// An authenticated order-entry session.
pub struct Session {
    ws: Ws,
    /// What this session did.
    pub report: AgentReport,
}

impl Session {
    /// Connects to `base` (`ws://127.0.0.1:8080`) and authenticates with `key`; the session's
    /// orders are cancelled when it disconnects.
    pub async fn connect(base: &str, key: &str) -> Result<Session, AgentError> {
        let (mut ws, _) = connect_async(format!("{base}/v1/orders/ws")).await?;
        ws.send(Message::Text(
            json!({"type": "auth", "key": key, "cancel_on_disconnect": true})
                .to_string()
                .into(),
        ))
        .await?;
        let mut s = Session {
            ws,
            report: AgentReport::default(),
        };
        match s.next().await? {
            Some(m) if m["type"] == "authenticated" => Ok(s),
            other => Err(AgentError::Server(format!("auth: {other:?}"))),
        }
    }

    /// Sends one request.
    pub async fn send(&mut self, v: Value) -> Result<(), AgentError> {
        self.report.sent += 1;
        self.ws.send(Message::Text(v.to_string().into())).await?;
        Ok(())
    }

    /// The next message (counted in the report), `None` when the server closed.
    pub async fn next(&mut self) -> Result<Option<Value>, AgentError> {
        while let Some(m) = self.ws.next().await {
            match m? {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                    self.report.count(&v);
                    return Ok(Some(v));
                }
                Message::Close(f) => {
                    return Err(AgentError::Server(format!("closed: {f:?}")));
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// Closes the session (its open orders are cancelled by the server).
    pub async fn close(mut self) -> AgentReport {
        let _ = self.ws.close(None).await;
        while let Some(Ok(_)) = self.ws.next().await {}
        self.report
    }
}

/// The best bid and ask of one symbol from the public feed.
pub struct Bbo {
    ws: Ws,
    /// Best bid price.
    pub bid: Option<Decimal>,
    /// Best ask price.
    pub ask: Option<Decimal>,
    /// Trades seen.
    pub trades: u64,
}

impl Bbo {
    /// Subscribes to `symbol`.
    pub async fn subscribe(base: &str, symbol: &str) -> Result<Bbo, AgentError> {
        let (ws, _) = connect_async(format!("{base}/v1/md?symbols={symbol}")).await?;
        Ok(Bbo {
            ws,
            bid: None,
            ask: None,
            trades: 0,
        })
    }

    /// Applies the next update; `false` when the feed closed.
    pub async fn update(&mut self) -> bool {
        match self.ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                let first = |side: &Value| side.get(0).map(|l| dec(&l[0]));
                match v["type"].as_str() {
                    Some("snapshot") => {
                        self.bid = first(&v["bids"]);
                        self.ask = first(&v["asks"]);
                    }
                    Some("bbo") => {
                        self.bid = v["bid"].get(0).map(dec);
                        self.ask = v["ask"].get(0).map(dec);
                    }
                    Some("trade") if v.get("history").is_none() => self.trades += 1,
                    _ => {}
                }
                true
            }
            Some(Ok(_)) => true,
            _ => false,
        }
    }
}

/// A small deterministic generator (the demo is repeatable given the same fills).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Market-maker settings.
#[derive(Clone, Debug)]
pub struct MakerConfig {
    /// Symbol.
    pub symbol: String,
    /// Starting mid.
    pub mid: Decimal,
    /// The price increment (the symbol's tick).
    pub tick: Decimal,
    /// Half the spread of the innermost quotes, in ticks.
    pub half_spread_ticks: i64,
    /// Quote levels per side, one tick apart.
    pub levels: usize,
    /// Quantity per quote.
    pub size: Decimal,
    /// How often quotes move.
    pub refresh: Duration,
    /// Random-walk seed.
    pub seed: u64,
}

/// Quotes around a walking mid until `until`.
pub async fn market_maker(
    base: &str,
    key: &str,
    cfg: MakerConfig,
    until: Instant,
) -> Result<AgentReport, AgentError> {
    let mut s = Session::connect(base, key).await?;
    let mut rng = Lcg(cfg.seed);
    let mut mid = cfg.mid;
    // (side, level) → order id once accepted; cl_ord_id → (side, level) while in flight.
    let mut live: HashMap<(bool, usize), u64> = HashMap::new();
    let mut in_flight: HashMap<String, (bool, usize)> = HashMap::new();
    let mut n = 0u64;
    let mut tick = tokio::time::interval(cfg.refresh);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if Instant::now() >= until {
                    break;
                }
                // One tick up, down or nowhere.
                let step = rng.next() % 3;
                mid += cfg.tick * Decimal::from(step as i64 - 1);
                for level in 0..cfg.levels {
                    for buy in [true, false] {
                        let off = cfg.tick * Decimal::from(cfg.half_spread_ticks + level as i64);
                        let px = if buy { mid - off } else { mid + off };
                        if px <= Decimal::ZERO {
                            continue;
                        }
                        match live.get(&(buy, level)) {
                            Some(id) => s.send(json!({"type": "modify", "order_id": id,
                                "price": px.to_string(), "qty": cfg.size.to_string()})).await?,
                            None if !in_flight.values().any(|v| *v == (buy, level)) => {
                                n += 1;
                                let cl = format!("mm{n}");
                                in_flight.insert(cl.clone(), (buy, level));
                                s.send(json!({"type": "new", "cl_ord_id": cl, "symbol": cfg.symbol,
                                    "side": if buy { "buy" } else { "sell" }, "price": px.to_string(),
                                    "qty": cfg.size.to_string()})).await?;
                            }
                            None => {}
                        }
                    }
                }
            }
            m = s.next() => {
                let Some(m) = m? else { break };
                let cl = m["cl_ord_id"].as_str().unwrap_or("").to_string();
                let id = m["order_id"].as_u64().unwrap_or(0);
                match m["type"].as_str() {
                    Some("accepted") => {
                        if let Some(slot) = in_flight.remove(&cl) {
                            live.insert(slot, id);
                        }
                    }
                    Some("rejected") if m["request"] == "new" => {
                        in_flight.remove(&cl);
                    }
                    Some("fill") if m["leaves_qty"] == "0" => live.retain(|_, v| *v != id),
                    Some("cancelled") | Some("expired") => live.retain(|_, v| *v != id),
                    _ => {}
                }
            }
        }
    }
    Ok(s.close().await)
}

/// TWAP settings.
#[derive(Clone, Debug)]
pub struct TwapConfig {
    /// Symbol.
    pub symbol: String,
    /// Buy (true) or sell.
    pub buy: bool,
    /// Total quantity.
    pub total: Decimal,
    /// Number of slices.
    pub slices: u32,
    /// Over how long.
    pub duration: Duration,
    /// The worst price a slice may trade at.
    pub limit: Decimal,
}

/// Executes `total` in equal IOC slices; returns when the last slice is done.
pub async fn twap(base: &str, key: &str, cfg: TwapConfig) -> Result<AgentReport, AgentError> {
    let mut s = Session::connect(base, key).await?;
    let slices = cfg.slices.max(1);
    let slice = (cfg.total / Decimal::from(slices)).trunc();
    let every = cfg.duration / slices;
    let start = Instant::now();
    let mut sent_qty = Decimal::ZERO;
    for k in 0..slices {
        tokio::time::sleep_until(start + every * k).await;
        // Catch up with what earlier slices missed; the last slice takes the remainder.
        let target = if k + 1 == slices {
            cfg.total
        } else {
            slice * Decimal::from(k + 1)
        };
        let qty = target - s.report.filled;
        if qty <= Decimal::ZERO {
            continue;
        }
        sent_qty += qty;
        let cl = format!("twap{k}");
        s.send(json!({"type": "new", "cl_ord_id": cl, "symbol": cfg.symbol,
            "side": if cfg.buy { "buy" } else { "sell" }, "price": cfg.limit.to_string(),
            "qty": qty.to_string(), "tif": "ioc"}))
            .await?;
        // An IOC is done at its fill with nothing left, its cancel, or its rejection.
        loop {
            let Some(m) = s.next().await? else {
                return Ok(s.report);
            };
            if m["cl_ord_id"] != cl.as_str() {
                continue;
            }
            let done = match m["type"].as_str() {
                Some("fill") => m["leaves_qty"] == "0",
                Some("cancelled") | Some("rejected") => true,
                _ => false,
            };
            if done {
                break;
            }
        }
    }
    let _ = sent_qty;
    Ok(s.close().await)
}

/// Passive-buyer settings.
#[derive(Clone, Debug)]
pub struct PassiveConfig {
    /// Symbol.
    pub symbol: String,
    /// Quantity to buy.
    pub qty: Decimal,
}

/// Joins the best bid (post-only) and follows it until `qty` is bought or `until`.
pub async fn passive_buyer(
    base: &str,
    key: &str,
    cfg: PassiveConfig,
    until: Instant,
) -> Result<AgentReport, AgentError> {
    let mut s = Session::connect(base, key).await?;
    let mut feed = Bbo::subscribe(base, &cfg.symbol).await?;
    let mut order: Option<(u64, Decimal)> = None;
    let mut pending = false;
    let mut n = 0u64;
    loop {
        if s.report.filled >= cfg.qty || Instant::now() >= until {
            break;
        }
        tokio::select! {
            alive = feed.update() => {
                if !alive {
                    break;
                }
                let Some(bid) = feed.bid else { continue };
                let left = cfg.qty - s.report.filled;
                match order {
                    // Re-peg to a new best bid (never above its own: it is the best).
                    Some((id, px)) if bid > px && !pending => {
                        pending = true;
                        s.send(json!({"type": "modify", "order_id": id, "price": bid.to_string(),
                            "qty": left.to_string()})).await?;
                    }
                    None if !pending => {
                        pending = true;
                        n += 1;
                        s.send(json!({"type": "new", "cl_ord_id": format!("pb{n}"), "symbol": cfg.symbol,
                            "side": "buy", "price": bid.to_string(), "qty": left.to_string(),
                            "post_only": true})).await?;
                    }
                    _ => {}
                }
            }
            m = s.next() => {
                let Some(m) = m? else { break };
                let id = m["order_id"].as_u64().unwrap_or(0);
                match m["type"].as_str() {
                    Some("accepted") => { order = Some((id, dec(&m["price"]))); pending = false; }
                    Some("modified") => { order = Some((id, dec(&m["price"]))); pending = false; }
                    Some("rejected") => pending = false,
                    Some("fill") if m["leaves_qty"] == "0" => order = None,
                    Some("cancelled") | Some("expired") => order = None,
                    _ => {}
                }
            }
            _ = tokio::time::sleep_until(until) => break,
        }
    }
    Ok(s.close().await)
}

/// The value of `--name` on the command line, or `default`.
pub fn arg(name: &str, default: &str) -> String {
    let a: Vec<String> = std::env::args().collect();
    a.iter()
        .position(|x| x == name)
        .and_then(|i| a.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

/// The demo's market maker on `symbol` around `mid`.
pub fn demo_maker(symbol: &str, mid: Decimal, seed: u64) -> MakerConfig {
    MakerConfig {
        symbol: symbol.to_string(),
        mid,
        tick: Decimal::new(1, 2),
        half_spread_ticks: 2,
        levels: 3,
        size: Decimal::from(5),
        refresh: Duration::from_millis(50),
        seed,
    }
}

/// Runs the three agents together for `secs` seconds against `base` (a server started with
/// `ringex serve --demo`): a market maker on each demo symbol, a TWAP buying 40 DEMO-A in
/// 20 slices, a passive buyer of 10 DEMO-A. Returns (maker A, maker B, twap, passive).
pub async fn demo(base: &str, secs: f64) -> Result<[AgentReport; 4], AgentError> {
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let mid = Decimal::from(100);
    let mm_a = market_maker(base, "mm", demo_maker("DEMO-A", mid, 1), until);
    let mm_b = market_maker(
        base,
        "alice",
        demo_maker("DEMO-B", Decimal::from(50), 2),
        until,
    );
    let quotes_up = async {
        // Give the makers a moment to quote before anyone takes.
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let twap_run = async {
        quotes_up.await;
        twap(
            base,
            "twap",
            TwapConfig {
                symbol: "DEMO-A".into(),
                buy: true,
                total: Decimal::from(40),
                slices: 20,
                duration: Duration::from_secs_f64((secs * 0.6).max(0.5)),
                limit: mid + Decimal::from(5),
            },
        )
        .await
    };
    let passive = passive_buyer(
        base,
        "buyer",
        PassiveConfig {
            symbol: "DEMO-A".into(),
            qty: Decimal::from(10),
        },
        until,
    );
    let (a, b, t, p) = tokio::join!(mm_a, mm_b, twap_run, passive);
    Ok([a?, b?, t?, p?])
}

/// Prints one agent's report.
pub fn print(name: &str, r: &AgentReport) {
    println!(
        "{name:>14}: sent {:>5}  accepted {:>5}  fills {:>4}  filled {:>6}  avg {:>8}  rejected {:?}",
        r.sent,
        r.accepted,
        r.fills,
        r.filled,
        r.avg_price().map_or("-".into(), |p| p.to_string()),
        r.rejected
    );
}
