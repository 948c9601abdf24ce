//! [`broadcast`]: every item, cloned, to every branch.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use futures::Stream;
use futures::stream::{BoxStream, FusedStream};

use super::batched::{BatchedBranch, BatchedState, Hub, Refill, Refilled};
use super::{Branches, CancelWatch, Parked};
use crate::internal::sync::{AtomicUsize, Ordering, fence};

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
    let source_waker = Waker::from(std::sync::Arc::clone(&parked));
    let cancel = branches.cancel_watch(&source_waker);
    let cancel_hint = cancel.as_ref().map(CancelWatch::hint);
    let state = State {
        source: Some(Box::pin(source)),
        buffers: (0..branches.count())
            .map(|_| Some(VecDeque::new()))
            .collect(),
        capacity,
        cancel,
    };
    let hub = Hub::new(state, branches.count(), parked, source_waker, cancel_hint);
    (0..branches.count())
        .map(|slot| BroadcastBranch {
            inner: BatchedBranch::new(&hub, slot),
        })
        .collect()
}

/// One branch of [`broadcast`]: a stream of every item of the source.
///
/// `Send + 'static`: move it into its own task. Dropping it releases the
/// others from waiting for it.
pub struct BroadcastBranch<T> {
    inner: BatchedBranch<T, State<T>>,
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

impl<T> BatchedState<T> for State<T> {
    fn cancelled(&mut self) -> bool {
        if !self.cancel.as_mut().is_some_and(CancelWatch::is_cancelled) {
            return false;
        }
        self.source = None;
        self.buffers.iter_mut().flatten().for_each(VecDeque::clear);
        true
    }

    fn buffer(&mut self, slot: usize) -> Option<&mut VecDeque<T>> {
        self.buffers[slot].as_mut()
    }

    /// Its buffer, and every item the source has left.
    fn hint(&mut self, slot: usize) -> (usize, Option<usize>) {
        let buffered = self.buffers[slot].as_ref().map_or(0, VecDeque::len);
        let (lower, upper) = self
            .source
            .as_ref()
            .map_or((0, Some(0)), |source| source.size_hint());
        (
            lower.saturating_add(buffered),
            upper.and_then(|upper| upper.checked_add(buffered)),
        )
    }
}

impl<T: Clone> State<T> {
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
}

impl<T: Clone> Stream for BroadcastBranch<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.inner.poll_next(cx, OPERATOR, refill)
    }

    /// What it holds plus what the source has left: every item reaches every
    /// branch. Nothing is promised while a context could stop it.
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

/// The branch's batch and buffer are empty: poll the source for every branch,
/// unless a slower one is full.
fn refill<T: Clone>(refill: Refill<'_, '_, T, State<T>>) -> Refilled<T> {
    let Refill {
        mut state,
        hub,
        slot,
        batch,
        cx,
        epoch,
        unblocked: _,
    } = refill;
    if state.source.is_none() {
        return Refilled::End;
    }
    if state.room(&hub.batched) == 0 {
        // A slower branch is full: wait until it takes an item. It takes
        // items from its batch without the lock, so park first and look
        // again (the fences order this against its `took_one`).
        hub.parked.blocked.register(slot, cx.waker());
        fence(Ordering::SeqCst);
        if state.room(&hub.batched) == 0 {
            return Refilled::Pending;
        }
        hub.parked.blocked.unregister(slot);
    }

    let pulled = hub
        .parked
        .poll_source(|| state.pull(&hub.batched, &mut Context::from_waker(&hub.source_waker)));
    state.take_batch(slot, batch, &hub.batched[slot]);
    let next = batch.pop_front();
    if next.is_none() && !pulled.ended {
        hub.parked.waiting.park(slot, cx.waker(), epoch);
    }
    drop(state);
    if pulled.any || pulled.ended {
        hub.source_waker.wake_by_ref();
    }
    match next {
        Some(item) => Refilled::Item(item),
        None if pulled.ended => Refilled::End,
        None => Refilled::Pending,
    }
}

// Nothing in a branch is structurally pinned: its items are only moved.
impl<T> Unpin for BroadcastBranch<T> {}

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
        self.inner.len()
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
        self.inner.done
    }
}

impl<T> Drop for BroadcastBranch<T> {
    fn drop(&mut self) {
        let hub = &*self.inner.hub;
        let slot = self.inner.slot;
        hub.parked.unregister(slot);
        // A poisoned lock: the source panicked, and nobody will poll it again.
        let Ok(mut state) = hub.state.lock() else {
            return;
        };
        state.buffers[slot] = None;
        hub.batched[slot].store(0, Ordering::SeqCst);
        if state.buffers.iter().all(Option::is_none) {
            state.source = None;
        }
        drop(state);
        // The others may have been waiting for this branch.
        if hub.parked.blocked.any_parked() {
            hub.parked.blocked.wake_all();
        }
    }
}

impl<T> fmt::Debug for BroadcastBranch<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt_as("BroadcastBranch", f)
    }
}
