//! A plug-in consumer written from scratch: a running VWAP (volume-weighted average price)
//! per instrument, published for other threads to read while the pipeline runs.
//!
//! `cargo run --release --example custom_consumer`

use ringex_engine::pipeline::ConsumerOptions;
use ringex_engine::workload::ExchangeCoreWorkload;
use ringex_engine::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Notional and volume per instrument, in ticks × lots and lots.
#[derive(Default)]
struct Vwap {
    acc: BTreeMap<InstrumentId, (i128, u128)>,
    /// Published at the end of every batch for readers on other threads.
    shared: Arc<Mutex<BTreeMap<InstrumentId, f64>>>,
    fills: u64,
}

impl Consumer for Vwap {
    fn name(&self) -> &str {
        "vwap"
    }

    fn on_event(&mut self, e: &Event, _seq: Sequence, end_of_batch: bool) {
        if let EventKind::Fill {
            instrument,
            price,
            qty,
            ..
        } = e.kind
        {
            let a = self.acc.entry(instrument).or_default();
            a.0 += price.0 as i128 * qty.0 as i128;
            a.1 += qty.0 as u128;
            self.fills += 1;
        }
        // Publish once per batch, not per event: the contract's flush point.
        if end_of_batch {
            if let Ok(mut s) = self.shared.lock() {
                for (i, (n, v)) in &self.acc {
                    s.insert(*i, *n as f64 / *v as f64);
                }
            }
        }
    }

    fn on_shutdown(&mut self) {
        println!("vwap consumer: {} fills seen", self.fills);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let vwap = Vwap::default();
    let shared = Arc::clone(&vwap.shared);
    let mut builder = Pipeline::builder();
    let id = builder.add_consumer(vwap, ConsumerOptions::default());
    let pipeline = builder.start()?;

    let w = ExchangeCoreWorkload::default().generate(200_000);
    let mut g = pipeline.gateway();
    for c in w.setup.iter().chain(&w.commands) {
        g.submit_at(*c)?;
    }
    drop(g);
    let lag = pipeline.status().lag(id);
    let mut report = pipeline.shutdown();
    let v: Vwap = report.take_consumer(id).ok_or("vwap consumer")?;
    println!("lag just before shutdown: {lag:?} events");
    for (i, p) in shared.lock().map_err(|_| "poisoned")?.iter() {
        println!("instrument {i}: VWAP {p:.3} ticks over {} lots", v.acc[i].1);
    }
    Ok(())
}
