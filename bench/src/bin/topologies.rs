//! Throughput of the pipeline topologies against their `crossbeam-channel` baselines.
//!
//! ```text
//! topologies pipeline [--commands 2000000] [--runs 5] [--ring 65536] [--stage-core N --consumer-cores a,b,c,d] [--idle spin|backoff|yield]
//! topologies ring     [--events 50000000] [--runs 5] [--rate 1000000] [...same placement flags]
//! ```
//!
//! `pipeline`: 1 producer → matcher → 4 counting consumers on the exchange-core stream,
//! ringex vs the same topology on bounded crossbeam channels, median of `--runs`.
//! `ring`: trivial handlers, 64-byte slots, 1 producer → 1 stage → 4 consumers; closed loop,
//! or open loop at `--rate` events/s with latency percentiles from the intended send time.

use clap::{Parser, Subcommand};
use ringex_bench::harness::topology::{
    crossbeam_pipeline_one_to_four, pipeline_one_to_four, ring_one_to_four, Placement,
};
use ringex_engine::pipeline::IdleStrategy;
use ringex_engine::workload::ExchangeCoreWorkload;
use std::time::Duration;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(clap::Args, Clone)]
struct Place {
    /// Pin the matcher / stage thread to this core.
    #[arg(long)]
    stage_core: Option<usize>,
    /// Pin the consumers to these cores (comma separated).
    #[arg(long, value_delimiter = ',')]
    consumer_cores: Vec<usize>,
    /// Idle strategy of every stage: spin, backoff (spin, yield, then 50 µs sleeps),
    /// backoff-yield (spin then yield, never sleep) or yield (yield at once).
    /// Default: spin when pinned, backoff otherwise.
    #[arg(long)]
    idle: Option<String>,
}

#[derive(Subcommand)]
enum Mode {
    /// The matching pipeline vs crossbeam channels.
    Pipeline {
        #[arg(long, default_value_t = 2_000_000)]
        commands: usize,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        #[arg(long, default_value_t = 1 << 16)]
        ring: usize,
        /// Skip the crossbeam baseline.
        #[arg(long)]
        no_baseline: bool,
        #[command(flatten)]
        place: Place,
    },
    /// The ring alone with trivial handlers.
    Ring {
        #[arg(long, default_value_t = 50_000_000)]
        events: u64,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        #[arg(long, default_value_t = 1 << 16)]
        ring: usize,
        /// Open loop at this many events per second (default: closed loop).
        #[arg(long)]
        rate: Option<u64>,
        #[command(flatten)]
        place: Place,
    },
}

fn placement(p: &Place) -> Result<Placement, String> {
    let idle = match p.idle.as_deref() {
        None => None,
        Some("spin") => Some(IdleStrategy::BusySpin),
        Some("backoff") => Some(IdleStrategy::SHARED),
        Some("yield") => Some(IdleStrategy::Yield),
        Some("sleep") => Some(IdleStrategy::Sleep(Duration::from_micros(50))),
        Some("backoff-yield") => Some(IdleStrategy::Backoff {
            park: Duration::ZERO,
        }),
        Some(o) => {
            return Err(format!(
                "unknown idle strategy {o:?}: use spin, backoff or yield"
            ))
        }
    };
    for c in p.stage_core.iter().chain(&p.consumer_cores) {
        ringex_engine::pipeline::validate_core(*c).map_err(|e| e.to_string())?;
    }
    Ok(Placement {
        stage_core: p.stage_core,
        consumer_cores: p.consumer_cores.clone(),
        idle,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn describe(p: &Placement) -> String {
    format!(
        "stage core {:?}, consumer cores {:?}, idle {}",
        p.stage_core,
        p.consumer_cores,
        match p.idle {
            None => "default (spin if pinned, else backoff)".to_string(),
            Some(i) => format!("{i:?}"),
        }
    )
}

fn main() {
    let cli = Cli::parse();
    let cores = core_affinity::get_core_ids().map_or(0, |c| c.len());
    match cli.mode {
        Mode::Pipeline {
            commands,
            runs,
            ring,
            no_baseline,
            place,
        } => {
            let place = match placement(&place) {
                Ok(p) => p,
                Err(e) => return eprintln!("{e}"),
            };
            let w = ExchangeCoreWorkload::default().generate(commands);
            println!(
                "pipeline 1 producer -> matcher -> 4 consumers, exchange-core mix, {} commands, ring {ring}, {cores} cores, {}",
                w.commands.len(),
                describe(&place)
            );
            let (mut ours, mut base) = (Vec::new(), Vec::new());
            for run in 0..runs {
                let r = match pipeline_one_to_four(&w.setup, &w.commands, ring, &place) {
                    Ok(r) => r,
                    Err(e) => return eprintln!("{e}"),
                };
                if no_baseline {
                    println!("run {run}: ringex {:.2}M commands/s", r.per_second() / 1e6);
                    continue;
                }
                let c = crossbeam_pipeline_one_to_four(&w.setup, &w.commands, ring);
                println!(
                    "run {run}: ringex {:.2}M commands/s ({} events/consumer), crossbeam {:.2}M commands/s",
                    r.per_second() / 1e6,
                    r.events,
                    c.per_second() / 1e6
                );
                ours.push(r.per_second());
                base.push(c.per_second());
            }
            if no_baseline {
                return;
            }
            let (o, b) = (median(ours), median(base));
            println!(
                "median: ringex {:.2}M commands/s, crossbeam {:.2}M commands/s, ratio {:.2}x",
                o / 1e6,
                b / 1e6,
                o / b
            );
        }
        Mode::Ring {
            events,
            runs,
            ring,
            rate,
            place,
        } => {
            let place = match placement(&place) {
                Ok(p) => p,
                Err(e) => return eprintln!("{e}"),
            };
            println!(
                "ring only: 1 producer -> 1 stage -> 4 consumers, 64-byte slots, {events} events, ring {ring}, {}, {cores} cores, {}",
                rate.map_or("closed loop (batches of 64)".to_string(), |r| format!("open loop at {r}/s")),
                describe(&place)
            );
            let mut rates = Vec::new();
            for run in 0..runs {
                let r = ring_one_to_four(events, ring, rate, &place);
                let mut line = format!(
                    "run {run}: {:.2}M events/s ({} per consumer)",
                    r.throughput.per_second() / 1e6,
                    r.throughput.events
                );
                if let Some(h) = &r.latency {
                    line += &format!(
                        ", latency from intended send: p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs",
                        h.value_at_quantile(0.5) as f64 / 1e3,
                        h.value_at_quantile(0.9) as f64 / 1e3,
                        h.value_at_quantile(0.99) as f64 / 1e3,
                        h.value_at_quantile(0.999) as f64 / 1e3,
                        h.max() as f64 / 1e3
                    );
                }
                println!("{line}");
                rates.push(r.throughput.per_second());
            }
            println!("median: {:.2}M events/s", median(rates) / 1e6);
        }
    }
}
