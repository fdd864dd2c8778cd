//! The allocation consumer against a naive reference on whole engine streams: the
//! exchange-core mix, the 1000-instrument stream and the policy flow (stops elected as
//! takers, icebergs, pro-rata levels), every fourth order a block order of a three-account
//! group. The reference keeps every block order it has seen, looks up both orders of every
//! fill and apportions with [`apportion`]; the consumer must send exactly the same
//! allocations, in the same order.

use ringex_consumers::allocation::{apportion, Allocation, Allocator, Group};
use ringex_engine::policy_workload::PolicyWorkload;
use ringex_engine::workload::{ExchangeCoreWorkload, MultiSymbolWorkload};
use ringex_engine::*;
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Every allocation the naive way.
fn reference(events: &[Event], members: &[(AccountId, Decimal)]) -> Vec<Allocation> {
    let weights: Vec<Decimal> = members.iter().map(|m| m.1).collect();
    // Block order → (instrument, filled, running totals per account).
    let mut blocks: HashMap<OrderId, (InstrumentId, u128, Vec<u128>)> = HashMap::new();
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        match e.kind {
            EventKind::Accepted {
                order_id,
                instrument,
                alloc_group: AllocGroupId(1),
                ..
            } => {
                blocks.insert(order_id, (instrument, 0, vec![0; members.len()]));
            }
            EventKind::Fill {
                taker,
                maker,
                price,
                qty,
                ..
            } => {
                for id in [taker, maker] {
                    if let Some((instrument, filled, totals)) = blocks.get_mut(&id) {
                        *filled += qty.0 as u128;
                        let next = apportion(&weights, totals, *filled);
                        for (k, (&n, &p)) in next.iter().zip(totals.iter()).enumerate() {
                            if n > p {
                                out.push(Allocation {
                                    fill_seq: Sequence(i as u64),
                                    instrument: *instrument,
                                    order_id: id,
                                    account: members[k].0,
                                    qty: Qty((n - p) as u64),
                                    price,
                                });
                            }
                        }
                        *totals = next;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn check(name: &str, events: &[Event]) {
    let members = vec![
        (AccountId(1), Decimal::new(5, 1)),
        (AccountId(2), Decimal::new(3, 1)),
        (AccountId(3), Decimal::new(2, 1)),
    ];
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let mut a = Allocator::new(
        HashMap::from([(
            AllocGroupId(1),
            Group {
                members: members.clone(),
            },
        )]),
        move |x: &Allocation| sink.lock().unwrap().push(*x),
    );
    for (i, e) in events.iter().enumerate() {
        a.on_event(e, Sequence(i as u64), i % 64 == 63);
    }
    let want = reference(events, &members);
    let got = got.lock().unwrap();
    assert!(
        want.len() > 1000,
        "{name}: the stream must have block fills"
    );
    assert_eq!(got.len(), want.len(), "{name}: allocation count");
    for (k, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        assert_eq!(g, w, "{name}: allocation {k}");
    }
}

#[test]
fn allocations_equal_a_naive_reference_on_three_streams() {
    let g = Some(AllocGroupId(1));
    check(
        "exchange-core",
        &ExchangeCoreWorkload::default()
            .generate(100_000)
            .recorded_events(g),
    );
    check(
        "multi-symbol",
        &MultiSymbolWorkload::default()
            .generate(100_000)
            .recorded_events(g),
    );
    let policies = PolicyWorkload::default()
        .generate(100_000)
        .recorded_events(g);
    assert!(
        policies
            .iter()
            .any(|e| matches!(e.kind, EventKind::Triggered { .. })),
        "the policy flow elects stops"
    );
    check("policies", &policies);
}
