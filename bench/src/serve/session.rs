//! One order-entry session over WebSocket: authentication, requests to commands, execution
//! reports back, rate limiting and cancel-on-disconnect.
//!
//! A session is bound to the account of its API key and can never act for another: every
//! command it submits carries that account, a message naming another account is refused
//! (`wrong_account`), and the engine refuses to touch another account's order
//! (`not_owner`). Order ids are assigned by the server (dense and unique in the engine); the
//! client names its orders with `cl_ord_id`.

use crate::serve::metrics;
use crate::serve::protocol::{
    self, to_json, ClientMsg, Dec, NewMsg, Out, ProtocolError, SideIn, StpIn, TifIn, TypeIn,
};
use crate::serve::router::{Registration, Report, SessionLink};
use crate::serve::App;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::SinkExt;
use ringex_engine::{
    AccountId, AllocGroupId, CommandKind, EdgeError, EventKind, InstrumentId, InstrumentSpec,
    NewOrder, OrderId, OrderType, Qty, RejectCode, SelfTradePrevention, Side, SubmitError,
    TimeInForce, Timestamp,
};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// Close code: policy violation (flooding, failed authentication, slow client).
pub const CLOSE_POLICY: u16 = 1008;
/// Close code: a frame over the size limit.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code: the server is going away (pipeline halted or shut down).
pub const CLOSE_AWAY: u16 = 1001;

struct OwnOrder {
    cl_ord_id: Option<Box<str>>,
    instrument: InstrumentId,
    side: Side,
    leaves: u64,
}

struct Pending {
    at: Instant,
    request: &'static str,
    req_id: Option<u64>,
}

/// A token bucket: `rate` messages a second, bursts of one second's worth.
pub(crate) struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
    refused_in_a_row: u64,
}

impl Bucket {
    pub(crate) fn new(rate: u32) -> Self {
        Bucket {
            rate: rate.max(1) as f64,
            tokens: rate.max(1) as f64,
            last: Instant::now(),
            refused_in_a_row: 0,
        }
    }

    pub(crate) fn take(&mut self) -> bool {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refused_in_a_row = 0;
            true
        } else {
            self.refused_in_a_row += 1;
            false
        }
    }
}

/// What a session's state machine asks the socket loop to do.
enum Step {
    Reply(Vec<String>),
    Close(u16, String),
}

struct Session {
    app: Arc<App>,
    id: u64,
    account: Option<AccountId>,
    cancel_on_disconnect: bool,
    gateway: ringex_engine::Gateway,
    /// Requests sent and not yet answered in full, by input sequence (ascending: one session
    /// submits in order).
    pending: VecDeque<(u64, Pending)>,
    orders: FxHashMap<u64, OwnOrder>,
    bucket: Bucket,
    bad_keys: u32,
    /// The API key it authenticated with (its sessions are counted).
    key: Option<String>,
    reports: Option<mpsc::Receiver<Report>>,
    overflowed: Arc<AtomicBool>,
    /// The input sequence of the last command submitted.
    last_submitted: Option<u64>,
    /// Drop copy: every order of the account is reported, whoever placed it.
    all: bool,
}

fn side_str(s: Side) -> &'static str {
    match s {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

fn tif_str(t: TimeInForce) -> &'static str {
    match t {
        TimeInForce::Gtc => "gtc",
        TimeInForce::Ioc => "ioc",
        TimeInForce::Fok => "fok",
        TimeInForce::Gtd => "gtd",
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        metrics::pending_requests(-(self.pending.len() as f64));
    }
}

impl Session {
    fn new(app: Arc<App>) -> Self {
        let id = app
            .next_session
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let gateway = app.gateway();
        let bucket = Bucket::new(app.limits.max_msgs_per_sec);
        Session {
            app,
            id,
            account: None,
            cancel_on_disconnect: false,
            gateway,
            pending: VecDeque::new(),
            orders: FxHashMap::default(),
            bucket,
            bad_keys: 0,
            key: None,
            reports: None,
            overflowed: Arc::new(AtomicBool::new(false)),
            last_submitted: None,
            all: false,
        }
    }

    /// Binds the session to `account` and registers it with the report router, with a
    /// queue of `queue` reports.
    fn join(&mut self, account: AccountId, queue: usize) {
        self.account = Some(account);
        let (tx, rx) = mpsc::channel(queue);
        self.reports = Some(rx);
        let _ = self.app.registry.send(Registration::Join(
            account,
            SessionLink {
                id: self.id,
                tx,
                overflowed: Arc::clone(&self.overflowed),
            },
        ));
    }

    fn on_text(&mut self, text: &str) -> Step {
        if !self.bucket.take() {
            metrics::dropped_message("rate_limited");
            if self.bucket.refused_in_a_row > 2 * self.bucket.rate as u64 {
                return Step::Close(
                    CLOSE_POLICY,
                    "flooding: over the message rate limit for too long".into(),
                );
            }
            let e = ProtocolError::new(
                "rate_limited",
                format!(
                    "more than {} messages a second: this one was not taken",
                    self.bucket.rate
                ),
                None,
            );
            return Step::Reply(vec![e.to_json()]);
        }
        let msg = match protocol::parse(text) {
            Ok(m) => m,
            Err(e) => return Step::Reply(vec![e.to_json()]),
        };
        match self.on_msg(msg) {
            Ok(out) => Step::Reply(out),
            Err(Ok(e)) => Step::Reply(vec![e.to_json()]),
            Err(Err((code, why))) => Step::Close(code, why),
        }
    }

    /// `Err(Ok(e))`: an error reply; `Err(Err(..))`: close the connection.
    #[allow(clippy::type_complexity)]
    fn on_msg(
        &mut self,
        msg: ClientMsg,
    ) -> Result<Vec<String>, Result<ProtocolError, (u16, String)>> {
        if let ClientMsg::Auth {
            key,
            cancel_on_disconnect,
        } = &msg
        {
            if self.account.is_some() {
                return Err(Ok(ProtocolError::new(
                    "invalid_message",
                    "this session is already authenticated",
                    None,
                )));
            }
            if self.app.admin_keys.contains(key.as_str()) {
                return Err(Ok(ProtocolError::new(
                    "forbidden",
                    "an admin key places no orders: use a trader key",
                    None,
                )));
            }
            let Some(&account) = self.app.keys.get(key.as_str()) else {
                self.bad_keys += 1;
                if self.bad_keys >= 3 {
                    return Err(Err((CLOSE_POLICY, "authentication failed 3 times".into())));
                }
                return Err(Ok(ProtocolError::new("bad_key", "unknown API key", None)));
            };
            if !self.app.open_session(key) {
                metrics::dropped("sessions_per_key");
                return Err(Err((
                    CLOSE_POLICY,
                    format!(
                        "this key has {} sessions open already (--max-sessions-per-key)",
                        self.app.limits.max_sessions_per_key
                    ),
                )));
            }
            self.key = Some(key.clone());
            self.cancel_on_disconnect = *cancel_on_disconnect;
            self.join(account, self.app.limits.report_queue);
            return Ok(vec![to_json(&Out::Authenticated {
                account: account.0,
                session: self.id,
                cancel_on_disconnect: self.cancel_on_disconnect,
            })]);
        }
        if let ClientMsg::Ping { req_id } = msg {
            return Ok(vec![to_json(&Out::Pong { req_id })]);
        }
        let Some(account) = self.account else {
            return Err(Ok(ProtocolError::new(
                "not_authenticated",
                "send {\"type\":\"auth\",\"key\":\"...\"} first",
                None,
            )));
        };
        let check_account = |a: Option<u64>, req_id| match a {
            Some(a) if a != account.0 => Err(Ok(ProtocolError::new(
                "wrong_account",
                format!("this session acts for account {} only, not {a}", account.0),
                req_id,
            ))),
            _ => Ok(()),
        };
        match msg {
            ClientMsg::New(n) => {
                check_account(n.account, n.req_id)?;
                self.new_order(account, n)
            }
            ClientMsg::Cancel {
                order_id,
                symbol,
                account: a,
                req_id,
            } => {
                check_account(a, req_id)?;
                let kind = match self.instrument_of(order_id, symbol.as_deref(), req_id)? {
                    Ok(instrument) => CommandKind::Cancel {
                        instrument,
                        account,
                        order_id: OrderId(order_id),
                    },
                    Err(code) => invalid(None, Some(order_id), account, code),
                };
                self.submit(kind, "cancel", req_id).map_err(Ok)?;
                Ok(vec![])
            }
            ClientMsg::Modify {
                order_id,
                price,
                qty,
                symbol,
                account: a,
                req_id,
            } => {
                check_account(a, req_id)?;
                let kind = match self.instrument_of(order_id, symbol.as_deref(), req_id)? {
                    Ok(instrument) => {
                        let spec = self.app.specs.by_id(instrument);
                        match (
                            convert(spec.as_deref(), &price, true, req_id).map_err(Ok)?,
                            convert(spec.as_deref(), &qty, false, req_id).map_err(Ok)?,
                        ) {
                            (Ok(p), Ok(q)) => CommandKind::Modify {
                                instrument,
                                account,
                                order_id: OrderId(order_id),
                                price: ringex_engine::Price(p as i64),
                                qty: Qty(q),
                            },
                            (Err(c), _) | (_, Err(c)) => {
                                invalid(Some(instrument), Some(order_id), account, c)
                            }
                        }
                    }
                    Err(code) => invalid(None, Some(order_id), account, code),
                };
                self.submit(kind, "modify", req_id).map_err(Ok)?;
                Ok(vec![])
            }
            ClientMsg::MassCancel {
                symbol,
                account: a,
                req_id,
            } => {
                check_account(a, req_id)?;
                let kind = match symbol.as_deref() {
                    None => CommandKind::MassCancel {
                        account,
                        instrument: None,
                    },
                    Some(s) => match self.app.specs.by_symbol(s) {
                        Some(spec) => CommandKind::MassCancel {
                            account,
                            instrument: Some(spec.id),
                        },
                        None => invalid(None, None, account, RejectCode::UnknownInstrument),
                    },
                };
                self.submit(kind, "mass_cancel", req_id).map_err(Ok)?;
                Ok(vec![])
            }
            ClientMsg::Auth { .. } | ClientMsg::Ping { .. } => Ok(vec![]),
        }
    }

    /// The instrument of an order: this session's own record, or the symbol given.
    #[allow(clippy::type_complexity)]
    fn instrument_of(
        &self,
        order_id: u64,
        symbol: Option<&str>,
        req_id: Option<u64>,
    ) -> Result<Result<InstrumentId, RejectCode>, Result<ProtocolError, (u16, String)>> {
        if let Some(o) = self.orders.get(&order_id) {
            return Ok(Ok(o.instrument));
        }
        match symbol {
            Some(s) => Ok(self
                .app
                .specs
                .by_symbol(s)
                .map(|s| s.id)
                .ok_or(RejectCode::UnknownInstrument)),
            None => Err(Ok(ProtocolError::new(
                "invalid_message",
                "symbol is required for an order this session did not place",
                req_id,
            ))),
        }
    }

    fn new_order(
        &mut self,
        account: AccountId,
        n: NewMsg,
    ) -> Result<Vec<String>, Result<ProtocolError, (u16, String)>> {
        let id = self.app.ids.next(self.cancel_on_disconnect).map_err(|e| {
            Ok(ProtocolError::new(
                "unavailable",
                format!("no order id: {e}"),
                n.req_id,
            ))
        })?;
        let Some(spec) = self.app.specs.by_symbol(&n.symbol) else {
            self.submit(
                invalid(None, Some(id), account, RejectCode::UnknownInstrument),
                "new",
                n.req_id,
            )
            .map_err(Ok)?;
            return Ok(vec![]);
        };
        let order_type = match n.order_type {
            TypeIn::Limit => OrderType::Limit,
            TypeIn::Market => OrderType::Market,
        };
        let (tif, expiry) = match n.tif {
            TifIn::Gtc => (TimeInForce::Gtc, 0),
            TifIn::Ioc => (TimeInForce::Ioc, 0),
            TifIn::Fok => (TimeInForce::Fok, 0),
            TifIn::Gtd => match n.expiry {
                Some(e) => (TimeInForce::Gtd, e),
                None => {
                    return Err(Ok(ProtocolError::new(
                        "invalid_message",
                        "a gtd order needs \"expiry\" (ns since the UNIX epoch)",
                        n.req_id,
                    )))
                }
            },
        };
        let price = match (order_type, &n.price) {
            (OrderType::Market, _) => Ok(0),
            (OrderType::Limit, None) => Err(RejectCode::MissingPrice),
            (OrderType::Limit, Some(p)) => convert(Some(&spec), p, true, n.req_id).map_err(Ok)?,
        };
        let qty = convert(Some(&spec), &n.qty, false, n.req_id).map_err(Ok)?;
        // An iceberg's display size that is not a whole number of lots above 0 is
        // `invalid_display`; a trigger converts like a price.
        let display = match &n.display {
            None => Ok(0),
            Some(d) => match convert(Some(&spec), d, false, n.req_id).map_err(Ok)? {
                Ok(q) if q > 0 => Ok(q),
                _ => Err(RejectCode::InvalidDisplay),
            },
        };
        let stop = match &n.stop {
            None => Ok(None),
            Some(p) => convert(Some(&spec), p, true, n.req_id)
                .map_err(Ok)?
                .map(|p| Some(ringex_engine::Price(p as i64))),
        };
        let price = price
            .and_then(|p| display.map(|_| p))
            .and_then(|p| stop.map(|_| p));
        let side = match n.side {
            SideIn::Buy => Side::Buy,
            SideIn::Sell => Side::Sell,
        };
        let kind = match (price, qty) {
            (Ok(p), Ok(q)) => CommandKind::NewOrder(NewOrder {
                instrument: spec.id,
                account,
                order_id: OrderId(id),
                side,
                order_type,
                tif,
                expiry: Timestamp(expiry),
                price: ringex_engine::Price(p as i64),
                qty: Qty(q),
                post_only: n.post_only,
                stp: match n.stp {
                    StpIn::CancelTaker => SelfTradePrevention::CancelTaker,
                    StpIn::CancelMaker => SelfTradePrevention::CancelMaker,
                    StpIn::CancelBoth => SelfTradePrevention::CancelBoth,
                    StpIn::Allow => SelfTradePrevention::Allow,
                },
                alloc_group: AllocGroupId::NONE,
            }),
            (Err(c), _) | (_, Err(c)) => invalid(Some(spec.id), Some(id), account, c),
        };
        let instrument = spec.id;
        self.orders.insert(
            id,
            OwnOrder {
                cl_ord_id: n.cl_ord_id.map(|c| c.into_boxed_str()),
                instrument,
                side,
                leaves: qty.unwrap_or(0),
            },
        );
        let terms = ringex_engine::OrderTerms {
            instrument,
            order_id: OrderId(id),
            display: Qty(display.unwrap_or(0)),
            stop: stop.unwrap_or(None),
        };
        let r = match kind {
            CommandKind::NewOrder(o) if !terms.is_plain() => {
                self.submit_with(|g| g.try_submit_order(terms, o), 2, true, "new", n.req_id)
            }
            _ => self.submit(kind, "new", n.req_id),
        };
        if let Err(e) = r {
            self.orders.remove(&id);
            return Err(Ok(e));
        }
        Ok(vec![])
    }

    fn submit(
        &mut self,
        kind: CommandKind,
        request: &'static str,
        req_id: Option<u64>,
    ) -> Result<(), ProtocolError> {
        // A mass cancel that finds nothing makes no event: only its rejection is awaited.
        let awaited = request != "mass_cancel" || matches!(kind, CommandKind::Invalid { .. });
        self.submit_with(|g| g.try_submit(kind), 1, awaited, request, req_id)
    }

    /// Submits through `f` (`commands` ring slots; the last one's sequence is awaited).
    fn submit_with(
        &mut self,
        f: impl FnOnce(
            &mut ringex_engine::pipeline::Gateway,
        ) -> Result<ringex_engine::Sequence, SubmitError>,
        commands: u64,
        awaited: bool,
        request: &'static str,
        req_id: Option<u64>,
    ) -> Result<(), ProtocolError> {
        // Never spin or block an async worker on a full ring: the client hears `busy`.
        let seq = match f(&mut self.gateway) {
            Ok(s) => s,
            Err(SubmitError::Busy) => {
                return Err(ProtocolError::new(
                    "busy",
                    "the engine's input ring is full: retry later",
                    req_id,
                ))
            }
            Err(e) => return Err(ProtocolError::new("unavailable", e.to_string(), req_id)),
        };
        self.app
            .submitted
            .fetch_add(commands, std::sync::atomic::Ordering::Relaxed);
        self.last_submitted = Some(seq.0);
        metrics::command(request);
        if awaited {
            self.pending.push_back((
                seq.0,
                Pending {
                    at: Instant::now(),
                    request,
                    req_id,
                },
            ));
            metrics::pending_requests(1.0);
        }
        Ok(())
    }

    fn symbol(&self, i: InstrumentId) -> String {
        self.app.specs.symbol(i)
    }

    fn px(&self, i: InstrumentId, p: i64) -> String {
        self.app
            .specs
            .by_id(i)
            .map_or_else(|| p.to_string(), |s| s.price_text(ringex_engine::Price(p)))
    }

    fn qty(&self, i: InstrumentId, q: u64) -> String {
        self.app
            .specs
            .by_id(i)
            .map_or_else(|| q.to_string(), |s| s.qty_text(q as u128))
    }

    /// The reports of one routed event for this session (possibly none).
    fn on_report(&mut self, r: Report, out: &mut Vec<String>) {
        let e = r.event;
        let cmd = e.cmd_seq().0;
        self.complete_before(cmd);
        let (request, req_id) = match self.pending.front() {
            Some((s, p)) if *s == cmd => (Some(p.request), p.req_id),
            _ => (None, None),
        };
        let seq = r.seq;
        match e.kind {
            EventKind::Accepted { order_id, .. } if request.is_some() || self.all => {
                if let (Some(own), Some(o)) =
                    (self.orders.get(&order_id.0), e.kind.accepted_order())
                {
                    out.push(to_json(&Out::Accepted {
                        seq,
                        order_id: o.order_id.0,
                        cl_ord_id: own.cl_ord_id.as_deref(),
                        symbol: &self.symbol(o.instrument),
                        side: side_str(o.side),
                        order_type: match o.order_type {
                            OrderType::Limit => "limit",
                            OrderType::Market => "market",
                        },
                        tif: tif_str(o.tif),
                        price: (o.order_type == OrderType::Limit)
                            .then(|| self.px(o.instrument, o.price.0)),
                        qty: self.qty(o.instrument, o.qty.0),
                    }));
                }
            }
            EventKind::Rejected {
                instrument,
                order_id,
                code,
                ..
            } => {
                if let Some(request) = request.or(self.all.then_some("order")) {
                    let own = if request == "new" {
                        order_id.and_then(|id| self.orders.remove(&id.0))
                    } else {
                        None
                    };
                    out.push(to_json(&Out::Rejected {
                        seq,
                        request,
                        code: code.as_str(),
                        order_id: order_id.map(|o| o.0),
                        cl_ord_id: own.as_ref().and_then(|o| o.cl_ord_id.as_deref()),
                        symbol: instrument.map(|i| self.symbol(i)).as_deref(),
                        req_id,
                    }));
                }
            }
            EventKind::Fill {
                instrument,
                taker,
                maker,
                price,
                qty,
                ..
            } => {
                // The taker is this session's order (its own request, or one of its stops
                // triggered by another command): `fill` reports only own orders.
                self.fill(seq, instrument, taker.0, price.0, qty.0, "taker", out);
                self.fill(seq, instrument, maker.0, price.0, qty.0, "maker", out);
            }
            EventKind::Triggered {
                instrument,
                order_id,
                ..
            } => {
                if let Some(own) = self.orders.get(&order_id.0) {
                    out.push(to_json(&Out::Triggered {
                        seq,
                        order_id: order_id.0,
                        cl_ord_id: own.cl_ord_id.as_deref(),
                        symbol: &self.symbol(instrument),
                    }));
                }
            }
            EventKind::Cancelled {
                instrument,
                order_id,
                qty,
                reason,
                ..
            } => {
                if let Some(own) = self.orders.remove(&order_id.0) {
                    out.push(to_json(&Out::Cancelled {
                        seq,
                        order_id: order_id.0,
                        cl_ord_id: own.cl_ord_id.as_deref(),
                        symbol: &self.symbol(instrument),
                        qty: self.qty(instrument, qty.0),
                        reason: reason.as_str(),
                        req_id: req_id.filter(|_| request == Some("cancel")),
                    }));
                }
            }
            EventKind::Modified {
                instrument,
                order_id,
                price,
                qty,
                kept_priority,
                side,
                ..
            } => {
                if let Some(own) = self.orders.get_mut(&order_id.0) {
                    own.leaves = qty.0;
                    // (An order a REST call modifies is known by id only until now.)
                    own.side = side;
                    let own = &self.orders[&order_id.0];
                    out.push(to_json(&Out::Modified {
                        seq,
                        order_id: order_id.0,
                        cl_ord_id: own.cl_ord_id.as_deref(),
                        symbol: &self.symbol(instrument),
                        price: self.px(instrument, price.0),
                        qty: self.qty(instrument, qty.0),
                        kept_priority,
                        req_id: req_id.filter(|_| request == Some("modify")),
                    }));
                }
            }
            EventKind::Expired {
                instrument,
                order_id,
                qty,
                ..
            } => {
                if let Some(own) = self.orders.remove(&order_id.0) {
                    out.push(to_json(&Out::Expired {
                        seq,
                        order_id: order_id.0,
                        cl_ord_id: own.cl_ord_id.as_deref(),
                        symbol: &self.symbol(instrument),
                        qty: self.qty(instrument, qty.0),
                    }));
                }
            }
            _ => {}
        }
        if e.is_last_of_command() {
            self.complete_before(cmd + 1);
        }
    }

    /// Every request of a command before `cmd` is answered in full: the router hands a
    /// session its events in sequence order, so a report of a later command means the earlier
    /// ones are done (also when their last event concerned nobody here).
    fn complete_before(&mut self, cmd: u64) {
        while self.pending.front().is_some_and(|(s, _)| *s < cmd) {
            if let Some((_, p)) = self.pending.pop_front() {
                metrics::roundtrip(p.at.elapsed().as_secs_f64());
                metrics::pending_requests(-1.0);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn fill(
        &mut self,
        seq: u64,
        instrument: InstrumentId,
        id: u64,
        price: i64,
        qty: u64,
        liquidity: &'static str,
        out: &mut Vec<String>,
    ) {
        let Some(own) = self.orders.get_mut(&id) else {
            return;
        };
        own.leaves = own.leaves.saturating_sub(qty);
        let (leaves, side) = (own.leaves, own.side);
        let json = to_json(&Out::Fill {
            seq,
            order_id: id,
            cl_ord_id: self.orders[&id].cl_ord_id.as_deref(),
            symbol: &self.symbol(instrument),
            side: side_str(side),
            liquidity,
            price: self.px(instrument, price),
            qty: self.qty(instrument, qty),
            leaves_qty: self.qty(instrument, leaves),
        });
        out.push(json);
        if leaves == 0 {
            self.orders.remove(&id);
        }
    }

    /// Leaves the router; with cancel-on-disconnect, cancels this session's open orders.
    /// The session is over: it leaves the router and, with cancel-on-disconnect, cancels
    /// every open order it placed. A full input ring is waited out asynchronously (never on
    /// a spinning worker); a halted engine refuses the cancels, and then the restart cancels
    /// those orders (their ids mark them: [`super::ids::COD_BASE`]).
    async fn end(&mut self) {
        if let Some(k) = self.key.take() {
            self.app.close_session(&k);
        }
        let Some(a) = self.account else {
            return;
        };
        let _ = self.app.registry.send(Registration::Leave(a, self.id));
        if !self.cancel_on_disconnect {
            return;
        }
        let open: Vec<(u64, InstrumentId)> = self
            .orders
            .iter()
            .map(|(id, o)| (*id, o.instrument))
            .collect();
        for (id, instrument) in open {
            let kind = CommandKind::Cancel {
                instrument,
                account: a,
                order_id: OrderId(id),
            };
            let deadline = Instant::now() + std::time::Duration::from_secs(5);
            loop {
                match self.gateway.try_submit(kind) {
                    Ok(_) => {
                        self.app
                            .submitted
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        metrics::command("cancel_on_disconnect");
                        break;
                    }
                    Err(SubmitError::Busy) if Instant::now() < deadline => {
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    }
                    Err(e) => {
                        tracing::warn!(
                            "cancel-on-disconnect of order {id} not sequenced now ({e}): the \
                             restart cancels it"
                        );
                        break;
                    }
                }
            }
        }
    }
}

/// A REST call's session: bound to one account, registered with the report router for the
/// call only (no cancel-on-disconnect), and done when its command's reports are all in.
pub(crate) struct RestSession {
    s: Session,
}

/// Why a REST call got no complete answer.
pub(crate) enum RestWait {
    /// The engine halted or the server is stopping.
    Unavailable,
    /// The reports did not come within the time allowed.
    Timeout,
}

impl RestSession {
    /// A session for `account`, registered with the router before anything is submitted.
    pub(crate) fn new(app: Arc<App>, account: AccountId) -> Self {
        let mut s = Session::new(app);
        // One command's reports (a sweep of a deep book makes a few thousand).
        let queue = s.app.limits.report_queue.min(4096);
        s.join(account, queue);
        RestSession { s }
    }

    /// Makes an order placed elsewhere (another session, an earlier call) known to this
    /// one, so that its reports are written: its instrument, its side when known.
    pub(crate) fn know(&mut self, order_id: u64, instrument: InstrumentId, side: Side) {
        self.s.orders.insert(
            order_id,
            OwnOrder {
                cl_ord_id: None,
                instrument,
                side,
                leaves: 0,
            },
        );
    }

    /// Takes one request as the WebSocket session takes it (the same checks and commands):
    /// immediate replies, or the error that stopped it (nothing sequenced).
    pub(crate) fn request(&mut self, msg: ClientMsg) -> Result<Vec<String>, ProtocolError> {
        match self.s.on_msg(msg) {
            Ok(v) => Ok(v),
            Err(Ok(e)) => Err(e),
            Err(Err((_, why))) => Err(ProtocolError::new("invalid_message", why, None)),
        }
    }

    /// An order of this account that the call's command cancels (a mass cancel, a
    /// self-trade's maker) is reported too, although the call did not name it.
    fn adopt(&mut self, r: &Report) {
        // Only the call's own command (another call of the account may run beside it).
        if Some(r.event.cmd_seq().0) != self.s.last_submitted {
            return;
        }
        if let EventKind::Cancelled {
            instrument,
            order_id,
            account,
            side,
            ..
        } = r.event.kind
        {
            if Some(account) == self.s.account && !self.s.orders.contains_key(&order_id.0) {
                self.know(order_id.0, instrument, side);
            }
        }
    }

    /// The order id the last `new` request was given.
    pub(crate) fn placed(&self) -> Option<u64> {
        self.s.orders.keys().copied().max()
    }

    /// Waits until every command submitted is routed (its reports are all in the queue),
    /// and returns the reports written for them.
    pub(crate) async fn reports(
        &mut self,
        limit: std::time::Duration,
    ) -> Result<Vec<String>, RestWait> {
        let mut out = Vec::new();
        let last = self.s.last_submitted;
        // A mass cancel that finds nothing makes no event: it is not awaited by report, only
        // by the router's progress.
        let awaited = !self.s.pending.is_empty();
        let deadline = tokio::time::Instant::now() + limit;
        let mut halted = self.s.app.halted_watch();
        if halted.borrow().is_some() {
            return Err(RestWait::Unavailable);
        }
        let Some(last) = last else {
            return Ok(out);
        };
        let progress = Arc::clone(&self.s.app.progress);
        loop {
            // Everything routed through the last command is in the queue now.
            let routed = progress
                .routed_cmd_seq
                .load(std::sync::atomic::Ordering::Acquire)
                >= last;
            while let Some(Ok(r)) = self.s.reports.as_mut().map(|rx| rx.try_recv()) {
                self.adopt(&r);
                self.s.on_report(r, &mut out);
            }
            if routed || (awaited && self.s.pending.is_empty()) {
                self.s.complete_before(last + 1);
                return Ok(out);
            }
            if self.s.overflowed.load(Ordering::Acquire) {
                return Err(RestWait::Unavailable);
            }
            let rx = self.s.reports.as_mut();
            tokio::select! {
                r = async { match rx { Some(rx) => rx.recv().await, None => None } } => {
                    if let Some(r) = r {
                        self.adopt(&r);
                        self.s.on_report(r, &mut out);
                    }
                }
                // The router's progress is polled too: a command whose last event concerns
                // another account sends nothing more here.
                _ = tokio::time::sleep(std::time::Duration::from_millis(1)) => {}
                _ = halted.changed() => return Err(RestWait::Unavailable),
                _ = tokio::time::sleep_until(deadline) => return Err(RestWait::Timeout),
            }
        }
    }
}

impl Drop for RestSession {
    fn drop(&mut self) {
        if let Some(a) = self.s.account {
            let _ = self.s.app.registry.send(Registration::Leave(a, self.s.id));
        }
    }
}

/// A drop-copy session: every execution report of one account, whichever session or call
/// caused it, as the order session writes them (without the placing client's `cl_ord_id`).
pub(crate) struct DropCopySession {
    s: Session,
    /// The account of the current command's incoming order (its fills name only the maker).
    taker_account: AccountId,
}

impl DropCopySession {
    /// A drop copy of `account`'s reports, registered with the router now.
    pub(crate) fn new(app: Arc<App>, account: AccountId) -> Self {
        let mut s = Session::new(app);
        s.all = true;
        let queue = s.app.limits.report_queue;
        s.join(account, queue);
        DropCopySession {
            s,
            taker_account: AccountId(0),
        }
    }

    /// The live reports' queue.
    pub(crate) fn live(&mut self) -> Option<&mut mpsc::Receiver<Report>> {
        self.s.reports.as_mut()
    }

    /// Whether the router dropped the session (its queue overflowed).
    pub(crate) fn overflowed(&self) -> bool {
        self.s.overflowed.load(Ordering::Acquire)
    }

    /// The reports of one event (from the router, or replayed from the journal: then every
    /// account's events come, and those of others are skipped).
    pub(crate) fn on_event(&mut self, r: Report, out: &mut Vec<String>) {
        let Some(me) = self.s.account else {
            return;
        };
        let e = r.event;
        match e.kind {
            EventKind::Accepted { account, .. }
            | EventKind::Modified { account, .. }
            | EventKind::Triggered { account, .. } => self.taker_account = account,
            _ => {}
        }
        let (a, b) = crate::serve::router::accounts(&e, self.taker_account, AccountId(0));
        if a != Some(me) && b != Some(me) {
            return;
        }
        // Every order of the account is its own here: learn it from the event.
        match e.kind {
            EventKind::Accepted {
                account, order_id, ..
            } if account == me => {
                if let Some(o) = e.kind.accepted_order() {
                    self.s.orders.insert(
                        order_id.0,
                        OwnOrder {
                            cl_ord_id: None,
                            instrument: o.instrument,
                            side: o.side,
                            leaves: o.qty.0,
                        },
                    );
                }
            }
            EventKind::Fill {
                instrument,
                maker,
                maker_account,
                qty,
                maker_left,
                taker_side,
                ..
            } if maker_account == me && !self.s.orders.contains_key(&maker.0) => {
                self.s.orders.insert(
                    maker.0,
                    OwnOrder {
                        cl_ord_id: None,
                        instrument,
                        side: taker_side.opposite(),
                        leaves: maker_left.0 + qty.0,
                    },
                );
            }
            EventKind::Cancelled {
                instrument,
                order_id,
                account,
                side,
                ..
            }
            | EventKind::Expired {
                instrument,
                order_id,
                account,
                side,
                ..
            }
            | EventKind::Triggered {
                instrument,
                order_id,
                account,
                side,
                ..
            }
            | EventKind::Modified {
                instrument,
                order_id,
                account,
                side,
                ..
            } if account == me && !self.s.orders.contains_key(&order_id.0) => {
                self.s.orders.insert(
                    order_id.0,
                    OwnOrder {
                        cl_ord_id: None,
                        instrument,
                        side,
                        leaves: 0,
                    },
                );
            }
            _ => {}
        }
        self.s.on_report(r, out);
    }
}

impl Drop for DropCopySession {
    fn drop(&mut self) {
        if let Some(a) = self.s.account {
            let _ = self.s.app.registry.send(Registration::Leave(a, self.s.id));
        }
    }
}

fn invalid(
    instrument: Option<InstrumentId>,
    order_id: Option<u64>,
    account: AccountId,
    code: RejectCode,
) -> CommandKind {
    CommandKind::Invalid {
        instrument,
        order_id: order_id.map(OrderId),
        account,
        code,
    }
}

/// A price (`price`) or quantity in whole ticks or lots: the inner `Err` is a reject code
/// to sequence (off tick, zero quantity…); the outer one a message that is not a number.
#[allow(clippy::type_complexity)]
fn convert(
    spec: Option<&InstrumentSpec>,
    d: &Dec,
    price: bool,
    req_id: Option<u64>,
) -> Result<Result<u64, RejectCode>, ProtocolError> {
    let Some(spec) = spec else {
        return Ok(Err(RejectCode::UnknownInstrument));
    };
    let text = d.text();
    let r = if price {
        spec.parse_price(&text).map(|p| p.0 as u64)
    } else {
        spec.parse_qty(&text).map(|q| q.0)
    };
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(EdgeError::Reject(c)) => Ok(Err(c)),
        Err(EdgeError::NotANumber) => Err(ProtocolError::new(
            "invalid_message",
            format!(
                "{} {text:?} is not a decimal number",
                if price { "price" } else { "qty" }
            ),
            req_id,
        )),
    }
}

/// Sends messages in one flush; false when the connection is gone or the write took longer
/// than `limit` (a client that does not read).
async fn send_all(
    socket: &mut WebSocket,
    msgs: impl IntoIterator<Item = String>,
    limit: std::time::Duration,
) -> bool {
    let write = async {
        let mut ok = true;
        for m in msgs {
            ok &= socket.feed(Message::Text(m.into())).await.is_ok();
        }
        ok && socket.flush().await.is_ok()
    };
    match tokio::time::timeout(limit, write).await {
        Ok(ok) => ok,
        Err(_) => {
            metrics::dropped("write_timeout");
            false
        }
    }
}

/// Sends a close frame and waits (at most a second) for the client's, discarding what it
/// still sends, so the reason reaches it instead of a reset.
pub async fn close(socket: &mut WebSocket, code: u16, reason: String) {
    let reason: String = reason.chars().take(120).collect();
    let send = socket.send(Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    })));
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), send).await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        while let Some(Ok(m)) = socket.recv().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Runs one order-entry connection to its end.
pub async fn run(mut socket: WebSocket, app: Arc<App>) {
    metrics::sessions("order_entry", 1.0);
    app.live_sessions
        .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    let mut s = Session::new(Arc::clone(&app));
    let mut out = Vec::with_capacity(64);
    let mut halted = app.halted_watch();
    let mut stopping = app.stopping_watch();
    let limits = app.limits;
    // Pings every third of the idle timeout; silence (no frame at all, pongs included) for
    // the whole of it closes the connection: a half-open client is noticed.
    let mut ping = tokio::time::interval(limits.idle_timeout / 3);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut heard = Instant::now();
    let auth_deadline = tokio::time::Instant::now() + limits.auth_timeout;
    loop {
        let reports = async {
            match s.reports.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        let unauthenticated = s.account.is_none();
        tokio::select! {
            msg = socket.recv() => {
                heard = Instant::now();
                match msg {
                    None | Some(Ok(Message::Close(_))) => break,
                    Some(Err(e)) => {
                        let text = e.to_string();
                        if text.to_ascii_lowercase().contains("too") {
                            metrics::dropped("frame_too_big");
                            close(&mut socket, CLOSE_TOO_BIG, format!("frame over {} bytes", app.limits.max_frame)).await;
                        }
                        break;
                    }
                    Some(Ok(Message::Text(t))) => match s.on_text(t.as_str()) {
                        Step::Reply(v) => {
                            if !send_all(&mut socket, v, limits.write_timeout).await {
                                break;
                            }
                        }
                        Step::Close(code, why) => {
                            metrics::dropped("policy");
                            close(&mut socket, code, why).await;
                            break;
                        }
                    },
                    Some(Ok(Message::Binary(_))) => {
                        let e = ProtocolError::new("invalid_message", "binary frames are not taken: send JSON text", None);
                        if !send_all(&mut socket, [e.to_json()], limits.write_timeout).await {
                            break;
                        }
                    }
                    Some(Ok(_)) => {}
                }
            }
            r = reports => {
                match r {
                    Some(r) => {
                        s.on_report(r, &mut out);
                        // Whatever else is queued goes in the same flush.
                        while out.len() < 256 {
                            match s.reports.as_mut().map(|rx| rx.try_recv()) {
                                Some(Ok(r)) => s.on_report(r, &mut out),
                                _ => break,
                            }
                        }
                        if !send_all(&mut socket, out.drain(..), limits.write_timeout).await {
                            break;
                        }
                    }
                    None => {
                        if s.overflowed.load(Ordering::Acquire) {
                            metrics::dropped("slow_client");
                            close(&mut socket, CLOSE_POLICY, "slow client: execution reports overflowed its queue".into()).await;
                        }
                        break;
                    }
                }
            }
            _ = ping.tick() => {
                if heard.elapsed() >= limits.idle_timeout {
                    metrics::dropped("idle");
                    close(&mut socket, CLOSE_POLICY, format!("idle: nothing heard for {:?}", limits.idle_timeout)).await;
                    break;
                }
                let ping = tokio::time::timeout(limits.write_timeout, socket.send(Message::Ping(Vec::new().into())));
                if !matches!(ping.await, Ok(Ok(()))) {
                    break;
                }
            }
            _ = tokio::time::sleep_until(auth_deadline), if unauthenticated => {
                metrics::dropped("auth_timeout");
                close(&mut socket, CLOSE_POLICY, format!("not authenticated within {:?}", limits.auth_timeout)).await;
                break;
            }
            _ = halted.changed() => {
                let why = halted.borrow().clone().unwrap_or_default();
                close(&mut socket, CLOSE_AWAY, format!("the engine stopped: {why}")).await;
                break;
            }
            _ = stopping.changed() => {
                close(&mut socket, CLOSE_AWAY, "the server is stopping".into()).await;
                break;
            }
        }
    }
    s.end().await;
    app.live_sessions
        .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    metrics::sessions("order_entry", -1.0);
}
