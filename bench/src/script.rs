//! The command-script format of `ringex run` (docs/formats.md): parsing lines into engine
//! [`Command`]s, and the symbol / allocation-group registry that the edge keeps.
//!
//! Decimal prices and quantities are converted here, at the edge, with the instrument's
//! [`InstrumentSpec`]; a bad value becomes a [`CommandKind::Invalid`] command so that its
//! rejection is sequenced by the matcher like any other event. A line that cannot be parsed
//! at all is a [`ScriptError`] with its line number, and the run goes on.

use ringex_engine::funds::units_of;
use ringex_engine::instrument::parse_decimal;
use ringex_engine::{
    AccountId, AllocGroupId, Amount, AssetId, Command, CommandKind, EdgeError, InstrumentDef,
    InstrumentId, InstrumentSpec, MatchPolicy, NewOrder, OrderId, OrderTerms, OrderType, Price,
    Qty, Rate, RejectCode, SelfTradePrevention, Side, TimeInForce, Timestamp,
};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// A line that could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ScriptError {}

/// A pro-rata allocation group: accounts and their weights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocGroup {
    /// The id written in the script.
    pub script_id: u64,
    /// (account, weight), in the order written.
    pub members: Vec<(AccountId, Decimal)>,
}

/// A declared asset: its name and how many decimal places one unit has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssetSpec {
    /// The name written in the script.
    pub name: String,
    /// Balances count whole units of 10^-scale.
    pub scale: u8,
}

/// What one script line became.
#[derive(Clone, Debug, PartialEq)]
pub enum ScriptItem {
    /// A command for the engine. `number` counts command lines from 1 (the K of
    /// `recovered through command K`); definitions are not numbered.
    Command {
        /// The command.
        cmd: Command,
        /// Its command-line number.
        number: u64,
        /// The [`CommandKind::OrderTerms`] that goes just before it (an iceberg or a stop).
        terms: Option<Command>,
    },
    /// An `instrument` or `asset` line: the command that defines it, and the
    /// [`CommandKind::SetMatchPolicy`] that follows it when the line chose a policy.
    Instrument(Command, Option<Command>),
    /// An `alloc_group` line.
    AllocGroup(AllocGroupId),
    /// A comment or a blank line.
    Nothing,
}

/// The edge: symbols, specs and allocation groups seen so far, and the line counter.
#[derive(Clone, Debug, Default)]
pub struct Script {
    symbols: HashMap<String, InstrumentId>,
    specs: Vec<InstrumentSpec>,
    group_ids: HashMap<u64, AllocGroupId>,
    groups: Vec<AllocGroup>,
    asset_ids: HashMap<String, AssetId>,
    assets: Vec<AssetSpec>,
    last_ts: u64,
    line_no: usize,
    command_no: u64,
}

fn bad(line: usize, reason: impl Into<String>) -> ScriptError {
    ScriptError {
        line,
        reason: reason.into(),
    }
}

impl Script {
    /// An empty edge.
    pub fn new() -> Self {
        Self::default()
    }

    /// An edge that carries on from earlier runs: these instruments and groups are defined,
    /// and `commands_read` command lines were read before.
    pub fn restored(
        specs: Vec<InstrumentSpec>,
        groups: Vec<AllocGroup>,
        assets: Vec<AssetSpec>,
        commands_read: u64,
    ) -> Self {
        let mut s = Script::new();
        for a in assets {
            s.asset_ids
                .insert(a.name.clone(), AssetId(s.assets.len() as u16));
            s.assets.push(a);
        }
        for spec in specs {
            s.symbols.insert(spec.symbol.clone(), spec.id);
            while s.specs.len() < spec.id.0 as usize {
                // Ids are dense in practice; a hole (an instrument whose definition was not
                // recovered) keeps its number unused.
                let hole = InstrumentId(s.specs.len() as u32);
                s.specs.push(InstrumentSpec {
                    id: hole,
                    symbol: String::new(),
                    tick_size: Decimal::ONE,
                    lot_size: Decimal::ONE,
                });
            }
            s.specs.push(spec);
        }
        for g in groups {
            s.group_ids
                .insert(g.script_id, AllocGroupId(s.groups.len() as u32 + 1));
            s.groups.push(g);
        }
        s.command_no = commands_read;
        s
    }

    /// Allocation groups, in definition order (group `AllocGroupId(i + 1)` is `groups()[i]`).
    pub fn groups(&self) -> &[AllocGroup] {
        &self.groups
    }

    /// Declared assets, indexed by [`AssetId`].
    pub fn assets(&self) -> &[AssetSpec] {
        &self.assets
    }

    /// A declared asset.
    pub fn asset(&self, id: AssetId) -> Option<&AssetSpec> {
        self.assets.get(id.0 as usize)
    }

    /// Instrument specs, indexed by [`InstrumentId`].
    pub fn specs(&self) -> &[InstrumentSpec] {
        &self.specs
    }

    /// The spec of an instrument.
    pub fn spec(&self, id: InstrumentId) -> Option<&InstrumentSpec> {
        self.specs.get(id.0 as usize)
    }

    /// An allocation group.
    pub fn group(&self, id: AllocGroupId) -> Option<&AllocGroup> {
        (id.0 as usize)
            .checked_sub(1)
            .and_then(|i| self.groups.get(i))
    }

    /// Command lines read so far (also malformed ones).
    pub fn commands_read(&self) -> u64 {
        self.command_no
    }

    /// Counts a line that is not text (invalid UTF-8): a malformed command line, reported
    /// with its number; the run goes on.
    pub fn bad_bytes_line(&mut self) -> ScriptError {
        self.line_no += 1;
        self.command_no += 1;
        bad(self.line_no, "the line is not valid UTF-8")
    }

    /// Parses the next line of the script.
    pub fn parse_line(&mut self, text: &str) -> Result<ScriptItem, ScriptError> {
        self.line_no += 1;
        let line = self.line_no;
        let body = text.split('#').next().unwrap_or("").trim();
        if body.is_empty() {
            return Ok(ScriptItem::Nothing);
        }
        let f: Vec<&str> = body.split(',').map(str::trim).collect();
        match f[0] {
            "instrument" => self.instrument(line, &f),
            "asset" => self.asset_line(line, &f),
            "alloc_group" => self.alloc_group(line, &f),
            _ => {
                self.command_no += 1;
                let number = self.command_no;
                let (cmd, terms) = self.command(line, &f)?;
                self.last_ts = cmd.ts.0;
                Ok(ScriptItem::Command { cmd, number, terms })
            }
        }
    }

    fn asset_line(&mut self, line: usize, f: &[&str]) -> Result<ScriptItem, ScriptError> {
        if f.len() != 3 {
            return Err(bad(line, "expected asset,<asset>,<scale>"));
        }
        let name = f[1];
        if name.is_empty() || name.contains(char::is_whitespace) || name == "-" {
            return Err(bad(line, format!("asset name {name:?} is not a name")));
        }
        let scale = f[2]
            .parse::<u8>()
            .ok()
            .filter(|s| *s <= 18)
            .ok_or_else(|| {
                bad(
                    line,
                    format!("scale {:?} is not a whole number from 0 to 18", f[2]),
                )
            })?;
        if self.asset_ids.contains_key(name) {
            return Err(bad(line, format!("asset {name} is already defined")));
        }
        if self.assets.len() > u16::MAX as usize {
            return Err(bad(line, "too many assets"));
        }
        let id = AssetId(self.assets.len() as u16);
        self.asset_ids.insert(name.to_string(), id);
        self.assets.push(AssetSpec {
            name: name.to_string(),
            scale,
        });
        Ok(ScriptItem::Instrument(
            Command::new(
                Timestamp(self.last_ts),
                CommandKind::AddAsset { asset: id, scale },
            ),
            None,
        ))
    }

    /// The funding part of an instrument line (`base=`, `quote=`, fees, limits), if any.
    fn funding(
        &self,
        line: usize,
        id: InstrumentId,
        tick: Decimal,
        lot: Decimal,
        opts: &[&str],
    ) -> Result<InstrumentDef, ScriptError> {
        if opts.is_empty() {
            return Ok(InstrumentDef::unfunded(id));
        }
        let mut kv: HashMap<&str, &str> = HashMap::new();
        for o in opts {
            let Some((k, v)) = o.split_once('=') else {
                return Err(bad(line, format!("option {o:?} is not <key>=<value>")));
            };
            if !["base", "quote", "maker_fee", "taker_fee", "max_qty", "band"].contains(&k) {
                return Err(bad(line, format!("unknown instrument option {k:?}")));
            }
            if kv.insert(k, v).is_some() {
                return Err(bad(line, format!("option {k} given twice")));
            }
        }
        let asset = |k: &str| -> Result<(AssetId, u8), ScriptError> {
            let name = kv
                .get(k)
                .ok_or_else(|| bad(line, format!("a funded instrument needs {k}=<asset>")))?;
            let id = self
                .asset_ids
                .get(*name)
                .copied()
                .ok_or_else(|| bad(line, format!("asset {name:?} is not declared")))?;
            Ok((id, self.assets[id.0 as usize].scale))
        };
        let (base, bs) = asset("base")?;
        let (quote, qs) = asset("quote")?;
        if base == quote {
            return Err(bad(line, "base and quote must differ"));
        }
        let whole = |d: Decimal, scale: u8, what: &str| -> Result<u64, ScriptError> {
            let u = units_of(d, scale)
                .and_then(|u| u64::try_from(u).ok())
                .filter(|u| *u > 0)
                .ok_or_else(|| bad(line, format!("{what} is not a whole number of units")))?;
            // `qty × units` must stay exact in `i128` for every quantity of lots.
            if u > i64::MAX as u64 {
                return Err(bad(line, format!("{what} is more than 2^63 units")));
            }
            Ok(u)
        };
        let bpl = whole(lot, bs, "lot size")?;
        let qptl = whole(
            tick.checked_mul(lot)
                .ok_or_else(|| bad(line, "tick size × lot size overflows"))?,
            qs,
            "tick size × lot size",
        )?;
        let dec = |k: &str| -> Result<Option<Decimal>, ScriptError> {
            kv.get(k)
                .map(|v| {
                    Decimal::from_str(v)
                        .map_err(|_| bad(line, format!("{k} {v:?} is not a decimal")))
                })
                .transpose()
        };
        let rate = |k: &str| -> Result<Rate, ScriptError> {
            match dec(k)? {
                None => Ok(Rate::ZERO),
                Some(d) => Rate::from_decimal(d)
                    .filter(|r| r.scale <= 28)
                    .ok_or_else(|| {
                        bad(line, format!("{k} {d} has more than 9 significant digits"))
                    }),
            }
        };
        let mut def = InstrumentDef::funded(id, base, quote, bpl, qptl)
            .with_fees(rate("maker_fee")?, rate("taker_fee")?);
        if let Some(m) = dec("max_qty")? {
            if m.is_sign_negative() && !m.is_zero() {
                return Err(bad(line, "max_qty must not be negative"));
            }
            // Whole lots at or below the limit.
            let lots = (m / lot).trunc().to_u64().unwrap_or(u64::MAX - 1);
            def = def.with_max_qty(Qty(lots.min(u64::MAX - 1)));
        }
        if let Some(b) = dec("band")? {
            let r = Rate::from_decimal(b)
                .filter(|r| r.mantissa >= 0)
                .ok_or_else(|| bad(line, format!("band {b} must be a fraction of at most 9 significant digits, not negative")))?;
            def = def.with_band(r);
        }
        Ok(def)
    }

    fn instrument(&mut self, line: usize, f: &[&str]) -> Result<ScriptItem, ScriptError> {
        if f.len() < 4 {
            return Err(bad(
                line,
                "expected instrument,<symbol>,<tick_size>,<lot_size>[,base=<asset>,quote=<asset>[,maker_fee=<rate>][,taker_fee=<rate>][,max_qty=<qty>][,band=<fraction>]]",
            ));
        }
        let dec = |s: &str, what: &str| {
            Decimal::from_str(s).map_err(|_| bad(line, format!("{what} {s:?} is not a decimal")))
        };
        let (tick, lot) = (dec(f[2], "tick size")?, dec(f[3], "lot size")?);
        if self.symbols.contains_key(f[1]) {
            return Err(bad(line, format!("instrument {} is already defined", f[1])));
        }
        let id = InstrumentId(self.specs.len() as u32);
        let spec =
            InstrumentSpec::new(id, f[1], tick, lot).map_err(|e| bad(line, e.to_string()))?;
        // `match=` and `min_alloc=` choose the policy; the other options are funding.
        let (mut policy, mut min_alloc) = (None, None);
        let mut rest = Vec::new();
        for o in &f[4..] {
            match o.split_once('=') {
                Some(("match", m)) => {
                    policy = Some(match m {
                        "fifo" => MatchPolicy::Fifo,
                        "pro_rata" => MatchPolicy::ProRata,
                        "pro_rata_top" => MatchPolicy::ProRataTop,
                        _ => {
                            return Err(bad(
                                line,
                                format!("match {m:?} is not fifo, pro_rata or pro_rata_top"),
                            ))
                        }
                    })
                }
                Some(("min_alloc", q)) => min_alloc = Some(q),
                _ => rest.push(*o),
            }
        }
        let min_alloc = match min_alloc {
            None => Qty(1),
            Some(_) if !policy.is_some_and(MatchPolicy::is_pro_rata) => {
                return Err(bad(
                    line,
                    "min_alloc is allowed only with match=pro_rata or match=pro_rata_top",
                ))
            }
            Some(q) => match spec.parse_qty(q) {
                Ok(x) if x.0 > 0 => x,
                _ => {
                    return Err(bad(
                        line,
                        format!("min_alloc {q:?} is not a whole number of lots above 0"),
                    ))
                }
            },
        };
        let def = self.funding(line, id, tick, lot, &rest)?;
        self.symbols.insert(spec.symbol.clone(), id);
        self.specs.push(spec);
        let ts = Timestamp(self.last_ts);
        let set_policy = policy.filter(|p| *p != MatchPolicy::Fifo).map(|policy| {
            Command::new(
                ts,
                CommandKind::SetMatchPolicy {
                    instrument: id,
                    policy,
                    min_alloc,
                },
            )
        });
        Ok(ScriptItem::Instrument(
            Command::new(ts, CommandKind::AddInstrument(def)),
            set_policy,
        ))
    }

    fn alloc_group(&mut self, line: usize, f: &[&str]) -> Result<ScriptItem, ScriptError> {
        if f.len() != 3 {
            return Err(bad(
                line,
                "expected alloc_group,<group_id>,<account>:<weight>[;...]",
            ));
        }
        let script_id = uint(line, f[1], "group id")?;
        if self.group_ids.contains_key(&script_id) {
            return Err(bad(
                line,
                format!("allocation group {script_id} is already defined"),
            ));
        }
        let mut members = Vec::new();
        for m in f[2].split(';').map(str::trim).filter(|m| !m.is_empty()) {
            let (a, w) = m
                .split_once(':')
                .ok_or_else(|| bad(line, format!("member {m:?} is not <account>:<weight>")))?;
            let account = AccountId(uint(line, a.trim(), "account")?);
            let weight = Decimal::from_str(w.trim())
                .ok()
                .filter(|w| *w > Decimal::ZERO)
                .ok_or_else(|| bad(line, format!("weight {w:?} must be a positive decimal")))?;
            if members.iter().any(|(x, _)| *x == account) {
                return Err(bad(line, format!("account {account} appears twice")));
            }
            members.push((account, weight));
        }
        if members.is_empty() {
            return Err(bad(line, "an allocation group needs at least one account"));
        }
        let id = AllocGroupId(self.groups.len() as u32 + 1);
        self.groups.push(AllocGroup { script_id, members });
        self.group_ids.insert(script_id, id);
        Ok(ScriptItem::AllocGroup(id))
    }

    fn symbol(&self, s: &str) -> Option<InstrumentId> {
        self.symbols.get(s).copied()
    }

    fn command(&self, line: usize, f: &[&str]) -> Result<(Command, Option<Command>), ScriptError> {
        let arity = |lo: usize, hi: usize, usage: &str| {
            if f.len() < lo || f.len() > hi {
                Err(bad(line, format!("expected {usage}")))
            } else {
                Ok(())
            }
        };
        let kind = f[0];
        const KINDS: [&str; 12] = [
            "deposit",
            "withdraw",
            "new",
            "cancel",
            "modify",
            "mass_cancel",
            "halt",
            "resume",
            "block",
            "unblock",
            "tick",
            "instrument",
        ];
        if !KINDS.contains(&kind) {
            return Err(bad(line, format!("unknown record type {kind:?}")));
        }
        let ts = Timestamp(match f.get(1) {
            Some(t) => uint(line, t, "ts")?,
            None => return Err(bad(line, format!("{kind}: missing ts"))),
        });
        let invalid = |instrument, order_id, account, code| CommandKind::Invalid {
            instrument,
            order_id,
            account,
            code,
        };
        let k = match kind {
            "new" => {
                arity(10, 15, "new,<ts>,<symbol>,<account>,<order_id>,<buy|sell>,<limit|market>,<tif>,<price|->,<qty>[,post_only][,stp=<mode>][,alloc=<group_id>][,display=<qty>][,stop=<price>]")?;
                return self.new_order(line, ts, f);
            }
            "cancel" => {
                arity(5, 5, "cancel,<ts>,<symbol>,<account>,<order_id>")?;
                let account = AccountId(uint(line, f[3], "account")?);
                let order_id = OrderId(uint(line, f[4], "order id")?);
                match self.symbol(f[2]) {
                    None => invalid(None, Some(order_id), account, RejectCode::UnknownInstrument),
                    Some(instrument) => CommandKind::Cancel {
                        instrument,
                        account,
                        order_id,
                    },
                }
            }
            "modify" => {
                arity(
                    7,
                    7,
                    "modify,<ts>,<symbol>,<account>,<order_id>,<new_price>,<new_qty>",
                )?;
                let account = AccountId(uint(line, f[3], "account")?);
                let order_id = OrderId(uint(line, f[4], "order id")?);
                let sym = self.symbol(f[2]);
                let spec = sym.and_then(|i| self.spec(i));
                let price = edge(line, spec.map(|s| s.parse_price(f[5])), f[5], "price")?;
                let qty = edge(line, spec.map(|s| s.parse_qty(f[6])), f[6], "quantity")?;
                match (sym, price, qty) {
                    (None, ..) => {
                        invalid(None, Some(order_id), account, RejectCode::UnknownInstrument)
                    }
                    (Some(i), Err(code), _) | (Some(i), _, Err(code)) => {
                        invalid(Some(i), Some(order_id), account, code)
                    }
                    (Some(instrument), Ok(price), Ok(qty)) => CommandKind::Modify {
                        instrument,
                        account,
                        order_id,
                        price,
                        qty,
                    },
                }
            }
            "mass_cancel" => {
                arity(3, 4, "mass_cancel,<ts>,<account>[,<symbol>]")?;
                let account = AccountId(uint(line, f[2], "account")?);
                match f.get(3).filter(|s| !s.is_empty()) {
                    None => CommandKind::MassCancel {
                        account,
                        instrument: None,
                    },
                    Some(s) => match self.symbol(s) {
                        None => invalid(None, None, account, RejectCode::UnknownInstrument),
                        Some(i) => CommandKind::MassCancel {
                            account,
                            instrument: Some(i),
                        },
                    },
                }
            }
            "halt" | "resume" => {
                arity(3, 3, &format!("{kind},<ts>,<symbol>"))?;
                match (self.symbol(f[2]), kind) {
                    (None, _) => invalid(None, None, AccountId(0), RejectCode::UnknownInstrument),
                    (Some(instrument), "halt") => CommandKind::Halt { instrument },
                    (Some(instrument), _) => CommandKind::Resume { instrument },
                }
            }
            "block" | "unblock" => {
                arity(3, 3, &format!("{kind},<ts>,<account>"))?;
                let account = AccountId(uint(line, f[2], "account")?);
                if kind == "block" {
                    CommandKind::Block { account }
                } else {
                    CommandKind::Unblock { account }
                }
            }
            "tick" => {
                arity(2, 2, "tick,<ts>")?;
                CommandKind::Tick
            }
            "deposit" | "withdraw" => {
                arity(5, 5, &format!("{kind},<ts>,<account>,<asset>,<amount>"))?;
                let account = AccountId(uint(line, f[2], "account")?);
                let amount = parse_decimal(f[4], RejectCode::BadAmount, RejectCode::BadAmount);
                let amount = match amount {
                    Err(EdgeError::NotANumber) => {
                        return Err(bad(line, format!("amount {:?} is not a decimal", f[4])))
                    }
                    Err(EdgeError::Reject(c)) => Err(c),
                    Ok(d) => Ok(d),
                };
                match (self.asset_ids.get(f[3]), amount) {
                    (None, _) => invalid(None, None, account, RejectCode::UnknownAsset),
                    (Some(_), Err(code)) => invalid(None, None, account, code),
                    (Some(&asset), Ok(d)) => {
                        let scale = self.assets[asset.0 as usize].scale;
                        match units_of(d, scale).filter(|u| *u > 0) {
                            None => invalid(None, None, account, RejectCode::BadAmount),
                            Some(u) if kind == "deposit" => CommandKind::Deposit {
                                account,
                                asset,
                                amount: Amount::new(u),
                            },
                            Some(u) => CommandKind::Withdraw {
                                account,
                                asset,
                                amount: Amount::new(u),
                            },
                        }
                    }
                }
            }
            other => return Err(bad(line, format!("unknown record type {other:?}"))),
        };
        Ok((Command::new(ts, k), None))
    }

    fn new_order(
        &self,
        line: usize,
        ts: Timestamp,
        f: &[&str],
    ) -> Result<(Command, Option<Command>), ScriptError> {
        let account = AccountId(uint(line, f[3], "account")?);
        let order_id = OrderId(uint(line, f[4], "order id")?);
        let side = match f[5] {
            "buy" => Side::Buy,
            "sell" => Side::Sell,
            s => return Err(bad(line, format!("side {s:?} is not buy or sell"))),
        };
        let order_type = match f[6] {
            "limit" => OrderType::Limit,
            "market" => OrderType::Market,
            s => {
                return Err(bad(
                    line,
                    format!("order type {s:?} is not limit or market"),
                ))
            }
        };
        let (tif, expiry) = match f[7] {
            "gtc" => (TimeInForce::Gtc, Timestamp(0)),
            "ioc" => (TimeInForce::Ioc, Timestamp(0)),
            "fok" => (TimeInForce::Fok, Timestamp(0)),
            s => match s.strip_prefix("gtd:") {
                Some(e) => (TimeInForce::Gtd, Timestamp(uint(line, e, "expiry")?)),
                None => {
                    return Err(bad(
                        line,
                        format!("time in force {s:?} is not gtc, ioc, fok or gtd:<expiry_ts>"),
                    ))
                }
            },
        };
        let mut post_only = false;
        let mut stp = SelfTradePrevention::CancelTaker;
        let mut group = None;
        let (mut display, mut stop): (Option<&str>, Option<&str>) = (None, None);
        for opt in &f[10..] {
            match opt.split_once('=') {
                None if *opt == "post_only" => post_only = true,
                Some(("stp", m)) => {
                    stp = match m {
                        "cancel_taker" => SelfTradePrevention::CancelTaker,
                        "cancel_maker" => SelfTradePrevention::CancelMaker,
                        "cancel_both" => SelfTradePrevention::CancelBoth,
                        "allow" => SelfTradePrevention::Allow,
                        _ => return Err(bad(line, format!("stp mode {m:?} is not cancel_taker, cancel_maker, cancel_both or allow"))),
                    }
                }
                Some(("alloc", g)) => group = Some(uint(line, g, "allocation group")?),
                Some(("display", d)) if display.is_none() => display = Some(d),
                Some(("stop", p)) if stop.is_none() => stop = Some(p),
                _ => return Err(bad(line, format!("unknown option {opt:?}"))),
            }
        }
        let sym = self.symbol(f[2]);
        let spec = sym.and_then(|i| self.spec(i));
        let price = match (order_type, f[8]) {
            (OrderType::Market, _) => Ok(Price(0)),
            (OrderType::Limit, "-") => Err(RejectCode::MissingPrice),
            (OrderType::Limit, p) => edge(line, spec.map(|s| s.parse_price(p)), p, "price")?,
        };
        let qty = edge(line, spec.map(|s| s.parse_qty(f[9])), f[9], "quantity")?;
        let alloc = match group {
            None => Ok(AllocGroupId::NONE),
            Some(g) => self
                .group_ids
                .get(&g)
                .copied()
                .ok_or(RejectCode::UnknownAllocGroup),
        };
        // A display size that is not a whole number of lots above 0 is `invalid_display`;
        // a trigger is a price (`off_tick`, `price_overflow`; at or below 0 the matcher
        // says `bad_price`).
        let display = match display {
            None => Ok(Qty(0)),
            Some(d) => match edge(line, spec.map(|s| s.parse_qty(d)), d, "display")? {
                Ok(q) if q.0 > 0 => Ok(q),
                _ => Err(RejectCode::InvalidDisplay),
            },
        };
        let stop = match stop {
            None => Ok(None),
            Some(p) => edge(line, spec.map(|s| s.parse_price(p)), p, "stop")?.map(Some),
        };
        let alloc = alloc
            .and_then(|a| display.map(|_| a))
            .and_then(|a| stop.map(|_| a));
        let kind = match (sym, price, qty, alloc) {
            (None, ..) => CommandKind::Invalid {
                instrument: None,
                order_id: Some(order_id),
                account,
                code: RejectCode::UnknownInstrument,
            },
            (Some(i), Err(code), _, _)
            | (Some(i), _, Err(code), _)
            | (Some(i), _, _, Err(code)) => CommandKind::Invalid {
                instrument: Some(i),
                order_id: Some(order_id),
                account,
                code,
            },
            (Some(instrument), Ok(price), Ok(qty), Ok(alloc_group)) => {
                CommandKind::NewOrder(NewOrder {
                    instrument,
                    account,
                    order_id,
                    side,
                    order_type,
                    tif,
                    expiry,
                    price,
                    qty,
                    post_only,
                    stp,
                    alloc_group,
                })
            }
        };
        let terms = OrderTerms {
            instrument: sym.unwrap_or_default(),
            order_id,
            display: display.unwrap_or_default(),
            stop: stop.unwrap_or_default(),
        };
        let terms = (matches!(kind, CommandKind::NewOrder(_)) && !terms.is_plain())
            .then(|| Command::new(ts, CommandKind::OrderTerms(terms)));
        Ok((Command::new(ts, kind), terms))
    }
}

fn uint(line: usize, s: &str, what: &str) -> Result<u64, ScriptError> {
    s.parse::<u64>()
        .map_err(|_| bad(line, format!("{what} {s:?} is not an unsigned integer")))
}

/// The outcome of a decimal conversion: `Ok(Err(code))` rejects the command, `Err` makes
/// the line malformed. Without a spec (unknown symbol) the text must still be a number.
fn edge<T: Default>(
    line: usize,
    r: Option<Result<T, EdgeError>>,
    text: &str,
    what: &str,
) -> Result<Result<T, RejectCode>, ScriptError> {
    let r = match r {
        Some(r) => r,
        None => {
            parse_decimal(text, RejectCode::QtyOverflow, RejectCode::OffLot).map(|_| T::default())
        }
    };
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(EdgeError::Reject(code)) => Ok(Err(code)),
        Err(EdgeError::NotANumber) => Err(bad(line, format!("{what} {text:?} is not a decimal"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script() -> Script {
        let mut s = Script::new();
        s.parse_line("instrument,ABC,0.01,1").unwrap();
        s.parse_line("alloc_group,7,1:1;2:3").unwrap();
        s
    }

    fn cmd(s: &mut Script, line: &str) -> CommandKind {
        match s.parse_line(line).unwrap() {
            ScriptItem::Command { cmd, .. } => cmd.kind,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_every_command() {
        let mut s = script();
        let CommandKind::NewOrder(o) = cmd(
            &mut s,
            "new,5,ABC,1,10,buy,limit,gtd:9,100.25,3,post_only,stp=allow,alloc=7",
        ) else {
            panic!()
        };
        assert_eq!(o.price, Price(10025));
        assert_eq!(o.qty.0, 3);
        assert_eq!((o.tif, o.expiry), (TimeInForce::Gtd, Timestamp(9)));
        assert!(o.post_only);
        assert_eq!(o.stp, SelfTradePrevention::Allow);
        assert_eq!(o.alloc_group, AllocGroupId(1));
        assert!(matches!(
            cmd(&mut s, "cancel,6,ABC,1,10"),
            CommandKind::Cancel { .. }
        ));
        assert!(matches!(
            cmd(&mut s, "modify,6,ABC,1,10,100,2"),
            CommandKind::Modify { .. }
        ));
        assert!(matches!(
            cmd(&mut s, "mass_cancel,6,1"),
            CommandKind::MassCancel {
                instrument: None,
                ..
            }
        ));
        assert!(matches!(
            cmd(&mut s, "mass_cancel,6,1,ABC"),
            CommandKind::MassCancel {
                instrument: Some(_),
                ..
            }
        ));
        assert!(matches!(
            cmd(&mut s, "halt,6,ABC"),
            CommandKind::Halt { .. }
        ));
        assert!(matches!(
            cmd(&mut s, "resume,6,ABC"),
            CommandKind::Resume { .. }
        ));
        assert!(matches!(
            cmd(&mut s, "block,6,1"),
            CommandKind::Block { .. }
        ));
        assert!(matches!(
            cmd(&mut s, "unblock,6,1"),
            CommandKind::Unblock { .. }
        ));
        assert!(matches!(cmd(&mut s, "tick,7"), CommandKind::Tick));
        assert_eq!(s.commands_read(), 10);
        assert_eq!(s.parse_line("  # comment").unwrap(), ScriptItem::Nothing);
        assert_eq!(s.parse_line("").unwrap(), ScriptItem::Nothing);
    }

    #[test]
    fn bad_values_become_rejects_and_bad_lines_errors() {
        let mut s = script();
        let code = |k: CommandKind| match k {
            CommandKind::Invalid { code, .. } => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            code(cmd(&mut s, "new,1,XYZ,1,1,buy,limit,gtc,1,1")),
            RejectCode::UnknownInstrument
        );
        assert_eq!(
            code(cmd(&mut s, "new,1,ABC,1,1,buy,limit,gtc,1.001,1")),
            RejectCode::OffTick
        );
        assert_eq!(
            code(cmd(&mut s, "new,1,ABC,1,1,buy,limit,gtc,1,0.5")),
            RejectCode::OffLot
        );
        assert_eq!(
            code(cmd(&mut s, "new,1,ABC,1,1,buy,limit,gtc,1,0")),
            RejectCode::ZeroQty
        );
        assert_eq!(
            code(cmd(&mut s, "new,1,ABC,1,1,buy,limit,gtc,1,-2")),
            RejectCode::NegativeQty
        );
        assert_eq!(
            code(cmd(
                &mut s,
                "new,1,ABC,1,1,buy,limit,gtc,1,18446744073709551616"
            )),
            RejectCode::QtyOverflow
        );
        assert_eq!(
            code(cmd(
                &mut s,
                "new,1,ABC,1,1,buy,limit,gtc,92233720368547758.08,1"
            )),
            RejectCode::PriceOverflow
        );
        assert_eq!(
            code(cmd(&mut s, "new,1,ABC,1,1,buy,limit,gtc,-,1")),
            RejectCode::MissingPrice
        );
        assert_eq!(
            code(cmd(&mut s, "new,1,ABC,1,1,buy,limit,gtc,1,1,alloc=8")),
            RejectCode::UnknownAllocGroup
        );
        assert_eq!(
            code(cmd(&mut s, "modify,1,ABC,1,1,1,0")),
            RejectCode::ZeroQty
        );
        for line in [
            "new,1,ABC,1,1,hold,limit,gtc,1,1",
            "new,x,ABC,1,1,buy,limit,gtc,1,1",
            "new,1,ABC,-1,1,buy,limit,gtc,1,1",
            "new,1,ABC,1,1,buy,limit,gtc,abc,1",
            "new,1,ABC,1,1,buy,limit,day,1,1",
            "new,1,ABC,1,1,buy,limit,gtc,1,1,stp=never",
            "new,1,ABC,1,1,buy,limit",
            "cancel,1,ABC,1",
            "launch,1",
            "instrument,ABC,0.01,1",
        ] {
            let e = s.parse_line(line).unwrap_err();
            assert!(e.line > 0, "{line}");
        }
    }

    proptest::proptest! {
        /// No line, however mangled, panics the parser: it is a command, a definition, a
        /// comment or an error with its line number.
        #[test]
        fn no_line_panics_the_parser(lines in proptest::collection::vec(
            proptest::string::string_regex("(new|cancel|modify|mass_cancel|halt|resume|block|unblock|tick|instrument|alloc_group|x)?(,[-0-9a-z.:;=_]{0,12}){0,13}").expect("regex"),
            1..40,
        )) {
            let mut s = script();
            for l in &lines {
                if let Err(e) = s.parse_line(l) {
                    proptest::prop_assert!(e.line > 0);
                }
            }
        }
    }
}
