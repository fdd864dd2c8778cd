//! The same messages through ringex's matcher and two open Rust order books from crates.io,
//! `matchcore` (0.4) and `lobster` (0.2), in one run (feature `peers`), with a check that
//! they agree.
//!
//! ```text
//! cargo build --release -p ringex-bench --features peers --bin peers
//! target/release/peers [--runs 5] [FILE …]    # default: the six LOBSTER samples
//! target/release/peers --deep 1000000           # the deep-book flow, five price scenarios
//! target/release/peers --only ringex --runs 50  # time one engine (for a profiler)
//! target/release/peers --exchange-core 1000000  # the exchange-core mix, STP off
//! target/release/peers --multi 1000000          # 1000 instruments (Zipf), STP off
//! target/release/peers --icebergs 1000000       # FIFO with icebergs (ringex, matchcore)
//! target/release/peers --deep 1000000 --scenario calm --ids shuffled
//!                                               # ids relabelled: arrival|shuffled|gateways|random
//! ```
//!
//! With `--ids ORDER`, the generated flows' order ids are relabelled
//! (`ringex_engine::id_order`: a shuffled permutation of 1..N, 16 gateways' interleaved
//! counters, uniformly random 64-bit ids, or 1..N in arrival order); the trades and books
//! are the same, so the difference is the ids' cost alone. `--scenario NAME` runs one
//! price scenario of the deep flow instead of all five.
//!
//! With `--icebergs N`, N steps of the peer-safe policy flow
//! (`PolicyWorkload { fifo_icebergs_only: true, .. }`): one FIFO instrument where a third of
//! the resting orders are icebergs (post-only, never modified, so that both engines show
//! `min(display, open)` at rest), GTC and IOC limits, cancels, modifies of plain orders.
//! matchcore runs them as `QuantityPolicy::Iceberg` (visible `min(display, qty)`,
//! replenished by `display` at the back of the level: the same rule); lobster has no
//! icebergs and sits this flow out. The agreement check fails on this flow: matchcore
//! 0.4 trades an IOC sell limited at 9999 at 9998 once the icebergs at 9999 are used up
//! (command 95 of `--icebergs 3000`; `PEERS_DEBUG=1` prints it), below its limit, so
//! the difference is matchcore's, not a rule's. No open Rust book found implements pro-rata levels, a
//! TOP order or stops elected by a command's trades in acceptance order.
//!
//! **The messages**: with `--deep N`, the deep-book flow
//! (`ringex_engine::workload::DeepBookWorkload`, N new orders per price scenario); with
//! `--exchange-core N` or `--multi N`, N commands of the exchange-core mix or of the
//! multi-symbol flow (`MultiSymbolWorkload`: 1000 instruments; matchcore and lobster get an
//! order book per instrument, created when the instrument is added); else the
//! commands of ringex's checked LOBSTER replay
//! (`ringex_bench::lobster::workload`: real NASDAQ ids, sparse and large; prices in
//! ticks of $0.0001; the setup — the synthetic orders seeding row 0 — runs untimed).
//! **The mapping**:
//!
//! | ringex | matchcore | lobster |
//! |---|---|---|
//! | GTC limit (id, side, price, qty) | `Submit` `Limit` GTC; its order id is the command's sequence number, so a map from the LOBSTER id is kept (the integration's cost) | `Limit { id, side, qty, price }` |
//! | IOC limit | `Submit` `Limit` IOC | `Limit`, then `Cancel` of what rests (lobster has no IOC) |
//! | modify (LOBSTER: same price, smaller quantity, keeps priority; deep flow: one tick away, larger, loses priority) | `Amend` with the new price and quantity | `Cancel` + `Limit` with the new price and quantity (lobster has no amend: the order always loses its priority) |
//! | cancel | `Cancel` | `Cancel` |
//!
//! **The check**: per command, the traded quantity per price is the same in all three (a
//! lost priority in lobster can split a fill differently between orders, not between
//! prices); after the run, ringex's and matchcore's L2 books are equal, and lobster's price
//! levels (the keys of its non-empty queues; its quantities are private) and best bid and
//! ask equal ringex's. A disagreement is printed and the exit code is 1.
//!
//! **The measure**: commands per second, matcher alone, each engine in turn, `--runs`
//! rounds interleaved, each round in a rotated order (ringex first, then matchcore first,
//! then lobster first, …); the median round per engine is reported.

use ringex_bench::harness::args::number;
use ringex_engine::*;
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::time::Instant;

/// (command index, price, quantity) of every trade, summed per command and price.
type Trades = BTreeMap<(usize, i64), u64>;
/// Bid and ask levels of every book: (instrument, price) → total quantity (quantity 0 when
/// unknown).
type Levels = (BTreeMap<(u32, i64), u64>, BTreeMap<(u32, i64), u64>);
/// Best bid and ask of every book that has one (lobster's own record of them).
type Best = BTreeMap<u32, (Option<u64>, Option<u64>)>;

/// The instrument a command is for (every command the workloads make names one).
fn instrument_of(c: &Command) -> u32 {
    match c.kind {
        CommandKind::NewOrder(o) => o.instrument.0,
        CommandKind::Modify { instrument, .. } | CommandKind::Cancel { instrument, .. } => {
            instrument.0
        }
        CommandKind::AddInstrument(def) => def.id.0,
        _ => 0,
    }
}

/// One book per instrument of a command stream, created when first named (matchcore and
/// lobster books hold one instrument each).
fn book_for<B>(books: &mut Vec<Option<B>>, i: u32, make: impl FnOnce() -> B) -> &mut B {
    let i = i as usize;
    if books.len() <= i {
        books.resize_with(i + 1, || None);
    }
    books[i].get_or_insert_with(make)
}

fn ringex_run(setup: &[Command], cmds: &[Command], check: bool) -> (f64, Trades, Levels) {
    // The default capacity (64Ki orders, 64Ki gaps between ids), as a user would start.
    let mut m = Matcher::with_capacity(MatcherCapacity::default());
    let mut out = Vec::with_capacity(256);
    for (k, c) in setup.iter().enumerate() {
        out.clear();
        m.process(Sequence(k as u64 + 1), c, &mut out);
    }
    let base = setup.len() as u64;
    let mut trades = Trades::new();
    let t = Instant::now();
    for (k, c) in cmds.iter().enumerate() {
        out.clear();
        m.process(Sequence(base + k as u64 + 1), c, &mut out);
        if check {
            for e in &out {
                if let EventKind::Fill { price, qty, .. } = e.kind {
                    *trades.entry((k, price.0)).or_default() += qty.0;
                }
            }
        }
        std::hint::black_box(&out);
    }
    let secs = t.elapsed().as_secs_f64();
    let mut levels = Levels::default();
    for inst in m.instruments() {
        for o in m.resting_orders(inst) {
            let side = if o.side == Side::Buy {
                &mut levels.0
            } else {
                &mut levels.1
            };
            *side.entry((inst.0, o.price.0)).or_default() += o.qty.0;
        }
    }
    (secs, trades, levels)
}

fn matchcore_run(setup: &[Command], cmds: &[Command], check: bool) -> (f64, Trades, Levels) {
    use matchcore as mc;
    // Each book with the sequence number it expects next (matchcore numbers a book's
    // commands 0, 1, 2, … and names an order after its command's number).
    let mut books: Vec<Option<(mc::OrderBook, u64)>> = Vec::new();
    let mut ids: FxHashMap<u64, mc::OrderId> = FxHashMap::default();
    let mut trades = Trades::new();
    // The display size announced for the next order (an iceberg).
    let mut display = 0u64;
    let mut step = |books: &mut Vec<Option<(mc::OrderBook, u64)>>,
                    ids: &mut FxHashMap<u64, mc::OrderId>,
                    c: &Command,
                    k: usize,
                    record: bool| {
        if let CommandKind::OrderTerms(t) = c.kind {
            display = t.display.0;
            return;
        }
        let shown = std::mem::take(&mut display);
        let inst = instrument_of(c);
        let (book, seq) = book_for(books, inst, || (mc::OrderBook::new(&format!("I{inst}")), 0));
        let meta = mc::CommandMeta {
            sequence_number: mc::SequenceNumber(*seq),
            timestamp: mc::Timestamp(c.ts.0),
        };
        let kind = match c.kind {
            CommandKind::NewOrder(o) => {
                let side = if o.side == Side::Buy {
                    mc::Side::Buy
                } else {
                    mc::Side::Sell
                };
                let tif = if o.tif == TimeInForce::Ioc {
                    mc::TimeInForce::Ioc
                } else {
                    mc::TimeInForce::Gtc
                };
                if o.tif != TimeInForce::Ioc {
                    ids.insert(o.order_id.0, mc::OrderId::from(meta.sequence_number));
                }
                let policy = if shown > 0 {
                    let visible = shown.min(o.qty.0);
                    mc::QuantityPolicy::Iceberg {
                        visible_quantity: mc::Quantity(visible),
                        hidden_quantity: mc::Quantity(o.qty.0 - visible),
                        replenish_quantity: mc::Quantity(shown),
                    }
                } else {
                    mc::QuantityPolicy::Standard {
                        quantity: mc::Quantity(o.qty.0),
                    }
                };
                mc::CommandKind::Submit(mc::SubmitCmd {
                    order: mc::NewOrder::Limit(mc::LimitOrder::new(
                        mc::Price(o.price.0 as u64),
                        policy,
                        mc::OrderFlags::new(side, o.post_only, tif),
                    )),
                })
            }
            CommandKind::Modify {
                order_id,
                price,
                qty,
                ..
            } => {
                let Some(&id) = ids.get(&order_id.0) else {
                    return;
                };
                mc::CommandKind::Amend(mc::AmendCmd {
                    order_id: id,
                    patch: mc::AmendPatch::Limit(
                        mc::LimitOrderPatch::new()
                            .with_price(mc::Price(price.0 as u64))
                            .with_quantity_policy(mc::QuantityPolicy::Standard {
                                quantity: mc::Quantity(qty.0),
                            }),
                    ),
                })
            }
            CommandKind::Cancel { order_id, .. } => {
                let Some(id) = ids.remove(&order_id.0) else {
                    return;
                };
                mc::CommandKind::Cancel(mc::CancelCmd {
                    order_id: id,
                    order_kind: mc::OrderKind::Limit,
                })
            }
            _ => return,
        };
        *seq += 1;
        let outcome = book.execute(&mc::Command { meta, kind });
        if let mc::CommandOutcome::Rejected(f) = &outcome {
            if std::env::var_os("PEERS_DEBUG").is_some() {
                eprintln!("matchcore rejected command {k}: {f:?} ({c:?})");
            }
        }
        // An amend gives the order a new id (its new time priority): follow it.
        if let (
            CommandKind::Modify { order_id, .. },
            mc::CommandOutcome::Applied(mc::CommandReport::Amend(fx)),
        ) = (c.kind, &outcome)
        {
            ids.insert(order_id.0, fx.target_order().order_id());
        }
        if record {
            if let mc::CommandOutcome::Applied(
                mc::CommandReport::Submit(fx) | mc::CommandReport::Amend(fx),
            ) = &outcome
            {
                if let Some(r) = fx.target_order().match_result() {
                    for t in r.trades() {
                        *trades.entry((k, t.price().0 as i64)).or_default() += t.quantity().0;
                    }
                }
            }
        }
        std::hint::black_box(&outcome);
    };
    for c in setup {
        step(&mut books, &mut ids, c, usize::MAX, false);
    }
    let t = Instant::now();
    for (k, c) in cmds.iter().enumerate() {
        step(&mut books, &mut ids, c, k, check);
    }
    let secs = t.elapsed().as_secs_f64();
    let mut levels = Levels::default();
    for (i, book) in books.iter().enumerate() {
        let Some((book, _)) = book else { continue };
        let l2 = mc::Level2::from(book);
        let i = i as u32;
        levels
            .0
            .extend(l2.bid_levels().iter().map(|(p, q)| ((i, p.0 as i64), q.0)));
        levels
            .1
            .extend(l2.ask_levels().iter().map(|(p, q)| ((i, p.0 as i64), q.0)));
    }
    (secs, trades, levels)
}

fn lobster_run(setup: &[Command], cmds: &[Command], check: bool) -> (f64, Trades, Levels, Best) {
    use ::lobster as lb;
    let mut books: Vec<Option<lb::OrderBook>> = Vec::new();
    // lobster keeps no price or side of an order we could read back: the modify needs both.
    let mut live: FxHashMap<u64, (lb::Side, u64)> = FxHashMap::default();
    let mut trades = Trades::new();
    let mut step = |books: &mut Vec<Option<lb::OrderBook>>,
                    live: &mut FxHashMap<u64, (lb::Side, u64)>,
                    c: &Command,
                    k: usize,
                    record: bool| {
        let book = book_for(books, instrument_of(c), lb::OrderBook::new);
        let mut record_fills = |ev: &lb::OrderEvent| {
            if let lb::OrderEvent::Filled { fills, .. }
            | lb::OrderEvent::PartiallyFilled { fills, .. } = ev
            {
                for f in fills {
                    *trades.entry((k, f.price as i64)).or_default() += f.qty;
                }
            }
        };
        match c.kind {
            CommandKind::NewOrder(o) => {
                let side = if o.side == Side::Buy {
                    lb::Side::Bid
                } else {
                    lb::Side::Ask
                };
                let ev = book.event(lb::OrderType::Limit {
                    id: o.order_id.0 as u128,
                    side,
                    qty: o.qty.0,
                    price: o.price.0 as u64,
                });
                if o.tif != TimeInForce::Ioc {
                    live.insert(o.order_id.0, (side, o.price.0 as u64));
                } else if !matches!(ev, lb::OrderEvent::Filled { .. }) {
                    // lobster has no IOC: what rests of it is cancelled at once.
                    std::hint::black_box(book.event(lb::OrderType::Cancel(o.order_id.0 as u128)));
                }
                if record {
                    record_fills(&ev);
                }
                std::hint::black_box(&ev);
            }
            CommandKind::Modify {
                order_id,
                price,
                qty,
                ..
            } => {
                let Some(&(side, _)) = live.get(&order_id.0) else {
                    return;
                };
                live.insert(order_id.0, (side, price.0 as u64));
                std::hint::black_box(book.event(lb::OrderType::Cancel(order_id.0 as u128)));
                let ev = book.event(lb::OrderType::Limit {
                    id: order_id.0 as u128,
                    side,
                    qty: qty.0,
                    price: price.0 as u64,
                });
                if record {
                    record_fills(&ev);
                }
                std::hint::black_box(&ev);
            }
            CommandKind::Cancel { order_id, .. } => {
                live.remove(&order_id.0);
                std::hint::black_box(book.event(lb::OrderType::Cancel(order_id.0 as u128)));
            }
            _ => {}
        }
    };
    for c in setup {
        step(&mut books, &mut live, c, usize::MAX, false);
    }
    let t = Instant::now();
    for (k, c) in cmds.iter().enumerate() {
        step(&mut books, &mut live, c, k, check);
    }
    let secs = t.elapsed().as_secs_f64();
    let (mut levels, mut best) = (Levels::default(), Best::new());
    for (i, book) in books.iter().enumerate() {
        let Some(book) = book else { continue };
        let i = i as u32;
        let open = |side: &BTreeMap<u64, std::collections::VecDeque<usize>>| {
            side.iter()
                .filter(|(_, q)| !q.is_empty())
                .map(|(p, _)| ((i, *p as i64), 0))
                .collect::<Vec<_>>()
        };
        levels.0.extend(open(&book.bids));
        levels.1.extend(open(&book.asks));
        if book.max_bid.is_some() || book.min_ask.is_some() {
            best.insert(i, (book.max_bid, book.min_ask));
        }
    }
    (secs, trades, levels, best)
}

/// With `PEERS_DEBUG` set: the first (command, price) where a peer's trades differ from
/// ringex's, the trade counts, and the commands leading up to it.
fn print_first_difference(peer: &str, ours: &Trades, theirs: &Trades, cmds: &[Command]) {
    if std::env::var_os("PEERS_DEBUG").is_none() {
        return;
    }
    let d = ours.iter().zip(theirs.iter()).find(|(a, b)| a != b);
    eprintln!(
        "first {peer} difference (ringex, {peer}): {d:?}; counts {} vs {}",
        ours.len(),
        theirs.len()
    );
    if let Some((((k, _), _), _)) = d {
        let from = k.saturating_sub(3);
        for (j, c) in cmds.iter().enumerate().skip(from).take(k - from + 1) {
            eprintln!("command {j}: {c:?}");
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    ringex_bench::harness::args::check("usage: target/release/peers [--runs N] [--only ringex|matchcore|lobster] [--deep N [--scenario NAME] | --exchange-core N | --multi N | --icebergs N] [--ids arrival|shuffled|gateways|random] [FILE …]", &["--runs", "--only", "--deep", "--exchange-core", "--multi", "--icebergs", "--ids", "--scenario"]);
    let runs = number("--runs", 5).max(1) as usize;
    let deep = number("--deep", 0) as usize;
    let xcore = number("--exchange-core", 0) as usize;
    let multi = number("--multi", 0) as usize;
    let icebergs = number("--icebergs", 0) as usize;
    // `--only ENGINE`: time one engine only (for a profiler); the check still runs all three.
    let only_arg = ringex_bench::harness::args::value("--only");
    let only = only_arg.as_deref();
    // `--ids a,b`: each flow once per id order.
    let ids: Vec<Option<ringex_engine::id_order::IdOrder>> =
        match ringex_bench::harness::args::value("--ids") {
            None => vec![None],
            Some(list) => list
                .split(',')
                .map(|s| {
                    Some(
                        ringex_engine::id_order::IdOrder::parse(s).unwrap_or_else(|| {
                            eprintln!("--ids: a comma list of arrival, shuffled, gateways, random");
                            std::process::exit(2)
                        }),
                    )
                })
                .collect(),
        };
    let scenario = ringex_bench::harness::args::value("--scenario").map(|s| {
        ringex_engine::workload::PriceScenario::parse(&s).unwrap_or_else(|| {
            eprintln!("--scenario: one of calm, trend-up, trend-down, volatile, jumps");
            std::process::exit(2)
        })
    });
    // The flow once per id order of `--ids` (relabelled), each named so.
    let relabel = |name: String, w: ringex_engine::workload::GeneratedWorkload| {
        ids.iter()
            .map(|order| match order {
                Some(order) => (
                    format!("{name}, ids {}", order.name()),
                    ringex_engine::id_order::relabel(&w, *order, 1),
                ),
                None => (name.clone(), w.clone()),
            })
            .collect::<Vec<_>>()
    };
    let mut files: Vec<std::path::PathBuf> = std::env::args()
        .skip(1)
        .filter(|a| {
            !a.starts_with("--")
                && a.parse::<u64>().is_err()
                && !["ringex", "matchcore", "lobster"].contains(&a.as_str())
                && ringex_engine::id_order::IdOrder::parse(a).is_none()
                && ringex_engine::workload::PriceScenario::parse(a).is_none()
        })
        .map(Into::into)
        .collect();
    if files.is_empty() {
        // Every sample: the message CSVs and the zips.
        files = ringex_bench::lobster::sample_files();
    }
    let mut inputs: Vec<(String, Vec<Command>, Vec<Command>)> = Vec::new();
    // Self-trade prevention off: the peers have none, so every order trades with whatever
    // it crosses in all three engines.
    let allow = |v: Vec<Command>| -> Vec<Command> {
        v.into_iter()
            .map(|mut c| {
                if let CommandKind::NewOrder(o) = &mut c.kind {
                    o.stp = SelfTradePrevention::Allow;
                }
                c
            })
            .collect()
    };
    // Inputs that lobster cannot run (icebergs).
    let mut no_lobster = false;
    if icebergs > 0 {
        let w = ringex_engine::policy_workload::PolicyWorkload {
            fifo_icebergs_only: true,
            ..Default::default()
        }
        .generate(icebergs);
        let name = format!(
            "FIFO with icebergs ({icebergs} steps, {} icebergs, STP off)",
            w.stats.icebergs
        );
        for (name, w) in relabel(name, w) {
            inputs.push((name, allow(w.setup), allow(w.commands)));
        }
        no_lobster = true;
        files.clear();
    } else if multi > 0 {
        // Many instruments (1000, Zipf activity, 20 resting orders each at the start; GTC and
        // IOC limits, cancels, moves): one book per instrument in each peer.
        let w = ringex_engine::workload::MultiSymbolWorkload::default().generate(multi);
        let name = format!("multi-symbol, 1000 instruments ({multi} commands, STP off)");
        for (name, w) in relabel(name, w) {
            inputs.push((name, allow(w.setup), allow(w.commands)));
        }
        files.clear();
    } else if xcore > 0 {
        // The exchange-core mix (one instrument, 1000 accounts, ~1000 resting orders, GTC and
        // IOC limits, cancels, moves).
        let w = ringex_engine::workload::ExchangeCoreWorkload::default().generate(xcore);
        let name = format!("exchange-core mix ({xcore} commands, STP off)");
        for (name, w) in relabel(name, w) {
            inputs.push((name, allow(w.setup), allow(w.commands)));
        }
        files.clear();
    } else if deep > 0 {
        let scenarios = match scenario {
            Some(sc) => vec![sc],
            None => ringex_engine::workload::PriceScenario::ALL.to_vec(),
        };
        for sc in scenarios {
            let w = ringex_engine::workload::DeepBookWorkload {
                scenario: sc,
                ..Default::default()
            }
            .generate(deep);
            for (name, w) in relabel(format!("deep {} ({deep} new orders)", sc.name()), w) {
                inputs.push((name, w.setup, w.commands));
            }
        }
        files.clear();
    } else {
        assert!(
            !files.is_empty(),
            "no LOBSTER files: give paths or set RINGEX_LOBSTER_DIR"
        );
    }
    for f in &files {
        let w = ringex_bench::lobster::workload(f).expect("read LOBSTER file");
        let name = f
            .file_name()
            .map_or("?".into(), |n| n.to_string_lossy().to_string());
        let short = name
            .trim_end_matches(".csv")
            .trim_end_matches(".zip")
            .to_string();
        inputs.push((short, w.setup, w.commands));
    }
    println!("# matcher alone, commands/s (median of {runs} interleaved rounds); agree = trades per command and price, and final books, equal");
    println!("| file | commands | ringex | matchcore | lobster | ringex / fastest peer | agree |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    // The checks first, then the timed rounds: each round runs every input (so that inputs
    // compared with each other, like one flow under two id orders, share the minutes).
    let mut whys: Vec<Vec<&str>> = Vec::new();
    for (_, setup, cmds) in &inputs {
        // The check run.
        let (_, rt, rl) = ringex_run(setup, cmds, true);
        let (_, mt, ml) = matchcore_run(setup, cmds, true);
        let (_, lt, ll, lbest) = if no_lobster {
            (0.0, rt.clone(), rl.clone(), Best::new())
        } else {
            lobster_run(setup, cmds, true)
        };
        let keys = |l: &BTreeMap<(u32, i64), u64>| l.keys().copied().collect::<Vec<_>>();
        // ringex's best bid and ask per book.
        let mut best = Best::new();
        for &(i, p) in rl.0.keys() {
            best.entry(i).or_insert((None, None)).0 = Some(p as u64);
        }
        for &(i, p) in rl.1.keys().rev() {
            best.entry(i).or_insert((None, None)).1 = Some(p as u64);
        }
        let mut why = Vec::new();
        if mt != rt {
            why.push("matchcore trades");
            print_first_difference("matchcore", &rt, &mt, cmds);
        }
        if lt != rt {
            why.push("lobster trades");
            print_first_difference("lobster", &rt, &lt, cmds);
        }
        if ml != rl {
            why.push("matchcore book");
        }
        if !no_lobster
            && (keys(&ll.0) != keys(&rl.0) || keys(&ll.1) != keys(&rl.1) || lbest != best)
        {
            why.push("lobster book");
        }
        whys.push(why);
    }
    let mut speeds = vec![(Vec::new(), Vec::new(), Vec::new()); inputs.len()];
    for round in 0..runs {
        for ((_, setup, cmds), (r, m, l)) in inputs.iter().zip(&mut speeds) {
            // Each round rotates the order, so that no engine always runs right after the
            // same other one (whose memory traffic and freed heap the next run starts with).
            for k in 0..3 {
                match (round + k) % 3 {
                    0 if only.is_none_or(|o| o == "ringex") => {
                        r.push(cmds.len() as f64 / ringex_run(setup, cmds, false).0)
                    }
                    1 if only.is_none_or(|o| o == "matchcore") => {
                        m.push(cmds.len() as f64 / matchcore_run(setup, cmds, false).0)
                    }
                    2 if !no_lobster && only.is_none_or(|o| o == "lobster") => {
                        l.push(cmds.len() as f64 / lobster_run(setup, cmds, false).0)
                    }
                    _ => {}
                }
            }
        }
    }
    let mut failed = false;
    for (((short, _, cmds), why), (r, m, l)) in inputs.iter().zip(&whys).zip(speeds) {
        let (r, m, l) = (median(r), median(m), median(l));
        println!(
            "| {short} | {} | {:.2}M | {:.2}M | {:.2}M | {:.2}× | {} |",
            cmds.len(),
            r / 1e6,
            m / 1e6,
            l / 1e6,
            r / m.max(l),
            if why.is_empty() {
                "yes".to_string()
            } else {
                format!("NO: {}", why.join(", "))
            }
        );
        failed |= !why.is_empty();
    }
    if failed {
        std::process::exit(1);
    }
}
