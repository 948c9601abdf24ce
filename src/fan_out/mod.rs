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
//! All branches end when the source ends (after emitting what they hold). With a
//! [`TaskContext`] attached ([`Branches::context`]), cancelling it ends every
//! branch at its next poll — parked branches are woken for it — and drops the
//! items still buffered: cancel is abort, not drain.
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

mod branch;
mod broadcast;
mod partition;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::task::{Context, Wake, Waker};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::internal::waker_set::WakerSet;

use crate::context::TaskContext;

pub use branch::{Branch, fan_out};
pub use broadcast::{BroadcastBranch, broadcast};
pub use partition::{DEFAULT_LANE_CAPACITY, Lane, partition, partition_with};

/// How many branches a fan-out makes, and the [`TaskContext`] that can cancel
/// them. Every fan-out operator takes `impl Into<Branches>`, so a plain `usize`
/// works when no context is needed.
///
/// ```
/// use tokio_conc::fan_out::Branches;
/// use tokio_conc::prelude::*;
///
/// let ctx = TaskContext::background();
/// let branches = Branches::new(3).context(&ctx);
/// assert_eq!(branches.count(), 3);
/// assert_eq!(Branches::from(5).count(), 5);
/// ```
#[derive(Clone, Debug)]
pub struct Branches {
    count: usize,
    context: Option<TaskContext>,
}

impl Branches {
    /// `n` branches.
    ///
    /// # Panics
    ///
    /// If `n` is 0: nothing could ever read the source.
    ///
    /// ```should_panic
    /// tokio_conc::fan_out::Branches::new(0); // panics: `n` must be at least 1
    /// ```
    pub fn new(n: usize) -> Self {
        assert!(
            n > 0,
            "`n` (the number of branches) must be at least 1, got 0"
        );
        Branches {
            count: n,
            context: None,
        }
    }

    /// Binds the branches to `ctx`: once it is cancelled (or its deadline
    /// passes) every branch ends at its next poll, parked branches are woken,
    /// buffered items are dropped and so is the source.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::fan_out::Branches;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ctx = TaskContext::background();
    /// let mut branches = futures::stream::pending::<u32>().fan_out(Branches::new(2).context(&ctx));
    /// ctx.cancel();
    /// assert_eq!(branches[0].next().await, None);
    /// assert_eq!(branches[1].next().await, None);
    /// # }
    /// ```
    pub fn context(mut self, ctx: &TaskContext) -> Self {
        self.context = Some(ctx.clone());
        self
    }

    /// The number of branches.
    ///
    /// ```
    /// assert_eq!(tokio_conc::fan_out::Branches::new(2).count(), 2);
    /// ```
    pub fn count(&self) -> usize {
        self.count
    }

    /// The context the branches are bound to, if any.
    ///
    /// ```
    /// assert!(tokio_conc::fan_out::Branches::new(2).task_context().is_none());
    /// ```
    pub fn task_context(&self) -> Option<&TaskContext> {
        self.context.as_ref()
    }

    /// A watch on the context, if any, that wakes `parked` on cancellation.
    fn cancel_watch(&self, parked: &Waker) -> Option<CancelWatch> {
        self.context
            .as_ref()
            .map(|ctx| CancelWatch::new(ctx.token(), parked.clone()))
    }
}

impl From<usize> for Branches {
    /// `Branches::new(n)`.
    fn from(n: usize) -> Self {
        Branches::new(n)
    }
}

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
}

impl Parked {
    fn new(branches: usize) -> Arc<Self> {
        Arc::new(Parked {
            waiting: WakerSet::new(branches),
            blocked: WakerSet::new(branches),
        })
    }

    fn unregister(&self, slot: usize) {
        self.waiting.unregister(slot);
        self.blocked.unregister(slot);
    }
}

impl Wake for Parked {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.waiting.wake_all();
        self.blocked.wake_all();
    }
}

/// Watches a cancellation token without a lock per check: the token's future is
/// polled once, with a waker that raises a flag and wakes the parked branches.
struct CancelWatch {
    token: CancellationToken,
    wait: Pin<Box<WaitForCancellationFutureOwned>>,
    signal: Arc<CancelSignal>,
}

struct CancelSignal {
    woken: AtomicBool,
    parked: Waker,
}

impl Wake for CancelSignal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.parked.wake_by_ref();
    }
}

impl CancelWatch {
    fn new(token: CancellationToken, parked: Waker) -> Self {
        let mut watch = CancelWatch {
            wait: Box::pin(token.clone().cancelled_owned()),
            token,
            signal: Arc::new(CancelSignal {
                woken: AtomicBool::new(false),
                parked,
            }),
        };
        watch.arm();
        watch
    }

    fn arm(&mut self) {
        let waker = Waker::from(Arc::clone(&self.signal));
        if self
            .wait
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_ready()
        {
            self.signal.woken.store(true, Ordering::SeqCst);
        }
    }

    /// Whether a cancellation may have happened: one atomic load, no lock. Only
    /// a `true` needs [`is_cancelled`](Self::is_cancelled) to confirm it.
    fn hint(&self) -> CancelHint {
        CancelHint(Arc::clone(&self.signal))
    }

    /// One atomic load while nothing happened; the token's lock only after a
    /// wake-up, which is re-armed if it was spurious.
    fn is_cancelled(&mut self) -> bool {
        if !self.signal.woken.load(Ordering::SeqCst) {
            return false;
        }
        if self.token.is_cancelled() {
            return true;
        }
        self.signal.woken.store(false, Ordering::SeqCst);
        self.arm();
        self.signal.woken.load(Ordering::SeqCst) && self.token.is_cancelled()
    }
}

/// A lock-free "maybe cancelled" flag, for paths that do not take the lock.
struct CancelHint(Arc<CancelSignal>);

impl CancelHint {
    fn raised(&self) -> bool {
        self.0.woken.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for CancelWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelWatch")
            .field("cancelled", &self.token.is_cancelled())
            .finish()
    }
}

/// Locks the state shared by the branches. Poisoned means the source panicked
/// while another branch polled it: that panic was already resumed there, so
/// this branch panics too instead of polling a source in an unknown state.
fn lock<'a, S>(state: &'a Mutex<S>, operator: &str) -> MutexGuard<'a, S> {
    state
        .lock()
        .unwrap_or_else(|_| panic!("{operator}: the source panicked in another branch"))
}

/// `try_lock`, with the same meaning of poisoning as [`lock`].
fn try_lock<'a, S>(state: &'a Mutex<S>, operator: &str) -> Option<MutexGuard<'a, S>> {
    match state.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::WouldBlock) => None,
        Err(TryLockError::Poisoned(_)) => {
            panic!("{operator}: the source panicked in another branch")
        }
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
