//! A market maker quoting three levels a side around a walking mid, refreshing every 50 ms
//! (a client of `ringex serve --demo`; key `mm`).
//!
//! `cargo run --release -p ringex-examples --features agents --example market_maker -- --symbol DEMO-A --mid 100 --seconds 60`

use ringex_examples::agents::{arg, demo_maker, market_maker, print};
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = arg("--url", "ws://127.0.0.1:8080");
    let symbol = arg("--symbol", "DEMO-A");
    let cfg = demo_maker(
        &symbol,
        arg("--mid", "100").parse()?,
        arg("--seed", "1").parse()?,
    );
    let until =
        tokio::time::Instant::now() + Duration::from_secs_f64(arg("--seconds", "30").parse()?);
    let r = market_maker(&url, &arg("--key", "mm"), cfg, until).await?;
    print("market maker", &r);
    Ok(())
}
