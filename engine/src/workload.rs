//! Seeded command-stream generators for benchmarks and tests.
//!
//! [`ExchangeCoreWorkload`] reproduces the mix of exchange-core's published order-book
//! benchmark: one instrument, 1000 accounts, about 1000 resting orders over about 750 price
//! slots, and commands split 9% GTC limit, 3% IOC, 6% cancel, 82% move (a modify of the
//! price), with about 6% of commands trading. The stream is generated ahead of time by
//! running a real [`Matcher`] and a [`BookReplica`] beside it, so every cancel and move names
//! an order that is resting at that moment, exactly as exchange-core's generator does.
//!
//! Randomness is SplitMix64, written out here so that a seed gives the same stream on every
//! platform and every version of any dependency.

use crate::command::{Command, CommandKind, NewOrder};
use crate::event::{Event, EventKind};
use crate::matcher::{Matcher, MatcherCapacity};
use crate::types::{
    AccountId, InstrumentId, OrderId, OrderType, Price, Qty, Sequence, Side, TimeInForce, Timestamp,
};
use crate::BookReplica;

/// SplitMix64: a tiny, fast, well-distributed 64-bit generator.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// The exchange-core benchmark mix. See the module docs.
#[derive(Clone, Debug)]
pub struct ExchangeCoreWorkload {
    /// PRNG seed.
    pub seed: u64,
    /// Accounts placing orders.
    pub accounts: u64,
    /// Resting orders the book is kept near.
    pub target_orders: usize,
    /// Price slots around the mid price (half per side).
    pub price_slots: i64,
    /// Trade a funded instrument (base asset 0 in whole units, quote asset 1 in cents, maker
    /// rebate 0.01%, taker fee 0.05%) with every account funded from the start, so that
    /// almost every order passes its funds check and a few percent are rejected for funds.
    pub funded: bool,
}

impl Default for ExchangeCoreWorkload {
    fn default() -> Self {
        ExchangeCoreWorkload {
            seed: 1,
            accounts: 1000,
            target_orders: 1000,
            price_slots: 750,
            funded: false,
        }
    }
}

/// What the generator made.
#[derive(Clone, Debug, Default)]
pub struct GeneratedWorkload {
    /// Commands that build the starting book (instrument, then resting orders).
    pub setup: Vec<Command>,
    /// The measured command stream.
    pub commands: Vec<Command>,
    /// The measured mix.
    pub stats: WorkloadStats,
}

impl GeneratedWorkload {
    /// The events a default matcher makes from the setup and the commands, with every
    /// fourth new order (by id) made a block order of `block_group` when one is given (so
    /// that the allocation consumer has work): the recorded stream consumer benchmarks and
    /// tests feed to consumers.
    pub fn recorded_events(&self, block_group: Option<crate::types::AllocGroupId>) -> Vec<Event> {
        let mut m = Matcher::default();
        let mut events = Vec::with_capacity(self.commands.len() * 2);
        for (i, c) in self.setup.iter().chain(&self.commands).enumerate() {
            let mut c = *c;
            if let (Some(g), CommandKind::NewOrder(o)) = (block_group, &mut c.kind) {
                if o.order_id.0 % 4 == 0 {
                    o.alloc_group = g;
                }
            }
            m.process(Sequence(i as u64 + 1), &c, &mut events);
        }
        events
    }
}

/// The measured mix of a generated stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkloadStats {
    /// GTC limit orders.
    pub gtc: u64,
    /// IOC orders.
    pub ioc: u64,
    /// Cancels.
    pub cancel: u64,
    /// Moves (modify of price).
    pub moves: u64,
    /// Commands that made at least one fill.
    pub trading: u64,
    /// Resting orders at the end.
    pub resting_at_end: usize,
    /// Orders and moves rejected for funds (funded workloads).
    pub funds_rejected: u64,
    /// Icebergs placed (each two ring commands: its terms and the order).
    pub icebergs: u64,
    /// Stop orders placed (each two ring commands).
    pub stops: u64,
}

/// What each account of the funded exchange-core workload deposits: (base units, quote
/// cents). A resting order holds up to 100 base or about 100 × 100,000 cents, so an account
/// covers about one order of each side: 2-3% of orders and moves are rejected for funds.
pub const EXCHANGE_CORE_FUNDING: (i128, i128) = (120, 12_000_000);

/// The instrument the exchange-core workload trades.
pub const EXCHANGE_CORE_INSTRUMENT: InstrumentId = InstrumentId(0);
const MID: i64 = 100_000;

struct Gen {
    rng: SplitMix64,
    matcher: Matcher,
    replica: BookReplica,
    live: Vec<OrderId>,
    accounts: u64,
    next_id: u64,
    seq: u64,
    ts: u64,
    events: Vec<Event>,
    funds_rejected: u64,
}

impl Gen {
    /// Runs a command through the shadow matcher; returns true when it traded.
    fn run(&mut self, cmd: Command) -> bool {
        self.seq += 1;
        self.events.clear();
        self.matcher
            .process(Sequence(self.seq), &cmd, &mut self.events);
        let mut traded = false;
        for e in &self.events {
            self.replica.apply(e);
            traded |= matches!(e.kind, EventKind::Fill { .. });
            self.funds_rejected += matches!(
                e.kind,
                EventKind::Rejected {
                    code: crate::RejectCode::InsufficientFunds,
                    ..
                }
            ) as u64;
        }
        if let CommandKind::NewOrder(o) = cmd.kind {
            if self.replica.order(o.order_id).is_some() {
                self.live.push(o.order_id);
            }
        }
        traded
    }

    /// A random resting order (dropping ids that no longer rest).
    fn pick_live(&mut self) -> Option<NewOrder> {
        while !self.live.is_empty() {
            let i = self.rng.below(self.live.len() as u64) as usize;
            match self.replica.order(self.live[i]) {
                Some(o) => return Some(o),
                None => {
                    self.live.swap_remove(i);
                }
            }
        }
        None
    }

    fn cmd(&mut self, kind: CommandKind) -> Command {
        self.ts += 1;
        Command::new(Timestamp(self.ts), kind)
    }

    /// A passive price on `side`, inside the slots.
    fn passive_price(&mut self, side: Side, half: i64) -> Price {
        let off = 1 + self.rng.below(half as u64) as i64;
        Price(match side {
            Side::Buy => MID - off,
            Side::Sell => MID + off,
        })
    }

    fn new_order(&mut self, side: Side, price: Price, qty: u64, tif: TimeInForce) -> Command {
        self.next_id += 1;
        let account = AccountId(1 + self.rng.below(self.accounts));
        let mut o = NewOrder::limit(
            EXCHANGE_CORE_INSTRUMENT,
            account,
            OrderId(self.next_id),
            side,
            price,
            Qty(qty),
        );
        o.order_type = OrderType::Limit;
        o.tif = tif;
        self.cmd(CommandKind::NewOrder(o))
    }
}

impl ExchangeCoreWorkload {
    /// Generates the setup and `n` measured commands.
    pub fn generate(&self, n: usize) -> GeneratedWorkload {
        let mut g = Gen {
            rng: SplitMix64::new(self.seed),
            matcher: Matcher::with_capacity(MatcherCapacity {
                orders: self.target_orders * 4,
                ids: n + self.target_orders * 2,
                gtd: 16,
            }),
            replica: BookReplica::new(),
            live: Vec::new(),
            accounts: self.accounts.max(1),
            next_id: 0,
            seq: 0,
            ts: 0,
            events: Vec::new(),
            funds_rejected: 0,
        };
        let half = (self.price_slots / 2).max(1);
        let mut out = GeneratedWorkload::default();
        let mut setup = Vec::new();
        if self.funded {
            let (base, quote) = (crate::AssetId(0), crate::AssetId(1));
            let rate = |m: i32, scale: u8| crate::Rate { mantissa: m, scale };
            setup.push(CommandKind::AddAsset {
                asset: base,
                scale: 0,
            });
            setup.push(CommandKind::AddAsset {
                asset: quote,
                scale: 2,
            });
            setup.push(CommandKind::AddInstrument(
                crate::InstrumentDef::funded(EXCHANGE_CORE_INSTRUMENT, base, quote, 1, 1)
                    .with_fees(rate(-1, 4), rate(5, 4)),
            ));
            for a in 1..=g.accounts {
                for (asset, amount) in [
                    (base, EXCHANGE_CORE_FUNDING.0),
                    (quote, EXCHANGE_CORE_FUNDING.1),
                ] {
                    setup.push(CommandKind::Deposit {
                        account: AccountId(a),
                        asset,
                        amount: crate::Amount::new(amount),
                    });
                }
            }
        } else {
            setup.push(CommandKind::AddInstrument(EXCHANGE_CORE_INSTRUMENT.into()));
        }
        for kind in setup {
            let c = g.cmd(kind);
            g.run(c);
            out.setup.push(c);
        }
        while g.replica.resting_count() < self.target_orders {
            let side = if g.rng.below(2) == 0 {
                Side::Buy
            } else {
                Side::Sell
            };
            let price = g.passive_price(side, half);
            let qty = 1 + g.rng.below(100);
            let c = g.new_order(side, price, qty, TimeInForce::Gtc);
            g.run(c);
            out.setup.push(c);
        }
        out.commands.reserve(n);
        let setup_rejected = g.funds_rejected;
        for _ in 0..n {
            let r = g.rng.below(100);
            let live = g.replica.resting_count();
            // 9% GTC, 3% IOC, 6% cancel, 82% move; cancels and GTCs trade places when the book
            // drifts more than 10% from its target size.
            let kind = match r {
                0..=8 if live > self.target_orders * 11 / 10 => 2,
                0..=8 => 0,
                9..=11 => 1,
                12..=17 if live < self.target_orders * 9 / 10 => 0,
                12..=17 => 2,
                _ => 3,
            };
            let cmd = match kind {
                0 => {
                    out.stats.gtc += 1;
                    let side = if g.rng.below(2) == 0 {
                        Side::Buy
                    } else {
                        Side::Sell
                    };
                    // One GTC in three is priced at the opposite best.
                    let (price, qty) = if g.rng.below(3) == 0 {
                        (g.aggressive_price(side, 0), 1 + g.rng.below(50))
                    } else {
                        (g.passive_price(side, half), 1 + g.rng.below(100))
                    };
                    g.new_order(side, price, qty, TimeInForce::Gtc)
                }
                1 => {
                    out.stats.ioc += 1;
                    let side = if g.rng.below(2) == 0 {
                        Side::Buy
                    } else {
                        Side::Sell
                    };
                    let price = g.aggressive_price(side, 2);
                    let qty = 1 + g.rng.below(50);
                    g.new_order(side, price, qty, TimeInForce::Ioc)
                }
                2 => match g.pick_live() {
                    Some(o) => {
                        out.stats.cancel += 1;
                        g.cmd(CommandKind::Cancel {
                            instrument: o.instrument,
                            account: o.account,
                            order_id: o.order_id,
                        })
                    }
                    None => continue,
                },
                _ => match g.pick_live() {
                    Some(o) => {
                        out.stats.moves += 1;
                        let price = g.passive_price(o.side, half);
                        g.cmd(CommandKind::Modify {
                            instrument: o.instrument,
                            account: o.account,
                            order_id: o.order_id,
                            price,
                            qty: o.qty,
                        })
                    }
                    None => continue,
                },
            };
            if g.run(cmd) {
                out.stats.trading += 1;
            }
            out.commands.push(cmd);
        }
        out.stats.resting_at_end = g.matcher.resting_count();
        out.stats.funds_rejected = g.funds_rejected - setup_rejected;
        out
    }
}

impl Gen {
    /// A price up to `ticks` past the opposite best (or the mid when that side is empty).
    fn aggressive_price(&mut self, side: Side, ticks: u64) -> Price {
        let best = self
            .replica
            .depth(EXCHANGE_CORE_INSTRUMENT, side.opposite())
            .next()
            .map(|(p, _, _)| p.0)
            .unwrap_or(MID);
        let off = self.rng.below(ticks + 1) as i64;
        Price(match side {
            Side::Buy => best + off,
            Side::Sell => best - off,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_is_close_to_exchange_core() {
        let w = ExchangeCoreWorkload::default().generate(100_000);
        eprintln!("{:?}", w.stats);
        let n = w.commands.len() as f64;
        let pct = |x: u64| 100.0 * x as f64 / n;
        assert!((pct(w.stats.gtc) - 9.0).abs() < 1.5, "{:?}", w.stats);
        assert!((pct(w.stats.ioc) - 3.0).abs() < 0.5, "{:?}", w.stats);
        assert!((pct(w.stats.cancel) - 6.0).abs() < 1.5, "{:?}", w.stats);
        assert!((pct(w.stats.moves) - 82.0).abs() < 1.0, "{:?}", w.stats);
        assert!((4.0..8.0).contains(&pct(w.stats.trading)), "{:?}", w.stats);
        assert!(
            (900..=1100).contains(&w.stats.resting_at_end),
            "{:?}",
            w.stats
        );
        // Same seed, same stream.
        let again = ExchangeCoreWorkload::default().generate(1000);
        assert_eq!(again.commands[..], w.commands[..1000]);
    }

    #[test]
    fn the_funded_mix_passes_almost_every_order() {
        let w = ExchangeCoreWorkload {
            funded: true,
            ..ExchangeCoreWorkload::default()
        }
        .generate(100_000);
        eprintln!("{:?}", w.stats);
        let orders = (w.stats.gtc + w.stats.ioc + w.stats.moves) as f64;
        let pct = 100.0 * w.stats.funds_rejected as f64 / orders;
        assert!(
            (0.5..5.0).contains(&pct),
            "{pct}% rejected for funds: {:?}",
            w.stats
        );
        assert!((4.0..8.0).contains(&(100.0 * w.stats.trading as f64 / 100_000.0)));
    }
}

/// Many instruments with Zipf-distributed activity: the most active instrument gets the
/// most commands, the k-th most active about 1/k^s as many. Per command: 40% GTC (one in
/// four at the opposite best), 10% IOC at the opposite best, 20% cancel, 30% move.
#[derive(Clone, Debug)]
pub struct MultiSymbolWorkload {
    /// PRNG seed.
    pub seed: u64,
    /// Instruments.
    pub instruments: u32,
    /// Zipf exponent.
    pub zipf_s: f64,
    /// Accounts.
    pub accounts: u64,
    /// Resting orders placed per instrument in the setup.
    pub orders_per_instrument: usize,
}

impl Default for MultiSymbolWorkload {
    fn default() -> Self {
        MultiSymbolWorkload {
            seed: 7,
            instruments: 1000,
            zipf_s: 1.0,
            accounts: 1000,
            orders_per_instrument: 20,
        }
    }
}

impl MultiSymbolWorkload {
    /// Generates the setup and `n` measured commands.
    pub fn generate(&self, n: usize) -> GeneratedWorkload {
        let k = self.instruments.max(1) as usize;
        let mut cdf = Vec::with_capacity(k);
        let mut acc = 0.0;
        for r in 1..=k {
            acc += 1.0 / (r as f64).powf(self.zipf_s);
            cdf.push(acc);
        }
        let total = acc;
        let mut rng = SplitMix64::new(self.seed);
        let mut matcher = Matcher::with_capacity(MatcherCapacity {
            orders: k * self.orders_per_instrument * 4,
            ids: n + k * self.orders_per_instrument * 2,
            gtd: 16,
        });
        let mut replica = BookReplica::new();
        let mut live: Vec<Vec<OrderId>> = vec![Vec::new(); k];
        let mut out = GeneratedWorkload::default();
        let (mut seq, mut ts, mut next_id) = (0u64, 0u64, 0u64);
        let mut events = Vec::new();
        let mut run = |c: Command,
                       live: &mut Vec<Vec<OrderId>>,
                       matcher: &mut Matcher,
                       replica: &mut BookReplica| {
            seq += 1;
            events.clear();
            matcher.process(Sequence(seq), &c, &mut events);
            let mut traded = false;
            for e in &events {
                replica.apply(e);
                traded |= matches!(e.kind, EventKind::Fill { .. });
            }
            if let CommandKind::NewOrder(o) = c.kind {
                if replica.order(o.order_id).is_some() {
                    live[o.instrument.0 as usize].push(o.order_id);
                }
            }
            traded
        };
        let mut new_order = |rng: &mut SplitMix64,
                             i: usize,
                             side: Side,
                             price: Price,
                             tif: TimeInForce,
                             ts: u64| {
            next_id += 1;
            let mut o = NewOrder::limit(
                InstrumentId(i as u32),
                AccountId(1 + rng.below(self.accounts.max(1))),
                OrderId(next_id),
                side,
                price,
                Qty(1 + rng.below(100)),
            );
            o.tif = tif;
            Command::new(Timestamp(ts), CommandKind::NewOrder(o))
        };
        for i in 0..k {
            let c = Command::new(
                Timestamp(ts),
                CommandKind::AddInstrument(InstrumentId(i as u32).into()),
            );
            run(c, &mut live, &mut matcher, &mut replica);
            out.setup.push(c);
            for _ in 0..self.orders_per_instrument {
                let side = if rng.below(2) == 0 {
                    Side::Buy
                } else {
                    Side::Sell
                };
                let off = 1 + rng.below(50) as i64;
                let px = if side == Side::Buy {
                    MID - off
                } else {
                    MID + off
                };
                let c = new_order(&mut rng, i, side, Price(px), TimeInForce::Gtc, ts);
                run(c, &mut live, &mut matcher, &mut replica);
                out.setup.push(c);
            }
        }
        out.commands.reserve(n);
        while out.commands.len() < n {
            ts += 1;
            let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
            let i = cdf.partition_point(|&c| c < u).min(k - 1);
            let inst = InstrumentId(i as u32);
            let side = if rng.below(2) == 0 {
                Side::Buy
            } else {
                Side::Sell
            };
            let best_opp = replica
                .depth(inst, side.opposite())
                .next()
                .map(|(p, _, _)| p.0)
                .unwrap_or(MID);
            let r = rng.below(100);
            // A random live order of this instrument (dropping stale ids).
            let pick = |rng: &mut SplitMix64, live: &mut Vec<Vec<OrderId>>| loop {
                let l = &mut live[i];
                if l.is_empty() {
                    return None;
                }
                let j = rng.below(l.len() as u64) as usize;
                match replica.order(l[j]) {
                    Some(o) => return Some(o),
                    None => {
                        l.swap_remove(j);
                    }
                }
            };
            let cmd = match r {
                0..=39 => {
                    out.stats.gtc += 1;
                    let px = if rng.below(4) == 0 {
                        best_opp
                    } else {
                        let off = 1 + rng.below(50) as i64;
                        if side == Side::Buy {
                            MID - off
                        } else {
                            MID + off
                        }
                    };
                    new_order(&mut rng, i, side, Price(px), TimeInForce::Gtc, ts)
                }
                40..=49 => {
                    out.stats.ioc += 1;
                    new_order(&mut rng, i, side, Price(best_opp), TimeInForce::Ioc, ts)
                }
                50..=69 => match pick(&mut rng, &mut live) {
                    Some(o) => {
                        out.stats.cancel += 1;
                        Command::new(
                            Timestamp(ts),
                            CommandKind::Cancel {
                                instrument: inst,
                                account: o.account,
                                order_id: o.order_id,
                            },
                        )
                    }
                    None => continue,
                },
                _ => match pick(&mut rng, &mut live) {
                    Some(o) => {
                        out.stats.moves += 1;
                        let off = 1 + rng.below(50) as i64;
                        let px = if o.side == Side::Buy {
                            MID - off
                        } else {
                            MID + off
                        };
                        Command::new(
                            Timestamp(ts),
                            CommandKind::Modify {
                                instrument: inst,
                                account: o.account,
                                order_id: o.order_id,
                                price: Price(px),
                                qty: o.qty,
                            },
                        )
                    }
                    None => continue,
                },
            };
            if run(cmd, &mut live, &mut matcher, &mut replica) {
                out.stats.trading += 1;
            }
            out.commands.push(cmd);
        }
        out.stats.resting_at_end = matcher.resting_count();
        out
    }
}

/// The command with its order id shifted by `by` (replaying a generated stream again with
/// fresh ids, as from a counter: soak and history benchmarks).
pub fn shift_order_id(c: &Command, by: u64) -> Command {
    let mut c = *c;
    match &mut c.kind {
        CommandKind::NewOrder(o) => o.order_id.0 += by,
        CommandKind::Cancel { order_id, .. } | CommandKind::Modify { order_id, .. } => {
            order_id.0 += by
        }
        _ => {}
    }
    c
}

/// How the mid price moves in a [`DeepBookWorkload`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PriceScenario {
    /// A slow random walk (±1 tick now and then).
    Calm,
    /// A random walk drifting up about 2,000 ticks over the run.
    TrendUp,
    /// The same drifting down.
    TrendDown,
    /// A random walk with ±5-tick steps.
    Volatile,
    /// A calm walk with a 50-tick jump every 50,000 new orders.
    Jumps,
}

impl PriceScenario {
    /// Every scenario, in a fixed order.
    pub const ALL: [PriceScenario; 5] = [
        PriceScenario::Calm,
        PriceScenario::TrendUp,
        PriceScenario::TrendDown,
        PriceScenario::Volatile,
        PriceScenario::Jumps,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            PriceScenario::Calm => "calm",
            PriceScenario::TrendUp => "trend-up",
            PriceScenario::TrendDown => "trend-down",
            PriceScenario::Volatile => "volatile",
            PriceScenario::Jumps => "jumps",
        }
    }

    /// By name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// A realistic single-stock flow with a deep book (an NVDA-like flow): new orders
/// expanding to about twice as many messages — 95% of resting orders are cancelled later,
/// 20% are modified first (a one-tick reprice with a quantity increase), 15% of new orders
/// are IOC — with the standing book swelling from `min_depth` to `max_depth` orders and back
/// over the run (a half cosine), spread over 60 to 1,400 price levels as it grows, and
/// sparse order ids (gaps uniform in `1..2 × id_gap`, like LOBSTER's). Generated by running
/// a real [`Matcher`], so every cancel and modify names a resting order.
#[derive(Clone, Debug)]
pub struct DeepBookWorkload {
    /// PRNG seed.
    pub seed: u64,
    /// How the mid moves.
    pub scenario: PriceScenario,
    /// Standing orders at the start and end.
    pub min_depth: usize,
    /// Standing orders at the peak (mid-run).
    pub max_depth: usize,
    /// The mean gap between consecutive order ids.
    pub id_gap: u64,
}

impl Default for DeepBookWorkload {
    fn default() -> Self {
        DeepBookWorkload {
            seed: 13,
            scenario: PriceScenario::Calm,
            min_depth: 500,
            max_depth: 40_000,
            id_gap: 8_000,
        }
    }
}

impl DeepBookWorkload {
    /// Generates `new_orders` new orders with their cancels and modifies (the setup is the
    /// instrument alone).
    pub fn generate(&self, new_orders: usize) -> GeneratedWorkload {
        let inst = InstrumentId(0);
        let mut rng = SplitMix64::new(self.seed);
        let mut m = Matcher::with_capacity(MatcherCapacity {
            orders: self.max_depth * 2,
            ids: 1 << 16,
            gtd: 16,
        });
        let mut out = GeneratedWorkload::default();
        let mut events: Vec<Event> = Vec::new();
        let mut seq = 0u64;
        let mut ts = 1_000u64;
        let add = Command::new(
            Timestamp(ts),
            CommandKind::AddInstrument(crate::funds::InstrumentDef::unfunded(inst)),
        );
        seq += 1;
        m.process(Sequence(seq), &add, &mut events);
        out.setup.push(add);
        // Live orders: a dense list with positions by id, for O(1) random picks and removal.
        let mut live: Vec<u64> = Vec::new();
        let mut pos: rustc_hash::FxHashMap<u64, usize> = rustc_hash::FxHashMap::default();
        let remove = |live: &mut Vec<u64>, pos: &mut rustc_hash::FxHashMap<u64, usize>, id: u64| {
            if let Some(p) = pos.remove(&id) {
                live.swap_remove(p);
                if let Some(&moved) = live.get(p) {
                    pos.insert(moved, p);
                }
            }
        };
        let mut mid: i64 = 1_000_000;
        let mut next_id = 1_000_000u64;
        let mut made = 0usize;
        let mut modified: rustc_hash::FxHashSet<u64> = rustc_hash::FxHashSet::default();
        while made < new_orders {
            let phase = made as f64 / new_orders.max(1) as f64;
            let swell = (1.0 - (std::f64::consts::TAU * phase).cos()) / 2.0;
            let target =
                self.min_depth + ((self.max_depth - self.min_depth) as f64 * swell) as usize;
            let levels = 60.0 + 1_340.0 * swell;
            // The mid, once every 16 new orders.
            if made.is_multiple_of(16) {
                let r = rng.below(100) as i64;
                mid += match self.scenario {
                    PriceScenario::Calm | PriceScenario::Jumps => {
                        (r < 10) as i64 - (r >= 90) as i64
                    }
                    PriceScenario::TrendUp => (r < 12) as i64 - (r >= 90) as i64,
                    PriceScenario::TrendDown => (r < 10) as i64 - (r >= 88) as i64,
                    PriceScenario::Volatile => {
                        if r < 20 {
                            5
                        } else if r >= 80 {
                            -5
                        } else {
                            0
                        }
                    }
                };
                if self.scenario == PriceScenario::Jumps && made.is_multiple_of(50_000) && made > 0
                {
                    mid += if rng.below(2) == 0 { 50 } else { -50 };
                }
            }
            ts += 1_000;
            // What to do: grow towards the target, cancel above it; modify one order in five.
            let r = rng.below(1000);
            let grow = live.len() < target;
            let kind = if live.is_empty() || (grow && r < 650) || (!grow && r < 300) {
                made += 1;
                next_id += 1 + rng.below(2 * self.id_gap.max(1));
                let side = if rng.below(2) == 0 {
                    Side::Buy
                } else {
                    Side::Sell
                };
                let sign = if side == Side::Buy { -1 } else { 1 };
                let account = AccountId(1 + rng.below(1000));
                let qty = Qty(1 + rng.below(5) * 100 + rng.below(100));
                let mut o = if rng.below(100) < 15 {
                    // IOC: crosses the mid by up to 3 ticks.
                    let mut o = NewOrder::limit(
                        inst,
                        account,
                        OrderId(next_id),
                        side,
                        Price(mid - sign * rng.below(4) as i64),
                        qty,
                    );
                    o.tif = TimeInForce::Ioc;
                    o
                } else {
                    // Resting: an exponential distance from the mid, over `levels` levels.
                    let u = (rng.below(1 << 20) as f64 + 0.5) / (1u64 << 20) as f64;
                    let off = 1 + (-u.ln() * levels / 4.0).min(levels) as i64;
                    NewOrder::limit(
                        inst,
                        account,
                        OrderId(next_id),
                        side,
                        Price(mid + sign * off),
                        qty,
                    )
                };
                o.stp = crate::types::SelfTradePrevention::Allow;
                CommandKind::NewOrder(o)
            } else {
                let id = live[rng.below(live.len() as u64) as usize];
                let o = m.order(OrderId(id)).expect("live orders rest");
                // One order in five is modified once before it goes (0.2 / 0.95 of picks).
                if !modified.contains(&id) && rng.below(1000) < 210 {
                    modified.insert(id);
                    let step = if rng.below(2) == 0 { 1 } else { -1 };
                    CommandKind::Modify {
                        instrument: inst,
                        account: o.account,
                        order_id: OrderId(id),
                        price: Price(o.price.0 + step),
                        qty: Qty(o.qty.0 + 1 + rng.below(100)),
                    }
                } else {
                    modified.remove(&id);
                    CommandKind::Cancel {
                        instrument: inst,
                        account: o.account,
                        order_id: OrderId(id),
                    }
                }
            };
            let cmd = Command::new(Timestamp(ts), kind);
            seq += 1;
            events.clear();
            m.process(Sequence(seq), &cmd, &mut events);
            for e in &events {
                match e.kind {
                    EventKind::Fill { maker, taker, .. } => {
                        for id in [maker.0, taker.0] {
                            if m.order(OrderId(id)).is_none() {
                                remove(&mut live, &mut pos, id);
                            }
                        }
                    }
                    EventKind::Cancelled { order_id, .. } => {
                        remove(&mut live, &mut pos, order_id.0);
                    }
                    _ => {}
                }
            }
            if let CommandKind::NewOrder(o) = cmd.kind {
                if m.order(o.order_id).is_some() {
                    pos.insert(o.order_id.0, live.len());
                    live.push(o.order_id.0);
                }
            }
            match cmd.kind {
                CommandKind::NewOrder(_) => {
                    if cmd_is_ioc(&cmd) {
                        out.stats.ioc += 1
                    } else {
                        out.stats.gtc += 1
                    }
                }
                CommandKind::Cancel { .. } => out.stats.cancel += 1,
                CommandKind::Modify { .. } => out.stats.moves += 1,
                _ => {}
            }
            if events
                .iter()
                .any(|e| matches!(e.kind, EventKind::Fill { .. }))
            {
                out.stats.trading += 1;
            }
            out.commands.push(cmd);
        }
        out
    }
}

fn cmd_is_ioc(c: &Command) -> bool {
    matches!(c.kind, CommandKind::NewOrder(o) if o.tif == TimeInForce::Ioc)
}
