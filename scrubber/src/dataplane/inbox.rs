//! The worker's end of a policy reload: the control thread prepares one
//! [`Prepared`] per worker ([`crate::control::reload`]) and sends it through the
//! [`PolicyFeed`]; the worker takes it from its [`PolicyInbox`] between two batches and installs
//! it (one swap); the old policy goes back to be dropped off the packet path.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};

use crate::engine::policy::{Prepared, Retired};
use crate::engine::Engine;

/// A worker has stopped: it cannot be handed a policy.
#[derive(Debug, thiserror::Error)]
#[error("a worker has stopped; cannot hand it the new policy")]
pub struct WorkerGone;

/// The worker's end of a policy hand-off: check it once per batch.
#[derive(Debug)]
pub struct PolicyInbox {
    rx: Receiver<Prepared>,
    retired: SyncSender<Retired>,
}

impl PolicyInbox {
    /// If a new policy is waiting, install it in `engine` (one swap) and send the old one
    /// back for the control thread to drop. Returns whether a policy was installed. Never
    /// blocks; does not allocate.
    #[inline]
    pub fn poll(&self, engine: &mut Engine) -> bool {
        match self.rx.try_recv() {
            Ok(p) => {
                let old = engine.install(p);
                // If the control thread is not draining, drop here (rare; still correct).
                if let Err(TrySendError::Full(old) | TrySendError::Disconnected(old)) = self.retired.try_send(old) {
                    drop(old);
                }
                true
            }
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => false,
        }
    }
}

/// The control thread's end: one sender per worker.
#[derive(Debug)]
pub struct PolicyFeed {
    txs: Vec<SyncSender<Prepared>>,
    retired: Receiver<Retired>,
}

/// A feed for `workers` workers, and their inboxes (in worker order).
pub fn policy_channels(workers: usize) -> (PolicyFeed, Vec<PolicyInbox>) {
    let (rtx, rrx) = sync_channel(workers.max(1) * 2);
    let mut txs = Vec::with_capacity(workers);
    let mut inboxes = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (tx, rx) = sync_channel(1);
        txs.push(tx);
        inboxes.push(PolicyInbox { rx, retired: rtx.clone() });
    }
    (PolicyFeed { txs, retired: rrx }, inboxes)
}

impl PolicyFeed {
    /// Send one prepared policy to each worker (in order). If a worker has not yet taken the
    /// previous one, this waits until it has (workers poll every batch, so the wait is short).
    pub fn send(&self, prepared: Vec<Prepared>) -> Result<(), WorkerGone> {
        for (tx, p) in self.txs.iter().zip(prepared) {
            tx.send(p).map_err(|_| WorkerGone)?;
        }
        self.collect();
        Ok(())
    }

    /// Drop the policies workers have retired.
    pub fn collect(&self) {
        while self.retired.try_recv().is_ok() {}
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.txs.len()
    }
}
