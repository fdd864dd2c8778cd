//! The order ids the server hands out.
//!
//! - **Two ranges.** Orders of sessions with cancel-on-disconnect get ids from
//!   [`COD_BASE`] up, the others from 1 up. The id is journaled with the order, so after a
//!   restart the server knows, from the recovered book alone, which resting orders belong to
//!   cancel-on-disconnect sessions — all of them gone — and cancels them (sequenced, so
//!   journaled), whatever stopped the server before: a crash, a halt, a power cut.
//! - **Never handed out twice.** An id goes out with every `new`, a rejected one too, and a
//!   rejected order leaves no trace in the engine's state. So each range's high-water mark is
//!   kept in `<journal>/order-ids`, reserved a block ahead and made durable before an id past
//!   it goes out: after a restart the server starts above every id it may have handed out.

use ringex_engine::state::EngineState;
use ringex_engine::{Command, CommandKind};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The first id of the cancel-on-disconnect range.
pub const COD_BASE: u64 = 1 << 62;

/// How far ahead the high-water marks are reserved.
const BLOCK: u64 = 1 << 20;

/// The file of the high-water marks.
const FILE: &str = "order-ids";

/// The next id of each range and how far each is reserved on disk.
#[derive(Debug)]
pub struct OrderIds {
    next: [AtomicU64; 2],
    limit: [AtomicU64; 2],
    path: PathBuf,
    lock: Mutex<()>,
}

impl OrderIds {
    /// Starts above every id the engine has seen (`state`), the setup script uses, and the
    /// journal directory's reservation records; reserves a block ahead.
    pub fn open(dir: &Path, state: &EngineState, setup: &[Command]) -> io::Result<OrderIds> {
        let mut next = [1u64, COD_BASE + 1];
        for &(lo, hi) in &state.used_ids {
            if lo < COD_BASE {
                next[0] = next[0].max(hi.min(COD_BASE - 1).saturating_add(1));
            }
            if hi >= COD_BASE {
                next[1] = next[1].max(hi.saturating_add(1));
            }
        }
        for c in setup {
            if let CommandKind::NewOrder(o) = c.kind {
                let r = (o.order_id.0 >= COD_BASE) as usize;
                next[r] = next[r].max(o.order_id.0.saturating_add(1));
            }
        }
        let path = dir.join(FILE);
        if let Ok(text) = std::fs::read_to_string(&path) {
            let marks: Vec<u64> = text
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            if let [plain, cod] = marks[..] {
                next = [next[0].max(plain), next[1].max(cod)];
            } else {
                return Err(io::Error::other(format!(
                    "{}: expected two numbers, found {text:?}",
                    path.display()
                )));
            }
        }
        let ids = OrderIds {
            next: [AtomicU64::new(next[0]), AtomicU64::new(next[1])],
            limit: [AtomicU64::new(0), AtomicU64::new(0)],
            path,
            lock: Mutex::new(()),
        };
        ids.reserve(next)?;
        Ok(ids)
    }

    /// The next id of the range (`cod`: cancel-on-disconnect's).
    pub fn next(&self, cod: bool) -> io::Result<u64> {
        let r = cod as usize;
        let id = self.next[r].fetch_add(1, Ordering::Relaxed);
        if id < self.limit[r].load(Ordering::Acquire) {
            return Ok(id);
        }
        // Past the reservation (once a block): extend it on disk first.
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if id >= self.limit[r].load(Ordering::Acquire) {
            let mut upto = [
                self.limit[0].load(Ordering::Acquire),
                self.limit[1].load(Ordering::Acquire),
            ];
            upto[r] = id + 1;
            self.reserve(upto)?;
        }
        Ok(id)
    }

    /// Records `from[r] + BLOCK` as each range's high-water mark, durably, then takes it.
    fn reserve(&self, from: [u64; 2]) -> io::Result<()> {
        let marks = [
            from[0].saturating_add(BLOCK).min(COD_BASE),
            from[1].saturating_add(BLOCK),
        ];
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{} {}", marks[0], marks[1])?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        for (l, m) in self.limit.iter().zip(marks) {
            l.store(m, Ordering::Release);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids continue above everything used and everything reserved; the reservation moves a
    /// block ahead; a restart starts above every id handed out before it.
    #[test]
    fn ids_are_never_handed_out_twice() {
        let dir = tempfile::tempdir().unwrap();
        let state = EngineState {
            used_ids: vec![(1, 10), (COD_BASE + 1, COD_BASE + 3)],
            ..Default::default()
        };
        let ids = OrderIds::open(dir.path(), &state, &[]).unwrap();
        assert_eq!(ids.next(false).unwrap(), 11);
        assert_eq!(ids.next(true).unwrap(), COD_BASE + 4);
        let handed: Vec<u64> = (0..10).map(|_| ids.next(false).unwrap()).collect();
        assert_eq!(handed.last(), Some(&21));
        drop(ids);
        // Rejected orders leave no trace in the state: the reservation alone keeps them.
        let again = OrderIds::open(dir.path(), &EngineState::default(), &[]).unwrap();
        assert!(again.next(false).unwrap() > 21);
        assert!(again.next(true).unwrap() > COD_BASE + 4);
    }

    /// Crossing the reserved block reserves the next one before the id goes out.
    #[test]
    fn crossing_a_block_extends_the_reservation() {
        let dir = tempfile::tempdir().unwrap();
        let ids = OrderIds::open(dir.path(), &EngineState::default(), &[]).unwrap();
        ids.next[0].store(BLOCK + 5, Ordering::Relaxed);
        assert_eq!(ids.next(false).unwrap(), BLOCK + 5);
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        let plain: u64 = text.split_whitespace().next().unwrap().parse().unwrap();
        assert_eq!(plain, 2 * BLOCK + 6);
    }
}
