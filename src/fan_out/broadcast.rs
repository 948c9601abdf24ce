//! [`broadcast`]: every item, cloned, to every branch.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};

use futures::Stream;
use futures::stream::{BoxStream, FusedStream};

use super::{Branches, CancelHint, CancelWatch, Parked, WakeOnUnwind, lock};

const OPERATOR: &str = "broadcast";

/// Splits `source` into `n` branches that each see every item (cloned; the
/// last live branch gets the original). Go: one goroutine copying each value
/// into N channels.
///
/// Each branch holds at most `capacity` items. The slowest live branch sets
/// the pace: the source is not polled while any live branch holds `capacity`
/// items, so memory stays at most `n × capacity` items and nothing is ever
/// lost. A branch that asks when it holds nothing polls the source itself,
/// taking as many ready items as every branch has room for. A branch moves
/// what is buffered for it out in one go and then takes those items without a
/// lock (they count as held until taken), so the lock is taken about once per
/// batch, not once per item. A dropped branch stops counting: the others go on
/// without it. All branches end after the source ends and they have emitted
/// what they hold.
///
/// Usually called as [`ConcurrentStreamExt::broadcast`](crate::ConcurrentStreamExt::broadcast).
///
/// # Panics
///
/// If `n` or `capacity` is 0.
///
/// ```
/// use futures::StreamExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut branches = tokio_conc::fan_out::broadcast(futures::stream::iter(1..=3), 2, 8);
/// let (b, a) = (branches.pop().unwrap(), branches.pop().unwrap());
/// let (a, b) = tokio::join!(a.collect::<Vec<_>>(), b.collect::<Vec<_>>());
/// assert_eq!(a, [1, 2, 3]);
/// assert_eq!(b, [1, 2, 3]);
/// # }
/// ```
pub fn broadcast<S>(
    source: S,
    n: impl Into<Branches>,
    capacity: usize,
) -> Vec<BroadcastBranch<S::Item>>
where
    S: Stream + Send + 'static,
    S::Item: Clone,
{
    assert!(capacity > 0, "`capacity` must be at least 1, got 0");
    let branches = n.into();
    let parked = Parked::new(branches.count());
    let source_waker = Waker::from(Arc::clone(&parked));
    let cancel = branches.cancel_watch(&source_waker);
    let shared = Arc::new(Shared {
        cancel_hint: cancel.as_ref().map(CancelWatch::hint),
        state: Mutex::new(State {
            source: Some(Box::pin(source)),
            buffers: (0..branches.count())
                .map(|_| Some(VecDeque::new()))
                .collect(),
            capacity,
            cancel,
        }),
        batched: (0..branches.count()).map(|_| AtomicUsize::new(0)).collect(),
        source_waker,
        parked,
    });
    (0..branches.count())
        .map(|slot| BroadcastBranch {
            shared: Arc::clone(&shared),
            slot,
            batch: VecDeque::new(),
            done: false,
        })
        .collect()
}

/// One branch of [`broadcast`]: a stream of every item of the source.
///
/// `Send + 'static`: move it into its own task. Dropping it releases the
/// others from waiting for it.
pub struct BroadcastBranch<T> {
    shared: Arc<Shared<T>>,
    slot: usize,
    /// Items moved out of this branch's buffer in one go, so that taking each
    /// of them needs no lock. They still count against `capacity` (through
    /// `Shared::batched`) until taken.
    batch: VecDeque<T>,
    done: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Per branch: how many items its `batch` holds. Set under the lock, taken
    /// down without it, read (under the lock) by a branch deciding whether
    /// every branch has room for another item.
    batched: Box<[AtomicUsize]>,
    parked: Arc<Parked>,
    /// Wakes every parked branch; the only waker the source is polled with.
    source_waker: Waker,
    cancel_hint: Option<CancelHint>,
}

struct State<T> {
    /// `None` once the source ended or the context was cancelled.
    source: Option<BoxStream<'static, T>>,
    /// One per branch; `None` once that branch is dropped.
    buffers: Vec<Option<VecDeque<T>>>,
    capacity: usize,
    cancel: Option<CancelWatch>,
}

/// What polling the source did for the branch that asked.
struct Pulled {
    /// Items were added to every live buffer.
    any: bool,
    /// The source ended.
    ended: bool,
}

impl<T: Clone> State<T> {
    fn cancelled(&mut self) -> bool {
        if !self.cancel.as_mut().is_some_and(CancelWatch::is_cancelled) {
            return false;
        }
        self.source = None;
        self.buffers.iter_mut().flatten().for_each(VecDeque::clear);
        true
    }

    /// The room left for the fullest live branch: its buffer and its batch.
    fn room(&self, batched: &[AtomicUsize]) -> usize {
        let held = |(buffer, batched): (&Option<VecDeque<T>>, &AtomicUsize)| {
            Some(buffer.as_ref()?.len() + batched.load(Ordering::SeqCst))
        };
        let fullest = self.buffers.iter().zip(batched).filter_map(held).max();
        self.capacity.saturating_sub(fullest.unwrap_or(0))
    }

    /// Polls the source while every live buffer has room, the source has items
    /// ready and the task has coop budget left.
    fn pull(&mut self, batched: &[AtomicUsize], cx: &mut Context<'_>) -> Pulled {
        let mut pulled = Pulled {
            any: false,
            ended: false,
        };
        for _ in 0..self.room(batched) {
            if pulled.any && !tokio::task::coop::has_budget_remaining() {
                break;
            }
            let Some(source) = self.source.as_mut() else {
                break;
            };
            match source.as_mut().poll_next(cx) {
                Poll::Ready(Some(item)) => {
                    self.push(item);
                    pulled.any = true;
                }
                Poll::Ready(None) => {
                    self.source = None;
                    pulled.ended = true;
                }
                Poll::Pending => break,
            }
        }
        pulled
    }

    fn push(&mut self, item: T) {
        let mut live = self.buffers.iter_mut().flatten();
        if let Some(mut buffer) = live.next() {
            for next in live {
                buffer.push_back(item.clone());
                buffer = next;
            }
            buffer.push_back(item);
        }
    }

    /// Moves the branch's whole buffer into its (empty) batch.
    fn take_batch(&mut self, slot: usize, batch: &mut VecDeque<T>, batched: &AtomicUsize) {
        if let Some(buffer) = self.buffers[slot].as_mut() {
            std::mem::swap(buffer, batch);
            batched.store(batch.len(), Ordering::SeqCst);
        }
    }
}

impl<T: Clone> Stream for BroadcastBranch<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if self.done {
            return Poll::Ready(None);
        }
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        let this = &mut *self;
        let shared = &*this.shared;
        let slot = this.slot;

        // The batch needs no lock — unless a cancellation may have happened,
        // which only the lock can confirm.
        let maybe_cancelled = shared.cancel_hint.as_ref().is_some_and(CancelHint::raised);
        if !maybe_cancelled {
            if let Some(item) = this.batch.pop_front() {
                shared.took_one(slot);
                coop.made_progress();
                return Poll::Ready(Some(item));
            }
        }

        let _wake = WakeOnUnwind(&shared.source_waker);
        let mut state = lock(&shared.state, OPERATOR);
        let epoch = shared.parked.waiting.epoch();
        if state.cancelled() {
            this.batch.clear();
            shared.batched[slot].store(0, Ordering::SeqCst);
            drop(state);
            shared.source_waker.wake_by_ref();
            this.done = true;
            return Poll::Ready(None);
        }
        if this.batch.is_empty() {
            state.take_batch(slot, &mut this.batch, &shared.batched[slot]);
        }
        if let Some(item) = this.batch.pop_front() {
            drop(state);
            shared.took_one(slot);
            coop.made_progress();
            return Poll::Ready(Some(item));
        }
        if state.source.is_none() {
            drop(state);
            this.done = true;
            return Poll::Ready(None);
        }
        if state.room(&shared.batched) == 0 {
            // A slower branch is full: wait until it takes an item. It takes
            // items from its batch without the lock, so park first and look
            // again (the fences order this against its `took_one`).
            shared.parked.blocked.register(slot, cx.waker());
            fence(Ordering::SeqCst);
            if state.room(&shared.batched) == 0 {
                return Poll::Pending;
            }
            shared.parked.blocked.unregister(slot);
        }

        let pulled = state.pull(
            &shared.batched,
            &mut Context::from_waker(&shared.source_waker),
        );
        state.take_batch(slot, &mut this.batch, &shared.batched[slot]);
        let next = this.batch.pop_front();
        if next.is_none() && !pulled.ended {
            shared.parked.waiting.park(slot, cx.waker(), epoch);
        }
        drop(state);
        if pulled.any || pulled.ended {
            shared.source_waker.wake_by_ref();
        }
        match next {
            Some(item) => {
                shared.took_one(slot);
                coop.made_progress();
                Poll::Ready(Some(item))
            }
            None if pulled.ended => {
                this.done = true;
                Poll::Ready(None)
            }
            None => Poll::Pending,
        }
    }
}

// Nothing in a branch is structurally pinned: its items are only moved.
impl<T> Unpin for BroadcastBranch<T> {}

impl<T> Shared<T> {
    /// Branch `slot` took an item from its batch: one more item of room, which
    /// a branch blocked on this one may be waiting for.
    fn took_one(&self, slot: usize) {
        self.batched[slot].fetch_sub(1, Ordering::SeqCst);
        if self.parked.blocked.any_parked() {
            self.parked.blocked.wake_all();
        }
    }
}

impl<T> BroadcastBranch<T> {
    /// How many items this branch holds, received but not yet taken (at most
    /// the `capacity` given to [`broadcast`]).
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut branches = futures::stream::iter(0..10).broadcast(2, 4);
    /// assert_eq!(branches[0].next().await, Some(0));
    /// // The first branch pulled what fitted: both buffers are full.
    /// assert_eq!(branches[0].len(), 3);
    /// assert_eq!(branches[1].len(), 4);
    /// # }
    /// ```
    pub fn len(&self) -> usize {
        let state = self.shared.state.lock();
        let buffered = state.map_or(0, |s| {
            s.buffers[self.slot].as_ref().map_or(0, VecDeque::len)
        });
        buffered + self.batch.len()
    }

    /// Whether this branch holds no item.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    /// let branches = futures::stream::iter([1]).broadcast(2, 4);
    /// assert!(branches[0].is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: Clone> FusedStream for BroadcastBranch<T> {
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl<T> Drop for BroadcastBranch<T> {
    fn drop(&mut self) {
        let shared = &*self.shared;
        shared.parked.unregister(self.slot);
        // A poisoned lock: the source panicked, and nobody will poll it again.
        let Ok(mut state) = shared.state.lock() else {
            return;
        };
        state.buffers[self.slot] = None;
        shared.batched[self.slot].store(0, Ordering::SeqCst);
        if state.buffers.iter().all(Option::is_none) {
            state.source = None;
        }
        drop(state);
        // The others may have been waiting for this branch.
        if shared.parked.blocked.any_parked() {
            shared.parked.blocked.wake_all();
        }
    }
}

impl<T> fmt::Debug for BroadcastBranch<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BroadcastBranch")
            .field("index", &self.slot)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
