//! [`partition`]: each item to the lane its key hashes to.

use std::collections::VecDeque;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use futures::Stream;
use futures::stream::FusedStream;

mod lanes;

use super::batched::{BatchedBranch, BatchedState, Hub, Refill, Refilled};
use super::{Branches, CancelWatch, Parked};
use crate::internal::sync::{Ordering, fence};
use lanes::State;

const OPERATOR: &str = "partition";

/// The lane buffer of [`partition`]: how many items each lane holds at most.
pub const DEFAULT_LANE_CAPACITY: usize = 16;

/// Splits `source` into `n` lanes by key: each item goes to the lane
/// `hash(key_fn(&item)) % n`, so items with equal keys share a lane and keep
/// their source order. Go: a dispatcher goroutine sending each value to
/// `lanes[hash(key) % n]`.
///
/// Each lane buffers at most [`DEFAULT_LANE_CAPACITY`] items (set it with
/// [`partition_with`]). A full lane applies backpressure, never an error:
/// when the next item belongs to a full lane it is held (one item, in the
/// operator) and the source is not polled again until that lane takes an item.
/// So memory stays at most `n × capacity + 1` items. A lane that asks polls the
/// source itself, filling other lanes on the way until it finds an item of its
/// own. A lane moves what is buffered for it out in one go and then takes those
/// items without a lock (they count against its capacity until taken).
///
/// **A dropped lane**: the others go on, and the items that belong to it — those
/// it held when dropped and those routed to it afterwards — are skipped and
/// counted in [`Lane::skipped`] (and a `tracing` warning is logged the first
/// time). Keys are not re-hashed over the remaining lanes, so a key never moves
/// to another lane. All lanes end after the source ends and they have emitted
/// what they hold.
///
/// Usually called as [`ConcurrentStreamExt::partition`](crate::ConcurrentStreamExt::partition).
///
/// # Panics
///
/// If `n` is 0.
///
/// ```
/// use futures::StreamExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let words = futures::stream::iter(["ant", "bee", "ape", "bat", "asp"]);
/// let lanes = tokio_conc::fan_out::partition(words, 2, |w: &&str| w.chars().next());
/// let lanes = futures::future::join_all(lanes.into_iter().map(|l| l.collect::<Vec<_>>())).await;
/// let a_lane = lanes.iter().find(|lane| lane.contains(&"ant")).unwrap();
/// let a_words: Vec<_> = a_lane.iter().filter(|w| w.starts_with('a')).collect();
/// assert_eq!(a_words, [&"ant", &"ape", &"asp"]);
/// # }
/// ```
pub fn partition<S, K, F>(source: S, n: impl Into<Branches>, key_fn: F) -> Vec<Lane<S::Item>>
where
    S: Stream + Send + 'static,
    K: Hash,
    F: Fn(&S::Item) -> K + Send + Sync + 'static,
{
    partition_with(source, n, DEFAULT_LANE_CAPACITY, key_fn)
}

/// [`partition`] with lanes of `capacity` items each.
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
/// let mut lanes = tokio_conc::fan_out::partition_with(futures::stream::iter(0..100), 4, 2, |x: &u32| *x % 4);
/// let first = lanes[0].next().await.unwrap();
/// // Looking for its first item, lane 0 filled the other lanes up to 2 items.
/// assert!(lanes.iter().all(|lane| lane.len() <= 2));
/// # let _ = first;
/// # }
/// ```
pub fn partition_with<S, K, F>(
    source: S,
    n: impl Into<Branches>,
    capacity: usize,
    key_fn: F,
) -> Vec<Lane<S::Item>>
where
    S: Stream + Send + 'static,
    K: Hash,
    F: Fn(&S::Item) -> K + Send + Sync + 'static,
{
    assert!(capacity > 0, "`capacity` must be at least 1, got 0");
    let branches = n.into();
    let lanes = branches.count();
    let parked = Parked::new(lanes);
    let source_waker = Waker::from(std::sync::Arc::clone(&parked));
    let cancel = branches.cancel_watch(&source_waker);
    let route = move |item: &S::Item| {
        // A fixed-key hasher: the same key goes to the same lane in every run.
        let mut hasher = DefaultHasher::new();
        key_fn(item).hash(&mut hasher);
        (hasher.finish() % lanes as u64) as usize
    };
    let cancel_hint = cancel.as_ref().map(CancelWatch::hint);
    let state = State {
        source: Some(Box::pin(source)),
        lanes: (0..lanes).map(|_| Some(VecDeque::new())).collect(),
        capacity,
        held: None,
        route: Box::new(route),
        skipped: 0,
        cancel,
    };
    let hub = Hub::new(state, lanes, parked, source_waker, cancel_hint);
    (0..lanes)
        .map(|slot| Lane {
            inner: BatchedBranch::new(&hub, slot),
        })
        .collect()
}

/// One lane of [`partition`]: the items whose key hashes to it, in source order.
///
/// `Send + 'static`: move it into its own task.
pub struct Lane<T> {
    inner: BatchedBranch<T, State<T>>,
}

impl<T> Stream for Lane<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.inner.poll_next(cx, OPERATOR, refill)
    }

    /// What it holds, at least; at most that plus what the source has left.
    /// Nothing is promised while a context could stop it.
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

/// The lane's batch and buffer are empty: poll the source until an item for
/// this lane turns up, unless the held item blocks it.
fn refill<T>(refill: Refill<'_, '_, T, State<T>>) -> Refilled<T> {
    let Refill {
        mut state,
        hub,
        slot,
        batch,
        cx,
        epoch,
        unblocked: mut released,
    } = refill;
    if state.held.is_some() {
        // The held item is for another lane, which is full: wait until it
        // takes an item. It takes items from its batch without the lock,
        // so park first and look again (the fences order this against its
        // `took_one`).
        hub.parked.blocked.register(slot, cx.waker());
        fence(Ordering::SeqCst);
        if !state.release_held(&hub.batched) {
            return Refilled::Pending;
        }
        hub.parked.blocked.unregister(slot);
        released = true;
    }
    if state.source.is_none() {
        return Refilled::End;
    }

    let pulled = hub.parked.poll_source(|| {
        state.pull(
            slot,
            &hub.batched,
            &mut Context::from_waker(&hub.source_waker),
        )
    });
    state.take_batch(slot, batch, &hub.batched[slot]);
    let next = batch.pop_front();
    let end = next.is_none() && state.source.is_none() && state.held.is_none();
    if next.is_none() && !end && !pulled.limited {
        if state.held.is_some() {
            // Blocked behind a full lane: park and look again, as above.
            // If it took an item meanwhile, the source is free: wake the
            // blocked lanes, this one included.
            hub.parked.blocked.register(slot, cx.waker());
            fence(Ordering::SeqCst);
            if state.release_held(&hub.batched) {
                hub.parked.blocked.wake_all();
            }
        } else {
            hub.parked.waiting.park(slot, cx.waker(), epoch);
        }
    }
    drop(state);
    if pulled.for_others || pulled.ended {
        hub.source_waker.wake_by_ref();
    } else {
        if released {
            hub.parked.blocked.wake_all();
        }
        if pulled.owes_no_wake_up {
            // This pull took the source's wake-up from the lanes waiting
            // for it: they ask again (`fan_out`'s invariant 5).
            hub.parked.wake_waiting();
        }
    }
    match next {
        Some(item) => Refilled::Item(item),
        None if end => Refilled::End,
        None => {
            if pulled.limited {
                // The source is still ready: come back after a yield.
                cx.waker().wake_by_ref();
            }
            Refilled::Pending
        }
    }
}

// Nothing in a lane is structurally pinned: its items are only moved.
impl<T> Unpin for Lane<T> {}

impl<T> Lane<T> {
    /// How many items this lane holds, routed to it but not yet taken (at most
    /// the lane capacity).
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut lanes = futures::stream::iter(0..4).partition(1, |x: &u32| *x);
    /// assert_eq!(lanes[0].next().await, Some(0));
    /// assert_eq!(lanes[0].len(), 0);
    /// # }
    /// ```
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether this lane holds no item.
    ///
    /// ```
    /// use tokio_conc::prelude::*;
    /// let lanes = futures::stream::iter([1]).partition(2, |x: &u32| *x);
    /// assert!(lanes[0].is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many items were skipped because their lane had been dropped, over
    /// all lanes of this partition.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut lanes = futures::stream::iter(0..10_u32).partition(2, |x: &u32| *x % 3);
    /// let mut kept = lanes.remove(0);
    /// drop(lanes); // items for the other lane are now skipped, and counted
    /// let got: Vec<u32> = kept.by_ref().collect().await;
    /// assert_eq!(got.len() as u64 + kept.skipped(), 10);
    /// # }
    /// ```
    pub fn skipped(&self) -> u64 {
        self.inner.hub.state.lock().map_or(0, |s| s.skipped)
    }
}

impl<T> FusedStream for Lane<T> {
    fn is_terminated(&self) -> bool {
        self.inner.done
    }
}

impl<T> Drop for Lane<T> {
    fn drop(&mut self) {
        let hub = &*self.inner.hub;
        let slot = self.inner.slot;
        hub.parked.unregister(slot);
        // A poisoned lock: the source panicked, and nobody will poll it again.
        let Ok(mut state) = hub.state.lock() else {
            return;
        };
        let Some(buffer) = state.lanes[slot].take() else {
            return;
        };
        state.skip(slot, buffer.len() + self.inner.batch.len());
        hub.batched[slot].store(0, Ordering::SeqCst);
        let released = state.release_held(&hub.batched);
        if state.lanes.iter().all(Option::is_none) {
            state.source = None;
        }
        drop(state);
        if released {
            // The source was waiting for this lane.
            hub.source_waker.wake_by_ref();
        }
    }
}

impl<T> fmt::Debug for Lane<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt_as("Lane", f)
    }
}
