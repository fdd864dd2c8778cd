//! `ringex lobster`: the replay check and its summary (ending `N passed, M failed`).

use crate::harness::topology::{pipeline_one_to_four, Placement};
use crate::lobster::{read, replay};
use ringex_engine::{Matcher, MatcherCapacity, Sequence};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

/// Runs the check; returns the summary and whether any message failed.
pub fn run(
    message: &Path,
    orderbook: Option<&Path>,
    throughput: bool,
) -> Result<(String, bool), String> {
    let (msgs, rows) =
        read(message, orderbook).map_err(|e| format!("{}: {e}", message.display()))?;
    let levels = rows.first().map_or(0, |r| r.len());
    let t = Instant::now();
    let r = replay(&msgs, &rows, true);
    let secs = t.elapsed().as_secs_f64();
    let rep = &r.report;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}: {} messages, {} levels",
        message.display(),
        msgs.len(),
        levels
    );
    let _ = writeln!(s, "window refreshes: {}", rep.window_refreshes);
    let _ = writeln!(s, "removals of unknown ids: {}", rep.unknown_removals);
    let _ = writeln!(
        s,
        "executions whose first fill was not the named order: {}",
        rep.other_first_fill
    );
    let _ = writeln!(
        s,
        "executions not filled completely at their price: {}",
        rep.short_executions
    );
    let _ = writeln!(
        s,
        "engine commands: {} (checked replay {:.2} s)",
        rep.commands, secs
    );
    for f in &rep.first_failures {
        let _ = writeln!(s, "failure: {f}");
    }
    if throughput {
        let cmds = &r.commands;
        let mut best = f64::MAX;
        for _ in 0..5 {
            let mut m = Matcher::with_capacity(MatcherCapacity {
                orders: 1 << 16,
                ids: cmds.len() + 1024,
                gtd: 16,
            });
            let mut out = Vec::with_capacity(256);
            let t = Instant::now();
            for (i, c) in cmds.iter().enumerate() {
                out.clear();
                m.process(Sequence(i as u64 + 1), c, &mut out);
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        let _ = writeln!(
            s,
            "replay throughput, matcher alone (checking off, best of 5): {:.2}M messages/s ({:.2}M commands/s)",
            (msgs.len() - 1) as f64 / best / 1e6,
            cmds.len() as f64 / best / 1e6
        );
        let p = pipeline_one_to_four(&cmds[..1], &cmds[1..], 1 << 16, &Placement::default())
            .map_err(|e| e.to_string())?;
        let _ = writeln!(
            s,
            "replay throughput, full pipeline with 4 consumers: {:.2}M messages/s ({:.2}M commands/s)",
            (msgs.len() - 1) as f64 / p.seconds / 1e6,
            p.per_second() / 1e6
        );
    }
    let _ = writeln!(s, "{} passed, {} failed", rep.passed, rep.failed);
    Ok((s, rep.failed > 0))
}
