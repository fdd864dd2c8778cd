//! [`Anchor`]: where a node takes up its command stream again after a restart.
//!
//! A command message holds one or more commands, so the engine's input sequence (commands
//! applied) is not the stream's sequence (messages). Every node derives the first from the
//! second the same way — the commands of message `s` follow, in order, those of the
//! messages before it — and keeps, in `<journal>/stream.anchor`, one point of that mapping:
//! a message's stream sequence and the number of commands before it. The anchor written is
//! always one whose commands before it are durable in the local journal, so after a crash
//! (power loss included) it is at or before the journal's end: the node follows the stream
//! from the anchor, counting commands, skips those the journal holds (the tail of a message
//! that was half applied included) and submits the rest. It is rewritten about once a
//! second while commands flow, so a restart reads at most about a second of messages twice.

use std::path::{Path, PathBuf};

/// A message's stream sequence and the commands before it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Anchor {
    /// The message's stream sequence.
    pub seq: u64,
    /// Commands in the messages before it (the engine's input sequence of the last one).
    pub before: u64,
}

/// The anchor file of a journal directory.
pub fn anchor_path(journal: &Path) -> PathBuf {
    journal.join("stream.anchor")
}

impl Anchor {
    /// The stream's start: message 1, nothing before it.
    pub const START: Anchor = Anchor { seq: 1, before: 0 };

    /// The journal's anchor if it has one at or before `applied` commands, else the
    /// stream's start (a node without one reads the stream from its start once).
    pub fn read(journal: &Path, applied: u64) -> Anchor {
        let text = std::fs::read_to_string(anchor_path(journal)).unwrap_or_default();
        let mut f = text.split_whitespace().map(|x| x.parse::<u64>());
        match (f.next(), f.next()) {
            (Some(Ok(seq)), Some(Ok(before))) if seq >= 1 && before <= applied => {
                Anchor { seq, before }
            }
            _ => Anchor::START,
        }
    }

    /// Replaces the journal's anchor (temp file, sync, rename).
    pub fn write(&self, journal: &Path) -> std::io::Result<()> {
        let path = anchor_path(journal);
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            writeln!(f, "{} {}", self.seq, self.before)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anchor_past_the_journal_is_not_used() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(Anchor::read(d.path(), 10), Anchor::START);
        let a = Anchor {
            seq: 40,
            before: 900,
        };
        a.write(d.path()).unwrap();
        assert_eq!(Anchor::read(d.path(), 900), a);
        assert_eq!(Anchor::read(d.path(), 2000), a);
        // The journal lost commands the anchor counts (it must never be written so): the
        // stream is read from its start.
        assert_eq!(Anchor::read(d.path(), 899), Anchor::START);
        std::fs::write(anchor_path(d.path()), "garbage").unwrap();
        assert_eq!(Anchor::read(d.path(), 900), Anchor::START);
    }
}
