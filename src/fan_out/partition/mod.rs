//! [`partition`]: each item to the lane its key hashes to.

use std::collections::VecDeque;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};

use futures::Stream;
use futures::stream::FusedStream;

mod lanes;

use super::{Branches, CancelHint, CancelWatch, Parked, WakeOnUnwind, lock};
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
    F: FnMut(&S::Item) -> K + Send + 'static,
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
    mut key_fn: F,
) -> Vec<Lane<S::Item>>
where
    S: Stream + Send + 'static,
    K: Hash,
    F: FnMut(&S::Item) -> K + Send + 'static,
{
    assert!(capacity > 0, "`capacity` must be at least 1, got 0");
    let branches = n.into();
    let lanes = branches.count();
    let parked = Parked::new(lanes);
    let source_waker = Waker::from(Arc::clone(&parked));
    let cancel = branches.cancel_watch(&source_waker);
    let route = move |item: &S::Item| {
        // A fixed-key hasher: the same key goes to the same lane in every run.
        let mut hasher = DefaultHasher::new();
        key_fn(item).hash(&mut hasher);
        (hasher.finish() % lanes as u64) as usize
    };
    let shared = Arc::new(Shared {
        cancel_hint: cancel.as_ref().map(CancelWatch::hint),
        batched: (0..lanes).map(|_| AtomicUsize::new(0)).collect(),
        state: Mutex::new(State {
            source: Some(Box::pin(source)),
            lanes: (0..lanes).map(|_| Some(VecDeque::new())).collect(),
            capacity,
            held: None,
            route: Box::new(route),
            skipped: 0,
            cancel,
        }),
        source_waker,
        parked,
    });
    (0..lanes)
        .map(|slot| Lane {
            shared: Arc::clone(&shared),
            slot,
            batch: VecDeque::new(),
            done: false,
        })
        .collect()
}

/// One lane of [`partition`]: the items whose key hashes to it, in source order.
///
/// `Send + 'static`: move it into its own task.
pub struct Lane<T> {
    shared: Arc<Shared<T>>,
    slot: usize,
    /// Items moved out of this lane's buffer in one go, so that taking each of
    /// them needs no lock. They still count against the capacity (through
    /// `Shared::batched`) until taken.
    batch: VecDeque<T>,
    done: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Per lane: how many items its `batch` holds. Set under the lock, taken
    /// down without it, read (under the lock) when routing an item.
    batched: Box<[AtomicUsize]>,
    parked: Arc<Parked>,
    /// Wakes every parked lane; the only waker the source is polled with.
    source_waker: Waker,
    cancel_hint: Option<CancelHint>,
}

impl<T> Stream for Lane<T> {
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
        // The held item's lane may have taken items (without the lock) since.
        let mut released = state.release_held(&shared.batched);
        if this.batch.is_empty() {
            state.take_batch(slot, &mut this.batch, &shared.batched[slot]);
        }
        if let Some(item) = this.batch.pop_front() {
            drop(state);
            if released {
                shared.parked.blocked.wake_all();
            }
            shared.took_one(slot);
            coop.made_progress();
            return Poll::Ready(Some(item));
        }
        if state.held.is_some() {
            // The held item is for another lane, which is full: wait until it
            // takes an item. It takes items from its batch without the lock,
            // so park first and look again (the fences order this against its
            // `took_one`).
            shared.parked.blocked.register(slot, cx.waker());
            fence(Ordering::SeqCst);
            if !state.release_held(&shared.batched) {
                return Poll::Pending;
            }
            shared.parked.blocked.unregister(slot);
            released = true;
        }
        if state.source.is_none() {
            drop(state);
            this.done = true;
            return Poll::Ready(None);
        }

        let pulled = state.pull(
            slot,
            &shared.batched,
            &mut Context::from_waker(&shared.source_waker),
        );
        state.take_batch(slot, &mut this.batch, &shared.batched[slot]);
        let next = this.batch.pop_front();
        let end = next.is_none() && state.source.is_none() && state.held.is_none();
        if next.is_none() && !end && !pulled.limited {
            if state.held.is_some() {
                // Blocked behind a full lane: park and look again, as above.
                // If it took an item meanwhile, the source is free: wake the
                // blocked lanes, this one included.
                shared.parked.blocked.register(slot, cx.waker());
                fence(Ordering::SeqCst);
                if state.release_held(&shared.batched) {
                    shared.parked.blocked.wake_all();
                }
            } else {
                shared.parked.waiting.park(slot, cx.waker(), epoch);
            }
        }
        drop(state);
        if pulled.for_others || pulled.ended {
            shared.source_waker.wake_by_ref();
        } else if released {
            shared.parked.blocked.wake_all();
        }
        match next {
            Some(item) => {
                shared.took_one(slot);
                coop.made_progress();
                Poll::Ready(Some(item))
            }
            None if end => {
                this.done = true;
                Poll::Ready(None)
            }
            None => {
                if pulled.limited {
                    // The source is still ready: come back after a yield.
                    cx.waker().wake_by_ref();
                }
                Poll::Pending
            }
        }
    }
}

// Nothing in a lane is structurally pinned: its items are only moved.
impl<T> Unpin for Lane<T> {}

impl<T> Shared<T> {
    /// Lane `slot` took an item from its batch: one more item of room, which
    /// the item held for this lane (and the lanes blocked behind it) may be
    /// waiting for.
    fn took_one(&self, slot: usize) {
        self.batched[slot].fetch_sub(1, Ordering::SeqCst);
        if self.parked.blocked.any_parked() {
            self.parked.blocked.wake_all();
        }
    }
}

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
        let state = self.shared.state.lock();
        let buffered = state.map_or(0, |s| s.lanes[self.slot].as_ref().map_or(0, VecDeque::len));
        buffered + self.batch.len()
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
        self.shared.state.lock().map_or(0, |s| s.skipped)
    }
}

impl<T> FusedStream for Lane<T> {
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl<T> Drop for Lane<T> {
    fn drop(&mut self) {
        let shared = &*self.shared;
        shared.parked.unregister(self.slot);
        // A poisoned lock: the source panicked, and nobody will poll it again.
        let Ok(mut state) = shared.state.lock() else {
            return;
        };
        let Some(buffer) = state.lanes[self.slot].take() else {
            return;
        };
        state.skip(self.slot, buffer.len() + self.batch.len());
        shared.batched[self.slot].store(0, Ordering::SeqCst);
        let released = state.release_held(&shared.batched);
        if state.lanes.iter().all(Option::is_none) {
            state.source = None;
        }
        drop(state);
        if released {
            // The source was waiting for this lane.
            shared.source_waker.wake_by_ref();
        }
    }
}

impl<T> fmt::Debug for Lane<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lane")
            .field("index", &self.slot)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
