//! The fast matcher against the naive reference, and the replica against the matcher, on
//! random command streams covering every command kind and bad inputs.

mod common;

use common::{decode, raw_stream, INSTRUMENTS};
use proptest::prelude::*;
use ringex_engine::*;

/// Runs both matchers command by command: identical events, then identical books.
fn fast_vs_naive(cmds: &[Command], mut fast: Matcher) -> Result<(), TestCaseError> {
    let mut naive = NaiveMatcher::new();
    let (mut fe, mut ne) = (Vec::new(), Vec::new());
    for (i, c) in cmds.iter().enumerate() {
        let seq = Sequence(i as u64 + 1);
        fe.clear();
        ne.clear();
        fast.process(seq, c, &mut fe);
        naive.process(seq, c, &mut ne);
        prop_assert_eq!(&fe, &ne, "command {} = {:?}", i, c);
    }
    let mut resting = 0;
    for inst in INSTRUMENTS {
        let books = fast.resting_orders(inst);
        resting += books.len();
        prop_assert_eq!(books, MatchingEngine::resting_orders(&naive, inst));
    }
    prop_assert_eq!(fast.resting_count(), resting);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn fast_and_naive_give_identical_events_and_books(raw in raw_stream(300)) {
        fast_vs_naive(&decode(&raw), Matcher::default())?;
    }

    /// The same with a dense id window of 8 ids: nearly every id takes the hash-map path.
    #[test]
    fn fast_and_naive_agree_when_ids_fall_outside_the_dense_window(raw in raw_stream(300)) {
        fast_vs_naive(&decode(&raw), Matcher::with_capacity(MatcherCapacity { orders: 64, ids: 8, gtd: 8 }))?;
    }

    #[test]
    fn replica_equals_matcher_after_every_command(raw in raw_stream(300)) {
        let cmds = decode(&raw);
        let mut fast = Matcher::default();
        let mut replica = BookReplica::new();
        let mut events = Vec::new();
        for (i, c) in cmds.iter().enumerate() {
            events.clear();
            fast.process(Sequence(i as u64 + 1), c, &mut events);
            for e in &events {
                replica.apply(e);
            }
            for inst in INSTRUMENTS {
                prop_assert_eq!(replica.resting_orders(inst), fast.resting_orders(inst), "after command {} = {:?}", i, c);
                prop_assert_eq!(replica.is_halted(inst), fast.is_halted(inst));
                prop_assert_eq!(
                    replica.depth(inst, Side::Buy).collect::<Vec<_>>(),
                    fast.depth(inst, Side::Buy).collect::<Vec<_>>()
                );
                prop_assert_eq!(
                    replica.depth(inst, Side::Sell).collect::<Vec<_>>(),
                    fast.depth(inst, Side::Sell).collect::<Vec<_>>()
                );
            }
            for a in 1..=4 {
                prop_assert_eq!(
                    replica.blocked_accounts().any(|x| x == AccountId(a)),
                    fast.is_blocked(AccountId(a))
                );
            }
        }
    }

    #[test]
    fn the_same_commands_give_the_same_events(raw in raw_stream(200)) {
        let cmds = decode(&raw);
        let run = || {
            let mut m = Matcher::default();
            let mut out = Vec::new();
            for (i, c) in cmds.iter().enumerate() {
                m.process(Sequence(i as u64 + 1), c, &mut out);
            }
            out
        };
        prop_assert_eq!(run(), run());
    }

    #[test]
    fn every_command_is_answered_and_last_events_are_marked(raw in raw_stream(200)) {
        let cmds = decode(&raw);
        let mut m = Matcher::default();
        let mut out = Vec::new();
        for (i, c) in cmds.iter().enumerate() {
            out.clear();
            let seq = Sequence(i as u64 + 1);
            m.process(seq, c, &mut out);
            prop_assert!(out.iter().all(|e| e.cmd_seq() == seq));
            let lasts = out.iter().filter(|e| e.is_last_of_command()).count();
            prop_assert_eq!(lasts, usize::from(!out.is_empty()));
            if let Some(e) = out.last() {
                prop_assert!(e.is_last_of_command());
            }
            let answers_needed = !matches!(c.kind, CommandKind::Tick);
            if answers_needed {
                prop_assert!(!out.is_empty() || matches!(c.kind, CommandKind::MassCancel { .. }), "{:?}", c);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn events_round_trip_through_the_codec(raw in raw_stream(200)) {
        let cmds = decode(&raw);
        let mut m = Matcher::default();
        let mut out = Vec::new();
        for (i, c) in cmds.iter().enumerate() {
            m.process(Sequence(i as u64 + 1), c, &mut out);
        }
        let mut buf = [0u8; ringex_engine::codec::EVENT_BYTES];
        for e in &out {
            e.encode(&mut buf);
            prop_assert_eq!(Event::decode(&buf), Some(*e));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A matcher restored from the replica's state at any command boundary goes on exactly
    /// as the original does.
    #[test]
    fn a_matcher_restored_from_state_continues_identically(raw in raw_stream(300), cut in 0usize..300) {
        let cmds = decode(&raw);
        let cut = cut.min(cmds.len());
        let mut a = Matcher::default();
        let mut replica = BookReplica::new();
        let mut out = Vec::new();
        for (i, c) in cmds[..cut].iter().enumerate() {
            out.clear();
            a.process(Sequence(i as u64 + 1), c, &mut out);
            out.iter().for_each(|e| replica.apply(e));
        }
        let state = replica.state(cut as u64, 0);
        let bytes = state.to_bytes();
        let state = ringex_engine::state::EngineState::from_bytes(&bytes).expect("decodes");
        let mut b = Matcher::from_state(&state, MatcherCapacity::default());
        let mut r2 = BookReplica::from_state(&state);
        let (mut ea, mut eb) = (Vec::new(), Vec::new());
        for (i, c) in cmds[cut..].iter().enumerate() {
            let seq = Sequence((cut + i) as u64 + 1);
            a.process(seq, c, &mut ea);
            b.process(seq, c, &mut eb);
        }
        prop_assert_eq!(&ea, &eb);
        eb.iter().for_each(|e| r2.apply(e));
        for inst in INSTRUMENTS {
            prop_assert_eq!(a.resting_orders(inst), b.resting_orders(inst));
            prop_assert_eq!(r2.resting_orders(inst), b.resting_orders(inst));
        }
    }
}
