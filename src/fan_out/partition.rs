//! [`partition`]: each item to the lane its key hashes to.

use std::collections::VecDeque;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};

use futures::Stream;
use futures::stream::{BoxStream, FusedStream};

use super::{Branches, CancelWatch, WakeOnUnwind, lock};
use crate::internal::waker_set::WakerSet;

const OPERATOR: &str = "partition";

/// The lane buffer of [`partition`]: how many items each lane holds at most.
pub const DEFAULT_LANE_CAPACITY: usize = 16;

/// The most source items one poll of a lane takes while looking for one of its
/// own, so that a run of items for other lanes cannot monopolize the thread.
const PULL_LIMIT: usize = 64;

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
/// own.
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
    let parked = WakerSet::new(lanes);
    let source_waker = parked.waker();
    let route = move |item: &S::Item| {
        // A fixed-key hasher: the same key goes to the same lane in every run.
        let mut hasher = DefaultHasher::new();
        key_fn(item).hash(&mut hasher);
        (hasher.finish() % lanes as u64) as usize
    };
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            source: Some(Box::pin(source)),
            lanes: (0..lanes).map(|_| Some(VecDeque::new())).collect(),
            capacity,
            held: None,
            route: Box::new(route),
            skipped: 0,
            cancel: branches.cancel_watch(&source_waker),
        }),
        source_waker,
        parked,
    });
    (0..lanes)
        .map(|slot| Lane {
            shared: Arc::clone(&shared),
            slot,
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
    done: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    parked: Arc<WakerSet>,
    /// Wakes every parked lane; the only waker the source is polled with.
    source_waker: Waker,
}

type Route<T> = Box<dyn FnMut(&T) -> usize + Send>;

struct State<T> {
    /// `None` once the source ended or the context was cancelled.
    source: Option<BoxStream<'static, T>>,
    /// One per lane; `None` once that lane is dropped.
    lanes: Vec<Option<VecDeque<T>>>,
    capacity: usize,
    /// An item whose lane was full, and that lane: the source waits for it.
    held: Option<(usize, T)>,
    route: Route<T>,
    skipped: u64,
    cancel: Option<CancelWatch>,
}

/// What polling the source did for the lane that asked.
#[derive(Default)]
struct Pulled {
    /// An item went to another lane (which may be parked, waiting for it).
    for_others: bool,
    /// The source ended.
    ended: bool,
    /// The pull limit was reached with the source still ready.
    limited: bool,
}

impl<T> State<T> {
    fn cancelled(&mut self) -> bool {
        if !self.cancel.as_mut().is_some_and(CancelWatch::is_cancelled) {
            return false;
        }
        self.source = None;
        self.held = None;
        self.lanes.iter_mut().flatten().for_each(VecDeque::clear);
        true
    }

    /// Polls the source until `slot` has an item, an item is held for a full
    /// lane, the source is pending or ended, or the pull limit is reached.
    fn pull(&mut self, slot: usize, cx: &mut Context<'_>) -> Pulled {
        let mut pulled = Pulled::default();
        for taken in 0.. {
            if taken == PULL_LIMIT || (taken > 0 && !tokio::task::coop::has_budget_remaining()) {
                pulled.limited = true;
                break;
            }
            let Some(source) = self.source.as_mut() else {
                break;
            };
            let item = match source.as_mut().poll_next(cx) {
                Poll::Ready(Some(item)) => item,
                Poll::Ready(None) => {
                    self.source = None;
                    pulled.ended = true;
                    break;
                }
                Poll::Pending => break,
            };
            let lane = (self.route)(&item);
            match &mut self.lanes[lane] {
                None => self.skip(lane, 1),
                Some(buffer) if buffer.len() < self.capacity => {
                    buffer.push_back(item);
                    if lane == slot {
                        break;
                    }
                    pulled.for_others = true;
                }
                Some(_) => {
                    self.held = Some((lane, item));
                    break;
                }
            }
        }
        pulled
    }

    fn skip(&mut self, lane: usize, items: usize) {
        if items == 0 {
            return;
        }
        if self.skipped == 0 {
            tracing::warn!(
                lane,
                "partition: skipping items whose lane was dropped (see Lane::skipped)"
            );
        }
        self.skipped += items as u64;
    }

    /// The lane's next item, and whether that freed the source: its buffer was
    /// full, or the held item was waiting for it.
    fn pop(&mut self, slot: usize) -> Option<(T, bool)> {
        let buffer = self.lanes[slot].as_mut()?;
        let was_full = buffer.len() == self.capacity;
        let item = buffer.pop_front()?;
        if matches!(self.held, Some((lane, _)) if lane == slot) {
            if let Some((_, held)) = self.held.take() {
                buffer.push_back(held);
            }
        }
        Some((item, was_full))
    }
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

        let _wake = WakeOnUnwind(&shared.source_waker);
        let mut state = lock(&shared.state, OPERATOR);
        let epoch = shared.parked.epoch();
        if state.cancelled() {
            drop(state);
            shared.parked.wake_all();
            this.done = true;
            return Poll::Ready(None);
        }

        if let Some((item, freed)) = state.pop(this.slot) {
            drop(state);
            // Lanes may be parked waiting for the source to be free again.
            if freed && shared.parked.any_parked() {
                shared.parked.wake_all();
            }
            coop.made_progress();
            return Poll::Ready(Some(item));
        }
        if state.source.is_none() && state.held.is_none() {
            drop(state);
            this.done = true;
            return Poll::Ready(None);
        }
        if state.held.is_some() {
            // The next item is for another lane, which is full: wait for it.
            shared.parked.park(this.slot, cx.waker(), epoch);
            return Poll::Pending;
        }

        let pulled = state.pull(this.slot, &mut Context::from_waker(&shared.source_waker));
        let next = state.pop(this.slot);
        let end = next.is_none() && state.source.is_none() && state.held.is_none();
        if next.is_none() && !end && !pulled.limited {
            shared.parked.park(this.slot, cx.waker(), epoch);
        }
        drop(state);
        if pulled.for_others || pulled.ended {
            shared.parked.wake_all();
        }
        match next {
            Some((item, _)) => {
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
        state.map_or(0, |s| s.lanes[self.slot].as_ref().map_or(0, VecDeque::len))
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
        self.shared.parked.unregister(self.slot);
        // A poisoned lock: the source panicked, and nobody will poll it again.
        let Ok(mut state) = self.shared.state.lock() else {
            return;
        };
        let Some(buffer) = state.lanes[self.slot].take() else {
            return;
        };
        state.skip(self.slot, buffer.len());
        let held_here = matches!(state.held, Some((lane, _)) if lane == self.slot);
        if held_here {
            state.held = None;
            state.skip(self.slot, 1);
        }
        if state.lanes.iter().all(Option::is_none) {
            state.source = None;
        }
        drop(state);
        if held_here {
            // The source was waiting for this lane.
            self.shared.parked.wake_all();
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
