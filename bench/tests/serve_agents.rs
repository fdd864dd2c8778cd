//! The trading agents (examples/src/agents.rs) against a real `ringex serve --demo`: the
//! market makers quote, the TWAP buys its whole quantity from them, the passive buyer rests
//! at the best bid, and every fill the agents saw is a trade the engine made.
#![cfg(feature = "serve")]

#[path = "common/ws.rs"]
mod ws;

use ringex_engine::{EventKind, InstrumentId};
use rust_decimal::Decimal;
use ws::demo_server;

#[test]
fn the_demo_agents_trade_with_each_other() {
    let (server, dir) = demo_server(|_| {});
    let base = format!("ws://{}", server.addr);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let [mm_a, mm_b, twap, passive] = rt
        .block_on(ringex_examples::agents::demo(&base, 3.0))
        .unwrap();
    // The TWAP bought exactly its 40 lots, all from the DEMO-A maker, at or under its cap.
    assert_eq!(twap.filled, Decimal::from(40));
    assert!(twap.avg_price().unwrap() <= Decimal::from(105));
    assert!(twap.rejected.is_empty(), "{:?}", twap.rejected);
    // Both makers quoted and were never refused for bad input.
    for mm in [&mm_a, &mm_b] {
        assert!(mm.accepted >= 6, "{mm:?}");
        assert!(!mm.rejected.contains_key("off_tick"), "{mm:?}");
    }
    assert!(mm_a.filled >= Decimal::from(40), "{mm_a:?}");
    assert!(passive.accepted >= 1, "{passive:?}");
    // The maker never trades with itself (self-trade prevention), so every DEMO-A trade the
    // engine journaled has the TWAP or the passive buyer on the buying side.
    let done = server.stop().unwrap();
    let traded: u64 = ringex_consumers::recovery::journal_events(&dir.path().join("journal"))
        .unwrap()
        .iter()
        .filter_map(|(_, e)| match e.kind {
            EventKind::Fill {
                instrument: InstrumentId(0),
                qty,
                ..
            } => Some(qty.0),
            _ => None,
        })
        .sum();
    assert_eq!(Decimal::from(traded), twap.filled + passive.filled);
    // Every agent session ended with cancel-on-disconnect (orders in flight included): the
    // books are empty.
    let m = done.matcher.unwrap();
    for i in [InstrumentId(0), InstrumentId(1)] {
        assert_eq!(m.resting_orders(i), vec![], "{i:?}");
    }
}
