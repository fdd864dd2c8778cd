//! The live demo: a market maker on each demo symbol, a TWAP buyer and a passive buyer, all
//! WebSocket clients of `ringex serve --demo`. Open http://127.0.0.1:8080/ to watch.
//!
//! ```text
//! cargo run --release -p ringex-bench --features serve -- serve --demo
//! cargo run --release -p ringex-examples --features agents --example agents_demo -- --seconds 60
//! ```

use ringex_examples::agents::{arg, demo, print};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = arg("--url", "ws://127.0.0.1:8080");
    let secs: f64 = arg("--seconds", "30").parse()?;
    println!("agents on {url} for {secs} s (watch http{}/)", &url[2..]);
    let [a, b, t, p] = demo(&url, secs).await?;
    print("maker DEMO-A", &a);
    print("maker DEMO-B", &b);
    print("twap DEMO-A", &t);
    print("passive DEMO-A", &p);
    Ok(())
}
