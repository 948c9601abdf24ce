//! Fan-out: one stream split into many branches.
//!
//! | operator | each item goes to | Go |
//! |---|---|---|
//! | [`fan_out`] | exactly one branch: the first that asks | several goroutines reading one channel |
//! | [`broadcast`] | every branch (cloned) | one goroutine copying each value into N channels |
//! | [`partition`] | the lane its key hashes to | a dispatcher sending to `lanes[hash(key) % n]` |
//!
//! Every branch is a `Send + 'static` [`Stream`](futures::Stream): move each one
//! into its own task. Nothing is spawned: the source is polled by whichever branch
//! needs an item, under a lock held only for that poll. So there is no task to
//! leak, and the source is dropped as soon as the last branch is.
//!
//! All branches end when the source ends (after emitting what they hold). Bound
//! to a [`TaskContext`](crate::TaskContext) — given with [`Branches::context`],
//! else the one current where the operator is called (the crate's
//! [context rule](crate#contexts-one-rule)) — cancelling it ends every branch
//! at its next poll — parked branches are woken for it — and drops the items
//! still buffered: cancel is abort, not drain. The branches just end; ask
//! `ctx.err()` why.
//!
//! A panic in the source is resumed in the branch that polled it; the other
//! branches then panic too, at their next poll, rather than hang.
//!
//! ```
//! use futures::StreamExt;
//! use tokio_conc::prelude::*;
//!
//! # #[tokio::main]
//! # async fn main() {
//! // Three workers share the jobs: each job is done once.
//! let workers: Vec<_> = futures::stream::iter(1..=30_u32)
//!     .fan_out(3)
//!     .into_iter()
//!     .map(|jobs| tokio::spawn(jobs.map(|job| job * 10).collect::<Vec<_>>()))
//!     .collect();
//! let mut done = Vec::new();
//! for worker in workers {
//!     done.extend(worker.await.unwrap());
//! }
//! done.sort();
//! assert_eq!(done, (1..=30).map(|job| job * 10).collect::<Vec<_>>());
//!
//! // Two listeners each hear every event.
//! let mut listeners = futures::stream::iter(["start", "stop"]).broadcast(2, 8);
//! let (b, a) = (listeners.pop().unwrap(), listeners.pop().unwrap());
//! let (a, b) = tokio::join!(a.collect::<Vec<_>>(), b.collect::<Vec<_>>());
//! assert_eq!((a, b), (vec!["start", "stop"], vec!["start", "stop"]));
//! # }
//! ```

mod batched;
mod branch;
mod branches;
mod broadcast;
mod partition;

use std::panic::AssertUnwindSafe;
use std::sync::{OnceLock, TryLockError};
use std::task::{Wake, Waker};

use crate::internal::cancel_watch::{CancelHint, CancelWatch};
use crate::internal::sync::{Arc, Mutex, MutexGuard};
use crate::internal::waker_set::WakerSet;

pub use branch::{Branch, fan_out};
pub use branches::Branches;
pub use broadcast::{BroadcastBranch, broadcast};
pub use partition::{DEFAULT_LANE_CAPACITY, Lane, partition, partition_with};

/// The parked branches of one fan-out, in two sets so that each event wakes
/// only the branches it concerns.
struct Parked {
    /// Waiting for the source: woken by the source's waker (this set's and the
    /// other's: [`Parked`] is the waker the source is polled with), by new items
    /// and by the end.
    waiting: Arc<WakerSet>,
    /// Blocked by another branch — `fan_out`: polling the source; `broadcast`:
    /// the fullest — and woken when that branch lets go or takes an item.
    blocked: Arc<WakerSet>,
    /// The message of the source's panic, for the branches that did not
    /// poll it: they panic too, and say what happened.
    source_panic: OnceLock<String>,
}

impl Parked {
    // The waker the source is polled with is built from this `Arc`, so it is
    // `std`'s (the sets inside are the shim's).
    fn new(branches: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Parked {
            waiting: WakerSet::new(branches),
            blocked: WakerSet::new(branches),
            source_panic: OnceLock::new(),
        })
    }

    /// A branch's poll of the source returned an item: wakes the branches
    /// parked in either set. Those in `blocked` wait for the lock to be let
    /// go. Those in `waiting` got `Pending` from the source before, and the
    /// source owes a wake-up only to its last poll — which returned an item,
    /// so it owes none now: they must ask again, as the branch that took the
    /// item may never poll again (dropped, or its consumer busy elsewhere).
    ///
    /// `waiting` is filled under the state lock, which the caller held for
    /// its poll: the load sees every branch that parked before it.
    fn wake_after_item(&self) {
        if self.blocked.any_parked() {
            self.blocked.wake_all();
        }
        self.wake_waiting();
    }

    /// Wakes the branches parked in `waiting`, if any: a poll of the source,
    /// made under the state lock, returned an item (see
    /// [`wake_after_item`](Self::wake_after_item)).
    fn wake_waiting(&self) {
        if self.waiting.any_parked() {
            self.waiting.wake_all();
        }
    }

    fn unregister(&self, slot: usize) {
        self.waiting.unregister(slot);
        self.blocked.unregister(slot);
    }

    /// Runs `poll`, a poll of the source. If the source panics, keeps the
    /// panic's message for the other branches and resumes the panic here.
    fn poll_source<R>(&self, poll: impl FnOnce() -> R) -> R {
        std::panic::catch_unwind(AssertUnwindSafe(poll)).unwrap_or_else(|payload| {
            let message = payload
                .downcast_ref::<&str>()
                .map(|message| (*message).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            let _ = self.source_panic.set(message);
            std::panic::resume_unwind(payload)
        })
    }

    /// The panic of a branch that finds the source poisoned: the source
    /// panicked while another branch polled it.
    fn source_panicked(&self, operator: &str) -> ! {
        match self.source_panic.get() {
            Some(message) => {
                panic!("{operator}: the source panicked in another branch: {message}")
            }
            None => panic!("{operator}: the source panicked in another branch"),
        }
    }
}

impl Wake for Parked {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.waiting.wake_all();
        self.blocked.wake_all();
    }
}

/// Locks the state shared by the branches. Poisoned means the source panicked
/// while another branch polled it: that panic was already resumed there, so
/// this branch panics too (with the source's message) instead of polling a
/// source in an unknown state.
fn lock<'a, S>(state: &'a Mutex<S>, parked: &Parked, operator: &str) -> MutexGuard<'a, S> {
    state
        .lock()
        .unwrap_or_else(|_| parked.source_panicked(operator))
}

/// `try_lock`, with the same meaning of poisoning as [`lock`].
fn try_lock<'a, S>(
    state: &'a Mutex<S>,
    parked: &Parked,
    operator: &str,
) -> Option<MutexGuard<'a, S>> {
    match state.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::WouldBlock) => None,
        Err(TryLockError::Poisoned(_)) => parked.source_panicked(operator),
    }
}

/// Wakes the parked branches (with a waker that wakes them all) if the source
/// panics while polled, so that they see the poisoned lock instead of waiting
/// forever.
struct WakeOnUnwind<'a>(&'a Waker);

impl Drop for WakeOnUnwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.wake_by_ref();
        }
    }
}
