//! [`PolicyWorkload`]: a seeded flow over the matching policies and order types — a
//! `pro_rata_top` instrument (`min_alloc` 2 lots), a `pro_rata` one, and a FIFO one whose
//! resting orders are often icebergs — with stop orders on all three.
//!
//! Per measured step (instrument uniform over the three; the mid price walks a tick now
//! and then so that stops are elected): 32% passive GTC limit orders 1–20 ticks from the mid
//! (on the FIFO instrument a third of them icebergs showing 5–20 of 20–200 lots), 20%
//! aggressive IOC limit orders 0–3 ticks through the mid for 1–300 lots (they share
//! pro-rata levels and cycle through iceberg peaks), 2% market orders, 10% stops 2–12
//! ticks beyond the last trade (half stop-market IOC, half stop-limit GTC), 26% cancels and
//! 10% modifies of a random live order (resting or pending). The mid follows the last trade
//! within 15 ticks of where it began; the book stays near its starting size. An iceberg or a stop is two ring commands (its terms,
//! then the order): the counts say how many of each.

use crate::command::{Command, CommandKind, NewOrder, OrderTerms};
use crate::event::{Event, EventKind};
use crate::matcher::Matcher;
use crate::types::{
    AccountId, InstrumentId, MatchPolicy, OrderId, OrderType, Price, Qty, Sequence, Side,
    TimeInForce, Timestamp,
};
use crate::workload::{GeneratedWorkload, SplitMix64};

/// The policy workload. See the module docs.
#[derive(Clone, Debug)]
pub struct PolicyWorkload {
    /// PRNG seed.
    pub seed: u64,
    /// Accounts placing orders.
    pub accounts: u64,
    /// Resting orders per side per instrument in the starting book.
    pub starting_orders: usize,
    /// Only what another order book can run with the same rules: one FIFO instrument,
    /// icebergs (post-only, so that none trades on arrival, and never modified), GTC and
    /// IOC limit orders, cancels and modifies of plain orders; no pro-rata, no stops, no
    /// market orders (`peers --icebergs`).
    pub fifo_icebergs_only: bool,
}

impl Default for PolicyWorkload {
    fn default() -> Self {
        PolicyWorkload {
            seed: 11,
            accounts: 1000,
            starting_orders: 200,
            fifo_icebergs_only: false,
        }
    }
}

/// The instruments: pro-rata with TOP, pro-rata, FIFO with icebergs.
pub const POLICY_INSTRUMENTS: [InstrumentId; 3] =
    [InstrumentId(0), InstrumentId(1), InstrumentId(2)];
const MID: i64 = 10_000;

struct PGen {
    rng: SplitMix64,
    matcher: Matcher,
    out: Vec<Event>,
    seq: u64,
    ts: u64,
    next_id: u64,
    accounts: u64,
    live: Vec<(InstrumentId, OrderId)>,
    mid: [i64; 3],
    cmds: Vec<Command>,
    icebergs: u64,
    stops: u64,
    /// [`PolicyWorkload::fifo_icebergs_only`].
    peer: bool,
}

impl PGen {
    fn push(&mut self, kind: CommandKind) {
        self.ts += 1;
        let c = Command::new(Timestamp(self.ts), kind);
        self.seq += 1;
        self.out.clear();
        self.matcher.process(Sequence(self.seq), &c, &mut self.out);
        for e in &self.out {
            if let EventKind::Fill {
                instrument, price, ..
            } = e.kind
            {
                self.mid[instrument.0 as usize % 3] = price.0;
            }
        }
        self.cmds.push(c);
    }

    fn order(&mut self, o: NewOrder, display: u64, stop: Option<Price>) {
        if display > 0 || stop.is_some() {
            self.icebergs += (display > 0) as u64;
            self.stops += stop.is_some() as u64;
            self.push(CommandKind::OrderTerms(OrderTerms {
                instrument: o.instrument,
                order_id: o.order_id,
                display: Qty(display),
                stop,
            }));
        }
        self.push(CommandKind::NewOrder(o));
        if self.matcher.order(o.order_id).is_some() || stop.is_some() {
            self.live.push((o.instrument, o.order_id));
        }
    }

    fn new_order(&mut self, inst: usize, side: Side, price: i64, qty: u64) -> NewOrder {
        self.next_id += 1;
        let account = AccountId(1 + self.rng.below(self.accounts));
        NewOrder::limit(
            POLICY_INSTRUMENTS[inst],
            account,
            OrderId(self.next_id),
            side,
            Price(price),
            Qty(qty),
        )
    }

    fn side(&mut self) -> Side {
        if self.rng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        }
    }

    fn passive(&mut self, inst: usize) {
        let side = self.side();
        let off = 1 + self.rng.below(20) as i64;
        let price = match side {
            Side::Buy => self.mid[inst] - off,
            Side::Sell => self.mid[inst] + off,
        };
        let qty = 20 + self.rng.below(180);
        let mut o = self.new_order(inst, side, price, qty);
        let fifo = if self.peer { 0 } else { 2 };
        let display = if inst == fifo && self.rng.below(3) == 0 {
            5 + self.rng.below(16)
        } else {
            0
        };
        o.post_only = self.peer && display > 0;
        self.order(o, display, None);
    }

    fn step(&mut self) {
        if self.peer {
            return self.peer_step();
        }
        let inst = self.rng.below(3) as usize;
        if self.rng.below(64) == 0 {
            self.mid[inst] += self.rng.below(3) as i64 - 1;
        }
        // The mid follows the trades but stays within 15 ticks of where it began, so the
        // price range (and the ladders) stay bounded.
        self.mid[inst] = self.mid[inst].clamp(MID - 15, MID + 15);
        match self.rng.below(100) {
            0..=31 => self.passive(inst),
            32..=51 => {
                let side = self.side();
                let through = self.rng.below(4) as i64;
                let price = match side {
                    Side::Buy => self.mid[inst] + through,
                    Side::Sell => self.mid[inst] - through,
                };
                let qty = 1 + self.rng.below(300);
                let mut o = self.new_order(inst, side, price, qty);
                o.tif = TimeInForce::Ioc;
                self.order(o, 0, None);
            }
            52..=53 => {
                let side = self.side();
                let qty = 1 + self.rng.below(50);
                let mut o = self.new_order(inst, side, 0, qty);
                o.order_type = OrderType::Market;
                o.tif = TimeInForce::Ioc;
                self.order(o, 0, None);
            }
            54..=63 => {
                let side = self.side();
                let off = 2 + self.rng.below(11) as i64;
                let trigger = match side {
                    Side::Buy => self.mid[inst] + off,
                    Side::Sell => self.mid[inst] - off,
                };
                let qty = 1 + self.rng.below(100);
                let mut o = self.new_order(inst, side, trigger, qty);
                if self.rng.below(2) == 0 {
                    o.order_type = OrderType::Market;
                    o.tif = TimeInForce::Ioc;
                    o.price = Price(0);
                }
                self.order(o, 0, Some(Price(trigger)));
            }
            64..=89 => {
                if let Some((i, id, account)) = self.pick_live() {
                    self.push(CommandKind::Cancel {
                        instrument: i,
                        account,
                        order_id: id,
                    });
                } else {
                    self.passive(inst);
                }
            }
            _ => {
                if let Some((_, id, _)) = self.pick_live() {
                    if let Some(o) = self.matcher.order(id) {
                        let qty = if self.rng.below(2) == 0 {
                            o.qty.0.div_ceil(2)
                        } else {
                            o.qty.0 + 10
                        };
                        self.modify_near(o, qty);
                        return;
                    }
                }
                self.passive(inst);
            }
        }
    }

    /// A step of the peer-safe flow (one FIFO instrument): 40% passive (a third icebergs),
    /// 25% aggressive IOC, 25% cancels, 10% modifies of plain orders.
    fn peer_step(&mut self) {
        if self.rng.below(64) == 0 {
            self.mid[0] += self.rng.below(3) as i64 - 1;
        }
        self.mid[0] = self.mid[0].clamp(MID - 15, MID + 15);
        match self.rng.below(100) {
            0..=39 => self.passive(0),
            40..=64 => {
                let side = self.side();
                let through = self.rng.below(4) as i64;
                let price = match side {
                    Side::Buy => self.mid[0] + through,
                    Side::Sell => self.mid[0] - through,
                };
                let qty = 1 + self.rng.below(300);
                let mut o = self.new_order(0, side, price, qty);
                o.tif = TimeInForce::Ioc;
                self.order(o, 0, None);
            }
            65..=89 => match self.pick_live() {
                Some((i, id, account)) => self.push(CommandKind::Cancel {
                    instrument: i,
                    account,
                    order_id: id,
                }),
                None => self.passive(0),
            },
            _ => match self.pick_live() {
                Some((_, id, _)) if self.matcher.iceberg_of(id).is_none() => {
                    if let Some(o) = self.matcher.order(id) {
                        self.modify_near(o, o.qty.0 + 10);
                    }
                }
                _ => self.passive(0),
            },
        }
    }

    /// Modifies order `o` to `qty` lots, its price a tick either way or kept.
    fn modify_near(&mut self, o: NewOrder, qty: u64) {
        let step = self.rng.below(3) as i64 - 1;
        self.push(CommandKind::Modify {
            instrument: o.instrument,
            account: o.account,
            order_id: o.order_id,
            price: Price(o.price.0 + step),
            qty: Qty(qty),
        });
    }

    /// A random live order (resting or a pending stop), dropping ids that are gone.
    fn pick_live(&mut self) -> Option<(InstrumentId, OrderId, AccountId)> {
        while !self.live.is_empty() {
            let k = self.rng.below(self.live.len() as u64) as usize;
            let (i, id) = self.live[k];
            match self.matcher.order(id) {
                Some(o) => return Some((i, id, o.account)),
                None => {
                    self.live.swap_remove(k);
                }
            }
        }
        None
    }
}

impl PolicyWorkload {
    /// Generates the setup and `n` measured steps (each one or two ring commands).
    pub fn generate(&self, n: usize) -> GeneratedWorkload {
        let mut g = PGen {
            rng: SplitMix64::new(self.seed),
            matcher: Matcher::default(),
            out: Vec::new(),
            seq: 0,
            ts: 0,
            next_id: 0,
            accounts: self.accounts.max(1),
            live: Vec::new(),
            mid: [MID; 3],
            cmds: Vec::new(),
            icebergs: 0,
            stops: 0,
            peer: self.fifo_icebergs_only,
        };
        let n_inst = if g.peer { 1 } else { 3 };
        for (k, i) in POLICY_INSTRUMENTS.iter().take(n_inst).enumerate() {
            g.push(CommandKind::AddInstrument((*i).into()));
            let (policy, min_alloc) = match k {
                _ if g.peer => continue,
                0 => (MatchPolicy::ProRataTop, 2),
                1 => (MatchPolicy::ProRata, 1),
                _ => continue,
            };
            g.push(CommandKind::SetMatchPolicy {
                instrument: *i,
                policy,
                min_alloc: Qty(min_alloc),
            });
        }
        for _ in 0..self.starting_orders * 2 {
            for k in 0..n_inst {
                g.passive(k);
            }
        }
        let setup = std::mem::take(&mut g.cmds);
        let (icebergs0, stops0) = (g.icebergs, g.stops);
        for _ in 0..n {
            g.step();
        }
        let mut w = GeneratedWorkload {
            setup,
            commands: std::mem::take(&mut g.cmds),
            ..Default::default()
        };
        w.stats.resting_at_end = g.matcher.resting_count();
        w.stats.icebergs = g.icebergs - icebergs0;
        w.stats.stops = g.stops - stops0;
        w
    }
}
