//! LOBSTER replay: real NASDAQ messages turned into engine commands, with the engine's book
//! checked against LOBSTER's published order book after every message.
//!
//! The recipe (prices are dollars × 10000, used directly as ticks; sizes are lots):
//! - seed from orderbook row 0: one synthetic resting order per visible level (ids from
//!   [`SYNTHETIC_BASE`] up, a range no real order uses), then replay messages 1.. and
//!   compare after each with its orderbook row;
//! - type 1: a new GTC limit order; type 2: reduce the order by the size (a same-price
//!   modify down keeps priority); type 3: cancel it. A removal naming an order the file
//!   never added reduces other orders at that side and price, synthetic orders first;
//! - type 4: an IOC from the opposite side at the execution price for the executed size,
//!   which must fill completely at that one price; types 5, 6, 7: nothing;
//! - compare per side only the visible levels. A level that appears (or differs) with no
//!   message, at a price that was not visible in the previous row and is not this message's
//!   price, is a *window refresh* (the level-N window moved): it is synced with a synthetic
//!   order (or a reduction) and not counted as a failure. Any other difference is a failure.

use crate::workload::GeneratedWorkload;
use crate::*;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Synthetic order ids start here.
pub const SYNTHETIC_BASE: u64 = 1 << 62;
const INST: InstrumentId = InstrumentId(0);
const ACCOUNT: AccountId = AccountId(1);

/// One LOBSTER message.
#[derive(Clone, Copy, Debug)]
pub struct Message {
    /// Seconds after midnight, in ns.
    pub time_ns: u64,
    /// 1..7.
    pub kind: u8,
    /// LOBSTER's order id.
    pub order_id: u64,
    /// Shares.
    pub size: u64,
    /// Dollars × 10000.
    pub price: i64,
    /// 1 buy, -1 sell.
    pub direction: i8,
}

/// One orderbook row: per level (ask price, ask size, bid price, bid size).
pub type Row = Vec<(i64, u64, i64, u64)>;

/// The folder holding the LOBSTER samples: `RINGEX_LOBSTER_DIR`, else `../shared/lobster`
/// next to the workspace, if it exists.
pub fn lobster_dir() -> Option<PathBuf> {
    let d = std::env::var_os("RINGEX_LOBSTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/lobster"));
    d.is_dir().then_some(d)
}

/// Every sample in [`lobster_dir`] (the message CSVs and the sample zips), sorted; empty
/// when there is no folder.
pub fn sample_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = lobster_dir()
        .and_then(|d| std::fs::read_dir(d).ok())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p
                .file_name()
                .map_or(String::new(), |n| n.to_string_lossy().to_string());
            n.ends_with(".zip") || n.contains("_message_")
        })
        .collect();
    v.sort();
    v
}

/// The level-1 message file of a ticker in [`lobster_dir`].
pub fn default_file(ticker: &str) -> Option<PathBuf> {
    let d = lobster_dir()?;
    let p = d.join(format!(
        "{ticker}_2012-06-21_34200000_57600000_message_1.csv"
    ));
    p.exists().then_some(p)
}

fn parse_messages(r: impl BufRead) -> io::Result<Vec<Message>> {
    let mut v = Vec::new();
    for (i, line) in r.lines().enumerate() {
        let line = line?;
        let f: Vec<&str> = line.trim().split(',').collect();
        let bad = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("message line {}: {line:?}", i + 1),
            )
        };
        if f.len() < 6 {
            return Err(bad());
        }
        let (secs, frac) = f[0].split_once('.').unwrap_or((f[0], ""));
        let mut frac9 = frac.to_string();
        frac9.truncate(9);
        while frac9.len() < 9 {
            frac9.push('0');
        }
        let time_ns = secs.parse::<u64>().map_err(|_| bad())? * 1_000_000_000
            + frac9.parse::<u64>().map_err(|_| bad())?;
        v.push(Message {
            time_ns,
            kind: f[1].parse().map_err(|_| bad())?,
            order_id: f[2].parse().map_err(|_| bad())?,
            size: f[3].parse().map_err(|_| bad())?,
            price: f[4].parse().map_err(|_| bad())?,
            direction: f[5].parse().map_err(|_| bad())?,
        });
    }
    Ok(v)
}

fn parse_rows(r: impl BufRead) -> io::Result<Vec<Row>> {
    let mut v = Vec::new();
    for (i, line) in r.lines().enumerate() {
        let line = line?;
        let nums: Result<Vec<i64>, _> = line.trim().split(',').map(str::parse::<i64>).collect();
        let nums = nums.map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("orderbook line {}", i + 1),
            )
        })?;
        v.push(
            nums.chunks(4)
                .filter(|c| c.len() == 4)
                .map(|c| (c[0], c[1].max(0) as u64, c[2], c[3].max(0) as u64))
                .collect(),
        );
    }
    Ok(v)
}

/// Reads a message file and its orderbook file: two CSVs, or one LOBSTER sample zip.
/// For a message CSV the orderbook is the file with `message` replaced by `orderbook`.
pub fn read(message: &Path, orderbook: Option<&Path>) -> io::Result<(Vec<Message>, Vec<Row>)> {
    if message.extension().is_some_and(|e| e == "zip") {
        let mut z =
            zip::ZipArchive::new(std::fs::File::open(message)?).map_err(io::Error::other)?;
        let names: Vec<String> = z.file_names().map(String::from).collect();
        let find = |what: &str| {
            names
                .iter()
                .find(|n| n.contains(what) && n.ends_with(".csv"))
                .cloned()
        };
        let (m, o) = match (find("_message_"), find("_orderbook_")) {
            (Some(m), Some(o)) => (m, o),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "zip has no message/orderbook CSV",
                ))
            }
        };
        let mut text = String::new();
        z.by_name(&m)
            .map_err(io::Error::other)?
            .read_to_string(&mut text)?;
        let msgs = parse_messages(text.as_bytes())?;
        text.clear();
        z.by_name(&o)
            .map_err(io::Error::other)?
            .read_to_string(&mut text)?;
        return Ok((msgs, parse_rows(text.as_bytes())?));
    }
    let ob: PathBuf = match orderbook {
        Some(p) => p.to_path_buf(),
        None => {
            let name = message.file_name().and_then(|n| n.to_str()).unwrap_or("");
            message.with_file_name(name.replace("_message_", "_orderbook_"))
        }
    };
    let msgs = parse_messages(BufReader::new(std::fs::File::open(message)?))?;
    let rows = parse_rows(BufReader::new(std::fs::File::open(&ob)?))?;
    Ok((msgs, rows))
}

/// What a replay found.
#[derive(Clone, Debug, Default)]
pub struct ReplayReport {
    /// Messages checked (message 0 seeds the book from row 0 and passes by construction).
    pub messages: u64,
    /// Messages after which every visible level matched.
    pub passed: u64,
    /// Messages after which a visible level differed for real.
    pub failed: u64,
    /// Levels synced because the visible window moved.
    pub window_refreshes: u64,
    /// Removals (types 2, 3) naming orders the file never added.
    pub unknown_removals: u64,
    /// Executions whose first fill was not the order LOBSTER named.
    pub other_first_fill: u64,
    /// Executions that did not fill completely at the one price.
    pub short_executions: u64,
    /// The first few failures, for the report.
    pub first_failures: Vec<String>,
    /// Commands sent to the engine.
    pub commands: u64,
}

/// Replays messages through a matcher, optionally checking each row.
pub struct Replay {
    m: Matcher,
    seq: u64,
    next_synthetic: u64,
    events: Vec<Event>,
    /// Every command sent, in order (setup first): the replay as a workload.
    pub commands: Vec<Command>,
    /// The report.
    pub report: ReplayReport,
    ts: u64,
}

fn empty_price(p: i64) -> bool {
    p.abs() >= 9_999_999_999 || p == 0
}

impl Default for Replay {
    fn default() -> Self {
        Self::new()
    }
}

impl Replay {
    /// A fresh engine with the one instrument.
    pub fn new() -> Self {
        let mut r = Replay {
            m: Matcher::with_capacity(MatcherCapacity {
                orders: 1 << 16,
                ids: 1 << 21,
                gtd: 16,
            }),
            seq: 0,
            next_synthetic: SYNTHETIC_BASE,
            events: Vec::with_capacity(256),
            commands: Vec::new(),
            report: ReplayReport::default(),
            ts: 0,
        };
        r.send(CommandKind::AddInstrument(INST.into()));
        r
    }

    fn send(&mut self, kind: CommandKind) -> &[Event] {
        self.seq += 1;
        let c = Command::new(Timestamp(self.ts), kind);
        self.commands.push(c);
        self.report.commands += 1;
        self.events.clear();
        self.m.process(Sequence(self.seq), &c, &mut self.events);
        &self.events
    }

    fn add_synthetic(&mut self, side: Side, price: i64, qty: u64) {
        self.next_synthetic += 1;
        let o = NewOrder::limit(
            INST,
            ACCOUNT,
            OrderId(self.next_synthetic),
            side,
            Price(price),
            Qty(qty),
        );
        let mut o = o;
        o.stp = SelfTradePrevention::Allow;
        self.send(CommandKind::NewOrder(o));
    }

    /// Reduces the orders at `side`/`price` by `qty`, synthetic orders first (then from the
    /// back of the queue).
    fn reduce_level(&mut self, side: Side, price: i64, mut qty: u64) {
        let mut at: Vec<RestingOrder> = self
            .m
            .resting_orders(INST)
            .into_iter()
            .filter(|o| o.side == side && o.price.0 == price)
            .collect();
        at.sort_by_key(|o| std::cmp::Reverse((o.order_id.0 >= SYNTHETIC_BASE, 0)));
        let (syn, mut real): (Vec<_>, Vec<_>) =
            at.into_iter().partition(|o| o.order_id.0 >= SYNTHETIC_BASE);
        real.reverse();
        for o in syn.into_iter().chain(real) {
            if qty == 0 {
                break;
            }
            self.reduce_order(o.order_id, Price(price), o.qty.0, qty.min(o.qty.0));
            qty -= qty.min(o.qty.0);
        }
    }

    fn reduce_order(&mut self, id: OrderId, price: Price, open: u64, by: u64) {
        if by >= open {
            self.send(CommandKind::Cancel {
                instrument: INST,
                account: ACCOUNT,
                order_id: id,
            });
        } else {
            self.send(CommandKind::Modify {
                instrument: INST,
                account: ACCOUNT,
                order_id: id,
                price,
                qty: Qty(open - by),
            });
        }
    }

    /// Seeds the book from a row.
    pub fn seed(&mut self, row: &Row) {
        for &(ap, asz, bp, bsz) in row {
            if !empty_price(ap) && asz > 0 {
                self.add_synthetic(Side::Sell, ap, asz);
            }
            if !empty_price(bp) && bsz > 0 {
                self.add_synthetic(Side::Buy, bp, bsz);
            }
        }
    }

    fn live(&self, id: u64) -> Option<RestingOrder> {
        // Cheap enough: only removals of named orders come here.
        self.m
            .resting_orders(INST)
            .into_iter()
            .find(|o| o.order_id.0 == id)
    }

    /// Applies one message.
    pub fn apply(&mut self, msg: &Message) {
        self.ts = msg.time_ns;
        let side = if msg.direction > 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        match msg.kind {
            1 => {
                let mut o = NewOrder::limit(
                    INST,
                    ACCOUNT,
                    OrderId(msg.order_id),
                    side,
                    Price(msg.price),
                    Qty(msg.size),
                );
                o.stp = SelfTradePrevention::Allow;
                self.send(CommandKind::NewOrder(o));
            }
            2 | 3 => match self.live(msg.order_id) {
                Some(o) if o.side == side && o.price.0 == msg.price => {
                    // The level drops by exactly the size LOBSTER gives. When executions
                    // filled other orders at this price than the ones LOBSTER named (our
                    // queue holds synthetic stand-ins for orders placed before the window),
                    // the named order's open quantity differs: take what it has, and the
                    // rest from the level (synthetic orders first).
                    let take = msg.size.min(o.qty.0);
                    self.reduce_order(o.order_id, o.price, o.qty.0, take);
                    if msg.size > take {
                        self.reduce_level(side, msg.price, msg.size - take);
                    }
                }
                _ => {
                    self.report.unknown_removals += 1;
                    self.reduce_level(side, msg.price, msg.size);
                }
            },
            4 => {
                let mut o = NewOrder::limit(
                    INST,
                    ACCOUNT,
                    OrderId(0),
                    side.opposite(),
                    Price(msg.price),
                    Qty(msg.size),
                );
                o.tif = TimeInForce::Ioc;
                o.stp = SelfTradePrevention::Allow;
                // IOC ids: synthetic range too, so they never collide with LOBSTER's.
                self.next_synthetic += 1;
                o.order_id = OrderId(self.next_synthetic);
                let evs = self.send(CommandKind::NewOrder(o));
                let mut filled = 0;
                let mut first = None;
                let mut other_price = false;
                for e in evs {
                    if let EventKind::Fill {
                        maker, price, qty, ..
                    } = e.kind
                    {
                        first.get_or_insert(maker);
                        filled += qty.0;
                        other_price |= price.0 != msg.price;
                    }
                }
                if first != Some(OrderId(msg.order_id)) {
                    self.report.other_first_fill += 1;
                }
                if filled != msg.size || other_price {
                    self.report.short_executions += 1;
                }
            }
            _ => {}
        }
    }

    /// Compares the engine's visible levels with `row` (and syncs window refreshes);
    /// returns true when every visible level matched for real.
    pub fn check(&mut self, row: &Row, prev: &Row, msg: &Message) -> bool {
        let n = row.len();
        let mut ok = true;
        for side in [Side::Sell, Side::Buy] {
            let level = |r: &Row| -> Vec<(i64, u64)> {
                r.iter()
                    .map(|&(ap, asz, bp, bsz)| {
                        if side == Side::Sell {
                            (ap, asz)
                        } else {
                            (bp, bsz)
                        }
                    })
                    .filter(|&(p, s)| !empty_price(p) && s > 0)
                    .collect()
            };
            let file = level(row);
            let before = level(prev);
            let full = file.len() == n;
            let worst = file.last().map(|l| l.0);
            let in_window = |p: i64| match (full, worst) {
                (true, Some(w)) => {
                    if side == Side::Sell {
                        p <= w
                    } else {
                        p >= w
                    }
                }
                _ => true,
            };
            let engine: Vec<(i64, u64)> = self
                .m
                .depth(INST, side)
                .map(|(p, q, _)| (p.0, q as u64))
                .take_while(|(p, _)| in_window(*p))
                .collect();
            let mut prices: Vec<i64> = file.iter().chain(&engine).map(|l| l.0).collect();
            prices.sort_unstable();
            prices.dedup();
            for p in prices {
                let fq = file.iter().find(|l| l.0 == p).map_or(0, |l| l.1);
                let eq = engine.iter().find(|l| l.0 == p).map_or(0, |l| l.1);
                if fq == eq {
                    continue;
                }
                let real = before.iter().any(|l| l.0 == p) || p == msg.price;
                if real {
                    ok = false;
                    if self.report.first_failures.len() < 5 {
                        self.report.first_failures.push(format!(
                            "message {:?}: {:?} level {p}: file {fq}, engine {eq}",
                            msg, side
                        ));
                    }
                } else {
                    self.report.window_refreshes += 1;
                }
                // Sync either way so one difference does not cascade.
                if fq > eq {
                    self.add_synthetic(side, p, fq - eq);
                } else {
                    self.reduce_level(side, p, eq - fq);
                }
            }
        }
        ok
    }
}

/// Replays a whole file pair, checking every row when `check` is set.
pub fn replay(msgs: &[Message], rows: &[Row], check: bool) -> Replay {
    let mut r = Replay::new();
    if let Some(row0) = rows.first() {
        r.seed(row0);
        // After message 0 the book is row 0 by construction.
        if check && !msgs.is_empty() {
            r.report.messages += 1;
            r.report.passed += 1;
        }
    }
    for i in 1..msgs.len().min(rows.len()) {
        r.apply(&msgs[i]);
        if check {
            r.report.messages += 1;
            if r.check(&rows[i], &rows[i - 1], &msgs[i]) {
                r.report.passed += 1;
            } else {
                r.report.failed += 1;
            }
        }
    }
    r
}

/// A LOBSTER file as a harness workload: the commands of a checked replay (the window
/// refreshes included, so the stream reproduces the published book).
pub fn workload(message: &Path) -> io::Result<GeneratedWorkload> {
    let (msgs, rows) = read(message, None)?;
    let r = replay(&msgs, &rows, true);
    let mut w = GeneratedWorkload::default();
    let split = 1 + rows
        .first()
        .map_or(0, |row| row.len() * 2)
        .min(r.commands.len());
    w.setup = r.commands[..split.min(r.commands.len())].to_vec();
    w.commands = r.commands[split.min(r.commands.len())..].to_vec();
    Ok(w)
}
