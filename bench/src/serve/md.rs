//! Public market data over WebSocket (`/v1/md`), and the L2/BBO state behind the REST
//! snapshots and the web page.
//!
//! The market-data publisher (a consumer gated after the journal) hands every update to a tap
//! that applies it to the server's L2 books and fans it out, serialized once, on a broadcast
//! channel. A client gets a snapshot of each symbol it follows, taken under the same lock
//! that orders updates, then the updates after it (per-symbol `seq`: no gap, no duplicate).
//! A client that falls more than the channel's capacity behind is dropped with a close
//! reason: it never stalls the publisher, which never waits for anyone.

use crate::serve::metrics;
use crate::serve::{App, Specs};
use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt;
use ringex_consumers::market_data::{L2Books, Level, MdUpdate};
use ringex_engine::{InstrumentId, Side};
use serde_json::json;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Trades kept per symbol for the tape of a fresh page.
const TAPE: usize = 50;

/// One instrument as the feed has published it.
#[derive(Default, Clone)]
pub struct MdBook {
    /// The last per-symbol sequence applied.
    pub seq: u64,
    /// Bids by price.
    pub bids: BTreeMap<i64, u128>,
    /// Asks by price.
    pub asks: BTreeMap<i64, u128>,
    /// Halted?
    pub halted: bool,
    /// The latest trades, oldest first (JSON messages).
    pub tape: VecDeque<Utf8Bytes>,
}

/// One serialized update.
#[derive(Clone, Debug)]
pub struct MdMsg {
    /// The instrument.
    pub instrument: InstrumentId,
    /// Its per-symbol sequence.
    pub seq: u64,
    /// The JSON text.
    pub json: Utf8Bytes,
}

/// What the feed keeps: the subscriber-side L2 books (`L2Books`, the same component any
/// in-process subscriber uses), with the halted flags and recent trades beside them.
#[derive(Default)]
struct FeedState {
    l2: L2Books,
    halted: BTreeMap<InstrumentId, bool>,
    tape: BTreeMap<InstrumentId, VecDeque<Utf8Bytes>>,
}

impl FeedState {
    fn book(&self, i: InstrumentId) -> MdBook {
        let (seq, bids, asks) = self.l2.book(i).unwrap_or_default();
        MdBook {
            seq,
            bids: bids.into_iter().map(|(p, q)| (p.0, q)).collect(),
            asks: asks.into_iter().map(|(p, q)| (p.0, q)).collect(),
            halted: self.halted.get(&i).copied().unwrap_or(false),
            tape: self.tape.get(&i).cloned().unwrap_or_default(),
        }
    }
}

/// The feed: books and the fan-out channel.
pub struct MdFeed {
    books: Mutex<FeedState>,
    tx: broadcast::Sender<MdMsg>,
    specs: Arc<Specs>,
}

impl MdFeed {
    /// A feed whose slowest client may fall `capacity` updates behind.
    pub fn new(specs: Arc<Specs>, capacity: usize) -> Arc<Self> {
        let (tx, _) = broadcast::channel(capacity.max(16));
        Arc::new(MdFeed {
            books: Mutex::new(FeedState::default()),
            tx,
            specs,
        })
    }

    fn px(&self, i: InstrumentId, p: i64) -> String {
        self.specs
            .by_id(i)
            .map_or_else(|| p.to_string(), |s| s.price_text(ringex_engine::Price(p)))
    }

    fn lots(&self, i: InstrumentId, q: u128) -> String {
        self.specs
            .by_id(i)
            .map_or_else(|| q.to_string(), |s| s.qty_text(q))
    }

    fn sym(&self, i: InstrumentId) -> String {
        // An instrument being listed is named too: its first snapshot may go out before
        // the listing call ends.
        self.specs.name(i).unwrap_or_else(|| format!("#{}", i.0))
    }

    fn level_json(&self, i: InstrumentId, l: Option<Level>) -> serde_json::Value {
        match l {
            Some((p, q)) => json!([self.px(i, p.0), self.lots(i, q)]),
            None => serde_json::Value::Null,
        }
    }

    /// Applies one publisher update and fans it out (the publisher's tap).
    pub fn apply(&self, u: &MdUpdate) {
        let Ok(mut state) = self.books.lock() else {
            return;
        };
        state.l2.apply(u);
        let (i, seq, v) = match u {
            MdUpdate::Level {
                instrument,
                seq,
                side,
                price,
                qty,
            } => (
                *instrument,
                *seq,
                json!({"type": "level", "symbol": self.sym(*instrument), "seq": seq,
                    "side": if *side == Side::Buy { "bid" } else { "ask" },
                    "price": self.px(*instrument, price.0), "qty": self.lots(*instrument, *qty)}),
            ),
            MdUpdate::Bbo {
                instrument,
                seq,
                bid,
                ask,
            } => (
                *instrument,
                *seq,
                json!({"type": "bbo", "symbol": self.sym(*instrument), "seq": seq,
                    "bid": self.level_json(*instrument, *bid),
                    "ask": self.level_json(*instrument, *ask)}),
            ),
            MdUpdate::Trade {
                instrument,
                seq,
                price,
                qty,
                aggressor,
                event_seq,
            } => {
                let v = json!({"type": "trade", "symbol": self.sym(*instrument), "seq": seq,
                    "price": self.px(*instrument, price.0), "qty": self.lots(*instrument, qty.0 as u128),
                    "aggressor": if *aggressor == Side::Buy { "buy" } else { "sell" },
                    "trade_id": event_seq.0});
                let tape = state.tape.entry(*instrument).or_default();
                tape.push_back(Utf8Bytes::from(v.to_string()));
                if tape.len() > TAPE {
                    tape.pop_front();
                }
                (*instrument, *seq, v)
            }
            MdUpdate::Status {
                instrument,
                seq,
                halted,
            } => {
                state.halted.insert(*instrument, *halted);
                (
                    *instrument,
                    *seq,
                    json!({"type": "status", "symbol": self.sym(*instrument), "seq": seq,
                        "halted": halted}),
                )
            }
            MdUpdate::Snapshot(snap) => {
                state.halted.insert(snap.instrument, snap.halted);
                let v = self.snapshot_json(snap.instrument, &state.book(snap.instrument));
                (snap.instrument, snap.seq, v)
            }
            MdUpdate::Resync => return,
        };
        metrics::md_update();
        // No receivers is not an error: nobody is watching.
        let _ = self.tx.send(MdMsg {
            instrument: i,
            seq,
            json: Utf8Bytes::from(v.to_string()),
        });
    }

    fn snapshot_json(&self, i: InstrumentId, b: &MdBook) -> serde_json::Value {
        let side = |m: &BTreeMap<i64, u128>, rev: bool| -> Vec<serde_json::Value> {
            let f = |(p, q): (&i64, &u128)| json!([self.px(i, *p), self.lots(i, *q)]);
            if rev {
                m.iter().rev().map(f).collect()
            } else {
                m.iter().map(f).collect()
            }
        };
        json!({"type": "snapshot", "symbol": self.sym(i), "seq": b.seq,
            "bids": side(&b.bids, true), "asks": side(&b.asks, false), "halted": b.halted})
    }

    /// One symbol's book as the feed has published it.
    pub fn book(&self, i: InstrumentId) -> Option<MdBook> {
        Some(self.books.lock().ok()?.book(i))
    }

    /// Whether the instrument is halted (as the feed last said).
    pub fn halted(&self, i: InstrumentId) -> bool {
        self.books
            .lock()
            .map(|b| b.halted.get(&i).copied().unwrap_or(false))
            .unwrap_or(false)
    }

    /// The L2 answer of `GET /v1/book/{symbol}` (depth levels per side).
    pub fn book_json(&self, i: InstrumentId, depth: usize) -> serde_json::Value {
        let b = self.book(i).unwrap_or_default();
        let mut b2 = b.clone();
        b2.bids = b
            .bids
            .iter()
            .rev()
            .take(depth)
            .map(|(p, q)| (*p, *q))
            .collect();
        b2.asks = b.asks.iter().take(depth).map(|(p, q)| (*p, *q)).collect();
        self.snapshot_json(i, &b2)
    }

    /// The answer of `GET /v1/bbo/{symbol}`.
    pub fn bbo_json(&self, i: InstrumentId) -> serde_json::Value {
        let b = self.book(i).unwrap_or_default();
        let bid = b
            .bids
            .iter()
            .next_back()
            .map(|(p, q)| (ringex_engine::Price(*p), *q));
        let ask = b
            .asks
            .iter()
            .next()
            .map(|(p, q)| (ringex_engine::Price(*p), *q));
        json!({"type": "bbo", "symbol": self.sym(i), "seq": b.seq,
            "bid": self.level_json(i, bid), "ask": self.level_json(i, ask)})
    }

    /// Snapshots (and recent trades) of `symbols` and a receiver of every update after them,
    /// taken under one lock.
    fn subscribe(
        &self,
        symbols: &HashSet<InstrumentId>,
    ) -> (
        Vec<(InstrumentId, u64, Utf8Bytes)>,
        broadcast::Receiver<MdMsg>,
    ) {
        let state = match self.books.lock() {
            Ok(b) => b,
            Err(p) => p.into_inner(),
        };
        let mut snaps = Vec::new();
        for &i in symbols {
            let b = state.book(i);
            for t in &b.tape {
                // Trades before the snapshot, for a fresh tape (marked as history).
                let mut v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                v["history"] = json!(true);
                snaps.push((i, 0, Utf8Bytes::from(v.to_string())));
            }
            snaps.push((
                i,
                b.seq,
                Utf8Bytes::from(self.snapshot_json(i, &b).to_string()),
            ));
        }
        (snaps, self.tx.subscribe())
    }
}

/// Parses `symbols=A,B`; `None` (no list, or an empty one): every symbol, those listed
/// later included.
pub fn symbol_set(
    specs: &Specs,
    list: Option<&str>,
) -> Result<Option<HashSet<InstrumentId>>, String> {
    match list.filter(|l| !l.is_empty()) {
        None => Ok(None),
        Some(l) => l
            .split(',')
            .map(|s| {
                specs
                    .by_symbol(s.trim())
                    .map(|x| x.id)
                    .ok_or_else(|| format!("unknown symbol {s:?}"))
            })
            .collect::<Result<_, _>>()
            .map(Some),
    }
}

/// The instruments of a subscription now (`None`: every one known).
fn instruments_of(specs: &Specs, symbols: &Option<HashSet<InstrumentId>>) -> HashSet<InstrumentId> {
    match symbols {
        Some(s) => s.clone(),
        None => specs.all().iter().map(|s| s.id).collect(),
    }
}

async fn send_snapshots(
    socket: &mut WebSocket,
    feed: &MdFeed,
    symbols: &Option<HashSet<InstrumentId>>,
    last: &mut BTreeMap<InstrumentId, u64>,
) -> Option<broadcast::Receiver<MdMsg>> {
    let (snaps, rx) = feed.subscribe(&instruments_of(&feed.specs, symbols));
    for (i, seq, j) in snaps {
        if seq > 0 || !last.contains_key(&i) {
            last.insert(i, seq);
        }
        socket.feed(Message::Text(j)).await.ok()?;
    }
    socket.flush().await.ok()?;
    Some(rx)
}

/// Notes that the client was heard from, and passes its message on.
fn heard_now<T>(heard: &mut std::time::Instant, msg: T) -> T {
    *heard = std::time::Instant::now();
    msg
}

/// Sends one message within `limit`; false when the connection is gone or too slow.
async fn timed(socket: &mut WebSocket, m: Message, limit: std::time::Duration) -> bool {
    match tokio::time::timeout(limit, socket.send(m)).await {
        Ok(r) => r.is_ok(),
        Err(_) => {
            metrics::dropped("write_timeout");
            false
        }
    }
}

/// Runs one market-data connection to its end. `symbols`: `None` for every symbol, those
/// listed while it runs included (their first snapshot comes on the feed).
pub async fn run(mut socket: WebSocket, app: Arc<App>, mut symbols: Option<HashSet<InstrumentId>>) {
    metrics::sessions("market_data", 1.0);
    let feed = Arc::clone(&app.md);
    let mut last: BTreeMap<InstrumentId, u64> = BTreeMap::new();
    if !app.take_snapshot() {
        crate::serve::session::close(
            &mut socket,
            crate::serve::session::CLOSE_POLICY,
            "rate_limited: too many book snapshots a second (--max-snapshots-per-sec)".into(),
        )
        .await;
        metrics::sessions("market_data", -1.0);
        return;
    }
    let mut rx = match send_snapshots(&mut socket, &feed, &symbols, &mut last).await {
        Some(rx) => rx,
        None => {
            metrics::sessions("market_data", -1.0);
            return;
        }
    };
    let limits = app.limits;
    let mut stopping = app.stopping_watch();
    // As for order entry: pings every third of the idle timeout, silence closes.
    let mut ping = tokio::time::interval(limits.idle_timeout / 3);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut heard = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = ping.tick() => {
                if heard.elapsed() >= limits.idle_timeout {
                    metrics::dropped("idle");
                    crate::serve::session::close(&mut socket, crate::serve::session::CLOSE_POLICY,
                        format!("idle: nothing heard for {:?}", limits.idle_timeout)).await;
                    break;
                }
                if !timed(&mut socket, Message::Ping(Vec::new().into()), limits.write_timeout).await {
                    break;
                }
            }
            _ = stopping.changed() => {
                crate::serve::session::close(&mut socket, crate::serve::session::CLOSE_AWAY,
                    "the server is stopping".into()).await;
                break;
            }
            m = rx.recv() => match m {
                Ok(m) => {
                    if symbols.as_ref().is_some_and(|s| !s.contains(&m.instrument)) {
                        continue;
                    }
                    // Covered by the snapshot this client got.
                    if last.get(&m.instrument).is_some_and(|s| m.seq <= *s) {
                        continue;
                    }
                    last.insert(m.instrument, m.seq);
                    if !timed(&mut socket, Message::Text(m.json), limits.write_timeout).await {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    metrics::dropped("md_slow_client");
                    let e = json!({"type": "error", "code": "slow_client",
                        "message": format!("fell {n} updates behind: disconnected; reconnect for fresh snapshots")});
                    let _ = timed(&mut socket, Message::Text(Utf8Bytes::from(e.to_string())), limits.write_timeout).await;
                    crate::serve::session::close(&mut socket, crate::serve::session::CLOSE_POLICY,
                        format!("slow client: {n} updates behind")).await;
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            msg = socket.recv() => match heard_now(&mut heard, msg) {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(Message::Text(t))) => {
                    // {"type":"subscribe","symbols":["A"]} or {"type":"snapshot"} (a resync).
                    let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                    let reply = match v.get("type").and_then(|t| t.as_str()) {
                        Some("subscribe") => {
                            let list = v.get("symbols").and_then(|s| s.as_array()).map(|a| {
                                a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(",")
                            });
                            match symbol_set(&app.specs, list.as_deref()) {
                                Ok(s) => { symbols = s; last.clear(); None }
                                Err(e) => Some(json!({"type": "error", "code": "unknown_symbol", "message": e})),
                            }
                        }
                        Some("snapshot") => { last.clear(); None }
                        _ => Some(json!({"type": "error", "code": "unknown_type",
                            "message": "market data takes {\"type\":\"subscribe\",\"symbols\":[...]} and {\"type\":\"snapshot\"}"})),
                    };
                    match reply {
                        Some(r) => {
                            if !timed(&mut socket, Message::Text(Utf8Bytes::from(r.to_string())), limits.write_timeout).await {
                                break;
                            }
                        }
                        None if !app.take_snapshot() => {
                            let e = json!({"type": "error", "code": "rate_limited",
                                "message": "too many book snapshots a second: ask again later"});
                            if !timed(&mut socket, Message::Text(Utf8Bytes::from(e.to_string())), limits.write_timeout).await {
                                break;
                            }
                        }
                        None => match send_snapshots(&mut socket, &feed, &symbols, &mut last).await {
                            Some(r) => rx = r,
                            None => break,
                        },
                    }
                }
                Some(Ok(_)) => {}
            }
        }
    }
    metrics::sessions("market_data", -1.0);
}
