//! Fan-in: many streams of one item type merged into one, fairly — Go's
//! `fanIn` of several channels into one, with a `sync.WaitGroup` closing the
//! output once every input is done.
//!
//! [`fan_in`] and [`FanIn`] poll only the inputs that were woken (a ready
//! queue, like `futures::stream::SelectAll`, but with no allocation per item),
//! in the order they became ready, so an input that is always ready cannot
//! starve the others. Items of one input come out in that input's order. The
//! merged stream ends when every input has ended and no [`FanInHandle`] is
//! left that could add another.
//!
//! ```
//! use futures::StreamExt;
//! use tokio_conc::prelude::*;
//! use tokio_stream::wrappers::ReceiverStream;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mut inputs = Vec::new();
//! for producer in 0..3_u32 {
//!     let (tx, rx) = tokio::sync::mpsc::channel(4);
//!     tokio::spawn(async move {
//!         for i in 0..2 {
//!             tx.send(producer * 10 + i).await.unwrap();
//!         }
//!     });
//!     inputs.push(ReceiverStream::new(rx));
//! }
//! let mut all: Vec<u32> = fan_in(inputs).collect().await;
//! all.sort();
//! assert_eq!(all, [0, 1, 10, 11, 20, 21]);
//! # }
//! ```

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use futures::stream::FusedStream;
use futures::{Stream, StreamExt};

use crate::internal::ready_queue::ReadyQueue;

mod handle;

/// How many items one unit of Tokio's task budget pays for. Not one: inputs
/// that are Tokio resources charge their items themselves, and charging
/// twice halved throughput in `benches/fan_in.rs` by yielding twice as often.
const ITEMS_PER_BUDGET_UNIT: u8 = 4;

pub use handle::FanInHandle;
use handle::Incoming;

/// Merges `streams` into one stream, fairly: see [`FanIn`].
///
/// ```
/// use futures::{stream, StreamExt};
/// use tokio_conc::prelude::*;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let merged = fan_in([stream::iter(vec![1, 2, 3]), stream::iter(vec![10, 20])]);
/// // Ready inputs take turns.
/// assert_eq!(merged.collect::<Vec<_>>().await, [1, 10, 2, 20, 3]);
/// # }
/// ```
pub fn fan_in<I>(streams: I) -> FanIn<I::Item>
where
    I: IntoIterator,
    I::Item: Stream + Unpin,
{
    streams.into_iter().collect()
}

/// Many streams merged into one: the stream [`fan_in`] returns.
///
/// * **Fair**: inputs are polled in the order they became ready; one that
///   yielded an item goes to the back of the line. An endless, always-ready
///   input gets its turn like every other, and no more.
/// * **Ordered per input**: items of one input keep their order.
/// * **Cheap per wake-up**: each input has its own waker, so a wake-up polls
///   that input only, not all of them.
/// * **Cooperative**: it returns `Pending` once the task's Tokio budget is
///   spent, and every fourth item costs one unit of it, so a consumer of
///   always-ready inputs still yields (after 512 items) while inputs that are
///   Tokio resources, and pay for their own items, are not charged twice.
/// * **Growable**: [`push`](FanIn::push) adds an input, and a
///   [`FanInHandle`] adds one from another task while the consumer waits.
/// * **Ends** when every input has ended and no [`FanInHandle`] is left. A
///   [`push`](FanIn::push) after the end starts it again, as with
///   `SelectAll`.
///
/// Inputs must be `Unpin`; pin others with `Box::pin`.
///
/// ```
/// use futures::{stream, StreamExt};
/// use tokio_conc::fan_in::FanIn;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut merged = FanIn::new();
/// merged.push(stream::iter(vec!["a", "b"]));
/// assert_eq!(merged.next().await, Some("a"));
/// merged.push(stream::iter(vec!["x"]));
/// assert_eq!(merged.len(), 2);
/// let rest: Vec<_> = merged.collect().await;
/// assert_eq!(rest, ["b", "x"]);
/// # }
/// ```
#[must_use = "streams do nothing unless polled"]
pub struct FanIn<S> {
    live: usize,
    /// Items since fan-in last charged the task budget itself.
    uncharged: u8,
    ready: ReadyQueue<S>,
    incoming: Arc<Incoming<S>>,
}

impl<S: Stream + Unpin> FanIn<S> {
    /// A fan-in with no inputs yet. Polled as it is, it ends at once.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use tokio_conc::fan_in::FanIn;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let empty: FanIn<futures::stream::Empty<u8>> = FanIn::new();
    /// assert!(empty.is_empty());
    /// assert_eq!(empty.count().await, 0);
    /// # }
    /// ```
    pub fn new() -> Self {
        let ready = ReadyQueue::new();
        let incoming = Arc::new(Incoming::new(ready.owner_waker()));
        FanIn {
            live: 0,
            uncharged: 0,
            ready,
            incoming,
        }
    }

    /// Adds an input. It is polled on the next poll, behind the inputs that
    /// are already ready.
    ///
    /// A consumer waiting in `poll_next` holds the `FanIn` itself, so code
    /// that has `&mut` access is not racing a parked consumer; to add inputs
    /// from another task while the consumer waits, use a [`FanInHandle`].
    ///
    /// ```
    /// use futures::{stream, StreamExt};
    /// use tokio_conc::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut merged = fan_in([stream::iter(0..2)]);
    /// merged.push(stream::iter(5..7));
    /// let mut all: Vec<i32> = merged.collect().await;
    /// all.sort();
    /// assert_eq!(all, [0, 1, 5, 6]);
    /// # }
    /// ```
    pub fn push(&mut self, stream: S) {
        self.ready.insert(stream);
        self.live += 1;
        // A `select!` may have polled us with a waker it still waits on.
        self.incoming.owner.wake();
    }

    /// A handle that adds inputs from anywhere — another task, a callback —
    /// while the consumer is parked in `poll_next`: the push wakes the
    /// consumer, which then polls the new input. While any handle is alive
    /// the merged stream does not end, even with no input left (as a channel
    /// stays open while a sender lives).
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures::{stream, StreamExt};
    /// use tokio_conc::fan_in::FanIn;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut merged: FanIn<stream::Iter<std::ops::Range<u32>>> = FanIn::new();
    /// let handle = merged.handle();
    /// tokio::spawn(async move {
    ///     tokio::time::sleep(Duration::from_millis(5)).await;
    ///     handle.push(stream::iter(1..3)).ok();
    ///     // `handle` dropped here: once that input ends, so does `merged`.
    /// });
    /// assert_eq!(merged.collect::<Vec<_>>().await, [1, 2]);
    /// # }
    /// ```
    pub fn handle(&self) -> FanInHandle<S> {
        FanInHandle::new(Arc::clone(&self.incoming))
    }

    /// How many inputs have not ended yet.
    ///
    /// ```
    /// use futures::stream;
    /// use tokio_conc::prelude::*;
    ///
    /// let merged = fan_in([stream::iter(0..1), stream::iter(0..2)]);
    /// assert_eq!(merged.len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether no input is left.
    ///
    /// ```
    /// use futures::stream;
    /// use tokio_conc::fan_in::FanIn;
    ///
    /// let merged: FanIn<stream::Iter<std::vec::IntoIter<u8>>> = FanIn::new();
    /// assert!(merged.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    #[inline]
    fn take_incoming(&mut self) {
        if self.incoming.any.load(Ordering::Relaxed) {
            self.take_incoming_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn take_incoming_slow(&mut self) {
        if self.incoming.any.swap(false, Ordering::Acquire) {
            let streams = self.incoming.take();
            self.extend(streams);
        }
    }
}

impl<S: Stream + Unpin> Stream for FanIn<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        let this = &mut *self;
        this.take_incoming();
        let mut turns = this.ready.start_round();
        while turns > 0 {
            let Some(index) = this.ready.pop() else {
                break;
            };
            turns -= 1;
            let slot = this.ready.slot(index);
            let Some(input) = &mut slot.value else {
                continue;
            };
            match input.poll_next_unpin(&mut Context::from_waker(&slot.waker)) {
                Poll::Ready(Some(item)) => {
                    // No waker to register: a stream that returns an item is
                    // polled again before anyone waits on it.
                    this.ready.requeue(index);
                    this.uncharged += 1;
                    if this.uncharged == ITEMS_PER_BUDGET_UNIT {
                        this.uncharged = 0;
                        coop.made_progress();
                    }
                    return Poll::Ready(Some(item));
                }
                Poll::Ready(None) => {
                    this.ready.remove(index);
                    this.live -= 1;
                }
                // Its own waker queues it again when it has more.
                Poll::Pending => {}
            }
        }
        if this.live == 0 && this.incoming.handles.load(Ordering::Acquire) == 0 {
            // A handle's last push may have landed after `take_incoming`.
            this.take_incoming();
            if this.live == 0 {
                return Poll::Ready(None);
            }
        }
        // About to wait: register first, then look again for wake-ups that
        // came in before the registration could see them.
        this.ready.register(cx.waker());
        if this.ready.has_queued() || this.incoming.any.load(Ordering::Acquire) {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let open = self.incoming.handles.load(Ordering::Relaxed) > 0;
        let mut low = 0_usize;
        let mut high = if open { None } else { Some(0_usize) };
        for input in self.ready.values() {
            let (l, h) = input.size_hint();
            low = low.saturating_add(l);
            high = match (high, h) {
                (Some(a), Some(b)) => a.checked_add(b),
                _ => None,
            };
        }
        (low, high)
    }
}

impl<S: Stream + Unpin> FusedStream for FanIn<S> {
    /// True once every input has ended and no handle is left; a
    /// [`push`](FanIn::push) makes it false again.
    fn is_terminated(&self) -> bool {
        self.live == 0
            && self.incoming.handles.load(Ordering::Acquire) == 0
            && !self.incoming.any.load(Ordering::Acquire)
    }
}

impl<S> Drop for FanIn<S> {
    fn drop(&mut self) {
        self.incoming.fan_in_alive.store(false, Ordering::Release);
    }
}

impl<S: Stream + Unpin> Default for FanIn<S> {
    fn default() -> Self {
        FanIn::new()
    }
}

impl<S: Stream + Unpin> FromIterator<S> for FanIn<S> {
    /// ```
    /// use futures::{stream, StreamExt};
    /// use tokio_conc::fan_in::FanIn;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let merged: FanIn<_> = (0..3).map(|i| stream::iter(vec![i])).collect();
    /// assert_eq!(merged.collect::<Vec<_>>().await, [0, 1, 2]);
    /// # }
    /// ```
    fn from_iter<I: IntoIterator<Item = S>>(streams: I) -> Self {
        let mut fan_in = FanIn::new();
        fan_in.extend(streams);
        fan_in
    }
}

impl<S: Stream + Unpin> Extend<S> for FanIn<S> {
    /// ```
    /// use futures::stream;
    /// use tokio_conc::prelude::*;
    ///
    /// let mut merged = fan_in([stream::iter(0..3)]);
    /// merged.extend([stream::iter(3..5), stream::iter(5..9)]);
    /// assert_eq!(merged.len(), 3);
    /// ```
    fn extend<I: IntoIterator<Item = S>>(&mut self, streams: I) {
        for stream in streams {
            self.push(stream);
        }
    }
}

impl<S> fmt::Debug for FanIn<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FanIn")
            .field("inputs", &self.live)
            .field("handles", &self.incoming.handles.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
