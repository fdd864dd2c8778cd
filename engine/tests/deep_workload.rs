//! The deep-book flow generator: deterministic, valid (every cancel and modify names a
//! resting order), shaped as documented, and the fast book agrees with the naive reference
//! on it event for event.

use ringex_engine::workload::{DeepBookWorkload, PriceScenario};
use ringex_engine::*;

fn run<M: MatchingEngine>(m: &mut M, w: &workload::GeneratedWorkload) -> (Vec<Event>, usize) {
    let mut all = Vec::new();
    let mut out = Vec::new();
    let mut peak = 0;
    let mut resting: i64 = 0;
    for (k, c) in w.setup.iter().chain(&w.commands).enumerate() {
        out.clear();
        m.process(Sequence(k as u64 + 1), c, &mut out);
        for e in &out {
            match e.kind {
                EventKind::Accepted { tif, .. } if tif != TimeInForce::Ioc => resting += 1,
                EventKind::Cancelled { .. } | EventKind::Expired { .. } => resting -= 1,
                _ => {}
            }
        }
        all.extend_from_slice(&out);
        peak = peak.max(resting);
    }
    (all, peak.max(0) as usize)
}

#[test]
fn the_deep_flow_is_valid_deterministic_and_shaped_as_documented() {
    let cfg = DeepBookWorkload {
        max_depth: 5_000,
        ..Default::default()
    };
    let w = cfg.generate(40_000);
    let again = cfg.generate(40_000);
    assert_eq!(w.commands, again.commands, "same seed, same stream");
    let news = w
        .commands
        .iter()
        .filter(|c| matches!(c.kind, CommandKind::NewOrder(_)))
        .count();
    assert_eq!(news, 40_000);
    let ratio = w.commands.len() as f64 / news as f64;
    assert!(
        (1.7..2.2).contains(&ratio),
        "{ratio} messages per new order"
    );
    let ioc = w.stats.ioc as f64 / news as f64;
    assert!((0.13..0.17).contains(&ioc), "{ioc} IOC");
    let modifies = w.stats.moves as f64 / w.stats.gtc as f64;
    assert!(
        (0.12..0.25).contains(&modifies),
        "{modifies} modifies per resting order"
    );
    // Sparse ids: gaps averaging the configured one.
    let ids: Vec<u64> = w
        .commands
        .iter()
        .filter_map(|c| match c.kind {
            CommandKind::NewOrder(o) => Some(o.order_id.0),
            _ => None,
        })
        .collect();
    let gap = (ids[ids.len() - 1] - ids[0]) / (ids.len() as u64 - 1);
    assert!((7_000..9_000).contains(&gap), "mean id gap {gap}");
    // Valid: no command is rejected; the book swells towards its peak.
    let mut m = Matcher::with_capacity(MatcherCapacity::default());
    let (events, peak) = run(&mut m, &w);
    let rejected = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Rejected { .. }))
        .count();
    assert_eq!(rejected, 0);
    assert!(peak > 3_500 && peak <= 5_200, "peak book {peak}");
}

#[test]
fn fast_and_naive_agree_on_every_deep_scenario() {
    for sc in PriceScenario::ALL {
        let w = DeepBookWorkload {
            scenario: sc,
            max_depth: 1_500,
            ..Default::default()
        }
        .generate(6_000);
        let (fast, _) = run(&mut Matcher::with_capacity(MatcherCapacity::default()), &w);
        let (naive, _) = run(&mut NaiveMatcher::new(), &w);
        assert!(
            fast == naive,
            "{sc:?}: the fast book and the naive reference differ"
        );
        assert!(
            fast.iter()
                .any(|e| matches!(e.kind, EventKind::Fill { .. })),
            "{sc:?} trades"
        );
    }
}
