//! The JSON messages of `ringex serve` (docs/server.md: "Order entry over WebSocket").
//!
//! Client → server (order entry), one JSON object per text frame, tagged by `type`:
//! `auth`, `new`, `cancel`, `modify`, `mass_cancel`, `ping`. Server → client: `authenticated`,
//! the execution reports `accepted`, `rejected`, `fill`, `cancelled`, `modified`, `expired`,
//! and `error` (a message the server could not take; nothing was sequenced), `pong`.
//! Prices and quantities are decimal strings (JSON numbers are accepted too).

use serde::{Deserialize, Serialize};

/// The message types a client may send.
pub const CLIENT_TYPES: [&str; 6] = ["auth", "new", "cancel", "modify", "mass_cancel", "ping"];

/// The longest client order id taken.
pub const MAX_CL_ORD_ID: usize = 64;

/// A decimal as a string or a JSON number.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Dec {
    /// `"100.25"`.
    Text(String),
    /// `100.25`.
    Number(serde_json::Number),
}

impl Dec {
    /// The decimal as written.
    pub fn text(&self) -> String {
        match self {
            Dec::Text(s) => s.clone(),
            Dec::Number(n) => n.to_string(),
        }
    }
}

/// Buy or sell.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SideIn {
    /// Buy.
    Buy,
    /// Sell.
    Sell,
}

/// Limit or market.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TypeIn {
    /// Limit (the default).
    #[default]
    Limit,
    /// Market.
    Market,
}

/// Time in force.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TifIn {
    /// Good till cancelled (the default).
    #[default]
    Gtc,
    /// Immediate or cancel.
    Ioc,
    /// Fill or kill.
    Fok,
    /// Good till `expiry` (nanoseconds since the UNIX epoch).
    Gtd,
}

/// Self-trade prevention.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StpIn {
    /// Cancel the incoming order's rest (the default).
    #[default]
    CancelTaker,
    /// Cancel the resting order.
    CancelMaker,
    /// Cancel both.
    CancelBoth,
    /// Let them trade.
    Allow,
}

/// A new order.
#[derive(Clone, Debug, Deserialize)]
pub struct NewMsg {
    /// The client's own id for the order (at most 64 characters), echoed in its reports.
    #[serde(default)]
    pub cl_ord_id: Option<String>,
    /// The symbol.
    pub symbol: String,
    /// `buy` or `sell`.
    pub side: SideIn,
    /// `limit` (default) or `market`.
    #[serde(default)]
    pub order_type: TypeIn,
    /// The limit price (absent for a market order).
    #[serde(default)]
    pub price: Option<Dec>,
    /// The quantity.
    pub qty: Dec,
    /// `gtc` (default), `ioc`, `fok`, `gtd`.
    #[serde(default)]
    pub tif: TifIn,
    /// The expiry of a `gtd` order (ns since the UNIX epoch).
    #[serde(default)]
    pub expiry: Option<u64>,
    /// Reject instead of taking liquidity.
    #[serde(default)]
    pub post_only: bool,
    /// An iceberg's display size (a whole number of lots, at most `qty`).
    #[serde(default)]
    pub display: Option<Dec>,
    /// A stop order's trigger price (stop-limit with a price, stop-market without).
    #[serde(default)]
    pub stop: Option<Dec>,
    /// Self-trade prevention.
    #[serde(default)]
    pub stp: StpIn,
    /// When present, must be the session's account.
    #[serde(default)]
    pub account: Option<u64>,
    /// Echoed in errors.
    #[serde(default)]
    pub req_id: Option<u64>,
}

/// A client message.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// Binds the session to the key's account.
    Auth {
        /// The API key.
        key: String,
        /// Cancel this session's open orders when it disconnects.
        #[serde(default)]
        cancel_on_disconnect: bool,
    },
    /// A new order.
    New(NewMsg),
    /// Cancel an order.
    Cancel {
        /// The order (the engine's id from `accepted`).
        order_id: u64,
        /// Needed only for an order this session did not place.
        #[serde(default)]
        symbol: Option<String>,
        /// When present, must be the session's account.
        #[serde(default)]
        account: Option<u64>,
        /// Echoed in the reports of this request.
        #[serde(default)]
        req_id: Option<u64>,
    },
    /// New price and open quantity.
    Modify {
        /// The order.
        order_id: u64,
        /// The new price.
        price: Dec,
        /// The new open quantity.
        qty: Dec,
        /// Needed only for an order this session did not place.
        #[serde(default)]
        symbol: Option<String>,
        /// When present, must be the session's account.
        #[serde(default)]
        account: Option<u64>,
        /// Echoed in the reports of this request.
        #[serde(default)]
        req_id: Option<u64>,
    },
    /// Cancel every open order of the account (in one symbol, or all).
    MassCancel {
        /// Only this symbol.
        #[serde(default)]
        symbol: Option<String>,
        /// When present, must be the session's account.
        #[serde(default)]
        account: Option<u64>,
        /// Echoed in errors.
        #[serde(default)]
        req_id: Option<u64>,
    },
    /// Liveness.
    Ping {
        /// Echoed.
        #[serde(default)]
        req_id: Option<u64>,
    },
}

/// Why a client message was not taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError {
    /// `bad_json`, `unknown_type`, `invalid_message`, `not_authenticated`, `bad_key`,
    /// `wrong_account`, `unknown_symbol`, `rate_limited`, `busy`, `unavailable`.
    pub code: &'static str,
    /// For people.
    pub message: String,
    /// The request's `req_id`, when it had one.
    pub req_id: Option<u64>,
}

impl ProtocolError {
    /// An error.
    pub fn new(code: &'static str, message: impl Into<String>, req_id: Option<u64>) -> Self {
        ProtocolError {
            code,
            message: message.into(),
            req_id,
        }
    }

    /// The `error` message.
    pub fn to_json(&self) -> String {
        to_json(&Out::Error {
            code: self.code,
            message: &self.message,
            req_id: self.req_id,
        })
    }
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<ClientMsg, ProtocolError> {
    // Prices and quantities written as JSON numbers are read as the digits written (serde
    // reads a number as an `f64`: `100.000000000000001` would become 100 and be accepted).
    let quoted = quote_decimals(text);
    let text = quoted.as_ref();
    // The common case in one pass; a message that does not parse is taken apart again to
    // say precisely what is wrong with it.
    if let Ok(m) = serde_json::from_str::<ClientMsg>(text) {
        return check(m, None);
    }
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ProtocolError::new("bad_json", format!("not JSON: {e}"), None))?;
    let req_id = v.get("req_id").and_then(|r| r.as_u64());
    let Some(t) = v.get("type").and_then(|t| t.as_str()).map(str::to_owned) else {
        return Err(ProtocolError::new(
            "invalid_message",
            "a message is a JSON object with a string field \"type\"",
            req_id,
        ));
    };
    if !CLIENT_TYPES.contains(&t.as_str()) {
        return Err(ProtocolError::new(
            "unknown_type",
            format!(
                "unknown message type {t:?}; known: {}",
                CLIENT_TYPES.join(", ")
            ),
            req_id,
        ));
    }
    let m: ClientMsg = serde_json::from_value(v)
        .map_err(|e| ProtocolError::new("invalid_message", format!("{t}: {e}"), req_id))?;
    check(m, req_id)
}

/// The message with the JSON numbers of its top-level `price` and `qty` fields turned into
/// strings of the same digits (the text itself when there are none).
fn quote_decimals(text: &str) -> std::borrow::Cow<'_, str> {
    let b = text.as_bytes();
    let mut out: Option<String> = None;
    let (mut i, mut depth, mut copied) = (0, 0usize, 0);
    let mut key: Option<(usize, usize)> = None; // the last string read at depth 1
    let mut after_colon = false;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                key = (depth == 1 && !after_colon).then_some((start, i.min(b.len())));
                after_colon = false;
            }
            b'{' | b'[' => {
                depth += 1;
                after_colon = false;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                after_colon = false;
            }
            b':' => after_colon = true,
            b',' => {
                after_colon = false;
                key = None;
            }
            c if after_colon && (c == b'-' || c.is_ascii_digit()) => {
                let start = i;
                while i < b.len() && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let name = key.map(|(k0, k1)| &text[k0..k1]);
                if depth == 1 && matches!(name, Some("price" | "qty" | "display" | "stop")) {
                    let o = out.get_or_insert_with(|| String::with_capacity(text.len() + 4));
                    o.push_str(&text[copied..start]);
                    o.push('"');
                    o.push_str(&text[start..i]);
                    o.push('"');
                    copied = i;
                }
                after_colon = false;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    match out {
        Some(mut o) => {
            o.push_str(&text[copied..]);
            std::borrow::Cow::Owned(o)
        }
        None => std::borrow::Cow::Borrowed(text),
    }
}

fn check(m: ClientMsg, req_id: Option<u64>) -> Result<ClientMsg, ProtocolError> {
    if let ClientMsg::New(n) = &m {
        if n.cl_ord_id
            .as_ref()
            .is_some_and(|c| c.len() > MAX_CL_ORD_ID)
        {
            return Err(ProtocolError::new(
                "invalid_message",
                format!("cl_ord_id is longer than {MAX_CL_ORD_ID} bytes"),
                req_id.or(n.req_id),
            ));
        }
    }
    Ok(m)
}

/// A server message (execution reports and session messages).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Out<'a> {
    /// The session is bound to `account`.
    Authenticated {
        /// The account.
        account: u64,
        /// The session's id.
        session: u64,
        /// Whether its orders are cancelled when it disconnects.
        cancel_on_disconnect: bool,
    },
    /// A new order was accepted.
    Accepted {
        /// Output sequence.
        seq: u64,
        /// The engine's order id (use it to cancel or modify).
        order_id: u64,
        /// The client's id.
        #[serde(skip_serializing_if = "Option::is_none")]
        cl_ord_id: Option<&'a str>,
        /// Symbol.
        symbol: &'a str,
        /// `buy` / `sell`.
        side: &'static str,
        /// `limit` / `market`.
        order_type: &'static str,
        /// `gtc`, `ioc`, `fok`, `gtd`.
        tif: &'static str,
        /// Limit price (absent for a market order).
        #[serde(skip_serializing_if = "Option::is_none")]
        price: Option<String>,
        /// Quantity.
        qty: String,
    },
    /// A request was rejected; nothing changed.
    Rejected {
        /// Output sequence.
        seq: u64,
        /// `new`, `cancel`, `modify`, `mass_cancel`.
        request: &'static str,
        /// The reject code (docs/formats.md).
        code: &'static str,
        /// The order it named.
        #[serde(skip_serializing_if = "Option::is_none")]
        order_id: Option<u64>,
        /// The client's id.
        #[serde(skip_serializing_if = "Option::is_none")]
        cl_ord_id: Option<&'a str>,
        /// Symbol.
        #[serde(skip_serializing_if = "Option::is_none")]
        symbol: Option<&'a str>,
        /// The request's id.
        #[serde(skip_serializing_if = "Option::is_none")]
        req_id: Option<u64>,
    },
    /// One of this session's orders traded.
    Fill {
        /// Output sequence (also the trade's id).
        seq: u64,
        /// The order.
        order_id: u64,
        /// The client's id.
        #[serde(skip_serializing_if = "Option::is_none")]
        cl_ord_id: Option<&'a str>,
        /// Symbol.
        symbol: &'a str,
        /// The order's side.
        side: &'static str,
        /// `taker` or `maker`.
        liquidity: &'static str,
        /// The trade price (the maker's).
        price: String,
        /// Traded quantity.
        qty: String,
        /// The order's open quantity after the trade.
        leaves_qty: String,
    },
    /// An order (or its rest) was cancelled.
    Cancelled {
        /// Output sequence.
        seq: u64,
        /// The order.
        order_id: u64,
        /// The client's id.
        #[serde(skip_serializing_if = "Option::is_none")]
        cl_ord_id: Option<&'a str>,
        /// Symbol.
        symbol: &'a str,
        /// The open quantity cancelled.
        qty: String,
        /// `user`, `mass_cancel`, `ioc`, `fok`, `market`, `stp`, `insufficient_funds`.
        reason: &'static str,
        /// The request's id, when the cancel came from this session's request.
        #[serde(skip_serializing_if = "Option::is_none")]
        req_id: Option<u64>,
    },
    /// An order got a new price and quantity.
    Modified {
        /// Output sequence.
        seq: u64,
        /// The order.
        order_id: u64,
        /// The client's id.
        #[serde(skip_serializing_if = "Option::is_none")]
        cl_ord_id: Option<&'a str>,
        /// Symbol.
        symbol: &'a str,
        /// New price.
        price: String,
        /// New open quantity.
        qty: String,
        /// Kept its place in the queue.
        kept_priority: bool,
        /// The request's id.
        #[serde(skip_serializing_if = "Option::is_none")]
        req_id: Option<u64>,
    },
    /// A pending stop order was triggered: it arrives now as a new order.
    Triggered {
        /// Output sequence.
        seq: u64,
        /// The order.
        order_id: u64,
        /// The client's id.
        #[serde(skip_serializing_if = "Option::is_none")]
        cl_ord_id: Option<&'a str>,
        /// Symbol.
        symbol: &'a str,
    },
    /// A GTD order expired.
    Expired {
        /// Output sequence.
        seq: u64,
        /// The order.
        order_id: u64,
        /// The client's id.
        #[serde(skip_serializing_if = "Option::is_none")]
        cl_ord_id: Option<&'a str>,
        /// Symbol.
        symbol: &'a str,
        /// Open quantity that expired.
        qty: String,
    },
    /// A message the server did not take (nothing was sequenced).
    Error {
        /// Machine-readable code.
        code: &'static str,
        /// For people.
        message: &'a str,
        /// The request's id.
        #[serde(skip_serializing_if = "Option::is_none")]
        req_id: Option<u64>,
    },
    /// Answer to `ping`.
    Pong {
        /// Echoed.
        #[serde(skip_serializing_if = "Option::is_none")]
        req_id: Option<u64>,
    },
}

/// Serializes a server message.
pub fn to_json(m: &Out<'_>) -> String {
    serde_json::to_string(m).unwrap_or_else(|e| {
        format!("{{\"type\":\"error\",\"code\":\"internal\",\"message\":\"serialize: {e}\"}}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A price or quantity written as a JSON number keeps every digit written (an `f64`
    /// would make `100.000000000000001` into 100); other numbers stay numbers.
    #[test]
    fn json_numbers_for_decimals_are_read_exactly() {
        let m = parse(
            r#"{"type":"new","symbol":"X","side":"buy","price":100.000000000000001,"qty":10.9999999999999999999999999999,"req_id":7}"#,
        )
        .expect("parses");
        let ClientMsg::New(n) = m else {
            panic!("not a new order")
        };
        assert_eq!(
            n.price.map(|p| p.text()),
            Some("100.000000000000001".to_string())
        );
        assert_eq!(n.qty.text(), "10.9999999999999999999999999999");
        assert_eq!(n.req_id, Some(7));
        // Strings are untouched, a key inside a string is not a key, nested values are not
        // fields of the message.
        assert_eq!(
            quote_decimals(r#"{"cl_ord_id":"price: 5","price":"1.5","x":{"qty":2},"qty":-3e2}"#),
            r#"{"cl_ord_id":"price: 5","price":"1.5","x":{"qty":2},"qty":"-3e2"}"#
        );
        assert_eq!(
            quote_decimals(r#"{"type":"ping","req_id":1}"#),
            r#"{"type":"ping","req_id":1}"#
        );
        assert_eq!(
            quote_decimals(r#"{"cl_ord_id":"a\"b,\"qty\":1","qty":2}"#),
            r#"{"cl_ord_id":"a\"b,\"qty\":1","qty":"2"}"#
        );
    }
}
