//! Helpers shared by the history store's tests.

use ringex_engine::*;

/// Runs commands through a matcher: every event with its sequence and its command's time.
pub fn events_of(cmds: &[Command]) -> (Matcher, Vec<(u64, Event, u64)>) {
    let mut m = Matcher::default();
    let mut out = Vec::new();
    let mut all = Vec::new();
    for (i, c) in cmds.iter().enumerate() {
        out.clear();
        m.process(Sequence(i as u64 + 1), c, &mut out);
        for e in &out {
            all.push((all.len() as u64 + 1, *e, m.clock().0));
        }
    }
    (m, all)
}
