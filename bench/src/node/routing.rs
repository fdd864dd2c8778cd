//! Which shards a command goes to ([`targets`]).

use super::*;

/// The shard of an instrument.
pub fn shard_of(i: InstrumentId, shards: u32) -> u32 {
    i.0 % shards.max(1)
}

/// Where a command goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Targets {
    /// One shard.
    One(u32),
    /// Every shard.
    All,
}

/// The shards a command goes to (module docs).
pub fn targets(cmd: &Command, shards: u32) -> Targets {
    let one = |i: InstrumentId| Targets::One(shard_of(i, shards));
    match cmd.kind {
        CommandKind::NewOrder(o) => one(o.instrument),
        CommandKind::Cancel { instrument, .. }
        | CommandKind::Modify { instrument, .. }
        | CommandKind::Halt { instrument }
        | CommandKind::Resume { instrument }
        | CommandKind::SnapshotRequest { instrument }
        | CommandKind::MassCancel {
            instrument: Some(instrument),
            ..
        } => one(instrument),
        CommandKind::AddInstrument(d) => one(d.id),
        CommandKind::OrderTerms(t) => one(t.instrument),
        CommandKind::SetMatchPolicy { instrument, .. } => one(instrument),
        CommandKind::Invalid {
            instrument: Some(i),
            ..
        } => one(i),
        CommandKind::Invalid {
            instrument: None, ..
        } => Targets::One(0),
        CommandKind::MassCancel {
            instrument: None, ..
        }
        | CommandKind::Block { .. }
        | CommandKind::Unblock { .. }
        | CommandKind::Tick
        | CommandKind::AddAsset { .. }
        | CommandKind::Deposit { .. }
        | CommandKind::Withdraw { .. } => Targets::All,
    }
}
