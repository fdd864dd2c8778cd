//! A passive buyer: joins the best bid with a post-only order and follows it until its
//! quantity is bought (a client of `ringex serve --demo`; key `buyer`).
//!
//! `cargo run --release -p ringex-examples --features agents --example passive_buyer -- --qty 10 --seconds 60`

use ringex_examples::agents::{arg, passive_buyer, print, PassiveConfig};
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = arg("--url", "ws://127.0.0.1:8080");
    let cfg = PassiveConfig {
        symbol: arg("--symbol", "DEMO-A"),
        qty: arg("--qty", "10").parse()?,
    };
    let until =
        tokio::time::Instant::now() + Duration::from_secs_f64(arg("--seconds", "30").parse()?);
    let r = passive_buyer(&url, &arg("--key", "buyer"), cfg, until).await?;
    print("passive buyer", &r);
    Ok(())
}
