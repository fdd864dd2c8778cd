//! The execution-report router: a consumer on the output ring, gated after the journal, that
//! hands each event to the sessions of the accounts it concerns. A report therefore never
//! leaves the process before its event is durable.
//!
//! Sessions sign up and leave through a channel that the router drains at the start of every
//! batch: a session registers before it submits its first command, so the events of that
//! command (published after the registration) always find it. Each session has a bounded
//! queue; a session whose queue is full is dropped (its `overflowed` flag says why) instead of
//! stalling the ring.

use crossbeam_channel::{Receiver, Sender};
use ringex_engine::{AccountId, Consumer, Event, EventKind, Sequence};
use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// One event for one session, with its output sequence.
#[derive(Clone, Copy, Debug)]
pub struct Report {
    /// The output sequence.
    pub seq: u64,
    /// The event.
    pub event: Event,
}

/// The router's side of a session.
pub struct SessionLink {
    /// The session's id (unique in the process).
    pub id: u64,
    /// The session's bounded report queue.
    pub tx: mpsc::Sender<Report>,
    /// Set by the router when the queue was full and the session was dropped.
    pub overflowed: Arc<AtomicBool>,
}

/// Sign-ups and departures.
pub enum Registration {
    /// A session bound to an account.
    Join(AccountId, SessionLink),
    /// The session with this id left.
    Leave(AccountId, u64),
    /// A watcher of every event, whatever account (an admin call, while it runs).
    Watch(SessionLink),
    /// The watcher with this id left.
    Unwatch(u64),
}

/// What the router has done, readable from any thread.
#[derive(Default)]
pub struct RouterProgress {
    /// The input sequence of the last command whose events were all routed: reports of
    /// every command at or before it are in the sessions' queues.
    pub routed_cmd_seq: AtomicU64,
    /// Sessions dropped because their queue was full.
    pub dropped_slow: AtomicU64,
}

/// The consumer.
pub struct ReportRouter {
    joins: Receiver<Registration>,
    by_account: FxHashMap<AccountId, Vec<SessionLink>>,
    /// Watchers of every event.
    watchers: Vec<SessionLink>,
    /// The account of the current command's incoming order (its fills name only the maker's).
    taker_account: AccountId,
    /// The maker of the last fill (its `FillFees` goes where the fill went).
    fill_maker: AccountId,
    in_batch: bool,
    progress: Arc<RouterProgress>,
}

impl ReportRouter {
    /// A router and the sender sessions register through.
    pub fn new() -> (Self, Sender<Registration>, Arc<RouterProgress>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let progress = Arc::new(RouterProgress::default());
        (
            ReportRouter {
                joins: rx,
                by_account: FxHashMap::default(),
                watchers: Vec::new(),
                taker_account: AccountId(0),
                fill_maker: AccountId(0),
                in_batch: false,
                progress: Arc::clone(&progress),
            },
            tx,
            progress,
        )
    }

    fn drain_registrations(&mut self) {
        while let Ok(r) = self.joins.try_recv() {
            match r {
                Registration::Join(a, link) => self.by_account.entry(a).or_default().push(link),
                Registration::Watch(link) => self.watchers.push(link),
                Registration::Unwatch(id) => self.watchers.retain(|l| l.id != id),
                Registration::Leave(a, id) => {
                    if let Some(v) = self.by_account.get_mut(&a) {
                        v.retain(|l| l.id != id);
                        if v.is_empty() {
                            self.by_account.remove(&a);
                        }
                    }
                }
            }
        }
    }

    fn send(&mut self, account: AccountId, r: Report) {
        let Some(links) = self.by_account.get_mut(&account) else {
            return;
        };
        let progress = &self.progress;
        links.retain(|l| match l.tx.try_send(r) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                l.overflowed.store(true, Ordering::Release);
                progress.dropped_slow.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        if links.is_empty() {
            self.by_account.remove(&account);
        }
    }
}

/// The accounts an event concerns (taker, maker): the owner of the order it names; for a
/// fill, and the fees that follow it on a funded instrument, both sides (`maker`: the last
/// fill's).
pub(crate) fn accounts(
    e: &Event,
    taker: AccountId,
    maker: AccountId,
) -> (Option<AccountId>, Option<AccountId>) {
    match e.kind {
        EventKind::Accepted { account, .. } | EventKind::Triggered { account, .. } => {
            (Some(account), None)
        }
        EventKind::Rejected { account, .. }
        | EventKind::Cancelled { account, .. }
        | EventKind::Modified { account, .. }
        | EventKind::Expired { account, .. } => (Some(account), None),
        EventKind::Fill { maker_account, .. } => (
            Some(taker),
            (maker_account != taker).then_some(maker_account),
        ),
        EventKind::FillFees { .. } => (Some(taker), (maker != taker).then_some(maker)),
        _ => (None, None),
    }
}

impl Consumer for ReportRouter {
    fn name(&self) -> &str {
        "report-router"
    }

    fn on_event(&mut self, e: &Event, seq: Sequence, end_of_batch: bool) {
        if !self.in_batch {
            self.in_batch = true;
            self.drain_registrations();
        }
        crate::serve::metrics::event(e);
        match e.kind {
            EventKind::Accepted { account, .. } => self.taker_account = account,
            EventKind::Modified { account, .. } => self.taker_account = account,
            EventKind::Triggered { account, .. } => self.taker_account = account,
            EventKind::Fill { maker_account, .. } => self.fill_maker = maker_account,
            _ => {}
        }
        if !self.by_account.is_empty() {
            let (a, b) = accounts(e, self.taker_account, self.fill_maker);
            let r = Report {
                seq: seq.0,
                event: *e,
            };
            if let Some(a) = a {
                self.send(a, r);
            }
            if let Some(b) = b {
                self.send(b, r);
            }
        }
        if !self.watchers.is_empty() {
            let r = Report {
                seq: seq.0,
                event: *e,
            };
            // A watcher that does not keep up (or left) is dropped.
            self.watchers.retain(|l| l.tx.try_send(r).is_ok());
        }
        if e.is_last_of_command() {
            self.progress
                .routed_cmd_seq
                .store(e.cmd_seq().0, Ordering::Release);
        }
        if end_of_batch {
            self.in_batch = false;
        }
    }

    fn timeout(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_millis(50))
    }

    fn on_timeout(&mut self) {
        // Departures of sessions on a quiet pipeline release their queues.
        self.drain_registrations();
    }
}
