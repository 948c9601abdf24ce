//! What the stream of deliveries, the ack handles and the ack task share: the
//! settings, the command connection, the window of held entries, and the
//! channel to the ack task.
//!
//! Invariants:
//! - `held` counts every entry this source may have in the group's pending
//!   list on its account: reservations for a read or reclaim in flight, entries
//!   buffered, entries handed out, and acknowledgements not yet confirmed by
//!   the server. A slot is taken *before* the command that may deliver the
//!   entry is sent and given back only after the server confirmed the `XACK`
//!   (or the dead-letter script), or when a delivery is released without one
//!   (a failure, a drop), which leaves the entry pending for a reclaim.
//!   So `held <= prefetch` bounds what the server shows as pending for this
//!   consumer, except entries released without an acknowledgement.
//! - `ids` holds the ids of the entries counted in `held` (not the bare
//!   reservations), so that a reclaim that comes back with one of our own
//!   entries never delivers it twice.
//! - The ack task holds the receiving end of the channel and `Shared`, never a
//!   sender: it ends when the stream and every ack handle are gone.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use futures::task::AtomicWaker;
use tokio::sync::mpsc::UnboundedSender;

use super::entry::EntryId;
use super::error::Error;

/// The settings of a running source.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) server: String,
    pub(crate) key: String,
    pub(crate) group: String,
    pub(crate) consumer: String,
    pub(crate) dead_letter: String,
    pub(crate) prefetch: usize,
    pub(crate) batch: usize,
    pub(crate) block: Duration,
    pub(crate) ack_interval: Duration,
    pub(crate) claim_idle: Duration,
    pub(crate) max_deliveries: u64,
}

/// A message to the ack task.
#[derive(Debug)]
pub(crate) enum AckMsg {
    /// Acknowledge (batched).
    Ack(EntryId),
    /// Give the slot back; the entry stays pending (a failure, a drop, or an
    /// entry acknowledged by [`Ack::commit`](super::Ack::commit)).
    Release(EntryId),
    /// Move to the dead-letter stream with this error, then acknowledge.
    DeadLetter {
        id: EntryId,
        deliveries: u64,
        error: String,
    },
    /// Entries read but never handed out: make them reclaimable at once,
    /// with the delivery count they had before this source read them.
    GiveBack(Vec<(EntryId, u64)>),
    /// The reader waits for room: flush now.
    FlushNow,
}

pub(crate) struct Shared {
    pub(crate) cfg: Settings,
    /// The multiplexed connection for every command but the blocking read.
    pub(crate) conn: MultiplexedConnection,
    held: AtomicUsize,
    ids: Mutex<HashSet<EntryId>>,
    room: AtomicWaker,
    failure: Mutex<Option<Error>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub(crate) fn new(cfg: Settings, conn: MultiplexedConnection) -> Self {
        Shared {
            cfg,
            conn,
            held: AtomicUsize::new(0),
            ids: Mutex::new(HashSet::new()),
            room: AtomicWaker::new(),
            failure: Mutex::new(None),
        }
    }

    /// Free slots in the window.
    pub(crate) fn room(&self) -> usize {
        self.cfg
            .prefetch
            .saturating_sub(self.held.load(Ordering::Acquire))
    }

    /// Takes `n` slots ahead of a command that may deliver up to `n` entries.
    pub(crate) fn reserve(&self, n: usize) {
        self.held.fetch_add(n, Ordering::AcqRel);
    }

    /// Gives back `n` reserved slots that no entry came to fill.
    pub(crate) fn unreserve(&self, n: usize) {
        if n > 0 {
            self.held.fetch_sub(n, Ordering::AcqRel);
            self.room.wake();
        }
    }

    /// Records that the entries now fill reserved slots. Returns, for each,
    /// whether it is new to this source (`false`: we hold it already).
    pub(crate) fn adopt(&self, ids: impl Iterator<Item = EntryId>) -> Vec<bool> {
        let mut held = lock(&self.ids);
        ids.map(|id| held.insert(id)).collect()
    }

    /// The entries left the window: acknowledged, dead-lettered or released.
    pub(crate) fn release(&self, ids: &[EntryId]) {
        if ids.is_empty() {
            return;
        }
        {
            let mut held = lock(&self.ids);
            for id in ids {
                held.remove(id);
            }
        }
        self.held.fetch_sub(ids.len(), Ordering::AcqRel);
        self.room.wake();
    }

    /// Registers the reader to be woken when slots free up.
    pub(crate) fn wait_for_room(&self, waker: &std::task::Waker) {
        self.room.register(waker);
    }

    /// Keeps the first failure of a background command for the stream to yield.
    pub(crate) fn fail(&self, err: Error) {
        tracing::warn!(key = %self.cfg.key, group = %self.cfg.group, error = %err, "redis source");
        let mut slot = lock(&self.failure);
        if slot.is_none() {
            *slot = Some(err);
        }
        drop(slot);
        self.room.wake();
    }

    pub(crate) fn take_failure(&self) -> Option<Error> {
        lock(&self.failure).take()
    }
}

/// A sender to the ack task and the state it serves; every ack handle and the
/// stream hold one (through an `Arc`), so the ack task ends after the last.
pub(crate) struct AckLink {
    pub(crate) tx: UnboundedSender<AckMsg>,
    pub(crate) shared: Arc<Shared>,
}

impl AckLink {
    /// Sends to the ack task; once it is gone there is nobody left to tell.
    pub(crate) fn send(&self, msg: AckMsg) {
        let _ = self.tx.send(msg);
    }
}
