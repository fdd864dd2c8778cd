//! A TWAP executor: buys (or sells) a quantity in equal IOC slices over a duration, capped at
//! a limit price (a client of `ringex serve --demo`; key `twap`).
//!
//! `cargo run --release -p ringex-examples --features agents --example twap -- --side buy --qty 40 --slices 20 --seconds 20 --limit 105`

use ringex_examples::agents::{arg, print, twap, TwapConfig};
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = arg("--url", "ws://127.0.0.1:8080");
    let cfg = TwapConfig {
        symbol: arg("--symbol", "DEMO-A"),
        buy: arg("--side", "buy") == "buy",
        total: arg("--qty", "40").parse()?,
        slices: arg("--slices", "20").parse()?,
        duration: Duration::from_secs_f64(arg("--seconds", "20").parse()?),
        limit: arg("--limit", "105").parse()?,
    };
    let r = twap(&url, &arg("--key", "twap"), cfg).await?;
    print("twap", &r);
    Ok(())
}
