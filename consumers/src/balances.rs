//! Balances readable from any thread: [`BalancesPublisher`] rebuilds every (account, asset)
//! balance from the event stream (the same [`BookReplica`] that snapshots and recovery use)
//! and publishes the accounts that changed at the end of each batch into a
//! [`BalancesView`].
//!
//! The sequenced path never waits for a reader: the matcher owns the authoritative balances
//! and only writes events; this consumer publishes with a `try_lock` (a contended publish is
//! retried at the next batch end), and a reader holds the lock only to copy one account. A
//! view is as of the last published batch ([`BalancesView::as_of`]).

use ringex_engine::{
    AccountId, AssetId, Balance, BookReplica, Consumer, Event, EventKind, OrderId, Sequence,
};
use rust_decimal::Decimal;
use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Published {
    accounts: FxHashMap<AccountId, Vec<(AssetId, Balance)>>,
    scales: FxHashMap<AssetId, u8>,
}

/// A handle for gateways and operators: one account's balances as of the last published
/// batch. Cheap to clone; every clone sees the same data.
#[derive(Clone, Default)]
pub struct BalancesView {
    inner: Arc<Mutex<Published>>,
    as_of: Arc<AtomicU64>,
}

impl BalancesView {
    /// The account's non-zero balances, assets ascending.
    pub fn account(&self, a: AccountId) -> Vec<(AssetId, Balance)> {
        self.inner
            .lock()
            .map(|p| p.accounts.get(&a).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// One balance (zero when the account has none).
    pub fn balance(&self, a: AccountId, asset: AssetId) -> Balance {
        self.account(a)
            .into_iter()
            .find(|(x, _)| *x == asset)
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// One balance as decimals (total, held), using the asset's scale.
    pub fn balance_decimal(&self, a: AccountId, asset: AssetId) -> Option<(Decimal, Decimal)> {
        let scale = self.inner.lock().ok()?.scales.get(&asset).copied()? as u32;
        let b = self.balance(a, asset);
        let d = |v: i128| {
            Decimal::try_from_i128_with_scale(v, scale)
                .ok()
                .map(|x| x.normalize())
        };
        Some((d(b.total)?, d(b.held)?))
    }

    /// The output sequence of the last event included.
    pub fn as_of(&self) -> Sequence {
        Sequence(self.as_of.load(Ordering::Acquire))
    }
}

/// The consumer that keeps a [`BalancesView`] up to date.
pub struct BalancesPublisher {
    replica: BookReplica,
    view: BalancesView,
    dirty: FxHashSet<AccountId>,
    /// The incoming order of the current command and its account (its fills name it).
    taker: Option<(OrderId, AccountId)>,
    scales: Vec<(AssetId, u8)>,
    last_seq: u64,
}

impl BalancesPublisher {
    /// A publisher starting from `replica` (empty, or recovered); returns it and its view.
    pub fn new(replica: BookReplica) -> (Self, BalancesView) {
        let view = BalancesView::default();
        let mut p = BalancesPublisher {
            replica,
            view: view.clone(),
            dirty: FxHashSet::default(),
            taker: None,
            scales: Vec::new(),
            last_seq: 0,
        };
        p.scales = p.replica.ledger().assets().collect();
        p.dirty
            .extend(p.replica.ledger().balances().iter().map(|(a, _, _)| *a));
        // A replica restored from a state is readable before the first event arrives.
        p.publish(true);
        (p, view)
    }

    fn account_of(&self, id: OrderId) -> Option<AccountId> {
        match self.taker {
            Some((t, a)) if t == id => Some(a),
            _ => self.replica.order(id).map(|o| o.account),
        }
    }

    fn publish(&mut self, force: bool) {
        let inner = Arc::clone(&self.view.inner);
        let guard = if force {
            inner.lock().ok()
        } else {
            inner.try_lock().ok()
        };
        let Some(mut p) = guard else {
            return; // a reader holds it: publish at the next batch end
        };
        for (asset, scale) in self.scales.drain(..) {
            p.scales.insert(asset, scale);
        }
        for a in self.dirty.drain() {
            let bs = self.replica.ledger().account(a);
            if bs.is_empty() {
                p.accounts.remove(&a);
            } else {
                p.accounts.insert(a, bs);
            }
        }
        drop(p);
        self.view.as_of.store(self.last_seq, Ordering::Release);
    }
}

impl Consumer for BalancesPublisher {
    fn name(&self) -> &str {
        "balances"
    }

    fn on_event(&mut self, e: &Event, seq: Sequence, end_of_batch: bool) {
        match e.kind {
            EventKind::Accepted {
                order_id, account, ..
            } => {
                self.taker = Some((order_id, account));
                self.dirty.insert(account);
            }
            EventKind::Modified {
                order_id, account, ..
            }
            | EventKind::Triggered {
                order_id, account, ..
            } => {
                self.taker = Some((order_id, account));
                self.dirty.insert(account);
            }
            EventKind::Fill {
                taker,
                maker_account,
                ..
            } => {
                if let Some(a) = self.account_of(taker) {
                    self.dirty.insert(a);
                }
                self.dirty.insert(maker_account);
            }
            EventKind::Cancelled { account, .. }
            | EventKind::Expired { account, .. }
            | EventKind::Deposited { account, .. }
            | EventKind::Withdrawn { account, .. } => {
                self.dirty.insert(account);
            }
            EventKind::AssetAdded { asset, scale } => self.scales.push((asset, scale)),
            _ => {}
        }
        self.replica.apply(e);
        if e.is_last_of_command() {
            self.taker = None;
        }
        self.last_seq = seq.0;
        if end_of_batch {
            self.publish(false);
        }
    }

    fn on_shutdown(&mut self) {
        self.publish(true);
    }
}
